//! openraft type configuration: what a log entry carries, what apply returns, and what a
//! cluster member advertises.

use std::fmt;
use std::io::Cursor;

use arbiter_core::command::{Batch, Outcome};
use serde::{Deserialize, Serialize};

pub use arbiter_core::NodeId;

/// A member as stored in the Raft membership: the addresses it *advertises*, which may be a
/// proxy's rather than the ones it listens on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub region: String,
    pub grpc_addr: String,
    pub http_addr: String,
    /// Where peers send Raft RPCs (the peer port, mutual TLS).
    pub peer_addr: String,
}

impl Member {
    /// Where peers reach this member's Raft and cluster RPCs: its peer port, or its gRPC
    /// address when it was added without one.
    pub fn peer_dial_addr(&self) -> &str {
        if self.peer_addr.is_empty() {
            &self.grpc_addr
        } else {
            &self.peer_addr
        }
    }
}

impl fmt::Display for Member {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.region, self.grpc_addr)
    }
}

openraft::declare_raft_types!(
    pub TypeConfig:
        D = Batch,
        R = Vec<Outcome>,
        NodeId = NodeId,
        Node = Member,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

pub type Raft = openraft::Raft<TypeConfig>;
pub type LogId = openraft::LogId<NodeId>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type Vote = openraft::Vote<NodeId>;
pub type StorageError = openraft::StorageError<NodeId>;
pub type StoredMembership = openraft::StoredMembership<NodeId, Member>;
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, Member>;
pub type Snapshot = openraft::Snapshot<TypeConfig>;
