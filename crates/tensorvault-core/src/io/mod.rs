//! File access shared by every module: opening with typed errors, large positioned reads, private
//! copy-on-write mappings ([`Mapping`]) and atomic file replacement ([`AtomicFile`]).

pub mod atomic;
mod lock;
mod map;
pub mod sigbus;
mod xattr;

pub use atomic::{sync_parent, writable_target, write_atomic, AtomicFile};
pub use lock::{try_lock_fd, FileLock, LockError};
pub use map::{orphaned_mappings, Mapping, Pages, Populated};
pub use xattr::{copy_xattrs, copy_xattrs_to_path};

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

/// Why a file operation failed. Each variant carries the path and, where the OS gave one, the errno.
#[derive(Debug, thiserror::Error)]
pub enum IoError {
    /// The path does not exist.
    #[error("no such file: {path}")]
    NotFound { path: PathBuf },
    /// The process may not read the path.
    #[error("permission denied: {path}")]
    PermissionDenied { path: PathBuf },
    /// The path is a folder where a file was expected.
    #[error("is a directory, not a file: {path}")]
    IsADirectory { path: PathBuf },
    /// The path is neither a regular file nor a folder (a socket, a FIFO, a device).
    #[error("not a regular file: {path}")]
    NotARegularFile { path: PathBuf },
    /// The file changed size while it was being read.
    #[error("file changed while reading: {path} (expected {expected} bytes, read {actual})")]
    Truncated {
        path: PathBuf,
        expected: u64,
        actual: u64,
    },
    /// Any other OS error, with the operation that failed.
    #[error("{op} failed on {path}: {source}")]
    Os {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: io::Error,
    },
    /// An operation on the temporary file written in place of `dest` ([`AtomicFile`]) failed: the
    /// error is about `dest`, the file the caller asked for; `temp` is the temporary file's path.
    #[error("{op} failed on {dest}: {source}")]
    Temporary {
        dest: PathBuf,
        temp: PathBuf,
        op: &'static str,
        #[source]
        source: io::Error,
    },
}

impl IoError {
    /// Classify an OS error from operation `op` on `path`.
    #[must_use]
    pub fn from_os(path: &Path, op: &'static str, source: io::Error) -> Self {
        let path = path.to_path_buf();
        match source.kind() {
            io::ErrorKind::NotFound => Self::NotFound { path },
            io::ErrorKind::PermissionDenied => Self::PermissionDenied { path },
            io::ErrorKind::IsADirectory => Self::IsADirectory { path },
            _ => Self::Os { path, op, source },
        }
    }

    /// The path the error is about.
    #[must_use]
    pub fn path(&self) -> &Path {
        match self {
            Self::NotFound { path }
            | Self::PermissionDenied { path }
            | Self::IsADirectory { path }
            | Self::NotARegularFile { path }
            | Self::Truncated { path, .. }
            | Self::Os { path, .. } => path,
            Self::Temporary { dest, .. } => dest,
        }
    }

    /// This error as the destination's when it is about `temp`, the temporary file written in place
    /// of `dest`: [`IoError::Temporary`] (an OS error on the temporary, which is kept beside it). Any
    /// other error is returned unchanged.
    #[must_use]
    pub fn in_temporary_of(self, temp: &Path, dest: &Path) -> Self {
        if self.path() != temp {
            return self;
        }
        let errno = self.errno();
        let (op, source) = match self {
            Self::Os { op, source, .. } => (op, source),
            Self::NotFound { .. } | Self::PermissionDenied { .. } | Self::IsADirectory { .. } => (
                "open",
                io::Error::from_raw_os_error(errno.unwrap_or(libc::EIO)),
            ),
            other => return other,
        };
        Self::Temporary {
            dest: dest.to_path_buf(),
            temp: temp.to_path_buf(),
            op,
            source,
        }
    }

    /// Whether a read failed because the bytes there are lost to the medium: `EIO` (a bad sector, a
    /// failed device), `EBADMSG` or `EUCLEAN` (a file system that refused a block whose own checksum
    /// no longer matches). Readers that can rebuild such bytes (parity) treat them as erased; any other
    /// error (a descriptor, memory, a network file system gone) still fails the operation.
    #[must_use]
    pub fn is_lost_to_medium(&self) -> bool {
        matches!(
            self.errno(),
            Some(libc::EIO | libc::EBADMSG | libc::EUCLEAN)
        )
    }

    /// The OS errno behind the error, when there is one.
    #[must_use]
    pub fn errno(&self) -> Option<i32> {
        match self {
            Self::NotFound { .. } => Some(2),
            Self::PermissionDenied { .. } => Some(13),
            Self::IsADirectory { .. } => Some(21),
            Self::Os { source, .. } | Self::Temporary { source, .. } => source.raw_os_error(),
            Self::NotARegularFile { .. } | Self::Truncated { .. } => None,
        }
    }
}

/// The metadata of an opened `file`, which must be a regular file: a folder is
/// [`IoError::IsADirectory`], anything else that is not a regular file (a FIFO, a device, a socket)
/// [`IoError::NotARegularFile`].
pub fn regular_metadata(file: &File, path: &Path) -> Result<std::fs::Metadata, IoError> {
    let meta = file
        .metadata()
        .map_err(|e| IoError::from_os(path, "stat", e))?;
    if meta.is_dir() {
        return Err(IoError::IsADirectory {
            path: path.to_path_buf(),
        });
    }
    if !meta.is_file() {
        return Err(IoError::NotARegularFile {
            path: path.to_path_buf(),
        });
    }
    Ok(meta)
}

/// Open `path` for reading and return it with its length; folders and special files are refused.
///
/// The open is non-blocking, so a FIFO with no writer (or a device that blocks on open) is refused
/// at once by the file-type check instead of blocking a libuv worker forever; the flag is cleared
/// again for the regular file that is returned.
pub fn open_regular(path: &Path) -> Result<(File, u64), IoError> {
    use std::os::unix::fs::OpenOptionsExt;
    use std::os::unix::io::AsRawFd;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| IoError::from_os(path, "open", e))?;
    let meta = regular_metadata(&file, path)?;
    let fd = file.as_raw_fd();
    // SAFETY: plain fcntl calls on a descriptor owned by `file`.
    let cleared = unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        flags >= 0 && libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK) == 0
    };
    if !cleared {
        return Err(IoError::from_os(path, "fcntl", io::Error::last_os_error()));
    }
    Ok((file, meta.len()))
}

/// Fill `buf` from `file` at `offset`, retrying short reads; a premature end of file is
/// [`IoError::Truncated`].
pub fn read_exact_at(file: &File, path: &Path, buf: &mut [u8], offset: u64) -> Result<(), IoError> {
    use std::os::unix::fs::FileExt;
    let mut filled = 0usize;
    while filled < buf.len() {
        let rest = buf.get_mut(filled..).unwrap_or_default();
        let at = offset + filled as u64;
        match file.read_at(rest, at) {
            Ok(0) => {
                return Err(IoError::Truncated {
                    path: path.to_path_buf(),
                    expected: offset + buf.len() as u64,
                    actual: at,
                })
            }
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(IoError::from_os(path, "read", e)),
        }
    }
    Ok(())
}

/// Ask the kernel to start writing bytes `[offset, offset + len)` of `file` to the disk now, without
/// waiting (best effort; errors are ignored: the fsync that follows is what makes the file durable).
/// Otherwise a fresh file's dirty pages wait for the fsync, and the disk idles while the caller
/// computes its hashes and parity.
pub fn start_writeback(file: &File, offset: u64, len: u64) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let (Ok(off), Ok(n)) = (i64::try_from(offset), i64::try_from(len)) else {
            return;
        };
        // SAFETY: sync_file_range only reads its integer arguments; a bad fd or range is an error
        // code, not undefined behaviour.
        unsafe {
            libc::sync_file_range(file.as_raw_fd(), off, n, libc::SYNC_FILE_RANGE_WRITE);
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (file, offset, len);
}

/// Close `file` on a background thread. A file that a rename or an unlink has just replaced is freed
/// (its blocks returned to the file system) when its last reference goes: holding it open across the
/// rename and closing it here keeps that work off the caller's path. On the ext4 disk measured
/// (`docs/benchmarks.md`, thirteenth session) a rename over an existing file took about 0.5 s per GiB
/// of the replaced file, all of it freeing blocks. One thread closes them in order; if it cannot be
/// started, the file is closed here.
pub fn close_later(file: File) {
    use std::sync::mpsc::{channel, Sender};
    use std::sync::OnceLock;
    static CLOSER: OnceLock<Option<Sender<File>>> = OnceLock::new();
    let closer = CLOSER.get_or_init(|| {
        let (tx, rx) = channel::<File>();
        std::thread::Builder::new()
            .name("tv-close".into())
            .spawn(move || rx.into_iter().for_each(drop))
            .ok()
            .map(|_| tx)
    });
    // A file that cannot be sent (no closer thread) is dropped, i.e. closed, here.
    if let Some(tx) = closer {
        let _ = tx.send(file);
    }
}

/// Whether `len`, the length `fstat` gave for `file`, may be a placeholder rather than the number of
/// bytes a read returns: 0 (every file of procfs, cgroupfs, debugfs and tracefs, whose content is made
/// when read: `/proc/cpuinfo` reads as kilobytes), or any length on sysfs (an attribute reports a page,
/// 4096, and reads as a few bytes). Such a file is read until end of file; any other regular file's
/// length is trusted (it is what lets a file be hashed in parallel ranges and a short read be reported
/// as a change). An empty regular file counts too: reading it to the end returns nothing at once.
#[must_use]
pub fn length_is_placeholder(file: &File, len: u64) -> bool {
    len == 0 || on_sysfs(file)
}

/// Whether `file` lives on sysfs (one `fstatfs`; false when that fails or off Linux).
fn on_sysfs(file: &File) -> bool {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let mut st = std::mem::MaybeUninit::<libc::statfs>::uninit();
        // SAFETY: fstatfs writes one `statfs` into the buffer it is given (sized for it) and only
        // reads the descriptor number; the buffer is read only when the call succeeded.
        let st = unsafe {
            if libc::fstatfs(file.as_raw_fd(), st.as_mut_ptr()) != 0 {
                return false;
            }
            st.assume_init()
        };
        #[allow(clippy::useless_conversion)] // `f_type`'s width differs between targets
        let fs = i128::from(st.f_type);
        fs == i128::from(libc::SYSFS_MAGIC)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = file;
        false
    }
}

/// Advise the kernel that `file` will be read sequentially (best effort; errors are ignored).
pub fn advise_sequential(file: &File) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: posix_fadvise only reads the descriptor number; an invalid fd yields EBADF, no UB.
        unsafe {
            libc_fadvise(file.as_raw_fd());
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = file;
}

#[cfg(target_os = "linux")]
unsafe fn libc_fadvise(fd: i32) {
    extern "C" {
        fn posix_fadvise(fd: i32, offset: i64, len: i64, advice: i32) -> i32;
    }
    const POSIX_FADV_SEQUENTIAL: i32 = 2;
    // SAFETY: plain syscall wrapper from libc, arguments are plain integers.
    unsafe {
        posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    }
}

#[cfg(test)]
mod open_tests {
    use super::*;

    #[test]
    fn a_fifo_without_a_writer_is_refused_at_once_not_waited_on() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: plain syscall with a valid C string.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
        // Before the fix this blocked forever in open(2); run it on a thread and bound the wait.
        let (tx, rx) = std::sync::mpsc::channel();
        let p = fifo.clone();
        std::thread::spawn(move || {
            let _ = tx.send(open_regular(&p).map(|_| ()));
        });
        let got = rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("open_regular blocked on a FIFO");
        assert!(matches!(got, Err(IoError::NotARegularFile { .. })));
        // A regular file opened the same way reads normally (the non-blocking flag is cleared).
        let f = dir.path().join("f");
        std::fs::write(&f, b"abc").unwrap();
        let (file, len) = open_regular(&f).unwrap();
        assert_eq!(len, 3);
        // SAFETY: plain fcntl on a descriptor owned by `file`.
        let flags =
            unsafe { libc::fcntl(std::os::unix::io::AsRawFd::as_raw_fd(&file), libc::F_GETFL) };
        assert_eq!(flags & libc::O_NONBLOCK, 0);
    }
}
