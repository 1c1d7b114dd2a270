//! Commands carried in the Raft log and their outcomes.
//!
//! Invariant: one log entry carries one [`Batch`] of client commands (group commit: many
//! commands, one append, one fsync). Each command's position in the batch is part of the
//! fencing token it may mint, so tokens stay unique and follow log order.

use serde::{Deserialize, Serialize};

use crate::lease_table::{LeaseCommand, LeaseOutcome};
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
}

/// What applying one [`Command`] decided. Refusals are outcomes, not errors.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    Lease(LeaseOutcome),
}
