//! The CPU features detected and the ECC / hashing code paths in use (`tensorvault_core::ecc::cpu`).

use napi_derive::napi;
use tensorvault_core::ecc::cpu;

use crate::errors::guard;

/// What the process runs on: the SIMD features found, the `TV_CPU` cap and the kernels in use.
#[napi(object)]
pub struct CpuInfo {
    /// `x86_64`, `aarch64`, …
    pub arch: String,
    /// SIMD features of this CPU that tensorvault's code paths use (`avx2`, `avx512f`, `gfni`, `sha`, …;
    /// `neon` on arm64).
    pub features: Vec<String>,
    /// The highest ECC feature level this CPU supports (`portable`, `ssse3`, `avx2`, `avx512`).
    pub detected: String,
    /// The level `TV_CPU` asked for, or null.
    pub cap: Option<String>,
    /// A `TV_CPU` value that names no level (ignored), or null.
    pub cap_error: Option<String>,
    /// The level in use: `detected` capped by `cap`.
    pub level: String,
    /// The erasure kernel in use (`avx512-gfni`, `avx2`, `ssse3`, `portable`).
    pub erasure_kernel: String,
    /// The engine of the wide GF(2^16) code (`avx512-gfni`, `avx2`, `ssse3`, `neon`, `portable`).
    pub wide_engine: String,
    /// The `rs(32)` encoder in use (`avx512-gfni`, `avx2-interleaved`, `avx2-sliced`, `portable`).
    pub rs_kernel: String,
    /// The SHA-256 path (`sha-ni` or `software`; not capped by `TV_CPU`).
    pub sha256: String,
    /// The BLAKE3 path (`avx512`, `avx2`, `sse4.1`, `sse2`, `neon`, `portable`; not capped by `TV_CPU`).
    pub blake3: String,
}

/// The CPU features detected and the kernels in use.
#[napi]
pub fn cpu_info() -> napi::Result<CpuInfo> {
    guard(|| {
        let i = cpu::info();
        Ok(CpuInfo {
            arch: i.arch.to_string(),
            features: i.features.iter().map(|f| (*f).to_string()).collect(),
            detected: i.detected.name().to_string(),
            cap: i.cap.map(|l| l.name().to_string()),
            cap_error: i.cap_error,
            level: i.level.name().to_string(),
            erasure_kernel: i.erasure_kernel.to_string(),
            wide_engine: i.wide_engine.to_string(),
            rs_kernel: i.rs_kernel.to_string(),
            sha256: i.sha256.to_string(),
            blake3: i.blake3.to_string(),
        })
    })
}
