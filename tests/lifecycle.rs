//! Node lifecycle at the edges: a node's ports across kill and restart, and deadlines on the
//! administrative calls (initialize, membership changes) when the cluster cannot answer.

mod common;

use std::io::ErrorKind;
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::*;

/// Connects once; a dead node must refuse at once rather than accept into a backlog.
fn assert_refused(addr: SocketAddr, what: &str) {
    match TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
        Err(e) if e.kind() == ErrorKind::ConnectionRefused => {}
        Err(e) => panic!("{what}: connect to {addr} failed but was not refused: {e}"),
        Ok(_) => panic!("{what}: connect to {addr} was accepted by a dead node"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_node_refuses_connections_and_a_restarted_one_serves_on_the_same_ports() {
    init_tracing();
    let mut cluster = TestCluster::start(3, &[]).await;
    let id = 3;
    let spec = &cluster.specs[TestCluster::index(id)];
    let (grpc, http) = (spec.listeners.grpc(), spec.listeners.http());
    let endpoints = cluster.endpoints();

    for round in 0..3 {
        tracing::info!(
            round,
            "phase: node {id} dies (SIGKILL, then SIGTERM, alternating)"
        );
        if round % 2 == 0 {
            cluster.kill(id);
        } else {
            let mut node = cluster.nodes[TestCluster::index(id)]
                .take()
                .expect("node running");
            node.stop(Duration::from_secs(10)).await;
        }
        assert_refused(grpc, "gRPC port of the dead node");
        assert_refused(http, "HTTP port of the dead node");

        tracing::info!(round, "phase: the others still commit");
        acquire_any(
            &endpoints,
            &format!("while-down-{round}"),
            "h",
            60_000,
            Duration::from_secs(10),
        )
        .await
        .expect("two of three nodes commit");

        tracing::info!(round, "phase: restart on the same sockets");
        cluster.restart(id).await;
        let node = cluster.node(id);
        assert_eq!(node.ready.grpc_addr, grpc.to_string());
        assert_eq!(node.ready.http_addr, http.to_string());
        let serving = eventually(
            "the restarted node to answer",
            Duration::from_secs(20),
            || async { status(&grpc.to_string()).await },
        )
        .await;
        assert_eq!(serving.node_id, id);
        converged(&cluster, Duration::from_secs(30)).await;
    }
}

/// Runs `arbiter member ARGS --endpoints ENDPOINT`; returns (exit code, stderr, time taken).
async fn member(args: &[&str], endpoint: &str) -> (Option<i32>, String, Duration) {
    let started = std::time::Instant::now();
    let output = tokio::process::Command::new(binary())
        .arg("member")
        .args(args)
        .args(["--endpoints", endpoint])
        .args(cli_credentials())
        .output()
        .await
        .expect("run arbiter member");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output.status.code(), stderr, started.elapsed())
}

/// The lan profile's write deadline, which membership changes share.
const WRITE_DEADLINE: Duration = Duration::from_millis(2_000);
/// Process start-up, the leader lookup and scheduling on a loaded machine; far below "never".
const MARGIN: Duration = Duration::from_secs(8);

/// Pauses (SIGSTOP) every node but the leader; returns the leader's status and the paused ids,
/// so the caller can resume them.
async fn pause_all_followers(
    cluster: &TestCluster,
) -> (arbiter_client::proto::NodeStatus, Vec<u64>) {
    let endpoints = cluster.running_endpoints();
    let leader = eventually("a leader", Duration::from_secs(20), || async {
        for endpoint in &endpoints {
            match status(endpoint).await {
                Some(s) if s.role == "Leader" => return Some(s),
                _ => {}
            }
        }
        None
    })
    .await;
    let followers: Vec<u64> = cluster
        .running()
        .map(|n| n.spec.id)
        .filter(|id| *id != leader.node_id)
        .collect();
    for id in &followers {
        cluster.node(*id).signal(libc::SIGSTOP);
    }
    (leader, followers)
}

fn resume(cluster: &TestCluster, ids: &[u64]) {
    for id in ids {
        cluster.node(*id).signal(libc::SIGCONT);
    }
}

fn assert_outcome_unknown(code: Option<i32>, stderr: &str, took: Duration) {
    assert_eq!(code, Some(3), "exit code says outcome unknown: {stderr}");
    assert!(stderr.contains("outcome unknown"), "{stderr}");
    assert!(took < WRITE_DEADLINE + MARGIN, "took {took:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn removing_a_voter_without_a_quorum_ends_by_the_deadline_as_outcome_unknown() {
    init_tracing();
    let cluster = TestCluster::start(3, &[]).await;
    // Dropping the cluster sends SIGCONT before SIGKILL, so a failed assertion leaves no
    // stopped process behind.

    tracing::info!("phase: the leader's followers paused; removing one cannot commit");
    let (leader, paused) = pause_all_followers(&cluster).await;
    let remove = ["remove", "--id", &paused[0].to_string()];
    let (code, stderr, took) = member(&remove, &leader.grpc_addr).await;
    assert_outcome_unknown(code, &stderr, took);

    tracing::info!("phase: resumed, the cluster commits again");
    resume(&cluster, &paused);
    // Unknown means either: the resumed followers may elect a leader without the entry, or
    // the old leader may commit it; both ways two voters run.
    commits_again(&cluster).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn initializing_through_a_frozen_node_ends_by_the_deadline_as_outcome_unknown() {
    init_tracing();
    let cluster = TestCluster::start(3, &[]).await;

    // (Adding a learner now first hands it the cluster id, so its deadline needs a live
    // learner; the deadline path is the one `change_membership` shares, tested above.)
    let (_, paused) = pause_all_followers(&cluster).await;

    tracing::info!("phase: initialize through a frozen node gives up by its deadline");
    let frozen = cluster.node(paused[0]).ready.grpc_addr.clone();
    let members = cluster.running().map(|n| n.info()).collect();
    let started = std::time::Instant::now();
    let error =
        arbiter::local_cluster::initialize(&frozen, members, WRITE_DEADLINE, &client_options())
            .await
            .expect_err("a frozen node cannot answer");
    assert!(
        matches!(
            error,
            arbiter::local_cluster::LaunchError::InitializeUnknown { .. }
        ),
        "{error}"
    );
    assert!(error.to_string().contains("outcome unknown"), "{error}");
    assert!(started.elapsed() < WRITE_DEADLINE + MARGIN);

    tracing::info!("phase: resumed, the cluster commits again");
    resume(&cluster, &paused);
    commits_again(&cluster).await;
}

async fn commits_again(cluster: &TestCluster) {
    acquire_any(
        &cluster.endpoints(),
        "after-resume",
        "h",
        60_000,
        Duration::from_secs(30),
    )
    .await
    .expect("the resumed cluster commits");
}
