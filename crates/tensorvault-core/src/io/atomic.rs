//! Atomic file replacement: write a temp file in the destination's folder, fsync it, rename it over the
//! destination, fsync the folder. A crash at any moment leaves the old file or the new one, never a torn
//! one; an [`AtomicFile`] dropped without [`AtomicFile::commit`] removes its temp file.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::IoError;

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A temp file that becomes `dest` on [`AtomicFile::commit`].
#[derive(Debug)]
pub struct AtomicFile {
    dest: PathBuf,
    tmp: PathBuf,
    file: Option<File>,
}

impl AtomicFile {
    /// Create a fresh temp file (read + write) beside `dest`.
    pub fn create(dest: &Path) -> Result<Self, IoError> {
        let dir = parent_dir(dest);
        let name = dest
            .file_name()
            .map_or_else(|| "file".into(), |n| n.to_string_lossy().into_owned());
        loop {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let tmp = dir.join(format!(".{name}.tmp-{}-{n}", std::process::id()));
            match OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&tmp)
            {
                Ok(file) => {
                    return Ok(Self {
                        dest: dest.to_path_buf(),
                        tmp,
                        file: Some(file),
                    })
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(IoError::from_os(&tmp, "create", e)),
            }
        }
    }

    /// The open temp file.
    #[must_use]
    pub fn file(&self) -> Option<&File> {
        self.file.as_ref()
    }

    /// The temp file's path.
    #[must_use]
    pub fn temp_path(&self) -> &Path {
        &self.tmp
    }

    /// fsync the temp file, rename it over the destination, fsync the folder.
    pub fn commit(mut self) -> Result<(), IoError> {
        if let Some(file) = self.file.take() {
            file.sync_all()
                .map_err(|e| IoError::from_os(&self.tmp, "fsync", e))?;
        }
        std::fs::rename(&self.tmp, &self.dest)
            .map_err(|e| IoError::from_os(&self.dest, "rename", e))?;
        // Renamed: nothing left to clean up even if the folder fsync fails.
        self.tmp = PathBuf::new();
        sync_dir(&parent_dir(&self.dest))
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if !self.tmp.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// fsync a folder so a rename inside it is durable.
pub fn sync_dir(dir: &Path) -> Result<(), IoError> {
    let d = File::open(dir).map_err(|e| IoError::from_os(dir, "open folder", e))?;
    d.sync_all()
        .map_err(|e| IoError::from_os(dir, "fsync folder", e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn commit_replaces_and_drop_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("a.bin");
        std::fs::write(&dest, b"old").unwrap();
        let a = AtomicFile::create(&dest).unwrap();
        a.file().unwrap().write_all(b"new").unwrap();
        let tmp = a.temp_path().to_path_buf();
        assert!(tmp.exists());
        a.commit().unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"new");
        assert!(!tmp.exists());

        let b = AtomicFile::create(&dest).unwrap();
        let tmp = b.temp_path().to_path_buf();
        b.file().unwrap().write_all(b"abandoned").unwrap();
        drop(b);
        assert!(!tmp.exists());
        assert_eq!(std::fs::read(&dest).unwrap(), b"new");
    }
}
