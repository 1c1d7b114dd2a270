//! The leader's in-memory lease deadlines, on its monotonic clock.
//!
//! Expiry is decided here and committed as an explicit `Expire` entry, so the replicated
//! [`LeaseTable`] never reads a clock. Time enters only as a [`MonoMillis`] argument. Not
//! replicated and not persisted: a new leader rebuilds it with [`LeaseTimers::on_elected`].
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
use std::collections::BTreeMap;

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

/// Per-resource deadlines of the live leases, kept by the current leader only.
///
/// Cost: the leader asks for [`LeaseTimers::due`] every tick, so it must not walk every timer
/// each time (at 100,000 leases that walk, under the lock every keep-alive takes, cost a third
/// of the keep-alive throughput). It keeps a lower bound on the earliest deadline and walks
/// only once that bound has passed: renewals only move deadlines later, so the bound stays a
/// lower bound; a new timer lowers it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaseTimers {
    /// Ordered so `due` proposes expiries in the same order on every run, which keeps tests and
    /// logs reproducible.
    timers: BTreeMap<ResourceId, Timer>,
    /// No timer's deadline is earlier than this (`None`: no timers, or not yet known).
    earliest: Option<MonoMillis>,
}

impl LeaseTimers {
    pub fn new() -> Self {
        Self::default()
    }

    /// Bring the timers in line with `table`: every live lease without a timer for its token gets
    /// `now + ttl`; timers of leases that ended are dropped. A lease that starts draining keeps
    /// its token, hence its deadline: revoking does not shorten the wait.
    ///
    /// Call it after each applied batch (a grant's full TTL starts once it is committed) and on
    /// election. It walks the whole table once, so batch it rather than calling it per command.
    pub fn reconcile(&mut self, table: &LeaseTable, now: MonoMillis) {
        // Both are ordered by resource: one merged pass, moving the kept timers over, instead
        // of a lookup per timer and per lease.
        let mut old = std::mem::take(&mut self.timers).into_iter().peekable();
        let mut kept = Vec::with_capacity(old.len());
        for (resource, row) in table.live_leases() {
            let Some(lease) = row.lease.live() else {
                continue;
            };
            // Timers of resources with no live lease any more end here.
            while old.next_if(|(r, _)| r < resource).is_some() {}
            match old.next_if(|(r, _)| r == resource) {
                Some((r, timer)) if timer.token == lease.token => kept.push((r, timer)),
                // No timer, or one for an earlier lease of the resource: a full TTL from now.
                _ => kept.push((
                    resource.clone(),
                    Timer {
                        token: lease.token,
                        deadline: now.saturating_add_ms(lease.ttl_ms),
                    },
                )),
            }
        }
        self.earliest = kept.iter().map(|(_, t)| t.deadline).min();
        // Sorted input: built in one pass.
        self.timers = kept.into_iter().collect();
    }

    /// Starts the timer of a lease this leader just granted: `now + ttl_ms`, unless a timer
    /// for that token already runs. The incremental form of [`Self::reconcile`] for one grant,
    /// so a grant costs O(log n) rather than a walk over the table.
    pub fn start(
        &mut self,
        resource: &ResourceId,
        token: FencingToken,
        ttl_ms: u64,
        now: MonoMillis,
    ) {
        match self.timers.get(resource) {
            Some(timer) if timer.token == token => {}
            _ => {
                let deadline = now.saturating_add_ms(ttl_ms);
                self.timers
                    .insert(resource.clone(), Timer { token, deadline });
                self.lower_earliest(deadline);
            }
        }
    }

    fn lower_earliest(&mut self, deadline: MonoMillis) {
        self.earliest = Some(self.earliest.map_or(deadline, |e| e.min(deadline)));
    }

    /// Drops the timer of `token` once its lease has ended (released or expired); a timer for
    /// another token is left alone.
    pub fn stop(&mut self, resource: &ResourceId, token: FencingToken) {
        if self.timers.get(resource).is_some_and(|t| t.token == token) {
            self.timers.remove(resource);
        }
    }

    /// The new-leader rule: forget whatever this node knew from an earlier term and extend every
    /// live lease by a full TTL from `now`, the election.
    pub fn on_elected(&mut self, table: &LeaseTable, now: MonoMillis) {
        #[cfg(not(feature = "mutant-elected-keeps-old-deadlines"))]
        self.timers.clear();
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
    /// earlier. Timers stay until `reconcile` sees the lease gone, so a lost proposal is retried
    /// at the next tick; a duplicate is refused harmlessly by the table.
    ///
    /// Walks the timers only when the earliest deadline may have passed (see the type's docs).
    pub fn due(&mut self, now: MonoMillis) -> Vec<(ResourceId, FencingToken)> {
        if self.earliest.is_none_or(|earliest| earliest > now) {
            return Vec::new();
        }
        let mut due = Vec::new();
        let mut earliest = None::<MonoMillis>;
        for (resource, timer) in &self.timers {
            if timer.deadline <= now {
                due.push((resource.clone(), timer.token));
            }
            earliest = Some(earliest.map_or(timer.deadline, |e| e.min(timer.deadline)));
        }
        self.earliest = earliest;
        due
    }

    /// The latest moment the holder of `resource`'s live lease may believe it holds it, on this
    /// leader's monotonic clock.
    pub fn may_hold_until(&self, resource: &ResourceId) -> Option<MonoMillis> {
        self.timers.get(resource).map(|timer| timer.deadline)
    }
}
