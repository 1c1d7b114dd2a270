//! Replication links and regional sync checkpoints: the replicated record of how far each
//! region's data has travelled, and the RPO monitor and data-loss estimate read from it.
//!
//! Invariants: at most one link per (source, target) pair; a (region, epoch) checkpoint is written
//! once and never changed; a region's checkpoint epoch never goes backwards. Refusals are
//! [`ReplicationOutcome::Refused`] values and leave the state untouched.

use crate::types::{ApplyCtx, RegionId, WallMillis};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::ops::Bound;
use thiserror::Error;

/// Checkpoints kept per region. Apply must stay bounded on a log that runs for years, so the
/// oldest are dropped deterministically by count (never by time, which apply cannot read). A
/// retry of a dropped epoch is then refused as [`ReplicationRefusal::EpochRegressed`], which is
/// still the right answer for a report that old.
pub const CHECKPOINTS_RETAINED_PER_REGION: usize = 4096;

/// How many of a region's newest checkpoints the throughput figure averages over.
pub const THROUGHPUT_WINDOW_CHECKPOINTS: usize = 10;

/// The seed's `checkpoint_hash_signature VARCHAR(64)`.
pub const MAX_CHECKSUM_LEN: usize = 64;

/// How a checkpoint says its epoch is a WAL byte position (a PostgreSQL LSN as a number), as
/// `arbiter db-agent` reports it: the signature starts with this prefix (`wal:<timeline>/<LSN>`).
/// The seed's `CheckpointRequest` has no field for a transaction count or a unit, so the unit
/// travels in the signature, which is stored with the checkpoint; for such a source the
/// difference of two epochs *is* the bytes between them, and `GetSyncMetrics` measures pending
/// bytes and throughput from epochs instead of from transaction counts.
pub const WAL_POSITION_SIGNATURE_PREFIX: &str = "wal:";

/// A position in the replicated write stream (the seed's `epoch_id` / `last_committed_epoch`).
/// Epochs of different regions are comparable: a standby that has applied epoch `n` holds
/// everything the primary committed up to `n`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct EpochId(pub u64);

impl fmt::Display for EpochId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The seed's `replication_mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum ReplicationMode {
    /// Critical transactional data: a write is confirmed only once both regions have it.
    Sync,
    /// Profiles and metadata: replicated in the background.
    Async,
}

impl ReplicationMode {
    /// The seed's recovery point objectives: zero for SYNC, under 5 s for ASYNC.
    pub const fn rpo_target_ms(self) -> u64 {
        match self {
            ReplicationMode::Sync => 0,
            ReplicationMode::Async => 5_000,
        }
    }
}

/// One row of `replication_links`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicationLink {
    pub source_region: RegionId,
    pub target_region: RegionId,
    pub replication_mode: ReplicationMode,
    pub last_sent_epoch_id: EpochId,
    pub last_received_epoch_id: EpochId,
    pub replication_lag_ms: u64,
    pub is_link_active: bool,
    /// Log time of the last heartbeat: audit only.
    pub last_heartbeat_at: WallMillis,
}

impl Checkpoint {
    /// Whether the epoch is a WAL byte position ([`WAL_POSITION_SIGNATURE_PREFIX`]).
    pub fn epoch_is_wal_position(&self) -> bool {
        self.checkpoint_hash_signature
            .starts_with(WAL_POSITION_SIGNATURE_PREFIX)
    }
}

impl ReplicationLink {
    /// The link's lag beyond its mode's RPO target. Inactive links are left out, as in the seed's
    /// partial index `idx_replication_lag`: their last lag is stale, and `is_link_active` already
    /// says what is wrong with them.
    pub fn rpo_violation(&self) -> Option<RpoViolation> {
        let target_ms = self.replication_mode.rpo_target_ms();
        (self.is_link_active && self.replication_lag_ms > target_ms).then(|| RpoViolation {
            source_region: self.source_region.clone(),
            target_region: self.target_region.clone(),
            replication_mode: self.replication_mode,
            lag_ms: self.replication_lag_ms,
            target_ms,
        })
    }
}

/// One row of `regional_sync_checkpoints`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub region_name: RegionId,
    pub epoch_id: EpochId,
    /// Transactions committed in this epoch (not a running total), so that the sum over a range
    /// of epochs is the work in that range.
    pub committed_transaction_count: u64,
    pub checkpoint_hash_signature: String,
    /// Log time of the report.
    pub created_at: WallMillis,
}

/// A link whose lag is beyond its mode's RPO target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RpoViolation {
    pub source_region: RegionId,
    pub target_region: RegionId,
    pub replication_mode: ReplicationMode,
    pub lag_ms: u64,
    pub target_ms: u64,
}

/// The answer to the seed's `GetSyncMetrics`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SyncMetrics {
    pub replication_lag_ms: u64,
    pub pending_bytes_count: u64,
    pub throughput_bytes_per_sec: f64,
}

/// A write rate, for turning lag into lost writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteRate {
    pub writes_per_sec: u64,
    pub avg_write_bytes: u64,
}

impl WriteRate {
    /// The seed's capacity model: 5,000 writes/s of 1 KB each.
    pub const SEED_PEAK: WriteRate = WriteRate {
        writes_per_sec: 5_000,
        avg_write_bytes: 1_000,
    };
}

/// Writes committed at the source but not yet at the target: what a failover would lose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DataLossEstimate {
    pub writes: u64,
    pub bytes: u64,
}

impl DataLossEstimate {
    /// `writes = ceil(lag × write rate)`, `bytes = writes × average write size`. Rounded up: an
    /// estimate of loss should not understate it. Seed model: 800 ms × 5,000/s = 4,000 writes.
    pub fn from_lag(lag_ms: u64, rate: WriteRate) -> Self {
        let writes = lag_ms.saturating_mul(rate.writes_per_sec).div_ceil(1_000);
        DataLossEstimate {
            writes,
            bytes: writes.saturating_mul(rate.avg_write_bytes),
        }
    }
}

/// A replication log command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReplicationCommand {
    /// Create the (source, target) link or change its mode; its progress is kept.
    UpsertLink {
        source: RegionId,
        target: RegionId,
        mode: ReplicationMode,
    },
    /// The replication engine's report of a link's progress.
    LinkHeartbeat {
        source: RegionId,
        target: RegionId,
        last_sent_epoch_id: EpochId,
        last_received_epoch_id: EpochId,
        replication_lag_ms: u64,
        is_link_active: bool,
    },
    /// The seed's `ReportCheckpoint`. `committed_transaction_count` is not in the seed's
    /// `CheckpointRequest`; a caller that does not know it sends 0, which only makes
    /// `pending_bytes_count` and throughput understate.
    ReportCheckpoint {
        region: RegionId,
        epoch: EpochId,
        committed_transaction_count: u64,
        checksum: String,
    },
}

/// The deterministic result of applying a [`ReplicationCommand`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReplicationOutcome {
    LinkUpdated,
    /// A new checkpoint; `receiver_applied_epoch` is the region's newest epoch.
    CheckpointRecorded {
        receiver_applied_epoch: EpochId,
    },
    /// The same (region, epoch, checksum) again — a retry across a partition: acknowledged,
    /// nothing changed.
    CheckpointAlreadyRecorded {
        receiver_applied_epoch: EpochId,
    },
    Refused(ReplicationRefusal),
}

/// Why a replication command or query was refused. A value: the state is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Error, Serialize, Deserialize)]
pub enum ReplicationRefusal {
    #[error("a region cannot replicate to itself ({region})")]
    SameRegion { region: RegionId },
    #[error("no replication link from {source_region} to {target_region}")]
    LinkNotFound {
        source_region: RegionId,
        target_region: RegionId,
    },
    #[error("link reports received epoch {received} ahead of sent epoch {sent}")]
    ReceivedAheadOfSent { sent: EpochId, received: EpochId },
    #[error("checkpoint checksum must be 1 to {MAX_CHECKSUM_LEN} characters, got {length}")]
    InvalidChecksum { length: usize },
    #[error("epoch {presented} of {region} is behind its last checkpoint {last}")]
    EpochRegressed {
        region: RegionId,
        presented: EpochId,
        last: EpochId,
    },
    #[error("epoch {epoch} of {region} was recorded with checksum {recorded}, not {presented}")]
    ChecksumConflict {
        region: RegionId,
        epoch: EpochId,
        recorded: String,
        presented: String,
        /// The region's newest epoch, for the seed's `receiver_applied_epoch`.
        last: EpochId,
    },
}

impl ReplicationRefusal {
    /// Whether asking again later, unchanged, can succeed: only a link that may yet be created.
    pub fn is_retryable(&self) -> bool {
        matches!(self, ReplicationRefusal::LinkNotFound { .. })
    }
}

/// The replicated `replication_links` and `regional_sync_checkpoints` tables.
///
/// Nested maps rather than tuple keys: "links from a source" is a single lookup (the seed's
/// `idx_replication_lag`), and the state stays representable in JSON for operators.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicationState {
    links: BTreeMap<RegionId, BTreeMap<RegionId, ReplicationLink>>,
    checkpoints: BTreeMap<RegionId, BTreeMap<EpochId, Checkpoint>>,
}

impl ReplicationState {
    pub fn apply(&mut self, cmd: &ReplicationCommand, ctx: &ApplyCtx) -> ReplicationOutcome {
        let result = match cmd {
            ReplicationCommand::UpsertLink {
                source,
                target,
                mode,
            } => self.upsert_link(source, target, *mode, ctx.now),
            ReplicationCommand::LinkHeartbeat {
                source,
                target,
                last_sent_epoch_id,
                last_received_epoch_id,
                replication_lag_ms,
                is_link_active,
            } => self.link_mut(source, target).and_then(|link| {
                if last_received_epoch_id > last_sent_epoch_id {
                    return Err(ReplicationRefusal::ReceivedAheadOfSent {
                        sent: *last_sent_epoch_id,
                        received: *last_received_epoch_id,
                    });
                }
                link.last_sent_epoch_id = *last_sent_epoch_id;
                link.last_received_epoch_id = *last_received_epoch_id;
                link.replication_lag_ms = *replication_lag_ms;
                link.is_link_active = *is_link_active;
                link.last_heartbeat_at = ctx.now;
                Ok(ReplicationOutcome::LinkUpdated)
            }),
            ReplicationCommand::ReportCheckpoint {
                region,
                epoch,
                committed_transaction_count,
                checksum,
            } => self.report_checkpoint(
                region,
                *epoch,
                *committed_transaction_count,
                checksum,
                ctx.now,
            ),
        };
        result.unwrap_or_else(ReplicationOutcome::Refused)
    }

    fn upsert_link(
        &mut self,
        source: &RegionId,
        target: &RegionId,
        mode: ReplicationMode,
        now: WallMillis,
    ) -> Result<ReplicationOutcome, ReplicationRefusal> {
        if source == target {
            return Err(ReplicationRefusal::SameRegion {
                region: source.clone(),
            });
        }
        self.links
            .entry(source.clone())
            .or_default()
            .entry(target.clone())
            .and_modify(|link| link.replication_mode = mode)
            .or_insert_with(|| ReplicationLink {
                source_region: source.clone(),
                target_region: target.clone(),
                replication_mode: mode,
                last_sent_epoch_id: EpochId(0),
                last_received_epoch_id: EpochId(0),
                replication_lag_ms: 0,
                is_link_active: true,
                last_heartbeat_at: now,
            });
        Ok(ReplicationOutcome::LinkUpdated)
    }

    fn link_mut(
        &mut self,
        source: &RegionId,
        target: &RegionId,
    ) -> Result<&mut ReplicationLink, ReplicationRefusal> {
        self.links
            .get_mut(source)
            .and_then(|targets| targets.get_mut(target))
            .ok_or_else(|| link_not_found(source, target))
    }

    fn report_checkpoint(
        &mut self,
        region: &RegionId,
        epoch: EpochId,
        committed_transaction_count: u64,
        checksum: &str,
        now: WallMillis,
    ) -> Result<ReplicationOutcome, ReplicationRefusal> {
        let length = checksum.chars().count();
        if length == 0 || length > MAX_CHECKSUM_LEN {
            return Err(ReplicationRefusal::InvalidChecksum { length });
        }
        let epochs = self.checkpoints.entry(region.clone()).or_default();
        let last = epochs.last_key_value().map(|(epoch, _)| *epoch);
        // The same (region, epoch) is checked before the ordering so that a late retry of an
        // older, already recorded report is still acknowledged rather than refused.
        if let (Some(recorded), Some(last)) = (epochs.get(&epoch), last) {
            return if recorded.checkpoint_hash_signature == checksum {
                Ok(ReplicationOutcome::CheckpointAlreadyRecorded {
                    receiver_applied_epoch: last,
                })
            } else {
                Err(ReplicationRefusal::ChecksumConflict {
                    region: region.clone(),
                    epoch,
                    recorded: recorded.checkpoint_hash_signature.clone(),
                    presented: checksum.to_string(),
                    last,
                })
            };
        }
        if let Some(last) = last.filter(|last| epoch < *last) {
            return Err(ReplicationRefusal::EpochRegressed {
                region: region.clone(),
                presented: epoch,
                last,
            });
        }
        epochs.insert(
            epoch,
            Checkpoint {
                region_name: region.clone(),
                epoch_id: epoch,
                committed_transaction_count,
                checkpoint_hash_signature: checksum.to_string(),
                created_at: now,
            },
        );
        // One insert can pass the bound by one at most.
        if epochs.len() > CHECKPOINTS_RETAINED_PER_REGION {
            epochs.pop_first();
        }
        Ok(ReplicationOutcome::CheckpointRecorded {
            receiver_applied_epoch: epoch,
        })
    }

    pub fn link(&self, source: &RegionId, target: &RegionId) -> Option<&ReplicationLink> {
        self.links
            .get(source)
            .and_then(|targets| targets.get(target))
    }

    /// Every link out of `source`, by target region.
    pub fn links_from(&self, source: &RegionId) -> impl Iterator<Item = &ReplicationLink> {
        self.links
            .get(source)
            .into_iter()
            .flat_map(BTreeMap::values)
    }

    pub fn links(&self) -> impl Iterator<Item = &ReplicationLink> {
        self.links.values().flat_map(BTreeMap::values)
    }

    /// The region's newest checkpoint.
    pub fn latest_checkpoint(&self, region: &RegionId) -> Option<&Checkpoint> {
        self.checkpoints
            .get(region)
            .and_then(|epochs| epochs.last_key_value())
            .map(|(_, checkpoint)| checkpoint)
    }

    pub fn checkpoint(&self, region: &RegionId, epoch: EpochId) -> Option<&Checkpoint> {
        self.checkpoints
            .get(region)
            .and_then(|epochs| epochs.get(&epoch))
    }

    /// The seed's `GetSyncMetrics` for the (source, target) link. When the source's newest
    /// checkpoint carries a WAL position ([`Checkpoint::epoch_is_wal_position`], a db-agent's
    /// report), see [`ReplicationState::wal_sync_metrics`]; otherwise:
    ///
    /// - `replication_lag_ms`: the lag the link last reported;
    /// - `pending_bytes_count`: Σ `committed_transaction_count` of the source's checkpoints with
    ///   an epoch above the link's `last_received_epoch_id`, × `bytes_per_transaction`;
    /// - `throughput_bytes_per_sec`: transactions of the source's newest
    ///   [`THROUGHPUT_WINDOW_CHECKPOINTS`] checkpoints, except the oldest of them (its work was
    ///   done before the span starts), × `bytes_per_transaction` ÷ the span between the oldest's
    ///   and newest's `created_at`; 0 with fewer than two checkpoints or a zero span. In steady
    ///   state a link carries what its source commits.
    pub fn sync_metrics(
        &self,
        source: &RegionId,
        target: &RegionId,
        bytes_per_transaction: u64,
    ) -> Result<SyncMetrics, ReplicationRefusal> {
        let link = self
            .link(source, target)
            .ok_or_else(|| link_not_found(source, target))?;
        if self
            .latest_checkpoint(source)
            .is_some_and(Checkpoint::epoch_is_wal_position)
        {
            return Ok(self.wal_sync_metrics(link));
        }
        let epochs = self.checkpoints.get(source);
        let pending_transactions: u64 = epochs
            .into_iter()
            .flat_map(|epochs| {
                epochs.range((
                    Bound::Excluded(link.last_received_epoch_id),
                    Bound::Unbounded,
                ))
            })
            .map(|(_, checkpoint)| checkpoint.committed_transaction_count)
            .fold(0, u64::saturating_add);
        let recent: Vec<&Checkpoint> = epochs
            .into_iter()
            .flat_map(|epochs| epochs.values().rev().take(THROUGHPUT_WINDOW_CHECKPOINTS))
            .collect();
        let throughput_bytes_per_sec = recent
            .split_last()
            .and_then(|(oldest, newer)| {
                let newest = newer.first()?;
                let span_ms = newest.created_at.0.checked_sub(oldest.created_at.0)?;
                let transactions = newer
                    .iter()
                    .map(|checkpoint| checkpoint.committed_transaction_count)
                    .fold(0, u64::saturating_add);
                (span_ms > 0).then(|| {
                    transactions as f64 * bytes_per_transaction as f64 * 1_000.0 / span_ms as f64
                })
            })
            .unwrap_or(0.0);
        Ok(SyncMetrics {
            replication_lag_ms: link.replication_lag_ms,
            pending_bytes_count: pending_transactions.saturating_mul(bytes_per_transaction),
            throughput_bytes_per_sec,
        })
    }

    /// `GetSyncMetrics` for a link whose source reports WAL positions as epochs:
    ///
    /// - `replication_lag_ms`: the lag the link last reported (the db-agent measures it);
    /// - `pending_bytes_count`: the source's position — the larger of its newest checkpoint's
    ///   epoch and the link's `last_sent_epoch_id` — less the link's `last_received_epoch_id`
    ///   (the target's replayed position): WAL the target does not have yet;
    /// - `throughput_bytes_per_sec`: the WAL the source wrote over its newest
    ///   [`THROUGHPUT_WINDOW_CHECKPOINTS`] checkpoints (newest epoch − oldest epoch) ÷ the span
    ///   between their `created_at`; 0 with fewer than two or a zero span.
    pub fn wal_sync_metrics(&self, link: &ReplicationLink) -> SyncMetrics {
        let epochs = self.checkpoints.get(&link.source_region);
        let recent: Vec<&Checkpoint> = epochs
            .into_iter()
            .flat_map(|epochs| epochs.values().rev().take(THROUGHPUT_WINDOW_CHECKPOINTS))
            .collect();
        let newest_epoch = recent.first().map_or(EpochId(0), |c| c.epoch_id);
        let source_position = newest_epoch.max(link.last_sent_epoch_id);
        let throughput_bytes_per_sec = match (recent.first(), recent.last()) {
            (Some(newest), Some(oldest)) => {
                let span_ms = newest.created_at.0.saturating_sub(oldest.created_at.0);
                let bytes = newest.epoch_id.0.saturating_sub(oldest.epoch_id.0);
                if span_ms > 0 {
                    bytes as f64 * 1_000.0 / span_ms as f64
                } else {
                    0.0
                }
            }
            _ => 0.0,
        };
        SyncMetrics {
            replication_lag_ms: link.replication_lag_ms,
            pending_bytes_count: source_position
                .0
                .saturating_sub(link.last_received_epoch_id.0),
            throughput_bytes_per_sec,
        }
    }

    /// Every active link whose lag exceeds its mode's RPO target, by (source, target).
    pub fn rpo_violations(&self) -> Vec<RpoViolation> {
        self.links()
            .filter_map(ReplicationLink::rpo_violation)
            .collect()
    }

    /// What failing over from `source` to `target` now would lose: the link's last lag × `rate`.
    pub fn data_loss_estimate(
        &self,
        source: &RegionId,
        target: &RegionId,
        rate: WriteRate,
    ) -> Result<DataLossEstimate, ReplicationRefusal> {
        self.link(source, target)
            .map(|link| DataLossEstimate::from_lag(link.replication_lag_ms, rate))
            .ok_or_else(|| link_not_found(source, target))
    }
}

fn link_not_found(source: &RegionId, target: &RegionId) -> ReplicationRefusal {
    ReplicationRefusal::LinkNotFound {
        source_region: source.clone(),
        target_region: target.clone(),
    }
}
