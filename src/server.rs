//! Starting and stopping a member: open the store, start Raft and the core loops, serve the
//! client port (with reflection and health), and shut down in a bounded sequence.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::Server;
use tracing::{info, warn};

use crate::api::{self, Ctx};
use crate::config::Config;
use crate::consensus::housekeeping::{self, Liveness};
use crate::consensus::network::NoPeers;
use crate::consensus::proposer::Proposer;
use crate::consensus::reads::ReadBarrier;
use crate::consensus::state_machine::StateMachineStore;
use crate::consensus::{MemberNode, Raft};
use crate::proto::v1;
use crate::shutdown::{self, Shutdown, ShutdownTrigger};
use crate::store::{log::LogStore, Store, StoreError};
use crate::watch::WatchHub;

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
    /// The data directory could not be created.
    #[error("data dir {0}: {1}")]
    DataDir(String, std::io::Error),
}

/// A running member.
pub struct ServerHandle {
    /// Bound client address (useful with port 0).
    pub client_addr: SocketAddr,
    /// This member's id.
    pub id: u64,
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

    /// Shuts down and waits.
    ///
    /// # Errors
    /// As [`ServerHandle::wait`].
    pub async fn stop(self) -> Result<(), ServerError> {
        self.shutdown();
        self.wait().await
    }
}

fn raft_config(cfg: &Config) -> Result<openraft::Config, ServerError> {
    let rc = openraft::Config {
        cluster_name: "baton".into(),
        heartbeat_interval: cfg.heartbeat.as_millis() as u64,
        election_timeout_min: cfg.election_timeout_min.as_millis() as u64,
        election_timeout_max: cfg.election_timeout_max.as_millis() as u64,
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(cfg.snapshot_every),
        max_in_snapshot_log_to_keep: cfg.keep_logs,
        purge_batch_size: 256,
        install_snapshot_timeout: 5000,
        snapshot_max_chunk_size: 1024 * 1024,
        max_payload_entries: 300,
        ..Default::default()
    };
    rc.validate().map_err(|e| ServerError::Raft(e.to_string()))
}

/// Starts a member and returns once it serves clients.
///
/// # Errors
/// A store that cannot be opened (locked, other format), a busy port, or Raft failing to
/// start.
pub async fn start(cfg: Config) -> Result<ServerHandle, ServerError> {
    let (trigger, shutdown) = shutdown::channel();
    let cfg = Arc::new(cfg);
    std::fs::create_dir_all(&cfg.data_dir)
        .map_err(|e| ServerError::DataDir(cfg.data_dir.display().to_string(), e))?;
    let listener = TcpListener::bind(cfg.listen_client)
        .await
        .map_err(|source| ServerError::Bind {
            addr: cfg.listen_client,
            source,
        })?;
    let client_addr = listener
        .local_addr()
        .map_err(|e| ServerError::Transport(e.to_string()))?;

    let store = Store::open(&cfg.data_dir, cfg.cache_bytes)?;
    let hub = Arc::new(WatchHub::new(cfg.watch_history, cfg.watch_buffer, 0));
    let (sm, shared) = StateMachineStore::open(&store, hub.clone())?;
    let log_store = LogStore::open(&store)?;
    let applied = shared.tree.read().map(|t| t.applied_index).unwrap_or(0);
    hub.reset_history(applied);

    let raft = Raft::new(cfg.id, Arc::new(raft_config(&cfg)?), NoPeers, log_store, sm)
        .await
        .map_err(|e| ServerError::Raft(e.to_string()))?;

    let advertise_client = cfg
        .advertise_client
        .clone()
        .unwrap_or_else(|| client_addr.to_string());
    let advertise_peer = cfg
        .advertise_peer
        .clone()
        .unwrap_or_else(|| cfg.listen_peer.to_string());
    let initialized = raft
        .is_initialized()
        .await
        .map_err(|e| ServerError::Raft(e.to_string()))?;
    if !initialized {
        let mut members = BTreeMap::new();
        members.insert(
            cfg.id,
            MemberNode {
                peer_addr: advertise_peer,
                client_addr: advertise_client,
            },
        );
        info!(id = cfg.id, "initialising a new single-member cluster");
        raft.initialize(members)
            .await
            .map_err(|e| ServerError::Raft(e.to_string()))?;
    }

    let proposer = Proposer::start(raft.clone(), cfg.max_batch);
    let reads = ReadBarrier::start(raft.clone(), shared.applied.subscribe());
    let liveness = Arc::new(Liveness::default());
    tokio::spawn(housekeeping::run(
        raft.clone(),
        cfg.id,
        shared.clone(),
        proposer.clone(),
        liveness.clone(),
        cfg.ttl_check,
        shutdown.clone(),
    ));
    let ctx = Arc::new(Ctx {
        cfg: cfg.clone(),
        raft: raft.clone(),
        shared,
        proposer,
        reads,
        liveness,
    });

    let join = tokio::spawn(serve(ctx, listener, store, shutdown));
    info!(id = cfg.id, client = %client_addr, data_dir = %cfg.data_dir.display(), "serving");
    Ok(ServerHandle {
        client_addr,
        id: cfg.id,
        trigger,
        join,
    })
}

async fn serve(
    ctx: Arc<Ctx>,
    listener: TcpListener,
    store: Store,
    shutdown: Shutdown,
) -> Result<(), ServerError> {
    let cfg = ctx.cfg.clone();
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<v1::z_nodes_server::ZNodesServer<api::znodes::ZNodesService>>()
        .await;
    health_reporter
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| ServerError::Transport(e.to_string()))?;
    let max_msg = (cfg.max_data_bytes * 2 + 1024 * 1024).max(4 * 1024 * 1024);

    let mut stop = shutdown.clone();
    let (drain_tx, drain_rx) = tokio::sync::oneshot::channel::<()>();
    let router = Server::builder()
        .add_service(health_service)
        .add_service(reflection)
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
        ));
    let server = tokio::spawn(router.serve_with_incoming_shutdown(
        TcpListenerStream::new(listener),
        async move {
            let _ = drain_rx.await;
        },
    ));

    stop.wait().await;
    info!("shutting down: no longer serving");
    health_reporter
        .set_service_status("", tonic_health::ServingStatus::NotServing)
        .await;
    health_reporter
        .set_not_serving::<v1::z_nodes_server::ZNodesServer<api::znodes::ZNodesService>>()
        .await;
    let _ = drain_tx.send(());
    // Streams (watches, keepalives) never finish on their own: bound the drain.
    match tokio::time::timeout(cfg.shutdown_timeout / 2, server).await {
        Ok(Ok(Ok(()))) => info!("in-flight requests drained"),
        Ok(Ok(Err(e))) => warn!(error = %e, "transport error while draining"),
        Ok(Err(e)) => warn!(error = %e, "server task failed"),
        Err(_) => warn!("drain timed out; closing remaining streams"),
    }
    match tokio::time::timeout(cfg.shutdown_timeout / 2, ctx.raft.shutdown()).await {
        Ok(Ok(())) => info!("consensus stopped"),
        Ok(Err(e)) => warn!(error = %e, "consensus stopped with an error"),
        Err(_) => warn!("consensus did not stop in time"),
    }
    let flushed = tokio::task::spawn_blocking(move || store.durable_flush()).await;
    match flushed {
        Ok(Ok(())) => info!("store flushed"),
        Ok(Err(e)) => warn!(error = %e, "store flush failed"),
        Err(e) => warn!(error = %e, "store flush task failed"),
    }
    Ok(())
}

/// Runs a member until SIGTERM/SIGINT, then shuts it down gracefully.
///
/// # Errors
/// As [`start`].
pub async fn run(cfg: Config) -> Result<(), ServerError> {
    let handle = start(cfg).await?;
    shutdown::os_signal().await;
    info!("signal received");
    handle.stop().await
}
