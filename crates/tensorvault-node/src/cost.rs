//! What an open file handle costs the process beyond its few bytes of JS heap, reported to the engine's
//! garbage collector: a handle dropped without `close()` holds a file descriptor (and a mapping) until
//! its finalizer runs, and a loop that opens files and drops them allocates too little JS memory for
//! the collector ever to run (a loop of unclosed lazy loads ran out of descriptors at about limit / 3
//! loads). Each handle that holds a descriptor open reports [`HANDLE_COST`] bytes of external memory
//! (`napi_adjust_external_memory`) while it is open and takes them back once, at `close()` or in its
//! finalizer: the collector then runs after some 64 MiB of reports (V8's external soft limit).
//!
//! The count goes up and down by the same amount for the same handle on the same engine (the handle's
//! own [`GcCharge`] remembers what it reported), so it never goes below what others reported (V8 13+
//! aborts the process when it goes negative), and a loop that closes what it opens keeps it flat (no
//! extra collections).
//!
//! Node runs the finalizers of collected handles on a later turn of the event loop, which a loop whose
//! `await`s all resolve at once never gives: [`open_handles`] counts this thread's charged handles, and
//! the opens wait for one turn when they piled up (`settleClosedMappings`, `src/io/mappings.ts`).

use std::cell::Cell;
use std::sync::atomic::{AtomicI64, Ordering};

use napi::Env;
use napi_derive::napi;

/// Bytes of external memory reported per open handle (one descriptor, maybe a mapping). V8 starts a
/// collection once about 64 MiB more were reported, some 64 handles (about 21 lazy loads of 3 handles)
/// dropped unclosed, far below any descriptor limit in use. Measured (qa22 #3, 10,000 closed loads and
/// opens of a small file, Node 20): 1 MiB adds no major collection to a loop that closes what it opens
/// (24–27 with and without the report), 4 MiB added a third (35): each open's report, taken back at
/// its close, then crossed the limit that the views' own external buffers had brought near. Under
/// `ulimit -n 256`, 3,000 unclosed lazy loads and 3,000 unclosed opens ran with at most about 90
/// descriptors open at 1, 2 and 4 MiB alike.
pub(crate) const HANDLE_COST: i64 = 1 << 20;

/// The cost charged to new handles ([`HANDLE_COST`]; a test build can change it to measure).
static COST: AtomicI64 = AtomicI64::new(HANDLE_COST);

thread_local! {
    /// Handles charged on this thread (one JS environment per thread) and not yet released.
    static OPEN: Cell<u32> = const { Cell::new(0) };
}

/// One handle's report: charged once when the handle reaches JS, released once.
#[derive(Default)]
pub(crate) struct GcCharge {
    /// Bytes reported for this handle; 0 when none are.
    charged: AtomicI64,
}

impl GcCharge {
    /// Report the handle's cost (once; later calls do nothing).
    pub(crate) fn charge(&self, env: Env) {
        if self.charged.load(Ordering::Acquire) != 0 {
            return;
        }
        let cost = COST.load(Ordering::Relaxed);
        if cost > 0 && env.adjust_external_memory(cost).is_ok() {
            self.charged.store(cost, Ordering::Release);
            OPEN.with(|n| n.set(n.get().saturating_add(1)));
        }
    }

    /// Take the cost back (once, and only what was reported).
    pub(crate) fn release(&self, env: Env) {
        let cost = self.charged.swap(0, Ordering::AcqRel);
        if cost != 0 {
            let _ = env.adjust_external_memory(-cost);
            OPEN.with(|n| n.set(n.get().saturating_sub(1)));
        }
    }
}

/// Handles of this thread reported to the collector and not yet closed or finalized (open files,
/// including those dropped without `close()` whose finalizers have not run yet).
#[napi]
pub fn open_handles() -> u32 {
    OPEN.with(Cell::get)
}

/// Test builds: the bytes reported per new handle (0: none; the build without the report).
#[cfg(feature = "test-hooks")]
#[napi(js_name = "__testSetHandleCost")]
#[allow(clippy::cast_possible_truncation)] // a test's small integer
pub fn test_set_handle_cost(bytes: f64) {
    COST.store(bytes as i64, Ordering::Relaxed);
}
