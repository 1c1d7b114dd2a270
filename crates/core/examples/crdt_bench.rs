//! Throughput of HLC timestamps and CRDT merges on this machine:
//! `cargo run -p arbiter-core --release --example crdt_bench`.
//!
//! Invariant: bounded run time. Every figure is the median of `RUNS` timed runs of `RUN_TIME`
//! each (after one warm-up run), so the whole bench takes about 12 s whatever the machine.

use arbiter_core::crdt::{Crdt, GCounter, LwwMap, LwwRegister, OrSet, PnCounter};
use arbiter_core::hlc::{HlcTimestamp, HybridClock};
use arbiter_core::types::{NodeId, WallMillis};
use std::hint::black_box;
use std::time::{Duration, Instant};

const RUNS: usize = 5;
const RUN_TIME: Duration = Duration::from_millis(150);
/// A plausible "now" in Unix milliseconds (2025), so timestamps have realistic magnitudes.
const EPOCH_MS: u64 = 1_750_000_000_000;
/// HLC benches advance the simulated wall clock by 1 ms every this many calls: a realistic
/// rate that also keeps the 16-bit logical counter far from overflow.
const CALLS_PER_MS: u64 = 1_000;
/// Size of the large set and map states.
const ELEMENTS: usize = 1_000;
/// The arbiter's three regions.
const REGIONS: [NodeId; 3] = [1, 2, 3];

/// Median ops/s of `op` over `RUNS` runs. `op(i)` performs one operation; `i` increases across
/// all calls so benches can derive fresh inputs from it. The clock is read every `batch` ops to
/// keep `Instant::now` out of the measurement of fast operations.
fn measure(batch: u64, mut op: impl FnMut(u64)) -> f64 {
    let mut i = 0u64;
    let mut rates = Vec::with_capacity(RUNS);
    for run in 0..=RUNS {
        let start = Instant::now();
        let mut ops = 0u64;
        while start.elapsed() < RUN_TIME {
            for _ in 0..batch {
                op(i);
                i += 1;
            }
            ops += batch;
        }
        // Run 0 warms caches and the allocator; it is not counted.
        if run > 0 {
            rates.push(ops as f64 / start.elapsed().as_secs_f64());
        }
    }
    rates.sort_by(f64::total_cmp);
    rates[RUNS / 2]
}

fn report(name: &str, ops_per_sec: f64) {
    println!("{name:<52} {:>14.0} ops/s", ops_per_sec);
}

fn wall(i: u64) -> WallMillis {
    WallMillis(EPOCH_MS + i / CALLS_PER_MS)
}

/// Two replicas of a CRDT that have diverged: each applied its own operations.
fn diverged<C: Crdt + Default>(mut op: impl FnMut(&mut C, NodeId, usize)) -> (C, C) {
    let (mut a, mut b) = (C::default(), C::default());
    for i in 0..ELEMENTS {
        // Interleave so the two replicas share some keys and differ on others.
        op(&mut a, REGIONS[0], i);
        op(&mut b, REGIONS[1], i + ELEMENTS / 2);
    }
    (a, b)
}

/// Reports merges of `b` into a copy of `a`, both into an already-converged state (the steady
/// state of anti-entropy) and into a fresh clone of the diverged `a` (clone cost included).
fn bench_merge<C: Crdt + Clone>(name: &str, a: &C, b: &C) {
    let mut converged = a.clone();
    converged.merge(b);
    report(
        &format!("merge {name}, converged"),
        measure(1, |_| converged.merge(black_box(b))),
    );
    report(
        &format!("clone + merge {name}, diverged"),
        measure(1, |_| {
            let mut x = a.clone();
            x.merge(black_box(b));
            black_box(x);
        }),
    );
}

fn main() {
    let started = Instant::now();
    println!(
        "median of {RUNS} runs x {} ms each (plus one warm-up run)\n",
        RUN_TIME.as_millis()
    );

    // The benches feed in-range wall clocks and remotes within the drift bound, advancing 1 ms
    // per CALLS_PER_MS calls, so the clock never refuses and `expect` cannot fire.
    let mut clock = HybridClock::new(REGIONS[0], 500);
    report(
        "hlc now",
        measure(1024, |i| {
            black_box(clock.now(wall(i)).expect("in-range bench input"));
        }),
    );

    let mut remote = HybridClock::new(REGIONS[1], 500);
    let remotes: Vec<HlcTimestamp> = (0..1024)
        .map(|i| remote.now(wall(i)).expect("in-range bench input"))
        .collect();
    let mut clock = HybridClock::new(REGIONS[0], 500);
    report(
        "hlc update (observe a remote timestamp)",
        measure(1024, |i| {
            let r = remotes[(i % 1024) as usize];
            black_box(
                clock
                    .update(black_box(r), wall(i))
                    .expect("in-range bench input"),
            );
        }),
    );

    let stamp = clock.last();
    report(
        "hlc encode (16 bytes)",
        measure(1024, |_| {
            black_box(black_box(stamp).encode());
        }),
    );
    let bytes = stamp.encode();
    report(
        "hlc decode (16 bytes)",
        measure(1024, |_| {
            black_box(HlcTimestamp::decode(black_box(&bytes)).expect("valid encoding"));
        }),
    );

    // Timestamps for the LWW types come from real clocks so ties resolve as in production.
    let mut clocks = [
        HybridClock::new(REGIONS[0], 500),
        HybridClock::new(REGIONS[1], 500),
    ];
    let mut stamp_for = |node: NodeId, i: usize| {
        clocks[(node - 1) as usize]
            .now(wall(i as u64))
            .expect("in-range bench input")
    };

    let (a, b) = diverged::<LwwRegister<u64>>(|r, node, i| {
        r.set(i as u64, stamp_for(node, i));
    });
    bench_merge("lww register", &a, &b);

    let counter = |c: &mut GCounter, node: NodeId, _: usize| {
        c.increment(node, 1)
            .expect("bench counts stay far below u64::MAX");
    };
    let (mut a, mut b) = diverged::<GCounter>(counter);
    counter(&mut a, REGIONS[2], 0);
    counter(&mut b, REGIONS[2], 0);
    bench_merge("g-counter (3 regions)", &a, &b);

    let (a, b) = diverged::<PnCounter>(|c, node, i| {
        let applied = if i % 3 == 0 {
            c.decrement(node, 1)
        } else {
            c.increment(node, 2)
        };
        applied.expect("bench counts stay far below u64::MAX");
    });
    bench_merge("pn-counter (2 regions)", &a, &b);

    let (a, b) = diverged::<OrSet<u64>>(|s, node, i| {
        s.add(node, i as u64);
        if i % 4 == 0 {
            s.remove(&(i as u64));
        }
    });
    bench_merge(&format!("or-set (~{ELEMENTS} elements)"), &a, &b);

    let (a, b) = diverged::<LwwMap<u64, u64>>(|m, node, i| {
        let at = stamp_for(node, i);
        if i % 4 == 0 {
            m.remove(i as u64, at);
        } else {
            m.insert(i as u64, node, at);
        }
    });
    bench_merge(&format!("lww map (~{ELEMENTS} keys)"), &a, &b);

    println!("\ntotal {:.1} s", started.elapsed().as_secs_f64());
}
