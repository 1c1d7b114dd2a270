//! `arbiter status`: asks every node for its view and prints one row per node.

use std::process::ExitCode;
use std::time::Duration;

use arbiter_client::proto::cluster_service_client::ClusterServiceClient;
use arbiter_client::proto::{NodeStatus, StatusRequest};
use clap::Args;
use serde::Serialize;

use super::up::{ClusterArgs, Port};
use arbiter_client::{authorized, BearerToken};

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
    let token = args.cluster.bearer()?;
    let replies = futures::future::join_all(
        endpoints
            .iter()
            .map(|e| fetch_status(e.clone(), token.clone())),
    )
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

pub async fn fetch_status(
    endpoint: String,
    token: Option<BearerToken>,
) -> Result<NodeStatus, String> {
    let call = async {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{endpoint}"))
            .map_err(|e| format!("bad endpoint: {e}"))?
            .connect()
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let mut client = ClusterServiceClient::new(authorized(channel, token));
        client
            .get_status(StatusRequest {})
            .await
            .map(|r| r.into_inner())
            .map_err(|s| format!("{:?}: {}", s.code(), s.message()))
    };
    tokio::time::timeout(Duration::from_secs(3), call)
        .await
        .unwrap_or_else(|_| Err("timed out after 3 s".into()))
}

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
}
