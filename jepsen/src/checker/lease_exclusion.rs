//! Lease mutual exclusion, judged by the holders' own deadlines.
//!
//! Invariant checked: for each resource, no two different holders believe they hold the lease
//! at the same instant. A holder believes from the moment an `ok` grant or keep-alive reaches it
//! until the `valid_until_ns` it computed (send time + TTL − drift margin), cut short at the
//! invoke of its `release` or at its `lease_lost`; after either, that lease (holder, token) is
//! dead for good.
//! Calls with unknown outcome extend nothing: the holder never saw them succeed.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use arbiter_core::{FencingToken, HolderId};
use serde::Serialize;

use super::{by_key, Anomaly, Checked};
use crate::history::{Call, History, OpIndex, F};

/// One lease as its holder knows it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct LeaseId {
    pub holder: HolderId,
    pub token: FencingToken,
}

/// Where a holder's belief began: the grant or keep-alive whose response opened the stretch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Belief {
    pub lease: LeaseId,
    pub opened_by: OpIndex,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ExclusionAnomaly {
    /// Two holders believed they held `resource` during `[from_ns, to_ns)`.
    Overlap {
        resource: String,
        first: Belief,
        second: Belief,
        from_ns: u64,
        to_ns: u64,
    },
    /// A lease call lacks a field the check needs (`holder`, `token`, `valid_until_ns`).
    MissingField { op: OpIndex, field: &'static str },
}

impl fmt::Display for ExclusionAnomaly {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExclusionAnomaly::Overlap {
                resource,
                first,
                second,
                from_ns,
                to_ns,
            } => write!(
                f,
                "{resource}: holders {} (token {}) and {} (token {}) both valid for {:.3} ms",
                first.lease.holder,
                first.lease.token,
                second.lease.holder,
                second.lease.token,
                (to_ns - from_ns) as f64 / 1e6
            ),
            ExclusionAnomaly::MissingField { op, field } => {
                write!(f, "lease op {op} has no {field}")
            }
        }
    }
}

impl Anomaly for ExclusionAnomaly {
    fn ops(&self) -> Vec<OpIndex> {
        match self {
            ExclusionAnomaly::Overlap { first, second, .. } => {
                vec![first.opened_by, second.opened_by]
            }
            ExclusionAnomaly::MissingField { op, .. } => vec![*op],
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ExclusionReport {
    pub resources: usize,
    pub leases: usize,
    pub anomalies: Vec<ExclusionAnomaly>,
}

impl Checked for ExclusionReport {
    type Anomaly = ExclusionAnomaly;
    const NAME: &'static str = "lease_exclusion";

    fn anomalies(&self) -> &[ExclusionAnomaly] {
        &self.anomalies
    }
}

/// A stretch during which one holder believed it held the lease.
#[derive(Debug, Clone)]
struct Stretch {
    lease: LeaseId,
    opened_by: OpIndex,
    from_ns: u64,
    to_ns: u64,
}

pub fn check(history: &History) -> ExclusionReport {
    let lease_calls = history
        .calls()
        .iter()
        .filter(|c| matches!(c.f(), F::Acquire | F::Keepalive | F::Release | F::LeaseLost));
    let mut anomalies = Vec::new();
    let mut leases = 0;
    let resources = by_key(lease_calls);
    for (resource, calls) in &resources {
        let stretches = beliefs(calls, &mut anomalies);
        leases += stretches
            .iter()
            .map(|s| &s.lease)
            .collect::<BTreeSet<_>>()
            .len();
        anomalies.extend(overlaps(resource, merge(stretches)));
    }
    ExclusionReport {
        resources: resources.len(),
        leases,
        anomalies,
    }
}

/// Each holder's belief stretches for one resource, cut at release / loss.
fn beliefs(calls: &[&Call], anomalies: &mut Vec<ExclusionAnomaly>) -> Vec<Stretch> {
    let mut missing =
        |op: OpIndex, field| anomalies.push(ExclusionAnomaly::MissingField { op, field });
    let mut stretches = Vec::new();
    // Lease → earliest instant its holder stopped believing.
    let mut ended: BTreeMap<LeaseId, u64> = BTreeMap::new();
    for call in calls {
        let holder = call
            .invoke
            .holder
            .clone()
            .or_else(|| call.completion.as_ref().and_then(|c| c.holder.clone()));
        let Some(holder) = holder else {
            missing(call.id(), "holder");
            continue;
        };
        match call.f() {
            F::Acquire | F::Keepalive => {
                let Some(ok) = call.ok() else { continue };
                // A grant learns its token from the response; a keep-alive names it up front.
                let Some(token) = ok.token.or(call.invoke.token) else {
                    missing(call.id(), "token");
                    continue;
                };
                let Some(until) = ok.valid_until_ns else {
                    missing(call.id(), "valid_until_ns");
                    continue;
                };
                stretches.push(Stretch {
                    lease: LeaseId { holder, token },
                    opened_by: call.id(),
                    from_ns: ok.time_ns,
                    to_ns: until,
                });
            }
            // The holder stops at the moment it decides to, whatever the call's outcome.
            _ => {
                let Some(token) = call.invoke.token else {
                    missing(call.id(), "token");
                    continue;
                };
                let at = call.invoke.time_ns;
                ended
                    .entry(LeaseId { holder, token })
                    .and_modify(|t| *t = (*t).min(at))
                    .or_insert(at);
            }
        }
    }
    for s in &mut stretches {
        if let Some(&end) = ended.get(&s.lease) {
            s.to_ns = s.to_ns.min(end);
        }
    }
    stretches.retain(|s| s.from_ns < s.to_ns);
    stretches
}

/// Unions each lease's stretches, so one overlap is reported once, not once per keep-alive.
fn merge(mut stretches: Vec<Stretch>) -> Vec<Stretch> {
    stretches.sort_by(|a, b| (&a.lease, a.from_ns).cmp(&(&b.lease, b.from_ns)));
    let mut merged: Vec<Stretch> = Vec::with_capacity(stretches.len());
    for s in stretches {
        match merged.last_mut() {
            Some(last) if last.lease == s.lease && s.from_ns <= last.to_ns => {
                last.to_ns = last.to_ns.max(s.to_ns);
            }
            _ => merged.push(s),
        }
    }
    merged
}

/// Sweep in start order; every still-open stretch of another holder overlaps the new one.
fn overlaps(resource: &str, mut stretches: Vec<Stretch>) -> Vec<ExclusionAnomaly> {
    stretches.sort_by_key(|s| s.from_ns);
    let mut open: Vec<&Stretch> = Vec::new();
    let mut anomalies = Vec::new();
    for s in &stretches {
        open.retain(|o| o.to_ns > s.from_ns);
        for o in open.iter().filter(|o| o.lease.holder != s.lease.holder) {
            anomalies.push(ExclusionAnomaly::Overlap {
                resource: resource.to_string(),
                first: Belief {
                    lease: o.lease.clone(),
                    opened_by: o.opened_by,
                },
                second: Belief {
                    lease: s.lease.clone(),
                    opened_by: s.opened_by,
                },
                from_ns: s.from_ns,
                to_ns: o.to_ns.min(s.to_ns),
            });
        }
        open.push(s);
    }
    anomalies
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{Op, OpType, Process};
    use crate::testkit::Script;
    use serde_json::Value;

    fn lease_op(s: &mut Script, process: u64, f: F, holder: &str, token: u64, at: u64) {
        let inv = Op::invoke(Process::Client(process), f, "db/a", Value::Null)
            .with_holder(HolderId::new(holder))
            .with_token(FencingToken(token));
        let inv = s.op(inv, at);
        s.complete(&inv, OpType::Ok, Value::Null, at);
    }

    #[test]
    fn handover_after_the_first_deadline_is_exclusive() {
        let mut s = Script::default();
        s.acquire(1, "db/a", "p1", (10, 100), 0, 10);
        // p1's keep-alive extends its belief to 200.
        let ka = Op::invoke(Process::Client(1), F::Keepalive, "db/a", Value::Null)
            .with_holder(HolderId::new("p1"))
            .with_token(FencingToken(10));
        let ka = s.op(ka, 50);
        s.op(
            ka.complete(OpType::Ok, Value::Null).with_valid_until(200),
            60,
        );
        // p2 is granted at 200, exactly when p1's belief ends.
        s.acquire(2, "db/a", "p2", (20, 400), 150, 200);
        // p3 takes over after p2 released voluntarily at 250.
        lease_op(&mut s, 2, F::Release, "p2", 20, 250);
        s.acquire(3, "db/a", "p3", (30, 500), 255, 260);
        let report = check(&s.history());
        assert!(report.anomalies.is_empty(), "{:?}", report.anomalies);
        assert_eq!((report.resources, report.leases), (1, 3));
    }

    #[test]
    fn overlapping_holders_are_caught() {
        let mut s = Script::default();
        let a = s.acquire(1, "db/a", "p1", (10, 300), 0, 10);
        let b = s.acquire(2, "db/a", "p2", (20, 400), 100, 200);
        let report = check(&s.history());
        assert_eq!(report.anomalies.len(), 1, "{:?}", report.anomalies);
        let ExclusionAnomaly::Overlap {
            first,
            second,
            from_ns,
            to_ns,
            ..
        } = &report.anomalies[0]
        else {
            panic!("expected an overlap, got {:?}", report.anomalies);
        };
        assert_eq!((first.opened_by, second.opened_by), (a.index, b.index));
        assert_eq!((*from_ns, *to_ns), (200, 300));
    }

    #[test]
    fn lease_lost_in_time_is_exclusive_and_declared_too_late_overlaps() {
        // p1 declares the lease lost at 150, before p2 is granted: exclusive.
        let mut good = Script::default();
        good.acquire(1, "db/a", "p1", (10, 300), 0, 10);
        lease_op(&mut good, 1, F::LeaseLost, "p1", 10, 150);
        good.acquire(2, "db/a", "p2", (20, 400), 160, 200);
        assert!(check(&good.history()).anomalies.is_empty());

        // Same, but the loss is declared too late (after p2's grant arrived).
        let mut bad = Script::default();
        bad.acquire(1, "db/a", "p1", (10, 300), 0, 10);
        bad.acquire(2, "db/a", "p2", (20, 400), 100, 200);
        lease_op(&mut bad, 1, F::LeaseLost, "p1", 10, 250);
        assert_eq!(check(&bad.history()).anomalies.len(), 1);
    }

    #[test]
    fn unknown_grant_gives_no_belief_and_missing_fields_are_reported() {
        let mut s = Script::default();
        s.acquire(1, "db/a", "p1", (10, 300), 0, 10);
        let unknown = Op::invoke(Process::Client(2), F::Acquire, "db/a", Value::Null)
            .with_holder(HolderId::new("p2"));
        let unknown = s.op(unknown, 20);
        s.complete(&unknown, OpType::Info, Value::Null, 30);
        let no_deadline = Op::invoke(Process::Client(3), F::Acquire, "db/b", Value::Null)
            .with_holder(HolderId::new("p3"));
        let no_deadline = s.op(no_deadline, 40);
        s.op(
            no_deadline
                .complete(OpType::Ok, Value::Null)
                .with_token(FencingToken(11)),
            50,
        );
        let report = check(&s.history());
        assert_eq!(
            report.anomalies,
            vec![ExclusionAnomaly::MissingField {
                op: no_deadline.index,
                field: "valid_until_ns"
            }]
        );
    }
}
