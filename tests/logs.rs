//! Logs an SRE can search: with `--log-format json` every line a node writes is one JSON object;
//! each HTTP and gRPC request runs in a span whose `request_id` the caller gets back in
//! `x-request-id` (its own, when it sent a plain one), and that span carries the authenticated
//! caller. The filter comes from ARBITER_LOG / RUST_LOG.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(20);

/// `curl` GET with the operator's token and an `x-request-id`; (status line, x-request-id).
fn get_with_request_id(addr: &str, path: &str, request_id: &str) -> (String, Option<String>) {
    let ca = certs().operator().ca.expect("ca");
    let out = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-D",
            "-",
            "--max-time",
            "5",
            "--cacert",
        ])
        .arg(&ca)
        .args([
            "-H",
            &format!("Authorization: Bearer {}", operator_token()),
            "-H",
            &format!("x-request-id: {request_id}"),
            &format!("https://{addr}{path}"),
        ])
        .output()
        .expect("curl runs");
    let head = String::from_utf8_lossy(&out.stdout).into_owned();
    let status = head.lines().next().unwrap_or_default().trim().to_string();
    let id = head.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.eq_ignore_ascii_case("x-request-id")
            .then(|| value.trim().to_string())
    });
    (status, id)
}

/// The JSON lines of a node's log; panics on a line that is not JSON.
fn json_lines(log: &std::path::Path) -> Vec<Value> {
    let text = std::fs::read_to_string(log).expect("node log");
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// The `request served` line of the request with `id`, if logged yet.
fn served_line(lines: &[Value], id: &str) -> Option<Value> {
    lines
        .iter()
        .find(|l| l["span"]["request_id"] == id && l["fields"]["message"] == "request served")
        .cloned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_carry_the_request_id_returned_to_the_caller() {
    init_tracing();
    // Children inherit the environment: the access lines are at debug level.
    std::env::set_var("ARBITER_LOG", "info,openraft=warn,arbiter::access=debug");
    let cluster = TestCluster::start(3, &["--log-format", "json"]).await;
    std::env::remove_var("ARBITER_LOG");
    let leader = cluster.leader(WAIT).await;
    let node = cluster.node(leader.node_id);
    let log = node.spec.log_path();

    // HTTP: the caller's plain id comes back and names the request's span.
    let (status, id) = get_with_request_id(&leader.http_addr, "/v1/regions", "logs-test-http.1");
    assert!(status.contains("200"), "{status}");
    assert_eq!(id.as_deref(), Some("logs-test-http.1"));
    // An id that is not plain is replaced by a fresh one.
    let (status, fresh) = get_with_request_id(&leader.http_addr, "/v1/regions", "bad id!");
    assert!(status.contains("200"), "{status}");
    let fresh = fresh.expect("a fresh x-request-id");
    assert!(
        fresh.len() == 16 && fresh.chars().all(|c| c.is_ascii_hexdigit()),
        "{fresh}"
    );

    // gRPC: the same, in the response metadata.
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/grpc_generic_client.py");
    let ca = certs().operator().ca.expect("ca");
    let out = Command::new("python3")
        .arg(script)
        .args(["--addr", &leader.grpc_addr, "--ca"])
        .arg(&ca)
        .args(["--token", &operator_token()])
        .args(["--call", "arbiter.v1.ClusterService/GetStatus"])
        .args(["--request-id", "logs-test-grpc.1"])
        .output()
        .expect("python3 runs");
    let answer: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(answer["request_id"], "logs-test-grpc.1", "{answer}");

    // Every line of the node's log is JSON; both requests' lines name them and the caller.
    let lines = eventually("both requests in the node's JSON log", WAIT, || {
        let (log, fresh) = (log.clone(), fresh.clone());
        async move {
            let lines = json_lines(&log);
            let http = served_line(&lines, "logs-test-http.1")?;
            let grpc = served_line(&lines, "logs-test-grpc.1")?;
            let fresh = served_line(&lines, &fresh)?;
            Some((http, grpc, fresh))
        }
    })
    .await;
    let (http, grpc, fresh) = lines;
    assert_eq!(http["span"]["path"], "/v1/regions", "{http}");
    assert_eq!(http["span"]["method"], "GET", "{http}");
    assert_eq!(http["fields"]["status"], 200, "{http}");
    assert_eq!(http["span"]["caller"], "operator", "{http}");
    assert_eq!(
        grpc["span"]["path"], "/arbiter.v1.ClusterService/GetStatus",
        "{grpc}"
    );
    assert_eq!(grpc["span"]["caller"], "operator", "{grpc}");
    assert_eq!(fresh["span"]["path"], "/v1/regions", "{fresh}");
}
