//! A minimal HTTP/1.1 client for plain `http://` URLs: probe agents polling regional health
//! checks, webhook drivers and the CLI. One request per connection (`Connection: close`), a
//! deadline on the whole exchange, and a response-size cap, so a misbehaving peer can neither
//! hang nor flood the caller.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest response body read; anything longer is an error rather than a memory spike.
pub const MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum HttpError {
    #[error("unsupported URL {url:?}: only http://host:port/path is supported")]
    BadUrl { url: String },
    #[error("{url}: {reason}")]
    Io { url: String, reason: String },
    #[error("{url}: no answer within {after_ms} ms")]
    Timeout { url: String, after_ms: u64 },
    #[error("{url}: malformed response: {reason}")]
    Malformed { url: String, reason: String },
    #[error("the bearer token is empty or contains control characters")]
    BadToken,
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

/// Splits `http://host:port/path` into (`host:port`, `/path`).
fn split_url(url: &str) -> Result<(&str, &str), HttpError> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| HttpError::BadUrl {
            url: url.to_string(),
        })?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() {
        return Err(HttpError::BadUrl {
            url: url.to_string(),
        });
    }
    Ok((authority, path))
}

/// Sends one request without credentials and reads the whole response, within `timeout`.
pub async fn request(
    method: &str,
    url: &str,
    body: Option<&[u8]>,
    timeout: Duration,
) -> Result<HttpResponse, HttpError> {
    request_as(None, method, url, body, timeout).await
}

/// [`request`] with `Authorization: Bearer <token>` when `token` is given.
pub async fn request_as(
    token: Option<&str>,
    method: &str,
    url: &str,
    body: Option<&[u8]>,
    timeout: Duration,
) -> Result<HttpResponse, HttpError> {
    let (authority, path) = split_url(url)?;
    let authorization = match token.map(str::trim) {
        // A token is one header value: control characters would split the request.
        Some(t) if t.is_empty() || t.chars().any(|c| c.is_control()) => {
            return Err(HttpError::BadToken)
        }
        Some(t) => format!("Authorization: Bearer {t}\r\n"),
        None => String::new(),
    };
    let exchange = async {
        let io = |e: std::io::Error| HttpError::Io {
            url: url.to_string(),
            reason: e.to_string(),
        };
        let mut stream = TcpStream::connect(authority).await.map_err(io)?;
        let body = body.unwrap_or_default();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\
             Content-Type: application/json\r\n{authorization}Content-Length: {}\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).await.map_err(io)?;
        stream.write_all(body).await.map_err(io)?;
        let mut raw = Vec::new();
        let mut chunk = [0u8; 8192];
        loop {
            let n = stream.read(&mut chunk).await.map_err(io)?;
            if n == 0 {
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
    fn only_plain_http_urls_are_accepted() {
        assert_eq!(
            split_url("http://127.0.0.1:8081/v1/x").expect("ok"),
            ("127.0.0.1:8081", "/v1/x")
        );
        assert!(split_url("https://example.com/").is_err());
        assert!(split_url("http:///x").is_err());
    }
}
