//! [`ArbiterClient`]: the leader-following gRPC client for `LeaseService` and the cluster status.
//!
//! Invariant: a call is retried only when that cannot do harm — `UNAVAILABLE` (the node did
//! not act: not the leader, down, or shutting down) always, and an unknown outcome
//! (`DEADLINE_EXCEEDED`, no answer, connection lost mid-call) only for idempotent calls. Every
//! call ends by its deadline. Reads are served by the leader after a quorum round, so they are
//! linearizable.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tonic::{Response, Status};

use crate::backoff::Backoff;
use crate::credentials::{AuthChannel, BearerToken, ChannelFactory, ClientTls};
use crate::endpoints::Endpoints;
use crate::error::ClientError;
use crate::keep_alive_stream::KeepAliveStream;
use crate::lease::{
    displaced, split_reply, Grant, LeaseInfo, LeaseSpec, Refusal, Renewal, Revocation, TokenCheck,
};
use crate::proto::cluster_service_client::ClusterServiceClient;
use crate::proto::lease_service_client::LeaseServiceClient;
use crate::proto::{self, NodeStatus, StatusRequest};
use crate::routing_watch::RoutingWatch;
use crate::types::{FencingToken, HolderId, ResourceId};

/// Timeouts, retry pacing and credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientOptions {
    /// TLS towards the nodes (`None`: plain TCP, for clusters run without TLS on loopback).
    pub tls: Option<ClientTls>,
    /// Sent as `authorization: Bearer …` on every call.
    pub token: Option<BearerToken>,
    /// TCP connect timeout per node.
    pub connect_timeout: Duration,
    /// How long one attempt may take before the client gives up on that node. Keep it above the
    /// server's write timeout (2 s on `lan`, 8 s on `wan`), so that a slow commit is reported
    /// by the server rather than cut short here.
    pub attempt_timeout: Duration,
    /// The whole call, retries included.
    pub call_deadline: Duration,
    /// First pause between retries; doubles up to `max_backoff`, with jitter.
    pub initial_backoff: Duration,
    /// Longest pause between retries.
    pub max_backoff: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            tls: None,
            token: None,
            connect_timeout: Duration::from_secs(1),
            attempt_timeout: Duration::from_secs(3),
            call_deadline: Duration::from_secs(10),
            initial_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_secs(1),
        }
    }
}

impl ClientOptions {
    pub(crate) fn channel_factory(&self) -> ChannelFactory {
        ChannelFactory::new(self.connect_timeout, self.tls.clone(), self.token.clone())
    }

    /// Checks that every duration is positive and the backoff range is ordered.
    pub fn validate(&self) -> Result<(), ClientError> {
        let positive = [
            ("connect_timeout", self.connect_timeout),
            ("attempt_timeout", self.attempt_timeout),
            ("call_deadline", self.call_deadline),
            ("initial_backoff", self.initial_backoff),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, d)| d.is_zero()) {
            return Err(ClientError::InvalidRequest {
                reason: format!("client option `{name}` must be positive"),
            });
        }
        if self.initial_backoff > self.max_backoff {
            return Err(ClientError::InvalidRequest {
                reason: format!(
                    "client option `initial_backoff` ({:?}) exceeds `max_backoff` ({:?})",
                    self.initial_backoff, self.max_backoff
                ),
            });
        }
        Ok(())
    }
}

/// Whether repeating a call whose outcome is unknown is harmless.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Idempotency {
    /// Reads; keep-alives; acquire (the same holder gets its own lease back); release (it names
    /// the token, so a repeat can only be refused).
    Idempotent,
    /// Revoke names no token: a repeat could take away a lease granted in between.
    NotIdempotent,
}

/// A successful reply and when its request went out.
struct Sent<T> {
    reply: T,
    endpoint: String,
    /// When the attempt that succeeded was sent.
    sent_at: Instant,
    /// When the call's first attempt was sent (equal to `sent_at` without retries).
    first_sent_at: Instant,
}

/// A cluster node's status, or why it could not be read.
#[derive(Debug, Clone)]
pub struct EndpointStatus {
    pub endpoint: String,
    pub status: Result<NodeStatus, ClientError>,
}

/// A client of an arbiter cluster. Cheap to clone; clones share channels and the leader guess.
#[derive(Clone)]
pub struct ArbiterClient {
    pub(crate) endpoints: Arc<Endpoints>,
    options: ClientOptions,
    /// The keep-alive stream every clone shares (opened on first use).
    stream: Arc<KeepAliveStream>,
}

impl std::fmt::Debug for ArbiterClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArbiterClient")
            .field("endpoints", &self.endpoints.addrs())
            .field("options", &self.options)
            .finish()
    }
}

impl ArbiterClient {
    /// A client for the nodes at `endpoints` (`host:port` or `http://host:port`). Connects
    /// lazily: this does no I/O, and succeeds while every node is down.
    pub async fn connect(
        endpoints: Vec<String>,
        options: ClientOptions,
    ) -> Result<ArbiterClient, ClientError> {
        options.validate()?;
        Ok(ArbiterClient {
            endpoints: Arc::new(Endpoints::new(&endpoints, options.channel_factory())?),
            options,
            stream: Arc::new(KeepAliveStream::new()),
        })
    }

    /// The same client (channels, leader guess) with other timeouts.
    pub fn with_options(&self, options: ClientOptions) -> Result<ArbiterClient, ClientError> {
        options.validate()?;
        Ok(ArbiterClient {
            endpoints: self.endpoints.clone(),
            options,
            stream: self.stream.clone(),
        })
    }

    /// The timeouts and pacing this client uses.
    pub fn options(&self) -> &ClientOptions {
        &self.options
    }

    /// Every node address known: those given, plus any a leader hint named.
    pub fn endpoints(&self) -> Vec<String> {
        self.endpoints.addrs()
    }

    /// The node the next call goes to: the last known leader.
    pub fn leader_guess(&self) -> String {
        self.endpoints.current().1.addr
    }

    /// Follows the routing table (`RoutingService/Watch`) at whichever node leads, tenants
    /// routed to `active_region` only when given. See [`RoutingWatch`] for what it promises.
    pub fn watch_routing(&self, active_region: Option<String>) -> RoutingWatch {
        RoutingWatch::new(self.endpoints.clone(), self.options.clone(), active_region)
    }

    /// Acquires `spec`. The [`Grant`]'s `sent_at` is the first attempt's send time, so a grant
    /// made by an attempt that timed out and was answered by a retry still starts no later
    /// than the arbiter's deadline does.
    pub async fn acquire(&self, spec: &LeaseSpec) -> Result<Result<Grant, Refusal>, ClientError> {
        let request = spec.to_request()?;
        let sent = self
            .call("acquire", Idempotency::Idempotent, |mut lease| {
                let request = request.clone();
                async move { lease.acquire(request).await }
            })
            .await?;
        Ok(split_reply(&sent.endpoint, sent.reply)?.map(|reply| Grant {
            resource: spec.resource.clone(),
            holder: spec.holder.clone(),
            token: FencingToken(reply.token),
            ttl: Duration::from_millis(reply.ttl_ms),
            sent_at: sent.first_sent_at,
            displaced: displaced(&reply),
        }))
    }

    /// Renews a lease (unary). Refused with `StaleToken` once the lease was revoked, fenced or
    /// expired.
    pub async fn keep_alive(
        &self,
        resource: &ResourceId,
        holder: &HolderId,
        token: FencingToken,
    ) -> Result<Result<Renewal, Refusal>, ClientError> {
        let request = proto::KeepAliveRequest {
            resource: resource.to_string(),
            holder: holder.to_string(),
            token: token.0,
            request_id: 0,
        };
        let sent = self
            .call("keep_alive", Idempotency::Idempotent, |mut lease| {
                let request = request.clone();
                async move { lease.keep_alive(request).await }
            })
            .await?;
        Ok(
            split_reply(&sent.endpoint, sent.reply)?.map(|reply| Renewal {
                ttl: Duration::from_millis(reply.ttl_ms),
                sent_at: sent.sent_at,
            }),
        )
    }

    /// Renews a lease like [`Self::keep_alive`], as a message on the stream this client (and
    /// every clone) keeps open to the leader, as etcd's clients renew: no HTTP/2 stream per
    /// renewal, and renewals of many leases share the leader's quorum rounds. When the stream
    /// cannot answer (the node does not lead, it went away, no reply within the attempt
    /// timeout) this renewal falls back to the unary call and the next one opens a new
    /// stream. The cheapest way to renew many leases from one process.
    pub async fn keep_alive_streamed(
        &self,
        resource: &ResourceId,
        holder: &HolderId,
        token: FencingToken,
    ) -> Result<Result<Renewal, Refusal>, ClientError> {
        self.stream.renew(self, resource, holder, token).await
    }

    /// Gives a lease back; the resource is free at once. Stop writing *before* calling this.
    pub async fn release(
        &self,
        resource: &ResourceId,
        holder: &HolderId,
        token: FencingToken,
    ) -> Result<Result<(), Refusal>, ClientError> {
        let request = proto::ReleaseRequest {
            resource: resource.to_string(),
            holder: holder.to_string(),
            token: token.0,
        };
        let sent = self
            .call("release", Idempotency::Idempotent, |mut lease| {
                let request = request.clone();
                async move { lease.release(request).await }
            })
            .await?;
        Ok(split_reply(&sent.endpoint, sent.reply)?.map(|_| ()))
    }

    /// Revokes the lease on `resource`: the epoch rises, the holder's keep-alives are refused,
    /// and the resource stays blocked until the holder's deadline has passed. Not retried when
    /// its outcome is unknown; check with [`Self::get`] before repeating it.
    pub async fn revoke(
        &self,
        resource: &ResourceId,
        reason: &str,
        by: &str,
    ) -> Result<Result<Revocation, Refusal>, ClientError> {
        let request = proto::RevokeRequest {
            resource: resource.to_string(),
            reason: reason.to_string(),
            by: by.to_string(),
        };
        let sent = self
            .call("revoke", Idempotency::NotIdempotent, |mut lease| {
                let request = request.clone();
                async move { lease.revoke(request).await }
            })
            .await?;
        Ok(
            split_reply(&sent.endpoint, sent.reply)?.map(|reply| Revocation {
                epoch: FencingToken(reply.token),
                displaced_holder: HolderId::new(reply.displaced_holder),
                displaced_token: FencingToken(reply.displaced_token),
            }),
        )
    }

    /// The resource's lease as the leader sees it (linearizable).
    pub async fn get(&self, resource: &ResourceId) -> Result<LeaseInfo, ClientError> {
        let request = proto::GetLeaseRequest {
            resource: resource.to_string(),
        };
        let sent = self
            .call("get", Idempotency::Idempotent, |mut lease| {
                let request = request.clone();
                async move { lease.get(request).await }
            })
            .await?;
        LeaseInfo::from_proto(&sent.endpoint, sent.reply)
    }

    /// The resource's current epoch: the highest token minted for it (0 if never leased).
    /// Push it to a [`crate::FencedResource`] after a revoke or fence.
    pub async fn current_epoch(&self, resource: &ResourceId) -> Result<FencingToken, ClientError> {
        let request = proto::GetLeaseRequest {
            resource: resource.to_string(),
        };
        let sent = self
            .call("current_epoch", Idempotency::Idempotent, |mut lease| {
                let request = request.clone();
                async move { lease.current_epoch(request).await }
            })
            .await?;
        Ok(FencingToken(sent.reply.epoch))
    }

    /// Whether `token` is the token of the lease currently held on `resource`.
    pub async fn validate_token(
        &self,
        resource: &ResourceId,
        token: FencingToken,
    ) -> Result<TokenCheck, ClientError> {
        let request = proto::ValidateTokenRequest {
            resource: resource.to_string(),
            token: token.0,
        };
        let sent = self
            .call("validate_token", Idempotency::Idempotent, |mut lease| {
                let request = request.clone();
                async move { lease.validate_token(request).await }
            })
            .await?;
        Ok(TokenCheck {
            valid: sent.reply.valid,
            current_epoch: FencingToken(sent.reply.current_epoch),
        })
    }

    /// Every known node's own view (role, term, leader, log positions), asked concurrently,
    /// one attempt each.
    pub async fn cluster_status(&self) -> Vec<EndpointStatus> {
        let timeout = self.options.attempt_timeout;
        let asks = self.endpoints.nodes().into_iter().map(|node| async move {
            let mut client = ClusterServiceClient::new(node.channel);
            let status =
                match tokio::time::timeout(timeout, client.get_status(StatusRequest {})).await {
                    Ok(Ok(reply)) => Ok(reply.into_inner()),
                    Ok(Err(status)) => Err(ClientError::from_status(&node.addr, &status)),
                    Err(_) => Err(no_reply(&node.addr, timeout)),
                };
            EndpointStatus {
                endpoint: node.addr,
                status,
            }
        });
        futures::future::join_all(asks).await
    }

    /// Runs one call: to the leader guess, following hints, rotating on failure, backing off,
    /// until success, a non-retryable error, or the call deadline.
    async fn call<T, F, Fut>(
        &self,
        op: &'static str,
        idempotency: Idempotency,
        mut attempt: F,
    ) -> Result<Sent<T>, ClientError>
    where
        F: FnMut(LeaseServiceClient<AuthChannel>) -> Fut,
        Fut: Future<Output = Result<Response<T>, Status>>,
    {
        let started = Instant::now();
        let deadline = started + self.options.call_deadline;
        let mut backoff = Backoff::new(self.options.initial_backoff, self.options.max_backoff);
        let mut first_sent_at = None;
        let mut attempts = 0u32;
        // Set after following a hint, so two nodes naming each other cannot loop without pause.
        let mut just_redirected = false;
        loop {
            let (index, node) = self.endpoints.current();
            let timeout = self
                .options
                .attempt_timeout
                .min(deadline.saturating_duration_since(Instant::now()));
            attempts += 1;
            let sent_at = Instant::now();
            let first = *first_sent_at.get_or_insert(sent_at);
            let outcome =
                tokio::time::timeout(timeout, attempt(LeaseServiceClient::new(node.channel))).await;
            let error = match outcome {
                Ok(Ok(reply)) => {
                    self.endpoints.confirm(index);
                    return Ok(Sent {
                        reply: reply.into_inner(),
                        endpoint: node.addr,
                        sent_at,
                        first_sent_at: first,
                    });
                }
                Ok(Err(status)) => ClientError::from_status(&node.addr, &status),
                Err(_) => no_reply(&node.addr, timeout),
            };
            let retry = error.is_retryable()
                && (idempotency == Idempotency::Idempotent || !error.outcome_unknown());
            if !retry {
                return Err(error);
            }
            tracing::debug!(op, attempt = attempts, %error, "arbiter call failed; retrying");
            let redirected = match error.leader_hint() {
                Some(addr) => self.endpoints.follow(addr, index) != index,
                None => {
                    self.endpoints.rotate(index);
                    false
                }
            };
            // A fresh hint is tried at once; anything else waits its turn.
            let pause = if redirected && !just_redirected {
                Duration::ZERO
            } else {
                backoff.next_pause()
            };
            just_redirected = redirected;
            if Instant::now() + pause >= deadline {
                return Err(ClientError::GaveUp {
                    op,
                    attempts,
                    elapsed: started.elapsed(),
                    last: Box::new(error),
                });
            }
            tokio::time::sleep(pause).await;
        }
    }
}

fn no_reply(endpoint: &str, timeout: Duration) -> ClientError {
    ClientError::OutcomeUnknown {
        endpoint: endpoint.to_string(),
        message: format!("no reply within {timeout:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mock_arbiter::{Answer, MockArbiter};

    fn fast() -> ClientOptions {
        ClientOptions {
            attempt_timeout: Duration::from_millis(200),
            call_deadline: Duration::from_secs(1),
            initial_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(20),
            ..ClientOptions::default()
        }
    }

    fn spec() -> LeaseSpec {
        LeaseSpec::new("db/orders", "proxy-a", Duration::from_secs(1))
    }

    async fn granting() -> (MockArbiter, String) {
        let node = MockArbiter::default();
        node.on_acquire(Answer::Ok {
            token: 4096,
            ttl_ms: 1000,
        });
        let addr = node.serve().await;
        (node, addr)
    }

    #[tokio::test]
    async fn follows_a_leader_hint_to_a_node_it_was_not_given() {
        let (leader, leader_addr) = granting().await;
        let follower = MockArbiter::default();
        follower.on_acquire(Answer::NotLeader {
            leader: leader_addr.clone(),
        });
        let client = ArbiterClient::connect(vec![follower.serve().await], fast())
            .await
            .unwrap();
        let grant = client.acquire(&spec()).await.unwrap().unwrap();
        assert_eq!(grant.token, FencingToken(4096));
        assert_eq!(client.leader_guess(), leader_addr);
        client.acquire(&spec()).await.unwrap().unwrap();
        assert_eq!(
            (follower.calls(), leader.calls()),
            (1, 2),
            "the second call went straight to the leader"
        );
    }

    #[tokio::test]
    async fn an_unknown_outcome_is_retried_only_for_idempotent_calls() {
        let node = MockArbiter::default();
        node.on_revoke(Answer::WriteTimeout);
        node.on_keep_alive(Answer::WriteTimeout);
        let client = ArbiterClient::connect(vec![node.serve().await], fast())
            .await
            .unwrap();
        let resource = ResourceId::new("db/orders");
        let error = client.revoke(&resource, "drill", "test").await.unwrap_err();
        assert!(error.outcome_unknown() && error.is_retryable(), "{error}");
        assert_eq!(node.calls(), 1, "a revoke is not repeated blindly");

        let error = client
            .keep_alive(&resource, &HolderId::new("h"), FencingToken(1))
            .await
            .unwrap_err();
        assert!(matches!(error, ClientError::GaveUp { .. }), "{error}");
        assert!(
            node.calls() > 3,
            "keep-alives are retried until the deadline"
        );
    }

    #[tokio::test]
    async fn a_dead_node_and_a_frozen_node_are_skipped() {
        // A port nobody listens on: bound (so nothing else takes it) but never listening, so
        // connects are refused. Held until the test ends.
        let dead_socket = tokio::net::TcpSocket::new_v4().unwrap();
        dead_socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let dead = dead_socket.local_addr().unwrap().to_string();
        let frozen = MockArbiter::default();
        frozen.on_acquire(Answer::Silent);
        let (_, live) = granting().await;
        let client = ArbiterClient::connect(vec![dead, frozen.serve().await, live.clone()], fast())
            .await
            .unwrap();
        let started = Instant::now();
        client.acquire(&spec()).await.unwrap().unwrap();
        assert!(
            started.elapsed() >= fast().attempt_timeout,
            "the frozen node had its chance"
        );
        assert_eq!(client.leader_guess(), live);
    }

    #[tokio::test]
    async fn every_call_ends_by_its_deadline() {
        let frozen = MockArbiter::default();
        frozen.on_acquire(Answer::Silent);
        let client = ArbiterClient::connect(vec![frozen.serve().await], fast())
            .await
            .unwrap();
        let started = Instant::now();
        let error = client.acquire(&spec()).await.unwrap_err();
        let took = started.elapsed();
        assert!(matches!(error, ClientError::GaveUp { .. }), "{error}");
        assert!(error.is_retryable());
        assert!(
            took <= fast().call_deadline + Duration::from_millis(100),
            "{took:?}"
        );
    }

    #[tokio::test]
    async fn bad_options_are_refused() {
        let options = ClientOptions {
            initial_backoff: Duration::from_secs(2),
            ..ClientOptions::default()
        };
        let result = ArbiterClient::connect(vec!["a:1".into()], options).await;
        assert!(matches!(result, Err(ClientError::InvalidRequest { .. })));
    }
}
