//! The arbiter cluster the benchmarks run against (`vs-etcd`, `scale-bench`): three `lan`
//! nodes of real `arbiter serve` processes on loopback, with TLS and bearer tokens, started as
//! `arbiter up` starts them, plus what a benchmark reads off them (status, `/metrics`, RSS)
//! and a fresh learner on request.
//!
//! Invariant: every node is a child this value owns; dropping it kills them all, and every
//! call to a node ends by a deadline.

use std::path::{Path, PathBuf};
use std::time::Duration;

use arbiter::certs::DevCerts;
use arbiter::http_client::HttpClient;
use arbiter::local_cluster::{self, NodeProcess, NodeSpec};
use arbiter_client::proto::cluster_service_client::ClusterServiceClient;
use arbiter_client::proto::{AddLearnerRequest, NodeStatus};
use arbiter_client::ClientOptions;
use arbiter_core::NodeId;

/// A node start, the cluster's initialization and a leader election each give up after this.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);
/// One status or `/metrics` read gives up after this.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
const REGIONS: [&str; 3] = ["us-east-1", "us-west-2", "eu-central-1"];

pub struct ArbiterCluster {
    /// Voters 1..=3 first, then any learners added, in the order they were added.
    pub nodes: Vec<NodeProcess>,
    pub options: ClientOptions,
    binary: PathBuf,
    dir: PathBuf,
    certs: DevCerts,
    http: HttpClient,
    /// `arbiter serve` flags every node of this cluster gets.
    extra_args: Vec<String>,
}

impl ArbiterCluster {
    /// Three `lan` nodes on loopback with TLS and tokens, as `arbiter up` starts them, each
    /// also given `extra_args` (e.g. `--snapshot-every 1000`).
    pub async fn start(
        binary: &Path,
        dir: &Path,
        extra_args: &[String],
    ) -> anyhow::Result<ArbiterCluster> {
        std::fs::create_dir_all(dir)?;
        let ids: Vec<(NodeId, String)> = (1..=3)
            .map(|id| (id, REGIONS[id as usize - 1].to_string()))
            .collect();
        let certs = DevCerts::ensure(&dir.join("certs"), &ids)?;
        let operator = certs.operator();
        let mut cluster = ArbiterCluster {
            nodes: Vec::new(),
            options: operator.client_options()?,
            http: operator.http_client()?,
            binary: binary.to_path_buf(),
            dir: dir.to_path_buf(),
            certs,
            extra_args: extra_args.to_vec(),
        };
        for (id, region) in &ids {
            let node = cluster.start_node(*id, region).await?;
            cluster.nodes.push(node);
        }
        let members = cluster.nodes.iter().map(NodeProcess::info).collect();
        local_cluster::initialize(
            &cluster.nodes[0].ready.grpc_addr,
            members,
            START_TIMEOUT,
            &cluster.options,
        )
        .await?;
        cluster.leader().await?;
        Ok(cluster)
    }

    async fn start_node(&self, id: NodeId, region: &str) -> anyhow::Result<NodeProcess> {
        let mut spec = NodeSpec::on_loopback(id, region, self.dir.join(format!("n{id}")))?;
        spec.tls = Some(self.certs.node_tls(id));
        spec.extra_args = vec![
            "--auth-tokens-file".into(),
            self.certs.tokens_file().display().to_string(),
        ];
        spec.extra_args.extend(self.extra_args.iter().cloned());
        Ok(spec.start(&self.binary, START_TIMEOUT).await?)
    }

    /// The client gRPC addresses of the nodes that are running.
    pub fn endpoints(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| n.ready.grpc_addr.clone())
            .collect()
    }

    /// The leader's index in `nodes`, once every reachable node agrees on it.
    pub async fn leader(&self) -> anyhow::Result<usize> {
        let status =
            local_cluster::wait_for_leader(&self.endpoints(), START_TIMEOUT, &self.options).await?;
        self.index_of(status.node_id)
    }

    pub fn index_of(&self, id: NodeId) -> anyhow::Result<usize> {
        self.nodes
            .iter()
            .position(|n| n.spec.id == id)
            .ok_or_else(|| anyhow::anyhow!("node {id} is not a node of the run"))
    }

    /// Node `i`'s own status (role, term, leader, indexes).
    pub async fn status(&self, i: usize) -> anyhow::Result<NodeStatus> {
        arbiter::grpc::cluster_service::fetch_status(
            self.nodes[i].ready.grpc_addr.clone(),
            &self.options,
        )
        .await
        .map_err(|e| anyhow::anyhow!("status of node {}: {e}", self.nodes[i].spec.id))
    }

    /// Node `i`'s `/metrics` exposition.
    pub async fn metrics(&self, i: usize) -> anyhow::Result<String> {
        let url = format!(
            "{}/metrics",
            self.http.base_url(&self.nodes[i].ready.http_addr)
        );
        let response = self.http.request("GET", &url, None, READ_TIMEOUT).await?;
        if !response.is_success() {
            anyhow::bail!("{url}: HTTP {}", response.status);
        }
        Ok(String::from_utf8_lossy(&response.body).into_owned())
    }

    /// Node `i`'s data directory.
    pub fn data_dir(&self, i: usize) -> &Path {
        &self.nodes[i].spec.data_dir
    }

    /// Starts node `id` on an empty data dir, waiting to be added; returns its index in
    /// `nodes`.
    pub async fn start_learner(&mut self, id: NodeId, region: &str) -> anyhow::Result<usize> {
        DevCerts::ensure(&self.certs.dir, &[(id, region.to_string())])?;
        let node = self.start_node(id, region).await?;
        self.nodes.push(node);
        Ok(self.nodes.len() - 1)
    }

    /// Asks the leader, `nodes[leader]`, to add node `nodes[i]` as a learner (named by the
    /// caller: until it is added, the new node names no leader, so [`Self::leader`] would wait
    /// for agreement in vain). Does not wait for it to catch up:
    /// the leader's `AddLearner` answers within its write deadline, which sending a large
    /// snapshot outlasts, so the caller follows the learner's applied index instead.
    pub async fn add_learner(&self, leader: usize, i: usize) -> anyhow::Result<()> {
        let id = self.nodes[i].spec.id;
        let channel = arbiter_client::channel(&self.nodes[leader].ready.grpc_addr, &self.options)?;
        let mut client = ClusterServiceClient::new(channel);
        let call = client.add_learner(AddLearnerRequest {
            node: Some(self.nodes[i].info()),
        });
        match tokio::time::timeout(START_TIMEOUT, call).await {
            Ok(Ok(_)) => Ok(()),
            // Past the leader's write deadline while the learner catches up: the leader goes
            // on sending it the snapshot and the log.
            Ok(Err(status)) if status.code() == tonic::Code::DeadlineExceeded => Ok(()),
            Ok(Err(status)) => anyhow::bail!("adding node {id} as a learner: {status}"),
            Err(_) => anyhow::bail!("adding node {id} as a learner: no answer within 30 s"),
        }
    }
}
