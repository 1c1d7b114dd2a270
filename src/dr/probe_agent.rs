//! The probe agent (`arbiter probe`): one vantage point (e.g. London) polling every region's
//! `GET /v1/health/check` and reporting what it saw to the arbiter leader.
//!
//! Invariant: an agent judges reachability only — a region is `ok` when its gateway answers
//! 200 with a serving status within the timeout. Declaring an outage is the controller's job,
//! from several vantage points over a window; one agent's view never moves traffic.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::api_client::{Answer, ApiClient, Retry};
use crate::http_client::{self, HttpClient};

#[derive(Debug, Clone)]
pub struct ProbeAgentConfig {
    pub vantage: String,
    /// (region, health-check URL).
    pub targets: Vec<(String, String)>,
    /// Arbiter HTTP addresses (host:port); the agent follows the leader among them.
    pub arbiters: Vec<String>,
    /// How the arbiters' HTTP ports are reached: TLS, and the token of a `probe` identity
    /// whose vantage is `vantage` (the arbiter refuses reports for any other vantage point).
    pub arbiter_http: HttpClient,
    pub interval: Duration,
    pub timeout: Duration,
}

/// What an agent sends to `POST /v1/probes/report`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({"vantage": "london", "region": "us-east-1", "ok": true,
                          "dependencies": {"primaryDatabase": "CONNECTED", "messageBroker": "OK"},
                          "activeConnections": 14205, "latencyMs": 42}))]
pub struct ProbeReportBody {
    /// The probe's vantage point, e.g. `london`.
    pub vantage: String,
    /// The region probed.
    pub region: String,
    /// Whether the region's health check answered healthy.
    pub ok: bool,
    /// The health check's dependencies as it answered them (at most 32).
    #[serde(default)]
    pub dependencies: BTreeMap<String, String>,
    #[serde(default)]
    pub active_connections: Option<u64>,
    #[serde(default)]
    pub latency_ms: Option<u64>,
}

/// The part of the seed's health-check body the agent reads.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct HealthBody {
    status: String,
    #[serde(default)]
    dependencies: BTreeMap<String, String>,
    #[serde(default)]
    metrics: Option<HealthMetrics>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct HealthMetrics {
    #[serde(default)]
    active_connections: Option<u64>,
}

/// Polls one target once.
pub async fn probe(vantage: &str, region: &str, url: &str, timeout: Duration) -> ProbeReportBody {
    let started = std::time::Instant::now();
    let mut report = ProbeReportBody {
        vantage: vantage.to_string(),
        region: region.to_string(),
        ok: false,
        dependencies: BTreeMap::new(),
        active_connections: None,
        latency_ms: None,
    };
    let Ok(response) = http_client::request("GET", url, None, timeout).await else {
        return report;
    };
    report.latency_ms = Some(started.elapsed().as_millis() as u64);
    if response.status != 200 {
        return report;
    }
    if let Ok(body) = serde_json::from_slice::<HealthBody>(&response.body) {
        report.ok = matches!(body.status.as_str(), "HEALTHY" | "DEGRADED");
        report.dependencies = body.dependencies;
        report.active_connections = body.metrics.and_then(|m| m.active_connections);
    }
    report
}

/// Runs the agent until `shutdown` resolves. Bounded per round: each probe and each report has
/// a timeout, and rounds are `interval` apart. Reports go to the leader through the shared
/// [`ApiClient`], which keeps its leader guess from round to round; a report is idempotent
/// (the controller keeps each vantage point's latest view), so it is retried on any node.
pub async fn run(config: ProbeAgentConfig, shutdown: impl std::future::Future<Output = ()>) {
    tokio::pin!(shutdown);
    let api = ApiClient::new(
        config.arbiters.clone(),
        config.arbiter_http.clone(),
        config.timeout,
    );
    let mut ticker = tokio::time::interval(config.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            _ = ticker.tick() => {}
        }
        let probes = config
            .targets
            .iter()
            .map(|(region, url)| probe(&config.vantage, region, url, config.timeout));
        for report in futures::future::join_all(probes).await {
            let Ok(body) = serde_json::to_value(&report) else {
                continue;
            };
            match api
                .send("POST", "/v1/probes/report", Some(&body), Retry::Always)
                .await
            {
                Answer::Done(_) => {}
                Answer::Refused { status, body, .. } => {
                    tracing::warn!(vantage = %config.vantage, region = %report.region, status, %body, "the arbiter refused the report");
                }
                Answer::Unavailable(why) | Answer::Unknown(why) => {
                    tracing::warn!(vantage = %config.vantage, region = %report.region, %why, "no arbiter took the report");
                }
            }
        }
    }
}
