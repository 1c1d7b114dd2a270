//! # arbiter-client — the thin SDK for regional database proxies
//!
//! ```text
//!  proxy ──acquire/keep-alive──▶ ArbiterClient ──gRPC, leader-following──▶ arbiter leader
//!    │                               ▲
//!    │ is_valid() / lost()      LeaseKeeper (renews at TTL/3; deadline timer)
//!    ▼
//!  FencedResource ◀── write(token) ── rejects tokens below the highest seen / observed epoch
//! ```
//!
//! - [`proto`]: generated gRPC types and clients for arbiter's services, and the seed's
//!   `ReplicationCoordinator` under [`proto::replication`].
//! - [`client`]: [`ArbiterClient`] — one cached channel per node, follows the leader, retries
//!   only what is safe to retry, with backoff and a deadline; [`ClientOptions`].
//!   `keep_alive_streamed` renews over one `KeepAliveStream` per client (and its clones),
//!   many leases at once, falling back to the unary call whenever the stream cannot answer.
//! - [`credentials`]: [`ClientTls`] (CA, client certificate) and [`BearerToken`], attached to
//!   every channel the SDK makes ([`channel`] for services the client does not wrap).
//! - [`error`]: [`ClientError`], with `is_retryable()` and the leader hint.
//! - [`lease`]: lease values ([`LeaseSpec`], [`Grant`], [`Refusal`], ...).
//! - [`lease_keeper`]: [`LeaseKeeper`] — holds a lease and knows, on its own monotonic clock,
//!   until when it is valid, even with every arbiter node unreachable.
//! - [`fenced_resource`]: [`FencedResource`] — the resource-side guard against stale tokens.
//! - [`pg_fence`] (feature `postgres`): the same guard inside PostgreSQL — `arbiter_fence.check`
//!   and a helper that runs a closure in a transaction fenced by a [`LeaseKeeper`]'s token.
//! - [`hlc`], [`crdt`]: conflict-resolution building blocks, re-exported from the pure core.

// A mutant feature removes a lease-safety rule (see `scripts/mutants.sh`); it exists to prove a
// test fails without the rule and must never reach a release build.
#[cfg(all(
    not(debug_assertions),
    any(
        feature = "mutant-deadline-from-reply",
        feature = "mutant-no-drift-margin",
        feature = "mutant-renew-on-error",
        feature = "mutant-check-then-write"
    )
))]
compile_error!("mutant features remove a safety rule: debug test builds only");

/// Generated protobuf code (never edited).
pub mod proto {
    tonic::include_proto!("arbiter.v1");

    /// The seed's replication contract, `codesprintpro.dr.replication.v1`, kept verbatim.
    pub mod replication {
        tonic::include_proto!("codesprintpro.dr.replication.v1");
    }

    /// Encoded `FileDescriptorSet` of every public service, for gRPC server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("arbiter_descriptors");
}

/// Metadata keys a non-leader sets on its `UNAVAILABLE` reply to say where the leader is.
pub const LEADER_ID_HEADER: &str = "x-arbiter-leader-id";
pub const LEADER_ADDR_HEADER: &str = "x-arbiter-leader-addr";

pub use arbiter_core::{crdt, hlc, types};

mod backoff;
pub mod client;
pub mod credentials;
mod endpoints;
pub mod error;
pub mod fenced_resource;
mod keep_alive_stream;
pub mod lease;
pub mod lease_keeper;
#[cfg(test)]
mod mock_arbiter;
#[cfg(feature = "postgres")]
pub mod pg_fence;
pub mod routing_watch;

pub use client::{ArbiterClient, ClientOptions, EndpointStatus};
pub use credentials::{channel, AuthChannel, BearerToken, ClientTls};
pub use error::ClientError;
pub use fenced_resource::{FencedResource, StaleToken};
pub use lease::{
    BreakGlass, Grant, LeaseHolder, LeaseInfo, LeaseSpec, LeaseState, Refusal, Renewal, Revocation,
    TokenCheck,
};
pub use lease_keeper::{default_drift_margin, KeeperOptions, LeaseKeeper, LossCause, Validity};
pub use routing_watch::RoutingWatch;
pub use types::{FencingToken, HolderId, RegionId, ResourceId};
