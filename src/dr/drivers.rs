//! Pluggable drivers that carry DR decisions out of the arbiter: shift traffic at the edge,
//! scale standby compute.
//!
//! Invariant: a driver call always ends — each attempt has a timeout, retries are bounded —
//! and its result (success, attempts, what the driver said) is returned for the failover
//! timeline. Drivers may be called more than once for one decision (a new leader resumes a step
//! whose outcome was not yet logged), so driver commands must be idempotent: "set weights to X",
//! "scale to N", never "add N".
//!
//! Every call carries the fencing epoch of the decision it carries out and the term of the leader
//! making it ([`DriverCall::epoch`], [`DriverCall::leader_term`]; `ARBITER_EPOCH` and
//! `ARBITER_LEADER_TERM` for `exec`, `epoch` and `leaderTerm` in the JSON for `exec` and
//! `webhook`), so whatever acts on it can refuse a deposed leader replaying an older decision:
//! obey an epoch at least the last one obeyed, refuse a lower one.

use std::process::Stdio;
use std::time::Duration;

use serde::Serialize;
use tokio::io::AsyncWriteExt;

use super::config::{DriverConfig, DriverKind};
use super::metrics::DrMetrics;
use crate::http_client;

/// The decision handed to a driver (JSON on stdin / as the webhook body).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DriverCall {
    /// `shift_traffic` or `scale_standby`.
    pub action: &'static str,
    pub failover_id: Option<String>,
    pub task_track_id: Option<String>,
    pub from_region: Option<String>,
    pub to_region: Option<String>,
    /// Traffic weights after the decision, region → percent.
    pub weights: Vec<(String, f64)>,
    pub reason: String,
    /// The fencing epoch of the decision: the fencing token (log position) of the entry that
    /// made it — a failover's `fo-<token>`, a traffic task's `dr_shift_<token in hex>`. Later
    /// decisions have larger epochs; a call repeated for the same decision (a new leader
    /// resuming it) carries the same one.
    pub epoch: u64,
    /// The Raft term of the leader making the call.
    pub leader_term: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriverResult {
    pub ok: bool,
    pub attempts: u32,
    pub detail: String,
}

#[derive(Debug, Clone)]
pub struct Driver {
    name: &'static str,
    config: DriverConfig,
    metrics: DrMetrics,
}

/// How much of a driver's output goes into the timeline.
const DETAIL_LIMIT: usize = 300;

impl Driver {
    pub fn new(name: &'static str, config: DriverConfig) -> Self {
        Driver {
            name,
            config,
            metrics: DrMetrics::default(),
        }
    }

    /// Counts this driver's calls in `metrics` (shared with the controller's registry).
    pub fn with_metrics(self, metrics: DrMetrics) -> Self {
        Driver { metrics, ..self }
    }

    /// Calls the driver, retrying as configured, and counts the call.
    pub async fn run(&self, call: &DriverCall) -> DriverResult {
        let started = std::time::Instant::now();
        let result = self.attempt(call).await;
        self.metrics
            .driver_call(self.name, result.ok, started.elapsed());
        result
    }

    async fn attempt(&self, call: &DriverCall) -> DriverResult {
        let mut last = String::new();
        for attempt in 1..=self.config.retries + 1 {
            let timeout = Duration::from_millis(self.config.timeout_ms);
            let outcome = match &self.config.kind {
                DriverKind::Builtin => Ok(format!(
                    "routing table updated (builtin driver, epoch {}, term {})",
                    call.epoch, call.leader_term
                )),
                DriverKind::Exec { command } => run_exec(command, call, timeout).await,
                DriverKind::Webhook { url, token_file } => {
                    run_webhook(url, token_file.as_deref(), call, timeout).await
                }
            };
            match outcome {
                Ok(detail) => {
                    return DriverResult {
                        ok: true,
                        attempts: attempt,
                        detail: format!("{} driver: {}", self.name, truncate(&detail)),
                    }
                }
                Err(e) => {
                    tracing::warn!(driver = self.name, attempt, error = %e, "driver attempt failed");
                    last = e;
                    // Short, growing pause between attempts; bounded by the retry count.
                    tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt))).await;
                }
            }
        }
        DriverResult {
            ok: false,
            attempts: self.config.retries + 1,
            detail: format!("{} driver failed: {}", self.name, truncate(&last)),
        }
    }
}

fn truncate(s: &str) -> String {
    let s = s.trim();
    match s.char_indices().nth(DETAIL_LIMIT) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

async fn run_exec(
    command: &[String],
    call: &DriverCall,
    timeout: Duration,
) -> Result<String, String> {
    let (program, args) = command.split_first().ok_or("empty command")?;
    let json = serde_json::to_vec(call).map_err(|e| e.to_string())?;
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .env("ARBITER_ACTION", call.action)
        .env(
            "ARBITER_FAILOVER_ID",
            call.failover_id.clone().unwrap_or_default(),
        )
        .env(
            "ARBITER_TASK_ID",
            call.task_track_id.clone().unwrap_or_default(),
        )
        .env(
            "ARBITER_FROM_REGION",
            call.from_region.clone().unwrap_or_default(),
        )
        .env(
            "ARBITER_TO_REGION",
            call.to_region.clone().unwrap_or_default(),
        )
        .env("ARBITER_REASON", &call.reason)
        .env("ARBITER_EPOCH", call.epoch.to_string())
        .env("ARBITER_LEADER_TERM", call.leader_term.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // A timed-out driver must not linger.
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A driver that ignores stdin may close it early; that is not a failure.
        let _ = stdin.write_all(&json).await;
    }
    let output = tokio::time::timeout(timeout, child.wait_with_output())
        .await
        .map_err(|_| format!("timed out after {} ms", timeout.as_millis()))?
        .map_err(|e| e.to_string())?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if output.status.success() {
        Ok(format!("exit 0: {stdout}"))
    } else {
        Err(format!(
            "{}: {}{}",
            output.status,
            stdout,
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

async fn run_webhook(
    url: &str,
    token_file: Option<&std::path::Path>,
    call: &DriverCall,
    timeout: Duration,
) -> Result<String, String> {
    let json = serde_json::to_vec(call).map_err(|e| e.to_string())?;
    let token = match token_file {
        Some(path) => Some(
            tokio::fs::read_to_string(path)
                .await
                .map_err(|e| format!("webhook token_file {}: {e}", path.display()))?,
        ),
        None => None,
    };
    let response = http_client::HttpClient::new(None, token.as_deref())
        .request("POST", url, Some(&json), timeout)
        .await
        .map_err(|e| e.to_string())?;
    let body = String::from_utf8_lossy(&response.body).to_string();
    if response.is_success() {
        Ok(format!("HTTP {}: {body}", response.status))
    } else {
        Err(format!("HTTP {}: {body}", response.status))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call() -> DriverCall {
        DriverCall {
            action: "shift_traffic",
            failover_id: Some("fo-1".into()),
            task_track_id: None,
            from_region: Some("us-east-1".into()),
            to_region: Some("us-west-2".into()),
            weights: vec![("us-west-2".into(), 100.0)],
            reason: "test".into(),
            epoch: 8_192,
            leader_term: 3,
        }
    }

    fn exec(script: &str, retries: u32) -> Driver {
        Driver::new(
            "traffic",
            DriverConfig {
                kind: DriverKind::Exec {
                    command: vec!["/bin/sh".into(), "-c".into(), script.into()],
                },
                timeout_ms: 2_000,
                retries,
            },
        )
    }

    #[tokio::test]
    async fn exec_driver_gets_env_and_json() {
        let result = exec(
            r#"read -r json; echo "$ARBITER_ACTION $ARBITER_FROM_REGION->$ARBITER_TO_REGION ${#json}""#,
            0,
        )
        .run(&call())
        .await;
        assert!(result.ok, "{result:?}");
        assert!(
            result.detail.contains("shift_traffic us-east-1->us-west-2"),
            "{}",
            result.detail
        );
    }

    /// Issue 11, item 2: the far side gets the decision's epoch and the leader's term, in the
    /// environment and in the JSON, and the builtin driver reports them.
    #[tokio::test]
    async fn every_driver_call_carries_the_epoch_and_the_leader_term() {
        let result = exec(
            r#"read -r json; echo "env $ARBITER_EPOCH $ARBITER_LEADER_TERM json $json""#,
            0,
        )
        .run(&call())
        .await;
        assert!(result.ok, "{result:?}");
        assert!(
            result.detail.contains("env 8192 3 json"),
            "{}",
            result.detail
        );
        assert!(
            result.detail.contains(r#""epoch":8192"#)
                && result.detail.contains(r#""leaderTerm":3"#),
            "{}",
            result.detail
        );
        let builtin = Driver::new("traffic", DriverConfig::default())
            .run(&call())
            .await;
        assert!(
            builtin.detail.contains("epoch 8192, term 3"),
            "{}",
            builtin.detail
        );
    }

    /// Answers one HTTP request with `status`; returns what was received.
    async fn one_request(
        listener: tokio::net::TcpListener,
        status: u16,
    ) -> tokio::task::JoinHandle<String> {
        use tokio::io::AsyncReadExt;
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.expect("accept");
            let mut received = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                let n = stream.read(&mut buf).await.expect("read");
                received.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&received).to_string();
                if let Some(end) = text.find("\r\n\r\n") {
                    let length: usize = text
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse().expect("length"))
                        })
                        .unwrap_or(0);
                    if received.len() >= end + 4 + length || n == 0 {
                        break;
                    }
                }
                assert!(n > 0, "the request ended early");
            }
            let answer =
                format!("HTTP/1.1 {status} X\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
            stream.write_all(answer.as_bytes()).await.expect("write");
            String::from_utf8_lossy(&received).to_string()
        })
    }

    #[tokio::test]
    async fn webhook_driver_presents_the_token_file_and_the_decision() {
        let dir = tempfile::tempdir().expect("temp dir");
        let token_file = dir.path().join("webhook.token");
        std::fs::write(&token_file, "s3cret\n").expect("token");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!(
            "http://{}/v1/agent/actions",
            listener.local_addr().expect("addr")
        );
        let server = one_request(listener, 200).await;
        let driver = Driver::new(
            "traffic",
            DriverConfig {
                kind: DriverKind::Webhook {
                    url: url.clone(),
                    token_file: Some(token_file),
                },
                timeout_ms: 2_000,
                retries: 0,
            },
        );
        let result = driver.run(&call()).await;
        assert!(result.ok, "{result:?}");
        let request = server.await.expect("server");
        assert!(request.starts_with("POST /v1/agent/actions "), "{request}");
        assert!(
            request
                .lines()
                .any(|l| l.eq_ignore_ascii_case("authorization: Bearer s3cret")),
            "{request}"
        );
        assert!(request.contains(r#""epoch":8192"#), "{request}");

        // Without a token file: no credential, and the agent's 401 is a failed call.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}/", listener.local_addr().expect("addr"));
        let server = one_request(listener, 401).await;
        let driver = Driver::new(
            "traffic",
            DriverConfig {
                kind: DriverKind::Webhook {
                    url,
                    token_file: None,
                },
                timeout_ms: 2_000,
                retries: 0,
            },
        );
        let result = driver.run(&call()).await;
        assert!(
            !result.ok && result.detail.contains("HTTP 401"),
            "{result:?}"
        );
        let request = server.await.expect("server");
        assert!(
            !request.to_ascii_lowercase().contains("authorization"),
            "{request}"
        );
    }

    #[tokio::test]
    async fn failing_exec_driver_is_retried_then_reported() {
        let result = exec("echo nope >&2; exit 3", 2).run(&call()).await;
        assert!(!result.ok);
        assert_eq!(result.attempts, 3);
        assert!(result.detail.contains("nope"), "{}", result.detail);
    }

    #[tokio::test]
    async fn hanging_exec_driver_times_out() {
        let mut driver = exec("sleep 30", 0);
        driver.config.timeout_ms = 200;
        let started = std::time::Instant::now();
        let result = driver.run(&call()).await;
        assert!(!result.ok);
        assert!(result.detail.contains("timed out"), "{}", result.detail);
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
