//! The failover workflow as a pure state machine, and the failback gate.
//!
//! The controller on the Raft leader drives it: it asks [`next_action`] what an unfinished
//! failover needs, performs the action through the shell (lease table, routing table, traffic and
//! compute drivers), then proposes [`Action::record`]. Progress lives only in the failover log, so
//! a new leader resumes exactly where the old one stopped, and the log's refusal of a duplicate
//! step keeps every step in the log exactly once. An action interrupted between being performed
//! and being recorded is performed again by the next leader, so every action is idempotent on the
//! shell's side: revoking revoked leases, shifting an emptied region and scaling to a size already
//! reached all change nothing.
//!
//! Invariant of the failback gate: traffic returns to a region only when it has been healthy for
//! the whole cooldown, its checkpoint has caught up with the active primary's, and replication
//! into it is within its RPO, so failback never regresses data.

use crate::failover_log::{FailoverCommand, FailoverEvent, FailoverId, FailoverLog, FailoverStep};
use crate::probe_consensus::Verdict;
use crate::region_health::{HealthState, RegionHealth, RegionHealthTable};
use crate::replication::{Checkpoint, EpochId, ReplicationLink, ReplicationMode};
use crate::types::RegionId;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// What the shell must do next for a failover.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Action {
    /// Revoke every write lease in `region` and raise its epochs (`LeaseCommand::RevokeRegion`).
    Fence {
        failover_id: FailoverId,
        region: RegionId,
    },
    /// `RoutingCommand::ShiftRegion { from, to }`, then the traffic driver.
    ShiftTraffic {
        failover_id: FailoverId,
        from: RegionId,
        to: RegionId,
    },
    /// Scale the destination's compute up through the compute driver.
    ScaleStandby {
        failover_id: FailoverId,
        region: RegionId,
    },
    /// Wait until `region` serves nothing (connections drained or the drain timeout passed).
    AwaitDrain {
        failover_id: FailoverId,
        region: RegionId,
    },
    /// Nothing left to do but say so.
    Complete { failover_id: FailoverId },
}

impl Action {
    pub fn failover_id(&self) -> FailoverId {
        match self {
            Action::Fence { failover_id, .. }
            | Action::ShiftTraffic { failover_id, .. }
            | Action::ScaleStandby { failover_id, .. }
            | Action::AwaitDrain { failover_id, .. }
            | Action::Complete { failover_id } => *failover_id,
        }
    }

    /// The step this action completes.
    pub fn step(&self) -> FailoverStep {
        match self {
            Action::Fence { .. } => FailoverStep::Fence,
            Action::ShiftTraffic { .. } => FailoverStep::ShiftTraffic,
            Action::ScaleStandby { .. } => FailoverStep::ScaleStandby,
            Action::AwaitDrain { .. } => FailoverStep::Drained,
            Action::Complete { .. } => FailoverStep::Completed,
        }
    }

    /// The log command that records this action as done.
    pub fn record(&self, detail: impl Into<String>) -> FailoverCommand {
        FailoverCommand::RecordStep {
            failover_id: self.failover_id(),
            step: self.step(),
            detail: detail.into(),
        }
    }
}

/// The action that comes after the event's recorded progress; `None` once it is finished.
pub fn next_action(event: &FailoverEvent) -> Option<Action> {
    let failover_id = event.failover_id;
    let failed = || event.failed_region.clone();
    let destination = || event.destination_region.clone();
    Some(match event.last_step().next()? {
        FailoverStep::Fence => Action::Fence {
            failover_id,
            region: failed(),
        },
        FailoverStep::ShiftTraffic => Action::ShiftTraffic {
            failover_id,
            from: failed(),
            to: destination(),
        },
        FailoverStep::ScaleStandby => Action::ScaleStandby {
            failover_id,
            region: destination(),
        },
        FailoverStep::Drained => Action::AwaitDrain {
            failover_id,
            region: failed(),
        },
        FailoverStep::Completed => Action::Complete { failover_id },
        // `next` never leads back to the start or to failure.
        FailoverStep::Decide | FailoverStep::Failed => return None,
    })
}

/// The region a verdict calls to fail over, if any: an outage of a region that still serves
/// traffic (not already down or recovering — its traffic has gone) and has no failover under
/// way. This is what keeps a flapping region to one failover: once it is marked down, further
/// outage verdicts only keep it down.
pub fn failover_needed<'a>(
    verdict: &'a Verdict,
    health: &RegionHealthTable,
    log: &FailoverLog,
) -> Option<&'a RegionId> {
    let Verdict::Outage { region, .. } = verdict else {
        return None;
    };
    // A region the health table does not know cannot have been failed over yet.
    let serving = health
        .get(region)
        .is_none_or(|region_health| region_health.state.is_serving());
    (serving && log.unfinished_for(region).is_none()).then_some(region)
}

/// Why traffic may not go back to a recovered region yet.
#[derive(Debug, Clone, PartialEq, Eq, Error, Serialize, Deserialize)]
pub enum FailbackRefusal {
    #[error("region is {state:?}, not recovered")]
    RegionNotRecovered { state: HealthState },
    #[error("region must stay healthy for another {remaining_ms} ms")]
    CooldownNotElapsed { remaining_ms: u64 },
    #[error(
        "recovered region is at epoch {}, the primary at {primary_epoch}",
        .recovered_epoch.map_or_else(|| "none".to_string(), |epoch| epoch.to_string())
    )]
    CheckpointBehind {
        recovered_epoch: Option<EpochId>,
        primary_epoch: EpochId,
    },
    /// Same epoch, different data: the regions diverged (split brain); failback would lose one
    /// side's writes, so it needs an operator.
    #[error("checkpoints diverge at epoch {epoch}: {recovered_hash} here, {primary_hash} on the primary")]
    CheckpointDiverged {
        epoch: EpochId,
        recovered_hash: String,
        primary_hash: String,
    },
    #[error("replication into the region lags {lag_ms} ms (target {target_ms} ms, link active: {link_active})")]
    RpoViolated {
        lag_ms: u64,
        target_ms: u64,
        link_active: bool,
    },
}

impl FailbackRefusal {
    /// Whether waiting can lift the refusal; a divergence cannot heal by itself.
    pub fn is_retryable(&self) -> bool {
        !matches!(self, FailbackRefusal::CheckpointDiverged { .. })
    }
}

/// The failback gate for `health`'s region, given how much of its cooldown is left by the
/// leader's own monotonic measurement ([`RegionHealthTable::cooldown_remaining`]), its newest
/// checkpoint, the active primary's newest checkpoint, and the replication link from the primary
/// into it (if tracked). Refuses with the first reason found, in the order the operator has to
/// fix them.
pub fn check_failback(
    health: &RegionHealth,
    cooldown_remaining_ms: u64,
    recovered_checkpoint: Option<&Checkpoint>,
    primary_checkpoint: Option<&Checkpoint>,
    inbound_link: Option<&ReplicationLink>,
) -> Result<(), FailbackRefusal> {
    match health.state {
        HealthState::Healthy => {}
        HealthState::Recovering => {
            if cooldown_remaining_ms > 0 {
                return Err(FailbackRefusal::CooldownNotElapsed {
                    remaining_ms: cooldown_remaining_ms,
                });
            }
        }
        state @ (HealthState::Degraded | HealthState::Down) => {
            return Err(FailbackRefusal::RegionNotRecovered { state });
        }
    }
    if let Some(primary) = primary_checkpoint {
        match recovered_checkpoint {
            Some(recovered) if recovered.epoch_id > primary.epoch_id => {}
            Some(recovered) if recovered.epoch_id == primary.epoch_id => {
                if recovered.checkpoint_hash_signature != primary.checkpoint_hash_signature {
                    return Err(FailbackRefusal::CheckpointDiverged {
                        epoch: primary.epoch_id,
                        recovered_hash: recovered.checkpoint_hash_signature.clone(),
                        primary_hash: primary.checkpoint_hash_signature.clone(),
                    });
                }
            }
            _ => {
                return Err(FailbackRefusal::CheckpointBehind {
                    recovered_epoch: recovered_checkpoint.map(|checkpoint| checkpoint.epoch_id),
                    primary_epoch: primary.epoch_id,
                });
            }
        }
    }
    if let Some(link) = inbound_link {
        let target_ms = link.replication_mode.rpo_target_ms();
        if !link.is_link_active || link.replication_lag_ms > target_ms {
            return Err(FailbackRefusal::RpoViolated {
                lag_ms: link.replication_lag_ms,
                target_ms,
                link_active: link.is_link_active,
            });
        }
    }
    Ok(())
}

/// Why the controller will not promote a standby on its own (Patroni's
/// `maximum_lag_on_failover`, with the link's RPO target as the maximum). Only an operator's
/// break-glass failover proceeds past it, and its event carries the data-loss estimate.
#[derive(Debug, Clone, PartialEq, Eq, Error, Serialize, Deserialize)]
pub enum PromotionRefusal {
    #[error(
        "replication {source_region} -> {target_region} is not tracked: the standby's lag is \
         unknown"
    )]
    LinkUnknown {
        source_region: RegionId,
        target_region: RegionId,
    },
    #[error(
        "replication {source_region} -> {target_region} was last reported inactive (last lag \
         {lag_ms} ms): the standby may be missing anything since"
    )]
    LinkInactive {
        source_region: RegionId,
        target_region: RegionId,
        lag_ms: u64,
    },
    #[error(
        "standby {target_region} was last reported {lag_ms} ms behind {source_region}, above \
         the {mode:?} link's RPO target of {target_ms} ms"
    )]
    LagAboveRpo {
        source_region: RegionId,
        target_region: RegionId,
        mode: ReplicationMode,
        lag_ms: u64,
        target_ms: u64,
    },
}

/// The promotion gate for failing `failed` over to `destination`, given the link between them
/// as last reported.
///
/// What it judges is the last report, not its age. Judging age would mean comparing the wall
/// clock of the leader that logged the report with this leader's, which the DR timing rules
/// forbid (see [`crate::region_health`]); and an outage is exactly what silences the failed
/// region's reporter, so "no fresh report" would refuse every real failover. A reporter that
/// knows replication stopped says so (`is_link_active = false`), and that is refused; a link
/// never declared has no lag to trust, and is refused too.
pub fn check_promotion(
    failed: &RegionId,
    destination: &RegionId,
    link: Option<&ReplicationLink>,
) -> Result<(), PromotionRefusal> {
    let Some(link) = link else {
        return Err(PromotionRefusal::LinkUnknown {
            source_region: failed.clone(),
            target_region: destination.clone(),
        });
    };
    if !link.is_link_active {
        return Err(PromotionRefusal::LinkInactive {
            source_region: failed.clone(),
            target_region: destination.clone(),
            lag_ms: link.replication_lag_ms,
        });
    }
    let target_ms = link.replication_mode.rpo_target_ms();
    if link.replication_lag_ms > target_ms {
        return Err(PromotionRefusal::LagAboveRpo {
            source_region: failed.clone(),
            target_region: destination.clone(),
            mode: link.replication_mode,
            lag_ms: link.replication_lag_ms,
            target_ms,
        });
    }
    Ok(())
}
