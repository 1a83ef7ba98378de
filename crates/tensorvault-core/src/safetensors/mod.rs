//! The safetensors format: dtypes, header parsing and validation (in the reference implementation's
//! order), a private copy-on-write mapped reader, and a streaming writer whose output is byte-identical
//! to Python's `safetensors.save_file`. Spec notes: `docs/formats/safetensors.md`.

mod dtype;
mod header;
mod reader;
mod writer;

pub use dtype::Dtype;
pub use header::{header_len, Header, TensorInfo, MAX_HEADER_LEN};
pub use reader::SafetensorsFile;
pub use writer::{layout, Layout, SafetensorsWriter, TensorSpec};

use crate::io::IoError;

/// Why a safetensors file was refused or could not be read or written. Variants are named after the
/// failure and carry the tensor name and the numbers involved.
#[derive(Debug, thiserror::Error)]
pub enum SafetensorsError {
    /// The file is shorter than the 8-byte header length.
    #[error("file is {file_len} bytes, shorter than the 8-byte header length")]
    HeaderTooSmall { file_len: u64 },
    /// The declared header length is above the 100 MB limit.
    #[error("header length {header_len} exceeds the limit of {max} bytes")]
    HeaderTooLarge { header_len: u64, max: u64 },
    /// The declared header runs past the end of the file.
    #[error("header length {header_len} runs past the end of the {file_len}-byte file")]
    HeaderPastEnd { header_len: u64, file_len: u64 },
    /// The header is not valid UTF-8.
    #[error("header is not valid UTF-8 (first invalid byte at header offset {offset})")]
    HeaderNotUtf8 { offset: u64 },
    /// The header is not valid JSON.
    #[error("header is not valid JSON at line {line}, column {column}: {message}")]
    HeaderNotJson {
        line: u64,
        column: u64,
        message: String,
    },
    /// The header is JSON but not an object.
    #[error("header is JSON but not an object (starts with {found:?})")]
    HeaderNotObject { found: String },
    /// `__metadata__` is not a map of strings to strings.
    #[error("__metadata__ must map strings to strings: {message}")]
    MetadataNotStringMap { message: String },
    /// A key appears twice in the header (tensor name or metadata key).
    #[error("duplicate name in header: {name:?}")]
    DuplicateName { name: String },
    /// A tensor entry is malformed (missing or mistyped `dtype`, `shape` or `data_offsets`).
    #[error("tensor {name:?}: invalid entry: {message}")]
    InvalidTensorEntry { name: String, message: String },
    /// A tensor's dtype is not one the format defines.
    #[error("tensor {name:?}: unknown dtype {dtype:?}")]
    UnknownDtype { name: String, dtype: String },
    /// A tensor's end offset is before its start.
    #[error("tensor {name:?}: data_offsets [{start}, {end}] end before they start")]
    OffsetsReversed { name: String, start: u64, end: u64 },
    /// A tensor starts after the previous one ends, leaving unaccounted bytes.
    #[error("tensor {name:?}: starts at {start}, leaving a gap after the previous tensor's end {expected}")]
    OffsetGap {
        name: String,
        start: u64,
        expected: u64,
    },
    /// A tensor starts before the previous one ends.
    #[error("tensor {name:?}: starts at {start}, overlapping the previous tensor which ends at {expected}")]
    OffsetOverlap {
        name: String,
        start: u64,
        expected: u64,
    },
    /// The product of a tensor's shape, or its size in bits, overflows 64 bits.
    #[error("tensor {name:?}: shape {shape:?} × {bits} bits overflows")]
    ShapeOverflow {
        name: String,
        shape: Vec<u64>,
        bits: u64,
    },
    /// A packed sub-byte tensor does not fill a whole number of bytes.
    #[error("tensor {name:?}: {elements} elements of {bits} bits is not a whole number of bytes")]
    MisalignedBits {
        name: String,
        elements: u64,
        bits: u64,
    },
    /// `dtype size × product(shape)` differs from the tensor's byte range.
    #[error("tensor {name:?}: dtype and shape need {expected} bytes, data_offsets give {actual}")]
    SizeMismatch {
        name: String,
        expected: u64,
        actual: u64,
    },
    /// A tensor's data runs past the end of the file.
    #[error("tensor {name:?}: data ends at {end}, past the end of the {data_len}-byte data area")]
    DataPastEnd {
        name: String,
        end: u64,
        data_len: u64,
    },
    /// Bytes after the last tensor (the format allows none: they could smuggle a polyglot payload).
    #[error(
        "{trailing} trailing bytes after the last tensor (data ends at {data_end} of {data_len})"
    )]
    TrailingBytes {
        data_end: u64,
        data_len: u64,
        trailing: u64,
    },
    /// The requested tensor is not in the file.
    #[error("no tensor named {name:?}")]
    TensorNotFound { name: String },
    /// A tensor name the writer refuses (`__metadata__`).
    #[error("invalid tensor name {name:?}: {reason}")]
    InvalidName { name: String, reason: &'static str },
    /// More bytes were written than the declared tensors hold.
    #[error(
        "too much data: the tensors hold {expected} bytes, got {actual} (while writing {name:?})"
    )]
    WriteOverflow {
        name: String,
        expected: u64,
        actual: u64,
    },
    /// `finish` was called before every tensor's bytes were written.
    #[error("incomplete data: the tensors hold {expected} bytes, got {actual} (tensor {name:?} is short)")]
    WriteIncomplete {
        name: String,
        expected: u64,
        actual: u64,
    },
    /// The file changed under the reader (truncated or replaced in place).
    #[error("file changed while open: {path} was {expected} bytes, now {actual}")]
    FileChanged {
        path: std::path::PathBuf,
        expected: u64,
        actual: u64,
    },
    /// The operation was cancelled.
    #[error("the operation was cancelled")]
    Cancelled,
    /// A file-system failure.
    #[error(transparent)]
    Io(#[from] IoError),
}

impl From<crate::control::Cancelled> for SafetensorsError {
    fn from(_: crate::control::Cancelled) -> Self {
        Self::Cancelled
    }
}
