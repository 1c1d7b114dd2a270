//! `arbiter status`: asks every node for its view and prints one row per node. Fails with
//! "unavailable" (exit 5) when no node answers or the reachable nodes know no leader, so a
//! script can use it as a health check of the whole cluster.

use std::process::ExitCode;

use arbiter_client::proto::NodeStatus;
use clap::Args;
use serde::Serialize;

use super::exit::Failure;
use super::output::{OutputArgs, Table};
use super::up::{ClusterArgs, Port};

#[derive(Args, Debug)]
pub struct StatusArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
    #[command(flatten)]
    output: OutputArgs,
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
    if args.output.is_json() {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&report);
    }
    if report.nodes.is_empty() {
        return Err(Failure::unavailable("no node answered").into());
    }
    if report.leader.is_none() {
        return Err(Failure::unavailable(
            "no leader: the reachable nodes know of none (an election, or no quorum)",
        )
        .into());
    }
    Ok(ExitCode::SUCCESS)
}

use crate::grpc::cluster_service::fetch_status;

fn opt(v: Option<u64>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "-".into())
}

fn print_table(report: &Report) {
    let mut table = Table::new(&[
        "ID", "REGION", "GRPC", "ROLE", "TERM", "LEADER", "LAST_LOG", "COMMIT", "APPLIED",
        "VOTERS", "DIGEST",
    ]);
    for n in &report.nodes {
        table.push(vec![
            n.node_id.to_string(),
            n.region.clone(),
            n.grpc_addr.clone(),
            n.role.clone(),
            n.term.to_string(),
            opt(n.leader_id),
            opt(n.last_log_index),
            opt(n.committed_index),
            opt(n.applied_index),
            n.voters.len().to_string(),
            format!("{:016x}", n.state_digest),
        ]);
    }
    for u in &report.unreachable {
        table.push(vec![
            "?".into(),
            "?".into(),
            u.endpoint.clone(),
            format!("UNREACHABLE ({})", u.error),
        ]);
    }
    table.print();
    for n in &report.nodes {
        if !n.storage_error.is_empty() {
            println!(
                "node {} STORAGE ERROR (not acknowledging writes): {}",
                n.node_id, n.storage_error
            );
        }
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
