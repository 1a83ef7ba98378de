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
