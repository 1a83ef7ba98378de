//! The stripe erasure codec and its self-protecting parity sidecar (`<file>.tvecc`, specified in
//! `docs/formats/ecc-sidecar.md`).
//!
//! - [`gf`]: GF(2^8) tables (polynomial 0x11d).
//! - [`kernels`]: AVX2 / SSSE3 split-nibble multiply-accumulate kernels and a portable fallback.
//! - [`matrix`]: the systematic Cauchy generator and inversion.
//! - [`ErasureCodec`]: encode and reconstruct with a decode-matrix cache per loss pattern.

pub mod codec;
pub mod gf;
pub mod kernels;
pub mod matrix;

pub use codec::{ErasureCodec, MAX_SHARDS};
pub use kernels::Kernel;

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
}
