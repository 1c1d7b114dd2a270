//! What a client of the cluster (the CLI, `arbiter up`, probe agents, the test and jepsen
//! harnesses) presents: the CA it trusts, optionally a client certificate, optionally a bearer
//! token file. One value gives both the gRPC options (SDK) and the HTTPS client, so the two
//! edges are always reached with the same credentials.

use std::path::{Path, PathBuf};

use arbiter_client::{BearerToken, ClientError, ClientOptions, ClientTls};

use super::TlsError;
use crate::auth::issue::OPERATOR_TOKEN_FILE;
use crate::certs::CA_CERT;
use crate::http_client::HttpClient;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientCredentials {
    /// The cluster CA (PEM). `None`: plain TCP (a cluster run without TLS on loopback).
    pub ca: Option<PathBuf>,
    /// A client certificate and key (PEM).
    pub identity: Option<(PathBuf, PathBuf)>,
    /// A file holding one bearer token (one line, the raw token).
    pub token_file: Option<PathBuf>,
    /// A bearer token given directly (`--auth-token`, `ARBITER_TOKEN`); wins over `token_file`.
    pub token: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("cannot read {path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Client(#[from] ClientError),
}

impl ClientCredentials {
    /// What `arbiter up` leaves in `data_dir`: `ca.pem` and `operator.token`, each if present.
    pub fn from_data_dir(data_dir: &Path) -> Self {
        let existing = |name: &str| Some(data_dir.join(name)).filter(|p| p.exists());
        ClientCredentials {
            ca: existing(CA_CERT),
            identity: None,
            token_file: existing(OPERATOR_TOKEN_FILE),
            token: None,
        }
    }

    /// SDK options (defaults otherwise) with this TLS and token.
    pub fn client_options(&self) -> Result<ClientOptions, CredentialsError> {
        let tls = match &self.ca {
            Some(ca) => Some(ClientTls {
                ca_pem: read(ca)?,
                identity: match &self.identity {
                    Some((cert, key)) => Some((read(cert)?, read(key)?)),
                    None => None,
                },
                server_name: None,
            }),
            None => None,
        };
        let token = match (&self.token, &self.token_file) {
            (Some(token), _) => Some(BearerToken::new(token)?),
            (None, Some(path)) => Some(BearerToken::from_file(path)?),
            (None, None) => None,
        };
        Ok(ClientOptions {
            tls,
            token,
            ..ClientOptions::default()
        })
    }

    /// The HTTP(S) client for the nodes' HTTP ports.
    pub fn http_client(&self) -> Result<HttpClient, CredentialsError> {
        let tls = match &self.ca {
            Some(ca) => Some(super::client_config(
                ca,
                self.identity
                    .as_ref()
                    .map(|(c, k)| (c.as_path(), k.as_path())),
                super::Alpn::Http1,
            )?),
            None => None,
        };
        let token = match (&self.token, &self.token_file) {
            (Some(token), _) => Some(token.trim().to_string()),
            (None, Some(path)) => Some(String::from_utf8_lossy(&read(path)?).trim().to_string()),
            (None, None) => None,
        };
        Ok(HttpClient::new(tls, token.as_deref()))
    }
}

fn read(path: &Path) -> Result<Vec<u8>, CredentialsError> {
    std::fs::read(path).map_err(|e| CredentialsError::Read {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}
