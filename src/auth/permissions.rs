//! The permission table: every gRPC method and HTTP route, the operation it is, which roles may
//! perform it, and the binding rule for roles tied to a holder, vantage point or region.
//!
//! | operation | gRPC | HTTP | roles |
//! |---|---|---|---|
//! | `Read` | `ClusterService/GetStatus` (also on the peer port), `LeaseService/{Get,CurrentEpoch,ValidateToken}`, `RoutingService/*`, `ReplicationCoordinator/GetSyncMetrics`, `grpc.reflection.{v1,v1alpha}.ServerReflection/*` | every `GET` except the public ones | all roles |
//! | `Initialize` | `ClusterService/Initialize` | — | operator |
//! | `Membership` | `ClusterService/{AddLearner,ChangeMembership}` | — | operator, node (`serve --rejoin`) |
//! | `Backup` | `ClusterService/SaveSnapshot` | — | operator |
//! | `LeaderMove` | — | `POST /v1/cluster/leader` | operator |
//! | `LeaseWrite` | `LeaseService/{Acquire,KeepAlive,KeepAliveStream,Release}` | `POST /v1/leases/{r}/{acquire,keepalive,release}` | operator, controller, proxy (bound), region (bound: a db-agent holds its region's write lease) |
//! | `BreakGlass` | `Acquire` with `break_glass` | `acquire` with `breakGlass` | operator |
//! | `LeaseRevoke` | `LeaseService/Revoke` | `POST /v1/leases/{r}/revoke` | operator, controller |
//! | `Failover` | — | `POST /v1/dr/{failover,failback}` | operator, controller |
//! | `TrafficShift` | — | `POST /v1/dr/traffic-shift` | operator, controller |
//! | `TenantWrite` | — | `PUT /v1/tenants/{id}`, `POST /v1/tenants/{id}/active` | operator |
//! | `LinkWrite` | — | `PUT /v1/replication/links` | operator |
//! | `LinkHeartbeat` | — | `POST /v1/replication/links/heartbeat` | operator, region (bound) |
//! | `ReportCheckpoint` | `ReplicationCoordinator/ReportCheckpoint` | — | operator, region (bound) |
//! | `ProbeReport` | — | `POST /v1/probes/report` | operator, probe (bound) |
//! | `EdgeReport` | — | `POST /v1/edges/report` | operator, edge (bound: reports only as itself) |
//! | `Unlisted` | any method not above | any route not above | operator |
//! | public | `grpc.health.v1.Health/*` | `GET /v1/health/check`, `GET /livez`, `GET /readyz`, `GET /v1/openapi.json` (describes the API, holds no data); `GET /ui`, `GET /ui/app.{js,css}` (static assets; the data comes from authenticated API calls) | no credentials |
//! | peer | `RaftService/*`, `ClusterService/JoinCluster` | — | peer port only: node-to-node, authenticated by its mTLS (node certificates only); refused on the client ports |
//!
//! Binding rule (operations marked "bound"): a proxy may act only on leases whose holder is its
//! identity name and whose region, when given, is its region (a proxy's lease always carries
//! its region: the edges fill it in from the identity); an identity bound to no region may take
//! only leases without one (a lease's region comes from its holder's identity, never from a
//! request field); a probe may report only as its vantage point; a region identity may report
//! only its own region. Other roles are not bound.
//!
//! The peer port serves only `peer` methods and `GetStatus` (the bootstrap survey); the client
//! ports serve everything else. A node certificate (DNS SAN `arbiter-node-<id>`, signed by the
//! cluster CA) presented on a client port is the identity `node-<id>` with role `node`.
//!
//! A region identity is also bound like a proxy for lease writes: holder = its identity name,
//! region = its region (`arbiter db-agent` holds its region's write lease and reports its
//! database's replication progress under one identity).
//!
//! Invariants: this file is the only place that says who may do what; anything not listed needs
//! an operator (fail closed); a bound role whose request states no claim is refused.

use arbiter_core::lease_table::LeaseCommand;
use arbiter_core::{HolderId, RegionId};

use super::caller::Caller;
use super::role::{Role, Scope};

/// What a request does, as far as permissions go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Read,
    Initialize,
    Membership,
    LeaseWrite,
    BreakGlass,
    LeaseRevoke,
    Failover,
    TrafficShift,
    TenantWrite,
    LinkWrite,
    LinkHeartbeat,
    ReportCheckpoint,
    ProbeReport,
    EdgeReport,
    Backup,
    LeaderMove,
    Unlisted,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Read => "read",
            Operation::Initialize => "initialize",
            Operation::Membership => "membership",
            Operation::LeaseWrite => "lease-write",
            Operation::BreakGlass => "break-glass",
            Operation::LeaseRevoke => "lease-revoke",
            Operation::Failover => "failover",
            Operation::TrafficShift => "traffic-shift",
            Operation::TenantWrite => "tenant-write",
            Operation::LinkWrite => "link-write",
            Operation::LinkHeartbeat => "link-heartbeat",
            Operation::ReportCheckpoint => "report-checkpoint",
            Operation::ProbeReport => "probe-report",
            Operation::EdgeReport => "edge-report",
            Operation::Backup => "backup",
            Operation::LeaderMove => "leader-move",
            Operation::Unlisted => "unlisted",
        }
    }

    /// The roles that may perform this operation.
    pub fn roles(self) -> &'static [Role] {
        use Role::*;
        match self {
            Operation::Read => &[
                Operator, Controller, Proxy, Probe, Region, Reader, Edge, Node,
            ],
            Operation::Membership => &[Operator, Node],
            Operation::LeaseWrite => &[Operator, Controller, Proxy, Region],
            Operation::LeaseRevoke | Operation::Failover | Operation::TrafficShift => {
                &[Operator, Controller]
            }
            Operation::LinkHeartbeat | Operation::ReportCheckpoint => &[Operator, Region],
            Operation::ProbeReport => &[Operator, Probe],
            Operation::EdgeReport => &[Operator, Edge],
            Operation::Initialize
            | Operation::Backup
            | Operation::LeaderMove
            | Operation::BreakGlass
            | Operation::TenantWrite
            | Operation::LinkWrite
            | Operation::Unlisted => &[Operator],
        }
    }

    /// Whether bound roles are held to their scope for this operation (reads are not).
    fn binds(self) -> bool {
        matches!(
            self,
            Operation::LeaseWrite
                | Operation::LinkHeartbeat
                | Operation::ReportCheckpoint
                | Operation::ProbeReport
                | Operation::EdgeReport
        )
    }
}

impl std::fmt::Display for Operation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who may reach an endpoint at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No credentials needed (health checks polled by load balancers and probes).
    Public,
    /// Node-to-node calls, served on the peer port only, where the transport authenticates
    /// them (mTLS with node certificates); refused on the client ports.
    Peer,
    /// Served on the peer port to nodes too, and on the client ports as the operation.
    PeerOr(Operation),
    Requires(Operation),
}

/// An endpoint asked for on a kind of port that does not serve it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not served on the {} port", match .edge { Edge::Client => "client", Edge::Peer => "peer" })]
pub struct WrongPort {
    pub edge: Edge,
}

/// Which kind of port a request came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edge {
    /// Client gRPC or client HTTP: callers authenticate by token or certificate.
    Client,
    /// The peer port: only nodes get through its handshake.
    Peer,
}

impl Access {
    /// What `edge` requires for this access: `Ok(None)` lets the request in without a caller,
    /// `Ok(Some(operation))` needs an authenticated caller allowed to perform it, `Err` means
    /// the endpoint is not served on this kind of port.
    pub fn on(self, edge: Edge) -> Result<Option<Operation>, WrongPort> {
        match (edge, self) {
            (_, Access::Public) | (Edge::Peer, Access::Peer | Access::PeerOr(_)) => Ok(None),
            (Edge::Client, Access::Requires(op) | Access::PeerOr(op)) => Ok(Some(op)),
            (Edge::Client, Access::Peer) | (Edge::Peer, Access::Requires(_)) => {
                Err(WrongPort { edge })
            }
        }
    }
}

/// gRPC methods, by path.
const GRPC: &[(&str, Access)] = &[
    (
        "/arbiter.v1.ClusterService/Initialize",
        Access::Requires(Operation::Initialize),
    ),
    (
        "/arbiter.v1.ClusterService/AddLearner",
        Access::Requires(Operation::Membership),
    ),
    (
        "/arbiter.v1.ClusterService/ChangeMembership",
        Access::Requires(Operation::Membership),
    ),
    (
        "/arbiter.v1.ClusterService/GetStatus",
        Access::PeerOr(Operation::Read),
    ),
    ("/arbiter.v1.ClusterService/JoinCluster", Access::Peer),
    (
        "/arbiter.v1.ClusterService/SaveSnapshot",
        Access::Requires(Operation::Backup),
    ),
    (
        "/arbiter.v1.LeaseService/Acquire",
        Access::Requires(Operation::LeaseWrite),
    ),
    (
        "/arbiter.v1.LeaseService/KeepAlive",
        Access::Requires(Operation::LeaseWrite),
    ),
    (
        "/arbiter.v1.LeaseService/KeepAliveStream",
        Access::Requires(Operation::LeaseWrite),
    ),
    (
        "/arbiter.v1.LeaseService/Release",
        Access::Requires(Operation::LeaseWrite),
    ),
    (
        "/arbiter.v1.LeaseService/Revoke",
        Access::Requires(Operation::LeaseRevoke),
    ),
    (
        "/arbiter.v1.LeaseService/Get",
        Access::Requires(Operation::Read),
    ),
    (
        "/arbiter.v1.LeaseService/CurrentEpoch",
        Access::Requires(Operation::Read),
    ),
    (
        "/arbiter.v1.LeaseService/ValidateToken",
        Access::Requires(Operation::Read),
    ),
    (
        "/arbiter.v1.RoutingService/Watch",
        Access::Requires(Operation::Read),
    ),
    (
        "/arbiter.v1.RoutingService/GetTenant",
        Access::Requires(Operation::Read),
    ),
    (
        "/codesprintpro.dr.replication.v1.ReplicationCoordinator/ReportCheckpoint",
        Access::Requires(Operation::ReportCheckpoint),
    ),
    (
        "/codesprintpro.dr.replication.v1.ReplicationCoordinator/GetSyncMetrics",
        Access::Requires(Operation::Read),
    ),
];

/// gRPC services every method of which has the same access.
const GRPC_SERVICES: &[(&str, Access)] = &[
    ("/arbiter.raft.v1.RaftService/", Access::Peer),
    ("/grpc.health.v1.Health/", Access::Public),
    (
        "/grpc.reflection.v1.ServerReflection/",
        Access::Requires(Operation::Read),
    ),
    (
        "/grpc.reflection.v1alpha.ServerReflection/",
        Access::Requires(Operation::Read),
    ),
];

/// HTTP routes (axum route templates), by method.
const HTTP: &[(&str, &str, Access)] = &[
    ("GET", "/v1/health/check", Access::Public),
    ("GET", "/livez", Access::Public),
    ("GET", "/readyz", Access::Public),
    ("GET", "/v1/openapi.json", Access::Public),
    // The dashboard's static assets; the data comes from authenticated API calls.
    ("GET", "/ui", Access::Public),
    ("GET", "/ui/app.js", Access::Public),
    ("GET", "/ui/app.css", Access::Public),
    ("GET", "/v1/dashboard", Access::Requires(Operation::Read)),
    ("GET", "/metrics", Access::Requires(Operation::Read)),
    (
        "GET",
        "/v1/cluster/status",
        Access::Requires(Operation::Read),
    ),
    (
        "POST",
        "/v1/cluster/leader",
        Access::Requires(Operation::LeaderMove),
    ),
    (
        "GET",
        "/v1/dr/tasks/{id}",
        Access::Requires(Operation::Read),
    ),
    ("GET", "/v1/plan", Access::Requires(Operation::Read)),
    ("GET", "/v1/regions", Access::Requires(Operation::Read)),
    ("GET", "/v1/tenants", Access::Requires(Operation::Read)),
    ("GET", "/v1/tenants/{id}", Access::Requires(Operation::Read)),
    (
        "GET",
        "/v1/failover-events",
        Access::Requires(Operation::Read),
    ),
    (
        "GET",
        "/v1/failover-events/{id}",
        Access::Requires(Operation::Read),
    ),
    (
        "GET",
        "/v1/replication/links",
        Access::Requires(Operation::Read),
    ),
    (
        "GET",
        "/v1/leases/{resource}",
        Access::Requires(Operation::Read),
    ),
    (
        "GET",
        "/v1/leases/{resource}/validate",
        Access::Requires(Operation::Read),
    ),
    (
        "POST",
        "/v1/dr/traffic-shift",
        Access::Requires(Operation::TrafficShift),
    ),
    (
        "POST",
        "/v1/dr/failover",
        Access::Requires(Operation::Failover),
    ),
    (
        "POST",
        "/v1/dr/failback",
        Access::Requires(Operation::Failover),
    ),
    (
        "POST",
        "/v1/probes/report",
        Access::Requires(Operation::ProbeReport),
    ),
    (
        "POST",
        "/v1/edges/report",
        Access::Requires(Operation::EdgeReport),
    ),
    ("GET", "/v1/edges", Access::Requires(Operation::Read)),
    (
        "PUT",
        "/v1/tenants/{id}",
        Access::Requires(Operation::TenantWrite),
    ),
    (
        "POST",
        "/v1/tenants/{id}/active",
        Access::Requires(Operation::TenantWrite),
    ),
    (
        "PUT",
        "/v1/replication/links",
        Access::Requires(Operation::LinkWrite),
    ),
    (
        "POST",
        "/v1/replication/links/heartbeat",
        Access::Requires(Operation::LinkHeartbeat),
    ),
    (
        "POST",
        "/v1/leases/{resource}/acquire",
        Access::Requires(Operation::LeaseWrite),
    ),
    (
        "POST",
        "/v1/leases/{resource}/keepalive",
        Access::Requires(Operation::LeaseWrite),
    ),
    (
        "POST",
        "/v1/leases/{resource}/release",
        Access::Requires(Operation::LeaseWrite),
    ),
    (
        "POST",
        "/v1/leases/{resource}/revoke",
        Access::Requires(Operation::LeaseRevoke),
    ),
];

/// The access a gRPC method path needs.
pub fn grpc_access(path: &str) -> Access {
    GRPC.iter()
        .find(|(p, _)| *p == path)
        .or_else(|| {
            GRPC_SERVICES
                .iter()
                .find(|(prefix, _)| path.starts_with(prefix))
        })
        .map(|(_, access)| *access)
        .unwrap_or(Access::Requires(Operation::Unlisted))
}

/// The access an HTTP method on a route template needs.
pub fn http_access(method: &str, route: &str) -> Access {
    HTTP.iter()
        .find(|(m, r, _)| *m == method && *r == route)
        .map(|(_, _, access)| *access)
        .unwrap_or(Access::Requires(Operation::Unlisted))
}

/// Every HTTP (method, route template) the table has a row for: the routes the server serves
/// (`crate::http`'s tests hold the router to this list, and the list to the router).
pub fn http_routes() -> impl Iterator<Item = (&'static str, &'static str)> {
    HTTP.iter().map(|(method, route, _)| (*method, *route))
}

/// What a request claims to act for; compared with a bound caller's scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim<'a> {
    /// The request states nothing a role could be bound to.
    Nothing,
    Lease {
        holder: &'a str,
        region: Option<&'a str>,
    },
    Vantage(&'a str),
    Region(&'a str),
    /// An edge report names the edge it comes from.
    Edge(&'a str),
}

/// The claim of a keep-alive: its holder (keep-alives carry no region).
pub fn holder_claim(holder: &HolderId) -> Claim<'_> {
    Claim::Lease {
        holder: holder.as_str(),
        region: None,
    }
}

/// What a lease command asks to do, for either edge: acquire and release are `LeaseWrite` for
/// their holder (and region), a break-glass acquire is also `BreakGlass`, a revoke is
/// `LeaseRevoke`; the leader's own commands (fence, expire, region revoke) are not for clients.
pub fn lease_claims(command: &LeaseCommand) -> Vec<(Operation, Claim<'_>)> {
    match command {
        LeaseCommand::Acquire {
            holder,
            region,
            break_glass,
            ..
        } => {
            let mut claims = vec![(
                Operation::LeaseWrite,
                Claim::Lease {
                    holder: holder.as_str(),
                    region: region.as_ref().map(RegionId::as_str),
                },
            )];
            if break_glass.is_some() {
                claims.push((Operation::BreakGlass, Claim::Nothing));
            }
            claims
        }
        LeaseCommand::Release { holder, .. } => vec![(Operation::LeaseWrite, holder_claim(holder))],
        LeaseCommand::Revoke { .. } => vec![(Operation::LeaseRevoke, Claim::Nothing)],
        LeaseCommand::RevokeRegion { .. }
        | LeaseCommand::LiftRegionFence { .. }
        | LeaseCommand::Fence { .. }
        | LeaseCommand::Expire { .. } => {
            vec![(Operation::Unlisted, Claim::Nothing)]
        }
    }
}

/// Why an authenticated caller was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DenialReason {
    #[error("role {role} may not perform {operation}")]
    Role { role: Role, operation: Operation },
    #[error("{field} {claimed:?} is not this identity's ({own:?})")]
    NotOwn {
        field: &'static str,
        claimed: String,
        own: String,
    },
    #[error("a {role} identity must state its {field} for {operation}")]
    NoClaim {
        role: Role,
        field: &'static str,
        operation: Operation,
    },
    /// A lease's region is its holder's authenticated region; an identity bound to none (an
    /// operator, a controller) cannot take a lease that a regional fence would have to revoke.
    #[error(
        "a {role} identity is bound to no region, so it cannot take a lease scoped to region \
         {region:?}; a proxy identity of that region must"
    )]
    NoRegion { role: Role, region: String },
}

/// Whether `role` may perform `operation` at all (the layer's check, before any request field
/// is read).
pub fn permits(role: Role, operation: Operation) -> bool {
    operation.roles().contains(&role)
}

/// The whole check: role, then the binding rule against what the request claims.
pub fn authorize(
    caller: &Caller,
    operation: Operation,
    claim: Claim<'_>,
) -> Result<(), DenialReason> {
    if !permits(caller.role, operation) {
        return Err(DenialReason::Role {
            role: caller.role,
            operation,
        });
    }
    if !operation.binds() {
        return Ok(());
    }
    let own = |field: &'static str, own: &Option<String>, claimed: &str| {
        if own.as_deref() == Some(claimed) {
            Ok(())
        } else {
            Err(DenialReason::NotOwn {
                field,
                claimed: claimed.to_string(),
                own: own.clone().unwrap_or_default(),
            })
        }
    };
    let no_claim = |field| DenialReason::NoClaim {
        role: caller.role,
        field,
        operation,
    };
    match (caller.role.scope(), claim) {
        (
            Scope::Unbound,
            Claim::Lease {
                region: Some(region),
                ..
            },
        ) => Err(DenialReason::NoRegion {
            role: caller.role,
            region: region.to_string(),
        }),
        (Scope::Unbound, _) => Ok(()),
        (Scope::HolderAndRegion, Claim::Lease { holder, region }) => {
            own("holder", &Some(caller.identity.clone()), holder)?;
            match region {
                Some(region) => own("region", &caller.region, region),
                None => Ok(()),
            }
        }
        (Scope::HolderAndRegion, _) => Err(no_claim("holder")),
        (Scope::Vantage, Claim::Vantage(vantage)) => own("vantage", &caller.vantage, vantage),
        (Scope::Vantage, _) => Err(no_claim("vantage")),
        // A db-agent: the write lease of its own region, held under its own name.
        (Scope::Region, Claim::Lease { holder, region }) => {
            own("holder", &Some(caller.identity.clone()), holder)?;
            match region {
                Some(region) => own("region", &caller.region, region),
                None => Ok(()),
            }
        }
        (Scope::Region, Claim::Region(region)) => own("region", &caller.region, region),
        (Scope::Region, _) => Err(no_claim("region")),
        (Scope::Name, Claim::Edge(name)) => own("edge", &Some(caller.identity.clone()), name),
        (Scope::Name, _) => Err(no_claim("edge")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::caller::Credential;

    fn caller(identity: &str, role: Role) -> Caller {
        Caller {
            identity: identity.into(),
            role,
            region: matches!(role, Role::Proxy | Role::Region).then(|| "us-east-1".into()),
            vantage: (role == Role::Probe).then(|| "london".into()),
            credential: Credential::BearerToken,
        }
    }

    #[test]
    fn proxy_acts_only_for_its_own_holder_and_region() {
        let proxy = caller("proxy-east", Role::Proxy);
        let lease = |holder, region| Claim::Lease { holder, region };
        assert_eq!(
            authorize(
                &proxy,
                Operation::LeaseWrite,
                lease("proxy-east", Some("us-east-1"))
            ),
            Ok(())
        );
        assert_eq!(
            authorize(&proxy, Operation::LeaseWrite, lease("proxy-east", None)),
            Ok(())
        );
        assert!(matches!(
            authorize(&proxy, Operation::LeaseWrite, lease("proxy-west", None)),
            Err(DenialReason::NotOwn {
                field: "holder",
                ..
            })
        ));
        assert!(matches!(
            authorize(
                &proxy,
                Operation::LeaseWrite,
                lease("proxy-east", Some("us-west-2"))
            ),
            Err(DenialReason::NotOwn {
                field: "region",
                ..
            })
        ));
        assert!(matches!(
            authorize(&proxy, Operation::LeaseWrite, Claim::Nothing),
            Err(DenialReason::NoClaim { .. })
        ));
        assert!(matches!(
            authorize(&proxy, Operation::LeaseRevoke, lease("proxy-east", None)),
            Err(DenialReason::Role { .. })
        ));
    }

    /// Issue 11, item 3a: a lease's region is its holder's identity's, so an identity bound to
    /// no region cannot take a lease a regional fence would have to find.
    #[test]
    fn an_identity_without_a_region_cannot_take_a_region_scoped_lease() {
        let lease = |holder, region| Claim::Lease { holder, region };
        for role in [Role::Operator, Role::Controller] {
            let unbound = caller("alice", role);
            assert_eq!(
                authorize(
                    &unbound,
                    Operation::LeaseWrite,
                    lease("proxy-west", Some("us-west-2"))
                ),
                Err(DenialReason::NoRegion {
                    role,
                    region: "us-west-2".into()
                })
            );
            assert_eq!(
                authorize(&unbound, Operation::LeaseWrite, lease("proxy-west", None)),
                Ok(()),
                "a lease with no region is not region-scoped"
            );
        }
    }

    #[test]
    fn probe_reports_only_as_its_vantage_and_region_only_for_itself() {
        let probe = caller("probe-london", Role::Probe);
        assert_eq!(
            authorize(&probe, Operation::ProbeReport, Claim::Vantage("london")),
            Ok(())
        );
        assert!(authorize(&probe, Operation::ProbeReport, Claim::Vantage("tokyo")).is_err());
        let region = caller("agent-east", Role::Region);
        assert_eq!(
            authorize(
                &region,
                Operation::ReportCheckpoint,
                Claim::Region("us-east-1")
            ),
            Ok(())
        );
        assert!(authorize(
            &region,
            Operation::ReportCheckpoint,
            Claim::Region("us-west-2")
        )
        .is_err());
        assert!(authorize(
            &region,
            Operation::LinkHeartbeat,
            Claim::Region("eu-central-1")
        )
        .is_err());
    }

    /// Issue 11, item 2: a db-agent's region identity holds its own region's write lease,
    /// under its own name, and no other.
    #[test]
    fn a_region_identity_takes_only_its_own_regions_lease_under_its_own_name() {
        let agent = caller("agent-east", Role::Region);
        let lease = |holder, region| Claim::Lease { holder, region };
        assert_eq!(
            authorize(
                &agent,
                Operation::LeaseWrite,
                lease("agent-east", Some("us-east-1"))
            ),
            Ok(())
        );
        assert!(authorize(
            &agent,
            Operation::LeaseWrite,
            lease("agent-east", Some("us-west-2"))
        )
        .is_err());
        assert!(authorize(&agent, Operation::LeaseWrite, lease("agent-west", None)).is_err());
        assert!(authorize(&agent, Operation::LeaseRevoke, Claim::Nothing).is_err());
    }

    #[test]
    fn reads_are_open_to_every_role_and_bound_roles_need_no_claim_to_read() {
        for role in Role::ALL {
            assert_eq!(
                authorize(&caller("x", role), Operation::Read, Claim::Nothing),
                Ok(())
            );
        }
    }

    #[test]
    fn operator_is_unbound_and_reader_may_only_read() {
        let operator = caller("alice", Role::Operator);
        let reader = caller("dash", Role::Reader);
        // Any holder; but no region, which only a holder's own identity can give a lease (see
        // `an_identity_without_a_region_cannot_take_a_region_scoped_lease`).
        for (op, claim) in [
            (
                Operation::LeaseWrite,
                Claim::Lease {
                    holder: "anyone",
                    region: None,
                },
            ),
            (Operation::ProbeReport, Claim::Vantage("tokyo")),
            (Operation::Membership, Claim::Nothing),
            (Operation::Unlisted, Claim::Nothing),
        ] {
            assert_eq!(authorize(&operator, op, claim), Ok(()));
            assert!(
                authorize(&reader, op, claim).is_err(),
                "reader may not {op}"
            );
        }
    }

    /// The proto files every gRPC service of this crate is generated from.
    const PROTOS: [&str; 5] = [
        include_str!("../../proto/arbiter/v1/cluster.proto"),
        include_str!("../../proto/arbiter/v1/lease.proto"),
        include_str!("../../proto/arbiter/v1/raft.proto"),
        include_str!("../../proto/arbiter/v1/routing.proto"),
        include_str!("../../proto/codesprintpro/dr/replication/v1/replication.proto"),
    ];

    /// Every method path (`/package.Service/Method`) a proto file declares.
    fn rpc_paths(proto: &str) -> Vec<String> {
        let mut package = "";
        let mut service = "";
        let mut paths = Vec::new();
        for line in proto.lines().map(str::trim) {
            if let Some(rest) = line.strip_prefix("package ") {
                package = rest.trim_end_matches(';').trim();
            } else if let Some(rest) = line.strip_prefix("service ") {
                service = rest.trim_end_matches('{').trim();
            } else if let Some(rest) = line.strip_prefix("rpc ") {
                let method = rest.split('(').next().unwrap_or_default().trim();
                paths.push(format!("/{package}.{service}/{method}"));
            }
        }
        paths
    }

    /// The paths without a row of their own (an exact method or a whole-service entry), which
    /// would fall through to the operator-only default.
    fn without_a_row(paths: &[String]) -> Vec<String> {
        paths
            .iter()
            .filter(|path| {
                !GRPC.iter().any(|(p, _)| p == path)
                    && !GRPC_SERVICES
                        .iter()
                        .any(|(prefix, _)| path.starts_with(prefix))
            })
            .cloned()
            .collect()
    }

    /// Every method of every generated service has a row: a new RPC cannot ship without a
    /// decision about who may call it. The paths come from the proto files and are pinned to
    /// the generated service names, so a renamed package cannot slip past either.
    #[test]
    fn every_generated_method_has_a_row() {
        use arbiter_client::proto::{
            cluster_service_server, lease_service_server, replication, routing_service_server,
        };
        let paths: Vec<String> = PROTOS.iter().flat_map(|p| rpc_paths(p)).collect();
        for name in [
            cluster_service_server::SERVICE_NAME,
            lease_service_server::SERVICE_NAME,
            routing_service_server::SERVICE_NAME,
            replication::replication_coordinator_server::SERVICE_NAME,
            crate::grpc::raft_proto::raft_service_server::SERVICE_NAME,
        ] {
            let prefix = format!("/{name}/");
            assert!(
                paths.iter().any(|p| p.starts_with(&prefix)),
                "no method of {name} parsed from the proto files"
            );
        }
        assert!(paths.len() >= 20, "too few methods parsed: {paths:?}");
        assert_eq!(without_a_row(&paths), Vec::<String>::new());
    }

    /// Negative control for the check above: a method nobody decided on is reported.
    #[test]
    fn a_method_without_a_row_is_reported() {
        let proto = "package arbiter.v1;\nservice ClusterService {\n  rpc GetStatus(A) returns (B);\n  rpc Forgotten(A) returns (B);\n}\n";
        assert_eq!(
            without_a_row(&rpc_paths(proto)),
            vec!["/arbiter.v1.ClusterService/Forgotten".to_string()]
        );
    }

    #[test]
    fn the_dashboard_page_is_public_and_its_data_is_a_read() {
        for asset in ["/ui", "/ui/app.js", "/ui/app.css"] {
            assert_eq!(http_access("GET", asset), Access::Public, "{asset}");
        }
        assert_eq!(
            http_access("GET", "/v1/dashboard"),
            Access::Requires(Operation::Read)
        );
    }

    #[test]
    fn peer_methods_are_served_only_on_the_peer_port() {
        let join = grpc_access("/arbiter.v1.ClusterService/JoinCluster");
        assert_eq!(join, Access::Peer);
        assert_eq!(join.on(Edge::Peer), Ok(None));
        assert!(
            join.on(Edge::Client).is_err(),
            "JoinCluster on a client port"
        );
        let raft = grpc_access("/arbiter.raft.v1.RaftService/Vote");
        assert!(raft.on(Edge::Client).is_err(), "Raft on a client port");
        let status = grpc_access("/arbiter.v1.ClusterService/GetStatus");
        assert_eq!(status.on(Edge::Peer), Ok(None));
        assert_eq!(status.on(Edge::Client), Ok(Some(Operation::Read)));
        let backup = grpc_access("/arbiter.v1.ClusterService/SaveSnapshot");
        assert_eq!(backup.on(Edge::Client), Ok(Some(Operation::Backup)));
        assert!(
            backup.on(Edge::Peer).is_err(),
            "a backup through the peer port"
        );
        assert!(permits(Role::Operator, Operation::Backup));
        assert!(!permits(Role::Node, Operation::Backup));
        assert!(permits(Role::Node, Operation::Membership));
        assert!(!permits(Role::Reader, Operation::Membership));
    }

    #[test]
    fn every_route_is_listed_and_unlisted_ones_need_an_operator() {
        assert_eq!(
            grpc_access("/arbiter.raft.v1.RaftService/AppendEntries"),
            Access::Peer
        );
        assert_eq!(grpc_access("/grpc.health.v1.Health/Check"), Access::Public);
        assert_eq!(
            grpc_access("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"),
            Access::Requires(Operation::Read)
        );
        assert_eq!(
            grpc_access("/arbiter.v1.LeaseService/Release"),
            Access::Requires(Operation::LeaseWrite)
        );
        assert_eq!(grpc_access("/x.Y/Z"), Access::Requires(Operation::Unlisted));
        assert_eq!(http_access("GET", "/v1/health/check"), Access::Public);
        assert_eq!(
            http_access("POST", "/v1/leases/{resource}/revoke"),
            Access::Requires(Operation::LeaseRevoke)
        );
        assert_eq!(
            http_access("DELETE", "/v1/tenants/{id}"),
            Access::Requires(Operation::Unlisted)
        );
    }
}
