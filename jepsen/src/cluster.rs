//! The system under test: N `arbiter serve` processes on loopback, every peer link and every
//! client link behind its own proxy, and the nemesis's levers on them.
//!
//! Invariant: nodes reach each other only through the [`Network`] (node i dials peer j at the
//! proxy for link i→j via `--dial`), and clients reach a node only through its client proxies,
//! whose addresses are also what the Raft membership advertises — so a leader hint sends a
//! client to a proxy, never around it. A node keeps its ports and data directory across
//! restarts, so the proxies in front of it stay valid.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::PathBuf;
use std::time::Duration;

use arbiter::auth::issue::write_operator_credentials;
use arbiter::config::Profile;
use arbiter::local_cluster::{self, LaunchError, NodeProcess, NodeSpec};
use arbiter_client::proto::NodeInfo;
use arbiter_client::BearerToken;
use arbiter_core::NodeId;
use serde_json::{json, Value};

use crate::nemesis::{Effects, Link};
use crate::network::{region_of, DelayTable, Network};
use crate::proxy::{LinkProxy, ProxyError};

/// How long a node may take to write its ready file, and the cluster to elect a leader.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Grace for SIGTERM at the end of the run before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// A restart that fails (the port not yet free, say) is tried this many times.
const RESTART_ATTEMPTS: usize = 3;

/// Everything needed to start the cluster.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    pub binary: PathBuf,
    pub nodes: usize,
    /// Node `n` keeps its data and `node.log` in `<root>/n<n>`.
    pub root: PathBuf,
    pub profile: Profile,
    pub delays: DelayTable,
    /// Further `arbiter serve` flags for every node (`--config`, `--snapshot-every`, ...).
    pub extra_args: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cannot find a free loopback port: {0}")]
    Ports(#[source] std::io::Error),
    #[error("cannot start the proxies: {0}")]
    Proxy(#[from] ProxyError),
    #[error(transparent)]
    Launch(#[from] LaunchError),
}

/// One node's fixed addresses: where it listens, and the client proxies in front of it.
struct Addresses {
    grpc: SocketAddr,
    http: SocketAddr,
    client_grpc: LinkProxy,
    client_http: LinkProxy,
}

pub struct Cluster {
    binary: PathBuf,
    specs: BTreeMap<NodeId, NodeSpec>,
    addresses: BTreeMap<NodeId, Addresses>,
    /// `None` while a node is killed.
    processes: BTreeMap<NodeId, Option<NodeProcess>>,
    network: Network,
    /// The run's operator token (its digest is in `<root>/tokens.toml`, which every node reads).
    token: String,
}

impl Cluster {
    /// Picks ports, starts the proxies and the nodes, bootstraps the cluster and waits for a
    /// leader every node agrees on.
    pub async fn start(config: &ClusterConfig) -> Result<Cluster, ClusterError> {
        let ids: Vec<NodeId> = (1..=config.nodes as NodeId).collect();
        std::fs::create_dir_all(&config.root).map_err(LaunchError::Io)?;
        let token = arbiter::auth::token::generate();
        let tokens_file = write_operator_credentials(&config.root, &token)
            .map_err(|e| LaunchError::Io(std::io::Error::other(e)))?;
        let mut addresses = BTreeMap::new();
        for &id in &ids {
            let (grpc, http) = (free_port()?, free_port()?);
            addresses.insert(
                id,
                Addresses {
                    grpc,
                    http,
                    // Clients sit next to every node: the WAN is between the nodes.
                    client_grpc: LinkProxy::start(grpc, Duration::ZERO).await?,
                    client_http: LinkProxy::start(http, Duration::ZERO).await?,
                },
            );
        }
        let targets = addresses.iter().map(|(id, a)| (*id, a.grpc)).collect();
        let network = Network::start(&targets, &config.delays).await?;

        let mut specs = BTreeMap::new();
        for &id in &ids {
            let a = &addresses[&id];
            let mut extra_args = vec![
                "--http-advertise".to_string(),
                a.client_http.local_addr().to_string(),
                "--auth-tokens-file".to_string(),
                tokens_file.display().to_string(),
            ];
            for &peer in ids.iter().filter(|p| **p != id) {
                if let Some(proxy) = network.addr(id, peer) {
                    extra_args.push("--dial".into());
                    extra_args.push(format!("{peer}={proxy}"));
                }
            }
            extra_args.extend(config.extra_args.iter().cloned());
            specs.insert(
                id,
                NodeSpec {
                    id,
                    region: region_of(id).to_string(),
                    data_dir: config.root.join(format!("n{id}")),
                    grpc_listen: a.grpc.to_string(),
                    http_listen: a.http.to_string(),
                    grpc_advertise: Some(a.client_grpc.local_addr().to_string()),
                    profile: config.profile,
                    extra_args,
                },
            );
        }

        let mut cluster = Cluster {
            binary: config.binary.clone(),
            specs,
            addresses,
            processes: BTreeMap::new(),
            network,
            token,
        };
        let started = futures::future::join_all(
            cluster
                .specs
                .values()
                .map(|spec| spec.start(&cluster.binary, START_TIMEOUT)),
        )
        .await;
        for (id, process) in ids.iter().zip(started) {
            cluster.processes.insert(*id, Some(process?));
        }
        let first = cluster.addresses[&ids[0]].grpc.to_string();
        local_cluster::initialize(&first, cluster.bearer(), cluster.members()).await?;
        cluster.wait_for_leader().await?;
        Ok(cluster)
    }

    /// The run's operator token, for the workload clients.
    pub fn token(&self) -> &str {
        &self.token
    }

    pub fn bearer(&self) -> Option<BearerToken> {
        BearerToken::new(&self.token).ok()
    }

    /// The membership: what each node advertises is its client proxies.
    fn members(&self) -> Vec<NodeInfo> {
        self.specs
            .values()
            .map(|spec| {
                let a = &self.addresses[&spec.id];
                NodeInfo {
                    node_id: spec.id,
                    region: spec.region.clone(),
                    grpc_addr: a.client_grpc.local_addr().to_string(),
                    http_addr: a.client_http.local_addr().to_string(),
                }
            })
            .collect()
    }

    /// Waits until the live nodes agree on a leader.
    pub async fn wait_for_leader(&self) -> Result<NodeId, LaunchError> {
        let endpoints: Vec<String> = self
            .processes
            .iter()
            .filter(|(_, p)| p.is_some())
            .map(|(id, _)| self.addresses[id].grpc.to_string())
            .collect();
        let status =
            local_cluster::wait_for_leader(&endpoints, self.bearer(), START_TIMEOUT).await?;
        Ok(status.node_id)
    }

    /// Every address of the run, for `cluster.json`: where each node listens, its client
    /// proxies, and the proxy of every peer link it dials.
    pub fn describe(&self) -> Value {
        let nodes: Vec<Value> = self
            .specs
            .values()
            .map(|spec| {
                let a = &self.addresses[&spec.id];
                let links: BTreeMap<String, String> = self
                    .specs
                    .keys()
                    .filter_map(|&to| {
                        let proxy = self.network.addr(spec.id, to)?;
                        Some((format!("n{to}"), proxy.to_string()))
                    })
                    .collect();
                json!({
                    "id": spec.id,
                    "region": spec.region,
                    "grpc": a.grpc.to_string(),
                    "http": a.http.to_string(),
                    "client_grpc_proxy": a.client_grpc.local_addr().to_string(),
                    "client_http_proxy": a.client_http.local_addr().to_string(),
                    "dials": links,
                    "data_dir": spec.data_dir,
                })
            })
            .collect();
        json!({ "nodes": nodes })
    }

    /// The gRPC addresses clients use (the client proxies).
    pub fn client_grpc_endpoints(&self) -> Vec<String> {
        self.addresses
            .values()
            .map(|a| a.client_grpc.local_addr().to_string())
            .collect()
    }

    /// The HTTP addresses clients use (the client proxies); leader hints name these.
    pub fn client_http_endpoints(&self) -> Vec<String> {
        self.addresses
            .values()
            .map(|a| a.client_http.local_addr().to_string())
            .collect()
    }

    /// The node that calls itself leader with the highest term, asked directly (not through
    /// the proxies, so a partition does not hide it). `None` during an election.
    pub async fn leader(&self) -> Option<NodeId> {
        let asks = self
            .processes
            .iter()
            .filter(|(_, p)| p.is_some())
            .map(|(id, _)| {
                let url = format!("http://{}/v1/cluster/status", self.addresses[id].http);
                let token = self.token.as_str();
                async move {
                    let response = arbiter::http_client::request_as(
                        Some(token),
                        "GET",
                        &url,
                        None,
                        Duration::from_millis(500),
                    )
                    .await
                    .ok()?;
                    let status: Value = serde_json::from_slice(&response.body).ok()?;
                    let leads = status["role"] == "Leader";
                    leads.then(|| (status["term"].as_u64().unwrap_or(0), *id))
                }
            });
        futures::future::join_all(asks)
            .await
            .into_iter()
            .flatten()
            .max()
            .map(|(_, id)| id)
    }

    /// Applies a fault's network and process effects; returns what was done, for the history.
    pub fn apply(&mut self, effects: &Effects) -> Value {
        if !effects.cut.is_empty() {
            self.network.partition(&effects.cut);
        }
        for id in &effects.kill {
            if let Some(Some(mut process)) = self.processes.insert(*id, None) {
                process.kill();
            }
        }
        for id in &effects.pause {
            if let Some(Some(process)) = self.processes.get(id) {
                process.signal(libc::SIGSTOP);
            }
        }
        json!({
            "cut": effects.cut.iter().map(|Link { from, to }| [from, to]).collect::<Vec<_>>(),
            "killed": effects.kill,
            "paused": effects.pause,
        })
    }

    /// Undoes a fault: links restored, paused nodes resumed, killed nodes restarted. Errors
    /// name the nodes that could not be restarted.
    pub async fn heal(&mut self, effects: &Effects) -> Result<(), Vec<(NodeId, String)>> {
        self.network.heal();
        for id in &effects.pause {
            if let Some(Some(process)) = self.processes.get(id) {
                process.signal(libc::SIGCONT);
            }
        }
        self.restart_dead().await
    }

    /// Heals everything, whatever the last fault was.
    pub async fn heal_all(&mut self) -> Result<(), Vec<(NodeId, String)>> {
        self.network.heal();
        for process in self.processes.values().flatten() {
            process.signal(libc::SIGCONT);
        }
        self.restart_dead().await
    }

    /// Restarts every killed node, all at once (a whole-cluster restart is one step).
    async fn restart_dead(&mut self) -> Result<(), Vec<(NodeId, String)>> {
        let dead: Vec<NodeId> = self
            .processes
            .iter()
            .filter(|(_, p)| p.is_none())
            .map(|(id, _)| *id)
            .collect();
        let binary = &self.binary;
        let restarts = dead.iter().map(|id| {
            let spec = &self.specs[id];
            async move {
                let mut last = String::new();
                for _ in 0..RESTART_ATTEMPTS {
                    match spec.start(binary, START_TIMEOUT).await {
                        Ok(process) => return (spec.id, Ok(process)),
                        Err(e) => last = e.to_string(),
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                (spec.id, Err(last))
            }
        });
        let mut failed = Vec::new();
        for (id, result) in futures::future::join_all(restarts).await {
            match result {
                Ok(process) => {
                    self.processes.insert(id, Some(process));
                }
                Err(e) => failed.push((id, e)),
            }
        }
        if failed.is_empty() {
            Ok(())
        } else {
            Err(failed)
        }
    }

    /// Stops every node (SIGTERM, then SIGKILL after a grace period), so logs are complete.
    pub async fn stop(&mut self) {
        let stops = self
            .processes
            .values_mut()
            .flatten()
            .map(|p| p.stop(STOP_GRACE));
        futures::future::join_all(stops).await;
    }
}

/// A loopback port free right now. The listener is closed before the node binds it; nothing
/// else on this machine is expected to grab it in between.
fn free_port() -> Result<SocketAddr, ClusterError> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map_err(ClusterError::Ports)
}
