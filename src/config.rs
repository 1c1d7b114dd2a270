//! Node configuration: a TOML file and/or flags become a [`NodeConfig`] that has passed
//! [`RawNodeConfig::validate`].
//!
//! Invariant: nothing downstream sees an unvalidated value. Cross-field rules (heartbeat below
//! the election timeout, the WAN heartbeat above the worst RTT, distinct peer ids) are checked
//! once, here, with typed errors that name the field.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::auth::AuthConfig;
use crate::dr::config::{DrConfig, DrConfigError, RawDrConfig};
use crate::raft_types::{Member, NodeId};
use crate::store::{StoreOptions, SyncPolicy};
use crate::tls::TlsPaths;
use arbiter_core::RegionId;

/// Raft timing presets. openraft 0.9 uses the heartbeat interval as the AppendEntries and
/// ReadIndex timeout, and `election_timeout_max` as the leader lease, so the WAN profile must
/// size the heartbeat above the worst RTT (150 ms us-west-2↔eu-central-1) plus an fsync.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    /// Loopback or one datacenter: fast failover, for tests and local clusters.
    Lan,
    /// The us-east-1 / us-west-2 / eu-central-1 triangle (70/90/150 ms RTT).
    Wan,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Timing {
    pub heartbeat_ms: u64,
    pub election_min_ms: u64,
    pub election_max_ms: u64,
    /// Deadline of every client write; a partitioned openraft 0.9 leader accepts writes that
    /// would otherwise hang.
    pub write_timeout_ms: u64,
    /// Pause between attempts to reach an unreachable peer.
    pub peer_backoff_ms: u64,
}

impl Profile {
    pub fn timing(self) -> Timing {
        match self {
            // A crashed leader is replaced after the lease (200 ms) plus the quicker
            // survivor's election timeout: ~0.4 s. A follower stands only after 320 ms
            // without a heartbeat, six missed in a row.
            Profile::Lan => Timing {
                heartbeat_ms: 50,
                election_min_ms: 120,
                election_max_ms: 200,
                write_timeout_ms: 2_000,
                peer_backoff_ms: 100,
            },
            // The heartbeat is also the AppendEntries timeout: 250 ms leaves 100 ms over the
            // worst RTT (150 ms) for the fsync and the payload. A crashed leader is replaced
            // after the lease (1 s) plus the quicker survivor's election timeout, a tick and
            // the vote's round trip: ~2.3 s.
            Profile::Wan => Timing {
                heartbeat_ms: 250,
                election_min_ms: 600,
                election_max_ms: 1_000,
                write_timeout_ms: 8_000,
                peer_backoff_ms: 500,
            },
        }
    }
}

/// Names of a node's listening sockets, as `--listen-fd NAME=FD` spells them; a supervisor
/// hands over one descriptor per name (`local_cluster`). A new socket kind is one more name
/// here and one more [`ListenOn`] field in [`NodeConfig`].
pub const LISTEN_SOCKETS: [&str; 3] = ["grpc", "http", "peer"];

/// Where a node listens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenOn {
    /// An address the node binds itself (port 0: any free port).
    Address(SocketAddr),
    /// A socket its supervisor bound and handed down as this open descriptor; the node
    /// listens on it (see `socket_handoff`).
    InheritedFd(RawFd),
}

impl std::fmt::Display for ListenOn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ListenOn::Address(addr) => write!(f, "{addr}"),
            ListenOn::InheritedFd(fd) => write!(f, "inherited fd {fd}"),
        }
    }
}

/// A peer named in the config, used only to bootstrap a fresh cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerConfig {
    pub id: NodeId,
    pub region: String,
    pub grpc: String,
    pub http: String,
    /// Its peer (Raft) address; default: its gRPC address.
    #[serde(default)]
    pub peer: Option<String>,
}

impl PeerConfig {
    /// The membership record this peer advertises.
    pub fn member(&self) -> Member {
        Member {
            region: self.region.clone(),
            grpc_addr: self.grpc.clone(),
            http_addr: self.http.clone(),
            peer_addr: self.peer.clone().unwrap_or_else(|| self.grpc.clone()),
        }
    }
}

/// The file (and flag) form: everything optional that has a sane default.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNodeConfig {
    pub node_id: Option<NodeId>,
    pub region: Option<String>,
    pub data_dir: Option<PathBuf>,
    /// Listen addresses; port 0 binds any free port.
    pub grpc_listen: Option<String>,
    pub http_listen: Option<String>,
    /// Sockets inherited from a supervisor, by name (`grpc`, `http`) → descriptor; each one
    /// replaces the listen address of that name.
    #[serde(default)]
    pub listen_fds: BTreeMap<String, RawFd>,
    /// Addresses peers and clients use to reach this node; default: the bound listen address.
    pub grpc_advertise: Option<String>,
    pub http_advertise: Option<String>,
    /// The peer port: Raft RPCs only, mutual TLS with node certificates.
    pub peer_listen: Option<String>,
    pub peer_advertise: Option<String>,
    /// Certificates (`[tls]`: `ca`, `cert`, `key`). Without it every port is plain TCP, which
    /// is accepted only on loopback addresses unless `insecure` is set.
    pub tls: Option<TlsPaths>,
    /// Accept what is otherwise refused, logged loudly at start: plain TCP on non-loopback
    /// addresses (no `[tls]`), and, with no identities in `[auth]`, every caller as the
    /// anonymous operator.
    #[serde(default)]
    pub insecure: bool,
    pub profile: Option<Profile>,
    pub heartbeat_ms: Option<u64>,
    pub election_min_ms: Option<u64>,
    pub election_max_ms: Option<u64>,
    pub write_timeout_ms: Option<u64>,
    /// Build a snapshot after this many log entries (default 10,000).
    pub snapshot_every: Option<u64>,
    /// Entries kept in the log behind a snapshot for slow followers (default 1,000).
    pub keep_logs: Option<u64>,
    /// Preallocated size of a WAL segment file (default 64 MiB).
    pub wal_segment_bytes: Option<u64>,
    /// UNSAFE: skip every fsync of the storage. Only a negative control for crash tests.
    #[serde(default)]
    pub unsafe_no_fsync: bool,
    /// Initialize a fresh cluster with this node and `peers` as voters (idempotent).
    #[serde(default)]
    pub bootstrap: bool,
    /// This node is new: with an empty data dir it starts without a cluster identity and
    /// waits to be added (`arbiter member add`) or initialized, taking no part in Raft until
    /// then. Ignored when the data dir already belongs to a cluster.
    #[serde(default)]
    pub join: bool,
    /// Rejoin through the leader after losing the data dir: remove this node from the voters,
    /// add it as a learner, catch up, promote (`arbiter serve --rejoin`; idempotent).
    #[serde(default)]
    pub rejoin: bool,
    /// gRPC endpoints of the cluster to rejoin through (default: the `peers` addresses).
    #[serde(default)]
    pub endpoints: Vec<String>,
    #[serde(default)]
    pub peers: Vec<PeerConfig>,
    /// Peer id → address to dial instead of the one it advertises (e.g. a proxy per link).
    #[serde(default)]
    pub dial: BTreeMap<NodeId, String>,
    /// The DR controller: regions, probes, hysteresis, drivers (`[dr]`).
    #[serde(default)]
    pub dr: RawDrConfig,
    /// Identities: tokens file, inline tokens, certificate subjects (`[auth]`).
    #[serde(default)]
    pub auth: AuthConfig,
    #[serde(default)]
    pub raft: RawRaftConfig,
}

/// `[raft]`: where the leader should live.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRaftConfig {
    /// The region leadership moves to when it is elsewhere (`"none"`: never move it). Default:
    /// the region that is neither the DR primary nor its failover target, when there is one —
    /// the control plane then sits outside the production regions.
    pub preferred_leader: Option<String>,
    /// Least time between two automatic moves (default 60 s).
    pub leader_move_cooldown_ms: Option<u64>,
}

/// Validated leader placement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlacementConfig {
    /// `None`: leadership stays wherever elections put it.
    pub preferred: Option<RegionId>,
    pub cooldown: Duration,
}

/// Default least time between two automatic leadership moves.
pub const DEFAULT_LEADER_MOVE_COOLDOWN_MS: u64 = 60_000;

impl RawRaftConfig {
    fn validate(self, dr: &DrConfig) -> Result<PlacementConfig, ConfigError> {
        let preferred = match self.preferred_leader.as_deref().map(str::trim) {
            Some("none") => None,
            Some(name) => match dr.regions.iter().find(|r| r.as_str() == name) {
                Some(region) => Some(region.clone()),
                None => {
                    return Err(ConfigError::UnknownPreferredLeader {
                        region: name.to_string(),
                        known: dr
                            .regions
                            .iter()
                            .map(|r| r.as_str())
                            .collect::<Vec<_>>()
                            .join(", "),
                    })
                }
            },
            None => dr.outside_production().cloned(),
        };
        let cooldown_ms = self
            .leader_move_cooldown_ms
            .unwrap_or(DEFAULT_LEADER_MOVE_COOLDOWN_MS);
        at_least("raft.leader_move_cooldown_ms", cooldown_ms, 1_000)?;
        Ok(PlacementConfig {
            preferred,
            cooldown: Duration::from_millis(cooldown_ms),
        })
    }
}

#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub node_id: NodeId,
    pub region: String,
    pub data_dir: PathBuf,
    pub grpc_listen: ListenOn,
    pub http_listen: ListenOn,
    pub grpc_advertise: Option<String>,
    pub http_advertise: Option<String>,
    pub peer_listen: ListenOn,
    pub peer_advertise: Option<String>,
    pub tls: Option<TlsPaths>,
    pub insecure: bool,
    pub profile: Profile,
    pub timing: Timing,
    pub snapshot_every: u64,
    pub keep_logs: u64,
    pub storage: StoreOptions,
    pub bootstrap: bool,
    pub join: bool,
    pub rejoin: bool,
    pub endpoints: Vec<String>,
    pub peers: Vec<PeerConfig>,
    pub dial: BTreeMap<NodeId, String>,
    pub dr: DrConfig,
    pub auth: AuthConfig,
    pub placement: PlacementConfig,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("missing required setting `{field}`")]
    Missing { field: &'static str },
    #[error("`node_id` must be at least 1")]
    ZeroNodeId,
    #[error("`{field}` = {value:?} is not a socket address (host:port): {reason}")]
    BadAddress {
        field: &'static str,
        value: String,
        reason: String,
    },
    #[error("socket `{name}` is given both as an address and as an inherited fd")]
    ListenTwice { name: &'static str },
    #[error("no listening socket is named `{name}` (known: {known})", known = LISTEN_SOCKETS.join(", "))]
    UnknownSocket { name: String },
    #[error(
        "inherited fd {fd} for socket `{name}` is invalid: it must be 3 or above (0-2 are \
         stdio) and name one socket only"
    )]
    BadListenFd { name: String, fd: RawFd },
    #[error("`{field}` = {value:?} must be host:port with a non-zero port")]
    BadAdvertise { field: &'static str, value: String },
    #[error(
        "heartbeat_ms ({heartbeat_ms}) must be below election_min_ms ({election_min_ms}) \
         — openraft treats a missed heartbeat window as leader loss"
    )]
    HeartbeatNotBelowElection {
        heartbeat_ms: u64,
        election_min_ms: u64,
    },
    #[error("election_min_ms ({min}) must be below election_max_ms ({max})")]
    ElectionRange { min: u64, max: u64 },
    #[error(
        "profile wan needs heartbeat_ms >= {min_ms} (worst RTT 150 ms plus fsync); got {heartbeat_ms}"
    )]
    WanHeartbeatTooShort { heartbeat_ms: u64, min_ms: u64 },
    #[error("`{field}` must be at least {min}, got {value}")]
    TooSmall {
        field: &'static str,
        value: u64,
        min: u64,
    },
    #[error(
        "`{field}` = {addr} is not a loopback address and TLS is not configured: set [tls] \
         (ca, cert, key) or, to accept plain TCP deliberately, --insecure"
    )]
    PlaintextOffLoopback {
        field: &'static str,
        addr: SocketAddr,
    },
    #[error("peer id {id} appears twice (or equals node_id)")]
    DuplicatePeer { id: NodeId },
    #[error(
        "`bootstrap` creates a new cluster and `rejoin` rejoins an existing one: give only one"
    )]
    BootstrapAndRejoin,
    #[error("`rejoin` needs the cluster's endpoints (`endpoints` or `peers`)")]
    RejoinWithoutEndpoints,
    #[error(
        "`raft.preferred_leader` = {region:?} is not a DR region (known: {known}; or \"none\")"
    )]
    UnknownPreferredLeader { region: String, known: String },
    #[error(transparent)]
    Dr(#[from] DrConfigError),
    #[error("cannot read config file {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("config file {path} is not valid: {reason}")]
    Parse { path: String, reason: String },
}

/// Smallest heartbeat the WAN profile accepts: worst planned RTT plus an fsync allowance.
const WAN_MIN_HEARTBEAT_MS: u64 = 200;

impl RawNodeConfig {
    pub fn from_file(path: &std::path::Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.display().to_string(),
            reason: e.to_string(),
        })
    }

    pub fn validate(self) -> Result<NodeConfig, ConfigError> {
        let node_id = self
            .node_id
            .ok_or(ConfigError::Missing { field: "node_id" })?;
        if node_id == 0 {
            return Err(ConfigError::ZeroNodeId);
        }
        let region = self
            .region
            .filter(|r| !r.trim().is_empty())
            .ok_or(ConfigError::Missing { field: "region" })?;
        let data_dir = self
            .data_dir
            .ok_or(ConfigError::Missing { field: "data_dir" })?;
        let mut fds = self.listen_fds;
        check_listen_fds(&fds)?;
        let grpc_listen = listen_on("grpc", "grpc_listen", &mut fds, self.grpc_listen)?;
        let http_listen = listen_on("http", "http_listen", &mut fds, self.http_listen)?;
        let peer_listen = listen_on("peer", "peer_listen", &mut fds, self.peer_listen)?;
        if let Some(name) = fds.into_keys().next() {
            return Err(ConfigError::UnknownSocket { name });
        }
        check_advertise("grpc_advertise", self.grpc_advertise.as_deref())?;
        check_advertise("http_advertise", self.http_advertise.as_deref())?;
        check_advertise("peer_advertise", self.peer_advertise.as_deref())?;
        // An inherited socket's address is known only once the node adopts it; the node
        // checks it then ([`crate::node`]), by the same rule.
        let addresses: Vec<(&'static str, SocketAddr)> = [
            ("grpc_listen", grpc_listen),
            ("http_listen", http_listen),
            ("peer_listen", peer_listen),
        ]
        .into_iter()
        .filter_map(|(field, listen)| match listen {
            ListenOn::Address(addr) => Some((field, addr)),
            ListenOn::InheritedFd(_) => None,
        })
        .collect();
        check_plaintext(self.tls.is_some(), self.insecure, &addresses)?;

        let profile = self.profile.unwrap_or(Profile::Lan);
        let preset = profile.timing();
        let timing = Timing {
            heartbeat_ms: self.heartbeat_ms.unwrap_or(preset.heartbeat_ms),
            election_min_ms: self.election_min_ms.unwrap_or(preset.election_min_ms),
            election_max_ms: self.election_max_ms.unwrap_or(preset.election_max_ms),
            write_timeout_ms: self.write_timeout_ms.unwrap_or(preset.write_timeout_ms),
            peer_backoff_ms: preset.peer_backoff_ms,
        };
        timing.validate(profile)?;

        let snapshot_every = self.snapshot_every.unwrap_or(10_000);
        at_least("snapshot_every", snapshot_every, 10)?;
        let keep_logs = self.keep_logs.unwrap_or(1_000);
        let wal_segment_bytes = self
            .wal_segment_bytes
            .unwrap_or(crate::store::wal::DEFAULT_SEGMENT_BYTES);
        at_least("wal_segment_bytes", wal_segment_bytes, 64 * 1024)?;
        let storage = StoreOptions {
            sync: if self.unsafe_no_fsync {
                SyncPolicy::UnsafeNoFsync
            } else {
                SyncPolicy::Durable
            },
            wal_segment_bytes,
        };

        let mut seen = vec![node_id];
        for peer in &self.peers {
            if seen.contains(&peer.id) {
                return Err(ConfigError::DuplicatePeer { id: peer.id });
            }
            seen.push(peer.id);
            check_advertise("peers.grpc", Some(&peer.grpc))?;
            check_advertise("peers.http", Some(&peer.http))?;
            check_advertise("peers.peer", peer.peer.as_deref())?;
        }
        for addr in self.dial.values() {
            check_advertise("dial", Some(addr))?;
        }
        if self.bootstrap && self.rejoin {
            return Err(ConfigError::BootstrapAndRejoin);
        }
        let endpoints = if self.endpoints.is_empty() {
            self.peers.iter().map(|p| p.grpc.clone()).collect()
        } else {
            self.endpoints
        };
        if self.rejoin && endpoints.is_empty() {
            return Err(ConfigError::RejoinWithoutEndpoints);
        }

        let dr = self.dr.validate()?;
        let placement = self.raft.validate(&dr)?;
        Ok(NodeConfig {
            node_id,
            region,
            data_dir,
            grpc_listen,
            http_listen,
            grpc_advertise: self.grpc_advertise,
            http_advertise: self.http_advertise,
            peer_listen,
            peer_advertise: self.peer_advertise,
            tls: self.tls,
            insecure: self.insecure,
            profile,
            timing,
            snapshot_every,
            keep_logs,
            storage,
            bootstrap: self.bootstrap,
            join: self.join,
            rejoin: self.rejoin,
            endpoints,
            peers: self.peers,
            dial: self.dial,
            dr,
            auth: self.auth,
            placement,
        })
    }
}

impl Timing {
    fn validate(&self, profile: Profile) -> Result<(), ConfigError> {
        at_least("heartbeat_ms", self.heartbeat_ms, 10)?;
        at_least("write_timeout_ms", self.write_timeout_ms, 100)?;
        if self.heartbeat_ms >= self.election_min_ms {
            return Err(ConfigError::HeartbeatNotBelowElection {
                heartbeat_ms: self.heartbeat_ms,
                election_min_ms: self.election_min_ms,
            });
        }
        if self.election_min_ms >= self.election_max_ms {
            return Err(ConfigError::ElectionRange {
                min: self.election_min_ms,
                max: self.election_max_ms,
            });
        }
        if profile == Profile::Wan && self.heartbeat_ms < WAN_MIN_HEARTBEAT_MS {
            return Err(ConfigError::WanHeartbeatTooShort {
                heartbeat_ms: self.heartbeat_ms,
                min_ms: WAN_MIN_HEARTBEAT_MS,
            });
        }
        Ok(())
    }
}

fn at_least(field: &'static str, value: u64, min: u64) -> Result<(), ConfigError> {
    if value < min {
        return Err(ConfigError::TooSmall { field, value, min });
    }
    Ok(())
}

/// Socket `name` listens on its inherited fd (taken out of `fds`) or else on the address in
/// `field`; naming both is an error.
fn listen_on(
    name: &'static str,
    field: &'static str,
    fds: &mut BTreeMap<String, RawFd>,
    address: Option<String>,
) -> Result<ListenOn, ConfigError> {
    match (fds.remove(name), address) {
        (Some(_), Some(_)) => Err(ConfigError::ListenTwice { name }),
        (Some(fd), None) => Ok(ListenOn::InheritedFd(fd)),
        (None, address) => parse_addr(field, address.as_deref()).map(ListenOn::Address),
    }
}

/// Every inherited descriptor is above stdio and named once: adopting one fd twice would
/// close it under the other listener.
fn check_listen_fds(fds: &BTreeMap<String, RawFd>) -> Result<(), ConfigError> {
    let mut seen = Vec::new();
    for (name, &fd) in fds {
        if fd < 3 || seen.contains(&fd) {
            return Err(ConfigError::BadListenFd {
                name: name.clone(),
                fd,
            });
        }
        seen.push(fd);
    }
    Ok(())
}

fn parse_addr(field: &'static str, value: Option<&str>) -> Result<SocketAddr, ConfigError> {
    let value = value.ok_or(ConfigError::Missing { field })?;
    value
        .parse()
        .map_err(|e: std::net::AddrParseError| ConfigError::BadAddress {
            field,
            value: value.to_string(),
            reason: e.to_string(),
        })
}

/// Plain TCP is refused on any listen address outside 127.0.0.0/8 and ::1 unless TLS is
/// configured or `insecure` says the operator means it: a node must not expose unauthenticated,
/// unencrypted Raft and lease traffic by accident.
pub fn check_plaintext(
    tls: bool,
    insecure: bool,
    listens: &[(&'static str, SocketAddr)],
) -> Result<(), ConfigError> {
    if tls || insecure {
        return Ok(());
    }
    match listens.iter().find(|(_, addr)| !addr.ip().is_loopback()) {
        Some(&(field, addr)) => Err(ConfigError::PlaintextOffLoopback { field, addr }),
        None => Ok(()),
    }
}

/// Advertised addresses may be host names, so only the shape is checked: host:port, port > 0.
fn check_advertise(field: &'static str, value: Option<&str>) -> Result<(), ConfigError> {
    let Some(value) = value else { return Ok(()) };
    let ok = value
        .rsplit_once(':')
        .map(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0))
        .unwrap_or(false);
    if ok {
        Ok(())
    } else {
        Err(ConfigError::BadAdvertise {
            field,
            value: value.to_string(),
        })
    }
}

impl NodeConfig {
    /// The openraft configuration for this node's profile.
    pub fn raft_config(&self) -> openraft::Config {
        openraft::Config {
            cluster_name: "arbiter".into(),
            heartbeat_interval: self.timing.heartbeat_ms,
            election_timeout_min: self.timing.election_min_ms,
            election_timeout_max: self.timing.election_max_ms,
            install_snapshot_timeout: self.timing.heartbeat_ms.max(1_000) * 4,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(self.snapshot_every),
            max_in_snapshot_log_to_keep: self.keep_logs,
            ..Default::default()
        }
    }

    pub fn write_timeout(&self) -> Duration {
        Duration::from_millis(self.timing.write_timeout_ms)
    }

    /// The membership record of a peer from the bootstrap list.
    pub fn peer_members(&self) -> Vec<(NodeId, Member)> {
        self.peers.iter().map(|p| (p.id, p.member())).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minimal() -> RawNodeConfig {
        RawNodeConfig {
            node_id: Some(1),
            region: Some("us-east-1".into()),
            data_dir: Some("/tmp/x".into()),
            grpc_listen: Some("127.0.0.1:0".into()),
            http_listen: Some("127.0.0.1:0".into()),
            peer_listen: Some("127.0.0.1:0".into()),
            ..Default::default()
        }
    }

    #[test]
    fn leadership_prefers_the_region_outside_production_unless_told_otherwise() {
        // Default regions: us-east-1 is primary and fails over to us-west-2.
        let config = minimal().validate().expect("valid");
        assert_eq!(
            config.placement.preferred,
            Some(RegionId::new("eu-central-1"))
        );
        assert_eq!(
            config.placement.cooldown,
            Duration::from_millis(DEFAULT_LEADER_MOVE_COOLDOWN_MS)
        );

        let mut raw = minimal();
        raw.raft.preferred_leader = Some("none".into());
        assert_eq!(raw.validate().expect("valid").placement.preferred, None);

        let mut raw = minimal();
        raw.raft.preferred_leader = Some("us-west-2".into());
        assert_eq!(
            raw.validate().expect("valid").placement.preferred,
            Some(RegionId::new("us-west-2"))
        );

        let mut raw = minimal();
        raw.raft.preferred_leader = Some("ap-south-1".into());
        assert!(matches!(
            raw.validate(),
            Err(ConfigError::UnknownPreferredLeader { .. })
        ));

        let mut raw = minimal();
        raw.raft.leader_move_cooldown_ms = Some(10);
        assert!(matches!(raw.validate(), Err(ConfigError::TooSmall { .. })));

        // Two regions: the primary and its target leave nowhere outside production.
        let mut raw = minimal();
        raw.dr.regions = ["us-east-1", "us-west-2"]
            .iter()
            .map(|r| crate::dr::config::RegionConfig {
                name: r.to_string(),
                failover_to: None,
            })
            .collect();
        assert_eq!(raw.validate().expect("valid").placement.preferred, None);
    }

    #[test]
    fn minimal_config_gets_lan_defaults() {
        let config = minimal().validate().expect("valid");
        assert_eq!(config.profile, Profile::Lan);
        assert_eq!(config.timing, Profile::Lan.timing());
    }

    #[test]
    fn storage_is_durable_unless_the_config_asks_for_unsafe_no_fsync() {
        let config = minimal().validate().expect("valid");
        assert_eq!(config.storage.sync, SyncPolicy::Durable);
        let unsafe_raw: RawNodeConfig = toml::from_str(
            "node_id = 1\nregion = \"us-east-1\"\ndata_dir = \"/tmp/x\"\n\
             grpc_listen = \"127.0.0.1:0\"\nhttp_listen = \"127.0.0.1:0\"\n\
             peer_listen = \"127.0.0.1:0\"\nunsafe_no_fsync = true\nwal_segment_bytes = 1048576\n",
        )
        .expect("parses");
        let config = unsafe_raw.validate().expect("valid");
        assert_eq!(config.storage.sync, SyncPolicy::UnsafeNoFsync);
        assert_eq!(config.storage.wal_segment_bytes, 1 << 20);
    }

    #[test]
    fn heartbeat_must_be_below_election_timeout() {
        let raw = RawNodeConfig {
            heartbeat_ms: Some(250),
            ..minimal()
        };
        assert_eq!(
            raw.validate().unwrap_err(),
            ConfigError::HeartbeatNotBelowElection {
                heartbeat_ms: 250,
                election_min_ms: 120
            }
        );
    }

    #[test]
    fn wan_profile_refuses_a_lan_heartbeat() {
        let raw = RawNodeConfig {
            profile: Some(Profile::Wan),
            heartbeat_ms: Some(50),
            ..minimal()
        };
        assert!(matches!(
            raw.validate(),
            Err(ConfigError::WanHeartbeatTooShort { .. })
        ));
    }

    #[test]
    fn duplicate_peer_ids_are_refused() {
        let peer = PeerConfig {
            id: 2,
            region: "us-west-2".into(),
            grpc: "127.0.0.1:7002".into(),
            http: "127.0.0.1:8082".into(),
            peer: None,
        };
        let raw = RawNodeConfig {
            peers: vec![peer.clone(), peer],
            ..minimal()
        };
        assert_eq!(
            raw.validate().unwrap_err(),
            ConfigError::DuplicatePeer { id: 2 }
        );
    }

    #[test]
    fn missing_fields_and_bad_addresses_are_named() {
        let raw = RawNodeConfig {
            node_id: None,
            ..minimal()
        };
        assert_eq!(
            raw.validate().unwrap_err(),
            ConfigError::Missing { field: "node_id" }
        );
        let raw = RawNodeConfig {
            grpc_listen: Some("nonsense".into()),
            ..minimal()
        };
        assert!(matches!(
            raw.validate(),
            Err(ConfigError::BadAddress {
                field: "grpc_listen",
                ..
            })
        ));
        let raw = RawNodeConfig {
            grpc_advertise: Some("host:0".into()),
            ..minimal()
        };
        assert!(matches!(
            raw.validate(),
            Err(ConfigError::BadAdvertise { .. })
        ));
    }

    #[test]
    fn inherited_sockets_replace_addresses_by_name() {
        let fds = |pairs: &[(&str, RawFd)]| {
            pairs
                .iter()
                .map(|(n, fd)| (n.to_string(), *fd))
                .collect::<BTreeMap<_, _>>()
        };
        let raw = RawNodeConfig {
            grpc_listen: None,
            listen_fds: fds(&[("grpc", 3)]),
            ..minimal()
        };
        let config = raw.validate().expect("valid");
        assert_eq!(config.grpc_listen, ListenOn::InheritedFd(3));
        assert!(matches!(config.http_listen, ListenOn::Address(_)));

        let twice = RawNodeConfig {
            listen_fds: fds(&[("grpc", 3)]),
            ..minimal()
        };
        assert_eq!(
            twice.validate().unwrap_err(),
            ConfigError::ListenTwice { name: "grpc" }
        );
        let unknown = RawNodeConfig {
            listen_fds: fds(&[("gprc", 3)]),
            ..minimal()
        };
        assert_eq!(
            unknown.validate().unwrap_err(),
            ConfigError::UnknownSocket {
                name: "gprc".into()
            }
        );
        for bad in [fds(&[("grpc", 1)]), fds(&[("grpc", 5), ("http", 5)])] {
            let raw = RawNodeConfig {
                grpc_listen: None,
                http_listen: None,
                listen_fds: bad,
                ..minimal()
            };
            assert!(
                matches!(raw.validate(), Err(ConfigError::BadListenFd { .. })),
                "stdio and shared descriptors are refused"
            );
        }
    }

    #[test]
    fn toml_file_form_parses_and_rejects_unknown_keys() {
        let raw: RawNodeConfig = toml::from_str(
            r#"
            node_id = 2
            region = "us-west-2"
            data_dir = "/var/lib/arbiter"
            grpc_listen = "0.0.0.0:7002"
            http_listen = "0.0.0.0:8082"
            peer_listen = "0.0.0.0:9002"
            profile = "wan"
            [tls]
            ca = "/etc/arbiter/ca.pem"
            cert = "/etc/arbiter/node-2.pem"
            key = "/etc/arbiter/node-2.key"
            "#,
        )
        .expect("parses");
        assert_eq!(raw.validate().expect("valid").profile, Profile::Wan);
        assert!(toml::from_str::<RawNodeConfig>("node_idd = 2").is_err());
    }

    #[test]
    fn plain_tcp_off_loopback_is_refused_unless_insecure() {
        let public: SocketAddr = "10.1.2.3:7001".parse().expect("addr");
        let loopback: SocketAddr = "127.0.0.2:7001".parse().expect("addr");
        let wildcard: SocketAddr = "0.0.0.0:7001".parse().expect("addr");
        assert_eq!(
            check_plaintext(
                false,
                false,
                &[("grpc_listen", loopback), ("peer_listen", public)]
            ),
            Err(ConfigError::PlaintextOffLoopback {
                field: "peer_listen",
                addr: public
            })
        );
        assert!(matches!(
            check_plaintext(false, false, &[("http_listen", wildcard)]),
            Err(ConfigError::PlaintextOffLoopback { .. })
        ));
        assert_eq!(
            check_plaintext(false, true, &[("peer_listen", public)]),
            Ok(())
        );
        assert_eq!(
            check_plaintext(true, false, &[("peer_listen", public)]),
            Ok(())
        );
        assert_eq!(
            check_plaintext(false, false, &[("grpc_listen", loopback)]),
            Ok(())
        );
        // The same rule through the whole config: a public address without [tls] is refused.
        let raw = RawNodeConfig {
            grpc_listen: Some("10.1.2.3:7001".into()),
            ..minimal()
        };
        assert!(matches!(
            raw.validate(),
            Err(ConfigError::PlaintextOffLoopback {
                field: "grpc_listen",
                ..
            })
        ));
    }
}

#[cfg(test)]
mod readme {
    use super::RawNodeConfig;

    /// The configuration reference in the README must be a config this build accepts.
    #[test]
    fn readme_config_example_is_valid() {
        let readme = include_str!("../README.md");
        let start = readme.find("```toml\n").expect("a toml block") + "```toml\n".len();
        let end = start + readme[start..].find("```").expect("block end");
        let raw: RawNodeConfig = toml::from_str(&readme[start..end]).expect("README config parses");
        let config = raw.validate().expect("README config validates");
        assert_eq!(config.dr.links.len(), 1);
        assert_eq!(config.peers.len(), 1);
    }
}
