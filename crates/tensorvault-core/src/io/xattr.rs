//! Extended attributes kept across an atomic replacement: the replaced file's xattrs (so also its
//! POSIX ACLs, `system.posix_acl_access`, and its `SELinux` label, `security.selinux`) are copied onto
//! the temporary file before it is renamed over it. Linux only; elsewhere nothing is copied.

use std::fs::File;
use std::path::Path;

/// Attributes never copied, because they vouch for the old *content*: `security.capability` (file
/// capabilities), which the kernel itself removes when a file's content is written or its owner
/// changed, so new content does not inherit the old content's privileges; and `security.ima` /
/// `security.evm` (the integrity subsystem's hash or signature of the content, and its HMAC over the
/// attributes), which copied onto new bytes would make an appraising kernel refuse to open the file.
const NOT_COPIED: &[&[u8]] = &[b"security.capability", b"security.ima", b"security.evm"];

/// Copy every extended attribute of the file at `from` (symlinks followed, as the writers follow
/// them to the file they replace) onto the open file `to`, except those in [`NOT_COPIED`]. Returns
/// how many were copied.
///
/// Best effort: an attribute that cannot be read or set (a namespace this process may not write,
/// `trusted.*` or `security.*` without privilege; a file system without xattrs or without room for
/// one; an attribute removed meanwhile) is skipped and logged at debug level, never an error. When
/// `from` has none (the usual case), the cost is one `listxattr` call.
#[cfg(target_os = "linux")]
#[must_use]
pub fn copy_xattrs(from: &Path, to: &File) -> usize {
    match names_of(from) {
        Some((src, names)) => copy_names(from, &src, &names, to),
        None => 0,
    }
}

/// [`copy_xattrs`] onto the file at `to` (opened read-only: setting an xattr checks the file's
/// permissions, not the descriptor's; `O_NOFOLLOW`, so never through a symlink put in its place),
/// opened only when `from` has xattrs. A `to` that cannot be opened copies nothing.
#[cfg(target_os = "linux")]
#[must_use]
pub fn copy_xattrs_to_path(from: &Path, to: &Path) -> usize {
    use std::os::unix::fs::OpenOptionsExt as _;
    let Some((src, names)) = names_of(from) else {
        return 0;
    };
    match File::options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(to)
    {
        Ok(file) => copy_names(from, &src, &names, &file),
        Err(e) => {
            tracing::debug!(path = %to.display(), error = %e, "cannot open: no xattrs kept");
            0
        }
    }
}

/// Other platforms: nothing is copied (the replaced file's mode and owner still are).
#[cfg(not(target_os = "linux"))]
#[must_use]
pub fn copy_xattrs(_from: &Path, _to: &File) -> usize {
    0
}

/// Other platforms: nothing is copied.
#[cfg(not(target_os = "linux"))]
#[must_use]
pub fn copy_xattrs_to_path(_from: &Path, _to: &Path) -> usize {
    0
}

/// The path of `from` as a C string and its xattr names (NUL-separated), or `None` when it has none
/// or they cannot be listed.
#[cfg(target_os = "linux")]
fn names_of(from: &Path) -> Option<(std::ffi::CString, Vec<u8>)> {
    use std::os::unix::ffi::OsStrExt as _;
    let src = std::ffi::CString::new(from.as_os_str().as_bytes()).ok()?;
    match read_sized(|buf, len| {
        // SAFETY: `src` is a NUL-terminated path; `buf` is null with `len` 0 (a size query) or points
        // to `len` writable bytes.
        unsafe { libc::listxattr(src.as_ptr(), buf.cast(), len) }
    }) {
        Ok(names) if names.is_empty() => None,
        Ok(names) => Some((src, names)),
        Err(e) => {
            tracing::debug!(path = %from.display(), error = %e, "listxattr failed: no xattrs kept");
            None
        }
    }
}

/// Copy the attributes `names` of `src` (the path `from`) onto `to`; how many were copied.
#[cfg(target_os = "linux")]
fn copy_names(from: &Path, src: &std::ffi::CStr, names: &[u8], to: &File) -> usize {
    use std::os::unix::io::AsRawFd as _;
    let mut copied = 0;
    for name in names.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        if NOT_COPIED.contains(&name) {
            continue;
        }
        let Ok(cname) = std::ffi::CString::new(name) else {
            continue;
        };
        let value = match read_sized(|buf, len| {
            // SAFETY: as for `listxattr` in `names_of`; `cname` is a NUL-terminated attribute name.
            unsafe { libc::getxattr(src.as_ptr(), cname.as_ptr(), buf.cast(), len) }
        }) {
            Ok(v) => v,
            Err(e) => {
                tracing::debug!(path = %from.display(), name = %String::from_utf8_lossy(name),
                    error = %e, "getxattr failed: attribute not kept");
                continue;
            }
        };
        // SAFETY: `to` is an open descriptor; `cname` is NUL-terminated; `value` is `value.len()`
        // readable bytes.
        let rc = unsafe {
            libc::fsetxattr(
                to.as_raw_fd(),
                cname.as_ptr(),
                value.as_ptr().cast(),
                value.len(),
                0,
            )
        };
        if rc == 0 {
            copied += 1;
        } else {
            tracing::debug!(path = %from.display(), name = %String::from_utf8_lossy(name),
                error = %std::io::Error::last_os_error(), "fsetxattr failed: attribute not kept");
        }
    }
    copied
}

/// Read a variable-sized result through a `listxattr` / `getxattr`-style call: a size query with a
/// null buffer, then the read; again if the value grew in between (`ERANGE`), up to a few times.
#[cfg(target_os = "linux")]
fn read_sized(mut call: impl FnMut(*mut u8, usize) -> isize) -> std::io::Result<Vec<u8>> {
    for _ in 0..4 {
        let size = call(std::ptr::null_mut(), 0);
        let Ok(size) = usize::try_from(size) else {
            return Err(std::io::Error::last_os_error());
        };
        if size == 0 {
            return Ok(Vec::new());
        }
        let mut buf = vec![0u8; size];
        let got = call(buf.as_mut_ptr(), buf.len());
        if let Ok(n) = usize::try_from(got) {
            buf.truncate(n);
            return Ok(buf);
        }
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::ERANGE) {
            return Err(e);
        }
    }
    Err(std::io::Error::from_raw_os_error(libc::ERANGE))
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    fn set(path: &Path, name: &str, value: &[u8]) -> bool {
        use std::os::unix::ffi::OsStrExt as _;
        let (Ok(p), Ok(n)) = (
            std::ffi::CString::new(path.as_os_str().as_bytes()),
            std::ffi::CString::new(name),
        ) else {
            return false;
        };
        // SAFETY: NUL-terminated path and name; `value` is `value.len()` readable bytes.
        unsafe {
            libc::setxattr(
                p.as_ptr(),
                n.as_ptr(),
                value.as_ptr().cast(),
                value.len(),
                0,
            ) == 0
        }
    }

    fn get(path: &Path, name: &str) -> Option<Vec<u8>> {
        use std::os::unix::ffi::OsStrExt as _;
        let p = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
        let n = std::ffi::CString::new(name).ok()?;
        // SAFETY: as in `set`; the buffer is null for the size query, then `len` writable bytes.
        read_sized(|buf, len| unsafe { libc::getxattr(p.as_ptr(), n.as_ptr(), buf.cast(), len) })
            .ok()
    }

    #[test]
    fn copies_user_xattrs_and_nothing_when_there_are_none() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        std::fs::write(&a, b"a").unwrap();
        std::fs::write(&b, b"b").unwrap();
        if !set(&a, "user.tv.one", b"1") {
            eprintln!("skipped: this file system refuses user xattrs");
            return;
        }
        assert!(set(&a, "user.tv.big", &[7u8; 3000]));
        let to = File::options().write(true).open(&b).unwrap();
        assert_eq!(copy_xattrs(&a, &to), 2);
        assert_eq!(get(&b, "user.tv.one").as_deref(), Some(&b"1"[..]));
        assert_eq!(get(&b, "user.tv.big").as_deref(), Some(&[7u8; 3000][..]));
        let c = dir.path().join("c");
        std::fs::write(&c, b"c").unwrap();
        assert_eq!(copy_xattrs(&c, &to), 0);
        assert_eq!(copy_xattrs(&dir.path().join("missing"), &to), 0);
        let d = dir.path().join("d");
        std::fs::write(&d, b"d").unwrap();
        assert_eq!(copy_xattrs_to_path(&a, &d), 2);
        assert_eq!(get(&d, "user.tv.one").as_deref(), Some(&b"1"[..]));
        assert_eq!(copy_xattrs_to_path(&a, &dir.path().join("missing")), 0);
    }

    #[test]
    fn never_copies_what_vouches_for_the_old_content() {
        // security.ima / security.evm hold the integrity subsystem's hash or signature of the old bytes:
        // on the new bytes they would be wrong (an appraising kernel then refuses the file).
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        std::fs::write(&a, b"a").unwrap();
        std::fs::write(&b, b"b").unwrap();
        if !set(&a, "user.tv.kept", b"1") || !set(&a, "security.ima", b"\x03\x02\x04") {
            eprintln!("skipped: this file system or process cannot set user or security xattrs");
            return;
        }
        let evm = set(&a, "security.evm", b"\x03\x02\x05");
        let to = File::options().write(true).open(&b).unwrap();
        assert_eq!(copy_xattrs(&a, &to), 1);
        assert_eq!(get(&b, "user.tv.kept").as_deref(), Some(&b"1"[..]));
        assert_eq!(get(&b, "security.ima"), None);
        if evm {
            assert_eq!(get(&b, "security.evm"), None);
        }
    }
}
