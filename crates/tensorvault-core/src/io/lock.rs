//! The one writer lock: an advisory `flock(2)` on a lock file, held for as long as the lock lives.
//!
//! The kernel owns the lock, so there is nothing to get wrong about its holder: a process that dies,
//! however it dies, releases it; a reused pid (a container restarted with the writer as pid 1) cannot
//! make a dead holder look alive; a lock file torn by a crash or written by hand locks nothing; two
//! processes racing for a free lock cannot both win. The file's text (`pid`, host, start time) only
//! serves the error message of a refused writer.
//!
//! The file is removed on release while the lock is still held. A racer that opened the old file and
//! got its lock after the removal notices that the path no longer names the file it locked and tries
//! again, so a removed lock file never counts as held. `flock` is per open file description: a second
//! writer in the same process is refused too.
//!
//! Network file systems: Linux emulates `flock` over NFS with POSIX byte-range locks, which NFS version 4
//! servers honour; on version 3 without a lock manager it can be local to one client (documented).

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use super::IoError;

/// Why a lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another open file description (in this or another process) holds the lock.
    #[error("{path} is locked by another writer ({holder})")]
    Held {
        /// The lock file.
        path: PathBuf,
        /// The holder's own description of itself (its JSON line), or `unknown`.
        holder: String,
    },
    /// The lock file could not be opened, checked or written.
    #[error(transparent)]
    Io(#[from] IoError),
}

/// A held writer lock (released on drop; [`FileLock::release`] also removes the file).
#[derive(Debug)]
pub struct FileLock {
    file: File,
    path: PathBuf,
}

/// How many times a lock file removed under us is reopened before giving up.
const REOPEN_TRIES: usize = 64;

impl FileLock {
    /// Take the lock on `path` (created if missing, mode 0644) without waiting, and write `holder`
    /// (a short description of this process) into it. A path that exists and is not a regular file
    /// is refused with [`IoError::NotARegularFile`] (or `IsADirectory`); a symlink is refused too.
    pub fn try_acquire(path: &Path, holder: &str) -> Result<FileLock, LockError> {
        for _ in 0..REOPEN_TRIES {
            let (file, meta) = open_lock_file(path)?;
            if let Some(lock) = lock_opened(path, file, &meta)? {
                match lock.write_holder(holder) {
                    // The holder's text only serves a refused writer's message; the lock is the
                    // flock. A full disk (or quota, or file-size limit) must not stop the writer that
                    // has it: repairing in place or reading through a commit needs no new space.
                    Err(IoError::Os { source, .. }) if no_space(&source) => {}
                    other => other?,
                }
                return Ok(lock);
            }
        }
        Err(IoError::Os {
            path: path.to_path_buf(),
            op: "flock",
            source: std::io::Error::other("the lock file kept being removed while locking it"),
        }
        .into())
    }

    /// Replace the file's text with `holder` (left empty when it cannot be written).
    fn write_holder(&self, holder: &str) -> Result<(), IoError> {
        let mut f = &self.file;
        f.set_len(0)
            .and_then(|()| {
                use std::io::Seek;
                f.seek(std::io::SeekFrom::Start(0))?;
                f.write_all(holder.as_bytes())
            })
            .map_err(|e| IoError::from_os(&self.path, "write", e))
    }

    /// The lock file's path.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Remove the lock file (while still holding the lock, and only if the path still names it), then
    /// release the lock.
    pub fn release(self) {
        if let (Ok(mine), Ok(now)) = (self.file.metadata(), std::fs::symlink_metadata(&self.path)) {
            if mine.dev() == now.dev() && mine.ino() == now.ino() {
                let _ = std::fs::remove_file(&self.path);
            }
        }
        drop(self.file);
    }
}

/// Open (or create) the lock file, refusing anything but a regular file.
fn open_lock_file(path: &Path) -> Result<(File, std::fs::Metadata), IoError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                IoError::NotARegularFile {
                    path: path.to_path_buf(),
                }
            } else {
                IoError::from_os(path, "open", e)
            }
        })?;
    let meta = super::regular_metadata(&file, path)?;
    Ok((file, meta))
}

/// Lock an opened lock file: `Ok(None)` when the path no longer names it (the previous holder
/// removed it between our open and our `flock`: then we would hold a lock on a file nobody else will
/// open; the caller opens the path again).
fn lock_opened(
    path: &Path,
    file: File,
    meta: &std::fs::Metadata,
) -> Result<Option<FileLock>, LockError> {
    // SAFETY: plain syscall on a descriptor this function owns.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
            return Err(LockError::Held {
                path: path.to_path_buf(),
                holder: read_holder(file),
            });
        }
        return Err(IoError::from_os(path, "flock", err).into());
    }
    match std::fs::symlink_metadata(path) {
        Ok(now) if now.dev() == meta.dev() && now.ino() == meta.ino() => Ok(Some(FileLock {
            file,
            path: path.to_path_buf(),
        })),
        Ok(_) => Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(IoError::from_os(path, "stat", e).into()),
    }
}

/// Take an exclusive `flock` on the open file `fd` without waiting: `Ok(true)` when taken (it lasts
/// until that open file description is closed), `Ok(false)` when another open file description, in
/// this process or another, holds it. The liveness mark of atomic writers' temporary files: a writer
/// holds it on its temp from creation to rename, and the sweep of dead writers' temps removes only
/// those it can lock ([`super::atomic`]). `fd` must be an open descriptor (`EBADF` otherwise).
pub fn try_lock_fd(fd: std::os::unix::io::RawFd) -> std::io::Result<bool> {
    // SAFETY: plain syscall on a descriptor number; an invalid one fails with EBADF.
    let rc = unsafe { libc::flock(fd, libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        return Ok(true);
    }
    let err = std::io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(false)
    } else {
        Err(err)
    }
}

/// Whether a write failed for want of space (a full disk, a quota, a file-size limit).
fn no_space(e: &std::io::Error) -> bool {
    use std::io::ErrorKind;
    matches!(
        e.kind(),
        ErrorKind::StorageFull | ErrorKind::QuotaExceeded | ErrorKind::FileTooLarge
    )
}

/// The holder's description from a lock file we could not lock (at most 4 KiB; `unknown` if empty).
fn read_holder(mut file: File) -> String {
    let mut buf = Vec::new();
    let _ = (&mut file).take(4096).read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf).trim().to_string();
    if text.is_empty() {
        "unknown".to_string()
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "tv-lock-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn second_holder_in_the_same_process_is_refused_and_sees_the_first() {
        let d = dir();
        let p = d.join("x.lock");
        let first = FileLock::try_acquire(&p, "{\"pid\":1}").unwrap();
        match FileLock::try_acquire(&p, "{\"pid\":2}") {
            Err(LockError::Held { holder, .. }) => assert_eq!(holder, "{\"pid\":1}"),
            other => panic!("expected Held, got {other:?}"),
        }
        first.release();
        assert!(!p.exists());
        let second = FileLock::try_acquire(&p, "b").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "b");
        drop(second); // dropped without release: unlocked, file left behind
        let third = FileLock::try_acquire(&p, "c").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "c");
        third.release();
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_full_disk_does_not_stop_the_writer_that_has_the_lock() {
        // Regression: the holder's text could not be written on a full disk, and the lock was
        // refused with the write error, so nothing could repair or commit in place there. The
        // child process (this test binary, this test only) runs under a file-size limit of 4 bytes,
        // which makes the holder's text fail as a full disk does.
        if let Some(p) = std::env::var_os("TV_LOCK_FULL_DISK_CHILD") {
            // SAFETY: plain libc calls on values owned here; SIGXFSZ ignored so the write fails
            // with EFBIG instead of killing the process.
            unsafe {
                libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
                let mut lim = libc::rlimit {
                    rlim_cur: 0,
                    rlim_max: 0,
                };
                assert_eq!(libc::getrlimit(libc::RLIMIT_FSIZE, &raw mut lim), 0);
                lim.rlim_cur = 4;
                assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &raw const lim), 0);
            }
            let p = PathBuf::from(p);
            let held = FileLock::try_acquire(&p, "{\"pid\":1,\"host\":\"h\"}").expect("the lock");
            assert!(matches!(
                FileLock::try_acquire(&p, "{\"pid\":2}"),
                Err(LockError::Held { .. })
            ));
            held.release();
            std::process::exit(0);
        }
        let d = dir();
        let p = d.join("full.lock");
        let st = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "io::lock::tests::a_full_disk_does_not_stop_the_writer_that_has_the_lock",
                "--test-threads=1",
            ])
            .env("TV_LOCK_FULL_DISK_CHILD", &p)
            .status()
            .unwrap();
        assert!(st.success(), "child: {st:?}");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_torn_or_foreign_lock_file_locks_nothing() {
        let d = dir();
        let p = d.join("y.lock");
        std::fs::write(&p, "{\"pid\":").unwrap();
        let a = FileLock::try_acquire(&p, "mine").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "mine");
        a.release();
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn folders_fifos_and_symlinks_are_refused() {
        let d = dir();
        let sub = d.join("sub");
        std::fs::create_dir(&sub).unwrap();
        assert!(matches!(
            FileLock::try_acquire(&sub, "x"),
            Err(LockError::Io(IoError::IsADirectory { .. }))
        ));
        let fifo = d.join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: plain syscall with a valid C string.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
        assert!(matches!(
            FileLock::try_acquire(&fifo, "x"),
            Err(LockError::Io(IoError::NotARegularFile { .. }))
        ));
        let link = d.join("link");
        std::os::unix::fs::symlink(d.join("target"), &link).unwrap();
        assert!(matches!(
            FileLock::try_acquire(&link, "x"),
            Err(LockError::Io(IoError::NotARegularFile { .. }))
        ));
        assert!(!d.join("target").exists());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_lock_file_removed_between_open_and_flock_is_not_held() {
        let d = dir();
        let p = d.join("z.lock");
        // B opens the lock file; before B locks it, A takes the lock, releases it (removing the
        // file), and C takes a lock on the new file at the same path.
        let (b_file, b_meta) = open_lock_file(&p).unwrap();
        FileLock::try_acquire(&p, "a").unwrap().release();
        let c = FileLock::try_acquire(&p, "c").unwrap();
        // B's flock succeeds on the old, removed file: it must not count as holding the lock.
        assert!(lock_opened(&p, b_file, &b_meta).unwrap().is_none());
        // And while C holds the lock, B's retry through the path is refused.
        assert!(matches!(
            FileLock::try_acquire(&p, "b"),
            Err(LockError::Held { .. })
        ));
        c.release();
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn many_threads_racing_for_a_removed_and_recreated_lock_never_hold_it_twice() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::Arc;
        let d = dir();
        let p = Arc::new(d.join("race.lock"));
        let inside = Arc::new(AtomicUsize::new(0));
        let max = Arc::new(AtomicUsize::new(0));
        let wins = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (p, inside, max, wins) = (p.clone(), inside.clone(), max.clone(), wins.clone());
                std::thread::spawn(move || {
                    for _ in 0..300 {
                        if let Ok(l) = FileLock::try_acquire(&p, "t") {
                            let n = inside.fetch_add(1, Ordering::SeqCst) + 1;
                            max.fetch_max(n, Ordering::SeqCst);
                            wins.fetch_add(1, Ordering::SeqCst);
                            std::thread::yield_now();
                            inside.fetch_sub(1, Ordering::SeqCst);
                            l.release();
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(max.load(Ordering::SeqCst), 1);
        assert!(wins.load(Ordering::SeqCst) > 0);
        std::fs::remove_dir_all(&d).unwrap();
    }
}
