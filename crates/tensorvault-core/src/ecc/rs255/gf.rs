//! GF(2^8) with the primitive polynomial `0x11d` and generator 2 (`reedsolo`'s defaults).
//!
//! The tables are the erasure codec's ([`crate::ecc::gf256`], one definition of the field); this module
//! keeps the log-domain helpers the rs(N) codec's hot loops use (768 bytes of tables, L1-resident).
//! Every lookup indexes a fixed-size array with a `u8` or a value proven below the array's length, so no
//! bounds check can fail.

// INVARIANT for every index in this file: `LOG` (256 entries) is indexed by a `u8`; `EXP` (512) by
// `log a + log b <= 508`, `log a + 255 - log b <= 509`, or `e % 255 < 255`.
#![allow(clippy::indexing_slicing)]

/// `EXP[i] = 2^i` for `i` in `0..510` (doubled so that `EXP[log a + log b]` needs no reduction) and
/// `LOG[a]` for `a != 0`: the shared field tables of [`crate::ecc::gf256`].
pub use super::super::gf256::{EXP, LOG};

/// `a * b` in the field.
#[inline]
#[must_use]
pub fn mul(a: u8, b: u8) -> u8 {
    if a == 0 || b == 0 {
        0
    } else {
        EXP[usize::from(LOG[usize::from(a)]) + usize::from(LOG[usize::from(b)])]
    }
}

/// `a / b`; `b` must be non-zero (callers check), 0 is returned for `b == 0` rather than panicking.
#[inline]
#[must_use]
pub fn div(a: u8, b: u8) -> u8 {
    if a == 0 || b == 0 {
        0
    } else {
        EXP[usize::from(LOG[usize::from(a)]) + 255 - usize::from(LOG[usize::from(b)])]
    }
}

/// `log2(a)` for `a != 0` (0 for 0).
#[inline]
#[must_use]
pub fn log(a: u8) -> u8 {
    LOG[usize::from(a)]
}

/// `2^e` for any exponent (reduced mod 255).
#[inline]
#[must_use]
pub fn pow2(e: usize) -> u8 {
    EXP[e % 255]
}

/// Multiplicative inverse; 0 for 0.
#[inline]
#[must_use]
pub fn inv(a: u8) -> u8 {
    div(1, a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_domain_helpers_agree_with_the_field() {
        // `gf256::mul` is itself checked against shift-and-add multiplication in `gf256`'s tests.
        for a in 0..=255u8 {
            for b in 0..=255u8 {
                assert_eq!(mul(a, b), crate::ecc::gf256::mul(a, b), "{a} * {b}");
                if b != 0 {
                    assert_eq!(mul(div(a, b), b), a);
                }
            }
        }
        assert_eq!(EXP[255], 1);
        assert_eq!(pow2(1), 2);
        assert_eq!(pow2(8), 0x1d);
    }
}
