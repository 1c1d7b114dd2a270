//! `GET /v1/health/check`: this node's region in the seed's shape.
//!
//! ```json
//! {"region": "us-east-1", "status": "HEALTHY", "epochSeconds": 1770289920,
//!  "dependencies": {"primaryDatabase": "CONNECTED", "messageBroker": "OK",
//!                   "in-memoryCache": "OK", "raftQuorum": "OK"},
//!  "metrics": {"activeConnections": 3, "p99LatencyMs": 4, "cpuUtilization": 1.5}}
//! ```
//!
//! - `status`: the replicated health of this node's region (`HEALTHY`, `DEGRADED`, `DOWN`,
//!   `RECOVERING`); `HEALTHY` while the region is not tracked yet. Local state, no read barrier:
//!   a health check must answer even when this node is cut off from the others.
//! - `dependencies`: the seed's three keys as the region's probes last reported them to this
//!   node (probe agents report to the leader, so followers answer `UNKNOWN`), plus
//!   `raftQuorum`: `OK` while this node follows a known leader or, as leader, has heard from a
//!   quorum within the write timeout; `LOST` otherwise. The arbiter's own dependency is the
//!   quorum, not a database, so it is reported under its own key rather than mapped onto one
//!   of the seed's.
//! - `metrics`: this process — HTTP requests in flight (this one included), the p99 latency of
//!   the last 1,024 requests, CPU as a percentage of the machine since the previous check.
//!
//! Always 200: the body says how healthy the region is; the status code only says the node
//! answered.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use arbiter_core::region_health::HealthState;
use arbiter_core::RegionId;
use axum::extract::State;
use axum::Json;
use openraft::ServerState;
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use crate::node::NodeContext;

/// The seed's dependency keys.
pub const PRIMARY_DATABASE: &str = "primaryDatabase";
pub const MESSAGE_BROKER: &str = "messageBroker";
pub const IN_MEMORY_CACHE: &str = "in-memoryCache";
const UNKNOWN: &str = "UNKNOWN";
/// Dependencies remembered per region; further names in a report are ignored.
const MAX_DEPENDENCIES: usize = 32;

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({
    "region": "us-east-1", "status": "HEALTHY", "epochSeconds": 1770289920,
    "dependencies": {"primaryDatabase": "CONNECTED", "messageBroker": "OK",
                     "in-memoryCache": "OK", "raftQuorum": "OK"},
    "metrics": {"activeConnections": 14205, "p99LatencyMs": 42, "cpuUtilization": 58.4}
}))]
pub struct HealthCheck {
    region: String,
    status: HealthState,
    epoch_seconds: u64,
    dependencies: Dependencies,
    metrics: Metrics,
}

/// The region's dependencies as its probes last reported them (`UNKNOWN` until then), and
/// this node's quorum.
#[derive(Serialize, ToSchema)]
struct Dependencies {
    #[serde(rename = "primaryDatabase")]
    primary_database: String,
    #[serde(rename = "messageBroker")]
    message_broker: String,
    #[serde(rename = "in-memoryCache")]
    in_memory_cache: String,
    /// `OK` or `LOST`.
    #[serde(rename = "raftQuorum")]
    #[schema(value_type = String)]
    raft_quorum: &'static str,
}

/// This process's load.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct Metrics {
    /// HTTP requests in flight, this one included.
    active_connections: u64,
    /// p99 latency of the last 1,024 requests.
    p99_latency_ms: u64,
    /// CPU as a percentage of the machine since the previous check.
    cpu_utilization: f64,
}

/// The dependency statuses probe agents last reported per region, as strings, exactly as the
/// regions' gateways answered them. In memory only: probes re-report every few seconds.
#[derive(Default)]
pub struct ReportedDependencies {
    /// std Mutex: held for a map update or lookup, never across an await.
    by_region: Mutex<BTreeMap<RegionId, BTreeMap<String, String>>>,
}

impl ReportedDependencies {
    /// Remembers `dependencies` as `region`'s latest (from whichever vantage reported last).
    pub fn record(&self, region: &RegionId, dependencies: &BTreeMap<String, String>) {
        let mut by_region = self.by_region.lock().unwrap_or_else(|e| e.into_inner());
        let latest = by_region.entry(region.clone()).or_default();
        for (name, status) in dependencies {
            if latest.contains_key(name) || latest.len() < MAX_DEPENDENCIES {
                latest.insert(name.clone(), status.clone());
            }
        }
    }

    fn status(&self, region: &RegionId, name: &str) -> String {
        let by_region = self.by_region.lock().unwrap_or_else(|e| e.into_inner());
        by_region
            .get(region)
            .and_then(|deps| deps.get(name))
            .cloned()
            .unwrap_or_else(|| UNKNOWN.to_string())
    }
}

/// The seed's health check
///
/// This node's region: its replicated health (`HEALTHY` while not tracked yet), the
/// dependencies its probes reported plus `raftQuorum`, and this process's load. Local state,
/// no read barrier, so it answers even when the node is cut off. Always 200: the body says how
/// healthy the region is.
#[utoipa::path(
    get,
    path = "/v1/health/check",
    operation_id = "getHealthCheck",
    tag = "health",
    responses((status = 200, description = "The region's health", body = HealthCheck)),
)]
pub async fn check(State(app): State<AppState>) -> Json<HealthCheck> {
    let node = &app.node;
    let region = RegionId::new(&node.region);
    let status = node
        .state
        .read()
        .machine
        .regions
        .get(&region)
        .map_or(HealthState::Healthy, |health| health.state);
    let load = app.telemetry.snapshot();
    let deps = &app.dependencies;
    Json(HealthCheck {
        region: node.region.clone(),
        status,
        epoch_seconds: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        dependencies: Dependencies {
            primary_database: deps.status(&region, PRIMARY_DATABASE),
            message_broker: deps.status(&region, MESSAGE_BROKER),
            in_memory_cache: deps.status(&region, IN_MEMORY_CACHE),
            raft_quorum: if quorum_ok(node) { "OK" } else { "LOST" },
        },
        metrics: Metrics {
            active_connections: load.active_connections,
            p99_latency_ms: load.p99_latency_ms,
            cpu_utilization: load.cpu_utilization,
        },
    })
}

fn quorum_ok(node: &NodeContext) -> bool {
    let metrics = node.raft.metrics().borrow().clone();
    match metrics.state {
        ServerState::Leader => metrics
            .millis_since_quorum_ack
            .is_some_and(|ms| u128::from(ms) <= node.proposer.timeout().as_millis()),
        ServerState::Follower | ServerState::Learner => metrics.current_leader.is_some(),
        ServerState::Candidate | ServerState::Shutdown => false,
    }
}
