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
use std::collections::{BTreeMap, HashMap};
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

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
}

/// Parse the JSON (step 5). Typed failures found inside serde visitors travel in `failure`.
fn parse_json(text: &str) -> Result<RawHeader, SafetensorsError> {
    let trimmed = text.trim_start_matches([' ', '\t', '\n', '\r']);
    if !trimmed.starts_with('{') {
        // Valid JSON that is not an object, or not JSON at all: tell which.
        return Err(match serde_json::from_str::<IgnoredAny>(text) {
            Ok(_) => SafetensorsError::HeaderNotObject {
                found: trimmed.chars().take(16).collect(),
            },
            Err(e) => json_error(&e),
        });
    }
    let failure = RefCell::new(None);
    let mut de = serde_json::Deserializer::from_str(text);
    let result = de
        .deserialize_map(HeaderVisitor { failure: &failure })
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

struct HeaderVisitor<'a> {
    failure: Failure<'a>,
}

impl<'de> Visitor<'de> for HeaderVisitor<'_> {
    type Value = RawHeader;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a safetensors header object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawHeader, A::Error> {
        let mut seen = std::collections::HashSet::new();
        let mut out = RawHeader {
            metadata: None,
            tensors: Vec::new(),
        };
        while let Some(key) = map.next_key::<String>()? {
            if !seen.insert(key.clone()) {
                return Err(fail(
                    self.failure,
                    SafetensorsError::DuplicateName { name: key },
                ));
            }
            if key == "__metadata__" {
                out.metadata = Some(map.next_value_seed(MetadataSeed {
                    failure: self.failure,
                })?);
            } else {
                let (dtype, shape, offsets) = map.next_value_seed(TensorSeed {
                    failure: self.failure,
                    name: &key,
                })?;
                out.tensors.push(RawTensor {
                    name: key,
                    dtype,
                    shape,
                    offsets,
                });
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

    fn u64s(v: &serde_json::Value, field: &str) -> Result<Vec<u64>, String> {
        let serde_json::Value::Array(items) = v else {
            return Err(format!("{field} is {}, not an array", kind(v)));
        };
        items
            .iter()
            .map(|x| {
                x.as_u64()
                    .ok_or_else(|| format!("{field} holds {x}, not a non-negative integer"))
            })
            .collect()
    }
}

impl<'de> Visitor<'de> for TensorSeed<'_> {
    type Value = RawEntry;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a tensor entry object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawEntry, A::Error> {
        let mut dtype: Option<String> = None;
        let mut shape: Option<Vec<u64>> = None;
        let mut offsets: Option<Vec<u64>> = None;
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "dtype" | "shape" | "data_offsets" => {
                    let v: serde_json::Value = map.next_value()?;
                    let dup = match key.as_str() {
                        "dtype" => {
                            let serde_json::Value::String(s) = v else {
                                return Err(
                                    self.invalid(format!("dtype is {}, not a string", kind(&v)))
                                );
                            };
                            dtype.replace(s).is_some()
                        }
                        "shape" => shape
                            .replace(Self::u64s(&v, "shape").map_err(|m| self.invalid(m))?)
                            .is_some(),
                        _ => offsets
                            .replace(Self::u64s(&v, "data_offsets").map_err(|m| self.invalid(m))?)
                            .is_some(),
                    };
                    if dup {
                        return Err(self.invalid(format!("field {key} appears twice")));
                    }
                }
                // Unknown fields are ignored, as the reference implementation does.
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
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
        let Some(dtype_parsed) = Dtype::parse(&dtype) else {
            return Err(fail(
                self.failure,
                SafetensorsError::UnknownDtype {
                    name: self.name.to_string(),
                    dtype,
                },
            ));
        };
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
    let mut tensors: Vec<TensorInfo> = raw
        .tensors
        .into_iter()
        .map(|t| TensorInfo {
            name: t.name,
            dtype: t.dtype,
            shape: t.shape,
            start: t.offsets.0,
            end: t.offsets.1,
        })
        .collect();
    // Sort by offsets as the reference does (files may list tensors in any order); names break ties
    // so that the error reported for a bad file does not depend on JSON key order.
    tensors.sort_by(|a, b| {
        (a.start, a.end)
            .cmp(&(b.start, b.end))
            .then_with(|| a.name.cmp(&b.name))
    });
    let mut expected = 0u64;
    for t in &tensors {
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
    let index = tensors
        .iter()
        .enumerate()
        .map(|(i, t)| (t.name.clone(), i))
        .collect();
    Ok(Header {
        json_len: header_len,
        metadata: raw.metadata,
        tensors,
        index,
    })
}
