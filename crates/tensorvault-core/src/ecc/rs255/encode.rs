//! Systematic encoding: the parity of one block is `m(x) * x^N mod g(x)`.
//!
//! The reference is the LFSR of `reedsolo` ([`lfsr_parity`]), one byte per step. The fast kernels
//! advance the LFSR eight bytes per step ("slicing-by-8", as fast CRCs do): with the remainder `r` (N
//! bytes, `r[0]` the highest-degree coefficient) and the next data bytes `d_0..d_7`, the new remainder is
//! `(r shifted by 8 bytes) XOR sum_j T_j[d_j ^ r[j]]`, where `T_j[u] = u * (x^(N+7-j) mod g)` is a
//! whole `N`-byte row looked up by byte value (`8 × 256` rows: 64 KiB for rs(32), L2-resident). A GF
//! multiplication of a row by a byte is thus one vector load, and a step costs 8 loads and 8 XORs for 8
//! data bytes, whatever `N`'s 32-byte lane count. (Split-nibble tables, the PSHUFB formulation, need
//! two lookups per byte; measured here on rows, they were about 1.6× slower than whole-byte rows, see
//! docs/benchmarks-rs.md.) On x86-64 with AVX2 (runtime detection) the rows are 32-byte vectors, the
//! shift is `vperm2i128` + `vpalignr`, and four blocks are interleaved to hide the step's latency; the
//! portable path (64-bit words) gives identical bytes. `N < 8` uses the one-byte step only.

use std::sync::OnceLock;

use super::gf;
use crate::ecc::cpu::{self, Level};

/// One 32-byte, 32-aligned lane of a table row.
#[derive(Clone, Copy, Default)]
#[repr(C, align(32))]
pub(super) struct Lane(pub [u64; 4]);

/// The largest number of 32-byte lanes a row can have (N ≤ 254 rounds up to 256 bytes).
pub(super) const MAX_LANES: usize = 8;

/// Bytes per wide step.
const SLICE: usize = 8;
/// Table entries per slice position (one per byte value).
const ENTRIES: usize = 256;

/// Encoding tables of one `rs(N)`.
pub(super) struct Encoder {
    /// Parity bytes per block.
    n: usize,
    /// Data bytes per full block (`255 - n`).
    k: usize,
    /// Lanes per row (`ceil(n / 32)`).
    w: usize,
    /// The generator polynomial, highest degree first, `gen[0] == 1`, `n + 1` coefficients.
    gen: Vec<u8>,
    /// `SLICE * 256` rows of `w` lanes: row `j * 256 + e` is `e * R_j`, with `R_j = x^(n + SLICE - 1 -
    /// j) mod g`; bytes past `n` are zero.
    rows: Vec<Lane>,
    /// Which AVX2 kernel is faster on this CPU for this `n` (measured on first use).
    /// (Unused off x86-64, like the AVX2 kernels.)
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    avx2_choice: OnceLock<Avx2Kernel>,
}

/// The two AVX2 kernels. Which one wins depends on the microarchitecture: the interleaved kernel
/// is bound by `vpshufb` throughput (two per product), the slicing-by-8 kernel by the latency of its
/// 64 KiB row table (L1-resident on CPUs with 48 KiB L1D or more, L2 otherwise).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))] // the AVX2 kernels are x86-64 only
pub(super) enum Avx2Kernel {
    /// Many blocks at once, split-nibble products ([`super::interleave`]).
    Interleaved,
    /// One block per LFSR, eight bytes per step from whole-byte row tables.
    Sliced,
}

impl Avx2Kernel {
    /// The kernel's name as reported (`avx2-interleaved`, `avx2-sliced`).
    #[must_use]
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))] // the AVX2 kernels are x86-64 only
    pub(super) fn name(self) -> &'static str {
        match self {
            Self::Interleaved => "avx2-interleaved",
            Self::Sliced => "avx2-sliced",
        }
    }
}

impl Encoder {
    /// Tables for `rs(n)`; `n` is already validated to `1..=254`.
    pub(super) fn new(n: usize) -> Self {
        let k = 255 - n;
        let w = n.div_ceil(32);
        let gen = generator(n);
        let mut rows = vec![Lane::default(); SLICE * ENTRIES * w];
        // R_{SLICE-1} = x^n mod g is the parity of the message [1]; each earlier j is one more shift.
        let mut r = vec![0u8; n];
        lfsr_step(&gen, &mut r, 1);
        let mut bytes = vec![0u8; w * 32];
        for j in (0..SLICE).rev() {
            for e in 0..ENTRIES {
                #[allow(clippy::cast_possible_truncation)] // e < 256
                let scale = e as u8;
                bytes.fill(0);
                for (dst, &src) in bytes.iter_mut().zip(&r) {
                    *dst = gf::mul(scale, src);
                }
                let base = (j * ENTRIES + e) * w;
                for (lane, chunk) in rows
                    .iter_mut()
                    .skip(base)
                    .take(w)
                    .zip(bytes.chunks_exact(32))
                {
                    for (word, b) in lane.0.iter_mut().zip(chunk.chunks_exact(8)) {
                        let mut le = [0u8; 8];
                        le.copy_from_slice(b);
                        *word = u64::from_le_bytes(le);
                    }
                }
            }
            lfsr_step(&gen, &mut r, 0);
        }
        Self {
            n,
            k,
            w,
            gen,
            rows,
            avx2_choice: OnceLock::new(),
        }
    }

    /// The generator polynomial (highest degree first).
    pub(super) fn generator(&self) -> &[u8] {
        &self.gen
    }

    /// Parity of consecutive blocks: `data` holds `parity.len() / n` blocks of `k` bytes, except that
    /// the last may be shorter (but not empty). Uses the fastest kernel this CPU supports under the
    /// `TV_CPU` cap ([`crate::ecc::cpu`]).
    pub(super) fn encode_blocks(&self, data: &[u8], parity: &mut [u8]) {
        self.encode_blocks_at(cpu::level(), data, parity);
    }

    /// As [`Encoder::encode_blocks`] with the fastest kernel at or below `level` (identical bytes at
    /// every level).
    pub(super) fn encode_blocks_at(&self, level: Level, data: &[u8], parity: &mut [u8]) {
        #[cfg(target_arch = "x86_64")]
        {
            if level >= Level::Avx512 && gfni_available() {
                // SAFETY: AVX-512 F/BW and GFNI are present (checked at run time just above).
                unsafe { self.encode_blocks_gfni(data, parity) };
                return;
            }
            if level >= Level::Avx2 && avx2_available() {
                // SAFETY: AVX2 is present (checked at run time just above).
                unsafe { self.encode_blocks_avx2(data, parity) };
                return;
            }
        }
        let _ = level;
        self.encode_blocks_portable(data, parity);
    }

    /// Portable kernel (also the reference for the vector kernel in tests).
    pub(super) fn encode_blocks_portable(&self, data: &[u8], parity: &mut [u8]) {
        let words = 4 * self.w;
        let row = ENTRIES * self.w;
        let wide = self.n >= SLICE;
        let last = self.rows.get((SLICE - 1) * row..).unwrap_or_default();
        for (block, out) in data.chunks(self.k).zip(parity.chunks_exact_mut(self.n)) {
            let mut st = [0u64; 4 * MAX_LANES];
            let st = st.get_mut(..words).unwrap_or_default();
            let mut rest = block;
            if wide {
                let mut chunks = block.chunks_exact(SLICE);
                for c in &mut chunks {
                    let mut le = [0u8; 8];
                    le.copy_from_slice(c);
                    let u = u64::from_le_bytes(le) ^ st.first().copied().unwrap_or(0);
                    st.copy_within(1.., 0);
                    if let Some(l) = st.last_mut() {
                        *l = 0;
                    }
                    for (j, table) in self.rows.chunks_exact(row).enumerate() {
                        let b = (u >> (8 * j)) & 0xff;
                        #[allow(clippy::cast_possible_truncation)] // b < 256
                        let b = b as usize;
                        xor_row(st, table, b, self.w);
                    }
                }
                rest = chunks.remainder();
            }
            for &d in rest {
                #[allow(clippy::cast_possible_truncation)] // low byte
                let u = usize::from(d ^ (st.first().copied().unwrap_or(0) as u8));
                for i in 0..words {
                    let next = st.get(i + 1).copied().unwrap_or(0);
                    if let Some(x) = st.get_mut(i) {
                        *x = (*x >> 8) | (next << 56);
                    }
                }
                xor_row(st, last, u, self.w);
            }
            let bytes = st.iter().flat_map(|w| w.to_le_bytes());
            for (o, b) in out.iter_mut().zip(bytes) {
                *o = b;
            }
        }
    }

    /// AVX2: the faster of the two AVX2 kernels for this CPU and `n` ([`Encoder::best_avx2`]);
    /// with the interleaved one, whole groups of 64 blocks go through it and the rest through the
    /// slicing-by-8 kernel.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn encode_blocks_avx2(&self, data: &[u8], parity: &mut [u8]) {
        // SAFETY: AVX2 is enabled for this function (and so present).
        unsafe { self.encode_blocks_avx2_with(self.best_avx2(), data, parity) };
    }

    /// As [`Encoder::encode_blocks_avx2`] with a chosen AVX2 kernel.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn encode_blocks_avx2_with(
        &self,
        kernel: Avx2Kernel,
        data: &[u8],
        parity: &mut [u8],
    ) {
        let done = match kernel {
            // SAFETY: AVX2 is enabled for this function.
            Avx2Kernel::Interleaved => unsafe { self.interleaved_avx2(data, parity) },
            Avx2Kernel::Sliced => 0,
        };
        let data = data.get(done * self.k..).unwrap_or_default();
        let parity = parity.get_mut(done * self.n..).unwrap_or_default();
        // SAFETY: as above.
        unsafe { self.encode_blocks_sliced_avx2(data, parity) };
    }

    /// The faster AVX2 kernel for this `n` on this CPU: both are timed once on 256 blocks (best of
    /// seven runs each, interleaved) the first time an AVX2 encode runs. Both give identical bytes, so the choice
    /// only affects speed.
    #[cfg(target_arch = "x86_64")]
    pub(super) fn best_avx2(&self) -> Avx2Kernel {
        *self.avx2_choice.get_or_init(|| {
            if !avx2_available() || self.k < 16 || self.n < 2 {
                return Avx2Kernel::Sliced;
            }
            let blocks = 256;
            let data: Vec<u8> = (0..blocks * self.k)
                .map(|i| {
                    #[allow(clippy::cast_possible_truncation)] // a byte pattern
                    let b = (i.wrapping_mul(2_654_435_761) >> 13) as u8;
                    b
                })
                .collect();
            let mut parity = vec![0u8; blocks * self.n];
            let mut best = [std::time::Duration::MAX; 2];
            for _ in 0..7 {
                for (slot, kernel) in best
                    .iter_mut()
                    .zip([Avx2Kernel::Interleaved, Avx2Kernel::Sliced])
                {
                    let t = std::time::Instant::now();
                    // SAFETY: AVX2 is present (checked above).
                    unsafe { self.encode_blocks_avx2_with(kernel, &data, &mut parity) };
                    *slot = (*slot).min(t.elapsed());
                }
            }
            if best[0] <= best[1] {
                Avx2Kernel::Interleaved
            } else {
                Avx2Kernel::Sliced
            }
        })
    }

    /// The kernel [`Encoder::encode_blocks_at`] uses at `level`, with the AVX2 variant
    /// (`avx512-gfni`, `avx2-interleaved`, `avx2-sliced`, `portable`).
    #[cfg_attr(not(target_arch = "x86_64"), allow(clippy::unused_self))] // used by the AVX2 choice
    pub(super) fn kernel_at(&self, level: Level) -> &'static str {
        #[cfg(target_arch = "x86_64")]
        {
            if level >= Level::Avx512 && gfni_available() {
                return "avx512-gfni";
            }
            if level >= Level::Avx2 && avx2_available() {
                return self.best_avx2().name();
            }
        }
        let _ = level;
        "portable"
    }

    /// AVX-512 + GFNI: whole groups of 64 blocks interleaved, the rest as on AVX2.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx512bw,gfni,avx2")]
    unsafe fn encode_blocks_gfni(&self, data: &[u8], parity: &mut [u8]) {
        // SAFETY: the features are enabled for this function.
        let done = unsafe { self.interleaved_gfni(data, parity) };
        let data = data.get(done * self.k..).unwrap_or_default();
        let parity = parity.get_mut(done * self.n..).unwrap_or_default();
        // SAFETY: as above (AVX2 is implied by the checks of `gfni_available`).
        unsafe { self.encode_blocks_avx2(data, parity) };
    }

    /// Groups of 32 full blocks through the interleaved AVX2 kernel; returns the blocks done.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn interleaved_avx2(&self, data: &[u8], parity: &mut [u8]) -> usize {
        // SAFETY: AVX2 is enabled for this function.
        unsafe { super::interleave::avx2(&self.gen, self.k, data, parity) }
    }

    /// Groups of 64 full blocks through the interleaved GFNI kernel; returns the blocks done.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx512bw,gfni")]
    unsafe fn interleaved_gfni(&self, data: &[u8], parity: &mut [u8]) -> usize {
        // SAFETY: the features are enabled for this function.
        unsafe { super::interleave::gfni(&self.gen, self.k, data, parity) }
    }

    /// AVX2 slicing-by-8 kernel: dispatch on the lane count so the state lives in registers.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn encode_blocks_sliced_avx2(&self, data: &[u8], parity: &mut [u8]) {
        if self.n < SLICE {
            self.encode_blocks_portable(data, parity);
            return;
        }
        // SAFETY (all arms): AVX2 is enabled for this function; `rows` has SLICE * 256 * w lanes.
        unsafe {
            match self.w {
                1 => self.avx2_kernel::<1>(data, parity),
                2 => self.avx2_kernel::<2>(data, parity),
                3 => self.avx2_kernel::<3>(data, parity),
                4 => self.avx2_kernel::<4>(data, parity),
                5 => self.avx2_kernel::<5>(data, parity),
                6 => self.avx2_kernel::<6>(data, parity),
                7 => self.avx2_kernel::<7>(data, parity),
                _ => self.avx2_kernel::<8>(data, parity),
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::many_single_char_names
    )]
    unsafe fn avx2_kernel<const W: usize>(&self, data: &[u8], parity: &mut [u8]) {
        use std::arch::x86_64::{
            __m256i, _mm256_alignr_epi8, _mm256_castsi256_si128, _mm256_load_si256,
            _mm256_permute2x128_si256, _mm256_setzero_si256, _mm256_store_si256, _mm256_xor_si256,
            _mm_cvtsi128_si64,
        };
        const GROUP: usize = 4;
        /// Shift the W-lane state toward index 0 by S bytes (S is 1 or 8).
        #[inline]
        #[target_feature(enable = "avx2")]
        fn shift<const W: usize, const S: i32>(st: &[__m256i; W]) -> [__m256i; W] {
            let zero = _mm256_setzero_si256();
            let mut out = [zero; W];
            for (w, o) in out.iter_mut().enumerate() {
                let cur = st.get(w).copied().unwrap_or(zero);
                let next = st.get(w + 1).copied().unwrap_or(zero);
                let mid = _mm256_permute2x128_si256::<0x21>(cur, next);
                *o = _mm256_alignr_epi8::<S>(mid, cur);
            }
            out
        }
        let k = self.k;
        let n = self.n;
        let full = data.len() / k;
        let blocks = parity.len() / n;
        let groups = full.min(blocks) / GROUP;
        let rows = self.rows.as_ptr();
        let steps = k / SLICE;
        for g in 0..groups {
            let mut acc = [[_mm256_setzero_si256(); W]; GROUP];
            let base = g * GROUP * k;
            for step in 0..steps {
                for (b, st) in acc.iter_mut().enumerate() {
                    let at = base + b * k + step * SLICE;
                    let mut le = [0u8; 8];
                    if let Some(c) = data.get(at..at + SLICE) {
                        le.copy_from_slice(c);
                    }
                    let head = _mm_cvtsi128_si64(_mm256_castsi256_si128(st[0])) as u64;
                    let u = u64::from_le_bytes(le) ^ head;
                    let mut next = shift::<W, 8>(st);
                    for j in 0..SLICE {
                        let e = (j * ENTRIES + ((u >> (8 * j)) & 0xff) as usize) * W;
                        for (w, nw) in next.iter_mut().enumerate() {
                            // SAFETY: e + w < SLICE * ENTRIES * W = rows.len(); Lane is 32-aligned.
                            unsafe {
                                let r = _mm256_load_si256(rows.add(e + w).cast::<__m256i>());
                                *nw = _mm256_xor_si256(*nw, r);
                            }
                        }
                    }
                    *st = next;
                }
            }
            for t in steps * SLICE..k {
                for (b, st) in acc.iter_mut().enumerate() {
                    let d = data.get(base + b * k + t).copied().unwrap_or(0);
                    let head = _mm_cvtsi128_si64(_mm256_castsi256_si128(st[0])) as u8;
                    let e = ((SLICE - 1) * ENTRIES + usize::from(d ^ head)) * W;
                    let mut next = shift::<W, 1>(st);
                    for (w, nw) in next.iter_mut().enumerate() {
                        // SAFETY: as above, indices inside the last slice's rows.
                        unsafe {
                            let r = _mm256_load_si256(rows.add(e + w).cast::<__m256i>());
                            *nw = _mm256_xor_si256(*nw, r);
                        }
                    }
                    *st = next;
                }
            }
            for (b, a) in acc.iter().enumerate() {
                let mut lanes = [Lane::default(); MAX_LANES];
                for (dst, v) in lanes.iter_mut().zip(a) {
                    // SAFETY: Lane is 32 bytes, 32-aligned.
                    unsafe { _mm256_store_si256(std::ptr::from_mut(dst).cast::<__m256i>(), *v) };
                }
                let start = (g * GROUP + b) * n;
                if let Some(out) = parity.get_mut(start..start + n) {
                    store_parity(&lanes, out);
                }
            }
        }
        let done = groups * GROUP;
        let rest_data = data.get(done * k..).unwrap_or_default();
        let rest_parity = parity.get_mut(done * n..).unwrap_or_default();
        self.encode_blocks_portable(rest_data, rest_parity);
    }
}

/// `st ^= table[e]` over `w` lanes of 4 words.
#[inline]
fn xor_row(st: &mut [u64], table: &[Lane], e: usize, w: usize) {
    let r = table.get(e * w..e * w + w).unwrap_or_default();
    for (dst, a) in st.chunks_exact_mut(4).zip(r) {
        for (x, y) in dst.iter_mut().zip(&a.0) {
            *x ^= y;
        }
    }
}

/// Whether the AVX2 kernel can run (cached by std).
#[cfg(target_arch = "x86_64")]
fn avx2_available() -> bool {
    std::is_x86_feature_detected!("avx2")
}

/// Whether the AVX-512 + GFNI kernel can run (cached by std).
#[cfg(target_arch = "x86_64")]
fn gfni_available() -> bool {
    std::is_x86_feature_detected!("avx512f")
        && std::is_x86_feature_detected!("avx512bw")
        && std::is_x86_feature_detected!("gfni")
        && std::is_x86_feature_detected!("avx2")
}

/// The name of the kernel [`Encoder::encode_blocks`] uses on this CPU under the `TV_CPU` cap.
#[must_use]
pub fn kernel_name() -> &'static str {
    kernel_name_at(cpu::level())
}

/// The name of the kernel used at `level`.
#[must_use]
pub fn kernel_name_at(level: Level) -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        if level >= Level::Avx512 && gfni_available() {
            return "avx512-gfni";
        }
        if level >= Level::Avx2 && avx2_available() {
            return "avx2";
        }
    }
    let _ = level;
    "portable"
}

#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))] // the AVX2 kernels are x86-64 only
fn store_parity(acc: &[Lane], out: &mut [u8]) {
    let bytes = acc
        .iter()
        .flat_map(|l| l.0.iter().flat_map(|w| w.to_le_bytes()));
    for (o, b) in out.iter_mut().zip(bytes) {
        *o = b;
    }
}

/// The generator polynomial `prod_{i<n} (x - 2^i)`, highest degree first (as `reedsolo` builds it).
pub(super) fn generator(n: usize) -> Vec<u8> {
    let mut g = vec![1u8];
    for i in 0..n {
        let root = gf::pow2(i);
        // g * (x + root)
        let mut next = vec![0u8; g.len() + 1];
        for (j, &c) in g.iter().enumerate() {
            if let Some(slot) = next.get_mut(j) {
                *slot ^= c;
            }
            if let Some(slot) = next.get_mut(j + 1) {
                *slot ^= gf::mul(c, root);
            }
        }
        g = next;
    }
    g
}

/// One LFSR step: shift `input` into the remainder register `r` (length n) under generator `gen`.
fn lfsr_step(gen: &[u8], r: &mut [u8], input: u8) {
    let Some((&head, _)) = r.split_first() else {
        return;
    };
    let fb = input ^ head;
    r.rotate_left(1);
    if let Some(last) = r.last_mut() {
        *last = 0;
    }
    if fb != 0 {
        for (x, &g) in r.iter_mut().zip(gen.iter().skip(1)) {
            *x ^= gf::mul(g, fb);
        }
    }
}

/// Reference encoder: the parity of one block by the LFSR, exactly as `reedsolo.rs_encode_msg`.
pub(super) fn lfsr_parity(gen: &[u8], block: &[u8], parity: &mut [u8]) {
    parity.fill(0);
    for &d in block {
        lfsr_step(gen, parity, d);
    }
}
