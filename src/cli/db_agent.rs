//! `arbiter db-agent`: runs the region's database agent ([`crate::db_agent`]) until SIGINT or
//! SIGTERM. Its credential must be a `region` identity of `--region` whose name is `--holder`
//! (`arbiter auth token --role region --region R --identity NAME`): the arbiter lets it hold
//! that region's lease under that name and report that region's replication, nothing else.
//!
//! Exit codes ([`super::exit`]): 2 bad flags, 5 the arbiter or the database cannot be reached
//! at start, 1 anything else.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use arbiter_client::{HolderId, RegionId, ResourceId};
use clap::Args;

use super::exit::Failure;
use super::up::{resolve_endpoints, CredentialArgs, Port, DEFAULT_DATA_DIR};
use crate::db_agent::database::Database;
use crate::db_agent::{self, DbAgentConfig};

#[derive(Args, Debug)]
pub struct DbAgentArgs {
    /// The region this agent and its database are in, e.g. us-east-1.
    #[arg(long, env = "ARBITER_REGION")]
    region: String,
    /// The database, as a superuser (promotion, ALTER SYSTEM and ending sessions need one):
    /// `host=/run/postgresql dbname=app user=postgres` or `postgresql://postgres@host/app`.
    #[arg(long, env = "ARBITER_PG_DSN", hide_env_values = true)]
    pg_dsn: Option<String>,
    /// The leased resource, the same name the applications' fenced writes use.
    #[arg(long, default_value = "db/primary")]
    resource: String,
    /// The lease holder: the identity name of this agent's credential [default:
    /// db-agent-<region>].
    #[arg(long)]
    holder: Option<String>,
    /// Lease TTL in seconds (fractions allowed). The database turns read-only at most this
    /// long after the arbiter stops answering.
    #[arg(long, default_value = "10", value_parser = super::lease::parse_ttl)]
    lease_ttl: Duration,
    /// The agent's own HTTP address: /livez, /metrics, /v1/agent/status and the action webhook
    /// (POST /v1/agent/actions).
    #[arg(long, default_value = "127.0.0.1:9400")]
    listen: SocketAddr,
    /// File holding the bearer token the action webhook requires. Required unless --listen
    /// is a loopback address.
    #[arg(long, env = "ARBITER_DB_AGENT_WEBHOOK_TOKEN_FILE")]
    webhook_token_file: Option<PathBuf>,
    /// Where the agent keeps the last obeyed action's epoch and term [default:
    /// <data-dir>/db-agent-<region>].
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Milliseconds between replication reports.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    report_interval_ms: u64,
    /// REGION=NAME: the standby of REGION reports `application_name` NAME (default: the
    /// region's name). Repeatable.
    #[arg(long = "standby-name")]
    standby_names: Vec<String>,
    /// Arbiter gRPC endpoints (host:port), comma-separated [default: the cluster of
    /// `arbiter up`, else 127.0.0.1:7001-7003].
    #[arg(long, env = "ARBITER_ENDPOINTS", value_delimiter = ',')]
    endpoints: Vec<String>,
    /// Arbiter HTTP endpoints (host:port), comma-separated, for link heartbeats [default: the
    /// cluster of `arbiter up`, else 127.0.0.1:8081-8083].
    #[arg(long, env = "ARBITER_HTTP_ENDPOINTS", value_delimiter = ',')]
    http_endpoints: Vec<String>,
    /// Data dir of `arbiter up`, for cluster.json and ca.pem.
    #[arg(long, env = "ARBITER_DATA_DIR", default_value = DEFAULT_DATA_DIR)]
    data_dir: PathBuf,
    #[command(flatten)]
    credentials: CredentialArgs,
}

impl DbAgentArgs {
    /// The validated config.
    fn config(self) -> anyhow::Result<DbAgentConfig> {
        let dsn = self.pg_dsn.as_deref().ok_or_else(|| {
            Failure::usage("no database given: pass --pg-dsn CONNSTRING or set ARBITER_PG_DSN")
        })?;
        let database = Database::new(dsn).map_err(|e| Failure::usage(e.to_string()))?;
        let mut standby_names = BTreeMap::new();
        for pair in &self.standby_names {
            let (region, name) = pair.split_once('=').ok_or_else(|| {
                Failure::usage(format!("--standby-name {pair:?}: expected REGION=NAME"))
            })?;
            standby_names.insert(region.to_string(), name.to_string());
        }
        let webhook_token = match &self.webhook_token_file {
            Some(path) => {
                let token = std::fs::read_to_string(path)
                    .map_err(|e| {
                        Failure::usage(format!("--webhook-token-file {}: {e}", path.display()))
                    })?
                    .trim()
                    .to_string();
                if token.is_empty() {
                    return Err(Failure::usage(format!(
                        "--webhook-token-file {} is empty",
                        path.display()
                    ))
                    .into());
                }
                Some(token)
            }
            None => None,
        };
        if webhook_token.is_none() && !self.listen.ip().is_loopback() {
            return Err(Failure::usage(format!(
                "--listen {} is not a loopback address: the action webhook needs \
                 --webhook-token-file",
                self.listen
            ))
            .into());
        }
        let credentials = self.credentials.resolve(&self.data_dir);
        let client_options = credentials
            .client_options()
            .map_err(|e| Failure::usage(format!("credentials: {e}")))?;
        let http = credentials
            .http_client()
            .map_err(|e| Failure::usage(format!("credentials: {e}")))?;
        let holder = self
            .holder
            .clone()
            .unwrap_or_else(|| format!("db-agent-{}", self.region));
        Ok(DbAgentConfig {
            holder: HolderId::new(holder),
            resource: ResourceId::new(self.resource.clone()),
            lease_ttl: self.lease_ttl,
            database,
            grpc_endpoints: resolve_endpoints(&self.endpoints, &self.data_dir, Port::Grpc),
            http_endpoints: resolve_endpoints(&self.http_endpoints, &self.data_dir, Port::Http),
            client_options,
            http,
            state_dir: self
                .state_dir
                .clone()
                .unwrap_or_else(|| self.data_dir.join(format!("db-agent-{}", self.region))),
            report_interval: Duration::from_millis(self.report_interval_ms),
            retry_interval: Duration::from_secs(1).min(self.lease_ttl / 3),
            webhook_token,
            standby_names,
            region: RegionId::new(self.region),
        })
    }
}

pub async fn run(args: DbAgentArgs) -> anyhow::Result<ExitCode> {
    let listen = args.listen;
    let config = args.config()?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| Failure::unavailable(format!("--listen {listen}: {e}")))?;
    eprintln!(
        "db-agent {}: lease {} as {} (ttl {:?}), http://{}/v1/agent/status",
        config.region,
        config.resource,
        config.holder,
        config.lease_ttl,
        listener.local_addr()?
    );
    db_agent::run(config, listener, super::shutdown_signal())
        .await
        .map_err(|e| match e {
            db_agent::AgentError::Arbiter(_) => Failure::unavailable(e.to_string()).into(),
            other => anyhow::Error::from(other),
        })?;
    Ok(ExitCode::SUCCESS)
}
