//! Interleaved encoding: many blocks through one LFSR at once, one block per byte lane.
//!
//! The LFSR of `reedsolo` ([`super::encode::lfsr_parity`]) advances one data byte per step: with the
//! remainder `r` (`n` bytes, `r[0]` the highest-degree coefficient) and the next byte `d`,
//! `f = d ^ r[0]`, then `r[i] = r[i + 1] ^ g[i + 1]·f` and `r[n − 1] = g[n]·f`. Every block runs the
//! same steps with the same generator `g`, so a vector can hold byte `p` of 32 (AVX2) or 64 (AVX-512)
//! different blocks and advance all of them at once: the remainder becomes `n` vectors, and each step
//! is `n` multiplications of the feedback vector by constants — split-nibble `vpshufb` tables on AVX2
//! (two shuffles per product, the method of ISA-L's `gf_vect_mad`), one `vgf2p8affineqb` on AVX-512 +
//! GFNI. The constants are the same for every step, so the tables (1 KiB for rs(32)) stay in L1.
//!
//! AVX2 runs two vectors (64 blocks) and two steps per pass over the remainder, so each table load
//! serves four products. The bytes arrive block by block, so each group of blocks is transposed on the fly: 16 bytes of 16
//! blocks per 128-bit lane are loaded and turned into 16 vectors of "byte `p + r` of every block" by
//! four rounds of byte unpacks. The transposed data never touches memory. The last, partial 16 bytes of
//! a block are loaded as the block's last 16 bytes (always inside the block) and only the rows not yet
//! seen are used. Blocks that do not fill a whole group are left to the caller.

#[cfg(target_arch = "x86_64")]
pub(super) use x86::{avx2, gfni};

#[cfg(target_arch = "x86_64")]
// `loadu`/`storeu` take unaligned pointers; the short names follow the formulas in the comments.
#[allow(clippy::cast_ptr_alignment, clippy::many_single_char_names)]
mod x86 {
    use crate::ecc::gf256;
    use std::arch::x86_64::{
        __m128i, __m256i, __m512i, _mm256_and_si256, _mm256_broadcastsi128_si256,
        _mm256_castsi128_si256, _mm256_inserti128_si256, _mm256_set1_epi8, _mm256_setzero_si256,
        _mm256_shuffle_epi8, _mm256_srli_epi64, _mm256_storeu_si256, _mm256_unpackhi_epi8,
        _mm256_unpacklo_epi8, _mm256_xor_si256, _mm512_castsi128_si512,
        _mm512_gf2p8affine_epi64_epi8, _mm512_inserti32x4, _mm512_set1_epi64, _mm512_setzero_si512,
        _mm512_storeu_si512, _mm512_unpackhi_epi8, _mm512_unpacklo_epi8, _mm512_xor_si512,
        _mm_loadu_si128,
    };

    /// Rows of one transpose: 16 byte positions of 16 blocks per 128-bit lane.
    const ROWS: usize = 16;

    /// Encode whole groups of 64 full blocks with AVX2 (two 32-byte vectors per byte position);
    /// returns the number of blocks encoded (a multiple of 64). `gen` is the generator (`n + 1`
    /// coefficients, highest degree first), `k` the data bytes per block; `data` holds blocks of `k`
    /// bytes and `parity` blocks of `n`.
    ///
    /// Two vectors share every table load, and two LFSR steps share every pass over the remainder
    /// ([`step2_avx2`]): about 5.5 instructions per 32-byte product instead of 8.
    ///
    /// # Safety
    /// The CPU must support AVX2.
    #[target_feature(enable = "avx2")]
    pub(in crate::ecc::rs255) unsafe fn avx2(
        gen: &[u8],
        k: usize,
        data: &[u8],
        parity: &mut [u8],
    ) -> usize {
        const LANES: usize = 64;
        let n = gen.len().saturating_sub(1);
        if k < ROWS || n < 2 {
            return 0;
        }
        let groups = (data.len() / k).min(parity.len() / n) / LANES;
        if groups == 0 {
            return 0;
        }
        let zero = _mm256_setzero_si256();
        // Split-nibble tables of g[1..=n], each half broadcast to both 128-bit lanes.
        let tabs: Vec<[__m256i; 2]> = gen
            .iter()
            .skip(1)
            .map(|&g| {
                let t = gf256::NIBBLE
                    .get(usize::from(g))
                    .copied()
                    .unwrap_or([0; 32]);
                let p = t.as_ptr();
                // SAFETY: `t` holds 32 bytes.
                unsafe {
                    [
                        _mm256_broadcastsi128_si256(_mm_loadu_si128(p.cast::<__m128i>())),
                        _mm256_broadcastsi128_si256(_mm_loadu_si128(p.add(16).cast::<__m128i>())),
                    ]
                }
            })
            .collect();
        let mask = _mm256_set1_epi8(0x0f);
        let mut st = vec![[zero; 2]; n];
        let mut out = [0u8; LANES];
        for g in 0..groups {
            st.fill([zero; 2]);
            let base = g * LANES * k;
            let mut p = 0;
            while p < k {
                let at = if p + ROWS <= k { p } else { k - ROWS };
                let mut x = [[zero; ROWS]; 2];
                for (half, xs) in x.iter_mut().enumerate() {
                    for (b, v) in xs.iter_mut().enumerate() {
                        let blk = base + (half * 32 + b) * k + at;
                        // SAFETY: block `half·32 + b + 16 < 64` of this group ends at most at
                        // `base + 64·k <= groups·64·k <= data.len()`, and `at + 16 <= k`.
                        unsafe {
                            let lo = _mm_loadu_si128(data.as_ptr().add(blk).cast());
                            let hi = _mm_loadu_si128(data.as_ptr().add(blk + 16 * k).cast());
                            *v = _mm256_inserti128_si256::<1>(_mm256_castsi128_si256(lo), hi);
                        }
                    }
                    for _ in 0..4 {
                        *xs = unpack_round_256(xs);
                    }
                }
                let skip = p - at;
                let [xa, xb] = &x;
                let mut rows = xa.iter().zip(xb).skip(skip).map(|(u, v)| [*u, *v]);
                if (ROWS - skip) % 2 == 1 {
                    if let Some(d) = rows.next() {
                        // SAFETY: `st` and `tabs` both have `n >= 2` entries; AVX2 is enabled.
                        unsafe { step2_avx2(&mut st, &tabs, d, None, mask) };
                    }
                }
                while let Some(d0) = rows.next() {
                    // SAFETY: as above.
                    unsafe { step2_avx2(&mut st, &tabs, d0, rows.next(), mask) };
                }
                p = at + ROWS;
            }
            for (i, s) in st.iter().enumerate() {
                // SAFETY: `out` holds 64 bytes.
                unsafe {
                    _mm256_storeu_si256(out.as_mut_ptr().cast::<__m256i>(), s[0]);
                    _mm256_storeu_si256(out.as_mut_ptr().add(32).cast::<__m256i>(), s[1]);
                }
                for (b, &byte) in out.iter().enumerate() {
                    if let Some(o) = parity.get_mut((g * LANES + b) * n + i) {
                        *o = byte;
                    }
                }
            }
        }
        groups * LANES
    }

    /// One round of the in-lane 16×16 byte transpose: row `2i` interleaves rows `i` and `i + 8` (low
    /// halves), row `2i + 1` their high halves. Four rounds transpose (row, column) bits `(r3 r2 r1 r0,
    /// c3 c2 c1 c0)` into `(c3 c2 c1 c0, r3 r2 r1 r0)`.
    #[inline]
    #[target_feature(enable = "avx2")]
    // INVARIANT: `i < 8`, so `i + 8` and `2i + 1` are below 16, the arrays' length.
    #[allow(clippy::indexing_slicing)]
    fn unpack_round_256(x: &[__m256i; ROWS]) -> [__m256i; ROWS] {
        let mut y = *x;
        for i in 0..ROWS / 2 {
            let (a, b) = (x[i], x[i + ROWS / 2]);
            y[2 * i] = _mm256_unpacklo_epi8(a, b);
            y[2 * i + 1] = _mm256_unpackhi_epi8(a, b);
        }
        y
    }

    /// One or two LFSR steps of every lane of two vectors. One step with data `d`: `f = d ^ r[0]`,
    /// `r[i] = r[i + 1] ^ g[i + 1]·f`, `r[n − 1] = g[n]·f`. Two steps (data `d0`, then `d1`) in one
    /// pass: `f0 = d0 ^ r[0]`, `f1 = d1 ^ r[1] ^ g[1]·f0`, then `r[i] = r[i + 2] ^ g[i + 2]·f0 ^
    /// g[i + 1]·f1` (terms past the end are zero). Each table is loaded once for both vectors and
    /// serves both steps (as `g[i + 2]` for `f0` and, one position later, as `g[i + 1]` for `f1`).
    ///
    /// # Safety
    /// `st` and `tabs` have the same length `n >= 2`.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn step2_avx2(
        st: &mut [[__m256i; 2]],
        tabs: &[[__m256i; 2]],
        d0: [__m256i; 2],
        d1: Option<[__m256i; 2]>,
        mask: __m256i,
    ) {
        #[inline]
        #[target_feature(enable = "avx2")]
        fn nibbles(f: __m256i, mask: __m256i) -> [__m256i; 2] {
            [
                _mm256_and_si256(f, mask),
                _mm256_and_si256(_mm256_srli_epi64::<4>(f), mask),
            ]
        }
        #[inline]
        #[target_feature(enable = "avx2")]
        fn mul(t: [__m256i; 2], nib: [__m256i; 2]) -> __m256i {
            _mm256_xor_si256(
                _mm256_shuffle_epi8(t[0], nib[0]),
                _mm256_shuffle_epi8(t[1], nib[1]),
            )
        }
        let n = st.len();
        let s = st.as_mut_ptr();
        let t = tabs.as_ptr();
        // SAFETY: every index below is `< n`, the length of both slices (caller's contract), and
        // `n >= 2`.
        unsafe {
            let r0 = *s;
            let a = [
                nibbles(_mm256_xor_si256(d0[0], r0[0]), mask),
                nibbles(_mm256_xor_si256(d0[1], r0[1]), mask),
            ];
            let Some(d1) = d1 else {
                for i in 0..n - 1 {
                    let ti = *t.add(i);
                    let next = *s.add(i + 1);
                    *s.add(i) = [
                        _mm256_xor_si256(next[0], mul(ti, a[0])),
                        _mm256_xor_si256(next[1], mul(ti, a[1])),
                    ];
                }
                let tl = *t.add(n - 1);
                *s.add(n - 1) = [mul(tl, a[0]), mul(tl, a[1])];
                return;
            };
            let r1 = *s.add(1);
            let t0 = *t;
            let b = [
                nibbles(
                    _mm256_xor_si256(_mm256_xor_si256(d1[0], r1[0]), mul(t0, a[0])),
                    mask,
                ),
                nibbles(
                    _mm256_xor_si256(_mm256_xor_si256(d1[1], r1[1]), mul(t0, a[1])),
                    mask,
                ),
            ];
            // `prev` is the table of g[i + 1], `cur` that of g[i + 2].
            let mut prev = t0;
            for i in 0..n - 2 {
                let cur = *t.add(i + 1);
                let next = *s.add(i + 2);
                *s.add(i) = [
                    _mm256_xor_si256(next[0], _mm256_xor_si256(mul(cur, a[0]), mul(prev, b[0]))),
                    _mm256_xor_si256(next[1], _mm256_xor_si256(mul(cur, a[1]), mul(prev, b[1]))),
                ];
                prev = cur;
            }
            let last = *t.add(n - 1);
            *s.add(n - 2) = [
                _mm256_xor_si256(mul(last, a[0]), mul(prev, b[0])),
                _mm256_xor_si256(mul(last, a[1]), mul(prev, b[1])),
            ];
            *s.add(n - 1) = [mul(last, b[0]), mul(last, b[1])];
        }
    }

    /// As [`avx2`] with AVX-512 + GFNI, 64 blocks per group: each product is one `vgf2p8affineqb`
    /// with the coefficient's bit matrix ([`gf256::AFFINE`]).
    ///
    /// # Safety
    /// The CPU must support AVX-512 F and BW and GFNI.
    #[target_feature(enable = "avx512f,avx512bw,gfni")]
    pub(in crate::ecc::rs255) unsafe fn gfni(
        gen: &[u8],
        k: usize,
        data: &[u8],
        parity: &mut [u8],
    ) -> usize {
        const LANES: usize = 64;
        let n = gen.len().saturating_sub(1);
        if k < ROWS || n == 0 {
            return 0;
        }
        let groups = (data.len() / k).min(parity.len() / n) / LANES;
        if groups == 0 {
            return 0;
        }
        let zero = _mm512_setzero_si512();
        #[allow(clippy::cast_possible_wrap)] // bit patterns, not numbers
        let mats: Vec<__m512i> = gen
            .iter()
            .skip(1)
            .map(|&g| {
                _mm512_set1_epi64(gf256::AFFINE.get(usize::from(g)).copied().unwrap_or(0) as i64)
            })
            .collect();
        let mut st = vec![zero; n];
        let mut out = [0u8; LANES];
        for g in 0..groups {
            st.fill(zero);
            let base = g * LANES * k;
            let mut p = 0;
            while p < k {
                let at = if p + ROWS <= k { p } else { k - ROWS };
                let mut x = [zero; ROWS];
                for (b, v) in x.iter_mut().enumerate() {
                    // SAFETY: block `b + 48` of this group ends at `base + 64·k <= data.len()`, and
                    // `at + 16 <= k`.
                    unsafe {
                        let ld = |q: usize| {
                            _mm_loadu_si128(data.as_ptr().add(base + (b + q) * k + at).cast())
                        };
                        let w = _mm512_castsi128_si512(ld(0));
                        let w = _mm512_inserti32x4::<1>(w, ld(16));
                        let w = _mm512_inserti32x4::<2>(w, ld(32));
                        *v = _mm512_inserti32x4::<3>(w, ld(48));
                    }
                }
                for _ in 0..4 {
                    x = unpack_round_512(&x);
                }
                for &d in x.iter().skip(p - at) {
                    // SAFETY: `st` and `mats` both have `n >= 1` entries; the features are enabled.
                    unsafe { step_gfni(&mut st, &mats, d) };
                }
                p = at + ROWS;
            }
            for (i, s) in st.iter().enumerate() {
                // SAFETY: `out` holds 64 bytes.
                unsafe { _mm512_storeu_si512(out.as_mut_ptr().cast::<__m512i>(), *s) };
                for (b, &byte) in out.iter().enumerate() {
                    if let Some(o) = parity.get_mut((g * LANES + b) * n + i) {
                        *o = byte;
                    }
                }
            }
        }
        groups * LANES
    }

    /// [`unpack_round_256`] on 512-bit vectors (four independent 128-bit lanes).
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw")]
    // INVARIANT: as in `unpack_round_256`.
    #[allow(clippy::indexing_slicing)]
    fn unpack_round_512(x: &[__m512i; ROWS]) -> [__m512i; ROWS] {
        let mut y = *x;
        for i in 0..ROWS / 2 {
            let (a, b) = (x[i], x[i + ROWS / 2]);
            y[2 * i] = _mm512_unpacklo_epi8(a, b);
            y[2 * i + 1] = _mm512_unpackhi_epi8(a, b);
        }
        y
    }

    /// [`step_avx2`] with GFNI products.
    ///
    /// # Safety
    /// `st` and `mats` have the same length `n >= 1`.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,gfni")]
    unsafe fn step_gfni(st: &mut [__m512i], mats: &[__m512i], d: __m512i) {
        let n = st.len();
        let s = st.as_mut_ptr();
        let m = mats.as_ptr();
        // SAFETY: every index below is `< n`, the length of both slices (caller's contract).
        unsafe {
            let f = _mm512_xor_si512(d, *s);
            for i in 0..n - 1 {
                let prod = _mm512_gf2p8affine_epi64_epi8::<0>(f, *m.add(i));
                *s.add(i) = _mm512_xor_si512(*s.add(i + 1), prod);
            }
            *s.add(n - 1) = _mm512_gf2p8affine_epi64_epi8::<0>(f, *m.add(n - 1));
        }
    }
}
