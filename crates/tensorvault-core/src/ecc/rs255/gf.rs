//! GF(2^8) with the primitive polynomial `0x11d` and generator 2 (`reedsolo`'s defaults).
//!
//! Tables are built at compile time; every lookup indexes a fixed-size array with a `u8` or a value
//! proven below the array's length, so no bounds check can fail.

// INVARIANT for every index in this file: `LOG` (256 entries) is indexed by a `u8`; `EXP` (512) by
// `log a + log b <= 508`, `log a + 255 - log b <= 509`, or `e % 255 < 255`; the const builders loop
// `i < 255` (`i + 255 < 510`) and index `LOG` by an `EXP` value (`< 256`).
#![allow(clippy::indexing_slicing)]

/// The primitive polynomial x^8 + x^4 + x^3 + x^2 + 1.
pub const PRIM: u16 = 0x11d;

/// `EXP[i] = 2^i` for `i` in `0..510` (doubled so that `EXP[log a + log b]` needs no reduction).
pub static EXP: [u8; 512] = build_exp();
/// `LOG[a]` for `a != 0` (`LOG[0]` is unused and 0).
pub static LOG: [u8; 256] = build_log();

const fn build_exp() -> [u8; 512] {
    let mut t = [0u8; 512];
    let mut x: u16 = 1;
    let mut i = 0;
    while i < 255 {
        // INVARIANT: x < 256 after each reduction below.
        #[allow(clippy::cast_possible_truncation)]
        {
            t[i] = x as u8;
            t[i + 255] = x as u8;
        }
        x <<= 1;
        if x & 0x100 != 0 {
            x ^= PRIM;
        }
        i += 1;
    }
    t[510] = t[0];
    t[511] = t[1];
    t
}

const fn build_log() -> [u8; 256] {
    let exp = build_exp();
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 255 {
        #[allow(clippy::cast_possible_truncation)] // i < 255
        {
            t[exp[i] as usize] = i as u8;
        }
        i += 1;
    }
    t
}

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

    fn slow_mul(mut a: u8, mut b: u8) -> u8 {
        let mut p = 0u8;
        while b != 0 {
            if b & 1 != 0 {
                p ^= a;
            }
            let carry = a & 0x80 != 0;
            a <<= 1;
            if carry {
                a ^= 0x1d;
            }
            b >>= 1;
        }
        p
    }

    #[test]
    fn tables_agree_with_carryless_multiplication() {
        for a in 0..=255u8 {
            for b in 0..=255u8 {
                assert_eq!(mul(a, b), slow_mul(a, b), "{a} * {b}");
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
