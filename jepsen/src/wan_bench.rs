//! `arbiter-jepsen wan-bench`: the `wan` profile behind the link proxies' planning triangle
//! (us-east-1↔us-west-2 70 ms, us-east-1↔eu-central-1 90 ms, us-west-2↔eu-central-1 150 ms
//! RTT), with the leader placed in us-east-1 as production would place it.
//!
//! It measures, on one cluster:
//! 1. **Commit latency at the leader**: one client next to the us-east-1 leader acquires fresh
//!    leases one after another. A commit needs the leader's fsync and one round trip to the
//!    nearest follower (whose fsync is on the way), so the floor is 70 ms plus an fsync of
//!    this disk, measured here too.
//! 2. **Throughput**: many clients next to the leader, spread over a few connections as several
//!    regional proxies would be, acquiring fresh leases (log entries, group-committed), then
//!    renewing held ones over the keep-alive stream (quorum rounds, off the log). A connection
//!    carries at most 1,024 calls at once, so at ~200 ms a call one connection tops out near
//!    5,000 acquires/s whatever the client count.
//! 3. **Leader failover after `kill -9`**: the us-east-1 leader is killed; the clock runs until
//!    a write succeeds at a survivor. The node then restarts, placement hands leadership back
//!    to us-east-1, and the next round begins.
//!
//! Invariant: every wait has a deadline, every loop a bound; the cluster is stopped and its
//! directory left to the caller to remove.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arbiter::config::Profile;
use arbiter_client::{ArbiterClient, ClientOptions, LeaseSpec};
use arbiter_core::NodeId;
use tokio::time::Instant;

use crate::closed_loop::{self, median, percentile_ms, run_tag, Load, Throughput};
use crate::cluster::{Cluster, ClusterConfig, TimingOverride};
use crate::nemesis::Effects;
use crate::network::DelayTable;

/// The node in us-east-1 (see `network::region_of`).
const EAST: NodeId = 1;
/// The planning RTT from us-east-1 to its nearest follower (us-west-2).
const NEAREST_RTT: Duration = Duration::from_millis(70);
const LEASE_TTL: Duration = Duration::from_secs(60);
/// How long placement may take to hand leadership back to us-east-1.
const PLACED_TIMEOUT: Duration = Duration::from_secs(90);
/// One failover measurement gives up after this long.
const FAILOVER_TIMEOUT: Duration = Duration::from_secs(60);
/// A write attempt during failover counts as failed after this long (above a WAN commit with
/// a forward hop: 150 ms RTT + fsync, well below the election timeout).
const FAILOVER_ATTEMPT: Duration = Duration::from_millis(1_000);

/// Writers at the leader while it is killed, and how many of their writes succeed first.
const LOAD_CLIENTS: usize = 64;
const KILL_AFTER_OPS: u64 = 500;

/// Leadership may move back to us-east-1 one second after the node returns, instead of the
/// default cooldown, so rounds do not wait on it.
const PLACEMENT_CONFIG: &str = "[raft]\nleader_move_cooldown_ms = 1000\n";

pub struct WanConfig {
    pub binary: PathBuf,
    pub dir: PathBuf,
    /// Sequential commits for the latency figure.
    pub commits: usize,
    /// Concurrent clients of the throughput phases.
    pub clients: usize,
    /// Connections to the leader the clients are spread over (client i uses i mod this).
    pub connections: usize,
    pub phase: Duration,
    pub max_ops: u64,
    /// Leader kills.
    pub failovers: usize,
    pub timing: TimingOverride,
}

/// One leader kill.
#[derive(Clone, Debug)]
pub struct Failover {
    /// `kill -9` → the first write that succeeds at a survivor.
    pub elapsed: Duration,
    /// `kill -9` → a survivor calls itself leader (polled every 20 ms).
    pub elected: Option<Duration>,
    /// The leader afterwards, and how many terms the election took (1 = one vote round).
    pub new_leader: Option<NodeId>,
    pub terms: u64,
}

#[derive(Clone, Debug, Default)]
pub struct WanFigures {
    pub fsync_p50_ms: f64,
    pub commit_p50_ms: f64,
    pub commit_p99_ms: f64,
    pub acquire: Throughput,
    pub keep_alive: Throughput,
    pub failovers: Vec<Failover>,
}

impl WanConfig {
    fn load(&self) -> Load {
        Load {
            clients: self.clients,
            duration: self.phase,
            max_ops: self.max_ops,
        }
    }
}

impl WanFigures {
    /// The physical floor of a commit at a us-east-1 leader: the nearest follower's round trip
    /// plus one fsync.
    pub fn floor_ms(&self) -> f64 {
        NEAREST_RTT.as_secs_f64() * 1e3 + self.fsync_p50_ms
    }

    pub fn failover_median_s(&self) -> f64 {
        let mut secs: Vec<f64> = self
            .failovers
            .iter()
            .map(|f| f.elapsed.as_secs_f64())
            .collect();
        median(&mut secs)
    }

    /// The summary printed at the end of a run.
    pub fn table(&self, clients: usize, connections: usize) -> String {
        let mut out = String::new();
        let line = |out: &mut String, what: &str, figure: String, target: &str| {
            out.push_str(&format!("| {what} | {figure} | {target} |\n"));
        };
        out.push_str("| figure | measured | target |\n|---|---|---|\n");
        line(
            &mut out,
            "fsync of this disk (p50)",
            format!("{:.1} ms", self.fsync_p50_ms),
            "",
        );
        line(
            &mut out,
            "commit at the us-east-1 leader (p50 / p99)",
            format!(
                "{:.1} / {:.1} ms = {:.2}× the floor ({:.1} ms)",
                self.commit_p50_ms,
                self.commit_p99_ms,
                self.commit_p50_ms / self.floor_ms(),
                self.floor_ms()
            ),
            "≤ 1.2× the floor",
        );
        for (what, load) in [
            ("lease acquire", &self.acquire),
            ("keep-alive (stream)", &self.keep_alive),
        ] {
            line(
                &mut out,
                &format!("{what}, {clients} clients over {connections} connections"),
                format!(
                    "{:.0}/s (p50 {:.1} ms, p99 {:.1} ms, {} failed)",
                    load.per_sec, load.p50_ms, load.p99_ms, load.failed
                ),
                "≥ 5,000/s",
            );
        }
        let samples: Vec<String> = self
            .failovers
            .iter()
            .map(|f| format!("{:.2}", f.elapsed.as_secs_f64()))
            .collect();
        line(
            &mut out,
            &format!(
                "leader failover after kill -9 ({} kills)",
                self.failovers.len()
            ),
            format!(
                "median {:.2} s (each: {} s)",
                self.failover_median_s(),
                samples.join(", ")
            ),
            "≤ 3 s median",
        );
        out
    }
}

pub async fn run(config: &WanConfig) -> anyhow::Result<WanFigures> {
    std::fs::create_dir_all(&config.dir)?;
    let placement = config.dir.join("node.toml");
    std::fs::write(&placement, config.timing.toml() + PLACEMENT_CONFIG)?;
    let mut cluster = Cluster::start(&ClusterConfig {
        binary: config.binary.clone(),
        nodes: 3,
        root: config.dir.join("nodes"),
        profile: Profile::Wan,
        delays: DelayTable::wan_triangle(),
        extra_args: vec![
            "--config".into(),
            placement.display().to_string(),
            "--preferred-leader".into(),
            "us-east-1".into(),
        ],
        lazyfs: false,
    })
    .await?;
    let figures = phases(config, &mut cluster).await;
    cluster.stop().await;
    figures
}

async fn phases(config: &WanConfig, cluster: &mut Cluster) -> anyhow::Result<WanFigures> {
    let mut figures = WanFigures {
        fsync_p50_ms: fsync_p50_ms(&config.dir).await?,
        ..WanFigures::default()
    };
    eprintln!("fsync p50 {:.2} ms", figures.fsync_p50_ms);
    wait_for_leader_in_east(cluster).await?;
    let options = cluster.credentials().client_options()?;
    let east = cluster.client_grpc_endpoints()[EAST as usize - 1].clone();
    let mut connections = Vec::with_capacity(config.connections);
    for _ in 0..config.connections.max(1) {
        connections.push(ArbiterClient::connect(vec![east.clone()], options.clone()).await?);
    }
    let client = connections[0].clone();
    let client_of = |i: usize| connections[i % connections.len()].clone();
    let tag = run_tag();

    let mut latencies = Vec::with_capacity(config.commits);
    for n in 0..config.commits {
        let spec = LeaseSpec::new(format!("wan/{tag}/seq/{n}"), "bench", LEASE_TTL);
        let t = Instant::now();
        match client.acquire(&spec).await? {
            Ok(_) => latencies.push(t.elapsed()),
            Err(refusal) => anyhow::bail!("a sequential acquire was refused: {refusal}"),
        }
    }
    latencies.sort_unstable();
    figures.commit_p50_ms = percentile_ms(&latencies, 50);
    figures.commit_p99_ms = percentile_ms(&latencies, 99);
    eprintln!(
        "commit at the leader: p50 {:.1} ms, p99 {:.1} ms over {} sequential acquires",
        figures.commit_p50_ms, figures.commit_p99_ms, config.commits
    );

    let next = Arc::new(AtomicU64::new(0));
    figures.acquire = closed_loop::run(config.load(), |i| {
        let (client, next) = (client_of(i), next.clone());
        move || {
            let (client, next) = (client.clone(), next.clone());
            async move {
                let n = next.fetch_add(1, Ordering::Relaxed);
                let spec = LeaseSpec::new(format!("wan/{tag}/acq/{n}"), format!("c{i}"), LEASE_TTL);
                matches!(client.acquire(&spec).await, Ok(Ok(_)))
            }
        }
    })
    .await;
    let batch = cluster
        .metrics(EAST)
        .await
        .map(|text| commands_per_entry(&text))
        .unwrap_or_default();
    eprintln!(
        "acquire: {:.0}/s, p50 {:.1} ms, p99 {:.1} ms, {} failed; {batch:.1} commands per log \
         entry since the start",
        figures.acquire.per_sec,
        figures.acquire.p50_ms,
        figures.acquire.p99_ms,
        figures.acquire.failed
    );

    let held: Vec<_> = futures::future::join_all((0..config.clients).map(|i| {
        let client = client_of(i);
        async move {
            let spec = LeaseSpec::new(format!("wan/{tag}/held/{i}"), format!("c{i}"), LEASE_TTL);
            client.acquire(&spec).await
        }
    }))
    .await
    .into_iter()
    .map(|r| match r {
        Ok(Ok(grant)) => Ok(grant),
        Ok(Err(refusal)) => Err(anyhow::anyhow!("setup refused: {refusal}")),
        Err(e) => Err(e.into()),
    })
    .collect::<anyhow::Result<_>>()?;
    let held = Arc::new(held);
    figures.keep_alive = closed_loop::run(config.load(), |i| {
        let (client, held) = (client_of(i), held.clone());
        move || {
            let (client, held) = (client.clone(), held.clone());
            async move {
                let grant = &held[i];
                let renewal = client
                    .keep_alive_streamed(&grant.resource, &grant.holder, grant.token)
                    .await;
                matches!(renewal, Ok(Ok(_)))
            }
        }
    })
    .await;
    eprintln!(
        "keep-alive: {:.0}/s, p50 {:.1} ms, p99 {:.1} ms, {} failed",
        figures.keep_alive.per_sec,
        figures.keep_alive.p50_ms,
        figures.keep_alive.p99_ms,
        figures.keep_alive.failed
    );
    drop((client, connections));

    for round in 1..=config.failovers {
        let failover = kill_the_leader(cluster, &options, tag, round).await?;
        eprintln!(
            "failover {round}/{}: {:.2} s (elected after {:.2} s), new leader {:?} after {} \
             term(s)",
            config.failovers,
            failover.elapsed.as_secs_f64(),
            failover.elected.map_or(f64::NAN, |d| d.as_secs_f64()),
            failover.new_leader,
            failover.terms
        );
        figures.failovers.push(failover);
        cluster
            .heal_all()
            .await
            .map_err(|failed| anyhow::anyhow!("cannot restart {failed:?}"))?;
        wait_for_leader_in_east(cluster).await?;
    }
    Ok(figures)
}

/// Kills the leader and times until a write succeeds at a survivor.
async fn kill_the_leader(
    cluster: &mut Cluster,
    options: &ClientOptions,
    tag: u128,
    round: usize,
) -> anyhow::Result<Failover> {
    let leader = cluster
        .leader()
        .await
        .ok_or_else(|| anyhow::anyhow!("no leader before kill {round}"))?;
    let term_before = term_of(cluster, leader).await.unwrap_or(0);
    let survivors: Vec<String> = cluster
        .client_grpc_endpoints()
        .into_iter()
        .enumerate()
        .filter(|(i, _)| *i as NodeId + 1 != leader)
        .map(|(_, e)| e)
        .collect();
    let client = ArbiterClient::connect(
        survivors,
        ClientOptions {
            attempt_timeout: FAILOVER_ATTEMPT,
            call_deadline: FAILOVER_ATTEMPT,
            initial_backoff: Duration::from_millis(5),
            ..options.clone()
        },
    )
    .await?;
    let write = |n: u64| {
        let client = client.clone();
        async move {
            let spec = LeaseSpec::new(format!("wan/{tag}/failover/{round}/{n}"), "w", LEASE_TTL);
            matches!(client.acquire(&spec).await, Ok(Ok(_)))
        }
    };
    // Warm the connections: a write through the survivors (forwarded or hinted) works now.
    write_until_ok(write, 0).await?;
    // Kill under load, as a region dies: entries are in flight, so the followers' logs may
    // differ when the leader goes, and the one that is behind cannot win the election.
    let load = BackgroundLoad::start(
        ArbiterClient::connect(
            vec![cluster.client_grpc_endpoints()[leader as usize - 1].clone()],
            options.clone(),
        )
        .await?,
        format!("wan/{tag}/load/{round}"),
    );
    load.wait_for(KILL_AFTER_OPS).await?;
    let killed = Instant::now();
    cluster.apply(&Effects {
        kill: [leader].into(),
        ..Effects::default()
    });
    let (written, elected) = tokio::join!(
        write_until_ok(write, 1_000_000),
        time_until_elected(cluster, leader, killed)
    );
    written?;
    let elapsed = killed.elapsed();
    load.stop().await;
    let new_leader = cluster.leader().await;
    let term_after = match new_leader {
        Some(id) => term_of(cluster, id).await.unwrap_or(0),
        None => 0,
    };
    Ok(Failover {
        elapsed,
        elected,
        new_leader,
        terms: term_after.saturating_sub(term_before),
    })
}

/// Writers at the leader while it is killed.
struct BackgroundLoad {
    ok: Arc<AtomicU64>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl BackgroundLoad {
    fn start(client: ArbiterClient, prefix: String) -> BackgroundLoad {
        let ok = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let deadline = Instant::now() + FAILOVER_TIMEOUT;
        let tasks = (0..LOAD_CLIENTS)
            .map(|i| {
                let (client, ok, stop, prefix) =
                    (client.clone(), ok.clone(), stop.clone(), prefix.clone());
                tokio::spawn(async move {
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                        n += 1;
                        let spec = LeaseSpec::new(format!("{prefix}/{i}/{n}"), "load", LEASE_TTL);
                        let attempt = tokio::time::timeout(FAILOVER_ATTEMPT, client.acquire(&spec));
                        if matches!(attempt.await, Ok(Ok(Ok(_)))) {
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        BackgroundLoad { ok, stop, tasks }
    }

    /// Waits until `ops` writes of the load have succeeded.
    async fn wait_for(&self, ops: u64) -> anyhow::Result<()> {
        let deadline = Instant::now() + FAILOVER_TIMEOUT;
        while self.ok.load(Ordering::Relaxed) < ops {
            if Instant::now() > deadline {
                anyhow::bail!("the background load did not reach {ops} writes");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(())
    }

    async fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        futures::future::join_all(self.tasks).await;
    }
}

/// Tries writes back to back (each bounded by [`FAILOVER_ATTEMPT`]) until one succeeds.
async fn write_until_ok<F, Fut>(write: F, first: u64) -> anyhow::Result<()>
where
    F: Fn(u64) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + FAILOVER_TIMEOUT;
    for n in first.. {
        if tokio::time::timeout(FAILOVER_ATTEMPT, write(n))
            .await
            .unwrap_or(false)
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    anyhow::bail!("no write succeeded within {FAILOVER_TIMEOUT:?}")
}

/// Time from `killed` until a node other than `old` calls itself leader.
async fn time_until_elected(cluster: &Cluster, old: NodeId, killed: Instant) -> Option<Duration> {
    while killed.elapsed() < FAILOVER_TIMEOUT {
        if matches!(cluster.leader().await, Some(id) if id != old) {
            return Some(killed.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

/// Waits until placement has put the leader in us-east-1.
async fn wait_for_leader_in_east(cluster: &Cluster) -> anyhow::Result<()> {
    let deadline = Instant::now() + PLACED_TIMEOUT;
    while cluster.leader().await != Some(EAST) {
        if Instant::now() > deadline {
            anyhow::bail!(
                "placement did not move the leader to us-east-1 within {PLACED_TIMEOUT:?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// Mean commands per committed log entry, from the proposer's histogram in `metrics`
/// (Prometheus text); 0 when absent.
fn commands_per_entry(metrics: &str) -> f64 {
    let value = |name: &str| {
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(name)?.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let entries = value("arbiter_proposer_batch_commands_count");
    if entries == 0.0 {
        0.0
    } else {
        value("arbiter_proposer_batch_commands_sum") / entries
    }
}

/// The term node `id` reports.
async fn term_of(cluster: &Cluster, id: NodeId) -> Option<u64> {
    cluster.status(id).await?["term"].as_u64()
}

/// Median of 50 appends of 1 KiB, each followed by `fdatasync`, in `dir` (the disk the nodes
/// use).
async fn fsync_p50_ms(dir: &Path) -> anyhow::Result<f64> {
    use std::io::Write;
    let path = dir.join("fsync-probe");
    let latencies = tokio::task::spawn_blocking(move || -> std::io::Result<Vec<Duration>> {
        let mut file = std::fs::File::create(&path)?;
        let block = [0u8; 1024];
        let mut latencies = Vec::new();
        for _ in 0..50 {
            let t = std::time::Instant::now();
            file.write_all(&block)?;
            file.sync_data()?;
            latencies.push(t.elapsed());
        }
        std::fs::remove_file(&path)?;
        latencies.sort_unstable();
        Ok(latencies)
    })
    .await??;
    Ok(percentile_ms(&latencies, 50))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_per_entry_from_the_proposer_histogram() {
        let text = "# HELP x\narbiter_proposer_batch_commands_sum 300.0\n\
                    arbiter_proposer_batch_commands_count 4\n\
                    arbiter_proposer_batch_commands_bucket{le=\"1.0\"} 0\n";
        assert_eq!(commands_per_entry(text), 75.0);
        assert_eq!(commands_per_entry(""), 0.0);
    }

    #[test]
    fn the_table_compares_the_commit_with_the_floor_and_gives_the_failover_median() {
        let figures = WanFigures {
            fsync_p50_ms: 5.0,
            commit_p50_ms: 90.0,
            commit_p99_ms: 120.0,
            failovers: [2.0, 1.0, 4.0]
                .into_iter()
                .map(|s| Failover {
                    elapsed: Duration::from_secs_f64(s),
                    elected: None,
                    new_leader: Some(2),
                    terms: 1,
                })
                .collect(),
            ..WanFigures::default()
        };
        assert_eq!(figures.floor_ms(), 75.0);
        assert_eq!(figures.failover_median_s(), 2.0);
        let table = figures.table(512, 4);
        assert!(table.contains("= 1.20× the floor (75.0 ms)"), "{table}");
        assert!(
            table.contains("median 2.00 s (each: 2.00, 1.00, 4.00 s)"),
            "{table}"
        );
    }
}
