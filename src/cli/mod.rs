//! The `baton` command-line client: argument definitions ([`Cli`]) and their execution
//! ([`run`]), on top of [`crate::client`].
//!
//! Output goes to stdout, as text (`-o table`, the default) or as one JSON object per line
//! (`-o json`). Errors go to stderr as one line, `error: REASON: detail`, with exit code 1;
//! usage errors exit with code 2 (clap's convention).

mod bench;
mod commands;
mod locks;
pub mod output;
mod snapshot;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::client::{Client, ClientError, ClientOptions, ClientTls};
pub use bench::{BenchArgs, Workload};
pub use locks::{ElectArgs, LockArgs};
pub use output::OutputFormat;
pub use snapshot::SnapshotCommand;

/// Command-line client for Baton, a replicated coordination service.
#[derive(Debug, Parser)]
#[command(name = "baton", version, max_term_width = 100)]
pub struct Cli {
    /// Client endpoints, comma-separated (host:port, http://host:port or https://host:port).
    /// Calls go to the first that answers and fail over to the others.
    #[arg(
        long,
        global = true,
        env = "BATON_ENDPOINTS",
        value_delimiter = ',',
        default_value = "127.0.0.1:7420",
        value_name = "A,B,..."
    )]
    pub endpoints: Vec<String>,

    /// Output format: text for people, or one JSON object per line for scripts.
    #[arg(
        short = 'o',
        long = "output",
        global = true,
        value_enum,
        default_value_t
    )]
    pub output: OutputFormat,

    /// Deadline of each request, in milliseconds.
    #[arg(
        long = "call-timeout",
        global = true,
        value_name = "MS",
        default_value_t = 10_000,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub call_timeout_ms: u64,

    /// Authenticate as USER:PASSWORD (ZooKeeper's digest scheme). Members accept it over
    /// TLS, or over plaintext when started with --allow-plaintext-credentials.
    #[arg(
        long,
        global = true,
        env = "BATON_USER",
        value_name = "USER:PASSWORD",
        hide_env_values = true
    )]
    pub user: Option<String>,
    /// CA certificate (PEM) that signs the members' certificates: connect over TLS.
    #[arg(long, global = true, env = "BATON_CACERT", value_name = "FILE")]
    pub cacert: Option<std::path::PathBuf>,

    /// Client certificate (PEM), for members that require one (with --key and --cacert).
    #[arg(long, global = true, env = "BATON_CERT", value_name = "FILE")]
    pub cert: Option<std::path::PathBuf>,

    /// Private key (PEM) of --cert.
    #[arg(long, global = true, env = "BATON_KEY", value_name = "FILE")]
    pub key: Option<std::path::PathBuf>,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// The client options the flags ask for.
    ///
    /// # Errors
    /// An unreadable certificate file, or --cert/--key without --cacert.
    pub fn client_options(&self) -> Result<ClientOptions, ClientError> {
        let tls =
            match (&self.cacert, &self.cert, &self.key) {
                (None, None, None) => None,
                (None, _, _) => return Err(ClientError::InvalidArgument(
                    "--cert and --key need --cacert (the CA that signs the members' certificates)"
                        .into(),
                )),
                (Some(ca), cert, key) => {
                    Some(ClientTls::from_files(ca, cert.as_deref(), key.as_deref())?)
                }
            };
        Ok(ClientOptions {
            timeout: Duration::from_millis(self.call_timeout_ms),
            tls,
            ..ClientOptions::default()
        })
    }
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a node and print the path created (-e: see --help).
    ///
    /// With -e and no --session, the command opens a session for its own lifetime: the
    /// ephemeral node is deleted when the command exits (use --wait to keep it until
    /// Ctrl-C). Pass --session ID to attach the node to an existing session instead.
    Create(CreateArgs),
    /// Print a node's data (-o json: data as UTF-8 and base64, and the Stat).
    Get(PathArgs),
    /// Replace a node's data.
    Set(SetArgs),
    /// List a node's children.
    Ls(LsArgs),
    /// Print a node's Stat.
    Stat(PathArgs),
    /// Delete a node (with -R, its whole subtree, deepest first).
    Rm(RmArgs),
    /// Print the events of a persistent watch until Ctrl-C.
    ///
    /// One line per event, `zxid TYPE path` (with -o json, one object per event). If the
    /// stream breaks (member down, connection lost), the watch is added again with the last
    /// zxid seen, so no event is lost or repeated.
    Watch(WatchArgs),
    /// Wait until the member has applied every committed write; print its zxid.
    Sync(SyncArgs),
    /// Open, list and describe sessions.
    #[command(subcommand)]
    Session(SessionCommand),
    /// Show the status of each endpoint's member.
    Status,
    /// Ask a member's metrics port whether it is ready (/readyz) or alive (--live, /livez);
    /// prints each check and exits 0 if it passes, 1 if not (for health checks of
    /// containers and supervisors).
    Probe(ProbeArgs),
    /// List the cluster's members.
    Members,
    /// Run a command while holding a lock, or inspect a lock's holders and waiters.
    ///
    /// `baton lock PATH -- CMD ARGS...` opens a session, waits for the lock (exclusive by
    /// default; --shared, --permits N), runs CMD with BATON_FENCING_TOKEN and BATON_LOCK_NODE
    /// in its environment, releases the lock when CMD exits, and exits with CMD's status. If
    /// the session is lost while CMD runs, CMD gets SIGTERM. `baton lock --inspect PATH`
    /// lists the holders and waiters.
    Lock(LockArgs),
    /// Campaign in an election and lead until Ctrl-C, or observe its leaders.
    ///
    /// `baton elect PATH VALUE` waits until this candidate leads, prints its term, holds the
    /// leadership until Ctrl-C or SIGTERM, then resigns. `baton elect --observe PATH` prints
    /// the leader and every change of leader, in order, until Ctrl-C.
    Elect(ElectArgs),
    /// Measure throughput and latency (put, get, create-delete, watch, lock), or create the
    /// keys of put and get, timed (fill).
    Bench(BenchArgs),
    /// Cluster administration: status, members, add/promote/remove a member, snapshot.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Backups: save a running cluster's state to a file, verify and describe a backup file,
    /// restore one into the data directories of a new cluster.
    #[command(subcommand)]
    Snapshot(SnapshotCommand),
    /// Read and change node ACLs (entries are SCHEME:ID:PERMS, e.g. world:anyone:r,
    /// digest:alice:HASH:cdrwa, auth::cdrwa, x509:CN=app:rw).
    #[command(subcommand)]
    Acl(AclCommand),
    /// Identities: who the member takes you to be, and digest ids for ACLs.
    #[command(subcommand)]
    Auth(AuthCommand),
}

/// `acl` subcommands.
#[derive(Debug, Subcommand)]
pub enum AclCommand {
    /// Print a node's ACL (digest hashes are masked without ADMIN on the node).
    Get {
        /// Absolute path.
        path: String,
    },
    /// Replace a node's ACL (needs ADMIN on it).
    Set {
        /// Absolute path.
        path: String,
        /// Entries, SCHEME:ID:PERMS with PERMS of c (create), d (delete), r (read),
        /// w (write), a (admin).
        #[arg(required = true)]
        entries: Vec<String>,
        /// Only if the node's aversion is this.
        #[arg(long, default_value_t = -1, allow_hyphen_values = true)]
        version: i32,
    },
}

/// `auth` subcommands.
#[derive(Debug, Subcommand)]
pub enum AuthCommand {
    /// Print the ids the member takes this client to be (`--user`, client certificate).
    Whoami,
    /// Print the digest id of USER:PASSWORD, for ACL entries (digest:ID:PERMS) and
    /// --super-digest. Computed locally; nothing is sent.
    Digest {
        /// The credentials.
        credentials: String,
    },
}

/// `cluster` subcommands. Changes are executed by the leader whichever member receives them.
#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Show the status of each endpoint's member (same as `baton status`).
    Status,
    /// List the members (voters and learners) from the replicated membership.
    Members,
    /// Add a member as a learner; start it first with an --initial-members list that
    /// includes it (it then waits to be contacted), promote it once it has caught up.
    Add {
        /// New member id.
        id: u64,
        /// Its peer address (host:port).
        peer_addr: String,
        /// Its client address (optional: the member records it itself once it runs).
        #[arg(long, default_value = "")]
        client_addr: String,
    },
    /// Promote a learner that has caught up to a voter.
    Promote {
        /// Member id.
        id: u64,
    },
    /// Remove a member (voter or learner).
    Remove {
        /// Member id.
        id: u64,
    },
    /// Take a snapshot on the member now (the log behind it is then purged).
    Snapshot,
    /// Where each endpoint's writes spend their time: per stage of the write path, the
    /// count, mean, p50, p99 and max (µs, or a count for sizes) since the member started or
    /// the last --reset.
    Stages {
        /// Empty the histograms after reading them.
        #[arg(long)]
        reset: bool,
    },
    /// The watches registered on the member (the first endpoint that answers): a summary by
    /// stream or by path, or every watch (--by none).
    Watches {
        /// Only watches whose path starts with this.
        #[arg(long, default_value = "")]
        prefix: String,
        /// Group by stream (client), by path, or list every watch.
        #[arg(long, value_enum, default_value = "stream")]
        by: WatchesBy,
    },
    /// Hand the leadership over to a voter (it must have the whole log; writes pause for the
    /// handover, tens of milliseconds).
    TransferLeader {
        /// The voter that is to lead.
        id: u64,
    },
    /// Change the member's log filter while it runs (RUST_LOG syntax, e.g. `debug` or
    /// `info,baton::consensus=trace`); prints the previous one. Not kept across a restart.
    LogLevel {
        /// The new filter.
        filter: String,
    },
}

/// How `cluster watches` groups the watches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum WatchesBy {
    /// By stream (one per client watcher), with the client's address.
    Stream,
    /// By watched path.
    Path,
    /// No grouping: every watch.
    None,
}

/// `probe` arguments.
#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// The member's metrics address (its --metrics-addr).
    #[arg(long, default_value = "127.0.0.1:7422")]
    pub addr: String,
    /// Ask /livez (is the process working) instead of /readyz (can it serve).
    #[arg(long)]
    pub live: bool,
}

/// A single path.
#[derive(Debug, Args)]
pub struct PathArgs {
    /// Absolute path of the node.
    pub path: String,
}

/// Arguments of `create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Ephemeral: deleted when its session ends (see --session and --wait).
    #[arg(short = 'e', long)]
    pub ephemeral: bool,
    /// Sequential: append a 10-digit counter to the name.
    #[arg(short = 's', long)]
    pub sequential: bool,
    /// Container: deleted once it has had a child and has none left.
    #[arg(long, conflicts_with_all = ["ephemeral", "sequential", "ttl"])]
    pub container: bool,
    /// Time to live: deleted when unmodified for MS milliseconds and childless.
    #[arg(long, value_name = "MS", conflicts_with = "ephemeral")]
    pub ttl: Option<i64>,
    /// Own the ephemeral node by this existing session (decimal or 0x hex) instead of a
    /// session opened for the command.
    #[arg(long, value_name = "ID", requires = "ephemeral", value_parser = parse_session_id)]
    pub session: Option<u64>,
    /// Timeout of the session opened for -e, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 10_000)]
    pub session_timeout: u64,
    /// With -e: keep the session, and so the node, alive until Ctrl-C.
    #[arg(long, requires = "ephemeral", conflicts_with = "session")]
    pub wait: bool,
    /// Absolute path (for -s, the prefix the counter is appended to).
    pub path: String,
    /// Initial data; `-` reads it from stdin. Empty if omitted.
    #[arg(allow_hyphen_values = true)]
    pub data: Option<String>,
    /// ACL entry SCHEME:ID:PERMS (repeatable); open to all if none.
    #[arg(long = "acl", value_name = "ENTRY")]
    pub acl: Vec<String>,
}

impl CreateArgs {
    /// The creation mode the flags ask for (clap has already rejected contradictions).
    pub fn mode(&self) -> crate::client::CreateMode {
        use crate::client::CreateMode as M;
        match (
            self.ephemeral,
            self.sequential,
            self.container,
            self.ttl.is_some(),
        ) {
            (_, _, true, _) => M::Container,
            (true, true, _, _) => M::EphemeralSequential,
            (true, false, _, _) => M::Ephemeral,
            (false, true, _, true) => M::PersistentSequentialWithTtl,
            (false, false, _, true) => M::PersistentWithTtl,
            (false, true, _, false) => M::PersistentSequential,
            (false, false, _, false) => M::Persistent,
        }
    }
}

/// Arguments of `set`.
#[derive(Debug, Args)]
pub struct SetArgs {
    /// Expected version (-1 = any).
    #[arg(short = 'v', long, default_value_t = -1, allow_negative_numbers = true)]
    pub version: i32,
    /// Absolute path.
    pub path: String,
    /// New data; `-` reads it from stdin.
    #[arg(allow_hyphen_values = true)]
    pub data: String,
}

/// Arguments of `ls`.
#[derive(Debug, Args)]
pub struct LsArgs {
    /// List the whole subtree, as full paths (the node itself first).
    #[arg(short = 'R', long)]
    pub recursive: bool,
    /// Long format: version, data length, children, mtime.
    #[arg(short = 'l', long)]
    pub long: bool,
    /// Absolute path.
    #[arg(default_value = "/")]
    pub path: String,
}

/// Arguments of `rm`.
#[derive(Debug, Args)]
pub struct RmArgs {
    /// Expected version of the node (-1 = any); with -R it applies to PATH itself.
    #[arg(short = 'v', long, default_value_t = -1, allow_negative_numbers = true)]
    pub version: i32,
    /// Delete the whole subtree, deepest nodes first.
    #[arg(short = 'R', long)]
    pub recursive: bool,
    /// Absolute path.
    pub path: String,
}

/// Arguments of `watch`.
#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Watch the whole subtree (PERSISTENT_RECURSIVE) instead of the node alone.
    #[arg(long)]
    pub recursive: bool,
    /// First replay every event after this zxid.
    #[arg(long, value_name = "ZXID")]
    pub from: Option<u64>,
    /// Absolute path.
    pub path: String,
}

/// Arguments of `sync`.
#[derive(Debug, Args)]
pub struct SyncArgs {
    /// Any valid path (kept for ZooKeeper compatibility).
    #[arg(default_value = "/")]
    pub path: String,
}

/// `session` subcommands.
#[derive(Debug, Subcommand)]
pub enum SessionCommand {
    /// Open a session, print its id, secret and timeout, and keep it alive until Ctrl-C
    /// (then close it).
    Open {
        /// Requested timeout in milliseconds (the server clamps it into its bounds).
        #[arg(long, value_name = "MS", default_value_t = 10_000)]
        timeout: u64,
    },
    /// List live sessions.
    Ls,
    /// Describe one session.
    Get {
        /// Session id (decimal or 0x hex).
        #[arg(value_parser = parse_session_id)]
        id: u64,
    },
}

fn parse_session_id(s: &str) -> Result<u64, String> {
    output::parse_session_id(s)
}

/// Why a command failed; displayed as one line.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A client call failed.
    #[error("{0}")]
    Client(#[from] ClientError),
    /// Reading input or writing output failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// Anything else, already phrased as `REASON: detail`.
    #[error("{0}")]
    Other(String),
    /// Exit with this status, nothing more to print (e.g. `baton lock` passing on its
    /// command's status).
    #[error("exit status {0}")]
    Exit(u8),
}

/// Runs a parsed command line; prints errors to stderr and returns the exit code.
pub async fn run(cli: Cli) -> ExitCode {
    match execute(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(CliError::Io(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(CliError::Exit(code)) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs a parsed command line.
///
/// # Errors
/// The first failure, as a [`CliError`].
pub async fn execute(cli: Cli) -> Result<(), CliError> {
    let mut out = output::Printer::new(cli.output);
    let mut options = cli.client_options()?;
    options.digest = cli.user.clone().map(crate::client::Secret);
    if let Command::Auth(AuthCommand::Digest { credentials }) = &cli.command {
        return commands::digest(credentials, &mut out);
    }
    let endpoints = &cli.endpoints;
    match cli.command {
        Command::Status | Command::Cluster(ClusterCommand::Status) => {
            return commands::status(endpoints, options, &mut out).await
        }
        Command::Cluster(ClusterCommand::Stages { reset }) => {
            return commands::stages(endpoints, options, reset, &mut out).await
        }
        Command::Bench(args) => return bench::run(endpoints, &options, args, &mut out).await,
        Command::Probe(args) => return commands::probe(&args, options.timeout, &mut out).await,
        Command::Snapshot(cmd) => return snapshot::run(endpoints, options, cmd, &mut out).await,
        _ => {}
    }
    let client = Client::connect_with(endpoints, options).await?;
    match cli.command {
        Command::Create(args) => commands::create(&client, args, &mut out).await,
        Command::Get(args) => commands::get(&client, &args.path, &mut out).await,
        Command::Set(args) => commands::set(&client, args, &mut out).await,
        Command::Ls(args) => commands::ls(&client, args, &mut out).await,
        Command::Stat(args) => commands::stat(&client, &args.path, &mut out).await,
        Command::Rm(args) => commands::rm(&client, args, &mut out).await,
        Command::Watch(args) => commands::watch(&client, args, &mut out).await,
        Command::Sync(args) => commands::sync(&client, &args.path, &mut out).await,
        Command::Session(cmd) => commands::session(&client, cmd, &mut out).await,
        Command::Members | Command::Cluster(ClusterCommand::Members) => {
            commands::members(&client, &mut out).await
        }
        Command::Cluster(cmd) => commands::cluster(&client, cmd, &mut out).await,
        Command::Lock(args) => locks::lock(&client, args, &mut out).await,
        Command::Elect(args) => locks::elect(&client, args, &mut out).await,
        Command::Acl(cmd) => commands::acl(&client, cmd, &mut out).await,
        Command::Auth(_) => commands::whoami(&client, &mut out).await,
        Command::Status | Command::Bench(_) | Command::Probe(_) | Command::Snapshot(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::CreateMode;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("baton").chain(args.iter().copied()))
    }

    fn create_args(args: &[&str]) -> CreateArgs {
        match parse(args).map(|c| c.command) {
            Ok(Command::Create(a)) => a,
            other => panic!("not a create: {other:?}"),
        }
    }

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_flags_anywhere() {
        let cli = parse(&["get", "/a", "-o", "json", "--endpoints", "a:1,b:2"])
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(cli.output, OutputFormat::Json);
        assert_eq!(cli.endpoints, vec!["a:1".to_string(), "b:2".to_string()]);
        let cli = parse(&["--endpoints=x:1", "status"]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(cli.endpoints, vec!["x:1".to_string()]);
        assert_eq!(cli.call_timeout_ms, 10_000);
    }

    #[test]
    fn create_modes() {
        assert_eq!(
            create_args(&["create", "/a"]).mode(),
            CreateMode::Persistent
        );
        assert_eq!(
            create_args(&["create", "-s", "/a"]).mode(),
            CreateMode::PersistentSequential
        );
        assert_eq!(
            create_args(&["create", "-e", "/a"]).mode(),
            CreateMode::Ephemeral
        );
        assert_eq!(
            create_args(&["create", "-e", "-s", "/a", "x"]).mode(),
            CreateMode::EphemeralSequential
        );
        assert_eq!(
            create_args(&["create", "--container", "/a"]).mode(),
            CreateMode::Container
        );
        assert_eq!(
            create_args(&["create", "--ttl", "500", "/a"]).mode(),
            CreateMode::PersistentWithTtl
        );
        assert_eq!(
            create_args(&["create", "--ttl", "500", "-s", "/a"]).mode(),
            CreateMode::PersistentSequentialWithTtl
        );
        let a = create_args(&["create", "-e", "--session", "0x10", "/a", "-"]);
        assert_eq!(a.session, Some(16));
        assert_eq!(a.data.as_deref(), Some("-"));
    }

    #[test]
    fn contradictory_create_flags_are_usage_errors() {
        for args in [
            &["create", "--container", "-e", "/a"][..],
            &["create", "--ttl", "5", "-e", "/a"][..],
            &["create", "--session", "5", "/a"][..],
            &["create", "--wait", "/a"][..],
            &["create", "-e", "--wait", "--session", "5", "/a"][..],
        ] {
            let err = parse(args).map(|_| ()).err();
            assert!(
                err.as_ref().is_some_and(|e| e.exit_code() == 2),
                "{args:?} should be a usage error"
            );
        }
    }

    #[test]
    fn versions_and_data() {
        match parse(&["set", "-v", "3", "/a", "-x"]).map(|c| c.command) {
            Ok(Command::Set(s)) => {
                assert_eq!(s.version, 3);
                assert_eq!(s.data, "-x");
            }
            other => panic!("{other:?}"),
        }
        match parse(&["rm", "-R", "/a"]).map(|c| c.command) {
            Ok(Command::Rm(r)) => {
                assert!(r.recursive);
                assert_eq!(r.version, -1);
            }
            other => panic!("{other:?}"),
        }
        match parse(&["rm", "-v", "-1", "/a"]).map(|c| c.command) {
            Ok(Command::Rm(r)) => assert_eq!(r.version, -1),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn other_commands() {
        match parse(&["ls", "-R", "-l"]).map(|c| c.command) {
            Ok(Command::Ls(l)) => {
                assert!(l.recursive && l.long);
                assert_eq!(l.path, "/");
            }
            other => panic!("{other:?}"),
        }
        match parse(&["watch", "--recursive", "--from", "12", "/a"]).map(|c| c.command) {
            Ok(Command::Watch(w)) => {
                assert!(w.recursive);
                assert_eq!(w.from, Some(12));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse(&["session", "get", "0x2a"]).map(|c| c.command),
            Ok(Command::Session(SessionCommand::Get { id: 42 }))
        ));
        assert!(matches!(
            parse(&["session", "open", "--timeout", "3000"]).map(|c| c.command),
            Ok(Command::Session(SessionCommand::Open { timeout: 3000 }))
        ));
        assert!(matches!(
            parse(&["sync"]).map(|c| c.command),
            Ok(Command::Sync(SyncArgs { path })) if path == "/"
        ));
        match parse(&[
            "snapshot",
            "restore",
            "b.snap",
            "--data-dir",
            "d",
            "--id",
            "2",
            "--initial-members",
            "1=a:1,2=b:2",
        ])
        .map(|c| c.command)
        {
            Ok(Command::Snapshot(SnapshotCommand::Restore {
                id,
                initial_members,
                cluster_token,
                ..
            })) => {
                assert_eq!(id, 2);
                assert_eq!(initial_members, "1=a:1,2=b:2");
                assert_eq!(cluster_token, "");
            }
            other => panic!("{other:?}"),
        }
        assert!(parse(&["snapshot", "restore", "b.snap", "--id", "1"]).is_err());
        assert!(matches!(
            parse(&["snapshot", "save", "b.snap"]).map(|c| c.command),
            Ok(Command::Snapshot(SnapshotCommand::Save { .. }))
        ));
        assert!(parse(&["nope"]).is_err());
        assert!(parse(&["get"]).is_err());
    }
}
