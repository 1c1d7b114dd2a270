//! The Raft log: entries in the [`Wal`], vote / committed / purge point in sled.
//!
//! Invariants:
//! - An append is reported to openraft (`log_io_completed`) only after fdatasync of every WAL
//!   segment it touched and fsync of the WAL dir if a segment was created. One flusher thread
//!   does the syncing and coalesces every append queued behind the current sync into the next
//!   one: one sync per group commit, not one per entry.
//! - A vote is durable (sled flush + fsync of sled's files) before `save_vote` returns; the purge
//!   point is durable before any segment is deleted; truncate is durable before it returns.
//! - Out of space is retried, never acknowledged: an append that cannot be written waits with
//!   backoff (reported through [`StorageHealth`]) until space returns. A failed sync is not
//!   retried — the kernel may have dropped the dirty pages — so every later append fails too and
//!   openraft stops the node (fail-stop).

// openraft's `StorageError` is large and its type is fixed by the trait signatures; boxing
// is not an option here.
#![allow(clippy::result_large_err)]

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::time::Duration;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{OptionalSend, RaftLogReader, StorageIOError};

use super::wal::{Wal, WalError};
use super::{Meta, StorageHealth, StoreError, StoreOptions};
use crate::codec;
use crate::raft_types::{Entry, LogId, StorageError, TypeConfig, Vote};

const VOTE_KEY: &[u8] = b"vote";
const COMMITTED_KEY: &[u8] = b"committed";
const LAST_PURGED_KEY: &[u8] = b"last_purged";

/// First and longest pause between attempts to write while the disk is full.
const OUT_OF_SPACE_BACKOFF: (Duration, Duration) =
    (Duration::from_millis(50), Duration::from_secs(1));

/// How many WAL syncs and appended entries this node has done: entries per sync is the group
/// commit factor. `sync_seconds` times each sync round (the node's `/metrics` exports it).
#[derive(Debug)]
pub struct WalCounters {
    pub syncs: AtomicU64,
    pub entries: AtomicU64,
    pub sync_seconds: prometheus_client::metrics::histogram::Histogram,
    /// Appends (openraft append calls, each of one or more entries) made durable by each sync
    /// round: the group-commit batch.
    pub sync_batch_appends: prometheus_client::metrics::histogram::Histogram,
}

impl Default for WalCounters {
    fn default() -> Self {
        use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
        WalCounters {
            syncs: AtomicU64::new(0),
            entries: AtomicU64::new(0),
            // 50 µs .. ~1.6 s
            sync_seconds: Histogram::new(exponential_buckets(0.00005, 2.0, 16)),
            sync_batch_appends: Histogram::new(exponential_buckets(1.0, 2.0, 14)),
        }
    }
}

#[derive(Clone)]
pub struct LogStore {
    meta: Meta,
    tree: sled::Tree,
    wal: Arc<Mutex<Wal>>,
    flusher: mpsc::Sender<LogFlushed<TypeConfig>>,
    /// Set by the flusher when a sync failed: the log can no longer promise anything.
    failed: Arc<AtomicBool>,
    health: StorageHealth,
    counters: Arc<WalCounters>,
    /// Last committed index openraft told us about, for status reports.
    committed: Arc<AtomicU64>,
    /// The same as a log id, persisted along with the next vote or purge.
    committed_log_id: Arc<Mutex<Option<LogId>>>,
}

impl LogStore {
    pub(super) fn open(
        meta: Meta,
        wal_dir: &Path,
        options: StoreOptions,
    ) -> Result<Self, StoreError> {
        let path = meta.dir.display().to_string();
        let tree = meta
            .db
            .open_tree("raft_meta")
            .map_err(|source| StoreError::Io {
                path: path.clone(),
                source: source.into(),
            })?;
        let last_purged: Option<LogId> =
            read_meta(&tree, LAST_PURGED_KEY).map_err(|reason| StoreError::CorruptMeta {
                path: path.clone(),
                key: "last_purged".into(),
                reason,
            })?;
        let (wal, torn) = Wal::open(
            wal_dir,
            options.sync,
            options.wal_segment_bytes,
            last_purged.map(|l| l.index),
        )?;
        if let Some(torn) = torn {
            tracing::warn!(
                file = %torn.path.display(),
                offset = torn.offset,
                "cut off a torn WAL tail (written after the last sync, never acknowledged)"
            );
        }
        let wal = Arc::new(Mutex::new(wal));
        let failed = Arc::new(AtomicBool::new(false));
        let health = StorageHealth::default();
        let counters = Arc::new(WalCounters::default());
        let (tx, rx) = mpsc::channel::<LogFlushed<TypeConfig>>();
        let flusher = Flusher {
            wal: wal.clone(),
            failed: failed.clone(),
            health: health.clone(),
            counters: counters.clone(),
        };
        // A plain thread, not a tokio task: fdatasync blocks, and the flusher must keep running
        // while the runtime is busy. It exits when the last LogStore clone is dropped.
        std::thread::Builder::new()
            .name("raft-wal-sync".into())
            .spawn(move || flusher.run(rx))
            .map_err(|source| StoreError::Io { path, source })?;
        Ok(LogStore {
            meta,
            tree,
            wal,
            flusher: tx,
            failed,
            health,
            counters,
            committed: Arc::default(),
            committed_log_id: Arc::default(),
        })
    }

    /// Follows the committed index as openraft reports it through `save_committed`.
    pub fn committed_index(&self) -> Arc<AtomicU64> {
        self.committed.clone()
    }

    /// The storage failure this node is waiting out, if any, for status reports.
    pub fn health(&self) -> StorageHealth {
        self.health.clone()
    }

    /// Syncs and appended entries so far, to show group commit at work.
    pub fn counters(&self) -> Arc<WalCounters> {
        self.counters.clone()
    }

    fn wal(&self) -> MutexGuard<'_, Wal> {
        // Poisoned only by a panic inside a WAL call; the in-memory index may then disagree
        // with the files, so propagating the panic (stopping the node) is the safe choice.
        self.wal.lock().expect("WAL lock poisoned")
    }

    fn write_meta<T: serde::Serialize>(&self, key: &[u8], value: &T) -> Result<(), StorageError> {
        let bytes =
            codec::encode_checked("raft meta", value).map_err(|e| StorageIOError::write(&e))?;
        self.tree
            .insert(key, bytes)
            .map_err(|e| StorageIOError::write(&e))?;
        Ok(())
    }

    fn write_committed_hint(&self) -> Result<(), StorageError> {
        let committed = *self
            .committed_log_id
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        match committed {
            Some(_) => self.write_meta(COMMITTED_KEY, &committed),
            None => Ok(()),
        }
    }

    fn read_meta<T: serde::de::DeserializeOwned>(
        &self,
        key: &[u8],
    ) -> Result<Option<T>, StorageError> {
        read_meta(&self.tree, key).map_err(|reason| {
            StorageIOError::read(&std::io::Error::other(format!(
                "{}: key {}: {reason}",
                self.meta.dir.display(),
                String::from_utf8_lossy(key)
            )))
            .into()
        })
    }

    /// Writes one record, waiting out a full disk: nothing was acknowledged, so retrying is
    /// safe, and openraft is not told the append is done until it is written and synced.
    async fn write_entry(&self, index: u64, payload: &[u8]) -> Result<(), WalError> {
        let mut backoff = OUT_OF_SPACE_BACKOFF.0;
        let mut waiting = false;
        loop {
            let result = self.wal().append(index, payload);
            match result {
                Ok(()) => {
                    if waiting {
                        tracing::info!(index, "storage has space again; appending resumed");
                        self.health.set(None);
                    }
                    return Ok(());
                }
                Err(e) if e.is_out_of_space() => {
                    if !waiting {
                        tracing::error!(error = %e, "out of space: appends wait until space returns");
                        self.health.set(Some(e.to_string()));
                        waiting = true;
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(OUT_OF_SPACE_BACKOFF.1);
                }
                Err(e) => return Err(e),
            }
        }
    }
}

fn read_meta<T: serde::de::DeserializeOwned>(
    tree: &sled::Tree,
    key: &[u8],
) -> Result<Option<T>, String> {
    let raw = tree.get(key).map_err(|e| e.to_string())?;
    raw.map(|bytes| codec::decode_checked("raft meta", &bytes))
        .transpose()
        .map_err(|e| e.to_string())
}

/// Owns the group commit: one sync for everything appended before it started.
struct Flusher {
    wal: Arc<Mutex<Wal>>,
    failed: Arc<AtomicBool>,
    health: StorageHealth,
    counters: Arc<WalCounters>,
}

impl Flusher {
    fn run(self, rx: mpsc::Receiver<LogFlushed<TypeConfig>>) {
        while let Ok(first) = rx.recv() {
            let mut waiting = vec![first];
            waiting.extend(rx.try_iter());
            let started = std::time::Instant::now();
            let result = if self.failed.load(Ordering::SeqCst) {
                Err("an earlier WAL sync failed; the log is no longer trusted".to_string())
            } else {
                // Poisoned only by a panic in a WAL call; see `LogStore::wal`.
                let pending = self.wal.lock().expect("WAL lock poisoned").take_unsynced();
                pending.run().map_err(|e| e.to_string())
            };
            match &result {
                Ok(()) => {
                    self.counters.syncs.fetch_add(1, Ordering::Relaxed);
                    self.counters
                        .sync_seconds
                        .observe(started.elapsed().as_secs_f64());
                    self.counters
                        .sync_batch_appends
                        .observe(waiting.len() as f64);
                }
                Err(e) => {
                    // fsyncgate: after a failed sync the dirty pages may be gone; retrying
                    // could report data durable that is not. Stop acknowledging for good.
                    tracing::error!(error = %e, "WAL sync failed; the node must stop");
                    self.failed.store(true, Ordering::SeqCst);
                    self.health.set(Some(format!("WAL sync failed: {e}")));
                }
            }
            for callback in waiting {
                callback.log_io_completed(result.clone().map_err(std::io::Error::other));
            }
        }
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let wal = self.wal();
        let (Some(first), Some(last)) = (wal.first_live_index(), wal.last_index()) else {
            return Ok(Vec::new());
        };
        let start = match range.start_bound() {
            Bound::Included(i) => *i,
            Bound::Excluded(i) => i + 1,
            Bound::Unbounded => 0,
        }
        .max(first);
        let end = match range.end_bound() {
            Bound::Included(i) => *i,
            Bound::Excluded(i) => match i.checked_sub(1) {
                Some(i) => i,
                None => return Ok(Vec::new()),
            },
            Bound::Unbounded => last,
        }
        .min(last);
        let mut entries = Vec::new();
        for index in start..=end {
            let Some(bytes) = wal
                .read(index)
                .map_err(|e| StorageIOError::read_logs(&e.into_io()))?
            else {
                break;
            };
            entries.push(
                codec::decode("log entry", &bytes).map_err(|e| StorageIOError::read_logs(&e))?,
            );
        }
        Ok(entries)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged_log_id: Option<LogId> = self.read_meta(LAST_PURGED_KEY)?;
        let last = self.wal().last_index();
        let last_log_id = match last {
            Some(index) => {
                let mut entries = self.try_get_log_entries(index..=index).await?;
                entries.pop().map(|e| e.log_id)
            }
            None => None,
        };
        Ok(LogState {
            last_purged_log_id,
            last_log_id: last_log_id.or(last_purged_log_id),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        self.write_meta(VOTE_KEY, vote)?;
        self.write_committed_hint()?;
        // A vote must survive a crash before it is acted on, or a node could vote twice in
        // one term.
        self.meta
            .durable_flush_async()
            .await
            .map_err(|e| StorageIOError::write_vote(&e))?;
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        self.read_meta(VOTE_KEY)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        // Kept in memory and written to sled only with the next vote or purge: the committed
        // index is a hint that lets a restarted node re-apply its log sooner (a stale one is
        // merely lower), and writing sled on every commit would make a full disk fatal to
        // sled instead of a pause of the WAL.
        *self
            .committed_log_id
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = committed;
        let index = committed.map(|l| l.index).unwrap_or(0);
        self.committed.store(index, Ordering::Relaxed);
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.read_meta::<Option<LogId>>(COMMITTED_KEY)?.flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        if self.failed.load(Ordering::SeqCst) {
            return Err(StorageIOError::write_logs(&std::io::Error::other(
                "an earlier WAL sync failed; the log is no longer trusted",
            ))
            .into());
        }
        let mut count = 0;
        for entry in entries {
            let bytes = codec::encode("log entry", &entry)
                .map_err(|e| StorageIOError::write_log_entry(entry.log_id, &e))?;
            self.write_entry(entry.log_id.index, &bytes)
                .await
                .map_err(|e| StorageIOError::write_log_entry(entry.log_id, &e.into_io()))?;
            count += 1;
        }
        self.counters.entries.fetch_add(count, Ordering::Relaxed);
        // Acknowledged by the flusher thread after the sync, never here.
        self.flusher
            .send(callback)
            .map_err(|e| StorageIOError::write_logs(&e).into())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let wal = self.wal.clone();
        tokio::task::spawn_blocking(move || {
            // Poisoned only by a panic in a WAL call; see `LogStore::wal`.
            wal.lock()
                .expect("WAL lock poisoned")
                .truncate(log_id.index)
        })
        .await
        .map_err(|e| StorageIOError::write_logs(&e))?
        .map_err(|e| StorageIOError::write_logs(&e.into_io()))?;
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        // The purge point is durable first: after a crash in between, the log state still says
        // which prefix is gone rather than showing a hole.
        self.write_meta(LAST_PURGED_KEY, &log_id)?;
        self.write_committed_hint()?;
        self.meta
            .durable_flush_async()
            .await
            .map_err(|e| StorageIOError::write_logs(&e))?;
        let wal = self.wal.clone();
        tokio::task::spawn_blocking(move || {
            // Poisoned only by a panic in a WAL call; see `LogStore::wal`.
            wal.lock().expect("WAL lock poisoned").purge(log_id.index)
        })
        .await
        .map_err(|e| StorageIOError::write_logs(&e))?
        .map_err(|e| StorageIOError::write_logs(&e.into_io()))?;
        Ok(())
    }
}

impl Debug for LogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogStore").finish_non_exhaustive()
    }
}
