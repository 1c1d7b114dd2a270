//! What SRE tooling polls: `/metrics` passes `promtool check metrics` (with a negative control
//! showing promtool does reject a bad exposition), needs credentials, and carries the Raft and
//! state gauges, lease requests by result, probe reports and verdicts, and peer contact ages;
//! `/livez` and `/readyz` answer without credentials, and `/readyz` turns 503 on a node that
//! loses its quorum and 200 again when it returns; the alerting rules in `deploy/prometheus`
//! pass `promtool check rules` and their unit tests, which fail when a rule is broken.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use arbiter::tls::ClientCredentials;
use common::*;

const WAIT: Duration = Duration::from_secs(20);

/// One HTTPS GET; `token: None` sends no credentials.
async fn get(addr: &str, token: Option<&str>, path: &str) -> (u16, String) {
    call(addr, token, "GET", path, None).await
}

/// One HTTPS POST of a JSON body with the operator's token.
async fn post(addr: &str, path: &str, body: serde_json::Value) -> (u16, String) {
    let body = body.to_string();
    call(
        addr,
        Some(&operator_token()),
        "POST",
        path,
        Some(body.as_bytes()),
    )
    .await
}

async fn call(
    addr: &str,
    token: Option<&str>,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
) -> (u16, String) {
    let credentials = ClientCredentials {
        token: token.map(str::to_string),
        token_file: None,
        ..certs().operator()
    };
    let client = credentials.http_client().expect("HTTPS client");
    let url = format!("{}{path}", client.base_url(addr));
    let response = client
        .request(method, &url, body, Duration::from_secs(5))
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

/// The value of the sample of `name` whose labels include every `name="value"` pair given.
fn labelled(text: &str, name: &str, pairs: &[(&str, &str)]) -> Option<f64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?.strip_prefix('{')?;
        let (labels, value) = rest.split_once("} ")?;
        let labels: Vec<&str> = labels.split(',').collect();
        pairs
            .iter()
            .all(|(k, v)| labels.contains(&format!("{k}=\"{v}\"").as_str()))
            .then(|| value.trim().parse().ok())?
    })
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
    // A refusal, a keep-alive, and probe reports, each of which has its own series. Probe
    // reports name a region, which the DR controller's bootstrap writes first.
    let api = leader.http_addr.as_str();
    dr_bootstrapped(api, WAIT).await;
    let (status, body) = post(
        api,
        "/v1/leases/db%2Fops-0/acquire",
        serde_json::json!({"holder": "someone-else", "ttlMs": 10_000}),
    )
    .await;
    assert_eq!(status, 409, "{body}");
    let (status, body) = post(
        api,
        "/v1/leases/db%2Fops-metrics/acquire",
        serde_json::json!({"holder": "ops-test", "ttlMs": 10_000}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let token: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    let (status, body) = post(
        api,
        "/v1/leases/db%2Fops-metrics/keepalive",
        serde_json::json!({"holder": "ops-test", "token": token["token"]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    // A keep-alive sent to a follower is refused (503) and counted there by why.
    let follower = cluster.follower(leader.node_id).ready.http_addr.clone();
    let (status, body) = post(
        &follower,
        "/v1/leases/db%2Fops-metrics/keepalive",
        serde_json::json!({"holder": "ops-test", "token": token["token"]}),
    )
    .await;
    assert_eq!(status, 503, "{body}");
    let (status, follower_text) = get(&follower, Some(&operator_token()), "/metrics").await;
    assert_eq!(status, 200, "{follower_text}");
    assert_eq!(
        labelled(
            &follower_text,
            "arbiter_lease_requests_total",
            &[("operation", "keep_alive"), ("result", "not_leader")]
        ),
        Some(1.0),
        "{follower_text}"
    );
    for (vantage, ok) in [("london", false), ("tokyo", true)] {
        let (status, body) = post(
            api,
            "/v1/probes/report",
            serde_json::json!({"vantage": vantage, "region": "us-west-2", "ok": ok}),
        )
        .await;
        assert_eq!(status, 204, "{body}");
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
    let requests = "arbiter_lease_requests_total";
    for (operation, result, at_least) in [
        ("acquire", "granted", 6.0),
        ("acquire", "held_by", 1.0),
        ("keep_alive", "renewed", 1.0),
    ] {
        let n = labelled(
            &text,
            requests,
            &[("operation", operation), ("result", result)],
        );
        assert!(
            n.is_some_and(|n| n >= at_least),
            "{requests} {operation}/{result}: {n:?}\n{text}"
        );
    }
    assert!(
        sample(&text, "arbiter_lease_quorum_rounds_total").is_some_and(|n| n >= 1.0),
        "{text}"
    );
    for (vantage, result) in [("london", "failing"), ("tokyo", "ok")] {
        let pairs = [
            ("vantage", vantage),
            ("region", "us-west-2"),
            ("result", result),
        ];
        assert_eq!(
            labelled(&text, "arbiter_probe_reports_total", &pairs),
            Some(1.0),
            "{text}"
        );
    }
    // One vantage sees us-west-2 failing: the leader's verdict is "suspect".
    assert_eq!(
        labelled(
            &text,
            "arbiter_probe_verdict",
            &[("region", "us-west-2"), ("verdict", "suspect")]
        ),
        Some(1.0),
        "{text}"
    );
    // Both followers answered the leader's heartbeats within the last few seconds.
    for node in cluster.running() {
        if node.ready.node_id == leader.node_id {
            continue;
        }
        let peer = node.ready.node_id.to_string();
        let age = labelled(
            &text,
            "arbiter_raft_peer_last_contact_seconds",
            &[("peer", &peer)],
        );
        assert!(age.is_some_and(|s| s < 5.0), "peer {peer}: {age:?}\n{text}");
    }
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

/// The times a scale benchmark reads: the leader reports building a snapshot (time and size)
/// and the time its lease timers took to rebuild on election; a follower that fell off the
/// log reports installing the snapshot it was sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_build_install_and_timer_rebuild_are_timed() {
    init_tracing();
    // Snapshot every 20 entries and keep only 5 behind it, so a stopped node falls off the log.
    let mut cluster = TestCluster::start(3, &["--snapshot-every", "20", "--keep-logs", "5"]).await;
    let endpoints = cluster.endpoints();
    let leader = cluster.leader(WAIT).await;
    let lagger = cluster.follower(leader.node_id).ready.node_id;

    tracing::info!(
        lagger,
        "phase: stop a follower and write past the purge point"
    );
    cluster.kill(lagger);
    for i in 0..60 {
        acquire_any(&endpoints, &format!("snap-{i}"), "h", 10_000, WAIT)
            .await
            .expect("write");
    }
    let (status, text) = get(&leader.http_addr, Some(&operator_token()), "/metrics").await;
    assert_eq!(status, 200, "{text}");
    assert!(
        sample(&text, "arbiter_snapshot_build_duration_seconds_count").is_some_and(|n| n >= 1.0),
        "{text}"
    );
    assert!(
        sample(&text, "arbiter_snapshot_size_bytes").is_some_and(|b| b > 0.0),
        "{text}"
    );
    assert!(
        sample(&text, "arbiter_lease_timers_rebuild_duration_seconds_count")
            .is_some_and(|n| n >= 1.0),
        "the leader rebuilt its timers once elected: {text}"
    );
    assert_eq!(
        sample(&text, "arbiter_snapshot_install_duration_seconds_count"),
        Some(0.0),
        "the leader installed nothing"
    );

    tracing::info!(lagger, "phase: restart it; it is sent the snapshot");
    cluster.restart(lagger).await;
    converged(&cluster, WAIT).await;
    let addr = cluster.node(lagger).ready.http_addr.clone();
    let (status, text) = get(&addr, Some(&operator_token()), "/metrics").await;
    assert_eq!(status, 200, "{text}");
    assert!(
        sample(&text, "arbiter_snapshot_install_duration_seconds_count").is_some_and(|n| n >= 1.0),
        "{text}"
    );
    assert!(
        sample(&text, "arbiter_snapshot_size_bytes").is_some_and(|b| b > 0.0),
        "{text}"
    );
}

/// The leader proposes exactly one `Expire` per lapsed lease and none for a released one: its
/// timer for a lease stops when the lease's `Expire` or `Release` applies, so nothing fires
/// again for a lease that is already free. A timer left running would re-propose `Expire` at
/// the next tick (50 ms here) until the next full reconcile (every second), and each such
/// proposal is refused by the table and counted by its refusal kind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_lapsed_lease_is_expired_once_and_a_released_one_never() {
    init_tracing();
    let cluster = TestCluster::start(3, &[]).await;
    let leader = cluster.leader(WAIT).await;
    let api = leader.http_addr.as_str();
    // Short (the LAN profile allows 300 ms: 1.5 × its 200 ms election timeout), so a stale
    // timer reaches its deadline before a reconcile (every second) is likely to drop it.
    const TTL_MS: u64 = 525;
    const ROUNDS: usize = 8;
    for round in 0..ROUNDS {
        let lapsing = format!("/v1/leases/db%2Flapse-{round}");
        let released = format!("/v1/leases/db%2Frelease-{round}");
        let mut tokens = Vec::new();
        for path in [&lapsing, &released] {
            let (status, body) = post(
                api,
                &format!("{path}/acquire"),
                serde_json::json!({"holder": "ops-test", "ttlMs": TTL_MS}),
            )
            .await;
            assert_eq!(status, 200, "{body}");
            let grant: serde_json::Value = serde_json::from_str(&body).expect("JSON");
            tokens.push(grant["token"].clone());
        }
        let (status, body) = post(
            api,
            &format!("{released}/release"),
            serde_json::json!({"holder": "ops-test", "token": tokens[1]}),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        // The released lease's deadline passes with the lapsing one's: by the time the table
        // frees the lapsing lease, a timer still kept for the released one has fired too.
        eventually("the lapsing lease to be expired", WAIT, || {
            let lapsing = lapsing.clone();
            async move {
                let (status, body) = get(api, Some(&operator_token()), &lapsing).await;
                (status == 200 && body.contains("\"FREE\"")).then_some(())
            }
        })
        .await;
    }
    assert_eq!(
        cluster.leader(WAIT).await.node_id,
        leader.node_id,
        "one leader counted every proposal"
    );
    let (status, text) = get(api, Some(&operator_token()), "/metrics").await;
    assert_eq!(status, 200, "{text}");
    let expires: Vec<&str> = text
        .lines()
        .filter(|l| {
            l.starts_with("arbiter_lease_requests_total{") && l.contains("operation=\"expire\"")
        })
        .collect();
    assert_eq!(
        labelled(
            &text,
            "arbiter_lease_requests_total",
            &[("operation", "expire"), ("result", "expired")]
        ),
        Some(ROUNDS as f64),
        "one Expire applied per lapsed lease: {expires:?}"
    );
    let refused: Vec<&&str> = expires
        .iter()
        .filter(|l| !l.contains("result=\"expired\""))
        // Not decided (a timeout, a lost leadership) is not a refusal by the table.
        .filter(|l| {
            ![
                "timeout",
                "not_leader",
                "overloaded",
                "shutting_down",
                "error",
            ]
            .iter()
            .any(|e| l.contains(&format!("result=\"{e}\"")))
        })
        .filter(|l| !l.ends_with(" 0"))
        .collect();
    assert!(
        refused.is_empty(),
        "an Expire proposed for a lease that was already free: {refused:?}"
    );
}

/// `promtool` with `args`, run in `dir`; (passed, what it said).
fn promtool(dir: &std::path::Path, args: &[&str]) -> (bool, String) {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("promtool (Debian package `prometheus`; .ci/run installs it)");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), said)
}

#[test]
fn alerting_rules_pass_promtool_check_and_their_unit_tests() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/prometheus");
    let (passed, said) = promtool(&dir, &["check", "rules", "arbiter-rules.yml"]);
    assert!(passed, "promtool check rules:\n{said}");
    let (passed, said) = promtool(&dir, &["test", "rules", "arbiter-rules.test.yml"]);
    assert!(passed, "promtool test rules:\n{said}");

    // Negative control: with the no-leader rule broken, the unit tests fail.
    let scratch = tempfile::tempdir().expect("temp dir");
    let rules = std::fs::read_to_string(dir.join("arbiter-rules.yml")).expect("rules");
    let broken = rules.replace(
        "expr: arbiter_raft_has_leader == 0",
        "expr: arbiter_raft_has_leader == 2",
    );
    assert_ne!(broken, rules, "the rule to break was not found");
    std::fs::write(scratch.path().join("arbiter-rules.yml"), broken).expect("write");
    std::fs::copy(
        dir.join("arbiter-rules.test.yml"),
        scratch.path().join("arbiter-rules.test.yml"),
    )
    .expect("copy");
    let (passed, said) = promtool(scratch.path(), &["test", "rules", "arbiter-rules.test.yml"]);
    assert!(
        !passed && said.contains("ArbiterNoLeader"),
        "a broken rule passed its unit tests:\n{said}"
    );
}
