//! The DR controller's instruments (registered by [`crate::metrics::Metrics`]).

use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};

use crate::metrics::{labels, Labels};

type HistogramFamily = Family<Labels, Histogram, fn() -> Histogram>;

/// 10 ms to ~5.5 min: driver calls and failover steps range from a table update to a
/// scale-up that waits for instances.
fn seconds_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.01, 2.0, 16))
}

#[derive(Clone, Debug)]
pub struct DrMetrics {
    /// Probe reports taken by this node as leader, by `vantage`, `region` and `result`
    /// (`ok` or `failing`).
    pub probe_reports: Family<Labels, Counter>,
    /// Time to carry out one failover step, by `step` and `result` (`recorded`, `failed`,
    /// `error`: not recorded, retried on a later tick).
    pub step_seconds: HistogramFamily,
    /// Driver calls by `driver` (traffic, compute) and `result` (`ok`, `failed` after every
    /// retry).
    pub driver_calls: Family<Labels, Counter>,
    /// Time of one driver call, retries included, by `driver`.
    pub driver_seconds: HistogramFamily,
}

impl Default for DrMetrics {
    fn default() -> Self {
        DrMetrics {
            probe_reports: Family::default(),
            step_seconds: Family::new_with_constructor(seconds_histogram),
            driver_calls: Family::default(),
            driver_seconds: Family::new_with_constructor(seconds_histogram),
        }
    }
}

impl DrMetrics {
    pub fn probe_report(&self, vantage: &str, region: &str, ok: bool) {
        let result = if ok { "ok" } else { "failing" };
        self.probe_reports
            .get_or_create(&labels([
                ("vantage", vantage),
                ("region", region),
                ("result", result),
            ]))
            .inc();
    }

    pub fn step(&self, step: &str, result: &str, took: Duration) {
        self.step_seconds
            .get_or_create(&labels([("step", step), ("result", result)]))
            .observe(took.as_secs_f64());
    }

    pub fn driver_call(&self, driver: &str, ok: bool, took: Duration) {
        let result = if ok { "ok" } else { "failed" };
        self.driver_calls
            .get_or_create(&labels([("driver", driver), ("result", result)]))
            .inc();
        self.driver_seconds
            .get_or_create(&labels([("driver", driver)]))
            .observe(took.as_secs_f64());
    }
}
