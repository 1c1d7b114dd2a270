//! The db-agent's Prometheus instruments (`GET /metrics` on its `--listen` address), prefix
//! `arbiter_db_agent_`.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

use crate::metrics::{labels, Labels};

type FloatGauge = Gauge<f64, AtomicU64>;

pub struct AgentMetrics {
    registry: Registry,
    pub lease_held: Gauge,
    pub writable: Gauge,
    pub transitions: Family<Labels, Counter>,
    pub promotions: Counter,
    pub sessions_terminated: Counter,
    pub wal_position: Gauge,
    pub link_lag: Family<Labels, FloatGauge>,
    pub link_pending: Family<Labels, Gauge>,
    pub actions: Family<Labels, Counter>,
}

impl AgentMetrics {
    pub fn new(region: &str) -> AgentMetrics {
        let mut registry = Registry::with_prefix_and_labels(
            "arbiter_db_agent",
            [("region".into(), region.to_string().into())].into_iter(),
        );
        let metrics = AgentMetrics {
            lease_held: Gauge::default(),
            writable: Gauge::default(),
            transitions: Family::default(),
            promotions: Counter::default(),
            sessions_terminated: Counter::default(),
            wal_position: Gauge::default(),
            link_lag: Family::default(),
            link_pending: Family::default(),
            actions: Family::default(),
            registry: Registry::default(),
        };
        registry.register(
            "lease_held",
            "1 while the agent holds its region's write lease",
            metrics.lease_held.clone(),
        );
        registry.register(
            "writable",
            "1 while the agent has its database open for writes",
            metrics.writable.clone(),
        );
        registry.register(
            "transitions",
            "Database write-state changes made by the agent, by the state entered",
            metrics.transitions.clone(),
        );
        registry.register(
            "promotions",
            "Standby promotions made by the agent",
            metrics.promotions.clone(),
        );
        registry.register(
            "sessions_terminated",
            "Sessions with an open transaction ended when the database turned read-only",
            metrics.sessions_terminated.clone(),
        );
        registry.register_with_unit(
            "wal_position",
            "The database's WAL position (primary: current, standby: replayed)",
            Unit::Bytes,
            metrics.wal_position.clone(),
        );
        registry.register_with_unit(
            "replication_lag",
            "Replication lag of each link out of this region, as last reported",
            Unit::Seconds,
            metrics.link_lag.clone(),
        );
        registry.register_with_unit(
            "replication_pending",
            "WAL the link's standby has not replayed, as last reported",
            Unit::Bytes,
            metrics.link_pending.clone(),
        );
        registry.register(
            "actions",
            "Controller actions received, by result (obeyed, stale, unauthorized, invalid)",
            metrics.actions.clone(),
        );
        AgentMetrics {
            registry,
            ..metrics
        }
    }

    pub fn action(&self, result: &str) {
        self.actions
            .get_or_create(&labels([("result", result)]))
            .inc();
    }

    pub fn transition(&self, to: &str) {
        self.transitions.get_or_create(&labels([("to", to)])).inc();
    }

    pub fn link(&self, target: &str, lag_ms: u64, pending: u64) {
        let target = labels([("target_region", target)]);
        self.link_lag
            .get_or_create(&target)
            .set(lag_ms as f64 / 1_000.0);
        self.link_pending
            .get_or_create(&target)
            .set(pending.min(i64::MAX as u64) as i64);
    }

    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut text, &self.registry);
        text
    }
}
