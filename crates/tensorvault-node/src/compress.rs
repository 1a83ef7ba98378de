//! gzip members with libdeflate, on the libuv pool.

use std::sync::Arc;

use napi::bindgen_prelude::{AsyncTask, Buffer, Uint8Array};
use napi::{Env, Task};
use napi_derive::napi;
use tensorvault_core::compress::{self, GzipLevel, GzipOptions, MemberSize};
use tensorvault_core::Control;

use crate::args::to_i64;
use crate::control::JobControl;
use crate::errors::{guard, TvError};

pub struct GzipTask {
    data: Uint8Array,
    options: GzipOptions,
    control: Arc<Control>,
}

impl Task for GzipTask {
    type Output = Vec<u8>;
    type JsValue = Buffer;

    fn compute(&mut self) -> napi::Result<Vec<u8>> {
        guard(|| {
            compress::gzip_members(&self.data, &self.options, &self.control)
                .map_err(|e| TvError::from(e).into())
        })
    }

    fn resolve(&mut self, _env: Env, output: Vec<u8>) -> napi::Result<Buffer> {
        Ok(output.into())
    }
}

/// Compress `data` on the libuv pool into consecutive gzip members of `memberSize` input bytes (default
/// 1 MiB), at gzip `level` 1–9 (libdeflate's level of the same number). `threads` (default 1: this
/// libuv thread only) compresses members in parallel. The result is one valid multi-member `.gz`.
#[napi(ts_return_type = "Promise<Buffer>")]
pub fn gzip_members(
    data: Uint8Array,
    level: f64,
    member_size: Option<f64>,
    threads: Option<u32>,
    control: &JobControl,
) -> napi::Result<AsyncTask<GzipTask>> {
    guard(|| {
        let level = GzipLevel::new(to_i64("level", level)?).map_err(TvError::from)?;
        let member_size = match member_size {
            None => MemberSize::default(),
            Some(m) => {
                let m = to_i64("memberSize", m)?;
                // A negative size is reported as 0 (also out of range).
                MemberSize::new(u64::try_from(m).unwrap_or(0)).map_err(TvError::from)?
            }
        };
        let threads = crate::args::threads(threads)?.or(Some(1));
        Ok(AsyncTask::new(GzipTask {
            data,
            options: GzipOptions {
                level,
                member_size,
                threads,
            },
            control: Arc::clone(&control.inner),
        }))
    })
}
