//! Raft transport, server side: decodes a peer's request, hands it to openraft, encodes the
//! full `Result` back so the caller can tell a remote Raft error from a transport failure.

use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::{Request, Response, Status};

use super::raft_proto::raft_service_server::RaftService;
use super::raft_proto::RaftPayload;
use crate::codec;
use crate::raft_types::Raft;

pub struct RaftTransport {
    raft: Raft,
}

impl RaftTransport {
    pub fn new(raft: Raft) -> Self {
        RaftTransport { raft }
    }
}

fn decode<T: DeserializeOwned>(request: Request<RaftPayload>) -> Result<T, Status> {
    codec::decode("raft request", &request.into_inner().data)
        .map_err(|e| Status::invalid_argument(e.to_string()))
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
        let result = self.raft.append_entries(decode(request)?).await;
        reply(&result)
    }

    async fn vote(&self, request: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        let result = self.raft.vote(decode(request)?).await;
        reply(&result)
    }

    async fn install_snapshot(
        &self,
        request: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let result = self.raft.install_snapshot(decode(request)?).await;
        reply(&result)
    }
}
