//! The checkpoint outboard (`tensorvault_core::checkpoint_outboard`): the writer on the libuv pool, and
//! the synchronous checks of a lazy load's first views (a few 64 KiB pieces: cheaper on the calling
//! thread than a round trip to the pool).

use std::path::PathBuf;
use std::sync::Arc;

use napi::bindgen_prelude::AsyncTask;
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

/// Check `data` (consecutive pieces from piece `first`, `piece` bytes each) against the chunk's
/// values `cvs` (32 bytes each), which must first merge to `leaf_hex` (the sealed leaf): 0 when every
/// piece matches, 1 when a piece differs (damage), 2 when the values do not merge to the leaf (a stale
/// or tampered outboard: the loader hashes the whole leaf instead).
fn check_pieces(cvs: &[u8], leaf_hex: &str, data: &[u8], first: u64, piece: u64) -> u32 {
    let Some(values) = split_cvs(cvs) else {
        return 2;
    };
    let Some(leaf) = merge_leaf(&values) else {
        return 2;
    };
    if tensorvault_core::hash::to_hex(&leaf) != leaf_hex {
        return 2;
    }
    let Ok(step) = usize::try_from(piece) else {
        return 2;
    };
    if step == 0 || data.is_empty() {
        return 2;
    }
    for (i, bytes) in data.chunks(step).enumerate() {
        let idx = first.saturating_add(i as u64);
        let want = usize::try_from(idx).ok().and_then(|j| values.get(j));
        let got = piece_cv(bytes, idx.saturating_mul(piece));
        match (want, got) {
            (Some(w), Some(g)) if bytes.len() == step && *w == g => {}
            _ => return 1,
        }
    }
    0
}

/// An open outboard of a lazily loaded checkpoint: the file, held open, and its piece count. The
/// first view's check is one call that reads the chunk's values and the pieces itself (no file
/// descriptors, reads or buffers on the JS side: they cost more than the hashing of a 64 KiB piece).
#[napi]
pub struct NativeOutboard {
    file: Option<std::fs::File>,
    header: OutboardHeader,
    cvs: Vec<u8>,
    data: Vec<u8>,
}

/// Open the outboard at `path` for a tree at `chunkSize` over `fileLength` bytes; null when it is
/// missing, unreadable, malformed or describes another file (the loader then hashes whole leaves).
#[napi]
pub fn checkpoint_outboard_open(
    path: String,
    chunk_size: f64,
    file_length: f64,
) -> napi::Result<Option<NativeOutboard>> {
    guard(|| {
        let cs = to_u64("chunkSize", chunk_size)?;
        let fl = to_u64("fileLength", file_length)?;
        Ok(open_outboard(&path, cs, fl))
    })
}

/// [`checkpoint_outboard_open`] for the addon's own callers (the checkpoint open's fast path).
pub(crate) fn open_outboard(path: &str, cs: u64, fl: u64) -> Option<NativeOutboard> {
    use std::os::unix::fs::FileExt as _;
    let file = std::fs::File::open(path).ok()?;
    let mut head = [0u8; tensorvault_core::checkpoint_outboard::HEADER_LEN];
    file.read_exact_at(&mut head, 0).ok()?;
    let len = file.metadata().ok()?.len();
    match OutboardHeader::parse(&head) {
        Ok(h) if h.chunk_size == cs && h.file_length == fl && h.total_len() == Some(len) => {
            Some(NativeOutboard {
                file: Some(file),
                header: h,
                cvs: Vec::new(),
                data: Vec::new(),
            })
        }
        _ => None,
    }
}

#[napi]
impl NativeOutboard {
    /// Pieces per chunk.
    #[napi]
    #[allow(clippy::cast_precision_loss)] // at most 16384
    pub fn pieces(&self) -> f64 {
        self.header.pieces_per_chunk() as f64
    }

    /// Check pieces `[first, last)` of full chunk `chunk`, read from the weights' descriptor `fd`
    /// (borrowed, not closed), against the chunk's values, which must first merge to `leafHex`.
    /// 0 when every piece matches, 1 when one differs or cannot be read whole (damage, truncation),
    /// 2 when the outboard is unusable for this chunk (closed, unreadable, stale or tampered).
    #[napi]
    pub fn verify(
        &mut self,
        chunk: f64,
        leaf_hex: String,
        first: f64,
        last: f64,
        fd: i32,
    ) -> napi::Result<u32> {
        use std::os::fd::FromRawFd as _;
        use std::os::unix::fs::FileExt as _;
        guard(|| {
            let chunk = to_u64("chunk", chunk)?;
            let first = to_u64("first", first)?;
            let last = to_u64("last", last)?;
            let n = self.header.pieces_per_chunk();
            if first >= last || last > n || fd < 0 {
                return Err(invalid_argument(
                    "range",
                    "pieces must be a non-empty range inside the chunk, and fd a descriptor",
                ));
            }
            let Some(file) = self.file.as_ref() else {
                return Ok(2);
            };
            let Some(at) = self.header.chunk_offset(chunk) else {
                return Ok(2);
            };
            let piece = self.header.piece_size;
            let cv_len = usize::try_from(n)
                .ok()
                .and_then(|n| n.checked_mul(tensorvault_core::checkpoint_outboard::CV_LEN))
                .ok_or_else(|| invalid_argument("chunk", "too many pieces"))?;
            self.cvs.resize(cv_len, 0);
            if file.read_exact_at(&mut self.cvs, at).is_err() {
                return Ok(2);
            }
            let len = usize::try_from((last - first).saturating_mul(piece))
                .map_err(|_| invalid_argument("range", "too large"))?;
            self.data.resize(len, 0);
            let offset = chunk
                .saturating_mul(self.header.chunk_size)
                .saturating_add(first.saturating_mul(piece));
            // SAFETY: `fd` is the caller's open descriptor, valid for this call; it is wrapped as a
            // `File` only to read, and never dropped (so never closed here, even on a panic).
            let weights = std::mem::ManuallyDrop::new(unsafe { std::fs::File::from_raw_fd(fd) });
            if weights.read_exact_at(&mut self.data, offset).is_err() {
                return Ok(1);
            }
            Ok(check_pieces(&self.cvs, &leaf_hex, &self.data, first, piece))
        })
    }

    /// Close the outboard (a later `verify` answers 2).
    #[napi]
    pub fn close(&mut self) {
        self.file = None;
        self.cvs = Vec::new();
        self.data = Vec::new();
    }
}
