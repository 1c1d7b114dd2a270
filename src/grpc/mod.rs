//! gRPC edge: one port per node serves the Raft transport and the public services.
//!
//! - [`raft_service`]: node-to-node AppendEntries / Vote / InstallSnapshot.
//! - [`cluster_service`]: bootstrap, membership, status.
//! - [`lease_service`]: leases and fencing tokens.
//! - [`replication_service`]: the seed's `ReplicationCoordinator` (checkpoints, sync metrics).
//! - [`routing_service`]: the routing table for edge routers (watch, get tenant).
//! - [`convert`]: request validation and proto ↔ core conversions.
//! - [`status`]: the one place where internal errors become `tonic::Status`.

pub mod cluster_service;
pub mod convert;
pub mod lease_service;
pub mod raft_service;
pub mod replication_service;
pub mod routing_service;
pub mod status;

/// Generated code for the internal Raft transport (never edited).
pub mod raft_proto {
    tonic::include_proto!("arbiter.raft.v1");
}
