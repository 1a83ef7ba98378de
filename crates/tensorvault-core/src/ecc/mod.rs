//! Error-correcting codes: the stripe erasure codec and its self-protecting parity sidecar
//! (`erasure`, specified in `docs/formats/ecc-sidecar.md`).

pub mod erasure;
