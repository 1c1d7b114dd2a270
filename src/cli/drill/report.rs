//! What a drill found: one [`RunReport`] per run, the summary over runs, the predicted vs
//! measured table, the JSON report and the SVG timeline.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;
use serde_json::Value;

use super::{Fault, Mode};

/// What `GET /v1/plan` predicted for the run's settings, in milliseconds.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Predicted {
    pub detection_ms: Option<u64>,
    pub fence_ms: Option<u64>,
    /// Waiting out the revoked lease, the grant and `pg_promote`.
    pub promotion_ms: Option<u64>,
    pub rto_ms: Option<u64>,
    /// Writes in flight at failure (W × lag).
    pub in_flight_writes: Option<u64>,
}

impl Predicted {
    pub fn from_plan(plan: &Value) -> Predicted {
        let component = |name: &str| {
            plan["predictedRto"]["components"]
                .as_array()?
                .iter()
                .find(|c| c["component"] == name)?["ms"]
                .as_u64()
        };
        Predicted {
            detection_ms: component("detection"),
            fence_ms: component("fence"),
            promotion_ms: component("promotion"),
            rto_ms: plan["predictedRto"]["totalMs"].as_u64(),
            in_flight_writes: plan["inFlightAtFailure"]["transactions"].as_u64(),
        }
    }
}

/// A moment of the run, in milliseconds after the fault.
#[derive(Debug, Clone, Serialize)]
pub struct Milestone {
    pub name: String,
    pub ms: u64,
}

impl Milestone {
    pub fn list(seen: &BTreeMap<&'static str, u64>) -> Vec<Milestone> {
        let mut list: Vec<Milestone> = seen
            .iter()
            .map(|(name, ms)| Milestone {
                name: name.to_string(),
                ms: *ms,
            })
            .collect();
        list.sort_by_key(|m| m.ms);
        list
    }
}

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WriteCounts {
    pub acked_east: u64,
    pub acked_east_before_fault: u64,
    pub acked_west: u64,
    /// Acknowledged writes (either region) not on the new primary: the measured RPO.
    pub missing_on_new_primary: u64,
    /// The first few of them.
    pub missing_ids: Vec<i64>,
    /// The failover event's `uncommittedDataLossEstimateWrites`.
    pub controller_estimate: Option<u64>,
    pub east_errors: BTreeMap<String, u64>,
    pub west_errors: BTreeMap<String, u64>,
}

/// The partition scenarios' check that the isolated side stopped before the other began.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SplitBrainCheck {
    pub east_acked_after_fault: u64,
    /// Must be 0: a write acknowledged in us-east-1 once us-west-2 held the lease.
    pub east_acked_after_west_grant: u64,
    pub east_last_ack_ms: Option<u64>,
    pub east_read_only_ms: Option<u64>,
    pub west_grant_ms: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunReport {
    pub run: u32,
    pub mode: Mode,
    pub fault: Fault,
    /// Why the run did not finish its measurement; `None` for a complete run.
    pub error: Option<String>,
    pub predicted: Predicted,
    pub milestones: Vec<Milestone>,
    pub writes: WriteCounts,
    pub failover_status: Option<String>,
    pub split_brain: Option<SplitBrainCheck>,
    /// What the HTTP clients behind the edge routers saw.
    pub edge: Option<super::edges::EdgeFigures>,
    pub setup_seconds: f64,
    pub wall_seconds: f64,
    /// The run's directory, kept when it failed or with `--keep`.
    pub files: Option<String>,
}

impl RunReport {
    pub fn failed(run: u32, mode: Mode, fault: Fault, error: String) -> RunReport {
        RunReport {
            run,
            mode,
            fault,
            error: Some(error),
            predicted: Predicted::default(),
            milestones: Vec::new(),
            writes: WriteCounts::default(),
            failover_status: None,
            split_brain: None,
            edge: None,
            setup_seconds: 0.0,
            wall_seconds: 0.0,
            files: None,
        }
    }

    pub fn milestone(&self, name: &str) -> Option<u64> {
        self.milestones
            .iter()
            .find(|m| m.name == name)
            .map(|m| m.ms)
    }

    /// RTO: the first write acknowledged in us-west-2.
    pub fn rto_ms(&self) -> Option<u64> {
        self.milestone("first-write")
    }

    /// Whether the run holds the safety claims: finished, RPO 0 when synchronous, no write
    /// acknowledged by the isolated side after the other was granted.
    pub fn safe(&self) -> bool {
        self.error.is_none()
            && (self.mode == Mode::Async || self.writes.missing_on_new_primary == 0)
            && self
                .split_brain
                .as_ref()
                .is_none_or(|c| c.east_acked_after_west_grant == 0)
    }

    pub fn one_line(&self) -> String {
        if let Some(e) = &self.error {
            return format!("run {}: FAILED: {e}", self.run);
        }
        let mut line = format!(
            "run {}: RTO {} (predicted {}), RPO {} acknowledged write(s) missing (controller \
             estimate {}), {} acknowledged at {} before the fault",
            self.run,
            seconds(self.rto_ms()),
            seconds(self.predicted.rto_ms),
            self.writes.missing_on_new_primary,
            self.writes
                .controller_estimate
                .map_or("-".to_string(), |e| e.to_string()),
            self.writes.acked_east_before_fault,
            super::EAST,
        );
        if let Some(c) = &self.split_brain {
            let _ = write!(
                line,
                "; {} acknowledged at {} after the fault, {} after {} was granted",
                c.east_acked_after_fault,
                super::EAST,
                c.east_acked_after_west_grant,
                super::WEST
            );
        }
        if let Some(e) = &self.edge {
            let _ =
                write!(
                line,
                "; clients via {} edges: {} requests, {} failed ({} after the fault), {} retried, \
                 answered by another region {} after the fault, edges' last request to {} at {}",
                e.edges,
                e.requests,
                e.failed,
                e.failed_after_fault,
                e.retried,
                seconds(e.client_shift_ms),
                super::EAST,
                e.last_sent_to_failed_region_ms
                    .map_or("-".to_string(), |ms| format!("{:+.2} s", ms as f64 / 1000.0)),
            );
        }
        line
    }
}

fn seconds(ms: Option<u64>) -> String {
    ms.map_or("-".to_string(), |ms| format!("{:.2} s", ms as f64 / 1000.0))
}

/// Median, max and count of the values present.
type Stats = (u64, u64, usize);

fn stats(values: impl Iterator<Item = Option<u64>>) -> Option<Stats> {
    let mut v: Vec<u64> = values.flatten().collect();
    if v.is_empty() {
        return None;
    }
    v.sort_unstable();
    let median = if v.len() % 2 == 1 {
        v[v.len() / 2]
    } else {
        (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2
    };
    Some((median, *v.last().unwrap_or(&0), v.len()))
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub runs: usize,
    pub completed: usize,
    pub safe: usize,
    pub rto_median_ms: Option<u64>,
    pub rto_max_ms: Option<u64>,
    pub rpo_median_writes: Option<u64>,
    pub rpo_max_writes: Option<u64>,
    /// Runs whose controller estimate was below the measured loss (the dangerous direction),
    /// and by how many writes at most.
    pub estimate_below_measured: usize,
    pub estimate_short_by_max: u64,
    /// Completed runs with no failover event, so no controller estimate (split-brain: the
    /// controller sees a healthy region; us-west-2 takes over when the lease runs out).
    pub runs_without_estimate: usize,
    pub east_acked_after_west_grant: u64,
    /// Requests the clients behind the edges saw fail after the fault, over all runs.
    pub edge_failed_after_fault: u64,
    /// The client-visible traffic shift (fault → first answer from another region).
    pub edge_client_shift_median_ms: Option<u64>,
    pub edge_client_shift_max_ms: Option<u64>,
}

pub fn summarize(reports: &[RunReport]) -> Summary {
    let done: Vec<&RunReport> = reports.iter().filter(|r| r.error.is_none()).collect();
    let rto = stats(done.iter().map(|r| r.rto_ms()));
    let rpo = stats(done.iter().map(|r| Some(r.writes.missing_on_new_primary)));
    let shift = stats(
        done.iter()
            .map(|r| r.edge.as_ref().and_then(|e| e.client_shift_ms)),
    );
    let short: Vec<u64> = done
        .iter()
        .filter_map(|r| {
            let estimate = r.writes.controller_estimate?;
            (estimate < r.writes.missing_on_new_primary)
                .then(|| r.writes.missing_on_new_primary - estimate)
        })
        .collect();
    Summary {
        runs: reports.len(),
        completed: done.len(),
        safe: reports.iter().filter(|r| r.safe()).count(),
        rto_median_ms: rto.map(|s| s.0),
        rto_max_ms: rto.map(|s| s.1),
        rpo_median_writes: rpo.map(|s| s.0),
        rpo_max_writes: rpo.map(|s| s.1),
        estimate_below_measured: short.len(),
        estimate_short_by_max: short.iter().copied().max().unwrap_or(0),
        runs_without_estimate: done
            .iter()
            .filter(|r| r.writes.controller_estimate.is_none())
            .count(),
        east_acked_after_west_grant: done
            .iter()
            .filter_map(|r| r.split_brain.as_ref())
            .map(|c| c.east_acked_after_west_grant)
            .sum(),
        edge_failed_after_fault: done
            .iter()
            .filter_map(|r| r.edge.as_ref())
            .map(|e| e.failed_after_fault)
            .sum(),
        edge_client_shift_median_ms: shift.map(|s| s.0),
        edge_client_shift_max_ms: shift.map(|s| s.1),
    }
}

/// The predicted vs measured table (medians over completed runs).
pub fn table(reports: &[RunReport]) -> String {
    let done: Vec<&RunReport> = reports.iter().filter(|r| r.error.is_none()).collect();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<34} {:>12} {:>16} {:>12}",
        "from the fault", "predicted", "measured median", "measured max"
    );
    let predicted_sum = |a: Option<u64>, b: Option<u64>| Some(a? + b?);
    let rows: Vec<(&str, Option<u64>, Option<Stats>)> = vec![
        (
            "detection (failover event)",
            done.first().and_then(|r| r.predicted.detection_ms),
            stats(done.iter().map(|r| r.milestone("detection"))),
        ),
        (
            "fence (leases revoked)",
            done.first()
                .and_then(|r| predicted_sum(r.predicted.detection_ms, r.predicted.fence_ms)),
            stats(done.iter().map(|r| r.milestone("fence"))),
        ),
        (
            "lease granted to us-west-2",
            None,
            stats(done.iter().map(|r| r.milestone("grant"))),
        ),
        (
            "standby promoted",
            None,
            stats(done.iter().map(|r| r.milestone("promotion"))),
        ),
        (
            "RTO: first write in us-west-2",
            done.first().and_then(|r| r.predicted.rto_ms),
            stats(done.iter().map(|r| r.rto_ms())),
        ),
    ];
    for (name, predicted, measured) in rows {
        let _ = writeln!(
            out,
            "{:<34} {:>12} {:>16} {:>12}",
            name,
            seconds(predicted),
            seconds(measured.map(|m| m.0)),
            seconds(measured.map(|m| m.1)),
        );
    }
    let rpo = stats(done.iter().map(|r| Some(r.writes.missing_on_new_primary)));
    let _ = writeln!(
        out,
        "{:<34} {:>12} {:>16} {:>12}",
        "RPO: acknowledged writes missing",
        done.first()
            .and_then(|r| r
                .writes
                .controller_estimate
                .or(r.predicted.in_flight_writes))
            .map_or("-".into(), |e| format!("{e} (est.)")),
        rpo.map_or("-".into(), |m| m.0.to_string()),
        rpo.map_or("-".into(), |m| m.1.to_string()),
    );
    out
}

/// A timeline per run: one row, a mark at each milestone.
pub fn svg(reports: &[RunReport]) -> String {
    let done: Vec<&RunReport> = reports.iter().filter(|r| r.error.is_none()).collect();
    let span_ms = done
        .iter()
        .flat_map(|r| r.milestones.iter().map(|m| m.ms))
        .max()
        .unwrap_or(1_000)
        .max(1_000) as f64
        * 1.1;
    let (left, width, row) = (150.0, 700.0, 26.0);
    let height = 70.0 + row * done.len() as f64;
    let x = |ms: u64| left + width * ms as f64 / span_ms;
    let colour = |name: &str| match name {
        "detection" => "#d97706",
        "fence" => "#b91c1c",
        "grant" => "#7c3aed",
        "promotion" => "#2563eb",
        "first-write" => "#15803d",
        "east-read-only" => "#6b7280",
        _ => "#111827",
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{height}\" \
         font-family=\"sans-serif\" font-size=\"11\">",
        left + width + 20.0
    );
    let title = done.first().map_or("arbiter drill".to_string(), |r| {
        format!(
            "arbiter drill: {:?} replication, fault {:?} at us-east-1 (t = 0)",
            r.mode, r.fault
        )
    });
    let _ = writeln!(out, "<title>{title}</title>");
    let _ = writeln!(
        out,
        "<text x=\"10\" y=\"16\" font-size=\"13\">{title}</text>"
    );
    let mut legend_x = 10.0;
    for name in [
        "detection",
        "fence",
        "east-read-only",
        "grant",
        "promotion",
        "first-write",
    ] {
        let _ = writeln!(
            out,
            "<rect x=\"{legend_x}\" y=\"26\" width=\"10\" height=\"10\" fill=\"{}\"/>\
             <text x=\"{}\" y=\"35\">{name}</text>",
            colour(name),
            legend_x + 14.0
        );
        legend_x += 24.0 + 7.0 * name.len() as f64;
    }
    for (i, r) in done.iter().enumerate() {
        let y = 60.0 + row * i as f64;
        let _ = writeln!(
            out,
            "<text x=\"10\" y=\"{}\">run {} RPO {}</text>",
            y + 4.0,
            r.run,
            r.writes.missing_on_new_primary
        );
        let _ = writeln!(
            out,
            "<line x1=\"{left}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\" stroke=\"#d1d5db\"/>",
            x(r.rto_ms().unwrap_or(0))
        );
        for m in &r.milestones {
            let _ = writeln!(
                out,
                "<circle cx=\"{:.1}\" cy=\"{y}\" r=\"5\" fill=\"{}\"><title>{} at {:.2} s</title></circle>",
                x(m.ms),
                colour(&m.name),
                m.name,
                m.ms as f64 / 1000.0
            );
        }
    }
    let axis_y = height - 14.0;
    let step = if span_ms > 20_000.0 { 5_000 } else { 1_000 };
    let mut t = 0;
    while (t as f64) <= span_ms {
        let _ = writeln!(
            out,
            "<text x=\"{:.1}\" y=\"{axis_y}\" text-anchor=\"middle\">{} s</text>",
            x(t),
            t / 1000
        );
        t += step;
    }
    out.push_str("</svg>\n");
    out
}
