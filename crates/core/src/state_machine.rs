//! The replicated state machine: every table the arbiter keeps, and the one `apply` that
//! advances them.
//!
//! Invariant: `apply_batch` is a pure function of (state, log index, batch). It reads no clock
//! and no randomness, so every node that applies the same log holds the same state, and a
//! snapshot taken anywhere restores it exactly.

use serde::{Deserialize, Serialize};

use crate::command::{Batch, Command, Outcome};
use crate::failover_log::FailoverLog;
use crate::failover_log::{FailoverCommand, FailoverOutcome};
use crate::lease_table::{LeaseCommand, LeaseOutcome, LeaseTable};
use crate::placement::LeaderPlacement;
use crate::region_health::HealthCommand;
use crate::region_health::RegionHealthTable;
use crate::replication::DataLossEstimate;
use crate::replication::ReplicationState;
use crate::routing::RoutingTable;
use crate::traffic::TrafficState;
use crate::types::RegionId;
use crate::types::{ApplyCtx, FencingToken};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateMachine {
    pub leases: LeaseTable,
    pub routing: RoutingTable,
    pub regions: RegionHealthTable,
    pub replication: ReplicationState,
    pub failovers: FailoverLog,
    pub traffic: TrafficState,
    pub placement: LeaderPlacement,
}

impl StateMachine {
    /// Applies the batch stored in the log entry at `log_index`, returning one outcome per
    /// command, in order. A batch with more commands than a token can number is refused
    /// whole, the same way on every node: each command gets [`Outcome::BatchTooLarge`].
    pub fn apply_batch(&mut self, log_index: u64, batch: &Batch) -> Vec<Outcome> {
        let commands = batch.commands.len() as u64;
        if commands > FencingToken::MAX_COMMANDS_PER_ENTRY {
            let refusal = Outcome::BatchTooLarge {
                commands,
                max: FencingToken::MAX_COMMANDS_PER_ENTRY,
            };
            return vec![refusal; batch.commands.len()];
        }
        batch
            .commands
            .iter()
            .enumerate()
            .map(|(position, command)| {
                // Checked above: position < MAX_COMMANDS_PER_ENTRY, so the cast cannot truncate.
                #[cfg(feature = "mutant-token-not-log-position")]
                let log_index = 0;
                let ctx = ApplyCtx {
                    token: FencingToken::from_log_position(log_index, position as u32),
                    now: batch.proposed_at,
                };
                self.apply(command, &ctx)
            })
            .collect()
    }

    /// Grants the lease and, when it displaced a holder, records the override in the failover
    /// log in the same step.
    fn break_glass_acquire(
        &mut self,
        acquire: &LeaseCommand,
        data_loss: DataLossEstimate,
        ctx: &ApplyCtx,
    ) -> Outcome {
        let displaced_region = match acquire {
            LeaseCommand::Acquire { resource, .. } => self
                .leases
                .get(resource)
                .and_then(|row| row.lease.live())
                .and_then(|lease| lease.region.clone()),
            _ => None,
        };
        let outcome = self.leases.apply(acquire, ctx);
        if let (
            LeaseOutcome::Granted {
                overrode: Some((displaced, token)),
                ..
            },
            LeaseCommand::Acquire {
                resource,
                holder,
                region,
                break_glass: Some(glass),
                ..
            },
        ) = (&outcome, acquire)
        {
            let unknown = || RegionId::new("unknown");
            let record = FailoverCommand::RecordOverride {
                initiated_by: glass.operator.clone(),
                failed_region: displaced_region.unwrap_or_else(unknown),
                destination_region: region.clone().unwrap_or_else(unknown),
                data_loss,
                detail: format!(
                    "break-glass lease override of {resource}: {holder} granted over {displaced} \
                     (token {token}) — {}",
                    glass.reason
                ),
            };
            #[cfg(not(feature = "mutant-break-glass-unlogged"))]
            self.failovers.apply(&record, ctx);
        }
        Outcome::Lease(outcome)
    }

    fn apply(&mut self, command: &Command, ctx: &ApplyCtx) -> Outcome {
        match command {
            Command::Lease(cmd) => Outcome::Lease(self.leases.apply(cmd, ctx)),
            Command::Routing(cmd) => Outcome::Routing(self.routing.apply(cmd, ctx)),
            Command::Health(cmd) => Outcome::Health(self.regions.apply(cmd, ctx)),
            Command::Replication(cmd) => Outcome::Replication(self.replication.apply(cmd, ctx)),
            Command::Failover(cmd) => {
                let outcome = self.failovers.apply(cmd, ctx);
                if let (
                    FailoverOutcome::Initiated { .. },
                    FailoverCommand::Initiate { failed_region, .. },
                ) = (&outcome, cmd)
                {
                    // In the same step as the decision: a failover is never logged without its
                    // region marked down, so hysteresis governs its return from the start.
                    let mark_down = HealthCommand::MarkDown {
                        region: failed_region.clone(),
                    };
                    self.regions.apply(&mark_down, ctx);
                }
                Outcome::Failover(outcome)
            }
            Command::Traffic(cmd) => Outcome::Traffic(self.traffic.apply(cmd, ctx)),
            Command::BreakGlassAcquire { acquire, data_loss } => {
                self.break_glass_acquire(acquire, *data_loss, ctx)
            }
            Command::SetHealthCooldown { cooldown_ms } => {
                self.regions.set_cooldown(*cooldown_ms);
                Outcome::Done
            }
            Command::Placement(cmd) => {
                self.placement.apply(cmd, ctx);
                Outcome::Done
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::failover_log::{EventStatus, FailoverStep, FailoverType};
    use crate::lease_table::BreakGlass;
    use crate::types::{HolderId, ResourceId, WallMillis};

    fn acquire(holder: &str, region: &str, break_glass: bool) -> LeaseCommand {
        LeaseCommand::Acquire {
            resource: ResourceId::new("db/orders"),
            holder: HolderId::new(holder),
            region: Some(RegionId::new(region)),
            ttl_ms: 10_000,
            break_glass: break_glass.then(|| BreakGlass {
                operator: "alice".into(),
                reason: "us-east-1 unreachable".into(),
            }),
        }
    }

    #[test]
    fn a_break_glass_override_is_granted_and_logged_in_one_step() {
        let mut sm = StateMachine::default();
        let loss = DataLossEstimate {
            writes: 4_000,
            bytes: 4_000_000,
        };
        let first = Batch::new(
            WallMillis(1),
            vec![Command::Lease(acquire("east", "us-east-1", false))],
        );
        sm.apply_batch(1, &first);
        let glass = Batch::new(
            WallMillis(2),
            vec![Command::BreakGlassAcquire {
                acquire: acquire("west", "us-west-2", true),
                data_loss: loss,
            }],
        );
        let outcomes = sm.apply_batch(2, &glass);
        assert!(matches!(
            &outcomes[0],
            Outcome::Lease(LeaseOutcome::Granted { overrode: Some((h, _)), .. }) if h.as_str() == "east"
        ));
        let east = RegionId::new("us-east-1");
        let events: Vec<_> = sm.failovers.by_failed_region(&east).collect();
        assert_eq!(events.len(), 1);
        let event = events[0];
        assert_eq!(event.failover_type, FailoverType::ManualOverride);
        assert_eq!(event.event_status, EventStatus::Completed);
        assert_eq!(event.initiated_by, "alice");
        assert_eq!(event.destination_region, RegionId::new("us-west-2"));
        assert_eq!(event.uncommitted_data_loss_estimate_writes, 4_000);
        assert_eq!(event.uncommitted_data_loss_estimate_bytes, 4_000_000);
        let steps: Vec<_> = event.timeline_logs.iter().map(|t| t.step).collect();
        assert_eq!(steps, [FailoverStep::Decide, FailoverStep::Completed]);
    }

    /// The token a command mints, from its outcome.
    fn minted(outcome: &Outcome) -> FencingToken {
        match outcome {
            Outcome::Lease(LeaseOutcome::Granted { token, .. }) => *token,
            Outcome::Lease(LeaseOutcome::Revoked(revoked)) => revoked.epoch,
            other => panic!("expected a grant or a revoke, got {other:?}"),
        }
    }

    #[test]
    fn tokens_are_the_log_positions_of_the_commands_that_minted_them() {
        let mut sm = StateMachine::default();
        let on = |resource: &str, holder: &str| {
            Command::Lease(LeaseCommand::Acquire {
                resource: ResourceId::new(resource),
                holder: HolderId::new(holder),
                region: None,
                ttl_ms: 10_000,
                break_glass: None,
            })
        };
        let revoke = Command::Lease(LeaseCommand::Revoke {
            resource: ResourceId::new("db/a"),
            by: "operator".into(),
            reason: "drill".into(),
        });
        // Entries far apart in the log, several commands in one, a grant and a revoke: each
        // token names exactly the entry and position that minted it, so no two are equal and
        // later ones are larger, across resources as within one.
        let entries = [
            (5, vec![on("db/a", "h1"), on("db/b", "h2")]),
            (6, vec![revoke]),
            (
                40,
                vec![on("db/c", "h3"), on("db/d", "h4"), on("db/e", "h5")],
            ),
        ];
        let mut tokens = Vec::new();
        for (index, commands) in entries {
            let outcomes = sm.apply_batch(index, &Batch::new(WallMillis(index), commands));
            for (position, outcome) in outcomes.iter().enumerate() {
                let token = minted(outcome);
                assert_eq!(
                    token,
                    FencingToken::from_log_position(index, position as u32),
                    "entry {index}, command {position}"
                );
                assert_eq!(token.log_index(), index);
                tokens.push(token);
            }
        }
        assert!(tokens.windows(2).all(|w| w[0] < w[1]), "{tokens:?}");
    }

    #[test]
    fn a_batch_larger_than_tokens_can_number_is_refused_whole_and_alike_everywhere() {
        let max = FencingToken::MAX_COMMANDS_PER_ENTRY as usize;
        let acquires = |n: usize| -> Vec<Command> {
            (0..n)
                .map(|i| {
                    Command::Lease(LeaseCommand::Acquire {
                        resource: ResourceId::new(format!("db/{i}")),
                        holder: HolderId::new("east"),
                        region: None,
                        ttl_ms: 10_000,
                        break_glass: None,
                    })
                })
                .collect()
        };
        let oversized = Batch::new(WallMillis(1), acquires(max + 1));
        let (mut one, mut other) = (StateMachine::default(), StateMachine::default());
        let outcomes = one.apply_batch(7, &oversized);
        assert_eq!(outcomes, other.apply_batch(7, &oversized), "deterministic");
        assert_eq!(outcomes.len(), max + 1, "one outcome per command");
        assert!(outcomes.iter().all(|o| *o
            == Outcome::BatchTooLarge {
                commands: max as u64 + 1,
                max: max as u64
            }));
        assert_eq!(one, StateMachine::default(), "no command of it took effect");

        // The largest batch tokens can number still applies, with distinct tokens.
        let outcomes = one.apply_batch(8, &Batch::new(WallMillis(2), acquires(max)));
        let tokens: std::collections::BTreeSet<_> = outcomes
            .iter()
            .map(|o| match o {
                Outcome::Lease(LeaseOutcome::Granted { token, .. }) => *token,
                other => panic!("not granted: {other:?}"),
            })
            .collect();
        assert_eq!(tokens.len(), max);
    }

    #[test]
    fn a_break_glass_acquire_that_displaces_nobody_logs_nothing() {
        let mut sm = StateMachine::default();
        let glass = Batch::new(
            WallMillis(1),
            vec![Command::BreakGlassAcquire {
                acquire: acquire("west", "us-west-2", true),
                data_loss: DataLossEstimate::default(),
            }],
        );
        sm.apply_batch(1, &glass);
        assert_eq!(sm.failovers, FailoverLog::default());
        assert!(sm.leases.get(&ResourceId::new("db/orders")).is_some());
    }

    #[test]
    fn logging_a_failover_marks_its_region_down_in_the_same_entry() {
        use crate::failover_log::FailoverType;
        use crate::region_health::HealthState;
        let mut sm = StateMachine::default();
        let east = RegionId::new("us-east-1");
        let register = Command::Health(HealthCommand::Register {
            region: east.clone(),
        });
        let initiate = |destination: &str| {
            Command::Failover(FailoverCommand::Initiate {
                initiated_by: "alice".into(),
                failed_region: east.clone(),
                destination_region: RegionId::new(destination),
                failover_type: FailoverType::ManualOverride,
                data_loss: DataLossEstimate::default(),
                detail: "drill".into(),
            })
        };
        // A refused decision (same region) leaves the region serving.
        sm.apply_batch(
            1,
            &Batch::new(WallMillis(1), vec![register, initiate("us-east-1")]),
        );
        assert_eq!(
            sm.regions.get(&east).map(|h| h.state),
            Some(HealthState::Healthy)
        );
        sm.apply_batch(2, &Batch::new(WallMillis(2), vec![initiate("us-west-2")]));
        assert_eq!(
            sm.regions.get(&east).map(|h| h.state),
            Some(HealthState::Down)
        );
    }
}
