//! Command line: `arbiter serve`, `up`, `certs`, `auth token`, `status`, `member`, `snapshot`,
//! `lease`, `failover`, `failback`, `regions`, `tenants`, `events`, `move-leader`, `probe`,
//! `gateway`, `edge`, `pg`, `db-agent`, `drill`, `plan`, `config`, `completions`.
//!
//! Every client command takes `--output table|json` and the same exit codes ([`exit`]); every
//! global flag has an `ARBITER_*` variable (`ARBITER_ENDPOINTS`, `ARBITER_DATA_DIR`,
//! `ARBITER_CA`, `ARBITER_CERT`, `ARBITER_KEY`, `ARBITER_TOKEN_FILE`, `ARBITER_TOKEN`,
//! `ARBITER_OUTPUT`, `ARBITER_LOG_FORMAT`).
//!
//! `anyhow` lives here and in tests only: this is the binary's edge, where errors become a
//! message and an exit code.

mod auth;
mod certs;
mod config;
mod db_agent;
mod dr;
mod drill;
mod edge;
pub mod exit;
mod lease;
mod member;
pub mod output;
mod pg;
mod plan;
mod probe;
mod rejoin;
mod serve;
mod snapshot;
pub(crate) mod status;
mod up;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "arbiter",
    version,
    about = "Quorum arbiter and DR controller",
    after_help = EXIT_CODES_HELP
)]
struct Cli {
    /// Log lines as text or as one JSON object per line (each with the request's span:
    /// request_id, method, path, caller). The filter comes from ARBITER_LOG or RUST_LOG
    /// (default "info,openraft=warn,tokio_postgres=warn": PostgreSQL server notices are not logged).
    #[arg(long, global = true, value_enum, env = "ARBITER_LOG_FORMAT", default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run one arbiter node.
    // Boxed: the node's flags dwarf every other command's.
    Serve(Box<serve::ServeArgs>),
    /// Start a local three-node cluster on loopback (embedded default config).
    Up(up::UpArgs),
    /// Make a cluster CA, node and client certificates, and the operator token.
    #[command(subcommand)]
    Certs(certs::CertsCommand),
    /// Show each node's role, term, leader and log positions.
    Status(status::StatusArgs),
    /// Acquire, renew, release, show and revoke write leases.
    Lease(lease::LeaseArgs),
    /// Add or remove cluster members (learner first, then voter).
    #[command(subcommand)]
    Member(member::MemberCommand),
    /// Back up a live cluster to a file, or build a new cluster's data dirs from one.
    #[command(subcommand)]
    Snapshot(snapshot::SnapshotCommand),
    /// Run a probe agent: poll regional health checks, report to the arbiter leader.
    Probe(probe::ProbeArgs),
    /// Run an edge router: an HTTP reverse proxy routing by the arbiter's routing table.
    Edge(edge::EdgeArgs),
    /// Run a stand-in regional gateway serving the seed's health check (for drills).
    Gateway(probe::GatewayArgs),
    /// Issue bearer tokens.
    #[command(subcommand)]
    Auth(auth::AuthCommand),
    #[command(flatten)]
    Dr(dr::DrCommand),
    /// PostgreSQL under a lease: install the in-database fence.
    #[command(subcommand)]
    Pg(pg::PgCommand),
    /// Run a region's database agent: promote on lease grant, read-only on lease loss, report
    /// WAL progress, take controller actions.
    DbAgent(Box<db_agent::DbAgentArgs>),
    /// Fail us-east-1 for real (PostgreSQL, db-agents, gateways, probes, the arbiter; all on
    /// loopback) and measure detection, fence, promotion, RTO and RPO against the plan.
    Drill(drill::DrillArgs),
    /// Check a node config file, or show the effective config (file, flags and defaults).
    #[command(subcommand)]
    Config(config::ConfigCommand),
    /// Print a shell completion script: `arbiter completions bash > /etc/bash_completion.d/arbiter`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

const EXIT_CODES_HELP: &str = "Exit codes: 0 done; 1 error; 2 usage; 3 outcome unknown (sent, \
not confirmed: look before retrying); 4 refused by the cluster (nothing changed); 5 unavailable \
(no node answered or no leader; nothing changed).\n\nStart here: `arbiter up` runs a local \
three-node cluster; `arbiter status` shows it.";

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => serve::run(*args).await,
            Command::Up(args) => up::run(args).await,
            Command::Certs(command) => certs::run(command),
            Command::Status(args) => status::run(args).await,
            Command::Member(command) => member::run(command).await,
            Command::Snapshot(command) => snapshot::run(command).await,
            Command::Probe(args) => probe::run_probe(args).await,
            Command::Edge(args) => edge::run(args).await,
            Command::Gateway(args) => probe::run_gateway(args).await,
            Command::Lease(args) => lease::run(args).await,
            Command::Auth(command) => auth::run(command).await,
            Command::Dr(command) => dr::run(command).await,
            Command::Pg(command) => pg::run(command).await,
            Command::DbAgent(args) => db_agent::run(*args).await,
            Command::Drill(args) => drill::run(args).await,
            Command::Config(command) => config::run(command),
            Command::Completions { shell } => {
                let mut command = <Cli as clap::CommandFactory>::command();
                clap_complete::generate(shell, &mut command, "arbiter", &mut std::io::stdout());
                Ok(ExitCode::SUCCESS)
            }
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(exit::code_of(&e))
        }
    }
}

/// Logs go to stderr, filtered by ARBITER_LOG, else RUST_LOG, else "info,openraft=warn,tokio_postgres=warn".
fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("ARBITER_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| {
            tracing_subscriber::EnvFilter::new("info,openraft=warn,tokio_postgres=warn")
        });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
    };
}

/// Resolves on Ctrl-C or SIGTERM: the one way a long-running command stops.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = ctrl_c.await;
            return;
        }
    };
    tokio::select! {
        _ = ctrl_c => {}
        _ = term.recv() => {}
    }
}
