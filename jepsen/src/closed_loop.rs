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
    Throughput {
        ok: ok as u64,
        failed: all.failed,
        per_sec: ok as f64 / elapsed.as_secs_f64(),
        p50_ms: percentile_ms(&all.latencies, 50),
        p99_ms: percentile_ms(&all.latencies, 99),
    }
}

/// A unique suffix per benchmark run, so names never collide with an earlier run's.
pub fn run_tag() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// The `p`th percentile of sorted `latencies` in milliseconds (nearest rank); NaN when empty.
pub fn percentile_ms(sorted: &[Duration], p: usize) -> f64 {
    let n = sorted.len();
    sorted
        .get((n * p / 100).min(n.saturating_sub(1)))
        .map_or(f64::NAN, |d| d.as_secs_f64() * 1e3)
}

/// The median of `values` (the mean of the middle two for an even count); NaN when empty.
pub fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), 2.5);
        assert!(median(&mut []).is_nan());
    }

    #[test]
    fn percentiles_by_nearest_rank() {
        let sorted: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile_ms(&sorted, 50), 51.0);
        assert_eq!(percentile_ms(&sorted, 99), 100.0);
        assert!(percentile_ms(&[], 50).is_nan());
    }

    #[tokio::test]
    async fn the_budget_bounds_the_operations_and_failures_do_not_count_as_throughput() {
        let load = Load {
            clients: 4,
            duration: Duration::from_secs(10),
            max_ops: 40,
        };
        // Every other operation of each client fails.
        let measured = run(load, |_| {
            let mut n = 0u64;
            move || {
                n += 1;
                let ok = n.is_multiple_of(2);
                async move { ok }
            }
        })
        .await;
        assert_eq!(measured.ok + measured.failed, 40);
        assert!(measured.ok > 0 && measured.failed > 0, "{measured:?}");
    }
}
