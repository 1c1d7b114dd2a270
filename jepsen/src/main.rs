//! `arbiter-jepsen` command line.
//!
//! - `arbiter-jepsen [run] --nemesis all --time-limit 300 ...`: start a cluster, inject faults,
//!   record a history, check it and write the report (`run` is the default subcommand).
//! - `arbiter-jepsen check <history.jsonl>`: judge a recorded history and write the report next
//!   to it.
//!
//! Exit status: 0 valid, 1 anomalies found, 3 undecided (a search ran out of budget), 4 the run
//! could not be carried out (cluster did not start, arbiter binary missing) or the history could
//! not be read; clap's usage errors exit 2.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use arbiter_jepsen::checker::{self, availability, linearizable, CheckConfig, Results, Verdict};
use arbiter_jepsen::history::History;
use arbiter_jepsen::nemesis::FaultKind;
use arbiter_jepsen::report::{self, ReportFiles};
use arbiter_jepsen::run_dir;
use arbiter_jepsen::runner::{self, Latency, RunConfig, RunError, StoreKind};
use arbiter_jepsen::workload::UnsafeControls;
use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(
    version,
    about = "Fault-injecting verification harness for arbiter",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Without a subcommand: `run` with these flags.
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Start a cluster, run the workloads under a seeded nemesis, check the history, and write
    /// history.jsonl, results.json, summary.txt and timeline.svg into the run directory.
    Run(RunArgs),
    /// Run every checker on a recorded history and write results.json, summary.txt and
    /// timeline.svg.
    Check(CheckArgs),
    /// Benchmark: us-east-1 outage → failover COMPLETED over the WAN triangle, with the leader
    /// placed in us-east-1 vs in eu-central-1 (arms alternate; prints medians).
    PlacementBench(PlacementBenchArgs),
    /// Benchmark: the `wan` profile over the WAN triangle with the leader in us-east-1:
    /// commit latency against its floor, lease throughput, leader failover after kill -9.
    WanBench(WanBenchArgs),
    /// Benchmark: 100,000 live leases held by 1,000 holders against 1,000 leases — keep-alive
    /// throughput, a leader kill -9 (expiries, elections), snapshot build and install, RSS per
    /// node, and memory per lease at 1,000,000 leases (`scripts/scale_bench.sh`).
    ScaleBench(ScaleBenchArgs),
    /// Benchmark: arbiter and etcd side by side on loopback (keep-alive, grant, guarded
    /// write, leader failover after kill -9), alternating, with a ratio table. Needs the
    /// `etcd` feature and an etcd binary (`scripts/vs_etcd.sh` does both).
    #[cfg(feature = "etcd")]
    VsEtcd(VsEtcdArgs),
}

#[cfg(feature = "etcd")]
#[derive(Args)]
struct VsEtcdArgs {
    /// Repetitions (each starts a fresh cluster of each system).
    #[arg(long, default_value_t = 3)]
    reps: usize,
    /// Seconds per phase.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Concurrent clients, each one request at a time, over one connection to the leader.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Upper bound on the operations of one phase.
    #[arg(long, default_value_t = 2_000_000)]
    max_ops: u64,
    /// Bytes of each guarded write's value.
    #[arg(long, default_value_t = 1_000)]
    value_bytes: usize,
    /// Leader kills per system (each on a fresh cluster).
    #[arg(long, default_value_t = 5)]
    failovers: usize,
    #[command(flatten)]
    timing: TimingArgs,
    /// The `arbiter` binary (default: next to this executable).
    #[arg(long)]
    arbiter_bin: Option<PathBuf>,
    /// The `etcd` binary.
    #[arg(long, default_value = "etcd")]
    etcd_bin: PathBuf,
    /// Run only these systems (e.g. `--systems arbiter` to profile it alone).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "arbiter,etcd"
    )]
    systems: Vec<arbiter_jepsen::vs_etcd::System>,
    /// Where the clusters keep their data while they run (removed after each).
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Args)]
struct ScaleBenchArgs {
    /// Live leases of the scaled phases.
    #[arg(long, default_value_t = 100_000)]
    leases: usize,
    /// Holders; the baseline phase holds one lease per holder.
    #[arg(long, default_value_t = 1_000)]
    holders: usize,
    /// Seconds per keep-alive phase (at most half the TTL).
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Concurrent keep-alive clients, each one request at a time, over one connection to the
    /// leader.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Upper bound on the operations of one keep-alive phase.
    #[arg(long, default_value_t = 5_000_000)]
    max_ops: u64,
    /// TTL (seconds) of the leases of the scaled phases; holders renew each every TTL/3, and
    /// the leader change is watched for one TTL and a third.
    #[arg(long, default_value_t = 30)]
    ttl: u64,
    /// `--snapshot-every` of the nodes of the scaled phases.
    #[arg(long, default_value_t = 1_000)]
    snapshot_every: u64,
    /// Leases of the memory-per-lease phase (a fresh cluster); 0 skips it.
    #[arg(long, default_value_t = 1_000_000)]
    memory_leases: usize,
    /// Run the memory-per-lease phase alone (skip the keep-alive, leader-change and snapshot
    /// phases).
    #[arg(long)]
    memory_only: bool,
    /// Keep the clusters' directories (node logs) instead of removing them.
    #[arg(long)]
    keep: bool,
    /// The `arbiter` binary (default: next to this executable).
    #[arg(long)]
    arbiter_bin: Option<PathBuf>,
    /// Where the clusters keep their data while they run (removed after each).
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Args)]
struct PlacementBenchArgs {
    /// Runs per arm.
    #[arg(long, default_value_t = 10)]
    runs: usize,
    /// The `arbiter` binary (default: next to this executable).
    #[arg(long)]
    arbiter_bin: Option<PathBuf>,
    /// Where the runs keep their nodes while they run (removed after each run).
    #[arg(long)]
    out: Option<PathBuf>,
}

/// Raft timing in place of the profile's, to try a tuning.
#[derive(Args)]
struct TimingArgs {
    #[arg(long)]
    heartbeat_ms: Option<u64>,
    #[arg(long)]
    election_min_ms: Option<u64>,
    #[arg(long)]
    election_max_ms: Option<u64>,
}

impl TimingArgs {
    fn get(&self) -> arbiter_jepsen::cluster::TimingOverride {
        arbiter_jepsen::cluster::TimingOverride {
            heartbeat_ms: self.heartbeat_ms,
            election_min_ms: self.election_min_ms,
            election_max_ms: self.election_max_ms,
        }
    }
}

#[derive(Args)]
struct WanBenchArgs {
    /// Sequential acquires at the leader for the commit-latency figure.
    #[arg(long, default_value_t = 200)]
    commits: usize,
    /// Concurrent clients of the throughput phases. At ~250 ms a call over the WAN, 5,000
    /// calls/s need more than 1,250 in flight.
    #[arg(long, default_value_t = 2048)]
    clients: usize,
    /// Connections to the leader the clients are spread over, as several regional proxies
    /// would be (a connection carries at most 1,024 calls at once).
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Seconds per throughput phase.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Upper bound on the operations of one phase.
    #[arg(long, default_value_t = 2_000_000)]
    max_ops: u64,
    /// Leader kills (each followed by a restart and leadership back in us-east-1).
    #[arg(long, default_value_t = 10)]
    failovers: usize,
    #[command(flatten)]
    timing: TimingArgs,
    /// The `arbiter` binary (default: next to this executable).
    #[arg(long)]
    arbiter_bin: Option<PathBuf>,
    /// Where the cluster keeps its data while it runs (removed afterwards).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Keep the data and node logs afterwards.
    #[arg(long)]
    keep: bool,
}

#[derive(Args)]
struct RunArgs {
    /// Faults to draw from, comma-separated: all, none, partition, kill, pause, or
    /// isolate-leader, majority-minority, one-way, bridge, kill9, pause-node,
    /// pause-lease-holder, kill-all, lose-unsynced (not in `all`: needs root and /dev/fuse).
    #[arg(long, default_value = "all", value_parser = nemesis_list)]
    nemesis: NemesisList,
    /// Seconds of workload; every fault is healed within it.
    #[arg(long, default_value_t = 60)]
    time_limit: u64,
    /// Seeds the nemesis schedule and the workloads' choices (default: from the clock; the
    /// seed used is in the run directory's name).
    #[arg(long)]
    seed: Option<u64>,
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Run directory (default: jepsen/runs/<UTC time>-seed<seed>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Peer-link latency: the planning WAN triangle, or none (fast runs).
    #[arg(long, value_enum, default_value_t = Latency::Wan)]
    latency: Latency,
    /// The `arbiter` binary (default: next to this executable).
    #[arg(long)]
    arbiter_bin: Option<PathBuf>,
    /// Nodes snapshot every this many log entries, so snapshots happen under faults too.
    #[arg(long, default_value_t = 500)]
    snapshot_every: u64,
    /// Where lease holders write: in-process fenced resources, or a PostgreSQL 15 server of the
    /// run's own behind the arbiter's fence (needs Debian `postgresql`; run as root or as a user
    /// that can start it).
    #[arg(long, value_enum, default_value_t = StoreKind::Memory)]
    fenced_store: StoreKind,
    /// Negative control: holders keep writing long after their lease deadline.
    #[arg(long)]
    unsafe_ignore_deadline: bool,
    /// Negative control: the fenced resources accept every token.
    #[arg(long)]
    unsafe_no_fencing: bool,
    /// Negative control: register reads come from a replica 2 s behind, without a leader check.
    #[arg(long)]
    unsafe_stale_reads: bool,
    /// Negative control: every node runs `arbiter serve --unsafe-no-fsync`, on lazyfs, and the
    /// schedule is forced to lose every node's unsynced writes at once (needs root, /dev/fuse).
    #[arg(long)]
    unsafe_no_fsync: bool,
    #[command(flatten)]
    checks: CheckFlags,
}

/// The fault kinds a `--nemesis` list names.
#[derive(Clone)]
struct NemesisList(Vec<FaultKind>);

fn nemesis_list(list: &str) -> Result<NemesisList, String> {
    FaultKind::parse_list(list)
        .map(NemesisList)
        .map_err(|e| e.to_string())
}

#[derive(Args)]
struct CheckArgs {
    /// The history, one JSON op per line.
    history: PathBuf,
    /// Where to write the report; defaults to the history's directory.
    #[arg(long)]
    out: Option<PathBuf>,
    #[command(flatten)]
    checks: CheckFlags,
}

#[derive(Args)]
struct CheckFlags {
    /// Linearizability search steps per key before giving up as unknown.
    #[arg(long, default_value_t = linearizable::Budget::default().max_steps_per_key)]
    lin_budget: u64,
    /// Shortest gap without an ok completion that counts as unavailability.
    #[arg(long, default_value_t = 1_000)]
    min_window_ms: u64,
    /// Unavailable windows longer than this are anomalies.
    #[arg(long)]
    max_window_ms: Option<u64>,
    /// Recoveries after a heal slower than this (or missing) are anomalies.
    #[arg(long)]
    max_recovery_ms: Option<u64>,
}

impl CheckFlags {
    fn config(&self) -> CheckConfig {
        let ms = |v: u64| v.saturating_mul(1_000_000);
        CheckConfig {
            linearizability: linearizable::Budget {
                max_steps_per_key: self.lin_budget,
            },
            availability: availability::Bounds {
                min_window_ns: ms(self.min_window_ms),
                max_window_ns: self.max_window_ms.map(ms),
                max_recovery_ns: self.max_recovery_ms.map(ms),
            },
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Some(Command::Check(args)) => check(&args),
        Some(Command::Run(args)) => run(&args),
        Some(Command::PlacementBench(args)) => placement_bench(&args).map(|()| Verdict::Valid),
        Some(Command::WanBench(args)) => wan_bench(&args).map(|()| Verdict::Valid),
        Some(Command::ScaleBench(args)) => scale_bench(&args).map(|()| Verdict::Valid),
        #[cfg(feature = "etcd")]
        Some(Command::VsEtcd(args)) => vs_etcd(&args).map(|()| Verdict::Valid),
        None => run(&cli.run),
    };
    match outcome {
        Ok(verdict) => exit_code(verdict),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(4)
        }
    }
}

fn exit_code(verdict: Verdict) -> ExitCode {
    match verdict {
        Verdict::Valid => ExitCode::SUCCESS,
        Verdict::Invalid => ExitCode::from(1),
        Verdict::Unknown => ExitCode::from(3),
    }
}

fn check(args: &CheckArgs) -> anyhow::Result<Verdict> {
    let history = History::read_jsonl(&args.history)?;
    let results = checker::check_all(&history, &args.checks.config())
        .with_context(|| format!("reading fault windows of {}", args.history.display()))?;
    let out = match &args.out {
        Some(dir) => dir.clone(),
        None => args
            .history
            .parent()
            .map(|p| p.to_path_buf())
            .unwrap_or_default(),
    };
    let files = report::write(&out, &history, &results)
        .with_context(|| format!("writing the report into {}", out.display()))?;
    print!("{}", files.summary);
    print_files(&files);
    Ok(results.verdict)
}

fn run(args: &RunArgs) -> anyhow::Result<Verdict> {
    let kinds = args.nemesis.0.clone();
    let now = SystemTime::now();
    let seed = args.seed.unwrap_or_else(|| {
        now.duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    });
    let config = RunConfig {
        seed,
        nodes: args.nodes,
        time_limit: Duration::from_secs(args.time_limit),
        kinds,
        latency: args.latency,
        dir: args
            .out
            .clone()
            .unwrap_or_else(|| run_dir::default_dir(seed, now)),
        arbiter_bin: run_dir::locate_arbiter(args.arbiter_bin.as_deref())
            .map_err(anyhow::Error::msg)?,
        controls: UnsafeControls {
            ignore_deadline: args.unsafe_ignore_deadline,
            no_fencing: args.unsafe_no_fencing,
            stale_reads: args.unsafe_stale_reads,
            no_fsync: args.unsafe_no_fsync,
        },
        fenced_store: args.fenced_store,
        check: args.checks.config(),
        snapshot_every: args.snapshot_every,
    };
    let names: Vec<&str> = config.kinds.iter().map(|k| k.name()).collect();
    eprintln!(
        "arbiter-jepsen: seed {seed}, {} nodes, {} s, nemesis [{}], latency {:?}, run dir {}",
        config.nodes,
        args.time_limit,
        names.join(", "),
        config.latency,
        config.dir.display()
    );
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    // On Ctrl-C or SIGTERM the run is dropped: its nodes are killed and its lazyfs mounts
    // unmounted (drop order in `Cluster`), rather than left behind.
    let outcome = runtime.block_on(async {
        tokio::select! {
            outcome = runner::run(&config) => Some(outcome),
            () = interrupted() => None,
        }
    });
    let Some(outcome) = outcome else {
        anyhow::bail!(
            "interrupted: nodes stopped and mounts removed; {} is incomplete",
            config.dir.display()
        )
    };
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(e @ RunError::ClusterStart(_)) => {
            anyhow::bail!(
                "{e}\nnode logs: {}",
                config.dir.join("nodes/n*/node.log").display()
            )
        }
        Err(e) => return Err(e.into()),
    };
    print!("{}", outcome.files.summary);
    print_recovery(&outcome.results, outcome.final_recovery);
    let controls = config.controls.flags();
    if !controls.is_empty() {
        println!(
            "negative control {}: the checkers must find anomalies ({})",
            controls.join(" "),
            if outcome.results.verdict == Verdict::Invalid {
                "they did"
            } else {
                "they did NOT"
            }
        );
    }
    print_files(&outcome.files);
    Ok(outcome.results.verdict)
}

#[cfg(feature = "etcd")]
fn vs_etcd(args: &VsEtcdArgs) -> anyhow::Result<()> {
    use arbiter_jepsen::vs_etcd::{self, VsConfig};
    let dir = match &args.out {
        Some(dir) => dir.clone(),
        None => std::env::temp_dir().join(format!("arbiter-vs-etcd-{}", std::process::id())),
    };
    let config = VsConfig {
        binary: run_dir::locate_arbiter(args.arbiter_bin.as_deref()).map_err(anyhow::Error::msg)?,
        etcd: args.etcd_bin.clone(),
        dir: dir.clone(),
        reps: args.reps.max(1),
        phase: std::time::Duration::from_secs(args.seconds.max(1)),
        clients: args.clients.max(1),
        max_ops: args.max_ops,
        value_bytes: args.value_bytes,
        failovers: args.failovers,
        systems: args.systems.clone(),
        timing: args.timing.get(),
    };
    let etcd_version = std::process::Command::new(&config.etcd)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|v| {
            let line = v.lines().next()?;
            Some(format!("etcd {}", line.strip_prefix("etcd Version: ")?))
        })
        .ok_or_else(|| anyhow::anyhow!("cannot run {} --version", config.etcd.display()))?;
    eprintln!(
        "vs-etcd: {} reps x {} s per phase, {} clients over one connection to the leader, \
         {} B values, {} leader kills per system; {etcd_version}; data under {}",
        config.reps,
        args.seconds,
        config.clients,
        config.value_bytes,
        config.failovers,
        dir.display()
    );
    let results = run_bench(&dir, false, vs_etcd::run(&config))?;
    println!(
        "\narbiter vs {etcd_version}: medians of {} reps, {} clients, {} s phases; above 1× = \
         arbiter better",
        config.reps, config.clients, args.seconds
    );
    print!("{}", results.table());
    Ok(())
}

fn scale_bench(args: &ScaleBenchArgs) -> anyhow::Result<()> {
    use arbiter_jepsen::scale_bench::{self, ScaleConfig};
    let dir = match &args.out {
        Some(dir) => dir.clone(),
        None => std::env::temp_dir().join(format!("arbiter-scale-bench-{}", std::process::id())),
    };
    let config = ScaleConfig {
        binary: run_dir::locate_arbiter(args.arbiter_bin.as_deref()).map_err(anyhow::Error::msg)?,
        dir: dir.clone(),
        leases: args.leases,
        holders: args.holders,
        phase: Duration::from_secs(args.seconds.max(1)),
        clients: args.clients.max(1),
        max_ops: args.max_ops,
        ttl: Duration::from_secs(args.ttl),
        snapshot_every: args.snapshot_every,
        memory_leases: args.memory_leases,
        memory_only: args.memory_only,
        keep: args.keep,
    };
    config.validate().map_err(anyhow::Error::msg)?;
    eprintln!(
        "scale-bench: {} leases / {} holders, {} clients, {} s phases, TTL {} s, snapshot every \
         {} entries, memory phase {} leases; data under {}",
        config.leases,
        config.holders,
        config.clients,
        args.seconds,
        args.ttl,
        config.snapshot_every,
        config.memory_leases,
        dir.display()
    );
    let summary = run_bench(&dir, args.keep, scale_bench::run(&config))?;
    println!(
        "\narbiter at scale: 3 lan nodes on loopback (TLS, tokens), {} keep-alive clients over one \
         connection to the leader, {} s phases, lease TTL {} s",
        config.clients, args.seconds, args.ttl
    );
    print!("{}", summary.table());
    if !summary.errors.is_empty() {
        anyhow::bail!("{} phase(s) could not be measured", summary.errors.len());
    }
    Ok(())
}

fn placement_bench(args: &PlacementBenchArgs) -> anyhow::Result<()> {
    use arbiter_jepsen::placement_bench::{self as bench, BenchConfig, ARMS};
    let dir = match &args.out {
        Some(dir) => dir.clone(),
        None => {
            std::env::temp_dir().join(format!("arbiter-placement-bench-{}", std::process::id()))
        }
    };
    let config = BenchConfig {
        runs: args.runs.max(1),
        binary: run_dir::locate_arbiter(args.arbiter_bin.as_deref()).map_err(anyhow::Error::msg)?,
        dir: dir.clone(),
    };
    eprintln!(
        "placement-bench: {} runs per arm, WAN triangle (70/90/150 ms RTT), probes every 500 ms, \
         default outage consensus, 1 s drain; nodes under {}",
        config.runs,
        dir.display()
    );
    let samples = run_bench(&dir, false, bench::run(&config))?;
    println!(
        "\nus-east-1 outage (node kill -9 + gateway down) -> failover COMPLETED, WAN triangle"
    );
    println!(
        "{:<26} {:>5} {:>14} {:>12} {:>9} {:>9} {:>10}",
        "leader placed in", "runs", "decided (med)", "COMPLETED", "min", "max", "elections"
    );
    let mut medians = Vec::new();
    for arm in ARMS {
        let Some((median, min, max, elections)) = bench::summarize(&samples, arm) else {
            continue;
        };
        let decided = bench::median_decided(&samples, arm).unwrap_or_default();
        let runs = samples.iter().filter(|s| s.arm == arm).count();
        println!(
            "{arm:<26} {runs:>5} {:>12.2} s {:>10.2} s {:>7.2} s {:>7.2} s {elections:>10}",
            decided.as_secs_f64(),
            median.as_secs_f64(),
            min.as_secs_f64(),
            max.as_secs_f64()
        );
        medians.push(median);
    }
    if let [east, eu] = medians.as_slice() {
        println!(
            "median saved by placing the leader outside us-east-1: {:.2} s ({:.2}x faster)",
            east.as_secs_f64() - eu.as_secs_f64(),
            east.as_secs_f64() / eu.as_secs_f64().max(1e-9)
        );
    }
    Ok(())
}

fn wan_bench(args: &WanBenchArgs) -> anyhow::Result<()> {
    use arbiter_jepsen::wan_bench::{self, WanConfig};
    let dir = match &args.out {
        Some(dir) => dir.clone(),
        None => std::env::temp_dir().join(format!("arbiter-wan-bench-{}", std::process::id())),
    };
    let config = WanConfig {
        binary: run_dir::locate_arbiter(args.arbiter_bin.as_deref()).map_err(anyhow::Error::msg)?,
        dir: dir.clone(),
        commits: args.commits.max(1),
        clients: args.clients.max(1),
        connections: args.connections.max(1),
        phase: Duration::from_secs(args.seconds.max(1)),
        max_ops: args.max_ops,
        failovers: args.failovers,
        timing: args.timing.get(),
    };
    eprintln!(
        "wan-bench: profile wan ({}), WAN triangle (70/90/150 ms RTT), leader placed in \
         us-east-1; {} sequential commits, {} clients over {} connections x {} s per phase, {} \
         leader kills; data under {}",
        config.timing.describe(arbiter::config::Profile::Wan),
        config.commits,
        config.clients,
        config.connections,
        args.seconds,
        config.failovers,
        dir.display()
    );
    let figures = run_bench(&dir, args.keep, wan_bench::run(&config))?;
    println!("\narbiter over the WAN triangle (profile wan, leader in us-east-1)");
    print!("{}", figures.table(config.clients, config.connections));
    Ok(())
}

/// Runs a benchmark's `work` on a fresh runtime until it ends or Ctrl-C comes, then removes its
/// scratch `dir` either way, unless asked to `keep` it (its node logs, for a closer look).
fn run_bench<T, E: Into<anyhow::Error>>(
    dir: &std::path::Path,
    keep: bool,
    work: impl std::future::Future<Output = Result<T, E>>,
) -> anyhow::Result<T> {
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let outcome = runtime.block_on(async {
        tokio::select! {
            outcome = work => Some(outcome),
            () = interrupted() => None,
        }
    });
    if keep {
        eprintln!("kept {}", dir.display());
    } else {
        let _ = std::fs::remove_dir_all(dir);
    }
    outcome
        .ok_or_else(|| anyhow::anyhow!("interrupted"))?
        .map_err(Into::into)
}

/// Resolves on SIGINT or SIGTERM.
async fn interrupted() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            // Without a SIGTERM handler, Ctrl-C still works.
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}

fn print_recovery(results: &Results, final_recovery: Option<Duration>) {
    let mut times: Vec<u64> = results
        .availability
        .recoveries
        .iter()
        .filter_map(|r| r.recovery_ns)
        .collect();
    times.sort_unstable();
    let unrecovered = results.availability.recoveries.len() - times.len();
    let ms = |ns: u64| ns as f64 / 1e6;
    if let (Some(max), Some(median)) = (times.last(), times.get(times.len() / 2)) {
        println!(
            "\nrecovery after heal: {} faults, median {:.0} ms, max {:.0} ms{}",
            times.len(),
            ms(*median),
            ms(*max),
            if unrecovered > 0 {
                format!(", {unrecovered} never recovered")
            } else {
                String::new()
            }
        );
    }
    match final_recovery {
        Some(d) => println!(
            "final heal -> first successful read: {:.0} ms",
            d.as_secs_f64() * 1e3
        ),
        None => println!("final heal -> no successful read within the final-read window"),
    }
}

fn print_files(files: &ReportFiles) {
    println!(
        "\nwrote {}, {}, {}",
        files.results_json.display(),
        files.summary_txt.display(),
        files.timeline_svg.display()
    );
}
