//! A closed-loop load driver for the benchmarks: `clients` loops, each one operation at a time,
//! for a bounded time and operation count, with throughput and latency percentiles.
//!
//! Invariant: every loop stops by itself at the phase's end or when the shared operation budget
//! runs out, whichever comes first.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

/// What one phase measured.
#[derive(Clone, Debug, Default)]
pub struct Load {
    pub ok: u64,
    pub failed: u64,
    pub per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// Runs `clients` loops of the operation `make_op(i)` makes for loop `i`, for `phase` and at
/// most `max_ops` operations in all. An operation answers whether it succeeded; only
/// successes count towards throughput and latency.
pub async fn drive<M, O, Fut>(clients: usize, phase: Duration, max_ops: u64, mut make_op: M) -> Load
where
    M: FnMut(usize) -> O,
    O: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = bool> + Send,
{
    let started = Instant::now();
    let end = started + phase;
    let budget = Arc::new(AtomicU64::new(max_ops));
    let tasks: Vec<_> = (0..clients)
        .map(|i| {
            let mut op = make_op(i);
            let budget = budget.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut failed = 0;
                while Instant::now() < end
                    && budget
                        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| b.checked_sub(1))
                        .is_ok()
                {
                    let t = Instant::now();
                    if op().await {
                        latencies.push(t.elapsed());
                    } else {
                        failed += 1;
                    }
                }
                (latencies, failed)
            })
        })
        .collect();
    let mut latencies = Vec::new();
    let mut failed = 0;
    for task in tasks {
        if let Ok((l, f)) = task.await {
            latencies.extend(l);
            failed += f;
        }
    }
    let elapsed = started.elapsed();
    latencies.sort_unstable();
    Load {
        ok: latencies.len() as u64,
        failed,
        per_sec: latencies.len() as f64 / elapsed.as_secs_f64(),
        p50_ms: percentile_ms(&latencies, 50),
        p99_ms: percentile_ms(&latencies, 99),
    }
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
        let load = drive(4, Duration::from_secs(10), 40, |i| {
            move || async move { i % 2 == 0 }
        })
        .await;
        assert_eq!(load.ok + load.failed, 40);
        assert!(load.ok > 0 && load.failed > 0, "{load:?}");
    }
}
