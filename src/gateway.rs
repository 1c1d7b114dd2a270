//! A stand-in regional API gateway (`arbiter gateway`): serves the seed's
//! `GET /v1/health/check` for one region and can be told to fail, so probes, outage consensus
//! and failover can be exercised end to end on one machine.
//!
//! - `POST /v1/gateway/state` `{"status": "HEALTHY"|"DOWN", "dependencies": {...}}`: a DOWN
//!   gateway answers 503; dependencies are reported as given.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use tokio::net::TcpListener;

#[derive(Debug, Clone, Deserialize)]
pub struct GatewayState {
    pub status: String,
    #[serde(default)]
    pub dependencies: Option<BTreeMap<String, String>>,
}

struct Shared {
    region: String,
    status: String,
    dependencies: BTreeMap<String, String>,
}

fn seed_dependencies() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("primaryDatabase".into(), "CONNECTED".into()),
        ("messageBroker".into(), "OK".into()),
        ("in-memoryCache".into(), "OK".into()),
    ])
}

/// Serves a gateway for `region` on `listener` until `shutdown` resolves.
pub async fn serve(
    region: String,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let shared = Arc::new(Mutex::new(Shared {
        region,
        status: "HEALTHY".into(),
        dependencies: seed_dependencies(),
    }));
    let app = Router::new()
        .route("/v1/health/check", get(health))
        .route("/v1/gateway/state", post(set_state))
        .with_state(shared);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

async fn health(State(shared): State<Arc<Mutex<Shared>>>) -> impl IntoResponse {
    let s = shared.lock().unwrap_or_else(|e| e.into_inner());
    let epoch_seconds = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let code = if s.status == "DOWN" {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    let body = json!({
        "region": s.region,
        "status": s.status,
        "epochSeconds": epoch_seconds,
        "dependencies": s.dependencies,
        "metrics": {"activeConnections": 14205, "p99LatencyMs": 42, "cpuUtilization": 58.4},
    });
    (code, Json(body))
}

async fn set_state(
    State(shared): State<Arc<Mutex<Shared>>>,
    Json(state): Json<GatewayState>,
) -> impl IntoResponse {
    if !matches!(state.status.as_str(), "HEALTHY" | "DEGRADED" | "DOWN") {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "status must be HEALTHY, DEGRADED or DOWN"})),
        );
    }
    let mut s = shared.lock().unwrap_or_else(|e| e.into_inner());
    s.status = state.status;
    if let Some(deps) = state.dependencies {
        s.dependencies = deps;
    }
    (
        StatusCode::OK,
        Json(json!({"region": s.region, "status": s.status})),
    )
}
