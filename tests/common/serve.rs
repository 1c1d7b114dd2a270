//! Starting `arbiter serve` outside the launcher, for nodes that are expected to refuse to
//! start (an empty data dir without `--rejoin`, `--bootstrap` over an existing cluster) or to
//! wait without ever becoming ready; and the CLI and token checks the lifecycle tests share.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use arbiter::local_cluster::NodeSpec;

use super::{binary, TestCluster};

/// `arbiter serve` for `spec`'s node id, region, data dir, certificates and tokens file on
/// fresh loopback ports, with `extra` flags, logging to `log` — and without the launcher's `--join`.
pub fn serve_command(spec: &NodeSpec, extra: &[&str], log: &Path) -> tokio::process::Command {
    let log = std::fs::File::create(log).expect("create the log file");
    let mut cmd = tokio::process::Command::new(binary());
    cmd.arg("serve")
        .args(["--node-id", &spec.id.to_string(), "--region", &spec.region])
        .arg("--data-dir")
        .arg(&spec.data_dir)
        .args([
            "--grpc-listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
            "--peer-listen",
            "127.0.0.1:0",
        ]);
    // The tokens file of the cluster dir the node's data dir is in, as `node_spec` gives it.
    let cluster_dir = spec
        .data_dir
        .parent()
        .expect("a data dir inside a cluster dir");
    cmd.arg("--auth-tokens-file")
        .arg(super::tokens_file(cluster_dir));
    if let Some(tls) = &spec.tls {
        cmd.args(tls.serve_args());
    }
    cmd.args(extra)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("clone the log handle"))
        .stderr(log)
        // A node that does not exit as expected is killed when the test drops it.
        .kill_on_drop(true);
    cmd
}

/// Runs the node of `spec` with `extra` flags and waits (at most `timeout`) for it to exit;
/// returns whether it exited successfully and its log.
pub async fn serve_until_exit(
    spec: &NodeSpec,
    extra: &[&str],
    log: &Path,
    timeout: Duration,
) -> (bool, String) {
    let mut child = serve_command(spec, extra, log)
        .spawn()
        .expect("spawn arbiter serve");
    let status = tokio::time::timeout(timeout, child.wait())
        .await
        .unwrap_or_else(|_| panic!("node {} still running after {timeout:?}", spec.id))
        .expect("wait for arbiter serve");
    let text = std::fs::read_to_string(log).expect("read the log");
    (status.success(), text)
}

/// `--rejoin` through the other members of `cluster`, for node `id`.
pub fn rejoin_args(cluster: &TestCluster, id: u64) -> Vec<String> {
    let others: Vec<String> = cluster
        .specs
        .iter()
        .filter(|s| s.id != id)
        .map(|s| s.listeners.grpc().to_string())
        .collect();
    vec!["--rejoin".into(), "--endpoints".into(), others.join(",")]
}

/// Waits until `path` contains `needle` (a log line), or panics after `timeout`.
pub async fn wait_for_log(path: &Path, needle: &str, timeout: Duration) -> String {
    super::eventually(
        &format!("{needle:?} in {}", path.display()),
        timeout,
        || async {
            let text = std::fs::read_to_string(path).ok()?;
            text.contains(needle).then_some(text)
        },
    )
    .await
}

/// Runs the `arbiter` CLI to completion; returns whether it succeeded and its stdout+stderr.
pub fn run_arbiter<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> (bool, String) {
    let output = std::process::Command::new(binary())
        .args(args)
        .output()
        .expect("run arbiter");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

/// Grants `count` fresh leases (`{prefix}-{i}`) through `endpoints` and checks every token is
/// above `highest`: tokens never repeat or go back across a rejoin or a restore.
pub async fn assert_new_tokens_above(
    endpoints: &[String],
    prefix: &str,
    count: usize,
    highest: u64,
) {
    for i in 0..count {
        let token = super::acquire_any(
            endpoints,
            &format!("{prefix}-{i}"),
            "h",
            60_000,
            Duration::from_secs(5),
        )
        .await
        .unwrap_or_else(|e| panic!("grant {prefix}-{i}: {e}"));
        assert!(token > highest, "token {token} not above {highest}");
    }
}

/// Waits until the leader of `cluster` lists node `id` among the voters; returns that entry.
pub async fn wait_until_voter(
    cluster: &TestCluster,
    id: u64,
    timeout: Duration,
) -> arbiter_client::proto::NodeInfo {
    super::eventually(&format!("node {id} to be a voter"), timeout, || async {
        let leader = super::status(&cluster.leader(timeout).await.grpc_addr).await?;
        leader.voters.into_iter().find(|v| v.node_id == id)
    })
    .await
}
