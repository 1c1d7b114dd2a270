//! The example deployment in `deploy/three-region/` is one this build accepts. Each node file
//! loads the way `arbiter serve --config` loads it (`RawNodeConfig::from_file`, then
//! `validate`), with TLS on, its own node id and region, and the same cluster, auth and DR plan
//! as the other two. The certificate and token commands of its README, run as written, make the
//! files the configs name, and a node loads them: the TLS configurations build, each node
//! certificate chains to the CA and is valid for the host clients dial, and the tokens file
//! with the inline identities authenticates. The configs listen on the ports `deploy/Dockerfile`
//! exposes, and its builder's Rust is at least the crate's `rust-version`. Negative controls:
//! mutated copies of a config are refused, and a node certificate does not pass for another
//! node's host.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use arbiter::auth::Auth;
use arbiter::config::{ConfigError, NodeConfig, PeerConfig, Profile, RawNodeConfig};
use arbiter::dr::config::DrConfigError;
use arbiter::tls::{NodeTls, TlsPaths};
use rustls::client::danger::ServerCertVerifier;
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

/// The three nodes: id, region (also the file name).
const NODES: [(u64, &str); 3] = [(1, "us-east-1"), (2, "us-west-2"), (3, "eu-central-1")];

fn three_region_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/three-region")
}

fn config_path(region: &str) -> PathBuf {
    three_region_dir().join(format!("{region}.toml"))
}

/// What `arbiter serve --config PATH` does with the file before it starts anything.
fn load(path: &Path) -> Result<NodeConfig, ConfigError> {
    RawNodeConfig::from_file(path)?.validate()
}

fn load_node(region: &str) -> NodeConfig {
    let path = config_path(region);
    load(&path).unwrap_or_else(|e| panic!("{} is refused: {e}", path.display()))
}

/// The host of a `host:port` address.
fn host(addr: &str) -> &str {
    addr.rsplit_once(':').map(|(h, _)| h).unwrap_or(addr)
}

fn repo_file(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).expect(path)
}

/// The rest of the first line of `text` that starts with `prefix`.
fn line_after<'a>(text: &'a str, prefix: &str) -> &'a str {
    text.lines()
        .find_map(|l| l.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("a line starting {prefix:?}"))
}

/// The ports `deploy/Dockerfile` EXPOSEs.
fn dockerfile_ports() -> Vec<u16> {
    line_after(&repo_file("deploy/Dockerfile"), "EXPOSE ")
        .split_whitespace()
        .map(|p| p.parse().expect("a numeric port"))
        .collect()
}

/// `1.88` → (1, 88).
fn version(text: &str) -> (u32, u32) {
    let mut parts = text.trim().trim_matches('"').split('.');
    let mut next = || {
        parts
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("a version, got {text:?}"))
    };
    (next(), next())
}

#[test]
fn the_image_builds_with_a_new_enough_rust_and_runs_as_non_root() {
    let dockerfile = repo_file("deploy/Dockerfile");
    let builder = version(line_after(&dockerfile, "ARG RUST_VERSION="));
    let needed = version(line_after(&repo_file("Cargo.toml"), "rust-version = "));
    assert!(
        builder >= needed,
        "the builder's Rust {builder:?} is older than rust-version {needed:?}"
    );
    let user = line_after(&dockerfile, "USER ");
    let uid: u32 = user
        .split(':')
        .next()
        .and_then(|u| u.parse().ok())
        .unwrap_or_else(|| panic!("USER {user} is not numeric"));
    assert_ne!(uid, 0, "the image runs as root");
}

fn port(on: &arbiter::config::ListenOn) -> u16 {
    match on {
        arbiter::config::ListenOn::Address(addr) => addr.port(),
        other => panic!("a deploy config listens on an address, not {other}"),
    }
}

#[test]
fn every_region_file_is_accepted_with_tls_on() {
    let exposed = dockerfile_ports();
    for (id, region) in NODES {
        let config = load_node(region);
        assert_eq!(config.node_id, id, "{region}.toml");
        assert_eq!(config.region, region);
        assert_eq!(config.profile, Profile::Wan, "{region}: the WAN timing");
        assert_eq!(
            config.data_dir,
            Path::new("/var/lib/arbiter"),
            "StateDirectory/VOLUME"
        );
        assert!(
            config.bootstrap,
            "{region}: the first start creates the cluster"
        );
        assert!(!config.insecure);

        let tls = config.tls.as_ref().expect("TLS on");
        assert_eq!(tls.ca, Path::new("/etc/arbiter/tls/ca.pem"));
        assert_eq!(
            tls.cert,
            PathBuf::from(format!("/etc/arbiter/tls/node-{id}.pem"))
        );
        assert_eq!(
            tls.key,
            PathBuf::from(format!("/etc/arbiter/tls/node-{id}.key"))
        );

        let advertised = [
            &config.grpc_advertise,
            &config.http_advertise,
            &config.peer_advertise,
        ];
        for addr in advertised {
            let addr = addr.as_deref().expect("every address advertised");
            assert_eq!(
                host(addr),
                format!("arbiter-{id}.{region}.arbiter.internal")
            );
        }
        let mut ports = vec![
            port(&config.grpc_listen),
            port(&config.http_listen),
            port(&config.peer_listen),
        ];
        ports.sort_unstable();
        let mut exposed = exposed.clone();
        exposed.sort_unstable();
        assert_eq!(ports, exposed, "{region}: the ports the Dockerfile EXPOSEs");
    }
}

#[test]
fn the_three_files_describe_one_cluster() {
    // Each node as the others must list it: its own advertised addresses.
    let members: BTreeMap<u64, PeerConfig> = NODES
        .iter()
        .map(|&(id, region)| {
            let c = load_node(region);
            let member = PeerConfig {
                id,
                region: region.to_string(),
                grpc: c.grpc_advertise.clone().expect("grpc_advertise"),
                http: c.http_advertise.clone().expect("http_advertise"),
                peer: c.peer_advertise.clone(),
            };
            (id, member)
        })
        .collect();
    let raw: Vec<RawNodeConfig> = NODES
        .iter()
        .map(|(_, region)| RawNodeConfig::from_file(&config_path(region)).expect("parses"))
        .collect();
    let first = &raw[0];
    for (&(id, region), raw) in NODES.iter().zip(&raw) {
        let expected: Vec<&PeerConfig> = members.values().filter(|m| m.id != id).collect();
        let listed: Vec<&PeerConfig> = raw.peers.iter().collect();
        assert_eq!(
            listed, expected,
            "{region}.toml: [[peers]] are the other two nodes"
        );
        // The controller runs on whichever node leads: one plan, one set of identities.
        assert_eq!(raw.dr, first.dr, "{region}: [dr]");
        assert_eq!(raw.raft, first.raft, "{region}: [raft]");
        assert_eq!(raw.auth, first.auth, "{region}: [auth]");
    }
    let config = load_node("us-east-1");
    assert_eq!(config.dr.primary.as_str(), "us-east-1");
    assert_eq!(
        config.placement.preferred.as_ref().map(|r| r.as_str()),
        Some("eu-central-1"),
        "the leader lives outside production"
    );
    let regions: Vec<&str> = config.dr.regions.iter().map(|r| r.as_str()).collect();
    assert_eq!(regions, NODES.map(|(_, r)| r));
}

/// Writes `text` as a config file in `dir` and loads it as `serve --config` would.
fn load_text(dir: &Path, text: &str) -> Result<NodeConfig, ConfigError> {
    let path = dir.join("node.toml");
    std::fs::write(&path, text).expect("write the mutated config");
    load(&path)
}

/// `text` with the one occurrence of `from` replaced: a mutation that silently matched
/// nothing would make its negative control pass for the wrong reason.
fn mutate(text: &str, from: &str, to: &str) -> String {
    assert_eq!(text.matches(from).count(), 1, "mutation anchor {from:?}");
    text.replacen(from, to, 1)
}

#[test]
fn mutated_copies_are_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let original = std::fs::read_to_string(config_path("us-east-1")).expect("read");
    // Control for the controls: the unmutated text loads from the temp dir too.
    load_text(dir.path(), &original).expect("the original loads");

    let no_key = mutate(&original, "key = \"/etc/arbiter/tls/node-1.key\"\n", "");
    assert!(
        matches!(load_text(dir.path(), &no_key), Err(ConfigError::Parse { ref reason, .. }) if reason.contains("key")),
        "[tls] without a key path"
    );

    let tls_start = original.find("\n[tls]").expect("[tls]");
    let tls_end = original.find("\n[auth]\n").expect("[auth]");
    let no_tls = format!("{}{}", &original[..tls_start], &original[tls_end..]);
    assert!(
        matches!(
            load_text(dir.path(), &no_tls),
            Err(ConfigError::PlaintextOffLoopback { .. })
        ),
        "without [tls] the 0.0.0.0 listeners are plain TCP off loopback"
    );

    let unknown_region = mutate(
        &original,
        "primary = \"us-east-1\"",
        "primary = \"ap-south-1\"",
    );
    assert_eq!(
        load_text(dir.path(), &unknown_region).unwrap_err(),
        ConfigError::Dr(DrConfigError::UnknownRegion("ap-south-1".into()))
    );

    let typo = mutate(&original, "profile = \"wan\"", "profil = \"wan\"");
    assert!(
        matches!(load_text(dir.path(), &typo), Err(ConfigError::Parse { .. })),
        "an unknown key is refused, not ignored"
    );

    // Why the README comments `bootstrap` out before `--rejoin`.
    let rejoin = mutate(
        &original,
        "bootstrap = true\n",
        "bootstrap = true\nrejoin = true\n",
    );
    assert_eq!(
        load_text(dir.path(), &rejoin).unwrap_err(),
        ConfigError::BootstrapAndRejoin
    );
}

/// The first ```sh block of the README's section `heading`.
fn readme_script(heading: &str) -> String {
    let readme = std::fs::read_to_string(three_region_dir().join("README.md")).expect("README");
    let section = &readme[readme.find(heading).expect("section")..];
    let start = section.find("```sh\n").expect("a sh block") + "```sh\n".len();
    let end = start + section[start..].find("```").expect("block end");
    section[start..end].to_string()
}

/// Runs the README's certificate and token commands in `dir`, with this build as `arbiter`.
fn run_readme_certificates(dir: &Path) {
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_arbiter"))
        .parent()
        .expect("bin dir");
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let script = format!(
        "set -euo pipefail\numask 077\n{}",
        readme_script("## 1. Certificates and tokens")
    );
    let out = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(dir)
        .env("PATH", path)
        .output()
        .expect("bash runs");
    assert!(
        out.status.success(),
        "the README's commands failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Where the README's table says a file on the node comes from, in the admin machine's
/// working dir `made`.
fn made_file(made: &Path, on_node: &Path) -> PathBuf {
    let name = on_node
        .file_name()
        .and_then(|n| n.to_str())
        .expect("file name");
    match name {
        "ca.pem" => made.join("ca/ca.pem"),
        "tokens.toml" => made.join("out/tokens.toml"),
        node => {
            let stem = node.split('.').next().expect("stem");
            made.join("out").join(stem).join(node)
        }
    }
}

/// A client's verdict on `cert` as the server `name`, trusting `ca`.
fn verify_server(ca: &Path, cert: &Path, name: &str) -> Result<(), rustls::Error> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).expect("CA PEM") {
        roots.add(c.expect("CA certificate")).expect("a root");
    }
    let verifier = WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::new(rustls::crypto::ring::default_provider()),
    )
    .build()
    .expect("verifier");
    let leaf = CertificateDer::from_pem_file(cert).expect("certificate PEM");
    let name = ServerName::try_from(name.to_string()).expect("server name");
    verifier
        .verify_server_cert(&leaf, &[], &name, &[], UnixTime::now())
        .map(|_| ())
}

#[test]
fn readme_certificates_and_tokens_are_the_files_the_configs_name() {
    let made = tempfile::tempdir().expect("temp dir");
    run_readme_certificates(made.path());

    for (id, region) in NODES {
        let config = load_node(region);
        let tls = config.tls.as_ref().expect("TLS on");
        let paths = TlsPaths {
            ca: made_file(made.path(), &tls.ca),
            cert: made_file(made.path(), &tls.cert),
            key: made_file(made.path(), &tls.key),
        };
        if let Err(e) = NodeTls::load(paths.clone()) {
            panic!("{region}: the node's TLS files do not load: {e}");
        }
        // What peers check, and what clients dialing the advertised host check.
        let client_host = host(config.grpc_advertise.as_deref().expect("advertised"));
        for name in [format!("arbiter-node-{id}"), client_host.to_string()] {
            verify_server(&paths.ca, &paths.cert, &name)
                .unwrap_or_else(|e| panic!("{region}: certificate not valid for {name}: {e}"));
        }
        // Negative control: this node's certificate does not pass for the next node's host.
        let (other_id, other_region) = NODES[(id as usize) % NODES.len()];
        let other_host = format!("arbiter-{other_id}.{other_region}.arbiter.internal");
        assert!(
            verify_server(&paths.ca, &paths.cert, &other_host).is_err(),
            "{region}: node {id}'s certificate passed for {other_host}"
        );

        let mut auth = config.auth.clone();
        auth.tokens_file = auth.tokens_file.map(|f| made_file(made.path(), &f));
        if let Err(e) = Auth::new(auth, false) {
            panic!("{region}: the node refuses its identities: {e}");
        }
    }

    // The inline identity is the operator certificate the README issues.
    let config = load_node("us-east-1");
    let operator_pem = made.path().join("out/operator/client-operator.pem");
    let operator = CertificateDer::from_pem_file(&operator_pem).expect("operator certificate");
    let subject = arbiter::auth::certificate::subject(operator.as_ref()).expect("subject");
    assert!(
        config
            .auth
            .identities
            .iter()
            .any(|i| i.subject == subject && i.role == arbiter::auth::Role::Operator),
        "{subject} is not an operator identity"
    );

    // Every vantage point the controller waits for has a probe token.
    let tokens: toml::Table = toml::from_str(
        &std::fs::read_to_string(made.path().join("out/tokens.toml")).expect("tokens file"),
    )
    .expect("tokens file parses");
    let vantages: Vec<&str> = tokens["tokens"]
        .as_array()
        .expect("[[tokens]]")
        .iter()
        .filter(|t| t["role"].as_str() == Some("probe"))
        .filter_map(|t| t.get("vantage").and_then(|v| v.as_str()))
        .collect();
    for vantage in &config.dr.consensus.vantages {
        assert!(
            vantages.contains(&vantage.as_str()),
            "no probe token for vantage {vantage:?}"
        );
    }
}
