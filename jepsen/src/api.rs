//! The arbiter's HTTP API as the workloads call it: leader-following, one request per attempt,
//! and every answer sorted into what a history can say about it.
//!
//! Invariant: an [`Answer`] never claims more than the wire showed. `Done` is a 2xx; `Refused`
//! a 4xx the API documents as "not applied"; `Unavailable` for a write means every attempt was
//! answered 503 ("not the leader" or shutting down — the node did not act), so it definitely
//! did not take effect. Anything else — a timeout, a broken connection, 504, 500 — is
//! `Unknown`: the request may have been applied. Only requests marked retryable (reads) are
//! sent again after an unknown outcome.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use arbiter::http_client::{HttpClient, HttpResponse};
use serde_json::{json, Value};
use tokio::time::Instant;

use crate::history::OpType;

/// What one API call amounted to.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// 2xx, with the body (`null` if empty or not JSON).
    Done(Value),
    /// A 4xx: the API refused the request; nothing was applied. `after` lists the 503s that
    /// came first (the nodes that said they did not act), as evidence should that ever be false.
    Refused {
        status: u16,
        body: Value,
        after: Vec<String>,
    },
    /// No attempt got an answer, and none can have applied anything: a write saw only 503s
    /// (the node did not act); a read has no effect either way.
    Unavailable(String),
    /// The request may or may not have been applied.
    Unknown(String),
}

impl Answer {
    /// How a write that got this answer completes in the history: `ok` with what `done`
    /// makes of the body, `fail` when nothing was applied, `info` when it may have been.
    pub fn write_completion(self, done: impl FnOnce(Value) -> Value) -> (OpType, Value) {
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

/// Whether a request may be sent again after an attempt with unknown outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Reads: sending again changes nothing.
    Always,
    /// Writes: only after a 503, which says the node did not act.
    OnlyIfNotApplied,
}

/// A client of every node's HTTP API (addresses as the cluster advertises them, so leader hints
/// name the same addresses). Shared by all workers: they share the leader guess too.
pub struct ApiClient {
    nodes: Vec<String>,
    /// TLS and token for the nodes' HTTP ports.
    http: HttpClient,
    leader: AtomicUsize,
    attempt_timeout: Duration,
}

/// Attempts per call: enough to follow a hint and go round every node once more.
const ATTEMPTS_PER_NODE: usize = 2;
/// Pause before asking again when no leader is known (an election is running).
const ELECTION_PAUSE: Duration = Duration::from_millis(100);

impl ApiClient {
    pub fn new(nodes: Vec<String>, http: HttpClient, attempt_timeout: Duration) -> ApiClient {
        ApiClient {
            nodes,
            http,
            leader: AtomicUsize::new(0),
            attempt_timeout,
        }
    }

    pub fn attempt_timeout(&self) -> Duration {
        self.attempt_timeout
    }

    /// `GET path`, retried anywhere until an answer or the attempts run out.
    pub async fn get(&self, path: &str) -> Answer {
        self.call("GET", path, None, Retry::Always).await
    }

    /// A write: `method path` with a JSON body, never repeated after an unknown outcome.
    pub async fn write(&self, method: &str, path: &str, body: &Value) -> Answer {
        self.call(method, path, Some(body), Retry::OnlyIfNotApplied)
            .await
    }

    async fn call(&self, method: &str, path: &str, body: Option<&Value>, retry: Retry) -> Answer {
        let body = body.map(|b| b.to_string());
        let attempts = ATTEMPTS_PER_NODE * self.nodes.len() + 1;
        // The whole call ends in bounded time even if every node is frozen.
        let deadline = Instant::now() + self.attempt_timeout * 2;
        let mut last = String::from("no attempt made");
        let mut not_leader = Vec::new();
        for _ in 0..attempts {
            if Instant::now() >= deadline {
                break;
            }
            let index = self.leader.load(Ordering::Relaxed) % self.nodes.len();
            let url = format!("{}{path}", self.http.base_url(&self.nodes[index]));
            let sent = self
                .http
                .request(
                    method,
                    &url,
                    body.as_deref().map(str::as_bytes),
                    self.attempt_timeout,
                )
                .await;
            match sent {
                Ok(response) => match classify(&response) {
                    Class::Done(value) => return Answer::Done(value),
                    Class::Refused(status, body) => {
                        return Answer::Refused {
                            status,
                            body,
                            after: not_leader,
                        }
                    }
                    Class::NotLeader(hint) => {
                        last = format!("{url}: 503 {}", hint.as_deref().unwrap_or("no leader"));
                        not_leader.push(last.clone());
                        self.follow(index, hint.as_deref()).await;
                    }
                    Class::Unknown(why) => {
                        last = format!("{url}: {why}");
                        // A node that times out is likely cut off or frozen: whatever this
                        // call does next, the next call should try elsewhere.
                        self.rotate(index);
                        if retry == Retry::OnlyIfNotApplied {
                            return Answer::Unknown(last);
                        }
                    }
                },
                Err(e) => {
                    last = e.to_string();
                    self.rotate(index);
                    if retry == Retry::OnlyIfNotApplied {
                        return Answer::Unknown(last);
                    }
                }
            }
        }
        Answer::Unavailable(last)
    }

    /// Points the guess at the hinted leader, or at the next node after a pause when there is
    /// no hint (or it names a node this client does not know).
    async fn follow(&self, failed: usize, hint: Option<&str>) {
        match hint.and_then(|h| self.nodes.iter().position(|n| n == h)) {
            Some(leader) if leader != failed => self.leader.store(leader, Ordering::Relaxed),
            _ => {
                self.rotate(failed);
                tokio::time::sleep(ELECTION_PAUSE).await;
            }
        }
    }

    /// Moves the guess past `failed`, once even if many calls failed there at the same time.
    fn rotate(&self, failed: usize) {
        let _ = self.leader.compare_exchange(
            failed,
            (failed + 1) % self.nodes.len(),
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }
}

enum Class {
    Done(Value),
    Refused(u16, Value),
    NotLeader(Option<String>),
    Unknown(String),
}

fn classify(response: &HttpResponse) -> Class {
    let body: Value = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
    match response.status {
        200..=299 => Class::Done(body),
        // The API's 503 is "not the leader" (with `leaderHttpAddr`) or "shutting down": in
        // both the node did not act on the request.
        503 => Class::NotLeader(
            body.get("leaderHttpAddr")
                .and_then(Value::as_str)
                .map(str::to_string),
        ),
        status @ 400..=499 => Class::Refused(status, body),
        // 504: the write deadline passed, outcome unknown; 500: our bug, outcome unknown.
        status => Class::Unknown(format!("{status} {body}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(status: u16, body: &str) -> HttpResponse {
        HttpResponse {
            status,
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn answers_are_classified_by_what_they_prove() {
        assert!(matches!(
            classify(&response(200, r#"{"a":1}"#)),
            Class::Done(v) if v["a"] == 1
        ));
        assert!(matches!(
            classify(&response(409, r#"{"error":"x"}"#)),
            Class::Refused(409, _)
        ));
        assert!(matches!(
            classify(&response(503, r#"{"error":"x","leaderHttpAddr":"127.0.0.1:9"}"#)),
            Class::NotLeader(Some(h)) if h == "127.0.0.1:9"
        ));
        assert!(matches!(
            classify(&response(503, r#"{"error":"x","leaderHttpAddr":null}"#)),
            Class::NotLeader(None)
        ));
        assert!(matches!(classify(&response(504, "{}")), Class::Unknown(_)));
        assert!(matches!(classify(&response(500, "")), Class::Unknown(_)));
    }
}
