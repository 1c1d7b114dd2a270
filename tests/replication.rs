//! Replication links from outside the arbiter, end to end: a link declared over HTTP (or in the
//! `[dr]` config) and fed heartbeats is what `GetSyncMetrics` answers from, what the RPO
//! monitor judges, and what a failover's data-loss estimate is priced on.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use arbiter::dr::config::RawDrConfig;
use arbiter_client::proto::replication::replication_coordinator_client::ReplicationCoordinatorClient;
use arbiter_client::proto::replication::{CheckpointRequest, SyncMetricsRequest};
use common::*;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(20);
const LINKS: &str = "/v1/replication/links";
const HEARTBEAT: &str = "/v1/replication/links/heartbeat";
/// The seed's average asynchronous replication lag.
const SEED_ASYNC_LAG_MS: u64 = 800;
/// Beyond the seed's 5 s ASYNC RPO target.
const BREACHING_LAG_MS: u64 = 6_000;

/// One request; the answer's status and its body as JSON (`null` when empty).
async fn call(addr: &str, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let bytes = body.map(|b| serde_json::to_vec(&b).expect("encode"));
    let http = common::http();
    let url = format!("{}{path}", http.base_url(addr));
    let response = http
        .request(method, &url, bytes.as_deref(), Duration::from_secs(5))
        .await
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    if response.body.is_empty() {
        return (response.status, Value::Null);
    }
    let value = serde_json::from_slice(&response.body).unwrap_or_else(|e| {
        let text = String::from_utf8_lossy(&response.body);
        panic!("{method} {path} answered non-JSON {text:?}: {e}")
    });
    (response.status, value)
}

fn declaration(source: &str, target: &str, mode: Value) -> Value {
    json!({"sourceRegion": source, "targetRegion": target, "replicationMode": mode})
}

fn heartbeat(source: &str, target: &str, sent: i64, received: i64, lag_ms: u64) -> Value {
    json!({
        "sourceRegion": source, "targetRegion": target,
        "lastSentEpochId": sent, "lastReceivedEpochId": received,
        "replicationLagMs": lag_ms, "isLinkActive": true,
    })
}

/// A link write that must succeed; the link it answers with.
async fn write(api: &str, method: &str, path: &str, body: Value) -> Value {
    let (status, link) = call(api, method, path, Some(body)).await;
    assert_eq!(status, 200, "{method} {path}: {link}");
    link
}

async fn declare(api: &str, source: &str, target: &str, mode: &str) -> Value {
    write(api, "PUT", LINKS, declaration(source, target, json!(mode))).await
}

async fn report(
    api: &str,
    source: &str,
    target: &str,
    sent: i64,
    received: i64,
    lag: u64,
) -> Value {
    write(
        api,
        "POST",
        HEARTBEAT,
        heartbeat(source, target, sent, received, lag),
    )
    .await
}

/// The link `source → target` as `GET /v1/replication/links` lists it.
async fn listed(api: &str, source: &str, target: &str) -> Option<Value> {
    let (status, body) = call(api, "GET", LINKS, None).await;
    assert_eq!(status, 200, "{body}");
    body["links"]
        .as_array()?
        .iter()
        .find(|l| l["sourceRegion"] == json!(source) && l["targetRegion"] == json!(target))
        .cloned()
}

/// A three-node cluster whose DR controller has registered the regions (links may only join
/// regions the arbiter knows); returns it with its leader's HTTP and gRPC addresses.
async fn cluster(extra_args: &[&str]) -> (TestCluster, String, String) {
    init_tracing();
    let cluster = TestCluster::start(3, extra_args).await;
    let leader = cluster.leader(WAIT).await;
    let api = leader.http_addr.clone();
    eventually(
        "the DR controller to register the regions",
        WAIT,
        || async {
            let (_, body) = call(&api, "GET", "/v1/regions", None).await;
            (body["regions"].as_array()?.len() == REGIONS.len()).then_some(())
        },
    )
    .await;
    (cluster, leader.http_addr, leader.grpc_addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_lag_feeds_sync_metrics_rpo_monitor_and_failover_estimate() {
    let (cluster, api, grpc) = cluster(&[]).await;
    let (east, west, central) = ("us-east-1", "us-west-2", "eu-central-1");

    tracing::info!("phase 1: a link declared over HTTP answers as the list shows it");
    let declared = declare(&api, east, west, "ASYNC").await;
    assert_eq!(listed(&api, east, west).await, Some(declared.clone()));
    let link_keys: BTreeSet<&str> = declared
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        link_keys,
        BTreeSet::from([
            "sourceRegion",
            "targetRegion",
            "replicationMode",
            "lastSentEpochId",
            "lastReceivedEpochId",
            "replicationLagMs",
            "isLinkActive",
            "lastHeartbeatAt",
            "rpoTargetMs",
            "rpoViolated",
        ])
    );
    assert_eq!(declared["replicationLagMs"], json!(0));
    assert_eq!(declared["isLinkActive"], json!(true));

    tracing::info!("phase 2: bad input is a 4xx JSON error and never a state change");
    let (_, before) = converged(&cluster, WAIT).await;
    let mut negative_lag = heartbeat(east, west, 10, 5, 0);
    negative_lag["replicationLagMs"] = json!(-1);
    let mut lag_beyond_int = heartbeat(east, west, 10, 5, 0);
    lag_beyond_int["replicationLagMs"] = json!(1u64 << 31);
    let mut missing_active = heartbeat(east, west, 10, 5, 0);
    missing_active
        .as_object_mut()
        .expect("object")
        .remove("isLinkActive");
    let put = |body| ("PUT", LINKS, body);
    let post = |body| ("POST", HEARTBEAT, body);
    for (name, (method, path, body), expected) in [
        (
            "unknown source",
            put(declaration("mars-1", west, json!("ASYNC"))),
            422,
        ),
        (
            "unknown target",
            put(declaration(east, "mars-1", json!("ASYNC"))),
            422,
        ),
        (
            "same region",
            put(declaration(east, east, json!("SYNC"))),
            422,
        ),
        (
            "unknown mode",
            put(declaration(east, west, json!("SEMI"))),
            422,
        ),
        (
            "missing mode",
            put(json!({"sourceRegion": east, "targetRegion": west})),
            422,
        ),
        (
            "negative sent epoch",
            post(heartbeat(east, west, -1, 0, 0)),
            422,
        ),
        ("negative lag", post(negative_lag), 422),
        ("lag beyond the seed's INT", post(lag_beyond_int), 422),
        (
            "received ahead of sent",
            post(heartbeat(east, west, 5, 6, 0)),
            422,
        ),
        ("missing isLinkActive", post(missing_active), 422),
        ("same region", post(heartbeat(east, east, 5, 5, 0)), 422),
        ("undeclared link", post(heartbeat(west, east, 5, 5, 0)), 404),
    ] {
        let (status, answer) = call(&api, method, path, Some(body)).await;
        assert_eq!(status, expected, "{name}: {answer}");
        assert!(
            answer["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{name}: no error message in {answer}"
        );
    }
    let follower = cluster
        .running()
        .find(|n| n.ready.http_addr != api)
        .expect("a follower");
    for (method, path, body) in [
        ("PUT", LINKS, declaration(east, west, json!("SYNC"))),
        ("POST", HEARTBEAT, heartbeat(east, west, 10, 5, 0)),
    ] {
        let (status, redirect) = call(&follower.ready.http_addr, method, path, Some(body)).await;
        assert_eq!(status, 503, "{method} {path} at a follower: {redirect}");
        assert_eq!(redirect["leaderHttpAddr"], json!(api), "{redirect}");
    }
    let (_, after) = converged(&cluster, WAIT).await;
    assert_eq!(before, after, "bad input changed the replicated state");

    tracing::info!("phase 3: a heartbeat records the link's progress and lag");
    let (sent, received) = (120, 100);
    let link = report(&api, east, west, sent, received, SEED_ASYNC_LAG_MS).await;
    assert_eq!(link["lastSentEpochId"], json!(sent));
    assert_eq!(link["lastReceivedEpochId"], json!(received));
    assert_eq!(link["replicationLagMs"], json!(SEED_ASYNC_LAG_MS));
    assert_eq!(listed(&api, east, west).await, Some(link));

    tracing::info!("phase 4: the source's checkpoints and the link give GetSyncMetrics");
    let mut coordinator = ReplicationCoordinatorClient::new(grpc_channel(&grpc).expect("connect"));
    let epochs: Vec<i64> = (received - 2..=sent).step_by(4).collect();
    let first_report_ms = 1_770_289_920_000;
    for (i, epoch) in epochs.iter().enumerate() {
        let reply = coordinator
            .report_checkpoint(CheckpointRequest {
                source_region: east.into(),
                last_committed_epoch: *epoch,
                payload_checksum: format!("sha-{epoch}"),
                timestamp_ms: first_report_ms + 1_000 * i as i64,
            })
            .await
            .expect("checkpoint")
            .into_inner();
        assert_eq!(
            (reply.acknowledged, reply.receiver_applied_epoch),
            (true, *epoch)
        );
    }
    let metrics = coordinator
        .get_sync_metrics(SyncMetricsRequest {
            source_region: east.into(),
            target_region: west.into(),
        })
        .await
        .expect("sync metrics of a declared link")
        .into_inner();
    assert_eq!(metrics.replication_lag_ms, SEED_ASYNC_LAG_MS as i64);
    // The documented formula: pending = Σ transactions of the source's checkpoints above the
    // link's received epoch × bytes per write; throughput = transactions of the newest
    // checkpoints but the oldest × bytes ÷ their span. The seed's CheckpointRequest carries no
    // transaction count, so each checkpoint reported over gRPC is recorded with none, and both
    // figures are 0 however many epochs are pending. Epochs whose unit is known are the
    // remedy: see the WAL positions below.
    let transactions_per_grpc_checkpoint = 0;
    let write_bytes = RawDrConfig::default()
        .validate()
        .expect("defaults")
        .write_bytes;
    let pending_epochs = epochs.iter().filter(|e| **e > received).count() as u64;
    assert!(pending_epochs > 1, "the test must leave epochs pending");
    assert_eq!(
        metrics.pending_bytes_count as u64,
        pending_epochs * transactions_per_grpc_checkpoint * write_bytes
    );
    assert_eq!(metrics.throughput_bytes_per_sec, 0.0);
    // A db-agent reports WAL positions (signature `wal:<LSN>`): the epochs are bytes, so the
    // figures are real — pending = the source's position − the link's received position,
    // throughput = bytes of WAL over the newest checkpoints' span.
    let wal_positions = [sent + 80, sent + 180];
    for epoch in wal_positions {
        let reply = coordinator
            .report_checkpoint(CheckpointRequest {
                source_region: east.into(),
                last_committed_epoch: epoch,
                payload_checksum: format!("wal:0/{epoch:X}"),
                timestamp_ms: first_report_ms + 60_000,
            })
            .await
            .expect("checkpoint")
            .into_inner();
        assert!(reply.acknowledged);
    }
    let metrics = coordinator
        .get_sync_metrics(SyncMetricsRequest {
            source_region: east.into(),
            target_region: west.into(),
        })
        .await
        .expect("sync metrics of a declared link")
        .into_inner();
    assert_eq!(
        metrics.pending_bytes_count,
        wal_positions[1] - received,
        "{metrics:?}"
    );
    assert!(metrics.throughput_bytes_per_sec > 0.0, "{metrics:?}");

    tracing::info!("phase 5: the RPO monitor judges each link against its mode's target");
    let rpo = |link: &Value| (link["rpoTargetMs"].clone(), link["rpoViolated"].clone());
    let link = listed(&api, east, west).await.expect("listed");
    assert_eq!(rpo(&link), (json!(5_000), json!(false)), "{link}");
    let link = report(&api, east, west, sent, received, BREACHING_LAG_MS).await;
    assert_eq!(rpo(&link), (json!(5_000), json!(true)), "{link}");
    assert_eq!(listed(&api, east, west).await, Some(link));
    // SYNC tolerates no lag at all.
    let link = declare(&api, east, central, "SYNC").await;
    assert_eq!(rpo(&link), (json!(0), json!(false)), "{link}");
    let link = report(&api, east, central, 7, 6, 1).await;
    assert_eq!(rpo(&link), (json!(0), json!(true)), "{link}");
    // Changing a link's mode keeps its progress.
    let link = declare(&api, east, west, "SYNC").await;
    assert_eq!(link["replicationMode"], json!("SYNC"));
    assert_eq!(link["lastSentEpochId"], json!(sent));
    assert_eq!(link["replicationLagMs"], json!(BREACHING_LAG_MS));
    assert_eq!(rpo(&link), (json!(0), json!(true)), "{link}");
    declare(&api, east, west, "ASYNC").await;

    tracing::info!("phase 6: a failover now is estimated to lose lag × write rate");
    let link = report(&api, east, west, sent, received, SEED_ASYNC_LAG_MS).await;
    assert_eq!(rpo(&link), (json!(5_000), json!(false)), "{link}");
    let (status, accepted) = call(
        &api,
        "POST",
        "/v1/dr/failover",
        Some(json!({"failedRegion": east, "destinationRegion": west, "reason": "rpo drill"})),
    )
    .await;
    assert_eq!(status, 202, "{accepted}");
    let defaults = RawDrConfig::default().validate().expect("defaults");
    // Rounded up, as the estimate is documented: an estimate of loss should not understate it.
    let expected_writes = (SEED_ASYNC_LAG_MS * defaults.write_rate_per_sec).div_ceil(1_000);
    let expected_bytes = expected_writes * defaults.write_bytes;
    assert_eq!(
        (expected_writes, expected_bytes),
        (4_000, 4_000_000),
        "the defaults are the seed's capacity model: 800 ms × 5,000 writes/s × 1 KB"
    );
    let (status, events) = call(
        &api,
        "GET",
        &format!("/v1/failover-events?failedRegion={east}"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{events}");
    let event = &events["events"][0];
    assert_eq!(event["failoverId"], accepted["failoverId"], "{events}");
    assert_eq!(event["destinationRegion"], json!(west));
    assert_eq!(
        event["uncommittedDataLossEstimateWrites"],
        json!(expected_writes)
    );
    assert_eq!(
        event["uncommittedDataLossEstimateBytes"],
        json!(expected_bytes)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_declared_in_the_dr_config_exist_after_bootstrap() {
    let files = tempfile::tempdir().expect("temp dir");
    let config = files.path().join("dr.toml");
    std::fs::write(
        &config,
        r#"
[dr]
tick_ms = 50
[[dr.links]]
source = "us-east-1"
target = "us-west-2"
mode = "SYNC"
[[dr.links]]
source = "us-west-2"
target = "us-east-1"
"#,
    )
    .expect("write config");
    let config = config.display().to_string();
    let (_cluster, api, grpc) = cluster(&["--config", &config]).await;

    tracing::info!("the controller declares both links, with their modes, fresh");
    let links = eventually("the declared links to be bootstrapped", WAIT, || async {
        let east_west = listed(&api, "us-east-1", "us-west-2").await?;
        let west_east = listed(&api, "us-west-2", "us-east-1").await?;
        Some([east_west, west_east])
    })
    .await;
    for (link, mode) in links.iter().zip(["SYNC", "ASYNC"]) {
        assert_eq!(link["replicationMode"], json!(mode), "{link}");
        assert_eq!(link["replicationLagMs"], json!(0), "{link}");
        assert_eq!(link["isLinkActive"], json!(true), "{link}");
        assert_eq!(link["rpoViolated"], json!(false), "{link}");
    }
    let (status, all) = call(&api, "GET", LINKS, None).await;
    assert_eq!(
        (status, all["links"].as_array().map(Vec::len)),
        (200, Some(2))
    );

    tracing::info!("and the coordinator answers for them instead of NOT_FOUND");
    let mut coordinator = ReplicationCoordinatorClient::new(grpc_channel(&grpc).expect("connect"));
    let metrics = coordinator
        .get_sync_metrics(SyncMetricsRequest {
            source_region: "us-east-1".into(),
            target_region: "us-west-2".into(),
        })
        .await
        .expect("sync metrics of a bootstrapped link")
        .into_inner();
    assert_eq!(metrics.replication_lag_ms, 0);
}
