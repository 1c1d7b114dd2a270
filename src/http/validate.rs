//! Field checks for request bodies and query strings, run before anything is proposed.
//!
//! Invariant: every check that can fail on a request happens here or in an extractor, so bad
//! input becomes a 4xx and never reaches the log.

use std::collections::BTreeSet;

use arbiter_core::state_machine::StateMachine;
use arbiter_core::RegionId;

use super::error::ApiError;

/// Longest region name accepted (the seed's `VARCHAR(64)`).
pub const MAX_REGION_LEN: usize = arbiter_core::MAX_REGION_BYTES;
/// Longest identity, tenant or policy name accepted (the seed's `VARCHAR(128)`).
pub const MAX_NAME_LEN: usize = 128;
/// Longest free-text reason accepted.
pub const MAX_REASON_LEN: usize = 1_024;

/// `value`, checked to be non-blank and at most `max` bytes.
pub fn text<'a>(field: &str, value: &'a str, max: usize) -> Result<&'a str, ApiError> {
    if value.trim().is_empty() {
        return Err(ApiError::Invalid(format!("`{field}` must not be empty")));
    }
    if value.len() > max {
        return Err(ApiError::Invalid(format!(
            "`{field}` is longer than {max} bytes"
        )));
    }
    Ok(value)
}

/// An optional identity, defaulting to `default` when absent.
pub fn identity(field: &str, value: Option<&str>, default: &str) -> Result<String, ApiError> {
    match value {
        Some(v) => Ok(text(field, v, MAX_NAME_LEN)?.to_string()),
        None => Ok(default.to_string()),
    }
}

/// The regions the arbiter knows: those in the replicated health table or the traffic weights.
pub fn known_regions(machine: &StateMachine) -> BTreeSet<RegionId> {
    let tracked = machine.regions.iter().map(|(region, _)| region.clone());
    let weighted = machine
        .traffic
        .weights()
        .into_iter()
        .flat_map(|w| w.iter().map(|(region, _)| region.clone()));
    tracked.chain(weighted).collect()
}

/// `value` as a region the arbiter knows.
pub fn region(field: &str, value: &str, known: &BTreeSet<RegionId>) -> Result<RegionId, ApiError> {
    let region = RegionId::new(text(field, value, MAX_REGION_LEN)?);
    if known.contains(&region) {
        return Ok(region);
    }
    let known: Vec<&str> = known.iter().map(RegionId::as_str).collect();
    Err(ApiError::Invalid(format!(
        "`{field}`: unknown region \"{region}\" (known: {})",
        if known.is_empty() {
            "none yet".to_string()
        } else {
            known.join(", ")
        }
    )))
}

/// Two region fields that must differ.
pub fn distinct(
    (field_a, a): (&str, &RegionId),
    (field_b, b): (&str, &RegionId),
) -> Result<(), ApiError> {
    if a == b {
        return Err(ApiError::Invalid(format!(
            "`{field_a}` and `{field_b}` are the same region ({a})"
        )));
    }
    Ok(())
}
