//! [`RoutingWatch`]: the routing table as an edge router follows it, across leader changes.
//!
//! Invariant: the snapshots a watch yields have strictly increasing `applied_index`. Each
//! snapshot is the whole table (tenants and region weights), so a watch that reconnects —
//! after the leader changed, a node died, or the stream broke — and yields the first snapshot
//! of the new stream has missed nothing: whatever changed meanwhile is in that snapshot. A
//! snapshot no newer than the last one yielded (a new leader that has not yet applied as far
//! as the old one had) is dropped rather than let the table go back in time.

use std::sync::Arc;

use tonic::Streaming;

use crate::backoff::Backoff;
use crate::client::ClientOptions;
use crate::endpoints::Endpoints;
use crate::error::ClientError;
use crate::proto::routing_service_client::RoutingServiceClient;
use crate::proto::{RoutingSnapshot, WatchRequest};

/// A routing-table watch that follows the leader. Made by
/// [`ArbiterClient::watch_routing`](crate::ArbiterClient::watch_routing).
pub struct RoutingWatch {
    endpoints: Arc<Endpoints>,
    options: ClientOptions,
    active_region: Option<String>,
    stream: Option<(usize, Streaming<RoutingSnapshot>)>,
    last_index: Option<u64>,
    backoff: Backoff,
    /// Whether the last attempt failed: the next one pauses first.
    failed: bool,
}

impl std::fmt::Debug for RoutingWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoutingWatch")
            .field("active_region", &self.active_region)
            .field("connected", &self.stream.is_some())
            .field("last_index", &self.last_index)
            .finish()
    }
}

impl RoutingWatch {
    pub(crate) fn new(
        endpoints: Arc<Endpoints>,
        options: ClientOptions,
        active_region: Option<String>,
    ) -> Self {
        let backoff = Backoff::new(options.initial_backoff, options.max_backoff);
        RoutingWatch {
            endpoints,
            options,
            active_region,
            stream: None,
            last_index: None,
            backoff,
            failed: false,
        }
    }

    /// The `applied_index` of the last snapshot yielded.
    pub fn last_index(&self) -> Option<u64> {
        self.last_index
    }

    /// Whether a stream to a leader is open now.
    pub fn is_connected(&self) -> bool {
        self.stream.is_some()
    }

    /// The next snapshot newer than the last one yielded. An error means this attempt failed
    /// (no node reachable, the stream broke, the node stopped leading); the watch has already
    /// moved to the next node or the leader it was told of, and the next call reconnects
    /// (after a backoff pause when nothing new was learnt). Errors never end the watch.
    pub async fn next(&mut self) -> Result<RoutingSnapshot, ClientError> {
        loop {
            if self.stream.is_none() {
                if self.failed {
                    tokio::time::sleep(self.backoff.next_pause()).await;
                }
                self.failed = true;
                let (index, node) = self.endpoints.current();
                let mut client = RoutingServiceClient::new(node.channel);
                let request = WatchRequest {
                    active_region: self.active_region.clone(),
                };
                let opened =
                    tokio::time::timeout(self.options.attempt_timeout, client.watch(request)).await;
                match opened {
                    Ok(Ok(response)) => self.stream = Some((index, response.into_inner())),
                    Ok(Err(status)) => {
                        return Err(
                            self.moved_on(index, ClientError::from_status(&node.addr, &status))
                        )
                    }
                    Err(_) => {
                        return Err(self.moved_on(
                            index,
                            ClientError::Unavailable {
                                endpoint: node.addr,
                                message: format!(
                                    "no answer to Watch within {:?}",
                                    self.options.attempt_timeout
                                ),
                            },
                        ))
                    }
                }
            }
            let Some((index, stream)) = self.stream.as_mut() else {
                continue;
            };
            let index = *index;
            match stream.message().await {
                Ok(Some(snapshot)) => {
                    self.endpoints.confirm(index);
                    self.failed = false;
                    self.backoff =
                        Backoff::new(self.options.initial_backoff, self.options.max_backoff);
                    if self
                        .last_index
                        .is_some_and(|last| snapshot.applied_index <= last)
                    {
                        continue; // not newer than what the caller already has
                    }
                    self.last_index = Some(snapshot.applied_index);
                    return Ok(snapshot);
                }
                Ok(None) => {
                    let addr = self.endpoints.nodes()[index].addr.clone();
                    return Err(self.moved_on(
                        index,
                        ClientError::Unavailable {
                            endpoint: addr,
                            message: "the routing watch ended".into(),
                        },
                    ));
                }
                Err(status) => {
                    let addr = self.endpoints.nodes()[index].addr.clone();
                    return Err(self.moved_on(index, ClientError::from_status(&addr, &status)));
                }
            }
        }
    }

    /// Drops the stream and moves to the node `error` names as leader, or the next node.
    fn moved_on(&mut self, index: usize, error: ClientError) -> ClientError {
        self.stream = None;
        match error.leader_hint() {
            Some(addr) if self.endpoints.follow(addr, index) != index => {
                // A fresh hint is tried at once.
                self.failed = false;
            }
            _ => self.endpoints.rotate(index),
        }
        error
    }
}
