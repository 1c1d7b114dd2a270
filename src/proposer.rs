//! Group commit: many client commands, one log entry, one fsync.
//!
//! Invariant: every proposal gets exactly one answer — its outcome, a typed refusal to
//! redirect, or a timeout that says the outcome is unknown — and never waits past the write
//! deadline. Commands queue while earlier batches are in flight, so under load each log entry
//! carries many commands (openraft 0.9 keeps one AppendEntries in flight per follower; at 70 ms
//! RTT throughput comes only from batching).

use std::sync::Arc;
use std::time::Duration;

use arbiter_core::command::{Batch, Command, Outcome};
use arbiter_core::{FencingToken, WallMillis};
use openraft::error::{ClientWriteError, RaftError};
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::raft_types::{Member, NodeId, Raft};

/// Commands per log entry; bounded by the positions a fencing token can encode.
const MAX_BATCH: usize = FencingToken::MAX_COMMANDS_PER_ENTRY as usize;
/// Batches in flight at once. Small on purpose: while they are out, new commands pile up into
/// the next batch instead of each taking its own entry.
const MAX_IN_FLIGHT: usize = 4;
const QUEUE_DEPTH: usize = 65_536;

/// Why a write was not applied (or may not have been).
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum WriteError {
    #[error("not the leader; leader is {leader_id:?} at {leader_addr:?}")]
    NotLeader {
        leader_id: Option<NodeId>,
        leader_addr: Option<String>,
    },
    #[error("write not confirmed within {after_ms} ms; it may or may not have been applied")]
    Timeout { after_ms: u64 },
    #[error("node is shutting down")]
    ShuttingDown,
    #[error("raft: {0}")]
    Raft(String),
}

impl WriteError {
    /// Whether the same request may succeed if sent again (possibly to another node).
    pub fn is_retryable(&self) -> bool {
        !matches!(self, WriteError::Raft(_))
    }

    pub fn not_leader(leader_id: Option<NodeId>, leader: Option<&Member>) -> Self {
        WriteError::NotLeader {
            leader_id,
            leader_addr: leader.map(|m| m.grpc_addr.clone()),
        }
    }
}

struct Pending {
    command: Command,
    reply: oneshot::Sender<Result<Outcome, WriteError>>,
}

#[derive(Clone)]
pub struct Proposer {
    tx: mpsc::Sender<Pending>,
    timeout: Duration,
}

impl Proposer {
    /// Starts the batching task; it ends when every `Proposer` clone is dropped.
    pub fn start(raft: Raft, timeout: Duration) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        tokio::spawn(run(raft, rx, timeout));
        Proposer { tx, timeout }
    }

    /// The deadline of every write.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Proposes one command and waits for its applied outcome.
    pub async fn propose(&self, command: Command) -> Result<Outcome, WriteError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Pending { command, reply })
            .await
            .map_err(|_| WriteError::ShuttingDown)?;
        // The batch task enforces the deadline; this outer one only guards against a lost
        // reply (e.g. the task was aborted at shutdown).
        match tokio::time::timeout(self.timeout * 2, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(WriteError::ShuttingDown),
            Err(_) => Err(WriteError::Timeout {
                after_ms: self.timeout.as_millis() as u64,
            }),
        }
    }
}

async fn run(raft: Raft, mut rx: mpsc::Receiver<Pending>, timeout: Duration) {
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    loop {
        // Wait for a free slot first, then take everything queued meanwhile.
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            return;
        };
        let Some(first) = rx.recv().await else {
            return;
        };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(p) => batch.push(p),
                Err(_) => break,
            }
        }
        let raft = raft.clone();
        tokio::spawn(async move {
            commit(&raft, batch, timeout).await;
            drop(permit);
        });
    }
}

async fn commit(raft: &Raft, pending: Vec<Pending>, timeout: Duration) {
    let (commands, replies): (Vec<_>, Vec<_>) =
        pending.into_iter().map(|p| (p.command, p.reply)).unzip();
    let batch = Batch::new(wall_now(), commands);
    let result = match tokio::time::timeout(timeout, raft.client_write(batch)).await {
        Ok(Ok(response)) => Ok(response.data),
        Ok(Err(e)) => Err(write_error(e)),
        Err(_) => Err(WriteError::Timeout {
            after_ms: timeout.as_millis() as u64,
        }),
    };
    match result {
        Ok(outcomes) => {
            for (reply, outcome) in replies.into_iter().zip(outcomes) {
                let _ = reply.send(Ok(outcome));
            }
        }
        Err(e) => {
            for reply in replies {
                let _ = reply.send(Err(e.clone()));
            }
        }
    }
}

fn write_error(e: RaftError<NodeId, ClientWriteError<NodeId, Member>>) -> WriteError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => {
            WriteError::not_leader(f.leader_id, f.leader_node.as_ref())
        }
        RaftError::APIError(other) => WriteError::Raft(other.to_string()),
        RaftError::Fatal(f) => WriteError::Raft(f.to_string()),
    }
}

/// The leader's wall clock, stamped into each batch for audit timestamps.
pub fn wall_now() -> WallMillis {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    WallMillis(ms)
}
