//! `PyFolds` `.fold` / `.mind` containers (contract `fold.md`): a 28-byte file header, chunk records
//! (32-byte header, stored bytes, optional rs(N) parity) and a JSON index at the end.
//!
//! - [`format`]: the binary headers and the index, validated into typed records with hard limits
//!   before any offset is trusted;
//! - [`reader`]: [`FoldFile`] over a private mapping: file-level checks once per open (manifest hash,
//!   Merkle root, trust block bound to the file), per-chunk checks once per chunk (CRC-32C and digest
//!   first, rs(N) only when they fail), decryption and budgeted decompression; verify / repair;
//! - [`writer`]: files `PyFolds`'s reader accepts, written atomically and durably;
//! - [`json`]: the lossless JSON model and the exact text forms every hash is over.

pub mod crypto;
pub mod format;
pub mod json;
pub mod reader;
pub mod writer;

pub use format::{ChunkHeader, ChunkRecord, FileHeader, Index};
pub use reader::{
    CheckStatus, ChunkReport, ChunkStatus, FileChecks, FoldFile, OpenOptions, Payload, Policy,
    VerifyMode, VerifyReport,
};
pub use writer::{write_fold, ChunkInput, Level, WriteOptions, WriteSummary};

use crate::io::IoError;

/// Why a `.fold` operation failed. Variants that concern one chunk name it.
#[derive(Debug, thiserror::Error)]
pub enum FoldError {
    /// The file could not be opened, mapped, read or written.
    #[error(transparent)]
    Io(#[from] IoError),
    /// The container's structure is invalid (header, index, a chunk record, the layout).
    #[error("invalid .fold file ({reason}){}: {detail}", chunk_suffix(chunk.as_deref()))]
    Invalid {
        reason: &'static str,
        detail: String,
        chunk: Option<String>,
        offset: Option<u64>,
    },
    /// A chunk's bytes, or a file-level hash, do not verify and could not be repaired.
    #[error("{}: {check} check failed: {detail}", chunk.as_deref().map_or_else(|| "file".to_string(), |c| format!("chunk {c:?}")))]
    Corrupt {
        check: &'static str,
        detail: String,
        chunk: Option<String>,
    },
    /// A digest is keyed and no key was given, or the caller gave a key and the file is not keyed.
    #[error("{}: cannot verify: {detail}", chunk.as_deref().map_or_else(|| "file".to_string(), |c| format!("chunk {c:?}")))]
    Unverifiable {
        reason: &'static str,
        detail: String,
        chunk: Option<String>,
    },
    /// The chunk is encrypted and no decryption key was given.
    #[error("chunk {chunk:?} is encrypted and no decryption key was given")]
    KeyRequired { chunk: String },
    /// AES-GCM authentication failed: wrong key, or the chunk was tampered with.
    #[error("chunk {chunk:?} does not decrypt: wrong key or tampered ciphertext")]
    DecryptFailed { chunk: String },
    /// The trust block or the metadata signature does not verify.
    #[error("{what} is invalid: {detail}")]
    Signature { what: &'static str, detail: String },
    /// The caller's policy refuses the file.
    #[error("policy {rule}: {detail}")]
    Policy { rule: &'static str, detail: String },
    /// A size limit was exceeded (decompression budget, chunk size).
    #[error("{}{what} of {actual} bytes exceeds the limit of {limit}", chunk_prefix(chunk.as_deref()))]
    Budget {
        what: &'static str,
        limit: u64,
        actual: u64,
        chunk: Option<String>,
    },
    /// A chunk tensorvault will not decode (a pickled `torch_state`).
    #[error("chunk {chunk:?} is not supported: {detail}")]
    Unsupported { chunk: String, detail: String },
    /// No chunk of that name.
    #[error("no chunk named {name:?} in the file")]
    ChunkNotFound { name: String },
    /// A writer argument is invalid.
    #[error("invalid argument {argument}: {detail}")]
    InvalidArgument {
        argument: &'static str,
        detail: String,
    },
    /// The caller cancelled the operation.
    #[error("the .fold operation was cancelled")]
    Cancelled,
}

fn chunk_suffix(chunk: Option<&str>) -> String {
    chunk.map_or_else(String::new, |c| format!(" in chunk {c:?}"))
}

fn chunk_prefix(chunk: Option<&str>) -> String {
    chunk.map_or_else(String::new, |c| format!("chunk {c:?}: "))
}

impl From<crate::control::Cancelled> for FoldError {
    fn from(_: crate::control::Cancelled) -> Self {
        Self::Cancelled
    }
}

impl FoldError {
    /// A copy of this error for a report or a cached verdict (`FoldError` holds an `io::Error` in one
    /// variant, so it is not `Clone`): every variant is copied field by field; an I/O error becomes
    /// `Invalid { reason: "invalid_chunk" }` with its message and chunk.
    #[must_use]
    pub fn duplicate(&self) -> Self {
        match self {
            Self::Invalid {
                reason,
                detail,
                chunk,
                offset,
            } => Self::Invalid {
                reason,
                detail: detail.clone(),
                chunk: chunk.clone(),
                offset: *offset,
            },
            Self::Corrupt {
                check,
                detail,
                chunk,
            } => Self::Corrupt {
                check,
                detail: detail.clone(),
                chunk: chunk.clone(),
            },
            Self::Unverifiable {
                reason,
                detail,
                chunk,
            } => Self::Unverifiable {
                reason,
                detail: detail.clone(),
                chunk: chunk.clone(),
            },
            Self::KeyRequired { chunk } => Self::KeyRequired {
                chunk: chunk.clone(),
            },
            Self::DecryptFailed { chunk } => Self::DecryptFailed {
                chunk: chunk.clone(),
            },
            Self::Signature { what, detail } => Self::Signature {
                what,
                detail: detail.clone(),
            },
            Self::Policy { rule, detail } => Self::Policy {
                rule,
                detail: detail.clone(),
            },
            Self::Budget {
                what,
                limit,
                actual,
                chunk,
            } => Self::Budget {
                what,
                limit: *limit,
                actual: *actual,
                chunk: chunk.clone(),
            },
            Self::Unsupported { chunk, detail } => Self::Unsupported {
                chunk: chunk.clone(),
                detail: detail.clone(),
            },
            Self::ChunkNotFound { name } => Self::ChunkNotFound { name: name.clone() },
            Self::InvalidArgument { argument, detail } => Self::InvalidArgument {
                argument,
                detail: detail.clone(),
            },
            Self::Cancelled => Self::Cancelled,
            Self::Io(e) => Self::Invalid {
                reason: "invalid_chunk",
                detail: e.to_string(),
                chunk: self.chunk().map(str::to_string),
                offset: None,
            },
        }
    }

    pub(crate) fn invalid(reason: &'static str, detail: impl Into<String>) -> Self {
        Self::Invalid {
            reason,
            detail: detail.into(),
            chunk: None,
            offset: None,
        }
    }

    pub(crate) fn invalid_chunk(
        reason: &'static str,
        chunk: &str,
        offset: Option<u64>,
        detail: impl Into<String>,
    ) -> Self {
        Self::Invalid {
            reason,
            detail: detail.into(),
            chunk: Some(chunk.to_string()),
            offset,
        }
    }

    pub(crate) fn corrupt(
        check: &'static str,
        chunk: Option<&str>,
        detail: impl Into<String>,
    ) -> Self {
        Self::Corrupt {
            check,
            detail: detail.into(),
            chunk: chunk.map(str::to_string),
        }
    }

    /// The chunk the error is about, when it concerns one.
    #[must_use]
    pub fn chunk(&self) -> Option<&str> {
        match self {
            Self::Invalid { chunk, .. }
            | Self::Corrupt { chunk, .. }
            | Self::Unverifiable { chunk, .. }
            | Self::Budget { chunk, .. } => chunk.as_deref(),
            Self::KeyRequired { chunk }
            | Self::DecryptFailed { chunk }
            | Self::Unsupported { chunk, .. } => Some(chunk),
            Self::ChunkNotFound { name } => Some(name),
            _ => None,
        }
    }
}
