//! Shared integration-test harness: a cluster of real `arbiter serve` processes on loopback,
//! in a temp dir, torn down (processes killed, dir removed) when dropped.
#![allow(dead_code)] // each test binary uses a different subset

use std::time::Duration;

use std::path::PathBuf;
use std::sync::OnceLock;

use arbiter::auth::issue::{issue, write_operator_credentials, TokenGrant};
use arbiter::config::Profile;
use arbiter::local_cluster::{initialize, wait_for_leader, NodeProcess, NodeSpec};
use arbiter_client::proto::cluster_service_client::ClusterServiceClient;
use arbiter_client::proto::{NodeStatus, StatusRequest};
use arbiter_client::{authorized, AuthChannel, BearerToken};

pub const REGIONS: [&str; 3] = ["us-east-1", "us-west-2", "eu-central-1"];

pub fn binary() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_BIN_EXE_arbiter"))
}

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("info,openraft=warn")
        .with_test_writer()
        .try_init();
}

/// The operator token of every test cluster in this test binary: made once, so helpers that
/// only know an address can authenticate too.
pub fn operator_token() -> &'static str {
    static TOKEN: OnceLock<String> = OnceLock::new();
    TOKEN.get_or_init(arbiter::auth::token::generate)
}

pub fn operator_bearer() -> Option<BearerToken> {
    Some(BearerToken::new(operator_token()).expect("generated tokens are valid"))
}

/// A channel to `url` that sends the operator token.
pub async fn authorized_channel(url: String) -> Result<AuthChannel, tonic::transport::Error> {
    let channel = tonic::transport::Endpoint::from_shared(url)?
        .connect()
        .await?;
    Ok(authorized(channel, operator_bearer()))
}

pub struct TestCluster {
    pub dir: tempfile::TempDir,
    /// The nodes' tokens file (`--auth-tokens-file`); [`TestCluster::issue`] adds to it.
    pub tokens_file: PathBuf,
    /// `None` while a node is stopped.
    pub nodes: Vec<Option<NodeProcess>>,
    pub specs: Vec<NodeSpec>,
}

impl TestCluster {
    /// Starts `n` nodes on port 0, bootstraps them and waits for a leader.
    pub async fn start(n: usize, extra_args: &[&str]) -> TestCluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let tokens_file =
            write_operator_credentials(dir.path(), operator_token()).expect("tokens file");
        let mut extra_args: Vec<String> = extra_args.iter().map(|s| s.to_string()).collect();
        extra_args.extend([
            "--auth-tokens-file".into(),
            tokens_file.display().to_string(),
        ]);
        let mut nodes = Vec::new();
        let mut specs = Vec::new();
        for i in 0..n {
            let id = i as u64 + 1;
            let mut spec = NodeSpec {
                id,
                region: REGIONS[i % REGIONS.len()].to_string(),
                data_dir: dir.path().join(format!("node-{id}")),
                grpc_listen: "127.0.0.1:0".into(),
                http_listen: "127.0.0.1:0".into(),
                grpc_advertise: None,
                profile: Profile::Lan,
                extra_args: extra_args.clone(),
            };
            let process = spec
                .start(&binary(), Duration::from_secs(30))
                .await
                .expect("node starts");
            // Pin the ports the OS chose, so a restarted node comes back at the same address.
            spec.grpc_listen = process.ready.grpc_addr.clone();
            spec.http_listen = process.ready.http_addr.clone();
            specs.push(spec);
            nodes.push(Some(process));
        }
        let cluster = TestCluster {
            dir,
            tokens_file,
            nodes,
            specs,
        };
        let members = cluster.running().map(NodeProcess::info).collect();
        initialize(&cluster.specs[0].grpc_listen, operator_bearer(), members)
            .await
            .expect("initialize");
        cluster.leader(Duration::from_secs(20)).await;
        cluster
    }

    pub fn running(&self) -> impl Iterator<Item = &NodeProcess> {
        self.nodes.iter().flatten()
    }

    /// gRPC endpoints of every node, running or not.
    pub fn endpoints(&self) -> Vec<String> {
        self.specs.iter().map(|s| s.grpc_listen.clone()).collect()
    }

    pub fn running_endpoints(&self) -> Vec<String> {
        self.running().map(|n| n.ready.grpc_addr.clone()).collect()
    }

    /// Waits until the running nodes agree on a leader; returns its status.
    pub async fn leader(&self, timeout: Duration) -> NodeStatus {
        wait_for_leader(&self.running_endpoints(), operator_bearer(), timeout)
            .await
            .expect("a leader is elected")
    }

    /// Index into `nodes` of node `id`.
    pub fn index(id: u64) -> usize {
        (id - 1) as usize
    }

    pub fn kill(&mut self, id: u64) {
        if let Some(mut node) = self.nodes[Self::index(id)].take() {
            node.kill();
        }
    }

    pub async fn restart(&mut self, id: u64) {
        let i = Self::index(id);
        assert!(self.nodes[i].is_none(), "node {id} is still running");
        let process = self.specs[i]
            .start(&binary(), Duration::from_secs(30))
            .await
            .expect("node restarts");
        self.nodes[i] = Some(process);
    }

    pub fn node(&self, id: u64) -> &NodeProcess {
        self.nodes[Self::index(id)].as_ref().expect("node running")
    }

    /// Issues a token for `grant` into the cluster's tokens file and has every running node
    /// reload it (SIGHUP); returns once every node accepts it.
    pub async fn issue(&self, grant: TokenGrant) -> String {
        let token = issue(&self.tokens_file, &grant).expect("issue a token");
        for node in self.running() {
            node.signal(libc::SIGHUP);
        }
        let bearer = BearerToken::new(&token).expect("valid token");
        for node in self.running() {
            let endpoint = node.ready.grpc_addr.clone();
            eventually(
                "every node to load the new token",
                Duration::from_secs(10),
                || {
                    let (endpoint, bearer) = (endpoint.clone(), bearer.clone());
                    // Any answer but UNAUTHENTICATED means the token is known.
                    async move {
                        arbiter::cli::fetch_status(endpoint, Some(bearer))
                            .await
                            .ok()
                    }
                },
            )
            .await;
        }
        token
    }
}

pub async fn status(endpoint: &str) -> Option<NodeStatus> {
    let mut client = authorized_channel(format!("http://{endpoint}"))
        .await
        .map(ClusterServiceClient::new)
        .ok()?;
    tokio::time::timeout(Duration::from_secs(2), client.get_status(StatusRequest {}))
        .await
        .ok()?
        .ok()
        .map(|r| r.into_inner())
}

/// Polls `check` every 20 ms until it returns `Some`, or panics after `timeout` naming `what`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Acquires `resource` for `holder` through whichever node accepts it (following
/// redirects by trying every endpoint), within `timeout`. Returns the token, or the last error.
pub async fn acquire_any(
    endpoints: &[String],
    resource: &str,
    holder: &str,
    ttl_ms: u64,
    timeout: Duration,
) -> Result<u64, String> {
    use arbiter_client::proto::lease_service_client::LeaseServiceClient;
    use arbiter_client::proto::AcquireRequest;
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last_error = String::from("no attempt");
    while tokio::time::Instant::now() < deadline {
        for endpoint in endpoints {
            let call = async {
                let mut client = authorized_channel(format!("http://{endpoint}"))
                    .await
                    .map(LeaseServiceClient::new)
                    .map_err(|e| e.to_string())?;
                client
                    .acquire(AcquireRequest {
                        resource: resource.into(),
                        holder: holder.into(),
                        ttl_ms,
                        ..Default::default()
                    })
                    .await
                    .map(|r| r.into_inner())
                    .map_err(|s| format!("{:?}: {}", s.code(), s.message()))
            };
            match tokio::time::timeout(Duration::from_secs(3), call).await {
                Ok(Ok(reply)) if reply.ok => return Ok(reply.token),
                Ok(Ok(reply)) => return Err(format!("refused: {:?}", reply.refusal)),
                Ok(Err(e)) => last_error = e,
                Err(_) => last_error = "call timed out".into(),
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Err(last_error)
}

/// The current fencing epoch of `resource` as the leader sees it (0 = never leased).
pub async fn epoch_of(endpoints: &[String], resource: &str) -> Option<u64> {
    use arbiter_client::proto::lease_service_client::LeaseServiceClient;
    use arbiter_client::proto::GetLeaseRequest;
    for endpoint in endpoints {
        let Ok(mut client) = authorized_channel(format!("http://{endpoint}"))
            .await
            .map(LeaseServiceClient::new)
        else {
            continue;
        };
        let request = GetLeaseRequest {
            resource: resource.into(),
        };
        if let Ok(Ok(reply)) =
            tokio::time::timeout(Duration::from_secs(3), client.current_epoch(request)).await
        {
            return Some(reply.into_inner().epoch);
        }
    }
    None
}

/// Waits until every running node has applied the same index with the same state digest, and
/// returns (applied index, digest).
pub async fn converged(cluster: &TestCluster, timeout: Duration) -> (u64, u64) {
    let endpoints = cluster.running_endpoints();
    eventually("all nodes to converge on one state", timeout, || {
        let endpoints = endpoints.clone();
        async move {
            let mut seen = None;
            for endpoint in &endpoints {
                let s = status(endpoint).await?;
                let here = (s.applied_index?, s.state_digest);
                if *seen.get_or_insert(here) != here {
                    return None;
                }
            }
            seen
        }
    })
    .await
}
pub mod drill;
