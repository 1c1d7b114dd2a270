//! TLS for a node's three ports, from PEM files that can be reloaded while the node runs.
//!
//! | port | server side | client certificate |
//! |---|---|---|
//! | peer (Raft) | node certificate | required: signed by the cluster CA **and** carrying a node identity (DNS SAN `arbiter-node-<id>`, see [`crate::certs`]) |
//! | client gRPC | node certificate | optional; if presented, it must chain to the cluster CA |
//! | client HTTP | node certificate | optional, as for gRPC |
//!
//! A node dials its peers with its own certificate and verifies the peer's server certificate
//! against the name `arbiter-node-<peer id>`, not against the dialled address, so a TCP proxy
//! on the link (jepsen) or a changed address does not matter, and one node cannot pose as
//! another.
//!
//! Invariant: every handshake uses the configuration built from the files as they were at the
//! last successful (re)load. [`NodeTls::reload`] builds everything first and swaps only if all
//! of it is valid, so a bad file on SIGHUP leaves the node serving with the old certificates.
//! The CA file may hold several certificates (a bundle), which is how a CA is rotated: add the
//! new CA everywhere, reissue nodes one at a time, then drop the old CA.

pub mod credentials;
pub mod incoming;

pub use credentials::{ClientCredentials, CredentialsError};

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, DistinguishedName, RootCertStore, ServerConfig, SignatureScheme};
use serde::{Deserialize, Serialize};

use crate::certs::node_id_of_name;

/// ALPN for gRPC: HTTP/2 only.
const ALPN_H2: &[u8] = b"h2";
/// ALPN for the HTTP port: HTTP/2 or HTTP/1.1 (curl, browsers).
const ALPN_HTTP1: &[u8] = b"http/1.1";

/// Where a node's TLS material is (`[tls]` in the config file, `--tls-*` flags).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsPaths {
    /// The cluster CA certificate(s), PEM; several = a bundle (CA rotation).
    pub ca: PathBuf,
    /// This node's certificate chain, PEM.
    pub cert: PathBuf,
    /// This node's private key, PEM.
    pub key: PathBuf,
}

impl TlsPaths {
    /// The `arbiter serve` flags that give a node these files.
    pub fn serve_args(&self) -> [&std::ffi::OsStr; 6] {
        [
            "--tls-ca".as_ref(),
            self.ca.as_os_str(),
            "--tls-cert".as_ref(),
            self.cert.as_os_str(),
            "--tls-key".as_ref(),
            self.key.as_os_str(),
        ]
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("{path} holds no {what}")]
    Empty { path: PathBuf, what: &'static str },
    #[error("invalid TLS setup: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("invalid client-certificate verifier: {0}")]
    Verifier(String),
}

/// The rustls configurations of one node, all built from the same files.
struct Configs {
    grpc: Arc<ServerConfig>,
    http: Arc<ServerConfig>,
    peer: Arc<ServerConfig>,
    dial: Arc<ClientConfig>,
}

/// Which listening port a configuration is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortKind {
    Peer,
    Grpc,
    Http,
}

impl PortKind {
    pub fn name(self) -> &'static str {
        match self {
            PortKind::Peer => "peer",
            PortKind::Grpc => "grpc",
            PortKind::Http => "http",
        }
    }
}

/// A node's TLS state: the files it was loaded from and the configurations built from them.
pub struct NodeTls {
    paths: TlsPaths,
    /// A std lock: held only to clone or swap an `Arc`, never across an await.
    current: RwLock<Arc<Configs>>,
}

impl NodeTls {
    pub fn load(paths: TlsPaths) -> Result<Arc<NodeTls>, TlsError> {
        let configs = build(&paths)?;
        Ok(Arc::new(NodeTls {
            paths,
            current: RwLock::new(Arc::new(configs)),
        }))
    }

    /// Rebuilds every configuration from the files; keeps the old ones if anything is wrong.
    /// New handshakes use the result; established connections keep their session.
    pub fn reload(&self) -> Result<(), TlsError> {
        let configs = build(&self.paths)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(configs);
        Ok(())
    }

    fn configs(&self) -> Arc<Configs> {
        // Poisoning cannot leave a half-written Arc; reading it is sound.
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The server configuration for handshakes on `port`.
    pub fn server(&self, port: PortKind) -> Arc<ServerConfig> {
        let configs = self.configs();
        match port {
            PortKind::Peer => configs.peer.clone(),
            PortKind::Grpc => configs.grpc.clone(),
            PortKind::Http => configs.http.clone(),
        }
    }

    /// The client configuration for dialling peers (presents this node's certificate).
    pub fn dial(&self) -> Arc<ClientConfig> {
        self.configs().dial.clone()
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn build(paths: &TlsPaths) -> Result<Configs, TlsError> {
    let roots = Arc::new(read_roots(&paths.ca)?);
    let chain = read_certs(&paths.cert)?;
    let key = read_key(&paths.key)?;
    let provider = provider();

    let optional = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(|e| TlsError::Verifier(e.to_string()))?;
    let required = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
        .build()
        .map_err(|e| TlsError::Verifier(e.to_string()))?;
    let server = |verifier: Arc<dyn ClientCertVerifier>, alpn: &[&[u8]]| {
        let mut config = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain.clone(), key.clone_key())?;
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok::<_, TlsError>(Arc::new(config))
    };
    let peer_verifier = Arc::new(NodeIdentityVerifier { inner: required });
    Ok(Configs {
        grpc: server(optional.clone(), &[ALPN_H2])?,
        http: server(optional, &[ALPN_H2, ALPN_HTTP1])?,
        peer: server(peer_verifier, &[ALPN_H2])?,
        dial: client_config_from(roots, Some((chain, key)), &[ALPN_H2])?,
    })
}

/// A server configuration presenting the chain in `cert` with `key`, asking for no client
/// certificate, speaking HTTP/1.1 (an edge router's public listener).
pub fn http1_server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(read_certs(cert)?, read_key(key)?)?;
    config.alpn_protocols = vec![ALPN_HTTP1.to_vec()];
    Ok(Arc::new(config))
}

/// The client configuration an edge dials `https://` gateways with: trusting the CA(s) in `ca`,
/// or nothing at all without one (then only `http://` gateways can be reached).
pub fn http1_client_config(ca: Option<&Path>) -> Result<Arc<ClientConfig>, TlsError> {
    match ca {
        // No ALPN here: the connector offers the protocols it speaks.
        Some(ca) => client_config_from(Arc::new(read_roots(ca)?), None, &[]),
        None => {
            // Trusts no certificate: every https:// handshake fails verification.
            let config = ClientConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()?
                .with_root_certificates(RootCertStore::empty())
                .with_no_client_auth();
            Ok(Arc::new(config))
        }
    }
}

/// A client configuration trusting the CA(s) in `ca`, presenting `identity` (cert, key) if
/// given.
pub fn client_config(
    ca: &Path,
    identity: Option<(&Path, &Path)>,
    alpn: Alpn,
) -> Result<Arc<ClientConfig>, TlsError> {
    let roots = Arc::new(read_roots(ca)?);
    let identity = match identity {
        Some((cert, key)) => Some((read_certs(cert)?, read_key(key)?)),
        None => None,
    };
    let alpn = match alpn {
        Alpn::H2 => ALPN_H2,
        Alpn::Http1 => ALPN_HTTP1,
    };
    client_config_from(roots, identity, &[alpn])
}

fn client_config_from(
    roots: Arc<RootCertStore>,
    identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    alpn: &[&[u8]],
) -> Result<Arc<ClientConfig>, TlsError> {
    let provider = provider();
    let verifier = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
        .build()
        .map_err(|e| TlsError::Verifier(e.to_string()))?;
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_webpki_verifier(verifier);
    let mut config = match identity {
        Some((chain, key)) => builder.with_client_auth_cert(chain, key)?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// A tonic connector that dials the URI's host:port and runs a TLS handshake with the
/// configuration `config` returns at that moment, verifying the server as `server_name`
/// (whatever address is dialled, so a proxy in between changes nothing).
pub fn connector<F>(
    config: F,
    server_name: ServerName<'static>,
) -> impl tower::Service<
    tonic::transport::Uri,
    Response = hyper_util::rt::TokioIo<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>,
    Error = std::io::Error,
    Future = impl Send,
> + Send
       + Clone
       + 'static
where
    F: Fn() -> Arc<ClientConfig> + Send + Sync + Clone + 'static,
{
    tower::service_fn(move |uri: tonic::transport::Uri| {
        let config = config();
        let server_name = server_name.clone();
        async move {
            let authority = uri
                .authority()
                .ok_or_else(|| std::io::Error::other(format!("no host:port in {uri}")))?
                .to_string();
            let tcp = tokio::net::TcpStream::connect(authority).await?;
            tcp.set_nodelay(true)?;
            let stream = tokio_rustls::TlsConnector::from(config)
                .connect(server_name, tcp)
                .await?;
            Ok(hyper_util::rt::TokioIo::new(stream))
        }
    })
}

/// Which protocol a client configuration offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alpn {
    /// gRPC.
    H2,
    /// The HTTP/1.1 client ([`crate::http_client`]).
    Http1,
}

/// The server name a peer's certificate is verified against.
pub fn peer_server_name(id: crate::raft_types::NodeId) -> ServerName<'static> {
    // A node name is letters, digits and dashes: always a valid DNS name.
    ServerName::try_from(crate::certs::node_server_name(id))
        .unwrap_or_else(|_| ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()))
}

fn read_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in read_certs(path)? {
        roots.add(cert)?;
    }
    Ok(roots)
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read_file(path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Read {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Empty {
            path: path.to_path_buf(),
            what: "certificate",
        });
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = read_file(path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|_| TlsError::Empty {
        path: path.to_path_buf(),
        what: "private key",
    })
}

fn read_file(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError::Read {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// The peer port's verifier: the certificate must chain to the cluster CA (the inner WebPKI
/// verifier) and name a node (`arbiter-node-<id>`). An operator's or a proxy's certificate,
/// valid on the client ports, fails the handshake here.
#[derive(Debug)]
struct NodeIdentityVerifier {
    inner: Arc<dyn ClientCertVerifier>,
}

impl ClientCertVerifier for NodeIdentityVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        let cert = webpki::EndEntityCert::try_from(end_entity).map_err(|_| {
            rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding)
        })?;
        if cert
            .valid_dns_names()
            .any(|name| node_id_of_name(name).is_some())
        {
            Ok(verified)
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
