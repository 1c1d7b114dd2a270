//! `POST /v1/cluster/leader` `{"nodeId": N}` or `{"region": "eu-central-1"}`, optionally
//! `"force": true` to move during a failover (operator): moves
//! leadership there now, through the same procedure as automatic placement (see
//! [`crate::placement`]), without its cooldown. 200 with the move report
//! (`{"from", "to", "fromTerm", "newLeader", "newTerm", "writesHeldMs", "leaderlessMs",
//! "logIndex"}`); 409 when refused (a failover in progress without `force`, the target behind, a move under
//! way, or the target did not take over in time); 422 for an unknown node or region; non-leaders
//! answer 503 with `leaderHttpAddr`.

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::Json;
use serde::Deserialize;

use arbiter_core::placement::MoveReason;

use super::error::ApiError;
use super::validate::{self, MAX_REGION_LEN};
use super::AppState;
use crate::auth::Caller;
use crate::placement::MoveReport;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MoveBody {
    node_id: Option<u64>,
    region: Option<String>,
    /// Move even while a failover is in progress (the new leader resumes it from the log).
    #[serde(default)]
    force: bool,
}

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
    let report = node
        .placement
        .move_to(to, reason, body.force)
        .await
        .map_err(|e| ApiError::dr(node, e))?;
    Ok(Json(report))
}
