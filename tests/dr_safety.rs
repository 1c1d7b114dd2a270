//! Issue 11, item 3, end to end on a three-node cluster: the seed's replication pair exists on a
//! fresh cluster; a lease's region is its holder's identity's; an automatic failover whose
//! standby lags past the link's RPO target is refused and logged, and only an operator's
//! break-glass goes past it; the fence revokes the failed region's leases and refuses it new
//! ones (gRPC, HTTP and SDK alike) until failback lifts it.

mod common;

use std::time::Duration;

use arbiter::tls::ClientCredentials;
use arbiter_client::proto::lease_service_client::LeaseServiceClient;
use arbiter_client::proto::refusal::Kind;
use arbiter_client::proto::replication::replication_coordinator_client::ReplicationCoordinatorClient;
use arbiter_client::proto::replication::{CheckpointRequest, SyncMetricsRequest};
use arbiter_client::proto::AcquireRequest;
use arbiter_client::{ArbiterClient, BearerToken, ClientOptions, LeaseSpec, Refusal};
use common::*;
use serde_json::{json, Value};
use tonic::Code;

const WAIT: Duration = Duration::from_secs(20);
const TTL_MS: u64 = 60_000;
const VANTAGES: [&str; 3] = ["london", "tokyo", "sydney"];

/// One HTTP request with `token` (the operator's when `None`); the status and JSON body.
async fn call(
    addr: &str,
    token: Option<&str>,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let client = match token {
        None => http(),
        Some(token) => ClientCredentials {
            token: Some(token.to_string()),
            ..certs().operator()
        }
        .http_client()
        .expect("credentials"),
    };
    let bytes = body.map(|b| serde_json::to_vec(&b).expect("encode"));
    let url = format!("{}{path}", client.base_url(addr));
    let response = client
        .request(method, &url, bytes.as_deref(), Duration::from_secs(5))
        .await
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    let value = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
    (response.status, value)
}

/// One probe round: every vantage point reports us-east-1 as `ok`.
async fn probe_east(api: &str, ok: bool) {
    for vantage in VANTAGES {
        let report = json!({"vantage": vantage, "region": "us-east-1", "ok": ok});
        let (status, body) = call(api, None, "POST", "/v1/probes/report", Some(report)).await;
        assert_eq!(status, 204, "{body}");
    }
}

/// us-east-1's failover events, newest first.
async fn east_events(api: &str) -> Vec<Value> {
    let (status, body) = call(
        api,
        None,
        "GET",
        "/v1/failover-events?failedRegion=us-east-1",
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body["events"].as_array().cloned().unwrap_or_default()
}

fn timeline(event: &Value) -> Vec<(String, String)> {
    event["timelineLogs"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            (
                t["step"].as_str().unwrap_or_default().to_string(),
                t["detail"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

async fn acquire_grpc(addr: &str, token: &str, resource: &str, holder: &str) -> Value {
    let mut api = LeaseServiceClient::new(grpc_channel_as(addr, token));
    let reply = api
        .acquire(AcquireRequest {
            resource: resource.into(),
            holder: holder.into(),
            ttl_ms: TTL_MS,
            ..Default::default()
        })
        .await
        .expect("acquire answered")
        .into_inner();
    match reply.refusal.and_then(|r| r.kind) {
        None => json!({"ok": reply.ok, "token": reply.token}),
        Some(Kind::RegionFenced(f)) => json!({"ok": reply.ok, "fenced": f.region}),
        Some(other) => json!({"ok": reply.ok, "refusal": format!("{other:?}")}),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_pair_answers_get_sync_metrics_on_a_fresh_cluster() {
    init_tracing();
    // No `[dr]` config at all, as `arbiter up` starts its nodes.
    let cluster = TestCluster::start(3, &[]).await;
    let leader = cluster.leader(WAIT).await;
    dr_bootstrapped(&leader.http_addr, WAIT).await;

    tracing::info!("us-east-1's replication agent reports, as the seed's contract has it");
    let agent = cluster
        .issue(arbiter::auth::issue::TokenGrant {
            identity: "agent-east".into(),
            role: arbiter::auth::Role::Region,
            region: Some("us-east-1".into()),
            vantage: None,
        })
        .await;
    let mut coordinator =
        ReplicationCoordinatorClient::new(grpc_channel_as(&leader.grpc_addr, &agent));
    let ack = coordinator
        .report_checkpoint(CheckpointRequest {
            source_region: "us-east-1".into(),
            last_committed_epoch: 41,
            payload_checksum: "sha-41".into(),
            timestamp_ms: 1_770_289_920_000,
        })
        .await
        .expect("checkpoint")
        .into_inner();
    assert!(ack.acknowledged);

    tracing::info!("GetSyncMetrics for the seed's pair answers (it said NOT_FOUND before)");
    let metrics = eventually("GetSyncMetrics us-east-1 -> us-west-2", WAIT, || {
        let mut coordinator = coordinator.clone();
        async move {
            let answer = coordinator
                .get_sync_metrics(SyncMetricsRequest {
                    source_region: "us-east-1".into(),
                    target_region: "us-west-2".into(),
                })
                .await;
            match answer {
                Ok(metrics) => Some(metrics.into_inner()),
                Err(status) if status.code() == Code::NotFound => None,
                Err(status) => panic!("GetSyncMetrics: {status:?}"),
            }
        }
    })
    .await;
    assert_eq!(metrics.replication_lag_ms, 0);
    let (_, links) = call(
        &leader.http_addr,
        None,
        "GET",
        "/v1/replication/links",
        None,
    )
    .await;
    assert_eq!(
        links["links"][0]["replicationMode"],
        json!("ASYNC"),
        "{links}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_standby_is_not_promoted_and_a_fenced_region_takes_no_lease_until_failback() {
    init_tracing();
    let files = tempfile::tempdir().expect("temp dir");
    let config = files.path().join("dr.toml");
    std::fs::write(
        &config,
        "[dr]\ntick_ms = 50\ncooldown_ms = 1000\ndrain_ms = 100\nprobe_window_ms = 3000\n\
         consecutive_failures = 1\n",
    )
    .expect("write config");
    let config = config.display().to_string();
    let cluster = TestCluster::start(3, &["--config", &config]).await;
    let leader = cluster.leader(WAIT).await;
    let (api, grpc) = (leader.http_addr.clone(), leader.grpc_addr.clone());
    dr_bootstrapped(&api, WAIT).await;
    let east = cluster.issue(proxy_in("proxy-east", "us-east-1")).await;
    let west = cluster.issue(proxy_in("proxy-west", "us-west-2")).await;

    tracing::info!("phase 1: a lease's region is its holder's identity's");
    let held = acquire_grpc(&grpc, &east, "db/orders", "proxy-east").await;
    assert_eq!(held["ok"], json!(true), "{held}");
    let east_token = held["token"].as_u64().expect("token");
    let (_, lease) = call(&api, None, "GET", "/v1/leases/db%2Forders", None).await;
    assert_eq!(
        lease["region"],
        json!("us-east-1"),
        "not named, taken from the identity"
    );
    let mut operator = LeaseServiceClient::new(grpc_channel(&grpc).expect("connect"));
    let denied = operator
        .acquire(AcquireRequest {
            resource: "db/ops".into(),
            holder: "proxy-west".into(),
            ttl_ms: TTL_MS,
            region: "us-west-2".into(),
            ..Default::default()
        })
        .await
        .expect_err("an operator has no region to give a lease");
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");

    tracing::info!("phase 2: the standby lags 6 s behind a 5 s target; us-east-1 goes dark");
    let heartbeat = json!({
        "sourceRegion": "us-east-1", "targetRegion": "us-west-2",
        "lastSentEpochId": 100, "lastReceivedEpochId": 70,
        "replicationLagMs": 6_000, "isLinkActive": true,
    });
    let (status, body) = call(
        &api,
        None,
        "POST",
        "/v1/replication/links/heartbeat",
        Some(heartbeat),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let refused = eventually("the automatic failover to be refused", WAIT, || {
        let api = api.clone();
        async move {
            probe_east(&api, false).await;
            east_events(&api).await.into_iter().next()
        }
    })
    .await;
    assert_eq!(
        (&refused["eventStatus"], &refused["failoverType"]),
        (&json!("FAILED"), &json!("AUTOMATED")),
        "{refused}"
    );
    let steps = timeline(&refused);
    let (last_step, why) = steps.last().expect("timeline");
    assert_eq!(last_step, "FAILED", "{refused}");
    for figure in ["6000 ms", "5000 ms", "30000 writes"] {
        assert!(why.contains(figure), "{figure} missing from {why:?}");
    }
    assert_eq!(refused["uncommittedDataLossEstimateWrites"], json!(30_000));
    // The outage goes on; the refusal is logged once, and nothing was fenced.
    for _ in 0..5 {
        probe_east(&api, false).await;
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    assert_eq!(east_events(&api).await.len(), 1, "one refusal per outage");
    let (_, lease) = call(&api, None, "GET", "/v1/leases/db%2Forders", None).await;
    assert_eq!(lease["state"], json!("HELD"), "{lease}");

    tracing::info!("phase 3: an operator's failover is refused too, unless it breaks glass");
    let failover = |break_glass: bool| {
        json!({"failedRegion": "us-east-1", "destinationRegion": "us-west-2",
               "reason": "us-east-1 dark", "breakGlass": break_glass})
    };
    let (status, body) = call(&api, None, "POST", "/v1/dr/failover", Some(failover(false))).await;
    assert_eq!(status, 409, "{body}");
    assert!(body.to_string().contains("promotion refused"), "{body}");
    let proxy_glass = call(
        &api,
        Some(&west),
        "POST",
        "/v1/dr/failover",
        Some(failover(true)),
    )
    .await;
    assert_eq!(
        proxy_glass.0, 403,
        "break-glass is the operator's: {proxy_glass:?}"
    );
    let (status, body) = call(&api, None, "POST", "/v1/dr/failover", Some(failover(true))).await;
    assert_eq!(status, 202, "{body}");
    let decided = &timeline(&body)[0].1;
    assert!(
        decided.contains("break-glass") && decided.contains("30000 writes"),
        "{decided}"
    );
    let done = eventually("the break-glass failover to complete", WAIT, || {
        let api = api.clone();
        async move {
            let newest = east_events(&api).await.into_iter().next()?;
            (newest["eventStatus"] == json!("COMPLETED")).then_some(newest)
        }
    })
    .await;
    assert_eq!(done["failoverType"], json!("MANUAL_OVERRIDE"), "{done}");

    tracing::info!("phase 4: the fence revoked us-east-1's lease and refuses it new ones");
    let (_, lease) = call(&api, None, "GET", "/v1/leases/db%2Forders", None).await;
    assert_eq!(lease["state"], json!("DRAINING"), "{lease}");
    assert!(
        lease["epoch"].as_u64().expect("epoch") > east_token,
        "{lease}"
    );
    let fenced = acquire_grpc(&grpc, &east, "db/new", "proxy-east").await;
    assert_eq!(fenced, json!({"ok": false, "fenced": "us-east-1"}), "gRPC");
    let (status, body) = call(
        &api,
        Some(&east),
        "POST",
        "/v1/leases/db%2Fnew/acquire",
        Some(json!({"holder": "proxy-east", "ttlMs": TTL_MS})),
    )
    .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(
        (
            &body["refusal"]["kind"],
            &body["refusal"]["region"],
            &body["retryable"]
        ),
        (&json!("RegionFenced"), &json!("us-east-1"), &json!(true)),
        "HTTP: {body}"
    );
    let sdk = ArbiterClient::connect(
        cluster.endpoints(),
        ClientOptions {
            token: Some(BearerToken::new(east.clone()).expect("token")),
            ..client_options()
        },
    )
    .await
    .expect("client");
    let spec = LeaseSpec::new("db/new", "proxy-east", Duration::from_millis(TTL_MS));
    match sdk.acquire(&spec).await.expect("cluster reachable") {
        Err(Refusal::RegionFenced { region, .. }) => assert_eq!(region.as_str(), "us-east-1"),
        other => panic!("SDK: expected RegionFenced, got {other:?}"),
    }
    let other_region = acquire_grpc(&grpc, &west, "db/west", "proxy-west").await;
    assert_eq!(other_region["ok"], json!(true), "{other_region}");

    tracing::info!("phase 5: us-east-1 recovers, cools down, fails back; the fence is lifted");
    eventually("us-east-1 to be healthy again", WAIT, || {
        let api = api.clone();
        async move {
            probe_east(&api, true).await;
            let (_, regions) = call(&api, None, "GET", "/v1/regions", None).await;
            let east = regions["regions"]
                .as_array()?
                .iter()
                .find(|r| r["region"] == json!("us-east-1"))?
                .clone();
            (east["state"] == json!("HEALTHY")).then_some(())
        }
    })
    .await;
    let fenced = acquire_grpc(&grpc, &east, "db/new", "proxy-east").await;
    assert_eq!(
        fenced["fenced"],
        json!("us-east-1"),
        "healthy is not failed back"
    );
    let (status, body) = call(
        &api,
        None,
        "POST",
        "/v1/dr/failback",
        Some(json!({"region": "us-east-1"})),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let granted = acquire_grpc(&grpc, &east, "db/new", "proxy-east").await;
    assert_eq!(granted["ok"], json!(true), "{granted}");
    // The revoked lease still waits for its old holder's deadline.
    let draining = acquire_grpc(&grpc, &east, "db/orders", "proxy-east").await;
    assert!(
        draining["refusal"]
            .as_str()
            .is_some_and(|r| r.starts_with("Draining")),
        "{draining}"
    );
}
