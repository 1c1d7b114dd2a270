//! Cluster administration over gRPC: bootstrap (idempotent), membership changes, status.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use arbiter_client::proto::cluster_service_server::ClusterService;
use arbiter_client::proto::{
    AddLearnerRequest, ChangeMembershipRequest, InitializeRequest, InitializeResponse,
    MembershipResponse, NodeInfo, NodeStatus, StatusRequest,
};
use openraft::error::{ClientWriteError, InitializeError, RaftError};
use openraft::ServerState;
use tonic::{Request, Response, Status};

use super::status::not_leader;
use crate::node::NodeContext;
use crate::raft_types::{Member, NodeId};

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
        },
    ))
}

fn info_of(id: NodeId, member: &Member) -> NodeInfo {
    NodeInfo {
        node_id: id,
        region: member.region.clone(),
        grpc_addr: member.grpc_addr.clone(),
        http_addr: member.http_addr.clone(),
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
        let response = self
            .node
            .raft
            .add_learner(id, member, true)
            .await
            .map_err(membership_error)?;
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
        let response = self
            .node
            .raft
            .change_membership(voters, false)
            .await
            .map_err(membership_error)?;
        Ok(Response::new(MembershipResponse {
            log_index: response.log_id.index,
        }))
    }

    async fn get_status(
        &self,
        _request: Request<StatusRequest>,
    ) -> Result<Response<NodeStatus>, Status> {
        Ok(Response::new(self.node.status()))
    }
}

impl NodeContext {
    /// Bootstraps the cluster unless it already is; returns whether it already was.
    pub async fn initialize(&self, members: BTreeMap<NodeId, Member>) -> Result<bool, Status> {
        match self.raft.initialize(members).await {
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

    pub fn status(&self) -> NodeStatus {
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
        let (applied_index, digest) = {
            let state = self.state.read();
            (state.last_applied.map(|l| l.index), state.digest())
        };
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
            storage_error: self.storage_health.get().unwrap_or_default(),
            wal_syncs: self.wal_counters.syncs.load(Ordering::Relaxed),
            wal_entries: self.wal_counters.entries.load(Ordering::Relaxed),
        }
    }
}
