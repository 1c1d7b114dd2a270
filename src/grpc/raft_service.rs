//! Raft transport, server side: decodes a peer's request, hands it to openraft, encodes the
//! full `Result` back so the caller can tell a remote Raft error from a transport failure.
//!
//! Invariant: no request reaches openraft unless it carries this node's cluster id; a node
//! without an identity (an empty data dir) answers none, so it can neither vote nor
//! acknowledge entries. Refusals are `FailedPrecondition` with the reason, and logged.

use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::{Request, Response, Status};

use super::raft_proto::raft_service_server::RaftService;
use super::raft_proto::RaftPayload;
use crate::codec;
use crate::identity::{Identity, PeerRefusal, CLUSTER_ID_HEADER};
use crate::raft_types::Raft;

pub struct RaftTransport {
    raft: Raft,
    identity: Identity,
}

impl RaftTransport {
    pub fn new(raft: Raft, identity: Identity) -> Self {
        RaftTransport { raft, identity }
    }

    /// Checks the sender's cluster id, then decodes the request.
    fn admit<T: DeserializeOwned>(
        &self,
        rpc: &'static str,
        request: Request<RaftPayload>,
    ) -> Result<T, Status> {
        let theirs = request
            .metadata()
            .get(CLUSTER_ID_HEADER)
            .and_then(|v| v.to_str().ok());
        if let Err(refusal) = self.identity.check_peer(theirs) {
            match refusal {
                // Expected while a new or rejoining node waits to be added: not worth a warning
                // on every heartbeat.
                PeerRefusal::NoIdentity { .. } => {
                    tracing::debug!(rpc, reason = %refusal, "refused a Raft request")
                }
                _ => tracing::warn!(rpc, reason = %refusal, "refused a Raft request"),
            }
            return Err(Status::failed_precondition(refusal.to_string()));
        }
        codec::decode("raft request", &request.into_inner().data)
            .map_err(|e| Status::invalid_argument(e.to_string()))
    }
}

fn reply<T: Serialize>(result: &T) -> Result<Response<RaftPayload>, Status> {
    let data = codec::encode("raft reply", result).map_err(|e| Status::internal(e.to_string()))?;
    Ok(Response::new(RaftPayload { data }))
}

#[tonic::async_trait]
impl RaftService for RaftTransport {
    async fn append_entries(
        &self,
        request: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let result = self
            .raft
            .append_entries(self.admit("append_entries", request)?)
            .await;
        reply(&result)
    }

    async fn vote(&self, request: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        let result = self.raft.vote(self.admit("vote", request)?).await;
        reply(&result)
    }

    async fn install_snapshot(
        &self,
        request: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let result = self
            .raft
            .install_snapshot(self.admit("install_snapshot", request)?)
            .await;
        reply(&result)
    }
}
