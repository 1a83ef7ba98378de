//! The mapped reader: validate the header read with `pread`, then map the file private copy-on-write.

use std::path::Path;
use std::sync::Arc;

use rayon::prelude::*;

use super::{header_len, Header, SafetensorsError, TensorInfo};
use crate::io::{open_regular, read_exact_at, IoError, Mapping, Populated};
use crate::Control;

/// Pieces [`SafetensorsFile::prefetch`] populates at a time (progress and cancellation granularity).
const PREFETCH_PIECE: u64 = 32 << 20;

/// An open, validated safetensors file. Tensor bytes are borrowed from a shared private mapping
/// (`Arc<Mapping>`), which callers may clone to keep the pages alive beyond this value.
#[derive(Debug)]
pub struct SafetensorsFile {
    map: Arc<Mapping>,
    header: Header,
    /// The bytes the header was parsed from (the 8-byte length and the JSON, as read with `pread`):
    /// a check of the header (a checkpoint's digest or chunk tree) must hash these, not the mapping,
    /// which a writer could change between the read and the check.
    parsed: ParsedBytes,
}

/// Headers up to this many bytes keep their bytes; a larger one (a hundred thousand tensors and more)
/// keeps only their SHA-256, taken at the open, rather than a second copy of that size.
const KEEP_HEADER_BYTES: usize = 16 << 20;

/// What a [`SafetensorsFile`] keeps of the bytes its header was parsed from.
#[derive(Debug)]
enum ParsedBytes {
    Kept(Box<[u8]>),
    Digest {
        len: usize,
        sha256: crate::hash::Digest,
    },
}

impl SafetensorsFile {
    /// Open and validate `path`. Nothing is mapped until the header has passed every check.
    pub fn open(path: &Path) -> Result<SafetensorsFile, SafetensorsError> {
        // INVARIANT: no header is longer than u64::MAX, so `open_small` always opens here.
        Self::open_small(path, u64::MAX)?.ok_or(SafetensorsError::Cancelled)
    }

    /// [`SafetensorsFile::open`] when the JSON header is at most `max_header` bytes, else `None`
    /// after reading only the 8-byte length (for a caller that opens small headers on its own thread
    /// and large ones elsewhere).
    pub fn open_small(
        path: &Path,
        max_header: u64,
    ) -> Result<Option<SafetensorsFile>, SafetensorsError> {
        let (file, len) = open_regular(path)?;
        let mut first = [0u8; 8];
        let have = usize::try_from(len.min(8)).unwrap_or(8);
        let first = first.get_mut(..have).unwrap_or_default();
        read_exact_at(&file, path, first, 0)?;
        let n = header_len(first, len)?;
        if n > max_header {
            return Ok(None);
        }
        // n ≤ MAX_HEADER_LEN (100 MB), so this fits in usize.
        let mut prefix = vec![0u8; usize::try_from(n + 8).unwrap_or(0)];
        read_exact_at(&file, path, &mut prefix, 0)?;
        let header = Header::parse(&prefix, len)?;
        let map = Mapping::from_file(file, path, len)?;
        let parsed = if prefix.len() <= KEEP_HEADER_BYTES {
            ParsedBytes::Kept(prefix.into_boxed_slice())
        } else {
            ParsedBytes::Digest {
                len: prefix.len(),
                sha256: crate::hash::sha256(&prefix),
            }
        };
        Ok(Some(SafetensorsFile {
            map: Arc::new(map),
            header,
            parsed,
        }))
    }

    /// The validated header.
    #[must_use]
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The bytes the header was parsed from: the 8-byte length and the JSON header, exactly as read
    /// when the file was opened (None for a header over 16 MiB: see [`SafetensorsFile::header_sha256`]).
    /// Checks of the header hash these, not the mapping, which a writer could have changed since.
    #[must_use]
    pub fn header_bytes(&self) -> Option<&[u8]> {
        match &self.parsed {
            ParsedBytes::Kept(b) => Some(b),
            ParsedBytes::Digest { .. } => None,
        }
    }

    /// The length (8 + the JSON header's) and SHA-256 of the bytes the header was parsed from.
    #[must_use]
    pub fn header_sha256(&self) -> (usize, crate::hash::Digest) {
        match &self.parsed {
            ParsedBytes::Kept(b) => (b.len(), crate::hash::sha256(b)),
            ParsedBytes::Digest { len, sha256 } => (*len, *sha256),
        }
    }

    /// The shared mapping.
    #[must_use]
    pub fn mapping(&self) -> &Arc<Mapping> {
        &self.map
    }

    /// The path the file was opened from.
    #[must_use]
    pub fn path(&self) -> &Path {
        self.map.path()
    }

    /// Look up `name`.
    pub fn info(&self, name: &str) -> Result<TensorInfo<'_>, SafetensorsError> {
        self.header
            .get(name)
            .ok_or_else(|| SafetensorsError::TensorNotFound {
                name: name.to_string(),
            })
    }

    /// Absolute file offset of a tensor's first byte.
    #[must_use]
    pub fn absolute_offset(&self, info: &TensorInfo<'_>) -> u64 {
        self.header.data_start() + info.start
    }

    /// Check that the file has not been truncated since it was opened (touching pages past the new end
    /// of file would raise SIGBUS).
    pub fn check_unchanged(&self) -> Result<(), SafetensorsError> {
        self.map.check_len().map_err(changed)
    }

    /// Map `len` bytes of tensor `info` from `offset` into the page tables now (see
    /// [`Mapping::populate`]), so that reading them later takes no page fault. Pages not in the page
    /// cache are read from disk, on this thread. A file truncated since it was opened gives
    /// [`SafetensorsError::FileChanged`].
    pub fn populate(
        &self,
        info: &TensorInfo<'_>,
        offset: u64,
        len: u64,
    ) -> Result<Populated, SafetensorsError> {
        self.bytes_of(info, offset, len)?;
        self.map
            .populate(self.absolute_offset(info) + offset, len)
            .map_err(changed)
    }

    /// [`SafetensorsFile::populate`] every byte of `tensors`, in 32 MiB pieces spread over the current
    /// rayon pool. Progress (bytes) and cancellation go through `control`; its total is set to the
    /// tensors' byte length.
    pub fn prefetch(
        &self,
        tensors: &[TensorInfo<'_>],
        control: &Control,
    ) -> Result<Populated, SafetensorsError> {
        self.check_unchanged()?;
        let mut pieces = Vec::new();
        let mut total = 0u64;
        for info in tensors {
            let n = info.byte_len();
            total += n;
            let mut at = 0;
            while at < n {
                let len = PREFETCH_PIECE.min(n - at);
                pieces.push((*info, at, len));
                at += len;
            }
        }
        control.set_total(total);
        let unsupported = std::sync::atomic::AtomicBool::new(false);
        pieces.par_iter().try_for_each(|&(info, at, len)| {
            control.checkpoint()?;
            // Once the system said it cannot populate, the other pieces are only counted.
            if !unsupported.load(std::sync::atomic::Ordering::Relaxed)
                && self.populate(&info, at, len)? == Populated::Unsupported
            {
                unsupported.store(true, std::sync::atomic::Ordering::Relaxed);
            }
            control.add(len);
            Ok::<(), SafetensorsError>(())
        })?;
        Ok(if unsupported.into_inner() {
            Populated::Unsupported
        } else {
            Populated::Yes
        })
    }

    /// The bytes of tensor `name` (after checking that the file was not truncated).
    pub fn tensor(&self, name: &str) -> Result<(TensorInfo<'_>, &[u8]), SafetensorsError> {
        let info = self.info(name)?;
        self.check_unchanged()?;
        let bytes = self.bytes_of(&info, 0, info.byte_len())?;
        Ok((info, bytes))
    }

    /// `len` bytes of tensor `info` starting `offset` bytes into it.
    pub fn bytes_of(
        &self,
        info: &TensorInfo<'_>,
        offset: u64,
        len: u64,
    ) -> Result<&[u8], SafetensorsError> {
        let abs = self.absolute_offset(info);
        let range = offset
            .checked_add(len)
            .filter(|&end| end <= info.byte_len())
            .and_then(|end| {
                let s = usize::try_from(abs + offset).ok()?;
                let e = usize::try_from(abs + end).ok()?;
                self.map.bytes().get(s..e)
            });
        range.ok_or_else(|| SafetensorsError::DataPastEnd {
            name: info.name.to_string(),
            end: offset.saturating_add(len),
            data_len: info.byte_len(),
        })
    }
}

fn changed(e: IoError) -> SafetensorsError {
    match e {
        IoError::Truncated {
            path,
            expected,
            actual,
        } => SafetensorsError::FileChanged {
            path,
            expected,
            actual,
        },
        other => SafetensorsError::Io(other),
    }
}
