//! Contract tests for the DR APIs against real nodes: the seed's HTTP payloads field for field,
//! bad input answered 4xx JSON with the replicated state untouched, the seed's
//! `ReplicationCoordinator` over gRPC, the routing table over HTTP and its watch stream, and the
//! operator CLI following a follower's redirect to the leader.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use arbiter_client::proto::replication::replication_coordinator_client::ReplicationCoordinatorClient;
use arbiter_client::proto::replication::{CheckpointRequest, SyncMetricsRequest};
use arbiter_client::proto::routing_service_client::RoutingServiceClient;
use arbiter_client::proto::{
    GetTenantRequest, NodeStatus, RoutingSnapshot, TenantRoute, WatchRequest,
};
use common::*;
use serde_json::{json, Value};
use tonic::Code;

const WAIT: Duration = Duration::from_secs(20);
const US_EAST_EVENTS: &str = "/v1/failover-events?failedRegion=us-east-1";

/// The seed's health-check example, verbatim.
const SEED_HEALTH: &str = r#"{
"region": "us-east-1",
"status": "HEALTHY",
"epochSeconds": 1770289920,
"dependencies": {
"primaryDatabase": "CONNECTED",
"messageBroker": "OK",
"in-memoryCache": "OK"
},
"metrics": {
"activeConnections": 14205,
"p99LatencyMs": 42,
"cpuUtilization": 58.4
}
}"#;

/// The seed's traffic-shift request, verbatim.
const SEED_SHIFT_REQUEST: &str = r#"{
"policyName": "failover_us_east_primary",
"sourceRegion": "us-east-1",
"targetRegion": "us-west-2",
"trafficShiftPercentage": 100.0,
"drainTimeoutSeconds": 30,
"reason": "Outage detected: us-east-1 API Gateway packet loss greater than 80%"
}"#;

/// The seed's traffic-shift 202 response, verbatim.
const SEED_SHIFT_RESPONSE: &str = r#"{
"taskTrackId": "dr_shift_88192ab",
"status": "IN_PROGRESS",
"dnsPropagationStatus": "INITIATED",
"drainActiveCount": 14205,
"updatedAt": "2026-06-07T12:12:00Z"
}"#;

fn keys(value: &Value) -> BTreeSet<String> {
    value
        .as_object()
        .map(|map| map.keys().cloned().collect())
        .unwrap_or_default()
}

fn seed(text: &str) -> Value {
    serde_json::from_str(text).expect("seed JSON parses")
}

/// One request to one node; the body parsed as JSON (`null` when empty).
async fn http(addr: &str, method: &str, path: &str, body: Option<&[u8]>) -> (u16, Value) {
    let http = common::http();
    let url = format!("{}{path}", http.base_url(addr));
    let response = http
        .request(method, &url, body, Duration::from_secs(5))
        .await
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    let value = if response.body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&response.body).unwrap_or_else(|e| {
            panic!(
                "{method} {path} answered {} with non-JSON {:?}: {e}",
                response.status,
                String::from_utf8_lossy(&response.body)
            )
        })
    };
    (response.status, value)
}

async fn http_json(addr: &str, method: &str, path: &str, body: Value) -> (u16, Value) {
    let bytes = serde_json::to_vec(&body).expect("encode");
    http(addr, method, path, Some(&bytes)).await
}

/// Waits until the DR controller has registered the three regions and set the weights.
async fn wait_for_regions(leader_http: &str) {
    eventually(
        "the DR controller to register regions and weights",
        WAIT,
        || async {
            let (status, body) = http(leader_http, "GET", "/v1/regions", None).await;
            let regions = body["regions"].as_array()?;
            let ready = status == 200
                && regions.len() == REGIONS.len()
                && regions
                    .iter()
                    .all(|r| r["state"].is_string() && r["trafficWeightPercentage"].is_number());
            ready.then_some(())
        },
    )
    .await;
}

/// Three nodes with the default DR config, once the controller has registered the regions;
/// returns the cluster and its leader's status.
async fn dr_cluster() -> (TestCluster, NodeStatus) {
    init_tracing();
    let cluster = TestCluster::start(3, &[]).await;
    let leader = cluster.leader(WAIT).await;
    wait_for_regions(&leader.http_addr).await;
    (cluster, leader)
}

fn is_rfc3339_utc_seconds(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() == 20
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 => *c == b':',
            19 => *c == b'Z',
            _ => c.is_ascii_digit(),
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_http_contracts_hold_and_bad_input_changes_nothing() {
    let (cluster, leader) = dr_cluster().await;
    let api = leader.http_addr.clone();

    tracing::info!("phase 1: every node answers the seed's health check, key for key");
    let seed_health = seed(SEED_HEALTH);
    for node in cluster.running() {
        let (status, body) = http(&node.ready.http_addr, "GET", "/v1/health/check", None).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(keys(&body), keys(&seed_health), "{body}");
        assert_eq!(
            keys(&body["metrics"]),
            keys(&seed_health["metrics"]),
            "{body}"
        );
        let mut dependencies = keys(&seed_health["dependencies"]);
        dependencies.insert("raftQuorum".into());
        assert_eq!(keys(&body["dependencies"]), dependencies, "{body}");
        assert_eq!(body["region"], json!(node.ready.region));
        assert_eq!(body["status"], json!("HEALTHY"));
        assert_eq!(body["dependencies"]["raftQuorum"], json!("OK"));
        assert!(
            body["epochSeconds"]
                .as_u64()
                .is_some_and(|s| s > 1_700_000_000),
            "{body}"
        );
        assert!(body["metrics"]["activeConnections"]
            .as_u64()
            .is_some_and(|n| n >= 1));
        assert!(body["metrics"]["p99LatencyMs"].is_u64());
        assert!(body["metrics"]["cpuUtilization"].is_f64());
    }

    tracing::info!("phase 2: the seed's traffic-shift request gets the seed's 202");
    let (status, accepted) = http(
        &api,
        "POST",
        "/v1/dr/traffic-shift",
        Some(SEED_SHIFT_REQUEST.as_bytes()),
    )
    .await;
    assert_eq!(status, 202, "{accepted}");
    assert_eq!(
        keys(&accepted),
        keys(&seed(SEED_SHIFT_RESPONSE)),
        "{accepted}"
    );
    assert_eq!(accepted["status"], json!("IN_PROGRESS"));
    assert_eq!(accepted["dnsPropagationStatus"], json!("INITIATED"));
    assert!(accepted["drainActiveCount"].is_u64(), "{accepted}");
    let task_id = accepted["taskTrackId"]
        .as_str()
        .expect("taskTrackId")
        .to_string();
    assert!(task_id.starts_with("dr_shift_"), "{task_id}");
    let updated_at = accepted["updatedAt"].as_str().expect("updatedAt");
    assert!(is_rfc3339_utc_seconds(updated_at), "{updated_at}");

    tracing::info!("phase 3: the task is followed to COMPLETED by the traffic driver");
    let task = eventually("the traffic-shift task to finish", WAIT, || async {
        let (status, task) = http(&api, "GET", &format!("/v1/dr/tasks/{task_id}"), None).await;
        if status == 503 {
            return None; // an election under load: ask again
        }
        assert_eq!(status, 200, "{task}");
        (task["status"] != json!("IN_PROGRESS")).then_some(task)
    })
    .await;
    assert_eq!(task["status"], json!("COMPLETED"), "{task}");
    assert_eq!(task["taskTrackId"], json!(task_id));
    assert_eq!(task["policyName"], json!("failover_us_east_primary"));
    assert_eq!(task["trafficShiftPercentage"], json!(100.0));
    assert_eq!(task["targetWeightPercentage"], json!(100.0));
    for key in keys(&accepted) {
        assert!(task.get(&key).is_some(), "task lacks {key}: {task}");
    }
    let (status, body) = http(&api, "GET", "/v1/dr/tasks/dr_shift_ffffffff", None).await;
    assert_eq!(status, 404, "{body}");

    tracing::info!("phase 4: bad input is a 4xx JSON error and never a state change");
    let (_, before) = converged(&cluster, WAIT).await;
    let shift = |patch: Value| {
        let mut body = json!({
            "policyName": "p", "sourceRegion": "us-west-2", "targetRegion": "us-east-1",
            "trafficShiftPercentage": 50.0, "drainTimeoutSeconds": 30, "reason": "test",
        });
        for (key, value) in patch.as_object().expect("patch").clone() {
            if value.is_null() {
                body.as_object_mut().expect("object").remove(&key);
            } else {
                body[key] = value;
            }
        }
        serde_json::to_vec(&body).expect("encode")
    };
    let one_megabyte = serde_json::to_vec(&json!({
        "policyName": "p", "sourceRegion": "us-west-2", "targetRegion": "us-east-1",
        "trafficShiftPercentage": 50.0, "drainTimeoutSeconds": 30,
        "reason": "x".repeat(1 << 20),
    }))
    .expect("encode");
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        (
            "percentage 150",
            shift(json!({"trafficShiftPercentage": 150})),
            422,
        ),
        (
            "percentage -1",
            shift(json!({"trafficShiftPercentage": -1})),
            422,
        ),
        (
            "source = target",
            shift(json!({"targetRegion": "us-west-2"})),
            422,
        ),
        (
            "unknown source",
            shift(json!({"sourceRegion": "mars-1"})),
            422,
        ),
        (
            "unknown target",
            shift(json!({"targetRegion": "mars-1"})),
            422,
        ),
        ("empty policy", shift(json!({"policyName": ""})), 422),
        ("missing reason", shift(json!({"reason": null})), 422),
        (
            "wrong type",
            shift(json!({"trafficShiftPercentage": "50"})),
            422,
        ),
        (
            "negative drain",
            shift(json!({"drainTimeoutSeconds": -5})),
            422,
        ),
        (
            "unknown field",
            shift(json!({"trafficShiftPercent": 5})),
            422,
        ),
        ("malformed JSON", b"{\"policyName\": ".to_vec(), 400),
        ("not an object", b"[1, 2]".to_vec(), 422),
        ("empty body", Vec::new(), 400),
        ("1 MB body", one_megabyte, 413),
    ];
    for (name, body, expected) in cases {
        let (status, answer) = http(&api, "POST", "/v1/dr/traffic-shift", Some(&body)).await;
        assert_eq!(status, expected, "{name}: {answer}");
        assert!(
            answer["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{name}: no error message in {answer}"
        );
    }
    for (name, method, path, body, expected) in [
        (
            "tenant unknown region",
            "PUT",
            "/v1/tenants/t1",
            json!({"primaryRegion": "mars-1", "failoverRegion": "us-east-1"}),
            422,
        ),
        (
            "tenant same regions",
            "PUT",
            "/v1/tenants/t1",
            json!({"primaryRegion": "us-east-1", "failoverRegion": "us-east-1"}),
            422,
        ),
        (
            "tenant missing field",
            "PUT",
            "/v1/tenants/t1",
            json!({"primaryRegion": "us-east-1"}),
            422,
        ),
        (
            "failover unknown region",
            "POST",
            "/v1/dr/failover",
            json!({"failedRegion": "mars-1", "reason": "x"}),
            422,
        ),
        (
            "failover to itself",
            "POST",
            "/v1/dr/failover",
            json!({"failedRegion": "us-east-1", "destinationRegion": "us-east-1", "reason": "x"}),
            422,
        ),
        (
            "failover without reason",
            "POST",
            "/v1/dr/failover",
            json!({"failedRegion": "us-east-1"}),
            422,
        ),
        (
            "failback unknown region",
            "POST",
            "/v1/dr/failback",
            json!({"region": "mars-1"}),
            422,
        ),
        (
            "probe unknown region",
            "POST",
            "/v1/probes/report",
            json!({"vantage": "london", "region": "mars-1", "ok": true}),
            422,
        ),
    ] {
        let (status, answer) = http_json(&api, method, path, body).await;
        assert_eq!(status, expected, "{name}: {answer}");
        assert!(answer["error"].is_string(), "{name}: {answer}");
    }
    for (path, expected) in [
        ("/v1/tenants?status=SIDEWAYS", 400),
        ("/v1/tenants?activeRegion=mars-1", 422),
        ("/v1/failover-events?failedRegion=mars-1", 422),
        ("/v1/failover-events/not-an-id", 404),
        ("/v1/no-such-route", 404),
    ] {
        let (status, answer) = http(&api, "GET", path, None).await;
        assert_eq!(status, expected, "{path}: {answer}");
        assert!(answer["error"].is_string(), "{path}: {answer}");
    }
    let (_, after) = converged(&cluster, WAIT).await;
    assert_eq!(before, after, "bad input changed the replicated state");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replication_coordinator_keeps_epochs_forward_and_names_bad_input() {
    let (cluster, leader) = dr_cluster().await;
    let mut coordinator =
        ReplicationCoordinatorClient::new(grpc_channel(&leader.grpc_addr).expect("connect"));
    let report = |region: &str, epoch: i64, checksum: &str| CheckpointRequest {
        source_region: region.into(),
        last_committed_epoch: epoch,
        payload_checksum: checksum.into(),
        timestamp_ms: 1_770_289_920_000,
    };

    tracing::info!(
        "phase 1: a checkpoint is recorded, and its retry acknowledged without a change"
    );
    let first = coordinator
        .report_checkpoint(report("us-east-1", 10, "sha-10"))
        .await
        .expect("first report")
        .into_inner();
    assert!(first.acknowledged);
    assert_eq!(first.receiver_applied_epoch, 10);
    let (_, before_retry) = converged(&cluster, WAIT).await;
    let retry = coordinator
        .report_checkpoint(report("us-east-1", 10, "sha-10"))
        .await
        .expect("retry")
        .into_inner();
    assert_eq!(
        (retry.acknowledged, retry.receiver_applied_epoch),
        (true, 10)
    );
    let (_, after_retry) = converged(&cluster, WAIT).await;
    assert_eq!(
        before_retry, after_retry,
        "a retried checkpoint changed the state"
    );

    tracing::info!("phase 2: epochs only go forward; the same epoch with other data conflicts");
    let backwards = coordinator
        .report_checkpoint(report("us-east-1", 5, "sha-5"))
        .await
        .expect_err("an older epoch is refused");
    assert_eq!(backwards.code(), Code::FailedPrecondition, "{backwards:?}");
    let conflict = coordinator
        .report_checkpoint(report("us-east-1", 10, "sha-other"))
        .await
        .expect_err("a second checksum for an epoch is refused");
    assert_eq!(conflict.code(), Code::AlreadyExists, "{conflict:?}");
    let next = coordinator
        .report_checkpoint(report("us-east-1", 12, "sha-12"))
        .await
        .expect("next epoch")
        .into_inner();
    assert_eq!(next.receiver_applied_epoch, 12);

    tracing::info!("phase 3: bad input is INVALID_ARGUMENT, unknown things NOT_FOUND");
    let (_, before_bad) = converged(&cluster, WAIT).await;
    for (name, request, code) in [
        ("empty region", report("", 13, "sha"), Code::InvalidArgument),
        (
            "negative epoch",
            report("us-east-1", -1, "sha"),
            Code::InvalidArgument,
        ),
        (
            "empty checksum",
            report("us-east-1", 13, ""),
            Code::InvalidArgument,
        ),
        (
            "65-char checksum",
            report("us-east-1", 13, &"c".repeat(65)),
            Code::InvalidArgument,
        ),
        (
            "unknown region",
            report("mars-1", 13, "sha"),
            Code::NotFound,
        ),
    ] {
        let status = coordinator
            .report_checkpoint(request)
            .await
            .expect_err(name);
        assert_eq!(status.code(), code, "{name}: {status:?}");
    }
    for (name, source, target, code) in [
        // The seed's pair us-east-1 -> us-west-2 is declared on a default deployment.
        (
            "no link declared",
            "us-west-2",
            "eu-central-1",
            Code::NotFound,
        ),
        ("unknown region", "us-east-1", "mars-1", Code::NotFound),
        ("empty source", "", "us-west-2", Code::InvalidArgument),
        (
            "same region",
            "us-east-1",
            "us-east-1",
            Code::InvalidArgument,
        ),
    ] {
        let status = coordinator
            .get_sync_metrics(SyncMetricsRequest {
                source_region: source.into(),
                target_region: target.into(),
            })
            .await
            .expect_err(name);
        assert_eq!(status.code(), code, "{name}: {status:?}");
    }
    let (_, after_bad) = converged(&cluster, WAIT).await;
    assert_eq!(
        before_bad, after_bad,
        "bad input changed the replicated state"
    );

    tracing::info!("phase 4: a follower redirects instead of answering");
    let follower = cluster.follower(leader.node_id);
    let mut at_follower = ReplicationCoordinatorClient::new(
        grpc_channel(&follower.ready.grpc_addr).expect("connect follower"),
    );
    let redirected = at_follower
        .report_checkpoint(report("us-east-1", 14, "sha-14"))
        .await
        .expect_err("followers do not take checkpoints");
    assert_eq!(redirected.code(), Code::Unavailable, "{redirected:?}");
}

/// Runs `arbiter <args> --endpoints <endpoint>`; returns its stdout, asserting it succeeded.
async fn cli(args: &[&str], endpoint: &str) -> String {
    let output = tokio::process::Command::new(binary())
        .args(args)
        .args(["--endpoints", endpoint])
        .args(cli_credentials())
        .output()
        .await
        .expect("run the arbiter CLI");
    assert!(
        output.status.success(),
        "arbiter {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The next snapshot the watch delivers.
async fn next_snapshot(
    stream: &mut tonic::Streaming<RoutingSnapshot>,
    what: &str,
) -> RoutingSnapshot {
    tokio::time::timeout(WAIT, stream.message())
        .await
        .unwrap_or_else(|_| panic!("no routing snapshot within {WAIT:?}: {what}"))
        .expect("stream healthy")
        .expect("stream open")
}

/// Reads the watch until `tenant` shows up in `status`; returns that snapshot's row.
async fn await_tenant(
    stream: &mut tonic::Streaming<RoutingSnapshot>,
    tenant: &str,
    status: &str,
) -> (u64, TenantRoute) {
    loop {
        let snapshot = next_snapshot(stream, &format!("{tenant} {status}")).await;
        if let Some(row) = snapshot
            .tenants
            .iter()
            .find(|t| t.tenant_id == tenant && t.routing_status == status)
        {
            return (snapshot.applied_index, row.clone());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_table_reads_writes_watch_and_failover_log() {
    let (cluster, leader) = dr_cluster().await;
    let api = leader.http_addr.clone();
    let follower = cluster.follower(leader.node_id);

    tracing::info!("phase 1: an edge router's watch starts with the whole table");
    let mut routing = RoutingServiceClient::new(grpc_channel(&leader.grpc_addr).expect("connect"));
    let mut watch = routing
        .watch(WatchRequest {
            active_region: None,
        })
        .await
        .expect("watch")
        .into_inner();
    let first = next_snapshot(&mut watch, "on connect").await;
    assert_eq!(first.regions.len(), REGIONS.len(), "{first:?}");
    assert!(first
        .regions
        .iter()
        .all(|r| r.weight_bp.is_some() && !r.health_state.is_empty()));
    assert!(first.tenants.is_empty(), "{first:?}");

    tracing::info!("phase 2: an upsert is readable over HTTP and reaches the watcher");
    let (status, row) = http_json(
        &api,
        "PUT",
        "/v1/tenants/acme",
        json!({"primaryRegion": "us-east-1", "failoverRegion": "us-west-2"}),
    )
    .await;
    assert_eq!(status, 200, "{row}");
    let expected_keys: BTreeSet<String> = [
        "tenantId",
        "primaryRegion",
        "failoverRegion",
        "activeRoutingRegion",
        "routingStatus",
        "updatedAt",
        "version",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(keys(&row), expected_keys, "{row}");
    assert_eq!(row["activeRoutingRegion"], json!("us-east-1"));
    assert_eq!(row["routingStatus"], json!("DEFAULT"));
    let (applied, acme) = await_tenant(&mut watch, "acme", "DEFAULT").await;
    assert!(applied > first.applied_index);
    assert_eq!(acme.active_routing_region, "us-east-1");
    assert_eq!(acme.version, row["version"].as_u64().expect("version"));

    let (status, read) = http(&api, "GET", "/v1/tenants/acme", None).await;
    assert_eq!((status, &read), (200, &row));
    let (status, listed) = http(
        &api,
        "GET",
        "/v1/tenants?activeRegion=us-east-1&status=DEFAULT",
        None,
    )
    .await;
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed["tenants"], json!([row]));
    let (status, listed) = http(
        &api,
        "GET",
        "/v1/tenants?activeRegion=us-east-1&status=SHIFTED",
        None,
    )
    .await;
    assert_eq!((status, &listed["tenants"]), (200, &json!([])));
    let (status, missing) = http(&api, "GET", "/v1/tenants/nobody", None).await;
    assert_eq!(status, 404, "{missing}");
    let tenant = routing
        .get_tenant(GetTenantRequest {
            tenant_id: "acme".into(),
        })
        .await
        .expect("get tenant")
        .into_inner();
    assert_eq!(tenant.version, row["version"].as_u64().expect("version"));
    for (id, code) in [("nobody", Code::NotFound), ("", Code::InvalidArgument)] {
        let status = routing
            .get_tenant(GetTenantRequest {
                tenant_id: id.into(),
            })
            .await
            .expect_err("refused");
        assert_eq!(status.code(), code, "{id:?}: {status:?}");
    }

    tracing::info!("phase 3: followers redirect reads, and refuse watches, to the leader");
    let (status, redirect) = http(&follower.ready.http_addr, "GET", "/v1/regions", None).await;
    assert_eq!(status, 503, "{redirect}");
    assert_eq!(redirect["leaderHttpAddr"], json!(api), "{redirect}");
    let mut at_follower = RoutingServiceClient::new(
        grpc_channel(&follower.ready.grpc_addr).expect("connect follower"),
    );
    let refused = at_follower
        .watch(WatchRequest {
            active_region: None,
        })
        .await
        .expect_err("followers do not serve watches");
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");

    tracing::info!("phase 4: a manual failover is logged newest first and moves the tenant");
    let (status, events) = http(&api, "GET", US_EAST_EVENTS, None).await;
    assert_eq!((status, &events), (200, &json!({"events": []})));
    let (status, accepted) = http_json(
        &api,
        "POST",
        "/v1/dr/failover",
        json!({"failedRegion": "us-east-1", "reason": "contract test", "initiatedBy": "alice"}),
    )
    .await;
    assert_eq!(status, 202, "{accepted}");
    let failover_id = accepted["failoverId"]
        .as_str()
        .expect("failoverId")
        .to_string();
    let (status, events) = http(&api, "GET", US_EAST_EVENTS, None).await;
    assert_eq!(status, 200, "{events}");
    let event = &events["events"][0];
    let event_keys: BTreeSet<String> = [
        "failoverId",
        "initiatedBy",
        "failedRegion",
        "destinationRegion",
        "failoverType",
        "eventStatus",
        "uncommittedDataLossEstimateBytes",
        "uncommittedDataLossEstimateWrites",
        "timelineLogs",
        "createdAt",
        "completedAt",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(keys(event), event_keys, "{event}");
    assert_eq!(event["failoverId"], json!(failover_id));
    // The body claimed "alice"; the log names the authenticated caller (the harness operator).
    assert_eq!(
        event["initiatedBy"],
        json!(arbiter::auth::issue::LOCAL_OPERATOR)
    );
    assert_eq!(event["failoverType"], json!("MANUAL_OVERRIDE"));
    assert_eq!(event["destinationRegion"], json!("us-west-2"));
    assert_eq!(event["timelineLogs"][0]["step"], json!("DECIDE"));
    let (status, by_id) = http(
        &api,
        "GET",
        &format!("/v1/failover-events/{failover_id}"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{by_id}");
    assert_eq!(by_id["failoverId"], json!(failover_id));

    let (_, shifted) = await_tenant(&mut watch, "acme", "SHIFTED").await;
    assert_eq!(shifted.active_routing_region, "us-west-2");

    tracing::info!("phase 5: failback inside the cooldown is refused with a typed reason");
    let (status, refused) = http_json(
        &api,
        "POST",
        "/v1/dr/failback",
        json!({"region": "us-east-1"}),
    )
    .await;
    assert_eq!(status, 409, "{refused}");
    assert!(refused["error"].is_string(), "{refused}");
    assert_eq!(refused["reason"], json!("RegionNotRecovered"), "{refused}");
    assert!(refused["detail"].is_object(), "{refused}");

    tracing::info!("phase 6: the CLI, pointed at a follower, follows the redirect");
    let printed = cli(
        &["events", "--region", "us-east-1", "--json"],
        &follower.ready.http_addr,
    )
    .await;
    let printed: Value = serde_json::from_str(&printed).expect("CLI prints JSON");
    assert_eq!(printed["events"][0]["failoverId"], json!(failover_id));
    let table = cli(
        &["tenants", "--active-region", "us-west-2"],
        &follower.ready.http_addr,
    )
    .await;
    assert!(
        table.contains("acme") && table.contains("SHIFTED"),
        "{table}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_active_region_set_and_compare_and_set() {
    let (_cluster, leader) = dr_cluster().await;
    let addr = leader.http_addr.as_str();
    let (status, _) = http_json(
        addr,
        "PUT",
        "/v1/tenants/acme",
        json!({"primaryRegion": "us-east-1", "failoverRegion": "us-west-2"}),
    )
    .await;
    assert_eq!(status, 200);

    tracing::info!("phase: an unconditional set, then a CAS that matches and one that does not");
    let (status, row) = http_json(
        addr,
        "POST",
        "/v1/tenants/acme/active",
        json!({"region": "eu-central-1"}),
    )
    .await;
    assert_eq!(
        (status, row["activeRoutingRegion"].as_str()),
        (200, Some("eu-central-1")),
        "{row}"
    );
    assert_eq!(row["routingStatus"], "SHIFTED");
    let cas = json!({"region": "us-east-1", "expectedRegion": "eu-central-1"});
    let (status, row) = http_json(addr, "POST", "/v1/tenants/acme/active", cas.clone()).await;
    assert_eq!(
        (status, row["routingStatus"].as_str()),
        (200, Some("DEFAULT")),
        "{row}"
    );
    let digest = status_digest(&leader.grpc_addr).await;
    let (status, body) = http_json(addr, "POST", "/v1/tenants/acme/active", cas).await;
    assert_eq!(status, 409, "a stale compare-and-set is refused: {body}");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("compare-and-set")),
        "{body}"
    );
    assert_eq!(
        status_digest(&leader.grpc_addr).await,
        digest,
        "and changes nothing"
    );

    let (status, _) = http_json(
        addr,
        "POST",
        "/v1/tenants/nobody/active",
        json!({"region": "us-east-1"}),
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = http_json(
        addr,
        "POST",
        "/v1/tenants/acme/active",
        json!({"region": "mars-1"}),
    )
    .await;
    assert_eq!(status, 422);
}

async fn status_digest(grpc_addr: &str) -> u64 {
    status(grpc_addr).await.expect("status").state_digest
}
