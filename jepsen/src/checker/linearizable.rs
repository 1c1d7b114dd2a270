//! Linearizability of the tenant routing registers (`read`, `write`, `cas`), key by key.
//!
//! Invariant checked: for every key there is one total order of its calls that respects real
//! time (a call that ended before another was invoked comes first) and the semantics of a single
//! register starting at `null`. Search is Wing & Gong's, with Lowe's just-in-time linearization
//! and memoization of (set of linearized calls, register state) — the algorithm of knossos'
//! `linear` and porcupine. Keys are independent registers, so each is searched alone
//! (P-compositionality). Calls with unknown outcome may take effect at any point after their
//! invoke, or never; failed calls and reads without a value are dropped. Each key's search is
//! bounded by a step budget; past it the key is `Unknown`, never assumed linearizable.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

use serde::Serialize;
use serde_json::Value;

use super::{by_key, value_key, Anomaly, Checked, Verdict};
use crate::history::{Call, History, OpIndex, Outcome, F};

/// How much search one key may cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Budget {
    /// Search steps (one per list entry visited). Each step can add one memo entry of
    /// `ops / 8` bytes, so this also bounds memory.
    pub max_steps_per_key: u64,
}

impl Default for Budget {
    fn default() -> Self {
        Budget {
            max_steps_per_key: 2_000_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LinAnomaly {
    /// No order of `key`'s calls explains the history. The deepest partial order found
    /// linearized `max_linearized` calls and then could not place `stuck_at`, whose response
    /// had to come next.
    NotLinearizable {
        key: String,
        calls: usize,
        max_linearized: usize,
        stuck_at: OpIndex,
        /// The last calls of that deepest partial order, oldest first.
        linearized_tail: Vec<OpIndex>,
    },
    /// `op` read (or, as an `ok` cas, found) `value`, which no call could have written.
    Unexplained {
        key: String,
        op: OpIndex,
        value: Value,
    },
    /// A `cas` whose value is not `[expected, new]`.
    MalformedCas { key: String, op: OpIndex },
}

impl fmt::Display for LinAnomaly {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LinAnomaly::NotLinearizable {
                key,
                calls,
                max_linearized,
                stuck_at,
                ..
            } => write!(
                f,
                "register {key} not linearizable: at best {max_linearized} of {calls} calls \
                 ordered, then {stuck_at} fits nowhere"
            ),
            LinAnomaly::Unexplained { key, op, value } => {
                write!(f, "register {key}: {op} saw {value}, which nothing wrote")
            }
            LinAnomaly::MalformedCas { key, op } => {
                write!(f, "register {key}: cas {op} value is not [expected, new]")
            }
        }
    }
}

impl Anomaly for LinAnomaly {
    fn ops(&self) -> Vec<OpIndex> {
        match self {
            LinAnomaly::NotLinearizable {
                stuck_at,
                linearized_tail,
                ..
            } => std::iter::once(*stuck_at)
                .chain(linearized_tail.iter().copied())
                .collect(),
            LinAnomaly::Unexplained { op, .. } | LinAnomaly::MalformedCas { op, .. } => vec![*op],
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyOutcome {
    Linearizable,
    NotLinearizable,
    /// The budget ran out first.
    Unknown,
}

#[derive(Debug, Clone, Serialize)]
pub struct KeyResult {
    pub calls: usize,
    pub steps: u64,
    pub outcome: KeyOutcome,
}

#[derive(Debug, Clone, Serialize)]
pub struct LinearizabilityReport {
    pub budget: Budget,
    pub keys: BTreeMap<String, KeyResult>,
    pub anomalies: Vec<LinAnomaly>,
}

impl Checked for LinearizabilityReport {
    type Anomaly = LinAnomaly;
    const NAME: &'static str = "linearizable";

    fn anomalies(&self) -> &[LinAnomaly] {
        &self.anomalies
    }

    fn verdict(&self) -> Verdict {
        if !self.anomalies.is_empty() {
            Verdict::Invalid
        } else if self.keys.values().any(|k| k.outcome == KeyOutcome::Unknown) {
            Verdict::Unknown
        } else {
            Verdict::Valid
        }
    }
}

pub fn check(history: &History, budget: &Budget) -> LinearizabilityReport {
    let registers = history
        .calls()
        .iter()
        .filter(|c| matches!(c.f(), F::Read | F::Write | F::Cas));
    let mut report = LinearizabilityReport {
        budget: *budget,
        keys: BTreeMap::new(),
        anomalies: Vec::new(),
    };
    for (key, calls) in by_key(registers) {
        let ops = match prepare(&calls) {
            Ok(ops) => ops,
            Err(refuted) => {
                report.anomalies.push(match refuted {
                    Refuted::MalformedCas(op) => LinAnomaly::MalformedCas {
                        key: key.to_string(),
                        op,
                    },
                    Refuted::Unexplained { op, value } => LinAnomaly::Unexplained {
                        key: key.to_string(),
                        op,
                        value,
                    },
                });
                report.keys.insert(
                    key.to_string(),
                    KeyResult {
                        calls: calls.len(),
                        steps: 0,
                        outcome: KeyOutcome::NotLinearizable,
                    },
                );
                continue;
            }
        };
        let search = Search::new(&ops).run(budget.max_steps_per_key);
        let outcome = match search.result {
            SearchResult::Linearizable => KeyOutcome::Linearizable,
            SearchResult::Unknown => KeyOutcome::Unknown,
            SearchResult::NotLinearizable {
                max_linearized,
                stuck_at,
                tail,
            } => {
                report.anomalies.push(LinAnomaly::NotLinearizable {
                    key: key.to_string(),
                    calls: ops.len(),
                    max_linearized,
                    stuck_at: ops[stuck_at].id,
                    linearized_tail: tail.iter().map(|&i| ops[i].id).collect(),
                });
                KeyOutcome::NotLinearizable
            }
        };
        report.keys.insert(
            key.to_string(),
            KeyResult {
                calls: ops.len(),
                steps: search.steps,
                outcome,
            },
        );
    }
    report
}

/// Register state: an interned value; 0 is `null`, the initial state.
type State = u32;

#[derive(Debug, Clone, Copy)]
enum RegOp {
    Read(State),
    Write(State),
    /// Known to have swapped.
    Cas(State, State),
    /// Unknown outcome: swaps if it finds `expected`, else it is as if it never ran.
    MaybeCas(State, State),
}

impl RegOp {
    fn step(self, state: State) -> Option<State> {
        match self {
            RegOp::Read(v) => (v == state).then_some(state),
            RegOp::Write(v) => Some(v),
            RegOp::Cas(expected, new) => (expected == state).then_some(new),
            RegOp::MaybeCas(expected, new) => Some(if expected == state { new } else { state }),
        }
    }
}

struct LinOp {
    id: OpIndex,
    op: RegOp,
    invoked: OpIndex,
    /// `None`: unknown outcome, so it may take effect any time after the invoke.
    returned: Option<OpIndex>,
}

/// Why a key was refuted before any search.
enum Refuted {
    MalformedCas(OpIndex),
    /// A read returned, or an `ok` cas found, a value no call could have written.
    Unexplained {
        op: OpIndex,
        value: Value,
    },
}

/// A register call as the model sees it, before interning.
enum Parsed<'a> {
    Read(&'a Value),
    Write(&'a Value),
    Cas(&'a Value, &'a Value),
}

/// The calls that constrain the search.
///
/// Also drops unknown-outcome writes (and cas) whose value nobody ever observed — no read
/// returned it, no cas expected it. Dropping one never changes the verdict: wherever it could
/// have taken effect, nothing until the next write could tell, because anything there would
/// have had to observe its value. It matters: each unknown call stays pending to the end of the
/// history, so every one kept doubles the configurations the search may visit.
fn prepare(calls: &[&Call]) -> Result<Vec<LinOp>, Refuted> {
    let mut parsed = Vec::with_capacity(calls.len());
    for &call in calls {
        let outcome = call.outcome();
        let p = match (call.f(), outcome, call.ok()) {
            // A failed call did not happen; a read without a value says nothing.
            (_, Outcome::Fail, _) | (F::Read, Outcome::Unknown, _) => continue,
            (F::Read, _, Some(ok)) => Parsed::Read(&ok.value),
            (F::Read, _, None) => continue,
            (F::Write, _, _) => Parsed::Write(&call.invoke.value),
            _ => match call.invoke.value.as_array().map(Vec::as_slice) {
                Some([expected, new]) => Parsed::Cas(expected, new),
                _ => return Err(Refuted::MalformedCas(call.id())),
            },
        };
        parsed.push((call, outcome, p));
    }

    let mut observed = HashSet::new();
    let mut writable = HashSet::from([value_key(&Value::Null)]);
    for (_, _, p) in &parsed {
        match p {
            Parsed::Read(v) => {
                observed.insert(value_key(v));
            }
            Parsed::Write(v) => {
                writable.insert(value_key(v));
            }
            Parsed::Cas(expected, new) => {
                observed.insert(value_key(expected));
                writable.insert(value_key(new));
            }
        }
    }

    let mut values: HashMap<String, State> = HashMap::from([(value_key(&Value::Null), 0)]);
    let mut intern = |v: &Value| {
        let next = values.len() as State;
        *values.entry(value_key(v)).or_insert(next)
    };
    let mut ops = Vec::with_capacity(parsed.len());
    for (call, outcome, p) in parsed {
        let known = outcome == Outcome::Ok;
        let op = match p {
            Parsed::Read(v) | Parsed::Cas(v, _) if known && !writable.contains(&value_key(v)) => {
                return Err(Refuted::Unexplained {
                    op: call.id(),
                    value: v.clone(),
                })
            }
            Parsed::Write(v) | Parsed::Cas(_, v) if !known && !observed.contains(&value_key(v)) => {
                continue
            }
            Parsed::Read(v) => RegOp::Read(intern(v)),
            Parsed::Write(v) => RegOp::Write(intern(v)),
            Parsed::Cas(expected, new) if known => RegOp::Cas(intern(expected), intern(new)),
            Parsed::Cas(expected, new) => RegOp::MaybeCas(intern(expected), intern(new)),
        };
        ops.push(LinOp {
            id: call.id(),
            op,
            invoked: call.invoke.index,
            returned: call.end().map(|e| e.index),
        });
    }
    Ok(ops)
}

enum SearchResult {
    Linearizable,
    NotLinearizable {
        max_linearized: usize,
        stuck_at: usize,
        tail: Vec<usize>,
    },
    Unknown,
}

struct Outcomes {
    result: SearchResult,
    steps: u64,
}

/// How many linearized calls an anomaly quotes as context.
const TAIL: usize = 8;

/// The call/return events of one key as a doubly linked list (dancing links), so a call and its
/// return can be lifted out when linearized and put back in O(1) when the search backtracks.
struct Search<'a> {
    ops: &'a [LinOp],
    next: Vec<usize>,
    prev: Vec<usize>,
    /// Per list node: the op it belongs to and whether it is that op's call (else its return).
    node_op: Vec<(usize, bool)>,
    call_node: Vec<usize>,
    ret_node: Vec<usize>,
}

const HEAD: usize = 0;

impl<'a> Search<'a> {
    fn new(ops: &'a [LinOp]) -> Search<'a> {
        // Unknown returns go last: such a call may be linearized anywhere after its invoke.
        let mut events: Vec<(u64, usize, bool)> = Vec::with_capacity(ops.len() * 2);
        for (i, op) in ops.iter().enumerate() {
            events.push((op.invoked.0, i, true));
            events.push((op.returned.map_or(u64::MAX, |r| r.0), i, false));
        }
        events.sort_by_key(|&(pos, i, is_call)| (pos, i, !is_call));
        let tail = events.len() + 1;
        let mut node_op = vec![(usize::MAX, false); tail + 1];
        let mut call_node = vec![0; ops.len()];
        let mut ret_node = vec![0; ops.len()];
        for (n, &(_, i, is_call)) in events.iter().enumerate() {
            let node = n + 1;
            node_op[node] = (i, is_call);
            if is_call {
                call_node[i] = node;
            } else {
                ret_node[i] = node;
            }
        }
        Search {
            ops,
            next: (1..=tail).chain([tail]).collect(),
            prev: std::iter::once(HEAD).chain(0..tail).collect(),
            node_op,
            call_node,
            ret_node,
        }
    }

    fn unlink(&mut self, node: usize) {
        let (p, n) = (self.prev[node], self.next[node]);
        self.next[p] = n;
        self.prev[n] = p;
    }

    /// Reinserts `node` where it was; valid only in reverse order of `unlink`.
    fn relink(&mut self, node: usize) {
        let (p, n) = (self.prev[node], self.next[node]);
        self.next[p] = node;
        self.prev[n] = node;
    }

    fn lift(&mut self, op: usize) {
        self.unlink(self.call_node[op]);
        self.unlink(self.ret_node[op]);
    }

    fn unlift(&mut self, op: usize) {
        self.relink(self.ret_node[op]);
        self.relink(self.call_node[op]);
    }

    fn run(mut self, max_steps: u64) -> Outcomes {
        let tail_node = self.node_op.len() - 1;
        let words = self.ops.len().div_ceil(64);
        let mut linearized = vec![0u64; words];
        let mut seen: HashSet<(Vec<u64>, State)> = HashSet::new();
        // Linearized ops, in order, with the state before each.
        let mut stack: Vec<(usize, State)> = Vec::new();
        let mut state: State = 0;
        let mut deepest: Option<(usize, usize, Vec<usize>)> = None;
        let mut steps = 0u64;
        let mut node = self.next[HEAD];
        while self.next[HEAD] != tail_node {
            steps += 1;
            if steps > max_steps {
                return Outcomes {
                    result: SearchResult::Unknown,
                    steps,
                };
            }
            let (op, is_call) = self.node_op[node];
            if is_call {
                if let Some(new_state) = self.ops[op].op.step(state) {
                    linearized[op / 64] |= 1 << (op % 64);
                    if seen.insert((linearized.clone(), new_state)) {
                        stack.push((op, state));
                        state = new_state;
                        self.lift(op);
                        node = self.next[HEAD];
                        continue;
                    }
                    // This (set, state) was explored already and led nowhere.
                    linearized[op / 64] &= !(1 << (op % 64));
                }
                node = self.next[node];
                continue;
            }
            // A return: its call had to be linearized by now and was not — backtrack.
            if deepest
                .as_ref()
                .is_none_or(|(depth, _, _)| stack.len() > *depth)
            {
                let tail = stack[stack.len().saturating_sub(TAIL)..]
                    .iter()
                    .map(|&(op, _)| op)
                    .collect();
                deepest = Some((stack.len(), op, tail));
            }
            let Some((undone, before)) = stack.pop() else {
                // Nothing left to try. `deepest` was set just above, so it is present.
                let (max_linearized, stuck_at, tail) = deepest.unwrap_or_default();
                return Outcomes {
                    result: SearchResult::NotLinearizable {
                        max_linearized,
                        stuck_at,
                        tail,
                    },
                    steps,
                };
            };
            state = before;
            linearized[undone / 64] &= !(1 << (undone % 64));
            self.unlift(undone);
            node = self.next[self.call_node[undone]];
        }
        Outcomes {
            result: SearchResult::Linearizable,
            steps,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{Op, OpType};
    use crate::testkit::Script;
    use serde_json::json;

    /// Calls on register `tenant-1`, each invoked at `t.0` and completed at `t.1`.
    fn write(s: &mut Script, p: u64, v: Value, kind: OpType, t: (u64, u64)) -> Op {
        let inv = s.invoke(p, F::Write, "tenant-1", v, t.0);
        s.complete(&inv, kind, Value::Null, t.1);
        inv
    }

    fn read(s: &mut Script, p: u64, seen: Value, t: (u64, u64)) -> Op {
        let inv = s.invoke(p, F::Read, "tenant-1", Value::Null, t.0);
        s.complete(&inv, OpType::Ok, seen, t.1);
        inv
    }

    fn cas(s: &mut Script, p: u64, swap: [&str; 2], kind: OpType, t: (u64, u64)) -> Op {
        let inv = s.invoke(p, F::Cas, "tenant-1", json!(swap), t.0);
        s.complete(&inv, kind, Value::Null, t.1);
        inv
    }

    fn outcome(s: Script) -> (Verdict, LinearizabilityReport) {
        let report = check(&s.history(), &Budget::default());
        (report.verdict(), report)
    }

    /// Negative control: write 1 completes, then a later read still returns the initial value.
    #[test]
    fn stale_read_after_completed_write_is_not_linearizable() {
        let mut s = Script::default();
        write(&mut s, 1, json!(1), OpType::Ok, (0, 10));
        let r = read(&mut s, 2, Value::Null, (20, 30));
        let (verdict, report) = outcome(s);
        assert_eq!(verdict, Verdict::Invalid);
        let LinAnomaly::NotLinearizable {
            stuck_at,
            max_linearized,
            ..
        } = &report.anomalies[0]
        else {
            panic!("{:?}", report.anomalies)
        };
        assert_eq!((*stuck_at, *max_linearized), (r.index, 1));
    }

    #[test]
    fn concurrent_read_may_see_either_value() {
        for seen in [Value::Null, json!(1)] {
            let mut s = Script::default();
            let w = s.invoke(1, F::Write, "tenant-1", json!(1), 0);
            read(&mut s, 2, seen.clone(), (5, 8));
            s.complete(&w, OpType::Ok, Value::Null, 10);
            assert_eq!(outcome(s).0, Verdict::Valid, "read {seen}");
        }
    }

    #[test]
    fn cas_chain_is_linearizable_and_a_lost_cas_is_not() {
        let mut good = Script::default();
        write(&mut good, 1, json!("us-east-1"), OpType::Ok, (0, 10));
        cas(
            &mut good,
            2,
            ["us-east-1", "us-west-2"],
            OpType::Ok,
            (20, 30),
        );
        // Failed cas: did not happen, constrains nothing.
        cas(&mut good, 3, ["eu-central-1", "x"], OpType::Fail, (40, 50));
        read(&mut good, 1, json!("us-west-2"), (60, 70));
        assert_eq!(outcome(good).0, Verdict::Valid);

        // Two cas from the same value both succeed, one after the other: one swap was lost.
        let mut bad = Script::default();
        write(&mut bad, 1, json!("us-east-1"), OpType::Ok, (0, 10));
        cas(
            &mut bad,
            2,
            ["us-east-1", "us-west-2"],
            OpType::Ok,
            (20, 30),
        );
        cas(
            &mut bad,
            3,
            ["us-east-1", "eu-central-1"],
            OpType::Ok,
            (40, 50),
        );
        assert_eq!(outcome(bad).0, Verdict::Invalid);
    }

    #[test]
    fn unknown_write_may_apply_late_or_never() {
        // The write times out; reads after it may see it or not, but once seen it cannot be
        // unseen.
        let mut s = Script::default();
        write(&mut s, 1, json!(1), OpType::Info, (0, 10));
        read(&mut s, 2, Value::Null, (20, 30));
        read(&mut s, 2, json!(1), (40, 50));
        assert_eq!(outcome(s).0, Verdict::Valid);

        let mut flip = Script::default();
        write(&mut flip, 1, json!(1), OpType::Info, (0, 10));
        read(&mut flip, 2, json!(1), (20, 30));
        read(&mut flip, 2, Value::Null, (40, 50));
        assert_eq!(outcome(flip).0, Verdict::Invalid);
    }

    #[test]
    fn keys_are_independent_and_budget_exhaustion_is_unknown() {
        let mut s = Script::default();
        write(&mut s, 1, json!(1), OpType::Ok, (0, 10));
        read(&mut s, 1, json!(1), (12, 15));
        // Another key: its initial null is not affected by tenant-1's write.
        let other = s.invoke(2, F::Read, "tenant-2", Value::Null, 20);
        s.complete(&other, OpType::Ok, Value::Null, 30);
        let h = s.history();
        let report = check(&h, &Budget::default());
        assert_eq!(report.verdict(), Verdict::Valid);
        assert_eq!(report.keys.len(), 2);

        // tenant-1 needs two steps (linearize the write, then the read).
        let starved = check(
            &h,
            &Budget {
                max_steps_per_key: 1,
            },
        );
        assert_eq!(starved.verdict(), Verdict::Unknown);
        assert_eq!(starved.keys["tenant-1"].outcome, KeyOutcome::Unknown);
        assert_eq!(starved.keys["tenant-2"].outcome, KeyOutcome::Linearizable);
    }

    #[test]
    fn many_concurrent_writers_stay_tractable() {
        // 12 overlapping writes and reads of every value: exponential without memoization.
        let mut s = Script::default();
        let writes: Vec<Op> = (0..12)
            .map(|p| s.invoke(p, F::Write, "tenant-1", json!(p), p))
            .collect();
        for (p, w) in writes.iter().enumerate() {
            s.complete(w, OpType::Ok, Value::Null, 100 + p as u64);
        }
        read(&mut s, 0, json!(7), (200, 210));
        let report = check(&s.history(), &Budget::default());
        assert_eq!(report.verdict(), Verdict::Valid);
        let steps = report.keys["tenant-1"].steps;
        assert!(steps < 200_000, "{steps} steps");
    }

    #[test]
    fn read_of_a_value_nobody_wrote_is_refuted_without_search() {
        let mut s = Script::default();
        write(&mut s, 1, json!(1), OpType::Ok, (0, 10));
        let r = read(&mut s, 2, json!(99), (20, 30));
        let (verdict, report) = outcome(s);
        assert_eq!(verdict, Verdict::Invalid);
        assert_eq!(
            report.anomalies,
            vec![LinAnomaly::Unexplained {
                key: "tenant-1".into(),
                op: r.index,
                value: json!(99)
            }]
        );
        assert_eq!(report.keys["tenant-1"].steps, 0);
    }

    /// Regression: every timed-out write stays pending to the end of the history, so 30 of them
    /// made a stale read cost 2^30 configurations before they were dropped as unobserved.
    #[test]
    fn unobserved_timed_out_writes_do_not_blow_up_the_search() {
        let mut s = Script::default();
        write(&mut s, 1, json!("old"), OpType::Ok, (0, 10));
        write(&mut s, 1, json!("new"), OpType::Ok, (20, 30));
        for i in 0..30 {
            write(
                &mut s,
                2,
                json!(100 + i),
                OpType::Info,
                (40 + 2 * i, 41 + 2 * i),
            );
        }
        // A timed-out write that *was* observed is kept, and may explain a later read.
        write(&mut s, 3, json!("seen"), OpType::Info, (110, 120));
        read(&mut s, 1, json!("seen"), (130, 140));
        read(&mut s, 1, json!("old"), (150, 160));
        let report = check(
            &s.history(),
            &Budget {
                max_steps_per_key: 10_000,
            },
        );
        assert_eq!(report.verdict(), Verdict::Invalid, "{:?}", report.keys);
        assert_eq!(report.keys["tenant-1"].calls, 5);
    }

    /// Soundness: histories of a real atomic register (each call takes effect at a random instant
    /// inside its interval, some calls time out) are always linearizable, whatever the overlap.
    #[test]
    fn simulated_atomic_register_histories_always_pass() {
        use rand::{Rng, SeedableRng};
        for seed in 0..20 {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            // (time, is_completion, process, op, outcome, value) events of 4 processes.
            struct Planned {
                process: u64,
                f: F,
                arg: Value,
                invoke: u64,
                point: u64,
                complete: u64,
                timed_out: bool,
            }
            let mut planned = Vec::new();
            for process in 0..4u64 {
                let mut t = rng.random_range(0..50);
                for n in 0..60u64 {
                    let invoke = t;
                    let point = invoke + rng.random_range(0..100);
                    let complete = point + 1 + rng.random_range(0..100);
                    let v = json!(process * 1000 + n);
                    let (f, arg) = match rng.random_range(0..3) {
                        0 => (F::Read, Value::Null),
                        1 => (F::Write, v),
                        _ => (F::Cas, json!([process * 1000 + n.saturating_sub(1), v])),
                    };
                    planned.push(Planned {
                        process,
                        f,
                        arg,
                        invoke,
                        point,
                        complete,
                        timed_out: rng.random_bool(0.05),
                    });
                    t = complete + 1 + rng.random_range(0..20);
                }
            }
            // Apply at the linearization points, in time order (ties broken by process).
            let mut order: Vec<usize> = (0..planned.len()).collect();
            order.sort_by_key(|&i| (planned[i].point, planned[i].process));
            let mut state = Value::Null;
            let mut results = vec![(OpType::Ok, Value::Null); planned.len()];
            for i in order {
                let p = &planned[i];
                // A timed-out call may or may not have happened.
                if p.timed_out && p.f != F::Read && rng.random_bool(0.5) {
                    continue;
                }
                results[i] = match p.f {
                    F::Read => (OpType::Ok, state.clone()),
                    F::Write => {
                        state = p.arg.clone();
                        (OpType::Ok, Value::Null)
                    }
                    _ if state == p.arg[0] => {
                        state = p.arg[1].clone();
                        (OpType::Ok, Value::Null)
                    }
                    _ => (OpType::Fail, Value::Null),
                };
            }
            // Record: events by time; completions before invokes at the same instant.
            let mut events: Vec<(u64, bool, usize)> = Vec::new();
            for (i, p) in planned.iter().enumerate() {
                events.push((p.invoke, true, i));
                events.push((p.complete, false, i));
            }
            events.sort();
            let mut s = Script::default();
            let mut invokes = vec![None; planned.len()];
            for (t, is_invoke, i) in events {
                let p = &planned[i];
                if is_invoke {
                    invokes[i] = Some(s.invoke(p.process, p.f, "tenant-1", p.arg.clone(), t));
                } else if let Some(inv) = &invokes[i] {
                    let (kind, value) = if p.timed_out {
                        (OpType::Info, Value::Null)
                    } else {
                        results[i].clone()
                    };
                    s.complete(inv, kind, value, t);
                }
            }
            let report = check(&s.history(), &Budget::default());
            assert_eq!(
                report.verdict(),
                Verdict::Valid,
                "seed {seed}: {:?}",
                report.anomalies
            );
        }
    }
}
