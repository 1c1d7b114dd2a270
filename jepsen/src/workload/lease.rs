//! The lease workload: SDK [`LeaseKeeper`] holders contend for a few resources and write to the
//! harness's [`FencedStore`] while they hold the lease.
//!
//! Invariant: a holder writes only after checking `is_valid()` (unless the
//! `ignore_deadline` control is on), and what it records is what it believes: `valid_until_ns`
//! is the deadline its keeper computed, moved on the history's clock; each renewal the keeper
//! sees is a `keepalive` with the new deadline; the moment the keeper reports the lease lost is
//! a `lease_lost`. The fenced resource learns of a grant only as a database would: from the
//! new holder's writes, and from the arbiter's epoch, which [`epoch_reader`] reads and passes
//! on.
//!
//! Every holder lease uses a fresh holder id, so a re-acquire is a new lease with a new token,
//! never the SDK's idempotent "your own lease back".

use std::sync::Arc;
use std::time::Duration;

use arbiter_client::{
    ArbiterClient, KeeperOptions, LeaseKeeper, LeaseSpec, LossCause, ResourceId, Validity,
};
use arbiter_core::{FencingToken, HolderId};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};
use tokio::sync::watch;
use tokio::time::Instant;

use super::holder_board::{HolderBoard, PauseGate};
use super::{process, Context, WorkResult};
use crate::fenced_store::FencedStore;
use crate::history::{Op, OpType, Process, RunClock, F};
use crate::pg_store::{PgFencedStore, PgWrite};

/// Under `ignore_deadline`, how many TTLs a holder goes on believing past its real deadline.
const IGNORED_TTLS: u32 = 5;
/// Chance that a holder stops renewing after its planned writes and lets the lease lapse,
/// instead of releasing it: lapses exercise expiry and the draining wait.
const LAPSE_PROBABILITY: f64 = 0.25;
/// Writes a holder plans per lease, inclusive range.
const WRITES_PER_LEASE: (u32, u32) = (5, 40);
/// Pause after a lease ends before the holder contends again.
const STEP_BACK_MS: (u64, u64) = (100, 1_500);
/// Longest wait before asking again after a refusal.
const MAX_REFUSAL_WAIT: Duration = Duration::from_secs(1);

/// What all holders share.
pub struct LeaseSetup {
    pub client: ArbiterClient,
    pub resources: Vec<String>,
    pub ttl: Duration,
    pub store: Arc<FencedStore>,
    /// When set, writes go to this PostgreSQL through the arbiter's fence instead of `store`.
    pub pg: Option<Arc<PgFencedStore>>,
    pub board: Arc<HolderBoard>,
}

/// Holder `index`: acquire, hold and write, release or lapse, again, until the deadline.
pub async fn holder(ctx: Context, setup: Arc<LeaseSetup>, index: u64) -> WorkResult {
    let process = process::HOLDERS + index;
    // The runner always names resources; holders share them round-robin.
    let resource = setup.resources[index as usize % setup.resources.len()].clone();
    let mut gate = setup.board.join(process);
    let mut rng = ctx.rng(process);
    let mut calls = 0;
    let mut leases = 0u64;
    while ctx.may_continue(calls) {
        leases += 1;
        let holder = HolderId::new(format!("p{process}-{leases}"));
        let spec = LeaseSpec::new(resource.clone(), holder.to_string(), setup.ttl);
        let acquire = ctx.recorder.append(
            Op::invoke(Process::Client(process), F::Acquire, &resource, Value::Null)
                .with_holder(holder),
        )?;
        calls += 1;
        match LeaseKeeper::acquire(&setup.client, &spec, KeeperOptions::default()).await {
            Ok(Ok(keeper)) => {
                let held = Held {
                    ctx: &ctx,
                    setup: &setup,
                    process,
                    keeper,
                };
                calls += held.hold(&acquire, &mut gate, &mut rng).await?;
                // Step back before asking again, or the last holder would win every time.
                ctx.pause_within(&mut rng, STEP_BACK_MS).await;
            }
            Ok(Err(refusal)) => {
                ctx.recorder
                    .complete(&acquire, OpType::Fail, json!(refusal.to_string()))?;
                let wait = refusal
                    .may_hold_for()
                    .map_or(MAX_REFUSAL_WAIT, |d| d.min(MAX_REFUSAL_WAIT));
                tokio::time::sleep_until((Instant::now() + wait).min(ctx.deadline.0)).await;
            }
            // Timed out or lost mid-call: the lease may have been granted, unseen.
            Err(e) => {
                ctx.recorder
                    .complete(&acquire, OpType::Info, json!(e.to_string()))?;
                ctx.pause(&mut rng).await;
            }
        }
    }
    Ok(())
}

/// Pause between the epoch reader's rounds, inclusive range.
const EPOCH_READ_EVERY_MS: (u64, u64) = (100, 300);

/// What a database's fence refresher does: reads each resource's current epoch from the
/// arbiter and raises the fenced resource's floor to it, until the deadline. A failed read
/// (no leader, a partition) teaches the store nothing.
pub async fn epoch_reader(ctx: Context, setup: Arc<LeaseSetup>) -> WorkResult {
    let mut rng = ctx.rng(process::EPOCH_READER);
    while !ctx.deadline.passed() {
        for resource in &setup.resources {
            if let Ok(epoch) = setup
                .client
                .current_epoch(&ResourceId::new(resource.as_str()))
                .await
            {
                setup.store.observe_epoch(resource, epoch);
                if let Some(pg) = &setup.pg {
                    pg.observe_epoch(resource, epoch).await;
                }
            }
        }
        ctx.pause_within(&mut rng, EPOCH_READ_EVERY_MS).await;
    }
    Ok(())
}

/// How a holding stretch ended.
enum End {
    Release,
    Lost(String),
}

/// One granted lease and its holder.
struct Held<'a> {
    ctx: &'a Context,
    setup: &'a LeaseSetup,
    process: u64,
    keeper: LeaseKeeper,
}

impl Held<'_> {
    fn resource(&self) -> String {
        self.keeper.resource().to_string()
    }

    fn clock(&self) -> RunClock {
        self.ctx.recorder.clock()
    }

    /// What the holder adds to the keeper's deadline: nothing, or under `ignore_deadline`
    /// several TTLs.
    fn overrun_ns(&self) -> u64 {
        if self.ctx.controls.ignore_deadline {
            let ttl = self.setup.ttl * IGNORED_TTLS;
            u64::try_from(ttl.as_nanos()).unwrap_or(u64::MAX)
        } else {
            0
        }
    }

    /// The end of validity a keeper state implies, on the run clock.
    fn deadline_ns(&self, validity: &Validity) -> u64 {
        let at = match validity {
            Validity::Valid { until, .. } => *until,
            Validity::Lost { at, .. } => *at,
        };
        self.clock().ns_at(at.into_std())
    }

    /// Records the grant, holds the lease — writing, recording renewals — and ends it.
    /// Returns the calls made beyond the acquire.
    async fn hold(
        self,
        acquire: &Op,
        gate: &mut PauseGate,
        rng: &mut ChaCha8Rng,
    ) -> std::io::Result<u64> {
        let (ctx, setup) = (self.ctx, self.setup);
        let token = self.keeper.token();
        let mut validity: watch::Receiver<Validity> = self.keeper.subscribe();
        let believed = self.deadline_ns(&validity.borrow_and_update()) + self.overrun_ns();
        ctx.recorder.atomically(|w| {
            w.append(
                acquire
                    .complete(OpType::Ok, Value::Null)
                    .with_token(token)
                    .with_valid_until(believed),
            )
            .map(drop)
        })?;
        setup
            .board
            .set_holding(self.process, Some(self.keeper.holder().clone()));

        // A grant that took longer than its TTL to arrive (retries across a partition) starts
        // out lost: its validity counts from the first attempt, and the watch has nothing new
        // to say about it.
        let lost_at_grant = match &*validity.borrow() {
            Validity::Lost { cause, .. }
                if !(ctx.controls.ignore_deadline && *cause == LossCause::DeadlinePassed) =>
            {
                Some(format!("{cause:?} at grant"))
            }
            _ => None,
        };
        let (end, writes) = match lost_at_grant {
            Some(cause) => (End::Lost(cause), 0),
            None => {
                // The new holder's first act: present its token to the resource, as a database
                // agent raises the fence on promotion, so a predecessor frozen mid-write is
                // refused from now on rather than from the holder's first real write.
                let holder = self.keeper.holder().clone();
                self.fenced_write(token, json!(format!("{holder}#fence")))
                    .await?;
                self.work(token, validity, believed, gate, rng).await?
            }
        };
        setup.board.set_holding(self.process, None);
        self.finish(end, token).await?;
        Ok(u64::from(writes) + 1)
    }

    /// Writes while the lease is believed valid and records each renewal, until the holder
    /// has written what it planned (then releases, or lets the lease lapse), loses the lease,
    /// or the run ends. Returns how it ended and how many writes it made.
    async fn work(
        &self,
        token: FencingToken,
        mut validity: watch::Receiver<Validity>,
        mut believed: u64,
        gate: &mut PauseGate,
        rng: &mut ChaCha8Rng,
    ) -> std::io::Result<(End, u32)> {
        let ctx = self.ctx;
        let planned = rng.random_range(WRITES_PER_LEASE.0..=WRITES_PER_LEASE.1);
        let lapse = rng.random_bool(LAPSE_PROBABILITY);
        let mut writes = 0;
        let end = loop {
            tokio::select! {
                // First, so a renewal or a loss is recorded before the next write.
                biased;
                changed = validity.changed() => {
                    if changed.is_err() {
                        break End::Lost("keeper stopped".into());
                    }
                    let now = validity.borrow_and_update().clone();
                    match now {
                        Validity::Valid { .. } => {
                            let until = self.deadline_ns(&now) + self.overrun_ns();
                            if until > believed {
                                believed = until;
                                self.record_keepalive(token, believed)?;
                            }
                        }
                        // The unsafe holder shrugs off its deadline; a refusal it still hears.
                        Validity::Lost { cause: LossCause::DeadlinePassed, .. }
                            if ctx.controls.ignore_deadline => {}
                        Validity::Lost { cause, .. } => break End::Lost(format!("{cause:?}")),
                    }
                }
                _ = ctx.pause(rng) => {
                    if ctx.deadline.passed() {
                        break End::Release;
                    }
                    if ctx.controls.ignore_deadline {
                        if self.clock().now_ns() >= believed {
                            break End::Lost("believed deadline passed".into());
                        }
                    } else if !self.keeper.is_valid() {
                        // The keeper's loss arrives on the watch.
                        continue;
                    }
                    // A freeze here is the classic stale writer: it checked, then stopped the
                    // world, and writes with what it checked once it runs again.
                    let keeper = &self.keeper;
                    gate.pass(|| keeper.stop_renewing()).await;
                    self.fenced_write(token, json!(format!("{}#{writes}", keeper.holder())))
                        .await?;
                    writes += 1;
                    if writes == planned {
                        if lapse {
                            keeper.stop_renewing();
                        } else {
                            break End::Release;
                        }
                    }
                }
            }
        };
        Ok((end, writes))
    }

    fn record_keepalive(&self, token: FencingToken, valid_until_ns: u64) -> std::io::Result<()> {
        let invoke = Op::invoke(
            Process::Client(self.process),
            F::Keepalive,
            self.resource(),
            Value::Null,
        )
        .with_holder(self.keeper.holder().clone())
        .with_token(token);
        self.ctx.recorder.atomically(|w| {
            let invoke = w.append(invoke)?;
            w.append(
                invoke
                    .complete(OpType::Ok, Value::Null)
                    .with_valid_until(valid_until_ns),
            )
            .map(drop)
        })
    }

    /// One write to the fenced resource. In process it is decided and recorded in one critical
    /// section; to PostgreSQL it is a transaction between its invoke and its completion.
    async fn fenced_write(&self, token: FencingToken, value: Value) -> std::io::Result<()> {
        let (resource, holder) = (self.resource(), self.keeper.holder().clone());
        let store = &self.setup.store;
        let invoke = Op::invoke(
            Process::Client(self.process),
            F::FencedWrite,
            &resource,
            value.clone(),
        )
        .with_holder(holder.clone())
        .with_token(token);
        if let Some(pg) = &self.setup.pg {
            let invoke = self.ctx.recorder.append(invoke)?;
            let (kind, detail) = match pg
                .write(&resource, &holder, token, &value, invoke.time_ns)
                .await
            {
                PgWrite::Accepted => (OpType::Ok, Value::Null),
                PgWrite::Stale(stale) => (OpType::Fail, json!(stale.to_string())),
                PgWrite::Unknown(error) => (OpType::Info, json!(error)),
            };
            return self.ctx.recorder.complete(&invoke, kind, detail).map(drop);
        }
        self.ctx.recorder.atomically(|w| {
            let invoke = w.append(invoke)?;
            let (kind, detail) =
                match store.write(&resource, &holder, token, &value, invoke.time_ns) {
                    Ok(()) => (OpType::Ok, Value::Null),
                    Err(stale) => (OpType::Fail, json!(stale.to_string())),
                };
            w.append(invoke.complete(kind, detail)).map(drop)
        })
    }

    /// Releases the lease, or records that the holder stopped believing in it.
    async fn finish(self, end: End, token: FencingToken) -> std::io::Result<()> {
        let f = match end {
            End::Lost(_) => F::LeaseLost,
            End::Release => F::Release,
        };
        let invoke = self.ctx.recorder.append(
            Op::invoke(
                Process::Client(self.process),
                f,
                self.resource(),
                Value::Null,
            )
            .with_holder(self.keeper.holder().clone())
            .with_token(token),
        )?;
        let (kind, detail) = match end {
            End::Lost(cause) => (OpType::Ok, json!(cause)),
            End::Release => match self.keeper.release().await {
                Ok(Ok(())) => (OpType::Ok, Value::Null),
                Ok(Err(refusal)) => (OpType::Fail, json!(refusal.to_string())),
                Err(e) => (OpType::Info, json!(e.to_string())),
            },
        };
        self.ctx.recorder.complete(&invoke, kind, detail).map(drop)
    }
}
