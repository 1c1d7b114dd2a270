//! # arbiter-client — the thin SDK for regional database proxies
//!
//! - [`proto`]: generated gRPC types and clients for arbiter's services, and the seed's
//!   `ReplicationCoordinator` under [`proto::replication`].
//! - [`hlc`], [`crdt`]: conflict-resolution building blocks, re-exported from the pure core.

/// Generated protobuf code (never edited).
pub mod proto {
    tonic::include_proto!("arbiter.v1");

    /// The seed's replication contract, `codesprintpro.dr.replication.v1`, kept verbatim.
    pub mod replication {
        tonic::include_proto!("codesprintpro.dr.replication.v1");
    }
}

/// Metadata keys a non-leader sets on its `UNAVAILABLE` reply to say where the leader is.
pub const LEADER_ID_HEADER: &str = "x-arbiter-leader-id";
pub const LEADER_ADDR_HEADER: &str = "x-arbiter-leader-addr";

pub use arbiter_core::{crdt, hlc, types};
