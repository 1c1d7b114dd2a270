//! Traffic weights and traffic-shift tasks: the replicated side of the seed's
//! `POST /v1/dr/traffic-shift`.
//!
//! Invariant: a shift takes effect in the weights when its command is applied (the routing
//! table is the source of truth edge routers watch); the task then only advances, from
//! `IN_PROGRESS` to `COMPLETED` or `FAILED`, as the traffic driver reports — never back.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::routing::{TrafficShift, TrafficShiftError, TrafficWeights};
use crate::types::{ApplyCtx, FencingToken, RegionId, WallMillis};

/// A task id as the seed shows it: `dr_shift_<hex>`, derived from the minting log position.
pub type TaskId = String;

/// The token of the log entry that started a task, read back from its id (`dr_shift_<hex>`).
pub fn task_token(task_track_id: &str) -> Option<FencingToken> {
    let hex = task_track_id.strip_prefix("dr_shift_")?;
    u64::from_str_radix(hex, 16).ok().map(FencingToken)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum TaskStatus {
    InProgress,
    Completed,
    Failed,
}

/// The seed's `dnsPropagationStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum DnsPropagationStatus {
    Initiated,
    Propagated,
    Failed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShiftRequest {
    pub policy_name: String,
    pub source_region: RegionId,
    pub target_region: RegionId,
    /// `trafficShiftPercentage` in basis points (hundredths of a percent), exact across nodes.
    pub percentage_bp: u32,
    pub drain_timeout_seconds: u32,
    pub reason: String,
    pub initiated_by: String,
    /// Connections to drain from the source, as its gateway last reported.
    pub drain_active_count: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrafficTask {
    pub task_track_id: TaskId,
    pub request: ShiftRequest,
    pub shift: TrafficShift,
    pub status: TaskStatus,
    pub dns_propagation_status: DnsPropagationStatus,
    pub detail: String,
    pub created_at: WallMillis,
    pub updated_at: WallMillis,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TrafficCommand {
    /// Sets the weights outright (initial layout); refused unless they sum to 100 %.
    SetWeights(BTreeMap<RegionId, u32>),
    Shift(ShiftRequest),
    /// The traffic driver's result for a task.
    Finish {
        task_track_id: TaskId,
        succeeded: bool,
        detail: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TrafficOutcome {
    WeightsSet,
    Started(Box<TrafficTask>),
    Finished(Box<TrafficTask>),
    Refused(TrafficRefusal),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum TrafficRefusal {
    #[error("no traffic weights are set yet")]
    NoWeights,
    #[error("{0}")]
    Invalid(String),
    #[error("unknown task {task_track_id}")]
    UnknownTask { task_track_id: TaskId },
    #[error("task {task_track_id} already finished as {status:?}")]
    AlreadyFinished {
        task_track_id: TaskId,
        status: TaskStatus,
    },
}

impl From<TrafficShiftError> for TrafficRefusal {
    fn from(e: TrafficShiftError) -> Self {
        TrafficRefusal::Invalid(e.to_string())
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrafficState {
    weights: Option<TrafficWeights>,
    tasks: BTreeMap<TaskId, TrafficTask>,
}

impl TrafficState {
    pub fn weights(&self) -> Option<&TrafficWeights> {
        self.weights.as_ref()
    }

    pub fn task(&self, id: &str) -> Option<&TrafficTask> {
        self.tasks.get(id)
    }

    /// Every task, oldest first.
    pub fn tasks(&self) -> impl Iterator<Item = &TrafficTask> {
        // Keyed by id, whose hex digits do not sort as numbers (`dr_shift_10000` before
        // `dr_shift_2000`): order by the minting log position instead.
        let mut tasks: Vec<&TrafficTask> = self.tasks.values().collect();
        tasks.sort_by_key(|t| task_token(&t.task_track_id));
        tasks.into_iter()
    }

    /// Tasks still waiting for their driver, oldest first.
    pub fn in_progress(&self) -> impl Iterator<Item = &TrafficTask> {
        self.tasks().filter(|t| t.status == TaskStatus::InProgress)
    }

    pub fn apply(&mut self, cmd: &TrafficCommand, ctx: &ApplyCtx) -> TrafficOutcome {
        match cmd {
            TrafficCommand::SetWeights(weights) => match TrafficWeights::new(weights.clone()) {
                Ok(w) => {
                    self.weights = Some(w);
                    TrafficOutcome::WeightsSet
                }
                Err(e) => TrafficOutcome::Refused(e.into()),
            },
            TrafficCommand::Shift(request) => {
                let Some(weights) = self.weights.as_mut() else {
                    return TrafficOutcome::Refused(TrafficRefusal::NoWeights);
                };
                let percentage = f64::from(request.percentage_bp) / 100.0;
                match weights.shift(&request.source_region, &request.target_region, percentage) {
                    Ok(shift) => {
                        let task = TrafficTask {
                            task_track_id: format!("dr_shift_{:x}", ctx.token.0),
                            request: request.clone(),
                            shift,
                            status: TaskStatus::InProgress,
                            dns_propagation_status: DnsPropagationStatus::Initiated,
                            detail: String::new(),
                            created_at: ctx.now,
                            updated_at: ctx.now,
                        };
                        self.tasks.insert(task.task_track_id.clone(), task.clone());
                        TrafficOutcome::Started(Box::new(task))
                    }
                    Err(e) => TrafficOutcome::Refused(e.into()),
                }
            }
            TrafficCommand::Finish {
                task_track_id,
                succeeded,
                detail,
            } => {
                let Some(task) = self.tasks.get_mut(task_track_id) else {
                    return TrafficOutcome::Refused(TrafficRefusal::UnknownTask {
                        task_track_id: task_track_id.clone(),
                    });
                };
                if task.status != TaskStatus::InProgress {
                    return TrafficOutcome::Refused(TrafficRefusal::AlreadyFinished {
                        task_track_id: task_track_id.clone(),
                        status: task.status,
                    });
                }
                (task.status, task.dns_propagation_status) = if *succeeded {
                    (TaskStatus::Completed, DnsPropagationStatus::Propagated)
                } else {
                    (TaskStatus::Failed, DnsPropagationStatus::Failed)
                };
                task.detail = detail.clone();
                task.updated_at = ctx.now;
                TrafficOutcome::Finished(Box::new(task.clone()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::FencingToken;
    use std::collections::BTreeSet;

    fn ctx(i: u64) -> ApplyCtx {
        ApplyCtx {
            token: FencingToken(i << 12),
            now: WallMillis(1_000 * i),
        }
    }

    fn request(pct_bp: u32) -> ShiftRequest {
        ShiftRequest {
            policy_name: "failover_us_east_primary".into(),
            source_region: "us-east-1".into(),
            target_region: "us-west-2".into(),
            percentage_bp: pct_bp,
            drain_timeout_seconds: 30,
            reason: "test".into(),
            initiated_by: "operator".into(),
            drain_active_count: 14205,
        }
    }

    fn seeded() -> TrafficState {
        let mut state = TrafficState::default();
        let weights = BTreeMap::from([("us-east-1".into(), 10_000), ("us-west-2".into(), 0)]);
        assert_eq!(
            state.apply(&TrafficCommand::SetWeights(weights), &ctx(1)),
            TrafficOutcome::WeightsSet
        );
        state
    }

    #[test]
    fn tasks_are_listed_oldest_first_by_log_position() {
        let mut state = seeded();
        // Log indexes 2 and 16: ids dr_shift_2000 and dr_shift_10000, which sort the other
        // way round as strings.
        for i in [2, 16] {
            let outcome = state.apply(&TrafficCommand::Shift(request(1_000)), &ctx(i));
            assert!(matches!(outcome, TrafficOutcome::Started(_)), "{outcome:?}");
        }
        let ids: Vec<&str> = state.tasks().map(|t| t.task_track_id.as_str()).collect();
        assert_eq!(ids, ["dr_shift_2000", "dr_shift_10000"]);
        let ids: Vec<&str> = state
            .in_progress()
            .map(|t| t.task_track_id.as_str())
            .collect();
        assert_eq!(ids, ["dr_shift_2000", "dr_shift_10000"]);
    }

    #[test]
    fn shift_moves_weights_and_task_only_advances() {
        let mut state = seeded();
        let TrafficOutcome::Started(task) =
            state.apply(&TrafficCommand::Shift(request(10_000)), &ctx(2))
        else {
            panic!("shift refused");
        };
        assert_eq!(task.task_track_id, "dr_shift_2000");
        assert_eq!(task_token(&task.task_track_id), Some(FencingToken(0x2000)));
        let weights = state.weights().expect("weights");
        assert_eq!(weights.weight_bp(&"us-east-1".into()), Some(0));
        assert_eq!(weights.weight_bp(&"us-west-2".into()), Some(10_000));
        assert_eq!(state.in_progress().count(), 1);

        let finish = TrafficCommand::Finish {
            task_track_id: task.task_track_id.clone(),
            succeeded: true,
            detail: "edge updated".into(),
        };
        let TrafficOutcome::Finished(done) = state.apply(&finish, &ctx(3)) else {
            panic!("finish refused");
        };
        assert_eq!(done.status, TaskStatus::Completed);
        assert_eq!(
            done.dns_propagation_status,
            DnsPropagationStatus::Propagated
        );
        assert!(matches!(
            state.apply(&finish, &ctx(4)),
            TrafficOutcome::Refused(TrafficRefusal::AlreadyFinished { .. })
        ));
        assert_eq!(state.in_progress().count(), 0);
    }

    #[test]
    fn a_finished_task_stays_readable_by_id_and_in_the_task_list() {
        // The status endpoint, and a new leader looking for a failover's task, read tasks back
        // after their driver has reported.
        let mut state = seeded();
        let mut start = |i| match state.apply(&TrafficCommand::Shift(request(5_000)), &ctx(i)) {
            TrafficOutcome::Started(task) => task.task_track_id,
            other => panic!("shift refused: {other:?}"),
        };
        let (failed, open) = (start(2), start(3));
        let finish = TrafficCommand::Finish {
            task_track_id: failed.clone(),
            succeeded: false,
            detail: "edge unreachable".into(),
        };
        assert!(matches!(
            state.apply(&finish, &ctx(4)),
            TrafficOutcome::Finished(_)
        ));

        let done = state.task(&failed).expect("the finished task");
        assert_eq!(
            (done.status, done.detail.as_str()),
            (TaskStatus::Failed, "edge unreachable")
        );
        let pending = state.task(&open).map(|t| t.status);
        assert_eq!(pending, Some(TaskStatus::InProgress));
        assert!(state.task("dr_shift_9000").is_none());
        let listed: BTreeSet<&str> = state.tasks().map(|t| t.task_track_id.as_str()).collect();
        assert_eq!(listed, BTreeSet::from([failed.as_str(), open.as_str()]));
    }

    #[test]
    fn bad_shifts_are_refused_without_change() {
        let mut state = seeded();
        let before = state.clone();
        let mut same = request(5_000);
        same.target_region = "us-east-1".into();
        for cmd in [
            TrafficCommand::Shift(request(10_001)),
            TrafficCommand::Shift(same),
            TrafficCommand::SetWeights(BTreeMap::from([("us-east-1".into(), 1)])),
        ] {
            assert!(matches!(
                state.apply(&cmd, &ctx(2)),
                TrafficOutcome::Refused(_)
            ));
        }
        assert_eq!(state, before);
        assert!(matches!(
            TrafficState::default().apply(&TrafficCommand::Shift(request(100)), &ctx(1)),
            TrafficOutcome::Refused(TrafficRefusal::NoWeights)
        ));
    }
}
