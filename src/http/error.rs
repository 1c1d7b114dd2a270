//! The one place where errors become HTTP responses.
//!
//! Invariant: every failure answers JSON with an `error` string that says what is wrong
//! ([`ErrorBody`]; a 503 adds `leaderHttpAddr`, [`NotLeaderBody`]; the failback gate's 409 its
//! reason, [`FailbackRefusedBody`]; these types are also the OpenAPI document's schemas), and a
//! caller can tell what to do from the status alone:
//!
//! | status | meaning |
//! |---|---|
//! | 400 | malformed JSON, empty body, bad query string or path |
//! | 401 | no credentials, or a token or certificate the node does not know (`WWW-Authenticate: Bearer`) |
//! | 403 | authenticated, but the role may not do this, or a bound role acts for someone else |
//! | 413 | body over [`super::MAX_BODY_BYTES`] |
//! | 415 | body not declared `application/json` |
//! | 422 | well-formed, but a field is missing, of the wrong type, out of range, or names an unknown region |
//! | 404 | no such tenant, task, failover or route |
//! | 405 | the route exists, the method does not |
//! | 409 | refused by the replicated state (failback gate, failover in progress, locked tenant, no weights) |
//! | 503 | not the leader: `leaderHttpAddr` says where to retry (`null` during an election), shutting down, or the write queue stayed full (not applied) |
//! | 504 | the write was not confirmed in time; it may or may not have been applied |
//! | 500 | our bug: logged here, never leaked |
//!
//! Bad input is always a 4xx and is rejected before anything is proposed, so it never changes
//! the replicated state.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use serde_json::{json, Value};
use utoipa::ToSchema;

use arbiter_core::failover_plan::FailbackRefusal;

use crate::auth::AuthError;
use crate::dr::DrError;
use crate::node::NodeContext;
use crate::proposer::WriteError;
use crate::raft_types::NodeId;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// An extractor refused the request (body, query or path); keeps axum's status.
    #[error("{message}")]
    Rejected { status: StatusCode, message: String },
    /// Well-formed but wrong: a value out of range, an unknown region, a contradiction.
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    /// The replicated state refused the request as it stands now.
    #[error("{0}")]
    Conflict(String),
    #[error("failback refused: {0}")]
    FailbackRefused(FailbackRefusal),
    /// Not the leader; retry at `leader_http_addr` (unknown during an election).
    #[error("not the leader")]
    NotLeader { leader_http_addr: Option<String> },
    #[error("{0}")]
    Timeout(String),
    #[error("{0}")]
    Unavailable(String),
    /// Logged when the response is built; the caller only learns that it was our fault.
    #[error("{0}")]
    Internal(String),
    /// Refused by the auth layer or a handler's `authorize` (already logged and counted there).
    #[error(transparent)]
    Auth(#[from] AuthError),
}

impl ApiError {
    /// A write or read-barrier failure, with the leader's HTTP address looked up in the Raft
    /// membership (the proposer only knows its gRPC address).
    pub fn write(node: &NodeContext, e: WriteError) -> ApiError {
        match e {
            WriteError::NotLeader { leader_id, .. } => ApiError::NotLeader {
                leader_http_addr: leader_http_addr(node, leader_id),
            },
            WriteError::Timeout { .. } => ApiError::Timeout(e.to_string()),
            WriteError::ShuttingDown | WriteError::Overloaded { .. } => {
                ApiError::Unavailable(e.to_string())
            }
            WriteError::Raft(detail) => ApiError::Internal(format!("raft: {detail}")),
        }
    }

    /// A DR controller refusal or failure.
    pub fn dr(node: &NodeContext, e: DrError) -> ApiError {
        match e {
            DrError::NotLeader { leader_id, .. } => ApiError::NotLeader {
                leader_http_addr: leader_http_addr(node, leader_id),
            },
            DrError::Write(e) => ApiError::write(node, e),
            DrError::Failback(refusal) => ApiError::FailbackRefused(refusal),
            DrError::Promotion(refusal) => ApiError::Conflict(format!(
                "promotion refused: {refusal}; an operator may fail over anyway with \
                 \"breakGlass\": true"
            )),
            DrError::Refused(reason) => ApiError::Conflict(reason),
            DrError::Invalid(reason) => ApiError::Invalid(reason),
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            ApiError::Rejected { status, .. } => *status,
            ApiError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) | ApiError::FailbackRefused(_) => StatusCode::CONFLICT,
            ApiError::NotLeader { .. } | ApiError::Unavailable(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Auth(AuthError::Unauthenticated(_)) => StatusCode::UNAUTHORIZED,
            ApiError::Auth(AuthError::Forbidden { .. } | AuthError::WrongPort(_)) => {
                StatusCode::FORBIDDEN
            }
        }
    }
}

/// The HTTP address the Raft membership holds for `leader_id`.
fn leader_http_addr(node: &NodeContext, leader_id: Option<NodeId>) -> Option<String> {
    let id = leader_id?;
    let metrics = node.raft.metrics().borrow().clone();
    metrics
        .membership_config
        .membership()
        .get_node(&id)
        .map(|member| member.http_addr.clone())
        .filter(|addr| !addr.is_empty())
}

/// The body of every error answer but the two below (and the OpenAPI document's schema of it).
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// What is wrong, naming the field, the state or the credential that refused the request.
    #[schema(example = "`ttlMs`: must be at least 500 ms")]
    pub error: String,
}

/// A 503. From a node that is not the leader, `leaderHttpAddr` says where to retry; a leader
/// that is shutting down or whose write queue stayed full answers only `error`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NotLeaderBody {
    #[schema(example = "not the leader; retry at 10.0.2.7:8081")]
    pub error: String,
    /// The leader's HTTP address; `null` while no leader is known (an election).
    #[schema(example = "10.0.2.7:8081")]
    pub leader_http_addr: Option<String>,
}

/// A 409 from the failback gate: the machine-readable reason beside the message. (In the
/// OpenAPI document the three fields after `error` are optional, since a failback refused by
/// the replicated state rather than the gate answers a plain `ErrorBody`.)
#[derive(Debug, Serialize, ToSchema)]
pub struct FailbackRefusedBody {
    #[schema(example = "failback refused: the recovered region's checkpoint is behind")]
    pub error: String,
    /// The gate's reason: `RegionNotRecovered`, `CooldownNotElapsed`, `CheckpointBehind`,
    /// `CheckpointDiverged` or `RpoViolated`.
    #[schema(required = false, example = "CheckpointBehind")]
    pub reason: String,
    /// The reason's fields, in camelCase.
    #[schema(required = false, value_type = Object, example = json!({"recoveredEpoch": 7, "primaryEpoch": 9}))]
    pub detail: Value,
    /// Whether asking again later, unchanged, can succeed.
    #[schema(required = false)]
    pub retryable: bool,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = match &self {
            ApiError::NotLeader { leader_http_addr } => Json(NotLeaderBody {
                error: match leader_http_addr {
                    Some(addr) => format!("not the leader; retry at {addr}"),
                    None => "not the leader, and no leader is known (election in progress); retry shortly".to_string(),
                },
                leader_http_addr: leader_http_addr.clone(),
            })
            .into_response(),
            ApiError::FailbackRefused(refusal) => {
                let (reason, detail) = refusal_parts(refusal);
                Json(FailbackRefusedBody {
                    error: format!("failback refused: {refusal}"),
                    reason,
                    detail,
                    retryable: refusal.is_retryable(),
                })
                .into_response()
            }
            ApiError::Internal(detail) => {
                tracing::error!(%detail, "internal error answering an HTTP request");
                error_body("internal error; see the node log".to_string())
            }
            other => error_body(other.to_string()),
        };
        if let ApiError::Auth(AuthError::Unauthenticated(_)) = &self {
            let challenge = [(axum::http::header::WWW_AUTHENTICATE, "Bearer")];
            return (status, challenge, body).into_response();
        }
        (status, body).into_response()
    }
}

fn error_body(error: String) -> Response {
    Json(ErrorBody { error }).into_response()
}

/// `CheckpointBehind { recovered_epoch, primary_epoch }` → `("CheckpointBehind",
/// {"recoveredEpoch": .., "primaryEpoch": ..})`: the variant is the machine-readable reason,
/// its fields the detail, in the API's camelCase.
fn refusal_parts(refusal: &FailbackRefusal) -> (String, Value) {
    match serde_json::to_value(refusal) {
        Ok(Value::Object(map)) if map.len() == 1 => {
            let (reason, detail) = map.into_iter().next().unwrap_or_default();
            (reason, camel_case_keys(detail))
        }
        Ok(Value::String(reason)) => (reason, json!({})),
        _ => ("Unknown".to_string(), json!({})),
    }
}

fn camel_case_keys(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(key, value)| (camel_case(&key), camel_case_keys(value)))
                .collect(),
        ),
        other => other,
    }
}

fn camel_case(snake: &str) -> String {
    let mut out = String::with_capacity(snake.len());
    let mut upper = false;
    for c in snake.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// Extractor rejections keep axum's status (400 syntax, 413 size, 415 content type, 422
/// shape) and its message, which names the field and the problem.
macro_rules! rejection {
    ($($rejection:ty),*) => {$(
        impl From<$rejection> for ApiError {
            fn from(rejection: $rejection) -> Self {
                ApiError::Rejected {
                    status: rejection.status(),
                    message: rejection.body_text(),
                }
            }
        }
    )*};
}

rejection!(JsonRejection, QueryRejection, PathRejection);

#[cfg(test)]
mod tests {
    use super::*;
    use arbiter_core::replication::EpochId;

    #[test]
    fn failback_refusal_is_typed_json() {
        let (reason, detail) = refusal_parts(&FailbackRefusal::CheckpointBehind {
            recovered_epoch: Some(EpochId(7)),
            primary_epoch: EpochId(9),
        });
        assert_eq!(reason, "CheckpointBehind");
        assert_eq!(detail, json!({"recoveredEpoch": 7, "primaryEpoch": 9}));
    }
}
