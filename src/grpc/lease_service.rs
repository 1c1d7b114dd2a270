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
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status, Streaming};

use super::convert;
use crate::leases::LeaseManager;

pub struct LeaseApi {
    leases: LeaseManager,
}

impl LeaseApi {
    pub fn new(leases: LeaseManager) -> Self {
        LeaseApi { leases }
    }

    async fn command(&self, command: LeaseCommand) -> Result<LeaseReply, Status> {
        let resource = match &command {
            LeaseCommand::Acquire { resource, .. }
            | LeaseCommand::Release { resource, .. }
            | LeaseCommand::Revoke { resource, .. }
            | LeaseCommand::Fence { resource, .. }
            | LeaseCommand::Expire { resource, .. } => Some(resource.clone()),
            LeaseCommand::RevokeRegion { .. } => None,
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
    req: KeepAliveRequest,
) -> Result<LeaseReply, Status> {
    let resource = convert::resource(&req.resource)?;
    let holder = convert::holder(&req.holder)?;
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

#[tonic::async_trait]
impl LeaseService for LeaseApi {
    async fn acquire(
        &self,
        request: Request<AcquireRequest>,
    ) -> Result<Response<LeaseReply>, Status> {
        let command = convert::acquire(request.get_ref(), &self.leases.limits())?;
        Ok(Response::new(self.command(command).await?))
    }

    async fn keep_alive(
        &self,
        request: Request<KeepAliveRequest>,
    ) -> Result<Response<LeaseReply>, Status> {
        Ok(Response::new(
            keep_alive_reply(&self.leases, request.into_inner()).await?,
        ))
    }

    type KeepAliveStreamStream = ReplyStream;

    async fn keep_alive_stream(
        &self,
        request: Request<Streaming<KeepAliveRequest>>,
    ) -> Result<Response<Self::KeepAliveStreamStream>, Status> {
        let mut incoming = request.into_inner();
        let (tx, rx) = mpsc::channel(STREAM_WINDOW);
        let leases = self.leases.clone();
        tokio::spawn(async move {
            while let Some(message) = incoming.next().await {
                let request = match message {
                    Ok(r) => r,
                    Err(_) => return, // client went away
                };
                let leases = leases.clone();
                let tx = tx.clone();
                // One task per request so a batch of keep-alives shares one quorum round.
                tokio::spawn(async move {
                    let reply = keep_alive_reply(&leases, request).await;
                    let _ = tx.send(reply).await;
                });
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn release(
        &self,
        request: Request<ReleaseRequest>,
    ) -> Result<Response<LeaseReply>, Status> {
        let command = convert::release(request.get_ref())?;
        Ok(Response::new(self.command(command).await?))
    }

    async fn revoke(
        &self,
        request: Request<RevokeRequest>,
    ) -> Result<Response<LeaseReply>, Status> {
        let command = convert::revoke(request.get_ref())?;
        Ok(Response::new(self.command(command).await?))
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
