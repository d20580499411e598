//! Server configuration: flags, `BATON_*` environment variables and an optional TOML file,
//! validated once. Precedence: flag > environment > file > default.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use serde::Deserialize;

/// Configuration problems, reported before anything starts.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The TOML file could not be read or parsed.
    #[error("config file {path}: {msg}")]
    File {
        /// File.
        path: PathBuf,
        /// What went wrong.
        msg: String,
    },
    /// A value is out of range or malformed.
    #[error("invalid config: {0}")]
    Invalid(String),
}

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, clap::ValueEnum, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable.
    #[default]
    Pretty,
    /// One JSON object per line.
    Json,
}

/// `batond` flags. Every flag also reads `BATON_<NAME>` and the `[server]`-less keys of the
/// TOML file given by `--config` (same names with `_` instead of `-`).
#[derive(Debug, Default, Parser, Deserialize)]
#[command(name = "batond", version, about = "Baton coordination service member")]
#[serde(deny_unknown_fields)]
pub struct Args {
    /// TOML config file.
    #[arg(long, env = "BATON_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// This member's id (> 0).
    #[arg(long, env = "BATON_ID")]
    pub id: Option<u64>,
    /// Data directory.
    #[arg(long, env = "BATON_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Client gRPC listen address.
    #[arg(long, env = "BATON_LISTEN_CLIENT")]
    pub listen_client: Option<String>,
    /// Peer (replication) listen address.
    #[arg(long, env = "BATON_LISTEN_PEER")]
    pub listen_peer: Option<String>,
    /// Client address advertised to other members and clients (default: the listen address).
    #[arg(long, env = "BATON_ADVERTISE_CLIENT")]
    pub advertise_client: Option<String>,
    /// Peer address advertised to other members (default: the listen address).
    #[arg(long, env = "BATON_ADVERTISE_PEER")]
    pub advertise_peer: Option<String>,
    /// Initial members `id=host:peerport,...`; empty = a single-member cluster of this member.
    #[arg(long, env = "BATON_INITIAL_MEMBERS")]
    pub initial_members: Option<String>,
    /// Log format.
    #[arg(long, env = "BATON_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// Largest znode data in bytes (default 1 MiB).
    #[arg(long, env = "BATON_MAX_DATA_BYTES")]
    pub max_data_bytes: Option<usize>,
    /// Longest path in bytes (default 4096).
    #[arg(long, env = "BATON_MAX_PATH_BYTES")]
    pub max_path_bytes: Option<usize>,
    /// Deepest path in components (default 256).
    #[arg(long, env = "BATON_MAX_PATH_DEPTH")]
    pub max_path_depth: Option<usize>,
    /// Most ops in one Multi (default 1000).
    #[arg(long, env = "BATON_MAX_MULTI_OPS")]
    pub max_multi_ops: Option<usize>,
    /// Smallest negotiated session timeout in ms (default 2000).
    #[arg(long, env = "BATON_SESSION_TIMEOUT_MIN_MS")]
    pub session_timeout_min_ms: Option<u64>,
    /// Largest negotiated session timeout in ms (default 60000).
    #[arg(long, env = "BATON_SESSION_TIMEOUT_MAX_MS")]
    pub session_timeout_max_ms: Option<u64>,
    /// How long the request ids of a client that stopped writing are remembered, in ms
    /// (default 600000: 10 minutes; must exceed the time a client keeps retrying one write).
    #[arg(long, env = "BATON_CLIENT_TTL_MS")]
    pub client_ttl_ms: Option<u64>,
    /// Most clients whose request ids are remembered; beyond it the least recently active are
    /// forgotten first (default 100000).
    #[arg(long, env = "BATON_MAX_CLIENTS")]
    pub max_clients: Option<usize>,
    /// Events kept for watch resume (default 100000).
    #[arg(long, env = "BATON_WATCH_HISTORY")]
    pub watch_history: Option<usize>,
    /// Pending deliveries per watch stream before it is cut off (default 4096).
    #[arg(long, env = "BATON_WATCH_BUFFER")]
    pub watch_buffer: Option<usize>,
    /// Largest GetChildren page (default 10000).
    #[arg(long, env = "BATON_MAX_CHILDREN_PAGE")]
    pub max_children_page: Option<usize>,
    /// Raft heartbeat interval in ms (default 50). Also the AppendEntries timeout.
    #[arg(long, env = "BATON_HEARTBEAT_MS")]
    pub heartbeat_ms: Option<u64>,
    /// Smallest election timeout in ms (default 150). A follower campaigns once it has heard
    /// nothing from the leader for the largest timeout (the leader lease) plus its own random
    /// timeout in [min, max]; that is how a silent leader (paused, cut off) is replaced. A
    /// leader whose process is gone is replaced at once (the failover fast path).
    #[arg(long, env = "BATON_ELECTION_TIMEOUT_MIN_MS")]
    pub election_timeout_min_ms: Option<u64>,
    /// Largest election timeout in ms (default 250).
    #[arg(long, env = "BATON_ELECTION_TIMEOUT_MAX_MS")]
    pub election_timeout_max_ms: Option<u64>,
    /// Log entries between automatic snapshots (default 20000).
    #[arg(long, env = "BATON_SNAPSHOT_EVERY")]
    pub snapshot_every: Option<u64>,
    /// Log entries kept behind a snapshot before purging (default 5000).
    #[arg(long, env = "BATON_KEEP_LOGS")]
    pub keep_logs: Option<u64>,
    /// Bound in ms on one snapshot chunk sent to a member, the last one included, which is
    /// answered once the member has installed the whole snapshot (default 60000).
    #[arg(long, env = "BATON_SNAPSHOT_INSTALL_TIMEOUT_MS")]
    pub snapshot_install_timeout_ms: Option<u64>,
    /// Most client requests packed into one log entry (default 1024).
    #[arg(long, env = "BATON_MAX_BATCH")]
    pub max_batch: Option<usize>,
    /// sled page-cache size in MiB (default 8). sled holds the state machine; the tree is
    /// served from memory, so the cache matters little.
    #[arg(long, env = "BATON_CACHE_MB")]
    pub cache_mb: Option<u64>,
    /// Size of a write-ahead-log segment file in MiB (default 32). Segments are zero-filled
    /// ahead of use and deleted whole once a snapshot covers them.
    #[arg(long, env = "BATON_WAL_SEGMENT_MB")]
    pub wal_segment_mb: Option<u64>,
    /// How often the leader looks for expired TTL nodes, in ms (default 500).
    #[arg(long, env = "BATON_TTL_CHECK_MS")]
    pub ttl_check_ms: Option<u64>,
    /// How long graceful shutdown may take before exiting anyway, in ms (default 10000).
    #[arg(long, env = "BATON_SHUTDOWN_TIMEOUT_MS")]
    pub shutdown_timeout_ms: Option<u64>,
    /// Free space, in MiB, kept in reserve on the data directory's file system (default 64;
    /// 0 turns the check off). Below it the member raises the cluster's NOSPACE alarm, and
    /// writes are refused until the space is back.
    #[arg(long, env = "BATON_SPACE_RESERVE_MB")]
    pub space_reserve_mb: Option<u64>,
    /// Most MiB the data directory may use (default 0: no quota). Above it the member raises
    /// the NOSPACE alarm, as for the space reserve.
    #[arg(long, env = "BATON_QUOTA_MB")]
    pub quota_mb: Option<u64>,
    /// Address of the HTTP port serving /metrics, /livez, /readyz and /health (default
    /// 127.0.0.1 with the client port + 2, e.g. 127.0.0.1:7422; `off` for none).
    #[arg(long, env = "BATON_METRICS_ADDR")]
    pub metrics_addr: Option<String>,
    /// Most client connections from one IP address (default 1000).
    #[arg(long, env = "BATON_MAX_CONNECTIONS_PER_IP")]
    pub max_connections_per_ip: Option<usize>,
    /// Most client connections in all (default 10000).
    #[arg(long, env = "BATON_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Most concurrent streams (calls) on one client connection (default 256).
    #[arg(long, env = "BATON_MAX_STREAMS_PER_CONNECTION")]
    pub max_streams_per_connection: Option<u32>,
    /// Most short requests served at once; more are refused with RESOURCE_EXHAUSTED /
    /// OVERLOADED (default 2000). Streams and waits (watch, keep-alive, lock acquire) are not
    /// counted.
    #[arg(long, env = "BATON_MAX_IN_FLIGHT")]
    pub max_in_flight: Option<usize>,
    /// Most watches one watch stream may hold (default 10000).
    #[arg(long, env = "BATON_MAX_WATCHES_PER_STREAM")]
    pub max_watches_per_stream: Option<usize>,
    /// Most watches on this member (default 1000000).
    #[arg(long, env = "BATON_MAX_WATCHES")]
    pub max_watches: Option<usize>,
    /// A client request slower than this many ms is logged "request took too long" (default 300).
    #[arg(long, env = "BATON_SLOW_REQUEST_MS")]
    pub slow_request_ms: Option<u64>,
    /// An apply slower than this many ms is logged "operation took too long" (default 100).
    #[arg(long, env = "BATON_SLOW_APPLY_MS")]
    pub slow_apply_ms: Option<u64>,
    /// A log sync slower than this many ms is logged (default 1000).
    #[arg(long, env = "BATON_SLOW_FLUSH_MS")]
    pub slow_flush_ms: Option<u64>,
    /// A snapshot build or install slower than this many ms is logged (default 10000).
    #[arg(long, env = "BATON_SLOW_SNAPSHOT_MS")]
    pub slow_snapshot_ms: Option<u64>,
    /// Refuse anonymous callers with UNAUTHENTICATED, except health checks and Auth.WhoAmI.
    #[arg(long, env = "BATON_REQUIRE_AUTH", num_args = 0..=1, default_missing_value = "true")]
    pub require_auth: Option<bool>,
    /// Accept digest credentials on plaintext connections (by default only over TLS).
    #[arg(
        long,
        env = "BATON_ALLOW_PLAINTEXT_CREDENTIALS",
        num_args = 0..=1,
        default_missing_value = "true"
    )]
    pub allow_plaintext_credentials: Option<bool>,
    /// Super principals by digest id, comma-separated `user:base64(sha1(user:password))`
    /// (`baton auth digest user:password` prints one). Every ACL check passes for them.
    #[arg(long, env = "BATON_SUPER_DIGEST")]
    pub super_digest: Option<String>,
    /// Super principals by client-certificate identity, comma-separated.
    #[arg(long, env = "BATON_SUPER_X509")]
    pub super_x509: Option<String>,
    /// Which part of a client certificate is the caller's x509 id: dn (the subject, as
    /// ZooKeeper), cn, or san (first URI, else DNS name). Default dn.
    #[arg(long, env = "BATON_X509_IDENTITY", value_enum)]
    pub x509_identity: Option<crate::auth::X509Identity>,
    /// This member's certificate chain (PEM). With --key and --peer-ca it turns TLS on for
    /// both ports; it must carry the SAN URI `baton://member/<id>` and the names clients and
    /// peers reach the member by. Reloaded on SIGHUP.
    #[arg(long, env = "BATON_CERT", value_name = "FILE")]
    pub cert: Option<PathBuf>,
    /// The private key of --cert (PEM).
    #[arg(long, env = "BATON_KEY", value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// The CA certificate(s) that sign member certificates (PEM). The peer port requires a
    /// certificate from it that names the member the request claims to come from.
    #[arg(long, env = "BATON_PEER_CA", value_name = "FILE")]
    pub peer_ca: Option<PathBuf>,
    /// The CA certificate(s) that sign client certificates (PEM). When given, the client port
    /// requires a client certificate from it.
    #[arg(long, env = "BATON_CLIENT_CA", value_name = "FILE")]
    pub client_ca: Option<PathBuf>,
    /// Bound on one TLS handshake in ms (default 10000).
    #[arg(long, env = "BATON_TLS_HANDSHAKE_TIMEOUT_MS")]
    pub tls_handshake_timeout_ms: Option<u64>,
}

/// The validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// Member id.
    pub id: u64,
    /// Data directory.
    pub data_dir: PathBuf,
    /// Client listen address.
    pub listen_client: SocketAddr,
    /// Peer listen address.
    pub listen_peer: SocketAddr,
    /// Advertised client address (None = the bound address).
    pub advertise_client: Option<String>,
    /// Advertised peer address (None = the bound address).
    pub advertise_peer: Option<String>,
    /// Initial members: id → peer address. Empty = single member.
    pub initial_members: BTreeMap<u64, String>,
    /// Log format.
    pub log_format: LogFormat,
    /// Largest znode data.
    pub max_data_bytes: usize,
    /// Longest path.
    pub max_path_bytes: usize,
    /// Deepest path.
    pub max_path_depth: usize,
    /// Most ops per Multi.
    pub max_multi_ops: usize,
    /// Session timeout bounds.
    pub session_timeout_min: Duration,
    /// Session timeout bounds.
    pub session_timeout_max: Duration,
    /// How long an idle client's request ids are remembered.
    pub client_ttl: Duration,
    /// Most clients whose request ids are remembered.
    pub max_clients: usize,
    /// Watch history size.
    pub watch_history: usize,
    /// Watch stream buffer.
    pub watch_buffer: usize,
    /// GetChildren page limit.
    pub max_children_page: usize,
    /// Raft heartbeat.
    pub heartbeat: Duration,
    /// Election timeout bounds.
    pub election_timeout_min: Duration,
    /// Election timeout bounds.
    pub election_timeout_max: Duration,
    /// Snapshot policy.
    pub snapshot_every: u64,
    /// Logs kept behind a snapshot.
    pub keep_logs: u64,
    /// Bound on one snapshot chunk RPC (the last waits for the install).
    pub snapshot_install_timeout: Duration,
    /// Requests per log entry.
    pub max_batch: usize,
    /// sled cache in bytes.
    pub cache_bytes: u64,
    /// Write-ahead-log segment size in bytes.
    pub wal_segment_bytes: u64,
    /// TTL reaper period.
    pub ttl_check: Duration,
    /// Graceful shutdown bound.
    pub shutdown_timeout: Duration,
    /// Free bytes kept in reserve on the data directory's file system (0 = unchecked).
    pub space_reserve_bytes: u64,
    /// Most bytes the data directory may use (0 = no quota).
    pub quota_bytes: u64,
    /// The metrics port (`None`: off).
    pub metrics_addr: Option<SocketAddr>,
    /// Client connections per IP address.
    pub max_connections_per_ip: usize,
    /// Client connections in all.
    pub max_connections: usize,
    /// Concurrent streams per client connection.
    pub max_streams_per_connection: u32,
    /// Short requests served at once.
    pub max_in_flight: usize,
    /// Watches per watch stream.
    pub max_watches_per_stream: usize,
    /// Watches on this member.
    pub max_watches: usize,
    /// Slow-operation thresholds.
    pub slow: crate::stages::SlowThresholds,
    /// Refuse anonymous callers.
    pub require_auth: bool,
    /// Accept digest credentials without TLS.
    pub allow_plaintext_credentials: bool,
    /// Super principals' digest ids (`user:hash`).
    pub super_digests: Vec<String>,
    /// Super principals' certificate identities.
    pub super_x509: Vec<String>,
    /// Which part of a client certificate is the caller's x509 id.
    pub x509_identity: crate::auth::X509Identity,
    /// TLS on both ports (`None`: plaintext).
    pub tls: Option<crate::tls::TlsFiles>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            id: 1,
            data_dir: PathBuf::from("./data"),
            listen_client: SocketAddr::from(([127, 0, 0, 1], 7420)),
            listen_peer: SocketAddr::from(([127, 0, 0, 1], 7421)),
            advertise_client: None,
            advertise_peer: None,
            initial_members: BTreeMap::new(),
            log_format: LogFormat::Pretty,
            max_data_bytes: 1024 * 1024,
            max_path_bytes: 4096,
            max_path_depth: 256,
            max_multi_ops: 1000,
            session_timeout_min: Duration::from_millis(2000),
            session_timeout_max: Duration::from_millis(60_000),
            client_ttl: Duration::from_secs(600),
            max_clients: 100_000,
            watch_history: 100_000,
            watch_buffer: 4096,
            max_children_page: 10_000,
            heartbeat: Duration::from_millis(50),
            election_timeout_min: Duration::from_millis(150),
            election_timeout_max: Duration::from_millis(250),
            snapshot_every: 20_000,
            keep_logs: 5_000,
            snapshot_install_timeout: Duration::from_secs(60),
            max_batch: 1024,
            cache_bytes: 8 * 1024 * 1024,
            wal_segment_bytes: crate::store::wal::DEFAULT_SEGMENT_BYTES,
            ttl_check: Duration::from_millis(500),
            shutdown_timeout: Duration::from_millis(10_000),
            space_reserve_bytes: 64 * 1024 * 1024,
            quota_bytes: 0,
            metrics_addr: Some(SocketAddr::from(([127, 0, 0, 1], 7422))),
            max_connections_per_ip: 1000,
            max_connections: 10_000,
            max_streams_per_connection: 256,
            max_in_flight: 2000,
            max_watches_per_stream: 10_000,
            max_watches: 1_000_000,
            slow: crate::stages::SlowThresholds::default(),
            require_auth: false,
            allow_plaintext_credentials: false,
            super_digests: Vec::new(),
            super_x509: Vec::new(),
            x509_identity: crate::auth::X509Identity::Dn,
            tls: None,
        }
    }
}

fn read_file(path: &Path) -> Result<Args, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::File {
        path: path.to_path_buf(),
        msg: e.to_string(),
    })?;
    toml::from_str(&text).map_err(|e| ConfigError::File {
        path: path.to_path_buf(),
        msg: e.to_string(),
    })
}

fn parse_addr(what: &str, s: &str) -> Result<SocketAddr, ConfigError> {
    use std::net::ToSocketAddrs;
    s.to_socket_addrs()
        .map_err(|e| ConfigError::Invalid(format!("{what} {s:?}: {e}")))?
        .next()
        .ok_or_else(|| ConfigError::Invalid(format!("{what} {s:?}: no address")))
}

/// The metrics port when none is configured: 127.0.0.1, the client port + 2 (port 0 stays 0).
pub fn default_metrics_addr(client: SocketAddr) -> SocketAddr {
    let port = match client.port() {
        0 => 0,
        p => p.saturating_add(2),
    };
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Parses `id=host:port,...`.
///
/// # Errors
/// A malformed item or a duplicate id.
pub fn parse_members(s: &str) -> Result<BTreeMap<u64, String>, ConfigError> {
    let mut out = BTreeMap::new();
    for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (id, addr) = item.split_once('=').ok_or_else(|| {
            ConfigError::Invalid(format!("initial member {item:?}: expected id=host:port"))
        })?;
        let id: u64 = id.trim().parse().map_err(|_| {
            ConfigError::Invalid(format!(
                "initial member {item:?}: id must be a positive integer"
            ))
        })?;
        if id == 0 {
            return Err(ConfigError::Invalid("member id 0 is not allowed".into()));
        }
        let addr = addr.trim();
        if !addr.contains(':') {
            return Err(ConfigError::Invalid(format!(
                "initial member {item:?}: address needs a port"
            )));
        }
        if out.insert(id, addr.to_string()).is_some() {
            return Err(ConfigError::Invalid(format!("member id {id} listed twice")));
        }
    }
    Ok(out)
}

/// The TLS files, if TLS is on: all of cert, key and peer CA, or none (and then no client CA).
fn tls_files(
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    peer_ca: Option<PathBuf>,
    client_ca: Option<PathBuf>,
    handshake_timeout: Duration,
) -> Result<Option<crate::tls::TlsFiles>, ConfigError> {
    match (cert, key, peer_ca) {
        (None, None, None) => match client_ca {
            None => Ok(None),
            Some(_) => Err(ConfigError::Invalid(
                "client-ca needs TLS on: give cert, key and peer-ca too".into(),
            )),
        },
        (Some(cert), Some(key), Some(peer_ca)) => {
            if handshake_timeout.is_zero() {
                return Err(ConfigError::Invalid(
                    "tls-handshake-timeout-ms must be > 0".into(),
                ));
            }
            Ok(Some(crate::tls::TlsFiles {
                cert,
                key,
                peer_ca,
                client_ca,
                handshake_timeout,
            }))
        }
        _ => Err(ConfigError::Invalid(
            "TLS needs all of cert, key and peer-ca (the peer port always uses mutual TLS)".into(),
        )),
    }
}

impl Config {
    /// Builds the configuration from flags and environment (already in `args`) and the file.
    ///
    /// # Errors
    /// An unreadable file or an invalid value.
    pub fn from_args(args: Args) -> Result<Config, ConfigError> {
        let file = match &args.config {
            Some(p) => read_file(p)?,
            None => Args::default(),
        };
        let d = Config::default();
        macro_rules! pick {
            ($f:ident) => {
                args.$f.clone().or(file.$f.clone())
            };
        }
        let ms = |v: Option<u64>, def: Duration| v.map(Duration::from_millis).unwrap_or(def);
        let mib = |v: Option<u64>, def: u64| v.map_or(def, |m| m.saturating_mul(1024 * 1024));
        let listen_client = match pick!(listen_client) {
            Some(s) => parse_addr("listen-client", &s)?,
            None => d.listen_client,
        };
        let metrics_addr = match pick!(metrics_addr) {
            Some(s) if s == "off" => None,
            Some(s) => Some(parse_addr("metrics-addr", &s)?),
            None => Some(default_metrics_addr(listen_client)),
        };
        let cfg = Config {
            id: pick!(id).unwrap_or(d.id),
            data_dir: pick!(data_dir).unwrap_or(d.data_dir),
            listen_client,
            listen_peer: match pick!(listen_peer) {
                Some(s) => parse_addr("listen-peer", &s)?,
                None => d.listen_peer,
            },
            advertise_client: pick!(advertise_client),
            advertise_peer: pick!(advertise_peer),
            initial_members: match pick!(initial_members) {
                Some(s) => parse_members(&s)?,
                None => BTreeMap::new(),
            },
            log_format: pick!(log_format).unwrap_or(d.log_format),
            max_data_bytes: pick!(max_data_bytes).unwrap_or(d.max_data_bytes),
            max_path_bytes: pick!(max_path_bytes).unwrap_or(d.max_path_bytes),
            max_path_depth: pick!(max_path_depth).unwrap_or(d.max_path_depth),
            max_multi_ops: pick!(max_multi_ops).unwrap_or(d.max_multi_ops),
            session_timeout_min: ms(pick!(session_timeout_min_ms), d.session_timeout_min),
            session_timeout_max: ms(pick!(session_timeout_max_ms), d.session_timeout_max),
            client_ttl: ms(pick!(client_ttl_ms), d.client_ttl),
            max_clients: pick!(max_clients).unwrap_or(d.max_clients),
            watch_history: pick!(watch_history).unwrap_or(d.watch_history),
            watch_buffer: pick!(watch_buffer).unwrap_or(d.watch_buffer),
            max_children_page: pick!(max_children_page).unwrap_or(d.max_children_page),
            heartbeat: ms(pick!(heartbeat_ms), d.heartbeat),
            election_timeout_min: ms(pick!(election_timeout_min_ms), d.election_timeout_min),
            election_timeout_max: ms(pick!(election_timeout_max_ms), d.election_timeout_max),
            snapshot_every: pick!(snapshot_every).unwrap_or(d.snapshot_every),
            keep_logs: pick!(keep_logs).unwrap_or(d.keep_logs),
            snapshot_install_timeout: ms(
                pick!(snapshot_install_timeout_ms),
                d.snapshot_install_timeout,
            ),
            max_batch: pick!(max_batch).unwrap_or(d.max_batch),
            cache_bytes: mib(pick!(cache_mb), d.cache_bytes),
            wal_segment_bytes: mib(pick!(wal_segment_mb), d.wal_segment_bytes),
            ttl_check: ms(pick!(ttl_check_ms), d.ttl_check),
            shutdown_timeout: ms(pick!(shutdown_timeout_ms), d.shutdown_timeout),
            space_reserve_bytes: mib(pick!(space_reserve_mb), d.space_reserve_bytes),
            quota_bytes: mib(pick!(quota_mb), d.quota_bytes),
            metrics_addr,
            max_connections_per_ip: pick!(max_connections_per_ip)
                .unwrap_or(d.max_connections_per_ip),
            max_connections: pick!(max_connections).unwrap_or(d.max_connections),
            max_streams_per_connection: pick!(max_streams_per_connection)
                .unwrap_or(d.max_streams_per_connection),
            max_in_flight: pick!(max_in_flight).unwrap_or(d.max_in_flight),
            max_watches_per_stream: pick!(max_watches_per_stream)
                .unwrap_or(d.max_watches_per_stream),
            max_watches: pick!(max_watches).unwrap_or(d.max_watches),
            slow: crate::stages::SlowThresholds {
                member_id: 0,
                apply: ms(pick!(slow_apply_ms), d.slow.apply),
                flush: ms(pick!(slow_flush_ms), d.slow.flush),
                snapshot: ms(pick!(slow_snapshot_ms), d.slow.snapshot),
                request: ms(pick!(slow_request_ms), d.slow.request),
            },
            require_auth: pick!(require_auth).unwrap_or(d.require_auth),
            allow_plaintext_credentials: pick!(allow_plaintext_credentials)
                .unwrap_or(d.allow_plaintext_credentials),
            super_digests: list(pick!(super_digest)),
            super_x509: list(pick!(super_x509)),
            x509_identity: pick!(x509_identity).unwrap_or(d.x509_identity),
            tls: tls_files(
                pick!(cert),
                pick!(key),
                pick!(peer_ca),
                pick!(client_ca),
                ms(
                    pick!(tls_handshake_timeout_ms),
                    crate::tls::DEFAULT_HANDSHAKE_TIMEOUT,
                ),
            )?,
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks ranges and relations between values.
    ///
    /// # Errors
    /// The first problem found.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        for d in &self.super_digests {
            let acl = [crate::tree::acl::Acl {
                perms: crate::tree::acl::ALL,
                id: crate::tree::acl::Id::new("digest", d),
            }];
            if crate::tree::acl::canonical(&acl, &Default::default()).is_err() {
                return bad(format!(
                    "super-digest {d:?} is not user:base64(sha1(user:password)); \
                     `baton auth digest user:password` prints one"
                ));
            }
        }
        if self.id == 0 {
            return bad("id must be > 0".into());
        }
        if !self.initial_members.is_empty() && !self.initial_members.contains_key(&self.id) {
            return bad(format!(
                "initial-members does not list this member's id {}",
                self.id
            ));
        }
        if self.max_data_bytes == 0 || self.max_data_bytes > 64 * 1024 * 1024 {
            return bad("max-data-bytes must be in 1..=64 MiB".into());
        }
        if self.max_path_bytes < 2 || self.max_path_depth == 0 {
            return bad("max-path-bytes must be >= 2 and max-path-depth >= 1".into());
        }
        if self.max_multi_ops == 0 || self.max_batch == 0 || self.max_children_page == 0 {
            return bad("max-multi-ops, max-batch and max-children-page must be > 0".into());
        }
        if self.session_timeout_min.is_zero() || self.session_timeout_min > self.session_timeout_max
        {
            return bad("session timeouts need 0 < min <= max".into());
        }
        if self.client_ttl.is_zero() || self.max_clients == 0 {
            return bad("client-ttl-ms and max-clients must be > 0".into());
        }
        if self.watch_history == 0 || self.watch_buffer == 0 {
            return bad("watch-history and watch-buffer must be > 0".into());
        }
        if self.heartbeat.is_zero()
            || self.election_timeout_min <= self.heartbeat
            || self.election_timeout_max <= self.election_timeout_min
        {
            return bad("need 0 < heartbeat < election-timeout-min < election-timeout-max".into());
        }
        if self.snapshot_every == 0 {
            return bad("snapshot-every must be > 0".into());
        }
        if self.snapshot_install_timeout < Duration::from_millis(100) {
            return bad("snapshot-install-timeout-ms must be at least 100".into());
        }
        if self.wal_segment_bytes < (1 << 20) || self.wal_segment_bytes > (1 << 30) {
            return bad("wal-segment-mb must be between 1 and 1024".into());
        }
        if self.max_connections_per_ip == 0
            || self.max_connections == 0
            || self.max_streams_per_connection == 0
            || self.max_in_flight == 0
            || self.max_watches_per_stream == 0
            || self.max_watches == 0
        {
            return bad(
                "max-connections, max-connections-per-ip, max-streams-per-connection, \
                 max-in-flight, max-watches and max-watches-per-stream must be > 0"
                    .into(),
            );
        }
        Ok(())
    }

    /// A configuration for tests: ports 0 on 127.0.0.1, the given data dir, short timeouts.
    pub fn for_test(data_dir: impl Into<PathBuf>) -> Config {
        Config {
            data_dir: data_dir.into(),
            listen_client: SocketAddr::from(([127, 0, 0, 1], 0)),
            listen_peer: SocketAddr::from(([127, 0, 0, 1], 0)),
            metrics_addr: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
            session_timeout_min: Duration::from_millis(200),
            // Small segments: quick to zero-fill, and tests cross segment boundaries.
            wal_segment_bytes: 1 << 20,
            ..Config::default()
        }
    }
}

/// A comma-separated list, blanks dropped.
fn list(v: Option<String>) -> Vec<String> {
    v.map(|s| {
        s.split(',')
            .map(str::trim)
            .filter(|x| !x.is_empty())
            .map(str::to_string)
            .collect()
    })
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        Config::default().validate().unwrap();
        let c = Config::from_args(Args::default()).unwrap();
        assert_eq!(c.listen_client.port(), 7420);
        assert_eq!(c.data_dir, PathBuf::from("./data"));
    }

    #[test]
    fn members_parse() {
        let m = parse_members("1=127.0.0.1:7421, 2=127.0.0.1:7431").unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(m[&2], "127.0.0.1:7431");
        assert!(parse_members("1=a:1,1=b:2").is_err());
        assert!(parse_members("x=a:1").is_err());
        assert!(parse_members("0=a:1").is_err());
        assert!(parse_members("1=nohostport").is_err());
    }

    #[test]
    fn flag_beats_file_and_file_beats_default() {
        let dir = std::env::temp_dir().join(format!("baton-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("b.toml");
        std::fs::write(
            &f,
            "id = 7\nmax_data_bytes = 2048\nlisten_client = \"127.0.0.1:9999\"\n",
        )
        .unwrap();
        let args = Args {
            config: Some(f.clone()),
            id: Some(3),
            ..Args::default()
        };
        let c = Config::from_args(args).unwrap();
        assert_eq!(c.id, 3);
        assert_eq!(c.max_data_bytes, 2048);
        assert_eq!(c.listen_client.port(), 9999);
        std::fs::write(&f, "bogus_key = 1\n").unwrap();
        let err = Config::from_args(Args {
            config: Some(f),
            ..Args::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains("bogus_key"), "{err}");
    }

    #[test]
    fn rejects_bad_values() {
        let c = Config {
            session_timeout_min: Duration::from_secs(10),
            session_timeout_max: Duration::from_secs(1),
            ..Config::default()
        };
        assert!(c.validate().is_err());
        let c = Config {
            id: 0,
            ..Config::default()
        };
        assert!(c.validate().is_err());
    }

    #[test]
    fn tls_needs_cert_key_and_peer_ca_together() {
        let p = |s: &str| Some(PathBuf::from(s));
        let t = Duration::from_secs(1);
        assert!(tls_files(None, None, None, None, t).unwrap().is_none());
        assert!(tls_files(p("c"), p("k"), p("ca"), None, t)
            .unwrap()
            .is_some());
        assert!(tls_files(p("c"), p("k"), None, None, t).is_err());
        assert!(tls_files(p("c"), None, p("ca"), None, t).is_err());
        assert!(tls_files(None, None, None, p("cca"), t).is_err());
        assert!(tls_files(p("c"), p("k"), p("ca"), None, Duration::ZERO).is_err());
    }
}
