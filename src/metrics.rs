//! Prometheus metrics of one node: `GET /metrics` (text exposition by `prometheus-client`).
//!
//! Two kinds of series:
//! - instruments updated where things happen, owned by their component and registered here:
//!   the proposer's commands and batch sizes, the WAL's sync times, denied requests, leader
//!   changes seen by this node;
//! - gauges read from the node's state when scraped ([`Metrics::refresh`]): Raft role, term and
//!   indexes, per-peer replication lag on the leader, and the replicated tables (live leases,
//!   region health, traffic weights, replication links against their RPO targets, failovers,
//!   leadership moves).
//!
//! Names follow Prometheus conventions: the `arbiter_` prefix, base units (`_seconds`,
//! `_ratio`), `_total` only on counters, labels for dimensions with few values.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use arbiter_core::region_health::HealthState;
use openraft::ServerState;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

use crate::node::NodeContext;

/// A label set built at runtime (region, peer, vantage names).
pub(crate) type Labels = Vec<(String, String)>;
type FloatGauge = Gauge<f64, AtomicU64>;

pub(crate) fn labels<const N: usize>(pairs: [(&str, &str); N]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The instruments other components own and update; [`Metrics::new`] registers them.
pub struct Instruments<'a> {
    pub proposer: &'a crate::proposer::ProposerMetrics,
    pub wal: &'a crate::store::WalCounters,
    pub snapshots: &'a crate::store::SnapshotMetrics,
    pub denials: &'a crate::auth::Denials,
    pub leases: &'a crate::leases::LeaseMetrics,
    pub dr: &'a crate::dr::metrics::DrMetrics,
    pub peer_contacts: crate::network::PeerContacts,
}

pub struct Metrics {
    registry: Registry,
    peer_contacts: crate::network::PeerContacts,
    peer_last_contact: Family<Labels, FloatGauge>,
    quorum_ack_age: FloatGauge,
    probe_verdict: Family<Labels, Gauge>,
    has_leader: Gauge,
    is_leader: Gauge,
    term: Gauge,
    last_log_index: Gauge,
    committed_index: Gauge,
    applied_index: Gauge,
    snapshot_index: Gauge,
    voters: Gauge,
    peer_lag_entries: Family<Labels, Gauge>,
    storage_error: Gauge,
    live_leases: Gauge,
    region_state: Family<Labels, Gauge>,
    traffic_weight: Family<Labels, FloatGauge>,
    link_lag: Family<Labels, FloatGauge>,
    link_rpo_target: Family<Labels, FloatGauge>,
    link_active: Family<Labels, Gauge>,
    failovers: Family<Labels, Gauge>,
    leader_moves: Gauge,
    leader_in_preferred_region: Gauge,
    /// Updated by the leader watch ([`Metrics::watch_leader`]).
    pub leader_changes: Counter,
}

impl Metrics {
    /// Builds the registry: this node's gauges plus the instruments its components own.
    pub fn new(node_id: u64, region: &str, components: Instruments<'_>) -> Metrics {
        let Instruments {
            proposer,
            wal,
            snapshots,
            denials,
            leases,
            dr,
            peer_contacts,
        } = components;
        let mut registry = Registry::with_prefix("arbiter");
        // A gauge of 1 rather than an OpenMetrics info: Prometheus' own text format (and
        // `promtool check metrics`) has no info type.
        let build = Family::<Labels, Gauge>::default();
        build
            .get_or_create(&labels([
                ("version", env!("CARGO_PKG_VERSION")),
                ("node_id", &node_id.to_string()),
                ("region", region),
            ]))
            .set(1);
        registry.register(
            "build_info",
            "This node's version and identity (value 1)",
            build,
        );
        let metrics = Metrics {
            peer_contacts,
            peer_last_contact: Family::default(),
            quorum_ack_age: FloatGauge::default(),
            probe_verdict: Family::default(),
            has_leader: Gauge::default(),
            is_leader: Gauge::default(),
            term: Gauge::default(),
            last_log_index: Gauge::default(),
            committed_index: Gauge::default(),
            applied_index: Gauge::default(),
            snapshot_index: Gauge::default(),
            voters: Gauge::default(),
            peer_lag_entries: Family::default(),
            storage_error: Gauge::default(),
            live_leases: Gauge::default(),
            region_state: Family::default(),
            traffic_weight: Family::default(),
            link_lag: Family::default(),
            link_rpo_target: Family::default(),
            link_active: Family::default(),
            failovers: Family::default(),
            leader_moves: Gauge::default(),
            leader_in_preferred_region: Gauge::default(),
            leader_changes: Counter::default(),
            registry: Registry::default(),
        };
        let r = &mut registry;
        r.register(
            "raft_has_leader",
            "1 when this node knows a leader",
            metrics.has_leader.clone(),
        );
        r.register(
            "raft_is_leader",
            "1 when this node is the leader",
            metrics.is_leader.clone(),
        );
        r.register("raft_term", "Current Raft term", metrics.term.clone());
        r.register(
            "raft_leader_changes",
            "Times this node saw the leader change (or become unknown) since it started",
            metrics.leader_changes.clone(),
        );
        r.register(
            "raft_last_log_index",
            "Index of this node's last log entry",
            metrics.last_log_index.clone(),
        );
        r.register(
            "raft_committed_index",
            "Highest log index this node knows committed",
            metrics.committed_index.clone(),
        );
        r.register(
            "raft_applied_index",
            "Highest log index applied to this node's state machine",
            metrics.applied_index.clone(),
        );
        r.register(
            "raft_snapshot_index",
            "Log index of this node's last snapshot",
            metrics.snapshot_index.clone(),
        );
        r.register(
            "raft_voters",
            "Voters in the current membership",
            metrics.voters.clone(),
        );
        r.register(
            "raft_peer_lag_entries",
            "On the leader: entries a peer is behind the leader's last log index",
            metrics.peer_lag_entries.clone(),
        );
        r.register_with_unit(
            "raft_peer_last_contact",
            "Time since each peer last answered a Raft RPC from this node",
            Unit::Seconds,
            metrics.peer_last_contact.clone(),
        );
        r.register_with_unit(
            "raft_quorum_ack_age",
            "On the leader: time since a quorum last acknowledged it",
            Unit::Seconds,
            metrics.quorum_ack_age.clone(),
        );
        r.register(
            "proposer_commands",
            "Commands proposed by this node, by result (committed, not_leader, timeout, error)",
            proposer.commands.clone(),
        );
        r.register(
            "proposer_batch_commands",
            "Commands per committed log entry (group commit)",
            proposer.batch_commands.clone(),
        );
        r.register_with_unit(
            "wal_sync_duration",
            "Time of one WAL sync round (fdatasync of the segment, and the directory when a file was created)",
            Unit::Seconds,
            wal.sync_seconds.clone(),
        );
        r.register(
            "wal_sync_batch_appends",
            "Appends made durable by one WAL sync round (group commit)",
            wal.sync_batch_appends.clone(),
        );
        r.register_with_unit(
            "snapshot_build_duration",
            "Time to build one snapshot: encode the state machine, write and fsync the file",
            Unit::Seconds,
            snapshots.build_seconds.clone(),
        );
        r.register_with_unit(
            "snapshot_install_duration",
            "Time to install one snapshot received from the leader: decode, write and fsync the file, swap the state in",
            Unit::Seconds,
            snapshots.install_seconds.clone(),
        );
        r.register_with_unit(
            "snapshot_size",
            "Encoded size of the snapshot this node last built or installed",
            Unit::Bytes,
            snapshots.bytes.clone(),
        );
        r.register(
            "storage_error",
            "1 while this node's storage refuses writes (e.g. out of space)",
            metrics.storage_error.clone(),
        );
        r.register(
            "auth_denied_requests",
            "Requests refused by the authentication layer, by reason",
            denials.family(),
        );
        r.register(
            "leases_live",
            "Live (granted, not released or expired) leases in the replicated table",
            metrics.live_leases.clone(),
        );
        r.register(
            "lease_requests",
            "Lease requests served by this node, by operation and result (granted, renewed, a refusal's kind, not_leader, ...)",
            leases.requests.clone(),
        );
        r.register_with_unit(
            "lease_timers_rebuild_duration",
            "On becoming leader: time to give every live lease a full TTL from now (one walk over the table)",
            Unit::Seconds,
            leases.timers_rebuild_seconds.clone(),
        );
        r.register(
            "lease_quorum_rounds",
            "Quorum rounds run to confirm leadership for keep-alives and reads",
            leases.quorum_rounds.clone(),
        );
        r.register(
            "lease_quorum_round_waiters",
            "Keep-alives and reads one quorum round confirmed",
            leases.round_waiters.clone(),
        );
        r.register(
            "probe_reports",
            "Probe reports taken by this node as leader, by vantage, region and result",
            dr.probe_reports.clone(),
        );
        r.register(
            "probe_verdict",
            "On the leader: 1 for each region's current outage-consensus verdict (healthy, suspect, outage, dependency_outage)",
            metrics.probe_verdict.clone(),
        );
        r.register_with_unit(
            "failover_step_duration",
            "Time to carry out one failover step, by step and result",
            Unit::Seconds,
            dr.step_seconds.clone(),
        );
        r.register(
            "driver_calls",
            "Traffic and compute driver calls, by driver and result (after retries)",
            dr.driver_calls.clone(),
        );
        r.register_with_unit(
            "driver_call_duration",
            "Time of one driver call, retries included",
            Unit::Seconds,
            dr.driver_seconds.clone(),
        );
        r.register(
            "region_state",
            "1 for each region's current health state (HEALTHY, DEGRADED, DOWN, RECOVERING)",
            metrics.region_state.clone(),
        );
        r.register_with_unit(
            "traffic_weight",
            "Share of traffic routed to each region",
            Unit::Other("ratio".to_string()),
            metrics.traffic_weight.clone(),
        );
        r.register_with_unit(
            "replication_lag",
            "Replication lag each link last reported",
            Unit::Seconds,
            metrics.link_lag.clone(),
        );
        r.register_with_unit(
            "replication_rpo_target",
            "RPO target of each link's mode (SYNC 0 s, ASYNC 5 s)",
            Unit::Seconds,
            metrics.link_rpo_target.clone(),
        );
        r.register(
            "replication_link_active",
            "1 when the link is active",
            metrics.link_active.clone(),
        );
        r.register(
            "failover_events",
            "Failover events in the replicated log, by status",
            metrics.failovers.clone(),
        );
        r.register(
            "placement_leader_moves",
            "Planned leadership moves recorded in the replicated log since the cluster began",
            metrics.leader_moves.clone(),
        );
        r.register(
            "placement_leader_in_preferred_region",
            "1 when the known leader is in the preferred region, 0 when it is elsewhere; absent without a preferred region",
            metrics.leader_in_preferred_region.clone(),
        );
        Metrics {
            registry,
            ..metrics
        }
    }

    /// Sets the scrape-time gauges from `node`'s state.
    pub fn refresh(&self, node: &NodeContext) {
        let m = node.raft.metrics().borrow().clone();
        self.has_leader.set(i64::from(m.current_leader.is_some()));
        self.is_leader
            .set(i64::from(m.state == ServerState::Leader));
        self.term.set(m.current_term as i64);
        self.last_log_index
            .set(m.last_log_index.unwrap_or(0) as i64);
        self.committed_index
            .set(node.committed.load(std::sync::atomic::Ordering::Relaxed) as i64);
        self.applied_index
            .set(m.last_applied.map_or(0, |l| l.index) as i64);
        self.snapshot_index
            .set(m.snapshot.map_or(0, |l| l.index) as i64);
        self.voters
            .set(m.membership_config.membership().voter_ids().count() as i64);
        self.peer_lag_entries.clear();
        if let Some(replication) = &m.replication {
            let last = m.last_log_index.unwrap_or(0);
            for (peer, matched) in replication {
                if *peer == node.id {
                    continue;
                }
                let lag = last.saturating_sub(matched.map_or(0, |l| l.index));
                self.peer_lag_entries
                    .get_or_create(&labels([("peer", &peer.to_string())]))
                    .set(lag as i64);
            }
        }
        self.peer_last_contact.clear();
        for (peer, age) in self.peer_contacts.ages() {
            self.peer_last_contact
                .get_or_create(&labels([("peer", &peer.to_string())]))
                .set(age.as_secs_f64());
        }
        self.quorum_ack_age.set(
            m.millis_since_quorum_ack
                .filter(|_| m.state == ServerState::Leader)
                .map_or(f64::NAN, |ms| ms as f64 / 1_000.0),
        );
        self.probe_verdict.clear();
        for verdict in node.dr.verdicts() {
            self.probe_verdict
                .get_or_create(&labels([
                    ("region", verdict.region().as_str()),
                    ("verdict", verdict.name()),
                ]))
                .set(1);
        }
        self.storage_error
            .set(i64::from(node.storage_health.get().is_some()));
        match node.placement.leader_in_preferred_region() {
            Some(there) => self.leader_in_preferred_region.set(i64::from(there)),
            None => self.leader_in_preferred_region.set(-1),
        };

        // A clone shares the lease table's nodes: counting a large table holds up no apply.
        let state = node.state.read().clone();
        let machine = &state.machine;
        self.live_leases
            .set(machine.leases.live_leases().count() as i64);
        self.region_state.clear();
        for (region, health) in machine.regions.iter() {
            for candidate in [
                HealthState::Healthy,
                HealthState::Degraded,
                HealthState::Down,
                HealthState::Recovering,
            ] {
                self.region_state
                    .get_or_create(&labels([
                        ("region", region.as_str()),
                        ("state", health_name(candidate)),
                    ]))
                    .set(i64::from(health.state == candidate));
            }
        }
        self.traffic_weight.clear();
        if let Some(weights) = machine.traffic.weights() {
            for (region, bp) in weights.iter() {
                self.traffic_weight
                    .get_or_create(&labels([("region", region.as_str())]))
                    .set(f64::from(bp) / 10_000.0);
            }
        }
        self.link_lag.clear();
        self.link_rpo_target.clear();
        self.link_active.clear();
        for link in machine.replication.links() {
            let mode = format!("{:?}", link.replication_mode).to_uppercase();
            let key = labels([
                ("source", link.source_region.as_str()),
                ("target", link.target_region.as_str()),
                ("mode", &mode),
            ]);
            self.link_lag
                .get_or_create(&key)
                .set(link.replication_lag_ms as f64 / 1_000.0);
            self.link_rpo_target
                .get_or_create(&key)
                .set(link.replication_mode.rpo_target_ms() as f64 / 1_000.0);
            self.link_active
                .get_or_create(&key)
                .set(i64::from(link.is_link_active));
        }
        self.failovers.clear();
        let unfinished = machine.failovers.unfinished().count();
        let total = machine.failovers.len();
        self.failovers
            .get_or_create(&labels([("status", "unfinished")]))
            .set(unfinished as i64);
        self.failovers
            .get_or_create(&labels([("status", "finished")]))
            .set(total.saturating_sub(unfinished) as i64);
        self.leader_moves.set(machine.placement.moves() as i64);
    }

    /// The exposition in Prometheus' text format 0.0.4 (what `promtool check metrics` and every
    /// scraper read).
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut text, &self.registry);
        to_prometheus_text(&text)
    }

    /// Counts leader changes as this node sees them, until its Raft stops.
    pub async fn watch_leader(self: Arc<Self>, raft: crate::raft_types::Raft) {
        let mut metrics = raft.metrics();
        let mut last = metrics.borrow().current_leader;
        while metrics.changed().await.is_ok() {
            let (leader, state) = {
                let m = metrics.borrow();
                (m.current_leader, m.state)
            };
            if state == ServerState::Shutdown {
                return;
            }
            if leader != last {
                self.leader_changes.inc();
                last = leader;
            }
        }
    }
}

/// Content type of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// OpenMetrics (what `prometheus-client` writes) to Prometheus text 0.0.4: a counter's
/// `# HELP`/`# TYPE` name its `_total` series, and the `# UNIT` and `# EOF` lines go.
fn to_prometheus_text(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(name)
                .then(|| format!("{prefix}{name}_total {tail}"))
        });
        match renamed {
            Some(line) => out.push_str(&line),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

fn health_name(state: HealthState) -> &'static str {
    match state {
        HealthState::Healthy => "HEALTHY",
        HealthState::Degraded => "DEGRADED",
        HealthState::Down => "DOWN",
        HealthState::Recovering => "RECOVERING",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_renamed_to_their_total_series_and_openmetrics_lines_dropped() {
        let openmetrics = "# HELP x_requests Requests.\n# TYPE x_requests counter\n\
                           x_requests_total 3\n# HELP x_lag Lag.\n# TYPE x_lag gauge\n\
                           # UNIT x_lag seconds\nx_lag 0.5\n# EOF\n";
        assert_eq!(
            to_prometheus_text(openmetrics),
            "# HELP x_requests_total Requests.\n# TYPE x_requests_total counter\n\
             x_requests_total 3\n# HELP x_lag Lag.\n# TYPE x_lag gauge\nx_lag 0.5\n"
        );
    }
}
