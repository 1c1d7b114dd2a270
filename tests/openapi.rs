//! The OpenAPI document as a live node serves it. `GET /v1/openapi.json` answers without
//! credentials; the document is OpenAPI 3.x and passes openapi-spec-validator; it names every
//! route the server routes (the permission table's list, which the library's tests hold to the
//! router) and the server routes every operation it names (called without credentials, each
//! gets the auth layer's 401 or, when the document says it is public, a real answer — never
//! the router's "no route" 404 or its 405); and real answers (successes, refusals, a 401, a
//! follower's 503) match the schemas the document gives them. Each check has a negative control
//! on a doctored copy of the document or a doctored answer.

mod common;

use std::collections::BTreeSet;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use arbiter::auth::permissions::http_routes;
use arbiter::http_client::HttpClient;
use arbiter::tls::ClientCredentials;
use common::*;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(20);

/// (method as the permission table spells it, route template).
type Route = (String, String);

/// An HTTPS client with no credentials at all (no token, no client certificate).
fn anonymous() -> HttpClient {
    ClientCredentials {
        identity: None,
        token: None,
        token_file: None,
        ..certs().operator()
    }
    .http_client()
    .expect("HTTPS client")
}

/// One request; the status and the body as JSON (`null` when it is not JSON).
async fn call(
    client: &HttpClient,
    addr: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let url = format!("{}{path}", client.base_url(addr));
    let body = body.map(|b| b.to_string());
    let response = client
        .request(method, &url, body.as_deref().map(str::as_bytes), WAIT)
        .await
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    let json = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
    (response.status, json)
}

/// Every (method, path) under the document's `paths`.
fn operations(document: &Value) -> BTreeSet<Route> {
    const METHODS: [&str; 8] = [
        "get", "put", "post", "delete", "options", "head", "patch", "trace",
    ];
    document["paths"]
        .as_object()
        .into_iter()
        .flatten()
        .flat_map(|(path, item)| {
            METHODS
                .iter()
                .filter(|method| item.get(**method).is_some())
                .map(|method| (method.to_uppercase(), path.clone()))
        })
        .collect()
}

/// The server's routes (every row of the permission table) the document leaves out.
fn undocumented(document: &Value) -> Vec<Route> {
    let documented = operations(document);
    http_routes()
        .map(|(method, route)| (method.to_string(), route.to_string()))
        .filter(|route| !documented.contains(route))
        .collect()
}

/// Whether the document says `method path` needs no credentials (`security: [{}]`).
fn documented_public(document: &Value, method: &str, path: &str) -> bool {
    document["paths"][path][method.to_lowercase()]["security"] == json!([{}])
}

/// `path` with each `{param}` filled with a sample value.
fn concrete(path: &str) -> String {
    path.split('/')
        .map(|segment| {
            if segment.starts_with('{') && segment.ends_with('}') {
                "sample"
            } else {
                segment
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// Calls every operation of the document without credentials and lists those the server
/// answers against the document: not routed (the fallback's 404 "no route", or 405), or
/// secured when documented public, or open when documented secured. Nothing is changed: a
/// secured route refuses before its handler runs, and every public route is a read.
async fn disagreements(addr: &str, document: &Value) -> Vec<String> {
    let client = anonymous();
    let mut found = Vec::new();
    for (method, path) in operations(document) {
        let (status, body) = call(&client, addr, &method, &concrete(&path), None).await;
        let no_route = status == 404
            && body["error"]
                .as_str()
                .is_some_and(|e| e.starts_with("no route"));
        if no_route || status == 405 {
            found.push(format!("{method} {path}: not routed ({status} {body})"));
        } else if documented_public(document, &method, &path) == (status == 401) {
            found.push(format!(
                "{method} {path}: documented {}, answered {status} without credentials",
                if documented_public(document, &method, &path) {
                    "public"
                } else {
                    "secured"
                }
            ));
        }
    }
    found
}

/// An answer to check against the document: the operation, its status and body.
fn answer(method: &str, path: &str, (status, body): (u16, Value)) -> Value {
    json!({"method": method, "path": path, "status": status, "body": body})
}

/// Runs `tests/openapi_check.py`: openapi-spec-validator on the document, then each answer's
/// body against its documented schema. The problems it reports, one a line.
fn check(document: &Value, answers: &[Value]) -> Vec<String> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/openapi_check.py");
    let mut child = Command::new("python3")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    let input = json!({"document": document, "answers": answers}).to_string();
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write to the checker");
    let out = child.wait_with_output().expect("the checker runs");
    assert!(
        out.status.success(),
        "the checker failed (it needs openapi-spec-validator from PyPI; .ci/run installs it):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_served_document_describes_every_route_and_the_answers() {
    init_tracing();
    let cluster = TestCluster::start(3, &[]).await;
    let leader = cluster.leader(WAIT).await;
    let api = leader.http_addr.as_str();

    tracing::info!("phase: the document, without credentials");
    let (status, document) = call(&anonymous(), api, "GET", "/v1/openapi.json", None).await;
    assert_eq!(status, 200, "{document}");
    let version = document["openapi"].as_str().unwrap_or_default();
    assert!(version.starts_with("3."), "not OpenAPI 3.x: {version:?}");
    assert_eq!(document["info"]["title"], "arbiter");
    assert_eq!(document["info"]["version"], env!("CARGO_PKG_VERSION"));

    tracing::info!("phase: every route the server routes is documented");
    let routes = http_routes().count();
    assert!(
        routes >= 28,
        "too few routes in the permission table: {routes}"
    );
    assert_eq!(undocumented(&document), Vec::<Route>::new());
    assert_eq!(
        operations(&document).len(),
        routes,
        "documented but not in the table"
    );
    // Negative control: a route missing from the document is reported.
    let mut without_shift = document.clone();
    without_shift["paths"]
        .as_object_mut()
        .expect("paths")
        .remove("/v1/dr/traffic-shift");
    assert_eq!(
        undocumented(&without_shift),
        vec![("POST".to_string(), "/v1/dr/traffic-shift".to_string())]
    );

    tracing::info!("phase: every documented operation is routed, with the documented security");
    assert_eq!(disagreements(api, &document).await, Vec::<String>::new());
    // Negative controls: an operation the server does not route, and a secured route
    // documented as public, are both reported.
    let mut doctored = document.clone();
    let paths = doctored["paths"].as_object_mut().expect("paths");
    let livez = paths["/livez"].clone();
    paths.insert("/v1/not-routed/{id}".to_string(), livez);
    paths["/metrics"]["get"]["security"] = json!([{}]);
    let found = disagreements(api, &doctored).await;
    assert!(
        found
            .iter()
            .any(|d| d.starts_with("GET /v1/not-routed/{id}: not routed")),
        "{found:?}"
    );
    assert!(
        found
            .iter()
            .any(|d| d.starts_with("GET /metrics: documented public")),
        "{found:?}"
    );
    assert_eq!(found.len(), 2, "{found:?}");

    tracing::info!("phase: the validator, and real answers against their schemas");
    let operator = http();
    let mut answers = Vec::new();
    for (path, template) in [
        ("/v1/health/check", "/v1/health/check"),
        ("/livez", "/livez"),
        ("/readyz", "/readyz"),
        ("/v1/cluster/status", "/v1/cluster/status"),
        ("/v1/regions", "/v1/regions"),
        ("/v1/tenants", "/v1/tenants"),
        ("/v1/failover-events", "/v1/failover-events"),
        ("/v1/replication/links", "/v1/replication/links"),
        ("/v1/leases/db%2Fopenapi", "/v1/leases/{resource}"),
        (
            "/v1/leases/db%2Fopenapi/validate?token=1",
            "/v1/leases/{resource}/validate",
        ),
    ] {
        let got = call(&operator, api, "GET", path, None).await;
        // The probes may answer 503 (documented too); every other read here succeeds.
        let probe = matches!(path, "/livez" | "/readyz");
        assert!(got.0 == 200 || probe, "GET {path}: {got:?}");
        answers.push(answer("GET", template, got));
    }
    let acquire = "/v1/leases/{resource}/acquire";
    let granted = call(
        &operator,
        api,
        "POST",
        "/v1/leases/db%2Fopenapi/acquire",
        Some(json!({"holder": "openapi-test", "ttlMs": 10_000})),
    )
    .await;
    assert_eq!(granted.0, 200, "{granted:?}");
    answers.push(answer("POST", acquire, granted));
    let refused = call(
        &operator,
        api,
        "POST",
        "/v1/leases/db%2Fopenapi/acquire",
        Some(json!({"holder": "someone-else", "ttlMs": 10_000})),
    )
    .await;
    assert_eq!(refused.0, 409, "{refused:?}");
    answers.push(answer("POST", acquire, refused));
    let invalid = call(
        &operator,
        api,
        "POST",
        "/v1/leases/db%2Fopenapi/acquire",
        Some(json!({"holder": "openapi-test", "ttlMs": 1})),
    )
    .await;
    assert_eq!(invalid.0, 422, "{invalid:?}");
    answers.push(answer("POST", acquire, invalid));
    let unauthenticated = call(&anonymous(), api, "GET", "/v1/regions", None).await;
    assert_eq!(unauthenticated.0, 401, "{unauthenticated:?}");
    answers.push(answer("GET", "/v1/regions", unauthenticated));
    let follower = cluster
        .running()
        .map(|node| node.ready.http_addr.clone())
        .find(|addr| addr != api)
        .expect("a follower");
    let not_leader = call(&operator, &follower, "GET", "/v1/regions", None).await;
    assert_eq!(not_leader.0, 503, "{not_leader:?}");
    assert!(not_leader.1["leaderHttpAddr"].is_string(), "{not_leader:?}");
    answers.push(answer("GET", "/v1/regions", not_leader));
    assert_eq!(check(&document, &answers), Vec::<String>::new());

    // Negative controls: the validator rejects a broken document, and an answer that lost a
    // required field, or whose status is not documented, is reported.
    let mut broken = document.clone();
    broken["paths"]["/livez"]["get"]["responses"] = json!("none");
    let problems = check(&broken, &[]);
    assert!(
        problems.iter().any(|p| p.starts_with("document:")),
        "{problems:?}"
    );
    let mut health = answers[0].clone();
    health["body"]
        .as_object_mut()
        .expect("a health check body")
        .remove("epochSeconds");
    let mut teapot = answers[0].clone();
    teapot["status"] = json!(418);
    let problems = check(&document, &[health, teapot]);
    assert!(
        problems
            .iter()
            .any(|p| p.contains("/v1/health/check") && p.contains("epochSeconds")),
        "{problems:?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p.contains("418: status not documented")),
        "{problems:?}"
    );
    assert_eq!(problems.len(), 2, "{problems:?}");
}
