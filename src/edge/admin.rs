//! The edge's own endpoints, on a separate loopback listener: `GET /healthz` (always 200
//! while the process serves; says whether the routing is current), `GET /readyz` (503 until the
//! first routing table arrives) and `GET /metrics` (Prometheus text).

use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use super::Edge;

pub fn router(edge: Arc<Edge>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(edge)
}

/// `FRESH` (the watch is open), `STALE` (routing by the last known table) or `NONE`.
fn routing_state(edge: &Edge) -> &'static str {
    match (edge.table().is_some(), edge.routing_stale()) {
        (false, _) => "NONE",
        (true, true) => "STALE",
        (true, false) => "FRESH",
    }
}

async fn healthz(State(edge): State<Arc<Edge>>) -> impl IntoResponse {
    let watch = edge.watch_state();
    let table = edge.table();
    let regions: Vec<serde_json::Value> = edge
        .upstreams
        .values()
        .map(|u| {
            let rtt = u.rtt_us.load(Ordering::Relaxed);
            json!({
                "region": u.region,
                "gateway": u.base.to_string(),
                "weightBp": table.as_ref().and_then(|t| t.weight_of(&u.region)),
                "reachable": u.reachable.load(Ordering::Relaxed),
                "rttMs": (rtt > 0).then(|| rtt as f64 / 1000.0),
                "inFlight": u.in_flight.load(Ordering::Relaxed),
                "sentTotal": u.sent_total.load(Ordering::Relaxed),
                "lastSentMs": u.last_sent_ms.load(Ordering::Relaxed),
            })
        })
        .collect();
    Json(json!({
        "edge": edge.name(),
        "routing": {
            "state": routing_state(&edge),
            "appliedIndex": table.as_ref().map(|t| t.applied_index),
            "disconnectedForMs": watch.disconnected_since.map(|t| t.elapsed().as_millis() as u64),
            "lastError": watch.last_error,
            "lastSnapshotAgeMs": watch.last_snapshot_at.map(|t| t.elapsed().as_millis() as u64),
        },
        "regions": regions,
        "uptimeSeconds": edge.started.elapsed().as_secs(),
    }))
}

async fn readyz(State(edge): State<Arc<Edge>>) -> impl IntoResponse {
    if edge.table().is_some() {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "no routing table yet\n")
    }
}

async fn metrics(State(edge): State<Arc<Edge>>) -> impl IntoResponse {
    let mut out = String::new();
    let mut family = |name: &str, kind: &str, help: &str, samples: Vec<(String, String)>| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "{name}{labels} {value}");
        }
    };
    let c = &edge.counters;
    let plain = |v: u64| vec![(String::new(), v.to_string())];
    family(
        "arbiter_edge_requests_total",
        "counter",
        "Requests received.",
        plain(c.requests.load(Ordering::Relaxed)),
    );
    family(
        "arbiter_edge_rejected_total",
        "counter",
        "Requests refused by the edge itself (bad headers or tenant, body too large).",
        plain(c.rejected.load(Ordering::Relaxed)),
    );
    family(
        "arbiter_edge_failed_total",
        "counter",
        "Requests no region served (the edge answered 502, 503 or 504).",
        plain(c.failed.load(Ordering::Relaxed)),
    );
    family(
        "arbiter_edge_retried_total",
        "counter",
        "Requests retried once in another region.",
        plain(c.retried.load(Ordering::Relaxed)),
    );
    family(
        "arbiter_edge_drain_cut_total",
        "counter",
        "Requests cut at a drain deadline.",
        plain(c.cut.load(Ordering::Relaxed)),
    );
    let table = edge.table();
    family(
        "arbiter_edge_routing_applied_index",
        "gauge",
        "The applied index of the routing table routed by (0: none yet).",
        plain(table.as_ref().map_or(0, |t| t.applied_index)),
    );
    family(
        "arbiter_edge_routing_stale",
        "gauge",
        "1 while the routing watch is down and the edge routes by its last known table.",
        plain(u64::from(edge.routing_stale())),
    );
    let per_region = |f: &dyn Fn(&super::Upstream) -> String| {
        edge.upstreams
            .values()
            .map(|u| (format!("{{region=\"{}\"}}", u.region), f(u)))
            .collect::<Vec<_>>()
    };
    family(
        "arbiter_edge_upstream_in_flight",
        "gauge",
        "Requests sent to the region's gateway and not yet finished.",
        per_region(&|u| u.in_flight.load(Ordering::Relaxed).to_string()),
    );
    family(
        "arbiter_edge_upstream_sent_total",
        "counter",
        "Requests sent to the region's gateway.",
        per_region(&|u| u.sent_total.load(Ordering::Relaxed).to_string()),
    );
    family(
        "arbiter_edge_upstream_failed_total",
        "counter",
        "Attempts at the region's gateway that got no response.",
        per_region(&|u| u.failed_total.load(Ordering::Relaxed).to_string()),
    );
    family(
        "arbiter_edge_upstream_reachable",
        "gauge",
        "1 when this edge's probe reaches the region's gateway.",
        per_region(&|u| u64::from(u.reachable.load(Ordering::Relaxed)).to_string()),
    );
    family(
        "arbiter_edge_upstream_rtt_seconds",
        "gauge",
        "Smoothed probe round trip to the region's gateway (0: not measured yet).",
        per_region(&|u| format!("{}", u.rtt_us.load(Ordering::Relaxed) as f64 / 1e6)),
    );
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out)
}
