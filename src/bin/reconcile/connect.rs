//! Reading Connect within a rate: `ListUsers` pages, then `DescribeUser` for each user
//! found on both sides, through the function's Connect adapter. Every attempt, retries
//! included, takes a token of one limiter, so the command never sends more than `--rate`
//! requests a second whatever Connect answers. The limiter is the function's: a throttle
//! lowers its rate, which climbs back to `--rate` over a minute. A throttled or failed
//! read is tried again (three attempts in all, as the function does) after a pause that
//! doubles.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use connect_identity_sync::domain::error::ErrorClass;
use connect_identity_sync::domain::identity::{InstanceId, UserId};
use connect_identity_sync::domain::ports::{CallFailure, Directory, UserRecord};
use connect_identity_sync::limiter::Limiter;
use connect_identity_sync::outbound::connect::ConnectDirectory;

use crate::compare::Listed;

/// Attempts per call, as the function makes.
const ATTEMPTS: u32 = 3;

/// Calls made, by operation (attempts, retries included).
#[derive(Debug, Clone, Copy, Default)]
pub struct Calls {
    pub list_users: u64,
    pub describe_user: u64,
    pub throttled: u64,
}

pub struct Reader {
    directory: ConnectDirectory,
    limiter: Limiter,
    list_users: AtomicU64,
    describe_user: AtomicU64,
    throttled: AtomicU64,
}

#[derive(Clone, Copy)]
enum Op {
    ListUsers,
    DescribeUser,
}

impl Reader {
    pub fn new(client: aws_sdk_connect::Client, rate: f64) -> Self {
        Reader {
            directory: ConnectDirectory::new(client),
            limiter: Limiter::per_second(rate),
            list_users: AtomicU64::new(0),
            describe_user: AtomicU64::new(0),
            throttled: AtomicU64::new(0),
        }
    }

    pub fn calls(&self) -> Calls {
        Calls {
            list_users: self.list_users.load(Ordering::Relaxed),
            describe_user: self.describe_user.load(Ordering::Relaxed),
            throttled: self.throttled.load(Ordering::Relaxed),
        }
    }

    /// One call as attempts: a limiter token each, a pause after a retryable failure.
    async fn attempts<T, F>(&self, op: Op, call: impl Fn() -> F) -> Result<T, CallFailure>
    where
        F: Future<Output = Result<T, CallFailure>>,
    {
        let mut attempt = 1;
        loop {
            let token = self.limiter.take().await;
            let made = match op {
                Op::ListUsers => &self.list_users,
                Op::DescribeUser => &self.describe_user,
            };
            made.fetch_add(1, Ordering::Relaxed);
            match call().await {
                Ok(v) => return Ok(v),
                Err(e) => {
                    let class = e.failure.class;
                    if class == ErrorClass::ThrottlingException {
                        self.throttled.fetch_add(1, Ordering::Relaxed);
                        // Another caller uses part of the quota: slow down, as the
                        // function does, and climb back to --rate gradually.
                        self.limiter.throttled(token);
                    }
                    // Reads change nothing: any retryable failure may be tried again.
                    if !class.is_retryable() || attempt >= ATTEMPTS {
                        return Err(e);
                    }
                    tokio::time::sleep(Duration::from_millis(250) * 2u32.pow(attempt - 1)).await;
                    attempt += 1;
                }
            }
        }
    }

    /// Every user of `instance`, page by page.
    ///
    /// # Errors
    /// The failure of a page that could not be read.
    pub async fn list(
        &self,
        instance: &InstanceId,
        mut on_page: impl FnMut(usize),
    ) -> Result<Vec<Listed>, CallFailure> {
        let mut users = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .attempts(Op::ListUsers, || {
                    self.directory.list_users_page(instance, token.as_deref())
                })
                .await?;
            users.extend(
                page.users
                    .into_iter()
                    .map(|(username, id)| Listed { username, id }),
            );
            on_page(users.len());
            match page.next_token {
                Some(next) => token = Some(next),
                None => return Ok(users),
            }
        }
    }

    /// One user's identity.
    ///
    /// # Errors
    /// The failure of the last attempt.
    pub async fn describe(
        &self,
        instance: &InstanceId,
        user: &str,
    ) -> Result<UserRecord, CallFailure> {
        let id = UserId::parse(user).map_err(|f| CallFailure::new(f.class, f.message))?;
        self.attempts(Op::DescribeUser, || {
            self.directory.describe_user(instance, &id)
        })
        .await
    }
}
