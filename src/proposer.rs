//! Group commit: many client commands, one log entry, one fsync.
//!
//! Invariant: every proposal gets exactly one answer — its outcome, a typed refusal to
//! redirect, a refusal at a full queue (not applied), or a timeout that says the outcome is
//! unknown — and never waits past the write deadline, counted from the call: waiting for room
//! in the queue spends the same deadline as waiting for the commit. Commands queue while
//! earlier batches are in flight, so under load each log entry carries many commands (openraft
//! 0.9 keeps one AppendEntries in flight per follower; at 70 ms RTT throughput comes only from
//! batching).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use arbiter_core::command::{Batch, Command, Outcome};
use arbiter_core::{FencingToken, WallMillis};
use openraft::error::{ClientWriteError, RaftError};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use tokio::sync::{mpsc, oneshot, OwnedRwLockWriteGuard, RwLock, Semaphore};
use tokio::time::Instant;

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
    #[error(
        "write not confirmed within {after_ms} ms; outcome unknown: it may or may not have \
         been applied"
    )]
    Timeout { after_ms: u64 },
    /// The queue stayed full for the whole deadline: the command was never proposed.
    #[error("node overloaded: no room in the write queue for {waited_ms} ms; not applied")]
    Overloaded { waited_ms: u64 },
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

/// Where batches are committed: the Raft log in a node, a stand-in in this module's tests.
pub trait BatchLog: Clone + Send + Sync + 'static {
    /// Appends `batch` and waits until it is applied; the outcomes are in command order.
    fn commit(&self, batch: Batch)
        -> impl Future<Output = Result<Vec<Outcome>, WriteError>> + Send;
}

impl BatchLog for Raft {
    async fn commit(&self, batch: Batch) -> Result<Vec<Outcome>, WriteError> {
        self.client_write(batch)
            .await
            .map(|response| response.data)
            .map_err(write_error)
    }
}

struct Pending {
    command: Command,
    reply: oneshot::Sender<Result<Outcome, WriteError>>,
}

/// What the proposer counts, for `/metrics`.
#[derive(Debug, Clone)]
pub struct ProposerMetrics {
    /// Commands per committed log entry (group commit).
    pub batch_commands: Histogram,
    /// Proposed commands by result: `committed`, `not_leader`, `timeout`, `error`.
    pub commands: Family<ResultLabel, Counter>,
}

/// One `proposer_commands_total` series; a static string, so counting a batch allocates nothing.
#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct ResultLabel {
    result: &'static str,
}

impl Default for ProposerMetrics {
    fn default() -> Self {
        ProposerMetrics {
            batch_commands: Histogram::new(exponential_buckets(1.0, 2.0, 13)),
            commands: Family::default(),
        }
    }
}

impl ProposerMetrics {
    fn count(&self, result: &'static str, commands: usize) {
        self.commands
            .get_or_create(&ResultLabel { result })
            .inc_by(commands as u64);
    }
}

#[derive(Clone)]
pub struct Proposer {
    tx: mpsc::Sender<Pending>,
    timeout: Duration,
    metrics: ProposerMetrics,
    /// Every batch commits under a read guard; [`Proposer::pause`] takes the write guard.
    gate: Arc<RwLock<()>>,
}

/// Writes are held (queued, their deadlines running) while this lives; see
/// [`Proposer::pause`].
pub struct Paused(#[allow(dead_code)] OwnedRwLockWriteGuard<()>);

impl Proposer {
    /// Starts the batching task; it ends when every `Proposer` clone is dropped.
    pub fn start(log: impl BatchLog, timeout: Duration) -> Self {
        Proposer::with_queue_depth(log, timeout, QUEUE_DEPTH)
    }

    fn with_queue_depth(log: impl BatchLog, timeout: Duration, depth: usize) -> Self {
        let (tx, rx) = mpsc::channel(depth);
        let gate = Arc::new(RwLock::new(()));
        let metrics = ProposerMetrics::default();
        tokio::spawn(run(log, rx, timeout, gate.clone(), metrics.clone()));
        Proposer {
            tx,
            timeout,
            gate,
            metrics,
        }
    }

    /// Its instruments, to register with the node's metrics.
    pub fn metrics(&self) -> &ProposerMetrics {
        &self.metrics
    }

    /// Waits until every batch already proposed has its answer, then holds new batches until
    /// the returned guard is dropped: the log's last entry stays the last one this node
    /// proposes (a leadership move relies on it). Held commands keep their deadlines.
    pub async fn pause(&self) -> Paused {
        Paused(self.gate.clone().write_owned().await)
    }

    /// The deadline of every write.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Proposes one command and waits for its applied outcome, at most the write deadline.
    pub async fn propose(&self, command: Command) -> Result<Outcome, WriteError> {
        let started = Instant::now();
        let deadline = started + self.timeout;
        let (reply, rx) = oneshot::channel();
        // A full queue means batches are stuck or arriving faster than they commit; waiting
        // for room must not outlast the deadline either.
        match tokio::time::timeout_at(deadline, self.tx.send(Pending { command, reply })).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Err(WriteError::ShuttingDown),
            Err(_) => {
                return Err(WriteError::Overloaded {
                    waited_ms: millis(started.elapsed()),
                })
            }
        }
        // Queued: from here on the command may be proposed, so running out of time leaves
        // its outcome unknown. The batch task has its own deadline per batch; this one bounds
        // the caller's wait, whenever its batch started.
        match tokio::time::timeout_at(deadline, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(WriteError::ShuttingDown),
            Err(_) => Err(WriteError::Timeout {
                after_ms: millis(self.timeout),
            }),
        }
    }
}

async fn run(
    log: impl BatchLog,
    mut rx: mpsc::Receiver<Pending>,
    timeout: Duration,
    gate: Arc<RwLock<()>>,
    metrics: ProposerMetrics,
) {
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
        // A caller that already got its timeout has been told "outcome unknown"; leaving its
        // command out keeps a backlog of abandoned commands from delaying live ones.
        batch.retain(|p| !p.reply.is_closed());
        if batch.is_empty() {
            continue;
        }
        let log = log.clone();
        let gate = gate.clone();
        let metrics = metrics.clone();
        tokio::spawn(async move {
            commit(&log, batch, timeout, &gate, &metrics).await;
            drop(permit);
        });
    }
}

async fn commit(
    log: &impl BatchLog,
    pending: Vec<Pending>,
    timeout: Duration,
    gate: &RwLock<()>,
    metrics: &ProposerMetrics,
) {
    let (commands, replies): (Vec<_>, Vec<_>) =
        pending.into_iter().map(|p| (p.command, p.reply)).unzip();
    // A pause counts against the batch's deadline like any other wait.
    let committed = async {
        let _open = gate.read().await;
        log.commit(Batch::new(wall_now(), commands)).await
    };
    let result = match tokio::time::timeout(timeout, committed).await {
        Ok(result) => result,
        Err(_) => Err(WriteError::Timeout {
            after_ms: millis(timeout),
        }),
    };
    let count = replies.len();
    match &result {
        Ok(_) => {
            metrics.batch_commands.observe(count as f64);
            metrics.count("committed", count);
        }
        Err(WriteError::NotLeader { .. }) => metrics.count("not_leader", count),
        Err(WriteError::Timeout { .. }) => metrics.count("timeout", count),
        Err(_) => metrics.count("error", count),
    }
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

pub(crate) fn write_error(e: RaftError<NodeId, ClientWriteError<NodeId, Member>>) -> WriteError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => {
            WriteError::not_leader(f.leader_id, f.leader_node.as_ref())
        }
        RaftError::APIError(other) => WriteError::Raft(other.to_string()),
        RaftError::Fatal(f) => WriteError::Raft(f.to_string()),
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The leader's wall clock, stamped into each batch for audit timestamps.
pub fn wall_now() -> WallMillis {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    WallMillis(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A log whose commits never finish: a leader that lost its quorum.
    #[derive(Clone)]
    struct StalledLog;

    impl BatchLog for StalledLog {
        async fn commit(&self, _batch: Batch) -> Result<Vec<Outcome>, WriteError> {
            std::future::pending().await
        }
    }

    fn command() -> Command {
        Command::SetHealthCooldown { cooldown_ms: 1 }
    }

    const DEADLINE: Duration = Duration::from_millis(300);
    /// Scheduling slack on a loaded machine; far below "forever".
    const MARGIN: Duration = Duration::from_secs(2);

    #[tokio::test]
    async fn a_write_to_a_stalled_log_ends_by_its_deadline_with_outcome_unknown() {
        let proposer = Proposer::start(StalledLog, DEADLINE);
        let started = Instant::now();
        let error = proposer.propose(command()).await.unwrap_err();
        let took = started.elapsed();
        assert_eq!(error, WriteError::Timeout { after_ms: 300 });
        assert!(error.to_string().contains("outcome unknown"), "{error}");
        assert!(
            took >= DEADLINE && took < DEADLINE + MARGIN,
            "took {took:?}"
        );
    }

    #[tokio::test]
    async fn a_full_queue_refuses_admission_by_the_deadline_instead_of_blocking() {
        // Queue depth 1 and four stalled batches of at most two commands each (the queue
        // never holds more than one while a batch forms): twenty callers cannot all get in.
        let proposer = Proposer::with_queue_depth(StalledLog, DEADLINE, 1);
        let calls = (0..20).map(|_| {
            let proposer = proposer.clone();
            tokio::spawn(async move {
                let started = Instant::now();
                let result = proposer.propose(command()).await;
                (result, started.elapsed())
            })
        });
        let (mut overloaded, mut unknown) = (0, 0);
        for call in futures::future::join_all(calls).await {
            let (result, took) = call.expect("task");
            assert!(took < DEADLINE + MARGIN, "a caller waited {took:?}");
            match result {
                Err(WriteError::Overloaded { waited_ms }) => {
                    assert!(waited_ms >= 300, "refused only at the deadline");
                    overloaded += 1;
                }
                Err(WriteError::Timeout { .. }) => unknown += 1,
                other => panic!("unexpected answer from a stalled log: {other:?}"),
            }
        }
        assert!(overloaded > 0, "some callers found the queue full");
        assert!(
            unknown > 0,
            "the admitted ones time out with outcome unknown"
        );
    }

    #[test]
    fn the_admission_refusal_says_nothing_was_applied() {
        let refusal = WriteError::Overloaded { waited_ms: 5 }.to_string();
        assert!(refusal.contains("not applied"), "{refusal}");
        assert!(WriteError::Overloaded { waited_ms: 5 }.is_retryable());
    }

    /// Commits after `delay`, counting what it committed.
    #[derive(Clone)]
    struct SlowLog {
        delay: Duration,
        started: Arc<tokio::sync::Notify>,
        committed: Arc<std::sync::atomic::AtomicUsize>,
    }

    impl BatchLog for SlowLog {
        async fn commit(&self, batch: Batch) -> Result<Vec<Outcome>, WriteError> {
            self.started.notify_one();
            tokio::time::sleep(self.delay).await;
            self.committed
                .fetch_add(batch.commands.len(), std::sync::atomic::Ordering::SeqCst);
            Ok(vec![Outcome::Done; batch.commands.len()])
        }
    }

    #[tokio::test]
    async fn a_pause_waits_for_batches_in_flight_and_holds_new_ones_until_released() {
        use std::sync::atomic::Ordering;
        let committed = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let started = Arc::new(tokio::sync::Notify::new());
        let log = SlowLog {
            delay: Duration::from_millis(100),
            started: started.clone(),
            committed: committed.clone(),
        };
        let proposer = Proposer::start(log, Duration::from_secs(10));
        let first = tokio::spawn({
            let proposer = proposer.clone();
            async move { proposer.propose(command()).await }
        });
        // The first batch is in flight once the log has it; pausing then must wait for it.
        started.notified().await;
        let paused = proposer.pause().await;
        assert_eq!(
            committed.load(Ordering::SeqCst),
            1,
            "pause returned before the batch in flight committed"
        );
        assert_eq!(first.await.expect("task"), Ok(Outcome::Done));

        let held = tokio::spawn({
            let proposer = proposer.clone();
            async move { proposer.propose(command()).await }
        });
        // Long enough for an unpaused proposer to commit it three times over.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            !held.is_finished(),
            "a write committed while the proposer was paused"
        );
        assert_eq!(committed.load(Ordering::SeqCst), 1);
        drop(paused);
        assert_eq!(held.await.expect("task"), Ok(Outcome::Done));
        assert_eq!(committed.load(Ordering::SeqCst), 2);
    }
}
