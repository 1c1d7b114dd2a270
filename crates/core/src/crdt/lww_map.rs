//! Last-writer-wins map: an independent [`LwwRegister`] per key, where removal is a write of
//! a tombstone.
//!
//! Invariant: each key's register holds its latest write, insert or remove alike. Removal must
//! be a timestamped tombstone rather than deleting the entry, or a replica that has not yet
//! seen the removal would resurrect the key on the next merge. Tombstones are kept: dropping
//! them safely needs to know every replica has seen them (causal stability), which this pure
//! type cannot know.

use super::{Crdt, LwwRegister};
use crate::hlc::HlcTimestamp;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LwwMap<K: Ord, V> {
    /// `None` in a register is a tombstone. `None < Some(_)`, so in the misconfiguration case
    /// of identical timestamps an insert beats a remove, deterministically.
    entries: BTreeMap<K, LwwRegister<Option<V>>>,
}

impl<K: Ord, V> Default for LwwMap<K, V> {
    fn default() -> Self {
        LwwMap {
            entries: BTreeMap::new(),
        }
    }
}

impl<K: Ord + Clone, V: Ord + Clone> LwwMap<K, V> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `key` to `value` as of `at`. Returns whether this write is now the key's latest.
    pub fn insert(&mut self, key: K, value: V, at: HlcTimestamp) -> bool {
        self.entries.entry(key).or_default().set(Some(value), at)
    }

    /// Removes `key` as of `at`, leaving a tombstone even if the key is absent here: the insert
    /// it must beat may still be on its way from another region. Returns whether the tombstone
    /// is now the key's latest write.
    pub fn remove(&mut self, key: K, at: HlcTimestamp) -> bool {
        self.entries.entry(key).or_default().set(None, at)
    }

    /// The live value of `key`.
    pub fn get(&self, key: &K) -> Option<&V> {
        self.entries
            .get(key)
            .and_then(|r| r.get())
            .and_then(Option::as_ref)
    }

    /// Live entries in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.entries
            .iter()
            .filter_map(|(k, r)| r.get().and_then(Option::as_ref).map(|v| (k, v)))
    }

    /// Number of live entries (tombstones excluded).
    pub fn len(&self) -> usize {
        self.iter().count()
    }

    pub fn is_empty(&self) -> bool {
        self.iter().next().is_none()
    }
}

impl<K: Ord + Clone, V: Ord + Clone> Crdt for LwwMap<K, V> {
    fn merge(&mut self, other: &Self) {
        for (key, theirs) in &other.entries {
            self.entries.entry(key.clone()).or_default().merge(theirs);
        }
    }
}
