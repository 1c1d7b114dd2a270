//! `arbiter-jepsen scale-bench`: what 100,000 live leases held by 1,000 holders cost, against
//! 1,000 leases, on a three-node `lan` cluster of real nodes with TLS and tokens.
//!
//! | phase | what it does | what it prints |
//! |---|---|---|
//! | keep-alive | 64 clients over one connection to the leader renew leases picked across the whole live set, first with 1,000 leases (one per holder), then with 100,000 (100 per holder) | ops/s, p50, p99 of each, and the ratio |
//! | leader change | holders renew every lease every TTL/3; `kill -9` of the leader; then one TTL and a third with the new leader | kill → keep-alives served again, the new leader's timer rebuild, leases expired (server) and renewals refused (holders), elections after it settled |
//! | snapshot | log entries until the leader builds a snapshot at 100k; a fresh learner added | build time and size; the learner's install time and its catch-up from `AddLearner` |
//! | RSS | `VmRSS` of each node | at idle, 1,000 and 100,000 leases |
//! | memory per lease | a fresh cluster, 1,000,000 leases acquired and kept renewed; then the leader change above at 1 M (TTL 60 s) | (RSS at 1 M − RSS idle) / 1 M, per node; the leader change's figures |
//!
//! Holders renew with [`ArbiterClient::keep_alive_streamed`], the SDK's cheapest renewal; a
//! renewal refused (not held, stale token) means the lease expired, an error that the call
//! could not be answered (no leader yet).
//!
//! Invariant: every wait has a deadline and every load loop a bound; the nodes are children of
//! [`ArbiterCluster`] and die with it; only loopback is used.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use arbiter_client::{ArbiterClient, ClientOptions, FencingToken, HolderId, LeaseSpec, ResourceId};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::bench_cluster::ArbiterCluster;
use crate::closed_loop::{self, run_tag, Load, Throughput};

/// Concurrent acquires while creating leases, and renewals in flight for the holders, over
/// four connections: well inside the 1,024 renewals a keep-alive stream answers at once.
const SETUP_CONCURRENCY: usize = 256;
/// Connections the holders' renewals and the setup's acquires each spread over.
const SETUP_CLIENTS: usize = 4;
/// Creating leases gives up below this many grants per second on average, or after this long
/// without a single grant.
const MIN_ACQUIRES_PER_SEC: usize = 1_000;
const ACQUIRE_STALL: Duration = Duration::from_secs(30);
/// One attempt of the failover probe.
const PROBE_ATTEMPT: Duration = Duration::from_millis(200);
/// Waits for a leader, a learner's catch-up or a snapshot give up after this.
const WAIT_TIMEOUT: Duration = Duration::from_secs(120);
/// Log entries the first cluster keeps behind a snapshot: few, so the learner of the snapshot
/// phase is sent the snapshot rather than the log from the start.
const KEEP_LOGS: u64 = 100;
/// Unmeasured keep-alives before each measured phase (connections, streams, allocator warm).
const WARM_UP: Duration = Duration::from_secs(2);
/// The TTL of the leases the memory phase holds: the longest the arbiter grants, so its
/// holders renew as rarely as allowed.
const MEMORY_TTL: Duration = Duration::from_secs(60);

pub struct ScaleConfig {
    /// The `arbiter` binary.
    pub binary: PathBuf,
    /// Scratch directory for the clusters' data.
    pub dir: PathBuf,
    /// Live leases of the scaled phases (100,000).
    pub leases: usize,
    /// Holders; the base phase holds one lease per holder (1,000).
    pub holders: usize,
    /// Length of each keep-alive phase.
    pub phase: Duration,
    /// Concurrent clients of the keep-alive phases.
    pub clients: usize,
    /// Upper bound on the operations of one keep-alive phase.
    pub max_ops: u64,
    /// TTL of the leases of the first cluster.
    pub ttl: Duration,
    /// `--snapshot-every` of the first cluster's nodes.
    pub snapshot_every: u64,
    /// Leases of the memory phase (1,000,000); 0 skips it.
    pub memory_leases: usize,
    /// Only the memory phase: no first cluster.
    pub memory_only: bool,
    /// Leave each cluster's directory (node logs) in place.
    pub keep: bool,
}

impl ScaleConfig {
    /// Checks that the phases fit the TTL: a keep-alive phase runs with the holders' renewals
    /// paused, so it must end well within the TTL of a lease renewed just before it.
    pub fn validate(&self) -> Result<(), String> {
        if self.memory_only && self.memory_leases == 0 {
            return Err("--memory-only needs --memory-leases above 0".into());
        }
        if self.holders == 0 || self.leases < self.holders {
            return Err(format!(
                "--leases ({}) must be at least --holders ({}), which must be positive",
                self.leases, self.holders
            ));
        }
        if self.phase * 2 > self.ttl {
            return Err(format!(
                "--seconds ({} s) must be at most half the lease TTL ({} s)",
                self.phase.as_secs(),
                self.ttl.as_secs()
            ));
        }
        if self.ttl > MEMORY_TTL || self.ttl < Duration::from_secs(3) {
            return Err(format!(
                "--ttl must be 3..=60 s, not {} s",
                self.ttl.as_secs()
            ));
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Figures and the summary

/// The leader change at scale.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FailoverFigures {
    /// `kill -9` of the leader → the first keep-alive a survivor answers.
    pub serving_after: Duration,
    /// The new leader's walk that gives every live lease a full TTL (after its first tick as
    /// leader, at most one heartbeat after the election).
    pub rebuild: Option<Duration>,
    /// How long the new leader was watched after it settled.
    pub window: Duration,
    /// `Expire` entries the survivors committed in the window.
    pub expired: u64,
    /// Renewals the holders had refused (the lease was gone) from the kill to the window's end.
    pub refused: u64,
    /// Renewals that got no answer (no leader yet) from the kill to the window's end.
    pub unanswered: u64,
    /// Live leases on the new leader at the window's end, and how many the holders hold.
    pub live_after: Option<u64>,
    pub held: usize,
    /// Term changes seen on the survivors after the new leader settled.
    pub elections_after: u64,
    pub term: u64,
}

/// Snapshot build and install at scale.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SnapshotFigures {
    pub build: Option<Duration>,
    /// Encoded size the leader reports, and `snapshot.bin` on its disk.
    pub bytes: Option<u64>,
    pub file_bytes: Option<u64>,
    /// The learner's own install (decode, write and fsync, swap in).
    pub install: Option<Duration>,
    /// `AddLearner` sent → the learner has applied the leader's applied index.
    pub caught_up: Duration,
    /// Whether the learner caught up by a snapshot (rather than the log alone).
    pub by_snapshot: bool,
}

/// RSS of each node at one moment.
#[derive(Clone, Debug, PartialEq)]
pub struct RssRow {
    pub label: String,
    pub bytes: Vec<Option<u64>>,
}

/// Memory per lease at the memory phase's scale.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MemoryFigures {
    /// Leases granted (all of them, or as many as were when acquiring stopped).
    pub leases: usize,
    /// Leases asked for.
    pub target: usize,
    /// Why acquiring stopped short, if it did.
    pub stopped: Option<String>,
    /// Live leases on the leader when RSS was read.
    pub live: Option<u64>,
    pub idle: Vec<Option<u64>>,
    pub loaded: Vec<Option<u64>>,
    /// Which column is the leader.
    pub leader: usize,
    /// Renewals refused while the leases were acquired and held.
    pub refused: u64,
    /// `Expire` entries the leader committed, and its term (1 or 2: no election after the
    /// first), read before the leader change.
    pub expired: Option<u64>,
    pub term: Option<u64>,
    pub took: Duration,
    /// `kill -9` of the leader with every lease kept renewed, as in the scaled phases.
    pub failover: Option<FailoverFigures>,
}

impl MemoryFigures {
    /// (loaded − idle) / leases for each node; `None` without both readings.
    pub fn bytes_per_lease(&self) -> Vec<Option<f64>> {
        self.idle
            .iter()
            .zip(&self.loaded)
            .map(|(idle, loaded)| match (idle, loaded) {
                (Some(i), Some(l)) if self.leases > 0 => {
                    Some((*l as f64 - *i as f64) / self.leases as f64)
                }
                _ => None,
            })
            .collect()
    }
}

/// Everything the run measured, and what went wrong on the way.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    pub leases: usize,
    pub holders: usize,
    pub clients: usize,
    pub phase: Duration,
    pub ttl: Duration,
    pub base: Option<Throughput>,
    pub scaled: Option<Throughput>,
    pub failover: Option<FailoverFigures>,
    pub snapshot: Option<SnapshotFigures>,
    pub rss: Vec<RssRow>,
    pub memory: Option<MemoryFigures>,
    /// Phases that could not be carried out, and why.
    pub errors: Vec<String>,
}

/// The bar: keep-alive throughput at 100k within 20 % of the 1k figure.
pub const MIN_RATIO: f64 = 0.8;

/// The rows of a leader change's figures.
fn failover_rows(f: &FailoverFigures, ttl: Duration, row: &mut impl FnMut(String, String)) {
    row(
        format!(
            "leader kill -9 at {} leases: keep-alives served again after",
            count(f.held)
        ),
        ms(f.serving_after),
    );
    row(
        "new leader: every live lease given a full TTL (timer rebuild, in steps)".into(),
        f.rebuild.map_or("–".into(), |d| {
            format!(
                "{:.1} ms (+ up to one 50 ms tick after election)",
                d.as_secs_f64() * 1e3
            )
        }),
    );
    row(
        format!(
            "leases expired in {:.0} s after the new leader settled (TTL {} s)",
            f.window.as_secs_f64(),
            ttl.as_secs()
        ),
        format!(
            "{} (server `Expire`s); renewals refused {}, unanswered {}; live {} of {}",
            f.expired,
            f.refused,
            f.unanswered,
            f.live_after.map_or("–".into(), |l| count(l as usize)),
            count(f.held)
        ),
    );
    row(
        "elections after the new leader settled".into(),
        format!("{} (term {} throughout when 0)", f.elections_after, f.term),
    );
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1e3)
}

fn mib(bytes: Option<u64>) -> String {
    bytes.map_or("–".into(), |b| format!("{:.1}", b as f64 / 1048576.0))
}

fn count(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

impl Summary {
    /// The summary as a Markdown table, every figure with what it means.
    pub fn table(&self) -> String {
        let mut out = String::from("| measure | value |\n|---|---|\n");
        let mut row = |measure: String, value: String| {
            out += &format!("| {measure} | {value} |\n");
        };
        let throughput = |t: &Throughput| {
            format!(
                "{:.0} ops/s, p50 {:.2} ms, p99 {:.2} ms ({} ok, {} failed)",
                t.per_sec, t.p50_ms, t.p99_ms, t.ok, t.failed
            )
        };
        if let Some(t) = &self.base {
            row(
                format!(
                    "keep-alive, {} leases ({} holders × 1)",
                    count(self.holders),
                    count(self.holders)
                ),
                throughput(t),
            );
        }
        if let Some(t) = &self.scaled {
            row(
                format!(
                    "keep-alive, {} leases ({} holders × {})",
                    count(self.leases),
                    count(self.holders),
                    count(self.leases / self.holders.max(1))
                ),
                throughput(t),
            );
        }
        if let (Some(base), Some(scaled)) = (&self.base, &self.scaled) {
            let ratio = scaled.per_sec / base.per_sec;
            row(
                format!(
                    "keep-alive ratio {} / {} leases",
                    count(self.leases),
                    count(self.holders)
                ),
                format!(
                    "{ratio:.2}× ({} the ≥ {MIN_RATIO:.2}× bar); p99 {:.2}×",
                    if ratio >= MIN_RATIO {
                        "meets"
                    } else {
                        "MISSES"
                    },
                    scaled.p99_ms / base.p99_ms
                ),
            );
        }
        if let Some(f) = &self.failover {
            failover_rows(f, self.ttl, &mut row);
        }
        if let Some(s) = &self.snapshot {
            row(
                format!("snapshot build at {} leases (leader)", count(self.leases)),
                format!(
                    "{}; {} MiB encoded, snapshot.bin {} MiB",
                    s.build.map_or("–".into(), ms),
                    mib(s.bytes),
                    mib(s.file_bytes)
                ),
            );
            row(
                "snapshot install on a fresh learner".into(),
                format!(
                    "install {}; AddLearner → caught up {}{}",
                    s.install.map_or("–".into(), ms),
                    ms(s.caught_up),
                    if s.by_snapshot {
                        ""
                    } else {
                        " (from the log: no snapshot was sent)"
                    }
                ),
            );
        }
        for r in &self.rss {
            row(
                format!("RSS MiB per node (n1, n2, n3), {}", r.label),
                r.bytes
                    .iter()
                    .map(|b| mib(*b))
                    .collect::<Vec<_>>()
                    .join(", "),
            );
        }
        if let Some(m) = &self.memory {
            let per = m.bytes_per_lease();
            let cells: Vec<String> = per
                .iter()
                .enumerate()
                .map(|(i, b)| {
                    let b = b.map_or("–".into(), |b| format!("{b:.0} B"));
                    if i == m.leader {
                        format!("n{} {b} (leader)", i + 1)
                    } else {
                        format!("n{} {b}", i + 1)
                    }
                })
                .collect();
            row(
                format!(
                    "memory per lease at {} leases (RSS delta from idle)",
                    count(m.leases)
                ),
                cells.join(", "),
            );
            row(
                format!("RSS MiB idle → {} leases (n1, n2, n3)", count(m.leases)),
                m.idle
                    .iter()
                    .zip(&m.loaded)
                    .map(|(i, l)| format!("{} → {}", mib(*i), mib(*l)))
                    .collect::<Vec<_>>()
                    .join(", "),
            );
            row(
                format!("{} leases: acquired and held", count(m.leases)),
                format!(
                    "in {:.0} s; live on the leader {}; renewals refused {}; leader's `Expire`s \
                     {}; final term {}",
                    m.took.as_secs_f64(),
                    m.live.map_or("–".into(), |l| count(l as usize)),
                    m.refused,
                    m.expired.map_or("–".into(), |e| e.to_string()),
                    m.term.map_or("–".into(), |t| t.to_string())
                ),
            );
            if let Some(f) = &m.failover {
                failover_rows(f, MEMORY_TTL, &mut row);
            }
            if let Some(why) = &m.stopped {
                row(
                    format!("memory phase STOPPED SHORT of {} leases", count(m.target)),
                    why.clone(),
                );
            }
        }
        for e in &self.errors {
            row("NOT MEASURED".into(), e.clone());
        }
        out
    }
}

// ---------------------------------------------------------------------------------------------
// Reading the nodes

/// `VmRSS` of a `/proc/<pid>/status` text, in bytes.
pub fn vm_rss_bytes(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

fn rss_of(pid: u32) -> Option<u64> {
    vm_rss_bytes(&std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?)
}

/// The sum of every sample of `name` in a Prometheus text exposition whose labels include all
/// of `labels`; `None` when there is no such sample.
pub fn metric_sum(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut sum = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (series, value) = match line.rsplit_once(' ') {
            Some(split) => split,
            None => continue,
        };
        let (series_name, series_labels) = match series.split_once('{') {
            Some((n, rest)) => (n, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        if series_name != name {
            continue;
        }
        let has = |(k, v): &(&str, &str)| {
            series_labels
                .split(',')
                .any(|pair| pair == format!("{k}=\"{v}\""))
        };
        if !labels.iter().all(has) {
            continue;
        }
        if let Ok(v) = value.parse::<f64>() {
            *sum.get_or_insert(0.0) += v;
        }
    }
    sum
}

/// A histogram's `_sum` and `_count`.
fn histogram(text: &str, name: &str) -> (f64, f64) {
    (
        metric_sum(text, &format!("{name}_sum"), &[]).unwrap_or(0.0),
        metric_sum(text, &format!("{name}_count"), &[]).unwrap_or(0.0),
    )
}

/// The mean of a histogram's observations between two readings.
fn mean_between(before: (f64, f64), after: (f64, f64)) -> Option<Duration> {
    let n = after.1 - before.1;
    (n > 0.0).then(|| Duration::from_secs_f64((after.0 - before.0) / n))
}

const EXPIRED: (&str, &[(&str, &str)]) = (
    "arbiter_lease_requests_total",
    &[("operation", "expire"), ("result", "expired")],
);

async fn rss_row(cluster: &ArbiterCluster, label: &str) -> RssRow {
    let row = RssRow {
        label: label.to_string(),
        bytes: cluster.nodes.iter().map(|n| rss_of(n.pid())).collect(),
    };
    eprintln!(
        "scale: RSS {label}: {} MiB",
        row.bytes
            .iter()
            .map(|b| mib(*b))
            .collect::<Vec<_>>()
            .join(" / ")
    );
    row
}

// ---------------------------------------------------------------------------------------------
// Holders: the leases and their renewals

#[derive(Clone)]
struct Held {
    resource: ResourceId,
    holder: HolderId,
    token: FencingToken,
}

/// The live leases the bench holds, in the order they were granted; only ever appended to.
type LeaseSet = Arc<RwLock<Vec<Held>>>;

fn lease_at(set: &LeaseSet, i: usize) -> Option<Held> {
    set.read()
        .unwrap_or_else(|e| e.into_inner())
        .get(i)
        .cloned()
}

fn lease_count(set: &LeaseSet) -> usize {
    set.read().unwrap_or_else(|e| e.into_inner()).len()
}

async fn clients(
    endpoints: &[String],
    options: &ClientOptions,
    n: usize,
) -> anyhow::Result<Vec<ArbiterClient>> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(ArbiterClient::connect(endpoints.to_vec(), options.clone()).await?);
    }
    Ok(out)
}

/// Acquires leases `range` (resource `scale/<tag>/r<i>`, holder `h<i mod holders>`) with
/// [`SETUP_CONCURRENCY`] in flight, appending each grant to `set`; prints progress.
async fn acquire_leases(
    clients: &[ArbiterClient],
    set: &LeaseSet,
    range: std::ops::Range<usize>,
    holders: usize,
    ttl: Duration,
    tag: u128,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let total = range.len();
    let deadline = started + Duration::from_secs((total / MIN_ACQUIRES_PER_SEC) as u64 + 60);
    let next = Arc::new(AtomicUsize::new(range.start));
    let failed = Arc::new(AtomicU64::new(0));
    let stalled = Arc::new(AtomicBool::new(false));
    let workers: Vec<JoinHandle<()>> = (0..SETUP_CONCURRENCY)
        .map(|w| {
            let (client, set, next, failed, stalled) = (
                clients[w % clients.len()].clone(),
                set.clone(),
                next.clone(),
                failed.clone(),
                stalled.clone(),
            );
            let end = range.end;
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= end || Instant::now() > deadline || stalled.load(Ordering::Relaxed) {
                        return;
                    }
                    let spec = LeaseSpec::new(
                        format!("scale/{tag}/r{i}"),
                        format!("h{}", i % holders),
                        ttl,
                    );
                    match client.acquire(&spec).await {
                        Ok(Ok(grant)) => {
                            set.write().unwrap_or_else(|e| e.into_inner()).push(Held {
                                resource: grant.resource,
                                holder: grant.holder,
                                token: grant.token,
                            })
                        }
                        _ => {
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
        })
        .collect();
    let progress = {
        let (set, failed, stalled) = (set.clone(), failed.clone(), stalled.clone());
        let base = lease_count(&set);
        tokio::spawn(async move {
            let (mut last, mut last_change) = (0, Instant::now());
            loop {
                tokio::time::sleep(Duration::from_secs(5)).await;
                let done = lease_count(&set) - base;
                if done != last {
                    (last, last_change) = (done, Instant::now());
                } else if last_change.elapsed() >= ACQUIRE_STALL {
                    stalled.store(true, Ordering::Relaxed);
                }
                eprintln!(
                    "scale:   acquired {} / {} ({:.0}/s, {} failed)",
                    count(done),
                    count(total),
                    done as f64 / started.elapsed().as_secs_f64(),
                    failed.load(Ordering::Relaxed)
                );
            }
        })
    };
    for w in workers {
        let _ = w.await;
    }
    progress.abort();
    let took = started.elapsed();
    let failed = failed.load(Ordering::Relaxed);
    if failed > 0 || Instant::now() > deadline || stalled.load(Ordering::Relaxed) {
        anyhow::bail!(
            "acquiring {} leases: {} granted, {failed} acquires failed or were refused{}, {} s \
             spent",
            count(total),
            count(lease_count(set).saturating_sub(range.start)),
            if stalled.load(Ordering::Relaxed) {
                format!(", none granted in the last {} s", ACQUIRE_STALL.as_secs())
            } else {
                String::new()
            },
            took.as_secs()
        );
    }
    eprintln!(
        "scale:   acquired {} leases in {:.1} s ({:.0}/s)",
        count(total),
        took.as_secs_f64(),
        total as f64 / took.as_secs_f64()
    );
    Ok(took)
}

/// What the holders' renewals came to.
#[derive(Default)]
struct RenewalCounts {
    renewed: AtomicU64,
    /// Refused: the lease is gone (expired, revoked) — the lease was lost.
    refused: AtomicU64,
    /// No answer (no leader, timeout): the renewal is tried again next pass.
    unanswered: AtomicU64,
    passes: AtomicU64,
    /// The first few refusals, for the report.
    first_refusals: Mutex<Vec<String>>,
}

impl RenewalCounts {
    fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    fn unanswered(&self) -> u64 {
        self.unanswered.load(Ordering::Relaxed)
    }
}

/// One pass over every lease granted when it starts: renews each once, paced so the pass
/// takes `period` (or as fast as it can when `None`, or when it falls behind).
async fn renew_pass(
    set: &LeaseSet,
    clients: &[ArbiterClient],
    period: Option<Duration>,
    stop: &Arc<AtomicBool>,
    counts: &Arc<RenewalCounts>,
) {
    let n = lease_count(set);
    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let workers: Vec<JoinHandle<()>> = (0..SETUP_CONCURRENCY)
        .map(|w| {
            let (client, set, next, stop, counts) = (
                clients[w % clients.len()].clone(),
                set.clone(),
                next.clone(),
                stop.clone(),
                counts.clone(),
            );
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n || stop.load(Ordering::Relaxed) {
                        return;
                    }
                    if let Some(period) = period {
                        tokio::time::sleep_until(started + period.mul_f64(i as f64 / n as f64))
                            .await;
                    }
                    let Some(held) = lease_at(&set, i) else {
                        return;
                    };
                    match client
                        .keep_alive_streamed(&held.resource, &held.holder, held.token)
                        .await
                    {
                        Ok(Ok(_)) => {
                            counts.renewed.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(Err(refusal)) => {
                            counts.refused.fetch_add(1, Ordering::Relaxed);
                            let mut first = counts
                                .first_refusals
                                .lock()
                                .unwrap_or_else(|e| e.into_inner());
                            if first.len() < 5 {
                                first.push(format!("{}: {refusal}", held.resource));
                            }
                        }
                        Err(_) => {
                            counts.unanswered.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
        })
        .collect();
    for w in workers {
        let _ = w.await;
    }
    counts.passes.fetch_add(1, Ordering::Relaxed);
}

/// The holders' background renewals: pass after pass over the whole lease set.
struct Renewer {
    stop: Arc<AtomicBool>,
    counts: Arc<RenewalCounts>,
    task: JoinHandle<()>,
}

impl Renewer {
    fn start(set: &LeaseSet, clients: &[ArbiterClient], period: Duration) -> Renewer {
        let stop = Arc::new(AtomicBool::new(false));
        let counts = Arc::new(RenewalCounts::default());
        let task = {
            let (set, clients, stop, counts) =
                (set.clone(), clients.to_vec(), stop.clone(), counts.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    renew_pass(&set, &clients, Some(period), &stop, &counts).await;
                }
            })
        };
        Renewer { stop, counts, task }
    }

    /// Waits until `passes` more full passes have ended (bounded by `timeout`).
    async fn wait_passes(&self, passes: u64, timeout: Duration) -> anyhow::Result<()> {
        let target = self.counts.passes.load(Ordering::Relaxed) + passes;
        let deadline = Instant::now() + timeout;
        while self.counts.passes.load(Ordering::Relaxed) < target {
            if Instant::now() > deadline {
                anyhow::bail!("the holders' renewal pass did not end within {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    }

    async fn stop(self) -> Arc<RenewalCounts> {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.task.await;
        self.counts
    }
}

/// Renews every lease once, as fast as it can; fails if any renewal was refused.
async fn sweep(set: &LeaseSet, clients: &[ArbiterClient]) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let counts = Arc::new(RenewalCounts::default());
    renew_pass(
        set,
        clients,
        None,
        &Arc::new(AtomicBool::new(false)),
        &counts,
    )
    .await;
    if counts.refused() > 0 || counts.unanswered() > 0 {
        anyhow::bail!(
            "renewing every lease: {} refused, {} unanswered; first: {:?}",
            counts.refused(),
            counts.unanswered(),
            counts
                .first_refusals
                .lock()
                .unwrap_or_else(|e| e.into_inner())
        );
    }
    Ok(started.elapsed())
}

/// A well-spread index in `0..n` for the `k`-th operation (splitmix64), so the keep-alive
/// phases touch leases across the whole set rather than a hot few.
pub fn spread(k: u64, n: usize) -> usize {
    let mut z = k.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z % n.max(1) as u64) as usize
}

/// `config.clients` clients over one connection to the leader renew leases spread over the
/// whole set, for one phase.
async fn keep_alive_phase(
    config: &ScaleConfig,
    cluster: &ArbiterCluster,
    set: &LeaseSet,
) -> anyhow::Result<Throughput> {
    let leader = cluster.leader().await?;
    let client = ArbiterClient::connect(
        vec![cluster.nodes[leader].ready.grpc_addr.clone()],
        cluster.options.clone(),
    )
    .await?;
    let n = lease_count(set);
    let next = Arc::new(AtomicU64::new(0));
    let load = Load {
        clients: config.clients,
        duration: config.phase,
        max_ops: config.max_ops,
    };
    let warm_up = Load {
        duration: WARM_UP.min(config.phase),
        ..load
    };
    let mut t = Throughput::default();
    for load in [warm_up, load] {
        t = renew_spread(load, &client, set, n, &next).await;
    }
    eprintln!(
        "scale: keep-alive over {} leases: {:.0} ops/s, p50 {:.2} ms, p99 {:.2} ms ({} ok, {} failed)",
        count(n),
        t.per_sec,
        t.p50_ms,
        t.p99_ms,
        t.ok,
        t.failed
    );
    Ok(t)
}

/// One closed-loop run of keep-alives, the `k`-th on lease [`spread`]`(k, n)`.
async fn renew_spread(
    load: Load,
    client: &ArbiterClient,
    set: &LeaseSet,
    n: usize,
    next: &Arc<AtomicU64>,
) -> Throughput {
    closed_loop::run(load, |_| {
        let (client, set, next) = (client.clone(), set.clone(), next.clone());
        move || {
            let (client, set, next) = (client.clone(), set.clone(), next.clone());
            async move {
                let Some(held) = lease_at(&set, spread(next.fetch_add(1, Ordering::Relaxed), n))
                else {
                    return false;
                };
                matches!(
                    client
                        .keep_alive_streamed(&held.resource, &held.holder, held.token)
                        .await,
                    Ok(Ok(_))
                )
            }
        }
    })
    .await
}

// ---------------------------------------------------------------------------------------------
// The run

pub async fn run(config: &ScaleConfig) -> anyhow::Result<Summary> {
    config.validate().map_err(anyhow::Error::msg)?;
    let mut summary = Summary {
        leases: config.leases,
        holders: config.holders,
        clients: config.clients,
        phase: config.phase,
        ttl: config.ttl,
        ..Summary::default()
    };
    if !config.memory_only {
        let dir = config.dir.join("scale");
        eprintln!(
            "scale: starting 3 nodes (--snapshot-every {} --keep-logs {KEEP_LOGS})",
            config.snapshot_every
        );
        let mut cluster = ArbiterCluster::start(
            &config.binary,
            &dir,
            &[
                "--snapshot-every".into(),
                config.snapshot_every.to_string(),
                "--keep-logs".into(),
                KEEP_LOGS.to_string(),
            ],
        )
        .await?;
        // Let start-up allocations settle before the idle reading.
        tokio::time::sleep(Duration::from_secs(2)).await;
        summary.rss.push(rss_row(&cluster, "idle").await);
        let outcome = scale_phases(config, &mut cluster, &mut summary).await;
        if let Err(e) = outcome {
            eprintln!("scale: {e:#}");
            summary.errors.push(format!("{e:#}"));
        }
        drop(cluster);
        if !config.keep {
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
    if config.memory_leases > 0 {
        let dir = config.dir.join("memory");
        match memory_phase(config, &dir).await {
            Ok(m) => summary.memory = Some(m),
            Err(e) => {
                eprintln!("scale: memory phase: {e:#}");
                summary.errors.push(format!("memory phase: {e:#}"));
            }
        }
        if !config.keep {
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
    Ok(summary)
}

/// Phases 1–4 on one cluster. A failure of the leader change or the snapshot phase is noted
/// and the run goes on with what it can still measure.
async fn scale_phases(
    config: &ScaleConfig,
    cluster: &mut ArbiterCluster,
    summary: &mut Summary,
) -> anyhow::Result<()> {
    let endpoints = cluster.endpoints();
    let setup = clients(&endpoints, &cluster.options, SETUP_CLIENTS).await?;
    let holders = clients(&endpoints, &cluster.options, SETUP_CLIENTS).await?;
    let set: LeaseSet = Arc::default();
    let tag = run_tag();

    eprintln!(
        "scale: phase 1: {} leases, one per holder (TTL {} s)",
        count(config.holders),
        config.ttl.as_secs()
    );
    acquire_leases(
        &setup,
        &set,
        0..config.holders,
        config.holders,
        config.ttl,
        tag,
    )
    .await?;
    summary
        .rss
        .push(rss_row(cluster, &format!("{} leases", count(config.holders))).await);
    summary.base = Some(keep_alive_phase(config, cluster, &set).await?);

    eprintln!(
        "scale: phase 1: {} more leases ({} per holder), holders renewing every {} s",
        count(config.leases - config.holders),
        config.leases / config.holders,
        (config.ttl / 3).as_secs()
    );
    let renewer = Renewer::start(&set, &holders, config.ttl / 3);
    let acquired = acquire_leases(
        &setup,
        &set,
        config.holders..config.leases,
        config.holders,
        config.ttl,
        tag,
    )
    .await;
    let counts = renewer.stop().await;
    acquired?;
    if counts.refused() > 0 {
        anyhow::bail!(
            "{} leases lapsed while the others were acquired; first: {:?}",
            counts.refused(),
            counts
                .first_refusals
                .lock()
                .unwrap_or_else(|e| e.into_inner())
        );
    }
    let took = sweep(&set, &holders).await?;
    eprintln!(
        "scale:   renewed all {} leases in {:.1} s before measuring",
        count(lease_count(&set)),
        took.as_secs_f64()
    );
    summary
        .rss
        .push(rss_row(cluster, &format!("{} leases", count(config.leases))).await);
    summary.scaled = Some(keep_alive_phase(config, cluster, &set).await?);

    let renewer = Renewer::start(&set, &holders, config.ttl / 3);
    match failover_phase(config.ttl, cluster, &set, &renewer).await {
        Ok(f) => summary.failover = Some(f),
        Err(e) => {
            eprintln!("scale: leader change: {e:#}");
            summary.errors.push(format!("leader change: {e:#}"));
        }
    }
    match snapshot_phase(config, cluster, &setup[0], tag).await {
        Ok(s) => summary.snapshot = Some(s),
        Err(e) => {
            eprintln!("scale: snapshot: {e:#}");
            summary.errors.push(format!("snapshot: {e:#}"));
        }
    }
    renewer.stop().await;
    Ok(())
}

/// Phase 2: `kill -9` of the leader while holders keep every lease renewed.
async fn failover_phase(
    ttl: Duration,
    cluster: &mut ArbiterCluster,
    set: &LeaseSet,
    renewer: &Renewer,
) -> anyhow::Result<FailoverFigures> {
    let held = lease_count(set);
    eprintln!(
        "scale: phase 2: leader change with {} leases; waiting for a full renewal pass",
        count(held)
    );
    renewer.wait_passes(1, ttl * 2).await?;
    let leader = cluster.leader().await?;
    let survivors: Vec<usize> = (0..cluster.nodes.len()).filter(|&i| i != leader).collect();
    let mut before = Vec::new();
    for &i in &survivors {
        before.push(cluster.metrics(i).await?);
    }
    let probe = ArbiterClient::connect(
        survivors
            .iter()
            .map(|&i| cluster.nodes[i].ready.grpc_addr.clone())
            .collect(),
        ClientOptions {
            attempt_timeout: PROBE_ATTEMPT,
            call_deadline: PROBE_ATTEMPT,
            initial_backoff: Duration::from_millis(5),
            ..cluster.options.clone()
        },
    )
    .await?;
    let first = lease_at(set, 0).ok_or_else(|| anyhow::anyhow!("no lease to probe with"))?;
    let (refused0, unanswered0) = (renewer.counts.refused(), renewer.counts.unanswered());

    eprintln!(
        "scale:   kill -9 of the leader, node {}",
        cluster.nodes[leader].spec.id
    );
    let killed = Instant::now();
    cluster.nodes[leader].kill();
    let serving_after = loop {
        let renewal = tokio::time::timeout(
            PROBE_ATTEMPT,
            probe.keep_alive_streamed(&first.resource, &first.holder, first.token),
        )
        .await;
        match renewal {
            Ok(Ok(Ok(_))) => break killed.elapsed(),
            Ok(Ok(Err(refusal))) => anyhow::bail!("the probe's lease was refused: {refusal}"),
            _ if killed.elapsed() > WAIT_TIMEOUT => {
                anyhow::bail!("no keep-alive answered within {WAIT_TIMEOUT:?} of the kill")
            }
            _ => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    };
    eprintln!(
        "scale:   keep-alives served again {} after the kill",
        ms(serving_after)
    );

    let new_leader = cluster.leader().await?;
    let settled = cluster.status(new_leader).await?;
    let (term, leader_id) = (settled.term, settled.node_id);
    let window = ttl + ttl / 3 + Duration::from_secs(2);
    eprintln!(
        "scale:   node {leader_id} leads in term {term}; watching for {:.0} s (one TTL and a \
         third)",
        window.as_secs_f64()
    );
    let mut elections_after = 0;
    let mut last_term = term;
    let end = Instant::now() + window;
    let mut next_report = Instant::now() + Duration::from_secs(10);
    while Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(500)).await;
        for &i in &survivors {
            if let Ok(s) = cluster.status(i).await {
                if s.term > last_term {
                    elections_after += s.term - last_term;
                    last_term = s.term;
                    eprintln!(
                        "scale:   ELECTION: node {} is in term {}",
                        s.node_id, s.term
                    );
                }
            }
        }
        if Instant::now() > next_report {
            next_report += Duration::from_secs(10);
            eprintln!(
                "scale:   {:.0} s after the kill: renewals refused {}, unanswered {}",
                killed.elapsed().as_secs_f64(),
                renewer.counts.refused() - refused0,
                renewer.counts.unanswered() - unanswered0
            );
        }
    }
    let mut expired = 0.0;
    let mut rebuild = None;
    let mut live_after = None;
    for (&i, before) in survivors.iter().zip(&before) {
        let after = cluster.metrics(i).await?;
        let value = |text: &str| metric_sum(text, EXPIRED.0, EXPIRED.1).unwrap_or(0.0);
        expired += value(&after) - value(before);
        if i == new_leader {
            let name = "arbiter_lease_timers_rebuild_duration_seconds";
            rebuild = mean_between(histogram(before, name), histogram(&after, name));
            live_after = metric_sum(&after, "arbiter_leases_live", &[]).map(|v| v as u64);
        }
    }
    let figures = FailoverFigures {
        serving_after,
        rebuild,
        window,
        expired: expired as u64,
        refused: renewer.counts.refused() - refused0,
        unanswered: renewer.counts.unanswered() - unanswered0,
        live_after,
        held,
        elections_after,
        term,
    };
    eprintln!(
        "scale:   after {:.0} s: {} leases expired, {} renewals refused, {} elections; live {:?}",
        window.as_secs_f64(),
        figures.expired,
        figures.refused,
        figures.elections_after,
        figures.live_after
    );
    Ok(figures)
}

/// Phase 3: the leader builds a snapshot at scale; a fresh learner installs it.
async fn snapshot_phase(
    config: &ScaleConfig,
    cluster: &mut ArbiterCluster,
    client: &ArbiterClient,
    tag: u128,
) -> anyhow::Result<SnapshotFigures> {
    let leader = cluster.leader().await?;
    let name = "arbiter_snapshot_build_duration_seconds";
    let before = histogram(&cluster.metrics(leader).await?, name);
    eprintln!(
        "scale: phase 3: acquire/release pairs until the leader builds a snapshot (every {} \
         entries)",
        config.snapshot_every
    );
    let spec = LeaseSpec::new(format!("scale/{tag}/snapshot"), "snapshotter", config.ttl);
    let deadline = Instant::now() + WAIT_TIMEOUT;
    let mut pairs = 0u64;
    let (after, text) = loop {
        let grant = client
            .acquire(&spec)
            .await?
            .map_err(|r| anyhow::anyhow!("snapshot filler refused: {r}"))?;
        client
            .release(&grant.resource, &grant.holder, grant.token)
            .await?
            .map_err(|r| anyhow::anyhow!("snapshot filler release refused: {r}"))?;
        pairs += 1;
        if pairs.is_multiple_of(50) {
            let text = cluster.metrics(leader).await?;
            let after = histogram(&text, name);
            if after.1 > before.1 {
                break (after, text);
            }
        }
        if Instant::now() > deadline || pairs > config.snapshot_every * 4 {
            anyhow::bail!("the leader built no snapshot after {pairs} acquire/release pairs");
        }
    };
    let build = mean_between(before, after);
    let bytes = metric_sum(&text, "arbiter_snapshot_size_bytes", &[]).map(|v| v as u64);
    let file_bytes = std::fs::metadata(cluster.data_dir(leader).join("snapshot.bin"))
        .ok()
        .map(|m| m.len());
    eprintln!(
        "scale:   built after {pairs} pairs: {} ({} MiB)",
        build.map_or("–".into(), ms),
        mib(bytes)
    );

    eprintln!("scale:   starting node 4 on an empty data dir and adding it as a learner");
    let learner = cluster.start_learner(4, "us-east-1").await?;
    let target = cluster
        .status(leader)
        .await?
        .applied_index
        .unwrap_or_default();
    let sent = Instant::now();
    cluster.add_learner(leader, learner).await?;
    let caught_up = loop {
        if let Ok(s) = cluster.status(learner).await {
            if s.applied_index.unwrap_or_default() >= target {
                break sent.elapsed();
            }
        }
        if sent.elapsed() > WAIT_TIMEOUT {
            anyhow::bail!("node 4 did not reach applied index {target} within {WAIT_TIMEOUT:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let learner_metrics = cluster.metrics(learner).await?;
    let installed = histogram(
        &learner_metrics,
        "arbiter_snapshot_install_duration_seconds",
    );
    let figures = SnapshotFigures {
        build,
        bytes,
        file_bytes,
        install: mean_between((0.0, 0.0), installed),
        caught_up,
        by_snapshot: installed.1 > 0.0,
    };
    eprintln!(
        "scale:   node 4 caught up {} after AddLearner (install {})",
        ms(caught_up),
        figures.install.map_or("–".into(), ms)
    );
    Ok(figures)
}

/// Phase 5: a fresh cluster, RSS idle, then `config.memory_leases` leases held.
async fn memory_phase(
    config: &ScaleConfig,
    dir: &std::path::Path,
) -> anyhow::Result<MemoryFigures> {
    eprintln!(
        "scale: phase 5: memory per lease; a fresh cluster, then {} leases (TTL {} s, renewed \
         every {} s)",
        count(config.memory_leases),
        MEMORY_TTL.as_secs(),
        (MEMORY_TTL / 3).as_secs()
    );
    let mut cluster = ArbiterCluster::start(&config.binary, dir, &[]).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle = rss_row(&cluster, "idle (memory phase)").await;
    let endpoints = cluster.endpoints();
    let setup = clients(&endpoints, &cluster.options, SETUP_CLIENTS).await?;
    let holders = clients(&endpoints, &cluster.options, SETUP_CLIENTS).await?;
    let set: LeaseSet = Arc::default();
    let started = Instant::now();
    let renewer = Renewer::start(&set, &holders, MEMORY_TTL / 3);
    let acquired = acquire_leases(
        &setup,
        &set,
        0..config.memory_leases,
        config.holders,
        MEMORY_TTL,
        run_tag(),
    )
    .await;
    let took = match &acquired {
        Ok(took) => *took,
        Err(_) => started.elapsed(),
    };
    // Settle: the acquires' last entries applied everywhere, buffers returned.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let loaded = rss_row(&cluster, &format!("{} leases", count(config.memory_leases))).await;
    let leader = cluster.leader().await?;
    let live =
        metric_sum(&cluster.metrics(leader).await?, "arbiter_leases_live", &[]).map(|v| v as u64);
    let leader_metrics = cluster.metrics(leader).await.unwrap_or_default();
    let term = cluster.status(leader).await.map(|s| s.term).ok();
    let failover = match &acquired {
        Ok(_) => match failover_phase(MEMORY_TTL, &mut cluster, &set, &renewer).await {
            Ok(f) => Some(f),
            Err(e) => {
                eprintln!(
                    "scale: leader change at {}: {e:#}",
                    count(lease_count(&set))
                );
                None
            }
        },
        Err(_) => None,
    };
    let counts = renewer.stop().await;
    let leases = lease_count(&set);
    let stopped = match acquired {
        Err(e) if leases == 0 => return Err(e),
        outcome => outcome.err().map(|e| format!("{e:#}")),
    };
    Ok(MemoryFigures {
        leases,
        target: config.memory_leases,
        stopped,
        expired: metric_sum(&leader_metrics, EXPIRED.0, EXPIRED.1).map(|v| v as u64),
        term,
        live,
        idle: idle.bytes,
        loaded: loaded.bytes,
        leader,
        refused: counts.refused(),
        took,
        failover,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rss_is_read_from_the_vmrss_line_in_kib() {
        let status = "Name:\tarbiter\nVmPeak:\t  900 kB\nVmRSS:\t   12345 kB\nThreads:\t9\n";
        assert_eq!(vm_rss_bytes(status), Some(12345 * 1024));
        assert_eq!(vm_rss_bytes("Name:\tarbiter\n"), None);
    }

    #[test]
    fn metric_sum_adds_the_samples_whose_labels_match() {
        let text = "# HELP x y\n\
                    arbiter_lease_requests_total{operation=\"expire\",result=\"expired\"} 3\n\
                    arbiter_lease_requests_total{operation=\"expire\",result=\"not_leader\"} 5\n\
                    arbiter_lease_requests_total{operation=\"keep_alive\",result=\"renewed\"} 7\n\
                    arbiter_leases_live 100000\n\
                    arbiter_leases_live_other 1\n";
        assert_eq!(metric_sum(text, EXPIRED.0, EXPIRED.1), Some(3.0));
        assert_eq!(
            metric_sum(
                text,
                "arbiter_lease_requests_total",
                &[("operation", "expire")]
            ),
            Some(8.0)
        );
        assert_eq!(metric_sum(text, "arbiter_leases_live", &[]), Some(100000.0));
        assert_eq!(metric_sum(text, "arbiter_missing", &[]), None);
    }

    #[test]
    fn mean_between_two_histogram_readings() {
        assert_eq!(
            mean_between((1.0, 2.0), (1.5, 4.0)),
            Some(Duration::from_millis(250))
        );
        assert_eq!(mean_between((1.0, 2.0), (1.0, 2.0)), None);
    }

    #[test]
    fn spread_covers_the_set_without_leaving_it() {
        let n = 1_000;
        let mut seen = vec![false; n];
        for k in 0..20_000 {
            seen[spread(k, n)] = true;
        }
        assert!(seen.iter().all(|s| *s), "every lease touched");
        assert_eq!(spread(7, 0), 0);
    }

    #[test]
    fn counts_get_thousands_separators() {
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1_000), "1,000");
        assert_eq!(count(1_000_000), "1,000,000");
    }

    #[test]
    fn validate_keeps_phases_within_the_ttl() {
        let config = |seconds, ttl| ScaleConfig {
            binary: PathBuf::new(),
            dir: PathBuf::new(),
            leases: 100_000,
            holders: 1_000,
            phase: Duration::from_secs(seconds),
            clients: 64,
            max_ops: 1,
            ttl: Duration::from_secs(ttl),
            snapshot_every: 1_000,
            memory_leases: 0,
            memory_only: false,
            keep: false,
        };
        assert!(config(10, 30).validate().is_ok());
        assert!(config(20, 30).validate().is_err());
        assert!(config(10, 90).validate().is_err());
    }

    #[test]
    fn the_table_gives_the_ratio_against_the_bar_and_bytes_per_lease() {
        let t = |per_sec| Throughput {
            ok: 10,
            failed: 0,
            per_sec,
            p50_ms: 1.0,
            p99_ms: 2.0,
        };
        let summary = Summary {
            leases: 100_000,
            holders: 1_000,
            clients: 64,
            phase: Duration::from_secs(10),
            ttl: Duration::from_secs(30),
            base: Some(t(40_000.0)),
            scaled: Some(t(30_000.0)),
            memory: Some(MemoryFigures {
                leases: 1_000_000,
                target: 1_000_000,
                stopped: None,
                expired: Some(0),
                term: Some(2),
                live: Some(1_000_000),
                idle: vec![Some(10 << 20), None, Some(10 << 20)],
                loaded: vec![Some((10 << 20) + 500_000_000), Some(1), Some(10 << 20)],
                leader: 0,
                refused: 0,
                took: Duration::from_secs(120),
                failover: Some(FailoverFigures {
                    serving_after: Duration::from_millis(403),
                    held: 1_000_000,
                    ..FailoverFigures::default()
                }),
            }),
            errors: vec!["snapshot: no leader".into()],
            ..Summary::default()
        };
        let table = summary.table();
        assert!(
            table.contains("| keep-alive ratio 100,000 / 1,000 leases | 0.75× (MISSES the ≥ 0.80× bar); p99 1.00× |"),
            "{table}"
        );
        assert!(
            table.contains("| memory per lease at 1,000,000 leases (RSS delta from idle) | n1 500 B (leader), n2 –, n3 0 B |"),
            "{table}"
        );
        assert!(
            table.contains(
                "| leader kill -9 at 1,000,000 leases: keep-alives served again after | 403 ms |"
            ),
            "{table}"
        );
        assert!(
            table.contains("| NOT MEASURED | snapshot: no leader |"),
            "{table}"
        );
    }
}
