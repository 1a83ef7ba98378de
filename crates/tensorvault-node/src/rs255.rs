//! `rs(N)` Reed-Solomon (reedsolo-compatible): sidecar encode/decode and the inline chunk layout, on
//! the libuv pool with progress and cancellation; large inputs are split across a rayon pool.
//!
//! The input typed arrays are borrowed zero-copy by the tasks: callers must not modify them until the
//! returned promise settles (the TS layer documents this).

use std::sync::Arc;

use napi::bindgen_prelude::{AsyncTask, Buffer, Uint8Array, Uint8ArraySlice};
use napi::{Env, Task};
use napi_derive::napi;
use tensorvault_core::ecc::rs255::{self, DecodeReport, RsCodec};
use tensorvault_core::Control;

use crate::args::to_u64;
use crate::control::JobControl;
use crate::errors::{guard, TvError};

fn codec(n: u32) -> napi::Result<Arc<RsCodec>> {
    RsCodec::shared(usize::try_from(n).unwrap_or(usize::MAX)).map_err(|e| TvError::from(e).into())
}

fn erasures_arg(erasures: Option<Vec<f64>>) -> napi::Result<Vec<u64>> {
    erasures
        .unwrap_or_default()
        .into_iter()
        .map(|e| to_u64("erasures", e))
        .collect()
}

/// Parity count for a protection level (`off`/`none`/`0` → null, `low` → 16, `med` → 32, `high` →
/// 64); any other string is `TV_ECC_UNKNOWN_PROTECTION`.
#[napi]
pub fn rs_protection_parity(level: String) -> napi::Result<Option<u32>> {
    guard(|| {
        rs255::protection_parity(&level)
            .map(|n| n.and_then(|n| u32::try_from(n).ok()))
            .map_err(|e| TvError::from(e).into())
    })
}

/// Parity count of a codec name `rs(N)` (`none` → null); anything else is `TV_ECC_UNKNOWN_CODEC`.
#[napi]
pub fn rs_parse_name(name: String) -> napi::Result<Option<u32>> {
    guard(|| {
        RsCodec::from_name(&name)
            .map(|c| c.and_then(|c| u32::try_from(c.parity_len()).ok()))
            .map_err(|e| TvError::from(e).into())
    })
}

/// Which encoding kernel this CPU uses under the `TV_CPU` cap (`avx512-gfni`, `avx2` or `portable`).
#[napi]
#[must_use]
pub fn rs_kernel() -> String {
    rs255::kernel_name().to_string()
}

/// Sidecar parity of a small input, synchronously (the TS layer uses it below 1 MiB).
#[napi]
pub fn rs_encode_sync(n: u32, data: Uint8ArraySlice<'_>) -> napi::Result<Buffer> {
    guard(|| {
        let c = codec(n)?;
        c.encode(&data, &Control::new())
            .map(Buffer::from)
            .map_err(|e| TvError::from(e).into())
    })
}

pub struct RsEncodeTask {
    codec: Arc<RsCodec>,
    data: Uint8Array,
    inline: bool,
    threads: Option<usize>,
    control: Arc<Control>,
}

impl Task for RsEncodeTask {
    type Output = Vec<u8>;
    type JsValue = Buffer;

    fn compute(&mut self) -> napi::Result<Vec<u8>> {
        guard(|| {
            let (c, d, ctl) = (&self.codec, &self.data[..], &*self.control);
            rs255::with_threads(self.threads, || {
                if self.inline {
                    c.protect_chunk(d, ctl)
                } else {
                    c.encode(d, ctl)
                }
            })
            .map_err(|e| TvError::from(e).into())
        })
    }

    fn resolve(&mut self, _env: Env, output: Vec<u8>) -> napi::Result<Buffer> {
        Ok(output.into())
    }
}

/// Sidecar parity stream of `data` under `rs(n)` (`inline`: the `[data][parity]...` layout instead).
#[napi(ts_return_type = "Promise<Buffer>")]
pub fn rs_encode(
    n: u32,
    data: Uint8Array,
    inline: bool,
    threads: Option<u32>,
    control: &JobControl,
) -> napi::Result<AsyncTask<RsEncodeTask>> {
    guard(|| {
        Ok(AsyncTask::new(RsEncodeTask {
            codec: codec(n)?,
            data,
            inline,
            threads: crate::args::threads(threads)?,
            control: Arc::clone(&control.inner),
        }))
    })
}

/// Result of `rsDecode`.
#[napi(object)]
pub struct RsDecodeResult {
    /// The repaired data (a new buffer; the input is not modified).
    pub data: Buffer,
    /// Bytes changed by the repair (data and parity).
    pub corrected_bytes: f64,
    /// Indices of the repaired blocks, ascending.
    pub corrected_blocks: Vec<f64>,
}

pub struct RsDecodeTask {
    codec: Arc<RsCodec>,
    data: Uint8Array,
    parity: Option<Uint8Array>,
    erasures: Vec<u64>,
    parity_erasures: Vec<u64>,
    threads: Option<usize>,
    control: Arc<Control>,
}

impl Task for RsDecodeTask {
    type Output = (Vec<u8>, DecodeReport);
    type JsValue = RsDecodeResult;

    fn compute(&mut self) -> napi::Result<Self::Output> {
        guard(|| {
            let (c, ctl) = (&self.codec, &*self.control);
            let erasures = &self.erasures;
            let parity_erasures = &self.parity_erasures;
            let data = &self.data[..];
            let parity = self.parity.as_deref();
            rs255::with_threads(self.threads, || match parity {
                Some(p) => c.decode_to_vec(data, p, erasures, parity_erasures, ctl),
                None => c.recover_chunk(data, erasures, ctl),
            })
            .map_err(|e| TvError::from(e).into())
        })
    }

    #[allow(clippy::cast_precision_loss)] // counts stay far below 2^53
    fn resolve(&mut self, _env: Env, (data, report): Self::Output) -> napi::Result<RsDecodeResult> {
        Ok(RsDecodeResult {
            data: data.into(),
            corrected_bytes: report.corrected_bytes as f64,
            corrected_blocks: report.corrected_blocks.iter().map(|&b| b as f64).collect(),
        })
    }
}

/// Repair `data` from its sidecar `parity` (or, when `parity` is null, recover the data of the inline
/// chunk `data`). `erasures`: byte offsets known to be wrong (in `data`, or in the inline chunk);
/// `parityErasures`: byte offsets in `parity` known to be wrong.
#[napi(ts_return_type = "Promise<RsDecodeResult>")]
pub fn rs_decode(
    n: u32,
    data: Uint8Array,
    parity: Option<Uint8Array>,
    erasures: Option<Vec<f64>>,
    parity_erasures: Option<Vec<f64>>,
    threads: Option<u32>,
    control: &JobControl,
) -> napi::Result<AsyncTask<RsDecodeTask>> {
    guard(|| {
        Ok(AsyncTask::new(RsDecodeTask {
            codec: codec(n)?,
            data,
            parity,
            erasures: erasures_arg(erasures)?,
            parity_erasures: erasures_arg(parity_erasures)?,
            threads: crate::args::threads(threads)?,
            control: Arc::clone(&control.inner),
        }))
    })
}

pub struct RsVerifyTask {
    codec: Arc<RsCodec>,
    data: Uint8Array,
    parity: Uint8Array,
    threads: Option<usize>,
    control: Arc<Control>,
}

impl Task for RsVerifyTask {
    type Output = Vec<u64>;
    type JsValue = Vec<f64>;

    fn compute(&mut self) -> napi::Result<Vec<u64>> {
        guard(|| {
            let (c, d, p, ctl) = (
                &self.codec,
                &self.data[..],
                &self.parity[..],
                &*self.control,
            );
            rs255::with_threads(self.threads, || c.verify(d, p, ctl))
                .map_err(|e| TvError::from(e).into())
        })
    }

    #[allow(clippy::cast_precision_loss)] // block indices stay far below 2^53
    fn resolve(&mut self, _env: Env, output: Vec<u64>) -> napi::Result<Vec<f64>> {
        Ok(output.iter().map(|&b| b as f64).collect())
    }
}

/// Indices of the blocks of `data` whose parity differs from the sidecar `parity` (no repair, no copy).
#[napi(ts_return_type = "Promise<Array<number>>")]
pub fn rs_verify(
    n: u32,
    data: Uint8Array,
    parity: Uint8Array,
    threads: Option<u32>,
    control: &JobControl,
) -> napi::Result<AsyncTask<RsVerifyTask>> {
    guard(|| {
        Ok(AsyncTask::new(RsVerifyTask {
            codec: codec(n)?,
            data,
            parity,
            threads: crate::args::threads(threads)?,
            control: Arc::clone(&control.inner),
        }))
    })
}
