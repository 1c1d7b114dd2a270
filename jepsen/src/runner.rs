//! One run, end to end: start the cluster behind its proxies, run the workloads and the nemesis
//! schedule together for the time limit, heal, read everything once more, then judge the
//! history and write the report.
//!
//! Invariant: the run is bounded — every worker stops at the deadline (plus one call's
//! timeout), every fault is healed by the time limit, the final reads give up after
//! [`FINAL_READS_WITHIN`] — and its verdict comes only from the recorded history, through the
//! same [`checker::check_all`] that `arbiter-jepsen check` runs on a file.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arbiter::config::Profile;
use arbiter_client::{ArbiterClient, ClientError, ClientOptions};
use serde::Serialize;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

use crate::api::ApiClient;
use crate::checker::{self, CheckConfig, Results};
use crate::cluster::{Cluster, ClusterConfig, ClusterError};
use crate::fault_injector::{self, progress};
use crate::fenced_store::{FencedStore, Fencing};
use crate::history::{History, HistoryError, RunClock};
use crate::nemesis::{
    Fault, FaultKind, Schedule, ScheduleConfig, ScheduleConfigError, WindowError,
};
use crate::network::DelayTable;
use crate::pg_store::PgFencedStore;
use crate::recorder::Recorder;
use crate::report::{self, ReportFiles};
use crate::workload::failover_log::{self, AppendCount, DR_CONFIG_TOML};
use crate::workload::holder_board::HolderBoard;
use crate::workload::lagging_replica::LaggingReplica;
use crate::workload::lease::{self, LeaseSetup};
use crate::workload::register::{self, RegisterSetup, WriteRoute, REPLICA_LAG};
use crate::workload::{Budget, Context, Deadline, UnsafeControls, WorkResult};

/// How long the final reads may keep trying after everything is healed.
pub const FINAL_READS_WITHIN: Duration = Duration::from_secs(60);
const LEASE_HOLDERS: u64 = 4;
const LEASE_RESOURCES: [&str; 2] = ["db/orders", "db/ledger"];
const REGISTER_CLIENTS: u64 = 3;
const TENANTS: usize = 3;
const LOG_APPENDERS: u64 = 2;
const LOG_READERS: u64 = 2;
/// Calls per worker per second of time limit, at most: far above what the pauses allow, it
/// only bounds a worker whose calls fail instantly.
const CALLS_PER_SECOND: u64 = 100;

/// Where lease holders write: the harness's in-process resources, or a real PostgreSQL behind
/// the arbiter's fence.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    #[default]
    Memory,
    Postgres,
}

/// Whether the peer links carry the planning WAN latencies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Latency {
    /// The 70/90/150 ms RTT triangle; nodes run the `wan` profile.
    Wan,
    /// No added latency; nodes run the `lan` profile (fast runs, CI).
    None,
}

/// Timeouts, TTLs and fault lengths that suit a latency setting.
#[derive(Debug, Clone)]
pub struct Pacing {
    pub profile: Profile,
    pub delays: DelayTable,
    pub lease_ttl: Duration,
    /// Per HTTP attempt: above the server's write timeout, so it reports its own timeouts.
    pub http_timeout: Duration,
    pub client: ClientOptions,
    /// Pause between one worker's calls.
    pub gap_ms: (u64, u64),
    pub fault_ms: (u64, u64),
    pub quiet_ms: (u64, u64),
}

impl Pacing {
    pub fn for_latency(latency: Latency, nodes: usize) -> Pacing {
        match latency {
            Latency::None => Pacing {
                profile: Profile::Lan,
                delays: DelayTable::default(),
                // The lan profile's minimum is 300 ms (1.5 election timeouts).
                lease_ttl: Duration::from_millis(1_500),
                http_timeout: Duration::from_secs(4),
                client: ClientOptions::default(),
                gap_ms: (20, 120),
                fault_ms: (3_000, 12_000),
                quiet_ms: (3_000, 8_000),
            },
            Latency::Wan => Pacing {
                profile: Profile::Wan,
                delays: DelayTable::wan(nodes),
                // The wan profile's minimum is 1.5 s.
                lease_ttl: Duration::from_secs(5),
                http_timeout: Duration::from_secs(12),
                client: ClientOptions {
                    attempt_timeout: Duration::from_secs(10),
                    call_deadline: Duration::from_secs(20),
                    ..ClientOptions::default()
                },
                gap_ms: (50, 250),
                fault_ms: (5_000, 20_000),
                quiet_ms: (5_000, 15_000),
            },
        }
    }

    /// A lease-holder pause long enough for the lease to expire on the arbiter and another
    /// holder to be granted it: the holder's TTL, the arbiter's draining wait (another TTL),
    /// the contender's retries, and slack.
    pub fn stale_writer_pause_ms(&self) -> u64 {
        u64::try_from(self.lease_ttl.as_millis() * 4).unwrap_or(u64::MAX) + 2_000
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct RunConfig {
    pub seed: u64,
    pub nodes: usize,
    pub time_limit: Duration,
    pub kinds: Vec<FaultKind>,
    pub latency: Latency,
    pub dir: PathBuf,
    pub arbiter_bin: PathBuf,
    pub controls: UnsafeControls,
    /// Where lease holders' fenced writes go.
    pub fenced_store: StoreKind,
    #[serde(skip)]
    pub check: CheckConfig,
    /// `--snapshot-every` for the nodes: small, so snapshots and their installation happen
    /// under faults too.
    pub snapshot_every: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("run directory {} is not empty: every run needs a fresh one", .0.display())]
    NotEmpty(PathBuf),
    #[error("cannot write the run directory: {0}")]
    Dir(#[source] io::Error),
    #[error("invalid nemesis schedule: {0}")]
    Schedule(#[from] ScheduleConfigError),
    #[error("the cluster did not start: {0}")]
    ClusterStart(#[source] ClusterError),
    #[error("cannot make the lease client: {0}")]
    Client(#[from] ClientError),
    #[error("cannot start the PostgreSQL fenced store: {0}")]
    PgStore(#[from] arbiter::pg_cluster::PgError),
    #[error("cannot read the PostgreSQL fenced store: {0}")]
    PgStoreRead(String),
    #[error("the cluster started but seeding the tenants failed: {0}")]
    Seed(String),
    #[error("recording the history failed: {0}")]
    Record(#[source] io::Error),
    #[error("the recorded history is malformed: {0}")]
    History(#[from] HistoryError),
    #[error("the recorded faults are malformed: {0}")]
    Windows(#[from] WindowError),
    #[error("cannot write the report: {0}")]
    Report(#[source] io::Error),
}

pub struct RunOutcome {
    pub results: Results,
    pub files: ReportFiles,
    /// From the final heal to the first successful final read.
    pub final_recovery: Option<Duration>,
}

/// The seeded schedule, with the fault a negative control needs forced into it.
pub fn schedule(config: &RunConfig, pacing: &Pacing) -> Result<Schedule, ScheduleConfigError> {
    let time_limit_ms = u64::try_from(config.time_limit.as_millis()).unwrap_or(u64::MAX);
    let mut schedule_config = ScheduleConfig::new(config.seed, config.nodes, time_limit_ms);
    schedule_config.fault_ms = pacing.fault_ms;
    schedule_config.quiet_ms = pacing.quiet_ms;
    schedule_config.kinds = config.kinds.clone();
    let mut schedule = if config.kinds.is_empty() {
        Schedule::quiet(schedule_config)
    } else {
        Schedule::generate(schedule_config)?
    };
    // A stale writer (or an overrunning holder) only shows if a holder is frozen past its
    // lease while another takes over.
    if config.controls.no_fencing || config.controls.ignore_deadline {
        schedule.ensure(Fault::PauseLeaseHolder, pacing.stale_writer_pause_ms());
    }
    // Skipped syncs only lose acknowledged writes when every copy is lost at once.
    if config.controls.no_fsync {
        schedule.ensure(Fault::LoseUnsyncedAll, pacing.fault_ms.0);
    }
    Ok(schedule)
}

pub async fn run(config: &RunConfig) -> Result<RunOutcome, RunError> {
    let dir = &config.dir;
    // Nodes started on an old run's data would rejoin its cluster, with its membership and
    // its (long gone) proxy addresses.
    if fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_some()) {
        return Err(RunError::NotEmpty(dir.clone()));
    }
    fs::create_dir_all(dir).map_err(RunError::Dir)?;
    let pacing = Pacing::for_latency(config.latency, config.nodes);
    let schedule = schedule(config, &pacing)?;
    schedule.write(dir).map_err(RunError::Dir)?;
    write_json(&dir.join("run.json"), config).map_err(RunError::Dir)?;
    let dr_config = dir.join("dr.toml");
    fs::write(&dr_config, DR_CONFIG_TOML).map_err(RunError::Dir)?;
    eprint!("{schedule}");

    // Phase 1: the cluster, bootstrapped, and the tenants the registers live in.
    let clock = RunClock::start();
    progress(clock, &format!("starting {} nodes", config.nodes));
    let mut extra_args = vec![
        "--config".into(),
        dr_config.display().to_string(),
        "--snapshot-every".into(),
        config.snapshot_every.to_string(),
    ];
    if config.controls.no_fsync {
        extra_args.push("--unsafe-no-fsync".into());
    }
    let mut cluster = Cluster::start(&ClusterConfig {
        binary: config.arbiter_bin.clone(),
        nodes: config.nodes,
        root: dir.join("nodes"),
        profile: pacing.profile,
        delays: pacing.delays.clone(),
        extra_args,
        lazyfs: config.kinds.contains(&FaultKind::LoseUnsynced) || config.controls.no_fsync,
    })
    .await
    .map_err(RunError::ClusterStart)?;
    progress(clock, "cluster up");
    write_json(&dir.join("cluster.json"), &cluster.describe()).map_err(RunError::Dir)?;
    let recorder = Recorder::create(&dir.join("history.jsonl"), clock).map_err(RunError::Record)?;
    let mut ctx = Context {
        recorder: recorder.clone(),
        api: Arc::new(ApiClient::new(
            cluster.client_http_endpoints(),
            cluster
                .credentials()
                .http_client()
                .map_err(|e| RunError::ClusterStart(e.into()))?,
            pacing.http_timeout,
        )),
        deadline: Deadline(Instant::now() + FINAL_READS_WITHIN),
        budget: Budget(config.time_limit.as_secs().max(1) * CALLS_PER_SECOND),
        controls: config.controls,
        seed: config.seed,
        gap_ms: pacing.gap_ms,
    };
    let tenants: Vec<String> = (0..TENANTS).map(|i| format!("jepsen-t{i}")).collect();
    let route = register::seed(&ctx, &tenants)
        .await
        .map_err(RunError::Seed)?;
    progress(
        clock,
        &format!("tenants seeded; register writes via {route:?}"),
    );

    // Phase 2: workloads and nemesis, together, for the time limit.
    let start = Instant::now();
    ctx.deadline = Deadline(start + config.time_limit);
    let mut workloads = Workloads::spawn(
        &ctx,
        &cluster,
        &pacing,
        tenants.clone(),
        route,
        config.fenced_store,
    )
    .await?;
    let board = workloads.board.clone();
    progress(
        clock,
        &format!(
            "workloads running for {} s; {} faults scheduled",
            config.time_limit.as_secs(),
            schedule.faults.len()
        ),
    );
    let nemesis = fault_injector::run(&schedule, &mut cluster, &board, &recorder, start);
    let (nemesis, workload_error) = tokio::join!(nemesis, workloads.join());
    nemesis.map_err(RunError::Record)?;
    if let Some(e) = workload_error {
        return Err(RunError::Record(e));
    }

    // Phase 3: everything healed, every register and the log read once more.
    progress(clock, "time limit reached; healing everything");
    board.resume_all();
    if let Err(failed) = cluster.heal_all().await {
        progress(clock, &format!("could not restart {failed:?}"));
    }
    let healed = Instant::now();
    match cluster.wait_for_leader().await {
        Ok(leader) => progress(clock, &format!("leader after heal: n{leader}")),
        Err(e) => progress(clock, &format!("no leader after heal: {e}")),
    }
    ctx.deadline = Deadline(Instant::now() + FINAL_READS_WITHIN);
    let final_recovery = register::final_reads(&ctx, &tenants)
        .await
        .map_err(RunError::Record)?
        .map(|first_ok| first_ok - healed);
    failover_log::final_read(&ctx)
        .await
        .map_err(RunError::Record)?;
    progress(clock, "final reads done; stopping nodes");
    cluster.stop().await;
    for e in cluster.unmount() {
        progress(clock, &e.to_string());
    }

    // Phase 4: judge the history as recorded.
    let accepted = match &workloads.pg {
        // The database's own record of what it accepted.
        Some(pg) => pg.accepted().await.map_err(RunError::PgStoreRead)?,
        None => workloads.store.accepted(),
    };
    write_json(&dir.join("fenced_writes.json"), &accepted).map_err(RunError::Report)?;
    let history = History::read_jsonl(&dir.join("history.jsonl"))?;
    let results = checker::check_all(&history, &config.check)?;
    let files = report::write(dir, &history, &results).map_err(RunError::Report)?;
    Ok(RunOutcome {
        results,
        files,
        final_recovery,
    })
}

/// The running workers and what the nemesis and the report need from them.
struct Workloads {
    workers: JoinSet<WorkResult>,
    replica_feed: JoinHandle<()>,
    board: Arc<HolderBoard>,
    store: Arc<FencedStore>,
    pg: Option<Arc<PgFencedStore>>,
}

impl Workloads {
    async fn spawn(
        ctx: &Context,
        cluster: &Cluster,
        pacing: &Pacing,
        tenants: Vec<String>,
        route: WriteRoute,
        store_kind: StoreKind,
    ) -> Result<Workloads, RunError> {
        let board = Arc::new(HolderBoard::default());
        let fencing = if ctx.controls.no_fencing {
            Fencing::AcceptAll
        } else {
            Fencing::Enforce
        };
        let store = Arc::new(FencedStore::new(fencing));
        let pg = match store_kind {
            StoreKind::Memory => None,
            StoreKind::Postgres => Some(Arc::new(PgFencedStore::start(fencing).await?)),
        };
        let secure = cluster
            .credentials()
            .client_options()
            .map_err(|e| RunError::ClusterStart(e.into()))?;
        let options = ClientOptions {
            tls: secure.tls,
            token: secure.token,
            ..pacing.client.clone()
        };
        let client = ArbiterClient::connect(cluster.client_grpc_endpoints(), options).await?;
        let leases = Arc::new(LeaseSetup {
            client,
            resources: LEASE_RESOURCES.iter().map(|r| r.to_string()).collect(),
            ttl: pacing.lease_ttl,
            store: store.clone(),
            pg: pg.clone(),
            board: board.clone(),
        });
        let registers = Arc::new(RegisterSetup {
            tenants,
            route,
            replica: ctx.controls.stale_reads.then(|| {
                let lag = u64::try_from(REPLICA_LAG.as_nanos()).unwrap_or(u64::MAX);
                Arc::new(Mutex::new(LaggingReplica::new(lag)))
            }),
        });
        let appends = Arc::new(AppendCount::default());

        let mut workers = JoinSet::new();
        for i in 0..LEASE_HOLDERS {
            workers.spawn(lease::holder(ctx.clone(), leases.clone(), i));
        }
        workers.spawn(lease::epoch_reader(ctx.clone(), leases.clone()));
        for i in 0..REGISTER_CLIENTS {
            workers.spawn(register::client(ctx.clone(), registers.clone(), i));
        }
        for i in 0..LOG_APPENDERS {
            workers.spawn(failover_log::appender(ctx.clone(), appends.clone(), i));
        }
        for i in 0..LOG_READERS {
            workers.spawn(failover_log::reader(ctx.clone(), i));
        }
        let replica_feed = tokio::spawn(register::feed_replica(ctx.clone(), registers));
        Ok(Workloads {
            workers,
            replica_feed,
            board,
            store,
            pg,
        })
    }

    /// Waits for every worker; the first error (a history write, a panic) wins.
    async fn join(&mut self) -> Option<io::Error> {
        let mut first_error = None;
        while let Some(done) = self.workers.join_next().await {
            let error = match done {
                Ok(Ok(())) => continue,
                Ok(Err(e)) => e,
                Err(panic) => io::Error::other(format!("worker panicked: {panic}")),
            };
            first_error.get_or_insert(error);
        }
        self.replica_feed.abort();
        first_error
    }
}

fn write_json(path: &Path, value: &impl Serialize) -> io::Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(io::Error::other)?;
    fs::write(path, text + "\n")
}
