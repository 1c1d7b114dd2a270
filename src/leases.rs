//! Leader-side lease duties: the monotonic expiry timers, batched keep-alives, and the
//! proposals that grant, release, revoke and expire leases.
//!
//! Invariant: a lease is never granted to a new holder while the previous holder may still
//! believe it holds it. The replicated table only
//! frees a revoked or lapsed lease through an `Expire` entry, and only this module proposes
//! `Expire`, only when [`LeaseTimers`] says the deadline passed on this leader's monotonic
//! clock. A node that becomes leader re-times every live lease with a full TTL before it
//! proposes any expiry.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arbiter_core::command::{Command, Outcome};
use arbiter_core::lease_table::{LeaseCommand, LeaseLimits, LeaseOutcome, LeaseRefusal};
use arbiter_core::lease_timers::{LeaseTimers, TimerRenewal, Walk};
use arbiter_core::replication::{DataLossEstimate, WriteRate};
use arbiter_core::{FencingToken, HolderId, MonoMillis, ResourceId};
use openraft::error::{CheckIsLeaderError, RaftError};
use openraft::ServerState;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use tokio::sync::{oneshot, Notify};

use crate::proposer::{Proposer, WriteError};
use crate::raft_types::{Member, NodeId, Raft};
use crate::store::StateMachineStore;

/// Expiry-loop ticks from the end of one sweep that reconciles the timers with the table to
/// the start of the next.
const RECONCILE_EVERY_TICKS: u64 = 20;

/// Table rows or timers one locked step of a walk covers: a few milliseconds at most.
const WALK_STEP: usize = 4096;

/// Table rows the background sweep covers per tick: a sweep is a safety net (see
/// `expiry_loop`), so it goes slowly and costs keep-alives next to nothing; at 100,000 leases
/// a pass takes about five seconds.
const SWEEP_STEP: usize = 1024;

/// A read or keep-alive could not be confirmed by a quorum round.
pub type ReadError = WriteError;

/// One `lease_requests_total` series: static strings, so counting allocates nothing on the
/// keep-alive path.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    operation: &'static str,
    result: &'static str,
}

/// The lease instruments this manager updates (registered by [`crate::metrics::Metrics`]).
#[derive(Clone)]
pub struct LeaseMetrics {
    /// Lease requests by `operation` (acquire, keep_alive, release, revoke, revoke_region,
    /// lift_region_fence, fence, expire) and `result`: what was done (granted, already_held,
    /// renewed, released, revoked, fenced, fence_lifted, expired), the refusal's kind (held_by, draining, stale_token, ...), or
    /// why nothing was decided (not_leader, timeout, overloaded, shutting_down, error).
    pub requests: Family<RequestLabels, Counter>,
    /// Quorum rounds run to confirm leadership for keep-alives and reads.
    pub quorum_rounds: Counter,
    /// Keep-alives and reads one quorum round confirmed at once.
    pub round_waiters: Histogram,
    /// On each new leadership: the walk that gives every live lease a full TTL. Keep-alives
    /// and the expiry loop wait on the timers' lock meanwhile, so it must stay short at scale.
    pub timers_rebuild_seconds: Histogram,
}

impl Default for LeaseMetrics {
    fn default() -> Self {
        LeaseMetrics {
            requests: Family::default(),
            quorum_rounds: Counter::default(),
            round_waiters: Histogram::new(exponential_buckets(1.0, 2.0, 12)),
            // 100 µs .. ~3 s
            timers_rebuild_seconds: Histogram::new(exponential_buckets(0.0001, 2.0, 15)),
        }
    }
}

impl LeaseMetrics {
    fn count(&self, operation: &'static str, result: &'static str) {
        self.requests
            .get_or_create(&RequestLabels { operation, result })
            .inc();
    }
}

fn operation_name(command: &LeaseCommand) -> &'static str {
    match command {
        LeaseCommand::Acquire { .. } => "acquire",
        LeaseCommand::Release { .. } => "release",
        LeaseCommand::Revoke { .. } => "revoke",
        LeaseCommand::RevokeRegion { .. } => "revoke_region",
        LeaseCommand::Fence { .. } => "fence",
        LeaseCommand::Expire { .. } => "expire",
        LeaseCommand::LiftRegionFence { .. } => "lift_region_fence",
    }
}

fn outcome_name(outcome: &LeaseOutcome) -> &'static str {
    match outcome {
        LeaseOutcome::Granted { .. } => "granted",
        LeaseOutcome::AlreadyHeld { .. } => "already_held",
        LeaseOutcome::Released => "released",
        LeaseOutcome::Revoked(_) | LeaseOutcome::RevokedMany(_) => "revoked",
        LeaseOutcome::Fenced { .. } => "fenced",
        LeaseOutcome::Expired { .. } => "expired",
        LeaseOutcome::RegionFenceLifted(_) => "fence_lifted",
        LeaseOutcome::Refused(refusal) => refusal_name(refusal),
    }
}

fn refusal_name(refusal: &LeaseRefusal) -> &'static str {
    match refusal {
        LeaseRefusal::HeldBy { .. } => "held_by",
        LeaseRefusal::Draining { .. } => "draining",
        LeaseRefusal::StaleToken { .. } => "stale_token",
        LeaseRefusal::NotHeld => "not_held",
        LeaseRefusal::NotHolder { .. } => "not_holder",
        LeaseRefusal::RegionFenced { .. } => "region_fenced",
        LeaseRefusal::TokenNotAdvanced { .. } => "token_not_advanced",
    }
}

fn error_name(error: &WriteError) -> &'static str {
    match error {
        WriteError::NotLeader { .. } => "not_leader",
        WriteError::Timeout { .. } => "timeout",
        WriteError::Overloaded { .. } => "overloaded",
        WriteError::ShuttingDown => "shutting_down",
        WriteError::Raft(_) => "error",
    }
}

#[derive(Clone)]
pub struct LeaseManager {
    inner: Arc<Inner>,
}

struct Inner {
    /// The write rate a displaced break-glass holder is assumed to keep up until its deadline.
    write_rate: WriteRate,
    raft: Raft,
    state: StateMachineStore,
    proposer: Proposer,
    limits: LeaseLimits,
    epoch: Instant,
    /// The leader's deadlines. A std Mutex: held only for in-memory map updates, never across
    /// an await.
    timers: Mutex<Timers>,
    /// Keep-alives waiting for the next quorum round; see [`LeaseManager::confirm_leadership`].
    round_waiters: Mutex<Vec<oneshot::Sender<Result<(), ReadError>>>>,
    round_wanted: Notify,
    tick: Duration,
    metrics: LeaseMetrics,
}

struct Timers {
    timers: LeaseTimers,
    /// The term in which `timers` were (re)built; a new term means a new leadership.
    leader_term: Option<u64>,
}

impl LeaseManager {
    pub fn start(
        raft: Raft,
        state: StateMachineStore,
        proposer: Proposer,
        election_timeout_max_ms: u64,
        tick: Duration,
        write_rate: WriteRate,
    ) -> Self {
        let manager = LeaseManager {
            inner: Arc::new(Inner {
                write_rate,
                raft,
                state,
                proposer,
                limits: LeaseLimits::for_election_timeout(election_timeout_max_ms),
                epoch: Instant::now(),
                timers: Mutex::new(Timers {
                    timers: LeaseTimers::new(),
                    leader_term: None,
                }),
                round_waiters: Mutex::default(),
                round_wanted: Notify::new(),
                tick,
                metrics: LeaseMetrics::default(),
            }),
        };
        tokio::spawn(manager.clone().expiry_loop());
        tokio::spawn(manager.clone().round_loop());
        manager
    }

    /// The replicated state, for reads after [`Self::confirm_leadership`].
    pub fn state(&self) -> &StateMachineStore {
        &self.inner.state
    }

    pub fn limits(&self) -> LeaseLimits {
        self.inner.limits
    }

    /// Milliseconds on this process's monotonic clock.
    pub fn mono_now(&self) -> MonoMillis {
        #[cfg(feature = "mutant-wall-clock-expiry")]
        return MonoMillis(wall_clock_mutant::elapsed_ms());
        #[cfg(not(feature = "mutant-wall-clock-expiry"))]
        MonoMillis(self.inner.epoch.elapsed().as_millis() as u64)
    }

    /// How long (ms from now) the holder of `resource` may still believe it holds, by this
    /// leader's timers. A live lease with no timer yet (a new leader's rebuild has not reached
    /// it) may be believed for up to its full TTL; 0 when no lease is live.
    pub fn may_hold_for_ms(&self, resource: &ResourceId) -> u64 {
        let now = self.mono_now();
        let timers = self.inner.timers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(until) = timers.timers.may_hold_until(resource) {
            return until.0.saturating_sub(now.0);
        }
        let state = self.inner.state.read();
        state
            .machine
            .leases
            .get(resource)
            .and_then(|row| row.lease.live())
            .map_or(0, |lease| lease.ttl_ms)
    }

    pub fn metrics(&self) -> &LeaseMetrics {
        &self.inner.metrics
    }

    /// Proposes a lease command and returns its outcome.
    pub async fn propose(&self, command: LeaseCommand) -> Result<LeaseOutcome, WriteError> {
        let operation = operation_name(&command);
        let result = self.propose_command(command).await;
        let name = match &result {
            Ok(outcome) => outcome_name(outcome),
            Err(e) => error_name(e),
        };
        self.inner.metrics.count(operation, name);
        result
    }

    async fn propose_command(&self, command: LeaseCommand) -> Result<LeaseOutcome, WriteError> {
        let acquirer = match &command {
            LeaseCommand::Acquire {
                resource, holder, ..
            } => Some((resource.clone(), holder.clone())),
            _ => None,
        };
        let ended = match &command {
            LeaseCommand::Release {
                resource, token, ..
            } => Some((resource.clone(), *token, false)),
            // Applied or refused, an `Expire` leaves no live lease with that token.
            LeaseCommand::Expire { resource, token } => Some((resource.clone(), *token, true)),
            _ => None,
        };
        let command = match &command {
            LeaseCommand::Acquire {
                resource,
                break_glass: Some(_),
                ..
            } => {
                // What the displaced holder may still write before its deadline passes.
                let may_hold_ms = self.may_hold_for_ms(resource);
                #[cfg(feature = "mutant-break-glass-no-estimate")]
                let may_hold_ms = 0;
                Command::BreakGlassAcquire {
                    data_loss: DataLossEstimate::from_lag(may_hold_ms, self.inner.write_rate),
                    acquire: command,
                }
            }
            _ => Command::Lease(command),
        };
        let outcome = self.inner.proposer.propose(command).await?;
        let Outcome::Lease(outcome) = outcome else {
            return Err(WriteError::Raft(format!(
                "a lease command produced {outcome:?}"
            )));
        };
        match (&outcome, &acquirer, &ended) {
            // Start the new lease's timer now rather than at the next reconcile. A revoke keeps
            // the lease's token, so its timer (and the wait) stays as it is.
            (LeaseOutcome::Granted { token, ttl_ms, .. }, Some((resource, _)), _) => {
                self.with_leader_timers(|t, now| t.start(resource, *token, *ttl_ms, now));
            }
            (LeaseOutcome::Released, _, Some((resource, token, _)))
            | (_, _, Some((resource, token, true))) => {
                self.with_leader_timers(|t, _| t.stop(resource, *token));
            }
            _ => {}
        }
        if let (LeaseOutcome::AlreadyHeld { token, .. }, Some((resource, holder))) =
            (&outcome, acquirer)
        {
            // A repeated acquire answers "yes, yours" and its holder counts a full TTL from
            // sending it, so it must renew like a keep-alive — and, like one, must not revive
            // a lease whose deadline has passed (its `Expire` may be on its way) or that an
            // entry applied since has ended.
            return Ok(match self.renew_checked(&resource, &holder, *token) {
                Ok(ttl_ms) => LeaseOutcome::AlreadyHeld {
                    token: *token,
                    ttl_ms,
                },
                Err(refusal) => LeaseOutcome::Refused(refusal),
            });
        }
        Ok(outcome)
    }

    /// Renews a lease in memory — no log entry — once a quorum round that began after the
    /// request arrived confirms this node still leads. Returns the TTL granted.
    pub async fn keep_alive(
        &self,
        resource: &ResourceId,
        holder: &HolderId,
        token: FencingToken,
    ) -> Result<Result<u64, LeaseRefusal>, ReadError> {
        let result = self.renew(resource, holder, token).await;
        let name = match &result {
            Ok(Ok(_)) => "renewed",
            Ok(Err(refusal)) => refusal_name(refusal),
            Err(e) => error_name(e),
        };
        self.inner.metrics.count("keep_alive", name);
        result
    }

    async fn renew(
        &self,
        resource: &ResourceId,
        holder: &HolderId,
        token: FencingToken,
    ) -> Result<Result<u64, LeaseRefusal>, ReadError> {
        #[cfg(not(feature = "mutant-no-quorum-keepalive"))]
        self.confirm_leadership().await?;
        Ok(self.renew_checked(resource, holder, token))
    }

    /// Checks that `holder` holds `resource` with `token` in the table and extends its timer,
    /// both under the timers' lock (taken before the state's, as the expiry loop does): an
    /// `Expire` or `Release` that applies between the check and the renewal would otherwise
    /// let the renewal re-create the timer of a lease that is already free, and answer "ok"
    /// for it. Returns the TTL granted.
    fn renew_checked(
        &self,
        resource: &ResourceId,
        holder: &HolderId,
        token: FencingToken,
    ) -> Result<u64, LeaseRefusal> {
        let now = self.mono_now();
        let mut timers = self.inner.timers.lock().unwrap_or_else(|e| e.into_inner());
        let state = self.inner.state.read();
        let ttl_ms = state
            .machine
            .leases
            .check_keepalive(resource, holder, token)?;
        if !renew_timer(&mut timers, resource, token, ttl_ms, now) {
            return Err(LeaseRefusal::Draining {
                holder: holder.clone(),
                token,
            });
        }
        Ok(ttl_ms)
    }

    /// Waits for a quorum round that starts after this call (ReadIndex): afterwards this node
    /// was leader at a moment later than the call, and its state machine has applied
    /// everything committed before it. Concurrent callers share rounds.
    pub async fn confirm_leadership(&self) -> Result<(), ReadError> {
        let (tx, rx) = oneshot::channel();
        self.inner
            .round_waiters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(tx);
        self.inner.round_wanted.notify_one();
        rx.await.unwrap_or(Err(WriteError::ShuttingDown))
    }

    async fn round_loop(self) {
        loop {
            self.inner.round_wanted.notified().await;
            // Everyone queued so far arrived before this round starts, so this round counts
            // for all of them; later arrivals wait for the next one.
            let waiters = std::mem::take(
                &mut *self
                    .inner
                    .round_waiters
                    .lock()
                    .unwrap_or_else(|e| e.into_inner()),
            );
            if waiters.is_empty() {
                continue;
            }
            self.inner.metrics.quorum_rounds.inc();
            self.inner
                .metrics
                .round_waiters
                .observe(waiters.len() as f64);
            let result = match tokio::time::timeout(
                self.inner.proposer.timeout(),
                self.inner.raft.ensure_linearizable(),
            )
            .await
            {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(read_error(e)),
                Err(_) => Err(WriteError::Timeout {
                    after_ms: self.inner.proposer.timeout().as_millis() as u64,
                }),
            };
            for waiter in waiters {
                let _ = waiter.send(result.clone());
            }
        }
    }

    /// Runs `f` on the timers if this node holds them as leader.
    fn with_leader_timers(&self, f: impl FnOnce(&mut LeaseTimers, MonoMillis)) {
        let now = self.mono_now();
        let mut timers = self.inner.timers.lock().unwrap_or_else(|e| e.into_inner());
        if timers.leader_term.is_some() {
            f(&mut timers.timers, now);
        }
    }

    /// One locked step of a walk over the table of at most `rows` rows.
    fn reconcile_step(&self, rows: usize) -> Walk {
        let now = self.mono_now();
        let mut timers = self.inner.timers.lock().unwrap_or_else(|e| e.into_inner());
        let state = self.inner.state.read();
        timers
            .timers
            .reconcile_step(&state.machine.leases, now, rows)
    }

    /// Every tick: track leadership; as leader, keep timers in line with the table and propose
    /// `Expire` for every lease whose deadline passed.
    ///
    /// Walks go in steps of [`WALK_STEP`] with the locks released and the runtime yielded in
    /// between: at a million leases a walk in one piece held the timers' lock, and a runtime
    /// worker, for a good part of a second, and the node missed its own heartbeats.
    async fn expiry_loop(self) {
        let metrics = self.inner.raft.metrics();
        let leading = |metrics: &tokio::sync::watch::Receiver<_>| {
            let m: &openraft::RaftMetrics<NodeId, Member> = &metrics.borrow();
            (m.state, m.current_term)
        };
        let mut since_sweep: u64 = 0;
        let mut sweeping = false;
        loop {
            // Ticks only: metrics change on every commit, and waking per commit would put a
            // table walk on the write path.
            tokio::time::sleep(self.inner.tick).await;
            let (state, term) = leading(&metrics);
            match state {
                ServerState::Shutdown => return,
                ServerState::Leader => {}
                _ => {
                    let mut timers = self.inner.timers.lock().unwrap_or_else(|e| e.into_inner());
                    timers.leader_term = None;
                    continue;
                }
            }
            let forgotten = {
                let mut timers = self.inner.timers.lock().unwrap_or_else(|e| e.into_inner());
                (timers.leader_term != Some(term)).then(|| {
                    timers.leader_term = Some(term);
                    // New leadership: a full TTL for every live lease from now on, since we
                    // cannot know when the previous leader last renewed them. Until the walk
                    // below reaches a lease it has no timer: nothing expires it, and a
                    // keep-alive starts one.
                    #[cfg(not(feature = "mutant-reelected-keeps-timers"))]
                    return timers.timers.forget();
                    #[cfg(feature = "mutant-reelected-keeps-timers")]
                    arbiter_core::lease_timers::ForgottenTimers::default()
                })
            };
            if let Some(forgotten) = forgotten {
                let walk = Instant::now();
                tokio::task::spawn_blocking(move || drop(forgotten));
                while self.reconcile_step(WALK_STEP) == Walk::Unfinished {
                    tokio::task::yield_now().await;
                    if leading(&metrics) != (ServerState::Leader, term) {
                        break;
                    }
                }
                let took = walk.elapsed();
                self.inner
                    .metrics
                    .timers_rebuild_seconds
                    .observe(took.as_secs_f64());
                tracing::info!(
                    term,
                    took_ms = took.as_secs_f64() * 1e3,
                    "leader: lease timers rebuilt with full TTLs"
                );
                (sweeping, since_sweep) = (false, 0);
            } else {
                // Grants and ends seen by `propose` update the timers at once, and a keep-alive
                // starts the timer of a live lease that has none; a sweep catches the rest
                // (entries of an earlier term applied after the rebuild passed them, for
                // leases nobody renews). One starts a few ticks after the last ended and goes
                // a step per tick, so its cost per tick is bounded however large the table.
                if !sweeping {
                    since_sweep += 1;
                    sweeping = since_sweep >= RECONCILE_EVERY_TICKS;
                }
                if sweeping && self.reconcile_step(SWEEP_STEP) == Walk::Done {
                    (sweeping, since_sweep) = (false, 0);
                }
            }
            let mut due = Vec::new();
            loop {
                let now = self.mono_now();
                let step = {
                    let mut timers = self.inner.timers.lock().unwrap_or_else(|e| e.into_inner());
                    timers.timers.due_step(now, WALK_STEP, &mut due)
                };
                if step == Walk::Done {
                    break;
                }
                tokio::task::yield_now().await;
            }
            // Awaited here, not spawned: the loop does not re-propose an expiry while it is
            // still in flight (it stays due until applied).
            let proposals = due.into_iter().map(|(resource, token)| {
                let manager = self.clone();
                async move {
                    let command = LeaseCommand::Expire {
                        resource: resource.clone(),
                        token,
                    };
                    match manager.propose(command).await {
                        Ok(outcome) => tracing::info!(%resource, %token, ?outcome, "lease expired"),
                        Err(e) => {
                            tracing::debug!(%resource, %token, error = %e, "expire not committed")
                        }
                    }
                }
            });
            futures::future::join_all(proposals).await;
        }
    }
}

/// Extends the timer of `resource`'s lease `token` to `now` + `ttl_ms`, unless its deadline
/// has already passed on this leader: then returns false and changes nothing.
///
/// Why a passed deadline stays passed: the expiry loop proposes `Expire` once the deadline
/// passes and the entry applies some time later. A renewal in between would answer "ok" for a
/// lease the table is about to free, and its holder would count a fresh TTL while the next
/// holder is granted. Refusing here makes "due" final for a token, so an `Expire` in flight
/// never races a renewal. Only timers built in this leadership are trusted; before the first
/// tick of a new term they are stale and `on_elected` replaces them.
fn renew_timer(
    timers: &mut Timers,
    resource: &ResourceId,
    token: FencingToken,
    ttl_ms: u64,
    now: MonoMillis,
) -> bool {
    if timers.leader_term.is_none() {
        // Stale timers: `on_elected` soon gives every live lease a full TTL from a moment
        // after this request arrived, which covers this renewal.
        return true;
    }
    match timers.timers.renew(resource, token, ttl_ms, now) {
        TimerRenewal::Renewed => true,
        TimerRenewal::Lapsed => false,
        TimerRenewal::NoTimer => {
            // The grant was applied without passing through this leader's `propose` (an
            // earlier term's entry), and the table, read under the same lock, still holds it:
            // start its timer now, which is also a full renewal.
            timers.timers.start(resource, token, ttl_ms, now);
            true
        }
    }
}

fn read_error(e: RaftError<NodeId, CheckIsLeaderError<NodeId, Member>>) -> ReadError {
    match e {
        RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f)) => {
            WriteError::not_leader(f.leader_id, f.leader_node.as_ref())
        }
        RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(q)) => {
            // Lost contact with a quorum: as far as clients are concerned, no leader here.
            tracing::debug!(detail = %q, "leadership not confirmed");
            WriteError::NotLeader {
                leader_id: None,
                leader_addr: None,
            }
        }
        RaftError::Fatal(f) => WriteError::Raft(f.to_string()),
    }
}

/// Rule 7's mutant: lease time read from the wall clock, counted from the first reading, so a
/// step of the wall clock moves every deadline.
#[cfg(feature = "mutant-wall-clock-expiry")]
mod wall_clock_mutant {
    use std::sync::OnceLock;
    use std::time::{SystemTime, UNIX_EPOCH};

    fn wall_ms() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    }

    pub fn elapsed_ms() -> u64 {
        static START: OnceLock<u64> = OnceLock::new();
        // A day of headroom, so a step backwards does not saturate at zero.
        let start = *START.get_or_init(|| wall_ms().saturating_sub(86_400_000));
        wall_ms().saturating_sub(start)
    }
}
