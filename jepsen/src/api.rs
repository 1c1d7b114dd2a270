//! The arbiter's HTTP API as the workloads call it: the shared leader-following
//! [`ApiClient`] (one request per attempt, every answer sorted into what it proves), and how an
//! answer completes an operation in the history.

use serde_json::{json, Value};

pub use arbiter::api_client::{Answer, ApiClient, Retry};

use crate::history::OpType;

/// How an operation that got an answer completes in the history.
pub trait Completion {
    /// A write: `ok` with what `done` makes of the body, `fail` when nothing was applied,
    /// `info` when it may have been.
    fn write_completion(self, done: impl FnOnce(Value) -> Value) -> (OpType, Value);
}

impl Completion for Answer {
    fn write_completion(self, done: impl FnOnce(Value) -> Value) -> (OpType, Value) {
        match self {
            Answer::Done(body) => (OpType::Ok, done(body)),
            Answer::Refused {
                status,
                body,
                after,
            } => (
                OpType::Fail,
                json!({ "status": status, "body": body, "after": after }),
            ),
            Answer::Unavailable(why) => (OpType::Fail, json!(why)),
            Answer::Unknown(why) => (OpType::Info, json!(why)),
        }
    }
}
