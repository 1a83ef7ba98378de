//! Cancellation and progress shared between a long-running job and whoever started it.
//!
//! A [`Control`] is cheap to share (`Arc<Control>`): the worker adds processed bytes and checks
//! [`Control::is_cancelled`] between chunks; the caller reads [`Control::done`] for progress and calls
//! [`Control::cancel`] to stop the work at the next chunk boundary.
//!
//! A job that changes the user's files (a repair) calls [`Control::try_commit`] just before its first
//! irreversible step: from then on a cancellation is ignored, so the job runs to its end and reports
//! what it did instead of failing with "cancelled" after the file was already changed.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};

/// [`Control`]'s state: running, cancelled (before any commit), or committed (cancel ignored).
const RUNNING: u8 = 0;
const CANCELLED: u8 = 1;
const COMMITTED: u8 = 2;

/// Progress and cancellation state of one job.
#[derive(Debug, Default)]
pub struct Control {
    /// [`RUNNING`], [`CANCELLED`] or [`COMMITTED`]; only ever leaves [`RUNNING`], once.
    state: AtomicU8,
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

    /// Ask the job to stop at its next chunk boundary. Ignored once the job has committed
    /// ([`Control::try_commit`]).
    pub fn cancel(&self) {
        let _ = self
            .state
            .compare_exchange(RUNNING, CANCELLED, Ordering::SeqCst, Ordering::SeqCst);
    }

    /// Whether [`Control::cancel`] was called before the job committed (the job is to stop).
    #[must_use]
    pub fn is_cancelled(&self) -> bool {
        self.state.load(Ordering::SeqCst) == CANCELLED
    }

    /// The job is about to change the user's files (the rename of a rewritten file, the first write
    /// into it): `Err(Cancelled)` if it was cancelled already (nothing is changed then), otherwise
    /// from now on [`Control::cancel`] is ignored and [`Control::checkpoint`] always passes, so that
    /// the job finishes (its re-check included: bounded work) and reports the change it made. Called
    /// again after a commit, it passes.
    pub fn try_commit(&self) -> Result<(), Cancelled> {
        match self
            .state
            .compare_exchange(RUNNING, COMMITTED, Ordering::SeqCst, Ordering::SeqCst)
        {
            Ok(_) | Err(COMMITTED) => Ok(()),
            Err(_) => Err(Cancelled),
        }
    }

    /// The user's files have been changed by a step that could not call [`Control::try_commit`]
    /// first (one that checks cancellation itself before its rename): ignore cancellation from now
    /// on, even if it was asked for meanwhile.
    pub fn set_committed(&self) {
        self.state.store(COMMITTED, Ordering::SeqCst);
    }

    /// Whether the job has committed (cancellation no longer stops it).
    #[must_use]
    pub fn is_committed(&self) -> bool {
        self.state.load(Ordering::SeqCst) == COMMITTED
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
        #[cfg(not(any(test, feature = "test-hooks")))]
        self.done.fetch_add(n, Ordering::Relaxed);
        #[cfg(any(test, feature = "test-hooks"))]
        {
            let done = self.done.fetch_add(n, Ordering::Relaxed).saturating_add(n);
            #[cfg(test)]
            self.note_excess(done);
            #[cfg(feature = "test-hooks")]
            test_hooks::on_progress(self, done);
        }
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

/// Test builds only (`TV_TEST_HOOKS=1`, feature `test-hooks`): cancel a job at a chosen point of its
/// progress, as if its `AbortSignal` fired at that instant, so that a test can sweep the instant of an
/// abort across a job deterministically.
#[cfg(feature = "test-hooks")]
pub mod test_hooks {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    use super::Control;

    static CANCEL_AT: AtomicU64 = AtomicU64::new(u64::MAX);
    static FIRED: AtomicBool = AtomicBool::new(false);

    /// Arm a one-shot cancel: the first job whose progress ([`Control::done`]) reaches `bytes` is
    /// cancelled right after that [`Control::add`]. `u64::MAX` disarms.
    pub fn cancel_at(bytes: u64) {
        FIRED.store(false, Ordering::SeqCst);
        CANCEL_AT.store(bytes, Ordering::SeqCst);
    }

    /// Whether the armed cancel has fired since [`cancel_at`].
    #[must_use]
    pub fn fired() -> bool {
        FIRED.load(Ordering::SeqCst)
    }

    pub(super) fn on_progress(control: &Control, done: u64) {
        let at = CANCEL_AT.load(Ordering::Relaxed);
        if done >= at
            && CANCEL_AT
                .compare_exchange(at, u64::MAX, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
        {
            control.cancel();
            FIRED.store(true, Ordering::SeqCst);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cancel_before_the_commit_stops_the_job_and_refuses_the_commit() {
        let c = Control::new();
        assert!(c.checkpoint().is_ok());
        c.cancel();
        assert!(c.is_cancelled());
        assert_eq!(c.checkpoint(), Err(Cancelled));
        assert_eq!(c.try_commit(), Err(Cancelled));
        assert!(!c.is_committed());
    }

    #[test]
    fn a_cancel_after_the_commit_is_ignored() {
        let c = Control::new();
        assert_eq!(c.try_commit(), Ok(()));
        c.cancel();
        assert!(!c.is_cancelled());
        assert!(c.is_committed());
        assert_eq!(c.checkpoint(), Ok(()));
        assert_eq!(c.try_commit(), Ok(()));
    }

    #[test]
    fn set_committed_overrides_a_cancel_that_came_meanwhile() {
        let c = Control::new();
        c.cancel();
        c.set_committed();
        assert!(!c.is_cancelled());
        assert_eq!(c.checkpoint(), Ok(()));
    }
}
