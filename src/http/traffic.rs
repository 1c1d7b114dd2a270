//! The seed's traffic-routing override: `POST /v1/dr/traffic-shift` and `GET /v1/dr/tasks/{id}`.
//!
//! Request (exactly the seed's; unknown fields are refused so a typo cannot go unnoticed):
//! `{"policyName", "sourceRegion", "targetRegion", "trafficShiftPercentage": 0..=100,
//! "drainTimeoutSeconds", "reason"}`.
//!
//! 202 (exactly the seed's): `{"taskTrackId": "dr_shift_<hex>", "status": "IN_PROGRESS",
//! "dnsPropagationStatus": "INITIATED", "drainActiveCount", "updatedAt": "<RFC 3339>"}`. The
//! weights change when the shift is applied; the traffic driver then moves the task to
//! `COMPLETED` or `FAILED`, which `GET /v1/dr/tasks/{id}` shows with the request beside it.

use arbiter_core::command::{Command, Outcome};
use arbiter_core::routing::FULL_WEIGHT_BP;
use arbiter_core::traffic::{
    task_token, DnsPropagationStatus, ShiftRequest, TaskStatus, TrafficCommand, TrafficOutcome,
    TrafficRefusal, TrafficTask,
};
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};

use utoipa::ToSchema;

use super::error::{ApiError, ErrorBody, NotLeaderBody};
use super::validate::{self, MAX_NAME_LEN, MAX_REASON_LEN};
use super::{openapi, percent, read, rfc3339, AppState};
use crate::auth::Caller;
use crate::dr::edges::Propagation;

/// Longest drain accepted: a day. Longer is surely a unit mistake (ms for s).
const MAX_DRAIN_TIMEOUT_SECONDS: u32 = 86_400;

/// The seed's request; also how a task shows the request it came from.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({
    "policyName": "failover_us_east_primary", "sourceRegion": "us-east-1",
    "targetRegion": "us-west-2", "trafficShiftPercentage": 100.0, "drainTimeoutSeconds": 30,
    "reason": "Outage detected: us-east-1 API Gateway packet loss greater than 80%"
}))]
pub struct ShiftBody {
    #[schema(max_length = 128)]
    policy_name: String,
    /// A region the arbiter knows; not the target.
    source_region: String,
    target_region: String,
    /// The share of the source's traffic to move, in percent.
    #[schema(minimum = 0.0, maximum = 100.0)]
    traffic_shift_percentage: f64,
    #[schema(maximum = 86_400)]
    drain_timeout_seconds: u32,
    #[schema(max_length = 1024)]
    reason: String,
}

/// The seed's 202.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({
    "taskTrackId": "dr_shift_88192ab", "status": "IN_PROGRESS",
    "dnsPropagationStatus": "INITIATED", "drainActiveCount": 14205,
    "updatedAt": "2026-06-07T12:12:00Z"
}))]
pub struct ShiftAccepted {
    /// `dr_shift_<hex>`; follow it at `GET /v1/dr/tasks/{id}`.
    task_track_id: String,
    status: TaskStatus,
    dns_propagation_status: DnsPropagationStatus,
    /// Connections the source region reported as active when the shift was decided.
    drain_active_count: u64,
    /// RFC 3339, UTC, whole seconds.
    updated_at: String,
}

impl From<&TrafficTask> for ShiftAccepted {
    fn from(task: &TrafficTask) -> Self {
        ShiftAccepted {
            task_track_id: task.task_track_id.clone(),
            status: task.status,
            dns_propagation_status: task.dns_propagation_status,
            drain_active_count: task.request.drain_active_count,
            updated_at: rfc3339::format(task.updated_at),
        }
    }
}

/// A task as `GET /v1/dr/tasks/{id}` shows it: the 202's fields, then the request and result.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TaskView {
    #[serde(flatten)]
    summary: ShiftAccepted,
    #[serde(flatten)]
    request: ShiftBody,
    initiated_by: String,
    /// The driver's report once finished; empty before.
    detail: String,
    created_at: String,
    /// The two regions' traffic shares right after the shift, in percent.
    source_weight_percentage: f64,
    target_weight_percentage: f64,
    /// While the task is in progress: which edge routers have applied its routing version
    /// and which lag (absent once finished; the result is then in `detail`).
    #[serde(skip_serializing_if = "Option::is_none")]
    propagation: Option<Propagation>,
    /// While the task is in progress: requests the edges report in flight to the source now.
    #[serde(skip_serializing_if = "Option::is_none")]
    in_flight_to_source: Option<u64>,
}

impl From<&TrafficTask> for TaskView {
    fn from(task: &TrafficTask) -> Self {
        let request = &task.request;
        TaskView {
            summary: task.into(),
            request: ShiftBody {
                policy_name: request.policy_name.clone(),
                source_region: request.source_region.to_string(),
                target_region: request.target_region.to_string(),
                traffic_shift_percentage: percent(request.percentage_bp),
                drain_timeout_seconds: request.drain_timeout_seconds,
                reason: request.reason.clone(),
            },
            initiated_by: request.initiated_by.clone(),
            detail: task.detail.clone(),
            created_at: rfc3339::format(task.created_at),
            source_weight_percentage: percent(task.shift.source_bp),
            target_weight_percentage: percent(task.shift.target_bp),
            propagation: None,
            in_flight_to_source: None,
        }
    }
}

/// `trafficShiftPercentage` in basis points, if it is a percentage.
fn basis_points(percentage: f64) -> Result<u32, ApiError> {
    if !(0.0..=100.0).contains(&percentage) {
        return Err(ApiError::Invalid(format!(
            "`trafficShiftPercentage` must be within 0..=100, got {percentage}"
        )));
    }
    // In 0..=10_000 after the check, so the cast neither truncates nor saturates.
    Ok(((percentage * 100.0).round() as u32).min(FULL_WEIGHT_BP))
}

/// Shift traffic (the seed's override)
///
/// Moves `trafficShiftPercentage` of the source region's traffic to the target. The weights
/// change when the shift is applied; the traffic driver then moves the task to `COMPLETED` or
/// `FAILED`. Unknown fields are refused, so a typo cannot go unnoticed.
#[utoipa::path(
    post,
    path = "/v1/dr/traffic-shift",
    operation_id = "shiftTraffic",
    tag = "dr",
    request_body = ShiftBody,
    responses(
        (status = 202, description = "Accepted: the shift is applied, the driver carries it out", body = ShiftAccepted),
        (status = 400, description = openapi::BAD_REQUEST, body = ErrorBody),
        (status = 409, description = "Refused by the replicated state (e.g. no traffic weights yet)", body = ErrorBody),
        (status = 422, description = openapi::INVALID, body = ErrorBody),
        (status = 503, description = openapi::NOT_LEADER, body = NotLeaderBody),
        (status = 504, description = openapi::TIMEOUT, body = ErrorBody),
        (status = 500, description = openapi::INTERNAL, body = ErrorBody),
    ),
)]
pub async fn shift(
    State(app): State<AppState>,
    caller: Caller,
    body: Result<Json<ShiftBody>, JsonRejection>,
) -> Result<(StatusCode, Json<ShiftAccepted>), ApiError> {
    let Json(body) = body?;
    let node = &app.node;
    let policy_name = validate::text("policyName", &body.policy_name, MAX_NAME_LEN)?;
    let reason = validate::text("reason", &body.reason, MAX_REASON_LEN)?;
    let percentage_bp = basis_points(body.traffic_shift_percentage)?;
    if body.drain_timeout_seconds > MAX_DRAIN_TIMEOUT_SECONDS {
        return Err(ApiError::Invalid(format!(
            "`drainTimeoutSeconds` must be at most {MAX_DRAIN_TIMEOUT_SECONDS}, got {}",
            body.drain_timeout_seconds
        )));
    }
    let (source, target) = read(node, |machine| {
        let known = validate::known_regions(machine);
        let source = validate::region("sourceRegion", &body.source_region, &known)?;
        let target = validate::region("targetRegion", &body.target_region, &known)?;
        Ok((source, target))
    })
    .await?;
    validate::distinct(("sourceRegion", &source), ("targetRegion", &target))?;
    let request = ShiftRequest {
        policy_name: policy_name.to_string(),
        drain_active_count: node.dr.drain_active_count(&source),
        source_region: source,
        target_region: target,
        percentage_bp,
        drain_timeout_seconds: body.drain_timeout_seconds,
        reason: reason.to_string(),
        // The authenticated identity, never a field of the request.
        initiated_by: caller.identity,
    };
    let outcome = node
        .proposer
        .propose(Command::Traffic(TrafficCommand::Shift(request)))
        .await
        .map_err(|e| ApiError::write(node, e))?;
    match outcome {
        Outcome::Traffic(TrafficOutcome::Started(task)) => Ok((
            StatusCode::ACCEPTED,
            Json(ShiftAccepted::from(task.as_ref())),
        )),
        Outcome::Traffic(TrafficOutcome::Refused(TrafficRefusal::Invalid(reason))) => {
            Err(ApiError::Invalid(reason))
        }
        Outcome::Traffic(TrafficOutcome::Refused(refusal)) => {
            Err(ApiError::Conflict(refusal.to_string()))
        }
        other => Err(ApiError::Internal(format!(
            "a traffic shift produced {other:?}"
        ))),
    }
}

/// A traffic-shift task
///
/// The 202's fields as they stand now, the request beside them, the driver's report once
/// finished and the two regions' shares right after the shift.
#[utoipa::path(
    get,
    path = "/v1/dr/tasks/{id}",
    operation_id = "getTrafficTask",
    tag = "dr",
    params(("id" = String, Path, description = "The task's `taskTrackId`", example = "dr_shift_88192ab")),
    responses(
        (status = 200, description = "The task", body = TaskView),
        (status = 404, description = "No such task", body = ErrorBody),
        (status = 503, description = openapi::NOT_LEADER, body = NotLeaderBody),
        (status = 504, description = openapi::TIMEOUT, body = ErrorBody),
        (status = 500, description = openapi::INTERNAL, body = ErrorBody),
    ),
)]
pub async fn task(
    State(app): State<AppState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<TaskView>, ApiError> {
    let Path(id) = id?;
    let node = &app.node;
    let task = read(node, |machine| {
        machine
            .traffic
            .task(&id)
            .cloned()
            .ok_or_else(|| ApiError::NotFound(format!("no traffic-shift task {id:?}")))
    })
    .await?;
    let mut view = TaskView::from(&task);
    if task.status == TaskStatus::InProgress {
        let index = task_token(&task.task_track_id).map_or(0, |t| t.log_index());
        view.propagation = node.dr.edge_propagation(index);
        view.in_flight_to_source = Some(node.dr.drain_active_count(&task.request.source_region));
    }
    Ok(Json(view))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_become_basis_points() {
        assert_eq!(basis_points(100.0).ok(), Some(10_000));
        assert_eq!(basis_points(0.0).ok(), Some(0));
        assert_eq!(basis_points(12.345).ok(), Some(1_235));
        for bad in [150.0, -1.0, 100.01, f64::NAN, f64::INFINITY] {
            assert!(basis_points(bad).is_err(), "{bad} accepted");
        }
    }
}
