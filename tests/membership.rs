//! Membership changes through the CLI: a fourth node joins as a learner, catches up, becomes a
//! voter, then leaves; the cluster keeps committing throughout.

mod common;

use std::time::Duration;

use common::*;

fn member(args: &[&str], endpoints: &str) -> (bool, String) {
    let output = std::process::Command::new(binary())
        .arg("member")
        .args(args)
        .args(["--endpoints", endpoints])
        .args(cli_credentials())
        .output()
        .expect("run arbiter member");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_joins_as_learner_then_voter_and_leaves() {
    init_tracing();
    let cluster = TestCluster::start(3, &[]).await;
    let endpoints = cluster.endpoints();
    for i in 0..20 {
        acquire_any(
            &endpoints,
            &format!("before-{i}"),
            "h",
            60_000,
            Duration::from_secs(5),
        )
        .await
        .expect("write");
    }

    tracing::info!("phase: start node 4 (uninitialized) and add it");
    let spec = node_spec(cluster.dir.path(), 4, "us-east-1", &[]);
    let fourth = spec
        .start(&binary(), Duration::from_secs(30))
        .await
        .expect("node 4 starts");
    let joined = endpoints.join(",");
    let (ok, text) = member(
        &[
            "add",
            "--id",
            "4",
            "--region",
            "us-east-1",
            "--grpc",
            &fourth.ready.grpc_addr,
            "--http",
            &fourth.ready.http_addr,
            "--peer",
            &fourth.ready.peer_addr,
        ],
        &joined,
    );
    assert!(ok, "member add failed: {text}");
    let leader = cluster.leader(Duration::from_secs(5)).await;
    let leader = status(&leader.grpc_addr).await.expect("leader status");
    assert_eq!(leader.voters.len(), 4, "node 4 is a voter: {leader:?}");

    tracing::info!("phase: the new voter applies new writes and holds the same state");
    acquire_any(
        &endpoints,
        "after-join",
        "h",
        60_000,
        Duration::from_secs(5),
    )
    .await
    .expect("write");
    let leader_digest = eventually("node 4 to converge", Duration::from_secs(20), || async {
        let l = status(&leader.grpc_addr).await?;
        let f = status(&fourth.ready.grpc_addr).await?;
        (l.applied_index == f.applied_index && l.state_digest == f.state_digest)
            .then_some(f.state_digest)
    })
    .await;
    assert_ne!(leader_digest, 0);

    tracing::info!("phase: remove node 4");
    let (ok, text) = member(&["remove", "--id", "4"], &joined);
    assert!(ok, "member remove failed: {text}");
    let after = eventually("membership of three", Duration::from_secs(10), || async {
        let s = status(&cluster.leader(Duration::from_secs(5)).await.grpc_addr).await?;
        (s.voters.len() == 3 && s.voters.iter().all(|v| v.node_id != 4)).then_some(s)
    })
    .await;
    assert!(after.learners.iter().all(|l| l.node_id != 4), "{after:?}");
    drop(fourth);
    acquire_any(
        &endpoints,
        "after-leave",
        "h",
        60_000,
        Duration::from_secs(5),
    )
    .await
    .expect("the three remaining nodes still commit");
    // Idempotent: removing again is a no-op, not an error.
    let (ok, text) = member(&["remove", "--id", "4"], &joined);
    assert!(ok && text.contains("not a member"), "{text}");
}
