//! The one place where protobuf messages and core types meet: request validation into core
//! commands, and core outcomes into replies.
//!
//! Invariant: bad input never reaches the log — every check that can fail on a request happens
//! here and becomes `INVALID_ARGUMENT` with a message naming the field.

use arbiter_client::proto::{self, refusal};
use arbiter_core::lease_table::{
    BreakGlass, LeaseCommand, LeaseLimits, LeaseOutcome, LeaseRefusal, LeaseState,
    ResourceLease,
};
use arbiter_core::{FencingToken, HolderId, RegionId, ResourceId};
use tonic::Status;

fn required(field: &str, value: &str) -> Result<(), Status> {
    if value.trim().is_empty() {
        return Err(Status::invalid_argument(format!("`{field}` is required")));
    }
    if value.len() > 256 {
        return Err(Status::invalid_argument(format!(
            "`{field}` is longer than 256 bytes"
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

pub fn acquire(req: &proto::AcquireRequest, limits: &LeaseLimits) -> Result<LeaseCommand, Status> {
    limits
        .validate_ttl(req.ttl_ms)
        .map_err(|e| Status::invalid_argument(e.to_string()))?;
    let break_glass = if req.break_glass {
        required("break_glass_operator", &req.break_glass_operator)?;
        required("break_glass_reason", &req.break_glass_reason)?;
        Some(BreakGlass {
            operator: req.break_glass_operator.clone(),
            reason: req.break_glass_reason.clone(),
        })
    } else {
        None
    };
    Ok(LeaseCommand::Acquire {
        resource: resource(&req.resource)?,
        holder: holder(&req.holder)?,
        region: (!req.region.is_empty()).then(|| RegionId::new(&req.region)),
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

pub fn revoke(req: &proto::RevokeRequest) -> Result<LeaseCommand, Status> {
    required("reason", &req.reason)?;
    Ok(LeaseCommand::Revoke {
        resource: resource(&req.resource)?,
        by: if req.by.is_empty() {
            "operator".into()
        } else {
            req.by.clone()
        },
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
        LeaseOutcome::Released | LeaseOutcome::Expired { .. } | LeaseOutcome::RevokedMany(_) => {}
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
