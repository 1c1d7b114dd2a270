//! The routing table (the seed's `tenant_routing_states`): `GET /v1/tenants/{id}`,
//! `GET /v1/tenants?activeRegion=R&status=SHIFTED`, `PUT /v1/tenants/{id}`.
//!
//! A row: `{"tenantId", "primaryRegion", "failoverRegion", "activeRoutingRegion",
//! "routingStatus": "DEFAULT"|"SHIFTED"|"LOCKED", "updatedAt", "version"}`; `version` is the
//! fencing token of the row's last write. A list is `{"tenants": [row, ...]}` by active region,
//! status, then tenant id.
//!
//! `PUT` takes `{"primaryRegion", "failoverRegion"}` and answers 200 with the row: a new tenant
//! is routed to its primary; a `DEFAULT` one follows a new primary; a `SHIFTED` one stays where
//! it is until failback; a `LOCKED` one is refused (409).
//!
//! `POST /v1/tenants/{id}/active` `{"region", "expectedRegion"?}` routes one tenant by hand:
//! unconditionally, or as a compare-and-set on its current active region.

use arbiter_core::command::{Command, Outcome};
use arbiter_core::routing::{
    CasExpectation, RoutingCommand, RoutingOutcome, RoutingRefusal, RoutingStatus, TenantRoute,
};
use arbiter_core::TenantId;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, ErrorBody, NotLeaderBody};
use super::validate::{self, MAX_NAME_LEN};
use super::{openapi, read, rfc3339, AppState};

/// A row of the routing table (the seed's `tenant_routing_states`).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TenantView {
    tenant_id: String,
    primary_region: String,
    failover_region: String,
    /// Where the tenant's traffic goes now.
    active_routing_region: String,
    routing_status: RoutingStatus,
    /// RFC 3339, UTC.
    updated_at: String,
    /// The fencing token of the row's last write.
    version: u64,
}

impl From<&TenantRoute> for TenantView {
    fn from(route: &TenantRoute) -> Self {
        TenantView {
            tenant_id: route.tenant_id.to_string(),
            primary_region: route.primary_region.to_string(),
            failover_region: route.failover_region.to_string(),
            active_routing_region: route.active_routing_region.to_string(),
            routing_status: route.routing_status,
            updated_at: rfc3339::format(route.updated_at),
            version: route.version,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TenantList {
    tenants: Vec<TenantView>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only tenants routed to this region now.
    active_region: Option<String>,
    /// Only tenants in this status.
    #[param(inline)]
    status: Option<RoutingStatus>,
}

/// Two distinct regions the arbiter knows.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({"primaryRegion": "us-east-1", "failoverRegion": "us-west-2"}))]
pub struct TenantBody {
    primary_region: String,
    failover_region: String,
}

fn tenant_id(id: &str) -> Result<TenantId, ApiError> {
    Ok(TenantId::new(validate::text("tenantId", id, MAX_NAME_LEN)?))
}

/// One tenant's route
#[utoipa::path(
    get,
    path = "/v1/tenants/{id}",
    operation_id = "getTenant",
    tag = "tenants",
    params(("id" = String, Path, description = "The tenant id (at most 128 bytes)", example = "tenant-42")),
    responses(
        (status = 200, description = "The tenant's row", body = TenantView),
        (status = 404, description = "No such tenant", body = ErrorBody),
        (status = 422, description = "A blank or over-long tenant id", body = ErrorBody),
        (status = 503, description = openapi::NOT_LEADER, body = NotLeaderBody),
        (status = 504, description = openapi::TIMEOUT, body = ErrorBody),
        (status = 500, description = openapi::INTERNAL, body = ErrorBody),
    ),
)]
pub async fn get(
    State(app): State<AppState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<TenantView>, ApiError> {
    let Path(id) = id?;
    let tenant = tenant_id(&id)?;
    read(&app.node, |machine| {
        machine
            .routing
            .get(&tenant)
            .map(|route| Json(TenantView::from(route)))
            .ok_or_else(|| ApiError::NotFound(format!("no tenant {tenant}")))
    })
    .await
}

/// The routing table
///
/// Every tenant, or those routed to one region or in one status, ordered by active region,
/// status, then tenant id.
#[utoipa::path(
    get,
    path = "/v1/tenants",
    operation_id = "listTenants",
    tag = "tenants",
    params(ListQuery),
    responses(
        (status = 200, description = "The tenants", body = TenantList),
        (status = 400, description = openapi::BAD_QUERY, body = ErrorBody),
        (status = 422, description = "An unknown region", body = ErrorBody),
        (status = 503, description = openapi::NOT_LEADER, body = NotLeaderBody),
        (status = 504, description = openapi::TIMEOUT, body = ErrorBody),
        (status = 500, description = openapi::INTERNAL, body = ErrorBody),
    ),
)]
pub async fn list(
    State(app): State<AppState>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<TenantList>, ApiError> {
    let Query(query) = query?;
    read(&app.node, |machine| {
        let known = validate::known_regions(machine);
        let regions = match &query.active_region {
            Some(region) => vec![validate::region("activeRegion", region, &known)?],
            // Every tenant is routed to a known region: upserts and failovers only name known
            // ones, so walking the (active region, status) index over them lists the table.
            None => known.into_iter().collect(),
        };
        let statuses = match query.status {
            Some(status) => vec![status],
            None => vec![
                RoutingStatus::Default,
                RoutingStatus::Shifted,
                RoutingStatus::Locked,
            ],
        };
        let tenants = regions
            .iter()
            .flat_map(|region| {
                statuses
                    .iter()
                    .flat_map(move |status| machine.routing.by_active(region, *status))
            })
            .map(TenantView::from)
            .collect();
        Ok(Json(TenantList { tenants }))
    })
    .await
}

/// Declare or change a tenant
///
/// A new tenant is routed to its primary; a `DEFAULT` one follows a new primary; a `SHIFTED`
/// one stays where it is until failback; a `LOCKED` one is refused.
#[utoipa::path(
    put,
    path = "/v1/tenants/{id}",
    operation_id = "putTenant",
    tag = "tenants",
    params(("id" = String, Path, description = "The tenant id (at most 128 bytes)", example = "tenant-42")),
    request_body = TenantBody,
    responses(
        (status = 200, description = "The tenant's row as written", body = TenantView),
        (status = 400, description = openapi::BAD_REQUEST, body = ErrorBody),
        (status = 409, description = "The tenant is `LOCKED`", body = ErrorBody),
        (status = 422, description = openapi::INVALID, body = ErrorBody),
        (status = 503, description = openapi::NOT_LEADER, body = NotLeaderBody),
        (status = 504, description = openapi::TIMEOUT, body = ErrorBody),
        (status = 500, description = openapi::INTERNAL, body = ErrorBody),
    ),
)]
pub async fn upsert(
    State(app): State<AppState>,
    id: Result<Path<String>, PathRejection>,
    body: Result<Json<TenantBody>, JsonRejection>,
) -> Result<Json<TenantView>, ApiError> {
    let Path(id) = id?;
    let Json(body) = body?;
    let tenant = tenant_id(&id)?;
    let node = &app.node;
    let (primary_region, failover_region) = read(node, |machine| {
        let known = validate::known_regions(machine);
        Ok((
            validate::region("primaryRegion", &body.primary_region, &known)?,
            validate::region("failoverRegion", &body.failover_region, &known)?,
        ))
    })
    .await?;
    validate::distinct(
        ("primaryRegion", &primary_region),
        ("failoverRegion", &failover_region),
    )?;
    let command = Command::Routing(RoutingCommand::UpsertTenant {
        tenant,
        primary_region,
        failover_region,
    });
    propose_route(node, command).await
}

/// Proposes a change to one tenant's row and answers with the row, or the refusal as a 4xx.
async fn propose_route(
    node: &crate::node::NodeContext,
    command: Command,
) -> Result<Json<TenantView>, ApiError> {
    match node
        .proposer
        .propose(command)
        .await
        .map_err(|e| ApiError::write(node, e))?
    {
        Outcome::Routing(RoutingOutcome::Updated(route)) => Ok(Json(TenantView::from(&route))),
        Outcome::Routing(RoutingOutcome::Refused(RoutingRefusal::UnknownTenant { tenant })) => {
            Err(ApiError::NotFound(format!("unknown tenant {tenant}")))
        }
        Outcome::Routing(RoutingOutcome::Refused(refusal @ RoutingRefusal::SameRegion { .. })) => {
            Err(ApiError::Invalid(refusal.to_string()))
        }
        Outcome::Routing(RoutingOutcome::Refused(refusal)) => {
            Err(ApiError::Conflict(refusal.to_string()))
        }
        other => Err(ApiError::Internal(format!(
            "a tenant route change produced {other:?}"
        ))),
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({"region": "us-west-2", "expectedRegion": "us-east-1"}))]
pub struct ActiveBody {
    region: String,
    /// With it, a compare-and-set: only if the tenant is routed to this region now.
    expected_region: Option<String>,
}

/// Route one tenant by hand
///
/// `POST /v1/tenants/{id}/active` `{"region", "expectedRegion"?}`: routes the tenant to
/// `region` — unconditionally, or only if it is on `expectedRegion` (compare-and-set). A failed
/// compare-and-set or a locked tenant is 409 and changes nothing.
#[utoipa::path(
    post,
    path = "/v1/tenants/{id}/active",
    operation_id = "setTenantActive",
    tag = "tenants",
    params(("id" = String, Path, description = "The tenant id (at most 128 bytes)", example = "tenant-42")),
    request_body = ActiveBody,
    responses(
        (status = 200, description = "The tenant's row as written", body = TenantView),
        (status = 400, description = openapi::BAD_REQUEST, body = ErrorBody),
        (status = 404, description = "No such tenant", body = ErrorBody),
        (status = 409, description = "The compare-and-set failed, or the tenant is `LOCKED`; nothing changed", body = ErrorBody),
        (status = 422, description = openapi::INVALID, body = ErrorBody),
        (status = 503, description = openapi::NOT_LEADER, body = NotLeaderBody),
        (status = 504, description = openapi::TIMEOUT, body = ErrorBody),
        (status = 500, description = openapi::INTERNAL, body = ErrorBody),
    ),
)]
pub async fn set_active(
    State(app): State<AppState>,
    id: Result<Path<String>, PathRejection>,
    body: Result<Json<ActiveBody>, JsonRejection>,
) -> Result<Json<TenantView>, ApiError> {
    let Path(id) = id?;
    let Json(body) = body?;
    let tenant = tenant_id(&id)?;
    let node = &app.node;
    let (region, expected) = read(node, |machine| {
        let known = validate::known_regions(machine);
        let region = validate::region("region", &body.region, &known)?;
        let expected = body
            .expected_region
            .as_deref()
            .map(|r| validate::region("expectedRegion", r, &known))
            .transpose()?;
        Ok((region, expected))
    })
    .await?;
    let command = Command::Routing(match expected {
        Some(expected) => RoutingCommand::CompareAndSet {
            tenant,
            expected: CasExpectation::ActiveRegion(expected),
            new_active_region: region,
        },
        None => RoutingCommand::SetActive { tenant, region },
    });
    propose_route(node, command).await
}
