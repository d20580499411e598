//! Black-box fault suite, driver side. `scripts/docker-faults.sh` builds the image offline,
//! starts three members in containers (a peer network for Raft, a client network whose ports
//! are published on 127.0.0.1) and runs this ignored test with the cluster described in
//! `BATON_DF_*` variables. Without them the test prints SKIPPED and returns.
//!
//! The driver runs on the host and talks to the members only through their published client
//! ports, with `baton::client`:
//! * **registers** (`registers.rs`): read/write/CAS/create/delete with unique values on
//!   rotating keys, checked for linearizability by `baton::check` (`Unknown` = failure), with
//!   a final linearizable read of every key on every member recorded into the history;
//! * **sequential creates** (`sequential.rs`): no duplicate or decreasing names per parent
//!   among acknowledged creates, every acknowledged create present after healing;
//! * **ephemerals** (`ephemerals.rs`): once a session is known closed or expired none of its
//!   ephemerals remain; live sessions keep theirs; every session ends and `/df/eph` empties;
//! * **locks** (`locks.rs`, the fenced counter of `tests/it/common/fenced.rs`): fenced
//!   increments under the lock are exact, tokens increase along the counter, no stale or
//!   refused write commits, and the writer held the lock at every committed increment.
//!
//! * **exactly-once counter** (`counter.rs`): compare-and-set increments retried by the client
//!   with request ids; the counter equals the acknowledged increments plus the applied ones of
//!   unknown outcome, with 0 duplicated applications and none lost.
//!
//! A nemesis (`nemesis.rs`) partitions a member or the leader from its peers, kills and
//! restarts members, and pauses them, one fault at a time, measuring the recovery time after
//! each heal. Afterwards every member must converge to the same state hash at the same index.
//! Figures are printed and written to `summary.json`/`summary.txt` in `BATON_DF_OUT`; the
//! histories too when the run fails (or `BATON_DF_KEEP=1`).

mod cluster;
mod counter;
mod ephemerals;
mod locks;
mod nemesis;
mod registers;
mod sequential;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use baton::check::{check_report, CheckOptions, Register, RegisterOp, RegisterOut};
use baton::client::{Client, CreateOptions};
use rand::rngs::StdRng;
use rand::SeedableRng;

use cluster::{connect, Cluster, Config};
use nemesis::{FaultKind, Nemesis};
use registers::{Rec, Stats};

const REGISTER_CLIENTS: usize = 6;
const SEQ_CLIENTS: usize = 2;
const EPH_WORKERS: usize = 3;
/// Recoveries slower than this are listed (a figure, not a failure: the bound that fails the
/// run is the nemesis's 60 s).
const SLOW_RECOVERY_MS: u64 = 5000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the Docker cluster that scripts/docker-faults.sh creates"]
async fn docker_faults() {
    let cfg = match Config::from_env() {
        None => {
            println!(
                "SKIPPED: BATON_DF_MEMBERS is not set; run scripts/docker-faults.sh, which \
                 creates the Docker cluster this test drives"
            );
            return;
        }
        Some(Err(e)) => panic!("bad BATON_DF_* environment: {e}"),
        Some(Ok(cfg)) => cfg,
    };
    let problems = run(cfg).await;
    assert!(
        problems.is_empty(),
        "docker fault suite FAILED with {} problem(s):\n  {}",
        problems.len(),
        problems.join("\n  ")
    );
}

/// Retries `f` until it succeeds, for at most `bound` (and 1000 attempts).
async fn retry<T, F, Fut>(bound: Duration, mut f: F) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + bound;
    let mut last = String::new();
    for _ in 0..1000 {
        match tokio::time::timeout(Duration::from_secs(10), f()).await {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(e)) => last = e,
            Err(_) => last = "timed out".into(),
        }
        if Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(last)
}

async fn ensure_node(client: &Client, path: &str) -> Result<(), String> {
    retry(Duration::from_secs(30), || async {
        match client.create(path, "", CreateOptions::persistent()).await {
            Ok(_) => Ok(()),
            Err(e) if e.is(baton::client::Reason::NodeExists) => Ok(()),
            Err(e) => Err(e.to_string()),
        }
    })
    .await
    .map_err(|e| format!("create {path}: {e}"))
}

fn pct(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn is_write_ok(op: &RegisterOp<u64>, out: &RegisterOut<u64>) -> bool {
    !matches!(op, RegisterOp::Read)
        && matches!(
            out,
            RegisterOut::Written(_) | RegisterOut::Created | RegisterOut::Deleted
        )
}

async fn run(cfg: Config) -> Vec<String> {
    let started = Instant::now();
    let mut problems: Vec<String> = Vec::new();
    let mut text = String::new();
    macro_rules! say {
        ($($arg:tt)*) => {{
            let line = format!($($arg)*);
            println!("{line}");
            text.push_str(&line);
            text.push('\n');
        }};
    }
    let seed = cfg.seed;
    let out_dir = cfg.out_dir.clone();
    let keep = cfg.keep;
    let duration = cfg.duration;
    say!(
        "docker fault suite: seed {seed}, nemesis for {} s, members {}",
        duration.as_secs(),
        cfg.members
            .iter()
            .map(|m| format!(
                "m{}={} ({}, peer {})",
                m.id,
                m.endpoint(),
                m.container,
                m.peer_ip
            ))
            .collect::<Vec<_>>()
            .join(", ")
    );

    let cluster = match Cluster::connect(cfg).await {
        Ok(c) => c,
        Err(e) => return vec![format!("setup: {e}")],
    };
    match cluster.wait_all_up(Duration::from_secs(90)).await {
        Ok(d) => say!("cluster up with a leader after {} ms", d.as_millis()),
        Err(e) => return vec![format!("setup: {e}")],
    }
    let setup = match connect(
        &cluster.endpoints_from(0),
        Duration::from_secs(3),
        Duration::from_secs(30),
    )
    .await
    {
        Ok(c) => c,
        Err(e) => return vec![format!("setup: {e}")],
    };
    for path in ["/df", "/df/reg", "/df/seq", ephemerals::DIR, nemesis::PROBE]
        .into_iter()
        .chain(sequential::PARENTS)
    {
        if let Err(e) = ensure_node(&setup, path).await {
            return vec![format!("setup: {e}")];
        }
    }

    // ---- workloads ----
    let rec = Rec::new();
    let stats = Arc::new(Mutex::new(Stats::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let max_generation = Arc::new(AtomicU64::new(0));
    let seq_log: sequential::SeqLog = Arc::default();
    let eph_log: ephemerals::EphLog = Arc::default();
    let mut reg_tasks = Vec::new();
    let mut seq_tasks = Vec::new();
    let mut eph_tasks = Vec::new();
    let mut clients = 0usize;
    let mut next_client = || {
        clients += 1;
        clients - 1
    };
    for i in 0..REGISTER_CLIENTS {
        let Ok(client) = cluster.workload_client(next_client()).await else {
            return vec!["setup: cannot connect a register client".into()];
        };
        reg_tasks.push(tokio::spawn(registers::client_loop(
            i,
            client,
            rec.clone(),
            stats.clone(),
            stop.clone(),
            max_generation.clone(),
            seed.wrapping_add(1000 + i as u64),
        )));
    }
    for i in 0..SEQ_CLIENTS {
        let Ok(client) = cluster.workload_client(next_client()).await else {
            return vec!["setup: cannot connect a sequential client".into()];
        };
        seq_tasks.push(tokio::spawn(sequential::client_loop(
            i,
            client,
            rec.clone(),
            seq_log.clone(),
            stop.clone(),
            seed.wrapping_add(2000 + i as u64),
        )));
    }
    for i in 0..EPH_WORKERS {
        let Ok(client) = cluster.workload_client(next_client()).await else {
            return vec!["setup: cannot connect a session client".into()];
        };
        eph_tasks.push(tokio::spawn(ephemerals::worker(
            i,
            client,
            rec.clone(),
            eph_log.clone(),
            stop.clone(),
            seed.wrapping_add(3000 + i as u64),
        )));
    }
    if let Err(e) = counter::setup(&setup).await {
        return vec![format!("setup: counter: {e}")];
    }
    let counter_log: counter::Log = Arc::default();
    let mut counter_tasks = Vec::new();
    for i in 0..counter::WORKERS {
        let Ok(client) = counter::client(&cluster, next_client()).await else {
            return vec!["setup: cannot connect a counter client".into()];
        };
        counter_tasks.push(tokio::spawn(counter::worker(
            i,
            client,
            counter_log.clone(),
            stop.clone(),
        )));
    }
    let lock_workload = match locks::Workload::start(&cluster, &setup, next_client()).await {
        Ok(w) => w,
        Err(e) => return vec![format!("setup: lock workload: {e}")],
    };

    // ---- nemesis ----
    let Ok(probe) = connect(
        &cluster.endpoints_from(0),
        Duration::from_millis(1500),
        Duration::from_secs(30),
    )
    .await
    else {
        return vec!["setup: cannot connect the probe client".into()];
    };
    let mut nemesis = Nemesis {
        cluster: &cluster,
        probe,
        clock: rec.clone(),
        rng: StdRng::seed_from_u64(seed),
        probe_counter: 0,
        records: Vec::new(),
        problems: Vec::new(),
    };
    // A fault-free warm-up, then faults until the duration is over.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let nemesis_start = Instant::now();
    nemesis.run(nemesis_start + duration).await;
    let nemesis_secs = nemesis_start.elapsed().as_secs_f64();
    nemesis.heal_all().await;
    let final_recovery = nemesis.recovery().await;
    if final_recovery.is_none() {
        nemesis
            .problems
            .push("no write succeeded within 60 s after the final heal".into());
    }
    if let Err(e) = cluster.wait_all_up(Duration::from_secs(60)).await {
        nemesis.problems.push(format!("after the final heal: {e}"));
    }
    let faults = std::mem::take(&mut nemesis.records);
    problems.append(&mut nemesis.problems);
    drop(nemesis);

    // Fault-free tail, then stop the workloads (each op is bounded, so they end quickly).
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    let mut reg_ops = 0u64;
    for t in reg_tasks {
        match tokio::time::timeout(Duration::from_secs(60), t).await {
            Ok(Ok(n)) => reg_ops += n,
            _ => problems.push("a register client did not stop within 60 s".into()),
        }
    }
    for t in seq_tasks {
        if !matches!(
            tokio::time::timeout(Duration::from_secs(60), t).await,
            Ok(Ok(_))
        ) {
            problems.push("a sequential client did not stop within 60 s".into());
        }
    }
    let mut running = Vec::new();
    for t in eph_tasks {
        match tokio::time::timeout(Duration::from_secs(60), t).await {
            Ok(Ok(r)) => running.extend(r),
            _ => problems.push("a session worker did not stop within 60 s".into()),
        }
    }
    for t in counter_tasks {
        // An increment may take up to its 20 s deadline.
        if !matches!(
            tokio::time::timeout(Duration::from_secs(60), t).await,
            Ok(Ok(()))
        ) {
            problems.push("a counter client did not stop within 60 s".into());
        }
    }
    let lock_report = lock_workload.finish(&setup).await;
    problems.extend(lock_report.problems.iter().map(|p| format!("locks: {p}")));
    let workload_secs = started.elapsed().as_secs_f64();

    // ---- final reads: every register key on every member (recorded, checked) ----
    let generations = max_generation.load(Ordering::Relaxed);
    let keys: Vec<String> = (0..=generations)
        .flat_map(|g| (0..registers::KEYS).map(move |i| registers::key(g, i)))
        .collect();
    for (m, client) in cluster.members().iter().zip(&cluster.pinned) {
        for key in &keys {
            let mut done = false;
            let deadline = Instant::now() + Duration::from_secs(30);
            for _ in 0..300 {
                let p = rec.new_process();
                let (_, out) =
                    registers::run_op(&rec, &stats, client, p, key, RegisterOp::Read).await;
                if out.is_some() || Instant::now() >= deadline {
                    done = out.is_some();
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            if !done {
                problems.push(format!(
                    "m{} serves no linearizable read of {key} after healing",
                    m.id
                ));
                break;
            }
        }
    }

    // ---- sequential creates ----
    let seq_ops = seq_log.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let seq_counts = sequential::counts(&seq_ops);
    let mut seq_problems = sequential::check_acks(&seq_ops);
    let mut seq_children = 0usize;
    for parent in sequential::PARENTS {
        let mut listings: Vec<(u64, Vec<String>)> = Vec::new();
        for (m, client) in cluster.members().iter().zip(&cluster.pinned) {
            match retry(Duration::from_secs(30), || async {
                client
                    .get_all_children(parent)
                    .await
                    .map_err(|e| e.to_string())
            })
            .await
            {
                Ok(l) => listings.push((m.id, l)),
                Err(e) => seq_problems.push(format!("m{} cannot list {parent}: {e}", m.id)),
            }
        }
        if let Some((first_id, first)) = listings.first() {
            seq_children += first.len();
            for (id, l) in &listings[1..] {
                if l != first {
                    seq_problems.push(format!(
                        "{parent}: m{id} lists {} children, m{first_id} {} (linearizable reads differ)",
                        l.len(),
                        first.len()
                    ));
                }
            }
            seq_problems.extend(sequential::check_final(&seq_ops, parent, first));
        }
    }
    problems.extend(seq_problems.iter().cloned());

    // ---- exactly-once counter ----
    let counter_report = counter::check(&cluster, &counter_log).await;
    problems.extend(
        counter_report
            .problems
            .iter()
            .map(|p| format!("counter: {p}")),
    );

    // ---- ephemerals ----
    let eph_final_problems = ephemerals::finish_running(&setup, &rec, running, &eph_log).await;
    problems.extend(eph_final_problems.iter().cloned());
    let sessions_gone = retry(Duration::from_secs(120), || async {
        let s = setup.list_sessions().await.map_err(|e| e.to_string())?;
        if s.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "{} sessions still live: {}",
                s.len(),
                s.iter()
                    .map(|s| format!("{:#x}", s.session_id))
                    .collect::<Vec<_>>()
                    .join(",")
            ))
        }
    })
    .await;
    let sessions_gone_at = started.elapsed();
    if let Err(e) = &sessions_gone {
        problems.push(format!(
            "sessions did not all end within 120 s after healing: {e}"
        ));
    }
    let mut eph_left = 0usize;
    for (m, client) in cluster.members().iter().zip(&cluster.pinned) {
        match ephemerals::list_retry(client).await {
            Ok(l) if l.is_empty() => {}
            Ok(l) => {
                eph_left += l.len();
                if sessions_gone.is_ok() {
                    problems.push(format!(
                        "m{}: no session is live, yet ephemerals remain: {:?}",
                        m.id,
                        l.iter().take(10).collect::<Vec<_>>()
                    ));
                }
            }
            Err(e) => problems.push(format!("m{} cannot list {}: {e}", m.id, ephemerals::DIR)),
        }
    }
    let (eph_records, eph_stats) = eph_log.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let eph_violations = ephemerals::leftovers(&eph_records);
    let mut expiry_sorted = eph_stats.expiry_ms.clone();
    expiry_sorted.sort_unstable();
    problems.extend(eph_violations.iter().cloned());

    // ---- convergence ----
    let converged = cluster.wait_converged(Duration::from_secs(60)).await;
    if let Err(e) = &converged {
        problems.push(e.clone());
    }
    // The cluster started in term 1: every later term is an election some fault caused.
    let final_term = cluster
        .statuses()
        .await
        .iter()
        .filter_map(|(_, s)| s.as_ref().ok().map(|s| s.term))
        .max()
        .unwrap_or(0);

    // ---- linearizability ----
    let history = rec.finish();
    let check_started = Instant::now();
    let report = check_report(
        &Register::absent(),
        &history,
        &CheckOptions::with_time_limit(Duration::from_secs(300)),
    );
    let check_ms = check_started.elapsed().as_millis();
    if !report.verdict.is_ok() {
        problems.push(format!("register history: {}", report.verdict));
    }

    // ---- coverage ----
    let mut by_kind: BTreeMap<FaultKind, (u64, f64, Vec<u64>)> = BTreeMap::new();
    for f in &faults {
        let e = by_kind.entry(f.kind).or_default();
        e.0 += 1;
        e.1 += (f.heal_ns.saturating_sub(f.start_ns)) as f64 / 1e9;
        if let Some(r) = f.recovery_ms {
            e.2.push(r);
        }
    }
    for k in FaultKind::ALL {
        if !by_kind.contains_key(&k) {
            problems.push(format!(
                "fault {} was never injected (run longer)",
                k.name()
            ));
        }
    }
    let reg_total = stats.lock().unwrap_or_else(|p| p.into_inner()).total();
    if reg_total.ok < 200 {
        problems.push(format!(
            "too few successful register operations: {}",
            reg_total.ok
        ));
    }
    if seq_counts.ok < 20 {
        problems.push(format!(
            "too few acknowledged sequential creates: {}",
            seq_counts.ok
        ));
    }
    if eph_stats.closed < 3 || eph_stats.expired_after_drop < 3 {
        problems.push(format!(
            "too few sessions ended in a known way to check ephemerals: {} closed, {} seen to \
             expire after being dropped (need 3 of each)",
            eph_stats.closed, eph_stats.expired_after_drop
        ));
    }

    // ---- figures ----
    say!("");
    say!("==== docker fault suite: figures (seed {seed}) ====");
    say!(
        "time: nemesis {nemesis_secs:.1} s; workload {workload_secs:.1} s; total so far {:.1} s",
        started.elapsed().as_secs_f64()
    );
    {
        let st = stats.lock().unwrap_or_else(|p| p.into_inner());
        say!(
            "registers: {REGISTER_CLIENTS} clients, {} keys ({} generations of {}), {reg_ops} workload ops",
            keys.len(),
            generations + 1,
            registers::KEYS
        );
        for (k, c) in &st.by_kind {
            say!(
                "  {k:<7} ok {:>7}  fail {:>6}  info {:>6}",
                c.ok,
                c.fail,
                c.info
            );
        }
        let t = st.total();
        say!(
            "  total   ok {:>7}  fail {:>6}  info {:>6}  ({:.2} % indeterminate)",
            t.ok,
            t.fail,
            t.info,
            100.0 * t.info as f64 / t.total().max(1) as f64
        );
        let mut errs: Vec<_> = st.errors.iter().collect();
        errs.sort_by(|a, b| b.1.cmp(a.1));
        say!(
            "  errors: {}",
            errs.iter()
                .take(12)
                .map(|(e, n)| format!("{e} ×{n}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    say!(
        "sequential creates: {SEQ_CLIENTS} clients, ok {} fail {} info {}; {} children at the end; {} problem(s)",
        seq_counts.ok,
        seq_counts.fail,
        seq_counts.info,
        seq_children,
        seq_problems.len()
    );
    say!(
        "ephemerals: {EPH_WORKERS} workers; sessions opened ok {} fail {} info {}; closed {}, \
         known expired {} (of them dropped and seen to expire: {}, after p50 {} ms, max {} ms), \
         abandoned {}; ephemeral creates ok {} fail {} info {}",
        eph_stats.opens.ok,
        eph_stats.opens.fail,
        eph_stats.opens.info,
        eph_stats.closed,
        eph_stats.expired_known,
        eph_stats.expired_after_drop,
        pct(&expiry_sorted, 0.5),
        expiry_sorted.last().copied().unwrap_or(0),
        eph_stats.abandoned,
        eph_stats.creates.ok,
        eph_stats.creates.fail,
        eph_stats.creates.info
    );
    say!(
        "  checks right after a known end: {} ({} deferred to the end), violations {}; \
         all sessions gone {} s into the run; ephemerals left {}; final-phase problems {}",
        eph_stats.immediate_checks,
        eph_stats.unchecked,
        eph_violations.len(),
        sessions_gone_at.as_secs(),
        eph_left,
        eph_final_problems.len()
    );
    say!(
        "locks: {} workers; {}; {} problem(s)",
        locks::WORKERS,
        lock_report.figures,
        lock_report.problems.len()
    );
    say!(
        "exactly-once counter: {} workers; {}; {} problem(s)",
        counter::WORKERS,
        counter_report.figures,
        counter_report.problems.len()
    );
    say!("faults: {} injected", faults.len());
    let mut all_recovery: Vec<u64> = Vec::new();
    for (k, (n, secs, rec_ms)) in &by_kind {
        let mut r = rec_ms.clone();
        r.sort_unstable();
        all_recovery.extend(&r);
        say!(
            "  {:<15} {n:>3} times, {secs:>6.1} s under fault; recovery after heal p50 {} ms, max {} ms",
            k.name(),
            pct(&r, 0.5),
            r.last().copied().unwrap_or(0)
        );
    }
    all_recovery.sort_unstable();
    // Availability under fault: acknowledged register writes per second of fault, for faults
    // that hit the leader and for those that hit a follower (a majority remains either way).
    let mut avail: [(f64, usize); 2] = [(0.0, 0); 2];
    for (i, f) in faults.iter().enumerate() {
        let writes_during = history
            .ops()
            .iter()
            .filter(|op| {
                op.call_ns >= f.start_ns
                    && op.return_ns.is_some_and(|r| r <= f.heal_ns)
                    && op
                        .output
                        .as_ref()
                        .is_some_and(|o| is_write_ok(&op.input, o))
            })
            .count();
        let slot = &mut avail[usize::from(f.target_was_leader)];
        slot.0 += (f.heal_ns - f.start_ns) as f64 / 1e9;
        slot.1 += writes_during;
        say!(
            "  #{i:<3} {:>7.1} s {:<15} m{}{:<9} held {:>5} ms, {writes_during:>4} writes ok meanwhile, \
             write ok {} ms after heal, all up after {} ms",
            f.start_ns as f64 / 1e9,
            f.kind.name(),
            f.target,
            if f.target_was_leader { " (leader)" } else { "" },
            (f.heal_ns - f.start_ns) / 1_000_000,
            f.recovery_ms.map_or("NONE".into(), |r| r.to_string()),
            f.all_up_ms.map_or("NONE".into(), |r| r.to_string())
        );
    }
    let rate = |(secs, n): (f64, usize)| if secs > 0.0 { n as f64 / secs } else { 0.0 };
    say!(
        "writes acknowledged per second under fault: leader hit {:.1}/s ({:.1} s), follower hit \
         {:.1}/s ({:.1} s)",
        rate(avail[1]),
        avail[1].0,
        rate(avail[0]),
        avail[0].0
    );
    let slow: Vec<String> = faults
        .iter()
        .filter(|f| f.recovery_ms.is_some_and(|r| r > SLOW_RECOVERY_MS))
        .map(|f| {
            format!(
                "{} m{}{}",
                f.kind.name(),
                f.target,
                if f.target_was_leader { " (leader)" } else { "" }
            )
        })
        .collect();
    say!(
        "recovery after heal (all faults): p50 {} ms, p90 {} ms, max {} ms; after the final heal {} ms; \
         slower than {} s: {} {:?}",
        pct(&all_recovery, 0.5),
        pct(&all_recovery, 0.9),
        all_recovery.last().copied().unwrap_or(0),
        final_recovery.map_or("NONE".into(), |d| d.as_millis().to_string()),
        SLOW_RECOVERY_MS / 1000,
        slow.len(),
        slow
    );
    match &converged {
        Ok((index, hash, took)) => say!(
            "convergence: all members at applied index {index}, state hash {hash:#018x} ({} ms)",
            took.as_millis()
        ),
        Err(e) => say!("convergence: FAILED: {e}"),
    }
    say!(
        "terms: final term {final_term} after {} faults ({} elections)",
        faults.len(),
        final_term.saturating_sub(1)
    );
    let max_key = report.keys.iter().max_by_key(|k| k.ops);
    say!(
        "checker: {} ops ({} indeterminate) on {} keys, largest key {} ops; {} ms; verdict: {}",
        history.len(),
        history.indeterminate_count(),
        report.keys.len(),
        max_key.map_or(0, |k| k.ops),
        check_ms,
        report.verdict
    );
    say!(
        "RESULT: {} ({} problem(s)); {:.1} s in all",
        if problems.is_empty() {
            "PASSED"
        } else {
            "FAILED"
        },
        problems.len(),
        started.elapsed().as_secs_f64()
    );
    for p in &problems {
        say!("  problem: {p}");
    }

    // ---- files ----
    let failed = !problems.is_empty();
    let summary = serde_json::json!({
        "seed": seed,
        "passed": !failed,
        "problems": problems,
        "nemesis_secs": nemesis_secs,
        "total_secs": started.elapsed().as_secs_f64(),
        "registers": {
            "clients": REGISTER_CLIENTS,
            "keys": keys.len(),
            "by_kind": &*stats.lock().unwrap_or_else(|p| p.into_inner()),
            "total": reg_total,
        },
        "sequential": {
            "clients": SEQ_CLIENTS,
            "outcomes": seq_counts,
            "children": seq_children,
            "problems": seq_problems,
        },
        "ephemerals": {
            "workers": EPH_WORKERS,
            "stats": eph_stats,
            "violations": eph_violations,
            "left": eph_left,
        },
        "locks": {
            "workers": locks::WORKERS,
            "figures": &lock_report.figures,
            "problems": &lock_report.problems,
        },
        "counter": &counter_report.summary,
        "faults": faults,
        "recovery_ms": {
            "p50": pct(&all_recovery, 0.5),
            "p90": pct(&all_recovery, 0.9),
            "max": all_recovery.last().copied().unwrap_or(0),
            "final": final_recovery.map(|d| d.as_millis() as u64),
            "slower_than_5s": slow,
            "writes_per_s_leader_hit": rate(avail[1]),
            "writes_per_s_follower_hit": rate(avail[0]),
        },
        "final_term": final_term,
        "convergence": match &converged {
            Ok((i, h, t)) => serde_json::json!({"index": i, "hash": format!("{h:#018x}"), "ms": t.as_millis() as u64}),
            Err(e) => serde_json::json!({"error": e}),
        },
        "checker": {
            "ops": history.len(),
            "indeterminate": history.indeterminate_count(),
            "keys": report.keys.len(),
            "ms": check_ms as u64,
            "verdict": report.verdict.to_string(),
        },
    });
    let _ = std::fs::create_dir_all(&out_dir);
    let write = |name: &str, body: String| {
        let path = out_dir.join(name);
        if let Err(e) = std::fs::write(&path, body) {
            println!("cannot write {}: {e}", path.display());
        }
    };
    write(
        "summary.json",
        serde_json::to_string_pretty(&summary).unwrap_or_default(),
    );
    write("summary.txt", text.clone());
    if failed || keep {
        write(
            "registers.history.json",
            serde_json::to_string(&history).unwrap_or_default(),
        );
        write(
            "sequential.history.json",
            serde_json::to_string(&seq_ops).unwrap_or_default(),
        );
        write(
            "ephemerals.history.json",
            serde_json::to_string(&eph_records).unwrap_or_default(),
        );
        write(
            "faults.history.json",
            serde_json::to_string(&faults).unwrap_or_default(),
        );
        let mut keys_report = String::new();
        for k in &report.keys {
            let _ = writeln!(
                keys_report,
                "{} ops {} indeterminate {} steps {} ms {} {}",
                k.key,
                k.ops,
                k.indeterminate,
                k.steps,
                k.elapsed.as_millis(),
                k.verdict
            );
        }
        write("checker-keys.txt", keys_report);
        println!("histories written to {}", out_dir.display());
    }
    problems
}
