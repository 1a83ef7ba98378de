//! The `.tvecc` sidecar format (version 1, `docs/formats/ecc-sidecar.md`): parameters, layout, the
//! twice-stored header, the twice-stored self-checking digest table, and the parser of untrusted
//! sidecar bytes.
//!
//! ```text
//! [header A: 256][table A: T][parity: (S·m + G)·chunk][table B: T][header B: 256]
//! ```
//!
//! (`G` = local parity groups, format v2 with flag bit 1 only; 0 otherwise.)
//!
//! ```text
//! ```

use std::fs::File;
use std::path::Path;

use crate::hash::{sha256, ChunkSize, ChunkTree, Digest, Sha256, DIGEST_LEN};
use crate::io::{open_regular, read_exact_at};

use super::{ErasureError, MAX_SHARDS};

/// The first eight bytes of a header.
pub const MAGIC: [u8; 8] = *b"TVECC\x1a\r\n";
/// The format version of the striped GF(2^8) code (v1).
pub const VERSION: u16 = 1;
/// The format version of the wide GF(2^16) code (v2): one stripe over all chunks.
pub const VERSION_WIDE: u16 = 2;
/// Bytes in one header copy.
pub const HEADER_LEN: u64 = HEADER_BYTES as u64;
const HEADER_BYTES: usize = 256;
/// Bytes in one digest-table block: 127 entries and the block's own checksum.
pub const BLOCK_LEN: u64 = BLOCK_BYTES as u64;
const BLOCK_BYTES: usize = 4096;
/// Digest entries per table block.
pub const ENTRIES_PER_BLOCK: u64 = ENTRIES_PER_BLOCK_US as u64;
const ENTRIES_PER_BLOCK_US: usize = 127;
/// Codec identifier: systematic Cauchy Reed-Solomon over GF(2^8), polynomial 0x11d.
pub const CODEC_CAUCHY_GF256: u8 = 1;
/// Codec identifier (format v2): the Leopard-RS code over GF(2^16) (`reed-solomon-simd`), applied to
/// every 64-byte column of the chunks independently (see `wide.rs`).
pub const CODEC_LEOPARD_GF65536: u8 = 2;
/// Chunk-digest identifier: SHA-256 (the chunk tree's leaf).
pub const DIGEST_SHA256: u8 = 1;
/// Chunk-digest identifier: BLAKE3 (256-bit output), the default since it verifies several times faster.
pub const DIGEST_BLAKE3: u8 = 2;
/// Header flag (bit 0): the header records the protected file's modification time at protect time (bytes
/// 160..168), so that `verify` can tell a stale sidecar (the file was edited after `protect`) from damage.
/// Sidecars written before this flag existed have flags 0 and no hint; they stay readable.
pub const FLAG_FILE_HINTS: u32 = 1;
/// Header flag (bit 1, format v2 only): the sidecar holds **local parity** (issue 18): the data chunks
/// form groups of `g` consecutive chunks (`g` at bytes 72..76), each with one parity chunk = the XOR of
/// its chunks, stored after the `m` global parity chunks. A group with one damaged chunk is repaired
/// from its own chunks alone. Sidecars without the flag have no local parity and stay readable.
pub const FLAG_LOCAL_PARITY: u32 = 2;
/// Header flag (bit 2, with bit 1 only): the local groups are **interleaved**: with `G = ⌈n / g⌉`
/// groups, chunk `i` is in group `i mod G` (group `q` holds chunks `q, q + G, q + 2G, …`), so neighbouring
/// chunks are in different groups and a burst over up to `G` consecutive chunks (an unaligned burst
/// damages two) is repaired from local parity alone. Without the bit (sidecars written before it), group
/// `q` is the `g` consecutive chunks from `q · g`.
pub const FLAG_INTERLEAVED_GROUPS: u32 = 4;
/// Every flag this reader understands.
const KNOWN_FLAGS: u32 = FLAG_FILE_HINTS | FLAG_LOCAL_PARITY | FLAG_INTERLEAVED_GROUPS;
/// Local groups the writer aims at (format v2): `g = ⌈n / 16⌉`, so one group is about 1/16 of the file
/// and the local parity adds about 16 chunks (1.6 % at n = 1024).
pub const LOCAL_GROUPS_TARGET: u64 = 16;
/// Files with fewer chunks get no local parity (a group of fewer than 4 chunks would cost over 25 %).
pub const MIN_LOCAL_CHUNKS: u64 = 64;

/// The local group size the writer picks for a wide code over `k` chunks: `⌈k / 16⌉` from 64 chunks
/// on, else 0 (no local parity).
#[must_use]
pub fn default_local_group(k: u16) -> u16 {
    let k = u64::from(k);
    if k < MIN_LOCAL_CHUNKS {
        return 0;
    }
    u16::try_from(k.div_ceil(LOCAL_GROUPS_TARGET)).unwrap_or(0)
}

/// The digest that locates damage: one per data chunk and per parity slot, in the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ChunkDigest {
    /// SHA-256: the chunk tree's leaves, so the header's root equals `hashFile`'s tree root.
    Sha256,
    /// BLAKE3: a cryptographic 256-bit hash that runs at several GB/s per core (SIMD over the chunk's
    /// 1 KiB blocks), so `verify` is no longer bounded by SHA-256.
    #[default]
    Blake3,
}

impl ChunkDigest {
    /// The identifier stored in the header.
    #[must_use]
    pub fn id(self) -> u8 {
        match self {
            Self::Sha256 => DIGEST_SHA256,
            Self::Blake3 => DIGEST_BLAKE3,
        }
    }

    /// The digest with identifier `id`.
    #[must_use]
    pub fn from_id(id: u8) -> Option<Self> {
        match id {
            DIGEST_SHA256 => Some(Self::Sha256),
            DIGEST_BLAKE3 => Some(Self::Blake3),
            _ => None,
        }
    }

    /// Parse `sha256` / `blake3`.
    #[must_use]
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "sha256" => Some(Self::Sha256),
            "blake3" => Some(Self::Blake3),
            _ => None,
        }
    }

    /// `sha256` or `blake3`.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Sha256 => "sha256",
            Self::Blake3 => "blake3",
        }
    }

    /// The digest of `data`.
    #[must_use]
    pub fn hash(self, data: &[u8]) -> Digest {
        match self {
            Self::Sha256 => sha256(data),
            Self::Blake3 => *blake3::hash(data).as_bytes(),
        }
    }
}
/// Largest stripe (`(k + m) × chunk`) accepted: each worker thread holds one stripe in memory.
pub const MAX_STRIPE_BYTES: u64 = 1 << 32;
/// Largest protected file length accepted (2^62 bytes).
pub const MAX_FILE_LEN: u64 = 1 << 62;

/// Named protection levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// 32 + 2 (6.25 % overhead).
    Low,
    /// 16 + 2 (12.5 % overhead), the default.
    Medium,
    /// 10 + 4 (40 % overhead).
    High,
}

impl Level {
    /// Parse `low` / `medium` / `high`.
    #[must_use]
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "low" => Some(Self::Low),
            "medium" => Some(Self::Medium),
            "high" => Some(Self::High),
            _ => None,
        }
    }

    /// `(k, m)` of the preset.
    #[must_use]
    pub fn shards(self) -> (u16, u16) {
        match self {
            Self::Low => (32, 2),
            Self::Medium => (16, 2),
            Self::High => (10, 4),
        }
    }

    /// Preset chunk size ceiling: 1 MiB.
    pub const CHUNK: u64 = 1 << 20;

    /// Parameters for a file of `file_len` bytes: the preset's `(k, m)`, with the chunk size lowered
    /// for small files to the largest power of two that still gives `k` chunks (at least 4 KiB), and `k`
    /// lowered to the chunk count for files under `k` × 4 KiB.
    pub fn params_for(self, file_len: u64) -> Result<Params, ErasureError> {
        let (k, m) = self.shards();
        let per = (file_len / u64::from(k)).max(1);
        let floor_pow2 = 1u64 << per.checked_ilog2().unwrap_or(0);
        let cs = floor_pow2.clamp(ChunkSize::MIN, Self::CHUNK);
        let chunk_size =
            ChunkSize::new(cs).map_err(|_| ErasureError::InvalidChunkSize { chunk_size: cs })?;
        let chunks = chunk_size.chunk_count(file_len);
        let k = u16::try_from(chunks.clamp(1, u64::from(k))).unwrap_or(k);
        Params::new(k, m, chunk_size.get())
    }
}

/// Validated code parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    k: u16,
    m: u16,
    chunk_size: ChunkSize,
    digest: ChunkDigest,
    wide: bool,
    /// Local group size `g` (format v2 with local parity), 0 for none.
    local: u16,
    /// Whether the local groups are interleaved ([`FLAG_INTERLEAVED_GROUPS`]); new wide codes are.
    interleaved: bool,
}

impl Params {
    /// `k ≥ 1` data and `m ≥ 1` parity chunks per stripe (`k + m ≤ 256`), chunk size a power of two
    /// from 4 KiB to 1 GiB.
    pub fn new(k: u16, m: u16, chunk_size: u64) -> Result<Self, ErasureError> {
        if k == 0 || m == 0 || usize::from(k) + usize::from(m) > MAX_SHARDS {
            return Err(ErasureError::InvalidShardCounts {
                k: k.into(),
                m: m.into(),
                max: MAX_SHARDS,
            });
        }
        let chunk_size = ChunkSize::new(chunk_size)
            .map_err(|_| ErasureError::InvalidChunkSize { chunk_size })?;
        let stripe = (u64::from(k) + u64::from(m)) * chunk_size.get();
        if stripe > MAX_STRIPE_BYTES {
            return Err(ErasureError::StripeTooLarge {
                bytes: stripe,
                max: MAX_STRIPE_BYTES,
            });
        }
        Ok(Self {
            k,
            m,
            chunk_size,
            digest: ChunkDigest::default(),
            wide: false,
            local: 0,
            interleaved: false,
        })
    }

    /// Format v2: one wide code over GF(2^16) with `k` data chunks (all the file's chunks) and `m`
    /// parity chunks, any `m` of the `k + m` recoverable. `(k, m)` must be supported by the transform
    /// (`k + m ≤ 65536`, see [`super::wide::supported`]); the chunk size is a power of two from 4 KiB to
    /// 1 GiB. No stripe-size limit: the code is applied column slice by column slice. Local parity
    /// groups of [`default_local_group`]`(k)` chunks are added (see [`Self::with_local_group`]).
    pub fn new_wide(k: u16, m: u16, chunk_size: u64) -> Result<Self, ErasureError> {
        if k == 0 || m == 0 || !super::wide::supported(k.into(), m.into()) {
            return Err(ErasureError::InvalidShardCounts {
                k: k.into(),
                m: m.into(),
                max: super::wide::MAX_SHARDS,
            });
        }
        let chunk_size = ChunkSize::new(chunk_size)
            .map_err(|_| ErasureError::InvalidChunkSize { chunk_size })?;
        Ok(Self {
            k,
            m,
            chunk_size,
            digest: ChunkDigest::default(),
            wide: true,
            local: default_local_group(k),
            interleaved: true,
        })
    }

    /// The same (format v2) parameters with local parity groups of `g` consecutive data chunks (0: no
    /// local parity). `g ≤ k`; format v1 takes only 0.
    pub fn with_local_group(self, g: u16) -> Result<Self, ErasureError> {
        if g > self.k || (g > 0 && !self.wide) {
            return Err(ErasureError::InvalidShardCounts {
                k: self.k.into(),
                m: self.m.into(),
                max: super::wide::MAX_SHARDS,
            });
        }
        Ok(Self { local: g, ..self })
    }

    /// The local group size `g` (0: no local parity).
    #[must_use]
    pub fn local_group(self) -> u64 {
        self.local.into()
    }

    /// The same parameters with interleaved (`true`, what new sidecars use) or consecutive (`false`, as
    /// written before [`FLAG_INTERLEAVED_GROUPS`]) local groups.
    #[must_use]
    pub fn with_interleaved_groups(self, interleaved: bool) -> Self {
        Self {
            interleaved,
            ..self
        }
    }

    /// Whether the local groups are interleaved.
    #[must_use]
    pub fn interleaved_groups(self) -> bool {
        self.interleaved && self.local > 0
    }

    /// Whether this is the wide code of format v2.
    #[must_use]
    pub fn is_wide(self) -> bool {
        self.wide
    }

    /// The sidecar format version these parameters are written in (1 or 2).
    #[must_use]
    pub fn format_version(self) -> u16 {
        if self.wide {
            VERSION_WIDE
        } else {
            VERSION
        }
    }

    /// The same parameters with chunk digest `digest`.
    #[must_use]
    pub fn with_digest(self, digest: ChunkDigest) -> Self {
        Self { digest, ..self }
    }

    /// The chunk digest.
    #[must_use]
    pub fn digest(self) -> ChunkDigest {
        self.digest
    }

    /// Data chunks per stripe.
    #[must_use]
    pub fn k(self) -> usize {
        self.k.into()
    }

    /// Parity chunks per stripe.
    #[must_use]
    pub fn m(self) -> usize {
        self.m.into()
    }

    /// The chunk size.
    #[must_use]
    pub fn chunk_size(self) -> ChunkSize {
        self.chunk_size
    }
}

/// Where everything lives, derived from the parameters and the protected file's length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// The parameters.
    pub params: Params,
    /// Length of the protected file.
    pub file_len: u64,
    /// Data chunks (`⌈file_len / chunk⌉`).
    pub chunks: u64,
    /// Stripes (`⌈chunks / k⌉`); chunk `i` is at position `i / S` of stripe `i mod S`.
    pub stripes: u64,
    /// Local parity groups (`⌈chunks / g⌉`, 0 without local parity); group `q` holds data chunks
    /// `q·g … min((q + 1)·g, chunks) − 1` and its parity is parity slot `S·m + q`.
    pub local_groups: u64,
    /// Digest entries (`chunks + S·m + local_groups`).
    pub entries: u64,
    /// Bytes of one table copy.
    pub table_len: u64,
    /// Bytes of the parity region.
    pub parity_len: u64,
    /// Total sidecar length.
    pub sidecar_len: u64,
}

impl Layout {
    /// The layout for `params` over a file of `file_len` bytes (checked arithmetic throughout).
    pub fn new(params: Params, file_len: u64) -> Result<Self, ErasureError> {
        let too_big = || ErasureError::FileTooLarge {
            len: file_len,
            max: MAX_FILE_LEN,
        };
        if file_len > MAX_FILE_LEN {
            return Err(too_big());
        }
        let cs = params.chunk_size.get();
        let chunks = params.chunk_size.chunk_count(file_len);
        // The wide code is one stripe: `k` must cover every chunk, with no virtual chunk past them
        // beyond the single one an empty file gets (`k = 1`).
        if params.wide && chunks != u64::from(params.k) && !(chunks == 0 && params.k == 1) {
            return Err(ErasureError::WideShape {
                k: params.k.into(),
                chunks,
            });
        }
        let stripes = chunks.div_ceil(u64::from(params.k));
        let local_groups = match params.local {
            0 => 0,
            g => chunks.div_ceil(u64::from(g)),
        };
        let parity_slots = stripes
            .checked_mul(u64::from(params.m))
            .and_then(|p| p.checked_add(local_groups))
            .ok_or_else(too_big)?;
        let entries = chunks.checked_add(parity_slots).ok_or_else(too_big)?;
        let table_len = entries
            .div_ceil(ENTRIES_PER_BLOCK)
            .checked_mul(BLOCK_LEN)
            .ok_or_else(too_big)?;
        let parity_len = parity_slots.checked_mul(cs).ok_or_else(too_big)?;
        let sidecar_len = table_len
            .checked_mul(2)
            .and_then(|t| t.checked_add(parity_len))
            .and_then(|t| t.checked_add(2 * HEADER_LEN))
            .ok_or_else(too_big)?;
        Ok(Self {
            params,
            file_len,
            chunks,
            stripes,
            local_groups,
            entries,
            table_len,
            parity_len,
            sidecar_len,
        })
    }

    /// The data chunks that bytes `[offset, offset + len)` of the protected file fall in, for each of
    /// `ranges`, in order without repeats; bytes past the protected length belong to no chunk.
    #[must_use]
    pub fn chunks_touching(&self, ranges: &[(u64, u64)]) -> Vec<u64> {
        let cs = self.params.chunk_size().get();
        let mut out: Vec<u64> = ranges
            .iter()
            .filter(|&&(_, len)| len > 0)
            .flat_map(|&(offset, len)| {
                let first = offset / cs;
                let end = offset.saturating_add(len).div_ceil(cs).min(self.chunks);
                first..end
            })
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// The data chunk at `pos` of `stripe`, or `None` for a virtual all-zero chunk past the end.
    #[must_use]
    pub fn chunk_at(&self, stripe: u64, pos: usize) -> Option<u64> {
        let idx = (pos as u64)
            .checked_mul(self.stripes)?
            .checked_add(stripe)?;
        (idx < self.chunks).then_some(idx)
    }

    /// `(stripe, position)` of data chunk `idx`.
    #[must_use]
    pub fn stripe_of(&self, idx: u64) -> (u64, u64) {
        if self.stripes == 0 {
            return (0, 0);
        }
        (idx % self.stripes, idx / self.stripes)
    }

    /// Parity slot of parity chunk `j` of `stripe` (slots are interleaved like data: `j·S + stripe`).
    #[must_use]
    pub fn parity_slot(&self, stripe: u64, j: usize) -> u64 {
        (j as u64) * self.stripes + stripe
    }

    /// Number of parity slots: the global ones (`S·m`), then one per local group.
    #[must_use]
    pub fn parity_slots(&self) -> u64 {
        self.global_parity_slots() + self.local_groups
    }

    /// Number of global parity slots (`S·m`): the Reed-Solomon parity.
    #[must_use]
    pub fn global_parity_slots(&self) -> u64 {
        self.stripes * u64::from(self.params.m)
    }

    /// The parity slot of local group `group`.
    #[must_use]
    pub fn local_slot(&self, group: u64) -> u64 {
        self.global_parity_slots() + group
    }

    /// The local group of data chunk `idx` (`None` without local parity).
    #[must_use]
    pub fn group_of(&self, idx: u64) -> Option<u64> {
        if self.params.interleaved_groups() {
            return idx.checked_rem(self.local_groups);
        }
        idx.checked_div(self.params.local_group())
    }

    /// The data chunks of local group `group`, in order: `q, q + G, …` (interleaved) or the `g`
    /// consecutive chunks from `q · g`; none for a group past the last.
    pub fn group_chunks(&self, group: u64) -> std::iter::StepBy<std::ops::Range<u64>> {
        if self.params.interleaved_groups() {
            let step = usize::try_from(self.local_groups.max(1)).unwrap_or(usize::MAX);
            let first = if group < self.local_groups {
                group.min(self.chunks)
            } else {
                self.chunks
            };
            return (first..self.chunks).step_by(step);
        }
        let g = self.params.local_group();
        let first = group.saturating_mul(g).min(self.chunks);
        (first..first.saturating_add(g).min(self.chunks)).step_by(1)
    }

    /// Offset of parity slot `slot` in the sidecar.
    #[must_use]
    pub fn parity_offset(&self, slot: u64) -> u64 {
        HEADER_LEN + self.table_len + slot * self.params.chunk_size.get()
    }

    /// Offset of table copy A.
    #[must_use]
    pub fn table_a_offset(&self) -> u64 {
        HEADER_LEN
    }

    /// Offset of table copy B.
    #[must_use]
    pub fn table_b_offset(&self) -> u64 {
        HEADER_LEN + self.table_len + self.parity_len
    }

    /// Offset of header copy B.
    #[must_use]
    pub fn header_b_offset(&self) -> u64 {
        self.table_b_offset() + self.table_len
    }

    /// `(offset, len)` of data chunk `idx` in the protected file.
    #[must_use]
    pub fn chunk_range(&self, idx: u64) -> (u64, u64) {
        self.params.chunk_size.chunk_range(idx, self.file_len)
    }
}

/// A parsed, validated header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The layout it describes.
    pub layout: Layout,
    /// Chunk-tree root (`docs/formats/chunk-tree.md`) of the protected file at this chunk size.
    pub root: Digest,
    /// SHA-256 over all digest entries, in order.
    pub table_digest: Digest,
    /// The protected file's modification time when it was protected, in nanoseconds since the Unix
    /// epoch (flag [`FLAG_FILE_HINTS`]); `None` in sidecars written before the flag existed. A hint
    /// only: with the file's length (`layout.file_len`) it tells a file edited after `protect` from a
    /// damaged one.
    pub file_mtime_ns: Option<i64>,
}

fn put(buf: &mut [u8; 256], at: usize, bytes: &[u8]) {
    if let Some(dst) = buf.get_mut(at..at + bytes.len()) {
        dst.copy_from_slice(bytes);
    }
}

fn u64_at(buf: &[u8], at: usize) -> u64 {
    buf.get(at..at + 8)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map_or(0, u64::from_le_bytes)
}

fn u16_at(buf: &[u8], at: usize) -> u16 {
    buf.get(at..at + 2)
        .and_then(|b| <[u8; 2]>::try_from(b).ok())
        .map_or(0, u16::from_le_bytes)
}

fn digest_at(buf: &[u8], at: usize) -> Digest {
    buf.get(at..at + DIGEST_LEN)
        .and_then(|b| Digest::try_from(b).ok())
        .unwrap_or_default()
}

impl Header {
    /// The 256 bytes of one header copy.
    #[must_use]
    pub fn encode(&self) -> [u8; 256] {
        let l = &self.layout;
        let mut b = [0u8; 256];
        put(&mut b, 0, &MAGIC);
        put(&mut b, 8, &l.params.format_version().to_le_bytes());
        put(&mut b, 10, &256u16.to_le_bytes());
        let mut flags = 0u32;
        if let Some(t) = self.file_mtime_ns {
            flags |= FLAG_FILE_HINTS;
            put(&mut b, 160, &t.to_le_bytes());
        }
        if l.params.local > 0 {
            flags |= FLAG_LOCAL_PARITY;
            put(&mut b, 72, &u32::from(l.params.local).to_le_bytes());
            if l.params.interleaved {
                flags |= FLAG_INTERLEAVED_GROUPS;
            }
        }
        put(&mut b, 12, &flags.to_le_bytes());
        put(&mut b, 16, &l.params.k.to_le_bytes());
        put(&mut b, 18, &l.params.m.to_le_bytes());
        let codec = if l.params.wide {
            CODEC_LEOPARD_GF65536
        } else {
            CODEC_CAUCHY_GF256
        };
        put(&mut b, 20, &[codec, l.params.digest.id()]);
        put(&mut b, 24, &l.params.chunk_size.get().to_le_bytes());
        put(&mut b, 32, &l.file_len.to_le_bytes());
        put(&mut b, 40, &l.chunks.to_le_bytes());
        put(&mut b, 48, &l.stripes.to_le_bytes());
        put(&mut b, 56, &l.entries.to_le_bytes());
        put(&mut b, 64, &l.sidecar_len.to_le_bytes());
        put(&mut b, 96, &self.root);
        put(&mut b, 128, &self.table_digest);
        let sum = sha256(b.get(..224).unwrap_or_default());
        put(&mut b, 224, &sum);
        b
    }

    /// Parse one header copy; every field is checked against the others.
    pub fn parse(bytes: &[u8]) -> Result<Self, &'static str> {
        let b = bytes.get(..256).ok_or("short header")?;
        if b.get(..8) != Some(&MAGIC[..]) {
            return Err("bad magic");
        }
        if sha256(b.get(..224).unwrap_or_default()) != digest_at(b, 224) {
            return Err("header checksum mismatch");
        }
        let version = u16_at(b, 8);
        if version != VERSION && version != VERSION_WIDE {
            return Err("unsupported version");
        }
        if u16_at(b, 10) != 256 {
            return Err("bad header length");
        }
        // Flags other than the known ones, and non-zero reserved bytes, are a sidecar this reader does
        // not understand (a later writer's feature, or damage the checksum did not catch).
        let flags = u32::from(u16_at(b, 12)) | (u32::from(u16_at(b, 14)) << 16);
        if flags & !KNOWN_FLAGS != 0 {
            return Err("unknown header flags");
        }
        let hints = flags & FLAG_FILE_HINTS != 0;
        let local = flags & FLAG_LOCAL_PARITY != 0;
        let interleaved = flags & FLAG_INTERLEAVED_GROUPS != 0;
        if (local && version != VERSION_WIDE) || (interleaved && !local) {
            return Err("unknown header flags");
        }
        let reserved_tail = if hints { 168..224 } else { 160..224 };
        let reserved_mid = if local { 76..96 } else { 72..96 };
        if b.get(22..24) != Some(&[0u8; 2][..])
            || b.get(reserved_mid)
                .is_some_and(|r| r.iter().any(|&x| x != 0))
            || b.get(reserved_tail)
                .is_some_and(|r| r.iter().any(|&x| x != 0))
        {
            return Err("reserved header bytes are not zero");
        }
        let want_codec = if version == VERSION_WIDE {
            CODEC_LEOPARD_GF65536
        } else {
            CODEC_CAUCHY_GF256
        };
        if b.get(20) != Some(&want_codec) {
            return Err("unknown codec");
        }
        let digest = b
            .get(21)
            .copied()
            .and_then(ChunkDigest::from_id)
            .ok_or("unknown digest")?;
        let params = if version == VERSION_WIDE {
            Params::new_wide(u16_at(b, 16), u16_at(b, 18), u64_at(b, 24))
        } else {
            Params::new(u16_at(b, 16), u16_at(b, 18), u64_at(b, 24))
        }
        .map_err(|_| "invalid parameters")?
        .with_digest(digest);
        let group = if local {
            let g = u64_at(b, 72) & 0xffff_ffff;
            if g == 0 {
                return Err("invalid parameters");
            }
            u16::try_from(g).map_err(|_| "invalid parameters")?
        } else {
            0
        };
        let params = params
            .with_local_group(group)
            .map_err(|_| "invalid parameters")?;
        let params = if local {
            params.with_interleaved_groups(interleaved)
        } else {
            params
        };
        let layout = Layout::new(params, u64_at(b, 32)).map_err(|_| "file length out of range")?;
        if layout.chunks != u64_at(b, 40)
            || layout.stripes != u64_at(b, 48)
            || layout.entries != u64_at(b, 56)
            || layout.sidecar_len != u64_at(b, 64)
        {
            return Err("derived sizes disagree");
        }
        Ok(Self {
            layout,
            root: digest_at(b, 96),
            table_digest: digest_at(b, 128),
            file_mtime_ns: hints.then(|| u64_at(b, 160).cast_signed()),
        })
    }
}

/// The digest table: one SHA-256 per data chunk, then one per parity slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    entries: Vec<Digest>,
}

impl Table {
    /// A table from its entries.
    #[must_use]
    pub fn new(entries: Vec<Digest>) -> Self {
        Self { entries }
    }

    /// All entries.
    #[must_use]
    pub fn entries(&self) -> &[Digest] {
        &self.entries
    }

    /// SHA-256 over the concatenated entries.
    #[must_use]
    pub fn digest(&self) -> Digest {
        let mut h = Sha256::new();
        for e in &self.entries {
            h.update(e);
        }
        h.finalize()
    }

    /// The blocked on-disk form: blocks of 127 entries (zero-padded) and `SHA-256(block index u64 LE
    /// ‖ entries)`.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for (i, block) in self.entries.chunks(ENTRIES_PER_BLOCK_US).enumerate() {
            let mut body = Vec::with_capacity(BLOCK_BYTES);
            for e in block {
                body.extend_from_slice(e);
            }
            body.resize((ENTRIES_PER_BLOCK_US) * DIGEST_LEN, 0);
            let sum = block_sum(i as u64, &body);
            out.extend_from_slice(&body);
            out.extend_from_slice(&sum);
        }
        out
    }
}

fn block_sum(index: u64, body: &[u8]) -> Digest {
    let mut h = Sha256::new();
    h.update(&index.to_le_bytes());
    h.update(body);
    h.finalize()
}

/// Returns the block's entries if its checksum holds.
fn check_block(index: u64, bytes: &[u8]) -> Option<&[u8]> {
    let split = (ENTRIES_PER_BLOCK_US) * DIGEST_LEN;
    let body = bytes.get(..split)?;
    let sum = bytes.get(split..split + DIGEST_LEN)?;
    (block_sum(index, body)[..] == *sum).then_some(body)
}

/// What the parser found wrong (or right) with the sidecar's own structure.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SidecarHealth {
    /// Header copy A is valid.
    pub header_a: bool,
    /// Header copy B is valid (at its expected place).
    pub header_b: bool,
    /// Table blocks of copy A that failed their checksum (or are missing).
    pub table_a_bad_blocks: Vec<u64>,
    /// Table blocks of copy B that failed their checksum (or are missing).
    pub table_b_bad_blocks: Vec<u64>,
    /// Actual length of the sidecar file.
    pub actual_len: u64,
    /// Length the header says it has.
    pub expected_len: u64,
}

impl SidecarHealth {
    /// Whether the sidecar's headers, tables and length are exactly as written.
    #[must_use]
    pub fn structure_intact(&self) -> bool {
        self.header_a
            && self.header_b
            && self.table_a_bad_blocks.is_empty()
            && self.table_b_bad_blocks.is_empty()
            && self.actual_len == self.expected_len
    }
}

/// An opened sidecar: the header and table recovered from whichever copies are valid.
#[derive(Debug)]
pub struct Sidecar {
    /// The header.
    pub header: Header,
    /// The digest table.
    pub table: Table,
    /// Structural health.
    pub health: SidecarHealth,
    /// The open file (for reading parity).
    pub file: File,
}

fn read_clipped(
    file: &File,
    path: &Path,
    offset: u64,
    len: u64,
    actual: u64,
) -> Result<Vec<u8>, ErasureError> {
    let end = offset.saturating_add(len).min(actual);
    if end <= offset {
        return Ok(Vec::new());
    }
    let n = usize::try_from(end - offset).map_err(|_| ErasureError::FileTooLarge {
        len,
        max: MAX_FILE_LEN,
    })?;
    let mut buf = vec![0u8; n];
    read_exact_at(file, path, &mut buf, offset)?;
    Ok(buf)
}

/// Most differing bytes tried when merging two damaged header copies (2^n checksums).
const MAX_MERGE_DIFF: usize = 12;

/// Largest window scanned for a header copy when neither copy is where it should be.
const SCAN_LIMIT: u64 = 64 << 20;

impl Sidecar {
    /// Open and parse the sidecar at `path`, recovering the header and table from the valid copies.
    #[allow(clippy::too_many_lines)]
    pub fn open(path: &Path) -> Result<Self, ErasureError> {
        let (file, actual) = open_regular(path)?;
        let corrupt = |reason: String| ErasureError::SidecarCorrupt {
            path: path.to_path_buf(),
            reason,
        };
        let head = read_clipped(&file, path, 0, HEADER_LEN, actual)?;
        let a = Header::parse(&head);
        let b_at_expected = |h: &Header| -> Result<bool, ErasureError> {
            let bytes = read_clipped(&file, path, h.layout.header_b_offset(), HEADER_LEN, actual)?;
            Ok(Header::parse(&bytes).as_ref() == Ok(h))
        };
        let (header, header_a, header_b) = match a {
            Ok(h) => {
                let b = b_at_expected(&h)?;
                (h, true, b)
            }
            Err(why_a) => {
                let found = Self::find_header_b(&file, path, actual)?;
                match found {
                    Some(h) => {
                        let b = b_at_expected(&h)?;
                        (h, false, b)
                    }
                    None => match Self::merge_headers(&file, path, actual, &head)? {
                        Some(h) => {
                            let b = b_at_expected(&h)?;
                            (h, false, b)
                        }
                        None => {
                            return Err(corrupt(format!(
                                "no valid header (copy A: {why_a}; copy B not found)"
                            )))
                        }
                    },
                }
            }
        };
        let layout = header.layout;
        let copy_a = read_clipped(
            &file,
            path,
            layout.table_a_offset(),
            layout.table_len,
            actual,
        )?;
        let copy_b = read_clipped(
            &file,
            path,
            layout.table_b_offset(),
            layout.table_len,
            actual,
        )?;
        let blocks = layout.table_len / BLOCK_LEN;
        let mut entries: Vec<Digest> = Vec::new();
        let mut health = SidecarHealth {
            header_a,
            header_b,
            actual_len: actual,
            expected_len: layout.sidecar_len,
            ..SidecarHealth::default()
        };
        let bl = BLOCK_BYTES;
        for i in 0..blocks {
            let start = usize::try_from(i).unwrap_or(usize::MAX).saturating_mul(bl);
            let a = copy_a
                .get(start..start.saturating_add(bl))
                .and_then(|s| check_block(i, s));
            let b = copy_b
                .get(start..start.saturating_add(bl))
                .and_then(|s| check_block(i, s));
            if a.is_none() {
                health.table_a_bad_blocks.push(i);
            }
            if b.is_none() {
                health.table_b_bad_blocks.push(i);
            }
            let body = a.or(b).ok_or_else(|| {
                corrupt(format!("digest table block {i} is damaged in both copies"))
            })?;
            for e in body.chunks_exact(DIGEST_LEN) {
                if (entries.len() as u64) < layout.entries {
                    entries.push(Digest::try_from(e).unwrap_or_default());
                }
            }
        }
        let table = Table::new(entries);
        if table.entries().len() as u64 != layout.entries || table.digest() != header.table_digest {
            return Err(corrupt("digest table does not match the header".into()));
        }
        let leaves: Vec<Digest> = table
            .entries()
            .get(..usize::try_from(layout.chunks).unwrap_or(0))
            .unwrap_or_default()
            .to_vec();
        let root = ChunkTree::from_leaves(layout.params.chunk_size(), layout.file_len, leaves)
            .map(|t| t.root())
            .map_err(|_| corrupt("digest table length disagrees with the header".into()))?;
        if root != header.root {
            return Err(corrupt(
                "digest table does not match the recorded root".into(),
            ));
        }
        Ok(Self {
            header,
            table,
            health,
            file,
        })
    }

    /// Both copies damaged: combine copy A with each candidate copy B (the last 256 bytes, and every
    /// magic-led window near the end) byte by byte, trying every choice where they differ (at most
    /// [`MAX_MERGE_DIFF`] bytes), and accept a combination only if its checksum and fields hold and it
    /// sits where it claims copy B lives.
    fn merge_headers(
        file: &File,
        path: &Path,
        actual: u64,
        head: &[u8],
    ) -> Result<Option<Header>, ErasureError> {
        let hl = HEADER_BYTES;
        if actual < 2 * HEADER_LEN || head.len() < hl {
            return Ok(None);
        }
        let start = actual.saturating_sub(SCAN_LIMIT);
        let window = read_clipped(file, path, start, actual - start, actual)?;
        let mut candidates = vec![window.len().saturating_sub(hl)];
        for pos in 0..window.len().saturating_sub(hl) {
            if window.get(pos..pos + 8) == Some(&MAGIC[..]) {
                candidates.push(pos);
            }
        }
        for pos in candidates {
            let Some(b) = window.get(pos..pos + hl) else {
                continue;
            };
            let diff: Vec<usize> = (0..hl).filter(|&i| head.get(i) != b.get(i)).collect();
            if diff.is_empty() || diff.len() > MAX_MERGE_DIFF {
                continue;
            }
            let mut buf = [0u8; 256];
            for (d, &v) in buf.iter_mut().zip(head) {
                *d = v;
            }
            for choice in 0u32..(1 << diff.len()) {
                for (bit, &i) in diff.iter().enumerate() {
                    let src = if choice & (1 << bit) == 0 { head } else { b };
                    if let (Some(d), Some(&v)) = (buf.get_mut(i), src.get(i)) {
                        *d = v;
                    }
                }
                if let Ok(h) = Header::parse(&buf) {
                    if h.layout.header_b_offset() == start + pos as u64 {
                        return Ok(Some(h));
                    }
                }
            }
        }
        Ok(None)
    }

    /// Look for a valid header copy B: at the end of the file, else by scanning the last
    /// [`SCAN_LIMIT`] bytes backwards (appended garbage after a damaged header A).
    fn find_header_b(
        file: &File,
        path: &Path,
        actual: u64,
    ) -> Result<Option<Header>, ErasureError> {
        if actual < HEADER_LEN {
            return Ok(None);
        }
        let start = actual.saturating_sub(SCAN_LIMIT);
        let window = read_clipped(file, path, start, actual - start, actual)?;
        let mut pos = window.len().saturating_sub(HEADER_BYTES);
        loop {
            if window.get(pos..pos + 8) == Some(&MAGIC[..]) {
                if let Ok(h) = Header::parse(window.get(pos..).unwrap_or_default()) {
                    if h.layout.header_b_offset() == start + pos as u64 {
                        return Ok(Some(h));
                    }
                }
            }
            if pos == 0 {
                return Ok(None);
            }
            pos -= 1;
        }
    }
}

#[cfg(test)]
#[allow(clippy::cast_possible_truncation)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn header() -> Header {
        let layout = Layout::new(Params::new(10, 4, 4096).unwrap(), 1_000_000).unwrap();
        Header {
            layout,
            root: [7; 32],
            table_digest: [9; 32],
            file_mtime_ns: Some(1_767_225_600_123_456_789),
        }
    }

    #[test]
    fn presets_adapt_to_small_files() {
        let p = Level::Medium.params_for(0).unwrap();
        assert_eq!((p.k(), p.m(), p.chunk_size().get()), (1, 2, 4096));
        let p = Level::Medium.params_for(700_000).unwrap();
        assert_eq!((p.k(), p.m(), p.chunk_size().get()), (16, 2, 32768));
        let p = Level::High.params_for(5 << 30).unwrap();
        assert_eq!((p.k(), p.m(), p.chunk_size().get()), (10, 4, 1 << 20));
        let p = Level::Low.params_for(10_000).unwrap();
        assert_eq!((p.k(), p.m(), p.chunk_size().get()), (3, 2, 4096));
        assert_eq!(Level::parse("extreme"), None);
        assert!(matches!(
            Params::new(200, 56, 1 << 30),
            Err(ErasureError::StripeTooLarge { .. })
        ));
        assert!(Params::new(3, 1, 1 << 30).is_ok());
    }

    #[test]
    fn header_round_trips() {
        let h = header();
        assert_eq!(Header::parse(&h.encode()).unwrap(), h);
    }

    #[test]
    fn every_single_byte_change_to_a_header_is_rejected() {
        let bytes = header().encode();
        for i in 0..256 {
            let mut b = bytes;
            b[i] ^= 0x01;
            assert!(Header::parse(&b).is_err(), "byte {i}");
        }
    }

    #[test]
    fn header_with_valid_checksum_but_inconsistent_fields_is_rejected() {
        let mut b = header().encode();
        b[40] ^= 1; // chunk count
        let sum = sha256(&b[..224]);
        b[224..].copy_from_slice(&sum);
        assert_eq!(Header::parse(&b), Err("derived sizes disagree"));
        let mut b = header().encode();
        b[16] = 0; // k = 0
        b[17] = 0;
        let sum = sha256(&b[..224]);
        b[224..].copy_from_slice(&sum);
        assert_eq!(Header::parse(&b), Err("invalid parameters"));
        let mut b = header().encode();
        b[32..40].copy_from_slice(&u64::MAX.to_le_bytes()); // absurd file length
        let sum = sha256(&b[..224]);
        b[224..].copy_from_slice(&sum);
        assert!(Header::parse(&b).is_err());
    }

    #[test]
    fn unknown_flags_and_non_zero_reserved_bytes_are_refused_even_with_a_valid_checksum() {
        // Issue 13: a header with non-zero flags was accepted. Bit 0 (file hints) is known now; every
        // other bit is refused.
        for (at, v, want) in [
            (12, 2, "unknown header flags"),
            (12, 0x81, "unknown header flags"),
            (13, 1, "unknown header flags"),
            (15, 0x80, "unknown header flags"),
            (22, 1, "reserved header bytes are not zero"),
            (80, 1, "reserved header bytes are not zero"),
            (170, 1, "reserved header bytes are not zero"),
            (223, 1, "reserved header bytes are not zero"),
        ] {
            let mut b = header().encode();
            b[at] = v;
            let sum = sha256(&b[..224]);
            b[224..].copy_from_slice(&sum);
            assert_eq!(Header::parse(&b), Err(want), "byte {at}");
        }
        // Without the hints flag, the hint bytes are reserved too.
        let mut b = header().encode();
        b[12] = 0;
        let sum = sha256(&b[..224]);
        b[224..].copy_from_slice(&sum);
        assert_eq!(Header::parse(&b), Err("reserved header bytes are not zero"));
    }

    #[test]
    fn file_hints_round_trip_and_old_headers_stay_readable() {
        // Issue 13, item 16: the protected file's mtime is recorded (flag bit 0, bytes 160..168).
        let h = header();
        let b = h.encode();
        assert_eq!(
            u32::from_le_bytes(b[12..16].try_into().unwrap()),
            FLAG_FILE_HINTS
        );
        assert_eq!(Header::parse(&b).unwrap().file_mtime_ns, h.file_mtime_ns);
        let before_epoch = Header {
            file_mtime_ns: Some(-5),
            ..header()
        };
        assert_eq!(Header::parse(&before_epoch.encode()).unwrap(), before_epoch);
        // A header as written before the flag existed: flags 0, bytes 160..224 zero.
        let old = Header {
            file_mtime_ns: None,
            ..header()
        };
        let ob = old.encode();
        assert_eq!(&ob[12..16], &[0u8; 4]);
        assert!(ob[160..224].iter().all(|&x| x == 0));
        assert_eq!(Header::parse(&ob).unwrap().file_mtime_ns, None);
    }

    #[test]
    fn interleaving_puts_consecutive_chunks_in_different_stripes() {
        let l = Layout::new(Params::new(4, 2, 4096).unwrap(), 4096 * 10).unwrap();
        assert_eq!((l.chunks, l.stripes), (10, 3));
        let mut seen = vec![];
        for s in 0..l.stripes {
            for p in 0..4 {
                if let Some(i) = l.chunk_at(s, p) {
                    assert_eq!(l.stripe_of(i), (s, p as u64));
                    seen.push(i);
                }
            }
        }
        seen.sort_unstable();
        assert_eq!(seen, (0..10).collect::<Vec<_>>());
        for i in 0..9 {
            assert_ne!(l.stripe_of(i).0, l.stripe_of(i + 1).0);
        }
    }

    #[test]
    fn table_blocks_round_trip_and_detect_damage() {
        let entries: Vec<Digest> = (0..300u32).map(|i| sha256(&i.to_le_bytes())).collect();
        let enc = Table::new(entries.clone()).encode();
        assert_eq!(enc.len(), 3 * BLOCK_BYTES);
        for i in 0..3u64 {
            let s = &enc[(i as usize) * 4096..(i as usize + 1) * 4096];
            assert!(check_block(i, s).is_some());
            assert!(
                check_block(i + 1, s).is_none(),
                "a block is bound to its index"
            );
            let mut d = s.to_vec();
            d[100] ^= 4;
            assert!(check_block(i, &d).is_none());
        }
    }

    #[test]
    fn chunk_digests_match_their_references() {
        // FIPS 180-2 and the BLAKE3 reference test vector for "abc".
        assert_eq!(
            crate::hash::to_hex(&ChunkDigest::Sha256.hash(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            crate::hash::to_hex(&ChunkDigest::Blake3.hash(b"abc")),
            "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85"
        );
        for d in [ChunkDigest::Sha256, ChunkDigest::Blake3] {
            assert_eq!(ChunkDigest::from_id(d.id()), Some(d));
            assert_eq!(ChunkDigest::parse(d.name()), Some(d));
        }
        assert_eq!(ChunkDigest::from_id(0), None);
        assert_eq!(ChunkDigest::from_id(3), None);
        assert_eq!(ChunkDigest::parse("md5"), None);
        assert_eq!(ChunkDigest::default(), ChunkDigest::Blake3);
    }

    #[test]
    fn header_records_the_chunk_digest_and_rejects_unknown_ids() {
        for d in [ChunkDigest::Sha256, ChunkDigest::Blake3] {
            let layout =
                Layout::new(Params::new(10, 4, 4096).unwrap().with_digest(d), 1_000_000).unwrap();
            let h = Header {
                layout,
                root: [1; 32],
                table_digest: [2; 32],
                file_mtime_ns: None,
            };
            let b = h.encode();
            assert_eq!(b[21], d.id());
            assert_eq!(Header::parse(&b).unwrap().layout.params.digest(), d);
            // An unknown digest id with a valid checksum is refused, never guessed.
            let mut u = b;
            u[21] = 9;
            let sum = sha256(&u[..224]);
            u[224..256].copy_from_slice(&sum);
            assert_eq!(Header::parse(&u), Err("unknown digest"));
        }
    }

    #[test]
    fn sha256_sidecar_root_is_the_chunk_tree_root_of_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..50_000u32).map(|i| (i * 13 + i / 97) as u8).collect();
        let path = dir.path().join("f.bin");
        std::fs::write(&path, &data).unwrap();
        let params = Params::new(3, 2, 4096)
            .unwrap()
            .with_digest(ChunkDigest::Sha256);
        let r = super::super::protect(
            &path,
            None,
            super::super::ProtectOptions::Custom(params),
            &crate::Control::new(),
        )
        .unwrap();
        let tree = ChunkTree::from_leaves(
            params.chunk_size(),
            data.len() as u64,
            data.chunks(4096).map(sha256).collect(),
        )
        .unwrap();
        assert_eq!(r.root, tree.root());
    }

    fn small_sidecar() -> (tempfile::TempDir, std::path::PathBuf, Vec<u8>) {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..30_000u32).map(|i| (i * 7 + i / 300) as u8).collect();
        let path = dir.path().join("f.bin");
        std::fs::write(&path, &data).unwrap();
        let params = Params::new(3, 2, 4096).unwrap();
        super::super::protect(
            &path,
            None,
            super::super::ProtectOptions::Custom(params),
            &crate::Control::new(),
        )
        .unwrap();
        let side = std::fs::read(super::super::sidecar_path_for(&path)).unwrap();
        (dir, path, side)
    }

    #[test]
    fn both_headers_damaged_in_different_bytes_are_merged() {
        let (_dir, path, side) = small_sidecar();
        let sp = super::super::sidecar_path_for(&path);
        let mut bad = side.clone();
        bad[50] ^= 0x10;
        let n = bad.len();
        bad[n - 256 + 120] ^= 0x01;
        std::fs::write(&sp, &bad).unwrap();
        let sc = Sidecar::open(&sp).unwrap();
        assert!(!sc.health.header_a && !sc.health.header_b);
        // Same byte damaged in both copies: nothing to merge from.
        let mut bad = side.clone();
        bad[50] ^= 0x10;
        bad[n - 256 + 50] ^= 0x10;
        std::fs::write(&sp, &bad).unwrap();
        assert!(matches!(
            Sidecar::open(&sp),
            Err(ErasureError::SidecarCorrupt { .. })
        ));
    }

    #[test]
    fn tiny_and_empty_sidecars_are_typed_errors() {
        let (_dir, path, side) = small_sidecar();
        let sp = super::super::sidecar_path_for(&path);
        for len in [0usize, 1, 255, 256, 300, 4000] {
            std::fs::write(&sp, &side[..len.min(side.len())]).unwrap();
            assert!(
                matches!(Sidecar::open(&sp), Err(ErasureError::SidecarCorrupt { .. })),
                "len {len}"
            );
        }
        std::fs::write(&sp, b"not a sidecar at all, just some text\n").unwrap();
        assert!(matches!(
            Sidecar::open(&sp),
            Err(ErasureError::SidecarCorrupt { .. })
        ));
    }

    fn open_bytes(bytes: &[u8]) -> (Header, Table) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.tvecc");
        std::fs::write(&p, bytes).unwrap();
        let sc = Sidecar::open(&p).unwrap();
        (sc.header, sc.table)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn sidecar_parser_survives_arbitrary_damage(
            edits in proptest::collection::vec((any::<u32>(), any::<u8>()), 0..12),
            cut in 0usize..20_000,
            append in proptest::collection::vec(any::<u8>(), 0..300),
        ) {
            let (_dir, path, side) = small_sidecar();
            let sp = super::super::sidecar_path_for(&path);
            let mut bad = side.clone();
            for (at, v) in edits {
                let n = bad.len();
                bad[at as usize % n] = v;
            }
            bad.truncate(bad.len().saturating_sub(cut));
            bad.extend(append);
            std::fs::write(&sp, &bad).unwrap();
            if let Ok(sc) = Sidecar::open(&sp) {
                // Whatever is accepted is exactly what was written.
                let good = open_bytes(&side);
                prop_assert_eq!(sc.header, good.0);
                prop_assert_eq!(sc.table, good.1);
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn header_parser_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = Header::parse(&bytes);
        }

        #[test]
        fn header_parser_survives_mutations_of_a_valid_header(
            at in 0usize..256, val in any::<u8>(), fix_sum in any::<bool>()
        ) {
            let mut b = header().encode();
            b[at] = val;
            if fix_sum {
                let sum = sha256(&b[..224]);
                b[224..].copy_from_slice(&sum);
            }
            if let Ok(h) = Header::parse(&b) {
                // Anything accepted must be self-consistent.
                prop_assert_eq!(Layout::new(h.layout.params, h.layout.file_len).unwrap(), h.layout);
            }
        }
    }
}
