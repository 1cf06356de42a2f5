//! A per-container request rate that treats its configured rate as a ceiling: a token
//! schedule with a burst of one, on tokio's timer, whose rate drops when Connect
//! throttles and climbs back along a cubic curve (CUBIC, as the AWS SDKs' adaptive
//! retry mode does).
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
//! The curve is the SDK's (drop to `BETA` times the rate at the throttle, then
//! `W(t) = C (t - K)^3 + W_max`), with two changes for Connect's quotas of a few requests
//! a second, where a half-second measurement of the sending rate holds zero or one
//! request: the rate at the throttle is the limiter's own, not a measured one, and the
//! curve's scale `C` is relative to the ceiling (`C = ceiling (1 - BETA) / RECOVERY^3`),
//! so that a rate throttled at the ceiling takes `RECOVERY` to climb back whatever the
//! ceiling (the SDK's absolute `C` = 0.4 climbs back within a second at 1–2 requests a
//! second). A slow climb is what keeps the fleet from being throttled again and again
//! when another caller uses part of the quota; `RECOVERY` was chosen by simulating two
//! containers and another caller on one account-wide bucket (2/s, burst 5): 10 s
//! throttled 17–21 % of the calls, 60 s about 5 %, with the quota left over used
//! 0.95–1.0. Throttles of
//! attempts that took their token before the last drop do not drop the rate again: they
//! report the rate the drop already answered.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// The rate after a throttle, as a share of the rate at the throttle (the SDK's β).
const BETA: f64 = 0.7;
/// How long after a throttle at the ceiling the rate is back at the ceiling; a rate
/// throttled lower climbs back sooner (`K` grows with the cube root of the rate). It
/// climbs slowly near the throttled rate, and faster beyond, up to the ceiling.
const RECOVERY: Duration = Duration::from_secs(60);
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
            state: Mutex::new(State {
                next: Instant::now(),
                throttle: None,
                epoch: 0,
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The rate now, in requests per second.
    pub fn rate(&self) -> f64 {
        self.rate_at(&self.state(), Instant::now())
    }

    fn rate_at(&self, state: &State, now: Instant) -> f64 {
        let Some((at, max)) = state.throttle else {
            return self.ceiling;
        };
        let recovery = RECOVERY.as_secs_f64();
        let scale = self.ceiling * (1.0 - BETA) / recovery.powi(3);
        let k = (max * (1.0 - BETA) / scale).cbrt();
        let t = now.saturating_duration_since(at).as_secs_f64();
        (scale * (t - k).powi(3) + max).clamp(self.ceiling * FLOOR, self.ceiling)
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
    /// token comes after it. A token is reserved before the wait, so waiters are
    /// served in turn and a refused wait takes nothing.
    pub async fn take_by(&self, latest: Instant) -> Option<Token> {
        let (at, token) = {
            let mut state = self.state();
            let now = Instant::now();
            let at = state.next.max(now);
            if at > latest {
                return None;
            }
            let rate = self.rate_at(&state, at);
            state.next = at + Duration::from_secs_f64(1.0 / rate);
            (at, Token { epoch: state.epoch })
        };
        tokio::time::sleep_until(at).await;
        Some(token)
    }

    /// Connect throttled the request `token` was taken for: the rate drops to `BETA`
    /// of what it is now and the next token waits one period at the new rate. Once per
    /// drop: a token taken before the last drop does not drop the rate again.
    pub fn throttled(&self, token: Token) {
        let mut state = self.state();
        if token.epoch != state.epoch {
            return;
        }
        let now = Instant::now();
        let rate = self.rate_at(&state, now);
        state.throttle = Some((now, rate));
        state.epoch += 1;
        let period = Duration::from_secs_f64(1.0 / self.rate_at(&state, now));
        state.next = state.next.max(now + period);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Paused time: the limiter runs on tokio's clock, so every figure below is exact.

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

        // Halfway back the climb has slowed (concave); at RECOVERY it is back at the
        // rate it was throttled at, which here is the ceiling, and stays there.
        tokio::time::advance(RECOVERY / 2).await;
        let halfway = limiter.rate();
        assert!(halfway > 2.0 * BETA && halfway < 2.0, "{halfway}");
        let rise_first_half = halfway - 2.0 * BETA;
        assert!(rise_first_half > (2.0 - halfway), "{halfway}");
        tokio::time::advance(RECOVERY / 2).await;
        assert!(close(limiter.rate(), 2.0), "{}", limiter.rate());
        tokio::time::advance(RECOVERY * 10).await;
        assert!(close(limiter.rate(), 2.0), "{}", limiter.rate());
    }

    #[tokio::test(start_paused = true)]
    async fn the_tokens_after_a_throttle_come_at_the_lower_rate() {
        let limiter = Limiter::per_second(1.0);
        let start = Instant::now();
        let token = limiter.take().await;
        limiter.throttled(token);
        // The next token waits one period at 0.7/s, not 1 s.
        limiter.take().await;
        let first = start.elapsed().as_secs_f64();
        assert!((first - 1.0 / BETA).abs() < 1e-3, "{first}");
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
        // A rate at the floor climbs back to the ceiling on its own: the curve reaches
        // the throttled rate at RECOVERY and rises beyond it.
        tokio::time::advance(RECOVERY * 3).await;
        assert!(close(limiter.rate(), 2.0), "{}", limiter.rate());
    }
}
