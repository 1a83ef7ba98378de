//! CPU features of the ECC kernels and the `TV_CPU` cap.
//!
//! The erasure kernels ([`super::erasure::Kernel`]) and the `rs(N)` encoder pick the fastest code path
//! this CPU runs, detected at run time. Setting the environment variable `TV_CPU` before the first ECC
//! call caps that choice at a feature level, so that, for example, the AVX2 figures of a CPU without
//! AVX-512 can be measured on one that has it:
//!
//! | `TV_CPU` | erasure kernel | wide GF(2^16) engine | `rs(N)` encoder |
//! |---|---|---|---|
//! | `portable` | portable (table lookups) | portable | portable (64-bit words) |
//! | `ssse3` | SSSE3 | SSSE3 | portable |
//! | `avx2` | AVX2 | AVX2 | AVX2 |
//! | `avx512` (or unset, `native`) | AVX-512 + GFNI when present | AVX-512 + GFNI when present | AVX-512 + GFNI when present |
//!
//! On AVX2 the `rs(N)` encoder has two kernels (interleaved split-nibble products, slicing-by-8 row
//! tables) and keeps the one that measures faster for its `N` on first use.
//!
//! A cap never raises the level above what the CPU has. The value is read once per process. An
//! unknown value caps nothing and is reported by [`CpuInfo::cap_error`] (the `tensorvault bench`
//! command refuses to run with it). SHA-256 (the `sha2` crate: SHA-NI when present) and BLAKE3 (the
//! `blake3` crate: AVX-512, AVX2, SSE4.1) choose their own paths and are not capped; [`info`] reports
//! what they use.

use std::sync::OnceLock;

/// The environment variable that caps the ECC kernels' feature level.
pub const ENV: &str = "TV_CPU";

/// A feature level of the ECC kernels, ordered from least to most capable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Any CPU: table lookups.
    Portable,
    /// SSSE3 `pshufb` (16-byte vectors).
    Ssse3,
    /// AVX2 (32-byte vectors): every x86-64 CPU of the last decade.
    Avx2,
    /// AVX-512 F/BW/VL with GFNI (64-byte vectors, one instruction per GF(2^8) product).
    Avx512,
}

impl Level {
    /// Every level, lowest first.
    pub const ALL: [Self; 4] = [Self::Portable, Self::Ssse3, Self::Avx2, Self::Avx512];

    /// The name `TV_CPU` accepts for the level.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Portable => "portable",
            Self::Ssse3 => "ssse3",
            Self::Avx2 => "avx2",
            Self::Avx512 => "avx512",
        }
    }

    /// The level named `name` (as [`Level::name`] spells it; `avx512-gfni` is accepted too).
    #[must_use]
    pub fn parse(name: &str) -> Option<Self> {
        if name == "avx512-gfni" {
            return Some(Self::Avx512);
        }
        Self::ALL.into_iter().find(|l| l.name() == name)
    }

    /// The highest level this CPU supports (not capped).
    #[must_use]
    pub fn detected() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx512bw")
                && std::arch::is_x86_feature_detected!("avx512vl")
                && std::arch::is_x86_feature_detected!("gfni")
            {
                return Self::Avx512;
            }
            if std::arch::is_x86_feature_detected!("avx2") {
                return Self::Avx2;
            }
            if std::arch::is_x86_feature_detected!("ssse3") {
                return Self::Ssse3;
            }
        }
        Self::Portable
    }
}

/// What `TV_CPU` asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Cap {
    /// Unset, empty or `native`: no cap.
    None,
    /// A valid level.
    Level(Level),
    /// A value that names no level (ignored, reported).
    Invalid(String),
}

fn cap() -> &'static Cap {
    static CAP: OnceLock<Cap> = OnceLock::new();
    CAP.get_or_init(|| match std::env::var(ENV) {
        Err(std::env::VarError::NotPresent) => Cap::None,
        Err(std::env::VarError::NotUnicode(v)) => Cap::Invalid(v.to_string_lossy().into_owned()),
        Ok(v) => {
            let v = v.trim().to_ascii_lowercase();
            if v.is_empty() || v == "native" {
                Cap::None
            } else if let Some(l) = Level::parse(&v) {
                Cap::Level(l)
            } else {
                tracing::warn!(value = %v, "{ENV} names no feature level (portable, ssse3, avx2, avx512); ignored");
                Cap::Invalid(v)
            }
        }
    })
}

/// The level `TV_CPU` names, if it names one (whatever this CPU supports).
#[must_use]
pub fn cap_level() -> Option<Level> {
    match cap() {
        Cap::Level(l) => Some(*l),
        Cap::None | Cap::Invalid(_) => None,
    }
}

/// The level the ECC kernels use: the detected one, capped by `TV_CPU`.
#[must_use]
pub fn level() -> Level {
    static LEVEL: OnceLock<Level> = OnceLock::new();
    *LEVEL.get_or_init(|| {
        let here = Level::detected();
        match cap() {
            Cap::Level(l) => here.min(*l),
            Cap::None | Cap::Invalid(_) => here,
        }
    })
}

/// What the process runs on and which code paths it uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuInfo {
    /// The CPU's architecture (`x86_64`, `aarch64`, …).
    pub arch: &'static str,
    /// The SIMD features found on this CPU that tensorvault's code paths use (`ssse3`, `sse4.1`,
    /// `avx2`, `avx512f`, `avx512bw`, `avx512vl`, `gfni`, `sha`), whatever the cap.
    pub features: Vec<&'static str>,
    /// The highest ECC level this CPU supports.
    pub detected: Level,
    /// The level `TV_CPU` asked for, if valid.
    pub cap: Option<Level>,
    /// A `TV_CPU` value that names no level (ignored).
    pub cap_error: Option<String>,
    /// The level in use: `detected` capped by `cap`.
    pub level: Level,
    /// The erasure kernel in use (`avx512-gfni`, `avx2`, `ssse3`, `portable`).
    pub erasure_kernel: &'static str,
    /// The engine of the wide GF(2^16) code, sidecar format v2 (`avx512-gfni`, `avx2`, `ssse3`,
    /// `neon`, `portable`; see [`super::erasure::gf16_gfni`]).
    pub wide_engine: &'static str,
    /// The `rs(32)` encoder in use (`avx512-gfni`, `avx2-interleaved`, `avx2-sliced`, `portable`; the
    /// AVX2 variant is the faster of the two on this CPU for that `N`, see
    /// [`super::rs255::RsCodec::kernel`]).
    pub rs_kernel: &'static str,
    /// The SHA-256 path (`sha-ni` or `software`; chosen by the `sha2` crate, not capped).
    pub sha256: &'static str,
    /// The BLAKE3 path (`avx512`, `avx2`, `sse4.1`, `sse2`, `portable`; chosen by the `blake3` crate,
    /// not capped).
    pub blake3: &'static str,
}

/// The features detected and the kernels in use.
#[must_use]
pub fn info() -> CpuInfo {
    let (cap, cap_error) = match cap() {
        Cap::None => (None, None),
        Cap::Level(l) => (Some(*l), None),
        Cap::Invalid(v) => (None, Some(v.clone())),
    };
    CpuInfo {
        arch: std::env::consts::ARCH,
        features: features(),
        detected: Level::detected(),
        cap,
        cap_error,
        level: level(),
        erasure_kernel: super::erasure::Kernel::detect().name(),
        wide_engine: super::erasure::gf16_gfni::EngineKind::detect().name(),
        rs_kernel: super::rs255::RsCodec::shared(32)
            .map_or_else(|_| super::rs255::kernel_name(), |c| c.kernel()),
        sha256: sha256_path(),
        blake3: blake3_path(),
    }
}

#[cfg(target_arch = "x86_64")]
fn features() -> Vec<&'static str> {
    macro_rules! found {
        ($($f:tt),*) => {{
            let mut v = Vec::new();
            $(if std::arch::is_x86_feature_detected!($f) { v.push($f); })*
            v
        }};
    }
    found!("ssse3", "sse4.1", "avx2", "avx512f", "avx512bw", "avx512vl", "gfni", "sha")
}

/// On `aarch64`: Neon, which the wide code's engine (`reed-solomon-simd`) and BLAKE3 use.
#[cfg(target_arch = "aarch64")]
fn features() -> Vec<&'static str> {
    if std::arch::is_aarch64_feature_detected!("neon") {
        vec!["neon"]
    } else {
        Vec::new()
    }
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn features() -> Vec<&'static str> {
    Vec::new()
}

/// What the `sha2` crate selects (its x86 test: SHA, SSE2, SSSE3 and SSE4.1).
fn sha256_path() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("sha")
            && std::arch::is_x86_feature_detected!("ssse3")
            && std::arch::is_x86_feature_detected!("sse4.1")
        {
            return "sha-ni";
        }
    }
    "software"
}

/// What the `blake3` crate selects (its x86 order: AVX-512 F+VL, AVX2, SSE4.1, SSE2). On little-endian
/// `aarch64` its build script compiles the Neon implementation in (default features, as here) and
/// `Platform::detect` then always picks it; elsewhere the portable code.
fn blake3_path() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512vl")
        {
            return "avx512";
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            return "avx2";
        }
        if std::arch::is_x86_feature_detected!("sse4.1") {
            return "sse4.1";
        }
        "sse2"
    }
    #[cfg(all(target_arch = "aarch64", target_endian = "little"))]
    {
        "neon"
    }
    #[cfg(not(any(
        target_arch = "x86_64",
        all(target_arch = "aarch64", target_endian = "little")
    )))]
    {
        "portable"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_order() {
        for l in Level::ALL {
            assert_eq!(Level::parse(l.name()), Some(l));
        }
        assert_eq!(Level::parse("avx512-gfni"), Some(Level::Avx512));
        assert_eq!(Level::parse("avx"), None);
        assert!(Level::Portable < Level::Ssse3 && Level::Ssse3 < Level::Avx2);
        assert!(Level::Avx2 < Level::Avx512);
    }

    /// Manual probe (not a benchmark of record): BLAKE3 and SHA-256 over the same 64 MiB buffer on one
    /// thread, MiB per second of the thread's CPU time, medians of five interleaved rounds. BLAKE3's
    /// AVX-512 path is not capped by `TV_CPU`; its AVX2 path is measured by building without it:
    /// `cargo test --release -p tensorvault-core --lib hash_probe --features blake3/no_avx512 --
    /// --ignored --nocapture`.
    #[test]
    #[ignore = "manual throughput probe"]
    #[allow(clippy::unwrap_used, clippy::cast_precision_loss)]
    fn hash_probe() {
        let data: Vec<u8> = (0..64u32 << 20)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 11).to_le_bytes()[0])
            .collect();
        let cpu = || -> f64 {
            let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
            let f: Vec<&str> = stat
                .rsplit(')')
                .next()
                .unwrap()
                .split_whitespace()
                .collect();
            (f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap()) / 100.0
        };
        let mut rates = [Vec::new(), Vec::new()];
        let mut sink = 0u8;
        for _ in 0..5 {
            for (which, r) in rates.iter_mut().enumerate() {
                let c0 = cpu();
                let mut reps = 0u32;
                while reps < 2 || cpu() - c0 < 0.4 {
                    sink ^= if which == 0 {
                        blake3::hash(&data).as_bytes()[0]
                    } else {
                        crate::hash::sha256(&data)[0]
                    };
                    reps += 1;
                }
                r.push(64.0 * f64::from(reps) / (cpu() - c0));
            }
        }
        for (name, r) in ["blake3", "sha256"].iter().zip(rates.iter_mut()) {
            r.sort_by(f64::total_cmp);
            // (The BLAKE3 path printed by `info()` mirrors the crate's detection and does not know
            // about `no_avx512`; the build command says which path ran.)
            eprintln!(
                "{name}: {:.0} MiB per CPU-second (rounds {:?})",
                r[2],
                r.iter().map(|x| x.round()).collect::<Vec<_>>()
            );
        }
        eprintln!("(sink {sink})");
    }

    #[test]
    fn level_in_use_never_exceeds_the_cpu() {
        let i = info();
        assert!(i.level <= i.detected);
        if let Some(c) = i.cap {
            assert!(i.level <= c);
        }
    }
}
