//! Leader placement: the replicated record of planned leadership moves.
//!
//! A move is decided by the leader and written to the log before anything else happens. The
//! node it names (`to`) acts on the entry once it has applied it: if it still follows `from` in
//! the same `term`, it stands for election. The entry is what hands the candidate a log as long
//! as the leader's, and the term check makes a late or replayed entry inert: once any election
//! has happened the move is history, never an instruction.
//!
//! Invariant: moves are counted in log order, so every node reports the same count and the same
//! last move at the same applied index.

use serde::{Deserialize, Serialize};

use crate::types::{ApplyCtx, NodeId, WallMillis};

/// Why leadership is being moved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MoveReason {
    /// The leader was outside the preferred region and the preferred node was ready.
    PreferredRegion { region: String },
    /// An operator asked for it (the authenticated identity).
    Operator { identity: String },
}

impl std::fmt::Display for MoveReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MoveReason::PreferredRegion { region } => write!(f, "preferred region {region}"),
            MoveReason::Operator { identity } => write!(f, "requested by {identity}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PlacementCommand {
    /// The leader `from`, in `term`, hands leadership to `to`.
    MoveLeader {
        from: NodeId,
        to: NodeId,
        term: u64,
        reason: MoveReason,
    },
}

/// One recorded move.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderMove {
    pub from: NodeId,
    pub to: NodeId,
    pub term: u64,
    pub reason: MoveReason,
    /// The log entry that carries it.
    pub log_index: u64,
    /// The proposing leader's wall clock (audit, and the cooldown between leaders' moves).
    pub requested_at: WallMillis,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderPlacement {
    moves: u64,
    last: Option<LeaderMove>,
}

impl LeaderPlacement {
    /// Moves requested since the cluster began.
    pub fn moves(&self) -> u64 {
        self.moves
    }

    pub fn last(&self) -> Option<&LeaderMove> {
        self.last.as_ref()
    }

    pub fn apply(&mut self, command: &PlacementCommand, ctx: &ApplyCtx) {
        match command {
            PlacementCommand::MoveLeader {
                from,
                to,
                term,
                reason,
            } => {
                self.moves += 1;
                self.last = Some(LeaderMove {
                    from: *from,
                    to: *to,
                    term: *term,
                    reason: reason.clone(),
                    log_index: ctx.token.log_index(),
                    requested_at: ctx.now,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::FencingToken;

    #[test]
    fn a_move_reason_reads_as_the_operator_sees_it_in_the_log() {
        let preferred = MoveReason::PreferredRegion {
            region: "us-east-1".into(),
        };
        let operator = MoveReason::Operator {
            identity: "alice".into(),
        };
        assert_eq!(preferred.to_string(), "preferred region us-east-1");
        assert_eq!(operator.to_string(), "requested by alice");
    }

    #[test]
    fn moves_are_counted_and_the_last_one_kept() {
        let mut placement = LeaderPlacement::default();
        assert_eq!(placement.moves(), 0);
        assert!(placement.last().is_none());
        for (index, to) in [(7, 3), (12, 1)] {
            let ctx = ApplyCtx {
                token: FencingToken::from_log_position(index, 0),
                now: WallMillis(index * 10),
            };
            let command = PlacementCommand::MoveLeader {
                from: 2,
                to,
                term: 4,
                reason: MoveReason::Operator {
                    identity: "alice".into(),
                },
            };
            placement.apply(&command, &ctx);
        }
        assert_eq!(placement.moves(), 2);
        let last = placement.last().expect("a move");
        assert_eq!(
            (last.to, last.log_index, last.requested_at),
            (1, 12, WallMillis(120))
        );
    }
}
