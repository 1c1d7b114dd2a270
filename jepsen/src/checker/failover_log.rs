//! Failover log: append-only, one order, nothing acknowledged ever lost.
//!
//! Invariant checked, per log: every `ok` `read_log` is a prefix of one total order (the longest
//! read); no read holds an element twice, nor an element nobody appended (or whose append
//! failed); an append acknowledged before a read was invoked is in that read (so in the final
//! read); and appends follow real time — if A was acknowledged before B was invoked, A comes
//! first. Elements are compared as JSON values, so appended values must be unique per log.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

use serde::Serialize;
use serde_json::Value;

use super::{by_key, value_key, Anomaly, Checked};
use crate::history::{Call, History, OpIndex, Outcome, F};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LogAnomaly {
    /// `read` holds `element` more than once.
    Duplicate {
        log: String,
        read: OpIndex,
        element: Value,
    },
    /// `read` and the longest read `reference` disagree at `position`: no single order.
    Divergent {
        log: String,
        read: OpIndex,
        reference: OpIndex,
        position: usize,
    },
    /// `read` was invoked after `append` was acknowledged, yet lacks its element.
    Lost {
        log: String,
        append: OpIndex,
        read: OpIndex,
    },
    /// `read` holds an element no append could have written.
    Phantom {
        log: String,
        read: OpIndex,
        element: Value,
    },
    /// `first` was acknowledged before `second` was invoked, yet comes after it in `read`.
    Reordered {
        log: String,
        first: OpIndex,
        second: OpIndex,
        read: OpIndex,
    },
    /// A read whose value is not a list.
    NotAList { log: String, read: OpIndex },
}

impl fmt::Display for LogAnomaly {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LogAnomaly::Duplicate { log, read, element } => {
                write!(f, "log {log}: read {read} holds {element} twice")
            }
            LogAnomaly::Divergent {
                log,
                read,
                reference,
                position,
            } => write!(
                f,
                "log {log}: read {read} is not a prefix of read {reference} (differs at {position})"
            ),
            LogAnomaly::Lost { log, append, read } => write!(
                f,
                "log {log}: acknowledged append {append} missing from later read {read}"
            ),
            LogAnomaly::Phantom { log, read, element } => {
                write!(f, "log {log}: read {read} holds {element}, never appended")
            }
            LogAnomaly::Reordered {
                log,
                first,
                second,
                read,
            } => write!(
                f,
                "log {log}: read {read} puts {second} before {first}, which was acknowledged \
                 before {second} began"
            ),
            LogAnomaly::NotAList { log, read } => {
                write!(f, "log {log}: read {read} did not return a list")
            }
        }
    }
}

impl Anomaly for LogAnomaly {
    fn ops(&self) -> Vec<OpIndex> {
        match self {
            LogAnomaly::Duplicate { read, .. }
            | LogAnomaly::Phantom { read, .. }
            | LogAnomaly::NotAList { read, .. } => vec![*read],
            LogAnomaly::Divergent {
                read, reference, ..
            } => vec![*read, *reference],
            LogAnomaly::Lost { append, read, .. } => vec![*append, *read],
            LogAnomaly::Reordered {
                first,
                second,
                read,
                ..
            } => vec![*first, *second, *read],
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct LogReport {
    pub logs: usize,
    pub acknowledged_appends: usize,
    pub reads: usize,
    /// Acknowledged appends no later read could confirm (no read was invoked after them).
    pub unconfirmed: usize,
    pub anomalies: Vec<LogAnomaly>,
}

impl Checked for LogReport {
    type Anomaly = LogAnomaly;
    const NAME: &'static str = "failover_log";

    fn anomalies(&self) -> &[LogAnomaly] {
        &self.anomalies
    }
}

pub fn check(history: &History) -> LogReport {
    let calls = history
        .calls()
        .iter()
        .filter(|c| matches!(c.f(), F::Append | F::ReadLog));
    let mut report = LogReport {
        logs: 0,
        acknowledged_appends: 0,
        reads: 0,
        unconfirmed: 0,
        anomalies: Vec::new(),
    };
    for (log, calls) in by_key(calls) {
        report.logs += 1;
        check_log(log, &calls, &mut report);
    }
    report
}

struct Read<'a> {
    call: &'a Call,
    elements: &'a [Value],
}

fn check_log(log: &str, calls: &[&Call], report: &mut LogReport) {
    let anomalies = &mut report.anomalies;
    let mut reads = Vec::new();
    // Element → the append that wrote it (any outcome but fail may have).
    let mut possible: HashMap<String, &Call> = HashMap::new();
    let mut acked = Vec::new();
    for &call in calls {
        match (call.f(), call.outcome()) {
            (F::Append, Outcome::Fail) => {}
            (F::Append, outcome) => {
                possible.insert(value_key(&call.invoke.value), call);
                if outcome == Outcome::Ok {
                    acked.push(call);
                }
            }
            (_, Outcome::Ok) => match call.ok().and_then(|ok| ok.value.as_array()) {
                Some(elements) => reads.push(Read { call, elements }),
                None => anomalies.push(LogAnomaly::NotAList {
                    log: log.to_string(),
                    read: call.id(),
                }),
            },
            _ => {}
        }
    }
    report.acknowledged_appends += acked.len();
    report.reads += reads.len();

    let mut confirmed: HashSet<OpIndex> = HashSet::new();
    for read in &reads {
        let held: HashSet<String> = read.elements.iter().map(value_key).collect();
        let mut counted: HashSet<String> = HashSet::new();
        for element in read.elements {
            let key = value_key(element);
            if !counted.insert(key.clone()) {
                anomalies.push(LogAnomaly::Duplicate {
                    log: log.to_string(),
                    read: read.call.id(),
                    element: element.clone(),
                });
            }
            if !possible.contains_key(&key) {
                anomalies.push(LogAnomaly::Phantom {
                    log: log.to_string(),
                    read: read.call.id(),
                    element: element.clone(),
                });
            }
        }
        for append in acked.iter().filter(|a| a.precedes(read.call)) {
            confirmed.insert(append.id());
            if !held.contains(&value_key(&append.invoke.value)) {
                anomalies.push(LogAnomaly::Lost {
                    log: log.to_string(),
                    append: append.id(),
                    read: read.call.id(),
                });
            }
        }
    }
    report.unconfirmed += acked.len() - confirmed.len();

    // The longest read is the reference order; earliest on ties.
    let Some(reference) = reads.iter().rev().max_by_key(|r| r.elements.len()) else {
        return;
    };
    for read in &reads {
        if let Some(position) = read
            .elements
            .iter()
            .zip(reference.elements)
            .position(|(a, b)| a != b)
        {
            anomalies.push(LogAnomaly::Divergent {
                log: log.to_string(),
                read: read.call.id(),
                reference: reference.call.id(),
                position,
            });
        }
    }
    anomalies.extend(reordered(log, reference, &possible));
}

/// Walks the reference order from its end, remembering the earliest acknowledgement among the
/// appends placed later; if that acknowledgement came before an earlier-placed append was even
/// invoked, real time was violated.
fn reordered(
    log: &str,
    reference: &Read<'_>,
    possible: &HashMap<String, &Call>,
) -> Vec<LogAnomaly> {
    let placed: Vec<&Call> = reference
        .elements
        .iter()
        .filter_map(|e| possible.get(&value_key(e)).copied())
        .collect();
    let mut anomalies = Vec::new();
    let mut earliest_later: BTreeMap<OpIndex, &Call> = BTreeMap::new();
    for &second in placed.iter().rev() {
        if let Some((_, &first)) = earliest_later.first_key_value() {
            if first.precedes(second) {
                anomalies.push(LogAnomaly::Reordered {
                    log: log.to_string(),
                    first: first.id(),
                    second: second.id(),
                    read: reference.call.id(),
                });
            }
        }
        if let Some(end) = second.end() {
            earliest_later.insert(end.index, second);
        }
    }
    anomalies
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{Op, OpType};
    use crate::testkit::Script;
    use serde_json::json;

    fn append(s: &mut Script, p: u64, v: u64, kind: OpType, t: (u64, u64)) -> Op {
        let inv = s.invoke(p, F::Append, "failovers", json!(v), t.0);
        s.complete(&inv, kind, Value::Null, t.1);
        inv
    }

    fn read(s: &mut Script, p: u64, list: Value, t: (u64, u64)) -> Op {
        let inv = s.invoke(p, F::ReadLog, "failovers", Value::Null, t.0);
        s.complete(&inv, OpType::Ok, list, t.1);
        inv
    }

    #[test]
    fn prefix_reads_with_every_acknowledged_append_pass() {
        let mut s = Script::default();
        append(&mut s, 1, 1, OpType::Ok, (0, 10));
        read(&mut s, 2, json!([1]), (15, 20));
        append(&mut s, 1, 2, OpType::Ok, (30, 40));
        // Unknown outcome: may or may not show up.
        append(&mut s, 1, 3, OpType::Info, (50, 60));
        append(&mut s, 3, 4, OpType::Fail, (61, 65));
        read(&mut s, 2, json!([1, 2]), (70, 80));
        read(&mut s, 2, json!([1, 2, 3]), (90, 100));
        let report = check(&s.history());
        assert!(report.anomalies.is_empty(), "{:?}", report.anomalies);
        assert_eq!(
            (
                report.acknowledged_appends,
                report.reads,
                report.unconfirmed
            ),
            (2, 3, 0)
        );
    }

    /// Negative control: an acknowledged append that the final read lacks.
    #[test]
    fn missing_acknowledged_append_is_caught() {
        let mut s = Script::default();
        append(&mut s, 1, 1, OpType::Ok, (0, 10));
        let lost = append(&mut s, 1, 2, OpType::Ok, (20, 30));
        let r = read(&mut s, 2, json!([1]), (40, 50));
        let report = check(&s.history());
        assert_eq!(
            report.anomalies,
            vec![LogAnomaly::Lost {
                log: "failovers".into(),
                append: lost.index,
                read: r.index
            }]
        );
    }

    /// Negative control: an entry applied twice (a retried append committed twice).
    #[test]
    fn duplicated_append_is_caught() {
        let mut s = Script::default();
        append(&mut s, 1, 1, OpType::Ok, (0, 10));
        let r = read(&mut s, 2, json!([1, 1]), (20, 30));
        let report = check(&s.history());
        assert_eq!(
            report.anomalies,
            vec![LogAnomaly::Duplicate {
                log: "failovers".into(),
                read: r.index,
                element: json!(1)
            }]
        );
    }

    #[test]
    fn divergent_and_phantom_reads_are_caught() {
        let mut s = Script::default();
        append(&mut s, 1, 1, OpType::Ok, (0, 10));
        append(&mut s, 1, 2, OpType::Ok, (20, 30));
        append(&mut s, 1, 3, OpType::Fail, (35, 38));
        let r1 = read(&mut s, 2, json!([2, 1]), (40, 50));
        let r2 = read(&mut s, 2, json!([1, 2, 3]), (60, 70));
        let report = check(&s.history());
        let expected = [
            LogAnomaly::Phantom {
                log: "failovers".into(),
                read: r2.index,
                element: json!(3),
            },
            LogAnomaly::Divergent {
                log: "failovers".into(),
                read: r1.index,
                reference: r2.index,
                position: 0,
            },
        ];
        assert_eq!(
            report.anomalies.len(),
            expected.len(),
            "{:?}",
            report.anomalies
        );
        for e in &expected {
            assert!(
                report.anomalies.contains(e),
                "missing {e}: {:?}",
                report.anomalies
            );
        }
    }

    #[test]
    fn order_against_real_time_is_caught() {
        let mut s = Script::default();
        let first = append(&mut s, 1, 1, OpType::Ok, (0, 10));
        let second = append(&mut s, 1, 2, OpType::Ok, (20, 30));
        let r = read(&mut s, 2, json!([2, 1]), (40, 50));
        let report = check(&s.history());
        assert_eq!(
            report.anomalies,
            vec![LogAnomaly::Reordered {
                log: "failovers".into(),
                first: first.index,
                second: second.index,
                read: r.index
            }]
        );
    }
}
