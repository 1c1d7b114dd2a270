//! Serde round trips of the DR tables and commands: a snapshot restores exactly the state it was
//! taken from, derived indexes included, and the seed's names and values appear on the wire.

mod dr_common;

use arbiter_core::failover_log::{
    FailoverCommand, FailoverId, FailoverLog, FailoverOutcome, FailoverStep, FailoverType,
};
use arbiter_core::region_health::{HealthCommand, RegionHealthTable};
use arbiter_core::replication::{
    DataLossEstimate, EpochId, ReplicationCommand, ReplicationMode, ReplicationState,
};
use arbiter_core::routing::{RoutingCommand, RoutingStatus, RoutingTable, TrafficWeights};
use arbiter_core::{ApplyCtx, TenantId};
use dr_common::{ctx, east, west};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Debug;

/// The seed's `epochSeconds` era, so timestamps look like real ones on the wire.
fn log_ctx(index: u64) -> ApplyCtx {
    ctx(index, 1_770_289_920_000 + index)
}

/// Round-trips each command, then applies it as the next log entry.
fn apply_all<C>(commands: &[C], mut apply: impl FnMut(&C, &ApplyCtx))
where
    C: Serialize + DeserializeOwned + PartialEq + Debug,
{
    for (index, command) in commands.iter().enumerate() {
        round_trip(command);
        apply(command, &log_ctx(index as u64 + 1));
    }
}

fn round_trip<T: Serialize + DeserializeOwned + PartialEq + Debug>(value: &T) -> String {
    let json = serde_json::to_string(value).unwrap();
    let back: T = serde_json::from_str(&json).unwrap();
    assert_eq!(&back, value);
    json
}

#[test]
fn routing_table_round_trips_and_rebuilds_its_index() {
    let mut table = RoutingTable::default();
    let commands = [
        RoutingCommand::UpsertTenant {
            tenant: TenantId::from("acme"),
            primary_region: east(),
            failover_region: west(),
        },
        RoutingCommand::UpsertTenant {
            tenant: TenantId::from("globex"),
            primary_region: east(),
            failover_region: west(),
        },
        RoutingCommand::Lock {
            tenant: TenantId::from("globex"),
        },
        RoutingCommand::ShiftRegion {
            from: east(),
            to: west(),
        },
    ];
    apply_all(&commands, |command, ctx| {
        table.apply(command, ctx);
    });

    let json = round_trip(&table);
    assert!(json.contains(r#""routing_status":"SHIFTED""#));
    assert!(json.contains(r#""routing_status":"LOCKED""#));
    let restored: RoutingTable = serde_json::from_str(&json).unwrap();
    let shifted: Vec<&TenantId> = restored
        .by_active(&west(), RoutingStatus::Shifted)
        .map(|route| &route.tenant_id)
        .collect();
    assert_eq!(shifted, [&TenantId::from("acme")]);
}

#[test]
fn traffic_weights_round_trip_and_invalid_ones_do_not_load() {
    let weights = TrafficWeights::new(BTreeMap::from([(east(), 7_500), (west(), 2_500)])).unwrap();
    assert_eq!(
        round_trip(&weights),
        r#"{"us-east-1":7500,"us-west-2":2500}"#
    );
    assert!(serde_json::from_str::<TrafficWeights>(r#"{"us-east-1":7500}"#).is_err());
}

#[test]
fn region_health_table_round_trips() {
    let mut table = RegionHealthTable::new(60_000);
    let commands = [
        HealthCommand::Register { region: east() },
        HealthCommand::Register { region: west() },
        HealthCommand::MarkDown { region: east() },
        HealthCommand::ObserveHealthy { region: east() },
        HealthCommand::ObserveUnhealthy { region: west() },
    ];
    apply_all(&commands, |command, ctx| {
        table.apply(command, ctx);
    });
    let json = round_trip(&table);
    assert!(json.contains(r#""state":"RECOVERING""#));
    assert!(json.contains(r#""state":"DEGRADED""#));
}

#[test]
fn replication_state_round_trips() {
    let mut state = ReplicationState::default();
    let commands = [
        ReplicationCommand::UpsertLink {
            source: east(),
            target: west(),
            mode: ReplicationMode::Sync,
        },
        ReplicationCommand::LinkHeartbeat {
            source: east(),
            target: west(),
            last_sent_epoch_id: EpochId(9),
            last_received_epoch_id: EpochId(8),
            replication_lag_ms: 70,
            is_link_active: true,
        },
        ReplicationCommand::ReportCheckpoint {
            region: east(),
            epoch: EpochId(9),
            committed_transaction_count: 5_000,
            checksum: "9f86d081884c7d65".into(),
        },
    ];
    apply_all(&commands, |command, ctx| {
        state.apply(command, ctx);
    });
    let json = round_trip(&state);
    assert!(json.contains(r#""replication_mode":"SYNC""#));
}

#[test]
fn failover_log_round_trips_with_seed_names_and_string_ids() {
    let mut log = FailoverLog::default();
    let FailoverOutcome::Initiated { failover_id } = log.apply(
        &FailoverCommand::Initiate {
            initiated_by: "operator:alice".into(),
            failed_region: east(),
            destination_region: west(),
            failover_type: FailoverType::ManualOverride,
            data_loss: DataLossEstimate {
                writes: 4_000,
                bytes: 4_000_000,
            },
            detail: "drill".into(),
        },
        &log_ctx(7),
    ) else {
        panic!("initiate refused");
    };
    let step = FailoverCommand::RecordStep {
        failover_id,
        step: FailoverStep::Fence,
        detail: "revoked 3 leases".into(),
    };
    round_trip(&step);
    log.apply(&step, &log_ctx(8));

    let json = round_trip(&log);
    assert!(json.contains(&format!(r#""failover_id":"fo-{}""#, 7 << 12)));
    assert!(json.contains(r#""failover_type":"MANUAL_OVERRIDE""#));
    assert!(json.contains(r#""event_status":"INITIATED""#));
    assert!(json.contains(r#""step":"FENCE""#));
    assert!(json.contains(r#""uncommitted_data_loss_estimate_bytes":4000000"#));
    assert!(serde_json::from_str::<FailoverId>(r#""fo-x""#).is_err());
    assert!(serde_json::from_str::<FailoverId>(r#""28672""#).is_err());
}
