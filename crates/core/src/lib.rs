//! # arbiter-core — the pure core
//!
//! Everything here is deterministic: no tokio, no sled, no clock, no randomness, no I/O. Time
//! enters only as an argument or inside a log entry, so the same log gives the same state on
//! every node and after every restart or snapshot install.
//!
//! - [`types`]: identifiers and scalar newtypes (`FencingToken`, `RegionId`, ...).

pub mod types;

pub use types::*;
