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

use super::error::ApiError;
use super::{read, rfc3339, validate, AppState};

const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1_000;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EventView {
    failover_id: String,
    initiated_by: String,
    failed_region: String,
    destination_region: String,
    failover_type: FailoverType,
    event_status: EventStatus,
    uncommitted_data_loss_estimate_bytes: u64,
    uncommitted_data_loss_estimate_writes: u64,
    timeline_logs: Vec<TimelineView>,
    created_at: String,
    completed_at: Option<String>,
}

#[derive(Debug, Serialize)]
struct TimelineView {
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

#[derive(Debug, Serialize)]
pub struct EventList {
    events: Vec<EventView>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListQuery {
    failed_region: Option<String>,
    limit: Option<usize>,
}

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
        let regions = match &query.failed_region {
            Some(region) => vec![validate::region("failedRegion", region, &known)?],
            // Failovers only name known regions, so their union is the whole log.
            None => known.into_iter().collect(),
        };
        let mut events: Vec<&FailoverEvent> = regions
            .iter()
            .flat_map(|region| machine.failovers.by_failed_region(region).take(limit))
            .collect();
        // Ids follow log order, so sorting by id puts the newest first across regions.
        events.sort_by_key(|event| std::cmp::Reverse(event.failover_id));
        events.truncate(limit);
        Ok(Json(EventList {
            events: events.into_iter().map(EventView::from).collect(),
        }))
    })
    .await
}

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
