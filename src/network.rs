//! Raft transport, client side: openraft's `RaftNetwork` over tonic, to each peer's **peer
//! port**. With TLS, the node presents its own certificate and verifies the peer's against the
//! name `arbiter-node-<peer id>` ([`crate::tls::peer_server_name`]), whatever address it dials.
//!
//! Invariant: one tonic `Channel` per peer address, created once and cached. A lazily
//! connected channel reconnects by itself after the peer restarts, so no request ever pays
//! for channel setup. Transport failures are reported as `Unreachable`, which makes openraft
//! back off instead of spinning on a dead peer.
//!
//! Every request carries this node's cluster id ([`CLUSTER_ID_HEADER`]); a peer refuses one
//! from another cluster, and the refusal is logged here, once per change of reason.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
use crate::identity::{Identity, CLUSTER_ID_HEADER};
use crate::raft_types::{Member, NodeId, TypeConfig};
use crate::tls::NodeTls;

/// Largest Raft message accepted or sent: generous for AppendEntries batches and snapshot
/// chunks (openraft chunks snapshots at `snapshot_max_chunk_size`, 3 MiB by default).
pub const MAX_RAFT_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// HTTP/2 flow-control windows of the peer links, both ways. The default 64 KiB lets a sender
/// put only 64 KiB on the wire per round trip: at 150 ms RTT that is ~430 KB/s, so a new
/// leader's first AppendEntries to a follower (hundreds of KiB after a busy moment) outlasted
/// the heartbeat-long RPC timeout, was retried and timed out again, and nothing committed.
/// A window is credit, not a buffer; `MAX_RAFT_MESSAGE_BYTES` still bounds each message.
pub const PEER_STREAM_WINDOW: u32 = 16 << 20;
pub const PEER_CONNECTION_WINDOW: u32 = 32 << 20;

/// Channels to other nodes' peer ports, one per address, each presenting this node's
/// certificate: the Raft transport and the node-to-node cluster calls (bootstrap survey,
/// handing over the cluster id) share it.
#[derive(Clone)]
pub struct PeerDialer {
    channels: Arc<Mutex<HashMap<String, Channel>>>,
    connect_timeout: Duration,
    /// `None`: plain TCP (loopback or `--insecure`).
    tls: Option<Arc<NodeTls>>,
}

impl PeerDialer {
    pub fn new(connect_timeout: Duration, tls: Option<Arc<NodeTls>>) -> Self {
        PeerDialer {
            channels: Arc::default(),
            connect_timeout,
            tls,
        }
    }

    /// A lazily connected channel to node `target`'s peer port at `addr`.
    pub fn channel(&self, target: NodeId, addr: &str) -> Result<Channel, tonic::transport::Error> {
        // Held only for a map lookup or insert; never across an await.
        let mut channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(channel) = channels.get(addr) {
            return Ok(channel.clone());
        }
        let endpoint = Endpoint::from_shared(format!("http://{addr}"))?
            .connect_timeout(self.connect_timeout)
            .tcp_nodelay(true)
            .initial_stream_window_size(PEER_STREAM_WINDOW)
            .initial_connection_window_size(PEER_CONNECTION_WINDOW);
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

#[derive(Clone)]
pub struct Network {
    dialer: PeerDialer,
    /// Per-peer dial addresses that replace the advertised one: lets a fault-injecting proxy
    /// sit on each directed link (this node → that peer) without changing the membership.
    dial_overrides: Arc<HashMap<NodeId, String>>,
    backoff: Duration,
    identity: Identity,
    contacts: PeerContacts,
}

/// When each peer last answered a Raft RPC from this node (for `raft_peer_last_contact`).
#[derive(Clone, Default)]
pub struct PeerContacts(Arc<Mutex<HashMap<NodeId, Instant>>>);

impl PeerContacts {
    fn touch(&self, peer: NodeId) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(peer, Instant::now());
    }

    /// Each peer that ever answered, with the time since its last answer.
    pub fn ages(&self) -> Vec<(NodeId, Duration)> {
        let contacts = self.0.lock().unwrap_or_else(|e| e.into_inner());
        contacts.iter().map(|(p, at)| (*p, at.elapsed())).collect()
    }
}

impl Network {
    pub fn new(
        dialer: PeerDialer,
        backoff: Duration,
        dial_overrides: HashMap<NodeId, String>,
        identity: Identity,
        contacts: PeerContacts,
    ) -> Self {
        Network {
            dialer,
            dial_overrides: Arc::new(dial_overrides),
            backoff,
            identity,
            contacts,
        }
    }
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &Member) -> PeerClient {
        let addr = self
            .dial_overrides
            .get(&target)
            .map_or_else(|| node.peer_dial_addr(), String::as_str)
            .to_string();
        let client = self.dialer.channel(target, &addr).map(|channel| {
            RaftServiceClient::new(channel)
                .max_decoding_message_size(MAX_RAFT_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_RAFT_MESSAGE_BYTES)
        });
        PeerClient {
            target,
            client: client.map_err(|e| e.to_string()),
            backoff: self.backoff,
            identity: self.identity.clone(),
            last_refusal: None,
            contacts: self.contacts.clone(),
        }
    }
}

pub struct PeerClient {
    target: NodeId,
    /// `Err` when the peer's advertised address does not parse; every call then reports the
    /// peer unreachable rather than panicking.
    client: Result<RaftServiceClient<Channel>, String>,
    backoff: Duration,
    identity: Identity,
    /// The last refusal logged for this peer, so a refusing peer is reported when the reason
    /// appears or changes rather than on every heartbeat.
    last_refusal: Option<String>,
    contacts: PeerContacts,
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
        if let Some(cluster_id) = self.identity.cluster_id() {
            // A cluster id is 32 hex digits, always a valid header value.
            if let Ok(value) = cluster_id.as_str().parse() {
                req.metadata_mut().insert(CLUSTER_ID_HEADER, value);
            }
        }
        let reply = match kind {
            RpcKind::Append => client.append_entries(req).await,
            RpcKind::Vote => client.vote(req).await,
            RpcKind::Snapshot => client.install_snapshot(req).await,
        };
        let reply = match reply {
            Ok(reply) => {
                self.last_refusal = None;
                self.contacts.touch(self.target);
                reply
            }
            Err(status) => {
                // The peer's Raft service answers FailedPrecondition only for an identity
                // refusal (see `grpc::raft_service`): say so, once.
                if status.code() == tonic::Code::FailedPrecondition
                    && self.last_refusal.as_deref() != Some(status.message())
                {
                    tracing::warn!(
                        peer = self.target,
                        reason = status.message(),
                        "peer refused our Raft request"
                    );
                    self.last_refusal = Some(status.message().to_string());
                }
                return Err(RPCError::Unreachable(Unreachable::new(&TransportError(
                    format!("{:?}: {}", status.code(), status.message()),
                ))));
            }
        };
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
