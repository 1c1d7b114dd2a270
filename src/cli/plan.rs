//! `arbiter plan`: the seed's capacity model for the running cluster, from `GET /v1/plan` —
//! replication bandwidth, transactions in flight at failure, DNS-cached clients and the
//! predicted RTO by component, each input with where its value came from. Every flag is a
//! what-if override of one input; without flags the leader uses the live link and the
//! cluster's own settings. Sent through the DR commands' leader-following client
//! ([`super::dr`]).

use clap::Args;
use serde_json::Value;

use super::dr::{text, Target};

#[derive(Args, Debug)]
pub struct PlanArgs {
    /// The replicating region (default: the DR primary).
    #[arg(long)]
    source: Option<String>,
    /// Where it replicates to (default: the source's failover region).
    #[arg(long)]
    target: Option<String>,
    /// Writes per second (default: measured on the link, else dr.write_rate_per_sec).
    #[arg(long)]
    writes_per_sec: Option<u64>,
    /// Average record size in bytes (default: dr.write_bytes).
    #[arg(long)]
    record_bytes: Option<u64>,
    /// Replication lag in ms (default: the link's last report).
    #[arg(long)]
    lag_ms: Option<u64>,
    /// Active users (default: the seed's 10,000,000).
    #[arg(long)]
    users: Option<u64>,
    /// DNS TTL in seconds (default 60).
    #[arg(long)]
    dns_ttl: Option<u64>,
    /// Seconds after the DNS change at which to count cached clients (default 30).
    #[arg(long)]
    at: Option<u64>,
    /// The probe agents' interval in ms (default 1000, `arbiter probe`'s).
    #[arg(long)]
    probe_interval_ms: Option<u64>,
    /// The probe agents' timeout in ms (default 800).
    #[arg(long)]
    probe_timeout_ms: Option<u64>,
    /// One log commit in ms (default: a quorum round the leader measures).
    #[arg(long)]
    commit_ms: Option<u64>,
    /// The failed region's write-lease TTL in ms (default: the longest the cluster grants).
    #[arg(long)]
    lease_ttl_ms: Option<u64>,
    /// `pg_promote` until the standby takes writes, in ms (default 1000).
    #[arg(long)]
    promote_ms: Option<u64>,
    #[command(flatten)]
    pub(super) target_cluster: Target,
}

impl PlanArgs {
    /// `/v1/plan` with the given overrides.
    pub(super) fn path(&self, query: impl Fn(&[(&str, &Option<String>)]) -> String) -> String {
        let text = |v: &Option<u64>| v.map(|v| v.to_string());
        let pairs = [
            ("sourceRegion", self.source.clone()),
            ("targetRegion", self.target.clone()),
            ("writesPerSec", text(&self.writes_per_sec)),
            ("recordBytes", text(&self.record_bytes)),
            ("lagMs", text(&self.lag_ms)),
            ("users", text(&self.users)),
            ("dnsTtlSeconds", text(&self.dns_ttl)),
            ("atSeconds", text(&self.at)),
            ("probeIntervalMs", text(&self.probe_interval_ms)),
            ("probeTimeoutMs", text(&self.probe_timeout_ms)),
            ("commitMs", text(&self.commit_ms)),
            ("leaseTtlMs", text(&self.lease_ttl_ms)),
            ("promoteMs", text(&self.promote_ms)),
        ];
        let borrowed: Vec<(&str, &Option<String>)> = pairs.iter().map(|(k, v)| (*k, v)).collect();
        format!("/v1/plan{}", query(&borrowed))
    }
}

/// The plan as tables: the figures, the RTO components, then the inputs and their sources.
pub(super) fn print(plan: &Value) {
    let mut figures = super::output::Table::new(&["FIGURE", "VALUE", "FORMULA"]);
    let bandwidth = &plan["replicationBandwidth"];
    figures.push(vec![
        "replication bandwidth".into(),
        format!("{} Mbps", number(&bandwidth["mbps"])),
        text(&bandwidth["formula"]),
    ]);
    let in_flight = &plan["inFlightAtFailure"];
    figures.push(vec![
        "transactions in flight at failure".into(),
        format!(
            "{} ({} bytes)",
            grouped(&in_flight["transactions"]),
            grouped(&in_flight["bytes"])
        ),
        text(&in_flight["formula"]),
    ]);
    let dns = &plan["dnsCachedClients"];
    figures.push(vec![
        format!("DNS-cached clients at t = {} s", text(&dns["atSeconds"])),
        format!(
            "{} (99 % moved after {} s)",
            grouped(&dns["cachedUsers"]),
            number(&dns["allButOnePercentAfterSeconds"])
        ),
        text(&dns["formula"]),
    ]);
    let rto = &plan["predictedRto"];
    figures.push(vec![
        "predicted RTO".into(),
        format!("{} ms", grouped(&rto["totalMs"])),
        text(&rto["formula"]),
    ]);
    println!(
        "plan for {} -> {}",
        text(&plan["sourceRegion"]),
        text(&plan["targetRegion"])
    );
    figures.print();
    println!();
    let mut components = super::output::Table::new(&["RTO COMPONENT", "MS", "DERIVATION"]);
    for c in plan["predictedRto"]["components"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        components.push(vec![
            text(&c["component"]),
            grouped(&c["ms"]),
            text(&c["derivation"]),
        ]);
    }
    components.print();
    println!();
    let mut inputs = super::output::Table::new(&["INPUT", "VALUE", "SOURCE"]);
    for i in plan["inputs"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        inputs.push(vec![
            text(&i["name"]),
            format!("{} {}", grouped(&i["value"]), text(&i["unit"])),
            text(&i["source"]),
        ]);
    }
    inputs.print();
}

/// A float with at most one decimal, trailing ".0" dropped (52 Mbps, 276.3 s).
fn number(value: &Value) -> String {
    match value.as_f64() {
        Some(v) if v.fract() == 0.0 => format!("{v:.0}"),
        Some(v) => format!("{v:.1}"),
        None => text(value),
    }
}

/// An integer with thousands separators (6,065,306).
fn grouped(value: &Value) -> String {
    let Some(v) = value.as_u64() else {
        return text(value);
    };
    let digits = v.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_print_as_the_seed_writes_them() {
        assert_eq!(grouped(&Value::from(6_065_306u64)), "6,065,306");
        assert_eq!(grouped(&Value::from(4_000u64)), "4,000");
        assert_eq!(grouped(&Value::from(52u64)), "52");
        assert_eq!(number(&Value::from(52.0)), "52");
        assert_eq!(number(&Value::from(276.31)), "276.3");
    }
}
