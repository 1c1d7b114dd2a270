//! `GET /v1/dashboard`: everything the `/ui` page shows, in one answer, from this node.
//!
//! ```json
//! {"generatedAt": "2026-06-07T12:12:00Z", "isLeader": true, "leaderHttpAddr": "10.0.1.5:8443",
//!  "status": {...},                          // as GET /v1/cluster/status (snake_case)
//!  "appliedIndex": 412,                      // the log index the sections below were read at
//!  "regions": {"cooldownMs", "regions": [...]},                  // as GET /v1/regions
//!  "verdicts": [{"region", "verdict": "healthy"|"suspect"|"outage"|"dependency_outage",
//!                "failing": [...], "silent": [...], "dependency", "serviceClass"}],
//!  "events": [...], "eventsTotal": 3,       // as GET /v1/failover-events, newest first
//!  "leases": [...], "leasesTotal": 1204,     // as GET /v1/leases/{resource}, live ones only
//!  "links": [...]}                           // as GET /v1/replication/links
//! ```
//!
//! Placement (preferred region, whether the leader is in it) is in `status`. `verdicts` is
//! `null` on a follower: probe reports live only in the leader's memory. `events` holds the
//! newest [`MAX_EVENTS`] failovers and `leases` the first [`MAX_LEASES`] live leases by
//! resource name; the `…Total` fields count them all.
//!
//! Unlike the other reads this one does not wait for a quorum round and a follower answers
//! too: the page shows which node it talks to and whether that node leads, so an operator can
//! still see a node's view while it has no quorum. The replicated sections are read under one
//! guard of the state machine, so they agree with each other (all at `appliedIndex`); `status`
//! and `verdicts` are read just before, and `mayHoldForMs` just after (0 on a follower, which
//! keeps no lease timers).

use std::collections::BTreeSet;

use arbiter_client::proto::NodeStatus;
use arbiter_core::probe_consensus::{DependencyName, ServiceClass, VantageId, Verdict};
use arbiter_core::RegionId;
use axum::extract::State;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use super::events::EventView;
use super::leases::LeaseView;
use super::regions::{self, RegionsView};
use super::replication::LinkView;
use super::{rfc3339, AppState};
use crate::proposer::wall_now;

/// Failover events in one answer, newest first: the page's timeline, not an archive.
pub const MAX_EVENTS: usize = 20;
/// Live leases in one answer; a cluster may hold 100k, which no page should render each second.
pub const MAX_LEASES: usize = 200;

/// One snapshot of this node's view, for the dashboard.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Dashboard {
    /// RFC 3339, UTC.
    generated_at: String,
    is_leader: bool,
    leader_http_addr: Option<String>,
    status: NodeStatus,
    applied_index: Option<u64>,
    regions: RegionsView,
    /// The leader's outage-consensus verdicts; `null` on a follower.
    verdicts: Option<Vec<VerdictView>>,
    events: Vec<EventView>,
    events_total: usize,
    leases: Vec<LeaseView>,
    leases_total: usize,
    links: Vec<LinkView>,
}

/// The leader's verdict on one region.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VerdictView {
    #[schema(value_type = String)]
    region: RegionId,
    /// `healthy`, `suspect`, `outage` or `dependency_outage`.
    #[schema(value_type = String)]
    verdict: &'static str,
    /// Vantage points that see the region (or its dependency) failing.
    #[schema(value_type = Vec<String>)]
    failing: BTreeSet<VantageId>,
    /// Vantage points not heard from within the window.
    #[schema(value_type = Vec<String>)]
    silent: BTreeSet<VantageId>,
    #[schema(value_type = Option<String>)]
    dependency: Option<DependencyName>,
    #[schema(value_type = Option<String>)]
    service_class: Option<ServiceClass>,
}

impl From<Verdict> for VerdictView {
    fn from(verdict: Verdict) -> Self {
        let mut view = VerdictView {
            region: verdict.region().clone(),
            verdict: verdict.name(),
            failing: BTreeSet::new(),
            silent: BTreeSet::new(),
            dependency: None,
            service_class: None,
        };
        match verdict {
            Verdict::Healthy { .. } => {}
            Verdict::Suspect {
                failing, silent, ..
            } => {
                view.failing = failing;
                view.silent = silent;
            }
            Verdict::Outage { vantages, .. } => view.failing = vantages,
            Verdict::DependencyOutage {
                dependency,
                service_class,
                vantages,
                ..
            } => {
                view.failing = vantages;
                view.dependency = Some(dependency);
                view.service_class = Some(service_class);
            }
        }
        view
    }
}

/// Everything the dashboard shows
///
/// This node's own view in one consistent snapshot: status, members, regions, the leader's
/// probe verdicts, the newest failovers, live leases and replication links. Unlike the other
/// reads it does not wait for a quorum round, so a follower answers too (`isLeader: false`,
/// with the leader's address).
#[utoipa::path(
    get,
    path = "/v1/dashboard",
    operation_id = "getDashboard",
    tag = "ops",
    responses((status = 200, description = "This node's view", body = Dashboard)),
)]
pub async fn snapshot(State(app): State<AppState>) -> Json<Dashboard> {
    let node = &app.node;
    // Each of these takes its own locks (the state's read guard among them), so neither is
    // called while the guard below is held.
    let status = node.status().await;
    let is_leader = status.role == "Leader";
    let verdicts: Option<Vec<VerdictView>> = is_leader.then(|| {
        let verdicts = node.dr.verdicts();
        verdicts.into_iter().map(VerdictView::from).collect()
    });
    let leader_http_addr = status
        .voters
        .iter()
        .chain(&status.learners)
        .find(|member| Some(member.node_id) == status.leader_id)
        .map(|member| member.http_addr.clone())
        .filter(|addr| !addr.is_empty());

    let mut dashboard = {
        // A clone shares the lease table's nodes: counting a large table holds up no apply.
        let state = node.state.read().clone();
        let machine = &state.machine;
        Dashboard {
            generated_at: rfc3339::format(wall_now()),
            is_leader,
            leader_http_addr,
            status,
            applied_index: state.last_applied.map(|log_id| log_id.index),
            regions: regions::view(machine),
            verdicts,
            events: machine
                .failovers
                .newest_first()
                .take(MAX_EVENTS)
                .map(EventView::from)
                .collect(),
            events_total: machine.failovers.len(),
            leases: machine
                .leases
                .live_leases()
                .take(MAX_LEASES)
                .map(|(resource, row)| LeaseView::new(resource.clone(), Some(row)))
                .collect(),
            leases_total: machine.leases.live_leases().count(),
            links: machine.replication.links().map(LinkView::from).collect(),
        }
    };
    for lease in &mut dashboard.leases {
        lease.fill_may_hold(&node.leases);
    }
    Json(dashboard)
}
