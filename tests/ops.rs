//! What SRE tooling polls: `/metrics` passes `promtool check metrics` (with a negative control
//! showing promtool does reject a bad exposition), needs credentials, and carries the Raft and
//! state gauges; `/livez` and `/readyz` answer without credentials, and `/readyz` turns 503 on a
//! node that loses its quorum and 200 again when it returns.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use arbiter::tls::ClientCredentials;
use common::*;

const WAIT: Duration = Duration::from_secs(20);

/// One HTTPS GET; `token: None` sends no credentials.
async fn get(addr: &str, token: Option<&str>, path: &str) -> (u16, String) {
    let credentials = ClientCredentials {
        token: token.map(str::to_string),
        token_file: None,
        ..certs().operator()
    };
    let client = credentials.http_client().expect("HTTPS client");
    let url = format!("{}{path}", client.base_url(addr));
    let response = client
        .request("GET", &url, None, Duration::from_secs(5))
        .await
        .expect("HTTP exchange");
    (
        response.status,
        String::from_utf8_lossy(&response.body).into_owned(),
    )
}

/// Runs `promtool check metrics` on `text`; (passed, what it said).
fn promtool_check(text: &str) -> (bool, String) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package `prometheus`; .ci/run installs it)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write to promtool");
    let out = child.wait_with_output().expect("promtool runs");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), said)
}

/// The value of the first sample of `name` (no labels) in an exposition.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_pass_promtool_and_need_credentials() {
    init_tracing();
    let cluster = TestCluster::start(3, &[]).await;
    let leader = cluster.leader(WAIT).await;
    // Some writes, so the proposer's and the WAL's histograms have samples.
    for i in 0..5 {
        acquire_any(
            &cluster.endpoints(),
            &format!("db/ops-{i}"),
            "ops-test",
            10_000,
            WAIT,
        )
        .await
        .expect("acquire");
    }

    let (status, _) = get(&leader.http_addr, None, "/metrics").await;
    assert_eq!(status, 401, "/metrics without credentials");
    let (status, text) = get(&leader.http_addr, Some(&operator_token()), "/metrics").await;
    assert_eq!(status, 200, "{text}");

    let (passed, said) = promtool_check(&text);
    assert!(
        passed,
        "promtool check metrics failed:\n{said}\n--- exposition ---\n{text}"
    );
    // Negative control: promtool does reject a malformed exposition.
    let (passed, said) = promtool_check("# TYPE arbiter_bad counter\narbiter_bad{x=} oops\n");
    assert!(!passed, "promtool accepted a malformed exposition: {said}");

    assert_eq!(sample(&text, "arbiter_raft_is_leader"), Some(1.0), "{text}");
    assert_eq!(sample(&text, "arbiter_raft_has_leader"), Some(1.0));
    assert_eq!(sample(&text, "arbiter_raft_term"), Some(leader.term as f64));
    assert_eq!(sample(&text, "arbiter_raft_voters"), Some(3.0));
    assert!(
        sample(&text, "arbiter_leases_live").is_some_and(|n| n >= 5.0),
        "{text}"
    );
    let committed = text
        .lines()
        .find(|l| l.starts_with("arbiter_proposer_commands_total{result=\"committed\"}"))
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok());
    assert!(committed.is_some_and(|n| n >= 5.0), "{text}");
    assert!(
        text.contains("arbiter_wal_sync_duration_seconds_count"),
        "no WAL sync histogram"
    );
    assert!(
        text.contains("arbiter_raft_peer_lag_entries{peer="),
        "no peer lag on the leader"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_turns_503_without_quorum_and_back() {
    init_tracing();
    let mut cluster = TestCluster::start(3, &[]).await;
    let leader = cluster.leader(WAIT).await;
    for node in cluster.running() {
        let addr = node.ready.http_addr.clone();
        let (status, body) = get(&addr, None, "/livez").await;
        assert_eq!(status, 200, "livez: {body}");
        let (status, body) = get(&addr, None, "/readyz").await;
        assert_eq!(status, 200, "readyz of a healthy node: {body}");
    }

    // Leave one node alone: it loses its leader and cannot elect one.
    let survivor = if leader.node_id == 1 { 2 } else { 1 };
    for id in [1, 2, 3] {
        if id != survivor {
            cluster.kill(id);
        }
    }
    let addr = cluster.node(survivor).ready.http_addr.clone();
    let reasons = eventually("the lone node to report not ready", WAIT, || {
        let addr = addr.clone();
        async move {
            let (status, body) = get(&addr, None, "/readyz").await;
            (status == 503).then_some(body)
        }
    })
    .await;
    assert!(reasons.contains("no leader"), "{reasons}");
    let (status, body) = get(&addr, None, "/livez").await;
    assert_eq!(status, 200, "a node without quorum is still alive: {body}");

    let back = if survivor == 1 { 2 } else { 1 };
    cluster.restart(back).await;
    eventually("the node to be ready again", WAIT, || {
        let addr = addr.clone();
        async move { (get(&addr, None, "/readyz").await.0 == 200).then_some(()) }
    })
    .await;
}
