//! The chunk tree: a file cut into fixed-size chunks, each hashed on its own (in parallel), and a root
//! over a small header and the leaf digests. Specified in `docs/formats/chunk-tree.md`.

use rayon::prelude::*;

use super::{sha256, Digest, HashError, Sha256, DIGEST_LEN};

/// The first eight bytes of the root's header: format name and version 1.
pub const TREE_MAGIC: [u8; 8] = *b"TVCTREE\x01";
/// Length of the header hashed before the leaves.
pub const TREE_HEADER_LEN: usize = 32;
/// Algorithm identifier for SHA-256 in the header.
const ALG_SHA256: u8 = 1;

/// A validated chunk size: a power of two from [`ChunkSize::MIN`] to [`ChunkSize::MAX`] bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChunkSize(u32);

impl ChunkSize {
    /// Smallest chunk: 4 KiB (one page).
    pub const MIN: u64 = 4 << 10;
    /// Largest chunk: 1 GiB.
    pub const MAX: u64 = 1 << 30;
    /// The default: 4 MiB.
    pub const DEFAULT: Self = Self(4 << 20);

    /// Validate `bytes` as a chunk size.
    pub fn new(bytes: u64) -> Result<Self, HashError> {
        if bytes.is_power_of_two() && (Self::MIN..=Self::MAX).contains(&bytes) {
            // INVARIANT: bytes <= 2^30 fits in u32.
            u32::try_from(bytes)
                .map(Self)
                .map_err(|_| Self::invalid(bytes))
        } else {
            Err(Self::invalid(bytes))
        }
    }

    fn invalid(bytes: u64) -> HashError {
        HashError::InvalidChunkSize {
            chunk_size: bytes,
            min: Self::MIN,
            max: Self::MAX,
        }
    }

    /// The size in bytes.
    #[must_use]
    pub fn get(self) -> u64 {
        u64::from(self.0)
    }

    /// The size in bytes as `usize` (always fits: at most 1 GiB).
    #[must_use]
    pub fn as_usize(self) -> usize {
        self.0 as usize
    }

    /// How many chunks cover `total_len` bytes (the last may be short; an empty input has none).
    #[must_use]
    pub fn chunk_count(self, total_len: u64) -> u64 {
        total_len.div_ceil(self.get())
    }

    /// Byte range `(offset, len)` of chunk `index` in an input of `total_len` bytes.
    #[must_use]
    pub fn chunk_range(self, index: u64, total_len: u64) -> (u64, u64) {
        let start = index.saturating_mul(self.get()).min(total_len);
        let end = start.saturating_add(self.get()).min(total_len);
        (start, end - start)
    }
}

impl Default for ChunkSize {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// A chunk tree: the parameters and one SHA-256 leaf per chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkTree {
    chunk_size: ChunkSize,
    total_len: u64,
    leaves: Vec<Digest>,
}

impl ChunkTree {
    /// Assemble a tree from its leaves, checking that their number matches `total_len`.
    pub fn from_leaves(
        chunk_size: ChunkSize,
        total_len: u64,
        leaves: Vec<Digest>,
    ) -> Result<Self, HashError> {
        let expected = chunk_size.chunk_count(total_len);
        let actual = leaves.len() as u64;
        if expected != actual {
            return Err(HashError::LeafCountMismatch {
                expected,
                actual,
                total_len,
            });
        }
        Ok(Self {
            chunk_size,
            total_len,
            leaves,
        })
    }

    /// The tree of an in-memory buffer, hashing chunks in parallel on the current rayon pool.
    #[must_use]
    pub fn of_bytes(data: &[u8], chunk_size: ChunkSize) -> Self {
        let leaves: Vec<Digest> = data.par_chunks(chunk_size.as_usize()).map(sha256).collect();
        Self {
            chunk_size,
            total_len: data.len() as u64,
            leaves,
        }
    }

    /// The chunk size.
    #[must_use]
    pub fn chunk_size(&self) -> ChunkSize {
        self.chunk_size
    }

    /// The length of the input the tree covers.
    #[must_use]
    pub fn total_len(&self) -> u64 {
        self.total_len
    }

    /// The leaf digests, one per chunk, in order.
    #[must_use]
    pub fn leaves(&self) -> &[Digest] {
        &self.leaves
    }

    /// The 32-byte header hashed before the leaves.
    #[must_use]
    pub fn header(chunk_size: ChunkSize, total_len: u64) -> [u8; TREE_HEADER_LEN] {
        let mut h = [0u8; TREE_HEADER_LEN];
        h[..8].copy_from_slice(&TREE_MAGIC);
        h[8] = ALG_SHA256;
        // bytes 9..16 reserved, zero
        h[16..24].copy_from_slice(&chunk_size.get().to_le_bytes());
        h[24..32].copy_from_slice(&total_len.to_le_bytes());
        h
    }

    /// The root: SHA-256 over the header and the concatenated leaves.
    #[must_use]
    pub fn root(&self) -> Digest {
        let mut h = Sha256::new();
        h.update(&Self::header(self.chunk_size, self.total_len));
        for leaf in &self.leaves {
            h.update(leaf);
        }
        h.finalize()
    }

    /// Indices of the chunks whose leaves differ from `other`'s (same parameters required; otherwise
    /// every chunk is reported).
    #[must_use]
    pub fn differing_chunks(&self, other: &Self) -> Vec<u64> {
        if self.chunk_size != other.chunk_size || self.total_len != other.total_len {
            return (0..self.leaves.len() as u64).collect();
        }
        self.leaves
            .iter()
            .zip(&other.leaves)
            .enumerate()
            .filter(|(_, (a, b))| a != b)
            .map(|(i, _)| i as u64)
            .collect()
    }

    /// The leaves concatenated (`32 × chunk count` bytes).
    #[must_use]
    pub fn leaves_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.leaves.len() * DIGEST_LEN);
        for leaf in &self.leaves {
            out.extend_from_slice(leaf);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::cast_possible_truncation)]
    use super::super::to_hex;
    use super::*;

    #[test]
    fn chunk_size_validation() {
        assert!(ChunkSize::new(4096).is_ok());
        assert!(ChunkSize::new(1 << 30).is_ok());
        for bad in [0, 1, 4095, 4097, 3 << 20, 1 << 31, u64::MAX] {
            assert!(
                matches!(
                    ChunkSize::new(bad),
                    Err(HashError::InvalidChunkSize { chunk_size, .. }) if chunk_size == bad
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn empty_input_has_no_leaves_and_a_header_only_root() {
        let t = ChunkTree::of_bytes(&[], ChunkSize::DEFAULT);
        assert!(t.leaves().is_empty());
        assert_eq!(t.root(), sha256(&ChunkTree::header(ChunkSize::DEFAULT, 0)));
    }

    #[test]
    fn known_answer_matches_the_spec() {
        // The worked example of docs/formats/chunk-tree.md: 10000 bytes of i % 251, chunk 4096.
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        let cs = ChunkSize::new(4096).unwrap();
        let t = ChunkTree::of_bytes(&data, cs);
        assert_eq!(t.leaves().len(), 3);
        assert_eq!(t.leaves()[2], sha256(&data[8192..]));
        let header = ChunkTree::header(cs, 10_000);
        assert_eq!(
            to_hex(&header),
            "5456435452454501010000000000000000100000000000001027000000000000"
        );
        let mut manual = header.to_vec();
        for l in t.leaves() {
            manual.extend_from_slice(l);
        }
        assert_eq!(t.root(), sha256(&manual));
        // Cross-checked with node:crypto (docs/formats/chunk-tree.md, worked example).
        assert_eq!(
            to_hex(&t.leaves()[0]),
            "d67c656e01756650d77717b0839985a056ec28ffe174601d690fc407a2ceffca"
        );
        assert_eq!(
            to_hex(&t.root()),
            "de2e199c0b5f63d683827de0258fa24609afa567f205480001adec200aa11574"
        );
        assert_eq!(
            to_hex(&ChunkTree::of_bytes(&[], ChunkSize::DEFAULT).root()),
            "6e84ca076aefe2919fba1c24c17ccc825d2dce1260698c64fa495d221ea665af"
        );
    }

    #[test]
    fn from_leaves_checks_the_count() {
        let cs = ChunkSize::new(4096).unwrap();
        assert!(ChunkTree::from_leaves(cs, 4097, vec![[0; 32]; 2]).is_ok());
        assert!(matches!(
            ChunkTree::from_leaves(cs, 4097, vec![[0; 32]; 1]),
            Err(HashError::LeafCountMismatch {
                expected: 2,
                actual: 1,
                ..
            })
        ));
    }

    #[test]
    fn differing_chunks_locates_damage() {
        let cs = ChunkSize::new(4096).unwrap();
        let a = vec![7u8; 5 * 4096 + 10];
        let mut b = a.clone();
        b[4096 * 2 + 17] ^= 1;
        b[5 * 4096 + 3] ^= 0x80;
        let ta = ChunkTree::of_bytes(&a, cs);
        let tb = ChunkTree::of_bytes(&b, cs);
        assert_eq!(ta.differing_chunks(&tb), vec![2, 5]);
        assert_ne!(ta.root(), tb.root());
    }

    #[test]
    fn root_does_not_depend_on_thread_count() {
        let data: Vec<u8> = (0..(1u32 << 20) + 123)
            .map(|i| (i * 31 % 257) as u8)
            .collect();
        let cs = ChunkSize::new(4096).unwrap();
        let roots: Vec<Digest> = [1, 2, 3, 8]
            .iter()
            .map(|&n| {
                rayon::ThreadPoolBuilder::new()
                    .num_threads(n)
                    .build()
                    .unwrap()
                    .install(|| ChunkTree::of_bytes(&data, cs).root())
            })
            .collect();
        assert!(roots.windows(2).all(|w| w[0] == w[1]));
    }

    #[test]
    fn chunk_range_covers_the_input() {
        let cs = ChunkSize::new(4096).unwrap();
        assert_eq!(cs.chunk_range(0, 10_000), (0, 4096));
        assert_eq!(cs.chunk_range(2, 10_000), (8192, 1808));
        assert_eq!(cs.chunk_range(3, 10_000), (10_000, 0));
        assert_eq!(cs.chunk_count(8192), 2);
        assert_eq!(cs.chunk_count(8193), 3);
    }
}
