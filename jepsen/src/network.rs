//! The simulated WAN: one [`LinkProxy`] per directed link between nodes, default latencies from
//! the planning RTT table, and partitions expressed as sets of dropped directed links.
//!
//! Invariant: node `a` reaches node `b` only through the proxy for link a→b, so the set of links
//! the nemesis cuts is exactly the set of directions in which nothing is delivered. A link cut both
//! ways drops its connections (a real partition: timeouts and resets); a link cut one way only
//! holds the bytes of that direction, on both proxies that carry it.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use arbiter_core::NodeId;

use crate::nemesis::Link;
use crate::proxy::{Direction, LinkProxy, ProxyError};

/// Planning round-trip times between the three arbiter regions, in ms.
pub const PLANNING_RTT_MS: [(&str, &str, u64); 3] = [
    ("us-east-1", "us-west-2", 70),
    ("us-east-1", "eu-central-1", 90),
    ("us-west-2", "eu-central-1", 150),
];

/// Region of node `i + 1` in the WAN profile.
pub const WAN_REGIONS: [&str; 3] = ["us-east-1", "us-west-2", "eu-central-1"];

/// The region node `node` (1-based) stands in: nodes go round the regions, so a cluster of five
/// has two nodes in each of the first two.
pub fn region_of(node: NodeId) -> &'static str {
    let index = node.saturating_sub(1) as usize % WAN_REGIONS.len();
    WAN_REGIONS[index]
}

/// Planning RTT between two regions; zero within one.
fn planning_rtt(a: &str, b: &str) -> Duration {
    PLANNING_RTT_MS
        .iter()
        .find(|(x, y, _)| (*x == a && *y == b) || (*x == b && *y == a))
        .map_or(Duration::ZERO, |(_, _, ms)| Duration::from_millis(*ms))
}

/// One-way delay per directed link; links not listed have none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DelayTable {
    one_way: BTreeMap<Link, Duration>,
}

impl DelayTable {
    /// The planning triangle with nodes 1, 2, 3 in [`WAN_REGIONS`]; one-way is half the RTT.
    pub fn wan_triangle() -> DelayTable {
        DelayTable::wan(3)
    }

    /// Nodes `1..=nodes` placed by [`region_of`], each pair at its regions' planning RTT.
    pub fn wan(nodes: usize) -> DelayTable {
        let mut table = DelayTable::default();
        let ids: Vec<NodeId> = (1..=nodes as NodeId).collect();
        for (i, &a) in ids.iter().enumerate() {
            for &b in &ids[i + 1..] {
                table.set_rtt(a, b, planning_rtt(region_of(a), region_of(b)));
            }
        }
        table
    }

    /// Sets both directions between `a` and `b` to half of `rtt`.
    pub fn set_rtt(&mut self, a: NodeId, b: NodeId, rtt: Duration) {
        self.one_way.insert(Link { from: a, to: b }, rtt / 2);
        self.one_way.insert(Link { from: b, to: a }, rtt / 2);
    }

    pub fn one_way(&self, from: NodeId, to: NodeId) -> Duration {
        self.one_way
            .get(&Link { from, to })
            .copied()
            .unwrap_or_default()
    }
}

/// Every directed link of a cluster, each behind its own proxy.
pub struct Network {
    proxies: BTreeMap<Link, LinkProxy>,
}

impl Network {
    /// Starts a proxy for every ordered pair of `targets` (node → the address it listens on for
    /// peers). Link a→b carries a's requests to b with delay(a→b) and b's responses back with
    /// delay(b→a).
    pub async fn start(
        targets: &BTreeMap<NodeId, SocketAddr>,
        delays: &DelayTable,
    ) -> Result<Network, ProxyError> {
        let mut proxies = BTreeMap::new();
        for &from in targets.keys() {
            for (&to, &target) in targets.iter().filter(|(to, _)| **to != from) {
                let proxy = LinkProxy::start(target, delays.one_way(from, to)).await?;
                proxy.set_delay(Direction::Backward, delays.one_way(to, from));
                proxies.insert(Link { from, to }, proxy);
            }
        }
        Ok(Network { proxies })
    }

    /// The address `from` must dial to reach `to`.
    pub fn addr(&self, from: NodeId, to: NodeId) -> Option<SocketAddr> {
        self.proxy(from, to).map(LinkProxy::local_addr)
    }

    pub fn proxy(&self, from: NodeId, to: NodeId) -> Option<&LinkProxy> {
        self.proxies.get(&Link { from, to })
    }

    /// Makes `cut` the set of directed links that deliver nothing, healing every other link.
    pub fn partition(&self, cut: &BTreeSet<Link>) {
        self.heal();
        for link in cut {
            let reverse = Link {
                from: link.to,
                to: link.from,
            };
            if cut.contains(&reverse) {
                if let Some(p) = self.proxies.get(link) {
                    p.cut();
                }
                continue;
            }
            // from→to traffic is the request direction of proxy from→to and the response
            // direction of proxy to→from.
            if let Some(p) = self.proxies.get(link) {
                p.stall(Direction::Forward);
            }
            if let Some(p) = self.proxies.get(&reverse) {
                p.stall(Direction::Backward);
            }
        }
    }

    /// Restores every link; latencies stay.
    pub fn heal(&self) {
        for p in self.proxies.values() {
            p.heal();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    use tokio::time::timeout;

    #[test]
    fn wan_triangle_is_half_the_planning_rtt_each_way() {
        let t = DelayTable::wan_triangle();
        let ms = Duration::from_millis;
        assert_eq!(t.one_way(1, 2), ms(35));
        assert_eq!(t.one_way(2, 1), ms(35));
        assert_eq!(t.one_way(1, 3), ms(45));
        assert_eq!(t.one_way(3, 2), ms(75));
        assert_eq!(t.one_way(1, 1), Duration::ZERO);
        assert_eq!(DelayTable::default().one_way(1, 2), Duration::ZERO);
    }

    #[test]
    fn larger_clusters_reuse_the_regions() {
        let t = DelayTable::wan(5);
        let ms = Duration::from_millis;
        assert_eq!(region_of(4), "us-east-1");
        assert_eq!(t.one_way(4, 1), Duration::ZERO, "same region");
        assert_eq!(t.one_way(4, 5), ms(35));
        assert_eq!(t.one_way(5, 3), ms(75));
    }

    /// Loopback "nodes" that answer every read with their own id byte.
    async fn nodes() -> BTreeMap<NodeId, SocketAddr> {
        let mut targets = BTreeMap::new();
        for id in 1..=3u8 {
            let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
            targets.insert(NodeId::from(id), listener.local_addr().unwrap());
            tokio::spawn(async move {
                loop {
                    let (mut s, _) = listener.accept().await.unwrap();
                    tokio::spawn(async move {
                        let mut buf = [0u8; 64];
                        while let Ok(n) = s.read(&mut buf).await {
                            if n == 0 || s.write_all(&[id]).await.is_err() {
                                break;
                            }
                        }
                    });
                }
            });
        }
        targets
    }

    /// Sends a request over link from→to; the reply byte names the node that answered.
    async fn ask(net: &Network, from: NodeId, to: NodeId) -> Option<u8> {
        let attempt = async {
            let mut s = TcpStream::connect(net.addr(from, to)?).await.ok()?;
            s.write_all(b"?").await.ok()?;
            let mut reply = [0u8; 1];
            s.read_exact(&mut reply).await.ok()?;
            Some(reply[0])
        };
        timeout(Duration::from_millis(500), attempt)
            .await
            .ok()
            .flatten()
    }

    #[tokio::test]
    async fn links_reach_their_node_and_partitions_block_the_right_directions() {
        let net = Network::start(&nodes().await, &DelayTable::default())
            .await
            .unwrap();
        assert_eq!(ask(&net, 1, 2).await, Some(2));
        assert_eq!(ask(&net, 3, 1).await, Some(1));

        // One way: 1 → 2 is lost, so 1's requests and 1's answers to 2 both go nowhere.
        net.partition(&BTreeSet::from([Link { from: 1, to: 2 }]));
        assert_eq!(ask(&net, 1, 2).await, None);
        assert_eq!(ask(&net, 2, 1).await, None);
        assert_eq!(ask(&net, 1, 3).await, Some(3));

        // Both ways between 3 and the rest.
        let isolate = crate::nemesis::Fault::PartitionIsolateLeader.effects(3, 3);
        net.partition(&isolate.cut);
        assert_eq!(
            ask(&net, 1, 2).await,
            Some(2),
            "partition replaces the last one"
        );
        assert_eq!(ask(&net, 3, 1).await, None);
        assert_eq!(ask(&net, 2, 3).await, None);

        net.heal();
        assert_eq!(ask(&net, 2, 3).await, Some(3));
    }
}
