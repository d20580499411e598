//! Failover benchmark: three `batond` processes on loopback with the default timeouts, a few
//! writers through the surviving members, `kill -9` of the leader, and the time from the
//! kill to the first acknowledged write. Repeated `BATON_FAILOVER_KILLS` times (default 12);
//! the killed member is restarted on its data dir before the next round.
//!
//! `BATON_FAILOVER_MODE` picks how the leader goes: `kill` (SIGKILL, the default), `term`
//! (SIGTERM: a graceful stop, as in a rolling restart; the round also reports the longest
//! stall of acknowledged writes) or `stop` (SIGSTOP, a silent failure: no connection closes;
//! SIGCONT after the round).
//!
//! Run with `cargo bench --bench failover`. Prints one line per kill, with the phases read
//! from the survivors' logs (evidence that the leader is gone, a survivor stepping aside, the
//! successor elected by the fast path), and a JSON summary.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use baton::client::{Client, CreateOptions};

struct Member {
    id: u64,
    client: String,
    peer: String,
    dir: std::path::PathBuf,
    child: Option<Child>,
}

impl Member {
    fn spawn(&mut self, members: &str) {
        let child = Command::new(env!("CARGO_BIN_EXE_batond"))
            .args(["--id", &self.id.to_string()])
            .args(["--data-dir", &self.dir.display().to_string()])
            .args(["--listen-client", &self.client])
            .args(["--listen-peer", &self.peer])
            .args(["--metrics-addr", "127.0.0.1:0"])
            .args(["--initial-members", members])
            .args(["--log-format", "json"])
            .env(
                "RUST_LOG",
                std::env::var("BATON_FAILOVER_LOG").unwrap_or_else(|_| "warn,baton=info".into()),
            )
            .stdout(Stdio::null())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(self.dir.with_extension("log"))
                    .map(Stdio::from)
                    .unwrap_or_else(|_| Stdio::null()),
            )
            .spawn()
            .expect("spawn batond");
        self.child = Some(child);
    }

    /// Sends a signal by name (`TERM`, `STOP`, `CONT`).
    fn signal(&self, name: &str) {
        if let Some(c) = &self.child {
            let _ = Command::new("kill")
                .args([&format!("-{name}"), &c.id().to_string()])
                .status();
        }
    }

    /// Waits (bounded) for the process to exit after a SIGTERM.
    fn reap(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        if let Some(c) = self.child.as_mut() {
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    self.child = None;
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        self.kill();
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.kill();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

async fn leader_of(members: &[Member]) -> Option<usize> {
    for m in members {
        if m.child.is_none() {
            continue;
        }
        let Ok(c) = Client::connect([&m.client]).await else {
            continue;
        };
        if let Ok(st) = c.with_timeout(Duration::from_millis(500)).status().await {
            if st.leader_id != 0 {
                return members.iter().position(|m| m.id == st.leader_id);
            }
        }
    }
    None
}

/// Seconds since the Unix epoch of an RFC 3339 UTC timestamp (`2026-12-07T01:02:03.456789Z`),
/// as tracing's JSON logs write them; only the time of day is used, with the date of `now`.
fn log_time(ts: &str, now_secs: f64) -> Option<f64> {
    let t = ts.split('T').nth(1)?.trim_end_matches('Z');
    let mut parts = t.split(':');
    let h: f64 = parts.next()?.parse().ok()?;
    let m: f64 = parts.next()?.parse().ok()?;
    let s: f64 = parts.next()?.parse().ok()?;
    let day = (now_secs / 86_400.0).floor() * 86_400.0;
    let mut at = day + h * 3600.0 + m * 60.0 + s;
    if at > now_secs + 3600.0 {
        at -= 86_400.0;
    }
    Some(at)
}

fn unix_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Milliseconds after `kill_secs` of the first log line of `members` (other than `skip`)
/// containing `what`.
fn phase_ms(members: &[Member], skip: usize, what: &str, kill_secs: f64) -> Option<f64> {
    let now = unix_secs();
    let mut best: Option<f64> = None;
    for (i, m) in members.iter().enumerate() {
        if i == skip {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(m.dir.with_extension("log")) else {
            continue;
        };
        for line in text.lines().filter(|l| l.contains(what)) {
            let Some(ts) = line
                .split("\"timestamp\":\"")
                .nth(1)
                .and_then(|r| r.split('"').next())
            else {
                continue;
            };
            if let Some(at) = log_time(ts, now) {
                let ms = (at - kill_secs) * 1000.0;
                if ms >= -1.0 {
                    best = Some(best.map_or(ms, |b| b.min(ms)));
                }
            }
        }
    }
    best
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() {
    let kills: usize = std::env::var("BATON_FAILOVER_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12);
    let guard = tempfile::tempdir().expect("tempdir");
    let base = guard.path().to_path_buf();
    eprintln!("member data and logs under {}", base.display());
    // BATON_FAILOVER_KEEP=1 keeps the data and logs after the run.
    let _guard = if std::env::var_os("BATON_FAILOVER_KEEP").is_some() {
        let _ = guard.keep();
        None
    } else {
        Some(guard)
    };
    let mut members: Vec<Member> = (1..=3)
        .map(|id| Member {
            id,
            client: format!("127.0.0.1:{}", free_port()),
            peer: format!("127.0.0.1:{}", free_port()),
            dir: base.join(format!("m{id}")),
            child: None,
        })
        .collect();
    let list = members
        .iter()
        .map(|m| format!("{}={}", m.id, m.peer))
        .collect::<Vec<_>>()
        .join(",");
    for m in &mut members {
        m.spawn(&list);
    }
    let all: Vec<String> = members.iter().map(|m| m.client.clone()).collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    let warm = loop {
        match Client::connect(&all).await {
            Ok(c) => break c,
            Err(e) => {
                assert!(Instant::now() < deadline, "cannot connect: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    while warm.sync("/").await.is_err() {
        assert!(Instant::now() < deadline, "cluster did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = warm
        .create("/fo", Vec::new(), CreateOptions::persistent())
        .await;

    let mode = std::env::var("BATON_FAILOVER_MODE").unwrap_or_else(|_| "kill".into());
    let mut results_ms = Vec::new();
    let mut stalls_ms = Vec::new();
    let mut reads_ms = Vec::new();
    for round in 0..kills {
        let Some(li) = leader_of(&members).await else {
            eprintln!("round {round}: no leader found");
            continue;
        };
        let survivors: Vec<String> = members
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != li)
            .map(|(_, m)| m.client.clone())
            .collect();
        // Writers through the survivors only, running before and after the kill.
        let killed_at = Arc::new(AtomicU64::new(0));
        let first_ok = Arc::new(AtomicU64::new(u64::MAX));
        let acks = Arc::new(std::sync::Mutex::new(Vec::<u64>::new()));
        let first_read = Arc::new(AtomicU64::new(u64::MAX));
        let epoch = Instant::now();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut tasks = Vec::new();
        for w in 0..4 {
            let eps = vec![survivors[w % survivors.len()].clone()];
            let (killed_at, first_ok, stop) = (killed_at.clone(), first_ok.clone(), stop.clone());
            let acks = acks.clone();
            tasks.push(tokio::spawn(async move {
                let Ok(c) = Client::connect(&eps).await else {
                    return;
                };
                let c = c.with_timeout(Duration::from_millis(1500));
                let mut n = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    let sent = epoch.elapsed().as_micros() as u64;
                    let path = format!("/fo/r{round}-w{w}-{n}");
                    n += 1;
                    if c.create(&path, Vec::new(), CreateOptions::persistent())
                        .await
                        .is_ok()
                    {
                        let k = killed_at.load(Ordering::SeqCst);
                        let now = epoch.elapsed().as_micros() as u64;
                        if k != 0 && sent >= k {
                            first_ok.fetch_min(now, Ordering::SeqCst);
                        }
                        if let Ok(mut a) = acks.lock() {
                            a.push(now);
                        }
                    } else {
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                }
            }));
        }
        // Readers too: a linearizable read through each survivor.
        for ep in &survivors {
            let eps = vec![ep.clone()];
            let (killed_at, first_read, stop) =
                (killed_at.clone(), first_read.clone(), stop.clone());
            tasks.push(tokio::spawn(async move {
                let Ok(c) = Client::connect(&eps).await else {
                    return;
                };
                let c = c.with_timeout(Duration::from_millis(1500));
                while !stop.load(Ordering::SeqCst) {
                    let sent = epoch.elapsed().as_micros() as u64;
                    if c.get_data("/fo").await.is_ok() {
                        let k = killed_at.load(Ordering::SeqCst);
                        if k != 0 && sent >= k {
                            let now = epoch.elapsed().as_micros() as u64;
                            first_read.fetch_min(now, Ordering::SeqCst);
                        }
                    } else {
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                }
            }));
        }
        tokio::time::sleep(Duration::from_millis(1000)).await;
        killed_at.store(epoch.elapsed().as_micros() as u64, Ordering::SeqCst);
        let kill_secs = unix_secs();
        match mode.as_str() {
            "term" => members[li].signal("TERM"),
            "stop" => members[li].signal("STOP"),
            _ => members[li].kill(),
        }
        let kdeadline = Instant::now() + Duration::from_secs(30);
        while (first_ok.load(Ordering::SeqCst) == u64::MAX
            || first_read.load(Ordering::SeqCst) == u64::MAX)
            && Instant::now() < kdeadline
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // Writes go on for a while: the longest gap between acknowledged writes from the
        // signal on is the stall the clients saw.
        tokio::time::sleep(Duration::from_millis(1000)).await;
        stop.store(true, Ordering::SeqCst);
        for t in tasks {
            let _ = t.await;
        }
        let k = killed_at.load(Ordering::SeqCst);
        let stall_ms = {
            let mut a: Vec<u64> = acks
                .lock()
                .map(|a| a.iter().copied().filter(|t| *t >= k).collect())
                .unwrap_or_default();
            a.sort_unstable();
            let mut prev = k;
            let mut worst = 0;
            for t in a {
                worst = worst.max(t - prev);
                prev = t;
            }
            worst as f64 / 1000.0
        };
        match mode.as_str() {
            "term" => members[li].reap(Duration::from_secs(15)),
            "stop" => members[li].signal("CONT"),
            _ => {}
        }
        let ok = first_ok.load(Ordering::SeqCst);
        if ok == u64::MAX {
            eprintln!("round {round}: no write succeeded within 30 s of the kill");
        } else {
            let ms = (ok - killed_at.load(Ordering::SeqCst)) as f64 / 1000.0;
            let show = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1}"));
            let read = first_read.load(Ordering::SeqCst);
            let read_ms = (read != u64::MAX)
                .then(|| (read - killed_at.load(Ordering::SeqCst)) as f64 / 1000.0);
            if let Some(r) = read_ms {
                reads_ms.push(r);
            }
            eprintln!(
                "round {round}: {mode} of member {} -> first write {ms:.1} ms, first read {} ms, longest stall {stall_ms:.1} ms (evidence {} ms, stepped aside {} ms, elected {} ms)",
                members[li].id,
                show(read_ms),
                show(phase_ms(&members, li, "the leader is gone", kill_secs)),
                show(phase_ms(&members, li, "stepped aside for the successor", kill_secs)),
                show(phase_ms(&members, li, "elected by the failover fast path", kill_secs)),
            );
            results_ms.push(ms);
            stalls_ms.push(stall_ms);
        }
        if members[li].child.is_none() {
            members[li].spawn(&list);
        }
        let rdeadline = Instant::now() + Duration::from_secs(30);
        loop {
            let back = match Client::connect([&members[li].client]).await {
                Ok(c) => c.sync("/").await.is_ok(),
                Err(_) => false,
            };
            if back || Instant::now() > rdeadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let mut sorted = results_ms.clone();
    sorted.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    stalls_ms.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    reads_ms.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    println!(
        "{{\"workload\":\"failover\",\"mode\":\"{mode}\",\"kills\":{},\"measured\":{},\"p50_ms\":{:.1},\"max_ms\":{:.1},\"min_ms\":{:.1},\"read_p50_ms\":{:.1},\"read_max_ms\":{:.1},\"stall_p50_ms\":{:.1},\"stall_max_ms\":{:.1}}}",
        kills,
        sorted.len(),
        percentile(&sorted, 0.5),
        sorted.last().copied().unwrap_or(0.0),
        sorted.first().copied().unwrap_or(0.0),
        percentile(&reads_ms, 0.5),
        reads_ms.last().copied().unwrap_or(0.0),
        percentile(&stalls_ms, 0.5),
        stalls_ms.last().copied().unwrap_or(0.0)
    );
}
