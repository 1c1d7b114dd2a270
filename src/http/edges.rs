//! The edge routers' side of the API: `POST /v1/edges/report` (an edge's routing version and
//! requests in flight, kept in the leader's memory) and `GET /v1/edges` (what the leader hears).
//!
//! An edge reports only as itself (its authenticated identity); the figures feed the traffic
//! shift's `drainActiveCount` and `dnsPropagationStatus` (see [`crate::dr::edges`]).

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use super::error::{ApiError, ErrorBody, NotLeaderBody};
use super::validate::{self, MAX_NAME_LEN, MAX_REGION_LEN};
use super::{openapi, AppState};
use crate::auth::permissions::{Claim, Operation};
use crate::auth::Caller;
use crate::dr::edges::{EdgeRegistry, EdgeReportBody, EdgeView};

/// Every edge the leader hears from.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EdgeList {
    edges: Vec<EdgeView>,
}

/// Report an edge router's state
///
/// The routing version (`appliedIndex`) the edge routes by and its requests in flight per
/// region. Leader only; the edge may report only as itself.
#[utoipa::path(
    post,
    path = "/v1/edges/report",
    operation_id = "reportEdge",
    tag = "edges",
    request_body = EdgeReportBody,
    responses(
        (status = 204, description = "Recorded"),
        (status = 400, description = openapi::BAD_REQUEST, body = ErrorBody),
        (status = 422, description = openapi::INVALID, body = ErrorBody),
        (status = 503, description = openapi::NOT_LEADER, body = NotLeaderBody),
        (status = 500, description = openapi::INTERNAL, body = ErrorBody),
    ),
)]
pub async fn report(
    State(app): State<AppState>,
    caller: Caller,
    body: Result<Json<EdgeReportBody>, JsonRejection>,
) -> Result<StatusCode, ApiError> {
    let Json(body) = body?;
    let node = &app.node;
    let edge = validate::text("edge", &body.edge, MAX_NAME_LEN)?;
    node.auth
        .authorize(&caller, Operation::EdgeReport, Claim::Edge(edge))?;
    if body.regions.len() > EdgeRegistry::MAX_REGIONS {
        return Err(ApiError::Invalid(format!(
            "`regions` names {} entries; at most {} are accepted",
            body.regions.len(),
            EdgeRegistry::MAX_REGIONS
        )));
    }
    for (region, figures) in &body.regions {
        validate::text("regions (name)", region, MAX_REGION_LEN)?;
        if figures
            .rtt_ms
            .is_some_and(|rtt| !rtt.is_finite() || rtt < 0.0)
        {
            return Err(ApiError::Invalid(format!(
                "`rttMs` of {region} must be a non-negative number"
            )));
        }
    }
    node.dr
        .record_edge(body)
        .map_err(|e| ApiError::dr(node, e))?;
    Ok(StatusCode::NO_CONTENT)
}

/// The edge routers
///
/// Every edge the leader heard from in the last minute: its last report, how old it is, and
/// whether it has gone silent (then it counts as lagging behind every routing change).
#[utoipa::path(
    get,
    path = "/v1/edges",
    operation_id = "listEdges",
    tag = "edges",
    responses(
        (status = 200, description = "The edges", body = EdgeList),
        (status = 503, description = openapi::NOT_LEADER, body = NotLeaderBody),
        (status = 500, description = openapi::INTERNAL, body = ErrorBody),
    ),
)]
pub async fn list(State(app): State<AppState>) -> Result<Json<EdgeList>, ApiError> {
    let node = &app.node;
    node.leases
        .confirm_leadership()
        .await
        .map_err(|e| ApiError::write(node, e))?;
    Ok(Json(EdgeList {
        edges: node.dr.edges(),
    }))
}
