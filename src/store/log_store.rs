//! The Raft log on sled.
//!
//! Invariant: an append is reported to openraft (`log_io_completed`) only after the entries
//! are fsynced, and a vote is fsynced before `save_vote` returns. Appends are fsynced by one
//! flusher thread that coalesces every append queued behind the current fsync into the next
//! one: group fsync, so the log's write rate is not one fsync per entry.

// openraft's `StorageError` is large and its type is fixed by the trait signatures; boxing
// is not an option here.
#![allow(clippy::result_large_err)]

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{OptionalSend, RaftLogReader, StorageIOError};

use super::{flush, StoreError};
use crate::codec;
use crate::raft_types::{Entry, LogId, StorageError, TypeConfig, Vote};

const VOTE_KEY: &[u8] = b"vote";
const COMMITTED_KEY: &[u8] = b"committed";
const LAST_PURGED_KEY: &[u8] = b"last_purged";

#[derive(Clone)]
pub struct LogStore {
    db: sled::Db,
    logs: sled::Tree,
    meta: sled::Tree,
    flusher: mpsc::Sender<LogFlushed<TypeConfig>>,
    /// Last committed index openraft told us about, for status reports.
    committed: Arc<AtomicU64>,
}

impl LogStore {
    pub(super) fn open(db: sled::Db, path: &str) -> Result<Self, StoreError> {
        let io = |source| StoreError::Io {
            path: path.to_string(),
            source,
        };
        let logs = db.open_tree("raft_log").map_err(io)?;
        let meta = db.open_tree("raft_meta").map_err(io)?;
        let (tx, rx) = mpsc::channel::<LogFlushed<TypeConfig>>();
        let flush_db = db.clone();
        // A plain thread, not a tokio task: fsync blocks, and the flusher must keep running
        // while the runtime is busy. It exits when the last LogStore clone is dropped.
        std::thread::Builder::new()
            .name("raft-log-fsync".into())
            .spawn(move || run_flusher(flush_db, rx))
            .map_err(|e| StoreError::Io {
                path: path.to_string(),
                source: sled::Error::Io(e),
            })?;
        Ok(LogStore {
            db,
            logs,
            meta,
            flusher: tx,
            committed: Arc::default(),
        })
    }

    /// Follows the committed index as openraft reports it through `save_committed`.
    pub fn committed_index(&self) -> Arc<AtomicU64> {
        self.committed.clone()
    }

    fn read_meta<T: serde::de::DeserializeOwned>(
        &self,
        key: &[u8],
    ) -> Result<Option<T>, StorageError> {
        let raw = self.meta.get(key).map_err(|e| StorageIOError::read(&e))?;
        raw.map(|bytes| codec::decode("raft meta", &bytes))
            .transpose()
            .map_err(|e| StorageIOError::read(&e).into())
    }

    fn write_meta<T: serde::Serialize>(&self, key: &[u8], value: &T) -> Result<(), StorageError> {
        let bytes = codec::encode("raft meta", value).map_err(|e| StorageIOError::write(&e))?;
        self.meta
            .insert(key, bytes)
            .map_err(|e| StorageIOError::write(&e))?;
        Ok(())
    }

    fn remove_range(&self, from: u64, to_inclusive: Option<u64>) -> Result<(), StorageError> {
        let start = from.to_be_bytes();
        let keys: Result<Vec<_>, _> = match to_inclusive {
            Some(end) => self.logs.range(start..=end.to_be_bytes()).keys().collect(),
            None => self.logs.range(start..).keys().collect(),
        };
        let mut batch = sled::Batch::default();
        for key in keys.map_err(|e| StorageIOError::write_logs(&e))? {
            batch.remove(key);
        }
        self.logs
            .apply_batch(batch)
            .map_err(|e| StorageIOError::write_logs(&e))?;
        Ok(())
    }
}

fn run_flusher(db: sled::Db, rx: mpsc::Receiver<LogFlushed<TypeConfig>>) {
    while let Ok(first) = rx.recv() {
        let mut waiting = vec![first];
        waiting.extend(rx.try_iter());
        let result = db.flush();
        for callback in waiting {
            callback.log_io_completed(match &result {
                Ok(_) => Ok(()),
                Err(e) => Err(std::io::Error::other(e.to_string())),
            });
        }
    }
}

fn index_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let start = match range.start_bound() {
            Bound::Included(i) => *i,
            Bound::Excluded(i) => i + 1,
            Bound::Unbounded => 0,
        };
        let iter = match range.end_bound() {
            Bound::Included(i) => self.logs.range(index_key(start)..=index_key(*i)),
            Bound::Excluded(i) => self.logs.range(index_key(start)..index_key(*i)),
            Bound::Unbounded => self.logs.range(index_key(start)..),
        };
        iter.values()
            .map(|value| {
                let value = value.map_err(|e| StorageIOError::read_logs(&e))?;
                codec::decode("log entry", &value).map_err(|e| StorageIOError::read_logs(&e).into())
            })
            .collect()
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged_log_id: Option<LogId> = self.read_meta(LAST_PURGED_KEY)?;
        let last = self
            .logs
            .last()
            .map_err(|e| StorageIOError::read_logs(&e))?;
        let last_log_id = match last {
            Some((_, value)) => {
                let entry: Entry = codec::decode("log entry", &value)
                    .map_err(|e| StorageIOError::read_logs(&e))?;
                Some(entry.log_id)
            }
            None => last_purged_log_id,
        };
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        self.write_meta(VOTE_KEY, vote)?;
        // A vote must survive a crash before it is acted on, or a node could vote twice in
        // one term.
        flush(&self.db)
            .await
            .map_err(|e| StorageIOError::write_vote(&e))?;
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        self.read_meta(VOTE_KEY)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        // Not flushed: the committed index is only a hint that lets a restarted node re-apply
        // its log sooner; it rides along with the next log fsync.
        let index = committed.map(|l| l.index).unwrap_or(0);
        self.committed.store(index, Ordering::Relaxed);
        self.write_meta(COMMITTED_KEY, &committed)
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
        let mut batch = sled::Batch::default();
        for entry in entries {
            let bytes = codec::encode("log entry", &entry)
                .map_err(|e| StorageIOError::write_log_entry(entry.log_id, &e))?;
            batch.insert(&index_key(entry.log_id.index), bytes);
        }
        self.logs
            .apply_batch(batch)
            .map_err(|e| StorageIOError::write_logs(&e))?;
        // Acknowledged by the flusher thread after fsync, never here.
        self.flusher
            .send(callback)
            .map_err(|e| StorageIOError::write_logs(&e).into())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.remove_range(log_id.index, None)?;
        flush(&self.db)
            .await
            .map_err(|e| StorageIOError::write_logs(&e))?;
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        // Record the purge point first: after a crash in between, the log state still says
        // which prefix is gone rather than showing a hole.
        self.write_meta(LAST_PURGED_KEY, &log_id)?;
        flush(&self.db)
            .await
            .map_err(|e| StorageIOError::write_logs(&e))?;
        self.remove_range(0, Some(log_id.index))
    }
}

impl Debug for LogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogStore").finish_non_exhaustive()
    }
}
