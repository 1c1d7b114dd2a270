//! Issuing tokens: a fresh token, and its entry appended to a tokens file.
//!
//! Invariant: an issued token is on stable storage in the tokens file (file fdatasync'd, and the
//! directory fsync'd when the file is new) before it is handed to anyone, so a token that was
//! printed is one a node will accept after its next reload.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::directory::{read_tokens_file, DirectoryError, IdentityEntry, TokenEntry, TokensFile};
use super::role::Role;
use super::token::{self, TokenDigest};

/// Who a new token is for.
#[derive(Debug, Clone)]
pub struct TokenGrant {
    pub identity: String,
    pub role: Role,
    pub region: Option<String>,
    pub vantage: Option<String>,
}

impl TokenGrant {
    /// The tokens-file entry for `token`: the digest only.
    pub fn entry(&self, token: &str) -> TokenEntry {
        TokenEntry {
            identity: self.identity.clone(),
            role: self.role,
            sha256: TokenDigest::of(token).to_hex(),
            region: self.region.clone(),
            vantage: self.vantage.clone(),
        }
    }
}

/// Generates a token for `grant`, appends its entry to the tokens file at `path` (created if
/// absent) and returns the token. Nodes pick it up on SIGHUP.
pub fn issue(path: &Path, grant: &TokenGrant) -> Result<String, DirectoryError> {
    let token = token::generate();
    update_tokens_file(path, |file| file.tokens.push(grant.entry(&token)))?;
    Ok(token)
}

/// Appends a certificate identity (`[[identities]]`) to the tokens file at `path` (created if
/// absent). Nodes pick it up on SIGHUP.
pub fn admit(path: &Path, identity: IdentityEntry) -> Result<(), DirectoryError> {
    update_tokens_file(path, |file| file.identities.push(identity))
}

/// Reads the tokens file at `path` (empty if absent), changes it and writes it back durably.
fn update_tokens_file(
    path: &Path,
    change: impl FnOnce(&mut TokensFile),
) -> Result<(), DirectoryError> {
    let mut file = if path.exists() {
        read_tokens_file(path)?
    } else {
        TokensFile::default()
    };
    change(&mut file);
    write_tokens_file(path, &file)
}

/// Name of the tokens file `arbiter up` (and the test harness) keeps in a cluster's data dir.
pub const TOKENS_FILE: &str = "tokens.toml";
/// Name of the file holding the operator token in that data dir; the CLI reads it from there.
pub const OPERATOR_TOKEN_FILE: &str = "operator.token";
/// Identity of that operator token.
pub const LOCAL_OPERATOR: &str = "operator";

/// Writes `dir/tokens.toml` granting `token` the operator role (identity [`LOCAL_OPERATOR`]), and
/// the same role to the operator client certificate `arbiter up` issues (subject
/// [`crate::certs::client_subject`]), and `dir/operator.token`; returns the tokens file's path,
/// for the nodes' `--auth-tokens-file`.
pub fn write_operator_credentials(dir: &Path, token: &str) -> Result<PathBuf, DirectoryError> {
    let grant = TokenGrant {
        identity: LOCAL_OPERATOR.into(),
        role: Role::Operator,
        region: None,
        vantage: None,
    };
    let path = dir.join(TOKENS_FILE);
    write_tokens_file(
        &path,
        &TokensFile {
            tokens: vec![grant.entry(token)],
            identities: vec![IdentityEntry {
                subject: crate::certs::client_subject(LOCAL_OPERATOR),
                role: Role::Operator,
                region: None,
                vantage: None,
            }],
        },
    )?;
    let token_path = dir.join(OPERATOR_TOKEN_FILE);
    write_private(&token_path, format!("{token}\n").as_bytes()).map_err(|e| {
        DirectoryError::Read {
            path: token_path.display().to_string(),
            reason: e.to_string(),
        }
    })?;
    Ok(path)
}

/// A local cluster's operator credentials in `dir` (`arbiter up`, the test and jepsen
/// harnesses): an existing operator token and tokens file are kept, so running `up` again does
/// not lock the operator out; otherwise a new token is written with a tokens file naming it.
/// Returns the tokens file and the token.
pub fn ensure_operator_credentials(dir: &Path) -> Result<(PathBuf, String), DirectoryError> {
    let tokens_file = dir.join(TOKENS_FILE);
    if let Ok(token) = std::fs::read_to_string(dir.join(OPERATOR_TOKEN_FILE)) {
        if tokens_file.exists() {
            return Ok((tokens_file, token.trim().to_string()));
        }
    }
    let token = super::token::generate();
    let tokens_file = write_operator_credentials(dir, &token)?;
    Ok((tokens_file, token))
}

/// Writes a whole tokens file durably: temp file, fdatasync, rename, directory fsync.
pub fn write_tokens_file(path: &Path, file: &TokensFile) -> Result<(), DirectoryError> {
    let io = |e: std::io::Error| DirectoryError::Read {
        path: path.display().to_string(),
        reason: e.to_string(),
    };
    let text = toml::to_string(file).map_err(|e| DirectoryError::Parse {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    write_private(path, text.as_bytes()).map_err(io)
}

/// Writes a secret-bearing file readable by its owner only, durably (see the module invariant).
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = path.with_extension("tmp");
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    out.write_all(bytes)?;
    out.sync_data()?;
    std::fs::rename(&tmp, path)?;
    // The rename is durable only once the directory entry is.
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::directory::{AuthConfig, Directory};

    #[test]
    fn issued_tokens_are_accepted_after_a_reload_and_stored_only_as_digests() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("tokens.toml");
        let grant = |identity: &str, role, region: Option<&str>| TokenGrant {
            identity: identity.into(),
            role,
            region: region.map(str::to_string),
            vantage: None,
        };
        let operator = issue(&path, &grant("alice", Role::Operator, None)).expect("issue");
        let proxy =
            issue(&path, &grant("proxy-east", Role::Proxy, Some("us-east-1"))).expect("issue");
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(
            !text.contains(&operator) && !text.contains(&proxy),
            "{text}"
        );
        let directory = Directory::load(&AuthConfig {
            tokens_file: Some(path),
            ..AuthConfig::default()
        })
        .expect("loads");
        assert_eq!(
            directory.by_token(&operator).expect("known").identity,
            "alice"
        );
        assert_eq!(directory.by_token(&proxy).expect("known").role, Role::Proxy);
    }
}
