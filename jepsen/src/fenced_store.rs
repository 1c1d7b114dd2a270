//! The harness's fenced resources: what a database behind the arbiter would be. Lease holders
//! write here, in process, carrying their fencing tokens.
//!
//! Invariant: with [`Fencing::Enforce`] a resource admits a token only if it is at least the
//! highest it has accepted or been told was granted (the SDK's [`FencedResource`] floor), so
//! a holder that lost its lease cannot overwrite its successor. Every accepted write is kept,
//! with its token and time, whatever the mode. [`Fencing::AcceptAll`] is the negative control:
//! the floor is still tracked, but nothing is refused.

use std::collections::BTreeMap;
use std::sync::Mutex;

use arbiter_client::{FencedResource, StaleToken};
use arbiter_core::{FencingToken, HolderId};
use serde::Serialize;
use serde_json::Value;

/// Whether stale tokens are refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Fencing {
    Enforce,
    /// `--unsafe-no-fencing`: every write is accepted.
    AcceptAll,
}

/// One write a resource accepted.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AcceptedWrite {
    pub resource: String,
    pub holder: HolderId,
    pub token: FencingToken,
    pub value: Value,
    /// On the run clock, like the history.
    pub time_ns: u64,
}

#[derive(Default)]
struct Resources {
    floors: BTreeMap<String, FencedResource>,
    accepted: Vec<AcceptedWrite>,
}

pub struct FencedStore {
    fencing: Fencing,
    /// Writes are decided one at a time (they also run under the recorder's lock, which is
    /// what orders them against grants in the history); this lock only guards the maps.
    resources: Mutex<Resources>,
}

impl FencedStore {
    pub fn new(fencing: Fencing) -> FencedStore {
        FencedStore {
            fencing,
            resources: Mutex::default(),
        }
    }

    /// A lease on `resource` was granted with `token`: from now on lower tokens are stale. (A
    /// new holder's first act is to announce itself to the resource; doing it at the grant
    /// means a predecessor cannot slip a write in before the first write of its successor.)
    pub fn observe_grant(&self, resource: &str, token: FencingToken) {
        self.lock()
            .floors
            .entry(resource.to_string())
            .or_default()
            .observe_epoch(token);
    }

    /// A write to `resource` under `token`: accepted (and kept) or refused as stale.
    pub fn write(
        &self,
        resource: &str,
        holder: &HolderId,
        token: FencingToken,
        value: &Value,
        time_ns: u64,
    ) -> Result<(), StaleToken> {
        let mut resources = self.lock();
        let floor = resources.floors.entry(resource.to_string()).or_default();
        match (floor.check(token), self.fencing) {
            (Err(stale), Fencing::Enforce) => return Err(stale),
            // The negative control: admitted anyway; the floor stays where it was.
            (Err(_), Fencing::AcceptAll) | (Ok(()), _) => {}
        }
        resources.accepted.push(AcceptedWrite {
            resource: resource.to_string(),
            holder: holder.clone(),
            token,
            value: value.clone(),
            time_ns,
        });
        Ok(())
    }

    /// Every accepted write, in acceptance order.
    pub fn accepted(&self) -> Vec<AcceptedWrite> {
        self.lock().accepted.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Resources> {
        // Each update is a single insert or push; a panic cannot leave them half done.
        self.resources.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn write(store: &FencedStore, token: u64) -> Result<(), StaleToken> {
        store.write(
            "db/a",
            &HolderId::new("p1"),
            FencingToken(token),
            &json!(token),
            token,
        )
    }

    #[test]
    fn a_grant_fences_its_predecessor_before_the_successor_writes() {
        let store = FencedStore::new(Fencing::Enforce);
        store.observe_grant("db/a", FencingToken(10));
        assert!(write(&store, 10).is_ok());
        store.observe_grant("db/a", FencingToken(20));
        assert_eq!(
            write(&store, 10),
            Err(StaleToken {
                presented: FencingToken(10),
                highest: FencingToken(20)
            })
        );
        assert!(write(&store, 20).is_ok());
        assert_eq!(store.accepted().len(), 2);
    }

    #[test]
    fn without_fencing_stale_writes_are_accepted_and_kept() {
        let store = FencedStore::new(Fencing::AcceptAll);
        store.observe_grant("db/a", FencingToken(20));
        assert!(write(&store, 10).is_ok());
        let accepted = store.accepted();
        assert_eq!(accepted.len(), 1);
        assert_eq!(accepted[0].token, FencingToken(10));
    }
}
