//! DR drill with the default settings (`cargo bench --bench dr_drill`): three probe agents
//! polling every second (the agent's default), the default outage consensus (all three
//! vantage points, three failures in a row, 30 s window), the default 30 s drain and builtin
//! drivers. Stops us-east-1's gateway and prints the detection time (outage → failover event
//! logged) and the end-to-end time (outage → event COMPLETED), against the seed's RTO targets.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::drill::{seed_tenants, wait_completed, wait_for_event, Drill};

#[tokio::main]
async fn main() {
    let mut drill = Drill::start(None, Duration::from_secs(1)).await;
    seed_tenants(&drill).await;
    // Let every agent establish a healthy baseline first.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        drill.latest_event("us-east-1").await.is_none(),
        "false alarm before the outage"
    );

    drill.stop_gateway("us-east-1").await;
    let outage = Instant::now();
    wait_for_event(&drill, "us-east-1", Duration::from_secs(60)).await;
    let detected = outage.elapsed();
    let event = wait_completed(&drill, "us-east-1", Duration::from_secs(120)).await;
    let completed = outage.elapsed();
    println!("failover event: {}", event["failoverId"]);
    println!(
        "detection (gateway down -> failover logged): {:.2} s",
        detected.as_secs_f64()
    );
    println!(
        "end to end (gateway down -> COMPLETED):       {:.2} s  (of which the default drain window is 30 s)",
        completed.as_secs_f64()
    );
    println!(
        "seed RTO targets: active-active < 60 s ({}), warm standby < 15 min ({})",
        if completed < Duration::from_secs(60) {
            "met"
        } else {
            "missed"
        },
        if completed < Duration::from_secs(900) {
            "met"
        } else {
            "missed"
        },
    );
}
