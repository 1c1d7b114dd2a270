//! What each CRDT means, beyond the algebraic laws: add wins over a concurrent remove, a remove
//! takes only what it observed, tombstones stop resurrection, counters refuse overflow, and
//! LWW ties are decided the same way everywhere.

use arbiter_core::crdt::{Crdt, CrdtError, GCounter, LwwMap, LwwRegister, OrSet, PnCounter};
use arbiter_core::hlc::HlcTimestamp;

const A: u64 = 1;
const B: u64 = 2;

fn ts(physical_ms: u64, logical: u16, node: u64) -> HlcTimestamp {
    HlcTimestamp::new(physical_ms, logical, node).unwrap()
}

/// Both replicas after a two-way state exchange.
fn sync<C: Crdt + Clone>(a: &mut C, b: &mut C) {
    let a_before = a.clone();
    a.merge(b);
    b.merge(&a_before);
}

#[test]
fn or_set_add_wins_over_a_concurrent_remove() {
    let mut a = OrSet::new();
    let mut b = OrSet::new();
    a.add(A, "socks");
    sync(&mut a, &mut b);

    // Concurrently: A removes socks, B adds socks again (a fresh dot A has never seen).
    assert!(a.remove(&"socks"));
    b.add(B, "socks");
    sync(&mut a, &mut b);

    assert_eq!(a, b);
    assert!(a.contains(&"socks"));
}

#[test]
fn or_set_remove_takes_the_adds_it_observed() {
    let mut a = OrSet::new();
    let mut b = OrSet::new();
    a.add(A, "hat");
    sync(&mut a, &mut b);
    assert!(b.remove(&"hat"));
    sync(&mut a, &mut b);

    assert_eq!(a, b);
    assert!(
        a.is_empty(),
        "an observed remove must not be undone by merge"
    );
}

#[test]
fn or_set_remove_of_an_unobserved_add_is_a_no_op() {
    let mut a = OrSet::new();
    let mut b = OrSet::<&str>::new();
    a.add(A, "scarf");
    assert!(!b.remove(&"scarf"), "B has not seen the add yet");
    sync(&mut a, &mut b);
    assert!(b.contains(&"scarf"));
}

#[test]
fn or_set_readd_after_sync_keeps_a_single_dot() {
    let mut a = OrSet::new();
    let first = a.add(A, "gloves");
    let second = a.add(A, "gloves");
    assert!(second > first);
    assert_eq!(a.len(), 1);
    let mut b = OrSet::new();
    sync(&mut a, &mut b);
    assert_eq!(a, b);
}

#[test]
fn or_set_reports_exactly_the_elements_present() {
    let mut s = OrSet::new();
    assert!(s.is_empty());
    for elem in ["coat", "boots", "hat"] {
        s.add(A, elem);
    }
    assert!(s.remove(&"boots"));

    assert!(s.contains(&"coat"));
    assert!(!s.contains(&"boots"), "a removed element is absent");
    assert!(!s.contains(&"scarf"), "a never-added element is absent");
    assert_eq!(s.iter().collect::<Vec<_>>(), vec![&"coat", &"hat"]);
    assert_eq!(s.len(), 2);
    assert!(!s.is_empty());
}

#[test]
fn lww_map_tombstone_beats_an_older_insert_that_arrives_later() {
    let mut a = LwwMap::new();
    let mut b = LwwMap::new();
    // A inserts at 100; B, not having seen it, removes the key at 200 (later).
    a.insert("sku-1", 2u32, ts(100, 0, A));
    assert!(b.remove("sku-1", ts(200, 0, B)));
    sync(&mut a, &mut b);

    assert_eq!(a, b);
    assert_eq!(
        a.get(&"sku-1"),
        None,
        "the removed key must not be resurrected"
    );
    assert!(a.is_empty());

    // A newer insert brings it back.
    assert!(a.insert("sku-1", 5, ts(300, 0, A)));
    sync(&mut a, &mut b);
    assert_eq!(b.get(&"sku-1"), Some(&5));
    assert_eq!(b.iter().collect::<Vec<_>>(), vec![(&"sku-1", &5)]);
}

#[test]
fn lww_map_ignores_an_older_write_to_a_key() {
    let mut m = LwwMap::new();
    assert!(m.insert("k", 1u8, ts(10, 0, B)));
    assert!(
        !m.insert("k", 2, ts(10, 0, A)),
        "node id breaks the tie: B > A"
    );
    assert!(!m.remove("k", ts(9, 5, B)));
    assert_eq!(m.get(&"k"), Some(&1));
    assert_eq!(m.len(), 1);
}

#[test]
fn lww_map_counts_live_entries_and_not_tombstones() {
    let mut m = LwwMap::new();
    m.insert("a", 1u8, ts(10, 0, A));
    m.insert("b", 2, ts(11, 0, A));
    m.insert("c", 3, ts(12, 0, A));
    m.remove("b", ts(13, 0, A));
    // A tombstone for a key this replica never saw inserted is kept, and is no entry either.
    m.remove("d", ts(14, 0, A));

    assert_eq!(m.len(), 2);
    assert!(!m.is_empty());
    assert_eq!(m.iter().collect::<Vec<_>>(), vec![(&"a", &1), (&"c", &3)]);
}

#[test]
fn lww_register_tie_on_physical_time_is_broken_by_logical_then_node() {
    let mut r = LwwRegister::new();
    r.set("x", ts(10, 1, A));
    assert!(
        r.set("y", ts(10, 1, B)),
        "same ms and counter: higher node id wins"
    );
    assert!(
        !r.set("z", ts(10, 0, 9)),
        "lower logical loses whatever the node"
    );
    assert_eq!(r.get(), Some(&"y"));
    assert_eq!(r.timestamp(), Some(ts(10, 1, B)));
}

#[test]
fn lww_register_identical_stamps_are_decided_by_value_in_every_order() {
    // Only reachable if two replicas share a node id (a misconfiguration); merge must still be
    // deterministic, so the larger value wins on both sides.
    let mut a = LwwRegister::new();
    let mut b = LwwRegister::new();
    a.set("apple", ts(10, 0, A));
    b.set("pear", ts(10, 0, A));
    sync(&mut a, &mut b);
    assert_eq!(a, b);
    assert_eq!(a.get(), Some(&"pear"));
}

#[test]
fn lww_register_a_redelivered_write_is_not_applied_again() {
    // Replication may deliver the same stamped write twice. The copy ties the current write
    // exactly (same stamp, same value), so it does not beat it: nothing changes and `set`
    // reports that nothing did.
    let mut r = LwwRegister::new();
    assert!(r.set("x", ts(10, 0, A)));
    let before = r.clone();
    assert!(!r.set("x", ts(10, 0, A)));
    assert_eq!(r, before);
}

#[test]
fn counters_sum_per_node_contributions_without_double_counting() {
    let mut a = PnCounter::new();
    let mut b = PnCounter::new();
    a.increment(A, 5).unwrap();
    b.increment(B, 2).unwrap();
    b.decrement(B, 10).unwrap();
    sync(&mut a, &mut b);
    sync(&mut a, &mut b); // re-delivery changes nothing
    assert_eq!(a, b);
    assert_eq!(a.value(), -3);

    let mut g = GCounter::new();
    g.increment(A, 3).unwrap();
    g.increment(A, 4).unwrap();
    g.increment(B, 0).unwrap();
    assert_eq!((g.value(), g.count_of(A), g.count_of(B)), (7, 7, 0));
    assert_eq!(g, {
        let mut h = GCounter::new();
        h.increment(A, 7).unwrap();
        h
    });
}

#[test]
fn counter_overflow_is_refused_and_leaves_the_state_unchanged() {
    let mut g = GCounter::new();
    g.increment(A, u64::MAX).unwrap();
    let before = g.clone();
    assert_eq!(
        g.increment(A, 1),
        Err(CrdtError::CounterOverflow {
            node: A,
            current: u64::MAX,
            by: 1,
        })
    );
    assert_eq!(g, before);
    // Another node's count is independent, and the total does not overflow.
    g.increment(B, u64::MAX).unwrap();
    assert_eq!(g.value(), 2 * u128::from(u64::MAX));
}
