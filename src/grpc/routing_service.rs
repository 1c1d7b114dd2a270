//! `arbiter.v1.RoutingService`: the routing table for edge routers.
//!
//! Invariant: a router never follows a stale table without knowing it. `Watch` is served by the
//! leader only — it confirms leadership before the first snapshot, and ends the stream with
//! `UNAVAILABLE` (and the leader's address) as soon as this node stops leading — so a router
//! that reconnects on error always ends up at the current leader. Snapshots are the whole table;
//! one is sent on connect and another after every applied entry that changed it (a burst of
//! entries collapses into one snapshot, since only the latest applied index is watched).

use std::pin::Pin;
use std::sync::Arc;

use arbiter_client::proto::routing_service_server::{RoutingService, RoutingServiceServer};
use arbiter_client::proto::{GetTenantRequest, RoutingSnapshot, TenantRoute, WatchRequest};
use futures::Stream;
use openraft::ServerState;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::{convert, status};
use crate::node::NodeContext;

/// Snapshots queued per watcher: a slow router gets the latest table when it catches up, not
/// every intermediate one.
const WATCH_BUFFER: usize = 2;

type SnapshotStream = Pin<Box<dyn Stream<Item = Result<RoutingSnapshot, Status>> + Send + 'static>>;

pub struct RoutingApi {
    node: Arc<NodeContext>,
    /// The node's stop signal: watches end with it, so they do not hold up shutdown.
    stop: watch::Receiver<bool>,
}

/// The service, ready to add to the node's gRPC server; watches end when `stop` turns true.
pub fn server(
    node: &Arc<NodeContext>,
    stop: &watch::Receiver<bool>,
) -> RoutingServiceServer<RoutingApi> {
    RoutingServiceServer::new(RoutingApi {
        node: node.clone(),
        stop: stop.clone(),
    })
}

#[tonic::async_trait]
impl RoutingService for RoutingApi {
    type WatchStream = SnapshotStream;

    async fn watch(
        &self,
        request: Request<WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let filter = request
            .get_ref()
            .active_region
            .as_deref()
            .map(|region| convert::region("active_region", region))
            .transpose()?;
        self.node.leases.confirm_leadership().await?;
        let (tx, rx) = mpsc::channel(WATCH_BUFFER);
        tokio::spawn(follow(self.node.clone(), filter, tx, self.stop.clone()));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn get_tenant(
        &self,
        request: Request<GetTenantRequest>,
    ) -> Result<Response<TenantRoute>, Status> {
        let tenant = convert::tenant(&request.get_ref().tenant_id)?;
        self.node.leases.confirm_leadership().await?;
        let state = self.node.state.read();
        state
            .machine
            .routing
            .get(&tenant)
            .map(|route| Response::new(convert::tenant_route(route)))
            .ok_or_else(|| Status::not_found(format!("no tenant {tenant}")))
    }
}

/// Sends the table to one watcher until it goes away, this node stops leading, or it stops.
async fn follow(
    node: Arc<NodeContext>,
    filter: Option<arbiter_core::RegionId>,
    tx: mpsc::Sender<Result<RoutingSnapshot, Status>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut applied = node.state.applied_index();
    let mut metrics = node.raft.metrics();
    let mut last_sent: Option<RoutingSnapshot> = None;
    let stopped = async move {
        let _ = stop.wait_for(|stopping| *stopping).await;
    };
    tokio::pin!(stopped);
    loop {
        let index = *applied.borrow_and_update();
        let snapshot = {
            let state = node.state.read();
            convert::routing_snapshot(&state.machine, index, filter.as_ref())
        };
        let changed = last_sent.as_ref().is_none_or(|last| {
            last.tenants != snapshot.tenants
                || last.regions != snapshot.regions
                || last.drains != snapshot.drains
        });
        if changed {
            if tx.send(Ok(snapshot.clone())).await.is_err() {
                return; // the router went away
            }
            last_sent = Some(snapshot);
        }
        tokio::select! {
            changed = applied.changed() => if changed.is_err() { return },
            changed = metrics.changed() => {
                if changed.is_err() {
                    return;
                }
                let (state, leader_id, leader_addr) = {
                    let m = metrics.borrow_and_update();
                    let leader_addr = m.current_leader.and_then(|id| {
                        m.membership_config.membership().get_node(&id).map(|n| n.grpc_addr.clone())
                    });
                    (m.state, m.current_leader, leader_addr)
                };
                if state != ServerState::Leader {
                    let _ = tx.send(Err(status::not_leader(leader_id, leader_addr.as_deref()))).await;
                    return;
                }
            }
            _ = &mut stopped => return,
            _ = tx.closed() => return,
        }
    }
}
