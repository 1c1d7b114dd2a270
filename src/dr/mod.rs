//! The DR controller: runs on every node, acts only on the Raft leader.
//!
//! ```text
//!  probe agents ──report──▶ ProbeConsensus (leader memory) ──verdicts──▶ health / failover
//!                                                                         commands (the log)
//!  failover log ──next_action──▶ fence → shift traffic (+driver) → scale standby (+driver)
//!                                → drained → completed, each step recorded in the log
//!  traffic tasks (IN_PROGRESS) ──traffic driver──▶ Finish
//! ```
//!
//! Invariant: every decision is a log entry before it is acted on, and every step is recorded
//! once (the failover log refuses a step already recorded), so a new leader resumes exactly
//! where the old one stopped. Side effects outside the log (drivers) are idempotent and may be
//! repeated for a step whose record was lost with a crashed leader; every driver call carries
//! the decision's epoch and the leader's term, so the far side can refuse a deposed leader.
//!
//! Timing that spans log entries (the hysteresis cooldown, the drain window) is measured on
//! this leader's monotonic clock from when it first saw the thing it times, restarted on every
//! new term ([`LeaderStopwatch`]); no decision compares a wall-clock time written by an earlier
//! leader with this one's. Automatic promotion is gated on the standby's last reported lag
//! ([`check_promotion`]); only an operator's break-glass failover goes past the gate.

pub mod config;
pub mod drivers;
pub mod edges;
pub mod metrics;
pub mod probe_agent;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arbiter_core::command::{Command, Outcome};
use arbiter_core::failover_log::{
    FailoverCommand, FailoverEvent, FailoverId, FailoverOutcome, FailoverStep, FailoverType,
};
use arbiter_core::failover_plan::{
    check_failback, check_promotion, failover_needed, next_action, Action, FailbackRefusal,
    PromotionRefusal,
};
use arbiter_core::leader_stopwatch::LeaderStopwatch;
use arbiter_core::lease_table::LeaseCommand;
use arbiter_core::probe_consensus::{ProbeConsensus, ProbeReport, Verdict};
use arbiter_core::region_health::{HealthCommand, HealthState};
use arbiter_core::replication::{DataLossEstimate, ReplicationCommand, WriteRate};
use arbiter_core::routing::{RoutingCommand, RoutingOutcome, FULL_WEIGHT_BP};
use arbiter_core::traffic::{
    task_token, ShiftRequest, TaskStatus, TrafficCommand, TrafficOutcome, TrafficTask,
};
use arbiter_core::{FencingToken, MonoMillis, RegionId};
use openraft::ServerState;

use crate::proposer::{Proposer, WriteError};
use crate::raft_types::Raft;
use crate::store::StateMachineStore;
use config::DrConfig;
use drivers::{Driver, DriverCall};
use edges::{EdgeRegistry, EdgeReportBody, EdgeView, Propagation};
use metrics::DrMetrics;

/// How long a failover's traffic shift waits for the edges to apply it.
const FAILOVER_PROPAGATION_WAIT: Duration = Duration::from_secs(5);
/// How often a traffic task re-reads the edges' reports.
const EDGE_POLL: Duration = Duration::from_millis(100);

/// Identity the controller proposes automated decisions under.
pub const CONTROLLER_IDENTITY: &str = "dr-controller";

#[derive(Debug, thiserror::Error)]
pub enum DrError {
    #[error("not the leader; leader is {leader_id:?} at {leader_addr:?}")]
    NotLeader {
        leader_id: Option<u64>,
        leader_addr: Option<String>,
    },
    #[error(transparent)]
    Write(WriteError),
    #[error("failback refused: {0}")]
    Failback(FailbackRefusal),
    /// The standby is too far behind to promote without an operator's break-glass.
    #[error("promotion refused: {0}")]
    Promotion(PromotionRefusal),
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Invalid(String),
}

impl From<WriteError> for DrError {
    fn from(e: WriteError) -> Self {
        match e {
            WriteError::NotLeader {
                leader_id,
                leader_addr,
            } => DrError::NotLeader {
                leader_id,
                leader_addr,
            },
            other => DrError::Write(other),
        }
    }
}

/// What a started failback did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailbackStarted {
    pub tenants_restored: usize,
    pub task_track_id: Option<String>,
}

#[derive(Clone)]
pub struct DrController {
    inner: Arc<Inner>,
}

struct Inner {
    config: DrConfig,
    raft: Raft,
    state: StateMachineStore,
    proposer: Proposer,
    epoch: Instant,
    /// Probe reports live only in the leader's memory: agents report to the leader, and a new
    /// leader waits for a fresh window before it declares anything.
    consensus: Mutex<ProbeConsensus>,
    /// Last `activeConnections` each region's gateway reported, for `drainActiveCount`.
    active_connections: Mutex<BTreeMap<RegionId, u64>>,
    /// What the edge routers last reported (leader memory, like probe reports).
    edges: EdgeRegistry,
    /// When this node started leading its current term (`None` while following).
    leading_since: Mutex<Option<Instant>>,
    /// Actions (by key) being carried out right now, so a slow driver is not started twice.
    running: Mutex<HashSet<String>>,
    /// What this leader has timed, on its monotonic clock, since it first saw it: each region's
    /// recovery run (the hysteresis cooldown) and each failover's drain window. Cleared on a
    /// new term, since an earlier leader's measurement cannot be trusted or even known.
    timers: Mutex<LeaderTimers>,
    /// Regions whose automatic failover this leader refused and logged during the current
    /// outage: logged once per outage and leader, not on every tick.
    refused_outages: Mutex<BTreeSet<RegionId>>,
    traffic_driver: Driver,
    compute_driver: Driver,
    metrics: DrMetrics,
}

impl DrController {
    pub fn start(
        config: DrConfig,
        raft: Raft,
        state: StateMachineStore,
        proposer: Proposer,
    ) -> Result<Self, DrError> {
        let consensus = ProbeConsensus::new(config.consensus.clone())
            .map_err(|e| DrError::Invalid(e.to_string()))?;
        let metrics = DrMetrics::default();
        let controller = DrController {
            inner: Arc::new(Inner {
                traffic_driver: Driver::new("traffic", config.traffic_driver.clone())
                    .with_metrics(metrics.clone()),
                compute_driver: Driver::new("compute", config.compute_driver.clone())
                    .with_metrics(metrics.clone()),
                metrics,
                config,
                raft,
                state,
                proposer,
                epoch: Instant::now(),
                consensus: Mutex::new(consensus),
                active_connections: Mutex::default(),
                edges: EdgeRegistry::default(),
                leading_since: Mutex::default(),
                running: Mutex::default(),
                timers: Mutex::default(),
                refused_outages: Mutex::default(),
            }),
        };
        tokio::spawn(controller.clone().run());
        Ok(controller)
    }

    pub fn config(&self) -> &DrConfig {
        &self.inner.config
    }

    pub fn metrics(&self) -> &DrMetrics {
        &self.inner.metrics
    }

    /// This leader's current consensus verdict per region; empty on a follower (probe reports
    /// live only in the leader's memory).
    pub fn verdicts(&self) -> Vec<Verdict> {
        if self.leader_or_redirect().is_err() {
            return Vec::new();
        }
        self.inner
            .consensus
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .evaluate(self.mono_now())
    }

    pub fn mono_now(&self) -> MonoMillis {
        MonoMillis(self.inner.epoch.elapsed().as_millis() as u64)
    }

    fn leader_or_redirect(&self) -> Result<(), DrError> {
        let metrics = self.inner.raft.metrics().borrow().clone();
        if metrics.state == ServerState::Leader {
            return Ok(());
        }
        let leader_addr = metrics.current_leader.and_then(|id| {
            metrics
                .membership_config
                .membership()
                .get_node(&id)
                .map(|m| m.http_addr.clone())
        });
        Err(DrError::NotLeader {
            leader_id: metrics.current_leader,
            leader_addr,
        })
    }

    /// Takes a probe agent's report (leader only; others redirect).
    pub fn record_probe(&self, report: ProbeReport) -> Result<(), DrError> {
        self.leader_or_redirect()?;
        let (vantage, region, ok) = (report.vantage.clone(), report.region.clone(), report.ok);
        self.inner
            .consensus
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .record(report)
            .map_err(|e| DrError::Invalid(e.to_string()))?;
        self.inner
            .metrics
            .probe_report(vantage.as_str(), region.as_str(), ok);
        Ok(())
    }

    /// Takes an edge router's report (leader only; others redirect).
    pub fn record_edge(&self, report: EdgeReportBody) -> Result<(), DrError> {
        self.leader_or_redirect()?;
        self.inner.edges.record(report, Instant::now());
        Ok(())
    }

    /// The edges this leader hears from; empty on a follower.
    pub fn edges(&self) -> Vec<EdgeView> {
        if self.leader_or_redirect().is_err() {
            return Vec::new();
        }
        self.inner.edges.view(Instant::now())
    }

    /// Which edges route by a version at least `index` (leader only).
    pub fn edge_propagation(&self, index: u64) -> Option<Propagation> {
        self.leader_or_redirect().ok()?;
        Some(self.inner.edges.propagation(index, Instant::now()))
    }

    /// The failover being carried out, if one is unfinished.
    pub fn failover_in_progress(&self) -> Option<FailoverId> {
        let state = self.inner.state.read();
        let event = state.machine.failovers.unfinished().next();
        event.map(|e| e.failover_id)
    }

    /// Why `region` is under suspicion, if it is: its replicated health is not `HEALTHY`, or a
    /// vantage point in this leader's probe window sees it failing. Silence (no agent
    /// reporting) is not suspicion, as for health observations.
    pub fn suspicion(&self, region: &RegionId) -> Option<String> {
        if let Some(health) = self.inner.state.read().machine.regions.get(region) {
            if health.state != HealthState::Healthy {
                return Some(format!("its health is {:?}", health.state));
            }
        }
        let verdicts = self
            .inner
            .consensus
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .evaluate(self.mono_now());
        let verdict = verdicts.into_iter().find(|v| v.region() == region)?;
        match &verdict {
            Verdict::Healthy { .. } => None,
            Verdict::Suspect { failing, .. } if failing.is_empty() => None,
            other => Some(describe(other)),
        }
    }

    /// Records a gateway's `activeConnections` as last seen by a probe.
    pub fn record_active_connections(&self, region: RegionId, count: u64) {
        self.inner
            .active_connections
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(region, count);
    }

    /// Requests still to drain from `region`: what the edges report in flight there, or, when
    /// no edge reports, the gateway's own `activeConnections`.
    pub fn drain_active_count(&self, region: &RegionId) -> u64 {
        if let Some(in_flight) = self.inner.edges.in_flight(region.as_str(), Instant::now()) {
            return in_flight;
        }
        self.inner
            .active_connections
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(region)
            .copied()
            .unwrap_or(0)
    }

    async fn propose(&self, command: Command) -> Result<Outcome, DrError> {
        Ok(self.inner.proposer.propose(command).await?)
    }

    /// An operator's failover (`MANUAL_OVERRIDE`): logged, then carried out by the controller.
    /// It passes the same promotion gate as an automated one unless `break_glass` is set; a
    /// break-glass failover past a refusing gate says so in its decision, with the figures and
    /// the data-loss estimate.
    pub async fn failover(
        &self,
        failed: RegionId,
        destination: Option<RegionId>,
        initiated_by: String,
        reason: String,
        break_glass: bool,
    ) -> Result<FailoverId, DrError> {
        self.leader_or_redirect()?;
        if !self.inner.config.regions.contains(&failed) {
            return Err(DrError::Invalid(format!("unknown region {failed}")));
        }
        let destination = match destination {
            Some(d) if !self.inner.config.regions.contains(&d) => {
                return Err(DrError::Invalid(format!("unknown region {d}")))
            }
            Some(d) => d,
            None => self.destination_for(&failed),
        };
        let detail = match self.promotion_gate(&failed, &destination) {
            Ok(()) => reason,
            Err(refusal) if break_glass => {
                let loss = self.data_loss_estimate(&failed, &destination);
                tracing::warn!(%failed, %destination, %refusal, ?loss, "break-glass failover past the promotion gate");
                format!(
                    "{reason} — break-glass override of the promotion gate: {refusal}; estimated \
                     loss {} writes ({} bytes)",
                    loss.writes, loss.bytes
                )
            }
            Err(refusal) => return Err(DrError::Promotion(refusal)),
        };
        self.initiate(
            failed,
            destination,
            FailoverType::ManualOverride,
            initiated_by,
            detail,
        )
        .await
    }

    /// The promotion gate for `failed` → `destination`, on the replicated link state.
    fn promotion_gate(
        &self,
        failed: &RegionId,
        destination: &RegionId,
    ) -> Result<(), PromotionRefusal> {
        let state = self.inner.state.read();
        check_promotion(
            failed,
            destination,
            state.machine.replication.link(failed, destination),
        )
    }

    async fn initiate(
        &self,
        failed: RegionId,
        destination: RegionId,
        failover_type: FailoverType,
        initiated_by: String,
        detail: String,
    ) -> Result<FailoverId, DrError> {
        let data_loss = self.data_loss_estimate(&failed, &destination);
        let outcome = self
            .propose(Command::Failover(FailoverCommand::Initiate {
                initiated_by,
                failed_region: failed,
                destination_region: destination,
                failover_type,
                data_loss,
                detail,
            }))
            .await?;
        match outcome {
            // Applying the decision also marked the region down (one log entry, see the state
            // machine), so there is no second write that could fail after this one committed.
            Outcome::Failover(FailoverOutcome::Initiated { failover_id }) => Ok(failover_id),
            Outcome::Failover(FailoverOutcome::Refused(r)) => Err(DrError::Refused(r.to_string())),
            other => Err(DrError::Refused(format!("unexpected outcome {other:?}"))),
        }
    }

    /// Replication lag × write rate for the link from the failed region to the destination.
    fn data_loss_estimate(&self, failed: &RegionId, destination: &RegionId) -> DataLossEstimate {
        let rate = WriteRate {
            writes_per_sec: self.inner.config.write_rate_per_sec,
            avg_write_bytes: self.inner.config.write_bytes,
        };
        let state = self.inner.state.read();
        state
            .machine
            .replication
            .data_loss_estimate(failed, destination, rate)
            .unwrap_or(DataLossEstimate {
                writes: 0,
                bytes: 0,
            })
    }

    /// The configured failover target, or else the first region still serving.
    fn destination_for(&self, failed: &RegionId) -> RegionId {
        let preferred = self.inner.config.failover_to.get(failed).cloned();
        let state = self.inner.state.read();
        let serving = |r: &RegionId| {
            state
                .machine
                .regions
                .get(r)
                .is_none_or(|h| h.state.is_serving())
        };
        match preferred {
            Some(p) if serving(&p) => p,
            other => self
                .inner
                .config
                .regions
                .iter()
                .find(|r| *r != failed && serving(r))
                .cloned()
                .or(other)
                .unwrap_or_else(|| failed.clone()),
        }
    }

    /// Moves traffic and tenants back to a recovered region — only once its cooldown passed and
    /// its replication checkpoint caught up with the active primary (no data regression).
    pub async fn failback(
        &self,
        region: RegionId,
        initiated_by: String,
    ) -> Result<FailbackStarted, DrError> {
        self.leader_or_redirect()?;
        let (active, weight_active) = {
            let state = self.inner.state.read();
            let m = &state.machine;
            let health = m
                .regions
                .get(&region)
                .ok_or_else(|| DrError::Invalid(format!("unknown region {region}")))?;
            // Where its traffic went: the destination of its latest failover that fenced it (a
            // refused failover moved nothing).
            let active = m
                .failovers
                .by_failed_region(&region)
                .find(|e| e.fenced())
                .map(|e| e.destination_region.clone())
                .ok_or_else(|| DrError::Refused(format!("{region} has never failed over")))?;
            let measured = health
                .recovery_run
                .map_or(0, |run| self.cooldown_measured(&region, run));
            check_failback(
                health,
                m.regions.cooldown_remaining(&region, measured).unwrap_or(0),
                m.replication.latest_checkpoint(&region),
                m.replication.latest_checkpoint(&active),
                m.replication.link(&active, &region),
            )
            .map_err(DrError::Failback)?;
            let weight = m
                .traffic
                .weights()
                .and_then(|w| w.weight_bp(&active))
                .unwrap_or(0);
            (active, weight)
        };
        // The region may write again: lift the fence its failover put on its leases. Before the
        // routing moves back, so its proxies can hold their leases when traffic arrives.
        self.propose(Command::Lease(LeaseCommand::LiftRegionFence {
            region: region.clone(),
            by: initiated_by.clone(),
        }))
        .await?;
        let restored = match self
            .propose(Command::Routing(RoutingCommand::RestoreRegion {
                region: region.clone(),
            }))
            .await?
        {
            Outcome::Routing(RoutingOutcome::Restored { count }) => count,
            _ => 0,
        };
        let mut task_track_id = None;
        if weight_active > 0 {
            let request = ShiftRequest {
                policy_name: format!("failback:{region}"),
                source_region: active.clone(),
                target_region: region.clone(),
                percentage_bp: FULL_WEIGHT_BP,
                drain_timeout_seconds: self.inner.config.drain.as_secs() as u32,
                reason: format!("failback to {region}"),
                initiated_by,
                drain_active_count: self.drain_active_count(&active),
            };
            if let Outcome::Traffic(TrafficOutcome::Started(task)) = self
                .propose(Command::Traffic(TrafficCommand::Shift(request)))
                .await?
            {
                task_track_id = Some(task.task_track_id.clone());
            }
        }
        Ok(FailbackStarted {
            tenants_restored: restored,
            task_track_id,
        })
    }

    /// The control loop: every tick, as leader, bootstrap the DR tables once per term, turn
    /// verdicts into health observations and failovers, advance unfinished failovers and
    /// traffic tasks.
    async fn run(self) {
        let mut bootstrapped_term = None;
        loop {
            tokio::time::sleep(self.inner.config.tick).await;
            let (is_leader, term) = {
                let m = self.inner.raft.metrics().borrow().clone();
                if matches!(m.state, ServerState::Shutdown) {
                    return;
                }
                (m.state == ServerState::Leader, m.current_term)
            };
            if !is_leader {
                bootstrapped_term = None;
                *self.lock_leading_since() = None;
                continue;
            }
            if bootstrapped_term != Some(term) {
                // A new term: what this node timed in an earlier term may have been extended by
                // another leader meanwhile; start every measurement afresh.
                self.lock_timers().clear();
                self.lock_refused_outages().clear();
                *self.lock_leading_since() = Some(Instant::now());
                match self.bootstrap().await {
                    Ok(()) => bootstrapped_term = Some(term),
                    Err(e) => {
                        tracing::debug!(error = %e, "dr bootstrap not committed yet");
                        continue;
                    }
                }
            }
            self.start_cooldown_timers();
            if let Err(e) = self.act_on_verdicts().await {
                tracing::debug!(error = %e, "verdicts not acted on");
            }
            self.advance_failovers();
            self.advance_traffic_tasks();
        }
    }

    /// Registers configured regions, seeds traffic weights (primary 100 %), the cooldown and
    /// the declared replication links that do not exist yet.
    async fn bootstrap(&self) -> Result<(), DrError> {
        let mut commands = Vec::new();
        {
            let state = self.inner.state.read();
            let m = &state.machine;
            for region in &self.inner.config.regions {
                if m.regions.get(region).is_none() {
                    commands.push(Command::Health(HealthCommand::Register {
                        region: region.clone(),
                    }));
                }
            }
            if m.traffic.weights().is_none() {
                let weights = self
                    .inner
                    .config
                    .regions
                    .iter()
                    .map(|r| {
                        let bp = if *r == self.inner.config.primary {
                            FULL_WEIGHT_BP
                        } else {
                            0
                        };
                        (r.clone(), bp)
                    })
                    .collect();
                commands.push(Command::Traffic(TrafficCommand::SetWeights(weights)));
            }
            if m.regions.cooldown_ms() != self.inner.config.cooldown_ms {
                commands.push(Command::SetHealthCooldown {
                    cooldown_ms: self.inner.config.cooldown_ms,
                });
            }
            // Only missing links: an existing link's mode is the operator's (PUT
            // /v1/replication/links) and its progress the replication engine's.
            for link in &self.inner.config.links {
                if m.replication.link(&link.source, &link.target).is_none() {
                    commands.push(Command::Replication(ReplicationCommand::UpsertLink {
                        source: link.source.clone(),
                        target: link.target.clone(),
                        mode: link.mode,
                    }));
                }
            }
        }
        for command in commands {
            self.propose(command).await?;
        }
        Ok(())
    }

    async fn act_on_verdicts(&self) -> Result<(), DrError> {
        let verdicts = self
            .inner
            .consensus
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .evaluate(self.mono_now());
        for verdict in verdicts {
            let (failover, observation) = {
                let state = self.inner.state.read();
                let m = &state.machine;
                let failover = failover_needed(&verdict, &m.regions, &m.failovers).cloned();
                let observation = self.observation(&verdict, m);
                (failover, observation)
            };
            if !matches!(verdict, Verdict::Outage { .. }) {
                self.lock_refused_outages().remove(verdict.region());
            }
            if let Some(failed) = failover {
                let destination = self.destination_for(&failed);
                let detail = describe(&verdict);
                if let Err(refusal) = self.promotion_gate(&failed, &destination) {
                    self.refuse_promotion(failed, destination, detail, refusal)
                        .await?;
                    continue;
                }
                tracing::warn!(region = %failed, %destination, %detail, "outage consensus: failing over");
                self.initiate(
                    failed,
                    destination,
                    FailoverType::Automated,
                    CONTROLLER_IDENTITY.into(),
                    detail,
                )
                .await?;
            } else if let Some(command) = observation {
                self.propose(Command::Health(command)).await?;
            }
        }
        Ok(())
    }

    /// Logs, once per outage and leader, that the automatic failover of `failed` was refused by
    /// the promotion gate, with the figures and what it would have lost. The region keeps its
    /// health row as it was: it still counts as serving, so the gate is asked again on every
    /// tick and the failover goes ahead by itself if a report brings the lag back within target.
    async fn refuse_promotion(
        &self,
        failed: RegionId,
        destination: RegionId,
        considered: String,
        refusal: PromotionRefusal,
    ) -> Result<(), DrError> {
        let first = self.lock_refused_outages().insert(failed.clone());
        if !first {
            return Ok(());
        }
        let data_loss = self.data_loss_estimate(&failed, &destination);
        tracing::error!(region = %failed, %destination, %refusal, ?data_loss, "automatic failover refused by the promotion gate");
        let command = FailoverCommand::RecordRefusal {
            initiated_by: CONTROLLER_IDENTITY.into(),
            failed_region: failed.clone(),
            destination_region: destination,
            failover_type: FailoverType::Automated,
            data_loss,
            considered,
            refusal: format!(
                "automatic promotion refused: {refusal}; an operator's break-glass failover \
                 would lose an estimated {} writes ({} bytes)",
                data_loss.writes, data_loss.bytes
            ),
        };
        if let Err(e) = self.propose(Command::Failover(command)).await {
            // Not logged: log it on a later tick.
            self.lock_refused_outages().remove(&failed);
            return Err(e);
        }
        Ok(())
    }

    fn lock_refused_outages(&self) -> std::sync::MutexGuard<'_, BTreeSet<RegionId>> {
        self.inner
            .refused_outages
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    fn lock_leading_since(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        self.inner
            .leading_since
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    fn lock_timers(&self) -> std::sync::MutexGuard<'_, LeaderTimers> {
        self.inner.timers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How long this leader has timed `region`'s recovery run `run` (0 when it had not seen it).
    fn cooldown_measured(&self, region: &RegionId, run: FencingToken) -> u64 {
        let now = self.mono_now();
        self.lock_timers()
            .cooldowns
            .elapsed(&(region.clone(), run), now)
    }

    /// Starts timing every recovery run this leader has not seen yet, and forgets runs that
    /// ended: the cooldown is measured from when this leader first saw the run, whatever the
    /// run's wall-clock `healthy_since` says.
    fn start_cooldown_timers(&self) {
        let runs: Vec<(RegionId, FencingToken)> = {
            let state = self.inner.state.read();
            state
                .machine
                .regions
                .iter()
                .filter_map(|(region, health)| Some((region.clone(), health.recovery_run?)))
                .collect()
        };
        let now = self.mono_now();
        let mut timers = self.lock_timers();
        timers.cooldowns.retain(|run| runs.contains(run));
        for run in &runs {
            timers.cooldowns.elapsed(run, now);
        }
    }

    /// The health observation worth logging for `verdict`: only ones that change the region's
    /// state, so a steady region costs no log entries.
    fn observation(
        &self,
        verdict: &Verdict,
        m: &arbiter_core::state_machine::StateMachine,
    ) -> Option<HealthCommand> {
        let health = m.regions.get(verdict.region())?;
        let changes = match verdict {
            Verdict::Healthy { .. } => match health.state {
                HealthState::Degraded | HealthState::Down => true,
                HealthState::Recovering => {
                    // Healthy now, and healthy for the whole cooldown by this leader's own
                    // monotonic clock: the run ends. Any unhealthy verdict meanwhile has sent
                    // the region back down, which starts a new run.
                    let run = health.recovery_run?;
                    let measured_ms = self.cooldown_measured(verdict.region(), run);
                    return (measured_ms >= m.regions.cooldown_ms()).then(|| {
                        HealthCommand::CooldownElapsed {
                            region: verdict.region().clone(),
                            run,
                            measured_ms,
                        }
                    });
                }
                HealthState::Healthy => false,
            },
            // Silence alone (no agent reporting) is not evidence against a region.
            Verdict::Suspect { failing, .. } if failing.is_empty() => false,
            Verdict::Suspect { .. } | Verdict::DependencyOutage { .. } => {
                matches!(health.state, HealthState::Healthy | HealthState::Recovering)
            }
            Verdict::Outage { .. } => health.state != HealthState::Down,
        };
        changes.then(|| verdict.health_command())
    }

    /// Runs `work` in the background unless work under the same key is already running.
    fn spawn_once<F>(&self, key: String, work: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        {
            let mut running = self.inner.running.lock().unwrap_or_else(|e| e.into_inner());
            if !running.insert(key.clone()) {
                return;
            }
        }
        let inner = self.inner.clone();
        tokio::spawn(async move {
            work.await;
            inner
                .running
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&key);
        });
    }

    fn advance_failovers(&self) {
        let actions: Vec<(Action, FailoverEvent)> = {
            let state = self.inner.state.read();
            state
                .machine
                .failovers
                .unfinished()
                .filter_map(|event| next_action(event).map(|a| (a, event.clone())))
                .collect()
        };
        for (action, event) in actions {
            let key = format!("{}", action.failover_id());
            let controller = self.clone();
            self.spawn_once(key, async move {
                if let Err(e) = controller.perform(action.clone(), &event).await {
                    tracing::warn!(?action, error = %e, "failover step not completed; will retry");
                }
            });
        }
    }

    /// Carries out one step and records it.
    async fn perform(&self, action: Action, event: &FailoverEvent) -> Result<(), DrError> {
        let started = Instant::now();
        let result = match self.carry_out(&action, event).await {
            // Not due yet: nothing done, nothing to record.
            Ok(None) => return Ok(()),
            Ok(Some((step, detail))) => self.record(&action, step, detail).await.map(|()| step),
            Err(e) => Err(e),
        };
        let outcome = match &result {
            Ok(FailoverStep::Failed) => "failed",
            Ok(_) => "recorded",
            Err(_) => "error",
        };
        self.inner
            .metrics
            .step(step_name(action.step()), outcome, started.elapsed());
        result.map(|_| ())
    }

    /// Carries out one step: the step to record and its detail, or `None` when it is not due.
    async fn carry_out(
        &self,
        action: &Action,
        event: &FailoverEvent,
    ) -> Result<Option<(FailoverStep, String)>, DrError> {
        let detail = match action {
            Action::Fence { region, .. } => {
                let outcome = self
                    .propose(Command::Lease(LeaseCommand::RevokeRegion {
                        region: region.clone(),
                        by: CONTROLLER_IDENTITY.into(),
                        reason: format!("failover {}", action.failover_id()),
                    }))
                    .await?;
                format!("fenced {region}: {}", describe_outcome(&outcome))
            }
            Action::ShiftTraffic {
                from,
                to,
                failover_id,
            } => {
                let moved = match self
                    .propose(Command::Routing(RoutingCommand::ShiftRegion {
                        from: from.clone(),
                        to: to.clone(),
                    }))
                    .await?
                {
                    Outcome::Routing(RoutingOutcome::Shifted { count }) => count,
                    _ => 0,
                };
                let task = self
                    .failover_task(failover_id, from, to, &event.failover_id)
                    .await?;
                let result = self.finish_task(&task).await?;
                // The drain window starts now, on this leader's clock.
                let now = self.mono_now();
                self.lock_timers().drains.elapsed(failover_id, now);
                format!(
                    "{moved} tenants moved {from} -> {to}; traffic task {} {:?}: {}",
                    task.task_track_id, result.status, result.detail
                )
            }
            Action::ScaleStandby {
                region,
                failover_id,
            } => {
                let result = self
                    .inner
                    .compute_driver
                    .run(&DriverCall {
                        action: "scale_standby",
                        failover_id: Some(failover_id.to_string()),
                        task_track_id: None,
                        from_region: Some(event.failed_region.to_string()),
                        to_region: Some(region.to_string()),
                        weights: self.weights_percent(),
                        reason: format!("failover of {}", event.failed_region),
                        epoch: failover_id.0 .0,
                        leader_term: self.term(),
                    })
                    .await;
                if !result.ok {
                    return Ok(Some((FailoverStep::Failed, result.detail)));
                }
                format!("{} (attempts: {})", result.detail, result.attempts)
            }
            Action::AwaitDrain {
                region,
                failover_id,
            } => {
                // Timed on this leader's monotonic clock from when it shifted the traffic (or,
                // for a failover it inherited, from when it first got here), never from the
                // wall-clock time an earlier leader logged the shift at.
                let drain_ms = self.inner.config.drain.as_millis() as u64;
                let now = self.mono_now();
                let elapsed = self.lock_timers().drains.elapsed(failover_id, now);
                if elapsed < drain_ms {
                    // Not yet: the next tick looks again.
                    let wait = (drain_ms - elapsed).min(1_000);
                    tokio::time::sleep(Duration::from_millis(wait)).await;
                    return Ok(None);
                }
                self.lock_timers().drains.retain(|id| id != failover_id);
                format!("{region} drained ({drain_ms} ms drain window, {elapsed} ms timed by this leader)")
            }
            Action::Complete { .. } => "failover completed".to_string(),
        };
        Ok(Some((action.step(), detail)))
    }

    async fn record(
        &self,
        action: &Action,
        step: FailoverStep,
        detail: String,
    ) -> Result<(), DrError> {
        let command = FailoverCommand::RecordStep {
            failover_id: action.failover_id(),
            step,
            detail,
        };
        match self.propose(Command::Failover(command)).await? {
            Outcome::Failover(FailoverOutcome::StepRecorded { status, .. }) => {
                tracing::info!(failover = %action.failover_id(), ?step, ?status, "failover step recorded");
                Ok(())
            }
            Outcome::Failover(FailoverOutcome::Refused(r)) => {
                // Already recorded by a previous leader or a concurrent attempt: nothing to do.
                tracing::info!(failover = %action.failover_id(), refusal = %r, "step not recorded");
                Ok(())
            }
            other => Err(DrError::Refused(format!("unexpected outcome {other:?}"))),
        }
    }

    /// The traffic task of this failover: reused if a previous leader already created it.
    async fn failover_task(
        &self,
        failover_id: &FailoverId,
        from: &RegionId,
        to: &RegionId,
        event_id: &FailoverId,
    ) -> Result<TrafficTask, DrError> {
        let policy = format!("failover:{failover_id}");
        let existing = {
            let state = self.inner.state.read();
            let found = state
                .machine
                .traffic
                .tasks()
                .find(|t| t.request.policy_name == policy)
                .cloned();
            found
        };
        if let Some(task) = existing {
            return Ok(task);
        }
        let request = ShiftRequest {
            policy_name: policy,
            source_region: from.clone(),
            target_region: to.clone(),
            percentage_bp: FULL_WEIGHT_BP,
            drain_timeout_seconds: self.inner.config.drain.as_secs() as u32,
            reason: format!("failover {event_id}"),
            initiated_by: CONTROLLER_IDENTITY.into(),
            drain_active_count: self.drain_active_count(from),
        };
        match self
            .propose(Command::Traffic(TrafficCommand::Shift(request)))
            .await?
        {
            Outcome::Traffic(TrafficOutcome::Started(task)) => Ok(*task),
            Outcome::Traffic(TrafficOutcome::Refused(r)) => Err(DrError::Refused(r.to_string())),
            other => Err(DrError::Refused(format!("unexpected outcome {other:?}"))),
        }
    }

    /// This node's current Raft term (it is the leader whenever it calls a driver).
    fn term(&self) -> u64 {
        self.inner.raft.metrics().borrow().current_term
    }

    fn weights_percent(&self) -> Vec<(String, f64)> {
        let state = self.inner.state.read();
        state
            .machine
            .traffic
            .weights()
            .map(|w| {
                w.iter()
                    .map(|(r, bp)| (r.to_string(), f64::from(bp) / 100.0))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Runs the traffic driver for a task (unless finished) and logs its result.
    async fn finish_task(&self, task: &TrafficTask) -> Result<TrafficTask, DrError> {
        if task.status != TaskStatus::InProgress {
            return Ok(task.clone());
        }
        let result = self
            .inner
            .traffic_driver
            .run(&DriverCall {
                action: "shift_traffic",
                failover_id: task
                    .request
                    .policy_name
                    .strip_prefix("failover:")
                    .map(String::from),
                task_track_id: Some(task.task_track_id.clone()),
                from_region: Some(task.request.source_region.to_string()),
                to_region: Some(task.request.target_region.to_string()),
                weights: self.weights_percent(),
                reason: task.request.reason.clone(),
                epoch: task_epoch(task),
                leader_term: self.term(),
            })
            .await;
        let driver = format!("{} (attempts: {})", result.detail, result.attempts);
        let (succeeded, detail) = if result.ok {
            match self.await_edges(task).await {
                Ok(edges) => (true, format!("{driver}; {edges}")),
                Err(edges) => (false, format!("{driver}; {edges}")),
            }
        } else {
            (false, driver)
        };
        let command = TrafficCommand::Finish {
            task_track_id: task.task_track_id.clone(),
            succeeded,
            detail,
        };
        match self.propose(Command::Traffic(command)).await? {
            Outcome::Traffic(TrafficOutcome::Finished(done)) => Ok(*done),
            // Finished meanwhile (by a previous leader): report what the log says.
            _ => {
                let state = self.inner.state.read();
                Ok(state
                    .machine
                    .traffic
                    .task(&task.task_track_id)
                    .cloned()
                    .unwrap_or_else(|| task.clone()))
            }
        }
    }

    /// Waits until every registered edge routes by the task's version (`Err` naming the
    /// laggards when the window closes first), then, for a planned shift that empties its
    /// source, until the edges report nothing in flight there or the drain timeout passes
    /// (the edges cut what is left). A failover's shift waits at most
    /// [`FAILOVER_PROPAGATION_WAIT`] and not for the drain: the failover does not wait on edges.
    async fn await_edges(&self, task: &TrafficTask) -> Result<String, String> {
        let index = task_token(&task.task_track_id).map_or(0, |t| t.log_index());
        let planned = !task.request.policy_name.starts_with("failover:");
        let drain = Duration::from_secs(u64::from(task.request.drain_timeout_seconds));
        let window = if planned {
            drain.max(FAILOVER_PROPAGATION_WAIT)
        } else {
            FAILOVER_PROPAGATION_WAIT
        };
        // A leader that just took over has not heard from every edge yet.
        let since = (*self.lock_leading_since()).unwrap_or_else(Instant::now);
        tokio::time::sleep_until((since + EdgeRegistry::WARM_UP).into()).await;
        let started = Instant::now();
        let deadline = started + window;
        let edges = loop {
            let propagation = self.inner.edges.propagation(index, Instant::now());
            if propagation.edges.is_empty() {
                return Ok("no edge routers registered".into());
            }
            if propagation.complete() {
                break propagation.edges;
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "routing version {index} not applied within {} s by: {}",
                    window.as_secs(),
                    propagation.lagging.join(", ")
                ));
            }
            tokio::time::sleep(EDGE_POLL).await;
        };
        let mut summary = format!(
            "routing version {index} applied by {} edge(s) ({}) within {} ms",
            edges.len(),
            edges.join(", "),
            started.elapsed().as_millis()
        );
        if planned && task.shift.source_bp == 0 {
            let source = task.request.source_region.as_str();
            let drained_from = Instant::now();
            let deadline = started + drain;
            loop {
                let in_flight = self
                    .inner
                    .edges
                    .in_flight(source, Instant::now())
                    .unwrap_or(0);
                if in_flight == 0 {
                    summary.push_str(&format!(
                        "; {source} drained in {} ms",
                        drained_from.elapsed().as_millis()
                    ));
                    break;
                }
                if Instant::now() >= deadline {
                    summary.push_str(&format!(
                        "; {in_flight} request(s) still in flight to {source} at the {} s drain \
                         timeout (the edges cut them)",
                        drain.as_secs()
                    ));
                    break;
                }
                tokio::time::sleep(EDGE_POLL).await;
            }
        }
        Ok(summary)
    }

    fn advance_traffic_tasks(&self) {
        let tasks: Vec<TrafficTask> = {
            let state = self.inner.state.read();
            state
                .machine
                .traffic
                .in_progress()
                // Failover tasks are driven by their failover step.
                .filter(|t| !t.request.policy_name.starts_with("failover:"))
                .cloned()
                .collect()
        };
        for task in tasks {
            let controller = self.clone();
            self.spawn_once(task.task_track_id.clone(), async move {
                if let Err(e) = controller.finish_task(&task).await {
                    tracing::warn!(task = %task.task_track_id, error = %e, "traffic task not finished");
                }
            });
        }
    }
}

/// The fencing epoch of a traffic task's decision: its failover's, for a failover's shift (so
/// every call of one failover carries one epoch), else the token that started the task.
fn task_epoch(task: &TrafficTask) -> u64 {
    let failover = task
        .request
        .policy_name
        .strip_prefix("failover:")
        .and_then(|id| id.parse::<FailoverId>().ok())
        .map(|id| id.0);
    failover
        .or_else(|| task_token(&task.task_track_id))
        .map_or(0, |token| token.0)
}

/// A failover step as a metric label.
pub fn step_name(step: FailoverStep) -> &'static str {
    match step {
        FailoverStep::Decide => "decide",
        FailoverStep::Fence => "fence",
        FailoverStep::ShiftTraffic => "shift_traffic",
        FailoverStep::ScaleStandby => "scale_standby",
        FailoverStep::Drained => "drained",
        FailoverStep::Completed => "completed",
        FailoverStep::Failed => "failed",
    }
}

fn describe(verdict: &Verdict) -> String {
    match verdict {
        Verdict::Outage {
            region, vantages, ..
        } => format!(
            "outage of {region} confirmed by {} vantage points: {}",
            vantages.len(),
            vantages
                .iter()
                .map(|v| v.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        other => format!("{other:?}"),
    }
}

fn describe_outcome(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Lease(arbiter_core::lease_table::LeaseOutcome::RevokedMany(revoked)) => {
            if revoked.is_empty() {
                "no live leases".into()
            } else {
                revoked
                    .iter()
                    .map(|r| {
                        format!(
                            "{} (held by {}, epoch now {})",
                            r.resource, r.holder, r.epoch
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        }
        other => format!("{other:?}"),
    }
}

/// The leader's monotonic stopwatches (see [`LeaderStopwatch`]).
#[derive(Default)]
struct LeaderTimers {
    /// Keyed by (region, recovery run).
    cooldowns: LeaderStopwatch<(RegionId, FencingToken)>,
    drains: LeaderStopwatch<FailoverId>,
}

impl LeaderTimers {
    fn clear(&mut self) {
        self.cooldowns.clear();
        self.drains.clear();
    }
}
