//! Availability: how long clients waited with nothing succeeding, and how fast service came back
//! after each heal.
//!
//! Invariant: this is measurement, not safety. Unavailable windows (stretches of at least
//! `min_window_ns` with no client call completing `ok` while some call was waiting) and recovery
//! times (from a heal completing to the first `ok` of a call invoked after it) are always
//! reported; they become anomalies only past the configured bounds.

use std::fmt;

use serde::Serialize;

use super::{Anomaly, Checked};
use crate::history::{Call, History, OpIndex};
use crate::nemesis::NemesisWindow;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Bounds {
    /// Gaps shorter than this are ordinary spacing between completions.
    pub min_window_ns: u64,
    /// An unavailable window longer than this is an anomaly.
    pub max_window_ns: Option<u64>,
    /// A recovery slower than this (or none at all) is an anomaly.
    pub max_recovery_ns: Option<u64>,
}

impl Default for Bounds {
    fn default() -> Self {
        Bounds {
            min_window_ns: 1_000_000_000,
            max_window_ns: None,
            max_recovery_ns: None,
        }
    }
}

/// How many waiting calls a window quotes.
const QUOTED: usize = 8;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnavailableWindow {
    pub from_ns: u64,
    pub to_ns: u64,
    /// Calls waiting during the window.
    pub waiting: usize,
    /// The first few of them.
    pub quoted: Vec<OpIndex>,
}

impl UnavailableWindow {
    pub fn length_ns(&self) -> u64 {
        self.to_ns - self.from_ns
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Recovery {
    pub fault: String,
    pub heal: OpIndex,
    pub healed_ns: u64,
    /// `None`: nothing invoked after the heal ever succeeded.
    pub recovery_ns: Option<u64>,
    pub first_ok: Option<OpIndex>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AvailabilityAnomaly {
    WindowTooLong {
        window: UnavailableWindow,
        bound_ns: u64,
    },
    SlowRecovery {
        recovery: Recovery,
        bound_ns: u64,
    },
}

impl fmt::Display for AvailabilityAnomaly {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = |ns: u64| ns as f64 / 1e6;
        match self {
            AvailabilityAnomaly::WindowTooLong { window, bound_ns } => write!(
                f,
                "unavailable {:.0} ms (bound {:.0} ms) from {:.0} ms",
                ms(window.length_ns()),
                ms(*bound_ns),
                ms(window.from_ns)
            ),
            AvailabilityAnomaly::SlowRecovery { recovery, bound_ns } => {
                match recovery.recovery_ns {
                    Some(ns) => write!(
                        f,
                        "recovery after {} took {:.0} ms (bound {:.0} ms)",
                        recovery.fault,
                        ms(ns),
                        ms(*bound_ns)
                    ),
                    None => write!(f, "no recovery after {}", recovery.fault),
                }
            }
        }
    }
}

impl Anomaly for AvailabilityAnomaly {
    fn ops(&self) -> Vec<OpIndex> {
        match self {
            AvailabilityAnomaly::WindowTooLong { window, .. } => window.quoted.clone(),
            AvailabilityAnomaly::SlowRecovery { recovery, .. } => std::iter::once(recovery.heal)
                .chain(recovery.first_ok)
                .collect(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct AvailabilityReport {
    pub bounds: Bounds,
    pub ok_calls: usize,
    pub windows: Vec<UnavailableWindow>,
    pub longest_window_ns: u64,
    pub recoveries: Vec<Recovery>,
    pub anomalies: Vec<AvailabilityAnomaly>,
}

impl Checked for AvailabilityReport {
    type Anomaly = AvailabilityAnomaly;
    const NAME: &'static str = "availability";

    fn anomalies(&self) -> &[AvailabilityAnomaly] {
        &self.anomalies
    }
}

pub fn check(history: &History, faults: &[NemesisWindow], bounds: &Bounds) -> AvailabilityReport {
    // A fenced write or a noticed lease loss happens inside the harness and always succeeds;
    // counting it would hide every outage.
    let calls: Vec<&Call> = history
        .client_calls()
        .filter(|c| c.f().reaches_arbiter())
        .collect();
    let mut oks: Vec<u64> = calls
        .iter()
        .filter_map(|c| c.ok().map(|ok| ok.time_ns))
        .collect();
    oks.sort_unstable();
    let windows = unavailable_windows(&calls, &oks, bounds.min_window_ns);
    let recoveries: Vec<Recovery> = faults.iter().filter_map(|w| recovery(&calls, w)).collect();

    let mut anomalies = Vec::new();
    if let Some(bound_ns) = bounds.max_window_ns {
        anomalies.extend(
            windows
                .iter()
                .filter(|w| w.length_ns() > bound_ns)
                .map(|w| AvailabilityAnomaly::WindowTooLong {
                    window: w.clone(),
                    bound_ns,
                }),
        );
    }
    if let Some(bound_ns) = bounds.max_recovery_ns {
        anomalies.extend(
            recoveries
                .iter()
                .filter(|r| r.recovery_ns.is_none_or(|ns| ns > bound_ns))
                .map(|r| AvailabilityAnomaly::SlowRecovery {
                    recovery: r.clone(),
                    bound_ns,
                }),
        );
    }
    AvailabilityReport {
        bounds: *bounds,
        ok_calls: oks.len(),
        longest_window_ns: windows
            .iter()
            .map(UnavailableWindow::length_ns)
            .max()
            .unwrap_or(0),
        windows,
        recoveries,
        anomalies,
    }
}

/// Gaps between consecutive `ok` completions (and the run's first invoke / last event) during
/// which some call was waiting.
fn unavailable_windows(calls: &[&Call], oks: &[u64], min_window_ns: u64) -> Vec<UnavailableWindow> {
    let (Some(first), Some(last)) = (
        calls.iter().map(|c| c.invoke.time_ns).min(),
        calls.iter().map(|c| c.last_time_ns()).max(),
    ) else {
        return Vec::new();
    };
    let points: Vec<u64> = std::iter::once(first)
        .chain(oks.iter().copied())
        .chain(std::iter::once(last))
        .collect();
    points
        .windows(2)
        .filter(|p| p[1].saturating_sub(p[0]) >= min_window_ns)
        .filter_map(|p| {
            let (from_ns, to_ns) = (p[0], p[1]);
            // Waiting: invoked before the gap ended, and not answered (in any way) before it began.
            let waiting: Vec<OpIndex> = calls
                .iter()
                .filter(|c| {
                    c.invoke.time_ns < to_ns
                        && c.completion.as_ref().is_none_or(|e| e.time_ns > from_ns)
                })
                .map(|c| c.id())
                .collect();
            (!waiting.is_empty()).then(|| UnavailableWindow {
                from_ns,
                to_ns,
                waiting: waiting.len(),
                quoted: waiting.into_iter().take(QUOTED).collect(),
            })
        })
        .collect()
}

fn recovery(calls: &[&Call], fault: &NemesisWindow) -> Option<Recovery> {
    let (heal, healed_ns) = (fault.healed?, fault.healed_ns?);
    let first_ok = calls
        .iter()
        .filter(|c| c.invoke.index > heal)
        .filter_map(|c| c.ok().map(|ok| (ok.time_ns, c.id())))
        .min();
    Some(Recovery {
        fault: fault.fault.to_string(),
        heal,
        healed_ns,
        recovery_ns: first_ok.map(|(t, _)| t - healed_ns),
        first_ok: first_ok.map(|(_, id)| id),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::Verdict;
    use crate::history::{Op, OpType, Process, F};
    use crate::nemesis::Fault;
    use crate::testkit::Script;
    use serde_json::{json, Value};

    const MS: u64 = 1_000_000;

    fn read(s: &mut Script, kind: OpType, from_ms: u64, to_ms: u64) -> Op {
        let inv = s.invoke(1, F::Read, "tenant-1", Value::Null, from_ms * MS);
        s.complete(&inv, kind, json!(null), to_ms * MS);
        inv
    }

    /// Reads every 100 ms; a partition from 1 s to 4 s makes them time out; healed at 4 s.
    fn outage() -> (History, Vec<NemesisWindow>) {
        let mut s = Script::default();
        for t in 0..10 {
            read(&mut s, OpType::Ok, t * 100, t * 100 + 10);
        }
        let fault = serde_json::to_value(Fault::PartitionIsolateLeader).unwrap();
        let cut = s.op(
            Op::invoke(Process::Nemesis, F::Nemesis, "f0", fault),
            1_000 * MS,
        );
        s.op(cut.complete(OpType::Ok, Value::Null), 1_001 * MS);
        read(&mut s, OpType::Info, 1_010, 2_510);
        let waiting = s.invoke(1, F::Read, "tenant-1", Value::Null, 2_520 * MS);
        let heal = s.op(
            Op::invoke(Process::Nemesis, F::Heal, "f0", Value::Null),
            3_990 * MS,
        );
        s.op(heal.complete(OpType::Ok, Value::Null), 4_000 * MS);
        s.complete(&waiting, OpType::Ok, json!(null), 4_100 * MS);
        read(&mut s, OpType::Ok, 4_200, 4_300);
        let h = s.history();
        let w = NemesisWindow::from_history(&h).unwrap();
        (h, w)
    }

    #[test]
    fn outage_is_measured_and_recovery_timed_without_bounds_it_is_valid() {
        let (h, w) = outage();
        let report = check(&h, &w, &Bounds::default());
        assert_eq!(report.verdict(), Verdict::Valid);
        assert_eq!(report.windows.len(), 1, "{:?}", report.windows);
        let window = &report.windows[0];
        assert_eq!((window.from_ns, window.to_ns), (910 * MS, 4_100 * MS));
        assert_eq!(window.waiting, 2);
        // The read answered at 4.1 s was invoked before the heal, so it does not time the
        // recovery; the first call invoked after the heal succeeded 300 ms after it.
        assert_eq!(report.recoveries.len(), 1);
        assert_eq!(report.recoveries[0].recovery_ns, Some(300 * MS));
    }

    #[test]
    fn harness_local_calls_do_not_hide_an_outage() {
        let mut s = Script::default();
        read(&mut s, OpType::Ok, 0, 10);
        let stuck = s.invoke(1, F::Read, "tenant-1", Value::Null, 20 * MS);
        // The holder keeps writing into the harness's own fenced resource meanwhile.
        for t in 1..30 {
            let w = s.invoke(2, F::FencedWrite, "db/a", json!(t), t * 100 * MS);
            s.complete(&w, OpType::Ok, Value::Null, (t * 100 + 1) * MS);
        }
        s.complete(&stuck, OpType::Info, Value::Null, 3_020 * MS);
        read(&mut s, OpType::Ok, 3_100, 3_110);
        let report = check(&s.history(), &[], &Bounds::default());
        assert_eq!(report.windows.len(), 1, "{:?}", report.windows);
        assert_eq!(
            (report.windows[0].from_ns, report.windows[0].to_ns),
            (10 * MS, 3_110 * MS)
        );
    }

    /// Negative control: the same outage against tight bounds.
    #[test]
    fn outage_past_the_bounds_is_an_anomaly() {
        let (h, w) = outage();
        let bounds = Bounds {
            max_window_ns: Some(2_000 * MS),
            max_recovery_ns: Some(200 * MS),
            ..Bounds::default()
        };
        let report = check(&h, &w, &bounds);
        assert_eq!(report.verdict(), Verdict::Invalid);
        assert_eq!(report.anomalies.len(), 2, "{:?}", report.anomalies);
    }
}
