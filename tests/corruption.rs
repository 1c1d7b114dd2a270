//! Corruption is detected, not served: a node whose WAL segment or snapshot file has a flipped
//! byte refuses to start, exits non-zero and names the file; the other two keep committing.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use arbiter::local_cluster::LaunchError;
use common::*;

const TTL_MS: u64 = 60_000;

/// Writes `count` lease grants on distinct resources; returns the last token.
async fn write_leases(cluster: &TestCluster, prefix: &str, count: usize) -> u64 {
    let endpoints = cluster.running_endpoints();
    let mut last = 0;
    for i in 0..count {
        last = acquire_any(
            &endpoints,
            &format!("{prefix}-{i}"),
            "h",
            TTL_MS,
            Duration::from_secs(10),
        )
        .await
        .expect("write");
    }
    last
}

/// A follower's id: stopping it leaves the leader in place.
async fn a_follower(cluster: &TestCluster) -> u64 {
    let leader = cluster.leader(Duration::from_secs(10)).await;
    (1..=3)
        .find(|id| *id != leader.node_id)
        .expect("a follower")
}

fn flip_byte(path: &Path, offset: u64) {
    use std::os::unix::fs::FileExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .expect("open file to corrupt");
    let mut byte = [0u8; 1];
    file.read_exact_at(&mut byte, offset).expect("read byte");
    file.write_all_at(&[byte[0] ^ 0x20], offset)
        .expect("write byte");
}

/// Restarts node `id`, which must refuse: exits non-zero and its log names `file`.
async fn assert_refuses_naming(cluster: &TestCluster, id: u64, file: &Path) {
    let spec = &cluster.specs[TestCluster::index(id)];
    match spec.start(&binary(), Duration::from_secs(30)).await {
        Err(LaunchError::Exited { status, .. }) => {
            assert!(
                !status.contains("exit status: 0"),
                "exited cleanly: {status}"
            );
        }
        Err(other) => panic!("node {id} failed differently: {other}"),
        Ok(_) => panic!("node {id} started on a corrupt {}", file.display()),
    }
    let log = std::fs::read_to_string(spec.log_path()).expect("node log");
    let named = file.display().to_string();
    assert!(
        log.contains(&named),
        "the log of node {id} does not name {named}:\n{log}"
    );
}

fn wal_segments(data_dir: &Path) -> Vec<PathBuf> {
    let mut segments: Vec<PathBuf> = std::fs::read_dir(data_dir.join("wal"))
        .expect("wal dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    segments.sort();
    segments
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flipped_byte_in_a_wal_segment_stops_that_node_and_the_others_serve() {
    init_tracing();
    let mut cluster = TestCluster::start(3, &[]).await;
    write_leases(&cluster, "before", 20).await;
    let victim = a_follower(&cluster).await;
    converged(&cluster, Duration::from_secs(20)).await;
    cluster.kill(victim);

    let segment = wal_segments(&cluster.specs[TestCluster::index(victim)].data_dir)
        .into_iter()
        .next()
        .expect("a WAL segment");
    // Inside the first record's payload: valid records follow, so this is no torn tail.
    flip_byte(&segment, 16 + 2);
    assert_refuses_naming(&cluster, victim, &segment).await;

    let survivors = cluster.running_endpoints();
    assert_eq!(survivors.len(), 2);
    acquire_any(&survivors, "after", "h", TTL_MS, Duration::from_secs(10))
        .await
        .expect("the other two still commit");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flipped_byte_in_the_snapshot_stops_that_node_and_the_others_serve() {
    init_tracing();
    let mut cluster = TestCluster::start(3, &["--snapshot-every", "10"]).await;
    write_leases(&cluster, "before", 30).await;
    let victim = a_follower(&cluster).await;
    let endpoint = cluster.specs[TestCluster::index(victim)]
        .grpc_listen
        .clone();
    eventually(
        "the follower to build a snapshot",
        Duration::from_secs(30),
        || {
            let endpoint = endpoint.clone();
            async move { status(&endpoint).await?.snapshot_index.filter(|i| *i > 0) }
        },
    )
    .await;
    cluster.kill(victim);

    let snapshot = cluster.specs[TestCluster::index(victim)]
        .data_dir
        .join("snapshot.bin");
    let len = std::fs::metadata(&snapshot).expect("snapshot file").len();
    flip_byte(&snapshot, len / 2);
    assert_refuses_naming(&cluster, victim, &snapshot).await;

    let survivors = cluster.running_endpoints();
    acquire_any(&survivors, "after", "h", TTL_MS, Duration::from_secs(10))
        .await
        .expect("the other two still commit");
}
