//! The one place that knows the byte format of everything arbiter writes to disk or sends
//! between nodes: bincode 2 (serde) with the standard configuration.
//!
//! Invariants: nothing else in the crate calls bincode, so the format can change here, behind
//! the on-disk format version checked by the store. Whatever a node writes to disk and reads
//! back outside the WAL (metadata, snapshots) goes through [`encode_checked`] /
//! [`decode_checked`]: a CRC-32 envelope, so a flipped byte is reported, never decoded into a
//! plausible wrong value.
//! Every decode (network or disk) is bounded by [`MAX_DECODE_BYTES`]: a forged or corrupt
//! length prefix is a [`CodecError::Decode`], never an attempt to allocate what it claims.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// A value could not be encoded or decoded; carries what was being handled.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("cannot encode {what}: {source}")]
    Encode {
        what: &'static str,
        #[source]
        source: bincode::error::EncodeError,
    },
    #[error("cannot decode {what}: {source}")]
    Decode {
        what: &'static str,
        #[source]
        source: bincode::error::DecodeError,
    },
    #[error("{what} fails its checksum (stored {stored:#010x}, computed {computed:#010x})")]
    Checksum {
        what: &'static str,
        stored: u32,
        computed: u32,
    },
    #[error("{what} is too short ({len} bytes) to hold its checksum")]
    Truncated { what: &'static str, len: usize },
}

/// Bytes of the checksum that [`encode_checked`] puts in front of the payload.
const CHECKSUM_BYTES: usize = 4;

pub fn encode<T: Serialize>(what: &'static str, value: &T) -> Result<Vec<u8>, CodecError> {
    bincode::serde::encode_to_vec(value, bincode::config::standard())
        .map_err(|source| CodecError::Encode { what, source })
}

/// Most bytes one decode may allocate. Above the largest Raft message (64 MiB) and any snapshot
/// this cluster keeps (100k leases are ~20 MiB); far below what would abort the process.
pub const MAX_DECODE_BYTES: usize = 256 * 1024 * 1024;

pub fn decode<T: DeserializeOwned>(what: &'static str, bytes: &[u8]) -> Result<T, CodecError> {
    // Same byte format as `encode` (the limit is checked while decoding, not written).
    let config = bincode::config::standard().with_limit::<MAX_DECODE_BYTES>();
    bincode::serde::decode_from_slice(bytes, config)
        .map(|(value, _)| value)
        .map_err(|source| CodecError::Decode { what, source })
}

/// Encodes `value` behind a CRC-32 (little-endian) of the encoded bytes.
pub fn encode_checked<T: Serialize>(what: &'static str, value: &T) -> Result<Vec<u8>, CodecError> {
    let payload = encode(what, value)?;
    let mut bytes = Vec::with_capacity(CHECKSUM_BYTES + payload.len());
    bytes.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    bytes.extend_from_slice(&payload);
    Ok(bytes)
}

/// Verifies the checksum written by [`encode_checked`], then decodes.
pub fn decode_checked<T: DeserializeOwned>(
    what: &'static str,
    bytes: &[u8],
) -> Result<T, CodecError> {
    let Some((stored, payload)) = bytes.split_first_chunk::<CHECKSUM_BYTES>() else {
        return Err(CodecError::Truncated {
            what,
            len: bytes.len(),
        });
    };
    let stored = u32::from_le_bytes(*stored);
    let computed = crc32fast::hash(payload);
    if stored != computed {
        return Err(CodecError::Checksum {
            what,
            stored,
            computed,
        });
    }
    decode(what, payload)
}

/// FNV-1a over bytes: a stable digest (unlike `DefaultHasher`, identical across processes and
/// builds) for comparing state machines between nodes.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lease table's rows moved from a `BTreeMap` to a persistent map; snapshots and
    /// backups written before must still decode, and new ones read the same elsewhere. The
    /// same table as the old struct (same fields, same order) must encode to the same bytes.
    #[test]
    fn the_lease_table_encodes_as_it_did_with_a_btreemap() {
        use arbiter_core::lease_table::{LeaseCommand, LeaseTable, RegionFence, ResourceLease};
        use arbiter_core::{ApplyCtx, FencingToken, HolderId, RegionId, ResourceId, WallMillis};
        use std::collections::BTreeMap;

        #[derive(serde::Serialize)]
        struct OldLeaseTable {
            resources: BTreeMap<ResourceId, ResourceLease>,
            fenced_regions: BTreeMap<RegionId, RegionFence>,
        }

        let mut table = LeaseTable::new();
        let west = RegionId::new("us-west-2");
        for (i, name) in ["db/c", "db/a", "db/b", "queue/x"].iter().enumerate() {
            let ctx = ApplyCtx {
                token: FencingToken::from_log_position(i as u64 + 1, 0),
                now: WallMillis(1_000),
            };
            let command = LeaseCommand::Acquire {
                resource: ResourceId::new(*name),
                holder: HolderId::new(format!("proxy-{i}")),
                region: Some(if i % 2 == 0 {
                    west.clone()
                } else {
                    RegionId::new("eu")
                }),
                ttl_ms: 5_000,
                break_glass: None,
            };
            table.apply(&command, &ctx);
        }
        let fence = LeaseCommand::RevokeRegion {
            region: west.clone(),
            by: "dr".into(),
            reason: "outage".into(),
        };
        let ctx = ApplyCtx {
            token: FencingToken::from_log_position(9, 0),
            now: WallMillis(2_000),
        };
        table.apply(&fence, &ctx);

        let old = OldLeaseTable {
            resources: table
                .rows_after(None)
                .map(|(r, row)| (r.clone(), row.clone()))
                .collect(),
            fenced_regions: [(west.clone(), table.region_fence(&west).unwrap().clone())].into(),
        };
        assert_eq!(old.resources.len(), 4);
        let bytes = encode("old table", &old).unwrap();
        assert_eq!(encode("table", &table).unwrap(), bytes);
        assert_eq!(decode::<LeaseTable>("old table", &bytes).unwrap(), table);
    }

    /// A varint length prefix claiming `u64::MAX` bytes (bincode's 0xFD marker + 8 bytes).
    const HUGE_LENGTH: [u8; 9] = [0xFD, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF];

    #[test]
    fn huge_length_prefix_is_a_typed_error_not_an_allocation() {
        let err = decode::<String>("forged string", &HUGE_LENGTH).unwrap_err();
        assert!(
            matches!(
                err,
                CodecError::Decode {
                    what: "forged string",
                    ..
                }
            ),
            "{err}"
        );
        let err = decode::<Vec<u8>>("forged bytes", &HUGE_LENGTH).unwrap_err();
        assert!(matches!(err, CodecError::Decode { .. }), "{err}");
    }

    #[test]
    fn length_just_over_the_limit_is_refused_and_values_within_it_round_trip() {
        let over = encode("len", &(MAX_DECODE_BYTES as u64 + 1)).expect("encode");
        let err = decode::<Vec<u8>>("over limit", &over).unwrap_err();
        assert!(
            err.to_string().contains("limit"),
            "expected a limit error, got {err}"
        );
        let value = vec!["lease".to_string(); 1_000];
        let bytes = encode("value", &value).expect("encode");
        assert_eq!(
            decode::<Vec<String>>("value", &bytes).expect("decode"),
            value
        );
    }

    #[test]
    fn truncated_input_is_a_typed_error() {
        let bytes = encode("value", &"hello world".to_string()).expect("encode");
        assert!(decode::<String>("truncated", &bytes[..4]).is_err());
    }

    #[test]
    fn a_checked_value_round_trips() {
        let bytes = encode_checked("test value", &(7u64, "lease".to_string())).expect("encode");
        let back: (u64, String) = decode_checked("test value", &bytes).expect("decode");
        assert_eq!(back, (7, "lease".to_string()));
    }

    #[test]
    fn every_flipped_byte_of_a_checked_value_is_refused() {
        let bytes = encode_checked("test value", &(7u64, "lease".to_string())).expect("encode");
        for position in 0..bytes.len() {
            let mut flipped = bytes.clone();
            flipped[position] ^= 0x01;
            let result = decode_checked::<(u64, String)>("test value", &flipped);
            assert!(
                matches!(result, Err(CodecError::Checksum { .. })),
                "flip at {position} not caught: {result:?}"
            );
        }
        assert!(matches!(
            decode_checked::<u64>("test value", &bytes[..2]),
            Err(CodecError::Truncated { len: 2, .. })
        ));
    }
}
