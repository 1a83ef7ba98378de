//! `rs(N)`: systematic Reed-Solomon RS(255, 255−N) over GF(2^8), byte-compatible with Python
//! `reedsolo`'s `RSCodec(N)` defaults (primitive polynomial `0x11d`, generator 2, first consecutive
//! root 0), with shortened blocks. This is `PyFolds`'s ECC codec (contract §3).
//!
//! Two stream layouts over data cut into blocks of `255 − N` bytes (the last may be shorter):
//! - **sidecar** ([`RsCodec::encode`] / [`RsCodec::decode`]): the parity stream is every block's `N`
//!   parity bytes, concatenated in block order; the data is stored separately, unchanged.
//! - **inline** ([`RsCodec::protect_chunk`] / [`RsCodec::recover_chunk`], `PyFolds`'s `ECCProtector`):
//!   each block followed by its own parity, `[data][parity][data][parity]...` (what
//!   `reedsolo.RSCodec.encode` returns).
//!
//! Encoding is table-driven and vectorised (see `encode.rs`); large inputs are split across the current
//! rayon pool by block ranges, with [`Control`] checkpoints and progress between batches. Decoding first
//! re-encodes each block and compares with the stored parity (a match means all syndromes are zero);
//! only mismatching blocks go through the full decoder, and each correction is verified by recomputing
//! its syndromes. A block that cannot be repaired is an error naming its index: uncorrected data is
//! never returned as success.

mod decode;
mod encode;
mod gf;
mod interleave;

use std::sync::{Arc, OnceLock};

use rayon::prelude::*;

use crate::control::Control;

pub use encode::kernel_name;

/// Blocks handled per batch: the unit of parallel work, progress and cancellation.
const BATCH_BLOCKS: usize = 2048;

/// Errors of the `rs(N)` codec.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RsError {
    /// `N` outside `1..=254`.
    #[error("invalid rs(N) parity count {n}: N must be from 1 to 254")]
    InvalidParityCount { n: u64 },
    /// A codec name that is not `rs(N)` (or `none`).
    #[error(
        "unknown ECC codec name {name:?}: expected \"rs(N)\" with N from 1 to 254, or \"none\""
    )]
    UnknownCodec { name: String },
    /// A protection level other than `off`, `none`, `0`, `low`, `med`, `high`.
    #[error("unknown protection level {level:?}: expected one of off, none, 0, low, med, high")]
    UnknownProtection { level: String },
    /// The parity stream does not have the length the data needs.
    #[error(
        "parity length mismatch: {data_len} data bytes need {expected} parity bytes, got {actual}"
    )]
    ParityLengthMismatch {
        data_len: u64,
        expected: u64,
        actual: u64,
    },
    /// An inline chunk whose length cannot be a sequence of `[data][parity]` blocks.
    #[error("invalid inline chunk length {len} for rs({n}): the last block must hold at least one data byte besides its {n} parity bytes")]
    InvalidInlineLength { len: u64, n: u64 },
    /// An erasure position beyond the end of the data.
    #[error("erasure position {position} is outside the {len}-byte input")]
    ErasureOutOfRange { position: u64, len: u64 },
    /// A block has more damage than its parity can repair (or its repair could not be verified).
    #[error("block {block} (bytes {offset}..{end}) is uncorrectable: more damage than rs({n}) can repair")]
    Uncorrectable {
        block: u64,
        offset: u64,
        end: u64,
        n: u64,
    },
    /// The worker thread pool could not be created.
    #[error("cannot start {threads} ECC threads: {reason}")]
    ThreadPool { threads: usize, reason: String },
    /// The caller cancelled the operation.
    #[error("the ECC operation was cancelled")]
    Cancelled,
}

impl From<crate::control::Cancelled> for RsError {
    fn from(_: crate::control::Cancelled) -> Self {
        Self::Cancelled
    }
}

/// What a decode repaired.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DecodeReport {
    /// Bytes changed by the repair, in data and parity.
    pub corrected_bytes: u64,
    /// Indices of the blocks that needed a repair, ascending.
    pub corrected_blocks: Vec<u64>,
}

impl DecodeReport {
    fn merge(&mut self, other: DecodeReport) {
        self.corrected_bytes += other.corrected_bytes;
        self.corrected_blocks.extend(other.corrected_blocks);
    }
}

/// An `rs(N)` codec. Building one computes its tables (up to a few hundred KiB); reuse it.
pub struct RsCodec {
    enc: encode::Encoder,
    n: usize,
    k: usize,
}

impl std::fmt::Debug for RsCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RsCodec(rs({}))", self.n)
    }
}

impl RsCodec {
    /// Largest valid `N`.
    pub const MAX_PARITY: usize = 254;
    /// `PyFolds` `ECCProtector`'s default `N`.
    pub const INLINE_DEFAULT_PARITY: usize = 10;

    /// `rs(n)`; `n` must be in `1..=254`.
    pub fn new(n: usize) -> Result<Self, RsError> {
        if n == 0 || n > Self::MAX_PARITY {
            return Err(RsError::InvalidParityCount { n: n as u64 });
        }
        Ok(Self {
            enc: encode::Encoder::new(n),
            n,
            k: 255 - n,
        })
    }

    /// A process-wide shared `rs(n)` (tables built once per `n`, on first use).
    pub fn shared(n: usize) -> Result<Arc<Self>, RsError> {
        static CACHE: [OnceLock<Arc<RsCodec>>; 255] = [const { OnceLock::new() }; 255];
        let slot = CACHE
            .get(n)
            .ok_or(RsError::InvalidParityCount { n: n as u64 })?;
        if let Some(c) = slot.get() {
            return Ok(Arc::clone(c));
        }
        let fresh = Arc::new(Self::new(n)?);
        Ok(Arc::clone(slot.get_or_init(|| fresh)))
    }

    /// The codec for a `PyFolds` protection level: `off`/`none`/`0` → `None`, `low` → `rs(16)`, `med` →
    /// `rs(32)`, `high` → `rs(64)`. Anything else (including `medium`) is an error.
    pub fn from_protection(level: &str) -> Result<Option<Self>, RsError> {
        match protection_parity(level)? {
            None => Ok(None),
            Some(n) => Self::new(n).map(Some),
        }
    }

    /// The codec named `rs(N)`; `none` → `None`.
    pub fn from_name(name: &str) -> Result<Option<Self>, RsError> {
        if name == "none" {
            return Ok(None);
        }
        let unknown = || RsError::UnknownCodec { name: name.into() };
        let digits = name
            .strip_prefix("rs(")
            .and_then(|s| s.strip_suffix(')'))
            .ok_or_else(unknown)?;
        if digits.is_empty()
            || digits.len() > 3
            || !digits.bytes().all(|b| b.is_ascii_digit())
            || digits.starts_with('0')
        {
            return Err(unknown());
        }
        let n: usize = digits.parse().map_err(|_| unknown())?;
        Self::new(n).map(Some)
    }

    /// Parity bytes per block (`N`).
    #[must_use]
    pub fn parity_len(&self) -> usize {
        self.n
    }

    /// Data bytes per full block (`255 − N`).
    #[must_use]
    pub fn block_data_len(&self) -> usize {
        self.k
    }

    /// The codec's name, `rs(N)`.
    #[must_use]
    pub fn name(&self) -> String {
        format!("rs({})", self.n)
    }

    /// The encoding kernel this codec uses under the `TV_CPU` cap ([`crate::ecc::cpu`]):
    /// `avx512-gfni`, `avx2-interleaved`, `avx2-sliced` (the faster AVX2 kernel for this `N` on this
    /// CPU, measured once) or `portable`.
    #[must_use]
    pub fn kernel(&self) -> &'static str {
        self.enc.kernel_at(crate::ecc::cpu::level())
    }

    /// The generator polynomial, highest degree first (as `reedsolo.rs_generator_poly`).
    #[must_use]
    pub fn generator(&self) -> &[u8] {
        self.enc.generator()
    }

    /// Number of blocks for `data_len` bytes.
    #[must_use]
    pub fn block_count(&self, data_len: u64) -> u64 {
        data_len.div_ceil(self.k as u64)
    }

    /// Length of the sidecar parity stream for `data_len` bytes: `ceil(len / (255 − N)) · N`.
    #[must_use]
    pub fn ecc_len(&self, data_len: u64) -> u64 {
        self.block_count(data_len) * self.n as u64
    }

    /// Length of the inline layout for `data_len` bytes.
    #[must_use]
    pub fn inline_len(&self, data_len: u64) -> u64 {
        data_len + self.ecc_len(data_len)
    }

    /// Data length inside an inline chunk of `inline_len` bytes.
    pub fn inline_data_len(&self, inline_len: u64) -> Result<u64, RsError> {
        let full = inline_len / 255;
        let rest = inline_len % 255;
        if rest != 0 && rest <= self.n as u64 {
            return Err(RsError::InvalidInlineLength {
                len: inline_len,
                n: self.n as u64,
            });
        }
        Ok(full * self.k as u64 + rest.saturating_sub(self.n as u64))
    }

    /// Parity of one block (at most `255 − N` bytes, may be empty) with the reference LFSR, exactly as
    /// `reedsolo.rs_encode_msg`. For streams use [`RsCodec::encode`].
    #[must_use]
    pub fn encode_block_reference(&self, block: &[u8]) -> Vec<u8> {
        let mut p = vec![0u8; self.n];
        encode::lfsr_parity(self.enc.generator(), block, &mut p);
        p
    }

    /// The sidecar parity stream of `data`, using the current rayon pool for large inputs.
    pub fn encode(&self, data: &[u8], control: &Control) -> Result<Vec<u8>, RsError> {
        let mut parity =
            vec![0u8; usize::try_from(self.ecc_len(data.len() as u64)).unwrap_or(usize::MAX)];
        self.encode_into(data, &mut parity, control)?;
        Ok(parity)
    }

    /// Write the sidecar parity stream of `data` into `parity` (exactly [`RsCodec::ecc_len`] bytes).
    pub fn encode_into(
        &self,
        data: &[u8],
        parity: &mut [u8],
        control: &Control,
    ) -> Result<(), RsError> {
        self.check_parity_len(data.len(), parity.len())?;
        control.set_total(data.len() as u64);
        let data_batch = BATCH_BLOCKS * self.k;
        let parity_batch = BATCH_BLOCKS * self.n;
        let work = |(d, p): (&[u8], &mut [u8])| -> Result<(), RsError> {
            control.checkpoint()?;
            self.enc.encode_blocks(d, p);
            control.add(d.len() as u64);
            Ok(())
        };
        if data.len() <= data_batch {
            return data
                .chunks(data_batch)
                .zip(parity.chunks_mut(parity_batch))
                .try_for_each(work);
        }
        data.par_chunks(data_batch)
            .zip(parity.par_chunks_mut(parity_batch))
            .try_for_each(work)
    }

    /// Same bytes as [`RsCodec::encode`] but always with the portable kernel (for testing the vector
    /// kernel against it, and for benchmarks).
    #[must_use]
    pub fn encode_portable(&self, data: &[u8]) -> Vec<u8> {
        let mut parity =
            vec![0u8; usize::try_from(self.ecc_len(data.len() as u64)).unwrap_or(usize::MAX)];
        self.enc.encode_blocks_portable(data, &mut parity);
        parity
    }

    fn check_parity_len(&self, data_len: usize, parity_len: usize) -> Result<(), RsError> {
        let expected = self.ecc_len(data_len as u64);
        if parity_len as u64 != expected {
            return Err(RsError::ParityLengthMismatch {
                data_len: data_len as u64,
                expected,
                actual: parity_len as u64,
            });
        }
        Ok(())
    }

    /// Repair `data` in place from its sidecar `parity`. `erasures` are byte offsets in `data` known to
    /// be wrong (any order, duplicates allowed). On error nothing is guaranteed about which other blocks
    /// were already repaired in `data`, but no block is ever left half-repaired: callers that need the
    /// original keep a copy. The parity stream itself is read-only; damage in it is corrected in a
    /// scratch copy (and counted) so that it does not hide data errors.
    pub fn decode(
        &self,
        data: &mut [u8],
        parity: &[u8],
        erasures: &[u64],
        control: &Control,
    ) -> Result<DecodeReport, RsError> {
        self.decode_with_parity_erasures(data, parity, erasures, &[], control)
    }

    /// [`RsCodec::decode`] with erasures in the parity stream too (`parity_erasures`: byte offsets in
    /// `parity`).
    pub fn decode_with_parity_erasures(
        &self,
        data: &mut [u8],
        parity: &[u8],
        erasures: &[u64],
        parity_erasures: &[u64],
        control: &Control,
    ) -> Result<DecodeReport, RsError> {
        self.decode_impl(None, data, parity, erasures, parity_erasures, control)
    }

    /// Check `data` against its sidecar `parity` without repairing or copying anything: the indices of
    /// the blocks whose recomputed parity differs from the stored one (damage in the data or in the
    /// parity), ascending. Empty means every block is a codeword (all syndromes zero).
    pub fn verify(
        &self,
        data: &[u8],
        parity: &[u8],
        control: &Control,
    ) -> Result<Vec<u64>, RsError> {
        self.check_parity_len(data.len(), parity.len())?;
        control.set_total(data.len() as u64);
        let data_batch = BATCH_BLOCKS * self.k;
        let parity_batch = BATCH_BLOCKS * self.n;
        let work = |(batch, (d, p)): (usize, (&[u8], &[u8]))| -> Result<Vec<u64>, RsError> {
            control.checkpoint()?;
            let mut fresh = vec![0u8; p.len()];
            self.enc.encode_blocks(d, &mut fresh);
            let bad = fresh
                .chunks(self.n)
                .zip(p.chunks(self.n))
                .enumerate()
                .filter(|(_, (a, b))| a != b)
                .map(|(i, _)| (batch * BATCH_BLOCKS + i) as u64)
                .collect();
            control.add(d.len() as u64);
            Ok(bad)
        };
        let lists: Vec<Vec<u64>> = if data.len() <= data_batch {
            data.chunks(data_batch)
                .zip(parity.chunks(parity_batch))
                .enumerate()
                .map(work)
                .collect::<Result<_, _>>()?
        } else {
            data.par_chunks(data_batch)
                .zip(parity.par_chunks(parity_batch))
                .enumerate()
                .map(work)
                .collect::<Result<_, _>>()?
        };
        Ok(lists.into_iter().flatten().collect())
    }

    /// Repair a copy of `data`: like [`RsCodec::decode_with_parity_erasures`] but leaves `data`
    /// untouched and returns the repaired copy. The copy is made batch by batch inside the parallel
    /// work (cache-hot, no separate pass over memory).
    pub fn decode_to_vec(
        &self,
        data: &[u8],
        parity: &[u8],
        erasures: &[u64],
        parity_erasures: &[u64],
        control: &Control,
    ) -> Result<(Vec<u8>, DecodeReport), RsError> {
        self.check_parity_len(data.len(), parity.len())?;
        let mut out = vec![0u8; data.len()];
        let report = self.decode_impl(
            Some(data),
            &mut out,
            parity,
            erasures,
            parity_erasures,
            control,
        )?;
        Ok((out, report))
    }

    fn decode_impl(
        &self,
        src: Option<&[u8]>,
        data: &mut [u8],
        parity: &[u8],
        erasures: &[u64],
        parity_erasures: &[u64],
        control: &Control,
    ) -> Result<DecodeReport, RsError> {
        self.check_parity_len(data.len(), parity.len())?;
        let erasures = sorted_positions(erasures, data.len())?;
        let parity_erasures = sorted_positions(parity_erasures, parity.len())?;
        control.set_total(data.len() as u64);
        let data_batch = BATCH_BLOCKS * self.k;
        let parity_batch = BATCH_BLOCKS * self.n;
        let work = |(batch, (d, p)): (usize, (&mut [u8], &[u8]))| -> Result<DecodeReport, RsError> {
            control.checkpoint()?;
            if let Some(src) = src {
                let start = batch * data_batch;
                if let Some(from) = src.get(start..start + d.len()) {
                    d.copy_from_slice(from);
                }
            }
            let first_block = batch * BATCH_BLOCKS;
            let report = self.decode_batch(first_block, d, p, &erasures, &parity_erasures)?;
            control.add(d.len() as u64);
            Ok(report)
        };
        let reports: Vec<DecodeReport> = if data.len() <= data_batch {
            data.chunks_mut(data_batch)
                .zip(parity.chunks(parity_batch))
                .enumerate()
                .map(work)
                .collect::<Result<_, _>>()?
        } else {
            data.par_chunks_mut(data_batch)
                .zip(parity.par_chunks(parity_batch))
                .enumerate()
                .map(work)
                .collect::<Result<_, _>>()?
        };
        let mut total = DecodeReport::default();
        for r in reports {
            total.merge(r);
        }
        Ok(total)
    }

    /// Decode one batch of whole blocks starting at block `first_block`.
    fn decode_batch(
        &self,
        first_block: usize,
        data: &mut [u8],
        parity: &[u8],
        erasures: &[u64],
        parity_erasures: &[u64],
    ) -> Result<DecodeReport, RsError> {
        let mut fresh = vec![0u8; parity.len()];
        self.enc.encode_blocks(data, &mut fresh);
        let mut report = DecodeReport::default();
        let k = self.k;
        let n = self.n;
        for (i, ((block, stored), computed)) in data
            .chunks_mut(k)
            .zip(parity.chunks(n))
            .zip(fresh.chunks(n))
            .enumerate()
        {
            if stored == computed {
                continue; // a codeword: all syndromes are zero
            }
            let index = first_block + i;
            let start = (index * k) as u64;
            let end = start + block.len() as u64;
            let lo = erasures.partition_point(|&e| e < start);
            let hi = erasures.partition_point(|&e| e < end);
            let mut local: Vec<usize> = erasures
                .get(lo..hi)
                .unwrap_or_default()
                .iter()
                .filter_map(|&e| usize::try_from(e - start).ok())
                .collect();
            let pstart = (index * n) as u64;
            let plo = parity_erasures.partition_point(|&e| e < pstart);
            let phi = parity_erasures.partition_point(|&e| e < pstart + n as u64);
            local.extend(
                parity_erasures
                    .get(plo..phi)
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|&e| usize::try_from(e - pstart).ok())
                    .map(|q| block.len() + q),
            );
            let changed = self
                .repair_block(block, stored, computed, &local)
                .map_err(|_| RsError::Uncorrectable {
                    block: index as u64,
                    offset: start,
                    end,
                    n: n as u64,
                })?;
            report.corrected_bytes += changed as u64;
            report.corrected_blocks.push(index as u64);
        }
        Ok(report)
    }

    /// Repair one block's data given its stored parity; returns the bytes changed (data and parity).
    fn repair_block(
        &self,
        block: &mut [u8],
        parity: &[u8],
        computed: &[u8],
        erasures: &[usize],
    ) -> Result<usize, decode::Uncorrectable> {
        let mut cw = [0u8; 255];
        let len = block.len() + parity.len();
        let cw = cw.get_mut(..len).ok_or(decode::Uncorrectable)?;
        let (d, p) = cw.split_at_mut(block.len());
        d.copy_from_slice(block);
        p.copy_from_slice(parity);
        let changed = {
            let mut diff = [0u8; 255];
            let diff = diff.get_mut(..self.n).ok_or(decode::Uncorrectable)?;
            for ((d, a), b) in diff.iter_mut().zip(parity).zip(computed) {
                *d = a ^ b;
            }
            decode::decode_block_with_parity_diff(self.n, cw, erasures, diff)?
        };
        block.copy_from_slice(cw.get(..block.len()).ok_or(decode::Uncorrectable)?);
        Ok(changed)
    }

    /// Decode one codeword (`data ‖ parity`, at most 255 bytes, more than `N`) in place, like
    /// `reedsolo.rs_correct_msg`; `erasures` are positions in the codeword. Returns the bytes changed.
    pub fn decode_codeword(
        &self,
        codeword: &mut [u8],
        erasures: &[usize],
    ) -> Result<usize, RsError> {
        let len = codeword.len();
        decode::decode_block(self.n, codeword, erasures).map_err(|_| RsError::Uncorrectable {
            block: 0,
            offset: 0,
            end: len as u64,
            n: self.n as u64,
        })
    }

    /// The inline layout of `data`: each block followed by its parity (`reedsolo.RSCodec.encode`).
    pub fn protect_chunk(&self, data: &[u8], control: &Control) -> Result<Vec<u8>, RsError> {
        let parity = self.encode(data, control)?;
        let mut out = Vec::with_capacity(data.len() + parity.len());
        for (d, p) in data.chunks(self.k).zip(parity.chunks(self.n)) {
            out.extend_from_slice(d);
            out.extend_from_slice(p);
        }
        Ok(out)
    }

    /// Recover the data of an inline chunk, repairing what the parity allows. `erasures` are byte
    /// offsets in the inline chunk (data or parity) known to be wrong.
    pub fn recover_chunk(
        &self,
        chunk: &[u8],
        erasures: &[u64],
        control: &Control,
    ) -> Result<(Vec<u8>, DecodeReport), RsError> {
        let data_len = self.inline_data_len(chunk.len() as u64)?;
        let erasures = sorted_positions(erasures, chunk.len())?;
        let cap = usize::try_from(data_len).unwrap_or(0);
        let mut data = Vec::with_capacity(cap);
        let mut parity = Vec::with_capacity(chunk.len() - cap);
        for cw in chunk.chunks(255) {
            let (d, p) = cw.split_at(cw.len() - self.n);
            data.extend_from_slice(d);
            parity.extend_from_slice(p);
        }
        // Fast path: every block clean and no erasures in parity.
        let mut fresh = vec![0u8; parity.len()];
        self.encode_into(&data, &mut fresh, control)?;
        let mut report = DecodeReport::default();
        if fresh == parity {
            return Ok((data, report));
        }
        // Slow path: per codeword, with erasures mapped to codeword positions.
        for (index, ((block, stored), computed)) in data
            .chunks_mut(self.k)
            .zip(parity.chunks(self.n))
            .zip(fresh.chunks(self.n))
            .enumerate()
        {
            if stored == computed {
                continue;
            }
            let start = (index * 255) as u64;
            let end = start + (block.len() + self.n) as u64;
            let lo = erasures.partition_point(|&e| e < start);
            let hi = erasures.partition_point(|&e| e < end);
            let local: Vec<usize> = erasures
                .get(lo..hi)
                .unwrap_or_default()
                .iter()
                .filter_map(|&e| usize::try_from(e - start).ok())
                .collect();
            let changed = self
                .repair_block(block, stored, computed, &local)
                .map_err(|_| RsError::Uncorrectable {
                    block: index as u64,
                    offset: start,
                    end,
                    n: self.n as u64,
                })?;
            report.corrected_bytes += changed as u64;
            report.corrected_blocks.push(index as u64);
        }
        Ok((data, report))
    }
}

/// Sorted, deduplicated erasure positions, all below `len`.
fn sorted_positions(positions: &[u64], len: usize) -> Result<Vec<u64>, RsError> {
    let mut v = positions.to_vec();
    v.sort_unstable();
    v.dedup();
    if let Some(&last) = v.last() {
        if last >= len as u64 {
            return Err(RsError::ErasureOutOfRange {
                position: last,
                len: len as u64,
            });
        }
    }
    Ok(v)
}

/// Parity count for a `PyFolds` protection level (`None` = no ECC). As `PyFolds` does, the level is
/// lower-cased first and an empty level means no ECC, so `LOW`, `Med`, `HIGH`, `Off` and `""` are
/// accepted; `medium` is not.
pub fn protection_parity(level: &str) -> Result<Option<usize>, RsError> {
    match level.to_lowercase().as_str() {
        "" | "off" | "none" | "0" => Ok(None),
        "low" => Ok(Some(16)),
        "med" => Ok(Some(32)),
        "high" => Ok(Some(64)),
        _ => Err(RsError::UnknownProtection {
            level: level.into(),
        }),
    }
}

/// Run `f` on a rayon pool of `threads` threads (`None`: the global pool).
pub fn with_threads<T>(
    threads: Option<usize>,
    f: impl FnOnce() -> Result<T, RsError> + Send,
) -> Result<T, RsError>
where
    T: Send,
{
    match threads {
        None => f(),
        Some(t) => rayon::ThreadPoolBuilder::new()
            .num_threads(t)
            .build()
            .map_err(|e| RsError::ThreadPool {
                threads: t,
                reason: e.to_string(),
            })?
            .install(f),
    }
}

#[cfg(test)]
mod tests;
