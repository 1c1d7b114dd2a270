//! Identifiers and scalar newtypes shared by every part of arbiter.
//!
//! Invariant: a value's type says what it is. A fencing token is never a bare `u64`, a region
//! never a bare `String`, so the compiler keeps tokens, epochs, node ids and times apart.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Longest resource, holder, operator or reason string the edges accept, in bytes.
pub const MAX_NAME_BYTES: usize = 256;
/// Longest region name accepted at either edge (the seed's `VARCHAR(64)`).
pub const MAX_REGION_BYTES: usize = 64;

/// Raft node id. One node per region in production; tests may run more.
pub type NodeId = u64;

/// Milliseconds since the Unix epoch, as read by the proposing leader's wall clock.
/// Used only for audit timestamps inside log entries; never for safety decisions.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
pub struct WallMillis(pub u64);

/// Milliseconds on some process's monotonic clock. Only meaningful inside the process that
/// read it; never stored in replicated state.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
pub struct MonoMillis(pub u64);

impl MonoMillis {
    pub fn saturating_add_ms(self, ms: u64) -> Self {
        MonoMillis(self.0.saturating_add(ms))
    }
}

/// A strictly increasing, unique fencing token.
///
/// Derived from the Raft log position of the command that minted it: `log_index << 12 |
/// position_in_entry`. Group commit packs several client commands into one log entry, so the
/// position keeps tokens of commands in the same entry distinct while preserving log order.
/// Never the Raft term, never a storage-generated id.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FencingToken(pub u64);

impl FencingToken {
    /// Commands per log entry that can mint distinct tokens.
    pub const MAX_COMMANDS_PER_ENTRY: u64 = 1 << 12;

    /// The token minted by the command at `position` inside the entry at `log_index`.
    pub fn from_log_position(log_index: u64, position: u32) -> Self {
        debug_assert!(u64::from(position) < Self::MAX_COMMANDS_PER_ENTRY);
        FencingToken((log_index << 12) | u64::from(position))
    }

    /// The log index of the entry that minted this token.
    pub fn log_index(self) -> u64 {
        self.0 >> 12
    }
}

impl fmt::Display for FencingToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
        #[serde(transparent)]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        pub struct $name(pub String);

        impl $name {
            pub fn new(s: impl Into<String>) -> Self {
                $name(s.into())
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                $name(s.to_string())
            }
        }
    };
}

/// The newtype macro, for other modules of the core that name things by strings.
pub(crate) use string_id;

string_id!(
    /// A cloud region name, e.g. `us-east-1`.
    RegionId
);
string_id!(
    /// A fenced resource, e.g. `db/orders` — the thing a write lease guards.
    ResourceId
);
string_id!(
    /// Who holds or asks for a lease, e.g. `proxy-us-east-1-a`.
    HolderId
);
string_id!(
    /// A tenant in the routing table.
    TenantId
);

/// What apply knows about the command it is applying: everything time- or position-dependent
/// comes from the log entry, never from the applying node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplyCtx {
    /// The token this command mints if it grants, revokes or fences anything.
    pub token: FencingToken,
    /// The proposing leader's wall clock, for audit timestamps only.
    pub now: WallMillis,
}
