//! # arbiter — quorum arbiter and DR controller
//!
//! A three-node Raft group (one node per region) hands out fencing tokens and write leases and
//! keeps the failover log and routing table. This crate is the I/O shell around the pure
//! `arbiter-core`:
//!
//! ```text
//!  clients ──gRPC/HTTP──▶ grpc::* / http ──commands──▶ proposer ──Batch──▶ openraft
//!                                                                       │ append (fsync)
//!                                       store::LogStore ◀───────────────┤
//!                                       store::StateMachineStore ◀──────┘ apply → Outcome
//!  peers ◀──network (tonic, peer port, mTLS)── openraft ──▶ grpc::raft_service (peer port)
//! ```
//!
//! - [`api_client`]: the leader-following client of the HTTP API (CLI, probe agent, jepsen).
//! - [`auth`]: identities (bearer tokens, client certificates), roles, the one permission
//!   table and the layers that enforce it in front of both edges.
//! - [`config`]: file/flag config validated into `NodeConfig`; `lan` and `wan` timing.
//! - [`db_agent`]: `arbiter db-agent`, one per region next to its PostgreSQL: promotes and
//!   opens it on the region's lease grant, turns it read-only on the lease's loss, reports WAL
//!   progress to `ReplicationCoordinator`, obeys controller actions not older than the last.
//! - [`dr`]: the DR controller (probe consensus → failover workflow), drivers, probe agent.
//! - [`gateway`]: a stand-in regional gateway serving the seed's health check, for drills.
//! - [`http_client`]: minimal HTTP/1.1 client (probes, webhooks, CLI).
//! - [`metrics`]: Prometheus `/metrics` of a node: its components' instruments and gauges read
//!   from Raft and the replicated state at scrape time.
//! - [`node`]: starts storage, Raft, servers; the one shutdown path; refuses an empty data dir.
//! - [`identity`]: the cluster id in every data dir (`identity.json`), checked on every Raft RPC.
//! - [`backup`]: the `arbiter snapshot save|restore` file format (checksummed) and restore.
//! - [`leases`]: the leader's lease timers, expiry proposals, batched keep-alives.
//! - [`placement`]: leader placement — leadership moves calmly to the preferred region (the
//!   one outside production by default); `POST /v1/cluster/leader` moves it on request.
//! - [`request_span`]: one tracing span per request (HTTP and gRPC) with a request id returned
//!   in `x-request-id`.
//! - [`proposer`]: group commit of client commands into log entries, with a write deadline.
//! - [`store`]: the Raft log in a checksummed WAL (fdatasync before ack), metadata in sled
//!   (durable flush), snapshots in a checksummed file; one `SyncPolicy` for every fsync.
//! - [`pg_cluster`]: local PostgreSQL primaries and streaming standbys on unix sockets (run as
//!   the `postgres` user when root), with promotion and SIGKILL/SIGSTOP, for tests and drills.
//! - [`network`]: Raft RPCs to peers over cached tonic channels.
//! - [`grpc`], [`http`]: the edges; errors become statuses in one place each. The HTTP routes
//!   and their OpenAPI document (`GET /v1/openapi.json`) come from one list.
//! - [`codec`]: the only user of bincode; the CRC envelope for what is read back from disk.
//! - [`raft_types`]: openraft type configuration.
//! - [`tls`]: rustls configurations of the three ports (peer mTLS), reloaded on SIGHUP.
//! - [`certs`]: the cluster CA, node and client certificates (rcgen).
//! - [`local_cluster`]: starting `arbiter serve` children (used by `up`, tests, jepsen).
//! - [`socket_handoff`]: listening sockets a supervisor binds once and hands to each child.
//! - [`cli`]: the `arbiter` command line (serve, up, certs, auth, status, member, snapshot, lease,
//!   DR commands).

// A mutant feature removes a lease-safety rule (see `scripts/mutants.sh`); it exists to prove a
// test fails without the rule and must never reach a release build.
#[cfg(all(
    not(debug_assertions),
    any(
        feature = "mutant-no-quorum-keepalive",
        feature = "mutant-break-glass-no-estimate",
        feature = "mutant-wall-clock-expiry",
        feature = "mutant-reelected-keeps-timers",
        feature = "mutant-agent-stays-writable"
    )
))]
compile_error!("mutant features remove a safety rule: debug test builds only");

pub mod api_client;
pub mod auth;
pub mod backup;
pub mod certs;
pub mod cli;
pub mod codec;
pub mod config;
pub mod db_agent;
pub mod dr;
pub mod edge;
pub mod gateway;
pub mod grpc;
pub mod http;
pub mod http_client;
pub mod identity;
pub mod leases;
pub mod local_cluster;
pub mod metrics;
pub mod network;
pub mod node;
pub mod pg_cluster;
pub mod placement;
pub mod proposer;
pub mod raft_types;
pub mod request_span;
pub mod socket_handoff;
pub mod store;
pub mod tls;
