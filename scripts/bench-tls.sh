#!/usr/bin/env bash
# The cost of TLS: put and get throughput at 64 clients (8 connections) on a fresh three-member
# release cluster on 127.0.0.1, with TLS off and on (mutual TLS between members, TLS and client
# certificates on the client ports), alternating off/on REPS times; prints the medians.
#
#   cargo build --release --bins
#   scripts/bench-tls.sh                    # REPS=3, 10 s runs, 256 B values, 10 000 keys
#   REPS=5 SECONDS_PER_RUN=20 scripts/bench-tls.sh
#   APPEND=1 scripts/bench-tls.sh           # add runs to the previous results (medians of all)
#
# Each run's JSON line (from `baton bench`) goes to target/bench-tls/results.jsonl with a "tls"
# field. Only this script's members are stopped (by their recorded pids).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
BIN="${BATON_BIN:-$TARGET_DIR/release}"
REPS="${REPS:-3}"
SECS="${SECONDS_PER_RUN:-10}"
OUT="$TARGET_DIR/bench-tls"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/baton-bench-tls.XXXXXX")"
PIDS=()

log() { echo "[bench-tls] $*" >&2; }
stop_members() {
  local p
  for p in "${PIDS[@]+"${PIDS[@]}"}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]+"${PIDS[@]}"}"; do wait "$p" 2>/dev/null || true; done
  PIDS=()
}
trap 'stop_members; rm -rf "$WORK"' EXIT
trap 'exit 130' INT TERM

[[ -x "$BIN/batond" && -x "$BIN/baton" ]] || { log "build first: cargo build --release --bins"; exit 1; }
mkdir -p "$OUT"
RESULTS="$OUT/results.jsonl"
[[ ${APPEND:-0} == 1 ]] || : >"$RESULTS"
bash scripts/gen-certs.sh --dir "$WORK/certs" --members 3 2>/dev/null
C="$WORK/certs"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }

# start_cluster on|off: sets EPS and CLIENT_FLAGS.
start_cluster() {
  local tls="$1" i members="" cports=() pports=()
  rm -rf "$WORK/data"
  for i in 1 2 3; do cports[i]="$(free_port)"; pports[i]="$(free_port)"; done
  for i in 1 2 3; do members+="${members:+,}$i=127.0.0.1:${pports[i]}"; done
  EPS=""
  for i in 1 2 3; do
    local flags=()
    [[ $tls == on ]] && flags=(--cert "$C/member-$i.crt" --key "$C/member-$i.key" --peer-ca "$C/ca.crt" --client-ca "$C/ca.crt")
    env -u BATON_CONFIG "$BIN/batond" --id "$i" --data-dir "$WORK/data/$i" \
      --listen-client "127.0.0.1:${cports[i]}" --listen-peer "127.0.0.1:${pports[i]}" \
      --initial-members "$members" --metrics-addr off --log-format json "${flags[@]+"${flags[@]}"}" \
      >"$WORK/m$i.log" 2>&1 &
    PIDS+=($!)
    EPS+="${EPS:+,}127.0.0.1:${cports[i]}"
  done
  CLIENT_FLAGS=()
  [[ $tls == on ]] && CLIENT_FLAGS=(--cacert "$C/ca.crt" --cert "$C/client.crt" --key "$C/client.key")
  local deadline=$((SECONDS + 60))
  until "$BIN/baton" --endpoints "$EPS" "${CLIENT_FLAGS[@]+"${CLIENT_FLAGS[@]}"}" --call-timeout 3000 \
      create "/bench-probe-$RANDOM" x >/dev/null 2>&1; do
    ((SECONDS < deadline)) || { log "cluster (tls $tls) not ready"; tail -n 20 "$WORK"/m*.log >&2; exit 1; }
    sleep 0.3
  done
}

bench() {
  local tls="$1" rep="$2" workload="$3"
  "$BIN/baton" --endpoints "$EPS" "${CLIENT_FLAGS[@]+"${CLIENT_FLAGS[@]}"}" -o json \
    bench "$workload" --clients 64 --conns 8 --seconds "$SECS" --value-size 256 --key-space 10000 \
    2>/dev/null | tail -n 1 | python3 -c "import json,sys; d=json.load(sys.stdin); d['tls']='$tls'; d['rep']=$rep; print(json.dumps(d))" >>"$RESULTS"
  log "rep $rep tls $tls $workload: $(tail -n 1 "$RESULTS" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(round(d["ops_per_sec"]), "ops/s, p50", d["p50_ms"], "ms, errors", d["errors"])')"
}

for rep in $(seq 1 "$REPS"); do
  for tls in off on; do
    start_cluster "$tls"
    # Untimed warm-up, which also writes the keys the gets read.
    "$BIN/baton" --endpoints "$EPS" "${CLIENT_FLAGS[@]+"${CLIENT_FLAGS[@]}"}" \
      bench put --clients 16 --seconds 3 --key-space 10000 >/dev/null 2>&1
    bench "$tls" "$rep" put
    bench "$tls" "$rep" get
    stop_members
  done
done

python3 - "$RESULTS" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print("workload  tls  median ops/s  (runs)                  median p50 ms")
for w in ("put", "get"):
    med = {}
    for t in ("off", "on"):
        r = [x for x in rows if x["workload"] == w and x["tls"] == t]
        ops = [x["ops_per_sec"] for x in r]
        med[t] = statistics.median(ops)
        print(f"{w:8}  {t:3}  {med[t]:12.0f}  {[round(o) for o in ops]!s:24} {statistics.median(x['p50_ms'] for x in r):.3f}")
    print(f"{w:8}  on/off = {med['on'] / med['off']:.3f}")
EOF
