//! One body of law tests run against every CRDT: merge is commutative, associative and
//! idempotent, and replicas that receive the same updates in any order, with duplicates,
//! converge.
//!
//! States are never built by hand: three replicas run a generated history of local operations
//! (stamped by their own HLCs, with wall clocks that wander backwards too) interleaved with
//! state syncs, so every state tested is one a real deployment can reach.

use arbiter_core::crdt::{Crdt, GCounter, LwwMap, LwwRegister, OrSet, PnCounter};
use arbiter_core::hlc::{HlcTimestamp, HybridClock};
use arbiter_core::types::{NodeId, WallMillis};
use proptest::prelude::*;
use proptest::sample::Index;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt::Debug;

const REPLICAS: usize = 3;

/// What the law suite needs to know about a CRDT: how to generate and apply its operations.
trait Subject: Crdt + Clone + PartialEq + Debug + Default + Serialize + DeserializeOwned {
    type Op: Debug + Clone;
    fn op() -> BoxedStrategy<Self::Op>;
    fn apply(&mut self, node: NodeId, op: &Self::Op, at: HlcTimestamp);
}

impl Subject for GCounter {
    type Op = u64;
    fn op() -> BoxedStrategy<u64> {
        (0u64..5).boxed()
    }
    fn apply(&mut self, node: NodeId, by: &u64, _: HlcTimestamp) {
        self.increment(node, *by).unwrap();
    }
}

impl Subject for PnCounter {
    /// `(increment?, amount)`
    type Op = (bool, u64);
    fn op() -> BoxedStrategy<(bool, u64)> {
        (any::<bool>(), 0u64..5).boxed()
    }
    fn apply(&mut self, node: NodeId, &(up, by): &(bool, u64), _: HlcTimestamp) {
        if up {
            self.increment(node, by).unwrap();
        } else {
            self.decrement(node, by).unwrap();
        }
    }
}

impl Subject for OrSet<u8> {
    /// `(add?, element)`; few elements, so adds and removes collide often.
    type Op = (bool, u8);
    fn op() -> BoxedStrategy<(bool, u8)> {
        (any::<bool>(), 0u8..4).boxed()
    }
    fn apply(&mut self, node: NodeId, &(add, elem): &(bool, u8), _: HlcTimestamp) {
        if add {
            self.add(node, elem);
        } else {
            self.remove(&elem);
        }
    }
}

impl Subject for LwwRegister<u8> {
    type Op = u8;
    fn op() -> BoxedStrategy<u8> {
        (0u8..4).boxed()
    }
    fn apply(&mut self, _: NodeId, value: &u8, at: HlcTimestamp) {
        self.set(*value, at);
    }
}

impl Subject for LwwMap<u8, u8> {
    /// `(key, Some(value))` inserts, `(key, None)` removes.
    type Op = (u8, Option<u8>);
    fn op() -> BoxedStrategy<(u8, Option<u8>)> {
        (0u8..4, proptest::option::of(0u8..4)).boxed()
    }
    fn apply(&mut self, _: NodeId, &(key, value): &(u8, Option<u8>), at: HlcTimestamp) {
        match value {
            Some(v) => self.insert(key, v, at),
            None => self.remove(key, at),
        };
    }
}

#[derive(Debug, Clone)]
enum Step<Op> {
    /// Replica `replica` performs `op` with its wall clock reading `wall`.
    Local { replica: usize, wall: u64, op: Op },
    /// Replica `to` merges replica `from`'s current state.
    Sync { from: usize, to: usize },
}

fn history<C: Subject>() -> impl Strategy<Value = Vec<Step<C::Op>>> {
    let step = prop_oneof![
        3 => (0..REPLICAS, 0u64..1_000, C::op())
            .prop_map(|(replica, wall, op)| Step::Local { replica, wall, op }),
        1 => (0..REPLICAS, 0..REPLICAS).prop_map(|(from, to)| Step::Sync { from, to }),
    ];
    prop::collection::vec(step, 1..24)
}

/// Runs a history; returns the final replica states and every state any replica passed
/// through (the "messages" state-based replication could ship).
fn run<C: Subject>(steps: &[Step<C::Op>]) -> ([C; REPLICAS], Vec<C>) {
    let mut replicas: [C; REPLICAS] = Default::default();
    let mut clocks: Vec<HybridClock> = (0..REPLICAS)
        .map(|r| HybridClock::new(r as NodeId + 1, u64::MAX))
        .collect();
    let mut sent = Vec::new();
    for step in steps {
        let changed = match step {
            Step::Local { replica, wall, op } => {
                let at = clocks[*replica].now(WallMillis(*wall)).unwrap();
                replicas[*replica].apply(*replica as NodeId + 1, op, at);
                *replica
            }
            Step::Sync { from, to } => {
                let theirs = replicas[*from].clone();
                replicas[*to].merge(&theirs);
                *to
            }
        };
        sent.push(replicas[changed].clone());
    }
    (replicas, sent)
}

fn merged<C: Crdt + Clone>(a: &C, b: &C) -> C {
    let mut out = a.clone();
    out.merge(b);
    out
}

fn check_commutative<C: Subject>(steps: &[Step<C::Op>]) -> Result<(), TestCaseError> {
    let ([a, b, _], _) = run::<C>(steps);
    prop_assert_eq!(merged(&a, &b), merged(&b, &a));
    Ok(())
}

fn check_associative<C: Subject>(steps: &[Step<C::Op>]) -> Result<(), TestCaseError> {
    let ([a, b, c], _) = run::<C>(steps);
    prop_assert_eq!(merged(&merged(&a, &b), &c), merged(&a, &merged(&b, &c)));
    Ok(())
}

fn check_idempotent<C: Subject>(steps: &[Step<C::Op>]) -> Result<(), TestCaseError> {
    let ([a, b, _], _) = run::<C>(steps);
    prop_assert_eq!(&merged(&a, &a), &a);
    let ab = merged(&a, &b);
    prop_assert_eq!(&merged(&ab, &b), &ab);
    // The empty state is the identity: a fresh replica joining learns exactly the state.
    prop_assert_eq!(&merged(&C::default(), &a), &a);
    Ok(())
}

/// Two replicas receive every shipped state, each in its own order (`order_*` are sort keys)
/// and with extra duplicate deliveries; both must end equal to the merge of all final states.
fn check_converges<C: Subject>(
    steps: &[Step<C::Op>],
    order_1: &[u32],
    order_2: &[u32],
    dups: &[(Index, Index)],
) -> Result<(), TestCaseError> {
    let (finals, sent) = run::<C>(steps);
    let everything = finals.iter().fold(C::default(), |acc, s| merged(&acc, s));

    let receive = |keys: &[u32]| {
        let mut order: Vec<usize> = (0..sent.len()).collect();
        order.sort_by_key(|&i| keys[i % keys.len()]);
        for (which, position) in dups {
            let at = position.index(order.len() + 1);
            order.insert(at, which.index(sent.len()));
        }
        order
            .into_iter()
            .fold(C::default(), |acc, i| merged(&acc, &sent[i]))
    };
    let r1 = receive(order_1);
    let r2 = receive(order_2);
    prop_assert_eq!(&r1, &r2);
    prop_assert_eq!(&r1, &everything);

    // Shipping states as bytes must not change them.
    let bytes = serde_json::to_vec(&r1).unwrap();
    prop_assert_eq!(&serde_json::from_slice::<C>(&bytes).unwrap(), &r1);
    Ok(())
}

macro_rules! law_suite {
    ($module:ident, $ty:ty) => {
        mod $module {
            use super::*;

            proptest! {
                #![proptest_config(ProptestConfig::with_cases(128))]

                #[test]
                fn merge_is_commutative(steps in history::<$ty>()) {
                    check_commutative::<$ty>(&steps)?;
                }

                #[test]
                fn merge_is_associative(steps in history::<$ty>()) {
                    check_associative::<$ty>(&steps)?;
                }

                #[test]
                fn merge_is_idempotent(steps in history::<$ty>()) {
                    check_idempotent::<$ty>(&steps)?;
                }

                #[test]
                fn replicas_converge_whatever_the_delivery_order_and_duplicates(
                    steps in history::<$ty>(),
                    order_1 in prop::collection::vec(any::<u32>(), 24),
                    order_2 in prop::collection::vec(any::<u32>(), 24),
                    dups in prop::collection::vec(any::<(Index, Index)>(), 0..8),
                ) {
                    check_converges::<$ty>(&steps, &order_1, &order_2, &dups)?;
                }
            }
        }
    };
}

law_suite!(g_counter, GCounter);
law_suite!(pn_counter, PnCounter);
law_suite!(or_set, OrSet<u8>);
law_suite!(lww_register, LwwRegister<u8>);
law_suite!(lww_map, LwwMap<u8, u8>);

/// A write to key `.1` stamped `.0`: `Some(value)` inserts, `None` removes.
type StampedOp = (HlcTimestamp, u8, Option<u8>);

/// LWW types also converge when the *operations* themselves (stamped writes) are delivered in
/// any order with duplicates, without shipping whole states.
fn stamped_ops() -> impl Strategy<Value = Vec<StampedOp>> {
    // Distinct stamps, as distinct writes from real clocks always have.
    prop::collection::btree_map(
        (0u64..50, 0u16..3, 1u64..4),
        (0u8..4, proptest::option::of(0u8..4)),
        1..16,
    )
    .prop_map(|m| {
        m.into_iter()
            .map(|((ms, l, n), (k, v))| (HlcTimestamp::new(ms, l, n).unwrap(), k, v))
            .collect()
    })
}

fn apply_ops(ops: &[StampedOp], order: &[usize]) -> (LwwMap<u8, u8>, LwwRegister<Option<u8>>) {
    let mut map = LwwMap::new();
    let mut reg = LwwRegister::new();
    for &i in order {
        let (at, key, value) = ops[i];
        match value {
            Some(v) => map.insert(key, v, at),
            None => map.remove(key, at),
        };
        reg.set(value, at);
    }
    (map, reg)
}

/// Ops plus a delivery order: a random permutation of all of them, with duplicates inserted
/// at random positions.
fn ops_and_delivery() -> impl Strategy<Value = (Vec<StampedOp>, Vec<usize>)> {
    stamped_ops().prop_flat_map(|ops| {
        let n = ops.len();
        let permutation = Just((0..n).collect::<Vec<usize>>()).prop_shuffle();
        let dups = prop::collection::vec((0..n, any::<Index>()), 0..8);
        (Just(ops), permutation, dups).prop_map(|(ops, mut order, dups)| {
            for (which, position) in dups {
                let at = position.index(order.len() + 1);
                order.insert(at, which);
            }
            (ops, order)
        })
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn lww_operations_converge_in_any_order_with_duplicates(
        (ops, delivery) in ops_and_delivery(),
    ) {
        let in_order: Vec<usize> = (0..ops.len()).collect();
        prop_assert_eq!(apply_ops(&ops, &in_order), apply_ops(&ops, &delivery));
    }
}
