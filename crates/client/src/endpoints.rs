//! The arbiter nodes a client knows, one cached channel each, and which one it believes leads.
//!
//! Invariant: a channel is made once per address (lazily, so a node that is down costs nothing
//! until it is tried, and tonic reconnects it after the node restarts); calls never set up
//! channels. The leader guess only changes on evidence: a success confirms it, a leader hint
//! moves it, a failure moves it to the next node.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::RwLock;

use crate::credentials::{AuthChannel, ChannelFactory};
use crate::error::ClientError;

/// One node: its address as the user (or a leader hint) spelled it, and its channel.
#[derive(Clone)]
pub(crate) struct Node {
    pub(crate) addr: String,
    pub(crate) channel: AuthChannel,
}

pub(crate) struct Endpoints {
    /// Only grows (leader hints may name nodes the user did not list). A std lock: held for a
    /// lookup or a push, never across an await.
    nodes: RwLock<Vec<Node>>,
    /// Index into `nodes` of the node the next call goes to.
    leader: AtomicUsize,
    factory: ChannelFactory,
}

impl Endpoints {
    pub(crate) fn new(addrs: &[String], factory: ChannelFactory) -> Result<Self, ClientError> {
        if addrs.is_empty() {
            return Err(ClientError::NoEndpoints);
        }
        let nodes = addrs
            .iter()
            .map(|addr| node(addr, &factory))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Endpoints {
            nodes: RwLock::new(nodes),
            leader: AtomicUsize::new(0),
            factory,
        })
    }

    /// Every known address, in order.
    pub(crate) fn addrs(&self) -> Vec<String> {
        self.read().iter().map(|n| n.addr.clone()).collect()
    }

    /// Every known node, in order.
    pub(crate) fn nodes(&self) -> Vec<Node> {
        self.read().clone()
    }

    /// The node believed to lead, and its index.
    pub(crate) fn current(&self) -> (usize, Node) {
        let nodes = self.read();
        let index = self.leader.load(Ordering::Relaxed) % nodes.len();
        (index, nodes[index].clone())
    }

    /// A call to `index` succeeded: it leads (or answered a read as well as a leader would).
    pub(crate) fn confirm(&self, index: usize) {
        self.leader.store(index, Ordering::Relaxed);
    }

    /// A call to `failed` failed without a hint: try the next node. Only moves the guess if it
    /// still points at `failed`, so many concurrent failures move it once, not once each.
    pub(crate) fn rotate(&self, failed: usize) {
        let len = self.read().len();
        let _ = self.leader.compare_exchange(
            failed,
            (failed + 1) % len,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }

    /// A node named `addr` as the leader: point the guess there, adding it if it is new.
    /// Returns its index. A hint that is not a usable address rotates instead.
    pub(crate) fn follow(&self, addr: &str, failed: usize) -> usize {
        let known = self.read().iter().position(|n| same_addr(&n.addr, addr));
        let index = match known {
            Some(index) => index,
            None => match node(addr, &self.factory) {
                Ok(new) => {
                    let mut nodes = self.nodes.write().unwrap_or_else(|e| e.into_inner());
                    // Another call may have added it meanwhile.
                    match nodes.iter().position(|n| same_addr(&n.addr, addr)) {
                        Some(index) => index,
                        None => {
                            nodes.push(new);
                            nodes.len() - 1
                        }
                    }
                }
                Err(_) => {
                    self.rotate(failed);
                    return self.leader.load(Ordering::Relaxed);
                }
            },
        };
        self.leader.store(index, Ordering::Relaxed);
        index
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Vec<Node>> {
        // A panic while holding the lock cannot leave the vector half-updated (push is the only
        // write), so a poisoned lock is still sound to read.
        self.nodes.read().unwrap_or_else(|e| e.into_inner())
    }
}

/// `host:port` or a full URI; the address is kept as given for messages.
fn node(addr: &str, factory: &ChannelFactory) -> Result<Node, ClientError> {
    Ok(Node {
        addr: addr.trim().to_string(),
        channel: factory.channel(addr)?,
    })
}

/// Whether two spellings name the same node (`http://a:1` and `a:1` do).
fn same_addr(a: &str, b: &str) -> bool {
    fn bare(s: &str) -> &str {
        let s = s.trim();
        s.split_once("://")
            .map_or(s, |(_, rest)| rest)
            .trim_end_matches('/')
    }
    bare(a) == bare(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoints(addrs: &[&str]) -> Endpoints {
        let addrs: Vec<String> = addrs.iter().map(|s| s.to_string()).collect();
        Endpoints::new(&addrs, factory()).unwrap()
    }

    fn factory() -> ChannelFactory {
        ChannelFactory::new(std::time::Duration::from_millis(100), None, None)
    }

    #[tokio::test]
    async fn rotation_moves_once_for_concurrent_failures() {
        let e = endpoints(&["a:1", "b:2", "c:3"]);
        e.rotate(0);
        e.rotate(0);
        assert_eq!(e.current().0, 1);
        e.rotate(1);
        e.rotate(2);
        assert_eq!(e.current().0, 0);
    }

    #[tokio::test]
    async fn hints_name_known_or_new_nodes() {
        let e = endpoints(&["a:1", "http://b:2"]);
        assert_eq!(e.follow("http://b:2", 0), 1);
        assert_eq!(e.follow("b:2", 0), 1);
        assert_eq!(e.follow("c:3", 1), 2);
        assert_eq!(e.addrs(), vec!["a:1", "http://b:2", "c:3"]);
        assert_eq!(e.current().1.addr, "c:3");
    }

    #[tokio::test]
    async fn no_or_bad_endpoints_are_errors() {
        assert_eq!(
            Endpoints::new(&[], factory()).err(),
            Some(ClientError::NoEndpoints)
        );
        let bad = Endpoints::new(&["a b:1".to_string()], factory());
        assert!(matches!(bad, Err(ClientError::InvalidEndpoint { .. })));
    }
}
