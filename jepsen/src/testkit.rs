//! Test support: hand-written histories with explicit times, so checker tests read as scripts.
//!
//! Invariant: ops get consecutive indexes in the order they are scripted, exactly as the
//! recorder would stamp them.

use arbiter_core::{FencingToken, HolderId};
use serde_json::Value;

use crate::history::{History, Op, OpType, Process, F};

#[derive(Default)]
pub struct Script {
    ops: Vec<Op>,
}

impl Script {
    /// Records `op` at `time_ns` and returns it, stamped, so its completion can be derived.
    pub fn op(&mut self, mut op: Op, time_ns: u64) -> Op {
        op.index = crate::history::OpIndex(self.ops.len() as u64);
        op.time_ns = time_ns;
        self.ops.push(op.clone());
        op
    }

    pub fn invoke(&mut self, process: u64, f: F, key: &str, value: Value, time_ns: u64) -> Op {
        self.op(Op::invoke(Process::Client(process), f, key, value), time_ns)
    }

    pub fn complete(&mut self, invoke: &Op, kind: OpType, value: Value, time_ns: u64) -> Op {
        self.op(invoke.complete(kind, value), time_ns)
    }

    /// `holder` (client `process`) asks for `resource`.
    pub fn acquire_invoke(&mut self, process: u64, resource: &str, holder: &str, at: u64) -> Op {
        let inv = Op::invoke(Process::Client(process), F::Acquire, resource, Value::Null)
            .with_holder(HolderId::new(holder));
        self.op(inv, at)
    }

    /// The grant of `acquire`: `token`, valid (by the holder's reckoning) until `until`.
    pub fn grant(&mut self, acquire: &Op, token: u64, until: u64, at: u64) {
        let ok = acquire
            .complete(OpType::Ok, Value::Null)
            .with_token(FencingToken(token))
            .with_valid_until(until);
        self.op(ok, at);
    }

    /// A whole acquire call, invoked at `from` and granted at `to`.
    pub fn acquire(
        &mut self,
        process: u64,
        resource: &str,
        holder: &str,
        (token, until): (u64, u64),
        from: u64,
        to: u64,
    ) -> Op {
        let inv = self.acquire_invoke(process, resource, holder, from);
        self.grant(&inv, token, until, to);
        inv
    }

    pub fn history(self) -> History {
        History::from_ops(self.ops).expect("scripted history is well formed")
    }
}
