//! Hooks for the test suite: they prove that a Rust panic surfaces as a typed JS error, on the JS thread
//! and on the libuv pool. Not part of the public TypeScript API.

use napi::bindgen_prelude::AsyncTask;
use napi::{Env, Task};
use napi_derive::napi;

use crate::errors::guard;

/// Panics inside the guard of a synchronous entry point.
#[napi(js_name = "__testPanicSync")]
#[allow(clippy::panic)] // the point of this hook: it must panic so the test sees the guard catch it
pub fn test_panic_sync() -> napi::Result<()> {
    guard(|| panic!("test panic (sync)"))
}

pub struct PanicTask;

impl Task for PanicTask {
    type Output = ();
    type JsValue = ();

    #[allow(clippy::panic)] // see above
    fn compute(&mut self) -> napi::Result<()> {
        guard(|| panic!("test panic (libuv pool)"))
    }

    fn resolve(&mut self, _env: Env, (): ()) -> napi::Result<()> {
        Ok(())
    }
}

/// Panics inside the guard of an async task's `compute` on the libuv pool.
#[napi(js_name = "__testPanicAsync")]
#[must_use]
pub fn test_panic_async() -> AsyncTask<PanicTask> {
    AsyncTask::new(PanicTask)
}

/// A write armed by [`test_after_header_read`]: the file, how many more header reads of it to let
/// pass, and the bytes to write at offset 0 after the last one.
static AFTER_HEADER_READ: std::sync::Mutex<Option<(String, u32, Vec<u8>)>> =
    std::sync::Mutex::new(None);

/// Arm a one-shot write: after the `nth` (1 = next) header read of `path` by a safetensors open (the
/// checkpoint open's fast path or `openSafetensorsSmall`), write `bytes` at offset 0 of the file, as a
/// writer racing the open would, between the read the header is parsed from and its check.
#[napi(js_name = "__testAfterHeaderRead")]
pub fn test_after_header_read(path: String, nth: u32, bytes: napi::bindgen_prelude::Buffer) {
    if let Ok(mut g) = AFTER_HEADER_READ.lock() {
        *g = Some((path, nth, bytes.to_vec()));
    }
}

/// Called after a header read of `path` (test builds only): performs the armed write when due.
pub(crate) fn after_header_read(path: &str) {
    use std::os::unix::fs::FileExt as _;
    let Ok(mut g) = AFTER_HEADER_READ.lock() else {
        return;
    };
    let due = match g.as_mut() {
        Some((p, n, _)) if p == path => {
            *n = n.saturating_sub(1);
            *n == 0
        }
        _ => false,
    };
    if due {
        if let Some((p, _, bytes)) = g.take() {
            if let Ok(f) = std::fs::OpenOptions::new().write(true).open(&p) {
                let _ = f.write_all_at(&bytes, 0);
            }
        }
    }
}

/// Arm a one-shot cancel of the next native job whose progress reaches `bytes` (as if its
/// `AbortSignal` fired at that instant); a negative value disarms. See
/// `tensorvault_core::control::test_hooks`.
#[napi(js_name = "__testCancelAtProgress")]
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // a test's byte count
pub fn test_cancel_at_progress(bytes: f64) {
    tensorvault_core::control::test_hooks::cancel_at(if bytes < 0.0 {
        u64::MAX
    } else {
        bytes as u64
    });
}

/// Whether the cancel armed by `__testCancelAtProgress` has fired.
#[napi(js_name = "__testCancelFired")]
#[must_use]
pub fn test_cancel_fired() -> bool {
    tensorvault_core::control::test_hooks::fired()
}

/// Set the extended attribute `name` of the file at `path` to `value` (`setxattr`, symlinks
/// followed): 0, or the errno it failed with (`EOPNOTSUPP` on a file system without user xattrs).
/// Linux only (elsewhere `EOPNOTSUPP`). For the tests of what a replaced file keeps.
#[napi(js_name = "__testSetXattr")]
#[must_use]
pub fn test_set_xattr(path: String, name: String, value: napi::bindgen_prelude::Buffer) -> i32 {
    #[cfg(target_os = "linux")]
    {
        let (Ok(p), Ok(n)) = (std::ffi::CString::new(path), std::ffi::CString::new(name)) else {
            return libc::EINVAL;
        };
        // SAFETY: NUL-terminated path and name; `value` is `value.len()` readable bytes.
        let rc = unsafe {
            libc::setxattr(
                p.as_ptr(),
                n.as_ptr(),
                value.as_ptr().cast(),
                value.len(),
                0,
            )
        };
        if rc == 0 {
            0
        } else {
            std::io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EIO)
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (path, name, value);
        libc::EOPNOTSUPP
    }
}

/// The value of the extended attribute `name` of the file at `path` (`getxattr`, symlinks followed),
/// or null when it has none (or it cannot be read). Linux only (elsewhere null).
#[napi(js_name = "__testGetXattr")]
#[must_use]
pub fn test_get_xattr(path: String, name: String) -> Option<napi::bindgen_prelude::Buffer> {
    #[cfg(target_os = "linux")]
    {
        let p = std::ffi::CString::new(path).ok()?;
        let n = std::ffi::CString::new(name).ok()?;
        let mut buf = vec![0u8; 65_536];
        // SAFETY: NUL-terminated path and name; `buf` is `buf.len()` writable bytes.
        let got =
            unsafe { libc::getxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        let len = usize::try_from(got).ok()?;
        buf.truncate(len);
        Some(buf.into())
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (path, name);
        None
    }
}
