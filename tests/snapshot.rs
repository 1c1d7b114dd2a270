//! Backups end to end: `arbiter snapshot save` from a live cluster, `arbiter snapshot restore`
//! into the data dirs of a new cluster (new cluster id), which serves the same state and mints
//! tokens above every token in the backup; a corrupt or truncated backup is refused.

mod common;

use std::time::Duration;

use arbiter::backup::Backup;
use common::serve::{assert_new_tokens_above, run_arbiter};
use common::*;

const TTL_MS: u64 = 60_000;
const WAIT: Duration = Duration::from_secs(60);

/// `snapshot restore FILE --out DIR` with the members of `cluster` at their current addresses.
fn restore_args(file: &std::path::Path, cluster: &TestCluster) -> Vec<String> {
    let mut args = vec![
        "snapshot".to_string(),
        "restore".into(),
        file.display().to_string(),
        "--out".into(),
        cluster.dir.path().display().to_string(),
    ];
    for (spec, node) in cluster.specs.iter().zip(cluster.nodes.iter().flatten()) {
        args.push("--member".into());
        args.push(format!(
            "{}={}@{},{},{}",
            spec.id,
            spec.region,
            spec.listeners.grpc(),
            node.ready.http_addr,
            spec.listeners.peer()
        ));
    }
    args
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backup_restores_into_a_new_cluster_with_the_same_state() {
    init_tracing();
    let source = TestCluster::start(3, &[]).await;
    let endpoints = source.endpoints();
    let mut tokens = Vec::new();
    for i in 0..40 {
        tokens.push(
            acquire_any(
                &endpoints,
                &format!("r-{i}"),
                "h",
                TTL_MS,
                Duration::from_secs(5),
            )
            .await
            .expect("write"),
        );
    }
    let (applied, digest) = converged(&source, WAIT).await;
    let source_id = status(&endpoints[0]).await.expect("status").cluster_id;

    tracing::info!("phase: save a backup from the live cluster");
    let file = source.dir.path().join("backup.arb");
    let mut save = vec![
        "snapshot".to_string(),
        "save".into(),
        file.display().to_string(),
        "--endpoints".into(),
        endpoints.join(","),
    ];
    save.extend(cli_credentials());
    let (ok, text) = run_arbiter(&save);
    assert!(ok, "snapshot save: {text}");
    let backup = Backup::load(&file).expect("the saved file reads back");
    assert_eq!(backup.header.source_cluster_id, source_id);
    assert!(backup.header.last_applied_index >= applied);
    assert_eq!(
        backup.header.state_digest,
        converged(&source, WAIT).await.1,
        "the backup holds the cluster's state"
    );
    assert_eq!(
        backup.header.state_digest, digest,
        "nothing was written meanwhile"
    );

    tracing::info!("phase: a corrupt or truncated backup is refused");
    let bytes = std::fs::read(&file).expect("read");
    let target = TestCluster::start(3, &[]).await;
    let corrupt = source.dir.path().join("corrupt.arb");
    let mut flipped = bytes.clone();
    flipped[bytes.len() / 2] ^= 0x40;
    std::fs::write(&corrupt, &flipped).expect("write");
    let truncated = source.dir.path().join("truncated.arb");
    std::fs::write(&truncated, &bytes[..bytes.len() - 100]).expect("write");
    for bad in [&corrupt, &truncated] {
        let (ok, text) = run_arbiter(&restore_args(bad, &target));
        assert!(!ok, "{} was accepted: {text}", bad.display());
        assert!(
            text.contains("truncated or corrupt"),
            "a clear error: {text}"
        );
    }

    tracing::info!("phase: restore into the data dirs of a new cluster and start it");
    let mut target = target;
    let target_old_id = status(&target.endpoints()[0])
        .await
        .expect("status")
        .cluster_id;
    let args = restore_args(&file, &target);
    for id in 1..=3 {
        target.kill(id);
        let dir = &target.specs[TestCluster::index(id)].data_dir;
        std::fs::remove_dir_all(dir).expect("clear the dir");
    }
    let (ok, text) = run_arbiter(&args);
    assert!(ok, "snapshot restore: {text}");
    for id in 1..=3 {
        target.restart(id).await;
    }
    let leader = target.leader(WAIT).await;
    assert!(
        leader.term > backup.header.last_applied_term,
        "the restored cluster's terms continue above the backup's ({} vs {})",
        leader.term,
        backup.header.last_applied_term
    );
    let restored = status(&target.endpoints()[0]).await.expect("status");
    assert_eq!(restored.cluster_id.len(), 32);
    assert!(
        restored.cluster_id != source_id && restored.cluster_id != target_old_id,
        "a restored cluster gets a new cluster id"
    );
    assert!(
        text.contains(&restored.cluster_id),
        "restore names the new id: {text}"
    );
    let (_, restored_digest) = converged(&target, WAIT).await;
    assert_eq!(restored_digest, digest, "the restored state digest matches");

    tracing::info!("phase: tokens minted after the restore exceed every token in the backup");
    let highest = *tokens.iter().max().expect("tokens");
    let target_endpoints = target.endpoints();
    assert_new_tokens_above(&target_endpoints, "after-restore", 10, highest).await;
    // A resource from the backup keeps its epoch: a new grant on it fences the old holder.
    let token = acquire_any(
        &target_endpoints,
        "r-0",
        "new-holder",
        TTL_MS,
        Duration::from_secs(5),
    )
    .await;
    // Refused, naming the backup's holder: not merely an error, which a timeout would also be.
    let refusal = token.expect_err("r-0 is still held by the backup's holder");
    assert!(
        refusal.starts_with("refused: ")
            && refusal.contains("HeldBy")
            && refusal.contains("holder: \"h\""),
        "{refusal}"
    );
    assert_eq!(
        epoch_of(&target_endpoints, "r-0").await,
        Some(tokens[0]),
        "the backup's lease is there"
    );
}
