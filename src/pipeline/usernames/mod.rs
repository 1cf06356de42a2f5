//! Username resolution, in one home: the container's cache of resolutions, the `ListUsers`
//! index of each instance (`index`), `SearchUsers`, and the confirmation by `DescribeUser`.
//! Cached resolutions first (no call, no limiter token), then per instance the cheaper of
//! the index and one `SearchUsers` per username (`index::choose`), every call through the
//! invocation's `Calls` (its limiters, attempts and deadline: a page that cannot finish in
//! time is not started). A resolution is used only while `DescribeUser` returns the same `Username`;
//! [`Usernames::confirm`] says what to do when it does not. `Resolver` (`resolver.rs`) is
//! the invocation's part that uses it. The `Directory` port only translates calls.
//!
//! May touch: the domain, the `Directory` port, and `calls::Calls` to make its calls.

mod index;
mod resolver;

pub(super) use resolver::{Confirmed, ResolveAgain, Resolver, username_of};

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::{Mutex, MutexGuard};

use futures::{FutureExt, StreamExt, stream};
use lru::LruCache;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::domain::error::{ErrorClass, Failure};
use crate::domain::identity::{InstanceId, UserId};
use crate::domain::ports::{Directory, UserRecord};

use super::calls::{Calls, Op};
use super::outcome::Outcome;
use index::{DirectoryIndex, IndexState, Strategy, choose, freshness};

/// Where a resolution came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Cache,
    Index,
    Search,
}

/// A username's user, still to be confirmed by `DescribeUser`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub user: UserId,
    pub source: Source,
}

/// What `DescribeUser`'s answer means for a resolution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Confirmation {
    /// Same `Username`: use the user.
    Confirmed,
    /// Another `Username`, or no such user: the resolution is forgotten, and this is
    /// the failure it comes to unless a second resolution finds the user.
    Stale(Outcome),
    /// The read failed otherwise, which says nothing about the resolution: decide with
    /// this outcome.
    Refused(Outcome),
}

/// Calls a batch's resolution made, for metrics and the bench.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LookupCalls {
    pub search: u32,
    pub list: u32,
}

#[derive(Default)]
struct Slot {
    /// The last complete listing and when it finished.
    complete: Option<(DirectoryIndex, Instant)>,
    /// A listing cut short by a deadline, and the token of its next page.
    partial: Option<(DirectoryIndex, Option<String>)>,
}

/// The container-lifetime resolutions and username indexes, one index per instance.
pub struct Usernames {
    slots: Mutex<HashMap<InstanceId, Slot>>,
    /// (instance, username) → user id, least recently used out.
    cache: Mutex<LruCache<Key, UserId>>,
    /// `false`: never list, resolve with `SearchUsers` only.
    index_enabled: bool,
    concurrency: usize,
}

type Key = (InstanceId, String);

/// Resolutions cached at most (a few hundred KiB at the most).
const CACHE_SIZE: NonZeroUsize = NonZeroUsize::new(4096).expect("non-zero");

/// A lock that a panic elsewhere cannot poison for the rest of the container: the data
/// behind it (caches, indexes) is whole between any two statements that change it.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl Usernames {
    pub fn new(index_enabled: bool, concurrency: usize) -> Self {
        Usernames {
            slots: Mutex::new(HashMap::new()),
            cache: Mutex::new(LruCache::new(CACHE_SIZE)),
            index_enabled,
            concurrency: concurrency.max(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<InstanceId, Slot>> {
        lock(&self.slots)
    }

    /// The user `username` resolved to, if that resolution is cached: no call needed.
    fn cached(&self, instance: &InstanceId, username: &str) -> Option<UserId> {
        lock(&self.cache)
            .get(&(instance.clone(), username.to_owned()))
            .cloned()
    }

    fn remember(&self, instance: &InstanceId, username: &str, user: &UserId) {
        lock(&self.cache).put((instance.clone(), username.to_owned()), user.clone());
    }

    fn state(&self, instance: &InstanceId) -> IndexState {
        let slots = self.lock();
        let Some(slot) = slots.get(instance) else {
            return IndexState::Unknown;
        };
        let last_pages = slot.complete.as_ref().map(|(i, _)| i.pages());
        match (&slot.partial, &slot.complete) {
            (Some((partial, _)), _) => freshness(Some(partial), Default::default(), last_pages),
            (None, Some((index, at))) => freshness(Some(index), at.elapsed(), last_pages),
            (None, None) => IndexState::Unknown,
        }
    }

    fn candidate(&self, instance: &InstanceId, username: &str) -> Option<UserId> {
        let slots = self.lock();
        let (index, _) = slots.get(instance)?.complete.as_ref()?;
        index.candidate(username)
    }

    /// Resolves every distinct `(instance, username)` of a batch; a username without a
    /// result was not reached before the deadline (`Outcome::Deferred`).
    pub(super) async fn resolve<D: Directory>(
        &self,
        directory: &D,
        calls: &Calls<'_>,
        names: &[Key],
    ) -> (HashMap<Key, Result<Resolved, Outcome>>, LookupCalls) {
        let mut results = HashMap::new();
        let mut lookups = LookupCalls::default();
        let mut unresolved: HashMap<InstanceId, Vec<String>> = HashMap::new();
        for (instance, username) in names {
            let key = (instance.clone(), username.clone());
            if results.contains_key(&key) {
                continue;
            }
            match self.cached(instance, username) {
                Some(user) => {
                    results.insert(
                        key,
                        Ok(Resolved {
                            user,
                            source: Source::Cache,
                        }),
                    );
                }
                None => unresolved
                    .entry(instance.clone())
                    .or_default()
                    .push(username.clone()),
            }
        }
        let mut searches: Vec<Key> = Vec::new();
        for (instance, mut usernames) in unresolved {
            usernames.sort();
            usernames.dedup();
            let strategy = if self.index_enabled {
                choose(usernames.len(), self.state(&instance))
            } else {
                Strategy::Search
            };
            // A fresh index (`pages: 0`) is read as it is.
            if let Strategy::Index { pages } = strategy
                && pages > 0
            {
                lookups.list += self.list(directory, calls, &instance, pages).await;
            }
            for username in usernames {
                match self.candidate(&instance, &username) {
                    Some(user) => {
                        results.insert(
                            (instance.clone(), username),
                            Ok(Resolved {
                                user,
                                source: Source::Index,
                            }),
                        );
                    }
                    None => searches.push((instance.clone(), username)),
                }
            }
        }
        lookups.search += searches.len() as u32;
        let searched: Vec<(Key, Result<Resolved, Outcome>)> = stream::iter(searches)
            // Boxed: the searches' opaque futures inside the stream trip the compiler's
            // proof that the invocation's future is `Send` (higher-ranked lifetimes).
            .map(|key| {
                async move {
                    let result = self.search(directory, calls, &key.0, &key.1).await;
                    (key, result)
                }
                .boxed()
            })
            .buffer_unordered(self.concurrency)
            .collect()
            .await;
        results.extend(searched);
        (results, lookups)
    }

    async fn search<D: Directory>(
        &self,
        directory: &D,
        calls: &Calls<'_>,
        instance: &InstanceId,
        username: &str,
    ) -> Result<Resolved, Outcome> {
        let user = calls
            .call(Op::SearchUsers, || directory.find_user(instance, username))
            .await?;
        // Kept before `DescribeUser` confirms it (and dropped if it does not): a record
        // handed back before its user was read costs no second search.
        self.remember(instance, username, &user);
        Ok(Resolved {
            user,
            source: Source::Search,
        })
    }

    /// Lists `instance` (or goes on with a listing cut short) page by page, at most
    /// `budget` pages, each through `calls`; returns the pages read. A listing that
    /// ends replaces the index; one the budget or the deadline cuts short is kept for a
    /// later batch; a failed page drops it (the batch then searches).
    async fn list<D: Directory>(
        &self,
        directory: &D,
        calls: &Calls<'_>,
        instance: &InstanceId,
        budget: u32,
    ) -> u32 {
        let (mut index, mut token) = self
            .lock()
            .get_mut(instance)
            .and_then(|s| s.partial.take())
            .unwrap_or_default();
        let mut read = 0;
        loop {
            if index.pages() > 0 && token.is_none() {
                break;
            }
            if read == budget {
                self.lock().entry(instance.clone()).or_default().partial = Some((index, token));
                return read;
            }
            let after = token.clone();
            let page = calls
                .call(Op::ListUsers, || {
                    directory.list_users_page(instance, after.as_deref())
                })
                .await;
            match page {
                Ok(page) => {
                    read += 1;
                    index.add_page(page.users.iter().map(|(u, i)| (u.as_str(), i.as_str())));
                    token = page.next_token;
                }
                Err(Outcome::Deferred) => {
                    info!(instance_id = %instance, pages = index.pages(), "username index listing paused by the deadline");
                    self.lock().entry(instance.clone()).or_default().partial = Some((index, token));
                    return read;
                }
                Err(failed) => {
                    let class = match &failed {
                        Outcome::Failed(f, _) => f.class,
                        _ => ErrorClass::UnknownError,
                    };
                    warn!(instance_id = %instance, error_class = %class, "username index listing failed; resolving with SearchUsers");
                    return read;
                }
            }
        }
        index.finish();
        info!(instance_id = %instance, users = index.len(), pages = index.pages(), bytes = index.heap_bytes(), "username index listed");
        self.lock().entry(instance.clone()).or_default().complete = Some((index, Instant::now()));
        read
    }

    /// Judges `DescribeUser`'s answer for `user`, resolved from `username`.
    pub(super) fn confirm(
        &self,
        instance: &InstanceId,
        username: &str,
        user: &UserId,
        described: Result<&UserRecord, &Outcome>,
    ) -> Confirmation {
        let verdict = match described {
            Ok(record) if record.username.as_deref() == Some(username) => {
                self.remember(instance, username, user);
                return Confirmation::Confirmed;
            }
            Ok(_) => Outcome::Failed(
                Failure::new(
                    ErrorClass::ResourceNotFoundException,
                    "the user found by Username no longer has that Username",
                ),
                1,
            ),
            Err(outcome @ Outcome::Failed(f, _))
                if f.class == ErrorClass::ResourceNotFoundException =>
            {
                outcome.clone()
            }
            // Any other failure says nothing about the resolution: decide with it.
            Err(outcome) => return Confirmation::Refused(outcome.clone()),
        };
        self.forget(instance, username);
        Confirmation::Stale(verdict)
    }

    /// Resolves `username` once more with `SearchUsers` after its resolution was refused.
    pub(super) async fn resolve_again<D: Directory>(
        &self,
        directory: &D,
        calls: &Calls<'_>,
        instance: &InstanceId,
        username: &str,
    ) -> Result<Resolved, Outcome> {
        self.forget(instance, username);
        self.search(directory, calls, instance, username).await
    }

    fn forget(&self, instance: &InstanceId, username: &str) {
        lock(&self.cache).pop(&(instance.clone(), username.to_owned()));
        if let Some(slot) = self.lock().get_mut(instance)
            && let Some((index, _)) = slot.complete.as_mut()
        {
            index.forget(username);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Duration;

    use super::*;
    use crate::domain::change::IdentityInfo;
    use crate::domain::instance::{IdentityManagement, UpdatePlan};
    use crate::domain::ports::{CallFailure, UserPage};
    use crate::pipeline::budget::Budget;
    use crate::pipeline::calls::RateLimits;
    use index::INDEX_MAX_AGE;

    const INSTANCE: &str = "11111111-2222-3333-4444-555555555555";

    fn instance() -> InstanceId {
        InstanceId::parse(INSTANCE).unwrap()
    }

    fn uuid(i: usize) -> String {
        format!("{i:08x}-0000-4000-8000-{i:012x}")
    }

    /// A directory of `users` (username → id) that counts its calls; each `ListUsers`
    /// page takes `page_time`.
    #[derive(Default)]
    struct Fake {
        users: Mutex<Vec<(String, String)>>,
        search: AtomicU32,
        list: AtomicU32,
        page_time: Duration,
    }

    impl Fake {
        fn of(n: usize) -> Self {
            let fake = Fake::default();
            *fake.users.lock().unwrap() = (0..n).map(|i| (format!("agent{i}"), uuid(i))).collect();
            fake
        }
    }

    impl Directory for Fake {
        async fn identity_management(
            &self,
            _: &InstanceId,
        ) -> Result<IdentityManagement, CallFailure> {
            Ok(IdentityManagement::ConnectManaged)
        }

        async fn find_user(&self, _: &InstanceId, username: &str) -> Result<UserId, CallFailure> {
            self.search.fetch_add(1, Ordering::SeqCst);
            let users = self.users.lock().unwrap();
            users
                .iter()
                .find(|(u, _)| u == username)
                .map(|(_, id)| UserId::parse(id).unwrap())
                .ok_or_else(|| CallFailure::new(ErrorClass::ResourceNotFoundException, "no user"))
        }

        async fn list_users_page(
            &self,
            _: &InstanceId,
            next_token: Option<&str>,
        ) -> Result<UserPage, CallFailure> {
            self.list.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(self.page_time).await;
            let users = self.users.lock().unwrap();
            let offset: usize = next_token.map_or(0, |t| t.parse().unwrap());
            let end = (offset + 1000).min(users.len());
            Ok(UserPage {
                users: users[offset..end].to_vec(),
                next_token: (end < users.len()).then(|| end.to_string()),
            })
        }

        async fn describe_user(
            &self,
            _: &InstanceId,
            _: &UserId,
        ) -> Result<UserRecord, CallFailure> {
            unreachable!("resolution never describes")
        }

        async fn update_identity(
            &self,
            _: &InstanceId,
            _: &UserId,
            _: &UpdatePlan,
        ) -> Result<(), CallFailure> {
            unreachable!("resolution never updates")
        }
    }

    /// One invocation's calls as the pipeline makes them: every operation at 1,000 a
    /// second, and attempts that may start until `last_attempt`.
    struct Invocation {
        limits: RateLimits,
        budget: Budget,
    }

    impl Invocation {
        /// Attempts may start for an hour: no call is deferred.
        fn open() -> Self {
            Self::lasting(Duration::from_secs(3600))
        }

        /// Attempts may start for `window` from now, each lasting at most 5 s.
        fn lasting(window: Duration) -> Self {
            Self::until(Instant::now() + window)
        }

        /// No attempt may start: every call is deferred.
        fn closed() -> Self {
            let now = Instant::now();
            Self::until(now.checked_sub(Duration::from_secs(1)).unwrap_or(now))
        }

        fn until(last_attempt: Instant) -> Self {
            let attempt = Duration::from_secs(5);
            let cutoff = last_attempt + attempt;
            Invocation {
                limits: RateLimits::new(1000.0, 1000.0, 1000.0).with_list(1000.0),
                budget: Budget {
                    started: Instant::now(),
                    deadline: cutoff + Duration::from_secs(2),
                    cutoff,
                    last_attempt,
                    dead_letter_by: cutoff,
                    release_by: cutoff + Duration::from_secs(1),
                    note_by: cutoff + Duration::from_millis(1500),
                    attempt,
                    dead_letter_send: Duration::from_secs(1),
                },
            }
        }

        fn calls(&self) -> Calls<'_> {
            Calls::new(&self.limits, &self.budget)
        }
    }

    /// Connect calls made (each one limiter token), every operation together.
    fn tokens(calls: &Calls<'_>) -> u32 {
        let made = calls.made();
        made.describe_instance
            + made.search_users
            + made.describe_user
            + made.update_user_identity_info
            + made.list_users
    }

    fn names(range: std::ops::Range<usize>) -> Vec<Key> {
        range.map(|i| (instance(), format!("agent{i}"))).collect()
    }

    fn record(username: &str) -> UserRecord {
        UserRecord {
            info: IdentityInfo::default(),
            security_profile_ids: vec![],
            username: Some(username.to_owned()),
        }
    }

    #[tokio::test]
    async fn a_batch_larger_than_the_instances_pages_lists_it_instead_of_searching() {
        let fake = Fake::of(2500);
        let usernames = Usernames::new(true, 4);
        let invocation = Invocation::open();
        let gate = invocation.calls();
        let (found, calls) = usernames.resolve(&fake, &gate, &names(0..200)).await;
        assert_eq!(calls, LookupCalls { search: 0, list: 3 });
        assert_eq!(fake.list.load(Ordering::SeqCst), 3);
        assert_eq!(fake.search.load(Ordering::SeqCst), 0);
        assert_eq!(tokens(&gate), 3);
        for i in 0..200 {
            let r = found[&(instance(), format!("agent{i}"))].as_ref().unwrap();
            assert_eq!(r.user.as_str(), uuid(i));
            assert_eq!(r.source, Source::Index);
        }
    }

    #[tokio::test]
    async fn a_probe_that_does_not_end_searches_and_the_next_batch_goes_on_listing() {
        let fake = Fake::of(2500);
        let usernames = Usernames::new(true, 4);
        // Three names, an instance of unknown size: at most two pages, then search.
        let (found, calls) = usernames
            .resolve(&fake, &Invocation::open().calls(), &names(0..3))
            .await;
        assert_eq!(calls, LookupCalls { search: 3, list: 2 });
        assert!(
            found
                .values()
                .all(|r| r.as_ref().unwrap().source == Source::Search)
        );
        // The next batch of three goes on from page three, which is the last.
        let (found, calls) = usernames
            .resolve(&fake, &Invocation::open().calls(), &names(10..13))
            .await;
        assert_eq!(calls, LookupCalls { search: 0, list: 1 });
        assert!(
            found
                .values()
                .all(|r| r.as_ref().unwrap().source == Source::Index)
        );
    }

    #[tokio::test]
    async fn a_single_username_is_searched_without_listing() {
        let fake = Fake::of(2500);
        let usernames = Usernames::new(true, 4);
        let (_, calls) = usernames
            .resolve(&fake, &Invocation::open().calls(), &names(0..1))
            .await;
        assert_eq!(calls, LookupCalls { search: 1, list: 0 });
    }

    #[tokio::test]
    async fn cached_usernames_take_no_call_and_no_token() {
        let fake = Fake::of(10);
        // Searched once (the adapter caches a search's answer).
        let usernames = Usernames::new(false, 4);
        usernames
            .resolve(&fake, &Invocation::open().calls(), &names(0..2))
            .await;
        let invocation = Invocation::closed();
        let gate = invocation.calls();
        let (found, calls) = usernames.resolve(&fake, &gate, &names(0..2)).await;
        assert_eq!(calls, LookupCalls::default());
        assert_eq!(tokens(&gate), 0);
        assert!(
            found
                .values()
                .all(|r| r.as_ref().unwrap().source == Source::Cache)
        );
    }

    #[tokio::test]
    async fn a_miss_on_a_fresh_index_is_searched_without_listing_again() {
        let fake = Fake::of(100);
        let usernames = Usernames::new(true, 4);
        usernames
            .resolve(&fake, &Invocation::open().calls(), &names(0..20))
            .await;
        assert_eq!(fake.list.load(Ordering::SeqCst), 1);
        fake.users
            .lock()
            .unwrap()
            .push(("newcomer".into(), uuid(9999)));
        let mut batch = names(20..40);
        batch.push((instance(), "newcomer".into()));
        let (found, calls) = usernames
            .resolve(&fake, &Invocation::open().calls(), &batch)
            .await;
        assert_eq!(calls, LookupCalls { search: 1, list: 0 });
        assert_eq!(
            found[&(instance(), "newcomer".into())]
                .as_ref()
                .unwrap()
                .user
                .as_str(),
            uuid(9999)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_stale_index_is_listed_again_only_when_that_is_cheaper() {
        let fake = Fake::of(1500);
        let usernames = Usernames::new(true, 4);
        usernames
            .resolve(&fake, &Invocation::open().calls(), &names(0..20))
            .await;
        assert_eq!(fake.list.load(Ordering::SeqCst), 2);
        tokio::time::advance(INDEX_MAX_AGE + Duration::from_secs(1)).await;
        fake.users.lock().unwrap().push(("late".into(), uuid(7777)));
        // Two misses against a two-page instance: searching is cheaper.
        let two = vec![
            (instance(), "late".to_owned()),
            (instance(), "nobody".to_owned()),
        ];
        let (_, calls) = usernames
            .resolve(&fake, &Invocation::open().calls(), &two)
            .await;
        assert_eq!(calls, LookupCalls { search: 2, list: 0 });
        // Three misses: listing the two pages again is cheaper.
        let three: Vec<Key> = ["x", "y", "z"]
            .iter()
            .map(|u| (instance(), (*u).to_owned()))
            .collect();
        let (_, calls) = usernames
            .resolve(&fake, &Invocation::open().calls(), &three)
            .await;
        assert_eq!(calls.list, 2);
        assert_eq!(fake.list.load(Ordering::SeqCst), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn a_listing_the_deadline_cuts_short_goes_on_in_the_next_batch() {
        let fake = Fake {
            page_time: Duration::from_secs(1),
            ..Fake::of(5000)
        };
        let usernames = Usernames::new(true, 4);
        // Two pages fit (they start at 0 s and 1 s, the last start at 1.5 s); the rest of
        // the batch is not reached.
        let (found, calls) = usernames
            .resolve(
                &fake,
                &Invocation::lasting(Duration::from_millis(1500)).calls(),
                &names(0..50),
            )
            .await;
        assert_eq!(calls.list, 2);
        assert!(found.values().all(|r| matches!(r, Err(Outcome::Deferred))));
        let (found, calls) = usernames
            .resolve(&fake, &Invocation::open().calls(), &names(0..50))
            .await;
        // Three pages left of five, not five again.
        assert_eq!(calls, LookupCalls { search: 0, list: 3 });
        assert_eq!(fake.list.load(Ordering::SeqCst), 5);
        assert!(
            found
                .values()
                .all(|r| r.as_ref().unwrap().source == Source::Index)
        );
    }

    #[tokio::test]
    async fn with_the_index_off_every_username_is_searched() {
        let fake = Fake::of(10);
        let usernames = Usernames::new(false, 4);
        let (_, calls) = usernames
            .resolve(&fake, &Invocation::open().calls(), &names(0..10))
            .await;
        assert_eq!(
            calls,
            LookupCalls {
                search: 10,
                list: 0
            }
        );
    }

    #[tokio::test]
    async fn a_username_on_another_account_is_resolved_once_more_then_refused() {
        let fake = Fake::of(100);
        let usernames = Usernames::new(true, 4);
        let (found, _) = usernames
            .resolve(&fake, &Invocation::open().calls(), &names(0..20))
            .await;
        let key = (instance(), "agent3".to_owned());
        let resolved = found[&key].as_ref().unwrap().clone();
        usernames.remember(&key.0, &key.1, &resolved.user);
        // DescribeUser says that id is now `agent3.old`.
        let verdict = usernames.confirm(&key.0, &key.1, &resolved.user, Ok(&record("agent3.old")));
        assert!(matches!(verdict, Confirmation::Stale(_)));
        assert!(usernames.cached(&key.0, &key.1).is_none());
        assert!(usernames.candidate(&key.0, &key.1).is_none());
        // `agent3` now belongs to a new account.
        fake.users.lock().unwrap()[3] = ("agent3".into(), uuid(4242));
        let again = usernames
            .resolve_again(&fake, &Invocation::open().calls(), &key.0, &key.1)
            .await
            .unwrap();
        assert_eq!(again.user.as_str(), uuid(4242));
        assert_eq!(
            usernames.confirm(&key.0, &key.1, &again.user, Ok(&record("agent3"))),
            Confirmation::Confirmed
        );
        assert_eq!(
            usernames.cached(&key.0, &key.1).unwrap().as_str(),
            uuid(4242)
        );
        // A second refusal decides.
        let refused = usernames.confirm(&key.0, &key.1, &again.user, Ok(&record("someone")));
        assert!(
            matches!(refused, Confirmation::Stale(Outcome::Failed(f, _)) if f.class == ErrorClass::ResourceNotFoundException)
        );
    }

    #[tokio::test]
    async fn a_deleted_user_is_resolved_once_more_and_other_failures_decide_at_once() {
        let usernames = Usernames::new(true, 4);
        let key = (instance(), "agent1".to_owned());
        let user = UserId::parse(&uuid(1)).unwrap();
        let gone = Outcome::Failed(
            Failure::new(ErrorClass::ResourceNotFoundException, "gone"),
            1,
        );
        assert_eq!(
            usernames.confirm(&key.0, &key.1, &user, Err(&gone)),
            Confirmation::Stale(gone.clone())
        );
        let throttled = Outcome::Failed(
            Failure::new(ErrorClass::ThrottlingException, "slow down"),
            1,
        );
        assert_eq!(
            usernames.confirm(&key.0, &key.1, &user, Err(&throttled)),
            Confirmation::Refused(throttled)
        );
    }

    #[test]
    fn a_resolution_is_cached_per_instance_and_username() {
        let usernames = Usernames::new(true, 4);
        let other = InstanceId::parse("99999999-2222-3333-4444-555555555555").unwrap();
        let user = UserId::parse(&uuid(1)).unwrap();
        usernames.remember(&instance(), "agent1", &user);
        assert_eq!(usernames.cached(&instance(), "agent1"), Some(user));
        assert_eq!(usernames.cached(&instance(), "agent2"), None);
        assert_eq!(usernames.cached(&other, "agent1"), None);
        usernames.forget(&instance(), "agent1");
        assert_eq!(usernames.cached(&instance(), "agent1"), None);
    }
}
