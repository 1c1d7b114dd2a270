//! Lease throughput and latency against a running cluster, through the SDK.
//!
//! `cargo run --release -p arbiter-client --example lease_bench -- --clients 64 --seconds 10`
//!
//! Two phases, each bounded by `--seconds` and `--max-ops`:
//! 1. keep-alive: every client renews its own held lease (unary `KeepAlive`) in a loop;
//! 2. acquire: every client acquires fresh, distinct resources in a loop (each a logged grant).
//!
//! Keep-alives run first so the acquire phase's leases, which lapse after `--ttl-ms`, do not
//! expire (one logged `Expire` each) under the keep-alive measurement. All clients share one
//! `ArbiterClient` per `--conns`, as proxies in one process would.

mod common;

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arbiter_client::{ArbiterClient, ClientError, Grant, LeaseSpec, Refusal};
use clap::Parser;
use tokio::time::Instant;

#[derive(Parser, Debug)]
#[command(about = "Lease acquire and keep-alive throughput and latency")]
struct Args {
    #[command(flatten)]
    cluster: common::Cluster,
    /// Concurrent clients (each one request at a time).
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Connections (clients share them round-robin).
    #[arg(long, default_value_t = 1)]
    conns: usize,
    /// Length of each phase.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Upper bound on the operations of each phase.
    #[arg(long, default_value_t = 1_000_000)]
    max_ops: u64,
    /// TTL of the leases the acquire phase takes (they lapse after the run).
    #[arg(long, default_value_t = 5_000)]
    ttl_ms: u64,
}

/// What one phase measured.
#[derive(Default)]
struct Tally {
    latencies: Vec<Duration>,
    refused: u64,
    failed: u64,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        self.latencies.extend(other.latencies);
        self.refused += other.refused;
        self.failed += other.failed;
    }

    fn record<T>(&mut self, started: Instant, outcome: Result<Result<T, Refusal>, ClientError>) {
        match outcome {
            Ok(Ok(_)) => self.latencies.push(started.elapsed()),
            Ok(Err(_)) => self.refused += 1,
            Err(_) => self.failed += 1,
        }
    }

    fn report(mut self, name: &str, elapsed: Duration) {
        self.latencies.sort_unstable();
        let ok = self.latencies.len();
        let pct = |p: usize| {
            self.latencies
                .get((ok * p / 100).min(ok.saturating_sub(1)))
                .map_or(f64::NAN, |d| d.as_secs_f64() * 1e3)
        };
        println!(
            "{name:<10} {ok:>8} ok in {:>5.2} s = {:>8.0} ops/s   p50 {:>6.2} ms   p99 {:>6.2} ms   \
             max {:>7.2} ms   refused {}   failed {}",
            elapsed.as_secs_f64(),
            ok as f64 / elapsed.as_secs_f64(),
            pct(50),
            pct(99),
            self.latencies.last().map_or(f64::NAN, |d| d.as_secs_f64() * 1e3),
            self.refused,
            self.failed,
        );
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let mut connections = Vec::new();
    for _ in 0..args.conns.max(1) {
        connections.push(
            ArbiterClient::connect(args.cluster.endpoints.clone(), args.cluster.options()?).await?,
        );
    }
    let client_of = |i: usize| connections[i % connections.len()].clone();
    // Distinct resources on every run, so a rerun never trips over the last one's leases.
    let run = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis();
    let phase = Duration::from_secs(args.seconds);
    println!(
        "lease_bench: {} clients over {} connection(s) to {}, {} s per phase",
        args.clients,
        connections.len(),
        args.cluster.endpoints.join(","),
        args.seconds
    );

    // Setup (untimed): one long lease per client to keep alive.
    let mut held = Vec::new();
    for i in 0..args.clients {
        let spec = LeaseSpec::new(
            format!("bench/{run}/keepalive/{i}"),
            format!("bench-{i}"),
            Duration::from_secs(30),
        );
        match client_of(i).acquire(&spec).await? {
            Ok(grant) => held.push(grant),
            Err(refusal) => return Err(format!("setup refused: {refusal}").into()),
        }
    }

    let grants: Arc<Vec<Grant>> = Arc::new(held);
    let (tally, elapsed) = measure(args.clients, phase, args.max_ops, |i| {
        let (client, grants) = (client_of(i), grants.clone());
        move || {
            let (client, grants) = (client.clone(), grants.clone());
            async move {
                let grant = &grants[i];
                client
                    .keep_alive(&grant.resource, &grant.holder, grant.token)
                    .await
            }
        }
    })
    .await;
    tally.report("keep-alive", elapsed);

    let ttl = Duration::from_millis(args.ttl_ms);
    let (tally, elapsed) = measure(args.clients, phase, args.max_ops, |i| {
        let client = client_of(i);
        let next = Arc::new(AtomicU64::new(0));
        move || {
            let client = client.clone();
            let n = next.fetch_add(1, Ordering::Relaxed);
            async move {
                let spec = LeaseSpec::new(
                    format!("bench/{run}/acquire/{i}/{n}"),
                    format!("bench-{i}"),
                    ttl,
                );
                client.acquire(&spec).await
            }
        }
    })
    .await;
    tally.report("acquire", elapsed);

    // Cleanup (untimed): give the keep-alive leases back.
    for (i, grant) in grants.iter().enumerate() {
        let _ = client_of(i)
            .release(&grant.resource, &grant.holder, grant.token)
            .await;
    }
    Ok(())
}

/// Runs `clients` loops of `op` until `phase` has passed or `max_ops` were started; returns
/// the merged tally and the measured time.
async fn measure<M, O, Fut, T>(
    clients: usize,
    phase: Duration,
    max_ops: u64,
    mut make_op: M,
) -> (Tally, Duration)
where
    M: FnMut(usize) -> O,
    O: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = Result<Result<T, Refusal>, ClientError>> + Send,
{
    let started = Instant::now();
    let end = started + phase;
    let budget = Arc::new(AtomicU64::new(max_ops));
    let tasks: Vec<_> = (0..clients)
        .map(|i| {
            let mut op = make_op(i);
            let budget = budget.clone();
            tokio::spawn(async move {
                let mut tally = Tally::default();
                while Instant::now() < end
                    && budget
                        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| b.checked_sub(1))
                        .is_ok()
                {
                    let t = Instant::now();
                    let outcome = op().await;
                    tally.record(t, outcome);
                }
                tally
            })
        })
        .collect();
    let mut total = Tally::default();
    for task in tasks {
        if let Ok(tally) = task.await {
            total.merge(tally);
        }
    }
    (total, started.elapsed())
}
