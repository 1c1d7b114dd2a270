//! `arbiter serve`: one node, from a TOML file and/or flags (a flag overrides the file).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use crate::config::{PeerConfig, Profile, RawNodeConfig};

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// TOML config file; every field can also be given as a flag.
    #[arg(long)]
    config: Option<PathBuf>,
    #[arg(long)]
    node_id: Option<u64>,
    #[arg(long)]
    region: Option<String>,
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// gRPC listen address (Raft and public services), e.g. 0.0.0.0:7001; port 0 = any.
    #[arg(long)]
    grpc_listen: Option<String>,
    /// HTTP listen address, e.g. 0.0.0.0:8081; port 0 = any.
    #[arg(long)]
    http_listen: Option<String>,
    /// Address peers and clients dial for gRPC (default: the bound listen address).
    #[arg(long)]
    grpc_advertise: Option<String>,
    #[arg(long)]
    http_advertise: Option<String>,
    #[arg(long, value_enum)]
    profile: Option<Profile>,
    #[arg(long)]
    heartbeat_ms: Option<u64>,
    #[arg(long)]
    election_min_ms: Option<u64>,
    #[arg(long)]
    election_max_ms: Option<u64>,
    #[arg(long)]
    write_timeout_ms: Option<u64>,
    #[arg(long)]
    snapshot_every: Option<u64>,
    #[arg(long)]
    keep_logs: Option<u64>,
    #[arg(long)]
    wal_segment_bytes: Option<u64>,
    /// UNSAFE, for crash-test negative controls only: skip every fsync of the storage.
    #[arg(long, hide = true)]
    unsafe_no_fsync: bool,
    /// Initialize a fresh cluster with this node and the --peer list as voters (idempotent).
    #[arg(long)]
    bootstrap: bool,
    /// A bootstrap peer: ID=REGION@GRPC_ADDR,HTTP_ADDR (repeatable).
    #[arg(long = "peer", value_parser = parse_peer)]
    peers: Vec<PeerConfig>,
    /// Dial peer ID at ADDR instead of its advertised address: ID=ADDR (repeatable).
    #[arg(long = "dial", value_parser = parse_dial)]
    dial: Vec<(u64, String)>,
    /// Tokens file (`[[tokens]]` entries with SHA-256 digests); re-read on SIGHUP.
    #[arg(long)]
    auth_tokens_file: Option<PathBuf>,
    /// Serve even with no identities configured: every caller becomes an anonymous operator.
    /// For throwaway experiments only; logged loudly.
    #[arg(long)]
    insecure: bool,
}

fn parse_dial(s: &str) -> Result<(u64, String), String> {
    let (id, addr) = s
        .split_once('=')
        .ok_or_else(|| format!("expected ID=ADDR, got {s:?}"))?;
    let id = id.parse().map_err(|_| format!("bad peer id in {s:?}"))?;
    Ok((id, addr.to_string()))
}

fn parse_peer(s: &str) -> Result<PeerConfig, String> {
    let err = || format!("expected ID=REGION@GRPC_ADDR,HTTP_ADDR, got {s:?}");
    let (id, rest) = s.split_once('=').ok_or_else(err)?;
    let (region, addrs) = rest.split_once('@').ok_or_else(err)?;
    let (grpc, http) = addrs.split_once(',').ok_or_else(err)?;
    Ok(PeerConfig {
        id: id.parse().map_err(|_| err())?,
        region: region.to_string(),
        grpc: grpc.to_string(),
        http: http.to_string(),
    })
}

impl ServeArgs {
    fn into_raw(self) -> anyhow::Result<RawNodeConfig> {
        let mut raw = match &self.config {
            Some(path) => RawNodeConfig::from_file(path)?,
            None => RawNodeConfig::default(),
        };
        macro_rules! overlay {
            ($($field:ident),*) => { $( if self.$field.is_some() { raw.$field = self.$field; } )* };
        }
        overlay!(
            node_id,
            region,
            data_dir,
            grpc_listen,
            http_listen,
            grpc_advertise,
            http_advertise,
            profile,
            heartbeat_ms,
            election_min_ms,
            election_max_ms,
            write_timeout_ms,
            snapshot_every,
            keep_logs,
            wal_segment_bytes
        );
        raw.bootstrap |= self.bootstrap;
        raw.unsafe_no_fsync |= self.unsafe_no_fsync;
        if !self.peers.is_empty() {
            raw.peers = self.peers;
        }
        raw.dial.extend(self.dial);
        if self.auth_tokens_file.is_some() {
            raw.auth.tokens_file = self.auth_tokens_file;
        }
        raw.insecure |= self.insecure;
        Ok(raw)
    }
}

pub async fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let config = args
        .into_raw()?
        .validate()
        .context("invalid configuration")?;
    crate::node::run(config, super::shutdown_signal()).await?;
    Ok(ExitCode::SUCCESS)
}
