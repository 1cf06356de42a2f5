//! The username → user id index of one instance, built from `ListUsers` pages, and the two
//! decisions around it: which costs fewer calls for a batch, the index or one `SearchUsers`
//! per username, and when an index is fresh enough to use or must be listed again.
//!
//! Memory: an entry is a 64-bit hash of the username and the user id packed in 16 bytes
//! (Connect's user ids are UUIDs), 24 bytes a user; 50,000 users take 1.2 MB. Ids that are
//! not UUIDs (never seen on Connect) cost their length plus 40 bytes. The username itself is
//! not kept: a hit is only a candidate, which `DescribeUser` must confirm by returning that
//! exact `Username` before the id is used, so a hash collision can at worst cost one more
//! look-up, never the wrong account. Two usernames of one listing that share a hash are
//! both left out (looked up with `SearchUsers`).

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::time::Duration;

use crate::domain::identity::UserId;

/// Bytes an index entry takes (UUID user ids).
pub const BYTES_PER_USER: usize = std::mem::size_of::<(u64, [u8; 16])>();

/// How long a complete listing is trusted for hits and for "a miss is a new user, search
/// for it" before a batch that needs the index lists the instance again.
pub const INDEX_MAX_AGE: Duration = Duration::from_secs(15 * 60);

/// A listing in progress or done: the entries read so far.
#[derive(Debug, Default, Clone)]
pub struct DirectoryIndex {
    /// (username hash, UUID bytes), sorted by hash once complete.
    uuids: Vec<(u64, [u8; 16])>,
    /// (username hash, id) for ids that are not UUIDs.
    others: Vec<(u64, Box<str>)>,
    /// Hashes seen for more than one username of the listing.
    ambiguous: Vec<u64>,
    pages: u32,
    complete: bool,
}

fn key(username: &str) -> u64 {
    // A fixed-key SipHash: stable within the process, which is all the index needs.
    let mut h = DefaultHasher::new();
    username.hash(&mut h);
    h.finish()
}

/// `8-4-4-4-12` lowercase hex → 16 bytes; anything else `None`.
fn pack_uuid(id: &str) -> Option<[u8; 16]> {
    let b = id.as_bytes();
    if b.len() != 36 || [8, 13, 18, 23].iter().any(|&i| b[i] != b'-') {
        return None;
    }
    let mut out = [0u8; 16];
    let mut n = 0;
    let mut hex = id.bytes().filter(|&c| c != b'-');
    while n < 16 {
        let hi = hex_digit(hex.next()?)?;
        let lo = hex_digit(hex.next()?)?;
        out[n] = hi << 4 | lo;
        n += 1;
    }
    Some(out)
}

fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

fn unpack_uuid(b: &[u8; 16]) -> String {
    let mut s = String::with_capacity(36);
    for (i, byte) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            s.push('-');
        }
        s.push_str(&format!("{byte:02x}"));
    }
    s
}

impl DirectoryIndex {
    /// Adds one `ListUsers` page (username, id pairs); ids that are not user ids are skipped.
    pub fn add_page<'a>(&mut self, users: impl IntoIterator<Item = (&'a str, &'a str)>) {
        for (username, id) in users {
            let k = key(username);
            match pack_uuid(id) {
                Some(packed) => self.uuids.push((k, packed)),
                None if UserId::parse(id).is_ok() => self.others.push((k, id.into())),
                None => {}
            }
        }
        self.pages += 1;
    }

    /// The listing reached its last page: sorts, drops colliding hashes, frees the slack.
    pub fn finish(&mut self) {
        self.uuids.sort_unstable_by_key(|e| e.0);
        self.others.sort_unstable_by_key(|e| e.0);
        let mut keys: Vec<u64> = self
            .uuids
            .iter()
            .map(|e| e.0)
            .chain(self.others.iter().map(|e| e.0))
            .collect();
        keys.sort_unstable();
        let mut ambiguous: Vec<u64> = keys
            .windows(2)
            .filter(|w| w[0] == w[1])
            .map(|w| w[0])
            .collect();
        ambiguous.dedup();
        drop(keys);
        self.uuids
            .retain(|e| ambiguous.binary_search(&e.0).is_err());
        self.others
            .retain(|e| ambiguous.binary_search(&e.0).is_err());
        self.uuids.shrink_to_fit();
        self.others.shrink_to_fit();
        ambiguous.shrink_to_fit();
        self.ambiguous = ambiguous;
        self.complete = true;
    }

    pub fn is_complete(&self) -> bool {
        self.complete
    }

    /// Pages read so far (all of them once complete).
    pub fn pages(&self) -> u32 {
        self.pages
    }

    /// Users held.
    pub fn len(&self) -> usize {
        self.uuids.len() + self.others.len()
    }

    /// Heap bytes the entries take.
    pub fn heap_bytes(&self) -> usize {
        self.uuids.capacity() * BYTES_PER_USER
            + self
                .others
                .iter()
                .map(|e| e.1.len() + std::mem::size_of::<(u64, Box<str>)>())
                .sum::<usize>()
            + self.ambiguous.capacity() * 8
    }

    /// The candidate id for `username`, to be confirmed by `DescribeUser`. `None` before
    /// the listing is complete, or when the listing did not hold that username.
    pub fn candidate(&self, username: &str) -> Option<UserId> {
        if !self.complete {
            return None;
        }
        let k = key(username);
        if let Ok(i) = self.uuids.binary_search_by_key(&k, |e| e.0) {
            return UserId::parse(&unpack_uuid(&self.uuids[i].1)).ok();
        }
        let i = self.others.binary_search_by_key(&k, |e| e.0).ok()?;
        UserId::parse(&self.others[i].1).ok()
    }

    /// Drops `username`'s entry (its candidate was refused by `DescribeUser`).
    pub fn forget(&mut self, username: &str) {
        let k = key(username);
        self.uuids.retain(|e| e.0 != k);
        self.others.retain(|e| e.0 != k);
    }
}

/// Where a batch's unresolved usernames are looked up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// One `SearchUsers` per username.
    Search,
    /// From the index, listing at most `pages` more `ListUsers` pages first (0: a fresh
    /// index is read as it is). Misses, and every username when the listing did not end
    /// within `pages`, go to `SearchUsers`.
    Index { pages: u32 },
}

/// The state of an instance's index as a batch finds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexState {
    /// Never listed (or the listing was dropped).
    Unknown,
    /// Complete and younger than [`INDEX_MAX_AGE`]: reading it costs no call.
    Fresh,
    /// Complete but older than [`INDEX_MAX_AGE`], of `pages` pages.
    Stale { pages: u32 },
    /// A listing cut short by a deadline, `done` pages read, of `pages` known from the last
    /// complete listing (if any).
    Partial { done: u32, pages: Option<u32> },
}

/// The state of an index listed `age` ago (`None`: never completed).
pub fn freshness(
    index: Option<&DirectoryIndex>,
    age: Duration,
    last_pages: Option<u32>,
) -> IndexState {
    match index {
        None => match last_pages {
            Some(pages) => IndexState::Stale { pages },
            None => IndexState::Unknown,
        },
        Some(i) if i.is_complete() && age < INDEX_MAX_AGE => IndexState::Fresh,
        Some(i) if i.is_complete() => IndexState::Stale { pages: i.pages() },
        Some(i) => IndexState::Partial {
            done: i.pages(),
            pages: last_pages,
        },
    }
}

/// The cheaper way, in calls, to resolve `unresolved` usernames (cache misses) of one
/// instance. Ties go to `SearchUsers` (no index to keep).
/// - A fresh index costs nothing.
/// - An instance of known size is listed (again) when its pages are fewer than the
///   searches: a stale index only when a batch needs it, a listing a deadline cut short
///   only for the pages left.
/// - An instance of unknown size is probed: at most `unresolved − 1` pages, so that if the
///   listing ends within them the batch cost fewer calls than searching, and if not, the
///   batch costs less than twice the searches and the listing goes on with a later batch.
///   A batch of one username never lists.
pub fn choose(unresolved: usize, state: IndexState) -> Strategy {
    let unresolved = u32::try_from(unresolved).unwrap_or(u32::MAX);
    if unresolved == 0 {
        return Strategy::Search;
    }
    let known = match state {
        IndexState::Fresh => return Strategy::Index { pages: 0 },
        IndexState::Unknown | IndexState::Partial { pages: None, .. } => None,
        IndexState::Stale { pages } => Some(pages.max(1)),
        IndexState::Partial {
            done,
            pages: Some(pages),
        } => Some(pages.saturating_sub(done).max(1)),
    };
    match known {
        Some(pages) if unresolved > pages => Strategy::Index { pages },
        Some(_) => Strategy::Search,
        None if unresolved > 1 => Strategy::Index {
            pages: unresolved - 1,
        },
        None => Strategy::Search,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ports::LIST_PAGE_SIZE;

    fn uuid(i: u32) -> String {
        format!("{i:08x}-0000-4000-8000-{i:012x}")
    }

    fn index_of(n: u32) -> DirectoryIndex {
        let mut index = DirectoryIndex::default();
        let names: Vec<(String, String)> = (0..n).map(|i| (format!("agent{i}"), uuid(i))).collect();
        for page in names.chunks(LIST_PAGE_SIZE as usize) {
            index.add_page(page.iter().map(|(u, id)| (u.as_str(), id.as_str())));
        }
        index.finish();
        index
    }

    #[test]
    fn a_complete_index_gives_each_usernames_id_and_nothing_for_others() {
        let index = index_of(2500);
        assert_eq!(index.pages(), 3);
        assert_eq!(index.len(), 2500);
        assert_eq!(index.candidate("agent1234").unwrap().as_str(), uuid(1234));
        assert_eq!(index.candidate("agent0").unwrap().as_str(), uuid(0));
        assert!(index.candidate("agent2500").is_none());
        // Exact match only, as SearchUsers is read.
        assert!(index.candidate("Agent1234").is_none());
    }

    #[test]
    fn an_index_still_being_listed_answers_nothing() {
        let mut index = DirectoryIndex::default();
        index.add_page([("jdoe", uuid(1).as_str())]);
        assert!(index.candidate("jdoe").is_none());
        index.finish();
        assert_eq!(index.candidate("jdoe").unwrap().as_str(), uuid(1));
    }

    #[test]
    fn ids_that_are_not_uuids_are_kept_and_ids_that_are_not_ids_are_skipped() {
        let mut index = DirectoryIndex::default();
        index.add_page([
            ("a", "u-jdoe"),
            ("b", "not an id/"),
            ("c", &uuid(7).to_uppercase()),
        ]);
        index.finish();
        assert_eq!(index.candidate("a").unwrap().as_str(), "u-jdoe");
        assert!(index.candidate("b").is_none());
        assert_eq!(
            index.candidate("c").unwrap().as_str(),
            uuid(7).to_uppercase()
        );
    }

    #[test]
    fn a_forgotten_username_is_no_longer_a_candidate() {
        let mut index = index_of(10);
        index.forget("agent3");
        assert!(index.candidate("agent3").is_none());
        assert!(index.candidate("agent4").is_some());
    }

    #[test]
    fn fifty_thousand_users_take_24_bytes_each() {
        let index = index_of(50_000);
        assert_eq!(BYTES_PER_USER, 24);
        assert!(index.heap_bytes() < 50_000 * 25, "{}", index.heap_bytes());
    }

    #[test]
    fn a_fresh_index_is_read_without_calls() {
        assert_eq!(choose(1, IndexState::Fresh), Strategy::Index { pages: 0 });
        assert_eq!(choose(0, IndexState::Fresh), Strategy::Search);
    }

    #[test]
    fn an_unknown_instance_is_probed_with_fewer_pages_than_the_searches() {
        assert_eq!(choose(1, IndexState::Unknown), Strategy::Search);
        assert_eq!(choose(2, IndexState::Unknown), Strategy::Index { pages: 1 });
        assert_eq!(
            choose(10, IndexState::Unknown),
            Strategy::Index { pages: 9 }
        );
    }

    #[test]
    fn a_stale_index_is_listed_again_when_its_pages_cost_less_than_the_searches() {
        assert_eq!(
            choose(3, IndexState::Stale { pages: 1 }),
            Strategy::Index { pages: 1 }
        );
        assert_eq!(choose(1, IndexState::Stale { pages: 1 }), Strategy::Search);
        assert_eq!(
            choose(50, IndexState::Stale { pages: 50 }),
            Strategy::Search
        );
        assert_eq!(
            choose(51, IndexState::Stale { pages: 50 }),
            Strategy::Index { pages: 50 }
        );
        // An instance listed as empty still costs one page.
        assert_eq!(choose(1, IndexState::Stale { pages: 0 }), Strategy::Search);
    }

    #[test]
    fn a_partial_listing_counts_only_the_pages_left() {
        let state = IndexState::Partial {
            done: 40,
            pages: Some(50),
        };
        assert_eq!(choose(11, state), Strategy::Index { pages: 10 });
        assert_eq!(choose(10, state), Strategy::Search);
        // Still of unknown size: probed again.
        let unknown = IndexState::Partial {
            done: 3,
            pages: None,
        };
        assert_eq!(choose(5, unknown), Strategy::Index { pages: 4 });
        assert_eq!(choose(1, unknown), Strategy::Search);
    }

    #[test]
    fn an_index_is_fresh_until_its_max_age_then_stale_with_its_page_count() {
        let index = index_of(1500);
        let young = INDEX_MAX_AGE - Duration::from_secs(1);
        assert_eq!(freshness(Some(&index), young, None), IndexState::Fresh);
        assert_eq!(
            freshness(Some(&index), INDEX_MAX_AGE, None),
            IndexState::Stale { pages: 2 }
        );
        assert_eq!(freshness(None, Duration::ZERO, None), IndexState::Unknown);
        assert_eq!(
            freshness(None, Duration::ZERO, Some(4)),
            IndexState::Stale { pages: 4 }
        );
        let mut partial = DirectoryIndex::default();
        partial.add_page([("a", "u-a")]);
        assert_eq!(
            freshness(Some(&partial), Duration::ZERO, Some(4)),
            IndexState::Partial {
                done: 1,
                pages: Some(4)
            }
        );
    }

    #[test]
    fn two_usernames_sharing_a_hash_are_both_left_to_search() {
        let mut index = DirectoryIndex::default();
        // Same username twice stands in for a collision: the same hash, two ids.
        index.add_page([
            ("dup", uuid(1).as_str()),
            ("dup", uuid(2).as_str()),
            ("ok", uuid(3).as_str()),
        ]);
        index.finish();
        assert!(index.candidate("dup").is_none());
        assert!(index.candidate("ok").is_some());
    }
}
