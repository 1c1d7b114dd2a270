//! Authentication and authorization against real nodes, over both edges (TLS), with bearer
//! tokens and certificates: every refusal names the status it expects and, for writes, shows the
//! replicated state did not move.

mod common;

use std::time::Duration;

use arbiter::auth::issue::TokenGrant;
use arbiter::auth::Role;
use arbiter::tls::ClientCredentials;
use arbiter_client::proto::cluster_service_client::ClusterServiceClient;
use arbiter_client::proto::lease_service_client::LeaseServiceClient;
use arbiter_client::proto::replication::replication_coordinator_client::ReplicationCoordinatorClient;
use arbiter_client::proto::replication::CheckpointRequest;
use arbiter_client::proto::{
    AcquireRequest, ChangeMembershipRequest, KeepAliveRequest, RevokeRequest, StatusRequest,
};
use arbiter_client::{AuthChannel, BearerToken, ClientOptions};
use common::*;
use serde_json::{json, Value};
use tonic::Code;

const WAIT: Duration = Duration::from_secs(20);
const TTL_MS: u64 = 30_000;

fn grant(identity: &str, role: Role) -> TokenGrant {
    TokenGrant {
        identity: identity.into(),
        role,
        region: None,
        vantage: None,
    }
}

fn in_region(identity: &str, role: Role, region: &str) -> TokenGrant {
    TokenGrant {
        region: Some(region.into()),
        ..grant(identity, role)
    }
}

/// A gRPC channel to `endpoint` over TLS sending `token` (none: no credentials at all).
async fn channel(endpoint: &str, token: Option<&str>) -> AuthChannel {
    let options = ClientOptions {
        token: token.map(|t| BearerToken::new(t).expect("valid token")),
        ..client_options()
    };
    arbiter_client::channel(endpoint, &options).expect("channel")
}

/// One HTTP request with `token` (or none); the status and JSON body.
async fn http(
    addr: &str,
    token: Option<&str>,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let credentials = ClientCredentials {
        token: token.map(str::to_string),
        token_file: None,
        ..certs().operator()
    };
    http_as(addr, &credentials, method, path, body).await
}

/// One HTTPS request with `credentials` (a token or a client certificate).
async fn http_as(
    addr: &str,
    credentials: &ClientCredentials,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let body = body.map(|b| serde_json::to_vec(&b).expect("json"));
    let client = credentials.http_client().expect("HTTPS client");
    let url = format!("{}{path}", client.base_url(addr));
    let response = client
        .request(method, &url, body.as_deref(), Duration::from_secs(5))
        .await
        .expect("HTTP exchange");
    let value = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
    (response.status, value)
}

/// Waits until the DR controller's bootstrap writes are applied on the leader: it registers the
/// configured regions and then sets the traffic weights, the last of them with the default
/// configuration.
async fn dr_bootstrapped(http_addr: &str, token: &str) {
    eventually(
        "the DR controller's bootstrap writes",
        WAIT,
        || async move {
            let (status, body) = http(http_addr, Some(token), "GET", "/v1/regions", None).await;
            let weighted = body["regions"]
                .as_array()
                .is_some_and(|r| r.iter().any(|r| !r["trafficWeightPercentage"].is_null()));
            (status == 200 && weighted).then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_without_known_credentials_are_unauthenticated_on_both_edges() {
    init_tracing();
    let cluster = TestCluster::start(3, &[]).await;
    let leader = cluster.leader(WAIT).await;

    tracing::info!("phase: HTTP without a token, with an unknown one, with a malformed header");
    let (status, body) = http(&leader.http_addr, None, "GET", "/v1/regions", None).await;
    assert_eq!(status, 401, "{body}");
    let (status, body) = http(
        &leader.http_addr,
        Some("arb_not_a_known_token"),
        "GET",
        "/v1/regions",
        None,
    )
    .await;
    assert_eq!(status, 401, "{body}");
    assert!(body["error"]
        .as_str()
        .unwrap_or_default()
        .contains("unknown bearer token"));

    tracing::info!("phase: gRPC without a token and with an unknown one");
    let mut anonymous = ClusterServiceClient::new(channel(&leader.grpc_addr, None).await);
    let refused = anonymous
        .get_status(StatusRequest {})
        .await
        .expect_err("refused");
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    let mut unknown = LeaseServiceClient::new(channel(&leader.grpc_addr, Some("arb_nope")).await);
    let refused = unknown
        .acquire(AcquireRequest {
            resource: "r".into(),
            holder: "h".into(),
            ttl_ms: TTL_MS,
            ..Default::default()
        })
        .await
        .expect_err("refused");
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");

    tracing::info!("phase: the health check stays public, and the operator token works");
    let (status, _) = http(&leader.http_addr, None, "GET", "/v1/health/check", None).await;
    assert_ne!(status, 401, "the health check needs no credentials");
    let (status, body) = http(
        &leader.http_addr,
        Some(operator_token().as_str()),
        "GET",
        "/v1/regions",
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_without_the_permission_is_forbidden_and_the_state_does_not_move() {
    init_tracing();
    let cluster = TestCluster::start(3, &[]).await;
    let leader = cluster.leader(WAIT).await;
    let reader = cluster.issue(grant("dashboard", Role::Reader)).await;
    let proxy = cluster
        .issue(in_region("proxy-east", Role::Proxy, "us-east-1"))
        .await;
    // The DR controller's bootstrap writes follow the election by a moment; they must be in
    // `before`, or they would count as writes the denied requests made.
    dr_bootstrapped(&leader.http_addr, &reader).await;
    let before = converged(&cluster, WAIT).await;

    tracing::info!("phase: a reader may read but not write, over HTTP");
    let (status, body) = http(&leader.http_addr, Some(&reader), "GET", "/v1/regions", None).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = http(
        &leader.http_addr,
        Some(&reader),
        "POST",
        "/v1/leases/db/acquire",
        Some(json!({"holder": "dashboard", "ttlMs": TTL_MS})),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = http(
        &leader.http_addr,
        Some(&reader),
        "POST",
        "/v1/dr/failover",
        Some(json!({"failedRegion": "us-east-1", "reason": "not mine to call"})),
    )
    .await;
    assert_eq!(status, 403, "{body}");

    tracing::info!("phase: over gRPC — membership, acquire, and a proxy's revoke");
    let mut cluster_api =
        ClusterServiceClient::new(channel(&leader.grpc_addr, Some(&reader)).await);
    let refused = cluster_api
        .change_membership(ChangeMembershipRequest {
            voters: vec![leader.node_id],
        })
        .await
        .expect_err("a reader cannot change membership");
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    let mut leases = LeaseServiceClient::new(channel(&leader.grpc_addr, Some(&reader)).await);
    let refused = leases
        .acquire(AcquireRequest {
            resource: "db".into(),
            holder: "dashboard".into(),
            ttl_ms: TTL_MS,
            ..Default::default()
        })
        .await
        .expect_err("a reader cannot acquire");
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    let mut as_proxy = LeaseServiceClient::new(channel(&leader.grpc_addr, Some(&proxy)).await);
    let refused = as_proxy
        .revoke(RevokeRequest {
            resource: "db".into(),
            reason: "a proxy may not revoke".into(),
            by: String::new(),
        })
        .await
        .expect_err("a proxy cannot revoke");
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");

    tracing::info!("phase: nothing was proposed — same applied index, same digest");
    let after = converged(&cluster, WAIT).await;
    assert_eq!(
        before, after,
        "denied requests changed the replicated state"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_cannot_acquire_keep_alive_or_release_another_holders_lease() {
    init_tracing();
    let cluster = TestCluster::start(3, &[]).await;
    let leader = cluster.leader(WAIT).await;
    let east = cluster
        .issue(in_region("proxy-east", Role::Proxy, "us-east-1"))
        .await;
    let west = cluster
        .issue(in_region("proxy-west", Role::Proxy, "us-west-2"))
        .await;
    dr_bootstrapped(&leader.http_addr, &east).await;

    tracing::info!("phase: proxy-east takes its own lease, in its own region");
    let mut east_api = LeaseServiceClient::new(channel(&leader.grpc_addr, Some(&east)).await);
    let granted = east_api
        .acquire(AcquireRequest {
            resource: "db/orders".into(),
            holder: "proxy-east".into(),
            ttl_ms: TTL_MS,
            region: "us-east-1".into(),
            ..Default::default()
        })
        .await
        .expect("own lease")
        .into_inner();
    assert!(granted.ok, "{granted:?}");
    let refused = east_api
        .acquire(AcquireRequest {
            resource: "db/other".into(),
            holder: "proxy-east".into(),
            ttl_ms: TTL_MS,
            region: "us-west-2".into(),
            ..Default::default()
        })
        .await
        .expect_err("not its region");
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    let before = converged(&cluster, WAIT).await;

    tracing::info!("phase: proxy-west tries to keep it alive, release it, and take it over");
    let mut west_api = LeaseServiceClient::new(channel(&leader.grpc_addr, Some(&west)).await);
    let keep_alive = KeepAliveRequest {
        resource: "db/orders".into(),
        holder: "proxy-east".into(),
        token: granted.token,
        request_id: 7,
    };
    let refused = west_api
        .keep_alive(keep_alive.clone())
        .await
        .expect_err("not its lease");
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    let mut stream = west_api
        .keep_alive_stream(futures::stream::iter(vec![keep_alive.clone()]))
        .await
        .expect("the stream opens")
        .into_inner();
    let refused = stream
        .message()
        .await
        .expect_err("a keep-alive for another holder ends the stream");
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    let (status, body) = http(
        &leader.http_addr,
        Some(&west),
        "POST",
        "/v1/leases/db%2Forders/release",
        Some(json!({"holder": "proxy-east", "token": granted.token})),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = http(
        &leader.http_addr,
        Some(&west),
        "POST",
        "/v1/leases/db%2Forders/acquire",
        Some(json!({"holder": "proxy-east", "ttlMs": TTL_MS,
                    "breakGlass": {"operator": "proxy-west", "reason": "grab"}})),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(before, converged(&cluster, WAIT).await, "state moved");

    tracing::info!("phase: the real holder still holds it and may renew it");
    let renewed = east_api
        .keep_alive(keep_alive)
        .await
        .expect("own keep-alive")
        .into_inner();
    assert!(renewed.ok, "{renewed:?}");
    let (status, lease) = http(
        &leader.http_addr,
        Some(&west),
        "GET",
        "/v1/leases/db%2Forders",
        None,
    )
    .await;
    assert_eq!(status, 200, "{lease}");
    assert_eq!(
        (&lease["holder"], &lease["token"]),
        (&json!("proxy-east"), &json!(granted.token))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_and_regions_speak_only_for_themselves() {
    init_tracing();
    let cluster = TestCluster::start(3, &[]).await;
    let leader = cluster.leader(WAIT).await;
    // The probe presents a client certificate, the region agent a bearer token: both kinds of
    // identity are bound the same way.
    let london = cluster
        .admit_certificate("probe-london", Role::Probe, None, Some("london"))
        .await;
    let east_agent = cluster
        .issue(in_region("agent-east", Role::Region, "us-east-1"))
        .await;

    tracing::info!("phase: the london probe's certificate reports as tokyo, then as itself");
    let report = |vantage: &str| {
        json!({"vantage": vantage, "region": "us-east-1", "ok": false,
               "dependencies": {"db": "DOWN"}})
    };
    let (status, body) = http_as(
        &leader.http_addr,
        &london,
        "POST",
        "/v1/probes/report",
        Some(report("tokyo")),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    // Regions are registered by the controller shortly after election; wait for the own-vantage
    // report to be taken rather than guessing when.
    eventually("the london probe's own report to be taken", WAIT, || {
        let (addr, london) = (leader.http_addr.clone(), london.clone());
        async move {
            let (status, _) = http_as(
                &addr,
                &london,
                "POST",
                "/v1/probes/report",
                Some(report("london")),
            )
            .await;
            (status == 204).then_some(())
        }
    })
    .await;

    tracing::info!("phase: the us-east-1 agent reports a us-west-2 checkpoint, then its own");
    let mut coordinator =
        ReplicationCoordinatorClient::new(channel(&leader.grpc_addr, Some(&east_agent)).await);
    let checkpoint = |region: &str| CheckpointRequest {
        source_region: region.into(),
        last_committed_epoch: 5,
        payload_checksum: "abc".into(),
        timestamp_ms: 1,
    };
    let refused = coordinator
        .report_checkpoint(checkpoint("us-west-2"))
        .await
        .expect_err("not its region");
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    coordinator
        .report_checkpoint(checkpoint("us-east-1"))
        .await
        .expect("its own checkpoint");
    let (status, body) = http(
        &leader.http_addr,
        Some(&east_agent),
        "POST",
        "/v1/replication/links/heartbeat",
        Some(
            json!({"sourceRegion": "us-west-2", "targetRegion": "us-east-1",
                    "lastSentEpochId": 1, "lastReceivedEpochId": 1,
                    "replicationLagMs": 0, "isLinkActive": true}),
        ),
    )
    .await;
    assert_eq!(status, 403, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_records_name_the_authenticated_caller_not_the_body() {
    init_tracing();
    let cluster = TestCluster::start(3, &[]).await;
    let leader = cluster.leader(WAIT).await;
    let alice = cluster.issue(grant("alice", Role::Operator)).await;
    let api = leader.http_addr.clone();

    tracing::info!("phase: a traffic shift is recorded as alice's");
    dr_bootstrapped(&api, &alice).await;
    let (status, task) = http(
        &api,
        Some(&alice),
        "POST",
        "/v1/dr/traffic-shift",
        Some(json!({"policyName": "audit", "sourceRegion": "us-west-2",
                    "targetRegion": "eu-central-1", "trafficShiftPercentage": 10.0,
                    "drainTimeoutSeconds": 1, "reason": "audit test"})),
    )
    .await;
    assert_eq!(status, 202, "{task}");
    let id = task["taskTrackId"]
        .as_str()
        .expect("taskTrackId")
        .to_string();
    let (status, task) = http(
        &api,
        Some(&alice),
        "GET",
        &format!("/v1/dr/tasks/{id}"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{task}");
    assert_eq!(task["initiatedBy"], json!("alice"), "{task}");

    tracing::info!("phase: a break-glass takeover whose body names mallory");
    // West's lease may be believed until at least TTL after this moment (its leader timer
    // starts when the grant applies, later than this).
    let west_asked = std::time::Instant::now();
    let (status, body) = http(
        &api,
        Some(&alice),
        "POST",
        "/v1/leases/db/acquire",
        Some(json!({"holder": "west", "ttlMs": TTL_MS})),
    )
    .await;
    assert_eq!((status, &body["ok"]), (200, &json!(true)), "{body}");
    let (status, body) = http(
        &api,
        Some(&alice),
        "POST",
        "/v1/leases/db/revoke",
        Some(json!({"reason": "west is gone", "by": "mallory"})),
    )
    .await;
    assert_eq!((status, &body["ok"]), (200, &json!(true)), "{body}");
    let (status, body) = http(
        &api,
        Some(&alice),
        "POST",
        "/v1/leases/db/acquire",
        Some(json!({"holder": "east", "ttlMs": TTL_MS,
                    "breakGlass": {"operator": "mallory", "reason": "drill"}})),
    )
    .await;
    assert_eq!(
        (status, &body["displacedHolder"]),
        (200, &json!("west")),
        "{body}"
    );
    // ... and the estimate was taken before this moment (1 ms for the timers' rounding).
    let west_may_hold_ms = TTL_MS.saturating_sub(west_asked.elapsed().as_millis() as u64 + 1);

    tracing::info!("phase: a manual failover whose body names mallory");
    let failover = eventually("a manual failover to be accepted", WAIT, || {
        let (api, alice) = (api.clone(), alice.clone());
        async move {
            let (status, body) = http(
                &api,
                Some(&alice),
                "POST",
                "/v1/dr/failover",
                Some(json!({"failedRegion": "us-east-1", "reason": "audit test",
                            "initiatedBy": "mallory"})),
            )
            .await;
            (status == 202).then_some(body)
        }
    })
    .await;
    assert_eq!(failover["initiatedBy"], json!("alice"), "{failover}");

    tracing::info!("phase: every record in the failover log names alice, none mallory");
    let (status, log) = http(&api, Some(&alice), "GET", "/v1/failover-events", None).await;
    assert_eq!(status, 200, "{log}");
    let events = log["events"].as_array().expect("events");
    assert!(
        events.len() >= 2,
        "break-glass and failover are both logged: {log}"
    );
    for event in events {
        assert_eq!(event["initiatedBy"], json!("alice"), "{event}");
    }

    // Rule 6: the override is logged with what the displaced holder may still write: its
    // remaining validity (at most the TTL) at the configured 5,000 writes/s of 1,000 bytes.
    let overrides: Vec<&Value> = events
        .iter()
        .filter(|event| {
            event["timelineLogs"].as_array().is_some_and(|steps| {
                steps.iter().any(|step| {
                    step["detail"]
                        .as_str()
                        .is_some_and(|d| d.contains("break-glass"))
                })
            })
        })
        .collect();
    assert_eq!(overrides.len(), 1, "one break-glass override: {log}");
    let event = overrides[0];
    assert_eq!(event["failoverType"], json!("MANUAL_OVERRIDE"), "{event}");
    let writes = event["uncommittedDataLossEstimateWrites"]
        .as_u64()
        .expect("a write estimate");
    assert!(
        west_may_hold_ms * 5_000 / 1_000 <= writes && writes <= TTL_MS * 5_000 / 1_000,
        "estimate of {writes} writes for a lease with between {west_may_hold_ms} and \
         {TTL_MS} ms left: {event}"
    );
    assert_eq!(
        event["uncommittedDataLossEstimateBytes"],
        json!(writes * 1_000),
        "{event}"
    );
}
