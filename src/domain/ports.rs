//! Narrow ports to the outside systems: the Connect directory, the dead-letter sink and
//! the staleness guard's watermarks. Adapters implement them; the pipeline only sees these.

use std::future::Future;

use chrono::{DateTime, Utc};

use super::change::IdentityInfo;
use super::error::{ErrorClass, Failure};
use super::identity::{InstanceId, UserId};
use super::instance::{IdentityManagement, UpdatePlan};
use super::record::SourceKind;
use super::watermark::FieldWatermarks;

/// A user as `DescribeUser` returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub info: IdentityInfo,
    pub security_profile_ids: Vec<String>,
    /// The user's `Username`, to confirm a resolution (`None` when Connect sent none).
    pub username: Option<String>,
}

/// Users a `ListUsers` page holds at most (the API's largest `MaxResults`).
pub const LIST_PAGE_SIZE: u32 = 1000;

/// One `ListUsers` page: (username, user id) pairs and the token of the next page.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserPage {
    pub users: Vec<(String, String)>,
    pub next_token: Option<String>,
}

/// How far a failed call got: whether Connect may have acted on the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// Connect answered with an error: it did not act.
    Answered,
    /// The request never left (a refused connection, a request that could not be
    /// built): trying again is safe.
    NotSent,
    /// The request may have reached Connect and no answer came (a timeout, a
    /// connection broken after sending, an unreadable reply): the outcome is unknown.
    Unknown,
}

/// One failed attempt of a call: its class (SPEC §3), a message without personal
/// data, and whether Connect may have acted on it. How many attempts a call took is
/// the attempt loop's to count, not the adapter's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallFailure {
    pub failure: Failure,
    pub reach: Reach,
}

impl CallFailure {
    /// A failure Connect answered.
    pub fn new(class: ErrorClass, message: impl Into<String>) -> Self {
        CallFailure {
            failure: Failure::new(class, message),
            reach: Reach::Answered,
        }
    }

    #[must_use]
    pub fn with_reach(mut self, reach: Reach) -> Self {
        self.reach = reach;
        self
    }
}

/// Amazon Connect, as far as this function uses it. Each call is one attempt: the
/// pipeline retries, so that every attempt meets the deadline and the rate limit.
pub trait Directory: Send + Sync {
    /// `DescribeInstance` (the pipeline keeps the answer for the container).
    ///
    /// # Errors
    /// Connect's own errors, classified: `InvalidRequestException`,
    /// `InvalidParameterException`, `ResourceNotFoundException`,
    /// `ThrottlingException`, `InternalServiceException`; anything else `UnknownError`.
    fn identity_management(
        &self,
        instance: &InstanceId,
    ) -> impl Future<Output = Result<IdentityManagement, CallFailure>> + Send;

    /// `SearchUsers` on `Username` (the pipeline caches resolutions).
    ///
    /// # Errors
    /// As for `identity_management`; `ResourceNotFoundException` when no user has
    /// that username.
    fn find_user(
        &self,
        instance: &InstanceId,
        username: &str,
    ) -> impl Future<Output = Result<UserId, CallFailure>> + Send;

    /// One `ListUsers` page of the largest size, after `next_token`.
    ///
    /// # Errors
    /// As for `identity_management`.
    fn list_users_page(
        &self,
        instance: &InstanceId,
        next_token: Option<&str>,
    ) -> impl Future<Output = Result<UserPage, CallFailure>> + Send;

    /// `DescribeUser`.
    ///
    /// # Errors
    /// As for `identity_management`.
    fn describe_user(
        &self,
        instance: &InstanceId,
        user: &UserId,
    ) -> impl Future<Output = Result<UserRecord, CallFailure>> + Send;

    /// `UpdateUserIdentityInfo` with the complete identity of `plan`.
    ///
    /// # Errors
    /// As for `identity_management`.
    fn update_identity(
        &self,
        instance: &InstanceId,
        user: &UserId,
        plan: &UpdatePlan,
    ) -> impl Future<Output = Result<(), CallFailure>> + Send;
}

/// A message for the dead-letter queue of `class` (SPEC §3.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub class: ErrorClass,
    pub message: String,
    pub source: SourceKind,
    pub source_id: String,
    pub failed_at: DateTime<Utc>,
    pub event_id: Option<String>,
    pub instance_id: Option<String>,
    pub user_id: Option<String>,
    /// When the change happened, as SPEC §2.1 found it: a replay keeps it.
    pub occurred_at: Option<DateTime<Utc>>,
    pub attempts: u32,
    pub body: String,
    /// The FIFO message group of the record, for a FIFO dead-letter queue.
    pub group: Option<String>,
}

/// A fresh copy of a deferred SQS record, for its own queue (SPEC §2.4: a deferral
/// counts against nothing). Its `ApproximateReceiveCount` starts again; what the record
/// failed on its earlier copies travels in `own_failures`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requeue {
    /// The queue the record came from (`eventSourceARN`).
    pub queue_arn: String,
    /// The record's body, byte for byte.
    pub body: String,
    /// When the change happened, as SPEC §2.1 found it, so the copy keeps it (it would
    /// otherwise default to the copy's own `SentTimestamp`).
    pub occurred_at: Option<DateTime<Utc>>,
    /// The change's id as found (the document's, else the event's, else the first
    /// copy's `messageId`), so the copy keeps it.
    pub event_id: Option<String>,
    /// The record's own failures so far (the `OwnFailures` attribute).
    pub own_failures: u32,
    /// Seconds before the copy may be received (SQS `DelaySeconds`, at most 900).
    pub delay_seconds: u32,
    /// The longest the send may take, its retries included: until the invocation's
    /// dead-letter-by instant (a dead letter's own budget at the least).
    pub within: std::time::Duration,
}

/// Where records that cannot be applied go.
pub trait DeadLetterSink: Send + Sync {
    /// Sends `copy` to its own queue, so that the deferred record it copies can be
    /// acknowledged.
    ///
    /// # Errors
    /// A message without personal data when the queue did not take the copy; the record
    /// is then handed back instead.
    fn requeue(&self, copy: &Requeue) -> impl Future<Output = Result<(), String>> + Send;

    /// Sends `letter` to the queue of its class.
    ///
    /// # Errors
    /// A message without personal data when the queue did not take the message; the
    /// record must then not be acknowledged.
    fn send(&self, letter: &DeadLetter) -> impl Future<Output = Result<(), String>> + Send;
}

/// A lease on one user's watermarks: while it is held no other container runs a
/// read-modify-write of that user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The item key, `<instance id>#<user id>`.
    pub key: String,
    /// Who holds it: unique to this lease, so a second lease on the same user is
    /// refused even inside one container.
    pub owner: String,
    /// When it lapses on its own, should its holder never release it.
    pub until: DateTime<Utc>,
    /// The intents found in the item, left by leases that were never released (their
    /// holders' release failed, or they died, or kept the lease after an update of
    /// unknown outcome), each with the owner it was written under.
    pub unsettled: Vec<(String, FieldWatermarks)>,
}

/// A lease taken, with the user's watermarks as they stood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leased {
    pub lease: Lease,
    pub watermarks: FieldWatermarks,
    /// Per field, the newest time a lease that was never released may have applied
    /// (the later of `lease.unsettled`), with the `EventId`s of its changes of that
    /// time: no change older than that is applied, since it might overwrite a newer
    /// value whose watermark was never written, unless those changes are judged with it.
    pub unsettled: FieldWatermarks,
}

/// Where the staleness guard keeps each user's watermarks (SPEC §2.5).
///
/// Every failure is `UnknownError` (retryable), and so is a lease that stays held by
/// another invocation: on SQS the user's records are handed back and come again; no
/// change is applied without the guard.
pub trait Watermarks: Send + Sync {
    /// Takes the lease on `user` until `until` and reads the user's watermarks, in one
    /// request; `None` while another lease on the user is running. `intent` (the times
    /// of the changes the holder may apply, per field) is kept with the lease until the
    /// release, so that a lease never released tells the next holder what may have
    /// been applied under it (`Leased::unsettled`).
    ///
    /// # Errors
    /// `UnknownError` when the table is missing or unreachable, or it throttles.
    fn acquire(
        &self,
        instance: &InstanceId,
        user: &UserId,
        until: DateTime<Utc>,
        intent: &FieldWatermarks,
    ) -> impl Future<Output = Result<Option<Leased>, CallFailure>> + Send;

    /// Writes `advanced` (when the update succeeded or found nothing to change; never
    /// backwards) and gives the lease up with its intent, in one request. `None` only
    /// gives it up. The unsettled intents `advanced` covers (every field's watermark
    /// now at or past the intent's time) are removed with it.
    ///
    /// # Errors
    /// `UnknownError` when the lease is no longer held (it lapsed and another
    /// container took it), a watermark would move backwards, or the table is missing,
    /// unreachable or throttling.
    fn release(
        &self,
        lease: &Lease,
        advanced: Option<&FieldWatermarks>,
    ) -> impl Future<Output = Result<(), CallFailure>> + Send;

    /// Notes that the SQS message `message_id`'s delivery `receive` (its
    /// `ApproximateReceiveCount`) only deferred it and handed it back (SPEC §2.4: a
    /// deferral counts against nothing), so that a later delivery does not count that
    /// receive as one of its own failures. Written again, a receive is noted once.
    ///
    /// # Errors
    /// `UnknownError` when the table is missing or unreachable, or it throttles.
    fn note_deferral(
        &self,
        message_id: &str,
        receive: u32,
    ) -> impl Future<Output = Result<(), CallFailure>> + Send;

    /// The receives of the SQS message `message_id` noted as deferrals (none when nothing
    /// was noted), in any order.
    ///
    /// # Errors
    /// `UnknownError` when the table is missing or unreachable, or it throttles.
    fn deferrals(
        &self,
        message_id: &str,
    ) -> impl Future<Output = Result<Vec<u32>, CallFailure>> + Send;
}

/// A boxed future, for ports held as trait objects.
pub type PortFuture<'a, T> = std::pin::Pin<Box<dyn Future<Output = T> + Send + 'a>>;
