//! The edge's request path: accept, check, choose a region, forward, retry once where safe.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use super::{Edge, Upstream};

/// The header naming a request's tenant unless configured otherwise.
pub const TENANT_HEADER_DEFAULT: &str = "x-tenant-id";
/// Longest tenant name accepted.
pub const MAX_TENANT_LEN: usize = 128;

/// Headers that describe one connection, never forwarded (RFC 9110 §7.6.1), with the
/// pre-standard `proxy-connection`.
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "proxy-connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// How long open client connections get to finish when the edge stops.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

type ProxyBody = BoxBody<Bytes, hyper::Error>;

/// Counts kept for `/metrics`.
#[derive(Debug, Default)]
pub struct Counters {
    pub requests: AtomicU64,
    /// Answered 4xx by the edge itself (bad headers, bad tenant, body too large).
    pub rejected: AtomicU64,
    /// No region could serve, or every attempt failed (502, 503, 504 from the edge).
    pub failed: AtomicU64,
    pub retried: AtomicU64,
    /// Requests cut at a drain deadline.
    pub cut: AtomicU64,
}

/// Serves the proxy on `listener` until `shutdown`, then gives open connections
/// [`SHUTDOWN_GRACE`] to finish.
pub async fn serve(
    edge: Arc<Edge>,
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let edge = edge.clone();
        let service = hyper::service::service_fn(move |request| {
            let edge = edge.clone();
            async move { Ok::<_, Infallible>(handle(&edge, peer, request).await) }
        });
        let mut builder = hyper::server::conn::http1::Builder::new();
        // hyper answers 431 past its own header limit; keep it above ours so ours (400) wins.
        builder.max_headers(1_000);
        match &acceptor {
            None => {
                let connection = builder.serve_connection(TokioIo::new(stream), service);
                let connection = graceful.watch(connection);
                tokio::spawn(async move {
                    let _ = connection.await;
                });
            }
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                let watcher = graceful.watcher();
                tokio::spawn(async move {
                    let Ok(Ok(stream)) =
                        tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream))
                            .await
                    else {
                        return;
                    };
                    let connection = builder.serve_connection(TokioIo::new(stream), service);
                    let _ = watcher.watch(connection).await;
                });
            }
        }
    }
    drop(listener);
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown()).await;
    Ok(())
}

fn full(bytes: impl Into<Bytes>) -> ProxyBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// An answer from the edge itself (JSON `{"error", "edge"}`).
fn answer(edge: &Edge, status: StatusCode, message: impl Into<String>) -> Response<ProxyBody> {
    let body = serde_json::json!({"error": message.into(), "edge": edge.name()});
    let mut response = Response::new(full(body.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Ok(name) = HeaderValue::from_str(edge.name()) {
        response.headers_mut().insert("x-arbiter-edge", name);
    }
    response
}

fn rejected(edge: &Edge, status: StatusCode, message: impl Into<String>) -> Response<ProxyBody> {
    edge.counters.rejected.fetch_add(1, Ordering::Relaxed);
    answer(edge, status, message)
}

async fn handle(edge: &Edge, peer: SocketAddr, request: Request<Incoming>) -> Response<ProxyBody> {
    edge.counters.requests.fetch_add(1, Ordering::Relaxed);
    let (parts, body) = request.into_parts();
    if let Err(why) = check_headers(edge, &parts.headers) {
        return rejected(edge, StatusCode::BAD_REQUEST, why);
    }
    let tenant = match tenant_of(edge, &parts.headers, parts.uri.path()) {
        Ok(tenant) => tenant,
        Err(why) => return rejected(edge, StatusCode::BAD_REQUEST, why),
    };
    let body = match Limited::new(body, edge.config.max_body_bytes)
        .collect()
        .await
    {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            return rejected(
                edge,
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "the request body exceeds {} bytes",
                    edge.config.max_body_bytes
                ),
            )
        }
        Err(e) => {
            return rejected(
                edge,
                StatusCode::BAD_REQUEST,
                format!("reading the body: {e}"),
            )
        }
    };
    let Some(table) = edge.table() else {
        edge.counters.failed.fetch_add(1, Ordering::Relaxed);
        return answer(
            edge,
            StatusCode::SERVICE_UNAVAILABLE,
            "no routing table yet: the edge has not heard from the arbiter",
        );
    };
    let idempotent = matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS)
        || parts.headers.contains_key("idempotency-key");
    let headers = forwarded_headers(edge, &parts, peer);
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();

    let mut failed_region: Option<String> = None;
    for attempt in 0..2 {
        let exclude: Vec<&str> = failed_region.iter().map(String::as_str).collect();
        let choice = {
            let mut round_robin = edge.round_robin.lock().unwrap_or_else(|e| e.into_inner());
            table.choose(
                tenant.as_deref(),
                edge.config.policy,
                &exclude,
                &|region| edge.local(region),
                &mut round_robin,
            )
        };
        let Some((region, reason)) = choice else {
            edge.counters.failed.fetch_add(1, Ordering::Relaxed);
            let message = match &failed_region {
                Some(failed) => {
                    format!("{failed} failed this request and no other region can serve it")
                }
                None => "no region can serve this request".to_string(),
            };
            return answer(edge, StatusCode::SERVICE_UNAVAILABLE, message);
        };
        let Some(upstream) = edge.upstreams.get(&region).cloned() else {
            edge.counters.failed.fetch_add(1, Ordering::Relaxed);
            return answer(
                edge,
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "the routing table sends this request to {region}, which has no gateway here"
                ),
            );
        };
        match send(edge, &upstream, &parts.method, &path, &headers, &body).await {
            Ok(response) => {
                let mut response = response;
                let h = response.headers_mut();
                if let Ok(value) = HeaderValue::from_str(&region) {
                    h.insert("x-arbiter-region", value);
                }
                h.insert("x-arbiter-route", HeaderValue::from_static(reason.as_str()));
                if let Some(from) = failed_region
                    .as_deref()
                    .and_then(|f| HeaderValue::from_str(f).ok())
                {
                    h.insert("x-arbiter-retried-from", from);
                }
                return response;
            }
            Err(failure) => {
                upstream.failed_total.fetch_add(1, Ordering::Relaxed);
                let retry = attempt == 0 && (failure.not_sent() || idempotent);
                tracing::debug!(%region, ?failure, retry, "attempt failed");
                if !retry {
                    edge.counters.failed.fetch_add(1, Ordering::Relaxed);
                    return answer(edge, failure.status(), failure.describe(&region));
                }
                edge.counters.retried.fetch_add(1, Ordering::Relaxed);
                failed_region = Some(region);
            }
        }
    }
    edge.counters.failed.fetch_add(1, Ordering::Relaxed);
    answer(edge, StatusCode::BAD_GATEWAY, "every attempt failed")
}

/// Why an attempt produced no response.
#[derive(Debug)]
enum Failure {
    /// The connection was not made: the gateway never saw the request.
    NotSent(String),
    /// The request may have reached the gateway.
    Lost(String),
    Timeout(Duration),
    /// The region was drained and its drain timeout passed.
    Cut,
}

impl Failure {
    fn not_sent(&self) -> bool {
        matches!(self, Failure::NotSent(_))
    }

    fn status(&self) -> StatusCode {
        match self {
            Failure::NotSent(_) | Failure::Lost(_) => StatusCode::BAD_GATEWAY,
            Failure::Timeout(_) | Failure::Cut => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    fn describe(&self, region: &str) -> String {
        match self {
            Failure::NotSent(e) => format!("{region} could not be reached: {e}"),
            Failure::Lost(e) => format!("{region} did not answer: {e}"),
            Failure::Timeout(after) => format!("{region} did not answer within {after:?}"),
            Failure::Cut => format!("{region} was drained and its drain timeout passed"),
        }
    }
}

/// Decrements a gateway's in-flight count when the response (body included) is done.
struct InFlight(Arc<Upstream>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

pin_project_lite::pin_project! {
    /// A gateway's response body, counted in flight until it ends or is dropped.
    struct Tracked {
        #[pin]
        inner: Incoming,
        guard: InFlight,
    }
}

impl Body for Tracked {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// One attempt at one gateway, bounded by the response timeout and the region's drain cut.
async fn send(
    edge: &Edge,
    upstream: &Arc<Upstream>,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Response<ProxyBody>, Failure> {
    let uri: Uri = format!(
        "{}://{}{}",
        upstream.base.scheme_str().unwrap_or("http"),
        upstream.base.authority().map_or("", |a| a.as_str()),
        path
    )
    .parse()
    .map_err(|e| Failure::NotSent(format!("bad upstream URI: {e}")))?;
    let mut request = Request::new(Full::new(body.clone()));
    *request.method_mut() = method.clone();
    *request.uri_mut() = uri;
    *request.headers_mut() = headers.clone();
    if let Some(authority) = upstream.base.authority() {
        if let Ok(host) = HeaderValue::from_str(authority.as_str()) {
            request.headers_mut().insert(header::HOST, host);
        }
    }

    upstream.in_flight.fetch_add(1, Ordering::SeqCst);
    let guard = InFlight(upstream.clone());
    let number = upstream.sequence.fetch_add(1, Ordering::SeqCst) + 1;
    upstream.sent_total.fetch_add(1, Ordering::Relaxed);
    upstream
        .last_sent_ms
        .store(crate::proposer::wall_now().0, Ordering::Relaxed);
    let mut cut = upstream.cut.subscribe();
    let cut = async move {
        loop {
            let order = *cut.borrow_and_update();
            if let Some((upto, deadline)) = order {
                if number <= upto {
                    tokio::time::sleep_until(deadline.into()).await;
                    return;
                }
            }
            if cut.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    };
    let timeout = edge.config.response_timeout;
    let outcome = tokio::select! {
        outcome = tokio::time::timeout(timeout, upstream.client.request(request)) => outcome,
        _ = cut => {
            edge.counters.cut.fetch_add(1, Ordering::Relaxed);
            return Err(Failure::Cut);
        }
    };
    let response = match outcome {
        Ok(Ok(response)) => response,
        Ok(Err(e)) if e.is_connect() => {
            // The gateway cannot be reached: route around it until a probe reaches it again.
            upstream.reachable.store(false, Ordering::Relaxed);
            return Err(Failure::NotSent(error_chain(&e)));
        }
        Ok(Err(e)) => return Err(Failure::Lost(error_chain(&e))),
        Err(_) => return Err(Failure::Timeout(timeout)),
    };
    upstream.answered_total.fetch_add(1, Ordering::Relaxed);
    let (mut parts, body) = response.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    let body = Tracked { inner: body, guard }.boxed();
    Ok(Response::from_parts(parts, body))
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Too many or too large headers are refused here (400), before anything is forwarded.
fn check_headers(edge: &Edge, headers: &HeaderMap) -> Result<(), String> {
    if headers.len() > edge.config.max_headers {
        return Err(format!(
            "{} headers; at most {} are accepted",
            headers.len(),
            edge.config.max_headers
        ));
    }
    let size: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if size > edge.config.max_header_bytes {
        return Err(format!(
            "headers of {size} bytes; at most {} are accepted",
            edge.config.max_header_bytes
        ));
    }
    Ok(())
}

/// A tenant name: 1..=128 of `A-Z a-z 0-9 . _ -`.
fn valid_tenant(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_TENANT_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The tenant a request names in the configured header and/or path, if any.
fn tenant_of(edge: &Edge, headers: &HeaderMap, path: &str) -> Result<Option<String>, String> {
    let mut named: Option<String> = None;
    if let Some(header) = &edge.config.tenant_header {
        for value in headers.get_all(header) {
            let value = value
                .to_str()
                .map_err(|_| format!("{header} is not visible ASCII"))?
                .trim();
            if !valid_tenant(value) {
                return Err(format!(
                    "{header} {value:?} is not a tenant name (1 to {MAX_TENANT_LEN} of A-Z a-z 0-9 . _ -)"
                ));
            }
            match &named {
                Some(other) if other != value => {
                    return Err(format!(
                        "{header} names two tenants: {other:?} and {value:?}"
                    ))
                }
                _ => named = Some(value.to_string()),
            }
        }
    }
    if let Some(prefix) = &edge.config.tenant_path_prefix {
        if let Some(rest) = path.strip_prefix(prefix.as_str()) {
            let segment = rest.split('/').next().unwrap_or_default();
            if !valid_tenant(segment) {
                return Err(format!("the path names no valid tenant after {prefix:?}"));
            }
            match &named {
                Some(other) if other != segment => {
                    return Err(format!(
                        "the header names tenant {other:?} but the path names {segment:?}"
                    ))
                }
                _ => named = Some(segment.to_string()),
            }
        }
    }
    Ok(named)
}

/// Removes hop-by-hop headers, and any header the `Connection` header names.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

/// The headers sent to the gateway: the client's, less hop-by-hop ones, plus the forwarding
/// headers naming the client.
fn forwarded_headers(
    edge: &Edge,
    parts: &hyper::http::request::Parts,
    peer: SocketAddr,
) -> HeaderMap {
    let mut headers = parts.headers.clone();
    strip_hop_by_hop(&mut headers);
    let client_ip = peer.ip().to_string();
    let xff = match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
        Some(earlier) => format!("{earlier}, {client_ip}"),
        None => client_ip.clone(),
    };
    let for_node = if peer.is_ipv6() {
        format!("\"[{client_ip}]\"")
    } else {
        client_ip
    };
    let proto = "http";
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| parts.uri.authority().map(|a| a.to_string()));
    let mut forwarded = format!(
        "for={for_node};proto={proto};by=\"{}\"",
        edge.name().replace('"', "")
    );
    if let Some(host) = &host {
        forwarded.push_str(&format!(";host=\"{}\"", host.replace('"', "")));
    }
    let forwarded = match headers.get(header::FORWARDED).and_then(|v| v.to_str().ok()) {
        Some(earlier) => format!("{earlier}, {forwarded}"),
        None => forwarded,
    };
    let mut set = |name: HeaderName, value: String| {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    };
    set(HeaderName::from_static("x-forwarded-for"), xff);
    set(header::FORWARDED, forwarded);
    set(
        HeaderName::from_static("x-forwarded-proto"),
        proto.to_string(),
    );
    if let Some(host) = host {
        set(HeaderName::from_static("x-forwarded-host"), host);
    }
    headers
}

/// One probe of one gateway: measures the round trip and records reachability.
pub(super) async fn probe(edge: &Edge, upstream: &Arc<Upstream>) {
    let Ok(uri) = format!(
        "{}://{}{}",
        upstream.base.scheme_str().unwrap_or("http"),
        upstream.base.authority().map_or("", |a| a.as_str()),
        edge.config.probe_path
    )
    .parse::<Uri>() else {
        return;
    };
    let mut request = Request::new(Full::new(Bytes::new()));
    *request.uri_mut() = uri;
    let started = Instant::now();
    let timeout = edge.config.probe_interval.max(edge.config.connect_timeout);
    match tokio::time::timeout(timeout, upstream.client.request(request)).await {
        Ok(Ok(response)) => {
            let rtt = started.elapsed().as_micros() as u64;
            // Drain the body so the connection can be reused.
            let _ = response.into_body().collect().await;
            let old = upstream.rtt_us.load(Ordering::Relaxed);
            let smoothed = if old == 0 {
                rtt
            } else {
                (old * 7 + rtt * 3) / 10
            };
            upstream.rtt_us.store(smoothed.max(1), Ordering::Relaxed);
            if !upstream.reachable.swap(true, Ordering::Relaxed) {
                tracing::info!(region = %upstream.region, "gateway reachable again");
            }
        }
        Ok(Err(_)) | Err(_) => {
            if upstream.reachable.swap(false, Ordering::Relaxed) {
                tracing::warn!(region = %upstream.region, "gateway unreachable from this edge");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_and_those_connection_names_are_removed() {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("connection", "keep-alive, x-secret"),
            ("keep-alive", "timeout=5"),
            ("x-secret", "s"),
            ("te", "trailers"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("proxy-authorization", "Basic x"),
            ("x-kept", "yes"),
        ] {
            headers.append(name, HeaderValue::from_static(value));
        }
        strip_hop_by_hop(&mut headers);
        let left: Vec<&str> = headers.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, ["x-kept"]);
    }

    #[test]
    fn tenant_names_are_checked() {
        assert!(valid_tenant("acme-01.eu_x"));
        for bad in ["", "a b", "ä", "a/b", &"x".repeat(MAX_TENANT_LEN + 1)] {
            assert!(!valid_tenant(bad), "{bad:?} accepted");
        }
    }
}
