//! Surviving a mapped file that another process truncates.
//!
//! Reading a page of a `MAP_PRIVATE` mapping that lies past the file's new end raises SIGBUS, which
//! kills the process. Mappings made by [`super::Mapping`] register their address range here. A SIGBUS
//! inside a registered range is answered by mapping an anonymous zero page over the faulting page, and
//! the read then continues. The fault is counted ([`faults`]), and the mapping's next size check
//! (`Mapping::check_len`) reports the truncation as a typed error. A SIGBUS anywhere else goes to the
//! previous handler, or to the default action, which ends the process as before.
//!
//! The bytes read from such a page are zeros, not file data. That is why every new view is preceded by
//! a size check. Views handed out *before* a truncation read zeros where the file's bytes are gone.

#[cfg(target_os = "linux")]
mod imp {
    use std::ptr;
    use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};
    use std::sync::Once;

    const SLOTS: usize = 4096;
    static STARTS: [AtomicUsize; SLOTS] = [const { AtomicUsize::new(0) }; SLOTS];
    static LENS: [AtomicUsize; SLOTS] = [const { AtomicUsize::new(0) }; SLOTS];
    static FAULTS: AtomicUsize = AtomicUsize::new(0);
    /// Faults answered in each slot since it was registered.
    static SLOT_FAULTS: [AtomicUsize; SLOTS] = [const { AtomicUsize::new(0) }; SLOTS];
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

    /// Register `[start, start + len)`; returns the slot to release, or None when all slots are taken
    /// (the mapping then simply is not protected).
    pub fn register(start: usize, len: usize) -> Option<usize> {
        if start == 0 || len == 0 {
            return None;
        }
        install();
        for (i, (s, l)) in STARTS.iter().zip(LENS.iter()).enumerate() {
            if l.compare_exchange(0, len, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
            {
                if let Some(f) = SLOT_FAULTS.get(i) {
                    f.store(0, Ordering::SeqCst);
                }
                s.store(start, Ordering::SeqCst);
                return Some(i);
            }
        }
        None
    }

    /// Release a slot returned by [`register`].
    pub fn unregister(slot: usize) {
        if let (Some(s), Some(l)) = (STARTS.get(slot), LENS.get(slot)) {
            s.store(0, Ordering::SeqCst);
            l.store(0, Ordering::SeqCst);
        }
    }

    pub fn faults() -> usize {
        FAULTS.load(Ordering::SeqCst)
    }

    pub fn slot_faults(slot: usize) -> usize {
        SLOT_FAULTS
            .get(slot)
            .map_or(0, |f| f.load(Ordering::SeqCst))
    }

    extern "C" fn handler(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
        // SAFETY: the kernel passes a valid siginfo for an SA_SIGINFO handler.
        let addr = unsafe { (*info).si_addr() } as usize;
        for (slot, (s, l)) in STARTS.iter().zip(LENS.iter()).enumerate() {
            let start = s.load(Ordering::SeqCst);
            if start != 0 && addr >= start && addr - start < l.load(Ordering::SeqCst) {
                let page = addr & !(PAGE.load(Ordering::Relaxed) - 1);
                // SAFETY: replaces exactly one page inside a mapping we own with anonymous zeroed
                // memory; mmap is async-signal-safe (a plain system call).
                let r = unsafe {
                    libc::mmap(
                        page as *mut libc::c_void,
                        PAGE.load(Ordering::Relaxed),
                        libc::PROT_READ | libc::PROT_WRITE,
                        libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
                        -1,
                        0,
                    )
                };
                if r != libc::MAP_FAILED {
                    FAULTS.fetch_add(1, Ordering::SeqCst);
                    if let Some(f) = SLOT_FAULTS.get(slot) {
                        f.fetch_add(1, Ordering::SeqCst);
                    }
                    return;
                }
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
    pub fn register(_start: usize, _len: usize) -> Option<usize> {
        None
    }
    pub fn unregister(_slot: usize) {}
    pub fn faults() -> usize {
        0
    }
    pub fn slot_faults(_slot: usize) -> usize {
        0
    }
}

pub(crate) use imp::{register, slot_faults, unregister};

/// How many SIGBUS faults in registered mappings were answered with a zero page (process-wide).
#[must_use]
pub fn faults() -> usize {
    imp::faults()
}
