//! `arbiter member add|remove`: grow or shrink the voter set. A new node joins as a learner,
//! catches up, then becomes a voter; a removed node leaves the membership (and may then be
//! stopped). Requests go to the leader, found through `GetStatus`.
//!
//! Every call has a deadline. A change the leader did not confirm in time (its write deadline
//! passed, or no answer within [`CALL_TIMEOUT`]) may still commit: the command says the
//! outcome is unknown and exits with [`OUTCOME_UNKNOWN`].

use std::future::Future;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use arbiter_client::proto::cluster_service_client::ClusterServiceClient;
use arbiter_client::proto::{AddLearnerRequest, ChangeMembershipRequest, NodeInfo, NodeStatus};
use arbiter_client::{AuthChannel, ClientOptions};
use clap::{Args, Subcommand};
use serde_json::json;
use tonic::{Code, Status};

use super::exit::{Failure, OUTCOME_UNKNOWN};
use super::output::OutputArgs;
use super::up::{ClusterArgs, Port};
use crate::grpc::cluster_service::find_leader;

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
    /// The new node's advertised peer (Raft) address [default: its gRPC address].
    #[arg(long)]
    peer: Option<String>,
    /// Leave it a learner (it replicates but does not vote).
    #[arg(long)]
    learner: bool,
    #[command(flatten)]
    cluster: ClusterArgs,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Args, Debug)]
pub struct RemoveArgs {
    #[arg(long)]
    id: u64,
    #[command(flatten)]
    cluster: ClusterArgs,
    #[command(flatten)]
    output: OutputArgs,
}

/// Longest wait for one membership call: above the server's write deadline (wan: 8 s), so the
/// leader's own `DEADLINE_EXCEEDED` normally comes first; this covers a leader that is frozen.
const CALL_TIMEOUT: Duration = Duration::from_secs(15);

/// How a membership call ended, when it did not fail outright.
enum Answer<T> {
    Confirmed(T),
    /// Sent, not confirmed in time; the reason.
    Unknown(String),
}

/// Sends one membership call with [`CALL_TIMEOUT`]; a timeout on either side is `Unknown`.
async fn send<T>(
    what: &str,
    call: impl Future<Output = Result<tonic::Response<T>, Status>>,
) -> anyhow::Result<Answer<T>> {
    match tokio::time::timeout(CALL_TIMEOUT, call).await {
        Ok(Ok(response)) => Ok(Answer::Confirmed(response.into_inner())),
        Ok(Err(status)) if status.code() == Code::DeadlineExceeded => {
            Ok(Answer::Unknown(format!("{what}: {}", status.message())))
        }
        Ok(Err(status)) => Err(status_error(status)),
        Err(_) => Ok(Answer::Unknown(format!(
            "{what}: no answer from the leader within {} s",
            CALL_TIMEOUT.as_secs()
        ))),
    }
}

fn outcome_unknown(reason: &str) -> ExitCode {
    eprintln!(
        "error: {reason}\noutcome unknown: the change may or may not have been applied; run \
         `arbiter status` to see the membership before retrying"
    );
    ExitCode::from(OUTCOME_UNKNOWN)
}

/// The leader's status, as the reachable members among `endpoints` report it; unavailable
/// (exit 5) when none is found within [`LEADER_SEARCH`].
pub(super) async fn leader(
    endpoints: &[String],
    options: &ClientOptions,
) -> anyhow::Result<NodeStatus> {
    find_leader(endpoints, LEADER_SEARCH, false, options)
        .await
        .map_err(|e| Failure::unavailable(e).into())
}

/// How long a membership command looks for a leader (through an election).
const LEADER_SEARCH: Duration = Duration::from_secs(10);

pub(super) fn client(
    status: &NodeStatus,
    options: &ClientOptions,
) -> anyhow::Result<ClusterServiceClient<AuthChannel>> {
    let channel = arbiter_client::channel(&status.grpc_addr, options)
        .with_context(|| format!("connecting to the leader at {}", status.grpc_addr))?;
    Ok(ClusterServiceClient::new(channel))
}

pub(super) fn status_error(s: tonic::Status) -> anyhow::Error {
    anyhow!("{:?}: {}", s.code(), s.message())
}

pub async fn run(command: MemberCommand) -> anyhow::Result<ExitCode> {
    match command {
        MemberCommand::Add(args) => {
            let options = args.cluster.credentials().client_options()?;
            let leader = leader(&args.cluster.endpoints(Port::Grpc), &options).await?;
            if leader.voters.iter().any(|v| v.node_id == args.id) {
                args.output.result(
                    format!("node {} is already a voter", args.id),
                    json!({"nodeId": args.id, "result": "already_voter"}),
                );
                return Ok(ExitCode::SUCCESS);
            }
            let mut client = client(&leader, &options)?;
            eprintln!(
                "adding node {} as a learner (waits until it has caught up)...",
                args.id
            );
            let request = AddLearnerRequest {
                node: Some(NodeInfo {
                    node_id: args.id,
                    region: args.region.clone(),
                    grpc_addr: args.grpc.clone(),
                    http_addr: args.http.clone(),
                    peer_addr: args.peer.clone().unwrap_or_default(),
                }),
            };
            if let Answer::Unknown(reason) =
                send("adding the learner", client.add_learner(request)).await?
            {
                return Ok(outcome_unknown(&reason));
            }
            if args.learner {
                args.output.result(
                    format!("node {} joined as a learner", args.id),
                    json!({"nodeId": args.id, "result": "learner"}),
                );
                return Ok(ExitCode::SUCCESS);
            }
            let mut voters: Vec<u64> = leader.voters.iter().map(|v| v.node_id).collect();
            voters.push(args.id);
            let request = ChangeMembershipRequest { voters };
            if let Answer::Unknown(reason) =
                send("promoting to voter", client.change_membership(request)).await?
            {
                return Ok(outcome_unknown(&reason));
            }
            args.output.result(
                format!("node {} is a voter", args.id),
                json!({"nodeId": args.id, "result": "voter"}),
            );
        }
        MemberCommand::Remove(args) => {
            let options = args.cluster.credentials().client_options()?;
            let leader = leader(&args.cluster.endpoints(Port::Grpc), &options).await?;
            let voters: Vec<u64> = leader
                .voters
                .iter()
                .map(|v| v.node_id)
                .filter(|id| *id != args.id)
                .collect();
            let learner = leader.learners.iter().any(|l| l.node_id == args.id);
            if voters.len() == leader.voters.len() && !learner {
                args.output.result(
                    format!("node {} is not a member", args.id),
                    json!({"nodeId": args.id, "result": "not_a_member"}),
                );
                return Ok(ExitCode::SUCCESS);
            }
            if voters.is_empty() {
                bail!("refusing to remove the last voter");
            }
            let mut client = client(&leader, &options)?;
            let request = ChangeMembershipRequest { voters };
            if let Answer::Unknown(reason) =
                send("removing the node", client.change_membership(request)).await?
            {
                return Ok(outcome_unknown(&reason));
            }
            args.output.result(
                format!("node {} removed; it can be stopped now", args.id),
                json!({"nodeId": args.id, "result": "removed"}),
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
