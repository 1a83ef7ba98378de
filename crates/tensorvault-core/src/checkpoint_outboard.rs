//! The checkpoint outboard (`NAME.safetensors.tvob`, `docs/formats/checkpoint.md`, "The outboard"):
//! the BLAKE3 chaining values of each `blake3-tree-v1` leaf's 64 KiB pieces, so that a lazy load can
//! verify only the pieces a tensor covers instead of the whole 1 MiB leaf.
//!
//! The outboard is untrusted input: the loader merges a chunk's chaining values with BLAKE3's own tree
//! rule and compares the result with the sealed leaf before it believes any of them. A piece is then
//! checked by hashing it as the subtree at its offset in the chunk and comparing with its value.
//!
//! File: a 40-byte header (`TVOUTBD` `0x01` magic, algorithm byte `0x02` = BLAKE3, 7 zero bytes,
//! `chunk_size`, `file_length`, `piece_size` as u64 little-endian), then for each *full* chunk (the
//! last, shorter chunk has none) `chunk_size / piece_size` chaining values of 32 bytes, in order.

use std::fs::File;
use std::io::Write;
use std::path::Path;

use blake3::hazmat::{
    merge_subtrees_non_root, merge_subtrees_root, ChainingValue, HasherExt, Mode,
};

use crate::io::IoError;
use crate::Control;

/// The magic bytes (format version 1).
pub const MAGIC: [u8; 8] = *b"TVOUTBD\x01";
/// The algorithm byte of BLAKE3 (the same as the chunk tree's `blake3-tree-v1` byte).
pub const ALGORITHM_BLAKE3: u8 = 2;
/// Length of the header.
pub const HEADER_LEN: usize = 40;
/// Piece size written by saves: 64 KiB (64 BLAKE3 chunks, one complete subtree).
pub const PIECE_SIZE: u64 = 64 * 1024;
/// Length of one chaining value.
pub const CV_LEN: usize = 32;
/// Most pieces per chunk accepted (a 1 GiB chunk at 64 KiB pieces).
pub const MAX_PIECES: u64 = 1 << 14;

/// Errors of the outboard.
#[derive(Debug, thiserror::Error)]
pub enum OutboardError {
    /// The header or the file length is not a valid outboard.
    #[error("malformed outboard: {reason}")]
    Malformed { reason: &'static str },
    /// Reading the weights or writing the outboard failed.
    #[error(transparent)]
    Io(#[from] IoError),
    /// The operation was cancelled.
    #[error("the operation was cancelled")]
    Cancelled,
}

fn malformed(reason: &'static str) -> OutboardError {
    OutboardError::Malformed { reason }
}

/// The parsed header of an outboard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboardHeader {
    pub chunk_size: u64,
    pub file_length: u64,
    pub piece_size: u64,
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    let s: [u8; 8] = b.get(at..at + 8)?.try_into().ok()?;
    Some(u64::from_le_bytes(s))
}

impl OutboardHeader {
    /// A header for a file of `file_length` bytes cut in `chunk_size` chunks, with 64 KiB pieces.
    pub fn new(chunk_size: u64, file_length: u64) -> Result<Self, OutboardError> {
        let h = Self {
            chunk_size,
            file_length,
            piece_size: PIECE_SIZE,
        };
        h.check()?;
        Ok(h)
    }

    fn check(&self) -> Result<(), OutboardError> {
        if !self.piece_size.is_power_of_two() || self.piece_size < 1024 {
            return Err(malformed(
                "piece_size is not a power of two of at least 1024",
            ));
        }
        if !self.chunk_size.is_power_of_two() || self.chunk_size > 1 << 30 {
            return Err(malformed("chunk_size is not a power of two up to 1 GiB"));
        }
        let per = self.chunk_size / self.piece_size;
        if self.chunk_size <= self.piece_size || per > MAX_PIECES {
            return Err(malformed("chunk_size must be 2 to 16384 pieces"));
        }
        if self.file_length > 1 << 53 || self.total_len().is_none() {
            return Err(malformed("file_length is too large"));
        }
        Ok(())
    }

    /// Parse and check the first [`HEADER_LEN`] bytes.
    pub fn parse(bytes: &[u8]) -> Result<Self, OutboardError> {
        let magic = bytes
            .get(..8)
            .ok_or_else(|| malformed("shorter than its header"))?;
        if magic != MAGIC {
            return Err(malformed("bad magic or version"));
        }
        if bytes.get(8) != Some(&ALGORITHM_BLAKE3) {
            return Err(malformed("unknown algorithm"));
        }
        if bytes.get(9..16).is_none_or(|z| z.iter().any(|&b| b != 0)) {
            return Err(malformed("reserved bytes are not zero"));
        }
        let (Some(chunk_size), Some(file_length), Some(piece_size)) =
            (u64_at(bytes, 16), u64_at(bytes, 24), u64_at(bytes, 32))
        else {
            return Err(malformed("shorter than its header"));
        };
        let h = Self {
            chunk_size,
            file_length,
            piece_size,
        };
        h.check()?;
        Ok(h)
    }

    /// The header's bytes.
    #[must_use]
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        let fields: [(usize, &[u8]); 5] = [
            (0, &MAGIC),
            (8, &[ALGORITHM_BLAKE3]),
            (16, &self.chunk_size.to_le_bytes()),
            (24, &self.file_length.to_le_bytes()),
            (32, &self.piece_size.to_le_bytes()),
        ];
        for (at, bytes) in fields {
            if let Some(dst) = out.get_mut(at..at + bytes.len()) {
                dst.copy_from_slice(bytes);
            }
        }
        out
    }

    /// Chaining values per full chunk.
    #[must_use]
    pub fn pieces_per_chunk(&self) -> u64 {
        self.chunk_size / self.piece_size
    }

    /// Chunks that have chaining values (every chunk but a shorter last one).
    #[must_use]
    pub fn full_chunks(&self) -> u64 {
        self.file_length / self.chunk_size
    }

    /// The exact length of a valid outboard file with this header.
    #[must_use]
    pub fn total_len(&self) -> Option<u64> {
        self.full_chunks()
            .checked_mul(self.pieces_per_chunk())?
            .checked_mul(CV_LEN as u64)?
            .checked_add(HEADER_LEN as u64)
    }

    /// Offset in the outboard of chunk `chunk`'s chaining values, or None for a chunk without any.
    #[must_use]
    pub fn chunk_offset(&self, chunk: u64) -> Option<u64> {
        if chunk >= self.full_chunks() {
            return None;
        }
        chunk
            .checked_mul(self.pieces_per_chunk())?
            .checked_mul(CV_LEN as u64)?
            .checked_add(HEADER_LEN as u64)
    }
}

/// The chaining value of `data` as the subtree starting `offset` bytes into its chunk (`offset` a
/// multiple of 1024, `data` non-empty and not longer than the subtree allows); None otherwise.
#[must_use]
pub fn piece_cv(data: &[u8], offset: u64) -> Option<ChainingValue> {
    if data.is_empty() || !offset.is_multiple_of(1024) {
        return None;
    }
    if let Some(max) = blake3::hazmat::max_subtree_len(offset) {
        if data.len() as u64 > max {
            return None;
        }
    }
    if offset == 0 && data.len() <= 1024 {
        return None; // a single-chunk input has no non-root value to compare
    }
    let mut h = blake3::Hasher::new();
    h.set_input_offset(offset);
    h.update(data);
    Some(h.finalize_non_root())
}

/// The BLAKE3 hash of a chunk from the chaining values of its equal, power-of-two pieces (at least
/// two, a power-of-two count): the chunk's `blake3-tree-v1` leaf. None for another count.
#[must_use]
pub fn merge_leaf(cvs: &[ChainingValue]) -> Option<[u8; 32]> {
    if cvs.len() < 2 || !cvs.len().is_power_of_two() {
        return None;
    }
    let mut level: Vec<ChainingValue> = cvs.to_vec();
    while level.len() > 2 {
        level = level
            .chunks_exact(2)
            .map(|p| match p {
                [l, r] => merge_subtrees_non_root(l, r, Mode::Hash),
                _ => [0u8; 32],
            })
            .collect();
    }
    match level.as_slice() {
        [l, r] => Some(*merge_subtrees_root(l, r, Mode::Hash).as_bytes()),
        _ => None,
    }
}

/// Split concatenated 32-byte values (`bytes.len()` a multiple of 32).
#[must_use]
pub fn split_cvs(bytes: &[u8]) -> Option<Vec<ChainingValue>> {
    if !bytes.len().is_multiple_of(CV_LEN) {
        return None;
    }
    bytes
        .chunks_exact(CV_LEN)
        .map(|c| c.try_into().ok())
        .collect()
}

/// The chaining values of one full chunk's pieces.
#[must_use]
pub fn chunk_cvs(chunk: &[u8], piece_size: u64) -> Vec<ChainingValue> {
    let piece = usize::try_from(piece_size).unwrap_or(usize::MAX);
    chunk
        .chunks(piece)
        .enumerate()
        .filter_map(|(i, p)| piece_cv(p, (i as u64).saturating_mul(piece_size)))
        .collect()
}

/// A full chunk's `blake3-tree-v1` leaf and its pieces' chaining values from one pass over its bytes
/// (the leaf is merged from the values: the same digest as `blake3::hash(chunk)`), so that a save that
/// hashes the leaves anyway can write the outboard without reading the file again. None unless the
/// chunk is a power-of-two number (≥ 2) of whole pieces.
#[must_use]
pub fn leaf_and_cvs(chunk: &[u8], piece_size: u64) -> Option<([u8; 32], Vec<ChainingValue>)> {
    let len = chunk.len() as u64;
    if piece_size == 0 || !len.is_multiple_of(piece_size) || !(len / piece_size).is_power_of_two() {
        return None;
    }
    let cvs = chunk_cvs(chunk, piece_size);
    let leaf = merge_leaf(&cvs)?;
    Some((leaf, cvs))
}

/// Write an outboard whose chaining values are already known (a save computes them with its leaves:
/// [`leaf_and_cvs`]) to `out` (created or truncated) and sync it. Returns its length.
pub fn write_cvs(
    out: &Path,
    header: &OutboardHeader,
    cvs: &[ChainingValue],
) -> Result<u64, OutboardError> {
    let total = header
        .total_len()
        .ok_or_else(|| malformed("file_length is too large"))?;
    if (cvs.len() as u64).saturating_mul(CV_LEN as u64) + HEADER_LEN as u64 != total {
        return Err(malformed("chaining values do not match the header"));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
    bytes.extend_from_slice(&header.encode());
    for cv in cvs {
        bytes.extend_from_slice(cv);
    }
    let mut f = File::create(out).map_err(|e| IoError::from_os(out, "create", e))?;
    f.write_all(&bytes)
        .map_err(|e| IoError::from_os(out, "write", e))?;
    f.sync_all()
        .map_err(|e| IoError::from_os(out, "fsync", e))?;
    Ok(total)
}

/// Write the outboard of the weights at `weights` (cut in `chunk_size` chunks) to `out` (created or
/// truncated), hashing chunks in parallel on the rayon pool. Returns the outboard's length.
pub fn write_outboard(
    weights: &Path,
    out: &Path,
    chunk_size: u64,
    control: &Control,
) -> Result<u64, OutboardError> {
    use rayon::prelude::*;
    /// Chunks hashed in parallel between two writes.
    const BATCH: u64 = 64;
    let (file, len) = crate::io::open_regular(weights)?;
    let header = OutboardHeader::new(chunk_size, len)?;
    let cs = usize::try_from(chunk_size).map_err(|_| malformed("chunk_size"))?;
    let full = header.full_chunks();
    control.set_total(full.saturating_mul(chunk_size));
    let mut w =
        std::io::BufWriter::new(File::create(out).map_err(|e| IoError::from_os(out, "create", e))?);
    w.write_all(&header.encode())
        .map_err(|e| IoError::from_os(out, "write", e))?;
    let mut first = 0u64;
    while first < full {
        control.checkpoint().map_err(|_| OutboardError::Cancelled)?;
        let end = first.saturating_add(BATCH).min(full);
        let batch: Vec<Result<Vec<ChainingValue>, OutboardError>> = (first..end)
            .into_par_iter()
            .map_init(
                || vec![0u8; cs],
                |buf, idx| {
                    crate::io::read_exact_at(&file, weights, buf, idx.saturating_mul(chunk_size))?;
                    control.add(chunk_size);
                    Ok(chunk_cvs(buf, header.piece_size))
                },
            )
            .collect();
        for cvs in batch {
            for cv in cvs? {
                w.write_all(&cv)
                    .map_err(|e| IoError::from_os(out, "write", e))?;
            }
        }
        first = end;
    }
    let f = w
        .into_inner()
        .map_err(|e| IoError::from_os(out, "write", e.into_error()))?;
    f.sync_all()
        .map_err(|e| IoError::from_os(out, "write", e))?;
    header
        .total_len()
        .ok_or_else(|| malformed("file_length is too large"))
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::cast_possible_truncation,
    clippy::many_single_char_names
)]
mod tests {
    use super::*;

    fn data(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 + i / 251) as u8).collect()
    }

    #[test]
    fn pieces_merge_to_the_chunk_hash() {
        for cs in [128 * 1024usize, 1 << 20] {
            let d = data(cs);
            let cvs = chunk_cvs(&d, PIECE_SIZE);
            assert_eq!(cvs.len(), cs / PIECE_SIZE as usize);
            assert_eq!(merge_leaf(&cvs).unwrap(), *blake3::hash(&d).as_bytes());
        }
    }

    #[test]
    fn leaf_and_values_in_one_pass() {
        let d = data(1 << 20);
        let (leaf, cvs) = leaf_and_cvs(&d, PIECE_SIZE).unwrap();
        assert_eq!(leaf, *blake3::hash(&d).as_bytes());
        assert_eq!(cvs, chunk_cvs(&d, PIECE_SIZE));
        assert!(leaf_and_cvs(&d[..3 * PIECE_SIZE as usize], PIECE_SIZE).is_none());
        assert!(leaf_and_cvs(&d[..=PIECE_SIZE as usize], PIECE_SIZE).is_none());
        assert!(leaf_and_cvs(&d[..PIECE_SIZE as usize], PIECE_SIZE).is_none());
    }

    #[test]
    fn a_changed_piece_or_value_does_not_merge() {
        let mut d = data(1 << 20);
        let cvs = chunk_cvs(&d, PIECE_SIZE);
        let leaf = *blake3::hash(&d).as_bytes();
        let mut bad = cvs.clone();
        bad[5][0] ^= 1;
        assert_ne!(merge_leaf(&bad).unwrap(), leaf);
        bad = cvs.clone();
        bad.swap(1, 2);
        assert_ne!(merge_leaf(&bad).unwrap(), leaf);
        d[3 * PIECE_SIZE as usize + 9] ^= 0x40;
        let p = &d[3 * PIECE_SIZE as usize..4 * PIECE_SIZE as usize];
        assert_ne!(piece_cv(p, 3 * PIECE_SIZE).unwrap(), cvs[3]);
        // The same bytes at another offset have another value (no piece can stand in for another).
        assert_ne!(
            piece_cv(&data(PIECE_SIZE as usize), PIECE_SIZE),
            piece_cv(&data(PIECE_SIZE as usize), 2 * PIECE_SIZE)
        );
    }

    #[test]
    fn bad_arguments_are_refused_without_panicking() {
        assert!(merge_leaf(&[]).is_none());
        assert!(merge_leaf(&[[0; 32]]).is_none());
        assert!(merge_leaf(&[[0; 32]; 3]).is_none());
        assert!(piece_cv(&[], 1024).is_none());
        assert!(piece_cv(&[1; 10], 1000).is_none());
        assert!(piece_cv(&[1; 3000], 1024).is_none()); // longer than the subtree at 1024
        assert!(piece_cv(&[1; 100], 0).is_none());
        assert!(split_cvs(&[0; 33]).is_none());
    }

    #[test]
    fn header_round_trips_and_refuses_garbage() {
        let h = OutboardHeader::new(1 << 20, 5 * (1 << 20) + 17).unwrap();
        let b = h.encode();
        assert_eq!(OutboardHeader::parse(&b).unwrap(), h);
        assert_eq!(h.full_chunks(), 5);
        assert_eq!(h.total_len(), Some(40 + 5 * 16 * 32));
        assert_eq!(h.chunk_offset(4), Some(40 + 4 * 16 * 32));
        assert_eq!(h.chunk_offset(5), None);
        for (at, v) in [(0usize, b'X'), (7, 2), (8, 1), (12, 1)] {
            let mut c = b;
            c[at] = v;
            assert!(OutboardHeader::parse(&c).is_err(), "byte {at}");
        }
        let mut c = b;
        c[32..40].copy_from_slice(&(1u64 << 20).to_le_bytes()); // one piece per chunk
        assert!(OutboardHeader::parse(&c).is_err());
        c[32..40].copy_from_slice(&1000u64.to_le_bytes());
        assert!(OutboardHeader::parse(&c).is_err());
        c = b;
        c[16..24].copy_from_slice(&(3u64 << 20).to_le_bytes());
        assert!(OutboardHeader::parse(&c).is_err());
        c = b;
        c[24..32].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(OutboardHeader::parse(&c).is_err());
        assert!(OutboardHeader::parse(&b[..39]).is_err());
    }

    proptest::proptest! {
        /// The always-on equivalent of the `checkpoint_outboard` fuzz target's header half.
        #[test]
        fn any_header_bytes_parse_or_fail_without_panicking(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            if let Ok(h) = OutboardHeader::parse(&bytes) {
                proptest::prop_assert_eq!(&h.encode()[..], &bytes[..HEADER_LEN]);
            }
            if let Some(cvs) = split_cvs(&bytes) {
                let _ = merge_leaf(&cvs);
            }
        }

        #[test]
        fn accepted_headers_describe_their_own_length(cs_log in 10u32..31, piece_log in 9u32..20, len in 0u64..(1 << 40)) {
            let mut b = [0u8; HEADER_LEN];
            b[..8].copy_from_slice(&MAGIC);
            b[8] = ALGORITHM_BLAKE3;
            b[16..24].copy_from_slice(&(1u64 << cs_log).to_le_bytes());
            b[24..32].copy_from_slice(&len.to_le_bytes());
            b[32..40].copy_from_slice(&(1u64 << piece_log).to_le_bytes());
            if let Ok(h) = OutboardHeader::parse(&b) {
                let total = h.total_len().unwrap();
                if h.full_chunks() > 0 {
                    proptest::prop_assert_eq!(h.chunk_offset(h.full_chunks() - 1).unwrap() + h.pieces_per_chunk() * 32, total);
                }
                proptest::prop_assert!(h.pieces_per_chunk() >= 2);
            }
        }
    }

    #[test]
    fn written_outboard_matches_the_leaves() {
        let dir = tempfile::tempdir().unwrap();
        let w = dir.path().join("w");
        let d = data(3 * (256 * 1024) + 5000);
        std::fs::write(&w, &d).unwrap();
        let o = dir.path().join("o");
        let n = write_outboard(&w, &o, 256 * 1024, &Control::new()).unwrap();
        let bytes = std::fs::read(&o).unwrap();
        assert_eq!(bytes.len() as u64, n);
        let h = OutboardHeader::parse(&bytes).unwrap();
        assert_eq!(h.full_chunks(), 3);
        for c in 0..3u64 {
            let at = h.chunk_offset(c).unwrap() as usize;
            let cvs = split_cvs(&bytes[at..at + 4 * 32]).unwrap();
            let chunk = &d[c as usize * 256 * 1024..(c as usize + 1) * 256 * 1024];
            assert_eq!(merge_leaf(&cvs).unwrap(), *blake3::hash(chunk).as_bytes());
        }
    }
}
