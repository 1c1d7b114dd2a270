//! Workloads: the clients whose calls become the history.
//!
//! - [`lease`]: SDK lease holders contending for a few resources, writing to the harness's
//!   fenced resources while they believe they hold the lease.
//! - [`register`]: per-tenant routing registers (read / write / compare-and-set) over HTTP.
//! - [`failover_log`]: appends to and reads of the failover log of one region over HTTP.
//! - [`holder_board`]: which holder holds what, and the nemesis's lever to freeze one.
//! - [`lagging_replica`]: the stale-read negative control's replica.
//!
//! Invariant: every worker loop is bounded in count ([`Budget`]) and in time (the run
//! deadline, plus each call's own timeout), and records every call it makes: an invocation
//! before the call, and exactly one completion (`ok`, `fail`, or `info` when the outcome is
//! unknown) after it.

pub mod failover_log;
pub mod holder_board;
pub mod lagging_replica;
pub mod lease;
pub mod register;

use std::sync::Arc;
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use tokio::time::Instant;

use crate::api::ApiClient;
use crate::recorder::Recorder;

/// The negative controls: each breaks one safety mechanism on the client side, and the
/// checkers must notice.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct UnsafeControls {
    /// Holders keep believing (and writing) long after their lease deadline.
    pub ignore_deadline: bool,
    /// The fenced resources accept every token.
    pub no_fencing: bool,
    /// Register reads come from a replica that lags the leader, without a leader check.
    pub stale_reads: bool,
    /// Every node runs `arbiter serve --unsafe-no-fsync` (no sync reaches the disk), on lazyfs,
    /// and the whole cluster loses its unsynced writes at least once.
    pub no_fsync: bool,
}

impl UnsafeControls {
    /// The flags that are on, as spelled on the command line.
    pub fn flags(&self) -> Vec<&'static str> {
        [
            (self.ignore_deadline, "--unsafe-ignore-deadline"),
            (self.no_fencing, "--unsafe-no-fencing"),
            (self.stale_reads, "--unsafe-stale-reads"),
            (self.no_fsync, "--unsafe-no-fsync"),
        ]
        .into_iter()
        .filter_map(|(on, flag)| on.then_some(flag))
        .collect()
    }
}

/// Process numbers of each workload's workers, so a history line says who made the call.
pub mod process {
    /// Lease holders: `HOLDERS + i`.
    pub const HOLDERS: u64 = 0;
    /// The fenced resources' epoch reader (no history ops; its own RNG stream).
    pub const EPOCH_READER: u64 = 90;
    /// Register clients: `REGISTERS + i`; `REGISTERS + 90` seeds the tenants.
    pub const REGISTERS: u64 = 100;
    /// Failover-log appenders `LOG + i`, readers `LOG + 50 + i`.
    pub const LOG: u64 = 200;
    /// The reads after the run, once everything is healed.
    pub const FINAL: u64 = 900;
}

/// When every worker stops starting calls.
#[derive(Debug, Clone, Copy)]
pub struct Deadline(pub Instant);

impl Deadline {
    pub fn passed(&self) -> bool {
        Instant::now() >= self.0
    }
}

/// At most this many calls per worker, whatever the time limit.
#[derive(Debug, Clone, Copy)]
pub struct Budget(pub u64);

/// What every worker shares.
#[derive(Clone)]
pub struct Context {
    pub recorder: Recorder,
    pub api: Arc<ApiClient>,
    pub deadline: Deadline,
    pub budget: Budget,
    pub controls: UnsafeControls,
    /// Worker RNGs derive from it, so a seed replays the same choices of op and value.
    pub seed: u64,
    /// Pause between one worker's calls, inclusive range.
    pub gap_ms: (u64, u64),
}

impl Context {
    /// The deterministic RNG of worker `process`.
    pub fn rng(&self, process: u64) -> ChaCha8Rng {
        ChaCha8Rng::seed_from_u64(self.seed ^ process.wrapping_mul(0x9E37_79B9_7F4A_7C15))
    }

    /// Sleeps a random gap, or until the deadline if that comes first.
    pub async fn pause(&self, rng: &mut ChaCha8Rng) {
        self.pause_within(rng, self.gap_ms).await;
    }

    /// Sleeps a random time in `range_ms` (inclusive), or until the deadline.
    pub async fn pause_within(&self, rng: &mut ChaCha8Rng, range_ms: (u64, u64)) {
        let gap = Duration::from_millis(rng.random_range(range_ms.0..=range_ms.1));
        tokio::time::sleep_until((Instant::now() + gap).min(self.deadline.0)).await;
    }

    /// Whether a worker that has made `calls` calls may make another.
    pub fn may_continue(&self, calls: u64) -> bool {
        !self.deadline.passed() && calls < self.budget.0
    }
}

/// Why a workload stopped early: only the history file can fail it.
pub type WorkResult = std::io::Result<()>;
