//! One arbiter node: storage, Raft, the gRPC and HTTP servers, and the leader's background
//! duties, started together and stopped together.
//!
//! Invariant: one way to stop. [`run`] serves until its `shutdown` future resolves, then stops
//! accepting requests, drains in-flight ones for at most [`DRAIN_DEADLINE`], shuts Raft down
//! and fsyncs storage before returning.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use arbiter_client::proto::cluster_service_server::ClusterServiceServer;
use arbiter_client::proto::lease_service_server::LeaseServiceServer;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_stream::wrappers::TcpListenerStream;

use crate::auth::grpc_layer::GrpcAuthLayer;
use crate::auth::{Auth, AuthSetupError};
use crate::config::NodeConfig;
use crate::dr::DrController;
use crate::grpc::cluster_service::ClusterApi;
use crate::grpc::lease_service::LeaseApi;
use crate::grpc::raft_proto::raft_service_server::RaftServiceServer;
use crate::grpc::raft_service::RaftTransport;
use crate::leases::LeaseManager;
use crate::network::{Network, MAX_RAFT_MESSAGE_BYTES};
use crate::proposer::Proposer;
use crate::raft_types::{Member, NodeId, Raft};
use crate::store::{self, StateMachineStore, StorageHealth, StoreError, SyncPolicy, WalCounters};
use arbiter_core::replication::WriteRate;

/// How long in-flight requests may take to finish after shutdown begins.
pub const DRAIN_DEADLINE: Duration = Duration::from_secs(5);

/// Concurrent gRPC requests (and streams) one connection may have in flight. The SDK shares one
/// connection per node among all its callers, so this is sized for a busy proxy, not one call.
const MAX_REQUESTS_PER_CONNECTION: usize = 1024;

/// Name of the file a node writes into its data dir once it is serving.
pub const READY_FILE: &str = "ready.json";

/// What the services share about this node.
pub struct NodeContext {
    pub id: NodeId,
    pub region: String,
    pub grpc_addr: String,
    pub http_addr: String,
    pub raft: Raft,
    pub state: StateMachineStore,
    pub proposer: Proposer,
    pub leases: LeaseManager,
    pub dr: DrController,
    pub committed: Arc<AtomicU64>,
    /// Who callers are and what they may do; shared by both edges.
    pub auth: Arc<Auth>,
    /// A storage failure the node is waiting out (e.g. out of space), for status.
    pub storage_health: StorageHealth,
    pub wal_counters: Arc<WalCounters>,
}

/// Written to `<data_dir>/ready.json` when the node serves: how to reach it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadyInfo {
    pub node_id: NodeId,
    pub region: String,
    pub grpc_addr: String,
    pub http_addr: String,
    pub pid: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start raft: {0}")]
    Raft(String),
    #[error("cannot write {path}: {source}")]
    ReadyFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("server failed: {0}")]
    Serve(String),
    #[error(transparent)]
    Auth(#[from] AuthSetupError),
}

/// Runs a node until `shutdown` resolves.
pub async fn run(config: NodeConfig, shutdown: impl Future<Output = ()>) -> Result<(), NodeError> {
    // Before any port is bound: a node that cannot tell callers apart must not serve them.
    let auth = Arc::new(Auth::new(config.auth.clone(), config.insecure)?);
    let grpc_listener = bind(config.grpc_listen).await?;
    let http_listener = bind(config.http_listen).await?;
    let grpc_addr = advertised(&config.grpc_advertise, &grpc_listener)?;
    let http_addr = advertised(&config.http_advertise, &http_listener)?;

    std::fs::create_dir_all(&config.data_dir).map_err(|source| NodeError::ReadyFile {
        path: config.data_dir.clone(),
        source,
    })?;
    if config.storage.sync == SyncPolicy::UnsafeNoFsync {
        tracing::error!(
            data_dir = %config.data_dir.display(),
            "UNSAFE: --unsafe-no-fsync is set: storage is never fsynced, acknowledged writes \
             can be lost on a crash; use only as a crash-test negative control"
        );
    }
    let (log_store, sm_store) = store::open(&config.data_dir, config.storage)?;
    let committed = log_store.committed_index();
    let storage_health = log_store.health();
    let wal_counters = log_store.counters();
    let network = Network::new(
        Duration::from_millis(config.timing.heartbeat_ms.max(100)),
        Duration::from_millis(config.timing.peer_backoff_ms),
        config.dial.clone().into_iter().collect(),
    );
    let raft_config = config
        .raft_config()
        .validate()
        .map_err(|e| NodeError::Raft(e.to_string()))?;
    let raft = Raft::new(
        config.node_id,
        Arc::new(raft_config),
        network,
        log_store,
        sm_store.clone(),
    )
    .await
    .map_err(|e| NodeError::Raft(e.to_string()))?;

    let proposer = Proposer::start(raft.clone(), config.write_timeout());
    let leases = LeaseManager::start(
        raft.clone(),
        sm_store.clone(),
        proposer.clone(),
        config.timing.election_max_ms,
        Duration::from_millis(config.timing.heartbeat_ms),
        WriteRate {
            writes_per_sec: config.dr.write_rate_per_sec,
            avg_write_bytes: config.dr.write_bytes,
        },
    );
    let dr = DrController::start(
        config.dr.clone(),
        raft.clone(),
        sm_store.clone(),
        proposer.clone(),
    )
    .map_err(|e| NodeError::Raft(e.to_string()))?;
    let node = Arc::new(NodeContext {
        id: config.node_id,
        region: config.region.clone(),
        grpc_addr: grpc_addr.clone(),
        http_addr: http_addr.clone(),
        proposer,
        leases,
        dr,
        raft: raft.clone(),
        state: sm_store,
        committed,
        auth: auth.clone(),
        storage_health,
        wal_counters,
    });
    tokio::spawn(reload_on_sighup(auth));

    let (stop_tx, stop_rx) = watch::channel(false);
    let grpc = tokio::spawn(serve_grpc(node.clone(), grpc_listener, stop_rx.clone()));
    let http = tokio::spawn(crate::http::serve(node.clone(), http_listener, stop_rx));

    if config.bootstrap {
        let mut members: std::collections::BTreeMap<NodeId, Member> =
            config.peer_members().into_iter().collect();
        members.insert(
            config.node_id,
            Member {
                region: config.region.clone(),
                grpc_addr: grpc_addr.clone(),
                http_addr: http_addr.clone(),
            },
        );
        match node.initialize(members).await {
            Ok(already) => tracing::info!(already_initialized = already, "bootstrap"),
            Err(status) => tracing::warn!(%status, "bootstrap failed"),
        }
    }

    write_ready(
        &config.data_dir,
        &ReadyInfo {
            node_id: config.node_id,
            region: config.region.clone(),
            grpc_addr,
            http_addr,
            pid: std::process::id(),
        },
    )?;
    tracing::info!(node_id = config.node_id, region = %config.region, "serving");

    // Fail-stop: if the Raft core dies (a fatal storage error or a panic inside openraft), the
    // node must not linger answering status as if it still led; it stops so a supervisor can
    // restart it and clients move to the other nodes.
    let mut metrics = raft.metrics();
    let core_failed = async move {
        loop {
            if let Err(fatal) = &metrics.borrow().running_state {
                return fatal.to_string();
            }
            if metrics.changed().await.is_err() {
                return "raft core stopped".to_string();
            }
        }
    };
    let failure = tokio::select! {
        _ = shutdown => None,
        fatal = core_failed => Some(fatal),
    };
    if let Some(fatal) = &failure {
        tracing::error!(error = %fatal, "raft core failed; stopping the node");
    }
    tracing::info!("shutting down: draining requests");
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(DRAIN_DEADLINE, async {
        let _ = grpc.await;
        let _ = http.await;
    })
    .await;
    if drained.is_err() {
        tracing::warn!("drain deadline passed; aborting remaining requests");
    }
    if let Err(e) = raft.shutdown().await {
        tracing::warn!(error = %e, "raft shutdown");
    }
    let _ = std::fs::remove_file(config.data_dir.join(READY_FILE));
    tracing::info!("stopped");
    match failure {
        Some(fatal) => Err(NodeError::Raft(fatal)),
        None => Ok(()),
    }
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, NodeError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| NodeError::Bind { addr, source })
}

fn advertised(configured: &Option<String>, listener: &TcpListener) -> Result<String, NodeError> {
    if let Some(addr) = configured {
        return Ok(addr.clone());
    }
    listener
        .local_addr()
        .map(|a| a.to_string())
        .map_err(|source| NodeError::Bind {
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            source,
        })
}

fn write_ready(dir: &Path, info: &ReadyInfo) -> Result<(), NodeError> {
    let path = dir.join(READY_FILE);
    let tmp = dir.join("ready.json.tmp");
    let err = |source| NodeError::ReadyFile {
        path: path.clone(),
        source,
    };
    let text = serde_json::to_string_pretty(info).map_err(|e| err(std::io::Error::other(e)))?;
    // Write then rename, so a reader never sees a half-written file.
    std::fs::write(&tmp, text).map_err(err)?;
    std::fs::rename(&tmp, &path).map_err(err)
}

/// Reads a node's ready file, if it has written one.
pub fn read_ready(dir: &Path) -> Option<ReadyInfo> {
    let text = std::fs::read_to_string(dir.join(READY_FILE)).ok()?;
    serde_json::from_str(&text).ok()
}

async fn serve_grpc(
    node: Arc<NodeContext>,
    listener: TcpListener,
    mut stop: watch::Receiver<bool>,
) -> Result<(), NodeError> {
    let raft_service = RaftServiceServer::new(RaftTransport::new(node.raft.clone()))
        .max_decoding_message_size(MAX_RAFT_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_RAFT_MESSAGE_BYTES);
    tonic::transport::Server::builder()
        .tcp_nodelay(true)
        // One connection cannot hold more than this many requests (or streams) open: excess
        // requests wait for a slot instead of growing the server's work without bound.
        .concurrency_limit_per_connection(MAX_REQUESTS_PER_CONNECTION)
        .max_concurrent_streams(Some(MAX_REQUESTS_PER_CONNECTION as u32))
        .layer(GrpcAuthLayer::new(node.auth.clone()))
        .add_service(raft_service)
        .add_service(ClusterServiceServer::new(ClusterApi::new(node.clone())))
        .add_service(LeaseServiceServer::new(LeaseApi::new(
            node.leases.clone(),
            node.auth.clone(),
        )))
        .add_service(crate::grpc::replication_service::server(&node))
        .add_service(crate::grpc::routing_service::server(&node, &stop))
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async move {
            let _ = stop.wait_for(|s| *s).await;
        })
        .await
        .map_err(|e| NodeError::Serve(e.to_string()))
}

/// Token rotation: SIGHUP re-reads the tokens file; a file that fails to load leaves the
/// previous identities in force (and says why), so a typo never locks everyone out.
async fn reload_on_sighup(auth: Arc<Auth>) {
    let Ok(mut hangups) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
    else {
        tracing::warn!("cannot listen for SIGHUP; tokens are read at start only");
        return;
    };
    while hangups.recv().await.is_some() {
        match auth.reload() {
            Ok(identities) => tracing::info!(identities, "SIGHUP: identities reloaded"),
            Err(e) => {
                tracing::error!(error = %e, "SIGHUP: reload failed; keeping the previous identities")
            }
        }
    }
}
