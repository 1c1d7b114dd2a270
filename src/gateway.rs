//! A stand-in regional API gateway (`arbiter gateway`): serves the seed's
//! `GET /v1/health/check` for one region and can be told to fail, so probes, outage consensus
//! and failover can be exercised end to end on one machine.
//!
//! - `POST /v1/gateway/state` `{"status": "HEALTHY"|"DOWN", "dependencies": {...},
//!   "appDelayMs": N}`: a DOWN gateway's health check answers 503; dependencies are reported
//!   as given; every application request waits `appDelayMs` before its answer (a region that
//!   hangs).
//! - Any other path is the region's application: it answers 200 with what it received
//!   (`region`, `method`, `path`, `headers`, `bodyBytes`) after the request's own
//!   `?delayMs=N` (at most 60 s), counts the request, and notes when the last one arrived
//!   (`GET /v1/gateway/stats`). `activeConnections` in the health check is the application
//!   requests in progress.

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
#[serde(rename_all = "camelCase")]
pub struct GatewayState {
    pub status: String,
    #[serde(default)]
    pub dependencies: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub app_delay_ms: Option<u64>,
}

/// Longest delay an application request may ask for.
const MAX_DELAY_MS: u64 = 60_000;

struct Shared {
    region: String,
    status: String,
    dependencies: BTreeMap<String, String>,
    app_delay_ms: u64,
    /// Application requests received, in progress, and when the last one arrived (wall ms).
    received: u64,
    in_progress: u64,
    last_arrival_ms: u64,
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
        app_delay_ms: 0,
        received: 0,
        in_progress: 0,
        last_arrival_ms: 0,
    }));
    let app = Router::new()
        .route("/v1/health/check", get(health))
        .route("/v1/gateway/state", post(set_state))
        .route("/v1/gateway/stats", get(stats))
        .fallback(application)
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
        "metrics": {"activeConnections": s.in_progress, "p99LatencyMs": 42, "cpuUtilization": 58.4},
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
    if let Some(delay) = state.app_delay_ms {
        s.app_delay_ms = delay.min(MAX_DELAY_MS);
    }
    (
        StatusCode::OK,
        Json(json!({"region": s.region, "status": s.status})),
    )
}

async fn stats(State(shared): State<Arc<Mutex<Shared>>>) -> impl IntoResponse {
    let s = shared.lock().unwrap_or_else(|e| e.into_inner());
    Json(json!({
        "region": s.region,
        "received": s.received,
        "inProgress": s.in_progress,
        "lastArrivalMs": s.last_arrival_ms,
    }))
}

/// Counts an application request in progress until dropped (also when the client goes away).
struct InProgress(Arc<Mutex<Shared>>);

impl Drop for InProgress {
    fn drop(&mut self) {
        let mut s = self.0.lock().unwrap_or_else(|e| e.into_inner());
        s.in_progress = s.in_progress.saturating_sub(1);
    }
}

/// The region's application: echoes what arrived, after the configured and requested delays.
async fn application(
    State(shared): State<Arc<Mutex<Shared>>>,
    method: axum::http::Method,
    uri: axum::http::Uri,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> impl IntoResponse {
    let requested = uri
        .query()
        .into_iter()
        .flat_map(|q| q.split('&'))
        .find_map(|pair| pair.strip_prefix("delayMs="))
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    let (region, delay) = {
        let mut s = shared.lock().unwrap_or_else(|e| e.into_inner());
        s.received += 1;
        s.in_progress += 1;
        s.last_arrival_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        (
            s.region.clone(),
            (s.app_delay_ms + requested).min(MAX_DELAY_MS),
        )
    };
    let _in_progress = InProgress(shared.clone());
    if delay > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
    }
    let headers: BTreeMap<String, String> = headers
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_string(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect();
    Json(json!({
        "region": region,
        "method": method.as_str(),
        "path": uri.path_and_query().map_or("/", |p| p.as_str()),
        "headers": headers,
        "bodyBytes": body.len(),
    }))
}
