//! The one place where protobuf messages and core types meet: request validation into core
//! commands, and core outcomes into replies.
//!
//! Invariant: bad input never reaches the log — every check that can fail on a request happens
//! here and becomes `INVALID_ARGUMENT` with a message naming the field.

use arbiter_client::proto::{self, refusal};
use arbiter_core::lease_table::{
    BreakGlass, LeaseCommand, LeaseLimits, LeaseOutcome, LeaseRefusal, LeaseState, ResourceLease,
};
use arbiter_core::{FencingToken, HolderId, RegionId, ResourceId};
use tonic::Status;

use crate::auth::Caller;

fn required(field: &str, value: &str) -> Result<(), Status> {
    if value.trim().is_empty() {
        return Err(Status::invalid_argument(format!("`{field}` is required")));
    }
    if value.len() > arbiter_core::MAX_NAME_BYTES {
        return Err(Status::invalid_argument(format!(
            "`{field}` is longer than {} bytes",
            arbiter_core::MAX_NAME_BYTES
        )));
    }
    Ok(())
}

pub fn resource(value: &str) -> Result<ResourceId, Status> {
    required("resource", value)?;
    Ok(ResourceId::new(value))
}

pub fn holder(value: &str) -> Result<HolderId, Status> {
    required("holder", value)?;
    Ok(HolderId::new(value))
}

/// The acquire command; a break-glass override is recorded as `caller`'s, whatever
/// `break_glass_operator` says (kept for compatibility, checked for shape, then ignored).
pub fn acquire(
    req: &proto::AcquireRequest,
    limits: &LeaseLimits,
    caller: &Caller,
) -> Result<LeaseCommand, Status> {
    limits
        .validate_ttl(req.ttl_ms)
        .map_err(|e| Status::invalid_argument(e.to_string()))?;
    let break_glass = if req.break_glass {
        required("break_glass_operator", &req.break_glass_operator)?;
        required("break_glass_reason", &req.break_glass_reason)?;
        Some(BreakGlass {
            operator: caller.identity.clone(),
            reason: req.break_glass_reason.clone(),
        })
    } else {
        None
    };
    Ok(LeaseCommand::Acquire {
        resource: resource(&req.resource)?,
        holder: holder(&req.holder)?,
        // The holder's authenticated region, whatever the request says; a region named in the
        // request must be that one (checked by the binding rule, `lease_claims`).
        region: match req.region.as_str() {
            "" => caller.region.as_deref().map(RegionId::new),
            named => Some(region("region", named)?),
        },
        ttl_ms: req.ttl_ms,
        break_glass,
    })
}

pub fn release(req: &proto::ReleaseRequest) -> Result<LeaseCommand, Status> {
    Ok(LeaseCommand::Release {
        resource: resource(&req.resource)?,
        holder: holder(&req.holder)?,
        token: FencingToken(req.token),
    })
}

/// The revoke command, recorded as `caller`'s; `by` is kept for compatibility and ignored.
pub fn revoke(req: &proto::RevokeRequest, caller: &Caller) -> Result<LeaseCommand, Status> {
    required("reason", &req.reason)?;
    if !req.by.is_empty() {
        required("by", &req.by)?;
    }
    Ok(LeaseCommand::Revoke {
        resource: resource(&req.resource)?,
        by: caller.identity.clone(),
        reason: req.reason.clone(),
    })
}

/// A refusal, with how long (by the leader's timers) the holder may still hold.
pub fn refusal(r: &LeaseRefusal, may_hold_for_ms: u64) -> Result<proto::Refusal, Status> {
    let kind = match r {
        LeaseRefusal::HeldBy {
            holder,
            token,
            ttl_ms,
        } => refusal::Kind::HeldBy(proto::HeldBy {
            holder: holder.to_string(),
            token: token.0,
            ttl_ms: *ttl_ms,
            may_hold_for_ms,
        }),
        LeaseRefusal::Draining { holder, token } => refusal::Kind::Draining(proto::Draining {
            holder: holder.to_string(),
            token: token.0,
            may_hold_for_ms,
        }),
        LeaseRefusal::StaleToken { presented, current } => {
            refusal::Kind::StaleToken(proto::StaleToken {
                presented: presented.0,
                current: current.0,
            })
        }
        LeaseRefusal::NotHeld => refusal::Kind::NotHeld(proto::NotHeld {}),
        LeaseRefusal::NotHolder { holder } => refusal::Kind::NotHolder(proto::NotHolder {
            holder: holder.to_string(),
        }),
        LeaseRefusal::RegionFenced { region, reason } => {
            refusal::Kind::RegionFenced(proto::RegionFenced {
                region: region.to_string(),
                reason: reason.clone(),
            })
        }
        LeaseRefusal::TokenNotAdvanced { .. } => {
            // Cannot happen with log-derived tokens; if it does, it is our bug, not the caller's.
            tracing::error!(refusal = %r, "lease table refused a non-advancing token");
            return Err(Status::internal("internal lease error; see the node log"));
        }
    };
    Ok(proto::Refusal { kind: Some(kind) })
}

pub fn reply(outcome: &LeaseOutcome, may_hold_for_ms: u64) -> Result<proto::LeaseReply, Status> {
    let mut reply = proto::LeaseReply {
        ok: true,
        ..Default::default()
    };
    match outcome {
        LeaseOutcome::Granted {
            token,
            ttl_ms,
            overrode,
        } => {
            reply.token = token.0;
            reply.ttl_ms = *ttl_ms;
            if let Some((holder, token)) = overrode {
                reply.displaced_holder = holder.to_string();
                reply.displaced_token = token.0;
            }
        }
        LeaseOutcome::AlreadyHeld { token, ttl_ms } => {
            reply.token = token.0;
            reply.ttl_ms = *ttl_ms;
        }
        LeaseOutcome::Revoked(revocation) => {
            reply.token = revocation.epoch.0;
            reply.displaced_holder = revocation.holder.to_string();
            reply.displaced_token = revocation.token.0;
        }
        LeaseOutcome::Fenced { epoch, drained } => {
            reply.token = epoch.0;
            if let Some((holder, token)) = drained {
                reply.displaced_holder = holder.to_string();
                reply.displaced_token = token.0;
            }
        }
        LeaseOutcome::Released
        | LeaseOutcome::Expired { .. }
        | LeaseOutcome::RevokedMany(_)
        | LeaseOutcome::RegionFenceLifted(_) => {}
        LeaseOutcome::Refused(r) => {
            reply.ok = false;
            reply.refusal = Some(refusal(r, may_hold_for_ms)?);
        }
    }
    Ok(reply)
}

pub fn lease_info(resource: &ResourceId, row: Option<&ResourceLease>) -> proto::LeaseInfo {
    let mut info = proto::LeaseInfo {
        resource: resource.to_string(),
        state: "FREE".into(),
        ..Default::default()
    };
    let Some(row) = row else { return info };
    info.epoch = row.epoch.0;
    let lease = match &row.lease {
        LeaseState::Free => None,
        LeaseState::Held(lease) => {
            info.state = "HELD".into();
            Some(lease)
        }
        LeaseState::Draining { lease, .. } => {
            info.state = "DRAINING".into();
            Some(lease)
        }
    };
    if let Some(lease) = lease {
        info.holder = lease.holder.to_string();
        info.token = lease.token.0;
        info.ttl_ms = lease.ttl_ms;
        info.region = lease
            .region
            .as_ref()
            .map(|r| r.to_string())
            .unwrap_or_default();
    }
    info
}

// --- Replication coordinator (the seed's `codesprintpro.dr.replication.v1`) and routing ---
use std::collections::BTreeMap;

use arbiter_client::proto::replication;
use arbiter_core::region_health::HealthState;
use arbiter_core::replication::{
    EpochId, ReplicationCommand, ReplicationOutcome, ReplicationRefusal, SyncMetrics,
    MAX_CHECKSUM_LEN,
};
use arbiter_core::routing::{RoutingStatus, TenantRoute};
use arbiter_core::state_machine::StateMachine;
use arbiter_core::TenantId;

/// A region named in a request: non-blank, at most [`arbiter_core::MAX_REGION_BYTES`], as over
/// HTTP.
pub fn region(field: &str, value: &str) -> Result<RegionId, Status> {
    required(field, value)?;
    if value.len() > arbiter_core::MAX_REGION_BYTES {
        return Err(Status::invalid_argument(format!(
            "`{field}` is longer than {} bytes",
            arbiter_core::MAX_REGION_BYTES
        )));
    }
    Ok(RegionId::new(value))
}

pub fn tenant(value: &str) -> Result<TenantId, Status> {
    required("tenant_id", value)?;
    Ok(TenantId::new(value))
}

/// The seed's `CheckpointRequest` as a log command. The seed's request carries no committed
/// transaction count (its `regional_sync_checkpoints` table does), so it is recorded as 0:
/// `pending_bytes_count` and throughput then count only what senders that know it report.
/// `timestamp_ms` is the sender's clock and is not recorded — time enters the replicated
/// state only through the log entry.
pub fn checkpoint(req: &replication::CheckpointRequest) -> Result<ReplicationCommand, Status> {
    let region = region("source_region", &req.source_region)?;
    let epoch = u64::try_from(req.last_committed_epoch).map_err(|_| {
        Status::invalid_argument(format!(
            "`last_committed_epoch` must not be negative, got {}",
            req.last_committed_epoch
        ))
    })?;
    let checksum_len = req.payload_checksum.chars().count();
    if req.payload_checksum.trim().is_empty() || checksum_len > MAX_CHECKSUM_LEN {
        return Err(Status::invalid_argument(format!(
            "`payload_checksum` must be 1 to {MAX_CHECKSUM_LEN} characters, got {checksum_len}"
        )));
    }
    if req.timestamp_ms < 0 {
        return Err(Status::invalid_argument(format!(
            "`timestamp_ms` must not be negative, got {}",
            req.timestamp_ms
        )));
    }
    Ok(ReplicationCommand::ReportCheckpoint {
        region,
        epoch: EpochId(epoch),
        committed_transaction_count: 0,
        checksum: req.payload_checksum.clone(),
    })
}

fn epoch_i64(epoch: EpochId) -> i64 {
    // Epochs enter through `checkpoint` from non-negative i64s, so this never saturates.
    i64::try_from(epoch.0).unwrap_or(i64::MAX)
}

/// A checkpoint's outcome: a repeat of a recorded (region, epoch, checksum) is acknowledged
/// like the first report; going backwards is `FAILED_PRECONDITION`; the same epoch with other
/// data is `ALREADY_EXISTS`.
pub fn checkpoint_reply(
    outcome: &ReplicationOutcome,
) -> Result<replication::CheckpointResponse, Status> {
    match outcome {
        ReplicationOutcome::CheckpointRecorded {
            receiver_applied_epoch,
        }
        | ReplicationOutcome::CheckpointAlreadyRecorded {
            receiver_applied_epoch,
        } => Ok(replication::CheckpointResponse {
            acknowledged: true,
            receiver_applied_epoch: epoch_i64(*receiver_applied_epoch),
        }),
        ReplicationOutcome::Refused(refusal @ ReplicationRefusal::EpochRegressed { .. }) => {
            Err(Status::failed_precondition(refusal.to_string()))
        }
        ReplicationOutcome::Refused(refusal @ ReplicationRefusal::ChecksumConflict { .. }) => {
            Err(Status::already_exists(refusal.to_string()))
        }
        ReplicationOutcome::Refused(refusal @ ReplicationRefusal::InvalidChecksum { .. }) => {
            Err(Status::invalid_argument(refusal.to_string()))
        }
        other => {
            tracing::error!(outcome = ?other, "a checkpoint report produced an unexpected outcome");
            Err(Status::internal(
                "internal replication error; see the node log",
            ))
        }
    }
}

/// The (source, target) of a `SyncMetricsRequest`.
pub fn sync_pair(req: &replication::SyncMetricsRequest) -> Result<(RegionId, RegionId), Status> {
    let source = region("source_region", &req.source_region)?;
    let target = region("target_region", &req.target_region)?;
    if source == target {
        return Err(Status::invalid_argument(format!(
            "`source_region` and `target_region` are the same region ({source})"
        )));
    }
    Ok((source, target))
}

fn saturating_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

pub fn sync_metrics(metrics: &SyncMetrics) -> replication::SyncMetricsResponse {
    replication::SyncMetricsResponse {
        replication_lag_ms: saturating_i64(metrics.replication_lag_ms),
        pending_bytes_count: saturating_i64(metrics.pending_bytes_count),
        throughput_bytes_per_sec: metrics.throughput_bytes_per_sec,
    }
}

/// The seed's status names (`DEFAULT`, `SHIFTED`, `LOCKED`).
fn routing_status(status: RoutingStatus) -> &'static str {
    match status {
        RoutingStatus::Default => "DEFAULT",
        RoutingStatus::Shifted => "SHIFTED",
        RoutingStatus::Locked => "LOCKED",
    }
}

fn health_state(state: HealthState) -> &'static str {
    match state {
        HealthState::Healthy => "HEALTHY",
        HealthState::Degraded => "DEGRADED",
        HealthState::Down => "DOWN",
        HealthState::Recovering => "RECOVERING",
    }
}

pub fn tenant_route(route: &TenantRoute) -> proto::TenantRoute {
    proto::TenantRoute {
        tenant_id: route.tenant_id.to_string(),
        primary_region: route.primary_region.to_string(),
        failover_region: route.failover_region.to_string(),
        active_routing_region: route.active_routing_region.to_string(),
        routing_status: routing_status(route.routing_status).to_string(),
        updated_at_ms: route.updated_at.0,
        version: route.version,
    }
}

/// The routing table for edge routers: every region with a weight or a health row, and the
/// tenants routed to `active_region` (all tenants when `None`), by region, status, tenant.
pub fn routing_snapshot(
    machine: &StateMachine,
    applied_index: u64,
    active_region: Option<&RegionId>,
) -> proto::RoutingSnapshot {
    let mut regions: BTreeMap<&RegionId, proto::RegionRoute> = BTreeMap::new();
    let row = |region: &RegionId| proto::RegionRoute {
        region: region.to_string(),
        ..Default::default()
    };
    for (region, health) in machine.regions.iter() {
        regions
            .entry(region)
            .or_insert_with(|| row(region))
            .health_state = health_state(health.state).to_string();
    }
    for (region, bp) in machine.traffic.weights().into_iter().flat_map(|w| w.iter()) {
        regions
            .entry(region)
            .or_insert_with(|| row(region))
            .weight_bp = Some(bp);
    }
    // Tenants are only ever routed to regions the table tracks, so walking the (active region,
    // status) index over them, or over the one asked for, covers the table.
    let active: Vec<&RegionId> = match active_region {
        Some(region) => vec![region],
        None => regions.keys().copied().collect(),
    };
    let tenants = active
        .into_iter()
        .flat_map(|region| {
            [
                RoutingStatus::Default,
                RoutingStatus::Shifted,
                RoutingStatus::Locked,
            ]
            .into_iter()
            .flat_map(move |status| machine.routing.by_active(region, status))
        })
        .map(tenant_route)
        .collect();
    let drains = machine
        .traffic
        .in_progress()
        .map(|task| proto::Drain {
            task_track_id: task.task_track_id.clone(),
            source_region: task.request.source_region.to_string(),
            target_region: task.request.target_region.to_string(),
            drain_timeout_seconds: task.request.drain_timeout_seconds,
        })
        .collect();
    proto::RoutingSnapshot {
        applied_index,
        tenants,
        regions: regions.into_values().collect(),
        drains,
    }
}
