//! The replicated lease table, driven the way the Raft state machine drives it: one command per
//! log entry, each with the token its log position mints. Every test reads as a short story of
//! commands and asserts on the returned outcomes and the resulting rows.

use arbiter_core::lease_table::{
    BreakGlass, DrainCause, LeaseCommand, LeaseError, LeaseLimits, LeaseOutcome, LeaseRefusal,
    LeaseState, LeaseTable, Revocation, TokenValidity,
};
use arbiter_core::{ApplyCtx, FencingToken, HolderId, RegionId, ResourceId, WallMillis};

const TTL: u64 = 5_000;

/// A log being applied: each `apply` is the next entry, so its token is strictly higher.
#[derive(Default)]
struct Log {
    table: LeaseTable,
    index: u64,
}

impl Log {
    fn apply(&mut self, cmd: LeaseCommand) -> LeaseOutcome {
        self.index += 1;
        let ctx = ApplyCtx {
            token: FencingToken::from_log_position(self.index, 0),
            now: WallMillis(1_700_000_000_000 + self.index),
        };
        self.table.apply(&cmd, &ctx)
    }

    /// Apply and expect a fresh grant; returns its token.
    fn grant(&mut self, resource: &str, holder: &str, region: &str) -> FencingToken {
        match self.apply(acquire(resource, holder, region)) {
            LeaseOutcome::Granted {
                token,
                overrode: None,
                ..
            } => token,
            other => panic!("expected a grant, got {other:?}"),
        }
    }

    fn state(&self, resource: &str) -> &LeaseState {
        &self.table.get(&res(resource)).expect("resource row").lease
    }

    fn epoch(&self, resource: &str) -> FencingToken {
        self.table.epoch(&res(resource)).expect("resource epoch")
    }
}

fn res(s: &str) -> ResourceId {
    ResourceId::new(s)
}

fn who(s: &str) -> HolderId {
    HolderId::new(s)
}

fn acquire(resource: &str, holder: &str, region: &str) -> LeaseCommand {
    LeaseCommand::Acquire {
        resource: res(resource),
        holder: who(holder),
        region: Some(RegionId::new(region)),
        ttl_ms: TTL,
        break_glass: None,
    }
}

fn break_glass(resource: &str, holder: &str, region: &str) -> LeaseCommand {
    LeaseCommand::Acquire {
        resource: res(resource),
        holder: who(holder),
        region: Some(RegionId::new(region)),
        ttl_ms: TTL,
        break_glass: Some(BreakGlass {
            operator: "oncall@example.com".into(),
            reason: "us-east-1 unreachable, RTO budget exhausted".into(),
        }),
    }
}

fn release(resource: &str, holder: &str, token: FencingToken) -> LeaseCommand {
    LeaseCommand::Release {
        resource: res(resource),
        holder: who(holder),
        token,
    }
}

fn revoke(resource: &str) -> LeaseCommand {
    LeaseCommand::Revoke {
        resource: res(resource),
        by: "operator".into(),
        reason: "maintenance".into(),
    }
}

fn fence(resource: &str) -> LeaseCommand {
    LeaseCommand::Fence {
        resource: res(resource),
        by: "dr-controller".into(),
        reason: "failover".into(),
    }
}

fn expire(resource: &str, token: FencingToken) -> LeaseCommand {
    LeaseCommand::Expire {
        resource: res(resource),
        token,
    }
}

#[test]
fn grant_on_a_new_resource_mints_the_entry_token_as_lease_token_and_epoch() {
    let mut log = Log::default();
    let token = log.grant("db/orders", "proxy-a", "us-east-1");

    assert_eq!(token, FencingToken::from_log_position(1, 0));
    assert_eq!(log.epoch("db/orders"), token);
    let LeaseState::Held(lease) = log.state("db/orders") else {
        panic!("expected Held, got {:?}", log.state("db/orders"));
    };
    assert_eq!(lease.holder, who("proxy-a"));
    assert_eq!(lease.region, Some(RegionId::new("us-east-1")));
    assert_eq!(lease.ttl_ms, TTL);
    assert_eq!(lease.granted_at, WallMillis(1_700_000_000_001));
}

#[test]
fn acquire_of_a_lease_held_by_another_is_refused_naming_the_holder() {
    let mut log = Log::default();
    let token = log.grant("db/orders", "proxy-a", "us-east-1");

    let outcome = log.apply(acquire("db/orders", "proxy-b", "us-west-2"));

    assert_eq!(
        outcome,
        LeaseOutcome::Refused(LeaseRefusal::HeldBy {
            holder: who("proxy-a"),
            token,
            ttl_ms: TTL,
        })
    );
    assert_eq!(log.epoch("db/orders"), token, "a refusal changes nothing");
}

#[test]
fn reacquire_by_the_holder_is_an_idempotent_retry() {
    let mut log = Log::default();
    let token = log.grant("db/orders", "proxy-a", "us-east-1");

    // A retried acquire (the first reply was lost), even with another TTL, returns the lease as
    // granted: same token, same TTL, no epoch change.
    let retry = LeaseCommand::Acquire {
        resource: res("db/orders"),
        holder: who("proxy-a"),
        region: None,
        ttl_ms: TTL * 2,
        break_glass: None,
    };
    assert_eq!(
        log.apply(retry),
        LeaseOutcome::AlreadyHeld { token, ttl_ms: TTL }
    );
    assert_eq!(log.epoch("db/orders"), token);
}

#[test]
fn voluntary_release_frees_at_once() {
    let mut log = Log::default();
    let first = log.grant("db/orders", "proxy-a", "us-east-1");

    assert_eq!(
        log.apply(release("db/orders", "proxy-a", first)),
        LeaseOutcome::Released
    );
    assert_eq!(log.state("db/orders"), &LeaseState::Free);
    assert_eq!(log.epoch("db/orders"), first, "release does not mint");

    // No draining wait: the holder said it stopped writing.
    let second = log.grant("db/orders", "proxy-b", "us-west-2");
    assert!(second > first);
}

#[test]
fn release_is_refused_for_a_stale_token_another_holder_or_a_free_resource() {
    let mut log = Log::default();
    let token = log.grant("db/orders", "proxy-a", "us-east-1");

    assert_eq!(
        log.apply(release("db/orders", "proxy-a", FencingToken(1))),
        LeaseOutcome::Refused(LeaseRefusal::StaleToken {
            presented: FencingToken(1),
            current: token,
        })
    );
    assert_eq!(
        log.apply(release("db/orders", "proxy-b", token)),
        LeaseOutcome::Refused(LeaseRefusal::NotHolder {
            holder: who("proxy-a"),
        })
    );
    assert_eq!(
        log.apply(release("db/unknown", "proxy-a", token)),
        LeaseOutcome::Refused(LeaseRefusal::NotHeld)
    );
    assert!(log.table.get(&res("db/unknown")).is_none());
    assert!(matches!(log.state("db/orders"), LeaseState::Held(_)));
}

#[test]
fn revoked_lease_drains_until_expire_then_a_new_grant_gets_a_higher_token() {
    let mut log = Log::default();
    let old = log.grant("db/orders", "proxy-a", "us-east-1");

    // Revoke: the epoch rises, the lease drains under its old token.
    let LeaseOutcome::Revoked(revocation) = log.apply(revoke("db/orders")) else {
        panic!("expected a revocation");
    };
    assert_eq!(revocation.holder, who("proxy-a"));
    assert_eq!(revocation.token, old);
    assert!(revocation.epoch > old);
    assert_eq!(log.epoch("db/orders"), revocation.epoch);
    let LeaseState::Draining { lease, cause, .. } = log.state("db/orders") else {
        panic!("expected Draining");
    };
    assert_eq!(lease.token, old);
    assert_eq!(
        cause,
        &DrainCause::Revoked {
            by: "operator".into(),
            reason: "maintenance".into(),
        }
    );

    // proxy-a may still believe it holds: nobody, not even proxy-a, gets the lease yet.
    let draining = LeaseOutcome::Refused(LeaseRefusal::Draining {
        holder: who("proxy-a"),
        token: old,
    });
    assert_eq!(
        log.apply(acquire("db/orders", "proxy-b", "us-west-2")),
        draining
    );
    assert_eq!(
        log.apply(acquire("db/orders", "proxy-a", "us-east-1")),
        draining
    );
    assert_eq!(log.apply(revoke("db/orders")), draining);

    // The leader's timer for the old token passed.
    assert_eq!(
        log.apply(expire("db/orders", old)),
        LeaseOutcome::Expired {
            holder: who("proxy-a"),
        }
    );
    assert_eq!(log.state("db/orders"), &LeaseState::Free);

    let new = log.grant("db/orders", "proxy-b", "us-west-2");
    assert!(new > revocation.epoch);
    assert_eq!(log.epoch("db/orders"), new);
}

#[test]
fn draining_lease_released_by_its_holder_frees_at_once() {
    let mut log = Log::default();
    let old = log.grant("db/orders", "proxy-a", "us-east-1");
    log.apply(revoke("db/orders"));

    assert_eq!(
        log.apply(release("db/orders", "proxy-a", old)),
        LeaseOutcome::Released
    );
    log.grant("db/orders", "proxy-b", "us-west-2");
}

#[test]
fn expire_with_a_stale_token_never_frees_a_newer_lease() {
    let mut log = Log::default();
    let old = log.grant("db/orders", "proxy-a", "us-east-1");
    log.apply(release("db/orders", "proxy-a", old));
    let new = log.grant("db/orders", "proxy-b", "us-west-2");

    // A late Expire for the released lease, proposed before the release was seen.
    assert_eq!(
        log.apply(expire("db/orders", old)),
        LeaseOutcome::Refused(LeaseRefusal::StaleToken {
            presented: old,
            current: new,
        })
    );
    assert!(matches!(log.state("db/orders"), LeaseState::Held(l) if l.token == new));
    assert_eq!(
        log.apply(expire("db/other", old)),
        LeaseOutcome::Refused(LeaseRefusal::NotHeld)
    );
}

#[test]
fn lapsed_held_lease_expires_straight_to_free() {
    let mut log = Log::default();
    let token = log.grant("db/orders", "proxy-a", "us-east-1");

    assert_eq!(
        log.apply(expire("db/orders", token)),
        LeaseOutcome::Expired {
            holder: who("proxy-a"),
        }
    );
    assert_eq!(
        log.apply(expire("db/orders", token)),
        LeaseOutcome::Refused(LeaseRefusal::NotHeld),
        "a duplicate Expire is a harmless refusal"
    );
    assert_eq!(log.epoch("db/orders"), token, "expiry does not mint");
}

#[test]
fn fence_raises_the_epoch_and_drains_a_held_lease() {
    let mut log = Log::default();
    let token = log.grant("db/orders", "proxy-a", "us-east-1");

    let LeaseOutcome::Fenced { epoch, drained } = log.apply(fence("db/orders")) else {
        panic!("expected Fenced");
    };
    assert!(epoch > token);
    assert_eq!(drained, Some((who("proxy-a"), token)));
    assert_eq!(log.epoch("db/orders"), epoch);
    assert_eq!(
        log.table.validate_token(&res("db/orders"), token),
        TokenValidity::Stale { current: epoch }
    );

    // Fencing again moves only the epoch; the drain keeps its first cause.
    let LeaseOutcome::Fenced {
        epoch: second,
        drained: None,
    } = log.apply(fence("db/orders"))
    else {
        panic!("expected a second Fenced without a drained lease");
    };
    assert!(second > epoch);
    assert!(matches!(
        log.state("db/orders"),
        LeaseState::Draining {
            cause: DrainCause::Fenced { .. },
            ..
        }
    ));
}

#[test]
fn fence_of_a_never_leased_resource_sets_a_floor_for_its_tokens() {
    let mut log = Log::default();

    let LeaseOutcome::Fenced {
        epoch,
        drained: None,
    } = log.apply(fence("db/new"))
    else {
        panic!("expected Fenced");
    };
    assert_eq!(log.state("db/new"), &LeaseState::Free);
    assert_eq!(log.epoch("db/new"), epoch);
    assert_eq!(
        log.table.validate_token(&res("db/new"), epoch),
        TokenValidity::Inactive
    );
    assert!(log.grant("db/new", "proxy-a", "us-east-1") > epoch);
}

#[test]
fn revoke_region_drains_every_held_lease_in_that_region_only() {
    let mut log = Log::default();
    let a1 = log.grant("db/a1", "proxy-east", "us-east-1");
    let a2 = log.grant("db/a2", "proxy-east", "us-east-1");
    let b = log.grant("db/b", "proxy-west", "us-west-2");
    let a3 = log.grant("db/a3", "proxy-east", "us-east-1");
    log.apply(revoke("db/a3")); // already draining: not revoked again
    let a3_epoch = log.epoch("db/a3");

    let outcome = log.apply(LeaseCommand::RevokeRegion {
        region: RegionId::new("us-east-1"),
        by: "dr-controller".into(),
        reason: "us-east-1 declared down by 3/3 vantage points".into(),
    });

    let epoch = FencingToken::from_log_position(log.index, 0);
    let revoked = |resource: &str, token| Revocation {
        resource: res(resource),
        holder: who("proxy-east"),
        token,
        epoch,
    };
    assert_eq!(
        outcome,
        LeaseOutcome::RevokedMany(vec![revoked("db/a1", a1), revoked("db/a2", a2)])
    );
    assert_eq!(log.epoch("db/a1"), epoch);
    assert_eq!(log.epoch("db/a2"), epoch);
    assert_eq!(log.epoch("db/b"), b);
    assert_eq!(log.epoch("db/a3"), a3_epoch);
    assert!(a3 < a3_epoch);
    assert!(matches!(log.state("db/b"), LeaseState::Held(_)));

    let east = RegionId::new("us-east-1");
    let live_east: Vec<_> = log
        .table
        .leases_of_region(&east)
        .map(|(r, _)| r.as_str())
        .collect();
    assert_eq!(live_east, ["db/a1", "db/a2", "db/a3"]);

    // A retried RevokeRegion finds nothing left to revoke.
    assert_eq!(
        log.apply(LeaseCommand::RevokeRegion {
            region: east,
            by: "dr-controller".into(),
            reason: "retry".into(),
        }),
        LeaseOutcome::RevokedMany(vec![])
    );
}

#[test]
fn revoke_of_a_free_resource_is_refused() {
    let mut log = Log::default();
    assert_eq!(
        log.apply(revoke("db/none")),
        LeaseOutcome::Refused(LeaseRefusal::NotHeld)
    );
    let token = log.grant("db/orders", "proxy-a", "us-east-1");
    log.apply(release("db/orders", "proxy-a", token));
    assert_eq!(
        log.apply(revoke("db/orders")),
        LeaseOutcome::Refused(LeaseRefusal::NotHeld)
    );
}

#[test]
fn break_glass_skips_the_draining_wait_and_reports_what_it_overrode() {
    let mut log = Log::default();
    let old = log.grant("db/orders", "proxy-east", "us-east-1");
    log.apply(revoke("db/orders"));
    let revoke_epoch = log.epoch("db/orders");

    let LeaseOutcome::Granted {
        token,
        ttl_ms,
        overrode,
    } = log.apply(break_glass("db/orders", "proxy-west", "us-west-2"))
    else {
        panic!("expected a break-glass grant");
    };
    assert!(token > revoke_epoch);
    assert_eq!(ttl_ms, TTL);
    assert_eq!(overrode, Some((who("proxy-east"), old)));
    assert!(matches!(log.state("db/orders"), LeaseState::Held(l) if l.holder == who("proxy-west")));
}

#[test]
fn break_glass_over_a_held_lease_revokes_and_grants_in_one_step() {
    let mut log = Log::default();
    let old = log.grant("db/orders", "proxy-east", "us-east-1");

    let LeaseOutcome::Granted {
        token, overrode, ..
    } = log.apply(break_glass("db/orders", "proxy-west", "us-west-2"))
    else {
        panic!("expected a break-glass grant");
    };
    assert!(token > old);
    assert_eq!(overrode, Some((who("proxy-east"), old)));
    assert_eq!(
        log.table
            .check_keepalive(&res("db/orders"), &who("proxy-east"), old),
        Err(LeaseRefusal::StaleToken {
            presented: old,
            current: token,
        })
    );

    // The holder itself asking with break-glass has nothing to override.
    assert_eq!(
        log.apply(break_glass("db/orders", "proxy-west", "us-west-2")),
        LeaseOutcome::AlreadyHeld { token, ttl_ms: TTL }
    );
    // On a free resource break-glass is an ordinary grant.
    log.grant("db/free", "proxy-west", "us-west-2");
}

#[test]
fn keepalive_passes_only_the_holder_with_the_current_token() {
    let mut log = Log::default();
    let token = log.grant("db/orders", "proxy-a", "us-east-1");
    let orders = res("db/orders");

    assert_eq!(
        log.table.check_keepalive(&orders, &who("proxy-a"), token),
        Ok(TTL)
    );
    assert_eq!(
        log.table
            .check_keepalive(&orders, &who("proxy-a"), FencingToken(7)),
        Err(LeaseRefusal::StaleToken {
            presented: FencingToken(7),
            current: token,
        })
    );
    assert_eq!(
        log.table.check_keepalive(&orders, &who("proxy-b"), token),
        Err(LeaseRefusal::NotHolder {
            holder: who("proxy-a"),
        })
    );
    assert_eq!(
        log.table
            .check_keepalive(&res("db/none"), &who("proxy-a"), token),
        Err(LeaseRefusal::NotHeld)
    );

    // Once revoked, the holder's keep-alive tells it the token is stale and names the epoch.
    log.apply(revoke("db/orders"));
    let epoch = log.epoch("db/orders");
    let refusal = log
        .table
        .check_keepalive(&orders, &who("proxy-a"), token)
        .expect_err("draining lease is not renewable");
    assert_eq!(
        refusal,
        LeaseRefusal::StaleToken {
            presented: token,
            current: epoch,
        }
    );
    assert!(!refusal.is_retryable());
}

#[test]
fn validate_token_tells_current_stale_inactive_and_unknown_apart() {
    let mut log = Log::default();
    let orders = res("db/orders");
    let first = log.grant("db/orders", "proxy-a", "us-east-1");

    assert_eq!(
        log.table.validate_token(&orders, first),
        TokenValidity::Current
    );
    assert_eq!(
        log.table.validate_token(&orders, FencingToken(first.0 + 1)),
        TokenValidity::Unknown
    );
    assert_eq!(
        log.table.validate_token(&res("db/none"), first),
        TokenValidity::Unknown
    );

    log.apply(release("db/orders", "proxy-a", first));
    assert_eq!(
        log.table.validate_token(&orders, first),
        TokenValidity::Inactive
    );

    let second = log.grant("db/orders", "proxy-b", "us-west-2");
    assert_eq!(
        log.table.validate_token(&orders, first),
        TokenValidity::Stale { current: second }
    );
}

#[test]
fn replayed_or_reordered_entry_cannot_lower_an_epoch() {
    let mut log = Log::default();
    let token = log.grant("db/orders", "proxy-a", "us-east-1");
    log.apply(release("db/orders", "proxy-a", token));
    let before = log.table.clone();

    // The shell applies an entry whose token does not exceed the epoch (a replay bug).
    let replay = ApplyCtx {
        token,
        now: WallMillis(0),
    };
    for cmd in [
        acquire("db/orders", "proxy-b", "us-west-2"),
        fence("db/orders"),
    ] {
        let outcome = log.table.apply(&cmd, &replay);
        assert_eq!(
            outcome,
            LeaseOutcome::Refused(LeaseRefusal::TokenNotAdvanced {
                minted: token,
                epoch: token,
            })
        );
    }
    assert_eq!(log.table, before);
}

#[test]
fn commands_group_committed_in_one_entry_mint_distinct_ordered_tokens() {
    let at = |position| ApplyCtx {
        token: FencingToken::from_log_position(42, position),
        now: WallMillis(0),
    };
    let mut table = LeaseTable::new();
    let first = at(0).token;

    assert_eq!(
        table.apply(&acquire("db/orders", "proxy-a", "us-east-1"), &at(0)),
        LeaseOutcome::Granted {
            token: first,
            ttl_ms: TTL,
            overrode: None,
        }
    );
    assert_eq!(
        table.apply(&fence("db/orders"), &at(1)),
        LeaseOutcome::Fenced {
            epoch: at(1).token,
            drained: Some((who("proxy-a"), first)),
        }
    );
    assert_eq!(
        table.apply(&break_glass("db/orders", "proxy-b", "us-west-2"), &at(2)),
        LeaseOutcome::Granted {
            token: at(2).token,
            ttl_ms: TTL,
            overrode: Some((who("proxy-a"), first)),
        }
    );
    assert!(first < at(1).token && at(1).token < at(2).token);
}

/// A deterministic stand-in for randomness (no `rand` in the pure core's tests): Knuth's MMIX LCG.
struct Script(u64);

impl Script {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

#[test]
fn tokens_strictly_increase_and_row_invariants_hold_over_a_long_scripted_run() {
    const RESOURCES: [&str; 4] = ["db/a", "db/b", "db/c", "db/d"];
    const HOLDERS: [&str; 3] = ["p1", "p2", "p3"];
    const REGIONS: [&str; 2] = ["us-east-1", "eu-central-1"];
    let mut log = Log::default();
    let mut script = Script(0x5eed);
    let mut last_grant = std::collections::BTreeMap::<String, FencingToken>::new();
    let mut grants = 0;
    let mut kinds = std::collections::BTreeSet::new();

    for _ in 0..5_000 {
        let resource = RESOURCES[script.next(4) as usize];
        let holder = HOLDERS[script.next(3) as usize];
        let region = REGIONS[script.next(2) as usize];
        let live_token = log
            .table
            .get(&res(resource))
            .and_then(|row| row.lease.live())
            .map(|lease| lease.token);
        // Present the live token most of the time, a made-up one otherwise.
        let token = match (live_token, script.next(4)) {
            (Some(t), 0..=2) => t,
            _ => FencingToken(script.next(1 << 20)),
        };
        let cmd = match script.next(10) {
            0..=3 => acquire(resource, holder, region),
            4 => break_glass(resource, holder, region),
            5 => release(resource, holder, token),
            6 => revoke(resource),
            7 => fence(resource),
            8 => expire(resource, token),
            // A regional fence and its failback, so grants in a region stop and resume.
            _ if script.next(2) == 0 => LeaseCommand::RevokeRegion {
                region: RegionId::new(region),
                by: "dr".into(),
                reason: "drill".into(),
            },
            _ => LeaseCommand::LiftRegionFence {
                region: RegionId::new(region),
                by: "operator".into(),
            },
        };
        let before = log.table.clone();
        let outcome = log.apply(cmd);

        kinds.insert(match &outcome {
            LeaseOutcome::Granted {
                overrode: Some(_), ..
            } => "break-glass override",
            LeaseOutcome::Granted { .. } => "granted",
            LeaseOutcome::AlreadyHeld { .. } => "already held",
            LeaseOutcome::Released => "released",
            LeaseOutcome::Revoked(_) => "revoked",
            LeaseOutcome::RevokedMany(many) if !many.is_empty() => "revoked region",
            LeaseOutcome::RevokedMany(_) => "revoked nothing",
            LeaseOutcome::Fenced { .. } => "fenced",
            LeaseOutcome::Expired { .. } => "expired",
            LeaseOutcome::RegionFenceLifted(Some(_)) => "fence lifted",
            LeaseOutcome::RegionFenceLifted(None) => "nothing to lift",
            LeaseOutcome::Refused(LeaseRefusal::RegionFenced { .. }) => "refused: region fenced",
            LeaseOutcome::Refused(_) => "refused",
        });
        if let LeaseOutcome::Granted { token, .. } = outcome {
            grants += 1;
            if let Some(previous) = last_grant.insert(resource.to_owned(), token) {
                assert!(token > previous, "grant {token} not above {previous}");
            }
        }
        if matches!(outcome, LeaseOutcome::Refused(_)) {
            assert_eq!(log.table, before, "a refusal must not change the table");
        }
        for r in RESOURCES {
            let (Some(old), Some(new)) = (before.epoch(&res(r)), log.table.epoch(&res(r))) else {
                continue;
            };
            assert!(new >= old, "epoch of {r} went back from {old} to {new}");
            let row = log.table.get(&res(r)).expect("row exists once epoch does");
            match &row.lease {
                LeaseState::Held(lease) => assert_eq!(lease.token, row.epoch),
                LeaseState::Draining { lease, .. } => assert!(lease.token < row.epoch),
                LeaseState::Free => {}
            }
        }
    }
    assert!(
        grants > 100,
        "the script should exercise grants, got {grants}"
    );
    assert_eq!(
        kinds.len(),
        13,
        "every outcome kind should occur, saw {kinds:?}"
    );
}

#[test]
fn live_leases_lists_held_and_draining_in_resource_order() {
    let mut log = Log::default();
    log.grant("db/c", "p", "r");
    let b = log.grant("db/b", "p", "r");
    log.grant("db/a", "p", "r");
    log.apply(revoke("db/c"));
    log.apply(release("db/b", "p", b));

    let live: Vec<_> = log.table.live_leases().map(|(r, _)| r.as_str()).collect();
    assert_eq!(live, ["db/a", "db/c"]);
}

#[test]
fn table_survives_a_serde_round_trip() {
    let mut log = Log::default();
    log.grant("db/held", "proxy-a", "us-east-1");
    log.grant("db/revoked", "proxy-b", "us-west-2");
    log.apply(revoke("db/revoked"));
    log.grant("db/fenced", "proxy-c", "eu-central-1");
    log.apply(fence("db/fenced"));
    log.apply(fence("db/free"));

    let json = serde_json::to_string(&log.table).expect("serialize table");
    let back: LeaseTable = serde_json::from_str(&json).expect("deserialize table");
    assert_eq!(back, log.table);

    let cmd = break_glass("db/held", "proxy-z", "us-west-2");
    let json = serde_json::to_string(&cmd).expect("serialize command");
    assert_eq!(
        serde_json::from_str::<LeaseCommand>(&json).expect("deserialize command"),
        cmd
    );
    let outcome = log.apply(cmd);
    let json = serde_json::to_string(&outcome).expect("serialize outcome");
    assert_eq!(
        serde_json::from_str::<LeaseOutcome>(&json).expect("deserialize outcome"),
        outcome
    );
}

#[test]
fn ttl_limits_follow_the_one_and_a_half_election_timeouts_rule() {
    let lan = LeaseLimits::for_election_timeout(300);
    assert_eq!(lan.min_ttl_ms(), 450);
    assert_eq!(lan.max_ttl_ms(), LeaseLimits::DEFAULT_MAX_TTL_MS);
    assert_eq!(lan.validate_ttl(450), Ok(()));
    assert_eq!(lan.validate_ttl(LeaseLimits::DEFAULT_MAX_TTL_MS), Ok(()));
    let short = lan
        .validate_ttl(449)
        .expect_err("below 1.5 election timeouts");
    assert_eq!(
        short,
        LeaseError::TtlOutOfRange {
            ttl_ms: 449,
            min_ms: 450,
            max_ms: LeaseLimits::DEFAULT_MAX_TTL_MS,
        }
    );
    assert!(!short.is_retryable());
    assert_eq!(
        lan.validate_ttl(LeaseLimits::DEFAULT_MAX_TTL_MS + 1),
        Err(LeaseError::TtlOutOfRange {
            ttl_ms: LeaseLimits::DEFAULT_MAX_TTL_MS + 1,
            min_ms: 450,
            max_ms: LeaseLimits::DEFAULT_MAX_TTL_MS,
        })
    );

    // 1.5 × 3001 = 4501.5, rounded up.
    assert_eq!(LeaseLimits::for_election_timeout(3_001).min_ttl_ms(), 4_502);
    // A profile slower than the default maximum still admits its own minimum.
    let slow = LeaseLimits::for_election_timeout(50_000);
    assert_eq!(slow.min_ttl_ms(), 75_000);
    assert_eq!(slow.max_ttl_ms(), 75_000);

    assert_eq!(
        LeaseLimits::new(10, 5),
        Err(LeaseError::InvertedLimits {
            min_ms: 10,
            max_ms: 5,
        })
    );
    let fixed = LeaseLimits::new(1_000, 2_000).expect("ordered bounds");
    assert_eq!(fixed.validate_ttl(2_000), Ok(()));
}

#[test]
fn refusals_say_whether_waiting_can_help() {
    let held = LeaseRefusal::HeldBy {
        holder: who("p"),
        token: FencingToken(1),
        ttl_ms: TTL,
    };
    let draining = LeaseRefusal::Draining {
        holder: who("p"),
        token: FencingToken(1),
    };
    assert!(held.is_retryable());
    assert!(draining.is_retryable());
    assert!(!LeaseRefusal::NotHeld.is_retryable());
    assert!(!LeaseRefusal::NotHolder { holder: who("p") }.is_retryable());
}
