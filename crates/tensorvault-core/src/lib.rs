//! tensorvault's core: pure Rust, no N-API.
//!
//! Everything here is testable with `cargo test` and benchable with criterion. The N-API binding in
//! `tensorvault-node` is a thin layer over these modules.

pub mod checkpoint;
pub mod checkpoint_outboard;
pub mod checkpoint_sidecar;
pub mod compress;
pub mod control;
pub mod ecc;
pub mod fold;
pub mod hash;
pub mod io;
pub mod json;
pub mod safetensors;

pub use control::Control;
