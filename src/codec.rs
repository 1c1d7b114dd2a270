//! The one place that knows the byte format of everything arbiter writes to disk or sends
//! between nodes: bincode 2 (serde) with the standard configuration.
//!
//! Invariant: nothing else in the crate calls bincode, so the format can change here, behind
//! the on-disk format version checked by the store.

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

pub fn decode<T: DeserializeOwned>(what: &'static str, bytes: &[u8]) -> Result<T, CodecError> {
    bincode::serde::decode_from_slice(bytes, bincode::config::standard())
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
