//! Event ids as they may be repeated (SPEC §3.1). A producer's `EventId` is free text: one
//! that is not a plain token may hold anything, an address included, so it is replaced by
//! a digest of itself wherever the function repeats it (log fields, dead-letter
//! attributes, the staleness guard's watermarks). The digest is a plain token too, so a
//! replayed change is known by the same id.

use sha2::{Digest, Sha256};

/// The longest plain token kept as it is.
pub const MAX_PLAIN_LEN: usize = 128;

/// The prefix of a digest: an id that starts with it was not repeated as written.
pub const DIGEST_PREFIX: &str = "sha256:";

/// `raw` when it is a plain token (at most 128 characters of `A-Z a-z 0-9 . _ : -`), else
/// `sha256:` and the lower-case hex SHA-256 of its UTF-8 bytes.
pub fn plain(raw: &str) -> String {
    if is_plain(raw) {
        raw.to_owned()
    } else {
        digest(raw)
    }
}

/// Whether `s` may be repeated as it is.
pub fn is_plain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_PLAIN_LEN
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

fn digest(raw: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let hash = Sha256::digest(raw.as_bytes());
    let mut out = String::with_capacity(DIGEST_PREFIX.len() + 2 * hash.len());
    out.push_str(DIGEST_PREFIX);
    for b in hash.iter() {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_token_is_kept_as_it_is() {
        for id in [
            "evt-1",
            "idp:okta:2026.12.06_001",
            "6f1c9a4e-2b7d-4c3e-9f0a-1b2c3d4e5f60",
            &"a".repeat(128),
        ] {
            assert_eq!(plain(id), id);
        }
    }

    #[test]
    fn an_id_that_is_not_a_plain_token_becomes_a_digest_of_itself() {
        let address = "wilhelmina.quackenbush@example.com";
        let digested = plain(address);
        assert!(digested.starts_with(DIGEST_PREFIX), "{digested}");
        assert!(!digested.contains("wilhelmina"));
        assert_eq!(digested.len(), 7 + 64);
        assert!(is_plain(&digested), "a digest is a plain token");
        assert_eq!(plain(&digested), digested, "and stays as it is");
        assert_eq!(plain(address), digested, "the same id, the same digest");
        assert_ne!(plain("wilhelmina.quackenbush@example.org"), digested);
        for other in ["", "two words", "ünïcode", "a/b", "x\ny", &"a".repeat(129)] {
            assert!(plain(other).starts_with(DIGEST_PREFIX), "{other:?}");
        }
    }

    #[test]
    fn the_digest_is_sha256_in_lower_case_hex() {
        // FIPS 180-2 test vector.
        assert_eq!(plain("abc def"), digest("abc def"));
        assert_eq!(
            digest("abc"),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
