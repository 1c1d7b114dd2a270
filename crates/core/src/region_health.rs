//! Region health with hysteresis: the replicated record of which regions are up, and the rule
//! that keeps traffic from oscillating between them.
//!
//! Invariant: a region marked `DOWN` becomes `HEALTHY` only after it has been observed healthy
//! continuously for the cooldown (default 10 min); any unhealthy observation while `RECOVERING`
//! sends it back to `DOWN` and restarts the clock. Times are the log entries' wall clocks
//! ([`ApplyCtx::now`]), so every node reaches the same state; the controller's probe consensus
//! ([`crate::probe_consensus`]) decides which observation to propose.

use crate::types::{ApplyCtx, RegionId, WallMillis};
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
    /// Down, but observed healthy since `healthy_since`; not trusted until `cooldown_until`.
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
/// `down_since` is set exactly in `DOWN` and `RECOVERING`; `cooldown_until` exactly in
/// `RECOVERING`, where it is `healthy_since + cooldown`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegionHealth {
    pub state: HealthState,
    pub down_since: Option<WallMillis>,
    /// Start of the current unbroken run of healthy observations, if the region is in one.
    pub healthy_since: Option<WallMillis>,
    pub cooldown_until: Option<WallMillis>,
}

impl RegionHealth {
    fn healthy(now: WallMillis) -> Self {
        RegionHealth {
            state: HealthState::Healthy,
            down_since: None,
            healthy_since: Some(now),
            cooldown_until: None,
        }
    }

    /// While `RECOVERING`, how much of the cooldown is left at `now`; `None` in any other state.
    pub fn cooldown_remaining(&self, now: WallMillis) -> Option<u64> {
        match (self.state, self.cooldown_until) {
            (HealthState::Recovering, Some(until)) => Some(until.0.saturating_sub(now.0)),
            _ => None,
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
    }

    fn observe_healthy(&mut self, now: WallMillis, cooldown_ms: u64) {
        match self.state {
            HealthState::Healthy => {}
            HealthState::Degraded => *self = RegionHealth::healthy(now),
            HealthState::Down => {
                self.state = HealthState::Recovering;
                self.healthy_since = Some(now);
                self.cooldown_until = Some(WallMillis(now.0.saturating_add(cooldown_ms)));
            }
            HealthState::Recovering => {
                if self.cooldown_until.is_some_and(|until| now >= until) {
                    // Keep the start of the healthy run: it is when recovery really began.
                    self.state = HealthState::Healthy;
                    self.down_since = None;
                    self.cooldown_until = None;
                }
            }
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
}

impl HealthCommand {
    pub fn region(&self) -> &RegionId {
        match self {
            HealthCommand::Register { region }
            | HealthCommand::MarkDown { region }
            | HealthCommand::ObserveHealthy { region }
            | HealthCommand::ObserveUnhealthy { region } => region,
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

    pub fn apply(&mut self, cmd: &HealthCommand, ctx: &ApplyCtx) -> HealthOutcome {
        let transition: fn(&mut RegionHealth, WallMillis, u64) = match cmd {
            HealthCommand::Register { region } => return self.register(region, ctx.now),
            HealthCommand::MarkDown { .. } => |health, now, _| health.mark_down(now),
            HealthCommand::ObserveHealthy { .. } => RegionHealth::observe_healthy,
            HealthCommand::ObserveUnhealthy { .. } => {
                |health, now, _| health.observe_unhealthy(now)
            }
        };
        let region = cmd.region().clone();
        let Some(health) = self.regions.get_mut(&region) else {
            return HealthOutcome::Refused(HealthRefusal::UnknownRegion { region });
        };
        let from = health.state;
        transition(health, ctx.now, self.cooldown_ms);
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
