//! What calcache reads back from Redis is authenticated: whoever can write
//! to Redis (a compromised neighbour on its network, a leaked password)
//! must not be able to forge a cached "this session is valid" for a token
//! of their choosing, or plant a feed body (a gzip bomb, another user's
//! items) under someone's key.
//!
//! Each such value carries a tag: BLAKE3 in keyed mode (a MAC) under a key
//! derived from `redis.mac_key`, the secret every replica shares, over the
//! Redis key the value is stored under and the value itself. Binding the
//! Redis key means a value copied from one user's key to another's fails
//! too. A value whose tag does not verify is not believed: a session check
//! goes to PostgreSQL, an entry is a miss (and its fill overwrites it).
//!
//! Cost: a session check hashes ~100 bytes on every feed request; an entry
//! is verified when it is fetched from Redis, not on a hit from this
//! process's own copy (`near.rs`), which was verified when it was taken.
//! Hand-written around the `blake3` crate because it is the product's own
//! format (what is tagged, and how).

use secrecy::{ExposeSecret, SecretString};

/// Bytes of a tag.
pub(super) const TAG_LEN: usize = 32;

/// The derived key. (Not `Debug`-printed.)
pub(super) struct Mac {
    key: [u8; 32],
}

impl std::fmt::Debug for Mac {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Mac(..)")
    }
}

impl Mac {
    pub fn new(secret: &SecretString) -> Self {
        Self {
            key: blake3::derive_key("calcache 2026-12-03 values stored in redis", secret.expose_secret().as_bytes()),
        }
    }

    /// The tag of `parts` (concatenated) stored under `key`.
    pub fn tag(&self, key: &str, parts: &[&[u8]]) -> [u8; TAG_LEN] {
        let mut h = blake3::Hasher::new_keyed(&self.key);
        // The key's length first: (key, value) pairs cannot run together.
        h.update(&(key.len() as u64).to_le_bytes());
        h.update(key.as_bytes());
        for p in parts {
            h.update(p);
        }
        *h.finalize().as_bytes()
    }

    /// Whether `tag` is the tag of `parts` under `key` (in constant time).
    pub fn verify(&self, key: &str, parts: &[&[u8]], tag: &[u8]) -> bool {
        let Ok(tag) = <[u8; TAG_LEN]>::try_from(tag) else {
            return false;
        };
        blake3::Hash::from_bytes(self.tag(key, parts)) == blake3::Hash::from_bytes(tag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tag_verifies_only_for_its_key_value_and_secret() {
        let mac = Mac::new(&SecretString::from("a secret of at least thirty-two characters"));
        let tag = mac.tag("k1", &[b"value"]);
        assert!(mac.verify("k1", &[b"value"], &tag));
        assert!(mac.verify("k1", &[b"val", b"ue"], &tag), "parts are concatenated");
        assert!(!mac.verify("k2", &[b"value"], &tag), "another key");
        assert!(!mac.verify("k1", &[b"valuf"], &tag), "another value");
        assert!(!mac.verify("k", &[b"1value"], &tag), "key and value cannot run together");
        assert!(!mac.verify("k1", &[b"value"], &tag[..31]), "a short tag");
        let other = Mac::new(&SecretString::from("another secret of at least thirty-two chars"));
        assert!(!other.verify("k1", &[b"value"], &tag), "another secret");
    }
}
