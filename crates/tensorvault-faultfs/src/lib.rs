//! A FUSE file system for tests: it serves one flat folder (the backing folder) and answers any read
//! that touches a chosen byte range of a file with `EIO`, as a disk answers a read of a bad sector.
//! A write clears the bad ranges in the 4 KiB blocks it touches, as a disk remaps a bad sector when
//! the file system writes its block.
//!
//! This exercises the kernel's own paths: `pread` returns `EIO`, and a page fault of a mapping over
//! the range raises `SIGBUS`. Mounting needs `/dev/fuse` and the right to call `mount(2)` (root, or
//! a user namespace that has it); [`mount`] returns the error otherwise, and tests skip, saying why.
//! Linux only: elsewhere the crate is empty.

#![cfg(target_os = "linux")]

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    BackgroundSession, Config, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags,
    Generation, INodeNo, LockOwner, MountOption, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate,
    ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyWrite, Request, TimeOrNow,
    WriteFlags,
};

/// Attributes are not cached by the kernel: the backing files are the truth.
const TTL: Duration = Duration::ZERO;

/// The block a write rewrites as a whole (the page size).
const BLOCK: u64 = 4096;

/// A backing file's identity: its inode number and birth time (a file created after another was
/// deleted may reuse the inode number; it must not inherit that file's bad ranges, nor its FUSE inode,
/// whose page cache the kernel may still hold).
type Key = (u64, Option<SystemTime>);

fn key_of(meta: &std::fs::Metadata) -> Key {
    (meta.ino(), meta.created().ok())
}

/// Bad ranges and counters, shared between the file system and its [`Faults`] handles.
struct State {
    /// Backing file → half-open byte ranges that read as `EIO`.
    bad: HashMap<Key, Vec<(u64, u64)>>,
    /// Backing file → its FUSE inode (numbered in order of first sight, never reused).
    inodes: HashMap<Key, u64>,
    next_ino: u64,
    /// FUSE inode → name in the backing folder (learned from lookups and creations).
    names: HashMap<u64, OsString>,
    /// Open handles.
    files: HashMap<u64, File>,
}

impl Default for State {
    fn default() -> Self {
        Self {
            bad: HashMap::new(),
            inodes: HashMap::new(),
            next_ino: INodeNo::ROOT.0 + 1,
            names: HashMap::new(),
            files: HashMap::new(),
        }
    }
}

impl State {
    fn inode_of(&mut self, meta: &std::fs::Metadata) -> u64 {
        let next = &mut self.next_ino;
        *self.inodes.entry(key_of(meta)).or_insert_with(|| {
            let n = *next;
            *next += 1;
            n
        })
    }
}

/// A handle to the mounted file system's faults.
#[derive(Clone)]
pub struct Faults {
    backing: PathBuf,
    state: Arc<Mutex<State>>,
    eio: Arc<AtomicU64>,
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Faults {
    /// Make bytes `[start, start + len)` of `name` (a file of the backing folder) unreadable.
    pub fn set_bad(&self, name: &str, start: u64, len: u64) -> io::Result<()> {
        let key = key_of(&std::fs::metadata(self.backing.join(name))?);
        lock(&self.state)
            .bad
            .entry(key)
            .or_default()
            .push((start, start.saturating_add(len)));
        Ok(())
    }

    /// The unreadable ranges of `name` that no write has cleared yet.
    pub fn bad_ranges(&self, name: &str) -> io::Result<Vec<(u64, u64)>> {
        let key = key_of(&std::fs::metadata(self.backing.join(name))?);
        Ok(lock(&self.state).bad.get(&key).cloned().unwrap_or_default())
    }

    /// How many reads were answered with `EIO` so far.
    #[must_use]
    pub fn eio_count(&self) -> u64 {
        self.eio.load(Ordering::Relaxed)
    }
}

/// The file system.
struct FaultFs {
    backing: PathBuf,
    state: Arc<Mutex<State>>,
    eio: Arc<AtomicU64>,
    next_fh: AtomicU64,
}

fn errno(e: &io::Error) -> Errno {
    Errno::from_i32(e.raw_os_error().unwrap_or(libc::EIO))
}

fn system_time(secs: i64, nsecs: i64) -> SystemTime {
    let nanos = u32::try_from(nsecs).unwrap_or(0);
    match u64::try_from(secs) {
        Ok(s) => UNIX_EPOCH + Duration::new(s, nanos),
        Err(_) => UNIX_EPOCH,
    }
}

fn attr_of(ino: u64, meta: &std::fs::Metadata) -> FileAttr {
    let kind = if meta.is_dir() {
        FileType::Directory
    } else {
        FileType::RegularFile
    };
    FileAttr {
        ino: INodeNo(ino),
        size: meta.size(),
        blocks: meta.blocks(),
        atime: system_time(meta.atime(), meta.atime_nsec()),
        mtime: system_time(meta.mtime(), meta.mtime_nsec()),
        ctime: system_time(meta.ctime(), meta.ctime_nsec()),
        crtime: system_time(meta.ctime(), meta.ctime_nsec()),
        kind,
        perm: u16::try_from(meta.mode() & 0o7777).unwrap_or(0o644),
        nlink: u32::try_from(meta.nlink()).unwrap_or(1),
        uid: meta.uid(),
        gid: meta.gid(),
        rdev: 0,
        flags: 0,
        blksize: 4096,
    }
}

fn overlaps(ranges: &[(u64, u64)], start: u64, end: u64) -> bool {
    ranges.iter().any(|&(s, e)| s < end && start < e)
}

/// `ranges` without `[start, end)`.
fn clear(ranges: &mut Vec<(u64, u64)>, start: u64, end: u64) {
    let mut out = Vec::with_capacity(ranges.len() + 1);
    for &(s, e) in ranges.iter() {
        if e <= start || end <= s {
            out.push((s, e));
            continue;
        }
        if s < start {
            out.push((s, start));
        }
        if end < e {
            out.push((end, e));
        }
    }
    *ranges = out;
}

impl FaultFs {
    fn path_of(&self, ino: INodeNo) -> Option<PathBuf> {
        if ino == INodeNo::ROOT {
            return Some(self.backing.clone());
        }
        lock(&self.state)
            .names
            .get(&ino.0)
            .map(|n| self.backing.join(n))
    }

    fn entry(&self, name: &OsStr) -> io::Result<FileAttr> {
        let meta = std::fs::symlink_metadata(self.backing.join(name))?;
        let mut st = lock(&self.state);
        let ino = st.inode_of(&meta);
        st.names.insert(ino, name.to_os_string());
        Ok(attr_of(ino, &meta))
    }

    fn add_handle(&self, file: File) -> FileHandle {
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        lock(&self.state).files.insert(fh, file);
        FileHandle(fh)
    }

    fn with_file<T>(
        &self,
        fh: FileHandle,
        f: impl FnOnce(&File) -> io::Result<T>,
    ) -> io::Result<T> {
        let file = lock(&self.state)
            .files
            .get(&fh.0)
            .map(File::try_clone)
            .ok_or_else(|| io::Error::from_raw_os_error(libc::EBADF))??;
        f(&file)
    }
}

fn open_options(flags: i32) -> OpenOptions {
    let mut o = OpenOptions::new();
    match flags & libc::O_ACCMODE {
        libc::O_WRONLY => o.write(true),
        libc::O_RDWR => o.read(true).write(true),
        _ => o.read(true),
    };
    o.custom_flags(flags & (libc::O_APPEND | libc::O_SYNC | libc::O_DSYNC));
    o
}

impl Filesystem for FaultFs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        if parent != INodeNo::ROOT {
            return reply.error(Errno::ENOENT);
        }
        match self.entry(name) {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let Some(path) = self.path_of(ino) else {
            return reply.error(Errno::ENOENT);
        };
        match std::fs::symlink_metadata(&path) {
            Ok(meta) => reply.attr(&TTL, &attr_of(ino.0, &meta)),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let Some(path) = self.path_of(ino) else {
            return reply.error(Errno::ENOENT);
        };
        let result = (|| -> io::Result<std::fs::Metadata> {
            if let Some(mode) = mode {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode & 0o7777))?;
            }
            if let Some(size) = size {
                OpenOptions::new().write(true).open(&path)?.set_len(size)?;
            }
            if atime.is_some() || mtime.is_some() {
                let file = OpenOptions::new().read(true).open(&path)?;
                let now = SystemTime::now();
                let pick = |t: Option<TimeOrNow>| match t {
                    Some(TimeOrNow::SpecificTime(t)) => Some(t),
                    Some(TimeOrNow::Now) => Some(now),
                    None => None,
                };
                let mut times = std::fs::FileTimes::new();
                if let Some(t) = pick(atime) {
                    times = times.set_accessed(t);
                }
                if let Some(t) = pick(mtime) {
                    times = times.set_modified(t);
                }
                file.set_times(times)?;
            }
            std::fs::symlink_metadata(&path)
        })();
        match result {
            Ok(meta) => reply.attr(&TTL, &attr_of(ino.0, &meta)),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        if parent != INodeNo::ROOT {
            return reply.error(Errno::ENOENT);
        }
        match std::fs::remove_file(self.backing.join(name)) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        _flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        if parent != INodeNo::ROOT || newparent != INodeNo::ROOT {
            return reply.error(Errno::EXDEV);
        }
        match std::fs::rename(self.backing.join(name), self.backing.join(newname)) {
            Ok(()) => {
                let mut st = lock(&self.state);
                for n in st.names.values_mut() {
                    if n.as_os_str() == name {
                        *n = newname.to_os_string();
                    }
                }
                reply.ok();
            }
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let Some(path) = self.path_of(ino) else {
            return reply.error(Errno::ENOENT);
        };
        match open_options(flags.0).open(path) {
            Ok(file) => reply.opened(self.add_handle(file), FopenFlags::empty()),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let result = self.with_file(fh, |file| {
            let backing = key_of(&file.metadata()?);
            let end = offset.saturating_add(u64::from(size));
            let bad = lock(&self.state)
                .bad
                .get(&backing)
                .is_some_and(|r| overlaps(r, offset, end));
            if bad {
                self.eio.fetch_add(1, Ordering::Relaxed);
                return Err(io::Error::from_raw_os_error(libc::EIO));
            }
            let mut buf = vec![0u8; size as usize];
            let mut filled = 0;
            while filled < buf.len() {
                let n = file.read_at(
                    buf.get_mut(filled..).unwrap_or_default(),
                    offset + filled as u64,
                )?;
                if n == 0 {
                    break;
                }
                filled += n;
            }
            buf.truncate(filled);
            Ok(buf)
        });
        match result {
            Ok(buf) => reply.data(&buf),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let result = self.with_file(fh, |file| {
            file.write_all_at(data, offset)?;
            let backing = key_of(&file.metadata()?);
            // The file system writes whole blocks: a write that ends at the end of the file rewrites
            // the last block past it too, so what the disk remaps is every block the write touches.
            let start = offset / BLOCK * BLOCK;
            let end = offset.saturating_add(data.len() as u64).div_ceil(BLOCK) * BLOCK;
            if let Some(r) = lock(&self.state).bad.get_mut(&backing) {
                clear(r, start, end);
            }
            Ok(())
        });
        match result {
            Ok(()) => reply.written(u32::try_from(data.len()).unwrap_or(u32::MAX)),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        lock(&self.state).files.remove(&fh.0);
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        let result = self.with_file(fh, |f| {
            if datasync {
                f.sync_data()
            } else {
                f.sync_all()
            }
        });
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        if ino != INodeNo::ROOT {
            return reply.error(Errno::ENOTDIR);
        }
        let mut entries: Vec<(u64, FileType, OsString)> = vec![
            (INodeNo::ROOT.0, FileType::Directory, ".".into()),
            (INodeNo::ROOT.0, FileType::Directory, "..".into()),
        ];
        match std::fs::read_dir(&self.backing) {
            Ok(rd) => {
                for e in rd.flatten() {
                    if let Ok(meta) = e.metadata() {
                        let kind = if meta.is_dir() {
                            FileType::Directory
                        } else {
                            FileType::RegularFile
                        };
                        let ino = lock(&self.state).inode_of(&meta);
                        entries.push((ino, kind, e.file_name()));
                    }
                }
            }
            Err(e) => return reply.error(errno(&e)),
        }
        let skip = usize::try_from(offset).unwrap_or(usize::MAX);
        for (i, (ino, kind, name)) in entries.into_iter().enumerate().skip(skip) {
            if reply.add(INodeNo(ino), (i + 1) as u64, kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        if parent != INodeNo::ROOT {
            return reply.error(Errno::ENOENT);
        }
        let mut o = open_options(flags);
        o.create(true).mode(mode & 0o7777);
        if flags & libc::O_EXCL != 0 {
            o.create_new(true);
        }
        if flags & libc::O_TRUNC != 0 {
            o.truncate(true);
        }
        let result = o.open(self.backing.join(name)).and_then(|file| {
            let attr = self.entry(name)?;
            Ok((file, attr))
        });
        match result {
            Ok((file, attr)) => reply.created(
                &TTL,
                &attr,
                Generation(0),
                self.add_handle(file),
                FopenFlags::empty(),
            ),
            Err(e) => reply.error(errno(&e)),
        }
    }
}

/// A mounted fault file system (unmounted on drop).
pub struct Mounted {
    /// Its faults.
    pub faults: Faults,
    /// Where it is mounted.
    pub mountpoint: PathBuf,
    session: Option<BackgroundSession>,
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if let Some(s) = self.session.take() {
            let _ = s.umount_and_join();
        }
    }
}

/// Mount a fault file system serving `backing` at `mountpoint` (both existing folders).
pub fn mount(backing: &Path, mountpoint: &Path) -> io::Result<Mounted> {
    if !Path::new("/dev/fuse").exists() {
        return Err(io::Error::new(io::ErrorKind::Unsupported, "no /dev/fuse"));
    }
    let state = Arc::new(Mutex::new(State::default()));
    let eio = Arc::new(AtomicU64::new(0));
    let fs = FaultFs {
        backing: backing.to_path_buf(),
        state: Arc::clone(&state),
        eio: Arc::clone(&eio),
        next_fh: AtomicU64::new(1),
    };
    let mut config = Config::default();
    config.mount_options = vec![
        MountOption::FSName("tensorvault-faultfs".into()),
        MountOption::DefaultPermissions,
    ];
    let session = fuser::spawn_mount(fs, mountpoint, &config)?;
    Ok(Mounted {
        faults: Faults {
            backing: backing.to_path_buf(),
            state,
            eio,
        },
        mountpoint: mountpoint.to_path_buf(),
        session: Some(session),
    })
}
