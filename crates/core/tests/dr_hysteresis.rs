//! Hysteresis: a region that flaps is failed over at most once and not failed back until it has
//! been healthy for the whole cooldown. The controller loop below is the pure part of the
//! shell's: probes in, verdicts, health observations, failovers and failbacks out, with time as
//! a number — ten minutes of simulated probing runs in microseconds. As in the shell, the
//! cooldown is timed by the leader's monotonic stopwatch, never read off the entries' wall
//! clocks; the last tests give the leader a wall clock an hour ahead to show it changes nothing.

mod dr_common;

use arbiter_core::failover_log::{FailoverCommand, FailoverLog, FailoverOutcome, FailoverType};
use arbiter_core::failover_plan::{
    check_failback, failover_needed, next_action, Action, FailbackRefusal,
};
use arbiter_core::leader_stopwatch::LeaderStopwatch;
use arbiter_core::probe_consensus::Verdict;
use arbiter_core::probe_consensus::{ConsensusConfig, ProbeConsensus, ProbeReport, VantageId};
use arbiter_core::region_health::{
    HealthCommand, HealthOutcome, HealthState, RegionHealthTable, DEFAULT_COOLDOWN_MS,
};
use arbiter_core::replication::{DataLossEstimate, ReplicationCommand, ReplicationState};
use arbiter_core::routing::{RoutingCommand, RoutingStatus, RoutingTable};
use arbiter_core::{ApplyCtx, FencingToken, MonoMillis, RegionId, TenantId, WallMillis};
use dr_common::{ctx, east, west};
use std::collections::BTreeMap;

const INTERVAL_MS: u64 = 5_000;
const TEN_MINUTES_MS: u64 = 600_000;
const VANTAGES: [&str; 3] = ["london", "tokyo", "sydney"];

/// The controller's decision loop over the pure core, with the replicated tables applied in
/// place of proposing them.
struct Controller {
    consensus: ProbeConsensus,
    health: RegionHealthTable,
    log: FailoverLog,
    routing: RoutingTable,
    replication: ReplicationState,
    /// The leader's monotonic timing of each recovery run; `now` doubles as its clock.
    cooldowns: LeaderStopwatch<(RegionId, FencingToken)>,
    log_index: u64,
    /// Times at which failovers of us-east-1 began and failbacks happened.
    failovers: Vec<u64>,
    failbacks: Vec<u64>,
}

impl Controller {
    fn new() -> Self {
        let mut controller = Controller {
            consensus: ProbeConsensus::new(ConsensusConfig::default()).unwrap(),
            health: RegionHealthTable::default(),
            log: FailoverLog::default(),
            routing: RoutingTable::default(),
            replication: ReplicationState::default(),
            cooldowns: LeaderStopwatch::default(),
            log_index: 0,
            failovers: Vec::new(),
            failbacks: Vec::new(),
        };
        for region in [east(), west()] {
            let ctx = controller.ctx(0);
            controller
                .health
                .apply(&HealthCommand::Register { region }, &ctx);
        }
        let ctx = controller.ctx(0);
        controller.routing.apply(
            &RoutingCommand::UpsertTenant {
                tenant: TenantId::from("acme"),
                primary_region: east(),
                failover_region: west(),
            },
            &ctx,
        );
        // Both regions at the same checkpoint: only health can hold failback back here.
        for region in [east(), west()] {
            let ctx = controller.ctx(0);
            controller.replication.apply(
                &ReplicationCommand::ReportCheckpoint {
                    region,
                    epoch: arbiter_core::replication::EpochId(7),
                    committed_transaction_count: 100,
                    checksum: "c7".into(),
                },
                &ctx,
            );
        }
        controller
    }

    /// The context of the next log entry.
    fn ctx(&mut self, now: u64) -> ApplyCtx {
        self.log_index += 1;
        ctx(self.log_index, now)
    }

    /// One probe round at `now` (every vantage probes us-east-1), then one decision round.
    fn tick(&mut self, now: u64, failing: &[&str]) {
        for vantage in VANTAGES {
            self.consensus
                .record(ProbeReport {
                    vantage: VantageId::from(vantage),
                    region: east(),
                    ok: !failing.contains(&vantage),
                    dependencies: BTreeMap::new(),
                    at: MonoMillis(now),
                })
                .unwrap();
        }
        for verdict in self.consensus.evaluate(MonoMillis(now)) {
            if let Some(region) = failover_needed(&verdict, &self.health, &self.log) {
                let region = region.clone();
                self.fail_over(now, region);
            }
            let command = self.health_command(&verdict, now);
            let ctx = self.ctx(now);
            self.health.apply(&command, &ctx);
            self.time_recovery(now);
        }
        let shifted = self
            .routing
            .by_active(&west(), RoutingStatus::Shifted)
            .next()
            .is_some();
        let measured = self.measured(now);
        let gate = check_failback(
            self.health.get(&east()).unwrap(),
            self.health
                .cooldown_remaining(&east(), measured)
                .unwrap_or(0),
            self.replication.latest_checkpoint(&east()),
            self.replication.latest_checkpoint(&west()),
            None,
        );
        if shifted && gate.is_ok() {
            let ctx = self.ctx(now);
            self.routing
                .apply(&RoutingCommand::RestoreRegion { region: east() }, &ctx);
            self.failbacks.push(now);
        }
    }

    fn fail_over(&mut self, now: u64, failed_region: RegionId) {
        let ctx = self.ctx(now);
        let FailoverOutcome::Initiated { failover_id } = self.log.apply(
            &FailoverCommand::Initiate {
                initiated_by: "controller".into(),
                failed_region,
                destination_region: west(),
                failover_type: FailoverType::Automated,
                data_loss: DataLossEstimate::default(),
                detail: "3/3 vantage points".into(),
            },
            &ctx,
        ) else {
            panic!("failover refused");
        };
        self.failovers.push(now);
        while let Some(action) = next_action(self.log.get(&failover_id).unwrap()) {
            if let Action::ShiftTraffic { from, to, .. } = &action {
                let ctx = self.ctx(now);
                self.routing.apply(
                    &RoutingCommand::ShiftRegion {
                        from: from.clone(),
                        to: to.clone(),
                    },
                    &ctx,
                );
            }
            let ctx = self.ctx(now);
            // Each step recorded, or the plan would propose it again forever.
            let outcome = self.log.apply(&action.record("done"), &ctx);
            assert!(
                matches!(outcome, FailoverOutcome::StepRecorded { .. }),
                "{action:?} not recorded: {outcome:?}"
            );
        }
    }

    /// What the shell proposes for `verdict`: a healthy verdict on a recovering region reports
    /// the leader's measurement of the run instead of an observation.
    fn health_command(&mut self, verdict: &Verdict, now: u64) -> HealthCommand {
        let run = self
            .health
            .get(verdict.region())
            .and_then(|h| h.recovery_run);
        match (verdict, run) {
            (Verdict::Healthy { .. }, Some(run)) => HealthCommand::CooldownElapsed {
                region: verdict.region().clone(),
                run,
                measured_ms: self
                    .cooldowns
                    .elapsed(&(verdict.region().clone(), run), MonoMillis(now)),
            },
            _ => verdict.health_command(),
        }
    }

    /// Starts timing a recovery run as soon as it is logged; forgets runs that ended.
    fn time_recovery(&mut self, now: u64) {
        let run = self.health.get(&east()).and_then(|h| h.recovery_run);
        self.cooldowns.retain(|(_, r)| Some(*r) == run);
        if let Some(run) = run {
            self.cooldowns.elapsed(&(east(), run), MonoMillis(now));
        }
    }

    /// How long the leader has timed us-east-1's current recovery run.
    fn measured(&mut self, now: u64) -> u64 {
        match self.health.get(&east()).and_then(|h| h.recovery_run) {
            Some(run) => self.cooldowns.elapsed(&(east(), run), MonoMillis(now)),
            None => 0,
        }
    }

    fn east_state(&self) -> HealthState {
        self.health.get(&east()).unwrap().state
    }
}

#[test]
fn region_flapping_every_probe_interval_fails_over_once_and_does_not_fail_back_in_cooldown() {
    let mut controller = Controller::new();

    // Phase 1: a real outage, seen by all three vantage points for three rounds.
    let mut now = 0;
    for _ in 0..3 {
        now += INTERVAL_MS;
        controller.tick(now, &VANTAGES);
    }
    assert_eq!(controller.failovers.len(), 1);
    assert_eq!(controller.east_state(), HealthState::Down);

    // Phase 2: ten minutes of flapping — every probe interval, up, then down again.
    let flapping_until = now + TEN_MINUTES_MS;
    let mut round = 0;
    while now < flapping_until {
        now += INTERVAL_MS;
        round += 1;
        let failing: &[&str] = if round % 2 == 0 { &VANTAGES } else { &[] };
        controller.tick(now, failing);
    }
    assert_eq!(controller.failovers.len(), 1, "at most one failover");
    assert!(
        controller.failbacks.is_empty(),
        "no failback while flapping"
    );
    assert_ne!(controller.east_state(), HealthState::Healthy);
    let last_flap = now;

    // Phase 3: stable. Failback waits for a full cooldown from when the last failure left the
    // probe window, not from the first recovery.
    let give_up = now + 2 * (DEFAULT_COOLDOWN_MS + TEN_MINUTES_MS);
    while controller.failbacks.is_empty() {
        assert!(
            now < give_up,
            "no failback within {give_up} ms of stable health"
        );
        now += INTERVAL_MS;
        controller.tick(now, &[]);
    }
    let window_ms = ConsensusConfig::default().window_ms;
    let failed_back_after = controller.failbacks[0] - last_flap;
    assert!(failed_back_after >= DEFAULT_COOLDOWN_MS + window_ms);
    assert!(failed_back_after <= DEFAULT_COOLDOWN_MS + window_ms + INTERVAL_MS);
    assert_eq!(controller.east_state(), HealthState::Healthy);
    assert_eq!(controller.failovers.len(), 1);
    assert_eq!(
        controller
            .routing
            .get(&TenantId::from("acme"))
            .unwrap()
            .active_routing_region,
        east()
    );
}

#[test]
fn region_flapping_from_the_start_never_fails_over() {
    let mut controller = Controller::new();
    // Staggered flapping: each vantage point fails every other round, never all three together
    // for three rounds in a row.
    for round in 0..(TEN_MINUTES_MS / INTERVAL_MS) {
        let failing: Vec<&str> = VANTAGES
            .iter()
            .enumerate()
            .filter(|(i, _)| *i as u64 % 2 != round % 2)
            .map(|(_, vantage)| *vantage)
            .collect();
        controller.tick(round * INTERVAL_MS, &failing);
    }
    assert!(controller.failovers.is_empty());
    assert_eq!(controller.east_state(), HealthState::Degraded);
}

#[test]
fn region_failing_again_after_failback_is_failed_over_again() {
    let mut controller = Controller::new();
    let mut now = 0;
    let mut tick = |controller: &mut Controller, failing: &[&str]| {
        now += INTERVAL_MS;
        controller.tick(now, failing);
    };
    for _ in 0..3 {
        tick(&mut controller, &VANTAGES);
    }
    // Bounded: a failback comes a cooldown and a probe window after the outage ends.
    let mut rounds = 0;
    while controller.failbacks.is_empty() {
        rounds += 1;
        assert!(
            rounds <= 2 * (DEFAULT_COOLDOWN_MS + TEN_MINUTES_MS) / INTERVAL_MS,
            "no failback after {rounds} stable rounds"
        );
        tick(&mut controller, &[]);
    }
    for _ in 0..3 {
        tick(&mut controller, &VANTAGES);
    }
    assert_eq!(controller.failovers.len(), 2);
    assert_eq!(controller.log.by_failed_region(&east()).count(), 2);
}

#[test]
fn interrupted_recovery_restarts_the_cooldown_clock() {
    let mut health = RegionHealthTable::default();
    let region = east();
    let mut apply = |cmd: HealthCommand, now: u64| health.apply(&cmd, &ctx(now + 1, now));
    apply(
        HealthCommand::Register {
            region: region.clone(),
        },
        0,
    );
    apply(
        HealthCommand::MarkDown {
            region: region.clone(),
        },
        1_000,
    );
    assert_eq!(
        apply(
            HealthCommand::ObserveHealthy {
                region: region.clone()
            },
            2_000
        ),
        HealthOutcome::Changed {
            region: region.clone(),
            from: HealthState::Down,
            to: HealthState::Recovering,
        }
    );
    // Halfway through the cooldown, one unhealthy observation.
    assert_eq!(
        apply(
            HealthCommand::ObserveUnhealthy {
                region: region.clone()
            },
            302_000
        ),
        HealthOutcome::Changed {
            region: region.clone(),
            from: HealthState::Recovering,
            to: HealthState::Down,
        }
    );
    apply(
        HealthCommand::ObserveHealthy {
            region: region.clone(),
        },
        310_000,
    );
    // The first recovery's deadline passes: still recovering.
    assert_eq!(
        apply(
            HealthCommand::ObserveHealthy {
                region: region.clone()
            },
            602_000
        ),
        HealthOutcome::Unchanged {
            region: region.clone(),
            state: HealthState::Recovering,
        }
    );
    let row = health.get(&region).unwrap().clone();
    assert_eq!(row.down_since, Some(WallMillis(1_000)));
    assert_eq!(row.healthy_since, Some(WallMillis(310_000)));
    assert_eq!(row.cooldown_until, Some(WallMillis(910_000)));
    // The run is named by the entry that began it: the second recovery, not the first.
    let (first_run, run) = (
        FencingToken::from_log_position(2_001, 0),
        FencingToken::from_log_position(310_001, 0),
    );
    assert_eq!(row.recovery_run, Some(run));
    assert_eq!(health.cooldown_remaining(&region, 590_000), Some(10_000));

    let mut apply = |cmd: HealthCommand, now: u64| health.apply(&cmd, &ctx(now + 1, now));
    // A full cooldown timed on the interrupted run ends nothing.
    assert_eq!(
        apply(
            HealthCommand::CooldownElapsed {
                region: region.clone(),
                run: first_run,
                measured_ms: 900_000,
            },
            910_000
        ),
        HealthOutcome::Unchanged {
            region: region.clone(),
            state: HealthState::Recovering,
        }
    );
    // Nor does a healthy observation past the wall-clock estimate, nor a short measurement.
    for command in [
        HealthCommand::ObserveHealthy {
            region: region.clone(),
        },
        HealthCommand::CooldownElapsed {
            region: region.clone(),
            run,
            measured_ms: DEFAULT_COOLDOWN_MS - 1,
        },
    ] {
        assert_eq!(
            apply(command, 911_000),
            HealthOutcome::Unchanged {
                region: region.clone(),
                state: HealthState::Recovering,
            }
        );
    }
    assert_eq!(
        apply(
            HealthCommand::CooldownElapsed {
                region: region.clone(),
                run,
                measured_ms: DEFAULT_COOLDOWN_MS,
            },
            912_000
        ),
        HealthOutcome::Changed {
            region: region.clone(),
            from: HealthState::Recovering,
            to: HealthState::Healthy,
        }
    );
    let row = health.get(&region).unwrap();
    assert_eq!(row.down_since, None);
    assert_eq!(row.cooldown_until, None);
    assert_eq!(row.recovery_run, None);
    assert_eq!(row.healthy_since, Some(WallMillis(310_000)));
}

/// Issue 11, item 3c: the recovery began under one leader; the next leader's wall clock is an
/// hour ahead. Before the cooldown was timed on the leader's monotonic clock, that leader's
/// first healthy observation (its wall clock already past `cooldown_until`) ended the recovery
/// at once and the failback gate opened.
#[test]
fn a_new_leader_with_a_clock_an_hour_ahead_neither_shortens_the_cooldown_nor_fails_back_early() {
    const HOUR_MS: u64 = 3_600_000;
    let mut health = RegionHealthTable::default();
    let region = east();
    let mut index = 0;
    let mut apply = |health: &mut RegionHealthTable, cmd: HealthCommand, wall: u64| {
        index += 1;
        health.apply(&cmd, &ctx(index, wall))
    };
    // Leader 1, wall clock right: down at 1 s, healthy again at 2 s.
    apply(&mut health, HealthCommand::Register { region: east() }, 0);
    apply(
        &mut health,
        HealthCommand::MarkDown { region: east() },
        1_000,
    );
    apply(
        &mut health,
        HealthCommand::ObserveHealthy { region: east() },
        2_000,
    );
    let run = health
        .get(&region)
        .unwrap()
        .recovery_run
        .expect("recovering");

    // Leader 2 is elected at monotonic 50 s; its wall clock reads an hour ahead.
    let skewed = |wall: u64| wall + HOUR_MS;
    let mut leader2 = LeaderStopwatch::default();
    let elected = MonoMillis(50_000);
    let measured = leader2.elapsed(&(east(), run), elected);
    assert_eq!(
        measured, 0,
        "a new leader knows nothing of its predecessor's timing"
    );
    assert_eq!(
        apply(
            &mut health,
            HealthCommand::ObserveHealthy { region: east() },
            skewed(50_000)
        ),
        HealthOutcome::Unchanged {
            region: east(),
            state: HealthState::Recovering
        },
        "a wall clock past cooldown_until must not end the recovery"
    );
    let gate = |health: &RegionHealthTable, measured: u64| {
        check_failback(
            health.get(&east()).unwrap(),
            health.cooldown_remaining(&east(), measured).unwrap_or(0),
            None,
            None,
            None,
        )
    };
    assert_eq!(
        gate(&health, measured),
        Err(FailbackRefusal::CooldownNotElapsed {
            remaining_ms: DEFAULT_COOLDOWN_MS
        })
    );

    // Nine minutes later on its monotonic clock: still refused, with the time left.
    let measured = leader2.elapsed(&(east(), run), MonoMillis(50_000 + 540_000));
    let proposal = HealthCommand::CooldownElapsed {
        region: east(),
        run,
        measured_ms: measured,
    };
    assert_eq!(
        apply(&mut health, proposal, skewed(590_000)),
        HealthOutcome::Unchanged {
            region: east(),
            state: HealthState::Recovering
        }
    );
    assert_eq!(
        gate(&health, measured),
        Err(FailbackRefusal::CooldownNotElapsed {
            remaining_ms: 60_000
        })
    );

    // A full cooldown by its own clock: the recovery ends and failback may go ahead.
    let measured = leader2.elapsed(&(east(), run), MonoMillis(50_000 + DEFAULT_COOLDOWN_MS));
    let proposal = HealthCommand::CooldownElapsed {
        region: east(),
        run,
        measured_ms: measured,
    };
    assert_eq!(
        apply(&mut health, proposal, skewed(650_000)),
        HealthOutcome::Changed {
            region: east(),
            from: HealthState::Recovering,
            to: HealthState::Healthy
        }
    );
    assert_eq!(gate(&health, 0), Ok(()));
}

#[test]
fn degraded_region_is_still_serving_and_recovers_at_once() {
    let mut health = RegionHealthTable::new(1_000);
    let region = east();
    health.apply(
        &HealthCommand::Register {
            region: region.clone(),
        },
        &ctx(1, 0),
    );
    health.apply(
        &HealthCommand::ObserveUnhealthy {
            region: region.clone(),
        },
        &ctx(2, 10),
    );
    assert_eq!(health.get(&region).unwrap().state, HealthState::Degraded);
    assert!(HealthState::Degraded.is_serving());
    health.apply(
        &HealthCommand::ObserveHealthy {
            region: region.clone(),
        },
        &ctx(3, 20),
    );
    assert_eq!(health.get(&region).unwrap().state, HealthState::Healthy);
    assert_eq!(
        health.get(&region).unwrap().healthy_since,
        Some(WallMillis(20))
    );
}

#[test]
fn observations_of_unregistered_regions_are_refused_and_registration_is_idempotent() {
    let mut health = RegionHealthTable::default();
    let before = health.clone();
    assert_eq!(
        health.apply(&HealthCommand::MarkDown { region: east() }, &ctx(1, 0)),
        HealthOutcome::Refused(arbiter_core::region_health::HealthRefusal::UnknownRegion {
            region: east()
        })
    );
    assert_eq!(health, before);
    assert_eq!(
        health.apply(&HealthCommand::Register { region: east() }, &ctx(2, 5)),
        HealthOutcome::Registered { region: east() }
    );
    assert_eq!(
        health.apply(&HealthCommand::Register { region: east() }, &ctx(3, 9)),
        HealthOutcome::Unchanged {
            region: east(),
            state: HealthState::Healthy
        }
    );
    assert_eq!(
        health.get(&east()).unwrap().healthy_since,
        Some(WallMillis(5))
    );
}

#[test]
fn the_cooldown_can_be_changed_and_the_table_lists_its_regions() {
    let mut health = RegionHealthTable::new(DEFAULT_COOLDOWN_MS);
    assert_eq!(health.cooldown_ms(), DEFAULT_COOLDOWN_MS);
    for (index, command) in [
        HealthCommand::Register { region: east() },
        HealthCommand::Register { region: west() },
        HealthCommand::MarkDown { region: east() },
        HealthCommand::ObserveHealthy { region: east() },
    ]
    .iter()
    .enumerate()
    {
        health.apply(command, &ctx(index as u64 + 1, index as u64 * 1_000));
    }
    let listed: Vec<(&RegionId, HealthState)> =
        health.iter().map(|(region, h)| (region, h.state)).collect();
    assert_eq!(
        listed,
        [
            (&east(), HealthState::Recovering),
            (&west(), HealthState::Healthy)
        ]
    );
    assert_eq!(
        health.cooldown_remaining(&east(), 1_000),
        Some(DEFAULT_COOLDOWN_MS - 1_000)
    );
    health.set_cooldown(5_000);
    assert_eq!(health.cooldown_ms(), 5_000);
    assert_eq!(health.cooldown_remaining(&east(), 1_000), Some(4_000));
}
