//! `batond` as a child process, for the suites that need a real process (`durability`,
//! `processes`, `tls`): spawned from the binary cargo built, with no `BATON_*` variable
//! inherited from the environment and its output appended to a log file; stopped with SIGKILL
//! (and reaped) or SIGTERM (and waited for, bounded); signalled (SIGHUP); checked for an exit
//! of its own. Dropping a [`Batond`] kills the process and, when the test is panicking, prints
//! the tail of its log.

use std::ffi::{OsStr, OsString};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub use rustix::process::Signal;

/// A free port on 127.0.0.1 (the listener that found it is closed again).
pub fn free_port() -> u16 {
    for _ in 0..20 {
        if let Ok(l) = TcpListener::bind("127.0.0.1:0") {
            if let Ok(a) = l.local_addr() {
                return a.port();
            }
        }
    }
    panic!("no free port on 127.0.0.1");
}

/// `n` distinct free ports on 127.0.0.1.
pub fn free_ports(n: usize) -> Vec<u16> {
    // Hold every listener until all ports are chosen, so they are distinct.
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("addr").port())
        .collect()
}

/// The last `max_bytes` of a log file.
pub fn log_tail(log: &Path, max_bytes: u64) -> String {
    let Ok(mut f) = File::open(log) else {
        return String::from("(no log)");
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(max_bytes)));
    let mut s = String::new();
    let _ = f.read_to_string(&mut s);
    s
}

/// One `batond` process slot: its command line (id, ports, data directory, flags) stays the
/// same across restarts unless the test changes it.
pub struct Batond {
    /// Member id (`--id`).
    pub id: u64,
    /// Client port on 127.0.0.1 (`--listen-client`).
    pub client_port: u16,
    /// Peer port on 127.0.0.1 (`--listen-peer`).
    pub peer_port: u16,
    /// `--data-dir`.
    pub data_dir: PathBuf,
    /// Where stdout and stderr are appended.
    pub log: PathBuf,
    /// `--metrics-addr` (default `127.0.0.1:0`).
    pub metrics_addr: String,
    /// Flags added to the command line after the ones above.
    pub args: Vec<OsString>,
    child: Option<Child>,
}

impl Batond {
    /// A slot, not started.
    pub fn new(id: u64, client_port: u16, peer_port: u16, data_dir: PathBuf, log: PathBuf) -> Self {
        Batond {
            id,
            client_port,
            peer_port,
            data_dir,
            log,
            metrics_addr: "127.0.0.1:0".into(),
            args: Vec::new(),
            child: None,
        }
    }

    /// The same slot with `args` added to its command line.
    pub fn with_args<S: AsRef<OsStr>>(mut self, args: &[S]) -> Self {
        self.args.extend(args.iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// The client address as `127.0.0.1:port`.
    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }

    /// The client address.
    pub fn client_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.client_port))
    }

    /// Whether a process was started and not yet reaped.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Starts the process (it must not be running).
    pub fn spawn(&mut self) {
        assert!(self.child.is_none(), "batond {} already runs", self.id);
        let out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open server log");
        let err = out.try_clone().expect("clone log handle");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_batond"));
        for (k, _) in std::env::vars() {
            if k.starts_with("BATON_") {
                cmd.env_remove(k);
            }
        }
        cmd.arg("--id")
            .arg(self.id.to_string())
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--listen-client")
            .arg(self.endpoint())
            .arg("--listen-peer")
            .arg(format!("127.0.0.1:{}", self.peer_port))
            .arg("--metrics-addr")
            .arg(&self.metrics_addr)
            .args(&self.args)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err));
        self.child = Some(cmd.spawn().expect("spawn batond"));
    }

    /// Sends `sig` to the running process.
    pub fn signal(&self, sig: Signal) {
        let c = self
            .child
            .as_ref()
            .unwrap_or_else(|| panic!("batond {} is not running", self.id));
        rustix::process::kill_process(rustix::process::Pid::from_child(c), sig)
            .unwrap_or_else(|e| panic!("kill({}, {sig:?}): {e}", c.id()));
    }

    /// SIGKILL and reap (nothing if not running).
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then waits (bounded by `limit`) for the exit status, which it returns. A
    /// process still there at the limit is killed and the test panics with the log tail.
    pub async fn terminate(&mut self, limit: Duration) -> ExitStatus {
        self.signal(Signal::TERM);
        match self.wait_exit(limit).await {
            Some(st) => st,
            None => {
                self.kill9();
                panic!(
                    "batond {} did not exit within {limit:?} of SIGTERM; log tail:\n{}",
                    self.id,
                    log_tail(&self.log, 4096)
                );
            }
        }
    }

    /// SIGTERM and a clean exit (status 0) within 15 s, or the test panics with the log tail.
    /// Nothing if not running.
    pub async fn stop(&mut self) {
        if self.child.is_none() {
            return;
        }
        let st = self.terminate(Duration::from_secs(15)).await;
        assert!(
            st.success(),
            "batond {} exited with {st} after SIGTERM; log tail:\n{}",
            self.id,
            log_tail(&self.log, 4096)
        );
    }

    /// Waits (bounded) for the process to exit by itself; `None` if it still runs (or was
    /// not running).
    pub async fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        self.child.as_ref()?;
        loop {
            if let Some(st) = self.exited() {
                return Some(st);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The exit status if the process has exited (it is then reaped and no longer running).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        let st = self.child.as_mut()?.try_wait().expect("try_wait")?;
        self.child = None;
        Some(st)
    }

    /// Panics with the log tail if the process has exited.
    pub fn check_alive(&mut self) {
        if let Some(st) = self.exited() {
            panic!(
                "batond {} exited with {st}; log tail:\n{}",
                self.id,
                log_tail(&self.log, 4096)
            );
        }
    }

    /// The last `max_bytes` of the process's log.
    pub fn log_tail(&self, max_bytes: u64) -> String {
        log_tail(&self.log, max_bytes)
    }
}

impl Drop for Batond {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            eprintln!(
                "---- batond {} log tail ({}) ----\n{}\n---- end of log ----",
                self.id,
                self.log.display(),
                log_tail(&self.log, 8192)
            );
        }
    }
}
