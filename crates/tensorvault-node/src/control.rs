//! `JobControl`: the JS handle on a running job's progress and cancellation.

use std::sync::Arc;

use napi_derive::napi;
use tensorvault_core::Control;

/// Progress and cancellation of one native job. JS polls `done`/`total` for progress and calls
/// `cancel()` when its `AbortSignal` fires; the job stops at its next chunk boundary.
#[napi]
pub struct JobControl {
    pub(crate) inner: Arc<Control>,
}

#[napi]
impl JobControl {
    #[napi(constructor)]
    #[must_use]
    pub fn new() -> Self {
        Self {
            inner: Arc::new(Control::new()),
        }
    }

    /// Ask the job to stop.
    #[napi]
    pub fn cancel(&self) {
        self.inner.cancel();
    }

    /// Whether `cancel()` was called.
    #[napi(getter)]
    pub fn cancelled(&self) -> bool {
        self.inner.is_cancelled()
    }

    /// Bytes processed so far.
    #[napi(getter)]
    #[allow(clippy::cast_precision_loss)] // byte counts stay far below 2^53
    pub fn done(&self) -> f64 {
        self.inner.done() as f64
    }

    /// Total bytes of the job (0 until known).
    #[napi(getter)]
    #[allow(clippy::cast_precision_loss)]
    pub fn total(&self) -> f64 {
        self.inner.total() as f64
    }
}

impl Default for JobControl {
    fn default() -> Self {
        Self::new()
    }
}
