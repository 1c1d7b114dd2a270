//! `arbiter failover | failback | regions | tenants | events | move-leader | plan`: the DR operator commands, over
//! the nodes' HTTP API.
//!
//! Every command goes through the shared leader-following [`ApiClient`]: it tries the endpoints
//! in turn, follows a non-leader's `leaderHttpAddr` and waits out an election, so any node's
//! address will do. With `--output json` the node's JSON answer is printed (errors too);
//! otherwise a table. Exit codes as every command ([`super::exit`]): 4 refused, 5 no node or
//! no leader, 3 outcome unknown.
//!
//! `failover` and `failback` ask for confirmation on a terminal (`--yes` skips it; without a
//! terminal `--yes` is required), and with `--wait` follow the failover log or the traffic task
//! live until it finishes.

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::{json, Value};

use super::exit::Failure;
use super::output::{OutputArgs, Table};
use super::up::{ClusterArgs, Port};
use crate::api_client::{Answer, ApiClient, Patience, Retry};

/// Each request's own deadline.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long to keep looking for a leader (e.g. through an election) before giving up.
const LEADER_SEARCH: Duration = Duration::from_secs(10);
/// How often `--wait` looks at the failover or task again.
const WAIT_POLL: Duration = Duration::from_millis(500);

#[derive(Subcommand, Debug)]
pub enum DrCommand {
    /// Fail a region over now (operator override, recorded as MANUAL_OVERRIDE).
    Failover(FailoverArgs),
    /// Move traffic and tenants back to a recovered region (refused, with the reason, until
    /// its cooldown passed and its checkpoint caught up).
    Failback(FailbackArgs),
    /// Show each region's health, hysteresis timestamps and traffic share.
    Regions(Target),
    /// Show the tenant routing table.
    Tenants(TenantsArgs),
    /// Show failover events, newest first, with their timelines.
    Events(EventsArgs),
    /// Move Raft leadership (and with it the DR controller) to a node or region now; refused
    /// during a failover. Automatic placement does this for the preferred region on its own.
    MoveLeader(MoveLeaderArgs),
    /// The seed's capacity model for this cluster: replication bandwidth, transactions in
    /// flight at failure, DNS-cached clients, predicted RTO by component (live, or what-if).
    Plan(super::plan::PlanArgs),
}

#[derive(Args, Debug)]
pub struct MoveLeaderArgs {
    /// The region to move leadership to (its voter).
    #[arg(long, conflicts_with = "node", required_unless_present = "node")]
    region: Option<String>,
    /// The node to move leadership to.
    #[arg(long)]
    node: Option<u64>,
    /// Move even while a failover is in progress (the new leader resumes it from the log).
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    target: Target,
}

/// Where the nodes are and how to print.
#[derive(Args, Debug)]
pub struct Target {
    #[command(flatten)]
    cluster: ClusterArgs,
    #[command(flatten)]
    output: OutputArgs,
}

/// Confirmation and progress of a command that moves production traffic.
#[derive(Args, Debug)]
pub struct Act {
    /// Do not ask for confirmation (required when not on a terminal).
    #[arg(long, short = 'y')]
    yes: bool,
    /// Follow the failover (or the failback's traffic task) until it finishes, printing each
    /// step as it is recorded; exit 0 when it completed, 1 when it failed.
    #[arg(long)]
    wait: bool,
    /// Give up waiting after this many seconds (exit 3: still running, outcome unknown).
    #[arg(long, default_value_t = 900, requires = "wait")]
    wait_timeout: u64,
}

#[derive(Args, Debug)]
pub struct FailoverArgs {
    /// The region to fail over.
    #[arg(long)]
    region: String,
    /// Where its traffic goes (default: its configured failover region).
    #[arg(long)]
    to: Option<String>,
    /// Why, for the failover log.
    #[arg(long)]
    reason: String,
    /// Who asks, for the failover log (default: operator).
    #[arg(long)]
    initiated_by: Option<String>,
    /// Fail over even if the standby's last reported lag is beyond the link's RPO target; the
    /// decision records the override and its data-loss estimate (operator role only).
    #[arg(long)]
    break_glass: bool,
    #[command(flatten)]
    act: Act,
    #[command(flatten)]
    target: Target,
}

#[derive(Args, Debug)]
pub struct FailbackArgs {
    /// The recovered region.
    #[arg(long)]
    region: String,
    /// Who asks (default: operator).
    #[arg(long)]
    initiated_by: Option<String>,
    #[command(flatten)]
    act: Act,
    #[command(flatten)]
    target: Target,
}

#[derive(Args, Debug)]
pub struct TenantsArgs {
    /// Show this tenant only.
    #[arg(long, conflicts_with_all = ["active_region", "status"])]
    tenant: Option<String>,
    /// Only tenants routed to this region.
    #[arg(long)]
    active_region: Option<String>,
    /// Only tenants in this status: DEFAULT, SHIFTED or LOCKED.
    #[arg(long)]
    status: Option<String>,
    #[command(flatten)]
    target: Target,
}

#[derive(Args, Debug)]
pub struct EventsArgs {
    /// Only failovers of this region.
    #[arg(long)]
    region: Option<String>,
    #[command(flatten)]
    target: Target,
}

/// What to follow after an accepted failover or failback.
enum Follow {
    Nothing,
    Failover,
    Failback,
}

pub async fn run(command: DrCommand) -> anyhow::Result<ExitCode> {
    let mut act = None;
    let (target, method, path, body, print, follow): (_, _, _, _, fn(&Value), _) = match command {
        DrCommand::Failover(a) => {
            let body = json!({
                "failedRegion": a.region,
                "destinationRegion": a.to,
                "reason": a.reason,
                "initiatedBy": a.initiated_by,
                "breakGlass": a.break_glass,
            });
            let question = format!(
                "Fail over {} to {}{}? Its write leases are revoked and its traffic moves.",
                a.region,
                a.to.as_deref().unwrap_or("its failover region"),
                if a.break_glass {
                    ", whatever the standby's lag (break-glass)"
                } else {
                    ""
                }
            );
            act = Some((a.act, question));
            (
                a.target,
                "POST",
                "/v1/dr/failover".to_string(),
                Some(body),
                print_failover as fn(&Value),
                Follow::Failover,
            )
        }
        DrCommand::Failback(a) => {
            let body = json!({ "region": a.region, "initiatedBy": a.initiated_by });
            let question = format!("Fail back to {}? Its tenants and traffic return.", a.region);
            act = Some((a.act, question));
            (
                a.target,
                "POST",
                "/v1/dr/failback".to_string(),
                Some(body),
                print_failback,
                Follow::Failback,
            )
        }
        DrCommand::Regions(target) => (
            target,
            "GET",
            "/v1/regions".to_string(),
            None,
            print_regions,
            Follow::Nothing,
        ),
        DrCommand::Tenants(a) => {
            let path = match &a.tenant {
                Some(tenant) => format!("/v1/tenants/{}", encode(tenant)),
                None => format!(
                    "/v1/tenants{}",
                    query(&[("activeRegion", &a.active_region), ("status", &a.status)])
                ),
            };
            let print = if a.tenant.is_some() {
                print_tenant
            } else {
                print_tenants
            };
            (a.target, "GET", path, None, print, Follow::Nothing)
        }
        DrCommand::MoveLeader(a) => {
            let body = json!({ "region": a.region, "nodeId": a.node, "force": a.force });
            (
                a.target,
                "POST",
                "/v1/cluster/leader".to_string(),
                Some(body),
                print_move,
                Follow::Nothing,
            )
        }
        DrCommand::Plan(a) => {
            let path = a.path(query);
            (
                a.target_cluster,
                "GET",
                path,
                None,
                super::plan::print as fn(&Value),
                Follow::Nothing,
            )
        }
        DrCommand::Events(a) => {
            let path = format!(
                "/v1/failover-events{}",
                query(&[("failedRegion", &a.region)])
            );
            (a.target, "GET", path, None, print_events, Follow::Nothing)
        }
    };
    let wait = match &act {
        Some((act, question)) => {
            confirm(act.yes, question)?;
            act.wait.then(|| Duration::from_secs(act.wait_timeout))
        }
        None => None,
    };
    let json_output = target.output.is_json();
    let api = client(&target)?;
    let body = body.map(without_nulls);
    let retry = if method == "GET" {
        Retry::Always
    } else {
        Retry::OnlyIfNotApplied
    };
    let answer = api.send(method, &path, body.as_ref(), retry).await;
    let accepted = settle(answer, json_output, print)?;
    if let Some(timeout) = wait {
        return follow_until_done(&api, follow, &accepted, timeout, json_output).await;
    }
    Ok(ExitCode::SUCCESS)
}

fn client(target: &Target) -> anyhow::Result<ApiClient> {
    let http = target.cluster.credentials().http_client()?;
    Ok(
        ApiClient::new(target.cluster.endpoints(Port::Http), http, REQUEST_TIMEOUT)
            .with_patience(Patience::Search(LEADER_SEARCH)),
    )
}

/// Prints an answer; the accepted body, or the failure with its exit code.
fn settle(answer: Answer, json_output: bool, print: fn(&Value)) -> anyhow::Result<Value> {
    match answer {
        Answer::Done(body) => {
            if json_output {
                println!("{}", serde_json::to_string_pretty(&body)?);
            } else {
                print(&body);
            }
            Ok(body)
        }
        Answer::Refused { status, body, .. } => {
            if json_output {
                println!("{}", serde_json::to_string_pretty(&body)?);
            }
            let mut message = format!("refused ({status}): {}", text(&body["error"]));
            if let Some(reason) = body["reason"].as_str() {
                message.push_str(&format!("; reason: {reason} {}", body["detail"]));
            }
            Err(Failure::refused(message).into())
        }
        Answer::Unavailable(why) => Err(Failure::unavailable(format!(
            "no arbiter node took the request (nothing was changed): {why}"
        ))
        .into()),
        Answer::Unknown(why) => Err(Failure::unknown(format!(
            "outcome unknown: the request was sent but not confirmed; it may have been applied \
             (check `arbiter events` before retrying): {why}"
        ))
        .into()),
    }
}

/// Asks on the terminal unless `yes`; without a terminal, `--yes` is required.
fn confirm(yes: bool, question: &str) -> anyhow::Result<()> {
    if yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        return Err(Failure::usage(format!(
            "{question} Not on a terminal: pass --yes to confirm."
        ))
        .into());
    }
    eprint!("{question} [y/N] ");
    std::io::stderr().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    if matches!(line.trim(), "y" | "Y" | "yes" | "YES") {
        Ok(())
    } else {
        Err(Failure::usage("not confirmed; nothing was sent").into())
    }
}

/// `--wait`: prints each new step (or task state) as the leader records it until the
/// failover or task finishes.
async fn follow_until_done(
    api: &ApiClient,
    follow: Follow,
    accepted: &Value,
    timeout: Duration,
    json_output: bool,
) -> anyhow::Result<ExitCode> {
    let path = match follow {
        Follow::Nothing => return Ok(ExitCode::SUCCESS),
        Follow::Failover => format!(
            "/v1/failover-events/{}",
            encode(&text(&accepted["failoverId"]))
        ),
        Follow::Failback => match accepted["taskTrackId"].as_str() {
            Some(task) => format!("/v1/dr/tasks/{}", encode(task)),
            None => {
                eprintln!("no traffic task to wait for: the failback restored tenants only");
                return Ok(ExitCode::SUCCESS);
            }
        },
    };
    let deadline = tokio::time::Instant::now() + timeout;
    let mut shown = 0;
    loop {
        let current = match api.get(&path).await {
            Answer::Done(value) => value,
            Answer::Refused { status, body, .. } => {
                return Err(Failure::refused(format!(
                    "cannot follow {path} ({status}): {}",
                    text(&body["error"])
                ))
                .into())
            }
            Answer::Unavailable(why) | Answer::Unknown(why) => {
                eprintln!("(no answer while following: {why}; still trying)");
                Value::Null
            }
        };
        let status = match follow {
            Follow::Failover => {
                let steps = items(&current, "timelineLogs");
                for step in steps.iter().skip(shown) {
                    if !json_output {
                        println!(
                            "  {} {:<14} {}",
                            text(&step["at"]),
                            text(&step["step"]),
                            text(&step["detail"])
                        );
                    }
                }
                shown = shown.max(steps.len());
                current["eventStatus"].as_str().map(str::to_string)
            }
            _ => current["status"].as_str().map(str::to_string),
        };
        match status.as_deref() {
            Some("COMPLETED") => {
                if json_output {
                    println!("{}", serde_json::to_string_pretty(&current)?);
                } else {
                    println!("completed");
                }
                return Ok(ExitCode::SUCCESS);
            }
            Some("FAILED") => {
                if json_output {
                    println!("{}", serde_json::to_string_pretty(&current)?);
                }
                anyhow::bail!("{path} FAILED: {}", text(&current["detail"]));
            }
            _ => {}
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Failure::unknown(format!(
                "still {} after {} s; it goes on without this command (see `arbiter events`)",
                status.as_deref().unwrap_or("unknown"),
                timeout.as_secs()
            ))
            .into());
        }
        tokio::time::sleep(WAIT_POLL).await;
    }
}

/// Drops `null` members, so optional flags left out are absent rather than `null`.
fn without_nulls(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            Value::Object(map.into_iter().filter(|(_, v)| !v.is_null()).collect())
        }
        other => other,
    }
}

/// `?a=x&b=y` of the pairs that are set; empty when none is.
fn query(pairs: &[(&str, &Option<String>)]) -> String {
    let set: Vec<String> = pairs
        .iter()
        .filter_map(|(key, value)| value.as_ref().map(|v| format!("{key}={}", encode(v))))
        .collect();
    if set.is_empty() {
        String::new()
    } else {
        format!("?{}", set.join("&"))
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A JSON value as table text: strings bare, `null` as `-`.
pub(super) fn text(value: &Value) -> String {
    match value {
        Value::Null => "-".to_string(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn items<'a>(answer: &'a Value, key: &str) -> &'a [Value] {
    answer[key]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
}

fn print_failover(event: &Value) {
    println!(
        "failover {} of {} → {} accepted ({})",
        text(&event["failoverId"]),
        text(&event["failedRegion"]),
        text(&event["destinationRegion"]),
        text(&event["eventStatus"]),
    );
    println!(
        "follow it with: arbiter events --region {} (or run failover with --wait)",
        text(&event["failedRegion"])
    );
}

fn print_move(report: &Value) {
    println!(
        "leadership moved: node {} (term {}) → node {} (term {}); writes held {} ms, \
         leaderless {} ms",
        text(&report["from"]),
        text(&report["fromTerm"]),
        text(&report["newLeader"]),
        text(&report["newTerm"]),
        text(&report["writesHeldMs"]),
        text(&report["leaderlessMs"]),
    );
}

fn print_failback(answer: &Value) {
    println!(
        "failback to {} started: {} tenant(s) restored, traffic task {}",
        text(&answer["region"]),
        text(&answer["tenantsRestored"]),
        text(&answer["taskTrackId"]),
    );
}

/// Prints `rows` as a table: one column per (header, JSON field).
fn print_table(rows: &[Value], columns: &[(&str, &str)]) {
    let headers: Vec<&str> = columns.iter().map(|(h, _)| *h).collect();
    let mut table = Table::new(&headers);
    for row in rows {
        table.push(columns.iter().map(|(_, f)| text(&row[*f])).collect());
    }
    table.print();
}

fn print_regions(answer: &Value) {
    print_table(
        items(answer, "regions"),
        &[
            ("REGION", "region"),
            ("STATE", "state"),
            ("WEIGHT%", "trafficWeightPercentage"),
            ("DOWN_SINCE", "downSince"),
            ("COOLDOWN_UNTIL", "cooldownUntil"),
        ],
    );
    println!("cooldown: {} ms", text(&answer["cooldownMs"]));
}

fn print_tenant(tenant: &Value) {
    print_tenants(&json!({ "tenants": [tenant] }));
}

fn print_tenants(answer: &Value) {
    print_table(
        items(answer, "tenants"),
        &[
            ("TENANT", "tenantId"),
            ("PRIMARY", "primaryRegion"),
            ("FAILOVER", "failoverRegion"),
            ("ACTIVE", "activeRoutingRegion"),
            ("STATUS", "routingStatus"),
            ("UPDATED", "updatedAt"),
        ],
    );
}

fn print_events(answer: &Value) {
    let events = items(answer, "events");
    if events.is_empty() {
        println!("no failover events");
    }
    for e in events {
        println!(
            "{} {} → {} {} {} by {} created {} completed {} (est. loss {} bytes)",
            text(&e["failoverId"]),
            text(&e["failedRegion"]),
            text(&e["destinationRegion"]),
            text(&e["failoverType"]),
            text(&e["eventStatus"]),
            text(&e["initiatedBy"]),
            text(&e["createdAt"]),
            text(&e["completedAt"]),
            text(&e["uncommittedDataLossEstimateBytes"]),
        );
        for step in items(e, "timelineLogs") {
            println!(
                "    {} {:<14} {}",
                text(&step["at"]),
                text(&step["step"]),
                text(&step["detail"])
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_encoded_and_optional() {
        let region = Some("us-east-1".to_string());
        let status = None;
        assert_eq!(
            query(&[("activeRegion", &region), ("status", &status)]),
            "?activeRegion=us-east-1"
        );
        assert_eq!(query(&[("status", &status)]), "");
        assert_eq!(encode("a b/é"), "a%20b%2F%C3%A9");
    }
}
