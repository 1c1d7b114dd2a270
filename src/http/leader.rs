//! `POST /v1/cluster/leader` `{"nodeId": N}` or `{"region": "eu-central-1"}`, optionally
//! `"force": true` to move during a failover (operator): moves
//! leadership there now, through the same procedure as automatic placement (see
//! [`crate::placement`]), without its cooldown. 200 with the move report
//! (`{"from", "to", "fromTerm", "newLeader", "newTerm", "writesHeldMs", "leaderlessMs",
//! "logIndex"}`); 409 when refused (a failover in progress without `force`, the target behind,
//! a move under way, or another node took over); 504 when the target did not acknowledge or
//! take over in time (outcome unknown: the entry is in the log, and the target acts on it only
//! while it is current); 422 for an unknown node or region; non-leaders answer 503 with
//! `leaderHttpAddr`.

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::Json;
use serde::Deserialize;

use arbiter_core::placement::MoveReason;

use super::error::{ApiError, ErrorBody, NotLeaderBody};
use super::validate::{self, MAX_REGION_LEN};
use super::AppState;
use crate::auth::Caller;
use crate::placement::MoveReport;

/// Exactly one of `nodeId` and `region`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({"region": "eu-central-1"}))]
pub struct MoveBody {
    /// The voter to move leadership to.
    node_id: Option<u64>,
    /// The region whose voter should lead.
    region: Option<String>,
    /// Move even while a failover is in progress (the new leader resumes it from the log).
    #[serde(default)]
    force: bool,
}

/// Move leadership
///
/// Moves Raft leadership (and the DR controller with it) to a node or region now, through
/// the same procedure as automatic placement, without its cooldown. Writes pause at the old
/// leader until the new one takes over.
#[utoipa::path(
    post,
    path = "/v1/cluster/leader",
    operation_id = "moveLeader",
    tag = "cluster",
    request_body = MoveBody,
    responses(
        (status = 200, description = "Moved; the report says how long writes were held", body = MoveReport),
        (status = 400, description = super::openapi::BAD_REQUEST, body = ErrorBody),
        (status = 409, description = "Refused: a failover in progress (without `force`), the target behind, a move under way, or another node took over", body = ErrorBody),
        (status = 422, description = "An unknown node or region, or not exactly one of `nodeId` and `region`", body = ErrorBody),
        (status = 503, description = super::openapi::NOT_LEADER, body = NotLeaderBody),
        (status = 504, description = "The target did not acknowledge or take over in time; the entry is in the log and acted on only while current", body = ErrorBody),
        (status = 500, description = super::openapi::INTERNAL, body = ErrorBody),
    ),
)]
pub async fn move_leader(
    State(app): State<AppState>,
    caller: Caller,
    body: Result<Json<MoveBody>, JsonRejection>,
) -> Result<Json<MoveReport>, ApiError> {
    let Json(body) = body?;
    let node = &app.node;
    let to = match (body.node_id, body.region.as_deref()) {
        (Some(id), None) => id,
        (None, Some(region)) => {
            let region = validate::text("region", region, MAX_REGION_LEN)?;
            let metrics = node.raft.metrics().borrow().clone();
            let membership = metrics.membership_config.membership();
            let voter = membership
                .voter_ids()
                .find(|id| membership.get_node(id).is_some_and(|m| m.region == region));
            voter.ok_or_else(|| ApiError::Invalid(format!("no voter in region {region:?}")))?
        }
        _ => {
            return Err(ApiError::Invalid(
                "give exactly one of `nodeId` and `region`".into(),
            ))
        }
    };
    let reason = MoveReason::Operator {
        identity: caller.identity,
    };
    // In a task of its own: a caller that gives up must not cut a move off halfway (writes
    // paused, the entry written).
    let placement = node.placement.clone();
    let moved = tokio::spawn(async move { placement.move_to(to, reason, body.force).await })
        .await
        .map_err(|e| ApiError::Internal(format!("leadership move task: {e}")))?;
    let report = moved.map_err(|e| ApiError::dr(node, e))?;
    Ok(Json(report))
}
