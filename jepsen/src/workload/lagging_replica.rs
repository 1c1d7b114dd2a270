//! The stale-read negative control's replica: a copy of the routing registers that applies what
//! the leader says `lag` late, and answers reads from that copy without asking anyone.
//!
//! Invariant: a read at `now` returns the newest value the replica had observed by
//! `now − lag` — exactly what a follower `lag` behind, serving reads without a leader check,
//! would return. A key it has not caught up on yet has no answer (the caller reads for real).

use std::collections::{BTreeMap, VecDeque};

use serde_json::Value;

pub struct LaggingReplica {
    lag_ns: u64,
    /// Key → (observed at, value), oldest first; only what a future read may still return.
    samples: BTreeMap<String, VecDeque<(u64, Value)>>,
}

impl LaggingReplica {
    pub fn new(lag_ns: u64) -> LaggingReplica {
        LaggingReplica {
            lag_ns,
            samples: BTreeMap::new(),
        }
    }

    /// The leader said `key` was `value` at `at_ns` (times only grow per key).
    pub fn observe(&mut self, key: &str, at_ns: u64, value: Value) {
        let samples = self.samples.entry(key.to_string()).or_default();
        samples.push_back((at_ns, value));
        // Keep the newest sample already older than the lag, and everything after it: older
        // ones can never be returned again.
        let horizon = at_ns.saturating_sub(self.lag_ns);
        while samples.len() > 1 && samples[1].0 <= horizon {
            samples.pop_front();
        }
    }

    /// What the replica answers at `now_ns`.
    pub fn read(&self, key: &str, now_ns: u64) -> Option<Value> {
        let horizon = now_ns.checked_sub(self.lag_ns)?;
        self.samples
            .get(key)?
            .iter()
            .rev()
            .find(|(at, _)| *at <= horizon)
            .map(|(_, v)| v.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_see_the_state_of_lag_ago() {
        // Observations and reads in time order, as the replica feed and the readers make them.
        let mut r = LaggingReplica::new(100);
        assert_eq!(r.read("t", 50), None, "nothing applied yet");
        r.observe("t", 10, json!("a"));
        r.observe("t", 60, json!("b"));
        assert_eq!(r.read("t", 105), None, "not caught up with t=10 yet");
        assert_eq!(r.read("t", 120), Some(json!("a")));
        assert_eq!(r.read("t", 200), Some(json!("b")));
        r.observe("t", 300, json!("c"));
        assert_eq!(
            r.read("t", 350),
            Some(json!("b")),
            "c is not applied until 400"
        );
        assert_eq!(r.read("t", 400), Some(json!("c")));
        assert_eq!(r.read("other", 400), None);
    }

    #[test]
    fn samples_no_read_can_return_are_dropped() {
        let mut r = LaggingReplica::new(100);
        for t in 0..1_000 {
            r.observe("t", t * 10, json!(t));
        }
        assert!(r.samples["t"].len() <= 12, "{}", r.samples["t"].len());
        assert_eq!(r.read("t", 9_990), Some(json!(989)));
    }
}
