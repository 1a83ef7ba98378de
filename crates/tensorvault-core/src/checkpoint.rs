//! The single save pass of a checkpoint (issue 14, item 1).
//!
//! [`save_weights`] takes the tensors' bytes in memory and, in one pass over them, writes the
//! safetensors file (the same layout and header as [`crate::safetensors::SafetensorsWriter`]) and
//! computes:
//!
//! - the `PyFolds` integrity hash: one SHA-256, sequential, over the tensors in the caller's order
//!   (sorted by name, code point order), each framed by the caller's prefix (name, torch dtype label,
//!   Python shape string) and followed by its raw bytes (contract section 2);
//! - the chunk tree of the whole file (leaves per chunk; SHA-256 for `sha256-tree-v1`, BLAKE3 for
//!   `blake3-tree-v1`), with the header's SHA-256;
//! - when asked, the erasure parity sidecar: the wide code (v2) is encoded from the tensors' bytes
//!   ([`crate::ecc::erasure::protect_source`]) while the file is written, and its sidecar finished
//!   (headers, tables with the file's modification time, fsync) once the write ends; the striped code
//!   of small files (v1) is computed by [`crate::ecc::erasure::protect`] on the just-written file (its
//!   bytes are in the page cache) while the file is fsynced.
//!
//! The write, the `PyFolds` hash, the leaves and the parity run at the same time (threads, and the rayon
//! pool for the parity); the writer asks the kernel to start the writeback every 32 MiB so that the
//! disk works while the hashes and the parity use the cores, and the final fsync has little left.
//! Every part stops at its next piece when the [`Control`] is cancelled. [`SaveReport::phases`] is the
//! timeline of the pass. The file is created with `O_EXCL` at the
//! path given (a temporary name chosen by the caller, which owns the commit protocol) and removed on
//! any failure.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use blake3::hazmat::ChainingValue;

use crate::checkpoint_outboard::{
    leaf_and_cvs, write_cvs, OutboardHeader, PIECE_SIZE as OUTBOARD_PIECE,
};
use crate::control::{Cancelled, Control};
use crate::ecc::erasure::{self, ErasureError, ProtectOptions, ProtectReport};
use crate::hash::{sha256, ChunkSize, ChunkTree, Digest, HashError, Sha256, TREE_HEADER_LEN};
use crate::io::IoError;
use crate::safetensors::{layout, SafetensorsError, TensorSpec};

/// Errors of the checkpoint save pass.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The tensors do not form a valid safetensors file (names, shapes).
    #[error(transparent)]
    Safetensors(#[from] SafetensorsError),
    /// Reading or writing a file failed.
    #[error(transparent)]
    Io(#[from] IoError),
    /// The parity sidecar could not be written.
    #[error(transparent)]
    Erasure(ErasureError),
    /// Invalid tree parameters.
    #[error(transparent)]
    Hash(#[from] HashError),
    /// A tensor's bytes do not match its dtype and shape.
    #[error("tensor {name:?}: its dtype and shape need {expected} bytes, data has {actual}")]
    SizeMismatch {
        name: String,
        expected: u64,
        actual: u64,
    },
    /// The arguments are inconsistent (lengths of the lists, the hash order).
    #[error("invalid save arguments: {reason}")]
    InvalidArguments { reason: &'static str },
    /// The operation was cancelled.
    #[error("the operation was cancelled")]
    Cancelled,
}

impl From<ErasureError> for CheckpointError {
    fn from(e: ErasureError) -> Self {
        match e {
            ErasureError::Cancelled => Self::Cancelled,
            e => Self::Erasure(e),
        }
    }
}

impl From<Cancelled> for CheckpointError {
    fn from(_: Cancelled) -> Self {
        Self::Cancelled
    }
}

/// The hash of the chunk tree's leaves and root.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TreeAlgorithm {
    /// `sha256-tree-v1` (`docs/formats/chunk-tree.md`): SHA-256 leaves and root.
    #[default]
    Sha256,
    /// `blake3-tree-v1`: BLAKE3 leaves; root = BLAKE3 over the same 32-byte header (algorithm byte 2)
    /// followed by the leaves (`docs/formats/checkpoint.md`).
    Blake3,
}

impl TreeAlgorithm {
    /// The algorithm byte of the tree header.
    #[must_use]
    pub fn id(self) -> u8 {
        match self {
            Self::Sha256 => 1,
            Self::Blake3 => 2,
        }
    }

    /// The digest of one chunk.
    #[must_use]
    pub fn leaf(self, data: &[u8]) -> Digest {
        match self {
            Self::Sha256 => sha256(data),
            Self::Blake3 => *blake3::hash(data).as_bytes(),
        }
    }

    /// The root of `leaves` for a file of `total_len` bytes cut in `chunk_size` chunks.
    #[must_use]
    pub fn root(self, chunk_size: ChunkSize, total_len: u64, leaves: &[Digest]) -> Digest {
        match self {
            Self::Sha256 => {
                ChunkTree::from_leaves(chunk_size, total_len, leaves.to_vec()).map_or_else(
                    // INVARIANT: the caller passes one leaf per chunk; a wrong count yields a root
                    // that matches nothing rather than a panic.
                    |_| [0u8; 32],
                    |t| t.root(),
                )
            }
            Self::Blake3 => {
                let mut header: [u8; TREE_HEADER_LEN] = ChunkTree::header(chunk_size, total_len);
                if let Some(b) = header.get_mut(8) {
                    *b = self.id();
                }
                let mut h = blake3::Hasher::new();
                h.update(&header);
                for leaf in leaves {
                    h.update(leaf);
                }
                *h.finalize().as_bytes()
            }
        }
    }

    /// Digests of consecutive chunks of `data` (the last may be short).
    #[must_use]
    pub fn leaves_of(self, data: &[u8], chunk_size: ChunkSize) -> Vec<Digest> {
        data.chunks(chunk_size.as_usize().max(1))
            .map(|c| self.leaf(c))
            .collect()
    }
}

/// One tensor to save: its spec, its bytes, and its `PyFolds` hash prefix.
#[derive(Debug)]
pub struct SaveTensor<'a> {
    /// Name, dtype, shape.
    pub spec: TensorSpec,
    /// The raw bytes (little-endian, as stored).
    pub data: &'a [u8],
    /// Bytes fed to the `PyFolds` hash before the tensor's data (name, dtype label, shape string).
    pub hash_prefix: Vec<u8>,
}

/// Parameters of [`save_weights`].
#[derive(Debug, Clone)]
pub struct SaveOptions {
    /// Chunk size of the tree.
    pub chunk_size: ChunkSize,
    /// Hash of the tree, or none (no leaves are computed).
    pub tree: Option<TreeAlgorithm>,
    /// Indices into the tensor list in the order the `PyFolds` hash feeds them.
    pub hash_order: Vec<usize>,
    /// Parity sidecar to write after the data (its path and parameters), or none.
    pub ecc: Option<(PathBuf, ProtectOptions)>,
    /// With a `blake3-tree-v1` tree: write the outboard (`checkpoint_outboard`) of the weights here,
    /// computed with the leaves in the same pass. Written only when the chunk size allows it (a
    /// power-of-two number ≥ 2 of 64 KiB pieces); an accelerator, so failing to write it does not fail
    /// the save (see [`SaveReport::outboard`]).
    pub outboard: Option<PathBuf>,
}

/// What [`save_weights`] wrote and computed.
#[derive(Debug, Clone)]
pub struct SaveReport {
    /// Length of the weights file.
    pub file_len: u64,
    /// `8 + N`: the length prefix and the JSON header.
    pub header_len: u64,
    /// SHA-256 of the header bytes.
    pub header_sha256: Digest,
    /// The plain `PyFolds` digest (SHA-256 over the framed tensors).
    pub pyfolds: Digest,
    /// Leaves of the chunk tree, one per chunk (empty without a tree).
    pub leaves: Vec<Digest>,
    /// The tree's root (none without a tree).
    pub root: Option<Digest>,
    /// The parity sidecar written, if any.
    pub ecc: Option<ProtectReport>,
    /// Whether the outboard asked for in [`SaveOptions::outboard`] was written.
    pub outboard: bool,
    /// When each phase ended, in milliseconds since the pass started (a timeline for benchmarks and
    /// telemetry: `write`, `pyfolds`, `leaves`, `fsync`, `parity`, …), in the order they ended.
    pub phases: Vec<(&'static str, f64)>,
}

/// The phase timeline of a save (see [`SaveReport::phases`]).
struct Clock {
    t0: Instant,
    marks: Mutex<Vec<(&'static str, f64)>>,
}

impl Clock {
    fn new() -> Self {
        Self {
            t0: Instant::now(),
            marks: Mutex::new(Vec::new()),
        }
    }

    /// The marks, a poisoned lock recovered: a push is the only thing done under it, so the list is
    /// whole whatever panicked (dropping it, as before, lost every phase of the save).
    fn marks(&self) -> std::sync::MutexGuard<'_, Vec<(&'static str, f64)>> {
        self.marks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn mark(&self, name: &'static str) {
        let ms = self.t0.elapsed().as_secs_f64() * 1e3;
        self.marks().push((name, ms));
    }

    fn take(&self) -> Vec<(&'static str, f64)> {
        std::mem::take(&mut *self.marks())
    }
}

/// The file as a sequence of byte slices (header, then the tensors in file order).
struct Segments<'a> {
    parts: Vec<&'a [u8]>,
    /// Start offset of each part.
    starts: Vec<u64>,
    len: u64,
}

impl erasure::wide::Source for Segments<'_> {
    fn slice(&self, start: u64, end: u64) -> Option<&[u8]> {
        let idx = self
            .starts
            .partition_point(|&at| at <= start)
            .saturating_sub(1);
        let (part, &at) = (self.parts.get(idx)?, self.starts.get(idx)?);
        let from = usize::try_from(start.checked_sub(at)?).ok()?;
        let to = usize::try_from(end.checked_sub(at)?).ok()?;
        part.get(from..to)
    }

    fn each(&self, start: u64, end: u64, f: &mut dyn FnMut(&[u8])) {
        Segments::each(self, start, end, f);
    }
}

impl<'a> Segments<'a> {
    fn new(parts: Vec<&'a [u8]>) -> Self {
        let mut starts = Vec::with_capacity(parts.len());
        let mut at = 0u64;
        for p in &parts {
            starts.push(at);
            at += p.len() as u64;
        }
        Self {
            parts,
            starts,
            len: at,
        }
    }

    /// Call `f` with the slices that make up bytes `[start, end)`, in order.
    fn each(&self, start: u64, end: u64, mut f: impl FnMut(&[u8])) {
        // First part that ends after `start`.
        let first = self
            .starts
            .partition_point(|&s| s <= start)
            .saturating_sub(1);
        for (p, &s) in self.parts.iter().zip(&self.starts).skip(first) {
            if s >= end {
                break;
            }
            let e = s + p.len() as u64;
            if e <= start {
                continue;
            }
            let a = usize::try_from(start.saturating_sub(s)).unwrap_or(usize::MAX);
            let b = usize::try_from(end.min(e) - s).unwrap_or(usize::MAX);
            if let Some(slice) = p.get(a..b) {
                f(slice);
            }
        }
    }
}

/// Bytes written or hashed between two looks at the control.
const PIECE: usize = 8 << 20;

/// The weights' new file at `path` (the caller's private temporary name), locked while it is written
/// (see [`crate::io::atomic::create_new_locked`]).
fn create_new(path: &Path) -> Result<File, IoError> {
    crate::io::atomic::create_new_locked(path, 0o644)
}

/// Bytes written between two requests to start their writeback.
const WRITEBACK: u64 = 32 << 20;

fn write_parts(
    file: &File,
    path: &Path,
    seg: &Segments<'_>,
    control: &Control,
) -> Result<(), CheckpointError> {
    use std::io::Write as _;
    let mut w = file;
    let (mut at, mut flushed) = (0u64, 0u64);
    for part in &seg.parts {
        for piece in part.chunks(PIECE) {
            control.checkpoint()?;
            w.write_all(piece)
                .map_err(|e| IoError::from_os(path, "write", e))?;
            control.add(piece.len() as u64);
            at += piece.len() as u64;
            if at - flushed >= WRITEBACK {
                crate::io::start_writeback(file, flushed, at - flushed);
                flushed = at;
            }
        }
    }
    Ok(())
}

fn pyfolds_digest(
    tensors: &[SaveTensor<'_>],
    order: &[usize],
    control: &Control,
) -> Result<Digest, CheckpointError> {
    let mut h = Sha256::new();
    for &i in order {
        let t = tensors.get(i).ok_or(CheckpointError::InvalidArguments {
            reason: "hash order index out of range",
        })?;
        h.update(&t.hash_prefix);
        for piece in t.data.chunks(PIECE) {
            control.checkpoint()?;
            h.update(piece);
            control.add(piece.len() as u64);
        }
    }
    Ok(h.finalize())
}

/// The tree's leaves, and with `cvs` (a `blake3-tree-v1` tree whose chunks are a power-of-two number
/// ≥ 2 of outboard pieces) the chaining values of every full chunk's pieces, from the same hashing.
fn tree_leaves(
    seg: &Segments<'_>,
    chunk_size: ChunkSize,
    alg: TreeAlgorithm,
    mut cvs: Option<&mut Vec<ChainingValue>>,
    control: &Control,
) -> Result<Vec<Digest>, CheckpointError> {
    use erasure::wide::Source as _;
    let n = chunk_size.chunk_count(seg.len);
    let mut leaves = Vec::with_capacity(usize::try_from(n).unwrap_or(0));
    let mut since = 0u64;
    let mut gather = Vec::new();
    for i in 0..n {
        let (start, len) = chunk_size.chunk_range(i, seg.len);
        let with_cvs = match cvs.as_deref_mut() {
            Some(out) if alg == TreeAlgorithm::Blake3 && len == chunk_size.get() => {
                let chunk = match seg.slice(start, start + len) {
                    Some(c) if c.len() as u64 == len => c,
                    _ => {
                        gather.clear();
                        seg.each(start, start + len, |s| gather.extend_from_slice(s));
                        gather.as_slice()
                    }
                };
                leaf_and_cvs(chunk, OUTBOARD_PIECE).map(|(leaf, c)| {
                    out.extend(c);
                    leaf
                })
            }
            _ => None,
        };
        let leaf = match (with_cvs, alg) {
            (Some(leaf), _) => leaf,
            (None, TreeAlgorithm::Sha256) => {
                let mut h = Sha256::new();
                seg.each(start, start + len, |s| h.update(s));
                h.finalize()
            }
            (None, TreeAlgorithm::Blake3) => {
                let mut h = blake3::Hasher::new();
                seg.each(start, start + len, |s| {
                    h.update(s);
                });
                *h.finalize().as_bytes()
            }
        };
        leaves.push(leaf);
        control.add(len);
        since += len;
        if since >= PIECE as u64 {
            since = 0;
            control.checkpoint()?;
        }
    }
    Ok(leaves)
}

/// Write the outboard of a file of `file_len` bytes from its chaining values to `out`; false (and no
/// file left behind) when it cannot be written: it is an accelerator, never a reason to fail a save.
fn write_outboard_of(
    out: &Path,
    chunk_size: ChunkSize,
    file_len: u64,
    cvs: &[ChainingValue],
) -> bool {
    let written = OutboardHeader::new(chunk_size.get(), file_len)
        .and_then(|h| write_cvs(out, &h, cvs))
        .is_ok();
    if !written {
        let _ = std::fs::remove_file(out);
    }
    written
}

/// Check the tensors and lay them out: the header and the data in file order.
fn lay_out<'a>(
    tensors: &[SaveTensor<'a>],
    order: &[usize],
) -> Result<(Vec<u8>, Vec<&'a [u8]>), CheckpointError> {
    let mut seen = vec![false; tensors.len()];
    if order.len() != tensors.len() {
        return Err(CheckpointError::InvalidArguments {
            reason: "the hash order must list every tensor once",
        });
    }
    for &i in order {
        match seen.get_mut(i) {
            Some(s) if !*s => *s = true,
            _ => {
                return Err(CheckpointError::InvalidArguments {
                    reason: "the hash order must list every tensor once",
                })
            }
        }
    }
    let specs: Vec<TensorSpec> = tensors.iter().map(|t| t.spec.clone()).collect();
    let lay = layout(specs, None)?;
    let by_name: HashMap<&str, &SaveTensor<'a>> =
        tensors.iter().map(|t| (t.spec.name.as_str(), t)).collect();
    let mut data = Vec::with_capacity(tensors.len());
    for (spec, start, end) in &lay.tensors {
        let t = by_name
            .get(spec.name.as_str())
            .ok_or(CheckpointError::InvalidArguments {
                reason: "tensor missing from the layout",
            })?;
        let want = end - start;
        if t.data.len() as u64 != want {
            return Err(CheckpointError::SizeMismatch {
                name: spec.name.clone(),
                expected: want,
                actual: t.data.len() as u64,
            });
        }
        data.push(t.data);
    }
    Ok((lay.header, data))
}

/// Write `tensors` as a safetensors file at `path` (created, must not exist) and compute its `PyFolds`
/// digest, chunk tree and (optionally) parity sidecar in the same pass; see the module docs. Progress:
/// the control's total is set to `file_len * passes` (write, `PyFolds` hash, tree, and parity when
/// asked), and each pass adds its bytes.
#[allow(clippy::too_many_lines)]
pub fn save_weights(
    path: &Path,
    tensors: &[SaveTensor<'_>],
    options: &SaveOptions,
    control: &Control,
) -> Result<SaveReport, CheckpointError> {
    let clock = Clock::new();
    let (header, data) = lay_out(tensors, &options.hash_order)?;
    let header_len = header.len() as u64;
    let header_sha256 = sha256(&header);
    let mut parts = Vec::with_capacity(data.len() + 1);
    parts.push(header.as_slice());
    parts.extend(data);
    let seg = Segments::new(parts);
    let file_len = seg.len;
    let passes = 2 + u64::from(options.tree.is_some()) + u64::from(options.ecc.is_some());
    control.set_total(file_len.saturating_mul(passes));

    let file = create_new(path)?;
    let result = run(path, &file, tensors, &seg, options, control, &clock);
    drop(file);
    match result {
        Ok((pyfolds, leaves, ecc, outboard)) => {
            let root = options
                .tree
                .map(|t| t.root(options.chunk_size, file_len, &leaves));
            Ok(SaveReport {
                file_len,
                header_len,
                header_sha256,
                pyfolds,
                leaves,
                root,
                ecc,
                outboard,
                phases: clock.take(),
            })
        }
        Err(e) => {
            let _ = std::fs::remove_file(path);
            if let Some(out) = &options.outboard {
                let _ = std::fs::remove_file(out);
            }
            Err(e)
        }
    }
}

type Computed = (Digest, Vec<Digest>, Option<ProtectReport>, bool);

fn run(
    path: &Path,
    file: &File,
    tensors: &[SaveTensor<'_>],
    seg: &Segments<'_>,
    options: &SaveOptions,
    control: &Control,
    clock: &Clock,
) -> Result<Computed, CheckpointError> {
    // A failing thread cancels the others through this control (the caller's is forwarded to it by a
    // thread that polls it every 5 ms, so a cancellation from before the start is checked here: a
    // small save could otherwise finish before the forwarder first runs, and succeed).
    if control.is_cancelled() {
        return Err(CheckpointError::Cancelled);
    }
    let inner = Arc::new(Control::new());
    let written = Flag::default();
    let finished = Flag::default();
    std::thread::scope(|s| {
        let fwd = s.spawn(|| forward(control, &inner, &finished, FORWARD_PERIOD));
        let writer = s.spawn(|| {
            let r = write_parts(file, path, seg, &inner).and_then(|()| {
                written.set();
                clock.mark("write");
                file.sync_all()
                    .map_err(|e| CheckpointError::Io(IoError::from_os(path, "fsync", e)))
            });
            clock.mark("fsync");
            if r.is_err() {
                inner.cancel();
            }
            r
        });
        let hasher = s.spawn(|| {
            let r = pyfolds_digest(tensors, &options.hash_order, &inner);
            clock.mark("pyfolds");
            if r.is_err() {
                inner.cancel();
            }
            r
        });
        // The parity is encoded from the caller's buffers at the same time as the write and the
        // hashes; its sidecar is finished once the file is written (it records the file's mtime).
        let parity = options.ecc.as_ref().map(|(sidecar, opts)| {
            let (inner, written) = (&inner, &written);
            s.spawn(move || {
                let r = parity(path, file, seg, sidecar, *opts, written, inner, clock);
                clock.mark("parity");
                if r.is_err() {
                    inner.cancel();
                }
                r
            })
        });
        let mut cvs = Vec::new();
        let want_cvs = options.outboard.is_some() && options.tree == Some(TreeAlgorithm::Blake3);
        let leaves = match options.tree {
            Some(alg) => tree_leaves(
                seg,
                options.chunk_size,
                alg,
                want_cvs.then_some(&mut cvs),
                &inner,
            ),
            None => Ok(Vec::new()),
        };
        clock.mark("leaves");
        let outboard = match (&options.outboard, &leaves) {
            (Some(out), Ok(_)) if want_cvs => {
                let w = write_outboard_of(out, options.chunk_size, seg.len, &cvs);
                clock.mark("outboard");
                w
            }
            _ => false,
        };
        if leaves.is_err() {
            inner.cancel();
        }
        let ecc = parity.map_or(Ok(None), |h| join(h).map(Some));
        let written_r = join(writer);
        let digest_r = join(hasher);
        finished.set();
        let _ = fwd.join();
        match (written_r, digest_r, leaves, ecc) {
            (Ok(()), Ok(digest), Ok(leaves), Ok(parity)) => Ok((digest, leaves, parity, outboard)),
            (a, b, c, d) => Err(first_error([a.err(), b.err(), c.err(), d.err()])),
        }
    })
}

/// Wait until the writer has written every byte (`written`), then the file's metadata; cancelled when
/// the writer failed or the save was cancelled.
fn wait_written(
    file: &File,
    path: &Path,
    written: &Flag,
    control: &Control,
) -> Result<std::fs::Metadata, ErasureError> {
    while !written.wait(Duration::from_millis(1)) {
        if control.is_cancelled() {
            return Err(ErasureError::Cancelled);
        }
    }
    file.metadata()
        .map_err(|e| ErasureError::from(IoError::from_os(path, "stat", e)))
}

/// The parity sidecar: from the caller's buffers while the file is written (the wide code), or, for
/// the striped code, from the written file (page cache) while it is fsynced.
#[allow(clippy::too_many_arguments)]
fn parity(
    path: &Path,
    file: &File,
    seg: &Segments<'_>,
    sidecar: &Path,
    opts: ProtectOptions,
    written: &Flag,
    control: &Control,
    clock: &Clock,
) -> Result<ProtectReport, CheckpointError> {
    let wait = || wait_written(file, path, written, control);
    let from_buffers = erasure::protect_source(
        seg,
        seg.len,
        path,
        sidecar,
        opts,
        || {
            clock.mark("parity.encoded");
            wait()
        },
        control,
    )?;
    if let Some(r) = from_buffers {
        return Ok(r);
    }
    wait()?;
    clock.mark("parity.start");
    Ok(erasure::protect_new(path, sidecar, opts, control)?)
}

fn join<T>(
    h: std::thread::ScopedJoinHandle<'_, Result<T, CheckpointError>>,
) -> Result<T, CheckpointError> {
    h.join().unwrap_or(Err(CheckpointError::InvalidArguments {
        reason: "a save thread panicked",
    }))
}

/// The error to report: a part's own failure beats the cancellations it caused.
fn first_error(errors: [Option<CheckpointError>; 4]) -> CheckpointError {
    errors
        .into_iter()
        .flatten()
        .find(|e| !matches!(e, CheckpointError::Cancelled))
        .unwrap_or(CheckpointError::Cancelled)
}

/// How often the forwarder looks at the caller's control and the save's progress.
const FORWARD_PERIOD: Duration = Duration::from_millis(5);

/// A flag set once, that threads wait on without sleeping a fixed time: [`Flag::set`] wakes every
/// waiter at once. (Fixed sleeps of 1 and 5 ms here made a save of a few KiB take 8.5 ms, most of it
/// waiting for the forwarder's next look.)
#[derive(Debug, Default)]
struct Flag {
    set: Mutex<bool>,
    cv: Condvar,
}

impl Flag {
    fn set(&self) {
        if let Ok(mut set) = self.set.lock() {
            *set = true;
        }
        self.cv.notify_all();
    }

    /// Whether the flag is set (a poisoned lock counts as set: nobody waits for good).
    fn is_set(&self) -> bool {
        self.set.lock().map_or(true, |set| *set)
    }

    /// Wait up to `timeout` for the flag; whether it is set.
    fn wait(&self, timeout: Duration) -> bool {
        let Ok(set) = self.set.lock() else {
            return true;
        };
        if *set {
            return true;
        }
        self.cv
            .wait_timeout(set, timeout)
            .map_or(true, |(set, _)| *set)
    }
}

/// Forward the caller's cancellation to `inner` and `inner`'s progress to the caller, until `finished`.
fn forward(outer: &Control, inner: &Control, finished: &Flag, period: Duration) {
    let mut last = 0u64;
    loop {
        let done = finished.is_set();
        if outer.is_cancelled() {
            inner.cancel();
        }
        let now = inner.done();
        if now > last {
            outer.add(now - last);
            last = now;
        }
        if done {
            return;
        }
        finished.wait(period);
    }
}

/// A chunk's leaf as [`file_leaves`] read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileLeaf {
    /// The leaf of the chunk's bytes.
    Leaf(Digest),
    /// The chunk lies (partly) past the end of the file: it cannot match its leaf.
    Missing,
    /// The chunk's bytes could not be read because they are lost to the medium (`EIO`, see
    /// [`IoError::is_lost_to_medium`]): a damaged chunk that parity may rebuild, not a failed check.
    Unreadable,
}

impl FileLeaf {
    /// The leaf, when the chunk was read whole.
    #[must_use]
    pub fn digest(&self) -> Option<&Digest> {
        match self {
            Self::Leaf(d) => Some(d),
            Self::Missing | Self::Unreadable => None,
        }
    }
}

/// Leaves of chunks `[first, first + count)` of the file at `path` (the chunk tree's cut at
/// `chunk_size`), read with `pread` and hashed in parallel on the rayon pool. The last chunk is as long
/// as the file allows.
pub fn file_leaves(
    path: &Path,
    chunk_size: ChunkSize,
    first: u64,
    count: u64,
    alg: TreeAlgorithm,
    control: &Control,
) -> Result<Vec<FileLeaf>, CheckpointError> {
    use rayon::prelude::*;
    let (file, len) = crate::io::open_regular(path)?;
    let end = first.saturating_add(count);
    let present = end.min(chunk_size.chunk_count(len)).saturating_sub(first);
    control.set_total(present.saturating_mul(chunk_size.get()).min(len));
    (first..end)
        .into_par_iter()
        .map_init(
            || vec![0u8; chunk_size.as_usize()],
            |buf, idx| -> Result<FileLeaf, CheckpointError> {
                control.checkpoint()?;
                let (start, clen) = chunk_size.chunk_range(idx, len);
                if clen == 0 {
                    return Ok(FileLeaf::Missing);
                }
                let Some(b) = buf.get_mut(..usize::try_from(clen).unwrap_or(usize::MAX)) else {
                    return Ok(FileLeaf::Missing);
                };
                let leaf = match crate::io::read_exact_at(&file, path, b, start) {
                    Ok(()) => FileLeaf::Leaf(alg.leaf(b)),
                    Err(IoError::Truncated { .. }) => return Ok(FileLeaf::Missing),
                    Err(e) if e.is_lost_to_medium() => FileLeaf::Unreadable,
                    Err(e) => return Err(e.into()),
                };
                control.add(clen);
                Ok(leaf)
            },
        )
        .collect()
}

/// Domain tag of the integrity block's seal message (`docs/formats/checkpoint.md`, "Seal message").
pub const SEAL_TAG: &str = "tensorvault-checkpoint-seal-v1";

/// The fields of an integrity block its seal covers (`docs/formats/checkpoint.md`, "Seal message").
#[derive(Debug, Clone, Copy)]
pub struct SealFields<'a> {
    /// `algorithm` (`TREE+SEAL`).
    pub algorithm: &'a str,
    /// `chunk_size`.
    pub chunk_size: u64,
    /// `file_length`.
    pub file_length: u64,
    /// `header_length`.
    pub header_length: u64,
    /// `header_sha256`, raw (32 bytes).
    pub header_sha256: &'a [u8],
    /// `root`, raw (32 bytes).
    pub root: &'a [u8],
    /// The canonical JSON (RFC 8785) of the sidecar's `metadata`.
    pub metadata: &'a str,
    /// The sidecar's `integrity_hash`.
    pub integrity_hash: &'a str,
    /// The canonical JSON of the block's `ecc`.
    pub ecc: &'a str,
}

/// The length-framed seal message: each field as its length (u64, big-endian) and its bytes; the three
/// integers as 8 big-endian bytes each.
#[must_use]
pub fn seal_message(f: &SealFields<'_>) -> Vec<u8> {
    let (n1, n2, n3) = (
        f.chunk_size.to_be_bytes(),
        f.file_length.to_be_bytes(),
        f.header_length.to_be_bytes(),
    );
    let fields: [&[u8]; 10] = [
        SEAL_TAG.as_bytes(),
        f.algorithm.as_bytes(),
        &n1,
        &n2,
        &n3,
        f.header_sha256,
        f.root,
        f.metadata.as_bytes(),
        f.integrity_hash.as_bytes(),
        f.ecc.as_bytes(),
    ];
    let mut out = Vec::with_capacity(fields.iter().map(|b| 8 + b.len()).sum());
    for b in fields {
        out.extend_from_slice(&(b.len() as u64).to_be_bytes());
        out.extend_from_slice(b);
    }
    out
}

/// The seal as stored: `sha256:<hex>` of the message, or `hmac-sha256:<hex>` with a key.
#[must_use]
pub fn seal(f: &SealFields<'_>, key: Option<&[u8]>) -> String {
    let m = seal_message(f);
    match key {
        None => format!("sha256:{}", crate::hash::to_hex(&crate::hash::sha256(&m))),
        Some(k) => format!(
            "hmac-sha256:{}",
            crate::hash::to_hex(&crate::hash::hmac_sha256(k, &m))
        ),
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
mod tests {
    use super::*;
    use crate::ecc::erasure::{verify, ChunkDigest, Level, Status};
    use crate::hash::{hash_file, to_hex, FileDigest, HashFileOptions, HashMode};
    use crate::safetensors::{Dtype, SafetensorsWriter};

    /// A thread that panicked while it held the phase timeline's lock (poisoning it) no longer empties
    /// the timeline: the marks before and after the panic are all in the save report.
    #[test]
    fn a_poisoned_phase_clock_keeps_every_mark() {
        let clock = Clock::new();
        clock.mark("write");
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _held = clock.marks.lock();
            panic!("injected panic while holding the phase marks");
        }));
        assert!(clock.marks.is_poisoned());
        clock.mark("fsync");
        let names: Vec<&str> = clock.take().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["write", "fsync"]);
    }

    /// The seal's known answers, computed by the TypeScript writer's message builder (the one every
    /// checkpoint saved before the seal moved into the addon was sealed with): unkeyed, keyed with a
    /// string key, and keyed with bytes over an empty metadata and no parity.
    #[test]
    fn seal_known_answers() {
        let (h, r) = ([0xab_u8; 32], [0xcd_u8; 32]);
        let ih = format!("sha256:{}", "ef".repeat(32));
        let f = SealFields {
            algorithm: "blake3-tree-v1+sha256",
            chunk_size: 1_048_576,
            file_length: 536_813_568,
            header_length: 24_584,
            header_sha256: &h,
            root: &r,
            metadata: r#"{"config":{"lr":0.001},"created_at":"2026-12-04T00:00:00Z","note":"ação ✓ 🙂","version":"1"}"#,
            integrity_hash: &ih,
            ecc: r#"{"file":"m.safetensors.tvecc","kind":"tvecc"}"#,
        };
        assert_eq!(seal_message(&f).len(), 433);
        assert_eq!(
            seal(&f, None),
            "sha256:5c62eb866e579c785a6c2d0ed072c33fa3ea079daa7a9a9fc875aaa3584ab73d"
        );
        assert_eq!(
            seal(&f, Some(b"k3y")),
            "hmac-sha256:8b7cfad9eccb5037ced38faa755118d5d06e20b495ab9e8058950c17abd91b89"
        );
        let g = SealFields {
            algorithm: "blake3-tree-v1+hmac-sha256",
            metadata: "{}",
            ecc: "null",
            ..f
        };
        assert_eq!(
            seal(&g, Some(&[0, 1, 2, 255])),
            "hmac-sha256:0532d939760318f1ce8ad7572403571c357a163b924e031ef861c73f6591e884"
        );
    }

    fn spec(name: &str, dtype: Dtype, shape: &[u64]) -> TensorSpec {
        TensorSpec {
            name: name.into(),
            dtype,
            shape: shape.to_vec(),
        }
    }

    fn opts(order: Vec<usize>, ecc: Option<(PathBuf, ProtectOptions)>) -> SaveOptions {
        SaveOptions {
            chunk_size: ChunkSize::new(4096).unwrap(),
            tree: Some(TreeAlgorithm::Sha256),
            hash_order: order,
            ecc,
            outboard: None,
        }
    }

    #[test]
    fn pyfolds_known_answer_and_same_bytes_as_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let w: Vec<u8> = [1.0f32, 2.0].iter().flat_map(|v| v.to_le_bytes()).collect();
        let b: Vec<u8> = 0.5f32.to_le_bytes().to_vec();
        let tensors = vec![
            SaveTensor {
                spec: spec("w", Dtype::F32, &[2]),
                data: &w,
                hash_prefix: b"wtorch.float32(2,)".to_vec(),
            },
            SaveTensor {
                spec: spec("b", Dtype::F32, &[]),
                data: &b,
                hash_prefix: b"btorch.float32()".to_vec(),
            },
        ];
        let path = dir.path().join("a.safetensors");
        // `PyFolds` order: sorted names ("b" before "w").
        let r = save_weights(&path, &tensors, &opts(vec![1, 0], None), &Control::new()).unwrap();
        assert_eq!(
            to_hex(&r.pyfolds),
            "ef7ddc4cbd3ce109ea2c3e01e39555cd1c183669a2585f055a8db30a1ddb08bd"
        );
        let other = dir.path().join("b.safetensors");
        let mut wr = SafetensorsWriter::create(
            &other,
            vec![spec("w", Dtype::F32, &[2]), spec("b", Dtype::F32, &[])],
            None,
        )
        .unwrap();
        let order: Vec<String> = wr
            .layout()
            .tensors
            .iter()
            .map(|t| t.0.name.clone())
            .collect();
        for n in order {
            wr.write(if n == "w" { &w } else { &b }).unwrap();
        }
        wr.finish().unwrap();
        let got = std::fs::read(&path).unwrap();
        assert_eq!(got, std::fs::read(&other).unwrap());
        assert_eq!(r.file_len, got.len() as u64);
        assert_eq!(
            r.header_sha256,
            sha256(&got[..usize::try_from(r.header_len).unwrap()])
        );
    }

    /// `bufs` as U8 tensors `t0`, `t1`, … without a hash prefix.
    fn u8_tensors(bufs: &[Vec<u8>]) -> Vec<SaveTensor<'_>> {
        bufs.iter()
            .enumerate()
            .map(|(i, d)| SaveTensor {
                spec: spec(&format!("t{i}"), Dtype::U8, &[d.len() as u64]),
                data: d,
                hash_prefix: Vec::new(),
            })
            .collect()
    }

    fn model(n: usize, each: usize) -> Vec<Vec<u8>> {
        (0..n)
            .map(|i| {
                (0..each)
                    .map(|j| u8::try_from((i * 31 + j * 7) % 251).unwrap())
                    .collect()
            })
            .collect()
    }

    #[test]
    fn tree_matches_hash_file_and_parity_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let bufs = model(7, 10_000);
        let tensors: Vec<SaveTensor<'_>> = bufs
            .iter()
            .enumerate()
            .map(|(i, d)| SaveTensor {
                spec: spec(&format!("t{i}"), Dtype::U8, &[d.len() as u64]),
                data: d,
                hash_prefix: format!("t{i}").into_bytes(),
            })
            .collect();
        let path = dir.path().join("m.safetensors");
        let sidecar = dir.path().join("m.tvecc");
        let r = save_weights(
            &path,
            &tensors,
            &opts(
                (0..7).collect(),
                Some((
                    sidecar.clone(),
                    ProtectOptions::Level(Level::Medium, ChunkDigest::default()),
                )),
            ),
            &Control::new(),
        )
        .unwrap();
        let FileDigest::Tree(tree) = hash_file(
            &path,
            &HashFileOptions {
                mode: HashMode::Tree(ChunkSize::new(4096).unwrap()),
                threads: Some(1),
            },
            &Control::new(),
        )
        .unwrap() else {
            panic!("not a tree")
        };
        assert_eq!(tree.leaves(), r.leaves.as_slice());
        assert_eq!(Some(tree.root()), r.root);
        // The `PyFolds` digest over the tensors in the order given.
        let mut h = Sha256::new();
        for (i, d) in bufs.iter().enumerate() {
            h.update(format!("t{i}").as_bytes());
            h.update(d);
        }
        assert_eq!(h.finalize(), r.pyfolds);
        assert!(r.ecc.is_some());
        let v = verify(&path, Some(&sidecar), &Control::new()).unwrap();
        assert_eq!(v.status, Status::Intact);
        // BLAKE3 tree: leaves per chunk of the file.
        let file = std::fs::read(&path).unwrap();
        let path2 = dir.path().join("n.safetensors");
        let mut o = opts((0..7).collect(), None);
        o.tree = Some(TreeAlgorithm::Blake3);
        let r2 = save_weights(&path2, &tensors, &o, &Control::new()).unwrap();
        let cs = ChunkSize::new(4096).unwrap();
        assert_eq!(r2.leaves, TreeAlgorithm::Blake3.leaves_of(&file, cs));
        assert_eq!(r2.leaves[0], *blake3::hash(&file[..4096]).as_bytes());
        assert_ne!(r2.root, r.root);
        o.tree = None;
        let r3 = save_weights(
            &dir.path().join("o.safetensors"),
            &tensors,
            &o,
            &Control::new(),
        )
        .unwrap();
        assert!(r3.leaves.is_empty() && r3.root.is_none());
        assert_eq!(r3.pyfolds, r.pyfolds);
    }

    #[test]
    fn wide_parity_from_the_buffers_is_the_sidecar_protect_writes() {
        use crate::ecc::erasure::{protect, Format};
        let dir = tempfile::tempdir().unwrap();
        // Odd sizes: tensors straddle the wide code's chunks and its 64-byte columns.
        let bufs: Vec<Vec<u8>> = [70_001usize, 3, 131_072, 0, 99_999, 4097]
            .iter()
            .enumerate()
            .map(|(i, &n)| {
                model(1, n)
                    .remove(0)
                    .into_iter()
                    .map(|b| b ^ u8::try_from(i).unwrap())
                    .collect()
            })
            .collect();
        let tensors = u8_tensors(&bufs);
        for level in [Level::Low, Level::Medium, Level::High] {
            let path = dir.path().join(format!("{level:?}.safetensors"));
            let sidecar = dir.path().join(format!("{level:?}.tvecc"));
            let o = ProtectOptions::LevelFormat(level, ChunkDigest::default(), Format::V2);
            let r = save_weights(
                &path,
                &tensors,
                &opts((0..bufs.len()).collect(), Some((sidecar.clone(), o))),
                &Control::new(),
            )
            .unwrap();
            assert!(r.ecc.unwrap().layout.params.is_wide());
            assert!(r.phases.iter().any(|p| p.0 == "parity.encoded"));
            // The same file protected afterwards from its bytes on disk: the same sidecar.
            let again = dir.path().join(format!("{level:?}.again.tvecc"));
            protect(&path, Some(&again), o, &Control::new()).unwrap();
            assert_eq!(
                std::fs::read(&sidecar).unwrap(),
                std::fs::read(&again).unwrap()
            );
            let v = verify(&path, Some(&sidecar), &Control::new()).unwrap();
            assert_eq!(v.status, Status::Intact);
        }
    }

    #[test]
    fn blake3_tree_known_answer() {
        // 5000 bytes of 0xab in 4 KiB chunks: two leaves; root = BLAKE3(header ‖ leaves).
        let data = vec![0xabu8; 5000];
        let cs = ChunkSize::new(4096).unwrap();
        let leaves = TreeAlgorithm::Blake3.leaves_of(&data, cs);
        let mut msg = Vec::new();
        msg.extend_from_slice(b"TVCTREE\x01\x02\0\0\0\0\0\0\0");
        msg.extend_from_slice(&4096u64.to_le_bytes());
        msg.extend_from_slice(&5000u64.to_le_bytes());
        msg.extend_from_slice(blake3::hash(&data[..4096]).as_bytes());
        msg.extend_from_slice(blake3::hash(&data[4096..]).as_bytes());
        assert_eq!(
            TreeAlgorithm::Blake3.root(cs, 5000, &leaves),
            *blake3::hash(&msg).as_bytes()
        );
    }

    #[test]
    fn the_outboard_from_the_save_pass_is_the_one_computed_from_the_file() {
        // 3 tensors whose bytes straddle the 256 KiB chunks (so some chunks are gathered from two
        // buffers), a short last chunk (no outboard entry), and a known-bad chunk size (no outboard).
        let dir = tempfile::tempdir().unwrap();
        let mut state = 7u32;
        let mut bytes = |n: usize| -> Vec<u8> {
            (0..n)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 17;
                    state ^= state << 5;
                    state.to_le_bytes()[0]
                })
                .collect()
        };
        let (ta, tb, tc) = (bytes(300_000), bytes(500_000), bytes(123_456));
        let tensors = vec![
            SaveTensor {
                spec: spec("a", Dtype::U8, &[300_000]),
                data: &ta,
                hash_prefix: b"a".to_vec(),
            },
            SaveTensor {
                spec: spec("b", Dtype::U8, &[500_000]),
                data: &tb,
                hash_prefix: b"b".to_vec(),
            },
            SaveTensor {
                spec: spec("c", Dtype::U8, &[123_456]),
                data: &tc,
                hash_prefix: b"c".to_vec(),
            },
        ];
        let cs = ChunkSize::new(256 * 1024).unwrap();
        let path = dir.path().join("w.safetensors");
        let out = dir.path().join("w.tvob");
        let mut options = opts(vec![0, 1, 2], None);
        options.chunk_size = cs;
        options.tree = Some(TreeAlgorithm::Blake3);
        options.outboard = Some(out.clone());
        let r = save_weights(&path, &tensors, &options, &Control::new()).unwrap();
        assert!(r.outboard);
        let file = std::fs::read(&path).unwrap();
        assert_eq!(r.leaves, TreeAlgorithm::Blake3.leaves_of(&file, cs));
        let reread = dir.path().join("reread.tvob");
        crate::checkpoint_outboard::write_outboard(&path, &reread, cs.get(), &Control::new())
            .unwrap();
        assert_eq!(
            std::fs::read(&out).unwrap(),
            std::fs::read(&reread).unwrap()
        );
        // 64 KiB chunks hold one piece each: no outboard is written, and none is left behind.
        let path2 = dir.path().join("w2.safetensors");
        let out2 = dir.path().join("w2.tvob");
        options.chunk_size = ChunkSize::new(64 * 1024).unwrap();
        options.outboard = Some(out2.clone());
        let r2 = save_weights(&path2, &tensors, &options, &Control::new()).unwrap();
        assert!(!r2.outboard);
        assert!(!out2.exists());
    }

    #[test]
    fn wrong_size_and_bad_order_are_refused_and_leave_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let d = vec![0u8; 10];
        let tensors = vec![SaveTensor {
            spec: spec("x", Dtype::F32, &[3]),
            data: &d,
            hash_prefix: Vec::new(),
        }];
        let path = dir.path().join("x.safetensors");
        let e = save_weights(&path, &tensors, &opts(vec![0], None), &Control::new()).unwrap_err();
        assert!(matches!(
            e,
            CheckpointError::SizeMismatch {
                expected: 12,
                actual: 10,
                ..
            }
        ));
        let e = save_weights(&path, &tensors, &opts(vec![], None), &Control::new()).unwrap_err();
        assert!(matches!(e, CheckpointError::InvalidArguments { .. }));
        assert!(!path.exists());
    }

    #[test]
    fn cancelled_save_removes_the_file_and_existing_path_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let bufs = model(4, 100_000);
        let tensors = u8_tensors(&bufs);
        let path = dir.path().join("c.safetensors");
        let c = Control::new();
        c.cancel();
        let e = save_weights(&path, &tensors, &opts((0..4).collect(), None), &c).unwrap_err();
        assert!(matches!(e, CheckpointError::Cancelled));
        assert!(!path.exists());
        std::fs::write(&path, b"old").unwrap();
        let e = save_weights(
            &path,
            &tensors,
            &opts((0..4).collect(), None),
            &Control::new(),
        )
        .unwrap_err();
        assert!(matches!(e, CheckpointError::Io(_)));
        // O_EXCL failed before anything was written: the file that was there is not removed.
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
    }

    /// A save whose control was cancelled before it started never succeeds, however quickly its
    /// work is done: the cancellation used to reach the workers only through a thread polling every
    /// 5 ms, so a small save could finish first and report success (this test failed once under
    /// load in `cancelled_save_removes_the_file_and_existing_path_is_kept`).
    #[test]
    fn a_save_cancelled_before_it_starts_never_succeeds() {
        let dir = tempfile::tempdir().unwrap();
        let bufs = model(2, 16);
        let tensors = u8_tensors(&bufs);
        for i in 0..200 {
            let path = dir.path().join(format!("c{i}.safetensors"));
            let c = Control::new();
            c.cancel();
            let r = save_weights(&path, &tensors, &opts(vec![0, 1], None), &c);
            assert!(matches!(r, Err(CheckpointError::Cancelled)), "save {i}");
            assert!(!path.exists(), "save {i}");
        }
    }

    /// Regression (2026-12-04): every save ended by joining the forwarder, which slept 5 ms between
    /// its looks, and the parity waited for the write in 1 ms sleeps: a save of 4 KiB took 8.5 ms.
    /// Both now wait on a [`Flag`] that wakes them when it is set. With an hour between looks, the
    /// forwarder must still stop as soon as the save is finished, and a waiter for the write as soon
    /// as the write is done; progress made before is forwarded.
    #[test]
    fn the_forwarder_and_the_parity_wake_when_the_save_is_done_not_at_their_next_look() {
        // Detached threads (not scoped): a sleeper that is not woken fails the test by the timeout
        // instead of hanging it.
        let hour = Duration::from_secs(3600);
        let outer = Arc::new(Control::new());
        let inner = Arc::new(Control::new());
        let finished = Arc::new(Flag::default());
        let (tx, rx) = std::sync::mpsc::channel();
        // Progress made before the forwarder's first look (added before it starts: were it added
        // after, a forwarder scheduled first would look at 0 and then sleep its hour, and the loop
        // below would spin for ever, as it did once in CI under load).
        inner.add(77);
        {
            let (outer, inner, finished) = (outer.clone(), inner.clone(), finished.clone());
            std::thread::spawn(move || {
                forward(&outer, &inner, &finished, hour);
                let _ = tx.send(());
            });
        }
        // Its first look forwards 77; then it waits for its next one.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while outer.done() < 77 {
            assert!(
                std::time::Instant::now() < deadline,
                "the forwarder's first look did not forward the progress made before it"
            );
            std::thread::yield_now();
        }
        std::thread::sleep(Duration::from_millis(20));
        inner.add(23);
        finished.set();
        rx.recv_timeout(Duration::from_secs(20))
            .expect("the forwarder slept on after the save finished");
        assert_eq!(outer.done(), 100);
        let written = Arc::new(Flag::default());
        let (tx, rx) = std::sync::mpsc::channel();
        {
            let written = written.clone();
            std::thread::spawn(move || {
                let _ = tx.send(written.wait(hour));
            });
        }
        std::thread::sleep(Duration::from_millis(20));
        written.set();
        assert_eq!(rx.recv_timeout(Duration::from_secs(20)), Ok(true));
        assert!(written.wait(hour) && written.is_set());
        assert!(!Flag::default().wait(Duration::from_millis(1)));
    }

    #[test]
    fn file_leaves_match_the_saved_tree_and_flag_missing_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let bufs = model(3, 9_000);
        let tensors = u8_tensors(&bufs);
        for alg in [TreeAlgorithm::Sha256, TreeAlgorithm::Blake3] {
            let path = dir.path().join(format!("{alg:?}.safetensors"));
            let mut o = opts((0..3).collect(), None);
            o.tree = Some(alg);
            let r = save_weights(&path, &tensors, &o, &Control::new()).unwrap();
            let n = r.leaves.len() as u64;
            let got = file_leaves(&path, o.chunk_size, 1, n + 1, alg, &Control::new()).unwrap();
            assert_eq!(got.len() as u64, n + 1);
            for (i, g) in got.iter().take(usize::try_from(n - 1).unwrap()).enumerate() {
                assert_eq!(g.digest(), Some(&r.leaves[i + 1]));
            }
            assert_eq!(got[usize::try_from(n - 1).unwrap()], FileLeaf::Missing);
            assert_eq!(got[usize::try_from(n).unwrap()], FileLeaf::Missing);
        }
    }
}
