#!/usr/bin/env bash
# Leadership handovers under writes: a fresh three-member release cluster on 127.0.0.1, 16
# writers (`baton bench put`, 14 s), and six `baton cluster transfer-leader` commands 1.5 s
# apart during the run; prints each command's wall time and the bench's latency summary
# (its max is the longest any write waited across the handovers).
#
#   cargo build --release --bins
#   scripts/bench-transfer.sh
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${BATON_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release}"
[[ -x "$BIN/batond" && -x "$BIN/baton" ]] || { echo "build first: cargo build --release --bins" >&2; exit 1; }
WORK="$(mktemp -d "${TMPDIR:-/tmp}/baton-bench-transfer.XXXXXX")"
PIDS=()
cleanup() {
  local p
  for p in "${PIDS[@]+"${PIDS[@]}"}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]+"${PIDS[@]}"}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
members="" eps=""
declare -a cports pports
for i in 1 2 3; do cports[i]="$(free_port)"; pports[i]="$(free_port)"; done
for i in 1 2 3; do
  members+="${members:+,}$i=127.0.0.1:${pports[i]}"
  eps+="${eps:+,}127.0.0.1:${cports[i]}"
done
for i in 1 2 3; do
  env -u BATON_CONFIG "$BIN/batond" --id "$i" --data-dir "$WORK/d$i" \
    --listen-client "127.0.0.1:${cports[i]}" --listen-peer "127.0.0.1:${pports[i]}" \
    --initial-members "$members" --metrics-addr off >"$WORK/m$i.log" 2>&1 &
  PIDS+=($!)
done
export BATON_ENDPOINTS="$eps"
deadline=$((SECONDS + 60))
until "$BIN/baton" --call-timeout 3000 sync >/dev/null 2>&1; do
  ((SECONDS < deadline)) || { echo "cluster not ready" >&2; tail -n 20 "$WORK"/m*.log >&2; exit 1; }
  sleep 0.3
done
"$BIN/baton" -o json bench put --clients 16 --seconds 14 >"$WORK/bench.json" 2>"$WORK/bench.err" &
bench=$!
sleep 2
for to in 2 3 1 3 2 1; do
  t0=$(date +%s%N)
  "$BIN/baton" cluster transfer-leader "$to"
  echo "  took $(( ($(date +%s%N) - t0) / 1000000 )) ms"
  sleep 1.5
done
wait "$bench"
tail -n 1 "$WORK/bench.json"
tail -n 3 "$WORK/bench.err"
