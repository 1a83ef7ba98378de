//! Atomic file replacement: write a temporary file in the destination's folder, fsync it, rename it
//! over the destination, fsync the folder. A crash at any moment leaves the old file or the new one;
//! a reader that has the old file mapped keeps its (unlinked) inode, never a truncated one.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::IoError;

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A file being written in place of `dest`. Dropping it without [`AtomicFile::commit`] removes the
/// temporary file and leaves `dest` untouched.
#[derive(Debug)]
pub struct AtomicFile {
    out: Option<BufWriter<File>>,
    tmp: PathBuf,
    dest: PathBuf,
}

impl AtomicFile {
    /// Create the temporary file next to `dest` (`.NAME.PID.N.tmp`).
    pub fn create(dest: &Path) -> Result<AtomicFile, IoError> {
        let name = dest.file_name().ok_or_else(|| IoError::Os {
            path: dest.to_path_buf(),
            op: "create",
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "path has no file name"),
        })?;
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let tmp = dest.with_file_name(format!(
            ".{}.{}.{n}.tmp",
            name.to_string_lossy(),
            std::process::id()
        ));
        let mut opts = OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o644);
        }
        let file = opts
            .open(&tmp)
            .map_err(|e| IoError::from_os(&tmp, "create", e))?;
        Ok(AtomicFile {
            out: Some(BufWriter::with_capacity(1 << 20, file)),
            tmp,
            dest: dest.to_path_buf(),
        })
    }

    /// The open temporary file, for positioned writes (`write_at`) by callers that lay out the file
    /// themselves; do not mix with unflushed [`AtomicFile::write_all`] data.
    #[must_use]
    pub fn file(&self) -> Option<&File> {
        self.out.as_ref().map(BufWriter::get_ref)
    }

    /// The temporary file's path.
    #[must_use]
    pub fn tmp_path(&self) -> &Path {
        &self.tmp
    }

    /// The destination path.
    #[must_use]
    pub fn dest(&self) -> &Path {
        &self.dest
    }

    /// Append `data`.
    pub fn write_all(&mut self, data: &[u8]) -> Result<(), IoError> {
        match self.out.as_mut() {
            Some(out) => out
                .write_all(data)
                .map_err(|e| IoError::from_os(&self.tmp, "write", e)),
            None => Err(closed(&self.tmp)),
        }
    }

    /// Flush, fsync, rename over the destination and fsync the folder.
    pub fn commit(mut self) -> Result<(), IoError> {
        let out = self.out.take().ok_or_else(|| closed(&self.tmp))?;
        let file = out
            .into_inner()
            .map_err(|e| IoError::from_os(&self.tmp, "write", e.into_error()))?;
        file.sync_all()
            .map_err(|e| IoError::from_os(&self.tmp, "fsync", e))?;
        drop(file);
        if let Err(e) = std::fs::rename(&self.tmp, &self.dest) {
            let _ = std::fs::remove_file(&self.tmp);
            return Err(IoError::from_os(&self.dest, "rename", e));
        }
        sync_parent(&self.dest)
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if self.out.take().is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

fn closed(path: &Path) -> IoError {
    IoError::Os {
        path: path.to_path_buf(),
        op: "write",
        source: std::io::Error::other("file already committed"),
    }
}

/// fsync the folder holding `path`, so that a rename into it survives a crash.
pub fn sync_parent(path: &Path) -> Result<(), IoError> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let dir = File::open(parent).map_err(|e| IoError::from_os(parent, "open", e))?;
    dir.sync_all()
        .map_err(|e| IoError::from_os(parent, "fsync", e))
}

/// Atomically replace `dest` with `data`.
pub fn write_atomic(dest: &Path, data: &[u8]) -> Result<(), IoError> {
    let mut f = AtomicFile::create(dest)?;
    f.write_all(data)?;
    f.commit()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_replaces_and_drop_leaves_old_file_and_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.bin");
        write_atomic(&p, b"old").unwrap();
        {
            let mut f = AtomicFile::create(&p).unwrap();
            f.write_all(b"new but abandoned").unwrap();
            assert!(f.tmp_path().exists());
        }
        assert_eq!(std::fs::read(&p).unwrap(), b"old");
        write_atomic(&p, b"new").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"new");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }

    #[test]
    fn missing_folder_is_not_found() {
        let dir = tempfile::tempdir().unwrap();
        let err = AtomicFile::create(&dir.path().join("nope/x")).unwrap_err();
        assert!(matches!(err, IoError::NotFound { .. }), "{err:?}");
    }
}
