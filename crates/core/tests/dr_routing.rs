//! Tenant routing: region shift and restore, compare-and-set on the log-derived version, locks,
//! the (active region, status) index, and validated traffic weights.

mod dr_common;

use arbiter_core::routing::{
    CasExpectation, RoutingCommand, RoutingOutcome, RoutingRefusal, RoutingStatus, RoutingTable,
    TenantRoute, TrafficShift, TrafficShiftError, TrafficWeights,
};
use arbiter_core::{FencingToken, RegionId, TenantId, WallMillis};
use dr_common::{ctx, east, eu, west};
use proptest::prelude::*;
use std::collections::BTreeMap;

/// Applies commands as consecutive log entries.
struct Log {
    table: RoutingTable,
    index: u64,
}

impl Log {
    fn new() -> Self {
        Log {
            table: RoutingTable::default(),
            index: 0,
        }
    }

    fn apply(&mut self, cmd: RoutingCommand) -> RoutingOutcome {
        self.index += 1;
        self.table.apply(&cmd, &ctx(self.index, self.index * 10))
    }

    fn tenant(&mut self, tenant: &str, primary: RegionId, failover: RegionId) -> TenantRoute {
        let outcome = self.apply(RoutingCommand::UpsertTenant {
            tenant: TenantId::from(tenant),
            primary_region: primary,
            failover_region: failover,
        });
        let RoutingOutcome::Updated(route) = outcome else {
            panic!("upsert refused: {outcome:?}");
        };
        route
    }

    fn route(&self, tenant: &str) -> &TenantRoute {
        self.table.get(&TenantId::from(tenant)).unwrap()
    }

    fn tenants_on(&self, region: &RegionId, status: RoutingStatus) -> Vec<String> {
        self.table
            .by_active(region, status)
            .map(|route| route.tenant_id.to_string())
            .collect()
    }
}

#[test]
fn new_tenant_is_routed_to_its_primary_at_the_version_of_its_log_entry() {
    let mut log = Log::new();
    let route = log.tenant("acme", east(), west());
    assert_eq!(route.active_routing_region, east());
    assert_eq!(route.routing_status, RoutingStatus::Default);
    assert_eq!(route.version, FencingToken::from_log_position(1, 0).0);
    assert_eq!(route.updated_at, WallMillis(10));

    assert_eq!(
        log.apply(RoutingCommand::UpsertTenant {
            tenant: TenantId::from("bad"),
            primary_region: east(),
            failover_region: east(),
        }),
        RoutingOutcome::Refused(RoutingRefusal::SameRegion { region: east() })
    );
    assert!(log.table.get(&TenantId::from("bad")).is_none());
}

#[test]
fn shift_moves_every_unlocked_tenant_off_the_region_and_restore_brings_them_back() {
    let mut log = Log::new();
    log.tenant("a", east(), west());
    log.tenant("b", east(), west());
    log.tenant("pinned", east(), west());
    log.tenant("westerner", west(), east());
    log.apply(RoutingCommand::Lock {
        tenant: TenantId::from("pinned"),
    });

    assert_eq!(
        log.apply(RoutingCommand::ShiftRegion {
            from: east(),
            to: west(),
        }),
        RoutingOutcome::Shifted { count: 2 }
    );
    assert_eq!(log.tenants_on(&west(), RoutingStatus::Shifted), ["a", "b"]);
    assert_eq!(
        log.tenants_on(&west(), RoutingStatus::Default),
        ["westerner"]
    );
    assert_eq!(log.tenants_on(&east(), RoutingStatus::Locked), ["pinned"]);
    assert!(log.tenants_on(&east(), RoutingStatus::Default).is_empty());

    // Shifting the emptied region again changes nothing: a new leader may repeat the step.
    let before = log.table.clone();
    assert_eq!(
        log.apply(RoutingCommand::ShiftRegion {
            from: east(),
            to: west(),
        }),
        RoutingOutcome::Shifted { count: 0 }
    );
    assert_eq!(log.table, before);

    assert_eq!(
        log.apply(RoutingCommand::RestoreRegion { region: east() }),
        RoutingOutcome::Restored { count: 2 }
    );
    assert_eq!(log.tenants_on(&east(), RoutingStatus::Default), ["a", "b"]);
    assert_eq!(log.route("westerner").active_routing_region, west());
    assert_eq!(log.route("pinned").routing_status, RoutingStatus::Locked);
}

#[test]
fn shifting_a_tenant_onto_its_primary_makes_it_default() {
    let mut log = Log::new();
    log.tenant("westerner", west(), east());
    log.apply(RoutingCommand::ShiftRegion {
        from: west(),
        to: east(),
    });
    assert_eq!(
        log.route("westerner").routing_status,
        RoutingStatus::Shifted
    );
    // us-east-1 fails in turn: the tenant goes home, which is no longer a shift.
    log.apply(RoutingCommand::ShiftRegion {
        from: east(),
        to: west(),
    });
    assert_eq!(
        log.route("westerner").routing_status,
        RoutingStatus::Default
    );
    assert_eq!(
        log.apply(RoutingCommand::ShiftRegion {
            from: east(),
            to: east(),
        }),
        RoutingOutcome::Refused(RoutingRefusal::SameRegion { region: east() })
    );
}

#[test]
fn compare_and_set_succeeds_only_against_the_current_value() {
    let mut log = Log::new();
    let created = log.tenant("acme", east(), west());

    let RoutingOutcome::Updated(moved) = log.apply(RoutingCommand::CompareAndSet {
        tenant: TenantId::from("acme"),
        expected: CasExpectation::Version(created.version),
        new_active_region: eu(),
    }) else {
        panic!("compare-and-set refused");
    };
    assert_eq!(moved.active_routing_region, eu());
    assert_eq!(moved.routing_status, RoutingStatus::Shifted);
    assert!(moved.version > created.version);

    // A writer still holding the first version loses, and learns the current row.
    let before = log.table.clone();
    assert_eq!(
        log.apply(RoutingCommand::CompareAndSet {
            tenant: TenantId::from("acme"),
            expected: CasExpectation::Version(created.version),
            new_active_region: west(),
        }),
        RoutingOutcome::Refused(RoutingRefusal::CasMismatch {
            current: Box::new(moved.clone()),
        })
    );
    assert_eq!(
        log.apply(RoutingCommand::CompareAndSet {
            tenant: TenantId::from("acme"),
            expected: CasExpectation::ActiveRegion(east()),
            new_active_region: west(),
        }),
        RoutingOutcome::Refused(RoutingRefusal::CasMismatch {
            current: Box::new(moved),
        })
    );
    assert_eq!(log.table, before);

    let RoutingOutcome::Updated(home) = log.apply(RoutingCommand::CompareAndSet {
        tenant: TenantId::from("acme"),
        expected: CasExpectation::ActiveRegion(eu()),
        new_active_region: east(),
    }) else {
        panic!("compare-and-set refused");
    };
    assert_eq!(home.routing_status, RoutingStatus::Default);

    assert_eq!(
        log.apply(RoutingCommand::CompareAndSet {
            tenant: TenantId::from("ghost"),
            expected: CasExpectation::Version(0),
            new_active_region: east(),
        }),
        RoutingOutcome::Refused(RoutingRefusal::UnknownTenant {
            tenant: TenantId::from("ghost"),
        })
    );
}

#[test]
fn locked_tenant_changes_only_by_unlock() {
    let mut log = Log::new();
    let created = log.tenant("acme", east(), west());
    log.apply(RoutingCommand::Lock {
        tenant: TenantId::from("acme"),
    });
    let locked = log.route("acme").clone();

    let refused = RoutingOutcome::Refused(RoutingRefusal::Locked {
        tenant: TenantId::from("acme"),
    });
    assert_eq!(
        log.apply(RoutingCommand::CompareAndSet {
            tenant: TenantId::from("acme"),
            expected: CasExpectation::Version(locked.version),
            new_active_region: west(),
        }),
        refused
    );
    assert_eq!(
        log.apply(RoutingCommand::UpsertTenant {
            tenant: TenantId::from("acme"),
            primary_region: west(),
            failover_region: east(),
        }),
        refused
    );
    assert_eq!(*log.route("acme"), locked);

    let RoutingOutcome::Updated(unlocked) = log.apply(RoutingCommand::Unlock {
        tenant: TenantId::from("acme"),
    }) else {
        panic!("unlock refused");
    };
    assert_eq!(unlocked.routing_status, RoutingStatus::Default);
    assert_eq!(
        unlocked.active_routing_region,
        created.active_routing_region
    );
}

#[test]
fn upsert_moves_a_default_tenant_with_its_primary_but_leaves_a_shifted_one() {
    let mut log = Log::new();
    log.tenant("home", east(), west());
    log.tenant("away", east(), west());
    log.apply(RoutingCommand::CompareAndSet {
        tenant: TenantId::from("away"),
        expected: CasExpectation::ActiveRegion(east()),
        new_active_region: west(),
    });

    let home = log.tenant("home", eu(), west());
    assert_eq!(home.active_routing_region, eu());
    assert_eq!(home.routing_status, RoutingStatus::Default);
    let away = log.tenant("away", eu(), west());
    assert_eq!(away.active_routing_region, west());
    assert_eq!(away.routing_status, RoutingStatus::Shifted);
}

#[test]
fn the_table_holds_one_row_per_tenant() {
    let mut log = Log::new();
    assert!(log.table.is_empty());
    assert_eq!(log.table.len(), 0);

    log.tenant("acme", east(), west());
    log.tenant("globex", east(), west());
    // Changing a tenant's regions rewrites its row; a refused upsert adds none.
    log.tenant("acme", eu(), west());
    log.apply(RoutingCommand::UpsertTenant {
        tenant: TenantId::from("bad"),
        primary_region: east(),
        failover_region: east(),
    });
    assert_eq!(log.table.len(), 2);
    assert!(!log.table.is_empty());
}

#[test]
fn only_a_lock_is_worth_retrying_unchanged() {
    let mut log = Log::new();
    let created = log.tenant("acme", east(), west());
    log.apply(RoutingCommand::Lock {
        tenant: TenantId::from("acme"),
    });
    let RoutingOutcome::Refused(locked) = log.apply(RoutingCommand::SetActive {
        tenant: TenantId::from("acme"),
        region: west(),
    }) else {
        panic!("a locked tenant was moved");
    };
    assert!(
        matches!(locked, RoutingRefusal::Locked { .. }),
        "{locked:?}"
    );
    assert!(locked.is_retryable(), "an operator may lift the lock");

    // Unlocked, these come back the same however often sent: a stale version (the lock and the
    // unlock were writes) must be retried against the current row, and an unknown tenant or a
    // shift onto itself never succeeds.
    log.apply(RoutingCommand::Unlock {
        tenant: TenantId::from("acme"),
    });
    for cmd in [
        RoutingCommand::CompareAndSet {
            tenant: TenantId::from("acme"),
            expected: CasExpectation::Version(created.version),
            new_active_region: west(),
        },
        RoutingCommand::SetActive {
            tenant: TenantId::from("ghost"),
            region: west(),
        },
        RoutingCommand::ShiftRegion {
            from: east(),
            to: east(),
        },
    ] {
        let RoutingOutcome::Refused(refusal) = log.apply(cmd.clone()) else {
            panic!("{cmd:?} was accepted");
        };
        assert!(!refusal.is_retryable(), "{refusal:?}");
    }
}

fn region() -> impl Strategy<Value = RegionId> {
    prop_oneof![Just(east()), Just(west()), Just(eu())]
}

fn command() -> impl Strategy<Value = RoutingCommand> {
    let tenant = prop_oneof![Just("a"), Just("b"), Just("c"), Just("d")].prop_map(TenantId::from);
    prop_oneof![
        (tenant.clone(), region(), region()).prop_map(
            |(tenant, primary_region, failover_region)| {
                RoutingCommand::UpsertTenant {
                    tenant,
                    primary_region,
                    failover_region,
                }
            }
        ),
        (tenant.clone(), region(), region()).prop_map(|(tenant, expected, new_active_region)| {
            RoutingCommand::CompareAndSet {
                tenant,
                expected: CasExpectation::ActiveRegion(expected),
                new_active_region,
            }
        }),
        (region(), region()).prop_map(|(from, to)| RoutingCommand::ShiftRegion { from, to }),
        region().prop_map(|region| RoutingCommand::RestoreRegion { region }),
        tenant
            .clone()
            .prop_map(|tenant| RoutingCommand::Lock { tenant }),
        tenant.prop_map(|tenant| RoutingCommand::Unlock { tenant }),
    ]
}

proptest! {
    /// Whatever the commands, the index agrees with a scan of the rows, unlocked statuses follow
    /// the active region, versions only rise, and a refusal changes nothing.
    #[test]
    fn index_and_status_invariants_hold_for_any_command_sequence(
        commands in prop::collection::vec(command(), 0..60)
    ) {
        let mut log = Log::new();
        for cmd in commands {
            let before = log.table.clone();
            let outcome = log.apply(cmd);
            if let RoutingOutcome::Refused(_) = outcome {
                prop_assert_eq!(&log.table, &before);
            }
            for tenant in ["a", "b", "c", "d"] {
                let (Some(old), Some(new)) = (
                    before.get(&TenantId::from(tenant)),
                    log.table.get(&TenantId::from(tenant)),
                ) else {
                    continue;
                };
                prop_assert!(new.version >= old.version);
            }
            for region in [east(), west(), eu()] {
                for status in [RoutingStatus::Default, RoutingStatus::Shifted, RoutingStatus::Locked] {
                    let indexed: Vec<&TenantRoute> = log.table.by_active(&region, status).collect();
                    let scanned: Vec<&TenantRoute> = ["a", "b", "c", "d"]
                        .into_iter()
                        .filter_map(|tenant| log.table.get(&TenantId::from(tenant)))
                        .filter(|route| route.active_routing_region == region && route.routing_status == status)
                        .collect();
                    prop_assert_eq!(indexed, scanned);
                }
            }
            for tenant in ["a", "b", "c", "d"] {
                if let Some(route) = log.table.get(&TenantId::from(tenant)) {
                    let expected = if route.routing_status == RoutingStatus::Locked {
                        RoutingStatus::Locked
                    } else if route.active_routing_region == route.primary_region {
                        RoutingStatus::Default
                    } else {
                        RoutingStatus::Shifted
                    };
                    prop_assert_eq!(route.routing_status, expected);
                }
            }
        }
    }
}

fn weights(entries: &[(RegionId, u32)]) -> Result<TrafficWeights, TrafficShiftError> {
    TrafficWeights::new(entries.iter().cloned().collect::<BTreeMap<_, _>>())
}

#[test]
fn traffic_weights_must_sum_to_one_hundred_percent() {
    assert_eq!(
        weights(&[(east(), 6_000), (west(), 3_000)]),
        Err(TrafficShiftError::WeightsDoNotSumToFull { sum_bp: 9_000 })
    );
    assert_eq!(weights(&[]), Err(TrafficShiftError::NoRegions));
    let ok = weights(&[(east(), 10_000), (west(), 0)]).unwrap();
    assert_eq!(ok.weight_bp(&east()), Some(10_000));
}

#[test]
fn traffic_shift_moves_a_share_of_the_source_and_refuses_bad_input_unchanged() {
    let mut weights = weights(&[(east(), 6_000), (west(), 3_000), (eu(), 1_000)]).unwrap();
    assert_eq!(
        weights.shift(&east(), &west(), 50.0),
        Ok(TrafficShift {
            moved_bp: 3_000,
            source_bp: 3_000,
            target_bp: 6_000,
        })
    );
    // The seed's failover request: 100% of us-east-1 to us-west-2.
    assert_eq!(
        weights.shift(&east(), &west(), 100.0),
        Ok(TrafficShift {
            moved_bp: 3_000,
            source_bp: 0,
            target_bp: 9_000,
        })
    );
    assert_eq!(
        weights.iter().map(|(_, bp)| u64::from(bp)).sum::<u64>(),
        10_000
    );

    let before = weights.clone();
    for (source, target, percentage, error) in [
        (
            west(),
            east(),
            100.5,
            TrafficShiftError::PercentageOutOfRange { percentage: 100.5 },
        ),
        (
            west(),
            east(),
            -1.0,
            TrafficShiftError::PercentageOutOfRange { percentage: -1.0 },
        ),
        (
            west(),
            west(),
            10.0,
            TrafficShiftError::SameRegion { region: west() },
        ),
        (
            west(),
            RegionId::from("ap-south-1"),
            10.0,
            TrafficShiftError::UnknownRegion {
                region: RegionId::from("ap-south-1"),
            },
        ),
    ] {
        assert_eq!(weights.shift(&source, &target, percentage), Err(error));
    }
    assert!(matches!(
        weights.shift(&west(), &east(), f64::NAN),
        Err(TrafficShiftError::PercentageOutOfRange { .. })
    ));
    assert_eq!(weights, before);
}

#[test]
fn set_active_overrides_unconditionally_unless_locked() {
    let mut log = Log::new();
    log.tenant("acme", east(), west());
    let set = |region: RegionId| RoutingCommand::SetActive {
        tenant: TenantId::from("acme"),
        region,
    };
    let RoutingOutcome::Updated(route) = log.apply(set(eu())) else {
        panic!("set refused");
    };
    assert_eq!(route.active_routing_region, eu());
    assert_eq!(route.routing_status, RoutingStatus::Shifted);
    let RoutingOutcome::Updated(route) = log.apply(set(east())) else {
        panic!("set refused");
    };
    assert_eq!(
        route.routing_status,
        RoutingStatus::Default,
        "back on its primary"
    );
    log.apply(RoutingCommand::Lock {
        tenant: TenantId::from("acme"),
    });
    assert!(matches!(
        log.apply(set(west())),
        RoutingOutcome::Refused(RoutingRefusal::Locked { .. })
    ));
    assert!(matches!(
        log.apply(RoutingCommand::SetActive {
            tenant: TenantId::from("nobody"),
            region: west(),
        }),
        RoutingOutcome::Refused(RoutingRefusal::UnknownTenant { .. })
    ));
}
