//! The leader's in-memory lease deadlines, on its monotonic clock.
//!
//! Expiry is decided here and committed as an explicit `Expire` entry, so the replicated
//! [`LeaseTable`] never reads a clock. Time enters only as a [`MonoMillis`] argument. Not
//! replicated and not persisted: a new leader forgets what it knew ([`LeaseTimers::forget`]) and
//! rebuilds it from the table ([`LeaseTimers::reconcile_step`]).
//!
//! Invariant: for every live (`Held` or `Draining`) lease, the deadline here is no earlier than
//! the deadline its holder computes for itself, so `Expire` is proposed only once the holder has
//! stopped believing it holds the lease. Why that holds:
//!
//! - The holder's SDK counts from the moment it *sent* the successful request: its deadline is
//!   `send + TTL − drift margin` on its own monotonic clock.
//! - The leader counts from the moment it *received* that request (or later), which is after the
//!   send: its deadline is `receipt + TTL`. The drift margin absorbs the clocks' rate difference
//!   over one TTL; no clock synchronisation is needed.
//! - A new leader cannot know when its predecessor last renewed, so it gives every live lease a
//!   full TTL from its own election, which is after any renewal the old leader acknowledged.
//! - Keep-alives are renewed only after a quorum round that began after they arrived confirms
//!   this node is still leader, so a deposed leader cannot stretch a lease that the new leader's
//!   timers do not also cover.

use crate::lease_table::LeaseTable;
use crate::types::{FencingToken, MonoMillis, ResourceId};
use imbl::OrdMap;
use std::ops::Bound;

/// One lease's deadline. Keyed by token so a timer never outlives, or acts on, another lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Timer {
    token: FencingToken,
    deadline: MonoMillis,
}

/// What [`LeaseTimers::renew`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimerRenewal {
    /// The deadline is now at least `now + ttl`.
    Renewed,
    /// The deadline had already passed; nothing changed. The lease is as good as expired.
    Lapsed,
    /// No timer runs for that token; nothing changed.
    NoTimer,
}

/// Whether a walk done in bounded steps has reached the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Walk {
    /// Call again to go on from where this step stopped.
    Unfinished,
    Done,
}

/// The timers a new leadership dropped, handed back so the caller can free them where the time
/// that takes (a million entries: tens of milliseconds) holds up nobody.
#[derive(Debug, Default)]
#[must_use = "drop it where freeing a large map holds up nobody"]
pub struct ForgottenTimers(#[allow(dead_code)] OrdMap<ResourceId, Timer>);

/// A [`LeaseTimers::due`] walk under way: where it resumes, and the earliest deadline seen.
#[derive(Debug, Clone, PartialEq, Eq)]
struct DueWalk {
    after: Option<ResourceId>,
    earliest: Option<MonoMillis>,
}

/// Per-resource deadlines of the live leases, kept by the current leader only.
///
/// Cost: the leader looks for due timers every tick and keep-alives take the same lock, so no
/// call may walk every timer while holding it. At a million leases one walk takes a good part
/// of a second, long enough for the node to miss its own heartbeats. Hence:
///
/// - [`Self::due`] keeps a lower bound on the earliest deadline and walks only once that bound
///   has passed (renewals only move deadlines later, so the bound stays a lower bound; a new
///   timer lowers it), and then in steps of at most `budget` timers.
/// - [`Self::reconcile_step`] brings the timers in line with the table a step of `budget` rows
///   at a time, resuming where the last step stopped; a new leader rebuilds its timers the same
///   way after [`Self::forget`], which returns the old map instead of freeing it under the lock.
///
/// Between steps the lock is free: keep-alives renew, grants start timers. A live lease the
/// rebuild has not reached yet has no timer, so nothing expires it early; a keep-alive for it
/// starts its timer (see the `NoTimer` case in the server).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaseTimers {
    /// Ordered so `due` proposes expiries in the same order on every run, which keeps tests and
    /// logs reproducible, and so bounded walks can resume by key.
    timers: OrdMap<ResourceId, Timer>,
    /// No timer's deadline is earlier than this (`None`: no timers, or not yet known).
    earliest: Option<MonoMillis>,
    /// The `due` walk under way, if any.
    due_walk: Option<DueWalk>,
    /// Where the next reconcile step starts: after this resource (`None`: at the first).
    reconcile_after: Option<ResourceId>,
}

impl LeaseTimers {
    pub fn new() -> Self {
        Self::default()
    }

    /// Bring the timers in line with `table` in one go: every live lease without a timer for
    /// its token gets `now + ttl`; timers of leases that ended are dropped. A lease that starts
    /// draining keeps its token, hence its deadline: revoking does not shorten the wait.
    ///
    /// Walks the whole table and every timer while the caller holds the lock; a server uses
    /// [`Self::reconcile_step`].
    pub fn reconcile(&mut self, table: &LeaseTable, now: MonoMillis) {
        self.reconcile_after = None;
        while self.reconcile_step(table, now, usize::MAX) == Walk::Unfinished {}
    }

    /// One step of [`Self::reconcile`]: the next `budget` rows of the table after where the last
    /// step stopped, and the timers of the same resources. `Done` once the step reached the end
    /// of the table; the next step starts again at the first row.
    pub fn reconcile_step(&mut self, table: &LeaseTable, now: MonoMillis, budget: usize) -> Walk {
        let budget = budget.max(1);
        let after = self.reconcile_after.take();
        let lower = after.as_ref().map_or(Bound::Unbounded, Bound::Excluded);
        // Both are ordered by resource: one merged pass over the rows and the timers, no
        // lookups; the changes are made once the pass is over.
        let mut timers = self
            .timers
            .range::<_, ResourceId>((lower, Bound::Unbounded))
            .peekable();
        let mut started = Vec::new();
        let mut ended = Vec::new();
        let mut last = None;
        let mut seen = 0;
        for (resource, row) in table.rows_after(after.as_ref()).take(budget) {
            seen += 1;
            last = Some(resource);
            // Timers of resources with no row at all.
            while let Some((r, _)) = timers.next_if(|(r, _)| *r < resource) {
                ended.push(r.clone());
            }
            let timer = timers.next_if(|(r, _)| *r == resource).map(|(_, t)| t);
            match (row.lease.live(), timer) {
                (Some(lease), Some(timer)) if timer.token == lease.token => {}
                // No timer, or one for an earlier lease of the resource: a full TTL from now.
                (Some(lease), _) => started.push((
                    resource.clone(),
                    lease.token,
                    now.saturating_add_ms(lease.ttl_ms),
                )),
                (None, Some(_)) => ended.push(resource.clone()),
                (None, None) => {}
            }
        }
        // Short of the budget: the table ended, and so did every lease of a timer past it.
        // Otherwise the timers after `last` are the next step's.
        let finished = seen < budget;
        if finished {
            ended.extend(timers.map(|(r, _)| r.clone()));
        } else {
            self.reconcile_after = last.cloned();
        }
        for resource in ended {
            self.timers.remove(&resource);
        }
        for (resource, token, deadline) in started {
            self.insert(resource, token, deadline);
        }
        if finished {
            Walk::Done
        } else {
            Walk::Unfinished
        }
    }

    /// Starts the timer of a lease this leader just granted: `now + ttl_ms`, unless a timer
    /// for that token already runs. The form of [`Self::reconcile`] for one grant, so a grant
    /// costs O(log n) rather than a walk over the table.
    pub fn start(
        &mut self,
        resource: &ResourceId,
        token: FencingToken,
        ttl_ms: u64,
        now: MonoMillis,
    ) {
        match self.timers.get(resource) {
            Some(timer) if timer.token == token => {}
            _ => self.insert(resource.clone(), token, now.saturating_add_ms(ttl_ms)),
        }
    }

    fn insert(&mut self, resource: ResourceId, token: FencingToken, deadline: MonoMillis) {
        self.timers.insert(resource, Timer { token, deadline });
        let lower = |bound: &mut Option<MonoMillis>| {
            *bound = Some(bound.map_or(deadline, |b| b.min(deadline)));
        };
        lower(&mut self.earliest);
        // A walk under way may have passed this resource already: its minimum must count it.
        if let Some(walk) = &mut self.due_walk {
            lower(&mut walk.earliest);
        }
    }

    /// Drops the timer of `token` once its lease has ended (released or expired); a timer for
    /// another token is left alone.
    pub fn stop(&mut self, resource: &ResourceId, token: FencingToken) {
        if self.timers.get(resource).is_some_and(|t| t.token == token) {
            self.timers.remove(resource);
        }
    }

    /// The first half of the new-leader rule: forget whatever this node knew from an earlier
    /// term. Until [`Self::reconcile_step`] has walked the table, live leases have no timer:
    /// none expires, and a keep-alive starts a full TTL.
    pub fn forget(&mut self) -> ForgottenTimers {
        self.earliest = None;
        self.due_walk = None;
        self.reconcile_after = None;
        #[cfg(not(feature = "mutant-elected-keeps-old-deadlines"))]
        return ForgottenTimers(std::mem::take(&mut self.timers));
        #[cfg(feature = "mutant-elected-keeps-old-deadlines")]
        {
            self.earliest = self.timers.values().map(|t| t.deadline).min();
            ForgottenTimers::default()
        }
    }

    /// The new-leader rule in one go: forget whatever this node knew from an earlier term and
    /// extend every live lease by a full TTL from `now`, the election.
    pub fn on_elected(&mut self, table: &LeaseTable, now: MonoMillis) {
        drop(self.forget());
        self.reconcile(table, now);
    }

    /// A keep-alive for `token`, confirmed by a quorum round, extends the deadline to
    /// `now + ttl_ms`; it never shortens it. `now` is when the keep-alive arrived (or later).
    /// Call [`LeaseTable::check_keepalive`] first: this only knows tokens, not lease states.
    ///
    /// A deadline that has passed stays passed ([`TimerRenewal::Lapsed`]): once it is due, the
    /// leader proposes `Expire`, and a renewal answered "ok" before that entry applies would
    /// have its holder count a fresh TTL while the next holder is granted.
    pub fn renew(
        &mut self,
        resource: &ResourceId,
        token: FencingToken,
        ttl_ms: u64,
        now: MonoMillis,
    ) -> TimerRenewal {
        match self.timers.get_mut(resource) {
            #[cfg(not(feature = "mutant-renew-lapsed"))]
            Some(timer) if timer.token == token && timer.deadline <= now => TimerRenewal::Lapsed,
            Some(timer) if timer.token == token => {
                timer.deadline = timer.deadline.max(now.saturating_add_ms(ttl_ms));
                TimerRenewal::Renewed
            }
            _ => TimerRenewal::NoTimer,
        }
    }

    /// The `Expire { resource, token }` commands to propose: leases whose deadline is `now` or
    /// earlier. Timers stay until their lease is seen gone, so a lost proposal is retried at
    /// the next tick; a duplicate is refused harmlessly by the table.
    pub fn due(&mut self, now: MonoMillis) -> Vec<(ResourceId, FencingToken)> {
        let mut due = Vec::new();
        while self.due_step(now, usize::MAX, &mut due) == Walk::Unfinished {}
        due
    }

    /// One step of [`Self::due`], adding to `due`: nothing unless the earliest deadline may have
    /// passed, else the next `budget` timers of the walk. `Done` once the walk is complete (or
    /// there was none to do).
    pub fn due_step(
        &mut self,
        now: MonoMillis,
        budget: usize,
        due: &mut Vec<(ResourceId, FencingToken)>,
    ) -> Walk {
        let budget = budget.max(1);
        let mut walk = match self.due_walk.take() {
            Some(walk) => walk,
            None if self.earliest.is_none_or(|earliest| earliest > now) => return Walk::Done,
            None => DueWalk {
                after: None,
                earliest: None,
            },
        };
        let lower = walk
            .after
            .as_ref()
            .map_or(Bound::Unbounded, Bound::Excluded);
        let mut seen = 0;
        let mut last = None;
        for (resource, timer) in self
            .timers
            .range::<_, ResourceId>((lower, Bound::Unbounded))
            .take(budget)
        {
            seen += 1;
            last = Some(resource);
            if timer.deadline <= now {
                due.push((resource.clone(), timer.token));
            }
            walk.earliest = Some(
                walk.earliest
                    .map_or(timer.deadline, |e| e.min(timer.deadline)),
            );
        }
        if seen < budget {
            self.earliest = walk.earliest;
            Walk::Done
        } else {
            walk.after = last.cloned();
            self.due_walk = Some(walk);
            Walk::Unfinished
        }
    }

    /// The latest moment the holder of `resource`'s live lease may believe it holds it, on this
    /// leader's monotonic clock.
    pub fn may_hold_until(&self, resource: &ResourceId) -> Option<MonoMillis> {
        self.timers.get(resource).map(|timer| timer.deadline)
    }
}
