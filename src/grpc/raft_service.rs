//! Raft transport, server side: decodes a peer's request, hands it to openraft, encodes the
//! full `Result` back so the caller can tell a remote Raft error from a transport failure.
//!
//! Invariant: no request reaches openraft unless it carries this node's cluster id; a node
//! without an identity (an empty data dir) answers none, so it can neither vote nor
//! acknowledge entries. Refusals are `FailedPrecondition` with the reason, and logged.
//!
//! **Takeover by the better candidate.** openraft 0.9 keeps no term apart from the vote, and
//! draws each node's election timeout once, at start. So when the leader dies:
//! - If the follower that is *behind* campaigns first (term T+1), the other refuses it for its
//!   shorter log without moving to T+1; its own campaign at T+1 then meets a node that voted
//!   for itself at T+1 and is refused too, and only its next campaign, another election
//!   timeout later, at T+2, wins.
//! - If both stand within a round trip of each other, each votes for itself at T+1 and
//!   refuses the other; with fixed timeouts they may collide again at T+2.
//!
//! On `wan` either costs seconds. So a node that refuses a candidate at or past its own term,
//! while it has itself heard no leader for a whole leader lease and ranks above the candidate
//! (a longer log; an equal log and a higher node id), campaigns at once, with the term after
//! the candidate's. Raft allows a candidate any newer term; the candidate it refused grants
//! it, its own vote being uncommitted; and exactly one of two such nodes ranks above the
//! other. A node that still hears a leader never does this, so a lagging or partitioned node
//! cannot depose a live leader through it.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use openraft::raft::{AppendEntriesResponse, VoteRequest, VoteResponse};
use openraft::ServerState;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::{Request, Response, Status};

use super::raft_proto::raft_service_server::RaftService;
use super::raft_proto::RaftPayload;
use crate::codec;
use crate::identity::{Identity, PeerRefusal, CLUSTER_ID_HEADER};
use crate::raft_types::{NodeId, Raft};

pub struct RaftTransport {
    raft: Raft,
    identity: Identity,
    /// openraft's leader lease (`election_timeout_max`): how long a follower trusts a leader
    /// it has heard.
    leader_lease: Duration,
    /// When this node last accepted an append (entries or heartbeat) from a leader.
    last_append: Mutex<Option<Instant>>,
}

impl RaftTransport {
    pub fn new(raft: Raft, identity: Identity, leader_lease: Duration) -> Self {
        RaftTransport {
            raft,
            identity,
            leader_lease,
            last_append: Mutex::new(None),
        }
    }

    /// Whether a leader has been heard within the leader lease.
    fn hears_a_leader(&self) -> bool {
        self.last_append
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some_and(|at| at.elapsed() <= self.leader_lease)
    }

    /// See the module docs: after refusing `request` with `answer`, campaign past the
    /// candidate's term if this node ranks above it and hears no leader.
    async fn take_over_from(&self, request: &VoteRequest<NodeId>, answer: &VoteResponse<NodeId>) {
        let (me, state) = {
            let metrics = self.raft.metrics();
            let m = metrics.borrow();
            (m.id, m.state)
        };
        if !matches!(state, ServerState::Follower | ServerState::Candidate) {
            return;
        }
        let Some(campaigns) = campaigns_to_take_over(me, request, answer) else {
            return;
        };
        if self.hears_a_leader() {
            return;
        }
        tracing::info!(
            candidate = %request.vote,
            candidate_log = ?request.last_log_id,
            our_vote = %answer.vote,
            our_log = ?answer.last_log_id,
            "a candidate that ranks below this node finds the leader gone; campaigning past its \
             term"
        );
        for _ in 0..campaigns {
            if let Err(e) = self.raft.trigger().elect().await {
                tracing::warn!(error = %e, "cannot start a campaign");
                return;
            }
        }
    }

    /// Checks the sender's cluster id, then decodes the request.
    fn admit<T: DeserializeOwned>(
        &self,
        rpc: &'static str,
        request: Request<RaftPayload>,
    ) -> Result<T, Status> {
        let theirs = request
            .metadata()
            .get(CLUSTER_ID_HEADER)
            .and_then(|v| v.to_str().ok());
        if let Err(refusal) = self.identity.check_peer(theirs) {
            match refusal {
                // Expected while a new or rejoining node waits to be added: not worth a warning
                // on every heartbeat.
                PeerRefusal::NoIdentity { .. } => {
                    tracing::debug!(rpc, reason = %refusal, "refused a Raft request")
                }
                _ => tracing::warn!(rpc, reason = %refusal, "refused a Raft request"),
            }
            return Err(Status::failed_precondition(refusal.to_string()));
        }
        codec::decode("raft request", &request.into_inner().data)
            .map_err(|e| Status::invalid_argument(e.to_string()))
    }
}

fn reply<T: Serialize>(result: &T) -> Result<Response<RaftPayload>, Status> {
    let data = codec::encode("raft reply", result).map_err(|e| Status::internal(e.to_string()))?;
    Ok(Response::new(RaftPayload { data }))
}

#[tonic::async_trait]
impl RaftService for RaftTransport {
    async fn append_entries(
        &self,
        request: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let result = self
            .raft
            .append_entries(self.admit("append_entries", request)?)
            .await;
        // Any answer but a higher vote means the sender is the leader of our term.
        if matches!(
            result,
            Ok(AppendEntriesResponse::Success
                | AppendEntriesResponse::PartialSuccess(_)
                | AppendEntriesResponse::Conflict)
        ) {
            *self.last_append.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
        }
        reply(&result)
    }

    async fn vote(&self, request: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        let request: VoteRequest<NodeId> = self.admit("vote", request)?;
        let result = self.raft.vote(request.clone()).await;
        if let Ok(answer) = &result {
            self.take_over_from(&request, answer).await;
        }
        reply(&result)
    }

    async fn install_snapshot(
        &self,
        request: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let result = self
            .raft
            .install_snapshot(self.admit("install_snapshot", request)?)
            .await;
        reply(&result)
    }
}

/// How many campaigns in a row take this node (`me`) past the term of a candidate it refused
/// (each campaign is one term up), or `None` when the refusal calls for no takeover: the
/// vote was granted, the candidate is behind our term, or it ranks at or above us (a longer
/// log, or an equal log and a higher node id).
fn campaigns_to_take_over(
    me: NodeId,
    request: &VoteRequest<NodeId>,
    answer: &VoteResponse<NodeId>,
) -> Option<u64> {
    let theirs = request.vote.leader_id().term;
    let ours = answer.vote.leader_id().term;
    if answer.vote_granted || theirs < ours {
        return None;
    }
    let candidate = request.vote.leader_id().voted_for()?;
    let we_rank_above = (answer.last_log_id, me) > (request.last_log_id, candidate);
    // At most a few terms past ours: a candidate far ahead is not one we can outrun cheaply.
    (we_rank_above && theirs - ours <= 2).then_some(theirs - ours + 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft_types::{LogId, Vote};
    use openraft::CommittedLeaderId;

    fn log(term: u64, index: u64) -> Option<LogId> {
        Some(LogId::new(CommittedLeaderId::new(term, 0), index))
    }

    fn request(term: u64, candidate: NodeId, last: Option<LogId>) -> VoteRequest<NodeId> {
        VoteRequest::new(Vote::new(term, candidate), last)
    }

    /// This node's answer: refused or granted, its vote after the request, its last log id.
    fn answer(vote: Vote, granted: bool, last: Option<LogId>) -> VoteResponse<NodeId> {
        VoteResponse::new(vote, last, granted)
    }

    #[test]
    fn a_follower_refusing_a_shorter_log_campaigns_twice_to_pass_the_candidate() {
        // Node 3 followed the leader of term 3, now gone; node 2 stands at term 4 without our
        // last entry. Two campaigns: term 4 (refused by node 2's own vote), then term 5.
        let refused = answer(Vote::new_committed(3, 1), false, log(3, 10));
        assert_eq!(
            campaigns_to_take_over(3, &request(4, 2, log(3, 9)), &refused),
            Some(2)
        );
        // A candidate with no log at all.
        assert_eq!(
            campaigns_to_take_over(3, &request(4, 2, None), &refused),
            Some(2)
        );
    }

    #[test]
    fn of_two_candidates_in_one_term_only_the_higher_ranked_campaigns_again() {
        // Both stood at term 4 with equal logs and voted for themselves: node 3 outranks 2.
        let last = log(3, 10);
        assert_eq!(
            campaigns_to_take_over(
                3,
                &request(4, 2, last),
                &answer(Vote::new(4, 3), false, last)
            ),
            Some(1)
        );
        assert_eq!(
            campaigns_to_take_over(
                2,
                &request(4, 3, last),
                &answer(Vote::new(4, 2), false, last)
            ),
            None
        );
        // A longer log outranks a higher id.
        assert_eq!(
            campaigns_to_take_over(
                2,
                &request(4, 3, log(3, 9)),
                &answer(Vote::new(4, 2), false, last)
            ),
            Some(1)
        );
    }

    #[test]
    fn no_takeover_when_the_vote_is_granted_or_the_candidate_is_behind_or_ranks_above() {
        let last = log(3, 10);
        // Granted.
        assert_eq!(
            campaigns_to_take_over(
                3,
                &request(4, 2, last),
                &answer(Vote::new(4, 2), true, last)
            ),
            None
        );
        // The candidate's term is behind ours: we already moved on.
        assert_eq!(
            campaigns_to_take_over(
                3,
                &request(4, 2, log(3, 9)),
                &answer(Vote::new(5, 3), false, last)
            ),
            None
        );
        // The candidate has the longer log.
        assert_eq!(
            campaigns_to_take_over(
                3,
                &request(4, 2, log(3, 11)),
                &answer(Vote::new_committed(3, 1), false, last)
            ),
            None
        );
        // Far ahead of us: not worth outrunning.
        assert_eq!(
            campaigns_to_take_over(
                3,
                &request(9, 2, log(3, 9)),
                &answer(Vote::new_committed(3, 1), false, last)
            ),
            None
        );
    }
}
