//! Raft transport, client side: openraft's `RaftNetwork` over tonic, to each peer's **peer
//! port**. With TLS, the node presents its own certificate and verifies the peer's against the
//! name `arbiter-node-<peer id>` ([`crate::tls::peer_server_name`]), whatever address it dials.
//!
//! Invariant: one tonic `Channel` per peer address, created once and cached. A lazily
//! connected channel reconnects by itself after the peer restarts, so no request ever pays
//! for channel setup. Transport failures are reported as `Unreachable`, which makes openraft
//! back off instead of spinning on a dead peer.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{Backoff, RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::transport::{Channel, Endpoint};

use crate::codec;
use crate::grpc::raft_proto::raft_service_client::RaftServiceClient;
use crate::grpc::raft_proto::RaftPayload;
use crate::raft_types::{Member, NodeId, TypeConfig};
use crate::tls::NodeTls;

/// Largest Raft message accepted or sent: generous for AppendEntries batches and snapshot
/// chunks (openraft chunks snapshots at `snapshot_max_chunk_size`, 3 MiB by default).
pub const MAX_RAFT_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

#[derive(Clone)]
pub struct Network {
    channels: Arc<Mutex<HashMap<String, Channel>>>,
    /// Per-peer dial addresses that replace the advertised one: lets a fault-injecting proxy
    /// sit on each directed link (this node → that peer) without changing the membership.
    dial_overrides: Arc<HashMap<NodeId, String>>,
    connect_timeout: Duration,
    backoff: Duration,
    /// `None`: plain TCP (loopback or `--insecure`).
    tls: Option<Arc<NodeTls>>,
}

impl Network {
    pub fn new(
        connect_timeout: Duration,
        backoff: Duration,
        dial_overrides: HashMap<NodeId, String>,
        tls: Option<Arc<NodeTls>>,
    ) -> Self {
        Network {
            channels: Arc::default(),
            dial_overrides: Arc::new(dial_overrides),
            connect_timeout,
            backoff,
            tls,
        }
    }

    fn channel(&self, target: NodeId, addr: &str) -> Result<Channel, tonic::transport::Error> {
        // Held only for a map lookup or insert; never across an await.
        let mut channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(channel) = channels.get(addr) {
            return Ok(channel.clone());
        }
        let endpoint = Endpoint::from_shared(format!("http://{addr}"))?
            .connect_timeout(self.connect_timeout)
            .tcp_nodelay(true);
        let channel = match &self.tls {
            Some(tls) => {
                let tls = tls.clone();
                // The current dial configuration per connection: a SIGHUP reload applies to the
                // next reconnect.
                let connector =
                    crate::tls::connector(move || tls.dial(), crate::tls::peer_server_name(target));
                endpoint.connect_with_connector_lazy(connector)
            }
            None => endpoint.connect_lazy(),
        };
        channels.insert(addr.to_string(), channel.clone());
        Ok(channel)
    }
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &Member) -> PeerClient {
        let addr = self
            .dial_overrides
            .get(&target)
            .unwrap_or(if node.peer_addr.is_empty() {
                &node.grpc_addr
            } else {
                &node.peer_addr
            })
            .clone();
        let client = self.channel(target, &addr).map(|channel| {
            RaftServiceClient::new(channel)
                .max_decoding_message_size(MAX_RAFT_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_RAFT_MESSAGE_BYTES)
        });
        PeerClient {
            target,
            client: client.map_err(|e| e.to_string()),
            backoff: self.backoff,
        }
    }
}

pub struct PeerClient {
    target: NodeId,
    /// `Err` when the peer's advertised address does not parse; every call then reports the
    /// peer unreachable rather than panicking.
    client: Result<RaftServiceClient<Channel>, String>,
    backoff: Duration,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct TransportError(String);

type RpcResult<T, E> = Result<T, RPCError<NodeId, Member, RaftError<NodeId, E>>>;

impl PeerClient {
    async fn call<Req, Resp, E>(
        &mut self,
        kind: RpcKind,
        request: &Req,
        option: &RPCOption,
    ) -> RpcResult<Resp, E>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let client = match &mut self.client {
            Ok(client) => client,
            Err(e) => {
                return Err(RPCError::Unreachable(Unreachable::new(&TransportError(
                    e.clone(),
                ))))
            }
        };
        let data = codec::encode("raft request", request)
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let mut req = tonic::Request::new(RaftPayload { data });
        req.set_timeout(option.hard_ttl());
        let reply = match kind {
            RpcKind::Append => client.append_entries(req).await,
            RpcKind::Vote => client.vote(req).await,
            RpcKind::Snapshot => client.install_snapshot(req).await,
        }
        .map_err(|status| {
            RPCError::Unreachable(Unreachable::new(&TransportError(format!(
                "{:?}: {}",
                status.code(),
                status.message()
            ))))
        })?;
        let result: Result<Resp, RaftError<NodeId, E>> =
            codec::decode("raft reply", &reply.into_inner().data)
                .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

#[derive(Clone, Copy)]
enum RpcKind {
    Append,
    Vote,
    Snapshot,
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>, openraft::error::Infallible> {
        self.call(RpcKind::Append, &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        self.call(RpcKind::Snapshot, &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>, openraft::error::Infallible> {
        self.call(RpcKind::Vote, &rpc, &option).await
    }

    fn backoff(&self) -> Backoff {
        Backoff::new(std::iter::repeat(self.backoff))
    }
}
