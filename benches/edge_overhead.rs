//! What an edge router adds to a request (`cargo bench --bench edge_overhead`): a stand-in
//! gateway on loopback, an edge in front of it, and `--clients` concurrent keep-alive clients
//! sending `GET /orders` for `--seconds` per phase, direct to the gateway and through the edge,
//! alternating `--reps` times. Prints each phase's requests/s, p50 and p99, then the medians
//! and what the edge adds: p50/p99 latency added and the throughput ratio.
//!
//! Everything shares this machine's cores (clients, edge, gateway), so the edge's cost shows up
//! twice: its own latency and the CPU it takes from the others. The medians of alternating
//! phases in one run are what to compare; absolute figures vary from run to run.
//!
//! Flags: `--clients N` (64), `--seconds S` (5), `--reps R` (3).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arbiter::edge::{self, Edge, EdgeConfig};
use arbiter_client::proto::{RegionRoute, RoutingSnapshot};
use arbiter_client::{ArbiterClient, ClientOptions};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

fn flag(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Phase {
    requests: u64,
    seconds: f64,
    p50_us: u64,
    p99_us: u64,
}

async fn phase(target: SocketAddr, clients: u64, seconds: u64) -> Phase {
    let until = Instant::now() + Duration::from_secs(seconds);
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..clients {
        workers.spawn(async move {
            let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
            let uri: hyper::Uri = format!("http://{target}/orders").parse().expect("uri");
            let mut latencies = Vec::with_capacity(20_000);
            // Bounded by time, and by count as a backstop.
            for _ in 0..5_000_000u64 {
                if Instant::now() >= until {
                    break;
                }
                let started = Instant::now();
                let request = hyper::Request::get(uri.clone())
                    .body(Full::new(Bytes::new()))
                    .expect("request");
                let response = client.request(request).await.expect("response");
                assert!(response.status().is_success(), "{}", response.status());
                response.into_body().collect().await.expect("body");
                latencies.push(started.elapsed().as_micros() as u64);
            }
            latencies
        });
    }
    let started = Instant::now();
    let mut all = Vec::new();
    while let Some(done) = workers.join_next().await {
        all.extend(done.expect("client"));
    }
    let seconds_taken = started.elapsed().as_secs_f64();
    all.sort_unstable();
    let at = |q: f64| all[((all.len() as f64 * q) as usize).min(all.len() - 1)];
    Phase {
        requests: all.len() as u64,
        seconds: seconds_taken,
        p50_us: at(0.50),
        p99_us: at(0.99),
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

#[tokio::main]
async fn main() {
    let clients = flag("--clients", 64);
    let seconds = flag("--seconds", 5);
    let reps = flag("--reps", 3).max(1);

    let gateway = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let gateway_addr = gateway.local_addr().expect("addr");
    tokio::spawn(arbiter::gateway::serve(
        "us-east-1".into(),
        gateway,
        std::future::pending(),
    ));

    // No arbiter: the table is handed to the edge directly; its watch keeps failing quietly
    // against a port nothing listens on.
    let arbiter = ArbiterClient::connect(vec!["127.0.0.1:9".into()], ClientOptions::default())
        .await
        .expect("client");
    let config = EdgeConfig::new(
        "bench".into(),
        vec![(
            "us-east-1".into(),
            format!("http://{gateway_addr}").parse().expect("uri"),
        )],
        arbiter,
        arbiter::tls::http1_client_config(None).expect("tls"),
    );
    let edge = Edge::new(config).expect("edge");
    edge.route_by(RoutingSnapshot {
        applied_index: 1,
        regions: vec![RegionRoute {
            region: "us-east-1".into(),
            weight_bp: Some(10_000),
            health_state: "HEALTHY".into(),
        }],
        ..Default::default()
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let edge_addr = listener.local_addr().expect("addr");
    tokio::spawn(edge::run(
        Arc::clone(&edge),
        listener,
        None,
        None,
        std::future::pending(),
    ));

    println!(
        "edge overhead: {clients} clients, {seconds} s per phase, {reps} alternating repetitions"
    );
    println!(
        "{:<8} {:>4} {:>10} {:>10} {:>10}",
        "path", "rep", "req/s", "p50 ms", "p99 ms"
    );
    let mut direct = Vec::new();
    let mut through = Vec::new();
    for rep in 1..=reps {
        for (name, target, out) in [
            ("direct", gateway_addr, &mut direct),
            ("edge", edge_addr, &mut through),
        ] {
            let p = phase(target, clients, seconds).await;
            println!(
                "{name:<8} {rep:>4} {:>10.0} {:>10.2} {:>10.2}",
                p.requests as f64 / p.seconds,
                p.p50_us as f64 / 1000.0,
                p.p99_us as f64 / 1000.0
            );
            out.push(p);
        }
    }
    let med = |v: &[Phase], f: &dyn Fn(&Phase) -> f64| median(v.iter().map(f).collect());
    let rate = |p: &Phase| p.requests as f64 / p.seconds;
    let p50 = |p: &Phase| p.p50_us as f64 / 1000.0;
    let p99 = |p: &Phase| p.p99_us as f64 / 1000.0;
    let (dr, er) = (med(&direct, &rate), med(&through, &rate));
    let (d50, e50) = (med(&direct, &p50), med(&through, &p50));
    let (d99, e99) = (med(&direct, &p99), med(&through, &p99));
    println!("medians:");
    println!("  direct  {dr:>10.0} req/s  p50 {d50:.2} ms  p99 {d99:.2} ms");
    println!("  edge    {er:>10.0} req/s  p50 {e50:.2} ms  p99 {e99:.2} ms");
    println!(
        "  the edge adds p50 {:+.2} ms, p99 {:+.2} ms; throughput {:.2}x of direct",
        e50 - d50,
        e99 - d99,
        er / dr
    );
}
