//! `arbiter-jepsen check` end to end: a recorded history in, exit status and report files out.

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use arbiter_core::{FencingToken, HolderId};
use arbiter_jepsen::history::{HistoryWriter, Op, OpType, Process, RunClock, F};
use arbiter_jepsen::nemesis::Fault;
use serde_json::{json, Value};

fn check(history: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_arbiter-jepsen"))
        .arg("check")
        .arg(history)
        .output()
        .expect("run arbiter-jepsen")
}

/// Records a small run through the real writer: a lease, fenced writes, a register, a log,
/// and one kill-all fault with its heal.
fn record(path: &Path, stale_write: bool) {
    let mut w = HistoryWriter::create(path, RunClock::start()).unwrap();
    let client = |p| Process::Client(p);

    // Phase 1: p1 takes the lease and writes through the fence.
    let acquire = w
        .append(
            Op::invoke(client(1), F::Acquire, "db/orders", Value::Null)
                .with_holder(HolderId::new("proxy-a")),
        )
        .unwrap();
    let deadline = w.clock().now_ns() + 1_000_000;
    w.append(
        acquire
            .complete(OpType::Ok, Value::Null)
            .with_token(FencingToken(4096))
            .with_valid_until(deadline),
    )
    .unwrap();
    let write = w
        .append(
            Op::invoke(client(1), F::FencedWrite, "db/orders", json!("x"))
                .with_token(FencingToken(4096)),
        )
        .unwrap();
    w.append(write.complete(OpType::Ok, Value::Null)).unwrap();
    for (f, value, result) in [
        (F::Write, json!("us-east-1"), Value::Null),
        (F::Read, Value::Null, json!("us-east-1")),
    ] {
        let op = w
            .append(Op::invoke(client(2), f, "tenant-1", value))
            .unwrap();
        w.append(op.complete(OpType::Ok, result)).unwrap();
    }
    let append = w
        .append(Op::invoke(client(3), F::Append, "failovers", json!(1)))
        .unwrap();
    w.append(append.complete(OpType::Ok, Value::Null)).unwrap();

    // Phase 2: the whole cluster restarts.
    let fault = serde_json::to_value(Fault::KillAll).unwrap();
    let kill = w
        .append(Op::invoke(Process::Nemesis, F::Nemesis, "f0", fault))
        .unwrap();
    w.append(kill.complete(OpType::Ok, Value::Null)).unwrap();
    // The restart outlasts p1's lease (1 ms), so p4 may be granted after it.
    std::thread::sleep(std::time::Duration::from_millis(5));
    let heal = w
        .append(Op::invoke(Process::Nemesis, F::Heal, "f0", Value::Null))
        .unwrap();
    w.append(heal.complete(OpType::Ok, Value::Null)).unwrap();

    // Phase 3: p4 takes over; the data is still there.
    let acquire = w
        .append(
            Op::invoke(client(4), F::Acquire, "db/orders", Value::Null)
                .with_holder(HolderId::new("proxy-b")),
        )
        .unwrap();
    let deadline = w.clock().now_ns() + 1_000_000;
    w.append(
        acquire
            .complete(OpType::Ok, Value::Null)
            .with_token(FencingToken(8192))
            .with_valid_until(deadline),
    )
    .unwrap();
    let read = w
        .append(Op::invoke(client(3), F::ReadLog, "failovers", Value::Null))
        .unwrap();
    w.append(read.complete(OpType::Ok, json!([1]))).unwrap();
    // p4's first act: present its token to the resource.
    let announce = w
        .append(
            Op::invoke(
                client(4),
                F::FencedWrite,
                "db/orders",
                json!("proxy-b#fence"),
            )
            .with_token(FencingToken(8192)),
        )
        .unwrap();
    w.append(announce.complete(OpType::Ok, Value::Null))
        .unwrap();
    if stale_write {
        // p1 wakes up after p4 presented its token, and its old token gets through: the fence
        // failed.
        let late = w
            .append(
                Op::invoke(client(1), F::FencedWrite, "db/orders", json!("y"))
                    .with_token(FencingToken(4096)),
            )
            .unwrap();
        w.append(late.complete(OpType::Ok, Value::Null)).unwrap();
    }
}

#[test]
fn valid_history_exits_zero_and_writes_the_report() {
    let dir = tempfile::tempdir().unwrap();
    let history = dir.path().join("history.jsonl");
    record(&history, false);
    let out = check(&history);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.starts_with("arbiter-jepsen: VALID"), "{stdout}");
    for file in ["results.json", "summary.txt", "timeline.svg"] {
        assert!(dir.path().join(file).exists(), "{file} missing");
    }
    let results: Value =
        serde_json::from_str(&fs::read_to_string(dir.path().join("results.json")).unwrap())
            .unwrap();
    assert_eq!(results["durability"]["restarts"], 1);
    assert_eq!(results["durability"]["reads_checked"], 1);
}

/// Negative control for the whole pipeline.
#[test]
fn stale_fenced_write_exits_one_and_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let history = dir.path().join("history.jsonl");
    record(&history, true);
    let out = check(&history);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("[fenced_writes]"), "{stdout}");
    assert!(stdout.contains("stale token 4096"), "{stdout}");
}

#[test]
fn malformed_history_exits_four_naming_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let history = dir.path().join("history.jsonl");
    let good = r#"{"index":0,"process":1,"type":"invoke","f":"read","key":"t","time_ns":0}"#;
    fs::write(&history, format!("{good}\n{{\"index\":1,\n")).unwrap();
    let out = check(&history);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(stderr.contains("line 2"), "{stderr}");
}
