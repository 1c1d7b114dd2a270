//! Backups: the file `arbiter snapshot save` writes, and building the data dirs of a *new*
//! cluster from it (`arbiter snapshot restore`), as etcd's `snapshot save|restore` do.
//!
//! File layout: the magic line `ARBITER-BACKUP\n`, one line of JSON [`BackupHeader`], the
//! encoded applied state (state machine, last applied log id, membership), and an 8-byte
//! big-endian FNV-1a of everything before it. FNV-1a detects every single-byte change (each
//! step is a bijection of the running hash), the header's `data_len` detects truncation, and
//! the decoded state must reproduce the header's state digest.
//!
//! Invariants:
//! - A backup is the leader's applied state after a read-index round, so it holds every write
//!   acknowledged before the save began.
//! - A restored cluster gets a new cluster id (it must never exchange Raft messages with the
//!   cluster the backup came from), starts its log right after the backup's last applied index
//!   (so every fencing token minted after the restore is above every token in the backup) and
//!   its terms above the backup's last one, and has the members named at restore time as its
//!   voters.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Cursor;
use std::path::{Path, PathBuf};

use openraft::storage::{RaftLogStorage, RaftStateMachine};
use openraft::Membership;
use serde::{Deserialize, Serialize};

use crate::codec;
use crate::identity::{self, ClusterId, IdentityError};
use crate::raft_types::{Member, NodeId, SnapshotMeta, StoredMembership, Vote};
use crate::store::{self, AppliedState, StoreError, StoreOptions, SyncPolicy};

const MAGIC: &[u8] = b"ARBITER-BACKUP\n";
/// Bumped when the backup layout changes incompatibly. Version 2: the state's membership
/// records each member's peer address (data format 3). Version 3: the state records planned
/// leadership moves (data format 4). Version 4: fenced regions and recovery runs (data
/// format 5).
pub const BACKUP_FORMAT_VERSION: u32 = 4;

/// What a backup says about itself, readable without decoding the state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupHeader {
    pub format_version: u32,
    /// The cluster the backup was taken from (a restored cluster gets a new one).
    pub source_cluster_id: String,
    pub last_applied_index: u64,
    pub last_applied_term: u64,
    /// `NodeStatus.state_digest` of the saved state.
    pub state_digest: u64,
    pub data_len: u64,
}

#[derive(Debug, Clone)]
pub struct Backup {
    pub header: BackupHeader,
    /// The encoded [`AppliedState`].
    data: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{path} is not an arbiter backup (no `ARBITER-BACKUP` header)")]
    NotABackup { path: PathBuf },
    #[error("{path} is truncated or corrupt: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("{path} has backup format version {found}, this build reads version {expected}")]
    FormatVersion {
        path: PathBuf,
        found: u32,
        expected: u32,
    },
    #[error("the backup holds no applied state (saved from a cluster that never committed)")]
    Empty,
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} exists and is not empty; restore builds the data dirs of a new cluster")]
    DirNotEmpty { path: PathBuf },
    #[error("restore needs at least one member")]
    NoMembers,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error("cannot write the restored state into {path}: {reason}")]
    Install { path: PathBuf, reason: String },
}

impl Backup {
    /// A backup of `data` (an encoded applied state) as the leader described it.
    pub fn new(header: BackupHeader, data: Vec<u8>) -> Backup {
        Backup { header, data }
    }

    /// The file's bytes: magic, header line, data, checksum.
    pub fn to_bytes(&self) -> Vec<u8> {
        let header = serde_json::to_string(&self.header)
            .unwrap_or_else(|_| unreachable!("a struct of integers and strings always encodes"));
        let mut bytes = Vec::with_capacity(MAGIC.len() + header.len() + self.data.len() + 9);
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(header.as_bytes());
        bytes.push(b'\n');
        bytes.extend_from_slice(&self.data);
        let checksum = codec::fnv1a(&bytes);
        bytes.extend_from_slice(&checksum.to_be_bytes());
        bytes
    }

    /// Parses and verifies a backup file's bytes (`path` only names it in errors).
    pub fn from_bytes(path: &Path, bytes: &[u8]) -> Result<Backup, BackupError> {
        let corrupt = |reason: String| BackupError::Corrupt {
            path: path.to_path_buf(),
            reason,
        };
        let Some(rest) = bytes.strip_prefix(MAGIC) else {
            return Err(BackupError::NotABackup {
                path: path.to_path_buf(),
            });
        };
        let Some((body, trailer)) = bytes.split_last_chunk::<8>() else {
            return Err(corrupt("shorter than its checksum".into()));
        };
        let (expected, found) = (u64::from_be_bytes(*trailer), codec::fnv1a(body));
        if expected != found {
            return Err(corrupt(format!(
                "checksum {found:016x} does not match the recorded {expected:016x}"
            )));
        }
        let rest = &rest[..rest.len() - 8];
        let newline = rest
            .iter()
            .position(|b| *b == b'\n')
            .ok_or_else(|| corrupt("no end of header".into()))?;
        let header: BackupHeader = serde_json::from_slice(&rest[..newline])
            .map_err(|e| corrupt(format!("header: {e}")))?;
        if header.format_version != BACKUP_FORMAT_VERSION {
            return Err(BackupError::FormatVersion {
                path: path.to_path_buf(),
                found: header.format_version,
                expected: BACKUP_FORMAT_VERSION,
            });
        }
        let data = rest[newline + 1..].to_vec();
        if data.len() as u64 != header.data_len {
            return Err(corrupt(format!(
                "{} bytes of state, header says {}",
                data.len(),
                header.data_len
            )));
        }
        let backup = Backup { header, data };
        let state = backup.state(path)?;
        if state.digest() != backup.header.state_digest {
            return Err(corrupt(format!(
                "state digest {} does not match the recorded {}",
                state.digest(),
                backup.header.state_digest
            )));
        }
        Ok(backup)
    }

    /// Writes the backup to `path` durably (tmp, fsync, rename, fsync the directory).
    pub fn save(&self, path: &Path) -> Result<(), BackupError> {
        SyncPolicy::Durable
            .replace_file(path, &self.to_bytes())
            .map_err(|(action, source)| BackupError::Io {
                action,
                path: path.to_path_buf(),
                source,
            })
    }

    pub fn load(path: &Path) -> Result<Backup, BackupError> {
        let bytes = std::fs::read(path).map_err(|source| BackupError::Io {
            action: "read",
            path: path.to_path_buf(),
            source,
        })?;
        Backup::from_bytes(path, &bytes)
    }

    fn state(&self, path: &Path) -> Result<AppliedState, BackupError> {
        codec::decode("backup state", &self.data).map_err(|e| BackupError::Corrupt {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })
    }
}

/// The data dir of member `id` under a restore's output dir (the layout `arbiter up` uses).
pub fn member_dir(out: &Path, id: NodeId) -> PathBuf {
    out.join(format!("node-{id}"))
}

/// Builds `out/node-<id>` for each of `members` — a new cluster, with a new cluster id, whose
/// voters are `members` and whose state is the backup's. Returns the new cluster id.
pub async fn restore(
    backup: &Backup,
    source: &Path,
    out: &Path,
    members: &BTreeMap<NodeId, Member>,
) -> Result<ClusterId, BackupError> {
    if members.is_empty() {
        return Err(BackupError::NoMembers);
    }
    let mut state = backup.state(source)?;
    let last_applied = state.last_applied.ok_or(BackupError::Empty)?;
    let voters: BTreeSet<NodeId> = members.keys().copied().collect();
    state.last_membership = StoredMembership::new(
        Some(last_applied),
        Membership::new(vec![voters], members.clone()),
    );
    let cluster_id = ClusterId::generate();
    let data = codec::encode("restored state", &state).map_err(|e| BackupError::Install {
        path: out.to_path_buf(),
        reason: e.to_string(),
    })?;
    let meta = SnapshotMeta {
        last_log_id: Some(last_applied),
        last_membership: state.last_membership.clone(),
        snapshot_id: format!("restore-{cluster_id}"),
    };
    for id in members.keys() {
        let dir = member_dir(out, *id);
        let io = |action, source| BackupError::Io {
            action,
            path: dir.clone(),
            source,
        };
        if std::fs::read_dir(&dir).is_ok_and(|mut entries| entries.next().is_some()) {
            return Err(BackupError::DirNotEmpty { path: dir });
        }
        std::fs::create_dir_all(&dir).map_err(|e| io("create", e))?;
        // Identity first: a dir that holds Raft state always says which cluster it is in.
        identity::write(&dir, *id, &cluster_id)?;
        let (mut log_store, mut sm_store) = store::open(&dir, StoreOptions::default())?;
        let install = |e: crate::raft_types::StorageError| BackupError::Install {
            path: dir.clone(),
            reason: e.to_string(),
        };
        sm_store
            .install_snapshot(&meta, Box::new(Cursor::new(data.clone())))
            .await
            .map_err(install)?;
        // The log starts right after the snapshot: the first entry a restored leader appends
        // (its blank entry) is at last_applied + 1, so new tokens exceed the backup's.
        log_store.purge(last_applied).await.map_err(install)?;
        // And its term must not go below the backup's last entry: log ids order by term
        // first, so a leader of a lower term would append entries that compare *older* than
        // the snapshot and break the election's up-to-date check. A vote for itself at the
        // backup's term makes the first election use a higher one.
        log_store
            .save_vote(&Vote::new(last_applied.leader_id.term, *id))
            .await
            .map_err(install)?;
    }
    Ok(cluster_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Backup {
        let state = AppliedState::default();
        let data = codec::encode("state", &state).expect("encode");
        Backup::new(
            BackupHeader {
                format_version: BACKUP_FORMAT_VERSION,
                source_cluster_id: ClusterId::generate().to_string(),
                last_applied_index: 0,
                last_applied_term: 0,
                state_digest: state.digest(),
                data_len: data.len() as u64,
            },
            data,
        )
    }

    #[test]
    fn a_backup_round_trips() {
        let backup = sample();
        let parsed = Backup::from_bytes(Path::new("b"), &backup.to_bytes()).expect("parse");
        assert_eq!(parsed.header, backup.header);
    }

    #[test]
    fn every_flipped_byte_and_every_truncation_is_refused() {
        let bytes = sample().to_bytes();
        for i in 0..bytes.len() {
            let mut flipped = bytes.clone();
            flipped[i] ^= 0x01;
            assert!(
                Backup::from_bytes(Path::new("b"), &flipped).is_err(),
                "flipped byte {i} was accepted"
            );
            assert!(
                Backup::from_bytes(Path::new("b"), &bytes[..i]).is_err(),
                "truncation to {i} bytes was accepted"
            );
        }
    }
}
