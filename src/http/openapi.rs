//! `GET /v1/openapi.json` (public): the HTTP API as an OpenAPI 3.1 document.
//!
//! Invariants:
//! - The document is built from the same declarations as the router: [`super::api`] lists every
//!   route once, through `utoipa_axum::routes!`, from the handlers' `#[utoipa::path]`
//!   annotations, so a route cannot be served without being described, nor described without
//!   being served. Schemas are derived from the bodies' own types (and their serde renames).
//! - Security comes from the permission table, not from the annotations:
//!   [`http_access`] decides, per operation, between `security: []` (public) and the bearer
//!   token or client certificate, with the roles that may call it and the 401/403 answers.
//! - Built once per process; the handler serves the same bytes every time.

use std::sync::LazyLock;

use axum::body::Bytes;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use utoipa::openapi::path::{Operation, PathItem};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi, Ref, ResponseBuilder};
use utoipa::OpenApi as _;

use super::error::ErrorBody;
use crate::auth::permissions::{http_access, Access, Operation as Permission};

/// Names of the security schemes in `components.securitySchemes`.
const BEARER: &str = "bearerToken";
const CLIENT_CERTIFICATE: &str = "clientCertificate";

/// Shared descriptions of the answers most operations can give (see [`super::error`]).
pub const BAD_REQUEST: &str =
    "Malformed JSON, a wrong field type, an unknown field, or a body not declared `application/json` (400, 413, 415 or 422 with the extractor's message)";
pub const BAD_QUERY: &str =
    "A malformed query string, an unknown parameter, or a value of the wrong type";
pub const INVALID: &str =
    "Well-formed but wrong: a value out of range, an unknown region, a contradiction; nothing was proposed";
pub const NOT_LEADER: &str =
    "Not the leader (retry at `leaderHttpAddr`; `null` during an election), shutting down, or the write queue stayed full (not applied)";
pub const TIMEOUT: &str =
    "The write was not confirmed in time; it may or may not have been applied";
pub const INTERNAL: &str = "A bug on the node: logged there, never detailed here";

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "arbiter",
        version = env!("CARGO_PKG_VERSION"),
        description = "Quorum arbiter and DR controller for multi-region services: the seed's \
            health check and traffic shift, the DR operator API (failover, failback, regions, \
            tenants' routing, the failover log, replication links), probe reports, write leases \
            and fencing tokens, and the node's own operations endpoints.\n\n\
            Every answer is JSON unless stated. Reads of replicated state are linearizable: a \
            node that is not the leader answers 503 with `leaderHttpAddr`. Bad input is a 4xx \
            and never changes state. Credentials: a bearer token (`Authorization: Bearer`) or a \
            client certificate (mutual TLS) signed by the cluster CA; each operation names the \
            roles that may call it.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    tags(
        (name = "cluster", description = "This node's Raft view and leadership moves"),
        (name = "ops", description = "Liveness, readiness, Prometheus metrics and this document"),
        (name = "health", description = "The seed's regional health check"),
        (name = "dr", description = "The DR control plane: traffic shifts, failover and failback, regions, the failover log"),
        (name = "probes", description = "Probe agents' reports to the DR controller"),
        (name = "edges", description = "Edge routers: the routing version each applied, requests in flight"),
        (name = "tenants", description = "The routing table (the seed's tenant_routing_states)"),
        (name = "replication", description = "Replication links and their RPO state (the seed's replication_links)"),
        (name = "leases", description = "Write leases and fencing tokens: the JSON mirror of arbiter.v1.LeaseService"),
    ),
    components(schemas(ErrorBody)),
)]
struct ApiDoc;

/// The whole document: info, tags and shared schemas, every route of [`super::api`], then the
/// security the permission table gives each operation.
pub fn document() -> OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.merge(super::api().into_openapi());
    secure(&mut doc);
    doc
}

/// The document as served, encoded once.
static DOCUMENT: LazyLock<Bytes> = LazyLock::new(|| {
    // Cannot fail: the document is plain structs with string map keys, which JSON can hold.
    Bytes::from(
        document()
            .to_json()
            .expect("an OpenAPI document encodes as JSON"),
    )
});

/// This document
///
/// The HTTP API as OpenAPI 3.1, generated from the code that serves it. Public: it describes
/// the API and holds no data.
#[utoipa::path(
    get,
    path = "/v1/openapi.json",
    operation_id = "getOpenApi",
    tag = "ops",
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json", body = Object)),
)]
pub async fn serve() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        DOCUMENT.clone(),
    )
        .into_response()
}

/// Adds the security schemes, then marks each operation with what the permission table says
/// it needs: public ones `security: []`; the others either credential, the roles that may call
/// it, and the 401 and 403 the auth layer answers.
fn secure(doc: &mut OpenApi) {
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        BEARER,
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some(
                    "`Authorization: Bearer <token>`, a token from the node's tokens file (`arbiter auth token`)",
                ))
                .build(),
        ),
    );
    components.add_security_scheme(
        CLIENT_CERTIFICATE,
        SecurityScheme::MutualTls {
            description: Some(
                "A client certificate signed by the cluster CA, naming the identity and role (`arbiter certs`)"
                    .to_string(),
            ),
            extensions: None,
        },
    );
    for (path, item) in doc.paths.paths.iter_mut() {
        for (method, operation) in operations_mut(item) {
            match http_access(method, path) {
                Access::Public => {
                    operation.security = Some(vec![SecurityRequirement::default()]);
                }
                Access::Requires(permission) | Access::PeerOr(permission) => {
                    require(operation, permission);
                }
                // Peer-only routes are never on the HTTP edge; fail closed if one appears.
                Access::Peer => require(operation, Permission::Unlisted),
            }
        }
    }
}

/// Either credential, the roles, and the auth layer's refusals.
fn require(operation: &mut Operation, permission: Permission) {
    operation.security = Some(vec![
        SecurityRequirement::new(BEARER, Vec::<String>::new()),
        SecurityRequirement::new(CLIENT_CERTIFICATE, Vec::<String>::new()),
    ]);
    let roles: Vec<&str> = permission
        .roles()
        .iter()
        .map(|role| role.as_str())
        .collect();
    let note = format!(
        "Permission `{permission}`: roles {}.",
        roles
            .iter()
            .map(|role| format!("`{role}`"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    operation.description = Some(match operation.description.take() {
        Some(description) => format!("{description}\n\n{note}"),
        None => note,
    });
    let error = || {
        ContentBuilder::new()
            .schema(Some(Ref::from_schema_name("ErrorBody")))
            .build()
    };
    let responses = &mut operation.responses.responses;
    responses.entry("401".to_string()).or_insert_with(|| {
        ResponseBuilder::new()
            .description("No credentials, or a token or certificate this node does not know (`WWW-Authenticate: Bearer`)")
            .content("application/json", error())
            .build()
            .into()
    });
    responses.entry("403".to_string()).or_insert_with(|| {
        ResponseBuilder::new()
            .description("Authenticated, but the role may not do this, or a bound role acts for someone else")
            .content("application/json", error())
            .build()
            .into()
    });
}

/// Every operation of a path, with its HTTP method as the permission table spells it.
fn operations_mut(item: &mut PathItem) -> impl Iterator<Item = (&'static str, &mut Operation)> {
    [
        ("GET", &mut item.get),
        ("PUT", &mut item.put),
        ("POST", &mut item.post),
        ("DELETE", &mut item.delete),
        ("OPTIONS", &mut item.options),
        ("HEAD", &mut item.head),
        ("PATCH", &mut item.patch),
        ("TRACE", &mut item.trace),
    ]
    .into_iter()
    .filter_map(|(method, operation)| operation.as_mut().map(|op| (method, op)))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::auth::permissions::http_routes;

    /// (method, route template).
    type Route = (String, String);

    /// Every (method, path) the document describes.
    fn documented(doc: &mut OpenApi) -> BTreeSet<Route> {
        doc.paths
            .paths
            .iter_mut()
            .flat_map(|(path, item)| {
                operations_mut(item)
                    .map(|(method, _)| (method.to_string(), path.clone()))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// What one set has and the other lacks, both ways.
    fn difference(
        documented: &BTreeSet<Route>,
        table: &BTreeSet<Route>,
    ) -> (Vec<Route>, Vec<Route>) {
        (
            documented.difference(table).cloned().collect(),
            table.difference(documented).cloned().collect(),
        )
    }

    fn table() -> BTreeSet<Route> {
        http_routes()
            .map(|(method, route)| (method.to_string(), route.to_string()))
            .collect()
    }

    /// The router serves exactly what the document describes (one declaration makes both), so
    /// this holds the router to the permission table: a route served without a decision on who
    /// may call it, or a row for a route nobody serves, fails here.
    #[test]
    fn every_route_has_a_permission_row_and_every_row_a_route() {
        let (unlisted, unrouted) = difference(&documented(&mut document()), &table());
        assert_eq!(unlisted, Vec::new(), "routes without a permission row");
        assert_eq!(unrouted, Vec::new(), "permission rows without a route");
        assert!(table().len() >= 28, "too few routes: {:?}", table());
    }

    /// Negative control for the check above: a route added to the router only is reported.
    #[test]
    fn a_route_without_a_row_is_reported() {
        let mut doc = document();
        let extra = doc.paths.paths.values().next().cloned().expect("some path");
        doc.paths.paths.insert("/v1/forgotten".to_string(), extra);
        let (unlisted, unrouted) = difference(&documented(&mut doc), &table());
        assert!(
            unlisted.iter().any(|(_, path)| path == "/v1/forgotten"),
            "{unlisted:?}"
        );
        assert_eq!(unrouted, Vec::new());
    }

    #[test]
    fn public_routes_need_no_credentials_and_the_rest_name_both() {
        let mut doc = document();
        let schemes = &doc
            .components
            .as_ref()
            .expect("components")
            .security_schemes;
        assert!(schemes.contains_key(BEARER) && schemes.contains_key(CLIENT_CERTIFICATE));
        let mut public = Vec::new();
        for (path, item) in doc.paths.paths.iter_mut() {
            for (method, operation) in operations_mut(item) {
                let security = operation.security.as_ref().expect("security set");
                if security == &vec![SecurityRequirement::default()] {
                    public.push(format!("{method} {path}"));
                    assert!(!operation.responses.responses.contains_key("401"));
                } else {
                    assert_eq!(security.len(), 2, "{method} {path}");
                    for status in ["401", "403"] {
                        assert!(
                            operation.responses.responses.contains_key(status),
                            "{method} {path} lacks {status}"
                        );
                    }
                    assert!(operation
                        .description
                        .as_deref()
                        .is_some_and(|d| d.contains("roles `operator`")));
                }
            }
        }
        public.sort();
        assert_eq!(
            public,
            [
                "GET /livez",
                "GET /readyz",
                "GET /ui",
                "GET /ui/app.css",
                "GET /ui/app.js",
                "GET /v1/health/check",
                "GET /v1/openapi.json"
            ]
        );
    }

    /// Every handler documents its answers, and the seed's bodies keep the seed's field names.
    #[test]
    fn the_seed_contracts_keep_their_field_names() {
        let doc: serde_json::Value =
            serde_json::from_slice(&DOCUMENT).expect("the served document is JSON");
        let properties = |schema: &str| -> BTreeSet<String> {
            doc["components"]["schemas"][schema]["properties"]
                .as_object()
                .unwrap_or_else(|| panic!("schema {schema}"))
                .keys()
                .cloned()
                .collect()
        };
        let names = |names: &[&str]| names.iter().map(|n| n.to_string()).collect();
        assert_eq!(
            properties("ShiftBody"),
            names(&[
                "policyName",
                "sourceRegion",
                "targetRegion",
                "trafficShiftPercentage",
                "drainTimeoutSeconds",
                "reason"
            ])
        );
        assert_eq!(
            properties("ShiftAccepted"),
            names(&[
                "taskTrackId",
                "status",
                "dnsPropagationStatus",
                "drainActiveCount",
                "updatedAt"
            ])
        );
        assert_eq!(
            properties("HealthCheck"),
            names(&[
                "region",
                "status",
                "epochSeconds",
                "dependencies",
                "metrics"
            ])
        );
        let shift = &doc["paths"]["/v1/dr/traffic-shift"]["post"];
        assert!(shift["responses"]["202"].is_object(), "{shift}");
        assert_eq!(doc["info"]["title"], "arbiter");
        assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
    }
}
