//! Another tool in the same account (an admin website, a second integration) calling
//! `UpdateUserIdentityInfo` at a steady rate through the real SDK, signed with its own access
//! key: it draws on the same account-wide token bucket as the function, and counts its own
//! calls and throttles. Each call is one attempt (the SDK's retries are off), so its
//! throttled share is the share of its calls that Connect refused.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aws_sdk_connect::Client;
use aws_sdk_connect::config::retry::RetryConfig;
use aws_sdk_connect::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_connect::error::ProvideErrorMetadata;
use aws_sdk_connect::types::UserIdentityInfo;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The access key id the other caller signs with (its name in the emulator's journal).
pub const OTHER_CALLER_KEY: &str = "AKIAOTHERCALLERTOOL0";

/// What the other caller did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OtherCallerCounts {
    /// Calls made.
    pub calls: u64,
    /// Calls answered with `ThrottlingException`.
    pub throttled: u64,
    /// Calls that failed otherwise (connection, validation): a broken setup.
    pub errors: u64,
}

impl OtherCallerCounts {
    /// The throttled share of its calls (0 without calls).
    #[must_use]
    pub fn throttled_share(&self) -> f64 {
        if self.calls == 0 {
            0.0
        } else {
            self.throttled as f64 / self.calls as f64
        }
    }
}

#[derive(Default)]
struct Counters {
    calls: AtomicU64,
    throttled: AtomicU64,
    errors: AtomicU64,
}

impl Counters {
    fn read(&self) -> OtherCallerCounts {
        OtherCallerCounts {
            calls: self.calls.load(Ordering::Relaxed),
            throttled: self.throttled.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
        }
    }
}

/// A running other caller; it stops when [`OtherCaller::stop`] is called or it is dropped.
pub struct OtherCaller {
    counters: Arc<Counters>,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl OtherCaller {
    /// Starts calling `UpdateUserIdentityInfo` on `users` of `instance` (in turn) at
    /// `rate` calls a second, evenly spaced, against the Connect endpoint `endpoint`.
    /// Each call sets the user's names to a new value; the users must exist and should
    /// be ones nothing else changes.
    ///
    /// # Panics
    /// If `rate` is not positive or `users` is empty.
    #[must_use]
    pub fn start(endpoint: &str, instance: &str, users: Vec<String>, rate: f64) -> Self {
        assert!(rate > 0.0 && rate.is_finite(), "rate must be positive");
        assert!(!users.is_empty(), "the other caller needs a user to change");
        let config = aws_sdk_connect::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(crate::sqs::REGION))
            .endpoint_url(endpoint)
            .credentials_provider(Credentials::new(
                OTHER_CALLER_KEY,
                "other-caller-secret",
                None,
                None,
                "other-caller",
            ))
            .retry_config(RetryConfig::disabled())
            .build();
        let client = Client::from_conf(config);
        let counters = Arc::new(Counters::default());
        let (stop, mut stopped) = watch::channel(false);
        let instance = instance.to_owned();
        let task = {
            let counters = Arc::clone(&counters);
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                let mut n: u64 = 0;
                loop {
                    tokio::select! {
                        _ = tick.tick() => {}
                        _ = stopped.changed() => return,
                    }
                    let user = &users[(n % users.len() as u64) as usize];
                    n += 1;
                    let info = UserIdentityInfo::builder()
                        .first_name(format!("Admin{n}"))
                        .last_name("Tool")
                        .build();
                    // Not awaited in line: a slow answer must not lower the rate.
                    let client = client.clone();
                    let counters = Arc::clone(&counters);
                    let instance = instance.clone();
                    let user = user.clone();
                    tokio::spawn(async move {
                        let result = client
                            .update_user_identity_info()
                            .instance_id(instance)
                            .user_id(user)
                            .identity_info(info)
                            .send()
                            .await;
                        counters.calls.fetch_add(1, Ordering::Relaxed);
                        if let Err(e) = result {
                            if e.code() == Some("ThrottlingException") {
                                counters.throttled.fetch_add(1, Ordering::Relaxed);
                            } else {
                                counters.errors.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    });
                }
            })
        };
        Self {
            counters,
            stop,
            task: Some(task),
        }
    }

    /// Its calls so far.
    #[must_use]
    pub fn counts(&self) -> OtherCallerCounts {
        self.counters.read()
    }

    /// Stops calling; returns its counts once the calls under way are answered.
    pub async fn stop(mut self) -> OtherCallerCounts {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        // Let the calls already sent be answered and counted.
        tokio::time::sleep(Duration::from_millis(200)).await;
        self.counters.read()
    }
}

impl Drop for OtherCaller {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
