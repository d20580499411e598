#!/usr/bin/env bash
# Offline build of the Baton image, for machines that cannot pull any image (no registry):
# builds batond and baton on the host (cargo build --release), stages them with the shared
# libraries `ldd` lists in a small context directory, and builds docker/offline.Dockerfile
# (FROM scratch) there. The result has the same tag, paths, user, environment, health check and
# entrypoint as the multi-stage Dockerfile at the repository root.
#
#   scripts/docker-image.sh [--tag baton:latest] [--no-cargo] [--quiet]
#
#   --tag TAG     image tag (default baton:latest; env BATON_IMAGE)
#   --no-cargo    use the binaries already in target/release (do not run cargo)
#   --quiet       print only the tag on stdout
#
# Needs: cargo (unless --no-cargo), ldd, objcopy (binutils; optional, strips debug info), a
# Docker engine. The context is target/docker-image/ (a few tens of MB), never the repository.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"

TAG="${BATON_IMAGE:-baton:latest}"
CARGO=1
QUIET=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --tag) TAG="${2:?--tag needs a value}"; shift 2 ;;
    --tag=*) TAG="${1#--tag=}"; shift ;;
    --no-cargo) CARGO=0; shift ;;
    --quiet) QUIET=1; shift ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "docker-image: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

log() { echo "[docker-image] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

command -v docker >/dev/null 2>&1 || die "docker CLI not found"
docker info >/dev/null 2>&1 || die "no Docker engine (docker info failed)"
command -v ldd >/dev/null 2>&1 || die "ldd not found"

if [[ $CARGO -eq 1 ]]; then
  if ! command -v cargo >/dev/null 2>&1 && [[ -f "$HOME/.cargo/env" ]]; then
    # shellcheck disable=SC1091
    source "$HOME/.cargo/env"
  fi
  command -v cargo >/dev/null 2>&1 || die "cargo not found (or pass --no-cargo)"
  log "cargo build --release --bin batond --bin baton"
  cargo build --release --bin batond --bin baton >&2
fi
BIN_DIR="$TARGET_DIR/release"
for b in batond baton; do
  [[ -x "$BIN_DIR/$b" ]] || die "$BIN_DIR/$b missing (run without --no-cargo)"
done

CTX="$TARGET_DIR/docker-image"
rm -rf "$CTX"
mkdir -p "$CTX/rootfs/usr/local/bin" "$CTX/rootfs/etc" "$CTX/rootfs/tmp" "$CTX/data"
chmod 1777 "$CTX/rootfs/tmp"

for b in batond baton; do
  if command -v objcopy >/dev/null 2>&1; then
    # Keep the symbol table (readable backtraces), drop DWARF (tens of MB).
    objcopy --strip-debug "$BIN_DIR/$b" "$CTX/rootfs/usr/local/bin/$b"
  else
    cp "$BIN_DIR/$b" "$CTX/rootfs/usr/local/bin/$b"
  fi
  chmod 0755 "$CTX/rootfs/usr/local/bin/$b"
done

# Every library either binary needs, at the path the dynamic loader resolved it to (the
# interpreter included). "not found" or a statically linked binary is an error.
declare -A LIBS=()
for b in batond baton; do
  out="$(ldd "$BIN_DIR/$b")" || die "ldd $BIN_DIR/$b failed"
  if grep -q 'not found' <<<"$out"; then
    die "ldd: unresolved libraries for $b:"$'\n'"$out"
  fi
  while read -r line; do
    case "$line" in
      *'=> /'*) lib="${line#*=> }"; lib="${lib%% (*}" ;;
      /*) lib="${line%% (*}" ;;
      *) continue ;;   # linux-vdso.so.1 (provided by the kernel)
    esac
    LIBS["$lib"]=1
  done <<<"$out"
done
[[ ${#LIBS[@]} -gt 0 ]] || die "ldd listed no libraries (static binary?)"
for lib in "${!LIBS[@]}"; do
  mkdir -p "$CTX/rootfs$(dirname "$lib")"
  cp -L "$lib" "$CTX/rootfs$lib"
done

# Users as in distroless (no shell exists, so the shells are placeholders).
cat >"$CTX/rootfs/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
EOF
cat >"$CTX/rootfs/etc/group" <<'EOF'
root:x:0:
nonroot:x:65532:
EOF

cp docker/offline.Dockerfile "$CTX/Dockerfile"
VERSION="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)"
REVISION="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"

# BuildKit builds FROM scratch offline too; without the buildx plugin the docker CLI needs
# the legacy builder (it refuses DOCKER_BUILDKIT=1 without buildx).
if [[ -z "${DOCKER_BUILDKIT:-}" ]] && ! docker buildx version >/dev/null 2>&1; then
  export DOCKER_BUILDKIT=0
fi

log "libraries: $(printf '%s ' "${!LIBS[@]}")"
log "context $CTX ($(du -sh "$CTX" | cut -f1)); docker build -t $TAG"
docker build --quiet -t "$TAG" \
  --label "org.opencontainers.image.title=baton" \
  --label "org.opencontainers.image.version=$VERSION" \
  --label "org.opencontainers.image.revision=$REVISION" \
  --label "baton.build=offline" \
  "$CTX" >&2

# Smoke test: both binaries start inside the image (the loader and libraries are complete).
docker run --rm --network none "$TAG" --version >/dev/null \
  || die "batond does not start in $TAG"
docker run --rm --network none --entrypoint /usr/local/bin/baton "$TAG" --version >/dev/null \
  || die "baton does not start in $TAG"
log "built $TAG ($(docker image inspect "$TAG" --format '{{.Size}}' | awk '{printf "%.1f MB", $1/1e6}'))"
if [[ $QUIET -eq 1 ]]; then echo "$TAG"; fi
