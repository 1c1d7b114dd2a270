//! The seed's capacity model ("Scaling Challenges and Capacity Estimation"), as a pure function
//! of its inputs: replication bandwidth, transactions in flight at failure, DNS-cached clients
//! after `t` seconds, and the failover's predicted RTO by component.
//!
//! Invariant: the seed's worked numbers come out exactly — 5,000 writes/s × 1 KB → 52 Mbps;
//! 5,000 writes/s × 0.8 s lag → 4,000 transactions; 10 M users, DNS TTL 60 s, t = 30 s →
//! 6,065,306 clients still cached. Bandwidth is computed in integers (1.3 = 13/10) so no float
//! rounding can move it; a cached-client count is rounded down, the seed's "≈".
//!
//! The RTO model follows what the DR controller does, step by step (see `failover_plan`):
//! - **detection**: a vantage point sees an outage after `consecutive_failures` failed probes
//!   in a row. Worst case the region fails just after a good probe: the first failing probe
//!   starts up to one interval later, the last one fails only at its timeout, and the
//!   controller acts on the verdict at its next tick:
//!   `consecutive_failures × probe_interval + probe_timeout + tick`.
//! - **fence**: the failover decision is one log entry; the next tick revokes the region's
//!   leases (one entry) and records the step (one entry): `tick + 3 × commit`.
//! - **promotion**: the standby region's writer is granted the write lease only once the
//!   revoked lease's holder deadline has passed (a lease is never granted while its previous
//!   holder may still believe it holds it). The failed holder renewed at the latest when the
//!   region failed, so the wait left is `lease_ttl − (detection + fence)` when positive; then
//!   the grant (one entry) and `pg_promote`: `wait + commit + promote`.
//! - **traffic shift**: on the tick after the fence, the routing table moves (one entry) and
//!   the traffic driver runs: `tick + commit + driver`.
//! - **total**: promotion and traffic shift run side by side once the fence is recorded:
//!   `detection + fence + max(promotion, traffic shift)`. Clients that cached the old DNS
//!   answer are not in it: that is what [`DnsCached`] counts.

use serde::{Deserialize, Serialize};

use crate::replication::{DataLossEstimate, WriteRate};

/// The seed's network overhead multiplier (headers, framing, TCP acks), 1.3×, as tenths.
pub const NETWORK_OVERHEAD_TENTHS: u64 = 13;

/// The seed's user base: 10,000,000 active users.
pub const SEED_USERS: u64 = 10_000_000;
/// The DNS TTL the seed's worked example uses, in seconds.
pub const SEED_DNS_TTL_S: u64 = 60;
/// The instant after the shift the seed's worked example looks at, in seconds.
pub const SEED_AT_S: u64 = 30;
/// The replication lag the seed's worked example assumes, in milliseconds.
pub const SEED_LAG_MS: u64 = 800;

/// Everything the model needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanInputs {
    pub write_rate: WriteRate,
    pub lag_ms: u64,
    pub users: u64,
    pub dns_ttl_s: u64,
    pub at_s: u64,
    pub rto: RtoInputs,
}

/// The timings the predicted RTO is made of, each in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RtoInputs {
    pub probe_interval_ms: u64,
    pub probe_timeout_ms: u64,
    pub consecutive_failures: u64,
    pub controller_tick_ms: u64,
    /// One log entry committed (a quorum round trip plus an fsync).
    pub commit_ms: u64,
    /// The TTL of the failed region's write lease.
    pub lease_ttl_ms: u64,
    /// `pg_promote` on the standby until it accepts writes.
    pub promote_ms: u64,
    /// The traffic driver's run (0 for the built-in one, which only moves the routing table).
    pub traffic_driver_ms: u64,
}

/// The model's answer.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub bandwidth: Bandwidth,
    /// Transactions committed at the source but not yet at the target when it fails (W × lag).
    pub in_flight: DataLossEstimate,
    pub dns: DnsCached,
    pub rto: RtoPrediction,
}

/// Cross-region replication bandwidth.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Bandwidth {
    /// Writes/s × record size.
    pub raw_bytes_per_sec: u64,
    /// Raw × 8 bits × 1.3 overhead, rounded up.
    pub bits_per_sec: u64,
    /// `bits_per_sec` / 10⁶.
    pub mbps: f64,
}

/// Clients still resolving the old region `at_s` seconds after the DNS change.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DnsCached {
    /// N·e^(−t/TTL).
    pub exact: f64,
    /// `exact`, rounded down.
    pub users: u64,
    /// When all but 1 % of clients have moved: TTL × ln 100, in seconds (0 with a zero TTL).
    pub all_but_one_percent_after_s: f64,
}

/// The predicted RTO, by component, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RtoPrediction {
    pub detection_ms: u64,
    pub fence_ms: u64,
    /// Of which waiting out the revoked lease's deadline.
    pub lease_wait_ms: u64,
    pub promotion_ms: u64,
    pub traffic_shift_ms: u64,
    pub total_ms: u64,
}

/// Applies the model to `inputs`.
pub fn plan(inputs: &PlanInputs) -> Plan {
    Plan {
        bandwidth: bandwidth(inputs.write_rate),
        in_flight: DataLossEstimate::from_lag(inputs.lag_ms, inputs.write_rate),
        dns: dns_cached(inputs.users, inputs.dns_ttl_s, inputs.at_s),
        rto: rto(&inputs.rto),
    }
}

/// Writes/s × bytes × 8 × 1.3, in integers.
pub fn bandwidth(rate: WriteRate) -> Bandwidth {
    let raw = u128::from(rate.writes_per_sec) * u128::from(rate.avg_write_bytes);
    let bits = raw
        .saturating_mul(8 * u128::from(NETWORK_OVERHEAD_TENTHS))
        .div_ceil(10);
    let bits_per_sec = u64::try_from(bits).unwrap_or(u64::MAX);
    Bandwidth {
        raw_bytes_per_sec: u64::try_from(raw).unwrap_or(u64::MAX),
        bits_per_sec,
        mbps: bits_per_sec as f64 / 1_000_000.0,
    }
}

/// N·e^(−t/TTL); with a zero TTL nobody caches.
pub fn dns_cached(users: u64, ttl_s: u64, at_s: u64) -> DnsCached {
    if ttl_s == 0 {
        return DnsCached {
            exact: 0.0,
            users: 0,
            all_but_one_percent_after_s: 0.0,
        };
    }
    let exact = users as f64 * (-(at_s as f64) / ttl_s as f64).exp();
    DnsCached {
        exact,
        users: exact.floor() as u64,
        all_but_one_percent_after_s: ttl_s as f64 * 100f64.ln(),
    }
}

/// The failover's RTO by component (see the module doc for each formula).
pub fn rto(inputs: &RtoInputs) -> RtoPrediction {
    let RtoInputs {
        probe_interval_ms,
        probe_timeout_ms,
        consecutive_failures,
        controller_tick_ms: tick,
        commit_ms: commit,
        lease_ttl_ms,
        promote_ms,
        traffic_driver_ms,
    } = *inputs;
    let detection_ms = consecutive_failures
        .saturating_mul(probe_interval_ms)
        .saturating_add(probe_timeout_ms)
        .saturating_add(tick);
    let fence_ms = tick.saturating_add(commit.saturating_mul(3));
    let lease_wait_ms = lease_ttl_ms.saturating_sub(detection_ms.saturating_add(fence_ms));
    let promotion_ms = lease_wait_ms
        .saturating_add(commit)
        .saturating_add(promote_ms);
    let traffic_shift_ms = tick
        .saturating_add(commit)
        .saturating_add(traffic_driver_ms);
    RtoPrediction {
        detection_ms,
        fence_ms,
        lease_wait_ms,
        promotion_ms,
        traffic_shift_ms,
        total_ms: detection_ms
            .saturating_add(fence_ms)
            .saturating_add(promotion_ms.max(traffic_shift_ms)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed_rto() -> RtoInputs {
        RtoInputs {
            probe_interval_ms: 1_000,
            probe_timeout_ms: 800,
            consecutive_failures: 3,
            controller_tick_ms: 200,
            commit_ms: 75,
            lease_ttl_ms: 10_000,
            promote_ms: 1_000,
            traffic_driver_ms: 0,
        }
    }

    #[test]
    fn the_seed_worked_numbers_come_out_exactly() {
        let plan = plan(&PlanInputs {
            write_rate: WriteRate::SEED_PEAK,
            lag_ms: SEED_LAG_MS,
            users: SEED_USERS,
            dns_ttl_s: SEED_DNS_TTL_S,
            at_s: SEED_AT_S,
            rto: seed_rto(),
        });
        // 5,000 writes/s × 1 KB = 5 MB/s; × 8 = 40 Mbps; × 1.3 = 52 Mbps.
        assert_eq!(plan.bandwidth.raw_bytes_per_sec, 5_000_000);
        assert_eq!(plan.bandwidth.bits_per_sec, 52_000_000);
        assert_eq!(plan.bandwidth.mbps, 52.0);
        // 5,000 × 0.8 s = 4,000 transactions in flight.
        assert_eq!(plan.in_flight.writes, 4_000);
        assert_eq!(plan.in_flight.bytes, 4_000_000);
        // 10 M · e^(−30/60) ≈ 6,065,306.
        assert_eq!(plan.dns.users, 6_065_306);
        assert!((plan.dns.exact - 6_065_306.597_126_334).abs() < 1e-6);
    }

    #[test]
    fn rto_components_follow_the_controller_steps() {
        let rto = rto(&seed_rto());
        assert_eq!(rto.detection_ms, 3 * 1_000 + 800 + 200);
        assert_eq!(rto.fence_ms, 200 + 3 * 75);
        // The 10 s lease outlives detection and fence by 10,000 − 4,425 ms.
        assert_eq!(rto.lease_wait_ms, 10_000 - 4_000 - 425);
        assert_eq!(rto.promotion_ms, 5_575 + 75 + 1_000);
        assert_eq!(rto.traffic_shift_ms, 275);
        assert_eq!(rto.total_ms, 4_000 + 425 + 6_650);
    }

    #[test]
    fn a_lease_shorter_than_detection_adds_no_wait_and_the_slower_branch_counts() {
        let rto = rto(&RtoInputs {
            lease_ttl_ms: 2_000,
            traffic_driver_ms: 30_000,
            ..seed_rto()
        });
        assert_eq!(rto.lease_wait_ms, 0);
        assert_eq!(rto.promotion_ms, 1_075);
        assert_eq!(rto.traffic_shift_ms, 30_275);
        assert_eq!(rto.total_ms, 4_000 + 425 + 30_275);
    }

    #[test]
    fn all_but_one_percent_have_moved_after_ttl_times_ln_100() {
        // e^(−t/TTL) = 1/100 at t = TTL · ln 100: 276.3 s for the seed's 60 s TTL.
        let dns = dns_cached(SEED_USERS, SEED_DNS_TTL_S, SEED_AT_S);
        assert!((dns.all_but_one_percent_after_s - 276.310_211_159_285_5).abs() < 1e-9);
        // The same instant read off the cached-client curve: still above 1 % a second
        // before it, below 1 % a second after.
        let one_percent = SEED_USERS / 100;
        assert!(dns_cached(SEED_USERS, SEED_DNS_TTL_S, 276).users > one_percent);
        assert!(dns_cached(SEED_USERS, SEED_DNS_TTL_S, 277).users < one_percent);
    }

    #[test]
    fn edge_inputs_neither_panic_nor_wrap() {
        assert_eq!(dns_cached(10, 0, 5).users, 0);
        assert_eq!(dns_cached(1_000, 60, 0).users, 1_000);
        let huge = bandwidth(WriteRate {
            writes_per_sec: u64::MAX,
            avg_write_bytes: u64::MAX,
        });
        assert_eq!(huge.bits_per_sec, u64::MAX);
        let zero = bandwidth(WriteRate {
            writes_per_sec: 0,
            avg_write_bytes: 1_000,
        });
        assert_eq!(zero.bits_per_sec, 0);
        let saturated = rto(&RtoInputs {
            probe_interval_ms: u64::MAX,
            ..seed_rto()
        });
        assert_eq!(saturated.total_ms, u64::MAX);
    }
}
