//! Three real `batond` processes on loopback: the leader is killed with SIGKILL, writes go on
//! through the survivors, the killed member restarts on its data directory and catches up, and
//! all three end with every acknowledged write and the same state hash at the same index.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use baton::client::{Client, ClientOptions, CreateOptions, StatusResponse};
use baton::proto::v1::Role;

use crate::common::batond::{free_ports, log_tail, Batond};

/// The cluster of child processes; dropping it kills every child (the members are dropped
/// first, before the file system and the folder that hold their data).
struct Procs {
    members: Vec<Batond>,
    /// A file system made for the test (dropped before the folder that holds it).
    mount: Option<Tmpfs>,
    _dir: tempfile::TempDir,
}

/// A tmpfs mounted by the test; unmounted when dropped.
struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `mb` MiB at `path`, or `None` where mounting is not allowed.
    fn mount(path: &Path, mb: u64) -> Option<Tmpfs> {
        std::fs::create_dir_all(path).ok()?;
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mb}m"), "tmpfs"])
            .arg(path)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs {
            path: path.to_path_buf(),
        })
    }

    /// Grows (or shrinks) the file system to `mb` MiB.
    fn resize(&self, mb: u64) {
        let st = Command::new("mount")
            .args(["-o", &format!("remount,size={mb}m")])
            .arg(&self.path)
            .status()
            .expect("run mount");
        assert!(st.success(), "remount {} to {mb} MiB", self.path.display());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

fn options(timeout: Duration) -> ClientOptions {
    ClientOptions {
        timeout,
        connect_timeout: Duration::from_millis(500),
        ..ClientOptions::default()
    }
}

async fn connect(endpoints: &[String], timeout: Duration) -> Option<Client> {
    Client::connect_with(endpoints, options(timeout)).await.ok()
}

impl Procs {
    fn start() -> Procs {
        Procs::start_with(&[])
    }

    /// Three members started with `extra` flags each.
    fn start_with(extra: &[&str]) -> Procs {
        let dir = tempfile::Builder::new()
            .prefix("baton-procs-")
            .tempdir()
            .expect("temp dir");
        let ports = free_ports(6);
        let initial = (0..3)
            .map(|i| format!("{}=127.0.0.1:{}", i + 1, ports[2 * i + 1]))
            .collect::<Vec<_>>()
            .join(",");
        let members: Vec<Batond> = (0..3)
            .map(|i| {
                Procs::slot(
                    i as u64 + 1,
                    (ports[2 * i], ports[2 * i + 1]),
                    dir.path().join(format!("member-{}", i + 1)),
                    dir.path().join(format!("member-{}.log", i + 1)),
                    &initial,
                    extra,
                )
            })
            .collect();
        let mut p = Procs {
            members,
            mount: None,
            _dir: dir,
        };
        for m in &mut p.members {
            m.spawn();
        }
        p
    }

    /// Member `id`'s slot: its ports, data directory and log, `--initial-members initial`,
    /// a 2 s shutdown bound and the `extra` flags.
    fn slot(
        id: u64,
        (client_port, peer_port): (u16, u16),
        data_dir: PathBuf,
        log: PathBuf,
        initial: &str,
        extra: &[&str],
    ) -> Batond {
        Batond::new(id, client_port, peer_port, data_dir, log)
            .with_args(&[
                "--initial-members",
                initial,
                "--shutdown-timeout-ms",
                "2000",
            ])
            .with_args(extra)
    }

    /// One member (not started) whose data directory is on a tmpfs of `mb` MiB made for the
    /// test; `None` where this process may not mount file systems.
    fn single_on_tmpfs(mb: u64, extra: &[&str]) -> Option<Procs> {
        let dir = tempfile::Builder::new()
            .prefix("baton-disk-")
            .tempdir()
            .expect("temp dir");
        let mount = Tmpfs::mount(&dir.path().join("disk"), mb)?;
        let ports = free_ports(2);
        let m = Procs::slot(
            1,
            (ports[0], ports[1]),
            mount.path.join("data"),
            dir.path().join("member-1.log"),
            &format!("1=127.0.0.1:{}", ports[1]),
            extra,
        );
        Some(Procs {
            members: vec![m],
            mount: Some(mount),
            _dir: dir,
        })
    }

    /// Three members started, a leader elected and the persistent node `dir` created; with
    /// the client endpoints.
    async fn started_with_folder(dir: &str) -> (Procs, Vec<String>) {
        let mut p = Procs::start();
        p.wait_for_leader(Duration::from_secs(30)).await;
        let endpoints = p.endpoints_except(None);
        let setup = connect(&endpoints, Duration::from_secs(5))
            .await
            .expect("connect");
        eventually(
            &format!("create {dir}"),
            Duration::from_secs(20),
            || async {
                match setup.create(dir, "", CreateOptions::persistent()).await {
                    Ok(_) => Ok(()),
                    Err(e) if e.is(baton::client::Reason::NodeExists) => Ok(()),
                    Err(e) => Err(e.to_string()),
                }
            },
        )
        .await;
        (p, endpoints)
    }

    fn member(&mut self, id: u64) -> &mut Batond {
        self.members
            .iter_mut()
            .find(|m| m.id == id)
            .expect("known member")
    }

    fn endpoints_except(&self, skip: Option<u64>) -> Vec<String> {
        self.members
            .iter()
            .filter(|m| Some(m.id) != skip)
            .map(Batond::endpoint)
            .collect()
    }

    /// Status of member `id` after a `sync`, or `None` if it does not answer.
    async fn synced_status(&self, id: u64) -> Option<StatusResponse> {
        let ep = self.members.iter().find(|m| m.id == id)?.endpoint();
        let c = connect(&[ep], Duration::from_secs(2)).await?;
        c.sync("/").await.ok()?;
        c.status().await.ok()
    }

    /// Waits for a leader recognised by a majority of the running members.
    async fn wait_for_leader(&mut self, timeout: Duration) -> u64 {
        let deadline = Instant::now() + timeout;
        let mut last = String::new();
        for _ in 0..10_000 {
            for m in &mut self.members {
                m.check_alive();
            }
            let mut leaders = Vec::new();
            for m in self.members.iter().filter(|m| m.is_running()) {
                if let Some(c) = connect(&[m.endpoint()], Duration::from_secs(1)).await {
                    if let Ok(s) = c.status().await {
                        leaders.push((m.id, s.role, s.leader_id));
                    }
                }
            }
            for &(id, role, _) in &leaders {
                let agree = leaders.iter().filter(|(_, _, l)| *l == id).count();
                if role == Role::Leader as i32 && agree * 2 > self.members.len() {
                    return id;
                }
            }
            last = format!("(member, role, leader): {leaders:?}");
            if Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("no leader within {timeout:?}; last: {last}");
    }
}

/// Writes acknowledged so far, as `(path, data)`.
type Acked = Arc<Mutex<BTreeSet<(String, String)>>>;

/// Starts `n` writers, each with its own connection, creating `<prefix>w<writer>-<i>` with
/// distinct data until `stop` (bounded by count); acknowledged writes go to `acked`, and a
/// failed write is followed by `pause`.
async fn spawn_writers(
    endpoints: &[String],
    n: usize,
    prefix: &str,
    acked: &Acked,
    stop: &Arc<std::sync::atomic::AtomicBool>,
    pause: Duration,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut writers = Vec::new();
    for w in 0..n {
        let client = connect(endpoints, Duration::from_secs(2))
            .await
            .expect("connect writer");
        let (acked, stop, prefix) = (acked.clone(), stop.clone(), prefix.to_string());
        writers.push(tokio::spawn(async move {
            for i in 0..1_000_000u64 {
                if stop.load(std::sync::atomic::Ordering::SeqCst) {
                    break;
                }
                let path = format!("{prefix}w{w}-{i:07}");
                let data = format!("{prefix}{w}.{i}");
                match client
                    .create(&path, data.clone(), CreateOptions::persistent())
                    .await
                {
                    Ok(_) => {
                        acked.lock().expect("lock").insert((path, data));
                    }
                    Err(_) => tokio::time::sleep(pause).await,
                }
            }
        }));
    }
    writers
}

/// Once linearizable reads work again, every acknowledged `(path, data)` write under `dir` is
/// listed there; `what` names the run in the failure message.
async fn assert_none_lost(c: &Client, dir: &str, acked: &BTreeSet<(String, String)>, what: &str) {
    eventually("linearizable reads", Duration::from_secs(30), || async {
        c.sync("/").await.map(|_| ()).map_err(|e| e.to_string())
    })
    .await;
    let present: BTreeSet<String> = c
        .get_all_children(dir)
        .await
        .unwrap_or_else(|e| panic!("list {dir}: {e}"))
        .into_iter()
        .map(|n| format!("{dir}/{n}"))
        .collect();
    let lost: Vec<&(String, String)> = acked
        .iter()
        .filter(|(path, _)| !present.contains(path))
        .collect();
    assert!(
        lost.is_empty(),
        "{what}: {} of {} acknowledged writes lost, e.g. {:?}",
        lost.len(),
        acked.len(),
        &lost[..lost.len().min(5)]
    );
}

/// Retries `f` (bounded by count and time) until it returns `Ok`.
async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + timeout;
    let mut last = String::new();
    for _ in 0..1000 {
        match f().await {
            Ok(v) => return v,
            Err(e) => last = e,
        }
        if Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what}: not done within {timeout:?}; last error: {last}");
}

/// SIGKILL the leader of three `batond` processes: the survivors elect a new leader and keep
/// accepting writes; the killed member restarts on its data dir, and all three converge with
/// every acknowledged write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_killed_with_sigkill_survivors_continue_and_restarted_member_converges() {
    let mut p = Procs::start();
    let leader = p.wait_for_leader(Duration::from_secs(30)).await;
    let all = connect(&p.endpoints_except(None), Duration::from_secs(5))
        .await
        .expect("connect");
    eventually("create /proc", Duration::from_secs(20), || async {
        match all.create("/proc", "", CreateOptions::persistent()).await {
            Ok(_) => Ok(()),
            Err(e) if e.is(baton::client::Reason::NodeExists) => Ok(()),
            Err(e) => Err(e.to_string()),
        }
    })
    .await;
    let mut acked: BTreeSet<(String, String)> = BTreeSet::new();
    for i in 0..30 {
        let path = format!("/proc/before-{i:02}");
        all.create(&path, format!("b{i}"), CreateOptions::persistent())
            .await
            .unwrap_or_else(|e| panic!("write {path} on a healthy cluster: {e}"));
        acked.insert((path, format!("b{i}")));
    }

    p.member(leader).kill9();

    let survivors = connect(&p.endpoints_except(Some(leader)), Duration::from_secs(5))
        .await
        .expect("connect to the survivors");
    eventually(
        "first write through the survivors",
        Duration::from_secs(20),
        || async {
            match survivors
                .create("/proc/after-00", "a0", CreateOptions::persistent())
                .await
            {
                Ok(_) => Ok(()),
                Err(e) if e.is(baton::client::Reason::NodeExists) => Ok(()),
                Err(e) => Err(e.to_string()),
            }
        },
    )
    .await;
    acked.insert(("/proc/after-00".into(), "a0".into()));
    let new_leader = p.wait_for_leader(Duration::from_secs(20)).await;
    assert_ne!(new_leader, leader);
    // The survivors found the killed leader gone by its closed connections (the failover fast
    // path), not only by their timers.
    for m in p.members.iter().filter(|m| m.id != leader) {
        let c = connect(&[m.endpoint()], Duration::from_secs(2))
            .await
            .expect("connect to a survivor");
        let s = c.status().await.expect("status");
        assert!(
            s.leaders_found_gone >= 1,
            "member {} did not find the killed leader gone: {s:?}",
            m.id
        );
    }
    for i in 1..30 {
        let path = format!("/proc/after-{i:02}");
        survivors
            .create(&path, format!("a{i}"), CreateOptions::persistent())
            .await
            .unwrap_or_else(|e| panic!("write {path} through the survivors: {e}"));
        acked.insert((path, format!("a{i}")));
    }

    p.member(leader).spawn();

    // Every member holds every acknowledged write (linearizable reads through each member).
    let ids: Vec<u64> = p.members.iter().map(|m| m.id).collect();
    for &id in &ids {
        let ep = p.member(id).endpoint();
        let c = eventually("connect", Duration::from_secs(20), || async {
            connect(std::slice::from_ref(&ep), Duration::from_secs(3))
                .await
                .ok_or_else(|| format!("member {id} does not accept connections"))
        })
        .await;
        eventually(
            &format!("member {id} serves linearizable reads"),
            Duration::from_secs(30),
            || async { c.sync("/").await.map(|_| ()).map_err(|e| e.to_string()) },
        )
        .await;
        let children = c.get_all_children("/proc").await.expect("list /proc");
        assert_eq!(children.len(), acked.len(), "member {id}: {children:?}");
        for (path, data) in &acked {
            // A linearizable read is refused (UNAVAILABLE) while its leader cannot confirm a
            // quorum in time; reads are idempotent, so it is sent again.
            let d = eventually(
                &format!("read {path} on member {id}"),
                Duration::from_secs(10),
                || async {
                    match c.get_data(path).await {
                        Ok((d, _)) => Ok(d),
                        Err(e) if e.is_retryable() => Err(e.to_string()),
                        Err(e) => panic!("{path} on member {id}: {e}"),
                    }
                },
            )
            .await;
            assert_eq!(d, data.as_bytes(), "{path} on member {id}");
        }
    }

    // Same state hash at the same applied index on all three.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = Vec::new();
    for _ in 0..300 {
        let mut seen = Vec::new();
        for &id in &ids {
            if let Some(s) = p.synced_status(id).await {
                seen.push((id, s.state_hash_index, s.state_hash));
            }
        }
        if seen.len() == ids.len() && seen.iter().all(|s| (s.1, s.2) == (seen[0].1, seen[0].2)) {
            println!(
                "processes: converged at index {} with hash {:#x}",
                seen[0].1, seen[0].2
            );
            return;
        }
        last = seen;
        assert!(
            Instant::now() < deadline,
            "members did not converge: {last:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("members did not converge: {last:?}");
}

/// SIGKILL all three members at once while writers are busy, three times over: after every
/// restart of the whole cluster, every write that was acknowledged before the kill is there
/// with its value (the log is `fdatasync`ed on a majority before a write is acknowledged, and
/// the state machine is rebuilt from sled, snapshots and the log).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_three_killed_with_sigkill_lose_no_acknowledged_write() {
    let (mut p, endpoints) = Procs::started_with_folder("/all").await;
    let acked: Acked = Arc::default();
    for round in 0..3 {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writers = spawn_writers(
            &endpoints,
            6,
            &format!("/all/r{round}-"),
            &acked,
            &stop,
            Duration::from_millis(20),
        )
        .await;
        tokio::time::sleep(Duration::from_millis(1500 + 500 * round)).await;
        // Everything acknowledged so far must survive; writes in flight may go either way.
        let before: BTreeSet<(String, String)> = acked.lock().expect("lock").clone();
        for m in &mut p.members {
            m.kill9();
        }
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        for w in writers {
            let _ = w.await;
        }
        assert!(
            before.len() > 20,
            "round {round}: only {} writes",
            before.len()
        );
        for m in &mut p.members {
            m.spawn();
        }
        p.wait_for_leader(Duration::from_secs(30)).await;
        let c = connect(&endpoints, Duration::from_secs(5))
            .await
            .expect("connect after restart");
        assert_none_lost(&c, "/all", &before, &format!("round {round}")).await;
        for (path, data) in before.iter().rev().take(50) {
            let (d, _) = c.get_data(path).await.expect("read back");
            assert_eq!(d, data.as_bytes(), "{path}");
        }
        println!(
            "processes: round {round}: {} acknowledged writes, all present after kill -9 of all three",
            before.len()
        );
    }
}

/// A rolling restart while writers run: each member in turn gets SIGTERM (exiting 0), starts
/// again on its data directory, and the cluster has a leader again before the next one goes.
/// No acknowledged write is lost, and all three end with the same state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_restart_with_sigterm_loses_no_acknowledged_write() {
    let (mut p, endpoints) = Procs::started_with_folder("/roll").await;
    let acked: Acked = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers = spawn_writers(
        &endpoints,
        4,
        "/roll/",
        &acked,
        &stop,
        Duration::from_millis(10),
    )
    .await;
    for id in [1, 2, 3] {
        tokio::time::sleep(Duration::from_millis(700)).await;
        p.member(id).stop().await;
        p.member(id).spawn();
        p.wait_for_leader(Duration::from_secs(30)).await;
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    for w in writers {
        let _ = w.await;
    }
    let acked = acked.lock().expect("lock").clone();
    assert!(acked.len() > 50, "only {} writes acknowledged", acked.len());
    let c = connect(&endpoints, Duration::from_secs(5))
        .await
        .expect("connect after the restarts");
    assert_none_lost(&c, "/roll", &acked, "the rolling restart").await;
    println!(
        "processes: rolling restart: {} acknowledged writes, all present",
        acked.len()
    );
}

/// Value written by the full-disk tests: 128 KiB, distinct per key.
fn big_value(i: usize) -> Vec<u8> {
    let mut v = vec![(i % 251) as u8; 128 * 1024];
    v[..8].copy_from_slice(&(i as u64).to_le_bytes());
    v
}

/// One member on a small file system with a space reserve: writes are refused with
/// RESOURCE_EXHAUSTED / NOSPACE before the disk is full, while reads, deletes and a session's
/// keep-alives go on; once space is freed the alarm clears by itself and writes resume;
/// SIGTERM still ends the process cleanly, and a restart finds every acknowledged write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_disk_refuses_writes_with_nospace_and_resumes_once_space_is_freed() {
    let extra = [
        "--wal-segment-mb",
        "1",
        "--space-reserve-mb",
        "16",
        "--snapshot-every",
        "100",
        "--keep-logs",
        "50",
    ];
    let Some(mut p) = Procs::single_on_tmpfs(64, &extra) else {
        eprintln!("SKIPPED: this process may not mount a tmpfs");
        return;
    };
    let disk = p.mount.as_ref().map(|m| m.path.clone()).expect("mounted");
    let ballast = disk.join("ballast");
    std::fs::write(&ballast, vec![7u8; 16 * 1024 * 1024]).expect("write the ballast");
    p.member(1).spawn();
    p.wait_for_leader(Duration::from_secs(20)).await;
    let eps = p.endpoints_except(None);
    let c = connect(&eps, Duration::from_secs(5))
        .await
        .expect("connect");
    let session = c
        .open_session(Duration::from_secs(2))
        .await
        .expect("session");

    // Write until NOSPACE has held for 2 s (bounded: 600 writes, 120 s).
    let mut acked = Vec::new();
    let mut refused_since: Option<Instant> = None;
    let started = Instant::now();
    let mut i = 0;
    while i < 600 && started.elapsed() < Duration::from_secs(120) {
        let path = format!("/k{i}");
        match c
            .create(&path, big_value(i), CreateOptions::persistent())
            .await
        {
            Ok(_) => {
                acked.push(i);
                refused_since = None;
                i += 1;
            }
            Err(e) => {
                assert!(
                    e.is(baton::client::Reason::NoSpace)
                        && e.code() == tonic::Code::ResourceExhausted,
                    "write {i} failed with {e}, not NOSPACE"
                );
                let since = *refused_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= Duration::from_secs(2) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    assert!(
        refused_since.is_some(),
        "600 writes of 128 KiB never met the reserve"
    );
    assert!(
        acked.len() > 10,
        "only {} writes before NOSPACE",
        acked.len()
    );
    eprintln!(
        "{} writes of 128 KiB acknowledged before NOSPACE held",
        acked.len()
    );
    p.member(1).check_alive();
    let alarms = c.get_all_children("/baton/alarms").await.expect("alarms");
    assert_eq!(alarms, vec!["nospace-1".to_string()]);

    // Reads, deletes and the session go on; new data is still refused.
    let (d, _) = c.get_data("/k0").await.expect("read while short");
    assert_eq!(d, big_value(0));
    c.delete("/k0", -1).await.expect("delete while short");
    let e = c
        .create("/more", b"x", CreateOptions::persistent())
        .await
        .expect_err("still short");
    assert!(e.is(baton::client::Reason::NoSpace), "{e}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    c.get_session(session.id())
        .await
        .expect("the session outlived its 2 s timeout through keep-alives while short");

    // Free space: the alarm clears by itself and writes resume.
    std::fs::remove_file(&ballast).expect("remove the ballast");
    eventually("writes resume", Duration::from_secs(20), || async {
        c.create("/after", b"ok", CreateOptions::persistent())
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    })
    .await;
    let alarms = c.get_all_children("/baton/alarms").await.expect("alarms");
    assert!(alarms.is_empty(), "alarm still raised: {alarms:?}");
    drop(session);
    drop(c);

    // SIGTERM ends it cleanly; a restart has every acknowledged write.
    p.member(1).stop().await;
    p.member(1).spawn();
    p.wait_for_leader(Duration::from_secs(20)).await;
    let c = connect(&eps, Duration::from_secs(5))
        .await
        .expect("reconnect");
    for &i in acked.iter().filter(|&&i| i != 0) {
        let (d, _) = c
            .get_data(&format!("/k{i}"))
            .await
            .expect("acknowledged write");
        assert!(d == big_value(i), "/k{i} has other data after the restart");
    }
    assert!(
        c.exists("/k0").await.expect("exists").is_none(),
        "the delete held"
    );
    assert_eq!(c.get_data("/after").await.expect("after").0, b"ok");
}

/// With the reserve turned off, the disk really fills: the member must not linger half-alive
/// (the Raft core stopped, the process still running) but exit non-zero at once, so that a
/// supervisor restarts it; once there is space again, the restart has every acknowledged write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_without_a_reserve_ends_the_process_and_a_restart_loses_nothing() {
    let extra = ["--wal-segment-mb", "1", "--space-reserve-mb", "0"];
    let Some(mut p) = Procs::single_on_tmpfs(40, &extra) else {
        eprintln!("SKIPPED: this process may not mount a tmpfs");
        return;
    };
    p.member(1).spawn();
    p.wait_for_leader(Duration::from_secs(20)).await;
    let eps = p.endpoints_except(None);
    let c = connect(&eps, Duration::from_secs(2))
        .await
        .expect("connect");

    let mut acked = Vec::new();
    let mut first_error: Option<(usize, String)> = None;
    let started = Instant::now();
    for i in 0..1000 {
        if started.elapsed() > Duration::from_secs(120) {
            break;
        }
        match c
            .create(&format!("/k{i}"), big_value(i), CreateOptions::persistent())
            .await
        {
            Ok(_) => acked.push(i),
            Err(e) => {
                first_error = Some((i, e.to_string()));
                break;
            }
        }
    }
    let (at, err) = first_error.expect("1000 writes of 128 KiB fit on a 40 MiB disk");
    eprintln!(
        "first failed write: {at} ({err}); {} acknowledged",
        acked.len()
    );
    let status = p
        .member(1)
        .wait_exit(Duration::from_secs(15))
        .await
        .unwrap_or_else(|| {
            panic!(
                "batond still runs 15 s after the disk filled; log tail:\n{}",
                log_tail(&p.members[0].log, 4096)
            )
        });
    assert!(
        !status.success(),
        "batond exited with {status} on a full disk"
    );
    drop(c);

    p.mount.as_ref().expect("mounted").resize(256);
    p.member(1).spawn();
    p.wait_for_leader(Duration::from_secs(30)).await;
    let c = connect(&eps, Duration::from_secs(5))
        .await
        .expect("reconnect");
    for &i in &acked {
        let (d, _) = c
            .get_data(&format!("/k{i}"))
            .await
            .unwrap_or_else(|e| panic!("acknowledged /k{i} lost: {e}"));
        assert!(d == big_value(i), "/k{i} has other data after the restart");
    }
    c.create("/after", b"ok", CreateOptions::persistent())
        .await
        .expect("writes work again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_filter_changes_while_the_member_runs() {
    let (p, endpoints) = Procs::started_with_folder("/logs").await;
    let one = connect(&endpoints[..1], Duration::from_secs(5))
        .await
        .expect("connect");
    let log = &p.members[0].log;
    let debug_lines = || {
        std::fs::read_to_string(log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("DEBUG"))
            .count()
    };
    assert_eq!(debug_lines(), 0, "info by default");
    let previous = one.set_log_level("debug,h2=warn").await.expect("set debug");
    assert_eq!(
        previous, "info",
        "the filter the process was started with (RUST_LOG)"
    );
    for i in 0..20 {
        one.create(&format!("/logs/{i}"), "", CreateOptions::persistent())
            .await
            .expect("write");
    }
    eventually(
        "debug lines in the log",
        Duration::from_secs(10),
        || async {
            if debug_lines() > 0 {
                Ok(())
            } else {
                Err("no DEBUG line yet".to_string())
            }
        },
    )
    .await;
    let err = one
        .set_log_level("info,=[")
        .await
        .expect_err("invalid filter");
    assert!(err.is(baton::client::Reason::BadArguments), "{err}");
    assert_eq!(
        one.set_log_level("info").await.expect("back"),
        "debug,h2=warn"
    );
    let before = debug_lines();
    for i in 20..40 {
        one.create(&format!("/logs/{i}"), "", CreateOptions::persistent())
            .await
            .expect("write");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(debug_lines(), before, "no DEBUG line once back at info");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_operations_are_logged_with_their_place_and_never_their_data() {
    let mut p = Procs::start_with(&["--slow-request-ms", "0", "--slow-apply-ms", "0"]);
    p.wait_for_leader(Duration::from_secs(30)).await;
    let endpoints = p.endpoints_except(None);
    let c = connect(&endpoints, Duration::from_secs(5))
        .await
        .expect("connect");
    eventually("a write", Duration::from_secs(20), || async {
        c.create("/slow-op", "canary-7f3a-data", CreateOptions::persistent())
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    })
    .await;
    let logs = || {
        p.members
            .iter()
            .map(|m| std::fs::read_to_string(&m.log).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n")
    };
    eventually("slow-operation lines", Duration::from_secs(10), || async {
        let text = logs();
        let request = text.lines().any(|l| {
            l.contains("request took too long")
                && l.contains("baton.v1.ZNodes/Create")
                && l.contains("/slow-op")
                && l.contains("took_ms")
                && l.contains("member")
                && l.contains("term")
        });
        let apply = text
            .lines()
            .any(|l| l.contains("operation took too long") && l.contains("apply"));
        if request && apply {
            Ok(())
        } else {
            Err(format!("request line {request}, apply line {apply}"))
        }
    })
    .await;
    assert!(
        !logs().contains("canary-7f3a"),
        "data never appears in the log"
    );
}

/// Secrets in logs (ZooKeeper's CVE-2026-24308, etcd's CVE-2021-28235): with every member
/// logging at TRACE, credentials sent by clients, a wrong super password and the client's
/// own `Debug` output never show the password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_never_reach_logs_secret_leak() {
    let super_id = baton::tree::acl::digest_id("root", "canary-7f3a-root");
    let mut p = Procs::start_with(&["--allow-plaintext-credentials", "--super-digest", &super_id]);
    p.wait_for_leader(Duration::from_secs(30)).await;
    let endpoints = p.endpoints_except(None);
    for e in &endpoints {
        let one = connect(std::slice::from_ref(e), Duration::from_secs(5))
            .await
            .expect("connect");
        one.set_log_level("trace").await.expect("trace");
    }
    let c = connect(&endpoints, Duration::from_secs(5))
        .await
        .expect("connect");
    let alice = c.with_digest("alice", "canary-7f3a-alice").expect("alice");
    let root = c.with_digest("root", "canary-7f3a-root").expect("root");
    let guess = c.with_digest("root", "canary-7f3a-guess").expect("guess");
    eventually("writes as alice", Duration::from_secs(20), || async {
        alice
            .create(
                "/secret-hygiene",
                "",
                CreateOptions::persistent().with_acl(vec![baton::client::Acl {
                    perms: baton::tree::acl::ALL,
                    id: baton::client::AclId::new("auth", ""),
                }]),
            )
            .await
            .map(|_| ())
            .or_else(|e| {
                if e.is(baton::client::Reason::NodeExists) {
                    Ok(())
                } else {
                    Err(e)
                }
            })
            .map_err(|e| e.to_string())
    })
    .await;
    alice
        .get_data("/secret-hygiene")
        .await
        .expect("alice reads");
    assert!(root.who_am_i().await.expect("whoami").superuser);
    let e = guess.get_data("/").await.expect_err("wrong super password");
    assert!(e.is(baton::client::Reason::BadCredentials), "{e}");
    let debug = format!("{alice:?} {root:?} {guess:?}");
    assert!(
        !debug.contains("canary-7f3a"),
        "Debug shows a password: {debug}"
    );
    let options = baton::client::ClientOptions {
        digest: Some(baton::client::Secret("alice:canary-7f3a-alice".into())),
        ..Default::default()
    };
    assert!(!format!("{options:?}").contains("canary-7f3a"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let logs: String = p
        .members
        .iter()
        .map(|m| std::fs::read_to_string(&m.log).unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        logs.lines().filter(|l| l.contains("TRACE")).count() > 100,
        "the members logged at TRACE"
    );
    let leaks: Vec<&str> = logs.lines().filter(|l| l.contains("canary-7f3a")).collect();
    assert!(leaks.is_empty(), "a password reached the log: {leaks:?}");
}

/// Waits (bounded) until `seen` holds, polling every 200 µs on a blocking thread; true if it
/// did.
async fn poll_fast(limit: Duration, seen: impl Fn() -> bool + Send + 'static) -> bool {
    tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if seen() {
                return true;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        false
    })
    .await
    .expect("poll")
}

/// Kill -9 in the middle of a catch-up by snapshot, on both ends, while writers go on: a
/// follower whose data directory was wiped is killed while it installs the snapshot it was
/// sent (its snapshot file being written), and, wiped again, has its leader killed 150 ms
/// after it starts, while it is being caught up. Every acknowledged write survives, and all
/// three end with the same state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_during_a_snapshot_install_and_a_catch_up_loses_nothing() {
    let mut p = Procs::start_with(&["--snapshot-every", "100", "--keep-logs", "20"]);
    let leader = p.wait_for_leader(Duration::from_secs(30)).await;
    let endpoints = p.endpoints_except(None);
    let c = connect(&endpoints, Duration::from_secs(5))
        .await
        .expect("connect");
    eventually("create /si", Duration::from_secs(20), || async {
        match c.create("/si", "", CreateOptions::persistent()).await {
            Ok(_) => Ok(()),
            Err(e) if e.is(baton::client::Reason::NodeExists) => Ok(()),
            Err(e) => Err(e.to_string()),
        }
    })
    .await;
    // A tree worth a snapshot that takes a moment to install.
    for b in 0..40 {
        let mut ops = baton::client::MultiOps::new();
        for i in 0..100 {
            ops = ops.create(
                &format!("/si/base-{b:02}-{i:03}"),
                vec![b'v'; 512],
                CreateOptions::persistent(),
            );
        }
        let r = c.multi(ops.into_ops()).await.expect("fill");
        assert!(r.succeeded, "{r:?}");
    }
    let acked: Acked = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers = spawn_writers(
        &endpoints,
        3,
        "/si/",
        &acked,
        &stop,
        Duration::from_millis(20),
    )
    .await;
    let follower = if leader == 3 { 2 } else { 3 };

    // 1. Killed while installing.
    p.member(follower).kill9();
    let dir = p.member(follower).data_dir.clone();
    std::fs::remove_dir_all(&dir).expect("wipe");
    p.member(follower).spawn();
    let snaps = dir.join("snapshots");
    let installing = poll_fast(Duration::from_secs(30), move || {
        std::fs::read_dir(&snaps).is_ok_and(|d| {
            d.flatten()
                .any(|e| e.file_name().to_string_lossy().ends_with(".snap.tmp"))
        })
    })
    .await;
    p.member(follower).kill9();
    assert!(
        installing,
        "member {follower} was never seen installing a snapshot"
    );
    p.member(follower).spawn();

    // 2. The leader killed while the wiped member catches up (it is sent the snapshot and
    //    the log after it within the first second or so).
    tokio::time::sleep(Duration::from_millis(500)).await;
    p.member(follower).kill9();
    std::fs::remove_dir_all(&dir).expect("wipe");
    let sender = p.wait_for_leader(Duration::from_secs(30)).await;
    p.member(follower).spawn();
    tokio::time::sleep(Duration::from_millis(150)).await;
    p.member(sender).kill9();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    p.member(sender).spawn();

    p.wait_for_leader(Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    for w in writers {
        let _ = w.await;
    }
    let acked: BTreeSet<(String, String)> = acked.lock().expect("lock").clone();
    assert!(acked.len() > 20, "only {} writes acknowledged", acked.len());
    for id in [1, 2, 3] {
        let client = connect(&[p.member(id).endpoint()], Duration::from_secs(5))
            .await
            .expect("connect member");
        assert_none_lost(&client, "/si", &acked, &format!("member {id}")).await;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut seen = Vec::new();
        for id in [1, 2, 3] {
            if let Some(s) = p.synced_status(id).await {
                seen.push((s.state_hash_index, s.state_hash));
            }
        }
        if seen.len() == 3 && seen.iter().all(|s| *s == seen[0]) {
            println!(
                "processes: {} acknowledged writes survived kill -9 during an install and a catch-up",
                acked.len()
            );
            return;
        }
        assert!(
            Instant::now() < deadline,
            "members did not converge: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
