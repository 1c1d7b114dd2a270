//! Grow-only counter: one monotone count per node, merged by pointwise maximum.
//!
//! Invariant: a node's count only grows and only that node increments it, so the maximum of
//! two replicas' counts for a node is exactly that node's latest count either has seen.

use super::{join_max, Crdt, CrdtError};
use crate::types::NodeId;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct GCounter {
    /// BTreeMap, not HashMap: equal states serialise to equal bytes, which keeps state digests
    /// and debug output comparable across replicas.
    counts: BTreeMap<NodeId, u64>,
}

impl GCounter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `by` to `node`'s count. `node` must be the replica performing the increment; two
    /// replicas incrementing under one node id lose each other's increments on merge.
    pub fn increment(&mut self, node: NodeId, by: u64) -> Result<(), CrdtError> {
        // Adding zero must not create an entry: a replica that saw a no-op and one that did
        // not should still compare equal.
        if by == 0 {
            return Ok(());
        }
        let current = self.count_of(node);
        let Some(next) = current.checked_add(by) else {
            return Err(CrdtError::CounterOverflow { node, current, by });
        };
        self.counts.insert(node, next);
        Ok(())
    }

    /// The sum over all nodes. `u128` so that the sum of any number of `u64` counts fits.
    pub fn value(&self) -> u128 {
        self.counts.values().map(|&c| u128::from(c)).sum()
    }

    /// How much `node` has contributed.
    pub fn count_of(&self, node: NodeId) -> u64 {
        self.counts.get(&node).copied().unwrap_or(0)
    }
}

impl Crdt for GCounter {
    fn merge(&mut self, other: &Self) {
        join_max(&mut self.counts, &other.counts);
    }
}
