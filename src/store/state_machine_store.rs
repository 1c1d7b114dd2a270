//! The state-machine store: the applied state lives in memory; snapshots live on sled.
//!
//! Invariant: apply does not fsync — the fsynced log is the durable record, and a restarted
//! node rebuilds its state from the last persisted snapshot plus the committed log (openraft
//! re-applies from `read_committed`). A snapshot is fsynced before it is reported built or
//! installed, and installing one *replaces* the state whole.

use std::io::Cursor;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use arbiter_core::command::Outcome;
use arbiter_core::state_machine::StateMachine;
use openraft::storage::RaftStateMachine;
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder, StorageIOError};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::{flush, StoreError};
use crate::codec;
use crate::raft_types::{
    Entry, LogId, Snapshot, SnapshotMeta, StorageError, StoredMembership, TypeConfig,
};

const SNAPSHOT_KEY: &[u8] = b"current";

/// The state machine together with how far it has applied the log: this is exactly what a
/// snapshot contains.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AppliedState {
    pub last_applied: Option<LogId>,
    pub last_membership: StoredMembership,
    pub machine: StateMachine,
}

impl AppliedState {
    /// A digest that is equal on two nodes exactly when their state machines are equal.
    pub fn digest(&self) -> u64 {
        // Encoding a value we hold in memory cannot fail for these plain serde types; fall
        // back to 0 rather than panic in a status call.
        codec::encode("state machine", &self.machine)
            .map(|bytes| codec::fnv1a(&bytes))
            .unwrap_or(0)
    }
}

#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta,
    data: Vec<u8>,
}

/// Shared, cheaply cloned handle. The RwLock is held only for in-memory work (apply, a read,
/// an encode), never across an await or an fsync.
#[derive(Clone)]
pub struct StateMachineStore {
    db: sled::Db,
    snapshots: sled::Tree,
    state: Arc<RwLock<AppliedState>>,
    applied_tx: Arc<watch::Sender<u64>>,
    snapshot_seq: Arc<std::sync::atomic::AtomicU64>,
}

impl StateMachineStore {
    pub(super) fn open(db: sled::Db, path: &str) -> Result<Self, StoreError> {
        let snapshots = db.open_tree("snapshots").map_err(|source| StoreError::Io {
            path: path.to_string(),
            source,
        })?;
        let state = match snapshots
            .get(SNAPSHOT_KEY)
            .map_err(|source| StoreError::Io {
                path: path.to_string(),
                source,
            })? {
            Some(raw) => {
                let corrupt = |e: codec::CodecError| StoreError::CorruptSnapshot {
                    path: path.to_string(),
                    reason: e.to_string(),
                };
                let stored: StoredSnapshot = codec::decode("snapshot", &raw).map_err(corrupt)?;
                codec::decode::<AppliedState>("snapshot data", &stored.data).map_err(corrupt)?
            }
            None => AppliedState::default(),
        };
        let applied = state.last_applied.map(|l| l.index).unwrap_or(0);
        Ok(StateMachineStore {
            db,
            snapshots,
            state: Arc::new(RwLock::new(state)),
            applied_tx: Arc::new(watch::channel(applied).0),
            snapshot_seq: Arc::new(std::sync::atomic::AtomicU64::new(0)),
        })
    }

    /// Read access to the applied state for queries and the leader's lease checks.
    pub fn read(&self) -> RwLockReadGuard<'_, AppliedState> {
        // A poisoned lock means a panic while applying; the state may be half-applied, so
        // stopping the node (by propagating the panic) is the only safe choice.
        self.state.read().expect("state machine lock poisoned")
    }

    fn write(&self) -> RwLockWriteGuard<'_, AppliedState> {
        self.state.write().expect("state machine lock poisoned")
    }

    /// Follows the last applied log index, for waiting until a read index has been applied.
    pub fn applied_index(&self) -> watch::Receiver<u64> {
        self.applied_tx.subscribe()
    }

    fn publish_applied(&self, last_applied: Option<LogId>) {
        let index = last_applied.map(|l| l.index).unwrap_or(0);
        self.applied_tx.send_replace(index);
    }

    async fn persist_snapshot(&self, meta: &SnapshotMeta, data: &[u8]) -> Result<(), StorageError> {
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data: data.to_vec(),
        };
        let bytes = codec::encode("snapshot", &stored)
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &e))?;
        self.snapshots
            .insert(SNAPSHOT_KEY, bytes)
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &e))?;
        flush(&self.db)
            .await
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &e))?;
        Ok(())
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineStore {
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError> {
        let (data, meta) = {
            let state = self.read();
            let data = codec::encode("snapshot data", &*state)
                .map_err(|e| StorageIOError::write_snapshot(None, &e))?;
            let seq = self
                .snapshot_seq
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let snapshot_id = match state.last_applied {
                Some(l) => format!("{}-{}-{}", l.leader_id.term, l.index, seq),
                None => format!("0-0-{seq}"),
            };
            let meta = SnapshotMeta {
                last_log_id: state.last_applied,
                last_membership: state.last_membership.clone(),
                snapshot_id,
            };
            (data, meta)
        };
        self.persist_snapshot(&meta, &data).await?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let state = self.read();
        Ok((state.last_applied, state.last_membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Vec<Outcome>>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut replies = Vec::new();
        let last_applied = {
            let mut state = self.write();
            for entry in entries {
                state.last_applied = Some(entry.log_id);
                let reply = match &entry.payload {
                    EntryPayload::Blank => Vec::new(),
                    EntryPayload::Normal(batch) => {
                        state.machine.apply_batch(entry.log_id.index, batch)
                    }
                    EntryPayload::Membership(membership) => {
                        state.last_membership =
                            StoredMembership::new(Some(entry.log_id), membership.clone());
                        Vec::new()
                    }
                };
                replies.push(reply);
            }
            state.last_applied
        };
        self.publish_applied(last_applied);
        Ok(replies)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let data = snapshot.into_inner();
        let new_state: AppliedState = codec::decode("snapshot data", &data)
            .map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), &e))?;
        // Persist before swapping in: if we crash in between, restart loads this snapshot.
        self.persist_snapshot(meta, &data).await?;
        let last_applied = {
            let mut state = self.write();
            *state = new_state;
            state.last_applied
        };
        self.publish_applied(last_applied);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        let raw = self
            .snapshots
            .get(SNAPSHOT_KEY)
            .map_err(|e| StorageIOError::read_snapshot(None, &e))?;
        let Some(raw) = raw else {
            return Ok(None);
        };
        let stored: StoredSnapshot =
            codec::decode("snapshot", &raw).map_err(|e| StorageIOError::read_snapshot(None, &e))?;
        Ok(Some(Snapshot {
            meta: stored.meta,
            snapshot: Box::new(Cursor::new(stored.data)),
        }))
    }
}
