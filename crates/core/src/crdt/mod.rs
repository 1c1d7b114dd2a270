//! State-based CRDTs for active-active data: each replica applies its own region's operations
//! locally and periodically merges the full state of the others.
//!
//! Invariant: every `merge` is a join — commutative, associative and idempotent — so replicas
//! that have received the same operations, in any order and any number of times, hold equal
//! states. Operations never need a coordinator; ordering for LWW types comes from the
//! [`HlcTimestamp`](crate::hlc::HlcTimestamp) the caller passes in.
//!
//! - [`LwwRegister`]: one value, the write with the greatest HLC timestamp wins.
//! - [`GCounter`] / [`PnCounter`]: per-node counts, merged by maximum.
//! - [`OrSet`]: add-wins observed-remove set built on dots.
//! - [`LwwMap`]: per-key LWW registers; removal writes a tombstone so it can beat an older insert.

mod g_counter;
mod lww_map;
mod lww_register;
mod or_set;
mod pn_counter;

pub use g_counter::GCounter;
pub use lww_map::LwwMap;
pub use lww_register::LwwRegister;
pub use or_set::{Dot, OrSet};
pub use pn_counter::PnCounter;

use crate::types::NodeId;
use std::collections::BTreeMap;
use thiserror::Error;

/// A state-based (convergent) replicated data type.
pub trait Crdt {
    /// Folds `other`'s state into `self`: afterwards `self` reflects every operation either
    /// side had seen. Must be commutative, associative and idempotent.
    fn merge(&mut self, other: &Self);
}

/// An operation a CRDT refused; the state is unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum CrdtError {
    /// A per-node count would exceed `u64::MAX`. Saturating instead would make later
    /// increments vanish silently, so the caller is told.
    #[error("counter of node {node} is {current}; adding {by} would overflow u64")]
    CounterOverflow { node: NodeId, current: u64, by: u64 },
}

/// Pointwise maximum of two per-node maps: the join of counters and of version vectors alike.
fn join_max(into: &mut BTreeMap<NodeId, u64>, from: &BTreeMap<NodeId, u64>) {
    for (&node, &count) in from {
        let mine = into.entry(node).or_insert(0);
        *mine = (*mine).max(count);
    }
}
