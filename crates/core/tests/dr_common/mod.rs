//! What the DR tests share: the seed's regions and the context of a log entry.

// Each test crate compiles this module and uses only part of it.
#![allow(dead_code)]

use arbiter_core::{ApplyCtx, FencingToken, RegionId, WallMillis};

pub fn east() -> RegionId {
    RegionId::from("us-east-1")
}

pub fn west() -> RegionId {
    RegionId::from("us-west-2")
}

pub fn eu() -> RegionId {
    RegionId::from("eu-central-1")
}

/// The context of the single command in the log entry at `index`, proposed at `now_ms`.
pub fn ctx(index: u64, now_ms: u64) -> ApplyCtx {
    ApplyCtx {
        token: FencingToken::from_log_position(index, 0),
        now: WallMillis(now_ms),
    }
}
