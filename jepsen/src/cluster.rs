//! The system under test: N `arbiter serve` processes on loopback, every peer link and every
//! client link behind its own proxy, and the nemesis's levers on them.
//!
//! Invariant: nodes reach each other only through the [`Network`] (node i dials peer j at the
//! proxy for link i→j via `--dial`), and clients reach a node only through its client proxies,
//! whose addresses are also what the Raft membership advertises — so a leader hint sends a
//! client to a proxy, never around it. A node keeps its sockets and data directory across
//! restarts, so the proxies in front of it stay valid: the cluster binds each node's sockets
//! once and hands them to every start of the node (`local_cluster::Listeners`), so no port is
//! ever released and re-bound. A killed node's ports refuse connections until it restarts.
//! With `lazyfs`, each data directory is its own lazyfs mount, crashed only while its node
//! is dead.
//!
//! TLS is on, as in production: the run makes its own CA in `<root>/certs`; the proxies relay
//! the TLS bytes unchanged, and nodes verify each other by the name `arbiter-node-<id>` in
//! their certificates (clients by `127.0.0.1`, which every local node certificate carries), so
//! a proxy in between never breaks verification.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use arbiter::certs::{CertError, DevCerts};
use arbiter::config::Profile;
use arbiter::local_cluster::{self, LaunchError, Listeners, NodeProcess, NodeSpec};
use arbiter::tls::{ClientCredentials, CredentialsError};
use arbiter_client::proto::NodeInfo;
use arbiter_core::NodeId;
use serde_json::{json, Value};

use crate::lazyfs::{LazyFs, LazyFsError};
use crate::nemesis::{Effects, Link};
use crate::network::{region_of, DelayTable, Network};
use crate::proxy::{LinkProxy, ProxyError};

/// How long a node may take to write its ready file, and the cluster to elect a leader.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Grace for SIGTERM at the end of the run before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// Longest wait for a leadership move request, above its worst case on `wan`: the lease wait
/// (3.4 s), draining writes in flight and the move entry's commit (the 8 s write deadline each),
/// the acknowledgement (1.6 s) and the election (6.4 s).
const MOVE_TIMEOUT: Duration = Duration::from_secs(30);

/// Raft timing that replaces the profile's, for trying a tuning in a benchmark: the top-level
/// `heartbeat_ms`, `election_min_ms` and `election_max_ms` of a node's `--config` file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimingOverride {
    pub heartbeat_ms: Option<u64>,
    pub election_min_ms: Option<u64>,
    pub election_max_ms: Option<u64>,
}

impl TimingOverride {
    /// The keys to put at the top of a node config file (before any table); empty when
    /// nothing is overridden.
    pub fn toml(&self) -> String {
        [
            ("heartbeat_ms", self.heartbeat_ms),
            ("election_min_ms", self.election_min_ms),
            ("election_max_ms", self.election_max_ms),
        ]
        .into_iter()
        .filter_map(|(key, value)| Some(format!("{key} = {}\n", value?)))
        .collect()
    }

    /// How it reads in a benchmark's banner.
    pub fn describe(&self, profile: Profile) -> String {
        let preset = profile.timing();
        format!(
            "heartbeat {} ms, election {}-{} ms",
            self.heartbeat_ms.unwrap_or(preset.heartbeat_ms),
            self.election_min_ms.unwrap_or(preset.election_min_ms),
            self.election_max_ms.unwrap_or(preset.election_max_ms)
        )
    }
}

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
    /// Mount each data directory on lazyfs (needed by the `lose-unsynced` fault).
    pub lazyfs: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cannot start the proxies: {0}")]
    Proxy(#[from] ProxyError),
    #[error(transparent)]
    Launch(#[from] LaunchError),
    #[error(transparent)]
    LazyFs(#[from] LazyFsError),
    #[error("cannot make the run's certificates: {0}")]
    Certs(#[from] CertError),
    #[error(transparent)]
    Credentials(#[from] CredentialsError),
}

/// One node's fixed addresses: where it listens, and the client proxies in front of it.
struct Addresses {
    grpc: SocketAddr,
    http: SocketAddr,
    /// The peer (Raft) port, reached only through the link proxies.
    peer: SocketAddr,
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
    /// The run's CA, node certificates and operator token.
    certs: DevCerts,
    /// Each node's lazyfs, when the data dirs are on lazyfs. Declared after `processes`, so
    /// that on drop (an error, Ctrl-C) the nodes are killed before their mounts go away.
    mounts: BTreeMap<NodeId, LazyFs>,
}

impl Cluster {
    /// Binds every node's sockets, starts the proxies and the nodes, bootstraps the cluster
    /// and waits for a leader every node agrees on.
    pub async fn start(config: &ClusterConfig) -> Result<Cluster, ClusterError> {
        let ids: Vec<NodeId> = (1..=config.nodes as NodeId).collect();
        let nodes: Vec<(NodeId, String)> = ids
            .iter()
            .map(|&id| (id, region_of(id).to_string()))
            .collect();
        let certs = DevCerts::ensure(&config.root.join("certs"), &nodes)?;
        let mut addresses = BTreeMap::new();
        let mut listeners = BTreeMap::new();
        for &id in &ids {
            let bound = Listeners::loopback()?;
            let (grpc, http, peer) = (bound.grpc(), bound.http(), bound.peer());
            listeners.insert(id, bound);
            addresses.insert(
                id,
                Addresses {
                    grpc,
                    http,
                    peer,
                    // Clients sit next to every node: the WAN is between the nodes.
                    client_grpc: LinkProxy::start(grpc, Duration::ZERO).await?,
                    client_http: LinkProxy::start(http, Duration::ZERO).await?,
                },
            );
        }
        let targets = addresses.iter().map(|(id, a)| (*id, a.peer)).collect();
        let network = Network::start(&targets, &config.delays).await?;

        let mut specs = BTreeMap::new();
        for &id in &ids {
            let a = &addresses[&id];
            let mut extra_args = vec![
                "--http-advertise".to_string(),
                a.client_http.local_addr().to_string(),
                "--auth-tokens-file".to_string(),
                certs.tokens_file().display().to_string(),
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
                    listeners: listeners[&id].clone(),
                    grpc_advertise: Some(a.client_grpc.local_addr().to_string()),
                    peer_advertise: None,
                    tls: Some(certs.node_tls(id)),
                    profile: config.profile,
                    extra_args,
                    env: Vec::new(),
                },
            );
        }

        let mut mounts = BTreeMap::new();
        if config.lazyfs {
            for spec in specs.values() {
                let store = config.root.join(".lazyfs").join(format!("n{}", spec.id));
                // node.log is the harness's record of the node, not the node's data.
                let mount = LazyFs::mount(&spec.data_dir, &store, &["node.log"])?;
                mounts.insert(spec.id, mount);
            }
        }
        let mut cluster = Cluster {
            binary: config.binary.clone(),
            specs,
            addresses,
            processes: BTreeMap::new(),
            network,
            certs,
            mounts,
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
        let options = cluster.credentials().client_options()?;
        local_cluster::initialize(&first, cluster.members(), START_TIMEOUT, &options).await?;
        cluster.wait_for_leader().await?;
        Ok(cluster)
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
                    peer_addr: a.peer.to_string(),
                }
            })
            .collect()
    }

    /// The operator's credentials for this run's cluster (CA and bearer token).
    pub fn credentials(&self) -> ClientCredentials {
        self.certs.operator()
    }

    /// Waits until the live nodes agree on a leader.
    pub async fn wait_for_leader(&self) -> Result<NodeId, ClusterError> {
        let endpoints: Vec<String> = self
            .processes
            .iter()
            .filter(|(_, p)| p.is_some())
            .map(|(id, _)| self.addresses[id].grpc.to_string())
            .collect();
        let options = self.credentials().client_options()?;
        let status = local_cluster::wait_for_leader(&endpoints, START_TIMEOUT, &options).await?;
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
            .map(|(id, _)| async move {
                let status = self.status(*id).await?;
                let leads = status["role"] == "Leader";
                leads.then(|| (status["term"].as_u64().unwrap_or(0), *id))
            });
        futures::future::join_all(asks)
            .await
            .into_iter()
            .flatten()
            .max()
            .map(|(_, id)| id)
    }

    /// Node `id`'s Prometheus text (`/metrics`), asked directly; `None` if it does not answer
    /// within a second.
    pub async fn metrics(&self, id: NodeId) -> Option<String> {
        let body = self.get(id, "/metrics", Duration::from_secs(1)).await?;
        String::from_utf8(body).ok()
    }

    /// Node `id`'s `/v1/cluster/status`, asked directly; `None` if it does not answer within
    /// half a second.
    pub async fn status(&self, id: NodeId) -> Option<Value> {
        let body = self
            .get(id, "/v1/cluster/status", Duration::from_millis(500))
            .await?;
        serde_json::from_slice(&body).ok()
    }

    /// The body of a GET of `path` at node `id`'s HTTP port (not through its proxy), with the
    /// operator's credentials.
    async fn get(&self, id: NodeId, path: &str, timeout: Duration) -> Option<Vec<u8>> {
        let http = self.credentials().http_client().ok()?;
        let addr = self.addresses.get(&id)?.http.to_string();
        let url = format!("{}{path}", http.base_url(&addr));
        let response = http.request("GET", &url, None, timeout).await.ok()?;
        Some(response.body)
    }

    /// Asks the current leader to hand leadership to `to`; returns its answer (status and
    /// body: the move report, or why it was refused), for the history.
    pub async fn move_leader(&self, to: NodeId) -> Value {
        let http = match self.credentials().http_client() {
            Ok(http) => http,
            Err(e) => return json!({ "error": format!("operator credentials: {e}") }),
        };
        let Some(leader) = self.leader().await else {
            return json!({ "error": "no leader to ask" });
        };
        let url = format!(
            "{}/v1/cluster/leader",
            http.base_url(&self.addresses[&leader].http.to_string())
        );
        // Forced: the failover-log workload keeps failovers open most of the run, and the
        // point is a move at an arbitrary moment.
        let body = json!({ "nodeId": to, "force": true }).to_string();
        match http
            .request("POST", &url, Some(body.as_bytes()), MOVE_TIMEOUT)
            .await
        {
            Ok(r) => json!({
                "status": r.status,
                "answer": serde_json::from_slice::<Value>(&r.body).unwrap_or(Value::Null),
            }),
            Err(e) => json!({ "error": e.to_string() }),
        }
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
        // After the kills above, which reap: no process of these nodes uses its mount.
        let lost: BTreeMap<String, Value> = effects
            .lose_unsynced
            .iter()
            .map(|id| {
                let outcome = match self.mounts.get(id) {
                    Some(mount) => match mount.crash() {
                        Ok(dropped) => json!(dropped),
                        Err(e) => json!({ "error": e.to_string() }),
                    },
                    None => json!({ "error": "data dir is not on lazyfs" }),
                };
                (format!("n{id}"), outcome)
            })
            .collect();
        json!({
            "cut": effects.cut.iter().map(|Link { from, to }| [from, to]).collect::<Vec<_>>(),
            "killed": effects.kill,
            "paused": effects.pause,
            "lost_unsynced": lost,
        })
    }

    /// Undoes a fault: links restored, paused nodes resumed, killed nodes restarted. Errors
    /// name the nodes that could not be restarted. Returns what was done beyond that, for the
    /// history.
    pub async fn heal(&mut self, effects: &Effects) -> Result<Value, Vec<(NodeId, String)>> {
        self.network.heal();
        for id in &effects.pause {
            if let Some(Some(process)) = self.processes.get(id) {
                process.signal(libc::SIGCONT);
            }
        }
        self.restart_dead().await?;
        if effects.kill.len() < self.specs.len() {
            return Ok(Value::Null);
        }
        // After a whole-cluster restart, bootstrap again as the cluster's automation would
        // (initialize is idempotent). A cluster that kept its state ignores it; one that lost
        // it all to a power loss comes back empty and serving, so the checkers can see what
        // was lost instead of an outage that hides it.
        let first = self.specs.values().next().map(|spec| spec.id);
        let endpoint = first.map(|id| self.addresses[&id].grpc.to_string());
        let Some((first, endpoint)) = first.zip(endpoint) else {
            return Ok(Value::Null);
        };
        let options = match self.credentials().client_options() {
            Ok(options) => options,
            Err(e) => return Err(vec![(first, format!("operator credentials: {e}"))]),
        };
        match local_cluster::initialize(&endpoint, self.members(), START_TIMEOUT, &options).await {
            Ok(already) => Ok(json!({ "reinitialized": !already })),
            Err(e) => Err(vec![(first, format!("initialize after restart: {e}"))]),
        }
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
                let started = spec.start(binary, START_TIMEOUT).await;
                (spec.id, started.map_err(|e| e.to_string()))
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

    /// Unmounts every lazyfs cleanly (nodes stopped first), leaving each node's data in its
    /// data dir. Returns the mounts that could not be unmounted.
    pub fn unmount(&mut self) -> Vec<LazyFsError> {
        std::mem::take(&mut self.mounts)
            .into_values()
            .filter_map(|mount| mount.unmount().err())
            .collect()
    }
}
