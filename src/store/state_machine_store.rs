//! The state-machine store: the applied state lives in memory; the snapshot lives in
//! `<data dir>/snapshot.bin`, a checksummed file.
//!
//! Invariants: apply does not fsync — the fsynced log is the durable record, and a restarted
//! node rebuilds its state from the last persisted snapshot plus the committed log (openraft
//! re-applies from `read_committed`). A snapshot is durable before it is reported built or
//! installed: written to a temp file, fsynced, renamed over `snapshot.bin`, directory fsynced,
//! so a crash leaves either the old snapshot or the new one, whole. A snapshot that fails its
//! checksum is refused with an error naming the file; it is never served or applied.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Instant;

use arbiter_core::command::Outcome;
use arbiter_core::state_machine::StateMachine;
use openraft::storage::RaftStateMachine;
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder, StorageIOError};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::{StoreError, SyncPolicy};
use crate::codec;
use crate::raft_types::{
    Entry, LogId, Snapshot, SnapshotMeta, StorageError, StoredMembership, TypeConfig,
};

const SNAPSHOT_FILE: &str = "snapshot.bin";

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

/// How long snapshots take to build and install, and how large the last one was (registered
/// by [`crate::metrics::Metrics`]). Both times run from the first byte encoded or received to
/// the file fsynced and, for an install, the state swapped in.
#[derive(Clone)]
pub struct SnapshotMetrics {
    pub build_seconds: Histogram,
    pub install_seconds: Histogram,
    /// Encoded size of the snapshot last built or installed here.
    pub bytes: Gauge,
}

impl Default for SnapshotMetrics {
    fn default() -> Self {
        // 1 ms .. ~65 s: a snapshot of a few leases up to millions of them.
        let buckets = || Histogram::new(exponential_buckets(0.001, 2.0, 17));
        SnapshotMetrics {
            build_seconds: buckets(),
            install_seconds: buckets(),
            bytes: Gauge::default(),
        }
    }
}

/// [`AppliedState::digest`] and the last entry applied to the state it digested.
type AppliedDigest = (Option<LogId>, u64);

/// Shared, cheaply cloned handle. The RwLock is held only for in-memory work (apply, a read,
/// an encode), never across an await or an fsync.
#[derive(Clone)]
pub struct StateMachineStore {
    files: Arc<SnapshotFiles>,
    state: Arc<RwLock<AppliedState>>,
    applied_tx: Arc<watch::Sender<u64>>,
    snapshot_seq: Arc<AtomicU64>,
    snapshot_metrics: SnapshotMetrics,
    /// The last digest computed, and the entry it was computed at.
    digest: Arc<std::sync::Mutex<Option<AppliedDigest>>>,
}

impl StateMachineStore {
    pub(super) fn open(dir: &Path, sync: SyncPolicy) -> Result<Self, StoreError> {
        let files = SnapshotFiles {
            dir: dir.to_path_buf(),
            sync,
        };
        let state =
            match files
                .load()
                .map_err(|e| e.into_store_error(&files.path()))?
            {
                Some(stored) => codec::decode::<AppliedState>("snapshot data", &stored.data)
                    .map_err(|e| StoreError::CorruptSnapshot {
                        path: files.path().display().to_string(),
                        reason: e.to_string(),
                    })?,
                None => AppliedState::default(),
            };
        let applied = state.last_applied.map(|l| l.index).unwrap_or(0);
        Ok(StateMachineStore {
            files: Arc::new(files),
            state: Arc::new(RwLock::new(state)),
            applied_tx: Arc::new(watch::channel(applied).0),
            snapshot_seq: Arc::new(AtomicU64::new(0)),
            snapshot_metrics: SnapshotMetrics::default(),
            digest: Arc::default(),
        })
    }

    /// [`AppliedState::digest`] of the state applied now. It encodes the whole state, a good
    /// part of a second at a million leases, so it runs off the runtime on a clone (which
    /// shares the lease table's nodes) and is remembered until the next entry applies: a
    /// status poll of a quiet cluster costs nothing. Returns the last entry applied to the
    /// state it digested, with the digest.
    pub async fn digest(&self) -> AppliedDigest {
        let state = self.read().clone();
        let at = state.last_applied;
        let remembered = *self.digest.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(remembered) = remembered.filter(|(of, _)| *of == at) {
            return remembered;
        }
        let digest = tokio::task::spawn_blocking(move || state.digest())
            .await
            .unwrap_or_default();
        *self.digest.lock().unwrap_or_else(|e| e.into_inner()) = Some((at, digest));
        (at, digest)
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

    /// Snapshot build and install times and sizes.
    pub fn snapshot_metrics(&self) -> &SnapshotMetrics {
        &self.snapshot_metrics
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
        let files = self.files.clone();
        tokio::task::spawn_blocking(move || files.save(&stored))
            .await
            .map_err(std::io::Error::other)
            .and_then(|r| r)
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &e))?;
        Ok(())
    }
}

/// Why the snapshot file could not be read back.
#[derive(Debug)]
enum LoadError {
    Io(std::io::Error),
    Corrupt(codec::CodecError),
}

impl LoadError {
    fn into_store_error(self, path: &Path) -> StoreError {
        let path = path.display().to_string();
        match self {
            LoadError::Io(source) => StoreError::Io { path, source },
            LoadError::Corrupt(e) => StoreError::CorruptSnapshot {
                path,
                reason: e.to_string(),
            },
        }
    }
}

/// The snapshot file and how it is replaced atomically and durably.
struct SnapshotFiles {
    dir: PathBuf,
    sync: SyncPolicy,
}

impl SnapshotFiles {
    fn path(&self) -> PathBuf {
        self.dir.join(SNAPSHOT_FILE)
    }

    /// temp file → fsync → rename → fsync dir: a crash leaves the old or the new one, whole.
    fn save(&self, stored: &StoredSnapshot) -> std::io::Result<()> {
        let bytes = codec::encode_checked("snapshot", stored).map_err(std::io::Error::other)?;
        self.sync
            .replace_file(&self.path(), &bytes)
            .map_err(|(_, e)| e)
    }

    fn load(&self) -> Result<Option<StoredSnapshot>, LoadError> {
        let bytes = match std::fs::read(self.path()) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(LoadError::Io(e)),
        };
        codec::decode_checked("snapshot", &bytes)
            .map(Some)
            .map_err(LoadError::Corrupt)
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineStore {
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError> {
        let started = Instant::now();
        // The clone shares the lease table's nodes: the lock is held for O(1), and applying
        // goes on while the copy is encoded off the runtime (at a million leases the encoding
        // alone outlasts an election timeout).
        let state = self.read().clone();
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
        let data = tokio::task::spawn_blocking(move || codec::encode("snapshot data", &state))
            .await
            .map_err(|e| StorageIOError::write_snapshot(None, &e))?
            .map_err(|e| StorageIOError::write_snapshot(None, &e))?;
        self.persist_snapshot(&meta, &data).await?;
        let metrics = &self.snapshot_metrics;
        metrics
            .build_seconds
            .observe(started.elapsed().as_secs_f64());
        metrics.bytes.set(data.len() as i64);
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
        let started = Instant::now();
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
        let metrics = &self.snapshot_metrics;
        metrics
            .install_seconds
            .observe(started.elapsed().as_secs_f64());
        metrics.bytes.set(data.len() as i64);
        self.publish_applied(last_applied);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        let files = self.files.clone();
        let loaded = tokio::task::spawn_blocking(move || {
            files
                .load()
                .map_err(|e| e.into_store_error(&files.path()).to_string())
        })
        .await
        .map_err(|e| StorageIOError::read_snapshot(None, &e))?
        .map_err(|e| StorageIOError::read_snapshot(None, &std::io::Error::other(e)))?;
        Ok(loaded.map(|stored| Snapshot {
            meta: stored.meta,
            snapshot: Box::new(Cursor::new(stored.data)),
        }))
    }
}
