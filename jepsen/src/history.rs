//! The operation history: every call the harness made and how it ended, one JSON object a line.
//!
//! Invariant: a [`History`] is well formed — `index` strictly increases, `time_ns` never goes
//! backwards, every completion pairs with the one outstanding invocation of its process (same `f`
//! and `key`), and nemesis ops come only from the nemesis process. Checkers therefore judge
//! semantics only, never structure. Real-time precedence ("A completed before B was invoked") is
//! read from `index`, which the recorder assigns in the same critical section as `time_ns`.

use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use arbiter_core::{FencingToken, HolderId};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

/// Position of an op in the history; an invocation's index also names its whole call.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct OpIndex(pub u64);

impl fmt::Display for OpIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// Who performed an op: a client (serialized as its number) or the nemesis (`"nemesis"`), as in
/// Jepsen, so nemesis windows never pass for client activity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Process {
    Client(u64),
    Nemesis,
}

const NEMESIS: &str = "nemesis";

impl fmt::Display for Process {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Process::Client(n) => write!(f, "{n}"),
            Process::Nemesis => f.write_str(NEMESIS),
        }
    }
}

impl Serialize for Process {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Process::Client(n) => s.serialize_u64(*n),
            Process::Nemesis => s.serialize_str(NEMESIS),
        }
    }
}

impl<'de> Deserialize<'de> for Process {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Repr {
            Number(u64),
            Name(String),
        }
        match Repr::deserialize(d)? {
            Repr::Number(n) => Ok(Process::Client(n)),
            Repr::Name(name) if name == NEMESIS => Ok(Process::Nemesis),
            Repr::Name(name) => Err(serde::de::Error::custom(format!(
                "process must be a client number or \"{NEMESIS}\", got \"{name}\""
            ))),
        }
    }
}

/// Whether a line opens a call or says how it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OpType {
    Invoke,
    /// Took effect.
    Ok,
    /// Definitely did not take effect.
    Fail,
    /// Unknown outcome (timeout, crash): may have taken effect, at any time after the invoke.
    Info,
}

/// The operation. The `key` names a resource (lease ops, `fenced_write`), a tenant routing
/// register (`read`, `write`, `cas`), a failover log (`append`, `read_log`) or a scheduled fault
/// (`nemesis`, `heal`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum F {
    /// Ask for the write lease; `ok` carries `token` and the holder's `valid_until_ns`.
    Acquire,
    /// Renew; `ok` carries the new `valid_until_ns`.
    Keepalive,
    /// Give the lease up; the holder stops at the invoke.
    Release,
    /// The holder's SDK declared the lease lost (recorded as invoke + ok at that instant).
    LeaseLost,
    /// A write to the fenced resource carrying `token`; `ok` = accepted, `fail` = rejected.
    FencedWrite,
    /// Register read; `ok` value is what was read (`null` = never written).
    Read,
    /// Register write of `value`.
    Write,
    /// Register compare-and-set; value is `[expected, new]`, `fail` = not swapped.
    Cas,
    /// Append `value` to a failover log.
    Append,
    /// Read a whole failover log; `ok` value is the list.
    ReadLog,
    /// The nemesis starts a fault; value is the `nemesis::Fault`, key its schedule id.
    Nemesis,
    /// The nemesis undoes the fault with the same key (heal, restart, resume).
    Heal,
}

impl F {
    /// Nemesis ops describe the environment, not the system under test.
    pub fn is_nemesis(self) -> bool {
        matches!(self, F::Nemesis | F::Heal)
    }

    /// Whether the op is a request to the arbiter (or, for `keepalive`, a holder seeing one
    /// succeed), as opposed to something the harness does on its own: a write to its in-process
    /// fenced resource, a holder noticing its lease ended. Only requests say whether the
    /// service was available.
    pub fn reaches_arbiter(self) -> bool {
        matches!(
            self,
            F::Acquire
                | F::Keepalive
                | F::Release
                | F::Read
                | F::Write
                | F::Cas
                | F::Append
                | F::ReadLog
        )
    }
}

impl fmt::Display for F {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The serde name is the one users see in the history file; serializing a unit variant
        // cannot fail, the "?" is only there to avoid a panic path.
        let name = serde_json::to_value(self).ok();
        f.write_str(name.as_ref().and_then(Value::as_str).unwrap_or("?"))
    }
}

/// One line of the history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Op {
    pub index: OpIndex,
    pub process: Process,
    #[serde(rename = "type")]
    pub kind: OpType,
    pub f: F,
    pub key: String,
    #[serde(default)]
    pub value: Value,
    /// Monotonic nanoseconds since the run started, on the recorder's clock.
    pub time_ns: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holder: Option<HolderId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<FencingToken>,
    /// The holder's own lease deadline, as it computed it, on the same clock as `time_ns`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_until_ns: Option<u64>,
}

impl Op {
    /// An invocation; `index` and `time_ns` are stamped when it is recorded.
    pub fn invoke(process: Process, f: F, key: impl Into<String>, value: Value) -> Op {
        Op {
            index: OpIndex::default(),
            process,
            kind: OpType::Invoke,
            f,
            key: key.into(),
            value,
            time_ns: 0,
            holder: None,
            token: None,
            valid_until_ns: None,
        }
    }

    /// The completion of this invocation: same process, f, key, holder and token.
    pub fn complete(&self, kind: OpType, value: Value) -> Op {
        Op {
            kind,
            value,
            valid_until_ns: None,
            ..self.clone()
        }
    }

    pub fn with_holder(mut self, holder: HolderId) -> Op {
        self.holder = Some(holder);
        self
    }

    pub fn with_token(mut self, token: FencingToken) -> Op {
        self.token = Some(token);
        self
    }

    pub fn with_valid_until(mut self, valid_until_ns: u64) -> Op {
        self.valid_until_ns = Some(valid_until_ns);
        self
    }
}

/// How a call ended, as far as a checker may assume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Fail,
    /// `info`, or still outstanding when the history ended: possibly applied.
    Unknown,
}

/// An invocation with its completion, if one was recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    pub invoke: Op,
    pub completion: Option<Op>,
}

impl Call {
    pub fn id(&self) -> OpIndex {
        self.invoke.index
    }

    pub fn f(&self) -> F {
        self.invoke.f
    }

    pub fn key(&self) -> &str {
        &self.invoke.key
    }

    pub fn outcome(&self) -> Outcome {
        match self.completion.as_ref().map(|c| c.kind) {
            Some(OpType::Ok) => Outcome::Ok,
            Some(OpType::Fail) => Outcome::Fail,
            _ => Outcome::Unknown,
        }
    }

    /// The completion, when it is `ok`.
    pub fn ok(&self) -> Option<&Op> {
        self.completion.as_ref().filter(|c| c.kind == OpType::Ok)
    }

    /// Where the call definitely ended: its `ok`/`fail` completion. An `info` call may still take
    /// effect later, so it has no end.
    pub fn end(&self) -> Option<&Op> {
        self.completion
            .as_ref()
            .filter(|c| matches!(c.kind, OpType::Ok | OpType::Fail))
    }

    /// Real-time order: this call definitely ended before `later` was invoked.
    pub fn precedes(&self, later: &Call) -> bool {
        self.end().is_some_and(|e| e.index < later.invoke.index)
    }

    /// Last recorded instant of the call (its completion of any kind, else its invoke).
    pub fn last_time_ns(&self) -> u64 {
        self.completion
            .as_ref()
            .map_or(self.invoke.time_ns, |c| c.time_ns)
    }
}

/// Why a history could not be read; every variant names the offending line.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("cannot open history {}: {source}", path.display())]
    Open { path: PathBuf, source: io::Error },
    #[error("line {line}: read failed: {source}")]
    Read { line: usize, source: io::Error },
    #[error("line {line}: not a history record: {source}")]
    Parse {
        line: usize,
        source: serde_json::Error,
    },
    #[error("line {line}: index {index} does not follow {previous}")]
    IndexOrder {
        line: usize,
        index: OpIndex,
        previous: OpIndex,
    },
    #[error("line {line}: time_ns {time_ns} is earlier than the previous line's {previous}")]
    TimeOrder {
        line: usize,
        time_ns: u64,
        previous: u64,
    },
    #[error("line {line}: process {process} invokes {index} while {outstanding} is outstanding")]
    DoubleInvoke {
        line: usize,
        process: Process,
        index: OpIndex,
        outstanding: OpIndex,
    },
    #[error("line {line}: completion {index} of process {process} has no outstanding invocation")]
    OrphanCompletion {
        line: usize,
        process: Process,
        index: OpIndex,
    },
    #[error(
        "line {line}: completion {index} ({f} {key:?}) does not match invocation {invoke} \
         ({invoke_f} {invoke_key:?})"
    )]
    Mismatch {
        line: usize,
        index: OpIndex,
        f: F,
        key: String,
        invoke: OpIndex,
        invoke_f: F,
        invoke_key: String,
    },
    #[error(
        "line {line}: {f} op {index} from process {process}: nemesis and heal ops belong to \
         the nemesis process, all others to clients"
    )]
    WrongProcess {
        line: usize,
        index: OpIndex,
        f: F,
        process: Process,
    },
}

/// A well-formed history, as calls in invocation order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct History {
    calls: Vec<Call>,
}

impl History {
    pub fn calls(&self) -> &[Call] {
        &self.calls
    }

    /// Client calls only (no nemesis ops).
    pub fn client_calls(&self) -> impl Iterator<Item = &Call> {
        self.calls.iter().filter(|c| !c.f().is_nemesis())
    }

    /// Validates and pairs ops given in recorded order; errors cite 1-based positions as lines.
    pub fn from_ops(ops: impl IntoIterator<Item = Op>) -> Result<History, HistoryError> {
        let mut pairer = Pairer::default();
        for (i, op) in ops.into_iter().enumerate() {
            pairer.push(op, i + 1)?;
        }
        Ok(pairer.finish())
    }

    /// Reads a JSON-lines history; blank lines are skipped.
    pub fn read_jsonl(path: &Path) -> Result<History, HistoryError> {
        let file = File::open(path).map_err(|source| HistoryError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        History::from_reader(BufReader::new(file))
    }

    pub fn from_reader(reader: impl BufRead) -> Result<History, HistoryError> {
        let mut pairer = Pairer::default();
        for (i, line) in reader.lines().enumerate() {
            let line_no = i + 1;
            let text = line.map_err(|source| HistoryError::Read {
                line: line_no,
                source,
            })?;
            if text.trim().is_empty() {
                continue;
            }
            let op = serde_json::from_str(&text).map_err(|source| HistoryError::Parse {
                line: line_no,
                source,
            })?;
            pairer.push(op, line_no)?;
        }
        Ok(pairer.finish())
    }
}

/// Incremental validation: one pass, one outstanding call per process.
#[derive(Default)]
struct Pairer {
    calls: Vec<Call>,
    /// Process → position in `calls` of its outstanding invocation.
    outstanding: HashMap<Process, usize>,
    last: Option<(OpIndex, u64)>,
}

impl Pairer {
    fn push(&mut self, op: Op, line: usize) -> Result<(), HistoryError> {
        if let Some((previous, previous_time)) = self.last {
            if op.index <= previous {
                return Err(HistoryError::IndexOrder {
                    line,
                    index: op.index,
                    previous,
                });
            }
            if op.time_ns < previous_time {
                return Err(HistoryError::TimeOrder {
                    line,
                    time_ns: op.time_ns,
                    previous: previous_time,
                });
            }
        }
        self.last = Some((op.index, op.time_ns));
        if op.f.is_nemesis() != (op.process == Process::Nemesis) {
            return Err(HistoryError::WrongProcess {
                line,
                index: op.index,
                f: op.f,
                process: op.process,
            });
        }
        if op.kind == OpType::Invoke {
            if let Some(&pos) = self.outstanding.get(&op.process) {
                return Err(HistoryError::DoubleInvoke {
                    line,
                    process: op.process,
                    index: op.index,
                    outstanding: self.calls[pos].id(),
                });
            }
            self.outstanding.insert(op.process, self.calls.len());
            self.calls.push(Call {
                invoke: op,
                completion: None,
            });
            return Ok(());
        }
        let Some(pos) = self.outstanding.remove(&op.process) else {
            return Err(HistoryError::OrphanCompletion {
                line,
                process: op.process,
                index: op.index,
            });
        };
        let call = &mut self.calls[pos];
        if call.invoke.f != op.f || call.invoke.key != op.key {
            return Err(HistoryError::Mismatch {
                line,
                index: op.index,
                f: op.f,
                key: op.key,
                invoke: call.invoke.index,
                invoke_f: call.invoke.f,
                invoke_key: call.invoke.key.clone(),
            });
        }
        call.completion = Some(op);
        Ok(())
    }

    fn finish(self) -> History {
        History { calls: self.calls }
    }
}

/// The run's monotonic clock. Holders compute `valid_until_ns` with it, so deadlines and
/// `time_ns` are comparable.
#[derive(Debug, Clone, Copy)]
pub struct RunClock {
    start: Instant,
}

impl RunClock {
    pub fn start() -> RunClock {
        RunClock {
            start: Instant::now(),
        }
    }

    /// Nanoseconds from the run start to `instant` (0 if `instant` is earlier).
    pub fn ns_at(&self, instant: Instant) -> u64 {
        // u64 nanoseconds last 584 years; saturate rather than wrap if that is ever wrong.
        u64::try_from(instant.saturating_duration_since(self.start).as_nanos()).unwrap_or(u64::MAX)
    }

    pub fn now_ns(&self) -> u64 {
        self.ns_at(Instant::now())
    }
}

/// Appends ops to a history file as they happen.
///
/// Share it behind one lock: `index` and `time_ns` are stamped inside `append`, so the file's
/// order is real-time order.
pub struct HistoryWriter {
    file: File,
    clock: RunClock,
    next_index: u64,
    line: Vec<u8>,
}

impl HistoryWriter {
    pub fn create(path: &Path, clock: RunClock) -> io::Result<HistoryWriter> {
        Ok(HistoryWriter {
            file: File::create(path)?,
            clock,
            next_index: 0,
            line: Vec::with_capacity(256),
        })
    }

    pub fn clock(&self) -> RunClock {
        self.clock
    }

    /// Stamps `op` with the next index and the current time, writes it, and returns it.
    pub fn append(&mut self, mut op: Op) -> io::Result<Op> {
        op.index = OpIndex(self.next_index);
        op.time_ns = self.clock.now_ns();
        self.line.clear();
        serde_json::to_writer(&mut self.line, &op)?;
        self.line.push(b'\n');
        // One write_all of the whole line, no user-space buffer: this is the flush. If the
        // harness dies, every recorded op is already in the file and the last line is whole
        // or absent (an fsync would only matter if the machine died, and then the run is void).
        self.file.write_all(&self.line)?;
        self.next_index += 1;
        Ok(op)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn record_format_is_the_documented_one() {
        let op = Op::invoke(Process::Client(3), F::Acquire, "db/orders", Value::Null)
            .with_holder(HolderId::new("proxy-a"))
            .with_token(FencingToken(4096))
            .with_valid_until(5_000);
        let line = serde_json::to_value(&op).unwrap();
        assert_eq!(
            line,
            json!({"index": 0, "process": 3, "type": "invoke", "f": "acquire",
                   "key": "db/orders", "value": null, "time_ns": 0, "holder": "proxy-a",
                   "token": 4096, "valid_until_ns": 5000})
        );
        let nemesis = Op::invoke(Process::Nemesis, F::Heal, "f0", Value::Null);
        assert_eq!(
            serde_json::to_value(&nemesis).unwrap()["process"],
            "nemesis"
        );
    }

    #[test]
    fn writer_output_reads_back_as_the_same_calls() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.jsonl");
        let mut w = HistoryWriter::create(&path, RunClock::start()).unwrap();
        let inv = w
            .append(Op::invoke(Process::Client(1), F::Write, "t1", json!(7)))
            .unwrap();
        let ok = w.append(inv.complete(OpType::Ok, json!(7))).unwrap();
        let pending = w
            .append(Op::invoke(Process::Client(2), F::Read, "t1", Value::Null))
            .unwrap();
        drop(w);

        let h = History::read_jsonl(&path).unwrap();
        assert_eq!(h.calls().len(), 2);
        assert_eq!(h.calls()[0].invoke, inv);
        assert_eq!(h.calls()[0].completion.as_ref(), Some(&ok));
        assert_eq!(h.calls()[0].outcome(), Outcome::Ok);
        assert_eq!(h.calls()[1].invoke, pending);
        assert_eq!(h.calls()[1].outcome(), Outcome::Unknown);
        assert!(h.calls()[0].precedes(&h.calls()[1]));
    }

    fn read_err(text: &str) -> HistoryError {
        History::from_reader(text.as_bytes()).unwrap_err()
    }

    #[test]
    fn malformed_lines_are_reported_with_their_line_number() {
        let good = r#"{"index":0,"process":1,"type":"invoke","f":"read","key":"k","time_ns":1}"#;
        let err = read_err(&format!("{good}\n\nnot json\n"));
        assert!(matches!(err, HistoryError::Parse { line: 3, .. }), "{err}");
        assert!(err.to_string().starts_with("line 3:"), "{err}");

        let unknown_f =
            r#"{"index":0,"process":1,"type":"invoke","f":"frob","key":"k","time_ns":1}"#;
        assert!(matches!(
            read_err(unknown_f),
            HistoryError::Parse { line: 1, .. }
        ));
    }

    #[test]
    fn structural_errors_are_rejected() {
        let op = |i: u64, p: &str, t: &str, f: &str, key: &str, time: u64| {
            format!(
                r#"{{"index":{i},"process":{p},"type":"{t}","f":"{f}","key":"{key}","time_ns":{time}}}"#
            )
        };
        let cases = [
            (
                vec![
                    op(1, "1", "invoke", "read", "k", 0),
                    op(1, "2", "invoke", "read", "k", 0),
                ],
                "index",
            ),
            (
                vec![
                    op(0, "1", "invoke", "read", "k", 5),
                    op(1, "2", "invoke", "read", "k", 4),
                ],
                "time",
            ),
            (
                vec![
                    op(0, "1", "invoke", "read", "k", 0),
                    op(1, "1", "invoke", "read", "k", 0),
                ],
                "double",
            ),
            (vec![op(0, "1", "ok", "read", "k", 0)], "orphan"),
            (
                vec![
                    op(0, "1", "invoke", "read", "k", 0),
                    op(1, "1", "ok", "write", "k", 0),
                ],
                "mismatch",
            ),
            (
                vec![op(0, "\"nemesis\"", "invoke", "read", "k", 0)],
                "process",
            ),
        ];
        for (lines, what) in cases {
            let err = read_err(&lines.join("\n"));
            let expected_line = lines.len();
            let matched = match (&err, what) {
                (HistoryError::IndexOrder { line, .. }, "index")
                | (HistoryError::TimeOrder { line, .. }, "time")
                | (HistoryError::DoubleInvoke { line, .. }, "double")
                | (HistoryError::OrphanCompletion { line, .. }, "orphan")
                | (HistoryError::Mismatch { line, .. }, "mismatch")
                | (HistoryError::WrongProcess { line, .. }, "process") => *line == expected_line,
                _ => false,
            };
            assert!(matched, "{what}: got {err}");
        }
    }
}
