//! The stripe erasure codec and its self-protecting parity sidecar (`<file>.tvecc`, specified in
//! `docs/formats/ecc-sidecar.md`).
//!
//! - [`gf`]: GF(2^8) tables (polynomial 0x11d).
//! - [`kernels`]: AVX2 / SSSE3 split-nibble multiply-accumulate kernels and a portable fallback.
//! - [`matrix`]: the systematic Cauchy generator and inversion.
//! - [`ErasureCodec`]: encode and reconstruct with a decode-matrix cache per loss pattern.

pub mod aligned;
pub mod bench;
pub mod codec;
pub mod file;
pub mod gf16_gfni;
pub use super::gf256 as gf;
pub mod kernels;
pub mod matrix;
pub mod place;
pub mod sidecar;
pub mod wide;

pub use aligned::AlignedBuf;
pub use codec::{ErasureCodec, MAX_SHARDS};
pub use file::{
    protect, protect_new, protect_source, repair, repair_with, sidecar_path_for, verify, Checked,
    ProtectOptions, ProtectReport, RepairOptions, RepairReport, Status, VerifyReport,
};
pub use kernels::Kernel;
pub use place::{RepairMode, RepairTarget, WriteMode};
pub use sidecar::{ChunkDigest, Layout, Level, Params, SidecarHealth};
pub use wide::Format;

use std::path::PathBuf;

use crate::io::IoError;

/// Why an erasure-coding operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ErasureError {
    /// `k` or `m` is zero, or `k + m` exceeds the field.
    #[error("invalid shard counts k={k} m={m}: need k ≥ 1, m ≥ 1, k + m ≤ {max}")]
    InvalidShardCounts { k: usize, m: usize, max: usize },
    /// The caller passed the wrong number of shards.
    #[error("expected {expected} shards, got {actual}")]
    ShardCountMismatch { expected: usize, actual: usize },
    /// Shards of one stripe differ in length.
    #[error("all shards of a stripe must have the same length")]
    ShardLengthMismatch,
    /// More shards are lost than there are parity shards.
    #[error("{lost} shards lost but only {budget} can be rebuilt")]
    TooManyErasures { lost: usize, budget: usize },
    /// A decode matrix could not be inverted (a bug: the code is MDS).
    #[error("decode matrix is singular")]
    SingularMatrix,
    /// The chunk size is not a power of two from 4 KiB to 1 GiB.
    #[error(
        "invalid chunk size {chunk_size}: must be a power of two from 4096 to 1073741824 bytes"
    )]
    InvalidChunkSize { chunk_size: u64 },
    /// `(k + m) × chunk` is too large to hold one stripe in memory per thread.
    #[error("a stripe of {bytes} bytes ((k + m) × chunk size) exceeds the limit of {max} bytes")]
    StripeTooLarge { bytes: u64, max: u64 },
    /// The protection level is not one of the presets.
    #[error("unknown protection level '{level}' (expected low, medium or high)")]
    InvalidLevel { level: String },
    /// The sidecar path names the protected file itself (directly or through a link): writing the
    /// sidecar would destroy the data.
    #[error("the sidecar {sidecar} is the protected file {path} itself")]
    SidecarIsTheFile { path: PathBuf, sidecar: PathBuf },
    /// Format v2 parameters whose `k` is not the file's chunk count (the wide code is one stripe).
    #[error("wide code with k={k} does not match the file's {chunks} chunks")]
    WideShape { k: usize, chunks: u64 },
    /// The GF(2^16) transform refused its input (a bug: shapes are validated before).
    #[error("wide code failed: {reason}")]
    WideCodec { reason: String },
    /// The file is too large for the format.
    #[error("file of {len} bytes exceeds the format's limit of {max} bytes")]
    FileTooLarge { len: u64, max: u64 },
    /// Opening, reading or writing a file failed.
    #[error(transparent)]
    Io(#[from] IoError),
    /// The sidecar cannot be used: no valid header, or its digest table is lost in both copies.
    #[error("ECC sidecar {path} is unusable: {reason}")]
    SidecarCorrupt { path: PathBuf, reason: String },
    /// Damage exceeds the parity: the budget of at least one stripe (v1), or the intact global parity
    /// (v2, after what local parity repairs). `detail` says which.
    #[error("{path}: damage cannot be repaired: {detail}; unrepairable chunks: {chunks:?}")]
    Unrepairable {
        path: PathBuf,
        stripes: Vec<u64>,
        chunks: Vec<u64>,
        detail: String,
    },
    /// A rebuilt chunk did not match its recorded digest, or the repaired file failed re-verification.
    #[error("{path}: repair produced bytes that do not verify ({reason})")]
    RepairVerification { path: PathBuf, reason: String },
    /// The sidecar looks stale: the file was modified after `protect` (its modification time or length
    /// differs from the recorded one) and most of it differs from what was protected. Repairing would
    /// roll that edit back; it is refused unless forced.
    /// `differing_bytes` counts bytes compared one by one when `exact`, else whole damaged chunks.
    #[error(
        "{path} was modified after it was protected and {}: the sidecar {sidecar} looks stale, not the \
         file damaged (protect the file again, or force the repair to roll the file back)",
        differing_text(*differing_bytes, *file_len, *exact)
    )]
    StaleSidecar {
        path: PathBuf,
        sidecar: PathBuf,
        differing_bytes: u64,
        exact: bool,
        file_len: u64,
    },
    /// A chunk listed for repair does not exist in the protected file.
    #[error("chunk {chunk} is out of range: the file has {chunks} chunks")]
    ChunkOutOfRange { chunk: u64, chunks: u64 },
    /// The protected file changed while it was being read.
    #[error("{path} changed while it was being read (by protect, verify or repair)")]
    FileChanged { path: PathBuf },
    /// The caller cancelled the operation.
    #[error("the operation was cancelled")]
    Cancelled,
    /// A worker thread panicked while it held the lock on results shared with the others (the lock is
    /// poisoned): what was collected may be incomplete, so none of it is used (a bug, never bad input).
    #[error("a worker panicked while {during}: its results are incomplete and were not used")]
    WorkerPanicked { during: &'static str },
}

impl From<crate::control::Cancelled> for ErasureError {
    fn from(_: crate::control::Cancelled) -> Self {
        Self::Cancelled
    }
}

/// How many bytes of a stale pair differ, as the error says it: a count compared byte by byte, or the
/// bytes of the chunks whose digests differ (not compared, so not said to differ one by one).
fn differing_text(differing: u64, file_len: u64, exact: bool) -> String {
    if exact {
        format!("{differing} of its {file_len} bytes differ")
    } else {
        format!("chunks holding {differing} of its {file_len} bytes differ")
    }
}
