//! Carries out a nemesis [`Schedule`] on the running cluster and the lease holders, and records
//! every fault and heal in the history.
//!
//! Invariant: a fault's `nemesis` op is invoked before the fault takes effect and its value is
//! the scheduled [`Fault`], so the history reads back as the same fault windows; the
//! completion says what was actually done (the leader it resolved to, the holder it froze). A
//! `heal` completes `ok` only once everything is undone — links restored, nodes resumed and
//! restarted and ready — which is the instant durability and recovery are measured from.

use std::io;

use serde_json::{json, Value};
use tokio::time::{Duration, Instant};

use crate::cluster::Cluster;
use crate::history::{Op, OpType, Process, RunClock, F};
use crate::nemesis::Schedule;
use crate::recorder::Recorder;
use crate::workload::holder_board::HolderBoard;

/// Prints a progress line stamped with the run clock.
pub fn progress(clock: RunClock, line: &str) {
    eprintln!("[{:7.1} s] {line}", clock.now_ns() as f64 / 1e9);
}

/// Runs every scheduled fault at its time, offsets counted from `start`.
pub async fn run(
    schedule: &Schedule,
    cluster: &mut Cluster,
    board: &HolderBoard,
    recorder: &Recorder,
    start: Instant,
) -> io::Result<()> {
    let nodes = schedule.config.nodes;
    let clock = recorder.clock();
    for scheduled in &schedule.faults {
        tokio::time::sleep_until(start + Duration::from_millis(scheduled.start_ms)).await;
        let leader = cluster.leader().await;
        // During an election there is no leader to isolate; any node will do.
        let effects = scheduled.fault.effects(nodes, leader.unwrap_or(1));
        let fault = serde_json::to_value(&scheduled.fault).map_err(io::Error::other)?;
        let invoke = recorder.append(Op::invoke(
            Process::Nemesis,
            F::Nemesis,
            &scheduled.id,
            fault,
        ))?;
        let mut done = cluster.apply(&effects);
        let frozen = effects
            .pause_lease_holder
            .then(|| board.freeze_one())
            .flatten();
        if let Some(to) = effects.move_leader_to {
            done["move_leader"] = cluster.move_leader(to).await;
        }
        done["leader"] = json!(leader);
        done["frozen"] = json!(frozen);
        recorder.complete(&invoke, OpType::Ok, done.clone())?;
        progress(
            clock,
            &format!("{} {}: {done}", scheduled.id, scheduled.fault),
        );

        tokio::time::sleep_until(start + Duration::from_millis(scheduled.heal_ms())).await;
        let heal = recorder.append(Op::invoke(
            Process::Nemesis,
            F::Heal,
            &scheduled.id,
            Value::Null,
        ))?;
        if let Some(frozen) = &frozen {
            board.resume(frozen.process);
        }
        match cluster.heal(&effects).await {
            Ok(done) => {
                recorder.complete(&heal, OpType::Ok, done.clone())?;
                let note = if done.is_null() {
                    String::new()
                } else {
                    format!(": {done}")
                };
                progress(clock, &format!("{} healed{note}", scheduled.id));
            }
            Err(failed) => {
                recorder.complete(&heal, OpType::Fail, json!(failed))?;
                progress(clock, &format!("{} NOT healed: {failed:?}", scheduled.id));
            }
        }
    }
    Ok(())
}
