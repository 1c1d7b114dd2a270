//! The one place that knows the byte format of everything arbiter writes to disk or sends
//! between nodes: bincode 2 (serde) with the standard configuration.
//!
//! Invariant: nothing else in the crate calls bincode, so the format can change here, behind
//! the on-disk format version checked by the store. Every decode (network or disk) is bounded
//! by [`MAX_DECODE_BYTES`]: a forged or corrupt length prefix is a [`CodecError::Decode`],
//! never an attempt to allocate what it claims.

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
}

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
}
