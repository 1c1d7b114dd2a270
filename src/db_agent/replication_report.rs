//! The db-agent's replication reports: its database's WAL position as the region's checkpoint
//! epoch (the seed's `ReportCheckpoint`), and, on a primary, each outgoing link's progress
//! (`POST /v1/replication/links/heartbeat`), so `GetSyncMetrics`, the RPO monitor and the
//! failover data-loss estimate come from the database.
//!
//! - Epoch: a primary's `pg_current_wal_lsn()`, a standby's `pg_last_wal_replay_lsn()`, as a
//!   byte offset; the signature `wal:<LSN>` marks it as one
//!   (`arbiter_core::replication::WAL_POSITION_SIGNATURE_PREFIX`), so the arbiter measures
//!   pending bytes and throughput as differences of positions.
//! - Link: sent = the standby's `sent_lsn`, received = its `replay_lsn` (a standby has what it
//!   has replayed); lag = the larger of PostgreSQL's own `greatest(replay_lag, write_lag)` and
//!   [`LagTracker`]'s: how long ago the primary first stood beyond the replayed position. The
//!   second keeps growing while a standby hangs (PostgreSQL's lag columns only move when the
//!   standby answers). A synchronous standby (`sync_state` `sync` or `quorum`) is reported
//!   with lag 0: every acknowledged commit waited for its flush, so promoting it loses
//!   nothing acknowledged (this assumes the default `synchronous_commit = on`; a transaction
//!   that turns it off is acknowledged without the standby). The standby of target region `R` is the `pg_stat_replication` row whose
//!   `application_name` is `R` (its `cluster_name`), unless `--standby-name R=NAME` says
//!   otherwise; a link without its row is reported inactive.
//!
//! Invariant: reports are idempotent (a checkpoint is sent only when the position moved, a
//! heartbeat restates the link), so a lost or repeated report changes nothing but freshness.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use arbiter_client::proto::replication::replication_coordinator_client::ReplicationCoordinatorClient;
use arbiter_client::proto::replication::CheckpointRequest;
use arbiter_client::{ClientOptions, RegionId};
use arbiter_core::replication::WAL_POSITION_SIGNATURE_PREFIX;
use serde_json::{json, Value};
use tokio::time::Instant;

use super::database::{lsn_text, DbRole, Progress};
use crate::api_client::{Answer, ApiClient};

/// Samples kept by a [`LagTracker`]: an hour at the default interval of one second.
const MAX_SAMPLES: usize = 3_600;

/// The primary's WAL position over time, to turn "the standby has replayed up to R" into "the
/// standby is this far behind in time".
#[derive(Debug, Default)]
pub struct LagTracker {
    samples: VecDeque<(Instant, u64)>,
}

impl LagTracker {
    /// Records the primary's position `lsn` at `at` (non-decreasing in both).
    pub fn record(&mut self, at: Instant, lsn: u64) {
        if self.samples.len() == MAX_SAMPLES {
            self.samples.pop_front();
        }
        self.samples.push_back((at, lsn));
    }

    /// How long ago, at least, the primary first stood beyond `replayed`: `now` − the first
    /// sample above it; zero when no sample is above it. A lower bound by at most one sample
    /// interval (the write may have come just after the sample before).
    pub fn lag(&self, now: Instant, replayed: u64) -> Duration {
        self.samples
            .iter()
            .find(|(_, lsn)| *lsn > replayed)
            .map_or(Duration::ZERO, |(at, _)| now.saturating_duration_since(*at))
    }

    /// Forget everything: the database changed role, its positions start a new story.
    pub fn clear(&mut self) {
        self.samples.clear();
    }
}

/// What one report round sent, for the agent's status and metrics.
#[derive(Debug, Clone, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReportSummary {
    pub role: Option<DbRole>,
    pub wal_lsn: Option<String>,
    pub wal_bytes: u64,
    pub links: Vec<LinkReport>,
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LinkReport {
    pub target_region: String,
    pub sent_bytes: u64,
    pub replayed_bytes: u64,
    pub pending_bytes: u64,
    pub lag_ms: u64,
    pub active: bool,
}

/// Reports one region's progress to the arbiter.
pub struct Reporter {
    region: RegionId,
    grpc_endpoints: Vec<String>,
    client_options: ClientOptions,
    /// Index of the endpoint that last took a report: the leader, most likely.
    leader_guess: usize,
    api: ApiClient,
    standby_names: BTreeMap<String, String>,
    tracker: LagTracker,
    last_role: Option<DbRole>,
    last_epoch: Option<u64>,
    /// Last replayed position seen per target, for a link whose standby has gone away.
    last_replayed: BTreeMap<String, u64>,
}

impl Reporter {
    pub fn new(
        region: RegionId,
        grpc_endpoints: Vec<String>,
        client_options: ClientOptions,
        api: ApiClient,
        standby_names: BTreeMap<String, String>,
    ) -> Reporter {
        Reporter {
            region,
            grpc_endpoints,
            client_options,
            leader_guess: 0,
            api,
            standby_names,
            tracker: LagTracker::default(),
            last_role: None,
            last_epoch: None,
            last_replayed: BTreeMap::new(),
        }
    }

    /// One round: checkpoint if the position moved, then heartbeats for the links out of this
    /// region (a primary's only). Errors are in the summary; the next round tries again.
    pub async fn report(&mut self, progress: &Progress) -> ReportSummary {
        let now = Instant::now();
        if self.last_role != Some(progress.role) {
            self.tracker.clear();
            self.last_role = Some(progress.role);
        }
        let mut summary = ReportSummary {
            role: Some(progress.role),
            wal_lsn: Some(lsn_text(progress.lsn)),
            wal_bytes: progress.lsn,
            ..ReportSummary::default()
        };
        if self.last_epoch != Some(progress.lsn) {
            match self.checkpoint(progress.lsn).await {
                Ok(()) => self.last_epoch = Some(progress.lsn),
                Err(e) => summary.last_error = Some(e),
            }
        }
        if progress.role == DbRole::Primary {
            self.tracker.record(now, progress.lsn);
            match self.targets().await {
                Ok(targets) => {
                    for target in targets {
                        let link = self.link_report(&target, progress, now);
                        if let Err(e) = self.heartbeat(&link).await {
                            summary.last_error = Some(e);
                        }
                        summary.links.push(link);
                    }
                }
                Err(e) => summary.last_error = Some(e),
            }
        }
        summary
    }

    fn link_report(&mut self, target: &str, progress: &Progress, now: Instant) -> LinkReport {
        let name = self
            .standby_names
            .get(target)
            .map_or(target, String::as_str);
        let row = progress
            .standbys
            .iter()
            .find(|s| s.application_name == name);
        let replayed = row
            .and_then(|s| s.replay_lsn)
            .or_else(|| self.last_replayed.get(target).copied())
            .unwrap_or(0)
            .min(progress.lsn);
        self.last_replayed.insert(target.to_string(), replayed);
        let sent = row
            .and_then(|s| s.sent_lsn)
            .unwrap_or(progress.lsn)
            .clamp(replayed, progress.lsn.max(replayed));
        let measured = row.and_then(|s| s.lag).unwrap_or_default();
        // A synchronous standby has flushed every acknowledged commit (the primary waits for
        // it before answering), so nothing acknowledged is behind there, however far replay
        // trails: the lag that bounds data loss, which the promotion gate and the data-loss
        // estimate judge, is zero. Pending bytes still show what replay has to catch up.
        let lag = if row.is_some_and(|s| s.synchronous) {
            Duration::ZERO
        } else {
            measured.max(self.tracker.lag(now, replayed))
        };
        LinkReport {
            target_region: target.to_string(),
            sent_bytes: sent,
            replayed_bytes: replayed,
            pending_bytes: progress.lsn.saturating_sub(replayed),
            lag_ms: lag.as_millis().min(i32::MAX as u128) as u64,
            active: row.is_some(),
        }
    }

    /// The targets of the links the arbiter declares out of this region.
    async fn targets(&self) -> Result<Vec<String>, String> {
        let path = format!("/v1/replication/links?sourceRegion={}", self.region);
        match self.api.get(&path).await {
            Answer::Done(body) => Ok(body["links"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|link| link["targetRegion"].as_str().map(str::to_string))
                .collect()),
            other => Err(format!(
                "listing the links out of {}: {other:?}",
                self.region
            )),
        }
    }

    async fn heartbeat(&self, link: &LinkReport) -> Result<(), String> {
        let body: Value = json!({
            "sourceRegion": self.region.as_str(),
            "targetRegion": link.target_region,
            "lastSentEpochId": link.sent_bytes,
            "lastReceivedEpochId": link.replayed_bytes,
            "replicationLagMs": link.lag_ms,
            "isLinkActive": link.active,
        });
        match self
            .api
            .send(
                "POST",
                "/v1/replication/links/heartbeat",
                Some(&body),
                // A heartbeat restates the link: sending it twice changes nothing.
                crate::api_client::Retry::Always,
            )
            .await
        {
            Answer::Done(_) => Ok(()),
            other => Err(format!(
                "link heartbeat {} -> {}: {other:?}",
                self.region, link.target_region
            )),
        }
    }

    /// `ReportCheckpoint` to whichever endpoint takes it (followers answer UNAVAILABLE).
    async fn checkpoint(&mut self, lsn: u64) -> Result<(), String> {
        let request = CheckpointRequest {
            source_region: self.region.to_string(),
            last_committed_epoch: i64::try_from(lsn).map_err(|_| format!("LSN {lsn} too big"))?,
            payload_checksum: format!("{WAL_POSITION_SIGNATURE_PREFIX}{}", lsn_text(lsn)),
            timestamp_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64),
        };
        let mut last = String::from("no endpoints");
        let count = self.grpc_endpoints.len();
        for attempt in 0..count {
            let index = (self.leader_guess + attempt) % count;
            let endpoint = &self.grpc_endpoints[index];
            let channel = match arbiter_client::channel(endpoint, &self.client_options) {
                Ok(channel) => channel,
                Err(e) => {
                    last = format!("{endpoint}: {e}");
                    continue;
                }
            };
            let mut client = ReplicationCoordinatorClient::new(channel);
            let call = tokio::time::timeout(
                Duration::from_secs(5),
                client.report_checkpoint(request.clone()),
            );
            match call.await {
                Ok(Ok(reply)) if reply.get_ref().acknowledged => {
                    self.leader_guess = index;
                    return Ok(());
                }
                Ok(Ok(reply)) => {
                    return Err(format!(
                        "checkpoint not acknowledged: {:?}",
                        reply.get_ref()
                    ))
                }
                Ok(Err(status)) if status.code() == tonic::Code::Unavailable => {
                    last = format!("{endpoint}: {}", status.message());
                }
                Ok(Err(status)) => {
                    return Err(format!("checkpoint refused by {endpoint}: {status}"));
                }
                Err(_) => last = format!("{endpoint}: no answer within 5 s"),
            }
        }
        Err(format!("no arbiter node took the checkpoint: {last}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db_agent::database::StandbyProgress;
    use crate::http_client::HttpClient;

    #[test]
    fn lag_counts_from_the_first_position_beyond_the_replayed_one() {
        let start = Instant::now();
        let mut tracker = LagTracker::default();
        for (second, lsn) in [(0, 100), (1, 200), (2, 300), (3, 300)] {
            tracker.record(start + Duration::from_secs(second), lsn);
        }
        let now = start + Duration::from_secs(4);
        assert_eq!(tracker.lag(now, 300), Duration::ZERO, "caught up");
        assert_eq!(tracker.lag(now, 250), Duration::from_secs(2));
        assert_eq!(tracker.lag(now, 100), Duration::from_secs(3));
        assert_eq!(tracker.lag(now, 0), Duration::from_secs(4));
    }

    #[test]
    fn a_synchronous_standby_has_no_acknowledged_lag_but_shows_its_pending_bytes() {
        let api = ApiClient::new(Vec::new(), HttpClient::plain(), Duration::from_secs(1));
        let mut reporter = Reporter::new(
            RegionId::new("us-east-1"),
            Vec::new(),
            ClientOptions::default(),
            api,
            BTreeMap::new(),
        );
        let start = Instant::now();
        reporter.tracker.record(start, 100);
        reporter.tracker.record(start + Duration::from_secs(1), 500);
        let standby = |synchronous| StandbyProgress {
            application_name: "us-west-2".into(),
            sent_lsn: Some(500),
            replay_lsn: Some(100),
            lag: Some(Duration::from_millis(70)),
            synchronous,
        };
        let progress = |synchronous| Progress {
            role: DbRole::Primary,
            lsn: 500,
            standbys: vec![standby(synchronous)],
        };
        let now = start + Duration::from_secs(3);
        let asynchronous = reporter.link_report("us-west-2", &progress(false), now);
        assert_eq!(
            asynchronous.lag_ms, 2_000,
            "behind since the position after 100"
        );
        let synchronous = reporter.link_report("us-west-2", &progress(true), now);
        assert_eq!(synchronous.lag_ms, 0);
        assert_eq!(synchronous.pending_bytes, 400);
        assert!(synchronous.active);
    }
}
