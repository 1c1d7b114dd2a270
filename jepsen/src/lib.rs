//! # arbiter-jepsen — fault-injecting verification harness for arbiter
//!
//! A run drives real arbiter nodes through a simulated WAN while a seeded nemesis breaks links
//! and processes, records every client call and fault as a history, then judges the history
//! offline. The pieces, and what flows between them:
//!
//! ```text
//!  nemesis::Schedule (seed → nemesis.json)
//!        │ Fault per window
//!        ▼
//!  fault_injector ──▶ cluster::Cluster ──▶ network::Network ──▶ proxy::LinkProxy per link
//!        │              (arbiter serve ×N,     (cut / stall / delay)
//!        │               kill -9, SIGSTOP)
//!        │ freeze a holder                      ▲ client proxies
//!        ▼                                      │
//!  workload::holder_board ◀── workload::{lease, register, failover_log}
//!                                 │  SDK (gRPC) / api::ApiClient (HTTP)
//!                                 │  fenced_store (in-process fenced resources)
//!                                 ▼
//!  recorder::Recorder ──▶ history.jsonl ──▶ history::History (paired calls)
//!                                                    │
//!  nemesis::NemesisWindow ◀──────────────────────────┤
//!        │                                           ▼
//!        └──────────────────────────────▶ checker::check_all ──▶ checker::Results
//!                                                                       │
//!              report::write ◀──────────────────────────────────────────┘
//!              (results.json, summary.txt, timeline.svg)
//! ```
//!
//! - [`runner`]: one run end to end — cluster up, workloads and nemesis for the time limit,
//!   heal, final reads, check, report; [`run_dir`] names its directory and finds the binary.
//! - [`cluster`]: `arbiter serve` processes behind a proxy on every peer and client link.
//! - [`fault_injector`]: carries out the schedule on the cluster and the holders, recording
//!   each fault and heal.
//! - [`workload`]: lease holders, routing registers, the failover log, and the negative
//!   controls' switches.
//! - [`api`]: the HTTP API, leader-following, answers sorted into ok / fail / unknown.
//! - [`fenced_store`]: the harness's fenced resources, which keep every accepted write.
//! - [`recorder`]: the shared history writer.
//! - [`history`]: the JSON-lines record format, its writer, and a validating reader that pairs
//!   invocations with completions.
//! - [`checker`]: one checker per property — token order, lease mutual exclusion by holders'
//!   deadlines, stale fenced writes, register linearizability, failover-log prefix/no loss,
//!   durability across whole-cluster restarts, availability.
//! - [`nemesis`]: faults as data, the seeded schedule, what a fault does to links and processes,
//!   and the fault windows a history shows.
//! - [`proxy`]: a TCP proxy for one directed link with delay queue, stall and cut.
//! - [`network`]: one proxy per directed link, default latencies from the planning RTT table.
//! - [`report`]: renders results for machines and people.
//!
//! Benchmarks (`arbiter-jepsen placement-bench | scale-bench | vs-etcd | wan-bench`):
//! - [`bench_cluster`]: a three-node TLS cluster of real nodes on loopback, and what a
//!   benchmark reads off it (status, `/metrics`, a fresh learner).
//! - [`closed_loop`]: N clients, one request at a time each, for a bounded time: ops/s, p50, p99.
//! - [`scale_bench`]: 100k live leases against 1k — keep-alive throughput, a leader kill,
//!   snapshot build and install, RSS, memory per lease at 1 M.
//! - [`wan_bench`]: the `wan` profile over the WAN triangle — commit latency against its
//!   floor, lease throughput, leader failover under load.
//! - [`placement_bench`], [`vs_etcd`] (feature `etcd`): leader placement over the WAN; arbiter
//!   beside etcd.

pub mod api;
pub mod bench_cluster;
pub mod checker;
pub mod closed_loop;
pub mod cluster;
pub mod fault_injector;
pub mod fenced_store;
pub mod history;
pub mod lazyfs;
pub mod nemesis;
pub mod network;
pub mod pg_store;
pub mod placement_bench;
pub mod proxy;
pub mod recorder;
pub mod report;
pub mod run_dir;
pub mod runner;
pub mod scale_bench;
#[cfg(feature = "etcd")]
pub mod vs_etcd;
pub mod wan_bench;
pub mod workload;

#[cfg(test)]
mod testkit;
