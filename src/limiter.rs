//! The rates Connect calls are paced by. [`Rate`] is what a call asks for a turn and
//! tells of a throttle, whatever kind of rate stands behind it: a container's own
//! ([`Limiter`]), or the fleet's one rate shared through a schedule in a table
//! ([`fleet::FleetRate`], with the container's own behind it for when the table cannot
//! be used). Both are bounded by the invocation's [`Window`].
//!
//! [`Limiter`] is a per-container request rate that treats its configured rate as a
//! ceiling: a token schedule with a burst of one, on tokio's timer, whose rate drops
//! when Connect throttles and climbs back along a cubic curve (CUBIC, as the AWS SDKs'
//! adaptive retry mode does).
//!
//! Why not the SDK's own: aws-smithy-runtime's `ClientRateLimiter` (the adaptive retry
//! mode) is driven only from inside the SDK's retry loop (its methods are crate-private),
//! and that loop can neither wait for a token no later than the invocation's latest
//! start nor check the deadline between attempts; the pipeline's attempt loop
//! (`pipeline/calls.rs`) does both, so the rate lives here. Why not governor (used
//! before): its quota is fixed once built and its clock is std's, so a rate that
//! changes and tests on tokio's paused clock both need a schedule of our own, which
//! with a burst of one is a single instant.
//!
//! The curve is the SDK's (drop to β times the rate at the throttle, then
//! `W(t) = C (t - K)^3 + W_max`, concave up to `W_max`, convex beyond), with changes for
//! Connect's quotas of a few requests a second, where a half-second measurement of the
//! sending rate holds zero or one request and the account's burst (5) hides an excess for
//! seconds: the rate at the throttle is the limiter's own, not a measured one; the curve
//! flattens below it (`Shape::plateau`), since that rate already emptied the burst; the
//! next request after a drop waits a respite; and the scale `C` is relative to the
//! ceiling, so that a rate throttled at the ceiling takes `RECOVERY` to come back near it
//! whatever the ceiling (the SDK's absolute `C` = 0.4 climbs back within a second at 1–2
//! requests a second). Throttles of attempts that took their token before the last drop
//! do not drop the rate again: the drop already answered them (and `pipeline/calls.rs`
//! drops it once per call, however many attempts are throttled).
//!
//! Two shapes. A container's own rate (`Shape::CONTAINER`: β 0.7, flattening at 0.9,
//! one period) was chosen by simulating two containers (1/s each) and another caller
//! (1.2/s) on one account-wide bucket (2/s, burst 5) for 10 minutes: a 30 s climb
//! throttled 9–11 % of the containers' calls, 60 s 5–7 %, 120 s with the plateau at 0.9
//! about 3 %. The fleet's one rate (`Shape::FLEET`: β 0.5, flattening at 0.8, two
//! periods) answers for every container with one drop, and was chosen in the fleet
//! end-to-end test (`tests/e2e/fleet.rs`: two containers, another caller at 1.2 of the
//! 2 updates/s, 200 changes, about 140 s, three runs each): the container's shape left
//! the other caller throttled on 2.6–6.4 % of its calls and took 0.99–1.13 of what was
//! free; β 0.5 flattening at 0.7, in six runs, 0–1.6 % and 0.94–1.01, the containers'
//! own calls 0.7–1.1 %; flattening at 0.8, 0–7.5 %; CUBIC's fast convergence (a lower peak
//! when throttled below the last one), 3.2–10.5 %. Since the fleet's requests go at a
//! random point of their period (`fleet.rs`), its requests meet the other caller's use of
//! the burst as throttles of their own, and the plateau moved to 0.8: in the simulation's
//! calm fleets of two to fifty containers with another caller (`tests/simulation`, six
//! seeds each, 600 changes), flattening at 0.7 used 0.88–0.93 of what was free (mean;
//! lowest 0.85), the other caller throttled on at most 1.5 %; at 0.8, 0.91–0.93 (lowest
//! 0.89), at most 2.7 % (the fleet test's bound is 8 %). The reason for the caution: another
//! caller's throttles are never seen, and once the burst is empty a caller whose
//! requests come at a fixed rhythm can take every refusal for tens of seconds while the
//! fleet is never refused and so never slows down. The container's shape stays milder:
//! its drops compound across containers, and a user whose every update is throttled
//! would hold the fleet's deeper shape near its floor (the chaos test's queue did not
//! drain in 240 s with it).

pub mod fleet;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::clock::Clock;
use fleet::{FleetRate, FleetToken, Schedules, Take};

/// The instants of an invocation a turn and a request to the fleet's table are bounded
/// by (from the invocation's budget).
#[derive(Debug, Clone, Copy)]
pub struct Window {
    /// No attempt starts after this: a turn that comes later is not taken.
    pub last_start: Instant,
    /// Every request has ended by then.
    pub cutoff: Instant,
    /// The longest one request may take.
    pub request: Duration,
}

impl Window {
    /// Whether a request may still start now.
    pub fn may_start(&self) -> bool {
        Instant::now() <= self.last_start
    }

    /// When a request started now must end: one request's time, and never after
    /// `limit`.
    pub fn request_ends(&self, limit: Instant) -> Instant {
        (Instant::now() + self.request).min(limit)
    }
}

/// One operation's rate, as a Connect call sees it: ask for a turn, say when Connect
/// throttled the request the turn was for. A container's own limiter, or the fleet's
/// one rate with the container's own behind it.
pub struct Rate {
    own: Limiter,
    fleet: Option<FleetRate>,
}

/// The right to make one request, from the rate that gave it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Turn {
    /// The container's own limiter as it stood (taken from it, or, for a turn of the
    /// fleet's, its state then: a throttle the fleet's rate cannot answer drops it).
    own: Token,
    fleet: Option<FleetToken>,
}

/// What asking for a turn came to: the turn (`None`: none by the window's last
/// start), and the requests to the fleet's table it took.
pub struct Asked {
    pub turn: Option<Turn>,
    pub table_requests: u32,
}

impl Turn {
    /// When the request may go: a turn of the fleet's claimed ahead goes at its point;
    /// `None`, at once.
    pub fn at(&self) -> Option<Instant> {
        self.fleet.map(|f| f.at)
    }
}

impl Rate {
    /// A container's own rate: `rps` requests per second at most.
    pub fn per_second(rps: f64) -> Self {
        Rate {
            own: Limiter::per_second(rps),
            fleet: None,
        }
    }

    /// The fleet's one rate for `operation`, at most `fleet_rps` for every container
    /// together, on a schedule in `store` shared by `containers` containers at most;
    /// this rate's own ceiling paces the requests the store cannot.
    #[must_use]
    pub fn shared(
        mut self,
        store: Arc<dyn Schedules>,
        operation: &str,
        fleet_rps: f64,
        containers: f64,
    ) -> Self {
        self.fleet = Some(
            FleetRate::new(store, operation, fleet_rps)
                .shared_by(containers)
                .recovering_in(self.own.recovery),
        );
        self
    }

    /// The same rate, climbing back to its ceiling `recovery` after a throttle at the
    /// ceiling (`CONNECT_RECOVERY_MS`), the fleet's schedule included.
    #[must_use]
    pub fn recovering_in(mut self, recovery: Duration) -> Self {
        self.own = self.own.recovering_in(recovery);
        self.fleet = self.fleet.map(|fleet| fleet.recovering_in(recovery));
        self
    }

    /// The fleet's schedule read on `clock`.
    #[must_use]
    pub fn with_clock(mut self, clock: &Clock) -> Self {
        self.fleet = self.fleet.map(|fleet| fleet.with_clock(clock.clone()));
        self
    }

    /// The most requests a second this rate gives: the fleet's when it is shared.
    pub fn ceiling(&self) -> f64 {
        self.fleet
            .as_ref()
            .map_or(self.own.ceiling, FleetRate::ceiling)
    }

    /// How far ahead the rate is booked (the wait for its next free turn, as this
    /// container last knew it) and the rate now.
    pub fn outlook(&self) -> (Duration, f64) {
        match &self.fleet {
            Some(fleet) => fleet.outlook(),
            None => (self.own.wait(), self.own.rate()),
        }
    }

    /// A turn no later than the window's last start: the fleet's when it keeps one
    /// and the table can be used, else the container's own. The container's own turn
    /// comes when it is due; the fleet's is returned once claimed, before its point
    /// (`Turn::at`), so that what the request needs can be done meanwhile.
    pub async fn claim(&self, window: &Window) -> Asked {
        let mut table_requests = 0;
        if let Some(fleet) = &self.fleet {
            let (take, writes) = fleet.claim_by(window).await;
            table_requests = writes;
            match take {
                Take::Token(token) => {
                    return Asked {
                        turn: Some(Turn {
                            own: self.own.current(),
                            fleet: Some(token),
                        }),
                        table_requests,
                    };
                }
                Take::Late => {
                    return Asked {
                        turn: None,
                        table_requests,
                    };
                }
                Take::Unavailable => {}
            }
        }
        let turn = self
            .own
            .take_by(window.last_start)
            .await
            .map(|own| Turn { own, fleet: None });
        Asked {
            turn,
            table_requests,
        }
    }

    /// The request `turn` was taken for goes now (the fleet's schedule counts its wait
    /// and lateness).
    pub fn went(&self, turn: &Turn) {
        if let (Some(fleet), Some(token)) = (&self.fleet, &turn.fleet) {
            fleet.went(token);
        }
    }

    /// Connect throttled the request `turn` was for (for `user`, when known): the rate
    /// the turn came from drops. When the fleet's schedule could not be lowered (the
    /// table failed or was too slow), the container's own rate drops instead, so that
    /// the requests it paces while the schedule is out of reach slow down too. Says how
    /// many requests to the fleet's table that took.
    pub async fn throttled(&self, turn: Turn, window: &Window, user: Option<&str>) -> u32 {
        match (&self.fleet, turn.fleet) {
            (Some(fleet), Some(token)) => {
                let (lowered, writes) = fleet.throttled(token, window, user).await;
                if !lowered {
                    self.own.throttled(turn.own);
                }
                writes
            }
            _ => {
                self.own.throttled(turn.own);
                0
            }
        }
    }
}

/// How a rate drops and climbs back: the drop (the SDK's β), where the climb flattens,
/// and how many periods at the new rate the next request waits after a drop.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Shape {
    /// The rate after a throttle, as a share of the rate at the throttle (the SDK's β is
    /// 0.7).
    pub beta: f64,
    /// Where the curve flattens, as a share of the rate at the throttle (CUBIC flattens
    /// at the throttled rate itself; at a few requests a second that rate emptied the
    /// account's burst some time before the throttle said so).
    pub plateau: f64,
    /// Periods at the new rate that the next request waits after a drop, so that the
    /// account's burst, which the throttle showed empty, fills a little before anyone in
    /// the account is refused again.
    pub respite_periods: f64,
}

impl Shape {
    /// One container's own rate, one of several that each see only their own throttles:
    /// when the account's burst empties, several of them drop at once.
    pub const CONTAINER: Shape = Shape {
        beta: 0.7,
        plateau: 0.9,
        respite_periods: 1.0,
    };

    /// The fleet's one rate (`limiter/fleet.rs`): a single drop answers for every
    /// container, so it goes deeper, flattens lower, and waits for the burst to fill.
    pub const FLEET: Shape = Shape {
        beta: 0.5,
        plateau: 0.8,
        respite_periods: 2.0,
    };

    /// The rate under `ceiling` at `since` after the last throttle, which came at the
    /// rate `max` (`None`: never throttled, the ceiling): the cubic curve above, back at
    /// the plateau `recovery` after a throttle at the ceiling.
    pub fn curve(self, ceiling: f64, throttle: Option<(Duration, f64)>, recovery: Duration) -> f64 {
        let Some((since, max)) = throttle else {
            return ceiling;
        };
        let recovery = recovery.as_secs_f64().max(0.001);
        let scale = ceiling * (self.plateau - self.beta) / recovery.powi(3);
        let plateau = self.plateau * max;
        let k = ((plateau - self.beta * max) / scale).cbrt();
        let t = since.as_secs_f64();
        (scale * (t - k).powi(3) + plateau).clamp(ceiling * FLOOR, ceiling)
    }

    /// The lowest rate under `ceiling`: where a run of throttles leaves it.
    pub fn floor(self, ceiling: f64) -> f64 {
        ceiling * FLOOR
    }

    /// How long the next request waits after a drop to `rate`.
    pub fn respite(self, rate: f64) -> Duration {
        Duration::from_secs_f64(self.respite_periods / rate)
    }
}

/// How long after a throttle at the ceiling the rate is back near the ceiling (at the
/// plateau), unless `CONNECT_RECOVERY_MS` says otherwise; a rate throttled lower climbs
/// back sooner (`K` grows with the cube root of the rate). It climbs slowly near the
/// plateau, and faster beyond, up to the ceiling.
pub const RECOVERY: Duration = Duration::from_secs(120);
/// The lowest rate, as a share of the ceiling.
const FLOOR: f64 = 0.05;

/// The right to make one request, from the limiter that gave it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token {
    /// The number of drops before this token was taken.
    epoch: u64,
}

pub struct Limiter {
    ceiling: f64,
    /// Back at the plateau this long after a throttle at the ceiling.
    recovery: Duration,
    state: Mutex<State>,
}

struct State {
    /// When the next token is due.
    next: Instant,
    /// The last throttle that dropped the rate: when, and the rate then.
    throttle: Option<(Instant, f64)>,
    /// Drops so far.
    epoch: u64,
}

impl Limiter {
    /// `rps` requests per second at most, with a burst of one (the configuration keeps
    /// rates within 0.01–1000).
    pub fn per_second(rps: f64) -> Self {
        Limiter {
            ceiling: rps.max(0.001),
            recovery: RECOVERY,
            state: Mutex::new(State {
                next: Instant::now(),
                throttle: None,
                epoch: 0,
            }),
        }
    }

    /// The same limiter, back at the plateau `recovery` after a throttle at the ceiling
    /// (`RECOVERY` unless set).
    #[must_use]
    pub fn recovering_in(mut self, recovery: Duration) -> Self {
        self.recovery = recovery;
        self
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The rate now, in requests per second.
    pub fn rate(&self) -> f64 {
        self.rate_at(&self.state(), Instant::now())
    }

    fn rate_at(&self, state: &State, now: Instant) -> f64 {
        Shape::CONTAINER.curve(
            self.ceiling,
            state
                .throttle
                .map(|(at, max)| (now.saturating_duration_since(at), max)),
            self.recovery,
        )
    }

    /// How long until the next token is free (zero when one is free now).
    pub fn wait(&self) -> Duration {
        self.state().next.saturating_duration_since(Instant::now())
    }

    /// Takes a token, waiting as long as it takes.
    pub async fn take(&self) -> Token {
        loop {
            let far = Instant::now() + Duration::from_secs(86_400);
            if let Some(token) = self.take_by(far).await {
                return token;
            }
        }
    }

    /// Takes a token no later than `latest`; `None`, without waiting, when the next
    /// token comes after it. A waiter that wakes to find the token taken, or put off by
    /// a throttle, waits again: no token is handed out at a rate older than the last
    /// drop, and a refused wait takes nothing.
    pub async fn take_by(&self, latest: Instant) -> Option<Token> {
        loop {
            let at = {
                let mut state = self.state();
                let now = Instant::now();
                if state.next <= now {
                    let rate = self.rate_at(&state, now);
                    state.next = now + Duration::from_secs_f64(1.0 / rate);
                    return Some(Token { epoch: state.epoch });
                }
                if state.next > latest {
                    return None;
                }
                state.next
            };
            tokio::time::sleep_until(at).await;
        }
    }

    /// The limiter's state as a token, without taking one: a throttle met by a request
    /// paced elsewhere (on the fleet's schedule) drops this rate with it, once, as a
    /// token taken now would.
    pub fn current(&self) -> Token {
        Token {
            epoch: self.state().epoch,
        }
    }

    /// Connect throttled the request `token` was taken for: the rate drops to β of what
    /// it is now and the next token waits the respite at the new rate. Once
    /// per drop: a token taken before the last drop does not drop the rate again.
    pub fn throttled(&self, token: Token) {
        let mut state = self.state();
        if token.epoch != state.epoch {
            return;
        }
        let now = Instant::now();
        let rate = self.rate_at(&state, now);
        state.throttle = Some((now, rate));
        state.epoch += 1;
        let respite = Shape::CONTAINER.respite(self.rate_at(&state, now));
        state.next = state.next.max(now + respite);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Paused time: the limiter runs on tokio's clock, so every figure below is exact.

    const BETA: f64 = Shape::CONTAINER.beta;
    const PLATEAU: f64 = Shape::CONTAINER.plateau;
    const RESPITE_PERIODS: f64 = Shape::CONTAINER.respite_periods;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-6
    }

    #[tokio::test(start_paused = true)]
    async fn a_second_token_waits_one_period() {
        let limiter = Limiter::per_second(10.0);
        let start = Instant::now();
        limiter.take().await;
        assert_eq!(start.elapsed(), Duration::ZERO);
        assert!(
            limiter
                .take_by(start + Duration::from_secs(5))
                .await
                .is_some()
        );
        assert_eq!(start.elapsed(), Duration::from_millis(100));
    }

    #[tokio::test(start_paused = true)]
    async fn a_token_due_after_the_latest_start_is_refused_at_once() {
        let limiter = Limiter::per_second(1.0);
        let start = Instant::now();
        assert!(limiter.take_by(start).await.is_some());
        assert!(
            limiter
                .take_by(start + Duration::from_millis(500))
                .await
                .is_none()
        );
        assert_eq!(start.elapsed(), Duration::ZERO);
        // The refused wait took no token: the next one is still due one period on.
        assert!(
            limiter
                .take_by(start + Duration::from_secs(5))
                .await
                .is_some()
        );
        assert_eq!(start.elapsed(), Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_throttle_drops_the_rate_and_it_climbs_back_to_the_ceiling() {
        let limiter = Limiter::per_second(2.0);
        assert!(close(limiter.rate(), 2.0));
        let token = limiter.take().await;
        limiter.throttled(token);
        assert!(close(limiter.rate(), 2.0 * BETA), "{}", limiter.rate());

        // Halfway back the climb has slowed (concave); at RECOVERY it is at the plateau
        // just below the rate it was throttled at (here the ceiling), then it climbs on
        // to the ceiling and stays there.
        let plateau = 2.0 * PLATEAU;
        tokio::time::advance(RECOVERY / 2).await;
        let halfway = limiter.rate();
        assert!(halfway > 2.0 * BETA && halfway < plateau, "{halfway}");
        let rise_first_half = halfway - 2.0 * BETA;
        assert!(rise_first_half > (plateau - halfway), "{halfway}");
        tokio::time::advance(RECOVERY / 2).await;
        assert!(close(limiter.rate(), plateau), "{}", limiter.rate());
        tokio::time::advance(RECOVERY * 10).await;
        assert!(close(limiter.rate(), 2.0), "{}", limiter.rate());
    }

    #[tokio::test(start_paused = true)]
    async fn the_tokens_after_a_throttle_come_at_the_lower_rate() {
        let limiter = Limiter::per_second(1.0);
        let start = Instant::now();
        let token = limiter.take().await;
        limiter.throttled(token);
        // The next token waits the respite at 0.7/s, not 1 s.
        limiter.take().await;
        let first = start.elapsed().as_secs_f64();
        assert!((first - RESPITE_PERIODS / BETA).abs() < 1e-3, "{first}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiter_already_waiting_when_the_rate_drops_waits_at_the_new_rate() {
        let limiter = Limiter::per_second(1.0);
        let start = Instant::now();
        let first = limiter.take().await;
        let waiter = async {
            limiter.take().await;
            start.elapsed().as_secs_f64()
        };
        let throttle = async {
            tokio::task::yield_now().await;
            limiter.throttled(first);
        };
        let (waited, ()) = tokio::join!(waiter, throttle);
        assert!((waited - RESPITE_PERIODS / BETA).abs() < 1e-3, "{waited}");
    }

    #[tokio::test(start_paused = true)]
    async fn throttles_of_tokens_taken_before_a_drop_do_not_drop_it_again() {
        let limiter = Limiter::per_second(100.0);
        let first = limiter.take().await;
        let second = limiter.take().await;
        limiter.throttled(first);
        limiter.throttled(second);
        assert!(close(limiter.rate(), 100.0 * BETA), "{}", limiter.rate());
        // A token taken after the drop does drop it once more.
        let third = limiter.take().await;
        limiter.throttled(third);
        // (The rate had climbed a little while the third token was due.)
        let twice = limiter.rate();
        assert!((twice - 100.0 * BETA * BETA).abs() < 0.1, "{twice}");
    }

    #[tokio::test(start_paused = true)]
    async fn repeated_throttles_stop_at_the_floor_and_a_quiet_spell_recovers() {
        let limiter = Limiter::per_second(2.0);
        for _ in 0..30 {
            let token = limiter.take().await;
            limiter.throttled(token);
        }
        assert!(close(limiter.rate(), 2.0 * FLOOR), "{}", limiter.rate());
        // A rate at the floor climbs back to the ceiling on its own: the curve flattens
        // near the throttled rate and rises beyond it.
        tokio::time::advance(RECOVERY * 3).await;
        assert!(close(limiter.rate(), 2.0), "{}", limiter.rate());
    }

    #[tokio::test(start_paused = true)]
    async fn a_recovery_set_shorter_brings_the_rate_back_in_that_time_on_the_same_curve() {
        // The curve in time is the default's, scaled: a quarter of the recovery gives a
        // quarter of the time to each point of the climb.
        let quick = Limiter::per_second(8.0).recovering_in(RECOVERY / 4);
        let slow = Limiter::per_second(8.0);
        for limiter in [&quick, &slow] {
            let token = limiter.take().await;
            limiter.throttled(token);
        }
        tokio::time::advance(RECOVERY / 8).await;
        let (quick_half, slow_eighth) = (quick.rate(), slow.rate());
        assert!(quick_half > slow_eighth, "{quick_half} {slow_eighth}");
        tokio::time::advance(RECOVERY / 8).await;
        assert!(close(quick.rate(), 8.0 * PLATEAU), "{}", quick.rate());
        assert!(slow.rate() < 8.0 * PLATEAU - 0.5, "{}", slow.rate());
        tokio::time::advance(RECOVERY * 3 / 4).await;
        assert!(close(slow.rate(), 8.0 * PLATEAU), "{}", slow.rate());
        // Halfway through its recovery each stands at the same rate.
        let (a, b) = (
            Shape::CONTAINER.curve(8.0, Some((RECOVERY / 8, 8.0)), RECOVERY / 4),
            Shape::CONTAINER.curve(8.0, Some((RECOVERY / 2, 8.0)), RECOVERY),
        );
        assert!(close(a, b), "{a} {b}");
    }
}
