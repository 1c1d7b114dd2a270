//! `arbiter certs init|issue`: a cluster CA and the certificates signed by it, for production
//! (`arbiter up` makes its own for a local cluster). See [`crate::certs`] for what each
//! certificate carries and the README's "Security" section for rotation.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};

use crate::certs::{self, CertFiles, Subject};

#[derive(Subcommand, Debug)]
pub enum CertsCommand {
    /// Create a CA (`ca.pem`, `ca.key`) in --dir; refuses to overwrite one.
    Init(InitArgs),
    /// Issue a node certificate (--node) or a client certificate (--client) signed by the CA.
    Issue(IssueArgs),
}

#[derive(Args, Debug)]
pub struct InitArgs {
    #[arg(long)]
    dir: PathBuf,
    /// The CA's common name.
    #[arg(long, default_value = "arbiter cluster CA")]
    name: String,
}

#[derive(Args, Debug)]
pub struct IssueArgs {
    /// Directory holding the CA (`ca.pem`, `ca.key`).
    #[arg(long)]
    dir: PathBuf,
    /// Where to write the certificate and key [default: --dir].
    #[arg(long)]
    out: Option<PathBuf>,
    /// A node certificate for this node id (DNS SAN arbiter-node-<id>).
    #[arg(long, conflicts_with = "client", required_unless_present = "client")]
    node: Option<u64>,
    /// The node's region (recorded as OU).
    #[arg(long, requires = "node")]
    region: Option<String>,
    /// Host names or IP addresses clients use to reach the node (repeatable).
    #[arg(long = "host", requires = "node")]
    hosts: Vec<String>,
    /// A client certificate with this name (CN, SAN URI arbiter://client/<name>).
    #[arg(long)]
    client: Option<String>,
    /// The client's role (OU): operator, controller, proxy, probe, region, reader.
    #[arg(long, requires = "client")]
    role: Option<String>,
}

pub fn run(command: CertsCommand) -> anyhow::Result<ExitCode> {
    match command {
        CertsCommand::Init(args) => {
            let path = certs::init_ca(&args.dir, &args.name)?;
            println!("CA certificate: {}", path.display());
            println!(
                "CA key:         {} (keep it offline)",
                args.dir.join(certs::CA_KEY).display()
            );
        }
        CertsCommand::Issue(args) => {
            let out = args.out.clone().unwrap_or_else(|| args.dir.clone());
            let (subject, files) = match (args.node, args.client) {
                (Some(id), None) => {
                    if id == 0 {
                        bail!("--node must be at least 1");
                    }
                    let subject = Subject::Node {
                        id,
                        region: args.region.unwrap_or_default(),
                        hosts: args.hosts,
                    };
                    (subject, CertFiles::node(&out, id))
                }
                (None, Some(name)) => {
                    let role = args.role.context("--client needs --role")?;
                    let files = CertFiles::client(&out, &name);
                    (Subject::Client { name, role }, files)
                }
                _ => bail!("give exactly one of --node or --client"),
            };
            certs::issue_to(&args.dir, &subject, &files)?;
            println!("certificate: {}", files.cert.display());
            println!("key:         {}", files.key.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}
