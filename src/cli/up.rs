//! `arbiter up`: the main job — a local three-node cluster on loopback from the embedded
//! default (`deploy/local-cluster.toml`). Starts the nodes, bootstraps them (idempotent, so a
//! second `up` on the same data dir resumes the same cluster), writes `cluster.json`, prints
//! the endpoints and stops all three on Ctrl-C. A child that dies is reported, not restarted.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use serde::{Deserialize, Serialize};

use crate::auth::issue::{write_operator_credentials, OPERATOR_TOKEN_FILE, TOKENS_FILE};
use crate::config::Profile;
use crate::local_cluster::{initialize, wait_for_leader, NodeProcess, NodeSpec};
use crate::raft_types::NodeId;
use arbiter_client::BearerToken;

pub const DEFAULT_DATA_DIR: &str = "arbiter-data";
const EMBEDDED_CLUSTER: &str = include_str!("../../deploy/local-cluster.toml");
const CLUSTER_FILE: &str = "cluster.json";

#[derive(Args, Debug)]
pub struct UpArgs {
    /// Where the nodes keep their data (one sub-dir per node) and where cluster.json goes.
    #[arg(long, default_value = DEFAULT_DATA_DIR)]
    data_dir: PathBuf,
    /// Node N listens on gRPC base+N and HTTP base+1080+N (default 7000: 7001/8081, ...).
    #[arg(long)]
    base_port: Option<u16>,
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
    #[arg(long, value_delimiter = ',')]
    pub endpoints: Vec<String>,
    /// Data dir of `arbiter up`, to find cluster.json and operator.token.
    #[arg(long, default_value = DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,
    /// Bearer token to authenticate with. Default: the data dir's operator.token.
    #[arg(long, env = "ARBITER_TOKEN", hide_env_values = true)]
    pub auth_token: Option<String>,
}

impl ClusterArgs {
    pub fn endpoints(&self, port: Port) -> Vec<String> {
        resolve_endpoints(&self.endpoints, &self.data_dir, port)
    }

    /// The token to send: `--auth-token`/`ARBITER_TOKEN`, else the operator token `arbiter up` wrote.
    pub fn token(&self) -> Option<String> {
        resolve_token(self.auth_token.as_deref(), &self.data_dir)
    }

    /// [`Self::token`], ready for the SDK.
    pub fn bearer(&self) -> anyhow::Result<Option<BearerToken>> {
        Ok(self.token().map(|t| BearerToken::new(&t)).transpose()?)
    }
}

/// The token a client command sends: `explicit` if given, else the operator token `arbiter up`
/// wrote into `data_dir`, else none.
pub fn resolve_token(explicit: Option<&str>, data_dir: &Path) -> Option<String> {
    explicit.map(str::to_string).or_else(|| {
        std::fs::read_to_string(data_dir.join(OPERATOR_TOKEN_FILE))
            .ok()
            .map(|t| t.trim().to_string())
    })
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

/// The tokens file and operator token of the cluster in `data_dir`: kept from an earlier `up`
/// (so a resumed cluster keeps its token), else made now.
fn local_credentials(data_dir: &Path) -> anyhow::Result<(PathBuf, String)> {
    let tokens_file = data_dir.join(TOKENS_FILE);
    if let Ok(token) = std::fs::read_to_string(data_dir.join(OPERATOR_TOKEN_FILE)) {
        if tokens_file.exists() {
            return Ok((tokens_file, token.trim().to_string()));
        }
    }
    let token = crate::auth::token::generate();
    let tokens_file = write_operator_credentials(data_dir, &token)?;
    Ok((tokens_file, token))
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
        if u64::from(base) + 1080 + max_id > u64::from(u16::MAX) {
            bail!("--base-port {base} leaves no room for HTTP ports (base+1080+id)");
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
    let (tokens_file, token) = local_credentials(&args.data_dir)?;
    let bearer = Some(BearerToken::new(&token)?);

    let mut nodes: Vec<NodeProcess> = Vec::new();
    for node in &def.nodes {
        let spec = NodeSpec {
            id: node.id,
            region: node.region.clone(),
            data_dir: args.data_dir.join(format!("node-{}", node.id)),
            grpc_listen: format!("127.0.0.1:{}", u64::from(base) + node.id),
            http_listen: format!("127.0.0.1:{}", u64::from(base) + 1080 + node.id),
            grpc_advertise: None,
            profile: def.profile,
            extra_args: vec![
                "--auth-tokens-file".into(),
                tokens_file.display().to_string(),
            ],
        };
        eprintln!("starting node {} ({})...", spec.id, spec.region);
        nodes.push(spec.start(&binary, Duration::from_secs(30)).await?);
    }

    let members = nodes.iter().map(NodeProcess::info).collect();
    let already = initialize(&nodes[0].ready.grpc_addr, bearer.clone(), members).await?;
    let endpoints: Vec<String> = nodes.iter().map(|n| n.ready.grpc_addr.clone()).collect();
    let leader = wait_for_leader(&endpoints, bearer, Duration::from_secs(30)).await?;

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
    for n in &cluster.nodes {
        println!(
            "  node {} {:<13} grpc {}  http http://{}  pid {}  log {}",
            n.node_id,
            n.region,
            n.grpc_addr,
            n.http_addr,
            n.pid,
            n.data_dir.join("node.log").display()
        );
    }
    println!("cluster file: {}", cluster_path.display());
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
