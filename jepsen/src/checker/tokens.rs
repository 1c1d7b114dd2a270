//! Fencing-token order: every granted token is unique, and tokens follow real time.
//!
//! Invariant checked: tokens are log positions, so they are global — if grant A completed before
//! grant B was invoked, `token(A) < token(B)`, whatever the resources; and no two grants share a
//! token. Only `ok` acquires are grants: an `info` acquire's token was never seen.

use std::collections::BTreeMap;
use std::fmt;

use arbiter_core::FencingToken;
use serde::Serialize;

use super::{outranked, Anomaly, Checked, TokenedCall};
use crate::history::{History, OpIndex, F};

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TokenAnomaly {
    /// Two or more grants carry the same token.
    Duplicate {
        token: FencingToken,
        grants: Vec<OpIndex>,
    },
    /// `later` was invoked after `earlier` completed, yet got a lower token.
    OutOfOrder {
        earlier: OpIndex,
        earlier_token: FencingToken,
        later: OpIndex,
        later_token: FencingToken,
    },
    /// An `ok` acquire without a token: the grant cannot be fenced.
    MissingToken { grant: OpIndex },
}

impl fmt::Display for TokenAnomaly {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenAnomaly::Duplicate { token, grants } => {
                write!(f, "token {token} granted {} times", grants.len())
            }
            TokenAnomaly::OutOfOrder {
                earlier,
                earlier_token,
                later,
                later_token,
            } => write!(
                f,
                "grant {later} got token {later_token} after grant {earlier} had completed with \
                 {earlier_token}"
            ),
            TokenAnomaly::MissingToken { grant } => write!(f, "grant {grant} carries no token"),
        }
    }
}

impl Anomaly for TokenAnomaly {
    fn ops(&self) -> Vec<OpIndex> {
        match self {
            TokenAnomaly::Duplicate { grants, .. } => grants.clone(),
            TokenAnomaly::OutOfOrder { earlier, later, .. } => vec![*earlier, *later],
            TokenAnomaly::MissingToken { grant } => vec![*grant],
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct TokenReport {
    pub grants: usize,
    pub anomalies: Vec<TokenAnomaly>,
}

impl Checked for TokenReport {
    type Anomaly = TokenAnomaly;
    const NAME: &'static str = "tokens";

    fn anomalies(&self) -> &[TokenAnomaly] {
        &self.anomalies
    }
}

pub fn check(history: &History) -> TokenReport {
    let mut anomalies = Vec::new();
    let mut grants = Vec::new();
    for call in history.calls().iter().filter(|c| c.f() == F::Acquire) {
        let Some(ok) = call.ok() else { continue };
        match ok.token {
            Some(token) => grants.push(TokenedCall { call, token }),
            None => anomalies.push(TokenAnomaly::MissingToken { grant: call.id() }),
        }
    }

    let mut by_token: BTreeMap<FencingToken, Vec<OpIndex>> = BTreeMap::new();
    for g in &grants {
        by_token.entry(g.token).or_default().push(g.call.id());
    }
    anomalies.extend(
        by_token
            .into_iter()
            .filter(|(_, ops)| ops.len() > 1)
            .map(|(token, grants)| TokenAnomaly::Duplicate { token, grants }),
    );
    // Reports each late grant once, against the highest token granted before it began.
    anomalies.extend(
        outranked(&grants, &grants)
            .into_iter()
            .map(|(earlier, later)| TokenAnomaly::OutOfOrder {
                earlier: earlier.call.id(),
                earlier_token: earlier.token,
                later: later.call.id(),
                later_token: later.token,
            }),
    );

    TokenReport {
        grants: grants.len(),
        anomalies,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::Script;

    #[test]
    fn increasing_unique_tokens_pass_even_when_concurrent_grants_cross() {
        let mut s = Script::default();
        s.acquire(1, "db/a", "p1", (10, 1_000), 0, 10);
        // Concurrent with each other: any order of their tokens is fine.
        let b = s.acquire_invoke(2, "db/a", "p2", 20);
        let c = s.acquire_invoke(3, "db/b", "p3", 25);
        s.grant(&b, 30, 1_000, 40);
        s.grant(&c, 20, 1_000, 45);
        let report = check(&s.history());
        assert_eq!(report.grants, 3);
        assert_eq!(report.verdict(), super::super::Verdict::Valid, "{report:?}");
    }

    #[test]
    fn duplicate_token_is_caught() {
        let mut s = Script::default();
        let a = s.acquire(1, "db/a", "p1", (10, 1_000), 0, 10);
        let b = s.acquire(2, "db/b", "p2", (10, 1_000), 12, 15);
        let report = check(&s.history());
        assert_eq!(
            report.anomalies,
            vec![TokenAnomaly::Duplicate {
                token: FencingToken(10),
                grants: vec![a.index, b.index]
            }]
        );
    }

    #[test]
    fn token_going_backwards_in_real_time_is_caught() {
        let mut s = Script::default();
        let a = s.acquire(1, "db/a", "p1", (50, 1_000), 0, 10);
        let b = s.acquire(2, "db/a", "p2", (40, 1_000), 20, 30);
        let report = check(&s.history());
        assert_eq!(
            report.anomalies,
            vec![TokenAnomaly::OutOfOrder {
                earlier: a.index,
                earlier_token: FencingToken(50),
                later: b.index,
                later_token: FencingToken(40),
            }]
        );
    }
}
