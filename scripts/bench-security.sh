#!/usr/bin/env bash
# The cost of TLS and of ACL checks: put and get throughput at 64 clients (8 connections) on a
# fresh three-member release cluster on 127.0.0.1 per run, in each mode of MODES, alternating
# the modes REPS times; prints the medians and each mode's ratio to the first.
#   off      plaintext, anonymous clients, open keys
#   acl      plaintext, clients authenticated (digest alice:pw, --allow-plaintext-credentials),
#            keys whose ACL names only alice: every request is checked against a real ACL
#   tls      mutual TLS between members, TLS and client certificates on the client ports
#   tls+acl  both
#
#   cargo build --release --bins
#   scripts/bench-security.sh               # MODES="off acl tls tls+acl", REPS=3, 10 s runs
#   MODES="off tls" REPS=5 SECONDS_PER_RUN=20 scripts/bench-security.sh
#   APPEND=1 scripts/bench-security.sh      # add runs to the previous results (medians of all)
#
# Each run's JSON line (from `baton bench`) goes to target/bench-security/results.jsonl with a
# "mode" field. Only this script's members are stopped (by their recorded pids).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
BIN="${BATON_BIN:-$TARGET_DIR/release}"
REPS="${REPS:-3}"
SECS="${SECONDS_PER_RUN:-10}"
MODES="${MODES:-off acl tls tls+acl}"
OUT="$TARGET_DIR/bench-security"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/baton-bench-security.XXXXXX")"
PIDS=()

log() { echo "[bench-security] $*" >&2; }
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

# start_cluster MODE: sets EPS, CLIENT_FLAGS and BENCH_FLAGS.
start_cluster() {
  local mode="$1" tls=off acl=off i members="" cports=() pports=()
  [[ $mode == tls || $mode == tls+acl ]] && tls=on
  [[ $mode == acl || $mode == tls+acl ]] && acl=on
  rm -rf "$WORK/data"
  for i in 1 2 3; do cports[i]="$(free_port)"; pports[i]="$(free_port)"; done
  for i in 1 2 3; do members+="${members:+,}$i=127.0.0.1:${pports[i]}"; done
  EPS=""
  for i in 1 2 3; do
    local flags=()
    [[ $tls == on ]] && flags=(--cert "$C/member-$i.crt" --key "$C/member-$i.key" --peer-ca "$C/ca.crt" --client-ca "$C/ca.crt")
    [[ $acl == on ]] && flags+=(--allow-plaintext-credentials)
    env -u BATON_CONFIG "$BIN/batond" --id "$i" --data-dir "$WORK/data/$i" \
      --listen-client "127.0.0.1:${cports[i]}" --listen-peer "127.0.0.1:${pports[i]}" \
      --initial-members "$members" --metrics-addr off --log-format json "${flags[@]+"${flags[@]}"}" \
      >"$WORK/m$i.log" 2>&1 &
    PIDS+=($!)
    EPS+="${EPS:+,}127.0.0.1:${cports[i]}"
  done
  CLIENT_FLAGS=()
  BENCH_FLAGS=()
  [[ $tls == on ]] && CLIENT_FLAGS=(--cacert "$C/ca.crt" --cert "$C/client.crt" --key "$C/client.key")
  if [[ $acl == on ]]; then
    CLIENT_FLAGS+=(--user alice:pw)
    BENCH_FLAGS=(--acl "digest:$("$BIN/baton" auth digest alice:pw):cdrwa")
  fi
  local deadline=$((SECONDS + 60))
  until "$BIN/baton" --endpoints "$EPS" "${CLIENT_FLAGS[@]+"${CLIENT_FLAGS[@]}"}" --call-timeout 3000 \
      create "/bench-probe-$RANDOM" x >/dev/null 2>&1; do
    ((SECONDS < deadline)) || { log "cluster ($mode) not ready"; tail -n 20 "$WORK"/m*.log >&2; exit 1; }
    sleep 0.3
  done
}

bench() {
  local mode="$1" rep="$2" workload="$3"
  "$BIN/baton" --endpoints "$EPS" "${CLIENT_FLAGS[@]+"${CLIENT_FLAGS[@]}"}" -o json \
    bench "$workload" --clients 64 --conns 8 --seconds "$SECS" --value-size 256 --key-space 10000 \
    "${BENCH_FLAGS[@]+"${BENCH_FLAGS[@]}"}" \
    2>/dev/null | tail -n 1 | python3 -c "import json,sys; d=json.load(sys.stdin); d['mode']='$mode'; d['rep']=$rep; print(json.dumps(d))" >>"$RESULTS"
  log "rep $rep $mode $workload: $(tail -n 1 "$RESULTS" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(round(d["ops_per_sec"]), "ops/s, p50", d["p50_ms"], "ms, errors", d["errors"])')"
}

for rep in $(seq 1 "$REPS"); do
  for mode in $MODES; do
    start_cluster "$mode"
    # Untimed warm-up, which also writes the keys (with the mode's ACL) the gets read.
    "$BIN/baton" --endpoints "$EPS" "${CLIENT_FLAGS[@]+"${CLIENT_FLAGS[@]}"}" \
      bench put --clients 16 --seconds 3 --key-space 10000 "${BENCH_FLAGS[@]+"${BENCH_FLAGS[@]}"}" >/dev/null 2>&1
    bench "$mode" "$rep" put
    bench "$mode" "$rep" get
    stop_members
  done
done

python3 - "$RESULTS" $MODES <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
modes = sys.argv[2:]
print("workload  mode     median ops/s  (runs)                  median p50 ms  ratio")
for w in ("put", "get"):
    base = None
    for m in modes:
        r = [x for x in rows if x["workload"] == w and x.get("mode") == m]
        if not r:
            continue
        ops = [x["ops_per_sec"] for x in r]
        med = statistics.median(ops)
        base = base or med
        p50 = statistics.median(x["p50_ms"] for x in r)
        print(f"{w:8}  {m:7}  {med:12.0f}  {[round(o) for o in ops]!s:24} {p50:.3f}  {med / base:.3f}")
EOF
