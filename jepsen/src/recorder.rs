//! The live side of the history: one [`HistoryWriter`] shared by every workload task and the
//! nemesis.
//!
//! Invariant: ops reach the file in the order they happened, because stamping (`index`,
//! `time_ns`) and writing happen under one lock. [`Recorder::atomically`] extends that lock over
//! an action, so "the fenced resource accepted the write" and "the history says it was accepted"
//! cannot be separated by another op: the checkers judge the same order the resource saw.

use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::history::{HistoryWriter, Op, OpType, RunClock};

/// Cheap to clone; clones share the writer.
#[derive(Clone)]
pub struct Recorder {
    /// A std mutex: appending is one `write_all` of a short line, never held across an await.
    writer: Arc<Mutex<HistoryWriter>>,
    clock: RunClock,
}

impl Recorder {
    pub fn create(path: &Path, clock: RunClock) -> io::Result<Recorder> {
        Ok(Recorder {
            writer: Arc::new(Mutex::new(HistoryWriter::create(path, clock)?)),
            clock,
        })
    }

    pub fn clock(&self) -> RunClock {
        self.clock
    }

    /// Records `op`, stamped now; returns it stamped.
    pub fn append(&self, op: Op) -> io::Result<Op> {
        self.lock().append(op)
    }

    /// Records the completion of `invoke`.
    pub fn complete(&self, invoke: &Op, kind: OpType, value: serde_json::Value) -> io::Result<Op> {
        self.append(invoke.complete(kind, value))
    }

    /// Runs `action` with the writer held, so nothing else is recorded between the ops it
    /// appends and the effects it has. Keep `action` short and free of I/O other than the
    /// history itself.
    pub fn atomically<T>(
        &self,
        action: impl FnOnce(&mut HistoryWriter) -> io::Result<T>,
    ) -> io::Result<T> {
        action(&mut self.lock())
    }

    fn lock(&self) -> MutexGuard<'_, HistoryWriter> {
        // A panic inside `append` leaves at worst a half-written last line, which the reader
        // reports with its line number; recording on is more useful than poisoning every task.
        self.writer.lock().unwrap_or_else(|e| e.into_inner())
    }
}
