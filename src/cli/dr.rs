//! `arbiter failover | failback | regions | tenants | events`: the DR operator commands, over
//! the nodes' HTTP API.
//!
//! Every command tries the endpoints in turn and follows a non-leader's `leaderHttpAddr`, so
//! any node's address will do. With `--json` the node's JSON answer is printed (errors
//! too, with a non-zero exit); otherwise a table.

use std::collections::VecDeque;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::bail;
use clap::{Args, Subcommand};
use serde_json::{json, Value};

use super::up::{ClusterArgs, Port};
use crate::http_client::{HttpClient, HttpResponse};

/// Each request's own deadline.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long to keep looking for a leader (e.g. through an election) before giving up.
const LEADER_SEARCH: Duration = Duration::from_secs(10);
/// Leader redirects followed per attempt; more means the nodes disagree, so try the next one.
const MAX_REDIRECTS: usize = 3;

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
    /// Print the JSON answer instead of a table.
    #[arg(long)]
    json: bool,
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

pub async fn run(command: DrCommand) -> anyhow::Result<ExitCode> {
    let (target, method, path, body, print): (_, _, _, _, fn(&Value)) = match command {
        DrCommand::Failover(a) => {
            let body = json!({
                "failedRegion": a.region,
                "destinationRegion": a.to,
                "reason": a.reason,
                "initiatedBy": a.initiated_by,
            });
            (
                a.target,
                "POST",
                "/v1/dr/failover".to_string(),
                Some(body),
                print_failover,
            )
        }
        DrCommand::Failback(a) => {
            let body = json!({ "region": a.region, "initiatedBy": a.initiated_by });
            (
                a.target,
                "POST",
                "/v1/dr/failback".to_string(),
                Some(body),
                print_failback,
            )
        }
        DrCommand::Regions(target) => (
            target,
            "GET",
            "/v1/regions".to_string(),
            None,
            print_regions,
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
            (a.target, "GET", path, None, print)
        }
        DrCommand::MoveLeader(a) => {
            let body = json!({ "region": a.region, "nodeId": a.node, "force": a.force });
            (
                a.target,
                "POST",
                "/v1/cluster/leader".to_string(),
                Some(body),
                print_move,
            )
        }
        DrCommand::Events(a) => {
            let path = format!(
                "/v1/failover-events{}",
                query(&[("failedRegion", &a.region)])
            );
            (a.target, "GET", path, None, print_events)
        }
    };
    let endpoints = endpoints(&target);
    let body = body
        .map(|b| serde_json::to_vec(&without_nulls(b)))
        .transpose()?;
    let http = target.cluster.credentials().http_client()?;
    let response = call(&http, &endpoints, method, &path, body.as_deref()).await?;
    let answer: Value = serde_json::from_slice(&response.body).unwrap_or_else(
        |_| json!({ "error": String::from_utf8_lossy(&response.body).trim().to_string() }),
    );
    if target.json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
    } else if response.is_success() {
        print(&answer);
    } else {
        eprintln!("error ({}): {}", response.status, text(&answer["error"]));
        if let Some(reason) = answer["reason"].as_str() {
            eprintln!("reason: {reason} {}", answer["detail"]);
        }
    }
    Ok(if response.is_success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn endpoints(target: &Target) -> Vec<String> {
    target.cluster.endpoints(Port::Http)
}

/// Sends the request to the leader: tries each endpoint, follows `leaderHttpAddr` redirects,
/// and keeps trying through an election until [`LEADER_SEARCH`] has passed. Returns the first
/// answer that is not a redirect, else the last redirect or connection error.
async fn call(
    http: &HttpClient,
    endpoints: &[String],
    method: &str,
    path: &str,
    body: Option<&[u8]>,
) -> anyhow::Result<HttpResponse> {
    let deadline = tokio::time::Instant::now() + LEADER_SEARCH;
    let mut last_answer = None;
    let mut last_error = String::from("no endpoints");
    loop {
        for endpoint in endpoints {
            let mut queue = VecDeque::from([endpoint.clone()]);
            let mut redirects = 0;
            while let Some(addr) = queue.pop_front() {
                let url = format!("{}{path}", http.base_url(&addr));
                match http.request(method, &url, body, REQUEST_TIMEOUT).await {
                    Ok(response) if response.status == 503 => {
                        let leader = serde_json::from_slice::<Value>(&response.body)
                            .ok()
                            .and_then(|v| v["leaderHttpAddr"].as_str().map(str::to_string));
                        if let Some(leader) = leader.filter(|l| *l != addr) {
                            if redirects < MAX_REDIRECTS {
                                redirects += 1;
                                queue.push_back(leader);
                            }
                        }
                        last_answer = Some(response);
                    }
                    Ok(response) => return Ok(response),
                    Err(e) => last_error = e.to_string(),
                }
            }
        }
        if tokio::time::Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    match last_answer {
        Some(response) => Ok(response),
        None => bail!("no arbiter node answered: {last_error}"),
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
fn text(value: &Value) -> String {
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
        "follow it with: arbiter events --region {}",
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

/// Prints `rows` as a table: one column per (header, JSON field, width).
fn print_table(rows: &[Value], columns: &[(&str, &str, usize)]) {
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(columns)
            .map(|(cell, (_, _, width))| format!("{cell:<width$}"))
            .collect();
        padded.join(" ").trim_end().to_string()
    };
    println!(
        "{}",
        line(columns.iter().map(|(h, _, _)| h.to_string()).collect())
    );
    for row in rows {
        println!(
            "{}",
            line(columns.iter().map(|(_, f, _)| text(&row[*f])).collect())
        );
    }
}

fn print_regions(answer: &Value) {
    print_table(
        items(answer, "regions"),
        &[
            ("REGION", "region", 16),
            ("STATE", "state", 11),
            ("WEIGHT%", "trafficWeightPercentage", 8),
            ("DOWN_SINCE", "downSince", 21),
            ("COOLDOWN_UNTIL", "cooldownUntil", 21),
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
            ("TENANT", "tenantId", 24),
            ("PRIMARY", "primaryRegion", 16),
            ("FAILOVER", "failoverRegion", 16),
            ("ACTIVE", "activeRoutingRegion", 16),
            ("STATUS", "routingStatus", 8),
            ("UPDATED", "updatedAt", 21),
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
