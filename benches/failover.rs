//! Leader failover benchmark (`cargo bench --bench failover`): a three-node `lan` cluster of
//! real processes; ten times, `kill -9` the leader and time until a write commits through the
//! survivors. Prints each sample, the median, and each node's RSS at idle.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::*;

const ROUNDS: usize = 10;

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[tokio::main]
async fn main() {
    let mut cluster = TestCluster::start(3, &[]).await;
    let endpoints = cluster.endpoints();
    acquire_any(
        &endpoints,
        "warmup",
        "bench",
        60_000,
        Duration::from_secs(5),
    )
    .await
    .expect("warm-up write");
    tokio::time::sleep(Duration::from_secs(2)).await;
    for node in cluster.running() {
        println!(
            "idle RSS node {}: {} KiB",
            node.spec.id,
            rss_kib(node.pid()).unwrap_or(0)
        );
    }

    let mut samples = Vec::new();
    for round in 0..ROUNDS {
        let leader = cluster.leader(Duration::from_secs(10)).await;
        cluster.kill(leader.node_id);
        let killed = Instant::now();
        let survivors = cluster.running_endpoints();
        acquire_any(
            &survivors,
            &format!("failover-{round}"),
            "bench",
            60_000,
            Duration::from_secs(10),
        )
        .await
        .expect("survivors commit");
        let elapsed = killed.elapsed();
        println!(
            "round {round}: killed node {} -> write committed after {:.0} ms",
            leader.node_id,
            elapsed.as_secs_f64() * 1e3
        );
        samples.push(elapsed);
        cluster.restart(leader.node_id).await;
        converged(&cluster, Duration::from_secs(20)).await;
    }
    samples.sort();
    let median = (samples[ROUNDS / 2 - 1] + samples[ROUNDS / 2]) / 2;
    println!(
        "leader failover (kill -9 -> next committed write), {ROUNDS} kills: median {:.0} ms, min {:.0} ms, max {:.0} ms",
        median.as_secs_f64() * 1e3,
        samples[0].as_secs_f64() * 1e3,
        samples[ROUNDS - 1].as_secs_f64() * 1e3
    );
}
