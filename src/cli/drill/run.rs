//! One drill run of `arbiter drill`: a regional failover, end to end, on one machine,
//! measured.
//!
//! One run starts everything on loopback: a three-node arbiter (TLS, tokens, the `lan`
//! profile, the DR controller with default settings), two PostgreSQL 15 servers (the
//! us-east-1 primary and its us-west-2 streaming standby, synchronous or asynchronous), one
//! `arbiter db-agent` and one `arbiter gateway` per region as child processes, three probe
//! agents (london, tokyo, sydney) and one writer per region. Each writer is the region's
//! application: it writes numbered rows through the SDK's fenced transaction with its agent's
//! lease token, and keeps using the last token it saw even when its agent has lost the lease,
//! so that only the database can stop it. Then the drill injects the fault at us-east-1:
//!
//! - `kill`: SIGKILL of the database (postmaster), the agent and the gateway;
//! - `stop`: SIGSTOP of the same (a hung host), resumed only after the measurement;
//! - `partition`: nftables drop the agent's segments to the arbiter and the probes' to the
//!   gateway, and the replication link is cut; the database and its writer keep running;
//! - `split-brain`: the replication link is cut and the agent loses the arbiter, but the
//!   gateway stays healthy: both regions alive, the arbiter reachable from us-west-2 only.
//!
//! It measures, from the fault: detection (the failover event logged), fence (its fence step),
//! promotion (the standby out of recovery), RTO (the first write acknowledged in us-west-2) and
//! RPO (every acknowledged write id looked up on the new primary), next to what `GET /v1/plan`
//! predicts for the same settings and the controller's data-loss estimate; and that no write
//! was acknowledged in us-east-1 after us-west-2 was granted the lease.
//!
//! Invariant: every process the drill starts is stopped by it (by PID) and every rule it adds
//! is removed, on success, failure or Ctrl-C; a run's files are kept only when it failed or
//! `--keep` was given.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use arbiter_client::pg_fence::{self, fenced_transaction_with_token, FencedWriteError};
use arbiter_client::{FencingToken, ResourceId};
use serde::Serialize;
use serde_json::Value;
use tokio::sync::oneshot;

use super::edges::{EdgeFigures, EdgeLoad};
use super::link::Link;
use super::partition::{self, Partition};
use super::report::{self, Milestone, RunReport, SplitBrainCheck, WriteCounts};
use crate::api_client::{Answer, ApiClient};
use crate::auth::issue::{issue, TokenGrant};
use crate::auth::Role;
use crate::certs::DevCerts;
use crate::config::Profile;
use crate::dr::probe_agent::{self, ProbeAgentConfig};
use crate::http_client::HttpClient;
use crate::local_cluster::{initialize, wait_for_leader, Listeners, NodeProcess, NodeSpec};
use crate::pg_cluster::{PgOptions, PgServer, SOCKET_PORT};
use crate::tls::ClientCredentials;

pub const EAST: &str = "us-east-1";
pub const WEST: &str = "us-west-2";
pub const OTHER: &str = "eu-central-1";
const REGIONS: [&str; 3] = [EAST, WEST, OTHER];
const VANTAGES: [&str; 3] = ["london", "tokyo", "sydney"];
/// The edge routers' points of presence; clients send through them.
const EDGES: [&str; 2] = ["pop-fra", "pop-iad"];
pub const EDGE_COUNT: usize = EDGES.len();
/// HTTP clients behind the edges, each sending a request every [`EDGE_CLIENT_PAUSE`].
const EDGE_CLIENTS: usize = 8;
const EDGE_CLIENT_PAUSE: Duration = Duration::from_millis(20);
/// The leased resource: the name the agents hold and the writers' fenced writes use.
pub const RESOURCE: &str = "db/primary";
/// How often the drill looks at the world once the fault is in.
const POLL: Duration = Duration::from_millis(50);
/// Database sessions per region's writer.
const WRITER_SESSIONS: u32 = 4;
/// A write that takes longer is abandoned (not acknowledged): a hung or cut-off primary.
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);
/// Starting anything (a node, a server, an agent) takes at most this long.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Synchronous (`synchronous_standby_names`: the seed's critical data, RPO 0) or asynchronous
/// streaming replication.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Sync,
    Async,
}

/// What happens to us-east-1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Fault {
    Kill,
    Stop,
    Partition,
    SplitBrain,
}

impl Fault {
    fn needs_nftables(self) -> bool {
        matches!(self, Fault::Partition | Fault::SplitBrain)
    }

    /// Whether the probes see the region go dark, so the controller fails it over.
    fn controller_fails_over(self) -> bool {
        !matches!(self, Fault::SplitBrain)
    }
}

#[derive(Debug, Clone)]
pub struct DrillOptions {
    pub mode: Mode,
    pub fault: Fault,
    pub runs: u32,
    /// Writes per second each region's writer attempts.
    pub rate: u32,
    /// Bytes of payload per write (the seed's 1 KB).
    pub payload_bytes: usize,
    /// Load before the fault, so replication and the controller's view are warm.
    pub warmup: Duration,
    pub lease_ttl: Duration,
    pub probe_interval: Duration,
    /// Round trip between the regions, added to the replication link.
    pub link_rtt: Duration,
    /// A run that has not seen its first write in us-west-2 this long after the fault fails.
    pub timeout: Duration,
    /// Where runs, the JSON report and the SVG timeline go.
    pub out: PathBuf,
    pub keep: bool,
    /// The `arbiter` binary to start nodes, agents and gateways from.
    pub binary: PathBuf,
}

/// Runs `options.runs` drills one after the other; returns every run's report (a failed run
/// is reported, not fatal). Progress goes to stderr.
pub async fn run_all(options: &DrillOptions) -> anyhow::Result<Vec<RunReport>> {
    crate::pg_cluster::PgInstall::locate().context("PostgreSQL 15 is needed")?;
    if options.fault.needs_nftables() {
        partition::available().map_err(anyhow::Error::msg)?;
    }
    std::fs::create_dir_all(&options.out)
        .with_context(|| format!("creating {}", options.out.display()))?;
    let mut reports = Vec::new();
    for run in 1..=options.runs {
        eprintln!(
            "== drill {run}/{}: {:?} replication, fault {:?}",
            options.runs, options.mode, options.fault
        );
        let dir = options.out.join(format!("run-{run:02}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let started = Instant::now();
        let mut report = match one_run(options, run, &dir).await {
            Ok(report) => report,
            Err(e) => {
                eprintln!("   run {run} failed: {e:#}");
                RunReport::failed(run, options.mode, options.fault, format!("{e:#}"))
            }
        };
        report.wall_seconds = started.elapsed().as_secs_f64();
        if report.error.is_none() && !options.keep {
            let _ = std::fs::remove_dir_all(&dir);
        } else {
            report.files = Some(dir.display().to_string());
        }
        eprintln!("   {}", report.one_line());
        reports.push(report);
    }
    Ok(reports)
}

/// Everything one run started; dropping it stops all of it.
struct Stage {
    /// The run's directory (logs).
    dir: PathBuf,
    nodes: Vec<NodeProcess>,
    east_db: Option<PgServer>,
    west_db: Option<PgServer>,
    link: Option<Link>,
    /// (region, child) of agents and gateways.
    children: Vec<(String, &'static str, tokio::process::Child)>,
    probes: Vec<oneshot::Sender<()>>,
    partition: Option<Partition>,
    east_paused: bool,
}

impl Stage {
    fn pid_of(&self, region: &str, what: &str) -> Option<u32> {
        self.children
            .iter()
            .find(|(r, w, _)| r == region && *w == what)
            .and_then(|(_, _, c)| c.id())
    }

    fn signal(&self, region: &str, what: &str, signal: i32) {
        if let Some(pid) = self.pid_of(region, what) {
            // SAFETY: kill(2) on a child this drill started and has not yet reaped.
            unsafe {
                libc::kill(pid as libc::pid_t, signal);
            }
        }
    }

    async fn teardown(&mut self) {
        for stop in self.probes.drain(..) {
            let _ = stop.send(());
        }
        self.partition = None;
        for (_, _, child) in &mut self.children {
            if let Some(pid) = child.id() {
                // SAFETY: as in `signal`; SIGCONT first so a stopped child can die at once.
                unsafe {
                    libc::kill(pid as libc::pid_t, libc::SIGCONT);
                }
            }
            let _ = child.kill().await;
        }
        self.children.clear();
        if self.east_paused {
            if let Some(db) = &self.east_db {
                let _ = db.resume();
            }
            self.east_paused = false;
        }
        self.link = None;
        self.west_db = None;
        self.east_db = None;
        for node in &mut self.nodes {
            node.stop(Duration::from_secs(5)).await;
        }
        self.nodes.clear();
    }
}

impl Drop for Stage {
    fn drop(&mut self) {
        // Reached without `teardown` only on Ctrl-C or a panic: children are killed on drop
        // (`kill_on_drop`), nodes by `NodeProcess`'s drop, servers by `PgServer`'s.
        if self.east_paused {
            if let Some(db) = &self.east_db {
                let _ = db.resume();
            }
        }
        for (_, _, child) in &self.children {
            if let Some(pid) = child.id() {
                // SAFETY: as in `Stage::signal`.
                unsafe {
                    libc::kill(pid as libc::pid_t, libc::SIGCONT);
                }
            }
        }
    }
}

/// One acknowledged write.
#[derive(Debug, Clone, Copy)]
struct Ack {
    id: i64,
    at: Instant,
}

/// One region's application: writes under the newest token its agent showed.
struct Writer {
    acks: Arc<Mutex<Vec<Ack>>>,
    errors: Arc<Mutex<BTreeMap<String, u64>>>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Writer {
    fn start(
        region: &'static str,
        dsn: String,
        agent: AgentView,
        ids: Arc<AtomicI64>,
        rate: u32,
        payload: Arc<String>,
    ) -> Writer {
        let acks = Arc::new(Mutex::new(Vec::new()));
        let errors = Arc::new(Mutex::new(BTreeMap::new()));
        let token = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        // The token follows the agent: the newest token of a held lease on an open database.
        // It is never reset, so a writer whose region lost the lease keeps trying with it.
        let watcher = {
            let token = token.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    if let Some(status) = agent.status().await {
                        if status["writable"] == Value::Bool(true)
                            && status["lease"]["state"] == "held"
                        {
                            if let Some(t) = status["lease"]["token"].as_u64() {
                                token.fetch_max(t, Ordering::Relaxed);
                            }
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            })
        };
        let mut tasks = vec![watcher];
        // Several sessions, each its share of the rate: a synchronous commit waits a round
        // trip to the other region, which one session alone would make the ceiling.
        for _ in 0..WRITER_SESSIONS {
            let (acks, errors, token, stop) =
                (acks.clone(), errors.clone(), token.clone(), stop.clone());
            let (dsn, ids, payload) = (dsn.clone(), ids.clone(), payload.clone());
            tasks.push(tokio::spawn(async move {
                let period =
                    Duration::from_secs_f64(f64::from(WRITER_SESSIONS) / f64::from(rate.max(1)));
                let mut next = tokio::time::Instant::now();
                let mut client: Option<tokio_postgres::Client> = None;
                let resource = ResourceId::new(RESOURCE);
                let count = |kind: &str| {
                    *errors
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .entry(kind.to_string())
                        .or_insert(0) += 1;
                };
                while !stop.load(Ordering::Relaxed) {
                    tokio::time::sleep_until(next).await;
                    next += period;
                    let now = tokio::time::Instant::now();
                    if next + period * 10 < now {
                        next = now; // no burst after a stall
                    }
                    let t = token.load(Ordering::Relaxed);
                    if t == 0 {
                        continue;
                    }
                    if client.is_none() {
                        match tokio::time::timeout(WRITE_TIMEOUT, connect(&dsn)).await {
                            Ok(Ok(c)) => client = Some(c),
                            _ => {
                                count("connect");
                                continue;
                            }
                        }
                    }
                    let Some(c) = client.as_mut() else { continue };
                    let id = ids.fetch_add(1, Ordering::Relaxed);
                    let payload = payload.clone();
                    let write =
                        fenced_transaction_with_token(c, &resource, FencingToken(t), move |tx| {
                            Box::pin(async move {
                                tx.execute(
                                    "INSERT INTO drill_writes (id, region, token, payload) \
                                     VALUES ($1, $2, $3, $4)",
                                    &[&id, &region, &(t as i64), &*payload],
                                )
                                .await
                            })
                        });
                    match tokio::time::timeout(WRITE_TIMEOUT, write).await {
                        Ok(Ok(_)) => acks.lock().unwrap_or_else(|e| e.into_inner()).push(Ack {
                            id,
                            at: Instant::now(),
                        }),
                        Ok(Err(e)) => {
                            count(error_kind(&e));
                            if c.is_closed() {
                                client = None;
                            }
                        }
                        Err(_) => {
                            count("timeout");
                            client = None;
                        }
                    }
                }
            }));
        }
        Writer {
            acks,
            errors,
            stop,
            tasks,
        }
    }

    fn acks(&self) -> Vec<Ack> {
        self.acks.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn errors(&self) -> BTreeMap<String, u64> {
        self.errors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    async fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            // A write in flight ends by its own timeout; give it that long.
            let _ = tokio::time::timeout(WRITE_TIMEOUT * 2, task).await;
        }
    }
}

fn error_kind(e: &FencedWriteError<tokio_postgres::Error>) -> &'static str {
    let code = match e {
        FencedWriteError::Stale(_) => return "stale token (AF001)",
        FencedWriteError::Write(e) | FencedWriteError::Database(e) => e.code().cloned(),
        _ => return "lease or token refused by the SDK",
    };
    match code {
        Some(c) if c == tokio_postgres::error::SqlState::READ_ONLY_SQL_TRANSACTION => {
            "read-only (25006)"
        }
        Some(c) if c == tokio_postgres::error::SqlState::ADMIN_SHUTDOWN => "session ended (57P01)",
        Some(_) => "other SQL error",
        None => "connection",
    }
}

async fn connect(dsn: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(dsn, tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// How the drill reads an agent's `/v1/agent/status`.
#[derive(Clone)]
struct AgentView {
    url: String,
    http: HttpClient,
}

impl AgentView {
    async fn status(&self) -> Option<Value> {
        let response = self
            .http
            .request("GET", &self.url, None, Duration::from_millis(500))
            .await
            .ok()?;
        if !response.is_success() {
            return None;
        }
        serde_json::from_slice(&response.body).ok()
    }
}

/// Waits for `check` to give a value, polling every 50 ms, at most `timeout`.
async fn until<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return Ok(value);
        }
        if Instant::now() > deadline {
            bail!("{what}: not within {timeout:?}");
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Waits for a child's stderr log to name its address (`http://ADDR/`).
async fn announced_addr(log: &Path, child: &mut tokio::process::Child) -> anyhow::Result<String> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(rest) = text.split("http://").nth(1) {
            if let Some(addr) = rest.split('/').next() {
                if addr.parse::<SocketAddr>().is_ok() {
                    return Ok(addr.to_string());
                }
            }
        }
        if let Some(status) = child.try_wait()? {
            bail!("{} exited ({status}): {}", log.display(), text.trim());
        }
        if Instant::now() > deadline {
            bail!(
                "{} announced no address within {START_TIMEOUT:?}",
                log.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn spawn_logged(
    binary: &Path,
    args: &[String],
    log: &Path,
    gid: Option<u32>,
) -> anyhow::Result<tokio::process::Child> {
    let file = std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let mut command = tokio::process::Command::new(binary);
    command
        .args(args)
        .env("ARBITER_LOG", "info,openraft=warn,tokio_postgres=warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(file))
        .kill_on_drop(true);
    if let Some(gid) = gid {
        command.gid(gid);
    }
    command
        .spawn()
        .with_context(|| format!("starting {} {}", binary.display(), args.join(" ")))
}

/// Starts `what` (`gateway`, `db-agent`) of `region` with its stderr in `<what>-<region>.log`
/// beside the nodes, adds it to the stage, and returns the address it announced.
async fn start_child(
    stage: &mut Stage,
    binary: &Path,
    region: &str,
    what: &'static str,
    args: &[String],
    gid: Option<u32>,
) -> anyhow::Result<String> {
    let log = stage.dir.join(format!("{what}-{region}.log"));
    let mut child = spawn_logged(binary, args, &log, gid)?;
    let announced = announced_addr(&log, &mut child).await;
    stage.children.push((region.to_string(), what, child));
    announced
}

/// The group id the isolated region's agent runs under, matched by the partition rule.
fn isolated_gid() -> u32 {
    60_000 + std::process::id() % 5_000
}

fn ms_since(t0: Instant, t: Instant) -> u64 {
    t.saturating_duration_since(t0).as_millis() as u64
}

async fn one_run(options: &DrillOptions, run: u32, dir: &Path) -> anyhow::Result<RunReport> {
    let mut stage = Stage {
        dir: dir.to_path_buf(),
        nodes: Vec::new(),
        east_db: None,
        west_db: None,
        link: None,
        children: Vec::new(),
        probes: Vec::new(),
        partition: None,
        east_paused: false,
    };
    let result = drive(options, run, dir, &mut stage).await;
    stage.teardown().await;
    result
}

async fn drive(
    options: &DrillOptions,
    run: u32,
    dir: &Path,
    stage: &mut Stage,
) -> anyhow::Result<RunReport> {
    let setup_started = Instant::now();
    // --- credentials: the local CA, the operator, each agent and probe its own identity.
    let certs_dir = dir.join("certs");
    let node_regions: Vec<(u64, String)> = REGIONS
        .iter()
        .enumerate()
        .map(|(i, r)| (i as u64 + 1, r.to_string()))
        .collect();
    let certs = DevCerts::ensure(&certs_dir, &node_regions).context("creating the drill CA")?;
    let tokens_file = certs.tokens_file();
    let operator = certs.operator();
    let operator_http = operator.http_client()?;
    let mut agent_tokens = BTreeMap::new();
    for region in [EAST, WEST] {
        let token = issue(
            &tokens_file,
            &TokenGrant {
                identity: format!("db-agent-{region}"),
                role: Role::Region,
                region: Some(region.into()),
                vantage: None,
            },
        )?;
        let path = dir.join(format!("agent-{region}.token"));
        crate::auth::issue::write_private(&path, token.as_bytes())?;
        agent_tokens.insert(region, path);
    }
    let webhook_token = crate::auth::token::generate();
    let webhook_file = dir.join("webhook.token");
    crate::auth::issue::write_private(&webhook_file, webhook_token.as_bytes())?;
    let mut probe_tokens = Vec::new();
    for vantage in VANTAGES {
        probe_tokens.push(issue(
            &tokens_file,
            &TokenGrant {
                identity: format!("probe-{vantage}"),
                role: Role::Probe,
                region: None,
                vantage: Some(vantage.into()),
            },
        )?);
    }

    let mut edge_tokens = Vec::new();
    for name in EDGES {
        let token = issue(
            &tokens_file,
            &TokenGrant {
                identity: name.into(),
                role: Role::Edge,
                region: None,
                vantage: None,
            },
        )?;
        let path = dir.join(format!("{name}.token"));
        crate::auth::issue::write_private(&path, token.as_bytes())?;
        edge_tokens.push(path);
    }

    // --- the arbiter: three nodes with the DR controller's defaults.
    let dr_config = dir.join("dr.toml");
    std::fs::write(
        &dr_config,
        format!(
            "[dr]\nwrite_rate_per_sec = {}\nwrite_bytes = {}\n\n[[dr.links]]\nsource = \"{EAST}\"\n\
             target = \"{WEST}\"\nmode = \"{}\"\n",
            options.rate,
            options.payload_bytes,
            match options.mode {
                Mode::Sync => "SYNC",
                Mode::Async => "ASYNC",
            }
        ),
    )?;
    progress(setup_started, "starting the arbiter (3 nodes, TLS)");
    for (id, region) in &node_regions {
        let spec = NodeSpec {
            id: *id,
            region: region.clone(),
            data_dir: dir.join(format!("node-{id}")),
            listeners: Listeners::loopback()?,
            grpc_advertise: None,
            peer_advertise: None,
            tls: Some(certs.node_tls(*id)),
            profile: Profile::Lan,
            extra_args: vec![
                "--auth-tokens-file".into(),
                tokens_file.display().to_string(),
                "--config".into(),
                dr_config.display().to_string(),
            ],
            env: Vec::new(),
        };
        stage
            .nodes
            .push(spec.start(&options.binary, START_TIMEOUT).await?);
    }
    let client_options = operator.client_options()?;
    let members = stage.nodes.iter().map(NodeProcess::info).collect();
    initialize(
        &stage.nodes[0].ready.grpc_addr,
        members,
        START_TIMEOUT,
        &client_options,
    )
    .await?;
    let grpc: Vec<String> = stage
        .nodes
        .iter()
        .map(|n| n.ready.grpc_addr.clone())
        .collect();
    let http: Vec<String> = stage
        .nodes
        .iter()
        .map(|n| n.ready.http_addr.clone())
        .collect();
    wait_for_leader(&grpc, START_TIMEOUT, &client_options).await?;
    let api = ApiClient::new(http.clone(), operator_http.clone(), Duration::from_secs(2));

    // --- the databases.
    progress(
        setup_started,
        &format!(
            "starting PostgreSQL: {EAST} primary, {WEST} standby ({:?})",
            options.mode
        ),
    );
    let east_options = PgOptions::default().setting("wal_receiver_status_interval", "1s");
    let east_db = PgServer::start_primary(EAST, east_options).await?;
    {
        let mut db = east_db.connect("postgres").await?;
        pg_fence::install(&mut db).await?;
        db.batch_execute(
            "CREATE TABLE drill_writes (id bigint PRIMARY KEY, region text NOT NULL, \
             token bigint NOT NULL, payload text NOT NULL, \
             at timestamptz NOT NULL DEFAULT clock_timestamp())",
        )
        .await?;
    }
    let link = Link::start(
        east_db.socket_dir().join(format!(".s.PGSQL.{SOCKET_PORT}")),
        options.link_rtt / 2,
    )
    .await?;
    let west_db = PgServer::start_standby(
        &east_db,
        WEST,
        PgOptions::default()
            .setting("wal_receiver_status_interval", "1s")
            .setting(
                "primary_conninfo",
                format!(
                    "host=127.0.0.1 port={} user=postgres application_name={WEST}",
                    link.addr().port()
                ),
            ),
    )
    .await?;
    east_db.wait_streaming(WEST).await?;
    if options.mode == Mode::Sync {
        // Only now: a synchronous commit with no standby yet would wait forever.
        east_db
            .query(&format!(
                "ALTER SYSTEM SET synchronous_standby_names = '\"{WEST}\"'"
            ))
            .await?;
        east_db.query("SELECT pg_reload_conf()").await?;
        east_db.wait_synchronous(WEST).await?;
    }
    let east_dsn = east_db.dsn("postgres");
    let west_dsn = west_db.dsn("postgres");
    stage.east_db = Some(east_db);
    stage.west_db = Some(west_db);
    stage.link = Some(link);

    // --- gateways and agents, one of each per region, as processes of their own.
    progress(
        setup_started,
        "starting gateways, db-agents, probes and edge routers",
    );
    let mut gateways = BTreeMap::new();
    for region in REGIONS {
        let args = vec![
            "gateway".to_string(),
            "--region".into(),
            region.into(),
            "--listen".into(),
            "127.0.0.1:0".into(),
        ];
        let addr = start_child(stage, &options.binary, region, "gateway", &args, None).await?;
        gateways.insert(region, addr);
    }
    let ca_arg = operator
        .ca
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let agent_http = HttpClient::new(None, Some(&webhook_token));
    let mut agents = BTreeMap::new();
    for (region, dsn) in [(EAST, &east_dsn), (WEST, &west_dsn)] {
        let args = vec![
            "db-agent".to_string(),
            "--region".into(),
            region.into(),
            "--pg-dsn".into(),
            dsn.clone(),
            "--lease-ttl".into(),
            format!("{}", options.lease_ttl.as_secs_f64()),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--webhook-token-file".into(),
            webhook_file.display().to_string(),
            "--state-dir".into(),
            dir.join(format!("db-agent-{region}")).display().to_string(),
            "--endpoints".into(),
            grpc.join(","),
            "--http-endpoints".into(),
            http.join(","),
            "--ca".into(),
            ca_arg.clone(),
            "--token-file".into(),
            agent_tokens[region].display().to_string(),
        ];
        // us-east-1's agent runs under a group of its own: the partition rule matches it.
        let gid = (region == EAST && options.fault.needs_nftables()).then(isolated_gid);
        let addr = start_child(stage, &options.binary, region, "db-agent", &args, gid).await?;
        agents.insert(
            region,
            AgentView {
                url: format!("http://{addr}/v1/agent/status"),
                http: agent_http.clone(),
            },
        );
        if region == EAST {
            // The primary's agent holds the lease before the standby's starts (which would
            // leave a never-held lease alone anyway), so the run starts from one known state.
            let east = agents[EAST].clone();
            until(
                "the us-east-1 agent to open its database",
                START_TIMEOUT,
                || async {
                    let s = east.status().await?;
                    (s["writable"] == Value::Bool(true) && s["lease"]["state"] == "held")
                        .then_some(())
                },
            )
            .await?;
        }
    }
    for (vantage, token) in VANTAGES.iter().zip(&probe_tokens) {
        let (stop, stopped) = oneshot::channel::<()>();
        let config = ProbeAgentConfig {
            vantage: vantage.to_string(),
            targets: gateways
                .iter()
                .map(|(r, a)| (r.to_string(), format!("http://{a}/v1/health/check")))
                .collect(),
            arbiters: http.clone(),
            arbiter_http: ClientCredentials {
                token: Some(token.clone()),
                token_file: None,
                ..operator.clone()
            }
            .http_client()?,
            interval: options.probe_interval,
            timeout: options.probe_interval.mul_f64(0.8),
        };
        tokio::spawn(probe_agent::run(config, async {
            let _ = stopped.await;
        }));
        stage.probes.push(stop);
    }
    // --- edge routers in front of the gateways, routing by the arbiter's table.
    let mut edges = Vec::new();
    for (name, token) in EDGES.iter().zip(&edge_tokens) {
        let mut args = vec![
            "edge".to_string(),
            "--name".into(),
            name.to_string(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--endpoints".into(),
            grpc.join(","),
            "--report-endpoints".into(),
            http.join(","),
            "--ca".into(),
            ca_arg.clone(),
            "--token-file".into(),
            token.display().to_string(),
            "--probe-interval-ms".into(),
            "500".into(),
            "--report-interval-ms".into(),
            "500".into(),
            "--response-timeout-ms".into(),
            "2000".into(),
        ];
        for region in REGIONS {
            args.push("--region-gateway".into());
            args.push(format!("{region}=http://{}", gateways[region]));
        }
        let addr = start_child(stage, &options.binary, name, "edge", &args, None).await?;
        let log = stage.dir.join(format!("edge-{name}.log"));
        let admin = admin_addr(&log)?;
        edges.push((addr.parse::<SocketAddr>()?, admin));
    }
    for (_, admin) in &edges {
        until("the edges' first routing table", START_TIMEOUT, || async {
            let url = format!("http://{admin}/readyz");
            let r = crate::http_client::request("GET", &url, None, Duration::from_secs(2))
                .await
                .ok()?;
            (r.status == 200).then_some(())
        })
        .await?;
    }
    let edge_load = EdgeLoad::start(
        edges.iter().map(|(addr, _)| *addr).collect(),
        EDGE_CLIENTS,
        EDGE_CLIENT_PAUSE,
    );

    let east_agent = agents[EAST].clone();
    let west_agent = agents[WEST].clone();
    until(
        "the us-west-2 agent to wait for the lease",
        START_TIMEOUT,
        || async {
            let s = west_agent.status().await?;
            (s["lease"]["state"] == "waiting").then_some(())
        },
    )
    .await?;

    // --- the load, then the warm-up.
    let ids = Arc::new(AtomicI64::new(1));
    let payload = Arc::new("x".repeat(options.payload_bytes));
    let east_writer = Writer::start(
        EAST,
        east_dsn.clone(),
        east_agent.clone(),
        ids.clone(),
        options.rate,
        payload.clone(),
    );
    let west_writer = Writer::start(
        WEST,
        west_dsn.clone(),
        west_agent.clone(),
        ids.clone(),
        options.rate,
        payload,
    );
    progress(
        setup_started,
        &format!(
            "load: {} writes/s of {} bytes at {EAST}; warming up for {:?}",
            options.rate, options.payload_bytes, options.warmup
        ),
    );
    tokio::time::sleep(options.warmup).await;
    // Every region healthy in the controller's eyes, and a replication report in, before the
    // fault: the promotion gate and the plan judge the link's last report.
    until(
        "every region healthy and the link reported",
        START_TIMEOUT,
        || async {
            let Answer::Done(regions) = api.get("/v1/regions").await else {
                return None;
            };
            let healthy = regions["regions"]
                .as_array()
                .is_some_and(|rs| rs.len() == 3 && rs.iter().all(|r| r["state"] == "HEALTHY"));
            let reported = east_agent.status().await.is_some_and(|s| {
                s["replication"]["links"]
                    .as_array()
                    .is_some_and(|links| !links.is_empty())
            });
            (healthy && reported).then_some(())
        },
    )
    .await?;
    let plan_path = format!(
        "/v1/plan?sourceRegion={EAST}&targetRegion={WEST}&writesPerSec={}&recordBytes={}&\
         probeIntervalMs={}&probeTimeoutMs={}&leaseTtlMs={}",
        options.rate,
        options.payload_bytes,
        options.probe_interval.as_millis(),
        options.probe_interval.mul_f64(0.8).as_millis(),
        options.lease_ttl.as_millis()
    );
    let plan = match api.get(&plan_path).await {
        Answer::Done(plan) => plan,
        other => bail!("GET /v1/plan: {other:?}"),
    };
    let acked_before = east_writer.acks().len();
    if acked_before == 0 {
        bail!(
            "no write was acknowledged at {EAST} during the warm-up: {:?}",
            east_writer.errors()
        );
    }

    // --- the fault.
    let t0 = Instant::now();
    let t0_wall_ms = crate::proposer::wall_now().0;
    let east_pid = stage.east_db.as_ref().and_then(PgServer::pid);
    match options.fault {
        Fault::Kill => {
            if let Some(db) = stage.east_db.as_mut() {
                db.kill_postmaster().await?;
            }
            stage.signal(EAST, "db-agent", libc::SIGKILL);
            stage.signal(EAST, "gateway", libc::SIGKILL);
        }
        Fault::Stop => {
            if let Some(db) = &stage.east_db {
                db.pause()?;
                stage.east_paused = true;
            }
            stage.signal(EAST, "db-agent", libc::SIGSTOP);
            stage.signal(EAST, "gateway", libc::SIGSTOP);
        }
        Fault::Partition | Fault::SplitBrain => {
            let mut ports: Vec<u16> = Vec::new();
            for node in &stage.nodes {
                for addr in [&node.ready.grpc_addr, &node.ready.http_addr] {
                    if let Ok(addr) = addr.parse::<SocketAddr>() {
                        ports.push(addr.port());
                    }
                }
            }
            let gateway_port = (options.fault == Fault::Partition)
                .then(|| gateways[EAST].parse::<SocketAddr>().ok().map(|a| a.port()))
                .flatten();
            stage.partition = Some(
                Partition::apply(isolated_gid(), &ports, gateway_port)
                    .map_err(anyhow::Error::msg)?,
            );
            if let Some(link) = &stage.link {
                link.cut();
            }
        }
    }
    progress(
        setup_started,
        &format!(
            "FAULT at {EAST}: {:?} (postmaster pid {})",
            options.fault,
            east_pid.map_or("?".into(), |p| p.to_string())
        ),
    );

    // --- the measurement.
    let mut milestones: BTreeMap<&'static str, u64> = BTreeMap::new();
    let note = |milestones: &mut BTreeMap<&'static str, u64>, name: &'static str, what: &str| {
        if !milestones.contains_key(name) {
            let ms = ms_since(t0, Instant::now());
            milestones.insert(name, ms);
            eprintln!("   [{:>6.2} s] {what}", ms as f64 / 1000.0);
        }
    };
    let mut event: Option<Value> = None;
    let mut west_probe = connect(&west_dsn).await.ok();
    let deadline = t0 + options.timeout;
    let mut west_grant_at: Option<Instant> = None;
    let mut east_closed_at: Option<Instant> = None;
    loop {
        let now = Instant::now();
        if options.fault.controller_fails_over() && !milestones.contains_key("fence") {
            if let Answer::Done(body) = api
                .get(&format!("/v1/failover-events?failedRegion={EAST}"))
                .await
            {
                if let Some(latest) = body["events"].as_array().and_then(|e| e.first()) {
                    note(
                        &mut milestones,
                        "detection",
                        "outage detected: failover event logged",
                    );
                    let fenced = latest["timelineLogs"].as_array().is_some_and(|steps| {
                        steps.iter().any(|s| {
                            s["step"]
                                .as_str()
                                .is_some_and(|s| s.eq_ignore_ascii_case("fence"))
                        })
                    });
                    if fenced {
                        note(
                            &mut milestones,
                            "fence",
                            "us-east-1 fenced: its leases revoked",
                        );
                    }
                    event = Some(latest.clone());
                }
            }
        }
        if west_grant_at.is_none() {
            if let Some(s) = west_agent.status().await {
                if s["lease"]["state"] == "held" {
                    west_grant_at = Some(Instant::now());
                    note(
                        &mut milestones,
                        "grant",
                        "us-west-2 agent granted the lease",
                    );
                }
            }
        }
        if east_closed_at.is_none() && options.fault.needs_nftables() {
            if let Some(s) = east_agent.status().await {
                if s["writable"] == Value::Bool(false) {
                    east_closed_at = Some(Instant::now());
                    note(
                        &mut milestones,
                        "east-read-only",
                        "us-east-1 database read-only (its agent lost the lease)",
                    );
                }
            }
        }
        if !milestones.contains_key("promotion") {
            if west_probe.is_none() {
                west_probe = connect(&west_dsn).await.ok();
            }
            if let Some(c) = &west_probe {
                match c.query_one("SELECT pg_is_in_recovery()", &[]).await {
                    Ok(row) if !row.get::<_, bool>(0) => {
                        note(&mut milestones, "promotion", "us-west-2 standby promoted");
                    }
                    Ok(_) => {}
                    Err(_) => west_probe = None,
                }
            }
        }
        if let Some(first) = west_writer.acks().first() {
            if !milestones.contains_key("first-write") {
                let ms = ms_since(t0, first.at);
                milestones.insert("first-write", ms);
                eprintln!(
                    "   [{:>6.2} s] first write acknowledged in us-west-2 (RTO)",
                    ms as f64 / 1000.0
                );
            }
            // A little more load in us-west-2, then the books are closed.
            if now.duration_since(first.at) > Duration::from_secs(1) {
                break;
            }
        }
        if now > deadline {
            break;
        }
        tokio::time::sleep(POLL).await;
    }
    let rto_seen = milestones.contains_key("first-write");
    let answers = edge_load.stop().await;
    let mut last_sent: Option<i64> = None;
    for (_, admin) in &edges {
        let url = format!("http://{admin}/healthz");
        if let Ok(r) = crate::http_client::request("GET", &url, None, Duration::from_secs(2)).await
        {
            let health: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
            let sent = health["regions"].as_array().and_then(|rs| {
                rs.iter()
                    .find(|r| r["region"] == EAST)
                    .and_then(|r| r["lastSentMs"].as_u64())
            });
            if let Some(sent) = sent.filter(|s| *s > 0) {
                let rel = sent as i64 - t0_wall_ms as i64;
                last_sent = Some(last_sent.map_or(rel, |l: i64| l.max(rel)));
            }
        }
    }
    let edge = EdgeFigures::from_answers(&answers, edges.len(), EAST, t0, last_sent);
    east_writer.stop.store(true, Ordering::Relaxed);
    west_writer.stop.store(true, Ordering::Relaxed);
    let east_acks = east_writer.acks();
    let west_acks = west_writer.acks();
    let east_errors = east_writer.errors();
    let west_errors = west_writer.errors();
    east_writer.stop().await;
    west_writer.stop().await;

    // --- the books: every write acknowledged anywhere must be on the new primary.
    let mut missing: Vec<i64> = Vec::new();
    let mut on_west = BTreeSet::new();
    if rto_seen {
        let c = connect(&west_dsn).await?;
        for row in c.query("SELECT id FROM drill_writes", &[]).await? {
            on_west.insert(row.get::<_, i64>(0));
        }
        missing = east_acks
            .iter()
            .chain(&west_acks)
            .filter(|a| !on_west.contains(&a.id))
            .map(|a| a.id)
            .collect();
    }
    let split_brain = options.fault.needs_nftables().then(|| {
        let after_cut = east_acks.iter().filter(|a| a.at > t0).count() as u64;
        let last_east = east_acks
            .iter()
            .map(|a| a.at)
            .max()
            .map(|at| ms_since(t0, at));
        let after_grant = west_grant_at
            .map(|g| east_acks.iter().filter(|a| a.at >= g).count() as u64)
            .unwrap_or(0);
        SplitBrainCheck {
            east_acked_after_fault: after_cut,
            east_acked_after_west_grant: after_grant,
            east_last_ack_ms: last_east,
            east_read_only_ms: east_closed_at.map(|t| ms_since(t0, t)),
            west_grant_ms: west_grant_at.map(|t| ms_since(t0, t)),
        }
    });
    let report = RunReport {
        run,
        mode: options.mode,
        fault: options.fault,
        error: (!rto_seen).then(|| {
            format!(
                "no write acknowledged in {WEST} within {:?} of the fault; {WEST} writer errors: \
                 {west_errors:?}",
                options.timeout
            )
        }),
        predicted: report::Predicted::from_plan(&plan),
        milestones: Milestone::list(&milestones),
        writes: WriteCounts {
            acked_east: east_acks.len() as u64,
            acked_east_before_fault: east_acks.iter().filter(|a| a.at <= t0).count() as u64,
            acked_west: west_acks.len() as u64,
            missing_on_new_primary: missing.len() as u64,
            missing_ids: missing.iter().take(20).copied().collect(),
            controller_estimate: event
                .as_ref()
                .and_then(|e| e["uncommittedDataLossEstimateWrites"].as_u64()),
            east_errors,
            west_errors,
        },
        failover_status: event
            .as_ref()
            .and_then(|e| e["eventStatus"].as_str().map(str::to_string)),
        split_brain,
        edge: Some(edge),
        setup_seconds: t0.duration_since(setup_started).as_secs_f64(),
        wall_seconds: 0.0,
        files: None,
    };
    Ok(report)
}

/// The admin address an edge announced in its log (`admin on http://ADDR/healthz`).
fn admin_addr(log: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.split("admin on http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .filter(|addr| addr.parse::<SocketAddr>().is_ok())
        .map(str::to_string)
        .with_context(|| format!("{} announced no admin address", log.display()))
}

fn progress(since: Instant, what: &str) {
    eprintln!("   [setup {:>5.1} s] {what}", since.elapsed().as_secs_f64());
}
