//! Leader placement: leadership moves, calmly, to the preferred region — by default the one
//! that serves no production traffic, so the DR controller (which acts only on the leader)
//! survives the loss of either production region without waiting for an election.
//!
//! ```text
//!  leader L (term T)                         preferred node P
//!  pause the proposer (in-flight batches finish, new ones wait)
//!  append MoveLeader{L→P, T} ──replicate──▶  applies it; its last entry is that entry,
//!                                            L still leads in T → stands for election (T+1)
//!  grants P's vote (its own lease as leader   ◀── RequestVote(T+1, log = L's log)
//!  is older than the election timeout) and
//!  steps down; held writes get "not leader"   wins with L's vote; extends every live
//!                                            lease by a full TTL, as any new leader does
//! ```
//!
//! openraft 0.9 has no leader transfer. The mechanism above uses only what it has:
//! `trigger().elect()` on P, and the rule that a candidate with a log at least as long as the
//! voter's gets the vote once the voter's leader lease has run out (a leader's own vote is never
//! refreshed after it wins, so it grants once it has led for longer than the election timeout;
//! the move waits for that). Pausing the proposer keeps L's log from growing past the move entry,
//! so P's log is as long as L's when it asks.
//!
//! Invariants: a move is a log entry before anything acts on it; P acts on it only while the term
//! it names is current, its leader is the mover and the entry is its last one, so a replayed or
//! late entry does nothing; the automatic loop never moves during a failover, never towards a
//! region under suspicion, never more than once per cooldown. Writes are held from the pause
//! until the move ends: at most the write deadline (batches in flight, then the move entry's
//! commit), plus the acknowledgement and election bounds ([`Placement::move_to`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arbiter_core::command::{Batch, Command};
use arbiter_core::placement::{MoveReason, PlacementCommand};
use arbiter_core::RegionId;
use openraft::ServerState;
use serde::Serialize;
use tokio::time::Instant;

use crate::config::{PlacementConfig, Timing};
use crate::dr::{DrController, DrError};
use crate::proposer::{wall_now, Proposer, WriteError};
use crate::raft_types::{NodeId, Raft};
use crate::store::StateMachineStore;

/// A target this many entries behind the leader's log is not "caught up".
const MAX_TARGET_LAG: u64 = 64;

/// What a completed move did, as the old leader saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MoveReport {
    #[schema(value_type = u64)]
    pub from: NodeId,
    #[schema(value_type = u64)]
    pub to: NodeId,
    /// The term the old leader led in; the new leader's is higher.
    pub from_term: u64,
    /// `None` (`null`) when the old leader had not yet heard from a new one when it stopped
    /// watching.
    #[schema(value_type = Option<u64>)]
    pub new_leader: Option<NodeId>,
    pub new_term: u64,
    /// From pausing writes to stepping down: how long writes were held at the old leader.
    pub writes_held_ms: u64,
    /// From stepping down to hearing from the new leader: this node's leaderless time.
    pub leaderless_ms: Option<u64>,
    /// The log entry that recorded the move.
    pub log_index: u64,
}

#[derive(Clone)]
pub struct Placement {
    inner: Arc<Inner>,
}

struct Inner {
    me: NodeId,
    region: String,
    config: PlacementConfig,
    timing: Timing,
    raft: Raft,
    state: StateMachineStore,
    proposer: Proposer,
    dr: DrController,
    /// (term, when this node saw itself become leader in it), on the monotonic clock.
    leader_since: Mutex<Option<(u64, Instant)>>,
    /// When this node last tried an automatic move.
    last_attempt: Mutex<Option<Instant>>,
    /// One move at a time.
    moving: tokio::sync::Mutex<()>,
    /// Moves this node carried out as the old leader, since it started.
    completed: AtomicU64,
}

impl Placement {
    /// Starts the loops: the leader's automatic placement and every node's watch for a move
    /// addressed to it. `replayed_up_to` is the committed index known at startup: moves at or
    /// below it are history.
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        me: NodeId,
        region: String,
        config: PlacementConfig,
        timing: Timing,
        raft: Raft,
        state: StateMachineStore,
        proposer: Proposer,
        dr: DrController,
        replayed_up_to: u64,
    ) -> Placement {
        let placement = Placement {
            inner: Arc::new(Inner {
                me,
                region,
                config,
                timing,
                raft,
                state,
                proposer,
                dr,
                leader_since: Mutex::new(None),
                last_attempt: Mutex::new(None),
                moving: tokio::sync::Mutex::new(()),
                completed: AtomicU64::new(0),
            }),
        };
        tokio::spawn(placement.clone().track_leadership());
        tokio::spawn(placement.clone().follow_moves(replayed_up_to));
        if placement.inner.config.preferred.is_some() {
            tokio::spawn(placement.clone().place());
        }
        placement
    }

    pub fn preferred_region(&self) -> Option<&RegionId> {
        self.inner.config.preferred.as_ref()
    }

    /// Moves this node completed as the old leader since it started.
    pub fn completed_here(&self) -> u64 {
        self.inner.completed.load(Ordering::Relaxed)
    }

    /// How long the target has to acknowledge the move entry: a few heartbeats, and at least a
    /// second, so a loaded host (a scheduler delay, not a dead node) does not fail the move.
    fn ack_bound(&self) -> Duration {
        Duration::from_millis((self.inner.timing.heartbeat_ms * 4).max(1_000))
    }

    /// How long the target has to win: it learns the commit at once (a heartbeat is sent for
    /// it), then one vote round; two election timeouts, and at least 1.5 s, are ample.
    fn elect_bound(&self) -> Duration {
        let t = &self.inner.timing;
        Duration::from_millis((t.heartbeat_ms + 2 * t.election_max_ms).max(1_500))
    }

    /// A leader grants a vote in a new term only once it has led for longer than openraft's
    /// leader lease (`election_timeout_max`); a margin of one heartbeat covers its clock reads.
    fn leader_lease(&self) -> Duration {
        let t = &self.inner.timing;
        Duration::from_millis(t.election_max_ms + t.heartbeat_ms)
    }

    /// Hands leadership to `to` (see the module doc). Refused when this node does not lead,
    /// `to` is not a caught-up voter, a failover is in progress (unless `force`: an operator
    /// may move the controller mid-failover; the new leader resumes the failover from the log,
    /// as after a crash), or another move is under way.
    /// An error after the entry was written means the move did not happen within its bounds;
    /// the cluster keeps (or elects) a leader as after any failed campaign.
    pub async fn move_to(
        &self,
        to: NodeId,
        reason: MoveReason,
        force: bool,
    ) -> Result<MoveReport, DrError> {
        let inner = &self.inner;
        let Ok(_one) = inner.moving.try_lock() else {
            return Err(DrError::Refused(
                "a leadership move is already under way".into(),
            ));
        };
        let first_term = self.check_move(to, force)?;
        if to == inner.me {
            return Err(DrError::Refused(format!("node {to} already leads")));
        }
        // This node grants the target's vote only once its own lease as leader has run out.
        let led_for = self.led_for(first_term).unwrap_or_default();
        if let Some(wait) = self.leader_lease().checked_sub(led_for) {
            tokio::time::sleep(wait).await;
        }

        let paused_at = Instant::now();
        let paused = inner.proposer.pause();
        let paused = tokio::time::timeout(inner.proposer.timeout(), paused)
            .await
            .map_err(|_| DrError::Refused("writes in flight did not finish; no move".into()))?;
        // Re-checked with writes held: nothing may have changed while they drained. A new term
        // means a fresh lease as leader, which would refuse the target's vote: no move.
        let term = self.check_move(to, force)?;
        if term != first_term {
            return Err(DrError::Refused(format!(
                "leadership changed (term {first_term} → {term}) while the move waited; no move"
            )));
        }
        let command = Command::Placement(PlacementCommand::MoveLeader {
            from: inner.me,
            to,
            term,
            reason: reason.clone(),
        });
        let write = inner
            .raft
            .client_write(Batch::new(wall_now(), vec![command]));
        let log_index = match tokio::time::timeout(inner.proposer.timeout(), write).await {
            Ok(Ok(response)) => response.log_id.index,
            Ok(Err(e)) => return Err(DrError::Write(crate::proposer::write_error(e))),
            Err(_) => {
                return Err(DrError::Write(WriteError::Timeout {
                    after_ms: inner.proposer.timeout().as_millis() as u64,
                }))
            }
        };
        tracing::info!(to, term, log_index, %reason, "moving leadership");

        let mut metrics = inner.raft.metrics();
        let acked = matches!(
            tokio::time::timeout(
                self.ack_bound(),
                metrics.wait_for(|m| {
                    m.state != ServerState::Leader || matched(m, to) >= Some(log_index)
                }),
            )
            .await,
            Ok(Ok(_))
        );
        if !acked {
            drop(paused);
            tracing::warn!(
                to,
                "leadership move: node {to} did not acknowledge the move entry"
            );
            // The entry is in the log: the target may still act on it (only while it is current).
            return Err(DrError::Write(WriteError::Timeout {
                after_ms: self.ack_bound().as_millis() as u64,
            }));
        }
        // Carry the commit index to the target now rather than with the next heartbeat (400 ms
        // on `wan`): it stands for election once it has applied the entry.
        let _ = inner.raft.trigger().heartbeat().await;
        let stepped_down = matches!(
            tokio::time::timeout(
                self.elect_bound(),
                metrics.wait_for(|m| m.state != ServerState::Leader || m.current_term > term),
            )
            .await,
            Ok(Ok(_))
        );
        let writes_held = paused_at.elapsed();
        drop(paused);
        if !stepped_down {
            tracing::warn!(to, "leadership move: node {to} did not take over");
            return Err(DrError::Write(WriteError::Timeout {
                after_ms: self.elect_bound().as_millis() as u64,
            }));
        }
        let down_at = Instant::now();
        let heard = tokio::time::timeout(
            self.elect_bound(),
            metrics.wait_for(|m| m.current_term > term && m.current_leader.is_some()),
        )
        .await
        .map(|r| r.map(|m| (m.current_leader, m.current_term)));
        let (new_leader, new_term, leaderless_ms) = match heard {
            Ok(Ok((leader, term))) => (leader, term, Some(down_at.elapsed().as_millis() as u64)),
            _ => {
                let m = inner.raft.metrics().borrow().clone();
                (m.current_leader, m.current_term, None)
            }
        };
        if new_leader != Some(to) {
            tracing::warn!(
                to,
                ?new_leader,
                new_term,
                "leadership move: another node took over"
            );
            return Err(DrError::Refused(format!(
                "leadership went to {} in term {new_term}, not to node {to}",
                new_leader.map_or("no known node".to_string(), |id| format!("node {id}"))
            )));
        }
        inner.completed.fetch_add(1, Ordering::Relaxed);
        let report = MoveReport {
            from: inner.me,
            to,
            from_term: term,
            new_leader,
            new_term,
            writes_held_ms: writes_held.as_millis() as u64,
            leaderless_ms,
            log_index,
        };
        tracing::info!(?report, "leadership moved");
        Ok(report)
    }

    /// The current term if this node leads and may move leadership to `to` now.
    fn check_move(&self, to: NodeId, force: bool) -> Result<u64, DrError> {
        let m = self.inner.raft.metrics().borrow().clone();
        if m.state != ServerState::Leader {
            let leader_addr = m.current_leader.and_then(|id| {
                m.membership_config
                    .membership()
                    .get_node(&id)
                    .map(|n| n.http_addr.clone())
            });
            return Err(DrError::NotLeader {
                leader_id: m.current_leader,
                leader_addr,
            });
        }
        if !m
            .membership_config
            .membership()
            .voter_ids()
            .any(|v| v == to)
        {
            return Err(DrError::Invalid(format!("node {to} is not a voter")));
        }
        if let Some(id) = self.inner.dr.failover_in_progress().filter(|_| !force) {
            return Err(DrError::Refused(format!(
                "failover {id} is in progress; leadership stays until it finishes (force \
                 moves it anyway)"
            )));
        }
        if to != self.inner.me {
            let last = m.last_log_index.unwrap_or(0);
            let target = matched(&m, to).unwrap_or(0);
            if last.saturating_sub(target) > MAX_TARGET_LAG {
                return Err(DrError::Refused(format!(
                    "node {to} is {} entries behind the leader",
                    last - target
                )));
            }
        }
        Ok(m.current_term)
    }

    /// How long this node has led in `term`, if it leads in it.
    fn led_for(&self, term: u64) -> Option<Duration> {
        match *self
            .inner
            .leader_since
            .lock()
            .unwrap_or_else(|e| e.into_inner())
        {
            Some((t, since)) if t == term => Some(since.elapsed()),
            _ => None,
        }
    }

    /// Notes when this node becomes leader, on its monotonic clock.
    async fn track_leadership(self) {
        let mut metrics = self.inner.raft.metrics();
        loop {
            {
                let m = metrics.borrow_and_update();
                if m.state == ServerState::Shutdown {
                    return;
                }
                let mut since = self
                    .inner
                    .leader_since
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                if m.state == ServerState::Leader {
                    if since.map(|(t, _)| t) != Some(m.current_term) {
                        *since = Some((m.current_term, Instant::now()));
                    }
                } else {
                    *since = None;
                }
            }
            if metrics.changed().await.is_err() {
                return;
            }
        }
    }

    /// Every node: stands for election when it applies a move addressed to it that is still
    /// current (same term, its leader is the mover, the entry is its last).
    async fn follow_moves(self, replayed_up_to: u64) {
        let inner = &self.inner;
        let mut applied = inner.state.applied_index();
        let mut seen = replayed_up_to;
        loop {
            if applied.changed().await.is_err() {
                return;
            }
            let last = inner.state.read().machine.placement.last().cloned();
            let Some(moved) = last else { continue };
            if moved.log_index <= seen {
                continue;
            }
            seen = moved.log_index;
            if moved.to != inner.me {
                continue;
            }
            let m = inner.raft.metrics().borrow().clone();
            let current = m.state == ServerState::Follower
                && m.current_term == moved.term
                && m.current_leader == Some(moved.from)
                && m.last_log_index == Some(moved.log_index);
            if !current {
                tracing::info!(
                    ?moved,
                    term = m.current_term,
                    leader = ?m.current_leader,
                    last_log = ?m.last_log_index,
                    "leadership move to this node is no longer current; not acting on it"
                );
                continue;
            }
            tracing::info!(
                from = moved.from,
                term = moved.term,
                "leadership moves here: standing for election"
            );
            if let Err(e) = inner.raft.trigger().elect().await {
                // Fatal only for the Raft core, which stops the node; nothing to retry here.
                tracing::warn!(error = %e, "cannot stand for election");
            }
        }
    }

    /// The leader's automatic placement: every few heartbeats, moves leadership to the
    /// preferred region when [`Placement::automatic_target`] names a node.
    async fn place(self) {
        let period = Duration::from_millis(self.inner.timing.heartbeat_ms * 5);
        loop {
            tokio::time::sleep(period).await;
            if self.inner.raft.metrics().borrow().state == ServerState::Shutdown {
                return;
            }
            let Some((to, region)) = self.automatic_target() else {
                continue;
            };
            *self
                .inner
                .last_attempt
                .lock()
                .unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
            let reason = MoveReason::PreferredRegion {
                region: region.to_string(),
            };
            match self.move_to(to, reason, false).await {
                Ok(report) => tracing::info!(?report, "leadership placed in {region}"),
                Err(e) => tracing::info!(error = %e, "leadership not moved to {region}"),
            }
        }
    }

    /// The node leadership should move to now, if any: this node leads outside the preferred
    /// region, has led for a settling time, the cooldown since the last move (this leader's
    /// attempts, and the last recorded move, by whichever leader) has passed, no failover is in
    /// progress, the preferred region is not under suspicion, and a voter there is caught up.
    pub fn automatic_target(&self) -> Option<(NodeId, RegionId)> {
        let inner = &self.inner;
        let preferred = inner.config.preferred.as_ref()?;
        if inner.region == preferred.as_str() {
            return None;
        }
        let m = inner.raft.metrics().borrow().clone();
        if m.state != ServerState::Leader {
            return None;
        }
        // Settle first: a fresh leader has leases to extend and a probe window to fill.
        let settle = Duration::from_millis(inner.timing.election_max_ms * 3);
        if self.led_for(m.current_term)? < settle {
            return None;
        }
        let cooldown = inner.config.cooldown;
        let attempted = *inner.last_attempt.lock().unwrap_or_else(|e| e.into_inner());
        if attempted.is_some_and(|at| at.elapsed() < cooldown) {
            return None;
        }
        // Across leaders only the wall clocks compare; skew of seconds does not matter against
        // a cooldown of a minute, and this is pacing, never a safety input.
        let last_move = inner.state.read().machine.placement.last().cloned();
        if let Some(last) = last_move {
            let since = wall_now().0.saturating_sub(last.requested_at.0);
            if since < cooldown.as_millis() as u64 {
                return None;
            }
        }
        if inner.dr.failover_in_progress().is_some() {
            return None;
        }
        if let Some(why) = inner.dr.suspicion(preferred) {
            tracing::debug!(region = %preferred, %why, "preferred region under suspicion");
            return None;
        }
        let membership = m.membership_config.membership();
        let last = m.last_log_index.unwrap_or(0);
        let target = membership.voter_ids().find(|id| {
            membership
                .get_node(id)
                .is_some_and(|n| n.region == preferred.as_str())
        })?;
        let caught_up =
            matched(&m, target).is_some_and(|i| last.saturating_sub(i) <= MAX_TARGET_LAG);
        caught_up.then(|| (target, preferred.clone()))
    }

    /// Whether the current leader (as this node knows it) is in the preferred region.
    pub fn leader_in_preferred_region(&self) -> Option<bool> {
        let preferred = self.inner.config.preferred.as_ref()?;
        let m = self.inner.raft.metrics().borrow().clone();
        let leader = m.current_leader?;
        let region = m
            .membership_config
            .membership()
            .get_node(&leader)
            .map(|n| n.region.clone())?;
        Some(region == preferred.as_str())
    }
}

/// The last log index `node` has acknowledged to this leader.
fn matched(
    m: &openraft::RaftMetrics<NodeId, crate::raft_types::Member>,
    node: NodeId,
) -> Option<u64> {
    m.replication
        .as_ref()?
        .get(&node)?
        .as_ref()
        .map(|log_id| log_id.index)
}
