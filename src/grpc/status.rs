//! The one conversion from internal errors to `tonic::Status`.
//!
//! Invariant: a client can always tell what to do from the status alone — `UNAVAILABLE` with
//! the leader in metadata (`x-arbiter-leader-id`, `x-arbiter-leader-addr`) and in the encoded
//! `NotLeader` details means "retry there"; `UNAVAILABLE` without a leader means "not applied,
//! retry later" (shutting down, or the write queue stayed full); `DEADLINE_EXCEEDED` means the
//! outcome is unknown; bad input is `INVALID_ARGUMENT`. Internals are logged, not leaked.

use arbiter_client::proto::NotLeader;
use arbiter_client::{LEADER_ADDR_HEADER, LEADER_ID_HEADER};
use prost::Message;
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::{Code, Status};

use crate::auth::AuthError;
use crate::identity::IdentityError;
use crate::proposer::WriteError;

impl From<IdentityError> for Status {
    fn from(e: IdentityError) -> Status {
        match &e {
            IdentityError::OtherCluster { .. } | IdentityError::WrongNode { .. } => {
                Status::failed_precondition(e.to_string())
            }
            IdentityError::BadClusterId { .. } => Status::invalid_argument(e.to_string()),
            IdentityError::Io { .. }
            | IdentityError::Corrupt { .. }
            | IdentityError::FormatVersion { .. }
            | IdentityError::RaftState { .. } => {
                tracing::error!(error = %e, "cluster identity");
                Status::internal("cannot persist the cluster identity; see the node log")
            }
        }
    }
}

/// Refused by the auth layer or a handler's `authorize` (already logged and counted there).
impl From<AuthError> for Status {
    fn from(e: AuthError) -> Status {
        match &e {
            AuthError::Unauthenticated(_) => Status::unauthenticated(e.to_string()),
            AuthError::Forbidden { .. } | AuthError::WrongPort(_) => {
                Status::permission_denied(e.to_string())
            }
        }
    }
}

impl From<WriteError> for Status {
    fn from(e: WriteError) -> Status {
        match &e {
            WriteError::NotLeader {
                leader_id,
                leader_addr,
            } => not_leader(*leader_id, leader_addr.as_deref()),
            WriteError::Timeout { .. } => Status::deadline_exceeded(e.to_string()),
            WriteError::ShuttingDown | WriteError::Overloaded { .. } => {
                Status::unavailable(e.to_string())
            }
            WriteError::Raft(detail) => {
                tracing::error!(%detail, "raft write failed");
                Status::internal("raft write failed; see the node log")
            }
        }
    }
}

/// `UNAVAILABLE` carrying where the leader is, as metadata and as encoded details.
pub fn not_leader(leader_id: Option<u64>, leader_addr: Option<&str>) -> Status {
    let mut metadata = MetadataMap::new();
    if let Some(id) = leader_id {
        metadata.insert(LEADER_ID_HEADER, MetadataValue::from(id));
    }
    if let Some(addr) = leader_addr.and_then(|a| MetadataValue::try_from(a).ok()) {
        metadata.insert(LEADER_ADDR_HEADER, addr);
    }
    let details = NotLeader {
        leader_id,
        leader_grpc_addr: leader_addr.unwrap_or_default().to_string(),
    }
    .encode_to_vec();
    Status::with_details_and_metadata(
        Code::Unavailable,
        format!(
            "not the leader; leader is {}",
            leader_addr.unwrap_or("unknown (election in progress)")
        ),
        details.into(),
        metadata,
    )
}
