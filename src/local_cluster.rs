//! Starting `arbiter serve` child processes on this machine and bringing them together into a
//! cluster. Used by `arbiter up`, the integration tests and the jepsen harness, so all three
//! start nodes the same way.
//!
//! Invariant: a [`NodeProcess`] owns its child; dropping it kills the child (SIGKILL) and reaps
//! it, so a failing test never leaves a node running.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use arbiter_client::proto::cluster_service_client::ClusterServiceClient;
use arbiter_client::proto::{InitializeRequest, NodeInfo, NodeStatus};
use arbiter_client::{authorized, BearerToken};

use crate::config::Profile;
use crate::node::{read_ready, ReadyInfo, READY_FILE};
use crate::raft_types::NodeId;

/// How to start one node.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    pub id: NodeId,
    pub region: String,
    pub data_dir: PathBuf,
    pub grpc_listen: String,
    pub http_listen: String,
    /// What peers dial; `None` = the bound address (needed when a proxy sits in between).
    pub grpc_advertise: Option<String>,
    pub profile: Profile,
    /// Further `arbiter serve` flags, e.g. `--snapshot-every 20`.
    pub extra_args: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
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
            .arg("--grpc-listen")
            .arg(&self.grpc_listen)
            .arg("--http-listen")
            .arg(&self.http_listen)
            .arg("--profile")
            .arg(match self.profile {
                Profile::Lan => "lan",
                Profile::Wan => "wan",
            });
        if let Some(advertise) = &self.grpc_advertise {
            cmd.arg("--grpc-advertise").arg(advertise);
        }
        cmd.args(&self.extra_args)
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

    /// `Some(exit description)` once the child has exited.
    pub fn try_wait(&mut self) -> Result<Option<String>, LaunchError> {
        match self.child.as_mut() {
            Some(child) => Ok(child.try_wait()?.map(|s| s.to_string())),
            None => Ok(Some("already reaped".into())),
        }
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

    /// `kill -9` and reap.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then SIGKILL if it has not exited within `grace`.
    pub async fn stop(&mut self, grace: Duration) {
        self.signal(libc::SIGCONT);
        self.signal(libc::SIGTERM);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if matches!(self.try_wait(), Ok(Some(_))) {
                self.child = None;
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
pub async fn initialize(
    endpoint: &str,
    token: Option<BearerToken>,
    members: Vec<NodeInfo>,
) -> Result<bool, LaunchError> {
    let rpc = |reason: String| LaunchError::Rpc {
        endpoint: endpoint.to_string(),
        reason,
    };
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{endpoint}"))
        .map_err(|e| rpc(e.to_string()))?
        .connect()
        .await
        .map_err(|e| rpc(e.to_string()))?;
    let mut client = ClusterServiceClient::new(authorized(channel, token));
    let reply = client
        .initialize(InitializeRequest { members })
        .await
        .map_err(|s| rpc(s.message().to_string()))?;
    Ok(reply.into_inner().already_initialized)
}

/// Polls `endpoints` until one reports itself leader and the others agree; returns the
/// leader's status.
pub async fn wait_for_leader(
    endpoints: &[String],
    token: Option<BearerToken>,
    timeout: Duration,
) -> Result<NodeStatus, LaunchError> {
    let deadline = Instant::now() + timeout;
    loop {
        let statuses = futures::future::join_all(
            endpoints
                .iter()
                .map(|e| crate::cli::fetch_status(e.clone(), token.clone())),
        )
        .await;
        let reachable: Vec<NodeStatus> = statuses.into_iter().filter_map(Result::ok).collect();
        if let Some(leader) = reachable.iter().find(|s| s.role == "Leader") {
            let agreed = reachable
                .iter()
                .all(|s| s.leader_id == Some(leader.node_id));
            if agreed {
                return Ok(leader.clone());
            }
        }
        if Instant::now() > deadline {
            return Err(LaunchError::NoLeader {
                endpoints: endpoints.to_vec(),
                secs: timeout.as_secs(),
            });
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
