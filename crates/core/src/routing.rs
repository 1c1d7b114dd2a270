//! Tenant routing and regional traffic weights: where each tenant's requests go, and what share
//! of traffic each region takes.
//!
//! Invariants of [`RoutingTable`]: an unlocked tenant is `DEFAULT` exactly when it is routed to
//! its primary region and `SHIFTED` otherwise; a `LOCKED` tenant changes only by `Unlock`; every
//! accepted write sets the row's `version` to the writing command's fencing token, so versions
//! strictly increase in log order and compare-and-set never confuses two writes. The
//! (active region, status) index always holds exactly the rows of the table.
//!
//! Invariant of [`TrafficWeights`]: the weights are in basis points and sum to 100 %.

use crate::types::{ApplyCtx, RegionId, TenantId, WallMillis};
use serde::{Deserialize, Serialize, Serializer};
use std::collections::{BTreeMap, BTreeSet};
use thiserror::Error;

/// The seed's `routing_status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum RoutingStatus {
    /// Routed to its primary region.
    Default,
    /// Routed away from its primary region (failover, or an operator's compare-and-set).
    Shifted,
    /// Pinned by an operator (e.g. geographic isolation): region-wide shifts pass it by.
    Locked,
}

/// One row of `tenant_routing_states`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantRoute {
    pub tenant_id: TenantId,
    pub primary_region: RegionId,
    pub failover_region: RegionId,
    pub active_routing_region: RegionId,
    pub routing_status: RoutingStatus,
    /// Log time of the last write: audit only.
    pub updated_at: WallMillis,
    /// The fencing token of the last write: the revision compare-and-set checks.
    pub version: u64,
}

impl TenantRoute {
    /// The status an unlocked tenant has when routed to `active`.
    fn unlocked_status(&self) -> RoutingStatus {
        if self.active_routing_region == self.primary_region {
            RoutingStatus::Default
        } else {
            RoutingStatus::Shifted
        }
    }

    fn index_key(&self) -> (RegionId, RoutingStatus, TenantId) {
        (
            self.active_routing_region.clone(),
            self.routing_status,
            self.tenant_id.clone(),
        )
    }
}

/// What a compare-and-set expects to find.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CasExpectation {
    Version(u64),
    ActiveRegion(RegionId),
}

/// A routing-table log command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RoutingCommand {
    /// Create a tenant routed to its primary, or change its regions. A `DEFAULT` tenant follows a
    /// new primary; a `SHIFTED` one stays where it is until restored.
    UpsertTenant {
        tenant: TenantId,
        primary_region: RegionId,
        failover_region: RegionId,
    },
    CompareAndSet {
        tenant: TenantId,
        expected: CasExpectation,
        new_active_region: RegionId,
    },
    /// Routes an unlocked tenant to `region` unconditionally (an operator's override).
    SetActive {
        tenant: TenantId,
        region: RegionId,
    },
    /// Failover: every unlocked tenant routed to `from` is routed to `to`.
    ShiftRegion {
        from: RegionId,
        to: RegionId,
    },
    /// Failback: every `SHIFTED` tenant whose primary is `region` goes back to it.
    RestoreRegion {
        region: RegionId,
    },
    Lock {
        tenant: TenantId,
    },
    Unlock {
        tenant: TenantId,
    },
}

/// The deterministic result of applying a [`RoutingCommand`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RoutingOutcome {
    /// The tenant's row after the write.
    Updated(TenantRoute),
    Shifted {
        count: usize,
    },
    Restored {
        count: usize,
    },
    Refused(RoutingRefusal),
}

#[derive(Debug, Clone, PartialEq, Eq, Error, Serialize, Deserialize)]
pub enum RoutingRefusal {
    #[error("unknown tenant {tenant}")]
    UnknownTenant { tenant: TenantId },
    #[error("source and destination are the same region ({region})")]
    SameRegion { region: RegionId },
    #[error("tenant {tenant} is locked")]
    Locked { tenant: TenantId },
    /// Carries the current row so the caller can retry against it without another read.
    #[error(
        "compare-and-set failed: tenant {} is at version {} on {}",
        .current.tenant_id, .current.version, .current.active_routing_region
    )]
    CasMismatch { current: Box<TenantRoute> },
}

impl RoutingRefusal {
    /// Whether asking again later, unchanged, can succeed: a lock may be lifted. A failed
    /// compare-and-set must be retried against the new version, not as it was.
    pub fn is_retryable(&self) -> bool {
        matches!(self, RoutingRefusal::Locked { .. })
    }
}

/// The replicated `tenant_routing_states` table with its (active region, status) index.
///
/// Serialized as the tenant map alone: the index is derived, and rebuilding it on load keeps a
/// snapshot from ever carrying an index that disagrees with the rows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(from = "BTreeMap<TenantId, TenantRoute>")]
pub struct RoutingTable {
    tenants: BTreeMap<TenantId, TenantRoute>,
    /// The seed's `idx_tenant_routing (active_routing_region, routing_status)`.
    by_active: BTreeSet<(RegionId, RoutingStatus, TenantId)>,
}

impl Serialize for RoutingTable {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.tenants.serialize(serializer)
    }
}

impl From<BTreeMap<TenantId, TenantRoute>> for RoutingTable {
    fn from(tenants: BTreeMap<TenantId, TenantRoute>) -> Self {
        let by_active = tenants.values().map(TenantRoute::index_key).collect();
        RoutingTable { tenants, by_active }
    }
}

impl RoutingTable {
    pub fn get(&self, tenant: &TenantId) -> Option<&TenantRoute> {
        self.tenants.get(tenant)
    }

    pub fn len(&self) -> usize {
        self.tenants.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tenants.is_empty()
    }

    /// Tenants routed to `region` with `status`, by tenant id.
    pub fn by_active(
        &self,
        region: &RegionId,
        status: RoutingStatus,
    ) -> impl Iterator<Item = &TenantRoute> + '_ {
        let region = region.clone();
        self.by_active
            .range((region.clone(), status, TenantId::default())..)
            .take_while(move |(r, s, _)| *r == region && *s == status)
            .filter_map(|(_, _, tenant)| self.tenants.get(tenant))
    }

    pub fn apply(&mut self, cmd: &RoutingCommand, ctx: &ApplyCtx) -> RoutingOutcome {
        let result = match cmd {
            RoutingCommand::UpsertTenant {
                tenant,
                primary_region,
                failover_region,
            } => self.upsert(tenant, primary_region, failover_region, ctx),
            RoutingCommand::CompareAndSet {
                tenant,
                expected,
                new_active_region,
            } => self.update_unlocked(tenant, ctx, |route| {
                let matches = match expected {
                    CasExpectation::Version(version) => route.version == *version,
                    CasExpectation::ActiveRegion(region) => route.active_routing_region == *region,
                };
                if !matches {
                    return Err(RoutingRefusal::CasMismatch {
                        current: Box::new(route.clone()),
                    });
                }
                route.active_routing_region = new_active_region.clone();
                route.routing_status = route.unlocked_status();
                Ok(())
            }),
            RoutingCommand::SetActive { tenant, region } => {
                self.update_unlocked(tenant, ctx, |route| {
                    route.active_routing_region = region.clone();
                    route.routing_status = route.unlocked_status();
                    Ok(())
                })
            }
            RoutingCommand::ShiftRegion { from, to } => self.shift_region(from, to, ctx),
            RoutingCommand::RestoreRegion { region } => Ok(self.restore_region(region, ctx)),
            RoutingCommand::Lock { tenant } => self.update(tenant, ctx, |route| {
                route.routing_status = RoutingStatus::Locked;
                Ok(())
            }),
            RoutingCommand::Unlock { tenant } => self.update(tenant, ctx, |route| {
                route.routing_status = route.unlocked_status();
                Ok(())
            }),
        };
        result.unwrap_or_else(RoutingOutcome::Refused)
    }

    fn upsert(
        &mut self,
        tenant: &TenantId,
        primary_region: &RegionId,
        failover_region: &RegionId,
        ctx: &ApplyCtx,
    ) -> Result<RoutingOutcome, RoutingRefusal> {
        if primary_region == failover_region {
            return Err(RoutingRefusal::SameRegion {
                region: primary_region.clone(),
            });
        }
        if !self.tenants.contains_key(tenant) {
            let route = TenantRoute {
                tenant_id: tenant.clone(),
                primary_region: primary_region.clone(),
                failover_region: failover_region.clone(),
                active_routing_region: primary_region.clone(),
                routing_status: RoutingStatus::Default,
                updated_at: ctx.now,
                version: ctx.token.0,
            };
            self.put(route.clone());
            return Ok(RoutingOutcome::Updated(route));
        }
        self.update_unlocked(tenant, ctx, |route| {
            if route.routing_status == RoutingStatus::Default {
                route.active_routing_region = primary_region.clone();
            }
            route.primary_region = primary_region.clone();
            route.failover_region = failover_region.clone();
            route.routing_status = route.unlocked_status();
            Ok(())
        })
    }

    /// [`Self::update`] for writes a lock forbids.
    fn update_unlocked(
        &mut self,
        tenant: &TenantId,
        ctx: &ApplyCtx,
        change: impl FnOnce(&mut TenantRoute) -> Result<(), RoutingRefusal>,
    ) -> Result<RoutingOutcome, RoutingRefusal> {
        self.update(tenant, ctx, |route| {
            if route.routing_status == RoutingStatus::Locked {
                return Err(RoutingRefusal::Locked {
                    tenant: route.tenant_id.clone(),
                });
            }
            change(route)
        })
    }

    /// Applies `change` to a copy of the tenant's row and stores it, stamped, only if the change
    /// accepts: a refusal leaves the table untouched.
    fn update(
        &mut self,
        tenant: &TenantId,
        ctx: &ApplyCtx,
        change: impl FnOnce(&mut TenantRoute) -> Result<(), RoutingRefusal>,
    ) -> Result<RoutingOutcome, RoutingRefusal> {
        let mut route =
            self.tenants
                .get(tenant)
                .cloned()
                .ok_or_else(|| RoutingRefusal::UnknownTenant {
                    tenant: tenant.clone(),
                })?;
        change(&mut route)?;
        route.updated_at = ctx.now;
        route.version = ctx.token.0;
        self.put(route.clone());
        Ok(RoutingOutcome::Updated(route))
    }

    fn shift_region(
        &mut self,
        from: &RegionId,
        to: &RegionId,
        ctx: &ApplyCtx,
    ) -> Result<RoutingOutcome, RoutingRefusal> {
        if from == to {
            return Err(RoutingRefusal::SameRegion {
                region: from.clone(),
            });
        }
        let moving: Vec<TenantId> = [RoutingStatus::Default, RoutingStatus::Shifted]
            .into_iter()
            .flat_map(|status| self.by_active(from, status))
            .map(|route| route.tenant_id.clone())
            .collect();
        let count = self.reroute(&moving, to, ctx);
        Ok(RoutingOutcome::Shifted { count })
    }

    fn restore_region(&mut self, region: &RegionId, ctx: &ApplyCtx) -> RoutingOutcome {
        // A scan, not an index: failback is rare, and a primary-region index would be kept up on
        // every write for it.
        let returning: Vec<TenantId> = self
            .tenants
            .values()
            .filter(|route| {
                route.primary_region == *region && route.routing_status == RoutingStatus::Shifted
            })
            .map(|route| route.tenant_id.clone())
            .collect();
        let count = self.reroute(&returning, region, ctx);
        RoutingOutcome::Restored { count }
    }

    /// Routes each of `tenants` (found unlocked by the caller) to `to`; returns how many moved.
    fn reroute(&mut self, tenants: &[TenantId], to: &RegionId, ctx: &ApplyCtx) -> usize {
        tenants
            .iter()
            .filter(|tenant| {
                self.update(tenant, ctx, |route| {
                    route.active_routing_region = to.clone();
                    route.routing_status = route.unlocked_status();
                    Ok(())
                })
                .is_ok()
            })
            .count()
    }

    /// The one place rows are written, so the index cannot drift from them.
    fn put(&mut self, route: TenantRoute) {
        if let Some(old) = self.tenants.get(&route.tenant_id) {
            self.by_active.remove(&old.index_key());
        }
        self.by_active.insert(route.index_key());
        self.tenants.insert(route.tenant_id.clone(), route);
    }
}

/// 100 % in basis points.
pub const FULL_WEIGHT_BP: u32 = 10_000;

/// Per-region traffic weights for the seed's `POST /v1/dr/traffic-shift`, in basis points
/// (hundredths of a percent) so that sums are exact and replicas agree bit for bit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "BTreeMap<RegionId, u32>", into = "BTreeMap<RegionId, u32>")]
pub struct TrafficWeights {
    weights_bp: BTreeMap<RegionId, u32>,
}

/// What one shift moved, and where the two regions stand after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrafficShift {
    pub moved_bp: u32,
    pub source_bp: u32,
    pub target_bp: u32,
}

#[derive(Debug, Clone, PartialEq, Error)]
pub enum TrafficShiftError {
    #[error("traffic weights name no region")]
    NoRegions,
    #[error("traffic weights sum to {sum_bp} basis points, not {FULL_WEIGHT_BP}")]
    WeightsDoNotSumToFull { sum_bp: u64 },
    #[error("trafficShiftPercentage must be within 0..=100, got {percentage}")]
    PercentageOutOfRange { percentage: f64 },
    #[error("sourceRegion and targetRegion are the same ({region})")]
    SameRegion { region: RegionId },
    #[error("unknown region {region}")]
    UnknownRegion { region: RegionId },
}

impl TryFrom<BTreeMap<RegionId, u32>> for TrafficWeights {
    type Error = TrafficShiftError;

    fn try_from(weights_bp: BTreeMap<RegionId, u32>) -> Result<Self, Self::Error> {
        TrafficWeights::new(weights_bp)
    }
}

impl From<TrafficWeights> for BTreeMap<RegionId, u32> {
    fn from(weights: TrafficWeights) -> Self {
        weights.weights_bp
    }
}

impl TrafficWeights {
    pub fn new(weights_bp: BTreeMap<RegionId, u32>) -> Result<Self, TrafficShiftError> {
        if weights_bp.is_empty() {
            return Err(TrafficShiftError::NoRegions);
        }
        let sum_bp: u64 = weights_bp.values().map(|&bp| u64::from(bp)).sum();
        if sum_bp != u64::from(FULL_WEIGHT_BP) {
            return Err(TrafficShiftError::WeightsDoNotSumToFull { sum_bp });
        }
        Ok(TrafficWeights { weights_bp })
    }

    pub fn weight_bp(&self, region: &RegionId) -> Option<u32> {
        self.weights_bp.get(region).copied()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&RegionId, u32)> {
        self.weights_bp.iter().map(|(region, &bp)| (region, bp))
    }

    /// Moves `percentage` % of `source`'s current share to `target` (the seed's
    /// `trafficShiftPercentage`: 100 drains the source). The percentage is rounded to a basis
    /// point; on any error nothing moves.
    pub fn shift(
        &mut self,
        source: &RegionId,
        target: &RegionId,
        percentage: f64,
    ) -> Result<TrafficShift, TrafficShiftError> {
        if !(0.0..=100.0).contains(&percentage) {
            // NaN fails `contains` too.
            return Err(TrafficShiftError::PercentageOutOfRange { percentage });
        }
        if source == target {
            return Err(TrafficShiftError::SameRegion {
                region: source.clone(),
            });
        }
        let known = |region: &RegionId| {
            self.weight_bp(region)
                .ok_or_else(|| TrafficShiftError::UnknownRegion {
                    region: region.clone(),
                })
        };
        let (source_bp, target_bp) = (known(source)?, known(target)?);
        // In range by the check above, so the cast neither truncates nor saturates.
        let share_bp = (percentage * 100.0).round() as u64;
        // ≤ source_bp ≤ FULL_WEIGHT_BP, so it fits in u32.
        let moved_bp = (u64::from(source_bp) * share_bp / u64::from(FULL_WEIGHT_BP)) as u32;
        let shift = TrafficShift {
            moved_bp,
            source_bp: source_bp - moved_bp,
            target_bp: target_bp + moved_bp,
        };
        self.weights_bp.insert(source.clone(), shift.source_bp);
        self.weights_bp.insert(target.clone(), shift.target_bp);
        Ok(shift)
    }
}
