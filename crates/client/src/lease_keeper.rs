//! [`LeaseKeeper`]: holds one lease — renews it, knows until when it is valid, and says so the
//! instant it stops being valid.
//!
//! Invariant (the holder side of lease safety): the lease is valid until `send time of the last
//! successful request + TTL − drift margin` on this process's monotonic clock, and never after.
//! That deadline is enforced by a timer, not by the arbiter, so the keeper reports the loss on
//! time even when every arbiter node is unreachable or frozen. Loss is final: a reply that
//! arrives after the deadline does not bring the lease back (the arbiter may already have
//! decided to expire it), and a refused keep-alive ends validity at once.
//!
//! Renewal goes over the client's shared keep-alive stream
//! ([`ArbiterClient::keep_alive_streamed`]), one lease per keeper, at TTL/3: every keeper of
//! a process (and every clone of its client) renews on one HTTP/2 stream, which costs the
//! leader about a quarter of the CPU of a unary call per renewal. The deadline rule keeps what
//! it needs: each renewal's send time is taken before its message is queued, an attempt is
//! bounded by the attempt timeout (a stream stuck on a frozen node is given up, not waited
//! on), and whatever the stream cannot answer falls back to the unary call, which follows
//! leader hints and rotates nodes on every attempt.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::{sleep_until, Instant};

use crate::client::{ArbiterClient, ClientOptions};
use crate::error::ClientError;
use crate::lease::{Grant, LeaseSpec, Refusal, Renewal};
use crate::types::{FencingToken, HolderId, ResourceId};

/// How a keeper renews and how much it distrusts its clock.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeeperOptions {
    /// Pause between renewals; default TTL/3.
    pub renew_every: Option<Duration>,
    /// Subtracted from the TTL to absorb the rate difference between this clock and the
    /// leader's over one TTL; default [`default_drift_margin`].
    pub drift_margin: Option<Duration>,
}

/// The default drift margin: the larger of 50 ms and 2 % of the TTL.
pub fn default_drift_margin(ttl: Duration) -> Duration {
    (ttl / 50).max(Duration::from_millis(50))
}

impl KeeperOptions {
    fn renew_every(&self, ttl: Duration) -> Duration {
        self.renew_every.unwrap_or(ttl / 3)
    }

    fn drift_margin(&self, ttl: Duration) -> Duration {
        self.drift_margin
            .unwrap_or_else(|| default_drift_margin(ttl))
    }

    /// The margin must leave some validity, and renewals must come before the deadline.
    pub fn validate(&self, ttl: Duration) -> Result<(), ClientError> {
        let margin = self.drift_margin(ttl);
        let renew_every = self.renew_every(ttl);
        let valid_for = ttl.saturating_sub(margin);
        if valid_for.is_zero() {
            return Err(ClientError::InvalidRequest {
                reason: format!("drift margin {margin:?} leaves nothing of the ttl {ttl:?}"),
            });
        }
        if renew_every.is_zero() || renew_every >= valid_for {
            return Err(ClientError::InvalidRequest {
                reason: format!(
                    "renewal interval {renew_every:?} must be positive and below ttl − drift \
                     margin ({valid_for:?})"
                ),
            });
        }
        Ok(())
    }
}

/// Why a lease stopped being valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LossCause {
    /// No renewal succeeded before the deadline: the arbiter was unreachable, had no quorum,
    /// or was too slow.
    DeadlinePassed,
    /// The arbiter refused a keep-alive: the lease was revoked, fenced or expired.
    Refused(Refusal),
    /// The holder gave it back ([`LeaseKeeper::release`]).
    Released,
    /// The keeper was dropped.
    Stopped,
}

/// The lease as the holder sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Validity {
    /// Writes carrying `token` are allowed until `until` (exclusive).
    Valid { token: FencingToken, until: Instant },
    /// Valid no more, since `at`. Final.
    Lost {
        token: FencingToken,
        cause: LossCause,
        at: Instant,
    },
}

impl Validity {
    /// Valid at `now`: by the state *and* by the clock, so a caller that checks between the
    /// deadline and the timer task's wake-up still sees the truth.
    pub fn is_valid_at(&self, now: Instant) -> bool {
        matches!(self, Validity::Valid { until, .. } if now < *until)
    }
}

/// The keeper's state, shared by the handle and its renewal task. Every change goes through
/// [`extend`] or [`lose`], which keep `Lost` final.
type State = Arc<watch::Sender<Validity>>;

/// Pushes the deadline out to `until`, unless the lease is already lost or `until` is not
/// later. Returns whether the lease is still valid.
fn extend(state: &State, until: Instant) -> bool {
    let mut valid = false;
    state.send_if_modified(|v| match v {
        Validity::Valid { until: current, .. } => {
            valid = true;
            if until > *current {
                *current = until;
                true
            } else {
                false
            }
        }
        Validity::Lost { .. } => false,
    });
    valid
}

/// Ends validity (once); later calls change nothing.
fn lose(state: &State, cause: LossCause) {
    state.send_if_modified(|v| match v {
        Validity::Valid { token, until } => {
            // A loss noticed after the deadline dates from the deadline.
            let at = Instant::now().min(*until);
            *v = Validity::Lost {
                token: *token,
                cause,
                at,
            };
            true
        }
        Validity::Lost { .. } => false,
    });
}

enum Control {
    RenewNow,
    StopRenewing,
}

/// Holds one lease. Dropping it stops renewal (the lease then lapses on the arbiter after its
/// TTL) and marks it lost.
pub struct LeaseKeeper {
    client: ArbiterClient,
    resource: ResourceId,
    holder: HolderId,
    token: FencingToken,
    ttl: Duration,
    state: State,
    control: mpsc::UnboundedSender<Control>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for LeaseKeeper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaseKeeper")
            .field("resource", &self.resource)
            .field("holder", &self.holder)
            .field("token", &self.token)
            .field("validity", &*self.state.borrow())
            .finish()
    }
}

impl LeaseKeeper {
    /// Acquires `spec` and starts keeping it; a refusal (held by someone else) is returned as a
    /// value.
    pub async fn acquire(
        client: &ArbiterClient,
        spec: &LeaseSpec,
        options: KeeperOptions,
    ) -> Result<Result<LeaseKeeper, Refusal>, ClientError> {
        // Refuse bad options before taking a lease nobody could use.
        options.validate(spec.ttl)?;
        Ok(match client.acquire(spec).await? {
            Ok(grant) => Ok(LeaseKeeper::start(client, grant, options)?),
            Err(refusal) => Err(refusal),
        })
    }

    /// Starts keeping a lease acquired elsewhere (e.g. by [`ArbiterClient::acquire`]). Its
    /// validity counts from the grant's `sent_at`; if that deadline has already passed, the
    /// keeper starts out lost.
    pub fn start(
        client: &ArbiterClient,
        grant: Grant,
        options: KeeperOptions,
    ) -> Result<LeaseKeeper, ClientError> {
        options.validate(grant.ttl)?;
        let margin = options.drift_margin(grant.ttl);
        let until = grant.deadline(margin);
        let state: State = Arc::new(watch::Sender::new(Validity::Valid {
            token: grant.token,
            until,
        }));
        if Instant::now() >= until {
            lose(&state, LossCause::DeadlinePassed);
        }
        let (control, control_rx) = mpsc::unbounded_channel();
        let renewer = Renewer {
            client: client.clone(),
            resource: grant.resource.clone(),
            holder: grant.holder.clone(),
            token: grant.token,
            margin,
            renew_every: options.renew_every(grant.ttl),
            state: state.clone(),
        };
        let task = tokio::spawn(renewer.run(grant.sent_at, control_rx));
        Ok(LeaseKeeper {
            client: client.clone(),
            resource: grant.resource,
            holder: grant.holder,
            token: grant.token,
            ttl: grant.ttl,
            state,
            control,
            task,
        })
    }

    /// The leased resource.
    pub fn resource(&self) -> &ResourceId {
        &self.resource
    }

    /// The holder the lease was granted to.
    pub fn holder(&self) -> &HolderId {
        &self.holder
    }

    /// The lease's fencing token: every write under it must carry it.
    pub fn token(&self) -> FencingToken {
        self.token
    }

    /// The lease's TTL as granted.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Whether writes are allowed right now. Check it immediately before each write.
    pub fn is_valid(&self) -> bool {
        self.state.borrow().is_valid_at(Instant::now())
    }

    /// The current deadline, while valid.
    pub fn valid_until(&self) -> Option<Instant> {
        match *self.state.borrow() {
            Validity::Valid { until, .. } => Some(until),
            Validity::Lost { .. } => None,
        }
    }

    /// The lease as the holder sees it now.
    pub fn validity(&self) -> Validity {
        self.state.borrow().clone()
    }

    /// A receiver that changes when the deadline moves and when the lease is lost. The loss is
    /// published by a timer at the deadline, whatever the arbiter does.
    pub fn subscribe(&self) -> watch::Receiver<Validity> {
        self.state.subscribe()
    }

    /// Resolves when the lease is lost (at once if it already is), with the cause.
    pub fn lost(&self) -> impl Future<Output = LossCause> + Send + 'static {
        let mut rx = self.state.subscribe();
        async move {
            let cause = match rx.wait_for(|v| matches!(v, Validity::Lost { .. })).await {
                Ok(v) => match &*v {
                    Validity::Lost { cause, .. } => cause.clone(),
                    Validity::Valid { .. } => LossCause::Stopped,
                },
                // The sender lives as long as the keeper, which marks the loss before going.
                Err(_) => LossCause::Stopped,
            };
            cause
        }
    }

    /// Sends a keep-alive now instead of at the next interval, e.g. when a write was refused
    /// and the holder wants to know at once whether it was fenced.
    pub fn renew_now(&self) {
        let _ = self.control.send(Control::RenewNow);
    }

    /// Stops renewing without giving the lease back: it stays valid until its deadline and is
    /// then lost with [`LossCause::DeadlinePassed`], and the arbiter expires it after its own
    /// deadline. For a holder that must hand over without talking to the arbiter.
    pub fn stop_renewing(&self) {
        let _ = self.control.send(Control::StopRenewing);
    }

    /// Gives the lease back. Validity ends *before* the release is sent, so no write can race
    /// it; the resource is free as soon as the arbiter has the release. A refusal means the
    /// lease was already gone (revoked or expired).
    pub async fn release(self) -> Result<Result<(), Refusal>, ClientError> {
        lose(&self.state, LossCause::Released);
        self.task.abort();
        self.client
            .release(&self.resource, &self.holder, self.token)
            .await
    }
}

impl Drop for LeaseKeeper {
    fn drop(&mut self) {
        lose(&self.state, LossCause::Stopped);
        self.task.abort();
    }
}

/// The renewal task's side of a keeper.
struct Renewer {
    client: ArbiterClient,
    resource: ResourceId,
    holder: HolderId,
    token: FencingToken,
    margin: Duration,
    renew_every: Duration,
    state: State,
}

type KeepAlive =
    Pin<Box<dyn Future<Output = Result<Result<Renewal, Refusal>, ClientError>> + Send>>;

impl Renewer {
    /// Until the lease is lost: renew every `renew_every` after the last successful send, and
    /// end validity by a timer at the deadline.
    async fn run(self, granted_at: Instant, mut control: mpsc::UnboundedReceiver<Control>) {
        let mut next_renewal = granted_at + self.renew_every;
        let mut in_flight: Option<KeepAlive> = None;
        let mut renewing = true;
        loop {
            let until = match *self.state.borrow() {
                Validity::Valid { until, .. } => until,
                Validity::Lost { .. } => return,
            };
            tokio::select! {
                // First, so that a reply and the deadline arriving together end the lease.
                biased;
                _ = sleep_until(until) => {
                    lose(&self.state, LossCause::DeadlinePassed);
                    return;
                }
                command = control.recv() => match command {
                    Some(Control::RenewNow) => next_renewal = Instant::now(),
                    Some(Control::StopRenewing) => {
                        renewing = false;
                        in_flight = None;
                    }
                    // The handle is gone; `Drop` has marked the loss.
                    None => return,
                },
                result = settle(&mut in_flight) => {
                    in_flight = None;
                    match result {
                        Ok(Ok(renewal)) => {
                            // Only a reply that came while the lease was still valid counts:
                            // after the deadline the arbiter may already be expiring it.
                            if !self.state.borrow().is_valid_at(Instant::now()) {
                                lose(&self.state, LossCause::DeadlinePassed);
                                return;
                            }
                            extend(&self.state, renewal.deadline(self.margin));
                            next_renewal = renewal.sent_at + self.renew_every;
                        }
                        Ok(Err(refusal)) => {
                            tracing::info!(resource = %self.resource, token = %self.token,
                                %refusal, "keep-alive refused; lease lost");
                            lose(&self.state, LossCause::Refused(refusal));
                            return;
                        }
                        Err(error) => {
                            tracing::debug!(resource = %self.resource, %error, "keep-alive failed");
                            #[cfg(feature = "mutant-renew-on-error")]
                            extend(&self.state, Instant::now() + self.renew_every * 3);
                            // Try again soon; the deadline timer decides when it is too late.
                            next_renewal = Instant::now() + self.renew_every / 4;
                        }
                    }
                }
                _ = sleep_until(next_renewal), if renewing && in_flight.is_none() => {
                    in_flight = Some(self.keep_alive(until));
                }
            }
        }
    }

    /// One keep-alive call, retried by the client until the lease's deadline at the latest
    /// (after that it could not count anyway).
    fn keep_alive(&self, until: Instant) -> KeepAlive {
        let remaining = until.saturating_duration_since(Instant::now());
        let base = self.client.options();
        let options = ClientOptions {
            call_deadline: remaining.max(Duration::from_millis(1)),
            // A frozen node must not eat the whole remaining validity: give each node a share
            // and move on to the next.
            attempt_timeout: base
                .attempt_timeout
                .min((self.renew_every / 2).max(Duration::from_millis(50))),
            ..base.clone()
        };
        // Both durations are positive, so the options are valid; the fallback only keeps this
        // free of a panic path.
        let client = self
            .client
            .with_options(options)
            .unwrap_or_else(|_| self.client.clone());
        let (resource, holder, token) = (self.resource.clone(), self.holder.clone(), self.token);
        Box::pin(async move { client.keep_alive_streamed(&resource, &holder, token).await })
    }
}

/// Awaits the in-flight call, or never resolves when there is none.
async fn settle(
    in_flight: &mut Option<KeepAlive>,
) -> Result<Result<Renewal, Refusal>, ClientError> {
    match in_flight {
        Some(call) => call.await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mock_arbiter::{Answer, MockArbiter};

    const TTL_MS: u64 = 300;

    /// A keeper of token 7 (TTL 300 ms: drift margin 50 ms, renewals every 100 ms) against a
    /// node that answers keep-alives with `keep_alive`.
    async fn keeper(keep_alive: Answer) -> (MockArbiter, LeaseKeeper) {
        let ttl = Duration::from_millis(TTL_MS);
        keeper_with(ttl, KeeperOptions::default(), keep_alive).await
    }

    /// `ok = true` with token 7 and `ttl`.
    fn granted(ttl: Duration) -> Answer {
        Answer::Ok {
            token: 7,
            ttl_ms: ttl.as_millis() as u64,
        }
    }

    /// A keeper of token 7 over `ttl` with `options`, against a node that grants at once and
    /// answers keep-alives with `keep_alive`.
    async fn keeper_with(
        ttl: Duration,
        options: KeeperOptions,
        keep_alive: Answer,
    ) -> (MockArbiter, LeaseKeeper) {
        let node = MockArbiter::default();
        node.on_acquire(granted(ttl));
        node.on_keep_alive(keep_alive);
        let client = ArbiterClient::connect(vec![node.serve().await], ClientOptions::default())
            .await
            .unwrap();
        let spec = LeaseSpec::new("db/orders", "proxy-a", ttl);
        let keeper = LeaseKeeper::acquire(&client, &spec, options)
            .await
            .unwrap()
            .unwrap();
        (node, keeper)
    }

    #[tokio::test]
    async fn renewals_keep_the_lease_valid_past_its_first_deadline() {
        let (node, keeper) = keeper(Answer::Ok {
            token: 7,
            ttl_ms: TTL_MS,
        })
        .await;
        assert_eq!(keeper.ttl(), Duration::from_millis(TTL_MS));
        assert_eq!(
            (keeper.resource().as_str(), keeper.holder().as_str()),
            ("db/orders", "proxy-a")
        );
        assert_eq!(keeper.token(), FencingToken(7));
        let shown = format!("{keeper:?}");
        assert!(
            shown.contains("db/orders") && shown.contains("proxy-a") && shown.contains("Valid"),
            "{shown}"
        );
        let first = keeper.valid_until().unwrap();
        tokio::time::sleep_until(first + Duration::from_millis(200)).await;
        assert!(keeper.is_valid());
        assert!(keeper.valid_until().unwrap() > first);
        // Renewals travel on the client's keep-alive stream (`streamed`), the acquire unary.
        assert!(node.calls() + node.streamed() >= 3, "acquire plus renewals");
    }

    #[tokio::test]
    async fn a_silent_arbiter_ends_validity_at_the_deadline() {
        let (_, keeper) = keeper(Answer::Silent).await;
        let deadline = keeper.valid_until().unwrap();
        let cause = keeper.lost().await;
        let observed = Instant::now();
        assert_eq!(cause, LossCause::DeadlinePassed);
        assert!(!keeper.is_valid());
        let Validity::Lost { at, .. } = keeper.validity() else {
            panic!("lost but valid");
        };
        assert_eq!(at, deadline, "nothing moved the deadline");
        assert!(observed >= deadline, "not reported early");
        assert!(
            observed - deadline < Duration::from_millis(50),
            "{:?} late",
            observed - deadline
        );
    }

    /// Rule 2 on the holder's side: keep-alives that fail (here every answer is "outcome
    /// unknown", as from a leader that cannot reach a quorum) renew nothing, so validity ends at
    /// the deadline the last success gave, however often the holder retries.
    #[tokio::test]
    async fn failed_keep_alives_do_not_extend_validity() {
        let (node, keeper) = keeper(Answer::WriteTimeout).await;
        let deadline = keeper.valid_until().unwrap();
        let cause = tokio::time::timeout(Duration::from_millis(3 * TTL_MS), keeper.lost())
            .await
            .expect("still valid long after its deadline: a failed keep-alive counted");
        assert_eq!(cause, LossCause::DeadlinePassed);
        let Validity::Lost { at, .. } = keeper.validity() else {
            panic!("lost but valid");
        };
        assert_eq!(at, deadline, "a failed keep-alive moved the deadline");
        assert!(
            node.calls() >= 3,
            "the holder kept trying: {}",
            node.calls()
        );
    }

    /// Dropping the keeper ends validity at once (a subscriber sees it) and stops renewing.
    #[tokio::test]
    async fn dropping_the_keeper_ends_validity_and_renewal() {
        let (node, keeper) = keeper(Answer::Ok {
            token: 7,
            ttl_ms: TTL_MS,
        })
        .await;
        let validity = keeper.subscribe();
        drop(keeper);
        assert!(
            matches!(
                &*validity.borrow(),
                Validity::Lost {
                    cause: LossCause::Stopped,
                    ..
                }
            ),
            "{:?}",
            *validity.borrow()
        );
        let calls = node.calls();
        // Three renewal intervals: a renewal task still running would have called.
        tokio::time::sleep(Duration::from_millis(3 * TTL_MS / 3)).await;
        assert_eq!(node.calls(), calls, "renewed after the keeper was dropped");
    }

    /// A frozen node must not eat the remaining validity: each keep-alive attempt is capped
    /// (half the renewal interval, at least 50 ms), so the keeper moves on to a node that
    /// answers. The first node grants, then never answers a keep-alive; the second answers.
    #[tokio::test]
    async fn a_silent_node_does_not_eat_the_validity_the_next_node_renews() {
        let silent = MockArbiter::default();
        silent.on_acquire(Answer::Ok {
            token: 7,
            ttl_ms: TTL_MS,
        });
        silent.on_keep_alive(Answer::Silent);
        let answering = MockArbiter::default();
        answering.on_keep_alive(Answer::Ok {
            token: 7,
            ttl_ms: TTL_MS,
        });
        let endpoints = vec![silent.serve().await, answering.serve().await];
        let client = ArbiterClient::connect(endpoints, ClientOptions::default())
            .await
            .unwrap();
        let spec = LeaseSpec::new("db/orders", "proxy-a", Duration::from_millis(TTL_MS));
        let keeper = LeaseKeeper::acquire(&client, &spec, KeeperOptions::default())
            .await
            .unwrap()
            .unwrap();
        let first = keeper.valid_until().unwrap();
        // Three TTLs on, it is still valid: renewals got through the second node.
        tokio::time::sleep_until(first + Duration::from_millis(2 * TTL_MS)).await;
        assert!(keeper.is_valid(), "{:?}", keeper.validity());
        let renewals = answering.calls() + answering.streamed();
        assert!(renewals >= 2, "{renewals} renewals");
    }

    /// `renew_now` sends a keep-alive at once instead of at the next interval.
    #[tokio::test]
    async fn renew_now_renews_before_the_interval() {
        const TTL: Duration = Duration::from_secs(10);
        // The first scheduled renewal is 5 s away.
        let options = KeeperOptions {
            renew_every: Some(Duration::from_secs(5)),
            drift_margin: None,
        };
        let (node, keeper) = keeper_with(TTL, options, granted(TTL)).await;
        let granted_until = keeper.valid_until().unwrap();
        let mut validity = keeper.subscribe();
        keeper.renew_now();
        tokio::time::timeout(
            Duration::from_secs(2),
            validity
                .wait_for(|v| matches!(v, Validity::Valid { until, .. } if *until > granted_until)),
        )
        .await
        .expect("renewed well before the 5 s interval")
        .unwrap();
        assert_eq!(node.arrivals().len(), 2, "acquire and one keep-alive");
    }

    #[tokio::test]
    async fn a_refused_keep_alive_ends_validity_at_once() {
        let (_, keeper) = keeper(Answer::Stale { current: 99 }).await;
        let deadline = keeper.valid_until().unwrap();
        let cause = keeper.lost().await;
        assert_eq!(
            cause,
            LossCause::Refused(Refusal::StaleToken {
                presented: FencingToken(7),
                current: FencingToken(99),
            })
        );
        assert!(
            Instant::now() < deadline,
            "lost at the refusal, not at the deadline"
        );
        assert!(!keeper.is_valid());
    }

    /// A keep-alive that reached the arbiter before the deadline, but whose reply is due after
    /// it, is not waited for: the loss is reported at the deadline, and the reply, once the
    /// arbiter sends it, changes nothing. The keep-alive goes out 100 ms before the deadline
    /// (renewals every 800 ms of a 900 ms validity) and is answered 250 ms after it arrived,
    /// within the keeper's per-attempt cap (400 ms): only the deadline can cut it short.
    #[tokio::test]
    async fn a_reply_due_after_the_deadline_is_not_waited_for_and_changes_nothing() {
        const TTL: Duration = Duration::from_millis(1_000);
        const DELAY: Duration = Duration::from_millis(250);
        let options = KeeperOptions {
            renew_every: Some(Duration::from_millis(800)),
            drift_margin: Some(Duration::from_millis(100)),
        };
        let late = Answer::Late(DELAY, Box::new(granted(TTL)));
        let (node, keeper) = keeper_with(TTL, options, late).await;
        let deadline = keeper.valid_until().unwrap();

        let cause = tokio::time::timeout(2 * TTL, keeper.lost())
            .await
            .expect("lost by the deadline");
        let observed = Instant::now();
        assert_eq!(cause, LossCause::DeadlinePassed);
        let keep_alive_arrived = node.arrivals()[1];
        assert!(keep_alive_arrived < deadline, "the keep-alive was in time");
        assert!(
            keep_alive_arrived + DELAY > deadline,
            "its reply was due after the deadline"
        );
        assert!(
            observed - deadline < Duration::from_millis(50),
            "the loss waited {:?} past the deadline for the reply",
            observed - deadline
        );

        // The arbiter's reply time passes: the lease stays lost, from the same moment.
        tokio::time::sleep_until(keep_alive_arrived + DELAY + Duration::from_millis(50)).await;
        let Validity::Lost { at, .. } = keeper.validity() else {
            panic!("a late reply revived the lease");
        };
        assert_eq!(at, deadline);
    }

    #[tokio::test]
    async fn stopping_renewal_lets_the_lease_run_to_its_deadline() {
        let (node, keeper) = keeper(Answer::Ok {
            token: 7,
            ttl_ms: TTL_MS,
        })
        .await;
        keeper.stop_renewing();
        let calls = node.calls();
        let deadline = keeper.valid_until().unwrap();
        let cause = tokio::time::timeout(Duration::from_millis(3 * TTL_MS), keeper.lost())
            .await
            .expect("still valid long after its deadline");
        let observed = Instant::now();
        assert_eq!(cause, LossCause::DeadlinePassed);
        let Validity::Lost { at, .. } = keeper.validity() else {
            panic!("lost but valid");
        };
        assert_eq!(at, deadline, "nothing moved the deadline");
        assert!(observed >= deadline);
        assert_eq!(node.calls(), calls, "no keep-alive after stop_renewing");
    }

    /// Rule 3 with replies slow enough to tell send from reply, and a margin wide enough to
    /// tell it from loopback transit: every deadline lies between `send + TTL − margin` of the
    /// earliest possible send and that of the request's arrival at the node. The delay stays
    /// below the keeper's per-attempt cap (`renew_every / 2`), so the late replies do arrive.
    #[tokio::test]
    async fn deadlines_count_from_the_send_less_the_margin_when_replies_are_late() {
        const TTL: Duration = Duration::from_millis(1_000);
        const MARGIN: Duration = Duration::from_millis(200);
        const RENEW_EVERY: Duration = Duration::from_millis(400);
        const DELAY: Duration = Duration::from_millis(120);
        let late_ok = Answer::Late(
            DELAY,
            Box::new(Answer::Ok {
                token: 7,
                ttl_ms: TTL.as_millis() as u64,
            }),
        );
        let node = MockArbiter::default();
        node.on_acquire(late_ok.clone());
        node.on_keep_alive(late_ok);
        let client = ArbiterClient::connect(vec![node.serve().await], ClientOptions::default())
            .await
            .unwrap();
        let spec = LeaseSpec::new("db/orders", "proxy-a", TTL);
        let options = KeeperOptions {
            renew_every: Some(RENEW_EVERY),
            drift_margin: Some(MARGIN),
        };

        let asked = Instant::now();
        let keeper = LeaseKeeper::acquire(&client, &spec, options)
            .await
            .unwrap()
            .unwrap();
        let replied = Instant::now();
        assert!(replied - asked >= DELAY, "the acquire reply was late");
        let granted_until = keeper.valid_until().unwrap();
        let acquire_arrived = node.arrivals()[0];
        assert!(granted_until >= asked + (TTL - MARGIN));
        assert!(
            granted_until <= acquire_arrived + (TTL - MARGIN),
            "the grant's deadline is {:?} past arrival + TTL − margin",
            granted_until - (acquire_arrived + (TTL - MARGIN))
        );

        let mut validity = keeper.subscribe();
        let renewed_until = {
            let renewed = validity
                .wait_for(
                    |v| !matches!(v, Validity::Valid { until, .. } if *until == granted_until),
                )
                .await
                .unwrap();
            match &*renewed {
                Validity::Valid { until, .. } => *until,
                lost => panic!("lost instead of renewed: {lost:?}"),
            }
        };
        let keep_alive_arrived = node.arrivals()[1];
        // The keep-alive went out one interval after the acquire was sent, at the earliest.
        assert!(renewed_until >= asked + RENEW_EVERY + (TTL - MARGIN));
        assert!(
            renewed_until <= keep_alive_arrived + (TTL - MARGIN),
            "the renewal's deadline is {:?} past arrival + TTL − margin",
            renewed_until - (keep_alive_arrived + (TTL - MARGIN))
        );
    }

    #[tokio::test]
    async fn release_ends_validity_before_the_request_goes_out() {
        let (node, keeper) = keeper(Answer::Silent).await;
        let validity = keeper.subscribe();
        assert_eq!(keeper.release().await, Ok(Ok(())));
        let Validity::Lost {
            cause: LossCause::Released,
            at,
            ..
        } = *validity.borrow()
        else {
            panic!("not lost by release: {:?}", *validity.borrow());
        };
        let released = node.releases();
        assert_eq!(released.len(), 1);
        // The holder stopped believing before the arbiter could free the lease for another.
        assert!(
            at <= released[0],
            "validity ended {:?} after the release arrived",
            at - released[0]
        );
    }

    #[test]
    fn options_must_leave_time_to_renew() {
        let ttl = Duration::from_millis(TTL_MS);
        assert!(KeeperOptions::default().validate(ttl).is_ok());
        let no_validity = KeeperOptions {
            drift_margin: Some(ttl),
            ..KeeperOptions::default()
        };
        assert!(no_validity.validate(ttl).is_err());
        let too_slow = KeeperOptions {
            renew_every: Some(ttl),
            ..KeeperOptions::default()
        };
        assert!(too_slow.validate(ttl).is_err());
        assert_eq!(
            default_drift_margin(Duration::from_secs(10)),
            Duration::from_millis(200)
        );
        assert_eq!(default_drift_margin(ttl), Duration::from_millis(50));
    }
}
