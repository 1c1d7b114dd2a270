//! Fenced resource: no stale write is ever accepted.
//!
//! Invariant checked: every accepted (`ok`) `fenced_write` carries a token, and that token is not
//! lower than any token of the same resource that the resource had accepted (`ok` fenced write)
//! before the write was invoked. The resource is judged on what it could know, as a database
//! would be: the tokens writers presented to it. A grant it was never shown does not make a
//! write stale here — that a holder stops writing by its deadline, before any successor's
//! grant, is `lease_exclusion`'s to check, and a new holder's first act is to present its token
//! (see the lease workload), so the window is its announcement's round trip. A write whose
//! outcome is unknown proves nothing and supersedes nothing.

use std::fmt;

use arbiter_core::FencingToken;
use serde::Serialize;

use super::{by_key, outranked, Anomaly, Checked, TokenedCall};
use crate::history::{History, OpIndex, Outcome, F};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FencedAnomaly {
    /// `write` was accepted with `token` although `superseded_by` had already made
    /// `newer_token` current.
    Stale {
        resource: String,
        write: OpIndex,
        token: FencingToken,
        superseded_by: OpIndex,
        newer_token: FencingToken,
    },
    /// An accepted write without a token: the resource is not fenced at all.
    Unfenced { resource: String, write: OpIndex },
}

impl fmt::Display for FencedAnomaly {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FencedAnomaly::Stale {
                resource,
                write,
                token,
                superseded_by,
                newer_token,
            } => write!(
                f,
                "{resource}: write {write} accepted with stale token {token}; {superseded_by} \
                 had already made {newer_token} current"
            ),
            FencedAnomaly::Unfenced { resource, write } => {
                write!(f, "{resource}: write {write} accepted without a token")
            }
        }
    }
}

impl Anomaly for FencedAnomaly {
    fn ops(&self) -> Vec<OpIndex> {
        match self {
            FencedAnomaly::Stale {
                write,
                superseded_by,
                ..
            } => vec![*write, *superseded_by],
            FencedAnomaly::Unfenced { write, .. } => vec![*write],
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct FencedReport {
    pub accepted: usize,
    pub rejected: usize,
    pub unknown: usize,
    /// Must be 0.
    pub stale_accepted: usize,
    pub anomalies: Vec<FencedAnomaly>,
}

impl Checked for FencedReport {
    type Anomaly = FencedAnomaly;
    const NAME: &'static str = "fenced_writes";

    fn anomalies(&self) -> &[FencedAnomaly] {
        &self.anomalies
    }
}

pub fn check(history: &History) -> FencedReport {
    let relevant = history.calls().iter().filter(|c| c.f() == F::FencedWrite);
    let mut report = FencedReport {
        accepted: 0,
        rejected: 0,
        unknown: 0,
        stale_accepted: 0,
        anomalies: Vec::new(),
    };
    for (resource, calls) in by_key(relevant) {
        let mut accepted = Vec::new();
        for &call in &calls {
            match call.outcome() {
                Outcome::Ok => report.accepted += 1,
                Outcome::Fail => report.rejected += 1,
                Outcome::Unknown => report.unknown += 1,
            }
            if call.ok().is_none() {
                continue;
            }
            match call.invoke.token {
                Some(token) => accepted.push(TokenedCall { call, token }),
                None => report.anomalies.push(FencedAnomaly::Unfenced {
                    resource: resource.to_string(),
                    write: call.id(),
                }),
            }
        }
        // A write is stale if the resource had accepted a higher token before it began.
        let stale = outranked(&accepted, &accepted);
        report.stale_accepted += stale.len();
        report.anomalies.extend(
            stale
                .into_iter()
                .map(|(newer, write)| FencedAnomaly::Stale {
                    resource: resource.to_string(),
                    write: write.call.id(),
                    token: write.token,
                    superseded_by: newer.call.id(),
                    newer_token: newer.token,
                }),
        );
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{Op, OpType, Process};
    use crate::testkit::Script;
    use serde_json::{json, Value};

    fn write(s: &mut Script, process: u64, token: Option<u64>, outcome: OpType, at: u64) -> Op {
        let mut inv = Op::invoke(Process::Client(process), F::FencedWrite, "db/a", json!("x"));
        inv.token = token.map(FencingToken);
        let inv = s.op(inv, at);
        s.complete(&inv, outcome, Value::Null, at + 5);
        inv
    }

    #[test]
    fn writes_with_current_tokens_pass_and_stale_ones_rejected_are_fine() {
        let mut s = Script::default();
        s.acquire(1, "db/a", "p1", (10, 1_000), 0, 10);
        write(&mut s, 1, Some(10), OpType::Ok, 20);
        write(&mut s, 1, Some(10), OpType::Ok, 30);
        s.acquire(2, "db/a", "p2", (20, 2_000), 40, 50);
        // The old holder's late write is rejected, as it must be.
        write(&mut s, 1, Some(10), OpType::Fail, 60);
        // Unknown outcome: proves nothing.
        write(&mut s, 1, Some(10), OpType::Info, 70);
        write(&mut s, 2, Some(20), OpType::Ok, 80);
        let report = check(&s.history());
        assert!(report.anomalies.is_empty(), "{:?}", report.anomalies);
        assert_eq!(
            (
                report.accepted,
                report.rejected,
                report.unknown,
                report.stale_accepted
            ),
            (3, 1, 1, 0)
        );
    }

    /// Negative control: a paused holder wakes up after its successor announced itself to the
    /// resource, and its write gets in.
    #[test]
    fn stale_write_accepted_after_the_successor_presented_its_token_is_caught() {
        let mut s = Script::default();
        s.acquire(1, "db/a", "p1", (10, 100), 0, 10);
        s.acquire(2, "db/a", "p2", (20, 2_000), 200, 210);
        let announced = write(&mut s, 2, Some(20), OpType::Ok, 215);
        let stale = write(&mut s, 1, Some(10), OpType::Ok, 300);
        let report = check(&s.history());
        assert_eq!(report.stale_accepted, 1);
        assert_eq!(
            report.anomalies,
            vec![FencedAnomaly::Stale {
                resource: "db/a".into(),
                write: stale.index,
                token: FencingToken(10),
                superseded_by: announced.index,
                newer_token: FencingToken(20),
            }]
        );
    }

    /// The resource believes only what writers present: a grant it never saw cannot make a
    /// write stale (whether the old holder should have written is another checker's question).
    #[test]
    fn a_grant_the_resource_never_saw_makes_no_write_stale() {
        let mut s = Script::default();
        s.acquire(1, "db/a", "p1", (10, 100), 0, 10);
        s.acquire(2, "db/a", "p2", (20, 2_000), 200, 210);
        write(&mut s, 1, Some(10), OpType::Ok, 300);
        let report = check(&s.history());
        assert!(report.anomalies.is_empty(), "{:?}", report.anomalies);
    }

    #[test]
    fn stale_after_a_newer_accepted_write_and_unfenced_writes_are_caught() {
        let mut s = Script::default();
        let newer = write(&mut s, 2, Some(20), OpType::Ok, 0);
        let stale = write(&mut s, 1, Some(10), OpType::Ok, 10);
        let unfenced = write(&mut s, 3, None, OpType::Ok, 20);
        let report = check(&s.history());
        assert_eq!(report.stale_accepted, 1);
        assert_eq!(report.anomalies.len(), 2, "{:?}", report.anomalies);
        assert!(report.anomalies.contains(&FencedAnomaly::Stale {
            resource: "db/a".into(),
            write: stale.index,
            token: FencingToken(10),
            superseded_by: newer.index,
            newer_token: FencingToken(20),
        }));
        assert!(report.anomalies.contains(&FencedAnomaly::Unfenced {
            resource: "db/a".into(),
            write: unfenced.index,
        }));
    }

    #[test]
    fn concurrent_grant_does_not_make_a_write_stale() {
        let mut s = Script::default();
        let grant = s.acquire_invoke(2, "db/a", "p2", 0);
        // Invoked before the grant completed: the resource may have seen it first.
        let w = Op::invoke(Process::Client(1), F::FencedWrite, "db/a", json!("x"))
            .with_token(FencingToken(10));
        let w = s.op(w, 5);
        s.grant(&grant, 20, 1_000, 10);
        s.complete(&w, OpType::Ok, Value::Null, 15);
        assert!(check(&s.history()).anomalies.is_empty());
    }
}
