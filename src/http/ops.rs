//! What load balancers and Prometheus poll:
//!
//! - `GET /livez` (public): 200 `{"live": true}` while the node serves and its Raft core runs;
//!   503 once the core has failed (the node is about to stop).
//! - `GET /readyz` (public): 200 `{"ready": true}` when this node knows a leader, its storage
//!   accepts writes and its state machine is within [`crate::node::READY_MAX_APPLY_LAG`] entries of its log;
//!   otherwise 503 `{"ready": false, "reasons": [...]}` — take it out of rotation.
//! - `GET /metrics` (any authenticated role): Prometheus text exposition ([`crate::metrics`]).

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::AppState;

/// `/livez`: 200 `{"live": true}`; 503 `{"live": false}`.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Liveness {
    live: bool,
}

/// `/readyz`: 200 `{"ready": true}`; 503 `{"ready": false, "reasons": [...]}`.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Readiness {
    ready: bool,
    /// What keeps the node out of rotation; absent when ready.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(example = json!(["no known leader"]))]
    reasons: Vec<String>,
}

/// Liveness
///
/// Whether the node serves and its Raft core runs. Poll it to restart a wedged process.
#[utoipa::path(
    get,
    path = "/livez",
    operation_id = "livez",
    tag = "ops",
    responses(
        (status = 200, description = "Serving, the Raft core runs", body = Liveness),
        (status = 503, description = "The Raft core has failed; the node is about to stop", body = Liveness),
    ),
)]
pub async fn livez(State(app): State<AppState>) -> Response {
    let running = app.node.raft.metrics().borrow().running_state.is_ok();
    let status = if running {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(Liveness { live: running })).into_response()
}

/// Readiness
///
/// Whether to keep this node in a load balancer's rotation: it knows a leader, its storage
/// accepts writes and its state machine is close enough to its log.
#[utoipa::path(
    get,
    path = "/readyz",
    operation_id = "readyz",
    tag = "ops",
    responses(
        (status = 200, description = "Ready", body = Readiness),
        (status = 503, description = "Not ready; `reasons` says why. Take it out of rotation", body = Readiness),
    ),
)]
pub async fn readyz(State(app): State<AppState>) -> Response {
    let reasons = app.node.readiness_problems();
    let status = if reasons.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = Readiness {
        ready: reasons.is_empty(),
        reasons,
    };
    (status, Json(body)).into_response()
}

/// Prometheus metrics
///
/// The text exposition format: Raft, writes and disk, leases, DR, replication, placement,
/// security and build series, every name prefixed `arbiter_`.
#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "getMetrics",
    tag = "ops",
    responses(
        (status = 200, description = "Prometheus text exposition", content_type = "text/plain; version=0.0.4", body = String),
    ),
)]
pub async fn metrics(State(app): State<AppState>) -> Response {
    app.node.metrics.refresh(&app.node);
    (
        [(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
        app.node.metrics.encode(),
    )
        .into_response()
}
