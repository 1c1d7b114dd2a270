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
use serde_json::json;

use super::AppState;

pub async fn livez(State(app): State<AppState>) -> Response {
    let running = app.node.raft.metrics().borrow().running_state.is_ok();
    let status = if running {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(json!({ "live": running }))).into_response()
}

pub async fn readyz(State(app): State<AppState>) -> Response {
    let reasons = app.node.readiness_problems();
    if reasons.is_empty() {
        (StatusCode::OK, Json(json!({ "ready": true }))).into_response()
    } else {
        let body = json!({ "ready": false, "reasons": reasons });
        (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
    }
}

pub async fn metrics(State(app): State<AppState>) -> Response {
    app.node.metrics.refresh(&app.node);
    (
        [(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
        app.node.metrics.encode(),
    )
        .into_response()
}
