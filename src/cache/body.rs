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

    /// The JSON itself, decompressed if need be.
    pub fn json(&self) -> std::io::Result<Bytes> {
        match self {
            Self::Json(json) => Ok(json.clone()),
            Self::Gzip(gz) => {
                let mut json = Vec::with_capacity(gz.len() * 6);
                GzDecoder::new(gz.as_ref()).read_to_end(&mut json)?;
                Ok(Bytes::from(json))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn stored_bytes_that_are_not_gzip_are_an_error_not_a_panic() {
        assert!(FeedBody::Gzip(Bytes::from_static(b"[]")).json().is_err());
    }
}
