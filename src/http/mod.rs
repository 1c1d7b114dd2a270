//! HTTP edge (axum): the seed's contracts, the DR operator API and read endpoints.
//!
//! | route | file | answers |
//! |---|---|---|
//! | `GET /v1/cluster/status` | here | this node's Raft view |
//! | `GET /livez`, `GET /readyz`, `GET /metrics` | [`ops`] | liveness, readiness (503 without a leader or when behind), Prometheus metrics |
//! | `POST /v1/cluster/leader` | [`leader`] | move leadership to a node or region (operator) |
//! | `GET /v1/health/check` | [`health`] | the seed's health check for this node's region |
//! | `POST /v1/dr/traffic-shift`, `GET /v1/dr/tasks/{id}` | [`traffic`] | the seed's traffic shift (202) and its task |
//! | `POST /v1/dr/failover`, `POST /v1/dr/failback`, `POST /v1/probes/report` | [`dr`] | operator overrides and probe agents, through the DR controller |
//! | `POST /v1/edges/report`, `GET /v1/edges` | [`edges`] | edge routers' routing versions and requests in flight |
//! | `GET /v1/plan` | [`plan`] | the seed's capacity model for this cluster: bandwidth, writes in flight, DNS-cached clients, predicted RTO by component |
//! | `GET /v1/regions` | [`regions`] | health, down-since, cooldown, traffic weights |
//! | `GET /v1/tenants`, `GET/PUT /v1/tenants/{id}` | [`tenants`] | the routing table |
//! | `GET /v1/failover-events`, `GET /v1/failover-events/{id}` | [`events`] | the failover log, newest first |
//! | `GET/PUT /v1/replication/links`, `POST /v1/replication/links/heartbeat` | [`replication`] | replication links, their progress and RPO state |
//! | `GET /v1/leases/{resource}`, `POST .../{acquire,keepalive,release,revoke}`, `GET .../validate` | [`leases`] | write leases and fencing tokens, as over gRPC |
//! | `GET /v1/openapi.json` | [`openapi`] | this API as an OpenAPI 3.1 document |
//! | `GET /v1/dashboard` | [`dashboard`] | everything the dashboard shows, from this node (a follower answers too) |
//! | `GET /ui`, `GET /ui/app.js`, `GET /ui/app.css` | [`ui`] | the dashboard's page, compiled in |
//!
//! Every route is declared once, in [`api`], with its OpenAPI description: the router and the
//! document are built from that one list.
//!
//! Invariants: reads of replicated state are linearizable — they wait for a quorum round
//! ([`read`]) and a follower answers 503 with `leaderHttpAddr` instead of serving a stale view
//! (the dashboard alone shows this node's own view, and says whether it leads);
//! writes are validated completely before they are proposed, so bad input is a 4xx and never a
//! state change; every error is JSON, built in [`error`] only. Bodies are capped at
//! [`MAX_BODY_BYTES`].

mod dashboard;
mod dr;
mod edges;
pub mod error;
mod events;
mod health;
mod leader;
mod leases;
pub mod openapi;
mod ops;
mod plan;
mod regions;
mod replication;
mod rfc3339;
mod telemetry;
mod tenants;
mod traffic;
mod ui;
mod validate;

use std::sync::Arc;

use arbiter_core::state_machine::StateMachine;
use axum::extract::connect_info::Connected;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{Method, Uri};
use axum::serve::IncomingStream;
use axum::{Json, Router};
use tokio::sync::watch;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::node::{NodeContext, NodeError};
use crate::tls::incoming::ClientChain;
use error::ApiError;
use health::ReportedDependencies;
use telemetry::Telemetry;

/// Largest request body accepted; larger ones get 413 before they are parsed. Every request
/// this API takes is a few hundred bytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    node: Arc<NodeContext>,
    telemetry: Arc<Telemetry>,
    dependencies: Arc<ReportedDependencies>,
}

/// Serves the API on `listener` (plain TCP or [`crate::tls::incoming::TlsListener`]) until
/// `stop` turns true.
pub async fn serve<L>(
    node: Arc<NodeContext>,
    listener: L,
    mut stop: watch::Receiver<bool>,
) -> Result<(), NodeError>
where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
    ClientChain: for<'a> Connected<IncomingStream<'a, L>>,
{
    axum::serve(
        listener,
        router(node).into_make_service_with_connect_info::<ClientChain>(),
    )
    .with_graceful_shutdown(async move {
        let _ = stop.wait_for(|s| *s).await;
    })
    .await
    .map_err(|e| NodeError::Serve(e.to_string()))
}

fn router(node: Arc<NodeContext>) -> Router {
    let telemetry = Arc::new(Telemetry::default());
    let auth = node.auth.clone();
    let state = AppState {
        node,
        telemetry: telemetry.clone(),
        dependencies: Arc::default(),
    };
    let (routes, _) = api().split_for_parts();
    routes
        // Route-level, so the layer sees the matched route template the permission table names.
        .route_layer(axum::middleware::from_fn_with_state(
            auth,
            crate::auth::http_layer::require,
        ))
        .fallback(no_route)
        .method_not_allowed_fallback(no_method)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn_with_state(
            telemetry,
            telemetry::track,
        ))
        .layer(crate::request_span::RequestSpanLayer)
        .with_state(state)
}

/// Every route and its handlers; see [`openapi`] for the document made from the same list.
/// `routes!` takes the handlers of one path.
fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(cluster_status))
        .routes(routes!(ops::livez))
        .routes(routes!(ops::readyz))
        .routes(routes!(ops::metrics))
        .routes(routes!(openapi::serve))
        .routes(routes!(leader::move_leader))
        .routes(routes!(health::check))
        .routes(routes!(traffic::shift))
        .routes(routes!(traffic::task))
        .routes(routes!(dr::failover))
        .routes(routes!(dr::failback))
        .routes(routes!(dr::probe_report))
        .routes(routes!(edges::report))
        .routes(routes!(edges::list))
        .routes(routes!(plan::plan))
        .routes(routes!(regions::list))
        .routes(routes!(tenants::list))
        .routes(routes!(tenants::get, tenants::upsert))
        .routes(routes!(tenants::set_active))
        .routes(routes!(events::list))
        .routes(routes!(events::get))
        .routes(routes!(replication::links, replication::upsert))
        .routes(routes!(replication::heartbeat))
        .routes(routes!(leases::get))
        .routes(routes!(leases::acquire))
        .routes(routes!(leases::keep_alive))
        .routes(routes!(leases::release))
        .routes(routes!(leases::revoke))
        .routes(routes!(leases::validate_token))
        .routes(routes!(dashboard::snapshot))
        .routes(routes!(ui::page))
        .routes(routes!(ui::script))
        .routes(routes!(ui::style))
}

/// This node's Raft view
///
/// Role, term, leader, log indexes, members and state digest, as `ClusterService/GetStatus`
/// answers over gRPC. Local state: any node answers, leader or not.
#[utoipa::path(
    get,
    path = "/v1/cluster/status",
    operation_id = "getClusterStatus",
    tag = "cluster",
    responses((status = 200, description = "This node's status", body = arbiter_client::proto::NodeStatus)),
)]
async fn cluster_status(State(app): State<AppState>) -> Json<arbiter_client::proto::NodeStatus> {
    Json(app.node.status().await)
}

async fn no_route(uri: Uri) -> ApiError {
    ApiError::NotFound(format!("no route {}", uri.path()))
}

async fn no_method(method: Method, uri: Uri) -> ApiError {
    ApiError::Rejected {
        status: axum::http::StatusCode::METHOD_NOT_ALLOWED,
        message: format!("{} does not accept {method}", uri.path()),
    }
}

/// A linearizable read: waits for a quorum round that began after the call (so this node is
/// still the leader and has applied everything committed before it), then reads.
async fn read<T>(
    node: &NodeContext,
    query: impl FnOnce(&StateMachine) -> Result<T, ApiError>,
) -> Result<T, ApiError> {
    node.leases
        .confirm_leadership()
        .await
        .map_err(|e| ApiError::write(node, e))?;
    let state = node.state.read();
    query(&state.machine)
}

/// Basis points (hundredths of a percent, as the state machine keeps weights) as a percentage.
fn percent(bp: u32) -> f64 {
    f64::from(bp) / 100.0
}
