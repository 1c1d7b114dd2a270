//! `arbiter edge` against a real three-node arbiter, stand-in regional gateways and probe
//! agents, all on loopback: tenant pinning, the weighted split, header hygiene and bad input;
//! a planned shift that fails no request, with real drain counts and propagation; an
//! unplanned outage (the time from the controller's decision to the last request the failed
//! region received) and the retry rules; the last known table served while every arbiter node
//! is down.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arbiter::auth::issue::TokenGrant;
use arbiter::auth::Role;
use arbiter::edge::{self, Edge, EdgeConfig};
use arbiter::tls::ClientCredentials;
use bytes::Bytes;
use common::drill::*;
use common::*;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use tokio::sync::oneshot;

type Client = hyper_util::client::legacy::Client<HttpConnector, Full<Bytes>>;

fn client() -> Client {
    hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http()
}

struct Answer {
    status: u16,
    headers: hyper::HeaderMap,
    body: Value,
}

impl Answer {
    fn region(&self) -> &str {
        self.headers
            .get("x-arbiter-region")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

async fn send(
    client: &Client,
    edge: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Answer {
    let mut request = hyper::Request::builder()
        .method(method)
        .uri(format!("http://{edge}{path}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(Full::new(Bytes::new())).expect("request");
    let response = tokio::time::timeout(Duration::from_secs(30), client.request(request))
        .await
        .expect("the edge answers within 30 s")
        .expect("the edge answers");
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("body").to_bytes();
    Answer {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    }
}

struct RunningEdge {
    addr: SocketAddr,
    edge: Arc<Edge>,
    stop: Option<oneshot::Sender<()>>,
}

impl Drop for RunningEdge {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Starts an edge named `name` in this process, reporting to the cluster under its own
/// `edge` identity, and waits until it routes by a table.
async fn start_edge(drill: &Drill, name: &str, tune: impl FnOnce(&mut EdgeConfig)) -> RunningEdge {
    let token = drill
        .cluster
        .issue(TokenGrant {
            identity: name.into(),
            role: Role::Edge,
            region: None,
            vantage: None,
        })
        .await;
    let credentials = ClientCredentials {
        token: Some(token),
        ..certs().operator()
    };
    let arbiter = arbiter_client::ArbiterClient::connect(
        drill.cluster.endpoints(),
        credentials.client_options().expect("options"),
    )
    .await
    .expect("client");
    let gateways = REGIONS3
        .iter()
        .map(|r| (r.to_string(), drill.gateway_base(r).parse().expect("uri")))
        .collect();
    let upstream_tls = arbiter::tls::http1_client_config(None).expect("tls");
    let mut config = EdgeConfig::new(name.into(), gateways, arbiter, upstream_tls);
    config.report_to = Some((
        drill.http_endpoints(),
        credentials.http_client().expect("http"),
    ));
    config.report_interval = Duration::from_millis(200);
    config.probe_interval = Duration::from_millis(200);
    config.tenant_path_prefix = Some("/tenants/".into());
    tune(&mut config);
    let edge = Edge::new(config).expect("edge");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(edge::run(edge.clone(), listener, None, None, async {
        let _ = stopped.await;
    }));
    let waited = edge.clone();
    eventually(
        "the edge's first routing table",
        Duration::from_secs(20),
        || {
            let edge = waited.clone();
            async move { edge.table().map(|_| ()) }
        },
    )
    .await;
    RunningEdge {
        addr,
        edge,
        stop: Some(stop),
    }
}

/// Waits until `edge` routes by a table with `region` at `weight_bp`.
async fn wait_weight(edge: &RunningEdge, region: &str, weight_bp: u32) {
    let e = edge.edge.clone();
    let region = region.to_string();
    eventually(
        "the edge to apply the new weights",
        Duration::from_secs(20),
        || {
            let e = e.clone();
            let region = region.clone();
            async move {
                e.table()
                    .filter(|t| t.weight_of(&region) == Some(weight_bp))
                    .map(|_| ())
            }
        },
    )
    .await;
}

async fn shift(drill: &Drill, from: &str, to: &str, percent: f64, drain_s: u32) -> Value {
    let (status, body) = drill
        .call(
            "POST",
            "/v1/dr/traffic-shift",
            Some(json!({
                "policyName": "edge-test", "sourceRegion": from, "targetRegion": to,
                "trafficShiftPercentage": percent, "drainTimeoutSeconds": drain_s,
                "reason": "edge test"
            })),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    body
}

async fn wait_task(drill: &Drill, id: &str, timeout: Duration) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        let (status, task) = drill.call("GET", &format!("/v1/dr/tasks/{id}"), None).await;
        assert_eq!(status, 200, "{task}");
        if task["status"] != "IN_PROGRESS" {
            return task;
        }
        assert!(
            Instant::now() < deadline,
            "task {id} still in progress: {task}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_regions(drill: &Drill) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, body) = drill.call("GET", "/v1/regions", None).await;
        if body["regions"].as_array().is_some_and(|r| r.len() == 3) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "regions never registered: {body}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Application requests received by every gateway together.
async fn received_total(drill: &Drill) -> u64 {
    let mut n = 0;
    for r in REGIONS3 {
        n += drill.gateway_stats(r).await["received"]
            .as_u64()
            .unwrap_or(0);
    }
    n
}

fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[tokio::test(flavor = "multi_thread")]
async fn tenants_weights_headers_and_a_lost_arbiter() {
    let mut drill = Drill::start(None, Duration::from_millis(200)).await;
    wait_regions(&drill).await;
    let (status, body) = drill
        .call(
            "PUT",
            "/v1/tenants/acme",
            Some(json!({"primaryRegion": "eu-central-1", "failoverRegion": "us-west-2"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    // us-east-1 100 % → 70 / 30 with us-west-2.
    let task = shift(&drill, "us-east-1", "us-west-2", 30.0, 1).await;
    let edge = start_edge(&drill, "pop-test", |_| {}).await;
    wait_weight(&edge, "us-west-2", 3_000).await;
    let http = client();

    tracing::info!("the weighted split over 10,000 requests");
    let before: BTreeMap<&str, u64> = {
        let mut m = BTreeMap::new();
        for r in REGIONS3 {
            m.insert(
                r,
                drill.gateway_stats(r).await["received"]
                    .as_u64()
                    .unwrap_or(0),
            );
        }
        m
    };
    let counts = Arc::new(std::sync::Mutex::new(BTreeMap::<String, u64>::new()));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let http = http.clone();
        let counts = counts.clone();
        let addr = edge.addr;
        workers.spawn(async move {
            for _ in 0..625 {
                let answer = send(&http, addr, "GET", "/orders", &[]).await;
                assert_eq!(answer.status, 200, "{}", answer.body);
                *counts
                    .lock()
                    .expect("lock")
                    .entry(answer.region().to_string())
                    .or_default() += 1;
            }
        });
    }
    while let Some(done) = workers.join_next().await {
        done.expect("worker");
    }
    let counts = counts.lock().expect("lock").clone();
    let east = counts.get("us-east-1").copied().unwrap_or(0);
    let west = counts.get("us-west-2").copied().unwrap_or(0);
    tracing::info!(?counts, "split");
    assert_eq!(east + west, 10_000, "{counts:?}");
    assert!((6_500..=7_500).contains(&east), "70 % ± 5 %: {counts:?}");
    assert!((2_500..=3_500).contains(&west), "30 % ± 5 %: {counts:?}");
    // The gateways saw the same split: the header is not the only evidence.
    let east_seen = drill.gateway_stats("us-east-1").await["received"]
        .as_u64()
        .unwrap_or(0)
        - before["us-east-1"];
    let west_seen = drill.gateway_stats("us-west-2").await["received"]
        .as_u64()
        .unwrap_or(0)
        - before["us-west-2"];
    assert_eq!((east_seen, west_seen), (east, west));

    tracing::info!("tenant pinning, by header and by path; an unknown tenant takes the default");
    for _ in 0..20 {
        let by_header = send(
            &http,
            edge.addr,
            "GET",
            "/orders",
            &[("x-tenant-id", "acme")],
        )
        .await;
        assert_eq!(
            (by_header.status, by_header.region()),
            (200, "eu-central-1")
        );
        assert_eq!(by_header.headers["x-arbiter-route"], "tenant");
        let by_path = send(&http, edge.addr, "GET", "/tenants/acme/orders", &[]).await;
        assert_eq!((by_path.status, by_path.region()), (200, "eu-central-1"));
        let unknown = send(
            &http,
            edge.addr,
            "GET",
            "/orders",
            &[("x-tenant-id", "nobody")],
        )
        .await;
        assert_eq!(unknown.status, 200);
        assert_ne!(
            unknown.region(),
            "eu-central-1",
            "an unknown tenant took acme's route"
        );
        assert_eq!(unknown.headers["x-arbiter-route"], "weighted");
    }

    tracing::info!("bad input is refused at the edge and never forwarded");
    let received_before = received_total(&drill).await;
    let huge = "x".repeat(20_000);
    for (what, headers, path) in [
        (
            "a bad tenant name",
            vec![("x-tenant-id", "no spaces please")],
            "/orders",
        ),
        (
            "two tenants",
            vec![("x-tenant-id", "acme"), ("x-tenant-id", "other")],
            "/orders",
        ),
        (
            "header and path disagree",
            vec![("x-tenant-id", "other")],
            "/tenants/acme/x",
        ),
        (
            "oversized headers",
            vec![("x-big", huge.as_str())],
            "/orders",
        ),
    ] {
        let answer = send(&http, edge.addr, "GET", path, &headers).await;
        assert_eq!(answer.status, 400, "{what}: {}", answer.body);
        assert!(answer.body["error"].is_string(), "{what}: {}", answer.body);
    }
    let many: Vec<(String, &str)> = (0..150).map(|i| (format!("x-h{i}"), "v")).collect();
    let many: Vec<(&str, &str)> = many.iter().map(|(n, v)| (n.as_str(), *v)).collect();
    assert_eq!(
        send(&http, edge.addr, "GET", "/orders", &many).await.status,
        400
    );
    let received_after = received_total(&drill).await;
    assert_eq!(
        received_after, received_before,
        "a refused request reached a gateway"
    );

    tracing::info!("hop-by-hop headers stay behind; the forwarding headers name the client");
    let answer = send(
        &http,
        edge.addr,
        "GET",
        "/orders",
        &[
            ("connection", "keep-alive, x-secret"),
            ("x-secret", "do not forward"),
            ("proxy-authorization", "Basic c2VjcmV0"),
            ("te", "trailers"),
            ("x-forwarded-for", "203.0.113.9"),
            ("x-kept", "yes"),
        ],
    )
    .await;
    assert_eq!(answer.status, 200);
    let seen = &answer.body["headers"];
    for dropped in ["x-secret", "proxy-authorization", "te", "keep-alive"] {
        assert!(seen[dropped].is_null(), "{dropped} was forwarded: {seen}");
    }
    assert_eq!(seen["x-kept"], "yes");
    assert_eq!(seen["x-forwarded-for"], "203.0.113.9, 127.0.0.1", "{seen}");
    let forwarded = seen["forwarded"].as_str().unwrap_or_default();
    assert!(
        forwarded.starts_with("for=127.0.0.1;proto=http;by=\"pop-test\""),
        "{forwarded}"
    );
    // The task finished: propagated to the one edge (its 1 s drain does not apply: us-east-1
    // kept 70 %).
    let done = wait_task(
        &drill,
        task["taskTrackId"].as_str().expect("id"),
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(done["status"], "COMPLETED", "{done}");

    tracing::info!("the leader dies: the watch follows the new leader and misses no change");
    let leader = drill.cluster.leader(Duration::from_secs(10)).await;
    drill.cluster.kill(leader.node_id);
    let task = shift(&drill, "us-east-1", "us-west-2", 50.0, 1).await;
    wait_weight(&edge, "us-west-2", 6_500).await;
    let done = wait_task(
        &drill,
        task["taskTrackId"].as_str().expect("id"),
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(done["status"], "COMPLETED", "{done}");
    assert_eq!(done["dnsPropagationStatus"], "PROPAGATED", "{done}");
    let after = send(&http, edge.addr, "GET", "/orders", &[]).await;
    assert_eq!(after.status, 200);

    tracing::info!("every arbiter node down: the edge routes by its last table and says so");
    assert!(!edge.edge.routing_stale());
    let index = edge.edge.table().expect("table").applied_index;
    for id in (1..=3).filter(|id| *id != leader.node_id) {
        drill.cluster.kill(id);
    }
    let e = edge.edge.clone();
    eventually(
        "the edge to notice the arbiter is gone",
        Duration::from_secs(20),
        || {
            let e = e.clone();
            async move { e.routing_stale().then_some(()) }
        },
    )
    .await;
    for _ in 0..50 {
        let answer = send(
            &http,
            edge.addr,
            "GET",
            "/orders",
            &[("x-tenant-id", "acme")],
        )
        .await;
        assert_eq!((answer.status, answer.region()), (200, "eu-central-1"));
    }
    assert_eq!(edge.edge.table().expect("table").applied_index, index);
}

/// The load's workers, its answers by status, and how many it sent.
type Load = (
    tokio::task::JoinSet<()>,
    Arc<std::sync::Mutex<BTreeMap<u16, u64>>>,
    Arc<AtomicU64>,
);

/// Keeps `clients` loops sending through `edges` (round robin), each request asking the
/// gateway to take `delay_ms`, until `stop`; counts answers by status.
fn load(edges: Vec<SocketAddr>, clients: usize, delay_ms: u64, stop: Arc<AtomicBool>) -> Load {
    let statuses = Arc::new(std::sync::Mutex::new(BTreeMap::new()));
    let sent = Arc::new(AtomicU64::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for i in 0..clients {
        let http = client();
        let edges = edges.clone();
        let stop = stop.clone();
        let statuses = statuses.clone();
        let sent = sent.clone();
        workers.spawn(async move {
            // Bounded: at most 20,000 requests per client.
            for n in 0..20_000 {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                let edge = edges[(i + n) % edges.len()];
                let path = format!("/orders?delayMs={delay_ms}");
                let answer = send(&http, edge, "POST", &path, &[]).await;
                sent.fetch_add(1, Ordering::Relaxed);
                *statuses
                    .lock()
                    .expect("lock")
                    .entry(answer.status)
                    .or_default() += 1;
            }
        });
    }
    (workers, statuses, sent)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_planned_shift_fails_no_request_and_reports_real_drain_figures() {
    let drill = Drill::start(None, Duration::from_millis(200)).await;
    wait_regions(&drill).await;
    let fra = start_edge(&drill, "pop-fra", |_| {}).await;
    let sfo = start_edge(&drill, "pop-sfo", |_| {}).await;
    // Non-idempotent requests (POST) that each take 300 ms at the gateway: a shift that lost
    // or repeated one would show.
    let stop = Arc::new(AtomicBool::new(false));
    let (mut workers, statuses, sent) = load(vec![fra.addr, sfo.addr], 8, 300, stop.clone());
    // Wait until both edges have reported requests in flight to us-east-1.
    eventually(
        "requests in flight to us-east-1",
        Duration::from_secs(20),
        || async {
            let (_, body) = drill.call("GET", "/v1/edges", None).await;
            let edges = body["edges"].as_array().cloned().unwrap_or_default();
            (edges.len() == 2
                && edges
                    .iter()
                    .all(|e| e["regions"]["us-east-1"]["inFlight"].as_u64().unwrap_or(0) > 0))
            .then_some(())
        },
    )
    .await;

    let accepted = shift(&drill, "us-east-1", "us-west-2", 100.0, 10).await;
    let shifted_at = Instant::now();
    let drain_active = accepted["drainActiveCount"]
        .as_u64()
        .expect("drainActiveCount");
    tracing::info!(drain_active, "202");
    assert!(
        (1..=8).contains(&drain_active),
        "drainActiveCount is the edges' requests in flight (8 clients): {accepted}"
    );
    let id = accepted["taskTrackId"].as_str().expect("id").to_string();
    // While the task runs, its view names the edges' progress.
    let (_, live) = drill.call("GET", &format!("/v1/dr/tasks/{id}"), None).await;
    tracing::info!(%live, "task in progress");
    let done = wait_task(&drill, &id, Duration::from_secs(30)).await;
    let finished_after = shifted_at.elapsed();
    tracing::info!(%done, ?finished_after, "task finished");
    assert_eq!(done["status"], "COMPLETED", "{done}");
    assert_eq!(done["dnsPropagationStatus"], "PROPAGATED", "{done}");
    let detail = done["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("applied by 2 edge(s) (pop-fra, pop-sfo)"),
        "{detail}"
    );
    assert!(detail.contains("us-east-1 drained in"), "{detail}");

    // After the drain, us-east-1 receives nothing more.
    let east_then = drill.gateway_stats("us-east-1").await;
    assert_eq!(east_then["inProgress"], 0, "{east_then}");
    let sent_then = sent.load(Ordering::Relaxed);
    eventually(
        "another 100 requests after the shift",
        Duration::from_secs(30),
        || async { (sent.load(Ordering::Relaxed) >= sent_then + 100).then_some(()) },
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    while let Some(done) = workers.join_next().await {
        done.expect("worker");
    }
    let east_now = drill.gateway_stats("us-east-1").await;
    assert_eq!(east_now["received"], east_then["received"], "{east_now}");
    let statuses = statuses.lock().expect("lock").clone();
    tracing::info!(?statuses, "load through the shift");
    assert_eq!(
        statuses.keys().copied().collect::<Vec<_>>(),
        [200],
        "every request through the shift succeeded: {statuses:?}"
    );
}

fn fast_dr(driver_log: &Path) -> String {
    let log = driver_log.display();
    format!(
        r#"
[dr]
cooldown_ms = 4000
drain_ms = 300
tick_ms = 100
probe_window_ms = 1500
consecutive_failures = 2
[dr.traffic_driver]
kind = "exec"
command = ["/bin/sh", "-c", "echo \"$ARBITER_ACTION $ARBITER_FROM_REGION $ARBITER_TO_REGION\" >> {log}"]
"#
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn an_outage_stops_traffic_to_the_failed_region_and_safe_requests_are_retried() {
    let drill = Drill::start(Some(&fast_dr), Duration::from_millis(100)).await;
    wait_regions(&drill).await;
    let edge = start_edge(&drill, "pop-iad", |config| {
        config.response_timeout = Duration::from_millis(800);
        // Probes measure once at the start, then not within this test: a refused connection
        // must be routed around by the request path itself.
        config.probe_interval = Duration::from_secs(600);
    })
    .await;
    let http = client();

    tracing::info!("a hung region: safe requests are retried once elsewhere, others are not");
    drill.set_gateway_delay("us-east-1", 30_000).await;
    let started = Instant::now();
    let get = send(&http, edge.addr, "GET", "/orders", &[]).await;
    assert_eq!(get.status, 200, "{}", get.body);
    assert_ne!(get.region(), "us-east-1");
    assert_eq!(get.headers["x-arbiter-retried-from"], "us-east-1");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let post = send(&http, edge.addr, "POST", "/orders", &[]).await;
    assert_eq!(
        post.status, 504,
        "a POST that may have reached the gateway is not repeated"
    );
    let keyed = send(
        &http,
        edge.addr,
        "POST",
        "/orders",
        &[("idempotency-key", "k-1")],
    )
    .await;
    assert_eq!(keyed.status, 200, "{}", keyed.body);
    assert_ne!(keyed.region(), "us-east-1");
    drill.set_gateway_delay("us-east-1", 0).await;

    tracing::info!("an outage: load runs through the edge while us-east-1's health fails");
    let stop = Arc::new(AtomicBool::new(false));
    let (mut workers, statuses, _) = load(vec![edge.addr], 4, 20, stop.clone());
    eventually(
        "load reaching us-east-1",
        Duration::from_secs(10),
        || async {
            (drill.gateway_stats("us-east-1").await["received"]
                .as_u64()
                .unwrap_or(0)
                > 10)
                .then_some(())
        },
    )
    .await;
    drill.set_gateway("us-east-1", false).await;
    // The decision as the operator's API first shows it (polled every 10 ms).
    let deadline = Instant::now() + Duration::from_secs(30);
    let decided_ms = loop {
        if drill.latest_event("us-east-1").await.is_some() {
            break wall_ms();
        }
        assert!(Instant::now() < deadline, "no failover of us-east-1");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let event = wait_completed(&drill, "us-east-1", Duration::from_secs(30)).await;
    assert_eq!(event["eventStatus"], "COMPLETED", "{event}");
    // Let the load run on a little, so a late request to us-east-1 would show.
    let sent_to_west = drill.gateway_stats("us-west-2").await["received"]
        .as_u64()
        .unwrap_or(0);
    eventually("load on us-west-2", Duration::from_secs(10), || async {
        (drill.gateway_stats("us-west-2").await["received"]
            .as_u64()
            .unwrap_or(0)
            > sent_to_west + 50)
            .then_some(())
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    while let Some(done) = workers.join_next().await {
        done.expect("worker");
    }
    let last_east = drill.gateway_stats("us-east-1").await["lastArrivalMs"]
        .as_u64()
        .expect("lastArrivalMs");
    let after_decision = last_east as i64 - decided_ms as i64;
    tracing::info!(
        after_decision_ms = after_decision,
        "last request us-east-1 received, relative to the decision"
    );
    println!("edge outage: last request at the failed region {after_decision} ms after the decision was visible");
    assert!(
        after_decision < 1_000,
        "us-east-1 still received requests {after_decision} ms after the decision"
    );
    let statuses = statuses.lock().expect("lock").clone();
    assert_eq!(
        statuses.keys().copied().collect::<Vec<_>>(),
        [200],
        "the gateway kept answering, so no request failed: {statuses:?}"
    );

    tracing::info!("a gateway that refuses connections: any method is retried elsewhere");
    drill.set_gateway("us-east-1", true).await;
    let mut drill = drill;
    drill.stop_gateway("us-west-2").await;
    // us-west-2 now holds the traffic; its gateway refuses connections.
    let post = send(&http, edge.addr, "POST", "/orders", &[]).await;
    assert_eq!(post.status, 200, "{}", post.body);
    assert_ne!(post.region(), "us-west-2");
    assert_eq!(post.headers["x-arbiter-retried-from"], "us-west-2");
    // The failed gateway is now routed around without a retry.
    let next = send(&http, edge.addr, "POST", "/orders", &[]).await;
    assert_eq!(next.status, 200, "{}", next.body);
    assert!(next.headers.get("x-arbiter-retried-from").is_none());
}
