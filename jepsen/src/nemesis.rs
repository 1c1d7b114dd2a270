//! The nemesis as data: a fault schedule generated from a seed, what each fault does to links and
//! processes, and the fault windows a recorded history shows.
//!
//! Invariant: a schedule is a pure function of its [`ScheduleConfig`] (seed included) — ChaCha8,
//! whose stream is fixed by its specification — so a run's `nemesis.json` replays exactly. Faults
//! never overlap and every one ends (is healed) within the time limit, which is what lets the
//! report attribute anomalies to one fault. Node ids are `1..=nodes`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs;
use std::io;
use std::path::Path;

use arbiter_core::NodeId;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::history::{History, OpIndex, F};

/// One fault. Targets chosen at run time (the leader, the lease holder) stay symbolic, so the
/// schedule does not depend on how the run unfolds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Fault {
    /// Cut the current Raft leader off from every other node, both ways.
    PartitionIsolateLeader,
    /// Cut `minority` off from the other nodes, both ways.
    PartitionMajorityMinority { minority: Vec<NodeId> },
    /// Drop traffic from `from` to `to` only; `to` → `from` still flows.
    OneWay { from: NodeId, to: NodeId },
    /// `left` and `right` cannot reach each other; `bridge` reaches both.
    Bridge {
        bridge: NodeId,
        left: Vec<NodeId>,
        right: Vec<NodeId>,
    },
    /// `kill -9` one node; healing restarts it.
    Kill9 { node: NodeId },
    /// `SIGSTOP` one node; healing sends `SIGCONT`.
    Pause { node: NodeId },
    /// `SIGSTOP` the client holding the write lease, past its deadline; healing resumes it. The
    /// classic stale-writer scenario the fenced resource must stop.
    PauseLeaseHolder,
    /// `kill -9` every node; healing restarts them all (whole-cluster restart).
    KillAll,
    /// `kill -9` `nodes` and drop every write their data dirs (on lazyfs) did not fsync, as
    /// a power loss would; healing restarts them.
    LoseUnsynced { nodes: Vec<NodeId> },
    /// [`Fault::LoseUnsynced`] on every node at once: a whole-cluster power loss, the fault
    /// that exposes acknowledged writes which were never on stable storage.
    LoseUnsyncedAll,
    /// Ask the leader to hand leadership to `to` (`POST /v1/cluster/leader`), at whatever moment
    /// the schedule says — a planned move must keep every lease rule exactly as a crash does.
    /// Nothing to heal.
    MoveLeader { to: NodeId },
    /// Several faults at once; healing undoes all of them.
    Combined { faults: Vec<Fault> },
}

impl Fault {
    /// Whether every node is killed, so the heal is a whole-cluster restart.
    pub fn restarts_whole_cluster(&self) -> bool {
        match self {
            Fault::KillAll | Fault::LoseUnsyncedAll => true,
            Fault::Combined { faults } => faults.iter().any(Fault::restarts_whole_cluster),
            _ => false,
        }
    }

    /// What the runner must do to apply this fault, given the current leader. Healing undoes
    /// all of it: links restored, killed nodes restarted, paused processes resumed.
    pub fn effects(&self, nodes: usize, leader: NodeId) -> Effects {
        let all = node_ids(nodes);
        let mut effects = Effects::default();
        match self {
            Fault::PartitionIsolateLeader => effects.cut_between(&[leader], &all),
            Fault::PartitionMajorityMinority { minority } => effects.cut_between(minority, &all),
            Fault::OneWay { from, to } => {
                effects.cut.insert(Link {
                    from: *from,
                    to: *to,
                });
            }
            Fault::Bridge { left, right, .. } => effects.cut_between(left, right),
            Fault::Kill9 { node } => {
                effects.kill.insert(*node);
            }
            Fault::Pause { node } => {
                effects.pause.insert(*node);
            }
            Fault::PauseLeaseHolder => effects.pause_lease_holder = true,
            Fault::KillAll => effects.kill.extend(all.iter().copied()),
            Fault::LoseUnsynced { nodes } => {
                effects.kill.extend(nodes.iter().copied());
                effects.lose_unsynced.extend(nodes.iter().copied());
            }
            Fault::MoveLeader { to } => effects.move_leader_to = Some(*to),
            Fault::LoseUnsyncedAll => {
                effects.kill.extend(all.iter().copied());
                effects.lose_unsynced.extend(all.iter().copied());
            }
            Fault::Combined { faults } => {
                for fault in faults {
                    effects.merge(fault.effects(nodes, leader));
                }
            }
        }
        effects
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::PartitionIsolateLeader => f.write_str("isolate-leader"),
            Fault::PartitionMajorityMinority { minority } => {
                write!(f, "majority-minority(minority {minority:?})")
            }
            Fault::OneWay { from, to } => write!(f, "one-way(n{from}->n{to})"),
            Fault::Bridge {
                bridge,
                left,
                right,
            } => write!(f, "bridge(n{bridge} joins {left:?}|{right:?})"),
            Fault::Kill9 { node } => write!(f, "kill9(n{node})"),
            Fault::Pause { node } => write!(f, "pause(n{node})"),
            Fault::PauseLeaseHolder => f.write_str("pause-lease-holder"),
            Fault::KillAll => f.write_str("kill-all"),
            Fault::LoseUnsynced { nodes } => write!(f, "lose-unsynced({nodes:?})"),
            Fault::LoseUnsyncedAll => f.write_str("lose-unsynced(all)"),
            Fault::MoveLeader { to } => write!(f, "move-leader(to n{to})"),
            Fault::Combined { faults } => {
                for (i, fault) in faults.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" + ")?;
                    }
                    write!(f, "{fault}")?;
                }
                Ok(())
            }
        }
    }
}

/// A directed link: traffic from `from` to `to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Link {
    pub from: NodeId,
    pub to: NodeId,
}

/// A fault resolved to concrete actions.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Effects {
    /// Directed links whose traffic is dropped.
    pub cut: BTreeSet<Link>,
    pub kill: BTreeSet<NodeId>,
    pub pause: BTreeSet<NodeId>,
    pub pause_lease_holder: bool,
    /// Killed nodes whose lazyfs then crashes (drops unsynced writes) before the restart.
    pub lose_unsynced: BTreeSet<NodeId>,
    /// Leadership is asked to move to this node.
    pub move_leader_to: Option<NodeId>,
}

impl Effects {
    /// Cuts both directions between every node of `side` and every node of `others` not in it.
    fn cut_between(&mut self, side: &[NodeId], others: &[NodeId]) {
        for &a in side {
            for &b in others.iter().filter(|b| !side.contains(b)) {
                self.cut.insert(Link { from: a, to: b });
                self.cut.insert(Link { from: b, to: a });
            }
        }
    }

    fn merge(&mut self, other: Effects) {
        self.cut.extend(other.cut);
        self.kill.extend(other.kill);
        self.pause.extend(other.pause);
        self.pause_lease_holder |= other.pause_lease_holder;
        self.lose_unsynced.extend(other.lose_unsynced);
        self.move_leader_to = self.move_leader_to.or(other.move_leader_to);
    }
}

fn node_ids(nodes: usize) -> Vec<NodeId> {
    (1..=nodes as NodeId).collect()
}

/// The fault families a schedule may draw from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    IsolateLeader,
    MajorityMinority,
    OneWay,
    Bridge,
    Kill9,
    Pause,
    PauseLeaseHolder,
    KillAll,
    LoseUnsynced,
    MoveLeader,
}

impl FaultKind {
    pub const ALL: [FaultKind; 10] = [
        FaultKind::IsolateLeader,
        FaultKind::MajorityMinority,
        FaultKind::OneWay,
        FaultKind::Bridge,
        FaultKind::Kill9,
        FaultKind::Pause,
        FaultKind::PauseLeaseHolder,
        FaultKind::KillAll,
        FaultKind::LoseUnsynced,
        FaultKind::MoveLeader,
    ];

    /// The name `--nemesis` takes for this kind.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::IsolateLeader => "isolate-leader",
            FaultKind::MajorityMinority => "majority-minority",
            FaultKind::OneWay => "one-way",
            FaultKind::Bridge => "bridge",
            FaultKind::Kill9 => "kill9",
            FaultKind::Pause => "pause-node",
            FaultKind::PauseLeaseHolder => "pause-lease-holder",
            FaultKind::KillAll => "kill-all",
            FaultKind::LoseUnsynced => "lose-unsynced",
            FaultKind::MoveLeader => "move-leader",
        }
    }

    /// Whether the group `all` includes it: every kind but `lose-unsynced`, which needs root
    /// and /dev/fuse (the data dirs live on lazyfs), and `move-leader`, which is no failure
    /// and would change the seeded schedules of `all`; both run only when named.
    fn in_all(self) -> bool {
        !matches!(self, FaultKind::LoseUnsynced | FaultKind::MoveLeader)
    }

    /// The kinds of the group `all`.
    pub fn all() -> Vec<FaultKind> {
        FaultKind::ALL.into_iter().filter(|k| k.in_all()).collect()
    }

    /// Reads a comma-separated `--nemesis` list of kind names and groups (`all`, `partition`,
    /// `kill`, `pause`, `none`) into kinds, in [`FaultKind::ALL`] order without repeats.
    pub fn parse_list(list: &str) -> Result<Vec<FaultKind>, UnknownNemesis> {
        use FaultKind as K;
        let mut chosen = BTreeSet::new();
        for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let kinds: Vec<FaultKind> = match name {
                "all" => K::all(),
                "none" => Vec::new(),
                "partition" => vec![K::IsolateLeader, K::MajorityMinority, K::OneWay, K::Bridge],
                "kill" => vec![K::Kill9, K::KillAll],
                "pause" => vec![K::Pause, K::PauseLeaseHolder],
                other => match K::ALL.into_iter().find(|k| k.name() == other) {
                    Some(kind) => vec![kind],
                    None => {
                        return Err(UnknownNemesis {
                            name: other.to_string(),
                        })
                    }
                },
            };
            chosen.extend(kinds);
        }
        Ok(K::ALL.into_iter().filter(|k| chosen.contains(k)).collect())
    }

    fn is_network(self) -> bool {
        matches!(
            self,
            FaultKind::IsolateLeader
                | FaultKind::MajorityMinority
                | FaultKind::OneWay
                | FaultKind::Bridge
        )
    }

    /// A single process fault that can ride along with a partition (kill-all cannot: it
    /// leaves nothing to partition).
    fn is_combinable_process(self) -> bool {
        matches!(
            self,
            FaultKind::Kill9
                | FaultKind::Pause
                | FaultKind::PauseLeaseHolder
                | FaultKind::MoveLeader
        )
    }

    fn draw(self, nodes: usize, rng: &mut ChaCha8Rng) -> Fault {
        let mut shuffled = node_ids(nodes);
        shuffled.shuffle(rng);
        let sorted = |mut v: Vec<NodeId>| {
            v.sort_unstable();
            v
        };
        match self {
            FaultKind::IsolateLeader => Fault::PartitionIsolateLeader,
            FaultKind::MajorityMinority => Fault::PartitionMajorityMinority {
                minority: sorted(shuffled[..(nodes - 1) / 2].to_vec()),
            },
            FaultKind::OneWay => Fault::OneWay {
                from: shuffled[0],
                to: shuffled[1],
            },
            FaultKind::Bridge => {
                let half = 1 + (nodes - 1) / 2;
                Fault::Bridge {
                    bridge: shuffled[0],
                    left: sorted(shuffled[1..half].to_vec()),
                    right: sorted(shuffled[half..].to_vec()),
                }
            }
            FaultKind::Kill9 => Fault::Kill9 { node: shuffled[0] },
            FaultKind::Pause => Fault::Pause { node: shuffled[0] },
            FaultKind::PauseLeaseHolder => Fault::PauseLeaseHolder,
            FaultKind::KillAll => Fault::KillAll,
            FaultKind::MoveLeader => Fault::MoveLeader { to: shuffled[0] },
            // Half the time every node at once (what can lose acknowledged writes), otherwise
            // one node up to a minority (what a quorum must ride out).
            FaultKind::LoseUnsynced if rng.random_bool(0.5) => Fault::LoseUnsyncedAll,
            FaultKind::LoseUnsynced => {
                let count = rng.random_range(1..=((nodes - 1) / 2).max(1));
                Fault::LoseUnsynced {
                    nodes: sorted(shuffled[..count].to_vec()),
                }
            }
        }
    }
}

/// A `--nemesis` name that is neither a kind nor a group.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown nemesis {name:?}: expected all, none, partition, kill, pause, or one of \
     isolate-leader, majority-minority, one-way, bridge, kill9, pause-node, pause-lease-holder, \
     kill-all, lose-unsynced, move-leader"
)]
pub struct UnknownNemesis {
    pub name: String,
}

/// Everything a schedule is generated from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScheduleConfig {
    pub seed: u64,
    /// Nodes are `1..=nodes`.
    pub nodes: usize,
    /// Every fault is healed by then.
    pub time_limit_ms: u64,
    /// Fault duration range, inclusive.
    pub fault_ms: (u64, u64),
    /// Quiet time before each fault (recovery of the previous one), inclusive.
    pub quiet_ms: (u64, u64),
    pub kinds: Vec<FaultKind>,
    /// Chance that a fault is a partition plus a process fault at once.
    pub combine_probability: f64,
}

impl ScheduleConfig {
    /// The kinds of `all`, faults of 5–20 s separated by 5–15 s of quiet, one in five combined.
    pub fn new(seed: u64, nodes: usize, time_limit_ms: u64) -> ScheduleConfig {
        ScheduleConfig {
            seed,
            nodes,
            time_limit_ms,
            fault_ms: (5_000, 20_000),
            quiet_ms: (5_000, 15_000),
            kinds: FaultKind::all(),
            combine_probability: 0.2,
        }
    }

    pub fn validate(&self) -> Result<(), ScheduleConfigError> {
        use ScheduleConfigError as E;
        if self.nodes < 3 {
            return Err(E::TooFewNodes { nodes: self.nodes });
        }
        for (name, (min, max)) in [("fault_ms", self.fault_ms), ("quiet_ms", self.quiet_ms)] {
            if min > max {
                return Err(E::EmptyRange { name, min, max });
            }
        }
        if self.fault_ms.0 == 0 {
            return Err(E::ZeroLengthFault);
        }
        if self.kinds.is_empty() {
            return Err(E::NoKinds);
        }
        if !(0.0..=1.0).contains(&self.combine_probability) {
            return Err(E::Probability {
                value: self.combine_probability,
            });
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ScheduleConfigError {
    #[error("{nodes} nodes: partitions and bridges need at least 3")]
    TooFewNodes { nodes: usize },
    #[error("{name} range {min}..={max} is empty")]
    EmptyRange {
        name: &'static str,
        min: u64,
        max: u64,
    },
    #[error("fault_ms must be above 0: a fault that is healed at once tests nothing")]
    ZeroLengthFault,
    #[error("no fault kinds to draw from")]
    NoKinds,
    #[error("combine_probability {value} is not within 0..=1")]
    Probability { value: f64 },
}

/// A fault at a fixed offset from the run start, healed `duration_ms` later.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduledFault {
    /// Names the fault in the history (`key` of its `nemesis` and `heal` ops).
    pub id: String,
    pub start_ms: u64,
    pub duration_ms: u64,
    pub fault: Fault,
}

impl ScheduledFault {
    pub fn heal_ms(&self) -> u64 {
        self.start_ms + self.duration_ms
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    pub config: ScheduleConfig,
    pub faults: Vec<ScheduledFault>,
}

impl Schedule {
    pub fn generate(config: ScheduleConfig) -> Result<Schedule, ScheduleConfigError> {
        config.validate()?;
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
        let network: Vec<FaultKind> = config
            .kinds
            .iter()
            .copied()
            .filter(|k| k.is_network())
            .collect();
        let process: Vec<FaultKind> = config
            .kinds
            .iter()
            .copied()
            .filter(|k| k.is_combinable_process())
            .collect();
        let mut faults = Vec::new();
        let mut at = rng.random_range(config.quiet_ms.0..=config.quiet_ms.1);
        loop {
            let duration_ms = rng.random_range(config.fault_ms.0..=config.fault_ms.1);
            if at + duration_ms > config.time_limit_ms {
                break;
            }
            let combined = rng.random_bool(config.combine_probability);
            let fault = match (network.choose(&mut rng), process.choose(&mut rng)) {
                (Some(n), Some(p)) if combined => Fault::Combined {
                    faults: vec![
                        n.draw(config.nodes, &mut rng),
                        p.draw(config.nodes, &mut rng),
                    ],
                },
                // `validate` ensured `kinds` is not empty.
                _ => match config.kinds.choose(&mut rng) {
                    Some(kind) => kind.draw(config.nodes, &mut rng),
                    None => break,
                },
            };
            faults.push(ScheduledFault {
                id: format!("f{}", faults.len()),
                start_ms: at,
                duration_ms,
                fault,
            });
            at += duration_ms + rng.random_range(config.quiet_ms.0..=config.quiet_ms.1);
        }
        Ok(Schedule { config, faults })
    }

    /// A schedule without faults (`--nemesis none`): the workloads alone, as a baseline.
    pub fn quiet(config: ScheduleConfig) -> Schedule {
        Schedule {
            config,
            faults: Vec::new(),
        }
    }

    /// Makes sure `fault` is scheduled for at least `min_duration_ms`, so that a negative
    /// control does not depend on the seed drawing the fault that creates its conditions. The
    /// forced fault takes the first fault's place (its start, its id), or starts after the
    /// shortest quiet time in an empty schedule; faults it would overlap are dropped, and it
    /// is cut short rather than run past the time limit. Still a pure function of the config.
    pub fn ensure(&mut self, fault: Fault, min_duration_ms: u64) {
        if self
            .faults
            .iter()
            .any(|f| f.fault == fault && f.duration_ms >= min_duration_ms)
        {
            return;
        }
        let limit = self.config.time_limit_ms;
        let first = self.faults.first();
        let start_ms = first
            .map_or(self.config.quiet_ms.0, |f| f.start_ms)
            .min(limit.saturating_sub(min_duration_ms));
        let duration_ms = first
            .map_or(min_duration_ms, |f| f.duration_ms.max(min_duration_ms))
            .min(limit - start_ms);
        let forced = ScheduledFault {
            id: "f0".to_string(),
            start_ms,
            duration_ms,
            fault,
        };
        let heal_ms = forced.heal_ms();
        // "f0" is free: it was the first fault's id, and that fault is replaced.
        self.faults.retain(|f| f.id != "f0" && f.start_ms > heal_ms);
        self.faults.insert(0, forced);
    }

    /// Writes `nemesis.json` (the replayable schedule) into the run directory.
    pub fn write(&self, run_dir: &Path) -> io::Result<()> {
        let json = serde_json::to_string_pretty(self)?;
        fs::write(run_dir.join("nemesis.json"), json + "\n")
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "nemesis schedule: seed {}, {} nodes, {} ms",
            self.config.seed, self.config.nodes, self.config.time_limit_ms
        )?;
        for s in &self.faults {
            writeln!(
                f,
                "  {:>4}  {:>8} ms .. {:>8} ms  {}",
                s.id,
                s.start_ms,
                s.heal_ms(),
                s.fault
            )?;
        }
        Ok(())
    }
}

/// A fault as the history shows it: from its `nemesis` invoke to its `heal` completing.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NemesisWindow {
    pub id: String,
    pub fault: Fault,
    pub started: OpIndex,
    pub started_ns: u64,
    /// The `heal` call's `ok` completion; `None` if the heal never completed.
    pub healed: Option<OpIndex>,
    pub healed_ns: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum WindowError {
    #[error("nemesis op {op}: value is not a fault: {source}")]
    InvalidFault {
        op: OpIndex,
        source: serde_json::Error,
    },
    #[error("heal op {op} for {id:?}, which never started")]
    HealWithoutFault { op: OpIndex, id: String },
    #[error("nemesis op {op} reuses fault id {id:?}")]
    DuplicateId { op: OpIndex, id: String },
}

impl NemesisWindow {
    /// The fault windows of a history, in start order.
    pub fn from_history(history: &History) -> Result<Vec<NemesisWindow>, WindowError> {
        let mut windows: Vec<NemesisWindow> = Vec::new();
        let mut by_id: BTreeMap<&str, usize> = BTreeMap::new();
        for call in history.calls().iter().filter(|c| c.f().is_nemesis()) {
            let id = call.key();
            if call.f() == F::Nemesis {
                let fault =
                    serde_json::from_value(call.invoke.value.clone()).map_err(|source| {
                        WindowError::InvalidFault {
                            op: call.id(),
                            source,
                        }
                    })?;
                if by_id.insert(id, windows.len()).is_some() {
                    return Err(WindowError::DuplicateId {
                        op: call.id(),
                        id: id.to_string(),
                    });
                }
                windows.push(NemesisWindow {
                    id: id.to_string(),
                    fault,
                    started: call.id(),
                    started_ns: call.invoke.time_ns,
                    healed: None,
                    healed_ns: None,
                });
                continue;
            }
            let Some(&w) = by_id.get(id) else {
                return Err(WindowError::HealWithoutFault {
                    op: call.id(),
                    id: id.to_string(),
                });
            };
            if let Some(ok) = call.ok() {
                windows[w].healed = Some(ok.index);
                windows[w].healed_ns = Some(ok.time_ns);
            }
        }
        Ok(windows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{Op, OpType, Process};
    use crate::testkit::Script;

    fn config(seed: u64) -> ScheduleConfig {
        ScheduleConfig::new(seed, 3, 600_000)
    }

    #[test]
    fn same_seed_replays_the_same_schedule() {
        let a = Schedule::generate(config(7)).unwrap();
        let b = Schedule::generate(config(7)).unwrap();
        let c = Schedule::generate(config(8)).unwrap();
        assert_eq!(a, b);
        assert_ne!(a.faults, c.faults);
        let dir = tempfile::tempdir().unwrap();
        a.write(dir.path()).unwrap();
        let json = std::fs::read_to_string(dir.path().join("nemesis.json")).unwrap();
        assert_eq!(
            serde_json::from_str::<Schedule>(&json).unwrap(),
            a,
            "replayable from file"
        );
    }

    #[test]
    fn faults_are_disjoint_within_the_limit_and_name_real_nodes() {
        for seed in 0..50 {
            let s = Schedule::generate(config(seed)).unwrap();
            assert!(!s.faults.is_empty());
            for pair in s.faults.windows(2) {
                assert!(pair[0].heal_ms() < pair[1].start_ms, "seed {seed}: overlap");
            }
            for f in &s.faults {
                assert!(f.heal_ms() <= 600_000);
                let effects = f.fault.effects(3, 1);
                let named = effects
                    .cut
                    .iter()
                    .flat_map(|l| [l.from, l.to])
                    .chain(effects.kill.iter().copied())
                    .chain(effects.pause.iter().copied());
                for node in named {
                    assert!((1..=3).contains(&node), "seed {seed}: node {node}");
                }
            }
        }
    }

    #[test]
    fn every_kind_and_combinations_appear_over_enough_seeds() {
        let mut kinds = std::collections::HashSet::new();
        let mut combined = 0;
        for seed in 0..50 {
            for f in Schedule::generate(config(seed)).unwrap().faults {
                if let Fault::Combined { faults } = &f.fault {
                    combined += 1;
                    assert_eq!(faults.len(), 2);
                    assert!(!f.fault.restarts_whole_cluster());
                }
                kinds.insert(std::mem::discriminant(&f.fault));
            }
        }
        assert_eq!(kinds.len(), 9, "8 kinds plus combinations");
        assert!(combined > 0);
    }

    #[test]
    fn lose_unsynced_hits_single_nodes_minorities_and_the_whole_cluster() {
        let (mut single, mut whole, mut minority_of_five) = (0, 0, 0);
        for seed in 0..30 {
            for nodes in [3, 5] {
                let mut c = ScheduleConfig::new(seed, nodes, 120_000);
                c.kinds = vec![FaultKind::LoseUnsynced];
                for f in Schedule::generate(c).unwrap().faults {
                    let effects = f.fault.effects(nodes, 1);
                    assert_eq!(effects.kill, effects.lose_unsynced, "{}", f.fault);
                    match &f.fault {
                        Fault::LoseUnsyncedAll => {
                            assert!(f.fault.restarts_whole_cluster());
                            assert_eq!(effects.kill.len(), nodes);
                            whole += 1;
                        }
                        Fault::LoseUnsynced { nodes: hit } => {
                            assert!(!f.fault.restarts_whole_cluster());
                            assert!(hit.len() <= (nodes - 1) / 2, "a quorum survives");
                            single += usize::from(hit.len() == 1);
                            minority_of_five += usize::from(hit.len() == 2);
                        }
                        other => panic!("drew {other}"),
                    }
                }
            }
        }
        assert!(single > 0 && whole > 0 && minority_of_five > 0);
    }

    #[test]
    fn invalid_configs_are_refused() {
        let mut c = config(1);
        c.nodes = 2;
        assert_eq!(
            Schedule::generate(c).unwrap_err(),
            ScheduleConfigError::TooFewNodes { nodes: 2 }
        );
        let mut c = config(1);
        c.fault_ms = (10, 5);
        assert!(matches!(
            c.validate(),
            Err(ScheduleConfigError::EmptyRange {
                name: "fault_ms",
                ..
            })
        ));
    }

    #[test]
    fn nemesis_names_parse_into_kinds() {
        use FaultKind as K;
        assert_eq!(FaultKind::parse_list("all").unwrap(), K::ALL[..8].to_vec());
        assert_eq!(
            FaultKind::parse_list("lose-unsynced,kill9,kill-all").unwrap(),
            vec![K::Kill9, K::KillAll, K::LoseUnsynced]
        );
        assert_eq!(
            FaultKind::parse_list("kill, pause-lease-holder,kill9").unwrap(),
            vec![K::Kill9, K::PauseLeaseHolder, K::KillAll]
        );
        assert_eq!(FaultKind::parse_list("none").unwrap(), vec![]);
        assert_eq!(
            FaultKind::parse_list("partition,clock").unwrap_err(),
            UnknownNemesis {
                name: "clock".into()
            }
        );
        for kind in K::ALL {
            assert_eq!(FaultKind::parse_list(kind.name()).unwrap(), vec![kind]);
        }
    }

    #[test]
    fn ensure_forces_a_fault_without_breaking_the_schedule_invariants() {
        for seed in 0..20 {
            let mut s = Schedule::generate(ScheduleConfig::new(seed, 3, 60_000)).unwrap();
            s.ensure(Fault::PauseLeaseHolder, 12_000);
            let forced: Vec<_> = s
                .faults
                .iter()
                .filter(|f| f.fault == Fault::PauseLeaseHolder && f.duration_ms >= 12_000)
                .collect();
            assert!(!forced.is_empty(), "seed {seed}: {s}");
            for pair in s.faults.windows(2) {
                assert!(pair[0].heal_ms() < pair[1].start_ms, "seed {seed}: overlap");
            }
            let ids: BTreeSet<&str> = s.faults.iter().map(|f| f.id.as_str()).collect();
            assert_eq!(ids.len(), s.faults.len(), "seed {seed}: ids unique");
            assert!(s.faults.iter().all(|f| f.heal_ms() <= 60_000));
        }
        // Too short for any drawn fault: the forced one still fits.
        let mut s = Schedule::generate(ScheduleConfig::new(1, 3, 9_000)).unwrap();
        s.ensure(Fault::PauseLeaseHolder, 6_000);
        assert_eq!(s.faults.len(), 1);
        assert!(s.faults[0].heal_ms() <= 9_000);
    }

    #[test]
    fn effects_cut_the_right_links() {
        let link = |from, to| Link { from, to };
        let isolate = Fault::PartitionIsolateLeader.effects(3, 2);
        assert_eq!(
            isolate.cut,
            BTreeSet::from([link(2, 1), link(1, 2), link(2, 3), link(3, 2)])
        );
        let one_way = Fault::OneWay { from: 1, to: 3 }.effects(3, 1);
        assert_eq!(one_way.cut, BTreeSet::from([link(1, 3)]));
        let bridge = Fault::Bridge {
            bridge: 2,
            left: vec![1],
            right: vec![3],
        }
        .effects(3, 1);
        assert_eq!(bridge.cut, BTreeSet::from([link(1, 3), link(3, 1)]));
        let five = Fault::PartitionMajorityMinority {
            minority: vec![4, 5],
        }
        .effects(5, 1);
        assert_eq!(five.cut.len(), 2 * 2 * 3);
        let all = Fault::Combined {
            faults: vec![Fault::KillAll, Fault::Pause { node: 1 }],
        };
        assert!(all.restarts_whole_cluster());
        assert_eq!(all.effects(3, 1).kill, BTreeSet::from([1, 2, 3]));
    }

    #[test]
    fn windows_pair_faults_with_their_heals() {
        let mut s = Script::default();
        let fault = serde_json::to_value(Fault::KillAll).unwrap();
        let start = s.op(Op::invoke(Process::Nemesis, F::Nemesis, "f0", fault), 100);
        s.op(start.complete(OpType::Ok, serde_json::Value::Null), 110);
        let heal = s.op(
            Op::invoke(Process::Nemesis, F::Heal, "f0", serde_json::Value::Null),
            500,
        );
        let healed = s.op(heal.complete(OpType::Ok, serde_json::Value::Null), 900);
        let windows = NemesisWindow::from_history(&s.history()).unwrap();
        assert_eq!(
            windows,
            vec![NemesisWindow {
                id: "f0".into(),
                fault: Fault::KillAll,
                started: start.index,
                started_ns: 100,
                healed: Some(healed.index),
                healed_ns: Some(900),
            }]
        );

        let mut orphan = Script::default();
        orphan.op(
            Op::invoke(Process::Nemesis, F::Heal, "f9", serde_json::Value::Null),
            0,
        );
        assert!(matches!(
            NemesisWindow::from_history(&orphan.history()),
            Err(WindowError::HealWithoutFault { .. })
        ));
    }
}
