//! This process's own load, for the seed's health-check `metrics`: HTTP requests in flight,
//! the p99 latency of recent requests, and CPU utilisation from `/proc/self/stat`.
//!
//! Invariant: measuring never blocks a request for long — the locks guard small in-memory
//! buffers only, and the procfs read is a memory-backed file that does not touch a disk.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;

/// Requests whose latency the p99 is taken over: the most recent ones.
const LATENCY_WINDOW: usize = 1_024;
/// CPU is averaged over at least this long, so two health checks in quick succession do not
/// report the noise of a few clock ticks.
const MIN_CPU_INTERVAL: Duration = Duration::from_millis(500);

pub struct Telemetry {
    in_flight: AtomicU64,
    /// std Mutex: held for a push or a copy, never across an await.
    latencies_us: Mutex<VecDeque<u64>>,
    cpu: Mutex<CpuSampler>,
}

impl Default for Telemetry {
    fn default() -> Self {
        Telemetry {
            in_flight: AtomicU64::new(0),
            latencies_us: Mutex::new(VecDeque::with_capacity(LATENCY_WINDOW)),
            cpu: Mutex::new(CpuSampler::new()),
        }
    }
}

/// What the health check reports.
pub struct Snapshot {
    pub active_connections: u64,
    pub p99_latency_ms: u64,
    pub cpu_utilization: f64,
}

impl Telemetry {
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            active_connections: self.in_flight.load(Ordering::Relaxed),
            p99_latency_ms: self.p99().as_millis() as u64,
            cpu_utilization: self
                .cpu
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .utilization(),
        }
    }

    fn p99(&self) -> Duration {
        let mut sorted: Vec<u64> = self
            .latencies_us
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .copied()
            .collect();
        if sorted.is_empty() {
            return Duration::ZERO;
        }
        sorted.sort_unstable();
        // Nearest rank: the smallest latency at or above 99 % of the samples.
        let rank = (sorted.len() * 99).div_ceil(100).max(1);
        Duration::from_micros(sorted[rank - 1])
    }

    fn record(&self, latency: Duration) {
        let mut window = self.latencies_us.lock().unwrap_or_else(|e| e.into_inner());
        if window.len() == LATENCY_WINDOW {
            window.pop_front();
        }
        window.push_back(latency.as_micros() as u64);
    }
}

/// Counts a request in flight while it runs and records its latency when it is answered.
pub async fn track(
    State(telemetry): State<Arc<Telemetry>>,
    request: Request,
    next: Next,
) -> Response {
    struct InFlight<'a>(&'a AtomicU64);
    impl Drop for InFlight<'_> {
        // On drop, so a request whose client went away mid-way is not counted forever.
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::Relaxed);
        }
    }
    telemetry.in_flight.fetch_add(1, Ordering::Relaxed);
    let _in_flight = InFlight(&telemetry.in_flight);
    let started = Instant::now();
    let response = next.run(request).await;
    telemetry.record(started.elapsed());
    response
}

/// CPU time of this process over wall time, as a percentage of the whole machine.
struct CpuSampler {
    last: Option<(Instant, u64)>,
    utilization: f64,
    ticks_per_second: f64,
    cpus: f64,
}

impl CpuSampler {
    fn new() -> Self {
        // SAFETY: sysconf only reads a configuration value.
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        CpuSampler {
            last: cpu_ticks().map(|ticks| (Instant::now(), ticks)),
            utilization: 0.0,
            ticks_per_second: if ticks > 0 { ticks as f64 } else { 100.0 },
            cpus: std::thread::available_parallelism().map_or(1.0, |n| n.get() as f64),
        }
    }

    /// Utilisation since the previous sample (at least [`MIN_CPU_INTERVAL`] ago), one decimal
    /// as in the seed; 0 where `/proc` is not available.
    fn utilization(&mut self) -> f64 {
        let now = Instant::now();
        let Some(ticks) = cpu_ticks() else {
            return 0.0;
        };
        match self.last {
            Some((at, before)) if now.duration_since(at) >= MIN_CPU_INTERVAL => {
                let cpu_seconds = ticks.saturating_sub(before) as f64 / self.ticks_per_second;
                let wall_seconds = now.duration_since(at).as_secs_f64();
                let percent = 100.0 * cpu_seconds / wall_seconds / self.cpus;
                self.utilization = (percent.clamp(0.0, 100.0) * 10.0).round() / 10.0;
                self.last = Some((now, ticks));
            }
            Some(_) => {}
            None => self.last = Some((now, ticks)),
        }
        self.utilization
    }
}

/// User + system CPU ticks of this process (fields 14 and 15 of `/proc/self/stat`).
fn cpu_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) is in parentheses and may contain spaces: count from the
    // last ')'. Field 3 is then the first token.
    let fields: Vec<&str> = stat
        .get(stat.rfind(')')? + 1..)?
        .split_whitespace()
        .collect();
    let user: u64 = fields.get(11)?.parse().ok()?;
    let system: u64 = fields.get(12)?.parse().ok()?;
    Some(user + system)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn p99_is_nearest_rank_over_the_window() {
        let telemetry = Telemetry::default();
        assert_eq!(telemetry.p99(), Duration::ZERO);
        for ms in 1..=100 {
            telemetry.record(Duration::from_millis(ms));
        }
        assert_eq!(telemetry.p99(), Duration::from_millis(99));
        for _ in 0..LATENCY_WINDOW {
            telemetry.record(Duration::from_millis(2));
        }
        assert_eq!(telemetry.p99(), Duration::from_millis(2));
    }

    #[test]
    fn cpu_ticks_are_readable_on_linux() {
        if cfg!(target_os = "linux") {
            assert!(cpu_ticks().is_some());
        }
    }
}
