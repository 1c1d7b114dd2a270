//! DR controller configuration: regions, replication links, probe consensus, hysteresis,
//! drain, drivers.
//!
//! Invariant: validated once (`RawDrConfig::validate`) into a [`DrConfig`] the controller can
//! trust: every region named anywhere is declared, each link joins two different regions and
//! is declared once, the probe quorum fits the vantage set, and each driver has what its kind
//! needs.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use arbiter_core::probe_consensus::{ConsensusConfig, DependencyName, ServiceClass, VantageId};
use arbiter_core::region_health::DEFAULT_COOLDOWN_MS;
use arbiter_core::replication::ReplicationMode;
use arbiter_core::RegionId;
use serde::{Deserialize, Serialize};

/// One region the controller watches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegionConfig {
    pub name: String,
    /// Where traffic goes when this region fails (default: the next region in the list).
    pub failover_to: Option<String>,
}

/// A replication link the controller declares at bootstrap (`[[dr.links]]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkConfig {
    pub source: String,
    pub target: String,
    /// `"SYNC"` or `"ASYNC"`; the seed's column default is ASYNC.
    #[serde(default = "default_link_mode")]
    pub mode: ReplicationMode,
}

fn default_link_mode() -> ReplicationMode {
    ReplicationMode::Async
}

/// A validated [`LinkConfig`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeclaredLink {
    pub source: RegionId,
    pub target: RegionId,
    pub mode: ReplicationMode,
}

/// How a driver carries out a decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum DriverKind {
    /// Nothing external: the replicated routing table is the source of truth that edge routers
    /// watch (gRPC `RoutingService.Watch`).
    Builtin,
    /// Runs `command` (argv) with the decision in `ARBITER_*` env vars and as JSON on stdin;
    /// exit status 0 is success.
    Exec { command: Vec<String> },
    /// POSTs the decision as JSON to `url` (plain `http://`); a 2xx answer is success. With
    /// `token_file`, the call carries `Authorization: Bearer <the file's contents>` (read at
    /// every call, so a rotated token needs no restart), as `arbiter db-agent` requires.
    Webhook {
        url: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token_file: Option<std::path::PathBuf>,
    },
}

/// (`deny_unknown_fields` cannot be combined with the flattened `kind`; the kind's own
/// variants still refuse unknown fields.)
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DriverConfig {
    #[serde(flatten)]
    pub kind: DriverKind,
    #[serde(default = "default_driver_timeout_ms")]
    pub timeout_ms: u64,
    /// Further attempts after a failure (each with its own timeout).
    #[serde(default = "default_driver_retries")]
    pub retries: u32,
}

fn default_driver_timeout_ms() -> u64 {
    10_000
}
fn default_driver_retries() -> u32 {
    2
}

impl Default for DriverConfig {
    fn default() -> Self {
        DriverConfig {
            kind: DriverKind::Builtin,
            timeout_ms: default_driver_timeout_ms(),
            retries: default_driver_retries(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDrConfig {
    #[serde(default)]
    pub regions: Vec<RegionConfig>,
    /// Links created at bootstrap when missing. Only their creation: a mode changed later
    /// through the API is not reverted by a restart. When neither regions nor links are
    /// configured (the seed's deployment, as `arbiter up` starts it), the seed's replication
    /// pair [`SEED_LINK`] is declared.
    #[serde(default)]
    pub links: Vec<LinkConfig>,
    /// The region that takes 100 % of traffic at start (default: the first region).
    pub primary: Option<String>,
    /// Default: london, tokyo, sydney.
    pub vantages: Option<Vec<String>>,
    /// Vantage points that must agree on an outage (default: all of them).
    pub probe_quorum: Option<usize>,
    pub probe_window_ms: Option<u64>,
    pub consecutive_failures: Option<usize>,
    pub loss_threshold: Option<f64>,
    /// dependency name → service class it carries (e.g. `paymentApi = "payments"`).
    #[serde(default)]
    pub critical_dependencies: BTreeMap<String, String>,
    /// Hysteresis: a region marked down stays down until healthy this long (default 10 min).
    pub cooldown_ms: Option<u64>,
    /// How long the failed region's connections are given to drain (default 30 s).
    pub drain_ms: Option<u64>,
    /// Bytes/s × lag → data-loss estimate: the write rate assumed (default the seed's 5,000/s).
    pub write_rate_per_sec: Option<u64>,
    pub write_bytes: Option<u64>,
    /// Controller loop period (default 200 ms).
    pub tick_ms: Option<u64>,
    #[serde(default)]
    pub traffic_driver: Option<DriverConfig>,
    #[serde(default)]
    pub compute_driver: Option<DriverConfig>,
}

#[derive(Debug, Clone)]
pub struct DrConfig {
    pub regions: Vec<RegionId>,
    pub failover_to: BTreeMap<RegionId, RegionId>,
    pub primary: RegionId,
    pub links: Vec<DeclaredLink>,
    pub consensus: ConsensusConfig,
    pub cooldown_ms: u64,
    pub drain: Duration,
    pub write_rate_per_sec: u64,
    pub write_bytes: u64,
    pub tick: Duration,
    pub traffic_driver: DriverConfig,
    pub compute_driver: DriverConfig,
}

impl DrConfig {
    /// The first region (in declared order) that is neither the primary nor the primary's
    /// failover target: the place for a control plane that must outlive either.
    pub fn outside_production(&self) -> Option<&RegionId> {
        let target = self.failover_to.get(&self.primary);
        self.regions
            .iter()
            .find(|r| **r != self.primary && Some(*r) != target)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DrConfigError {
    #[error("dr: region {0:?} is named but not declared in [[dr.regions]]")]
    UnknownRegion(String),
    #[error("dr: region {0:?} is declared twice")]
    DuplicateRegion(String),
    #[error("dr: region {0:?} fails over to itself")]
    SelfFailover(String),
    #[error("dr: link from region {0:?} to itself")]
    SelfLink(String),
    #[error("dr: link {source_region:?} → {target_region:?} is declared twice")]
    DuplicateLink {
        source_region: String,
        target_region: String,
    },
    #[error("dr: probe settings: {0}")]
    Consensus(String),
    #[error("dr: {driver} driver: {reason}")]
    Driver {
        driver: &'static str,
        reason: String,
    },
}

/// The regions of the seed's deployment, used when the config names none.
pub const DEFAULT_REGIONS: [&str; 3] = ["us-east-1", "us-west-2", "eu-central-1"];

/// The seed's replication pair (Region A → Region B, 70 ms apart), ASYNC as the seed's column
/// default: declared when the config names neither regions nor links, so that on a fresh
/// cluster `GetSyncMetrics` answers for it once us-east-1 reports, and the promotion gate has a
/// lag to judge for the default failover us-east-1 → us-west-2.
pub const SEED_LINK: (&str, &str) = ("us-east-1", "us-west-2");

impl RawDrConfig {
    pub fn validate(self) -> Result<DrConfig, DrConfigError> {
        let seed_deployment = self.regions.is_empty() && self.links.is_empty();
        let declared: Vec<RegionConfig> = if self.regions.is_empty() {
            DEFAULT_REGIONS
                .iter()
                .map(|r| RegionConfig {
                    name: r.to_string(),
                    failover_to: None,
                })
                .collect()
        } else {
            self.regions
        };
        let mut names = Vec::new();
        for r in &declared {
            if names.contains(&r.name) {
                return Err(DrConfigError::DuplicateRegion(r.name.clone()));
            }
            names.push(r.name.clone());
        }
        let known = |name: &str| -> Result<RegionId, DrConfigError> {
            if names.iter().any(|n| n == name) {
                Ok(RegionId::new(name))
            } else {
                Err(DrConfigError::UnknownRegion(name.to_string()))
            }
        };
        let mut failover_to = BTreeMap::new();
        for (i, r) in declared.iter().enumerate() {
            let target = match &r.failover_to {
                Some(t) => known(t)?,
                None => RegionId::new(&names[(i + 1) % names.len()]),
            };
            if target.as_str() == r.name {
                return Err(DrConfigError::SelfFailover(r.name.clone()));
            }
            failover_to.insert(RegionId::new(&r.name), target);
        }
        let primary = match &self.primary {
            Some(p) => known(p)?,
            None => RegionId::new(&names[0]),
        };
        let mut links: Vec<DeclaredLink> = Vec::new();
        for link in &self.links {
            let (source, target) = (known(&link.source)?, known(&link.target)?);
            if source == target {
                return Err(DrConfigError::SelfLink(link.source.clone()));
            }
            if links
                .iter()
                .any(|l| l.source == source && l.target == target)
            {
                return Err(DrConfigError::DuplicateLink {
                    source_region: link.source.clone(),
                    target_region: link.target.clone(),
                });
            }
            links.push(DeclaredLink {
                source,
                target,
                mode: link.mode,
            });
        }
        if seed_deployment {
            links.push(DeclaredLink {
                source: RegionId::new(SEED_LINK.0),
                target: RegionId::new(SEED_LINK.1),
                mode: default_link_mode(),
            });
        }

        let mut consensus = ConsensusConfig::default();
        if let Some(vantages) = self.vantages {
            consensus.vantages = vantages
                .iter()
                .map(|v| VantageId::from(v.as_str()))
                .collect::<BTreeSet<_>>();
            consensus.quorum = consensus.vantages.len();
        }
        if let Some(q) = self.probe_quorum {
            consensus.quorum = q;
        }
        if let Some(w) = self.probe_window_ms {
            consensus.window_ms = w;
        }
        if let Some(c) = self.consecutive_failures {
            consensus.consecutive_failures = c;
        }
        if let Some(l) = self.loss_threshold {
            consensus.loss_threshold = l;
        }
        consensus.critical_dependencies = self
            .critical_dependencies
            .into_iter()
            .map(|(d, c)| {
                (
                    DependencyName::from(d.as_str()),
                    ServiceClass::from(c.as_str()),
                )
            })
            .collect();
        consensus
            .validate()
            .map_err(|e| DrConfigError::Consensus(e.to_string()))?;

        let traffic_driver = self.traffic_driver.unwrap_or_default();
        let compute_driver = self.compute_driver.unwrap_or_default();
        for (name, driver) in [("traffic", &traffic_driver), ("compute", &compute_driver)] {
            check_driver(name, driver)?;
        }
        Ok(DrConfig {
            regions: names.iter().map(RegionId::new).collect(),
            failover_to,
            primary,
            links,
            consensus,
            cooldown_ms: self.cooldown_ms.unwrap_or(DEFAULT_COOLDOWN_MS),
            drain: Duration::from_millis(self.drain_ms.unwrap_or(30_000)),
            write_rate_per_sec: self.write_rate_per_sec.unwrap_or(5_000),
            write_bytes: self.write_bytes.unwrap_or(1_000),
            tick: Duration::from_millis(self.tick_ms.unwrap_or(200).max(10)),
            traffic_driver,
            compute_driver,
        })
    }
}

fn check_driver(driver: &'static str, config: &DriverConfig) -> Result<(), DrConfigError> {
    let reason = match &config.kind {
        DriverKind::Exec { command } if command.is_empty() => "exec needs a non-empty command",
        DriverKind::Webhook { url, .. } if !url.starts_with("http://") => {
            "webhook url must start with http://"
        }
        DriverKind::Webhook {
            token_file: Some(path),
            ..
        } => match std::fs::read_to_string(path) {
            Ok(token) if !token.trim().is_empty() => return Ok(()),
            Ok(_) => "webhook token_file is empty",
            Err(_) => "webhook token_file cannot be read",
        },
        _ if config.timeout_ms == 0 => "timeout_ms must be positive",
        _ => return Ok(()),
    };
    Err(DrConfigError::Driver {
        driver,
        reason: reason.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_seed() {
        let config = RawDrConfig::default().validate().expect("valid");
        assert_eq!(config.regions.len(), 3);
        assert_eq!(config.primary.as_str(), "us-east-1");
        assert_eq!(
            config.failover_to[&RegionId::new("us-east-1")].as_str(),
            "us-west-2"
        );
        assert_eq!(config.consensus.quorum, 3);
        assert_eq!(config.cooldown_ms, 600_000);
        // Issue 11, item 3d: the seed's replication pair exists on a fresh cluster.
        assert_eq!(
            config.links,
            [DeclaredLink {
                source: RegionId::new("us-east-1"),
                target: RegionId::new("us-west-2"),
                mode: ReplicationMode::Async,
            }]
        );
    }

    #[test]
    fn the_seed_link_is_not_added_to_a_deployment_that_declares_its_own() {
        let own_links = RawDrConfig {
            links: vec![LinkConfig {
                source: "us-west-2".into(),
                target: "us-east-1".into(),
                mode: ReplicationMode::Sync,
            }],
            ..Default::default()
        };
        assert_eq!(own_links.validate().expect("valid").links.len(), 1);
        let own_regions = RawDrConfig {
            regions: ["eu-west-1", "ap-south-1"]
                .map(|name| RegionConfig {
                    name: name.into(),
                    failover_to: None,
                })
                .into(),
            ..Default::default()
        };
        assert!(own_regions.validate().expect("valid").links.is_empty());
    }

    #[test]
    fn bad_settings_are_named() {
        let raw = RawDrConfig {
            primary: Some("mars-1".into()),
            ..Default::default()
        };
        assert_eq!(
            raw.validate().unwrap_err(),
            DrConfigError::UnknownRegion("mars-1".into())
        );
        let raw = RawDrConfig {
            probe_quorum: Some(4),
            ..Default::default()
        };
        assert!(matches!(raw.validate(), Err(DrConfigError::Consensus(_))));
        let raw = RawDrConfig {
            traffic_driver: Some(DriverConfig {
                kind: DriverKind::Exec { command: vec![] },
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(matches!(raw.validate(), Err(DrConfigError::Driver { .. })));
        let raw = RawDrConfig {
            compute_driver: Some(DriverConfig {
                kind: DriverKind::Webhook {
                    url: "http://127.0.0.1:9400/v1/agent/actions".into(),
                    token_file: Some("/nonexistent/webhook.token".into()),
                },
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            raw.validate().unwrap_err(),
            DrConfigError::Driver {
                driver: "compute",
                reason: "webhook token_file cannot be read".into()
            }
        );
    }

    #[test]
    fn links_parse_and_are_checked_against_the_regions() {
        let parse = |links: &str| -> Result<DrConfig, DrConfigError> {
            let text = format!(
                "[[regions]]\nname = \"us-east-1\"\n[[regions]]\nname = \"us-west-2\"\n{links}"
            );
            toml::from_str::<RawDrConfig>(&text)
                .expect("parses")
                .validate()
        };
        let config = parse(
            r#"
            [[links]]
            source = "us-east-1"
            target = "us-west-2"
            mode = "SYNC"
            [[links]]
            source = "us-west-2"
            target = "us-east-1"
            "#,
        )
        .expect("valid");
        assert_eq!(
            config.links,
            vec![
                DeclaredLink {
                    source: RegionId::new("us-east-1"),
                    target: RegionId::new("us-west-2"),
                    mode: ReplicationMode::Sync,
                },
                DeclaredLink {
                    source: RegionId::new("us-west-2"),
                    target: RegionId::new("us-east-1"),
                    mode: ReplicationMode::Async,
                },
            ]
        );
        let link = |source: &str, target: &str| {
            format!("[[links]]\nsource = \"{source}\"\ntarget = \"{target}\"\n")
        };
        assert_eq!(
            parse(&link("us-east-1", "mars-1")).unwrap_err(),
            DrConfigError::UnknownRegion("mars-1".into())
        );
        assert_eq!(
            parse(&link("us-east-1", "us-east-1")).unwrap_err(),
            DrConfigError::SelfLink("us-east-1".into())
        );
        assert!(matches!(
            parse(&(link("us-east-1", "us-west-2") + &link("us-east-1", "us-west-2"))),
            Err(DrConfigError::DuplicateLink { .. })
        ));
        assert!(toml::from_str::<RawDrConfig>(
            "[[links]]\nsource = \"a\"\ntarget = \"b\"\nmode = \"SEMI\"\n"
        )
        .is_err());
    }

    #[test]
    fn toml_drivers_parse() {
        let raw: RawDrConfig = toml::from_str(
            r#"
            cooldown_ms = 2000
            [[regions]]
            name = "us-east-1"
            [[regions]]
            name = "us-west-2"
            [traffic_driver]
            kind = "exec"
            command = ["/bin/sh", "-c", "cat > /dev/null"]
            timeout_ms = 500
            "#,
        )
        .expect("parses");
        let config = raw.validate().expect("valid");
        assert!(matches!(
            config.traffic_driver.kind,
            DriverKind::Exec { .. }
        ));
        assert_eq!(config.traffic_driver.retries, 2);
        assert_eq!(
            config.failover_to[&RegionId::new("us-west-2")].as_str(),
            "us-east-1"
        );
    }
}
