//! Header parsing and validation, in the reference implementation's order:
//!
//! 1. at least 8 bytes; 2. header length ≤ 100 MB; 3. header within the file; 4. UTF-8;
//! 5. a JSON object (duplicate keys refused, `__metadata__` a string→string map, each tensor entry
//!    well-formed with a known dtype); 6. tensors sorted by offsets: each starts where the previous ended
//!    (no gap, no overlap), ends after it starts, its element and byte counts (checked arithmetic) equal
//!    its byte range, and it lies inside the data area; 7. no bytes after the last tensor.
//!
//! A [`Header`] only exists once all of that holds; later code trusts it.

use std::cell::RefCell;
use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use super::{Dtype, SafetensorsError};

/// Largest header accepted, as in the reference implementation (100 MB).
pub const MAX_HEADER_LEN: u64 = 100_000_000;

/// One validated tensor entry. Offsets are relative to the start of the data area.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    /// The tensor's name.
    pub name: String,
    /// Element type.
    pub dtype: Dtype,
    /// Dimensions (empty for a scalar).
    pub shape: Vec<u64>,
    /// First byte, relative to the data area.
    pub start: u64,
    /// One past the last byte, relative to the data area.
    pub end: u64,
}

impl TensorInfo {
    /// Size in bytes.
    #[must_use]
    pub fn byte_len(&self) -> u64 {
        self.end - self.start
    }
}

/// A validated header.
#[derive(Debug, Clone)]
pub struct Header {
    json_len: u64,
    metadata: Option<BTreeMap<String, String>>,
    tensors: Vec<TensorInfo>,
    index: HashMap<String, usize>,
}

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

impl Header {
    /// Parse and validate the header of a `file_len`-byte file whose first bytes are `prefix`
    /// (`prefix` must hold at least the 8-byte length and the header itself).
    pub fn parse(prefix: &[u8], file_len: u64) -> Result<Header, SafetensorsError> {
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
        let raw = parse_json(text)?;
        let data_len = file_len - 8 - n;
        validate(n, raw, data_len)
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
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    /// The tensor named `name`.
    #[must_use]
    pub fn get(&self, name: &str) -> Option<&TensorInfo> {
        self.index.get(name).and_then(|&i| self.tensors.get(i))
    }

    /// Total size of the data area.
    #[must_use]
    pub fn data_len(&self) -> u64 {
        self.tensors.last().map_or(0, |t| t.end)
    }
}

struct RawTensor {
    name: String,
    dtype: Dtype,
    shape: Vec<u64>,
    offsets: (u64, u64),
}

struct RawHeader {
    metadata: Option<BTreeMap<String, String>>,
    tensors: Vec<RawTensor>,
    /// Tensor name → position in `tensors` (built while parsing: it also finds duplicate names).
    index: HashMap<String, usize>,
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
            tensors: Vec::with_capacity(self.capacity),
            index: HashMap::with_capacity(self.capacity),
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
                out.metadata = Some(map.next_value_seed(MetadataSeed {
                    failure: self.failure,
                })?);
                continue;
            }
            let at = out.tensors.len();
            match out.index.entry(key) {
                Entry::Occupied(e) => {
                    return Err(fail(
                        self.failure,
                        SafetensorsError::DuplicateName {
                            name: e.key().clone(),
                        },
                    ));
                }
                Entry::Vacant(e) => {
                    let (dtype, shape, offsets) = map.next_value_seed(TensorSeed {
                        failure: self.failure,
                        name: e.key(),
                    })?;
                    out.tensors.push(RawTensor {
                        name: e.key().clone(),
                        dtype,
                        shape,
                        offsets,
                    });
                    e.insert(at);
                }
            }
        }
        Ok(out)
    }
}

struct MetadataSeed<'a> {
    failure: Failure<'a>,
}

impl<'de> DeserializeSeed<'de> for MetadataSeed<'_> {
    type Value = BTreeMap<String, String>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for MetadataSeed<'_> {
    type Value = BTreeMap<String, String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a map of strings to strings")
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
        Ok(out)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Err(self.not_a_map("null"))
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

/// Step 6 and 7: offsets, sizes, coverage of the data area.
fn validate(header_len: u64, raw: RawHeader, data_len: u64) -> Result<Header, SafetensorsError> {
    let RawHeader {
        metadata,
        tensors: raw_tensors,
        mut index,
    } = raw;
    // Each tensor with its position in the header, so that the name index built while parsing can be
    // renumbered after the sort instead of hashing every name again.
    let mut tensors: Vec<(TensorInfo, usize)> = raw_tensors
        .into_iter()
        .enumerate()
        .map(|(i, t)| {
            (
                TensorInfo {
                    name: t.name,
                    dtype: t.dtype,
                    shape: t.shape,
                    start: t.offsets.0,
                    end: t.offsets.1,
                },
                i,
            )
        })
        .collect();
    // Sort by offsets as the reference does (files may list tensors in any order); names break ties
    // so that the error reported for a bad file does not depend on JSON key order.
    tensors.sort_by(|(a, _), (b, _)| {
        (a.start, a.end)
            .cmp(&(b.start, b.end))
            .then_with(|| a.name.cmp(&b.name))
    });
    let mut expected = 0u64;
    for (t, _) in &tensors {
        if t.end < t.start {
            return Err(SafetensorsError::OffsetsReversed {
                name: t.name.clone(),
                start: t.start,
                end: t.end,
            });
        }
        if t.start > expected {
            return Err(SafetensorsError::OffsetGap {
                name: t.name.clone(),
                start: t.start,
                expected,
            });
        }
        if t.start < expected {
            return Err(SafetensorsError::OffsetOverlap {
                name: t.name.clone(),
                start: t.start,
                expected,
            });
        }
        let size = byte_size(&t.name, t.dtype, &t.shape)?;
        if size != t.end - t.start {
            return Err(SafetensorsError::SizeMismatch {
                name: t.name.clone(),
                expected: size,
                actual: t.end - t.start,
            });
        }
        if t.end > data_len {
            return Err(SafetensorsError::DataPastEnd {
                name: t.name.clone(),
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
    // position in the header → position in offset order
    let mut sorted_at = vec![0usize; tensors.len()];
    for (at, (_, i)) in tensors.iter().enumerate() {
        if let Some(slot) = sorted_at.get_mut(*i) {
            *slot = at;
        }
    }
    for i in index.values_mut() {
        // INVARIANT: `index` holds each header position once, all below `tensors.len()`.
        *i = sorted_at.get(*i).copied().unwrap_or(usize::MAX);
    }
    Ok(Header {
        json_len: header_len,
        metadata,
        tensors: tensors.into_iter().map(|(t, _)| t).collect(),
        index,
    })
}
