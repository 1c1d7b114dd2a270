//! The roles a credential can carry, and which of them are bound to a name or a region.
//!
//! Invariant: a bound role ([`Role::Proxy`], [`Role::Probe`], [`Role::Region`]) always comes
//! with the scope it is bound to (checked when the tokens file or identity table is loaded), so
//! the permission table never has to guess what a proxy, probe or region may speak for.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Membership, revoke, break-glass, manual failover/failback, tenant overrides; everything.
    Operator,
    /// An external DR controller: failover/failback, traffic shift, revoke, lease writes.
    Controller,
    /// A regional database proxy: its own leases only (holder = identity, its own region).
    Proxy,
    /// A probe agent: reports health only as its own vantage point.
    Probe,
    /// A region's replication agent: checkpoints and link heartbeats for its own region only.
    Region,
    /// Reads (GETs, lease lookups, routing watch).
    Reader,
    /// An edge router (`arbiter edge`): watches the routing table and reports, under its own
    /// name only, the routing version it applied and its requests in flight.
    Edge,
    /// A cluster node, by its certificate (a node identity signed by the cluster CA; never from
    /// a token): reads, and membership changes for `arbiter serve --rejoin`.
    Node,
}

/// What a bound role's requests must match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Not bound: the role's permissions do not depend on request fields.
    Unbound,
    /// The lease holder must be the identity's name and the lease region its region.
    HolderAndRegion,
    /// Probe reports must name the identity's vantage point.
    Vantage,
    /// Edge reports must name the identity itself.
    Name,
    /// Checkpoints and heartbeats must be for the identity's region.
    Region,
}

impl Role {
    /// The roles a token or certificate identity may be given in the config; [`Role::Node`]
    /// is not one of them (it comes only from a node certificate).
    pub const ALL: [Role; 7] = [
        Role::Operator,
        Role::Controller,
        Role::Proxy,
        Role::Probe,
        Role::Region,
        Role::Reader,
        Role::Edge,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Operator => "operator",
            Role::Controller => "controller",
            Role::Proxy => "proxy",
            Role::Probe => "probe",
            Role::Region => "region",
            Role::Reader => "reader",
            Role::Edge => "edge",
            Role::Node => "node",
        }
    }

    /// What this role's requests are bound to.
    pub fn scope(self) -> Scope {
        match self {
            Role::Proxy => Scope::HolderAndRegion,
            Role::Probe => Scope::Vantage,
            Role::Region => Scope::Region,
            Role::Edge => Scope::Name,
            Role::Operator | Role::Controller | Role::Reader | Role::Node => Scope::Unbound,
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Role::ALL.iter().map(|r| r.as_str()).collect();
                format!("unknown role {s:?} (one of: {})", names.join(", "))
            })
    }
}
