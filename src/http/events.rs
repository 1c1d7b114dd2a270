//! The failover log (the seed's `failover_events`): `GET /v1/failover-events?failedRegion=R`
//! (newest first, by log order) and `GET /v1/failover-events/{failoverId}`.
//!
//! An event, with the seed's columns in camelCase:
//! `{"failoverId": "fo-<token>", "initiatedBy", "failedRegion", "destinationRegion",
//! "failoverType": "AUTOMATED"|"MANUAL_OVERRIDE", "eventStatus":
//! "INITIATED"|"DRAINED"|"COMPLETED"|"FAILED", "uncommittedDataLossEstimateBytes",
//! "uncommittedDataLossEstimateWrites", "timelineLogs": [{"at", "step", "detail"}],
//! "createdAt", "completedAt"}`. A list is `{"events": [...]}`, at most `limit` (default 100,
//! at most 1000) of them.

use arbiter_core::failover_log::{
    EventStatus, FailoverEvent, FailoverId, FailoverStep, FailoverType,
};
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, ErrorBody, NotLeaderBody};
use super::{openapi, read, rfc3339, validate, AppState};

const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1_000;

/// One failover, with the seed's `failover_events` columns in camelCase.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventView {
    /// `fo-<token>`.
    #[schema(example = "fo-4096")]
    failover_id: String,
    initiated_by: String,
    failed_region: String,
    destination_region: String,
    failover_type: FailoverType,
    event_status: EventStatus,
    uncommitted_data_loss_estimate_bytes: u64,
    uncommitted_data_loss_estimate_writes: u64,
    /// Each step as it was recorded, in order.
    timeline_logs: Vec<TimelineView>,
    /// RFC 3339, UTC.
    created_at: String,
    /// `null` until `COMPLETED` or `FAILED`.
    completed_at: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
struct TimelineView {
    /// RFC 3339, UTC.
    at: String,
    step: FailoverStep,
    detail: String,
}

impl From<&FailoverEvent> for EventView {
    fn from(event: &FailoverEvent) -> Self {
        EventView {
            failover_id: event.failover_id.to_string(),
            initiated_by: event.initiated_by.clone(),
            failed_region: event.failed_region.to_string(),
            destination_region: event.destination_region.to_string(),
            failover_type: event.failover_type,
            event_status: event.event_status,
            uncommitted_data_loss_estimate_bytes: event.uncommitted_data_loss_estimate_bytes,
            uncommitted_data_loss_estimate_writes: event.uncommitted_data_loss_estimate_writes,
            timeline_logs: event
                .timeline_logs
                .iter()
                .map(|entry| TimelineView {
                    at: rfc3339::format(entry.at),
                    step: entry.step,
                    detail: entry.detail.clone(),
                })
                .collect(),
            created_at: rfc3339::format(event.created_at),
            completed_at: event.completed_at.map(rfc3339::format),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EventList {
    events: Vec<EventView>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only failovers of this region.
    failed_region: Option<String>,
    /// At most this many (default 100, capped at 1000).
    #[param(minimum = 1)]
    limit: Option<usize>,
}

/// The failover log
///
/// Failovers newest first (by log order), with their timelines and data-loss estimates.
#[utoipa::path(
    get,
    path = "/v1/failover-events",
    operation_id = "listFailoverEvents",
    tag = "dr",
    params(ListQuery),
    responses(
        (status = 200, description = "The failovers", body = EventList),
        (status = 400, description = openapi::BAD_QUERY, body = ErrorBody),
        (status = 422, description = "`limit` is 0, or an unknown region", body = ErrorBody),
        (status = 503, description = openapi::NOT_LEADER, body = NotLeaderBody),
        (status = 504, description = openapi::TIMEOUT, body = ErrorBody),
        (status = 500, description = openapi::INTERNAL, body = ErrorBody),
    ),
)]
pub async fn list(
    State(app): State<AppState>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<EventList>, ApiError> {
    let Query(query) = query?;
    let limit = match query.limit {
        Some(0) => return Err(ApiError::Invalid("`limit` must be positive".into())),
        Some(limit) => limit.min(MAX_LIMIT),
        None => DEFAULT_LIMIT,
    };
    read(&app.node, |machine| {
        let known = validate::known_regions(machine);
        // The whole log when no region is asked for: a break-glass override of a lease held
        // by an identity bound to no region names no known region.
        let region = query
            .failed_region
            .as_deref()
            .map(|region| validate::region("failedRegion", region, &known))
            .transpose()?;
        let events: Vec<&FailoverEvent> = match &region {
            Some(region) => machine
                .failovers
                .by_failed_region(region)
                .take(limit)
                .collect(),
            None => machine.failovers.newest_first().take(limit).collect(),
        };
        Ok(Json(EventList {
            events: events.into_iter().map(EventView::from).collect(),
        }))
    })
    .await
}

/// One failover
#[utoipa::path(
    get,
    path = "/v1/failover-events/{id}",
    operation_id = "getFailoverEvent",
    tag = "dr",
    params(("id" = String, Path, description = "The failover's `failoverId`", example = "fo-4096")),
    responses(
        (status = 200, description = "The failover", body = EventView),
        (status = 404, description = "No such failover, or not a failover id", body = ErrorBody),
        (status = 503, description = openapi::NOT_LEADER, body = NotLeaderBody),
        (status = 504, description = openapi::TIMEOUT, body = ErrorBody),
        (status = 500, description = openapi::INTERNAL, body = ErrorBody),
    ),
)]
pub async fn get(
    State(app): State<AppState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<EventView>, ApiError> {
    let Path(id) = id?;
    let failover_id: FailoverId =
        id.parse()
            .map_err(|e: arbiter_core::failover_log::InvalidFailoverId| {
                ApiError::NotFound(e.to_string())
            })?;
    read(&app.node, |machine| {
        machine
            .failovers
            .get(&failover_id)
            .map(|event| Json(EventView::from(event)))
            .ok_or_else(|| ApiError::NotFound(format!("no failover {failover_id}")))
    })
    .await
}
