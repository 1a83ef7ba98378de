//! Private copy-on-write file mappings.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use memmap2::{MmapMut, MmapOptions};

use super::{open_regular, IoError};

/// A whole file mapped private copy-on-write (`MAP_PRIVATE`): writes through the mapping change this
/// process's copy of the page only, never the file. Share it with `Arc<Mapping>`; the pages stay mapped
/// until the last owner of them drops them ([`Mapping::pages`]: zero-copy views handed to a runtime
/// keep the pages, not the file descriptor, which closes with the last `Mapping`).
#[derive(Debug)]
pub struct Mapping {
    pages: Arc<Pages>,
    file: File,
    path: PathBuf,
    len: u64,
}

/// The mapped pages of a [`Mapping`], shared by whatever holds views on them; unmapped (and their
/// SIGBUS registration dropped) when the last owner drops them.
#[derive(Debug)]
pub struct Pages {
    map: Option<MmapMut>,
    sigbus_slot: Option<usize>,
    /// Set when the [`Mapping`] was dropped while views still held these pages (counted in
    /// [`ORPHANED`] until the last view lets go).
    orphan: AtomicBool,
}

/// Mappings whose [`Mapping`] (the file's handle) was dropped while views still held their pages: see
/// [`orphaned_mappings`].
static ORPHANED: AtomicUsize = AtomicUsize::new(0);

/// How many mappings are still mapped only because views hold their pages after the file was closed.
///
/// A runtime that frees the views late (Node runs the finalizers of collected external buffers on a
/// later turn of its event loop, never while a loop of `await`s that all resolve at once keeps it busy)
/// can pile up one mapping per open + view + close until the kernel's limit on mappings per process
/// (`vm.max_map_count`, 65,530 by default) makes the next `mmap` or `malloc` fail. The caller watches
/// this count and lets its runtime catch up (`settleClosedMappings` in the Node package).
#[must_use]
pub fn orphaned_mappings() -> usize {
    ORPHANED.load(Ordering::Relaxed)
}

impl Drop for Pages {
    fn drop(&mut self) {
        // Unregister before the pages are unmapped (fields drop after this).
        if let Some(slot) = self.sigbus_slot.take() {
            super::sigbus::unregister(slot);
        }
        if *self.orphan.get_mut() {
            ORPHANED.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // The file's descriptor closes after this (fields drop after the body): the SIGBUS guard must
        // not `fstat` it any more (the number may be reused), even if views keep the pages mapped.
        if let Some(slot) = self.pages.sigbus_slot {
            super::sigbus::forget_file(slot);
        }
        // Views still hold the pages: they outlive the file's handle (`self.pages` is dropped after
        // this, so the last owner's `Pages::drop` sees the flag, whoever that is). No new owner can
        // appear meanwhile: owners are cloned from a `Mapping`, and this one is being dropped.
        if Arc::strong_count(&self.pages) > 1 {
            self.pages.orphan.store(true, Ordering::Relaxed);
            ORPHANED.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Pages {
    /// Base address for handing the pages to a runtime that may write them (copy-on-write keeps the file
    /// intact). Null when the mapping is empty.
    #[must_use]
    pub fn as_mut_ptr(&self) -> *mut u8 {
        self.map
            .as_ref()
            .map_or(std::ptr::null_mut(), |m| m.as_ptr().cast_mut())
    }
}

impl Mapping {
    /// Open `path` and map all of it.
    pub fn open(path: &Path) -> Result<Mapping, IoError> {
        let (file, len) = open_regular(path)?;
        Self::from_file(file, path, len)
    }

    /// Map the first `len` bytes of an already opened `file`.
    pub fn from_file(file: File, path: &Path, len: u64) -> Result<Mapping, IoError> {
        let map = if len == 0 {
            None
        } else {
            let n = usize::try_from(len).map_err(|_| IoError::Os {
                path: path.to_path_buf(),
                op: "mmap",
                source: std::io::Error::new(
                    std::io::ErrorKind::OutOfMemory,
                    "file larger than the address space",
                ),
            })?;
            // SAFETY: the mapping is private copy-on-write, so our writes never reach the file; a
            // truncation by another process is detected by `check_len` before new views are handed
            // out, and a SIGBUS in pages handed out earlier is answered by `sigbus` (zero page).
            let m = unsafe { MmapOptions::new().len(n).map_copy(&file) }
                .map_err(|e| IoError::from_os(path, "mmap", e))?;
            Some(m)
        };
        #[cfg(unix)]
        let fd = std::os::unix::io::AsRawFd::as_raw_fd(&file);
        #[cfg(not(unix))]
        let fd = -1;
        // The guard may `fstat` the descriptor until `Mapping::drop` tells it the file is closing.
        let sigbus_slot = map
            .as_ref()
            .and_then(|m| super::sigbus::register(m.as_ptr() as usize, m.len(), fd));
        Ok(Mapping {
            pages: Arc::new(Pages {
                map,
                sigbus_slot,
                orphan: AtomicBool::new(false),
            }),
            file,
            path: path.to_path_buf(),
            len,
        })
    }

    /// Length of the mapping in bytes.
    #[must_use]
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the mapping is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The mapped path.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The mapped bytes.
    #[must_use]
    pub fn bytes(&self) -> &[u8] {
        self.pages.map.as_deref().unwrap_or(&[])
    }

    /// Base address for handing the pages to a runtime that may write them (copy-on-write keeps the file
    /// intact). Null when the mapping is empty.
    #[must_use]
    pub fn as_mut_ptr(&self) -> *mut u8 {
        self.pages.as_mut_ptr()
    }

    /// The mapped pages, to keep them alive without the file (zero-copy views).
    #[must_use]
    pub fn pages(&self) -> &Arc<Pages> {
        &self.pages
    }

    /// `Err(Truncated)` when the file is now shorter than the mapping (touching the missing pages would
    /// raise SIGBUS), and an error as well once any page of this mapping faulted (SIGBUS answered with
    /// a zero page): the mapping then holds zeros that are not the file's bytes, even if the file grew
    /// back or the fault was a media error, so nothing read from it may be trusted any more.
    pub fn check_len(&self) -> Result<(), IoError> {
        let now = self
            .file
            .metadata()
            .map_err(|e| IoError::from_os(&self.path, "stat", e))?
            .len();
        if now < self.len {
            return Err(IoError::Truncated {
                path: self.path.clone(),
                expected: self.len,
                actual: now,
            });
        }
        if self.faults() > 0 {
            return Err(IoError::Os {
                path: self.path.clone(),
                op: "read",
                source: std::io::Error::other(
                    "a page of the mapped file could not be read (SIGBUS: the file was truncated \
                     or the device failed); reopen the file",
                ),
            });
        }
        Ok(())
    }

    /// SIGBUS faults answered with a zero page in this mapping so far.
    #[must_use]
    pub fn faults(&self) -> usize {
        self.pages.sigbus_slot.map_or(0, super::sigbus::slot_faults)
    }

    /// The opened file.
    #[must_use]
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Tell the kernel the mapping will be read front to back (`MADV_SEQUENTIAL`): a page fault on a
    /// page that is not cached then reads ahead as `read` does, in growing windows. Advice only: an
    /// error is ignored.
    pub fn advise_sequential(&self) {
        #[cfg(unix)]
        if let Some(m) = self.pages.map.as_ref() {
            let _ = m.advise(memmap2::Advice::Sequential);
        }
    }

    /// Fill the page-table entries of bytes `offset..offset + len` (widened to whole pages) from the
    /// page cache, reading from disk what is not cached, with `madvise(MADV_POPULATE_READ)` (Linux
    /// ≥ 5.14), so that touching those bytes later takes no page fault. Done in one pass through the
    /// kernel's page walker, this costs less than the first-touch faults it replaces.
    ///
    /// The pages are mapped read-only, as a read fault would map them: copy-on-write is kept (a later
    /// write still copies the page privately) and nothing is ever written to the file. Where the file
    /// has been truncated since it was mapped, the kernel answers with `EFAULT` instead of a SIGBUS,
    /// reported as [`IoError::Truncated`]. Kernels or systems without the advice return
    /// [`Populated::Unsupported`] and nothing is done (first touch faults as before).
    pub fn populate(&self, offset: u64, len: u64) -> Result<Populated, IoError> {
        let end = offset
            .checked_add(len)
            .filter(|&end| end <= self.len)
            .ok_or_else(|| IoError::Os {
                path: self.path.clone(),
                op: "madvise",
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!(
                        "range {offset}+{len} lies outside the {}-byte mapping",
                        self.len
                    ),
                ),
            })?;
        let Some(map) = self.pages.map.as_ref() else {
            return Ok(Populated::Yes);
        };
        if len == 0 {
            return Ok(Populated::Yes);
        }
        populate_range(self, map, offset, end)
    }
}

/// What [`Mapping::populate`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Populated {
    /// The range is mapped: reading it takes no more page faults.
    Yes,
    /// The system has no `MADV_POPULATE_READ` (Linux before 5.14, or not Linux): nothing was done.
    Unsupported,
}

#[cfg(target_os = "linux")]
fn page_size() -> u64 {
    static PAGE: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *PAGE.get_or_init(|| {
        // SAFETY: sysconf only reads a system constant.
        let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        u64::try_from(n)
            .ok()
            .filter(|p| p.is_power_of_two())
            .unwrap_or(4096)
    })
}

#[cfg(target_os = "linux")]
fn populate_range(m: &Mapping, map: &MmapMut, offset: u64, end: u64) -> Result<Populated, IoError> {
    let page = page_size();
    let start = offset & !(page - 1);
    // The mapping itself spans whole pages, so rounding the end up stays inside it.
    let stop = end.div_ceil(page) * page;
    let (Ok(at), Ok(n)) = (usize::try_from(start), usize::try_from(stop - start)) else {
        return Ok(Populated::Unsupported);
    };
    // SAFETY: `start < end <= len` of the live mapping, so `at` is inside it.
    let ptr = unsafe { map.as_ptr().add(at) }
        .cast_mut()
        .cast::<libc::c_void>();
    let mut interrupted = 0;
    loop {
        // SAFETY: `ptr..ptr + n` lies in this mapping (its last page included); MADV_POPULATE_READ
        // only maps pages read-only and never changes their contents.
        let rc = unsafe { libc::madvise(ptr, n, libc::MADV_POPULATE_READ) };
        if rc == 0 {
            return Ok(Populated::Yes);
        }
        let err = std::io::Error::last_os_error();
        match err.raw_os_error() {
            // Unknown advice: a kernel before 5.14.
            Some(libc::EINVAL) => return Ok(Populated::Unsupported),
            // A signal arrived, or a transient shortage: the pages done so far stay mapped; retry.
            Some(libc::EINTR | libc::EAGAIN) if interrupted < 100 => interrupted += 1,
            // A page past the end of the file: it was truncated under us (where a touch would SIGBUS).
            Some(libc::EFAULT) => {
                m.check_len()?;
                return Err(IoError::from_os(&m.path, "madvise", err));
            }
            _ => return Err(IoError::from_os(&m.path, "madvise", err)),
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn populate_range(
    _m: &Mapping,
    _map: &MmapMut,
    _offset: u64,
    _end: u64,
) -> Result<Populated, IoError> {
    Ok(Populated::Unsupported)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mapping_closed_while_views_hold_its_pages_is_counted_until_they_let_go() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("o");
        std::fs::write(&p, b"orphan").unwrap();
        // Closed with no view: never counted.
        let m = Mapping::open(&p).unwrap();
        let only = Arc::clone(m.pages());
        drop(only);
        let pages = Arc::clone(m.pages());
        assert!(!pages.orphan.load(Ordering::Relaxed));
        // Closed while a view holds the pages: flagged and counted (other tests may add their own).
        drop(m);
        assert!(pages.orphan.load(Ordering::Relaxed));
        assert!(orphaned_mappings() >= 1);
        // SAFETY: the pages are still mapped (six bytes, private).
        assert_eq!(unsafe { *pages.as_mut_ptr() }, b'o');
        drop(pages);
        // Many at once, released from other threads: the count comes back to where it was (no test
        // that is not this one holds orphans for long, so a lower bound is checked).
        let held: Vec<Arc<Pages>> = (0..64)
            .map(|_| Arc::clone(Mapping::open(&p).unwrap().pages()))
            .collect();
        assert!(orphaned_mappings() >= 64);
        assert!(held.iter().all(|h| h.orphan.load(Ordering::Relaxed)));
        std::thread::scope(|s| {
            for part in held.chunks(16) {
                let part = part.to_vec();
                s.spawn(move || drop(part));
            }
        });
        drop(held);
    }

    #[test]
    fn writes_through_a_private_mapping_never_reach_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"hello world").unwrap();
        let m = Mapping::open(&p).unwrap();
        assert_eq!(m.bytes(), b"hello world");
        // SAFETY: in bounds of an 11-byte private mapping.
        unsafe { *m.as_mut_ptr() = b'J' };
        assert_eq!(m.bytes()[0], b'J');
        drop(m);
        assert_eq!(std::fs::read(&p).unwrap(), b"hello world");
    }

    #[test]
    fn reading_a_page_truncated_away_survives_as_zeros() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t");
        std::fs::write(&p, vec![0xABu8; 64 * 1024]).unwrap();
        let m = Mapping::open(&p).unwrap();
        let before = super::super::sigbus::faults();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&p)
            .unwrap()
            .set_len(0)
            .unwrap();
        // SAFETY: inside the mapping; the page is gone from the file, so this raises SIGBUS, which
        // the handler answers with a zero page.
        let v = unsafe { std::ptr::read_volatile(m.as_mut_ptr().add(40_000)) };
        assert_eq!(v, 0);
        assert!(super::super::sigbus::faults() > before);
        assert!(m.check_len().is_err());
    }

    /// Kernel mappings (lines of /proc/self/maps) that start inside `[base, base + len)`.
    fn vmas_in(base: *const u8, len: usize) -> usize {
        let (lo, hi) = (base as usize, base as usize + len);
        std::fs::read_to_string("/proc/self/maps")
            .unwrap()
            .lines()
            .filter_map(|l| usize::from_str_radix(l.split('-').next().unwrap(), 16).ok())
            .filter(|&a| a >= lo && a < hi)
            .count()
    }

    /// Read every other page of `len` bytes at `base`, from `from`: the sum of the bytes read.
    fn strided_sum(base: *const u8, from: usize, len: usize) -> u64 {
        (from..len)
            .step_by(8192)
            // SAFETY: inside the mapping; pages past the file's end fault and read zeros.
            .map(|i| u64::from(unsafe { std::ptr::read_volatile(base.add(i)) }))
            .sum()
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn strided_reads_past_a_truncation_keep_the_number_of_kernel_mappings_bounded() {
        // qa22 #1: each SIGBUS mapped one zero page MAP_FIXED in the middle of the file mapping,
        // splitting it: reading every other page added two kernel mappings per fault until
        // vm.max_map_count (65,530) made the handler's mmap fail and the next fault killed the
        // process. Here 255 faults would have left about 510 mappings in this range; now the tail
        // past the new end is zeroed in one go.
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s");
        let len = 4 << 20;
        std::fs::write(&p, vec![0x11u8; len]).unwrap();
        let m = Mapping::open(&p).unwrap();
        let base = m.as_mut_ptr().cast_const();
        assert_eq!(strided_sum(base, 0, len), 512 * 0x11);
        assert_eq!(vmas_in(base, len), 1);
        // Cut in the middle of a page: that page keeps its bytes before the cut.
        let cut = (1 << 20) + 100;
        std::fs::OpenOptions::new()
            .write(true)
            .open(&p)
            .unwrap()
            .set_len(cut as u64)
            .unwrap();
        assert_eq!(strided_sum(base, 1 << 20, len), 0x11);
        assert!(m.faults() > 0);
        assert!(vmas_in(base, len) <= 2, "{} mappings", vmas_in(base, len));
        // Everything before the cut is still the file's; everything past it reads zeros.
        let bytes = m.bytes();
        assert!(bytes[..cut].iter().all(|&b| b == 0x11));
        assert!(bytes[cut..].iter().all(|&b| b == 0));
        // A second, shorter cut extends the zeroed tail downwards: still bounded.
        std::fs::OpenOptions::new()
            .write(true)
            .open(&p)
            .unwrap()
            .set_len(4096)
            .unwrap();
        assert_eq!(strided_sum(base, 0, len), 0x11);
        assert!(vmas_in(base, len) <= 3, "{} mappings", vmas_in(base, len));
        assert!(m.check_len().is_err());
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn strided_reads_of_pages_kept_after_the_file_closed_stay_bounded_too() {
        // Same as above for views that outlive the file's handle: the guard can no longer fstat the
        // file, so it zeroes from the faulting page to the end (everything past a page that is gone
        // is gone too). Reading backwards makes each fault extend the zeroed tail downwards.
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("o");
        let len = 4 << 20;
        std::fs::write(&p, vec![0x22u8; len]).unwrap();
        let m = Mapping::open(&p).unwrap();
        let pages = Arc::clone(m.pages());
        drop(m);
        let base = pages.as_mut_ptr().cast_const();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&p)
            .unwrap()
            .set_len(4096)
            .unwrap();
        let sum: u64 = (0..len / 8192)
            .rev()
            // SAFETY: inside the live mapping (the pages are held); gone pages read zeros.
            .map(|i| u64::from(unsafe { std::ptr::read_volatile(base.add(i * 8192)) }))
            .sum();
        assert_eq!(sum, 0x22);
        assert!(vmas_in(base, len) <= 3, "{} mappings", vmas_in(base, len));
    }

    #[test]
    fn a_mapping_that_faulted_is_refused_even_after_the_file_grew_back() {
        // Issue 13: a copy that raced a truncation returned zeros. The fault is remembered per
        // mapping, so the check after a copy fails even if the size is right again (or the SIGBUS was
        // a media error and the size never changed).
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("g");
        std::fs::write(&p, vec![0xCDu8; 64 * 1024]).unwrap();
        let m = Mapping::open(&p).unwrap();
        assert_eq!(m.faults(), 0);
        let f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
        f.set_len(0).unwrap();
        // SAFETY: inside the mapping; the page is gone, the handler maps a zero page.
        let v = unsafe { std::ptr::read_volatile(m.as_mut_ptr().add(50_000)) };
        assert_eq!(v, 0);
        f.set_len(64 * 1024).unwrap(); // the size is right again
        assert!(m.faults() > 0);
        assert!(m.check_len().is_err());
    }

    #[test]
    fn populate_maps_the_same_bytes_and_keeps_copy_on_write() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("p");
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&p, &data).unwrap();
        let m = Mapping::open(&p).unwrap();
        // Unaligned start and end, the whole file, an empty range.
        assert_eq!(m.populate(5000, 100_001).unwrap(), Populated::Yes);
        assert_eq!(m.populate(0, 300_000).unwrap(), Populated::Yes);
        assert_eq!(m.populate(300_000, 0).unwrap(), Populated::Yes);
        assert_eq!(m.bytes(), &data[..]);
        // SAFETY: in bounds of the mapping.
        unsafe { *m.as_mut_ptr().add(6000) = 0xEE };
        assert_eq!(m.bytes()[6000], 0xEE);
        drop(m);
        assert_eq!(std::fs::read(&p).unwrap(), data);
    }

    #[test]
    fn populate_outside_the_mapping_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("o");
        std::fs::write(&p, vec![1u8; 10_000]).unwrap();
        let m = Mapping::open(&p).unwrap();
        assert!(m.populate(9_000, 1_001).is_err());
        assert!(m.populate(u64::MAX, 2).is_err());
    }

    #[test]
    fn populate_of_a_truncated_file_is_a_typed_error_not_a_sigbus() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t");
        std::fs::write(&p, vec![0xABu8; 256 * 1024]).unwrap();
        let m = Mapping::open(&p).unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&p)
            .unwrap()
            .set_len(4096)
            .unwrap();
        let r = m.populate(0, 256 * 1024);
        if cfg!(target_os = "linux") && r.as_ref().is_ok_and(|p| *p == Populated::Unsupported) {
            return; // a kernel before 5.14: nothing to check
        }
        assert!(
            matches!(
                r,
                Err(IoError::Truncated {
                    expected: 262_144,
                    actual: 4096,
                    ..
                })
            ),
            "{r:?}"
        );
        // The page still in the file is fine.
        assert_eq!(m.populate(0, 4096).unwrap(), Populated::Yes);
    }

    #[test]
    fn empty_file_maps_to_empty_slice_and_truncation_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("e");
        std::fs::write(&p, b"").unwrap();
        assert!(Mapping::open(&p).unwrap().bytes().is_empty());
        std::fs::write(&p, vec![1u8; 10_000]).unwrap();
        let m = Mapping::open(&p).unwrap();
        m.check_len().unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&p)
            .unwrap()
            .set_len(10)
            .unwrap();
        assert!(matches!(
            m.check_len(),
            Err(IoError::Truncated {
                expected: 10_000,
                actual: 10,
                ..
            })
        ));
    }
}
