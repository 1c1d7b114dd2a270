//! `arbiter serve`: one node, from a TOML file and/or flags (a flag overrides the file).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use tokio::sync::oneshot;

use super::rejoin;
use crate::config::{PeerConfig, Profile, RawNodeConfig};
use crate::tls::{ClientCredentials, TlsPaths};

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
    /// Serve socket NAME (grpc, http) on inherited descriptor FD instead of binding its
    /// --NAME-listen address: NAME=FD (repeatable). A supervisor that binds the sockets once
    /// and hands them to every restart uses this, so a node's port is never released.
    #[arg(long = "listen-fd", value_parser = parse_listen_fd)]
    listen_fds: Vec<(String, i32)>,
    #[arg(long)]
    http_advertise: Option<String>,
    /// Peer (Raft) listen address, e.g. 0.0.0.0:9001; port 0 = any.
    #[arg(long)]
    peer_listen: Option<String>,
    /// Address peers dial for Raft (default: the bound peer listen address).
    #[arg(long)]
    peer_advertise: Option<String>,
    /// Cluster CA certificate(s), PEM (with --tls-cert and --tls-key: TLS on every port).
    #[arg(long, requires_all = ["tls_cert", "tls_key"])]
    tls_ca: Option<PathBuf>,
    /// This node's certificate, PEM (DNS SAN arbiter-node-<id>).
    #[arg(long, requires_all = ["tls_ca", "tls_key"])]
    tls_cert: Option<PathBuf>,
    /// This node's private key, PEM.
    #[arg(long, requires_all = ["tls_ca", "tls_cert"])]
    tls_key: Option<PathBuf>,
    /// Accept plain TCP on non-loopback addresses (no TLS) and, with no identities configured,
    /// every caller as an anonymous operator. For throwaway experiments only; logged loudly.
    #[arg(long)]
    insecure: bool,
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
    /// With an empty data dir it first asks the peers and refuses if they already form a
    /// cluster; it waits while a peer is unreachable.
    #[arg(long)]
    bootstrap: bool,
    /// A new member: start with an empty data dir and wait to be added (`arbiter member add`)
    /// or initialized; no part in Raft until then. Ignored once the dir belongs to a cluster.
    #[arg(long)]
    join: bool,
    /// This member lost its data dir: rejoin through the leader (remove from the voters, add
    /// as a learner, catch up, promote). Idempotent; safe to rerun if interrupted.
    #[arg(long)]
    rejoin: bool,
    /// gRPC endpoints of the cluster for --rejoin, comma-separated (default: the --peer list).
    #[arg(long, value_delimiter = ',')]
    endpoints: Vec<String>,
    /// A bootstrap peer: ID=REGION@GRPC_ADDR,HTTP_ADDR[,PEER_ADDR] (repeatable).
    #[arg(long = "peer", value_parser = parse_peer)]
    peers: Vec<PeerConfig>,
    /// Dial peer ID at ADDR instead of its advertised address: ID=ADDR (repeatable).
    #[arg(long = "dial", value_parser = parse_dial)]
    dial: Vec<(u64, String)>,
    /// The region leadership should live in (`none`: wherever elections put it). Default: the
    /// region that is neither the DR primary nor its failover target.
    #[arg(long)]
    preferred_leader: Option<String>,
    /// Tokens file (`[[tokens]]` entries with SHA-256 digests); re-read on SIGHUP.
    #[arg(long)]
    auth_tokens_file: Option<PathBuf>,
}

fn parse_dial(s: &str) -> Result<(u64, String), String> {
    let (id, addr) = s
        .split_once('=')
        .ok_or_else(|| format!("expected ID=ADDR, got {s:?}"))?;
    let id = id.parse().map_err(|_| format!("bad peer id in {s:?}"))?;
    Ok((id, addr.to_string()))
}

fn parse_listen_fd(s: &str) -> Result<(String, i32), String> {
    let (name, fd) = s
        .split_once('=')
        .ok_or_else(|| format!("expected NAME=FD, got {s:?}"))?;
    let fd = fd.parse().map_err(|_| format!("bad descriptor in {s:?}"))?;
    Ok((name.to_string(), fd))
}

pub(super) fn parse_peer(s: &str) -> Result<PeerConfig, String> {
    let err = || format!("expected ID=REGION@GRPC_ADDR,HTTP_ADDR[,PEER_ADDR], got {s:?}");
    let (id, rest) = s.split_once('=').ok_or_else(err)?;
    let (region, addrs) = rest.split_once('@').ok_or_else(err)?;
    let (grpc, rest) = addrs.split_once(',').ok_or_else(err)?;
    let (http, peer) = match rest.split_once(',') {
        Some((http, peer)) => (http, Some(peer.to_string())),
        None => (rest, None),
    };
    Ok(PeerConfig {
        id: id.parse().map_err(|_| err())?,
        region: region.to_string(),
        grpc: grpc.to_string(),
        http: http.to_string(),
        peer,
    })
}

impl ServeArgs {
    pub(super) fn into_raw(self) -> anyhow::Result<RawNodeConfig> {
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
            peer_listen,
            peer_advertise,
            profile,
            heartbeat_ms,
            election_min_ms,
            election_max_ms,
            write_timeout_ms,
            snapshot_every,
            keep_logs,
            wal_segment_bytes
        );
        if let (Some(ca), Some(cert), Some(key)) = (self.tls_ca, self.tls_cert, self.tls_key) {
            raw.tls = Some(TlsPaths { ca, cert, key });
        }
        raw.insecure |= self.insecure;
        raw.bootstrap |= self.bootstrap;
        raw.join |= self.join;
        raw.rejoin |= self.rejoin;
        if !self.endpoints.is_empty() {
            raw.endpoints = self.endpoints;
        }
        raw.unsafe_no_fsync |= self.unsafe_no_fsync;
        if !self.peers.is_empty() {
            raw.peers = self.peers;
        }
        raw.dial.extend(self.dial);
        raw.listen_fds.extend(self.listen_fds);
        if self.auth_tokens_file.is_some() {
            raw.auth.tokens_file = self.auth_tokens_file;
        }
        if self.preferred_leader.is_some() {
            raw.raft.preferred_leader = self.preferred_leader;
        }
        Ok(raw)
    }
}

pub async fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let config = args
        .into_raw()?
        .validate()
        .context("invalid configuration")?;
    if !config.rejoin {
        crate::node::run(config, super::shutdown_signal(), None).await?;
        return Ok(ExitCode::SUCCESS);
    }
    // --rejoin: the node serves (so the leader can hand it the cluster id and replicate to
    // it) while this side walks it back into the cluster; a failed step stops the node.
    let endpoints = config.endpoints.clone();
    // The rejoining node asks the leader with its own certificate (a node identity).
    let credentials = ClientCredentials {
        ca: config.tls.as_ref().map(|t| t.ca.clone()),
        identity: config.tls.as_ref().map(|t| (t.cert.clone(), t.key.clone())),
        token_file: None,
        token: None,
    };
    let options = credentials.client_options()?;
    let (ready_tx, ready_rx) = oneshot::channel();
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let shutdown = async {
        tokio::select! {
            _ = super::shutdown_signal() => {}
            _ = stop_rx => {}
        }
    };
    let node = crate::node::run(config, shutdown, Some(ready_tx));
    tokio::pin!(node);
    let rejoined = tokio::select! {
        result = &mut node => {
            result?;
            return Ok(ExitCode::SUCCESS);
        }
        ready = ready_rx => match ready {
            Ok(me) => rejoin::run(&me, &endpoints, &options).await,
            Err(_) => Err(anyhow::anyhow!("the node stopped before it was ready")),
        },
    };
    if let Err(e) = rejoined {
        let _ = stop_tx.send(());
        let _ = node.await;
        return Err(e.context("rejoin failed; the node stopped (rerun `--rejoin` to resume)"));
    }
    node.await?;
    Ok(ExitCode::SUCCESS)
}
