//! `arbiter lease acquire | keepalive | release | show | revoke`: an operator's (or a script's)
//! hands on write leases, through the same SDK the proxies use.
//!
//! Output: a human line per result, or one JSON object with `--output json`. Exit status
//! ([`super::exit`]): 0 when the request took effect, 4 when the arbiter refused it (the
//! refusal names the holder), 5 when no node answered or there was no leader, 3 when the
//! outcome is unknown.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use arbiter_client::{
    ArbiterClient, FencingToken, HolderId, LeaseInfo, LeaseSpec, Refusal, ResourceId,
};
use clap::{Args, Subcommand};
use serde_json::{json, Value};

use super::exit;
use super::output::OutputArgs;
use super::up::{resolve_endpoints, CredentialArgs, Port, DEFAULT_DATA_DIR};

#[derive(Args, Debug)]
pub struct LeaseArgs {
    #[command(subcommand)]
    command: LeaseCommand,
    #[command(flatten)]
    target: Target,
}

/// Where the cluster is, and how to print.
#[derive(Args, Debug)]
struct Target {
    /// gRPC endpoints (host:port), comma-separated. Default: the cluster `arbiter up` started
    /// (its cluster.json), else 127.0.0.1:7001-7003.
    #[arg(long, env = "ARBITER_ENDPOINTS", value_delimiter = ',', global = true)]
    endpoints: Vec<String>,
    /// Data dir of `arbiter up`, to find cluster.json, ca.pem and operator.token.
    #[arg(long, env = "ARBITER_DATA_DIR", default_value = DEFAULT_DATA_DIR, global = true)]
    data_dir: PathBuf,
    #[command(flatten)]
    credentials: CredentialArgs,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Subcommand, Debug)]
enum LeaseCommand {
    /// Acquire a write lease; prints its fencing token.
    Acquire {
        /// The resource the lease guards, e.g. db/orders.
        #[arg(long)]
        resource: String,
        /// Who holds (or asks for) the lease, e.g. proxy-us-east-1.
        #[arg(long)]
        holder: String,
        /// Lease TTL in seconds (fractions allowed, e.g. 1.5).
        #[arg(long, value_parser = parse_ttl)]
        ttl: Duration,
        /// The holder's region (the DR controller fences a failed region by it).
        #[arg(long)]
        region: Option<String>,
    },
    /// Renew a lease once.
    Keepalive(HeldLease),
    /// Give a lease back; the resource is free at once.
    Release(HeldLease),
    /// Show a resource's lease and epoch.
    Show {
        /// The resource the lease guards, e.g. db/orders.
        #[arg(long)]
        resource: String,
    },
    /// Revoke a resource's lease: raises its epoch; new grants wait for the old holder's
    /// deadline.
    Revoke {
        /// The resource the lease guards, e.g. db/orders.
        #[arg(long)]
        resource: String,
        /// Why, for the record.
        #[arg(long)]
        reason: String,
        /// Who revokes, for the record.
        #[arg(long, default_value = "operator")]
        by: String,
    },
}

/// A lease its holder names by token.
#[derive(Args, Debug)]
struct HeldLease {
    /// The resource the lease guards, e.g. db/orders.
    #[arg(long)]
    resource: String,
    /// Who holds the lease, e.g. proxy-us-east-1.
    #[arg(long)]
    holder: String,
    /// The lease's fencing token, as printed by `acquire`.
    #[arg(long)]
    token: u64,
}

impl HeldLease {
    fn parts(self) -> (ResourceId, HolderId, FencingToken) {
        (
            ResourceId::new(self.resource),
            HolderId::new(self.holder),
            FencingToken(self.token),
        )
    }
}

pub(super) fn parse_ttl(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    Duration::try_from_secs_f64(secs)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("ttl must be a positive number of seconds, got {s}"))
}

/// What one subcommand printed, and whether the arbiter acted.
struct Report {
    json: Value,
    /// stdout without `--json` (stderr when refused).
    text: String,
    /// stderr without `--json`, so that stdout stays a bare value for scripts.
    note: Option<String>,
    refused: bool,
}

impl Report {
    fn done(text: String, json: Value) -> Self {
        Report {
            json,
            text,
            note: None,
            refused: false,
        }
    }

    fn refused(refusal: &Refusal) -> Self {
        Report {
            json: json!({ "ok": false, "refusal": refusal_json(refusal) }),
            text: format!("refused: {refusal}"),
            note: None,
            refused: true,
        }
    }
}

pub async fn run(args: LeaseArgs) -> anyhow::Result<ExitCode> {
    let endpoints = endpoints(&args.target);
    let options = args
        .target
        .credentials
        .resolve(&args.target.data_dir)
        .client_options()?;
    let client = ArbiterClient::connect(endpoints.clone(), options)
        .await
        .map_err(exit::sdk)
        .with_context(|| format!("connecting to {}", endpoints.join(",")))?;
    let report = match args.command {
        LeaseCommand::Acquire {
            resource,
            holder,
            ttl,
            region,
        } => {
            let mut spec = LeaseSpec::new(resource, holder, ttl);
            if let Some(region) = region {
                spec = spec.in_region(region);
            }
            match client.acquire(&spec).await.map_err(exit::sdk)? {
                Ok(grant) => Report {
                    note: Some(format!(
                        "granted {} to {} for {} ms; fencing token:",
                        grant.resource,
                        grant.holder,
                        millis(grant.ttl)
                    )),
                    ..Report::done(
                        grant.token.to_string(),
                        json!({
                            "ok": true,
                            "resource": grant.resource.as_str(),
                            "holder": grant.holder.as_str(),
                            "token": grant.token.0,
                            "ttl_ms": millis(grant.ttl),
                        }),
                    )
                },
                Err(refusal) => Report::refused(&refusal),
            }
        }
        LeaseCommand::Keepalive(lease) => {
            let (resource, holder, token) = lease.parts();
            match client
                .keep_alive(&resource, &holder, token)
                .await
                .map_err(exit::sdk)?
            {
                Ok(renewal) => Report::done(
                    format!("renewed: token {token}, ttl {} ms", millis(renewal.ttl)),
                    json!({ "ok": true, "token": token.0, "ttl_ms": millis(renewal.ttl) }),
                ),
                Err(refusal) => Report::refused(&refusal),
            }
        }
        LeaseCommand::Release(lease) => {
            let (resource, holder, token) = lease.parts();
            match client
                .release(&resource, &holder, token)
                .await
                .map_err(exit::sdk)?
            {
                Ok(()) => Report::done(
                    format!("released {resource} (token {token})"),
                    json!({ "ok": true }),
                ),
                Err(refusal) => Report::refused(&refusal),
            }
        }
        LeaseCommand::Show { resource } => {
            let info = client
                .get(&ResourceId::new(resource))
                .await
                .map_err(exit::sdk)?;
            Report::done(show_text(&info), show_json(&info))
        }
        LeaseCommand::Revoke {
            resource,
            reason,
            by,
        } => {
            let resource = ResourceId::new(resource);
            match client
                .revoke(&resource, &reason, &by)
                .await
                .map_err(exit::sdk)?
            {
                Ok(r) => Report::done(
                    format!(
                        "revoked {resource}: {} (token {}) is fenced; new epoch {}",
                        r.displaced_holder, r.displaced_token, r.epoch
                    ),
                    json!({
                        "ok": true,
                        "epoch": r.epoch.0,
                        "displaced_holder": r.displaced_holder.as_str(),
                        "displaced_token": r.displaced_token.0,
                    }),
                ),
                Err(refusal) => Report::refused(&refusal),
            }
        }
    };
    if args.target.output.is_json() {
        println!("{}", serde_json::to_string_pretty(&report.json)?);
    } else if report.refused {
        eprintln!("{}", report.text);
    } else {
        if let Some(note) = &report.note {
            eprintln!("{note}");
        }
        println!("{}", report.text);
    }
    Ok(if report.refused {
        ExitCode::from(exit::REFUSED)
    } else {
        ExitCode::SUCCESS
    })
}

fn endpoints(target: &Target) -> Vec<String> {
    resolve_endpoints(&target.endpoints, &target.data_dir, Port::Grpc)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn refusal_json(refusal: &Refusal) -> Value {
    let mut value = match refusal {
        Refusal::HeldBy {
            holder,
            token,
            ttl,
            may_hold_for,
        } => json!({
            "kind": "held_by",
            "holder": holder.as_str(),
            "token": token.0,
            "ttl_ms": millis(*ttl),
            "may_hold_for_ms": millis(*may_hold_for),
        }),
        Refusal::Draining {
            holder,
            token,
            may_hold_for,
        } => json!({
            "kind": "draining",
            "holder": holder.as_str(),
            "token": token.0,
            "may_hold_for_ms": millis(*may_hold_for),
        }),
        Refusal::StaleToken { presented, current } => json!({
            "kind": "stale_token",
            "presented": presented.0,
            "current": current.0,
        }),
        Refusal::NotHeld => json!({ "kind": "not_held" }),
        Refusal::NotHolder { holder } => json!({
            "kind": "not_holder",
            "holder": holder.as_str(),
        }),
        Refusal::RegionFenced { region, reason } => json!({
            "kind": "region_fenced",
            "region": region.as_str(),
            "reason": reason,
        }),
    };
    value["message"] = Value::String(refusal.to_string());
    value
}

fn show_text(info: &LeaseInfo) -> String {
    match &info.lease {
        None => format!("{}: {} (epoch {})", info.resource, info.state, info.epoch),
        Some(lease) => format!(
            "{}: {} by {} (token {}, ttl {} ms{}), epoch {}",
            info.resource,
            info.state,
            lease.holder,
            lease.token,
            millis(lease.ttl),
            lease
                .region
                .as_ref()
                .map(|r| format!(", region {r}"))
                .unwrap_or_default(),
            info.epoch
        ),
    }
}

fn show_json(info: &LeaseInfo) -> Value {
    let lease = info.lease.as_ref();
    json!({
        "resource": info.resource.as_str(),
        "state": info.state.to_string(),
        "holder": lease.map(|l| l.holder.as_str()),
        "token": lease.map(|l| l.token.0),
        "ttl_ms": lease.map(|l| millis(l.ttl)),
        "region": lease.and_then(|l| l.region.as_ref().map(|r| r.as_str())),
        "epoch": info.epoch.0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_takes_positive_seconds() {
        assert_eq!(parse_ttl("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_ttl("0").is_err());
        assert!(parse_ttl("-1").is_err());
        assert!(parse_ttl("soon").is_err());
    }

    #[test]
    fn a_refusal_names_the_holder_in_both_outputs() {
        let refusal = Refusal::HeldBy {
            holder: HolderId::new("proxy-east"),
            token: FencingToken(4096),
            ttl: Duration::from_secs(5),
            may_hold_for: Duration::from_millis(4200),
        };
        let report = Report::refused(&refusal);
        assert!(report.refused);
        assert!(report.text.contains("proxy-east"));
        assert_eq!(report.json["refusal"]["holder"], "proxy-east");
        assert_eq!(report.json["refusal"]["may_hold_for_ms"], 4200);
    }
}
