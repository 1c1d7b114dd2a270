//! Commands carried in the Raft log and their outcomes.
//!
//! Invariant: one log entry carries one [`Batch`] of client commands (group commit: many
//! commands, one append, one fsync). Each command's position in the batch is part of the
//! fencing token it may mint, so tokens stay unique and follow log order.

use serde::{Deserialize, Serialize};

use crate::failover_log::{FailoverCommand, FailoverOutcome};
use crate::lease_table::{LeaseCommand, LeaseOutcome};
use crate::placement::PlacementCommand;
use crate::region_health::{HealthCommand, HealthOutcome};
use crate::replication::{DataLossEstimate, ReplicationCommand, ReplicationOutcome};
use crate::routing::{RoutingCommand, RoutingOutcome};
use crate::traffic::{TrafficCommand, TrafficOutcome};
use crate::types::WallMillis;

/// The application payload of one log entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch {
    /// The proposing leader's wall clock: audit timestamps only, never a safety input.
    pub proposed_at: WallMillis,
    pub commands: Vec<Command>,
}

impl Batch {
    pub fn new(proposed_at: WallMillis, commands: Vec<Command>) -> Self {
        Batch {
            proposed_at,
            commands,
        }
    }
}

/// One client command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    Lease(LeaseCommand),
    Routing(RoutingCommand),
    Health(HealthCommand),
    Replication(ReplicationCommand),
    Failover(FailoverCommand),
    Traffic(TrafficCommand),
    /// A break-glass lease acquire (`LeaseCommand::Acquire` with `break_glass`) together with
    /// the leader's estimate of what the displaced holder may still write: applied as one, so
    /// an override is never granted without its failover-log record.
    BreakGlassAcquire {
        acquire: LeaseCommand,
        data_loss: DataLossEstimate,
    },
    /// Sets the replicated hysteresis cooldown (from the DR config of the leader that starts
    /// the cluster), so every node applies the same one.
    SetHealthCooldown {
        cooldown_ms: u64,
    },
    /// A planned leadership move (see [`crate::placement`]).
    Placement(PlacementCommand),
}

/// What applying one [`Command`] decided. Refusals are outcomes, not errors.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    Lease(LeaseOutcome),
    Routing(RoutingOutcome),
    Health(HealthOutcome),
    Replication(ReplicationOutcome),
    Failover(FailoverOutcome),
    Traffic(TrafficOutcome),
    Done,
    /// The whole log entry was refused: it held more commands than a fencing token can tell
    /// apart (`FencingToken::MAX_COMMANDS_PER_ENTRY`). No command of it took effect.
    BatchTooLarge {
        commands: u64,
        max: u64,
    },
}
