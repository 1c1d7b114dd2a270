//! Write leases for operators: the JSON mirror of `arbiter.v1.LeaseService`, with the same
//! checks and the same outcomes.
//!
//! `{resource}` is one path segment, so a `/` in a resource name is sent percent-encoded:
//! `db/orders` is `/v1/leases/db%2Forders`.
//!
//! | route | body | 200 |
//! |---|---|---|
//! | `GET /v1/leases/{resource}` | | `{"resource", "state": "FREE"\|"HELD"\|"DRAINING", "holder", "token", "ttlMs", "epoch", "region", "mayHoldForMs"}` |
//! | `POST /v1/leases/{resource}/acquire` | `{"holder", "ttlMs", "region"?, "breakGlass"?: {"operator", "reason"}}` | `{"ok": true, "token", "ttlMs", "displacedHolder"?, "displacedToken"?}` |
//! | `POST /v1/leases/{resource}/keepalive` | `{"holder", "token"}` | `{"ok": true, "token", "ttlMs"}` |
//! | `POST /v1/leases/{resource}/release` | `{"holder", "token"}` | `{"ok": true}` |
//! | `POST /v1/leases/{resource}/revoke` | `{"reason", "by"?}` | `{"ok": true, "epoch", "displacedHolder", "displacedToken"}` |
//! | `GET /v1/leases/{resource}/validate?token=N` | | `{"valid", "currentEpoch"}` |
//!
//! `holder`, `token`, `ttlMs` and `region` are `null` while the lease is `FREE`; `epoch` is 0
//! for a resource never leased. `mayHoldForMs` is how long the holder may still believe it
//! holds, by the leader's monotonic timers. Acquiring again as the current holder answers its
//! lease unchanged (renewed, like a keep-alive). `breakGlass` skips the wait for a draining or
//! held lease and names what it displaced.
//!
//! A refusal is an answer, not a failure: 409 `{"ok": false, "error", "retryable", "refusal"}`,
//! `refusal` being one of
//! `{"kind": "HeldBy", "holder", "token", "ttlMs", "mayHoldForMs"}`,
//! `{"kind": "Draining", "holder", "token", "mayHoldForMs"}`,
//! `{"kind": "StaleToken", "presented", "current"}`, `{"kind": "NotHeld"}`,
//! `{"kind": "NotHolder", "holder"}` or `{"kind": "RegionFenced", "region", "reason"}` (the
//! holder's region was fenced by a failover and has not failed back). `retryable` says whether
//! asking again unchanged can succeed (a held or draining lease frees, a fenced region fails
//! back; a stale token never becomes current).
//!
//! Invariants: every field is checked here before anything is proposed, so bad input is a 4xx
//! ([`super::error`]) and never a log entry; names are held to the gRPC API's limit, so one
//! valid on either edge is valid on both. Reads and keep-alives wait for a quorum round, so a
//! follower answers 503 with `leaderHttpAddr` rather than a stale lease.

use arbiter_core::lease_table::{
    BreakGlass, LeaseCommand, LeaseLimits, LeaseOutcome, LeaseRefusal, LeaseState, ResourceLease,
    TokenValidity,
};
use arbiter_core::{FencingToken, HolderId, RegionId, ResourceId};
use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, ErrorBody, NotLeaderBody};
use super::validate::{self, MAX_REGION_LEN};
use super::{openapi, read, AppState};
use crate::auth::{holder_claim, lease_claims, Caller, Operation};
use crate::leases::LeaseManager;
use crate::node::NodeContext;

use arbiter_core::MAX_NAME_BYTES as MAX_LEASE_TEXT_LEN;

fn lease_text<'a>(field: &str, value: &'a str) -> Result<&'a str, ApiError> {
    validate::text(field, value, MAX_LEASE_TEXT_LEN)
}

fn holder(value: &str) -> Result<HolderId, ApiError> {
    Ok(HolderId::new(lease_text("holder", value)?))
}

/// The `{resource}` of the path, checked.
pub struct Resource(ResourceId);

impl<S: Send + Sync> FromRequestParts<S> for Resource {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(resource) = Path::<String>::from_request_parts(parts, state).await?;
        let resource = lease_text("resource", &resource)?;
        Ok(Resource(ResourceId::new(resource)))
    }
}

/// A command on one resource: the checked `{resource}` and the JSON body, in that order, so
/// a bad resource is named before a bad body.
pub struct LeaseRequest<T> {
    resource: ResourceId,
    body: T,
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for LeaseRequest<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let (mut parts, body) = request.into_parts();
        let Resource(resource) = Resource::from_request_parts(&mut parts, state).await?;
        let Json(body) = Json::<T>::from_request(Request::from_parts(parts, body), state).await?;
        Ok(LeaseRequest { resource, body })
    }
}

#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
enum LeaseStatus {
    Free,
    Held,
    Draining,
}

/// A resource's lease; `holder`, `token`, `ttlMs` and `region` are `null` while it is `FREE`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LeaseView {
    resource: ResourceId,
    state: LeaseStatus,
    holder: Option<HolderId>,
    token: Option<FencingToken>,
    ttl_ms: Option<u64>,
    /// The resource's fencing epoch; 0 for a resource never leased.
    epoch: FencingToken,
    region: Option<RegionId>,
    /// How long the holder may still believe it holds, by the leader's monotonic timers.
    may_hold_for_ms: u64,
}

impl LeaseView {
    /// `may_hold_for_ms` is filled in by [`LeaseView::fill_may_hold`]: the timers are not part
    /// of the table.
    pub(super) fn new(resource: ResourceId, row: Option<&ResourceLease>) -> Self {
        let (state, lease) = match row.map(|row| &row.lease) {
            None | Some(LeaseState::Free) => (LeaseStatus::Free, None),
            Some(LeaseState::Held(lease)) => (LeaseStatus::Held, Some(lease)),
            Some(LeaseState::Draining { lease, .. }) => (LeaseStatus::Draining, Some(lease)),
        };
        LeaseView {
            resource,
            state,
            holder: lease.map(|l| l.holder.clone()),
            token: lease.map(|l| l.token),
            ttl_ms: lease.map(|l| l.ttl_ms),
            epoch: row.map(|row| row.epoch).unwrap_or_default(),
            region: lease.and_then(|l| l.region.clone()),
            may_hold_for_ms: 0,
        }
    }

    /// How long the holder may still hold, by this node's lease timers. Called without the
    /// state's read guard: the expiry loop takes the timers, then the state.
    pub(super) fn fill_may_hold(&mut self, leases: &LeaseManager) {
        if self.holder.is_some() {
            self.may_hold_for_ms = leases.may_hold_for_ms(&self.resource);
        }
    }
}

/// The `{resource}` path parameter, as the document describes it.
const RESOURCE_PARAM: &str =
    "The fenced resource (at most 256 bytes); one path segment, so a `/` is sent as `%2F`";
/// The 409 of every lease operation.
const REFUSED: &str =
    "Refused by the lease table; `retryable` says whether asking again unchanged can succeed";

/// A resource's lease
#[utoipa::path(
    get,
    path = "/v1/leases/{resource}",
    operation_id = "getLease",
    tag = "leases",
    params(("resource" = String, Path, description = RESOURCE_PARAM, example = "db%2Forders")),
    responses(
        (status = 200, description = "The lease", body = LeaseView),
        (status = 422, description = "A blank or over-long resource name", body = ErrorBody),
        (status = 503, description = openapi::NOT_LEADER, body = NotLeaderBody),
        (status = 504, description = openapi::TIMEOUT, body = ErrorBody),
        (status = 500, description = openapi::INTERNAL, body = ErrorBody),
    ),
)]
pub async fn get(
    State(app): State<AppState>,
    Resource(resource): Resource,
) -> Result<Json<LeaseView>, ApiError> {
    let node = &app.node;
    let mut view = read(node, |machine| {
        Ok(LeaseView::new(
            resource.clone(),
            machine.leases.get(&resource),
        ))
    })
    .await?;
    view.fill_may_hold(&node.leases);
    Ok(Json(view))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({"holder": "proxy-us-east-1-a", "ttlMs": 3000, "region": "us-east-1"}))]
pub struct AcquireBody {
    #[schema(max_length = 256)]
    holder: String,
    /// Within the node's lease limits (by default 500 ms to 60 s).
    ttl_ms: u64,
    /// The holder's region, so the DR controller can fence a failed region's leases at once.
    /// Taken from the caller's identity when absent; when given it must be the identity's
    /// region (an identity bound to no region, such as an operator, cannot name one).
    region: Option<String>,
    break_glass: Option<BreakGlassBody>,
}

/// An operator's override of the wait for a draining or held lease (operator role only).
/// `operator` is kept for compatibility, checked for shape, then ignored: the failover log
/// records the authenticated caller.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BreakGlassBody {
    operator: String,
    reason: String,
}

impl AcquireBody {
    /// The command; a break-glass override is recorded as the authenticated caller's, whatever
    /// `breakGlass.operator` says (kept for compatibility, checked for shape, then ignored).
    fn into_command(
        self,
        resource: ResourceId,
        limits: &LeaseLimits,
        caller: &Caller,
    ) -> Result<LeaseCommand, ApiError> {
        let holder = holder(&self.holder)?;
        limits
            .validate_ttl(self.ttl_ms)
            .map_err(|e| ApiError::Invalid(format!("`ttlMs`: {e}")))?;
        // The holder's authenticated region, whatever the body says; a region named in the body
        // must be that one (checked by the binding rule, `lease_claims`).
        let region = match self.region.as_deref() {
            None => caller.region.as_deref().map(RegionId::new),
            Some(r) => Some(validate::text("region", r, MAX_REGION_LEN).map(RegionId::new)?),
        };
        let break_glass = self
            .break_glass
            .map(|bg| {
                lease_text("breakGlass.operator", &bg.operator)?;
                Ok::<_, ApiError>(BreakGlass {
                    operator: caller.identity.clone(),
                    reason: lease_text("breakGlass.reason", &bg.reason)?.to_string(),
                })
            })
            .transpose()?;
        Ok(LeaseCommand::Acquire {
            resource,
            holder,
            region,
            ttl_ms: self.ttl_ms,
            break_glass,
        })
    }
}

/// Acquire a lease
///
/// Grants the lease and a new fencing token, or answers the current holder's lease unchanged
/// (renewed, like a keep-alive). A lease is never granted while a previous holder may still
/// believe it holds it; `breakGlass` skips that wait and names what it displaced. A proxy
/// identity acquires only as its own holder and region.
#[utoipa::path(
    post,
    path = "/v1/leases/{resource}/acquire",
    operation_id = "acquireLease",
    tag = "leases",
    params(("resource" = String, Path, description = RESOURCE_PARAM, example = "db%2Forders")),
    request_body = AcquireBody,
    responses(
        (status = 200, description = "Granted (or already held by this holder)", body = Answer<Done>),
        (status = 400, description = openapi::BAD_REQUEST, body = ErrorBody),
        (status = 409, description = REFUSED, body = Answer<Refused>),
        (status = 422, description = openapi::INVALID, body = ErrorBody),
        (status = 503, description = openapi::NOT_LEADER, body = NotLeaderBody),
        (status = 504, description = openapi::TIMEOUT, body = ErrorBody),
        (status = 500, description = openapi::INTERNAL, body = ErrorBody),
    ),
)]
pub async fn acquire(
    State(app): State<AppState>,
    caller: Caller,
    LeaseRequest { resource, body }: LeaseRequest<AcquireBody>,
) -> Result<LeaseReply, ApiError> {
    let command = body.into_command(resource.clone(), &app.node.leases.limits(), &caller)?;
    authorize_lease(&app, &caller, &command)?;
    propose(&app.node, &resource, command).await
}

/// A holder presenting its lease: keep-alive and release.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"holder": "proxy-us-east-1-a", "token": 4096}))]
pub struct HolderBody {
    holder: String,
    token: u64,
}

/// Keep a lease alive
///
/// Renews in memory after a quorum round, as over gRPC: no log entry.
#[utoipa::path(
    post,
    path = "/v1/leases/{resource}/keepalive",
    operation_id = "keepAliveLease",
    tag = "leases",
    params(("resource" = String, Path, description = RESOURCE_PARAM, example = "db%2Forders")),
    request_body = HolderBody,
    responses(
        (status = 200, description = "Renewed for `ttlMs` from now", body = Answer<Done>),
        (status = 400, description = openapi::BAD_REQUEST, body = ErrorBody),
        (status = 409, description = REFUSED, body = Answer<Refused>),
        (status = 422, description = openapi::INVALID, body = ErrorBody),
        (status = 503, description = openapi::NOT_LEADER, body = NotLeaderBody),
        (status = 504, description = openapi::TIMEOUT, body = ErrorBody),
        (status = 500, description = openapi::INTERNAL, body = ErrorBody),
    ),
)]
pub async fn keep_alive(
    State(app): State<AppState>,
    caller: Caller,
    LeaseRequest { resource, body }: LeaseRequest<HolderBody>,
) -> Result<LeaseReply, ApiError> {
    let holder = holder(&body.holder)?;
    app.node
        .auth
        .authorize(&caller, Operation::LeaseWrite, holder_claim(&holder))?;
    let token = FencingToken(body.token);
    let node = &app.node;
    match node
        .leases
        .keep_alive(&resource, &holder, token)
        .await
        .map_err(|e| ApiError::write(node, e))?
    {
        Ok(ttl_ms) => Ok(LeaseReply::Done(Done {
            token: Some(token),
            ttl_ms: Some(ttl_ms),
            ..Done::default()
        })),
        Err(refusal) => LeaseReply::refused(&refusal, node.leases.may_hold_for_ms(&resource)),
    }
}

/// Release a lease
///
/// Frees it at once: the next acquire need not wait.
#[utoipa::path(
    post,
    path = "/v1/leases/{resource}/release",
    operation_id = "releaseLease",
    tag = "leases",
    params(("resource" = String, Path, description = RESOURCE_PARAM, example = "db%2Forders")),
    request_body = HolderBody,
    responses(
        (status = 200, description = "Released", body = Answer<Done>),
        (status = 400, description = openapi::BAD_REQUEST, body = ErrorBody),
        (status = 409, description = REFUSED, body = Answer<Refused>),
        (status = 422, description = openapi::INVALID, body = ErrorBody),
        (status = 503, description = openapi::NOT_LEADER, body = NotLeaderBody),
        (status = 504, description = openapi::TIMEOUT, body = ErrorBody),
        (status = 500, description = openapi::INTERNAL, body = ErrorBody),
    ),
)]
pub async fn release(
    State(app): State<AppState>,
    caller: Caller,
    LeaseRequest { resource, body }: LeaseRequest<HolderBody>,
) -> Result<LeaseReply, ApiError> {
    let command = LeaseCommand::Release {
        resource: resource.clone(),
        holder: holder(&body.holder)?,
        token: FencingToken(body.token),
    };
    authorize_lease(&app, &caller, &command)?;
    propose(&app.node, &resource, command).await
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"reason": "proxy-us-east-1-a is wedged"}))]
pub struct RevokeBody {
    reason: String,
    /// Kept for compatibility, checked for shape, then ignored.
    by: Option<String>,
}

/// Revoke a lease
///
/// Raises the epoch; the holder's lease drains until its deadline passes on the leader.
/// Recorded as revoked by the authenticated caller; `by` is kept for compatibility, checked for
/// shape, then ignored.
#[utoipa::path(
    post,
    path = "/v1/leases/{resource}/revoke",
    operation_id = "revokeLease",
    tag = "leases",
    params(("resource" = String, Path, description = RESOURCE_PARAM, example = "db%2Forders")),
    request_body = RevokeBody,
    responses(
        (status = 200, description = "Revoked: the new epoch and the lease it took away", body = Answer<Done>),
        (status = 400, description = openapi::BAD_REQUEST, body = ErrorBody),
        (status = 409, description = REFUSED, body = Answer<Refused>),
        (status = 422, description = openapi::INVALID, body = ErrorBody),
        (status = 503, description = openapi::NOT_LEADER, body = NotLeaderBody),
        (status = 504, description = openapi::TIMEOUT, body = ErrorBody),
        (status = 500, description = openapi::INTERNAL, body = ErrorBody),
    ),
)]
pub async fn revoke(
    State(app): State<AppState>,
    caller: Caller,
    LeaseRequest { resource, body }: LeaseRequest<RevokeBody>,
) -> Result<LeaseReply, ApiError> {
    if let Some(by) = &body.by {
        lease_text("by", by)?;
    }
    let command = LeaseCommand::Revoke {
        resource: resource.clone(),
        by: caller.identity,
        reason: lease_text("reason", &body.reason)?.to_string(),
    };
    propose(&app.node, &resource, command).await
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ValidateQuery {
    /// The fencing token a write carries.
    token: u64,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Validity {
    /// Whether writes carrying the token are authorised now: it is the `Held` lease's token.
    valid: bool,
    current_epoch: FencingToken,
}

/// Check a fencing token
///
/// Whether writes carrying `token` are authorised now, and the resource's current epoch.
#[utoipa::path(
    get,
    path = "/v1/leases/{resource}/validate",
    operation_id = "validateLeaseToken",
    tag = "leases",
    params(("resource" = String, Path, description = RESOURCE_PARAM, example = "db%2Forders"), ValidateQuery),
    responses(
        (status = 200, description = "The token's validity", body = Validity),
        (status = 400, description = "`token` missing or not a number", body = ErrorBody),
        (status = 422, description = "A blank or over-long resource name", body = ErrorBody),
        (status = 503, description = openapi::NOT_LEADER, body = NotLeaderBody),
        (status = 504, description = openapi::TIMEOUT, body = ErrorBody),
        (status = 500, description = openapi::INTERNAL, body = ErrorBody),
    ),
)]
pub async fn validate_token(
    State(app): State<AppState>,
    Resource(resource): Resource,
    query: Result<Query<ValidateQuery>, QueryRejection>,
) -> Result<Json<Validity>, ApiError> {
    let Query(query) = query?;
    read(&app.node, |machine| {
        let leases = &machine.leases;
        Ok(Json(Validity {
            valid: leases.validate_token(&resource, FencingToken(query.token))
                == TokenValidity::Current,
            current_epoch: leases.epoch(&resource).unwrap_or_default(),
        }))
    })
    .await
}

/// The binding check of a lease command: a proxy acts only for itself (the permission table's
/// rule; shared with the gRPC edge through [`lease_claims`]).
fn authorize_lease(
    app: &AppState,
    caller: &Caller,
    command: &LeaseCommand,
) -> Result<(), ApiError> {
    for (operation, claim) in lease_claims(command) {
        app.node.auth.authorize(caller, operation, claim)?;
    }
    Ok(())
}

/// Proposes a command on `resource` and answers its outcome.
async fn propose(
    node: &NodeContext,
    resource: &ResourceId,
    command: LeaseCommand,
) -> Result<LeaseReply, ApiError> {
    let outcome = node
        .leases
        .propose(command)
        .await
        .map_err(|e| ApiError::write(node, e))?;
    let done = match outcome {
        LeaseOutcome::Granted {
            token,
            ttl_ms,
            overrode,
        } => {
            let (displaced_holder, displaced_token) = overrode.unzip();
            Done {
                token: Some(token),
                ttl_ms: Some(ttl_ms),
                displaced_holder,
                displaced_token,
                ..Done::default()
            }
        }
        LeaseOutcome::AlreadyHeld { token, ttl_ms } => Done {
            token: Some(token),
            ttl_ms: Some(ttl_ms),
            ..Done::default()
        },
        LeaseOutcome::Released => Done::default(),
        LeaseOutcome::Revoked(revocation) => Done {
            epoch: Some(revocation.epoch),
            displaced_holder: Some(revocation.holder),
            displaced_token: Some(revocation.token),
            ..Done::default()
        },
        LeaseOutcome::Refused(refusal) => {
            return LeaseReply::refused(&refusal, node.leases.may_hold_for_ms(resource))
        }
        other @ (LeaseOutcome::RevokedMany(_)
        | LeaseOutcome::RegionFenceLifted(_)
        | LeaseOutcome::Fenced { .. }
        | LeaseOutcome::Expired { .. }) => {
            return Err(ApiError::Internal(format!(
                "a lease command on {resource} produced {other:?}"
            )))
        }
    };
    Ok(LeaseReply::Done(done))
}

/// The answer to a lease command: done (200) or refused by the table (409). Either way the
/// body says `ok`, so a script can branch on it as on the status.
pub enum LeaseReply {
    Done(Done),
    Refused(Refused),
}

/// What a command did; fields it does not produce are left out.
#[derive(Debug, Default, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Done {
    #[serde(skip_serializing_if = "Option::is_none")]
    token: Option<FencingToken>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ttl_ms: Option<u64>,
    /// The resource's new epoch, after a revoke.
    #[serde(skip_serializing_if = "Option::is_none")]
    epoch: Option<FencingToken>,
    /// The lease a revoke or break-glass acquire took away.
    #[serde(skip_serializing_if = "Option::is_none")]
    displaced_holder: Option<HolderId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    displaced_token: Option<FencingToken>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Refused {
    error: String,
    retryable: bool,
    refusal: RefusalView,
}

/// A `LeaseRefusal` as the API shows it: `kind` names the variant, its fields follow.
#[derive(Debug, Serialize, ToSchema)]
#[serde(tag = "kind")]
enum RefusalView {
    #[serde(rename_all = "camelCase")]
    HeldBy {
        holder: HolderId,
        token: FencingToken,
        ttl_ms: u64,
        may_hold_for_ms: u64,
    },
    #[serde(rename_all = "camelCase")]
    Draining {
        holder: HolderId,
        token: FencingToken,
        may_hold_for_ms: u64,
    },
    StaleToken {
        presented: FencingToken,
        current: FencingToken,
    },
    NotHeld,
    NotHolder {
        holder: HolderId,
    },
    /// The holder's region was fenced by a failover; nothing is granted in it until failback.
    RegionFenced {
        region: RegionId,
        reason: String,
    },
}

impl LeaseReply {
    /// A refusal, with how long (by the leader's timers) the holder may still hold.
    fn refused(refusal: &LeaseRefusal, may_hold_for_ms: u64) -> Result<LeaseReply, ApiError> {
        let view = match refusal.clone() {
            LeaseRefusal::HeldBy {
                holder,
                token,
                ttl_ms,
            } => RefusalView::HeldBy {
                holder,
                token,
                ttl_ms,
                may_hold_for_ms,
            },
            LeaseRefusal::Draining { holder, token } => RefusalView::Draining {
                holder,
                token,
                may_hold_for_ms,
            },
            LeaseRefusal::StaleToken { presented, current } => {
                RefusalView::StaleToken { presented, current }
            }
            LeaseRefusal::NotHeld => RefusalView::NotHeld,
            LeaseRefusal::NotHolder { holder } => RefusalView::NotHolder { holder },
            LeaseRefusal::RegionFenced { region, reason } => {
                RefusalView::RegionFenced { region, reason }
            }
            // Cannot happen with log-derived tokens; if it does, it is our bug, not the caller's.
            LeaseRefusal::TokenNotAdvanced { .. } => {
                return Err(ApiError::Internal(format!(
                    "lease table refused a non-advancing token: {refusal}"
                )))
            }
        };
        Ok(LeaseReply::Refused(Refused {
            error: refusal.to_string(),
            retryable: refusal.is_retryable(),
            refusal: view,
        }))
    }
}

/// `{"ok": .., ..reply}`: `ok` is true with what was done (200), false with the refusal (409).
#[derive(Serialize, ToSchema)]
pub struct Answer<T> {
    ok: bool,
    #[serde(flatten)]
    reply: T,
}

impl IntoResponse for LeaseReply {
    fn into_response(self) -> Response {
        match self {
            LeaseReply::Done(reply) => {
                (StatusCode::OK, Json(Answer { ok: true, reply })).into_response()
            }
            LeaseReply::Refused(reply) => {
                (StatusCode::CONFLICT, Json(Answer { ok: false, reply })).into_response()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, to_value};

    #[test]
    fn refusals_are_typed_json() {
        let Ok(LeaseReply::Refused(held)) = LeaseReply::refused(
            &LeaseRefusal::HeldBy {
                holder: HolderId::new("proxy-east"),
                token: FencingToken(4096),
                ttl_ms: 3_000,
            },
            2_500,
        ) else {
            panic!("HeldBy is a refusal");
        };
        assert_eq!(
            to_value(&held.refusal).expect("encodes"),
            json!({"kind": "HeldBy", "holder": "proxy-east", "token": 4096, "ttlMs": 3000,
                   "mayHoldForMs": 2500})
        );
        assert!(held.retryable);
        let Ok(LeaseReply::Refused(stale)) = LeaseReply::refused(
            &LeaseRefusal::StaleToken {
                presented: FencingToken(1),
                current: FencingToken(2),
            },
            0,
        ) else {
            panic!("StaleToken is a refusal");
        };
        assert_eq!(
            to_value(&stale.refusal).expect("encodes"),
            json!({"kind": "StaleToken", "presented": 1, "current": 2})
        );
        assert!(!stale.retryable);
        assert!(LeaseReply::refused(
            &LeaseRefusal::TokenNotAdvanced {
                minted: FencingToken(1),
                epoch: FencingToken(2),
            },
            0
        )
        .is_err());
    }

    #[test]
    fn bad_acquires_are_refused_before_proposing() {
        let limits = LeaseLimits::new(500, 60_000).expect("ordered limits");
        let body = |value: serde_json::Value| -> AcquireBody {
            serde_json::from_value(value).expect("well-formed body")
        };
        let caller = Caller {
            identity: "alice".into(),
            role: crate::auth::Role::Operator,
            region: None,
            vantage: None,
            credential: crate::auth::Credential::BearerToken,
        };
        let ok = body(json!({"holder": "h", "ttlMs": 1_000, "region": "us-east-1"}));
        assert!(ok
            .into_command(ResourceId::new("r"), &limits, &caller)
            .is_ok());
        for bad in [
            json!({"holder": " ", "ttlMs": 1_000}),
            json!({"holder": "h".repeat(MAX_LEASE_TEXT_LEN + 1), "ttlMs": 1_000}),
            json!({"holder": "h", "ttlMs": 499}),
            json!({"holder": "h", "ttlMs": 60_001}),
            json!({"holder": "h", "ttlMs": 1_000, "region": ""}),
            json!({"holder": "h", "ttlMs": 1_000, "breakGlass": {"operator": "", "reason": "r"}}),
            json!({"holder": "h", "ttlMs": 1_000, "breakGlass": {"operator": "o", "reason": " "}}),
        ] {
            assert!(
                matches!(
                    body(bad.clone()).into_command(ResourceId::new("r"), &limits, &caller),
                    Err(ApiError::Invalid(_))
                ),
                "{bad}"
            );
        }
    }
}
