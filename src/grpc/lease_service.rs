//! `arbiter.v1.LeaseService`: write leases and fencing tokens for regional proxies.

use std::pin::Pin;

use arbiter_client::proto::lease_service_server::LeaseService;
use arbiter_client::proto::{
    AcquireRequest, EpochReply, GetLeaseRequest, KeepAliveRequest, LeaseInfo, LeaseReply,
    ReleaseRequest, RevokeRequest, ValidateTokenReply, ValidateTokenRequest,
};
use arbiter_core::lease_table::{LeaseCommand, LeaseOutcome, TokenValidity};
use arbiter_core::FencingToken;
use futures::Stream;
use futures::StreamExt as _;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status, Streaming};

use std::sync::Arc;

use super::convert;
use crate::auth::{grpc_layer, holder_claim, lease_claims, Auth, Caller, Operation};
use crate::leases::LeaseManager;

pub struct LeaseApi {
    leases: LeaseManager,
    auth: Arc<Auth>,
}

impl LeaseApi {
    pub fn new(leases: LeaseManager, auth: Arc<Auth>) -> Self {
        LeaseApi { leases, auth }
    }

    /// Checks the binding rule for `command`, then proposes it.
    async fn command(&self, caller: &Caller, command: LeaseCommand) -> Result<LeaseReply, Status> {
        for (operation, claim) in lease_claims(&command) {
            self.auth.authorize(caller, operation, claim)?;
        }
        let resource = match &command {
            LeaseCommand::Acquire { resource, .. }
            | LeaseCommand::Release { resource, .. }
            | LeaseCommand::Revoke { resource, .. }
            | LeaseCommand::Fence { resource, .. }
            | LeaseCommand::Expire { resource, .. } => Some(resource.clone()),
            LeaseCommand::RevokeRegion { .. } | LeaseCommand::LiftRegionFence { .. } => None,
        };
        let outcome = self.leases.propose(command).await?;
        let may_hold = match (&outcome, &resource) {
            (LeaseOutcome::Refused(_), Some(r)) => self.leases.may_hold_for_ms(r),
            _ => 0,
        };
        convert::reply(&outcome, may_hold)
    }
}

async fn keep_alive_reply(
    leases: &LeaseManager,
    auth: &Auth,
    caller: &Caller,
    req: KeepAliveRequest,
) -> Result<LeaseReply, Status> {
    let resource = convert::resource(&req.resource)?;
    let holder = convert::holder(&req.holder)?;
    auth.authorize(caller, Operation::LeaseWrite, holder_claim(&holder))?;
    let token = FencingToken(req.token);
    let mut reply = match leases.keep_alive(&resource, &holder, token).await? {
        Ok(ttl_ms) => LeaseReply {
            ok: true,
            token: token.0,
            ttl_ms,
            ..Default::default()
        },
        Err(refusal) => LeaseReply {
            ok: false,
            refusal: Some(convert::refusal(&refusal, 0)?),
            ..Default::default()
        },
    };
    reply.request_id = req.request_id;
    Ok(reply)
}

type ReplyStream = Pin<Box<dyn Stream<Item = Result<LeaseReply, Status>> + Send + 'static>>;

/// Replies a keep-alive stream may have outstanding before the server stops reading.
const STREAM_WINDOW: usize = 1024;
/// Keep-alives of one stream being answered at once. They run as futures of the stream's one
/// task, not as tasks of their own, so a client flooding a stream costs a bounded amount of
/// memory and no task spawns; a full batch still shares one quorum round. One stream carries a
/// whole proxy's renewals: across the WAN a renewal takes up to two quorum rounds (~150 ms at
/// 70 ms RTT), so 256 at once capped a stream near 1,700 renewals/s; 1,024 allows ~7,000.
const STREAM_IN_FLIGHT: usize = STREAM_WINDOW;

#[tonic::async_trait]
impl LeaseService for LeaseApi {
    async fn acquire(
        &self,
        request: Request<AcquireRequest>,
    ) -> Result<Response<LeaseReply>, Status> {
        let caller = grpc_layer::caller(&request)?;
        let command = convert::acquire(request.get_ref(), &self.leases.limits(), &caller)?;
        Ok(Response::new(self.command(&caller, command).await?))
    }

    async fn keep_alive(
        &self,
        request: Request<KeepAliveRequest>,
    ) -> Result<Response<LeaseReply>, Status> {
        let caller = grpc_layer::caller(&request)?;
        Ok(Response::new(
            keep_alive_reply(&self.leases, &self.auth, &caller, request.into_inner()).await?,
        ))
    }

    type KeepAliveStreamStream = ReplyStream;

    async fn keep_alive_stream(
        &self,
        request: Request<Streaming<KeepAliveRequest>>,
    ) -> Result<Response<Self::KeepAliveStreamStream>, Status> {
        let caller = grpc_layer::caller(&request)?;
        let incoming = request.into_inner();
        let (tx, rx) = mpsc::channel(STREAM_WINDOW);
        let leases = self.leases.clone();
        let auth = self.auth.clone();
        tokio::spawn(async move {
            incoming
                // A broken stream means the client went away: stop reading.
                .map_while(Result::ok)
                .for_each_concurrent(STREAM_IN_FLIGHT, |request| {
                    let (leases, auth, caller, tx) = (&leases, &auth, &caller, tx.clone());
                    async move {
                        let reply = keep_alive_reply(leases, auth, caller, request).await;
                        let _ = tx.send(reply).await;
                    }
                })
                .await;
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn release(
        &self,
        request: Request<ReleaseRequest>,
    ) -> Result<Response<LeaseReply>, Status> {
        let caller = grpc_layer::caller(&request)?;
        let command = convert::release(request.get_ref())?;
        Ok(Response::new(self.command(&caller, command).await?))
    }

    async fn revoke(
        &self,
        request: Request<RevokeRequest>,
    ) -> Result<Response<LeaseReply>, Status> {
        let caller = grpc_layer::caller(&request)?;
        let command = convert::revoke(request.get_ref(), &caller)?;
        Ok(Response::new(self.command(&caller, command).await?))
    }

    async fn get(&self, request: Request<GetLeaseRequest>) -> Result<Response<LeaseInfo>, Status> {
        let resource = convert::resource(&request.get_ref().resource)?;
        self.leases.confirm_leadership().await?;
        let state = self.leases.state().read();
        Ok(Response::new(convert::lease_info(
            &resource,
            state.machine.leases.get(&resource),
        )))
    }

    async fn current_epoch(
        &self,
        request: Request<GetLeaseRequest>,
    ) -> Result<Response<EpochReply>, Status> {
        let resource = convert::resource(&request.get_ref().resource)?;
        self.leases.confirm_leadership().await?;
        let state = self.leases.state().read();
        let epoch = state
            .machine
            .leases
            .epoch(&resource)
            .map(|e| e.0)
            .unwrap_or(0);
        Ok(Response::new(EpochReply { epoch }))
    }

    async fn validate_token(
        &self,
        request: Request<ValidateTokenRequest>,
    ) -> Result<Response<ValidateTokenReply>, Status> {
        let resource = convert::resource(&request.get_ref().resource)?;
        let token = FencingToken(request.get_ref().token);
        self.leases.confirm_leadership().await?;
        let state = self.leases.state().read();
        let leases = &state.machine.leases;
        let valid = matches!(
            leases.validate_token(&resource, token),
            TokenValidity::Current
        );
        let current_epoch = leases.epoch(&resource).map(|e| e.0).unwrap_or(0);
        Ok(Response::new(ValidateTokenReply {
            valid,
            current_epoch,
        }))
    }
}
