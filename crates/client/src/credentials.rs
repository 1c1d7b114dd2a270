//! How the SDK reaches a node securely: TLS (the cluster CA, optionally a client certificate)
//! and a bearer token sent as `authorization: Bearer …` metadata on every call.
//!
//! Invariant: every channel the SDK makes goes through [`channel`], so a call can never leave
//! without the configured TLS and token; the token never appears in `Debug` output.

use std::time::Duration;

use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::service::Interceptor;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Request, Status};

use crate::error::ClientError;

/// TLS towards the nodes' client ports.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientTls {
    /// The cluster CA certificate(s), PEM.
    pub ca_pem: Vec<u8>,
    /// A client certificate and its key (PEM), for identities authenticated by certificate.
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
    /// The name the node certificates are checked against; default: the host of each
    /// endpoint (node certificates made by `arbiter certs` / `arbiter up` carry the host names
    /// given at issue, `localhost`, `127.0.0.1` and `arbiter-node-<id>`).
    pub server_name: Option<String>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls")
            .field("ca_pem_bytes", &self.ca_pem.len())
            .field("client_certificate", &self.identity.is_some())
            .field("server_name", &self.server_name)
            .finish()
    }
}

/// A bearer token; `Debug` shows only that one is set.
#[derive(Clone, PartialEq, Eq)]
pub struct BearerToken(String);

impl BearerToken {
    /// A token as issued (the raw value, surrounding whitespace ignored).
    pub fn new(token: impl AsRef<str>) -> Result<Self, ClientError> {
        let token = token.as_ref().trim();
        let printable = token.bytes().all(|b| b.is_ascii_graphic());
        if token.is_empty() || !printable {
            return Err(ClientError::InvalidRequest {
                reason: "bearer token must be non-empty printable ASCII".into(),
            });
        }
        Ok(BearerToken(token.to_string()))
    }

    /// Reads a token file: one line, the raw token.
    pub fn from_file(path: &std::path::Path) -> Result<Self, ClientError> {
        let text = std::fs::read_to_string(path).map_err(|e| ClientError::InvalidRequest {
            reason: format!("cannot read token file {}: {e}", path.display()),
        })?;
        Self::new(text)
    }

    /// The `authorization` header value.
    pub fn header_value(&self) -> String {
        format!("Bearer {}", self.0)
    }
}

impl std::fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BearerToken(<redacted>)")
    }
}

/// Adds the `authorization` metadata to every request.
#[derive(Clone)]
pub struct Credentials {
    authorization: Option<MetadataValue<Ascii>>,
}

impl Interceptor for Credentials {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(value) = &self.authorization {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// A channel to one node with the credentials attached.
pub type AuthChannel = InterceptedService<Channel, Credentials>;

/// How channels are made: connect timeout, TLS, token.
#[derive(Clone, Debug)]
pub(crate) struct ChannelFactory {
    connect_timeout: Duration,
    tls: Option<ClientTls>,
    token: Option<BearerToken>,
}

impl ChannelFactory {
    pub(crate) fn new(
        connect_timeout: Duration,
        tls: Option<ClientTls>,
        token: Option<BearerToken>,
    ) -> Self {
        ChannelFactory {
            connect_timeout,
            tls,
            token,
        }
    }

    /// A lazily connected channel to `addr` (`host:port`, or a URI whose scheme decides:
    /// `https://` needs TLS options, `http://` is plain). A bare `host:port` uses TLS when TLS
    /// options are set.
    pub(crate) fn channel(&self, addr: &str) -> Result<AuthChannel, ClientError> {
        let invalid = |reason: String| ClientError::InvalidEndpoint {
            endpoint: addr.to_string(),
            reason,
        };
        let addr = addr.trim();
        if addr.is_empty() {
            return Err(invalid("empty".into()));
        }
        let uri = if addr.contains("://") {
            addr.to_string()
        } else if self.tls.is_some() {
            format!("https://{addr}")
        } else {
            format!("http://{addr}")
        };
        let mut endpoint = Endpoint::from_shared(uri.clone())
            .map_err(|e| invalid(e.to_string()))?
            .connect_timeout(self.connect_timeout)
            // Keep-alives (and single-request renewals) are small: do not let Nagle hold them.
            .tcp_nodelay(true)
            // Notice a dead or frozen peer on an idle connection instead of on the next call.
            .http2_keep_alive_interval(Duration::from_secs(5))
            .keep_alive_timeout(Duration::from_secs(5));
        if uri.starts_with("https://") {
            let tls = self
                .tls
                .as_ref()
                .ok_or_else(|| invalid("https endpoint but no TLS options (CA) given".into()))?;
            let mut config =
                ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&tls.ca_pem));
            if let Some((cert, key)) = &tls.identity {
                config = config.identity(Identity::from_pem(cert, key));
            }
            if let Some(name) = &tls.server_name {
                config = config.domain_name(name.clone());
            }
            endpoint = endpoint
                .tls_config(config)
                .map_err(|e| invalid(e.to_string()))?;
        }
        let authorization = match &self.token {
            Some(token) => Some(
                token
                    .header_value()
                    .parse()
                    .map_err(|_| invalid("bearer token is not valid metadata".into()))?,
            ),
            None => None,
        };
        Ok(InterceptedService::new(
            endpoint.connect_lazy(),
            Credentials { authorization },
        ))
    }
}

/// A channel to one node with `options`' TLS and token, for the services `ArbiterClient` does
/// not wrap (cluster administration, replication, routing).
pub fn channel(addr: &str, options: &crate::ClientOptions) -> Result<AuthChannel, ClientError> {
    options.channel_factory().channel(addr)
}
