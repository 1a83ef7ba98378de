//! Error-correcting codes.
//!
//! - [`rs255`]: the `rs(N)` Reed-Solomon codec over GF(2^8), byte-compatible with Python `reedsolo`'s
//!   defaults (the `PyFolds` ECC stream).
//! - [`cpu`]: the CPU features the kernels use and the `TV_CPU` cap.
//! - [`erasure`]: the stripe erasure codec and its self-protecting parity sidecar
//!   (`docs/formats/ecc-sidecar.md`).

pub mod cpu;
pub mod erasure;
pub mod gf256;
pub mod rs255;
