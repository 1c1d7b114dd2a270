//! Cluster identity and the lifecycle of a member's data dir: a wiped voter never votes with
//! amnesia (it refuses to start, and `--rejoin` brings it back through the leader), `--bootstrap`
//! never initializes over an existing cluster, and nodes of different clusters refuse each
//! other's Raft messages.

mod common;

use std::time::Duration;

use arbiter::identity::IDENTITY_FILE;
use arbiter::local_cluster::{wait_for_leader, Listeners, NodeSpec};
use common::serve::{
    assert_new_tokens_above, rejoin_args, run_arbiter, serve_command, serve_until_exit,
    wait_for_log, wait_until_voter,
};
use common::*;

const TTL_MS: u64 = 60_000;
const WAIT: Duration = Duration::from_secs(60);

fn peer_flag(spec: &NodeSpec, grpc: &str, http: &str) -> String {
    let peer = spec.listeners.peer();
    format!("{}={}@{grpc},{http},{peer}", spec.id, spec.region)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wiped_voter_refuses_to_start_and_rejoins_with_the_same_state() {
    init_tracing();
    // Snapshot every 20 entries and keep 5 behind it: the rejoining node must catch up by
    // snapshot, the log it missed being gone.
    let mut cluster = TestCluster::start(3, &["--snapshot-every", "20", "--keep-logs", "5"]).await;
    let endpoints = cluster.endpoints();
    let mut tokens = Vec::new();
    for i in 0..40 {
        let resource = format!("before-{i}");
        tokens.push(
            acquire_any(&endpoints, &resource, "h", TTL_MS, Duration::from_secs(5))
                .await
                .expect("write"),
        );
    }
    let leader = cluster.leader(WAIT).await;
    let cluster_id = status(&leader.grpc_addr)
        .await
        .expect("leader status")
        .cluster_id;
    assert_eq!(
        cluster_id.len(),
        32,
        "the cluster has an id: {cluster_id:?}"
    );
    let victim = (1..=3)
        .find(|id| *id != leader.node_id)
        .expect("a follower");
    let i = TestCluster::index(victim);

    tracing::info!(victim, "phase: kill a voter, wipe its data dir, write on");
    cluster.kill(victim);
    std::fs::remove_dir_all(&cluster.specs[i].data_dir).expect("wipe");
    for i in 0..30 {
        let resource = format!("while-wiped-{i}");
        tokens.push(
            acquire_any(&endpoints, &resource, "h", TTL_MS, Duration::from_secs(5))
                .await
                .expect("two voters still commit"),
        );
    }

    tracing::info!(
        victim,
        "phase: restarted without --rejoin, it refuses to start"
    );
    let log = cluster.dir.path().join("refused.log");
    let (ok, text) = serve_until_exit(&cluster.specs[i], &[], &log, WAIT).await;
    assert!(!ok, "a wiped voter must not start: {text}");
    assert!(
        text.contains("is empty") && text.contains("--rejoin"),
        "the error says what to do: {text}"
    );
    assert!(
        !cluster.specs[i].data_dir.join(IDENTITY_FILE).exists(),
        "it did not join anything"
    );

    tracing::info!(victim, "phase: --rejoin, at a new address");
    let rejoin = rejoin_args(&cluster, victim);
    let spec = &mut cluster.specs[i];
    spec.listeners = Listeners::loopback().expect("bind new sockets");
    spec.extra_args.extend(rejoin);
    cluster.restart(victim).await;
    let rejoined = cluster.node(victim).ready.clone();
    let voter = wait_until_voter(&cluster, victim, WAIT).await;
    assert_eq!(voter.grpc_addr, rejoined.grpc_addr, "at its new address");
    let (_, digest) = converged(&cluster, WAIT).await;
    let back = status(&rejoined.grpc_addr).await.expect("status");
    assert_eq!(back.cluster_id, cluster_id, "it rejoined the same cluster");
    assert_eq!(back.state_digest, digest, "identical state");
    assert!(back.snapshot_index.is_some(), "it caught up by snapshot");
    assert_eq!(back.voters.len(), 3);

    tracing::info!("phase: tokens granted after the rejoin exceed every earlier token");
    let highest = *tokens.iter().max().expect("tokens");
    assert_new_tokens_above(&cluster.endpoints(), "after", 10, highest).await;

    tracing::info!(victim, "phase: --rejoin again is a no-op (idempotent)");
    let (_, digest) = converged(&cluster, WAIT).await;
    cluster.kill(victim);
    cluster.restart(victim).await;
    wait_for_log(
        &cluster.specs[i].log_path(),
        &format!("node {victim} is a voter of cluster {cluster_id}; done"),
        WAIT,
    )
    .await;
    let (_, again) = converged(&cluster, WAIT).await;
    assert_eq!(again, digest, "nothing changed");
}

#[tokio::test(flavor = "multi_thread")]
async fn bootstrap_never_initializes_over_an_existing_cluster() {
    init_tracing();
    let dir = tempfile::tempdir().expect("temp dir");
    let spec = |id: u64| {
        node_spec(
            dir.path(),
            id,
            REGIONS[(id as usize - 1) % REGIONS.len()],
            &[],
        )
    };

    tracing::info!("phase: nodes 2 and 3 wait (--join); node 1 bootstraps all three");
    let (two, three) = (spec(2), spec(3));
    let node2 = two.start(&binary(), WAIT).await.expect("node 2 starts");
    let node3 = three.start(&binary(), WAIT).await.expect("node 3 starts");
    let bootstrap_args = vec![
        "--bootstrap".to_string(),
        "--peer".into(),
        peer_flag(&two, &node2.ready.grpc_addr, &node2.ready.http_addr),
        "--peer".into(),
        peer_flag(&three, &node3.ready.grpc_addr, &node3.ready.http_addr),
    ];
    let mut one = spec(1);
    one.extra_args.extend(bootstrap_args.clone());
    let node1 = one.start(&binary(), WAIT).await.expect("node 1 bootstraps");
    let endpoints = vec![
        node1.ready.grpc_addr.clone(),
        node2.ready.grpc_addr.clone(),
        node3.ready.grpc_addr.clone(),
    ];
    wait_for_leader(&endpoints, WAIT, &client_options())
        .await
        .expect("a leader");
    acquire_any(&endpoints, "r", "h", TTL_MS, Duration::from_secs(5))
        .await
        .expect("the bootstrapped cluster commits");
    let mut ids = Vec::new();
    for endpoint in &endpoints {
        let s = status(endpoint).await.expect("status");
        assert_eq!(s.voters.len(), 3);
        ids.push(s.cluster_id);
    }
    assert!(
        ids[0].len() == 32 && ids.iter().all(|id| *id == ids[0]),
        "one cluster id on every member: {ids:?}"
    );

    tracing::info!("phase: node 1 loses its data and is restarted with --bootstrap");
    drop(node1);
    std::fs::remove_dir_all(&one.data_dir).expect("wipe");
    let args: Vec<&str> = bootstrap_args.iter().map(String::as_str).collect();
    let log = dir.path().join("rebootstrap.log");
    let (ok, text) = serve_until_exit(&one, &args, &log, WAIT).await;
    assert!(!ok, "it must not start: {text}");
    assert!(
        text.contains(&ids[0]) && text.contains("--rejoin"),
        "the error names the cluster and --rejoin: {text}"
    );
    assert!(!one.data_dir.join(IDENTITY_FILE).exists());
    let s = status(&node2.ready.grpc_addr).await.expect("status");
    assert_eq!(s.cluster_id, ids[0], "the existing cluster is untouched");

    tracing::info!("phase: a bootstrapping node whose peer does not answer waits");
    // A listener that is held but never accepts: the peer is there but never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let silent_addr = silent.local_addr().expect("addr").to_string();
    let five = spec(5);
    let log = dir.path().join("lonely.log");
    let peer = format!("6=us-east-1@{silent_addr},{silent_addr}");
    let mut lonely = serve_command(&five, &["--bootstrap", "--peer", &peer], &log)
        .spawn()
        .expect("spawn");
    wait_for_log(
        &log,
        "waiting for every peer to answer before initializing",
        WAIT,
    )
    .await;
    assert!(
        lonely.try_wait().expect("try_wait").is_none(),
        "it waits rather than exiting"
    );
    assert!(
        !five.data_dir.join(IDENTITY_FILE).exists(),
        "it did not initialize alone"
    );
    drop(node2);
    drop(node3);
}

#[tokio::test(flavor = "multi_thread")]
async fn nodes_of_different_clusters_refuse_each_other() {
    init_tracing();
    let mut cluster = TestCluster::start(3, &[]).await;
    let endpoints = cluster.endpoints();
    for i in 0..5 {
        acquire_any(
            &endpoints,
            &format!("r-{i}"),
            "h",
            TTL_MS,
            Duration::from_secs(5),
        )
        .await
        .expect("write");
    }
    let leader = cluster.leader(WAIT).await;
    let ours = status(&leader.grpc_addr).await.expect("status").cluster_id;
    let stranger = (1..=3)
        .find(|id| *id != leader.node_id)
        .expect("a follower");

    tracing::info!(
        stranger,
        "phase: replace a follower's data dir by one of another cluster (same members)"
    );
    let backup = cluster.dir.path().join("backup.arb");
    let mut save = vec![
        "snapshot".to_string(),
        "save".into(),
        backup.display().to_string(),
        "--endpoints".into(),
        endpoints.join(","),
    ];
    save.extend(cli_credentials());
    let (ok, text) = run_arbiter(&save);
    assert!(ok, "snapshot save: {text}");
    let other = cluster.dir.path().join("other");
    let mut restore = vec![
        "snapshot".to_string(),
        "restore".into(),
        backup.display().to_string(),
        "--out".into(),
        other.display().to_string(),
    ];
    for spec in &cluster.specs {
        let http = cluster
            .nodes
            .iter()
            .flatten()
            .find(|n| n.spec.id == spec.id)
            .map(|n| n.ready.http_addr.clone())
            .expect("running");
        restore.push("--member".into());
        restore.push(peer_flag(spec, &spec.listeners.grpc().to_string(), &http));
    }
    let restore: Vec<&str> = restore.iter().map(String::as_str).collect();
    let (ok, text) = run_arbiter(&restore);
    assert!(ok, "snapshot restore: {text}");
    let i = TestCluster::index(stranger);
    cluster.kill(stranger);
    let data_dir = cluster.specs[i].data_dir.clone();
    std::fs::remove_dir_all(&data_dir).expect("wipe");
    std::fs::rename(other.join(format!("node-{stranger}")), &data_dir).expect("swap the dir");
    let term_before = cluster.leader(WAIT).await.term;
    cluster.restart(stranger).await;

    tracing::info!("phase: both sides refuse, say why, and the cluster carries on");
    let theirs = status(&cluster.node(stranger).ready.grpc_addr)
        .await
        .expect("status")
        .cluster_id;
    assert!(theirs.len() == 32 && theirs != ours, "{theirs} vs {ours}");
    // The stranger campaigns (its peers stopped hearing from a leader of *its* cluster) and
    // is refused; the leader's heartbeats to it are refused too.
    let log = cluster.specs[i].log_path();
    let text = wait_for_log(&log, "peer refused our Raft request", WAIT).await;
    assert!(
        text.contains(&format!("belongs to cluster {ours}")),
        "{text}"
    );
    let leader_log = &cluster.specs[TestCluster::index(leader.node_id)].log_path();
    wait_for_log(leader_log, &format!("belongs to cluster {theirs}"), WAIT).await;
    acquire_any(
        &cluster.endpoints(),
        "after-stranger",
        "h",
        TTL_MS,
        Duration::from_secs(5),
    )
    .await
    .expect("the two members of our cluster still commit");
    let members: Vec<String> = cluster
        .specs
        .iter()
        .filter(|s| s.id != stranger)
        .map(|s| s.listeners.grpc().to_string())
        .collect();
    let now = wait_for_leader(&members, WAIT, &client_options())
        .await
        .expect("our leader");
    assert_eq!(
        (now.node_id, now.term),
        (leader.node_id, term_before),
        "the stranger's votes never disturbed our leader"
    );
}
