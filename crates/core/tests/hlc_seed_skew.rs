//! The seed's "LWW clock skew" failure: region A's clock runs 300 ms ahead, and under
//! wall-clock last-write-wins A's older write overwrites a newer write made in region B.
//!
//! Timeline (real time `t`, ms; A's wall clock reads `t + 300`, B's reads `t`; one-way
//! replication A→B takes 35 ms, half the planning RTT):
//!   t = 10 000  a user writes "from-A" in region A;
//!   t = 10 035  replication delivers that write (and its timestamp) to region B;
//!   t = 10 100  a user, having seen "from-A", writes "from-B" in region B;
//!   later       the regions exchange state.
//! "from-B" is the newer write in real time and causally after "from-A"; it must survive.

use arbiter_core::crdt::{Crdt, LwwRegister};
use arbiter_core::hlc::{HlcError, HlcTimestamp, HybridClock};
use arbiter_core::types::{NodeId, WallMillis};

const NODE_A: NodeId = 1;
const NODE_B: NodeId = 2;
const SKEW_A_MS: u64 = 300;
const MAX_DRIFT_MS: u64 = 500;

fn wall_a(real_ms: u64) -> WallMillis {
    WallMillis(real_ms + SKEW_A_MS)
}
fn wall_b(real_ms: u64) -> WallMillis {
    WallMillis(real_ms)
}

/// Both replicas after exchanging state in both directions.
fn exchange(
    mut a: LwwRegister<&'static str>,
    mut b: LwwRegister<&'static str>,
) -> [LwwRegister<&'static str>; 2] {
    let a_before = a.clone();
    a.merge(&b);
    b.merge(&a_before);
    [a, b]
}

#[test]
fn hlc_lww_keeps_the_newer_write_despite_a_300ms_fast_clock() {
    let mut clock_a = HybridClock::new(NODE_A, MAX_DRIFT_MS);
    let mut clock_b = HybridClock::new(NODE_B, MAX_DRIFT_MS);
    let mut reg_a = LwwRegister::new();
    let mut reg_b = LwwRegister::new();

    // t = 10 000: write in A, stamped with A's fast clock.
    let stamp_a = clock_a.now(wall_a(10_000)).unwrap();
    reg_a.set("from-A", stamp_a);

    // t = 10 035: replication delivers A's write to B. B's clock observes the timestamp
    // (265 ms ahead of B's wall clock: inside the drift bound) before B applies the write.
    clock_b.update(stamp_a, wall_b(10_035)).unwrap();
    reg_b.merge(&reg_a);

    // t = 10 100: the newer write in B. B's wall clock says 10 100 < 10 300, but B's HLC has
    // seen 10 300, so the new stamp sorts after A's.
    let stamp_b = clock_b.now(wall_b(10_100)).unwrap();
    assert!(stamp_b > stamp_a, "{stamp_b} must sort after {stamp_a}");
    assert!(reg_b.set("from-B", stamp_b));

    let [a, b] = exchange(reg_a, reg_b);
    assert_eq!(a, b, "replicas must converge");
    assert_eq!(a.get(), Some(&"from-B"), "the newer write must win");
}

#[test]
fn negative_control_wall_clock_lww_loses_the_newer_write() {
    // Same timeline, but each write is stamped with its region's raw wall clock — what the
    // seed's databases did. The register and merge are identical; only the stamps differ.
    let raw = |wall: WallMillis, node| HlcTimestamp::new(wall.0, 0, node).unwrap();
    let mut reg_a = LwwRegister::new();
    let mut reg_b = LwwRegister::new();

    reg_a.set("from-A", raw(wall_a(10_000), NODE_A));
    reg_b.merge(&reg_a); // t = 10 035, delivered to B
    let applied_locally = reg_b.set("from-B", raw(wall_b(10_100), NODE_B));

    // B's own newer write is refused at once, because A's stamp (10 300) "is later"...
    assert!(!applied_locally);
    let [a, b] = exchange(reg_a, reg_b);
    assert_eq!(a, b);
    // ...and so the older write survives everywhere: the seed's bug.
    assert_eq!(
        a.get(),
        Some(&"from-A"),
        "naive LWW should have lost B's write"
    );
}

#[test]
fn concurrent_writes_inside_the_skew_window_converge_but_are_not_in_real_time_order() {
    // The honest limit: if B writes at t = 10 020, *before* A's write reaches it, the two
    // writes are concurrent. No clock can order them by real time when clocks disagree by
    // 300 ms; HLC orders them deterministically (here by A's larger physical time) and every
    // replica agrees. Causally related writes, as in the test above, are always ordered right.
    let mut clock_a = HybridClock::new(NODE_A, MAX_DRIFT_MS);
    let mut clock_b = HybridClock::new(NODE_B, MAX_DRIFT_MS);
    let mut reg_a = LwwRegister::new();
    let mut reg_b = LwwRegister::new();

    reg_a.set("from-A", clock_a.now(wall_a(10_000)).unwrap());
    reg_b.set("from-B", clock_b.now(wall_b(10_020)).unwrap());

    let [a, b] = exchange(reg_a, reg_b);
    assert_eq!(a, b);
    assert_eq!(a.get(), Some(&"from-A"));
}

#[test]
fn a_clock_beyond_the_drift_bound_is_refused_instead_of_poisoning_timestamps() {
    // If A's clock were 800 ms ahead, accepting its timestamp would drag B's clock (and every
    // write B stamps afterwards) 800 ms into the future. B refuses, with the numbers.
    let mut clock_a = HybridClock::new(NODE_A, MAX_DRIFT_MS);
    let mut clock_b = HybridClock::new(NODE_B, MAX_DRIFT_MS);
    let stamp_a = clock_a.now(WallMillis(10_000 + 800)).unwrap();
    clock_b.now(wall_b(10_000)).unwrap();
    let before = clock_b.last();

    assert_eq!(
        clock_b.update(stamp_a, wall_b(10_000)),
        Err(HlcError::ClockDriftExceeded {
            remote_ms: 10_800,
            local_ms: 10_000,
            max_drift_ms: MAX_DRIFT_MS,
        })
    );
    assert_eq!(clock_b.last(), before);
}
