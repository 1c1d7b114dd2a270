//! Cluster administration over gRPC: bootstrap (idempotent), membership changes, status,
//! handing the cluster identity to joining nodes, and consistent snapshots for backups.
//!
//! Invariant: a node receives the cluster id (`JoinCluster`) only as a member of a brand-new
//! cluster (from its initializer) or when it is being added as a *learner* — never while it is
//! a voter — so an empty data dir can never turn into a voter that forgot what it voted for.
//!
//! Invariant: bootstrap and membership changes wait on the Raft core like writes do, and end
//! by the same write deadline; a call that runs out of it answers `DEADLINE_EXCEEDED`, outcome
//! unknown (the change may still commit), never hangs with a paused or partitioned quorum.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use std::time::Duration;

use arbiter_client::proto::cluster_service_client::ClusterServiceClient;
use arbiter_client::proto::cluster_service_server::ClusterService;
use arbiter_client::proto::{
    AddLearnerRequest, ChangeMembershipRequest, InitializeRequest, InitializeResponse,
    JoinClusterRequest, JoinClusterResponse, MembershipResponse, NodeInfo, NodeStatus,
    SaveSnapshotRequest, SaveSnapshotResponse, StatusRequest,
};
use arbiter_client::ClientOptions;
use openraft::error::{CheckIsLeaderError, ClientWriteError, InitializeError, RaftError};
use openraft::ServerState;
use tonic::{Request, Response, Status};

use super::status::not_leader;
use crate::codec;
use crate::identity::ClusterId;
use crate::network::PeerDialer;
use crate::node::NodeContext;
use crate::proposer::WriteError;
use crate::raft_types::{Member, NodeId, Raft};

pub struct ClusterApi {
    node: Arc<NodeContext>,
}

impl ClusterApi {
    pub fn new(node: Arc<NodeContext>) -> Self {
        ClusterApi { node }
    }
}

fn member_of(info: &NodeInfo) -> Result<(NodeId, Member), Status> {
    if info.node_id == 0 {
        return Err(Status::invalid_argument("node_id must be at least 1"));
    }
    if info.grpc_addr.is_empty() {
        return Err(Status::invalid_argument(format!(
            "node {} has no grpc_addr",
            info.node_id
        )));
    }
    Ok((
        info.node_id,
        Member {
            region: info.region.clone(),
            grpc_addr: info.grpc_addr.clone(),
            http_addr: info.http_addr.clone(),
            // A member named without a peer address is dialled at its gRPC address.
            peer_addr: if info.peer_addr.is_empty() {
                info.grpc_addr.clone()
            } else {
                info.peer_addr.clone()
            },
        },
    ))
}

fn info_of(id: NodeId, member: &Member) -> NodeInfo {
    NodeInfo {
        node_id: id,
        region: member.region.clone(),
        grpc_addr: member.grpc_addr.clone(),
        http_addr: member.http_addr.clone(),
        peer_addr: member.peer_addr.clone(),
    }
}

fn membership_error(e: RaftError<NodeId, ClientWriteError<NodeId, Member>>) -> Status {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => not_leader(
            f.leader_id,
            f.leader_node.as_ref().map(|m| m.grpc_addr.as_str()),
        ),
        RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => {
            Status::failed_precondition(e.to_string())
        }
        RaftError::Fatal(f) => {
            tracing::error!(error = %f, "membership change failed");
            Status::unavailable("raft is shutting down")
        }
    }
}

/// Bootstraps the cluster unless it already is; returns whether it already was.
async fn initialize(raft: Raft, members: BTreeMap<NodeId, Member>) -> Result<bool, Status> {
    match raft.initialize(members).await {
        Ok(()) => Ok(false),
        Err(RaftError::APIError(InitializeError::NotAllowed(_))) => Ok(true),
        Err(RaftError::APIError(InitializeError::NotInMembers(e))) => {
            Err(Status::invalid_argument(e.to_string()))
        }
        Err(RaftError::Fatal(f)) => {
            tracing::error!(error = %f, "initialize failed");
            Err(Status::unavailable("raft is shutting down"))
        }
    }
}

#[tonic::async_trait]
impl ClusterService for ClusterApi {
    async fn initialize(
        &self,
        request: Request<InitializeRequest>,
    ) -> Result<Response<InitializeResponse>, Status> {
        let members = request
            .into_inner()
            .members
            .iter()
            .map(member_of)
            .collect::<Result<BTreeMap<_, _>, _>>()?;
        if members.is_empty() {
            return Err(Status::invalid_argument("members must not be empty"));
        }
        let already_initialized = self.node.initialize(members).await?;
        Ok(Response::new(InitializeResponse {
            already_initialized,
        }))
    }

    async fn add_learner(
        &self,
        request: Request<AddLearnerRequest>,
    ) -> Result<Response<MembershipResponse>, Status> {
        let node = request
            .into_inner()
            .node
            .ok_or_else(|| Status::invalid_argument("node is required"))?;
        let (id, member) = member_of(&node)?;
        let metrics = self.node.raft.metrics().borrow().clone();
        if metrics.current_leader != Some(self.node.id) {
            let leader = metrics.current_leader;
            let addr = leader
                .and_then(|l| metrics.membership_config.membership().get_node(&l).cloned())
                .map(|m| m.grpc_addr);
            return Err(not_leader(leader, addr.as_deref()));
        }
        if metrics
            .membership_config
            .membership()
            .voter_ids()
            .any(|v| v == id)
        {
            return Err(Status::failed_precondition(format!(
                "node {id} is a voter; a voter is not re-added as a learner (if it lost its \
                 data, restart it with `arbiter serve --rejoin`, which removes it first)"
            )));
        }
        let cluster_id =
            self.node.identity.cluster_id().ok_or_else(|| {
                Status::failed_precondition("this node has no cluster identity yet")
            })?;
        hand_identity(&self.node.peers, id, member.peer_dial_addr(), &cluster_id).await?;
        // Blocking: answers once the learner has caught up, so the deadline covers that too.
        let raft = self.node.raft.clone();
        let response = self
            .node
            .within_write_deadline(async move {
                raft.add_learner(id, member, true)
                    .await
                    .map_err(membership_error)
            })
            .await?;
        Ok(Response::new(MembershipResponse {
            log_index: response.log_id.index,
        }))
    }

    async fn change_membership(
        &self,
        request: Request<ChangeMembershipRequest>,
    ) -> Result<Response<MembershipResponse>, Status> {
        let voters: BTreeSet<NodeId> = request.into_inner().voters.into_iter().collect();
        if voters.is_empty() {
            return Err(Status::invalid_argument("voters must not be empty"));
        }
        let raft = self.node.raft.clone();
        let response = self
            .node
            .within_write_deadline(async move {
                raft.change_membership(voters, false)
                    .await
                    .map_err(membership_error)
            })
            .await?;
        Ok(Response::new(MembershipResponse {
            log_index: response.log_id.index,
        }))
    }

    async fn get_status(
        &self,
        _request: Request<StatusRequest>,
    ) -> Result<Response<NodeStatus>, Status> {
        Ok(Response::new(self.node.status().await))
    }

    async fn join_cluster(
        &self,
        request: Request<JoinClusterRequest>,
    ) -> Result<Response<JoinClusterResponse>, Status> {
        let request = request.into_inner();
        if request.node_id != self.node.id {
            return Err(Status::invalid_argument(format!(
                "this is node {}, not node {}",
                self.node.id, request.node_id
            )));
        }
        let cluster_id = ClusterId::try_from(request.cluster_id)?;
        self.node.identity.adopt(&cluster_id).await?;
        Ok(Response::new(JoinClusterResponse {}))
    }

    async fn save_snapshot(
        &self,
        _request: Request<SaveSnapshotRequest>,
    ) -> Result<Response<SaveSnapshotResponse>, Status> {
        // A read-index round: we are still the leader and have applied everything committed
        // before this call, so the copy below holds every write acknowledged before it.
        self.node
            .raft
            .ensure_linearizable()
            .await
            .map_err(|e| match e {
                RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f)) => not_leader(
                    f.leader_id,
                    f.leader_node.as_ref().map(|m| m.grpc_addr.as_str()),
                ),
                RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(q)) => {
                    Status::unavailable(q.to_string())
                }
                RaftError::Fatal(f) => {
                    tracing::error!(error = %f, "snapshot for a backup");
                    Status::unavailable("raft is shutting down")
                }
            })?;
        let state = self.node.state.read().clone();
        let cluster_id =
            self.node.identity.cluster_id().ok_or_else(|| {
                Status::failed_precondition("this node has no cluster identity yet")
            })?;
        let last = state.last_applied.unwrap_or_default();
        // Encoding a large state takes a while: off the runtime, on the clone.
        let (data, state_digest) = tokio::task::spawn_blocking(move || {
            codec::encode("snapshot data", &state).map(|data| (data, state.digest()))
        })
        .await
        .map_err(|e| e.to_string())
        .and_then(|encoded| encoded.map_err(|e| e.to_string()))
        .map_err(|e| {
            tracing::error!(error = %e, "encoding a snapshot for a backup");
            Status::internal("cannot encode the snapshot; see the node log")
        })?;
        Ok(Response::new(SaveSnapshotResponse {
            cluster_id: cluster_id.to_string(),
            last_applied_index: last.index,
            last_applied_term: last.leader_id.term,
            state_digest,
            data,
        }))
    }
}

/// How long asking a node for its status may take.
const STATUS_DEADLINE: Duration = Duration::from_secs(3);

/// A node's status through its client gRPC port, with `options`' TLS and credentials (the CLI,
/// `arbiter up`), within a deadline; the error says why it could not be had.
pub async fn fetch_status(endpoint: String, options: &ClientOptions) -> Result<NodeStatus, String> {
    let channel = arbiter_client::channel(&endpoint, options).map_err(|e| e.to_string())?;
    status_within(ClusterServiceClient::new(channel)).await
}

/// The leader's status, found through the client gRPC ports of `endpoints` (and the leader
/// address a follower names): the one leader-finding loop of the gRPC side (CLI membership
/// commands, `arbiter up`, tests and the jepsen harness). With `agreed`, every reachable node
/// must also name that leader, so a just-elected leader is not returned while another node
/// still follows an older one. Waits out elections until `timeout`; the error lists what the
/// nodes said.
pub async fn find_leader(
    endpoints: &[String],
    timeout: Duration,
    agreed: bool,
    options: &ClientOptions,
) -> Result<NodeStatus, String> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let statuses =
            futures::future::join_all(endpoints.iter().map(|e| fetch_status(e.clone(), options)))
                .await;
        let mut last = Vec::new();
        let mut reachable = Vec::new();
        for (endpoint, status) in endpoints.iter().zip(statuses) {
            match status {
                Ok(status) => reachable.push(status),
                Err(e) => last.push(format!("{endpoint}: {e}")),
            }
        }
        let leader = match reachable.iter().find(|s| s.role == "Leader") {
            Some(leader) => Some(leader.clone()),
            // A follower names a leader outside `endpoints` (a single known node, say).
            None => match reachable.iter().find(|s| !s.leader_grpc_addr.is_empty()) {
                Some(s) if !agreed => fetch_status(s.leader_grpc_addr.clone(), options)
                    .await
                    .ok()
                    .filter(|l| l.role == "Leader"),
                _ => None,
            },
        };
        if let Some(leader) = leader {
            let agrees = reachable
                .iter()
                .all(|s| s.leader_id == Some(leader.node_id));
            if !agreed || agrees {
                return Ok(leader);
            }
        }
        for s in &reachable {
            last.push(format!(
                "node {} ({}): {}, leader {:?}",
                s.node_id, s.grpc_addr, s.role, s.leader_id
            ));
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(format!(
                "no leader within {} ms among {}: {}",
                timeout.as_millis(),
                endpoints.join(","),
                last.join("; ")
            ));
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Node `id`'s status through its peer port at `addr`, as this node (its certificate): the
/// bootstrap survey.
pub async fn fetch_peer_status(
    peers: &PeerDialer,
    id: NodeId,
    addr: &str,
) -> Result<NodeStatus, String> {
    let channel = peers
        .channel(id, addr)
        .map_err(|e| format!("connect: {e}"))?;
    status_within(ClusterServiceClient::new(channel)).await
}

async fn status_within<T>(mut client: ClusterServiceClient<T>) -> Result<NodeStatus, String>
where
    T: tonic::client::GrpcService<tonic::body::Body>,
    T::Error: Into<tonic::codegen::StdError>,
    T::ResponseBody: tonic::codegen::Body<Data = tonic::codegen::Bytes> + Send + 'static,
    <T::ResponseBody as tonic::codegen::Body>::Error: Into<tonic::codegen::StdError> + Send,
{
    let call = async {
        client
            .get_status(StatusRequest {})
            .await
            .map(|r| r.into_inner())
            .map_err(|s| format!("{:?}: {}", s.code(), s.message()))
    };
    tokio::time::timeout(STATUS_DEADLINE, call)
        .await
        .unwrap_or_else(|_| Err("timed out after 3 s".into()))
}

/// How long handing the cluster id to another node may take.
const HAND_OFF_DEADLINE: Duration = Duration::from_secs(5);

/// Gives node `id` the cluster id through its peer port at `peer_addr` (it persists it before
/// answering).
async fn hand_identity(
    peers: &PeerDialer,
    id: NodeId,
    peer_addr: &str,
    cluster_id: &ClusterId,
) -> Result<(), Status> {
    let unreachable = |reason: String| {
        Status::unavailable(format!(
            "cannot hand the cluster id to node {id} at {peer_addr}: {reason}"
        ))
    };
    let call = async {
        let channel = peers
            .channel(id, peer_addr)
            .map_err(|e| unreachable(e.to_string()))?;
        ClusterServiceClient::new(channel)
            .join_cluster(JoinClusterRequest {
                cluster_id: cluster_id.to_string(),
                node_id: id,
            })
            .await
            .map_err(|s| match s.code() {
                tonic::Code::FailedPrecondition | tonic::Code::InvalidArgument => {
                    Status::failed_precondition(format!(
                        "node {id} refused to join: {}",
                        s.message()
                    ))
                }
                _ => unreachable(s.message().to_string()),
            })
    };
    tokio::time::timeout(HAND_OFF_DEADLINE, call)
        .await
        .map_err(|_| unreachable("timed out".into()))??;
    Ok(())
}

impl NodeContext {
    /// Runs `call` to completion in a task of its own and waits for it until the write
    /// deadline; past it, answers `DEADLINE_EXCEEDED` (outcome unknown).
    ///
    /// The task is not cancelled at the deadline: openraft's `change_membership` drives the
    /// second step (joint → new config) from the caller's future, so dropping it would strand
    /// the cluster in the joint configuration. Letting it finish is what "outcome unknown"
    /// promises: the change may still complete.
    async fn within_write_deadline<T: Send + 'static>(
        &self,
        call: impl Future<Output = Result<T, Status>> + Send + 'static,
    ) -> Result<T, Status> {
        let deadline = self.proposer.timeout();
        match tokio::time::timeout(deadline, tokio::spawn(call)).await {
            Ok(Ok(result)) => result,
            Ok(Err(join_error)) => {
                tracing::error!(error = %join_error, "administrative call failed");
                Err(Status::internal(
                    "administrative call failed; see the node log",
                ))
            }
            Err(_) => Err(WriteError::Timeout {
                after_ms: u64::try_from(deadline.as_millis()).unwrap_or(u64::MAX),
            }
            .into()),
        }
    }

    /// Bootstraps the cluster unless it already is; returns whether it already was. A new
    /// cluster gets a new cluster id, which every member persists before Raft starts.
    pub async fn initialize(&self, members: BTreeMap<NodeId, Member>) -> Result<bool, Status> {
        let initialized = self.raft.is_initialized().await.map_err(|f| {
            tracing::error!(error = %f, "initialize failed");
            Status::unavailable("raft is shutting down")
        })?;
        if initialized {
            return Ok(true);
        }
        if !members.contains_key(&self.id) {
            return Err(Status::invalid_argument(format!(
                "this node ({}) must be one of the members",
                self.id
            )));
        }
        let cluster_id = self.identity.get_or_create().await?;
        for (id, member) in members.iter().filter(|(id, _)| **id != self.id) {
            hand_identity(&self.peers, *id, member.peer_dial_addr(), &cluster_id).await?;
        }
        tracing::info!(cluster_id = %cluster_id, members = members.len(), "initializing a new cluster");
        let raft = self.raft.clone();
        self.within_write_deadline(initialize(raft, members)).await
    }

    pub async fn status(&self) -> NodeStatus {
        let metrics = self.raft.metrics().borrow().clone();
        let membership = metrics.membership_config.membership();
        let voter_ids: BTreeSet<NodeId> = membership.voter_ids().collect();
        let (mut voters, mut learners) = (Vec::new(), Vec::new());
        for (id, member) in membership.nodes() {
            if voter_ids.contains(id) {
                voters.push(info_of(*id, member));
            } else {
                learners.push(info_of(*id, member));
            }
        }
        let leader_grpc_addr = metrics
            .current_leader
            .and_then(|id| membership.get_node(&id))
            .map(|m| m.grpc_addr.clone())
            .unwrap_or_default();
        let role = match metrics.state {
            ServerState::Leader => "Leader",
            ServerState::Follower => "Follower",
            ServerState::Candidate => "Candidate",
            ServerState::Learner => "Learner",
            ServerState::Shutdown => "Shutdown",
        };
        let leader_moves = self.state.read().machine.placement.moves();
        // The index and the digest describe the same state.
        let (applied, digest) = self.state.digest().await;
        let applied_index = applied.map(|l| l.index);
        let committed = self.committed.load(Ordering::Relaxed);
        NodeStatus {
            node_id: self.id,
            region: self.region.clone(),
            role: role.to_string(),
            term: metrics.current_term,
            leader_id: metrics.current_leader,
            leader_grpc_addr,
            last_log_index: metrics.last_log_index,
            committed_index: (committed > 0).then_some(committed),
            applied_index,
            snapshot_index: metrics.snapshot.map(|l| l.index),
            purged_index: metrics.purged.map(|l| l.index),
            voters,
            learners,
            state_digest: digest,
            grpc_addr: self.grpc_addr.clone(),
            http_addr: self.http_addr.clone(),
            cluster_id: self
                .identity
                .cluster_id()
                .map(|c| c.to_string())
                .unwrap_or_default(),
            peer_addr: self.peer_addr.clone(),
            storage_error: self.storage_health.get().unwrap_or_default(),
            wal_syncs: self.wal_counters.syncs.load(Ordering::Relaxed),
            wal_entries: self.wal_counters.entries.load(Ordering::Relaxed),
            preferred_leader_region: self
                .placement
                .preferred_region()
                .map(|r| r.to_string())
                .unwrap_or_default(),
            leader_in_preferred_region: self.placement.leader_in_preferred_region(),
            leader_moves,
        }
    }
}
