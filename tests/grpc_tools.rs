//! Generic gRPC tools work against a node without arbiter's .proto files: a Python client
//! (`grpc_generic_client.py`, grpcio's health and reflection packages, as grpcurl or a load
//! balancer would be) checks `grpc.health.v1`, lists the services by server reflection and calls
//! `ClusterService/GetStatus` with types learned only from reflection. Health is public and
//! follows readiness (NOT_SERVING on a node that lost its quorum); reflection needs credentials.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(20);

/// Runs the generic client against `addr`; its JSON answer.
fn generic_client(addr: &str, token: Option<&str>, extra: &[&str]) -> Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/grpc_generic_client.py");
    let ca = certs().operator().ca.expect("ca");
    let mut command = Command::new("python3");
    command
        .arg(script)
        .args(["--addr", addr, "--ca"])
        .arg(&ca)
        .args(extra);
    if let Some(token) = token {
        command.args(["--token", token]);
    }
    let out = command.output().expect("python3 runs");
    assert!(
        out.status.success(),
        "the generic client failed (it needs grpcio, grpcio-health-checking and \
         grpcio-reflection from PyPI; .ci/run installs them):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_reflection_work_for_a_client_without_the_protos() {
    init_tracing();
    let mut cluster = TestCluster::start(3, &[]).await;
    let leader = cluster.leader(WAIT).await;
    let token = operator_token();

    let answer = generic_client(
        &leader.grpc_addr,
        Some(&token),
        &["--call", "arbiter.v1.ClusterService/GetStatus"],
    );
    assert_eq!(answer["health"], "SERVING", "{answer}");
    let services: Vec<&str> = answer["services"]
        .as_array()
        .unwrap_or_else(|| panic!("no services: {answer}"))
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for expected in [
        "arbiter.v1.ClusterService",
        "arbiter.v1.LeaseService",
        "arbiter.v1.RoutingService",
        "codesprintpro.dr.replication.v1.ReplicationCoordinator",
        "grpc.health.v1.Health",
    ] {
        assert!(services.contains(&expected), "{expected} missing: {answer}");
    }
    // The call went through with types from reflection: the answer is this node's status.
    assert_eq!(
        answer["response"]["nodeId"].as_str(),
        Some(leader.node_id.to_string().as_str()),
        "{answer}"
    );

    // Per-service health, and a service the node does not have (negative control).
    let answer = generic_client(
        &leader.grpc_addr,
        None,
        &["--health-service", "arbiter.v1.LeaseService"],
    );
    assert_eq!(answer["health"], "SERVING", "{answer}");
    let answer = generic_client(
        &leader.grpc_addr,
        None,
        &["--health-service", "no.such.Service"],
    );
    assert_eq!(answer["health_error"], "NOT_FOUND", "{answer}");

    // Health needs no credentials; reflection does.
    assert_eq!(answer["reflection_error"], "UNAUTHENTICATED", "{answer}");

    // A node cut off from its quorum turns NOT_SERVING.
    let survivor = if leader.node_id == 1 { 2 } else { 1 };
    for id in [1, 2, 3] {
        if id != survivor {
            cluster.kill(id);
        }
    }
    let addr = cluster.node(survivor).ready.grpc_addr.clone();
    eventually(
        "the lone node's gRPC health to turn NOT_SERVING",
        WAIT,
        || {
            let addr = addr.clone();
            async move {
                let answer = tokio::task::spawn_blocking(move || generic_client(&addr, None, &[]))
                    .await
                    .expect("client task");
                (answer["health"] == "NOT_SERVING").then_some(())
            }
        },
    )
    .await;
}
