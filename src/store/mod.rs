//! Durable storage: the Raft log in a dedicated write-ahead log ([`wal`]), Raft metadata (vote,
//! committed, purge point, format version) in sled, snapshots in a plain checksummed file.
//!
//! Layout of a data dir: `wal/` (segments), `sled/` (metadata), `snapshot.bin`.
//!
//! Invariants:
//! - A data-format version key is written (durably) when a data dir is first opened and
//!   checked on every open; a dir written by an incompatible version is refused with a clear
//!   error instead of being misread.
//! - sled's own `flush()` is `sync_file_range` and leaves blob files and directories unsynced,
//!   so every metadata write that must survive power loss is followed by [`Meta::durable_flush`],
//!   which fsyncs every file and directory under sled's dir.
//! - Every fsync goes through one [`SyncPolicy`]; nothing else decides whether to sync.

mod log_store;
mod state_machine_store;
mod sync;
pub mod wal;

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

pub use log_store::{LogStore, WalCounters};
pub use state_machine_store::{AppliedState, SnapshotMetrics, StateMachineStore};
pub use sync::SyncPolicy;

/// Bumped whenever the encoding of anything stored changes incompatibly. Version 2: the Raft
/// log moved from sled to the WAL, snapshots to `snapshot.bin`, metadata got checksums.
/// Version 3: a member records its peer (Raft, mutual TLS) address, `Member::peer_addr`, in
/// the membership that log entries, snapshots and the state machine carry.
/// Version 4: the state machine records planned leadership moves (`placement`).
/// Version 5: the lease table records fenced regions, a region's health its recovery run
/// (bincode is not self-describing, so a new struct field changes the encoding).
pub const DATA_FORMAT_VERSION: u32 = 5;
const FORMAT_VERSION_KEY: &[u8] = b"data_format_version";

/// How the stores are opened.
#[derive(Debug, Clone, Copy)]
pub struct StoreOptions {
    pub sync: SyncPolicy,
    pub wal_segment_bytes: u64,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            sync: SyncPolicy::Durable,
            wal_segment_bytes: wal::DEFAULT_SEGMENT_BYTES,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open data dir {path}: {source}")]
    Open {
        path: String,
        #[source]
        source: sled::Error,
    },
    #[error(
        "data dir {path} has data format version {found}, this build reads version {expected}"
    )]
    FormatVersionMismatch {
        path: String,
        found: u32,
        expected: u32,
    },
    #[error("data dir {path} has an unreadable format version key ({len} bytes)")]
    CorruptFormatVersion { path: String, len: usize },
    #[error("cannot read the stored snapshot {path}: {reason}")]
    CorruptSnapshot { path: String, reason: String },
    #[error("corrupt metadata {key} in {path}: {reason}")]
    CorruptMeta {
        path: String,
        key: String,
        reason: String,
    },
    #[error("storage I/O in {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Wal(#[from] wal::WalError),
}

/// The last storage failure this node hit and has not yet recovered from (e.g. a full disk),
/// for status reports; `None` when storage is healthy.
#[derive(Clone, Default)]
pub struct StorageHealth(Arc<RwLock<Option<String>>>);

impl StorageHealth {
    pub fn get(&self) -> Option<String> {
        // A poisoned lock only means a panic elsewhere while holding it; the value is a plain
        // string and still meaningful.
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set(&self, error: Option<String>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = error;
    }
}

/// sled, holding the Raft metadata, with a flush that actually reaches the disk.
#[derive(Clone)]
struct Meta {
    db: sled::Db,
    dir: PathBuf,
    sync: SyncPolicy,
}

impl Meta {
    /// sled's flush, then fsync of every file and directory under sled's dir (an fsync on any
    /// descriptor of an inode flushes it), including the blob files sled never syncs.
    fn durable_flush(&self) -> std::io::Result<()> {
        self.db.flush().map_err(std::io::Error::other)?;
        sync_tree(&self.dir, self.sync)
    }

    /// [`Meta::durable_flush`] off the async runtime.
    async fn durable_flush_async(&self) -> std::io::Result<()> {
        let meta = self.clone();
        tokio::task::spawn_blocking(move || meta.durable_flush())
            .await
            .map_err(std::io::Error::other)?
    }
}

fn sync_tree(dir: &Path, sync: SyncPolicy) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            sync_tree(&path, sync)?;
        } else {
            match std::fs::File::open(&path) {
                Ok(file) => sync.sync_all(&file)?,
                // sled removes old snapshot files as it goes; one gone is not one to sync.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
    }
    sync.sync_dir(dir)
}

/// Opens (creating if needed) the stores in `dir`, checking the data-format version.
pub fn open(
    dir: &Path,
    options: StoreOptions,
) -> Result<(LogStore, StateMachineStore), StoreError> {
    let path = dir.display().to_string();
    let io = |source| StoreError::Io {
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    let sled_dir = dir.join("sled");
    let db = sled::Config::new()
        .path(&sled_dir)
        .open()
        .map_err(|source| StoreError::Open {
            path: path.clone(),
            source,
        })?;
    let meta = Meta {
        db,
        dir: sled_dir,
        sync: options.sync,
    };
    check_format_version(&meta, &path)?;
    // The data dir itself: `sled/`, `wal/` and `snapshot.bin` must not vanish with it.
    options.sync.sync_dir(dir).map_err(io)?;
    let log_store = LogStore::open(meta, &dir.join("wal"), options)?;
    let sm_store = StateMachineStore::open(dir, options.sync)?;
    Ok((log_store, sm_store))
}

fn check_format_version(meta: &Meta, path: &str) -> Result<(), StoreError> {
    let sled_io = |source: sled::Error| StoreError::Io {
        path: path.to_string(),
        source: source.into(),
    };
    match meta.db.get(FORMAT_VERSION_KEY).map_err(sled_io)? {
        Some(raw) => {
            let bytes: [u8; 4] =
                raw.as_ref()
                    .try_into()
                    .map_err(|_| StoreError::CorruptFormatVersion {
                        path: path.to_string(),
                        len: raw.len(),
                    })?;
            let found = u32::from_be_bytes(bytes);
            if found != DATA_FORMAT_VERSION {
                return Err(StoreError::FormatVersionMismatch {
                    path: path.to_string(),
                    found,
                    expected: DATA_FORMAT_VERSION,
                });
            }
        }
        None => {
            meta.db
                .insert(FORMAT_VERSION_KEY, &DATA_FORMAT_VERSION.to_be_bytes())
                .map_err(sled_io)?;
            // A dir must never hold data without the version that explains it.
            meta.durable_flush().map_err(|source| StoreError::Io {
                path: path.to_string(),
                source,
            })?;
        }
    }
    Ok(())
}
