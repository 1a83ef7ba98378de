//! napi-rs binding for `tensorvault-core`. Thin by design: argument checks, async tasks on the libuv
//! pool, zero-copy buffers, and the one place where core errors become JS errors (`errors.rs`).
//!
//! Every entry point runs its body inside [`errors::guard`], so a Rust panic becomes a
//! `TV_INTERNAL` error instead of unwinding into Node.

// napi-derive registers exports only outside `cfg(test)`, so the unit-test build sees them as unused.
#![cfg_attr(test, allow(dead_code))]
// N-API arguments arrive as owned handles (`Uint8Array`, `String`); borrowing them is not an option.
#![allow(clippy::needless_pass_by_value)]

mod args;
mod checkpoint;
mod compress;
mod control;
mod cost;
mod cpu;
mod erasure;
mod errors;
mod fold;
mod hash;
mod io;
mod open;
mod outboard;
mod region;
mod rs255;
mod safetensors;
#[cfg(feature = "test-hooks")]
mod testing;
