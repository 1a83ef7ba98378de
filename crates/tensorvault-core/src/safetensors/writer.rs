//! The streaming writer. The caller declares every tensor (name, dtype, shape) up front; the writer
//! computes the reference layout (dtype order descending, then name; header padded with spaces to a
//! multiple of 8), writes the header to a temporary file next to the destination, then accepts the
//! tensors' bytes as a stream in layout order, in chunks of any size. Memory use is constant.
//! `finish` checks that every byte arrived, fsyncs, renames into place and fsyncs the folder.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::path::Path;

use super::header::byte_size;
use super::{Dtype, SafetensorsError};
use crate::io::AtomicFile;

/// A tensor to write: name, dtype, shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorSpec {
    /// Name (any string except `__metadata__`).
    pub name: String,
    /// Element type.
    pub dtype: Dtype,
    /// Dimensions (empty for a scalar).
    pub shape: Vec<u64>,
}

/// The file layout for a set of tensors: their order, byte ranges, and the padded header.
#[derive(Debug, Clone)]
pub struct Layout {
    /// Tensors in file order with their `(start, end)` offsets in the data area.
    pub tensors: Vec<(TensorSpec, u64, u64)>,
    /// The 8-byte length followed by the JSON header padded with spaces.
    pub header: Vec<u8>,
}

impl Layout {
    /// Total size of the data area.
    #[must_use]
    pub fn data_len(&self) -> u64 {
        self.tensors.last().map_or(0, |t| t.2)
    }

    /// Total file size.
    #[must_use]
    pub fn file_len(&self) -> u64 {
        self.header.len() as u64 + self.data_len()
    }
}

fn json_str(out: &mut String, s: &str) {
    // serde_json's escaping is the reference's (it serialises the header with serde_json).
    match serde_json::to_string(s) {
        Ok(j) => out.push_str(&j),
        // INVARIANT: serialising a &str cannot fail; keep a valid fallback anyway.
        Err(_) => out.push_str("\"\""),
    }
}

/// Compute the reference layout for `tensors` and `metadata`.
pub fn layout(
    tensors: Vec<TensorSpec>,
    metadata: Option<&BTreeMap<String, String>>,
) -> Result<Layout, SafetensorsError> {
    let mut seen = HashSet::new();
    for t in &tensors {
        if t.name == "__metadata__" {
            return Err(SafetensorsError::InvalidName {
                name: t.name.clone(),
                reason: "reserved for the metadata map",
            });
        }
        if !seen.insert(t.name.as_str()) {
            return Err(SafetensorsError::DuplicateName {
                name: t.name.clone(),
            });
        }
    }
    let mut tensors = tensors;
    tensors.sort_by(|a, b| b.dtype.cmp(&a.dtype).then_with(|| a.name.cmp(&b.name)));
    let mut json = String::from("{");
    let mut first = true;
    if let Some(meta) = metadata {
        json.push_str("\"__metadata__\":{");
        for (i, (k, v)) in meta.iter().enumerate() {
            if i > 0 {
                json.push(',');
            }
            json_str(&mut json, k);
            json.push(':');
            json_str(&mut json, v);
        }
        json.push('}');
        first = false;
    }
    let mut offset = 0u64;
    let mut out = Vec::with_capacity(tensors.len());
    for t in tensors {
        let size = byte_size(&t.name, t.dtype, &t.shape)?;
        let end = offset
            .checked_add(size)
            .ok_or_else(|| SafetensorsError::ShapeOverflow {
                name: t.name.clone(),
                shape: t.shape.clone(),
                bits: t.dtype.bits(),
            })?;
        if !first {
            json.push(',');
        }
        first = false;
        json_str(&mut json, &t.name);
        let _ = write!(json, ":{{\"dtype\":\"{}\",\"shape\":[", t.dtype);
        for (i, d) in t.shape.iter().enumerate() {
            if i > 0 {
                json.push(',');
            }
            let _ = write!(json, "{d}");
        }
        let _ = write!(json, "],\"data_offsets\":[{offset},{end}]}}");
        out.push((t, offset, end));
        offset = end;
    }
    json.push('}');
    while json.len() % 8 != 0 {
        json.push(' ');
    }
    let mut header = Vec::with_capacity(8 + json.len());
    header.extend_from_slice(&(json.len() as u64).to_le_bytes());
    header.extend_from_slice(json.as_bytes());
    Ok(Layout {
        tensors: out,
        header,
    })
}

/// Writes one safetensors file as a stream; see the module docs.
#[derive(Debug)]
pub struct SafetensorsWriter {
    out: AtomicFile,
    layout: Layout,
    written: u64,
}

impl SafetensorsWriter {
    /// Start writing `dest` (a temporary file next to it until [`SafetensorsWriter::finish`]).
    pub fn create(
        dest: &Path,
        tensors: Vec<TensorSpec>,
        metadata: Option<&BTreeMap<String, String>>,
    ) -> Result<SafetensorsWriter, SafetensorsError> {
        let layout = layout(tensors, metadata)?;
        let mut out = AtomicFile::create(dest)?;
        out.write_all(&layout.header)?;
        Ok(SafetensorsWriter {
            out,
            layout,
            written: 0,
        })
    }

    /// The layout being written (tensor order and offsets).
    #[must_use]
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Data bytes written so far.
    #[must_use]
    pub fn written(&self) -> u64 {
        self.written
    }

    /// The tensor that data byte `at` belongs to (for error messages).
    fn tensor_at(&self, at: u64) -> String {
        self.layout
            .tensors
            .iter()
            .find(|t| at < t.2)
            .or(self.layout.tensors.last())
            .map_or_else(String::new, |t| t.0.name.clone())
    }

    /// Append the next `data` bytes of the data area (tensors in layout order, any chunking).
    pub fn write(&mut self, data: &[u8]) -> Result<(), SafetensorsError> {
        let total = self.layout.data_len();
        let after = self.written.saturating_add(data.len() as u64);
        if after > total {
            return Err(SafetensorsError::WriteOverflow {
                name: self.tensor_at(self.written),
                expected: total,
                actual: after,
            });
        }
        self.out.write_all(data)?;
        self.written = after;
        Ok(())
    }

    /// Check completeness, then fsync, rename into place and fsync the folder.
    pub fn finish(self) -> Result<(), SafetensorsError> {
        let total = self.layout.data_len();
        if self.written != total {
            return Err(SafetensorsError::WriteIncomplete {
                name: self.tensor_at(self.written),
                expected: total,
                actual: self.written,
            });
        }
        self.out.commit()?;
        Ok(())
    }
}
