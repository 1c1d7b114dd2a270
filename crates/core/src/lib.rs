//! # arbiter-core — the pure core
//!
//! Everything here is deterministic: no tokio, no sled, no clock, no randomness, no I/O. Time
//! enters only as an argument or inside a log entry, so the same log gives the same state on
//! every node and after every restart or snapshot install.
//!
//! - [`command`]: the log payload (`Batch` of `Command`s) and per-command `Outcome`s.
//! - [`state_machine`]: every replicated table and the deterministic `apply_batch`.
//! - [`traffic`]: traffic weights and traffic-shift tasks (`dr_shift_*`).
//! - [`types`]: identifiers and scalar newtypes (`FencingToken`, `RegionId`, ...).
//! - [`lease_table`]: the replicated lease table; `LeaseCommand`s in, `LeaseOutcome`s out, fencing
//!   epochs that only rise.
//! - [`lease_timers`]: the leader's monotonic lease deadlines over [`lease_table`]; yields the
//!   `Expire` commands to propose.
//! - [`leader_stopwatch`]: durations across log entries (cooldown, drain) timed on the current
//!   leader's monotonic clock, restarted on a new term; never two machines' clocks compared.
//! - [`hlc`]: hybrid logical clocks; the wall clock comes in as an argument, timestamps go out.
//! - [`crdt`]: state-merge CRDTs for active-active data, LWW types ordered by [`hlc`] timestamps.
//! - [`region_health`]: replicated region health with hysteresis; `DOWN` stays down until healthy
//!   for the whole cooldown.
//! - [`probe_consensus`]: the controller's in-memory outage consensus over vantage-point probes;
//!   yields `Verdict`s, which become [`region_health`] observations and failovers.
//! - [`placement`]: the replicated record of planned leadership moves (`to` stands for election
//!   once it has applied the move, if the term has not changed).
//! - [`routing`]: the replicated tenant routing table (shift, restore, compare-and-set, lock) and
//!   validated per-region traffic weights.
//! - [`replication`]: replicated replication links and sync checkpoints; sync metrics, RPO
//!   violations and data-loss estimates.
//! - [`capacity_plan`]: the seed's capacity model (bandwidth, writes in flight, DNS-cached
//!   clients, predicted RTO by component) as a pure function of its inputs.
//! - [`failover_log`]: the append-only failover log; steps only advance, each recorded once.
//! - [`failover_plan`]: the failover workflow over [`failover_log`] (`next_action`) and the
//!   failback gate over [`region_health`] and [`replication`].

// A mutant feature removes a lease-safety rule (see `scripts/mutants.sh`); it exists to prove a
// test fails without the rule and must never reach a release build.
#[cfg(all(
    not(debug_assertions),
    any(
        feature = "mutant-renew-lapsed",
        feature = "mutant-elected-keeps-old-deadlines",
        feature = "mutant-token-not-log-position",
        feature = "mutant-grant-while-draining",
        feature = "mutant-break-glass-unlogged"
    )
))]
compile_error!("mutant features remove a safety rule: debug test builds only");

pub mod capacity_plan;
pub mod command;
pub mod crdt;
pub mod failover_log;
pub mod failover_plan;
pub mod hlc;
pub mod leader_stopwatch;
pub mod lease_table;
pub mod lease_timers;
pub mod placement;
pub mod probe_consensus;
pub mod region_health;
pub mod replication;
pub mod routing;
pub mod state_machine;
pub mod traffic;
pub mod types;

pub use types::*;
