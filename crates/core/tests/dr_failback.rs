//! The failback gate: traffic goes back only to a region that has been healthy for the whole
//! cooldown, holds everything the active primary has, and receives replication within its RPO.
//! Every refusal says why.

mod dr_common;

use arbiter_core::failover_plan::{check_failback, FailbackRefusal};
use arbiter_core::region_health::{
    HealthCommand, HealthState, RegionHealth, RegionHealthTable, DEFAULT_COOLDOWN_MS,
};
use arbiter_core::replication::{EpochId, ReplicationCommand, ReplicationMode, ReplicationState};
use arbiter_core::WallMillis;
use dr_common::{ctx, east, west};

/// us-east-1's health after it went down at 1 s and has been healthy since 2 s, observed at
/// `observed_at` by a leader that has timed the recovery since 2 s on its monotonic clock (its
/// cooldown ends at 602 s, when that leader logs `CooldownElapsed`).
fn recovering_east(observed_at: u64) -> RegionHealth {
    let mut table = RegionHealthTable::default();
    let region = east();
    let commands = [
        (
            HealthCommand::Register {
                region: region.clone(),
            },
            0,
        ),
        (
            HealthCommand::MarkDown {
                region: region.clone(),
            },
            1_000,
        ),
        (
            HealthCommand::ObserveHealthy {
                region: region.clone(),
            },
            2_000,
        ),
    ];
    for (index, (command, now)) in commands.into_iter().enumerate() {
        table.apply(&command, &ctx(index as u64 + 1, now));
    }
    let run = table
        .get(&region)
        .unwrap()
        .recovery_run
        .expect("recovering");
    let measured_ms = observed_at - 2_000;
    let last = if measured_ms >= DEFAULT_COOLDOWN_MS {
        HealthCommand::CooldownElapsed {
            region: region.clone(),
            run,
            measured_ms,
        }
    } else {
        HealthCommand::ObserveHealthy {
            region: region.clone(),
        }
    };
    table.apply(&last, &ctx(4, observed_at));
    table.get(&region).unwrap().clone()
}

const RECOVERED_AT: u64 = 2_000 + DEFAULT_COOLDOWN_MS;

/// us-east-1 (recovered) and us-west-2 (the active primary), each with checkpoints up to the
/// given epochs, and an ASYNC link west → east lagging `lag_ms`.
fn replication(east_epoch: u64, west_epoch: u64, lag_ms: u64, active: bool) -> ReplicationState {
    let mut state = ReplicationState::default();
    let mut index = 0;
    let mut apply = |cmd: ReplicationCommand| {
        index += 1;
        state.apply(&cmd, &ctx(index, index * 1_000));
    };
    for (region, last) in [(east(), east_epoch), (west(), west_epoch)] {
        for epoch in 1..=last {
            apply(ReplicationCommand::ReportCheckpoint {
                region: region.clone(),
                epoch: EpochId(epoch),
                committed_transaction_count: 10,
                checksum: format!("sha-{epoch}"),
            });
        }
    }
    apply(ReplicationCommand::UpsertLink {
        source: west(),
        target: east(),
        mode: ReplicationMode::Async,
    });
    apply(ReplicationCommand::LinkHeartbeat {
        source: west(),
        target: east(),
        last_sent_epoch_id: EpochId(west_epoch),
        last_received_epoch_id: EpochId(east_epoch.min(west_epoch)),
        replication_lag_ms: lag_ms,
        is_link_active: active,
    });
    state
}

/// The gate as a leader that has timed the recovery since 2 s sees it at `now`.
fn gate(health: &RegionHealth, now: u64, state: &ReplicationState) -> Result<(), FailbackRefusal> {
    let remaining = match health.state {
        HealthState::Recovering => DEFAULT_COOLDOWN_MS.saturating_sub(now.saturating_sub(2_000)),
        _ => 0,
    };
    check_failback(
        health,
        remaining,
        state.latest_checkpoint(&east()),
        state.latest_checkpoint(&west()),
        state.link(&west(), &east()),
    )
}

#[test]
fn recovered_caught_up_region_may_fail_back() {
    let health = recovering_east(RECOVERED_AT);
    assert_eq!(health.state, HealthState::Healthy);
    assert_eq!(
        gate(&health, RECOVERED_AT, &replication(42, 42, 120, true)),
        Ok(())
    );
}

#[test]
fn failback_inside_the_cooldown_is_refused_with_the_time_left() {
    let health = recovering_east(300_000);
    assert_eq!(
        gate(&health, 300_000, &replication(42, 42, 0, true)),
        Err(FailbackRefusal::CooldownNotElapsed {
            remaining_ms: RECOVERED_AT - 300_000,
        })
    );
    // The cooldown is over even if no healthy observation has been logged since: the gate reads
    // what the leader has timed, not the last observation.
    assert_eq!(
        gate(&health, RECOVERED_AT, &replication(42, 42, 0, true)),
        Ok(())
    );
}

#[test]
fn lagging_checkpoint_blocks_failback_with_its_reason() {
    let health = recovering_east(RECOVERED_AT);
    let refusal = gate(&health, RECOVERED_AT, &replication(41, 42, 0, true)).unwrap_err();
    assert_eq!(
        refusal,
        FailbackRefusal::CheckpointBehind {
            recovered_epoch: Some(EpochId(41)),
            primary_epoch: EpochId(42),
        }
    );
    assert!(refusal.is_retryable());
    assert_eq!(
        refusal.to_string(),
        "recovered region is at epoch 41, the primary at 42"
    );
    assert_eq!(
        gate(&health, RECOVERED_AT, &replication(0, 42, 0, true)),
        Err(FailbackRefusal::CheckpointBehind {
            recovered_epoch: None,
            primary_epoch: EpochId(42),
        })
    );
}

#[test]
fn diverged_checkpoints_block_failback_for_good() {
    let health = recovering_east(RECOVERED_AT);
    let mut state = replication(42, 41, 0, true);
    // us-west-2 reaches epoch 42 with different data than us-east-1 had at 42: split brain.
    state.apply(
        &ReplicationCommand::ReportCheckpoint {
            region: west(),
            epoch: EpochId(42),
            committed_transaction_count: 10,
            checksum: "sha-west-42".into(),
        },
        &ctx(1_000, 1_000_000),
    );
    let refusal = gate(&health, RECOVERED_AT, &state).unwrap_err();
    assert_eq!(
        refusal,
        FailbackRefusal::CheckpointDiverged {
            epoch: EpochId(42),
            recovered_hash: "sha-42".into(),
            primary_hash: "sha-west-42".into(),
        }
    );
    assert!(!refusal.is_retryable());
}

#[test]
fn replication_beyond_rpo_blocks_failback() {
    let health = recovering_east(RECOVERED_AT);
    assert_eq!(
        gate(&health, RECOVERED_AT, &replication(42, 42, 6_000, true)),
        Err(FailbackRefusal::RpoViolated {
            lag_ms: 6_000,
            target_ms: 5_000,
            link_active: true,
        })
    );
    assert_eq!(
        gate(&health, RECOVERED_AT, &replication(42, 42, 0, false)),
        Err(FailbackRefusal::RpoViolated {
            lag_ms: 0,
            target_ms: 5_000,
            link_active: false,
        })
    );
}

#[test]
fn region_still_down_or_degraded_is_not_recovered() {
    let down = RegionHealth {
        state: HealthState::Down,
        down_since: Some(WallMillis(1_000)),
        healthy_since: None,
        cooldown_until: None,
        recovery_run: None,
    };
    assert_eq!(
        gate(&down, RECOVERED_AT, &replication(42, 42, 0, true)),
        Err(FailbackRefusal::RegionNotRecovered {
            state: HealthState::Down
        })
    );
    let degraded = RegionHealth {
        state: HealthState::Degraded,
        down_since: None,
        healthy_since: None,
        cooldown_until: None,
        recovery_run: None,
    };
    assert_eq!(
        gate(&degraded, RECOVERED_AT, &replication(42, 42, 0, true)),
        Err(FailbackRefusal::RegionNotRecovered {
            state: HealthState::Degraded
        })
    );
}

#[test]
fn a_recovered_region_ahead_of_the_primary_may_fail_back() {
    // Its newest checkpoint is past the primary's (it took the last writes before the outage
    // and the primary has not written since): nothing would regress.
    let health = recovering_east(RECOVERED_AT);
    assert_eq!(
        gate(&health, RECOVERED_AT, &replication(43, 42, 0, true)),
        Ok(())
    );
}

#[test]
fn a_lag_exactly_at_the_rpo_target_is_within_it() {
    let health = recovering_east(RECOVERED_AT);
    let target = ReplicationMode::Async.rpo_target_ms();
    assert_eq!(
        gate(&health, RECOVERED_AT, &replication(42, 42, target, true)),
        Ok(())
    );
    assert!(matches!(
        gate(
            &health,
            RECOVERED_AT,
            &replication(42, 42, target + 1, true)
        ),
        Err(FailbackRefusal::RpoViolated { .. })
    ));
}
