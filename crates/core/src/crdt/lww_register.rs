//! Last-writer-wins register ordered by HLC timestamps.
//!
//! Invariant: the register holds the write with the greatest `(timestamp, value)` it has seen.
//! Timestamps include the issuing node id, so writes from distinct clocks never tie; the value
//! comparison only decides between two different values stamped identically (two replicas
//! misconfigured with one node id), which keeps merge deterministic even then.

use super::Crdt;
use crate::hlc::HlcTimestamp;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LwwRegister<T> {
    /// `None` until the first write: the empty register is the identity of merge.
    current: Option<Write<T>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Write<T> {
    at: HlcTimestamp,
    value: T,
}

impl<T> Default for LwwRegister<T> {
    fn default() -> Self {
        LwwRegister { current: None }
    }
}

impl<T: Ord + Clone> LwwRegister<T> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Writes `value` stamped `at` (from [`HybridClock::now`](crate::hlc::HybridClock::now)).
    /// Returns whether it became the current value; a write older than the current one is
    /// ignored, exactly as if it had arrived first and been overwritten, and a second delivery
    /// of the current write changes nothing.
    pub fn set(&mut self, value: T, at: HlcTimestamp) -> bool {
        if self.beaten_by(at, &value) {
            self.current = Some(Write { at, value });
            true
        } else {
            false
        }
    }

    /// The winning value, if anything was ever written.
    pub fn get(&self) -> Option<&T> {
        self.current.as_ref().map(|w| &w.value)
    }

    /// The winning write's timestamp.
    pub fn timestamp(&self) -> Option<HlcTimestamp> {
        self.current.as_ref().map(|w| w.at)
    }

    fn beaten_by(&self, at: HlcTimestamp, value: &T) -> bool {
        match &self.current {
            None => true,
            Some(cur) => (at, value) > (cur.at, &cur.value),
        }
    }
}

impl<T: Ord + Clone> Crdt for LwwRegister<T> {
    fn merge(&mut self, other: &Self) {
        if let Some(theirs) = &other.current {
            if self.beaten_by(theirs.at, &theirs.value) {
                self.current = Some(theirs.clone());
            }
        }
    }
}
