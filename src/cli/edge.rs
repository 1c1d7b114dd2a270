//! `arbiter edge`: run an edge router (see [`crate::edge`]).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use hyper::Uri;

use super::up::{resolve_endpoints, CredentialArgs, Port};
use crate::edge::routes::Policy;
use crate::edge::{self, Edge, EdgeConfig};

#[derive(Args, Debug)]
pub struct EdgeArgs {
    /// This edge's name (its point of presence, e.g. pop-fra): the identity it reports as.
    #[arg(long)]
    name: String,
    /// Where clients connect. Plain HTTP only on loopback; elsewhere give --tls-cert/--tls-key.
    #[arg(long, default_value = "127.0.0.1:9080")]
    listen: SocketAddr,
    /// The edge's own /healthz, /readyz and /metrics (loopback only; port 0 picks one).
    #[arg(long, default_value = "127.0.0.1:0")]
    admin_listen: SocketAddr,
    /// REGION=URL of a region's gateway (repeatable), e.g. us-east-1=https://gw.use1.example:443.
    /// http:// only for loopback gateways.
    #[arg(long = "region-gateway", required = true)]
    region_gateways: Vec<String>,
    /// Arbiter gRPC endpoints for the routing watch [default: the local cluster of `arbiter up`].
    #[arg(long, value_delimiter = ',')]
    endpoints: Vec<String>,
    /// Arbiter HTTP endpoints the edge reports to [default: the local cluster of `arbiter up`].
    #[arg(long, value_delimiter = ',')]
    report_endpoints: Vec<String>,
    /// Report nothing to the arbiter (the shift's drain counts and propagation then ignore
    /// this edge).
    #[arg(long)]
    no_report: bool,
    /// Data dir of `arbiter up`, for ca.pem, operator.token and cluster.json.
    #[arg(long, env = "ARBITER_DATA_DIR", default_value = super::up::DEFAULT_DATA_DIR)]
    data_dir: PathBuf,
    #[command(flatten)]
    credentials: CredentialArgs,
    /// Header naming the tenant; "" reads none.
    #[arg(long, default_value = edge::TENANT_HEADER_DEFAULT)]
    tenant_header: String,
    /// Path prefix followed by the tenant, e.g. /tenants/ (none by default).
    #[arg(long)]
    tenant_path_prefix: Option<String>,
    /// How to choose among the regions the weights allow.
    #[arg(long, value_enum, default_value_t = Policy::Weighted)]
    policy: Policy,
    #[arg(long, default_value_t = 1000)]
    connect_timeout_ms: u64,
    /// Longest wait for a gateway's response headers, per attempt.
    #[arg(long, default_value_t = 10_000)]
    response_timeout_ms: u64,
    #[arg(long, default_value_t = 1000)]
    probe_interval_ms: u64,
    /// Path each gateway is probed at for its round trip.
    #[arg(long, default_value = "/v1/health/check")]
    probe_path: String,
    #[arg(long, default_value_t = 1000)]
    report_interval_ms: u64,
    /// Largest request body accepted (bodies are buffered so a request can be retried).
    #[arg(long, default_value_t = 1024 * 1024)]
    max_body_bytes: usize,
    /// Certificate chain (PEM) for the client listener.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// CA certificate(s) (PEM) https:// gateways must chain to.
    #[arg(long)]
    upstream_ca: Option<PathBuf>,
}

/// Whether `uri` names a loopback host.
fn loopback_host(uri: &Uri) -> bool {
    match uri.host() {
        Some("localhost") => true,
        Some(host) => host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback()),
        None => false,
    }
}

fn gateways(specs: &[String]) -> anyhow::Result<Vec<(String, Uri)>> {
    specs
        .iter()
        .map(|spec| {
            let (region, url) = spec
                .split_once('=')
                .with_context(|| format!("--region-gateway {spec:?}: expected REGION=URL"))?;
            let uri: Uri = url
                .parse()
                .with_context(|| format!("--region-gateway {spec:?}: not a URL"))?;
            match uri.scheme_str() {
                Some("https") => {}
                Some("http") if loopback_host(&uri) => {}
                Some("http") => bail!(
                    "--region-gateway {spec:?}: plain http:// is accepted only for loopback \
                     gateways; use https://"
                ),
                _ => bail!("--region-gateway {spec:?}: expected an http:// or https:// URL"),
            }
            if uri.path() != "/" && !uri.path().is_empty() {
                bail!("--region-gateway {spec:?}: give the gateway's base URL, without a path");
            }
            Ok((region.to_string(), uri))
        })
        .collect()
}

pub async fn run(args: EdgeArgs) -> anyhow::Result<ExitCode> {
    let gateways = gateways(&args.region_gateways)?;
    if !args.admin_listen.ip().is_loopback() {
        bail!(
            "--admin-listen {}: the admin endpoints are served on loopback only",
            args.admin_listen
        );
    }
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(
            crate::tls::http1_server_config(cert, key)
                .with_context(|| format!("loading {} and {}", cert.display(), key.display()))?,
        ),
        _ if !args.listen.ip().is_loopback() => bail!(
            "--listen {}: plain HTTP is served on loopback only; give --tls-cert and --tls-key",
            args.listen
        ),
        _ => None,
    };
    for (name, ms) in [
        ("--connect-timeout-ms", args.connect_timeout_ms),
        ("--response-timeout-ms", args.response_timeout_ms),
        ("--probe-interval-ms", args.probe_interval_ms),
        ("--report-interval-ms", args.report_interval_ms),
    ] {
        if ms == 0 {
            bail!("{name} must be positive");
        }
    }
    let upstream_tls = crate::tls::http1_client_config(args.upstream_ca.as_deref())
        .context("loading --upstream-ca")?;
    let credentials = args.credentials.resolve(&args.data_dir);
    let grpc = resolve_endpoints(&args.endpoints, &args.data_dir, Port::Grpc);
    let arbiter =
        arbiter_client::ArbiterClient::connect(grpc.clone(), credentials.client_options()?)
            .await
            .context("arbiter endpoints")?;
    let mut config = EdgeConfig::new(args.name.clone(), gateways, arbiter, upstream_tls);
    if !args.no_report {
        let http = resolve_endpoints(&args.report_endpoints, &args.data_dir, Port::Http);
        config.report_to = Some((http, credentials.http_client()?));
    }
    config.tenant_header = if args.tenant_header.is_empty() {
        None
    } else {
        Some(
            hyper::header::HeaderName::from_bytes(
                args.tenant_header.to_ascii_lowercase().as_bytes(),
            )
            .with_context(|| format!("--tenant-header {:?}", args.tenant_header))?,
        )
    };
    if let Some(prefix) = &args.tenant_path_prefix {
        if !prefix.starts_with('/') {
            bail!("--tenant-path-prefix {prefix:?} must start with /");
        }
    }
    config.tenant_path_prefix = args.tenant_path_prefix.clone();
    config.policy = args.policy;
    config.connect_timeout = Duration::from_millis(args.connect_timeout_ms);
    config.response_timeout = Duration::from_millis(args.response_timeout_ms);
    config.probe_interval = Duration::from_millis(args.probe_interval_ms);
    config.probe_path = args.probe_path.clone();
    config.report_interval = Duration::from_millis(args.report_interval_ms);
    config.max_body_bytes = args.max_body_bytes;
    let edge = Edge::new(config).map_err(anyhow::Error::msg)?;

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let admin = tokio::net::TcpListener::bind(args.admin_listen)
        .await
        .with_context(|| format!("listening on {}", args.admin_listen))?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    eprintln!(
        "edge {}: proxy on {scheme}://{}/ ; admin on http://{}/healthz ; {} gateway(s); routing from {}",
        args.name,
        listener.local_addr()?,
        admin.local_addr()?,
        args.region_gateways.len(),
        grpc.join(",")
    );
    edge::run(edge, listener, tls, Some(admin), super::shutdown_signal()).await?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_gateways_only_on_loopback() {
        let ok = gateways(&[
            "us-east-1=http://127.0.0.1:9001".into(),
            "us-west-2=http://localhost:9002".into(),
            "eu-central-1=https://gw.euc1.example:443".into(),
            "ap-south-1=http://[::1]:9004".into(),
        ])
        .expect("accepted");
        assert_eq!(ok.len(), 4);
        for bad in [
            "us-east-1=http://10.0.0.5:9001",
            "us-east-1=http://gw.use1.example",
            "us-east-1=ftp://127.0.0.1:21",
            "us-east-1=http://127.0.0.1:9001/api",
            "no-equals-sign",
        ] {
            assert!(gateways(&[bad.into()]).is_err(), "{bad} accepted");
        }
    }
}
