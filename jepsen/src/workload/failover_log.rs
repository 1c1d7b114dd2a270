//! The failover log of one region as an append-only list: an append is an operator failover
//! (`POST /v1/dr/failover`) of [`FAILED`] to [`DESTINATION`] whose `reason` is a unique
//! string; a read lists the region's events (`GET /v1/failover-events`), oldest first, as the
//! reasons their `DECIDE` steps recorded.
//!
//! Invariant: appends are unique per run and capped at [`MAX_APPENDS`], below the API's list
//! limit, so every read can return the whole log. An append refused because a failover is still
//! in progress (409) is a `fail`; the nodes run with `drain_ms = 0` so that does not last.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use super::{process, Context, WorkResult};
use crate::api::{Answer, ApiClient, Completion};
use crate::history::{Op, OpType, Process, F};

pub const FAILED: &str = "eu-central-1";
pub const DESTINATION: &str = "us-west-2";
/// The events API returns at most 1,000 per call.
pub const MAX_APPENDS: u64 = 900;
const LIST_LIMIT: u64 = 1_000;

/// Pause between one appender's failovers: each takes a few controller ticks to complete, and
/// the log must stay under the cap for the longest runs.
const APPEND_GAP_MS: (u64, u64) = (300, 900);

/// The `[dr]` settings the failover log needs: no drain wait, a fast controller loop, and the
/// replication link from [`FAILED`] to [`DESTINATION`] declared (fresh, lag 0), since a
/// failover into a standby whose lag is unknown is refused without break-glass.
pub const DR_CONFIG_TOML: &str = "[dr]\ndrain_ms = 0\ntick_ms = 50\n\
    [[dr.links]]\nsource = \"eu-central-1\"\ntarget = \"us-west-2\"\n";

/// Appends made so far by every appender, against [`MAX_APPENDS`].
#[derive(Default)]
pub struct AppendCount(AtomicU64);

/// Appender `index`: failovers with unique reasons until the deadline or the cap.
pub async fn appender(ctx: Context, count: Arc<AppendCount>, index: u64) -> WorkResult {
    let process = process::LOG + index;
    let p = Process::Client(process);
    let mut rng = ctx.rng(process);
    let mut calls = 0;
    while ctx.may_continue(calls) && count.0.fetch_add(1, Ordering::Relaxed) < MAX_APPENDS {
        calls += 1;
        let reason = format!("jepsen p{process} #{calls}");
        let invoke = ctx
            .recorder
            .append(Op::invoke(p, F::Append, FAILED, json!(reason)))?;
        let body = json!({
            "failedRegion": FAILED,
            "destinationRegion": DESTINATION,
            "reason": reason,
            "initiatedBy": format!("jepsen-p{process}"),
        });
        let (kind, detail) = ctx
            .api
            .write("POST", "/v1/dr/failover", &body)
            .await
            .write_completion(|event| event["failoverId"].clone());
        ctx.recorder.complete(&invoke, kind, detail)?;
        ctx.pause_within(&mut rng, APPEND_GAP_MS).await;
    }
    Ok(())
}

/// The log as a list of `DECIDE` details, oldest first.
async fn read_log(api: &ApiClient) -> Result<Value, String> {
    let path = format!("/v1/failover-events?failedRegion={FAILED}&limit={LIST_LIMIT}");
    let Answer::Done(list) = api.get(&path).await else {
        return Err("no answer".into());
    };
    let events = list["events"]
        .as_array()
        .ok_or_else(|| format!("not an event list: {list}"))?;
    // Newest first on the wire.
    let reasons = events
        .iter()
        .rev()
        .map(|event| {
            event["timelineLogs"]
                .as_array()
                .and_then(|steps| steps.iter().find(|s| s["step"] == "DECIDE"))
                .map(|decide| decide["detail"].clone())
                .ok_or_else(|| format!("event without a DECIDE step: {event}"))
        })
        .collect::<Result<Vec<Value>, String>>()?;
    Ok(Value::Array(reasons))
}

/// Reader `index`: whole-log reads until the deadline.
pub async fn reader(ctx: Context, index: u64) -> WorkResult {
    let process = process::LOG + 50 + index;
    let mut rng = ctx.rng(process);
    let mut calls = 0;
    while ctx.may_continue(calls) {
        calls += 1;
        record_read(&ctx, Process::Client(process)).await?;
        ctx.pause(&mut rng).await;
    }
    Ok(())
}

async fn record_read(ctx: &Context, p: Process) -> std::io::Result<bool> {
    let invoke = ctx
        .recorder
        .append(Op::invoke(p, F::ReadLog, FAILED, Value::Null))?;
    match read_log(&ctx.api).await {
        Ok(list) => ctx
            .recorder
            .complete(&invoke, OpType::Ok, list)
            .map(|_| true),
        Err(why) => ctx
            .recorder
            .complete(&invoke, OpType::Fail, json!(why))
            .map(|_| false),
    }
}

/// After the run: one successful read of the whole log, retried until the deadline.
pub async fn final_read(ctx: &Context) -> WorkResult {
    let p = Process::Client(process::FINAL + 1);
    while !record_read(ctx, p).await? && !ctx.deadline.passed() {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}
