//! Private copy-on-write file mappings.

use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::{MmapMut, MmapOptions};

use super::{open_regular, IoError};

/// A whole file mapped private copy-on-write (`MAP_PRIVATE`): writes through the mapping change this
/// process's copy of the page only, never the file. Share it with `Arc<Mapping>`; the pages stay mapped
/// until the last owner drops it.
#[derive(Debug)]
pub struct Mapping {
    map: Option<MmapMut>,
    file: File,
    path: PathBuf,
    len: u64,
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
            // SAFETY: the mapping is private copy-on-write, so neither our writes nor the file's
            // contents being changed by another process alias Rust-owned memory unsoundly beyond what
            // any mapped file allows; truncation by another process is detected by `check_len` before
            // new views are handed out.
            let m = unsafe { MmapOptions::new().len(n).map_copy(&file) }
                .map_err(|e| IoError::from_os(path, "mmap", e))?;
            Some(m)
        };
        Ok(Mapping {
            map,
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
        self.map.as_deref().unwrap_or(&[])
    }

    /// Base address for handing the pages to a runtime that may write them (copy-on-write keeps the file
    /// intact). Null when the mapping is empty.
    #[must_use]
    pub fn as_mut_ptr(&self) -> *mut u8 {
        self.map
            .as_ref()
            .map_or(std::ptr::null_mut(), |m| m.as_ptr().cast_mut())
    }

    /// `Err(Truncated)` when the file is now shorter than the mapping (touching the missing pages would
    /// raise SIGBUS).
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
        Ok(())
    }

    /// The opened file.
    #[must_use]
    pub fn file(&self) -> &File {
        &self.file
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
