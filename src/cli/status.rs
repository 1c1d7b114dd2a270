//! `arbiter status`: asks every node for its view and prints one row per node.

use std::process::ExitCode;

use arbiter_client::proto::NodeStatus;
use clap::Args;
use serde::Serialize;

use super::up::{ClusterArgs, Port};

#[derive(Args, Debug)]
pub struct StatusArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct Report {
    leader: Option<u64>,
    nodes: Vec<NodeStatus>,
    unreachable: Vec<Unreachable>,
}

#[derive(Serialize)]
struct Unreachable {
    endpoint: String,
    error: String,
}

pub async fn run(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let endpoints = args.cluster.endpoints(Port::Grpc);
    let options = args.cluster.credentials().client_options()?;
    let replies =
        futures::future::join_all(endpoints.iter().map(|e| fetch_status(e.clone(), &options)))
            .await;
    let mut report = Report {
        leader: None,
        nodes: Vec::new(),
        unreachable: Vec::new(),
    };
    for (endpoint, reply) in endpoints.into_iter().zip(replies) {
        match reply {
            Ok(status) => report.nodes.push(status),
            Err(error) => report.unreachable.push(Unreachable { endpoint, error }),
        }
    }
    report.leader = report
        .nodes
        .iter()
        .find(|n| n.role == "Leader")
        .map(|n| n.node_id);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&report);
    }
    Ok(if report.nodes.is_empty() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

pub use crate::grpc::cluster_service::fetch_status;

fn opt(v: Option<u64>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "-".into())
}

fn print_table(report: &Report) {
    println!(
        "{:<4} {:<14} {:<21} {:<9} {:>5} {:>6} {:>8} {:>8} {:>8} {:>6}  {:<16}",
        "ID",
        "REGION",
        "GRPC",
        "ROLE",
        "TERM",
        "LEADER",
        "LAST_LOG",
        "COMMIT",
        "APPLIED",
        "VOTERS",
        "DIGEST"
    );
    for n in &report.nodes {
        println!(
            "{:<4} {:<14} {:<21} {:<9} {:>5} {:>6} {:>8} {:>8} {:>8} {:>6}  {:016x}",
            n.node_id,
            n.region,
            n.grpc_addr,
            n.role,
            n.term,
            opt(n.leader_id),
            opt(n.last_log_index),
            opt(n.committed_index),
            opt(n.applied_index),
            n.voters.len(),
            n.state_digest
        );
        if !n.storage_error.is_empty() {
            println!(
                "     node {} STORAGE ERROR (not acknowledging writes): {}",
                n.node_id, n.storage_error
            );
        }
    }
    for u in &report.unreachable {
        println!(
            "{:<4} {:<14} {:<21} UNREACHABLE ({})",
            "?", "?", u.endpoint, u.error
        );
    }
    match report.leader {
        Some(id) => println!("leader: node {id}"),
        None => println!("leader: none reachable"),
    }
    // Placement as the leader reports it (the replicated move count is the same everywhere).
    let leader = report.nodes.iter().find(|n| n.role == "Leader");
    if let Some(n) = leader.or(report.nodes.first()) {
        let placed = match (
            n.preferred_leader_region.as_str(),
            n.leader_in_preferred_region,
        ) {
            ("", _) => "placement: off (leadership stays where elections put it)".to_string(),
            (region, Some(true)) => {
                format!("placement: preferred region {region}, leader is there")
            }
            (region, Some(false)) => {
                format!("placement: preferred region {region}, leader is ELSEWHERE")
            }
            (region, None) => format!("placement: preferred region {region}, no leader known"),
        };
        println!("{placed}; leadership moves so far: {}", n.leader_moves);
    }
    let ids: std::collections::BTreeSet<&str> = report
        .nodes
        .iter()
        .map(|n| n.cluster_id.as_str())
        .filter(|id| !id.is_empty())
        .collect();
    match ids.iter().collect::<Vec<_>>().as_slice() {
        [] => println!("cluster: no identity yet"),
        [id] => println!("cluster: {id}"),
        _ => println!("cluster: NODES DISAGREE: {ids:?}"),
    }
}
