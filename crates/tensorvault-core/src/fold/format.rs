//! The binary headers and the index (contract §3–§6), parsed into typed records. Every limit and every
//! cross-check runs here, before any offset from the file is trusted: bounds, lengths, counts, index
//! size, duplicate names, header fields that disagree with the index entry, unknown flags, `ecc_algo`
//! forms, parity lengths, regions outside the chunk area or overlapping each other.

use std::collections::HashSet;

use super::json::{self, Value};
use super::FoldError;
use crate::ecc::rs255::RsCodec;

/// `FOLDv1` and two NUL bytes.
pub const MAGIC: [u8; 8] = *b"FOLDv1\0\0";
/// File header length.
pub const FILE_HEADER_LEN: u64 = 28;
/// Chunk header length.
pub const CHUNK_HEADER_LEN: u64 = 32;
/// Largest index text (`PyFolds`'s limit).
pub const MAX_INDEX_LEN: u64 = 100 * 1024 * 1024;
/// Largest payload, stored-bytes or parity length of one chunk (`PyFolds`'s limit).
pub const MAX_CHUNK_LEN: u64 = 2 * 1024 * 1024 * 1024;
/// Most chunks in one file (`PyFolds` has no limit; tensorvault's).
pub const MAX_CHUNKS: usize = 65_536;
/// Longest chunk name in bytes (tensorvault's limit).
pub const MAX_NAME_LEN: usize = 4096;
/// Container versions this reader knows.
pub const KNOWN_VERSIONS: [&str; 3] = ["1.0.0", "1.1.0", "1.2.0"];
/// The version the writer records.
pub const WRITE_VERSION: &str = "1.2.0";

fn be_u32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    if let Some(s) = b.get(at..at + 4) {
        a.copy_from_slice(s);
    }
    u32::from_be_bytes(a)
}

fn be_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    if let Some(s) = b.get(at..at + 8) {
        a.copy_from_slice(s);
    }
    u64::from_be_bytes(a)
}

/// The 28-byte file header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileHeader {
    pub index_off: u64,
    pub index_len: u64,
}

impl FileHeader {
    /// Parse and check the file header of a `file_len`-byte file (§12 open steps 1–3).
    pub fn parse(bytes: &[u8], file_len: u64) -> Result<FileHeader, FoldError> {
        let Some(h) = bytes.get(..28) else {
            return Err(FoldError::invalid(
                "truncated_header",
                format!("the file has {file_len} bytes, fewer than the 28-byte header"),
            ));
        };
        if h.get(..8) != Some(&MAGIC[..]) {
            return Err(FoldError::invalid(
                "bad_magic",
                "the file does not start with FOLDv1\\0\\0",
            ));
        }
        let header_len = be_u32(h, 8);
        if u64::from(header_len) != FILE_HEADER_LEN {
            return Err(FoldError::invalid(
                "bad_header_len",
                format!("header_len is {header_len}, expected 28"),
            ));
        }
        let index_off = be_u64(h, 12);
        let index_len = be_u64(h, 20);
        if index_off < FILE_HEADER_LEN {
            return Err(FoldError::invalid(
                "unfinalised",
                format!("index_off is {index_off} (< 28): the writer never finalised the file"),
            ));
        }
        if index_len > MAX_INDEX_LEN {
            return Err(FoldError::Budget {
                what: "index",
                limit: MAX_INDEX_LEN,
                actual: index_len,
                chunk: None,
            });
        }
        if index_off
            .checked_add(index_len)
            .is_none_or(|end| end > file_len)
        {
            return Err(FoldError::invalid(
                "index_out_of_bounds",
                format!("index {index_off}+{index_len} lies outside the {file_len}-byte file"),
            ));
        }
        Ok(FileHeader {
            index_off,
            index_len,
        })
    }

    /// The 28 bytes.
    #[must_use]
    pub fn to_bytes(&self) -> [u8; 28] {
        let mut b = [0u8; 28];
        b[..8].copy_from_slice(&MAGIC);
        b[8..12].copy_from_slice(&28u32.to_be_bytes());
        b[12..20].copy_from_slice(&self.index_off.to_be_bytes());
        b[20..28].copy_from_slice(&self.index_len.to_be_bytes());
        b
    }
}

/// The 32-byte chunk header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkHeader {
    pub ctype: [u8; 4],
    pub flags: u32,
    pub uncomp_len: u64,
    pub comp_len: u64,
    pub crc32c: u32,
    pub ecc_len: u32,
}

impl ChunkHeader {
    /// Parse 32 bytes.
    #[must_use]
    pub fn parse(b: &[u8]) -> Option<ChunkHeader> {
        let h = b.get(..32)?;
        let mut ctype = [0u8; 4];
        ctype.copy_from_slice(h.get(..4)?);
        Some(ChunkHeader {
            ctype,
            flags: be_u32(h, 4),
            uncomp_len: be_u64(h, 8),
            comp_len: be_u64(h, 16),
            crc32c: be_u32(h, 24),
            ecc_len: be_u32(h, 28),
        })
    }

    /// The 32 bytes.
    #[must_use]
    pub fn to_bytes(&self) -> [u8; 32] {
        let mut b = [0u8; 32];
        b[..4].copy_from_slice(&self.ctype);
        b[4..8].copy_from_slice(&self.flags.to_be_bytes());
        b[8..16].copy_from_slice(&self.uncomp_len.to_be_bytes());
        b[16..24].copy_from_slice(&self.comp_len.to_be_bytes());
        b[24..28].copy_from_slice(&self.crc32c.to_be_bytes());
        b[28..32].copy_from_slice(&self.ecc_len.to_be_bytes());
        b
    }
}

/// One chunk, its index entry and its header checked against each other and the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkRecord {
    pub name: String,
    /// The 4-character type (header and entry agree).
    pub ctype: String,
    /// 0 = stored as is, 1 = zstd.
    pub flags: u32,
    /// Offset of the chunk header.
    pub offset: u64,
    pub uncomp_len: u64,
    pub comp_len: u64,
    pub crc32c: u32,
    /// The entry's digest string.
    pub digest: String,
    /// `rs(N)`'s N, when the chunk carries parity.
    pub ecc: Option<usize>,
    /// The `ecc_algo` text (rs(N) with no parity for an empty chunk keeps its name).
    pub ecc_algo: String,
    pub ecc_len: u64,
    /// The 12-byte GCM nonce of an encrypted chunk.
    pub nonce: Option<[u8; 12]>,
}

impl ChunkRecord {
    /// First stored byte.
    #[must_use]
    pub fn data_start(&self) -> u64 {
        self.offset + CHUNK_HEADER_LEN
    }
    /// One past the last stored byte.
    #[must_use]
    pub fn data_end(&self) -> u64 {
        self.data_start() + self.comp_len
    }
    /// One past the last parity byte (the end of the record).
    #[must_use]
    pub fn end(&self) -> u64 {
        self.data_end() + self.ecc_len
    }
    /// Whether the digest is keyed (`hmac-sha256:`).
    #[must_use]
    pub fn keyed(&self) -> bool {
        self.digest.starts_with("hmac-sha256:")
    }
    /// Whether the stored bytes are AES-GCM ciphertext.
    #[must_use]
    pub fn encrypted(&self) -> bool {
        self.nonce.is_some()
    }
}

/// An index entry before the file was consulted.
#[derive(Debug, Clone)]
pub struct Entry {
    pub name: String,
    pub offset: u64,
    pub digest: String,
    pub ecc_algo: String,
    pub nonce: Option<[u8; 12]>,
    /// Fields duplicated from the header, when present.
    pub ctype: Option<String>,
    pub flags: Option<u64>,
    pub header_len: Option<u64>,
    pub comp_len: Option<u64>,
    pub uncomp_len: Option<u64>,
    pub crc32c: Option<u64>,
    pub ecc_len: Option<u64>,
}

/// The parsed index.
#[derive(Debug, Clone)]
pub struct Index {
    /// The whole index as parsed.
    pub value: Value,
    pub version: String,
    /// The version is not one this reader knows (same major version).
    pub unknown_version: bool,
    /// `metadata` (an empty object when absent).
    pub metadata: Value,
    pub entries: Vec<Entry>,
    pub merkle_root: Option<String>,
    pub trust_block: Option<String>,
}

/// `sha256:<hex>`, `hmac-sha256:<hex>`, or the bare `<hex>` of `PyFolds` 1.x releases before the
/// prefixed form (plain SHA-256; `pyfolds==1.0.2` writes it under the same container version).
fn is_digest(s: &str) -> bool {
    let hex = s
        .strip_prefix("sha256:")
        .or_else(|| s.strip_prefix("hmac-sha256:"))
        .or(Some(s));
    hex.is_some_and(crate::hash::is_lower_hex_digest)
}

fn opt_u64(e: &Value, key: &str, name: &str) -> Result<Option<u64>, FoldError> {
    match e.get(key) {
        None => Ok(None),
        Some(v) => v.as_u64().map(Some).ok_or_else(|| {
            FoldError::invalid_chunk(
                "bad_entry",
                name,
                None,
                format!("index field {key} is not a non-negative integer"),
            )
        }),
    }
}

fn parse_entry(e: &Value, i: usize) -> Result<Entry, FoldError> {
    if e.as_object().is_none() {
        return Err(FoldError::invalid(
            "bad_entry",
            format!("chunk entry {i} is not an object"),
        ));
    }
    let name = e
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            FoldError::invalid("bad_entry", format!("chunk entry {i} has no string name"))
        })?
        .to_string();
    if name.len() > MAX_NAME_LEN {
        return Err(FoldError::invalid(
            "bad_entry",
            format!(
                "chunk entry {i}: name of {} bytes (limit {MAX_NAME_LEN})",
                name.len()
            ),
        ));
    }
    let bad = |detail: &str| FoldError::invalid_chunk("bad_entry", &name, None, detail.to_string());
    let offset = e
        .get("offset")
        .and_then(Value::as_u64)
        .ok_or_else(|| bad("offset is missing or not a non-negative integer"))?;
    let digest = e
        .get("sha256")
        .and_then(Value::as_str)
        .filter(|s| is_digest(s))
        .ok_or_else(|| bad("sha256 is missing or not a digest string"))?
        .to_string();
    let ecc_algo = match e.get("ecc_algo") {
        None => "none".to_string(),
        Some(Value::Str(s)) => s.clone(),
        Some(_) => return Err(bad("ecc_algo is not a string")),
    };
    let nonce = match e.get("encrypted") {
        None | Some(Value::Bool(false)) => {
            if e.get("nonce_hex").is_some() {
                return Err(bad("nonce_hex on a chunk that is not encrypted"));
            }
            None
        }
        Some(Value::Bool(true)) => {
            let hex = e
                .get("nonce_hex")
                .and_then(Value::as_str)
                .ok_or_else(|| bad("encrypted chunk without nonce_hex"))?;
            let bytes = super::crypto::from_hex(hex)
                .filter(|b| b.len() == 12)
                .ok_or_else(|| bad("nonce_hex is not 24 hex digits (a 12-byte GCM nonce)"))?;
            if let Some(aad) = e.get("aad") {
                if aad.as_str() != Some(name.as_str()) {
                    return Err(bad("aad differs from the chunk name"));
                }
            }
            let mut n = [0u8; 12];
            n.copy_from_slice(&bytes);
            Some(n)
        }
        Some(_) => return Err(bad("encrypted is not a boolean")),
    };
    let ctype = match e.get("ctype") {
        None => None,
        Some(Value::Str(s)) => Some(s.clone()),
        Some(_) => return Err(bad("ctype is not a string")),
    };
    Ok(Entry {
        offset,
        digest,
        ecc_algo,
        nonce,
        ctype,
        flags: opt_u64(e, "flags", &name)?,
        header_len: opt_u64(e, "header_len", &name)?,
        comp_len: opt_u64(e, "comp_len", &name)?,
        uncomp_len: opt_u64(e, "uncomp_len", &name)?,
        crc32c: opt_u64(e, "crc32c", &name)?,
        ecc_len: opt_u64(e, "ecc_len", &name)?,
        name,
    })
}

impl Index {
    /// Parse the index text (§6, §12 open steps 3–4) into typed entries.
    pub fn parse(bytes: &[u8]) -> Result<Index, FoldError> {
        let text = std::str::from_utf8(bytes).map_err(|e| {
            FoldError::invalid(
                "index_not_utf8",
                format!("the index is not UTF-8 (byte {})", e.valid_up_to()),
            )
        })?;
        let value = json::parse(text).map_err(|e| {
            FoldError::invalid(
                "index_not_json",
                format!("the index is not valid JSON: {e}"),
            )
        })?;
        if value.as_object().is_none() {
            return Err(FoldError::invalid(
                "index_not_object",
                "the index is not a JSON object",
            ));
        }
        if value.get("format").and_then(Value::as_str) != Some("fold") {
            return Err(FoldError::invalid(
                "bad_format",
                "index format is not \"fold\"",
            ));
        }
        let version = match value.get("version") {
            None => "1.0.0".to_string(),
            Some(Value::Str(s)) => s.clone(),
            Some(_) => {
                return Err(FoldError::invalid(
                    "bad_version",
                    "index version is not a string",
                ))
            }
        };
        let unknown_version = !KNOWN_VERSIONS.contains(&version.as_str());
        let major = version.split('.').next().unwrap_or_default();
        if major != "1" {
            return Err(FoldError::invalid(
                "unsupported_version",
                format!("container version {version:?}: this reader reads major version 1 only"),
            ));
        }
        let metadata = match value.get("metadata") {
            None => Value::Object(Vec::new()),
            Some(m @ Value::Object(_)) => m.clone(),
            Some(_) => {
                return Err(FoldError::invalid(
                    "bad_metadata",
                    "index metadata is not an object",
                ))
            }
        };
        let Some(Value::Array(raw)) = value.get("chunks") else {
            return Err(FoldError::invalid(
                "bad_chunks",
                "index chunks is missing or not an array",
            ));
        };
        if raw.len() > MAX_CHUNKS {
            return Err(FoldError::Budget {
                what: "chunk count",
                limit: MAX_CHUNKS as u64,
                actual: raw.len() as u64,
                chunk: None,
            });
        }
        let entries = raw
            .iter()
            .enumerate()
            .map(|(i, e)| parse_entry(e, i))
            .collect::<Result<Vec<_>, _>>()?;
        let mut names = HashSet::new();
        for e in &entries {
            if !names.insert(e.name.as_str()) {
                return Err(FoldError::invalid_chunk(
                    "duplicate_name",
                    &e.name,
                    Some(e.offset),
                    "two chunks have this name (PyFolds would only ever read the first)",
                ));
            }
        }
        let (merkle_root, trust_block) = signatures(&value)?;
        Ok(Index {
            value,
            version,
            unknown_version,
            metadata,
            entries,
            merkle_root,
            trust_block,
        })
    }
}

/// `merkle_root` and `trust_block`, when present (both must be strings).
fn signatures(value: &Value) -> Result<(Option<String>, Option<String>), FoldError> {
    let merkle_root = match value.get("merkle_root") {
        None => None,
        Some(Value::Str(s)) if s.is_empty() => None,
        Some(Value::Str(s)) => Some(s.clone()),
        Some(_) => {
            return Err(FoldError::invalid(
                "bad_merkle_root",
                "merkle_root is not a string",
            ))
        }
    };
    let trust_block = match value.get("trust_block") {
        None => None,
        Some(Value::Str(s)) => Some(s.clone()),
        Some(_) => {
            return Err(FoldError::invalid(
                "bad_trust_block",
                "trust_block is not a string",
            ))
        }
    };
    Ok((merkle_root, trust_block))
}

/// Check `entry` against the chunk header found at its offset in `file` (the whole file), within the
/// chunk area `[28, index_off)` (§12 chunk steps 2–4 plus tensorvault's cross-checks, W6).
pub fn check_entry(entry: &Entry, file: &[u8], index_off: u64) -> Result<ChunkRecord, FoldError> {
    let name = entry.name.as_str();
    let at = Some(entry.offset);
    let inv =
        |reason: &'static str, detail: String| FoldError::invalid_chunk(reason, name, at, detail);
    if entry.offset < FILE_HEADER_LEN || entry.offset.saturating_add(CHUNK_HEADER_LEN) > index_off {
        return Err(inv(
            "bad_offset",
            format!(
                "chunk header {}+32 lies outside the chunk area 28..{index_off}",
                entry.offset
            ),
        ));
    }
    let h = usize::try_from(entry.offset)
        .ok()
        .and_then(|o| file.get(o..o + 32))
        .and_then(ChunkHeader::parse)
        .ok_or_else(|| inv("bad_offset", "chunk header outside the file".into()))?;
    let ctype = std::str::from_utf8(&h.ctype)
        .ok()
        .filter(|s| s.is_ascii())
        .ok_or_else(|| {
            inv(
                "bad_ctype",
                "chunk header ctype is not 4 ASCII characters".into(),
            )
        })?
        .to_string();
    if h.flags > 1 {
        return Err(inv(
            "bad_flags",
            format!("flags {} (only 0 and 1 are defined)", h.flags),
        ));
    }
    for (what, v) in [
        ("uncomp_len", h.uncomp_len),
        ("comp_len", h.comp_len),
        ("ecc_len", u64::from(h.ecc_len)),
    ] {
        if v > MAX_CHUNK_LEN {
            return Err(FoldError::Budget {
                what,
                limit: MAX_CHUNK_LEN,
                actual: v,
                chunk: Some(name.to_string()),
            });
        }
    }
    cross_check(entry, &h, &ctype)?;
    let codec_n = ecc_and_lengths(entry, &h)?;
    let end = entry
        .offset
        .checked_add(CHUNK_HEADER_LEN + h.comp_len + u64::from(h.ecc_len))
        .filter(|&e| e <= index_off)
        .ok_or_else(|| {
            inv(
                "chunk_out_of_bounds",
                format!(
                    "record {}+{} runs past the chunk area (index at {index_off})",
                    entry.offset,
                    CHUNK_HEADER_LEN + h.comp_len + u64::from(h.ecc_len)
                ),
            )
        })?;
    let _ = end;
    Ok(ChunkRecord {
        name: entry.name.clone(),
        ctype,
        flags: h.flags,
        offset: entry.offset,
        uncomp_len: h.uncomp_len,
        comp_len: h.comp_len,
        crc32c: h.crc32c,
        digest: entry.digest.clone(),
        ecc: codec_n.filter(|_| h.ecc_len > 0),
        ecc_algo: entry.ecc_algo.clone(),
        ecc_len: u64::from(h.ecc_len),
        nonce: entry.nonce,
    })
}

/// `ecc_algo` in its strict form, `ecc_len` equal to what rs(N) needs, lengths consistent with
/// the flags and encryption (W6). Returns rs(N)'s N.
fn ecc_and_lengths(entry: &Entry, h: &ChunkHeader) -> Result<Option<usize>, FoldError> {
    let inv = |reason: &'static str, detail: String| {
        FoldError::invalid_chunk(reason, &entry.name, Some(entry.offset), detail)
    };
    let codec_n = match RsCodec::from_name(&entry.ecc_algo) {
        Ok(None) => None,
        Ok(Some(c)) => Some(c.parity_len()),
        Err(_) => {
            return Err(inv(
                "bad_ecc_algo",
                format!(
                    "ecc_algo {:?} is neither \"none\" nor rs(N) with N in 1..254",
                    entry.ecc_algo
                ),
            ))
        }
    };
    let want_ecc = codec_n.map_or(0, |n| h.comp_len.div_ceil(255 - n as u64) * n as u64);
    if u64::from(h.ecc_len) != want_ecc {
        return Err(inv(
            "bad_ecc_len",
            format!(
                "ecc_len {} but {} with {} stored bytes needs {want_ecc}",
                h.ecc_len, entry.ecc_algo, h.comp_len
            ),
        ));
    }
    if entry.nonce.is_some() && h.comp_len < 16 {
        return Err(inv(
            "bad_length",
            "encrypted chunk shorter than its 16-byte GCM tag".into(),
        ));
    }
    if h.flags == 0 && entry.nonce.is_some() && h.comp_len != h.uncomp_len + 16 {
        return Err(inv(
            "bad_length",
            format!(
                "encrypted and stored as is, yet comp_len {} is not uncomp_len {} + 16",
                h.comp_len, h.uncomp_len
            ),
        ));
    }
    if h.flags == 0 && entry.nonce.is_none() && h.comp_len != h.uncomp_len {
        return Err(inv(
            "bad_length",
            format!(
                "stored as is, yet comp_len {} differs from uncomp_len {}",
                h.comp_len, h.uncomp_len
            ),
        ));
    }
    Ok(codec_n)
}

/// The entry's copies of header fields must equal the header (W6).
fn cross_check(entry: &Entry, h: &ChunkHeader, ctype: &str) -> Result<(), FoldError> {
    let inv = |reason: &'static str, detail: String| {
        FoldError::invalid_chunk(reason, &entry.name, Some(entry.offset), detail)
    };
    let mismatch = |field: &str, entry_v: String, header_v: String| {
        inv(
            "header_mismatch",
            format!("index {field} {entry_v} differs from the chunk header's {header_v}"),
        )
    };
    if let Some(c) = &entry.ctype {
        if c != ctype {
            return Err(mismatch("ctype", format!("{c:?}"), format!("{ctype:?}")));
        }
    }
    let pairs = [
        ("flags", entry.flags, u64::from(h.flags)),
        ("header_len", entry.header_len, CHUNK_HEADER_LEN),
        ("comp_len", entry.comp_len, h.comp_len),
        ("uncomp_len", entry.uncomp_len, h.uncomp_len),
        ("crc32c", entry.crc32c, u64::from(h.crc32c)),
        ("ecc_len", entry.ecc_len, u64::from(h.ecc_len)),
    ];
    for (field, e, hv) in pairs {
        if let Some(e) = e {
            if e != hv {
                return Err(mismatch(field, e.to_string(), hv.to_string()));
            }
        }
    }
    Ok(())
}

/// Layout findings that are not errors for `PyFolds` compatibility (errors under a strict policy).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LayoutFindings {
    /// Bytes between regions (first chunk not at 28, gaps, chunks not in index order).
    pub gaps: Vec<(u64, u64)>,
    /// Chunks whose file order differs from index order.
    pub out_of_order: bool,
    /// Bytes after the index.
    pub trailing: u64,
}

/// Refuse overlapping records (aliased bytes, W9/W10) and report gaps, order and trailing bytes.
pub fn check_layout(
    records: &[&ChunkRecord],
    header: &FileHeader,
    file_len: u64,
) -> Result<LayoutFindings, FoldError> {
    let mut sorted: Vec<&ChunkRecord> = records.to_vec();
    let out_of_order = sorted.windows(2).any(|w| match w {
        [a, b] => a.offset > b.offset,
        _ => false,
    });
    sorted.sort_by_key(|r| r.offset);
    let mut findings = LayoutFindings {
        out_of_order,
        ..LayoutFindings::default()
    };
    let mut pos = FILE_HEADER_LEN;
    let mut prev: Option<&ChunkRecord> = None;
    for r in sorted {
        if r.offset < pos {
            let other = prev.map_or_else(
                || "the file header".to_string(),
                |p| format!("chunk {:?}", p.name),
            );
            return Err(FoldError::invalid_chunk(
                "overlap",
                &r.name,
                Some(r.offset),
                format!(
                    "record at {} overlaps {other} (which ends at {pos})",
                    r.offset
                ),
            ));
        }
        if r.offset > pos {
            findings.gaps.push((pos, r.offset));
        }
        pos = r.end();
        prev = Some(r);
    }
    if header.index_off > pos {
        findings.gaps.push((pos, header.index_off));
    }
    findings.trailing = file_len.saturating_sub(header.index_off + header.index_len);
    Ok(findings)
}
