//! Operator overrides and probe agents, through the DR controller (leader only).
//!
//! - `POST /v1/dr/failover` `{"failedRegion", "destinationRegion"?, "reason", "initiatedBy"?,
//!   "breakGlass"?}` (the log records the authenticated caller as `initiatedBy`; the field is
//!   only checked) → 202 with the new failover event (as in [`super::events`]); the controller
//!   then carries it out step by step. 409 when the log refuses it (e.g. one already in
//!   progress) or when the standby's last reported lag is beyond the link's RPO target (the
//!   promotion gate); `"breakGlass": true` (operator role only) fails over anyway, and the
//!   decision records the override with the figures and the data-loss estimate.
//! - `POST /v1/dr/failback` `{"region", "initiatedBy"?}` → 202 `{"region", "tenantsRestored",
//!   "taskTrackId"}` (`taskTrackId` null when no traffic had to move), or 409 `{"error",
//!   "reason": "CheckpointBehind", "detail": {...}, "retryable"}` from the failback gate.
//! - `POST /v1/probes/report` `{"vantage", "region", "ok", "dependencies": {name: status},
//!   "activeConnections"?, "latencyMs"?}` → 204. Unknown fields are tolerated here (agents of
//!   other versions), unlike the operator endpoints.
//!
//! Non-leaders answer 503 with `leaderHttpAddr`, like every other endpoint, so agents and the
//! CLI can follow.

use std::collections::BTreeMap;

use arbiter_core::probe_consensus::{DependencyName, DependencyStatus, ProbeReport, VantageId};
use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};

use utoipa::ToSchema;

use super::error::{ApiError, ErrorBody, FailbackRefusedBody, NotLeaderBody};
use super::events::EventView;
use super::validate::{self, MAX_REASON_LEN, MAX_REGION_LEN};
use super::{openapi, read, AppState};
use crate::auth::{Caller, Claim, Operation};
use crate::dr::probe_agent::ProbeReportBody;

/// Dependencies one probe report may name, and how long a name or status may be.
const MAX_REPORTED_DEPENDENCIES: usize = 32;
const MAX_DEPENDENCY_TEXT: usize = 64;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({"failedRegion": "us-east-1", "destinationRegion": "us-west-2",
                          "reason": "us-east-1 primary database unreachable"}))]
pub struct FailoverBody {
    failed_region: String,
    /// Where to move; the controller picks one when absent.
    destination_region: Option<String>,
    #[schema(max_length = 1024)]
    reason: String,
    /// Kept for compatibility, checked for shape, then ignored: the log records the
    /// authenticated caller.
    #[schema(max_length = 128)]
    initiated_by: Option<String>,
    /// Fail over even when the standby's last reported lag is beyond the link's RPO target
    /// (operator role only); the decision records the override and its data-loss estimate.
    break_glass: Option<bool>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({"region": "us-east-1"}))]
pub struct FailbackBody {
    /// The recovered region, to route its tenants back to.
    region: String,
    /// Kept for compatibility, checked for shape, then ignored.
    #[schema(max_length = 128)]
    initiated_by: Option<String>,
}

/// The new failover event; only its id when leadership changed before it could be read back.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum FailoverAccepted {
    Event(Box<EventView>),
    #[serde(rename_all = "camelCase")]
    Id {
        failover_id: String,
    },
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FailbackAccepted {
    region: String,
    tenants_restored: usize,
    /// The traffic shift that moves traffic back; `null` when none had to move.
    task_track_id: Option<String>,
}

/// `initiatedBy` in the log is the authenticated caller; the body's `initiatedBy` is kept for
/// compatibility, checked for shape, then ignored.
fn initiated_by(caller: Caller, claimed: Option<&str>) -> Result<String, ApiError> {
    validate::identity("initiatedBy", claimed, &caller.identity)?;
    Ok(caller.identity)
}

/// Manual failover
///
/// An operator's failover (`MANUAL_OVERRIDE`) of `failedRegion`: the decision is committed,
/// then the controller carries it out step by step (fence, shift traffic, scale the standby,
/// drained, completed), as for an automated one. Follow it in the failover log.
#[utoipa::path(
    post,
    path = "/v1/dr/failover",
    operation_id = "failover",
    tag = "dr",
    request_body = FailoverBody,
    responses(
        (status = 202, description = "Decided: the new failover event", body = FailoverAccepted),
        (status = 400, description = openapi::BAD_REQUEST, body = ErrorBody),
        (status = 409, description = "Refused by the log (e.g. a failover already in progress) or by the promotion gate (the standby's lag is beyond the link's RPO target; `breakGlass` overrides)", body = ErrorBody),
        (status = 422, description = openapi::INVALID, body = ErrorBody),
        (status = 503, description = openapi::NOT_LEADER, body = NotLeaderBody),
        (status = 504, description = openapi::TIMEOUT, body = ErrorBody),
        (status = 500, description = openapi::INTERNAL, body = ErrorBody),
    ),
)]
pub async fn failover(
    State(app): State<AppState>,
    caller: Caller,
    body: Result<Json<FailoverBody>, JsonRejection>,
) -> Result<(StatusCode, Json<FailoverAccepted>), ApiError> {
    let Json(body) = body?;
    let node = &app.node;
    let reason = validate::text("reason", &body.reason, MAX_REASON_LEN)?.to_string();
    let break_glass = body.break_glass.unwrap_or(false);
    if break_glass {
        node.auth
            .authorize(&caller, Operation::BreakGlass, Claim::Nothing)?;
    }
    let initiated_by = initiated_by(caller, body.initiated_by.as_deref())?;
    let (failed, destination) = read(node, |machine| {
        let known = validate::known_regions(machine);
        let failed = validate::region("failedRegion", &body.failed_region, &known)?;
        let destination = body
            .destination_region
            .as_deref()
            .map(|d| validate::region("destinationRegion", d, &known))
            .transpose()?;
        Ok((failed, destination))
    })
    .await?;
    if let Some(destination) = &destination {
        validate::distinct(
            ("failedRegion", &failed),
            ("destinationRegion", destination),
        )?;
    }
    let failover_id = node
        .dr
        .failover(failed, destination, initiated_by, reason, break_glass)
        .await
        .map_err(|e| ApiError::dr(node, e))?;
    // The controller returns once the decision is applied here (the leader), so the event is
    // in the local state; the bare id covers a leadership change in between.
    let accepted = match node.state.read().machine.failovers.get(&failover_id) {
        Some(event) => FailoverAccepted::Event(Box::new(EventView::from(event))),
        None => FailoverAccepted::Id {
            failover_id: failover_id.to_string(),
        },
    };
    Ok((StatusCode::ACCEPTED, Json(accepted)))
}

/// Failback
///
/// Routes a recovered region's tenants back to it, only once its cooldown has passed and its
/// replication checkpoint has caught up with the active primary (no data regression).
#[utoipa::path(
    post,
    path = "/v1/dr/failback",
    operation_id = "failback",
    tag = "dr",
    request_body = FailbackBody,
    responses(
        (status = 202, description = "Started", body = FailbackAccepted),
        (status = 400, description = openapi::BAD_REQUEST, body = ErrorBody),
        (status = 409, description = "Refused by the failback gate (the reason and its detail), or by the replicated state", body = FailbackRefusedBody),
        (status = 422, description = openapi::INVALID, body = ErrorBody),
        (status = 503, description = openapi::NOT_LEADER, body = NotLeaderBody),
        (status = 504, description = openapi::TIMEOUT, body = ErrorBody),
        (status = 500, description = openapi::INTERNAL, body = ErrorBody),
    ),
)]
pub async fn failback(
    State(app): State<AppState>,
    caller: Caller,
    body: Result<Json<FailbackBody>, JsonRejection>,
) -> Result<(StatusCode, Json<FailbackAccepted>), ApiError> {
    let Json(body) = body?;
    let node = &app.node;
    let initiated_by = initiated_by(caller, body.initiated_by.as_deref())?;
    let region = read(node, |machine| {
        validate::region("region", &body.region, &validate::known_regions(machine))
    })
    .await?;
    let started = node
        .dr
        .failback(region.clone(), initiated_by)
        .await
        .map_err(|e| ApiError::dr(node, e))?;
    Ok((
        StatusCode::ACCEPTED,
        Json(FailbackAccepted {
            region: region.to_string(),
            tenants_restored: started.tenants_restored,
            task_track_id: started.task_track_id,
        }),
    ))
}

/// Report a probe's observation
///
/// A probe agent's latest look at a region's health check, from its vantage point. An outage
/// is declared only when the configured quorum of vantage points sees it over a window.
/// Unknown fields are tolerated (agents of other versions). A probe identity reports only as
/// its own vantage point.
#[utoipa::path(
    post,
    path = "/v1/probes/report",
    operation_id = "reportProbe",
    tag = "probes",
    request_body = ProbeReportBody,
    responses(
        (status = 204, description = "Recorded"),
        (status = 400, description = openapi::BAD_REQUEST, body = ErrorBody),
        (status = 422, description = openapi::INVALID, body = ErrorBody),
        (status = 503, description = openapi::NOT_LEADER, body = NotLeaderBody),
        (status = 504, description = openapi::TIMEOUT, body = ErrorBody),
        (status = 500, description = openapi::INTERNAL, body = ErrorBody),
    ),
)]
pub async fn probe_report(
    State(app): State<AppState>,
    caller: Caller,
    body: Result<Json<ProbeReportBody>, JsonRejection>,
) -> Result<StatusCode, ApiError> {
    let Json(body) = body?;
    let node = &app.node;
    let vantage = validate::text("vantage", &body.vantage, MAX_REGION_LEN)?;
    node.auth
        .authorize(&caller, Operation::ProbeReport, Claim::Vantage(vantage))?;
    let dependencies = reported_dependencies(&body.dependencies)?;
    let region = read(node, |machine| {
        validate::region("region", &body.region, &validate::known_regions(machine))
    })
    .await?;
    node.dr
        .record_probe(ProbeReport {
            vantage: VantageId::from(vantage),
            region: region.clone(),
            ok: body.ok,
            dependencies,
            at: node.dr.mono_now(),
        })
        .map_err(|e| ApiError::dr(node, e))?;
    if let Some(count) = body.active_connections {
        node.dr.record_active_connections(region.clone(), count);
    }
    app.dependencies.record(&region, &body.dependencies);
    Ok(StatusCode::NO_CONTENT)
}

/// The report's dependency map, bounded, with each status read as the consensus reads it.
fn reported_dependencies(
    reported: &BTreeMap<String, String>,
) -> Result<BTreeMap<DependencyName, DependencyStatus>, ApiError> {
    if reported.len() > MAX_REPORTED_DEPENDENCIES {
        return Err(ApiError::Invalid(format!(
            "`dependencies` names {} entries; at most {MAX_REPORTED_DEPENDENCIES} are accepted",
            reported.len()
        )));
    }
    reported
        .iter()
        .map(|(name, status)| {
            validate::text("dependencies (name)", name, MAX_DEPENDENCY_TEXT)?;
            validate::text("dependencies (status)", status, MAX_DEPENDENCY_TEXT)?;
            Ok((
                DependencyName::from(name.as_str()),
                DependencyStatus::from_reported(status),
            ))
        })
        .collect()
}
