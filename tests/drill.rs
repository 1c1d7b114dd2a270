//! `arbiter drill` (the real binary) in the split-brain scenario: us-east-1's replication link
//! is cut and its agent loses the arbiter while its gateway stays healthy, so both regions are
//! alive and only us-west-2 can reach the arbiter. us-east-1's writer keeps presenting its old
//! token; its database must take no write once us-west-2 holds the lease, and us-west-2 must
//! take over. `scripts/mutants.sh` rule 11 runs this test against an agent that leaves its
//! database writable when it loses the lease, which it must catch.
//!
//! Needs PostgreSQL 15, root and nftables (the partition is an nftables rule matching the
//! isolated agent's group id); CI installs all three.

use std::process::Command;

use serde_json::Value;

#[test]
fn an_isolated_region_takes_no_write_once_the_other_is_granted() {
    let out = tempfile::tempdir().expect("temp dir");
    let output = Command::new(env!("CARGO_BIN_EXE_arbiter"))
        .args([
            "drill",
            "--mode",
            "async",
            "--fault",
            "split-brain",
            "--runs",
            "1",
            "--warmup-secs",
            "2",
            "--timeout-secs",
            "60",
            "--out",
        ])
        .arg(out.path())
        .output()
        .expect("run arbiter drill");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let report: Value = serde_json::from_str(
        &std::fs::read_to_string(out.path().join("report.json"))
            .unwrap_or_else(|e| panic!("no report ({e}); the drill said:\n{stdout}\n{stderr}")),
    )
    .expect("report.json is JSON");
    let run = &report["runs"][0];
    assert_eq!(run["error"], Value::Null, "{stderr}");
    let check = &run["splitBrain"];
    // The isolated side took writes after the cut (asynchronous replication: the link is
    // gone, its lease not yet), so the count below is not zero for want of load.
    assert!(
        check["eastAckedAfterFault"].as_u64().unwrap_or(0) > 0,
        "{check}\n{stderr}"
    );
    assert_eq!(
        check["eastAckedAfterWestGrant"], 0,
        "us-east-1 took writes while us-west-2 held the lease: {check}\n{stderr}"
    );
    // Read-only strictly before the grant was seen.
    let read_only = check["eastReadOnlyMs"].as_u64().expect("read-only seen");
    let granted = check["westGrantMs"].as_u64().expect("grant seen");
    assert!(read_only < granted, "{check}");
    assert!(
        run["writes"]["ackedWest"].as_u64().unwrap_or(0) > 0,
        "us-west-2 took over: {run}"
    );
    assert!(
        output.status.success(),
        "exit {:?}\n{stdout}\n{stderr}",
        output.status
    );
    assert!(
        stdout.contains("after us-west-2 was granted the lease: 0"),
        "{stdout}"
    );
    // The client load went through the two edge routers, and none of it failed: us-east-1's
    // gateway stayed healthy, so the edges had no reason to move it.
    let edge = &run["edge"];
    assert_eq!(edge["edges"], 2, "{edge}");
    assert!(edge["requests"].as_u64().unwrap_or(0) > 100, "{edge}");
    assert_eq!(edge["failed"], 0, "{edge}");
    assert!(out.path().join("timeline.svg").exists());
    // The drill removed its nftables table.
    let tables = Command::new("nft")
        .args(["list", "tables"])
        .output()
        .expect("nft");
    assert!(
        !String::from_utf8_lossy(&tables.stdout).contains("arbiter_drill_"),
        "a drill table was left behind"
    );
}
