//! GF(2^8) multiply-accumulate ("dot product") kernels: `out[j] = Σ_i c[j][i] · in[i]` over byte
//! columns, the inner loop of encode and reconstruct.
//!
//! Four implementations give identical bytes (tested), chosen at run time:
//! - AVX-512 + GFNI: each product is one `vgf2p8affineqb` with the coefficient's 8×8 bit matrix
//!   (`gf::AFFINE`), 64 bytes per step — the method of ISA-L's `*_avx512_gfni` kernels.
//! - AVX2 and SSSE3: the split-nibble PSHUFB method (each coefficient becomes two 16-entry tables, the
//!   low and high nibble of every input byte are looked up in parallel and `XORed`).
//! - Portable: the 64 KiB product table.
//!
//! The choice can be capped with the `TV_CPU` environment variable ([`crate::ecc::cpu`]).
//!
//! All compute up to four outputs per load of an input (the structure of ISA-L's
//! `gf_4vect_dot_prod`). With more than four outputs, columns are processed in tiles of [`TILE`] bytes
//! so one tile of every input stays in cache while each group of four outputs is computed.

use super::gf;
use crate::ecc::cpu::{self, Level};

/// Bytes per column tile: k inputs and up to four outputs of one tile stay in L1/L2.
pub const TILE: usize = 16 << 10;

/// Outputs computed together per pass over the inputs.
const GROUP: usize = 4;

/// A kernel implementation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kernel {
    /// 64 bytes per step with AVX-512 and GFNI `vgf2p8affineqb` (one instruction per product).
    Avx512Gfni,
    /// 32 bytes per step with AVX2 `vpshufb`.
    Avx2,
    /// 16 bytes per step with SSSE3 `pshufb`.
    Ssse3,
    /// Table lookups, any CPU.
    Portable,
}

impl Kernel {
    /// The fastest kernel this CPU supports (checked at run time), capped by `TV_CPU`
    /// ([`crate::ecc::cpu`]).
    #[must_use]
    pub fn detect() -> Self {
        Self::detect_at(cpu::level())
    }

    /// The fastest kernel this CPU supports at or below `level`.
    #[must_use]
    pub fn detect_at(level: Level) -> Self {
        [Self::Avx512Gfni, Self::Avx2, Self::Ssse3]
            .into_iter()
            .find(|k| k.runs_at(level))
            .unwrap_or(Self::Portable)
    }

    /// Every kernel this CPU can run under the `TV_CPU` cap, fastest first.
    #[must_use]
    pub fn available() -> Vec<Self> {
        Self::available_at(cpu::level())
    }

    /// Every kernel this CPU can run at or below `level`, fastest first.
    #[must_use]
    pub fn available_at(level: Level) -> Vec<Self> {
        [Self::Avx512Gfni, Self::Avx2, Self::Ssse3, Self::Portable]
            .into_iter()
            .filter(|k| k.runs_at(level))
            .collect()
    }

    /// The feature level the kernel needs.
    #[must_use]
    pub fn level(self) -> Level {
        match self {
            Self::Avx512Gfni => Level::Avx512,
            Self::Avx2 => Level::Avx2,
            Self::Ssse3 => Level::Ssse3,
            Self::Portable => Level::Portable,
        }
    }

    /// Whether this CPU runs the kernel and `level` allows it.
    fn runs_at(self, level: Level) -> bool {
        if self.level() > level {
            return false;
        }
        match self {
            #[cfg(target_arch = "x86_64")]
            Self::Avx512Gfni => has_avx512_gfni(),
            #[cfg(target_arch = "x86_64")]
            Self::Avx2 => std::arch::is_x86_feature_detected!("avx2"),
            #[cfg(target_arch = "x86_64")]
            Self::Ssse3 => std::arch::is_x86_feature_detected!("ssse3"),
            Self::Portable => true,
            #[cfg(not(target_arch = "x86_64"))]
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
            Self::Portable => "portable",
        }
    }

    /// The kernel named `name` (as [`Kernel::name`] spells it), supported here or not.
    #[must_use]
    pub fn parse(name: &str) -> Option<Self> {
        [Self::Avx512Gfni, Self::Avx2, Self::Ssse3, Self::Portable]
            .into_iter()
            .find(|k| k.name() == name)
    }

    /// Whether this CPU can run the kernel under the `TV_CPU` cap.
    #[must_use]
    pub fn is_supported(self) -> bool {
        self.runs_at(cpu::level())
    }
}

#[cfg(target_arch = "x86_64")]
fn has_avx512_gfni() -> bool {
    std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx512bw")
        && std::arch::is_x86_feature_detected!("gfni")
}

/// Why the kernel refused its arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShapeMismatch;

/// `outputs[j] = Σ_i coefs[j·k + i] · inputs[i]` for every byte column, with `k = inputs.len()`.
///
/// Every input and output must have the same length and `coefs.len()` must be `outputs.len() · k`;
/// otherwise nothing is written and [`ShapeMismatch`] is returned. An unsupported `kernel` falls back to
/// the portable one (same bytes).
pub fn dot_prod(
    kernel: Kernel,
    coefs: &[u8],
    inputs: &[&[u8]],
    outputs: &mut [&mut [u8]],
) -> Result<(), ShapeMismatch> {
    let k = inputs.len();
    let len = outputs
        .first()
        .map(|o| o.len())
        .or_else(|| inputs.first().map(|i| i.len()))
        .unwrap_or(0);
    if coefs.len() != outputs.len() * k
        || inputs.iter().any(|s| s.len() != len)
        || outputs.iter().any(|s| s.len() != len)
    {
        return Err(ShapeMismatch);
    }
    if outputs.is_empty() || len == 0 {
        return Ok(());
    }
    if k == 0 {
        for o in outputs.iter_mut() {
            o.fill(0);
        }
        return Ok(());
    }
    let kernel = if kernel.is_supported() {
        kernel
    } else {
        Kernel::Portable
    };
    // One group of outputs reads each input once: tiling would only restart the prefetch streams.
    // With several groups, tiles keep the inputs of one tile in cache across the groups.
    let tile = if outputs.len() <= GROUP { len } else { TILE };
    let mut start = 0;
    while start < len {
        let end = (start + tile).min(len);
        for (g, outs) in outputs.chunks_mut(GROUP).enumerate() {
            let c = coefs
                .get(g * GROUP * k..(g * GROUP + outs.len()) * k)
                .unwrap_or_default();
            group(kernel, c, inputs, outs, start, end);
        }
        start = end;
    }
    Ok(())
}

/// One tile `[start, end)` for up to [`GROUP`] outputs. Shapes were checked by [`dot_prod`].
fn group(
    kernel: Kernel,
    coefs: &[u8],
    inputs: &[&[u8]],
    outs: &mut [&mut [u8]],
    start: usize,
    end: usize,
) {
    let done = match kernel {
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx512Gfni => {
            let done = simd::gfni_group(coefs, inputs, outs, start, end);
            simd::avx2_group(coefs, inputs, outs, done, end)
        }
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx2 => simd::avx2_group(coefs, inputs, outs, start, end),
        #[cfg(target_arch = "x86_64")]
        Kernel::Ssse3 => simd::ssse3_group(coefs, inputs, outs, start, end),
        _ => start,
    };
    portable_group(coefs, inputs, outs, done, end);
}

/// The portable kernel over `[start, end)`.
fn portable_group(
    coefs: &[u8],
    inputs: &[&[u8]],
    outs: &mut [&mut [u8]],
    start: usize,
    end: usize,
) {
    if start >= end {
        return;
    }
    let k = inputs.len();
    for (j, out) in outs.iter_mut().enumerate() {
        let Some(dst) = out.get_mut(start..end) else {
            continue;
        };
        dst.fill(0);
        for (i, input) in inputs.iter().enumerate() {
            let c = coefs.get(j * k + i).copied().unwrap_or(0);
            let Some(src) = input.get(start..end) else {
                continue;
            };
            if c == 0 {
                continue;
            }
            let Some(row) = gf::MUL.get(usize::from(c)) else {
                continue;
            };
            for (d, &s) in dst.iter_mut().zip(src) {
                // INVARIANT: `row` has 256 entries and `s` is a u8.
                #[allow(clippy::indexing_slicing)]
                {
                    *d ^= row[usize::from(s)];
                }
            }
        }
    }
}

// `loadu`/`storeu` take unaligned pointers; the casts only change the pointee type.
#[cfg(target_arch = "x86_64")]
#[allow(clippy::cast_ptr_alignment)]
mod simd {
    use super::{gf, GROUP};
    use std::arch::x86_64::{
        __m128i, __m256i, _mm256_and_si256, _mm256_broadcastsi128_si256, _mm256_loadu_si256,
        _mm256_set1_epi8, _mm256_setzero_si256, _mm256_shuffle_epi8, _mm256_srli_epi64,
        _mm256_storeu_si256, _mm256_xor_si256, _mm_and_si128, _mm_loadu_si128, _mm_set1_epi8,
        _mm_setzero_si128, _mm_shuffle_epi8, _mm_srli_epi64, _mm_storeu_si128, _mm_xor_si128,
    };
    use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
    /// How far ahead of the current position each input stream is prefetched.
    const PREFETCH: usize = 1024;
    use std::arch::x86_64::{
        __m512i, _mm512_gf2p8affine_epi64_epi8, _mm512_loadu_si512, _mm512_set1_epi64,
        _mm512_setzero_si512, _mm512_storeu_si512, _mm512_xor_si512,
    };

    /// Pointers to the split-nibble tables of each coefficient, `[j·k + i]`.
    fn tables(coefs: &[u8]) -> Vec<*const u8> {
        coefs
            .iter()
            .map(|&c| {
                gf::NIBBLE
                    .get(usize::from(c))
                    .map_or(std::ptr::null(), |t| t.as_ptr())
            })
            .collect()
    }

    /// AVX2 over whole 32-byte steps of `[start, end)`; returns where it stopped.
    pub(super) fn avx2_group(
        coefs: &[u8],
        inputs: &[&[u8]],
        outs: &mut [&mut [u8]],
        start: usize,
        end: usize,
    ) -> usize {
        let steps = (end - start) / 32;
        let tabs = tables(coefs);
        let ins: Vec<*const u8> = inputs.iter().map(|s| s.as_ptr()).collect();
        let mut o: [*mut u8; GROUP] = [std::ptr::null_mut(); GROUP];
        for (p, s) in o.iter_mut().zip(outs.iter_mut()) {
            *p = s.as_mut_ptr();
        }
        // SAFETY: the caller (`dot_prod`) checked that every input and output holds at least `end`
        // bytes, `coefs` has `outs.len() · k` entries (so `tabs` too, each a 32-byte table), and the
        // CPU supports AVX2 (`Kernel::is_supported`). Steps stay within `[start, start + 32·steps)`.
        unsafe {
            match outs.len() {
                1 => avx2::<1>(&tabs, &ins, &o, start, steps),
                2 => avx2::<2>(&tabs, &ins, &o, start, steps),
                3 => avx2::<3>(&tabs, &ins, &o, start, steps),
                4 => avx2::<4>(&tabs, &ins, &o, start, steps),
                _ => return start,
            }
        }
        start + steps * 32
    }

    #[target_feature(enable = "avx2")]
    unsafe fn avx2<const N: usize>(
        tabs: &[*const u8],
        ins: &[*const u8],
        outs: &[*mut u8; GROUP],
        start: usize,
        steps: usize,
    ) {
        let k = ins.len();
        let mask = _mm256_set1_epi8(0x0f);
        // Two vectors (64 bytes) per iteration so each table load serves two shuffles.
        let pairs = steps / 2;
        for pair in 0..pairs {
            let pos = start + pair * 64;
            let mut acc0 = [_mm256_setzero_si256(); N];
            let mut acc1 = [_mm256_setzero_si256(); N];
            for (i, &inp) in ins.iter().enumerate() {
                // SAFETY: see `avx2_group`; `pos + 64 <= start + 32 * steps`. The prefetch address may
                // lie past the end: a prefetch never faults.
                unsafe {
                    // A single output (a one-chunk rebuild) is bound by how fast the k input streams
                    // arrive: prefetching 1 KiB ahead measured +20 % there, but −16 % with 4 outputs,
                    // whose extra work already hides the latency.
                    if N == 1 {
                        _mm_prefetch::<_MM_HINT_T0>(inp.wrapping_add(pos + PREFETCH).cast::<i8>());
                    }
                    let v0 = _mm256_loadu_si256(inp.add(pos).cast::<__m256i>());
                    let v1 = _mm256_loadu_si256(inp.add(pos + 32).cast::<__m256i>());
                    let lo0 = _mm256_and_si256(v0, mask);
                    let hi0 = _mm256_and_si256(_mm256_srli_epi64::<4>(v0), mask);
                    let lo1 = _mm256_and_si256(v1, mask);
                    let hi1 = _mm256_and_si256(_mm256_srli_epi64::<4>(v1), mask);
                    for j in 0..N {
                        let t = *tabs.get_unchecked(j * k + i);
                        let tlo = _mm256_broadcastsi128_si256(_mm_loadu_si128(t.cast::<__m128i>()));
                        let thi = _mm256_broadcastsi128_si256(_mm_loadu_si128(
                            t.add(16).cast::<__m128i>(),
                        ));
                        let a0 = acc0.get_unchecked_mut(j);
                        *a0 = _mm256_xor_si256(
                            *a0,
                            _mm256_xor_si256(
                                _mm256_shuffle_epi8(tlo, lo0),
                                _mm256_shuffle_epi8(thi, hi0),
                            ),
                        );
                        let a1 = acc1.get_unchecked_mut(j);
                        *a1 = _mm256_xor_si256(
                            *a1,
                            _mm256_xor_si256(
                                _mm256_shuffle_epi8(tlo, lo1),
                                _mm256_shuffle_epi8(thi, hi1),
                            ),
                        );
                    }
                }
            }
            for j in 0..N {
                // SAFETY: see `avx2_group`.
                unsafe {
                    let o = outs.get_unchecked(j).add(pos);
                    _mm256_storeu_si256(o.cast::<__m256i>(), *acc0.get_unchecked(j));
                    _mm256_storeu_si256(o.add(32).cast::<__m256i>(), *acc1.get_unchecked(j));
                }
            }
        }
        for step in pairs * 2..steps {
            let pos = start + step * 32;
            let mut acc = [_mm256_setzero_si256(); N];
            for (i, &inp) in ins.iter().enumerate() {
                // SAFETY: see `avx2_group`.
                unsafe {
                    let v = _mm256_loadu_si256(inp.add(pos).cast::<__m256i>());
                    let lo = _mm256_and_si256(v, mask);
                    let hi = _mm256_and_si256(_mm256_srli_epi64::<4>(v), mask);
                    for (j, a) in acc.iter_mut().enumerate() {
                        let t = *tabs.get_unchecked(j * k + i);
                        let tlo = _mm256_broadcastsi128_si256(_mm_loadu_si128(t.cast::<__m128i>()));
                        let thi = _mm256_broadcastsi128_si256(_mm_loadu_si128(
                            t.add(16).cast::<__m128i>(),
                        ));
                        *a = _mm256_xor_si256(
                            *a,
                            _mm256_xor_si256(
                                _mm256_shuffle_epi8(tlo, lo),
                                _mm256_shuffle_epi8(thi, hi),
                            ),
                        );
                    }
                }
            }
            for (j, a) in acc.iter().enumerate() {
                // SAFETY: see `avx2_group`.
                unsafe {
                    _mm256_storeu_si256(outs.get_unchecked(j).add(pos).cast::<__m256i>(), *a);
                }
            }
        }
    }

    /// AVX-512 + GFNI over whole 64-byte steps of `[start, end)`; returns where it stopped.
    pub(super) fn gfni_group(
        coefs: &[u8],
        inputs: &[&[u8]],
        outs: &mut [&mut [u8]],
        start: usize,
        end: usize,
    ) -> usize {
        let steps = (end - start) / 64;
        let mats: Vec<u64> = coefs
            .iter()
            .map(|&c| gf::AFFINE.get(usize::from(c)).copied().unwrap_or(0))
            .collect();
        let ins: Vec<*const u8> = inputs.iter().map(|s| s.as_ptr()).collect();
        let mut o: [*mut u8; GROUP] = [std::ptr::null_mut(); GROUP];
        for (p, s) in o.iter_mut().zip(outs.iter_mut()) {
            *p = s.as_mut_ptr();
        }
        // SAFETY: as in `avx2_group`; `mats` has `outs.len() · k` entries; AVX-512F/BW and GFNI support
        // was checked by `Kernel::is_supported`.
        unsafe {
            match outs.len() {
                1 => gfni::<1>(&mats, &ins, &o, start, steps),
                2 => gfni::<2>(&mats, &ins, &o, start, steps),
                3 => gfni::<3>(&mats, &ins, &o, start, steps),
                4 => gfni::<4>(&mats, &ins, &o, start, steps),
                _ => return start,
            }
        }
        start + steps * 64
    }

    #[target_feature(enable = "avx512f,avx512bw,gfni")]
    unsafe fn gfni<const N: usize>(
        mats: &[u64],
        ins: &[*const u8],
        outs: &[*mut u8; GROUP],
        start: usize,
        steps: usize,
    ) {
        let k = ins.len();
        for step in 0..steps {
            let pos = start + step * 64;
            let mut acc = [_mm512_setzero_si512(); N];
            for (i, &inp) in ins.iter().enumerate() {
                // SAFETY: see `gfni_group`.
                unsafe {
                    let v = _mm512_loadu_si512(inp.add(pos).cast::<__m512i>());
                    for (j, a) in acc.iter_mut().enumerate() {
                        #[allow(clippy::cast_possible_wrap)] // bit pattern, not a number
                        let m = _mm512_set1_epi64(*mats.get_unchecked(j * k + i) as i64);
                        *a = _mm512_xor_si512(*a, _mm512_gf2p8affine_epi64_epi8::<0>(v, m));
                    }
                }
            }
            for (j, a) in acc.iter().enumerate() {
                // SAFETY: see `gfni_group`.
                unsafe {
                    _mm512_storeu_si512(outs.get_unchecked(j).add(pos).cast::<__m512i>(), *a);
                }
            }
        }
    }

    /// SSSE3 over whole 16-byte steps of `[start, end)`; returns where it stopped.
    pub(super) fn ssse3_group(
        coefs: &[u8],
        inputs: &[&[u8]],
        outs: &mut [&mut [u8]],
        start: usize,
        end: usize,
    ) -> usize {
        let steps = (end - start) / 16;
        let tabs = tables(coefs);
        let ins: Vec<*const u8> = inputs.iter().map(|s| s.as_ptr()).collect();
        let mut o: [*mut u8; GROUP] = [std::ptr::null_mut(); GROUP];
        for (p, s) in o.iter_mut().zip(outs.iter_mut()) {
            *p = s.as_mut_ptr();
        }
        // SAFETY: as in `avx2_group`, with SSSE3 support checked by `Kernel::is_supported`.
        unsafe {
            match outs.len() {
                1 => ssse3::<1>(&tabs, &ins, &o, start, steps),
                2 => ssse3::<2>(&tabs, &ins, &o, start, steps),
                3 => ssse3::<3>(&tabs, &ins, &o, start, steps),
                4 => ssse3::<4>(&tabs, &ins, &o, start, steps),
                _ => return start,
            }
        }
        start + steps * 16
    }

    #[target_feature(enable = "ssse3")]
    unsafe fn ssse3<const N: usize>(
        tabs: &[*const u8],
        ins: &[*const u8],
        outs: &[*mut u8; GROUP],
        start: usize,
        steps: usize,
    ) {
        let k = ins.len();
        let mask = _mm_set1_epi8(0x0f);
        for step in 0..steps {
            let pos = start + step * 16;
            let mut acc = [_mm_setzero_si128(); N];
            for (i, &inp) in ins.iter().enumerate() {
                // SAFETY: see `ssse3_group`.
                unsafe {
                    let v = _mm_loadu_si128(inp.add(pos).cast::<__m128i>());
                    let lo = _mm_and_si128(v, mask);
                    let hi = _mm_and_si128(_mm_srli_epi64::<4>(v), mask);
                    for (j, a) in acc.iter_mut().enumerate() {
                        let t = *tabs.get_unchecked(j * k + i);
                        let tlo = _mm_loadu_si128(t.cast::<__m128i>());
                        let thi = _mm_loadu_si128(t.add(16).cast::<__m128i>());
                        *a = _mm_xor_si128(
                            *a,
                            _mm_xor_si128(_mm_shuffle_epi8(tlo, lo), _mm_shuffle_epi8(thi, hi)),
                        );
                    }
                }
            }
            for (j, a) in acc.iter().enumerate() {
                // SAFETY: see `ssse3_group`.
                unsafe {
                    _mm_storeu_si128(outs.get_unchecked(j).add(pos).cast::<__m128i>(), *a);
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::cast_possible_truncation, clippy::needless_range_loop)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn reference(coefs: &[u8], inputs: &[Vec<u8>], n_out: usize, len: usize) -> Vec<Vec<u8>> {
        let k = inputs.len();
        (0..n_out)
            .map(|j| {
                (0..len)
                    .map(|b| {
                        (0..k).fold(0u8, |acc, i| acc ^ gf::mul(coefs[j * k + i], inputs[i][b]))
                    })
                    .collect()
            })
            .collect()
    }

    fn run(
        kernel: Kernel,
        coefs: &[u8],
        inputs: &[Vec<u8>],
        n_out: usize,
        len: usize,
    ) -> Vec<Vec<u8>> {
        let ins: Vec<&[u8]> = inputs.iter().map(Vec::as_slice).collect();
        let mut outs = vec![vec![0xeeu8; len]; n_out];
        let mut o: Vec<&mut [u8]> = outs.iter_mut().map(Vec::as_mut_slice).collect();
        dot_prod(kernel, coefs, &ins, &mut o).unwrap();
        outs
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn every_kernel_gives_the_reference_bytes(
            k in 1usize..12,
            n_out in 1usize..9,
            len in 0usize..200,
            seed in any::<u64>(),
        ) {
            let mut x = seed | 1;
            let mut next = move || { x ^= x << 13; x ^= x >> 7; x ^= x << 17; (x >> 24) as u8 };
            let coefs: Vec<u8> = (0..k * n_out).map(|_| next()).collect();
            let inputs: Vec<Vec<u8>> = (0..k).map(|_| (0..len).map(|_| next()).collect()).collect();
            let want = reference(&coefs, &inputs, n_out, len);
            for kernel in Kernel::available() {
                prop_assert_eq!(&run(kernel, &coefs, &inputs, n_out, len), &want, "{}", kernel.name());
            }
        }
    }

    #[test]
    fn kernels_agree_across_tiles_and_tails() {
        for n_out in [1, 2, 6] {
            kernels_agree_for(n_out);
        }
    }

    fn kernels_agree_for(n_out: usize) {
        // Longer than a tile, not a multiple of 32: exercises tiling and the scalar tail.
        let len = TILE * 2 + 45;
        let k = 10;
        let coefs: Vec<u8> = (0..k * n_out).map(|i| (i * 37 + 11) as u8).collect();
        let inputs: Vec<Vec<u8>> = (0..k)
            .map(|i| {
                (0..len)
                    .map(|b| ((b * 131 + i * 7) ^ (b >> 8)) as u8)
                    .collect()
            })
            .collect();
        let want = run(Kernel::Portable, &coefs, &inputs, n_out, len);
        assert_eq!(want, reference(&coefs, &inputs, n_out, len));
        for kernel in Kernel::available() {
            assert_eq!(
                run(kernel, &coefs, &inputs, n_out, len),
                want,
                "{}",
                kernel.name()
            );
        }
    }

    #[test]
    fn every_level_selects_a_kernel_it_allows_with_the_same_bytes() {
        let (k, n_out, len) = (10, 4, TILE + 77);
        let coefs: Vec<u8> = (0..k * n_out).map(|i| (i * 53 + 3) as u8).collect();
        let inputs: Vec<Vec<u8>> = (0..k)
            .map(|i| {
                (0..len)
                    .map(|b| ((b * 29 + i * 11) ^ (b >> 7)) as u8)
                    .collect()
            })
            .collect();
        let want = reference(&coefs, &inputs, n_out, len);
        for level in Level::ALL {
            let kernel = Kernel::detect_at(level);
            assert!(
                kernel.level() <= level,
                "{} at {}",
                kernel.name(),
                level.name()
            );
            assert!(Kernel::available_at(level)
                .iter()
                .all(|k| k.level() <= level));
            assert_eq!(
                run(kernel, &coefs, &inputs, n_out, len),
                want,
                "{}",
                level.name()
            );
        }
        assert_eq!(Kernel::detect_at(Level::Portable), Kernel::Portable);
    }

    #[test]
    fn shape_mismatch_writes_nothing() {
        let a = vec![1u8; 10];
        let b = vec![1u8; 11];
        let mut out = vec![7u8; 10];
        let r = dot_prod(Kernel::detect(), &[1, 2], &[&a, &b], &mut [&mut out]);
        assert_eq!(r, Err(ShapeMismatch));
        assert_eq!(out, vec![7u8; 10]);
        let r = dot_prod(Kernel::detect(), &[1], &[&a, &a], &mut [&mut out]);
        assert_eq!(r, Err(ShapeMismatch));
    }

    #[test]
    fn this_machine_has_a_simd_kernel() {
        // The machine the project targets has AVX2; make sure detection finds it there.
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            assert!(matches!(
                Kernel::detect(),
                Kernel::Avx2 | Kernel::Avx512Gfni
            ));
        }
    }
}
