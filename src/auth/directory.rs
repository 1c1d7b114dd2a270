//! Who is who: the tokens file, the inline `[[auth.tokens]]` and the certificate identities of
//! `[[auth.identities]]`, loaded into one lookup table.
//!
//! Tokens file format (TOML; the same entries may be written inline as `[[auth.tokens]]`):
//!
//! ```toml
//! [[tokens]]
//! identity = "proxy-east"     # the name audit records show; a proxy's only lease holder name
//! role = "proxy"              # operator | controller | proxy | probe | region | reader
//! region = "us-east-1"        # required for proxy and region
//! sha256 = "9f86d0…"          # SHA-256 of the token, 64 hex digits; the token itself is never stored
//! # vantage = "london"        # required for probe
//! ```
//!
//! Certificate identities: `[[auth.identities]] subject = "arbiter://client/proxy-east"` in the
//! config, or `[[identities]]` in the tokens file, with the same `role`/`region`/`vantage` keys;
//! `subject` is the certificate's first SAN URI or its CN, and is the identity audit records show.
//!
//! Invariant: a loaded [`Directory`] is complete and consistent — every entry has a known role,
//! the scope its role needs, a well-formed digest, and no identity or digest appears twice — or
//! it is not loaded at all (a reload that fails keeps the previous table).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::caller::{Caller, Credential};
use super::role::{Role, Scope};
use super::token::{BadDigest, TokenDigest};

/// One bearer token entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenEntry {
    pub identity: String,
    pub role: Role,
    pub sha256: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vantage: Option<String>,
}

/// One certificate identity entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityEntry {
    pub subject: String,
    pub role: Role,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vantage: Option<String>,
}

/// The tokens file: a list of `[[tokens]]`, and of `[[identities]]` (certificate subjects) so
/// that one file, reloaded on SIGHUP, says who is who.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokensFile {
    #[serde(default)]
    pub tokens: Vec<TokenEntry>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub identities: Vec<IdentityEntry>,
}

/// `[auth]` of the node config.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// A tokens file, read at start and again on SIGHUP.
    pub tokens_file: Option<PathBuf>,
    #[serde(default)]
    pub tokens: Vec<TokenEntry>,
    #[serde(default)]
    pub identities: Vec<IdentityEntry>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DirectoryError {
    #[error("cannot read tokens file {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("tokens file {path} is not valid: {reason}")]
    Parse { path: String, reason: String },
    #[error("{identity}: {source}")]
    Digest {
        identity: String,
        #[source]
        source: BadDigest,
    },
    #[error("{identity}: role {role} needs `{field}`")]
    MissingScope {
        identity: String,
        role: Role,
        field: &'static str,
    },
    #[error("{identity}: role {role} takes no `{field}`")]
    UnexpectedScope {
        identity: String,
        role: Role,
        field: &'static str,
    },
    #[error("identity {identity:?} is listed twice")]
    DuplicateIdentity { identity: String },
    #[error("two token entries ({first}, {second}) have the same digest")]
    DuplicateDigest { first: String, second: String },
    #[error("an entry has an empty identity or subject")]
    EmptyIdentity,
}

/// Why a credential was not accepted.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum Unauthenticated {
    #[error("no credentials: send `Authorization: Bearer <token>` or a client certificate")]
    Missing,
    #[error("the Authorization header is not `Bearer <token>`")]
    Malformed,
    #[error("unknown bearer token")]
    UnknownToken,
    #[error("client certificate subject {subject:?} is not a configured identity")]
    UnknownSubject { subject: String },
    #[error("client certificate: {0}")]
    Certificate(String),
}

/// What a credential grants, before it is tied to a request.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Principal {
    identity: String,
    role: Role,
    region: Option<String>,
    vantage: Option<String>,
}

impl Principal {
    fn new(
        identity: &str,
        role: Role,
        region: &Option<String>,
        vantage: &Option<String>,
    ) -> Result<Principal, DirectoryError> {
        if identity.trim().is_empty() {
            return Err(DirectoryError::EmptyIdentity);
        }
        let (needs_region, needs_vantage) = match role.scope() {
            Scope::HolderAndRegion | Scope::Region => (true, false),
            Scope::Vantage => (false, true),
            Scope::Unbound | Scope::Name => (false, false),
        };
        for (field, present, needed) in [
            ("region", region.is_some(), needs_region),
            ("vantage", vantage.is_some(), needs_vantage),
        ] {
            let identity = identity.to_string();
            match (present, needed) {
                (false, true) => {
                    return Err(DirectoryError::MissingScope {
                        identity,
                        role,
                        field,
                    })
                }
                (true, false) => {
                    return Err(DirectoryError::UnexpectedScope {
                        identity,
                        role,
                        field,
                    })
                }
                _ => {}
            }
        }
        Ok(Principal {
            identity: identity.to_string(),
            role,
            region: region.clone(),
            vantage: vantage.clone(),
        })
    }

    fn caller(&self, credential: Credential) -> Caller {
        Caller {
            identity: self.identity.clone(),
            role: self.role,
            region: self.region.clone(),
            vantage: self.vantage.clone(),
            credential,
        }
    }
}

/// The loaded identities.
#[derive(Debug, Default)]
pub struct Directory {
    tokens: Vec<(TokenDigest, Principal)>,
    subjects: BTreeMap<String, Principal>,
}

impl Directory {
    /// Reads the tokens file (if any) and checks every entry.
    pub fn load(config: &AuthConfig) -> Result<Directory, DirectoryError> {
        let mut entries = config.tokens.clone();
        let mut identities = config.identities.clone();
        if let Some(path) = &config.tokens_file {
            let file = read_tokens_file(path)?;
            entries.extend(file.tokens);
            identities.extend(file.identities);
        }
        let mut directory = Directory::default();
        let mut names = std::collections::BTreeSet::new();
        for entry in &entries {
            let principal =
                Principal::new(&entry.identity, entry.role, &entry.region, &entry.vantage)?;
            let digest =
                TokenDigest::from_hex(&entry.sha256).map_err(|source| DirectoryError::Digest {
                    identity: entry.identity.clone(),
                    source,
                })?;
            if !names.insert(entry.identity.clone()) {
                return Err(DirectoryError::DuplicateIdentity {
                    identity: entry.identity.clone(),
                });
            }
            if let Some((_, first)) = directory.tokens.iter().find(|(d, _)| d.matches(&digest)) {
                return Err(DirectoryError::DuplicateDigest {
                    first: first.identity.clone(),
                    second: entry.identity.clone(),
                });
            }
            directory.tokens.push((digest, principal));
        }
        for entry in &identities {
            let principal =
                Principal::new(&entry.subject, entry.role, &entry.region, &entry.vantage)?;
            if directory
                .subjects
                .insert(entry.subject.clone(), principal)
                .is_some()
            {
                return Err(DirectoryError::DuplicateIdentity {
                    identity: entry.subject.clone(),
                });
            }
        }
        Ok(directory)
    }

    /// Identities loaded (tokens and certificate subjects).
    pub fn len(&self) -> usize {
        self.tokens.len() + self.subjects.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The caller a bearer token belongs to.
    pub fn by_token(&self, token: &str) -> Result<Caller, Unauthenticated> {
        let presented = TokenDigest::of(token);
        // Compare against every entry, not stopping at the first hit, so the time taken does
        // not depend on where (or whether) the token is listed.
        let mut found = None;
        for (digest, principal) in &self.tokens {
            if digest.matches(&presented) {
                found = Some(principal);
            }
        }
        found
            .map(|p| p.caller(Credential::BearerToken))
            .ok_or(Unauthenticated::UnknownToken)
    }

    /// The caller a verified certificate subject belongs to.
    pub fn by_subject(&self, subject: &str) -> Result<Caller, Unauthenticated> {
        self.subjects
            .get(subject)
            .map(|p| p.caller(Credential::ClientCertificate))
            .ok_or_else(|| Unauthenticated::UnknownSubject {
                subject: subject.to_string(),
            })
    }
}

/// Reads and parses a tokens file.
pub fn read_tokens_file(path: &Path) -> Result<TokensFile, DirectoryError> {
    let text = std::fs::read_to_string(path).map_err(|e| DirectoryError::Read {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    toml::from_str(&text).map_err(|e| DirectoryError::Parse {
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(identity: &str, role: Role, token: &str) -> TokenEntry {
        TokenEntry {
            identity: identity.into(),
            role,
            sha256: TokenDigest::of(token).to_hex(),
            region: None,
            vantage: None,
        }
    }

    fn config(tokens: Vec<TokenEntry>) -> AuthConfig {
        AuthConfig {
            tokens,
            ..AuthConfig::default()
        }
    }

    #[test]
    fn a_token_maps_to_its_identity_and_an_unknown_one_is_refused() {
        let mut proxy = entry("proxy-east", Role::Proxy, "t-proxy");
        proxy.region = Some("us-east-1".into());
        let directory = Directory::load(&config(vec![
            entry("alice", Role::Operator, "t-alice"),
            proxy,
        ]))
        .expect("valid");
        let caller = directory.by_token("t-proxy").expect("known token");
        assert_eq!(caller.identity, "proxy-east");
        assert_eq!(caller.role, Role::Proxy);
        assert_eq!(caller.region.as_deref(), Some("us-east-1"));
        assert_eq!(
            directory.by_token("t-mallory"),
            Err(Unauthenticated::UnknownToken)
        );
    }

    #[test]
    fn bound_roles_need_their_scope_and_unbound_roles_refuse_one() {
        let err = Directory::load(&config(vec![entry("p", Role::Probe, "t")])).unwrap_err();
        assert!(matches!(
            err,
            DirectoryError::MissingScope {
                field: "vantage",
                ..
            }
        ));
        let mut reader = entry("r", Role::Reader, "t");
        reader.region = Some("us-east-1".into());
        let err = Directory::load(&config(vec![reader])).unwrap_err();
        assert!(matches!(
            err,
            DirectoryError::UnexpectedScope {
                field: "region",
                ..
            }
        ));
    }

    #[test]
    fn duplicate_identities_and_digests_are_refused() {
        let twice = vec![
            entry("a", Role::Reader, "t1"),
            entry("a", Role::Reader, "t2"),
        ];
        assert!(matches!(
            Directory::load(&config(twice)),
            Err(DirectoryError::DuplicateIdentity { .. })
        ));
        let same = vec![entry("a", Role::Reader, "t"), entry("b", Role::Reader, "t")];
        assert!(matches!(
            Directory::load(&config(same)),
            Err(DirectoryError::DuplicateDigest { .. })
        ));
    }

    #[test]
    fn tokens_file_entries_join_inline_ones() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("tokens.toml");
        let file = TokensFile {
            tokens: vec![entry("from-file", Role::Reader, "t-file")],
            identities: vec![IdentityEntry {
                subject: "arbiter://client/ops".into(),
                role: Role::Operator,
                region: None,
                vantage: None,
            }],
        };
        std::fs::write(&path, toml::to_string(&file).expect("serialize")).expect("write");
        let directory = Directory::load(&AuthConfig {
            tokens_file: Some(path),
            tokens: vec![entry("inline", Role::Operator, "t-inline")],
            identities: vec![],
        })
        .expect("valid");
        assert_eq!(directory.len(), 3);
        assert_eq!(
            directory.by_token("t-file").expect("file").identity,
            "from-file"
        );
        assert_eq!(
            directory.by_token("t-inline").expect("inline").identity,
            "inline"
        );
        assert_eq!(
            directory
                .by_subject("arbiter://client/ops")
                .expect("certificate identity from the file")
                .role,
            Role::Operator
        );
    }

    #[test]
    fn certificate_subjects_map_through_the_identity_table() {
        let directory = Directory::load(&AuthConfig {
            identities: vec![IdentityEntry {
                subject: "arbiter://probe/london".into(),
                role: Role::Probe,
                region: None,
                vantage: Some("london".into()),
            }],
            ..AuthConfig::default()
        })
        .expect("valid");
        let caller = directory
            .by_subject("arbiter://probe/london")
            .expect("known");
        assert_eq!(caller.vantage.as_deref(), Some("london"));
        assert_eq!(caller.credential, Credential::ClientCertificate);
        assert!(directory.by_subject("arbiter://probe/tokyo").is_err());
    }
}
