//! The failover log only advances, and the failover plan, resumed by a new leader from any
//! recorded step, performs each remaining step exactly once.

mod dr_common;

use arbiter_core::failover_log::{
    EventStatus, FailoverCommand, FailoverEvent, FailoverId, FailoverLog, FailoverOutcome,
    FailoverRefusal, FailoverStep, FailoverType, TimelineEntry,
};
use arbiter_core::failover_plan::{failover_needed, next_action, Action};
use arbiter_core::probe_consensus::{DependencyName, ServiceClass, Verdict};
use arbiter_core::region_health::{HealthCommand, RegionHealthTable};
use arbiter_core::replication::DataLossEstimate;
use arbiter_core::routing::{RoutingCommand, RoutingOutcome, RoutingTable};
use arbiter_core::{ApplyCtx, FencingToken, RegionId, TenantId, WallMillis};
use dr_common::{ctx, east, eu, west};
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};

const STEPS: [FailoverStep; 5] = [
    FailoverStep::Fence,
    FailoverStep::ShiftTraffic,
    FailoverStep::ScaleStandby,
    FailoverStep::Drained,
    FailoverStep::Completed,
];

/// The replicated tables a failover touches, applied as consecutive log entries.
struct Replica {
    log: FailoverLog,
    routing: RoutingTable,
    index: u64,
}

impl Replica {
    fn new() -> Self {
        let mut replica = Replica {
            log: FailoverLog::default(),
            routing: RoutingTable::default(),
            index: 0,
        };
        for tenant in ["acme", "globex"] {
            let ctx = replica.ctx();
            replica.routing.apply(
                &RoutingCommand::UpsertTenant {
                    tenant: TenantId::from(tenant),
                    primary_region: east(),
                    failover_region: west(),
                },
                &ctx,
            );
        }
        replica
    }

    fn ctx(&mut self) -> ApplyCtx {
        self.index += 1;
        ctx(self.index, self.index * 100)
    }

    fn apply(&mut self, cmd: &FailoverCommand) -> FailoverOutcome {
        let ctx = self.ctx();
        self.log.apply(cmd, &ctx)
    }

    fn initiate(&mut self) -> FailoverId {
        match self.apply(&initiate(east())) {
            FailoverOutcome::Initiated { failover_id } => failover_id,
            refused => panic!("initiate refused: {refused:?}"),
        }
    }

    fn event(&self, id: FailoverId) -> &FailoverEvent {
        self.log.get(&id).unwrap()
    }

    /// A snapshot and restore: what a new leader starts from.
    fn restored(&self) -> Replica {
        Replica {
            log: serde_json::from_str(&serde_json::to_string(&self.log).unwrap()).unwrap(),
            routing: serde_json::from_str(&serde_json::to_string(&self.routing).unwrap()).unwrap(),
            index: self.index,
        }
    }
}

fn initiate(failed_region: RegionId) -> FailoverCommand {
    FailoverCommand::Initiate {
        initiated_by: "controller@us-west-2".into(),
        failed_region,
        destination_region: west(),
        failover_type: FailoverType::Automated,
        data_loss: DataLossEstimate {
            writes: 4_000,
            bytes: 4_000_000,
        },
        detail: "3/3 vantage points report us-east-1 down".into(),
    }
}

fn record(id: FailoverId, step: FailoverStep) -> FailoverCommand {
    FailoverCommand::RecordStep {
        failover_id: id,
        step,
        detail: format!("{step:?}"),
    }
}

/// The shell's side: performs an action against the replicated tables and the (here, counted)
/// drivers, then records it.
struct Shell {
    performed: BTreeMap<FailoverStep, usize>,
    shifted_tenants: usize,
}

impl Shell {
    fn new() -> Self {
        Shell {
            performed: BTreeMap::new(),
            shifted_tenants: 0,
        }
    }

    fn perform(&mut self, replica: &mut Replica, action: &Action) {
        *self.performed.entry(action.step()).or_default() += 1;
        if let Action::ShiftTraffic { from, to, .. } = action {
            let ctx = replica.ctx();
            let outcome = replica.routing.apply(
                &RoutingCommand::ShiftRegion {
                    from: from.clone(),
                    to: to.clone(),
                },
                &ctx,
            );
            if let RoutingOutcome::Shifted { count } = outcome {
                self.shifted_tenants += count;
            }
        }
    }

    /// Drives the failover to its end, recording each action after performing it.
    fn drive(&mut self, replica: &mut Replica, id: FailoverId) {
        while let Some(action) = next_action(replica.event(id)) {
            self.perform(replica, &action);
            let outcome = replica.apply(&action.record("ok"));
            assert!(matches!(outcome, FailoverOutcome::StepRecorded { .. }));
        }
    }
}

#[test]
fn initiate_records_the_decision_with_an_id_from_the_log() {
    let mut replica = Replica::new();
    let id = replica.initiate();
    assert_eq!(id, FailoverId(FencingToken::from_log_position(3, 0)));
    assert_eq!(id.to_string(), format!("fo-{}", 3 << 12));
    assert_eq!(id.to_string().parse::<FailoverId>(), Ok(id));

    let event = replica.event(id);
    assert_eq!(event.event_status, EventStatus::Initiated);
    assert_eq!(event.uncommitted_data_loss_estimate_writes, 4_000);
    assert_eq!(event.uncommitted_data_loss_estimate_bytes, 4_000_000);
    assert_eq!(event.created_at, WallMillis(300));
    assert_eq!(event.completed_at, None);
    assert_eq!(
        event.timeline_logs,
        vec![TimelineEntry {
            at: WallMillis(300),
            step: FailoverStep::Decide,
            detail: "3/3 vantage points report us-east-1 down".into(),
        }]
    );
}

#[test]
fn failover_log_only_advances() {
    let mut replica = Replica::new();
    let id = replica.initiate();

    let refuse = |replica: &mut Replica, cmd: FailoverCommand, refusal: FailoverRefusal| {
        let before = replica.log.clone();
        assert_eq!(replica.apply(&cmd), FailoverOutcome::Refused(refusal));
        assert_eq!(replica.log, before, "a refusal never rewrites the log");
    };

    refuse(
        &mut replica,
        record(id, FailoverStep::Drained),
        FailoverRefusal::StepOutOfOrder {
            failover_id: id,
            expected: FailoverStep::Fence,
            presented: FailoverStep::Drained,
        },
    );
    refuse(
        &mut replica,
        record(id, FailoverStep::Decide),
        FailoverRefusal::StepAlreadyRecorded {
            failover_id: id,
            step: FailoverStep::Decide,
        },
    );
    assert!(matches!(
        replica.apply(&record(id, FailoverStep::Fence)),
        FailoverOutcome::StepRecorded {
            step: FailoverStep::Fence,
            status: EventStatus::Initiated,
            ..
        }
    ));
    refuse(
        &mut replica,
        record(id, FailoverStep::Fence),
        FailoverRefusal::StepAlreadyRecorded {
            failover_id: id,
            step: FailoverStep::Fence,
        },
    );
    for step in [
        FailoverStep::ShiftTraffic,
        FailoverStep::ScaleStandby,
        FailoverStep::Drained,
    ] {
        replica.apply(&record(id, step));
    }
    assert_eq!(replica.event(id).event_status, EventStatus::Drained);
    assert_eq!(
        replica.apply(&record(id, FailoverStep::Completed)),
        FailoverOutcome::StepRecorded {
            failover_id: id,
            step: FailoverStep::Completed,
            status: EventStatus::Completed,
        }
    );
    let completed_at = replica.event(id).completed_at;
    assert!(completed_at.is_some());

    // A finished event never changes again, not even to FAILED.
    for step in [
        FailoverStep::Failed,
        FailoverStep::Completed,
        FailoverStep::Fence,
    ] {
        refuse(
            &mut replica,
            record(id, step),
            FailoverRefusal::Finished {
                failover_id: id,
                status: EventStatus::Completed,
            },
        );
    }
    let unknown = FailoverId(FencingToken(1));
    refuse(
        &mut replica,
        record(unknown, FailoverStep::Fence),
        FailoverRefusal::UnknownFailover {
            failover_id: unknown,
        },
    );
}

#[test]
fn any_unfinished_failover_can_fail_and_then_stays_failed() {
    let mut replica = Replica::new();
    let id = replica.initiate();
    replica.apply(&record(id, FailoverStep::Fence));
    assert_eq!(
        replica.apply(&FailoverCommand::RecordStep {
            failover_id: id,
            step: FailoverStep::Failed,
            detail: "compute driver: quota exceeded".into(),
        }),
        FailoverOutcome::StepRecorded {
            failover_id: id,
            step: FailoverStep::Failed,
            status: EventStatus::Failed,
        }
    );
    let event = replica.event(id);
    assert!(event.completed_at.is_some());
    assert_eq!(next_action(event), None);
    assert!(matches!(
        replica.apply(&record(id, FailoverStep::ShiftTraffic)),
        FailoverOutcome::Refused(FailoverRefusal::Finished {
            status: EventStatus::Failed,
            ..
        })
    ));
}

#[test]
fn a_region_has_one_unfinished_failover_at_a_time() {
    let mut replica = Replica::new();
    let first = replica.initiate();
    assert_eq!(
        replica.apply(&initiate(east())),
        FailoverOutcome::Refused(FailoverRefusal::AlreadyInProgress {
            region: east(),
            existing: first,
        })
    );
    assert_eq!(
        replica.apply(&initiate(west())),
        FailoverOutcome::Refused(FailoverRefusal::SameRegion { region: west() })
    );
    Shell::new().drive(&mut replica, first);
    let second = replica.initiate();

    // Newest first, by log order.
    let history: Vec<FailoverId> = replica
        .log
        .by_failed_region(&east())
        .map(|event| event.failover_id)
        .collect();
    assert_eq!(history, [second, first]);
    assert_eq!(replica.log.by_failed_region(&west()).count(), 0);
    assert_eq!(
        replica
            .log
            .unfinished_for(&east())
            .map(|event| event.failover_id),
        Some(second)
    );
}

#[test]
fn the_log_lists_every_failover_newest_first_whatever_its_region() {
    let mut replica = Replica::new();
    assert!(replica.log.is_empty());
    assert_eq!(replica.log.len(), 0);
    assert_eq!(replica.log.newest_first().count(), 0);

    let from_east = replica.initiate();
    let FailoverOutcome::Initiated {
        failover_id: from_eu,
    } = replica.apply(&initiate(eu()))
    else {
        panic!("failover of eu-central-1 refused");
    };
    // A failover decided against is in the log too; a refused command is not.
    let FailoverOutcome::RefusalRecorded {
        failover_id: refused,
    } = replica.apply(&FailoverCommand::RecordRefusal {
        initiated_by: "controller@us-east-1".into(),
        failed_region: west(),
        destination_region: east(),
        failover_type: FailoverType::Automated,
        data_loss: DataLossEstimate::default(),
        considered: "3/3 vantage points report us-west-2 down".into(),
        refusal: "us-east-1 is too far behind".into(),
    })
    else {
        panic!("refusal not recorded");
    };
    assert!(matches!(
        replica.apply(&initiate(west())),
        FailoverOutcome::Refused(FailoverRefusal::SameRegion { .. })
    ));

    let listed: Vec<FailoverId> = replica
        .log
        .newest_first()
        .map(|event| event.failover_id)
        .collect();
    assert_eq!(listed, [refused, from_eu, from_east]);
    assert_eq!(replica.log.len(), 3);
    assert!(!replica.log.is_empty());
}

/// What failback reads to find where a region's traffic went: a failover that recorded `Fence`
/// moved the region's writes, even if it failed later; one that failed before never did.
#[test]
fn a_failover_has_fenced_its_region_once_it_records_the_fence() {
    let mut replica = Replica::new();
    let fail = |id| FailoverCommand::RecordStep {
        failover_id: id,
        step: FailoverStep::Failed,
        detail: "compute driver: quota exceeded".into(),
    };

    let abandoned = replica.initiate();
    replica.apply(&fail(abandoned));
    assert!(!replica.event(abandoned).fenced(), "failed before fencing");

    let id = replica.initiate();
    assert!(!replica.event(id).fenced(), "decided, not yet fenced");
    replica.apply(&record(id, FailoverStep::Fence));
    assert!(replica.event(id).fenced());
    replica.apply(&record(id, FailoverStep::ShiftTraffic));
    replica.apply(&fail(id));
    assert_eq!(replica.event(id).event_status, EventStatus::Failed);
    assert!(replica.event(id).fenced(), "failing does not unfence");
}

#[test]
fn plan_walks_fence_shift_scale_drain_complete() {
    let mut replica = Replica::new();
    let id = replica.initiate();
    let mut actions = Vec::new();
    while let Some(action) = next_action(replica.event(id)) {
        assert!(
            actions.len() < STEPS.len(),
            "still proposing {action:?} after {actions:?}"
        );
        replica.apply(&action.record("ok"));
        actions.push(action);
    }
    assert_eq!(
        actions,
        [
            Action::Fence {
                failover_id: id,
                region: east(),
            },
            Action::ShiftTraffic {
                failover_id: id,
                from: east(),
                to: west(),
            },
            Action::ScaleStandby {
                failover_id: id,
                region: west(),
            },
            Action::AwaitDrain {
                failover_id: id,
                region: east(),
            },
            Action::Complete { failover_id: id },
        ]
    );
    assert_eq!(replica.event(id).event_status, EventStatus::Completed);
}

#[test]
fn plan_resumed_from_any_recorded_step_performs_each_remaining_step_exactly_once() {
    for recorded in 0..=STEPS.len() {
        // The old leader performs and records `recorded` steps, then loses leadership.
        let mut old = Replica::new();
        let id = old.initiate();
        let mut old_shell = Shell::new();
        for _ in 0..recorded {
            let action = next_action(old.event(id)).unwrap();
            old_shell.perform(&mut old, &action);
            old.apply(&action.record("old leader"));
        }

        // The new leader starts from the replicated state alone.
        let mut new = old.restored();
        let mut new_shell = Shell::new();
        new_shell.drive(&mut new, id);

        for (position, step) in STEPS.iter().enumerate() {
            let by_new = new_shell.performed.get(step).copied().unwrap_or(0);
            let expected = usize::from(position >= recorded);
            assert_eq!(by_new, expected, "{step:?} after resuming from {recorded}");
            let by_both = by_new + old_shell.performed.get(step).copied().unwrap_or(0);
            assert_eq!(by_both, 1, "{step:?} performed once in all");
        }
        let logged: Vec<FailoverStep> = new
            .event(id)
            .timeline_logs
            .iter()
            .map(|entry| entry.step)
            .collect();
        assert_eq!(logged[0], FailoverStep::Decide);
        assert_eq!(logged[1..], STEPS);
        assert_eq!(old_shell.shifted_tenants + new_shell.shifted_tenants, 2);
    }
}

#[test]
fn deposed_leader_repeating_a_recorded_step_is_refused() {
    let mut replica = Replica::new();
    let id = replica.initiate();
    // The old leader computed its next action, then stalled.
    let stale = next_action(replica.event(id)).unwrap();
    // The new leader resumes and records that step and the next.
    for _ in 0..2 {
        let action = next_action(replica.event(id)).unwrap();
        replica.apply(&action.record("new leader"));
    }
    let before = replica.log.clone();
    assert_eq!(
        replica.apply(&stale.record("old leader")),
        FailoverOutcome::Refused(FailoverRefusal::StepAlreadyRecorded {
            failover_id: id,
            step: FailoverStep::Fence,
        })
    );
    assert_eq!(replica.log, before);
}

#[test]
fn only_an_outage_of_a_serving_region_without_a_failover_calls_for_one() {
    let mut health = RegionHealthTable::default();
    let mut log = FailoverLog::default();
    let entry = |index: u64| ctx(index, index);
    health.apply(&HealthCommand::Register { region: east() }, &entry(1));
    let outage = Verdict::Outage {
        region: east(),
        vantages: BTreeSet::new(),
        evidence: Vec::new(),
    };
    let suspect = Verdict::Suspect {
        region: east(),
        failing: BTreeSet::new(),
        silent: BTreeSet::new(),
    };

    assert_eq!(failover_needed(&outage, &health, &log), Some(&east()));
    assert_eq!(failover_needed(&suspect, &health, &log), None);
    let payments_down = Verdict::DependencyOutage {
        region: east(),
        dependency: DependencyName::from("paymentApi"),
        service_class: ServiceClass::from("payments"),
        vantages: BTreeSet::new(),
    };
    assert_eq!(
        failover_needed(&payments_down, &health, &log),
        None,
        "a dependency outage moves its service class, not the region"
    );

    log.apply(&initiate(east()), &entry(2));
    assert_eq!(
        failover_needed(&outage, &health, &log),
        None,
        "one under way"
    );

    let mut log = FailoverLog::default();
    health.apply(&HealthCommand::MarkDown { region: east() }, &entry(3));
    assert_eq!(
        failover_needed(&outage, &health, &log),
        None,
        "already down"
    );
    health.apply(&HealthCommand::ObserveHealthy { region: east() }, &entry(4));
    assert_eq!(failover_needed(&outage, &health, &log), None, "recovering");

    log.apply(&initiate(east()), &entry(5));
    let unknown = Verdict::Outage {
        region: RegionId::from("ap-south-1"),
        vantages: BTreeSet::new(),
        evidence: Vec::new(),
    };
    assert_eq!(
        failover_needed(&unknown, &health, &log),
        Some(&RegionId::from("ap-south-1"))
    );
}

fn any_step() -> impl Strategy<Value = FailoverStep> {
    prop_oneof![
        Just(FailoverStep::Decide),
        Just(FailoverStep::Fence),
        Just(FailoverStep::ShiftTraffic),
        Just(FailoverStep::ScaleStandby),
        Just(FailoverStep::Drained),
        Just(FailoverStep::Completed),
        Just(FailoverStep::Failed),
    ]
}

proptest! {
    /// Whatever steps are proposed, in whatever order: the timeline only grows, by the next step
    /// or by FAILED; the status never goes back; a finished event never changes.
    #[test]
    fn any_sequence_of_step_proposals_only_advances_the_event(
        steps in prop::collection::vec(any_step(), 0..40)
    ) {
        let mut replica = Replica::new();
        let id = replica.initiate();
        for step in steps {
            let before = replica.event(id).clone();
            let outcome = replica.apply(&record(id, step));
            let after = replica.event(id);
            prop_assert!(after.timeline_logs.starts_with(&before.timeline_logs));
            prop_assert!(after.event_status >= before.event_status);
            match outcome {
                FailoverOutcome::StepRecorded { .. } => {
                    prop_assert!(!before.is_finished());
                    prop_assert_eq!(after.timeline_logs.len(), before.timeline_logs.len() + 1);
                    prop_assert!(
                        step == FailoverStep::Failed || Some(step) == before.last_step().next()
                    );
                }
                _ => prop_assert_eq!(after, &before),
            }
        }
        let logged: Vec<FailoverStep> =
            replica.event(id).timeline_logs.iter().map(|entry| entry.step).collect();
        let unique: BTreeSet<&FailoverStep> = logged.iter().collect();
        prop_assert_eq!(unique.len(), logged.len(), "no step twice");
    }
}
