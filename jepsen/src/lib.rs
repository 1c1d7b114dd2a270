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
//!     runner ──▶ network::Network ──▶ proxy::LinkProxy per directed link
//!        │          (cut / stall / delay)
//!        ▼
//!  history::HistoryWriter ──▶ history.jsonl ──▶ history::History (paired calls)
//!                                                    │
//!  nemesis::NemesisWindow ◀──────────────────────────┤
//!        │                                           ▼
//!        └──────────────────────────────▶ checker::check_all ──▶ checker::Results
//!                                                                       │
//!              report::write ◀──────────────────────────────────────────┘
//!              (results.json, summary.txt, timeline.svg)
//! ```
//!
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
//! The runner that starts nodes and clients is not here yet: it needs the server.

pub mod checker;
pub mod history;
pub mod nemesis;
pub mod network;
pub mod proxy;
pub mod report;

#[cfg(test)]
mod testkit;
