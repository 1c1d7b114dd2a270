//! What the examples share: where the arbiter cluster is.

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
}
