//! What the examples share: where the arbiter cluster is, and how to authenticate to it.

use std::path::PathBuf;

use arbiter_client::{BearerToken, ClientError, ClientOptions};
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
    /// Bearer token (e.g. a proxy's). Default: the operator token `arbiter up` wrote.
    #[arg(long, env = "ARBITER_TOKEN", hide_env_values = true)]
    pub auth_token: Option<String>,
    /// Where `arbiter up` keeps its data (and `operator.token`).
    #[arg(long, default_value = "arbiter-data")]
    pub data_dir: PathBuf,
}

impl Cluster {
    /// Client options carrying the token: `--auth-token`, else `<data-dir>/operator.token`.
    pub fn options(&self) -> Result<ClientOptions, ClientError> {
        let token = self
            .auth_token
            .clone()
            .or_else(|| std::fs::read_to_string(self.data_dir.join("operator.token")).ok());
        Ok(ClientOptions {
            token: token.map(|t| BearerToken::new(&t)).transpose()?,
            ..ClientOptions::default()
        })
    }
}
