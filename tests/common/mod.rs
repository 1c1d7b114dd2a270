//! Shared integration-test harness: a cluster of real `arbiter serve` processes on loopback,
//! in a temp dir, torn down (processes killed, dir removed) when dropped.
//!
//! Ports: each node's sockets are bound once, when the cluster starts, and handed to every
//! (re)start of that node (`NodeSpec::listeners`, see `arbiter::local_cluster`), so a
//! restarted node comes back at the same address without ever releasing its port. A killed
//! or stopped node refuses connections until it is restarted.
//!
//! Waiting: every wait polls a condition until a deadline (`eventually`, `wait_for_leader`,
//! the ready file in `NodeSpec::start`); none sleeps and hopes.
//!
//! TLS and authentication are on, as in production: every node serves its certificate from
//! [`certs`] and loads the tokens file of its cluster dir ([`tokens_file`]); every helper here
//! (gRPC and HTTP) presents the operator's credentials (CA + bearer token).
#![allow(dead_code)] // each test binary uses a different subset

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use arbiter::auth::directory::IdentityEntry;
use arbiter::auth::issue::{admit, issue, write_operator_credentials, TokenGrant, TOKENS_FILE};
use arbiter::auth::Role;
use arbiter::certs::{self, CertFiles, DevCerts, Subject};
use arbiter::http_client::HttpClient;
use arbiter::local_cluster::{initialize, wait_for_leader, NodeProcess, NodeSpec};
use arbiter::tls::ClientCredentials;
use arbiter_client::proto::cluster_service_client::ClusterServiceClient;
use arbiter_client::proto::{NodeStatus, StatusRequest};
use arbiter_client::{ArbiterClient, BearerToken, ClientOptions};

pub const REGIONS: [&str; 3] = ["us-east-1", "us-west-2", "eu-central-1"];

pub fn binary() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_BIN_EXE_arbiter"))
}

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("info,openraft=warn,tokio_postgres=warn")
        .with_test_writer()
        .try_init();
}

/// Node ids the test CA has certificates for.
const CERTIFIED_NODES: u64 = 5;

/// The CA, node certificates (ids 1-5), operator certificate and token every cluster of this
/// test binary uses. Made once per test binary in cargo's per-target temp dir (kept between
/// runs, so reruns reuse it; `cargo clean` removes it), not in /tmp.
pub fn certs() -> &'static DevCerts {
    static CERTS: OnceLock<DevCerts> = OnceLock::new();
    CERTS.get_or_init(|| {
        let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("tls-{}", env!("CARGO_CRATE_NAME")));
        let nodes: Vec<(u64, String)> = (1..=CERTIFIED_NODES)
            .map(|id| (id, REGIONS[(id as usize - 1) % REGIONS.len()].to_string()))
            .collect();
        DevCerts::ensure(&dir, &nodes).expect("test certificates")
    })
}

/// SDK options with the operator's credentials (TLS + token).
pub fn client_options() -> ClientOptions {
    certs()
        .operator()
        .client_options()
        .expect("operator credentials")
}

/// An SDK client over `endpoints` with a 1 s attempt timeout and a 3 s call deadline: patient
/// enough for an election, quick to give up on a node cut off or frozen.
pub async fn patient_client(endpoints: Vec<String>) -> ArbiterClient {
    let options = ClientOptions {
        attempt_timeout: Duration::from_secs(1),
        call_deadline: Duration::from_secs(3),
        ..client_options()
    };
    ArbiterClient::connect(endpoints, options)
        .await
        .expect("valid endpoints")
}

/// A gRPC channel to one node with the operator's credentials.
pub fn grpc_channel(
    addr: &str,
) -> Result<arbiter_client::AuthChannel, arbiter_client::ClientError> {
    arbiter_client::channel(addr, &client_options())
}

/// A gRPC channel to one node that presents `token` (e.g. a proxy's, from
/// [`TestCluster::issue`]) instead of the operator's.
pub fn grpc_channel_as(addr: &str, token: &str) -> arbiter_client::AuthChannel {
    let options = ClientOptions {
        token: Some(BearerToken::new(token).expect("valid token")),
        ..client_options()
    };
    arbiter_client::channel(addr, &options).expect("channel")
}

/// A proxy identity bound to `region`, for [`TestCluster::issue`]: a lease's region is its
/// holder's, so only such an identity takes a lease a regional fence revokes.
pub fn proxy_in(identity: &str, region: &str) -> TokenGrant {
    TokenGrant {
        identity: identity.into(),
        role: Role::Proxy,
        region: Some(region.into()),
        vantage: None,
    }
}

/// The HTTPS client with the operator's credentials.
pub fn http() -> HttpClient {
    certs()
        .operator()
        .http_client()
        .expect("operator credentials")
}

/// The CLI flags that give a child `arbiter` command the operator's credentials.
pub fn cli_credentials() -> Vec<String> {
    let operator = certs().operator();
    let ca = operator.ca.expect("ca");
    let token = operator.token_file.expect("token");
    vec![
        "--ca".into(),
        ca.display().to_string(),
        "--token-file".into(),
        token.display().to_string(),
    ]
}

/// The operator token of every cluster of this test binary (made with [`certs`]).
pub fn operator_token() -> String {
    let path = certs().operator().token_file.expect("operator token file");
    std::fs::read_to_string(path)
        .expect("read the operator token")
        .trim()
        .to_string()
}

/// The tokens file the nodes started in `dir` load: made on first use, granting
/// [`operator_token`] the operator role; [`TestCluster::issue`] adds to it.
pub fn tokens_file(dir: &Path) -> PathBuf {
    let path = dir.join(TOKENS_FILE);
    if path.exists() {
        return path;
    }
    write_operator_credentials(dir, &operator_token()).expect("tokens file")
}

/// How to start node `id` in `dir`, its sockets bound on loopback at port 0, with TLS and the
/// tokens file of `dir`. Leadership stays where elections put it (`--preferred-leader none`)
/// unless `extra_args` names a preferred region: tests that kill "the leader" mean the one
/// they found, not one that moves away a second later.
pub fn node_spec(dir: &Path, id: u64, region: &str, extra_args: &[&str]) -> NodeSpec {
    let mut spec = NodeSpec::on_loopback(id, region, dir.join(format!("node-{id}")))
        .expect("bind the node's sockets");
    spec.tls = Some(certs().node_tls(id));
    spec.extra_args = vec![
        "--auth-tokens-file".into(),
        tokens_file(dir).display().to_string(),
    ];
    if !extra_args.contains(&"--preferred-leader") {
        spec.extra_args
            .extend(["--preferred-leader".to_string(), "none".to_string()]);
    }
    spec.extra_args
        .extend(extra_args.iter().map(|s| s.to_string()));
    spec
}

/// How to start nodes `1..=n` in `dir`, placed round [`REGIONS`]; their sockets are bound
/// already, so their addresses are known before any node starts.
pub fn cluster_specs(dir: &Path, n: usize, extra_args: &[&str]) -> Vec<NodeSpec> {
    (0..n)
        .map(|i| node_spec(dir, i as u64 + 1, REGIONS[i % REGIONS.len()], extra_args))
        .collect()
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
    /// Starts `n` nodes on loopback (kernel-picked ports, held for the cluster's life),
    /// bootstraps them and waits for a leader.
    pub async fn start(n: usize, extra_args: &[&str]) -> TestCluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let specs = cluster_specs(dir.path(), n, extra_args);
        TestCluster::start_specs(dir, specs).await
    }

    /// Starts the nodes of `specs` (made by [`cluster_specs`] in `dir`, then adjusted, e.g.
    /// with `--dial` overrides through link proxies), bootstraps them and waits for a leader.
    pub async fn start_specs(dir: tempfile::TempDir, specs: Vec<NodeSpec>) -> TestCluster {
        let tokens_file = tokens_file(dir.path());
        let mut nodes = Vec::new();
        for spec in &specs {
            let process = spec
                .start(&binary(), Duration::from_secs(30))
                .await
                .expect("node starts");
            nodes.push(Some(process));
        }
        let cluster = TestCluster {
            dir,
            tokens_file,
            nodes,
            specs,
        };
        let members = cluster.running().map(NodeProcess::info).collect();
        let first = cluster.specs[0].listeners.grpc().to_string();
        initialize(&first, members, Duration::from_secs(30), &client_options())
            .await
            .expect("initialize");
        cluster.leader(Duration::from_secs(20)).await;
        cluster
    }

    pub fn running(&self) -> impl Iterator<Item = &NodeProcess> {
        self.nodes.iter().flatten()
    }

    /// A running node other than `leader_id`.
    pub fn follower(&self, leader_id: u64) -> &NodeProcess {
        self.running()
            .find(|n| n.ready.node_id != leader_id)
            .expect("a follower")
    }

    /// gRPC endpoints of every node, running or not.
    pub fn endpoints(&self) -> Vec<String> {
        self.specs
            .iter()
            .map(|s| s.listeners.grpc().to_string())
            .collect()
    }

    pub fn running_endpoints(&self) -> Vec<String> {
        self.running().map(|n| n.ready.grpc_addr.clone()).collect()
    }

    /// Waits until the running nodes agree on a leader; returns its status.
    pub async fn leader(&self, timeout: Duration) -> NodeStatus {
        wait_for_leader(&self.running_endpoints(), timeout, &client_options())
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

    /// Starts node `id` again on the sockets it had, so it serves at the same addresses.
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
                    let options = ClientOptions {
                        token: Some(bearer.clone()),
                        ..client_options()
                    };
                    let endpoint = endpoint.clone();
                    // Any answer but UNAUTHENTICATED means the token is known.
                    async move {
                        arbiter::grpc::cluster_service::fetch_status(endpoint, &options)
                            .await
                            .ok()
                    }
                },
            )
            .await;
        }
        token
    }

    /// Issues a client certificate named `name` from the test CA, admits its subject to the
    /// cluster's tokens file with `role` (and `region`/`vantage` where the role needs them),
    /// has every running node reload, and returns credentials that present it (no token).
    pub async fn admit_certificate(
        &self,
        name: &str,
        role: Role,
        region: Option<&str>,
        vantage: Option<&str>,
    ) -> ClientCredentials {
        let files = CertFiles::client(self.dir.path(), name);
        let subject = Subject::Client {
            name: name.into(),
            role: role.to_string(),
        };
        certs::issue_to(&certs().dir, &subject, &files).expect("issue a client certificate");
        let identity = IdentityEntry {
            subject: certs::client_subject(name),
            role,
            region: region.map(str::to_string),
            vantage: vantage.map(str::to_string),
        };
        admit(&self.tokens_file, identity).expect("admit the certificate");
        for node in self.running() {
            node.signal(libc::SIGHUP);
        }
        let credentials = ClientCredentials {
            ca: Some(certs().dir.join(certs::CA_CERT)),
            identity: Some((files.cert, files.key)),
            token_file: None,
            token: None,
        };
        let options = credentials.client_options().expect("certificate options");
        for node in self.running() {
            let endpoint = node.ready.grpc_addr.clone();
            eventually(
                "every node to load the new certificate identity",
                Duration::from_secs(10),
                || {
                    let (endpoint, options) = (endpoint.clone(), options.clone());
                    // Any answer but UNAUTHENTICATED means the subject is known.
                    async move {
                        arbiter::grpc::cluster_service::fetch_status(endpoint, &options)
                            .await
                            .ok()
                    }
                },
            )
            .await;
        }
        credentials
    }
}

/// One node's status, or `None` if it does not answer within 2 s (a paused node completes
/// the TCP handshake and then says nothing, so the connect is inside the deadline too).
pub async fn status(endpoint: &str) -> Option<NodeStatus> {
    let call = async {
        let mut client = ClusterServiceClient::new(grpc_channel(endpoint).ok()?);
        client.get_status(StatusRequest {}).await.ok()
    };
    tokio::time::timeout(Duration::from_secs(2), call)
        .await
        .ok()?
        .map(|r| r.into_inner())
}

/// Waits until the leader's DR controller has made its bootstrap writes (it registers the
/// configured regions, then sets the traffic weights — the last of them with the default
/// configuration), so a test that compares state digests does not see them land in between.
pub async fn dr_bootstrapped(http_addr: &str, timeout: Duration) {
    eventually(
        "the DR controller's bootstrap writes",
        timeout,
        || async move {
            let client = http();
            let url = format!("{}/v1/regions", client.base_url(http_addr));
            let response = client
                .request("GET", &url, None, Duration::from_secs(2))
                .await
                .ok()?;
            let body: serde_json::Value = serde_json::from_slice(&response.body).ok()?;
            let weighted = body["regions"]
                .as_array()
                .is_some_and(|r| r.iter().any(|r| !r["trafficWeightPercentage"].is_null()));
            (response.status == 200 && weighted).then_some(())
        },
    )
    .await;
}

/// One HTTPS request to `addr` presenting `token` (`None`: no credential at all, only the CA);
/// the status and the body as JSON (`null` when it is not JSON).
pub async fn http_with_token(
    addr: &str,
    token: Option<&str>,
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let credentials = ClientCredentials {
        token: token.map(str::to_string),
        token_file: None,
        ..certs().operator()
    };
    let client = credentials.http_client().expect("HTTPS client");
    let url = format!("{}{path}", client.base_url(addr));
    let body = body.map(|b| serde_json::to_vec(&b).expect("encode JSON"));
    let response = client
        .request(method, &url, body.as_deref(), Duration::from_secs(5))
        .await
        .expect("HTTP exchange");
    let value = serde_json::from_slice(&response.body).unwrap_or(serde_json::Value::Null);
    (response.status, value)
}

/// Runs `arbiter ARGS` with the operator's credentials appended and no `ARBITER_ENDPOINTS` /
/// `ARBITER_OUTPUT` from the test's environment: exit code, stdout, stderr.
pub async fn arbiter_cli(args: &[&str]) -> (i32, String, String) {
    let output = tokio::process::Command::new(binary())
        .args(args)
        .args(cli_credentials())
        .env_remove("ARBITER_ENDPOINTS")
        .env_remove("ARBITER_OUTPUT")
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .expect("the CLI runs");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
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
                let channel = grpc_channel(endpoint).map_err(|e| e.to_string())?;
                let mut client = LeaseServiceClient::new(channel);
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

/// The current fencing epoch of `resource` as the leader sees it (0 = never leased), asking
/// every endpoint in turn until one answers; `None` if none does within 10 s (a read fails
/// while a leader cannot confirm its term, which a loaded machine makes likelier).
pub async fn epoch_of(endpoints: &[String], resource: &str) -> Option<u64> {
    use arbiter_client::proto::lease_service_client::LeaseServiceClient;
    use arbiter_client::proto::GetLeaseRequest;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while tokio::time::Instant::now() < deadline {
        for endpoint in endpoints {
            let call = async {
                let mut client = LeaseServiceClient::new(grpc_channel(endpoint).ok()?);
                let request = GetLeaseRequest {
                    resource: resource.into(),
                };
                client.current_epoch(request).await.ok()
            };
            // Connect and call share the deadline: a paused node must not stall the caller.
            if let Ok(Some(reply)) = tokio::time::timeout(Duration::from_secs(3), call).await {
                return Some(reply.into_inner().epoch);
            }
        }
        // Only followers, or a leader still confirming its term, answered: ask again.
        tokio::time::sleep(Duration::from_millis(20)).await;
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
pub mod serve;
