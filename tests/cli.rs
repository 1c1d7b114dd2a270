//! The command line as an operator and a script meet it: the same exit codes from every
//! command (0 done, 2 usage, 3 unknown, 4 refused, 5 unavailable), `status` failing without a
//! leader, `ARBITER_ENDPOINTS`, `--output json` everywhere, tables that stay aligned with long
//! names, `failover --wait` following the failover live (and refusing to act unconfirmed off
//! a terminal), shell completions, and `config check` / `config show`.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(20);

/// Runs `arbiter ARGS` with the operator's credentials and `env`; (exit code, stdout, stderr).
async fn arbiter(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let credentials = cli_credentials();
    let args: Vec<&str> = args
        .iter()
        .copied()
        .chain(credentials.iter().map(String::as_str))
        .collect();
    run(&args, env).await
}

/// Runs `arbiter ARGS` as given, with `env` (and no ARBITER_* from the test's environment).
async fn run(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let output = tokio::process::Command::new(binary())
        .args(args)
        .env_remove("ARBITER_ENDPOINTS")
        .env_remove("ARBITER_OUTPUT")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .await
        .expect("the CLI runs");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn json(stdout: &str) -> Value {
    serde_json::from_str(stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

/// A short drain, so a failover completes within the test.
fn fast_dr_config(dir: &Path) -> String {
    let path = dir.join("dr.toml");
    std::fs::write(&path, "[dr]\ndrain_ms = 300\ntick_ms = 100\n").expect("write config");
    path.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_codes_output_and_endpoints_are_the_same_for_every_command() {
    init_tracing();
    let scratch = tempfile::tempdir().expect("temp dir");
    let config = fast_dr_config(scratch.path());
    let mut cluster = TestCluster::start(3, &["--config", &config]).await;
    let leader = cluster.leader(WAIT).await;
    dr_bootstrapped(&leader.http_addr, WAIT).await;
    let grpc = cluster.endpoints().join(",");
    let http: Vec<String> = cluster
        .running()
        .map(|n| n.ready.http_addr.clone())
        .collect();
    let http = http.join(",");

    // `status` through ARBITER_ENDPOINTS alone (no --endpoints, no cluster.json): one node.
    let (code, out, err) = arbiter(
        &["status", "--output", "json"],
        &[("ARBITER_ENDPOINTS", &leader.grpc_addr)],
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    let report = json(&out);
    assert_eq!(
        report["nodes"].as_array().map(Vec::len),
        Some(1),
        "{report}"
    );
    assert_eq!(report["leader"], json!(leader.node_id), "{report}");

    // Usage (2), unavailable (5), refused (4), in three different commands.
    let (code, _, err) = arbiter(&["status", "--no-such-flag"], &[]).await;
    assert_eq!(code, 2, "usage: {err}");
    let (code, _, err) = arbiter(&["status", "--endpoints", "127.0.0.1:1"], &[]).await;
    assert_eq!(code, 5, "nobody answers: {err}");
    let (code, _, err) = arbiter(&["regions", "--endpoints", "127.0.0.1:1"], &[]).await;
    assert_eq!(code, 5, "nobody answers: {err}");
    let (code, out, err) = arbiter(
        &[
            "failover",
            "--region",
            "mars-1",
            "--reason",
            "cli test",
            "--yes",
            "--endpoints",
            &http,
            "-o",
            "json",
        ],
        &[],
    )
    .await;
    assert_eq!(code, 4, "refused: {out}{err}");
    assert!(
        json(&out)["error"]
            .as_str()
            .is_some_and(|e| e.contains("mars-1")),
        "{out}"
    );
    let acquire = |holder: &'static str| {
        vec![
            "lease",
            "acquire",
            "--resource",
            "db/cli",
            "--holder",
            holder,
            "--ttl",
            "30",
        ]
    };
    let mut args = acquire("proxy-east");
    args.extend(["--endpoints", &grpc]);
    let (code, _, err) = arbiter(&args, &[]).await;
    assert_eq!(code, 0, "{err}");
    let mut args = acquire("proxy-west");
    args.extend(["--endpoints", &grpc]);
    let (code, _, err) = arbiter(&args, &[]).await;
    assert_eq!(code, 4, "a held lease is refused: {err}");
    assert!(err.contains("proxy-east"), "{err}");

    // Off a terminal, a failover needs --yes; nothing is sent without it.
    let (code, _, err) = arbiter(
        &[
            "failover",
            "--region",
            "us-east-1",
            "--reason",
            "cli test",
            "--endpoints",
            &http,
        ],
        &[],
    )
    .await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--yes"), "{err}");
    let (code, out, _) = arbiter(&["events", "--endpoints", &http, "-o", "json"], &[]).await;
    assert_eq!(code, 0);
    assert_eq!(json(&out)["events"], json!([]), "nothing was sent: {out}");

    // Tables keep their columns aligned whatever the name lengths.
    let long = "tenant-with-a-name-far-longer-than-any-column-width-anyone-would-pick";
    for tenant in ["t1", long] {
        let http_client = common::http();
        let url = format!(
            "{}/v1/tenants/{tenant}",
            http_client.base_url(&leader.http_addr)
        );
        let body = json!({"primaryRegion": "us-east-1", "failoverRegion": "us-west-2"});
        let response = http_client
            .request("PUT", &url, Some(body.to_string().as_bytes()), WAIT)
            .await
            .expect("PUT tenant");
        assert_eq!(
            response.status,
            200,
            "{}",
            String::from_utf8_lossy(&response.body)
        );
    }
    let (code, table, err) = arbiter(&["tenants", "--endpoints", &http], &[]).await;
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = table.lines().collect();
    let column = lines[0].find("PRIMARY").expect("PRIMARY header");
    for line in &lines[1..] {
        assert_eq!(
            line.get(column..column + "us-east-1".len()),
            Some("us-east-1"),
            "misaligned:\n{table}"
        );
    }

    // failover --wait: every step printed as it is recorded, exit 0 once COMPLETED.
    let (code, out, err) = arbiter(
        &[
            "failover",
            "--region",
            "us-east-1",
            "--reason",
            "cli test",
            "--yes",
            "--wait",
            "--wait-timeout",
            "60",
            "--endpoints",
            &http,
        ],
        &[],
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    for step in [
        "FENCE",
        "SHIFT_TRAFFIC",
        "SCALE_STANDBY",
        "DRAINED",
        "COMPLETED",
    ] {
        assert!(out.contains(step), "{step} not shown:\n{out}");
    }
    assert!(out.trim_end().ends_with("completed"), "{out}");

    // `status` fails (5) once the reachable node knows no leader.
    let survivor = if leader.node_id == 1 { 2 } else { 1 };
    for id in [1, 2, 3] {
        if id != survivor {
            cluster.kill(id);
        }
    }
    let survivor_grpc = cluster.node(survivor).ready.grpc_addr.clone();
    let (code, out, err) = eventually("status to report no leader", WAIT, || {
        let endpoint = survivor_grpc.clone();
        async move {
            let (code, out, err) = arbiter(&["status", "--endpoints", &endpoint], &[]).await;
            (code != 0).then_some((code, out, err))
        }
    })
    .await;
    assert_eq!(code, 5, "{out}{err}");
    assert!(err.contains("no leader"), "{err}");
}

#[tokio::test]
async fn completions_and_config_commands() {
    let (code, script, err) = run(&["completions", "bash"], &[]).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        script.contains("move-leader"),
        "completions name the commands"
    );
    let scratch = tempfile::tempdir().expect("temp dir");
    let path = scratch.path().join("arbiter.bash");
    std::fs::write(&path, &script).expect("write");
    let syntax = std::process::Command::new("bash")
        .arg("-n")
        .arg(&path)
        .output()
        .expect("bash runs");
    assert!(syntax.status.success(), "bash -n: {:?}", syntax);

    let example = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/three-region/us-east-1.toml"
    );
    let (code, out, err) = run(&["config", "check", example], &[]).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("node 1 in us-east-1") && out.contains("TLS on"),
        "{out}"
    );
    // Negative control: a broken copy is refused with the reason.
    let broken = scratch.path().join("broken.toml");
    let text = std::fs::read_to_string(example).expect("read example");
    std::fs::write(
        &broken,
        text.replace("region = \"us-east-1\"", "region = 7"),
    )
    .expect("write");
    let (code, _, err) = run(&["config", "check", broken.to_str().expect("utf-8")], &[]).await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("broken.toml"), "{err}");

    // The effective config: the wan profile's timing and the preferred leader filled in, a
    // flag over the file.
    let (code, out, err) = run(&["config", "show", "--config", example], &[]).await;
    assert_eq!(code, 0, "{err}");
    let shown: toml::Value = toml::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(shown["heartbeat_ms"].as_integer(), Some(250), "{out}");
    assert_eq!(
        shown["raft"]["preferred_leader"].as_str(),
        Some("eu-central-1"),
        "{out}"
    );
    let (code, out, err) = run(
        &[
            "config",
            "show",
            "--config",
            example,
            "--heartbeat-ms",
            "500",
            "-o",
            "json",
        ],
        &[],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(json(&out)["heartbeat_ms"], json!(500), "{out}");
}
