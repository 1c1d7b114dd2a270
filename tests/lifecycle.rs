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
