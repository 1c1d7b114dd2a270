//! Who is calling: the identity a verified credential maps to.
//!
//! Invariant: a [`Caller`] is only ever built by [`super::Directory::authenticate`] from a
//! credential it checked; handlers read it from the request extensions (put there by the auth
//! layer) and never from a request field, so audit records name who really asked.

use super::role::Role;

/// How the caller proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential {
    BearerToken,
    ClientCertificate,
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The identity name: a token's `identity`, or a certificate's subject. For a proxy it is
    /// also the only lease holder name it may use.
    pub identity: String,
    pub role: Role,
    /// The region a proxy or region identity is bound to.
    pub region: Option<String>,
    /// The vantage point a probe identity reports as.
    pub vantage: Option<String>,
    pub credential: Credential,
}
