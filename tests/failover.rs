//! End-to-end DR: stand-in regional gateways, three probe agents (London, Tokyo, Sydney) and a
//! three-node arbiter on loopback. Stopping us-east-1's gateway must lead, through outage
//! consensus, to a fenced us-east-1, tenants and traffic on us-west-2, both drivers run, and a
//! failover event that reaches COMPLETED with each step in its timeline exactly once — even
//! when the Raft leader is killed in the middle. A region that flaps is failed over once and
//! trusted again only after a whole cooldown of health, through the real controller.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::drill::*;
use common::*;
use serde_json::json;

fn dr_config(driver_log: &Path, scale_delay_s: f64) -> String {
    let log = driver_log.display();
    let text = format!(
        r#"
[dr]
cooldown_ms = 4000
drain_ms = 300
tick_ms = 100
probe_window_ms = 3000
consecutive_failures = 2
[dr.traffic_driver]
kind = "exec"
command = ["/bin/sh", "-c", "echo \"$ARBITER_ACTION $ARBITER_FROM_REGION $ARBITER_TO_REGION\" >> {log}"]
[dr.compute_driver]
kind = "exec"
command = ["/bin/sh", "-c", "sleep {scale_delay_s}; echo \"$ARBITER_ACTION $ARBITER_TO_REGION\" >> {log}"]
"#
    );
    text
}

/// A drill with fast probes (100 ms) and exec drivers that log to the drill's driver log.
async fn start(scale_delay_s: f64) -> Drill {
    let config = move |log: &Path| dr_config(log, scale_delay_s);
    Drill::start(Some(&config), Duration::from_millis(100)).await
}

const ALL_STEPS: [&str; 6] = [
    "DECIDE",
    "FENCE",
    "SHIFT_TRAFFIC",
    "SCALE_STANDBY",
    "DRAINED",
    "COMPLETED",
];

#[tokio::test(flavor = "multi_thread")]
async fn regional_outage_is_fenced_shifted_scaled_and_completed() {
    let mut drill = start(0.0).await;
    seed_tenants(&drill).await;
    let endpoints = drill.cluster.endpoints();
    let token = {
        use arbiter_client::proto::lease_service_client::LeaseServiceClient;
        use arbiter_client::proto::AcquireRequest;
        let leader = drill.cluster.leader(Duration::from_secs(5)).await;
        // us-east-1's proxy: its lease is in us-east-1 because its identity is.
        let proxy = drill
            .cluster
            .issue(proxy_in("proxy-us-east-1", "us-east-1"))
            .await;
        let mut client = LeaseServiceClient::new(grpc_channel_as(&leader.grpc_addr, &proxy));
        let reply = client
            .acquire(AcquireRequest {
                resource: "db/orders".into(),
                holder: "proxy-us-east-1".into(),
                ttl_ms: 60_000,
                ..Default::default()
            })
            .await
            .expect("acquire")
            .into_inner();
        assert!(reply.ok);
        reply.token
    };
    // Probes have been flowing; no outage may have been declared while everything is up.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(
        drill.latest_event("us-east-1").await.is_none(),
        "false alarm"
    );

    tracing::info!("phase: us-east-1's gateway goes dark");
    drill.stop_gateway("us-east-1").await;
    let outage_at = Instant::now();
    wait_for_event(&drill, "us-east-1", Duration::from_secs(15)).await;
    let detected = outage_at.elapsed();
    let event = wait_completed(&drill, "us-east-1", Duration::from_secs(20)).await;
    let end_to_end = outage_at.elapsed();
    tracing::info!(?detected, ?end_to_end, "failover finished");
    println!("detection {detected:?}, outage -> COMPLETED {end_to_end:?}");

    assert_eq!(event["eventStatus"], "COMPLETED", "{event}");
    assert_eq!(event["failoverType"], "AUTOMATED");
    assert_eq!(event["destinationRegion"], "us-west-2");
    assert_eq!(steps(&event), ALL_STEPS, "{event}");

    let (_, a) = drill.call("GET", "/v1/tenants/tenant-a", None).await;
    assert_eq!(a["activeRoutingRegion"], "us-west-2", "{a}");
    assert_eq!(a["routingStatus"], "SHIFTED");
    let (_, c) = drill.call("GET", "/v1/tenants/tenant-c", None).await;
    assert_eq!(c["activeRoutingRegion"], "us-west-2", "{c}");
    assert_eq!(c["routingStatus"], "DEFAULT");

    let lines = drill.driver_lines();
    assert!(
        lines.contains(&"shift_traffic us-east-1 us-west-2".to_string()),
        "{lines:?}"
    );
    assert!(
        lines.contains(&"scale_standby us-west-2".to_string()),
        "{lines:?}"
    );

    let epoch = epoch_of(&endpoints, "db/orders").await.expect("epoch");
    assert!(
        epoch > token,
        "us-east-1's lease was fenced (epoch {epoch} > token {token})"
    );

    tracing::info!("phase: the leader's metrics show the steps it carried out and its drivers");
    let leader = drill.cluster.leader(Duration::from_secs(5)).await;
    let client = http();
    let url = format!("{}/metrics", client.base_url(&leader.http_addr));
    let metrics = client
        .request("GET", &url, None, Duration::from_secs(5))
        .await
        .expect("GET /metrics");
    let metrics = String::from_utf8_lossy(&metrics.body);
    for series in [
        "arbiter_failover_step_duration_seconds_count{step=\"fence\",result=\"recorded\"} 1",
        "arbiter_failover_step_duration_seconds_count{step=\"completed\",result=\"recorded\"} 1",
        "arbiter_driver_calls_total{driver=\"traffic\",result=\"ok\"}",
        "arbiter_driver_calls_total{driver=\"compute\",result=\"ok\"} 1",
    ] {
        assert!(metrics.contains(series), "{series} missing:\n{metrics}");
    }

    tracing::info!("phase: failback is refused while the region is down");
    let (status, body) = drill
        .call(
            "POST",
            "/v1/dr/failback",
            Some(json!({"region": "us-east-1"})),
        )
        .await;
    assert_eq!(status, 409, "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_leader_finishes_a_failover_each_step_once() {
    // A slow compute driver holds the failover in SCALE_STANDBY long enough to kill the leader.
    let mut drill = start(2.0).await;
    seed_tenants(&drill).await;
    drill.stop_gateway("us-east-1").await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(event) = drill.latest_event("us-east-1").await {
            if steps(&event).contains(&"SHIFT_TRAFFIC".to_string()) {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "failover never reached SHIFT_TRAFFIC"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let leader = drill.cluster.leader(Duration::from_secs(5)).await;
    // The kill must land mid-failover: traffic shifted and logged, the 2 s scale-up running.
    let before_kill = drill
        .latest_event("us-east-1")
        .await
        .expect("the failover is logged");
    assert_eq!(
        steps(&before_kill),
        ALL_STEPS[..3],
        "not mid-failover at the kill: {before_kill}"
    );
    let shifts_before_kill = drill
        .driver_lines()
        .iter()
        .filter(|l| l.starts_with("shift_traffic"))
        .count();
    assert_eq!(shifts_before_kill, 1, "{:?}", drill.driver_lines());
    tracing::info!(
        leader = leader.node_id,
        "phase: kill the leader mid-failover"
    );
    drill.cluster.kill(leader.node_id);

    let event = wait_completed(&drill, "us-east-1", Duration::from_secs(30)).await;
    assert_eq!(event["eventStatus"], "COMPLETED", "{event}");
    assert_eq!(steps(&event), ALL_STEPS, "each step exactly once: {event}");
    assert_eq!(
        event["failoverId"], before_kill["failoverId"],
        "the new leader finished the same failover rather than starting another"
    );
    // What the drivers did: the logged shift was not repeated by the new leader; the scale-up
    // whose outcome the old leader never logged was asked for again (the killed node's own
    // call may still finish too: drivers are idempotent, "scale to N").
    let lines = drill.driver_lines();
    let shifts: Vec<_> = lines
        .iter()
        .filter(|l| l.starts_with("shift_traffic"))
        .collect();
    assert_eq!(shifts, ["shift_traffic us-east-1 us-west-2"], "{lines:?}");
    let scales: Vec<_> = lines
        .iter()
        .filter(|l| l.starts_with("scale_standby"))
        .collect();
    assert!(
        !scales.is_empty() && scales.iter().all(|l| *l == "scale_standby us-west-2"),
        "the new leader scaled us-west-2: {lines:?}"
    );
    let (_, a) = drill.call("GET", "/v1/tenants/tenant-a", None).await;
    assert_eq!(a["activeRoutingRegion"], "us-west-2", "{a}");
}

/// Waits until the arbiter shows `region` in `state`, at most 20 s.
async fn await_state(drill: &Drill, region: &str, state: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while drill.region_state(region).await.as_deref() != Some(state) {
        assert!(
            Instant::now() < deadline,
            "{region} never {state}: {:?}",
            drill.region_state(region).await
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flapping_region_fails_over_once_and_is_trusted_only_after_a_whole_cooldown() {
    const COOLDOWN: Duration = Duration::from_millis(4_000); // dr_config's cooldown_ms
    let drill = start(0.0).await;
    seed_tenants(&drill).await;
    drill.set_gateway("us-east-1", false).await;
    wait_for_event(&drill, "us-east-1", Duration::from_secs(20)).await;
    let first = drill.latest_event("us-east-1").await.expect("failover");

    tracing::info!("phase: us-east-1 flaps, each healthy spell far shorter than the cooldown");
    for flap in 0..6 {
        drill.set_gateway("us-east-1", true).await;
        await_state(&drill, "us-east-1", "RECOVERING").await;
        let (status, body) = drill
            .call(
                "POST",
                "/v1/dr/failback",
                Some(json!({"region": "us-east-1"})),
            )
            .await;
        assert_eq!(status, 409, "failback during flap {flap}: {body}");
        drill.set_gateway("us-east-1", false).await;
        await_state(&drill, "us-east-1", "DOWN").await;
    }

    tracing::info!("phase: healthy for good; trusted again only once the cooldown has passed");
    drill.set_gateway("us-east-1", true).await;
    let healthy_from = Instant::now();
    await_state(&drill, "us-east-1", "RECOVERING").await;
    await_state(&drill, "us-east-1", "HEALTHY").await;
    assert!(
        healthy_from.elapsed() >= COOLDOWN,
        "trusted again after {:?}, inside the {COOLDOWN:?} cooldown",
        healthy_from.elapsed()
    );
    let (status, body) = drill
        .call("GET", "/v1/failover-events?failedRegion=us-east-1", None)
        .await;
    assert_eq!(status, 200, "{body}");
    let events = events_of(&body);
    assert_eq!(events.len(), 1, "one failover for all the flapping: {body}");
    assert_eq!(events[0]["failoverId"], first["failoverId"]);
    let (status, body) = drill
        .call(
            "POST",
            "/v1/dr/failback",
            Some(json!({"region": "us-east-1"})),
        )
        .await;
    assert!(
        (200..300).contains(&status),
        "failback once healthy: {status} {body}"
    );
}
