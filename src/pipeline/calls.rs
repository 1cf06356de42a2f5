//! One Connect call as attempts: each attempt takes a token of its operation's limiter
//! (every operation has one, `DescribeInstance` included), starts only while the
//! attempt budget still fits before the deadline less the margin (the invocation's
//! `Budget`: no later than its last attempt start, however long the token took), and is
//! counted; a
//! throttle lowers its operation's rate (`crate::limiter`, adaptive: the configured
//! rate is a ceiling); a retryable failure is tried again, at most `MAX_ATTEMPTS`
//! times. The only place that knows how a call is paced. Touches the container's
//! limiters and this invocation's counts, nothing else.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::{Instant, sleep, sleep_until, timeout_at};
use tracing::warn;

use crate::clock::Clock;
use crate::domain::error::{ErrorClass, Failure};
use crate::domain::ports::{CallFailure, Reach};
use crate::limiter::fleet::Schedules;
use crate::limiter::{Rate, Turn, Window};

use super::backpressure::TurnMeter;
use super::budget::Budget;
use super::{Outcome, PerOperation};

/// Attempts per call at most (SPEC §3).
pub const MAX_ATTEMPTS: u32 = 3;

/// The pause before the second attempt; doubled before the third. Retries of a
/// throttled call are paced by the limiter as well, since each takes a token.
const BACKOFF: Duration = Duration::from_millis(100);

/// The Connect operations the function calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Op {
    DescribeInstance,
    SearchUsers,
    DescribeUser,
    UpdateUserIdentityInfo,
    ListUsers,
}

impl Op {
    const fn name(self) -> &'static str {
        match self {
            Op::DescribeInstance => "DescribeInstance",
            Op::SearchUsers => "SearchUsers",
            Op::DescribeUser => "DescribeUser",
            Op::UpdateUserIdentityInfo => "UpdateUserIdentityInfo",
            Op::ListUsers => "ListUsers",
        }
    }

    const fn index(self) -> usize {
        self as usize
    }
}

/// Client-side rate limits per Connect operation, shared by every task of the container.
pub struct RateLimits {
    update: Rate,
    describe: Rate,
    search: Rate,
    /// `DescribeInstance`, whose quota is `SearchUsers`'s (2/s): paced at its share.
    instance: Rate,
    /// `ListUsers`, for the username index; `None` never lists.
    list: Option<Rate>,
    /// The update turns this container gets, for the backpressure before the reads.
    turns: TurnMeter,
    /// An update turn claimed for a user that needed none, until its point: the
    /// container's next update takes it instead of waiting.
    spare: std::sync::Mutex<Option<Turn>>,
}

impl RateLimits {
    /// Requests per second at most for `UpdateUserIdentityInfo`, `DescribeUser` and
    /// `SearchUsers` (and `DescribeInstance`, whose account quota is the same 2/s as
    /// `SearchUsers`'s, at the same share). A burst of one keeps every second under the
    /// rate however the calls fall; a throttle lowers the rate for a while.
    pub fn new(update_rps: f64, describe_rps: f64, search_rps: f64) -> Self {
        RateLimits {
            update: Rate::per_second(update_rps),
            describe: Rate::per_second(describe_rps),
            search: Rate::per_second(search_rps),
            instance: Rate::per_second(search_rps),
            list: None,
            turns: TurnMeter::new(update_rps),
            spare: std::sync::Mutex::new(None),
        }
    }

    /// `UpdateUserIdentityInfo` kept to one rate for the whole fleet, at most
    /// `fleet_rps` (the stack's share of the account's quota), on a schedule shared in
    /// `store`; the container's own limiter paces the requests the store cannot.
    #[must_use]
    pub fn with_fleet_update(mut self, store: Arc<dyn Schedules>, fleet_rps: f64) -> Self {
        // The template gives each container the fleet's rate over `MaximumConcurrency`.
        let containers = (fleet_rps / self.update.ceiling().max(0.001)).round();
        self.update = self.update.shared(
            store,
            Op::UpdateUserIdentityInfo.name(),
            fleet_rps,
            containers,
        );
        self
    }

    /// Every rate back at its ceiling `recovery` after a throttle at the ceiling
    /// (`CONNECT_RECOVERY_MS`), the fleet's shared one included when it is added after.
    #[must_use]
    pub fn recovering_in(self, recovery: Duration) -> Self {
        RateLimits {
            update: self.update.recovering_in(recovery),
            describe: self.describe.recovering_in(recovery),
            search: self.search.recovering_in(recovery),
            instance: self.instance.recovering_in(recovery),
            list: self.list.map(|list| list.recovering_in(recovery)),
            turns: self.turns,
            spare: self.spare,
        }
    }

    /// `ListUsers` requests per second for the username index; 0 (or less) never lists,
    /// and every username is resolved with `SearchUsers`.
    #[must_use]
    pub fn with_list(mut self, list_rps: f64) -> Self {
        self.list = (list_rps > 0.0).then(|| Rate::per_second(list_rps));
        self
    }

    /// The fleet's schedule read on `clock`.
    pub(super) fn set_clock(&mut self, clock: &Clock) {
        let update = std::mem::replace(&mut self.update, Rate::per_second(1.0));
        self.update = update.with_clock(clock);
    }

    /// Whether `ListUsers` may be called at all.
    pub(super) fn lists(&self) -> bool {
        self.list.is_some()
    }

    /// The update turns this container gets.
    pub(super) fn turns(&self) -> &TurnMeter {
        &self.turns
    }

    /// The most updates a second the container may make: the fleet's rate when it keeps
    /// one, else the container's share.
    pub(super) fn update_ceiling(&self) -> f64 {
        self.update.ceiling()
    }

    /// How far ahead the update schedule is booked, and its rate now: the fleet's as
    /// this container last knew it, else the container's own limiter's.
    pub(super) fn update_outlook(&self) -> (Duration, f64) {
        self.update.outlook()
    }

    /// Keeps an update turn claimed ahead for a user that needed no update, until its
    /// point: the container's next update (a user standing by for it) takes it instead
    /// of claiming another. A turn whose point has passed is not kept: a request sent
    /// later would land on top of the turns that came since.
    pub(super) fn spare_turn(&self, turn: Turn) {
        if turn.at().is_some_and(|at| Instant::now() < at) {
            *self.spare.lock().unwrap_or_else(|e| e.into_inner()) = Some(turn);
        }
    }

    /// Whether a turn claimed ahead may still be used: its point has not passed by more
    /// than a quarter of the update rate's period.
    fn in_time(&self, turn: &Turn) -> bool {
        let Some(at) = turn.at() else {
            return true;
        };
        let (_, rate) = self.update.outlook();
        let slack = Duration::from_secs_f64(0.25 / rate.max(0.001));
        Instant::now() <= at + slack
    }

    /// The spare update turn, while it may still be used.
    fn take_spare(&self) -> Option<Turn> {
        let spare = self.spare.lock().unwrap_or_else(|e| e.into_inner()).take();
        spare.filter(|turn| turn.at().is_some_and(|at| Instant::now() <= at))
    }

    /// `op`'s rate; `None` for `ListUsers` with the index off.
    fn rate(&self, op: Op) -> Option<&Rate> {
        match op {
            Op::UpdateUserIdentityInfo => Some(&self.update),
            Op::DescribeUser => Some(&self.describe),
            Op::SearchUsers => Some(&self.search),
            Op::DescribeInstance => Some(&self.instance),
            Op::ListUsers => self.list.as_ref(),
        }
    }
}

/// What one invocation's calls cost, counted as they happen.
#[derive(Default)]
struct Counts {
    calls: [AtomicU32; 5],
    throttled: [AtomicU32; 5],
    limiter_wait_us: AtomicU64,
    /// Writes to the fleet's shared schedule.
    schedule_writes: AtomicU32,
}

impl Counts {
    fn per_operation(counts: &[AtomicU32; 5]) -> PerOperation {
        let get = |op: Op| counts[op.index()].load(Ordering::Relaxed);
        PerOperation {
            describe_instance: get(Op::DescribeInstance),
            search_users: get(Op::SearchUsers),
            describe_user: get(Op::DescribeUser),
            update_user_identity_info: get(Op::UpdateUserIdentityInfo),
            list_users: get(Op::ListUsers),
        }
    }
}

/// One invocation's Connect calls: the container's limiters, this invocation's attempt
/// window, and what the calls cost.
pub(super) struct Calls<'p> {
    limits: &'p RateLimits,
    budget: &'p Budget,
    counts: Counts,
}

impl<'p> Calls<'p> {
    pub(super) fn new(limits: &'p RateLimits, budget: &'p Budget) -> Self {
        Calls {
            limits,
            budget,
            counts: Counts::default(),
        }
    }

    /// Calls made, each attempt counted.
    pub(super) fn made(&self) -> PerOperation {
        Counts::per_operation(&self.counts.calls)
    }

    /// Attempts Connect answered with a throttle.
    pub(super) fn throttled(&self) -> PerOperation {
        Counts::per_operation(&self.counts.throttled)
    }

    /// Writes to the fleet's shared schedule, taking tokens and dropping its rate.
    pub(super) fn schedule_writes(&self) -> u32 {
        self.counts.schedule_writes.load(Ordering::Relaxed)
    }

    /// Time spent waiting for limiter tokens, summed over every attempt.
    pub(super) fn limiter_wait(&self) -> Duration {
        Duration::from_micros(self.counts.limiter_wait_us.load(Ordering::Relaxed))
    }

    /// Makes one Connect call as up to `MAX_ATTEMPTS` attempts. Each attempt starts
    /// only if the attempt budget still fits before the deadline less the margin, and
    /// only once it holds a token of its operation's limiter; a back-off must fit
    /// too. A retryable failure is tried again; an update whose outcome is unknown
    /// is not. When time runs out the last failure stands, or `Deferred` when no
    /// attempt was made.
    pub(super) async fn call<T, F, Fut>(&self, op: Op, attempt: F) -> Result<T, Outcome>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, CallFailure>>,
    {
        self.call_for(op, None, attempt).await
    }

    /// `call`, for one user (`instance#user`): a throttle of a user whose throttle
    /// dropped the fleet's rate a short while ago does not drop it again
    /// (`FleetRate::throttled`).
    pub(super) async fn call_for<T, F, Fut>(
        &self,
        op: Op,
        user: Option<&str>,
        attempt: F,
    ) -> Result<T, Outcome>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, CallFailure>>,
    {
        self.call_in_turn(op, user, None, attempt).await
    }

    /// `call_for`, whose first attempt takes `turn` (taken with `Calls::turn` before
    /// the call was known to be needed) instead of waiting for one.
    pub(super) async fn call_in_turn<T, F, Fut>(
        &self,
        op: Op,
        user: Option<&str>,
        mut turn: Option<Turn>,
        attempt: F,
    ) -> Result<T, Outcome>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, CallFailure>>,
    {
        let mut made = 0;
        let mut dropped = false;
        let mut last: Option<Failure> = None;
        while made < MAX_ATTEMPTS {
            if made > 0 {
                let backoff = BACKOFF * 2u32.pow(made - 1);
                if Instant::now() + backoff > self.budget.last_attempt {
                    break;
                }
                sleep(backoff).await;
            }
            if !self.budget.may_start() {
                break;
            }
            // A turn claimed ahead goes at its point, and not after it has passed by
            // more than the slack: a request sent that late would land on top of the
            // turns that came since (the account's bucket does not keep the token it
            // left unused), so another is taken.
            let taken = match turn.take().filter(|t| self.limits.in_time(t)) {
                Some(turn) => Some(turn),
                None => self.claim(op, self.budget.last_attempt).await,
            };
            let Some(token) = taken else {
                break;
            };
            if let Some(at) = token.at() {
                sleep_until(at).await;
            }
            // A token that came (from the fleet's schedule, say) after the last start
            // is not used: the attempt would not end before the cutoff.
            if !self.budget.may_start() {
                break;
            }
            made += 1;
            if let Some(rate) = self.limits.rate(op) {
                rate.went(&token);
            }
            self.counts.calls[op.index()].fetch_add(1, Ordering::Relaxed);
            // The SDK's own attempt timeout ends the attempt first; this bound holds
            // for any directory.
            let ends = self.budget.request_ends(self.budget.cutoff);
            let failure = match timeout_at(ends, attempt()).await {
                Ok(Ok(value)) => return Ok(value),
                Ok(Err(failure)) => failure,
                Err(_) => {
                    warn!(
                        operation = op.name(),
                        "Connect attempt cut at its time budget"
                    );
                    CallFailure::new(
                        ErrorClass::UnknownError,
                        format!("Connect {} failed with a timeout", op.name()),
                    )
                    .with_reach(Reach::Unknown)
                }
            };
            if failure.failure.class == ErrorClass::ThrottlingException {
                self.counts.throttled[op.index()].fetch_add(1, Ordering::Relaxed);
                // One drop per call: its retries being throttled too say nothing new
                // about the account (a user's own failures would otherwise drop the
                // whole operation's rate three times per delivery).
                if !dropped {
                    let rate = self.limits.rate(op).expect("a turn came from this rate");
                    let writes = rate.throttled(token, &self.window(), user).await;
                    self.counts
                        .schedule_writes
                        .fetch_add(writes, Ordering::Relaxed);
                    dropped = true;
                }
            }
            if op == Op::UpdateUserIdentityInfo && failure.reach == Reach::Unknown {
                return Err(Outcome::Unknown(
                    Failure::unknown(format!(
                        "{} after the request was sent: the outcome is unknown",
                        failure.failure.message
                    )),
                    made,
                ));
            }
            let retryable = failure.failure.class.is_retryable();
            last = Some(failure.failure);
            if !retryable {
                break;
            }
        }
        Err(match last {
            Some(failure) => Outcome::Failed(failure, made),
            None => Outcome::Deferred,
        })
    }

    /// Waits for a turn of `op`'s rate, no later than `last_start` (at the latest the
    /// invocation's last attempt start); counts the wait and the requests to the fleet's
    /// table. `None`: no turn in time (or `ListUsers` with the index off).
    pub(super) async fn turn(&self, op: Op, last_start: Instant) -> Option<Turn> {
        let turn = self.claim(op, last_start).await;
        if let Some(at) = turn.as_ref().and_then(Turn::at) {
            sleep_until(at).await;
        }
        turn
    }

    /// `turn`, returning a turn of the fleet's once claimed, before its point
    /// (`Turn::at`); `call_in_turn` waits for the point before the request.
    pub(super) async fn claim(&self, op: Op, last_start: Instant) -> Option<Turn> {
        let limits = self.limits;
        let rate = limits.rate(op)?;
        let from = Instant::now();
        let turns = (op == Op::UpdateUserIdentityInfo).then(|| limits.turns());
        if let Some(spare) = turns.and_then(|_| limits.take_spare()) {
            return Some(spare);
        }
        if let Some(t) = turns {
            t.waits();
        }
        let window = Window {
            last_start: last_start.min(self.budget.last_attempt),
            ..self.window()
        };
        let asked = rate.claim(&window).await;
        self.counts
            .schedule_writes
            .fetch_add(asked.table_requests, Ordering::Relaxed);
        if let Some(t) = turns {
            t.done(asked.turn.is_some());
        }
        let waited = u64::try_from(from.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.counts
            .limiter_wait_us
            .fetch_add(waited, Ordering::Relaxed);
        asked.turn
    }

    /// The invocation's instants that bound a turn and a request to the fleet's table.
    fn window(&self) -> Window {
        Window {
            last_start: self.budget.last_attempt,
            cutoff: self.budget.cutoff,
            request: self.budget.attempt,
        }
    }
}
