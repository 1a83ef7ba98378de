//! The element types of the safetensors format.

use std::fmt;

/// One element type. The declaration order is the reference implementation's: the writer sorts tensors
/// by this order, descending (widest first), then by name, so that output matches Python's
/// `safetensors.save_file` byte for byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Dtype {
    /// Boolean, one byte per element.
    Bool,
    /// 4-bit float (E2M1), two elements per byte.
    F4,
    /// 6-bit float (E2M3), packed.
    F6E2M3,
    /// 6-bit float (E3M2), packed.
    F6E3M2,
    /// Unsigned 8-bit integer.
    U8,
    /// Signed 8-bit integer.
    I8,
    /// 8-bit float E5M2.
    F8E5M2,
    /// 8-bit float E4M3.
    F8E4M3,
    /// 8-bit exponent-only scale (E8M0).
    F8E8M0,
    /// 8-bit float E4M3, finite, no negative zero (`torch.float8_e4m3fnuz`).
    F8E4M3FNUZ,
    /// 8-bit float E5M2, finite, no negative zero (`torch.float8_e5m2fnuz`).
    F8E5M2FNUZ,
    /// Signed 16-bit integer.
    I16,
    /// Unsigned 16-bit integer.
    U16,
    /// IEEE half precision.
    F16,
    /// bfloat16.
    BF16,
    /// Signed 32-bit integer.
    I32,
    /// Unsigned 32-bit integer.
    U32,
    /// IEEE single precision.
    F32,
    /// Complex number of two `F32` (real, imaginary).
    C64,
    /// IEEE double precision.
    F64,
    /// Signed 64-bit integer.
    I64,
    /// Unsigned 64-bit integer.
    U64,
}

impl Dtype {
    /// Every dtype, in the reference order.
    pub const ALL: [Dtype; 22] = [
        Dtype::Bool,
        Dtype::F4,
        Dtype::F6E2M3,
        Dtype::F6E3M2,
        Dtype::U8,
        Dtype::I8,
        Dtype::F8E5M2,
        Dtype::F8E4M3,
        Dtype::F8E8M0,
        Dtype::F8E4M3FNUZ,
        Dtype::F8E5M2FNUZ,
        Dtype::I16,
        Dtype::U16,
        Dtype::F16,
        Dtype::BF16,
        Dtype::I32,
        Dtype::U32,
        Dtype::F32,
        Dtype::C64,
        Dtype::F64,
        Dtype::I64,
        Dtype::U64,
    ];

    /// The name used in the header (`"F32"`, `"BF16"`, `"F8_E4M3"`, ...).
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Dtype::Bool => "BOOL",
            Dtype::F4 => "F4",
            Dtype::F6E2M3 => "F6_E2M3",
            Dtype::F6E3M2 => "F6_E3M2",
            Dtype::U8 => "U8",
            Dtype::I8 => "I8",
            Dtype::F8E5M2 => "F8_E5M2",
            Dtype::F8E4M3 => "F8_E4M3",
            Dtype::F8E8M0 => "F8_E8M0",
            Dtype::F8E4M3FNUZ => "F8_E4M3FNUZ",
            Dtype::F8E5M2FNUZ => "F8_E5M2FNUZ",
            Dtype::I16 => "I16",
            Dtype::U16 => "U16",
            Dtype::F16 => "F16",
            Dtype::BF16 => "BF16",
            Dtype::I32 => "I32",
            Dtype::U32 => "U32",
            Dtype::F32 => "F32",
            Dtype::C64 => "C64",
            Dtype::F64 => "F64",
            Dtype::I64 => "I64",
            Dtype::U64 => "U64",
        }
    }

    /// Parse a header dtype name; `None` for an unknown one.
    #[must_use]
    pub fn parse(s: &str) -> Option<Dtype> {
        // Every name is at most 15 bytes: its bytes and length packed in one u128, compared with each
        // dtype's (integer compares instead of a string compare per dtype; a header names a dtype per
        // tensor).
        let key = name_key(s.as_bytes())?;
        let at = KEYS.iter().position(|&k| k == key)?;
        Dtype::ALL.get(at).copied()
    }

    /// Size of one element in bits (4 and 6 for the packed sub-byte floats).
    #[must_use]
    pub const fn bits(self) -> u64 {
        match self {
            Dtype::F4 => 4,
            Dtype::F6E2M3 | Dtype::F6E3M2 => 6,
            Dtype::Bool
            | Dtype::U8
            | Dtype::I8
            | Dtype::F8E5M2
            | Dtype::F8E4M3
            | Dtype::F8E8M0
            | Dtype::F8E4M3FNUZ
            | Dtype::F8E5M2FNUZ => 8,
            Dtype::I16 | Dtype::U16 | Dtype::F16 | Dtype::BF16 => 16,
            Dtype::I32 | Dtype::U32 | Dtype::F32 => 32,
            Dtype::C64 | Dtype::F64 | Dtype::I64 | Dtype::U64 => 64,
        }
    }

    /// Alignment a typed view of this dtype needs, in bytes (1 for the byte and sub-byte types;
    /// `C64` is viewed as pairs of `F32`, so 4).
    #[must_use]
    pub const fn alignment(self) -> u64 {
        match self {
            Dtype::C64 => 4,
            d => {
                let b = d.bits() / 8;
                if b == 0 {
                    1
                } else {
                    b
                }
            }
        }
    }
}

/// A dtype name's bytes (little-endian) and its length in the top byte; None for a name longer than
/// 15 bytes (no dtype's is).
#[allow(clippy::indexing_slicing)] // `i < b.len()`; `slice::get` is not usable in a const fn
const fn name_key(b: &[u8]) -> Option<u128> {
    if b.len() > 15 {
        return None;
    }
    let mut k = (b.len() as u128) << 120;
    let mut i = 0;
    while i < b.len() {
        k |= (b[i] as u128) << (8 * i);
        i += 1;
    }
    Some(k)
}

/// [`name_key`] of every dtype, in [`Dtype::ALL`]'s order.
#[allow(clippy::indexing_slicing)] // `i < ALL.len()`, evaluated at compile time
const KEYS: [u128; Dtype::ALL.len()] = {
    let mut out = [0u128; Dtype::ALL.len()];
    let mut i = 0;
    while i < Dtype::ALL.len() {
        out[i] = match name_key(Dtype::ALL[i].as_str().as_bytes()) {
            Some(k) => k,
            None => panic!("a dtype name longer than 15 bytes"),
        };
        i += 1;
    }
    out
};

impl fmt::Display for Dtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_order_is_the_reference_order() {
        for d in Dtype::ALL {
            assert_eq!(Dtype::parse(d.as_str()), Some(d));
        }
        let mut sorted = Dtype::ALL;
        sorted.sort();
        assert_eq!(sorted, Dtype::ALL);
        assert_eq!(Dtype::parse("f32"), None);
        assert_eq!(Dtype::parse("F8_E4M3FN"), None);
    }

    /// Regression (QA, 2026-12-05): `F8_E4M3FNUZ` and `F8_E5M2FNUZ` (`torch.float8_e4m3fnuz`,
    /// `float8_e5m2fnuz`), which the reference `safetensors` 0.8 reads and writes, were refused as
    /// unknown dtypes. They are 8-bit and sit after `F8_E8M0` in the reference order.
    #[test]
    fn the_fnuz_floats_are_known_one_byte_dtypes_after_e8m0() {
        for (name, d) in [
            ("F8_E4M3FNUZ", Dtype::F8E4M3FNUZ),
            ("F8_E5M2FNUZ", Dtype::F8E5M2FNUZ),
        ] {
            assert_eq!(Dtype::parse(name), Some(d));
            assert_eq!((d.bits(), d.alignment()), (8, 1));
            assert!(Dtype::F8E8M0 < d && d < Dtype::I16);
        }
        assert_eq!(Dtype::parse("F8_E4M3FNUZX"), None);
        assert_eq!(Dtype::parse("F8_E4M3FNU"), None);
        assert_eq!(Dtype::parse("F8_E4M3B11FNUZ"), None);
    }
}
