//! The tower layer in front of every gRPC service, and how handlers read the [`Caller`].
//!
//! Invariant: a gRPC handler that asks for the caller runs only after [`Auth::admit`] accepted
//! the method; refused calls are answered here with `UNAUTHENTICATED` / `PERMISSION_DENIED` and
//! never reach a service.

use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::{Either, Ready};
use tonic::codegen::http;
use tonic::Status;
use tower::{Layer, Service};

use super::permissions::grpc_access;
use super::{Auth, AuthError, Caller, Edge, Unauthenticated};

#[derive(Clone)]
pub struct GrpcAuthLayer {
    auth: Arc<Auth>,
    edge: Edge,
}

impl GrpcAuthLayer {
    /// The layer for a port of kind `edge`.
    pub fn new(auth: Arc<Auth>, edge: Edge) -> Self {
        GrpcAuthLayer { auth, edge }
    }
}

impl<S> Layer<S> for GrpcAuthLayer {
    type Service = GrpcAuth<S>;

    fn layer(&self, inner: S) -> GrpcAuth<S> {
        GrpcAuth {
            inner,
            auth: self.auth.clone(),
            edge: self.edge,
        }
    }
}

#[derive(Clone)]
pub struct GrpcAuth<S> {
    inner: S,
    auth: Arc<Auth>,
    edge: Edge,
}

impl<S, B, ResBody> Service<http::Request<B>> for GrpcAuth<S>
where
    S: Service<http::Request<B>, Response = http::Response<ResBody>>,
    ResBody: Default,
{
    type Response = http::Response<ResBody>;
    type Error = S::Error;
    type Future = Either<S::Future, Ready<Result<Self::Response, S::Error>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        // A Uri clone shares its bytes: no copy of the path per call.
        let uri = request.uri().clone();
        let path = uri.path();
        match self
            .auth
            .admit(path, grpc_access(path), self.edge, &mut request)
        {
            Ok(()) => Either::Left(self.inner.call(request)),
            Err(e) => Either::Right(futures::future::ready(Ok(Status::from(e).into_http()))),
        }
    }
}

/// The caller the layer admitted; a service added without a table entry still gets here only
/// with an operator (the table's fail-closed default).
pub fn caller<T>(request: &tonic::Request<T>) -> Result<Caller, Status> {
    request
        .extensions()
        .get::<Caller>()
        .cloned()
        .ok_or_else(|| Status::from(AuthError::Unauthenticated(Unauthenticated::Missing)))
}
