//! HTTP edge (axum): operator and contract endpoints.
//!
//! - `GET /v1/cluster/status`: this node's Raft view as JSON.

use std::sync::Arc;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::node::{NodeContext, NodeError};

pub async fn serve(
    node: Arc<NodeContext>,
    listener: TcpListener,
    mut stop: watch::Receiver<bool>,
) -> Result<(), NodeError> {
    let app = Router::new()
        .route("/v1/cluster/status", get(cluster_status))
        .with_state(node);
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = stop.wait_for(|s| *s).await;
        })
        .await
        .map_err(|e| NodeError::Serve(e.to_string()))
}

async fn cluster_status(
    State(node): State<Arc<NodeContext>>,
) -> Json<arbiter_client::proto::NodeStatus> {
    Json(node.status())
}
