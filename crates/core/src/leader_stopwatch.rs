//! Durations that span log entries, timed on the current Raft leader's monotonic clock.
//!
//! Invariant: a stopwatch starts when *this* leader first asks about its key, never at a time
//! read from the log, so no two machines' clocks are ever compared. What a previous leader had
//! measured is unknown to a new one, so the shell clears every stopwatch when its term changes
//! ([`LeaderStopwatch::clear`]): a leader change restarts the measurement, which can only
//! lengthen a wait (a cooldown, a drain), never shorten it.
//!
//! The DR controller keys one on a region's recovery run (cooldown, see
//! [`crate::region_health`]) and one on a failover (its drain window).

use crate::types::MonoMillis;
use std::collections::BTreeMap;

/// Stopwatches by key, read with the leader's monotonic `now`.
#[derive(Debug, Clone)]
pub struct LeaderStopwatch<K> {
    started: BTreeMap<K, MonoMillis>,
}

impl<K> Default for LeaderStopwatch<K> {
    fn default() -> Self {
        LeaderStopwatch {
            started: BTreeMap::new(),
        }
    }
}

impl<K: Ord + Clone> LeaderStopwatch<K> {
    /// Milliseconds since this leader first asked about `key`; the first call starts it at 0.
    pub fn elapsed(&mut self, key: &K, now: MonoMillis) -> u64 {
        let started = *self.started.entry(key.clone()).or_insert(now);
        now.0.saturating_sub(started.0)
    }

    /// Forgets every key `keep` refuses (runs that ended, failovers that finished).
    pub fn retain(&mut self, mut keep: impl FnMut(&K) -> bool) {
        self.started.retain(|key, _| keep(key));
    }

    /// A new term: nothing measured before is this leader's to trust.
    pub fn clear(&mut self) {
        self.started.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_from_first_sight_and_restarts_after_clear() {
        let mut watch = LeaderStopwatch::default();
        assert_eq!(watch.elapsed(&"run-1", MonoMillis(1_000)), 0);
        assert_eq!(watch.elapsed(&"run-1", MonoMillis(4_000)), 3_000);
        assert_eq!(watch.elapsed(&"run-2", MonoMillis(4_000)), 0);
        watch.retain(|key| *key != "run-2");
        assert_eq!(watch.elapsed(&"run-2", MonoMillis(5_000)), 0);
        watch.clear();
        assert_eq!(watch.elapsed(&"run-1", MonoMillis(9_000)), 0);
    }
}
