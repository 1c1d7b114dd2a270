//! The hybrid logical clock on its own: monotonicity under hostile wall clocks, drift refusal,
//! overflow as a value, and the order-preserving 16-byte encoding.

use arbiter_core::hlc::{HlcDecodeError, HlcError, HlcTimestamp, HybridClock};
use arbiter_core::types::WallMillis;
use proptest::prelude::*;

const MAX_DRIFT_MS: u64 = 500;

fn ts(physical_ms: u64, logical: u16, node: u64) -> HlcTimestamp {
    HlcTimestamp::new(physical_ms, logical, node).expect("test timestamps are in range")
}

#[test]
fn wall_clock_stepping_backwards_does_not_move_the_clock_back() {
    let mut clock = HybridClock::new(1, MAX_DRIFT_MS);
    let t1 = clock.now(WallMillis(1_000)).unwrap();
    assert_eq!(t1, ts(1_000, 0, 1));

    // NTP steps the wall clock back 300 ms: physical time holds, the counter advances.
    let t2 = clock.now(WallMillis(700)).unwrap();
    assert_eq!(t2, ts(1_000, 1, 1));

    // Once the wall clock passes the held time again, physical time follows it.
    let t3 = clock.now(WallMillis(1_001)).unwrap();
    assert_eq!(t3, ts(1_001, 0, 1));
}

#[test]
fn update_returns_a_timestamp_above_the_remote_one() {
    let mut clock = HybridClock::new(2, MAX_DRIFT_MS);
    clock.now(WallMillis(1_000)).unwrap();
    let remote = ts(1_200, 7, 1);
    let observed = clock.update(remote, WallMillis(1_000)).unwrap();
    assert_eq!(observed, ts(1_200, 8, 2));
    assert!(clock.now(WallMillis(1_000)).unwrap() > remote);
}

#[test]
fn remote_timestamp_beyond_max_drift_is_refused_and_leaves_the_clock_unchanged() {
    let mut clock = HybridClock::new(2, MAX_DRIFT_MS);
    clock.now(WallMillis(10_000)).unwrap();
    let before = clock.last();

    // Exactly at the bound is accepted...
    let mut probe = clock.clone();
    assert!(probe.update(ts(10_500, 0, 1), WallMillis(10_000)).is_ok());

    // ...one millisecond beyond is refused, with the numbers an operator needs.
    let err = clock
        .update(ts(10_501, 0, 1), WallMillis(10_000))
        .unwrap_err();
    assert_eq!(
        err,
        HlcError::ClockDriftExceeded {
            remote_ms: 10_501,
            local_ms: 10_000,
            max_drift_ms: MAX_DRIFT_MS,
        }
    );
    assert_eq!(clock.last(), before);
}

#[test]
fn a_remote_timestamp_we_already_passed_is_accepted_after_our_wall_clock_steps_back() {
    // Our own earlier timestamp echoed back (e.g. in a reply) must not be refused just because
    // our wall clock has since stepped back by more than the drift bound: it cannot pull the
    // clock anywhere it has not been.
    let mut clock = HybridClock::new(1, MAX_DRIFT_MS);
    let mine = clock.now(WallMillis(10_000)).unwrap();
    let after = clock.update(mine, WallMillis(8_000)).unwrap();
    assert_eq!(after, ts(10_000, 1, 1));
}

#[test]
fn logical_overflow_is_an_error_not_a_panic_and_clears_when_the_wall_clock_advances() {
    let mut clock = HybridClock::new(1, MAX_DRIFT_MS);
    for _ in 0..=u16::MAX {
        clock.now(WallMillis(5)).unwrap();
    }
    let pinned = clock.last();
    assert_eq!(pinned, ts(5, u16::MAX, 1));
    assert_eq!(
        clock.now(WallMillis(5)),
        Err(HlcError::LogicalOverflow { physical_ms: 5 })
    );
    assert_eq!(clock.last(), pinned);
    assert_eq!(clock.now(WallMillis(6)), Ok(ts(6, 0, 1)));

    // The same through update(): a remote at the top of its counter, ahead of our wall clock.
    let mut other = HybridClock::new(2, MAX_DRIFT_MS);
    assert_eq!(
        other.update(ts(100, u16::MAX, 1), WallMillis(90)),
        Err(HlcError::LogicalOverflow { physical_ms: 100 })
    );
}

#[test]
fn physical_time_beyond_48_bits_is_refused() {
    let too_big = HlcTimestamp::MAX_PHYSICAL_MS + 1;
    assert_eq!(
        HlcTimestamp::new(too_big, 0, 1),
        Err(HlcError::PhysicalTimeOutOfRange {
            physical_ms: too_big,
            max_ms: HlcTimestamp::MAX_PHYSICAL_MS,
        })
    );
    let mut clock = HybridClock::new(1, MAX_DRIFT_MS);
    assert!(matches!(
        clock.now(WallMillis(too_big)),
        Err(HlcError::PhysicalTimeOutOfRange { .. })
    ));
    // Deserialization enforces the same bound, so a decoded value always encodes losslessly.
    let json = format!(r#"{{"physical_ms":{too_big},"logical":0,"node":1}}"#);
    assert!(serde_json::from_str::<HlcTimestamp>(&json).is_err());
}

#[test]
fn the_48_bit_physical_range_ends_exactly_at_two_to_the_48_minus_one() {
    // The largest 48-bit time is accepted everywhere and survives the encoding; the next
    // millisecond, 2^48, would wrap to 0 in the 6-byte field and is refused everywhere.
    let last_fitting = (1u64 << 48) - 1;
    assert_eq!(HlcTimestamp::MAX_PHYSICAL_MS, last_fitting);
    let top = HlcTimestamp::new(last_fitting, 0, 1).expect("2^48 - 1 fits");
    assert_eq!(HlcTimestamp::decode(&top.encode()), Ok(top));
    assert_eq!(top.encode()[..6], [0xff; 6]);
    assert!(HlcTimestamp::new(1 << 48, 0, 1).is_err());

    // A wall clock reading exactly the last representable millisecond is still a valid time.
    let mut clock = HybridClock::new(1, MAX_DRIFT_MS);
    assert_eq!(clock.now(WallMillis(last_fitting)), Ok(top));
    let mut other = HybridClock::new(2, MAX_DRIFT_MS);
    assert_eq!(
        other.update(top, WallMillis(last_fitting)),
        Ok(ts(last_fitting, 1, 2))
    );
    assert!(clock.now(WallMillis(1 << 48)).is_err());
}

#[test]
fn events_within_one_millisecond_are_numbered_by_the_logical_counter() {
    let mut clock = HybridClock::new(7, MAX_DRIFT_MS);
    let stamps: Vec<HlcTimestamp> = (0..3)
        .map(|_| clock.now(WallMillis(2_000)).unwrap())
        .collect();
    let fields: Vec<(u64, u16, u64)> = stamps
        .iter()
        .map(|t| (t.physical_ms(), t.logical(), t.node()))
        .collect();
    assert_eq!(fields, [(2_000, 0, 7), (2_000, 1, 7), (2_000, 2, 7)]);
}

#[test]
fn a_clock_reports_the_node_and_drift_bound_it_was_built_with() {
    let mut clock = HybridClock::new(7, MAX_DRIFT_MS);
    assert_eq!((clock.node(), clock.max_drift_ms()), (7, MAX_DRIFT_MS));
    // The node it reports is the one stamped on its timestamps.
    assert_eq!(clock.now(WallMillis(1)).unwrap().node(), clock.node());
}

#[test]
fn a_timestamp_displays_as_physical_dot_logical_at_node() {
    assert_eq!(ts(1_700_000_000_300, 2, 7).to_string(), "1700000000300.2@7");
}

#[test]
fn decode_rejects_wrong_lengths() {
    let bytes = ts(1, 2, 3).encode();
    for len in [0, 15, 17] {
        let input: Vec<u8> = bytes.iter().copied().cycle().take(len).collect();
        assert_eq!(
            HlcTimestamp::decode(&input),
            Err(HlcDecodeError::WrongLength {
                expected: 16,
                actual: len,
            })
        );
    }
}

#[test]
fn encoding_layout_is_48_bit_ms_16_bit_logical_64_bit_node_big_endian() {
    let bytes = ts(0x0102_0304_0506, 0x0708, 0x090a_0b0c_0d0e_0f10).encode();
    assert_eq!(
        bytes,
        [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16]
    );
}

fn timestamp() -> impl Strategy<Value = HlcTimestamp> {
    // Small ranges mixed with full ones, so equal prefixes (which exercise the tie-break
    // fields) are common.
    let ms = prop_oneof![0u64..4, 0..=HlcTimestamp::MAX_PHYSICAL_MS];
    let logical = prop_oneof![0u16..4, any::<u16>()];
    let node = prop_oneof![0u64..4, any::<u64>()];
    (ms, logical, node).prop_map(|(m, l, n)| ts(m, l, n))
}

#[derive(Debug, Clone)]
enum Event {
    Now { wall: u64 },
    Update { remote: HlcTimestamp, wall: u64 },
}

fn event() -> impl Strategy<Value = Event> {
    // Walls wander in a 3 s window so forward jumps, backward steps and repeats all occur, and
    // remotes land both inside and beyond the drift bound.
    prop_oneof![
        (0u64..3_000).prop_map(|wall| Event::Now { wall }),
        (0u64..3_600, any::<u16>(), 0u64..4, 0u64..3_000).prop_map(|(ms, l, n, wall)| {
            Event::Update {
                remote: ts(ms, l, n),
                wall,
            }
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn encoding_order_is_timestamp_order(a in timestamp(), b in timestamp()) {
        prop_assert_eq!(a.cmp(&b), a.encode().cmp(&b.encode()));
        prop_assert_eq!(HlcTimestamp::decode(&a.encode()), Ok(a));
    }

    #[test]
    fn serde_round_trips(a in timestamp()) {
        let json = serde_json::to_string(&a).unwrap();
        prop_assert_eq!(serde_json::from_str::<HlcTimestamp>(&json).unwrap(), a);
    }

    #[test]
    fn clock_never_goes_backwards(events in prop::collection::vec(event(), 1..64)) {
        let mut clock = HybridClock::new(9, MAX_DRIFT_MS);
        let mut max_wall = 0;
        for event in events {
            let before = clock.last();
            let (result, wall, remote) = match event {
                Event::Now { wall } => (clock.now(WallMillis(wall)), wall, None),
                Event::Update { remote, wall } => {
                    (clock.update(remote, WallMillis(wall)), wall, Some(remote))
                }
            };
            max_wall = max_wall.max(wall);
            match result {
                Ok(t) => {
                    prop_assert!(t > before, "{} not after {}", t, before);
                    prop_assert_eq!(t, clock.last());
                    prop_assert_eq!(t.node(), 9);
                    prop_assert!(t.physical_ms() >= wall);
                    if let Some(remote) = remote {
                        prop_assert!(t > remote);
                    }
                    // Drift refusal bounds how far the clock can run ahead of any wall
                    // clock it has been shown.
                    prop_assert!(t.physical_ms() <= max_wall + MAX_DRIFT_MS);
                }
                Err(e) => {
                    prop_assert_eq!(clock.last(), before, "refusal {} changed the clock", e);
                }
            }
        }
    }
}
