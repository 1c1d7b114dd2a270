//! What the edge routers (`arbiter edge`) report to the leader: the routing version each has
//! applied, and its requests in flight to each region.
//!
//! Invariant: an edge that stopped reporting is never counted as having applied anything new.
//! It stays registered, and counts as lagging, until it has been silent for
//! [`EdgeRegistry::FORGET_AFTER`]; only then is it dropped (an edge that was stopped on purpose
//! should not hold every later shift at `INITIATED`). Reports live in the leader's memory, like
//! probe reports: a new leader hears from every live edge within one report interval, and
//! judges propagation only after [`EdgeRegistry::WARM_UP`] of leading, so an empty registry
//! right after an election is not read as "no edges".

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// What an edge sends to `POST /v1/edges/report`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({"edge": "pop-fra", "appliedIndex": 4123, "routingStale": false,
    "regions": {"us-east-1": {"inFlight": 12, "sentTotal": 90211, "rttMs": 3.2, "reachable": true}}}))]
pub struct EdgeReportBody {
    /// The edge's name: its authenticated identity.
    pub edge: String,
    /// The `appliedIndex` of the routing snapshot it routes by.
    pub applied_index: u64,
    /// Whether it has lost its routing watch and routes by its last known table.
    #[serde(default)]
    pub routing_stale: bool,
    /// Per region gateway (at most 64).
    #[serde(default)]
    pub regions: BTreeMap<String, EdgeRegionReport>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EdgeRegionReport {
    /// Requests sent to the region's gateway and not yet answered.
    pub in_flight: u64,
    /// Requests sent there since the edge started.
    #[serde(default)]
    pub sent_total: u64,
    /// The edge's smoothed round-trip time to the gateway, if it has one.
    #[serde(default)]
    pub rtt_ms: Option<f64>,
    /// Whether the edge's own probe reaches the gateway.
    #[serde(default)]
    pub reachable: bool,
}

/// One edge as the leader sees it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EdgeView {
    #[serde(flatten)]
    pub report: EdgeReportBody,
    /// Milliseconds since its last report reached this leader.
    pub last_report_age_ms: u64,
    /// Silent for longer than [`EdgeRegistry::SILENT_AFTER`]: counted as lagging.
    pub silent: bool,
}

/// Whether every registered edge routes by a routing version at least `index`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Propagation {
    /// The edges registered (reporting, or silent but not yet forgotten).
    pub edges: Vec<String>,
    /// Those that have not applied `index` yet, or are silent, each with why.
    pub lagging: Vec<String>,
}

impl Propagation {
    pub fn complete(&self) -> bool {
        self.lagging.is_empty()
    }
}

#[derive(Debug)]
pub struct EdgeRegistry {
    edges: Mutex<BTreeMap<String, (EdgeReportBody, Instant)>>,
}

impl Default for EdgeRegistry {
    fn default() -> Self {
        EdgeRegistry {
            edges: Mutex::new(BTreeMap::new()),
        }
    }
}

impl EdgeRegistry {
    /// An edge silent this long counts as lagging.
    pub const SILENT_AFTER: Duration = Duration::from_secs(5);
    /// An edge silent this long is forgotten.
    pub const FORGET_AFTER: Duration = Duration::from_secs(60);
    /// How long a leader leads before it judges propagation (several report intervals).
    pub const WARM_UP: Duration = Duration::from_secs(3);
    /// Regions one report may name.
    pub const MAX_REGIONS: usize = 64;

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, (EdgeReportBody, Instant)>> {
        self.edges.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn record(&self, report: EdgeReportBody, now: Instant) {
        let mut edges = self.lock();
        edges.retain(|_, (_, at)| now.saturating_duration_since(*at) < Self::FORGET_AFTER);
        edges.insert(report.edge.clone(), (report, now));
    }

    /// Every registered edge, by name.
    pub fn view(&self, now: Instant) -> Vec<EdgeView> {
        self.lock()
            .values()
            .filter_map(|(report, at)| {
                let age = now.saturating_duration_since(*at);
                (age < Self::FORGET_AFTER).then(|| EdgeView {
                    report: report.clone(),
                    last_report_age_ms: age.as_millis() as u64,
                    silent: age >= Self::SILENT_AFTER,
                })
            })
            .collect()
    }

    /// Which registered edges route by a version at least `index`.
    pub fn propagation(&self, index: u64, now: Instant) -> Propagation {
        let mut propagation = Propagation {
            edges: Vec::new(),
            lagging: Vec::new(),
        };
        for edge in self.view(now) {
            let name = edge.report.edge.clone();
            if edge.silent {
                propagation.lagging.push(format!(
                    "{name} (silent for {:.1} s)",
                    edge.last_report_age_ms as f64 / 1000.0
                ));
            } else if edge.report.applied_index < index {
                propagation.lagging.push(format!(
                    "{name} (at index {}, needs {index})",
                    edge.report.applied_index
                ));
            }
            propagation.edges.push(name);
        }
        propagation
    }

    /// Requests in flight to `region` summed over the reporting edges; `None` when no edge
    /// reports (then the gateway's own figure is all there is).
    pub fn in_flight(&self, region: &str, now: Instant) -> Option<u64> {
        let edges = self.view(now);
        let reporting: Vec<&EdgeView> = edges.iter().filter(|e| !e.silent).collect();
        if reporting.is_empty() {
            return None;
        }
        Some(
            reporting
                .iter()
                .filter_map(|e| e.report.regions.get(region))
                .map(|r| r.in_flight)
                .sum(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(edge: &str, index: u64, in_flight: u64) -> EdgeReportBody {
        EdgeReportBody {
            edge: edge.into(),
            applied_index: index,
            routing_stale: false,
            regions: BTreeMap::from([(
                "us-east-1".to_string(),
                EdgeRegionReport {
                    in_flight,
                    sent_total: 10,
                    rtt_ms: Some(1.0),
                    reachable: true,
                },
            )]),
        }
    }

    #[test]
    fn propagation_names_the_edges_behind_and_the_silent_ones() {
        let registry = EdgeRegistry::default();
        let t0 = Instant::now();
        registry.record(report("a", 10, 1), t0);
        registry.record(report("b", 7, 2), t0);
        let p = registry.propagation(10, t0);
        assert_eq!(p.edges, ["a", "b"]);
        assert_eq!(p.lagging, ["b (at index 7, needs 10)"]);
        assert!(!p.complete());
        registry.record(report("b", 12, 0), t0 + Duration::from_secs(1));
        assert!(registry
            .propagation(10, t0 + Duration::from_secs(1))
            .complete());

        // a falls silent: lagging even though its last report was new enough, and its
        // requests in flight no longer count.
        let later = t0 + EdgeRegistry::SILENT_AFTER + Duration::from_secs(1);
        registry.record(report("b", 12, 3), later);
        let p = registry.propagation(10, later);
        assert_eq!(p.lagging.len(), 1, "{p:?}");
        assert!(p.lagging[0].starts_with("a (silent for 6."), "{p:?}");
        assert_eq!(registry.in_flight("us-east-1", later), Some(3));
        assert_eq!(registry.in_flight("us-west-2", later), Some(0));

        // forgotten after FORGET_AFTER
        let much_later = t0 + EdgeRegistry::FORGET_AFTER + Duration::from_secs(1);
        registry.record(report("b", 13, 0), much_later);
        assert_eq!(registry.propagation(13, much_later).edges, ["b"]);
    }

    #[test]
    fn no_reporting_edge_means_no_figure() {
        let registry = EdgeRegistry::default();
        let t0 = Instant::now();
        assert_eq!(registry.in_flight("us-east-1", t0), None);
        registry.record(report("a", 1, 4), t0);
        assert_eq!(registry.in_flight("us-east-1", t0), Some(4));
        assert_eq!(
            registry.in_flight("us-east-1", t0 + EdgeRegistry::SILENT_AFTER),
            None
        );
    }
}
