//! The replicated lease table: resource → current fencing epoch and write-lease state.
//!
//! It lives inside the Raft state machine, so [`LeaseTable::apply`] is a pure function of the
//! table and the log entry: no clock, no randomness, ordered maps only. Invariants it keeps for
//! every resource:
//!
//! - the epoch only rises, and only to the token of the command that raised it (every grant,
//!   revoke and fence mints one); a command whose token does not exceed the epoch is refused;
//! - a `Held` lease carries the current epoch as its token; a `Draining` lease carries an older
//!   one, so its holder is already fenced by any resource that has seen the new epoch;
//! - a lease is never granted to a new holder while the previous one may still believe it holds
//!   it: a revoked or fenced lease stays `Draining` until the leader's monotonic timer (see
//!   [`crate::lease_timers`]) commits `Expire`, or the holder itself releases it. Only an explicit
//!   break-glass acquire skips that wait, and the outcome names what it overrode;
//! - a region fenced by the DR controller (`RevokeRegion`, in the same command that revokes its
//!   held leases) is granted nothing until `LiftRegionFence` (failback): a failed region's proxies
//!   cannot take their leases back while traffic and writes have moved elsewhere.

use crate::types::{ApplyCtx, FencingToken, HolderId, RegionId, ResourceId, WallMillis};
use imbl::OrdMap;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::ops::Bound;
use thiserror::Error;

/// A lease as granted: who, where, with which token, for how long.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub holder: HolderId,
    /// The holder's region, so the DR controller can fence a whole failed region at once. The
    /// shell fills it from the caller's authenticated identity, never from a request field;
    /// `None` only for holders bound to no region (an operator's or controller's own lease).
    pub region: Option<RegionId>,
    /// The token minted by the grant; every write under this lease carries it.
    pub token: FencingToken,
    pub ttl_ms: u64,
    /// The granting leader's wall clock: audit only, never used for expiry.
    pub granted_at: WallMillis,
}

/// Why a lease stopped being `Held` before it lapsed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DrainCause {
    Revoked { by: String, reason: String },
    Fenced { by: String, reason: String },
}

/// Where a resource's write lease stands.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum LeaseState {
    /// Nobody may believe they hold it; the next acquire is granted at once.
    #[default]
    Free,
    Held(Lease),
    /// Revoked or fenced, but the previous holder may still believe it holds the lease until its
    /// deadline passes on the leader's monotonic clock. New grants wait for `Expire`.
    Draining {
        lease: Lease,
        cause: DrainCause,
        /// When draining began, by the proposing leader's wall clock: audit only.
        since: WallMillis,
    },
}

impl LeaseState {
    /// The lease someone may still believe they hold: `Held` or `Draining`.
    pub fn live(&self) -> Option<&Lease> {
        match self {
            LeaseState::Free => None,
            LeaseState::Held(lease) | LeaseState::Draining { lease, .. } => Some(lease),
        }
    }
}

/// One resource's row: its fencing epoch and its lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceLease {
    /// The highest token minted for this resource. A fenced resource rejects writes below it.
    pub epoch: FencingToken,
    pub lease: LeaseState,
}

/// An operator's request to skip the draining wait; recorded by the caller in the failover log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BreakGlass {
    pub operator: String,
    pub reason: String,
}

/// A lease-table log command. TTLs are validated by the shell ([`LeaseLimits`]) before
/// proposing: apply accepts whatever was committed, because refusing on a limit that could differ
/// between nodes' configs would make apply non-deterministic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum LeaseCommand {
    Acquire {
        resource: ResourceId,
        holder: HolderId,
        region: Option<RegionId>,
        ttl_ms: u64,
        break_glass: Option<BreakGlass>,
    },
    /// Voluntary release: the holder has stopped writing, so the lease is free at once.
    Release {
        resource: ResourceId,
        holder: HolderId,
        token: FencingToken,
    },
    Revoke {
        resource: ResourceId,
        by: String,
        reason: String,
    },
    /// The DR controller's fence of a failed region: revoke every `Held` lease in `region` and,
    /// in the same step, refuse every new grant in it ([`LeaseRefusal::RegionFenced`]) until
    /// [`LeaseCommand::LiftRegionFence`]. Idempotent: a retry revokes nothing new and keeps the
    /// first fence's record.
    RevokeRegion {
        region: RegionId,
        by: String,
        reason: String,
    },
    /// Raise the epoch without choosing a new holder; a `Held` lease starts draining.
    Fence {
        resource: ResourceId,
        by: String,
        reason: String,
    },
    /// Proposed by the leader once its monotonic deadline for `token` has passed. Names the token
    /// so a late or duplicate `Expire` can never free a newer lease.
    Expire {
        resource: ResourceId,
        token: FencingToken,
    },
    /// Failback: `region` may be granted leases again. Leases it held before the fence stay as
    /// they are (draining until their deadline), so lifting never shortens a drain.
    LiftRegionFence { region: RegionId, by: String },
}

/// Why and since when a region is fenced (see [`LeaseCommand::RevokeRegion`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegionFence {
    pub by: String,
    pub reason: String,
    /// The token of the command that fenced it.
    pub token: FencingToken,
    /// The proposing leader's wall clock: audit only.
    pub since: WallMillis,
}

/// One lease taken away by `Revoke` or `RevokeRegion`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    pub resource: ResourceId,
    pub holder: HolderId,
    /// The revoked lease's token: the holder's writes carrying it are now stale.
    pub token: FencingToken,
    /// The resource's new epoch.
    pub epoch: FencingToken,
}

/// The deterministic result of applying a [`LeaseCommand`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum LeaseOutcome {
    /// A fresh grant. `overrode` is set only by break-glass and names the lease it displaced, for
    /// the failover log.
    Granted {
        token: FencingToken,
        ttl_ms: u64,
        overrode: Option<(HolderId, FencingToken)>,
    },
    /// The holder already holds it (a retried acquire): same token and TTL, epoch unchanged.
    AlreadyHeld {
        token: FencingToken,
        ttl_ms: u64,
    },
    Released,
    Revoked(Revocation),
    /// `RevokeRegion`, in resource order; empty when the region held nothing.
    RevokedMany(Vec<Revocation>),
    /// The new epoch, and the lease that started draining because of it, if one was held.
    Fenced {
        epoch: FencingToken,
        drained: Option<(HolderId, FencingToken)>,
    },
    Expired {
        holder: HolderId,
    },
    Refused(LeaseRefusal),
    /// `LiftRegionFence`: the fence that was lifted, `None` when the region was not fenced.
    RegionFenceLifted(Option<RegionFence>),
}

/// Why a command or keep-alive was refused. A value, not a failure: the table is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Error, Serialize, Deserialize)]
pub enum LeaseRefusal {
    #[error("lease is held by {holder} with token {token} (ttl {ttl_ms} ms)")]
    HeldBy {
        holder: HolderId,
        token: FencingToken,
        ttl_ms: u64,
    },
    #[error(
        "lease of {holder} (token {token}) is draining: its holder may still believe it holds"
    )]
    Draining {
        holder: HolderId,
        token: FencingToken,
    },
    #[error("token {presented} is not current; the resource's epoch is {current}")]
    StaleToken {
        presented: FencingToken,
        current: FencingToken,
    },
    #[error("no lease is held on this resource")]
    NotHeld,
    #[error("the lease is held by {holder}")]
    NotHolder { holder: HolderId },
    /// The command's token does not exceed the epoch: the log was fed out of order or applied
    /// twice. Refused so that the epoch can never go backwards, whatever the shell does.
    #[error("command token {minted} does not advance the epoch {epoch}")]
    TokenNotAdvanced {
        minted: FencingToken,
        epoch: FencingToken,
    },
    /// The holder's region was fenced by a failover and has not failed back.
    #[error("region {region} is fenced by a failover until failback ({reason})")]
    RegionFenced { region: RegionId, reason: String },
}

impl LeaseRefusal {
    /// Whether asking again later, unchanged, can succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            // A held lease may be released or lapse; a draining one frees at its deadline.
            LeaseRefusal::HeldBy { .. } | LeaseRefusal::Draining { .. } => true,
            // Lifted by failback, which needs no change in the request.
            LeaseRefusal::RegionFenced { .. } => true,
            // The caller's lease is gone (or never existed): it must acquire a new one.
            LeaseRefusal::StaleToken { .. }
            | LeaseRefusal::NotHeld
            | LeaseRefusal::NotHolder { .. } => false,
            // A shell bug; repeating the same entry repeats the refusal.
            LeaseRefusal::TokenNotAdvanced { .. } => false,
        }
    }
}

/// What a token means for a resource right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TokenValidity {
    /// The token of the lease currently `Held`: writes carrying it are authorised.
    Current,
    /// Superseded by a later grant, revoke or fence.
    Stale { current: FencingToken },
    /// The resource's newest token, but no `Held` lease carries it (released, expired, or minted
    /// by a revoke or fence): not superseded, yet it authorises nothing.
    Inactive,
    /// Never minted for this resource (unknown resource or a token above its epoch).
    Unknown,
}

/// Errors from validating lease parameters before they are proposed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LeaseError {
    #[error("lease ttl {ttl_ms} ms is outside [{min_ms}, {max_ms}] ms")]
    TtlOutOfRange {
        ttl_ms: u64,
        min_ms: u64,
        max_ms: u64,
    },
    #[error("lease ttl bounds are inverted: min {min_ms} ms > max {max_ms} ms")]
    InvertedLimits { min_ms: u64, max_ms: u64 },
}

impl LeaseError {
    /// Whether the same request may succeed later. Listed per variant so a new variant must
    /// decide.
    pub fn is_retryable(&self) -> bool {
        match self {
            // The request or config itself is wrong; it will be refused every time.
            LeaseError::TtlOutOfRange { .. } | LeaseError::InvertedLimits { .. } => false,
        }
    }
}

/// Accepted TTL range, checked by the shell before it proposes an `Acquire`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseLimits {
    min_ttl_ms: u64,
    max_ttl_ms: u64,
}

impl LeaseLimits {
    /// A revoked lease blocks its resource for up to its TTL, and the seed's active-active RTO
    /// is under a minute: a longer lease could not meet it without break-glass.
    pub const DEFAULT_MAX_TTL_MS: u64 = 60_000;

    pub fn new(min_ttl_ms: u64, max_ttl_ms: u64) -> Result<Self, LeaseError> {
        if min_ttl_ms > max_ttl_ms {
            return Err(LeaseError::InvertedLimits {
                min_ms: min_ttl_ms,
                max_ms: max_ttl_ms,
            });
        }
        Ok(LeaseLimits {
            min_ttl_ms,
            max_ttl_ms,
        })
    }

    /// Minimum TTL of ceil(1.5 × the election timeout), as etcd does: a lease must outlive a
    /// leader election, or every failover would expire every lease (a new leader extends live
    /// leases by a full TTL from its election, which is only useful if the TTL exceeds the gap).
    /// The maximum is [`Self::DEFAULT_MAX_TTL_MS`], raised to the minimum on very slow profiles.
    pub fn for_election_timeout(election_timeout_max_ms: u64) -> Self {
        let min_ttl_ms = election_timeout_max_ms.saturating_mul(3).div_ceil(2);
        LeaseLimits {
            min_ttl_ms,
            max_ttl_ms: Self::DEFAULT_MAX_TTL_MS.max(min_ttl_ms),
        }
    }

    pub fn min_ttl_ms(&self) -> u64 {
        self.min_ttl_ms
    }

    pub fn max_ttl_ms(&self) -> u64 {
        self.max_ttl_ms
    }

    pub fn validate_ttl(&self, ttl_ms: u64) -> Result<(), LeaseError> {
        if (self.min_ttl_ms..=self.max_ttl_ms).contains(&ttl_ms) {
            Ok(())
        } else {
            Err(LeaseError::TtlOutOfRange {
                ttl_ms,
                min_ms: self.min_ttl_ms,
                max_ms: self.max_ttl_ms,
            })
        }
    }
}

/// The replicated lease table. Mutated only by [`LeaseTable::apply`].
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct LeaseTable {
    /// Ordered so iteration, `RevokeRegion` and snapshots are identical on every node. Rows are
    /// kept after a lease ends because the epoch must survive it. A persistent map: cloning the
    /// table shares its nodes, so a snapshot of a million leases is taken in O(1) under the
    /// state's lock and encoded outside it. It encodes exactly as a `BTreeMap` would.
    resources: OrdMap<ResourceId, ResourceLease>,
    /// Regions fenced by a failover and not yet failed back.
    #[serde(default)]
    fenced_regions: BTreeMap<RegionId, RegionFence>,
}

impl LeaseTable {
    pub fn new() -> Self {
        Self::default()
    }

    /// Apply one committed command. Deterministic: depends only on the table, `cmd` and `ctx`.
    pub fn apply(&mut self, cmd: &LeaseCommand, ctx: &ApplyCtx) -> LeaseOutcome {
        let result = match cmd {
            LeaseCommand::Acquire {
                resource,
                holder,
                region,
                ttl_ms,
                break_glass,
            } => self.acquire(
                resource,
                holder,
                region,
                *ttl_ms,
                break_glass.is_some(),
                ctx,
            ),
            LeaseCommand::Release {
                resource,
                holder,
                token,
            } => self.release(resource, holder, *token),
            LeaseCommand::Revoke {
                resource,
                by,
                reason,
            } => self.revoke(resource, by, reason, ctx),
            LeaseCommand::RevokeRegion { region, by, reason } => {
                Ok(self.revoke_region(region, by, reason, ctx))
            }
            LeaseCommand::Fence {
                resource,
                by,
                reason,
            } => self.fence(resource, by, reason, ctx),
            LeaseCommand::Expire { resource, token } => self.expire(resource, *token),
            LeaseCommand::LiftRegionFence { region, .. } => Ok(LeaseOutcome::RegionFenceLifted(
                self.fenced_regions.remove(region),
            )),
        };
        result.unwrap_or_else(LeaseOutcome::Refused)
    }

    fn acquire(
        &mut self,
        resource: &ResourceId,
        holder: &HolderId,
        region: &Option<RegionId>,
        ttl_ms: u64,
        break_glass: bool,
        ctx: &ApplyCtx,
    ) -> Result<LeaseOutcome, LeaseRefusal> {
        // Before anything else, break-glass included: only failback returns a fenced region's
        // write rights, and a retry from inside it must not learn it "already holds".
        if let Some((region, fence)) = region
            .as_ref()
            .and_then(|r| self.fenced_regions.get_key_value(r))
        {
            return Err(LeaseRefusal::RegionFenced {
                region: region.clone(),
                reason: fence.reason.clone(),
            });
        }
        let row = self.resources.get(resource);
        let overrode = match row.map(|row| &row.lease) {
            None | Some(LeaseState::Free) => None,
            Some(LeaseState::Held(lease)) if lease.holder == *holder => {
                return Ok(LeaseOutcome::AlreadyHeld {
                    token: lease.token,
                    ttl_ms: lease.ttl_ms,
                });
            }
            Some(LeaseState::Held(lease)) if !break_glass => {
                return Err(LeaseRefusal::HeldBy {
                    holder: lease.holder.clone(),
                    token: lease.token,
                    ttl_ms: lease.ttl_ms,
                });
            }
            // Even the same holder waits: its revoked lease may still be writing elsewhere.
            #[cfg(not(feature = "mutant-grant-while-draining"))]
            Some(LeaseState::Draining { lease, .. }) if !break_glass => {
                return Err(LeaseRefusal::Draining {
                    holder: lease.holder.clone(),
                    token: lease.token,
                });
            }
            Some(LeaseState::Held(lease)) | Some(LeaseState::Draining { lease, .. }) => {
                Some((lease.holder.clone(), lease.token))
            }
        };
        if let Some(row) = row {
            check_advances(row.epoch, ctx)?;
        }
        let lease = Lease {
            holder: holder.clone(),
            region: region.clone(),
            token: ctx.token,
            ttl_ms,
            granted_at: ctx.now,
        };
        self.resources.insert(
            resource.clone(),
            ResourceLease {
                epoch: ctx.token,
                lease: LeaseState::Held(lease),
            },
        );
        Ok(LeaseOutcome::Granted {
            token: ctx.token,
            ttl_ms,
            overrode,
        })
    }

    fn release(
        &mut self,
        resource: &ResourceId,
        holder: &HolderId,
        token: FencingToken,
    ) -> Result<LeaseOutcome, LeaseRefusal> {
        let row = self.row_mut(resource)?;
        // A draining lease may be released too: the holder saying it stopped writing is exactly
        // what the drain waits for.
        check_holder(row, holder, token)?;
        row.lease = LeaseState::Free;
        Ok(LeaseOutcome::Released)
    }

    fn revoke(
        &mut self,
        resource: &ResourceId,
        by: &str,
        reason: &str,
        ctx: &ApplyCtx,
    ) -> Result<LeaseOutcome, LeaseRefusal> {
        let row = self.row_mut(resource)?;
        check_advances(row.epoch, ctx)?;
        match row.revoke_held(resource, by, reason, ctx) {
            Some(revocation) => Ok(LeaseOutcome::Revoked(revocation)),
            // Already draining (its holder is fenced and its wait has begun) or free.
            None => Err(match &row.lease {
                LeaseState::Draining { lease, .. } => LeaseRefusal::Draining {
                    holder: lease.holder.clone(),
                    token: lease.token,
                },
                _ => LeaseRefusal::NotHeld,
            }),
        }
    }

    fn revoke_region(
        &mut self,
        region: &RegionId,
        by: &str,
        reason: &str,
        ctx: &ApplyCtx,
    ) -> LeaseOutcome {
        let in_region: Vec<ResourceId> = self
            .resources
            .iter()
            .filter(|(_, row)| {
                let in_region = matches!(&row.lease, LeaseState::Held(lease)
                    if lease.region.as_ref() == Some(region));
                // A row whose epoch the token does not advance is skipped rather than refusing
                // the whole command: the other rows are still safe to fence.
                in_region && check_advances(row.epoch, ctx).is_ok()
            })
            .map(|(resource, _)| resource.clone())
            .collect();
        let revoked = in_region
            .iter()
            .filter_map(|resource| {
                let row = self.resources.get_mut(resource)?;
                row.revoke_held(resource, by, reason, ctx)
            })
            .collect();
        self.fenced_regions
            .entry(region.clone())
            .or_insert_with(|| RegionFence {
                by: by.to_owned(),
                reason: reason.to_owned(),
                token: ctx.token,
                since: ctx.now,
            });
        LeaseOutcome::RevokedMany(revoked)
    }

    fn fence(
        &mut self,
        resource: &ResourceId,
        by: &str,
        reason: &str,
        ctx: &ApplyCtx,
    ) -> Result<LeaseOutcome, LeaseRefusal> {
        if let Some(row) = self.resources.get(resource) {
            check_advances(row.epoch, ctx)?;
        }
        // Fencing a resource nobody has leased yet is allowed: it sets a floor for its tokens.
        let row = self
            .resources
            .entry(resource.clone())
            .or_insert_with(|| ResourceLease {
                epoch: ctx.token,
                lease: LeaseState::Free,
            });
        let cause = DrainCause::Fenced {
            by: by.to_owned(),
            reason: reason.to_owned(),
        };
        // A lease already draining keeps its first cause; only the epoch moves.
        let drained = row.drain_held(cause, ctx);
        row.epoch = ctx.token;
        Ok(LeaseOutcome::Fenced {
            epoch: ctx.token,
            drained,
        })
    }

    fn expire(
        &mut self,
        resource: &ResourceId,
        token: FencingToken,
    ) -> Result<LeaseOutcome, LeaseRefusal> {
        let row = self.row_mut(resource)?;
        // Only the exact lease the timer was set for: a newer grant has a newer token.
        let holder = check_token(row, token)?.holder.clone();
        row.lease = LeaseState::Free;
        Ok(LeaseOutcome::Expired { holder })
    }

    /// A resource's row for a command that needs an existing lease.
    fn row_mut(&mut self, resource: &ResourceId) -> Result<&mut ResourceLease, LeaseRefusal> {
        self.resources
            .get_mut(resource)
            .ok_or(LeaseRefusal::NotHeld)
    }

    /// The row for `resource`, if it was ever leased or fenced.
    pub fn get(&self, resource: &ResourceId) -> Option<&ResourceLease> {
        self.resources.get(resource)
    }

    /// The fence on `region`, if a failover fenced it and it has not failed back.
    pub fn region_fence(&self, region: &RegionId) -> Option<&RegionFence> {
        self.fenced_regions.get(region)
    }

    /// The resource's current epoch, if it was ever leased or fenced.
    pub fn epoch(&self, resource: &ResourceId) -> Option<FencingToken> {
        self.resources.get(resource).map(|row| row.epoch)
    }

    /// The check a leader runs before renewing a keep-alive in memory (keep-alives are not log
    /// entries). `Ok` carries the lease's TTL; only a `Held` lease of this holder and token
    /// passes. A draining lease's holder learns its token is stale.
    pub fn check_keepalive(
        &self,
        resource: &ResourceId,
        holder: &HolderId,
        token: FencingToken,
    ) -> Result<u64, LeaseRefusal> {
        let row = self.resources.get(resource).ok_or(LeaseRefusal::NotHeld)?;
        let lease = check_holder(row, holder, token)?;
        match row.lease {
            LeaseState::Held(_) => Ok(lease.ttl_ms),
            _ => Err(LeaseRefusal::StaleToken {
                presented: token,
                current: row.epoch,
            }),
        }
    }

    /// What `token` means for `resource` now.
    pub fn validate_token(&self, resource: &ResourceId, token: FencingToken) -> TokenValidity {
        let Some(row) = self.resources.get(resource) else {
            return TokenValidity::Unknown;
        };
        match token.cmp(&row.epoch) {
            std::cmp::Ordering::Less => TokenValidity::Stale { current: row.epoch },
            std::cmp::Ordering::Greater => TokenValidity::Unknown,
            std::cmp::Ordering::Equal => match &row.lease {
                LeaseState::Held(lease) if lease.token == token => TokenValidity::Current,
                _ => TokenValidity::Inactive,
            },
        }
    }

    /// Every lease someone may still believe they hold (`Held` or `Draining`), in resource order.
    pub fn live_leases(&self) -> impl Iterator<Item = (&ResourceId, &ResourceLease)> {
        self.resources
            .iter()
            .filter(|(_, row)| row.lease.live().is_some())
    }

    /// Every row after `after` (from the first when `None`), live or not, in resource order: a
    /// walk over the table in bounded steps resumes where the last step stopped.
    pub fn rows_after<'a>(
        &'a self,
        after: Option<&'a ResourceId>,
    ) -> impl Iterator<Item = (&'a ResourceId, &'a ResourceLease)> + 'a {
        let start = after.map_or(Bound::Unbounded, Bound::Excluded);
        self.resources
            .range::<_, ResourceId>((start, Bound::Unbounded))
    }

    /// The live leases whose holder is in `region`.
    pub fn leases_of_region<'a>(
        &'a self,
        region: &'a RegionId,
    ) -> impl Iterator<Item = (&'a ResourceId, &'a ResourceLease)> + 'a {
        self.live_leases().filter(move |(_, row)| {
            row.lease
                .live()
                .is_some_and(|lease| lease.region.as_ref() == Some(region))
        })
    }
}

impl ResourceLease {
    /// Revoke a `Held` lease: it starts draining and the epoch rises to `ctx.token`. `None`,
    /// changing nothing, for any other state.
    fn revoke_held(
        &mut self,
        resource: &ResourceId,
        by: &str,
        reason: &str,
        ctx: &ApplyCtx,
    ) -> Option<Revocation> {
        let cause = DrainCause::Revoked {
            by: by.to_owned(),
            reason: reason.to_owned(),
        };
        let (holder, token) = self.drain_held(cause, ctx)?;
        self.epoch = ctx.token;
        Some(Revocation {
            resource: resource.clone(),
            holder,
            token,
            epoch: ctx.token,
        })
    }

    /// A `Held` lease starts draining for `cause`; its `(holder, token)` is returned. Any other
    /// state is left as it is. The epoch is the caller's to raise.
    fn drain_held(
        &mut self,
        cause: DrainCause,
        ctx: &ApplyCtx,
    ) -> Option<(HolderId, FencingToken)> {
        let (next, drained) = match std::mem::take(&mut self.lease) {
            LeaseState::Held(lease) => {
                let drained = (lease.holder.clone(), lease.token);
                let next = LeaseState::Draining {
                    lease,
                    cause,
                    since: ctx.now,
                };
                (next, Some(drained))
            }
            other => (other, None),
        };
        self.lease = next;
        drained
    }
}

/// Refuse a command that would not raise the epoch: tokens come from log positions, so this only
/// happens if the shell replays or reorders entries.
fn check_advances(epoch: FencingToken, ctx: &ApplyCtx) -> Result<(), LeaseRefusal> {
    if ctx.token > epoch {
        Ok(())
    } else {
        Err(LeaseRefusal::TokenNotAdvanced {
            minted: ctx.token,
            epoch,
        })
    }
}

/// The live lease of `row`, if `holder` presents its token. Token first: a holder whose lease was
/// superseded learns it is stale, which tells it more than who holds the lease now.
fn check_holder<'a>(
    row: &'a ResourceLease,
    holder: &HolderId,
    token: FencingToken,
) -> Result<&'a Lease, LeaseRefusal> {
    let lease = check_token(row, token)?;
    if lease.holder != *holder {
        return Err(LeaseRefusal::NotHolder {
            holder: lease.holder.clone(),
        });
    }
    Ok(lease)
}

/// The live lease of `row`, if it carries `token`.
fn check_token(row: &ResourceLease, token: FencingToken) -> Result<&Lease, LeaseRefusal> {
    let lease = row.lease.live().ok_or(LeaseRefusal::NotHeld)?;
    if lease.token == token {
        Ok(lease)
    } else {
        Err(LeaseRefusal::StaleToken {
            presented: token,
            current: row.epoch,
        })
    }
}
