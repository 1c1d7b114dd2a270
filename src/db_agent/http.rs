//! The db-agent's own HTTP port (`--listen`):
//!
//! Every route but `/livez` takes `Authorization: Bearer <token>` when the agent has a webhook
//! token (401 without it); with none, `--listen` must be loopback ([`super::run`] checks).
//!
//! - `GET /livez` → 200 while the process runs.
//! - `GET /v1/agent/status` → the lease, the database's write state, the last replication
//!   report, the last obeyed action and recent events ([`super::AgentStatus`]).
//! - `GET /metrics` → Prometheus text ([`super::metrics`]).
//! - `POST /v1/agent/actions` → a controller action: the DR controller's driver JSON
//!   (`{"action", "failoverId", "taskTrackId", "fromRegion", "toRegion", "weights", "reason",
//!   "epoch", "leaderTerm"}`). 200 `{"obeyed": true, "effect", "epoch", "leaderTerm"}`; 409 `{"obeyed": false,
//!   "error", "lastObeyed"}` for an action older than the last obeyed one; 400 for a body that is not such JSON; 503 if the high-water mark cannot be written
//!   (the action is then not carried out).
//!
//! Invariant: nothing but `/livez` answers a caller without the token off loopback; the GETs
//! change nothing.

use std::future::Future;
use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;

use super::{ActionCall, Shared};

pub async fn serve(
    shared: Arc<Shared>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let guarded = Router::new()
        .route("/v1/agent/status", get(status))
        .route("/metrics", get(metrics))
        .route("/v1/agent/actions", post(action))
        .route_layer(middleware::from_fn_with_state(
            shared.clone(),
            require_token,
        ));
    let app = Router::new()
        .route("/livez", get(|| async { "ok\n" }))
        .merge(guarded)
        .with_state(shared);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

async fn status(State(shared): State<Arc<Shared>>) -> Response {
    Json(shared.status()).into_response()
}

async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    (
        [(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
        shared.metrics.encode(),
    )
        .into_response()
}

/// Whether the request carries the webhook token (always true when none is configured).
fn authenticated(shared: &Shared, headers: &HeaderMap) -> bool {
    let Some(expected) = &shared.config.webhook_token else {
        return true;
    };
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    // Constant time: the comparison must not tell an attacker how much of a guess was right.
    presented.as_bytes().ct_eq(expected.as_bytes()).into()
}

/// Refuses a request without the webhook token (when one is configured).
async fn require_token(
    State(shared): State<Arc<Shared>>,
    request: Request,
    next: Next,
) -> Response {
    if authenticated(&shared, request.headers()) {
        return next.run(request).await;
    }
    if request.uri().path() == "/v1/agent/actions" {
        shared.metrics.action("unauthorized");
    }
    tracing::warn!(path = %request.uri().path(), "request refused: missing or wrong bearer token");
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
        Json(json!({"error": "a valid bearer token is required"})),
    )
        .into_response()
}

async fn action(
    State(shared): State<Arc<Shared>>,
    body: Result<Json<ActionCall>, JsonRejection>,
) -> Response {
    let call = match body {
        Ok(Json(call)) => call,
        Err(rejection) => {
            shared.metrics.action("invalid");
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({"error": format!(
                    "expected the controller's driver JSON with `action`, `epoch` and \
                     `leaderTerm`: {rejection}"
                )})),
            )
                .into_response();
        }
    };
    match shared.obey(&call).await {
        Ok(Ok(effect)) => Json(json!({
            "obeyed": true,
            "effect": effect,
            "epoch": call.epoch,
            "leaderTerm": call.leader_term,
        }))
        .into_response(),
        Ok(Err(stale)) => (
            StatusCode::CONFLICT,
            Json(json!({
                "obeyed": false,
                "error": stale.to_string(),
                "lastObeyed": stale.obeyed,
            })),
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "cannot record a controller action; not carried out");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"error": format!("cannot record the action durably: {e}")})),
            )
                .into_response()
        }
    }
}
