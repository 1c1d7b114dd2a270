//! Checkers: each reads a well-formed [`History`] and returns a typed result whose anomalies name
//! the ops that show them.
//!
//! Invariant: a checker only reports what the history proves. `info` and unfinished calls count
//! as "may have taken effect, at any time after the invoke", so an anomaly is never the product of
//! an unknown outcome; when a search cannot decide, the verdict is `Unknown`, not `Valid`.

pub mod availability;
pub mod durability;
pub mod failover_log;
pub mod fenced_writes;
pub mod lease_exclusion;
pub mod linearizable;
pub mod tokens;

use std::collections::BTreeMap;
use std::fmt;

use arbiter_core::FencingToken;
use serde::Serialize;
use serde_json::Value;

use crate::history::{Call, History, OpIndex};
use crate::nemesis::{NemesisWindow, WindowError};

/// A checker's overall judgement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Valid,
    /// The search gave up (budget); nothing was proven either way.
    Unknown,
    Invalid,
}

/// One anomaly: what went wrong (its `Display`) and which calls show it.
pub trait Anomaly: fmt::Display {
    /// Indexes of the ops involved (an invocation or a completion, either names its call), for
    /// the timeline and per-fault attribution.
    fn ops(&self) -> Vec<OpIndex>;
}

/// A checker's typed result.
pub trait Checked {
    type Anomaly: Anomaly;

    const NAME: &'static str;

    fn anomalies(&self) -> &[Self::Anomaly];

    fn verdict(&self) -> Verdict {
        if self.anomalies().is_empty() {
            Verdict::Valid
        } else {
            Verdict::Invalid
        }
    }
}

/// Tunables for the checkers that have any.
#[derive(Debug, Clone, Default)]
pub struct CheckConfig {
    pub linearizability: linearizable::Budget,
    pub availability: availability::Bounds,
}

/// Every checker's result for one history.
#[derive(Debug, Clone, Serialize)]
pub struct Results {
    pub verdict: Verdict,
    /// The faults as the history shows them.
    pub nemesis: Vec<NemesisWindow>,
    pub tokens: tokens::TokenReport,
    pub lease_exclusion: lease_exclusion::ExclusionReport,
    pub fenced_writes: fenced_writes::FencedReport,
    pub linearizable: linearizable::LinearizabilityReport,
    pub failover_log: failover_log::LogReport,
    pub durability: durability::DurabilityReport,
    pub availability: availability::AvailabilityReport,
}

/// An anomaly flattened for reporting.
#[derive(Debug, Clone, Serialize)]
pub struct AnomalyMark {
    pub checker: &'static str,
    pub what: String,
    pub ops: Vec<OpIndex>,
}

fn marks<C: Checked>(result: &C) -> impl Iterator<Item = AnomalyMark> + '_ {
    result.anomalies().iter().map(|a| AnomalyMark {
        checker: C::NAME,
        what: a.to_string(),
        ops: a.ops(),
    })
}

impl Results {
    /// Verdict per checker, in report order.
    pub fn verdicts(&self) -> Vec<(&'static str, Verdict)> {
        vec![
            verdict_of(&self.tokens),
            verdict_of(&self.lease_exclusion),
            verdict_of(&self.fenced_writes),
            verdict_of(&self.linearizable),
            verdict_of(&self.failover_log),
            verdict_of(&self.durability),
            verdict_of(&self.availability),
        ]
    }

    /// Every anomaly of every checker.
    pub fn anomaly_marks(&self) -> Vec<AnomalyMark> {
        marks(&self.tokens)
            .chain(marks(&self.lease_exclusion))
            .chain(marks(&self.fenced_writes))
            .chain(marks(&self.linearizable))
            .chain(marks(&self.failover_log))
            .chain(marks(&self.durability))
            .chain(marks(&self.availability))
            .collect()
    }
}

fn verdict_of<C: Checked>(result: &C) -> (&'static str, Verdict) {
    (C::NAME, result.verdict())
}

/// Runs every checker. Fails only if the nemesis ops cannot be read as fault windows.
pub fn check_all(history: &History, config: &CheckConfig) -> Result<Results, WindowError> {
    let windows = NemesisWindow::from_history(history)?;
    let mut results = Results {
        verdict: Verdict::Valid,
        tokens: tokens::check(history),
        lease_exclusion: lease_exclusion::check(history),
        fenced_writes: fenced_writes::check(history),
        linearizable: linearizable::check(history, &config.linearizability),
        failover_log: failover_log::check(history),
        durability: durability::check(history, &windows),
        availability: availability::check(history, &windows, &config.availability),
        nemesis: windows,
    };
    // Invalid beats Unknown beats Valid.
    results.verdict = results
        .verdicts()
        .into_iter()
        .map(|(_, v)| v)
        .max()
        .unwrap_or(Verdict::Valid);
    Ok(results)
}

/// A call and the fencing token it was granted or presented.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TokenedCall<'a> {
    pub call: &'a Call,
    pub token: FencingToken,
}

/// Real-time token order in one sweep. Pairs each of `later` (given in invocation order) with
/// the highest-token entry of `earlier` whose call had definitely ended before it was invoked,
/// whenever that token is above its own: `(earlier, later)`.
pub(crate) fn outranked<'a>(
    earlier: &[TokenedCall<'a>],
    later: &[TokenedCall<'a>],
) -> Vec<(TokenedCall<'a>, TokenedCall<'a>)> {
    let mut ended: Vec<TokenedCall> = earlier
        .iter()
        .filter(|t| t.call.end().is_some())
        .copied()
        .collect();
    ended.sort_by_key(|t| t.call.end().map(|e| e.index));
    let mut ended = ended.into_iter().peekable();
    let mut highest: Option<TokenedCall> = None;
    let mut pairs = Vec::new();
    for l in later {
        while let Some(e) = ended.next_if(|e| e.call.precedes(l.call)) {
            if highest.is_none_or(|h| e.token > h.token) {
                highest = Some(e);
            }
        }
        if let Some(h) = highest.filter(|h| h.token > l.token) {
            pairs.push((h, *l));
        }
    }
    pairs
}

/// JSON values are not `Hash`; their compact serialization is canonical here (serde_json's map
/// keeps keys sorted), so it serves as an identity for written values and log elements.
pub(crate) fn value_key(value: &Value) -> String {
    value.to_string()
}

/// Calls grouped by key, in invocation order within each key; keys sorted so reports are stable.
pub(crate) fn by_key<'a>(
    calls: impl Iterator<Item = &'a Call>,
) -> BTreeMap<&'a str, Vec<&'a Call>> {
    let mut groups: BTreeMap<&str, Vec<&Call>> = BTreeMap::new();
    for call in calls {
        groups.entry(call.key()).or_default().push(call);
    }
    groups
}
