//! The engine of the wide GF(2^16) code (sidecar format v2): the transform of `reed-solomon-simd`
//! (Leopard-RS) with its butterflies and products done by GFNI `vgf2p8affineqb` on 512-bit vectors
//! when the CPU has AVX-512BW and GFNI, else the crate's own AVX2 / SSSE3 / portable engines.
//!
//! Multiplying by a constant of GF(2^16) is GF(2)-linear in the crate's representation (a Cantor
//! basis: addition is XOR), so it is a 16×16 bit matrix, built here by applying the crate's own scalar
//! product ([`tables::mul`]) to the 16 unit vectors. The crate stores 32 elements per 64-byte block,
//! their 32 low bytes then their 32 high bytes; the matrix splits into four 8×8 blocks
//! (`lo' = A·lo ⊕ B·hi`, `hi' = C·lo ⊕ D·hi`), so one 512-bit register of 32 elements is multiplied
//! by two `vgf2p8affineqb` (matrices `[A|D]` on the register, `[B|C]` on its halves swapped) and one
//! XOR, where the AVX2 engine spends eight `vpshufb` and their masks and shifts. The FFT and IFFT
//! also do both layers of a radix-4 step on each block while it is in registers (one load and store
//! per block per two layers instead of three).
//!
//! The results are bit-identical to the crate's engines (tested against `Avx2` and `NoSimd` for
//! every multiplier and through whole encodes and decodes), so the format does not depend on the
//! engine. The choice follows the `TV_CPU` cap ([`crate::ecc::cpu`]): `avx2`, `ssse3` and
//! `portable` select the crate's engine of that level. On `AArch64` the crate's Neon engine is used
//! (as its default engine does) unless `TV_CPU=portable`.

use std::sync::OnceLock;

#[cfg(target_arch = "aarch64")]
use reed_solomon_simd::engine::Neon;
use reed_solomon_simd::engine::{
    tables, Engine, GfElement, NoSimd, ShardsRefMut, GF_MODULUS, GF_ORDER,
};
#[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
use reed_solomon_simd::engine::{Avx2, Ssse3};
use reed_solomon_simd::rate::{DefaultRateDecoder, DefaultRateEncoder, RateDecoder, RateEncoder};
use reed_solomon_simd::{DecoderResult, EncoderResult, Error};

use super::wide::copy_xor;
use crate::ecc::cpu::{self, Level};

/// An engine of the wide code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EngineKind {
    /// GFNI affine products on 512-bit vectors (this module).
    Avx512Gfni,
    /// The crate's AVX2 engine (split-nibble `vpshufb`).
    Avx2,
    /// The crate's SSSE3 engine.
    Ssse3,
    /// The crate's Neon engine (`AArch64`).
    Neon,
    /// The crate's portable engine (`NoSimd`, table lookups).
    Portable,
}

impl EngineKind {
    /// The fastest engine this CPU runs under the `TV_CPU` cap (read once per process).
    #[must_use]
    pub fn detect() -> Self {
        static KIND: OnceLock<EngineKind> = OnceLock::new();
        *KIND.get_or_init(|| Self::detect_at(cpu::level()))
    }

    /// The fastest engine this CPU runs at or below `level`.
    #[must_use]
    pub fn detect_at(level: Level) -> Self {
        [Self::Avx512Gfni, Self::Avx2, Self::Ssse3, Self::Neon]
            .into_iter()
            .find(|k| k.runs_at(level))
            .unwrap_or(Self::Portable)
    }

    fn runs_at(self, level: Level) -> bool {
        match self {
            // The ECC levels name x86 features: on AArch64 only an explicit `TV_CPU=portable` caps.
            #[cfg(target_arch = "aarch64")]
            Self::Neon => {
                cpu::cap_level() != Some(Level::Portable)
                    && std::arch::is_aarch64_feature_detected!("neon")
            }
            Self::Avx512Gfni => level >= Level::Avx512 && gfni_supported(),
            #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
            Self::Avx2 => level >= Level::Avx2 && std::arch::is_x86_feature_detected!("avx2"),
            #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
            Self::Ssse3 => level >= Level::Ssse3 && std::arch::is_x86_feature_detected!("ssse3"),
            Self::Portable => true,
            // The kinds of other architectures.
            _ => false,
        }
    }

    /// Lower-case name (`avx512-gfni`, `avx2`, `ssse3`, `portable`).
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Avx512Gfni => "avx512-gfni",
            Self::Avx2 => "avx2",
            Self::Ssse3 => "ssse3",
            Self::Neon => "neon",
            Self::Portable => "portable",
        }
    }
}

/// Whether this CPU has what [`Gfni`] needs (AVX-512F, AVX-512BW, GFNI), whatever the cap.
#[must_use]
pub fn gfni_supported() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("gfni")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The engine the wide code runs on: one of [`EngineKind`], chosen at run time.
#[derive(Clone)]
pub struct WideEngine(Inner);

#[derive(Clone)]
enum Inner {
    Gfni(Gfni),
    #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
    Avx2(Avx2),
    #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
    Ssse3(Ssse3),
    #[cfg(target_arch = "aarch64")]
    Neon(Neon),
    NoSimd(NoSimd),
}

impl WideEngine {
    /// The engine [`EngineKind::detect`] picks.
    #[must_use]
    pub fn detect() -> Self {
        Self::of(EngineKind::detect())
    }

    /// The engine `kind`, or the portable one if this CPU cannot run it.
    #[must_use]
    pub fn of(kind: EngineKind) -> Self {
        Self(match kind {
            EngineKind::Avx512Gfni => match Gfni::new() {
                Some(g) => Inner::Gfni(g),
                None => Inner::NoSimd(NoSimd::new()),
            },
            #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
            EngineKind::Avx2 if std::arch::is_x86_feature_detected!("avx2") => {
                Inner::Avx2(Avx2::new())
            }
            #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
            EngineKind::Ssse3 if std::arch::is_x86_feature_detected!("ssse3") => {
                Inner::Ssse3(Ssse3::new())
            }
            #[cfg(target_arch = "aarch64")]
            EngineKind::Neon if std::arch::is_aarch64_feature_detected!("neon") => {
                Inner::Neon(Neon::new())
            }
            _ => Inner::NoSimd(NoSimd::new()),
        })
    }

    /// Which engine this is.
    #[must_use]
    pub fn kind(&self) -> EngineKind {
        match self.0 {
            Inner::Gfni(_) => EngineKind::Avx512Gfni,
            #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
            Inner::Avx2(_) => EngineKind::Avx2,
            #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
            Inner::Ssse3(_) => EngineKind::Ssse3,
            #[cfg(target_arch = "aarch64")]
            Inner::Neon(_) => EngineKind::Neon,
            Inner::NoSimd(_) => EngineKind::Portable,
        }
    }
}

impl Engine for WideEngine {
    fn fft(
        &self,
        data: &mut ShardsRefMut,
        pos: usize,
        size: usize,
        truncated_size: usize,
        skew_delta: usize,
    ) {
        match &self.0 {
            Inner::Gfni(e) => e.fft(data, pos, size, truncated_size, skew_delta),
            #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
            Inner::Avx2(e) => e.fft(data, pos, size, truncated_size, skew_delta),
            #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
            Inner::Ssse3(e) => e.fft(data, pos, size, truncated_size, skew_delta),
            #[cfg(target_arch = "aarch64")]
            Inner::Neon(e) => e.fft(data, pos, size, truncated_size, skew_delta),
            Inner::NoSimd(e) => e.fft(data, pos, size, truncated_size, skew_delta),
        }
    }

    fn ifft(
        &self,
        data: &mut ShardsRefMut,
        pos: usize,
        size: usize,
        truncated_size: usize,
        skew_delta: usize,
    ) {
        match &self.0 {
            Inner::Gfni(e) => e.ifft(data, pos, size, truncated_size, skew_delta),
            #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
            Inner::Avx2(e) => e.ifft(data, pos, size, truncated_size, skew_delta),
            #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
            Inner::Ssse3(e) => e.ifft(data, pos, size, truncated_size, skew_delta),
            #[cfg(target_arch = "aarch64")]
            Inner::Neon(e) => e.ifft(data, pos, size, truncated_size, skew_delta),
            Inner::NoSimd(e) => e.ifft(data, pos, size, truncated_size, skew_delta),
        }
    }

    fn mul(&self, x: &mut [[u8; 64]], log_m: GfElement) {
        match &self.0 {
            Inner::Gfni(e) => e.mul(x, log_m),
            #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
            Inner::Avx2(e) => e.mul(x, log_m),
            #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
            Inner::Ssse3(e) => e.mul(x, log_m),
            #[cfg(target_arch = "aarch64")]
            Inner::Neon(e) => e.mul(x, log_m),
            Inner::NoSimd(e) => e.mul(x, log_m),
        }
    }

    /// The crate's scalar evaluation, compiled for the best level the cap allows (same results).
    fn eval_poly(erasures: &mut [GfElement; GF_ORDER], truncated_size: usize) {
        match EngineKind::detect() {
            #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
            EngineKind::Avx512Gfni | EngineKind::Avx2 => Avx2::eval_poly(erasures, truncated_size),
            #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
            EngineKind::Ssse3 => Ssse3::eval_poly(erasures, truncated_size),
            #[cfg(target_arch = "aarch64")]
            EngineKind::Neon => Neon::eval_poly(erasures, truncated_size),
            _ => NoSimd::eval_poly(erasures, truncated_size),
        }
    }
}

/// The wide code's encoder: the crate's `ReedSolomonEncoder` (same rate choice, same bytes) over a
/// [`WideEngine`].
pub struct WideEncoder(DefaultRateEncoder<WideEngine>);

impl WideEncoder {
    /// An encoder for `k` data and `m` parity shards of `shard_bytes` bytes on the detected engine.
    pub fn new(k: usize, m: usize, shard_bytes: usize) -> Result<Self, Error> {
        Self::with_engine(k, m, shard_bytes, WideEngine::detect())
    }

    /// The same on `engine`.
    pub fn with_engine(
        k: usize,
        m: usize,
        shard_bytes: usize,
        engine: WideEngine,
    ) -> Result<Self, Error> {
        Ok(Self(DefaultRateEncoder::new(
            k,
            m,
            shard_bytes,
            engine,
            None,
        )?))
    }

    /// Start over with a new shape (the work area is reused).
    pub fn reset(&mut self, k: usize, m: usize, shard_bytes: usize) -> Result<(), Error> {
        self.0.reset(k, m, shard_bytes)
    }

    /// Add the next data shard.
    pub fn add_original_shard<T: AsRef<[u8]>>(&mut self, shard: T) -> Result<(), Error> {
        self.0.add_original_shard(shard)
    }

    /// Encode the shards added: the parity shards.
    pub fn encode(&mut self) -> Result<EncoderResult<'_>, Error> {
        self.0.encode()
    }
}

/// The high-rate encode of [`WideEncoder`] (`k` rounded up to a power of two above `m`'s), streamed:
/// the data shards are transformed a chunk of `m.next_power_of_two()` at a time as they arrive, in a
/// work area of two such chunks, instead of being copied into a work area of all `k` and transformed
/// afterwards. The crate's high-rate encoder (`rate_high.rs`) does the same steps in the same order
/// (IFFT of the first chunk in place, IFFT of each further chunk with its own skew and XOR into the
/// first, one FFT), so the parity is bit-identical; what changes is that each chunk is transformed
/// while it is still in the core's cache (4 KiB shards: chunks of 512 KiB in a work area of 1 MiB,
/// against a work area of 4 MiB for `k` = 1024).
/// Shards must be a multiple of 64 bytes (no tail block to lay out).
pub struct StreamEncoder {
    engine: WideEngine,
    k: usize,
    m: usize,
    /// Shards per chunk: `m.next_power_of_two()`.
    cs: usize,
    shard_bytes: usize,
    /// Chunk 0 (the accumulator) in shards `[0, cs)`, the chunk being filled in `[cs, 2 cs)`.
    work: Vec<[u8; 64]>,
    /// Data shards added so far.
    added: usize,
    /// Whether [`StreamEncoder::encode`] has run (the parity is in the work area; another call
    /// hands it out again instead of transforming it a second time).
    encoded: bool,
}

impl StreamEncoder {
    /// Whether `k` data and `m` parity shards of `shard_bytes` bytes take this encoder (else use
    /// [`WideEncoder`]): the crate's high rate by the strict rule, whole 64-byte blocks.
    #[must_use]
    pub fn supports(k: usize, m: usize, shard_bytes: usize) -> bool {
        shard_bytes > 0
            && shard_bytes.is_multiple_of(64)
            && m > 0
            && k.next_power_of_two() > m.next_power_of_two()
            && k.checked_add(m.next_power_of_two())
                .is_some_and(|n| n <= GF_ORDER)
    }

    /// An encoder for `k` data and `m` parity shards of `shard_bytes` bytes on the detected engine.
    ///
    /// # Errors
    /// `UnsupportedShardCount` when [`StreamEncoder::supports`] says no.
    pub fn new(k: usize, m: usize, shard_bytes: usize) -> Result<Self, Error> {
        Self::with_engine(k, m, shard_bytes, WideEngine::detect())
    }

    /// The same on `engine`.
    ///
    /// # Errors
    /// As [`StreamEncoder::new`].
    pub fn with_engine(
        k: usize,
        m: usize,
        shard_bytes: usize,
        engine: WideEngine,
    ) -> Result<Self, Error> {
        let mut e = Self {
            engine,
            k: 0,
            m: 0,
            cs: 0,
            shard_bytes: 0,
            work: Vec::new(),
            added: 0,
            encoded: false,
        };
        e.reset(k, m, shard_bytes)?;
        Ok(e)
    }

    /// Start over with a new shape (the work area is reused).
    ///
    /// # Errors
    /// As [`StreamEncoder::new`].
    pub fn reset(&mut self, k: usize, m: usize, shard_bytes: usize) -> Result<(), Error> {
        if !Self::supports(k, m, shard_bytes) {
            return Err(Error::UnsupportedShardCount {
                original_count: k,
                recovery_count: m,
            });
        }
        self.k = k;
        self.m = m;
        self.cs = m.next_power_of_two();
        self.shard_bytes = shard_bytes;
        self.added = 0;
        self.encoded = false;
        self.work.resize(2 * self.cs * (shard_bytes / 64), [0; 64]);
        Ok(())
    }

    /// The work area as the engine's shards (a function of the fields, so that the engine can be
    /// borrowed beside it).
    fn shards(work: &mut [[u8; 64]], cs: usize, shard_bytes: usize) -> ShardsRefMut<'_> {
        ShardsRefMut::new(2 * cs, shard_bytes / 64, work)
    }

    /// Add the next data shard (transforming its chunk once the chunk is complete).
    ///
    /// # Errors
    /// `TooManyOriginalShards`, `DifferentShardSize`.
    pub fn add_original_shard(&mut self, shard: &[u8]) -> Result<(), Error> {
        if shard.len() != self.shard_bytes {
            return Err(Error::DifferentShardSize {
                shard_bytes: self.shard_bytes,
                got: shard.len(),
            });
        }
        self.add_padded_shard(shard, None)
    }

    /// Add the next data shard: `piece` zero-padded to the shard size (at most that long), `XORed`
    /// into `acc` (its first `piece.len()` bytes) in the same pass when given. The wide encode's
    /// local parity accumulates this way while the piece is read once (see [`copy_xor`]).
    ///
    /// # Errors
    /// `TooManyOriginalShards`, `DifferentShardSize` (a piece longer than a shard).
    pub fn add_padded_shard(&mut self, piece: &[u8], acc: Option<&mut [u8]>) -> Result<(), Error> {
        if self.added == self.k {
            return Err(Error::TooManyOriginalShards {
                original_count: self.k,
            });
        }
        if piece.len() > self.shard_bytes {
            return Err(Error::DifferentShardSize {
                shard_bytes: self.shard_bytes,
                got: piece.len(),
            });
        }
        let (cs, at) = (self.cs, self.added);
        let chunk_start = at - at % cs;
        // Chunk 0 goes straight into the accumulator; later chunks into the second half.
        let slot = if chunk_start == 0 { at } else { cs + at % cs };
        let mut data = Self::shards(&mut self.work, cs, self.shard_bytes);
        let dst = data[slot].as_flattened_mut();
        copy_xor(dst, acc, piece);
        if let Some(rest) = dst.get_mut(piece.len()..) {
            rest.fill(0);
        }
        self.added += 1;
        if self.added.is_multiple_of(cs) || self.added == self.k {
            self.transform(chunk_start, self.added - chunk_start);
        }
        Ok(())
    }

    /// The chunk starting at data shard `chunk_start`, of `count` shards, now complete: as the
    /// crate's `HighRateEncoder::encode` does for it.
    fn transform(&mut self, chunk_start: usize, count: usize) {
        let cs = self.cs;
        let mut data = Self::shards(&mut self.work, cs, self.shard_bytes);
        if chunk_start == 0 {
            data.zero(count..cs);
            self.engine.ifft(&mut data, 0, cs, count, cs);
        } else {
            data.zero(cs + count..2 * cs);
            self.engine.ifft(&mut data, cs, cs, count, chunk_start + cs);
            reed_solomon_simd::engine::utils::xor_within(&mut data, 0, cs, cs);
        }
    }

    /// The parity shards, once all `k` data shards were added (the `m` parity shards, each
    /// `shard_bytes` long, in order).
    ///
    /// # Errors
    /// `TooFewOriginalShards`.
    pub fn encode(&mut self) -> Result<impl Iterator<Item = &[u8]>, Error> {
        if self.added != self.k {
            return Err(Error::TooFewOriginalShards {
                original_count: self.k,
                original_received_count: self.added,
            });
        }
        let (cs, m) = (self.cs, self.m);
        if !self.encoded {
            let mut data = Self::shards(&mut self.work, cs, self.shard_bytes);
            self.engine.fft(&mut data, 0, cs, m, 0);
            self.encoded = true;
        }
        let len64 = self.shard_bytes / 64;
        Ok(self
            .work
            .chunks_exact(len64)
            .take(m)
            .map(<[[u8; 64]]>::as_flattened))
    }
}

/// The wide code's decoder: the crate's `ReedSolomonDecoder` over a [`WideEngine`].
pub struct WideDecoder(DefaultRateDecoder<WideEngine>);

impl WideDecoder {
    /// A decoder for `k` data and `m` parity shards of `shard_bytes` bytes on the detected engine.
    pub fn new(k: usize, m: usize, shard_bytes: usize) -> Result<Self, Error> {
        Self::with_engine(k, m, shard_bytes, WideEngine::detect())
    }

    /// The same on `engine`.
    pub fn with_engine(
        k: usize,
        m: usize,
        shard_bytes: usize,
        engine: WideEngine,
    ) -> Result<Self, Error> {
        Ok(Self(DefaultRateDecoder::new(
            k,
            m,
            shard_bytes,
            engine,
            None,
        )?))
    }

    /// Start over with a new shape (the work area is reused).
    pub fn reset(&mut self, k: usize, m: usize, shard_bytes: usize) -> Result<(), Error> {
        self.0.reset(k, m, shard_bytes)
    }

    /// Add the intact data shard `index`.
    pub fn add_original_shard<T: AsRef<[u8]>>(
        &mut self,
        index: usize,
        shard: T,
    ) -> Result<(), Error> {
        self.0.add_original_shard(index, shard)
    }

    /// Add the intact parity shard `index`.
    pub fn add_recovery_shard<T: AsRef<[u8]>>(
        &mut self,
        index: usize,
        shard: T,
    ) -> Result<(), Error> {
        self.0.add_recovery_shard(index, shard)
    }

    /// Rebuild the missing data shards.
    pub fn decode(&mut self) -> Result<DecoderResult<'_>, Error> {
        self.0.decode()
    }
}

// ======================================================================
// The GFNI engine

/// The 8×8 blocks `[A, B, C, D]` of "multiply by `exp(log_m)`" for every `log_m`, in the layout
/// `vgf2p8affineqb` expects (output bit `i` of a byte is the parity of `byte[7 − i] & x`).
/// 2 MiB, built once.
fn matrices() -> &'static [[u64; 4]] {
    static MATS: OnceLock<Box<[[u64; 4]]>> = OnceLock::new();
    MATS.get_or_init(|| {
        let el = tables::get_exp_log();
        (0..=GF_MODULUS)
            .map(|log_m| {
                let mut cols = [0u16; 16];
                for (j, c) in cols.iter_mut().enumerate() {
                    *c = tables::mul(1 << j, log_m, &el.exp, &el.log);
                }
                // lo' = A·lo ⊕ B·hi, hi' = C·lo ⊕ D·hi.
                [
                    block(&cols, 0, 0),
                    block(&cols, 8, 0),
                    block(&cols, 0, 8),
                    block(&cols, 8, 8),
                ]
            })
            .collect()
    })
}

/// The 8×8 block of the 16×16 matrix with columns `cols` (the images of the unit vectors) mapping
/// input bits `inp..inp + 8` to output bits `out..out + 8`, as a `vgf2p8affineqb` matrix.
fn block(cols: &[u16; 16], inp: usize, out: usize) -> u64 {
    let mut q = 0u64;
    for i in 0..8 {
        let mut row = 0u64;
        for (j, c) in cols.iter().skip(inp).take(8).enumerate() {
            row |= u64::from((c >> (out + i)) & 1) << j;
        }
        q |= row << (8 * (7 - i));
    }
    q
}

/// The GFNI engine. Exists only on a CPU with AVX-512F, AVX-512BW and GFNI ([`Gfni::new`]).
#[derive(Clone, Copy)]
// Off x86-64 the engine is never constructed (`new` returns `None`), so its tables go unread there.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub struct Gfni {
    skew: &'static [GfElement],
    mats: &'static [[u64; 4]],
}

#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
impl Gfni {
    /// The engine, or `None` when this CPU lacks AVX-512F, AVX-512BW or GFNI.
    #[must_use]
    pub fn new() -> Option<Self> {
        if !gfni_supported() {
            return None;
        }
        Some(Self {
            skew: tables::get_skew().as_slice(),
            mats: matrices(),
        })
    }

    /// The blocks for `log_m`; the zero matrix for `GF_MODULUS` in a butterfly (the crate skips the
    /// product there, and `x ⊕ 0·y = x`).
    #[inline]
    fn butterfly_mats(&self, log_m: GfElement) -> [u64; 4] {
        if log_m == GF_MODULUS {
            [0; 4]
        } else {
            self.mats.get(usize::from(log_m)).copied().unwrap_or([0; 4])
        }
    }

    #[inline]
    fn skew_at(&self, i: usize) -> GfElement {
        // The crate's callers keep `i < GF_MODULUS`; out of range would be a bug there, so the
        // product is skipped (GF_MODULUS) rather than panicking.
        self.skew.get(i).copied().unwrap_or(GF_MODULUS)
    }
}

impl Engine for Gfni {
    fn fft(
        &self,
        data: &mut ShardsRefMut,
        pos: usize,
        size: usize,
        truncated_size: usize,
        skew_delta: usize,
    ) {
        // SAFETY: a `Gfni` exists only when the CPU has AVX-512F, AVX-512BW and GFNI (`Gfni::new`).
        unsafe { simd::fft(self, data, pos, size, truncated_size, skew_delta) }
    }

    fn ifft(
        &self,
        data: &mut ShardsRefMut,
        pos: usize,
        size: usize,
        truncated_size: usize,
        skew_delta: usize,
    ) {
        // SAFETY: as in `fft`.
        unsafe { simd::ifft(self, data, pos, size, truncated_size, skew_delta) }
    }

    fn mul(&self, x: &mut [[u8; 64]], log_m: GfElement) {
        let m = self.mats.get(usize::from(log_m)).copied().unwrap_or([0; 4]);
        // SAFETY: as in `fft`.
        unsafe { simd::mul(x, m) }
    }
}

#[cfg(target_arch = "x86_64")]
#[allow(clippy::cast_ptr_alignment, clippy::cast_possible_wrap)]
mod simd {
    //! The kernels. Every function here requires AVX-512F, AVX-512BW and GFNI.

    use std::arch::x86_64::{
        __m512i, _mm256_set1_epi64x, _mm512_gf2p8affine_epi64_epi8, _mm512_inserti64x4,
        _mm512_loadu_si512, _mm512_set1_epi64, _mm512_shuffle_i64x2, _mm512_storeu_si512,
        _mm512_xor_si512,
    };

    use reed_solomon_simd::engine::{utils, GfElement, ShardsRefMut};

    use super::Gfni;

    /// The two register matrices of one multiplier: `[A|D]` (applied to the block) and `[B|C]`
    /// (applied to the block with its 256-bit halves swapped).
    #[derive(Clone, Copy)]
    struct Mat(__m512i, __m512i);

    /// Four shards of one radix-4 step, as `ShardsRefMut::dist4_mut` returns them.
    type Four<'a> = (
        &'a mut [[u8; 64]],
        &'a mut [[u8; 64]],
        &'a mut [[u8; 64]],
        &'a mut [[u8; 64]],
    );

    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,gfni")]
    fn mat(m: [u64; 4]) -> Mat {
        let [lo_lo, hi_lo, lo_hi, hi_hi] = m.map(|q| q as i64);
        Mat(
            _mm512_inserti64x4::<1>(_mm512_set1_epi64(lo_lo), _mm256_set1_epi64x(hi_hi)),
            _mm512_inserti64x4::<1>(_mm512_set1_epi64(hi_lo), _mm256_set1_epi64x(lo_hi)),
        )
    }

    /// 32 products: low bytes in the low half, high bytes in the high half.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,gfni")]
    fn mul512(x: __m512i, m: Mat) -> __m512i {
        let swapped = _mm512_shuffle_i64x2::<0b0100_1110>(x, x);
        _mm512_xor_si512(
            _mm512_gf2p8affine_epi64_epi8::<0>(x, m.0),
            _mm512_gf2p8affine_epi64_epi8::<0>(swapped, m.1),
        )
    }

    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,gfni")]
    fn load(b: &[u8; 64]) -> __m512i {
        // SAFETY: `b` is 64 readable bytes; `loadu` takes any alignment.
        unsafe { _mm512_loadu_si512(b.as_ptr().cast::<__m512i>()) }
    }

    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,gfni")]
    fn store(b: &mut [u8; 64], v: __m512i) {
        // SAFETY: `b` is 64 writable bytes; `storeu` takes any alignment.
        unsafe { _mm512_storeu_si512(b.as_mut_ptr().cast::<__m512i>(), v) }
    }

    /// `x[] *= log_m` with the blocks of `log_m`.
    #[target_feature(enable = "avx512f,avx512bw,gfni")]
    pub(super) fn mul(x: &mut [[u8; 64]], m: [u64; 4]) {
        let m = mat(m);
        for b in x.iter_mut() {
            store(b, mul512(load(b), m));
        }
    }

    /// FFT butterfly over two shards: `x ^= y·m; y ^= x`.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,gfni")]
    fn fft2(x: &mut [[u8; 64]], y: &mut [[u8; 64]], m: Mat) {
        for (bx, by) in x.iter_mut().zip(y.iter_mut()) {
            let vy = load(by);
            let vx = _mm512_xor_si512(load(bx), mul512(vy, m));
            store(bx, vx);
            store(by, _mm512_xor_si512(vy, vx));
        }
    }

    /// IFFT butterfly over two shards: `y ^= x; x ^= y·m`.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,gfni")]
    fn ifft2(x: &mut [[u8; 64]], y: &mut [[u8; 64]], m: Mat) {
        for (bx, by) in x.iter_mut().zip(y.iter_mut()) {
            let vx = load(bx);
            let vy = _mm512_xor_si512(load(by), vx);
            store(by, vy);
            store(bx, _mm512_xor_si512(vx, mul512(vy, m)));
        }
    }

    /// Both layers of a radix-4 FFT step on shards `s0..s3` (the crate's order: `(0,2)` and `(1,3)`
    /// with `m02`, then `(0,1)` with `m01` and `(2,3)` with `m23`), block by block in registers.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,gfni")]
    fn fft4(s: Four<'_>, m01: Mat, m23: Mat, m02: Mat) {
        let (s0, s1, s2, s3) = s;
        for (((b0, b1), b2), b3) in s0
            .iter_mut()
            .zip(s1.iter_mut())
            .zip(s2.iter_mut())
            .zip(s3.iter_mut())
        {
            let (mut v0, mut v1, mut v2, mut v3) = (load(b0), load(b1), load(b2), load(b3));
            v0 = _mm512_xor_si512(v0, mul512(v2, m02));
            v2 = _mm512_xor_si512(v2, v0);
            v1 = _mm512_xor_si512(v1, mul512(v3, m02));
            v3 = _mm512_xor_si512(v3, v1);
            v0 = _mm512_xor_si512(v0, mul512(v1, m01));
            v1 = _mm512_xor_si512(v1, v0);
            v2 = _mm512_xor_si512(v2, mul512(v3, m23));
            v3 = _mm512_xor_si512(v3, v2);
            store(b0, v0);
            store(b1, v1);
            store(b2, v2);
            store(b3, v3);
        }
    }

    /// Both layers of a radix-4 IFFT step (the crate's order: `(0,1)` with `m01` and `(2,3)` with
    /// `m23`, then `(0,2)` and `(1,3)` with `m02`).
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,gfni")]
    fn ifft4(s: Four<'_>, m01: Mat, m23: Mat, m02: Mat) {
        let (s0, s1, s2, s3) = s;
        for (((b0, b1), b2), b3) in s0
            .iter_mut()
            .zip(s1.iter_mut())
            .zip(s2.iter_mut())
            .zip(s3.iter_mut())
        {
            let (mut v0, mut v1, mut v2, mut v3) = (load(b0), load(b1), load(b2), load(b3));
            v1 = _mm512_xor_si512(v1, v0);
            v0 = _mm512_xor_si512(v0, mul512(v1, m01));
            v3 = _mm512_xor_si512(v3, v2);
            v2 = _mm512_xor_si512(v2, mul512(v3, m23));
            v2 = _mm512_xor_si512(v2, v0);
            v0 = _mm512_xor_si512(v0, mul512(v2, m02));
            v3 = _mm512_xor_si512(v3, v1);
            v1 = _mm512_xor_si512(v1, mul512(v3, m02));
            store(b0, v0);
            store(b1, v1);
            store(b2, v2);
            store(b3, v3);
        }
    }

    /// The crate's `Avx2::fft_private` with the kernels above.
    #[target_feature(enable = "avx512f,avx512bw,gfni")]
    pub(super) fn fft(
        e: &Gfni,
        data: &mut ShardsRefMut,
        pos: usize,
        size: usize,
        truncated_size: usize,
        skew_delta: usize,
    ) {
        let mut dist4 = size;
        let mut dist = size >> 2;
        while dist != 0 {
            let mut r = 0;
            while r < truncated_size {
                let base = r + dist + skew_delta - 1;
                let m01 = mat(e.butterfly_mats(e.skew_at(base)));
                let m02 = mat(e.butterfly_mats(e.skew_at(base + dist)));
                let m23 = mat(e.butterfly_mats(e.skew_at(base + dist * 2)));
                for i in r..r + dist {
                    fft4(data.dist4_mut(pos + i, dist), m01, m23, m02);
                }
                r += dist4;
            }
            dist4 = dist;
            dist >>= 2;
        }
        if dist4 == 2 {
            let mut r = 0;
            while r < truncated_size {
                let log_m: GfElement = e.skew_at(r + skew_delta);
                let (x, y) = data.dist2_mut(pos + r, 1);
                if log_m == reed_solomon_simd::engine::GF_MODULUS {
                    utils::xor(y, x);
                } else {
                    fft2(x, y, mat(e.butterfly_mats(log_m)));
                }
                r += 2;
            }
        }
    }

    /// The crate's `Avx2::ifft_private` with the kernels above.
    #[target_feature(enable = "avx512f,avx512bw,gfni")]
    pub(super) fn ifft(
        e: &Gfni,
        data: &mut ShardsRefMut,
        pos: usize,
        size: usize,
        truncated_size: usize,
        skew_delta: usize,
    ) {
        let mut dist = 1;
        let mut dist4 = 4;
        while dist4 <= size {
            let mut r = 0;
            while r < truncated_size {
                let base = r + dist + skew_delta - 1;
                let m01 = mat(e.butterfly_mats(e.skew_at(base)));
                let m02 = mat(e.butterfly_mats(e.skew_at(base + dist)));
                let m23 = mat(e.butterfly_mats(e.skew_at(base + dist * 2)));
                for i in r..r + dist {
                    ifft4(data.dist4_mut(pos + i, dist), m01, m23, m02);
                }
                r += dist4;
            }
            dist = dist4;
            dist4 <<= 2;
        }
        if dist < size {
            let log_m = e.skew_at(dist + skew_delta - 1);
            if log_m == reed_solomon_simd::engine::GF_MODULUS {
                utils::xor_within(data, pos + dist, pos, dist);
            } else {
                let m = mat(e.butterfly_mats(log_m));
                for i in 0..dist {
                    let (x, y) = data.dist2_mut(pos + i, dist);
                    ifft2(x, y, m);
                }
            }
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod simd {
    //! Never called: a `Gfni` cannot be made off x86-64.
    use reed_solomon_simd::engine::ShardsRefMut;

    use super::Gfni;

    pub(super) unsafe fn mul(_: &mut [[u8; 64]], _: [u64; 4]) {}
    pub(super) unsafe fn fft(
        _: &Gfni,
        _: &mut ShardsRefMut,
        _: usize,
        _: usize,
        _: usize,
        _: usize,
    ) {
    }
    pub(super) unsafe fn ifft(
        _: &Gfni,
        _: &mut ShardsRefMut,
        _: usize,
        _: usize,
        _: usize,
        _: usize,
    ) {
    }
}

#[cfg(test)]
#[allow(
    clippy::cast_possible_truncation,
    clippy::cast_precision_loss,
    clippy::indexing_slicing
)]
mod tests {
    use super::*;
    use crate::hash::{sha256, to_hex};

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

    fn engines() -> Vec<WideEngine> {
        let mut v = vec![WideEngine::of(EngineKind::Portable)];
        for k in [EngineKind::Avx2, EngineKind::Neon, EngineKind::Avx512Gfni] {
            let e = WideEngine::of(k);
            if e.kind() == k {
                v.push(e);
            }
        }
        v
    }

    fn gfni() -> Option<WideEngine> {
        let e = WideEngine::of(EngineKind::Avx512Gfni);
        if e.kind() == EngineKind::Avx512Gfni {
            Some(e)
        } else {
            eprintln!("no AVX-512BW + GFNI here: the GFNI engine is not exercised");
            None
        }
    }

    #[test]
    fn products_match_the_crate_for_every_multiplier() {
        // 64 blocks = 2048 elements of every value pattern, times each of the 65536 multipliers,
        // against the crate's portable engine (its table products).
        let Some(g) = gfni() else { return };
        let p = WideEngine::of(EngineKind::Portable);
        let base: Vec<[u8; 64]> = pattern(64 * 64, 9)
            .chunks_exact(64)
            .map(|c| c.try_into().unwrap())
            .collect();
        for log_m in 0..=GF_MODULUS {
            let mut a = base.clone();
            let mut b = base.clone();
            g.mul(&mut a, log_m);
            p.mul(&mut b, log_m);
            assert!(a == b, "log_m {log_m}");
        }
    }

    /// FFT and IFFT on raw shard arrays of `n` shards, every `(size, truncated, skew)` the rate
    /// encoders use, against the portable engine.
    #[test]
    fn transforms_match_the_crate() {
        let Some(g) = gfni() else { return };
        let p = WideEngine::of(EngineKind::Portable);
        for (n, len64) in [
            (2usize, 1usize),
            (4, 2),
            (8, 1),
            (32, 3),
            (256, 2),
            (512, 4),
            (2048, 1),
        ] {
            let base: Vec<[u8; 64]> = pattern(n * len64 * 64, n as u32)
                .chunks_exact(64)
                .map(|c| c.try_into().unwrap())
                .collect();
            for trunc in [n, n / 2 + 1, n / 3 + 5, 1]
                .into_iter()
                .filter(|&t| t >= 1 && t <= n)
            {
                for skew in [n, 3 * n, 100 * n, 65536 - n]
                    .into_iter()
                    .filter(|&s| s + n <= 65536)
                {
                    for inverse in [false, true] {
                        let mut a = base.clone();
                        let mut b = base.clone();
                        let mut sa = ShardsRefMut::new(n, len64, &mut a);
                        let mut sb = ShardsRefMut::new(n, len64, &mut b);
                        if inverse {
                            g.ifft(&mut sa, 0, n, trunc, skew);
                            p.ifft(&mut sb, 0, n, trunc, skew);
                        } else {
                            g.fft(&mut sa, 0, n, trunc, skew);
                            p.fft(&mut sb, 0, n, trunc, skew);
                        }
                        // Only the first `trunc` shards are defined when the input was not zero.
                        let valid = trunc * len64;
                        assert!(
                            a[..valid] == b[..valid],
                            "n {n} trunc {trunc} skew {skew} inverse {inverse}"
                        );
                    }
                }
            }
        }
    }

    fn encode_with(e: WideEngine, shards: &[Vec<u8>], m: usize) -> Vec<Vec<u8>> {
        let mut enc = WideEncoder::with_engine(shards.len(), m, shards[0].len(), e).unwrap();
        for s in shards {
            enc.add_original_shard(s).unwrap();
        }
        let r = enc.encode().unwrap();
        r.recovery_iter().map(<[u8]>::to_vec).collect()
    }

    /// Decode with data shards `lost_data` and parity shards `lost_parity` missing; the rebuilt data.
    fn decode_with(
        e: WideEngine,
        shards: &[Vec<u8>],
        parity: &[Vec<u8>],
        lost_data: &[usize],
        lost_parity: &[usize],
    ) -> Vec<Vec<u8>> {
        let (k, m) = (shards.len(), parity.len());
        let mut dec = WideDecoder::with_engine(k, m, shards[0].len(), e).unwrap();
        for (i, s) in shards.iter().enumerate() {
            if !lost_data.contains(&i) {
                dec.add_original_shard(i, s).unwrap();
            }
        }
        for (i, p) in parity.iter().enumerate() {
            if !lost_parity.contains(&i) {
                dec.add_recovery_shard(i, p).unwrap();
            }
        }
        let r = dec.decode().unwrap();
        lost_data
            .iter()
            .map(|&i| r.restored_original(i).unwrap().to_vec())
            .collect()
    }

    #[test]
    fn the_streamed_encode_is_bit_identical_to_the_crates() {
        let engines = engines();
        // (k, m, shard bytes): the medium shape, a last chunk of 1 and of cs - 1 shards, one chunk
        // and a bit, m not a power of two, the smallest high rate.
        for (k, m, len) in [
            (1024usize, 128usize, 128usize),
            (1025, 128, 64),
            (1151, 128, 64),
            (129, 128, 64),
            (300, 100, 192),
            (64, 16, 4096),
            (37, 5, 128),
            (3, 1, 64),
            (2, 1, 64),
        ] {
            assert!(StreamEncoder::supports(k, m, len), "k {k} m {m}");
            let shards: Vec<Vec<u8>> = (0..k)
                .map(|i| pattern(len, (k * 7919 + i) as u32))
                .collect();
            let want = reed_solomon_simd::encode(k, m, &shards).unwrap();
            for e in &engines {
                let mut enc = StreamEncoder::with_engine(k, m, len, e.clone()).unwrap();
                // Twice: the second time on the reused work area (reset), which still holds the
                // first encode's values.
                for round in 0..2 {
                    enc.reset(k, m, len).unwrap();
                    for s in &shards {
                        enc.add_original_shard(s).unwrap();
                    }
                    let got: Vec<Vec<u8>> = enc.encode().unwrap().map(<[u8]>::to_vec).collect();
                    assert!(
                        got == want,
                        "{:?} k {k} m {m} len {len} round {round}",
                        e.kind()
                    );
                    // Asked again, the same parity (it once transformed the work area a second time).
                    let again: Vec<Vec<u8>> = enc.encode().unwrap().map(<[u8]>::to_vec).collect();
                    assert!(again == want, "{:?} k {k} m {m} len {len} again", e.kind());
                }
            }
        }
        // Shapes it does not take (the caller uses WideEncoder): low rate, equal powers of two, a
        // tail block, nothing.
        for (k, m, len) in [
            (5, 11, 192),
            (128, 128, 64),
            (64, 64, 64),
            (1000, 125, 66),
            (4, 1, 0),
        ] {
            assert!(!StreamEncoder::supports(k, m, len), "k {k} m {m} len {len}");
            assert!(StreamEncoder::new(k, m, len).is_err());
        }
        let mut enc = StreamEncoder::new(3, 1, 64).unwrap();
        assert!(enc.add_original_shard(&[0; 63]).is_err());
        assert!(enc.encode().is_err());
        for _ in 0..3 {
            enc.add_original_shard(&[1; 64]).unwrap();
        }
        assert!(enc.add_original_shard(&[1; 64]).is_err());
    }

    #[test]
    fn padded_shards_pad_with_zeros_and_xor_into_the_accumulator() {
        // Pieces of every length up to the shard, the last ones short (a short last chunk), each
        // XORed into one of two accumulators on the way: the parity of the zero-padded shards, and
        // the accumulators equal to the XOR of their pieces.
        let (k, m, len) = (37usize, 5usize, 192usize);
        let pieces: Vec<Vec<u8>> = (0..k)
            .map(|i| {
                let mut p = pattern(len, (i * 31 + 7) as u32);
                p.truncate(if i < 30 { len } else { (i * 13) % (len + 1) });
                p
            })
            .collect();
        let padded: Vec<Vec<u8>> = pieces
            .iter()
            .map(|p| {
                let mut q = p.clone();
                q.resize(len, 0);
                q
            })
            .collect();
        let want = reed_solomon_simd::encode(k, m, &padded).unwrap();
        let mut want_acc = [vec![0u8; len], vec![0u8; len]];
        for (i, p) in pieces.iter().enumerate() {
            for (a, b) in want_acc[i % 2].iter_mut().zip(p) {
                *a ^= b;
            }
        }
        for e in engines() {
            let mut enc = StreamEncoder::with_engine(k, m, len, e.clone()).unwrap();
            let mut acc = [vec![0u8; len], vec![0u8; len]];
            for (i, p) in pieces.iter().enumerate() {
                enc.add_padded_shard(p, Some(&mut acc[i % 2])).unwrap();
            }
            let got: Vec<Vec<u8>> = enc.encode().unwrap().map(<[u8]>::to_vec).collect();
            assert!(got == want, "{:?}", e.kind());
            assert!(acc == want_acc, "{:?}", e.kind());
        }
        let mut enc = StreamEncoder::new(k, m, len).unwrap();
        assert!(enc.add_padded_shard(&[0; 193], None).is_err());
    }

    #[test]
    fn encode_and_decode_are_bit_identical_on_every_engine() {
        let engines = engines();
        // (k, m, shard bytes): the medium shape at k = 1024, high rate, low rate (m > k), odd k and
        // shard lengths that are not a multiple of 64.
        for (k, m, len) in [
            (1024usize, 128usize, 128usize),
            (64, 16, 4096),
            (37, 5, 1000),
            (3, 2, 128),
            (1, 1, 64),
            (5, 11, 192),
            (255, 33, 64),
            (1000, 125, 66),
        ] {
            let shards: Vec<Vec<u8>> = (0..k)
                .map(|i| pattern(len, (k * 7919 + i) as u32))
                .collect();
            // Reference: the crate's own `ReedSolomonEncoder` (its default engine).
            let want = reed_solomon_simd::encode(k, m, &shards).unwrap();
            // Lose up to m shards: data only, parity and data mixed, spread.
            let lost_data: Vec<usize> = (0..k).step_by((k / m.min(k)).max(1)).take(m).collect();
            let mixed_data: Vec<usize> = (0..k).rev().step_by(3).take(m / 2 + 1).collect();
            let mixed_data: Vec<usize> = mixed_data.into_iter().take(m).collect();
            let mixed_parity: Vec<usize> = (0..m).step_by(2).take(m - mixed_data.len()).collect();
            for e in &engines {
                let got = encode_with(e.clone(), &shards, m);
                assert!(got == want, "encode {:?} k {k} m {m} len {len}", e.kind());
                for (ld, lp) in [(&lost_data, &Vec::new()), (&mixed_data, &mixed_parity)] {
                    let rebuilt = decode_with(e.clone(), &shards, &want, ld, lp);
                    for (r, &i) in rebuilt.iter().zip(ld.iter()) {
                        assert!(
                            r == &shards[i],
                            "decode {:?} k {k} m {m} len {len} shard {i}",
                            e.kind()
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn transform_known_answer_on_every_engine() {
        // The same vector as wide.rs `transform_known_answer`: 3 data shards of 128 bytes (pattern
        // seeds 100..103), 2 parity shards.
        let shards: Vec<Vec<u8>> = (0..3).map(|i| pattern(128, 100 + i)).collect();
        for e in engines() {
            let mut cat = Vec::new();
            for p in encode_with(e.clone(), &shards, 2) {
                cat.extend_from_slice(&p);
            }
            assert_eq!(
                to_hex(&sha256(&cat)),
                "42d3a5c9d264e31b749ec1798de9fec7ed329ea66b8319db3c9addf1da5dd987",
                "{:?}",
                e.kind()
            );
        }
    }

    #[test]
    fn the_cap_selects_the_engine() {
        #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
        assert_eq!(EngineKind::detect_at(Level::Portable), EngineKind::Portable);
        assert_ne!(EngineKind::detect_at(Level::Avx2), EngineKind::Avx512Gfni);
        assert_eq!(
            EngineKind::detect_at(Level::Avx512) == EngineKind::Avx512Gfni,
            gfni_supported() && Level::detected() == Level::Avx512
        );
        assert_eq!(WideEngine::detect().kind(), EngineKind::detect());
    }
}

#[cfg(all(test, unix))]
#[allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::unwrap_used,
    clippy::indexing_slicing
)]
mod measure {
    use super::*;

    /// Transforms and products that do nothing: what encode and decode cost outside the engine
    /// (copies in and out, the rate code's XORs, the decoder's `eval_poly`). Wrong results.
    #[derive(Clone, Copy)]
    struct Null;

    impl Engine for Null {
        fn fft(&self, _: &mut ShardsRefMut, _: usize, _: usize, _: usize, _: usize) {}
        fn ifft(&self, _: &mut ShardsRefMut, _: usize, _: usize, _: usize, _: usize) {}
        fn mul(&self, _: &mut [[u8; 64]], _: GfElement) {}
        fn eval_poly(erasures: &mut [GfElement; GF_ORDER], truncated_size: usize) {
            WideEngine::eval_poly(erasures, truncated_size);
        }
    }

    /// This thread's CPU seconds (the machine is shared: wall time wanders with the load).
    fn cpu() -> f64 {
        let mut t = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `t` is a valid, writable timespec; the clock id is a constant libc knows.
        let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &raw mut t) };
        assert_eq!(rc, 0);
        t.tv_sec as f64 + t.tv_nsec as f64 * 1e-9
    }

    /// Encode and decode CPU seconds of `reps` / `dreps` calls on `engine`.
    fn time<E: Engine + Clone>(
        engine: &E,
        data: &[Vec<u8>],
        parity: &[Vec<u8>],
        m: usize,
        lost: &[usize],
        reps: usize,
        dreps: usize,
    ) -> (f64, f64) {
        let (k, w) = (data.len(), data[0].len());
        let mut enc = DefaultRateEncoder::new(k, m, w, engine.clone(), None).unwrap();
        let t0 = cpu();
        for _ in 0..reps {
            for d in data {
                enc.add_original_shard(d).unwrap();
            }
            let r = enc.encode().unwrap();
            std::hint::black_box(r.recovery(0));
        }
        let es = cpu() - t0;
        let mut dec = DefaultRateDecoder::new(k, m, w, engine.clone(), None).unwrap();
        let t0 = cpu();
        for _ in 0..dreps {
            for (i, d) in data.iter().enumerate() {
                if lost.binary_search(&i).is_err() {
                    dec.add_original_shard(i, d).unwrap();
                }
            }
            for (i, p) in parity.iter().enumerate() {
                dec.add_recovery_shard(i, p).unwrap();
            }
            let r = dec.decode().unwrap();
            std::hint::black_box(r.restored_original(lost[0]));
        }
        (es, cpu() - t0)
    }

    /// Not a test: `cargo test --release -p tensorvault-core measure_wide_engines -- --ignored
    /// --nocapture` times encode and decode (m lost data shards) in thread CPU time (GB of data per
    /// CPU-second) on one thread, 4 KiB slices, for the
    /// GFNI and AVX2 engines (those this CPU runs) and a null engine (the cost outside the engine),
    /// interleaved, three rounds.
    #[test]
    #[ignore = "a measurement, run by hand"]
    fn measure_wide_engines() {
        let kinds: Vec<EngineKind> = [EngineKind::Avx512Gfni, EngineKind::Avx2]
            .into_iter()
            .filter(|&k| WideEngine::of(k).kind() == k)
            .collect();
        // The decoder's fixed cost per call (the same on every engine): the erasure locator, two
        // Walsh transforms over the whole field.
        let mut erasures = vec![0 as GfElement; GF_ORDER];
        let n = 50u32;
        let t0 = cpu();
        for r in 0..n {
            let arr: &mut [GfElement; GF_ORDER] = (&mut erasures[..]).try_into().unwrap();
            arr.fill(0);
            for i in (0..1152).step_by(9) {
                arr[i] = 1;
            }
            arr[r as usize] = 1;
            WideEngine::eval_poly(arr, 2048);
            std::hint::black_box(&arr);
        }
        eprintln!(
            "eval_poly (once per decode call): {:.2} CPU-ms",
            (cpu() - t0) * 1e3 / f64::from(n)
        );
        for (k, m) in [(1024usize, 128usize), (64, 8)] {
            let w = 4096usize;
            let data: Vec<Vec<u8>> = (0..k).map(|i| vec![(i % 251) as u8; w]).collect();
            let reps = ((512usize << 20) / (k * w)).max(1);
            let dreps = reps.div_ceil(4);
            let lost: Vec<usize> = (0..k).step_by(k / m).take(m).collect();
            let parity: Vec<Vec<u8>> = reed_solomon_simd::encode(k, m, &data).unwrap();
            let gb = |reps: usize, s: f64| (reps * k * w) as f64 / s / 1e9;
            for round in 0..3 {
                for &kind in &kinds {
                    let (es, ds) =
                        time(&WideEngine::of(kind), &data, &parity, m, &lost, reps, dreps);
                    eprintln!(
                        "round {round} k={k} m={m} w={w} {:>11}: encode {:.3}, decode ({m} lost) {:.3} GB per CPU-s",
                        kind.name(),
                        gb(reps, es),
                        gb(dreps, ds),
                    );
                }
                let (es, ds) = time(&Null, &data, &parity, m, &lost, reps, dreps);
                eprintln!(
                    "round {round} k={k} m={m} w={w} {:>11}: encode {:.3}, decode ({m} lost) {:.3} GB per CPU-s",
                    "null",
                    gb(reps, es),
                    gb(dreps, ds),
                );
            }
        }
    }
}
