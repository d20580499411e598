#!/usr/bin/env bash
# The whole Baton test suite, as CI runs it (.ci/run execs this script):
#   1. cargo build --all-targets
#   2. cargo test                 (unit, integration, durability, doc tests)
#   3. tests/python/run.sh        (Python client from stubs generated out of proto/)
#   4. tests/grpcurl.sh           (grpcurl through server reflection)
#   5. scripts/docker-faults.sh   (black-box fault suite on a Docker cluster, 150 s of faults;
#                                  runs whenever a Docker engine answers, skipped and said so
#                                  otherwise or with BATON_DOCKER_FAULTS=0)
# Needs only rustup's stable toolchain, python3 + pip (packages come from PyPI into
# target/pyenv). Every step's output is also kept in target/test-all/<step>.log.
# Exits non-zero if any step fails; a failed build skips the steps that need it.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

if ! command -v cargo >/dev/null 2>&1 && [[ -f "$HOME/.cargo/env" ]]; then
  # shellcheck disable=SC1091
  source "$HOME/.cargo/env"
fi
command -v cargo >/dev/null 2>&1 || { echo "test-all: cargo not found (install rustup's stable toolchain)" >&2; exit 1; }
command -v python3 >/dev/null 2>&1 || { echo "test-all: python3 not found" >&2; exit 1; }

LOGDIR="${CARGO_TARGET_DIR:-$ROOT/target}/test-all"
mkdir -p "$LOGDIR"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

NAMES=()
RESULTS=()
SECS=()
TOTAL_PASSED=0
TOTAL_FAILED=0
START=$SECONDS

# run_step NAME CMD...: runs CMD, tees its output to $LOGDIR/NAME.log, records the outcome.
run_step() {
  local name="$1"; shift
  local t0=$SECONDS rc
  echo
  echo "==== [$name] $* ===="
  set +e
  "$@" 2>&1 | tee "$LOGDIR/$name.log"
  rc=${PIPESTATUS[0]}
  set -e
  NAMES+=("$name")
  SECS+=("$((SECONDS - t0))")
  if [[ $rc -eq 0 ]]; then RESULTS+=("ok"); else RESULTS+=("FAILED (exit $rc)"); fi
  return "$rc"
}

skip_step() {
  NAMES+=("$1"); SECS+=("0"); RESULTS+=("skipped ($2)")
}

# count_tests NAME: adds the pass/fail counts printed in the step's log to the totals.
count_tests() {
  local log="$LOGDIR/$1.log" p=0 f=0
  case "$1" in
    cargo-test)
      p=$(sed -n 's/^test result: [A-Za-z]*\. \([0-9]*\) passed; \([0-9]*\) failed.*/\1/p' "$log" | awk '{s+=$1} END {print s+0}')
      f=$(sed -n 's/^test result: [A-Za-z]*\. \([0-9]*\) passed; \([0-9]*\) failed.*/\2/p' "$log" | awk '{s+=$1} END {print s+0}')
      ;;
    python)
      local last
      last="$(grep -E '[0-9]+ (passed|failed)' "$log" | tail -n1 || true)"
      # pytest's closing line, e.g. "1 failed, 2 passed, 1 error in 0.3s".
      p=$(awk '{for (i = 2; i <= NF; i++) if ($i ~ /^passed/) s += $(i-1)} END {print s+0}' <<<"$last")
      f=$(awk '{for (i = 2; i <= NF; i++) if ($i ~ /^(failed|error)/) s += $(i-1)} END {print s+0}' <<<"$last")
      ;;
    docker-faults)
      if grep -q '^RESULT: PASSED' "$log"; then p=1; elif grep -q '^RESULT: FAILED' "$log"; then f=1; fi
      ;;
    grpcurl)
      local last
      last="$(grep -E '^grpcurl: [0-9]+ passed, [0-9]+ failed' "$log" | tail -n1 || true)"
      p=$(sed -n 's/^grpcurl: \([0-9]*\) passed.*/\1/p' <<<"$last"); p=${p:-0}
      f=$(sed -n 's/^grpcurl: [0-9]* passed, \([0-9]*\) failed.*/\1/p' <<<"$last"); f=${f:-0}
      ;;
  esac
  TOTAL_PASSED=$((TOTAL_PASSED + ${p:-0}))
  TOTAL_FAILED=$((TOTAL_FAILED + ${f:-0}))
  STEP_FAILED_TESTS=${f:-0}
}

# test_step NAME CMD...: run_step, then count its tests; a step that failed without a failing
# test (compile error, setup, crash) counts as one failure.
test_step() {
  local name="$1" rc=0
  run_step "$@" || rc=$?
  STEP_FAILED_TESTS=0
  count_tests "$name" || true
  if [[ $rc -ne 0 ]]; then
    FAILED=1
    if [[ $STEP_FAILED_TESTS -eq 0 ]]; then TOTAL_FAILED=$((TOTAL_FAILED + 1)); fi
  fi
}

# Last-resort bounds per step (each test also bounds itself); exit 124 means a step hung.
T=(timeout --kill-after=30)
FAILED=0
if run_step build "${T[@]}" 2400 cargo build --all-targets; then
  rm -rf "${CARGO_TARGET_DIR:-$ROOT/target}/tmp/figures"
  test_step cargo-test "${T[@]}" 1800 cargo test
  test_step python "${T[@]}" 900 bash tests/python/run.sh
  test_step grpcurl "${T[@]}" 600 bash tests/grpcurl.sh
  if [[ "${BATON_DOCKER_FAULTS:-1}" == "0" ]]; then
    echo "SKIPPED: the Docker fault suite (BATON_DOCKER_FAULTS=0)"
    skip_step docker-faults "BATON_DOCKER_FAULTS=0"
  elif ! command -v docker >/dev/null 2>&1 || ! docker info >/dev/null 2>&1; then
    echo "SKIPPED: the Docker fault suite (no Docker engine answers 'docker info')"
    skip_step docker-faults "no Docker engine"
  else
    test_step docker-faults "${T[@]}" 2400 bash scripts/docker-faults.sh --duration 150 --driver-profile debug --require-docker
  fi
else
  FAILED=1
  TOTAL_FAILED=1
  skip_step cargo-test "build failed"
  skip_step python "build failed"
  skip_step grpcurl "build failed"
  skip_step docker-faults "build failed"
fi

echo
echo "==== summary ($((SECONDS - START)) s; logs in $LOGDIR) ===="
for i in "${!NAMES[@]}"; do
  printf '  %-12s %-22s %5s s\n' "${NAMES[$i]}" "${RESULTS[$i]}" "${SECS[$i]}"
done
# Figures kept by tests whose output cargo captured (e.g. tests/it/durability.rs).
for f in "${CARGO_TARGET_DIR:-$ROOT/target}"/tmp/figures/*.txt; do
  [[ -f "$f" ]] && sed 's/^/  /' "$f"
done
if [[ $FAILED -eq 0 ]]; then echo "  result: OK"; else echo "  result: FAILED"; fi
echo "total: $TOTAL_PASSED passed, $TOTAL_FAILED failed"
exit $FAILED
