//! Active-active shopping cart across two regions, with no server: each region writes locally,
//! replicas exchange state, and both end identical.
//! `cargo run -p arbiter-client --example cart_convergence`
//!
//! Invariant shown: after exchanging state, every replica holds the same cart and the same
//! unread-notification count, whatever the order of exchange — and a write made *after*
//! seeing another region's write wins even though that region's clock runs 300 ms ahead.
//!
//! Wall clocks are simulated (real time `t` plus each region's skew) so the run is
//! deterministic; a proxy would pass its real wall clock in the same place.

use arbiter_client::crdt::{Crdt, LwwMap, PnCounter};
use arbiter_client::hlc::{HlcTimestamp, HybridClock};
use arbiter_core::types::{NodeId, WallMillis};

/// Refuse remote timestamps more than this far ahead of our wall clock.
const MAX_DRIFT_MS: u64 = 500;

/// One region's copy of a user's cart (sku → quantity) and unread-notification count.
struct Replica {
    region: &'static str,
    /// The seed's skew: this region's wall clock reads `t + skew_ms`.
    skew_ms: u64,
    node: NodeId,
    clock: HybridClock,
    cart: LwwMap<String, u32>,
    unread: PnCounter,
}

/// What state-based replication ships: the full state plus the sender's clock, so the
/// receiver's HLC observes it before any write the receiver makes afterwards.
struct StateMessage {
    sender_clock: HlcTimestamp,
    cart: LwwMap<String, u32>,
    unread: PnCounter,
}

impl Replica {
    fn new(region: &'static str, node: NodeId, skew_ms: u64) -> Self {
        Replica {
            region,
            skew_ms,
            node,
            clock: HybridClock::new(node, MAX_DRIFT_MS),
            cart: LwwMap::new(),
            unread: PnCounter::new(),
        }
    }

    fn wall(&self, t: u64) -> WallMillis {
        WallMillis(t + self.skew_ms)
    }

    fn stamp(&mut self, t: u64) -> HlcTimestamp {
        // Simulated walls stay in range and the few events per millisecond are far below the
        // counter limit, so the clock cannot refuse here.
        self.clock
            .now(self.wall(t))
            .expect("simulated clock in range")
    }

    fn set_quantity(&mut self, t: u64, sku: &str, qty: u32) {
        let at = self.stamp(t);
        self.cart.insert(sku.to_string(), qty, at);
        println!("  t={t:>5} {:<13} set {sku} = {qty} @ {at}", self.region);
    }

    fn remove_item(&mut self, t: u64, sku: &str) {
        let at = self.stamp(t);
        self.cart.remove(sku.to_string(), at);
        println!("  t={t:>5} {:<13} remove {sku} @ {at}", self.region);
    }

    fn notify(&mut self, t: u64, delta: i64) {
        let by = delta.unsigned_abs();
        let counted = if delta >= 0 {
            self.unread.increment(self.node, by)
        } else {
            self.unread.decrement(self.node, by)
        };
        // A handful of notifications cannot overflow a u64 count.
        counted.expect("notification count far below u64::MAX");
        println!("  t={t:>5} {:<13} unread {delta:+}", self.region);
    }

    fn snapshot(&self) -> StateMessage {
        StateMessage {
            sender_clock: self.clock.last(),
            cart: self.cart.clone(),
            unread: self.unread.clone(),
        }
    }

    fn receive(&mut self, t: u64, msg: &StateMessage) {
        // Observe the sender's clock first; a sender beyond the drift bound is refused and its
        // state not applied, so one broken clock cannot drag this region into the future.
        match self.clock.update(msg.sender_clock, self.wall(t)) {
            Ok(_) => {
                self.cart.merge(&msg.cart);
                self.unread.merge(&msg.unread);
                println!(
                    "  t={t:>5} {:<13} merged state (sender clock {})",
                    self.region, msg.sender_clock
                );
            }
            Err(refused) => println!("  t={t:>5} {:<13} refused state: {refused}", self.region),
        }
    }

    fn print(&self) {
        let items: Vec<String> = self.cart.iter().map(|(s, q)| format!("{s}×{q}")).collect();
        println!(
            "  {:<13} cart [{}]  unread {}  clock {}  (encoded {})",
            self.region,
            items.join(", "),
            self.unread.value(),
            self.clock.last(),
            hex(&self.clock.last().encode()),
        );
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Both directions, as anti-entropy does; the two snapshots are taken before either merge.
fn exchange(t: u64, a: &mut Replica, b: &mut Replica) {
    let (to_b, to_a) = (a.snapshot(), b.snapshot());
    b.receive(t, &to_b);
    a.receive(t, &to_a);
}

fn main() {
    let mut east = Replica::new("us-east-1", 1, 0);
    // The seed's NTP drift: eu-central-1's clock runs 300 ms ahead.
    let mut eu = Replica::new("eu-central-1", 3, 300);

    println!("1. the user shops in us-east-1; replication reaches eu-central-1");
    east.set_quantity(1_000, "book", 1);
    east.notify(1_000, 2);
    let msg = east.snapshot();
    eu.receive(1_035, &msg);

    println!("\n2. concurrent writes in both regions (neither has seen the other's yet)");
    east.set_quantity(1_100, "book", 2);
    east.notify(1_100, 1);
    eu.remove_item(1_100, "book");
    eu.set_quantity(1_100, "pen", 3);
    eu.notify(1_100, -2); // the user read both notifications in eu-central-1

    println!("\n3. replicas exchange state");
    exchange(1_200, &mut east, &mut eu);
    east.print();
    eu.print();
    // The concurrent book update and removal were decided by HLC order: eu-central-1's
    // removal carries physical time 1 400 (its fast clock) against us-east-1's 1 100. Both
    // regions agree, which is what a deterministic rule guarantees for concurrent writes.
    assert_eq!(east.cart, eu.cart, "carts must converge");
    assert_eq!(east.unread, eu.unread, "counters must converge");
    assert_eq!(east.cart.get(&"book".to_string()), None);

    println!("\n4. having seen the removal, the user adds the book again in us-east-1");
    // us-east-1's wall clock says 1 250, behind the 1 400 its HLC observed from eu-central-1;
    // the HLC stamp still sorts after the removal, so this newer write wins everywhere.
    // Under wall-clock LWW it would lose to the "later" (skewed) removal: the seed's bug.
    east.set_quantity(1_250, "book", 1);
    exchange(1_300, &mut east, &mut eu);
    east.print();
    eu.print();

    assert_eq!(east.cart, eu.cart, "carts must converge");
    assert_eq!(east.unread, eu.unread, "counters must converge");
    let cart: Vec<(&String, &u32)> = east.cart.iter().collect();
    assert_eq!(
        cart,
        [(&"book".to_string(), &1), (&"pen".to_string(), &3)],
        "the re-add made after seeing the removal must win"
    );
    assert_eq!(east.unread.value(), 1, "2 + 1 - 2 unread notifications");
    println!("\nconverged: both regions hold the same cart and unread count");
}
