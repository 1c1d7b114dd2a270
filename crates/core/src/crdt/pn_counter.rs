//! Positive-negative counter: two grow-only counters, one for increments, one for decrements.
//!
//! Invariant: the value is `increments − decrements`, and both halves only grow, so merging
//! each half by maximum never loses or double-counts an update.

use super::{Crdt, CrdtError, GCounter};
use crate::types::NodeId;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PnCounter {
    increments: GCounter,
    decrements: GCounter,
}

impl PnCounter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `by` on behalf of `node` (the replica doing it).
    pub fn increment(&mut self, node: NodeId, by: u64) -> Result<(), CrdtError> {
        self.increments.increment(node, by)
    }

    /// Subtracts `by` on behalf of `node` (the replica doing it).
    pub fn decrement(&mut self, node: NodeId, by: u64) -> Result<(), CrdtError> {
        self.decrements.increment(node, by)
    }

    /// Increments minus decrements, over all nodes.
    pub fn value(&self) -> i128 {
        // Each sum is below 2^64 × (number of nodes), so both casts are exact for any number of
        // nodes below 2^63 and the subtraction cannot overflow.
        self.increments.value() as i128 - self.decrements.value() as i128
    }
}

impl Crdt for PnCounter {
    fn merge(&mut self, other: &Self) {
        self.increments.merge(&other.increments);
        self.decrements.merge(&other.decrements);
    }
}
