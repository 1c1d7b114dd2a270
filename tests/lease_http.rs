//! The operators' HTTP mirror of the lease service (`/v1/leases`) against three real nodes:
//! the hand-over story a new user would try, a revoke that fences the old holder at once, a
//! break-glass override, bad input answered 4xx JSON with the replicated state untouched, and
//! a follower redirecting to the leader.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(20);
/// `db/orders`, as one path segment.
const ORDERS: &str = "/v1/leases/db%2Forders";
/// Long enough that no lease below lapses between two steps of the story on a loaded machine.
const TTL_MS: u64 = 5_000;

/// One request to one node; the answer's status and JSON body.
async fn send(addr: &str, method: &str, path: &str, body: &[u8]) -> (u16, Value) {
    let http = common::http();
    let url = format!("{}{path}", http.base_url(addr));
    let response = http
        .request(method, &url, Some(body), Duration::from_secs(5))
        .await
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    let value = serde_json::from_slice(&response.body).unwrap_or_else(|e| {
        panic!(
            "{method} {path} answered {} with non-JSON {:?}: {e}",
            response.status,
            String::from_utf8_lossy(&response.body)
        )
    });
    (response.status, value)
}

async fn post(addr: &str, path: &str, body: Value) -> (u16, Value) {
    send(addr, "POST", path, body.to_string().as_bytes()).await
}

async fn get(addr: &str, path: &str) -> (u16, Value) {
    send(addr, "GET", path, b"").await
}

/// A command that must succeed: `200 {"ok": true, ..}`.
async fn done(addr: &str, path: &str, body: Value) -> Value {
    let (status, answer) = post(addr, path, body.clone()).await;
    assert_eq!(
        (status, &answer["ok"]),
        (200, &json!(true)),
        "POST {path} {body} answered {answer}"
    );
    answer
}

/// A command the lease table must refuse: `409 {"ok": false, "error", "retryable",
/// "refusal"}`. Returns the whole answer.
async fn refused(addr: &str, path: &str, body: Value) -> Value {
    let (status, answer) = post(addr, path, body.clone()).await;
    assert_eq!(
        (status, &answer["ok"]),
        (409, &json!(false)),
        "POST {path} {body} answered {answer}"
    );
    assert!(
        answer["error"].is_string() && answer["retryable"].is_boolean(),
        "{answer}"
    );
    answer
}

fn token(answer: &Value) -> u64 {
    answer["token"]
        .as_u64()
        .unwrap_or_else(|| panic!("a token in {answer}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_hand_a_lease_over_revoke_it_and_bad_input_changes_nothing() {
    init_tracing();
    let cluster = TestCluster::start(3, &[]).await;
    let leader = cluster.leader(WAIT).await;
    let api = leader.http_addr.as_str();
    // Its writes would otherwise land between phase 5's digests.
    dr_bootstrapped(api, WAIT).await;
    let acquire = format!("{ORDERS}/acquire");
    let keepalive = format!("{ORDERS}/keepalive");
    let release = format!("{ORDERS}/release");
    let revoke = format!("{ORDERS}/revoke");
    let validate = |token: u64| format!("{ORDERS}/validate?token={token}");

    tracing::info!("phase 1: proxy-east acquires; proxy-west is refused, naming the holder");
    let east = json!({"holder": "proxy-east", "ttlMs": TTL_MS});
    let east_token = token(&done(api, &acquire, east).await);
    let (status, lease) = get(api, ORDERS).await;
    assert_eq!(status, 200, "{lease}");
    assert_eq!(
        (&lease["resource"], &lease["state"], &lease["holder"]),
        (&json!("db/orders"), &json!("HELD"), &json!("proxy-east")),
        "{lease}"
    );
    // The operator asked for it: a lease's region is its holder identity's, and an operator
    // has none.
    assert_eq!(
        (&lease["token"], &lease["epoch"], &lease["region"]),
        (&json!(east_token), &json!(east_token), &Value::Null),
        "{lease}"
    );
    let west = json!({"holder": "proxy-west", "ttlMs": TTL_MS});
    let answer = refused(api, &acquire, west.clone()).await;
    let refusal = &answer["refusal"];
    assert_eq!(
        (&refusal["kind"], &refusal["holder"], &refusal["token"]),
        (&json!("HeldBy"), &json!("proxy-east"), &json!(east_token)),
        "{answer}"
    );
    assert!(
        refusal["mayHoldForMs"]
            .as_u64()
            .is_some_and(|ms| 0 < ms && ms <= TTL_MS),
        "{answer}"
    );
    assert_eq!(answer["retryable"], json!(true), "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .is_some_and(|e| e.contains("proxy-east")),
        "{answer}"
    );

    tracing::info!("phase 2: the holder renews, releases, and proxy-west gets a higher token");
    let east_lease = json!({"holder": "proxy-east", "token": east_token});
    let renewed = done(api, &keepalive, east_lease.clone()).await;
    assert_eq!(
        renewed,
        json!({"ok": true, "token": east_token, "ttlMs": TTL_MS})
    );
    assert_eq!(done(api, &release, east_lease).await, json!({"ok": true}));
    let (_, lease) = get(api, ORDERS).await;
    assert_eq!(
        (&lease["state"], &lease["holder"]),
        (&json!("FREE"), &Value::Null),
        "{lease}"
    );
    let west_token = token(&done(api, &acquire, west).await);
    assert!(west_token > east_token, "{west_token} > {east_token}");
    let (status, validity) = get(api, &validate(west_token)).await;
    assert_eq!(
        (status, validity),
        (200, json!({"valid": true, "currentEpoch": west_token}))
    );
    let (_, validity) = get(api, &validate(east_token)).await;
    assert_eq!(validity["valid"], json!(false), "released: {validity}");

    tracing::info!("phase 3: an operator revokes; the old holder is fenced at once");
    let revoked = done(api, &revoke, json!({"reason": "drill", "by": "alice"})).await;
    let epoch = revoked["epoch"].as_u64().expect("an epoch");
    assert!(epoch > west_token, "{revoked}");
    assert_eq!(
        (&revoked["displacedHolder"], &revoked["displacedToken"]),
        (&json!("proxy-west"), &json!(west_token)),
        "{revoked}"
    );
    let west_lease = json!({"holder": "proxy-west", "token": west_token});
    let answer = refused(api, &keepalive, west_lease).await;
    assert!(
        ["StaleToken", "Draining"].contains(&answer["refusal"]["kind"].as_str().unwrap_or("")),
        "{answer}"
    );
    let (_, validity) = get(api, &validate(west_token)).await;
    assert_eq!(validity, json!({"valid": false, "currentEpoch": epoch}));

    tracing::info!("phase 4: a newcomer waits for the drain, unless an operator breaks glass");
    let answer = refused(api, &acquire, json!({"holder": "eu", "ttlMs": TTL_MS})).await;
    assert_eq!(
        (&answer["refusal"]["kind"], &answer["refusal"]["holder"]),
        (&json!("Draining"), &json!("proxy-west")),
        "{answer}"
    );
    let break_glass = json!({"holder": "eu", "ttlMs": TTL_MS,
                             "breakGlass": {"operator": "alice", "reason": "west is gone"}});
    let eu = done(api, &acquire, break_glass).await;
    let eu_token = token(&eu);
    assert!(eu_token > epoch, "{eu}");
    assert_eq!(
        (&eu["displacedHolder"], &eu["displacedToken"]),
        (&json!("proxy-west"), &json!(west_token)),
        "{eu}"
    );
    // No live lease is left to expire under the next phase's digest comparison.
    let eu_lease = json!({"holder": "eu", "token": eu_token});
    done(api, &release, eu_lease.clone()).await;

    tracing::info!("phase 5: bad input is a 4xx JSON error and changes nothing");
    let (_, digest) = converged(&cluster, WAIT).await;
    let long = "x".repeat(257);
    let long_resource = format!("/v1/leases/{long}");
    let long_acquire = format!("{long_resource}/acquire");
    let ok = json!({"holder": "h", "ttlMs": TTL_MS});
    let bad_bodies: Vec<(&str, Value, u16)> = vec![
        (&acquire, json!({"holder": "", "ttlMs": TTL_MS}), 422),
        (&acquire, json!({"holder": " ", "ttlMs": TTL_MS}), 422),
        (&acquire, json!({"holder": long, "ttlMs": TTL_MS}), 422),
        (&acquire, json!({"holder": "h", "ttlMs": 1}), 422),
        (&acquire, json!({"holder": "h", "ttlMs": 10_000_000}), 422),
        (&acquire, json!({"holder": "h", "ttlMs": -5}), 422),
        (&acquire, json!({"holder": "h", "ttlMs": "5000"}), 422),
        (&acquire, json!({"holder": "h"}), 422),
        (
            &acquire,
            json!({"holder": "h", "ttlMs": TTL_MS, "colour": "red"}),
            422,
        ),
        (
            &acquire,
            json!({"holder": "h", "ttlMs": TTL_MS, "region": ""}),
            422,
        ),
        (
            &acquire,
            json!({"holder": "h", "ttlMs": TTL_MS, "breakGlass": {"operator": "o"}}),
            422,
        ),
        (
            &acquire,
            json!({"holder": "h", "ttlMs": TTL_MS, "breakGlass": {"operator": "", "reason": "r"}}),
            422,
        ),
        (
            &acquire,
            json!({"holder": "h", "ttlMs": TTL_MS, "breakGlass": {"operator": "o", "reason": " "}}),
            422,
        ),
        (&keepalive, json!({"holder": "h", "token": "abc"}), 422),
        (&keepalive, json!({"holder": "", "token": 1}), 422),
        (&release, json!({"holder": "h"}), 422),
        (&revoke, json!({}), 422),
        (&revoke, json!({"reason": ""}), 422),
        (&revoke, json!({"reason": "r", "by": " "}), 422),
        (&long_acquire, ok.clone(), 422),
        ("/v1/leases/%20/acquire", ok, 422),
    ];
    for (path, body, expected) in bad_bodies {
        let (status, answer) = post(api, path, body.clone()).await;
        assert_eq!(
            (status, answer["error"].is_string()),
            (expected, true),
            "POST {path} {body} answered {answer}"
        );
    }
    let bad_validates = [
        format!("{ORDERS}/validate?token=abc"),
        format!("{ORDERS}/validate"),
    ];
    for (method, path, raw, expected) in [
        ("POST", acquire.as_str(), &b"{\"holder\":"[..], 400),
        ("POST", acquire.as_str(), &b""[..], 400),
        ("GET", bad_validates[0].as_str(), &b""[..], 400),
        ("GET", bad_validates[1].as_str(), &b""[..], 400),
        ("GET", long_resource.as_str(), &b""[..], 422),
    ] {
        let (status, answer) = send(api, method, path, raw).await;
        assert_eq!(
            (status, answer["error"].is_string()),
            (expected, true),
            "{method} {path} answered {answer}"
        );
    }
    // Refusals of well-formed commands are answers too, and change nothing either.
    let answer = refused(api, &keepalive, eu_lease).await;
    assert_eq!(answer["refusal"], json!({"kind": "NotHeld"}), "{answer}");
    let answer = refused(api, &revoke, json!({"reason": "again"})).await;
    assert_eq!(answer["refusal"], json!({"kind": "NotHeld"}), "{answer}");
    let (_, after) = converged(&cluster, WAIT).await;
    assert_eq!(after, digest, "the replicated state is unchanged");

    tracing::info!("phase 6: a follower redirects to the leader rather than answering stale");
    let follower = cluster.follower(leader.node_id).ready.http_addr.as_str();
    for (status, redirect) in [
        get(follower, ORDERS).await,
        post(follower, &acquire, json!({"holder": "h", "ttlMs": TTL_MS})).await,
        post(follower, &keepalive, json!({"holder": "h", "token": 1})).await,
        get(follower, &validate(1)).await,
    ] {
        assert_eq!(status, 503, "{redirect}");
        assert_eq!(redirect["leaderHttpAddr"], json!(api), "{redirect}");
    }
}
