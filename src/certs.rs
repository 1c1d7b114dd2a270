//! Certificates for a cluster: a CA, node certificates and client certificates (rcgen); a dev
//! cluster's operator token comes with them ([`crate::auth::issue`]). Used by
//! `arbiter certs init|issue`, by `arbiter up` (a dev CA in its data dir) and by the test and
//! jepsen harnesses, so every cluster is made the same way.
//!
//! Identities (what [`crate::tls`] checks):
//! - a **node** certificate carries the DNS SAN `arbiter-node-<id>` ([`node_server_name`]); the
//!   peer port admits only client certificates with such a name, and peers verify each other's
//!   server certificate against it, so a proxy between nodes changes nothing;
//! - a **client** certificate carries CN = its name, OU = its role and the SAN URI
//!   `arbiter://client/<name>`, and never an `arbiter-node-*` name.
//!
//! Invariant: private keys are written with mode 0600 and fsynced (file and
//! directory) before this module reports success; an existing CA is never overwritten.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

use crate::auth::issue::{OPERATOR_TOKEN_FILE, TOKENS_FILE};
use crate::raft_types::NodeId;
use crate::tls::{ClientCredentials, TlsPaths};

/// File names inside a certificate directory.
pub const CA_CERT: &str = "ca.pem";
pub const CA_KEY: &str = "ca.key";

/// The DNS name every node certificate carries and peers verify: stable across proxies and
/// address changes, and distinct per node so one node cannot pose as another.
pub fn node_server_name(id: NodeId) -> String {
    format!("arbiter-node-{id}")
}

/// The identity a client certificate named `name` carries: its SAN URI, which is what the auth
/// layer looks up in `[[identities]]`.
pub fn client_subject(name: &str) -> String {
    format!("arbiter://client/{name}")
}

/// The node id a DNS SAN names, if it is a node identity (`arbiter-node-<id>`, id ≥ 1).
pub fn node_id_of_name(name: &str) -> Option<NodeId> {
    let id: NodeId = name.strip_prefix("arbiter-node-")?.parse().ok()?;
    (id >= 1).then_some(id)
}

/// Where a node's or client's files are: `<dir>/<stem>.pem` and `<dir>/<stem>.key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl CertFiles {
    pub fn in_dir(dir: &Path, stem: &str) -> Self {
        CertFiles {
            cert: dir.join(format!("{stem}.pem")),
            key: dir.join(format!("{stem}.key")),
        }
    }

    /// A node's files: `node-<id>.pem`, `node-<id>.key`.
    pub fn node(dir: &Path, id: NodeId) -> Self {
        Self::in_dir(dir, &format!("node-{id}"))
    }

    /// A client's files: `client-<name>.pem`, `client-<name>.key`.
    pub fn client(dir: &Path, name: &str) -> Self {
        Self::in_dir(dir, &format!("client-{name}"))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} already exists; refusing to overwrite a CA")]
    Exists { path: PathBuf },
    #[error("certificate generation: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("`{value}` is not a valid {what}")]
    BadName { what: &'static str, value: String },
    #[error("operator token: {0}")]
    Token(#[from] crate::auth::DirectoryError),
}

/// What a certificate is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// A node: serves all three ports and dials its peers with this certificate.
    Node {
        id: NodeId,
        region: String,
        /// Host names and IP addresses clients use to reach it (besides `localhost`/127.0.0.1).
        hosts: Vec<String>,
    },
    /// A client (operator, proxy, probe, ...): CN = name, OU = role.
    Client { name: String, role: String },
}

/// A generated certificate and key, PEM-encoded.
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

/// Creates a CA in `dir` (`ca.pem`, `ca.key`); refuses if one is already there.
pub fn init_ca(dir: &Path, name: &str) -> Result<PathBuf, CertError> {
    let cert_path = dir.join(CA_CERT);
    if cert_path.exists() {
        return Err(CertError::Exists { path: cert_path });
    }
    let (cert_pem, key_pem) = new_ca(name)?;
    create_dir(dir)?;
    write_private(&dir.join(CA_KEY), key_pem.as_bytes())?;
    write_public(&cert_path, cert_pem.as_bytes())?;
    Ok(cert_path)
}

/// A fresh self-signed CA certificate and its key (PEM), without touching the disk.
pub fn new_ca(name: &str) -> Result<(String, String), CertError> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, name.to_string());
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(3650);
    let cert = params.self_signed(&key)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// Issues a certificate for `subject`, signed by the CA in `ca_dir`.
pub fn issue(ca_dir: &Path, subject: &Subject) -> Result<Issued, CertError> {
    let ca_pem = read(&ca_dir.join(CA_CERT))?;
    let ca_key = read(&ca_dir.join(CA_KEY))?;
    issue_with(&ca_pem, &ca_key, subject)
}

/// Issues a certificate for `subject`, signed by the CA given as PEM text.
pub fn issue_with(ca_pem: &str, ca_key_pem: &str, subject: &Subject) -> Result<Issued, CertError> {
    let ca_key = KeyPair::from_pem(ca_key_pem)?;
    let issuer = Issuer::from_ca_cert_pem(ca_pem, ca_key)?;
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name = DistinguishedName::new();
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.use_authority_key_identifier_extension = true;
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(825);
    match subject {
        Subject::Node { id, region, hosts } => {
            let server_name = node_server_name(*id);
            params
                .distinguished_name
                .push(DnType::CommonName, server_name.clone());
            params
                .distinguished_name
                .push(DnType::OrganizationalUnitName, region.clone());
            // Server and client auth: a node serves its ports and dials its peers with it.
            params.extended_key_usages = vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ];
            let mut names = vec![server_name, "localhost".to_string(), "127.0.0.1".into()];
            names.extend(hosts.iter().cloned());
            names.dedup();
            params.subject_alt_names = names.iter().map(|n| san(n)).collect::<Result<_, _>>()?;
            params.subject_alt_names.push(SanType::URI(ia5(
                "node URI",
                &format!("arbiter://node/{id}"),
            )?));
        }
        Subject::Client { name, role } => {
            if name.is_empty() || node_id_of_name(name).is_some() || name.contains('/') {
                return Err(CertError::BadName {
                    what: "client name",
                    value: name.clone(),
                });
            }
            params
                .distinguished_name
                .push(DnType::CommonName, name.clone());
            params
                .distinguished_name
                .push(DnType::OrganizationalUnitName, role.clone());
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
            params.subject_alt_names =
                vec![SanType::URI(ia5("client URI", &client_subject(name))?)];
        }
    }
    let cert = params.signed_by(&key, &issuer)?;
    Ok(Issued {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// Issues a certificate for `subject` and writes it to `files` (key 0600).
pub fn issue_to(ca_dir: &Path, subject: &Subject, files: &CertFiles) -> Result<(), CertError> {
    let issued = issue(ca_dir, subject)?;
    write_issued(&issued, files)
}

pub fn write_issued(issued: &Issued, files: &CertFiles) -> Result<(), CertError> {
    if let Some(dir) = files.cert.parent() {
        create_dir(dir)?;
    }
    write_private(&files.key, issued.key_pem.as_bytes())?;
    write_public(&files.cert, issued.cert_pem.as_bytes())
}

/// A local cluster's certificate directory, as `arbiter up` and the harnesses lay it out:
/// `ca.pem`, `ca.key`, `node-<id>.pem|key`, `client-operator.pem|key`, `operator.token` and
/// `tokens.toml`, all at the top of `dir`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevCerts {
    pub dir: PathBuf,
}

impl DevCerts {
    /// Creates whatever is missing (CA, node certificates, operator certificate and token);
    /// keeps what exists, so a second `up` on the same data dir resumes with the same CA.
    pub fn ensure(dir: &Path, nodes: &[(NodeId, String)]) -> Result<DevCerts, CertError> {
        if !dir.join(CA_CERT).exists() {
            init_ca(dir, "arbiter local CA")?;
        }
        for (id, region) in nodes {
            let files = CertFiles::node(dir, *id);
            if !files.cert.exists() {
                let node = Subject::Node {
                    id: *id,
                    region: region.clone(),
                    hosts: Vec::new(),
                };
                issue_to(dir, &node, &files)?;
            }
        }
        let operator = CertFiles::client(dir, "operator");
        if !operator.cert.exists() {
            let subject = Subject::Client {
                name: "operator".into(),
                role: "operator".into(),
            };
            issue_to(dir, &subject, &operator)?;
        }
        crate::auth::issue::ensure_operator_credentials(dir)?;
        Ok(DevCerts {
            dir: dir.to_path_buf(),
        })
    }

    /// The `[tls]` files of node `id`.
    pub fn node_tls(&self, id: NodeId) -> TlsPaths {
        let files = CertFiles::node(&self.dir, id);
        TlsPaths {
            ca: self.dir.join(CA_CERT),
            cert: files.cert,
            key: files.key,
        }
    }

    /// The tokens file the nodes of this cluster load (`--auth-tokens-file`).
    pub fn tokens_file(&self) -> PathBuf {
        self.dir.join(TOKENS_FILE)
    }

    /// The operator's credentials: the CA and the bearer token.
    pub fn operator(&self) -> ClientCredentials {
        ClientCredentials {
            ca: Some(self.dir.join(CA_CERT)),
            identity: None,
            token_file: Some(self.dir.join(OPERATOR_TOKEN_FILE)),
            token: None,
        }
    }

    /// The operator's client certificate (CN operator, OU operator) instead of the token.
    pub fn operator_certificate(&self) -> ClientCredentials {
        let files = CertFiles::client(&self.dir, "operator");
        ClientCredentials {
            ca: Some(self.dir.join(CA_CERT)),
            identity: Some((files.cert, files.key)),
            token_file: None,
            token: None,
        }
    }
}

fn san(name: &str) -> Result<SanType, CertError> {
    match name.parse::<std::net::IpAddr>() {
        Ok(ip) => Ok(SanType::IpAddress(ip)),
        Err(_) => Ok(SanType::DnsName(ia5("host name", name)?)),
    }
}

fn ia5(what: &'static str, value: &str) -> Result<rcgen::string::Ia5String, CertError> {
    rcgen::string::Ia5String::try_from(value).map_err(|_| CertError::BadName {
        what,
        value: value.to_string(),
    })
}

fn read(path: &Path) -> Result<String, CertError> {
    std::fs::read_to_string(path).map_err(|source| CertError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn create_dir(dir: &Path) -> Result<(), CertError> {
    std::fs::create_dir_all(dir).map_err(|source| CertError::Io {
        path: dir.to_path_buf(),
        source,
    })
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), CertError> {
    write_synced(path, bytes, 0o600)
}

fn write_public(path: &Path, bytes: &[u8]) -> Result<(), CertError> {
    write_synced(path, bytes, 0o644)
}

/// Writes to a temp file with `mode`, fsyncs it, renames it over `path` and fsyncs the
/// directory: a crash leaves the old file or the new one, never half of a key.
fn write_synced(path: &Path, bytes: &[u8], mode: u32) -> Result<(), CertError> {
    let io = |source| CertError::Io {
        path: path.to_path_buf(),
        source,
    };
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io)?;
    file.write_all(bytes).map_err(io)?;
    file.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)?;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    std::fs::File::open(dir.unwrap_or(Path::new(".")))
        .and_then(|d| d.sync_all())
        .map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_names_round_trip_and_client_names_are_not_nodes() {
        assert_eq!(node_id_of_name(&node_server_name(3)), Some(3));
        assert_eq!(node_id_of_name("arbiter-node-0"), None);
        assert_eq!(node_id_of_name("arbiter-node-x"), None);
        assert_eq!(node_id_of_name("localhost"), None);
        let dir = tempfile::tempdir().expect("tempdir");
        init_ca(dir.path(), "test CA").expect("ca");
        let posing = Subject::Client {
            name: "arbiter-node-1".into(),
            role: "operator".into(),
        };
        assert!(matches!(
            issue(dir.path(), &posing),
            Err(CertError::BadName { .. })
        ));
    }

    #[test]
    fn a_ca_is_never_overwritten_and_keys_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        init_ca(dir.path(), "test CA").expect("first init");
        assert!(matches!(
            init_ca(dir.path(), "test CA"),
            Err(CertError::Exists { .. })
        ));
        let mode = std::fs::metadata(dir.path().join(CA_KEY))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "the CA key is private");
    }
}
