//! The failover log: the seed's `failover_events`, append-only, one row per failover, each row
//! recording the workflow's steps as they are done.
//!
//! Invariants: an event is never rewritten, only advanced. Its steps are recorded in the order of
//! [`FailoverStep::next`], each at most once; `FAILED` may end any unfinished event; a
//! `COMPLETED` or `FAILED` event never changes again; a region has at most one unfinished
//! failover. Anything else is a [`FailoverRefusal`] value and leaves the log as it was — which is
//! what lets a new Raft leader re-propose a step safely: if its predecessor already recorded it,
//! the duplicate is refused, so each step is in the log exactly once.

use crate::replication::DataLossEstimate;
use crate::types::{ApplyCtx, FencingToken, RegionId, WallMillis};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use thiserror::Error;

/// A failover's id, `fo-<token>`: derived from the log position of the command that began it,
/// so every node names it the same and ids sort in log order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct FailoverId(pub FencingToken);

impl fmt::Display for FailoverId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "fo-{}", self.0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("not a failover id (expected fo-<number>): {id:?}")]
pub struct InvalidFailoverId {
    pub id: String,
}

impl FromStr for FailoverId {
    type Err = InvalidFailoverId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.strip_prefix("fo-")
            .and_then(|token| token.parse().ok())
            .map(|token| FailoverId(FencingToken(token)))
            .ok_or_else(|| InvalidFailoverId { id: s.to_string() })
    }
}

impl From<FailoverId> for String {
    fn from(id: FailoverId) -> Self {
        id.to_string()
    }
}

impl TryFrom<String> for FailoverId {
    type Error = InvalidFailoverId;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

/// The seed's `failover_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum FailoverType {
    Automated,
    ManualOverride,
}

/// The seed's `event_status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum EventStatus {
    Initiated,
    Drained,
    Completed,
    Failed,
}

impl EventStatus {
    pub fn is_finished(self) -> bool {
        matches!(self, EventStatus::Completed | EventStatus::Failed)
    }
}

/// A step of the failover workflow, in order; `Failed` can follow any unfinished step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum FailoverStep {
    /// Consensus declared the outage and the controller committed to fail over.
    Decide,
    /// The failed region's write leases revoked, its epochs raised.
    Fence,
    /// Routing table and traffic driver pointed at the destination.
    ShiftTraffic,
    /// The destination's compute scaled up.
    ScaleStandby,
    /// The failed region no longer serves anything.
    Drained,
    Completed,
    Failed,
}

impl FailoverStep {
    /// The step that follows this one on the way to completion; `None` once finished.
    pub fn next(self) -> Option<FailoverStep> {
        match self {
            FailoverStep::Decide => Some(FailoverStep::Fence),
            FailoverStep::Fence => Some(FailoverStep::ShiftTraffic),
            FailoverStep::ShiftTraffic => Some(FailoverStep::ScaleStandby),
            FailoverStep::ScaleStandby => Some(FailoverStep::Drained),
            FailoverStep::Drained => Some(FailoverStep::Completed),
            FailoverStep::Completed | FailoverStep::Failed => None,
        }
    }

    /// The event status once this step is recorded.
    pub fn status(self) -> EventStatus {
        match self {
            FailoverStep::Decide
            | FailoverStep::Fence
            | FailoverStep::ShiftTraffic
            | FailoverStep::ScaleStandby => EventStatus::Initiated,
            FailoverStep::Drained => EventStatus::Drained,
            FailoverStep::Completed => EventStatus::Completed,
            FailoverStep::Failed => EventStatus::Failed,
        }
    }
}

/// One entry of `timeline_logs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimelineEntry {
    /// Log time of the entry that recorded the step.
    pub at: WallMillis,
    pub step: FailoverStep,
    pub detail: String,
}

/// One row of `failover_events`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailoverEvent {
    pub failover_id: FailoverId,
    /// The identity that proposed it: the controller for automated failovers, an operator for
    /// overrides.
    pub initiated_by: String,
    pub failed_region: RegionId,
    pub destination_region: RegionId,
    pub failover_type: FailoverType,
    pub event_status: EventStatus,
    pub uncommitted_data_loss_estimate_bytes: u64,
    pub uncommitted_data_loss_estimate_writes: u64,
    /// Never empty: `Decide` is recorded with the event.
    pub timeline_logs: Vec<TimelineEntry>,
    pub created_at: WallMillis,
    pub completed_at: Option<WallMillis>,
}

impl FailoverEvent {
    /// The last step recorded: how far the workflow has come.
    pub fn last_step(&self) -> FailoverStep {
        // The timeline starts with `Decide` and only grows, so the fallback is never taken.
        self.timeline_logs
            .last()
            .map_or(FailoverStep::Decide, |entry| entry.step)
    }

    pub fn is_finished(&self) -> bool {
        self.event_status.is_finished()
    }

    /// Whether the failed region was fenced: the failover got far enough to move its writes,
    /// so its traffic is (or is going) to the destination.
    pub fn fenced(&self) -> bool {
        self.timeline_logs
            .iter()
            .any(|entry| entry.step == FailoverStep::Fence)
    }
}

/// A failover-log command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FailoverCommand {
    /// Begin a failover; records `Decide`. The id is `fo-<token of this command>`.
    Initiate {
        initiated_by: String,
        failed_region: RegionId,
        destination_region: RegionId,
        failover_type: FailoverType,
        data_loss: DataLossEstimate,
        detail: String,
    },
    /// Record an operator's break-glass lease override — a write right moved without waiting
    /// for the previous holder's deadline — as a finished `MANUAL_OVERRIDE` event (`Decide`,
    /// then `Completed`) with the writes the displaced holder may still make.
    RecordOverride {
        initiated_by: String,
        failed_region: RegionId,
        destination_region: RegionId,
        data_loss: DataLossEstimate,
        detail: String,
    },
    /// Record that `step` was done (or, for `Failed`, why the failover stopped).
    RecordStep {
        failover_id: FailoverId,
        step: FailoverStep,
        detail: String,
    },
    /// Record a failover the controller decided against — the standby was too far behind (see
    /// `failover_plan::check_promotion`) — as a finished `FAILED` event: `Decide` with what was
    /// considered, `Failed` with why it was refused and the figures. Nothing is fenced or moved.
    RecordRefusal {
        initiated_by: String,
        failed_region: RegionId,
        destination_region: RegionId,
        failover_type: FailoverType,
        data_loss: DataLossEstimate,
        considered: String,
        refusal: String,
    },
}

/// The deterministic result of applying a [`FailoverCommand`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FailoverOutcome {
    Initiated {
        failover_id: FailoverId,
    },
    StepRecorded {
        failover_id: FailoverId,
        step: FailoverStep,
        status: EventStatus,
    },
    Refused(FailoverRefusal),
    /// `RecordRefusal`: the `FAILED` event that says why no failover was carried out.
    RefusalRecorded {
        failover_id: FailoverId,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Error, Serialize, Deserialize)]
pub enum FailoverRefusal {
    #[error("a region cannot fail over to itself ({region})")]
    SameRegion { region: RegionId },
    #[error("failover {existing} of {region} is still in progress")]
    AlreadyInProgress {
        region: RegionId,
        existing: FailoverId,
    },
    #[error("unknown failover {failover_id}")]
    UnknownFailover { failover_id: FailoverId },
    #[error("failover {failover_id} is already {status:?}")]
    Finished {
        failover_id: FailoverId,
        status: EventStatus,
    },
    /// The step is in the log already: a retry, or a new leader repeating its predecessor.
    #[error("failover {failover_id} has already recorded {step:?}")]
    StepAlreadyRecorded {
        failover_id: FailoverId,
        step: FailoverStep,
    },
    #[error("failover {failover_id} expects {expected:?} next, not {presented:?}")]
    StepOutOfOrder {
        failover_id: FailoverId,
        expected: FailoverStep,
        presented: FailoverStep,
    },
}

/// An event decided and finished in the same entry.
struct FinishedEvent<'a> {
    initiated_by: &'a str,
    failed_region: &'a RegionId,
    destination_region: &'a RegionId,
    failover_type: FailoverType,
    data_loss: DataLossEstimate,
    decided: &'a str,
    /// The finishing step and its detail.
    end: (FailoverStep, &'a str),
}

/// The replicated `failover_events` table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailoverLog {
    /// Keyed by id, which sorts in log order: newest last. Failovers are rare, so queries by
    /// region scan rather than keep a second index.
    events: BTreeMap<FailoverId, FailoverEvent>,
}

impl FailoverLog {
    pub fn get(&self, failover_id: &FailoverId) -> Option<&FailoverEvent> {
        self.events.get(failover_id)
    }

    /// Failovers of `region`, newest first. Newest by log order, not `created_at`: leaders'
    /// wall clocks may disagree, the log cannot.
    pub fn by_failed_region<'a>(
        &'a self,
        region: &'a RegionId,
    ) -> impl Iterator<Item = &'a FailoverEvent> + 'a {
        self.events
            .values()
            .rev()
            .filter(move |event| event.failed_region == *region)
    }

    /// Every failover, newest first (by log order, as [`FailoverLog::by_failed_region`]).
    pub fn newest_first(&self) -> impl Iterator<Item = &FailoverEvent> {
        self.events.values().rev()
    }

    /// Every failover event in the log.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Unfinished failovers, oldest first: what a new leader has to resume.
    pub fn unfinished(&self) -> impl Iterator<Item = &FailoverEvent> {
        self.events.values().filter(|event| !event.is_finished())
    }

    /// The region's unfinished failover, if it has one (it has at most one).
    pub fn unfinished_for(&self, region: &RegionId) -> Option<&FailoverEvent> {
        self.unfinished()
            .find(|event| event.failed_region == *region)
    }

    pub fn apply(&mut self, cmd: &FailoverCommand, ctx: &ApplyCtx) -> FailoverOutcome {
        let result = match cmd {
            FailoverCommand::Initiate {
                initiated_by,
                failed_region,
                destination_region,
                failover_type,
                data_loss,
                detail,
            } => {
                if failed_region == destination_region {
                    Err(FailoverRefusal::SameRegion {
                        region: failed_region.clone(),
                    })
                } else if let Some(existing) = self.unfinished_for(failed_region) {
                    Err(FailoverRefusal::AlreadyInProgress {
                        region: failed_region.clone(),
                        existing: existing.failover_id,
                    })
                } else {
                    let failover_id = FailoverId(ctx.token);
                    let event = FailoverEvent {
                        failover_id,
                        initiated_by: initiated_by.clone(),
                        failed_region: failed_region.clone(),
                        destination_region: destination_region.clone(),
                        failover_type: *failover_type,
                        event_status: EventStatus::Initiated,
                        uncommitted_data_loss_estimate_bytes: data_loss.bytes,
                        uncommitted_data_loss_estimate_writes: data_loss.writes,
                        timeline_logs: vec![TimelineEntry {
                            at: ctx.now,
                            step: FailoverStep::Decide,
                            detail: detail.clone(),
                        }],
                        created_at: ctx.now,
                        completed_at: None,
                    };
                    self.events.insert(failover_id, event);
                    Ok(FailoverOutcome::Initiated { failover_id })
                }
            }
            FailoverCommand::RecordOverride {
                initiated_by,
                failed_region,
                destination_region,
                data_loss,
                detail,
            } => {
                let failover_id = self.insert_finished(
                    FinishedEvent {
                        initiated_by,
                        failed_region,
                        destination_region,
                        failover_type: FailoverType::ManualOverride,
                        data_loss: *data_loss,
                        decided: detail,
                        end: (FailoverStep::Completed, "break-glass override applied"),
                    },
                    ctx,
                );
                Ok(FailoverOutcome::Initiated { failover_id })
            }
            FailoverCommand::RecordStep {
                failover_id,
                step,
                detail,
            } => self.record_step(*failover_id, *step, detail, ctx.now),
            FailoverCommand::RecordRefusal {
                initiated_by,
                failed_region,
                destination_region,
                failover_type,
                data_loss,
                considered,
                refusal,
            } => {
                let failover_id = self.insert_finished(
                    FinishedEvent {
                        initiated_by,
                        failed_region,
                        destination_region,
                        failover_type: *failover_type,
                        data_loss: *data_loss,
                        decided: considered,
                        end: (FailoverStep::Failed, refusal),
                    },
                    ctx,
                );
                Ok(FailoverOutcome::RefusalRecorded { failover_id })
            }
        };
        result.unwrap_or_else(FailoverOutcome::Refused)
    }

    /// Logs an event that is decided and finished in one entry (a break-glass override, a
    /// refused failover): `Decide`, then its end step.
    fn insert_finished(&mut self, event: FinishedEvent<'_>, ctx: &ApplyCtx) -> FailoverId {
        let failover_id = FailoverId(ctx.token);
        let (end, ended) = event.end;
        let entry = |step, detail: &str| TimelineEntry {
            at: ctx.now,
            step,
            detail: detail.to_string(),
        };
        let row = FailoverEvent {
            failover_id,
            initiated_by: event.initiated_by.to_string(),
            failed_region: event.failed_region.clone(),
            destination_region: event.destination_region.clone(),
            failover_type: event.failover_type,
            event_status: end.status(),
            uncommitted_data_loss_estimate_bytes: event.data_loss.bytes,
            uncommitted_data_loss_estimate_writes: event.data_loss.writes,
            timeline_logs: vec![
                entry(FailoverStep::Decide, event.decided),
                entry(end, ended),
            ],
            created_at: ctx.now,
            completed_at: Some(ctx.now),
        };
        self.events.insert(failover_id, row);
        failover_id
    }

    fn record_step(
        &mut self,
        failover_id: FailoverId,
        step: FailoverStep,
        detail: &str,
        now: WallMillis,
    ) -> Result<FailoverOutcome, FailoverRefusal> {
        let event = self
            .events
            .get_mut(&failover_id)
            .ok_or(FailoverRefusal::UnknownFailover { failover_id })?;
        let last = event.last_step();
        let Some(expected) = last.next() else {
            return Err(FailoverRefusal::Finished {
                failover_id,
                status: event.event_status,
            });
        };
        if step != expected && step != FailoverStep::Failed {
            return Err(if step <= last {
                FailoverRefusal::StepAlreadyRecorded { failover_id, step }
            } else {
                FailoverRefusal::StepOutOfOrder {
                    failover_id,
                    expected,
                    presented: step,
                }
            });
        }
        let status = step.status();
        event.timeline_logs.push(TimelineEntry {
            at: now,
            step,
            detail: detail.to_string(),
        });
        event.event_status = status;
        if status.is_finished() {
            event.completed_at = Some(now);
        }
        Ok(FailoverOutcome::StepRecorded {
            failover_id,
            step,
            status,
        })
    }
}
