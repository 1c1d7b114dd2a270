//! Refused requests: each is logged with who, what and why, and counted.
//!
//! Invariant: every refusal the auth layer or a handler's `authorize` call makes passes through
//! [`Denials::record`], so the counters and the log agree.

use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use super::AuthError;

/// Refusals since the node started, by kind.
#[derive(Debug, Default)]
pub struct Denials {
    unauthenticated: AtomicU64,
    forbidden: AtomicU64,
    /// The same counts by `reason` (`unauthenticated`, `forbidden`), for `/metrics`.
    family: Family<Vec<(String, String)>, Counter>,
}

/// A point-in-time copy of the counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DenialCounts {
    pub unauthenticated: u64,
    pub forbidden: u64,
}

impl Denials {
    /// Logs and counts one refusal; `action` names the endpoint or operation refused.
    pub fn record(&self, action: &str, error: &AuthError) {
        match error {
            AuthError::Unauthenticated(reason) => {
                self.unauthenticated.fetch_add(1, Ordering::Relaxed);
                self.count("unauthenticated");
                tracing::warn!(action, %reason, "request refused: unauthenticated");
            }
            AuthError::Forbidden {
                identity,
                role,
                reason,
            } => {
                self.forbidden.fetch_add(1, Ordering::Relaxed);
                self.count("forbidden");
                tracing::warn!(action, identity, %role, %reason, "request refused: permission denied");
            }
            AuthError::WrongPort(reason) => {
                self.forbidden.fetch_add(1, Ordering::Relaxed);
                self.count("forbidden");
                tracing::warn!(action, %reason, "request refused: permission denied");
            }
        }
    }

    fn count(&self, reason: &str) {
        self.family
            .get_or_create(&vec![("reason".to_string(), reason.to_string())])
            .inc();
    }

    /// The counts as a metric family (shared: registering it exports the live counts).
    pub fn family(&self) -> Family<Vec<(String, String)>, Counter> {
        self.family.clone()
    }

    pub fn counts(&self) -> DenialCounts {
        DenialCounts {
            unauthenticated: self.unauthenticated.load(Ordering::Relaxed),
            forbidden: self.forbidden.load(Ordering::Relaxed),
        }
    }
}
