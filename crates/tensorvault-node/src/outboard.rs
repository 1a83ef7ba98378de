//! The checkpoint outboard (`tensorvault_core::checkpoint_outboard`): the writer on the libuv pool, and
//! the synchronous checks of a lazy load's first views (a few 64 KiB pieces: cheaper on the calling
//! thread than a round trip to the pool).

use std::path::PathBuf;
use std::sync::Arc;

use napi::bindgen_prelude::{AsyncTask, Uint8ArraySlice};
use napi::{Env, Task};
use napi_derive::napi;
use tensorvault_core::checkpoint_outboard::{
    merge_leaf, piece_cv, split_cvs, write_outboard, OutboardError, OutboardHeader,
};
use tensorvault_core::Control;

use crate::args::to_u64;
use crate::control::JobControl;
use crate::errors::{guard, invalid_argument, TvError};

impl From<OutboardError> for TvError {
    fn from(e: OutboardError) -> Self {
        let message = e.to_string();
        match e {
            OutboardError::Io(e) => (&e).into(),
            OutboardError::Malformed { .. } => TvError::new("TV_INVALID_ARGUMENT", message),
            OutboardError::Cancelled => TvError::new("TV_ABORTED", message),
        }
    }
}

pub struct WriteOutboardTask {
    weights: PathBuf,
    out: PathBuf,
    chunk_size: u64,
    control: Arc<Control>,
}

impl Task for WriteOutboardTask {
    type Output = u64;
    type JsValue = f64;

    fn compute(&mut self) -> napi::Result<u64> {
        guard(|| {
            write_outboard(&self.weights, &self.out, self.chunk_size, &self.control)
                .map_err(|e| TvError::from(e).into())
        })
    }

    #[allow(clippy::cast_precision_loss)] // an outboard is far below 2^53 bytes
    fn resolve(&mut self, _env: Env, n: u64) -> napi::Result<f64> {
        Ok(n as f64)
    }
}

/// Write the outboard of the weights at `weights` (chunk tree at `chunkSize`) to `out` (created or
/// truncated, fsynced), on the pool. Resolves with its length.
#[napi(ts_return_type = "Promise<number>")]
pub fn checkpoint_write_outboard(
    weights: String,
    out: String,
    chunk_size: f64,
    control: &JobControl,
) -> napi::Result<AsyncTask<WriteOutboardTask>> {
    guard(|| {
        Ok(AsyncTask::new(WriteOutboardTask {
            weights: PathBuf::from(weights),
            out: PathBuf::from(out),
            chunk_size: to_u64("chunkSize", chunk_size)?,
            control: Arc::clone(&control.inner),
        }))
    })
}

/// Pieces per chunk of an outboard whose first 40 bytes are `header` and whose length is `length`,
/// when it is well formed and describes a tree at `chunkSize` over `fileLength` bytes; 0 otherwise
/// (the loader then hashes whole leaves).
#[napi]
#[allow(clippy::cast_precision_loss)] // at most 16384
pub fn checkpoint_outboard_pieces(
    header: Uint8ArraySlice<'_>,
    length: f64,
    chunk_size: f64,
    file_length: f64,
) -> napi::Result<f64> {
    guard(|| {
        let length = to_u64("length", length)?;
        let cs = to_u64("chunkSize", chunk_size)?;
        let fl = to_u64("fileLength", file_length)?;
        Ok(match OutboardHeader::parse(&header) {
            Ok(h) if h.chunk_size == cs && h.file_length == fl && h.total_len() == Some(length) => {
                h.pieces_per_chunk() as f64
            }
            _ => 0.0,
        })
    })
}

/// Check pieces of one chunk against the outboard: `cvs` holds the chunk's chaining values (32 bytes
/// each), which must merge to `leafHex` (the sealed leaf) before any is used; `data` holds the
/// consecutive pieces from piece `firstPiece` (`pieceSize` bytes each, a multiple of 1024). Returns
/// 0 when every piece matches, 1 when a piece differs (damage), 2 when the values do not merge to the
/// leaf (a stale or tampered outboard: hash the whole leaf instead).
#[napi]
pub fn checkpoint_outboard_verify(
    cvs: Uint8ArraySlice<'_>,
    leaf_hex: String,
    data: Uint8ArraySlice<'_>,
    first_piece: f64,
    piece_size: f64,
) -> napi::Result<u32> {
    guard(|| {
        let first = to_u64("firstPiece", first_piece)?;
        let piece = to_u64("pieceSize", piece_size)?;
        if piece == 0 || !piece.is_multiple_of(1024) {
            return Err(invalid_argument(
                "pieceSize",
                "pieceSize must be a multiple of 1024",
            ));
        }
        if data.is_empty() {
            return Err(invalid_argument(
                "data",
                "data must hold at least one piece",
            ));
        }
        let Some(values) = split_cvs(&cvs) else {
            return Ok(2);
        };
        let Some(leaf) = merge_leaf(&values) else {
            return Ok(2);
        };
        if tensorvault_core::hash::to_hex(&leaf) != leaf_hex {
            return Ok(2);
        }
        let step =
            usize::try_from(piece).map_err(|_| invalid_argument("pieceSize", "too large"))?;
        for (i, bytes) in data.chunks(step).enumerate() {
            let idx = first.saturating_add(i as u64);
            let want = usize::try_from(idx).ok().and_then(|j| values.get(j));
            let got = piece_cv(bytes, idx.saturating_mul(piece));
            match (want, got) {
                (Some(w), Some(g)) if bytes.len() == step && *w == g => {}
                _ => return Ok(1),
            }
        }
        Ok(0)
    })
}
