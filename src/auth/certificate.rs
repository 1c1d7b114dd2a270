//! Client-certificate identities: the certificates a TLS handshake verified, and the subject
//! name an identity is looked up by.
//!
//! Invariant: the subject is read only from a certificate the TLS layer has already verified
//! against the cluster CA (this module trusts the chain and only names its leaf); the first SAN
//! URI wins, then the subject CN, and a certificate with neither has no identity.

use std::sync::Arc;

use rustls_pki_types::CertificateDer;
use x509_parser::extensions::GeneralName;

/// The verified peer chain of a TLS connection, leaf first. The TLS acceptor of each edge puts
/// it into the request extensions; the auth layer reads it from there.
#[derive(Debug, Clone)]
pub struct PeerCertificates(pub Arc<Vec<CertificateDer<'static>>>);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CertificateError {
    #[error("the peer presented no certificate")]
    Empty,
    #[error("the client certificate is not valid DER X.509: {0}")]
    Malformed(String),
    #[error("the client certificate has neither a SAN URI nor a subject CN")]
    NoSubject,
}

impl PeerCertificates {
    /// The identity name of the leaf certificate.
    pub fn subject(&self) -> Result<String, CertificateError> {
        let leaf = self.0.first().ok_or(CertificateError::Empty)?;
        subject(leaf.as_ref())
    }

    /// The node id a node certificate names (DNS SAN `arbiter-node-<id>`, see
    /// [`crate::certs`]); `None` for any other certificate.
    pub fn node_id(&self) -> Option<crate::raft_types::NodeId> {
        let leaf = self.0.first()?;
        let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref()).ok()?;
        let san = cert.subject_alternative_name().ok()??;
        san.value.general_names.iter().find_map(|name| match name {
            GeneralName::DNSName(dns) => crate::certs::node_id_of_name(dns),
            _ => None,
        })
    }

    /// The verified client chain of the connection a request came in on: tonic's TLS connect
    /// info (gRPC) or the HTTP edge's connection info ([`crate::tls::incoming`]).
    pub fn of(extensions: &axum::http::Extensions) -> Option<PeerCertificates> {
        use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
        if let Some(tls) = extensions.get::<TlsConnectInfo<TcpConnectInfo>>() {
            return tls.peer_certs().map(PeerCertificates);
        }
        extensions
            .get::<axum::extract::ConnectInfo<crate::tls::incoming::ClientChain>>()
            .and_then(|info| info.0 .0.clone())
    }
}

/// The identity name a DER certificate carries: its first SAN URI (e.g.
/// `arbiter://proxy/proxy-east`), else its subject common name.
pub fn subject(der: &[u8]) -> Result<String, CertificateError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| CertificateError::Malformed(e.to_string()))?;
    let san = cert
        .subject_alternative_name()
        .map_err(|e| CertificateError::Malformed(e.to_string()))?;
    let uri = san.and_then(|san| {
        san.value.general_names.iter().find_map(|name| match name {
            GeneralName::URI(uri) => Some(uri.to_string()),
            _ => None,
        })
    });
    if let Some(uri) = uri {
        return Ok(uri);
    }
    let common_name = cert
        .subject()
        .iter_common_name()
        .find_map(|cn| cn.as_str().ok().map(str::to_string));
    common_name.ok_or(CertificateError::NoSubject)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, DnType, KeyPair, SanType};

    fn certificate(cn: Option<&str>, sans: Vec<SanType>) -> CertificateDer<'static> {
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        if let Some(cn) = cn {
            params.distinguished_name.push(DnType::CommonName, cn);
        }
        params.subject_alt_names = sans;
        let key = KeyPair::generate().expect("key pair");
        params.self_signed(&key).expect("self-signed").der().clone()
    }

    fn uri(s: &str) -> SanType {
        SanType::URI(s.try_into().expect("ia5 string"))
    }

    #[test]
    fn san_uri_is_the_identity_even_when_a_cn_is_present() {
        let cert = certificate(
            Some("ignored-cn"),
            vec![
                SanType::DnsName("proxy.example".try_into().expect("dns")),
                uri("arbiter://proxy/proxy-east"),
            ],
        );
        assert_eq!(
            subject(cert.as_ref()),
            Ok("arbiter://proxy/proxy-east".to_string())
        );
    }

    #[test]
    fn common_name_is_the_identity_without_a_san_uri() {
        let cert = certificate(Some("probe-london"), vec![]);
        let chain = PeerCertificates(Arc::new(vec![cert]));
        assert_eq!(chain.subject(), Ok("probe-london".to_string()));
    }

    #[test]
    fn certificate_without_uri_or_cn_has_no_identity() {
        let cert = certificate(
            None,
            vec![SanType::DnsName("node.example".try_into().expect("dns"))],
        );
        assert_eq!(subject(cert.as_ref()), Err(CertificateError::NoSubject));
    }

    #[test]
    fn garbage_and_empty_chains_are_typed_errors() {
        assert!(matches!(
            subject(b"not a certificate"),
            Err(CertificateError::Malformed(_))
        ));
        let empty = PeerCertificates(Arc::new(vec![]));
        assert_eq!(empty.subject(), Err(CertificateError::Empty));
    }
}
