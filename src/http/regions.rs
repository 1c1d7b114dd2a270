//! `GET /v1/regions`: every region the arbiter knows, with its replicated health, hysteresis
//! timestamps and share of traffic.
//!
//! ```json
//! {"cooldownMs": 600000,
//!  "regions": [{"region": "us-east-1", "state": "DOWN", "downSince": "2026-06-07T12:12:00Z",
//!               "healthySince": null, "cooldownUntil": null, "trafficWeightPercentage": 0.0}]}
//! ```
//!
//! `state` is `null` for a region that only has a traffic weight; `trafficWeightPercentage` is
//! `null` before any weights are set.

use arbiter_core::region_health::{HealthState, RegionHealth};
use arbiter_core::state_machine::StateMachine;
use arbiter_core::WallMillis;
use axum::extract::State;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use super::error::{ApiError, ErrorBody, NotLeaderBody};
use super::{openapi, percent, read, rfc3339, validate, AppState};

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RegionsView {
    /// How long a recovered region must stay healthy before it is trusted again.
    cooldown_ms: u64,
    regions: Vec<RegionView>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct RegionView {
    region: String,
    /// `null` for a region that only has a traffic weight.
    state: Option<HealthState>,
    /// RFC 3339, UTC.
    down_since: Option<String>,
    healthy_since: Option<String>,
    cooldown_until: Option<String>,
    /// The region's share of traffic in percent; `null` before any weights are set.
    traffic_weight_percentage: Option<f64>,
}

/// Regions
///
/// Every region the arbiter knows, with its replicated health, hysteresis timestamps and
/// share of traffic.
#[utoipa::path(
    get,
    path = "/v1/regions",
    operation_id = "listRegions",
    tag = "dr",
    responses(
        (status = 200, description = "The regions", body = RegionsView),
        (status = 503, description = openapi::NOT_LEADER, body = NotLeaderBody),
        (status = 504, description = openapi::TIMEOUT, body = ErrorBody),
        (status = 500, description = openapi::INTERNAL, body = ErrorBody),
    ),
)]
pub async fn list(State(app): State<AppState>) -> Result<Json<RegionsView>, ApiError> {
    read(&app.node, |machine| Ok(Json(view(machine)))).await
}

/// Every known region of `machine`, as [`list`] answers it.
pub(super) fn view(machine: &StateMachine) -> RegionsView {
    let weights = machine.traffic.weights();
    let regions = validate::known_regions(machine)
        .into_iter()
        .map(|region| {
            let health = machine.regions.get(&region);
            let at = |field: fn(&RegionHealth) -> Option<WallMillis>| {
                health.and_then(field).map(rfc3339::format)
            };
            RegionView {
                state: health.map(|h| h.state),
                down_since: at(|h| h.down_since),
                healthy_since: at(|h| h.healthy_since),
                cooldown_until: at(|h| h.cooldown_until),
                traffic_weight_percentage: weights.and_then(|w| w.weight_bp(&region)).map(percent),
                region: region.to_string(),
            }
        })
        .collect();
    RegionsView {
        cooldown_ms: machine.regions.cooldown_ms(),
        regions,
    }
}
