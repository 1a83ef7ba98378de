//! Header parsing and validation, in the reference implementation's order:
//!
//! 1. at least 8 bytes; 2. header length ≤ 100 MB; 3. header within the file; 4. UTF-8;
//! 5. a JSON object (duplicate keys refused, `__metadata__` a string→string map or null, each tensor entry
//!    well-formed with a known dtype); 6. tensors sorted by offsets: each starts where the previous ended
//!    (no gap, no overlap), ends after it starts, its element and byte counts (checked arithmetic) equal
//!    its byte range, and it lies inside the data area; 7. no bytes after the last tensor.
//!
//! A [`Header`] only exists once all of that holds; later code trusts it.

use std::cell::RefCell;
use std::collections::hash_map::RandomState;
use std::collections::BTreeMap;
use std::fmt;
use std::hash::{BuildHasher as _, Hasher as _};

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use super::{Dtype, SafetensorsError};

/// Largest header accepted, as in the reference implementation (100 MB).
pub const MAX_HEADER_LEN: u64 = 100_000_000;

/// One validated tensor entry, borrowed from its [`Header`]. Offsets are relative to the start of the
/// data area.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TensorInfo<'h> {
    /// The tensor's name.
    pub name: &'h str,
    /// Element type.
    pub dtype: Dtype,
    /// Dimensions (empty for a scalar).
    pub shape: &'h [u64],
    /// First byte, relative to the data area.
    pub start: u64,
    /// One past the last byte, relative to the data area.
    pub end: u64,
}

impl TensorInfo<'_> {
    /// Size in bytes.
    #[must_use]
    pub fn byte_len(&self) -> u64 {
        self.end - self.start
    }
}

/// A tensor entry in the header's table: its name and shape are ranges of the shared arenas, so a
/// header of n tensors is four allocations, not four per tensor (the allocations, not the JSON, were
/// most of the cost of opening a file: docs/benchmarks.md, issue 14).
#[derive(Debug, Clone, Copy)]
struct Entry {
    name: (u32, u32),
    shape: (u32, u32),
    dtype: Dtype,
    start: u64,
    end: u64,
}

/// The tensors of a header: entries plus the arenas their names and shapes live in.
#[derive(Debug, Clone, Default)]
struct Table {
    names: String,
    dims: Vec<u64>,
    entries: Vec<Entry>,
}

impl Table {
    fn with_capacity(tensors: usize, name_bytes: usize) -> Table {
        Table {
            names: String::with_capacity(name_bytes),
            dims: Vec::with_capacity(tensors.saturating_mul(2)),
            entries: Vec::with_capacity(tensors),
        }
    }

    fn name(&self, e: &Entry) -> &str {
        self.names
            .get(e.name.0 as usize..e.name.0 as usize + e.name.1 as usize)
            .unwrap_or_default()
    }

    fn info(&self, e: &Entry) -> TensorInfo<'_> {
        TensorInfo {
            name: self.name(e),
            dtype: e.dtype,
            shape: self
                .dims
                .get(e.shape.0 as usize..e.shape.0 as usize + e.shape.1 as usize)
                .unwrap_or_default(),
            start: e.start,
            end: e.end,
        }
    }

    /// Append a tensor (name and shape copied into the arenas). The arenas are indexed by u32: a
    /// header is at most 100 MB, so neither can pass 2^32 bytes or elements.
    fn push(&mut self, name: &str, dtype: Dtype, shape: &[u64], start: u64, end: u64) {
        let n = u32::try_from(self.names.len()).unwrap_or(u32::MAX);
        self.names.push_str(name);
        let d = u32::try_from(self.dims.len()).unwrap_or(u32::MAX);
        self.dims.extend_from_slice(shape);
        self.entries.push(Entry {
            name: (n, u32::try_from(name.len()).unwrap_or(u32::MAX)),
            shape: (d, u32::try_from(shape.len()).unwrap_or(u32::MAX)),
            dtype,
            start,
            end,
        });
    }
}

/// Name → entry position: open addressing over u32 positions, keyed `SipHash` (names come from untrusted
/// files: a fixed hash would let a crafted header of colliding names make the open quadratic).
#[derive(Debug, Clone)]
struct NameIndex {
    hasher: RandomState,
    slots: Vec<u32>,
}

const EMPTY: u32 = u32::MAX;

impl NameIndex {
    fn with_capacity(n: usize) -> NameIndex {
        NameIndex {
            hasher: RandomState::new(),
            slots: vec![EMPTY; n.saturating_mul(2).max(8).next_power_of_two()],
        }
    }

    fn slot_of(&self, name: &str) -> usize {
        // The mask keeps the slot below the table's length (a power of two).
        // Truncating the hash on a 32-bit target is fine: only its low bits are used.
        #[allow(clippy::cast_possible_truncation)]
        let h = {
            // The name's bytes in one write (`hash_one(name)` adds a second for `str`'s terminator).
            let mut h = self.hasher.build_hasher();
            h.write(name.as_bytes());
            h.finish() as usize
        };
        h & (self.slots.len() - 1)
    }

    /// Insert entry `at` named `name`; Err(existing position) when the name is already there.
    fn insert(&mut self, table: &Table, name: &str, at: u32) -> Result<(), u32> {
        if table.entries.len() * 2 > self.slots.len() {
            self.grow(table);
        }
        let mask = self.slots.len() - 1;
        let mut i = self.slot_of(name);
        loop {
            match self.slots.get(i).copied() {
                Some(EMPTY) | None => break,
                Some(p) => {
                    if table
                        .entries
                        .get(p as usize)
                        .is_some_and(|e| table.name(e) == name)
                    {
                        return Err(p);
                    }
                }
            }
            i = (i + 1) & mask;
        }
        if let Some(s) = self.slots.get_mut(i) {
            *s = at;
        }
        Ok(())
    }

    fn grow(&mut self, table: &Table) {
        let old = std::mem::take(&mut self.slots);
        self.slots = vec![EMPTY; (old.len() * 2).max(8)];
        let mask = self.slots.len() - 1;
        for p in old.into_iter().filter(|&p| p != EMPTY) {
            let Some(e) = table.entries.get(p as usize) else {
                continue;
            };
            let mut i = self.slot_of(table.name(e));
            while self.slots.get(i).is_some_and(|&s| s != EMPTY) {
                i = (i + 1) & mask;
            }
            if let Some(s) = self.slots.get_mut(i) {
                *s = p;
            }
        }
    }

    fn find(&self, table: &Table, name: &str) -> Option<usize> {
        let mask = self.slots.len() - 1;
        let mut i = self.slot_of(name);
        loop {
            let p = *self.slots.get(i)?;
            if p == EMPTY {
                return None;
            }
            let e = table.entries.get(p as usize)?;
            if table.name(e) == name {
                return Some(p as usize);
            }
            i = (i + 1) & mask;
        }
    }

    /// Renumber every position through `map` (header order → offset order).
    fn renumber(&mut self, map: &[u32]) {
        for s in self.slots.iter_mut().filter(|s| **s != EMPTY) {
            *s = map.get(*s as usize).copied().unwrap_or(EMPTY);
        }
    }
}

/// A validated header.
#[derive(Debug, Clone)]
pub struct Header {
    json_len: u64,
    metadata: Option<BTreeMap<String, String>>,
    /// Entries in offset order.
    table: Table,
    index: NameIndex,
}

/// The tensors of a header in offset order (see [`Header::tensors`]).
#[derive(Debug, Clone)]
pub struct Tensors<'h> {
    table: &'h Table,
    inner: std::slice::Iter<'h, Entry>,
}

impl<'h> Iterator for Tensors<'h> {
    type Item = TensorInfo<'h>;
    fn next(&mut self) -> Option<TensorInfo<'h>> {
        self.inner.next().map(|e| self.table.info(e))
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        self.inner.size_hint()
    }
}

impl DoubleEndedIterator for Tensors<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        self.inner.next_back().map(|e| self.table.info(e))
    }
}

impl ExactSizeIterator for Tensors<'_> {}

/// Read the header length from the first 8 bytes of a `file_len`-byte file and check it (steps 1–3).
pub fn header_len(first: &[u8], file_len: u64) -> Result<u64, SafetensorsError> {
    let Some(prefix) = first.get(..8) else {
        return Err(SafetensorsError::HeaderTooSmall {
            file_len: file_len.min(first.len() as u64),
        });
    };
    if file_len < 8 {
        return Err(SafetensorsError::HeaderTooSmall { file_len });
    }
    let mut le = [0u8; 8];
    le.copy_from_slice(prefix);
    let n = u64::from_le_bytes(le);
    if n > MAX_HEADER_LEN {
        return Err(SafetensorsError::HeaderTooLarge {
            header_len: n,
            max: MAX_HEADER_LEN,
        });
    }
    // n ≤ 100 MB, so n + 8 cannot overflow.
    if n + 8 > file_len {
        return Err(SafetensorsError::HeaderPastEnd {
            header_len: n,
            file_len,
        });
    }
    Ok(n)
}

/// Steps 1–4: the header's length (checked) and its JSON text (UTF-8).
fn header_text(prefix: &[u8], file_len: u64) -> Result<(u64, &str), SafetensorsError> {
    let n = header_len(prefix, file_len)?;
    let json = usize::try_from(n)
        .ok()
        .and_then(|n| prefix.get(8..8 + n))
        .ok_or(SafetensorsError::HeaderPastEnd {
            header_len: n,
            file_len: prefix.len() as u64,
        })?;
    let text = std::str::from_utf8(json).map_err(|e| SafetensorsError::HeaderNotUtf8 {
        offset: e.valid_up_to() as u64,
    })?;
    Ok((n, text))
}

impl Header {
    /// Parse and validate the header of a `file_len`-byte file whose first bytes are `prefix`
    /// (`prefix` must hold at least the 8-byte length and the header itself).
    pub fn parse(prefix: &[u8], file_len: u64) -> Result<Header, SafetensorsError> {
        let (n, text) = header_text(prefix, file_len)?;
        // The common case (what every writer produces) in one pass without serde; anything else, and
        // every error, through serde (the same result: `fast_path_agrees_with_serde`).
        let raw = match parse_plain(text) {
            Some(raw) => raw,
            None => parse_json(text)?,
        };
        validate(n, raw, file_len - 8 - n)
    }

    /// [`Header::parse`] without the fast path: every header through serde (for the differential
    /// tests and the fuzz target, which check that both give the same result).
    #[doc(hidden)]
    pub fn parse_reference(prefix: &[u8], file_len: u64) -> Result<Header, SafetensorsError> {
        let (n, text) = header_text(prefix, file_len)?;
        validate(n, parse_json(text)?, file_len - 8 - n)
    }

    /// Whether the fast path reads this JSON header text itself (tests: it must take what the
    /// writers produce).
    #[doc(hidden)]
    #[must_use]
    pub fn takes_fast_path(json: &[u8]) -> bool {
        std::str::from_utf8(json).is_ok_and(|t| parse_plain(t).is_some())
    }

    /// Length of the JSON header in bytes (the data area starts at `8 + header_len`).
    #[must_use]
    pub fn header_len(&self) -> u64 {
        self.json_len
    }

    /// Absolute file offset of the data area.
    #[must_use]
    pub fn data_start(&self) -> u64 {
        8 + self.json_len
    }

    /// The `__metadata__` map, when present.
    #[must_use]
    pub fn metadata(&self) -> Option<&BTreeMap<String, String>> {
        self.metadata.as_ref()
    }

    /// The tensors, ordered by offset.
    #[must_use]
    pub fn tensors(&self) -> Tensors<'_> {
        Tensors {
            table: &self.table,
            inner: self.table.entries.iter(),
        }
    }

    /// Number of tensors.
    #[must_use]
    pub fn tensor_count(&self) -> usize {
        self.table.entries.len()
    }

    /// The tensor named `name`.
    #[must_use]
    pub fn get(&self, name: &str) -> Option<TensorInfo<'_>> {
        let at = self.index.find(&self.table, name)?;
        self.table.entries.get(at).map(|e| self.table.info(e))
    }

    /// Total size of the data area.
    #[must_use]
    pub fn data_len(&self) -> u64 {
        self.table.entries.last().map_or(0, |t| t.end)
    }
}

struct RawHeader {
    metadata: Option<BTreeMap<String, String>>,
    /// The tensors in header order.
    table: Table,
    /// Tensor name → position in `table` (built while parsing: it also finds duplicate names).
    index: NameIndex,
}

/// Parse the JSON (step 5). Typed failures found inside serde visitors travel in `failure`.
///
/// The nesting limit of `serde_json` (128) holds for every value, the ignored ones included: they are
/// skipped with [`Skip`], which walks them through `deserialize_any` (depth-checked) rather than
/// serde's `IgnoredAny` (which `serde_json` skips without counting depth).
fn parse_json(text: &str) -> Result<RawHeader, SafetensorsError> {
    let trimmed = text.trim_start_matches([' ', '\t', '\n', '\r']);
    if !trimmed.starts_with('{') {
        // Valid JSON that is not an object, or not JSON at all: tell which.
        let mut de = serde_json::Deserializer::from_str(text);
        return Err(match Skip.deserialize(&mut de).and_then(|()| de.end()) {
            Ok(()) => SafetensorsError::HeaderNotObject {
                found: trimmed.chars().take(16).collect(),
            },
            Err(e) => json_error(&e),
        });
    }
    // Every tensor entry names `data_offsets`, so its count bounds the number of tensors: the table
    // and the index are sized once instead of growing (and rehashing every name) a dozen times.
    let capacity = text.matches("\"data_offsets\"").count();
    let failure = RefCell::new(None);
    let mut de = serde_json::Deserializer::from_str(text);
    let result = de
        .deserialize_map(HeaderVisitor {
            failure: &failure,
            capacity,
        })
        .and_then(|h| de.end().map(|()| h));
    match result {
        Ok(h) => Ok(h),
        Err(e) => Err(failure.into_inner().unwrap_or_else(|| json_error(&e))),
    }
}

fn json_error(e: &serde_json::Error) -> SafetensorsError {
    SafetensorsError::HeaderNotJson {
        line: e.line() as u64,
        column: e.column() as u64,
        message: e.to_string(),
    }
}

type Failure<'a> = &'a RefCell<Option<SafetensorsError>>;

fn fail<E: de::Error>(failure: Failure<'_>, err: SafetensorsError) -> E {
    let msg = err.to_string();
    failure.borrow_mut().get_or_insert(err);
    E::custom(msg)
}

/// Skips any JSON value, recursing through `deserialize_any` so that the deserializer's nesting limit
/// applies (serde's `IgnoredAny` is skipped by `serde_json` without one).
#[derive(Clone, Copy)]
struct Skip;

impl<'de> DeserializeSeed<'de> for Skip {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Skip {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Skip)?.is_some() {}
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while map.next_key_seed(Skip)?.is_some() {
            map.next_value_seed(Skip)?;
        }
        Ok(())
    }
}

struct HeaderVisitor<'a> {
    failure: Failure<'a>,
    /// At least the number of tensors (see `parse_json`).
    capacity: usize,
}

impl<'de> Visitor<'de> for HeaderVisitor<'_> {
    type Value = RawHeader;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a safetensors header object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawHeader, A::Error> {
        let mut out = RawHeader {
            metadata: None,
            table: Table::with_capacity(self.capacity, 0),
            index: NameIndex::with_capacity(self.capacity),
        };
        let mut seen_metadata = false;
        while let Some(key) = map.next_key::<String>()? {
            if key == "__metadata__" {
                if std::mem::replace(&mut seen_metadata, true) {
                    return Err(fail(
                        self.failure,
                        SafetensorsError::DuplicateName { name: key },
                    ));
                }
                // `null` is no metadata, as in the reference (its field is an `Option`).
                out.metadata = map.next_value_seed(MetadataSeed {
                    failure: self.failure,
                })?;
                continue;
            }
            let at = u32::try_from(out.table.entries.len()).unwrap_or(EMPTY);
            if out.index.insert(&out.table, &key, at).is_err() {
                return Err(fail(
                    self.failure,
                    SafetensorsError::DuplicateName { name: key },
                ));
            }
            let (dtype, shape, (start, end)) = map.next_value_seed(TensorSeed {
                failure: self.failure,
                name: &key,
            })?;
            out.table.push(&key, dtype, &shape, start, end);
        }
        Ok(out)
    }
}

struct MetadataSeed<'a> {
    failure: Failure<'a>,
}

impl<'de> DeserializeSeed<'de> for MetadataSeed<'_> {
    type Value = Option<BTreeMap<String, String>>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for MetadataSeed<'_> {
    type Value = Option<BTreeMap<String, String>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a map of strings to strings, or null")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = BTreeMap::new();
        while let Some(key) = map.next_key::<String>()? {
            // serde_json::Value is parsed through `deserialize_any`: the nesting limit applies.
            let value: serde_json::Value = map.next_value()?;
            let serde_json::Value::String(value) = value else {
                return Err(fail(
                    self.failure,
                    SafetensorsError::MetadataNotStringMap {
                        message: format!("value of {key:?} is {}", kind(&value)),
                    },
                ));
            };
            if out.insert(key.clone(), value).is_some() {
                return Err(fail(
                    self.failure,
                    SafetensorsError::DuplicateName {
                        name: format!("__metadata__.{key}"),
                    },
                ));
            }
        }
        Ok(Some(out))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Err(self.not_a_map("a boolean"))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Err(self.not_a_map("a number"))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Err(self.not_a_map("a number"))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Err(self.not_a_map("a number"))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Err(self.not_a_map("a string"))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
        Err(self.not_a_map("an array"))
    }
}

impl MetadataSeed<'_> {
    fn not_a_map<E: de::Error>(&self, what: &str) -> E {
        fail(
            self.failure,
            SafetensorsError::MetadataNotStringMap {
                message: format!("it is {what}"),
            },
        )
    }
}

fn kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

struct TensorSeed<'a> {
    failure: Failure<'a>,
    name: &'a str,
}

type RawEntry = (Dtype, Vec<u64>, (u64, u64));

impl<'de> DeserializeSeed<'de> for TensorSeed<'_> {
    type Value = RawEntry;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl TensorSeed<'_> {
    fn invalid<E: de::Error>(&self, message: impl Into<String>) -> E {
        fail(
            self.failure,
            SafetensorsError::InvalidTensorEntry {
                name: self.name.to_string(),
                message: message.into(),
            },
        )
    }
}

/// The fields of a tensor entry, read without allocating.
enum Field {
    Dtype,
    Shape,
    Offsets,
    Other,
}

impl<'de> de::Deserialize<'de> for Field {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Field, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Field;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Field, E> {
                Ok(match s {
                    "dtype" => Field::Dtype,
                    "shape" => Field::Shape,
                    "data_offsets" => Field::Offsets,
                    _ => Field::Other,
                })
            }
        }
        d.deserialize_str(V)
    }
}

/// What a value of a tensor entry turned out to be: the expected thing, or a description of what was
/// found instead (the entry's error message).
type Found<T> = Result<T, String>;

/// `dtype`: a string naming a known dtype (`Ok(Err(name))` for an unknown one), read without
/// allocating for known names.
struct DtypeSeed;

impl<'de> DeserializeSeed<'de> for DtypeSeed {
    type Value = Found<Result<Dtype, String>>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        let v: serde_json::Value = match d.deserialize_any(DtypeVisitor)? {
            Ok(parsed) => return Ok(Ok(parsed)),
            Err(v) => v,
        };
        Ok(Err(format!("dtype is {}, not a string", kind(&v))))
    }
}

/// Visits a dtype string; anything else comes back as a `serde_json::Value` (for the message).
struct DtypeVisitor;

impl<'de> Visitor<'de> for DtypeVisitor {
    type Value = Result<Result<Dtype, String>, serde_json::Value>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a dtype string")
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
        Ok(Ok(Dtype::parse(s).ok_or_else(|| s.to_string())))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Err(serde_json::Value::Null))
    }
    fn visit_bool<E: de::Error>(self, b: bool) -> Result<Self::Value, E> {
        Ok(Err(serde_json::Value::Bool(b)))
    }
    fn visit_i64<E: de::Error>(self, n: i64) -> Result<Self::Value, E> {
        Ok(Err(n.into()))
    }
    fn visit_u64<E: de::Error>(self, n: u64) -> Result<Self::Value, E> {
        Ok(Err(n.into()))
    }
    fn visit_f64<E: de::Error>(self, n: f64) -> Result<Self::Value, E> {
        Ok(Err(n.into()))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element_seed(Skip)?.is_some() {}
        Ok(Err(serde_json::Value::Array(Vec::new())))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_key_seed(Skip)?.is_some() {
            map.next_value_seed(Skip)?;
        }
        Ok(Err(serde_json::Value::Object(serde_json::Map::new())))
    }
}

/// `shape` or `data_offsets`: an array of non-negative integers, read straight into a `Vec<u64>`.
struct U64sSeed {
    field: &'static str,
}

impl<'de> DeserializeSeed<'de> for U64sSeed {
    type Value = Found<Vec<u64>>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl U64sSeed {
    fn not_array(&self, what: &str) -> Found<Vec<u64>> {
        Err(format!("{} is {what}, not an array", self.field))
    }
}

impl<'de> Visitor<'de> for U64sSeed {
    type Value = Found<Vec<u64>>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of non-negative integers")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(8));
        // Elements are read as `serde_json::Value` (no allocation for a number; depth-checked for
        // anything else), so that a bad element is quoted in the message as it was written.
        while let Some(x) = seq.next_element::<serde_json::Value>()? {
            let Some(n) = x.as_u64() else {
                // Skip the rest (depth-checked) so the error is ours, not a parse error.
                while seq.next_element_seed(Skip)?.is_some() {}
                return Ok(Err(format!(
                    "{} holds {x}, not a non-negative integer",
                    self.field
                )));
            };
            out.push(n);
        }
        Ok(Ok(out))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(self.not_array("null"))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(self.not_array("a boolean"))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(self.not_array("a number"))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(self.not_array("a number"))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(self.not_array("a number"))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(self.not_array("a string"))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_key_seed(Skip)?.is_some() {
            map.next_value_seed(Skip)?;
        }
        Ok(self.not_array("an object"))
    }
}

impl<'de> Visitor<'de> for TensorSeed<'_> {
    type Value = RawEntry;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a tensor entry object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawEntry, A::Error> {
        let mut dtype: Option<Result<Dtype, String>> = None;
        let mut shape: Option<Vec<u64>> = None;
        let mut offsets: Option<Vec<u64>> = None;
        while let Some(key) = map.next_key::<Field>()? {
            let (dup, name) = match key {
                Field::Dtype => {
                    let v = map
                        .next_value_seed(DtypeSeed)?
                        .map_err(|m| self.invalid(m))?;
                    (dtype.replace(v).is_some(), "dtype")
                }
                Field::Shape => {
                    let v = map
                        .next_value_seed(U64sSeed { field: "shape" })?
                        .map_err(|m| self.invalid(m))?;
                    (shape.replace(v).is_some(), "shape")
                }
                Field::Offsets => {
                    let v = map
                        .next_value_seed(U64sSeed {
                            field: "data_offsets",
                        })?
                        .map_err(|m| self.invalid(m))?;
                    (offsets.replace(v).is_some(), "data_offsets")
                }
                // Unknown fields are ignored, as the reference implementation does (but the nesting
                // limit still holds inside them).
                Field::Other => {
                    map.next_value_seed(Skip)?;
                    (false, "")
                }
            };
            if dup {
                return Err(self.invalid(format!("field {name} appears twice")));
            }
        }
        let dtype = dtype.ok_or_else(|| self.invalid("missing field dtype"))?;
        let shape = shape.ok_or_else(|| self.invalid("missing field shape"))?;
        let offsets = offsets.ok_or_else(|| self.invalid("missing field data_offsets"))?;
        let [start, end] = offsets[..] else {
            return Err(self.invalid(format!(
                "data_offsets has {} numbers, expected 2",
                offsets.len()
            )));
        };
        let dtype_parsed = dtype.map_err(|dtype| {
            fail(
                self.failure,
                SafetensorsError::UnknownDtype {
                    name: self.name.to_string(),
                    dtype,
                },
            )
        })?;
        Ok((dtype_parsed, shape, (start, end)))
    }

    fn visit_unit<E: de::Error>(self) -> Result<RawEntry, E> {
        Err(self.invalid("entry is null, not an object"))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<RawEntry, E> {
        Err(self.invalid("entry is a boolean, not an object"))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<RawEntry, E> {
        Err(self.invalid("entry is a number, not an object"))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<RawEntry, E> {
        Err(self.invalid("entry is a number, not an object"))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<RawEntry, E> {
        Err(self.invalid("entry is a number, not an object"))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<RawEntry, E> {
        Err(self.invalid("entry is a string, not an object"))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<RawEntry, A::Error> {
        Err(self.invalid("entry is an array, not an object"))
    }
}

/// Byte size of `shape` elements of `dtype`, with checked arithmetic.
pub(super) fn byte_size(name: &str, dtype: Dtype, shape: &[u64]) -> Result<u64, SafetensorsError> {
    let overflow = || SafetensorsError::ShapeOverflow {
        name: name.to_string(),
        shape: shape.to_vec(),
        bits: dtype.bits(),
    };
    let elements = shape
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d))
        .ok_or_else(overflow)?;
    let bits = elements.checked_mul(dtype.bits()).ok_or_else(overflow)?;
    if bits % 8 != 0 {
        return Err(SafetensorsError::MisalignedBits {
            name: name.to_string(),
            elements,
            bits: dtype.bits(),
        });
    }
    Ok(bits / 8)
}

/// The fast path of step 5: a one-pass reader of the headers writers produce, with no allocation per
/// tensor. It takes a strict subset of JSON: strings without escapes, tensor entries with exactly the
/// three fields `dtype` (a known dtype), `shape` and `data_offsets` (plain non-negative integers, two
/// offsets), a `__metadata__` map of plain strings, each at most once, no duplicate names. On anything
/// else it returns `None` and the serde path parses the header (and reports its errors), so accepting
/// a header here never changes what it means.
fn parse_plain(text: &str) -> Option<RawHeader> {
    let json = text.as_bytes();
    let mut r = Plain { text, at: 0 };
    // About one tensor per 64 bytes of JSON: the arenas are sized once.
    let guess = json.len() / 64 + 1;
    let mut out = RawHeader {
        metadata: None,
        table: Table::with_capacity(guess, json.len() / 2),
        index: NameIndex::with_capacity(guess),
    };
    let mut shape: Vec<u64> = Vec::with_capacity(8);
    r.ws();
    r.eat(b'{')?;
    r.ws();
    if r.peek()? == b'}' {
        r.at += 1;
    } else {
        loop {
            let key = r.string()?;
            r.ws();
            r.eat(b':')?;
            r.ws();
            if key == "__metadata__" {
                if out.metadata.is_some() {
                    return None;
                }
                out.metadata = Some(r.string_map()?);
            } else {
                let (dtype, start, end) = r.entry(&mut shape)?;
                let at = u32::try_from(out.table.entries.len()).ok()?;
                out.index.insert(&out.table, key, at).ok()?;
                out.table.push(key, dtype, &shape, start, end);
            }
            if r.list_end(b'}')? {
                break;
            }
        }
    }
    r.ws();
    (r.at == json.len()).then_some(out)
}

/// Position of the first `"`, `\\` or control character (below 0x20) in `bytes`, eight bytes at a
/// time: in each word, the lowest byte flagged by the classic "has a zero byte" / "has a byte less than"
/// tests is exact (only bytes above a flagged one can be flagged falsely, by a borrow), so the lowest
/// flag of the three tests together is the first stop.
fn string_stop(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    const QUOTE: u64 = ONES * b'"' as u64;
    const BACKSLASH: u64 = ONES * b'\\' as u64;
    const SPACE: u64 = ONES * 0x20;
    let mut words = bytes.chunks_exact(8);
    let mut at = 0usize;
    for w in &mut words {
        let mut word = [0u8; 8];
        word.copy_from_slice(w);
        let x = u64::from_le_bytes(word);
        let (q, b) = (x ^ QUOTE, x ^ BACKSLASH);
        let flags = ((q.wrapping_sub(ONES) & !q)
            | (b.wrapping_sub(ONES) & !b)
            | (x.wrapping_sub(SPACE) & !x))
            & HIGH;
        if flags != 0 {
            return Some(at + flags.trailing_zeros() as usize / 8);
        }
        at += 8;
    }
    words
        .remainder()
        .iter()
        .position(|&c| c == b'"' || c == b'\\' || c < 0x20)
        .map(|p| at + p)
}

/// The fast path's cursor.
struct Plain<'a> {
    /// The header text (valid UTF-8).
    text: &'a str,
    at: usize,
}

impl<'a> Plain<'a> {
    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.at).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.at += 1;
        Some(b)
    }

    fn eat(&mut self, b: u8) -> Option<()> {
        (self.next()? == b).then_some(())
    }

    /// After an element of an object or array closed by `close`: whitespace, then `,` (Some(false),
    /// more follow) or `close` (Some(true)); None for anything else.
    fn list_end(&mut self, close: u8) -> Option<bool> {
        self.ws();
        match self.next()? {
            b',' => {
                self.ws();
                Some(false)
            }
            b if b == close => Some(true),
            _ => None,
        }
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    /// A string without escapes or control characters (`"` is ASCII, so the text between the quotes
    /// is on character boundaries of the already validated header).
    fn string(&mut self) -> Option<&'a str> {
        self.eat(b'"')?;
        let rest = self.text.as_bytes().get(self.at..)?;
        let len = string_stop(rest)?;
        if rest.get(len) != Some(&b'"') {
            return None;
        }
        let out = self.text.get(self.at..self.at + len)?;
        self.at += len + 1;
        Some(out)
    }

    /// A non-negative integer as JSON writes it (no sign, fraction, exponent or leading zero) that fits
    /// in a u64, read in one pass. Up to 19 digits always fit, so they are summed without overflow
    /// checks (whose 128-bit multiplies were most of the parse); only a 20th digit is checked, and a
    /// 21st refused.
    fn integer(&mut self) -> Option<u64> {
        let bytes = self.text.as_bytes();
        let start = self.at;
        let mut at = start;
        let mut n = 0u64;
        while at - start < 19 {
            match bytes.get(at) {
                Some(&b) if b.is_ascii_digit() => {
                    n = n.wrapping_mul(10).wrapping_add(u64::from(b - b'0'));
                    at += 1;
                }
                _ => break,
            }
        }
        if let Some(&b) = bytes.get(at).filter(|b| b.is_ascii_digit()) {
            n = n.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
            at += 1;
            if bytes.get(at).is_some_and(u8::is_ascii_digit) {
                return None;
            }
        }
        let digits = at - start;
        if digits == 0 || (digits > 1 && bytes.get(start) == Some(&b'0')) {
            return None;
        }
        if matches!(bytes.get(at), Some(b'.' | b'e' | b'E')) {
            return None;
        }
        self.at = at;
        Some(n)
    }

    /// The literal `lit` (Some, and past it) or not (None, the cursor unmoved). Its length is a constant,
    /// so the compare is a few integer compares.
    fn lit<const N: usize>(&mut self, lit: &[u8; N]) -> Option<()> {
        let end = self.at.checked_add(N)?;
        let here: &[u8; N] = self.text.as_bytes().get(self.at..end)?.try_into().ok()?;
        (here == lit).then(|| self.at = end)
    }

    /// `[a, b]`: exactly two plain integers (anything else is left to serde, which reports it).
    fn pair(&mut self) -> Option<(u64, u64)> {
        self.eat(b'[')?;
        self.ws();
        let a = self.integer()?;
        if self.list_end(b']')? {
            return None;
        }
        let b = self.integer()?;
        self.list_end(b']')?.then_some((a, b))
    }

    /// `[n, n, ...]` of plain integers into `out` (cleared first).
    fn integers(&mut self, out: &mut Vec<u64>) -> Option<()> {
        out.clear();
        self.eat(b'[')?;
        self.ws();
        if self.peek()? == b']' {
            self.at += 1;
            return Some(());
        }
        loop {
            out.push(self.integer()?);
            if self.list_end(b']')? {
                return Some(());
            }
        }
    }

    /// `{"dtype": …, "shape": […], "data_offsets": [a, b]}` in any order, each field once; the shape
    /// is left in `shape`.
    fn entry(&mut self, shape: &mut Vec<u64>) -> Option<(Dtype, u64, u64)> {
        let start = self.at;
        if let Some(e) = self.entry_as_written(shape) {
            return Some(e);
        }
        self.at = start;
        let mut dtype = None;
        let mut have_shape = false;
        let mut offsets = None;
        self.eat(b'{')?;
        self.ws();
        loop {
            let field = self.string()?;
            self.ws();
            self.eat(b':')?;
            self.ws();
            match field {
                "dtype" if dtype.is_none() => dtype = Some(Dtype::parse(self.string()?)?),
                "shape" if !have_shape => {
                    self.integers(shape)?;
                    have_shape = true;
                }
                "data_offsets" if offsets.is_none() => offsets = Some(self.pair()?),
                _ => return None,
            }
            if self.list_end(b'}')? {
                break;
            }
        }
        let (start, end) = offsets?;
        have_shape.then_some((dtype?, start, end))
    }

    /// [`Plain::entry`] as every writer writes it, `{"dtype":"…","shape":[…],"data_offsets":[a,b]}`
    /// with no whitespace and the fields in this order: literals compared at once instead of each
    /// field's name read and matched. None for anything else (the caller then reads the entry from its
    /// start the general way), so this never accepts what the general way would not, nor reads it
    /// differently.
    fn entry_as_written(&mut self, shape: &mut Vec<u64>) -> Option<(Dtype, u64, u64)> {
        self.lit(b"{\"dtype\":")?;
        let dtype = Dtype::parse(self.string()?)?;
        self.lit(b",\"shape\":[")?;
        shape.clear();
        if self.lit(b"]").is_none() {
            loop {
                shape.push(self.integer()?);
                match self.next()? {
                    b',' => {}
                    b']' => break,
                    _ => return None,
                }
            }
        }
        self.lit(b",\"data_offsets\":[")?;
        let a = self.integer()?;
        self.lit(b",")?;
        let b = self.integer()?;
        self.lit(b"]}")?;
        Some((dtype, a, b))
    }

    /// `{"k": "v", ...}` of plain strings, no key twice.
    fn string_map(&mut self) -> Option<BTreeMap<String, String>> {
        let mut out = BTreeMap::new();
        self.eat(b'{')?;
        self.ws();
        if self.peek()? == b'}' {
            self.at += 1;
            return Some(out);
        }
        loop {
            let k = self.string()?;
            self.ws();
            self.eat(b':')?;
            self.ws();
            let v = self.string()?;
            if out.insert(k.to_string(), v.to_string()).is_some() {
                return None;
            }
            if self.list_end(b'}')? {
                return Some(out);
            }
        }
    }
}

/// Positions of `table`'s entries sorted by (start, end), ties by name: sorted on the offsets held
/// together with the position (no lookups per comparison); equal offsets (refused by the validation
/// anyway) are then ordered by name.
fn offset_order(table: &Table) -> Vec<u32> {
    let mut keyed: Vec<(u64, u64, u32)> = table
        .entries
        .iter()
        .zip(0u32..)
        .map(|(e, i)| (e.start, e.end, i))
        .collect();
    keyed.sort_unstable();
    let name = |i: u32| table.entries.get(i as usize).map_or("", |e| table.name(e));
    for run in keyed.chunk_by_mut(|a, b| (a.0, a.1) == (b.0, b.1)) {
        if run.len() > 1 {
            run.sort_by(|a, b| name(a.2).cmp(name(b.2)));
        }
    }
    keyed.into_iter().map(|k| k.2).collect()
}

/// Step 6 and 7: offsets, sizes, coverage of the data area.
fn validate(header_len: u64, raw: RawHeader, data_len: u64) -> Result<Header, SafetensorsError> {
    let RawHeader {
        metadata,
        table,
        mut index,
    } = raw;
    // Sort by offsets as the reference does (files may list tensors in any order); names break ties
    // so that the error reported for a bad file does not depend on JSON key order. Positions are
    // sorted (not entries), so the index built while parsing is renumbered instead of rebuilt.
    let entry = |i: u32| table.entries.get(i as usize);
    let in_order = table
        .entries
        .windows(2)
        .all(|w| matches!(w, [a, b] if (a.start, a.end) < (b.start, b.end)));
    let order: Vec<u32> = if in_order {
        (0..u32::try_from(table.entries.len()).unwrap_or(0)).collect()
    } else {
        offset_order(&table)
    };
    let mut expected = 0u64;
    for &i in &order {
        let Some(e) = entry(i) else { continue };
        let t = table.info(e);
        if t.end < t.start {
            return Err(SafetensorsError::OffsetsReversed {
                name: t.name.to_string(),
                start: t.start,
                end: t.end,
            });
        }
        if t.start > expected {
            return Err(SafetensorsError::OffsetGap {
                name: t.name.to_string(),
                start: t.start,
                expected,
            });
        }
        if t.start < expected {
            return Err(SafetensorsError::OffsetOverlap {
                name: t.name.to_string(),
                start: t.start,
                expected,
            });
        }
        let size = byte_size(t.name, t.dtype, t.shape)?;
        if size != t.end - t.start {
            return Err(SafetensorsError::SizeMismatch {
                name: t.name.to_string(),
                expected: size,
                actual: t.end - t.start,
            });
        }
        if t.end > data_len {
            return Err(SafetensorsError::DataPastEnd {
                name: t.name.to_string(),
                end: t.end,
                data_len,
            });
        }
        expected = t.end;
    }
    if expected != data_len {
        return Err(SafetensorsError::TrailingBytes {
            data_end: expected,
            data_len,
            trailing: data_len - expected,
        });
    }
    let table = if in_order {
        table
    } else {
        // position in the header → position in offset order
        let mut sorted_at = vec![EMPTY; order.len()];
        for (at, &i) in order.iter().enumerate() {
            if let Some(slot) = sorted_at.get_mut(i as usize) {
                *slot = u32::try_from(at).unwrap_or(EMPTY);
            }
        }
        index.renumber(&sorted_at);
        Table {
            entries: order.iter().filter_map(|&i| entry(i).copied()).collect(),
            names: table.names,
            dims: table.dims,
        }
    };
    Ok(Header {
        json_len: header_len,
        metadata,
        table,
        index,
    })
}

#[cfg(test)]
mod tests {
    use super::{string_stop, Plain};
    use crate::safetensors::Dtype;

    /// The word-at-a-time scan finds the same first stop as a byte loop: each stop byte (and the
    /// bytes beside the classes' edges) at every position of the first three words, over fillers that
    /// include UTF-8 bytes (0x80 and up, which are not control characters).
    #[test]
    fn string_stop_matches_a_byte_loop() {
        let naive = |b: &[u8]| b.iter().position(|&c| c == b'"' || c == b'\\' || c < 0x20);
        let probes = [
            b'"', b'\\', 0x00, 0x01, 0x1f, 0x20, 0x21, 0x5b, 0x5d, 0x7f, 0x80, 0xc3, 0xff,
        ];
        let fillers = [b'a', b' ', 0x21, 0x23, 0x5d, 0x80, 0xa9, 0xff];
        for len in 0..26 {
            for &fill in &fillers {
                let base = vec![fill; len];
                assert_eq!(string_stop(&base), naive(&base), "{len} × {fill:#x}");
                for at in 0..len {
                    for &p in &probes {
                        let mut b = base.clone();
                        b[at] = p;
                        // a second stop after the first must not hide it
                        if at + 3 < len {
                            b[at + 3] = b'"';
                        }
                        assert_eq!(
                            string_stop(&b),
                            naive(&b),
                            "{len} × {fill:#x}, {p:#x} at {at}"
                        );
                    }
                }
            }
        }
    }

    /// Integers read in one pass: the same values and refusals as JSON's grammar and u64 allow.
    #[test]
    fn integers_read_in_one_pass() {
        let read = |t: &str| {
            let mut p = Plain { text: t, at: 0 };
            p.integer().map(|n| (n, p.at))
        };
        assert_eq!(read("0]"), Some((0, 1)));
        assert_eq!(read("7"), Some((7, 1)));
        assert_eq!(read("4096,"), Some((4096, 4)));
        assert_eq!(
            read("9999999999999999999]"),
            Some((9_999_999_999_999_999_999, 19))
        );
        assert_eq!(read("18446744073709551615"), Some((u64::MAX, 20)));
        assert_eq!(read("18446744073709551616"), None);
        assert_eq!(read("99999999999999999999"), None);
        assert_eq!(read("100000000000000000000"), None);
        for bad in ["", "]", "-1", "01", "00", "1.5", "1e3", "2E1", "+1", " 1"] {
            assert_eq!(read(bad), None, "{bad:?}");
        }
    }

    /// Dtype names: each parses to itself; near misses (a longer name, a prefix, a NUL, other case)
    /// do not.
    #[test]
    fn dtype_names_parse_exactly() {
        for d in Dtype::ALL {
            assert_eq!(Dtype::parse(d.as_str()), Some(d));
            let longer = format!("{}X", d.as_str());
            assert_eq!(Dtype::parse(&longer), None);
            assert_eq!(Dtype::parse(&format!("{}\0", d.as_str())), None);
            assert_eq!(Dtype::parse(&d.as_str()[..d.as_str().len() - 1]), None);
            assert_eq!(Dtype::parse(&d.as_str().to_lowercase()), None);
        }
        for bad in ["", "F", "F8_E4M3X", "FLOAT32", "bool"] {
            assert_eq!(Dtype::parse(bad), None, "{bad:?}");
        }
    }
}
