//! [`ClientError`]: every way a call to the arbiter can fail, as a value with fields.
//!
//! Invariant: the error says what the caller may do next — [`ClientError::is_retryable`] is true
//! only when asking again (elsewhere, later) can succeed, and [`ClientError::leader_hint`] says
//! where the leader is when a node knew. Refusals (a lease held by someone else, a stale token)
//! are not errors: they come back as `Ok(Err(Refusal))`, see [`crate::lease::Refusal`].

use std::time::Duration;

use prost::Message;
use tonic::{Code, Status};

use crate::proto::NotLeader;
use crate::{LEADER_ADDR_HEADER, LEADER_ID_HEADER};

/// A failed call. Lease refusals are not errors; see [`crate::Refusal`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// [`crate::ArbiterClient::connect`] was given no endpoints.
    #[error("no arbiter endpoints given")]
    NoEndpoints,
    /// An endpoint is not a usable `host:port` or URI.
    #[error("invalid arbiter endpoint {endpoint:?}: {reason}")]
    InvalidEndpoint { endpoint: String, reason: String },
    /// A request the SDK refuses to send, or the server answered `INVALID_ARGUMENT`.
    #[error("invalid request: {reason}")]
    InvalidRequest { reason: String },
    /// The node is not the leader; it did not act on the request.
    #[error("{endpoint} is not the leader (leader: {})", leader_addr.as_deref().unwrap_or("unknown"))]
    NotLeader {
        endpoint: String,
        leader_id: Option<u64>,
        leader_addr: Option<String>,
    },
    /// The node could not be reached or is shutting down.
    #[error("{endpoint} is unavailable: {message}")]
    Unavailable { endpoint: String, message: String },
    /// The request may or may not have taken effect: the server's write deadline passed
    /// (`DEADLINE_EXCEEDED`), no answer came within the attempt timeout, or the connection
    /// broke mid-call.
    #[error("outcome unknown at {endpoint}: {message}")]
    OutcomeUnknown { endpoint: String, message: String },
    /// Any other status; not retryable.
    #[error("{endpoint} answered {code:?}: {message}")]
    Server {
        endpoint: String,
        code: Code,
        message: String,
    },
    /// A reply that breaks the protocol (e.g. `ok = false` without a refusal).
    #[error("malformed reply from {endpoint}: {reason}")]
    MalformedReply { endpoint: String, reason: String },
    /// Retries ran out of time; `last` is the last attempt's error.
    #[error("{op} gave up after {attempts} attempts in {elapsed:?}: {last}")]
    GaveUp {
        op: &'static str,
        attempts: u32,
        elapsed: Duration,
        last: Box<ClientError>,
    },
}

impl ClientError {
    /// Whether the same request may succeed if asked again, elsewhere or later. For
    /// [`ClientError::OutcomeUnknown`] this is only safe for idempotent calls; the client retries
    /// it itself for those and returns it for `revoke`.
    pub fn is_retryable(&self) -> bool {
        match self {
            ClientError::NotLeader { .. }
            | ClientError::Unavailable { .. }
            | ClientError::OutcomeUnknown { .. } => true,
            // The client's own retries already ran out of time; retrying is the caller's call
            // to make with a fresh deadline, so this says what the last attempt said.
            ClientError::GaveUp { last, .. } => last.is_retryable(),
            ClientError::NoEndpoints
            | ClientError::InvalidEndpoint { .. }
            | ClientError::InvalidRequest { .. }
            | ClientError::Server { .. }
            | ClientError::MalformedReply { .. } => false,
        }
    }

    /// The leader's gRPC address, when a node that is not the leader knew it.
    pub fn leader_hint(&self) -> Option<&str> {
        match self {
            ClientError::NotLeader { leader_addr, .. } => leader_addr.as_deref(),
            ClientError::GaveUp { last, .. } => last.leader_hint(),
            _ => None,
        }
    }

    /// Whether the request may have taken effect although no success was seen.
    pub fn outcome_unknown(&self) -> bool {
        match self {
            ClientError::OutcomeUnknown { .. } => true,
            ClientError::GaveUp { last, .. } => last.outcome_unknown(),
            _ => false,
        }
    }

    /// Classifies a status returned for a call to `endpoint`. This is the one place where
    /// `tonic::Status` becomes a [`ClientError`].
    pub(crate) fn from_status(endpoint: &str, status: &Status) -> ClientError {
        let endpoint = endpoint.to_string();
        let message = status.message().to_string();
        match status.code() {
            Code::Unavailable => match not_leader(status) {
                Some((leader_id, leader_addr)) => ClientError::NotLeader {
                    endpoint,
                    leader_id,
                    leader_addr,
                },
                None => ClientError::Unavailable { endpoint, message },
            },
            Code::DeadlineExceeded => ClientError::OutcomeUnknown { endpoint, message },
            // A status made on this side from a transport error (the connection broke after
            // the request may have been sent) carries its source; a server's status never does.
            Code::Unknown | Code::Internal | Code::Cancelled
                if std::error::Error::source(status).is_some() =>
            {
                ClientError::OutcomeUnknown { endpoint, message }
            }
            Code::InvalidArgument | Code::OutOfRange | Code::FailedPrecondition => {
                ClientError::InvalidRequest {
                    reason: format!("{endpoint}: {message}"),
                }
            }
            code => ClientError::Server {
                endpoint,
                code,
                message,
            },
        }
    }
}

/// The leader hint of a not-leader status: `Some` iff the node said it is not the leader
/// (encoded `NotLeader` details, or the metadata headers).
fn not_leader(status: &Status) -> Option<(Option<u64>, Option<String>)> {
    // Empty details decode as a default `NotLeader`, so only non-empty ones count.
    if !status.details().is_empty() {
        if let Ok(details) = NotLeader::decode(status.details()) {
            let addr = (!details.leader_grpc_addr.is_empty()).then_some(details.leader_grpc_addr);
            return Some((details.leader_id, addr));
        }
    }
    let metadata = status.metadata();
    let id = metadata
        .get(LEADER_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let addr = metadata
        .get(LEADER_ADDR_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    (id.is_some() || addr.is_some()).then_some((id, addr))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::metadata::MetadataMap;

    #[test]
    fn not_leader_details_become_a_hint() {
        let details = NotLeader {
            leader_id: Some(2),
            leader_grpc_addr: "127.0.0.1:7002".into(),
        }
        .encode_to_vec();
        let status = Status::with_details(Code::Unavailable, "not the leader", details.into());
        let e = ClientError::from_status("127.0.0.1:7001", &status);
        assert_eq!(e.leader_hint(), Some("127.0.0.1:7002"));
        assert!(e.is_retryable());
    }

    #[test]
    fn not_leader_during_an_election_has_no_hint_but_is_retryable() {
        // An empty `NotLeader` encodes to no bytes, so the server's status has no details.
        let details = NotLeader::default().encode_to_vec();
        let status = Status::with_details(Code::Unavailable, "election", details.into());
        let e = ClientError::from_status("a:1", &status);
        assert_eq!(e.leader_hint(), None);
        assert!(e.is_retryable());
    }

    #[test]
    fn metadata_alone_is_enough() {
        let mut metadata = MetadataMap::new();
        metadata.insert(LEADER_ADDR_HEADER, "127.0.0.1:7003".parse().unwrap());
        let status = Status::with_metadata(Code::Unavailable, "not the leader", metadata);
        let e = ClientError::from_status("a:1", &status);
        assert_eq!(e.leader_hint(), Some("127.0.0.1:7003"));
    }

    #[test]
    fn classification() {
        let unknown = ClientError::from_status("a:1", &Status::deadline_exceeded("write timeout"));
        assert!(unknown.outcome_unknown() && unknown.is_retryable());
        let bad = ClientError::from_status("a:1", &Status::invalid_argument("ttl"));
        assert!(!bad.is_retryable());
        let internal = ClientError::from_status("a:1", &Status::internal("raft write failed"));
        assert!(!internal.is_retryable());
        let down = ClientError::from_status("a:1", &Status::unavailable("tcp connect error"));
        assert!(matches!(down, ClientError::Unavailable { .. }) && down.is_retryable());
    }
}
