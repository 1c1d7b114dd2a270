//! `GET /v1/plan`: the seed's capacity model ([`arbiter_core::capacity_plan`]) applied to this
//! cluster — live write rate and replication lag of the primary's link, this cluster's probe,
//! consensus, tick, lease and driver settings — with every input overridable for what-if, and
//! every figure saying where it came from.
//!
//! Inputs and their defaults:
//! - write rate: the link's measured throughput (`GetSyncMetrics`, from the source's
//!   checkpoints) ÷ `dr.write_bytes`; `dr.write_rate_per_sec` when nothing was measured;
//! - lag: the link's last reported `replicationLagMs`;
//! - commit: the quorum round this request just waited for (its read barrier);
//! - users, DNS TTL, `t`: the seed's 10 M users, 60 s, 30 s;
//! - probe interval and timeout: `arbiter probe`'s defaults (1,000 ms, 800 ms), which the
//!   cluster does not know — pass the agents' own;
//! - lease TTL: the longest this cluster grants (the worst case); pass the writers' own;
//! - promotion: 1,000 ms assumed for `pg_promote`.

use std::time::Instant;

use arbiter_core::capacity_plan::{
    self, PlanInputs, RtoInputs, SEED_AT_S, SEED_DNS_TTL_S, SEED_USERS,
};
use arbiter_core::replication::WriteRate;
use arbiter_core::RegionId;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, ErrorBody, NotLeaderBody};
use super::{openapi, read, validate, AppState};
use crate::dr::config::DriverKind;

/// `arbiter probe --interval-ms`'s default.
const DEFAULT_PROBE_INTERVAL_MS: u64 = 1_000;
/// `arbiter probe --timeout-ms`'s default.
const DEFAULT_PROBE_TIMEOUT_MS: u64 = 800;
/// Assumed time for `pg_promote` on a caught-up standby until it takes writes.
const DEFAULT_PROMOTE_MS: u64 = 1_000;
/// Bounds on what-if inputs: large enough for any deployment, small enough that no product in
/// the model leaves its type.
const MAX_INPUT: u64 = 1_000_000_000_000;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PlanQuery {
    /// The replicating region (default: the DR primary).
    source_region: Option<String>,
    /// Where it replicates to (default: the source's failover region).
    target_region: Option<String>,
    /// Writes per second (default: measured on the link).
    writes_per_sec: Option<u64>,
    /// Average record size in bytes (default: `dr.write_bytes`).
    record_bytes: Option<u64>,
    /// Replication lag in ms (default: the link's last report).
    lag_ms: Option<u64>,
    /// Active users (default: the seed's 10,000,000).
    users: Option<u64>,
    /// DNS TTL in seconds (default 60).
    dns_ttl_seconds: Option<u64>,
    /// Seconds after the DNS change to count cached clients at (default 30).
    at_seconds: Option<u64>,
    /// The probe agents' interval in ms (default 1,000).
    probe_interval_ms: Option<u64>,
    /// The probe agents' timeout in ms (default 800).
    probe_timeout_ms: Option<u64>,
    /// One log commit in ms (default: the quorum round this request measured).
    commit_ms: Option<u64>,
    /// The failed region's write-lease TTL in ms (default: the longest the cluster grants).
    lease_ttl_ms: Option<u64>,
    /// `pg_promote` until writes are taken, in ms (default 1,000).
    promote_ms: Option<u64>,
}

/// One input of the model and where its value came from.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlanInput {
    name: &'static str,
    value: u64,
    unit: &'static str,
    source: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BandwidthView {
    raw_bytes_per_sec: u64,
    bits_per_sec: u64,
    mbps: f64,
    formula: &'static str,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InFlightView {
    transactions: u64,
    bytes: u64,
    formula: &'static str,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DnsView {
    /// Clients still resolving the old region at `atSeconds`, rounded down.
    cached_users: u64,
    cached_users_exact: f64,
    at_seconds: u64,
    /// When all but 1 % of clients have moved (TTL × ln 100).
    all_but_one_percent_after_seconds: f64,
    formula: &'static str,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RtoComponent {
    /// `detection`, `fence`, `promotion` or `trafficShift`.
    component: &'static str,
    ms: u64,
    derivation: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RtoView {
    components: Vec<RtoComponent>,
    total_ms: u64,
    formula: &'static str,
}

/// The model's answer for this cluster.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlanView {
    source_region: String,
    target_region: String,
    inputs: Vec<PlanInput>,
    replication_bandwidth: BandwidthView,
    in_flight_at_failure: InFlightView,
    dns_cached_clients: DnsView,
    predicted_rto: RtoView,
}

/// Capacity plan
///
/// The seed's capacity model for this cluster: cross-region replication bandwidth (1.3×
/// overhead), transactions in flight at failure (W × lag), DNS-cached clients after `t`
/// seconds (N·e^(−t/TTL)) and the failover's predicted RTO by component. Inputs default to the
/// live link and this cluster's settings; each can be overridden (what-if). Every input says
/// where its value came from.
#[utoipa::path(
    get,
    path = "/v1/plan",
    operation_id = "getPlan",
    tag = "dr",
    params(PlanQuery),
    responses(
        (status = 200, description = "The plan", body = PlanView),
        (status = 400, description = openapi::BAD_QUERY, body = ErrorBody),
        (status = 422, description = "An unknown region or an input out of range", body = ErrorBody),
        (status = 503, description = openapi::NOT_LEADER, body = NotLeaderBody),
        (status = 504, description = openapi::TIMEOUT, body = ErrorBody),
        (status = 500, description = openapi::INTERNAL, body = ErrorBody),
    ),
)]
pub async fn plan(
    State(app): State<AppState>,
    query: Result<Query<PlanQuery>, QueryRejection>,
) -> Result<Json<PlanView>, ApiError> {
    let Query(query) = query?;
    check_ranges(&query)?;
    let node = &app.node;
    let barrier_started = Instant::now();
    read(node, |machine| {
        // The read barrier is one quorum round: the live cost of a commit, less its fsync.
        let round_ms = barrier_started.elapsed().as_millis() as u64;
        let config = node.dr.config();
        let known = validate::known_regions(machine);
        let source = match &query.source_region {
            Some(s) => validate::region("sourceRegion", s, &known)?,
            None => config.primary.clone(),
        };
        let target = match &query.target_region {
            Some(t) => validate::region("targetRegion", t, &known)?,
            None => config
                .failover_to
                .get(&source)
                .cloned()
                .ok_or_else(|| ApiError::Invalid(format!("{source} has no failover region")))?,
        };
        if source == target {
            return Err(ApiError::Invalid(
                "sourceRegion and targetRegion must differ".into(),
            ));
        }
        let mut inputs = Vec::new();
        let link = machine.replication.link(&source, &target);
        let link_name = format!("link {source} -> {target}");

        let (record_bytes, record_source) = given(query.record_bytes)
            .unwrap_or((config.write_bytes, "config dr.write_bytes".into()));
        let measured = machine
            .replication
            .sync_metrics(&source, &target, record_bytes)
            .ok()
            .filter(|m| m.throughput_bytes_per_sec > 0.0 && record_bytes > 0)
            .map(|m| (m.throughput_bytes_per_sec / record_bytes as f64).round() as u64);
        let (writes_per_sec, writes_source) =
            given(query.writes_per_sec).unwrap_or_else(|| match measured {
                Some(w) => (
                    w,
                    format!("measured: {link_name} throughput (GetSyncMetrics) / record bytes"),
                ),
                None => (
                    config.write_rate_per_sec,
                    format!("config dr.write_rate_per_sec (no throughput measured on {link_name})"),
                ),
            });
        inputs.push(input("writesPerSec", writes_per_sec, "1/s", writes_source));
        inputs.push(input("recordBytes", record_bytes, "B", record_source));

        let (lag_ms, lag_source) = given(query.lag_ms).unwrap_or_else(|| match link {
            Some(l) => (
                l.replication_lag_ms,
                format!("measured: {link_name} last reported replicationLagMs"),
            ),
            None => (0, format!("{link_name} is not declared: 0 (pass --lag-ms)")),
        });
        inputs.push(input("lagMs", lag_ms, "ms", lag_source));

        let seed = |v: Option<u64>, default: u64, what: &str| {
            given(v).unwrap_or((default, format!("seed: {what}")))
        };
        let (users, s) = seed(query.users, SEED_USERS, "10,000,000 active users");
        inputs.push(input("users", users, "users", s));
        let (dns_ttl_s, s) = seed(query.dns_ttl_seconds, SEED_DNS_TTL_S, "DNS TTL 60 s");
        inputs.push(input("dnsTtlSeconds", dns_ttl_s, "s", s));
        let (at_s, s) = seed(query.at_seconds, SEED_AT_S, "t = 30 s after the shift");
        inputs.push(input("atSeconds", at_s, "s", s));

        let (probe_interval_ms, s) = given(query.probe_interval_ms).unwrap_or((
            DEFAULT_PROBE_INTERVAL_MS,
            "default of `arbiter probe --interval-ms` (agents' own setting)".into(),
        ));
        inputs.push(input("probeIntervalMs", probe_interval_ms, "ms", s));
        let (probe_timeout_ms, s) = given(query.probe_timeout_ms).unwrap_or((
            DEFAULT_PROBE_TIMEOUT_MS,
            "default of `arbiter probe --timeout-ms` (agents' own setting)".into(),
        ));
        inputs.push(input("probeTimeoutMs", probe_timeout_ms, "ms", s));
        let consecutive_failures = config.consensus.consecutive_failures as u64;
        inputs.push(input(
            "consecutiveFailures",
            consecutive_failures,
            "probes",
            format!(
                "config dr.consecutive_failures (each of {} of {} vantage points)",
                config.consensus.quorum,
                config.consensus.vantages.len()
            ),
        ));
        let tick_ms = config.tick.as_millis() as u64;
        inputs.push(input(
            "controllerTickMs",
            tick_ms,
            "ms",
            "config dr.tick_ms".into(),
        ));
        let (commit_ms, s) = given(query.commit_ms).unwrap_or((
            round_ms.max(1),
            "measured: this request's quorum round (a commit adds an fsync)".into(),
        ));
        inputs.push(input("commitMs", commit_ms, "ms", s));
        let (lease_ttl_ms, s) = given(query.lease_ttl_ms).unwrap_or((
            node.leases.limits().max_ttl_ms(),
            "the longest lease TTL this cluster grants (worst case; pass the writers' TTL)".into(),
        ));
        inputs.push(input("leaseTtlMs", lease_ttl_ms, "ms", s));
        let (promote_ms, s) = given(query.promote_ms).unwrap_or((
            DEFAULT_PROMOTE_MS,
            "assumed for pg_promote (measure it with a drill)".into(),
        ));
        inputs.push(input("promoteMs", promote_ms, "ms", s));
        let (traffic_driver_ms, s) = match &config.traffic_driver.kind {
            DriverKind::Builtin => (
                0,
                "built-in traffic driver: edges watch the routing table".to_string(),
            ),
            _ => (
                config.traffic_driver.timeout_ms,
                "config dr.traffic_driver.timeout_ms (one attempt, upper bound)".to_string(),
            ),
        };
        inputs.push(input("trafficDriverMs", traffic_driver_ms, "ms", s));

        let model = capacity_plan::plan(&PlanInputs {
            write_rate: WriteRate {
                writes_per_sec,
                avg_write_bytes: record_bytes,
            },
            lag_ms,
            users,
            dns_ttl_s,
            at_s,
            rto: RtoInputs {
                probe_interval_ms,
                probe_timeout_ms,
                consecutive_failures,
                controller_tick_ms: tick_ms,
                commit_ms,
                lease_ttl_ms,
                promote_ms,
                traffic_driver_ms,
            },
        });
        let rto = model.rto;
        Ok(Json(PlanView {
            source_region: source.to_string(),
            target_region: target.to_string(),
            inputs,
            replication_bandwidth: BandwidthView {
                raw_bytes_per_sec: model.bandwidth.raw_bytes_per_sec,
                bits_per_sec: model.bandwidth.bits_per_sec,
                mbps: model.bandwidth.mbps,
                formula: "writesPerSec x recordBytes x 8 x 1.3",
            },
            in_flight_at_failure: InFlightView {
                transactions: model.in_flight.writes,
                bytes: model.in_flight.bytes,
                formula: "ceil(writesPerSec x lagMs / 1000)",
            },
            dns_cached_clients: DnsView {
                cached_users: model.dns.users,
                cached_users_exact: model.dns.exact,
                at_seconds: at_s,
                all_but_one_percent_after_seconds: model.dns.all_but_one_percent_after_s,
                formula: "users x e^(-atSeconds / dnsTtlSeconds)",
            },
            predicted_rto: RtoView {
                components: rto_components(&rto, &source, lease_ttl_ms),
                total_ms: rto.total_ms,
                formula: "detection + fence + max(promotion, trafficShift)",
            },
        }))
    })
    .await
}

fn rto_components(
    rto: &capacity_plan::RtoPrediction,
    source: &RegionId,
    lease_ttl_ms: u64,
) -> Vec<RtoComponent> {
    vec![
        RtoComponent {
            component: "detection",
            ms: rto.detection_ms,
            derivation: "consecutiveFailures x probeIntervalMs + probeTimeoutMs + controllerTickMs: \
                 every quorum vantage point's probes fail in a row, the controller acts on its next tick"
                .into(),
        },
        RtoComponent {
            component: "fence",
            ms: rto.fence_ms,
            derivation: format!(
                "controllerTickMs + 3 x commitMs: the decision, revoking {source}'s leases, \
                 recording the step"
            ),
        },
        RtoComponent {
            component: "promotion",
            ms: rto.promotion_ms,
            derivation: format!(
                "{} ms left of the revoked {lease_ttl_ms} ms lease (no grant while its holder \
                 may still believe it holds) + commitMs (the grant) + promoteMs",
                rto.lease_wait_ms
            ),
        },
        RtoComponent {
            component: "trafficShift",
            ms: rto.traffic_shift_ms,
            derivation: "controllerTickMs + commitMs (routing table) + trafficDriverMs; \
                 DNS-cached clients follow per dnsCachedClients"
                .into(),
        },
    ]
}

/// A what-if value, with its source.
fn given(value: Option<u64>) -> Option<(u64, String)> {
    value.map(|v| (v, "given (what-if)".to_string()))
}

fn input(name: &'static str, value: u64, unit: &'static str, source: String) -> PlanInput {
    PlanInput {
        name,
        value,
        unit,
        source,
    }
}

fn check_ranges(query: &PlanQuery) -> Result<(), ApiError> {
    let fields = [
        ("writesPerSec", query.writes_per_sec),
        ("recordBytes", query.record_bytes),
        ("lagMs", query.lag_ms),
        ("users", query.users),
        ("dnsTtlSeconds", query.dns_ttl_seconds),
        ("atSeconds", query.at_seconds),
        ("probeIntervalMs", query.probe_interval_ms),
        ("probeTimeoutMs", query.probe_timeout_ms),
        ("commitMs", query.commit_ms),
        ("leaseTtlMs", query.lease_ttl_ms),
        ("promoteMs", query.promote_ms),
    ];
    for (name, value) in fields {
        if let Some(v) = value {
            if v > MAX_INPUT {
                return Err(ApiError::Invalid(format!(
                    "{name} {v} is above the largest accepted, {MAX_INPUT}"
                )));
            }
        }
    }
    Ok(())
}
