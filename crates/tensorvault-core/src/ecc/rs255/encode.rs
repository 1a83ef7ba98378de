//! Systematic encoding: the parity of one block is `m(x) * x^N mod g(x)`.
//!
//! The reference is the LFSR of `reedsolo` ([`lfsr_parity`]). The fast path uses that the parity is a
//! linear function of the data: `parity = XOR_i d_i * R_i`, where `R_i` is the parity of the unit
//! message with a 1 at position `i`. Each `d_i * R_i` is split into nibbles, `lo(d_i) * R_i ^
//! (hi(d_i) << 4) * R_i`, and both products come from a 16-entry table of whole parity rows built once
//! per codec ("split-nibble tables", the same idea as PSHUFB multiplication, but with the lookup done
//! by the load unit on `N`-byte rows instead of a shuffle on single bytes). Encoding one data byte thus
//! costs two row loads and two XORs of `N` bytes, independent of the LFSR's serial dependency. On x86-64
//! with AVX2 (runtime detection) the rows are XORed as 32-byte vectors and four blocks are interleaved
//! so that each table row is reused from L1; the portable path gives identical bytes.

use super::gf;

/// One 32-byte, 32-aligned lane of a table row.
#[derive(Clone, Copy, Default)]
#[repr(C, align(32))]
pub(super) struct Lane(pub [u64; 4]);

/// The largest number of 32-byte lanes a row can have (N ≤ 254 rounds up to 256 bytes).
pub(super) const MAX_LANES: usize = 8;

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
    /// `k * 32` rows of `w` lanes: row `i * 32 + e` is `e * R_i` for `e < 16` and `((e - 16) << 4) *
    /// R_i` for `e >= 16`; bytes past `n` are zero.
    rows: Vec<Lane>,
}

impl Encoder {
    /// Tables for `rs(n)`; `n` is already validated to `1..=254`.
    pub(super) fn new(n: usize) -> Self {
        let k = 255 - n;
        let w = n.div_ceil(32);
        let gen = generator(n);
        let mut rows = vec![Lane::default(); k * 32 * w];
        // R_{k-1} is the parity of the message [1]; R_{i-1} is R_i shifted through one more LFSR step.
        let mut r = vec![0u8; n];
        lfsr_step(&gen, &mut r, 1);
        let mut bytes = vec![0u8; w * 32];
        for i in (0..k).rev() {
            for e in 0..32usize {
                #[allow(clippy::cast_possible_truncation)] // e < 32
                let scale = if e < 16 {
                    e as u8
                } else {
                    ((e - 16) as u8) << 4
                };
                bytes.fill(0);
                for (dst, &src) in bytes.iter_mut().zip(&r) {
                    *dst = gf::mul(scale, src);
                }
                let base = (i * 32 + e) * w;
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
        Self { n, k, w, gen, rows }
    }

    /// The generator polynomial (highest degree first).
    pub(super) fn generator(&self) -> &[u8] {
        &self.gen
    }

    /// Parity of consecutive blocks: `data` holds `parity.len() / n` blocks of `k` bytes, except that
    /// the last may be shorter (but not empty). Uses the fastest kernel this CPU supports.
    pub(super) fn encode_blocks(&self, data: &[u8], parity: &mut [u8]) {
        #[cfg(target_arch = "x86_64")]
        {
            if avx2_available() {
                // SAFETY: AVX2 is present (checked at run time just above).
                unsafe { self.encode_blocks_avx2(data, parity) };
                return;
            }
        }
        self.encode_blocks_portable(data, parity);
    }

    /// Portable kernel (also the reference for the vector kernel in tests).
    pub(super) fn encode_blocks_portable(&self, data: &[u8], parity: &mut [u8]) {
        for (block, out) in data.chunks(self.k).zip(parity.chunks_exact_mut(self.n)) {
            let mut acc = [Lane::default(); MAX_LANES];
            let first_row = self.k - block.len();
            let row_len = 32 * self.w;
            for (&d, row) in block
                .iter()
                .zip(self.rows.chunks_exact(row_len).skip(first_row))
            {
                let lo = usize::from(d & 15) * self.w;
                let hi = (16 + usize::from(d >> 4)) * self.w;
                let lo_row = row.get(lo..lo + self.w).unwrap_or_default();
                let hi_row = row.get(hi..hi + self.w).unwrap_or_default();
                for ((a, l), h) in acc.iter_mut().zip(lo_row).zip(hi_row) {
                    for ((aw, lw), hw) in a.0.iter_mut().zip(&l.0).zip(&h.0) {
                        *aw ^= lw ^ hw;
                    }
                }
            }
            store_parity(&acc, out);
        }
    }

    /// AVX2 kernel: dispatch on the lane count so the accumulators live in registers.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn encode_blocks_avx2(&self, data: &[u8], parity: &mut [u8]) {
        // SAFETY (all arms): AVX2 is enabled for this function; the kernel's own contract is met by
        // construction of `self` (rows has k * 32 * w lanes) and the caller's block layout.
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
    unsafe fn avx2_kernel<const W: usize>(&self, data: &[u8], parity: &mut [u8]) {
        use std::arch::x86_64::{
            __m256i, _mm256_load_si256, _mm256_setzero_si256, _mm256_store_si256, _mm256_xor_si256,
        };
        const GROUP: usize = 4;
        debug_assert_eq!(W, self.w);
        let k = self.k;
        let n = self.n;
        let full = data.len() / k;
        let blocks = parity.len() / n;
        let groups = full.min(blocks) / GROUP;
        let rows = self.rows.as_ptr();
        for g in 0..groups {
            let mut acc = [[_mm256_setzero_si256(); W]; GROUP];
            let base = g * GROUP * k;
            for i in 0..k {
                // SAFETY: row i has 32 * W lanes (rows.len() == k * 32 * W, i < k).
                let row = unsafe { rows.add(i * 32 * W) };
                for (b, a) in acc.iter_mut().enumerate() {
                    // INVARIANT: base + b * k + i < (g + 1) * GROUP * k <= full * k <= data.len().
                    #[allow(clippy::indexing_slicing)]
                    let d = data[base + b * k + i];
                    let lo = usize::from(d & 15) * W;
                    let hi = (16 + usize::from(d >> 4)) * W;
                    for (w, aw) in a.iter_mut().enumerate() {
                        // SAFETY: lo + w and hi + w are below 32 * W, inside row i; Lane is 32-aligned.
                        unsafe {
                            let l = _mm256_load_si256(row.add(lo + w).cast::<__m256i>());
                            let h = _mm256_load_si256(row.add(hi + w).cast::<__m256i>());
                            *aw = _mm256_xor_si256(*aw, _mm256_xor_si256(l, h));
                        }
                    }
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

/// Whether the AVX2 kernel can run (cached by std).
#[cfg(target_arch = "x86_64")]
fn avx2_available() -> bool {
    std::is_x86_feature_detected!("avx2")
}

/// The name of the kernel [`Encoder::encode_blocks`] uses on this CPU.
#[must_use]
pub fn kernel_name() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        if avx2_available() {
            return "avx2";
        }
    }
    "portable"
}

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
