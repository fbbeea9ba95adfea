//! How the cache stores a feed body: the JSON, gzip-compressed once when it
//! is filled.
//!
//! Browsers (and most HTTP clients) accept gzip, so a hit sends the stored
//! bytes exactly as Redis returned them; a client that does not gets them
//! decompressed. A month's feed shrinks about four-fold (17 KB of JSON to
//! 4.5 KB; the random UUIDs do not compress), and that is four times less in
//! Redis memory (more entries fit under `maxmemory`), on the wire from Redis
//! on every hit, and on the wire to the browser. The feed key
//! names the encoding (`:gz3:`, see `keys.rs`), so a release that stores
//! bodies differently would use other keys.

use std::io::{Read as _, Write as _};

use bytes::Bytes;
use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;

/// What the client takes (`Accept-Encoding`): the read-through hands back
/// the body in that form when it can do so from a copy it keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Gzip,
    Identity,
}

/// A feed body as the read-through hands it back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedBody {
    /// Straight from PostgreSQL, not stored (a bypass).
    Json(Bytes),
    /// As the cache stores it (a hit, or a miss that filled the entry).
    Gzip(Bytes),
}

impl FeedBody {
    /// The gzip of `json`, as the cache stores it. Fast compression: it runs
    /// on every fill, and level 1 already finds almost all of the redundancy
    /// in repetitive JSON.
    pub fn compress(json: &[u8]) -> std::io::Result<Bytes> {
        let mut enc = GzEncoder::new(Vec::with_capacity(json.len() / 4 + 64), Compression::fast());
        enc.write_all(json)?;
        enc.finish().map(Bytes::from)
    }

    /// The gzip, when this body has one.
    pub fn gzip(&self) -> Option<&Bytes> {
        match self {
            Self::Gzip(gz) => Some(gz),
            Self::Json(_) => None,
        }
    }

    /// The bound on a stored body's decompressed size. Whatever Redis
    /// returns is decompressed only this far: a planted gzip bomb is an
    /// error (which the feed route answers from PostgreSQL), not gigabytes
    /// of memory. Far above the largest answer calcache stores: at most
    /// `limits.max_items_per_feed` events, which the config check keeps
    /// below half of this (`config::LimitsSettings::MAX_ITEMS_PER_FEED`).
    pub const MAX_JSON_BYTES: usize = 32 << 20;

    /// Stored entries up to this size (a month of a busy calendar) are
    /// inflated on the async worker; bigger ones, and JSON bigger than
    /// four times this to compress, on the blocking pool: milliseconds of
    /// CPU would stall every other request of that worker.
    pub const INLINE_MAX: usize = 16 * 1024;

    /// [`Self::json`], on the blocking pool when the entry is big.
    pub async fn inflate(&self) -> std::io::Result<Bytes> {
        match self {
            Self::Gzip(gz) if gz.len() > Self::INLINE_MAX => {
                let body = self.clone();
                tokio::task::spawn_blocking(move || body.json()).await.map_err(std::io::Error::other)?
            }
            _ => self.json(),
        }
    }

    /// [`Self::compress`], on the blocking pool when the JSON is big.
    pub async fn deflate(json: &Bytes) -> std::io::Result<Bytes> {
        if json.len() <= 4 * Self::INLINE_MAX {
            return Self::compress(json);
        }
        let json = json.clone();
        tokio::task::spawn_blocking(move || Self::compress(&json)).await.map_err(std::io::Error::other)?
    }

    /// The JSON itself, decompressed if need be (at most
    /// [`Self::MAX_JSON_BYTES`]).
    pub fn json(&self) -> std::io::Result<Bytes> {
        match self {
            Self::Json(json) => Ok(json.clone()),
            Self::Gzip(gz) => {
                let mut json = Vec::with_capacity(gz.len().saturating_mul(6).min(Self::MAX_JSON_BYTES));
                let limit = u64::try_from(Self::MAX_JSON_BYTES).unwrap_or(u64::MAX).saturating_add(1);
                GzDecoder::new(gz.as_ref()).take(limit).read_to_end(&mut json)?;
                if json.len() > Self::MAX_JSON_BYTES {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("stored feed body decompresses past {} bytes", Self::MAX_JSON_BYTES),
                    ));
                }
                Ok(Bytes::from(json))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::loadgen::zeros_gzip;

    #[test]
    fn a_compressed_body_decompresses_to_the_same_json() {
        let json = br#"[{"id":"work-item-1","title":"x"},{"id":"work-item-2","title":"x"}]"#.repeat(50);
        let body = FeedBody::Gzip(FeedBody::compress(&json).unwrap_or_else(|e| panic!("{e}")));
        let gz = body.gzip().unwrap_or_else(|| panic!("not compressed"));
        assert_eq!(gz[..2], [0x1f, 0x8b]);
        assert!(gz.len() < json.len() / 10);
        assert_eq!(body.json().unwrap_or_else(|e| panic!("{e}")), json);
        let empty = FeedBody::Gzip(FeedBody::compress(b"[]").unwrap_or_else(|e| panic!("{e}")));
        assert_eq!(empty.json().unwrap_or_else(|e| panic!("{e}")).as_ref(), b"[]");
        assert_eq!(FeedBody::Json(Bytes::from_static(b"[]")).json().ok(), Some(Bytes::from_static(b"[]")));
    }

    /// A gzip bomb planted in Redis: 100 MB of zeros in well under 1 MB.
    /// Decompressed only up to the bound, then refused; a body just at the
    /// bound is still a body.
    #[test]
    fn a_gzip_bomb_is_an_error_not_100_mb() {
        let bomb = zeros_gzip(100_000_000);
        assert!(bomb.len() < 1 << 20, "{} bytes", bomb.len());
        let err = FeedBody::Gzip(Bytes::from(bomb)).json().map(|j| j.len()).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData, "{err}");
        let json = FeedBody::Gzip(Bytes::from(zeros_gzip(FeedBody::MAX_JSON_BYTES))).json();
        assert_eq!(json.map(|j| j.len()).ok(), Some(FeedBody::MAX_JSON_BYTES));
        // The builder makes real gzip: what flate2 reads back is what it says.
        let small = FeedBody::Gzip(Bytes::from(zeros_gzip(1000))).json().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(small.as_ref(), &[0u8; 1000][..]);
    }

    #[test]
    fn stored_bytes_that_are_not_gzip_are_an_error_not_a_panic() {
        assert!(FeedBody::Gzip(Bytes::from_static(b"[]")).json().is_err());
    }
}
