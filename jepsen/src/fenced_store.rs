//! The harness's fenced resources: what a database behind the arbiter would be. Lease holders
//! write here, in process, carrying their fencing tokens.
//!
//! Invariant: with [`Fencing::Enforce`] a resource admits a token only if it is at least the
//! highest it has accepted or that the arbiter reported as the resource's epoch (the SDK's
//! [`FencedResource`] floor). Like a real database it believes only what writers present and
//! what the arbiter says — never the harness's own record of grants — so a stale write that
//! reaches it before the successor's first write is accepted, and the `fenced_writes` checker
//! sees it: fencing here covers the arbiter and the SDK, it does not stand in for them. Every
//! accepted write is kept, with its token and time, whatever the mode. [`Fencing::AcceptAll`]
//! is the negative control: the floor is still tracked, but nothing is refused.

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

    /// The arbiter reported `epoch` as `resource`'s current epoch (a read of its replicated
    /// state, as a database's fence refresher or the DR controller would push it): from now on
    /// lower tokens are stale. Never lowers the floor.
    pub fn observe_epoch(&self, resource: &str, epoch: FencingToken) {
        self.lock()
            .floors
            .entry(resource.to_string())
            .or_default()
            .observe_epoch(epoch);
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
    fn the_store_learns_epochs_from_writers_and_the_arbiter_only() {
        let store = FencedStore::new(Fencing::Enforce);
        assert!(write(&store, 10).is_ok());
        // Token 20 was granted, but nobody told the store: the old token still gets in.
        assert!(write(&store, 10).is_ok());
        // The successor's first write raises the floor.
        assert!(write(&store, 20).is_ok());
        let stale = Err(StaleToken {
            presented: FencingToken(10),
            highest: FencingToken(20),
        });
        assert_eq!(write(&store, 10), stale);
        // The arbiter reports a newer epoch (a revoke): 20 is stale before 30 ever writes.
        store.observe_epoch("db/a", FencingToken(30));
        assert_eq!(
            write(&store, 20),
            Err(StaleToken {
                presented: FencingToken(20),
                highest: FencingToken(30)
            })
        );
        store.observe_epoch("db/a", FencingToken(5));
        assert!(write(&store, 30).is_ok(), "an old report lowers nothing");
        assert_eq!(store.accepted().len(), 4);
    }

    #[test]
    fn without_fencing_stale_writes_are_accepted_and_kept() {
        let store = FencedStore::new(Fencing::AcceptAll);
        store.observe_epoch("db/a", FencingToken(20));
        assert!(write(&store, 10).is_ok());
        let accepted = store.accepted();
        assert_eq!(accepted.len(), 1);
        assert_eq!(accepted[0].token, FencingToken(10));
    }
}
