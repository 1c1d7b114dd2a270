//! `arbiter serve --rejoin`: how a member that lost its data dir comes back without ever
//! voting with amnesia.
//!
//! Invariant: the node votes again only after it has been removed from the voters, re-added as
//! a learner (which hands it the cluster id), caught up from the leader, and promoted — each a
//! committed membership change through the leader. Every step first checks whether it is
//! already done, so an interrupted rejoin is finished by running it again.

use anyhow::anyhow;
use arbiter_client::proto::{AddLearnerRequest, ChangeMembershipRequest, NodeInfo};
use arbiter_client::ClientOptions;

use super::member::{client, leader, status_error};
use crate::grpc::cluster_service::fetch_status;
use crate::node::ReadyInfo;

/// Walks node `me` (serving, possibly empty) back into the cluster behind `endpoints`.
pub async fn run(
    me: &ReadyInfo,
    endpoints: &[String],
    options: &ClientOptions,
) -> anyhow::Result<()> {
    let id = me.node_id;
    let own = fetch_status(me.grpc_addr.clone(), options)
        .await
        .map_err(|e| anyhow!("cannot read this node's own status: {e}"))?;
    let current = leader(endpoints, options).await?;
    eprintln!(
        "rejoin: node {id} -> cluster {} (leader: node {} at {})",
        current.cluster_id, current.node_id, current.grpc_addr
    );
    let is_voter = current.voters.iter().any(|v| v.node_id == id);
    if is_voter && !own.cluster_id.is_empty() {
        // It kept (or already regained) its identity and is a voter: nothing was lost, or an
        // earlier run finished.
        eprintln!(
            "rejoin: node {id} is a voter of cluster {}; done",
            own.cluster_id
        );
        return Ok(());
    }

    if is_voter {
        eprintln!("rejoin step 1/3: removing node {id} (its lost state) from the voters");
        let voters = current
            .voters
            .iter()
            .map(|v| v.node_id)
            .filter(|v| *v != id)
            .collect();
        client(&current, options)?
            .change_membership(ChangeMembershipRequest { voters })
            .await
            .map_err(status_error)?;
    } else {
        eprintln!("rejoin step 1/3: node {id} is not a voter; nothing to remove");
    }

    let current = leader(endpoints, options).await?;
    eprintln!(
        "rejoin step 2/3: adding node {id} as a learner at {}; it catches up from the leader \
         (snapshot, then log)",
        me.grpc_addr
    );
    client(&current, options)?
        .add_learner(AddLearnerRequest {
            node: Some(NodeInfo {
                node_id: id,
                region: me.region.clone(),
                grpc_addr: me.grpc_addr.clone(),
                http_addr: me.http_addr.clone(),
                peer_addr: me.peer_addr.clone(),
            }),
        })
        .await
        .map_err(status_error)?;

    let current = leader(endpoints, options).await?;
    eprintln!("rejoin step 3/3: promoting node {id} to voter");
    let mut voters: Vec<u64> = current.voters.iter().map(|v| v.node_id).collect();
    if !voters.contains(&id) {
        voters.push(id);
        client(&current, options)?
            .change_membership(ChangeMembershipRequest { voters })
            .await
            .map_err(status_error)?;
    }
    eprintln!(
        "rejoin: node {id} is a voter of cluster {} again",
        current.cluster_id
    );
    Ok(())
}
