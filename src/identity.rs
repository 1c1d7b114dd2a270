//! Cluster identity: which cluster a data dir belongs to, and whether this node may take part
//! in Raft at all.
//!
//! Invariants:
//! - A cluster id is generated once, when a cluster is initialized (or restored from a
//!   backup), and is written to `identity.json` in every member's data dir — tmp file, fsync,
//!   rename, fsync of the directory — *before* the node acts on any Raft RPC. So a data dir
//!   that holds Raft state always holds an identity.
//! - A node without an identity answers no Raft RPC: an empty data dir cannot vote or
//!   acknowledge entries, so a wiped voter never votes with amnesia. It gets an identity only
//!   from a cluster that is adding it as a *learner* ([`crate::grpc::cluster_service`]
//!   `JoinCluster`, called by the leader's `AddLearner`) or from the initializer of a brand-new
//!   cluster.
//! - Every Raft RPC carries the sender's cluster id ([`CLUSTER_ID_HEADER`]); a node refuses
//!   one from another cluster, and the identity never changes once written.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use openraft::storage::{RaftLogStorage, RaftStateMachine};
use serde::{Deserialize, Serialize};

use crate::codec;
use crate::raft_types::NodeId;
use crate::store::{LogStore, StateMachineStore, SyncPolicy};

/// Name of the identity file inside a node's data dir.
pub const IDENTITY_FILE: &str = "identity.json";
/// Bumped when the identity file's layout changes incompatibly.
pub const IDENTITY_FORMAT_VERSION: u32 = 1;
/// gRPC metadata key that carries the sender's cluster id on every Raft RPC.
pub const CLUSTER_ID_HEADER: &str = "x-arbiter-cluster-id";

/// A cluster's identity: 128 random bits, written as 32 lowercase hex digits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ClusterId(String);

impl ClusterId {
    /// A fresh, random id for a cluster being created.
    pub fn generate() -> ClusterId {
        ClusterId(format!("{:032x}", rand::random::<u128>()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ClusterId {
    type Error = IdentityError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        if s.len() == 32
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            Ok(ClusterId(s))
        } else {
            Err(IdentityError::BadClusterId { value: s })
        }
    }
}

impl From<ClusterId> for String {
    fn from(id: ClusterId) -> String {
        id.0
    }
}

impl fmt::Display for ClusterId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("{value:?} is not a cluster id (32 lowercase hex digits)")]
    BadClusterId { value: String },
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("identity file {path} is corrupt: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error(
        "identity file {path} has format version {found}, this build reads version {expected}"
    )]
    FormatVersion {
        path: PathBuf,
        found: u32,
        expected: u32,
    },
    #[error(
        "data dir {path} belongs to node {found}, but this node is configured as node {configured}"
    )]
    WrongNode {
        path: PathBuf,
        found: NodeId,
        configured: NodeId,
    },
    #[error("this node belongs to cluster {ours}; it refuses to join cluster {theirs}")]
    OtherCluster { ours: ClusterId, theirs: ClusterId },
    #[error("cannot inspect the Raft state in {path}: {reason}")]
    RaftState { path: PathBuf, reason: String },
}

/// What `identity.json` holds. The checksum covers the other three fields, so a flipped byte
/// is refused instead of silently moving a node to another cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct IdentityRecord {
    format_version: u32,
    cluster_id: ClusterId,
    node_id: NodeId,
    /// FNV-1a (hex) of `"{format_version}:{cluster_id}:{node_id}"`.
    checksum: String,
}

fn checksum(format_version: u32, cluster_id: &ClusterId, node_id: NodeId) -> String {
    format!(
        "{:016x}",
        codec::fnv1a(format!("{format_version}:{cluster_id}:{node_id}").as_bytes())
    )
}

/// Reads the identity in `dir`, if any; refuses a corrupt file or one written for another node.
pub fn read(dir: &Path, node_id: NodeId) -> Result<Option<ClusterId>, IdentityError> {
    let path = dir.join(IDENTITY_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(IdentityError::Io {
                action: "read",
                path,
                source,
            })
        }
    };
    let corrupt = |reason: String| IdentityError::Corrupt {
        path: path.clone(),
        reason,
    };
    let record: IdentityRecord = serde_json::from_str(&text).map_err(|e| corrupt(e.to_string()))?;
    if record.format_version != IDENTITY_FORMAT_VERSION {
        return Err(IdentityError::FormatVersion {
            path,
            found: record.format_version,
            expected: IDENTITY_FORMAT_VERSION,
        });
    }
    let expected = checksum(record.format_version, &record.cluster_id, record.node_id);
    if record.checksum != expected {
        return Err(corrupt(format!(
            "checksum {} does not match its contents ({expected})",
            record.checksum
        )));
    }
    if record.node_id != node_id {
        return Err(IdentityError::WrongNode {
            path,
            found: record.node_id,
            configured: node_id,
        });
    }
    Ok(Some(record.cluster_id))
}

/// Writes the identity of `node_id` in `dir` durably (see [`SyncPolicy::replace_file`]).
pub fn write(dir: &Path, node_id: NodeId, cluster_id: &ClusterId) -> Result<(), IdentityError> {
    let record = IdentityRecord {
        format_version: IDENTITY_FORMAT_VERSION,
        cluster_id: cluster_id.clone(),
        node_id,
        checksum: checksum(IDENTITY_FORMAT_VERSION, cluster_id, node_id),
    };
    let path = dir.join(IDENTITY_FILE);
    let text = serde_json::to_string_pretty(&record).map_err(|e| IdentityError::Corrupt {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    SyncPolicy::Durable
        .replace_file(&path, text.as_bytes())
        .map_err(|(action, source)| IdentityError::Io {
            action,
            path,
            source,
        })
}

/// Whether the stores in a data dir hold any Raft state: a vote, a log entry (or a purge
/// marker), or an applied state / snapshot.
pub async fn has_raft_state(
    dir: &Path,
    log_store: &LogStore,
    sm_store: &StateMachineStore,
) -> Result<bool, IdentityError> {
    let err = |e: crate::raft_types::StorageError| IdentityError::RaftState {
        path: dir.to_path_buf(),
        reason: e.to_string(),
    };
    let (mut log_store, mut sm_store) = (log_store.clone(), sm_store.clone());
    let vote = log_store.read_vote().await.map_err(err)?;
    let log = log_store.get_log_state().await.map_err(err)?;
    let (applied, _) = sm_store.applied_state().await.map_err(err)?;
    Ok(vote.is_some() || log.last_log_id.is_some() || applied.is_some())
}

/// This node's identity, shared by the Raft transport (both sides) and the cluster service.
/// Set at most once: from `None` to a cluster id, persisted before it is visible.
#[derive(Clone)]
pub struct Identity {
    dir: PathBuf,
    node_id: NodeId,
    // A std lock: held only to read or swap an `Option`, never across an await or the fsync.
    current: Arc<RwLock<Option<ClusterId>>>,
    // Serializes adopters, so two concurrent `adopt` calls cannot both write the file.
    adopting: Arc<tokio::sync::Mutex<()>>,
}

impl Identity {
    pub fn new(dir: &Path, node_id: NodeId, current: Option<ClusterId>) -> Identity {
        Identity {
            dir: dir.to_path_buf(),
            node_id,
            current: Arc::new(RwLock::new(current)),
            adopting: Arc::default(),
        }
    }

    pub fn cluster_id(&self) -> Option<ClusterId> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Makes `cluster_id` this node's identity, durably, unless it already has one. Adopting
    /// the id it already has is a no-op; another id is refused.
    pub async fn adopt(&self, cluster_id: &ClusterId) -> Result<(), IdentityError> {
        let _one_at_a_time = self.adopting.lock().await;
        match self.cluster_id() {
            Some(ours) if &ours == cluster_id => Ok(()),
            Some(ours) => Err(IdentityError::OtherCluster {
                ours,
                theirs: cluster_id.clone(),
            }),
            None => self.persist(cluster_id).await,
        }
    }

    /// This node's cluster id, generating (and persisting) a new one if it has none: what the
    /// initializer of a new cluster does.
    pub async fn get_or_create(&self) -> Result<ClusterId, IdentityError> {
        let _one_at_a_time = self.adopting.lock().await;
        if let Some(ours) = self.cluster_id() {
            return Ok(ours);
        }
        let id = ClusterId::generate();
        self.persist(&id).await?;
        Ok(id)
    }

    /// Writes the identity file, then makes the id visible: nothing acts on an identity that
    /// is not yet on stable storage. Callers hold `adopting`.
    async fn persist(&self, cluster_id: &ClusterId) -> Result<(), IdentityError> {
        let (dir, node_id, id) = (self.dir.clone(), self.node_id, cluster_id.clone());
        // The fsyncs block; keep them off the async runtime.
        tokio::task::spawn_blocking(move || write(&dir, node_id, &id))
            .await
            .map_err(|e| IdentityError::Io {
                action: "write",
                path: self.dir.join(IDENTITY_FILE),
                source: std::io::Error::other(e),
            })??;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Some(cluster_id.clone());
        tracing::info!(cluster_id = %cluster_id, "this node now belongs to the cluster");
        Ok(())
    }

    /// Checks the cluster id a peer's Raft RPC carries against ours.
    pub fn check_peer(&self, theirs: Option<&str>) -> Result<(), PeerRefusal> {
        let ours = self.cluster_id().ok_or(PeerRefusal::NoIdentity {
            node_id: self.node_id,
        })?;
        match theirs {
            Some(theirs) if theirs == ours.as_str() => Ok(()),
            Some(theirs) => Err(PeerRefusal::OtherCluster {
                node_id: self.node_id,
                ours,
                theirs: theirs.to_string(),
            }),
            None => Err(PeerRefusal::NoClusterId {
                node_id: self.node_id,
                ours,
            }),
        }
    }
}

/// Why a node refused a peer's Raft RPC.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerRefusal {
    #[error(
        "node {node_id} has no cluster identity (empty data dir) and takes no part in Raft \
         until it is added as a learner (`arbiter member add`) or rejoins (`arbiter serve --rejoin`)"
    )]
    NoIdentity { node_id: NodeId },
    #[error("node {node_id} belongs to cluster {ours}; the request comes from cluster {theirs}")]
    OtherCluster {
        node_id: NodeId,
        ours: ClusterId,
        theirs: String,
    },
    #[error("node {node_id} belongs to cluster {ours}; the request carries no cluster id")]
    NoClusterId { node_id: NodeId, ours: ClusterId },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_identity_round_trips_and_a_flipped_byte_is_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        assert_eq!(
            read(dir.path(), 1).expect("read"),
            None,
            "no file: no identity"
        );
        let id = ClusterId::generate();
        write(dir.path(), 1, &id).expect("write");
        assert_eq!(read(dir.path(), 1).expect("read"), Some(id.clone()));
        assert!(matches!(
            read(dir.path(), 2),
            Err(IdentityError::WrongNode {
                found: 1,
                configured: 2,
                ..
            })
        ));

        let path = dir.path().join(IDENTITY_FILE);
        let text = std::fs::read_to_string(&path).expect("read file");
        // Change one hex digit of the cluster id, keeping the file valid JSON.
        let digit = id.as_str().as_bytes()[0];
        let flipped = if digit == b'0' { "1" } else { "0" };
        let tampered = text.replacen(id.as_str(), &format!("{flipped}{}", &id.as_str()[1..]), 1);
        std::fs::write(&path, tampered).expect("tamper");
        assert!(matches!(
            read(dir.path(), 1),
            Err(IdentityError::Corrupt { .. })
        ));
    }

    #[test]
    fn a_peer_from_another_cluster_or_without_an_id_is_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let empty = Identity::new(dir.path(), 3, None);
        assert_eq!(
            empty.check_peer(Some(ClusterId::generate().as_str())),
            Err(PeerRefusal::NoIdentity { node_id: 3 })
        );
        let ours = ClusterId::generate();
        let member = Identity::new(dir.path(), 3, Some(ours.clone()));
        assert_eq!(member.check_peer(Some(ours.as_str())), Ok(()));
        assert!(matches!(
            member.check_peer(Some(ClusterId::generate().as_str())),
            Err(PeerRefusal::OtherCluster { .. })
        ));
        assert!(matches!(
            member.check_peer(None),
            Err(PeerRefusal::NoClusterId { .. })
        ));
    }

    #[tokio::test]
    async fn adopting_is_durable_idempotent_and_never_switches_clusters() {
        let dir = tempfile::tempdir().expect("temp dir");
        let identity = Identity::new(dir.path(), 1, None);
        let id = ClusterId::generate();
        identity.adopt(&id).await.expect("adopt");
        identity
            .adopt(&id)
            .await
            .expect("adopting the same id again");
        assert_eq!(identity.get_or_create().await.expect("existing id"), id);
        assert_eq!(read(dir.path(), 1).expect("read"), Some(id.clone()));
        let other = ClusterId::generate();
        assert!(matches!(
            identity.adopt(&other).await,
            Err(IdentityError::OtherCluster { .. })
        ));
        assert_eq!(identity.cluster_id(), Some(id));
    }
}
