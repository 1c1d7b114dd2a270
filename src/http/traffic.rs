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
    DnsPropagationStatus, ShiftRequest, TaskStatus, TrafficCommand, TrafficOutcome, TrafficRefusal,
    TrafficTask,
};
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::validate::{self, MAX_NAME_LEN, MAX_REASON_LEN};
use super::{percent, read, rfc3339, AppState};
use crate::auth::Caller;

/// Longest drain accepted: a day. Longer is surely a unit mistake (ms for s).
const MAX_DRAIN_TIMEOUT_SECONDS: u32 = 86_400;

/// The seed's request; also how a task shows the request it came from.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ShiftBody {
    policy_name: String,
    source_region: String,
    target_region: String,
    traffic_shift_percentage: f64,
    drain_timeout_seconds: u32,
    reason: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ShiftAccepted {
    task_track_id: String,
    status: TaskStatus,
    dns_propagation_status: DnsPropagationStatus,
    drain_active_count: u64,
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
#[derive(Debug, Serialize)]
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

pub async fn task(
    State(app): State<AppState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<TaskView>, ApiError> {
    let Path(id) = id?;
    read(&app.node, |machine| {
        machine
            .traffic
            .task(&id)
            .map(|task| Json(TaskView::from(task)))
            .ok_or_else(|| ApiError::NotFound(format!("no traffic-shift task {id:?}")))
    })
    .await
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
