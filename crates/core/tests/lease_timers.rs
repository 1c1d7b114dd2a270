//! The leader's lease deadlines: time is a `MonoMillis` argument, so each test walks a clock by
//! hand and asserts which `Expire` commands the leader would propose, and when.

use arbiter_core::lease_table::{BreakGlass, LeaseCommand, LeaseOutcome, LeaseRefusal, LeaseTable};
use arbiter_core::lease_timers::{LeaseTimers, TimerRenewal, Walk};
use arbiter_core::{ApplyCtx, FencingToken, HolderId, MonoMillis, ResourceId, WallMillis};

const TTL: u64 = 3_000;

fn res(s: &str) -> ResourceId {
    ResourceId::new(s)
}

/// Apply `cmd` as the entry at `index` (the token it mints is derived from it).
fn apply(table: &mut LeaseTable, index: u64, cmd: LeaseCommand) -> LeaseOutcome {
    let ctx = ApplyCtx {
        token: FencingToken::from_log_position(index, 0),
        now: WallMillis(0),
    };
    table.apply(&cmd, &ctx)
}

fn acquire(resource: &str, holder: &str, break_glass: Option<BreakGlass>) -> LeaseCommand {
    LeaseCommand::Acquire {
        resource: res(resource),
        holder: HolderId::new(holder),
        region: None,
        ttl_ms: TTL,
        break_glass,
    }
}

/// Grant `resource` to `holder` as the entry at `index`; returns the token.
fn grant(table: &mut LeaseTable, index: u64, resource: &str, holder: &str) -> FencingToken {
    match apply(table, index, acquire(resource, holder, None)) {
        LeaseOutcome::Granted { token, .. } => token,
        other => panic!("expected a grant, got {other:?}"),
    }
}

fn revoke(resource: &str) -> LeaseCommand {
    LeaseCommand::Revoke {
        resource: res(resource),
        by: "operator".into(),
        reason: "move primary".into(),
    }
}

fn release(resource: &str, holder: &str, token: FencingToken) -> LeaseCommand {
    LeaseCommand::Release {
        resource: res(resource),
        holder: HolderId::new(holder),
        token,
    }
}

/// Propose what the timers say is due, as the entry at `index`, the way the leader's tick does.
fn expire_due(
    table: &mut LeaseTable,
    index: u64,
    due: Vec<(ResourceId, FencingToken)>,
) -> Vec<LeaseOutcome> {
    due.into_iter()
        .map(|(resource, token)| apply(table, index, LeaseCommand::Expire { resource, token }))
        .collect()
}

#[test]
fn new_leader_gives_every_live_lease_a_full_ttl_from_its_election() {
    // Granted (and perhaps renewed) under the old leader long ago; this node cannot know when.
    let mut table = LeaseTable::new();
    let orders = grant(&mut table, 1, "db/orders", "proxy-a");
    let users = grant(&mut table, 2, "db/users", "proxy-b");
    apply(&mut table, 3, revoke("db/users"));

    let elected = MonoMillis(1_000_000);
    let mut timers = LeaseTimers::new();
    timers.on_elected(&table, elected);

    let deadline = elected.saturating_add_ms(TTL);
    assert_eq!(timers.may_hold_until(&res("db/orders")), Some(deadline));
    assert_eq!(timers.may_hold_until(&res("db/users")), Some(deadline));
    assert!(timers.due(MonoMillis(deadline.0 - 1)).is_empty());
    assert_eq!(
        timers.due(deadline),
        [(res("db/orders"), orders), (res("db/users"), users)]
    );
}

#[test]
fn on_elected_forgets_deadlines_from_an_earlier_term() {
    let mut table = LeaseTable::new();
    let token = grant(&mut table, 1, "db/orders", "proxy-a");
    let mut timers = LeaseTimers::new();
    timers.reconcile(&table, MonoMillis(49_000));
    assert_eq!(
        timers.renew(&res("db/orders"), token, TTL, MonoMillis(50_000)),
        TimerRenewal::Renewed
    );

    // Re-elected after another leader ran; whatever this node knew is reset to the election.
    timers.on_elected(&table, MonoMillis(10_000));
    assert_eq!(
        timers.may_hold_until(&res("db/orders")),
        Some(MonoMillis(10_000 + TTL))
    );
}

#[test]
fn reconcile_after_a_grant_starts_its_ttl_and_leaves_existing_deadlines_alone() {
    let mut table = LeaseTable::new();
    grant(&mut table, 1, "db/orders", "proxy-a");
    let mut timers = LeaseTimers::new();
    timers.reconcile(&table, MonoMillis(100));

    grant(&mut table, 2, "db/users", "proxy-b");
    timers.reconcile(&table, MonoMillis(900));

    assert_eq!(
        timers.may_hold_until(&res("db/orders")),
        Some(MonoMillis(100 + TTL))
    );
    assert_eq!(
        timers.may_hold_until(&res("db/users")),
        Some(MonoMillis(900 + TTL))
    );
    assert_eq!(timers.may_hold_until(&res("db/none")), None);
}

#[test]
fn renew_extends_and_never_shortens_and_only_for_the_timed_token() {
    let mut table = LeaseTable::new();
    let token = grant(&mut table, 1, "db/orders", "proxy-a");
    let orders = res("db/orders");
    let mut timers = LeaseTimers::new();
    timers.reconcile(&table, MonoMillis(0));

    assert_eq!(
        timers.renew(&orders, token, TTL, MonoMillis(2_000)),
        TimerRenewal::Renewed
    );
    assert_eq!(
        timers.may_hold_until(&orders),
        Some(MonoMillis(2_000 + TTL))
    );
    assert!(timers.due(MonoMillis(TTL)).is_empty(), "renewal moved it");

    // A keep-alive processed late (received earlier) must not pull the deadline back.
    assert_eq!(
        timers.renew(&orders, token, TTL, MonoMillis(1_000)),
        TimerRenewal::Renewed
    );
    assert_eq!(
        timers.may_hold_until(&orders),
        Some(MonoMillis(2_000 + TTL))
    );

    assert_eq!(
        timers.renew(&orders, FencingToken(token.0 + 1), TTL, MonoMillis(9_000)),
        TimerRenewal::NoTimer
    );
    assert_eq!(
        timers.renew(&res("db/none"), token, TTL, MonoMillis(9_000)),
        TimerRenewal::NoTimer
    );
    assert_eq!(
        timers.may_hold_until(&orders),
        Some(MonoMillis(2_000 + TTL))
    );
}

#[test]
fn a_deadline_that_passed_cannot_be_renewed() {
    let mut table = LeaseTable::new();
    let token = grant(&mut table, 1, "db/orders", "proxy-a");
    let orders = res("db/orders");
    let mut timers = LeaseTimers::new();
    timers.reconcile(&table, MonoMillis(0));

    // One millisecond before the deadline a keep-alive still counts...
    assert_eq!(
        timers.renew(&orders, token, TTL, MonoMillis(TTL - 1)),
        TimerRenewal::Renewed
    );
    let deadline = MonoMillis(2 * TTL - 1);
    assert_eq!(timers.may_hold_until(&orders), Some(deadline));

    // ...at the deadline it is due, its `Expire` may be in flight, and nothing revives it.
    assert_eq!(timers.due(deadline), [(orders.clone(), token)]);
    for late in [deadline, MonoMillis(deadline.0 + 1), MonoMillis(10 * TTL)] {
        assert_eq!(
            timers.renew(&orders, token, TTL, late),
            TimerRenewal::Lapsed,
            "renewed at {late:?}"
        );
        assert_eq!(timers.may_hold_until(&orders), Some(deadline));
    }
    assert_eq!(timers.due(deadline), [(orders, token)]);
}

#[test]
fn due_lists_a_lease_only_once_its_deadline_is_reached() {
    let mut table = LeaseTable::new();
    let token = grant(&mut table, 1, "db/orders", "proxy-a");
    let mut timers = LeaseTimers::new();
    timers.reconcile(&table, MonoMillis(500));

    assert!(timers.due(MonoMillis(500)).is_empty());
    assert!(timers.due(MonoMillis(500 + TTL - 1)).is_empty());
    assert_eq!(
        timers.due(MonoMillis(500 + TTL)),
        [(res("db/orders"), token)]
    );
    // Still listed until the Expire is applied and reconciled: a lost proposal is retried.
    assert_eq!(timers.due(MonoMillis(500 + TTL + 1)).len(), 1);
}

#[test]
fn revoke_keeps_the_deadline_and_the_expire_loop_frees_the_resource() {
    let mut table = LeaseTable::new();
    let old = grant(&mut table, 1, "db/orders", "proxy-a");
    let mut timers = LeaseTimers::new();
    timers.reconcile(&table, MonoMillis(0));

    // Revoking does not shorten the wait: the holder may still believe it holds until TTL.
    apply(&mut table, 2, revoke("db/orders"));
    timers.reconcile(&table, MonoMillis(10));
    assert_eq!(
        timers.may_hold_until(&res("db/orders")),
        Some(MonoMillis(TTL))
    );

    // The leader proposes what is due; apply frees it; reconcile drops the timer.
    let due = timers.due(MonoMillis(TTL));
    assert_eq!(due, [(res("db/orders"), old)]);
    assert!(matches!(
        expire_due(&mut table, 3, due)[..],
        [LeaseOutcome::Expired { .. }]
    ));
    timers.reconcile(&table, MonoMillis(TTL));
    assert_eq!(timers.may_hold_until(&res("db/orders")), None);
    assert!(timers.due(MonoMillis(u64::MAX)).is_empty());

    let new = grant(&mut table, 4, "db/orders", "proxy-b");
    assert!(new > old);
}

#[test]
fn reconcile_drops_released_leases_and_retimes_replaced_ones() {
    let mut table = LeaseTable::new();
    let orders = grant(&mut table, 1, "db/orders", "proxy-a");
    let users = grant(&mut table, 2, "db/users", "proxy-b");
    let mut timers = LeaseTimers::new();
    timers.reconcile(&table, MonoMillis(0));

    apply(&mut table, 3, release("db/orders", "proxy-a", orders));
    // Break-glass replaces db/users' lease: the new token gets its own full TTL.
    let cmd = acquire(
        "db/users",
        "proxy-c",
        Some(BreakGlass {
            operator: "oncall".into(),
            reason: "drill".into(),
        }),
    );
    let LeaseOutcome::Granted {
        token: replaced, ..
    } = apply(&mut table, 4, cmd)
    else {
        panic!("expected a break-glass grant");
    };
    timers.reconcile(&table, MonoMillis(1_000));

    assert_eq!(timers.may_hold_until(&res("db/orders")), None);
    assert_eq!(
        timers.may_hold_until(&res("db/users")),
        Some(MonoMillis(1_000 + TTL))
    );
    assert_eq!(
        timers.renew(&res("db/users"), users, TTL, MonoMillis(1_500)),
        TimerRenewal::NoTimer
    );
    assert_eq!(
        timers.due(MonoMillis(1_000 + TTL)),
        [(res("db/users"), replaced)]
    );
}

#[test]
fn expire_proposed_for_a_lease_replaced_meanwhile_is_refused_by_the_table() {
    let mut table = LeaseTable::new();
    let old = grant(&mut table, 1, "db/orders", "proxy-a");
    let mut timers = LeaseTimers::new();
    timers.reconcile(&table, MonoMillis(0));
    let due = timers.due(MonoMillis(TTL));

    // Before the Expire commits, the holder releases and someone else is granted.
    apply(&mut table, 2, release("db/orders", "proxy-a", old));
    let new = grant(&mut table, 3, "db/orders", "proxy-b");

    // Refused as stale: the old lease's token is not the new one's, so proxy-b keeps it.
    assert_eq!(
        expire_due(&mut table, 4, due),
        [LeaseOutcome::Refused(LeaseRefusal::StaleToken {
            presented: old,
            current: new,
        })]
    );
    timers.reconcile(&table, MonoMillis(TTL));
    assert_eq!(
        timers.may_hold_until(&res("db/orders")),
        Some(MonoMillis(TTL + TTL))
    );
    assert_eq!(
        timers.renew(&res("db/orders"), new, TTL, MonoMillis(TTL)),
        TimerRenewal::Renewed
    );
}

#[test]
fn start_and_stop_track_one_lease_without_touching_others() {
    let a = ResourceId::from("a");
    let b = ResourceId::from("b");
    let mut timers = LeaseTimers::new();
    timers.start(&a, FencingToken(1 << 12), 1_000, MonoMillis(0));
    timers.start(&b, FencingToken(2 << 12), 5_000, MonoMillis(0));
    // Starting again for the same token does not move the deadline.
    timers.start(&a, FencingToken(1 << 12), 1_000, MonoMillis(900));
    assert_eq!(timers.may_hold_until(&a), Some(MonoMillis(1_000)));
    assert_eq!(
        timers.due(MonoMillis(1_000)),
        vec![(a.clone(), FencingToken(1 << 12))]
    );
    // A stop for another token changes nothing; the right one removes only that timer.
    timers.stop(&a, FencingToken(9 << 12));
    assert!(timers.may_hold_until(&a).is_some());
    timers.stop(&a, FencingToken(1 << 12));
    assert_eq!(timers.may_hold_until(&a), None);
    assert_eq!(timers.may_hold_until(&b), Some(MonoMillis(5_000)));
    assert!(timers.due(MonoMillis(1_000)).is_empty());
}

#[test]
fn start_for_a_new_token_replaces_the_timer_of_an_old_one() {
    let mut timers = LeaseTimers::new();
    let orders = res("db/orders");
    timers.start(&orders, FencingToken(4096), TTL, MonoMillis(0));
    // The old lease ended without this leader stopping its timer (it ended in an entry applied
    // before the next reconcile): the next grant's timer runs from its own start.
    timers.start(&orders, FencingToken(8192), TTL, MonoMillis(1_000));
    assert_eq!(
        timers.may_hold_until(&orders),
        Some(MonoMillis(1_000 + TTL))
    );
    assert!(
        timers.due(MonoMillis(TTL)).is_empty(),
        "the old deadline is gone"
    );
    assert_eq!(
        timers.due(MonoMillis(1_000 + TTL)),
        [(orders.clone(), FencingToken(8192))]
    );
    // Starting the same token again does not push its deadline out.
    timers.start(&orders, FencingToken(8192), TTL, MonoMillis(2_000));
    assert_eq!(
        timers.may_hold_until(&orders),
        Some(MonoMillis(1_000 + TTL))
    );
}

#[test]
fn due_sees_a_later_grant_with_an_earlier_deadline_and_not_a_renewed_lease() {
    // `due` walks the timers only once its lower bound on the earliest deadline has passed;
    // a grant that lands before that bound must lower it, and a renewal must not hide a
    // lease that is due, nor make a renewed one due.
    let mut timers = LeaseTimers::new();
    let (orders, users) = (res("db/orders"), res("db/users"));
    let (t1, t2) = (
        FencingToken::from_log_position(1, 0),
        FencingToken::from_log_position(2, 0),
    );
    timers.start(&orders, t1, 10_000, MonoMillis(0));
    assert!(timers.due(MonoMillis(5_000)).is_empty());
    // Granted later with a shorter TTL: due long before the first.
    timers.start(&users, t2, 1_000, MonoMillis(5_000));
    assert!(timers.due(MonoMillis(5_999)).is_empty());
    assert_eq!(timers.due(MonoMillis(6_000)), [(users.clone(), t2)]);
    // The first, renewed before its deadline, is not due at the old one.
    assert_eq!(
        timers.renew(&orders, t1, 10_000, MonoMillis(9_000)),
        TimerRenewal::Renewed
    );
    timers.stop(&users, t2);
    assert!(timers.due(MonoMillis(10_000)).is_empty());
    assert!(timers.due(MonoMillis(18_999)).is_empty());
    assert_eq!(timers.due(MonoMillis(19_000)), [(orders, t1)]);
}

#[test]
fn reconcile_keeps_running_deadlines_drops_ended_leases_and_times_new_ones() {
    let mut table = LeaseTable::new();
    let a = grant(&mut table, 1, "a", "proxy-a");
    let b = grant(&mut table, 2, "b", "proxy-b");
    let mut timers = LeaseTimers::new();
    timers.reconcile(&table, MonoMillis(0));
    // `b` ends, `c` is granted by an entry this leader did not propose; `a` keeps its deadline.
    apply(
        &mut table,
        3,
        LeaseCommand::Release {
            resource: res("b"),
            holder: HolderId::new("proxy-b"),
            token: b,
        },
    );
    let c = grant(&mut table, 4, "c", "proxy-c");
    timers.reconcile(&table, MonoMillis(1_000));
    assert_eq!(timers.may_hold_until(&res("a")), Some(MonoMillis(TTL)));
    assert_eq!(timers.may_hold_until(&res("b")), None);
    assert_eq!(
        timers.may_hold_until(&res("c")),
        Some(MonoMillis(1_000 + TTL))
    );
    assert_eq!(timers.due(MonoMillis(TTL)), [(res("a"), a)]);
    assert_eq!(
        timers.due(MonoMillis(1_000 + TTL)),
        [(res("a"), a), (res("c"), c)]
    );
}

/// `count` resources `r000`, `r001`, ..., each granted to its own holder; returns their tokens.
fn grant_many(table: &mut LeaseTable, count: u64) -> Vec<(ResourceId, FencingToken)> {
    (0..count)
        .map(|i| {
            let name = format!("r{i:03}");
            let token = grant(table, 100 + i, &name, &format!("proxy-{i}"));
            (res(&name), token)
        })
        .collect()
}

/// Walks `reconcile_step` to its end; returns how many steps it took.
fn reconcile_in_steps(
    timers: &mut LeaseTimers,
    table: &LeaseTable,
    now: MonoMillis,
    budget: usize,
) -> usize {
    let mut steps = 1;
    while timers.reconcile_step(table, now, budget) == Walk::Unfinished {
        steps += 1;
        assert!(steps < 10_000, "the walk does not end");
    }
    steps
}

#[test]
fn reconcile_in_steps_ends_where_reconcile_in_one_go_ends() {
    // Leases that ended, one replaced by a new token, one granted by an entry this leader did
    // not propose, and timers running from earlier: the bounded walk must reach the same timers
    // as the walk in one piece, whatever the step size.
    let mut table = LeaseTable::new();
    let leases = grant_many(&mut table, 40);
    let mut before = LeaseTimers::new();
    before.reconcile(&table, MonoMillis(0));
    for (i, (resource, token)) in leases.iter().enumerate() {
        let name = resource.to_string();
        match i % 5 {
            0 => {
                apply(
                    &mut table,
                    1_000 + i as u64,
                    release(&name, &format!("proxy-{i}"), *token),
                );
            }
            1 => {
                apply(&mut table, 1_000 + i as u64, revoke(&name));
            }
            2 => {
                let timer = before.renew(resource, *token, TTL, MonoMillis(500));
                assert_eq!(timer, TimerRenewal::Renewed);
            }
            _ => {}
        }
    }
    grant(&mut table, 2_000, "r000", "proxy-new");
    grant(&mut table, 2_001, "zz-late", "proxy-late");

    let now = MonoMillis(700);
    let mut whole = before.clone();
    whole.reconcile(&table, now);
    for budget in [1, 3, 7, 40, 41, 42, 1_000] {
        let mut stepped = before.clone();
        let steps = reconcile_in_steps(&mut stepped, &table, now, budget);
        // 41 rows: the step count shows the walk really went in pieces.
        assert_eq!(steps, 41 / budget + 1, "budget {budget}");
        for resource in leases.iter().map(|(r, _)| r).chain([&res("zz-late")]) {
            assert_eq!(
                stepped.may_hold_until(resource),
                whole.may_hold_until(resource),
                "{resource} with budget {budget}"
            );
        }
        assert_eq!(
            stepped.due(MonoMillis(u64::MAX)),
            whole.due(MonoMillis(u64::MAX))
        );
    }
    // And the one-go walk did what reconcile promises.
    assert_eq!(whole.may_hold_until(&res("r005")), None, "released");
    assert_eq!(
        whole.may_hold_until(&res("r000")),
        Some(MonoMillis(700 + TTL)),
        "re-granted: a new token, a new timer"
    );
    assert_eq!(
        whole.may_hold_until(&res("r006")),
        Some(MonoMillis(TTL)),
        "draining"
    );
    assert_eq!(
        whole.may_hold_until(&res("r007")),
        Some(MonoMillis(500 + TTL)),
        "renewed"
    );
}

#[test]
fn after_forget_nothing_expires_until_the_rebuild_reaches_it() {
    let mut table = LeaseTable::new();
    let leases = grant_many(&mut table, 10);
    let mut timers = LeaseTimers::new();
    timers.reconcile(&table, MonoMillis(0));
    let forgotten = timers.forget();
    drop(forgotten);

    // No timer, so nothing is due however late it is, and there is nothing to renew.
    assert!(timers.due(MonoMillis(u64::MAX)).is_empty());
    let (first, token) = &leases[0];
    assert_eq!(
        timers.renew(first, *token, TTL, MonoMillis(1)),
        TimerRenewal::NoTimer
    );

    // Elected at 10 s: the rebuild gives the leases it has reached a full TTL from then on.
    let elected = MonoMillis(10_000);
    assert_eq!(timers.reconcile_step(&table, elected, 4), Walk::Unfinished);
    let timed: Vec<bool> = leases
        .iter()
        .map(|(r, _)| timers.may_hold_until(r).is_some())
        .collect();
    assert_eq!(
        timed,
        [true, true, true, true, false, false, false, false, false, false]
    );
    assert_eq!(reconcile_in_steps(&mut timers, &table, elected, 4), 2);
    for (resource, _) in &leases {
        assert_eq!(
            timers.may_hold_until(resource),
            Some(elected.saturating_add_ms(TTL))
        );
    }
    assert!(timers.due(MonoMillis(elected.0 + TTL - 1)).is_empty());
    assert_eq!(timers.due(elected.saturating_add_ms(TTL)), leases);
}

#[test]
fn a_due_walk_in_steps_finds_every_due_timer_and_one_started_behind_it() {
    let mut table = LeaseTable::new();
    let leases = grant_many(&mut table, 20);
    let mut timers = LeaseTimers::new();
    timers.reconcile(&table, MonoMillis(0));
    // Half the leases renewed: at TTL only the other half is due.
    for (resource, token) in leases.iter().step_by(2) {
        timers.renew(resource, *token, TTL, MonoMillis(1_000));
    }
    let walk = |timers: &mut LeaseTimers, now, between: &mut dyn FnMut(&mut LeaseTimers)| {
        let mut due = Vec::new();
        let mut steps = 0;
        loop {
            steps += 1;
            if timers.due_step(now, 3, &mut due) == Walk::Done {
                return (due, steps);
            }
            if steps == 2 {
                between(timers);
            }
        }
    };
    let (due, steps) = walk(&mut timers, MonoMillis(TTL), &mut |_| {});
    assert_eq!(steps, 20 / 3 + 1, "steps of 3 over 20 timers");
    let odd: Vec<_> = leases.iter().skip(1).step_by(2).cloned().collect();
    assert_eq!(due, odd);
    for (resource, token) in &odd {
        timers.stop(resource, *token);
    }

    // The bound is now stale (the renewed leases are due at TTL + 1 s), so the next look walks
    // again and finds nothing. Between its steps a grant times `r000` afresh with a short TTL,
    // behind the walk: the bound the walk leaves must count it, or `due` would not look again
    // until some other deadline passed.
    let (r000, t0) = &leases[0];
    let now = MonoMillis(TTL + 500);
    let (due, _) = walk(&mut timers, now, &mut |timers| {
        timers.stop(r000, *t0);
        timers.start(r000, *t0, 100, now);
    });
    assert!(due.is_empty());
    assert_eq!(
        timers.due(MonoMillis(now.0 + 100)),
        [(r000.clone(), *t0)],
        "the timer started behind the walk"
    );
}
