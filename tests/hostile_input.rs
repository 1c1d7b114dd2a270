//! Hostile bytes against a real node: a forged AppendEntries whose length prefix claims more
//! memory than exists gets an error, and the node keeps serving. The bytes come through the
//! front door a compromised or buggy peer would use: the peer port, with a node certificate
//! of the cluster CA and the cluster's id.

mod common;

use std::time::Duration;

use arbiter::grpc::raft_proto::raft_service_client::RaftServiceClient;
use arbiter::grpc::raft_proto::RaftPayload;
use arbiter::identity::CLUSTER_ID_HEADER;
use arbiter::raft_types::TypeConfig;
use arbiter::tls::{self, Alpn};
use arbiter_core::command::{Batch, Command};
use arbiter_core::lease_table::LeaseCommand;
use arbiter_core::{FencingToken, HolderId, ResourceId, WallMillis};
use common::*;
use openraft::raft::AppendEntriesRequest;
use tonic::Code;

const WAIT: Duration = Duration::from_secs(20);
/// A resource name easy to find in the encoded request.
const MARKER: &str = "forged-length-prefix-marker-0001";
/// bincode's varint for `u64::MAX`: the 0xFD marker and eight 0xFF bytes.
const HUGE_LENGTH: [u8; 9] = [0xFD, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF];

/// A well-formed AppendEntries from a stale term-1 leader carrying one entry that names
/// [`MARKER`], and the same bytes with the marker's length prefix replaced by [`HUGE_LENGTH`].
fn genuine_and_forged() -> (Vec<u8>, Vec<u8>) {
    let entry = openraft::Entry::<TypeConfig> {
        log_id: openraft::LogId::new(openraft::CommittedLeaderId::new(1, 1), 1),
        payload: openraft::EntryPayload::Normal(Batch::new(
            WallMillis(0),
            vec![Command::Lease(LeaseCommand::Release {
                resource: ResourceId::new(MARKER),
                holder: HolderId::new("h"),
                token: FencingToken(1),
            })],
        )),
    };
    let request = AppendEntriesRequest::<TypeConfig> {
        vote: openraft::Vote::new(1, 1),
        prev_log_id: None,
        entries: vec![entry],
        leader_commit: None,
    };
    let genuine = arbiter::codec::encode("append entries", &request).expect("encodes");
    let at = genuine
        .windows(MARKER.len())
        .position(|w| w == MARKER.as_bytes())
        .expect("the marker is in the encoding");
    assert_eq!(
        genuine[at - 1] as usize,
        MARKER.len(),
        "a one-byte varint length precedes the marker"
    );
    let mut forged = genuine[..at - 1].to_vec();
    forged.extend_from_slice(&HUGE_LENGTH);
    forged.extend_from_slice(&genuine[at..]);
    (genuine, forged)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_append_entries_with_a_huge_length_prefix_is_refused_and_the_node_serves_on() {
    init_tracing();
    let cluster = TestCluster::start(3, &[]).await;
    let leader = cluster.leader(WAIT).await;
    let follower = cluster
        .running()
        .find(|n| n.spec.id != leader.node_id)
        .expect("a follower");
    let (target, peer_addr) = (
        follower.ready.grpc_addr.clone(),
        follower.ready.peer_addr.clone(),
    );
    let cluster_id = status(&target).await.expect("follower status").cluster_id;
    let (genuine, forged) = genuine_and_forged();

    // The leader's node certificate, verifying the follower by its node name.
    let ours = certs().node_tls(leader.node_id);
    let config = tls::client_config(&ours.ca, Some((&ours.cert, &ours.key)), Alpn::H2)
        .expect("client TLS config");
    let connector = tls::connector(
        move || config.clone(),
        tls::peer_server_name(follower.spec.id),
    );
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{peer_addr}"))
        .expect("endpoint")
        .connect_with_connector(connector)
        .await
        .expect("connect to the follower's peer port");
    let mut raft = RaftServiceClient::new(channel);
    let request = |data: Vec<u8>| {
        let mut request = tonic::Request::new(RaftPayload { data });
        request.metadata_mut().insert(
            CLUSTER_ID_HEADER,
            cluster_id.parse().expect("a cluster id is valid metadata"),
        );
        request
    };

    tracing::info!("phase: control — the genuine bytes decode (the stale vote is answered)");
    raft.append_entries(request(genuine))
        .await
        .expect("a well-formed request is decoded and answered");

    tracing::info!("phase: the forged bytes are an INVALID_ARGUMENT, not an abort");
    let refused = raft
        .append_entries(request(forged))
        .await
        .expect_err("the forged request is refused");
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");

    tracing::info!("phase: the follower still serves and the cluster still commits");
    let status = status(&target).await.expect("the follower answers");
    assert_eq!(status.leader_id, Some(leader.node_id), "{status:?}");
    acquire_any(&cluster.endpoints(), "after-the-forgery", "h", 5_000, WAIT)
        .await
        .expect("writes still commit");
    converged(&cluster, WAIT).await;
}
