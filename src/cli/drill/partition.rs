//! A kernel-level cut between the drill's us-east-1 and the rest of the world, with nftables on
//! loopback: the region's agent runs under a group id of its own, and an `output` rule drops
//! every TCP segment its sockets send to the arbiter's ports (so it can neither renew its lease
//! nor learn that it lost it); with `whole_region`, probes also lose the region's gateway.
//!
//! Invariant: the table is named after this process and deleted on drop; nothing else in the
//! ruleset is touched.

use std::io::Write;
use std::process::{Command, Stdio};

pub struct Partition {
    table: String,
}

impl Partition {
    /// Installs the cut. `isolated_gid`: the group the region's agent runs under;
    /// `arbiter_ports`: the nodes' gRPC and HTTP ports; `gateway_port`: the region's gateway,
    /// cut off too when the whole region is partitioned.
    pub fn apply(
        isolated_gid: u32,
        arbiter_ports: &[u16],
        gateway_port: Option<u16>,
    ) -> Result<Partition, String> {
        let table = format!("arbiter_drill_{}", std::process::id());
        let ports = |ports: &[u16]| {
            ports
                .iter()
                .map(u16::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut rules = format!(
            "meta skgid {isolated_gid} tcp dport {{ {} }} drop\n",
            ports(arbiter_ports)
        );
        if let Some(port) = gateway_port {
            rules.push_str(&format!("tcp dport {port} drop\n"));
        }
        let script = format!(
            "table inet {table} {{\n chain output {{\n  type filter hook output priority 0; \
             policy accept;\n  {rules} }}\n}}\n"
        );
        run_nft(&["-f", "-"], Some(&script))?;
        Ok(Partition { table })
    }
}

impl Drop for Partition {
    fn drop(&mut self) {
        if let Err(e) = run_nft(&["delete", "table", "inet", &self.table], None) {
            tracing::warn!(table = %self.table, error = %e, "cannot remove the drill's nftables table");
        }
    }
}

fn run_nft(args: &[&str], stdin: Option<&str>) -> Result<(), String> {
    let mut child = Command::new("nft")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run nft (Debian `nftables`; root needed): {e}"))?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes())
            .map_err(|e| format!("nft: {e}"))?;
    }
    let output = child.wait_with_output().map_err(|e| format!("nft: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "nft {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// Whether the partition scenarios can run here: root, and nft answers.
pub fn available() -> Result<(), String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(
            "the partition scenarios need root (nftables rules, a group id for the \
                    isolated agent)"
                .into(),
        );
    }
    run_nft(&["list", "tables"], None)
}
