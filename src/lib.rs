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
//!  peers ◀──network (tonic)── openraft ──▶ grpc::raft_service (server side)
//! ```
//!
//! - [`auth`]: identities (bearer tokens, client certificates), roles, the one permission
//!   table and the layers that enforce it in front of both edges.
//! - [`config`]: file/flag config validated into `NodeConfig`; `lan` and `wan` timing.
//! - [`dr`]: the DR controller (probe consensus → failover workflow), drivers, probe agent.
//! - [`gateway`]: a stand-in regional gateway serving the seed's health check, for drills.
//! - [`http_client`]: minimal HTTP/1.1 client (probes, webhooks, CLI).
//! - [`node`]: starts storage, Raft, servers; the one shutdown path.
//! - [`leases`]: the leader's lease timers, expiry proposals, batched keep-alives.
//! - [`proposer`]: group commit of client commands into log entries, with a write deadline.
//! - [`store`]: sled log store (fsync before ack) and state-machine store (snapshots).
//! - [`network`]: Raft RPCs to peers over cached tonic channels.
//! - [`grpc`], [`http`]: the edges; errors become statuses in one place each.
//! - [`codec`]: the only user of bincode.
//! - [`raft_types`]: openraft type configuration.
//! - [`local_cluster`]: starting `arbiter serve` children (used by `up`, tests, jepsen).
//! - [`cli`]: the `arbiter` command line (serve, up, status, member, lease, DR commands).

pub mod auth;
pub mod cli;
pub mod codec;
pub mod config;
pub mod dr;
pub mod gateway;
pub mod grpc;
pub mod http;
pub mod http_client;
pub mod leases;
pub mod local_cluster;
pub mod network;
pub mod node;
pub mod proposer;
pub mod raft_types;
pub mod store;
