//! Disk full on one node: it stops acknowledging and says why (status `storage_error`), the
//! other two keep committing, and once space returns it catches up with every acknowledged
//! write (equal state digests), also after a kill -9 and restart.
//!
//! The node's data dir is a small tmpfs mounted by the test (root only; skipped with a message
//! otherwise) and unmounted on the way out, even when the test fails.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;

const TTL_MS: u64 = 60_000;
/// Small segments so a rollover — where a full disk first bites — comes after a few hundred
/// writes.
const SEGMENT_BYTES: &str = "65536";

/// A tmpfs mounted over a directory, lazily unmounted when dropped.
struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` over `path`, keeping what the directory held.
    fn mount_over(path: &Path, size: &str) -> Result<Tmpfs, String> {
        let saved = path.with_extension("saved");
        run(
            "cp",
            &[
                "-a",
                &path.display().to_string(),
                &saved.display().to_string(),
            ],
        )?;
        run(
            "mount",
            &[
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size}"),
                "tmpfs",
                &path.display().to_string(),
            ],
        )?;
        let mounted = Tmpfs {
            path: path.to_path_buf(),
        };
        run(
            "cp",
            &[
                "-a",
                &format!("{}/.", saved.display()),
                &path.display().to_string(),
            ],
        )?;
        Ok(mounted)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: a node process still holding files there must not keep the mount alive.
        if let Err(e) = run("umount", &["-l", &self.path.display().to_string()]) {
            eprintln!("cannot unmount {}: {e}", self.path.display());
        }
    }
}

fn run(program: &str, args: &[&str]) -> Result<(), String> {
    let output = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{program} {args:?}: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// Fills the filesystem of `dir` with one file until writing fails with ENOSPC.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path).expect("create filler");
    let chunk = vec![0xa5u8; 64 * 1024];
    // Bounded: the tmpfs is a few MiB, so this ends long before the count does.
    for _ in 0..10_000 {
        if let Err(e) = file.write_all(&chunk) {
            assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "filler write: {e}");
            return path;
        }
    }
    panic!("{} never filled up", dir.display());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_pauses_one_node_which_catches_up_when_space_returns() {
    init_tracing();
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIPPED: mounting a tmpfs needs root");
        return;
    }
    let mut cluster = TestCluster::start(3, &["--wal-segment-bytes", SEGMENT_BYTES]).await;
    let leader = cluster.leader(Duration::from_secs(10)).await;
    let victim = (1..=3)
        .find(|id| *id != leader.node_id)
        .expect("a follower");
    let data_dir = cluster.specs[TestCluster::index(victim)].data_dir.clone();
    let endpoint = cluster.specs[TestCluster::index(victim)]
        .grpc_listen
        .clone();

    cluster.kill(victim);
    let _tmpfs = match Tmpfs::mount_over(&data_dir, "8m") {
        Ok(mounted) => mounted,
        Err(e) => {
            eprintln!("SKIPPED: cannot mount a tmpfs: {e}");
            return;
        }
    };
    cluster.restart(victim).await;
    let filler = fill(&data_dir);

    // Write until the victim reports the full disk; the other two must go on committing.
    let endpoints = cluster.endpoints();
    let mut written = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let storage_error = loop {
        assert!(
            tokio::time::Instant::now() < deadline && written < 20_000,
            "the victim never reported a full disk after {written} writes"
        );
        acquire_any(
            &endpoints,
            &format!("r-{written}"),
            "h",
            TTL_MS,
            Duration::from_secs(10),
        )
        .await
        .expect("the cluster commits while one node's disk is full");
        written += 1;
        if written % 20 == 0 {
            if let Some(s) = status(&endpoint).await {
                if !s.storage_error.is_empty() {
                    break s.storage_error;
                }
            }
        }
    };
    tracing::info!(written, %storage_error, "the victim reports a full disk");
    assert!(
        storage_error.contains("No space left on device"),
        "status names the cause: {storage_error}"
    );
    // It stopped acknowledging: the others commit further while it stays behind.
    let stuck = status(&endpoint).await.and_then(|s| s.last_log_index);
    for i in 0..20 {
        acquire_any(
            &endpoints,
            &format!("full-{i}"),
            "h",
            TTL_MS,
            Duration::from_secs(10),
        )
        .await
        .expect("the other two commit");
    }
    let committed = cluster
        .leader(Duration::from_secs(10))
        .await
        .committed_index;
    assert!(
        stuck < committed,
        "the full node's log ({stuck:?}) is behind the committed index ({committed:?})"
    );

    std::fs::remove_file(&filler).expect("remove filler");
    eventually(
        "the victim to clear its storage error",
        Duration::from_secs(60),
        || {
            let endpoint = endpoint.clone();
            async move {
                status(&endpoint)
                    .await
                    .filter(|s| s.storage_error.is_empty())
            }
        },
    )
    .await;
    let (applied, digest) = converged(&cluster, Duration::from_secs(60)).await;
    assert!(applied >= committed.unwrap_or(0));

    // What it wrote around the full disk reads back after a crash.
    cluster.kill(victim);
    cluster.restart(victim).await;
    let (applied_after, digest_after) = converged(&cluster, Duration::from_secs(60)).await;
    assert!(applied_after >= applied);
    if applied_after == applied {
        assert_eq!(digest_after, digest);
    }
}
