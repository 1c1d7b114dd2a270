//! One arbiter node: storage, Raft, the peer, gRPC and HTTP servers, and the leader's
//! background duties, started together and stopped together.
//!
//! Three ports: **peer** (Raft RPCs only; mutual TLS with node certificates), **client gRPC**
//! and **client HTTP** (TLS; a client certificate is optional). Without `[tls]` all three are
//! plain TCP, which [`crate::config`] allows only on loopback or with `insecure`.
//!
//! Invariant: one way to stop. [`run`] serves until its `shutdown` future resolves, then stops
//! accepting requests, drains in-flight ones for at most [`DRAIN_DEADLINE`], shuts Raft down
//! and fsyncs storage before returning.
//!
//! Invariant: no amnesia. A data dir with neither a cluster identity nor Raft state is
//! "empty"; a node refuses to start on an empty dir unless told why it is empty — `--bootstrap`
//! (a new cluster), `--join` (a new member, added later) or `--rejoin` (a member that lost its
//! data) — and even then it answers no Raft RPC until it has an identity (see [`crate::identity`]).
//! A bootstrapping node with an empty dir asks its peers first and never initializes a second
//! cluster over an existing one.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arbiter_client::proto::cluster_service_server::ClusterServiceServer;
use arbiter_client::proto::lease_service_server::LeaseServiceServer;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio_stream::wrappers::TcpListenerStream;

use crate::auth::grpc_layer::GrpcAuthLayer;
use crate::auth::{Auth, AuthSetupError, Edge};
use crate::config::{ListenOn, NodeConfig};
use crate::dr::DrController;
use crate::grpc::cluster_service::{fetch_peer_status, ClusterApi};
use crate::grpc::lease_service::LeaseApi;
use crate::grpc::raft_proto::raft_service_server::RaftServiceServer;
use crate::grpc::raft_service::RaftTransport;
use crate::identity::{self, ClusterId, Identity, IdentityError};
use crate::leases::LeaseManager;
use crate::metrics::{Instruments, Metrics};
use crate::network::{Network, PeerContacts, PeerDialer, MAX_RAFT_MESSAGE_BYTES};
use crate::placement::Placement;
use crate::proposer::Proposer;
use crate::raft_types::{Member, NodeId, Raft};
use crate::request_span::RequestSpanLayer;
use crate::socket_handoff::{adopt_listener, AdoptError};
use crate::store::{self, StateMachineStore, StorageHealth, StoreError, SyncPolicy, WalCounters};
use crate::tls::incoming::{self, TlsListener};
use crate::tls::{NodeTls, PortKind, TlsError};
use arbiter_core::replication::WriteRate;

/// How long in-flight requests may take to finish after shutdown begins.
pub const DRAIN_DEADLINE: Duration = Duration::from_secs(5);

/// Concurrent gRPC requests (and streams) one connection may have in flight. The SDK shares one
/// connection per node among all its callers, so this is sized for a busy proxy, not one call.
const MAX_REQUESTS_PER_CONNECTION: usize = 1024;
/// The same bound on the peer port, where one connection carries one node's calls.
const MAX_PEER_REQUESTS_PER_CONNECTION: usize = 64;

/// Name of the file a node writes into its data dir once it is serving.
pub const READY_FILE: &str = "ready.json";

/// A node further behind than this (a follower catching up after a restart or installing a
/// snapshot) serves stale reads nowhere but is not ready to take client traffic either.
pub const READY_MAX_APPLY_LAG: u64 = 1_000;

/// What the services share about this node.
pub struct NodeContext {
    pub id: NodeId,
    /// Channels to the other nodes' peer ports, with this node's certificate.
    pub peers: PeerDialer,
    pub region: String,
    pub grpc_addr: String,
    pub http_addr: String,
    pub peer_addr: String,
    pub raft: Raft,
    pub state: StateMachineStore,
    pub proposer: Proposer,
    pub leases: LeaseManager,
    pub dr: DrController,
    pub placement: Placement,
    pub metrics: Arc<Metrics>,
    pub committed: Arc<AtomicU64>,
    pub identity: Identity,
    /// Who callers are and what they may do; shared by both edges.
    pub auth: Arc<Auth>,
    /// A storage failure the node is waiting out (e.g. out of space), for status.
    pub storage_health: StorageHealth,
    pub wal_counters: Arc<WalCounters>,
}

impl NodeContext {
    /// Why this node should not take client traffic now; empty when it is ready (`/readyz`,
    /// gRPC health): it knows a leader, its storage accepts writes, and its state machine is
    /// within [`READY_MAX_APPLY_LAG`] entries of its log.
    pub fn readiness_problems(&self) -> Vec<String> {
        let m = self.raft.metrics().borrow().clone();
        let mut reasons = Vec::new();
        if m.running_state.is_err() {
            reasons.push("the Raft core has stopped".to_string());
        }
        if m.current_leader.is_none() {
            reasons.push("no leader known (election in progress, or no quorum)".to_string());
        }
        if let Some(error) = self.storage_health.get() {
            reasons.push(format!("storage refuses writes: {error}"));
        }
        let last = m.last_log_index.unwrap_or(0);
        let applied = m.last_applied.map_or(0, |l| l.index);
        if last.saturating_sub(applied) > READY_MAX_APPLY_LAG {
            reasons.push(format!(
                "state machine behind: applied {applied} of {last} log entries"
            ));
        }
        reasons
    }
}

/// Written to `<data_dir>/ready.json` when the node serves: how to reach it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadyInfo {
    pub node_id: NodeId,
    pub region: String,
    pub grpc_addr: String,
    pub http_addr: String,
    /// The peer (Raft) port's address.
    pub peer_addr: String,
    /// Whether the ports speak TLS.
    pub tls: bool,
    pub pid: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot listen on {on}: {source}")]
    Bind {
        on: ListenOn,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot serve on an inherited socket: {0}")]
    Adopt(#[from] AdoptError),
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
    Identity(#[from] IdentityError),
    #[error("bootstrap failed: {0}")]
    Bootstrap(String),
    #[error(
        "data dir {path} is empty: node {node_id} has no cluster identity and no Raft state, so \
         it must not vote. If it was a member whose data was lost, restart it with `--rejoin` \
         (it is removed from the voters, re-added as a learner, caught up from the leader and \
         promoted); if it is a new member, start it with `--join` and add it with \
         `arbiter member add`; to create a new cluster, use `--bootstrap`"
    )]
    EmptyDataDir { node_id: NodeId, path: PathBuf },
    #[error(
        "data dir {path} holds Raft state but no {file}: it was written by a build without \
         cluster ids or the file was lost; restore the file, or wipe the dir and restart with \
         `--rejoin`",
        file = identity::IDENTITY_FILE
    )]
    MissingIdentity { path: PathBuf },
    #[error(
        "refusing to bootstrap: peer node {peer} already belongs to cluster {cluster_id}. This \
         node's data dir is empty; if it was a member of that cluster, restart it with \
         `--rejoin` instead of `--bootstrap`"
    )]
    BootstrapOverExisting { peer: NodeId, cluster_id: String },
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Auth(#[from] AuthSetupError),
    #[error(transparent)]
    Plaintext(#[from] crate::config::ConfigError),
}

/// openraft 0.9 restarts a node whose persisted vote is a committed vote for itself directly as
/// leader, without a new term: its read index is then the first entry of the old term and its
/// committed index only what it had applied before the crash, so a linearizable read could miss
/// entries committed later in that term (found by jepsen after whole-cluster restarts). Demoting
/// the vote to an uncommitted one of the same term keeps what Raft needs (this node voted for
/// itself in that term and will not vote for another) while making it win a new term, whose
/// first entry every read then waits for.
async fn stand_for_election_after_restart(
    log_store: &mut store::LogStore,
    id: NodeId,
) -> Result<(), NodeError> {
    use openraft::storage::RaftLogStorage;
    let vote = log_store
        .read_vote()
        .await
        .map_err(|e| NodeError::Raft(e.to_string()))?;
    if let Some(vote) = vote.filter(|v| v.is_committed() && v.leader_id().voted_for() == Some(id)) {
        let candidate = crate::raft_types::Vote::new(vote.leader_id().get_term(), id);
        log_store
            .save_vote(&candidate)
            .await
            .map_err(|e| NodeError::Raft(e.to_string()))?;
        tracing::info!(%vote, "restarted as the last leader: standing for election again");
    }
    Ok(())
}

/// Why an empty data dir is allowed: what the node was told it is.
fn check_data_dir(
    config: &NodeConfig,
    cluster_id: Option<&ClusterId>,
    has_raft_state: bool,
) -> Result<(), NodeError> {
    match (cluster_id, has_raft_state) {
        (Some(_), _) => Ok(()),
        (None, true) => Err(NodeError::MissingIdentity {
            path: config.data_dir.clone(),
        }),
        (None, false) if config.bootstrap || config.join || config.rejoin => Ok(()),
        (None, false) => Err(NodeError::EmptyDataDir {
            node_id: config.node_id,
            path: config.data_dir.clone(),
        }),
    }
}

/// Runs a node until `shutdown` resolves; `ready` (if given) learns how to reach it once it
/// serves.
pub async fn run(
    config: NodeConfig,
    shutdown: impl Future<Output = ()>,
    ready: Option<oneshot::Sender<ReadyInfo>>,
) -> Result<(), NodeError> {
    // Before any port is bound: a node that cannot tell callers apart must not serve them.
    let auth = Arc::new(Auth::new(config.auth.clone(), config.insecure)?);
    let tls = match &config.tls {
        Some(paths) => {
            let tls = NodeTls::load(paths.clone())?;
            Some(tls)
        }
        None => {
            if config.insecure {
                tracing::warn!(
                    "INSECURE: --insecure set and no [tls]: Raft, leases and the DR API are served \
                     over plain TCP, unauthenticated peers can join the Raft traffic"
                );
            }
            None
        }
    };
    tokio::spawn(reload_on_sighup(tls.clone(), auth.clone()));
    let grpc_listener = bind(config.grpc_listen).await?;
    let http_listener = bind(config.http_listen).await?;
    let peer_listener = bind(config.peer_listen).await?;
    check_inherited_plaintext(
        &config,
        [
            ("grpc_listen", config.grpc_listen, &grpc_listener),
            ("http_listen", config.http_listen, &http_listener),
            ("peer_listen", config.peer_listen, &peer_listener),
        ],
    )?;
    let grpc_addr = advertised(&config.grpc_advertise, &grpc_listener)?;
    let http_addr = advertised(&config.http_advertise, &http_listener)?;
    let peer_addr = advertised(&config.peer_advertise, &peer_listener)?;

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
    let (mut log_store, sm_store) = store::open(&config.data_dir, config.storage)?;
    stand_for_election_after_restart(&mut log_store, config.node_id).await?;
    let cluster_id = identity::read(&config.data_dir, config.node_id)?;
    let has_raft_state = identity::has_raft_state(&config.data_dir, &log_store, &sm_store).await?;
    check_data_dir(&config, cluster_id.as_ref(), has_raft_state)?;
    match &cluster_id {
        Some(id) => tracing::info!(cluster_id = %id, "data dir belongs to cluster"),
        None => tracing::info!("empty data dir: no part in Raft until this node has an identity"),
    }
    let identity = Identity::new(&config.data_dir, config.node_id, cluster_id);
    let committed = log_store.committed_index();
    let replayed_up_to = committed.load(Ordering::Relaxed);
    let storage_health = log_store.health();
    let wal_counters = log_store.counters();
    let peers = PeerDialer::new(
        // Connect covers the TLS handshake too (several round trips and signature checks), which
        // on a loaded host can take far longer than a heartbeat; each RPC still has openraft's
        // own deadline, so a longer connect budget never delays noticing a dead peer.
        Duration::from_millis(config.timing.heartbeat_ms.max(1_000)),
        tls.clone(),
    );
    let peer_contacts = PeerContacts::default();
    let network = Network::new(
        peers.clone(),
        Duration::from_millis(config.timing.peer_backoff_ms),
        config.dial.clone().into_iter().collect(),
        identity.clone(),
        peer_contacts.clone(),
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
    let placement = Placement::start(
        config.node_id,
        config.region.clone(),
        config.placement.clone(),
        config.timing,
        raft.clone(),
        sm_store.clone(),
        proposer.clone(),
        dr.clone(),
        replayed_up_to,
    );
    let metrics = Arc::new(Metrics::new(
        config.node_id,
        &config.region,
        Instruments {
            proposer: proposer.metrics(),
            wal: &wal_counters,
            snapshots: sm_store.snapshot_metrics(),
            denials: auth.denial_counters(),
            leases: leases.metrics(),
            dr: dr.metrics(),
            peer_contacts,
        },
    ));
    tokio::spawn(metrics.clone().watch_leader(raft.clone()));
    let node = Arc::new(NodeContext {
        id: config.node_id,
        region: config.region.clone(),
        grpc_addr: grpc_addr.clone(),
        http_addr: http_addr.clone(),
        peer_addr: peer_addr.clone(),
        peers,
        proposer,
        leases,
        dr,
        placement,
        metrics,
        raft: raft.clone(),
        state: sm_store,
        committed,
        identity,
        auth,
        storage_health,
        wal_counters,
    });

    let (stop_tx, stop_rx) = watch::channel(false);
    let peer = tokio::spawn(serve_peer(
        node.clone(),
        peer_listener,
        tls.clone(),
        Duration::from_millis(config.timing.election_max_ms),
        stop_rx.clone(),
    ));
    let grpc = tokio::spawn(serve_grpc(
        node.clone(),
        grpc_listener,
        tls.clone(),
        stop_rx.clone(),
    ));
    let http = tokio::spawn(serve_http(
        node.clone(),
        http_listener,
        tls.clone(),
        stop_rx,
    ));

    // Bootstrapping may wait for peers; meanwhile the node serves (peers ask it for its
    // status, the initializer hands it the cluster id), but writes no ready file yet.
    let startup = async {
        if config.bootstrap {
            let me = Member {
                region: config.region.clone(),
                grpc_addr: grpc_addr.clone(),
                http_addr: http_addr.clone(),
                peer_addr: peer_addr.clone(),
            };
            bootstrap(&node, &config, me).await?;
        }
        let info = ReadyInfo {
            node_id: config.node_id,
            region: config.region.clone(),
            grpc_addr: grpc_addr.clone(),
            http_addr: http_addr.clone(),
            peer_addr: peer_addr.clone(),
            tls: tls.is_some(),
            pid: std::process::id(),
        };
        write_ready(&config.data_dir, &info)?;
        tracing::info!(node_id = config.node_id, region = %config.region, "serving");
        if let Some(ready) = ready {
            let _ = ready.send(info);
        }
        std::future::pending::<Result<(), NodeError>>().await
    };

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
        fatal = core_failed => {
            tracing::error!(error = %fatal, "raft core failed; stopping the node");
            Some(NodeError::Raft(fatal))
        }
        Err(e) = startup => {
            tracing::error!(error = %e, "cannot start; stopping the node");
            Some(e)
        }
    };
    tracing::info!("shutting down: draining requests");
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(DRAIN_DEADLINE, async {
        let _ = peer.await;
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
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// How often a bootstrapping node asks its peers again while it waits.
const BOOTSTRAP_RETRY: Duration = Duration::from_secs(1);

/// `--bootstrap`: create the cluster of this node and its peers, once. A node that already
/// belongs to a cluster does nothing. With an empty data dir it first asks every peer: if one
/// belongs to an initialized cluster, this node lost its data and must rejoin, so it stops;
/// while a peer is unreachable it waits rather than initializing alone. Among the members, the
/// one with the lowest id initializes (generating the cluster id and handing it to the others);
/// the others wait until it has handed them the id.
async fn bootstrap(node: &NodeContext, config: &NodeConfig, me: Member) -> Result<(), NodeError> {
    let mut members: std::collections::BTreeMap<NodeId, Member> =
        config.peer_members().into_iter().collect();
    members.insert(config.node_id, me);
    let initializer = members.keys().next() == Some(&config.node_id);
    if node.identity.cluster_id().is_none() {
        wait_for_peers(node, config, initializer).await?;
    }
    if !initializer {
        return Ok(());
    }
    match node.initialize(members).await {
        Ok(already) => {
            tracing::info!(already_initialized = already, "bootstrap");
            Ok(())
        }
        Err(status) => Err(NodeError::Bootstrap(status.message().to_string())),
    }
}

/// The empty-dir half of [`bootstrap`]: returns once this node may go on (it was handed the
/// id, or it is the initializer and every peer answered without belonging to a cluster), and
/// fails if a peer already belongs to an initialized cluster.
async fn wait_for_peers(
    node: &NodeContext,
    config: &NodeConfig,
    initializer: bool,
) -> Result<(), NodeError> {
    loop {
        if node.identity.cluster_id().is_some() {
            tracing::info!("bootstrap: the initializer handed this node the cluster id");
            return Ok(());
        }
        let mut unreachable = Vec::new();
        for peer in &config.peers {
            let member = peer.member();
            match fetch_peer_status(&node.peers, peer.id, member.peer_dial_addr()).await {
                Ok(status) if !status.cluster_id.is_empty() && !status.voters.is_empty() => {
                    // Handed the id between our check above and this answer: a peer of our
                    // own new cluster, not an existing one.
                    if node.identity.cluster_id().map(|c| c.to_string())
                        == Some(status.cluster_id.clone())
                    {
                        return Ok(());
                    }
                    return Err(NodeError::BootstrapOverExisting {
                        peer: peer.id,
                        cluster_id: status.cluster_id,
                    });
                }
                Ok(_) => {}
                Err(reason) => unreachable.push(format!(
                    "node {} at {}: {reason}",
                    peer.id,
                    member.peer_dial_addr()
                )),
            }
        }
        if unreachable.is_empty() && initializer {
            return Ok(());
        }
        if unreachable.is_empty() {
            tracing::info!("bootstrap: waiting for the lowest-id member to initialize the cluster");
        } else {
            tracing::warn!(
                unreachable = %unreachable.join("; "),
                "bootstrap: waiting for every peer to answer before initializing"
            );
        }
        tokio::time::sleep(BOOTSTRAP_RETRY).await;
    }
}

async fn bind(on: ListenOn) -> Result<TcpListener, NodeError> {
    let bind_error = |source| NodeError::Bind { on, source };
    match on {
        ListenOn::Address(addr) => TcpListener::bind(addr).await.map_err(bind_error),
        ListenOn::InheritedFd(fd) => TcpListener::from_std(adopt_listener(fd)?).map_err(bind_error),
    }
}

/// The plaintext rule of [`crate::config::check_plaintext`] for sockets handed down by a
/// supervisor, whose addresses the config could not know.
fn check_inherited_plaintext(
    config: &NodeConfig,
    listens: [(&'static str, ListenOn, &TcpListener); 3],
) -> Result<(), NodeError> {
    let mut inherited = Vec::new();
    for (field, on, listener) in listens {
        if let ListenOn::InheritedFd(_) = on {
            let addr = listener
                .local_addr()
                .map_err(|source| NodeError::Bind { on, source })?;
            inherited.push((field, addr));
        }
    }
    crate::config::check_plaintext(config.tls.is_some(), config.insecure, &inherited)?;
    Ok(())
}

fn advertised(configured: &Option<String>, listener: &TcpListener) -> Result<String, NodeError> {
    if let Some(addr) = configured {
        return Ok(addr.clone());
    }
    listener
        .local_addr()
        .map(|a| a.to_string())
        .map_err(|source| NodeError::Bind {
            on: ListenOn::Address(SocketAddr::from(([0, 0, 0, 0], 0))),
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

/// The peer port: the Raft transport and the node-to-node cluster calls (the bootstrap survey's
/// `GetStatus`, `JoinCluster`). With TLS, only node certificates of the cluster CA get through
/// the handshake ([`crate::tls`]); the auth layer serves nothing else here.
async fn serve_peer(
    node: Arc<NodeContext>,
    listener: TcpListener,
    tls: Option<Arc<NodeTls>>,
    leader_lease: Duration,
    stop: watch::Receiver<bool>,
) -> Result<(), NodeError> {
    let transport = RaftTransport::new(node.raft.clone(), node.identity.clone(), leader_lease);
    let raft_service = RaftServiceServer::new(transport)
        .max_decoding_message_size(MAX_RAFT_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_RAFT_MESSAGE_BYTES);
    let router = tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .initial_stream_window_size(crate::network::PEER_STREAM_WINDOW)
        .initial_connection_window_size(crate::network::PEER_CONNECTION_WINDOW)
        .layer(RequestSpanLayer)
        // A peer runs one replication stream plus votes and heartbeats at a time; without TLS
        // (loopback only) anyone reaching the port is a "peer", so it is bounded like a client.
        .concurrency_limit_per_connection(MAX_PEER_REQUESTS_PER_CONNECTION)
        .max_concurrent_streams(Some(MAX_PEER_REQUESTS_PER_CONNECTION as u32))
        .layer(GrpcAuthLayer::new(node.auth.clone(), Edge::Peer))
        .add_service(raft_service)
        .add_service(ClusterServiceServer::new(ClusterApi::new(node.clone())));
    serve_tonic(router, listener, tls.map(|t| (t, PortKind::Peer)), stop).await
}

/// The client gRPC port: cluster administration, leases, replication, routing.
async fn serve_grpc(
    node: Arc<NodeContext>,
    listener: TcpListener,
    tls: Option<Arc<NodeTls>>,
    stop: watch::Receiver<bool>,
) -> Result<(), NodeError> {
    let router = tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .layer(RequestSpanLayer)
        // One connection cannot hold more than this many requests (or streams) open: excess
        // requests wait for a slot instead of growing the server's work without bound.
        .concurrency_limit_per_connection(MAX_REQUESTS_PER_CONNECTION)
        .max_concurrent_streams(Some(MAX_REQUESTS_PER_CONNECTION as u32))
        .layer(GrpcAuthLayer::new(node.auth.clone(), Edge::Client))
        .add_service(ClusterServiceServer::new(ClusterApi::new(node.clone())))
        .add_service(LeaseServiceServer::new(LeaseApi::new(
            node.leases.clone(),
            node.auth.clone(),
        )))
        .add_service(crate::grpc::replication_service::server(&node))
        .add_service(crate::grpc::routing_service::server(&node, &stop))
        .add_service(health_service(&node, &stop))
        .add_service(reflection_v1()?)
        .add_service(reflection_v1alpha()?);
    serve_tonic(router, listener, tls.map(|t| (t, PortKind::Grpc)), stop).await
}

/// The services `grpc.health.v1` reports on: the overall server (`""`) and each public one.
const HEALTH_SERVICES: &[&str] = &[
    "",
    "arbiter.v1.ClusterService",
    "arbiter.v1.LeaseService",
    "arbiter.v1.RoutingService",
    "codesprintpro.dr.replication.v1.ReplicationCoordinator",
];

/// `grpc.health.v1.Health` (public, like `/readyz`): every service is `SERVING` while the node
/// is ready ([`NodeContext::readiness_problems`]) and `NOT_SERVING` otherwise, and all turn
/// `NOT_SERVING` when the node stops, so a load balancer drains it first.
fn health_service(
    node: &Arc<NodeContext>,
    stop: &watch::Receiver<bool>,
) -> tonic_health::pb::health_server::HealthServer<impl tonic_health::pb::health_server::Health> {
    use tonic_health::ServingStatus;
    let (reporter, service) = tonic_health::server::health_reporter();
    let node = node.clone();
    let mut stop = stop.clone();
    tokio::spawn(async move {
        let mut raft = node.raft.metrics();
        // Storage health and apply lag are looked at on this tick; between ticks only a change
        // of leader or role is worth a look (the metrics change on every commit).
        let mut recheck = tokio::time::interval(Duration::from_secs(1));
        let mut current = None;
        let role = |raft: &watch::Receiver<openraft::RaftMetrics<NodeId, Member>>| {
            let m = raft.borrow();
            (m.current_leader, m.state, m.running_state.is_ok())
        };
        loop {
            let status = if *stop.borrow() {
                ServingStatus::NotServing
            } else if node.readiness_problems().is_empty() {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            };
            if current != Some(status) {
                for name in HEALTH_SERVICES {
                    reporter.set_service_status(name, status).await;
                }
                current = Some(status);
            }
            if *stop.borrow() {
                return;
            }
            let seen = role(&raft);
            tokio::select! {
                changed = async {
                    loop {
                        if raft.changed().await.is_err() {
                            return false;
                        }
                        if role(&raft) != seen {
                            return true;
                        }
                    }
                } => if !changed { return },
                _ = recheck.tick() => {}
                _ = stop.changed() => {}
            }
        }
    });
    service
}

fn reflection_v1() -> Result<
    tonic_reflection::server::v1::ServerReflectionServer<
        impl tonic_reflection::server::v1::ServerReflection,
    >,
    NodeError,
> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(arbiter_client::proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| NodeError::Serve(format!("gRPC reflection: {e}")))
}

/// The older reflection protocol, still the one many tools (grpcurl before 1.9) ask first.
fn reflection_v1alpha() -> Result<
    tonic_reflection::server::v1alpha::ServerReflectionServer<
        impl tonic_reflection::server::v1alpha::ServerReflection,
    >,
    NodeError,
> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(arbiter_client::proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .map_err(|e| NodeError::Serve(format!("gRPC reflection: {e}")))
}

/// A gRPC router behind the request span and the auth layer.
type AuthRouter = tonic::transport::server::Router<
    tower::layer::util::Stack<
        GrpcAuthLayer,
        tower::layer::util::Stack<RequestSpanLayer, tower::layer::util::Identity>,
    >,
>;

/// Serves `router` on `listener`, over TLS when `tls` is given, until `stop` turns true.
async fn serve_tonic(
    router: AuthRouter,
    listener: TcpListener,
    tls: Option<(Arc<NodeTls>, PortKind)>,
    stop: watch::Receiver<bool>,
) -> Result<(), NodeError> {
    let mut on_stop = stop.clone();
    let stopped = async move {
        let _ = on_stop.wait_for(|s| *s).await;
    };
    let served = match tls {
        Some((tls, port)) => {
            use futures::StreamExt;
            let streams = incoming::accept(listener, tls, port, stop);
            let streams =
                tokio_stream::wrappers::ReceiverStream::new(streams).map(Ok::<_, std::io::Error>);
            router.serve_with_incoming_shutdown(streams, stopped).await
        }
        None => {
            use futures::StreamExt;
            // The builder's `tcp_nodelay` applies only to sockets tonic accepts itself; these
            // come from our listener, and without it small replies wait on Nagle and delayed
            // ACKs (keep-alive throughput fell to a quarter).
            let streams = TcpListenerStream::new(listener).map(|accepted| {
                if let Ok(tcp) = &accepted {
                    let _ = tcp.set_nodelay(true);
                }
                accepted
            });
            router.serve_with_incoming_shutdown(streams, stopped).await
        }
    };
    served.map_err(|e| NodeError::Serve(e.to_string()))
}

/// The client HTTP port.
async fn serve_http(
    node: Arc<NodeContext>,
    listener: TcpListener,
    tls: Option<Arc<NodeTls>>,
    stop: watch::Receiver<bool>,
) -> Result<(), NodeError> {
    match tls {
        Some(tls) => {
            let local = listener.local_addr().map_err(|source| NodeError::Bind {
                on: ListenOn::Address(SocketAddr::from(([0, 0, 0, 0], 0))),
                source,
            })?;
            let streams = incoming::accept(listener, tls, PortKind::Http, stop.clone());
            crate::http::serve(node, TlsListener::new(streams, local), stop).await
        }
        None => crate::http::serve(node, listener, stop).await,
    }
}

/// Rotation without a restart: SIGHUP reloads the TLS files (certificates, CA bundle) and
/// re-reads the tokens file. Each reload builds everything first and swaps only if all of it is
/// valid, so a bad file leaves the previous certificates or identities in force (and says
/// why) rather than locking everyone out.
async fn reload_on_sighup(tls: Option<Arc<NodeTls>>, auth: Arc<Auth>) {
    let Ok(mut hangups) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
    else {
        tracing::warn!("cannot listen for SIGHUP; certificates and tokens are read at start only");
        return;
    };
    while hangups.recv().await.is_some() {
        if let Some(tls) = &tls {
            match tls.reload() {
                Ok(()) => tracing::info!("SIGHUP: TLS certificates and CA reloaded"),
                Err(e) => {
                    tracing::error!(error = %e, "SIGHUP: TLS reload failed; keeping the old certificates")
                }
            }
        }
        match auth.reload() {
            Ok(identities) => tracing::info!(identities, "SIGHUP: identities reloaded"),
            Err(e) => {
                tracing::error!(error = %e, "SIGHUP: reload failed; keeping the previous identities")
            }
        }
    }
}
