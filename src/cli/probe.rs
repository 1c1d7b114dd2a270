//! `arbiter probe` (a vantage-point agent) and `arbiter gateway` (a stand-in regional
//! gateway): the two ends of a DR drill on one machine.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;

use crate::dr::probe_agent::{self, ProbeAgentConfig};

#[derive(Args, Debug)]
pub struct ProbeArgs {
    /// This agent's vantage point (london, tokyo, sydney, ...).
    #[arg(long)]
    vantage: String,
    /// REGION=URL of the region's gateway health check (repeatable), e.g.
    /// us-east-1=http://10.0.0.5:8080/v1/health/check
    #[arg(long = "target", required = true)]
    targets: Vec<String>,
    /// Arbiter HTTP addresses (host:port), comma-separated; the agent follows the leader.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "127.0.0.1:8081,127.0.0.1:8082,127.0.0.1:8083"
    )]
    arbiters: Vec<String>,
    /// Data dir of `arbiter up`, for ca.pem and operator.token.
    #[arg(long, env = "ARBITER_DATA_DIR", default_value = super::up::DEFAULT_DATA_DIR)]
    data_dir: std::path::PathBuf,
    #[command(flatten)]
    credentials: super::up::CredentialArgs,
    #[arg(long, default_value_t = 1000)]
    interval_ms: u64,
    #[arg(long, default_value_t = 800)]
    timeout_ms: u64,
}

pub async fn run_probe(args: ProbeArgs) -> anyhow::Result<ExitCode> {
    let mut targets = Vec::new();
    for t in &args.targets {
        let (region, url) = t
            .split_once('=')
            .with_context(|| format!("--target {t:?}: expected REGION=URL"))?;
        if !url.starts_with("http://") {
            bail!("--target {t:?}: only http:// URLs are supported");
        }
        targets.push((region.to_string(), url.to_string()));
    }
    if args.interval_ms == 0 || args.timeout_ms == 0 {
        bail!("--interval-ms and --timeout-ms must be positive");
    }
    eprintln!(
        "probe agent {}: {} target(s) every {} ms, reporting to {}",
        args.vantage,
        targets.len(),
        args.interval_ms,
        args.arbiters.join(",")
    );
    let config = ProbeAgentConfig {
        vantage: args.vantage,
        targets,
        arbiters: args.arbiters,
        arbiter_http: args.credentials.resolve(&args.data_dir).http_client()?,
        interval: Duration::from_millis(args.interval_ms),
        timeout: Duration::from_millis(args.timeout_ms),
    };
    probe_agent::run(config, super::shutdown_signal()).await;
    Ok(ExitCode::SUCCESS)
}

#[derive(Args, Debug)]
pub struct GatewayArgs {
    #[arg(long)]
    region: String,
    /// Listen address, e.g. 127.0.0.1:9001.
    #[arg(long)]
    listen: String,
}

pub async fn run_gateway(args: GatewayArgs) -> anyhow::Result<ExitCode> {
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    eprintln!(
        "gateway for {} on http://{}/v1/health/check (POST /v1/gateway/state to fail it)",
        args.region,
        listener.local_addr()?
    );
    crate::gateway::serve(args.region, listener, super::shutdown_signal()).await?;
    Ok(ExitCode::SUCCESS)
}
