//! Starting and stopping a member: open the store, start Raft and the core loops, serve the
//! client port (with reflection and health), and shut down in a bounded sequence.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};
use tonic::transport::server::TcpIncoming;
use tonic::transport::Server;
use tracing::{error, info, warn};

use crate::api::{self, Ctx};
use crate::config::Config;
use crate::consensus::failover::Failover;
use crate::consensus::faults::Faults;
use crate::consensus::housekeeping::{self, Housekeeping, Liveness};
use crate::consensus::identity::{self, ClusterCheck, ClusterIdentity};
use crate::consensus::network::PeerNetwork;
use crate::consensus::peer_service::PeerService;
use crate::consensus::peers::{Peers, MAX_PEER_MESSAGE};
use crate::consensus::proposer::Proposer;
use crate::consensus::reads::ReadBarrier;
use crate::consensus::rejoin::VoteHold;
use crate::consensus::space::{self, SpaceAlarm};
use crate::consensus::space_guard;
use crate::consensus::state_machine::StateMachineStore;
use crate::consensus::{MemberNode, Raft};
use crate::member::{self, Member};
use crate::ops::{
    self,
    conns::{Admit, ConnLimits},
    grpc::RequestLayer,
    health::{Health, Probe},
    metrics::Metrics,
};
use crate::proto::v1;
use crate::shutdown::{self, Shutdown, ShutdownTrigger};
use crate::stages::SlowThresholds;
use crate::store::log::{self, LogStore};
use crate::store::{Store, StoreError};
use crate::tls::{Port, Tls};
use crate::watch::{WatchHub, WatchLimits};

/// Why a member could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The data directory could not be used.
    #[error("storage: {0}")]
    Store(#[from] StoreError),
    /// A listen address is taken or not bindable.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// Address.
        addr: SocketAddr,
        /// Cause.
        source: std::io::Error,
    },
    /// Raft could not be started or initialised.
    #[error("consensus: {0}")]
    Raft(String),
    /// Serving failed.
    #[error("transport: {0}")]
    Transport(String),
    /// The TLS files could not be loaded.
    #[error("tls: {0}")]
    Tls(#[from] crate::tls::TlsError),
    /// The data directory could not be created.
    #[error("data dir {0}: {1}")]
    DataDir(String, std::io::Error),
    /// The data directory belongs to another member or another cluster.
    #[error("data dir {dir}: {why}")]
    WrongDataDir {
        /// The directory.
        dir: String,
        /// What does not match.
        why: String,
    },
}

/// Options for embedding a member (tests, tools): pre-bound listeners and fault injection.
#[derive(Default)]
pub struct StartOptions {
    /// Client listener to use instead of binding `listen_client`.
    pub client_listener: Option<TcpListener>,
    /// Peer listener to use instead of binding `listen_peer`.
    pub peer_listener: Option<TcpListener>,
    /// Fault controller for this member's outgoing peer links (default: none).
    pub faults: Option<Arc<Faults>>,
    /// Metrics-port listener to use instead of binding `metrics_addr` (if that is set).
    pub metrics_listener: Option<TcpListener>,
}

/// A running member.
pub struct ServerHandle {
    /// Bound client address (useful with port 0).
    pub client_addr: SocketAddr,
    /// Bound peer address.
    pub peer_addr: SocketAddr,
    /// This member's id.
    pub id: u64,
    /// The Raft handle (for tests and tools that watch metrics).
    pub raft: Raft,
    /// Fault controller of this member's outgoing peer links.
    pub faults: Arc<Faults>,
    /// Bound address of the metrics port, if it is on.
    pub metrics_addr: Option<SocketAddr>,
    /// The TLS state, if TLS is on (see [`ServerHandle::reload_tls`]).
    pub tls: Option<Arc<Tls>>,
    store: Store,
    trigger: ShutdownTrigger,
    join: JoinHandle<Result<(), ServerError>>,
}

impl ServerHandle {
    /// Asks the member to shut down gracefully.
    pub fn shutdown(&self) {
        self.trigger.trigger();
    }

    /// Waits until the member has stopped.
    ///
    /// # Errors
    /// Whatever stopped it.
    pub async fn wait(self) -> Result<(), ServerError> {
        match self.join.await {
            Ok(r) => r,
            Err(e) => Err(ServerError::Transport(format!("server task failed: {e}"))),
        }
    }

    /// Resolves with the reason once the member failed by itself and cannot go on: the Raft
    /// core stopped with an error (a failed write or sync of the log, a full disk), or the
    /// state machine could not be written.
    pub async fn failure(&self) -> String {
        tokio::select! {
            e = consensus_failure(&self.raft) => format!("consensus stopped: {e}"),
            e = self.store.failure() => e,
        }
    }

    /// Reads the certificate files again (what SIGHUP does): new connections use them,
    /// established ones are kept.
    ///
    /// # Errors
    /// The files could not be loaded; the ones in use are kept. `Ok(false)`: TLS is off.
    pub fn reload_tls(&self) -> Result<bool, crate::tls::TlsError> {
        match &self.tls {
            Some(tls) => tls.reload().map(|()| true),
            None => Ok(false),
        }
    }

    /// Shuts down and waits.
    ///
    /// # Errors
    /// As [`ServerHandle::wait`].
    pub async fn stop(self) -> Result<(), ServerError> {
        self.shutdown();
        self.wait().await
    }
}

/// Log entries between this member's snapshots: `--snapshot-every`, plus, from 1 000 entries
/// up, an eighth of it per `id % 4`, so that the members of a cluster, which apply the same
/// log, do not all build a snapshot of a large tree at the same moment (shorter intervals are
/// kept exact: their snapshots are small).
fn snapshot_interval(cfg: &Config) -> u64 {
    if cfg.snapshot_every < 1_000 {
        return cfg.snapshot_every;
    }
    cfg.snapshot_every + cfg.snapshot_every / 8 * (cfg.id % 4)
}

fn raft_config(cfg: &Config) -> Result<openraft::Config, ServerError> {
    let rc = openraft::Config {
        cluster_name: "baton".into(),
        heartbeat_interval: cfg.heartbeat.as_millis() as u64,
        election_timeout_min: cfg.election_timeout_min.as_millis() as u64,
        election_timeout_max: cfg.election_timeout_max.as_millis() as u64,
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(snapshot_interval(cfg)),
        max_in_snapshot_log_to_keep: cfg.keep_logs,
        // Purge in batches of at most 256 entries, and never more than a snapshot interval
        // (a member with short intervals would otherwise keep several snapshots of log).
        purge_batch_size: cfg.snapshot_every.min(256),
        install_snapshot_timeout: cfg.snapshot_install_timeout.as_millis() as u64,
        snapshot_max_chunk_size: 1024 * 1024,
        max_payload_entries: 300,
        ..Default::default()
    };
    rc.validate().map_err(|e| ServerError::Raft(e.to_string()))
}

/// Starts a member and returns once it serves clients.
///
/// # Errors
/// A store that cannot be opened (locked, other format, another member's), a busy port, or
/// Raft failing to start.
pub async fn start(cfg: Config) -> Result<ServerHandle, ServerError> {
    start_with(cfg, StartOptions::default()).await
}

async fn bind(addr: SocketAddr, given: Option<TcpListener>) -> Result<TcpListener, ServerError> {
    match given {
        Some(l) => Ok(l),
        None => TcpListener::bind(addr)
            .await
            .map_err(|source| ServerError::Bind { addr, source }),
    }
}

/// Accepted connections with TCP_NODELAY: small gRPC replies must not wait for Nagle's
/// algorithm (which, with delayed ACKs, adds ~40 ms to a request/response exchange).
fn incoming(listener: TcpListener) -> TcpIncoming {
    TcpIncoming::from(listener)
        .with_nodelay(Some(true))
        .with_keepalive(Some(Duration::from_secs(30)))
}

/// Checks (or, on a fresh data dir, records) the member id and initial member list the data
/// dir was created with, so a member started with the wrong list or id fails clearly.
fn check_data_dir(store: &Store, cfg: &Config, members: &str) -> Result<(), ServerError> {
    let record = identity::member_record(cfg.id, members);
    let wrong = |why: String| ServerError::WrongDataDir {
        dir: cfg.data_dir.display().to_string(),
        why,
    };
    let meta = store.raft_meta();
    match meta
        .get(identity::MEMBER_RECORD_KEY)
        .map_err(|e| wrong(e.to_string()))?
    {
        Some(v) => {
            let stored = String::from_utf8_lossy(&v).to_string();
            if stored != record {
                return Err(wrong(format!(
                    "it was created as {stored:?}, but this member is configured as {record:?}; \
                     start it with the original --id and --initial-members, or use a new data dir"
                )));
            }
        }
        None => {
            meta.insert(identity::MEMBER_RECORD_KEY, record.as_bytes())
                .map_err(|e| wrong(e.to_string()))?;
            store.durable_flush()?;
        }
    }
    Ok(())
}

/// Starts a member with embedding options.
///
/// # Errors
/// As [`start`].
pub async fn start_with(cfg: Config, opts: StartOptions) -> Result<ServerHandle, ServerError> {
    let (trigger, shutdown) = shutdown::channel();
    let cfg = Arc::new(cfg);
    let tls = match &cfg.tls {
        Some(files) => Some(Tls::load(files.clone(), cfg.id)?),
        None => None,
    };
    std::fs::create_dir_all(&cfg.data_dir)
        .map_err(|e| ServerError::DataDir(cfg.data_dir.display().to_string(), e))?;
    let listener = bind(cfg.listen_client, opts.client_listener).await?;
    let peer_listener = bind(cfg.listen_peer, opts.peer_listener).await?;
    let client_addr = listener
        .local_addr()
        .map_err(|e| ServerError::Transport(e.to_string()))?;
    let peer_addr = peer_listener
        .local_addr()
        .map_err(|e| ServerError::Transport(e.to_string()))?;
    let me = MemberNode {
        peer_addr: cfg
            .advertise_peer
            .clone()
            .unwrap_or_else(|| peer_addr.to_string()),
        client_addr: cfg
            .advertise_client
            .clone()
            .unwrap_or_else(|| client_addr.to_string()),
    };
    let mut members: BTreeMap<u64, MemberNode> = cfg
        .initial_members
        .iter()
        .map(|(id, addr)| {
            (
                *id,
                MemberNode {
                    peer_addr: addr.clone(),
                    client_addr: String::new(),
                },
            )
        })
        .collect();
    members.insert(cfg.id, me.clone());
    let member_list = identity::member_list(cfg.id, &cfg.initial_members);

    let metrics_listener = match cfg.metrics_addr {
        Some(addr) => Some(bind(addr, opts.metrics_listener).await?),
        None => None,
    };
    let metrics_addr = match &metrics_listener {
        Some(l) => Some(
            l.local_addr()
                .map_err(|e| ServerError::Transport(e.to_string()))?,
        ),
        None => None,
    };
    let store = Store::open(&cfg.data_dir, cfg.cache_bytes)?;
    check_data_dir(&store, &cfg, &member_list)?;
    let cluster = ClusterIdentity::load(&store)?;
    let hub = Arc::new(
        WatchHub::new(cfg.watch_history, cfg.watch_buffer, 0).with_limits(WatchLimits {
            per_stream: cfg.max_watches_per_stream,
            total: cfg.max_watches,
        }),
    );
    let (sm, shared) = StateMachineStore::open(&store, hub.clone())?;
    shared.stages.set_slow(SlowThresholds {
        member_id: cfg.id,
        ..cfg.slow.clone()
    });
    shared.stages.set_export(cfg.metrics_addr.is_some());
    let mut wal_opts = log::wal_options(cfg.wal_segment_bytes);
    wal_opts.stages = shared.stages.clone();
    let log_store = LogStore::open(&store, wal_opts)?;
    let log_handle = log_store.clone();
    let failover_log = log_store.clone();

    // A member that starts with nothing in a cluster it does not found holds its vote until
    // it has caught up (see `consensus::rejoin`): it may be coming back from a lost disk.
    let pristine = {
        use openraft::storage::RaftLogStorage;
        let mut probe = log_store.clone();
        let state = probe
            .get_log_state()
            .await
            .map_err(|e| ServerError::Raft(e.to_string()))?;
        let vote = probe
            .read_vote()
            .await
            .map_err(|e| ServerError::Raft(e.to_string()))?;
        state.last_log_id.is_none()
            && state.last_purged_log_id.is_none()
            && vote.is_none()
            && shared.last_applied().is_none()
    };
    let founder = members.keys().next().copied() == Some(cfg.id);
    let vote_hold = VoteHold::load(&store, pristine && !founder)?;

    let faults = opts.faults.unwrap_or_default();
    let peers = Peers::with_tls(cfg.id, cluster.clone(), faults.clone(), tls.clone());
    let raft = Raft::new(
        cfg.id,
        Arc::new(raft_config(&cfg)?),
        PeerNetwork::new(peers.clone()),
        log_store,
        sm,
    )
    .await
    .map_err(|e| ServerError::Raft(e.to_string()))?;

    let initialized = raft
        .is_initialized()
        .await
        .map_err(|e| ServerError::Raft(e.to_string()))?;
    if vote_hold.holding() {
        raft.runtime_config().elect(false);
    }
    // Exactly one member initialises a new cluster: the lowest id of the initial members.
    if !initialized && founder {
        let cluster_id = cluster.create()?;
        info!(
            id = cfg.id,
            members = %member_list,
            cluster_id = %identity::format_id(cluster_id),
            "initialising a new cluster"
        );
        raft.initialize(members)
            .await
            .map_err(|e| ServerError::Raft(e.to_string()))?;
    } else if !initialized {
        info!(
            id = cfg.id,
            "waiting to be contacted by the cluster's leader"
        );
    }

    let space_alarm = SpaceAlarm::new(
        shared.clone(),
        space::Limits {
            reserve: cfg.space_reserve_bytes,
            quota: cfg.quota_bytes,
        },
    );
    let proposer = Proposer::start(
        raft.clone(),
        cfg.id,
        peers.clone(),
        shared.applied.subscribe(),
        shared.stages.clone(),
        space_alarm.clone(),
        cfg.max_batch,
    );
    let space = space_alarm.clone();
    // Every background task of the member is owned here and joined when it stops (see
    // `serve`); if starting fails half-way, dropping the set aborts the ones already running.
    let mut background = JoinSet::new();
    background.spawn(space_guard::run(
        space_guard::Guard {
            my_id: cfg.id,
            dir: cfg.data_dir.clone(),
            alarm: space_alarm,
            shared: shared.clone(),
            proposer: proposer.clone(),
            raft: raft.clone(),
        },
        shutdown.clone(),
    ));
    let reads = ReadBarrier::start(raft.clone(), peers.clone(), shared.applied.subscribe());
    let liveness = Arc::new(Liveness::default());
    background.spawn(housekeeping::run(
        Housekeeping {
            raft: raft.clone(),
            my_id: cfg.id,
            me,
            shared: shared.clone(),
            proposer: proposer.clone(),
            liveness: liveness.clone(),
            peers: peers.clone(),
            ttl_check: cfg.ttl_check,
            client_ttl: cfg.client_ttl,
            max_clients: cfg.max_clients,
        },
        shutdown.clone(),
    ));
    let failover = Failover::new(
        cfg.id,
        raft.clone(),
        peers.clone(),
        failover_log,
        shared.stages.clone(),
        vote_hold.clone(),
    );
    background.spawn(failover.clone().run(shutdown.clone()));
    background.spawn(failover.clone().guard_elections(shutdown.clone()));
    // The peer port closes only once the client port has drained (see `serve`): a leader
    // that shuts down keeps committing the writes in flight, and followers keep forwarding to
    // it, until then; its closed port then tells the followers to elect a successor at once.
    let (peer_stop_trigger, peer_stop) = shutdown::channel();
    let peer_service = PeerService {
        my_id: cfg.id,
        raft: raft.clone(),
        proposer: proposer.clone(),
        shared: shared.clone(),
        liveness: liveness.clone(),
        failover: failover.clone(),
        vote_hold,
        shutdown: peer_stop.clone(),
    };
    let lock_waiters = api::locks::LockWaiters::start(shared.clone());
    let tree = shared.clone();
    let authenticator = Arc::new(crate::auth::Authenticator::new(
        crate::auth::AuthConfig {
            require_auth: cfg.require_auth,
            allow_plaintext_credentials: cfg.allow_plaintext_credentials,
            secure: cfg.tls.is_some(),
            super_digests: cfg.super_digests.clone(),
            super_x509: cfg.super_x509.clone(),
            x509_identity: cfg.x509_identity,
        },
        move |path: &str| {
            let g = tree.tree.read().unwrap_or_else(|e| e.into_inner());
            g.get(path).map(|n| n.acl.clone())
        },
    ));
    let member = Arc::new(Member::new(member::Parts {
        cfg: cfg.clone(),
        raft: raft.clone(),
        shared,
        proposer,
        reads,
        liveness,
        peers,
        failover,
        space,
        shutdown: shutdown.clone(),
    }));
    let ctx = Arc::new(Ctx::new(
        member.clone(),
        lock_waiters,
        authenticator.clone(),
    ));
    let metrics = Arc::new(Metrics::new());
    if let Some(listener) = metrics_listener {
        let registry = metrics.registry(member.clone(), authenticator.clone());
        let health = Health::new(member.clone(), store.clone(), metrics.clone());
        background.spawn(ops::http::serve(
            listener,
            registry,
            health,
            shutdown.clone(),
        ));
    }

    let peer_router = Server::builder().add_service(
        ClusterCheck::new(
            crate::proto::raft::raft_server::RaftServer::new(peer_service)
                .max_decoding_message_size(MAX_PEER_MESSAGE)
                .max_encoding_message_size(MAX_PEER_MESSAGE),
            cluster,
            raft.clone(),
        )
        .require_member_certs(tls.is_some()),
    );
    let peer_stopped = {
        let mut s = peer_stop.clone();
        async move { s.wait().await }
    };
    let peer_server = match &tls {
        None => tokio::spawn(
            peer_router.serve_with_incoming_shutdown(incoming(peer_listener), peer_stopped),
        ),
        Some(tls) => tokio::spawn(peer_router.serve_with_incoming_shutdown(
            tls.incoming(Port::Peer, incoming(peer_listener)),
            peer_stopped,
        )),
    };
    let failed_store = store.clone();
    let join = tokio::spawn(serve(
        ctx,
        (listener, metrics, tls.clone()),
        (store, log_handle),
        (shutdown, background),
        (peer_server, peer_stop_trigger),
    ));
    info!(id = cfg.id, client = %client_addr, peer = %peer_addr, data_dir = %cfg.data_dir.display(), tls = tls.is_some(), "serving");
    Ok(ServerHandle {
        client_addr,
        peer_addr,
        id: cfg.id,
        raft,
        faults,
        metrics_addr,
        tls,
        store: failed_store,
        trigger,
        join,
    })
}

async fn serve(
    ctx: Arc<Ctx>,
    (listener, metrics, tls): (TcpListener, Arc<Metrics>, Option<Arc<Tls>>),
    (store, log_handle): (Store, LogStore),
    (shutdown, mut background): (Shutdown, JoinSet<()>),
    (peer_server, peer_stop): (
        JoinHandle<Result<(), tonic::transport::Error>>,
        ShutdownTrigger,
    ),
) -> Result<(), ServerError> {
    let member = ctx.member().clone();
    let cfg = member.config();
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    // NOT_SERVING until the readiness checks first pass (see `report_readiness`).
    set_serving(&health_reporter, false).await;
    // Both reflection protocols: v1, and v1alpha for older tools (grpcurl 1.8 speaks only it).
    let reflection_builder = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection = reflection_builder()
        .build_v1()
        .map_err(|e| ServerError::Transport(e.to_string()))?;
    let reflection_alpha = reflection_builder()
        .build_v1alpha()
        .map_err(|e| ServerError::Transport(e.to_string()))?;
    let max_msg = (cfg.max_data_bytes * 2 + 1024 * 1024).max(4 * 1024 * 1024);

    let health = Health::new(member.clone(), store.clone(), metrics.clone());
    background.spawn(report_readiness(
        health,
        health_reporter.clone(),
        shutdown.clone(),
    ));
    let mut stop = shutdown.clone();
    let (drain_tx, drain_rx) = tokio::sync::oneshot::channel::<()>();
    let incoming = Admit::new(
        incoming(listener),
        ConnLimits {
            per_ip: cfg.max_connections_per_ip,
            total: cfg.max_connections,
        },
        metrics.clone(),
    );
    let router = Server::builder()
        .max_concurrent_streams(cfg.max_streams_per_connection)
        .http2_max_pending_accept_reset_streams(Some(64))
        .layer(RequestLayer::new(
            metrics,
            member.stages().clone(),
            cfg.max_in_flight,
            cfg.metrics_addr.is_some(),
        ))
        // Inside the request layer, so refusals are counted and timed like any answer.
        .layer(crate::auth::AuthLayer::new(ctx.auth().clone()))
        .add_service(health_service)
        .add_service(reflection)
        .add_service(reflection_alpha)
        .add_service(
            v1::z_nodes_server::ZNodesServer::new(api::znodes::ZNodesService::new(ctx.clone()))
                .max_decoding_message_size(max_msg)
                .max_encoding_message_size(max_msg * 8),
        )
        .add_service(v1::sessions_server::SessionsServer::new(
            api::sessions::SessionsService::new(ctx.clone()),
        ))
        .add_service(v1::watches_server::WatchesServer::new(
            api::watches::WatchesService::new(ctx.clone()),
        ))
        .add_service(v1::cluster_server::ClusterServer::new(
            api::cluster::ClusterService::new(ctx.clone()),
        ))
        .add_service(v1::locks_server::LocksServer::new(
            api::locks::LocksService::new(ctx.clone()),
        ))
        .add_service(v1::elections_server::ElectionsServer::new(
            api::elections::ElectionsService::new(ctx.clone()),
        ))
        .add_service(v1::maintenance_server::MaintenanceServer::new(
            api::maintenance::MaintenanceService::new(ctx.clone()),
        ))
        .add_service(v1::auth_server::AuthServer::new(
            api::auth::AuthService::new(ctx.clone()),
        ));
    let drained = async move {
        let _ = drain_rx.await;
    };
    let mut server = match tls {
        None => tokio::spawn(router.serve_with_incoming_shutdown(incoming, drained)),
        Some(tls) => tokio::spawn(
            router.serve_with_incoming_shutdown(tls.incoming(Port::Client, incoming), drained),
        ),
    };

    stop.wait().await;
    info!("shutting down: no longer serving");
    set_serving(&health_reporter, false).await;
    let _ = drain_tx.send(());
    // Streams (watches, keepalives) never finish on their own: bound the drain.
    match tokio::time::timeout(cfg.shutdown_timeout / 2, &mut server).await {
        Ok(Ok(Ok(()))) => info!("in-flight requests drained"),
        Ok(Ok(Err(e))) => warn!(error = %e, "transport error while draining"),
        Ok(Err(e)) => warn!(error = %e, "server task failed"),
        Err(_) => {
            warn!("drain timed out; closing remaining connections");
            server.abort();
        }
    }
    join_background(&mut background, cfg.shutdown_timeout / 8).await;
    peer_stop.trigger();
    match tokio::time::timeout(cfg.shutdown_timeout / 4, peer_server).await {
        Ok(_) => info!("peer port closed"),
        Err(_) => warn!("peer port did not close in time"),
    }
    match tokio::time::timeout(cfg.shutdown_timeout / 4, member.stop_consensus()).await {
        Ok(Ok(())) => info!("consensus stopped"),
        Ok(Err(e)) => warn!(error = %e, "consensus stopped with an error"),
        Err(_) => warn!("consensus did not stop in time"),
    }
    let flushed = tokio::task::spawn_blocking(move || {
        log_handle.close();
        store.durable_flush()
    })
    .await;
    match flushed {
        Ok(Ok(())) => info!("store flushed"),
        Ok(Err(e)) => warn!(error = %e, "store flush failed"),
        Err(e) => warn!(error = %e, "store flush task failed"),
    }
    Ok(())
}

/// Runs a member until SIGTERM/SIGINT, then shuts it down gracefully.
///
/// The graceful stop is bounded: it ends after the shutdown timeout plus a little, or at once on
/// a second signal. If the member fails by itself (see [`ServerHandle::failure`]), it cannot go
/// on and this returns an error at once, so that the process exits non-zero and a supervisor
/// restarts it. Nothing acknowledged depends on a clean stop: every acknowledged write is
/// already durable in the log.
///
/// # Errors
/// As [`start`]; [`ServerError::Raft`] when consensus failed or the stop was cut short.
pub async fn run(cfg: Config) -> Result<(), ServerError> {
    let grace = cfg.shutdown_timeout + Duration::from_secs(2);
    let handle = start(cfg).await?;
    tokio::spawn(crate::tls::reload_on_sighup(handle.tls.clone()));
    tokio::select! {
        _ = shutdown::os_signal() => info!("signal received"),
        fatal = handle.failure() => {
            error!(error = %fatal, "the member failed; exiting so that it is restarted");
            return Err(ServerError::Raft(fatal));
        }
    }
    tokio::select! {
        r = handle.stop() => r,
        _ = shutdown::os_signal() => {
            warn!("second signal received; exiting without finishing the graceful stop");
            Err(ServerError::Raft("stopped by a second signal before the graceful stop ended".into()))
        }
        _ = tokio::time::sleep(grace) => {
            error!(?grace, "the graceful stop did not end in time; exiting");
            Err(ServerError::Raft(format!("the graceful stop took more than {grace:?}")))
        }
    }
}

/// Sets the gRPC health status of the whole server ("") and of each client service.
async fn set_serving(reporter: &tonic_health::server::HealthReporter, serving: bool) {
    let status = if serving {
        tonic_health::ServingStatus::Serving
    } else {
        tonic_health::ServingStatus::NotServing
    };
    for service in [
        "",
        "baton.v1.ZNodes",
        "baton.v1.Sessions",
        "baton.v1.Watches",
        "baton.v1.Cluster",
        "baton.v1.Locks",
        "baton.v1.Elections",
        "baton.v1.Maintenance",
        "baton.v1.Auth",
    ] {
        reporter.set_service_status(service, status).await;
    }
}

/// How often the gRPC health status follows the readiness checks.
const READINESS_EVERY: Duration = Duration::from_secs(1);

/// Keeps the gRPC health service in step with `/readyz` until shutdown (which sets it to
/// NOT_SERVING itself).
async fn report_readiness(
    health: Health,
    reporter: tonic_health::server::HealthReporter,
    mut shutdown: Shutdown,
) {
    let mut last = None;
    loop {
        let ready = tokio::select! {
            _ = shutdown.wait() => return,
            o = health.run(Probe::Ready, &[]) => o.iter().all(|o| o.failure.is_none()),
        };
        if last != Some(ready) {
            if last.is_some() {
                info!(ready, "readiness changed");
            }
            tokio::select! {
                _ = shutdown.wait() => return,
                () = set_serving(&reporter, ready) => {}
            }
            last = Some(ready);
        }
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = tokio::time::sleep(READINESS_EVERY) => {}
        }
    }
}

/// Waits (at most `bound`) for the member's background tasks, which end on the shutdown
/// signal; aborts any still running then, so none outlives the member.
async fn join_background(tasks: &mut JoinSet<()>, bound: Duration) {
    let all = async {
        while let Some(r) = tasks.join_next().await {
            if let Err(e) = r {
                if e.is_panic() {
                    error!(error = %e, "a background task panicked");
                }
            }
        }
    };
    if tokio::time::timeout(bound, all).await.is_err() {
        warn!(
            left = tasks.len(),
            "background tasks did not stop in time; aborting them"
        );
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
    } else {
        info!("background tasks stopped");
    }
}

/// Resolves with the reason once the Raft core has stopped with an error.
async fn consensus_failure(raft: &Raft) -> String {
    let mut rx = raft.metrics();
    let why = match rx.wait_for(|m| m.running_state.is_err()).await {
        Ok(m) => match &m.running_state {
            Err(e) => e.to_string(),
            Ok(()) => "unknown".into(),
        },
        Err(_) => "the consensus core went away".into(),
    };
    why
}
