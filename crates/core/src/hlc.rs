//! Hybrid logical clocks: timestamps that order causally related events correctly even when the
//! regions' wall clocks disagree.
//!
//! Invariant: every timestamp a [`HybridClock`] returns is strictly greater than every timestamp
//! it returned or observed before, whatever the wall clock does — including stepping backwards.
//! Refusals (excessive remote drift, logical-counter overflow, a wall clock beyond the 48-bit
//! range) are typed errors that leave the clock unchanged.
//!
//! A timestamp is `(physical_ms, logical, node)`, compared in that order. `physical_ms` follows
//! the largest wall-clock reading seen (local or remote); `logical` counts events within one
//! physical millisecond; `node` breaks the remaining ties, so two distinct clocks never issue
//! equal timestamps and every pair of writes has a deterministic winner.
//!
//! The clock never reads time itself: the caller passes its wall clock in, which keeps this
//! module pure and lets tests drive arbitrary (even hostile) clock sequences.

use crate::types::{NodeId, WallMillis};
use serde::{Deserialize, Serialize};
use std::fmt;
use thiserror::Error;

/// An HLC timestamp. Ordered by `(physical_ms, logical, node)`; the derived `Ord` relies on the
/// field order below, and [`HlcTimestamp::encode`] preserves the same order bytewise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
// Deserialization goes through `TryFrom<HlcTimestampRepr>` so a decoded value can never carry a
// physical time that the 48-bit encoding would silently truncate.
#[serde(try_from = "HlcTimestampRepr", into = "HlcTimestampRepr")]
pub struct HlcTimestamp {
    physical_ms: u64,
    logical: u16,
    node: NodeId,
}

/// The plain serde shape of [`HlcTimestamp`], validated on the way in.
#[derive(Serialize, Deserialize)]
struct HlcTimestampRepr {
    physical_ms: u64,
    logical: u16,
    node: NodeId,
}

impl HlcTimestamp {
    /// Length of [`HlcTimestamp::encode`]'s output.
    pub const ENCODED_LEN: usize = 16;

    /// Largest representable physical time: 2^48 − 1 ms, about the year 10889.
    pub const MAX_PHYSICAL_MS: u64 = (1 << 48) - 1;

    /// Builds a timestamp; refuses a physical time that does not fit the 48-bit encoding.
    pub fn new(physical_ms: u64, logical: u16, node: NodeId) -> Result<Self, HlcError> {
        if physical_ms > Self::MAX_PHYSICAL_MS {
            return Err(HlcError::PhysicalTimeOutOfRange {
                physical_ms,
                max_ms: Self::MAX_PHYSICAL_MS,
            });
        }
        Ok(HlcTimestamp {
            physical_ms,
            logical,
            node,
        })
    }

    /// Milliseconds since the Unix epoch: the largest wall-clock reading this timestamp's
    /// history has seen.
    pub fn physical_ms(&self) -> u64 {
        self.physical_ms
    }

    /// Position among events that share `physical_ms`.
    pub fn logical(&self) -> u16 {
        self.logical
    }

    /// The clock that issued this timestamp; the last tie-break.
    pub fn node(&self) -> NodeId {
        self.node
    }

    /// Fixed-width, order-preserving encoding: 16 bytes, big-endian,
    /// `[physical_ms: 48 bits][logical: 16 bits][node: 64 bits]`.
    ///
    /// Big-endian fields laid out most-significant first make byte-wise comparison (as done by
    /// sled, RocksDB or any sorted key-value store) agree with `Ord` on the timestamps.
    pub fn encode(&self) -> [u8; Self::ENCODED_LEN] {
        let mut out = [0u8; Self::ENCODED_LEN];
        // `new` and the serde path both bound physical_ms to 48 bits, so dropping the top two
        // bytes of the u64 loses nothing.
        out[0..6].copy_from_slice(&self.physical_ms.to_be_bytes()[2..8]);
        out[6..8].copy_from_slice(&self.logical.to_be_bytes());
        out[8..16].copy_from_slice(&self.node.to_be_bytes());
        out
    }

    /// Inverse of [`HlcTimestamp::encode`]. Every 16-byte string is a valid timestamp, so the
    /// only bad input is a wrong length.
    pub fn decode(bytes: &[u8]) -> Result<Self, HlcDecodeError> {
        let bytes: &[u8; Self::ENCODED_LEN] =
            bytes.try_into().map_err(|_| HlcDecodeError::WrongLength {
                expected: Self::ENCODED_LEN,
                actual: bytes.len(),
            })?;
        let mut physical = [0u8; 8];
        physical[2..8].copy_from_slice(&bytes[0..6]);
        let mut node = [0u8; 8];
        node.copy_from_slice(&bytes[8..16]);
        Ok(HlcTimestamp {
            physical_ms: u64::from_be_bytes(physical),
            logical: u16::from_be_bytes([bytes[6], bytes[7]]),
            node: NodeId::from_be_bytes(node),
        })
    }
}

impl TryFrom<HlcTimestampRepr> for HlcTimestamp {
    type Error = HlcError;

    fn try_from(r: HlcTimestampRepr) -> Result<Self, Self::Error> {
        HlcTimestamp::new(r.physical_ms, r.logical, r.node)
    }
}

impl From<HlcTimestamp> for HlcTimestampRepr {
    fn from(t: HlcTimestamp) -> Self {
        HlcTimestampRepr {
            physical_ms: t.physical_ms,
            logical: t.logical,
            node: t.node,
        }
    }
}

impl fmt::Display for HlcTimestamp {
    /// `physical_ms.logical@node`, e.g. `1700000000300.2@7`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}@{}", self.physical_ms, self.logical, self.node)
    }
}

/// Why the clock refused to issue or accept a timestamp. The clock is unchanged after any of
/// these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum HlcError {
    /// A remote timestamp is further ahead of our wall clock than the configured bound.
    /// Accepting it would drag this clock (and everything it stamps afterwards) into the
    /// sender's future; the sender's clock is probably broken.
    #[error(
        "remote timestamp {remote_ms} ms is more than {max_drift_ms} ms ahead of local wall clock {local_ms} ms"
    )]
    ClockDriftExceeded {
        remote_ms: u64,
        local_ms: u64,
        max_drift_ms: u64,
    },
    /// More than 65 535 events fell into one physical millisecond. Happens only while the
    /// clock is pinned ahead of the wall clock (after a backwards step or a drifted remote);
    /// retrying once the wall clock has advanced succeeds.
    #[error("logical counter overflow at physical time {physical_ms} ms")]
    LogicalOverflow { physical_ms: u64 },
    /// A wall-clock reading or timestamp does not fit the 48-bit physical field.
    #[error("physical time {physical_ms} ms exceeds the 48-bit maximum {max_ms} ms")]
    PhysicalTimeOutOfRange { physical_ms: u64, max_ms: u64 },
}

/// Why bytes could not be decoded as an [`HlcTimestamp`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum HlcDecodeError {
    #[error("an encoded HLC timestamp is {expected} bytes, got {actual}")]
    WrongLength { expected: usize, actual: usize },
}

/// One node's hybrid logical clock.
///
/// Methods take `&mut self`: the owner serialises calls (e.g. behind the one lock that also
/// orders its writes), so issue order equals timestamp order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HybridClock {
    /// Largest timestamp issued or observed; every new one must exceed it.
    last: HlcTimestamp,
    /// How far ahead of our wall clock a remote timestamp may be before we refuse it. This
    /// bounds how far one bad clock can pull the whole system's timestamps into the future.
    max_drift_ms: u64,
}

impl HybridClock {
    /// A fresh clock for `node`. `node` must be unique among all clocks whose timestamps are
    /// compared: it is what makes timestamps from different clocks distinct.
    pub fn new(node: NodeId, max_drift_ms: u64) -> Self {
        HybridClock {
            last: HlcTimestamp {
                physical_ms: 0,
                logical: 0,
                node,
            },
            max_drift_ms,
        }
    }

    /// The node id stamped on every timestamp from this clock.
    pub fn node(&self) -> NodeId {
        self.last.node
    }

    /// The configured forward-drift bound for remote timestamps.
    pub fn max_drift_ms(&self) -> u64 {
        self.max_drift_ms
    }

    /// The largest timestamp issued or observed so far. Persist it and feed it back through
    /// [`HybridClock::update`] after a restart to stay monotonic across restarts.
    pub fn last(&self) -> HlcTimestamp {
        self.last
    }

    /// A timestamp for a local event (a write) at wall-clock time `wall`.
    ///
    /// If the wall clock moved forward past everything seen, the physical part follows it and
    /// the counter resets; otherwise (same millisecond, a backwards step, or a remote ahead of
    /// us) the physical part stays and the counter advances.
    pub fn now(&mut self, wall: WallMillis) -> Result<HlcTimestamp, HlcError> {
        let wall_ms = checked_wall(wall)?;
        let next = if wall_ms > self.last.physical_ms {
            self.stamp(wall_ms, 0)
        } else {
            self.stamp(
                self.last.physical_ms,
                next_logical(self.last.physical_ms, self.last.logical)?,
            )
        };
        self.last = next;
        Ok(next)
    }

    /// Observes a timestamp received from another node (with a replicated write, a heartbeat,
    /// a response) and returns a local timestamp greater than both it and everything before.
    ///
    /// Refuses with [`HlcError::ClockDriftExceeded`] when `remote` is more than `max_drift_ms`
    /// ahead of `wall` *and* would move this clock forward. A remote timestamp no later than
    /// what we already hold cannot pull us anywhere, so it is accepted even if our own wall
    /// clock has since stepped back.
    pub fn update(
        &mut self,
        remote: HlcTimestamp,
        wall: WallMillis,
    ) -> Result<HlcTimestamp, HlcError> {
        let wall_ms = checked_wall(wall)?;
        if remote.physical_ms > self.last.physical_ms
            && remote.physical_ms > wall_ms.saturating_add(self.max_drift_ms)
        {
            return Err(HlcError::ClockDriftExceeded {
                remote_ms: remote.physical_ms,
                local_ms: wall_ms,
                max_drift_ms: self.max_drift_ms,
            });
        }
        let last = self.last;
        let physical_ms = wall_ms.max(last.physical_ms).max(remote.physical_ms);
        // The counter continues from whichever side(s) already used this millisecond, so the
        // result exceeds both `last` and `remote`; a fresh millisecond from the wall clock
        // needs no counter.
        let logical = match (
            physical_ms == last.physical_ms,
            physical_ms == remote.physical_ms,
        ) {
            (true, true) => next_logical(physical_ms, last.logical.max(remote.logical))?,
            (true, false) => next_logical(physical_ms, last.logical)?,
            (false, true) => next_logical(physical_ms, remote.logical)?,
            (false, false) => 0,
        };
        let next = self.stamp(physical_ms, logical);
        self.last = next;
        Ok(next)
    }

    fn stamp(&self, physical_ms: u64, logical: u16) -> HlcTimestamp {
        HlcTimestamp {
            physical_ms,
            logical,
            node: self.last.node,
        }
    }
}

fn checked_wall(wall: WallMillis) -> Result<u64, HlcError> {
    if wall.0 > HlcTimestamp::MAX_PHYSICAL_MS {
        return Err(HlcError::PhysicalTimeOutOfRange {
            physical_ms: wall.0,
            max_ms: HlcTimestamp::MAX_PHYSICAL_MS,
        });
    }
    Ok(wall.0)
}

fn next_logical(physical_ms: u64, logical: u16) -> Result<u16, HlcError> {
    logical
        .checked_add(1)
        .ok_or(HlcError::LogicalOverflow { physical_ms })
}
