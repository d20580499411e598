#!/usr/bin/env bash
# Black-box fault suite: a three-member Baton cluster in Docker containers, a workload driver on
# the host (docker::docker_faults in tests/it/docker/, an ignored test of the `it` binary, using
# baton::client against the published client ports on 127.0.0.1), and a nemesis that
# partitions, kills and pauses members through the docker CLI. Afterwards: linearizability of
# the register history, no acknowledged write lost, sequential-name checks, ephemeral/session
# checks, and convergence of every member's state hash. See tests/it/docker/mod.rs.
#
#   scripts/docker-faults.sh [--duration SECS] [--seed N] [--keep] [--no-image]
#                            [--driver-profile release|debug] [--require-docker]
#
#   --duration SECS    how long the nemesis runs (default 150; env BATON_DF_DURATION).
#                      The whole run takes about DURATION + 60 s plus build time; a soak
#                      is --duration 1800.
#   --seed N           seed of the workload and nemesis schedule (default: time-based)
#   --keep             keep histories and member logs even if the run passes
#   --no-image         do not rebuild the image (use $BATON_IMAGE, default baton:latest)
#   --driver-profile   cargo profile of the driver (default release; debug reuses the
#                      build of `cargo build --all-targets`)
#   --require-docker   fail (exit 1) instead of skipping when there is no Docker engine
#
# Everything this script creates carries the label baton.docker-faults=<project> and the
# project's name prefix (batondf-<time>-<pid>): two networks (a peer network, internal, on
# which partitions happen, and a client network whose ports are published on 127.0.0.1),
# three named volumes and three containers. They are removed on exit, whatever the outcome;
# nothing else is touched. Results go to target/docker-faults/<project>/ (summary.txt,
# summary.json; on failure or with --keep also the histories and `docker logs` of every
# member).
#
# Exit status: 0 = passed (or skipped: no Docker engine), 1 = a check failed or the run broke.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"

DURATION="${BATON_DF_DURATION:-150}"
SEED="${BATON_DF_SEED:-}"
KEEP=0
BUILD_IMAGE=1
PROFILE=release
REQUIRE=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --duration) DURATION="${2:?--duration needs a value}"; shift 2 ;;
    --duration=*) DURATION="${1#--duration=}"; shift ;;
    --seed) SEED="${2:?--seed needs a value}"; shift 2 ;;
    --seed=*) SEED="${1#--seed=}"; shift ;;
    --keep) KEEP=1; shift ;;
    --no-image) BUILD_IMAGE=0; shift ;;
    --driver-profile) PROFILE="${2:?--driver-profile needs a value}"; shift 2 ;;
    --driver-profile=*) PROFILE="${1#--driver-profile=}"; shift ;;
    --require-docker) REQUIRE=1; shift ;;
    -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
    *) echo "docker-faults: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
[[ "$DURATION" =~ ^[0-9]+$ && "$DURATION" -ge 20 && "$DURATION" -le 86400 ]] \
  || { echo "docker-faults: --duration must be 20..86400 seconds" >&2; exit 2; }
[[ -z "$SEED" || "$SEED" =~ ^[0-9]+$ ]] || { echo "docker-faults: --seed must be a number" >&2; exit 2; }
[[ "$PROFILE" == release || "$PROFILE" == debug ]] \
  || { echo "docker-faults: --driver-profile is release or debug" >&2; exit 2; }
SEED="${SEED:-$(date +%s%N | cut -c1-13)}"

log() { echo "[docker-faults] $(date +%H:%M:%S) $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

if ! command -v docker >/dev/null 2>&1 || ! docker info >/dev/null 2>&1; then
  if [[ $REQUIRE -eq 1 ]]; then die "no Docker engine (docker info failed)"; fi
  echo "SKIPPED: no Docker engine (docker info failed); the Docker fault suite did not run"
  exit 0
fi
if ! command -v cargo >/dev/null 2>&1 && [[ -f "$HOME/.cargo/env" ]]; then
  # shellcheck disable=SC1091
  source "$HOME/.cargo/env"
fi
command -v cargo >/dev/null 2>&1 || die "cargo not found"
command -v python3 >/dev/null 2>&1 || die "python3 not found (used to pick free ports)"

IMAGE="${BATON_IMAGE:-baton:latest}"
PROJECT="batondf-$(date +%Y%m%d%H%M%S)-$$"
LABEL="baton.docker-faults=$PROJECT"
OUT="$TARGET_DIR/docker-faults/$PROJECT"
mkdir -p "$OUT"
PEER_NET="$PROJECT-peer"
CLIENT_NET="$PROJECT-client"
IDS=(1 2 3)
CREATED_NETS=()
CREATED_CONTAINERS=()
CREATED_VOLUMES=()
T=(timeout --kill-after=10)

DRIVER_PID=""
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  set +e
  if [[ -n "$DRIVER_PID" ]] && kill -0 "$DRIVER_PID" 2>/dev/null; then
    # `timeout` passes the signal on to the driver.
    kill -TERM "$DRIVER_PID" 2>/dev/null
    for _ in $(seq 1 50); do kill -0 "$DRIVER_PID" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$DRIVER_PID" 2>/dev/null
    log "driver stopped"
  fi
  if [[ ${#CREATED_CONTAINERS[@]} -gt 0 ]]; then
    if [[ $rc -ne 0 || $KEEP -eq 1 ]]; then
      for c in "${CREATED_CONTAINERS[@]}"; do
        "${T[@]}" 60 docker logs --timestamps "$c" >"$OUT/$c.log" 2>&1
        "${T[@]}" 30 docker inspect "$c" >"$OUT/$c.inspect.json" 2>&1
      done
      log "member logs kept in $OUT"
    fi
    # Paused containers must be unpaused before they can be removed.
    for c in "${CREATED_CONTAINERS[@]}"; do
      "${T[@]}" 30 docker unpause "$c" >/dev/null 2>&1
    done
    "${T[@]}" 120 docker rm -f -v "${CREATED_CONTAINERS[@]}" >/dev/null 2>&1
  fi
  # Anything else carrying this run's label (e.g. a container created but not yet recorded).
  local left
  left="$("${T[@]}" 30 docker ps -aq --filter "label=$LABEL" 2>/dev/null)"
  if [[ -n "$left" ]]; then
    # shellcheck disable=SC2086
    "${T[@]}" 60 docker rm -f -v $left >/dev/null 2>&1
  fi
  for n in "${CREATED_NETS[@]}"; do "${T[@]}" 60 docker network rm "$n" >/dev/null 2>&1; done
  for v in "${CREATED_VOLUMES[@]}"; do "${T[@]}" 60 docker volume rm -f "$v" >/dev/null 2>&1; done
  local still
  still="$( { docker ps -aq --filter "label=$LABEL"; docker network ls -q --filter "label=$LABEL"; \
             docker volume ls -q --filter "label=$LABEL"; } 2>/dev/null | wc -l)"
  if [[ "$still" -ne 0 ]]; then
    log "WARNING: $still resources labelled $LABEL could not be removed"
  else
    log "cleaned up (containers, networks, volumes of $PROJECT)"
  fi
  if [[ $rc -eq 0 && $KEEP -eq 0 ]]; then
    rm -f "$OUT"/*.history.json
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- build: the image (offline, from host binaries) and the driver ----
START=$SECONDS
if [[ $BUILD_IMAGE -eq 1 ]]; then
  log "building image $IMAGE offline (scripts/docker-image.sh)"
  "${T[@]}" 3600 bash scripts/docker-image.sh --tag "$IMAGE" >&2 || die "image build failed"
else
  docker image inspect "$IMAGE" >/dev/null 2>&1 || die "image $IMAGE not found (drop --no-image)"
fi
CARGO_PROFILE_ARGS=()
[[ $PROFILE == release ]] && CARGO_PROFILE_ARGS=(--release)
log "building the driver (cargo test ${CARGO_PROFILE_ARGS[*]} --test it --no-run)"
# The test executable is run directly afterwards, so the driver that runs is the one built
# here, whatever happens to the working tree meanwhile.
DRIVER="$("${T[@]}" 3600 cargo test "${CARGO_PROFILE_ARGS[@]}" --test it --no-run \
  --message-format=json-render-diagnostics \
  | python3 -c 'import json, sys
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "it":
        print(m["executable"])')" || die "driver build failed"
[[ -n "$DRIVER" && -x "$DRIVER" ]] || die "driver executable not found after the build"
BUILD_SECS=$((SECONDS - START))

# ---- networks: random /24 subnets, retried if one overlaps an existing network ----
# create_net NAME INTERNAL(0|1) VAR: sets VAR to the subnet prefix "a.b.c".
create_net() {
  local name="$1" internal="$2" var="$3" attempt prefix args err
  for attempt in $(seq 1 20); do
    prefix="10.$((200 + RANDOM % 50)).$((RANDOM % 256))"
    args=(--driver bridge --subnet "$prefix.0/24" --gateway "$prefix.1" --label "$LABEL")
    [[ $internal -eq 1 ]] && args+=(--internal)
    if err="$("${T[@]}" 60 docker network create "${args[@]}" "$name" 2>&1 >/dev/null)"; then
      CREATED_NETS+=("$name")
      printf -v "$var" '%s' "$prefix"
      return 0
    fi
    if ! grep -qi 'overlap' <<<"$err"; then
      log "docker network create $name: $err"
      return 1
    fi
  done
  log "no free subnet for $name after 20 attempts"
  return 1
}
PEER_PREFIX=""
CLIENT_PREFIX=""
create_net "$PEER_NET" 1 PEER_PREFIX || die "cannot create the peer network"
create_net "$CLIENT_NET" 0 CLIENT_PREFIX || die "cannot create the client network"
log "networks: $PEER_NET $PEER_PREFIX.0/24 (internal, peers), $CLIENT_NET $CLIENT_PREFIX.0/24 (clients)"

INITIAL=""
for i in "${IDS[@]}"; do
  INITIAL+="${INITIAL:+,}$i=$PEER_PREFIX.$((10 + i)):7421"
done

free_ports() {
  python3 - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

# ---- members: created on the client network (published port), then attached to the peer
# network with a fixed address, then started ----
MEMBERS=""
start_members() {
  local attempt ports i name port err ok
  for attempt in 1 2 3; do
    read -r -a ports <<<"$(free_ports 3)"
    ok=1
    for idx in 0 1 2; do
      i="${IDS[$idx]}"; name="$PROJECT-m$i"; port="${ports[$idx]}"
      if [[ $attempt -eq 1 ]]; then
        "${T[@]}" 60 docker volume create --label "$LABEL" "$name-data" >/dev/null \
          || die "docker volume create $name-data failed"
        CREATED_VOLUMES+=("$name-data")
      fi
      "${T[@]}" 60 docker rm -f "$name" >/dev/null 2>&1 || true
      if ! err="$("${T[@]}" 60 docker create --name "$name" --label "$LABEL" \
          --hostname "m$i" --restart no --stop-timeout 15 \
          --network "$CLIENT_NET" --ip "$CLIENT_PREFIX.$((10 + i))" \
          -p "127.0.0.1:$port:7420" \
          -v "$name-data:/data" \
          -e BATON_ID="$i" \
          -e BATON_INITIAL_MEMBERS="$INITIAL" \
          -e BATON_ADVERTISE_PEER="$PEER_PREFIX.$((10 + i)):7421" \
          -e BATON_ADVERTISE_CLIENT="127.0.0.1:$port" \
          -e BATON_SNAPSHOT_EVERY=2000 \
          -e BATON_KEEP_LOGS=500 \
          -e RUST_LOG="${RUST_LOG:-info}" \
          "$IMAGE" 2>&1 >/dev/null)"; then
        die "docker create $name: $err"
      fi
      [[ " ${CREATED_CONTAINERS[*]} " == *" $name "* ]] || CREATED_CONTAINERS+=("$name")
      "${T[@]}" 60 docker network connect --ip "$PEER_PREFIX.$((10 + i))" "$PEER_NET" "$name" \
        || die "docker network connect $PEER_NET $name failed"
      if ! err="$("${T[@]}" 60 docker start "$name" 2>&1 >/dev/null)"; then
        if grep -qiE 'address already in use|port is already allocated' <<<"$err"; then
          log "port $port taken meanwhile; choosing new ports (attempt $attempt)"
          ok=0; break
        fi
        die "docker start $name: $err"
      fi
    done
    if [[ $ok -eq 1 ]]; then
      MEMBERS=""
      for idx in 0 1 2; do
        i="${IDS[$idx]}"
        MEMBERS+="${MEMBERS:+,}$i=$PROJECT-m$i:${ports[$idx]}:$PEER_PREFIX.$((10 + i))"
      done
      return 0
    fi
    "${T[@]}" 60 docker rm -f "${CREATED_CONTAINERS[@]}" >/dev/null 2>&1 || true
  done
  die "could not start the members on free ports"
}
start_members
log "members: $MEMBERS"

# ---- the driver ----
DRIVER_BOUND=$((DURATION + 900))
log "driver: nemesis for $DURATION s, seed $SEED (bounded to $DRIVER_BOUND s)"
# In the background + wait, so a signal to this script runs the cleanup at once (bash defers
# traps while a foreground command runs); cleanup stops the driver by its pid.
set +e
BATON_DF_MEMBERS="$MEMBERS" \
BATON_DF_PEER_NETWORK="$PEER_NET" \
BATON_DF_DURATION="$DURATION" \
BATON_DF_SEED="$SEED" \
BATON_DF_OUT="$OUT" \
BATON_DF_KEEP="$KEEP" \
  "${T[@]}" "$DRIVER_BOUND" "$DRIVER" --ignored --exact docker::docker_faults --nocapture \
    --test-threads 1 > >(tee "$OUT/driver.log") 2>&1 &
DRIVER_PID=$!
wait "$DRIVER_PID"
RC=$?
DRIVER_PID=""
set -e
if [[ $RC -eq 124 ]]; then
  log "FAILED: the driver did not finish within $DRIVER_BOUND s"
fi
log "build ${BUILD_SECS} s, total $((SECONDS - START)) s; results in $OUT"
if [[ $RC -ne 0 ]]; then
  log "FAILED (exit $RC); seed $SEED — reproduce with: scripts/docker-faults.sh --duration $DURATION --seed $SEED"
  exit 1
fi
log "PASSED"
