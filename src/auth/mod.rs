//! Authentication and authorization: who a request comes from, and whether it may do what it
//! asks.
//!
//! - [`role`]: the roles, and which are bound to a holder, vantage point or region.
//! - [`token`]: bearer tokens and their SHA-256 digests (the only form a node keeps).
//! - [`certificate`]: the verified client-certificate chain and its subject name.
//! - [`directory`]: tokens file, inline tokens and certificate identities → [`Caller`].
//! - [`permissions`]: the one permission table (every gRPC method and HTTP route) and the
//!   binding rule.
//! - [`issue`]: new tokens appended (durably) to a tokens file.
//! - [`denials`]: refusals, logged and counted.
//! - [`http_layer`], [`grpc_layer`]: the axum middleware and the tower layer in front of the
//!   handlers of each edge; both call [`Auth::admit`].
//!
//! ```text
//!  request ──▶ layer: Auth::admit(access of the route, credentials)
//!                │ unauthenticated → 401 / UNAUTHENTICATED   role not allowed → 403 / PERMISSION_DENIED
//!                ▼ Caller in the request extensions
//!  handler ──▶ Auth::authorize(caller, operation, claim from the body)   (bound roles only)
//!                ▼ audit fields (initiated_by, revoked by, break-glass operator) = caller.identity
//! ```
//!
//! Invariant: identity comes only from a verified credential; a node with no identities
//! configured refuses to start unless it is explicitly `--insecure`, in which case every caller
//! is the operator `anonymous` and the node says so loudly at start.

mod caller;
pub mod certificate;
mod denials;
pub mod directory;
pub mod grpc_layer;
pub mod http_layer;
pub mod issue;
pub mod permissions;
mod role;
pub mod token;

use std::sync::{Arc, RwLock};

use axum::http::HeaderMap;

pub use caller::{Caller, Credential};
pub use certificate::PeerCertificates;
pub use denials::{DenialCounts, Denials};
pub use directory::{AuthConfig, Directory, DirectoryError, Unauthenticated};
pub use permissions::{
    holder_claim, lease_claims, Access, Claim, DenialReason, Edge, Operation, WrongPort,
};
pub use role::Role;

/// Identity of every caller on a node started with `--insecure` and no identities.
pub const ANONYMOUS: &str = "anonymous";

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("unauthenticated: {0}")]
    Unauthenticated(Unauthenticated),
    #[error("permission denied: {0}")]
    WrongPort(WrongPort),
    #[error("permission denied for {identity} ({role}): {reason}")]
    Forbidden {
        identity: String,
        role: Role,
        reason: DenialReason,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum AuthSetupError {
    #[error(
        "no identities configured: set `auth.tokens_file` (or --auth-tokens-file), \
         `[[auth.tokens]]` or `[[auth.identities]]`, or start with --insecure"
    )]
    NoIdentities,
    #[error(transparent)]
    Directory(#[from] DirectoryError),
}

enum Mode {
    Enforced {
        config: AuthConfig,
        // A read-mostly table swapped whole on reload, so a request sees either the old or the
        // new identities, never a mix.
        directory: RwLock<Arc<Directory>>,
    },
    /// `--insecure` without identities: every caller is the operator [`ANONYMOUS`].
    Open,
}

/// A node's authentication state, shared by both edges.
pub struct Auth {
    mode: Mode,
    denials: Denials,
}

impl Auth {
    pub fn new(config: AuthConfig, insecure: bool) -> Result<Auth, AuthSetupError> {
        let directory = Directory::load(&config)?;
        let mode = if directory.is_empty() {
            if !insecure {
                return Err(AuthSetupError::NoIdentities);
            }
            tracing::warn!(
                "INSECURE: no identities configured and --insecure given; every request is \
                 accepted as operator `{ANONYMOUS}`"
            );
            Mode::Open
        } else {
            tracing::info!(identities = directory.len(), "authentication on");
            Mode::Enforced {
                config,
                directory: RwLock::new(Arc::new(directory)),
            }
        };
        Ok(Auth {
            mode,
            denials: Denials::default(),
        })
    }

    /// Re-reads the tokens file (rotation). On error the previous identities stay in force.
    pub fn reload(&self) -> Result<usize, DirectoryError> {
        let Mode::Enforced { config, directory } = &self.mode else {
            return Ok(0);
        };
        let fresh = Directory::load(config)?;
        let count = fresh.len();
        *directory.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(fresh);
        Ok(count)
    }

    pub fn denials(&self) -> DenialCounts {
        self.denials.counts()
    }

    /// The refusal counters themselves, to register with the node's metrics.
    pub fn denial_counters(&self) -> &Denials {
        &self.denials
    }

    /// The layer's check: who is calling (bearer token or the connection's verified client
    /// certificate) and whether its role may reach this endpoint, on this kind of port, at all.
    /// An admitted caller is put into the request's extensions for the handler; public
    /// endpoints and the peer port (whose handshake admits only nodes) carry none.
    pub fn admit<B>(
        &self,
        endpoint: &str,
        access: Access,
        edge: Edge,
        request: &mut axum::http::Request<B>,
    ) -> Result<(), AuthError> {
        let operation = match access.on(edge) {
            Ok(None) => return Ok(()),
            Ok(Some(operation)) => operation,
            Err(wrong) => {
                let e = AuthError::WrongPort(wrong);
                self.denials.record(endpoint, &e);
                return Err(e);
            }
        };
        let certificates = PeerCertificates::of(request.extensions());
        let checked = self
            .authenticate(request.headers(), certificates.as_ref())
            .and_then(|caller| {
                if permissions::permits(caller.role, operation) {
                    Ok(caller)
                } else {
                    Err(forbidden(
                        &caller,
                        DenialReason::Role {
                            role: caller.role,
                            operation,
                        },
                    ))
                }
            });
        let caller = checked.inspect_err(|e| self.denials.record(endpoint, e))?;
        crate::request_span::record_caller(&caller.identity);
        request.extensions_mut().insert(caller);
        Ok(())
    }

    /// The handler's check for operations that depend on a request field: the role again, and
    /// the binding rule against what the request claims.
    pub fn authorize(
        &self,
        caller: &Caller,
        operation: Operation,
        claim: Claim<'_>,
    ) -> Result<(), AuthError> {
        permissions::authorize(caller, operation, claim)
            .map_err(|reason| forbidden(caller, reason))
            .inspect_err(|e| self.denials.record(operation.as_str(), e))
    }

    fn authenticate(
        &self,
        headers: &HeaderMap,
        certificates: Option<&PeerCertificates>,
    ) -> Result<Caller, AuthError> {
        let directory = match &self.mode {
            Mode::Open => {
                return Ok(Caller {
                    identity: ANONYMOUS.into(),
                    role: Role::Operator,
                    region: None,
                    vantage: None,
                    credential: Credential::BearerToken,
                })
            }
            Mode::Enforced { directory, .. } => {
                directory.read().unwrap_or_else(|p| p.into_inner()).clone()
            }
        };
        let found = match (bearer(headers), certificates) {
            (Some(token), _) => token.and_then(|t| directory.by_token(t)),
            (None, Some(chain)) => match chain.node_id() {
                // A node certificate is an identity by itself: the handshake checked it
                // against the cluster CA, and only node certificates carry a node name.
                Some(id) => Ok(Caller {
                    identity: format!("node-{id}"),
                    role: Role::Node,
                    region: None,
                    vantage: None,
                    credential: Credential::ClientCertificate,
                }),
                None => chain
                    .subject()
                    .map_err(|e| Unauthenticated::Certificate(e.to_string()))
                    .and_then(|subject| directory.by_subject(&subject)),
            },
            (None, None) => Err(Unauthenticated::Missing),
        };
        found.map_err(AuthError::Unauthenticated)
    }
}

fn forbidden(caller: &Caller, reason: DenialReason) -> AuthError {
    AuthError::Forbidden {
        identity: caller.identity.clone(),
        role: caller.role,
        reason,
    }
}

/// The bearer token of an `Authorization` header: `None` without the header, an error when it
/// is not `Bearer <token>`.
fn bearer(headers: &HeaderMap) -> Option<Result<&str, Unauthenticated>> {
    let value = headers.get(axum::http::header::AUTHORIZATION)?;
    let parsed = value
        .to_str()
        .ok()
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, token)| scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty())
        .map(|(_, token)| token.trim())
        .ok_or(Unauthenticated::Malformed);
    Some(parsed)
}
