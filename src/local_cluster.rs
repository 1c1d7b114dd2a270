//! Starting `arbiter serve` child processes on this machine and bringing them together into a
//! cluster. Used by `arbiter up`, the integration tests and the jepsen harness, so all three
//! start nodes the same way.
//!
//! Ports: the supervisor (this module's caller) binds every socket of a node once, in
//! [`Listeners`], and hands the bound sockets to each start of the node as inherited
//! descriptors (`arbiter serve --listen-fd grpc=FD --listen-fd http=FD --listen-fd peer=FD`).
//! A restarted node serves on the very same sockets, so its port is never free for anyone else
//! to take.
//!
//! Invariants:
//! - A [`NodeProcess`] owns its child; dropping it kills the child (SIGKILL) and reaps it, so
//!   a failing test never leaves a node running.
//! - Once a child is reaped, its sockets stop listening ([`HeldSocket::stop_listening`]): a
//!   dead node refuses connections instead of letting peers hang in a backlog nobody serves.

use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::RawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arbiter_client::proto::cluster_service_client::ClusterServiceClient;
use arbiter_client::proto::{InitializeRequest, NodeInfo, NodeStatus};
use arbiter_client::ClientOptions;

use crate::config::{Profile, LISTEN_SOCKETS};
use crate::node::{read_ready, ReadyInfo, READY_FILE};
use crate::raft_types::NodeId;
use crate::socket_handoff::HeldSocket;

/// A node's listening sockets, one per name in [`LISTEN_SOCKETS`], bound by the supervisor
/// and shared by every start of the node (clones share the sockets).
#[derive(Debug, Clone)]
pub struct Listeners {
    sockets: Vec<(&'static str, Arc<HeldSocket>)>,
}

impl Listeners {
    /// Binds each socket at `addr_of(name)` (port 0: a port the kernel picks).
    pub fn bind(addr_of: impl Fn(&str) -> SocketAddr) -> Result<Listeners, LaunchError> {
        let sockets = LISTEN_SOCKETS
            .iter()
            .map(|&name| {
                let addr = addr_of(name);
                HeldSocket::bind(addr)
                    .map(|socket| (name, Arc::new(socket)))
                    .map_err(|source| LaunchError::Bind { name, addr, source })
            })
            .collect::<Result<_, _>>()?;
        Ok(Listeners { sockets })
    }

    /// Every socket on 127.0.0.1 with a kernel-picked port.
    pub fn loopback() -> Result<Listeners, LaunchError> {
        Listeners::bind(|_| SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
    }

    /// The bound address of socket `name` (one of [`LISTEN_SOCKETS`]).
    pub fn addr(&self, name: &str) -> SocketAddr {
        self.sockets
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, socket)| socket.local_addr())
            // A caller naming a socket that does not exist is a bug in the harness.
            .unwrap_or_else(|| panic!("no listening socket named {name:?}"))
    }

    pub fn grpc(&self) -> SocketAddr {
        self.addr("grpc")
    }

    pub fn http(&self) -> SocketAddr {
        self.addr("http")
    }

    pub fn peer(&self) -> SocketAddr {
        self.addr("peer")
    }

    /// `--listen-fd NAME=FD` for each socket, and the descriptors the child must inherit.
    fn handoff(&self) -> (Vec<String>, Vec<RawFd>) {
        let mut args = Vec::new();
        let mut fds = Vec::new();
        for (name, socket) in &self.sockets {
            args.push("--listen-fd".to_string());
            args.push(format!("{name}={}", socket.raw_fd()));
            fds.push(socket.raw_fd());
        }
        (args, fds)
    }

    /// After the child is reaped: refuse connections until the next start.
    fn stop_listening(&self, id: NodeId) {
        for (name, socket) in &self.sockets {
            if let Err(error) = socket.stop_listening() {
                tracing::warn!(node_id = id, socket = name, %error, "cannot stop listening");
            }
        }
    }
}
use crate::tls::TlsPaths;

/// How to start one node.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    pub id: NodeId,
    pub region: String,
    pub data_dir: PathBuf,
    /// Bound once; every start of the node serves on these same sockets.
    pub listeners: Listeners,
    /// What peers dial; `None` = the bound address (needed when a proxy sits in between).
    pub grpc_advertise: Option<String>,
    pub peer_advertise: Option<String>,
    /// The node's certificates; `None` = plain TCP (loopback only).
    pub tls: Option<TlsPaths>,
    pub profile: Profile,
    /// Further `arbiter serve` flags, e.g. `--snapshot-every 20`.
    pub extra_args: Vec<String>,
    /// Environment variables set for the node on top of this process's own, e.g. a
    /// `LD_PRELOAD` clock shim in a test that steps the node's wall clock.
    pub env: Vec<(String, String)>,
}

#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("cannot bind the {name} socket at {addr}: {source}")]
    Bind {
        name: &'static str,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start {binary}: {source}")]
    Spawn {
        binary: String,
        #[source]
        source: std::io::Error,
    },
    #[error("node {id} exited before it was ready ({status}); see {log}")]
    Exited {
        id: NodeId,
        status: String,
        log: String,
    },
    #[error("node {id} was not ready within {secs} s; see {log}")]
    NotReady { id: NodeId, secs: u64, log: String },
    #[error(
        "initialize through {endpoint}: {reason}; outcome unknown (initialize is idempotent: \
         retry, or check `arbiter status`)"
    )]
    InitializeUnknown { endpoint: String, reason: String },
    #[error("cannot reach node at {endpoint}: {reason}")]
    Rpc { endpoint: String, reason: String },
    #[error("no leader among {endpoints:?} within {secs} s")]
    NoLeader { endpoints: Vec<String>, secs: u64 },
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

/// A running child node. Dropping it kills the process.
pub struct NodeProcess {
    pub spec: NodeSpec,
    pub ready: ReadyInfo,
    child: Option<Child>,
}

impl NodeSpec {
    /// A `lan` node with every socket on loopback at a kernel-picked port, no extra flags.
    pub fn on_loopback(
        id: NodeId,
        region: &str,
        data_dir: PathBuf,
    ) -> Result<NodeSpec, LaunchError> {
        Ok(NodeSpec {
            id,
            region: region.to_string(),
            data_dir,
            listeners: Listeners::loopback()?,
            grpc_advertise: None,
            peer_advertise: None,
            tls: None,
            profile: Profile::Lan,
            extra_args: Vec::new(),
            env: Vec::new(),
        })
    }

    pub fn log_path(&self) -> PathBuf {
        self.data_dir.join("node.log")
    }

    /// Starts the node and waits until it has written its ready file.
    pub async fn start(
        &self,
        binary: &Path,
        timeout: Duration,
    ) -> Result<NodeProcess, LaunchError> {
        std::fs::create_dir_all(&self.data_dir)?;
        // A stale ready file from an earlier run would make us think the node is up.
        let _ = std::fs::remove_file(self.data_dir.join(READY_FILE));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())?;
        let mut cmd = Command::new(binary);
        cmd.arg("serve")
            .arg("--node-id")
            .arg(self.id.to_string())
            .arg("--region")
            .arg(&self.region)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--profile")
            .arg(match self.profile {
                Profile::Lan => "lan",
                Profile::Wan => "wan",
            })
            // Every node started here is either new (initialized or added afterwards) or
            // restarted on its own data; `--join` only matters for an empty dir.
            .arg("--join");
        if let Some(advertise) = &self.grpc_advertise {
            cmd.arg("--grpc-advertise").arg(advertise);
        }
        if let Some(advertise) = &self.peer_advertise {
            cmd.arg("--peer-advertise").arg(advertise);
        }
        if let Some(tls) = &self.tls {
            cmd.args(tls.serve_args());
        }
        let (handoff_args, fds) = self.listeners.handoff();
        cmd.args(handoff_args);
        // SAFETY: runs in the forked child before exec, where only async-signal-safe calls
        // are allowed: fcntl(2) is, and iterating a Vec allocated before the fork does not
        // allocate. Clearing FD_CLOEXEC in the child alone means this child inherits its own
        // sockets and no other child (spawned concurrently) inherits them.
        unsafe {
            cmd.pre_exec(move || {
                for &fd in &fds {
                    if libc::fcntl(fd, libc::F_SETFD, 0) == -1 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        cmd.args(&self.extra_args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let child = cmd.spawn().map_err(|source| LaunchError::Spawn {
            binary: binary.display().to_string(),
            source,
        })?;
        let mut process = NodeProcess {
            spec: self.clone(),
            ready: ReadyInfo {
                node_id: self.id,
                region: self.region.clone(),
                grpc_addr: String::new(),
                http_addr: String::new(),
                peer_addr: String::new(),
                tls: self.tls.is_some(),
                pid: child.id(),
            },
            child: Some(child),
        };
        process.ready = process.wait_ready(timeout).await?;
        Ok(process)
    }
}

impl NodeProcess {
    pub fn pid(&self) -> u32 {
        self.ready.pid
    }

    /// The membership record for this node.
    pub fn info(&self) -> NodeInfo {
        NodeInfo {
            node_id: self.spec.id,
            region: self.spec.region.clone(),
            grpc_addr: self
                .spec
                .grpc_advertise
                .clone()
                .unwrap_or_else(|| self.ready.grpc_addr.clone()),
            http_addr: self.ready.http_addr.clone(),
            peer_addr: self
                .spec
                .peer_advertise
                .clone()
                .unwrap_or_else(|| self.ready.peer_addr.clone()),
        }
    }

    async fn wait_ready(&mut self, timeout: Duration) -> Result<ReadyInfo, LaunchError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(ready) = read_ready(&self.spec.data_dir) {
                if Some(ready.pid) == self.child.as_ref().map(|c| c.id()) {
                    return Ok(ready);
                }
            }
            if let Some(status) = self.try_wait()? {
                return Err(LaunchError::Exited {
                    id: self.spec.id,
                    status,
                    log: self.spec.log_path().display().to_string(),
                });
            }
            if Instant::now() > deadline {
                return Err(LaunchError::NotReady {
                    id: self.spec.id,
                    secs: timeout.as_secs(),
                    log: self.spec.log_path().display().to_string(),
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `Some(exit description)` once the child has exited; the first such call reaps it and
    /// makes its sockets stop listening.
    pub fn try_wait(&mut self) -> Result<Option<String>, LaunchError> {
        let Some(child) = self.child.as_mut() else {
            return Ok(Some("already reaped".into()));
        };
        let Some(status) = child.try_wait()? else {
            return Ok(None);
        };
        // Forget the child: its pid may be reused, and a later call must not touch the
        // sockets, which a restarted node may be listening on by then.
        self.child = None;
        self.spec.listeners.stop_listening(self.spec.id);
        Ok(Some(status.to_string()))
    }

    /// Sends a signal to the child (e.g. `libc::SIGSTOP`).
    pub fn signal(&self, signal: i32) {
        if self.child.is_some() {
            // SAFETY: kill(2) with a pid we spawned and still own (not yet reaped).
            unsafe {
                libc::kill(self.pid() as i32, signal);
            }
        }
    }

    /// `kill -9`, reap, and make the node's ports refuse connections.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            self.spec.listeners.stop_listening(self.spec.id);
        }
    }

    /// SIGTERM, then SIGKILL if it has not exited within `grace`.
    pub async fn stop(&mut self, grace: Duration) {
        self.signal(libc::SIGCONT);
        self.signal(libc::SIGTERM);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if matches!(self.try_wait(), Ok(Some(_))) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.kill();
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        self.signal(libc::SIGCONT);
        self.kill();
    }
}

/// Bootstraps the cluster through `endpoint` (idempotent); returns whether it already was.
/// Gives up after `timeout` with [`LaunchError::InitializeUnknown`]: a paused or unreachable
/// node must not hang its supervisor.
pub async fn initialize(
    endpoint: &str,
    members: Vec<NodeInfo>,
    timeout: Duration,
    options: &ClientOptions,
) -> Result<bool, LaunchError> {
    let rpc = |reason: String| LaunchError::Rpc {
        endpoint: endpoint.to_string(),
        reason,
    };
    let call = async {
        let channel = arbiter_client::channel(endpoint, options).map_err(|e| rpc(e.to_string()))?;
        let reply = ClusterServiceClient::new(channel)
            .initialize(InitializeRequest { members })
            .await
            .map_err(|s| match s.code() {
                tonic::Code::DeadlineExceeded => LaunchError::InitializeUnknown {
                    endpoint: endpoint.to_string(),
                    reason: s.message().to_string(),
                },
                _ => rpc(s.message().to_string()),
            })?;
        Ok(reply.into_inner().already_initialized)
    };
    tokio::time::timeout(timeout, call)
        .await
        .unwrap_or_else(|_| {
            Err(LaunchError::InitializeUnknown {
                endpoint: endpoint.to_string(),
                reason: format!("no answer within {} ms", timeout.as_millis()),
            })
        })
}

/// Polls `endpoints` until one reports itself leader and the others agree; returns the
/// leader's status.
pub async fn wait_for_leader(
    endpoints: &[String],
    timeout: Duration,
    options: &ClientOptions,
) -> Result<NodeStatus, LaunchError> {
    crate::grpc::cluster_service::find_leader(endpoints, timeout, true, options)
        .await
        .map_err(|_| LaunchError::NoLeader {
            endpoints: endpoints.to_vec(),
            secs: timeout.as_secs(),
        })
}
