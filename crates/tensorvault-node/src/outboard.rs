//! The checkpoint outboard (`tensorvault_core::checkpoint_outboard`): the writer on the libuv pool, and
//! the synchronous checks of a lazy load's first views (a few 64 KiB pieces: cheaper on the calling
//! thread than a round trip to the pool).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use napi::bindgen_prelude::{AsyncTask, ObjectFinalize};
use napi::{Env, Task};
use napi_derive::napi;
use tensorvault_core::checkpoint_outboard::{
    merge_leaf, piece_cv, split_cvs, write_outboard, OutboardError, OutboardHeader,
};
use tensorvault_core::Control;

use crate::args::{locked, to_u64};
use crate::control::JobControl;
use crate::cost::GcCharge;
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
#[napi(custom_finalize)]
pub struct NativeOutboard {
    /// Behind a mutex so that `close()` takes `&self` (a `&mut self` receiver conflicts with any
    /// borrow napi-rs holds on the object: see `NativeSafetensors`).
    file: Mutex<Option<std::fs::File>>,
    header: OutboardHeader,
    /// Its descriptor, reported to the collector while open (`cost.rs`).
    charge: GcCharge,
}

impl NativeOutboard {
    /// This outboard, its cost reported to the collector (it is handed to JS).
    pub(crate) fn charged(self, env: Env) -> NativeOutboard {
        self.charge.charge(env);
        self
    }
}

impl ObjectFinalize for NativeOutboard {
    fn finalize(self, env: Env) -> napi::Result<()> {
        self.charge.release(env);
        Ok(())
    }
}

thread_local! {
    /// A chunk's values, read by every check on this (the JS) thread: a loop that opens checkpoints
    /// and views a tensor allocates (and faults in) the buffer once, not on every open.
    static VALUES: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    /// The pieces `verify` reads, shared the same way.
    static PIECES: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Bytes a shared scratch buffer keeps between calls (16 pieces of 64 KiB; a sidecar of some 30,000
/// chunks): what a first view of a small tensor or an open needs, not the largest call made.
const SCRATCH_KEEP: usize = 1 << 20;

/// `f` of this thread's scratch buffer `cell`, which is let go afterwards if it grew past
/// [`SCRATCH_KEEP`].
pub(crate) fn with_scratch<R>(
    cell: &'static std::thread::LocalKey<std::cell::RefCell<Vec<u8>>>,
    f: impl FnOnce(&mut Vec<u8>) -> R,
) -> R {
    cell.with_borrow_mut(|buf| {
        let r = f(buf);
        if buf.capacity() > SCRATCH_KEEP {
            *buf = Vec::new();
        }
        r
    })
}

/// What [`NativeOutboard::check_header`] found.
pub(crate) enum PieceCheck {
    /// Every piece matches its value.
    Ok,
    /// A piece differs, or the mapping lost a page (truncated): damage.
    Damaged,
    /// The outboard cannot vouch for this chunk (closed, unreadable, stale or tampered).
    Unusable,
}

/// Open the outboard at `path` for a tree at `chunkSize` over `fileLength` bytes; null when it is
/// missing, unreadable, malformed or describes another file (the loader then hashes whole leaves).
#[napi]
pub fn checkpoint_outboard_open(
    env: Env,
    path: String,
    chunk_size: f64,
    file_length: f64,
) -> napi::Result<Option<NativeOutboard>> {
    guard(|| {
        let cs = to_u64("chunkSize", chunk_size)?;
        let fl = to_u64("fileLength", file_length)?;
        Ok(open_outboard(&path, cs, fl).map(|o| o.charged(env)))
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
                file: Mutex::new(Some(file)),
                header: h,
                charge: GcCharge::default(),
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
        &self,
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
            let piece = self.header.piece_size;
            let len = usize::try_from((last - first).saturating_mul(piece))
                .map_err(|_| invalid_argument("range", "too large"))?;
            let offset = chunk
                .saturating_mul(self.header.chunk_size)
                .saturating_add(first.saturating_mul(piece));
            let checked = self.with_values(chunk, |cvs| {
                with_scratch(&PIECES, |data| {
                    data.resize(len, 0);
                    // SAFETY: `fd` is the caller's open descriptor, valid for this call; it is wrapped
                    // as a `File` only to read, and never dropped (so never closed here, even on a
                    // panic).
                    let weights =
                        std::mem::ManuallyDrop::new(unsafe { std::fs::File::from_raw_fd(fd) });
                    if weights.read_exact_at(data, offset).is_err() {
                        1
                    } else {
                        check_pieces(cvs, &leaf_hex, data, first, piece)
                    }
                })
            });
            Ok(checked.unwrap_or(2))
        })
    }

    /// Close the outboard (a later `verify` answers 2). Idempotent; never throws.
    #[napi]
    pub fn close(&self, env: Env) {
        let file = locked(&self.file).take();
        drop(file);
        self.charge.release(env);
    }
}

impl NativeOutboard {
    /// Pieces per chunk.
    pub(crate) fn pieces_per_chunk(&self) -> u64 {
        self.header.pieces_per_chunk()
    }

    /// `f` of chunk `chunk`'s values (read into the shared buffer); None when the outboard cannot give
    /// them (closed, unreadable, or not a full chunk).
    fn with_values<R>(&self, chunk: u64, f: impl FnOnce(&[u8]) -> R) -> Option<R> {
        use std::os::unix::fs::FileExt as _;
        let guard = locked(&self.file);
        let file = guard.as_ref()?;
        let at = self.header.chunk_offset(chunk)?;
        let len = usize::try_from(self.header.pieces_per_chunk())
            .ok()?
            .checked_mul(tensorvault_core::checkpoint_outboard::CV_LEN)?;
        VALUES.with_borrow_mut(|cvs| {
            cvs.resize(len, 0);
            file.read_exact_at(cvs, at).ok()?;
            Some(f(cvs))
        })
    }

    /// [`NativeOutboard::verify`] of the first `last` pieces of chunk 0, which hold the header: the
    /// header's bytes as it was parsed (`parsed`, read at the open), then the rest of those pieces
    /// read from the mapped file (`map`'s descriptor: the same page-cache pages the mapping shows),
    /// against the values that must merge to `leaf` (32 bytes). The header hashed is thus the one the
    /// views are cut by, whatever a writer did to the file since it was read. A short read (the file
    /// truncated) counts as damage. Read with `pread`, not through the mapping: touching the mapping
    /// faulted its pages in one by one and made the close unmap them, 15 µs of a 162 µs open
    /// (`docs/benchmarks.md`, thirteenth session); a view of those bytes faults in only what it reads.
    pub(crate) fn check_header(
        &self,
        leaf: &[u8],
        last: u64,
        parsed: &[u8],
        map: &tensorvault_core::io::Mapping,
    ) -> PieceCheck {
        if last == 0 || last > self.header.pieces_per_chunk() {
            return PieceCheck::Unusable;
        }
        let piece = self.header.piece_size;
        let end = last
            .checked_mul(piece)
            .and_then(|e| usize::try_from(e).ok())
            .filter(|&e| e >= parsed.len());
        let leaf_hex = tensorvault_core::hash::to_hex(leaf);
        // A file shorter than the block says is damage (1).
        let r = self.with_values(0, |cvs| {
            let Some(end) = end else {
                return 1;
            };
            with_scratch(&PIECES, |buf| {
                use std::os::unix::fs::FileExt as _;
                buf.clear();
                buf.extend_from_slice(parsed);
                buf.resize(end, 0);
                let Some(rest) = buf.get_mut(parsed.len()..) else {
                    return 1;
                };
                if map.file().read_exact_at(rest, parsed.len() as u64).is_err() {
                    return 1;
                }
                check_pieces(cvs, &leaf_hex, buf, 0, piece)
            })
        });
        match r {
            Some(0) if map.check_len().is_ok() => PieceCheck::Ok,
            Some(0 | 1) => PieceCheck::Damaged,
            _ => PieceCheck::Unusable,
        }
    }
}
