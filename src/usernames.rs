//! Username resolution for a batch, and its confirmation: cached resolutions first (no call,
//! no limiter token), then per instance the cheaper of a `ListUsers` index and one
//! `SearchUsers` per username (`domain::directory_index::choose`), every call through the
//! caller's gate (its limiter and its deadline: a page that cannot finish in time is not
//! started). A resolution is used only while `DescribeUser` returns the same `Username`;
//! [`Usernames::confirm`] says what to do when it does not.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;

use futures::{StreamExt, stream};
use tokio::time::Instant;
use tracing::{info, warn};

use crate::domain::directory_index::{DirectoryIndex, IndexState, Strategy, choose, freshness};
use crate::domain::error::ErrorClass;
use crate::domain::identity::{InstanceId, UserId};
use crate::domain::ports::{CallFailure, Directory, UserRecord};

/// The look-up calls, each with its own limiter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    SearchUsers,
    ListUsers,
}

/// Why a call was not made or did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Halt {
    Failed(CallFailure),
    /// The deadline left no room for the call.
    Deferred,
}

/// Runs a look-up call under its operation's limiter and the invocation's deadline.
pub trait Gate: Sync {
    fn call<T: Send>(
        &self,
        op: Lookup,
        call: impl Future<Output = Result<T, CallFailure>> + Send,
    ) -> impl Future<Output = Result<T, Halt>> + Send;
}

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
    /// Another `Username`, or no such user: resolve once more (the entry is forgotten).
    ResolveAgain,
    /// Already resolved again and still not that user: decide with this failure.
    Refused(CallFailure),
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

/// The container-lifetime username indexes, one per instance.
pub struct Usernames {
    slots: Mutex<HashMap<InstanceId, Slot>>,
    /// `false`: never list, resolve with `SearchUsers` only.
    index_enabled: bool,
    concurrency: usize,
}

type Key = (InstanceId, String);

impl Usernames {
    pub fn new(index_enabled: bool, concurrency: usize) -> Self {
        Usernames {
            slots: Mutex::new(HashMap::new()),
            index_enabled,
            concurrency: concurrency.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<InstanceId, Slot>> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
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
    /// result was not reached before the deadline (`Halt::Deferred`).
    pub async fn resolve<D: Directory, G: Gate>(
        &self,
        directory: &D,
        gate: &G,
        names: &[Key],
    ) -> (HashMap<Key, Result<Resolved, Halt>>, LookupCalls) {
        let mut results = HashMap::new();
        let mut calls = LookupCalls::default();
        let mut unresolved: HashMap<InstanceId, Vec<String>> = HashMap::new();
        for (instance, username) in names {
            let key = (instance.clone(), username.clone());
            if results.contains_key(&key) {
                continue;
            }
            match directory.cached_user(instance, username) {
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
            if let Strategy::Index { .. } = strategy {
                calls.list += self.list(directory, gate, &instance).await;
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
        calls.search += searches.len() as u32;
        let searched: Vec<(Key, Result<Resolved, Halt>)> = stream::iter(searches)
            .map(|key| async move {
                let result = self.search(directory, gate, &key.0, &key.1).await;
                (key, result)
            })
            .buffer_unordered(self.concurrency)
            .collect()
            .await;
        results.extend(searched);
        (results, calls)
    }

    async fn search<D: Directory, G: Gate>(
        &self,
        directory: &D,
        gate: &G,
        instance: &InstanceId,
        username: &str,
    ) -> Result<Resolved, Halt> {
        let user = gate
            .call(Lookup::SearchUsers, directory.find_user(instance, username))
            .await?;
        Ok(Resolved {
            user,
            source: Source::Search,
        })
    }

    /// Lists `instance` (or goes on with a listing a deadline cut short) page by page,
    /// each page through the gate; returns the pages read. A failed page ends the listing
    /// (the batch then searches); a deferred one keeps what was read for the next batch.
    async fn list<D: Directory, G: Gate>(
        &self,
        directory: &D,
        gate: &G,
        instance: &InstanceId,
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
            let page = gate
                .call(
                    Lookup::ListUsers,
                    directory.list_users_page(instance, token.as_deref()),
                )
                .await;
            match page {
                Ok(page) => {
                    read += 1;
                    index.add_page(page.users.iter().map(|(u, i)| (u.as_str(), i.as_str())));
                    token = page.next_token;
                }
                Err(Halt::Deferred) => {
                    info!(instance_id = %instance, pages = index.pages(), "username index listing paused by the deadline");
                    self.lock().entry(instance.clone()).or_default().partial = Some((index, token));
                    return read;
                }
                Err(Halt::Failed(f)) => {
                    warn!(instance_id = %instance, error_class = %f.failure.class, "username index listing failed; resolving with SearchUsers");
                    return read;
                }
            }
        }
        index.finish();
        info!(instance_id = %instance, users = index.len(), pages = index.pages(), bytes = index.heap_bytes(), "username index listed");
        self.lock().entry(instance.clone()).or_default().complete = Some((index, Instant::now()));
        read
    }

    /// Judges `DescribeUser`'s answer for a user resolved from `username`. `again` says
    /// whether this resolution is already the second one.
    pub fn confirm<D: Directory>(
        &self,
        directory: &D,
        instance: &InstanceId,
        username: &str,
        resolved: &Resolved,
        described: Result<&UserRecord, &CallFailure>,
        again: bool,
    ) -> Confirmation {
        let verdict = match described {
            Ok(record) if record.username.as_deref() == Some(username) => {
                directory.cache_user(instance, username, &resolved.user);
                return Confirmation::Confirmed;
            }
            Ok(_) => CallFailure::new(
                ErrorClass::ResourceNotFoundException,
                "the user found by Username no longer has that Username",
                1,
            ),
            Err(f) if f.failure.class == ErrorClass::ResourceNotFoundException => f.clone(),
            // Any other failure says nothing about the resolution: decide with it.
            Err(f) => return Confirmation::Refused(f.clone()),
        };
        self.forget(directory, instance, username);
        if again {
            Confirmation::Refused(verdict)
        } else {
            Confirmation::ResolveAgain
        }
    }

    /// Resolves `username` once more with `SearchUsers` after its resolution was refused.
    pub async fn resolve_again<D: Directory, G: Gate>(
        &self,
        directory: &D,
        gate: &G,
        instance: &InstanceId,
        username: &str,
    ) -> Result<Resolved, Halt> {
        self.forget(directory, instance, username);
        self.search(directory, gate, instance, username).await
    }

    fn forget<D: Directory>(&self, directory: &D, instance: &InstanceId, username: &str) {
        directory.forget_user(instance, username);
        if let Some(slot) = self.lock().get_mut(instance)
            && let Some((index, _)) = slot.complete.as_mut()
        {
            index.forget(username);
        }
    }
}
