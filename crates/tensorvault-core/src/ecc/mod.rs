//! Error-correcting codes.
//!
//! - [`rs255`]: the `rs(N)` Reed-Solomon codec over GF(2^8), byte-compatible with Python `reedsolo`'s
//!   defaults (the `PyFolds` ECC stream).

pub mod rs255;
