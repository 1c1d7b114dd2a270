//! Routing registers: one per tenant, its value the tenant's `activeRoutingRegion`, read with
//! `GET /v1/tenants/{id}` and written with `POST /v1/tenants/{id}/active` (`{"region"}`, and
//! `"expectedRegion"` for a compare-and-set; 409 when it does not match).
//!
//! Invariant: the values written are only ever `us-east-1` and `us-west-2`. The failover-log
//! workload fails `eu-central-1` over, which moves every tenant routed there; a register that
//! never holds `eu-central-1` is moved by nobody but this workload, so any write the history
//! cannot explain is the arbiter's.
//!
//! Until the `/active` route exists, writes fall back to `PUT /v1/tenants/{id}` with the value
//! as primary region (a `DEFAULT` tenant follows its primary) and there is no compare-and-set.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::seq::IndexedRandom;
use rand::Rng;
use serde::Serialize;
use serde_json::{json, Value};

use super::lagging_replica::LaggingReplica;
use super::{process, Context, WorkResult};
use crate::api::{Answer, ApiClient, Completion};
use crate::history::{Op, OpType, Process, F};

/// The values a register takes (see the module invariant).
pub const VALUES: [&str; 2] = ["us-east-1", "us-west-2"];
/// How far behind the stale-read replica is.
pub const REPLICA_LAG: Duration = Duration::from_secs(2);
/// How often the replica pulls from the leader.
const REPLICA_POLL: Duration = Duration::from_millis(100);

/// How writes reach the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WriteRoute {
    /// `POST /v1/tenants/{id}/active`: writes and compare-and-set.
    SetActive,
    /// `PUT /v1/tenants/{id}` with the value as primary region: writes only.
    Upsert,
}

pub struct RegisterSetup {
    pub tenants: Vec<String>,
    pub route: WriteRoute,
    /// Under `stale_reads`: where reads are answered from.
    pub replica: Option<Arc<Mutex<LaggingReplica>>>,
}

fn tenant_path(tenant: &str) -> String {
    format!("/v1/tenants/{tenant}")
}

fn other(value: &str) -> &'static str {
    if value == VALUES[0] {
        VALUES[1]
    } else {
        VALUES[0]
    }
}

/// A read as the API answers it: the tenant's active region, `null` for an unknown tenant.
async fn read_value(api: &ApiClient, tenant: &str) -> Result<Value, String> {
    match api.get(&tenant_path(tenant)).await {
        Answer::Done(row) => Ok(row["activeRoutingRegion"].clone()),
        Answer::Refused { status: 404, .. } => Ok(Value::Null),
        other => Err(format!("{other:?}")),
    }
}

/// Writes `value` (or compare-and-sets from `expected`): ok, fail (not applied) or info.
async fn write_value(
    api: &ApiClient,
    route: WriteRoute,
    tenant: &str,
    value: &str,
    expected: Option<&str>,
) -> (OpType, Value) {
    let answer = match route {
        WriteRoute::SetActive => {
            let mut body = json!({ "region": value });
            if let Some(expected) = expected {
                body["expectedRegion"] = json!(expected);
            }
            api.write("POST", &format!("{}/active", tenant_path(tenant)), &body)
                .await
        }
        WriteRoute::Upsert => {
            let body = json!({ "primaryRegion": value, "failoverRegion": other(value) });
            api.write("PUT", &tenant_path(tenant), &body).await
        }
    };
    answer.write_completion(|_| Value::Null)
}

/// Creates every tenant at `VALUES[0]` (recorded as writes, so the checkers know where each
/// register started) and finds out whether the `/active` route exists, on a tenant of its own.
/// A fresh leader knows no regions until its DR controller has registered them, so each seed
/// is retried until the context's deadline.
pub async fn seed(ctx: &Context, tenants: &[String]) -> Result<WriteRoute, String> {
    let p = Process::Client(process::REGISTERS + 90);
    let api = &ctx.api;
    for tenant in tenants {
        loop {
            let invoke = ctx
                .recorder
                .append(Op::invoke(p, F::Write, tenant, json!(VALUES[0])))
                .map_err(|e| e.to_string())?;
            let (kind, detail) =
                write_value(api, WriteRoute::Upsert, tenant, VALUES[0], None).await;
            ctx.recorder
                .complete(&invoke, kind, detail.clone())
                .map_err(|e| e.to_string())?;
            if kind == OpType::Ok {
                break;
            }
            if ctx.deadline.passed() {
                return Err(format!("seeding tenant {tenant}: {detail}"));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let probe = "jepsen-route-probe";
    if let (OpType::Ok, _) = write_value(api, WriteRoute::Upsert, probe, VALUES[0], None).await {
        let (kind, _) = write_value(api, WriteRoute::SetActive, probe, VALUES[0], None).await;
        if kind == OpType::Ok {
            return Ok(WriteRoute::SetActive);
        }
    }
    Ok(WriteRoute::Upsert)
}

/// One register client: reads, writes and (when the route allows) compare-and-sets on random
/// tenants until the deadline.
pub async fn client(ctx: Context, setup: Arc<RegisterSetup>, index: u64) -> WorkResult {
    let process = process::REGISTERS + index;
    let p = Process::Client(process);
    let mut rng = ctx.rng(process);
    let mut calls = 0;
    while ctx.may_continue(calls) {
        calls += 1;
        // `tenants` is never empty (the runner makes them), so choose always succeeds.
        let Some(tenant) = setup.tenants.choose(&mut rng) else {
            return Ok(());
        };
        let roll: f64 = rng.random();
        let value = *VALUES.choose(&mut rng).unwrap_or(&VALUES[0]);
        if roll < 0.5 {
            let invoke = ctx
                .recorder
                .append(Op::invoke(p, F::Read, tenant, Value::Null))?;
            let replica_says = setup.replica.as_ref().and_then(|r| {
                let now = ctx.recorder.clock().now_ns();
                r.lock().ok()?.read(tenant, now)
            });
            let read = match replica_says {
                Some(stale) => Ok(stale),
                None => read_value(&ctx.api, tenant).await,
            };
            match read {
                Ok(v) => ctx.recorder.complete(&invoke, OpType::Ok, v)?,
                Err(why) => ctx.recorder.complete(&invoke, OpType::Fail, json!(why))?,
            };
        } else if roll < 0.75 || setup.route == WriteRoute::Upsert {
            let invoke = ctx
                .recorder
                .append(Op::invoke(p, F::Write, tenant, json!(value)))?;
            let (kind, detail) = write_value(&ctx.api, setup.route, tenant, value, None).await;
            ctx.recorder.complete(&invoke, kind, detail)?;
        } else {
            let expected = other(value);
            let invoke =
                ctx.recorder
                    .append(Op::invoke(p, F::Cas, tenant, json!([expected, value])))?;
            let (kind, detail) =
                write_value(&ctx.api, setup.route, tenant, value, Some(expected)).await;
            ctx.recorder.complete(&invoke, kind, detail)?;
        }
        ctx.pause(&mut rng).await;
    }
    Ok(())
}

/// The stale-read replica's replication: pulls every tenant from the leader and hands it to
/// the replica, which serves it `REPLICA_LAG` late. Its reads are not client calls and are not
/// recorded.
pub async fn feed_replica(ctx: Context, setup: Arc<RegisterSetup>) {
    let Some(replica) = setup.replica.clone() else {
        return;
    };
    let mut polls = 0;
    while ctx.may_continue(polls) {
        polls += 1;
        for tenant in &setup.tenants {
            if let Ok(value) = read_value(&ctx.api, tenant).await {
                let now = ctx.recorder.clock().now_ns();
                if let Ok(mut r) = replica.lock() {
                    r.observe(tenant, now, value);
                }
            }
        }
        tokio::time::sleep(REPLICA_POLL).await;
    }
}

/// After the run: one successful read of every tenant, retried until the deadline. Returns
/// when the first of them succeeded.
pub async fn final_reads(
    ctx: &Context,
    tenants: &[String],
) -> std::io::Result<Option<tokio::time::Instant>> {
    let p = Process::Client(process::FINAL);
    let mut first_ok = None;
    for tenant in tenants {
        loop {
            let invoke = ctx
                .recorder
                .append(Op::invoke(p, F::Read, tenant, Value::Null))?;
            match read_value(&ctx.api, tenant).await {
                Ok(v) => {
                    ctx.recorder.complete(&invoke, OpType::Ok, v)?;
                    first_ok.get_or_insert_with(tokio::time::Instant::now);
                    break;
                }
                Err(why) => {
                    ctx.recorder.complete(&invoke, OpType::Fail, json!(why))?;
                    if ctx.deadline.passed() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }
    Ok(first_ok)
}
