//! `baton lock` and `baton elect`: run a command under a lock, inspect a lock, campaign in an
//! election and observe its leaders.
//!
//! `baton lock PATH -- CMD ARGS...` opens a session, waits for the lock, runs CMD with
//! `BATON_FENCING_TOKEN`, `BATON_LOCK_NODE` (and `BATON_LOCK_PATH`, `BATON_SESSION_ID`) in
//! its environment, releases the lock when CMD exits, and exits with CMD's status (128 + N if
//! a signal N ended it). If the session is lost while CMD runs (the lock may then be granted
//! to someone else), it prints an error, sends CMD SIGTERM (SIGKILL after a grace period),
//! and exits with 1. SIGINT and SIGTERM received while CMD runs are passed on to it.

use std::time::Duration;

use clap::Args;
use serde_json::{json, Value};
use tokio::time::Instant;

use super::output::{self, Printer};
use super::CliError;
use crate::client::{
    Client, ClientError, Contender, LeaderResponse, LockMode, LockOptions, Reason, Session,
    SessionState, MAX_LOCK_WAIT,
};

/// How long CMD may take to exit after SIGTERM before it gets SIGKILL.
const KILL_GRACE: Duration = Duration::from_secs(10);

/// Arguments of `lock`.
#[derive(Debug, Args)]
#[command(after_help = "\
Exit status: CMD's status (128+N if signal N ended it); 1 if the lock was not granted or \
the session was lost while CMD ran; 127 if CMD cannot be run.

Examples:
  baton lock /locks/backup -- ./backup.sh --full
  baton lock --shared /locks/db -- ./report.sh
  baton lock --permits 3 --wait 60000 /locks/gpu -- ./train.sh
  baton lock --inspect /locks/db -o json")]
pub struct LockArgs {
    /// Print the holders and waiters of PATH (in queue order) instead of taking the lock.
    #[arg(long, conflicts_with_all = ["shared", "permits", "wait", "data", "command"])]
    pub inspect: bool,
    /// Take a shared (read) lock: held together with other shared holders, never with an
    /// exclusive one.
    #[arg(long, conflicts_with = "permits")]
    pub shared: bool,
    /// A counting semaphore with N permits: at most N holders at once.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub permits: Option<u32>,
    /// Wait at most MS milliseconds in the queue (0: fail at once with LOCK_HELD if the lock
    /// cannot be granted now). Default and maximum: 300000 (the server's limit).
    #[arg(long, value_name = "MS")]
    pub wait: Option<u64>,
    /// Data stored in the contender's node, shown by --inspect. Default: the pid and CMD.
    #[arg(long, value_name = "TEXT")]
    pub data: Option<String>,
    /// Timeout of the session that owns the lock, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 10_000)]
    pub session_timeout: u64,
    /// The lock path.
    pub path: String,
    /// The command to run while holding the lock, after `--`.
    #[arg(last = true, value_name = "CMD", required_unless_present = "inspect")]
    pub command: Vec<String>,
}

impl LockArgs {
    fn options(&self) -> LockOptions {
        let mut o = match (self.shared, self.permits) {
            (_, Some(n)) => LockOptions::semaphore(n),
            (true, None) => LockOptions::shared(),
            (false, None) => LockOptions::exclusive(),
        };
        let wait = self
            .wait
            .map_or(MAX_LOCK_WAIT, Duration::from_millis)
            .min(MAX_LOCK_WAIT);
        o.wait = Some(wait);
        o.data = match &self.data {
            Some(d) => d.clone().into_bytes(),
            None => default_data(&self.command),
        };
        o
    }
}

/// `pid N: CMD ARGS` (at most 256 bytes).
fn default_data(command: &[String]) -> Vec<u8> {
    let mut s = format!("pid {}: {}", std::process::id(), command.join(" "));
    if s.len() > 256 {
        let mut cut = 256;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s.into_bytes()
}

/// Arguments of `elect`.
#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  baton elect /elections/scheduler \"$(hostname):8080\"
  baton elect --observe /elections/scheduler")]
pub struct ElectArgs {
    /// Print the leader, then every change of leader in order, until Ctrl-C.
    #[arg(long, conflicts_with_all = ["value", "wait"])]
    pub observe: bool,
    /// Give up campaigning after MS milliseconds (exit 1, DEADLINE_EXCEEDED). Default: keep
    /// campaigning until Ctrl-C.
    #[arg(long, value_name = "MS", value_parser = clap::value_parser!(u64).range(1..))]
    pub wait: Option<u64>,
    /// Timeout of the session that owns the candidacy, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 10_000)]
    pub session_timeout: u64,
    /// The election path.
    pub path: String,
    /// The value published while leading (e.g. this candidate's address).
    #[arg(required_unless_present = "observe")]
    pub value: Option<String>,
}

// ----- signals -----

/// SIGINT and SIGTERM as a stream of signal names (`INT`, `TERM`). A handler that cannot be
/// installed is a signal that never comes.
struct Signals {
    #[cfg(unix)]
    int: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    fn new() -> Signals {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Signals {
                int: signal(SignalKind::interrupt()).ok(),
                term: signal(SignalKind::terminate()).ok(),
            }
        }
        #[cfg(not(unix))]
        Signals {}
    }

    /// The next signal.
    async fn next(&mut self) -> &'static str {
        #[cfg(unix)]
        {
            let int = async {
                match &mut self.int {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            let term = async {
                match &mut self.term {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = int => "INT",
                _ = term => "TERM",
            }
        }
        #[cfg(not(unix))]
        {
            if tokio::signal::ctrl_c().await.is_err() {
                std::future::pending::<()>().await;
            }
            "INT"
        }
    }
}

/// Sends signal `name` (`TERM`, `INT`) to process `pid` with kill(1).
async fn send_signal(pid: u32, name: &str) {
    let result = tokio::process::Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .status()
        .await;
    if let Err(e) = result {
        eprintln!("warning: cannot send SIG{name} to {pid}: {e}");
    }
}

/// The shell's view of an exit status: the code, or 128 + the signal.
fn exit_code(status: std::process::ExitStatus) -> u8 {
    if let Some(code) = status.code() {
        return u8::try_from(code & 0xff).unwrap_or(1);
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(sig) = status.signal() {
            return u8::try_from(128 + (sig & 0x7f)).unwrap_or(1);
        }
    }
    1
}

/// Closes the session, warning on failure (its ephemerals then go when it expires).
async fn close_quietly(session: &Session) {
    if let Err(e) = session.close().await {
        if !e.is(Reason::SessionExpired) {
            eprintln!(
                "warning: could not close session {} (it expires on its own): {e}",
                output::session_id(session.id())
            );
        }
    }
}

// ----- lock -----

/// `lock`.
pub async fn lock(client: &Client, args: LockArgs, out: &mut Printer) -> Result<(), CliError> {
    if args.inspect {
        return inspect(client, &args.path, out).await;
    }
    let mut signals = Signals::new();
    let session = client
        .open_session(Duration::from_millis(args.session_timeout))
        .await?;
    let options = args.options();
    let acquire = async {
        if args.wait == Some(0) {
            client.try_lock(&args.path, &session, options).await
        } else {
            client.lock(&args.path, &session, options).await
        }
    };
    tokio::pin!(acquire);
    let mut told = false;
    let acquired = loop {
        tokio::select! {
            r = &mut acquire => break r,
            _ = tokio::time::sleep(Duration::from_millis(500)), if !told => {
                told = true;
                eprintln!("waiting for {} ...", args.path);
            }
            sig = signals.next() => {
                close_quietly(&session).await;
                eprintln!("interrupted (SIG{sig}) while waiting for {}", args.path);
                return Err(CliError::Exit(130));
            }
        }
    };
    let guard = match acquired {
        Ok(g) => g,
        Err(e) => {
            close_quietly(&session).await;
            return Err(e.into());
        }
    };
    eprintln!(
        "acquired {} as {} (fencing token {})",
        args.path,
        guard.lock_node(),
        guard.fencing_token()
    );
    let mut cmd = tokio::process::Command::new(&args.command[0]);
    cmd.args(&args.command[1..])
        .env("BATON_FENCING_TOKEN", guard.fencing_token().to_string())
        .env("BATON_LOCK_NODE", guard.lock_node())
        .env("BATON_LOCK_PATH", &args.path)
        .env("BATON_SESSION_ID", output::session_id(session.id()));
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            let _ = guard.release().await;
            close_quietly(&session).await;
            eprintln!("error: cannot run {:?}: {e}", args.command[0]);
            return Err(CliError::Exit(127));
        }
    };
    let pid = child.id().unwrap_or(0);
    let lost = guard.lost();
    tokio::pin!(lost);
    let mut session_lost: Option<String> = None;
    let mut kill_at: Option<Instant> = None;
    let status = loop {
        let kill_timer = async {
            match kill_at {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            status = child.wait() => break status,
            state = &mut lost, if session_lost.is_none() => {
                let reason = match state {
                    SessionState::Lost { reason } => reason,
                    SessionState::Closed => "closed".to_string(),
                    SessionState::Alive => "unknown".to_string(),
                };
                eprintln!(
                    "error: session {} lost while {:?} runs ({reason}); the lock may be \
                     granted to someone else: stopping it with SIGTERM",
                    output::session_id(session.id()),
                    args.command[0]
                );
                session_lost = Some(reason);
                if pid != 0 {
                    send_signal(pid, "TERM").await;
                }
                kill_at = Some(Instant::now() + KILL_GRACE);
            }
            sig = signals.next() => {
                if pid != 0 {
                    send_signal(pid, sig).await;
                }
            }
            _ = kill_timer => {
                eprintln!("error: {:?} did not exit after SIGTERM; killing it", args.command[0]);
                let _ = child.start_kill();
                kill_at = None;
            }
        }
    };
    let status = status.map_err(|e| CliError::Other(format!("waiting for the command: {e}")))?;
    if session_lost.is_some() {
        close_quietly(&session).await;
        return Err(CliError::Exit(1));
    }
    if let Err(e) = guard.release().await {
        eprintln!("warning: releasing {} failed: {e}", args.path);
    }
    close_quietly(&session).await;
    match exit_code(status) {
        0 => Ok(()),
        code => Err(CliError::Exit(code)),
    }
}

fn mode_label(c: &Contender) -> String {
    if c.permits > 0 {
        return format!("SEMAPHORE({})", c.permits);
    }
    LockMode::try_from(c.mode)
        .map(|m| m.as_str_name().to_string())
        .unwrap_or_else(|_| c.mode.to_string())
}

fn contender_json(c: &Contender) -> Value {
    json!({
        "lock_node": c.lock_node,
        "session_id": c.session_id,
        "session_id_hex": output::session_id(c.session_id),
        "fencing_token": c.fencing_token,
        "mode": LockMode::try_from(c.mode).map(|m| m.as_str_name()).unwrap_or("UNKNOWN"),
        "permits": c.permits,
        "data": String::from_utf8_lossy(&c.data),
        "data_base64": output::base64(&c.data),
    })
}

/// The header of the `--inspect` table.
pub const INSPECT_HEADER: &str =
    "ROLE    NODE                            SESSION             TOKEN                MODE           DATA";

fn contender_row(role: &str, c: &Contender) -> String {
    let data: String = String::from_utf8_lossy(&c.data)
        .chars()
        .map(|ch| if ch.is_control() { ' ' } else { ch })
        .collect();
    format!(
        "{role:<7} {:<31} {:<19} {:<20} {:<14} {data}",
        c.lock_node,
        output::session_id(c.session_id),
        c.fencing_token,
        mode_label(c),
    )
}

/// `lock --inspect`.
async fn inspect(client: &Client, path: &str, out: &mut Printer) -> Result<(), CliError> {
    let state = client.inspect(path).await?;
    if out.json() {
        out.value(&json!({
            "path": path,
            "zxid": state.header.map(|h| h.zxid).unwrap_or(0),
            "holders": state.holders.iter().map(contender_json).collect::<Vec<_>>(),
            "waiters": state.waiters.iter().map(contender_json).collect::<Vec<_>>(),
        }))?;
        return Ok(());
    }
    if state.holders.is_empty() && state.waiters.is_empty() {
        out.line(&format!("{path}: free (no holders, no waiters)"))?;
        return Ok(());
    }
    out.line(INSPECT_HEADER)?;
    for c in &state.holders {
        out.line(&contender_row("holder", c))?;
    }
    for c in &state.waiters {
        out.line(&contender_row("waiter", c))?;
    }
    Ok(())
}

// ----- elect -----

/// `elect`.
pub async fn elect(client: &Client, args: ElectArgs, out: &mut Printer) -> Result<(), CliError> {
    if args.observe {
        return observe(client, &args.path, out).await;
    }
    let value = args.value.clone().unwrap_or_default();
    let mut signals = Signals::new();
    let session = client
        .open_session(Duration::from_millis(args.session_timeout))
        .await?;
    eprintln!(
        "campaigning for {} as session {}; Ctrl-C to withdraw",
        args.path,
        output::session_id(session.id())
    );
    let give_up = args
        .wait
        .map(|ms| Instant::now() + Duration::from_millis(ms));
    let leadership = loop {
        let wait = match give_up {
            Some(at) => at.saturating_duration_since(Instant::now()),
            None => MAX_LOCK_WAIT,
        }
        .min(MAX_LOCK_WAIT);
        let result = tokio::select! {
            r = client.campaign(&args.path, &session, value.clone(), Some(wait.max(Duration::from_millis(1)))) => r,
            sig = signals.next() => {
                close_quietly(&session).await;
                eprintln!("interrupted (SIG{sig}) while campaigning");
                return Err(CliError::Exit(130));
            }
        };
        match result {
            Ok(l) => break l,
            // The server's longest wait passed: campaign again, unless --wait is over.
            Err(e)
                if e.is(Reason::DeadlineExceeded)
                    && give_up.is_none_or(|at| Instant::now() + Duration::from_millis(1) < at) => {}
            Err(e) => {
                close_quietly(&session).await;
                return Err(e.into());
            }
        }
    };
    if out.json() {
        out.value(&json!({
            "path": args.path,
            "leader_node": leadership.leader_node,
            "term": leadership.term,
            "session_id": leadership.session_id,
            "session_id_hex": output::session_id(leadership.session_id),
        }))?;
    } else {
        out.line(&format!(
            "leader of {} with term {} ({})",
            args.path, leadership.term, leadership.leader_node
        ))?;
    }
    eprintln!("leading; Ctrl-C or SIGTERM to resign");
    let lost = async {
        let mut rx = session.state_receiver();
        let seen = rx.wait_for(|s| !s.is_alive()).await.map(|s| s.clone());
        seen.unwrap_or(SessionState::Lost {
            reason: "keepalive stopped".into(),
        })
    };
    tokio::select! {
        _ = signals.next() => {
            let resigned = client.resign(&leadership).await;
            close_quietly(&session).await;
            match resigned {
                Ok(_) => {
                    eprintln!("resigned");
                    Ok(())
                }
                Err(e) => Err(e.into()),
            }
        }
        state = lost => {
            let reason = match state {
                SessionState::Lost { reason } => reason,
                other => format!("{other:?}"),
            };
            Err(CliError::Other(format!(
                "SESSION_EXPIRED: session lost ({reason}); no longer leading {}",
                args.path
            )))
        }
    }
}

fn leader_json(path: &str, l: &LeaderResponse) -> Value {
    json!({
        "path": path,
        "zxid": l.header.as_ref().map(|h| h.zxid).unwrap_or(0),
        "has_leader": l.has_leader,
        "leader_node": l.leader_node,
        "term": l.term,
        "session_id": l.session_id,
        "session_id_hex": output::session_id(l.session_id),
        "value": String::from_utf8_lossy(&l.value),
        "value_base64": output::base64(&l.value),
    })
}

fn leader_line(l: &LeaderResponse) -> String {
    let zxid = l.header.as_ref().map(|h| h.zxid).unwrap_or(0);
    if !l.has_leader {
        return format!("zxid {zxid}: no leader");
    }
    format!(
        "zxid {zxid}: term {} leader {} session {} value {}",
        l.term,
        l.leader_node,
        output::session_id(l.session_id),
        String::from_utf8_lossy(&l.value)
    )
}

/// `elect --observe`: prints every change; observes again after transient failures (changes
/// made while disconnected are then not seen, which it says on stderr).
async fn observe(client: &Client, path: &str, out: &mut Printer) -> Result<(), CliError> {
    let mut signals = Signals::new();
    let mut last: Option<(bool, u64, Vec<u8>)> = None;
    let mut backoff = Duration::from_millis(100);
    loop {
        let result: Result<(), CliError> = async {
            let mut stream = tokio::select! {
                s = client.observe(path) => s?,
                _ = signals.next() => return Ok(()),
            };
            eprintln!(
                "observing {path} on {}",
                output::display_endpoint(stream.endpoint())
            );
            loop {
                let next = tokio::select! {
                    n = stream.next_leader() => n?,
                    _ = signals.next() => return Ok(()),
                };
                let Some(l) = next else {
                    return Err(ClientError::Status(tonic::Status::unavailable(
                        "the observe stream was closed by the server",
                    ))
                    .into());
                };
                backoff = Duration::from_millis(100);
                let key = (l.has_leader, l.term, l.value.clone());
                if last.as_ref() == Some(&key) {
                    continue; // the first message after observing again
                }
                last = Some(key);
                if out.json() {
                    out.value(&leader_json(path, &l))?;
                } else {
                    out.line(&leader_line(&l))?;
                }
            }
        }
        .await;
        match result {
            Err(CliError::Client(e))
                if e.is_retryable() || e.code() == tonic::Code::ResourceExhausted =>
            {
                eprintln!(
                    "observe interrupted ({e}); observing again (changes meanwhile are not shown)"
                );
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = signals.next() => return Ok(()),
                }
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::cli::{Cli, Command};
    use clap::Parser;

    fn parse(args: &[&str]) -> Result<Command, clap::Error> {
        Cli::try_parse_from(std::iter::once("baton").chain(args.iter().copied())).map(|c| c.command)
    }

    fn lock_args(args: &[&str]) -> LockArgs {
        match parse(args) {
            Ok(Command::Lock(a)) => a,
            other => panic!("not a lock: {other:?}"),
        }
    }

    #[test]
    fn lock_command_lines() {
        let a = lock_args(&["lock", "/l", "--", "sh", "-c", "echo $BATON_FENCING_TOKEN"]);
        assert_eq!(a.path, "/l");
        assert_eq!(a.command, ["sh", "-c", "echo $BATON_FENCING_TOKEN"]);
        let o = a.options();
        assert_eq!((o.mode, o.permits), (LockMode::Exclusive, 0));
        assert_eq!(o.wait, Some(MAX_LOCK_WAIT));
        let a = lock_args(&["lock", "--shared", "--wait", "1500", "/l", "--", "true"]);
        let o = a.options();
        assert_eq!(o.mode, LockMode::Shared);
        assert_eq!(o.wait, Some(Duration::from_millis(1500)));
        let a = lock_args(&[
            "lock",
            "--permits",
            "3",
            "--data",
            "me",
            "/s",
            "--",
            "x",
            "--y",
        ]);
        let o = a.options();
        assert_eq!((o.permits, o.data.as_slice()), (3, &b"me"[..]));
        assert_eq!(a.command, ["x", "--y"]);
        assert!(lock_args(&["lock", "--inspect", "/l", "-o", "json"]).inspect);
        for bad in [
            &["lock", "/l"][..],
            &["lock", "--shared", "--permits", "2", "/l", "--", "true"][..],
            &["lock", "--permits", "0", "/l", "--", "true"][..],
            &["lock", "--inspect", "/l", "--", "true"][..],
            &["lock", "--inspect", "--shared", "/l"][..],
        ] {
            let err = parse(bad).map(|_| ()).err();
            assert!(
                err.as_ref().is_some_and(|e| e.exit_code() == 2),
                "{bad:?} should be a usage error"
            );
        }
    }

    #[test]
    fn elect_command_lines() {
        match parse(&["elect", "/e", "host:1"]) {
            Ok(Command::Elect(a)) => {
                assert_eq!(
                    (a.path.as_str(), a.value.as_deref()),
                    ("/e", Some("host:1"))
                );
                assert!(!a.observe);
            }
            other => panic!("{other:?}"),
        }
        match parse(&["elect", "--observe", "/e"]) {
            Ok(Command::Elect(a)) => assert!(a.observe && a.value.is_none()),
            other => panic!("{other:?}"),
        }
        assert!(parse(&["elect", "/e"]).is_err());
        assert!(parse(&["elect", "--observe", "/e", "v"]).is_err());
    }

    #[test]
    fn default_data_is_bounded() {
        let long = vec!["é".repeat(400)];
        let d = default_data(&long);
        assert!(d.len() <= 256);
        assert!(std::str::from_utf8(&d).is_ok());
        let d = default_data(&["sleep".into(), "1".into()]);
        assert!(String::from_utf8_lossy(&d).ends_with(": sleep 1"));
    }

    #[test]
    fn exit_codes() {
        use std::process::Command;
        let st = Command::new("sh").args(["-c", "exit 3"]).status();
        assert_eq!(st.map(exit_code).ok(), Some(3));
        let st = Command::new("sh").args(["-c", "kill -TERM $$"]).status();
        assert_eq!(st.map(exit_code).ok(), Some(143));
    }

    #[test]
    fn rows() {
        let c = Contender {
            lock_node: "/l/lock-0000000001".into(),
            session_id: 0x2a,
            fencing_token: 77,
            mode: LockMode::Shared as i32,
            permits: 3,
            data: b"pid 1:\nx".to_vec(),
        };
        let row = contender_row("holder", &c);
        assert!(row.starts_with("holder  /l/lock-0000000001"), "{row}");
        assert!(row.contains("0x2a") && row.contains("SEMAPHORE(3)") && row.contains("pid 1: x"));
        let v = contender_json(&c);
        assert_eq!(v["fencing_token"], 77);
        assert_eq!(v["mode"], "SHARED");
        let l = LeaderResponse {
            has_leader: false,
            ..Default::default()
        };
        assert!(leader_line(&l).ends_with("no leader"));
    }
}
