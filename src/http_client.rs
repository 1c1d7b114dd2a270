//! A minimal HTTP/1.1 client: probe agents polling regional health checks, webhook drivers,
//! the CLI and the test harnesses. `http://` always; `https://` with an [`HttpClient`] that has
//! TLS (the cluster CA, optionally a client certificate) and optionally a bearer token. One
//! request per connection (`Connection: close`), a deadline on the whole exchange, and a
//! response-size cap, so a misbehaving peer can neither hang nor flood the caller.

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest response body read; anything longer is an error rather than a memory spike.
pub const MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum HttpError {
    #[error(
        "unsupported URL {url:?}: only http://host:port/path (or https:// with a CA) is supported"
    )]
    BadUrl { url: String },
    /// The connection or the TLS handshake failed: nothing of the request was sent.
    #[error("{url}: cannot connect: {reason}")]
    Connect { url: String, reason: String },
    #[error("{url}: {reason}")]
    Io { url: String, reason: String },
    #[error("{url}: no answer within {after_ms} ms")]
    Timeout { url: String, after_ms: u64 },
    #[error("{url}: malformed response: {reason}")]
    Malformed { url: String, reason: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    pub status: u16,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// How to reach the arbiter's HTTP port (or any HTTP server): TLS and a bearer token.
#[derive(Clone, Default)]
pub struct HttpClient {
    /// `None`: only `http://` URLs.
    tls: Option<Arc<rustls::ClientConfig>>,
    /// The `authorization` header value (`Bearer …`).
    authorization: Option<String>,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient")
            .field("tls", &self.tls.is_some())
            .field("token", &self.authorization.is_some())
            .finish()
    }
}

impl HttpClient {
    /// Plain `http://` only, no token.
    pub fn plain() -> Self {
        HttpClient::default()
    }

    pub fn new(tls: Option<Arc<rustls::ClientConfig>>, token: Option<&str>) -> Self {
        HttpClient {
            tls,
            authorization: token.map(|t| format!("Bearer {}", t.trim())),
        }
    }

    /// `https://addr` when this client has TLS, else `http://addr`.
    pub fn base_url(&self, addr: &str) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{addr}")
    }

    /// Sends one request and reads the whole response, within `timeout`.
    pub async fn request(
        &self,
        method: &str,
        url: &str,
        body: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<HttpResponse, HttpError> {
        let (secure, authority, path) = split_url(url)?;
        let connect = |e: std::io::Error| HttpError::Connect {
            url: url.to_string(),
            reason: e.to_string(),
        };
        let exchange = async {
            let tcp = TcpStream::connect(authority).await.map_err(connect)?;
            let _ = tcp.set_nodelay(true);
            let head = self.head(method, authority, path, body.unwrap_or_default().len());
            if !secure {
                return exchange(url, tcp, &head, body.unwrap_or_default()).await;
            }
            let tls = self.tls.clone().ok_or_else(|| HttpError::BadUrl {
                url: url.to_string(),
            })?;
            let host = authority
                .rsplit_once(':')
                .map_or(authority, |(host, _)| host)
                .trim_start_matches('[')
                .trim_end_matches(']');
            let name = ServerName::try_from(host.to_string()).map_err(|_| HttpError::BadUrl {
                url: url.to_string(),
            })?;
            let stream = tokio_rustls::TlsConnector::from(tls)
                .connect(name, tcp)
                .await
                .map_err(connect)?;
            exchange(url, stream, &head, body.unwrap_or_default()).await
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .unwrap_or_else(|_| {
                Err(HttpError::Timeout {
                    url: url.to_string(),
                    after_ms: timeout.as_millis() as u64,
                })
            })
    }

    fn head(&self, method: &str, authority: &str, path: &str, body_len: usize) -> String {
        let authorization = self
            .authorization
            .as_ref()
            .map(|value| format!("Authorization: {value}\r\n"))
            .unwrap_or_default();
        format!(
            "{method} {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\
             {authorization}Content-Type: application/json\r\nContent-Length: {body_len}\r\n\r\n"
        )
    }
}

/// Writes the request and reads the response until the server closes the connection.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    url: &str,
    mut stream: S,
    head: &str,
    body: &[u8],
) -> Result<HttpResponse, HttpError> {
    let io = |e: std::io::Error| HttpError::Io {
        url: url.to_string(),
        reason: e.to_string(),
    };
    stream.write_all(head.as_bytes()).await.map_err(io)?;
    // A server may answer before it has read the whole body (413 for one over its limit) and
    // close, so the rest of the body meets a reset connection. Its answer is already on the
    // way: read it, and report the write failure only if there is none.
    let written = stream.write_all(body).await;
    if let Err(e) = &written {
        if !matches!(
            e.kind(),
            std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
        ) {
            return Err(io(written.unwrap_err()));
        }
    }
    let mut raw = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let n = match stream.read(&mut chunk).await {
            Ok(n) => n,
            // A TLS server that closes without close_notify after a complete response (we asked
            // for `Connection: close`) is an end of stream, not a failure.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => 0,
            // After an early answer the connection may end in a reset; what came before it
            // is the answer.
            Err(_) if written.is_err() && !raw.is_empty() => 0,
            Err(e) => return Err(io(written.err().unwrap_or(e))),
        };
        if n == 0 {
            if raw.is_empty() {
                if let Err(e) = written {
                    return Err(io(e));
                }
            }
            break;
        }
        raw.extend_from_slice(&chunk[..n]);
        if raw.len() > MAX_RESPONSE_BYTES {
            return Err(HttpError::Malformed {
                url: url.to_string(),
                reason: format!("response larger than {MAX_RESPONSE_BYTES} bytes"),
            });
        }
    }
    parse_response(url, &raw)
}

/// Splits `http(s)://host:port/path` into (is https, `host:port`, `/path`).
fn split_url(url: &str) -> Result<(bool, &str, &str), HttpError> {
    let (secure, rest) = match url.strip_prefix("https://") {
        Some(rest) => (true, rest),
        None => (
            false,
            url.strip_prefix("http://")
                .ok_or_else(|| HttpError::BadUrl {
                    url: url.to_string(),
                })?,
        ),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() {
        return Err(HttpError::BadUrl {
            url: url.to_string(),
        });
    }
    Ok((secure, authority, path))
}

/// Sends one plain `http://` request (no TLS, no token) and reads the whole response.
pub async fn request(
    method: &str,
    url: &str,
    body: Option<&[u8]>,
    timeout: Duration,
) -> Result<HttpResponse, HttpError> {
    HttpClient::plain()
        .request(method, url, body, timeout)
        .await
}

fn parse_response(url: &str, raw: &[u8]) -> Result<HttpResponse, HttpError> {
    let malformed = |reason: &str| HttpError::Malformed {
        url: url.to_string(),
        reason: reason.to_string(),
    };
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| malformed("no end of headers"))?;
    let head = std::str::from_utf8(&raw[..split]).map_err(|_| malformed("headers not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or_else(|| malformed("bad status line"))?;
    let chunked = lines.any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let body = &raw[split + 4..];
    let body = if chunked {
        dechunk(body).ok_or_else(|| malformed("bad chunked body"))?
    } else {
        body.to_vec()
    };
    Ok(HttpResponse { status, body })
}

fn dechunk(mut body: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = body.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&body[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        body = &body[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(body.get(..size)?);
        body = body.get(size + 2..)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_and_chunked_responses() {
        let plain = b"HTTP/1.1 202 Accepted\r\ncontent-length: 2\r\n\r\n{}";
        let r = parse_response("u", plain).expect("plain");
        assert_eq!((r.status, r.body.as_slice()), (202, &b"{}"[..]));
        let chunked =
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        let r = parse_response("u", chunked).expect("chunked");
        assert_eq!(r.body, b"abcde");
        assert!(parse_response("u", b"garbage").is_err());
    }

    #[test]
    fn http_and_https_urls_are_split() {
        assert_eq!(
            split_url("http://127.0.0.1:8081/v1/x").expect("ok"),
            (false, "127.0.0.1:8081", "/v1/x")
        );
        assert_eq!(
            split_url("https://example.com").expect("ok"),
            (true, "example.com", "/")
        );
        assert!(split_url("ftp://example.com/").is_err());
        assert!(split_url("http:///x").is_err());
    }

    /// A server that answers 413 after the head and closes with the body unread (the kernel
    /// then resets the connection under the writing client).
    #[tokio::test]
    async fn an_early_answer_to_an_oversized_body_is_read_not_lost_to_the_reset() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.expect("accept");
            let mut head = vec![0u8; 1024];
            let _ = socket.read(&mut head).await;
            socket
                .write_all(
                    b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 13\r\n\r\n{\"error\":\"x\"}",
                )
                .await
                .expect("answer");
            // Dropped with most of the body unread: close sends a reset.
        });
        let body = vec![b'x'; 4 * 1024 * 1024];
        let url = format!("http://{addr}/v1/dr/traffic-shift");
        let response = request("POST", &url, Some(&body), Duration::from_secs(10))
            .await
            .expect("the early answer");
        assert_eq!(response.status, 413);
        server.await.expect("server");
    }
}
