//! Replication state: the seed's `ReportCheckpoint` semantics (idempotent retries, no going
//! backwards, no rewriting a checksum), `GetSyncMetrics`, the RPO monitor and the data-loss
//! estimate of the seed's capacity model.

mod dr_common;

use arbiter_core::replication::{
    DataLossEstimate, EpochId, ReplicationCommand, ReplicationMode, ReplicationOutcome,
    ReplicationRefusal, ReplicationState, RpoViolation, SyncMetrics, WriteRate,
    CHECKPOINTS_RETAINED_PER_REGION,
};
use arbiter_core::{RegionId, WallMillis};
use dr_common::{ctx, east, eu, west};

/// Applies commands as consecutive log entries, one second apart.
struct Log {
    state: ReplicationState,
    index: u64,
}

impl Log {
    fn new() -> Self {
        Log {
            state: ReplicationState::default(),
            index: 0,
        }
    }

    fn apply(&mut self, cmd: ReplicationCommand) -> ReplicationOutcome {
        self.index += 1;
        self.state.apply(&cmd, &ctx(self.index, self.index * 1_000))
    }

    fn checkpoint(&mut self, region: RegionId, epoch: u64, checksum: &str) -> ReplicationOutcome {
        self.apply(ReplicationCommand::ReportCheckpoint {
            region,
            epoch: EpochId(epoch),
            committed_transaction_count: 100,
            checksum: checksum.into(),
        })
    }

    fn link(&mut self, source: RegionId, target: RegionId, mode: ReplicationMode, lag_ms: u64) {
        assert_eq!(
            self.apply(ReplicationCommand::UpsertLink {
                source: source.clone(),
                target: target.clone(),
                mode,
            }),
            ReplicationOutcome::LinkUpdated
        );
        assert_eq!(
            self.apply(ReplicationCommand::LinkHeartbeat {
                source,
                target,
                last_sent_epoch_id: EpochId(5),
                last_received_epoch_id: EpochId(3),
                replication_lag_ms: lag_ms,
                is_link_active: true,
            }),
            ReplicationOutcome::LinkUpdated
        );
    }
}

#[test]
fn repeated_checkpoint_with_the_same_checksum_is_acknowledged_without_change() {
    let mut log = Log::new();
    assert_eq!(
        log.checkpoint(east(), 7, "abc"),
        ReplicationOutcome::CheckpointRecorded {
            receiver_applied_epoch: EpochId(7)
        }
    );
    log.checkpoint(east(), 8, "def");
    let before = log.state.clone();

    // A retry of epoch 7 arriving late, after 8: still acknowledged, with the newest epoch.
    assert_eq!(
        log.checkpoint(east(), 7, "abc"),
        ReplicationOutcome::CheckpointAlreadyRecorded {
            receiver_applied_epoch: EpochId(8)
        }
    );
    assert_eq!(log.state, before);
    assert_eq!(
        log.state
            .checkpoint(&east(), EpochId(7))
            .unwrap()
            .created_at,
        WallMillis(1_000)
    );
}

#[test]
fn different_checksum_for_a_recorded_epoch_is_refused() {
    let mut log = Log::new();
    log.checkpoint(east(), 7, "abc");
    log.checkpoint(east(), 8, "def");
    let before = log.state.clone();

    let ReplicationOutcome::Refused(refusal) = log.checkpoint(east(), 7, "xyz") else {
        panic!("expected a refusal");
    };
    assert_eq!(
        refusal,
        ReplicationRefusal::ChecksumConflict {
            region: east(),
            epoch: EpochId(7),
            recorded: "abc".into(),
            presented: "xyz".into(),
            last: EpochId(8),
        }
    );
    assert!(!refusal.is_retryable());
    assert_eq!(log.state, before);
}

#[test]
fn epoch_below_the_regions_last_is_refused_with_the_last() {
    let mut log = Log::new();
    log.checkpoint(east(), 7, "abc");
    let before = log.state.clone();

    assert_eq!(
        log.checkpoint(east(), 5, "old"),
        ReplicationOutcome::Refused(ReplicationRefusal::EpochRegressed {
            region: east(),
            presented: EpochId(5),
            last: EpochId(7),
        })
    );
    assert_eq!(log.state, before);
    // Other regions keep their own epochs.
    assert_eq!(
        log.checkpoint(west(), 5, "w5"),
        ReplicationOutcome::CheckpointRecorded {
            receiver_applied_epoch: EpochId(5)
        }
    );
}

#[test]
fn checksums_must_fit_the_seed_column() {
    let mut log = Log::new();
    assert_eq!(
        log.checkpoint(east(), 1, ""),
        ReplicationOutcome::Refused(ReplicationRefusal::InvalidChecksum { length: 0 })
    );
    assert_eq!(
        log.checkpoint(east(), 1, &"f".repeat(65)),
        ReplicationOutcome::Refused(ReplicationRefusal::InvalidChecksum { length: 65 })
    );
    assert!(matches!(
        log.checkpoint(east(), 1, &"f".repeat(64)),
        ReplicationOutcome::CheckpointRecorded { .. }
    ));
}

#[test]
fn oldest_checkpoints_are_dropped_beyond_retention() {
    let mut log = Log::new();
    let total = CHECKPOINTS_RETAINED_PER_REGION as u64 + 2;
    for epoch in 1..=total {
        log.checkpoint(east(), epoch, "c");
    }
    assert!(log.state.checkpoint(&east(), EpochId(2)).is_none());
    assert!(log.state.checkpoint(&east(), EpochId(3)).is_some());
    assert_eq!(
        log.state.latest_checkpoint(&east()).unwrap().epoch_id,
        EpochId(total)
    );
}

#[test]
fn links_are_one_per_pair_and_validated() {
    let mut log = Log::new();
    assert_eq!(
        log.apply(ReplicationCommand::UpsertLink {
            source: east(),
            target: east(),
            mode: ReplicationMode::Sync,
        }),
        ReplicationOutcome::Refused(ReplicationRefusal::SameRegion { region: east() })
    );
    assert_eq!(
        log.apply(ReplicationCommand::LinkHeartbeat {
            source: east(),
            target: west(),
            last_sent_epoch_id: EpochId(1),
            last_received_epoch_id: EpochId(1),
            replication_lag_ms: 0,
            is_link_active: true,
        }),
        ReplicationOutcome::Refused(ReplicationRefusal::LinkNotFound {
            source_region: east(),
            target_region: west(),
        })
    );
    log.link(east(), west(), ReplicationMode::Async, 800);
    log.link(east(), eu(), ReplicationMode::Sync, 0);
    // Upserting again changes the mode and keeps the progress.
    log.apply(ReplicationCommand::UpsertLink {
        source: east(),
        target: west(),
        mode: ReplicationMode::Sync,
    });
    let link = log.state.link(&east(), &west()).unwrap();
    assert_eq!(link.replication_mode, ReplicationMode::Sync);
    assert_eq!(link.replication_lag_ms, 800);
    assert_eq!(link.last_received_epoch_id, EpochId(3));
    assert_eq!(log.state.links_from(&east()).count(), 2);
    assert_eq!(log.state.links_from(&west()).count(), 0);

    assert_eq!(
        log.apply(ReplicationCommand::LinkHeartbeat {
            source: east(),
            target: west(),
            last_sent_epoch_id: EpochId(4),
            last_received_epoch_id: EpochId(6),
            replication_lag_ms: 0,
            is_link_active: true,
        }),
        ReplicationOutcome::Refused(ReplicationRefusal::ReceivedAheadOfSent {
            sent: EpochId(4),
            received: EpochId(6),
        })
    );
}

#[test]
fn sync_metrics_follow_the_documented_formula() {
    let mut log = Log::new();
    // Epochs 1..=5 of us-east-1, 100 transactions each, one second apart (log times 1..5 s).
    for epoch in 1..=5 {
        log.checkpoint(east(), epoch, "c");
    }
    // The link has received up to epoch 3: epochs 4 and 5 are pending.
    log.link(east(), west(), ReplicationMode::Async, 800);

    let metrics = log.state.sync_metrics(&east(), &west(), 1_000).unwrap();
    assert_eq!(
        metrics,
        SyncMetrics {
            replication_lag_ms: 800,
            // 2 epochs × 100 transactions × 1,000 bytes.
            pending_bytes_count: 200_000,
            // 4 × 100 transactions × 1,000 bytes over the 4 s between epochs 1 and 5.
            throughput_bytes_per_sec: 100_000.0,
        }
    );

    assert_eq!(
        log.state.sync_metrics(&east(), &eu(), 1_000),
        Err(ReplicationRefusal::LinkNotFound {
            source_region: east(),
            target_region: eu(),
        })
    );
    assert_eq!(
        log.state
            .sync_metrics(&RegionId::from("mars-1"), &west(), 1_000),
        Err(ReplicationRefusal::LinkNotFound {
            source_region: RegionId::from("mars-1"),
            target_region: west(),
        })
    );
}

/// Issue 11, item 4: a db-agent reports WAL positions (LSNs) as epochs, marked in the signature;
/// pending bytes and throughput are then byte differences of epochs, not transaction counts
/// (which the seed's `CheckpointRequest` cannot carry, so a gRPC report's count is 0).
#[test]
fn sync_metrics_of_wal_position_epochs_are_byte_differences() {
    let mut log = Log::new();
    // WAL positions 1,000,000 .. 1,400,000, one second apart (log times 1..5 s), count 0.
    for step in 0..5u64 {
        let lsn = 1_000_000 + step * 100_000;
        log.apply(ReplicationCommand::ReportCheckpoint {
            region: east(),
            epoch: EpochId(lsn),
            committed_transaction_count: 0,
            checksum: format!("wal:1/{lsn:X}"),
        });
    }
    log.apply(ReplicationCommand::UpsertLink {
        source: east(),
        target: west(),
        mode: ReplicationMode::Async,
    });
    // The standby has replayed up to 1,150,000; the walsender has sent 1,300,000.
    log.apply(ReplicationCommand::LinkHeartbeat {
        source: east(),
        target: west(),
        last_sent_epoch_id: EpochId(1_300_000),
        last_received_epoch_id: EpochId(1_150_000),
        replication_lag_ms: 2_500,
        is_link_active: true,
    });
    let metrics = log.state.sync_metrics(&east(), &west(), 1_000).unwrap();
    assert_eq!(
        metrics,
        SyncMetrics {
            replication_lag_ms: 2_500,
            // The primary is at 1,400,000: 250,000 bytes of WAL not yet replayed.
            pending_bytes_count: 250_000,
            // 400,000 bytes of WAL over the 4 s between the first and last checkpoint.
            throughput_bytes_per_sec: 100_000.0,
        }
    );

    // Caught up: nothing pending.
    log.apply(ReplicationCommand::LinkHeartbeat {
        source: east(),
        target: west(),
        last_sent_epoch_id: EpochId(1_400_000),
        last_received_epoch_id: EpochId(1_400_000),
        replication_lag_ms: 0,
        is_link_active: true,
    });
    let metrics = log.state.sync_metrics(&east(), &west(), 1_000).unwrap();
    assert_eq!(metrics.pending_bytes_count, 0);
}

#[test]
fn sync_metrics_without_checkpoints_report_no_throughput() {
    let mut log = Log::new();
    log.link(east(), west(), ReplicationMode::Async, 10);
    let metrics = log.state.sync_metrics(&east(), &west(), 1_000).unwrap();
    assert_eq!(metrics.pending_bytes_count, 0);
    assert_eq!(metrics.throughput_bytes_per_sec, 0.0);
}

#[test]
fn rpo_monitor_flags_active_links_beyond_their_mode_target() {
    let mut log = Log::new();
    log.link(east(), west(), ReplicationMode::Sync, 1);
    log.link(east(), eu(), ReplicationMode::Async, 4_000);
    log.link(west(), east(), ReplicationMode::Async, 6_000);
    log.link(west(), eu(), ReplicationMode::Async, 9_000);
    // An inactive link's lag is stale; the seed's partial index leaves it out.
    log.apply(ReplicationCommand::LinkHeartbeat {
        source: west(),
        target: eu(),
        last_sent_epoch_id: EpochId(5),
        last_received_epoch_id: EpochId(3),
        replication_lag_ms: 9_000,
        is_link_active: false,
    });

    assert_eq!(
        log.state.rpo_violations(),
        vec![
            RpoViolation {
                source_region: east(),
                target_region: west(),
                replication_mode: ReplicationMode::Sync,
                lag_ms: 1,
                target_ms: 0,
            },
            RpoViolation {
                source_region: west(),
                target_region: east(),
                replication_mode: ReplicationMode::Async,
                lag_ms: 6_000,
                target_ms: 5_000,
            },
        ]
    );
}

/// The target is the most lag a mode tolerates, as the promotion and failback gates read it: a
/// SYNC link at lag 0 keeps its RPO of 0, and an ASYNC link exactly 5 s behind keeps its 5 s.
#[test]
fn a_lag_exactly_at_the_rpo_target_is_not_a_violation() {
    let mut log = Log::new();
    log.link(east(), west(), ReplicationMode::Async, 5_000);
    log.link(east(), eu(), ReplicationMode::Sync, 0);
    assert!(
        log.state.rpo_violations().is_empty(),
        "{:?}",
        log.state.rpo_violations()
    );

    // One millisecond more is.
    log.link(east(), west(), ReplicationMode::Async, 5_001);
    assert_eq!(
        log.state.rpo_violations(),
        [RpoViolation {
            source_region: east(),
            target_region: west(),
            replication_mode: ReplicationMode::Async,
            lag_ms: 5_001,
            target_ms: 5_000,
        }]
    );
}

#[test]
fn only_a_missing_link_is_worth_retrying_unchanged() {
    let mut log = Log::new();
    let heartbeat = |sent: u64, received: u64| ReplicationCommand::LinkHeartbeat {
        source: east(),
        target: west(),
        last_sent_epoch_id: EpochId(sent),
        last_received_epoch_id: EpochId(received),
        replication_lag_ms: 0,
        is_link_active: true,
    };
    let ReplicationOutcome::Refused(missing) = log.apply(heartbeat(1, 1)) else {
        panic!("a heartbeat of a link not yet created was accepted");
    };
    assert!(
        matches!(missing, ReplicationRefusal::LinkNotFound { .. }),
        "{missing:?}"
    );
    assert!(missing.is_retryable(), "the link may yet be created");

    // Created, the same heartbeat is accepted; these refusals stay refused however often sent.
    log.link(east(), west(), ReplicationMode::Async, 0);
    assert_eq!(log.apply(heartbeat(1, 1)), ReplicationOutcome::LinkUpdated);
    log.checkpoint(east(), 7, "abc");
    for cmd in [
        ReplicationCommand::UpsertLink {
            source: east(),
            target: east(),
            mode: ReplicationMode::Sync,
        },
        heartbeat(1, 2),
        ReplicationCommand::ReportCheckpoint {
            region: east(),
            epoch: EpochId(8),
            committed_transaction_count: 1,
            checksum: String::new(),
        },
        ReplicationCommand::ReportCheckpoint {
            region: east(),
            epoch: EpochId(6),
            committed_transaction_count: 1,
            checksum: "old".into(),
        },
    ] {
        let ReplicationOutcome::Refused(refusal) = log.apply(cmd.clone()) else {
            panic!("{cmd:?} was accepted");
        };
        assert!(!refusal.is_retryable(), "{refusal:?}");
    }
}

/// Two checkpoints can carry the same log time (entries proposed in the same millisecond): no
/// time has passed between them, so there is no rate to report, not an infinite one.
#[test]
fn checkpoints_reported_at_one_instant_give_no_throughput() {
    let mut state = ReplicationState::default();
    for (index, epoch) in [(1, 1), (2, 2)] {
        state.apply(
            &ReplicationCommand::ReportCheckpoint {
                region: east(),
                epoch: EpochId(epoch),
                committed_transaction_count: 100,
                checksum: "c".into(),
            },
            &ctx(index, 5_000),
        );
    }
    state.apply(
        &ReplicationCommand::UpsertLink {
            source: east(),
            target: west(),
            mode: ReplicationMode::Async,
        },
        &ctx(3, 5_000),
    );
    assert_eq!(
        state.sync_metrics(&east(), &west(), 1_000),
        Ok(SyncMetrics {
            replication_lag_ms: 0,
            // Nothing received yet: both epochs' 100 transactions × 1,000 bytes are pending.
            pending_bytes_count: 200_000,
            throughput_bytes_per_sec: 0.0,
        })
    );
}

/// The same for a db-agent's WAL positions, and for a single one, which spans no time either.
#[test]
fn wal_positions_reported_at_one_instant_give_no_throughput() {
    let mut state = ReplicationState::default();
    state.apply(
        &ReplicationCommand::UpsertLink {
            source: east(),
            target: west(),
            mode: ReplicationMode::Async,
        },
        &ctx(1, 5_000),
    );
    for (index, lsn) in [(2, 1_000_000u64), (3, 1_100_000)] {
        state.apply(
            &ReplicationCommand::ReportCheckpoint {
                region: east(),
                epoch: EpochId(lsn),
                committed_transaction_count: 0,
                checksum: format!("wal:1/{lsn:X}"),
            },
            &ctx(index, 5_000),
        );
        let metrics = state.sync_metrics(&east(), &west(), 1_000).unwrap();
        assert_eq!(metrics.pending_bytes_count, lsn, "nothing replayed yet");
        assert_eq!(
            metrics.throughput_bytes_per_sec, 0.0,
            "WAL up to {lsn} written in no time"
        );
    }
}

#[test]
fn data_loss_estimate_matches_the_seed_capacity_model() {
    // 5,000 writes/s × 0.8 s = 4,000 writes in flight, of 1 KB each.
    assert_eq!(
        DataLossEstimate::from_lag(800, WriteRate::SEED_PEAK),
        DataLossEstimate {
            writes: 4_000,
            bytes: 4_000_000,
        }
    );
    // Rounded up: 1 ms at 300 writes/s is 0.3 writes, counted as one.
    assert_eq!(
        DataLossEstimate::from_lag(
            1,
            WriteRate {
                writes_per_sec: 300,
                avg_write_bytes: 10,
            }
        ),
        DataLossEstimate {
            writes: 1,
            bytes: 10,
        }
    );

    let mut log = Log::new();
    log.link(east(), west(), ReplicationMode::Async, 800);
    assert_eq!(
        log.state
            .data_loss_estimate(&east(), &west(), WriteRate::SEED_PEAK),
        Ok(DataLossEstimate {
            writes: 4_000,
            bytes: 4_000_000,
        })
    );
    assert!(log
        .state
        .data_loss_estimate(&west(), &east(), WriteRate::SEED_PEAK)
        .is_err());
}
