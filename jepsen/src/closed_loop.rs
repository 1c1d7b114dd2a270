//! Closed-loop load for the benchmarks: N clients, each one request at a time, for a fixed
//! time and at most a fixed number of operations, with throughput and latency percentiles.
//!
//! Invariant: a run ends by its deadline plus one operation's own bound, and never issues more
//! than `max_ops` operations.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

/// How much load: `clients` concurrent loops for `duration`, `max_ops` operations at most.
#[derive(Clone, Copy, Debug)]
pub struct Load {
    pub clients: usize,
    pub duration: Duration,
    pub max_ops: u64,
}

/// What one run measured.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Throughput {
    pub ok: u64,
    pub failed: u64,
    pub per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

#[derive(Default)]
struct Tally {
    latencies: Vec<Duration>,
    failed: u64,
}

/// Runs `load.clients` loops of the operation `make_op(client)` gives each; an operation
/// returns whether it succeeded. Only successes count towards throughput and latency.
pub async fn run<M, O, Fut>(load: Load, mut make_op: M) -> Throughput
where
    M: FnMut(usize) -> O,
    O: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = bool> + Send,
{
    let started = Instant::now();
    let end = started + load.duration;
    let budget = Arc::new(AtomicU64::new(load.max_ops));
    let tasks: Vec<_> = (0..load.clients)
        .map(|i| {
            let mut op = make_op(i);
            let budget = budget.clone();
            tokio::spawn(async move {
                let mut tally = Tally::default();
                while Instant::now() < end
                    && budget
                        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| b.checked_sub(1))
                        .is_ok()
                {
                    let t = Instant::now();
                    if op().await {
                        tally.latencies.push(t.elapsed());
                    } else {
                        tally.failed += 1;
                    }
                }
                tally
            })
        })
        .collect();
    let mut all = Tally::default();
    for task in tasks {
        if let Ok(t) = task.await {
            all.latencies.extend(t.latencies);
            all.failed += t.failed;
        }
    }
    let elapsed = started.elapsed();
    all.latencies.sort_unstable();
    let ok = all.latencies.len();
    let pct = |p: usize| {
        all.latencies
            .get((ok * p / 100).min(ok.saturating_sub(1)))
            .map_or(f64::NAN, |d| d.as_secs_f64() * 1e3)
    };
    Throughput {
        ok: ok as u64,
        failed: all.failed,
        per_sec: ok as f64 / elapsed.as_secs_f64(),
        p50_ms: pct(50),
        p99_ms: pct(99),
    }
}
