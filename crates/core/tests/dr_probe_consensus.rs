//! Outage consensus: only a quorum of vantage points (by default all three) declares an outage,
//! stale reports count as nothing, and a failed critical dependency moves only its service class.

mod dr_common;

use arbiter_core::probe_consensus::{
    ConsensusConfig, ConsensusConfigError, DependencyName, DependencyStatus, FailureRule,
    ProbeConsensus, ProbeError, ProbeReport, ServiceClass, VantageId, Verdict,
    MAX_SAMPLES_PER_VANTAGE,
};
use arbiter_core::region_health::HealthCommand;
use arbiter_core::MonoMillis;
use dr_common::east;
use std::collections::{BTreeMap, BTreeSet};

const INTERVAL_MS: u64 = 5_000;
const VANTAGES: [&str; 3] = ["london", "tokyo", "sydney"];

fn vantages(names: &[&str]) -> BTreeSet<VantageId> {
    names.iter().copied().map(VantageId::from).collect()
}

fn report(vantage: &str, ok: bool, at: u64) -> ProbeReport {
    ProbeReport {
        vantage: VantageId::from(vantage),
        region: east(),
        ok,
        dependencies: BTreeMap::new(),
        at: MonoMillis(at),
    }
}

/// One probe round per interval from `start`, each vantage failing iff it is in `failing`.
/// Returns the time of the last round.
fn rounds(consensus: &mut ProbeConsensus, start: u64, count: u64, failing: &[&str]) -> u64 {
    let mut at = start;
    for round in 0..count {
        at = start + round * INTERVAL_MS;
        for vantage in VANTAGES {
            consensus
                .record(report(vantage, !failing.contains(&vantage), at))
                .unwrap();
        }
    }
    at
}

fn default_consensus() -> ProbeConsensus {
    ProbeConsensus::new(ConsensusConfig::default()).unwrap()
}

#[test]
fn two_of_three_vantages_failing_is_not_an_outage() {
    let mut consensus = default_consensus();
    let now = rounds(&mut consensus, 0, 6, &["london", "tokyo"]);

    let verdicts = consensus.evaluate(MonoMillis(now));
    assert_eq!(
        verdicts,
        vec![Verdict::Suspect {
            region: east(),
            failing: vantages(&["london", "tokyo"]),
            silent: BTreeSet::new(),
        }]
    );
    assert_eq!(
        verdicts[0].health_command(),
        HealthCommand::ObserveUnhealthy { region: east() }
    );
}

#[test]
fn three_of_three_vantages_failing_is_an_outage() {
    let mut consensus = default_consensus();
    let now = rounds(&mut consensus, 0, 3, &VANTAGES);

    let verdicts = consensus.evaluate(MonoMillis(now));
    let [Verdict::Outage {
        region,
        vantages: seen_by,
        evidence,
    }] = verdicts.as_slice()
    else {
        panic!("expected one outage, got {verdicts:?}");
    };
    assert_eq!(*region, east());
    assert_eq!(*seen_by, vantages(&VANTAGES));
    assert!(evidence
        .iter()
        .all(|seen| seen.rule == FailureRule::ConsecutiveFailures
            && seen.consecutive_failures == 3
            && seen.samples == 3));
    assert_eq!(
        verdicts[0].health_command(),
        HealthCommand::MarkDown { region: east() }
    );
}

#[test]
fn fewer_consecutive_failures_than_configured_is_only_suspect() {
    let mut consensus = default_consensus();
    let now = rounds(&mut consensus, 0, 2, &VANTAGES);

    assert!(matches!(
        consensus.evaluate(MonoMillis(now)).as_slice(),
        [Verdict::Suspect { failing, .. }] if *failing == vantages(&VANTAGES)
    ));
}

#[test]
fn loss_above_threshold_over_the_window_is_an_outage_without_a_failing_streak() {
    // 9 of 10 probes failed (90% > 80%), but the newest succeeded, so no streak of three.
    let mut consensus = default_consensus();
    let interval = 3_000;
    for round in 0..10 {
        for vantage in VANTAGES {
            consensus
                .record(report(vantage, round == 9, round * interval))
                .unwrap();
        }
    }

    let verdicts = consensus.evaluate(MonoMillis(9 * interval));
    let [Verdict::Outage { evidence, .. }] = verdicts.as_slice() else {
        panic!("expected one outage, got {verdicts:?}");
    };
    assert!(evidence
        .iter()
        .all(|seen| seen.rule == FailureRule::LossFraction
            && seen.failed_samples == 9
            && seen.samples == 10
            && seen.consecutive_failures == 0));
}

#[test]
fn stale_reports_count_as_nothing() {
    let mut consensus = default_consensus();
    let last_failure = rounds(&mut consensus, 0, 3, &VANTAGES);
    assert!(matches!(
        consensus.evaluate(MonoMillis(last_failure)).as_slice(),
        [Verdict::Outage { .. }]
    ));

    // Much later, nobody has reported: silence is neither an outage nor health.
    let later = last_failure + ConsensusConfig::default().window_ms + 1;
    assert_eq!(
        consensus.evaluate(MonoMillis(later)),
        vec![Verdict::Suspect {
            region: east(),
            failing: BTreeSet::new(),
            silent: vantages(&VANTAGES),
        }]
    );

    // Fresh clean reports alone decide once the failures have aged out.
    rounds(&mut consensus, later, 1, &[]);
    assert_eq!(
        consensus.evaluate(MonoMillis(later)),
        vec![Verdict::Healthy { region: east() }]
    );
}

#[test]
fn healthy_needs_a_quorum_of_clean_vantages() {
    let mut consensus = default_consensus();
    for at in [0, INTERVAL_MS] {
        for vantage in ["london", "tokyo"] {
            consensus.record(report(vantage, true, at)).unwrap();
        }
    }

    assert_eq!(
        consensus.evaluate(MonoMillis(INTERVAL_MS)),
        vec![Verdict::Suspect {
            region: east(),
            failing: BTreeSet::new(),
            silent: vantages(&["sydney"]),
        }]
    );
}

#[test]
fn a_smaller_quorum_declares_with_fewer_vantages() {
    let config = ConsensusConfig {
        quorum: 2,
        ..ConsensusConfig::default()
    };
    let mut consensus = ProbeConsensus::new(config).unwrap();
    let now = rounds(&mut consensus, 0, 3, &["london", "tokyo"]);

    assert!(matches!(
        consensus.evaluate(MonoMillis(now)).as_slice(),
        [Verdict::Outage { vantages: seen_by, .. }] if *seen_by == vantages(&["london", "tokyo"])
    ));
}

/// Three probe rounds in which every vantage reaches the region and reports the statuses
/// `dependencies` gives it, against a config where `paymentApi` is critical for `payments`.
fn payments_consensus(
    dependencies: impl Fn(&str) -> Vec<(&'static str, &'static str)>,
) -> ProbeConsensus {
    let config = ConsensusConfig {
        critical_dependencies: BTreeMap::from([(
            DependencyName::from("paymentApi"),
            ServiceClass::from("payments"),
        )]),
        ..ConsensusConfig::default()
    };
    let mut consensus = ProbeConsensus::new(config).unwrap();
    for round in 0..3 {
        for vantage in VANTAGES {
            let dependencies = dependencies(vantage)
                .into_iter()
                .map(|(name, status)| {
                    (
                        DependencyName::from(name),
                        DependencyStatus::from_reported(status),
                    )
                })
                .collect();
            consensus
                .record(ProbeReport {
                    dependencies,
                    ..report(vantage, true, round * INTERVAL_MS)
                })
                .unwrap();
        }
    }
    consensus
}

#[test]
fn failed_critical_dependency_seen_by_quorum_shifts_only_its_service_class() {
    // The seed's scenario 4: the gateway and its database answer; the payment API is down. The
    // message broker is down too, but it is not critical.
    let consensus = payments_consensus(|_| {
        vec![
            ("primaryDatabase", "CONNECTED"),
            ("paymentApi", "DOWN"),
            ("messageBroker", "UNREACHABLE"),
        ]
    });

    let verdicts = consensus.evaluate(MonoMillis(2 * INTERVAL_MS));
    assert_eq!(
        verdicts,
        vec![Verdict::DependencyOutage {
            region: east(),
            dependency: DependencyName::from("paymentApi"),
            service_class: ServiceClass::from("payments"),
            vantages: vantages(&VANTAGES),
        }]
    );
    // Not a regional outage: the region is only held from being called healthy.
    assert_eq!(
        verdicts[0].health_command(),
        HealthCommand::ObserveUnhealthy { region: east() }
    );
}

#[test]
fn dependency_failure_seen_by_fewer_than_quorum_shifts_nothing() {
    let consensus = payments_consensus(|vantage| {
        let status = if vantage == "sydney" { "OK" } else { "DOWN" };
        vec![("paymentApi", status)]
    });

    assert_eq!(
        consensus.evaluate(MonoMillis(2 * INTERVAL_MS)),
        vec![Verdict::Healthy { region: east() }]
    );
}

#[test]
fn reports_from_unknown_vantages_are_rejected() {
    let mut consensus = default_consensus();
    assert_eq!(
        consensus.record(report("mars", false, 0)),
        Err(ProbeError::UnknownVantage {
            vantage: VantageId::from("mars"),
        })
    );
    assert!(consensus.evaluate(MonoMillis(0)).is_empty());
}

#[test]
fn reports_recorded_out_of_order_are_judged_in_time_order() {
    let mut consensus = default_consensus();
    // The failing streak arrives last but happened first; the newest probe is clean.
    for vantage in VANTAGES {
        consensus
            .record(report(vantage, true, 3 * INTERVAL_MS))
            .unwrap();
        for round in 0..3 {
            consensus
                .record(report(vantage, false, round * INTERVAL_MS))
                .unwrap();
        }
    }

    assert!(matches!(
        consensus.evaluate(MonoMillis(3 * INTERVAL_MS)).as_slice(),
        [Verdict::Suspect { .. }]
    ));
}

#[test]
fn config_is_validated() {
    assert_eq!(ConsensusConfig::default().validate(), Ok(()));
    let invalid = [
        (
            ConsensusConfig {
                vantages: BTreeSet::new(),
                ..ConsensusConfig::default()
            },
            ConsensusConfigError::NoVantages,
        ),
        (
            ConsensusConfig {
                quorum: 4,
                ..ConsensusConfig::default()
            },
            ConsensusConfigError::QuorumOutOfRange {
                quorum: 4,
                vantages: 3,
            },
        ),
        (
            ConsensusConfig {
                window_ms: 0,
                ..ConsensusConfig::default()
            },
            ConsensusConfigError::ZeroWindow,
        ),
        (
            ConsensusConfig {
                loss_threshold: 1.0,
                ..ConsensusConfig::default()
            },
            ConsensusConfigError::LossThresholdOutOfRange { threshold: 1.0 },
        ),
        (
            ConsensusConfig {
                loss_threshold: 0.0,
                ..ConsensusConfig::default()
            },
            ConsensusConfigError::LossThresholdOutOfRange { threshold: 0.0 },
        ),
    ];
    for (config, error) in invalid {
        assert_eq!(ProbeConsensus::new(config).unwrap_err(), error);
    }
}

#[test]
fn dependency_statuses_are_read_from_the_seed_health_check() {
    for good in ["CONNECTED", "OK", "ok", "HEALTHY"] {
        assert_eq!(DependencyStatus::from_reported(good), DependencyStatus::Ok);
    }
    for bad in ["DISCONNECTED", "DOWN", "DEGRADED", ""] {
        assert_eq!(
            DependencyStatus::from_reported(bad),
            DependencyStatus::Failed
        );
    }
}

#[test]
fn the_consensus_keeps_the_config_it_was_given() {
    let config = ConsensusConfig {
        quorum: 2,
        window_ms: 12_345,
        ..ConsensusConfig::default()
    };
    assert_eq!(
        ProbeConsensus::new(config.clone()).unwrap().config(),
        &config
    );
}

#[test]
fn verdicts_are_named_as_metrics_label_them() {
    let region = east();
    let names: Vec<&str> = [
        Verdict::Healthy {
            region: region.clone(),
        },
        Verdict::Suspect {
            region: region.clone(),
            failing: BTreeSet::new(),
            silent: BTreeSet::new(),
        },
        Verdict::Outage {
            region: region.clone(),
            vantages: BTreeSet::new(),
            evidence: Vec::new(),
        },
    ]
    .iter()
    .map(Verdict::name)
    .collect();
    assert_eq!(names, ["healthy", "suspect", "outage"]);
}

#[test]
fn samples_are_bounded_by_count_and_by_window() {
    // A flood of reports with one timestamp (all inside the window) keeps the newest
    // MAX_SAMPLES_PER_VANTAGE.
    let mut consensus = default_consensus();
    for _ in 0..MAX_SAMPLES_PER_VANTAGE + 100 {
        consensus.record(report("london", true, 1_000)).unwrap();
    }
    assert_eq!(consensus.retained_samples(), MAX_SAMPLES_PER_VANTAGE);

    // A report past the window behind the newest drops the older ones.
    let mut consensus = default_consensus();
    let window = consensus.config().window_ms;
    for at in [0, 1, 2] {
        consensus.record(report("tokyo", false, at)).unwrap();
    }
    assert_eq!(consensus.retained_samples(), 3);
    consensus
        .record(report("tokyo", true, 2 + window + 1))
        .unwrap();
    assert_eq!(consensus.retained_samples(), 1);
}

#[test]
fn a_loss_exactly_at_the_threshold_is_not_yet_an_outage() {
    // The streak rule out of the way: only the loss fraction can declare.
    let config = ConsensusConfig {
        consecutive_failures: 10,
        min_samples: 4,
        loss_threshold: 0.5,
        ..ConsensusConfig::default()
    };
    let mut consensus = ProbeConsensus::new(config).unwrap();
    let mut at = 0;
    for ok in [false, true, false, true] {
        for vantage in VANTAGES {
            consensus.record(report(vantage, ok, at)).unwrap();
        }
        at += INTERVAL_MS;
    }
    let now = MonoMillis(at - INTERVAL_MS);
    assert!(
        matches!(consensus.evaluate(now)[..], [Verdict::Suspect { .. }]),
        "2 of 4 failed, exactly the threshold: {:?}",
        consensus.evaluate(now)
    );
    for vantage in VANTAGES {
        consensus.record(report(vantage, false, at)).unwrap();
    }
    assert!(
        matches!(
            consensus.evaluate(MonoMillis(at))[..],
            [Verdict::Outage { .. }]
        ),
        "3 of 5 failed, above it: {:?}",
        consensus.evaluate(MonoMillis(at))
    );
}

#[test]
fn a_sample_exactly_a_window_old_is_kept() {
    let mut consensus = default_consensus();
    let window = consensus.config().window_ms;
    consensus.record(report("sydney", true, 0)).unwrap();
    consensus.record(report("sydney", true, window)).unwrap();
    assert_eq!(
        consensus.retained_samples(),
        2,
        "the first is exactly a window old"
    );
    consensus
        .record(report("sydney", true, window + 1))
        .unwrap();
    assert_eq!(
        consensus.retained_samples(),
        2,
        "the first is now older than the window"
    );
}
