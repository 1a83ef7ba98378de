//! The fast path of reading a checkpoint sidecar (`NAME.safetensors.meta.json`): the integrity block's
//! `leaves` (64 hex characters per chunk, most of the file) are cut out of the JSON text and decoded
//! here, so that the JavaScript side parses only the small rest. Anything unusual (not UTF-8, invalid
//! JSON, duplicate keys, escapes or upper case in the leaves) is left to the full parser, which gives
//! the typed errors: this function only says "not on the fast path".

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};

use crate::checkpoint::TreeAlgorithm;
use std::fmt::Write as _;

use crate::hash::{is_lower_hex_digest, ChunkSize, ChunkTree, Digest};
use crate::json::Json;

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

/// The integrity block's fields the fast path checks, read from the sidecar's text.
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

/// A sidecar of the `tensorvault` layout, checked as the loader checks it (`src/checkpoint/parse.ts`
/// `parseWith`, `layout.ts` `parseIntegrityBlock`; never more leniently: anything else is left to
/// the loader, which reports it) and ready for its seal.
pub struct SidecarDoc {
    /// The block's fields the open checks against the weights.
    pub block: BlockFields,
    /// `tensorvault.algorithm`.
    pub algorithm: String,
    /// Whether `algorithm`'s seal is keyed (`…+hmac-sha256`).
    pub seal_keyed: bool,
    /// `integrity_hash`, as written.
    pub integrity_hash: String,
    /// `tensorvault.ecc.file` (None: `ecc` is null).
    pub ecc_file: Option<String>,
    /// `tensorvault.seal`.
    pub seal: String,
    /// `metadata` (an empty object when missing or null, as the loader reads it).
    pub metadata: Json,
}

const ALGORITHMS: [&str; 4] = [
    "sha256-tree-v1+sha256",
    "sha256-tree-v1+hmac-sha256",
    "blake3-tree-v1+sha256",
    "blake3-tree-v1+hmac-sha256",
];

/// `integrity_hash` as the loader accepts it (`parseStoredHash`), with the prefixes in lower case.
fn stored_hash_ok(s: &str) -> bool {
    let hex = s
        .strip_prefix("sha256:")
        .or_else(|| s.strip_prefix("hmac-sha256:"))
        .unwrap_or(s);
    hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The sidecar `text` (with its leaves cut out: `tensorvault.leaves` is `""`) parsed and checked,
/// or None when the loader would refuse it or read it otherwise.
#[must_use]
pub fn sidecar_doc(text: &str) -> Option<SidecarDoc> {
    let doc = Json::parse(text)?;
    if !matches!(doc, Json::Obj(_)) {
        return None;
    }
    if doc
        .get("format")
        .is_some_and(|f| f.as_str() != Some("safetensors"))
    {
        return None;
    }
    let metadata = match doc.get("metadata") {
        None | Some(Json::Null) => Json::Obj(Vec::new()),
        Some(m @ Json::Obj(_)) => m.clone(),
        Some(_) => return None,
    };
    let integrity_hash = doc.get("integrity_hash")?.as_str()?;
    if !stored_hash_ok(integrity_hash) {
        return None;
    }
    let b = doc.get("tensorvault")?;
    if b.get("integrity")? != &Json::Num(1.0) {
        return None;
    }
    let algorithm = b.get("algorithm")?.as_str()?;
    if !ALGORITHMS.contains(&algorithm) {
        return None;
    }
    let tree = if algorithm.starts_with("blake3-") {
        TreeAlgorithm::Blake3
    } else {
        TreeAlgorithm::Sha256
    };
    let chunk_size = b.get("chunk_size")?.as_safe_u64()?;
    if !(4096..=1 << 30).contains(&chunk_size) || !chunk_size.is_power_of_two() {
        return None;
    }
    let file_length = b.get("file_length")?.as_safe_u64()?;
    let header_length = b.get("header_length")?.as_safe_u64()?;
    if file_length < 8 || header_length < 8 || header_length > file_length {
        return None;
    }
    let header_sha256 = b.get("header_sha256")?.as_str()?;
    let root = b.get("root")?.as_str()?;
    if !is_lower_hex_digest(header_sha256)
        || !is_lower_hex_digest(root)
        || !b.get("leaves")?.as_str()?.is_empty()
    {
        return None;
    }
    let ecc_file = match b.get("ecc")? {
        Json::Null => None,
        e => {
            if e.get("kind")?.as_str()? != "tvecc" {
                return None;
            }
            let f = e.get("file")?.as_str()?;
            if f.is_empty() || f.contains(['/', '\\']) || f == "." || f == ".." {
                return None;
            }
            Some(f.to_owned())
        }
    };
    let seal = b.get("seal")?.as_str()?;
    let keyed_alg = algorithm.ends_with("+hmac-sha256");
    let seal_hex = if keyed_alg {
        seal.strip_prefix("hmac-sha256:")?
    } else {
        seal.strip_prefix("sha256:")?
    };
    if !is_lower_hex_digest(seal_hex) {
        return None;
    }
    Some(SidecarDoc {
        block: BlockFields {
            tree,
            chunk_size,
            file_length,
            header_length,
            header_sha256: header_sha256.to_owned(),
            root: root.to_owned(),
            keyed: keyed_alg && integrity_hash.starts_with("hmac-sha256:"),
        },
        algorithm: algorithm.to_owned(),
        seal_keyed: keyed_alg,
        integrity_hash: integrity_hash.to_owned(),
        ecc_file,
        seal: seal.to_owned(),
        metadata,
    })
}

impl SidecarDoc {
    /// The `ecc` member as the seal frames it: the canonical JSON of `null` or
    /// `{ kind: "tvecc", file }` (only those two members, as the loader rebuilds it).
    fn ecc_canonical(&self) -> String {
        match &self.ecc_file {
            None => "null".to_owned(),
            Some(f) => {
                let mut out = String::from("{\"file\":");
                crate::json::write_string(&mut out, f);
                out.push_str(",\"kind\":\"tvecc\"}");
                out
            }
        }
    }

    /// Whether the seal was checked and matches: with `key` when the block is keyed (false without
    /// one: nothing can be checked), unkeyed otherwise (the key is then not used, as in the loader).
    #[must_use]
    pub fn seal_matches(&self, key: Option<&[u8]>) -> bool {
        let keyed = self.seal_keyed;
        if keyed && key.is_none() {
            return false;
        }
        let (Some(h), Some(r), Some(meta)) = (
            crate::hash::from_hex(self.block.header_sha256.as_bytes()),
            crate::hash::from_hex(self.block.root.as_bytes()),
            self.metadata.canonical(),
        ) else {
            return false;
        };
        let ecc = self.ecc_canonical();
        let f = crate::checkpoint::SealFields {
            algorithm: &self.algorithm,
            chunk_size: self.block.chunk_size,
            file_length: self.block.file_length,
            header_length: self.block.header_length,
            header_sha256: &h,
            root: &r,
            metadata: &meta,
            integrity_hash: &self.integrity_hash,
            ecc: &ecc,
        };
        let want = crate::checkpoint::seal(&f, if keyed { key } else { None });
        crate::fold::crypto::ct_eq(&want, &self.seal)
    }

    /// The checked fields as one JSON text for the loader: `metadata` (members in the sidecar's
    /// order, the values the seal covers), `integrity_hash`, and `block` (the integrity block without
    /// its leaves).
    #[must_use]
    pub fn loader_json(&self) -> Option<String> {
        let mut out = String::from("{\"metadata\":");
        if !self.metadata.write(&mut out, false) {
            return None;
        }
        out.push_str(",\"integrity_hash\":");
        crate::json::write_string(&mut out, &self.integrity_hash);
        out.push_str(",\"block\":{\"integrity\":1,\"algorithm\":");
        crate::json::write_string(&mut out, &self.algorithm);
        let b = &self.block;
        let _ = write!(
            out,
            ",\"chunk_size\":{},\"file_length\":{},\"header_length\":{},\"header_sha256\":\"{}\",\"root\":\"{}\",\"ecc\":",
            b.chunk_size, b.file_length, b.header_length, b.header_sha256, b.root
        );
        match &self.ecc_file {
            None => out.push_str("null"),
            Some(f) => {
                out.push_str("{\"kind\":\"tvecc\",\"file\":");
                crate::json::write_string(&mut out, f);
                out.push('}');
            }
        }
        out.push_str(",\"seal\":");
        crate::json::write_string(&mut out, &self.seal);
        out.push_str("}}");
        Some(out)
    }
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

    /// A cut sidecar (`leaves: ""`) sealed over `meta_canonical` (the canonical text of `meta`).
    fn sealed_doc(meta: &str, meta_canonical: &str, key: Option<&[u8]>, ecc: &str) -> String {
        let (h, r) = ("ab".repeat(32), "cd".repeat(32));
        let alg = if key.is_some() {
            "blake3-tree-v1+hmac-sha256"
        } else {
            "blake3-tree-v1+sha256"
        };
        let ih = format!("sha256:{}", "ef".repeat(32));
        let ecc_canon = if ecc == "null" {
            "null".to_owned()
        } else {
            "{\"file\":\"w.tvecc\",\"kind\":\"tvecc\"}".to_owned()
        };
        let seal = crate::checkpoint::seal(
            &crate::checkpoint::SealFields {
                algorithm: alg,
                chunk_size: 4096,
                file_length: 10_000,
                header_length: 100,
                header_sha256: &[0xab; 32],
                root: &[0xcd; 32],
                metadata: meta_canonical,
                integrity_hash: &ih,
                ecc: &ecc_canon,
            },
            key,
        );
        format!(
            "{{\n  \"metadata\": {meta},\n  \"integrity_hash\": \"{ih}\",\n  \"format\": \"safetensors\",\n  \"tensorvault\": {{\"integrity\": 1, \"algorithm\": \"{alg}\", \"chunk_size\": 4096, \"file_length\": 10000, \"header_length\": 100, \"header_sha256\": \"{h}\", \"root\": \"{r}\", \"leaves\": \"\", \"ecc\": {ecc}, \"seal\": \"{seal}\"}}\n}}"
        )
    }

    #[test]
    fn a_sealed_sidecar_checks_with_its_canonical_metadata() {
        let meta = "{\"z\": [1.0, -0, 1e21], \"a\": \"\\u00e9\\n\", \"a\": \"x\", \"\u{e000}\": {}, \"😀\": null}";
        let canon = "{\"a\":\"x\",\"z\":[1,0,1e+21],\"😀\":null,\"\u{e000}\":{}}";
        let text = sealed_doc(meta, canon, None, "null");
        let d = sidecar_doc(&text).unwrap();
        assert!(d.seal_matches(None));
        assert!(d.seal_matches(Some(b"ignored: the block is not keyed")));
        assert_eq!(d.metadata.canonical().unwrap(), canon);
        // The loader's text: the members in the sidecar's order (a repeated key in its first place).
        let fields = Json::parse(&d.loader_json().unwrap()).unwrap();
        assert_eq!(
            fields.get("metadata").unwrap().ordered().unwrap(),
            "{\"z\":[1,-0,1e+21],\"a\":\"x\",\"\u{e000}\":{},\"😀\":null}"
        );
        assert_eq!(
            fields.get("block").unwrap().get("root").unwrap().as_str(),
            Some("cd".repeat(32).as_str())
        );
        assert_eq!(fields.get("block").unwrap().get("ecc"), Some(&Json::Null));

        let keyed = sealed_doc(
            "{}",
            "{}",
            Some(b"k1"),
            "{\"kind\": \"tvecc\", \"file\": \"w.tvecc\", \"extra\": 1}",
        );
        let d = sidecar_doc(&keyed).unwrap();
        assert_eq!(d.ecc_file.as_deref(), Some("w.tvecc"));
        assert!(d.seal_matches(Some(b"k1")));
        assert!(!d.seal_matches(Some(b"k2")));
        assert!(!d.seal_matches(None));
        // Metadata changed after sealing: no match.
        let changed = text.replace("\"a\": \"x\"", "\"a\": \"y\"");
        assert!(!sidecar_doc(&changed).unwrap().seal_matches(None));
        // A canonical form computed with keys sorted by code point would not match.
        let wrong = sealed_doc(
            meta,
            "{\"a\":\"x\",\"z\":[1,0,1e+21],\"\u{e000}\":{},\"😀\":null}",
            None,
            "null",
        );
        assert!(!sidecar_doc(&wrong).unwrap().seal_matches(None));
    }

    #[test]
    fn the_sidecar_checks_are_the_loaders() {
        let good = sealed_doc("{}", "{}", None, "null");
        assert!(sidecar_doc(&good).is_some());
        assert!(sidecar_doc(&good.replace("  \"metadata\": {},\n", "")).is_some());
        assert!(sidecar_doc(&good.replace("\"metadata\": {}", "\"metadata\": null")).is_some());
        assert!(sidecar_doc(&good.replace("  \"format\": \"safetensors\",\n", "")).is_some());
        let h64 = "ab".repeat(32);
        for (from, to) in [
            ("\"metadata\": {}", "\"metadata\": []"),
            ("\"metadata\": {}", "\"metadata\": \"x\""),
            ("\"format\": \"safetensors\"", "\"format\": \"pt\""),
            ("\"format\": \"safetensors\"", "\"format\": null"),
            (
                "\"integrity_hash\": \"sha256:",
                "\"integrity_hash\": \"md5:",
            ),
            ("\"integrity\": 1", "\"integrity\": 2"),
            ("\"integrity\": 1", "\"integrity\": \"1\""),
            ("blake3-tree-v1+sha256", "blake3-tree-v2+sha256"),
            ("\"chunk_size\": 4096", "\"chunk_size\": 2048"),
            ("\"chunk_size\": 4096", "\"chunk_size\": 12288"),
            ("\"chunk_size\": 4096", "\"chunk_size\": 2147483648"),
            ("\"file_length\": 10000", "\"file_length\": 99"),
            ("\"file_length\": 10000", "\"file_length\": 10000.5"),
            ("\"header_length\": 100", "\"header_length\": 7"),
            ("\"header_length\": 100", "\"header_length\": -100"),
            (
                &format!("\"header_sha256\": \"{h64}\""),
                &format!("\"header_sha256\": \"{}\"", h64.to_uppercase()),
            ),
            (
                &format!("\"header_sha256\": \"{h64}\""),
                "\"header_sha256\": \"ab\"",
            ),
            ("\"leaves\": \"\"", "\"leaves\": \"00\""),
            ("\"leaves\": \"\", ", ""),
            ("\"ecc\": null, ", ""),
            (
                "\"ecc\": null",
                "\"ecc\": {\"kind\": \"par2\", \"file\": \"x\"}",
            ),
            (
                "\"ecc\": null",
                "\"ecc\": {\"kind\": \"tvecc\", \"file\": \"../x\"}",
            ),
            (
                "\"ecc\": null",
                "\"ecc\": {\"kind\": \"tvecc\", \"file\": \"a\\\\b\"}",
            ),
            (
                "\"ecc\": null",
                "\"ecc\": {\"kind\": \"tvecc\", \"file\": \"..\"}",
            ),
            (
                "\"ecc\": null",
                "\"ecc\": {\"kind\": \"tvecc\", \"file\": \"\"}",
            ),
            ("\"ecc\": null", "\"ecc\": []"),
            ("\"seal\": \"sha256:", "\"seal\": \"hmac-sha256:"),
            ("\"seal\": \"sha256:", "\"seal\": \"SHA256:"),
        ] {
            let bad = good.replacen(from, to, 1);
            assert_ne!(bad, good, "{from}");
            assert!(sidecar_doc(&bad).is_none(), "{from} → {to}");
        }
        assert!(sidecar_doc("[]").is_none());
        assert!(sidecar_doc("{\"metadata\": {}}").is_none());
    }
}
