//! Erasure ECC: `protect` / `verify` / `repair` of a file with its `.tvecc` sidecar on the libuv pool,
//! an in-memory codec for buffers, and the measurement behind `tensorvault bench ecc`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use napi::bindgen_prelude::{AsyncTask, Uint8ArraySlice};
use napi::{Env, Task};
use napi_derive::napi;
use tensorvault_core::ecc::erasure::{
    self as core_ecc, Checked, ChunkDigest, ErasureCodec, Format, Level, Params, ProtectOptions,
    ProtectReport, RepairMode, RepairOptions, RepairReport, SidecarHealth, VerifyReport,
};
use tensorvault_core::hash::to_hex;
use tensorvault_core::Control;

use crate::args::{range, to_int, to_u64};
use crate::control::JobControl;
use crate::errors::{guard, invalid_argument, TvError};

#[allow(clippy::cast_precision_loss)] // counts and lengths stay far below 2^53
fn f(n: u64) -> f64 {
    n as f64
}

fn list(v: &[u64]) -> Vec<f64> {
    v.iter().map(|&n| f(n)).collect()
}

/// Parameters and sizes of a sidecar.
#[napi(object)]
pub struct EccLayout {
    pub k: u32,
    pub m: u32,
    pub chunk_size: f64,
    pub file_length: f64,
    pub chunks: f64,
    pub stripes: f64,
    pub sidecar_length: f64,
    /// Chunk digest: `blake3` or `sha256`.
    pub digest: String,
    /// Sidecar format version: 1 (GF(2^8) stripes) or 2 (one wide GF(2^16) code, `stripes` = 1).
    pub format_version: u32,
    /// Format v2: data chunks per local parity group (0: no local parity).
    pub local_group: f64,
    /// Format v2: local parity groups, each with one XOR parity chunk after the `m` global ones.
    pub local_groups: f64,
    /// Format v2: whether the groups are interleaved (chunk `i` in group `i mod localGroups`), as new
    /// sidecars have them, or consecutive runs of `localGroup` chunks (sidecars written before).
    pub interleaved_groups: bool,
}

fn layout(l: &core_ecc::Layout) -> EccLayout {
    EccLayout {
        k: u32::try_from(l.params.k()).unwrap_or(0),
        m: u32::try_from(l.params.m()).unwrap_or(0),
        chunk_size: f(l.params.chunk_size().get()),
        file_length: f(l.file_len),
        chunks: f(l.chunks),
        stripes: f(l.stripes),
        sidecar_length: f(l.sidecar_len),
        digest: l.params.digest().name().to_owned(),
        format_version: u32::from(l.params.format_version()),
        local_group: f(l.params.local_group()),
        local_groups: f(l.local_groups),
        interleaved_groups: l.params.interleaved_groups(),
    }
}

/// Result of `eccProtect`.
#[napi(object)]
pub struct EccProtectResult {
    pub sidecar_path: String,
    pub layout: EccLayout,
    /// Chunk-tree root of the protected file, hex.
    pub root: String,
}

/// The sidecar's own structure.
#[napi(object)]
pub struct EccSidecarHealth {
    pub header_a: bool,
    pub header_b: bool,
    pub table_a_bad_blocks: Vec<f64>,
    pub table_b_bad_blocks: Vec<f64>,
    pub actual_length: f64,
    pub expected_length: f64,
}

fn health(h: &SidecarHealth) -> EccSidecarHealth {
    EccSidecarHealth {
        header_a: h.header_a,
        header_b: h.header_b,
        table_a_bad_blocks: list(&h.table_a_bad_blocks),
        table_b_bad_blocks: list(&h.table_b_bad_blocks),
        actual_length: f(h.actual_len),
        expected_length: f(h.expected_len),
    }
}

/// Result of `eccVerify`.
#[napi(object)]
pub struct EccVerifyResult {
    /// `intact`, `repairable`, `unrepairable` or `stale`.
    pub status: String,
    /// `repairable` or `unrepairable` when `status` is `stale` (what a forced repair would find), else
    /// the same as `status`.
    pub damage_status: String,
    /// Whether the file's modification time or length differs from the sidecar's record (None: the
    /// sidecar predates these hints).
    pub modified_since_protect: Option<bool>,
    /// Bytes of the file that differ from what was protected (appended bytes included): counted byte by
    /// byte when `differing_exact`, else the bytes of the damaged chunks.
    pub differing_bytes: f64,
    /// Whether `differing_bytes` was counted byte by byte (the damaged chunks rebuilt and compared).
    pub differing_exact: bool,
    pub layout: EccLayout,
    pub actual_length: f64,
    pub damaged_chunks: Vec<f64>,
    pub damaged_parity: Vec<f64>,
    /// Data chunks among `damaged_chunks` that could not be read (`EIO`: a bad sector).
    pub unreadable_chunks: Vec<f64>,
    /// Parity slots among `damaged_parity` that could not be read.
    pub unreadable_parity: Vec<f64>,
    pub unrepairable_stripes: Vec<f64>,
    pub unrepairable_chunks: Vec<f64>,
    pub sidecar: EccSidecarHealth,
}

fn verify_result(r: &VerifyReport) -> EccVerifyResult {
    EccVerifyResult {
        status: r.status.name().to_string(),
        damage_status: r.damage_status.name().to_string(),
        modified_since_protect: r.modified_since_protect,
        differing_bytes: f(r.differing_bytes),
        differing_exact: r.differing_exact,
        layout: layout(&r.layout),
        actual_length: f(r.actual_len),
        damaged_chunks: list(&r.damaged_chunks),
        damaged_parity: list(&r.damaged_parity),
        unreadable_chunks: list(&r.unreadable_chunks),
        unreadable_parity: list(&r.unreadable_parity),
        unrepairable_stripes: list(&r.unrepairable_stripes),
        unrepairable_chunks: list(&r.unrepairable_chunks),
        sidecar: health(&r.sidecar),
    }
}

/// Result of `eccRepair`.
#[napi(object)]
pub struct EccRepairResult {
    pub before: EccVerifyResult,
    pub after: EccVerifyResult,
    pub repaired_chunks: Vec<f64>,
    pub file_rewritten: bool,
    pub sidecar_rewritten: bool,
    /// How the file was written: `in-place`, `copy`, or null when it was not.
    pub write_mode: Option<String>,
    /// What `before` covers: `file` (every chunk and parity slot) or `listed` (the stripes of the chunks
    /// passed in).
    pub checked_before: String,
    /// What `after` covers: `file` or `written` (the chunks written, the length, the sidecar's structure).
    pub checked_after: String,
    /// The file was repaired but its sidecar could not be rewritten: that error, encoded as a thrown
    /// error's message is (`src/errors.ts` `fromNative` reads it); null otherwise.
    pub sidecar_error: Option<String>,
}

fn sidecar_arg(sidecar: Option<String>) -> Option<PathBuf> {
    sidecar.map(PathBuf::from)
}

pub struct ProtectTask {
    path: PathBuf,
    sidecar: Option<PathBuf>,
    options: ProtectOptions,
    control: Arc<Control>,
}

impl Task for ProtectTask {
    type Output = ProtectReport;
    type JsValue = EccProtectResult;

    fn compute(&mut self) -> napi::Result<ProtectReport> {
        guard(|| {
            core_ecc::protect(
                &self.path,
                self.sidecar.as_deref(),
                self.options,
                &self.control,
            )
            .map_err(|e| TvError::from(e).into())
        })
    }

    fn resolve(&mut self, _env: Env, r: ProtectReport) -> napi::Result<EccProtectResult> {
        Ok(EccProtectResult {
            sidecar_path: r.sidecar_path.display().to_string(),
            layout: layout(&r.layout),
            root: to_hex(&r.root),
        })
    }
}

/// Options of `eccProtect` (see `protect()` in the TypeScript API).
#[napi(object)]
pub struct EccProtectOptions {
    /// Where to write the sidecar (default `<path>.tvecc`).
    pub sidecar: Option<String>,
    /// A preset: `low`, `medium` (the default when no custom parameters are given) or `high`.
    pub level: Option<String>,
    /// Custom parameters, all three or none: data chunks per stripe.
    pub k: Option<f64>,
    /// Parity chunks per stripe.
    pub m: Option<f64>,
    /// Chunk size in bytes.
    pub chunk_size: Option<f64>,
    /// Chunk digest: `blake3` (default) or `sha256`.
    pub digest: Option<String>,
    /// Sidecar format: `auto` (default: v2 when the file needs more than one GF(2^8) stripe), `v1` or
    /// `v2`. With custom parameters, `v2` makes `k` the file's chunk count and `m` the parity chunks.
    pub format: Option<String>,
}

/// Protect a file: write `<path>.tvecc` (or `options.sidecar`) atomically. The level, the parameters
/// and the digest are validated by the core.
#[napi(ts_return_type = "Promise<EccProtectResult>")]
pub fn ecc_protect(
    path: String,
    options: EccProtectOptions,
    control: &JobControl,
) -> napi::Result<AsyncTask<ProtectTask>> {
    guard(|| {
        let digest = match options.digest.as_deref() {
            None => ChunkDigest::default(),
            Some(name) => ChunkDigest::parse(name).ok_or_else(|| {
                invalid_argument("digest", "digest must be \"blake3\" or \"sha256\"")
            })?,
        };
        let format = match options.format.as_deref() {
            None => Format::Auto,
            Some(name) => Format::parse(name).ok_or_else(|| {
                invalid_argument("format", "format must be \"auto\", \"v1\" or \"v2\"")
            })?,
        };
        let protect = match (options.level, options.k, options.m, options.chunk_size) {
            (level, None, None, None) => {
                let level = level.unwrap_or_else(|| "medium".to_string());
                ProtectOptions::LevelFormat(
                    Level::parse(&level).ok_or_else(|| {
                        napi::Error::from(TvError::from(core_ecc::ErasureError::InvalidLevel {
                            level,
                        }))
                    })?,
                    digest,
                    format,
                )
            }
            (None, Some(k), Some(m), Some(cs)) => {
                let (k, m, cs) = (to_int("k", k)?, to_int("m", m)?, to_int("chunkSize", cs)?);
                let params = if format == Format::V2 {
                    Params::new_wide(k, m, cs)
                } else {
                    Params::new(k, m, cs)
                };
                ProtectOptions::Custom(
                    params
                        .map_err(|e| napi::Error::from(TvError::from(e)))?
                        .with_digest(digest),
                )
            }
            _ => {
                return Err(invalid_argument(
                    "options",
                    "give either level, or all of k, m and chunkSize",
                ))
            }
        };
        Ok(AsyncTask::new(ProtectTask {
            path: PathBuf::from(path),
            sidecar: sidecar_arg(options.sidecar),
            options: protect,
            control: Arc::clone(&control.inner),
        }))
    })
}

pub struct VerifyTask {
    path: PathBuf,
    sidecar: Option<PathBuf>,
    control: Arc<Control>,
}

impl Task for VerifyTask {
    type Output = VerifyReport;
    type JsValue = EccVerifyResult;

    fn compute(&mut self) -> napi::Result<VerifyReport> {
        guard(|| {
            core_ecc::verify(&self.path, self.sidecar.as_deref(), &self.control)
                .map_err(|e| TvError::from(e).into())
        })
    }

    fn resolve(&mut self, _env: Env, r: VerifyReport) -> napi::Result<EccVerifyResult> {
        Ok(verify_result(&r))
    }
}

/// Verify a file against its sidecar, read-only.
#[napi(ts_return_type = "Promise<EccVerifyResult>")]
pub fn ecc_verify(
    path: String,
    sidecar: Option<String>,
    control: &JobControl,
) -> napi::Result<AsyncTask<VerifyTask>> {
    guard(|| {
        Ok(AsyncTask::new(VerifyTask {
            path: PathBuf::from(path),
            sidecar: sidecar_arg(sidecar),
            control: Arc::clone(&control.inner),
        }))
    })
}

pub struct RepairTask {
    path: PathBuf,
    sidecar: Option<PathBuf>,
    force: bool,
    mode: RepairMode,
    chunks: Option<Vec<u64>>,
    ranges: Option<Vec<(u64, u64)>>,
    control: Arc<Control>,
}

impl Task for RepairTask {
    type Output = RepairReport;
    type JsValue = EccRepairResult;

    fn compute(&mut self) -> napi::Result<RepairReport> {
        guard(|| {
            core_ecc::repair_with(
                &self.path,
                self.sidecar.as_deref(),
                &RepairOptions {
                    force: self.force,
                    mode: self.mode,
                    chunks: self.chunks.as_deref(),
                    ranges: self.ranges.as_deref(),
                },
                &self.control,
            )
            .map_err(|e| TvError::from(e).into())
        })
    }

    fn resolve(&mut self, _env: Env, r: RepairReport) -> napi::Result<EccRepairResult> {
        let scope = |c: Checked, part: &str| match c {
            Checked::Whole => "file".to_owned(),
            Checked::Changed => part.to_owned(),
        };
        Ok(EccRepairResult {
            before: verify_result(&r.before),
            after: verify_result(&r.after),
            repaired_chunks: list(&r.repaired_chunks),
            file_rewritten: r.file_rewritten,
            sidecar_rewritten: r.sidecar_rewritten,
            write_mode: r.write_mode.map(|w| w.name().to_owned()),
            checked_before: scope(r.checked_before, "listed"),
            checked_after: scope(r.checked_after, "written"),
            sidecar_error: r
                .sidecar_error
                .as_deref()
                .map(|e| napi::Error::from(TvError::from(e)).reason),
        })
    }
}

/// Repair a file and its sidecar from parity, then re-verify. A stale-looking sidecar is refused
/// (`TV_ECC_STALE_SIDECAR`) unless `force`. `mode`: `auto` (default: in place, a copy when the file is
/// not writable), `in-place` or `copy`. `chunks`: damaged chunks from a verify report (only their
/// stripes are checked); `ranges`: damaged `[offset, length]` byte ranges, the same by their chunks.
#[napi(ts_return_type = "Promise<EccRepairResult>")]
pub fn ecc_repair(
    path: String,
    sidecar: Option<String>,
    force: Option<bool>,
    mode: Option<String>,
    chunks: Option<Vec<f64>>,
    ranges: Option<Vec<Vec<f64>>>,
    control: &JobControl,
) -> napi::Result<AsyncTask<RepairTask>> {
    guard(|| {
        let mode = match mode.as_deref() {
            None => RepairMode::Auto,
            Some(name) => RepairMode::parse(name).ok_or_else(|| {
                invalid_argument("mode", "mode must be 'auto', 'in-place' or 'copy'")
            })?,
        };
        let chunks = chunks
            .map(|v| {
                v.into_iter()
                    .map(|c| to_u64("chunks", c))
                    .collect::<napi::Result<Vec<u64>>>()
            })
            .transpose()?
            .map(|mut v| {
                v.sort_unstable();
                v.dedup();
                v
            });
        let ranges = ranges
            .map(|v| {
                v.iter()
                    .map(|r| range("ranges", r))
                    .collect::<napi::Result<Vec<(u64, u64)>>>()
            })
            .transpose()?;
        Ok(AsyncTask::new(RepairTask {
            path: PathBuf::from(path),
            sidecar: sidecar_arg(sidecar),
            force: force.unwrap_or(false),
            mode,
            chunks,
            ranges,
            control: Arc::clone(&control.inner),
        }))
    })
}

/// In-memory `k + m` erasure codec over equal-length buffers.
#[napi]
pub struct NativeErasureCodec {
    codec: ErasureCodec,
}

#[napi]
impl NativeErasureCodec {
    #[napi(constructor)]
    pub fn new(k: u32, m: u32) -> napi::Result<Self> {
        guard(|| {
            let k = usize::try_from(k).unwrap_or(usize::MAX);
            let m = usize::try_from(m).unwrap_or(usize::MAX);
            Ok(Self {
                codec: ErasureCodec::new(k, m).map_err(|e| napi::Error::from(TvError::from(e)))?,
            })
        })
    }

    /// The SIMD kernel in use (`avx512-gfni`, `avx2`, `ssse3` or `portable`).
    #[napi(getter)]
    pub fn kernel(&self) -> String {
        self.codec.kernel().name().to_string()
    }

    /// Write the `m` parity shards of `k` equal-length data shards into `parity` (`m` buffers of the
    /// same length, not overlapping each other or the data). Runs on the calling thread below
    /// [`PARALLEL_MIN`] bytes of data, split across the thread pool above.
    #[napi]
    pub fn encode_into(
        &self,
        data: Vec<Uint8ArraySlice<'_>>,
        mut parity: Vec<Uint8ArraySlice<'_>>,
    ) -> napi::Result<()> {
        guard(|| {
            let d: Vec<&[u8]> = data.iter().map(|b| &b[..]).collect();
            if overlaps(&d, parity.iter().map(|b| &b[..])) {
                return Err(invalid_argument(
                    "parity",
                    "parity buffers must not overlap each other or the data",
                ));
            }
            // SAFETY: the call is synchronous on the JS thread (nothing else can touch the buffers
            // meanwhile) and the output ranges were just checked to be disjoint from each other and
            // from every input, so these mutable slices alias nothing.
            let mut p: Vec<&mut [u8]> = parity.iter_mut().map(|b| unsafe { b.as_mut() }).collect();
            let len = d.first().map_or(0, |s| s.len());
            let result = if len.saturating_mul(d.len()) >= PARALLEL_MIN {
                self.codec.encode_parallel(&d, &mut p)
            } else {
                self.codec.encode(&d, &mut p)
            };
            result.map_err(|e| napi::Error::from(TvError::from(e)))
        })
    }

    /// Rebuild the shards marked absent in `present` in place: `shards` holds all `k + m` buffers of
    /// one length (data then parity); the present ones are read, the absent ones (which must not
    /// overlap any other shard) are overwritten. Threads as in `encodeInto`.
    #[napi]
    pub fn reconstruct_into(
        &self,
        mut shards: Vec<Uint8ArraySlice<'_>>,
        present: Vec<bool>,
    ) -> napi::Result<()> {
        guard(|| {
            if present.len() != shards.len() {
                return Err(invalid_argument(
                    "present",
                    "present must have one entry per shard",
                ));
            }
            let len = shards.first().map_or(0, |b| b.len());
            if shards.iter().any(|b| b.len() != len) {
                return Err(TvError::from(core_ecc::ErasureError::ShardLengthMismatch).into());
            }
            let (outs, ins): (Vec<_>, Vec<_>) = shards
                .iter_mut()
                .zip(&present)
                .partition(|(_, &here)| !here);
            let inputs: Vec<&[u8]> = ins.iter().map(|(b, _)| &b[..]).collect();
            if overlaps(&inputs, outs.iter().map(|(b, _)| &b[..])) {
                return Err(invalid_argument(
                    "shards",
                    "a lost shard's buffer must not overlap any other shard",
                ));
            }
            let mut lost: Vec<&mut [u8]> = outs
                .into_iter()
                // SAFETY: as in `encode_into`: synchronous, and the outputs were checked to be
                // disjoint from each other and from every input.
                .map(|(b, _)| unsafe { b.as_mut() })
                .collect();
            let mut next = ins.iter();
            let views: Vec<Option<&[u8]>> = present
                .iter()
                .map(|&here| {
                    if here {
                        next.next().map(|(b, _)| &b[..])
                    } else {
                        None
                    }
                })
                .collect();
            let parallel = len.saturating_mul(self.codec.data_shards()) >= PARALLEL_MIN;
            self.codec
                .reconstruct_lost(&views, &mut lost, parallel)
                .map_err(|e| napi::Error::from(TvError::from(e)))
        })
    }
}

/// Whether any output range overlaps another output or any input (empty ranges overlap nothing).
fn overlaps<'a>(inputs: &[&[u8]], outputs: impl Iterator<Item = &'a [u8]>) -> bool {
    let range = |s: &[u8]| {
        let start = s.as_ptr() as usize;
        (start, start + s.len())
    };
    let outs: Vec<(usize, usize)> = outputs.map(range).filter(|(a, b)| a < b).collect();
    let ins: Vec<(usize, usize)> = inputs
        .iter()
        .map(|s| range(s))
        .filter(|(a, b)| a < b)
        .collect();
    outs.iter().enumerate().any(|(i, &(a, b))| {
        let hit = |&(c, d): &(usize, usize)| a < d && c < b;
        ins.iter().any(hit) || outs.iter().skip(i + 1).any(hit)
    })
}

/// Bytes of data per call from which the in-memory codec splits its columns across the thread pool:
/// below it, the hand-off to the pool costs more than a second core gains (measured on 10 × 1 MiB
/// stripes, see docs/benchmarks-ecc.md).
const PARALLEL_MIN: usize = 32 << 20;

/// One row of `tensorvault bench ecc`.
#[napi(object)]
pub struct EccBenchResult {
    /// Bytes per second.
    pub encode: f64,
    pub reconstruct_one: f64,
    pub reconstruct_all: f64,
    pub verify: f64,
    pub verify_blake3: f64,
    pub kernel: String,
}

pub struct BenchTask {
    k: usize,
    m: usize,
    shard: usize,
    threads: usize,
    min_round: Duration,
    kernel: core_ecc::Kernel,
}

impl Task for BenchTask {
    type Output = core_ecc::bench::BenchResult;
    type JsValue = EccBenchResult;

    fn compute(&mut self) -> napi::Result<Self::Output> {
        guard(|| {
            core_ecc::bench::measure(
                self.k,
                self.m,
                self.shard,
                self.threads,
                self.min_round,
                Some(self.kernel),
            )
            .map_err(|e| TvError::from(e).into())
        })
    }

    fn resolve(&mut self, _env: Env, r: Self::Output) -> napi::Result<EccBenchResult> {
        Ok(EccBenchResult {
            encode: r.encode,
            reconstruct_one: r.reconstruct_one,
            reconstruct_all: r.reconstruct_all,
            verify: r.verify,
            verify_blake3: r.verify_blake3,
            kernel: self.kernel.name().to_string(),
        })
    }
}

/// Measure encode / reconstruct / verify throughput for one `(k, m, shard size, threads)`, with the
/// fastest kernel or the one named (`avx512-gfni`, `avx2`, `ssse3`, `portable`; it must run here).
#[napi(ts_return_type = "Promise<EccBenchResult>")]
pub fn ecc_bench(
    k: u32,
    m: u32,
    shard_size: u32,
    threads: u32,
    min_round_ms: u32,
    kernel: Option<String>,
) -> napi::Result<AsyncTask<BenchTask>> {
    guard(|| {
        let kernel = match kernel.as_deref() {
            None => core_ecc::Kernel::detect(),
            Some(name) => core_ecc::Kernel::parse(name)
                .filter(|k| k.is_supported())
                .ok_or_else(|| {
                    let here: Vec<&str> = core_ecc::Kernel::available()
                        .into_iter()
                        .map(core_ecc::Kernel::name)
                        .collect();
                    invalid_argument(
                        "kernel",
                        format!(
                            "kernel {name:?} is unknown or not supported by this CPU (available: {})",
                            here.join(", ")
                        ),
                    )
                })?,
        };
        if shard_size == 0 || shard_size > (256 << 20) || threads == 0 || threads > 256 {
            return Err(invalid_argument(
                "shardSize",
                "shardSize must be 1..256 MiB and threads 1..256",
            ));
        }
        let us = |n: u32| usize::try_from(n).unwrap_or(usize::MAX);
        Ok(AsyncTask::new(BenchTask {
            k: us(k),
            m: us(m),
            shard: us(shard_size),
            threads: us(threads),
            min_round: Duration::from_millis(u64::from(min_round_ms)),
            kernel,
        }))
    })
}
