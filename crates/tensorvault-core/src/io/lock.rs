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
    /// The file holds the note of a tensorvault from before the flock lock (built before f236a3e),
    /// naming a live process on this host: that writer locks by the note alone and takes no flock,
    /// so the flock being free does not mean the file is free.
    #[error("{path} is held by an older tensorvault (pid {pid}), which locks by its note and takes no flock")]
    HeldByOlder {
        /// The lock file.
        path: PathBuf,
        /// The older writer's pid.
        pid: i32,
        /// The note (its JSON line).
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
                // The flock is ours; an older build's writer may still hold the file by its note.
                // Refused without touching the note (the lock is let go, the file left as it is).
                if let Some((pid, note)) = older_live_holder(&lock.file) {
                    drop(lock);
                    return Err(LockError::HeldByOlder {
                        path: path.to_path_buf(),
                        pid,
                        holder: note,
                    });
                }
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

/// The note of an older tensorvault's lock that names a live process on this host, as `(pid, note)`.
///
/// Builds before f236a3e locked by the note alone: the event log (and restore) created the lock file
/// with `O_EXCL` holding `{pid, hostname, created_at, token}`, the ring log hard-linked
/// `{pid, hostname, since, start}` into place (`start`: field 22 of `/proc/PID/stat`, when readable).
/// Today's note is `{pid, hostname, since}` and never has `token` or `start`, so it is never taken for
/// an old one (and is only read once its flock is free: its writer is gone). An old note is stale, and
/// taken over as before, when its pid is not alive, is this process (a reused pid: this process is not
/// an old build), or names a process started at another time than `start` (ring) or after `created_at`
/// (event log): the pid was reused. A note from another host cannot be checked from here and is taken
/// over too (as before; `docs/formats/eventlog.md`, Single writer).
///
/// An old ring note without `start` (written where `/proc` could not be read) has today's three keys,
/// but the old ring log ended its note with a newline and today's note has none: a note of exactly
/// `{pid, hostname, since}` followed by `\n` is the old ring log's, and `since` serves as its
/// `created_at` (a process started after it is not its writer).
fn older_live_holder(file: &File) -> Option<(i32, String)> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; 4096];
    let n = file.read_at(&mut buf, 0).ok()?;
    let raw = String::from_utf8_lossy(buf.get(..n)?).into_owned();
    let text = raw.trim().to_string();
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    let token = v.get("token").is_some_and(serde_json::Value::is_string)
        && v.get("created_at")
            .is_some_and(serde_json::Value::is_string);
    let start = v.get("start").and_then(serde_json::Value::as_str);
    let ring_without_start = start.is_none() && old_ring_note_without_start(&raw, &v);
    if !token && start.is_none() && !ring_without_start {
        return None; // today's note (or not a note at all)
    }
    let pid = i32::try_from(v.get("pid")?.as_u64()?).ok()?;
    if pid <= 0 || u32::try_from(pid).ok()? == std::process::id() {
        return None;
    }
    if v.get("hostname")?.as_str()? != local_hostname()? {
        return None;
    }
    // SAFETY: kill with signal 0 only checks that the pid exists and may be signalled.
    let rc = unsafe { libc::kill(pid, 0) };
    if rc != 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EPERM) {
        return None; // no such process: a stale note
    }
    if let Some(start) = start {
        // The same pid started at another time is another process (the pid was reused).
        if process_start(pid).is_some_and(|now| now != start) {
            return None;
        }
    }
    let created = v
        .get(if ring_without_start {
            "since"
        } else {
            "created_at"
        })
        .and_then(serde_json::Value::as_str)
        .and_then(iso_millis);
    if let (Some(created), Some(started)) = (created, process_started_millis(pid)) {
        // A process that started after the note was written is not its writer (the pid was reused);
        // one second of slack for the boot time's whole seconds.
        if started > created + 1000 {
            return None;
        }
    }
    Some((pid, text))
}

/// Whether `raw` (the lock file's whole text, parsed as `v`) is the note of a ring log from before the
/// flock lock written without `start`: exactly the keys `pid`, `hostname` and `since` (a string), and
/// one newline after the JSON, as that build wrote it (`JSON.stringify(info) + "\n"`). Today's note is
/// written without the newline (`src/io/lock.ts`, `holderLine`), so it is never taken for this one.
fn old_ring_note_without_start(raw: &str, v: &serde_json::Value) -> bool {
    let Some(obj) = v.as_object() else {
        return false;
    };
    let body = raw.strip_suffix('\n');
    obj.len() == 3
        && obj.get("pid").is_some_and(serde_json::Value::is_u64)
        && obj
            .get("hostname")
            .is_some_and(serde_json::Value::is_string)
        && obj.get("since").is_some_and(serde_json::Value::is_string)
        && body.is_some_and(|b| {
            !b.ends_with(char::is_whitespace) && !b.starts_with(char::is_whitespace)
        })
}

/// When process `pid` started, in milliseconds since the Unix epoch (`/proc/stat`'s boot time plus
/// the process's start time after boot), or `None` where `/proc` does not say.
fn process_started_millis(pid: i32) -> Option<i64> {
    let ticks: i64 = process_start(pid)?.parse().ok()?;
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let btime: i64 = stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    // SAFETY: sysconf reads a constant of the system.
    let hz = i64::from(i32::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).ok()?);
    if hz <= 0 {
        return None;
    }
    Some(btime * 1000 + ticks * 1000 / hz)
}

/// Milliseconds since the Unix epoch of a UTC time as JavaScript's `toISOString()` writes it
/// (`YYYY-MM-DDTHH:MM:SS.sssZ`), or `None` for anything else.
fn iso_millis(text: &str) -> Option<i64> {
    if text.len() != 24 || !text.ends_with('Z') {
        return None;
    }
    let num = |from: usize, to: usize| -> Option<i64> {
        let part = text.get(from..to)?;
        if part.bytes().all(|c| c.is_ascii_digit()) {
            part.parse().ok()
        } else {
            None
        }
    };
    let (year, month, day) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (hour, minute, second, milli) = (num(11, 13)?, num(14, 16)?, num(17, 19)?, num(20, 23)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    // Days from the civil date (H. Hinnant's algorithm).
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year - era * 400;
    let doy = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 24 + hour) * 60 + minute) * 60_000 + second * 1000 + milli)
}

/// Field 22 (start time, in clock ticks after boot) of `/proc/PID/stat`, as the older ring log wrote it.
fn process_start(pid: i32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count the fields after the last ')'.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    rest.split(' ').nth(22 - 3).map(str::to_string)
}

/// This host's name (as `os.hostname()` gives it), or `None` when it cannot be read.
fn local_hostname() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname writes at most that many bytes.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return None;
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    Some(String::from_utf8_lossy(buf.get(..end)?).into_owned())
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
    fn an_older_builds_note_naming_a_live_local_process_refuses_the_lock() {
        // Regression: builds before f236a3e locked by the note alone (no flock); today's writer took
        // the free flock, overwrote the note, and both appended to the same log.
        let d = dir();
        let host = local_hostname().unwrap();
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id();
        let start = process_start(i32::try_from(pid).unwrap()).unwrap();
        let notes = [
            // the event log's (and restore's) note, written after the child started
            format!(
                "{{\"pid\":{pid},\"hostname\":\"{host}\",\"created_at\":\"2999-01-01T00:00:00.000Z\",\"token\":\"ab\"}}"
            ),
            // the ring log's note
            format!(
                "{{\"pid\":{pid},\"hostname\":\"{host}\",\"since\":\"2026-11-30T00:00:00.000Z\",\"start\":\"{start}\"}}\n"
            ),
            // the ring log's note where `/proc` could not be read (no `start`), written after the
            // child started: today's keys, but ended by a newline as the old ring log wrote it
            format!(
                "{{\"pid\":{pid},\"hostname\":\"{host}\",\"since\":\"2999-01-01T00:00:00.000Z\"}}\n"
            ),
        ];
        for note in &notes {
            let p = d.join("old.lock");
            std::fs::write(&p, note).unwrap();
            match FileLock::try_acquire(&p, "mine") {
                Err(LockError::HeldByOlder {
                    pid: p2, holder, ..
                }) => {
                    assert_eq!(u32::try_from(p2).unwrap(), pid);
                    assert_eq!(holder, note.trim());
                }
                other => panic!("expected HeldByOlder, got {other:?}"),
            }
            // The note is left as it was, and nothing holds the flock.
            assert_eq!(&std::fs::read_to_string(&p).unwrap(), note);
        }
        // Taken over: the same pid with another start time or started after the note (reused), another
        // host, today's note.
        for note in [
            format!("{{\"pid\":{pid},\"hostname\":\"{host}\",\"created_at\":\"2000-01-01T00:00:00.000Z\",\"token\":\"t\"}}"),
            format!("{{\"pid\":{pid},\"hostname\":\"{host}\",\"since\":\"x\",\"start\":\"1\"}}"),
            format!("{{\"pid\":{pid},\"hostname\":\"elsewhere-{host}\",\"created_at\":\"x\",\"token\":\"t\"}}"),
            format!("{{\"pid\":{pid},\"hostname\":\"{host}\",\"since\":\"x\"}}"),
            // today's note (no newline) naming a live pid, and an old ring note without `start`
            // written before that process started (a reused pid)
            format!("{{\"pid\":{pid},\"hostname\":\"{host}\",\"since\":\"2999-01-01T00:00:00.000Z\"}}"),
            format!("{{\"pid\":{pid},\"hostname\":\"{host}\",\"since\":\"2000-01-01T00:00:00.000Z\"}}\n"),
        ] {
            let p = d.join("other.lock");
            std::fs::write(&p, &note).unwrap();
            FileLock::try_acquire(&p, "mine").unwrap().release();
        }
        // A dead process's note is stale: taken over as before.
        child.kill().unwrap();
        child.wait().unwrap();
        for note in &notes {
            let p = d.join("old.lock");
            std::fs::write(&p, note).unwrap();
            let l = FileLock::try_acquire(&p, "mine").unwrap();
            assert_eq!(std::fs::read_to_string(&p).unwrap(), "mine");
            l.release();
        }
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn iso_times_as_javascript_writes_them() {
        assert_eq!(iso_millis("1970-01-01T00:00:00.000Z"), Some(0));
        assert_eq!(
            iso_millis("2026-12-02T10:20:30.456Z"),
            Some(1_796_206_830_456)
        );
        assert_eq!(
            iso_millis("2000-02-29T00:00:00.001Z"),
            Some(951_782_400_001)
        );
        for bad in [
            "",
            "2026-12-02",
            "2026-13-02T10:20:30.456Z",
            "2026-12-02T10:20:30.456+01",
            "x026-12-02T10:20:30.456Z",
        ] {
            assert_eq!(iso_millis(bad), None, "{bad}");
        }
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
