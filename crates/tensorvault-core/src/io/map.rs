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
    sigbus_slot: Option<usize>,
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // Unregister before the pages are unmapped (fields drop after this).
        if let Some(slot) = self.sigbus_slot.take() {
            super::sigbus::unregister(slot);
        }
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
        let sigbus_slot = map
            .as_ref()
            .and_then(|m| super::sigbus::register(m.as_ptr() as usize, m.len()));
        Ok(Mapping {
            map,
            file,
            path: path.to_path_buf(),
            len,
            sigbus_slot,
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
