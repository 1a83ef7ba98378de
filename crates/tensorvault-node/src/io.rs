//! io: the writer lock (`tensorvault_core::io::FileLock`), held by a JS object until `release()`.

use std::os::fd::AsRawFd as _;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use napi::bindgen_prelude::ObjectFinalize;
use napi::Env;
use napi_derive::napi;
use tensorvault_core::io::{FileLock, LockError};
use tensorvault_core::safetensors::SafetensorsFile;

use crate::args::locked;
use crate::cost::GcCharge;
use crate::errors::{guard, Ctx, TvError};
use crate::safetensors::release;

/// A held writer lock (an advisory `flock` on the lock file). Dropping it (garbage collection,
/// process exit) releases the lock; `release()` also removes the file.
#[napi]
pub struct NativeFileLock {
    inner: Option<FileLock>,
}

/// Take the writer lock on `path` without waiting, writing `holder` (this process's description,
/// one JSON line) into the file. `TV_LOCKED` (with `context.holder`, the holder's own line) when
/// another writer holds it; `TV_NOT_A_FILE` / `TV_IS_DIRECTORY` when the path is not a regular file.
#[napi]
pub fn lock_file(path: String, holder: String) -> napi::Result<NativeFileLock> {
    guard(|| {
        let path = PathBuf::from(path);
        match FileLock::try_acquire(&path, &holder) {
            Ok(lock) => Ok(NativeFileLock { inner: Some(lock) }),
            Err(LockError::Held { path, holder }) => Err(TvError::new(
                "TV_LOCKED",
                format!("{} is locked by another writer", path.display()),
            )
            .with("path", Ctx::Str(path.display().to_string()))
            .with("holder", Ctx::Str(holder))
            .into()),
            Err(LockError::HeldByOlder { path, pid, holder }) => Err(TvError::new(
                "TV_LOCKED",
                format!(
                    "{} is held by an older tensorvault (pid {pid}), which locks by its lock-file note \
                     and takes no flock: stop it (or let it finish) before a newer version writes here",
                    path.display()
                ),
            )
            .with("path", Ctx::Str(path.display().to_string()))
            .with("holder", Ctx::Str(holder))
            .with("pid", Ctx::Num(f64::from(pid)))
            .with("olderBuild", Ctx::Str("note-lock".to_string()))
            .into()),
            Err(LockError::Io(e)) => Err(TvError::from(&e).into()),
        }
    })
}

#[napi]
impl NativeFileLock {
    /// Remove the lock file (if it is still this lock's) and release the lock. Idempotent.
    #[napi]
    pub fn release(&mut self) {
        if let Some(lock) = self.inner.take() {
            lock.release();
        }
    }

    /// Whether the lock is still held.
    #[napi(getter)]
    pub fn held(&self) -> bool {
        self.inner.is_some()
    }
}

/// Take an exclusive `flock` on the open descriptor `fd` (of the file at `path`, named in errors)
/// without waiting: true when taken (held until the descriptor is closed), false when another open
/// file description holds it. The liveness mark of the TypeScript writers' temporary files, as of the
/// core's (`tensorvault_core::io::try_lock_fd`). `TV_IO` (with `errno`) when the call fails (a closed
/// descriptor, a file system without `flock`).
#[napi]
pub fn try_lock_fd(fd: i32, path: String) -> napi::Result<bool> {
    guard(|| {
        tensorvault_core::io::try_lock_fd(fd).map_err(|e| {
            TvError::from(&tensorvault_core::io::IoError::from_os(
                std::path::Path::new(&path),
                "flock",
                e,
            ))
            .into()
        })
    })
}

/// Copy the extended attributes of the file at `from` (a file about to be replaced; symlinks followed)
/// onto the file at `to` (the writer's temporary, renamed over it next): on Linux its xattrs, so also
/// its POSIX ACLs and `SELinux` label, except `security.capability` (see
/// `tensorvault_core::io::copy_xattrs`). The TypeScript writers' counterpart of the core writers' own
/// copy. Best effort: returns how many were copied; an attribute this process may not read or set,
/// a file system without xattrs or a `to` that cannot be opened copies nothing and is no error.
/// Other platforms: 0, nothing copied.
#[napi]
pub fn copy_xattrs(from: String, to: String) -> napi::Result<u32> {
    guard(|| {
        let n = tensorvault_core::io::copy_xattrs_to_path(
            std::path::Path::new(&from),
            std::path::Path::new(&to),
        );
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    })
}

/// Mappings kept alive only by views after their file was closed: their finalizers (run by Node on a
/// later turn of the event loop) have not released them yet. See
/// `tensorvault_core::io::orphaned_mappings` and `settleClosedMappings` (`src/io/mappings.ts`).
#[napi]
pub fn orphaned_mappings() -> u32 {
    u32::try_from(tensorvault_core::io::orphaned_mappings()).unwrap_or(u32::MAX)
}

/// A mapped file's descriptor, held by the addon and lent to JS by number (`fd`), for reads beside
/// the mapping (`NativeSafetensors::dup_fd`). It holds the open file (its `Arc`), so the descriptor
/// stays open until `close()` or, failing that, until the object is garbage-collected or its
/// environment (a worker) torn down, whatever happens to the handle it came from: a descriptor handed
/// to JS as a bare number leaked when its holder was dropped without `close()`, and closing it with
/// `fs.closeSync` in a worker printed Node's "closed but not opened in unmanaged mode" warning. (It
/// was a `dup` of the descriptor: a third descriptor per lazily loaded checkpoint.) Reported to the
/// collector while it holds the file (`cost.rs`).
#[napi(custom_finalize)]
pub struct NativeFd {
    file: Mutex<Option<Arc<SafetensorsFile>>>,
    charge: GcCharge,
}

impl NativeFd {
    pub(crate) fn new(file: Arc<SafetensorsFile>, env: Env) -> NativeFd {
        let fd = NativeFd {
            file: Mutex::new(Some(file)),
            charge: GcCharge::default(),
        };
        fd.charge.charge(env);
        fd
    }
}

impl ObjectFinalize for NativeFd {
    fn finalize(self, env: Env) -> napi::Result<()> {
        self.charge.release(env);
        release(locked(&self.file).take());
        Ok(())
    }
}

#[napi]
impl NativeFd {
    /// The descriptor's number; `TV_CLOSED` after `close()`. Valid only until `close()`: the number
    /// may then name another file.
    #[napi(getter)]
    pub fn fd(&self) -> napi::Result<i32> {
        guard(|| {
            locked(&self.file)
                .as_ref()
                .map(|f| f.mapping().file().as_raw_fd())
                .ok_or_else(|| TvError::new("TV_CLOSED", "the descriptor is closed").into())
        })
    }

    /// Let go of the file: its descriptor is closed unless the handle it came from (or a read in
    /// flight) still holds it. Idempotent.
    #[napi]
    pub fn close(&self, env: Env) {
        let file = locked(&self.file).take();
        release(file);
        self.charge.release(env);
    }

    /// Whether `close()` was called.
    #[napi(getter)]
    pub fn closed(&self) -> bool {
        locked(&self.file).is_none()
    }
}
