//! Replication links (the seed's `replication_links`) and the RPO monitor's view of them.
//!
//! A link: `{"sourceRegion", "targetRegion", "replicationMode": "SYNC"|"ASYNC",
//! "lastSentEpochId", "lastReceivedEpochId", "replicationLagMs", "isLinkActive",
//! "lastHeartbeatAt", "rpoTargetMs", "rpoViolated"}`.
//!
//! - `GET /v1/replication/links?sourceRegion=R` → `{"links": [link, ...]}` by source then
//!   target; every link when `sourceRegion` is absent.
//! - `PUT /v1/replication/links` `{"sourceRegion", "targetRegion", "replicationMode"}` → 200
//!   with the link: declares it, or changes the mode of an existing one (its progress is kept).
//! - `POST /v1/replication/links/heartbeat` `{"sourceRegion", "targetRegion",
//!   "lastSentEpochId", "lastReceivedEpochId", "replicationLagMs", "isLinkActive"}` → 200 with
//!   the link: the replication engine's report of the link's progress, which feeds
//!   `GetSyncMetrics`, the RPO monitor and the failover data-loss estimate. An undeclared link
//!   is 404.
//!
//! Numbers take the seed's column types (`BIGINT` epochs, `INT` lag), so a value the table could
//! not hold is refused rather than truncated.
//!
//! Invariant: a write is checked against the replicated state it will be applied to (known,
//! distinct regions; an existing link for a heartbeat; received ≤ sent) before it is proposed.
//! Links are never deleted, so a link seen here still exists when the entry is applied.

use arbiter_core::command::{Command, Outcome};
use arbiter_core::replication::{
    EpochId, ReplicationCommand, ReplicationLink, ReplicationMode, ReplicationOutcome,
    ReplicationRefusal,
};
use arbiter_core::state_machine::StateMachine;
use arbiter_core::RegionId;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, ErrorBody, NotLeaderBody};
use super::{openapi, read, rfc3339, validate, AppState};
use crate::auth::{Caller, Claim, Operation};
use crate::node::NodeContext;

/// A replication link (the seed's `replication_links`) and its RPO state.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LinkView {
    source_region: String,
    target_region: String,
    replication_mode: ReplicationMode,
    last_sent_epoch_id: u64,
    last_received_epoch_id: u64,
    replication_lag_ms: u64,
    is_link_active: bool,
    /// RFC 3339, UTC.
    last_heartbeat_at: String,
    /// The mode's recovery point objective: 0 for `SYNC`, 5,000 for `ASYNC`.
    rpo_target_ms: u64,
    /// Whether an active link lags beyond its target (inactive links are not counted: their
    /// last lag is stale).
    rpo_violated: bool,
}

impl From<&ReplicationLink> for LinkView {
    fn from(link: &ReplicationLink) -> Self {
        LinkView {
            source_region: link.source_region.to_string(),
            target_region: link.target_region.to_string(),
            replication_mode: link.replication_mode,
            last_sent_epoch_id: link.last_sent_epoch_id.0,
            last_received_epoch_id: link.last_received_epoch_id.0,
            replication_lag_ms: link.replication_lag_ms,
            is_link_active: link.is_link_active,
            last_heartbeat_at: rfc3339::format(link.last_heartbeat_at),
            rpo_target_ms: link.replication_mode.rpo_target_ms(),
            rpo_violated: link.rpo_violation().is_some(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LinkList {
    links: Vec<LinkView>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct LinkQuery {
    /// Only links replicating out of this region.
    source_region: Option<String>,
}

/// Replication links
///
/// Every link, or those out of one region, by source then target.
#[utoipa::path(
    get,
    path = "/v1/replication/links",
    operation_id = "listReplicationLinks",
    tag = "replication",
    params(LinkQuery),
    responses(
        (status = 200, description = "The links", body = LinkList),
        (status = 400, description = openapi::BAD_QUERY, body = ErrorBody),
        (status = 422, description = "An unknown region", body = ErrorBody),
        (status = 503, description = openapi::NOT_LEADER, body = NotLeaderBody),
        (status = 504, description = openapi::TIMEOUT, body = ErrorBody),
        (status = 500, description = openapi::INTERNAL, body = ErrorBody),
    ),
)]
pub async fn links(
    State(app): State<AppState>,
    query: Result<Query<LinkQuery>, QueryRejection>,
) -> Result<Json<LinkList>, ApiError> {
    let Query(query) = query?;
    read(&app.node, |machine| {
        let replication = &machine.replication;
        let links = match &query.source_region {
            Some(source) => {
                let known = validate::known_regions(machine);
                let source = validate::region("sourceRegion", source, &known)?;
                replication
                    .links_from(&source)
                    .map(LinkView::from)
                    .collect()
            }
            None => replication.links().map(LinkView::from).collect(),
        };
        Ok(Json(LinkList { links }))
    })
    .await
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({"sourceRegion": "us-east-1", "targetRegion": "us-west-2", "replicationMode": "SYNC"}))]
pub struct LinkBody {
    source_region: String,
    target_region: String,
    replication_mode: ReplicationMode,
}

/// Signed as in the seed's columns, so that a negative value gets a message naming the field
/// rather than serde's "expected u64".
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({"sourceRegion": "us-east-1", "targetRegion": "us-west-2",
                          "lastSentEpochId": 1042, "lastReceivedEpochId": 1040,
                          "replicationLagMs": 120, "isLinkActive": true}))]
pub struct HeartbeatBody {
    source_region: String,
    target_region: String,
    #[schema(minimum = 0)]
    last_sent_epoch_id: i64,
    /// At most `lastSentEpochId`.
    #[schema(minimum = 0)]
    last_received_epoch_id: i64,
    #[schema(minimum = 0)]
    replication_lag_ms: i32,
    is_link_active: bool,
}

/// Declare a link or change its mode
///
/// Declares the link, or changes the mode of an existing one (its progress is kept).
#[utoipa::path(
    put,
    path = "/v1/replication/links",
    operation_id = "putReplicationLink",
    tag = "replication",
    request_body = LinkBody,
    responses(
        (status = 200, description = "The link as written", body = LinkView),
        (status = 400, description = openapi::BAD_REQUEST, body = ErrorBody),
        (status = 409, description = "Refused by the replicated state", body = ErrorBody),
        (status = 422, description = openapi::INVALID, body = ErrorBody),
        (status = 503, description = openapi::NOT_LEADER, body = NotLeaderBody),
        (status = 504, description = openapi::TIMEOUT, body = ErrorBody),
        (status = 500, description = openapi::INTERNAL, body = ErrorBody),
    ),
)]
pub async fn upsert(
    State(app): State<AppState>,
    body: Result<Json<LinkBody>, JsonRejection>,
) -> Result<Json<LinkView>, ApiError> {
    let Json(body) = body?;
    let node = &app.node;
    let (source, target) = read(node, |machine| {
        endpoints(machine, &body.source_region, &body.target_region)
    })
    .await?;
    let command = ReplicationCommand::UpsertLink {
        source: source.clone(),
        target: target.clone(),
        mode: body.replication_mode,
    };
    propose(node, command, &source, &target).await
}

/// Report a link's progress
///
/// The replication engine's report of a link's progress, which feeds `GetSyncMetrics`, the
/// RPO monitor and the failover data-loss estimate. A region identity reports only the links
/// out of its own region.
#[utoipa::path(
    post,
    path = "/v1/replication/links/heartbeat",
    operation_id = "reportLinkHeartbeat",
    tag = "replication",
    request_body = HeartbeatBody,
    responses(
        (status = 200, description = "The link as written", body = LinkView),
        (status = 400, description = openapi::BAD_REQUEST, body = ErrorBody),
        (status = 404, description = "The link is not declared (`PUT /v1/replication/links`)", body = ErrorBody),
        (status = 409, description = "Refused by the replicated state", body = ErrorBody),
        (status = 422, description = "A negative number, received ahead of sent, or an unknown or repeated region", body = ErrorBody),
        (status = 503, description = openapi::NOT_LEADER, body = NotLeaderBody),
        (status = 504, description = openapi::TIMEOUT, body = ErrorBody),
        (status = 500, description = openapi::INTERNAL, body = ErrorBody),
    ),
)]
pub async fn heartbeat(
    State(app): State<AppState>,
    caller: Caller,
    body: Result<Json<HeartbeatBody>, JsonRejection>,
) -> Result<Json<LinkView>, ApiError> {
    let Json(body) = body?;
    // A region's agent reports the links it replicates out of.
    app.node.auth.authorize(
        &caller,
        Operation::LinkHeartbeat,
        Claim::Region(&body.source_region),
    )?;
    let sent = non_negative("lastSentEpochId", body.last_sent_epoch_id)?;
    let received = non_negative("lastReceivedEpochId", body.last_received_epoch_id)?;
    let lag_ms = non_negative("replicationLagMs", body.replication_lag_ms.into())?;
    if received > sent {
        return Err(ApiError::Invalid(format!(
            "`lastReceivedEpochId` ({received}) is ahead of `lastSentEpochId` ({sent})"
        )));
    }
    let node = &app.node;
    let (source, target) = read(node, |machine| {
        let (source, target) = endpoints(machine, &body.source_region, &body.target_region)?;
        match machine.replication.link(&source, &target) {
            Some(_) => Ok((source, target)),
            None => Err(ApiError::NotFound(format!(
                "no replication link from {source} to {target}; declare it with PUT /v1/replication/links"
            ))),
        }
    })
    .await?;
    let command = ReplicationCommand::LinkHeartbeat {
        source: source.clone(),
        target: target.clone(),
        last_sent_epoch_id: EpochId(sent),
        last_received_epoch_id: EpochId(received),
        replication_lag_ms: lag_ms,
        is_link_active: body.is_link_active,
    };
    propose(node, command, &source, &target).await
}

/// The (source, target) of a write: regions the arbiter knows, and not the same one.
fn endpoints(
    machine: &StateMachine,
    source: &str,
    target: &str,
) -> Result<(RegionId, RegionId), ApiError> {
    let known = validate::known_regions(machine);
    let source = validate::region("sourceRegion", source, &known)?;
    let target = validate::region("targetRegion", target, &known)?;
    validate::distinct(("sourceRegion", &source), ("targetRegion", &target))?;
    Ok((source, target))
}

fn non_negative(field: &str, value: i64) -> Result<u64, ApiError> {
    u64::try_from(value)
        .map_err(|_| ApiError::Invalid(format!("`{field}` must not be negative, got {value}")))
}

/// Proposes a link write and answers with the link as applied.
async fn propose(
    node: &NodeContext,
    command: ReplicationCommand,
    source: &RegionId,
    target: &RegionId,
) -> Result<Json<LinkView>, ApiError> {
    match node
        .proposer
        .propose(Command::Replication(command))
        .await
        .map_err(|e| ApiError::write(node, e))?
    {
        Outcome::Replication(ReplicationOutcome::LinkUpdated) => {}
        Outcome::Replication(ReplicationOutcome::Refused(refusal)) => return Err(refused(refusal)),
        other => {
            return Err(ApiError::Internal(format!(
                "a replication link write produced {other:?}"
            )))
        }
    }
    // The proposer answers once the entry is applied here, so the link is in the local state;
    // a write applied since then may show through, which is as fresh as a read would be.
    let state = node.state.read();
    state
        .machine
        .replication
        .link(source, target)
        .map(|link| Json(LinkView::from(link)))
        .ok_or_else(|| {
            ApiError::Internal(format!("link {source} → {target} vanished after a write"))
        })
}

/// Refusals the checks above should already have caught; a race or a newer rule lands here.
fn refused(refusal: ReplicationRefusal) -> ApiError {
    match refusal {
        ReplicationRefusal::LinkNotFound { .. } => ApiError::NotFound(refusal.to_string()),
        ReplicationRefusal::SameRegion { .. } | ReplicationRefusal::ReceivedAheadOfSent { .. } => {
            ApiError::Invalid(refusal.to_string())
        }
        other => ApiError::Conflict(other.to_string()),
    }
}
