//! `arbiter plan` and `GET /v1/plan` against a live cluster: the seed's worked numbers from the
//! cluster's own link and settings, what-if overrides, the table, and the read role.

mod common;

use std::time::Duration;

use arbiter::auth::issue::TokenGrant;
use arbiter::auth::Role;
use common::*;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(30);
/// The DR tick of this test's cluster.
const TICK_MS: u64 = 100;

fn input<'a>(plan: &'a Value, name: &str) -> &'a Value {
    plan["inputs"]
        .as_array()
        .and_then(|inputs| inputs.iter().find(|i| i["name"] == name))
        .unwrap_or_else(|| panic!("no input {name}: {plan}"))
}

fn component(plan: &Value, name: &str) -> u64 {
    plan["predictedRto"]["components"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["component"] == name))
        .and_then(|c| c["ms"].as_u64())
        .unwrap_or_else(|| panic!("no RTO component {name}: {plan}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_reproduces_the_seed_from_the_live_link_and_answers_what_if() {
    init_tracing();
    let scratch = tempfile::tempdir().expect("temp dir");
    let config = scratch.path().join("dr.toml");
    std::fs::write(&config, format!("[dr]\ntick_ms = {TICK_MS}\n")).expect("write config");
    let cluster = TestCluster::start(3, &["--config", &config.display().to_string()]).await;
    let leader = cluster.leader(WAIT).await;
    let api = leader.http_addr.clone();
    dr_bootstrapped(&api, WAIT).await;
    let operator = operator_token();
    let http: Vec<String> = cluster
        .running()
        .map(|n| n.ready.http_addr.clone())
        .collect();
    let http = http.join(",");

    tracing::info!("phase: the seed's pair is declared by default; before any report its lag is 0");
    let (status, plan) = http_with_token(&api, Some(&operator), "GET", "/v1/plan", None).await;
    assert_eq!(status, 200, "{plan}");
    assert_eq!(plan["sourceRegion"], "us-east-1");
    assert_eq!(plan["targetRegion"], "us-west-2");
    let lag = input(&plan, "lagMs");
    assert_eq!(lag["value"], 0);
    assert!(
        lag["source"]
            .as_str()
            .unwrap_or("")
            .contains("link us-east-1 -> us-west-2"),
        "{lag}"
    );

    tracing::info!(
        "phase: the link reports the seed's 800 ms lag; the CLI gives the seed's numbers"
    );
    let (status, body) = http_with_token(
        &api,
        Some(&operator),
        "PUT",
        "/v1/replication/links",
        Some(json!({"sourceRegion": "us-east-1", "targetRegion": "us-west-2", "replicationMode": "ASYNC"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = http_with_token(
        &api,
        Some(&operator),
        "POST",
        "/v1/replication/links/heartbeat",
        Some(
            json!({"sourceRegion": "us-east-1", "targetRegion": "us-west-2",
                    "lastSentEpochId": 10, "lastReceivedEpochId": 9,
                    "replicationLagMs": 800, "isLinkActive": true}),
        ),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (code, out, err) = arbiter_cli(&["plan", "--endpoints", &http, "-o", "json"]).await;
    assert_eq!(code, 0, "{out}{err}");
    let plan: Value = serde_json::from_str(&out).expect("JSON plan");
    assert_eq!(input(&plan, "lagMs")["value"], 800);
    assert!(input(&plan, "lagMs")["source"]
        .as_str()
        .unwrap_or("")
        .starts_with("measured"));
    // No checkpoint carried transaction counts, so the configured rate (the seed's) is used,
    // and the plan says so.
    assert_eq!(input(&plan, "writesPerSec")["value"], 5_000);
    assert!(input(&plan, "writesPerSec")["source"]
        .as_str()
        .unwrap_or("")
        .contains("no throughput measured"));
    assert_eq!(input(&plan, "recordBytes")["value"], 1_000);
    assert_eq!(plan["replicationBandwidth"]["mbps"], 52.0);
    assert_eq!(plan["replicationBandwidth"]["bitsPerSec"], 52_000_000);
    assert_eq!(plan["inFlightAtFailure"]["transactions"], 4_000);
    assert_eq!(plan["dnsCachedClients"]["cachedUsers"], 6_065_306);

    tracing::info!("phase: the RTO components come from the cluster's settings");
    assert_eq!(input(&plan, "controllerTickMs")["value"], TICK_MS);
    assert_eq!(input(&plan, "consecutiveFailures")["value"], 3);
    assert_eq!(input(&plan, "leaseTtlMs")["value"], 60_000);
    let commit = input(&plan, "commitMs")["value"].as_u64().expect("commit");
    assert!(
        (1..5_000).contains(&commit),
        "a loopback quorum round: {commit}"
    );
    let detection = component(&plan, "detection");
    let fence = component(&plan, "fence");
    assert_eq!(detection, 3 * 1_000 + 800 + TICK_MS);
    assert_eq!(fence, TICK_MS + 3 * commit);
    let promotion = component(&plan, "promotion");
    // The 60 s lease outlives detection and fence: the wait is the rest of it.
    assert_eq!(promotion, 60_000 - detection - fence + commit + 1_000);
    let shift = component(&plan, "trafficShift");
    assert_eq!(shift, TICK_MS + commit);
    assert_eq!(
        plan["predictedRto"]["totalMs"],
        detection + fence + promotion.max(shift)
    );

    tracing::info!("phase: what-if flags override the live inputs");
    let (code, out, err) = arbiter_cli(&[
        "plan",
        "--endpoints",
        &http,
        "-o",
        "json",
        "--writes-per-sec",
        "10000",
        "--record-bytes",
        "2000",
        "--lag-ms",
        "250",
        "--users",
        "1000000",
        "--dns-ttl",
        "300",
        "--at",
        "300",
        "--commit-ms",
        "75",
        "--lease-ttl-ms",
        "10000",
        "--promote-ms",
        "500",
        "--probe-interval-ms",
        "2000",
    ])
    .await;
    assert_eq!(code, 0, "{out}{err}");
    let what_if: Value = serde_json::from_str(&out).expect("JSON plan");
    assert_eq!(input(&what_if, "writesPerSec")["source"], "given (what-if)");
    // 10,000 × 2,000 B × 8 × 1.3 = 208 Mbps; 10,000 × 0.25 s = 2,500; 10⁶ · e^(−1) = 367,879.
    assert_eq!(what_if["replicationBandwidth"]["mbps"], 208.0);
    assert_eq!(what_if["inFlightAtFailure"]["transactions"], 2_500);
    assert_eq!(what_if["dnsCachedClients"]["cachedUsers"], 367_879);
    assert_eq!(component(&what_if, "detection"), 3 * 2_000 + 800 + TICK_MS);
    assert_eq!(component(&what_if, "fence"), TICK_MS + 225);
    // 10 s lease − 6,900 ms detection − 325 ms fence = 2,775 ms left, + 75 + 500.
    assert_eq!(component(&what_if, "promotion"), 2_775 + 75 + 500);

    tracing::info!("phase: the table shows the seed's figures as the seed writes them");
    let (code, table, err) = arbiter_cli(&["plan", "--endpoints", &http]).await;
    assert_eq!(code, 0, "{table}{err}");
    tracing::info!("arbiter plan:\n{table}");
    for expected in [
        "52 Mbps",
        "4,000",
        "6,065,306",
        "detection",
        "trafficShift",
        "measured",
    ] {
        assert!(table.contains(expected), "missing {expected:?}:\n{table}");
    }

    tracing::info!("phase: a reader may plan; no credential may not; bad input is a 4xx");
    let reader = cluster
        .issue(TokenGrant {
            identity: "capacity-viewer".into(),
            role: Role::Reader,
            region: None,
            vantage: None,
        })
        .await;
    let (status, body) =
        http_with_token(&api, Some(&reader), "GET", "/v1/plan?lagMs=100", None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["inFlightAtFailure"]["transactions"], 500);
    let (status, _) = http_with_token(&api, None, "GET", "/v1/plan", None).await;
    assert_eq!(status, 401);
    for (path, expected) in [
        ("/v1/plan?lagMs=-1", 400),
        ("/v1/plan?noSuchInput=1", 400),
        ("/v1/plan?sourceRegion=mars-1", 422),
        (
            "/v1/plan?sourceRegion=us-east-1&targetRegion=us-east-1",
            422,
        ),
        ("/v1/plan?writesPerSec=1000000000000000", 422),
    ] {
        let (status, body) = http_with_token(&api, Some(&reader), "GET", path, None).await;
        assert_eq!(status, expected, "{path}: {body}");
        assert!(body["error"].is_string(), "{path}: {body}");
    }
}
