//! Format v2 (`docs/formats/ecc-sidecar.md`, "Format version 2"): one wide Reed-Solomon code over
//! GF(2^16) across **all** the file's chunks, so that any `m` damaged chunks (data or parity, wherever
//! they are) are repairable — par2's promise — where v1's GF(2^8) stripes allow only `m` per stripe.
//!
//! The transform is Leopard-RS's O(n log n) FFT code as implemented by the `reed-solomon-simd` crate
//! (pinned in the workspace `Cargo.toml`; its output is pinned here by known-answer tests). The code acts
//! on every 64-byte column of the chunks independently: bytes `[64·c, 64·c + 64)` of every data chunk
//! (the short last chunk zero-padded) are one set of 32 GF(2^16) codewords, and the matching 64 bytes of
//! every parity chunk are their parity. So a file of any size is encoded in column slices of `w` bytes
//! (`w` a multiple of 64) with memory `≈ threads · (k + 2m) · w`, reading the file through an mmap, and
//! the result does not depend on `w` (a test checks it). The high-rate shapes (every preset) are
//! encoded by [`StreamEncoder`], which transforms the data shards a chunk of `next_pow2(m)` at a time as
//! they are read (the crate's own steps in its order, so the same parity), in a work area of two such
//! chunks rather than all `k`.

use std::fs::File;
use std::path::Path;

use rayon::prelude::*;
use reed_solomon_simd::ReedSolomonEncoder;

use crate::control::Control;
use crate::hash::{ChunkSize, Digest, Sha256};
use crate::io::Mapping;
use crate::io::{open_regular, read_exact_at, IoError};

use super::gf16_gfni::{StreamEncoder, WideDecoder, WideEncoder};
use super::sidecar::{ChunkDigest, Layout, Level, Params, Sidecar};
use super::{ErasureError, VerifyReport};

/// Most shards (data + parity) the GF(2^16) transform can address.
pub const MAX_SHARDS: usize = 65536;

/// Chunk count the chunk-size rule aims at (at most). The transform's cost per byte grows with `k` (its
/// FFTs have `log2(m)` layers, and the slices of `k + m` shards leave the cache): measured on a 1 GiB
/// file, 2 threads, `m = k / 8`, same run (`node benches/ecc-par2.bench.mjs --sweep`, docs/benchmarks.md
/// "Issue 18"): protect 0.86 GB/s (1.11 CPU-s) at k = 1024, 0.43 (1.38) at 2048, 0.19 (2.15) at 4096,
/// 0.13 (3.38) at 16384, against v1 `medium` 0.86 GB/s (0.59 CPU-s). 1024 keeps v2 level with v1.
pub const K_TARGET: u64 = 1024;

/// Smallest chunk the rule picks for files that are not small (small files get at least the preset's
/// `k` chunks, down to 4 KiB): keeps BLAKE3's SIMD busy and the digest table under 0.05 % of the file.
pub const MIN_WIDE_CHUNK: u64 = 64 << 10;

/// Memory budget of one worker's column slice (encoder or decoder work area included).
const SLICE_BUDGET: usize = 16 << 20;

/// Whether the transform supports `k` data and `m` parity shards.
#[must_use]
pub fn supported(k: usize, m: usize) -> bool {
    k >= 1 && m >= 1 && k + m <= MAX_SHARDS && ReedSolomonEncoder::supports(k, m)
}

/// Which sidecar format `protect` writes for a preset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// v1 when the file fits one GF(2^8) stripe (`k + m ≤ 255`, same guarantee, faster), v2 otherwise.
    #[default]
    Auto,
    /// Always the striped GF(2^8) code (v1), with the preset's `k + m` per stripe.
    V1,
    /// Always the wide GF(2^16) code (v2).
    V2,
}

impl Format {
    /// Parse `auto` / `v1` / `v2`.
    #[must_use]
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "auto" => Some(Self::Auto),
            "v1" => Some(Self::V1),
            "v2" => Some(Self::V2),
            _ => None,
        }
    }
}

fn floor_pow2(n: u64) -> u64 {
    1u64 << n.max(1).ilog2()
}

/// The chunk size of the wide code for a file of `len` bytes under a preset with `kp` data chunks per
/// stripe: the smallest power of two with at most [`K_TARGET`] chunks, at least [`MIN_WIDE_CHUNK`]
/// (lowered for small files to `floor_pow2(len / kp)`, at least 4 KiB, so they still spread over `kp`
/// chunks), at most 1 GiB.
#[must_use]
pub fn chunk_size_for(len: u64, kp: u64) -> u64 {
    let lo = floor_pow2(len / kp.max(1)).clamp(ChunkSize::MIN, MIN_WIDE_CHUNK);
    len.div_ceil(K_TARGET)
        .max(1)
        .next_power_of_two()
        .clamp(lo, ChunkSize::MAX)
}

/// Parameters for a preset and a format (see [`Format`]): the chunk size from [`chunk_size_for`],
/// `k` = the file's chunk count, `m = ⌈k · mp / kp⌉` (the preset's overhead).
pub fn params_for(level: Level, format: Format, len: u64) -> Result<Params, ErasureError> {
    if format == Format::V1 {
        return level.params_for(len);
    }
    let (kp, mp) = level.shards();
    let (kp, mp) = (u64::from(kp), u64::from(mp));
    let mut cs = chunk_size_for(len, kp);
    loop {
        let k = len.div_ceil(cs).max(1);
        let m = (k * mp).div_ceil(kp).max(1);
        if format == Format::Auto && k + m <= 255 {
            // One GF(2^8) stripe gives the same guarantee (any m of the k + m) and encodes faster.
            if let Ok(p) = Params::new(
                u16::try_from(k).unwrap_or(0),
                u16::try_from(m).unwrap_or(0),
                cs,
            ) {
                return Ok(p);
            }
        }
        if let (Ok(k16), Ok(m16)) = (u16::try_from(k), u16::try_from(m)) {
            if supported(k16.into(), m16.into()) {
                return Params::new_wide(k16, m16, cs);
            }
        }
        if cs >= ChunkSize::MAX {
            if format == Format::Auto {
                // Beyond the transform (≈ 56 TiB at 1 GiB chunks): the striped code still works.
                return level.params_for(len);
            }
            return Err(ErasureError::FileTooLarge {
                len,
                max: super::sidecar::MAX_FILE_LEN,
            });
        }
        cs *= 2;
    }
}

fn codec_err(e: &reed_solomon_simd::Error) -> ErasureError {
    ErasureError::WideCodec {
        reason: e.to_string(),
    }
}

/// The coder in `slot`, reset for the next shape, or a new one the first time (one per worker,
/// reused across batches).
fn reused<T>(
    slot: &mut Option<T>,
    reset: impl FnOnce(&mut T) -> Result<(), reed_solomon_simd::Error>,
    new: impl FnOnce() -> Result<T, reed_solomon_simd::Error>,
) -> Result<&mut T, ErasureError> {
    match slot {
        Some(coder) => {
            reset(coder).map_err(|e| codec_err(&e))?;
            Ok(coder)
        }
        None => Ok(slot.insert(new().map_err(|e| codec_err(&e))?)),
    }
}

fn usize_of(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// An incremental chunk digest (the chunks are hashed slice by slice, in order).
#[derive(Clone)]
enum Hasher {
    Sha256(Sha256),
    Blake3(Box<blake3::Hasher>),
}

impl Hasher {
    fn new(d: ChunkDigest) -> Self {
        match d {
            ChunkDigest::Sha256 => Self::Sha256(Sha256::new()),
            ChunkDigest::Blake3 => Self::Blake3(Box::new(blake3::Hasher::new())),
        }
    }

    fn update(&mut self, data: &[u8]) {
        match self {
            Self::Sha256(h) => h.update(data),
            Self::Blake3(h) => {
                h.update(data);
            }
        }
    }

    fn finalize(self) -> Digest {
        match self {
            Self::Sha256(h) => h.finalize(),
            Self::Blake3(h) => *h.finalize().as_bytes(),
        }
    }
}

/// Widest column slice: the transform runs fastest when a slice of every shard stays in cache
/// (measured with `measure_transform`: at k = 1024, m = 128 on one thread, 0.77 GB/s at 4 KiB slices
/// against 0.49 at 16 KiB and 0.53 at 64 KiB).
const MAX_SLICE: usize = 4096;

/// The column slice width for `k + m` shards: the largest multiple of 64 whose work area fits
/// [`SLICE_BUDGET`], at most [`MAX_SLICE`] and the chunk size.
fn slice_width(k: usize, m: usize, cs: usize) -> usize {
    let per = k + 2 * m.next_power_of_two();
    ((SLICE_BUDGET / per.max(1)) / 64 * 64).clamp(64, cs.clamp(64, MAX_SLICE))
}

/// The sub-slices `(start, width)` of one batch of columns starting at `from`, one per worker.
fn sub_slices(from: usize, w: usize, workers: usize, cs: usize) -> Vec<(usize, usize)> {
    (0..workers)
        .map(|t| from + t * w)
        .take_while(|&s| s < cs)
        .map(|s| (s, w.min(cs - s)))
        .collect()
}

/// The bytes `[start, start + width)` of data chunk `idx` (clipped to the chunk's real bytes; empty
/// when the chunk ends before `start`).
fn piece<'a>(bytes: &'a [u8], layout: &Layout, idx: u64, start: usize, width: usize) -> &'a [u8] {
    let (off, len) = layout.chunk_range(idx);
    let len = usize_of(len);
    if start >= len {
        return &[];
    }
    let from = usize_of(off).saturating_add(start);
    let to = usize_of(off).saturating_add(len.min(start + width));
    bytes.get(from..to).unwrap_or_default()
}

/// Where [`encode_source`] reads the bytes it protects: a mapping of the file (`[u8]`), or the pieces
/// the file is being written from (a checkpoint's tensors in memory, `crate::checkpoint`), so that the
/// parity can be computed while the file is written.
pub trait Source: Sync {
    /// Bytes `[start, end)` when they are one slice in memory (clipped to what there is), else none.
    fn slice(&self, start: u64, end: u64) -> Option<&[u8]>;
    /// Call `f` with the slices that make up bytes `[start, end)`, in order.
    fn each(&self, start: u64, end: u64, f: &mut dyn FnMut(&[u8]));
}

impl Source for [u8] {
    fn slice(&self, start: u64, end: u64) -> Option<&[u8]> {
        Some(self.get(usize_of(start)..usize_of(end)).unwrap_or_default())
    }

    fn each(&self, start: u64, end: u64, f: &mut dyn FnMut(&[u8])) {
        f(self.get(usize_of(start)..usize_of(end)).unwrap_or_default());
    }
}

/// [`piece`] of any [`Source`]: a piece that is not one slice in memory is gathered into `scratch`.
fn piece_of<'a, S: Source + ?Sized>(
    src: &'a S,
    layout: &Layout,
    idx: u64,
    start: usize,
    width: usize,
    scratch: &'a mut Vec<u8>,
) -> &'a [u8] {
    let (off, len) = layout.chunk_range(idx);
    let len = usize_of(len);
    if start >= len {
        return &[];
    }
    let from = off.saturating_add(start as u64);
    let to = off.saturating_add(len.min(start + width) as u64);
    if let Some(s) = src.slice(from, to) {
        return s;
    }
    scratch.clear();
    src.each(from, to, &mut |s| scratch.extend_from_slice(s));
    scratch
}

/// `piece`, zero-padded to `width` through `pad` when short.
fn padded<'a>(p: &'a [u8], width: usize, pad: &'a mut Vec<u8>) -> &'a [u8] {
    if p.len() == width {
        return p;
    }
    pad.clear();
    pad.extend_from_slice(p);
    pad.resize(width, 0);
    pad
}

/// Columns one worker encodes per batch of [`encode_source`] (several slices of the slice width):
/// the data chunks are then hashed in contiguous runs of `workers ·` this many bytes (BLAKE3's 16-way
/// SIMD needs runs of at least 16 KiB; at 8 KiB it ran half as wide and was a third of the profile)
/// and each parity chunk is written in parts of this many bytes (not one `pwrite` per slice).
const SPAN: usize = 32 << 10;

/// Memory budget of one worker's parity for its span (global and local).
const SPAN_PARITY_BUDGET: usize = 16 << 20;

/// Columns of every parity chunk written between two requests to start their writeback (one
/// request per parity chunk, from the worker that wrote it: in parallel, and in runs the disk takes
/// whole). One request over the whole parity area per batch, from the calling thread, took 12 ms
/// each while the pool waited.
const WRITEBACK_COLUMNS: usize = 256 << 10;

/// The span width: the largest multiple of the slice width `w` that is at most [`SPAN`] and whose
/// `slots` parity parts fit [`SPAN_PARITY_BUDGET`], and small enough that the chunk size `cs` gives
/// every one of the `workers` a span (at least `w`).
fn span_width(w: usize, slots: usize, cs: usize, workers: usize) -> usize {
    let w = w.max(1);
    let n = (SPAN / w)
        .min(SPAN_PARITY_BUDGET / w.saturating_mul(slots.max(1)))
        .min(cs / w.saturating_mul(workers.max(1)))
        .max(1);
    n * w
}

/// One worker's state: its encoder and the parity it produced for its span (global parity, then
/// the local parity of every group; each `[slot][span]`).
struct EncodeSlot {
    enc: Option<WideEncoder>,
    /// The streamed encoder of the shapes it takes (see [`StreamEncoder`]).
    stream: Option<StreamEncoder>,
    parity: Vec<u8>,
    local: Vec<u8>,
    pad: Vec<u8>,
    gather: Vec<u8>,
}

/// `acc ^= src` byte-wise (`src` may be shorter: a short last chunk is zero-padded).
pub(super) fn xor_into(acc: &mut [u8], src: &[u8]) {
    for (a, b) in acc.iter_mut().zip(src) {
        *a ^= *b;
    }
}

/// Copy `src` to the front of `dst` and, when `acc` is given, XOR it into the front of `acc`, in one
/// pass (over the bytes all three have).
///
/// Not `copy_from_slice`: glibc's `memmove` copies 4 KiB and more with `rep movsb`, which on the AMD
/// EPYC machine measured here ran many times slower for some placements of the encoder's work area
/// than for others. A `v2` protect of 1 GiB took 2.4–2.5 CPU-s in a fresh process and 1.3–1.9 in
/// later calls, most of the difference in that `memmove`; with
/// `GLIBC_TUNABLES=glibc.cpu.x86_rep_movsb_threshold=4194304` the fresh process took 1.6–1.7
/// (`docs/benchmarks.md`, twelfth session). Plain vector loads and stores do not depend on the
/// placement, and the local parity's XOR rides on the same load.
pub(crate) fn copy_xor(dst: &mut [u8], acc: Option<&mut [u8]>, src: &[u8]) {
    let len = src.len().min(dst.len());
    let (Some(dst), Some(src)) = (dst.get_mut(..len), src.get(..len)) else {
        return;
    };
    let acc = match acc {
        Some(acc) if acc.len() >= len => acc.get_mut(..len),
        Some(acc) => {
            xor_into(acc, src);
            None
        }
        None => None,
    };
    // The `TV_CPU` cap (`crate::ecc::cpu`) decides as for the ECC kernels, so that a capped run
    // tests the SSE2 path.
    #[cfg(target_arch = "x86_64")]
    if crate::ecc::cpu::level() >= crate::ecc::cpu::Level::Avx2
        && std::arch::is_x86_feature_detected!("avx2")
    {
        // SAFETY: AVX2 is present (checked just above).
        unsafe { copy_xor_avx2(dst, acc, src) };
        return;
    }
    copy_xor_sse2(dst, acc, src);
}

/// [`copy_xor`] in 64-byte blocks of two 32-byte AVX2 loads and stores, the rest by
/// [`copy_xor_sse2`]. `dst`, `src` and `acc` (when given) have one length.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code, clippy::cast_ptr_alignment)] // unaligned loads and stores only
#[target_feature(enable = "avx2")]
unsafe fn copy_xor_avx2(dst: &mut [u8], mut acc: Option<&mut [u8]>, src: &[u8]) {
    use std::arch::x86_64::{__m256i, _mm256_loadu_si256, _mm256_storeu_si256, _mm256_xor_si256};
    let whole = src.len().min(dst.len()) / 64 * 64;
    let acc_ok = acc.as_ref().is_none_or(|a| a.len() >= whole);
    if acc_ok {
        let (from, to) = (src.as_ptr(), dst.as_mut_ptr());
        let into = acc.as_mut().map(|a| a.as_mut_ptr());
        let mut at = 0;
        while at < whole {
            // SAFETY: `at + 64 <= whole`, within `src`, `dst` and `acc` (checked above); the loads
            // and stores are unaligned (`vmovdqu`); the `asm!` block writes those 64 bytes of `dst`
            // only.
            unsafe {
                let lo = _mm256_loadu_si256(from.add(at).cast::<__m256i>());
                let hi = _mm256_loadu_si256(from.add(at + 32).cast::<__m256i>());
                std::arch::asm!(
                    "vmovdqu ymmword ptr [{p}], {lo}",
                    "vmovdqu ymmword ptr [{p} + 32], {hi}",
                    p = in(reg) to.add(at),
                    lo = in(ymm_reg) lo,
                    hi = in(ymm_reg) hi,
                    options(nostack, preserves_flags),
                );
                if let Some(a) = into {
                    let (a0, a1) = (
                        a.add(at).cast::<__m256i>(),
                        a.add(at + 32).cast::<__m256i>(),
                    );
                    _mm256_storeu_si256(a0, _mm256_xor_si256(_mm256_loadu_si256(a0), lo));
                    _mm256_storeu_si256(a1, _mm256_xor_si256(_mm256_loadu_si256(a1), hi));
                }
            }
            at += 64;
        }
    }
    let done = if acc_ok { whole } else { 0 };
    copy_xor_sse2(
        dst.get_mut(done..).unwrap_or_default(),
        acc.map(|a| a.get_mut(done..).unwrap_or_default()),
        src.get(done..).unwrap_or_default(),
    );
}

/// [`copy_xor`] in 16-byte blocks (SSE2, part of `x86_64`; elsewhere byte-wise), over the bytes
/// `dst` and `src` both have.
fn copy_xor_sse2(dst: &mut [u8], acc: Option<&mut [u8]>, src: &[u8]) {
    let (mut to, mut from) = (dst.chunks_exact_mut(16), src.chunks_exact(16));
    if let Some(acc) = acc {
        let mut into = acc.chunks_exact_mut(16);
        for ((d, a), s) in (&mut to).zip(&mut into).zip(&mut from) {
            copy_xor16(d, Some(a), s);
        }
        let tail = to.into_remainder().iter_mut().zip(into.into_remainder());
        for ((d, a), s) in tail.zip(from.remainder()) {
            *d = *s;
            *a ^= *s;
        }
    } else {
        for (d, s) in (&mut to).zip(&mut from) {
            copy_xor16(d, None, s);
        }
        for (d, s) in to.into_remainder().iter_mut().zip(from.remainder()) {
            *d = *s;
        }
    }
}

/// One 16-byte block of [`copy_xor`]: an SSE2 load, a store the compiler cannot fold back into a
/// call of `memcpy` (a loop of `_mm_storeu_si128` copies came out as `memmove`), and the XOR.
#[allow(unsafe_code, clippy::cast_ptr_alignment)] // unaligned loads and stores only
#[inline]
fn copy_xor16(dst: &mut [u8], acc: Option<&mut [u8]>, src: &[u8]) {
    #[cfg(target_arch = "x86_64")]
    if dst.len() == 16 && src.len() == 16 && acc.as_ref().is_none_or(|a| a.len() == 16) {
        use std::arch::x86_64::{__m128i, _mm_loadu_si128, _mm_storeu_si128, _mm_xor_si128};
        // SAFETY: all three slices are 16 bytes long (checked above); the loads and stores are
        // unaligned (`movdqu`); SSE2 is part of the x86_64 baseline; the `asm!` block only writes
        // the 16 bytes of `dst`.
        unsafe {
            let block = _mm_loadu_si128(src.as_ptr().cast::<__m128i>());
            std::arch::asm!(
                "movdqu [{p}], {v}",
                p = in(reg) dst.as_mut_ptr(),
                v = in(xmm_reg) block,
                options(nostack, preserves_flags),
            );
            if let Some(acc) = acc {
                let at = acc.as_mut_ptr().cast::<__m128i>();
                _mm_storeu_si128(at, _mm_xor_si128(_mm_loadu_si128(at), block));
            }
        }
        return;
    }
    for (d, s) in dst.iter_mut().zip(src) {
        *d = *s;
    }
    if let Some(acc) = acc {
        xor_into(acc, src);
    }
}

/// Encode the whole file (format v2): write every parity chunk into the sidecar `sc` at its place and
/// return the digest entries (data chunks, then parity chunks). The file is read through a private
/// mapping; a truncation while it is read is [`ErasureError::FileChanged`].
pub(super) fn encode_file(
    file: &File,
    path: &Path,
    layout: &Layout,
    sc: &File,
    sc_path: &Path,
    control: &Control,
) -> Result<Vec<Digest>, ErasureError> {
    let changed = || ErasureError::FileChanged {
        path: path.to_path_buf(),
    };
    let map = Mapping::from_file(
        file.try_clone()
            .map_err(|e| IoError::from_os(path, "dup", e))?,
        path,
        layout.file_len,
    )?;
    let entries = encode_source(map.bytes(), layout, sc, sc_path, control)?;
    map.check_len().map_err(|_| changed())?;
    Ok(entries)
}

/// Encode the columns `[start, start + width)` (one worker's span) into `slot`: slice by slice of
/// at most `w` bytes; each group's local parity (the XOR of its chunks) accumulates while the
/// slice is in cache.
fn encode_span<S: Source + ?Sized>(
    src: &S,
    layout: &Layout,
    slot: &mut EncodeSlot,
    (start, width): (usize, usize),
    w: usize,
) -> Result<(), ErasureError> {
    let (k, m) = (layout.params.k(), layout.params.m());
    let chunks = layout.chunks;
    // Every byte of `parity` is overwritten below; `local` accumulates, so it starts at zero.
    slot.parity.resize(m * width, 0);
    slot.local.clear();
    slot.local.resize(usize_of(layout.local_groups) * width, 0);
    let mut sub = start;
    while sub < start + width {
        let ws = w.min(start + width - sub);
        let at = sub - start;
        let parity = &mut slot.parity;
        let mut put = |j: usize, r: &[u8]| {
            if let Some(dst) = parity.get_mut(j * width + at..j * width + at + ws) {
                copy_xor(dst, None, r);
            }
        };
        // The common shapes streamed (each chunk of shards transformed while it is in cache), the
        // rest (and an empty file) through the crate's encoder.
        let coder: &mut dyn SpanCoder = if chunks > 0 && StreamEncoder::supports(k, m, ws) {
            reused(
                &mut slot.stream,
                |e| e.reset(k, m, ws),
                || StreamEncoder::new(k, m, ws),
            )?
        } else {
            reused(
                &mut slot.enc,
                |e| e.reset(k, m, ws),
                || WideEncoder::new(k, m, ws),
            )?
        };
        feed(
            src,
            layout,
            &mut slot.local,
            &mut slot.gather,
            &mut slot.pad,
            (sub, ws, at, width),
            coder,
        )?;
        if chunks == 0 {
            // An empty file: one virtual all-zero chunk.
            coder
                .add(&[], ws, None, &mut slot.pad)
                .map_err(|e| codec_err(&e))?;
        }
        coder.parity(&mut put).map_err(|e| codec_err(&e))?;
        sub += ws;
    }
    Ok(())
}

/// The encoder of one slice of columns: [`StreamEncoder`] or the crate's ([`WideEncoder`]).
trait SpanCoder {
    /// The next data shard: `piece` zero-padded to `width` bytes (`pad`: scratch), `XORed` into
    /// `acc` (its group's local parity) when given.
    fn add(
        &mut self,
        piece: &[u8],
        width: usize,
        acc: Option<&mut [u8]>,
        pad: &mut Vec<u8>,
    ) -> Result<(), reed_solomon_simd::Error>;
    /// Every parity shard, in order, to `put` (its index and bytes).
    fn parity(&mut self, put: &mut dyn FnMut(usize, &[u8]))
        -> Result<(), reed_solomon_simd::Error>;
}

impl SpanCoder for StreamEncoder {
    fn add(
        &mut self,
        piece: &[u8],
        _width: usize,
        acc: Option<&mut [u8]>,
        _pad: &mut Vec<u8>,
    ) -> Result<(), reed_solomon_simd::Error> {
        // Copied into the work area, padded and XORed into `acc` in one pass.
        self.add_padded_shard(piece, acc)
    }
    fn parity(
        &mut self,
        put: &mut dyn FnMut(usize, &[u8]),
    ) -> Result<(), reed_solomon_simd::Error> {
        for (j, r) in self.encode()?.enumerate() {
            put(j, r);
        }
        Ok(())
    }
}

impl SpanCoder for WideEncoder {
    fn add(
        &mut self,
        piece: &[u8],
        width: usize,
        acc: Option<&mut [u8]>,
        pad: &mut Vec<u8>,
    ) -> Result<(), reed_solomon_simd::Error> {
        if let Some(acc) = acc {
            xor_into(acc, piece);
        }
        self.add_original_shard(padded(piece, width, pad))
    }
    fn parity(
        &mut self,
        put: &mut dyn FnMut(usize, &[u8]),
    ) -> Result<(), reed_solomon_simd::Error> {
        for (j, r) in self.encode()?.recovery_iter().enumerate() {
            put(j, r);
        }
        Ok(())
    }
}

/// Hand the slice `[sub, sub + ws)` of every data chunk to `coder` (zero-padded to `ws`), and XOR it
/// into its group's local parity (at `at` in each group's `width` columns) while it is in cache.
fn feed<S: Source + ?Sized>(
    src: &S,
    layout: &Layout,
    local: &mut [u8],
    gather: &mut Vec<u8>,
    pad: &mut Vec<u8>,
    (sub, ws, at, width): (usize, usize, usize, usize),
    coder: &mut dyn SpanCoder,
) -> Result<(), ErasureError> {
    for idx in 0..layout.chunks {
        let p = piece_of(src, layout, idx, sub, ws, gather);
        let acc = layout
            .group_of(idx)
            .and_then(|q| local.get_mut(usize_of(q) * width + at..))
            .map(|acc| acc.get_mut(..ws).unwrap_or_default());
        coder.add(p, ws, acc, pad).map_err(|e| codec_err(&e))?;
    }
    Ok(())
}

/// [`encode_file`] over any [`Source`] of the file's `layout.file_len` bytes: write every parity
/// chunk into the sidecar `sc` at its place and return the digest entries (data chunks, then parity
/// chunks). The sidecar's header and tables are the caller's.
pub fn encode_source<S: Source + ?Sized>(
    src: &S,
    layout: &Layout,
    sc: &File,
    sc_path: &Path,
    control: &Control,
) -> Result<Vec<Digest>, ErasureError> {
    let params = layout.params;
    let (k, m) = (params.k(), params.m());
    let cs = params.chunk_size().as_usize();
    let digest = params.digest();
    let chunks = layout.chunks;
    let changed = || ErasureError::FileChanged {
        path: sc_path.to_path_buf(),
    };
    let mut data_h: Vec<Hasher> = (0..chunks).map(|_| Hasher::new(digest)).collect();
    let mut parity_h: Vec<Hasher> = (0..layout.parity_slots())
        .map(|_| Hasher::new(digest))
        .collect();
    if layout.stripes == 0 {
        return Ok(Vec::new());
    }
    let workers = rayon::current_num_threads().max(1);
    let w = slice_width(k, m, cs);
    let span = span_width(w, usize_of(layout.parity_slots()), cs, workers);
    let mut slots: Vec<EncodeSlot> = (0..workers)
        .map(|_| EncodeSlot {
            enc: None,
            stream: None,
            parity: Vec::new(),
            local: Vec::new(),
            pad: Vec::new(),
            gather: Vec::new(),
        })
        .collect();
    let mut from = 0usize;
    // Columns `[0, flushed)` of every parity chunk were handed to the disk's writeback.
    let mut flushed = 0usize;
    while from < cs {
        control.checkpoint()?;
        let subs = sub_slices(from, span, workers, cs);
        // Encode the spans in parallel, each worker with its own encoder.
        slots
            .par_iter_mut()
            .zip(subs.par_iter())
            .try_for_each(|(slot, &sub)| encode_span(src, layout, slot, sub, w))?;
        let active = &slots.get(..subs.len()).unwrap_or_default();
        let batch_end = subs.last().map_or(cs, |&(s, wd)| s + wd);
        // Every WRITEBACK_COLUMNS, each parity chunk's new columns go to the disk while the next
        // batches are encoded (so the commit's fsync waits for the last ones only); not after the last
        // batch, which the fsync writes at once.
        let writeback = (batch_end - flushed >= WRITEBACK_COLUMNS && batch_end < cs)
            .then_some((flushed as u64, (batch_end - flushed) as u64));
        // In one parallel pass: hash the batch of every data chunk (contiguous in the chunk), and hash
        // and write every parity chunk's part of the batch (global, then local).
        let data = data_h
            .par_iter_mut()
            .enumerate()
            .map(|(i, h)| (false, i, h));
        let parity = parity_h
            .par_iter_mut()
            .enumerate()
            .map(|(j, h)| (true, j, h));
        data.chain(parity)
            .try_for_each(|(is_parity, i, h)| -> Result<(), ErasureError> {
                if !is_parity {
                    let (off, len) = layout.chunk_range(i as u64);
                    let end = off + len.min(batch_end as u64);
                    if (from as u64) < len {
                        src.each(off + from as u64, end, &mut |s| h.update(s));
                    }
                    return Ok(());
                }
                let mut off = layout.parity_offset(i as u64) + from as u64;
                for (slot, &(_, width)) in active.iter().zip(&subs) {
                    let part = if i < m {
                        slot.parity.get(i * width..(i + 1) * width)
                    } else {
                        slot.local.get((i - m) * width..(i - m + 1) * width)
                    }
                    .ok_or_else(changed)?;
                    h.update(part);
                    write_all_at(sc, sc_path, part, off)?;
                    off += width as u64;
                }
                if let Some((col, n)) = writeback {
                    crate::io::start_writeback(sc, layout.parity_offset(i as u64) + col, n);
                }
                Ok(())
            })?;
        if writeback.is_some() {
            flushed = batch_end;
        }
        control.add(
            (0..chunks)
                .map(|i| {
                    let len = layout.chunk_range(i).1;
                    len.min(batch_end as u64).saturating_sub(from as u64)
                })
                .sum(),
        );
        from = batch_end;
    }
    Ok(data_h
        .into_iter()
        .chain(parity_h)
        .map(Hasher::finalize)
        .collect())
}

fn write_all_at(file: &File, path: &Path, buf: &[u8], offset: u64) -> Result<(), IoError> {
    use std::os::unix::fs::FileExt;
    file.write_all_at(buf, offset)
        .map_err(|e| IoError::from_os(path, "write", e))
}

/// A data chunk rebuilt from parity and checked against its digest.
#[derive(Debug, Clone)]
pub struct RebuiltChunk {
    /// Its index.
    pub index: u64,
    /// Its bytes (the chunk's real length).
    pub bytes: Vec<u8>,
}

struct DecodeSlot {
    dec: Option<WideDecoder>,
    recovery: Vec<u8>,
    restored: Vec<u8>,
    pad: Vec<u8>,
}

/// Which damaged data chunks local parity repairs: `(local, global)`. A chunk is repaired locally when
/// it is the only damaged data chunk of its group and the group's local parity slot is intact; the
/// others need the global code. Both lists ascending. Without local parity, all are global.
#[must_use]
pub fn local_plan(
    layout: &Layout,
    damaged: &[u64],
    damaged_parity: &[u64],
) -> (Vec<u64>, Vec<u64>) {
    let mut local = Vec::new();
    let mut global = Vec::new();
    // Damaged chunks per group, counted (interleaved groups: a group's chunks are not neighbours in
    // `damaged`, so comparing neighbours would call two chunks of one group "alone").
    let mut per_group: std::collections::HashMap<u64, u64> = std::collections::HashMap::new();
    for &idx in damaged {
        if let Some(q) = layout.group_of(idx) {
            *per_group.entry(q).or_default() += 1;
        }
    }
    for &idx in damaged {
        let alone = layout.group_of(idx).is_some_and(|q| {
            per_group.get(&q) == Some(&1)
                && damaged_parity.binary_search(&layout.local_slot(q)).is_err()
        });
        if alone {
            local.push(idx);
        } else {
            global.push(idx);
        }
    }
    (local, global)
}

/// The global parity slots that are intact.
fn intact_global(layout: &Layout, damaged_parity: &[u64]) -> u64 {
    let bad = damaged_parity
        .iter()
        .filter(|&&s| s < layout.global_parity_slots())
        .count() as u64;
    layout.global_parity_slots().saturating_sub(bad)
}

/// Whether the damage is repairable (format v2): the damaged data chunks that local parity cannot
/// repair number at most the intact global parity chunks. Returns `None` when repairable, else a
/// sentence saying why not.
#[must_use]
pub fn unrepairable_reason(
    layout: &Layout,
    damaged: &[u64],
    damaged_parity: &[u64],
) -> Option<String> {
    let (local, global) = local_plan(layout, damaged, damaged_parity);
    let intact = intact_global(layout, damaged_parity);
    if global.len() as u64 <= intact {
        return None;
    }
    let m = layout.global_parity_slots();
    let local_note = if layout.local_groups > 0 {
        format!(
            " ({} more damaged chunk(s) alone in their local group)",
            local.len()
        )
    } else {
        String::new()
    };
    Some(format!(
        "{} damaged data chunk(s) need the global parity but only {intact} of its {m} chunks are intact{local_note}",
        global.len()
    ))
}

/// Rebuild each chunk of `chunks` (each the only damaged data chunk of its group, with the group's
/// local parity intact) as the XOR of the local parity and the group's other chunks, reading only
/// that group, and check it against its digest. Returns the rebuilt chunks and the ones whose rebuild
/// did not match (undetected damage in the group: they go to the global code).
pub(super) fn rebuild_local(
    path: &Path,
    sidecar_path: &Path,
    sc: &Sidecar,
    layout: &Layout,
    chunks: &[u64],
    control: &Control,
) -> Result<(Vec<RebuiltChunk>, Vec<u64>), ErasureError> {
    if chunks.is_empty() {
        return Ok((Vec::new(), Vec::new()));
    }
    let cs = layout.params.chunk_size().as_usize();
    let digest = layout.params.digest();
    let (file, actual_len) = open_regular(path)?;
    // Read through a private mapping: the group's chunks are XORed straight from the page cache.
    let map = Mapping::from_file(file, path, actual_len.min(layout.file_len))?;
    let bytes = map.bytes();
    let entries = sc.table.entries();
    let results: Result<Vec<Result<RebuiltChunk, u64>>, ErasureError> = chunks
        .par_iter()
        .map(|&idx| {
            control.checkpoint()?;
            let Some(q) = layout.group_of(idx) else {
                return Ok(Err(idx));
            };
            let others: Vec<u64> = layout.group_chunks(q).filter(|&c| c != idx).collect();
            if others.iter().any(|&c| {
                let (off, len) = layout.chunk_range(c);
                off.saturating_add(len) > actual_len
            }) {
                return Ok(Err(idx));
            }
            // Page-table entries in one pass per chunk (no first-touch faults); without the advice,
            // faults.
            for &c in &others {
                let (off, len) = layout.chunk_range(c);
                let _ = map.populate(off, len);
            }
            // The group's other chunks XORed in parallel (one chunk known: the whole machine on its
            // group), then the local parity.
            let mut acc = others
                .par_iter()
                .try_fold(
                    || vec![0u8; cs],
                    |mut acc, &c| -> Result<_, ErasureError> {
                        let (off, len) = layout.chunk_range(c);
                        let part =
                            bytes
                                .get(usize_of(off)..usize_of(off + len))
                                .ok_or_else(|| ErasureError::FileChanged {
                                    path: path.to_path_buf(),
                                })?;
                        xor_into(&mut acc, part);
                        Ok(acc)
                    },
                )
                .try_reduce(
                    || vec![0u8; cs],
                    |mut a, b| {
                        xor_into(&mut a, &b);
                        Ok(a)
                    },
                )?;
            let mut lp = vec![0u8; cs];
            read_exact_at(
                &sc.file,
                sidecar_path,
                &mut lp,
                layout.parity_offset(layout.local_slot(q)),
            )?;
            xor_into(&mut acc, &lp);
            let (_, len) = layout.chunk_range(idx);
            acc.truncate(usize_of(len));
            control.add(len);
            if entries.get(usize_of(idx)) == Some(&digest.hash(&acc)) {
                Ok(Ok(RebuiltChunk {
                    index: idx,
                    bytes: acc,
                }))
            } else {
                Ok(Err(idx))
            }
        })
        .collect();
    let results = results?;
    map.check_len().map_err(|_| ErasureError::FileChanged {
        path: path.to_path_buf(),
    })?;
    let mut done = Vec::new();
    let mut failed = Vec::new();
    for r in results {
        match r {
            Ok(rc) => done.push(rc),
            Err(idx) => failed.push(idx),
        }
    }
    Ok((done, failed))
}

/// Rebuild the data chunks `lost` (format v2) from the intact chunks and the intact global parity
/// chunks, column slice by column slice, and check each against its digest. Chunks in `known` (already
/// rebuilt from local parity, still damaged in the file) are fed from memory. Memory: the rebuilt
/// chunks plus one slice per worker.
#[allow(
    clippy::too_many_lines,
    clippy::too_many_arguments,
    clippy::many_single_char_names
)]
pub(super) fn rebuild(
    path: &Path,
    sidecar_path: &Path,
    sc: &Sidecar,
    report: &VerifyReport,
    lost: &[u64],
    known: &[RebuiltChunk],
    control: &Control,
) -> Result<Vec<RebuiltChunk>, ErasureError> {
    let layout = report.layout;
    let params = layout.params;
    let (k, m) = (params.k(), params.m());
    let cs = params.chunk_size().as_usize();
    let digest = params.digest();
    if lost.is_empty() {
        return Ok(Vec::new());
    }
    let good_parity: Vec<u64> = (0..layout.global_parity_slots())
        .filter(|s| report.damaged_parity.binary_search(s).is_err())
        .take(lost.len())
        .collect();
    if good_parity.len() < lost.len() {
        return Err(ErasureError::Unrepairable {
            path: path.to_path_buf(),
            stripes: vec![0],
            chunks: lost.to_vec(),
            detail: unrepairable_reason(&layout, lost, &report.damaged_parity)
                .unwrap_or_else(|| "not enough intact global parity".into()),
        });
    }
    let (file, actual_len) = open_regular(path)?;
    let map_len = actual_len.min(layout.file_len);
    let map = Mapping::from_file(file, path, map_len)?;
    let bytes = map.bytes();
    let changed = || ErasureError::FileChanged {
        path: path.to_path_buf(),
    };
    let workers = rayon::current_num_threads().max(1);
    let w = slice_width(k, m, cs);
    let mut slots: Vec<DecodeSlot> = (0..workers)
        .map(|_| DecodeSlot {
            dec: None,
            recovery: Vec::new(),
            restored: Vec::new(),
            pad: Vec::new(),
        })
        .collect();
    let mut hashers: Vec<Hasher> = lost.iter().map(|_| Hasher::new(digest)).collect();
    let mut out: Vec<RebuiltChunk> = lost
        .iter()
        .map(|&index| RebuiltChunk {
            index,
            bytes: Vec::with_capacity(usize_of(layout.chunk_range(index).1)),
        })
        .collect();
    let mut from = 0usize;
    while from < cs {
        control.checkpoint()?;
        let subs = sub_slices(from, w, workers, cs);
        slots.par_iter_mut().zip(subs.par_iter()).try_for_each(
            |(slot, &(start, width))| -> Result<(), ErasureError> {
                let dec = reused(
                    &mut slot.dec,
                    |d| d.reset(k, m, width),
                    || WideDecoder::new(k, m, width),
                )?;
                for idx in 0..layout.chunks {
                    if lost.binary_search(&idx).is_ok() {
                        continue;
                    }
                    if let Ok(at) = known.binary_search_by_key(&idx, |rc| rc.index) {
                        let b = known.get(at).map_or(&[][..], |rc| rc.bytes.as_slice());
                        let p = b.get(start.min(b.len())..(start + width).min(b.len()));
                        dec.add_original_shard(
                            usize_of(idx),
                            padded(p.unwrap_or_default(), width, &mut slot.pad),
                        )
                        .map_err(|e| codec_err(&e))?;
                        continue;
                    }
                    let p = piece(bytes, &layout, idx, start, width);
                    let (_, clen) = layout.chunk_range(idx);
                    if (p.len() as u64) < clen.saturating_sub(start as u64).min(width as u64) {
                        return Err(changed());
                    }
                    dec.add_original_shard(usize_of(idx), padded(p, width, &mut slot.pad))
                        .map_err(|e| codec_err(&e))?;
                }
                slot.recovery.clear();
                slot.recovery.resize(width * good_parity.len(), 0);
                for (buf, &s) in slot.recovery.chunks_exact_mut(width).zip(&good_parity) {
                    read_exact_at(
                        &sc.file,
                        sidecar_path,
                        buf,
                        layout.parity_offset(s) + start as u64,
                    )?;
                }
                for (buf, &s) in slot.recovery.chunks_exact(width).zip(&good_parity) {
                    dec.add_recovery_shard(usize_of(s), buf)
                        .map_err(|e| codec_err(&e))?;
                }
                let res = dec.decode().map_err(|e| codec_err(&e))?;
                slot.restored.clear();
                for &idx in lost {
                    let r = res.restored_original(usize_of(idx)).ok_or_else(|| {
                        ErasureError::WideCodec {
                            reason: format!("chunk {idx} was not restored"),
                        }
                    })?;
                    slot.restored.extend_from_slice(r);
                }
                Ok(())
            },
        )?;
        let active = slots.get(..subs.len()).unwrap_or_default();
        let batch_end = subs.last().map_or(cs, |&(s, wd)| s + wd);
        hashers
            .par_iter_mut()
            .zip(out.par_iter_mut())
            .enumerate()
            .for_each(|(d, (h, rc))| {
                let clen = usize_of(layout.chunk_range(rc.index).1);
                for (slot, &(start, width)) in active.iter().zip(&subs) {
                    let real = clen.saturating_sub(start).min(width);
                    if let Some(part) = slot.restored.get(d * width..d * width + real) {
                        h.update(part);
                        rc.bytes.extend_from_slice(part);
                    }
                }
            });
        from = batch_end;
    }
    map.check_len().map_err(|_| changed())?;
    let entries = sc.table.entries();
    for (h, rc) in hashers.into_iter().zip(&out) {
        control.add(rc.bytes.len() as u64);
        if entries.get(usize_of(rc.index)) != Some(&h.finalize()) {
            return Err(ErasureError::RepairVerification {
                path: path.to_path_buf(),
                reason: format!("rebuilt chunk {} does not match its digest", rc.index),
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::cast_possible_truncation, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::hash::{sha256, to_hex};
    use crate::Control;
    use std::path::PathBuf;

    use super::super::sidecar::{Header, HEADER_LEN};
    use super::super::{
        protect, repair, repair_with, sidecar_path_for, verify, Checked, ProtectOptions,
        RepairOptions, RepairReport, Status,
    };

    fn pattern(n: usize, seed: u32) -> Vec<u8> {
        let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                (x >> 11) as u8
            })
            .collect()
    }

    fn encode_whole(shards: &[Vec<u8>], m: usize) -> Vec<Vec<u8>> {
        reed_solomon_simd::encode(shards.len(), m, shards).unwrap()
    }

    #[test]
    fn the_code_acts_on_each_64_byte_column_independently() {
        // The format's definition: column slices of any multiple of 64 give the same parity as the
        // whole chunks, so the slice width is an implementation choice, not part of the format.
        let (k, m, len) = (7, 5, 1024);
        let shards: Vec<Vec<u8>> = (0..k).map(|i| pattern(len, i as u32)).collect();
        let whole = encode_whole(&shards, m);
        for w in [64, 128, 192, 512] {
            let mut got = vec![Vec::new(); m];
            let mut start = 0;
            while start < len {
                let end = (start + w).min(len);
                let cols: Vec<&[u8]> = shards.iter().map(|s| &s[start..end]).collect();
                let par = reed_solomon_simd::encode(k, m, cols).unwrap();
                for (g, p) in got.iter_mut().zip(par) {
                    g.extend_from_slice(&p);
                }
                start = end;
            }
            assert_eq!(got, whole, "slice width {w}");
        }
    }

    #[test]
    fn copy_xor_copies_and_xors_every_length_and_offset() {
        let src = pattern(200, 5);
        for off in 0..17 {
            for n in [0usize, 1, 15, 16, 17, 31, 32, 33, 100, 183] {
                let s = &src[off..off + n];
                for acc_len in [None, Some(n), Some(n / 2), Some(n + 9)] {
                    let mut dst = vec![0xA5u8; n + 5];
                    let mut acc = acc_len.map(|l| pattern(l, 9));
                    let mut want_acc = acc.clone();
                    if let Some(a) = want_acc.as_mut() {
                        xor_into(a, s);
                    }
                    copy_xor(&mut dst, acc.as_deref_mut(), s);
                    assert_eq!(&dst[..n], s, "off {off} n {n}");
                    assert!(
                        dst[n..].iter().all(|&b| b == 0xA5),
                        "off {off} n {n}: past the end"
                    );
                    assert_eq!(acc, want_acc, "off {off} n {n} acc {acc_len:?}");
                    // The SSE2 path alone (the dispatch takes AVX2 where the CPU has it), on slices
                    // of one length as the dispatch hands them over.
                    if acc_len.is_none_or(|l| l >= n) {
                        let mut dst = vec![0xA5u8; n];
                        let mut acc = acc_len.map(|_| pattern(n, 9));
                        let mut want_acc = acc.clone();
                        if let Some(a) = want_acc.as_mut() {
                            xor_into(a, s);
                        }
                        copy_xor_sse2(&mut dst, acc.as_deref_mut(), s);
                        assert_eq!(&dst[..], s, "sse2 off {off} n {n}");
                        assert_eq!(acc, want_acc, "sse2 off {off} n {n}");
                    }
                }
                // A destination shorter than the source: only what fits.
                let mut short = vec![0u8; n / 2];
                copy_xor(&mut short, None, s);
                assert_eq!(&short[..], &s[..n / 2]);
            }
        }
    }

    #[test]
    fn transform_known_answer() {
        // Pins the GF(2^16) transform itself (reed-solomon-simd 3.1.0): 3 data shards of 128 bytes,
        // 2 parity shards.
        let shards: Vec<Vec<u8>> = (0..3).map(|i| pattern(128, 100 + i)).collect();
        let par = encode_whole(&shards, 2);
        let mut cat = Vec::new();
        for p in &par {
            cat.extend_from_slice(p);
        }
        assert_eq!(
            to_hex(&sha256(&cat)),
            "42d3a5c9d264e31b749ec1798de9fec7ed329ea66b8319db3c9addf1da5dd987"
        );
    }

    fn setup(len: usize, seed: u32) -> (tempfile::TempDir, PathBuf, Vec<u8>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.bin");
        let data = pattern(len, seed);
        std::fs::write(&path, &data).unwrap();
        (dir, path, data)
    }

    fn protect_wide(path: &Path, k: u16, m: u16, cs: u64) -> Layout {
        let p = Params::new_wide(k, m, cs).unwrap();
        protect(path, None, ProtectOptions::Custom(p), &Control::new())
            .unwrap()
            .layout
    }

    /// `protect_wide` with local groups of `g` chunks (0: no local parity, as before issue 18's groups).
    fn protect_wide_g(path: &Path, k: u16, m: u16, cs: u64, g: u16) -> Layout {
        let p = Params::new_wide(k, m, cs)
            .unwrap()
            .with_local_group(g)
            .unwrap();
        protect(path, None, ProtectOptions::Custom(p), &Control::new())
            .unwrap()
            .layout
    }

    fn flip(path: &Path, at: u64) {
        let mut d = std::fs::read(path).unwrap();
        d[at as usize] ^= 0x5a;
        std::fs::write(path, d).unwrap();
    }

    #[test]
    fn sidecar_v2_known_answer() {
        // A small file's whole v2 sidecar (header, tables, parity) hashed: pins the format.
        let (_d, path, _) = setup(200_000, 7);
        let f = std::fs::File::options().write(true).open(&path).unwrap();
        f.set_times(
            std::fs::FileTimes::new().set_modified(
                std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_767_225_600),
            ),
        )
        .unwrap();
        drop(f);
        let r = protect(
            &path,
            None,
            ProtectOptions::LevelFormat(Level::Medium, ChunkDigest::Blake3, Format::V2),
            &Control::new(),
        )
        .unwrap();
        assert!(r.layout.params.is_wide());
        assert_eq!(r.layout.params.format_version(), 2);
        // 200 000 bytes, medium: chunk 8 KiB (floor_pow2(200000 / 16)), k = 25, m = ⌈25 / 8⌉ = 4.
        assert_eq!(
            (
                r.layout.params.k(),
                r.layout.params.m(),
                r.layout.params.chunk_size().get()
            ),
            (25, 4, 8192)
        );
        let side = std::fs::read(sidecar_path_for(&path)).unwrap();
        assert_eq!(side[8], 2, "format version 2");
        assert_eq!(side[20], 2, "codec 2");
        assert_eq!(
            to_hex(&sha256(&side)),
            "22087fa2c329c3f3a6b4e4b02b0dd81ad535dd0f4ea6bad2f2079f4517de5f6a"
        );
        // The same sidecar with SHA-256 chunk digests.
        protect(
            &path,
            None,
            ProtectOptions::LevelFormat(Level::Medium, ChunkDigest::Sha256, Format::V2),
            &Control::new(),
        )
        .unwrap();
        let side = std::fs::read(sidecar_path_for(&path)).unwrap();
        assert_eq!(
            to_hex(&sha256(&side)),
            "d8f676308ca2302e13bc113907a4ac7d84ce15daba40d44bb9f277b140871a28"
        );
    }

    #[test]
    fn slice_width_does_not_change_the_sidecar() {
        // The batch/slice loop with several workers and a short last chunk gives the same parity as one
        // whole-chunk encode.
        // 4 KiB chunks: one slice per batch; 256 KiB chunks: batches of one span per worker, of
        // several slices each.
        for cs in [4096usize, 256 << 10] {
            let (_d, path, data) = setup(37 * cs + 1000, 3);
            let l = protect_wide(&path, 38, 6, cs as u64);
            let side = std::fs::read(sidecar_path_for(&path)).unwrap();
            let shards: Vec<Vec<u8>> = data
                .chunks(cs)
                .map(|c| {
                    let mut v = c.to_vec();
                    v.resize(cs, 0);
                    v
                })
                .collect();
            let par = encode_whole(&shards, 6);
            for (j, p) in par.iter().enumerate() {
                let off = l.parity_offset(j as u64) as usize;
                assert_eq!(&side[off..off + cs], &p[..], "cs {cs} parity {j}");
            }
            // The chunk digests are those of the whole chunks.
            let r = verify(&path, None, &Control::new()).unwrap();
            assert_eq!(r.status, Status::Intact, "cs {cs}");
        }
    }

    #[test]
    fn presets_pick_the_chunk_size_and_the_format() {
        let mib = 1u64 << 20;
        let p = params_for(Level::Medium, Format::Auto, 256 * mib).unwrap();
        assert!(p.is_wide());
        assert_eq!((p.k(), p.m(), p.chunk_size().get()), (1024, 128, 256 << 10));
        let p = params_for(Level::Medium, Format::Auto, 1 << 30).unwrap();
        assert_eq!((p.k(), p.m(), p.chunk_size().get()), (1024, 128, mib));
        let p = params_for(Level::Medium, Format::Auto, 4 << 30).unwrap();
        assert_eq!((p.k(), p.m(), p.chunk_size().get()), (1024, 128, 4 * mib));
        let p = params_for(Level::Low, Format::Auto, 3 << 30).unwrap();
        assert_eq!((p.k(), p.m(), p.chunk_size().get()), (768, 48, 4 * mib));
        let p = params_for(Level::High, Format::Auto, 1 << 30).unwrap();
        assert_eq!((p.k(), p.m(), p.chunk_size().get()), (1024, 410, mib));
        // 40 MiB: the 64 KiB floor (641 chunks), not 1024 chunks of 40 KiB.
        let p = params_for(Level::Medium, Format::Auto, 40 * mib + 1).unwrap();
        assert_eq!(
            (p.k(), p.m(), p.chunk_size().get(), p.is_wide()),
            (641, 81, 64 << 10, true)
        );
        // A file that fits one GF(2^8) stripe keeps v1 (same guarantee, faster).
        let p = params_for(Level::Medium, Format::Auto, 10 * mib).unwrap();
        assert!(!p.is_wide());
        assert_eq!((p.k(), p.m(), p.chunk_size().get()), (160, 20, 64 << 10));
        let l = Layout::new(p, 10 * mib).unwrap();
        assert_eq!(l.stripes, 1);
        let p = params_for(Level::Medium, Format::Auto, 0).unwrap();
        assert!(!p.is_wide());
        // Forced formats.
        let p = params_for(Level::Medium, Format::V1, 256 * mib).unwrap();
        assert_eq!((p.k(), p.m(), p.is_wide()), (16, 2, false));
        let p = params_for(Level::Medium, Format::V2, 10 * mib).unwrap();
        assert_eq!((p.k(), p.m(), p.is_wide()), (160, 20, true));
        let p = params_for(Level::Medium, Format::V2, 0).unwrap();
        assert_eq!((p.k(), p.m(), p.is_wide()), (1, 1, true));
        // Huge files: chunks grow to 1 GiB, then k grows.
        let p = params_for(Level::Medium, Format::Auto, 1 << 44).unwrap();
        assert_eq!(
            (p.k(), p.m(), p.chunk_size().get(), p.is_wide()),
            (16384, 2048, 1 << 30, true)
        );
        // Beyond the transform: auto falls back to the striped code, a forced v2 is refused.
        let p = params_for(Level::Medium, Format::Auto, 1 << 46).unwrap();
        assert_eq!((p.k(), p.is_wide()), (16, false));
        assert!(matches!(
            params_for(Level::Medium, Format::V2, 1 << 46),
            Err(ErasureError::FileTooLarge { .. })
        ));
        assert_eq!(Format::parse("v2"), Some(Format::V2));
        assert_eq!(Format::parse("v3"), None);
    }

    /// Flip one byte in each of `chunks` (data chunk indices), return the file bytes after.
    fn damage_chunks(path: &Path, l: &Layout, chunks: &[u64], seed: u32) {
        let r = pattern(chunks.len() * 4, seed);
        for (i, &c) in chunks.iter().enumerate() {
            let (off, len) = l.chunk_range(c);
            let at =
                off + u64::from(u32::from_le_bytes(r[i * 4..i * 4 + 4].try_into().unwrap())) % len;
            flip(path, at);
        }
    }

    fn sha_file(path: &Path) -> String {
        to_hex(&sha256(&std::fs::read(path).unwrap()))
    }

    #[test]
    fn any_m_scattered_chunks_repair_and_m_plus_one_is_reported() {
        // Without local parity: the global code alone (with it, m + 1 scattered chunks may repair).
        let (_d, path, data) = setup(300 * 4096 - 123, 11);
        let l = protect_wide_g(&path, 300, 12, 4096, 0);
        assert_eq!(l.local_groups, 0);
        let want = to_hex(&sha256(&data));
        for round in 0..4u32 {
            // m distinct chunks, spread by a PRNG (including the short last one in round 0).
            let r = pattern(64, 900 + round);
            let mut set: Vec<u64> = if round == 0 { vec![299, 0] } else { vec![] };
            for b in r.chunks(2) {
                let c = u64::from(u16::from_le_bytes([b[0], b[1]])) % 300;
                if !set.contains(&c) && set.len() < 12 {
                    set.push(c);
                }
            }
            assert_eq!(set.len(), 12);
            damage_chunks(&path, &l, &set, round);
            let v = verify(&path, None, &Control::new()).unwrap();
            assert_eq!(v.status, Status::Repairable);
            set.sort_unstable();
            assert_eq!(v.damaged_chunks, set);
            let rep = repair(&path, None, false, &Control::new()).unwrap();
            assert_eq!(rep.repaired_chunks, set);
            assert_eq!(sha_file(&path), want, "round {round}");
        }
        // m + 1 chunks: reported, nothing written.
        damage_chunks(
            &path,
            &l,
            &[1, 50, 99, 120, 121, 122, 123, 200, 201, 250, 280, 298, 299],
            5,
        );
        let before = sha_file(&path);
        let v = verify(&path, None, &Control::new()).unwrap();
        assert_eq!(v.status, Status::Unrepairable);
        assert_eq!(v.unrepairable_chunks.len(), 13);
        assert_eq!(v.unrepairable_stripes, vec![0]);
        assert!(matches!(
            repair(&path, None, false, &Control::new()),
            Err(ErasureError::Unrepairable { .. })
        ));
        assert_eq!(sha_file(&path), before);
    }

    #[test]
    fn damaged_parity_counts_against_the_same_budget() {
        let (_d, path, data) = setup(100 * 4096, 12);
        let l = protect_wide_g(&path, 100, 8, 4096, 0);
        let sp = sidecar_path_for(&path);
        let side = std::fs::read(&sp).unwrap();
        // 5 data chunks + 3 parity chunks = 8 = m: repairable, both files restored.
        damage_chunks(&path, &l, &[3, 4, 60, 61, 99], 1);
        for j in [0u64, 5, 7] {
            flip(&sp, l.parity_offset(j) + 100);
        }
        let v = verify(&path, None, &Control::new()).unwrap();
        assert_eq!(v.status, Status::Repairable);
        assert_eq!(v.damaged_parity, vec![0, 5, 7]);
        let r = repair(&path, None, false, &Control::new()).unwrap();
        assert!(r.file_rewritten && r.sidecar_rewritten);
        assert_eq!(std::fs::read(&path).unwrap(), data);
        assert_eq!(std::fs::read(&sp).unwrap(), side);
        // One more damaged parity chunk: over budget.
        damage_chunks(&path, &l, &[3, 4, 60, 61, 99], 1);
        for j in [0u64, 1, 5, 7] {
            flip(&sp, l.parity_offset(j) + 100);
        }
        let v = verify(&path, None, &Control::new()).unwrap();
        assert_eq!(v.status, Status::Unrepairable);
    }

    #[test]
    fn bursts_truncation_appends_and_header_damage() {
        let (_d, path, data) = setup(200 * 4096 + 77, 13);
        let l = protect_wide(&path, 201, 25, 4096);
        let sp = sidecar_path_for(&path);
        let side = std::fs::read(&sp).unwrap();
        // A burst of 24 chunks in the middle plus one byte elsewhere (25 = m).
        let mut d = data.clone();
        for b in &mut d[50 * 4096 + 10..74 * 4096 - 10] {
            *b = 0;
        }
        d[190 * 4096] ^= 1;
        std::fs::write(&path, &d).unwrap();
        repair(&path, None, false, &Control::new()).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), data);
        // Truncation: the last 20 chunks and a half gone, plus 4 flipped chunks at the start.
        let mut d = data.clone();
        d.truncate(180 * 4096 + 2000);
        for c in 0..4 {
            d[c * 4096 + 9] ^= 0xff;
        }
        std::fs::write(&path, &d).unwrap();
        let v = verify(&path, None, &Control::new()).unwrap();
        assert_eq!(v.status, Status::Repairable);
        assert_eq!(v.damaged_chunks.len(), 4 + 21);
        repair(&path, None, false, &Control::new()).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), data);
        // Garbage appended, and the header copy A damaged.
        let mut d = data.clone();
        d.extend_from_slice(&pattern(5000, 1));
        std::fs::write(&path, &d).unwrap();
        flip(&sp, 40);
        let v = verify(&path, None, &Control::new()).unwrap();
        assert_eq!(v.status, Status::Repairable);
        assert!(!v.sidecar.header_a && v.sidecar.header_b);
        let r = repair(&path, None, false, &Control::new()).unwrap();
        assert!(r.sidecar_rewritten);
        assert_eq!(std::fs::read(&path).unwrap(), data);
        assert_eq!(std::fs::read(&sp).unwrap(), side);
        // Header copy B damaged and a table block of copy A.
        flip(&sp, l.header_b_offset() + 100);
        flip(&sp, HEADER_LEN + 50);
        let v = verify(&path, None, &Control::new()).unwrap();
        assert_eq!(v.status, Status::Repairable);
        repair(&path, None, false, &Control::new()).unwrap();
        assert_eq!(std::fs::read(&sp).unwrap(), side);
    }

    // ---- Local parity groups (issue 18, items 2 and 5) ----

    /// 256 chunks of 4 KiB (the last short), m = 8; default local groups of 16 chunks (16 groups),
    /// **consecutive** (group q = chunks 16q..16q + 16), as sidecars before the interleaved flag have
    /// them: the tests below that name chunks by group were written for that layout, which readers keep.
    fn lrc_setup(seed: u32) -> (tempfile::TempDir, PathBuf, Vec<u8>, Layout, Vec<u8>) {
        lrc_setup_with(seed, false)
    }

    /// [`lrc_setup`] with interleaved (`true`: group q = chunks q, q + 16, …) or consecutive groups.
    fn lrc_setup_with(
        seed: u32,
        interleaved: bool,
    ) -> (tempfile::TempDir, PathBuf, Vec<u8>, Layout, Vec<u8>) {
        let (d, path, data) = setup(256 * 4096 - 700, seed);
        let p = Params::new_wide(256, 8, 4096)
            .unwrap()
            .with_interleaved_groups(interleaved);
        let l = protect(&path, None, ProtectOptions::Custom(p), &Control::new())
            .unwrap()
            .layout;
        assert_eq!((l.params.local_group(), l.local_groups), (16, 16));
        assert_eq!(l.params.interleaved_groups(), interleaved);
        let side = std::fs::read(sidecar_path_for(&path)).unwrap();
        (d, path, data, l, side)
    }

    /// Flip a byte at `at` in every global parity chunk of the sidecar `sp`.
    fn lose_global_parity(sp: &Path, l: &Layout, at: u64) {
        for j in 0..l.global_parity_slots() {
            flip(sp, l.parity_offset(j) + at);
        }
    }

    /// `repair` of the chunks `listed` (known from a verify report), the rest of the file unchecked.
    fn repair_listed(path: &Path, listed: &[u64]) -> Result<RepairReport, ErasureError> {
        repair_with(
            path,
            None,
            &RepairOptions {
                chunks: Some(listed),
                ..RepairOptions::default()
            },
            &Control::new(),
        )
    }

    #[test]
    fn new_sidecars_interleave_the_groups_so_a_burst_over_neighbours_repairs_locally() {
        let (_d, path, data, l, side) = lrc_setup_with(47, true);
        let sp = sidecar_path_for(&path);
        // Each local parity is the XOR of its interleaved group.
        for q in 0..l.local_groups {
            let mut want = vec![0u8; 4096];
            for c in l.group_chunks(q) {
                assert_eq!(c % 16, q);
                let (off, len) = l.chunk_range(c);
                xor_into(&mut want, &data[off as usize..(off + len) as usize]);
            }
            let off = l.parity_offset(l.local_slot(q)) as usize;
            assert_eq!(&side[off..off + 4096], &want[..], "group {q}");
        }
        // A burst over 16 consecutive chunks (twice m) and every global parity chunk damaged: one chunk
        // per group, so only the local parity can repair it (consecutive groups: one group, lost).
        let burst: Vec<u64> = (100..116).collect();
        damage_chunks(&path, &l, &burst, 12);
        lose_global_parity(&sp, &l, 21);
        let v = verify(&path, None, &Control::new()).unwrap();
        assert_eq!(v.status, Status::Repairable);
        assert_eq!(v.damaged_chunks, burst);
        let (local, global) = local_plan(&l, &v.damaged_chunks, &v.damaged_parity);
        assert_eq!((local.len(), global.len()), (16, 0));
        let r = repair(&path, None, false, &Control::new()).unwrap();
        assert_eq!(r.repaired_chunks, burst);
        assert_eq!(std::fs::read(&path).unwrap(), data);
        assert_eq!(std::fs::read(&sp).unwrap(), side);
        // The same burst on consecutive groups is beyond the parity once the global chunks are lost.
        let (_d2, path2, _, l2, _) = lrc_setup_with(47, false);
        let sp2 = sidecar_path_for(&path2);
        damage_chunks(&path2, &l2, &burst, 12);
        lose_global_parity(&sp2, &l2, 21);
        assert_eq!(
            verify(&path2, None, &Control::new()).unwrap().status,
            Status::Unrepairable
        );
        // Two chunks of one group are not neighbours in the damaged list: counted per group, not by
        // comparing neighbours (which called 6 and 22 of group 6 "alone" and over-promised).
        assert_eq!(local_plan(&l, &[6, 22], &[]), (vec![], vec![6, 22]));
        assert_eq!(local_plan(&l, &[6, 7, 22], &[]), (vec![7], vec![6, 22]));
        assert_eq!(
            local_plan(&l, &[6, 7], &[l.local_slot(7)]),
            (vec![6], vec![7])
        );
        // A known chunk (from a verify report) reads only its interleaved group: chunk 37 (group 5)
        // listed while chunks 6 and 22 (group 6, two damaged, not listed) stay as they are.
        damage_chunks(&path, &l, &[37], 13);
        damage_chunks(&path, &l, &[6, 22], 14);
        let r = repair_listed(&path, &[37]).unwrap();
        assert_eq!(r.before.damaged_chunks, vec![37]);
        let now = std::fs::read(&path).unwrap();
        assert_eq!(&now[37 * 4096..38 * 4096], &data[37 * 4096..38 * 4096]);
        assert_eq!(
            verify(&path, None, &Control::new()).unwrap().damaged_chunks,
            vec![6, 22]
        );
        repair(&path, None, false, &Control::new()).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), data);
    }

    #[test]
    fn local_parity_is_the_xor_of_each_group() {
        let (_d, path, data, l, side) = lrc_setup(40);
        assert_eq!(l.parity_slots(), 8 + 16);
        assert_eq!(side.len() as u64, l.sidecar_len);
        for q in 0..l.local_groups {
            let mut want = vec![0u8; 4096];
            for c in l.group_chunks(q) {
                let (off, len) = l.chunk_range(c);
                xor_into(&mut want, &data[off as usize..(off + len) as usize]);
            }
            let off = l.parity_offset(l.local_slot(q)) as usize;
            assert_eq!(&side[off..off + 4096], &want[..], "group {q}");
        }
        // The global parity is the same as without local parity (the local slots come after it).
        let (_d2, path2, _) = setup(256 * 4096 - 700, 40);
        let l0 = protect_wide_g(&path2, 256, 8, 4096, 0);
        let side0 = std::fs::read(sidecar_path_for(&path2)).unwrap();
        let (a, b) = (l.parity_offset(0) as usize, l0.parity_offset(0) as usize);
        assert_eq!(&side[a..a + 8 * 4096], &side0[b..b + 8 * 4096]);
        drop(path);
    }

    #[test]
    fn one_chunk_per_group_repairs_locally_with_every_global_parity_chunk_lost() {
        // 16 damaged chunks (one per group, twice m) and all 8 global parity chunks damaged: only the
        // local parity can repair this, so success proves the local path.
        let (_d, path, data, l, side) = lrc_setup(41);
        let sp = sidecar_path_for(&path);
        let set: Vec<u64> = (0..16).map(|q| q * 16 + (q * 7) % 16).collect();
        damage_chunks(&path, &l, &set, 1);
        lose_global_parity(&sp, &l, 33);
        let v = verify(&path, None, &Control::new()).unwrap();
        assert_eq!(v.status, Status::Repairable);
        assert_eq!(v.damaged_chunks, set);
        assert_eq!(v.damaged_parity, (0..8).collect::<Vec<_>>());
        let r = repair(&path, None, false, &Control::new()).unwrap();
        assert_eq!(r.repaired_chunks, set);
        assert!(r.file_rewritten && r.sidecar_rewritten);
        assert_eq!(std::fs::read(&path).unwrap(), data);
        assert_eq!(std::fs::read(&sp).unwrap(), side);
        // One more damaged chunk in group 3 (two there now): that group needs the global parity, and
        // none of it is intact: unrepairable, nothing written, and the message says why.
        damage_chunks(&path, &l, &set, 2);
        damage_chunks(&path, &l, &[3 * 16 + 1], 3);
        lose_global_parity(&sp, &l, 33);
        let v = verify(&path, None, &Control::new()).unwrap();
        assert_eq!(v.status, Status::Unrepairable);
        assert_eq!(v.unrepairable_stripes, vec![0]);
        let before = sha_file(&path);
        let e = repair(&path, None, false, &Control::new()).unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, ErasureError::Unrepairable { .. }), "{msg}");
        assert!(
            msg.contains("2 damaged data chunk(s) need the global parity but only 0 of its 8"),
            "{msg}"
        );
        assert!(!msg.contains("stripe(s)"), "{msg}");
        assert_eq!(sha_file(&path), before);
    }

    #[test]
    fn damage_beyond_m_repairs_when_local_parity_takes_the_rest() {
        // 8 = m damaged chunks in group 0 (global code) and one in each other group (local): 23 chunks,
        // m + 15. Phase 2 is fed the chunks phase 1 rebuilt (they are still damaged in the file).
        let (_d, path, data, l, _) = lrc_setup(42);
        let mut set: Vec<u64> = (0..8).map(|i| i * 2).collect();
        set.extend((1..16).map(|q| q * 16 + 5));
        damage_chunks(&path, &l, &set, 4);
        let v = verify(&path, None, &Control::new()).unwrap();
        assert_eq!(v.status, Status::Repairable);
        let (local, global) = local_plan(&l, &v.damaged_chunks, &v.damaged_parity);
        assert_eq!((local.len(), global.len()), (15, 8));
        let r = repair(&path, None, false, &Control::new()).unwrap();
        assert_eq!(r.repaired_chunks.len(), 23);
        assert_eq!(std::fs::read(&path).unwrap(), data);
        // Nine in group 0: one past the global parity, reported.
        let mut set: Vec<u64> = (0..9).collect();
        set.push(100);
        damage_chunks(&path, &l, &set, 5);
        let v = verify(&path, None, &Control::new()).unwrap();
        assert_eq!(v.status, Status::Unrepairable);
    }

    #[test]
    fn two_damaged_chunks_in_a_group_go_to_the_global_code() {
        let (_d, path, data, l, side) = lrc_setup(43);
        let sp = sidecar_path_for(&path);
        // Group 0: chunks 0 and 1 (global); groups 1 and 2: one each (local); 6 of 8 global parity
        // chunks damaged, 2 intact = the 2 global chunks: repairable.
        damage_chunks(&path, &l, &[0, 1, 17, 40], 6);
        for j in [0u64, 1, 2, 4, 5, 7] {
            flip(&sp, l.parity_offset(j) + 9);
        }
        let v = verify(&path, None, &Control::new()).unwrap();
        assert_eq!(v.status, Status::Repairable);
        assert_eq!(
            local_plan(&l, &v.damaged_chunks, &v.damaged_parity),
            (vec![17, 40], vec![0, 1])
        );
        repair(&path, None, false, &Control::new()).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), data);
        assert_eq!(std::fs::read(&sp).unwrap(), side);
        // A third in group 0 with the same parity damage: 3 > 2, unrepairable.
        damage_chunks(&path, &l, &[0, 1, 2, 17, 40], 7);
        for j in [0u64, 1, 2, 4, 5, 7] {
            flip(&sp, l.parity_offset(j) + 9);
        }
        assert_eq!(
            verify(&path, None, &Control::new()).unwrap().status,
            Status::Unrepairable
        );
    }

    #[test]
    fn damaged_local_parity_is_located_and_rebuilt() {
        let (_d, path, data, l, side) = lrc_setup(44);
        let sp = sidecar_path_for(&path);
        // Group 2's local parity damaged, with one chunk of group 2 (now global) and one of group 4.
        flip(&sp, l.parity_offset(l.local_slot(2)) + 4000);
        damage_chunks(&path, &l, &[37, 70], 8);
        let v = verify(&path, None, &Control::new()).unwrap();
        assert_eq!(v.status, Status::Repairable);
        assert_eq!(v.damaged_parity, vec![l.local_slot(2)]);
        assert_eq!(
            local_plan(&l, &v.damaged_chunks, &v.damaged_parity),
            (vec![70], vec![37])
        );
        let r = repair(&path, None, false, &Control::new()).unwrap();
        assert!(r.sidecar_rewritten);
        assert_eq!(std::fs::read(&path).unwrap(), data);
        assert_eq!(std::fs::read(&sp).unwrap(), side);
        // The sidecar cut inside the local parity: the missing slots are damaged parity, repairable.
        let cut = l.parity_offset(l.local_slot(10)) + 100;
        std::fs::write(&sp, &side[..cut as usize]).unwrap();
        let v = verify(&path, None, &Control::new()).unwrap();
        assert_eq!(v.status, Status::Repairable);
        assert!(v.damaged_parity.contains(&l.local_slot(15)));
        repair(&path, None, false, &Control::new()).unwrap();
        assert_eq!(std::fs::read(&sp).unwrap(), side);
    }

    #[test]
    fn known_chunk_repair_reads_only_its_group() {
        // Chunk 5 (group 0) listed; group 3 has m + 1 damaged chunks that are not listed. A repair that
        // looked beyond group 0 would find the pair unrepairable (or feed wrong survivors to the global
        // code); reading group 0 only, it repairs chunk 5 and leaves group 3 as it was.
        let (_d, path, data, l, side) = lrc_setup(45);
        let sp = sidecar_path_for(&path);
        let far: Vec<u64> = (48..57).collect();
        damage_chunks(&path, &l, &[5], 9);
        damage_chunks(&path, &l, &far, 10);
        let r = repair_listed(&path, &[5]).unwrap();
        assert_eq!(r.before.damaged_chunks, vec![5]);
        assert_eq!(r.checked_before, Checked::Changed);
        assert!(!r.sidecar_rewritten);
        let now = std::fs::read(&path).unwrap();
        assert_eq!(&now[5 * 4096..6 * 4096], &data[5 * 4096..6 * 4096]);
        assert_eq!(std::fs::read(&sp).unwrap(), side);
        let v = verify(&path, None, &Control::new()).unwrap();
        assert_eq!(v.damaged_chunks, far);
        // Listing a chunk of a group with two damaged chunks falls back to the whole-file check.
        let list = [50u64];
        let r = repair_listed(&path, &list);
        assert!(matches!(r, Err(ErasureError::Unrepairable { .. })));
    }

    #[test]
    fn a_local_rebuild_that_does_not_match_its_digest_is_handed_back() {
        // rebuild_local called directly with a group whose parity is wrong (verify would have found
        // it): the chunk is returned as failed, not as rebuilt.
        let (_d, path, _, l, _) = lrc_setup(46);
        let sp = sidecar_path_for(&path);
        damage_chunks(&path, &l, &[20], 11);
        let sc = Sidecar::open(&sp).unwrap();
        let (ok, failed) = rebuild_local(&path, &sp, &sc, &l, &[20], &Control::new()).unwrap();
        assert_eq!((ok.len(), failed.len()), (1, 0));
        drop(sc);
        flip(&sp, l.parity_offset(l.local_slot(1)) + 7);
        let sc = Sidecar::open(&sp).unwrap();
        let (ok, failed) = rebuild_local(&path, &sp, &sc, &l, &[20], &Control::new()).unwrap();
        assert_eq!((ok.len(), failed), (0, vec![20]));
    }

    #[test]
    fn v2_sidecars_written_before_local_parity_verify_and_repair() {
        // __test__/fixtures/ecc-v2: written by main before local parity (flags = 1).
        let fix = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../__test__/fixtures/ecc-v2");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.bin");
        std::fs::copy(fix.join("old.bin"), &path).unwrap();
        std::fs::copy(fix.join("old.bin.tvecc"), sidecar_path_for(&path)).unwrap();
        let side = std::fs::read(sidecar_path_for(&path)).unwrap();
        assert_eq!(side[12], 1, "no local-parity flag");
        let data = std::fs::read(&path).unwrap();
        let v = verify(&path, None, &Control::new()).unwrap();
        assert_eq!(v.status, Status::Intact);
        let l = v.layout;
        assert_eq!((l.params.k(), l.params.m(), l.local_groups), (64, 8, 0));
        // m = 8 damaged chunks: the global code, as before.
        damage_chunks(&path, &l, &[0, 9, 17, 30, 31, 32, 50, 63], 12);
        let r = repair(&path, None, false, &Control::new()).unwrap();
        assert_eq!(r.repaired_chunks.len(), 8);
        assert_eq!(std::fs::read(&path).unwrap(), data);
        // m + 1: unrepairable (no local parity to help).
        damage_chunks(&path, &l, &[0, 9, 17, 30, 31, 32, 40, 50, 63], 13);
        assert_eq!(
            verify(&path, None, &Control::new()).unwrap().status,
            Status::Unrepairable
        );
        // Protected again today, the same file gets local groups of 4 chunks.
        std::fs::write(&path, &data).unwrap();
        let l2 = protect_wide(&path, 64, 8, 4096);
        assert_eq!((l2.params.local_group(), l2.local_groups), (4, 16));
    }

    type Edit = Box<dyn Fn(&mut [u8; 256])>;

    fn resum(b: &mut [u8; 256]) {
        let s = sha256(&b[..224]);
        b[224..].copy_from_slice(&s);
    }

    fn wide_header() -> Header {
        let layout = Layout::new(Params::new_wide(300, 40, 4096).unwrap(), 300 * 4096 - 5).unwrap();
        Header {
            layout,
            root: [3; 32],
            table_digest: [4; 32],
            file_mtime_ns: Some(5),
        }
    }

    #[test]
    #[allow(clippy::too_many_lines)]
    fn v2_header_round_trips_and_bad_fields_are_refused() {
        let h = wide_header();
        let b = h.encode();
        assert_eq!(Header::parse(&b).unwrap(), h);
        assert_eq!(h.layout.stripes, 1);
        // 300 chunks: local groups of ⌈300 / 16⌉ = 19, 16 groups after the 40 global parity slots.
        assert_eq!(h.layout.params.local_group(), 19);
        assert_eq!(
            (h.layout.global_parity_slots(), h.layout.local_groups),
            (40, 16)
        );
        assert_eq!(h.layout.parity_slots(), 56);
        assert_eq!(h.layout.entries, 356);
        assert_eq!(h.layout.local_slot(15), 55);
        // Interleaved groups: group 15 is chunks 15, 31, …, 299; chunk i is in group i mod 16.
        assert_eq!(
            h.layout.group_chunks(15).collect::<Vec<_>>(),
            (15..300).step_by(16).collect::<Vec<_>>()
        );
        assert_eq!(h.layout.group_chunks(0).count(), 19);
        assert_eq!(
            h.layout.group_chunks(16).count(),
            0,
            "no group past the last"
        );
        assert_eq!(h.layout.group_chunks(12).count(), 18);
        assert_eq!(h.layout.group_of(153), Some(9));
        assert_eq!(h.layout.group_of(154), Some(10));
        assert_eq!(
            b[12], 7,
            "flags: file hints, local parity, interleaved groups"
        );
        // Consecutive groups, as written before the interleaved flag: group 15 is chunks 285..300.
        let consecutive = Header {
            layout: Layout::new(
                h.layout.params.with_interleaved_groups(false),
                h.layout.file_len,
            )
            .unwrap(),
            ..h.clone()
        };
        let cb = consecutive.encode();
        assert_eq!(cb[12], 3, "flags: file hints and local parity");
        assert_eq!(Header::parse(&cb).unwrap(), consecutive);
        assert_eq!(
            consecutive.layout.group_chunks(15).collect::<Vec<_>>(),
            (285..300).collect::<Vec<_>>()
        );
        assert_eq!(consecutive.layout.group_of(153), Some(8));

        assert_eq!(&b[72..76], &19u32.to_le_bytes());
        // Without local parity (as written before): flag bit 1 clear, bytes 72..76 zero, round trip.
        let old = Header {
            layout: Layout::new(
                h.layout.params.with_local_group(0).unwrap(),
                h.layout.file_len,
            )
            .unwrap(),
            ..h.clone()
        };
        let ob = old.encode();
        assert_eq!((ob[12], &ob[72..76]), (1, &[0u8; 4][..]));
        assert_eq!(Header::parse(&ob).unwrap(), old);
        assert_eq!(old.layout.parity_slots(), 40);
        // The interleaved flag without local parity is refused.
        let mut bad = ob;
        bad[12] = 1 | 4;
        resum(&mut bad);
        assert_eq!(Header::parse(&bad).unwrap_err(), "unknown header flags");
        let cases: Vec<(Edit, &str)> = vec![
            // Version 2 with the v1 codec, version 1 with the v2 codec.
            (Box::new(|b| b[20] = 1), "unknown codec"),
            (
                Box::new(|b| {
                    // (v1 has no local parity: clear its flag and field too.)
                    b[8] = 1;
                    b[12] = 1;
                    b[72..76].fill(0);
                }),
                "unknown codec",
            ),
            (Box::new(|b| b[8] = 3), "unsupported version"),
            // k that does not cover the chunks (two stripes), or more than the chunks.
            (
                Box::new(|b| b[16..18].copy_from_slice(&150u16.to_le_bytes())),
                "file length out of range",
            ),
            (
                Box::new(|b| b[16..18].copy_from_slice(&301u16.to_le_bytes())),
                "file length out of range",
            ),
            // k + m beyond the transform, m = 0, k = 0.
            (
                Box::new(|b| {
                    b[16..18].copy_from_slice(&60000u16.to_le_bytes());
                    b[18..20].copy_from_slice(&5000u16.to_le_bytes());
                }),
                "invalid parameters",
            ),
            (
                Box::new(|b| b[18..20].copy_from_slice(&0u16.to_le_bytes())),
                "invalid parameters",
            ),
            (
                Box::new(|b| b[16..18].copy_from_slice(&0u16.to_le_bytes())),
                "invalid parameters",
            ),
            // Chunk size not a power of two; sizes that disagree with the parameters.
            (
                Box::new(|b| b[24..32].copy_from_slice(&5000u64.to_le_bytes())),
                "invalid parameters",
            ),
            (
                Box::new(|b| b[48..56].copy_from_slice(&2u64.to_le_bytes())),
                "derived sizes disagree",
            ),
            (
                Box::new(|b| b[56..64].copy_from_slice(&341u64.to_le_bytes())),
                "derived sizes disagree",
            ),
            (
                Box::new(|b| b[64..72].copy_from_slice(&1u64.to_le_bytes())),
                "derived sizes disagree",
            ),
            (
                Box::new(|b| b[32..40].copy_from_slice(&u64::MAX.to_le_bytes())),
                "file length out of range",
            ),
            // Local parity: g = 0, g > k, g beyond 16 bits, the flag without g, g without the flag,
            // bytes after g, and the flag on a v1 header.
            (
                Box::new(|b| b[72..76].copy_from_slice(&0u32.to_le_bytes())),
                "invalid parameters",
            ),
            (
                Box::new(|b| b[72..76].copy_from_slice(&301u32.to_le_bytes())),
                "invalid parameters",
            ),
            (
                Box::new(|b| b[72..76].copy_from_slice(&65_555u32.to_le_bytes())),
                "invalid parameters",
            ),
            (
                Box::new(|b| b[12] = 1),
                "reserved header bytes are not zero",
            ),
            (
                Box::new(|b| b[76] = 1),
                "reserved header bytes are not zero",
            ),
            (
                Box::new(|b| {
                    b[8] = 1;
                    b[20] = 1;
                }),
                "unknown header flags",
            ),
            // Another g: the entry count and sidecar length no longer match.
            (
                Box::new(|b| b[72..76].copy_from_slice(&20u32.to_le_bytes())),
                "derived sizes disagree",
            ),
        ];
        for (i, (edit, want)) in cases.iter().enumerate() {
            let mut b = h.encode();
            edit(&mut b);
            resum(&mut b);
            assert_eq!(Header::parse(&b), Err(*want), "case {i}");
        }
    }

    #[test]
    fn v2_sidecars_with_bad_sizes_are_typed_errors() {
        let (_d, path, _) = setup(64 * 4096, 14);
        protect_wide(&path, 64, 8, 4096);
        let sp = sidecar_path_for(&path);
        let side = std::fs::read(&sp).unwrap();
        for len in [0usize, 100, 256, 4000, 4351] {
            std::fs::write(&sp, &side[..len]).unwrap();
            assert!(
                matches!(
                    super::super::sidecar::Sidecar::open(&sp),
                    Err(ErasureError::SidecarCorrupt { .. })
                ),
                "len {len}"
            );
        }
        // Half the sidecar gone: header A and table A still serve; the rest is missing parity.
        std::fs::write(&sp, &side[..side.len() / 2]).unwrap();
        let sc = super::super::sidecar::Sidecar::open(&sp).unwrap();
        assert!(!sc.health.structure_intact());
        // Both header copies claim a file of another length (consistent, checksummed): the table no
        // longer matches.
        let mut bad = side.clone();
        let mut h: [u8; 256] = bad[..256].try_into().unwrap();
        h[32..40].copy_from_slice(&(63u64 * 4096 + 1).to_le_bytes());
        resum(&mut h);
        bad[..256].copy_from_slice(&h);
        std::fs::write(&sp, &bad).unwrap();
        let r = super::super::sidecar::Sidecar::open(&sp);
        assert!(r.is_ok() || matches!(r, Err(ErasureError::SidecarCorrupt { .. })));
        if let Ok(sc) = r {
            // Copy A was refused; copy B (intact) was used.
            assert!(!sc.health.header_a);
            assert_eq!(sc.header.layout.file_len, 64 * 4096);
        }
    }
}

#[cfg(test)]
#[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation)]
mod measure {
    fn cpu_s() -> f64 {
        // SAFETY: getrusage fills the struct it is given.
        let mut u: libc::rusage = unsafe { std::mem::zeroed() };
        unsafe { libc::getrusage(libc::RUSAGE_SELF, &raw mut u) };
        let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        tv(u.ru_utime) + tv(u.ru_stime)
    }

    /// Not a test: `TV_MEASURE_FILE=… TV_MEASURE_TOOLS=v2,v1 TV_MEASURE_ROUNDS=3 cargo test --release
    /// -p tensorvault-core measure_protect -- --ignored --nocapture` protects a (page-cached) file
    /// with v2 and v1 `medium` alternately, in one run: GB/s and CPU seconds each. `TV_MEASURE_FILE`
    /// may list several files (comma-separated, e.g. the same bytes written in large and in small
    /// writes, whose page-cache folios differ): each round protects each file with each tool.
    #[test]
    #[ignore = "a measurement, run by hand"]
    fn measure_protect() {
        use super::super::file::{protect, ProtectOptions};
        use super::super::sidecar::{ChunkDigest, Level};
        use super::Format;
        let Ok(files) = std::env::var("TV_MEASURE_FILE") else {
            eprintln!("set TV_MEASURE_FILE");
            return;
        };
        let rounds: usize = std::env::var("TV_MEASURE_ROUNDS")
            .ok()
            .and_then(|r| r.parse().ok())
            .unwrap_or(1);
        let tools = std::env::var("TV_MEASURE_TOOLS").unwrap_or_else(|_| "v2,v1".into());
        let side = std::env::temp_dir().join("tv-measure-protect.tvecc");
        for r in 0..rounds {
            for path in files.split(',').map(std::path::PathBuf::from) {
                let len = std::fs::metadata(&path).unwrap().len() as f64;
                for t in tools.split(',') {
                    let (format, digest) = match t {
                        "v1" => (Format::V1, ChunkDigest::Blake3),
                        "v2sha" => (Format::V2, ChunkDigest::Sha256),
                        _ => (Format::V2, ChunkDigest::Blake3),
                    };
                    let (c0, t0) = (cpu_s(), std::time::Instant::now());
                    protect(
                        &path,
                        Some(&side),
                        ProtectOptions::LevelFormat(Level::Medium, digest, format),
                        &crate::control::Control::new(),
                    )
                    .unwrap();
                    let (s, c) = (t0.elapsed().as_secs_f64(), cpu_s() - c0);
                    eprintln!(
                        "round {r} {} {t}: {:.3} GB/s, {c:.2} CPU-s ({:.2} s)",
                        path.display(),
                        len / s / 1e9,
                        s
                    );
                }
            }
        }
        let _ = std::fs::remove_file(side);
    }

    /// Not a test: `TV_MEASURE_FILE=… TV_MEASURE_TOOLS=v2,v1 TV_MEASURE_ROUNDS=5 cargo test --release
    /// -p tensorvault-core measure_verify -- --ignored --nocapture` protects a (page-cached) file once
    /// per tool (each its own sidecar), then verifies it with each tool alternately (the order rotating
    /// from round to round): GB/s and CPU seconds each.
    #[test]
    #[ignore = "a measurement, run by hand"]
    fn measure_verify() {
        use super::super::file::{protect, verify, ProtectOptions, Status};
        use super::super::sidecar::{ChunkDigest, Level};
        use super::Format;
        let Ok(path) = std::env::var("TV_MEASURE_FILE") else {
            eprintln!("set TV_MEASURE_FILE");
            return;
        };
        let path = std::path::PathBuf::from(path);
        let rounds: usize = std::env::var("TV_MEASURE_ROUNDS")
            .ok()
            .and_then(|r| r.parse().ok())
            .unwrap_or(1);
        let tools: Vec<String> = std::env::var("TV_MEASURE_TOOLS")
            .unwrap_or_else(|_| "v2,v1".into())
            .split(',')
            .map(str::to_owned)
            .collect();
        let len = std::fs::metadata(&path).unwrap().len() as f64;
        let control = crate::control::Control::new();
        let sides: Vec<std::path::PathBuf> = tools
            .iter()
            .map(|t| {
                let side = std::env::temp_dir().join(format!("tv-measure-verify-{t}.tvecc"));
                let format = if t == "v1" { Format::V1 } else { Format::V2 };
                let options =
                    ProtectOptions::LevelFormat(Level::Medium, ChunkDigest::Blake3, format);
                protect(&path, Some(&side), options, &control).unwrap();
                side
            })
            .collect();
        for r in 0..rounds {
            for i in 0..tools.len() {
                let i = (i + r) % tools.len();
                let (c0, t0) = (cpu_s(), std::time::Instant::now());
                let rep = verify(&path, Some(&sides[i]), &control).unwrap();
                let (s, c) = (t0.elapsed().as_secs_f64(), cpu_s() - c0);
                assert_eq!(rep.status, Status::Intact);
                eprintln!(
                    "round {r} {}: {:.3} GB/s, {c:.2} CPU-s ({s:.3} s)",
                    tools[i],
                    len / s / 1e9
                );
            }
        }
        for s in sides {
            let _ = std::fs::remove_file(s);
        }
    }

    /// Not a test: `cargo test --release -p tensorvault-core measure_copy_xor -- --ignored --nocapture`
    /// times the wide encode's feed (4 KiB pieces of 1,024 chunks of a 256 MiB source, copied into a
    /// work area of 128 shards and `XORed` into 16 group accumulators) with [`super::copy_xor`] against
    /// `copy_from_slice` + [`super::xor_into`], alternating. `TV_MEASURE_OFFSET`: the work area's
    /// place against the source's, modulo 4,096 (`copy_from_slice`'s `rep movsb` ran at a third of
    /// its speed at 16 here).
    #[test]
    #[ignore = "a measurement, run by hand"]
    fn measure_copy_xor() {
        let src: Vec<u8> = (0..256usize << 20)
            .map(|i| ((i * 2_654_435_761) >> 13) as u8)
            .collect();
        let offset: usize = std::env::var("TV_MEASURE_OFFSET")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut work = vec![0u8; (128 << 12) + 8192];
        // `offset`: (destination − source) mod 4096.
        let offset = (offset + 8192 - (work.as_ptr() as usize % 4096)
            + (src.as_ptr() as usize % 4096))
            % 4096;
        let mut acc = vec![0u8; 16 << 12];
        let (chunks, cs, w) = (1024usize, 256usize << 10, 4096usize);
        for round in 0..2 {
            for fused in [false, true] {
                let t0 = std::time::Instant::now();
                for sub in (0..cs).step_by(w) {
                    for idx in 0..chunks {
                        let p = &src[idx * cs + sub..idx * cs + sub + w];
                        let slot =
                            &mut work[offset + (idx % 128) * w..offset + (idx % 128 + 1) * w];
                        let a = &mut acc[(idx % 16) * w..(idx % 16 + 1) * w];
                        if fused {
                            super::copy_xor(slot, Some(a), p);
                        } else {
                            slot.copy_from_slice(p);
                            super::xor_into(a, p);
                        }
                    }
                }
                let s = t0.elapsed().as_secs_f64();
                std::hint::black_box((&work, &acc));
                eprintln!(
                    "round {round} {}: {:.2} GB/s",
                    if fused {
                        "copy_xor"
                    } else {
                        "memmove + xor_into"
                    },
                    (chunks * cs) as f64 / s / 1e9
                );
            }
        }
    }

    /// Not a test: `cargo test --release -p tensorvault-core measure_transform -- --ignored --nocapture`
    /// times the transform alone for a few (k, m, slice width) on one thread.
    #[test]
    #[ignore = "a measurement, run by hand"]
    fn measure_transform() {
        for (k, m) in [(1024usize, 128usize), (4096, 512), (16384, 2048)] {
            for w in [2048usize, 4096, 16384, 65536] {
                let data: Vec<Vec<u8>> = (0..k).map(|i| vec![(i % 251) as u8; w]).collect();
                let mut enc = reed_solomon_simd::ReedSolomonEncoder::new(k, m, w).unwrap();
                let reps = ((256usize << 20) / (k * w)).max(1);
                let t0 = std::time::Instant::now();
                for _ in 0..reps {
                    for d in &data {
                        enc.add_original_shard(d).unwrap();
                    }
                    let r = enc.encode().unwrap();
                    std::hint::black_box(r.recovery(0));
                }
                let s = t0.elapsed().as_secs_f64();
                eprintln!(
                    "k={k} m={m} w={w}: {:.3} GB/s of data",
                    (reps * k * w) as f64 / s / 1e9
                );
            }
        }
    }
}
