//! What the examples share: where the arbiter cluster is and how to authenticate to it.

use std::path::PathBuf;

use arbiter_client::{BearerToken, ClientError, ClientOptions, ClientTls};
use clap::Args;

/// The cluster to talk to.
#[derive(Args, Debug)]
pub struct Cluster {
    /// Arbiter gRPC endpoints, comma-separated. Default: the cluster `arbiter up` starts.
    #[arg(
        long,
        env = "ARBITER_ENDPOINTS",
        value_delimiter = ',',
        default_value = "127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003"
    )]
    pub endpoints: Vec<String>,
    /// Data dir of `arbiter up`: its ca.pem and operator.token are used unless given below.
    #[arg(long, env = "ARBITER_DATA_DIR", default_value = "arbiter-data")]
    pub data_dir: PathBuf,
    /// The cluster CA (PEM) [default: <data-dir>/ca.pem if present, else plain TCP].
    #[arg(long, env = "ARBITER_CA")]
    pub ca: Option<PathBuf>,
    /// A client certificate (PEM), with --key.
    #[arg(long, requires = "key")]
    pub cert: Option<PathBuf>,
    #[arg(long, requires = "cert")]
    pub key: Option<PathBuf>,
    /// A bearer token (e.g. a proxy's, from `arbiter auth token`); wins over --token-file.
    #[arg(long, env = "ARBITER_TOKEN", hide_env_values = true)]
    pub auth_token: Option<String>,
    /// A bearer-token file (one line) [default: <data-dir>/operator.token if present].
    #[arg(long, env = "ARBITER_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// Plain TCP even if a CA is found (a cluster started with `arbiter up --no-tls`).
    #[arg(long)]
    pub no_tls: bool,
}

impl Cluster {
    /// Default client options with these credentials.
    pub fn options(&self) -> Result<ClientOptions, ClientError> {
        let present = |name: &str| Some(self.data_dir.join(name)).filter(|p| p.exists());
        let read = |path: &PathBuf| {
            std::fs::read(path).map_err(|e| ClientError::InvalidRequest {
                reason: format!("cannot read {}: {e}", path.display()),
            })
        };
        let ca = self.ca.clone().or_else(|| present("ca.pem"));
        let tls = match ca.filter(|_| !self.no_tls) {
            Some(ca) => Some(ClientTls {
                ca_pem: read(&ca)?,
                identity: match (&self.cert, &self.key) {
                    (Some(cert), Some(key)) => Some((read(cert)?, read(key)?)),
                    _ => None,
                },
                server_name: None,
            }),
            None => None,
        };
        let token = match (&self.auth_token, self.token_file.clone()) {
            (Some(token), _) => Some(BearerToken::new(token)?),
            (None, file) => match file.or_else(|| present("operator.token")) {
                Some(path) => Some(BearerToken::from_file(&path)?),
                None => None,
            },
        };
        Ok(ClientOptions {
            tls,
            token,
            ..ClientOptions::default()
        })
    }
}
