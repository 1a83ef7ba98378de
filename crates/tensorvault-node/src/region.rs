//! Zero-copy external `ArrayBuffer`s over a window of a private file mapping: the one place that hands
//! mapped bytes to JS (the safetensors reader's and the `.fold` reader's `regionBuffer`).

use std::ffi::c_void;
use std::sync::Arc;

use napi::bindgen_prelude::{FromNapiValue, Unknown};
use napi::{sys, Env};
use tensorvault_core::io::{Mapping, Pages};

use crate::errors::{invalid_argument, TvError};

/// Drops the `Arc<Pages>` leaked into an external `ArrayBuffer` when V8 collects it.
///
/// Nothing here touches V8's external-memory count: the engine accounts an external `ArrayBuffer`'s
/// length itself (and V8 13+ aborts the process if an addon's own adjustments drive its count below
/// zero). Views are typed-array windows on a few region buffers per file (see `regionBuffer`), so the
/// count grows once per region, not once per view.
unsafe extern "C" fn release_mapping(_env: sys::napi_env, _data: *mut c_void, hint: *mut c_void) {
    if !hint.is_null() {
        // SAFETY: `hint` is the `Box<Arc<Pages>>` leaked by `external_region`, released exactly
        // once here by the engine's finalizer.
        drop(unsafe { Box::from_raw(hint.cast::<Arc<Pages>>()) });
    }
}

/// Bytes `offset..offset + length` of `map` as a zero-copy external `ArrayBuffer` that keeps the
/// mapped pages alive until V8 collects it (the pages only: the file's descriptor closes when the
/// mapping is closed, so a loop that opens, views and closes holds no descriptor per iteration until
/// the collector runs). The range must be non-empty and inside the mapping
/// (`TV_INVALID_ARGUMENT` otherwise); the caller checks that the file is unchanged first.
/// `TV_EXTERNAL_BUFFERS_UNAVAILABLE` (message: `unavailable`) where the runtime forbids external
/// buffers.
pub fn external_region<'env>(
    env: &'env Env,
    map: &Arc<Mapping>,
    offset: u64,
    length: u64,
    unavailable: &str,
) -> napi::Result<Unknown<'env>> {
    let end = offset
        .checked_add(length)
        .filter(|&end| length > 0 && end <= map.len())
        .ok_or_else(|| {
            invalid_argument(
                "range",
                format!(
                    "region {offset}+{length} is empty or outside the {}-byte file",
                    map.len()
                ),
            )
        })?;
    let at = usize::try_from(offset).map_err(|_| invalid_argument("offset", "offset too large"))?;
    let len = usize::try_from(end - offset)
        .map_err(|_| invalid_argument("length", "length too large"))?;
    // SAFETY: `at + len <= map.len()` (checked above), so the pointer stays inside the live mapping,
    // which is non-empty because `len >= 1`.
    let ptr = unsafe { map.as_mut_ptr().add(at) };
    let hint = Box::into_raw(Box::new(Arc::clone(map.pages())));
    let mut value: sys::napi_value = std::ptr::null_mut();
    // SAFETY: `ptr..ptr+len` stays mapped while `hint` (an Arc of the mapped pages) lives; the finalizer
    // releases it when V8 collects the ArrayBuffer.
    let status = unsafe {
        sys::napi_create_external_arraybuffer(
            env.raw(),
            ptr.cast::<c_void>(),
            len,
            Some(release_mapping),
            hint.cast::<c_void>(),
            &raw mut value,
        )
    };
    if status != sys::Status::napi_ok {
        // SAFETY: the engine did not take ownership of `hint`; reclaim it.
        drop(unsafe { Box::from_raw(hint) });
        let (code, message) = if status == sys::Status::napi_no_external_buffers_allowed {
            ("TV_EXTERNAL_BUFFERS_UNAVAILABLE", unavailable.to_string())
        } else {
            (
                "TV_INTERNAL",
                format!("napi_create_external_arraybuffer failed with napi status {status}"),
            )
        };
        return Err(TvError::new(code, message).into());
    }
    // SAFETY: `value` was just created by the engine.
    unsafe { Unknown::from_napi_value(env.raw(), value) }
}
