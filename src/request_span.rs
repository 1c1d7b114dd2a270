//! One tracing span per request, HTTP and gRPC alike, named by a request id the caller gets
//! back in the `x-request-id` response header (gRPC: initial metadata).
//!
//! A caller may send its own `x-request-id` (up to [`MAX_ID_LEN`] characters of `A-Z a-z 0-9
//! . _ -`), which is kept so one id follows a request across services; anything else is
//! replaced by a fresh id. Every event logged while the request is served carries the span's
//! fields: `request_id`, `method`, `path`, and `caller` (the authenticated identity, recorded
//! by the auth layer). At debug level under the target `arbiter::access`, one line per
//! finished request gives its status and duration.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Instant;

use axum::http::{HeaderValue, Request, Response};
use tower::{Layer, Service};
use tracing::instrument::Instrumented;
use tracing::{Instrument, Span};

pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// The longest caller-supplied id kept.
pub const MAX_ID_LEN: usize = 64;

#[derive(Clone, Copy)]
pub struct RequestSpanLayer;

impl<S> Layer<S> for RequestSpanLayer {
    type Service = RequestSpan<S>;

    fn layer(&self, inner: S) -> RequestSpan<S> {
        RequestSpan { inner }
    }
}

#[derive(Clone)]
pub struct RequestSpan<S> {
    inner: S,
}

impl<S, B, ResBody> Service<Request<B>> for RequestSpan<S>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = Instrumented<WithRequestId<S::Future>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let id = request
            .headers()
            .get(REQUEST_ID_HEADER)
            .filter(|v| acceptable(v.as_bytes()))
            .cloned()
            .unwrap_or_else(new_id);
        let span = tracing::info_span!(
            "request",
            request_id = id.to_str().unwrap_or_default(),
            method = %request.method(),
            path = request.uri().path(),
            caller = tracing::field::Empty,
        );
        // Entered while the inner services' `call` runs too: the auth layer decides there and
        // records the caller in this span.
        let inner = span.in_scope(|| self.inner.call(request));
        WithRequestId {
            inner,
            id: Some(id),
            started: Instant::now(),
        }
        .instrument(span)
    }
}

pin_project_lite::pin_project! {
    /// The inner response future; adds the id to the response it yields.
    pub struct WithRequestId<F> {
        #[pin]
        inner: F,
        id: Option<HeaderValue>,
        started: Instant,
    }
}

impl<F, ResBody, E> Future for WithRequestId<F>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut result = std::task::ready!(this.inner.poll(cx));
        if let Ok(response) = &mut result {
            tracing::debug!(
                target: "arbiter::access",
                status = response.status().as_u16(),
                elapsed_us = this.started.elapsed().as_micros() as u64,
                "request served"
            );
            if let Some(id) = this.id.take() {
                response.headers_mut().insert(REQUEST_ID_HEADER, id);
            }
        }
        Poll::Ready(result)
    }
}

/// Records the authenticated caller in the current request's span.
pub fn record_caller(identity: &str) {
    Span::current().record("caller", identity);
}

fn acceptable(id: &[u8]) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// A fresh id: this process's random prefix and a counter, 16 hex digits in all, unique per
/// process and unlikely to repeat across nodes.
fn new_id() -> HeaderValue {
    static PREFIX: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let prefix = *PREFIX.get_or_init(rand::random::<u32>);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let id = format!("{prefix:08x}{:08x}", n as u32);
    HeaderValue::from_str(&id).expect("hex digits are a valid header value")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caller_ids_are_kept_only_when_short_and_plain() {
        assert!(acceptable(b"req-42.a_B"));
        assert!(!acceptable(b""));
        assert!(!acceptable(b"has space"));
        assert!(!acceptable(b"quote\"d"));
        assert!(!acceptable("é".as_bytes()));
        assert!(acceptable(&[b'a'; MAX_ID_LEN]));
        assert!(!acceptable(&[b'a'; MAX_ID_LEN + 1]));
    }

    #[test]
    fn fresh_ids_differ() {
        let a = new_id();
        let b = new_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), 16);
        assert!(acceptable(a.as_bytes()));
    }
}
