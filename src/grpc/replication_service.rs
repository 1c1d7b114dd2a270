//! The seed's `codesprintpro.dr.replication.v1.ReplicationCoordinator`, unchanged: regional
//! replication engines report checkpoints and ask for sync metrics.
//!
//! Invariants: a checkpoint is a log entry (`ReplicationCommand::ReportCheckpoint`), so a
//! (region, epoch) is recorded once on every node and a region's epoch never goes backwards;
//! a retry of a recorded (region, epoch, checksum) is acknowledged without a change. Bad input
//! is `INVALID_ARGUMENT`, an unknown region or link `NOT_FOUND`, an older epoch
//! `FAILED_PRECONDITION` — never `UNKNOWN` or `INTERNAL`. Reads are linearizable.

use std::sync::Arc;

use arbiter_client::proto::replication::replication_coordinator_server::{
    ReplicationCoordinator, ReplicationCoordinatorServer,
};
use arbiter_client::proto::replication::{
    CheckpointRequest, CheckpointResponse, SyncMetricsRequest, SyncMetricsResponse,
};
use arbiter_core::command::{Command, Outcome};
use arbiter_core::replication::ReplicationRefusal;
use arbiter_core::state_machine::StateMachine;
use arbiter_core::RegionId;
use tonic::{Request, Response, Status};

use super::convert;
use crate::auth::{grpc_layer, Claim, Operation};
use crate::node::NodeContext;

pub struct ReplicationApi {
    node: Arc<NodeContext>,
}

/// The service, ready to add to the node's gRPC server.
pub fn server(node: &Arc<NodeContext>) -> ReplicationCoordinatorServer<ReplicationApi> {
    ReplicationCoordinatorServer::new(ReplicationApi { node: node.clone() })
}

impl ReplicationApi {
    /// Confirms leadership, then checks every region in `regions` is one the arbiter tracks.
    async fn known(&self, regions: &[&RegionId]) -> Result<(), Status> {
        self.node.leases.confirm_leadership().await?;
        let state = self.node.state.read();
        match regions
            .iter()
            .find(|region| !tracks(&state.machine, region))
        {
            Some(region) => Err(Status::not_found(format!("unknown region {region}"))),
            None => Ok(()),
        }
    }
}

fn tracks(machine: &StateMachine, region: &RegionId) -> bool {
    machine.regions.get(region).is_some()
        || machine
            .traffic
            .weights()
            .is_some_and(|w| w.weight_bp(region).is_some())
}

#[tonic::async_trait]
impl ReplicationCoordinator for ReplicationApi {
    async fn report_checkpoint(
        &self,
        request: Request<CheckpointRequest>,
    ) -> Result<Response<CheckpointResponse>, Status> {
        let caller = grpc_layer::caller(&request)?;
        let command = convert::checkpoint(request.get_ref())?;
        // A region's agent reports only its own region's checkpoints.
        self.node.auth.authorize(
            &caller,
            Operation::ReportCheckpoint,
            Claim::Region(&request.get_ref().source_region),
        )?;
        self.known(&[&request.get_ref().source_region.as_str().into()])
            .await?;
        match self
            .node
            .proposer
            .propose(Command::Replication(command))
            .await?
        {
            Outcome::Replication(outcome) => {
                Ok(Response::new(convert::checkpoint_reply(&outcome)?))
            }
            other => {
                tracing::error!(outcome = ?other, "a checkpoint report produced a foreign outcome");
                Err(Status::internal(
                    "internal replication error; see the node log",
                ))
            }
        }
    }

    async fn get_sync_metrics(
        &self,
        request: Request<SyncMetricsRequest>,
    ) -> Result<Response<SyncMetricsResponse>, Status> {
        let (source, target) = convert::sync_pair(request.get_ref())?;
        self.known(&[&source, &target]).await?;
        let bytes_per_transaction = self.node.dr.config().write_bytes;
        let state = self.node.state.read();
        match state
            .machine
            .replication
            .sync_metrics(&source, &target, bytes_per_transaction)
        {
            Ok(metrics) => Ok(Response::new(convert::sync_metrics(&metrics))),
            Err(refusal @ ReplicationRefusal::LinkNotFound { .. }) => {
                Err(Status::not_found(refusal.to_string()))
            }
            Err(refusal) => Err(Status::failed_precondition(refusal.to_string())),
        }
    }
}
