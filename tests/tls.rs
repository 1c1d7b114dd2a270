//! TLS on the three ports, each door with the denial it must give: a client certificate cannot
//! call the peer port, a certificate of another CA is refused on every port, plain TCP does not
//! get an answer from a TLS port, a node without TLS starts only on loopback; and a CA rotation
//! (new CA in the bundle, nodes reissued one at a time, old CA dropped) keeps a leader
//! throughout.

mod common;

use std::path::Path;
use std::time::Duration;

use arbiter::certs::{self, CertFiles, DevCerts, Subject};
use arbiter::grpc::raft_proto::raft_service_client::RaftServiceClient;
use arbiter::grpc::raft_proto::RaftPayload;
use arbiter::http_client::{self, HttpClient};
use arbiter::local_cluster::{initialize, wait_for_leader, NodeProcess};
use arbiter::tls::{self, Alpn, ClientCredentials};
use arbiter_client::proto::cluster_service_client::ClusterServiceClient;
use arbiter_client::proto::StatusRequest;
use common::*;
use tonic::transport::Endpoint;

const WAIT: Duration = Duration::from_secs(20);

/// A Vote RPC on `peer_addr` presenting `identity` (trusting `ca`); `Ok` = the node's Raft
/// service answered (even if it refused the payload), `Err` = the transport refused us.
async fn vote_on_peer_port(
    peer_addr: &str,
    ca: &Path,
    identity: (&Path, &Path),
) -> Result<tonic::Code, String> {
    let config = tls::client_config(ca, Some(identity), Alpn::H2).map_err(|e| e.to_string())?;
    let connector = tls::connector(move || config.clone(), tls::peer_server_name(1));
    let channel = Endpoint::from_shared(format!("http://{peer_addr}"))
        .map_err(|e| e.to_string())?
        .connect_timeout(Duration::from_secs(3))
        .connect_with_connector(connector)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let mut client = RaftServiceClient::new(channel);
    // No cluster id and a garbage payload, so a node that lets us in refuses the request (the
    // Raft service checks the cluster id first) and changes nothing.
    let request = RaftPayload {
        data: vec![0xff; 8],
    };
    match tokio::time::timeout(Duration::from_secs(5), client.vote(request)).await {
        Ok(Ok(_)) => Ok(tonic::Code::Ok),
        Ok(Err(status)) if status.code() == tonic::Code::FailedPrecondition => Ok(status.code()),
        Ok(Err(status)) => Err(format!("{:?}: {}", status.code(), status.message())),
        Err(_) => Err("timed out".into()),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_port_refuses_what_it_must() {
    init_tracing();
    let cluster = TestCluster::start(3, &[]).await;
    let node = cluster.node(1);
    let ours = certs();
    let ca = ours.dir.join(certs::CA_CERT);
    let foreign_dir = tempfile::tempdir().expect("tempdir");
    let foreign =
        DevCerts::ensure(foreign_dir.path(), &[(1, "us-east-1".into())]).expect("other CA");

    tracing::info!("peer port: a node certificate of our CA is let in (positive control)");
    let node2 = CertFiles::node(&ours.dir, 2);
    let answered = vote_on_peer_port(&node.ready.peer_addr, &ca, (&node2.cert, &node2.key)).await;
    assert_eq!(
        answered,
        Ok(tonic::Code::FailedPrecondition),
        "a peer reaches the Raft service"
    );

    tracing::info!("peer port: a client certificate of our CA (operator) is refused");
    let operator = CertFiles::client(&ours.dir, "operator");
    let refused =
        vote_on_peer_port(&node.ready.peer_addr, &ca, (&operator.cert, &operator.key)).await;
    assert!(
        refused.is_err(),
        "an operator certificate reached Raft: {refused:?}"
    );

    tracing::info!("peer port: a node certificate of another CA is refused");
    let posing = CertFiles::node(foreign_dir.path(), 1);
    let refused = vote_on_peer_port(&node.ready.peer_addr, &ca, (&posing.cert, &posing.key)).await;
    assert!(
        refused.is_err(),
        "a foreign node certificate reached Raft: {refused:?}"
    );

    tracing::info!(
        "client HTTP port: no certificate is fine, ours passes the handshake, a foreign one is \
         refused by it"
    );
    let status_url =
        |http: &HttpClient| format!("{}/v1/cluster/status", http.base_url(&node.ready.http_addr));
    let get = |http: HttpClient| async move {
        http.request("GET", &status_url(&http), None, Duration::from_secs(5))
            .await
            .map(|r| r.status)
    };
    assert_eq!(get(http()).await, Ok(200));
    // The operator certificate is an identity of the cluster's tokens file: it is let in.
    let with_operator_cert = ours.operator_certificate().http_client().expect("client");
    assert_eq!(get(with_operator_cert).await, Ok(200));
    // Handshake accepted, but no `[[identities]]` entry names this certificate's subject: the
    // auth layer answers, and refuses.
    let stranger_dir = tempfile::tempdir().expect("tempdir");
    let stranger = CertFiles::client(stranger_dir.path(), "stranger");
    let subject = Subject::Client {
        name: "stranger".into(),
        role: "operator".into(),
    };
    certs::issue_to(&ours.dir, &subject, &stranger).expect("issue a client certificate");
    let with_stranger_cert = ClientCredentials {
        ca: Some(ca.clone()),
        identity: Some((stranger.cert.clone(), stranger.key.clone())),
        token_file: None,
        token: None,
    }
    .http_client()
    .expect("client");
    assert_eq!(get(with_stranger_cert).await, Ok(401));
    // A node certificate is an identity by itself (role node, which may read), so a
    // certificate identity works over HTTPS end to end.
    let node3 = CertFiles::node(&ours.dir, 3);
    let with_node_cert = ClientCredentials {
        ca: Some(ca.clone()),
        identity: Some((node3.cert.clone(), node3.key.clone())),
        token_file: None,
        token: None,
    }
    .http_client()
    .expect("client");
    assert_eq!(get(with_node_cert).await, Ok(200));
    let with_foreign_cert = ClientCredentials {
        ca: Some(ca.clone()),
        identity: Some(CertFiles::client(foreign_dir.path(), "operator")).map(|f| (f.cert, f.key)),
        token_file: None,
        token: None,
    }
    .http_client()
    .expect("client");
    let refused = get(with_foreign_cert).await;
    assert!(
        refused.is_err(),
        "a foreign client certificate got an answer: {refused:?}"
    );

    tracing::info!("client gRPC port: the same, through the SDK's channel");
    let status = |options: arbiter_client::ClientOptions| {
        let addr = node.ready.grpc_addr.clone();
        async move {
            let channel = arbiter_client::channel(&addr, &options).map_err(|e| e.to_string())?;
            let mut client = ClusterServiceClient::new(channel);
            tokio::time::timeout(Duration::from_secs(5), client.get_status(StatusRequest {}))
                .await
                .map_err(|_| "timed out".to_string())?
                .map(|r| r.into_inner().node_id)
                .map_err(|s| format!("{:?}: {}", s.code(), s.message()))
        }
    };
    assert_eq!(status(client_options()).await, Ok(1));
    let foreign_identity = ClientCredentials {
        ca: Some(ca.clone()),
        identity: foreign.operator_certificate().identity,
        token_file: None,
        token: None,
    };
    let refused = status(foreign_identity.client_options().expect("options")).await;
    assert!(
        refused.is_err(),
        "a foreign client certificate got a status: {refused:?}"
    );
    tracing::info!("a client that trusts only another CA refuses the node's certificate");
    let refused = status(foreign.operator().client_options().expect("options")).await;
    assert!(
        refused.is_err(),
        "a node certificate passed a foreign CA: {refused:?}"
    );

    tracing::info!("plain TCP to a TLS port gets no answer");
    let plain = http_client::request(
        "GET",
        &format!("http://{}/v1/cluster/status", node.ready.http_addr),
        None,
        Duration::from_secs(5),
    )
    .await;
    assert!(plain.is_err(), "plain HTTP got an answer: {plain:?}");
    let plain_grpc = arbiter_client::ClientOptions {
        tls: None,
        ..client_options()
    };
    let refused = status(plain_grpc).await;
    assert!(refused.is_err(), "plain gRPC got a status: {refused:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_without_tls_serves_only_on_loopback() {
    init_tracing();
    let dir = tempfile::tempdir().expect("tempdir");

    tracing::info!("refused: a wildcard (non-loopback) address without TLS or --insecure");
    let output = tokio::process::Command::new(binary())
        .args(["serve", "--node-id", "1", "--region", "us-east-1"])
        .arg("--data-dir")
        .arg(dir.path().join("refused"))
        .args(["--grpc-listen", "0.0.0.0:0", "--http-listen", "127.0.0.1:0"])
        .args(["--peer-listen", "127.0.0.1:0"])
        .output()
        .await
        .expect("run arbiter serve");
    let text = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "started without TLS on 0.0.0.0: {text}"
    );
    assert!(text.contains("not a loopback address"), "{text}");

    tracing::info!("accepted: plain TCP on loopback, and a plain client (with a token) reaches it");
    let mut spec = node_spec(dir.path(), 1, "us-east-1", &[]);
    spec.tls = None;
    let node = spec
        .start(&binary(), WAIT)
        .await
        .expect("plain node starts");
    assert!(!node.ready.tls);
    let plain = arbiter_client::ClientOptions {
        tls: None,
        ..client_options()
    };
    initialize(&node.ready.grpc_addr, vec![node.info()], WAIT, &plain)
        .await
        .expect("initialize over plain TCP");
    let leader = wait_for_leader(std::slice::from_ref(&node.ready.grpc_addr), WAIT, &plain)
        .await
        .expect("a leader over plain TCP");
    assert_eq!(leader.node_id, 1);
}

/// Writes `pems` (concatenated) to `path`: a CA bundle.
fn write_bundle(path: &Path, pems: &[&Path]) {
    let bundle: String = pems
        .iter()
        .map(|p| std::fs::read_to_string(p).expect("read pem"))
        .collect();
    std::fs::write(path, bundle).expect("write bundle");
}

/// Waits for a leader and for a write to commit through it.
async fn commits(nodes: &[NodeProcess], options: &arbiter_client::ClientOptions, what: &str) {
    let endpoints: Vec<String> = nodes.iter().map(|n| n.ready.grpc_addr.clone()).collect();
    wait_for_leader(&endpoints, WAIT, options)
        .await
        .unwrap_or_else(|e| panic!("{what}: no leader: {e}"));
    let client = arbiter_client::ArbiterClient::connect(endpoints, options.clone())
        .await
        .expect("client");
    let spec = arbiter_client::LeaseSpec::new(
        format!("rotation/{what}").replace(' ', "-"),
        "h",
        Duration::from_secs(30),
    );
    let grant = client.acquire(&spec).await;
    assert!(
        matches!(grant, Ok(Ok(_))),
        "{what}: a write did not commit: {grant:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn ca_rotation_one_node_at_a_time_keeps_a_leader() {
    init_tracing();
    let dir = tempfile::tempdir().expect("tempdir");
    let old_dir = dir.path().join("old-ca");
    let new_dir = dir.path().join("new-ca");
    let nodes: Vec<(u64, String)> = (1..=3)
        .map(|id| (id, REGIONS[id as usize - 1].to_string()))
        .collect();
    let old = DevCerts::ensure(&old_dir, &nodes).expect("old CA");
    certs::init_ca(&new_dir, "new CA").expect("new CA");

    tracing::info!("a cluster on the old CA; each node reads its CA from a bundle file it owns");
    let bundle = |id: u64| dir.path().join(format!("bundle-{id}.pem"));
    let client_bundle = dir.path().join("bundle-client.pem");
    let mut processes = Vec::new();
    for (id, region) in &nodes {
        write_bundle(&bundle(*id), &[&old_dir.join(certs::CA_CERT)]);
        let mut spec = node_spec(dir.path(), *id, region, &[]);
        spec.tls = Some(arbiter::tls::TlsPaths {
            ca: bundle(*id),
            ..old.node_tls(*id)
        });
        // A restart serves on the same sockets (the spec holds them), so at the same addresses.
        let process = spec.start(&binary(), WAIT).await.expect("node starts");
        processes.push(process);
    }
    write_bundle(&client_bundle, &[&old_dir.join(certs::CA_CERT)]);
    let options = ClientCredentials {
        ca: Some(client_bundle.clone()),
        identity: None,
        token_file: None,
        token: Some(operator_token()),
    }
    .client_options()
    .expect("options");
    let members = processes.iter().map(NodeProcess::info).collect();
    initialize(&processes[0].ready.grpc_addr, members, WAIT, &options)
        .await
        .expect("initialize");
    commits(&processes, &options, "before rotation").await;

    tracing::info!("step 1: the new CA joins every bundle (old + new), reloaded by SIGHUP");
    let both = [&old_dir.join(certs::CA_CERT), &new_dir.join(certs::CA_CERT)];
    for (id, _) in &nodes {
        write_bundle(&bundle(*id), &both.map(|p| p.as_path()));
    }
    write_bundle(&client_bundle, &both.map(|p| p.as_path()));
    let options = ClientCredentials {
        ca: Some(client_bundle.clone()),
        ..ClientCredentials::default()
    }
    .client_options()
    .map(|o| arbiter_client::ClientOptions {
        token: options.token.clone(),
        ..o
    })
    .expect("options");
    for p in &processes {
        p.signal(libc::SIGHUP);
    }
    commits(&processes, &options, "bundle everywhere").await;

    tracing::info!("step 2: nodes get certificates of the new CA, one at a time");
    for (i, (id, region)) in nodes.iter().enumerate() {
        let node = Subject::Node {
            id: *id,
            region: region.clone(),
            hosts: Vec::new(),
        };
        certs::issue_to(&new_dir, &node, &CertFiles::node(&old_dir, *id)).expect("reissue");
        processes[i].signal(libc::SIGHUP);
        commits(&processes, &options, &format!("node {id} reissued")).await;
    }

    tracing::info!("step 3: the old CA leaves every bundle; new connections need new certificates");
    let new_only = [new_dir.join(certs::CA_CERT)];
    for (id, _) in &nodes {
        write_bundle(&bundle(*id), &[new_only[0].as_path()]);
    }
    for p in &processes {
        p.signal(libc::SIGHUP);
    }
    commits(&processes, &options, "old CA dropped").await;
    tracing::info!("a node restarted now connects afresh, with the new CA only");
    let mut restarted = processes.pop().expect("node 3");
    restarted.kill();
    let restarted = restarted
        .spec
        .start(&binary(), WAIT)
        .await
        .expect("node 3 restarts");
    processes.push(restarted);
    commits(&processes, &options, "node 3 restarted").await;

    tracing::info!("negative control: a client trusting only the old CA is now refused");
    let old_only = old.operator().client_options().expect("options");
    let channel =
        arbiter_client::channel(&processes[0].ready.grpc_addr, &old_only).expect("channel");
    let refused = tokio::time::timeout(
        Duration::from_secs(5),
        ClusterServiceClient::new(channel).get_status(StatusRequest {}),
    )
    .await;
    assert!(
        !matches!(refused, Ok(Ok(_))),
        "a client trusting only the old CA accepted a new certificate"
    );
}
