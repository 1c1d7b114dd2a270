//! Durable storage on sled: the Raft log store and the state-machine store share one sled
//! database, so one fsync covers both.
//!
//! Invariant: a data-format version key is written when a data dir is first opened and checked
//! on every open; a dir written by an incompatible version is refused with a clear error instead
//! of being misread.

mod log_store;
mod state_machine_store;

use std::path::Path;

pub use log_store::LogStore;
pub use state_machine_store::{AppliedState, StateMachineStore};

/// Bumped whenever the encoding of anything stored changes incompatibly.
pub const DATA_FORMAT_VERSION: u32 = 1;
const FORMAT_VERSION_KEY: &[u8] = b"data_format_version";

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
    #[error("cannot read the stored snapshot in {path}: {reason}")]
    CorruptSnapshot { path: String, reason: String },
    #[error("storage I/O in {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: sled::Error,
    },
}

/// Opens (creating if needed) the stores in `dir`, checking the data-format version.
pub fn open(dir: &Path) -> Result<(LogStore, StateMachineStore), StoreError> {
    let path = dir.display().to_string();
    let db = sled::Config::new()
        .path(dir.join("sled"))
        .open()
        .map_err(|source| StoreError::Open {
            path: path.clone(),
            source,
        })?;
    check_format_version(&db, &path)?;
    let log_store = LogStore::open(db.clone(), &path)?;
    let sm_store = StateMachineStore::open(db, &path)?;
    Ok((log_store, sm_store))
}

fn check_format_version(db: &sled::Db, path: &str) -> Result<(), StoreError> {
    let io = |source| StoreError::Io {
        path: path.to_string(),
        source,
    };
    match db.get(FORMAT_VERSION_KEY).map_err(io)? {
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
            db.insert(FORMAT_VERSION_KEY, &DATA_FORMAT_VERSION.to_be_bytes())
                .map_err(io)?;
            // Fsync now: a dir must never hold data without the version that explains it.
            db.flush().map_err(io)?;
        }
    }
    Ok(())
}

/// Runs a blocking sled flush (fsync) off the async runtime.
async fn flush(db: &sled::Db) -> Result<(), std::io::Error> {
    let db = db.clone();
    tokio::task::spawn_blocking(move || db.flush().map(|_| ()))
        .await
        .map_err(std::io::Error::other)?
        .map_err(std::io::Error::other)
}
