//! End-to-end DR: stand-in regional gateways, three probe agents (London, Tokyo, Sydney) and a
//! three-node arbiter on loopback. Stopping us-east-1's gateway must lead, through outage
//! consensus, to a fenced us-east-1, tenants and traffic on us-west-2, both drivers run, and a
//! failover event that reaches COMPLETED with each step in its timeline exactly once — even
//! when the Raft leader is killed in the middle.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use arbiter::dr::probe_agent::{self, ProbeAgentConfig};
use arbiter::http_client;
use common::*;
use serde_json::{json, Value};
use tokio::sync::oneshot;

const REGIONS3: [&str; 3] = ["us-east-1", "us-west-2", "eu-central-1"];

struct Drill {
    cluster: TestCluster,
    gateways: Vec<(String, Option<oneshot::Sender<()>>, String)>,
    agents: Vec<oneshot::Sender<()>>,
    driver_log: std::path::PathBuf,
}

fn dr_config(dir: &Path, driver_log: &Path, scale_delay_s: f64) -> std::path::PathBuf {
    let log = driver_log.display();
    let text = format!(
        r#"
[dr]
cooldown_ms = 4000
drain_ms = 300
tick_ms = 100
probe_window_ms = 3000
consecutive_failures = 2
[dr.traffic_driver]
kind = "exec"
command = ["/bin/sh", "-c", "echo \"$ARBITER_ACTION $ARBITER_FROM_REGION $ARBITER_TO_REGION\" >> {log}"]
[dr.compute_driver]
kind = "exec"
command = ["/bin/sh", "-c", "sleep {scale_delay_s}; echo \"$ARBITER_ACTION $ARBITER_TO_REGION\" >> {log}"]
"#
    );
    let path = dir.join("dr.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

impl Drill {
    async fn start(scale_delay_s: f64) -> Drill {
        init_tracing();
        let files = tempfile::tempdir().expect("temp dir").keep();
        let driver_log = files.join("drivers.log");
        let config = dr_config(&files, &driver_log, scale_delay_s);
        let config = config.display().to_string();
        let cluster = TestCluster::start(3, &["--config", &config]).await;

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
            tokio::spawn(arbiter::gateway::serve(region.into(), listener, async {
                let _ = stopped.await;
            }));
            gateways.push((region.to_string(), Some(stop), url));
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
                    .map(|(r, _, u)| (r.clone(), u.clone()))
                    .collect(),
                arbiters: arbiters.clone(),
                interval: Duration::from_millis(100),
                timeout: Duration::from_millis(300),
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
        }
    }

    fn http_endpoints(&self) -> Vec<String> {
        self.cluster
            .running()
            .map(|n| n.ready.http_addr.clone())
            .collect()
    }

    /// Sends a request to whichever node answers with a non-redirect status.
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let body = body.map(|b| serde_json::to_vec(&b).expect("json"));
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            for addr in self.http_endpoints() {
                let url = format!("http://{addr}{path}");
                let Ok(r) =
                    http_client::request(method, &url, body.as_deref(), Duration::from_secs(3))
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

    fn stop_gateway(&mut self, region: &str) {
        let gateway = self
            .gateways
            .iter_mut()
            .find(|g| g.0 == region)
            .expect("gateway");
        if let Some(stop) = gateway.1.take() {
            let _ = stop.send(());
        }
    }

    /// The newest failover event of `region`, if any.
    async fn latest_event(&self, region: &str) -> Option<Value> {
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

    fn driver_lines(&self) -> Vec<String> {
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
            if let Some(stop) = g.1.take() {
                let _ = stop.send(());
            }
        }
        if let Some(dir) = self.driver_log.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// The events array, whether the endpoint wraps it or not.
fn events_of(body: &Value) -> Vec<Value> {
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

fn steps(event: &Value) -> Vec<String> {
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

async fn seed_tenants(drill: &Drill) {
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

async fn wait_completed(drill: &Drill, region: &str, timeout: Duration) -> Value {
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

const ALL_STEPS: [&str; 6] = [
    "DECIDE",
    "FENCE",
    "SHIFT_TRAFFIC",
    "SCALE_STANDBY",
    "DRAINED",
    "COMPLETED",
];

#[tokio::test(flavor = "multi_thread")]
async fn regional_outage_is_fenced_shifted_scaled_and_completed() {
    let mut drill = Drill::start(0.0).await;
    seed_tenants(&drill).await;
    let endpoints = drill.cluster.endpoints();
    let token = {
        use arbiter_client::proto::lease_service_client::LeaseServiceClient;
        use arbiter_client::proto::AcquireRequest;
        let leader = drill.cluster.leader(Duration::from_secs(5)).await;
        let mut client = LeaseServiceClient::connect(format!("http://{}", leader.grpc_addr))
            .await
            .expect("connect");
        let reply = client
            .acquire(AcquireRequest {
                resource: "db/orders".into(),
                holder: "proxy-us-east-1".into(),
                ttl_ms: 60_000,
                region: "us-east-1".into(),
                ..Default::default()
            })
            .await
            .expect("acquire")
            .into_inner();
        assert!(reply.ok);
        reply.token
    };
    // Probes have been flowing; no outage may have been declared while everything is up.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(
        drill.latest_event("us-east-1").await.is_none(),
        "false alarm"
    );

    tracing::info!("phase: us-east-1's gateway goes dark");
    drill.stop_gateway("us-east-1");
    let outage_at = Instant::now();
    let detected = loop {
        if drill.latest_event("us-east-1").await.is_some() {
            break outage_at.elapsed();
        }
        assert!(
            outage_at.elapsed() < Duration::from_secs(15),
            "outage never declared"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let event = wait_completed(&drill, "us-east-1", Duration::from_secs(20)).await;
    let end_to_end = outage_at.elapsed();
    tracing::info!(?detected, ?end_to_end, "failover finished");
    println!("detection {detected:?}, outage -> COMPLETED {end_to_end:?}");

    assert_eq!(event["eventStatus"], "COMPLETED", "{event}");
    assert_eq!(event["failoverType"], "AUTOMATED");
    assert_eq!(event["destinationRegion"], "us-west-2");
    assert_eq!(steps(&event), ALL_STEPS, "{event}");

    let (_, a) = drill.call("GET", "/v1/tenants/tenant-a", None).await;
    assert_eq!(a["activeRoutingRegion"], "us-west-2", "{a}");
    assert_eq!(a["routingStatus"], "SHIFTED");
    let (_, c) = drill.call("GET", "/v1/tenants/tenant-c", None).await;
    assert_eq!(c["activeRoutingRegion"], "us-west-2", "{c}");
    assert_eq!(c["routingStatus"], "DEFAULT");

    let lines = drill.driver_lines();
    assert!(
        lines.contains(&"shift_traffic us-east-1 us-west-2".to_string()),
        "{lines:?}"
    );
    assert!(
        lines.contains(&"scale_standby us-west-2".to_string()),
        "{lines:?}"
    );

    let epoch = epoch_of(&endpoints, "db/orders").await.expect("epoch");
    assert!(
        epoch > token,
        "us-east-1's lease was fenced (epoch {epoch} > token {token})"
    );

    tracing::info!("phase: failback is refused while the region is down");
    let (status, body) = drill
        .call(
            "POST",
            "/v1/dr/failback",
            Some(json!({"region": "us-east-1"})),
        )
        .await;
    assert_eq!(status, 409, "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_leader_finishes_a_failover_each_step_once() {
    // A slow compute driver holds the failover in SCALE_STANDBY long enough to kill the leader.
    let mut drill = Drill::start(2.0).await;
    seed_tenants(&drill).await;
    drill.stop_gateway("us-east-1");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(event) = drill.latest_event("us-east-1").await {
            if steps(&event).contains(&"SHIFT_TRAFFIC".to_string()) {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "failover never reached SHIFT_TRAFFIC"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let leader = drill.cluster.leader(Duration::from_secs(5)).await;
    tracing::info!(
        leader = leader.node_id,
        "phase: kill the leader mid-failover"
    );
    drill.cluster.kill(leader.node_id);

    let event = wait_completed(&drill, "us-east-1", Duration::from_secs(30)).await;
    assert_eq!(event["eventStatus"], "COMPLETED", "{event}");
    assert_eq!(steps(&event), ALL_STEPS, "each step exactly once: {event}");
    let (_, a) = drill.call("GET", "/v1/tenants/tenant-a", None).await;
    assert_eq!(a["activeRoutingRegion"], "us-west-2", "{a}");
}
