//! `arbiter up`: the main job — a local three-node cluster on loopback from the embedded
//! default (`deploy/local-cluster.toml`). Starts the nodes, bootstraps them (idempotent, so a
//! second `up` on the same data dir resumes the same cluster), writes `cluster.json`, prints
//! the endpoints and stops all three on Ctrl-C. A child that dies is reported, not restarted.
//!
//! Secure by default: unless `--no-tls`, it first makes (or reuses) a local CA, a certificate
//! per node, an operator client certificate and an operator bearer token in the data dir
//! ([`crate::certs::DevCerts`]); the other commands find `ca.pem` and `operator.token` there.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use serde::{Deserialize, Serialize};

use crate::auth::issue::{ensure_operator_credentials, OPERATOR_TOKEN_FILE};
use crate::certs::DevCerts;
use crate::config::Profile;
use crate::local_cluster::{initialize, wait_for_leader, Listeners, NodeProcess, NodeSpec};
use crate::raft_types::NodeId;
use crate::tls::ClientCredentials;

pub const DEFAULT_DATA_DIR: &str = "arbiter-data";
const EMBEDDED_CLUSTER: &str = include_str!("../../deploy/local-cluster.toml");
const CLUSTER_FILE: &str = "cluster.json";
/// Bootstrap answers once the membership entry is stored; a node that takes longer is stuck.
const INITIALIZE_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Args, Debug)]
pub struct UpArgs {
    /// Where the nodes keep their data (one sub-dir per node) and where cluster.json goes.
    #[arg(long, default_value = DEFAULT_DATA_DIR)]
    data_dir: PathBuf,
    /// Node N listens on gRPC base+N, HTTP base+1080+N and peer base+2000+N (default 7000:
    /// 7001/8081/9001, ...).
    #[arg(long)]
    base_port: Option<u16>,
    /// Plain TCP instead of TLS (loopback only; for comparing TLS cost). Use a data dir that
    /// has no ca.pem, or the other commands will try TLS.
    #[arg(long)]
    no_tls: bool,
    /// A cluster definition to use instead of the embedded default.
    #[arg(long)]
    cluster: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClusterDef {
    profile: Profile,
    base_port: u16,
    nodes: Vec<NodeDef>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NodeDef {
    id: NodeId,
    region: String,
}

/// `cluster.json`: what `arbiter up` started, for `arbiter status` and scripts.
#[derive(Debug, Serialize, Deserialize)]
pub struct ClusterFile {
    pub nodes: Vec<ClusterNode>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ClusterNode {
    pub node_id: NodeId,
    pub region: String,
    pub grpc_addr: String,
    pub http_addr: String,
    pub pid: u32,
    pub data_dir: PathBuf,
}

impl ClusterFile {
    pub fn read(data_dir: &Path) -> anyhow::Result<Self> {
        let path = data_dir.join(CLUSTER_FILE);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }
}

/// Where a client command finds the cluster.
#[derive(Args, Debug)]
pub struct ClusterArgs {
    /// Endpoints (host:port), comma-separated: gRPC or HTTP addresses, as the command uses.
    /// Default: the cluster `arbiter up` started (its cluster.json), else the local default
    /// ports (gRPC 7001-7003, HTTP 8081-8083).
    #[arg(long, env = "ARBITER_ENDPOINTS", value_delimiter = ',')]
    pub endpoints: Vec<String>,
    /// Data dir of `arbiter up`, to find cluster.json, ca.pem and operator.token.
    #[arg(long, env = "ARBITER_DATA_DIR", default_value = DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,
    #[command(flatten)]
    pub credentials: CredentialArgs,
}

impl ClusterArgs {
    pub fn endpoints(&self, port: Port) -> Vec<String> {
        resolve_endpoints(&self.endpoints, &self.data_dir, port)
    }

    pub fn credentials(&self) -> ClientCredentials {
        self.credentials.resolve(&self.data_dir)
    }
}

/// How a client command authenticates. Each defaults to what `arbiter up` left in the data dir
/// (`ca.pem`, `operator.token`) when it is there; without a CA the command speaks plain TCP.
#[derive(Args, Debug, Clone)]
pub struct CredentialArgs {
    /// CA certificate(s) (PEM) the nodes' certificates must chain to [default: <data-dir>/ca.pem].
    #[arg(long, env = "ARBITER_CA", global = true)]
    pub ca: Option<PathBuf>,
    /// Client certificate (PEM), for identities authenticated by certificate.
    #[arg(long, env = "ARBITER_CERT", requires = "key", global = true)]
    pub cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, env = "ARBITER_KEY", requires = "cert", global = true)]
    pub key: Option<PathBuf>,
    /// File with one bearer token [default: <data-dir>/operator.token].
    #[arg(long, env = "ARBITER_TOKEN_FILE", global = true)]
    pub token_file: Option<PathBuf>,
    /// A bearer token (e.g. from `arbiter auth token`); wins over --token-file.
    #[arg(long, env = "ARBITER_TOKEN", hide_env_values = true, global = true)]
    pub auth_token: Option<String>,
}

impl CredentialArgs {
    pub fn resolve(&self, data_dir: &Path) -> ClientCredentials {
        let defaults = ClientCredentials::from_data_dir(data_dir);
        ClientCredentials {
            ca: self.ca.clone().or(defaults.ca),
            identity: self.cert.clone().zip(self.key.clone()),
            token_file: self.token_file.clone().or(defaults.token_file),
            token: self.auth_token.clone(),
        }
    }
}

/// Which of a node's addresses a command dials.
#[derive(Debug, Clone, Copy)]
pub enum Port {
    Grpc,
    Http,
}

/// Endpoints for a client command: `explicit` if given, else the cluster `arbiter up` wrote
/// down in `data_dir`, else the default local ports (gRPC 7001-7003, HTTP 8081-8083).
pub fn resolve_endpoints(explicit: &[String], data_dir: &Path, port: Port) -> Vec<String> {
    if !explicit.is_empty() {
        return explicit.to_vec();
    }
    if let Ok(cluster) = ClusterFile::read(data_dir) {
        return cluster
            .nodes
            .into_iter()
            .map(|n| match port {
                Port::Grpc => n.grpc_addr,
                Port::Http => n.http_addr,
            })
            .collect();
    }
    let base = match port {
        Port::Grpc => 7000,
        Port::Http => 8080,
    };
    (1..=3).map(|i| format!("127.0.0.1:{}", base + i)).collect()
}

fn process_alive(pid: u32) -> bool {
    // SAFETY: signal 0 only checks that the pid exists; it delivers nothing.
    unsafe { libc::kill(pid as i32, 0) == 0 }
}

pub async fn run(args: UpArgs) -> anyhow::Result<ExitCode> {
    let text = match &args.cluster {
        Some(path) => {
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?
        }
        None => EMBEDDED_CLUSTER.to_string(),
    };
    let def: ClusterDef = toml::from_str(&text).context("invalid cluster definition")?;
    let base = args.base_port.unwrap_or(def.base_port);
    if let Some(max_id) = def.nodes.iter().map(|n| n.id).max() {
        if u64::from(base) + 2000 + max_id > u64::from(u16::MAX) {
            bail!("--base-port {base} leaves no room for peer ports (base+2000+id)");
        }
    }
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating {}", args.data_dir.display()))?;
    if let Ok(existing) = ClusterFile::read(&args.data_dir) {
        if let Some(live) = existing.nodes.iter().find(|n| process_alive(n.pid)) {
            bail!(
                "a cluster from {} is already running (node {} pid {}); stop it first",
                args.data_dir.display(),
                live.node_id,
                live.pid
            );
        }
    }
    let binary = std::env::current_exe().context("locating the arbiter binary")?;
    let certs = if args.no_tls {
        None
    } else {
        let nodes: Vec<(NodeId, String)> =
            def.nodes.iter().map(|n| (n.id, n.region.clone())).collect();
        Some(DevCerts::ensure(&args.data_dir, &nodes).context("creating the local CA")?)
    };
    // Kept from an earlier `up` (a resumed cluster keeps its token), else made now.
    let (tokens_file, _) = ensure_operator_credentials(&args.data_dir)?;
    let credentials = match &certs {
        Some(certs) => certs.operator(),
        None => ClientCredentials {
            token_file: Some(args.data_dir.join(OPERATOR_TOKEN_FILE)),
            ..ClientCredentials::default()
        },
    };
    let options = credentials.client_options()?;

    let mut nodes: Vec<NodeProcess> = Vec::new();
    for node in &def.nodes {
        let port = |offset: u64| {
            // The definition was checked above to keep base+1080+id within u16.
            u16::try_from(u64::from(base) + offset + node.id).unwrap_or(0)
        };
        let listeners = Listeners::bind(|name| {
            let port = match name {
                "grpc" => port(0),
                "http" => port(1080),
                // Fixed too: the membership records it, so a node restarted by a later `up`
                // must come back on the same peer address.
                "peer" => port(2000),
                _ => 0,
            };
            SocketAddr::from((Ipv4Addr::LOCALHOST, port))
        })?;
        let spec = NodeSpec {
            id: node.id,
            region: node.region.clone(),
            data_dir: args.data_dir.join(format!("node-{}", node.id)),
            listeners,
            grpc_advertise: None,
            peer_advertise: None,
            tls: certs.as_ref().map(|c| c.node_tls(node.id)),
            profile: def.profile,
            extra_args: vec![
                "--auth-tokens-file".into(),
                tokens_file.display().to_string(),
            ],
            env: Vec::new(),
        };
        eprintln!("starting node {} ({})...", spec.id, spec.region);
        nodes.push(spec.start(&binary, Duration::from_secs(30)).await?);
    }

    let members = nodes.iter().map(NodeProcess::info).collect();
    let already = initialize(
        &nodes[0].ready.grpc_addr,
        members,
        INITIALIZE_TIMEOUT,
        &options,
    )
    .await?;
    let endpoints: Vec<String> = nodes.iter().map(|n| n.ready.grpc_addr.clone()).collect();
    let leader = wait_for_leader(&endpoints, Duration::from_secs(30), &options).await?;

    let cluster = ClusterFile {
        nodes: nodes
            .iter()
            .map(|n| ClusterNode {
                node_id: n.spec.id,
                region: n.spec.region.clone(),
                grpc_addr: n.ready.grpc_addr.clone(),
                http_addr: n.ready.http_addr.clone(),
                pid: n.pid(),
                data_dir: n.spec.data_dir.clone(),
            })
            .collect(),
    };
    let cluster_path = args.data_dir.join(CLUSTER_FILE);
    std::fs::write(&cluster_path, serde_json::to_string_pretty(&cluster)?)
        .with_context(|| format!("writing {}", cluster_path.display()))?;

    println!(
        "arbiter cluster is up ({}; leader: node {}, term {})",
        if already { "resumed" } else { "new" },
        leader.node_id,
        leader.term
    );
    let scheme = if certs.is_some() { "https" } else { "http" };
    for n in &cluster.nodes {
        println!(
            "  node {} {:<13} grpc {}  http {scheme}://{}  pid {}  log {}",
            n.node_id,
            n.region,
            n.grpc_addr,
            n.http_addr,
            n.pid,
            n.data_dir.join("node.log").display()
        );
    }
    println!("cluster file: {}", cluster_path.display());
    match &certs {
        Some(certs) => {
            let ca = certs.dir.join(crate::certs::CA_CERT);
            let token = certs.dir.join(OPERATOR_TOKEN_FILE);
            println!(
                "TLS on: CA {}  operator token {}  (certificates in {})",
                ca.display(),
                token.display(),
                certs.dir.display()
            );
            println!(
                "try: curl --cacert {} -H \"Authorization: Bearer $(cat {})\" https://{}/v1/cluster/status",
                ca.display(),
                token.display(),
                cluster.nodes[0].http_addr
            );
        }
        None => println!("TLS off (--no-tls): plain TCP on loopback"),
    }
    println!(
        "operator token: {} (the CLI reads it from there; tokens file: {})",
        args.data_dir.join(OPERATOR_TOKEN_FILE).display(),
        tokens_file.display()
    );
    println!("try: arbiter status    (Ctrl-C stops the cluster)");

    supervise(&mut nodes).await;
    eprintln!("stopping nodes...");
    for node in &mut nodes {
        node.stop(Duration::from_secs(10)).await;
    }
    let _ = std::fs::remove_file(&cluster_path);
    eprintln!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// Waits for Ctrl-C/SIGTERM, reporting (not restarting) any node that dies meanwhile.
async fn supervise(nodes: &mut [NodeProcess]) {
    let shutdown = super::shutdown_signal();
    tokio::pin!(shutdown);
    let mut reported = vec![false; nodes.len()];
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            _ = tokio::time::sleep(Duration::from_millis(500)) => {
                for (node, reported) in nodes.iter_mut().zip(reported.iter_mut()) {
                    if *reported { continue; }
                    if let Ok(Some(status)) = node.try_wait() {
                        eprintln!(
                            "node {} (pid {}) exited: {status}; not restarting (see {})",
                            node.spec.id, node.pid(), node.spec.log_path().display()
                        );
                        *reported = true;
                    }
                }
            }
        }
    }
}
