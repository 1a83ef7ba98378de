//! GF(2^8) arithmetic over the polynomial x^8 + x^4 + x^3 + x^2 + 1 (0x11d), generator 2: the field
//! reedsolo, ISA-L and most Reed-Solomon codes use. All tables are computed at compile time.
//!
//! The one definition of the field for both codecs: the byte-level rs(N) codec ([`super::rs255`]) uses
//! its `EXP` / `LOG` tables for log-domain arithmetic, the erasure codec ([`super::erasure`]) also its
//! full product, nibble and GFNI affine tables.

// INVARIANT: every table here has 256 (or 512) entries and is indexed by a `u8` (or the sum of two
// logarithms, each < 255, so < 510); no index can be out of bounds.
// Const table builders loop over values < 256 (or < 512), so the `as u8` casts are exact.
#![allow(
    clippy::indexing_slicing,
    clippy::cast_possible_truncation,
    clippy::large_stack_arrays
)]

/// The reduction polynomial.
pub const POLY: u16 = 0x11d;

const fn build_exp_log() -> ([u8; 512], [u8; 256]) {
    let mut exp = [0u8; 512];
    let mut log = [0u8; 256];
    let mut x: u16 = 1;
    let mut i = 0;
    while i < 255 {
        exp[i] = x as u8;
        log[x as usize] = i as u8;
        x <<= 1;
        if x & 0x100 != 0 {
            x ^= POLY;
        }
        i += 1;
    }
    while i < 512 {
        exp[i] = exp[i - 255];
        i += 1;
    }
    (exp, log)
}

const EXP_LOG: ([u8; 512], [u8; 256]) = build_exp_log();
/// `EXP[i] = 2^i`, doubled so `EXP[log a + log b]` needs no reduction.
pub static EXP: [u8; 512] = EXP_LOG.0;
/// `LOG[a]` for `a != 0` (`LOG[0]` is meaningless, 0).
pub static LOG: [u8; 256] = EXP_LOG.1;

const fn mul_const(a: u8, b: u8) -> u8 {
    if a == 0 || b == 0 {
        0
    } else {
        EXP_LOG.0[EXP_LOG.1[a as usize] as usize + EXP_LOG.1[b as usize] as usize]
    }
}

const fn build_mul() -> [[u8; 256]; 256] {
    let mut t = [[0u8; 256]; 256];
    let mut a = 0;
    while a < 256 {
        let mut b = 0;
        while b < 256 {
            t[a][b] = mul_const(a as u8, b as u8);
            b += 1;
        }
        a += 1;
    }
    t
}

/// Full multiplication table: `MUL[a][b] = a·b` (64 KiB; the portable kernel's lookup).
pub static MUL: [[u8; 256]; 256] = build_mul();

const fn build_nibble() -> [[u8; 32]; 256] {
    let mut t = [[0u8; 32]; 256];
    let mut c = 0;
    while c < 256 {
        let mut i = 0;
        while i < 16 {
            t[c][i] = mul_const(c as u8, i as u8);
            t[c][16 + i] = mul_const(c as u8, (i << 4) as u8);
            i += 1;
        }
        c += 1;
    }
    t
}

/// Split-nibble tables for the PSHUFB kernels: `NIBBLE[c][0..16] = c·x` for the low nibble `x`,
/// `NIBBLE[c][16..32] = c·(x << 4)` for the high nibble.
pub static NIBBLE: [[u8; 32]; 256] = build_nibble();

#[allow(clippy::many_single_char_names)]
const fn build_affine() -> [u64; 256] {
    let mut t = [0u64; 256];
    let mut c = 0;
    while c < 256 {
        let mut a = 0u64;
        let mut i = 0;
        while i < 8 {
            let mut row = 0u64;
            let mut j = 0;
            while j < 8 {
                if (mul_const(c as u8, 1 << j) >> i) & 1 == 1 {
                    row |= 1 << j;
                }
                j += 1;
            }
            a |= row << (8 * (7 - i));
            i += 1;
        }
        t[c] = a;
        c += 1;
    }
    t
}

/// GFNI bit matrices: `AFFINE[c]` is the 8×8 matrix over GF(2) of "multiply by `c`" in the layout
/// `vgf2p8affineqb` expects (row `i`, the bits of `c·x^j` at bit `i`, in byte `7 − i`).
pub static AFFINE: [u64; 256] = build_affine();

/// `a · b` in the field.
#[inline]
#[must_use]
pub fn mul(a: u8, b: u8) -> u8 {
    MUL[usize::from(a)][usize::from(b)]
}

/// The multiplicative inverse of `a`, or `None` for zero.
#[inline]
#[must_use]
pub fn inv(a: u8) -> Option<u8> {
    if a == 0 {
        None
    } else {
        Some(EXP[255 - usize::from(LOG[usize::from(a)])])
    }
}

#[cfg(test)]
#[allow(clippy::cast_possible_truncation, clippy::needless_range_loop)]
mod tests {
    use super::*;

    fn slow_mul(mut a: u8, mut b: u8) -> u8 {
        let mut p = 0u8;
        while b != 0 {
            if b & 1 != 0 {
                p ^= a;
            }
            let carry = a & 0x80 != 0;
            a <<= 1;
            if carry {
                a ^= (POLY & 0xff) as u8;
            }
            b >>= 1;
        }
        p
    }

    #[test]
    fn tables_match_shift_and_add_multiplication() {
        for a in 0..=255u8 {
            for b in 0..=255u8 {
                assert_eq!(mul(a, b), slow_mul(a, b), "{a}·{b}");
            }
        }
    }

    #[test]
    fn every_nonzero_element_has_an_inverse() {
        assert_eq!(inv(0), None);
        for a in 1..=255u8 {
            assert_eq!(mul(a, inv(a).unwrap()), 1);
        }
    }

    #[test]
    fn nibble_tables_recombine_to_the_product() {
        for c in 0..=255u8 {
            for x in 0..=255u8 {
                let t = &NIBBLE[usize::from(c)];
                assert_eq!(
                    t[usize::from(x & 15)] ^ t[16 + usize::from(x >> 4)],
                    mul(c, x)
                );
            }
        }
    }

    #[test]
    fn affine_matrices_multiply() {
        // Apply the matrix as vgf2p8affineqb does: result bit i = parity(byte[7 - i] & x).
        for c in 0..=255u8 {
            let a = AFFINE[usize::from(c)];
            for x in 0..=255u8 {
                let mut y = 0u8;
                for i in 0..8 {
                    let row = (a >> (8 * (7 - i))) as u8;
                    y |= (((row & x).count_ones() & 1) as u8) << i;
                }
                assert_eq!(y, mul(c, x), "{c}·{x}");
            }
        }
    }

    #[test]
    fn generator_two_has_order_255() {
        let mut seen = std::collections::HashSet::new();
        for i in 0..255 {
            assert!(seen.insert(EXP[i]));
        }
        assert_eq!(EXP[255], 1);
    }
}
