//! `arbiter-jepsen vs-etcd` (feature `etcd`): arbiter and etcd side by side on one machine,
//! with the same client count, the same payload and the same client runtime.
//!
//! Each repetition starts a fresh three-node cluster of each system on loopback and measures,
//! through one client connection to the leader:
//!
//! | phase | arbiter | etcd |
//! |---|---|---|
//! | keep-alive | `LeaseService/KeepAliveStream`: one stream per client connection, renewals by request id, each confirmed by a quorum round (`ArbiterClient::keep_alive_streamed`) | `Lease/LeaseKeepAlive`, a stream per client (leader-local) |
//! | grant | `LeaseService/Acquire` of a fresh resource | `Lease/LeaseGrant` |
//! | keep-alive (unary) | `LeaseService/KeepAlive`, one call per renewal | — |
//! | guarded write | `LeaseService/ValidateToken`: is the writer's token current (quorum read) | `KV/Txn`: if the lock key's `mod_revision` is the writer's, put the value |
//!
//! Systems alternate within a repetition and swap order between repetitions, so a drift of
//! the machine hits both. Leader failover is measured on fresh clusters: `kill -9` of the
//! leader, then the time until a write succeeds at a survivor.
//!
//! Both clusters run as shipped: arbiter with TLS and bearer tokens on every call (its only
//! mode off loopback), etcd with neither (TLS costs arbiter 6-8 % here), and each with its
//! own default timing (arbiter `lan`: 50 ms heartbeats, 120-200 ms election timeout; etcd:
//! 100 ms, 1,000 ms).
//!
//! Invariant: every phase is bounded in time and operations, every child is killed on drop,
//! and each cluster's directory is removed after its run.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arbiter_client::{ArbiterClient, ClientOptions, LeaseSpec};
use etcd_client::{Client as EtcdClient, Compare, CompareOp, PutOptions, Txn, TxnOp};
use tokio::process::{Child, Command};
use tokio::time::Instant;

use crate::bench_cluster::{ArbiterCluster, START_TIMEOUT};
use crate::closed_loop::{self, median, run_tag, Load, Throughput};
use crate::cluster::TimingOverride;

/// One failover measurement gives up after this long.
const FAILOVER_TIMEOUT: Duration = Duration::from_secs(30);
/// A write attempt during failover counts as failed after this long.
const FAILOVER_ATTEMPT: Duration = Duration::from_millis(200);
/// TTL of every lease the phases take.
const LEASE_TTL: Duration = Duration::from_secs(30);

pub struct VsConfig {
    /// The `arbiter` binary.
    pub binary: PathBuf,
    /// The `etcd` binary.
    pub etcd: PathBuf,
    /// Scratch directory for the clusters' data.
    pub dir: PathBuf,
    pub reps: usize,
    pub phase: Duration,
    pub clients: usize,
    /// Upper bound on the operations of one phase.
    pub max_ops: u64,
    /// Bytes of each guarded write's value (the seed's 1 KB write).
    pub value_bytes: usize,
    /// Leader kills per system.
    pub failovers: usize,
    /// The systems to run (both for the ratio table; one to profile it alone).
    pub systems: Vec<System>,
    /// arbiter's Raft timing, when not its `lan` profile's.
    pub timing: TimingOverride,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum System {
    Arbiter,
    Etcd,
}

impl System {
    pub fn name(self) -> &'static str {
        match self {
            System::Arbiter => "arbiter",
            System::Etcd => "etcd",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    KeepAlive,
    /// arbiter only: the unary `KeepAlive` call, one HTTP/2 stream per renewal.
    KeepAliveUnary,
    Grant,
    GuardedWrite,
}

impl Phase {
    pub const ALL: [Phase; 4] = [
        Phase::KeepAlive,
        Phase::KeepAliveUnary,
        Phase::Grant,
        Phase::GuardedWrite,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Phase::KeepAlive => "keep-alive",
            Phase::KeepAliveUnary => "keep-alive (unary)",
            Phase::Grant => "grant (acquire)",
            Phase::GuardedWrite => "guarded write",
        }
    }
}

/// What one phase of one repetition measured.
#[derive(Clone, Debug)]
pub struct PhaseFigures {
    pub system: System,
    pub phase: Phase,
    pub measured: Throughput,
}

/// Everything the run measured.
#[derive(Default)]
pub struct Results {
    pub phases: Vec<PhaseFigures>,
    /// Leader kill → first successful write, per system.
    pub failovers: Vec<(System, Duration)>,
}

pub async fn run(config: &VsConfig) -> anyhow::Result<Results> {
    let mut results = Results::default();
    for rep in 1..=config.reps {
        let order = if rep % 2 == 1 {
            [System::Arbiter, System::Etcd]
        } else {
            [System::Etcd, System::Arbiter]
        };
        for system in order.into_iter().filter(|s| config.systems.contains(s)) {
            let dir = config.dir.join(format!("rep-{rep}-{}", system.name()));
            let figures = match system {
                System::Arbiter => {
                    let cluster =
                        ArbiterCluster::start(&config.binary, &dir, &arbiter_args(config, &dir)?)
                            .await?;
                    let figures = arbiter_phases(config, &cluster).await;
                    drop(cluster);
                    figures?
                }
                System::Etcd => {
                    let cluster = EtcdCluster::start(&config.etcd, &dir).await?;
                    let figures = etcd_phases(config, &cluster).await;
                    drop(cluster);
                    figures?
                }
            };
            for f in &figures {
                eprintln!(
                    "rep {rep}/{} {:<8} {:<16} {:>9.0} ops/s  p50 {:>6.2} ms  p99 {:>6.2} ms  \
                     ({} ok, {} failed)",
                    config.reps,
                    f.system.name(),
                    f.phase.name(),
                    f.measured.per_sec,
                    f.measured.p50_ms,
                    f.measured.p99_ms,
                    f.measured.ok,
                    f.measured.failed
                );
            }
            results.phases.extend(figures);
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
    for run in 1..=config.failovers {
        for system in config.systems.iter().copied() {
            let dir = config.dir.join(format!("failover-{run}-{}", system.name()));
            let took = match system {
                System::Arbiter => {
                    let mut cluster =
                        ArbiterCluster::start(&config.binary, &dir, &arbiter_args(config, &dir)?)
                            .await?;
                    arbiter_failover(&mut cluster).await?
                }
                System::Etcd => {
                    let mut cluster = EtcdCluster::start(&config.etcd, &dir).await?;
                    etcd_failover(&mut cluster).await?
                }
            };
            eprintln!(
                "failover {run}/{} {:<8} {:>7.0} ms from kill -9 of the leader to a write",
                config.failovers,
                system.name(),
                took.as_secs_f64() * 1e3
            );
            results.failovers.push((system, took));
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
    Ok(results)
}

impl Results {
    /// The ratio table, as Markdown: medians over repetitions, arbiter ÷ etcd for throughput
    /// and etcd ÷ arbiter for times (above 1 = arbiter better).
    pub fn table(&self) -> String {
        let mut out =
            String::from("| measure | arbiter | etcd | arbiter vs etcd |\n|---|---|---|---|\n");
        let pick = |system: System, phase: Phase, f: fn(&PhaseFigures) -> f64| {
            let mut values: Vec<f64> = self
                .phases
                .iter()
                .filter(|p| p.system == system && p.phase == phase)
                .map(f)
                .collect();
            median(&mut values)
        };
        let mut row = |measure: String, a: f64, e: f64, decimals: usize, ratio: f64| {
            out += &format!(
                "| {measure} | {} | {} | {} |\n",
                cell(a, decimals, ""),
                cell(e, decimals, ""),
                cell(ratio, 2, "×")
            );
        };
        for phase in Phase::ALL {
            let per_sec = |p: &PhaseFigures| p.measured.per_sec;
            let (a, e) = (
                pick(System::Arbiter, phase, per_sec),
                pick(System::Etcd, phase, per_sec),
            );
            row(format!("{} ops/s", phase.name()), a, e, 0, a / e);
            for (label, f) in [
                (
                    "p50",
                    (|p: &PhaseFigures| p.measured.p50_ms) as fn(&PhaseFigures) -> f64,
                ),
                ("p99", |p: &PhaseFigures| p.measured.p99_ms),
            ] {
                let (a, e) = (
                    pick(System::Arbiter, phase, f),
                    pick(System::Etcd, phase, f),
                );
                row(format!("{} {label} ms", phase.name()), a, e, 2, e / a);
            }
        }
        if !self.failovers.is_empty() {
            let failover = |system: System| {
                let mut values: Vec<f64> = self
                    .failovers
                    .iter()
                    .filter(|(s, _)| *s == system)
                    .map(|(_, d)| d.as_secs_f64() * 1e3)
                    .collect();
                median(&mut values)
            };
            let (a, e) = (failover(System::Arbiter), failover(System::Etcd));
            row("leader failover after kill -9, ms".into(), a, e, 0, e / a);
        }
        out
    }
}

/// A table cell: `value` with `decimals` and `unit`, or a dash when there is no figure.
fn cell(value: f64, decimals: usize, unit: &str) -> String {
    if value.is_finite() {
        format!("{value:.decimals$}{unit}")
    } else {
        "–".into()
    }
}

// ---------------------------------------------------------------------------------------------
// Measurement

/// Runs `config.clients` loops of `op` for `config.phase` (at most `config.max_ops`
/// operations in all).
async fn measure<M, O, Fut>(
    config: &VsConfig,
    system: System,
    which: Phase,
    make_op: M,
) -> PhaseFigures
where
    M: FnMut(usize) -> O,
    O: FnMut() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let load = Load {
        clients: config.clients,
        duration: config.phase,
        max_ops: config.max_ops,
    };
    PhaseFigures {
        system,
        phase: which,
        measured: closed_loop::run(load, make_op).await,
    }
}

// ---------------------------------------------------------------------------------------------
// arbiter

/// `arbiter serve` flags for a run's nodes: a config file with the timing, when not the
/// profile's.
fn arbiter_args(config: &VsConfig, dir: &Path) -> anyhow::Result<Vec<String>> {
    let timing = config.timing.toml();
    if timing.is_empty() {
        return Ok(Vec::new());
    }
    std::fs::create_dir_all(dir)?;
    let file = dir.join("timing.toml");
    std::fs::write(&file, timing)?;
    Ok(vec!["--config".into(), file.display().to_string()])
}

async fn arbiter_phases(
    config: &VsConfig,
    cluster: &ArbiterCluster,
) -> anyhow::Result<Vec<PhaseFigures>> {
    let leader = cluster.leader().await?;
    // One connection to the leader, shared by every client, as a proxy process would.
    let client = ArbiterClient::connect(
        vec![cluster.nodes[leader].ready.grpc_addr.clone()],
        cluster.options.clone(),
    )
    .await?;
    let tag = run_tag();
    let mut held = Vec::new();
    for i in 0..config.clients {
        let spec = LeaseSpec::new(format!("vs/{tag}/held/{i}"), format!("c{i}"), LEASE_TTL);
        match client.acquire(&spec).await? {
            Ok(grant) => held.push(grant),
            Err(refusal) => anyhow::bail!("setup refused: {refusal}"),
        }
    }
    let held = Arc::new(held);
    let mut figures = Vec::new();

    for (phase, streamed) in [(Phase::KeepAlive, true), (Phase::KeepAliveUnary, false)] {
        figures.push(
            measure(config, System::Arbiter, phase, |i| {
                let (client, held) = (client.clone(), held.clone());
                move || {
                    let (client, held) = (client.clone(), held.clone());
                    async move {
                        let grant = &held[i];
                        let renewal = if streamed {
                            client
                                .keep_alive_streamed(&grant.resource, &grant.holder, grant.token)
                                .await
                        } else {
                            client
                                .keep_alive(&grant.resource, &grant.holder, grant.token)
                                .await
                        };
                        matches!(renewal, Ok(Ok(_)))
                    }
                }
            })
            .await,
        );
    }

    let next = Arc::new(AtomicU64::new(0));
    figures.push(
        measure(config, System::Arbiter, Phase::Grant, |i| {
            let (client, next) = (client.clone(), next.clone());
            move || {
                let (client, next) = (client.clone(), next.clone());
                async move {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    let spec =
                        LeaseSpec::new(format!("vs/{tag}/grant/{n}"), format!("c{i}"), LEASE_TTL);
                    matches!(client.acquire(&spec).await, Ok(Ok(_)))
                }
            }
        })
        .await,
    );

    figures.push(
        measure(config, System::Arbiter, Phase::GuardedWrite, |i| {
            let (client, held) = (client.clone(), held.clone());
            move || {
                let (client, held) = (client.clone(), held.clone());
                async move {
                    let grant = &held[i];
                    matches!(
                        client.validate_token(&grant.resource, grant.token).await,
                        Ok(check) if check.valid
                    )
                }
            }
        })
        .await,
    );
    Ok(figures)
}

async fn arbiter_failover(cluster: &mut ArbiterCluster) -> anyhow::Result<Duration> {
    let leader = cluster.leader().await?;
    let survivors: Vec<String> = cluster
        .nodes
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != leader)
        .map(|(_, n)| n.ready.grpc_addr.clone())
        .collect();
    let options = ClientOptions {
        attempt_timeout: FAILOVER_ATTEMPT,
        call_deadline: FAILOVER_ATTEMPT,
        initial_backoff: Duration::from_millis(5),
        ..cluster.options.clone()
    };
    let client = ArbiterClient::connect(survivors, options).await?;
    let tag = run_tag();
    // Warm the connections: a write through the survivors (forwarded hints) works now.
    write_until_ok(|n| {
        let client = client.clone();
        async move { arbiter_write(&client, tag, n).await }
    })
    .await?;
    let killed = Instant::now();
    cluster.nodes[leader].kill();
    write_until_ok(|n| {
        let client = client.clone();
        async move { arbiter_write(&client, tag, n + 1_000_000).await }
    })
    .await?;
    Ok(killed.elapsed())
}

async fn arbiter_write(client: &ArbiterClient, tag: u128, n: u64) -> bool {
    let spec = LeaseSpec::new(format!("vs/{tag}/failover/{n}"), "writer", LEASE_TTL);
    matches!(client.acquire(&spec).await, Ok(Ok(_)))
}

/// Tries writes every 5 ms (each bounded by [`FAILOVER_ATTEMPT`]) until one succeeds.
async fn write_until_ok<F, Fut>(mut write: F) -> anyhow::Result<()>
where
    F: FnMut(u64) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + FAILOVER_TIMEOUT;
    let mut n = 0;
    loop {
        n += 1;
        if tokio::time::timeout(FAILOVER_ATTEMPT, write(n))
            .await
            .unwrap_or(false)
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            anyhow::bail!("no write succeeded within {FAILOVER_TIMEOUT:?}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// etcd

struct EtcdMember {
    name: String,
    client_url: String,
    child: Option<Child>,
}

struct EtcdCluster {
    members: Vec<EtcdMember>,
}

impl EtcdCluster {
    /// Three members on loopback: each on its own 127.a.b.n address (a random block per
    /// cluster), at etcd's usual ports 2379/2380. etcd binds its own sockets; a block someone
    /// else holds makes the start fail and say so.
    async fn start(binary: &Path, dir: &Path) -> anyhow::Result<EtcdCluster> {
        std::fs::create_dir_all(dir)?;
        let tag = run_tag();
        let block = (100 + (tag % 150) as u8, ((tag / 150) % 250) as u8);
        let ip = |n: u8| Ipv4Addr::new(127, block.0, block.1, n);
        let initial: Vec<String> = (1..=3)
            .map(|n| format!("e{n}=http://{}:2380", ip(n)))
            .collect();
        let mut members = Vec::new();
        for n in 1..=3u8 {
            let name = format!("e{n}");
            let client_url = format!("http://{}:2379", ip(n));
            let peer_url = format!("http://{}:2380", ip(n));
            let log = std::fs::File::create(dir.join(format!("{name}.log")))?;
            let child = Command::new(binary)
                .args(["--name", &name])
                .arg("--data-dir")
                .arg(dir.join(&name))
                .args(["--listen-client-urls", &client_url])
                .args(["--advertise-client-urls", &client_url])
                .args(["--listen-peer-urls", &peer_url])
                .args(["--initial-advertise-peer-urls", &peer_url])
                .args(["--initial-cluster", &initial.join(",")])
                .args(["--initial-cluster-state", "new"])
                .args(["--initial-cluster-token", &format!("vs-{tag}")])
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .kill_on_drop(true)
                .spawn()
                .map_err(|e| anyhow::anyhow!("cannot start {}: {e}", binary.display()))?;
            members.push(EtcdMember {
                name,
                client_url,
                child: Some(child),
            });
        }
        let mut cluster = EtcdCluster { members };
        let deadline = Instant::now() + START_TIMEOUT;
        while cluster.leader().await.is_none() {
            for m in &mut cluster.members {
                if let Some(Some(status)) = m.child.as_mut().map(|c| c.try_wait().ok().flatten()) {
                    anyhow::bail!(
                        "etcd member {} exited at start ({status}); see {}",
                        m.name,
                        dir.join(format!("{}.log", m.name)).display()
                    );
                }
            }
            if Instant::now() > deadline {
                anyhow::bail!("etcd elected no leader within {START_TIMEOUT:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(cluster)
    }

    /// The index of the member that reports itself leader, asked directly.
    async fn leader(&self) -> Option<usize> {
        for (i, m) in self.members.iter().enumerate() {
            if m.child.is_none() {
                continue;
            }
            let Ok(Ok(mut client)) = tokio::time::timeout(
                Duration::from_millis(500),
                EtcdClient::connect([m.client_url.as_str()], None),
            )
            .await
            else {
                continue;
            };
            if let Ok(Ok(status)) =
                tokio::time::timeout(Duration::from_millis(500), client.status()).await
            {
                let own = status.header().map(|h| h.member_id());
                if status.leader() != 0 && own == Some(status.leader()) {
                    return Some(i);
                }
            }
        }
        None
    }

    async fn client(&self, members: &[usize]) -> anyhow::Result<EtcdClient> {
        let urls: Vec<&str> = members
            .iter()
            .map(|&i| self.members[i].client_url.as_str())
            .collect();
        Ok(EtcdClient::connect(urls, None).await?)
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for m in &mut self.members {
            if let Some(child) = m.child.as_mut() {
                let _ = child.start_kill();
            }
        }
    }
}

async fn etcd_phases(
    config: &VsConfig,
    cluster: &EtcdCluster,
) -> anyhow::Result<Vec<PhaseFigures>> {
    let leader = cluster
        .leader()
        .await
        .ok_or_else(|| anyhow::anyhow!("etcd has no leader"))?;
    let client = cluster.client(&[leader]).await?;
    let ttl = LEASE_TTL.as_secs() as i64;
    let tag = run_tag();
    let value = vec![b'x'; config.value_bytes];
    let mut figures = Vec::new();

    // Setup (untimed): a lease per client, and a lock key under it whose revision guards the
    // client's writes.
    let mut held = Vec::new();
    for i in 0..config.clients {
        let mut c = client.clone();
        let lease = c.lease_grant(ttl, None).await?.id();
        let lock = format!("vs/{tag}/lock/{i}");
        let put = c
            .put(
                lock.clone(),
                format!("c{i}"),
                Some(PutOptions::new().with_lease(lease)),
            )
            .await?;
        let revision = put.header().map_or(0, |h| h.revision());
        held.push((lease, lock, revision));
    }
    let held = Arc::new(held);

    let mut keepers = Vec::new();
    for (lease, _, _) in held.iter() {
        let (keeper, stream) = client.clone().lease_keep_alive(*lease).await?;
        keepers.push(Arc::new(tokio::sync::Mutex::new((keeper, stream))));
    }
    let keepers = Arc::new(keepers);
    figures.push(
        measure(config, System::Etcd, Phase::KeepAlive, |i| {
            let keepers = keepers.clone();
            move || {
                let keepers = keepers.clone();
                async move {
                    let mut guard = keepers[i].lock().await;
                    let (keeper, stream) = &mut *guard;
                    if keeper.keep_alive().await.is_err() {
                        return false;
                    }
                    matches!(stream.message().await, Ok(Some(r)) if r.ttl() > 0)
                }
            }
        })
        .await,
    );
    drop(keepers);

    figures.push(
        measure(config, System::Etcd, Phase::Grant, |_| {
            let client = client.clone();
            move || {
                let mut client = client.clone();
                async move { client.lease_grant(ttl, None).await.is_ok() }
            }
        })
        .await,
    );

    figures.push(
        measure(config, System::Etcd, Phase::GuardedWrite, |i| {
            let (client, held, value) = (client.clone(), held.clone(), value.clone());
            move || {
                let (mut client, held, value) = (client.clone(), held.clone(), value.clone());
                async move {
                    let (_, lock, revision) = &held[i];
                    let txn = Txn::new()
                        .when([Compare::mod_revision(
                            lock.as_str(),
                            CompareOp::Equal,
                            *revision,
                        )])
                        .and_then([TxnOp::put(format!("vs/{tag}/data/{i}"), value, None)]);
                    matches!(client.txn(txn).await, Ok(r) if r.succeeded())
                }
            }
        })
        .await,
    );
    Ok(figures)
}

async fn etcd_failover(cluster: &mut EtcdCluster) -> anyhow::Result<Duration> {
    let leader = cluster
        .leader()
        .await
        .ok_or_else(|| anyhow::anyhow!("etcd has no leader"))?;
    let survivors: Vec<usize> = (0..cluster.members.len())
        .filter(|&i| i != leader)
        .collect();
    // One client per survivor, tried in turn: the first write that either accepts counts.
    let mut clients = Vec::new();
    for &i in &survivors {
        clients.push(cluster.client(&[i]).await?);
    }
    let tag = run_tag();
    let write = |n: u64| {
        let mut client = clients[n as usize % clients.len()].clone();
        async move {
            client
                .put(format!("vs/{tag}/failover/{n}"), "x", None)
                .await
                .is_ok()
        }
    };
    write_until_ok(write).await?;
    let killed = Instant::now();
    if let Some(mut child) = cluster.members[leader].child.take() {
        child.start_kill()?;
        child.wait().await?;
    }
    write_until_ok(write).await?;
    Ok(killed.elapsed())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_gives_ratios_with_arbiter_ahead_above_one_and_dashes_for_no_figure() {
        let figures = |system, phase, per_sec, p50_ms| PhaseFigures {
            system,
            phase,
            measured: Throughput {
                ok: 1,
                failed: 0,
                per_sec,
                p50_ms,
                p99_ms: p50_ms * 2.0,
            },
        };
        let results = Results {
            phases: vec![
                figures(System::Arbiter, Phase::KeepAlive, 300.0, 1.0),
                figures(System::Etcd, Phase::KeepAlive, 200.0, 2.0),
                figures(System::Arbiter, Phase::KeepAliveUnary, 100.0, 4.0),
            ],
            failovers: vec![
                (System::Arbiter, Duration::from_millis(400)),
                (System::Etcd, Duration::from_millis(1_200)),
            ],
        };
        let table = results.table();
        assert!(
            table.contains("| keep-alive ops/s | 300 | 200 | 1.50× |"),
            "{table}"
        );
        assert!(
            table.contains("| keep-alive p50 ms | 1.00 | 2.00 | 2.00× |"),
            "{table}"
        );
        assert!(
            table.contains("| keep-alive (unary) ops/s | 100 | – | – |"),
            "{table}"
        );
        assert!(
            table.contains("| leader failover after kill -9, ms | 400 | 1200 | 3.00× |"),
            "{table}"
        );
    }
}
