//! A per-container request rate (governor's GCRA, burst of one), waited on with
//! tokio's timer.
//!
//! governor's own `until_ready` sleeps on `futures-timer`, whose timer thread the
//! runtime must wake and be woken by for every wait (futex and eventfd round trips,
//! two context switches); here a wait is one entry in tokio's timer wheel on the
//! thread already running. A wait that cannot end by the caller's latest start ends at
//! once instead of sleeping until then: no token is ever returned to the bucket, so the
//! wait can only grow.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::Clock;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::time::Instant;

pub struct Limiter(DefaultDirectRateLimiter);

impl Limiter {
    /// `rps` requests per second with a burst of one (the configuration keeps rates
    /// within 0.01–1000, so the period is never zero).
    pub fn per_second(rps: f64) -> Self {
        let period = Duration::from_secs_f64(1.0 / rps.max(0.001));
        let quota = Quota::with_period(period)
            .expect("a positive rate gives a non-zero period")
            .allow_burst(NonZeroU32::MIN);
        Limiter(RateLimiter::direct(quota))
    }

    /// Takes a token, waiting as long as it takes.
    pub async fn take(&self) {
        while let Err(at) = self.next_token() {
            tokio::time::sleep_until(at).await;
        }
    }

    /// Takes a token no later than `latest`; `false`, without waiting, when the next
    /// token comes after it.
    pub async fn take_by(&self, latest: Instant) -> bool {
        loop {
            match self.next_token() {
                Ok(()) => return true,
                Err(at) if at > latest => return false,
                Err(at) => tokio::time::sleep_until(at).await,
            }
        }
    }

    /// A token now, or when the next one is due.
    fn next_token(&self) -> Result<(), Instant> {
        self.0
            .check()
            .map_err(|not_until| Instant::now() + not_until.wait_time_from(self.0.clock().now()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Real time: governor's clock is std's, which a paused tokio clock does not move.

    #[tokio::test]
    async fn a_second_token_waits_one_period() {
        let limiter = Limiter::per_second(10.0);
        let start = std::time::Instant::now();
        limiter.take().await;
        assert!(start.elapsed() < Duration::from_millis(50));
        assert!(
            limiter
                .take_by(Instant::now() + Duration::from_secs(5))
                .await
        );
        let waited = start.elapsed();
        assert!(
            waited >= Duration::from_millis(90) && waited < Duration::from_secs(2),
            "{waited:?}"
        );
    }

    #[tokio::test]
    async fn a_token_due_after_the_latest_start_is_refused_at_once() {
        let limiter = Limiter::per_second(1.0);
        assert!(limiter.take_by(Instant::now()).await);
        let start = std::time::Instant::now();
        assert!(
            !limiter
                .take_by(Instant::now() + Duration::from_millis(500))
                .await
        );
        assert!(start.elapsed() < Duration::from_millis(100));
        // The refused wait took no token: the next one is still due one period on.
        assert!(
            limiter
                .take_by(Instant::now() + Duration::from_secs(5))
                .await
        );
        assert!(start.elapsed() >= Duration::from_millis(800));
    }
}
