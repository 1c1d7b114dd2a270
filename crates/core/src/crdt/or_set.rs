//! Add-wins observed-remove set (an OR-Set without tombstones, "ORSWOT"), built on dots.
//!
//! Every add is tagged with a fresh dot `(node, counter)`; a remove deletes only the dots it
//! has observed. A version vector (`context`) records every dot a replica has seen, so on
//! merge a dot missing on one side is either *unseen* there (keep it: it is a new add) or
//! *seen and removed* there (drop it). Hence a remove never cancels a concurrent add it did not
//! observe: add wins.
//!
//! Invariant: every dot in `entries` is covered by `context`, each dot tags at most one element,
//! and dots of one node are issued in order by that node alone — so `context` is a plain
//! per-node maximum and needs no removal tombstones.

use super::{join_max, Crdt};
use crate::types::NodeId;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// A unique tag for one add: the `counter`-th add performed by `node`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Dot {
    pub node: NodeId,
    pub counter: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrSet<T: Ord> {
    /// Present elements and the dots of the adds that keep them present. Never holds an empty
    /// dot set, so equal sets compare equal.
    entries: BTreeMap<T, BTreeSet<Dot>>,
    /// Per node, the highest dot counter seen. Dots are issued contiguously per node and full
    /// states are merged, so "seen" is exactly `counter <= context[node]`.
    context: BTreeMap<NodeId, u64>,
}

impl<T: Ord> Default for OrSet<T> {
    fn default() -> Self {
        OrSet {
            entries: BTreeMap::new(),
            context: BTreeMap::new(),
        }
    }
}

impl<T: Ord + Clone> OrSet<T> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `elem` on behalf of `node`, which must be the replica doing it (each node id is
    /// owned by one replica, or dots collide). Returns the dot that now tags `elem`.
    pub fn add(&mut self, node: NodeId, elem: T) -> Dot {
        let seen = self.context.entry(node).or_insert(0);
        // One increment per add: exhausting u64 would take 584 years at 10^9 adds per second.
        *seen = seen
            .checked_add(1)
            .expect("dot counter cannot reach u64::MAX");
        let dot = Dot {
            node,
            counter: *seen,
        };
        // The element's older dots are all covered by our context, so replacing them with the
        // new dot loses nothing: other replicas drop them on merge as observed-and-superseded.
        self.entries.insert(elem, BTreeSet::from([dot]));
        dot
    }

    /// Removes `elem` — precisely the adds of it this replica has observed. Returns whether it
    /// was present.
    pub fn remove(&mut self, elem: &T) -> bool {
        self.entries.remove(elem).is_some()
    }

    pub fn contains(&self, elem: &T) -> bool {
        self.entries.contains_key(elem)
    }

    /// Elements in order.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.entries.keys()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

fn seen(context: &BTreeMap<NodeId, u64>, dot: &Dot) -> bool {
    context.get(&dot.node).is_some_and(|&c| dot.counter <= c)
}

impl<T: Ord + Clone> Crdt for OrSet<T> {
    fn merge(&mut self, other: &Self) {
        // Our dots: keep those the other side also has, or has never seen.
        self.entries.retain(|elem, dots| {
            let theirs = other.entries.get(elem);
            dots.retain(|d| theirs.is_some_and(|t| t.contains(d)) || !seen(&other.context, d));
            !dots.is_empty()
        });
        // Their dots: take those we have never seen; ones we have seen but lack, we removed.
        for (elem, theirs) in &other.entries {
            let unseen = theirs.iter().filter(|d| !seen(&self.context, d)).copied();
            let mut unseen = unseen.peekable();
            if unseen.peek().is_some() {
                self.entries.entry(elem.clone()).or_default().extend(unseen);
            }
        }
        join_max(&mut self.context, &other.context);
    }
}
