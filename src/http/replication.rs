//! `GET /v1/replication/links?sourceRegion=R`: the seed's `replication_links`, with each link's
//! RPO target and whether its lag is beyond it (the RPO monitor's view).
//!
//! `{"links": [{"sourceRegion", "targetRegion", "replicationMode": "SYNC"|"ASYNC",
//! "lastSentEpochId", "lastReceivedEpochId", "replicationLagMs", "isLinkActive",
//! "lastHeartbeatAt", "rpoTargetMs", "rpoViolated"}]}`, by source then target; every link when
//! `sourceRegion` is absent.

use arbiter_core::replication::{ReplicationLink, ReplicationMode};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::Json;
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::{read, rfc3339, validate, AppState};

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct LinkView {
    source_region: String,
    target_region: String,
    replication_mode: ReplicationMode,
    last_sent_epoch_id: u64,
    last_received_epoch_id: u64,
    replication_lag_ms: u64,
    is_link_active: bool,
    last_heartbeat_at: String,
    rpo_target_ms: u64,
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

#[derive(Debug, Serialize)]
pub struct LinkList {
    links: Vec<LinkView>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LinkQuery {
    source_region: Option<String>,
}

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
