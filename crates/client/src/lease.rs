//! Lease values as the SDK hands them out — what to ask for ([`LeaseSpec`]), what came back
//! ([`Grant`], [`Renewal`], [`Revocation`], [`LeaseInfo`], [`TokenCheck`]) and why a request was
//! refused ([`Refusal`]) — and the one place where `LeaseService` replies become them.
//!
//! Invariant: a [`Grant`] or [`Renewal`] carries the instant its request was *sent* on this
//! process's monotonic clock. The arbiter starts its own deadline no earlier than when it
//! received the request, so `sent_at + ttl − drift margin` never outlasts the arbiter's view.

use std::time::Duration;

use tokio::time::Instant;

use crate::error::ClientError;
use crate::proto::{self, refusal};
use crate::types::{FencingToken, HolderId, RegionId, ResourceId};

/// What to acquire: resource, holder, TTL, and optionally the holder's region and a
/// break-glass override.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseSpec {
    pub resource: ResourceId,
    pub holder: HolderId,
    pub ttl: Duration,
    /// The holder's region; the DR controller fences a failed region by revoking its leases.
    pub region: Option<RegionId>,
    /// Grant even though a revoked holder may still believe it holds; recorded in the
    /// failover log. For operators only.
    pub break_glass: Option<BreakGlass>,
}

/// Who overrides the draining wait, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakGlass {
    pub operator: String,
    pub reason: String,
}

impl LeaseSpec {
    /// A lease on `resource` for `holder` for `ttl`, with no region and no override.
    pub fn new(resource: impl Into<String>, holder: impl Into<String>, ttl: Duration) -> Self {
        LeaseSpec {
            resource: ResourceId::new(resource),
            holder: HolderId::new(holder),
            ttl,
            region: None,
            break_glass: None,
        }
    }

    /// Tags the lease with the holder's region.
    pub fn in_region(mut self, region: impl Into<String>) -> Self {
        self.region = Some(RegionId::new(region));
        self
    }

    /// Asks for a break-glass grant.
    pub fn break_glass(mut self, operator: impl Into<String>, reason: impl Into<String>) -> Self {
        self.break_glass = Some(BreakGlass {
            operator: operator.into(),
            reason: reason.into(),
        });
        self
    }

    /// The TTL in whole milliseconds, as the arbiter takes it; the server checks its bounds.
    pub(crate) fn ttl_ms(&self) -> Result<u64, ClientError> {
        match u64::try_from(self.ttl.as_millis()) {
            Ok(ms) if ms > 0 => Ok(ms),
            _ => Err(ClientError::InvalidRequest {
                reason: format!(
                    "lease ttl {:?} must be between 1 ms and u64::MAX ms",
                    self.ttl
                ),
            }),
        }
    }

    pub(crate) fn to_request(&self) -> Result<proto::AcquireRequest, ClientError> {
        let (break_glass, operator, reason) = match &self.break_glass {
            Some(b) => (true, b.operator.clone(), b.reason.clone()),
            None => (false, String::new(), String::new()),
        };
        Ok(proto::AcquireRequest {
            resource: self.resource.to_string(),
            holder: self.holder.to_string(),
            ttl_ms: self.ttl_ms()?,
            region: self
                .region
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
            break_glass,
            break_glass_operator: operator,
            break_glass_reason: reason,
        })
    }
}

/// A granted lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub resource: ResourceId,
    pub holder: HolderId,
    /// Carried by every write under this lease.
    pub token: FencingToken,
    pub ttl: Duration,
    /// When the first attempt of the acquire was sent: the grant happened after it, so this is a
    /// safe start for the holder's deadline even if a retry answered.
    pub sent_at: Instant,
    /// Set when a break-glass grant displaced a lease: its holder and token.
    pub displaced: Option<(HolderId, FencingToken)>,
}

impl Grant {
    /// The holder-side deadline: `sent_at + ttl − drift_margin` (see [`crate::lease_keeper`]).
    pub fn deadline(&self, drift_margin: Duration) -> Instant {
        holder_deadline(self.sent_at, self.ttl, drift_margin)
    }
}

/// A successful keep-alive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Renewal {
    pub ttl: Duration,
    /// When the request that succeeded was sent.
    pub sent_at: Instant,
}

impl Renewal {
    /// The holder-side deadline this renewal gives.
    pub fn deadline(&self, drift_margin: Duration) -> Instant {
        holder_deadline(self.sent_at, self.ttl, drift_margin)
    }
}

/// `sent_at + ttl − drift_margin`, never before `sent_at`.
pub(crate) fn holder_deadline(sent_at: Instant, ttl: Duration, drift_margin: Duration) -> Instant {
    // Called when the reply arrives, so "now" is the reply time.
    #[cfg(feature = "mutant-deadline-from-reply")]
    let sent_at = Instant::now();
    #[cfg(feature = "mutant-no-drift-margin")]
    let drift_margin = Duration::ZERO;
    sent_at + ttl.saturating_sub(drift_margin)
}

/// A lease taken away by a revoke.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    /// The resource's new epoch: a fenced resource that has seen it rejects the old token.
    pub epoch: FencingToken,
    pub displaced_holder: HolderId,
    pub displaced_token: FencingToken,
}

/// Where a resource's lease stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseState {
    /// The next acquire is granted at once.
    Free,
    /// Granted; its holder renews it.
    Held,
    /// Revoked or fenced; new grants wait until the old holder's deadline has passed.
    Draining,
}

/// A resource's lease, as the leader sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseInfo {
    pub resource: ResourceId,
    pub state: LeaseState,
    /// The lease that someone may still believe they hold (`Held` or `Draining`).
    pub lease: Option<LeaseHolder>,
    /// The highest token minted for the resource.
    pub epoch: FencingToken,
}

/// Who holds (or may still believe they hold) a lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseHolder {
    pub holder: HolderId,
    pub token: FencingToken,
    pub ttl: Duration,
    pub region: Option<RegionId>,
}

/// What the arbiter says about a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenCheck {
    /// The token of the lease currently held: writes carrying it are authorised.
    pub valid: bool,
    pub current_epoch: FencingToken,
}

/// Why the arbiter refused a lease request. A value, not an error: the request was understood
/// and deliberately not acted on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Someone else holds the lease.
    #[error("lease is held by {holder} (token {token}, ttl {ttl:?}) for up to {may_hold_for:?}")]
    HeldBy {
        holder: HolderId,
        token: FencingToken,
        ttl: Duration,
        /// Upper bound, by the leader's timers, of how long the holder may still hold it.
        may_hold_for: Duration,
    },
    /// Revoked, fenced or past its deadline; it frees once its holder's deadline has passed.
    #[error(
        "lease of {holder} (token {token}) is draining: its holder may still believe it holds \
         it for up to {may_hold_for:?}"
    )]
    Draining {
        holder: HolderId,
        token: FencingToken,
        may_hold_for: Duration,
    },
    /// The presented token is no longer the lease's: revoked, fenced or superseded.
    #[error("token {presented} is not current; the resource's epoch is {current}")]
    StaleToken {
        presented: FencingToken,
        current: FencingToken,
    },
    /// Nobody holds the lease.
    #[error("no lease is held on this resource")]
    NotHeld,
    /// The lease is held, by someone other than the caller.
    #[error("the lease is held by {holder}")]
    NotHolder { holder: HolderId },
    /// The holder's region was fenced by a failover: nothing is granted in it until an
    /// operator fails back. Waiting can lift it; asking harder cannot.
    #[error("region {region} is fenced by a failover until failback ({reason})")]
    RegionFenced { region: RegionId, reason: String },
}

impl Refusal {
    /// The holder standing in the way, if the refusal names one.
    pub fn holder(&self) -> Option<&HolderId> {
        match self {
            Refusal::HeldBy { holder, .. }
            | Refusal::Draining { holder, .. }
            | Refusal::NotHolder { holder } => Some(holder),
            Refusal::StaleToken { .. } | Refusal::NotHeld | Refusal::RegionFenced { .. } => None,
        }
    }

    /// Whether asking again later, unchanged, can succeed: a held lease may be released or
    /// lapse, a draining one frees at its deadline, a fenced region fails back. A stale or
    /// missing lease never comes back.
    pub fn is_retryable(&self) -> bool {
        match self {
            Refusal::HeldBy { .. } | Refusal::Draining { .. } | Refusal::RegionFenced { .. } => {
                true
            }
            Refusal::StaleToken { .. } | Refusal::NotHeld | Refusal::NotHolder { .. } => false,
        }
    }

    /// How long the current holder may still hold the lease, when the leader knew.
    pub fn may_hold_for(&self) -> Option<Duration> {
        match self {
            Refusal::HeldBy { may_hold_for, .. } | Refusal::Draining { may_hold_for, .. } => {
                Some(*may_hold_for)
            }
            _ => None,
        }
    }

    fn from_proto(refusal: proto::Refusal) -> Option<Refusal> {
        Some(match refusal.kind? {
            refusal::Kind::HeldBy(h) => Refusal::HeldBy {
                holder: HolderId::new(h.holder),
                token: FencingToken(h.token),
                ttl: Duration::from_millis(h.ttl_ms),
                may_hold_for: Duration::from_millis(h.may_hold_for_ms),
            },
            refusal::Kind::Draining(d) => Refusal::Draining {
                holder: HolderId::new(d.holder),
                token: FencingToken(d.token),
                may_hold_for: Duration::from_millis(d.may_hold_for_ms),
            },
            refusal::Kind::StaleToken(s) => Refusal::StaleToken {
                presented: FencingToken(s.presented),
                current: FencingToken(s.current),
            },
            refusal::Kind::NotHeld(_) => Refusal::NotHeld,
            refusal::Kind::NotHolder(n) => Refusal::NotHolder {
                holder: HolderId::new(n.holder),
            },
            refusal::Kind::RegionFenced(f) => Refusal::RegionFenced {
                region: RegionId::new(f.region),
                reason: f.reason,
            },
        })
    }
}

/// A `LeaseReply` split into success or refusal; `ok = false` without a refusal breaks the
/// protocol.
pub(crate) fn split_reply(
    endpoint: &str,
    reply: proto::LeaseReply,
) -> Result<Result<proto::LeaseReply, Refusal>, ClientError> {
    if reply.ok {
        return Ok(Ok(reply));
    }
    match reply.refusal.and_then(Refusal::from_proto) {
        Some(refusal) => Ok(Err(refusal)),
        None => Err(ClientError::MalformedReply {
            endpoint: endpoint.to_string(),
            reason: "refused without saying why".into(),
        }),
    }
}

/// The displaced lease named by a reply, if any.
pub(crate) fn displaced(reply: &proto::LeaseReply) -> Option<(HolderId, FencingToken)> {
    (!reply.displaced_holder.is_empty()).then(|| {
        (
            HolderId::new(reply.displaced_holder.clone()),
            FencingToken(reply.displaced_token),
        )
    })
}

impl LeaseInfo {
    pub(crate) fn from_proto(endpoint: &str, info: proto::LeaseInfo) -> Result<Self, ClientError> {
        let state = match info.state.as_str() {
            "FREE" => LeaseState::Free,
            "HELD" => LeaseState::Held,
            "DRAINING" => LeaseState::Draining,
            other => {
                return Err(ClientError::MalformedReply {
                    endpoint: endpoint.to_string(),
                    reason: format!("unknown lease state {other:?}"),
                })
            }
        };
        let lease = (state != LeaseState::Free).then(|| LeaseHolder {
            holder: HolderId::new(info.holder),
            token: FencingToken(info.token),
            ttl: Duration::from_millis(info.ttl_ms),
            region: (!info.region.is_empty()).then(|| RegionId::new(info.region)),
        });
        Ok(LeaseInfo {
            resource: ResourceId::new(info.resource),
            state,
            lease,
            epoch: FencingToken(info.epoch),
        })
    }
}

impl std::fmt::Display for LeaseState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LeaseState::Free => "FREE",
            LeaseState::Held => "HELD",
            LeaseState::Draining => "DRAINING",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A break-glass grant names the lease it displaced; an ordinary grant names none.
    #[test]
    fn a_reply_names_the_displaced_lease_only_when_there_is_one() {
        let mut reply = proto::LeaseReply {
            ok: true,
            token: 12288,
            ..Default::default()
        };
        assert_eq!(displaced(&reply), None);
        reply.displaced_holder = "proxy-east".into();
        reply.displaced_token = 8192;
        assert_eq!(
            displaced(&reply),
            Some((HolderId::new("proxy-east"), FencingToken(8192)))
        );
    }

    /// Retryable: what a later, unchanged request may get past. Not: what never comes back.
    #[test]
    fn refusals_say_whether_asking_again_can_succeed() {
        let holder = HolderId::new("h");
        let wait = Duration::from_secs(1);
        let retryable = [
            Refusal::HeldBy {
                holder: holder.clone(),
                token: FencingToken(1),
                ttl: wait,
                may_hold_for: wait,
            },
            Refusal::Draining {
                holder: holder.clone(),
                token: FencingToken(1),
                may_hold_for: wait,
            },
            Refusal::RegionFenced {
                region: RegionId::new("us-east-1"),
                reason: "failover".into(),
            },
        ];
        let final_ = [
            Refusal::StaleToken {
                presented: FencingToken(1),
                current: FencingToken(2),
            },
            Refusal::NotHeld,
            Refusal::NotHolder { holder },
        ];
        for refusal in &retryable {
            assert!(refusal.is_retryable(), "{refusal:?}");
        }
        for refusal in &final_ {
            assert!(!refusal.is_retryable(), "{refusal:?}");
        }
    }

    /// The wire's lease view becomes the SDK's: the state by name (the names `Display` gives
    /// back), a holder only for a live lease, and a region only when one was named.
    #[test]
    fn lease_info_from_the_wire() {
        let wire = |state: &str, region: &str| proto::LeaseInfo {
            resource: "db/orders".into(),
            state: state.into(),
            holder: "proxy-east".into(),
            token: 8192,
            ttl_ms: 5_000,
            epoch: 8192,
            region: region.into(),
        };
        let held = LeaseInfo::from_proto("n1", wire("HELD", "us-east-1")).unwrap();
        assert_eq!(
            (held.state, held.epoch),
            (LeaseState::Held, FencingToken(8192))
        );
        let lease = held.lease.expect("a held lease has a holder");
        assert_eq!(
            (lease.holder.as_str(), lease.token, lease.ttl),
            ("proxy-east", FencingToken(8192), Duration::from_secs(5))
        );
        assert_eq!(lease.region, Some(RegionId::new("us-east-1")));
        let no_region = LeaseInfo::from_proto("n1", wire("DRAINING", "")).unwrap();
        assert_eq!(no_region.state, LeaseState::Draining);
        assert_eq!(no_region.lease.expect("draining is live").region, None);
        let free = LeaseInfo::from_proto("n1", wire("FREE", "")).unwrap();
        assert!(free.lease.is_none());
        assert!(matches!(
            LeaseInfo::from_proto("n1", wire("GONE", "")),
            Err(ClientError::MalformedReply { .. })
        ));
        for state in [LeaseState::Free, LeaseState::Held, LeaseState::Draining] {
            let named = LeaseInfo::from_proto("n1", wire(&state.to_string(), "")).unwrap();
            assert_eq!(named.state, state);
        }
    }

    #[test]
    fn a_refused_reply_names_the_holder() {
        let reply = proto::LeaseReply {
            ok: false,
            refusal: Some(proto::Refusal {
                kind: Some(refusal::Kind::HeldBy(proto::HeldBy {
                    holder: "proxy-a".into(),
                    token: 4096,
                    ttl_ms: 2000,
                    may_hold_for_ms: 1500,
                })),
            }),
            ..Default::default()
        };
        let refusal = split_reply("a:1", reply).unwrap().unwrap_err();
        assert_eq!(refusal.holder().map(HolderId::as_str), Some("proxy-a"));
        assert_eq!(refusal.may_hold_for(), Some(Duration::from_millis(1500)));
        assert!(refusal.is_retryable());
    }

    #[test]
    fn a_refusal_without_a_reason_is_malformed() {
        let reply = proto::LeaseReply::default();
        assert!(matches!(
            split_reply("a:1", reply),
            Err(ClientError::MalformedReply { .. })
        ));
    }

    #[test]
    fn ttl_must_be_whole_positive_milliseconds() {
        let spec = LeaseSpec::new("db", "h", Duration::from_micros(10));
        assert!(matches!(
            spec.ttl_ms(),
            Err(ClientError::InvalidRequest { .. })
        ));
        let spec = LeaseSpec::new("db", "h", Duration::from_millis(1500)).in_region("eu");
        assert_eq!(spec.to_request().unwrap().ttl_ms, 1500);
        assert_eq!(spec.to_request().unwrap().region, "eu");
    }

    #[test]
    fn the_deadline_subtracts_the_margin_but_never_precedes_the_send() {
        let sent_at = Instant::now();
        let r = Renewal {
            ttl: Duration::from_millis(100),
            sent_at,
        };
        assert_eq!(
            r.deadline(Duration::from_millis(30)),
            sent_at + Duration::from_millis(70)
        );
        assert_eq!(r.deadline(Duration::from_secs(1)), sent_at);
    }
}
