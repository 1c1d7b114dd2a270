//! The one leader-following client of the nodes' HTTP API, shared by the CLI, the probe agent
//! and the jepsen harness: one request per attempt, leader hints followed, and every answer
//! sorted into what it proves.
//!
//! Invariant: an [`Answer`] never claims more than the wire showed. `Done` is a 2xx; `Refused`
//! a 4xx the API documents as "not applied"; `Unavailable` means no attempt got an answer that
//! could have applied anything — for a write, every attempt was answered 503 ("not the leader"
//! or shutting down: the node did not act) or never connected. Anything else — a timeout, a
//! broken connection, 504, 500 — is `Unknown`: the request may have been applied. Only
//! requests marked [`Retry::Always`] (reads, idempotent reports) are sent again after an
//! unknown outcome.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::RwLock;
use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

use crate::http_client::{HttpClient, HttpError, HttpResponse};

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
    /// (the node did not act) or refused connections; a read has no effect either way.
    Unavailable(String),
    /// The request may or may not have been applied.
    Unknown(String),
}

/// Whether a request may be sent again after an attempt with unknown outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Reads and idempotent requests: sending again changes nothing.
    Always,
    /// Writes: only after an answer that says the node did not act (503, refused connection).
    OnlyIfNotApplied,
}

/// How long one call keeps looking for a leader.
#[derive(Debug, Clone, Copy)]
pub enum Patience {
    /// A bounded number of attempts (a hint followed, every node tried twice) within two
    /// attempt timeouts: what a workload under faults wants, so a call ends promptly.
    Brief,
    /// Until an answer or this much time has passed, waiting out an election: what a person at
    /// a terminal or an agent with a report to deliver wants.
    Search(Duration),
}

/// A client of every node's HTTP API. Shared by concurrent callers: they share the leader
/// guess too. A hinted leader address not among the configured ones is added (up to
/// [`MAX_LEARNED`] of them), so one known node is enough to reach the leader.
pub struct ApiClient {
    nodes: RwLock<Vec<String>>,
    configured: usize,
    /// TLS and token for the nodes' HTTP ports.
    http: HttpClient,
    leader: AtomicUsize,
    attempt_timeout: Duration,
    patience: Patience,
}

/// Attempts per node in a [`Patience::Brief`] call: enough to follow a hint and go round once more.
const ATTEMPTS_PER_NODE: usize = 2;
/// Pause before asking again when no leader is known (an election is running).
const ELECTION_PAUSE: Duration = Duration::from_millis(100);
/// Leader addresses learned from hints beyond the configured ones.
pub const MAX_LEARNED: usize = 8;

impl ApiClient {
    /// A client of `nodes` (addresses as the cluster advertises them, so leader hints name the
    /// same addresses), each attempt bounded by `attempt_timeout`, [`Patience::Brief`].
    pub fn new(nodes: Vec<String>, http: HttpClient, attempt_timeout: Duration) -> ApiClient {
        ApiClient {
            configured: nodes.len(),
            nodes: RwLock::new(nodes),
            http,
            leader: AtomicUsize::new(0),
            attempt_timeout,
            patience: Patience::Brief,
        }
    }

    pub fn with_patience(self, patience: Patience) -> ApiClient {
        ApiClient { patience, ..self }
    }

    pub fn attempt_timeout(&self) -> Duration {
        self.attempt_timeout
    }

    /// The address the next call tries first.
    pub fn leader_guess(&self) -> Option<String> {
        let nodes = self.nodes.read().unwrap_or_else(|e| e.into_inner());
        if nodes.is_empty() {
            return None;
        }
        Some(nodes[self.leader.load(Ordering::Relaxed) % nodes.len()].clone())
    }

    /// `GET path`, retried anywhere until an answer or the patience runs out.
    pub async fn get(&self, path: &str) -> Answer {
        self.send("GET", path, None, Retry::Always).await
    }

    /// A write: `method path` with a JSON body, never repeated after an unknown outcome.
    pub async fn write(&self, method: &str, path: &str, body: &Value) -> Answer {
        self.send(method, path, Some(body), Retry::OnlyIfNotApplied)
            .await
    }

    /// `method path` with an optional JSON body, to the leader.
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        retry: Retry,
    ) -> Answer {
        let body = body.map(|b| b.to_string());
        let started = Instant::now();
        let (attempts, deadline) = match self.patience {
            Patience::Brief => (
                ATTEMPTS_PER_NODE * self.configured.max(1) + 1,
                started + self.attempt_timeout * 2,
            ),
            Patience::Search(budget) => (usize::MAX, started + budget),
        };
        let mut last = String::from("no attempt made");
        let mut not_leader = Vec::new();
        for attempt in 0..attempts {
            if attempt > 0 && Instant::now() >= deadline {
                break;
            }
            let Some((index, addr)) = self.pick() else {
                return Answer::Unavailable("no endpoints".into());
            };
            let url = format!("{}{path}", self.http.base_url(&addr));
            let timeout = self
                .attempt_timeout
                .min(deadline.saturating_duration_since(Instant::now()))
                .max(Duration::from_millis(100));
            let sent = self
                .http
                .request(method, &url, body.as_deref().map(str::as_bytes), timeout)
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
                    last = format!("{url}: {e}");
                    self.rotate(index);
                    if retry == Retry::OnlyIfNotApplied && !never_sent(&e) {
                        return Answer::Unknown(last);
                    }
                    if matches!(self.patience, Patience::Search(_)) {
                        tokio::time::sleep(ELECTION_PAUSE).await;
                    }
                }
            }
        }
        Answer::Unavailable(last)
    }

    fn pick(&self) -> Option<(usize, String)> {
        let nodes = self.nodes.read().unwrap_or_else(|e| e.into_inner());
        if nodes.is_empty() {
            return None;
        }
        let index = self.leader.load(Ordering::Relaxed) % nodes.len();
        Some((index, nodes[index].clone()))
    }

    /// Points the guess at the hinted leader, or at the next node after a pause when there is
    /// no hint.
    async fn follow(&self, failed: usize, hint: Option<&str>) {
        let hinted = hint.and_then(|h| self.position_or_learn(h));
        match hinted {
            Some(leader) if leader != failed => self.leader.store(leader, Ordering::Relaxed),
            _ => {
                self.rotate(failed);
                tokio::time::sleep(ELECTION_PAUSE).await;
            }
        }
    }

    /// The index of `addr`, added to the list if it is new and there is room.
    fn position_or_learn(&self, addr: &str) -> Option<usize> {
        let mut nodes = self.nodes.write().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = nodes.iter().position(|n| n == addr) {
            return Some(i);
        }
        if nodes.len() >= self.configured + MAX_LEARNED {
            return None;
        }
        nodes.push(addr.to_string());
        Some(nodes.len() - 1)
    }

    #[cfg(test)]
    fn nodes(&self) -> Vec<String> {
        self.nodes.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Moves the guess past `failed`, once even if many calls failed there at the same time.
    fn rotate(&self, failed: usize) {
        let len = self.nodes.read().unwrap_or_else(|e| e.into_inner()).len();
        let _ = self.leader.compare_exchange(
            failed,
            (failed + 1) % len.max(1),
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }
}

/// Whether the request certainly never reached a server (so it cannot have been applied).
fn never_sent(error: &HttpError) -> bool {
    matches!(error, HttpError::Connect { .. } | HttpError::BadUrl { .. })
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

    #[test]
    fn a_hinted_leader_outside_the_list_is_learned_up_to_a_bound() {
        let client = ApiClient::new(
            vec!["127.0.0.1:1".into()],
            HttpClient::plain(),
            Duration::from_secs(1),
        );
        assert_eq!(client.position_or_learn("127.0.0.1:1"), Some(0));
        assert_eq!(client.position_or_learn("127.0.0.1:2"), Some(1));
        assert_eq!(client.position_or_learn("127.0.0.1:2"), Some(1));
        for port in 3..3 + MAX_LEARNED as u16 {
            client.position_or_learn(&format!("127.0.0.1:{port}"));
        }
        assert_eq!(client.nodes().len(), 1 + MAX_LEARNED);
        assert_eq!(client.position_or_learn("127.0.0.1:999"), None);
    }

    #[tokio::test]
    async fn a_write_to_nodes_that_refuse_connections_is_unavailable_not_unknown() {
        // Port 1 on loopback: nothing listens there, the connection is refused.
        let client = ApiClient::new(
            vec!["127.0.0.1:1".into()],
            HttpClient::plain(),
            Duration::from_secs(1),
        );
        let answer = client.write("POST", "/v1/x", &serde_json::json!({})).await;
        assert!(matches!(answer, Answer::Unavailable(_)), "{answer:?}");
    }
}
