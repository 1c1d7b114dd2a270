//! An in-process `LeaseService` whose answers a unit test scripts: granted, refused, silent,
//! not the leader. Lets the client's retry rules and the keeper's deadline rule be tested
//! without real nodes (the integration tests in `tests/lease.rs` use real ones).

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use tonic::{Request, Response, Status};

use crate::proto::lease_service_server::{LeaseService, LeaseServiceServer};
use crate::proto::{self, refusal, NotLeader};
use prost::Message;

/// How the mock answers one kind of call.
#[derive(Debug, Clone)]
pub(crate) enum Answer {
    /// `ok = true` with this token and TTL.
    Ok { token: u64, ttl_ms: u64 },
    /// Refused with `StaleToken { presented, current }`.
    Stale { current: u64 },
    /// Never answers.
    Silent,
    /// Answers after a pause.
    Late(Duration, Box<Answer>),
    /// `UNAVAILABLE`, naming `leader` in the details.
    NotLeader { leader: String },
    /// `DEADLINE_EXCEEDED`: the outcome is unknown.
    WriteTimeout,
}

#[derive(Default)]
struct Script {
    acquire: Option<Answer>,
    keep_alive: Option<Answer>,
    revoke: Option<Answer>,
}

/// A scripted arbiter node; counts the calls it gets and notes when each scripted one arrived.
#[derive(Clone, Default)]
pub(crate) struct MockArbiter {
    script: Arc<Mutex<Script>>,
    calls: Arc<AtomicU32>,
    /// Arrival instants of scripted calls, in order: every request was sent before its entry.
    arrivals: Arc<Mutex<Vec<Instant>>>,
    /// Arrival instants of releases.
    releases: Arc<Mutex<Vec<Instant>>>,
    /// Keep-alive streams opened, and keep-alives that arrived on one.
    streams: Arc<AtomicU32>,
    streamed: Arc<AtomicU32>,
}

impl MockArbiter {
    pub(crate) fn on_acquire(&self, answer: Answer) {
        self.script.lock().unwrap().acquire = Some(answer);
    }

    pub(crate) fn on_keep_alive(&self, answer: Answer) {
        self.script.lock().unwrap().keep_alive = Some(answer);
    }

    pub(crate) fn on_revoke(&self, answer: Answer) {
        self.script.lock().unwrap().revoke = Some(answer);
    }

    pub(crate) fn calls(&self) -> u32 {
        self.calls.load(Ordering::SeqCst)
    }

    /// When each scripted call (acquire, keep-alive, revoke) arrived, in order.
    pub(crate) fn arrivals(&self) -> Vec<Instant> {
        self.arrivals.lock().unwrap().clone()
    }

    /// Keep-alive streams opened so far.
    pub(crate) fn streams(&self) -> u32 {
        self.streams.load(Ordering::SeqCst)
    }

    /// Keep-alives that arrived on a stream (the unary ones count in [`Self::calls`]).
    pub(crate) fn streamed(&self) -> u32 {
        self.streamed.load(Ordering::SeqCst)
    }

    /// When each release arrived, in order.
    pub(crate) fn releases(&self) -> Vec<Instant> {
        self.releases.lock().unwrap().clone()
    }

    /// Serves on a fresh loopback port; returns `host:port`.
    pub(crate) async fn serve(&self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let incoming = futures::stream::unfold(listener, |listener| async move {
            let accepted = listener.accept().await.map(|(stream, _)| stream);
            Some((accepted, listener))
        });
        let service = LeaseServiceServer::new(self.clone());
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(incoming),
        );
        addr
    }

    async fn answer(
        &self,
        pick: fn(&Script) -> Option<Answer>,
        presented: u64,
    ) -> Result<Response<proto::LeaseReply>, Status> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.arrivals.lock().unwrap().push(Instant::now());
        let answer = pick(&self.script.lock().unwrap());
        let Some(answer) = answer else {
            return Err(Status::unimplemented("not scripted"));
        };
        reply(answer, presented).await
    }
}

async fn reply(mut answer: Answer, presented: u64) -> Result<Response<proto::LeaseReply>, Status> {
    while let Answer::Late(pause, then) = answer {
        tokio::time::sleep(pause).await;
        answer = *then;
    }
    match answer {
        Answer::Ok { token, ttl_ms } => Ok(Response::new(proto::LeaseReply {
            ok: true,
            token,
            ttl_ms,
            ..Default::default()
        })),
        Answer::Stale { current } => Ok(Response::new(proto::LeaseReply {
            ok: false,
            refusal: Some(proto::Refusal {
                kind: Some(refusal::Kind::StaleToken(proto::StaleToken {
                    presented,
                    current,
                })),
            }),
            ..Default::default()
        })),
        Answer::Silent => std::future::pending().await,
        Answer::NotLeader { leader } => {
            let details = NotLeader {
                leader_id: Some(9),
                leader_grpc_addr: leader,
            }
            .encode_to_vec();
            Err(Status::with_details(
                tonic::Code::Unavailable,
                "not the leader",
                details.into(),
            ))
        }
        Answer::WriteTimeout => Err(Status::deadline_exceeded("write timed out")),
        Answer::Late(..) => unreachable!("unwrapped above"),
    }
}

#[tonic::async_trait]
impl LeaseService for MockArbiter {
    async fn acquire(
        &self,
        _: Request<proto::AcquireRequest>,
    ) -> Result<Response<proto::LeaseReply>, Status> {
        self.answer(|s| s.acquire.clone(), 0).await
    }

    async fn keep_alive(
        &self,
        request: Request<proto::KeepAliveRequest>,
    ) -> Result<Response<proto::LeaseReply>, Status> {
        let presented = request.get_ref().token;
        self.answer(|s| s.keep_alive.clone(), presented).await
    }

    type KeepAliveStreamStream = std::pin::Pin<
        Box<dyn futures::Stream<Item = Result<proto::LeaseReply, Status>> + Send + 'static>,
    >;

    /// Answers each message as the scripted keep-alive, tagged with its request id, each on
    /// its own (so a late answer does not hold up the rest); an error status ends the stream,
    /// as a real node's does.
    async fn keep_alive_stream(
        &self,
        request: Request<tonic::Streaming<proto::KeepAliveRequest>>,
    ) -> Result<Response<Self::KeepAliveStreamStream>, Status> {
        self.streams.fetch_add(1, Ordering::SeqCst);
        let mut incoming = request.into_inner();
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let mock = self.clone();
        tokio::spawn(async move {
            while let Ok(Some(message)) = incoming.message().await {
                mock.streamed.fetch_add(1, Ordering::SeqCst);
                mock.arrivals.lock().unwrap().push(Instant::now());
                let answer = mock.script.lock().unwrap().keep_alive.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    let reply = match answer {
                        Some(answer) => reply(answer, message.token).await,
                        None => Err(Status::unimplemented("not scripted")),
                    };
                    let _ = tx
                        .send(reply.map(|r| proto::LeaseReply {
                            request_id: message.request_id,
                            ..r.into_inner()
                        }))
                        .await;
                });
            }
        });
        let replies = futures::stream::unfold((rx, false), |(mut rx, ended)| async move {
            if ended {
                return None;
            }
            let item = rx.recv().await?;
            let end = item.is_err();
            Some((item, (rx, end)))
        });
        Ok(Response::new(Box::pin(replies)))
    }

    async fn release(
        &self,
        _: Request<proto::ReleaseRequest>,
    ) -> Result<Response<proto::LeaseReply>, Status> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.releases.lock().unwrap().push(Instant::now());
        Ok(Response::new(proto::LeaseReply {
            ok: true,
            ..Default::default()
        }))
    }

    async fn revoke(
        &self,
        _: Request<proto::RevokeRequest>,
    ) -> Result<Response<proto::LeaseReply>, Status> {
        self.answer(|s| s.revoke.clone(), 0).await
    }

    async fn get(
        &self,
        _: Request<proto::GetLeaseRequest>,
    ) -> Result<Response<proto::LeaseInfo>, Status> {
        Err(Status::unimplemented("not scripted"))
    }

    async fn current_epoch(
        &self,
        _: Request<proto::GetLeaseRequest>,
    ) -> Result<Response<proto::EpochReply>, Status> {
        Err(Status::unimplemented("not scripted"))
    }

    async fn validate_token(
        &self,
        _: Request<proto::ValidateTokenRequest>,
    ) -> Result<Response<proto::ValidateTokenReply>, Status> {
        Err(Status::unimplemented("not scripted"))
    }
}
