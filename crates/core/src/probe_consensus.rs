//! Outage consensus over health probes from several vantage points: the controller's judgement
//! of whether a region is healthy, suspect, down, or missing one critical dependency.
//!
//! Invariant: an outage is declared only when at least `quorum` configured vantage points each
//! see the region failing by the failure rule within the window; a region is called healthy only
//! when `quorum` vantage points see it clean. Reports older than the window count as nothing, so
//! silence is never mistaken for health. Kept in the controller's memory, not replicated: the
//! decisions it leads to are (see [`crate::region_health`], [`crate::failover_log`]). Time is the
//! controller's monotonic clock, passed in.

use crate::region_health::HealthCommand;
use crate::types::{string_id, MonoMillis, RegionId};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use thiserror::Error;

/// Samples kept per (region, vantage) at most, whatever the window: bounds memory if a probe
/// agent floods the controller.
pub const MAX_SAMPLES_PER_VANTAGE: usize = 1024;

string_id!(
    /// Where a probe runs from, e.g. `london`.
    VantageId
);
string_id!(
    /// A class of requests that can be served from another region on its own, e.g. `payments`.
    ServiceClass
);
string_id!(
    /// A key of the seed's health-check `dependencies` map, e.g. `primaryDatabase`.
    DependencyName
);

/// A dependency's status as a probe saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DependencyStatus {
    Ok,
    Failed,
}

impl DependencyStatus {
    /// Reads a status string from the seed's health check (`"CONNECTED"`, `"OK"`, ...). Anything
    /// not known to be good counts as failed: only a quorum of such reports shifts anything.
    pub fn from_reported(status: &str) -> Self {
        const GOOD: [&str; 4] = ["OK", "CONNECTED", "HEALTHY", "UP"];
        if GOOD.iter().any(|good| good.eq_ignore_ascii_case(status)) {
            DependencyStatus::Ok
        } else {
            DependencyStatus::Failed
        }
    }
}

/// One probe of one region from one vantage point.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeReport {
    pub vantage: VantageId,
    pub region: RegionId,
    /// The region's gateway answered its health check. Dependency failures are reported in
    /// `dependencies`, not here, so that one failed dependency is not a regional outage.
    pub ok: bool,
    pub dependencies: BTreeMap<DependencyName, DependencyStatus>,
    /// When the controller received the report, on its monotonic clock: probe agents' clocks
    /// are not trusted.
    pub at: MonoMillis,
}

/// Outage-consensus settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConsensusConfig {
    pub vantages: BTreeSet<VantageId>,
    /// How many vantage points must agree; the seed asks for all of them.
    pub quorum: usize,
    /// Reports older than this count as nothing.
    pub window_ms: u64,
    /// A vantage sees a failure after this many failed probes in a row ...
    pub consecutive_failures: usize,
    /// ... or when more than this fraction of its probes in the window failed,
    pub loss_threshold: f64,
    /// ... provided it has at least this many probes in the window.
    pub min_samples: usize,
    /// Dependencies whose failure moves a service class, not the region.
    pub critical_dependencies: BTreeMap<DependencyName, ServiceClass>,
}

impl Default for ConsensusConfig {
    fn default() -> Self {
        let vantages: BTreeSet<VantageId> = ["london", "tokyo", "sydney"]
            .into_iter()
            .map(VantageId::from)
            .collect();
        ConsensusConfig {
            quorum: vantages.len(),
            vantages,
            window_ms: 30_000,
            consecutive_failures: 3,
            loss_threshold: 0.8,
            min_samples: 5,
            critical_dependencies: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Error)]
pub enum ConsensusConfigError {
    #[error("no vantage points configured")]
    NoVantages,
    #[error("quorum {quorum} must be between 1 and the {vantages} vantage points")]
    QuorumOutOfRange { quorum: usize, vantages: usize },
    #[error("window_ms must be positive")]
    ZeroWindow,
    #[error("consecutive_failures must be positive")]
    ZeroConsecutiveFailures,
    #[error("min_samples must be positive")]
    ZeroMinSamples,
    #[error("loss_threshold must be within (0, 1), got {threshold}")]
    LossThresholdOutOfRange { threshold: f64 },
}

impl ConsensusConfig {
    pub fn validate(&self) -> Result<(), ConsensusConfigError> {
        if self.vantages.is_empty() {
            return Err(ConsensusConfigError::NoVantages);
        }
        if self.quorum == 0 || self.quorum > self.vantages.len() {
            return Err(ConsensusConfigError::QuorumOutOfRange {
                quorum: self.quorum,
                vantages: self.vantages.len(),
            });
        }
        if self.window_ms == 0 {
            return Err(ConsensusConfigError::ZeroWindow);
        }
        if self.consecutive_failures == 0 {
            return Err(ConsensusConfigError::ZeroConsecutiveFailures);
        }
        if self.min_samples == 0 {
            return Err(ConsensusConfigError::ZeroMinSamples);
        }
        if !(self.loss_threshold > 0.0 && self.loss_threshold < 1.0) {
            return Err(ConsensusConfigError::LossThresholdOutOfRange {
                threshold: self.loss_threshold,
            });
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ProbeError {
    #[error("vantage point {vantage} is not configured")]
    UnknownVantage { vantage: VantageId },
}

/// Which failure rule a vantage point's probes met.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FailureRule {
    ConsecutiveFailures,
    LossFraction,
}

/// Why one vantage point counts as seeing a failure; goes into the failover timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    pub vantage: VantageId,
    pub rule: FailureRule,
    pub failed_samples: usize,
    pub samples: usize,
    /// Failed probes at the end of the window, in a row.
    pub consecutive_failures: usize,
}

/// The consensus about one region (or one of its dependencies) at one instant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Verdict {
    /// At least `quorum` vantage points see it clean, and none sees a failure.
    Healthy { region: RegionId },
    /// Neither healthy nor down: some vantage points saw failures (`failing`), or too few have
    /// reported within the window (`silent`).
    Suspect {
        region: RegionId,
        failing: BTreeSet<VantageId>,
        silent: BTreeSet<VantageId>,
    },
    /// At least `quorum` vantage points see the region failing.
    Outage {
        region: RegionId,
        vantages: BTreeSet<VantageId>,
        evidence: Vec<Evidence>,
    },
    /// The region answers, but at least `quorum` vantage points see this critical dependency
    /// failing: move `service_class`, not the region.
    DependencyOutage {
        region: RegionId,
        dependency: DependencyName,
        service_class: ServiceClass,
        vantages: BTreeSet<VantageId>,
    },
}

impl Verdict {
    /// The verdict's kind in snake case (`healthy`, `suspect`, `outage`,
    /// `dependency_outage`), as metrics label it and the dashboard shows it.
    pub fn name(&self) -> &'static str {
        match self {
            Verdict::Healthy { .. } => "healthy",
            Verdict::Suspect { .. } => "suspect",
            Verdict::Outage { .. } => "outage",
            Verdict::DependencyOutage { .. } => "dependency_outage",
        }
    }

    pub fn region(&self) -> &RegionId {
        match self {
            Verdict::Healthy { region }
            | Verdict::Suspect { region, .. }
            | Verdict::Outage { region, .. }
            | Verdict::DependencyOutage { region, .. } => region,
        }
    }

    /// The region-health observation this verdict amounts to. A dependency outage or a mere
    /// suspicion is not health: it holds a recovering region down, so failback waits for a
    /// region that is clean from every side.
    pub fn health_command(&self) -> HealthCommand {
        let region = self.region().clone();
        match self {
            Verdict::Healthy { .. } => HealthCommand::ObserveHealthy { region },
            Verdict::Suspect { .. } | Verdict::DependencyOutage { .. } => {
                HealthCommand::ObserveUnhealthy { region }
            }
            Verdict::Outage { .. } => HealthCommand::MarkDown { region },
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Sample {
    at: MonoMillis,
    ok: bool,
    /// Critical dependencies only: the rest never change a verdict.
    critical: BTreeMap<DependencyName, DependencyStatus>,
}

/// How one vantage point sees one region within the window.
enum VantageView {
    Silent,
    Clean,
    /// Some probes failed, not enough for the failure rule.
    Flaky,
    Failing(Evidence),
}

/// The controller's probe reports, and the consensus over them.
#[derive(Debug, Clone)]
pub struct ProbeConsensus {
    config: ConsensusConfig,
    /// region → vantage → samples, oldest first. Each list is trimmed to one window behind its
    /// newest sample on every record, so memory stays bounded without a timer.
    samples: BTreeMap<RegionId, BTreeMap<VantageId, VecDeque<Sample>>>,
}

impl ProbeConsensus {
    pub fn new(config: ConsensusConfig) -> Result<Self, ConsensusConfigError> {
        config.validate()?;
        Ok(ProbeConsensus {
            config,
            samples: BTreeMap::new(),
        })
    }

    pub fn config(&self) -> &ConsensusConfig {
        &self.config
    }

    /// Samples kept, over every region and vantage point: at most
    /// [`MAX_SAMPLES_PER_VANTAGE`] per pair, none older than the window behind that pair's
    /// newest. Reports are input from the network; this is the memory bound they get.
    pub fn retained_samples(&self) -> usize {
        self.samples
            .values()
            .flat_map(|by_vantage| by_vantage.values())
            .map(|samples| samples.len())
            .sum()
    }

    pub fn record(&mut self, report: ProbeReport) -> Result<(), ProbeError> {
        if !self.config.vantages.contains(&report.vantage) {
            return Err(ProbeError::UnknownVantage {
                vantage: report.vantage,
            });
        }
        let critical = report
            .dependencies
            .into_iter()
            .filter(|(name, _)| self.config.critical_dependencies.contains_key(name))
            .collect();
        let samples = self
            .samples
            .entry(report.region)
            .or_default()
            .entry(report.vantage)
            .or_default();
        // Reports may be recorded slightly out of order by concurrent handlers; keep time order.
        let position = samples.partition_point(|sample| sample.at <= report.at);
        samples.insert(
            position,
            Sample {
                at: report.at,
                ok: report.ok,
                critical,
            },
        );
        let newest = samples.back().map_or(report.at, |sample| sample.at);
        while samples.len() > MAX_SAMPLES_PER_VANTAGE
            || samples
                .front()
                .is_some_and(|oldest| newest.0.saturating_sub(oldest.at.0) > self.config.window_ms)
        {
            samples.pop_front();
        }
        Ok(())
    }

    /// The consensus at `now`, by region: one `Healthy`, `Suspect` or `Outage` verdict per region,
    /// or instead one `DependencyOutage` per critical dependency that a quorum sees failing when
    /// the region itself is not down.
    pub fn evaluate(&self, now: MonoMillis) -> Vec<Verdict> {
        self.samples
            .iter()
            .flat_map(|(region, by_vantage)| {
                // Each configured vantage's samples within the window at `now`.
                let fresh: BTreeMap<&VantageId, Vec<&Sample>> = self
                    .config
                    .vantages
                    .iter()
                    .map(|vantage| {
                        let samples = by_vantage
                            .get(vantage)
                            .into_iter()
                            .flatten()
                            .filter(|sample| {
                                now.0.saturating_sub(sample.at.0) <= self.config.window_ms
                            })
                            .collect();
                        (vantage, samples)
                    })
                    .collect();
                self.evaluate_region(region, &fresh)
            })
            .collect()
    }

    fn evaluate_region(
        &self,
        region: &RegionId,
        fresh: &BTreeMap<&VantageId, Vec<&Sample>>,
    ) -> Vec<Verdict> {
        let mut silent = BTreeSet::new();
        let mut clean = 0;
        let mut failing = BTreeSet::new();
        let mut evidence = Vec::new();
        for (&vantage, samples) in fresh {
            match self.view(vantage, samples.iter().map(|sample| !sample.ok)) {
                VantageView::Silent => {
                    silent.insert(vantage.clone());
                }
                VantageView::Clean => clean += 1,
                VantageView::Flaky => {
                    failing.insert(vantage.clone());
                }
                VantageView::Failing(seen) => {
                    failing.insert(vantage.clone());
                    evidence.push(seen);
                }
            }
        }
        let region = region.clone();
        if evidence.len() >= self.config.quorum {
            return vec![Verdict::Outage {
                region,
                vantages: evidence.iter().map(|seen| seen.vantage.clone()).collect(),
                evidence,
            }];
        }
        let dependency_outages = self.dependency_outages(&region, fresh);
        if !dependency_outages.is_empty() {
            dependency_outages
        } else if failing.is_empty() && clean >= self.config.quorum {
            vec![Verdict::Healthy { region }]
        } else {
            vec![Verdict::Suspect {
                region,
                failing,
                silent,
            }]
        }
    }

    /// One `DependencyOutage` per critical dependency that a quorum sees failing.
    fn dependency_outages(
        &self,
        region: &RegionId,
        fresh: &BTreeMap<&VantageId, Vec<&Sample>>,
    ) -> Vec<Verdict> {
        self.config
            .critical_dependencies
            .iter()
            .filter_map(|(dependency, service_class)| {
                let vantages: BTreeSet<VantageId> = fresh
                    .iter()
                    .filter(|(vantage, samples)| {
                        // Only probes that reported the dependency say anything about it.
                        let failures = samples.iter().filter_map(|sample| {
                            sample
                                .critical
                                .get(dependency)
                                .map(|status| *status == DependencyStatus::Failed)
                        });
                        matches!(self.view(vantage, failures), VantageView::Failing(_))
                    })
                    .map(|(&vantage, _)| vantage.clone())
                    .collect();
                (vantages.len() >= self.config.quorum).then(|| Verdict::DependencyOutage {
                    region: region.clone(),
                    dependency: dependency.clone(),
                    service_class: service_class.clone(),
                    vantages,
                })
            })
            .collect()
    }

    /// Applies the failure rule to one vantage point's fresh probes (`true` = failed), oldest
    /// first.
    fn view(&self, vantage: &VantageId, failures: impl Iterator<Item = bool>) -> VantageView {
        let (mut samples, mut failed_samples, mut consecutive_failures) = (0, 0, 0);
        for failed in failures {
            samples += 1;
            if failed {
                failed_samples += 1;
                consecutive_failures += 1;
            } else {
                consecutive_failures = 0;
            }
        }
        let rule = if consecutive_failures >= self.config.consecutive_failures {
            Some(FailureRule::ConsecutiveFailures)
        } else if samples >= self.config.min_samples
            && failed_samples as f64 > self.config.loss_threshold * samples as f64
        {
            Some(FailureRule::LossFraction)
        } else {
            None
        };
        match rule {
            Some(rule) => VantageView::Failing(Evidence {
                vantage: vantage.clone(),
                rule,
                failed_samples,
                samples,
                consecutive_failures,
            }),
            None if samples == 0 => VantageView::Silent,
            None if failed_samples == 0 => VantageView::Clean,
            None => VantageView::Flaky,
        }
    }
}
