//! The routing decision of an edge router, apart from any I/O: which region serves a request,
//! given the routing table the arbiter published and what this edge measured itself.
//!
//! Order of precedence:
//! 1. A request naming a tenant the table holds goes to the tenant's `active_routing_region`.
//!    A `LOCKED` tenant goes nowhere else (an operator pinned it; an error is better than the
//!    wrong region). A `DEFAULT` or `SHIFTED` tenant whose region cannot serve falls through.
//! 2. Otherwise the traffic weights: among regions with a positive weight that can serve,
//!    split by weight (smooth weighted round robin: exact shares, no randomness), or, under
//!    [`Policy::Latency`], the one this edge measures closest.
//! 3. When no weighted region can serve: the closest region that can ([`Reason::Fallback`]).
//!
//! "Can serve" means the arbiter does not hold the region `DOWN`, this edge reaches its
//! gateway, and it is not excluded (a retry never goes back to the region that just failed).

use std::collections::HashMap;
use std::time::Duration;

use arbiter_client::proto::RoutingSnapshot;

/// How an edge picks among the regions the weights allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Policy {
    /// Split by the weights.
    Weighted,
    /// The closest region (by this edge's measured RTT) the weights allow.
    Latency,
}

/// Why a region was chosen (sent back as `x-arbiter-route`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Tenant,
    Weighted,
    Latency,
    Fallback,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Tenant => "tenant",
            Reason::Weighted => "weighted",
            Reason::Latency => "latency",
            Reason::Fallback => "fallback",
        }
    }
}

/// What this edge knows of a region's gateway from its own probes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Local {
    pub reachable: bool,
    pub rtt: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionRow {
    pub name: String,
    /// Basis points; `None` before any weights are set.
    pub weight_bp: Option<u32>,
    pub health: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantRow {
    pub active: String,
    pub locked: bool,
}

/// A drain order: a shift away from `source` still in progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrainRow {
    pub task_track_id: String,
    pub source: String,
    pub timeout: Duration,
}

/// One routing snapshot, indexed for lookups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteTable {
    pub applied_index: u64,
    pub regions: Vec<RegionRow>,
    pub tenants: HashMap<String, TenantRow>,
    pub drains: Vec<DrainRow>,
}

impl From<RoutingSnapshot> for RouteTable {
    fn from(snapshot: RoutingSnapshot) -> Self {
        RouteTable {
            applied_index: snapshot.applied_index,
            regions: snapshot
                .regions
                .into_iter()
                .map(|r| RegionRow {
                    name: r.region,
                    weight_bp: r.weight_bp,
                    health: r.health_state,
                })
                .collect(),
            tenants: snapshot
                .tenants
                .into_iter()
                .map(|t| {
                    let row = TenantRow {
                        active: t.active_routing_region,
                        locked: t.routing_status == "LOCKED",
                    };
                    (t.tenant_id, row)
                })
                .collect(),
            drains: snapshot
                .drains
                .into_iter()
                .map(|d| DrainRow {
                    task_track_id: d.task_track_id,
                    source: d.source_region,
                    timeout: Duration::from_secs(u64::from(d.drain_timeout_seconds)),
                })
                .collect(),
        }
    }
}

/// Smooth weighted round robin state (per edge): each pick adds every candidate's weight to
/// its credit and takes the largest, which then pays the total. Over any run of picks each
/// region's share is within one pick of its weight's share.
#[derive(Debug, Default)]
pub struct RoundRobin {
    credit: HashMap<String, i64>,
}

impl RoundRobin {
    fn pick<'a>(&mut self, candidates: &[(&'a str, u32)]) -> Option<&'a str> {
        let total: i64 = candidates.iter().map(|(_, w)| i64::from(*w)).sum();
        let mut best: Option<(&str, i64)> = None;
        for (name, weight) in candidates {
            let credit = self.credit.entry((*name).to_string()).or_insert(0);
            *credit += i64::from(*weight);
            if best.is_none_or(|(_, c)| *credit > c) {
                best = Some((name, *credit));
            }
        }
        let (name, _) = best?;
        *self.credit.get_mut(name)? -= total;
        Some(name)
    }
}

impl RouteTable {
    pub fn weight_of(&self, region: &str) -> Option<u32> {
        self.regions
            .iter()
            .find(|r| r.name == region)
            .and_then(|r| r.weight_bp)
    }

    fn down(&self, region: &str) -> bool {
        self.regions
            .iter()
            .any(|r| r.name == region && r.health == "DOWN")
    }

    /// The region for a request naming `tenant` (if any), `None` when no region can serve it.
    pub fn choose(
        &self,
        tenant: Option<&str>,
        policy: Policy,
        exclude: &[&str],
        local: &dyn Fn(&str) -> Local,
        round_robin: &mut RoundRobin,
    ) -> Option<(String, Reason)> {
        let serves = |region: &str| {
            !self.down(region) && !exclude.contains(&region) && local(region).reachable
        };
        if let Some(row) = tenant.and_then(|t| self.tenants.get(t)) {
            if row.locked {
                return (!exclude.contains(&row.active.as_str()))
                    .then(|| (row.active.clone(), Reason::Tenant));
            }
            if serves(&row.active) {
                return Some((row.active.clone(), Reason::Tenant));
            }
        }
        let weighted: Vec<(&str, u32)> = self
            .regions
            .iter()
            .filter_map(|r| Some((r.name.as_str(), r.weight_bp.filter(|w| *w > 0)?)))
            .filter(|(name, _)| serves(name))
            .collect();
        let closest = |names: &mut dyn Iterator<Item = &str>| {
            names
                .min_by_key(|name| (local(name).rtt.unwrap_or(Duration::MAX), name.to_string()))
                .map(str::to_string)
        };
        if !weighted.is_empty() {
            return match policy {
                Policy::Weighted => round_robin
                    .pick(&weighted)
                    .map(|name| (name.to_string(), Reason::Weighted)),
                Policy::Latency => closest(&mut weighted.iter().map(|(name, _)| *name))
                    .map(|name| (name, Reason::Latency)),
            };
        }
        closest(
            &mut self
                .regions
                .iter()
                .map(|r| r.name.as_str())
                .filter(|name| serves(name)),
        )
        .map(|name| (name, Reason::Fallback))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arbiter_client::proto::{RegionRoute, TenantRoute};

    fn table(weights: &[(&str, u32, &str)], tenants: &[(&str, &str, &str)]) -> RouteTable {
        RouteTable::from(RoutingSnapshot {
            applied_index: 7,
            regions: weights
                .iter()
                .map(|(name, w, health)| RegionRoute {
                    region: name.to_string(),
                    weight_bp: Some(*w),
                    health_state: health.to_string(),
                })
                .collect(),
            tenants: tenants
                .iter()
                .map(|(id, active, status)| TenantRoute {
                    tenant_id: id.to_string(),
                    active_routing_region: active.to_string(),
                    routing_status: status.to_string(),
                    ..Default::default()
                })
                .collect(),
            drains: Vec::new(),
        })
    }

    fn all_reachable(rtts: &'static [(&'static str, u64)]) -> impl Fn(&str) -> Local {
        move |region| Local {
            reachable: true,
            rtt: rtts
                .iter()
                .find(|(r, _)| *r == region)
                .map(|(_, ms)| Duration::from_millis(*ms)),
        }
    }

    #[test]
    fn weights_split_exactly_over_many_picks() {
        let t = table(
            &[
                ("us-east-1", 7_000, "HEALTHY"),
                ("us-west-2", 2_000, "HEALTHY"),
                ("eu-central-1", 1_000, "HEALTHY"),
            ],
            &[],
        );
        let local = all_reachable(&[]);
        let mut rr = RoundRobin::default();
        let mut counts: HashMap<String, u32> = HashMap::new();
        for _ in 0..10_000 {
            let (region, reason) = t
                .choose(None, Policy::Weighted, &[], &local, &mut rr)
                .expect("a region");
            assert_eq!(reason, Reason::Weighted);
            *counts.entry(region).or_default() += 1;
        }
        assert_eq!(counts["us-east-1"], 7_000);
        assert_eq!(counts["us-west-2"], 2_000);
        assert_eq!(counts["eu-central-1"], 1_000);
    }

    #[test]
    fn a_tenant_goes_to_its_region_unless_it_cannot_serve() {
        let t = table(
            &[
                ("us-east-1", 10_000, "HEALTHY"),
                ("us-west-2", 0, "HEALTHY"),
            ],
            &[
                ("acme", "us-west-2", "SHIFTED"),
                ("pinned", "us-west-2", "LOCKED"),
            ],
        );
        let local = all_reachable(&[]);
        let mut rr = RoundRobin::default();
        let pick = |tenant, exclude: &[&str], rr: &mut RoundRobin| {
            t.choose(tenant, Policy::Weighted, exclude, &local, rr)
        };
        assert_eq!(
            pick(Some("acme"), &[], &mut rr),
            Some(("us-west-2".into(), Reason::Tenant))
        );
        // Unknown tenant: the default route.
        assert_eq!(
            pick(Some("nobody"), &[], &mut rr),
            Some(("us-east-1".into(), Reason::Weighted))
        );
        // Its region failed this request: the default route.
        assert_eq!(
            pick(Some("acme"), &["us-west-2"], &mut rr),
            Some(("us-east-1".into(), Reason::Weighted))
        );
        // A locked tenant goes nowhere else.
        assert_eq!(pick(Some("pinned"), &["us-west-2"], &mut rr), None);
    }

    #[test]
    fn down_or_unreachable_regions_are_passed_over_and_latency_decides_the_rest() {
        let t = table(
            &[
                ("us-east-1", 5_000, "DOWN"),
                ("us-west-2", 5_000, "HEALTHY"),
                ("eu-central-1", 0, "HEALTHY"),
            ],
            &[],
        );
        let local = all_reachable(&[("us-west-2", 80), ("eu-central-1", 20)]);
        let mut rr = RoundRobin::default();
        for _ in 0..10 {
            assert_eq!(
                t.choose(None, Policy::Weighted, &[], &local, &mut rr),
                Some(("us-west-2".into(), Reason::Weighted))
            );
        }
        // Nothing weighted can serve: the closest region that can.
        assert_eq!(
            t.choose(None, Policy::Weighted, &["us-west-2"], &local, &mut rr),
            Some(("eu-central-1".into(), Reason::Fallback))
        );
        // Under the latency policy the closest weighted region wins.
        let t = table(
            &[
                ("us-west-2", 5_000, "HEALTHY"),
                ("eu-central-1", 5_000, "HEALTHY"),
            ],
            &[],
        );
        assert_eq!(
            t.choose(None, Policy::Latency, &[], &local, &mut rr),
            Some(("eu-central-1".into(), Reason::Latency))
        );
        let unreachable_eu = |region: &str| Local {
            reachable: region != "eu-central-1",
            rtt: None,
        };
        assert_eq!(
            t.choose(None, Policy::Latency, &[], &unreachable_eu, &mut rr),
            Some(("us-west-2".into(), Reason::Latency))
        );
        assert_eq!(
            t.choose(
                None,
                Policy::Latency,
                &["us-west-2"],
                &unreachable_eu,
                &mut rr
            ),
            None
        );
    }
}
