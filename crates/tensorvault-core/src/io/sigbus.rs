//! Surviving a mapped file that another process truncates.
//!
//! Reading a page of a `MAP_PRIVATE` mapping that lies past the file's new end raises SIGBUS, which
//! kills the process. Mappings made by [`super::Mapping`] register their address range (and, while the
//! file is open, its descriptor) here. A SIGBUS inside a registered range is answered by mapping
//! anonymous zeros over *the whole part of the mapping past the file's current end* (found with
//! `fstat`, rounded up to a page), in one `mmap`, and the read then continues. The fault is counted
//! ([`faults`]), and the mapping's next size check (`Mapping::check_len`) reports the truncation as a
//! typed error. A SIGBUS anywhere else goes to the previous handler, or to the default action, which
//! ends the process as before.
//!
//! One range per truncation, not one page per fault: every `MAP_FIXED` page mapped in the middle of the
//! file mapping splits it into more kernel mappings (VMAs), so a view read with a stride (every other
//! page) past a truncation used to add two VMAs per fault until `vm.max_map_count` (65,530) made the
//! handler's `mmap` fail, and the fault then killed the process. Now a mapping gains at most one VMA
//! per truncation (the zeroed tail; a later, shorter truncation extends it downwards, where the kernel
//! merges the two). Where the file end cannot be known (the file's handle was closed while views keep
//! the pages), the zeros cover from the faulting page to the tail already zeroed or the mapping's end:
//! every page past a truncated-away page is gone too. A fault *inside* the file's current size (a
//! media error, or a file that grew back) still gets one zero page. If that `mmap` fails (the process
//! is at its VMA limit), the whole registered mapping is replaced by one anonymous range, which needs
//! no new VMA: the old views then read zeros everywhere, but the process lives.
//!
//! The bytes read from such pages are zeros, not file data. That is why every new view is preceded by
//! a size check. Views handed out *before* a truncation read zeros where the file's bytes are gone.

#[cfg(target_os = "linux")]
mod imp {
    use std::ptr;
    use std::sync::atomic::{AtomicI32, AtomicPtr, AtomicUsize, Ordering};
    use std::sync::Once;

    /// Slots per block. Blocks are chained: when every slot is taken, `register` allocates another
    /// block (outside the signal handler) and links it in with one atomic store, so there is no fixed
    /// limit on live mappings. Blocks are never freed (about 40 KiB each), so the handler can walk the
    /// chain with plain atomic loads, which is async-signal-safe.
    const SLOTS: usize = 1024;

    /// One registered mapping.
    struct Slot {
        /// Base address (page aligned); 0 when the slot is free.
        start: AtomicUsize,
        /// Length in bytes; 0 when the slot is free.
        len: AtomicUsize,
        /// Faults answered since it was registered.
        faults: AtomicUsize,
        /// The mapped file's descriptor while its handle is open (-1 after), for `fstat` in the handler.
        fd: AtomicI32,
        /// Lowest address of the zeroed tail the handler mapped (0: none yet).
        zero_from: AtomicUsize,
    }

    impl Slot {
        const fn new() -> Self {
            Slot {
                start: AtomicUsize::new(0),
                len: AtomicUsize::new(0),
                faults: AtomicUsize::new(0),
                fd: AtomicI32::new(-1),
                zero_from: AtomicUsize::new(0),
            }
        }
    }

    struct Block {
        slots: [Slot; SLOTS],
        next: AtomicPtr<Block>,
    }

    impl Block {
        // About 40 KiB: built at compile time for `FIRST`, and once per 1,024 live mappings (then
        // boxed) by `register`, on a thread's normal stack, never in the signal handler.
        #[allow(clippy::large_stack_arrays)]
        const fn new() -> Self {
            Block {
                slots: [const { Slot::new() }; SLOTS],
                next: AtomicPtr::new(ptr::null_mut()),
            }
        }
    }

    static FIRST: Block = Block::new();
    static FAULTS: AtomicUsize = AtomicUsize::new(0);

    /// The blocks in chain order, with the slot number of each one's first slot.
    fn blocks() -> impl Iterator<Item = (usize, &'static Block)> {
        let mut cur: Option<&'static Block> = Some(&FIRST);
        let mut base = 0usize;
        std::iter::from_fn(move || {
            let b = cur?;
            let next = b.next.load(Ordering::SeqCst);
            // SAFETY: `next` is null or a block leaked by `register` (never freed).
            cur = unsafe { next.as_ref() };
            let item = (base, b);
            base += SLOTS;
            Some(item)
        })
    }

    /// Slot number `slot`.
    fn locate(slot: usize) -> Option<&'static Slot> {
        blocks()
            .find(|(base, _)| slot >= *base && slot < base + SLOTS)
            .and_then(|(base, b)| b.slots.get(slot - base))
    }
    static PAGE: AtomicUsize = AtomicUsize::new(4096);
    static OLD: AtomicPtr<libc::sigaction> = AtomicPtr::new(ptr::null_mut());
    static INSTALL: Once = Once::new();

    fn install() {
        INSTALL.call_once(|| {
            // SAFETY: sysconf is always safe to call.
            let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
            if let Ok(p) = usize::try_from(page) {
                if p.is_power_of_two() {
                    PAGE.store(p, Ordering::Relaxed);
                }
            }
            // SAFETY: zeroed `sigaction` structs are valid initial values; `sigaction` is called with
            // valid pointers; the old action is leaked so the handler can read it at any time.
            unsafe {
                let old: &'static mut libc::sigaction = Box::leak(Box::new(std::mem::zeroed()));
                let mut new: libc::sigaction = std::mem::zeroed();
                new.sa_sigaction = handler as *const () as usize;
                new.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK | libc::SA_NODEFER;
                libc::sigemptyset(ptr::addr_of_mut!(new.sa_mask));
                if libc::sigaction(libc::SIGBUS, ptr::addr_of!(new), ptr::from_mut(old)) == 0 {
                    OLD.store(ptr::from_mut(old), Ordering::SeqCst);
                }
            }
        });
    }

    /// Where the next [`register`] starts looking: the slot after the one it took last (next fit).
    static CURSOR: AtomicUsize = AtomicUsize::new(0);

    #[cfg(test)]
    thread_local! {
        /// Slots this thread's registrations looked at (tests: the search is next fit, not a scan).
        pub(super) static PROBES: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    }

    /// Take a free slot among `[lo, hi)` (slot numbers), or None.
    fn take(lo: usize, hi: usize, start: usize, len: usize, fd: i32) -> Option<usize> {
        for (base, b) in blocks() {
            if base >= hi {
                break;
            }
            if base + SLOTS <= lo {
                continue;
            }
            let from = lo.saturating_sub(base);
            let to = (hi - base).min(SLOTS);
            let Some(slots) = b.slots.get(from..to) else {
                continue;
            };
            for (j, sl) in slots.iter().enumerate() {
                #[cfg(test)]
                PROBES.with(|p| p.set(p.get() + 1));
                // A plain load first: a taken slot costs a read, not a locked compare-exchange.
                if sl.len.load(Ordering::Relaxed) != 0
                    || sl
                        .len
                        .compare_exchange(0, len, Ordering::SeqCst, Ordering::SeqCst)
                        .is_err()
                {
                    continue;
                }
                sl.faults.store(0, Ordering::SeqCst);
                sl.zero_from.store(0, Ordering::SeqCst);
                sl.fd.store(fd, Ordering::SeqCst);
                // Last: the handler matches on `start`.
                sl.start.store(start, Ordering::SeqCst);
                let slot = base + from + j;
                CURSOR.store(slot + 1, Ordering::Relaxed);
                return Some(slot);
            }
        }
        None
    }

    /// Register `[start, start + len)`, a mapping of file descriptor `fd` from offset 0 (-1 if
    /// unknown); returns the slot to release (None only for an empty range). The descriptor must stay
    /// open until [`forget_file`] or [`unregister`]. There is no fixed limit: a new block of slots is
    /// chained when all are taken. The search starts after the slot taken last and wraps around (next
    /// fit): mappings are released roughly in the order they were made (views are collected oldest
    /// first), so with thousands of live mappings a registration still finds a free slot in a few steps
    /// instead of scanning every taken one.
    pub fn register(start: usize, len: usize, fd: i32) -> Option<usize> {
        if start == 0 || len == 0 {
            return None;
        }
        install();
        loop {
            let from = CURSOR.load(Ordering::Relaxed);
            if let Some(slot) =
                take(from, usize::MAX, start, len, fd).or_else(|| take(0, from, start, len, fd))
            {
                return Some(slot);
            }
            // Every slot is taken: chain a new block (another thread may have done so meanwhile;
            // then ours is dropped and the loop uses theirs).
            let last = blocks().last().map_or(&FIRST, |(_, b)| b);
            let fresh = Box::into_raw(Box::new(Block::new()));
            if last
                .next
                .compare_exchange(ptr::null_mut(), fresh, Ordering::SeqCst, Ordering::SeqCst)
                .is_err()
            {
                // SAFETY: `fresh` was never published; we still own it.
                drop(unsafe { Box::from_raw(fresh) });
            }
        }
    }

    /// The file's descriptor is about to be closed (the pages may stay mapped for views): the handler
    /// stops using it.
    pub fn forget_file(slot: usize) {
        if let Some(sl) = locate(slot) {
            sl.fd.store(-1, Ordering::SeqCst);
        }
    }

    /// Release a slot returned by [`register`].
    pub fn unregister(slot: usize) {
        if let Some(sl) = locate(slot) {
            sl.start.store(0, Ordering::SeqCst);
            sl.fd.store(-1, Ordering::SeqCst);
            sl.len.store(0, Ordering::SeqCst);
        }
    }

    pub fn faults() -> usize {
        FAULTS.load(Ordering::SeqCst)
    }

    pub fn slot_faults(slot: usize) -> usize {
        locate(slot).map_or(0, |sl| sl.faults.load(Ordering::SeqCst))
    }

    /// The size of the file open as `fd`, or None (no descriptor, or `fstat` failed).
    /// Async-signal-safe: one system call on a stack buffer.
    fn file_size(fd: i32) -> Option<usize> {
        if fd < 0 {
            return None;
        }
        // SAFETY: a zeroed `stat` is a valid buffer; `fstat` only writes into it.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: `st` is a valid, writable `stat`; a stale descriptor only makes `fstat` fail (or
        // describe another file, which at worst zeroes more of a mapping that is going away).
        if unsafe { libc::fstat(fd, ptr::addr_of_mut!(st)) } != 0 {
            return None;
        }
        usize::try_from(st.st_size).ok()
    }

    /// Map anonymous zeros over `[lo, hi)`; true on success. Async-signal-safe (a plain system call).
    fn zeros(lo: usize, hi: usize) -> bool {
        // SAFETY: callers pass a page-aligned range inside a mapping registered here (ours), which is
        // replaced by anonymous private memory of the same protection.
        let r = unsafe {
            libc::mmap(
                lo as *mut libc::c_void,
                hi - lo,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
                -1,
                0,
            )
        };
        r != libc::MAP_FAILED
    }

    /// Answer a SIGBUS at `addr` inside the mapping of slot `sl` (`start`, `len`): map zeros where
    /// the file is gone (see the module doc). True when the fault can be retried.
    fn answer(sl: &Slot, start: usize, len: usize, addr: usize) -> bool {
        let ps = PAGE.load(Ordering::Relaxed);
        let up = |x: usize| x.saturating_add(ps - 1) & !(ps - 1);
        let page = addr & !(ps - 1);
        let end = up(start.saturating_add(len));
        let z = sl.zero_from.load(Ordering::SeqCst);
        let tail = if z == 0 { end } else { z };
        let (lo, hi) = if page >= tail {
            // Inside the tail already zeroed (another thread's fault is mapping it): that page.
            (page, page + ps)
        } else {
            match file_size(sl.fd.load(Ordering::SeqCst)).map(|n| start.saturating_add(up(n))) {
                // The page is inside the file: a media error, or the file grew back. That page only.
                Some(eof) if eof > page => (page, page + ps),
                // Everything from the file's end (or the mapping's start) to the zeroed tail.
                Some(eof) => (eof.max(start), tail),
                // The file's handle is closed: from this page on, all is past the end.
                None => (page, tail),
            }
        };
        if zeros(lo, hi) {
            if hi == tail {
                let _ = sl
                    .zero_from
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |cur| {
                        Some(if cur == 0 { lo } else { cur.min(lo) })
                    });
            }
            return true;
        }
        // No room for one more VMA: replace the whole mapping with one anonymous range (no split).
        if zeros(start, end) {
            sl.zero_from.store(start, Ordering::SeqCst);
            return true;
        }
        false
    }

    extern "C" fn handler(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
        // SAFETY: the kernel passes a valid siginfo for an SA_SIGINFO handler.
        let addr = unsafe { (*info).si_addr() } as usize;
        for sl in blocks().flat_map(|(_, b)| b.slots.iter()) {
            let start = sl.start.load(Ordering::SeqCst);
            let len = sl.len.load(Ordering::SeqCst);
            if start != 0 && addr >= start && addr - start < len && answer(sl, start, len, addr) {
                FAULTS.fetch_add(1, Ordering::SeqCst);
                sl.faults.fetch_add(1, Ordering::SeqCst);
                return;
            }
        }
        // Not ours: hand over to whoever was there before.
        let old = OLD.load(Ordering::SeqCst);
        // SAFETY: `old` is the leaked previous action (or null); calling it mirrors what the kernel
        // would have done; for SIG_DFL/SIG_IGN we restore it and return so the fault repeats under it.
        unsafe {
            if old.is_null() {
                libc::signal(libc::SIGBUS, libc::SIG_DFL);
                return;
            }
            let o = &*old;
            if o.sa_sigaction == libc::SIG_DFL || o.sa_sigaction == libc::SIG_IGN {
                libc::sigaction(libc::SIGBUS, old, ptr::null_mut());
            } else if o.sa_flags & libc::SA_SIGINFO != 0 {
                let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                    std::mem::transmute(o.sa_sigaction);
                f(sig, info, ctx);
            } else {
                let f: extern "C" fn(libc::c_int) = std::mem::transmute(o.sa_sigaction);
                f(sig);
            }
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    pub fn register(_start: usize, _len: usize, _fd: i32) -> Option<usize> {
        None
    }
    pub fn forget_file(_slot: usize) {}
    pub fn unregister(_slot: usize) {}
    pub fn faults() -> usize {
        0
    }
    pub fn slot_faults(_slot: usize) -> usize {
        0
    }
}

pub(crate) use imp::{forget_file, register, slot_faults, unregister};

/// How many SIGBUS faults in registered mappings were answered with a zero page (process-wide).
#[must_use]
pub fn faults() -> usize {
    imp::faults()
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// Register `n` page-sized ranges from `base` that are never mapped or touched (live slots).
    fn fake_slots(base: usize, n: usize) -> Vec<usize> {
        let slots: Vec<usize> = (0..n)
            .filter_map(|i| register(base + i * 4096, 4096, -1))
            .collect();
        assert_eq!(slots.len(), n);
        slots
    }

    #[test]
    fn more_live_mappings_than_one_block_holds_are_all_protected() {
        // Issue 13: the guard had 4,096 fixed slots; with more live mappings a truncation killed the
        // process. Occupy 4,200 slots with ranges that are never touched, then truncate a real
        // mapping under a reader: the read must survive as zeros.
        let slots = fake_slots(0x7e00_0000_0000, 4200);
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("late");
        std::fs::write(&p, vec![0x5Au8; 64 * 1024]).unwrap();
        let m = crate::io::Mapping::open(&p).unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&p)
            .unwrap()
            .set_len(0)
            .unwrap();
        // SAFETY: inside the mapping; the page is gone, so this faults and the handler answers.
        let v = unsafe { std::ptr::read_volatile(m.as_mut_ptr().add(30_000)) };
        assert_eq!(v, 0);
        assert!(m.faults() > 0);
        for s in slots {
            unregister(s);
        }
    }

    #[test]
    fn registering_with_thousands_of_live_mappings_does_not_scan_them() {
        // Defect: `register` tried a compare-exchange on every slot from the first one, so each new
        // mapping cost a locked operation per live mapping (5 % of a checkpoint open loop whose views
        // kept a few thousand mappings alive until collected). With the next-fit cursor a registration
        // looks at a few slots. Other tests register concurrently, hence an average and a wide margin.
        let held = fake_slots(0x7d00_0000_0000, 3000);
        let before = imp::PROBES.with(std::cell::Cell::get);
        let more = fake_slots(0x7d00_0000_0000 + 3000 * 4096, 200);
        let probes = imp::PROBES.with(std::cell::Cell::get) - before;
        assert!(
            probes < 200 * 50,
            "{probes} slots looked at for 200 registrations"
        );
        for s in held.into_iter().chain(more) {
            unregister(s);
        }
    }
}
