//! `arbiter member add|remove`: grow or shrink the voter set. A new node joins as a learner,
//! catches up, then becomes a voter; a removed node leaves the membership (and may then be
//! stopped). Requests go to the leader, found through `GetStatus`.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use arbiter_client::proto::cluster_service_client::ClusterServiceClient;
use arbiter_client::proto::{AddLearnerRequest, ChangeMembershipRequest, NodeInfo, NodeStatus};
use clap::{Args, Subcommand};

use super::status::fetch_status;
use super::up::{ClusterArgs, Port};
use arbiter_client::{authorized, AuthChannel};

#[derive(Subcommand, Debug)]
pub enum MemberCommand {
    /// Add a node: as a learner, then (unless --learner) promote it to voter.
    Add(AddArgs),
    /// Remove a node from the membership.
    Remove(RemoveArgs),
}

#[derive(Args, Debug)]
pub struct AddArgs {
    #[arg(long)]
    id: u64,
    #[arg(long)]
    region: String,
    /// The new node's advertised gRPC address.
    #[arg(long)]
    grpc: String,
    /// The new node's advertised HTTP address.
    #[arg(long)]
    http: String,
    /// Leave it a learner (it replicates but does not vote).
    #[arg(long)]
    learner: bool,
    #[command(flatten)]
    cluster: ClusterArgs,
}

#[derive(Args, Debug)]
pub struct RemoveArgs {
    #[arg(long)]
    id: u64,
    #[command(flatten)]
    cluster: ClusterArgs,
}

/// The leader's status, as the reachable members report it.
async fn leader(cluster: &ClusterArgs) -> anyhow::Result<NodeStatus> {
    let endpoints = cluster.endpoints(Port::Grpc);
    for _ in 0..50 {
        for endpoint in &endpoints {
            let Ok(status) = fetch_status(endpoint.clone(), cluster.bearer()?).await else {
                continue;
            };
            if status.role == "Leader" {
                return Ok(status);
            }
            if !status.leader_grpc_addr.is_empty() {
                if let Ok(leader) =
                    fetch_status(status.leader_grpc_addr.clone(), cluster.bearer()?).await
                {
                    if leader.role == "Leader" {
                        return Ok(leader);
                    }
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bail!("no leader found among {}", endpoints.join(","))
}

async fn client(
    status: &NodeStatus,
    cluster: &ClusterArgs,
) -> anyhow::Result<ClusterServiceClient<AuthChannel>> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", status.grpc_addr))?
        .connect()
        .await
        .with_context(|| format!("connecting to the leader at {}", status.grpc_addr))?;
    Ok(ClusterServiceClient::new(authorized(
        channel,
        cluster.bearer()?,
    )))
}

fn status_error(s: tonic::Status) -> anyhow::Error {
    anyhow!("{:?}: {}", s.code(), s.message())
}

pub async fn run(command: MemberCommand) -> anyhow::Result<ExitCode> {
    match command {
        MemberCommand::Add(args) => {
            let leader = leader(&args.cluster).await?;
            if leader.voters.iter().any(|v| v.node_id == args.id) {
                println!("node {} is already a voter", args.id);
                return Ok(ExitCode::SUCCESS);
            }
            let mut client = client(&leader, &args.cluster).await?;
            eprintln!(
                "adding node {} as a learner (waits until it has caught up)...",
                args.id
            );
            client
                .add_learner(AddLearnerRequest {
                    node: Some(NodeInfo {
                        node_id: args.id,
                        region: args.region.clone(),
                        grpc_addr: args.grpc.clone(),
                        http_addr: args.http.clone(),
                    }),
                })
                .await
                .map_err(status_error)?;
            if args.learner {
                println!("node {} joined as a learner", args.id);
                return Ok(ExitCode::SUCCESS);
            }
            let mut voters: Vec<u64> = leader.voters.iter().map(|v| v.node_id).collect();
            voters.push(args.id);
            client
                .change_membership(ChangeMembershipRequest { voters })
                .await
                .map_err(status_error)?;
            println!("node {} is a voter", args.id);
        }
        MemberCommand::Remove(args) => {
            let leader = leader(&args.cluster).await?;
            let voters: Vec<u64> = leader
                .voters
                .iter()
                .map(|v| v.node_id)
                .filter(|id| *id != args.id)
                .collect();
            let learner = leader.learners.iter().any(|l| l.node_id == args.id);
            if voters.len() == leader.voters.len() && !learner {
                println!("node {} is not a member", args.id);
                return Ok(ExitCode::SUCCESS);
            }
            if voters.is_empty() {
                bail!("refusing to remove the last voter");
            }
            client(&leader, &args.cluster)
                .await?
                .change_membership(ChangeMembershipRequest { voters })
                .await
                .map_err(status_error)?;
            println!("node {} removed; it can be stopped now", args.id);
        }
    }
    Ok(ExitCode::SUCCESS)
}
