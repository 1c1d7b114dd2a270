//! Bearer tokens: how they are made, and the only form in which a node keeps them (a SHA-256
//! digest).
//!
//! Invariant: a node never stores or logs a token, only its digest; a presented token is hashed
//! and compared with every stored digest in constant time, so neither the file nor the timing of
//! a refusal gives a token away.

use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Prefix of every generated token, so a leaked one is recognisable in logs and scanners.
pub const TOKEN_PREFIX: &str = "arb_";
/// Random bytes in a generated token (256 bits).
const TOKEN_BYTES: usize = 32;

/// A SHA-256 digest of a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenDigest([u8; 32]);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("`sha256` must be 64 hex digits, got {got:?}")]
pub struct BadDigest {
    pub got: String,
}

impl TokenDigest {
    pub fn of(token: &str) -> TokenDigest {
        TokenDigest(Sha256::digest(token.as_bytes()).into())
    }

    /// Parses the hex form written in tokens files.
    pub fn from_hex(hex: &str) -> Result<TokenDigest, BadDigest> {
        let bad = || BadDigest {
            got: hex.to_string(),
        };
        if hex.len() != 64 || !hex.is_ascii() {
            return Err(bad());
        }
        let mut bytes = [0u8; 32];
        for (i, byte) in bytes.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
        }
        Ok(TokenDigest(bytes))
    }

    pub fn to_hex(self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Constant-time equality: how long a refusal takes says nothing about how close a guess was.
    pub fn matches(&self, other: &TokenDigest) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

/// A fresh random token: [`TOKEN_PREFIX`] and 64 hex digits.
pub fn generate() -> String {
    let mut bytes = [0u8; TOKEN_BYTES];
    rand::rng().fill_bytes(&mut bytes);
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("{TOKEN_PREFIX}{hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_round_trips_through_hex_and_matches_only_its_token() {
        let token = generate();
        assert!(token.starts_with(TOKEN_PREFIX));
        assert_eq!(token.len(), TOKEN_PREFIX.len() + 64);
        let digest = TokenDigest::of(&token);
        let parsed = TokenDigest::from_hex(&digest.to_hex()).expect("own hex parses");
        assert!(parsed.matches(&digest));
        assert!(!parsed.matches(&TokenDigest::of(&generate())));
    }

    #[test]
    fn digest_is_sha256_of_the_token_text() {
        // The digest `printf abc | sha256sum` prints: operators can hash tokens with shell tools.
        assert_eq!(
            TokenDigest::of("abc").to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn malformed_hex_is_refused() {
        assert!(TokenDigest::from_hex("abc").is_err());
        assert!(TokenDigest::from_hex(&"zz".repeat(32)).is_err());
        assert!(TokenDigest::from_hex(&"é".repeat(32)).is_err());
    }
}
