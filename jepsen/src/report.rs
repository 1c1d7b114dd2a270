//! The run report: `results.json` (everything, for machines), `summary.txt` (verdicts and a table
//! per fault, for people) and `timeline.svg` (calls per process as bars, fault windows shaded,
//! anomalies circled).
//!
//! Invariant: the report renders and attributes, it never judges — every verdict and number comes
//! from [`Results`]. An anomaly belongs to the fault whose row contains its latest call; a row runs
//! from its fault's start to the next fault's start, because effects outlive the heal.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::{self, Write as _};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::checker::{AnomalyMark, Results, Verdict};
use crate::history::{Call, History, OpIndex, Outcome, Process};

/// Where [`write`] put the report, and the summary it wrote (to print as well).
#[derive(Debug, Clone)]
pub struct ReportFiles {
    pub results_json: PathBuf,
    pub summary_txt: PathBuf,
    pub timeline_svg: PathBuf,
    pub summary: String,
}

/// One row of the per-fault table.
#[derive(Debug, Clone, Serialize)]
pub struct FaultRow {
    /// Schedule id, or `-` for the time before the first fault.
    pub id: String,
    pub fault: String,
    pub from_ns: u64,
    pub to_ns: u64,
    pub healed_ns: Option<u64>,
    /// Client calls invoked in the row's span, by outcome.
    pub calls: usize,
    pub ok: usize,
    pub fail: usize,
    pub unknown: usize,
    /// Time in the span covered by unavailable windows.
    pub unavailable_ns: u64,
    pub recovery_ns: Option<u64>,
    pub anomalies: usize,
}

#[derive(Serialize)]
struct ResultsFile<'a> {
    #[serde(flatten)]
    results: &'a Results,
    per_fault: &'a [FaultRow],
    anomalies: &'a [AnomalyMark],
}

/// Writes the three report files into `dir`.
pub fn write(dir: &Path, history: &History, results: &Results) -> io::Result<ReportFiles> {
    let view = View::new(history, results);
    let files = ReportFiles {
        results_json: dir.join("results.json"),
        summary_txt: dir.join("summary.txt"),
        timeline_svg: dir.join("timeline.svg"),
        summary: view.summary(),
    };
    let json = serde_json::to_string_pretty(&ResultsFile {
        results,
        per_fault: &view.rows,
        anomalies: &view.marks,
    })?;
    fs::write(&files.results_json, json + "\n")?;
    fs::write(&files.summary_txt, &files.summary)?;
    fs::write(&files.timeline_svg, view.timeline_svg())?;
    Ok(files)
}

/// The history, indexed for rendering.
struct View<'a> {
    results: &'a Results,
    /// Every op index (invocation or completion) → its call.
    calls: HashMap<OpIndex, &'a Call>,
    history: &'a History,
    marks: Vec<AnomalyMark>,
    rows: Vec<FaultRow>,
    end_ns: u64,
}

impl<'a> View<'a> {
    fn new(history: &'a History, results: &'a Results) -> View<'a> {
        let mut calls = HashMap::new();
        for call in history.calls() {
            calls.insert(call.id(), call);
            if let Some(c) = &call.completion {
                calls.insert(c.index, call);
            }
        }
        let end_ns = history
            .calls()
            .iter()
            .map(Call::last_time_ns)
            .max()
            .unwrap_or(0);
        let mut view = View {
            results,
            calls,
            history,
            marks: results.anomaly_marks(),
            rows: Vec::new(),
            end_ns,
        };
        view.rows = view.fault_rows();
        view
    }

    /// When an anomaly showed: the latest invocation among its calls.
    fn anomaly_time(&self, mark: &AnomalyMark) -> Option<u64> {
        mark.ops
            .iter()
            .filter_map(|op| self.calls.get(op))
            .map(|c| c.invoke.time_ns)
            .max()
    }

    fn fault_rows(&self) -> Vec<FaultRow> {
        let windows = &self.results.nemesis;
        let first_start = windows.first().map_or(self.end_ns + 1, |w| w.started_ns);
        let mut spans = vec![(
            "-".to_string(),
            "(no fault)".to_string(),
            0,
            first_start,
            None,
            None,
        )];
        for (i, w) in windows.iter().enumerate() {
            let to = windows.get(i + 1).map_or(self.end_ns + 1, |n| n.started_ns);
            let recovery = self
                .results
                .availability
                .recoveries
                .iter()
                .find(|r| Some(r.heal) == w.healed)
                .and_then(|r| r.recovery_ns);
            spans.push((
                w.id.clone(),
                w.fault.to_string(),
                w.started_ns,
                to,
                w.healed_ns,
                recovery,
            ));
        }
        spans
            .into_iter()
            .filter(|(id, _, from, to, _, _)| id != "-" || from < to)
            .map(|(id, fault, from_ns, to_ns, healed_ns, recovery_ns)| {
                let inside = |t: u64| from_ns <= t && t < to_ns;
                let calls: Vec<&Call> = self
                    .history
                    .client_calls()
                    .filter(|c| inside(c.invoke.time_ns))
                    .collect();
                let count = |o: Outcome| calls.iter().filter(|c| c.outcome() == o).count();
                let unavailable_ns = self
                    .results
                    .availability
                    .windows
                    .iter()
                    .map(|w| w.to_ns.min(to_ns).saturating_sub(w.from_ns.max(from_ns)))
                    .sum();
                let anomalies = self
                    .marks
                    .iter()
                    .filter(|m| self.anomaly_time(m).is_some_and(inside))
                    .count();
                FaultRow {
                    id,
                    fault,
                    from_ns,
                    to_ns,
                    healed_ns,
                    calls: calls.len(),
                    ok: count(Outcome::Ok),
                    fail: count(Outcome::Fail),
                    unknown: count(Outcome::Unknown),
                    unavailable_ns,
                    recovery_ns,
                    anomalies,
                }
            })
            .collect()
    }

    /// Which row an anomaly falls in, for the anomaly list.
    fn row_of(&self, mark: &AnomalyMark) -> &str {
        self.anomaly_time(mark)
            .and_then(|t| self.rows.iter().find(|r| r.from_ns <= t && t < r.to_ns))
            .map_or("?", |r| r.id.as_str())
    }

    fn checker_details(&self) -> Vec<String> {
        let r = self.results;
        let ms = |ns: u64| ns / 1_000_000;
        vec![
            format!("{} grants", r.tokens.grants),
            format!(
                "{} leases on {} resources",
                r.lease_exclusion.leases, r.lease_exclusion.resources
            ),
            format!(
                "{} accepted, {} rejected, {} unknown, {} stale accepted",
                r.fenced_writes.accepted,
                r.fenced_writes.rejected,
                r.fenced_writes.unknown,
                r.fenced_writes.stale_accepted
            ),
            format!(
                "{} keys, {} steps (budget {}/key)",
                r.linearizable.keys.len(),
                r.linearizable.keys.values().map(|k| k.steps).sum::<u64>(),
                r.linearizable.budget.max_steps_per_key
            ),
            format!(
                "{} logs, {} acked appends, {} reads, {} unconfirmed",
                r.failover_log.logs,
                r.failover_log.acknowledged_appends,
                r.failover_log.reads,
                r.failover_log.unconfirmed
            ),
            format!(
                "{} restarts ({} unhealed), {} reads checked",
                r.durability.restarts, r.durability.unhealed, r.durability.reads_checked
            ),
            format!(
                "{} ok calls, {} unavailable windows, longest {} ms",
                r.availability.ok_calls,
                r.availability.windows.len(),
                ms(r.availability.longest_window_ns)
            ),
        ]
    }

    fn summary(&self) -> String {
        let mut out = Text::default();
        out.line(format_args!(
            "arbiter-jepsen: {}\n",
            verdict_word(self.results.verdict)
        ));
        out.line(format_args!(
            "{:<16} {:<8} {:>9}  details",
            "checker", "verdict", "anomalies"
        ));
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for mark in &self.marks {
            *counts.entry(mark.checker).or_default() += 1;
        }
        let verdicts = self.results.verdicts();
        for ((name, verdict), details) in verdicts.into_iter().zip(self.checker_details()) {
            out.line(format_args!(
                "{name:<16} {:<8} {:>9}  {details}",
                verdict_word(verdict).to_lowercase(),
                counts.get(name).copied().unwrap_or(0),
            ));
        }

        let secs = |ns: u64| format!("{:.3}", ns as f64 / 1e9);
        let dash = || "-".to_string();
        out.line(format_args!(
            "\nper fault (each row runs from its fault's start to the next fault's start)"
        ));
        out.line(format_args!(
            "{:<5} {:<40} {:>9} {:>9} {:>7} {:>6} {:>11} {:>11} {:>9}",
            "id",
            "fault",
            "start s",
            "healed s",
            "calls",
            "ok %",
            "unavail ms",
            "recovery ms",
            "anomalies"
        ));
        for row in &self.rows {
            let ok_pct = if row.calls > 0 {
                format!("{:.1}", 100.0 * row.ok as f64 / row.calls as f64)
            } else {
                dash()
            };
            out.line(format_args!(
                "{:<5} {:<40} {:>9} {:>9} {:>7} {:>6} {:>11} {:>11} {:>9}",
                row.id,
                truncate(&row.fault, 40),
                secs(row.from_ns),
                row.healed_ns.map_or_else(dash, secs),
                row.calls,
                ok_pct,
                row.unavailable_ns / 1_000_000,
                row.recovery_ns
                    .map_or_else(dash, |ns| (ns / 1_000_000).to_string()),
                row.anomalies
            ));
        }

        const LISTED: usize = 100;
        if !self.marks.is_empty() {
            let shown = if self.marks.len() > LISTED {
                format!(", first {LISTED} listed")
            } else {
                String::new()
            };
            out.line(format_args!(
                "\nanomalies ({} total{shown})",
                self.marks.len()
            ));
            for mark in self.marks.iter().take(LISTED) {
                out.line(format_args!(
                    "[{}] {} (row {})",
                    mark.checker,
                    mark.what,
                    self.row_of(mark)
                ));
            }
        }
        out.0
    }

    fn timeline_svg(&self) -> String {
        let processes: BTreeSet<u64> = self
            .history
            .client_calls()
            .filter_map(|c| match c.invoke.process {
                Process::Client(p) => Some(p),
                Process::Nemesis => None,
            })
            .collect();
        let canvas = Canvas {
            rows: processes.iter().enumerate().map(|(i, p)| (*p, i)).collect(),
            end_ns: self.end_ns.max(1),
        };
        let plot_h = canvas.plot_height();
        let mut svg = Text::default();
        svg.line(format_args!(
            concat!(
                r#"<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{}" "#,
                r#"font-family="monospace" font-size="10">"#
            ),
            Canvas::WIDTH,
            Canvas::TOP + plot_h + 40.0
        ));
        svg.line(format_args!(
            r#"<rect width="100%" height="100%" fill="white"/>"#
        ));
        svg.line(format_args!(
            concat!(
                r#"<text x="{}" y="14" font-size="12">arbiter-jepsen timeline: {} — "#,
                "green ok, red fail, orange unknown; grey: fault window; red circle: anomaly",
                "</text>"
            ),
            Canvas::LEFT,
            verdict_word(self.results.verdict)
        ));
        for (p, row) in &canvas.rows {
            svg.line(format_args!(
                r#"<text x="{:.1}" y="{:.1}" text-anchor="end">p{p}</text>"#,
                Canvas::LEFT - 6.0,
                canvas.row_top(*row) + Canvas::ROW - 4.0
            ));
        }
        for call in self.history.client_calls() {
            let Some(y) = canvas.y(call) else { continue };
            let x0 = canvas.x(call.invoke.time_ns);
            let x1 = canvas.x(call.completion.as_ref().map_or(self.end_ns, |c| c.time_ns));
            let color = match call.outcome() {
                Outcome::Ok => "#4caf50",
                Outcome::Fail => "#e57373",
                Outcome::Unknown => "#ffb74d",
            };
            svg.line(format_args!(
                concat!(
                    r#"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{}">"#,
                    "<title>{} {} {} {} → {}</title></rect>"
                ),
                x0,
                y + 1.0,
                (x1 - x0).max(1.0),
                Canvas::ROW - 3.0,
                color,
                call.id(),
                call.f(),
                escape(call.key()),
                escape(&truncate(&call.invoke.value.to_string(), 40)),
                call.completion.as_ref().map_or_else(
                    || "pending".to_string(),
                    |c| format!(
                        "{:?} {}",
                        c.kind,
                        escape(&truncate(&c.value.to_string(), 40))
                    )
                ),
            ));
        }
        // Fault windows go over the bars, translucent, so they show on busy rows too.
        for w in &self.results.nemesis {
            let x0 = canvas.x(w.started_ns);
            let x1 = canvas.x(w.healed_ns.unwrap_or(self.end_ns));
            svg.line(format_args!(
                concat!(
                    r##"<rect x="{:.1}" y="{}" width="{:.1}" height="{}" fill="#9e9e9e" "##,
                    r#"fill-opacity="0.25"><title>{} {}</title></rect>"#,
                    r#"<text x="{:.1}" y="{:.1}">{}</text>"#
                ),
                x0,
                Canvas::TOP,
                (x1 - x0).max(1.0),
                plot_h,
                escape(&w.id),
                escape(&w.fault.to_string()),
                x0,
                Canvas::TOP - 4.0,
                escape(&w.id)
            ));
        }
        for mark in &self.marks {
            for call in mark.ops.iter().filter_map(|op| self.calls.get(op)) {
                // Nemesis calls have no row: mark them above the plot.
                let cy = canvas
                    .y(call)
                    .map_or(Canvas::TOP - 10.0, |y| y + Canvas::ROW / 2.0);
                svg.line(format_args!(
                    concat!(
                        r#"<circle cx="{:.1}" cy="{:.1}" r="5" fill="none" stroke="red" "#,
                        r#"stroke-width="1.5"><title>[{}] {}</title></circle>"#
                    ),
                    canvas.x(call.invoke.time_ns),
                    cy,
                    mark.checker,
                    escape(&mark.what)
                ));
            }
        }
        let axis_y = Canvas::TOP + plot_h + 14.0;
        let step = tick_step_ns(self.end_ns);
        let mut t = 0;
        while t <= self.end_ns {
            svg.line(format_args!(
                r#"<text x="{:.1}" y="{axis_y:.1}" text-anchor="middle">{}s</text>"#,
                canvas.x(t),
                t as f64 / 1e9
            ));
            t += step;
        }
        svg.line(format_args!("</svg>"));
        svg.0
    }
}

/// Geometry of the timeline: one row per client process, time left to right.
struct Canvas {
    /// Client process → row; ordered so the SVG text is stable from run to run.
    rows: BTreeMap<u64, usize>,
    end_ns: u64,
}

impl Canvas {
    const WIDTH: f64 = 1400.0;
    const LEFT: f64 = 70.0;
    const RIGHT: f64 = 20.0;
    const TOP: f64 = 40.0;
    const ROW: f64 = 14.0;

    fn plot_height(&self) -> f64 {
        Canvas::ROW * self.rows.len().max(1) as f64
    }

    fn x(&self, ns: u64) -> f64 {
        Canvas::LEFT
            + (ns as f64 / self.end_ns as f64) * (Canvas::WIDTH - Canvas::LEFT - Canvas::RIGHT)
    }

    fn row_top(&self, row: usize) -> f64 {
        Canvas::TOP + row as f64 * Canvas::ROW
    }

    fn y(&self, call: &Call) -> Option<f64> {
        match call.invoke.process {
            Process::Client(p) => self.rows.get(&p).map(|r| self.row_top(*r)),
            Process::Nemesis => None,
        }
    }
}

/// Text being built. `fmt::Write` into a `String` cannot fail, so the `Result` is dropped here,
/// once, instead of at every line.
#[derive(Default)]
struct Text(String);

impl Text {
    fn line(&mut self, args: fmt::Arguments<'_>) {
        let _ = self.0.write_fmt(args);
        self.0.push('\n');
    }
}

/// A round tick spacing giving at most about a dozen ticks.
fn tick_step_ns(end_ns: u64) -> u64 {
    const STEPS_MS: [u64; 13] = [
        1, 10, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 30_000, 60_000, 120_000, 300_000,
    ];
    STEPS_MS
        .iter()
        .map(|ms| ms * 1_000_000)
        .find(|step| end_ns / step <= 12)
        .unwrap_or(600_000 * 1_000_000)
}

fn verdict_word(v: Verdict) -> &'static str {
    match v {
        Verdict::Valid => "VALID",
        Verdict::Unknown => "UNKNOWN",
        Verdict::Invalid => "INVALID",
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        s.chars().take(max - 1).chain(['…']).collect()
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::{check_all, CheckConfig};
    use crate::history::{Op, OpType, F};
    use crate::nemesis::Fault;
    use crate::testkit::Script;
    use serde_json::{json, Value};

    /// A stale fenced write accepted while a lease-holder pause was in force, after the
    /// successor had presented its token.
    fn stale_write_during_a_fault() -> History {
        let mut s = Script::default();
        s.acquire(1, "db/a", "p1", (10, 100), 0, 10);
        let fault = serde_json::to_value(Fault::PauseLeaseHolder).unwrap();
        let pause = s.op(Op::invoke(Process::Nemesis, F::Nemesis, "f0", fault), 20);
        s.op(pause.complete(OpType::Ok, Value::Null), 21);
        s.acquire(2, "db/a", "p2", (20, 2_000), 200, 210);
        let announce = Op::invoke(
            Process::Client(2),
            F::FencedWrite,
            "db/a",
            json!("p2#fence"),
        )
        .with_token(arbiter_core::FencingToken(20));
        let announce = s.op(announce, 215);
        s.complete(&announce, OpType::Ok, Value::Null, 220);
        let heal = s.op(
            Op::invoke(Process::Nemesis, F::Heal, "f0", Value::Null),
            290,
        );
        s.op(heal.complete(OpType::Ok, Value::Null), 295);
        let w = Op::invoke(Process::Client(1), F::FencedWrite, "db/a", json!("x"))
            .with_token(arbiter_core::FencingToken(10));
        let w = s.op(w, 300);
        s.complete(&w, OpType::Ok, Value::Null, 305);
        s.history()
    }

    #[test]
    fn report_files_name_the_anomaly_and_its_fault() {
        let h = stale_write_during_a_fault();
        let results = check_all(&h, &CheckConfig::default()).unwrap();
        assert_eq!(results.verdict, Verdict::Invalid);
        let dir = tempfile::tempdir().unwrap();
        let files = write(dir.path(), &h, &results).unwrap();

        let json: Value =
            serde_json::from_str(&fs::read_to_string(&files.results_json).unwrap()).unwrap();
        assert_eq!(json["verdict"], "invalid");
        assert_eq!(json["fenced_writes"]["stale_accepted"], 1);
        assert_eq!(json["per_fault"][1]["id"], "f0");
        assert_eq!(json["per_fault"][1]["anomalies"], 1);

        let summary = fs::read_to_string(&files.summary_txt).unwrap();
        assert!(summary.starts_with("arbiter-jepsen: INVALID"), "{summary}");
        assert!(summary.contains("pause-lease-holder"), "{summary}");
        assert!(
            summary.contains("[fenced_writes]") && summary.contains("(row f0)"),
            "{summary}"
        );

        let svg = fs::read_to_string(&files.timeline_svg).unwrap();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(
            svg.matches("<circle").count(),
            2,
            "stale write and the successor's announcement"
        );
        assert!(svg.contains("fill-opacity=\"0.25\""), "fault window shaded");
    }

    #[test]
    fn valid_history_has_a_clean_summary() {
        let mut s = Script::default();
        s.acquire(1, "db/a", "p1", (10, 100), 0, 10);
        let h = s.history();
        let results = check_all(&h, &CheckConfig::default()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let text = write(dir.path(), &h, &results).unwrap().summary;
        assert!(text.starts_with("arbiter-jepsen: VALID"), "{text}");
        assert!(!text.contains("anomalies ("), "{text}");
    }
}
