//! Cancellation and progress shared between a long-running job and whoever started it.
//!
//! A [`Control`] is cheap to share (`Arc<Control>`): the worker adds processed bytes and checks
//! [`Control::is_cancelled`] between chunks; the caller reads [`Control::done`] for progress and calls
//! [`Control::cancel`] to stop the work at the next chunk boundary.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Progress and cancellation state of one job.
#[derive(Debug, Default)]
pub struct Control {
    cancelled: AtomicBool,
    done: AtomicU64,
    total: AtomicU64,
    /// Unit tests only: the most `done` ever exceeded `total` by (a progress report past its total).
    #[cfg(test)]
    peak_excess: AtomicU64,
}

/// Returned by [`Control::checkpoint`] when the job was cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the operation was cancelled")]
pub struct Cancelled;

impl Control {
    /// A fresh control: not cancelled, nothing done.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Ask the job to stop at its next chunk boundary.
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::SeqCst);
    }

    /// Whether [`Control::cancel`] was called.
    #[must_use]
    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed)
    }

    /// `Err(Cancelled)` once the job has been cancelled; workers call this between chunks.
    pub fn checkpoint(&self) -> Result<(), Cancelled> {
        if self.is_cancelled() {
            Err(Cancelled)
        } else {
            Ok(())
        }
    }

    /// Record `n` more units (bytes) processed.
    pub fn add(&self, n: u64) {
        #[cfg(not(test))]
        self.done.fetch_add(n, Ordering::Relaxed);
        #[cfg(test)]
        self.note_excess(self.done.fetch_add(n, Ordering::Relaxed).saturating_add(n));
    }

    /// Units processed so far.
    #[must_use]
    pub fn done(&self) -> u64 {
        self.done.load(Ordering::Relaxed)
    }

    /// Set the total amount of work, once it is known.
    pub fn set_total(&self, total: u64) {
        self.total.store(total, Ordering::Relaxed);
        #[cfg(test)]
        self.note_excess(self.done());
    }

    /// The total amount of work (0 until known).
    #[must_use]
    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    #[cfg(test)]
    fn note_excess(&self, done: u64) {
        self.peak_excess
            .fetch_max(done.saturating_sub(self.total()), Ordering::Relaxed);
    }

    /// Unit tests only: the most [`Control::done`] has exceeded [`Control::total`] by at any `add` or
    /// `set_total` (0: progress never passed its total).
    #[cfg(test)]
    #[must_use]
    pub fn peak_excess(&self) -> u64 {
        self.peak_excess.load(Ordering::Relaxed)
    }
}
