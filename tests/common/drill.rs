//! A DR drill on one machine: stand-in regional gateways, three probe agents (London, Tokyo,
//! Sydney) and a three-node arbiter cluster, all on loopback, torn down when dropped.

use std::time::{Duration, Instant};

use arbiter::dr::probe_agent::{self, ProbeAgentConfig};
use serde_json::{json, Value};
use tokio::sync::oneshot;

use super::{init_tracing, TestCluster};

pub const REGIONS3: [&str; 3] = ["us-east-1", "us-west-2", "eu-central-1"];

/// A stand-in regional gateway served on the test's runtime.
struct Gateway {
    region: String,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    /// Its health-check URL.
    url: String,
}

pub struct Drill {
    pub cluster: TestCluster,
    gateways: Vec<Gateway>,
    agents: Vec<oneshot::Sender<()>>,
    /// Where the drill's exec drivers write (under `files`).
    pub driver_log: std::path::PathBuf,
    files: std::path::PathBuf,
}

impl Drill {
    /// Starts the drill. `dr_config` builds the nodes' TOML (a `[dr]` section) from the drill's
    /// driver-log path; `None` runs the default DR settings. Agents probe every
    /// `probe_interval`.
    pub async fn start(
        dr_config: Option<&dyn Fn(&std::path::Path) -> String>,
        probe_interval: Duration,
    ) -> Drill {
        Drill::start_with(dr_config, probe_interval, &[]).await
    }

    /// [`Drill::start`] with further `arbiter serve` flags for every node.
    pub async fn start_with(
        dr_config: Option<&dyn Fn(&std::path::Path) -> String>,
        probe_interval: Duration,
        extra_args: &[&str],
    ) -> Drill {
        init_tracing();
        let files = tempfile::tempdir().expect("temp dir").keep();
        let driver_log = files.join("drivers.log");
        let mut args = Vec::new();
        if let Some(config) = dr_config {
            let path = files.join("dr.toml");
            std::fs::write(&path, config(&driver_log)).expect("write config");
            args = vec!["--config".to_string(), path.display().to_string()];
        }
        let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
        args.extend_from_slice(extra_args);
        let cluster = TestCluster::start(3, &args).await;

        let mut gateways = Vec::new();
        for region in REGIONS3 {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let url = format!(
                "http://{}/v1/health/check",
                listener.local_addr().expect("addr")
            );
            let (stop, stopped) = oneshot::channel::<()>();
            let task = tokio::spawn(arbiter::gateway::serve(region.into(), listener, async {
                let _ = stopped.await;
            }));
            gateways.push(Gateway {
                region: region.to_string(),
                stop: Some(stop),
                task: Some(task),
                url,
            });
        }
        let arbiters: Vec<String> = cluster
            .running()
            .map(|n| n.ready.http_addr.clone())
            .collect();
        let mut agents = Vec::new();
        for vantage in ["london", "tokyo", "sydney"] {
            let (stop, stopped) = oneshot::channel::<()>();
            let config = ProbeAgentConfig {
                vantage: vantage.into(),
                targets: gateways
                    .iter()
                    .map(|g| (g.region.clone(), g.url.clone()))
                    .collect(),
                arbiters: arbiters.clone(),
                arbiter_http: super::http(),
                interval: probe_interval,
                timeout: probe_interval.mul_f64(0.8),
            };
            tokio::spawn(probe_agent::run(config, async {
                let _ = stopped.await;
            }));
            agents.push(stop);
        }
        Drill {
            cluster,
            gateways,
            agents,
            driver_log,
            files,
        }
    }

    pub fn http_endpoints(&self) -> Vec<String> {
        self.cluster
            .running()
            .map(|n| n.ready.http_addr.clone())
            .collect()
    }

    /// Sends a request to whichever node answers with a non-redirect status.
    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let body = body.map(|b| serde_json::to_vec(&b).expect("json"));
        let deadline = Instant::now() + Duration::from_secs(10);
        let http = super::http();
        loop {
            for addr in self.http_endpoints() {
                let url = format!("{}{path}", http.base_url(&addr));
                let Ok(r) = http
                    .request(method, &url, body.as_deref(), Duration::from_secs(3))
                    .await
                else {
                    continue;
                };
                if r.status == 421 || r.status == 503 {
                    continue; // not the leader
                }
                let value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
                return (r.status, value);
            }
            assert!(
                Instant::now() < deadline,
                "no node answered {method} {path}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops `region`'s gateway and returns once it has closed its listener and every
    /// connection, so a client's pooled keep-alive connection has seen the close before the
    /// caller's next request (otherwise a request written on it races the close).
    pub async fn stop_gateway(&mut self, region: &str) {
        let gateway = self.gateway_mut(region);
        if let Some(stop) = gateway.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = gateway.task.take() {
            tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .expect("the gateway closes its connections within 10 s")
                .expect("gateway task")
                .expect("gateway serve");
        }
    }

    fn gateway(&self, region: &str) -> &Gateway {
        self.gateways
            .iter()
            .find(|g| g.region == region)
            .expect("gateway")
    }

    fn gateway_mut(&mut self, region: &str) -> &mut Gateway {
        self.gateways
            .iter_mut()
            .find(|g| g.region == region)
            .expect("gateway")
    }

    /// Turns `region`'s gateway healthy, or DOWN (it answers 503), through its own
    /// `POST /v1/gateway/state`.
    pub async fn set_gateway(&self, region: &str, healthy: bool) {
        let url = self
            .gateway(region)
            .url
            .replace("/v1/health/check", "/v1/gateway/state");
        let body = json!({"status": if healthy { "HEALTHY" } else { "DOWN" }}).to_string();
        let response = arbiter::http_client::HttpClient::plain()
            .request("POST", &url, Some(body.as_bytes()), Duration::from_secs(5))
            .await
            .expect("the gateway answers");
        assert!(
            response.is_success(),
            "set {region}'s gateway: {}",
            response.status
        );
    }

    /// `region`'s gateway base URL (`http://127.0.0.1:port`).
    pub fn gateway_base(&self, region: &str) -> String {
        self.gateway(region)
            .url
            .trim_end_matches("/v1/health/check")
            .to_string()
    }

    /// Makes every application request at `region`'s gateway wait `delay_ms` (a hung region).
    pub async fn set_gateway_delay(&self, region: &str, delay_ms: u64) {
        let url = format!("{}/v1/gateway/state", self.gateway_base(region));
        let body = json!({"status": "HEALTHY", "appDelayMs": delay_ms}).to_string();
        let response = arbiter::http_client::HttpClient::plain()
            .request("POST", &url, Some(body.as_bytes()), Duration::from_secs(5))
            .await
            .expect("the gateway answers");
        assert!(response.is_success(), "{}", response.status);
    }

    /// `region`'s gateway counts: `received`, `inProgress`, `lastArrivalMs`.
    pub async fn gateway_stats(&self, region: &str) -> Value {
        let url = format!("{}/v1/gateway/stats", self.gateway_base(region));
        let response = arbiter::http_client::HttpClient::plain()
            .request("GET", &url, None, Duration::from_secs(5))
            .await
            .expect("the gateway answers");
        serde_json::from_slice(&response.body).expect("json")
    }

    /// `region`'s health state in the arbiter (`HEALTHY`, `DOWN`, `RECOVERING`, ...).
    pub async fn region_state(&self, region: &str) -> Option<String> {
        let (_, body) = self.call("GET", "/v1/regions", None).await;
        body["regions"]
            .as_array()?
            .iter()
            .find(|r| r["region"] == region)?["state"]
            .as_str()
            .map(str::to_string)
    }

    /// The newest failover event of `region`, if any.
    pub async fn latest_event(&self, region: &str) -> Option<Value> {
        let (status, body) = self
            .call(
                "GET",
                &format!("/v1/failover-events?failedRegion={region}"),
                None,
            )
            .await;
        assert_eq!(status, 200, "{body}");
        events_of(&body).first().cloned()
    }

    pub fn driver_lines(&self) -> Vec<String> {
        std::fs::read_to_string(&self.driver_log)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }
}

impl Drop for Drill {
    fn drop(&mut self) {
        for stop in self.agents.drain(..) {
            let _ = stop.send(());
        }
        for g in &mut self.gateways {
            if let Some(stop) = g.stop.take() {
                let _ = stop.send(());
            }
        }
        let _ = std::fs::remove_dir_all(&self.files);
    }
}

/// The events array, whether the endpoint wraps it or not.
pub fn events_of(body: &Value) -> Vec<Value> {
    match body {
        Value::Array(items) => items.clone(),
        Value::Object(map) => map
            .get("events")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default(),
        _ => Vec::new(),
    }
}

pub fn steps(event: &Value) -> Vec<String> {
    event["timelineLogs"]
        .as_array()
        .map(|entries| {
            entries
                .iter()
                .map(|e| e["step"].as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

pub async fn seed_tenants(drill: &Drill) {
    // The leader's controller registers the regions first; tenants may only name known ones.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, body) = drill.call("GET", "/v1/regions", None).await;
        if body["regions"].as_array().is_some_and(|r| r.len() == 3) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "regions never registered: {body}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for (tenant, primary, failover) in [
        ("tenant-a", "us-east-1", "us-west-2"),
        ("tenant-b", "us-east-1", "us-west-2"),
        ("tenant-c", "us-west-2", "us-east-1"),
    ] {
        let (status, body) = drill
            .call(
                "PUT",
                &format!("/v1/tenants/{tenant}"),
                Some(json!({"primaryRegion": primary, "failoverRegion": failover})),
            )
            .await;
        assert!(
            (200..300).contains(&status),
            "upsert {tenant}: {status} {body}"
        );
    }
}

pub async fn wait_completed(drill: &Drill, region: &str, timeout: Duration) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(event) = drill.latest_event(region).await {
            if event["eventStatus"] == "COMPLETED" || event["eventStatus"] == "FAILED" {
                return event;
            }
        }
        assert!(
            Instant::now() < deadline,
            "failover of {region} did not finish in {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until `region` has a failover event, at most `timeout`.
pub async fn wait_for_event(drill: &Drill, region: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while drill.latest_event(region).await.is_none() {
        assert!(
            Instant::now() < deadline,
            "no failover of {region} within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
