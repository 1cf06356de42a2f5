//! Connect reads, each paced within the endpoint's own share of its quota
//! (`CONNECT_RPS_*`, the function's limiter: a ceiling that drops when Connect throttles
//! and climbs back). A read whose token cannot be had within [`WAIT`], or that Connect
//! throttles, is `Busy`: the route answers 429 with `Retry-After`, which both identity
//! providers honour.
//!
//! Usernames are resolved as the function resolves them (SPEC §2.4): from a `ListUsers`
//! listing of the instance when one is fresh (15 minutes), else with `SearchUsers` on the
//! exact `Username`; either way a user is used only while `DescribeUser` returns that
//! same `Username`. The listing is built a few pages per request (within
//! [`LIST_BUDGET`]) and finished by the next ones, so that a large instance never holds
//! a request past its time; it also pages `GET /Users`.

use std::time::Duration;

use connect_identity_sync::domain::error::ErrorClass;
use connect_identity_sync::domain::identity::{InstanceId, UserId};
use connect_identity_sync::domain::instance::IdentityManagement;
use connect_identity_sync::domain::ports::{CallFailure, Directory, UserRecord};
use connect_identity_sync::limiter::Limiter;
use connect_identity_sync::outbound::connect::ConnectDirectory;
use tokio::sync::OnceCell;
use tokio::time::Instant;

/// The longest a read waits for its limiter's token.
pub const WAIT: Duration = Duration::from_secs(2);
/// The longest one request spends listing users.
pub const LIST_BUDGET: Duration = Duration::from_secs(4);
/// How long a complete listing resolves usernames and pages `GET /Users`.
pub const LISTING_MAX_AGE: Duration = Duration::from_secs(15 * 60);

/// Why a read gave no answer.
#[derive(Debug)]
pub enum ReadError {
    /// The share is used up for now, or Connect throttled: try again after this many
    /// seconds.
    Busy(u64),
    /// No such user in the instance.
    NotFound,
    /// Connect failed otherwise (classified; the message holds no value).
    Failed(CallFailure),
}

/// A listing of the instance's users: (username, user id), sorted by username.
#[derive(Default)]
struct Listing {
    users: Vec<(String, String)>,
    /// `Some` while pages remain; `None` once complete.
    next: Option<Option<String>>,
    finished_at: Option<Instant>,
}

impl Listing {
    fn is_fresh(&self) -> bool {
        self.finished_at
            .is_some_and(|t| t.elapsed() < LISTING_MAX_AGE)
    }
}

pub struct Reads {
    directory: ConnectDirectory,
    pub instance: InstanceId,
    describe: Limiter,
    search: Limiter,
    describe_instance: Limiter,
    list: Option<Limiter>,
    management: OnceCell<IdentityManagement>,
    listing: tokio::sync::Mutex<Listing>,
}

/// A user found by username, with what `DescribeUser` returned.
pub struct Found {
    pub id: UserId,
    pub record: UserRecord,
}

impl Reads {
    pub fn new(
        directory: ConnectDirectory,
        instance: InstanceId,
        rps_describe: f64,
        rps_search: f64,
        rps_list: Option<f64>,
    ) -> Self {
        Reads {
            directory,
            instance,
            describe: Limiter::per_second(rps_describe),
            search: Limiter::per_second(rps_search),
            describe_instance: Limiter::per_second(rps_search),
            list: rps_list.map(Limiter::per_second),
            management: OnceCell::new(),
            listing: tokio::sync::Mutex::new(Listing::default()),
        }
    }

    async fn paced<T, F>(
        &self,
        limiter: &Limiter,
        call: impl FnOnce() -> F,
        by: Instant,
    ) -> Result<T, ReadError>
    where
        F: Future<Output = Result<T, CallFailure>>,
    {
        let retry_after = || ReadError::Busy((1.0 / limiter.rate()).ceil().max(1.0) as u64);
        let Some(token) = limiter.take_by(by).await else {
            return Err(retry_after());
        };
        match call().await {
            Ok(out) => Ok(out),
            Err(failure) => match failure.failure.class {
                ErrorClass::ThrottlingException => {
                    limiter.throttled(token);
                    Err(retry_after())
                }
                ErrorClass::ResourceNotFoundException => Err(ReadError::NotFound),
                _ => Err(ReadError::Failed(failure)),
            },
        }
    }

    /// The instance's identity management type, read once per container.
    pub async fn management(&self) -> Result<IdentityManagement, ReadError> {
        self.management
            .get_or_try_init(|| async {
                let by = Instant::now() + WAIT;
                self.paced(
                    &self.describe_instance,
                    || self.directory.identity_management(&self.instance),
                    by,
                )
                .await
            })
            .await
            .cloned()
    }

    /// `DescribeUser`: the user, or `NotFound`.
    pub async fn user(&self, id: &UserId) -> Result<UserRecord, ReadError> {
        self.user_by(id, Instant::now() + WAIT).await
    }

    async fn user_by(&self, id: &UserId, by: Instant) -> Result<UserRecord, ReadError> {
        self.paced(
            &self.describe,
            || self.directory.describe_user(&self.instance, id),
            by,
        )
        .await
    }

    /// The user whose `Username` is `username` exactly, as the function resolves it.
    pub async fn find(&self, username: &str) -> Result<Option<Found>, ReadError> {
        if let Some(candidate) = self.candidate(username).await? {
            let record = match self.user(&candidate).await {
                Err(ReadError::NotFound) => None,
                other => Some(other?),
            };
            if let Some(record) = record.filter(|r| r.username.as_deref() == Some(username)) {
                return Ok(Some(Found {
                    id: candidate,
                    record,
                }));
            }
            // Moved or gone since the listing: forget it and ask Connect.
            self.listing.lock().await.finished_at = None;
        }
        let by = Instant::now() + WAIT;
        let id = match self
            .paced(
                &self.search,
                || self.directory.find_user(&self.instance, username),
                by,
            )
            .await
        {
            Ok(id) => id,
            Err(ReadError::NotFound) => return Ok(None),
            Err(e) => return Err(e),
        };
        match self.user(&id).await {
            Ok(record) if record.username.as_deref() == Some(username) => {
                Ok(Some(Found { id, record }))
            }
            Ok(_) | Err(ReadError::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The user id a fresh listing holds for `username`; `None` without a listing (or
    /// when it does not hold the name: the user may be new since).
    async fn candidate(&self, username: &str) -> Result<Option<UserId>, ReadError> {
        if self.list.is_none() {
            return Ok(None);
        }
        let listing = self.listing_by(Instant::now() + LIST_BUDGET).await;
        let listing = match listing {
            Ok(listing) => listing,
            // Not finished within this request's budget: SearchUsers meanwhile.
            Err(ReadError::Busy(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        Ok(listing
            .binary_search_by(|(name, _)| name.as_str().cmp(username))
            .ok()
            .and_then(|i| UserId::parse(&listing[i].1).ok()))
    }

    /// The complete, fresh listing (built or finished now, within `by`); `Busy` when it
    /// could not be finished in time (the pages read are kept for the next request).
    pub async fn listing_by(&self, by: Instant) -> Result<Vec<(String, String)>, ReadError> {
        let Some(limiter) = &self.list else {
            return Err(ReadError::Failed(CallFailure::new(
                ErrorClass::InvalidRequestException,
                "CONNECT_RPS_LIST is 0: the endpoint does not list users",
            )));
        };
        let mut listing = self.listing.lock().await;
        if listing.is_fresh() {
            return Ok(listing.users.clone());
        }
        if listing.next.is_none() {
            // Start a new listing (the first, or one past its age).
            *listing = Listing {
                next: Some(None),
                ..Listing::default()
            };
        }
        while let Some(token) = listing.next.clone() {
            let page = self
                .paced(
                    limiter,
                    || {
                        self.directory
                            .list_users_page(&self.instance, token.as_deref())
                    },
                    by.min(Instant::now() + WAIT),
                )
                .await?;
            listing.users.extend(page.users);
            listing.next = page.next_token.map(Some);
            if listing.next.is_some() && Instant::now() >= by {
                return Err(ReadError::Busy(1));
            }
        }
        listing.users.sort();
        listing.users.dedup();
        listing.finished_at = Some(Instant::now());
        Ok(listing.users.clone())
    }

    /// `DescribeUser` for each of `ids`, in order, until `by`: the users described (a
    /// user gone since the listing is left out). `Busy` when not even the first could be.
    pub async fn users_by(
        &self,
        ids: &[(String, String)],
        by: Instant,
    ) -> Result<Vec<(UserId, UserRecord)>, ReadError> {
        let mut out = Vec::new();
        for (_, raw) in ids {
            let Ok(id) = UserId::parse(raw) else { continue };
            match self.user_by(&id, by).await {
                Ok(record) => out.push((id, record)),
                Err(ReadError::NotFound) => {}
                Err(ReadError::Busy(s)) if out.is_empty() => return Err(ReadError::Busy(s)),
                Err(ReadError::Busy(_)) => break,
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }
}
