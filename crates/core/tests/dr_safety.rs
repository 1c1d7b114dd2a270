//! Issue 11, item 3: the DR safety rules of the pure core. A regional fence revokes every lease
//! held in the region and refuses the region new grants until failback; automatic promotion is
//! refused when the standby's last reported lag exceeds the link's RPO target, and the refusal
//! is a finished event of the failover log with its reason and figures.

mod dr_common;

use arbiter_core::command::{Batch, Command, Outcome};
use arbiter_core::failover_log::{
    EventStatus, FailoverCommand, FailoverOutcome, FailoverStep, FailoverType,
};
use arbiter_core::failover_plan::{check_promotion, PromotionRefusal};
use arbiter_core::lease_table::{LeaseCommand, LeaseOutcome, LeaseRefusal, LeaseState};
use arbiter_core::replication::{
    DataLossEstimate, EpochId, ReplicationCommand, ReplicationMode, ReplicationState,
};
use arbiter_core::state_machine::StateMachine;
use arbiter_core::{HolderId, RegionId, ResourceId, WallMillis};
use dr_common::{ctx, east, west};

const TTL: u64 = 10_000;

fn acquire(resource: &str, holder: &str, region: &RegionId) -> Command {
    Command::Lease(LeaseCommand::Acquire {
        resource: ResourceId::new(resource),
        holder: HolderId::new(holder),
        region: Some(region.clone()),
        ttl_ms: TTL,
        break_glass: None,
    })
}

/// Applies one command per log entry, from index 1.
struct Log {
    sm: StateMachine,
    index: u64,
}

impl Log {
    fn new() -> Self {
        Log {
            sm: StateMachine::default(),
            index: 0,
        }
    }

    fn apply(&mut self, command: Command) -> Outcome {
        self.index += 1;
        let batch = Batch::new(WallMillis(self.index * 1_000), vec![command]);
        self.sm.apply_batch(self.index, &batch).remove(0)
    }

    fn lease(&self, resource: &str) -> &LeaseState {
        &self
            .sm
            .leases
            .get(&ResourceId::new(resource))
            .expect("row")
            .lease
    }
}

fn fence_region(region: &RegionId) -> Command {
    Command::Lease(LeaseCommand::RevokeRegion {
        region: region.clone(),
        by: "dr-controller".into(),
        reason: "failover fo-1".into(),
    })
}

#[test]
fn a_regional_fence_revokes_the_regions_leases_and_refuses_it_until_failback() {
    let mut log = Log::new();
    log.apply(acquire("db/orders", "proxy-east-a", &east()));
    log.apply(acquire("db/carts", "proxy-east-b", &east()));
    log.apply(acquire("db/west", "proxy-west", &west()));

    let Outcome::Lease(LeaseOutcome::RevokedMany(revoked)) = log.apply(fence_region(&east()))
    else {
        panic!("expected the region's leases revoked");
    };
    let revoked: Vec<&str> = revoked.iter().map(|r| r.resource.as_str()).collect();
    assert_eq!(
        revoked,
        ["db/carts", "db/orders"],
        "every lease held in us-east-1"
    );
    assert!(matches!(
        log.lease("db/orders"),
        LeaseState::Draining { .. }
    ));
    assert!(matches!(log.lease("db/west"), LeaseState::Held(_)));

    // The fenced region is granted nothing, on a new resource or a freed one; others are.
    for resource in ["db/new", "db/orders"] {
        let refused = log.apply(acquire(resource, "proxy-east-a", &east()));
        let Outcome::Lease(LeaseOutcome::Refused(refusal)) = refused else {
            panic!("{resource}: expected a refusal, got {refused:?}");
        };
        assert!(
            matches!(&refusal, LeaseRefusal::RegionFenced { region, .. } if *region == east()),
            "{refusal:?}"
        );
        assert!(refusal.is_retryable(), "failback lifts it");
    }
    assert!(
        log.sm.leases.get(&ResourceId::new("db/new")).is_none(),
        "a refusal changes nothing"
    );
    assert!(matches!(
        log.apply(acquire("db/west-2", "proxy-west", &west())),
        Outcome::Lease(LeaseOutcome::Granted { .. })
    ));
    // A retried fence revokes nothing more and keeps the first fence's record.
    let first = log
        .sm
        .leases
        .region_fence(&east())
        .cloned()
        .expect("fenced");
    assert_eq!(
        log.apply(fence_region(&east())),
        Outcome::Lease(LeaseOutcome::RevokedMany(vec![]))
    );
    assert_eq!(log.sm.leases.region_fence(&east()), Some(&first));

    // Failback lifts the fence: a new resource is granted; the revoked lease still waits for
    // its holder's deadline.
    let lifted = log.apply(Command::Lease(LeaseCommand::LiftRegionFence {
        region: east(),
        by: "alice".into(),
    }));
    assert_eq!(
        lifted,
        Outcome::Lease(LeaseOutcome::RegionFenceLifted(Some(first)))
    );
    assert!(matches!(
        log.apply(acquire("db/new", "proxy-east-a", &east())),
        Outcome::Lease(LeaseOutcome::Granted { .. })
    ));
    assert!(matches!(
        log.apply(acquire("db/orders", "proxy-east-a", &east())),
        Outcome::Lease(LeaseOutcome::Refused(LeaseRefusal::Draining { .. }))
    ));
}

fn link(lag_ms: u64, active: bool, mode: ReplicationMode) -> ReplicationState {
    let mut state = ReplicationState::default();
    state.apply(
        &ReplicationCommand::UpsertLink {
            source: east(),
            target: west(),
            mode,
        },
        &ctx(1, 0),
    );
    state.apply(
        &ReplicationCommand::LinkHeartbeat {
            source: east(),
            target: west(),
            last_sent_epoch_id: EpochId(10),
            last_received_epoch_id: EpochId(9),
            replication_lag_ms: lag_ms,
            is_link_active: active,
        },
        &ctx(2, 1_000),
    );
    state
}

#[test]
fn promotion_is_refused_past_the_links_rpo_target_with_the_figures() {
    let gate =
        |state: &ReplicationState| check_promotion(&east(), &west(), state.link(&east(), &west()));
    assert_eq!(gate(&link(800, true, ReplicationMode::Async)), Ok(()));
    assert_eq!(
        gate(&link(5_000, true, ReplicationMode::Async)),
        Ok(()),
        "at the target"
    );
    let refusal = gate(&link(6_000, true, ReplicationMode::Async)).unwrap_err();
    assert_eq!(
        refusal,
        PromotionRefusal::LagAboveRpo {
            source_region: east(),
            target_region: west(),
            mode: ReplicationMode::Async,
            lag_ms: 6_000,
            target_ms: 5_000,
        }
    );
    let text = refusal.to_string();
    assert!(
        text.contains("6000 ms") && text.contains("5000 ms"),
        "{text}"
    );
    // SYNC promises RPO 0: any reported lag refuses.
    assert!(matches!(
        gate(&link(1, true, ReplicationMode::Sync)),
        Err(PromotionRefusal::LagAboveRpo { target_ms: 0, .. })
    ));
    assert!(matches!(
        gate(&link(0, false, ReplicationMode::Async)),
        Err(PromotionRefusal::LinkInactive { .. })
    ));
    assert!(matches!(
        gate(&ReplicationState::default()),
        Err(PromotionRefusal::LinkUnknown { .. })
    ));
}

#[test]
fn a_refused_failover_is_a_finished_event_that_fences_nothing() {
    let mut log = Log::new();
    log.apply(acquire("db/orders", "proxy-east", &east()));
    let loss = DataLossEstimate::from_lag(6_000, arbiter_core::replication::WriteRate::SEED_PEAK);
    let outcome = log.apply(Command::Failover(FailoverCommand::RecordRefusal {
        initiated_by: "dr-controller".into(),
        failed_region: east(),
        destination_region: west(),
        failover_type: FailoverType::Automated,
        data_loss: loss,
        considered: "outage of us-east-1 confirmed by 3 vantage points".into(),
        refusal: "automatic promotion refused: lag 6000 ms > 5000 ms".into(),
    }));
    let Outcome::Failover(FailoverOutcome::RefusalRecorded { failover_id }) = outcome else {
        panic!("expected the refusal recorded, got {outcome:?}");
    };
    let event = log.sm.failovers.get(&failover_id).expect("event");
    assert_eq!(event.event_status, EventStatus::Failed);
    assert_eq!(event.uncommitted_data_loss_estimate_writes, 30_000);
    let steps: Vec<_> = event.timeline_logs.iter().map(|t| t.step).collect();
    assert_eq!(steps, [FailoverStep::Decide, FailoverStep::Failed]);
    assert!(!event.fenced());
    assert!(log.sm.failovers.unfinished_for(&east()).is_none());
    assert!(
        matches!(log.lease("db/orders"), LeaseState::Held(_)),
        "nothing fenced"
    );
    assert!(log.sm.leases.region_fence(&east()).is_none());
}
