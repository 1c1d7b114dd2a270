//! Keep-alives for many leases over one `LeaseService/KeepAliveStream`, the way etcd's
//! clients renew: one HTTP/2 stream per client to the node believed to lead, each renewal a
//! message tagged with a request id, answered by id in any order. A renewal costs the server
//! no new HTTP/2 stream, headers or task, and every renewal on the stream shares the leader's
//! quorum rounds with the rest.
//!
//! The stream is an optimisation, never a different answer: whatever goes wrong with it (a
//! node that does not lead ends the stream with its `NotLeader` status, a node that dies, a
//! reply that does not come within the attempt timeout) drops it and that renewal falls back
//! to the unary call, which follows leader hints, rotates and retries under the client's call
//! deadline. The next renewal opens a stream to wherever the client then believes the leader
//! is.
//!
//! Invariant: a renewal's `sent_at` is taken before its message is queued for the stream, so
//! the validity a holder counts from it starts no later than the arbiter's renewal did.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tonic::Status;

use crate::client::ArbiterClient;
use crate::error::ClientError;
use crate::lease::{split_reply, Refusal, Renewal};
use crate::proto;
use crate::proto::lease_service_client::LeaseServiceClient;
use crate::types::{FencingToken, HolderId, ResourceId};

/// Renewals queued for the stream before a sender waits (the server answers up to 1,024 of
/// one stream at once).
const QUEUE: usize = 1024;

type Waiter = oneshot::Sender<Result<proto::LeaseReply, Status>>;

/// One open stream to one node.
struct Link {
    /// The node's index in the client's endpoints, and its address.
    index: usize,
    endpoint: String,
    requests: mpsc::Sender<proto::KeepAliveRequest>,
    /// Renewals sent and not yet answered, by request id. A std lock: held for an insert or
    /// a remove, never across an await.
    pending: Mutex<HashMap<u64, Waiter>>,
    /// Set once the stream ended or failed; a broken link is replaced, never reused.
    broken: AtomicBool,
}

impl Link {
    fn take(&self, id: u64) -> Option<Waiter> {
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id)
    }

    /// Marks the link broken and fails every renewal still waiting on it.
    fn fail_all(&self, status: &Status) {
        self.broken.store(true, Ordering::Release);
        let waiting: Vec<Waiter> = self
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
            .map(|(_, w)| w)
            .collect();
        for waiter in waiting {
            let _ = waiter.send(Err(status.clone()));
        }
    }
}

/// The client's shared keep-alive stream; see the module documentation.
pub(crate) struct KeepAliveStream {
    link: Mutex<Option<Arc<Link>>>,
    next_id: AtomicU64,
}

impl KeepAliveStream {
    pub(crate) fn new() -> Self {
        KeepAliveStream {
            link: Mutex::new(None),
            next_id: AtomicU64::new(1),
        }
    }

    /// Renews over the stream; falls back to `client`'s unary keep-alive when the stream
    /// cannot answer.
    pub(crate) async fn renew(
        &self,
        client: &ArbiterClient,
        resource: &ResourceId,
        holder: &HolderId,
        token: FencingToken,
    ) -> Result<Result<Renewal, Refusal>, ClientError> {
        if let Some(renewed) = self.try_stream(client, resource, holder, token).await {
            return renewed;
        }
        client.keep_alive(resource, holder, token).await
    }

    /// `None` when the stream could not give an answer (the caller falls back).
    async fn try_stream(
        &self,
        client: &ArbiterClient,
        resource: &ResourceId,
        holder: &HolderId,
        token: FencingToken,
    ) -> Option<Result<Result<Renewal, Refusal>, ClientError>> {
        let link = self.link(client);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        link.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, tx);
        if link.broken.load(Ordering::Acquire) {
            // It broke between the lookup and the insert: `fail_all` may have run already and
            // would never answer this one.
            link.take(id);
            self.drop_link(&link);
            return None;
        }
        let sent_at = Instant::now();
        let request = proto::KeepAliveRequest {
            resource: resource.to_string(),
            holder: holder.to_string(),
            token: token.0,
            request_id: id,
        };
        let timeout = client.options().attempt_timeout;
        let answer = tokio::time::timeout(timeout, async {
            link.requests.send(request).await.ok()?;
            rx.await.ok()
        })
        .await;
        match answer {
            Ok(Some(Ok(reply))) => {
                client.endpoints.confirm(link.index);
                Some(split_reply(&link.endpoint, reply).map(|answer| {
                    answer.map(|reply| Renewal {
                        ttl: Duration::from_millis(reply.ttl_ms),
                        sent_at,
                    })
                }))
            }
            Ok(Some(Err(status))) => {
                // The node ended the stream with this status (it does not lead, it is shutting
                // down, ...). Follow a leader hint now; the unary fallback does the rest.
                let error = ClientError::from_status(&link.endpoint, &status);
                if let Some(addr) = error.leader_hint() {
                    client.endpoints.follow(addr, link.index);
                }
                self.drop_link(&link);
                None
            }
            Ok(None) | Err(_) => {
                // The stream closed, or no answer within the attempt timeout: this link is
                // suspect. A reply arriving later finds no waiter and is dropped.
                link.take(id);
                self.drop_link(&link);
                None
            }
        }
    }

    /// The open link, or a new one to the node the client believes leads.
    fn link(&self, client: &ArbiterClient) -> Arc<Link> {
        let mut slot = self.link.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(link) = slot.as_ref() {
            if !link.broken.load(Ordering::Acquire) {
                return link.clone();
            }
        }
        let (index, node) = client.endpoints.current();
        let (requests, outgoing) = mpsc::channel(QUEUE);
        let link = Arc::new(Link {
            index,
            endpoint: node.addr.clone(),
            requests,
            pending: Mutex::new(HashMap::new()),
            broken: AtomicBool::new(false),
        });
        *slot = Some(link.clone());
        let reader = Arc::downgrade(&link);
        tokio::spawn(async move {
            let mut lease = LeaseServiceClient::new(node.channel);
            let outgoing = futures::stream::unfold(outgoing, |mut rx| async move {
                rx.recv().await.map(|request| (request, rx))
            });
            let ended = match lease.keep_alive_stream(outgoing).await {
                Ok(response) => {
                    let mut replies = response.into_inner();
                    loop {
                        match replies.message().await {
                            Ok(Some(reply)) => {
                                let Some(link) = reader.upgrade() else { return };
                                if let Some(waiter) = link.take(reply.request_id) {
                                    let _ = waiter.send(Ok(reply));
                                }
                            }
                            Ok(None) => break Status::unavailable("keep-alive stream ended"),
                            Err(status) => break status,
                        }
                    }
                }
                Err(status) => status,
            };
            if let Some(link) = reader.upgrade() {
                link.fail_all(&ended);
            }
        });
        link
    }

    fn drop_link(&self, link: &Arc<Link>) {
        link.broken.store(true, Ordering::Release);
        let mut slot = self.link.lock().unwrap_or_else(|e| e.into_inner());
        if slot
            .as_ref()
            .is_some_and(|current| Arc::ptr_eq(current, link))
        {
            *slot = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::ClientOptions;
    use crate::mock_arbiter::{Answer, MockArbiter};

    fn fast() -> ClientOptions {
        ClientOptions {
            attempt_timeout: Duration::from_millis(300),
            call_deadline: Duration::from_secs(2),
            initial_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(20),
            ..ClientOptions::default()
        }
    }

    fn lease(i: usize) -> (ResourceId, HolderId) {
        (
            ResourceId::new(format!("db/{i}")),
            HolderId::new(format!("proxy-{i}")),
        )
    }

    #[tokio::test]
    async fn concurrent_renewals_share_one_stream_and_each_gets_its_own_answer() {
        let node = MockArbiter::default();
        node.on_keep_alive(Answer::Ok {
            token: 7,
            ttl_ms: 4_000,
        });
        let client = ArbiterClient::connect(vec![node.serve().await], fast())
            .await
            .unwrap();
        let before = Instant::now();
        let renewals = futures::future::join_all((0..20).map(|i| {
            let client = client.clone();
            async move {
                let (resource, holder) = lease(i);
                client
                    .keep_alive_streamed(&resource, &holder, FencingToken(7))
                    .await
            }
        }))
        .await;
        for renewal in renewals {
            let renewal = renewal.expect("no error").expect("renewed");
            assert_eq!(renewal.ttl, Duration::from_millis(4_000));
            assert!(renewal.sent_at >= before);
        }
        assert_eq!(node.streams(), 1, "one stream for every renewal");
        assert_eq!(node.streamed(), 20);
        assert_eq!(node.calls(), 0, "no unary keep-alive");
        // Each renewal's send time precedes its arrival: validity counts from no later.
        let arrivals = node.arrivals();
        let last = client
            .keep_alive_streamed(&lease(0).0, &lease(0).1, FencingToken(7))
            .await
            .unwrap()
            .unwrap();
        assert!(last.sent_at <= *node.arrivals().last().unwrap());
        assert_eq!(node.arrivals().len(), arrivals.len() + 1);
        assert_eq!(node.streams(), 1, "the stream stays open between renewals");
    }

    #[tokio::test]
    async fn a_refusal_on_the_stream_is_a_refusal_not_a_fallback() {
        let node = MockArbiter::default();
        node.on_keep_alive(Answer::Stale { current: 9 });
        let client = ArbiterClient::connect(vec![node.serve().await], fast())
            .await
            .unwrap();
        let (resource, holder) = lease(1);
        let refusal = client
            .keep_alive_streamed(&resource, &holder, FencingToken(7))
            .await
            .expect("an answer")
            .expect_err("refused");
        assert_eq!(
            refusal,
            Refusal::StaleToken {
                presented: FencingToken(7),
                current: FencingToken(9)
            }
        );
        assert_eq!((node.streamed(), node.calls()), (1, 0));
    }

    #[tokio::test]
    async fn a_follower_ends_the_stream_and_the_renewal_follows_its_hint_to_the_leader() {
        let leader = MockArbiter::default();
        leader.on_keep_alive(Answer::Ok {
            token: 7,
            ttl_ms: 4_000,
        });
        let leader_addr = leader.serve().await;
        let follower = MockArbiter::default();
        follower.on_keep_alive(Answer::NotLeader {
            leader: leader_addr.clone(),
        });
        let client = ArbiterClient::connect(vec![follower.serve().await], fast())
            .await
            .unwrap();
        let (resource, holder) = lease(2);
        let renewal = client
            .keep_alive_streamed(&resource, &holder, FencingToken(7))
            .await
            .expect("no error")
            .expect("renewed at the leader");
        assert_eq!(renewal.ttl, Duration::from_millis(4_000));
        assert_eq!(follower.streamed(), 1, "tried the stream first");
        // The hint moved the client before the fallback: the unary call went to the leader.
        assert_eq!(follower.calls(), 0);
        assert_eq!(leader.calls(), 1, "the fallback renewed at the leader");
        assert_eq!(client.leader_guess(), leader_addr);
        // The next renewal streams to the leader.
        client
            .keep_alive_streamed(&resource, &holder, FencingToken(7))
            .await
            .unwrap()
            .unwrap();
        assert_eq!((leader.streams(), leader.streamed()), (1, 1));
    }

    #[tokio::test]
    async fn a_silent_stream_is_given_up_after_the_attempt_timeout() {
        let node = MockArbiter::default();
        node.on_keep_alive(Answer::Silent);
        let options = fast();
        let client = ArbiterClient::connect(vec![node.serve().await], options.clone())
            .await
            .unwrap();
        let (resource, holder) = lease(3);
        let started = Instant::now();
        let outcome = client
            .keep_alive_streamed(&resource, &holder, FencingToken(7))
            .await;
        assert!(outcome.is_err(), "{outcome:?}");
        let took = started.elapsed();
        assert!(
            took >= options.attempt_timeout && took < options.call_deadline * 2,
            "{took:?}"
        );
        assert_eq!(node.streamed(), 1, "the stream was tried");
        assert!(
            node.calls() >= 1,
            "then the unary call, under the call deadline"
        );
    }
}
