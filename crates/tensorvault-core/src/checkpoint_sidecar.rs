//! The fast path of reading a checkpoint sidecar (`NAME.safetensors.meta.json`): the integrity block's
//! `leaves` (64 hex characters per chunk, most of the file) are cut out of the JSON text and decoded
//! here, so that the JavaScript side parses only the small rest. Anything unusual (not UTF-8, invalid
//! JSON, duplicate keys, escapes or upper case in the leaves) is left to the full parser, which gives
//! the typed errors: this function only says "not on the fast path".

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};

use crate::checkpoint::TreeAlgorithm;
use crate::hash::{ChunkSize, ChunkTree, Digest};

/// [`TreeAlgorithm::root`] from the leaves as one contiguous slice (32 bytes each, as the fast path
/// decodes them): for BLAKE3, one `update` over all of them, which hashes many BLAKE3 chunks at once
/// instead of one 32-byte update per leaf. The same root (tested against `root`).
#[must_use]
pub fn tree_root_of_bytes(
    alg: TreeAlgorithm,
    chunk_size: ChunkSize,
    total_len: u64,
    leaves: &[u8],
) -> Digest {
    match alg {
        TreeAlgorithm::Blake3 => {
            let mut header = ChunkTree::header(chunk_size, total_len);
            if let Some(b) = header.get_mut(8) {
                *b = alg.id();
            }
            let mut h = blake3::Hasher::new();
            h.update(&header);
            h.update(leaves);
            *h.finalize().as_bytes()
        }
        TreeAlgorithm::Sha256 => {
            let digests: Vec<Digest> = leaves
                .chunks_exact(32)
                .filter_map(|c| c.try_into().ok())
                .collect();
            alg.root(chunk_size, total_len, &digests)
        }
    }
}

/// The top-level object: `tensorvault` (at most once) is read by [`BlockSeed`], the rest skipped.
struct DocSeed;

impl<'de> DeserializeSeed<'de> for DocSeed {
    type Value = Option<&'de str>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for DocSeed {
    type Value = Option<&'de str>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a sidecar object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut leaves = None;
        let mut seen = false;
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if key == "tensorvault" {
                if seen {
                    return Err(de::Error::custom("duplicate tensorvault"));
                }
                seen = true;
                leaves = map.next_value_seed(BlockSeed)?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(leaves)
    }
}

/// The integrity block: `leaves` (at most once, a string without escapes), the rest skipped.
struct BlockSeed;

impl<'de> DeserializeSeed<'de> for BlockSeed {
    type Value = Option<&'de str>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for BlockSeed {
    type Value = Option<&'de str>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an integrity block object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut leaves = None;
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if key == "leaves" {
                if leaves.is_some() {
                    return Err(de::Error::custom("duplicate leaves"));
                }
                leaves = Some(map.next_value::<&'de str>()?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(leaves)
    }
}

/// A sidecar split for the fast path.
#[derive(Debug, PartialEq, Eq)]
pub struct SplitSidecar {
    /// The JSON text with the value of `tensorvault.leaves` emptied (`"leaves":""`).
    pub text: String,
    /// The leaves, decoded: 32 bytes per chunk.
    pub leaves: Vec<u8>,
    /// Where the leaves' hex was cut out of the text (`text[..at]` ends with `"leaves":"`).
    pub at: usize,
}

/// Split `text` (a whole sidecar) into the rest and the decoded leaves, or None when it does not
/// take the fast path (see the module documentation).
#[must_use]
pub fn split_leaves(text: &str) -> Option<SplitSidecar> {
    let mut de = serde_json::Deserializer::from_str(text);
    let leaves = DocSeed.deserialize(&mut de).ok()??;
    de.end().ok()?;
    // The borrowed value is a slice of `text` (no escapes): find where.
    let start = (leaves.as_ptr() as usize).checked_sub(text.as_ptr() as usize)?;
    let end = start.checked_add(leaves.len())?;
    if text.get(start..end)? != leaves || !leaves.len().is_multiple_of(64) {
        return None;
    }
    let bytes = crate::hash::from_hex(leaves.as_bytes())?;
    let mut rest = String::with_capacity(text.len() - leaves.len());
    rest.push_str(text.get(..start)?);
    rest.push_str(text.get(end..)?);
    Some(SplitSidecar {
        text: rest,
        leaves: bytes,
        at: start,
    })
}

/// The integrity block's fields the fast path checks, read from the sidecar's text (the rest of the
/// block is validated by the loader, which parses the same text).
pub struct BlockFields {
    /// The chunk tree's hash.
    pub tree: TreeAlgorithm,
    /// `chunk_size`.
    pub chunk_size: u64,
    /// `file_length`.
    pub file_length: u64,
    /// `header_length`.
    pub header_length: u64,
    /// `header_sha256` (as written).
    pub header_sha256: String,
    /// `root` (as written).
    pub root: String,
    /// Whether the seal (`algorithm`) and the `PyFolds` `integrity_hash` are both keyed.
    pub keyed: bool,
}

/// The fields of `tensorvault` in a sidecar's `text` (None when missing or of another type).
#[must_use]
pub fn block_fields(text: &str) -> Option<BlockFields> {
    let doc: serde_json::Value = serde_json::from_str(text).ok()?;
    let b = doc.get("tensorvault")?;
    let alg = b.get("algorithm")?.as_str()?;
    let tree = if alg.starts_with("blake3-tree-v1+") {
        TreeAlgorithm::Blake3
    } else if alg.starts_with("sha256-tree-v1+") {
        TreeAlgorithm::Sha256
    } else {
        return None;
    };
    Some(BlockFields {
        tree,
        chunk_size: b.get("chunk_size")?.as_u64()?,
        file_length: b.get("file_length")?.as_u64()?,
        header_length: b.get("header_length")?.as_u64()?,
        header_sha256: b.get("header_sha256")?.as_str()?.to_string(),
        root: b.get("root")?.as_str()?.to_string(),
        keyed: alg.ends_with("+hmac-sha256")
            && doc
                .get("integrity_hash")
                .and_then(serde_json::Value::as_str)
                .is_some_and(|h| h.starts_with("hmac-sha256:")),
    })
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation
)]
mod tests {
    use super::*;

    #[test]
    fn cuts_the_leaves_out_and_decodes_them() {
        let hex = "ab".repeat(32) + &"0f".repeat(32);
        let text = format!(
            "{{\"metadata\":{{\"leaves\":\"x\"}},\"tensorvault\":{{\"root\":\"r\",\"leaves\":\"{hex}\",\"seal\":\"s\"}}}}"
        );
        let s = split_leaves(&text).unwrap();
        assert_eq!(
            s.text,
            "{\"metadata\":{\"leaves\":\"x\"},\"tensorvault\":{\"root\":\"r\",\"leaves\":\"\",\"seal\":\"s\"}}"
        );
        assert_eq!(s.leaves.len(), 64);
        assert_eq!(format!("{}{hex}{}", &s.text[..s.at], &s.text[s.at..]), text);
        assert_eq!(s.leaves[0], 0xab);
        assert_eq!(s.leaves[63], 0x0f);
    }

    #[test]
    fn the_root_of_contiguous_leaves_is_the_trees_root() {
        let leaves: Vec<u8> = (0u32..5 * 32).map(|i| (i * 37) as u8).collect();
        let digests: Vec<Digest> = leaves.chunks(32).map(|c| c.try_into().unwrap()).collect();
        let cs = ChunkSize::new(4096).unwrap();
        for alg in [TreeAlgorithm::Blake3, TreeAlgorithm::Sha256] {
            assert_eq!(
                tree_root_of_bytes(alg, cs, 5 * 4096 - 10, &leaves),
                alg.root(cs, 5 * 4096 - 10, &digests)
            );
        }
    }

    #[test]
    fn anything_unusual_is_left_to_the_full_parser() {
        let ok = "ab".repeat(32);
        for text in [
            String::from("not json"),
            format!("{{\"tensorvault\":{{\"leaves\":\"{}\"}}}}", "AB".repeat(32)),
            format!("{{\"tensorvault\":{{\"leaves\":\"{}\"}}}}", "ab".repeat(31)),
            format!(
                "{{\"tensorvault\":{{\"leaves\":\"\\u0061b{}\"}}}}",
                &ok[2..]
            ),
            format!("{{\"tensorvault\":{{\"leaves\":\"{ok}\",\"leaves\":\"{ok}\"}}}}"),
            format!("{{\"tensorvault\":{{\"leaves\":\"{ok}\"}},\"tensorvault\":{{}}}}"),
            format!("{{\"tensorvault\":{{\"leaves\":\"{ok}\"}}"),
            String::from("{\"tensorvault\":null}"),
            String::from("{\"tensorvault\":{\"leaves\":12}}"),
            String::from("{}"),
            String::from("[]"),
        ] {
            assert!(split_leaves(&text).is_none(), "{text}");
        }
    }
}
