//! Region health with hysteresis: the replicated record of which regions are up, and the rule
//! that keeps traffic from oscillating between them.
//!
//! Invariant: a region marked `DOWN` becomes `HEALTHY` only after it has been observed healthy
//! continuously for the cooldown (default 10 min); any unhealthy observation while `RECOVERING`
//! sends it back to `DOWN` and restarts the clock. The controller's probe consensus
//! ([`crate::probe_consensus`]) decides which observation to propose.
//!
//! How the cooldown is timed: not by comparing wall clocks. The entry that starts a recovery
//! names the run (`recovery_run`, its token); the Raft leader times the run on its own monotonic
//! clock and proposes [`HealthCommand::CooldownElapsed`] with what it measured, and only that
//! command, naming the current run, ends it. A new leader cannot know how long its predecessor
//! had measured, so it starts the run's timer afresh from when it first sees it: a leader change
//! can only lengthen a cooldown, and a leader whose wall clock runs ahead cannot shorten one.
//! (The project's HLC would not help here: its physical part follows the largest wall clock seen,
//! so one fast clock would still move every deadline.) The wall-clock fields below come from the
//! entries' [`ApplyCtx::now`] and are for operators to read; no decision compares them.

use crate::types::{ApplyCtx, FencingToken, RegionId, WallMillis};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use thiserror::Error;

/// The seed's hysteresis cooldown: 10 minutes.
pub const DEFAULT_COOLDOWN_MS: u64 = 600_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum HealthState {
    Healthy,
    /// Some probes see trouble, not enough to declare an outage. Still serving.
    Degraded,
    /// Declared down by probe consensus; traffic has been (or is being) moved away.
    Down,
    /// Down, but observed healthy since `healthy_since`; not trusted until the leader has timed
    /// the whole cooldown on its monotonic clock (`CooldownElapsed`).
    Recovering,
}

impl HealthState {
    /// Whether traffic may still be routed to a region in this state.
    pub fn is_serving(self) -> bool {
        matches!(self, HealthState::Healthy | HealthState::Degraded)
    }
}

/// One region's row.
///
/// `down_since` is set exactly in `DOWN` and `RECOVERING`; `cooldown_until` and `recovery_run`
/// exactly in `RECOVERING`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegionHealth {
    pub state: HealthState,
    pub down_since: Option<WallMillis>,
    /// Start of the current unbroken run of healthy observations, if the region is in one.
    pub healthy_since: Option<WallMillis>,
    /// `healthy_since + cooldown` by the proposing leader's wall clock: an estimate shown to
    /// operators, never compared with anything.
    pub cooldown_until: Option<WallMillis>,
    /// The token of the entry that began the current recovery: the run a leader times and
    /// `CooldownElapsed` must name, so a measurement of an interrupted run ends nothing.
    #[serde(default)]
    pub recovery_run: Option<FencingToken>,
}

impl RegionHealth {
    fn healthy(now: WallMillis) -> Self {
        RegionHealth {
            state: HealthState::Healthy,
            down_since: None,
            healthy_since: Some(now),
            cooldown_until: None,
            recovery_run: None,
        }
    }

    fn mark_down(&mut self, now: WallMillis) {
        // A region already down keeps its original `down_since`: the outage has not ended.
        if self.state != HealthState::Down && self.state != HealthState::Recovering {
            self.down_since = Some(now);
        }
        self.state = HealthState::Down;
        self.healthy_since = None;
        self.cooldown_until = None;
        self.recovery_run = None;
    }

    fn observe_healthy(&mut self, ctx: &ApplyCtx, cooldown_ms: u64) {
        match self.state {
            // A recovering region stays so until the leader has timed the cooldown.
            HealthState::Healthy | HealthState::Recovering => {}
            HealthState::Degraded => *self = RegionHealth::healthy(ctx.now),
            HealthState::Down => {
                self.state = HealthState::Recovering;
                self.healthy_since = Some(ctx.now);
                self.cooldown_until = Some(WallMillis(ctx.now.0.saturating_add(cooldown_ms)));
                self.recovery_run = Some(ctx.token);
            }
        }
    }

    /// The leader measured `measured_ms` of recovery run `run` on its monotonic clock.
    fn cooldown_elapsed(&mut self, run: FencingToken, measured_ms: u64, cooldown_ms: u64) {
        if self.state == HealthState::Recovering
            && self.recovery_run == Some(run)
            && measured_ms >= cooldown_ms
        {
            // Keep the start of the healthy run: it is when recovery really began.
            self.state = HealthState::Healthy;
            self.down_since = None;
            self.cooldown_until = None;
            self.recovery_run = None;
        }
    }

    fn observe_unhealthy(&mut self, now: WallMillis) {
        match self.state {
            HealthState::Healthy => {
                self.state = HealthState::Degraded;
                self.healthy_since = None;
            }
            // The interrupted recovery counts for nothing: back to down, clock restarted.
            HealthState::Recovering => self.mark_down(now),
            HealthState::Degraded | HealthState::Down => {}
        }
    }
}

/// A region-health log command. `MarkDown` comes from an outage verdict, the observations from
/// the controller's other verdicts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum HealthCommand {
    /// Start tracking a region, healthy. Idempotent.
    Register {
        region: RegionId,
    },
    MarkDown {
        region: RegionId,
    },
    ObserveHealthy {
        region: RegionId,
    },
    ObserveUnhealthy {
        region: RegionId,
    },
    /// The leader has timed `measured_ms` of the recovery run `run` on its monotonic clock
    /// (since it first saw the run as leader). Ends the recovery only if `run` is still the
    /// current one and the measurement covers the whole cooldown; otherwise changes nothing.
    CooldownElapsed {
        region: RegionId,
        run: FencingToken,
        measured_ms: u64,
    },
}

impl HealthCommand {
    pub fn region(&self) -> &RegionId {
        match self {
            HealthCommand::Register { region }
            | HealthCommand::MarkDown { region }
            | HealthCommand::ObserveHealthy { region }
            | HealthCommand::ObserveUnhealthy { region }
            | HealthCommand::CooldownElapsed { region, .. } => region,
        }
    }
}

/// The deterministic result of applying a [`HealthCommand`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum HealthOutcome {
    Registered {
        region: RegionId,
    },
    Changed {
        region: RegionId,
        from: HealthState,
        to: HealthState,
    },
    /// The state did not change (timestamps may have, e.g. a restarted recovery clock).
    Unchanged {
        region: RegionId,
        state: HealthState,
    },
    Refused(HealthRefusal),
}

#[derive(Debug, Clone, PartialEq, Eq, Error, Serialize, Deserialize)]
pub enum HealthRefusal {
    #[error("region {region} is not registered")]
    UnknownRegion { region: RegionId },
}

/// The replicated regions table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegionHealthTable {
    /// Replicated with the table rather than read from each node's config, so every node applies
    /// the same hysteresis.
    cooldown_ms: u64,
    regions: BTreeMap<RegionId, RegionHealth>,
}

impl Default for RegionHealthTable {
    fn default() -> Self {
        RegionHealthTable::new(DEFAULT_COOLDOWN_MS)
    }
}

impl RegionHealthTable {
    pub fn new(cooldown_ms: u64) -> Self {
        RegionHealthTable {
            cooldown_ms,
            regions: BTreeMap::new(),
        }
    }

    pub fn cooldown_ms(&self) -> u64 {
        self.cooldown_ms
    }

    /// Changes the hysteresis cooldown for recoveries that start from now on.
    pub fn set_cooldown(&mut self, cooldown_ms: u64) {
        self.cooldown_ms = cooldown_ms;
    }

    pub fn get(&self, region: &RegionId) -> Option<&RegionHealth> {
        self.regions.get(region)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&RegionId, &RegionHealth)> {
        self.regions.iter()
    }

    /// While `region` is `RECOVERING`, how much of the cooldown is left after the leader has
    /// timed `measured_ms` of its current run; `None` in any other state.
    pub fn cooldown_remaining(&self, region: &RegionId, measured_ms: u64) -> Option<u64> {
        let health = self.regions.get(region)?;
        (health.state == HealthState::Recovering)
            .then(|| self.cooldown_ms.saturating_sub(measured_ms))
    }

    pub fn apply(&mut self, cmd: &HealthCommand, ctx: &ApplyCtx) -> HealthOutcome {
        if let HealthCommand::Register { region } = cmd {
            return self.register(region, ctx.now);
        }
        let region = cmd.region().clone();
        let cooldown_ms = self.cooldown_ms;
        let Some(health) = self.regions.get_mut(&region) else {
            return HealthOutcome::Refused(HealthRefusal::UnknownRegion { region });
        };
        let from = health.state;
        match cmd {
            HealthCommand::Register { .. } => {}
            HealthCommand::MarkDown { .. } => health.mark_down(ctx.now),
            HealthCommand::ObserveHealthy { .. } => health.observe_healthy(ctx, cooldown_ms),
            HealthCommand::ObserveUnhealthy { .. } => health.observe_unhealthy(ctx.now),
            HealthCommand::CooldownElapsed {
                run, measured_ms, ..
            } => health.cooldown_elapsed(*run, *measured_ms, cooldown_ms),
        }
        let to = health.state;
        if from == to {
            HealthOutcome::Unchanged { region, state: to }
        } else {
            HealthOutcome::Changed { region, from, to }
        }
    }

    fn register(&mut self, region: &RegionId, now: WallMillis) -> HealthOutcome {
        if let Some(health) = self.regions.get(region) {
            return HealthOutcome::Unchanged {
                region: region.clone(),
                state: health.state,
            };
        }
        self.regions
            .insert(region.clone(), RegionHealth::healthy(now));
        HealthOutcome::Registered {
            region: region.clone(),
        }
    }
}
