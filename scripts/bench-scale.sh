#!/usr/bin/env bash
# The large-tree benchmark: a fresh three-member release cluster on 127.0.0.1, loaded with
# ZNODES znodes of 256 bytes, then put through the operations whose cost grows with the tree.
#
#   load      `baton bench fill` creates /bench/kv/k0..k<ZNODES-1> (Multi batches, CLIENTS in
#             flight): time, errors, batch latency, term and leader before and after
#   memory    each member's VmRSS and VmHWM, `du -sb` of its data dir and of wal/, db/,
#             snapshots/, next to the raw size (ZNODES x (256 + path length))
#   baseline  `baton bench put --clients 16 --seconds PUT_SECONDS` over the whole tree, no
#             snapshot due (the members start with --snapshot-every 1000000000)
#   restart   each member in turn (followers first) stopped with SIGTERM and started again
#             with --snapshot-every SNAPSHOT_EVERY: stop time, time until it serves a
#             linearizable read on its own; then `baton cluster snapshot` on each (a full-tree
#             snapshot build, timed)
#   snapshot  the same put run with snapshots due every SNAPSHOT_EVERY entries; the
#             snapshot.build stage of each member (`baton cluster stages`)
#   restart2  a follower (full tree, snapshots, short log) stopped with SIGTERM and started
#             again: time until it serves a read
#   rejoin    a follower (not member 1) killed with SIGKILL, its data dir deleted, started
#             again with the same flags: time until it serves a linearizable read, until its
#             applied index is the leader's; the leader's log (metrics), its VmRSS before and
#             after and its VmHWM
#
# A member that exits by itself while it is awaited (restart, rejoin) is counted and started
# again with the same flags, as a supervisor would, at most three times.
#
# Prints a summary table and, as its last line, one JSON object with every figure. Each phase
# has a deadline; a phase that misses it, or fails, ends the script with a message naming it
# (and the table of what was measured until then).
#
#   cargo build --release --bins
#   ZNODES=100000 scripts/bench-scale.sh
#
# Environment: ZNODES (1000000), CLIENTS (64, the load's clients), SNAPSHOT_EVERY (default: a
# quarter of the log entries the baseline run wrote, so that about four snapshots fall in
# the snapshot run), PUT_SECONDS (20), LOAD_SECONDS (deadline of the load, default
# 60 + ZNODES / 2000), BATON_BIN (target/release), BATOND_ARGS (more batond flags for every
# member, split on spaces, e.g. "--keep-logs 50000"), KEEP=1 keeps the work directory (data
# dirs, member logs, raw outputs) and prints where it is.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${BATON_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release}"
[[ -x "$BIN/batond" && -x "$BIN/baton" ]] || { echo "build first: cargo build --release --bins" >&2; exit 1; }
ZNODES="${ZNODES:-1000000}"
CLIENTS="${CLIENTS:-64}"
SNAPSHOT_EVERY="${SNAPSHOT_EVERY:-}"
PUT_SECONDS="${PUT_SECONDS:-20}"
LOAD_SECONDS="${LOAD_SECONDS:-$((60 + ZNODES / 2000))}"
VALUE_SIZE=256
SNAPSHOT_FAR=1000000000
read -r -a EXTRA <<<"${BATOND_ARGS:-}"
for v in ZNODES CLIENTS PUT_SECONDS LOAD_SECONDS; do
  [[ "${!v}" =~ ^[1-9][0-9]*$ ]] || { echo "$v must be a positive integer" >&2; exit 1; }
done
[[ -z "$SNAPSHOT_EVERY" || "$SNAPSHOT_EVERY" =~ ^[1-9][0-9]*$ ]] || { echo "SNAPSHOT_EVERY must be a positive integer" >&2; exit 1; }

WORK="$(mktemp -d "${TMPDIR:-/tmp}/baton-bench-scale.XXXXXX")"
declare -a PID=() CPORT=() PPORT=() MPORT=()
cleanup() {
  local p
  for p in "${PID[@]+"${PID[@]}"}"; do [[ -n "$p" ]] && kill -TERM "$p" 2>/dev/null || true; done
  for p in "${PID[@]+"${PID[@]}"}"; do [[ -n "$p" ]] && wait "$p" 2>/dev/null || true; done
  if [[ "${KEEP:-0}" == 1 ]]; then echo "work directory kept: $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

# --- helpers -------------------------------------------------------------------------------

# JSON handling and the final report, in Python (standard library only).
cat >"$WORK/h.py" <<'PY'
import json, sys

def objs(path):
    out = []
    try:
        with open(path) as f:
            for line in f:
                line = line.strip()
                if line.startswith("{"):
                    try:
                        out.append(json.loads(line))
                    except ValueError:
                        pass
    except OSError:
        pass
    return out

def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}

def parse(v):
    try:
        return json.loads(v)
    except ValueError:
        return v

cmd, args = sys.argv[1], sys.argv[2:]
if cmd == "rec":  # RESULTS KEY VALUE...: record figures (JSON values, else strings)
    res = load(args[0])
    for k, v in zip(args[1::2], args[2::2]):
        res[k] = parse(v)
    with open(args[0], "w") as f:
        json.dump(res, f)
elif cmd == "bench":  # RESULTS PREFIX FILE: the figures of a bench report
    res = load(args[0])
    rep = (objs(args[2]) or [{}])[-1]
    for k in ("ops", "ops_per_sec", "seconds", "p50_ms", "p99_ms", "p999_ms", "max_ms", "errors", "error_kinds", "batches", "keys_per_batch"):
        if k in rep:
            res[args[1] + "." + k] = rep[k]
    with open(args[0], "w") as f:
        json.dump(res, f)
elif cmd == "metrics":  # RESULTS PREFIX ADDR NAME...: samples of a member's /metrics
    import urllib.request
    res = load(args[0])
    try:
        text = urllib.request.urlopen("http://%s/metrics" % args[1], timeout=5).read().decode()
    except OSError:
        text = ""
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] in args[3:]:
            res[args[2] + "." + parts[0]] = parse(parts[1])
    with open(args[0], "w") as f:
        json.dump(res, f)
elif cmd == "get":  # RESULTS KEY
    print(load(args[0]).get(args[1], ""))
elif cmd == "scrape":  # FILE ADDR...: each member's /metrics samples, one JSON line each
    import urllib.request
    with open(args[0], "w") as out:
        for addr in args[1:]:
            try:
                text = urllib.request.urlopen("http://%s/metrics" % addr, timeout=3).read().decode()
            except OSError as e:
                out.write(json.dumps({"addr": addr, "error": str(e)}) + "\n")
                continue
            m = {"addr": addr}
            for line in text.splitlines():
                parts = line.split()
                if len(parts) == 2 and not line.startswith("#"):
                    try:
                        m[parts[0]] = float(parts[1])
                    except ValueError:
                        pass
            out.write(json.dumps(m) + "\n")
elif cmd == "cluster":  # SCRAPE_FILE: shell assignments describing the cluster
    ms = [m for m in objs(args[0]) if "baton_server_id" in m]
    v = lambda m, k: int(m.get(k, 0))
    leader = next((m for m in ms if v(m, "baton_server_id") == v(m, "baton_raft_leader_id")), None)
    agreed = leader is not None and all(v(m, "baton_raft_leader_id") == v(leader, "baton_server_id") for m in ms)
    print("C_UP=%d" % len(ms))
    print("C_LEADER=%d" % (v(leader, "baton_server_id") if leader and agreed else 0))
    print("C_TERM=%d" % max([v(m, "baton_raft_term") for m in ms] or [0]))
    print("C_TERM_CHANGES=%d" % sum(v(m, "baton_raft_term_changes_total") for m in ms))
    for m in ms:
        i = v(m, "baton_server_id")
        print("C_APPLIED[%d]=%d C_LAST[%d]=%d C_SNAP[%d]=%d C_ZNODES[%d]=%d"
              % (i, v(m, "baton_raft_applied_index"), i, v(m, "baton_raft_last_log_index"),
                 i, v(m, "baton_raft_snapshot_index"), i, v(m, "baton_znodes")))
elif cmd == "stage":  # RESULTS PREFIX STAGES_FILE NAME: count, mean and max (ms) per member
    res = load(args[0])
    for m in objs(args[2]):
        for st in m.get("stages", []):
            if st.get("name") == args[3]:
                p = "%s.m%d" % (args[1], m.get("member_id", 0))
                res[p + "_count"] = st.get("count", 0)
                if st.get("count", 0):
                    res[p + "_mean_ms"] = round(st.get("mean", 0) / 1000, 1)
                    res[p + "_max_ms"] = round(st.get("max", 0) / 1000, 1)
    with open(args[0], "w") as f:
        json.dump(res, f)
elif cmd == "raw":  # N VALUE_SIZE: bytes of N znodes /bench/kv/k<i> with their data
    n, size = int(args[0]), int(args[1])
    total, digits, lo = 0, 1, 0
    while lo < n:
        hi = min(n, 10 ** digits)
        total += (hi - lo) * (len("/bench/kv/k") + digits + size)
        lo, digits = hi, digits + 1
    print(total)
elif cmd == "report":  # RESULTS: the table, then the JSON line
    r = load(args[0])
    def g(k, unit="", scale=1.0, fmt="{:,.1f}"):
        v = r.get(k)
        if v is None:
            return "-"
        if isinstance(v, bool):
            return "yes" if v else "no"
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            v = v / scale
            return (fmt.format(v) + (" " + unit if unit else "")).replace(",", " ")
        return str(v)
    mib = 1024.0 * 1024.0
    rows = []
    def row(phase, what, value):
        rows.append((phase, what, value))
    members = [1, 2, 3]
    row("load", "znodes / clients", "%s / %s" % (g("znodes", fmt="{:,.0f}"), g("clients", fmt="{:,.0f}")))
    row("load", "time", "%s (%s)" % (g("load.seconds", "s"), g("load.ops_per_sec", "znodes/s", fmt="{:,.0f}")))
    row("load", "client errors", "%s %s" % (g("load.errors", fmt="{:,.0f}"), json.dumps(r.get("load.error_kinds", {}))))
    row("load", "batch latency p50/p99/max", "%s / %s / %s ms (%s creates per Multi)" % (
        g("load.p50_ms", fmt="{:,.2f}"), g("load.p99_ms", fmt="{:,.2f}"), g("load.max_ms", fmt="{:,.2f}"), g("load.keys_per_batch", fmt="{:,.0f}")))
    row("load", "term / leader before -> after", "%s / %s -> %s / %s" % (
        g("load.term_before", fmt="{:.0f}"), g("load.leader_before", fmt="{:.0f}"), g("load.term_after", fmt="{:.0f}"), g("load.leader_after", fmt="{:.0f}")))
    row("load", "term changes (sum of members) before -> after", "%s -> %s" % (g("load.term_changes_before", fmt="{:.0f}"), g("load.term_changes_after", fmt="{:.0f}")))
    row("memory", "raw data (paths + values)", g("raw_bytes", "MiB", mib))
    for i in members:
        row("memory", "m%d VmRSS / VmHWM after load" % i, "%s / %s" % (g("after_load.m%d_rss_kb" % i, "MiB", 1024), g("after_load.m%d_hwm_kb" % i, "MiB", 1024)))
    for i in members:
        row("disk", "m%d data dir (wal, db, snapshots)" % i, "%s (%s, %s, %s)" % (
            g("after_load.m%d_bytes" % i, "MiB", mib), g("after_load.m%d_wal_bytes" % i, "", mib), g("after_load.m%d_db_bytes" % i, "", mib), g("after_load.m%d_snapshots_bytes" % i, "", mib)))
    row("status", "one `cluster status` to the leader, term before -> after", "%s, %s -> %s" % (
        g("status.ms", "ms", fmt="{:,.0f}"), g("status.term_before", fmt="{:.0f}"), g("status.term_after", fmt="{:.0f}")))
    for name, p in (("baseline", "put_far"), ("snapshots", "put_snap")):
        row("put x16", "%s: ops/s, errors" % name, "%s, %s" % (g(p + ".ops_per_sec", fmt="{:,.0f}"), g(p + ".errors", fmt="{:,.0f}")))
        row("put x16", "%s: p50/p99/p99.9/max" % name, "%s / %s / %s / %s ms" % (
            g(p + ".p50_ms", fmt="{:,.2f}"), g(p + ".p99_ms", fmt="{:,.2f}"), g(p + ".p999_ms", fmt="{:,.2f}"), g(p + ".max_ms", fmt="{:,.2f}")))
        row("put x16", "%s: log entries, term changed" % name, "%s, %s" % (g(p + ".entries", fmt="{:,.0f}"), g(p + ".term_changed")))
        row("put x16", "%s: snapshots built (m1/m2/m3)" % name, "/".join(g("%s.snapshot.m%d_count" % (p, i), fmt="{:.0f}") for i in members))
    row("put x16", "snapshot-every (snapshot run)", g("snapshot_every", fmt="{:,.0f}"))
    row("put x16", "snapshot build in run, mean/max (m1;m2;m3)", "; ".join(
        "%s/%s" % (g("put_snap.snapshot.m%d_mean_ms" % i, fmt="{:,.0f}"), g("put_snap.snapshot.m%d_max_ms" % i, "ms", fmt="{:,.0f}")) for i in members))
    for i in members:
        row("restart", "m%d (%s): stop, start -> read (exits)" % (i, r.get("restart.m%d_role" % i, "?")), "%s, %s (%s)" % (
            g("restart.m%d_stop_ms" % i, "ms", fmt="{:,.0f}"), g("restart.m%d_read_ms" % i, "ms", fmt="{:,.0f}"), g("restart.m%d_exits" % i, fmt="{:.0f}")))
    for i in members:
        row("snapshot", "m%d full-tree snapshot: command, build max" % i, "%s, %s" % (
            g("snapnow.m%d_ms" % i, "ms", fmt="{:,.0f}"), g("snapnow.stage.m%d_max_ms" % i, "ms", fmt="{:,.0f}")))
    row("restart2", "m%s: stop, start -> read (exits)" % g("restart2.member", fmt="{:.0f}"), "%s, %s (%s)" % (
        g("restart2.stop_ms", "ms", fmt="{:,.0f}"), g("restart2.read_ms", "ms", fmt="{:,.0f}"), g("restart2.exits", fmt="{:.0f}")))
    row("rejoin", "wiped follower / leader", "m%s / m%s" % (g("rejoin.member", fmt="{:.0f}"), g("rejoin.leader", fmt="{:.0f}")))
    lp = "rejoin.leader_before."
    row("rejoin", "leader's log before: snapshot / purged / last index", "%s / %s / %s" % (
        g(lp + "baton_raft_snapshot_index", fmt="{:.0f}"), g(lp + "baton_raft_purged_index", fmt="{:.0f}"), g(lp + "baton_raft_last_log_index", fmt="{:.0f}")))
    row("rejoin", "start -> linearizable read", g("rejoin.read_ms", "ms", fmt="{:,.0f}"))
    row("rejoin", "member exits (restarted as by a supervisor)", "%s %s" % (g("rejoin.exits", fmt="{:.0f}"), r.get("rejoin.exit_reason") or ""))
    row("rejoin", "start -> applied index of the leader", g("rejoin.caught_up_ms", "ms", fmt="{:,.0f}"))
    v = r.get("rejoin.member", 0)
    row("rejoin", "snapshot installs on it, max", "%s, %s" % (g("rejoin.install.m%s_count" % v, fmt="{:.0f}"), g("rejoin.install.m%s_max_ms" % v, "ms", fmt="{:,.0f}")))
    row("rejoin", "snapshot builds during it (m1/m2/m3)", "/".join(g("rejoin.build.m%d_count" % i, fmt="{:.0f}") for i in members))
    row("rejoin", "leader VmRSS before -> after (VmHWM)", "%s -> %s (%s)" % (
        g("rejoin.leader_rss_before_kb", "MiB", 1024), g("rejoin.leader_rss_after_kb", "MiB", 1024), g("rejoin.leader_hwm_after_kb", "MiB", 1024)))
    row("rejoin", "rejoined member VmRSS, data dir", "%s, %s" % (g("rejoin.member_rss_kb", "MiB", 1024), g("rejoin.member_dir_bytes", "MiB", mib)))
    row("rejoin", "term before -> after", "%s -> %s" % (g("rejoin.term_before", fmt="{:.0f}"), g("rejoin.term_after", fmt="{:.0f}")))
    for i in members:
        row("end", "m%d VmRSS, data dir (wal, db, snapshots)" % i, "%s, %s (%s, %s, %s)" % (
            g("end.m%d_rss_kb" % i, "MiB", 1024), g("end.m%d_bytes" % i, "MiB", mib), g("end.m%d_wal_bytes" % i, "", mib),
            g("end.m%d_db_bytes" % i, "", mib), g("end.m%d_snapshots_bytes" % i, "", mib)))
    row("end", "log lines: slow requests / slow ops / ERROR (m1;m2;m3)", "; ".join(
        "%s/%s/%s" % tuple(g("end.m%d_%s" % (i, k), fmt="{:.0f}") for k in ("slow_requests", "slow_ops", "error_lines")) for i in members))
    row("end", "final term, total time", "%s, %s" % (g("end.term", fmt="{:.0f}"), g("total_seconds", "s", fmt="{:,.0f}")))
    if r.get("failed_phase"):
        row("FAILED", "phase " + str(r["failed_phase"]), str(r.get("failure", "")))
    w1 = max(len(a) for a, _, _ in rows)
    w2 = max(len(b) for _, b, _ in rows)
    print("%-*s  %-*s  %s" % (w1, "PHASE", w2, "FIGURE", "VALUE"))
    for a, b, c in rows:
        print("%-*s  %-*s  %s" % (w1, a, w2, b, c))
    print(json.dumps(r, sort_keys=True, separators=(",", ":")))
PY

py() { python3 "$WORK/h.py" "$@"; }
rec() { py rec "$WORK/results.json" "$@"; }
now_ms() { date +%s%3N; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
log() { echo "[$(date +%T)] $*" >&2; }

PHASE=setup PHASE_END=$((SECONDS + 60)) T_START=$SECONDS
phase() { PHASE="$1"; PHASE_END=$((SECONDS + $2)); log "phase $PHASE (deadline $2 s)"; }
left() { local l=$((PHASE_END - SECONDS)); echo $((l > 1 ? l : 1)); }
fail() {
  echo "bench-scale: phase $PHASE failed: $*" >&2
  local i
  for i in 1 2 3; do
    [[ -f "$WORK/m$i.log" ]] || continue
    echo "--- member $i log (last lines)" >&2
    tail -n 15 "$WORK/m$i.log" | sed -E 's/\x1b\[[0-9;]*m//g' | cut -c1-300 >&2
  done
  if [[ -f "$WORK/results.json" ]]; then
    rec failed_phase "$PHASE" failure "$*" total_seconds $((SECONDS - T_START))
    echo
    py report "$WORK/results.json"
  fi
  exit 1
}
check_deadline() { ((SECONDS < PHASE_END)) || fail "deadline passed ($*)"; }

alive() { [[ -r "/proc/$1/status" ]] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null; }
proc_kb() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }
du_b() { if [[ -e "$1" ]]; then du -sb "$1" | cut -f1; else echo 0; fi; }

members="" eps=""
for i in 1 2 3; do CPORT[i]="$(free_port)"; PPORT[i]="$(free_port)"; MPORT[i]="$(free_port)"; done
for i in 1 2 3; do
  members+="${members:+,}$i=127.0.0.1:${PPORT[i]}"
  eps+="${eps:+,}127.0.0.1:${CPORT[i]}"
done
export BATON_ENDPOINTS="$eps"
unset BATON_USER BATON_CACERT BATON_CERT BATON_KEY

start_member() { # ID SNAPSHOT_EVERY
  local i=$1
  echo "=== start $(date +%T) --snapshot-every $2" >>"$WORK/m$i.log"
  env -u BATON_CONFIG "$BIN/batond" --id "$i" --data-dir "$WORK/d$i" \
    --listen-client "127.0.0.1:${CPORT[i]}" --listen-peer "127.0.0.1:${PPORT[i]}" \
    --initial-members "$members" --metrics-addr "127.0.0.1:${MPORT[i]}" --snapshot-every "$2" \
    "${EXTRA[@]+"${EXTRA[@]}"}" >>"$WORK/m$i.log" 2>&1 &
  PID[i]=$!
}
stop_member() { # ID SIGNAL: sets STOP_MS, the time until the process ended
  local i=$1 t0
  t0=$(now_ms)
  kill "-$2" "${PID[i]}"
  while alive "${PID[i]}"; do check_deadline "member $i still running after SIG$2"; sleep 0.02; done
  STOP_MS=$(($(now_ms) - t0))
  wait "${PID[i]}" 2>/dev/null || true
  PID[i]=""
}
# A member that exited by itself is started again with the same flags, as its supervisor
# would (a member that fails exits 1 so that it is restarted), at most MAX_EXITS times;
# EXITS counts them and EXIT_WHY keeps the last one's final log line.
MAX_EXITS=3 EXITS=0 EXIT_WHY=""
supervise() { # ID SNAPSHOT_EVERY
  alive "${PID[$1]}" && return 0
  local rc=0
  wait "${PID[$1]}" 2>/dev/null || rc=$?
  EXITS=$((EXITS + 1))
  EXIT_WHY="exit $rc: $(grep -a '^batond:' "$WORK/m$1.log" | tail -n 1 | cut -c1-300)"
  log "member $1 exited ($EXIT_WHY)"
  ((EXITS <= MAX_EXITS)) || fail "member $1 exited $EXITS times, last: $EXIT_WHY"
  start_member "$1" "$2"
}
# Polls until member ID alone answers a linearizable read; sets READ_MS, the time since T0.
wait_read() { # ID T0
  until "$BIN/baton" --endpoints "127.0.0.1:${CPORT[$1]}" --call-timeout 2000 get /bench/kv/k0 >/dev/null 2>&1; do
    supervise "$1" "$SNAPSHOT_EVERY"
    check_deadline "member $1 serves no read"
    sleep 0.05
  done
  READ_MS=$(($(now_ms) - $2))
}
# The cluster's state from the members' metrics ports: cheap, unlike `cluster status`, whose
# state hash walks the whole tree.
status_to() { # FILE
  py scrape "$1" "127.0.0.1:${MPORT[1]}" "127.0.0.1:${MPORT[2]}" "127.0.0.1:${MPORT[3]}"
}
declare -a C_APPLIED=() C_LAST=() C_SNAP=() C_ZNODES=()
cluster() { # FILE: reads a scrape into C_*
  C_UP=0 C_LEADER=0 C_TERM=0 C_TERM_CHANGES=0 C_APPLIED=() C_LAST=() C_SNAP=() C_ZNODES=()
  eval "$(py cluster "$1")"
}
# Status until all three answer and agree on a leader.
settled_status() { # FILE
  while :; do
    status_to "$1"
    cluster "$1"
    ((C_UP == 3 && C_LEADER > 0)) && return 0
    check_deadline "cluster without an agreed leader"
    sleep 0.2
  done
}
metrics() { # PREFIX ID: the member's log and leadership figures from its metrics port
  py metrics "$WORK/results.json" "127.0.0.1:${MPORT[$2]}" "$1" baton_raft_purged_index baton_raft_snapshot_index \
    baton_raft_last_log_index baton_raft_applied_index baton_raft_term baton_server_leader_changes_seen_total
}
stages_to() { timeout 15 "$BIN/baton" -o json --call-timeout 5000 cluster stages "${@:2}" >"$1" 2>/dev/null || fail "cluster stages"; }
put_run() { # PREFIX: a 16-client put run over the tree, with term, entries and snapshot builds
  local p=$1 term0 last0 leader0
  settled_status "$WORK/$p.before"
  term0=$C_TERM leader0=$C_LEADER last0=${C_LAST[C_LEADER]}
  stages_to /dev/null --reset
  local rc=0
  timeout "$(left)" "$BIN/baton" -o json bench put --clients 16 --seconds "$PUT_SECONDS" \
    --key-space "$ZNODES" --value-size "$VALUE_SIZE" >"$WORK/$p.json" 2>"$WORK/$p.err" || rc=$?
  ((rc == 0)) || { tail -n 5 "$WORK/$p.err" >&2; fail "bench put (exit $rc)"; }
  settled_status "$WORK/$p.after"
  stages_to "$WORK/$p.stages"
  py bench "$WORK/results.json" "$p" "$WORK/$p.json"
  py stage "$WORK/results.json" "$p.snapshot" "$WORK/$p.stages" snapshot.build
  rec "$p.entries" $((C_LAST[C_LEADER] - last0)) "$p.term_before" "$term0" "$p.term_after" "$C_TERM" \
    "$p.term_changed" "$([[ $term0 == "$C_TERM" && $leader0 == "$C_LEADER" ]] && echo false || echo true)"
  cat "$WORK/$p.err" >&2
}
measure() { # PREFIX: RSS and disk of each member
  local i d
  for i in 1 2 3; do
    d="$WORK/d$i"
    rec "$1.m${i}_rss_kb" "$(proc_kb "${PID[i]}" VmRSS)" "$1.m${i}_hwm_kb" "$(proc_kb "${PID[i]}" VmHWM)" \
      "$1.m${i}_bytes" "$(du_b "$d")" "$1.m${i}_wal_bytes" "$(du_b "$d/wal")" \
      "$1.m${i}_db_bytes" "$(du_b "$d/db")" "$1.m${i}_snapshots_bytes" "$(du_b "$d/snapshots")"
  done
}

rec znodes "$ZNODES" clients "$CLIENTS" value_size "$VALUE_SIZE" put_seconds "$PUT_SECONDS" batond_args "${BATOND_ARGS:-}" \
  raw_bytes "$(py raw "$ZNODES" "$VALUE_SIZE")"

# --- start ---------------------------------------------------------------------------------
phase start 60
for i in 1 2 3; do start_member "$i" "$SNAPSHOT_FAR"; done
until "$BIN/baton" --call-timeout 3000 sync >/dev/null 2>&1; do
  check_deadline "cluster not ready"
  sleep 0.3
done

# --- load ----------------------------------------------------------------------------------
phase load "$LOAD_SECONDS"
settled_status "$WORK/load.before"
rec load.term_before "$C_TERM" load.leader_before "$C_LEADER" load.term_changes_before "$C_TERM_CHANGES"
t0=$(now_ms)
rc=0
timeout $(($(left) + 30)) "$BIN/baton" -o json bench fill --key-space "$ZNODES" --clients "$CLIENTS" \
  --value-size "$VALUE_SIZE" --seconds "$(left)" >"$WORK/load.json" 2>"$WORK/load.err" || rc=$?
((rc == 0)) || { tail -n 5 "$WORK/load.err" >&2; fail "bench fill (exit $rc)"; }
rec load.wall_ms $(($(now_ms) - t0))
py bench "$WORK/results.json" load "$WORK/load.json"
cat "$WORK/load.err" >&2
settled_status "$WORK/load.after"
rec load.term_after "$C_TERM" load.leader_after "$C_LEADER" load.term_changes_after "$C_TERM_CHANGES"
for i in 1 2 3; do
  ((C_ZNODES[i] >= ZNODES)) || fail "member $i holds ${C_ZNODES[i]} znodes, expected at least $ZNODES"
done

# --- memory and disk -----------------------------------------------------------------------
phase memory 120
measure after_load
# One `cluster status` to the leader, timed: it hashes the whole tree.
term0=$C_TERM t0=$(now_ms)
timeout "$(left)" "$BIN/baton" -o json --endpoints "127.0.0.1:${CPORT[C_LEADER]}" --call-timeout 60000 \
  cluster status >"$WORK/status.json" 2>&1 || log "cluster status failed: $(tail -c 300 "$WORK/status.json")"
rec status.ms $(($(now_ms) - t0))
sleep 1
settled_status "$WORK/status.after"
rec status.term_before "$term0" status.term_after "$C_TERM"

# --- put run, snapshots far away -----------------------------------------------------------
phase baseline $((PUT_SECONDS + 120 + ZNODES / 5000))
put_run put_far
entries=$(py get "$WORK/results.json" put_far.entries)
if [[ -z "$SNAPSHOT_EVERY" ]]; then
  SNAPSHOT_EVERY=$((entries / 4 > 100 ? entries / 4 : 100))
fi
rec snapshot_every "$SNAPSHOT_EVERY"
log "baseline wrote $entries entries; snapshot run with --snapshot-every $SNAPSHOT_EVERY"

# --- rolling restart with --snapshot-every SNAPSHOT_EVERY ----------------------------------
settled_status "$WORK/restart.before"
order=()
for i in 1 2 3; do ((i == C_LEADER)) || order+=("$i"); done
order+=("$C_LEADER")
for i in "${order[@]}"; do
  phase "restart-m$i" $((90 + ZNODES / 5000))
  settled_status "$WORK/restart.m$i.before"
  role=follower
  if ((i == C_LEADER)); then role=leader; fi
  stop_member "$i" TERM
  t0=$(now_ms) EXITS=0
  start_member "$i" "$SNAPSHOT_EVERY"
  wait_read "$i" "$t0"
  rec "restart.m${i}_role" "$role" "restart.m${i}_stop_ms" "$STOP_MS" "restart.m${i}_read_ms" "$READ_MS" \
    "restart.m${i}_exits" "$EXITS"
  log "member $i ($role): stopped in $STOP_MS ms, served a read $READ_MS ms after its start"
  settled_status "$WORK/restart.m$i.after"
done

# --- a full-tree snapshot on each member ---------------------------------------------------
phase snapshot-now $((60 + ZNODES / 10000))
for i in 1 2 3; do
  t0=$(now_ms)
  timeout "$(left)" "$BIN/baton" --endpoints "127.0.0.1:${CPORT[i]}" --call-timeout 60000 cluster snapshot >/dev/null \
    || fail "cluster snapshot on member $i"
  rec "snapnow.m${i}_ms" $(($(now_ms) - t0))
done
stages_to "$WORK/snapnow.stages"
py stage "$WORK/results.json" snapnow.stage "$WORK/snapnow.stages" snapshot.build

# --- put run with snapshots ----------------------------------------------------------------
phase snapshot-run $((PUT_SECONDS + 120 + ZNODES / 5000))
put_run put_snap

# --- restart of a follower with the full tree and snapshots --------------------------------
phase restart2 $((90 + ZNODES / 5000))
settled_status "$WORK/restart2.before"
other=1
if ((C_LEADER == 1)); then other=3; fi
stop_member "$other" TERM
t0=$(now_ms) EXITS=0
start_member "$other" "$SNAPSHOT_EVERY"
wait_read "$other" "$t0"
rec restart2.member "$other" restart2.stop_ms "$STOP_MS" restart2.read_ms "$READ_MS" restart2.exits "$EXITS"
settled_status "$WORK/restart2.after"

# --- wiped follower rejoins ----------------------------------------------------------------
phase rejoin $((120 + ZNODES / 2000))
settled_status "$WORK/rejoin.before"
leader=$C_LEADER
# Not member 1: with an empty data dir, the lowest id of the initial members initialises a
# new cluster instead of waiting to be contacted.
victim=2
if ((leader == 2)); then victim=3; fi
metrics rejoin.leader_before "$leader"
rec rejoin.member "$victim" rejoin.leader "$leader" rejoin.term_before "$C_TERM" \
  rejoin.leader_rss_before_kb "$(proc_kb "${PID[leader]}" VmRSS)" rejoin.leader_hwm_before_kb "$(proc_kb "${PID[leader]}" VmHWM)"
stages_to /dev/null --reset
stop_member "$victim" KILL
rm -rf "$WORK/d$victim"
t0=$(now_ms) EXITS=0
start_member "$victim" "$SNAPSHOT_EVERY"
wait_read "$victim" "$t0"
rec rejoin.read_ms "$READ_MS"
log "wiped member $victim served a read $READ_MS ms after its start"
while :; do
  status_to "$WORK/rejoin.poll"
  cluster "$WORK/rejoin.poll"
  if ((C_LEADER > 0 && ${C_APPLIED[victim]:-0} > 0 && ${C_APPLIED[victim]:-0} >= ${C_APPLIED[C_LEADER]:-1})); then break; fi
  supervise "$victim" "$SNAPSHOT_EVERY"
  check_deadline "member $victim has not caught up (applied ${C_APPLIED[victim]:-?} of ${C_APPLIED[C_LEADER]:-?})"
  sleep 0.1
done
rec rejoin.caught_up_ms $(($(now_ms) - t0)) rejoin.exits "$EXITS" rejoin.exit_reason "$EXIT_WHY"
settled_status "$WORK/rejoin.after"
rec rejoin.term_after "$C_TERM" rejoin.leader_rss_after_kb "$(proc_kb "${PID[leader]}" VmRSS)" \
  rejoin.leader_hwm_after_kb "$(proc_kb "${PID[leader]}" VmHWM)" \
  rejoin.member_rss_kb "$(proc_kb "${PID[victim]}" VmRSS)" rejoin.member_dir_bytes "$(du_b "$WORK/d$victim")"
stages_to "$WORK/rejoin.stages"
py stage "$WORK/results.json" rejoin.install "$WORK/rejoin.stages" snapshot.install
py stage "$WORK/results.json" rejoin.build "$WORK/rejoin.stages" snapshot.build

# --- end -----------------------------------------------------------------------------------
phase end 60
settled_status "$WORK/end.status"
measure end
rec end.term "$C_TERM" end.term_changes "$C_TERM_CHANGES" total_seconds $((SECONDS - T_START))
for i in 1 2 3; do
  rec "end.m${i}_slow_requests" "$(grep -c 'request took too long' "$WORK/m$i.log" || true)" \
    "end.m${i}_slow_ops" "$(grep -c 'operation took too long' "$WORK/m$i.log" || true)" \
    "end.m${i}_error_lines" "$(grep -c 'ERROR' "$WORK/m$i.log" || true)"
done
echo
py report "$WORK/results.json"
