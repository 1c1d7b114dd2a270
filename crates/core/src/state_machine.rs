//! The replicated state machine: every table the arbiter keeps, and the one `apply` that
//! advances them.
//!
//! Invariant: `apply_batch` is a pure function of (state, log index, batch). It reads no clock
//! and no randomness, so every node that applies the same log holds the same state, and a
//! snapshot taken anywhere restores it exactly.

use serde::{Deserialize, Serialize};

use crate::command::{Batch, Command, Outcome};
use crate::failover_log::FailoverLog;
use crate::lease_table::LeaseTable;
use crate::region_health::RegionHealthTable;
use crate::replication::ReplicationState;
use crate::routing::RoutingTable;
use crate::traffic::TrafficState;
use crate::types::{ApplyCtx, FencingToken};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateMachine {
    pub leases: LeaseTable,
    pub routing: RoutingTable,
    pub regions: RegionHealthTable,
    pub replication: ReplicationState,
    pub failovers: FailoverLog,
    pub traffic: TrafficState,
}

impl StateMachine {
    /// Applies the batch stored in the log entry at `log_index`, returning one outcome per
    /// command, in order.
    pub fn apply_batch(&mut self, log_index: u64, batch: &Batch) -> Vec<Outcome> {
        batch
            .commands
            .iter()
            .enumerate()
            .map(|(position, command)| {
                // Batches are capped at MAX_COMMANDS_PER_ENTRY by the proposer; the cast
                // cannot truncate.
                let ctx = ApplyCtx {
                    token: FencingToken::from_log_position(log_index, position as u32),
                    now: batch.proposed_at,
                };
                self.apply(command, &ctx)
            })
            .collect()
    }

    fn apply(&mut self, command: &Command, ctx: &ApplyCtx) -> Outcome {
        match command {
            Command::Lease(cmd) => Outcome::Lease(self.leases.apply(cmd, ctx)),
            Command::Routing(cmd) => Outcome::Routing(self.routing.apply(cmd, ctx)),
            Command::Health(cmd) => Outcome::Health(self.regions.apply(cmd, ctx)),
            Command::Replication(cmd) => Outcome::Replication(self.replication.apply(cmd, ctx)),
            Command::Failover(cmd) => Outcome::Failover(self.failovers.apply(cmd, ctx)),
            Command::Traffic(cmd) => Outcome::Traffic(self.traffic.apply(cmd, ctx)),
            Command::SetHealthCooldown { cooldown_ms } => {
                self.regions.set_cooldown(*cooldown_ms);
                Outcome::Done
            }
        }
    }
}
