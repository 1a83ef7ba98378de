//! `protect`, `verify` and `repair` of a file with its `.tvecc` sidecar.
//!
//! Damaged data chunks are located by their SHA-256 (the chunk tree's leaves), become erasures, and are
//! rebuilt per stripe from the survivors; every rebuilt chunk is checked against its recorded digest
//! before it is written (in place by default, see [`super::place`]), and what changed is checked again
//! afterwards, so a repair either yields verified bytes or fails loudly.

use std::fs::File;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::control::Control;
use crate::hash::{ChunkTree, Digest};
use crate::io::atomic::AtomicFile;
use crate::io::{open_regular, read_exact_at, IoError, Mapping};

use super::place::{open_target, RepairMode, TargetSpec, WriteMode};
use super::sidecar::{
    ChunkDigest, Header, Layout, Level, Params, Sidecar, SidecarHealth, Table, BLOCK_LEN,
};
use super::{AlignedBuf, ErasureCodec, ErasureError, Format};

/// `n` zeroed, cache-line-aligned buffers of `len` bytes.
fn aligned_bufs(n: usize, len: usize) -> Vec<AlignedBuf> {
    (0..n).map(|_| AlignedBuf::zeroed(len)).collect()
}

/// The sidecar path for `path`: the same name with `.tvecc` appended.
#[must_use]
pub fn sidecar_path_for(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(".tvecc");
    PathBuf::from(s)
}

/// How to protect a file: a named level or explicit parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtectOptions {
    /// A preset, adapted to small files (see [`Level::params_for`]), with this chunk digest, in the
    /// format [`Format::Auto`] picks (v2 for files that need more than one stripe).
    Level(Level, ChunkDigest),
    /// A preset in a chosen sidecar format (see [`super::wide::params_for`]).
    LevelFormat(Level, ChunkDigest, Format),
    /// Exactly these parameters.
    Custom(Params),
}

impl Default for ProtectOptions {
    fn default() -> Self {
        Self::Level(Level::Medium, ChunkDigest::default())
    }
}

/// What [`protect`] wrote.
#[derive(Debug, Clone)]
pub struct ProtectReport {
    /// The sidecar's layout (parameters and sizes).
    pub layout: Layout,
    /// Chunk-tree root of the protected file.
    pub root: Digest,
    /// Where the sidecar was written.
    pub sidecar_path: PathBuf,
}

/// Overall state found by [`verify`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// File and sidecar exactly as protected.
    Intact,
    /// Damage found, all of it within the parity budget.
    Repairable,
    /// Some stripe lost more chunks than it has parity.
    Unrepairable,
    /// The sidecar looks stale rather than the file damaged: the file's modification time or length
    /// differs from the one recorded at `protect`, **and** most of the file differs from what was
    /// protected. A repair would roll a legitimate edit back, so [`repair`] refuses unless forced.
    Stale,
}

impl Status {
    /// Lower-case name.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Intact => "intact",
            Self::Repairable => "repairable",
            Self::Unrepairable => "unrepairable",
            Self::Stale => "stale",
        }
    }
}

/// What [`verify`] found.
#[derive(Debug, Clone)]
pub struct VerifyReport {
    /// Overall state.
    pub status: Status,
    /// The sidecar's layout.
    pub layout: Layout,
    /// The protected file's actual length (differs from `layout.file_len` after truncation or appends).
    pub actual_len: u64,
    /// Data chunks whose digest does not match (or that are missing), ascending.
    pub damaged_chunks: Vec<u64>,
    /// Parity slots whose digest does not match (or that are missing), ascending.
    pub damaged_parity: Vec<u64>,
    /// Data chunks among `damaged_chunks` that could not be read at all (`EIO`: a bad sector, a failed
    /// device; `EBADMSG`/`EUCLEAN`: a block the file system's own checksum refused). Parity rebuilds
    /// them like any damaged chunk, and an in-place repair writes them anew (a disk remaps a bad sector
    /// on write); their presence says the medium is failing.
    pub unreadable_chunks: Vec<u64>,
    /// Parity slots among `damaged_parity` that could not be read.
    pub unreadable_parity: Vec<u64>,
    /// Stripes that lost more chunks than they have parity.
    pub unrepairable_stripes: Vec<u64>,
    /// Damaged data chunks in unrepairable stripes.
    pub unrepairable_chunks: Vec<u64>,
    /// The sidecar's own structure.
    pub sidecar: SidecarHealth,
    /// Whether the file's modification time or length differs from the one recorded at `protect`
    /// (`None` for a sidecar written before these hints were recorded).
    pub modified_since_protect: Option<bool>,
    /// Bytes of the file that differ from what was protected, plus bytes appended past the protected
    /// length. Counted byte by byte (`differing_exact`) when the file was modified and its damaged
    /// chunks cover most of it but parity can rebuild them (they are rebuilt in memory and compared);
    /// otherwise the length of the damaged or missing chunks (an upper bound).
    pub differing_bytes: u64,
    /// Whether `differing_bytes` was counted byte by byte against the rebuilt protected bytes.
    pub differing_exact: bool,
    /// What the damage amounts to when the sidecar is not taken as stale: `Repairable` or
    /// `Unrepairable` (equal to `status` unless `status` is `Stale`).
    pub damage_status: Status,
}

/// What [`repair`] did.
#[derive(Debug, Clone)]
pub struct RepairReport {
    /// The state before repair.
    pub before: VerifyReport,
    /// Data chunks rebuilt from parity.
    pub repaired_chunks: Vec<u64>,
    /// Whether the protected file was replaced.
    pub file_rewritten: bool,
    /// Whether the sidecar was rewritten.
    pub sidecar_rewritten: bool,
    /// How the file was written (`None` when only the sidecar, or nothing, was).
    pub write_mode: Option<WriteMode>,
    /// What `before` covers: the whole file, or the stripes of the chunks listed in the options.
    pub checked_before: Checked,
    /// What `after` covers: the whole file (a copy, or a rebuilt sidecar), or the written chunks.
    pub checked_after: Checked,
    /// The file was repaired but its damaged sidecar could not be rewritten or mended (a folder or a
    /// sidecar this process may not write, a full disk): the error that stopped it. The sidecar's
    /// damage remains (`after` lists it); its valid copies and parity are as they were. `None` when the
    /// sidecar needed nothing or was rewritten. (A repair with only the sidecar to rewrite fails with
    /// the error instead: it did nothing.)
    pub sidecar_error: Option<std::sync::Arc<IoError>>,
    /// The state after repair: intact, except for the sidecar's damage when `sidecar_error` is set.
    pub after: VerifyReport,
}

fn usize_of(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// Read chunk `idx` of the protected file into `buf` (zero-padded to a full chunk); `false` if the file
/// is too short to hold it.
fn read_chunk(
    file: &File,
    path: &Path,
    layout: &Layout,
    idx: u64,
    actual_len: u64,
    buf: &mut [u8],
) -> Result<bool, ErasureError> {
    let (off, len) = layout.chunk_range(idx);
    let len_us = usize_of(len);
    if off.saturating_add(len) > actual_len {
        return Ok(false);
    }
    let (head, tail) = buf.split_at_mut(len_us.min(buf.len()));
    match read_exact_at(file, path, head, off) {
        Ok(()) => {}
        Err(IoError::Truncated { .. }) => return Ok(false),
        Err(e) => return Err(e.into()),
    }
    tail.fill(0);
    Ok(true)
}

/// Whether a read failed because its bytes are lost to the medium ([`IoError::is_lost_to_medium`]):
/// the chunk is then an erasure like a damaged one, and parity rebuilds it.
fn lost_to_medium(e: &ErasureError) -> bool {
    matches!(e, ErasureError::Io(io) if io.is_lost_to_medium())
}

/// What checking one chunk or parity slot found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    /// Present, and its digest matches.
    Intact,
    /// Missing (the file is too short), or its digest does not match.
    Damaged,
    /// Its bytes could not be read ([`lost_to_medium`]).
    Unreadable,
}

/// `bytes` against digest `index` of `entries` (the data chunks' digests, then the parity slots'):
/// intact when they hash to it, damaged otherwise (a missing entry included).
fn check_bytes(layout: &Layout, entries: &[Digest], index: u64, bytes: &[u8]) -> Check {
    if entries.get(usize_of(index)) == Some(&layout.params.digest().hash(bytes)) {
        Check::Intact
    } else {
        Check::Damaged
    }
}

/// Data chunk `idx` checked where `map` (the file's mapping, or none) holds it, else read from `file`
/// into `buf` (resized to one chunk) by [`check_chunk`].
#[allow(clippy::too_many_arguments)] // the chunk, its two sources and the table: all needed
fn check_mapped_chunk(
    file: &File,
    path: &Path,
    layout: &Layout,
    entries: &[Digest],
    idx: u64,
    actual_len: u64,
    map: Option<&Mapping>,
    buf: &mut Vec<u8>,
) -> Result<Check, ErasureError> {
    let (off, len) = layout.chunk_range(idx);
    if let Some(bytes) = mapped(map, off, len) {
        return Ok(check_bytes(layout, entries, idx, bytes));
    }
    buf.resize(layout.params.chunk_size().as_usize(), 0);
    check_chunk(file, path, layout, entries, idx, actual_len, buf)
}

/// Check data chunk `idx` of `file` against its digest in `entries` (`buf`: scratch of one chunk).
fn check_chunk(
    file: &File,
    path: &Path,
    layout: &Layout,
    entries: &[Digest],
    idx: u64,
    actual_len: u64,
    buf: &mut [u8],
) -> Result<Check, ErasureError> {
    let (_, clen) = layout.chunk_range(idx);
    match read_chunk(file, path, layout, idx, actual_len, buf) {
        Ok(false) => Ok(Check::Damaged),
        Ok(true) => Ok(check_bytes(
            layout,
            entries,
            idx,
            buf.get(..usize_of(clen)).unwrap_or_default(),
        )),
        Err(e) if lost_to_medium(&e) => Ok(Check::Unreadable),
        Err(e) => Err(e),
    }
}

/// Check parity slot `slot` of the sidecar (`sidecar_len` bytes long) against its digest, read into
/// `buf` (one chunk) unless `map` holds it.
fn check_parity(
    sc: &Sidecar,
    sidecar_path: &Path,
    sidecar_len: u64,
    slot: u64,
    map: Option<&Mapping>,
    buf: &mut Vec<u8>,
) -> Result<Check, ErasureError> {
    let layout = sc.header.layout;
    let cs = layout.params.chunk_size().as_usize();
    let off = layout.parity_offset(slot);
    if off.saturating_add(cs as u64) > sidecar_len {
        return Ok(Check::Damaged);
    }
    let bytes = if let Some(bytes) = mapped(map, off, cs as u64) {
        bytes
    } else {
        buf.resize(cs, 0);
        match read_exact_at(&sc.file, sidecar_path, buf, off) {
            Ok(()) => {}
            Err(e) => {
                let e = ErasureError::from(e);
                return if lost_to_medium(&e) {
                    Ok(Check::Unreadable)
                } else {
                    Err(e)
                };
            }
        }
        buf.as_slice()
    };
    Ok(check_bytes(
        &layout,
        sc.table.entries(),
        layout.chunks + slot,
        bytes,
    ))
}

/// One check's result per data chunk or parity slot (`None`: intact).
type Checks = Vec<Option<(u64, Check)>>;

/// Damaged data chunks or parity slots, ascending, and those among them that could not be read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Found {
    damaged: Vec<u64>,
    unreadable: Vec<u64>,
}

impl Found {
    /// From per-item results (`None`: intact), in order.
    fn collect(items: impl IntoIterator<Item = Option<(u64, Check)>>) -> Self {
        let mut f = Self::default();
        for (idx, check) in items.into_iter().flatten() {
            f.damaged.push(idx);
            if check == Check::Unreadable {
                f.unreadable.push(idx);
            }
        }
        f
    }

    /// Both lists sorted (after items were gathered out of order).
    fn sorted(mut self) -> Self {
        self.damaged.sort_unstable();
        self.unreadable.sort_unstable();
        self
    }
}

/// A private mapping of the first `len` bytes of `file` to hash in place, read front to back; `None`
/// where the file cannot be mapped (the caller then reads into buffers).
///
/// Hashing the page cache through a mapping spares the copy into a buffer that `pread` makes: that
/// copy was 30 % of a verify's CPU time (`perf record` of an intact, page-cached 1 GiB file), more
/// than the page faults and the unmapping that replace it.
fn map_for_hashing(file: &File, path: &Path, len: u64) -> Option<Mapping> {
    let map = Mapping::from_file(file.try_clone().ok()?, path, len).ok()?;
    map.advise_sequential();
    Some(map)
}

/// Check items `0..count` (data chunks, or parity slots) with `check(idx, map, scratch)`, in parallel,
/// through `map` where it holds them; progress counts `bytes_of(idx)` per item.
///
/// The mapping reads zeros where the file shrank or a page could not be read (the SIGBUS guard's zero
/// page, [`Mapping::check_len`]), which may match the digest of a chunk of zeros that reads would find
/// missing or unreadable: the report must be the one reads give. So an item hashed while the mapping
/// answered a fault (its fault count moved during the item's check: the item that faulted always does,
/// others that ran beside it may) is checked again with reads, with the items next to it; and when the
/// file shrank under the mapping, every item is. One bad sector in a large file then costs a re-read of
/// a few chunks, not a second pass over the whole file.
fn checked_through_map(
    map: Option<Mapping>,
    count: u64,
    control: &Control,
    bytes_of: impl Fn(u64) -> u64 + Sync,
    check: impl Fn(u64, Option<&Mapping>, &mut Vec<u8>) -> Result<Check, ErasureError> + Sync,
) -> Result<Found, ErasureError> {
    let pass =
        |items: &[u64], map: Option<&Mapping>| -> Result<Vec<(u64, Check, bool)>, ErasureError> {
            items
                .par_iter()
                .map_init(Vec::new, |buf: &mut Vec<u8>, &idx| {
                    control.checkpoint()?;
                    let before = map.map_or(0, Mapping::faults);
                    let c = check(idx, map, buf)?;
                    let suspect = map.is_some_and(|m| m.faults() != before);
                    control.add(bytes_of(idx));
                    Ok((idx, c, suspect))
                })
                .collect()
        };
    let all: Vec<u64> = (0..count).collect();
    let mut results = pass(&all, map.as_ref())?;
    let again: Vec<u64> = match map.as_ref().map(Mapping::check_len) {
        None | Some(Ok(())) => Vec::new(),
        Some(Err(IoError::Truncated { .. })) => all,
        // With their neighbours: the sidecar's parity slots are not page-aligned, so one page can hold
        // the end of a slot and the start of the next, and only the first to touch it faults.
        Some(Err(_)) => {
            let mut again: Vec<u64> = results
                .iter()
                .filter(|r| r.2)
                .flat_map(|r| [r.0.saturating_sub(1), r.0, r.0 + 1])
                .filter(|&i| i < count)
                .collect();
            again.sort_unstable();
            again.dedup();
            again
        }
    };
    drop(map);
    if !again.is_empty() {
        control.set_total(
            control
                .total()
                .saturating_add(again.iter().map(|&i| bytes_of(i)).sum::<u64>()),
        );
        for (idx, c, _) in pass(&again, None)? {
            if let Some(r) = results.get_mut(usize_of(idx)) {
                r.1 = c;
            }
        }
    }
    Ok(Found::collect(results.into_iter().map(|(idx, c, _)| {
        (c != Check::Intact).then_some((idx, c))
    })))
}

/// Bytes `[off, off + len)` of `map`, when it holds all of them.
fn mapped(map: Option<&Mapping>, off: u64, len: u64) -> Option<&[u8]> {
    let end = off.checked_add(len)?;
    map?.bytes()
        .get(usize::try_from(off).ok()?..usize::try_from(end).ok()?)
}

/// The data chunks among `chunks` that are missing, unreadable or do not match their digest, read and
/// checked in parallel (one chunk buffer per worker), ascending when `chunks` is; progress counts their
/// bytes.
fn damaged_among<I: IntoParallelIterator<Item = u64>>(
    chunks: I,
    file: &File,
    path: &Path,
    layout: &Layout,
    entries: &[Digest],
    actual_len: u64,
    control: &Control,
) -> Result<Found, ErasureError> {
    let cs = layout.params.chunk_size().as_usize();
    let found: Result<Checks, ErasureError> = chunks
        .into_par_iter()
        .map_init(Vec::new, |buf: &mut Vec<u8>, idx| {
            control.checkpoint()?;
            buf.resize(cs, 0);
            let check = check_chunk(file, path, layout, entries, idx, actual_len, buf)?;
            control.add(layout.chunk_range(idx).1);
            Ok((check != Check::Intact).then_some((idx, check)))
        })
        .collect();
    Ok(Found::collect(found?))
}

/// Digests of one stripe's data chunks and parity slots.
type StripeDigests = (Vec<(u64, Digest)>, Vec<(u64, Digest)>);

/// A file's modification time in nanoseconds since the Unix epoch (saturating; negative before it).
fn mtime_ns(meta: &std::fs::Metadata) -> i64 {
    use std::os::unix::fs::MetadataExt;
    meta.mtime()
        .saturating_mul(1_000_000_000)
        .saturating_add(meta.mtime_nsec())
}

/// Modification times closer than this count as equal (see `verify_with`).
const MTIME_TOLERANCE_NS: u64 = 1_000_000;

/// The modification time to record in a new sidecar's header.
#[derive(Debug, Clone, Copy)]
enum MtimeHint {
    /// The protected file's own, read when it is protected.
    FromFile,
    /// The one of the sidecar being rebuilt by [`repair`] (the file verified identical to what was
    /// protected), so that the rebuilt sidecar is byte-identical to the original.
    Keep(Option<i64>),
}

/// Protect `path`: write its sidecar (`<path>.tvecc`, or `sidecar`) atomically. The header records
/// the file's modification time (a hint that tells a later edit from damage, see [`Status::Stale`]).
pub fn protect(
    path: &Path,
    sidecar: Option<&Path>,
    options: ProtectOptions,
    control: &Control,
) -> Result<ProtectReport, ErasureError> {
    protect_with(path, sidecar, options, MtimeHint::FromFile, false, control)
}

/// [`protect`] into a new file at `sidecar`, which must not exist: written there directly (created
/// with `O_EXCL`, fsynced, removed on failure) instead of through a temporary renamed over it. For a
/// writer whose `sidecar` is already a private temporary name that it renames into place itself (a
/// checkpoint save: its set of files is committed together), where the second temporary cost a rename
/// and a folder fsync per save.
pub fn protect_new(
    path: &Path,
    sidecar: &Path,
    options: ProtectOptions,
    control: &Control,
) -> Result<ProtectReport, ErasureError> {
    protect_with(
        path,
        Some(sidecar),
        options,
        MtimeHint::FromFile,
        true,
        control,
    )
}

#[allow(clippy::too_many_lines)]
fn protect_with(
    path: &Path,
    sidecar: Option<&Path>,
    options: ProtectOptions,
    mtime: MtimeHint,
    fresh: bool,
    control: &Control,
) -> Result<ProtectReport, ErasureError> {
    let (file, len) = open_regular(path)?;
    let sidecar_path = sidecar.map_or_else(|| sidecar_path_for(path), Path::to_path_buf);
    let data_meta = file
        .metadata()
        .map_err(|e| IoError::from_os(path, "stat", e))?;
    // The sidecar must not be the data file under another name (`--sidecar FILE`, a hard link, a
    // symlink): replacing it would destroy what it protects.
    if let Ok(sc) = std::fs::metadata(&sidecar_path) {
        use std::os::unix::fs::MetadataExt;
        if sc.dev() == data_meta.dev() && sc.ino() == data_meta.ino() {
            return Err(ErasureError::SidecarIsTheFile {
                path: path.to_path_buf(),
                sidecar: sidecar_path,
            });
        }
    }
    let params = match options {
        ProtectOptions::Level(level, digest) => {
            super::wide::params_for(level, Format::Auto, len)?.with_digest(digest)
        }
        ProtectOptions::LevelFormat(level, digest, format) => {
            super::wide::params_for(level, format, len)?.with_digest(digest)
        }
        ProtectOptions::Custom(p) => p,
    };
    let layout = Layout::new(params, len)?;
    // Added to what the control has counted: a repair that rebuilds the sidecar has verified and
    // rebuilt before (setting `len` alone put the total below the bytes already done).
    control.set_total(control.done() + len);
    crate::io::advise_sequential(&file);

    // The sidecar takes the protected file's permissions (with k = 1 it holds the data verbatim).
    let mode = {
        use std::os::unix::fs::PermissionsExt;
        data_meta.permissions().mode() & 0o7777
    };
    let out = if fresh {
        AtomicFile::create_fresh_with_mode(&sidecar_path, mode)?
    } else {
        AtomicFile::create_with_mode(&sidecar_path, mode)?
    };
    let sc = out.file().ok_or_else(|| ErasureError::FileChanged {
        path: sidecar_path.clone(),
    })?;
    sc.set_len(layout.sidecar_len)
        .map_err(|e| out.error("set_len", e))?;
    let tmp_path = out.tmp_path().to_path_buf();
    // Errors about the temporary sidecar name the sidecar asked for.
    let named = |e: ErasureError| match e {
        ErasureError::Io(e) => ErasureError::Io(out.naming_destination(e)),
        e => e,
    };

    let entries = if params.is_wide() {
        super::wide::encode_file(&file, path, &layout, sc, &tmp_path, control).map_err(named)?
    } else {
        stripe_entries(&file, path, &layout, sc, &tmp_path, control).map_err(named)?
    };
    // The file must not have changed under us.
    let now_meta = file
        .metadata()
        .map_err(|e| IoError::from_os(path, "stat", e))?;
    if now_meta.len() != len || mtime_ns(&now_meta) != mtime_ns(&data_meta) {
        return Err(ErasureError::FileChanged {
            path: path.to_path_buf(),
        });
    }
    let file_mtime_ns = match mtime {
        MtimeHint::FromFile => Some(mtime_ns(&data_meta)),
        MtimeHint::Keep(t) => t,
    };
    let root = write_tables(sc, &tmp_path, path, &layout, entries, file_mtime_ns).map_err(named)?;
    control.checkpoint()?;
    out.commit()?;
    Ok(ProtectReport {
        layout,
        root,
        sidecar_path,
    })
}

/// Write the sidecar's headers and digest tables (`entries`: data chunks, then parity chunks) at
/// their places; returns the root of the data chunks' tree.
fn write_tables(
    sc: &File,
    sc_path: &Path,
    path: &Path,
    layout: &Layout,
    entries: Vec<Digest>,
    file_mtime_ns: Option<i64>,
) -> Result<Digest, ErasureError> {
    let leaves = entries
        .get(..usize_of(layout.chunks))
        .unwrap_or_default()
        .to_vec();
    let root = ChunkTree::from_leaves(layout.params.chunk_size(), layout.file_len, leaves)
        .map_err(|_| ErasureError::FileChanged {
            path: path.to_path_buf(),
        })?
        .root();
    let table = Table::new(entries);
    let header = Header {
        layout: *layout,
        root,
        table_digest: table.digest(),
        file_mtime_ns,
    }
    .encode();
    let table_bytes = table.encode();
    write_all_at(sc, sc_path, &header, 0)?;
    write_all_at(sc, sc_path, &table_bytes, layout.table_a_offset())?;
    write_all_at(sc, sc_path, &table_bytes, layout.table_b_offset())?;
    write_all_at(sc, sc_path, &header, layout.header_b_offset())?;
    Ok(root)
}

/// The parity of a file computed from the bytes it is being written from, while it is written.
///
/// `src` holds the `len` bytes the file at `path` will hold. When `options` pick the wide code
/// (format v2), the parity is encoded from `src` into a new sidecar created at `sidecar` (it must not
/// exist: the caller gives a temporary name and commits it; it is removed on failure), then
/// `written` is called — it returns once the file is completely written, with its metadata — and
/// the headers and tables are written (with the file's modification time, as [`protect`] records it)
/// and the sidecar is fsynced. The result is the sidecar [`protect`] would write for the finished
/// file. Returns `None`, having done nothing, for the striped code (v1): the caller protects the
/// written file instead.
pub fn protect_source<S: super::wide::Source + ?Sized>(
    src: &S,
    len: u64,
    path: &Path,
    sidecar: &Path,
    options: ProtectOptions,
    written: impl FnOnce() -> Result<std::fs::Metadata, ErasureError>,
    control: &Control,
) -> Result<Option<ProtectReport>, ErasureError> {
    let params = match options {
        ProtectOptions::Level(level, digest) => {
            super::wide::params_for(level, Format::Auto, len)?.with_digest(digest)
        }
        ProtectOptions::LevelFormat(level, digest, format) => {
            super::wide::params_for(level, format, len)?.with_digest(digest)
        }
        ProtectOptions::Custom(p) => p,
    };
    if !params.is_wide() {
        return Ok(None);
    }
    let layout = Layout::new(params, len)?;
    control.set_total(len);
    let mut opts = std::fs::OpenOptions::new();
    opts.read(true).write(true).create_new(true);
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o644);
    }
    let sc = opts
        .open(sidecar)
        .map_err(|e| IoError::from_os(sidecar, "open", e))?;
    let r = (|| {
        sc.set_len(layout.sidecar_len)
            .map_err(|e| IoError::from_os(sidecar, "set_len", e))?;
        let entries = super::wide::encode_source(src, &layout, &sc, sidecar, control)?;
        let meta = written()?;
        if meta.len() != len {
            return Err(ErasureError::FileChanged {
                path: path.to_path_buf(),
            });
        }
        let root = write_tables(&sc, sidecar, path, &layout, entries, Some(mtime_ns(&meta)))?;
        control.checkpoint()?;
        sc.sync_all()
            .map_err(|e| IoError::from_os(sidecar, "fsync", e))?;
        Ok(root)
    })();
    drop(sc);
    match r {
        Ok(root) => Ok(Some(ProtectReport {
            layout,
            root,
            sidecar_path: sidecar.to_path_buf(),
        })),
        Err(e) => {
            let _ = std::fs::remove_file(sidecar);
            Err(e)
        }
    }
}

/// Format v1: encode stripe by stripe, write the parity slots, return the digest entries.
fn stripe_entries(
    file: &File,
    path: &Path,
    layout: &Layout,
    sc: &File,
    tmp_path: &Path,
    control: &Control,
) -> Result<Vec<Digest>, ErasureError> {
    let (layout, len, params) = (*layout, layout.file_len, layout.params);
    let codec = ErasureCodec::new(params.k(), params.m())?;
    let cs = params.chunk_size().as_usize();
    let (k, m) = (params.k(), params.m());
    let digest = params.digest();
    let results: Result<Vec<StripeDigests>, ErasureError> = (0..layout.stripes)
        .into_par_iter()
        .map_init(
            || (aligned_bufs(k, cs), aligned_bufs(m, cs)),
            |(data, parity), s| {
                control.checkpoint()?;
                let mut dd = Vec::with_capacity(k);
                for (pos, buf) in data.iter_mut().enumerate() {
                    let buf = buf.as_mut_slice();
                    if let Some(idx) = layout.chunk_at(s, pos) {
                        if !read_chunk(file, path, &layout, idx, len, buf)? {
                            return Err(ErasureError::FileChanged {
                                path: path.to_path_buf(),
                            });
                        }
                        let (_, clen) = layout.chunk_range(idx);
                        dd.push((
                            idx,
                            digest.hash(buf.get(..usize_of(clen)).unwrap_or_default()),
                        ));
                        control.add(clen);
                    } else {
                        buf.fill(0);
                    }
                }
                let d: Vec<&[u8]> = data.iter().map(AlignedBuf::as_slice).collect();
                let mut p: Vec<&mut [u8]> =
                    parity.iter_mut().map(AlignedBuf::as_mut_slice).collect();
                codec.encode(&d, &mut p)?;
                let mut pd = Vec::with_capacity(m);
                for (j, buf) in parity.iter().enumerate() {
                    let buf = buf.as_slice();
                    let slot = layout.parity_slot(s, j);
                    write_all_at(sc, tmp_path, buf, layout.parity_offset(slot))?;
                    // To the disk while the next stripes are encoded, not all at the commit.
                    crate::io::start_writeback(sc, layout.parity_offset(slot), buf.len() as u64);
                    pd.push((slot, digest.hash(buf)));
                }
                Ok((dd, pd))
            },
        )
        .collect();
    let mut entries = vec![Digest::default(); usize_of(layout.entries)];
    for (dd, pd) in results? {
        for (idx, d) in dd {
            if let Some(e) = entries.get_mut(usize_of(idx)) {
                *e = d;
            }
        }
        for (slot, d) in pd {
            if let Some(e) = entries.get_mut(usize_of(layout.chunks + slot)) {
                *e = d;
            }
        }
    }
    Ok(entries)
}

fn write_all_at(file: &File, path: &Path, buf: &[u8], offset: u64) -> Result<(), IoError> {
    use std::os::unix::fs::FileExt;
    file.write_all_at(buf, offset)
        .map_err(|e| IoError::from_os(path, "write", e))
}

/// Rewrite in place the copies of the sidecar's header and digest-table blocks that failed their
/// checks, from the copies [`Sidecar::open`] recovered, and sync. Only damaged bytes are written and a
/// block's other copy is never touched, so a crash at any instant leaves every copy that was valid
/// before still valid. `false` (nothing written) when the sidecar's length is wrong: that needs the
/// whole sidecar written again.
fn mend_structure(sc: &Sidecar, path: &Path) -> Result<bool, ErasureError> {
    let health = &sc.health;
    if health.actual_len != health.expected_len {
        return Ok(false);
    }
    let layout = sc.header.layout;
    let file = match std::fs::OpenOptions::new().write(true).open(path) {
        Ok(f) => f,
        // A sidecar this process may not write in place is replaced whole (a rename in its folder).
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => return Ok(false),
        Err(e) => return Err(IoError::from_os(path, "open", e).into()),
    };
    let header = sc.header.encode();
    if !health.header_a {
        write_all_at(&file, path, &header, 0)?;
    }
    if !health.header_b {
        write_all_at(&file, path, &header, layout.header_b_offset())?;
    }
    let table = sc.table.encode();
    let copies = [
        (&health.table_a_bad_blocks, layout.table_a_offset()),
        (&health.table_b_bad_blocks, layout.table_b_offset()),
    ];
    for (bad, base) in copies {
        for &i in bad {
            let start = usize_of(i.saturating_mul(BLOCK_LEN));
            let block = table
                .get(start..start.saturating_add(usize_of(BLOCK_LEN)).min(table.len()))
                .unwrap_or_default();
            write_all_at(&file, path, block, base + i * BLOCK_LEN)?;
        }
    }
    file.sync_all()
        .map_err(|e| IoError::from_os(path, "fsync", e))?;
    Ok(true)
}

/// Verify `path` against its sidecar, read-only.
pub fn verify(
    path: &Path,
    sidecar: Option<&Path>,
    control: &Control,
) -> Result<VerifyReport, ErasureError> {
    let sidecar_path = sidecar.map_or_else(|| sidecar_path_for(path), Path::to_path_buf);
    let sc = Sidecar::open(&sidecar_path)?;
    let report = verify_with(path, &sidecar_path, &sc, control)?;
    count_differing(path, &sidecar_path, &sc, report, control)
}

/// A report that looks stale by its damaged chunks (the file modified, and those chunks cover most of
/// it) while parity can rebuild them: rebuild them in memory, count the bytes that really differ from
/// the protected ones and classify again. With few chunks per stripe (`k ≤ 2m`, a small file) one
/// changed byte damages a chunk that is most of the file; only a comparison tells a stray write from
/// an edit. Other reports, and a rebuild that fails (its chunks do not match their digests), are
/// returned as they are: their `differing_bytes` counts whole damaged chunks (`differing_exact` false).
fn count_differing(
    path: &Path,
    sidecar_path: &Path,
    sc: &Sidecar,
    mut report: VerifyReport,
    control: &Control,
) -> Result<VerifyReport, ErasureError> {
    if report.status != Status::Stale
        || report.damage_status != Status::Repairable
        || report.damaged_chunks.is_empty()
    {
        return Ok(report);
    }
    let layout = report.layout;
    let rebuilt = match rebuild_in_memory(path, sidecar_path, sc, &report, control) {
        Ok(r) => r,
        Err(ErasureError::RepairVerification { .. } | ErasureError::Unrepairable { .. }) => {
            return Ok(report)
        }
        Err(e) => return Err(e),
    };
    let (file, actual_len) = open_regular(path)?;
    if actual_len != report.actual_len {
        return Err(ErasureError::FileChanged {
            path: path.to_path_buf(),
        });
    }
    let mut differing = actual_len.saturating_sub(layout.file_len);
    let mut now = Vec::new();
    for rc in &rebuilt {
        control.checkpoint()?;
        let (off, len) = layout.chunk_range(rc.index);
        let readable = len.min(actual_len.saturating_sub(off));
        now.resize(usize_of(readable), 0);
        read_exact_at(&file, path, &mut now, off)?;
        let changed = rc.bytes.iter().zip(&now).filter(|(a, b)| a != b).count() as u64;
        differing = differing
            .saturating_add(changed)
            .saturating_add(len - readable);
    }
    let whole = layout
        .file_len
        .saturating_add(actual_len.saturating_sub(layout.file_len));
    report.differing_bytes = differing;
    report.differing_exact = true;
    if u128::from(differing) * 2 <= u128::from(whole) {
        report.status = report.damage_status;
    }
    Ok(report)
}

/// Sidecar format v2: the damaged data chunks of `report` rebuilt in memory, each checked against its
/// digest, in index order; nothing is written. Phase 1: groups with one damaged chunk and intact local
/// parity, from that group alone. Phase 2: the rest (and any local rebuild that did not match its
/// digest) through the global code, fed the chunks phase 1 rebuilt. Both phases count the bytes they
/// rebuild: they are added to the total first; a chunk whose local rebuild did not match its digest is
/// rebuilt again by the global code, and counted again.
fn rebuild_wide(
    path: &Path,
    sidecar_path: &Path,
    sc: &Sidecar,
    report: &VerifyReport,
    control: &Control,
) -> Result<Vec<super::wide::RebuiltChunk>, ErasureError> {
    let layout = report.layout;
    let (local, global) =
        super::wide::local_plan(&layout, &report.damaged_chunks, &report.damaged_parity);
    let bytes_of =
        |chunks: &[u64]| -> u64 { chunks.iter().map(|&i| layout.chunk_range(i).1).sum() };
    control.set_total(control.done() + bytes_of(&local) + bytes_of(&global));
    let (mut rebuilt, failed) =
        super::wide::rebuild_local(path, sidecar_path, sc, &layout, &local, control)?;
    control.set_total(control.total() + bytes_of(&failed));
    let mut global = global;
    global.extend(failed);
    global.sort_unstable();
    rebuilt.sort_unstable_by_key(|rc| rc.index);
    let more = super::wide::rebuild(path, sidecar_path, sc, report, &global, &rebuilt, control)?;
    rebuilt.extend(more);
    rebuilt.sort_unstable_by_key(|rc| rc.index);
    Ok(rebuilt)
}

/// The damaged data chunks of `report` rebuilt from parity in memory (each checked against its digest),
/// as a repair rebuilds them; nothing is written.
fn rebuild_in_memory(
    path: &Path,
    sidecar_path: &Path,
    sc: &Sidecar,
    report: &VerifyReport,
    control: &Control,
) -> Result<Vec<super::wide::RebuiltChunk>, ErasureError> {
    let layout = report.layout;
    if layout.params.is_wide() {
        return rebuild_wide(path, sidecar_path, sc, report, control);
    }
    let (src, actual_len) = open_regular(path)?;
    let out = std::sync::Mutex::new(Vec::new());
    // A poisoned lock means a worker panicked while it pushed: the chunks collected may be short of
    // one, and a short list would be compared as if complete (a wrong `differing_bytes`). Refused.
    let poisoned = || ErasureError::WorkerPanicked {
        during: "it collected the chunks rebuilt in memory",
    };
    rebuild_stripes(
        path,
        sidecar_path,
        sc,
        report,
        &src,
        actual_len.min(layout.file_len),
        &|index, bytes| {
            #[cfg(test)]
            tests::panic_holding_if_armed(path, &out);
            out.lock()
                .map_err(|_| poisoned())?
                .push(super::wide::RebuiltChunk {
                    index,
                    bytes: bytes.to_vec(),
                });
            Ok(())
        },
        control,
    )?;
    out.into_inner().map_err(|_| poisoned())
}

#[allow(clippy::too_many_lines)]
fn verify_with(
    path: &Path,
    sidecar_path: &Path,
    sc: &Sidecar,
    control: &Control,
) -> Result<VerifyReport, ErasureError> {
    let layout = sc.header.layout;
    let (file, actual_len) = open_regular(path)?;
    let actual_mtime = mtime_ns(
        &file
            .metadata()
            .map_err(|e| IoError::from_os(path, "stat", e))?,
    );
    crate::io::advise_sequential(&file);
    control.set_total(control.done() + layout.file_len + layout.parity_len);
    let cs = layout.params.chunk_size().as_usize();
    let entries = sc.table.entries();
    let chunks = layout.chunks;

    let damaged_chunks = checked_through_map(
        map_for_hashing(&file, path, actual_len.min(layout.file_len)),
        chunks,
        control,
        |idx| layout.chunk_range(idx).1,
        |idx, map, buf| {
            check_mapped_chunk(&file, path, &layout, entries, idx, actual_len, map, buf)
        },
    )?;

    let sidecar_len = sc.health.actual_len;
    let damaged_parity = checked_through_map(
        map_for_hashing(&sc.file, sidecar_path, sidecar_len),
        layout.parity_slots(),
        control,
        |_| cs as u64,
        |slot, map, buf| check_parity(sc, sidecar_path, sidecar_len, slot, map, buf),
    )?;

    Ok(classify(
        sc,
        actual_len,
        actual_mtime,
        damaged_chunks,
        damaged_parity,
    ))
}

/// The report for the damage found: per-stripe budget, overall status, the stale heuristic.
#[allow(clippy::too_many_lines)]
fn classify(
    sc: &Sidecar,
    actual_len: u64,
    actual_mtime: i64,
    chunks: Found,
    parity: Found,
) -> VerifyReport {
    let layout = sc.header.layout;
    let Found {
        damaged: damaged_chunks,
        unreadable: unreadable_chunks,
    } = chunks;
    let Found {
        damaged: damaged_parity,
        unreadable: unreadable_parity,
    } = parity;
    let unrepairable_stripes: Vec<u64> = if layout.params.is_wide() {
        // One stripe: the chunks local parity cannot repair must fit the intact global parity.
        if super::wide::unrepairable_reason(&layout, &damaged_chunks, &damaged_parity).is_some() {
            vec![0]
        } else {
            Vec::new()
        }
    } else {
        let mut per_stripe = vec![0usize; usize_of(layout.stripes)];
        for &idx in &damaged_chunks {
            if let Some(c) = per_stripe.get_mut(usize_of(layout.stripe_of(idx).0)) {
                *c += 1;
            }
        }
        for &slot in &damaged_parity {
            if let Some(c) = per_stripe.get_mut(usize_of(slot % layout.stripes.max(1))) {
                *c += 1;
            }
        }
        per_stripe
            .iter()
            .enumerate()
            .filter(|(_, &c)| c > layout.params.m())
            .map(|(s, _)| s as u64)
            .collect()
    };
    let unrepairable_chunks: Vec<u64> = damaged_chunks
        .iter()
        .copied()
        .filter(|&i| {
            unrepairable_stripes
                .binary_search(&layout.stripe_of(i).0)
                .is_ok()
        })
        .collect();
    let damage_status = if !unrepairable_stripes.is_empty() {
        Status::Unrepairable
    } else if damaged_chunks.is_empty()
        && damaged_parity.is_empty()
        && actual_len == layout.file_len
        && sc.health.structure_intact()
    {
        Status::Intact
    } else {
        Status::Repairable
    };
    // Stale or damaged? Media damage leaves the modification time alone; an edit changes it, and a
    // legitimate edit (a re-saved checkpoint, a rewritten file) changes most of the bytes, where damage
    // within any parity budget cannot. So: hints differ and most of the file differs → stale.
    // Modification times are compared to the millisecond, so that a copy made by a tool that keeps
    // them at micro- or millisecond precision (Node's `fs.utimes`, many archivers) still matches.
    let modified_since_protect = sc
        .header
        .file_mtime_ns
        .map(|t| t.abs_diff(actual_mtime) >= MTIME_TOLERANCE_NS || actual_len != layout.file_len);
    let appended = actual_len.saturating_sub(layout.file_len);
    let differing_bytes = damaged_chunks
        .iter()
        .map(|&i| layout.chunk_range(i).1)
        .sum::<u64>()
        .saturating_add(appended);
    let whole = layout.file_len.saturating_add(appended);
    let status = if modified_since_protect == Some(true)
        && damage_status != Status::Intact
        && u128::from(differing_bytes) * 2 > u128::from(whole)
    {
        Status::Stale
    } else {
        damage_status
    };
    VerifyReport {
        status,
        layout,
        actual_len,
        damaged_chunks,
        damaged_parity,
        unreadable_chunks,
        unreadable_parity,
        unrepairable_stripes,
        unrepairable_chunks,
        sidecar: sc.health.clone(),
        modified_since_protect,
        differing_bytes,
        differing_exact: false,
        damage_status,
    }
}

/// How [`repair_with`] works.
#[derive(Debug, Clone, Copy, Default)]
pub struct RepairOptions<'a> {
    /// Repair a pair whose sidecar looks stale ([`Status::Stale`]), rolling the file back.
    pub force: bool,
    /// Where the rebuilt chunks are written (default: in place, a copy when the file is not writable).
    pub mode: RepairMode,
    /// The damaged data chunks, from a previous verify report: only their stripes are read and checked
    /// (with the file's length and the sidecar's own structure), instead of the whole file. With local
    /// parity (format v2), only their local groups, when each holds one damaged chunk and intact local
    /// parity.
    pub chunks: Option<&'a [u64]>,
    /// Byte ranges `(offset, length)` of the file known to be damaged (found by another check, such as
    /// a checkpoint's chunk tree): their chunks are added to `chunks`, with the same effect.
    pub ranges: Option<&'a [(u64, u64)]>,
}

/// What a repair's `before` and `after` reports cover.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checked {
    /// Every chunk of the file and every parity slot.
    Whole,
    /// Only the stripes of the listed chunks (before), or only the chunks written (after), with the
    /// file's length and the sidecar's structure.
    Changed,
}

/// Repair `path` (and its sidecar) from parity with the default options: in place, falling back to a
/// copy for a file that is not writable (see [`repair_with`]).
pub fn repair(
    path: &Path,
    sidecar: Option<&Path>,
    force: bool,
    control: &Control,
) -> Result<RepairReport, ErasureError> {
    repair_with(
        path,
        sidecar,
        &RepairOptions {
            force,
            ..RepairOptions::default()
        },
        control,
    )
}

/// Repair `path` (and its sidecar) from parity. An intact pair is left untouched; damage beyond the
/// budget is [`ErasureError::Unrepairable`] and changes nothing. A pair whose sidecar looks stale
/// ([`Status::Stale`]: the file was edited after `protect`) is refused with
/// [`ErasureError::StaleSidecar`] and left untouched unless `force` is set, in which case the file is
/// rolled back to the protected bytes when the damage is within budget.
///
/// Every rebuilt chunk is checked against its digest before it is written. In place (the default),
/// only damaged chunks are written and only they are read back and checked afterwards (with the
/// length, and the whole file when the sidecar is rebuilt); a copy is re-verified whole. A damaged
/// sidecar is rewritten atomically.
#[allow(clippy::too_many_lines)]
pub fn repair_with(
    path: &Path,
    sidecar: Option<&Path>,
    options: &RepairOptions<'_>,
    control: &Control,
) -> Result<RepairReport, ErasureError> {
    let sidecar_path = sidecar.map_or_else(|| sidecar_path_for(path), Path::to_path_buf);
    let sc = Sidecar::open(&sidecar_path)?;
    let listed: Option<Vec<u64>> = match (options.chunks, options.ranges) {
        (None, None) => None,
        (chunks, ranges) => {
            let mut all = ranges.map_or_else(Vec::new, |r| sc.header.layout.chunks_touching(r));
            all.extend_from_slice(chunks.unwrap_or_default());
            all.sort_unstable();
            all.dedup();
            Some(all)
        }
    };
    let before = match listed.as_deref() {
        None => verify_with(path, &sidecar_path, &sc, control)?,
        Some(list) => verify_listed(path, &sidecar_path, &sc, list, control)?,
    };
    let before = count_differing(path, &sidecar_path, &sc, before, control)?;
    let checked_before = if listed.is_some() {
        Checked::Changed
    } else {
        Checked::Whole
    };
    let status = match before.status {
        Status::Stale if !options.force => {
            return Err(ErasureError::StaleSidecar {
                path: path.to_path_buf(),
                sidecar: sidecar_path,
                differing_bytes: before.differing_bytes,
                exact: before.differing_exact,
                file_len: before.actual_len,
            })
        }
        Status::Stale => before.damage_status,
        s => s,
    };
    match status {
        Status::Intact => {
            return Ok(RepairReport {
                after: before.clone(),
                before,
                repaired_chunks: Vec::new(),
                file_rewritten: false,
                sidecar_rewritten: false,
                write_mode: None,
                checked_before,
                checked_after: checked_before,
                sidecar_error: None,
            })
        }
        Status::Unrepairable => {
            let detail = if layout_is_wide(&before) {
                super::wide::unrepairable_reason(
                    &before.layout,
                    &before.damaged_chunks,
                    &before.damaged_parity,
                )
                .unwrap_or_default()
            } else {
                format!(
                    "damage exceeds the parity budget in {} stripe(s)",
                    before.unrepairable_stripes.len()
                )
            };
            return Err(ErasureError::Unrepairable {
                path: path.to_path_buf(),
                stripes: before.unrepairable_stripes.clone(),
                chunks: before.unrepairable_chunks.clone(),
                detail,
            });
        }
        Status::Repairable | Status::Stale => {}
    }
    let layout = before.layout;
    let file_rewritten = !before.damaged_chunks.is_empty() || before.actual_len != layout.file_len;
    let write_mode = if !file_rewritten {
        None
    } else if layout.params.is_wide() {
        // Nothing is written until every chunk is rebuilt and checked against its digest.
        let rebuilt = rebuild_wide(path, &sidecar_path, &sc, &before, control)?;
        Some(write_rebuilt(
            path,
            &sc,
            &before,
            &rebuilt,
            options.mode,
            control,
        )?)
    } else {
        Some(rebuild_file(
            path,
            &sidecar_path,
            &sc,
            &before,
            options.mode,
            control,
        )?)
    };
    let sidecar_damaged = !before.damaged_parity.is_empty() || !before.sidecar.structure_intact();
    // The file is repaired by now. A sidecar that cannot be written (a read-only folder, a full disk)
    // does not undo that: the error is reported with the result, and the re-check below still runs.
    // Other failures (the file changed, a rebuilt sidecar that does not describe it) fail the repair.
    let mut mended = false;
    let mut sidecar_error = None;
    if sidecar_damaged {
        match rewrite_sidecar(path, &sidecar_path, &sc, &before, options.mode, control) {
            Ok(m) => {
                // The sidecar is replaced (or mended): like a rewritten file, a cancellation no
                // longer turns the outcome into "cancelled" (the rebuild honoured it up to its rename).
                control.set_committed();
                mended = m;
            }
            Err(ErasureError::Io(e))
                if file_rewritten && !matches!(e, IoError::Truncated { .. }) =>
            {
                tracing::warn!(path = %path.display(), sidecar = %sidecar_path.display(), error = %e,
                    "repaired the file, but its sidecar could not be rewritten");
                sidecar_error = Some(std::sync::Arc::new(e));
            }
            Err(e) => return Err(e),
        }
    }
    let sidecar_rewritten = sidecar_damaged && sidecar_error.is_none();
    let old_root = sc.header.root;
    drop(sc);
    let sc = Sidecar::open(&sidecar_path)?;
    // A copy is a new file: every byte of it is checked again. In place, the bytes that were not
    // written are the ones `before` found intact; only the written chunks (and the length) are checked
    // again. A rebuilt sidecar already hashed the whole file and matched the old root; a mended one is
    // opened again below, and its header and every table block must pass their checks. A sidecar that
    // could not be rewritten keeps the damaged parity `before` found.
    let (after, checked_after) = if write_mode == Some(WriteMode::Copy) {
        (
            verify_with(path, &sidecar_path, &sc, control)?,
            Checked::Whole,
        )
    } else {
        let parity_left = if sidecar_error.is_some() {
            Found {
                damaged: before.damaged_parity.clone(),
                unreadable: before.unreadable_parity.clone(),
            }
        } else {
            Found::default()
        };
        let after = recheck_written(path, &sc, &before, parity_left, control)?;
        let scope = if sidecar_rewritten && !mended {
            Checked::Whole
        } else {
            Checked::Changed
        };
        (after, scope)
    };
    let repaired = if sidecar_error.is_some() {
        after.damaged_chunks.is_empty() && after.actual_len == layout.file_len
    } else {
        after.damage_status == Status::Intact
    };
    if !repaired || sc.header.root != old_root {
        return Err(ErasureError::RepairVerification {
            path: path.to_path_buf(),
            reason: format!("re-verification found the pair {}", after.status.name()),
        });
    }
    Ok(RepairReport {
        repaired_chunks: before.damaged_chunks.clone(),
        before,
        file_rewritten,
        sidecar_rewritten,
        write_mode,
        checked_before,
        checked_after,
        sidecar_error,
        after,
    })
}

/// Rewrite a damaged sidecar after the file was repaired: only the header or table copies damaged (the
/// parity intact) are written again from the valid copies, instead of encoding the whole file's parity
/// again (`copy` mode writes new files, so it replaces the sidecar too); otherwise the sidecar is
/// rebuilt from the file, atomically, and must describe the original file. Returns whether it was
/// mended in place.
fn rewrite_sidecar(
    path: &Path,
    sidecar_path: &Path,
    sc: &Sidecar,
    before: &VerifyReport,
    mode: RepairMode,
    control: &Control,
) -> Result<bool, ErasureError> {
    if before.damaged_parity.is_empty()
        && mode != RepairMode::Copy
        && mend_structure(sc, sidecar_path)?
    {
        return Ok(true);
    }
    let report = protect_with(
        path,
        Some(sidecar_path),
        ProtectOptions::Custom(before.layout.params),
        MtimeHint::Keep(sc.header.file_mtime_ns),
        false,
        control,
    )?;
    if report.root != sc.header.root || report.layout != before.layout {
        return Err(ErasureError::RepairVerification {
            path: path.to_path_buf(),
            reason: "rebuilt sidecar does not describe the original file".into(),
        });
    }
    Ok(false)
}

fn layout_is_wide(r: &VerifyReport) -> bool {
    r.layout.params.is_wide()
}

/// The protected file opened for a check of `listed` chunks: the file, its length and modification
/// time, and the units (stripes or local groups: `unit`) of the listed chunks and of the chunks past the
/// file's end (missing whatever the list says), ascending without repeats. A listed chunk out of range
/// is [`ErasureError::ChunkOutOfRange`].
fn open_listed(
    path: &Path,
    layout: &Layout,
    listed: &[u64],
    unit: impl Fn(u64) -> Option<u64>,
) -> Result<(File, u64, i64, Vec<u64>), ErasureError> {
    let (file, actual_len) = open_regular(path)?;
    let actual_mtime = mtime_ns(
        &file
            .metadata()
            .map_err(|e| IoError::from_os(path, "stat", e))?,
    );
    if let Some(&bad) = listed.iter().find(|&&c| c >= layout.chunks) {
        return Err(ErasureError::ChunkOutOfRange {
            chunk: bad,
            chunks: layout.chunks,
        });
    }
    let mut units: Vec<u64> = listed.iter().filter_map(|&c| unit(c)).collect();
    if actual_len < layout.file_len {
        let first = actual_len / layout.params.chunk_size().get();
        units.extend((first..layout.chunks).filter_map(&unit));
    }
    units.sort_unstable();
    units.dedup();
    Ok((file, actual_len, actual_mtime, units))
}

/// Check only the stripes of `listed` chunks (every data chunk and parity slot in them), plus the
/// chunks the file is too short to hold: the `before` report of a repair given a verify report's list.
/// With local parity (format v2), first only the local groups of those chunks (their data chunks and
/// local parity slot): when each has at most one damaged chunk and its local parity intact, that is
/// the report (the repair reads those groups only); otherwise the whole stripe is checked.
fn verify_listed(
    path: &Path,
    sidecar_path: &Path,
    sc: &Sidecar,
    listed: &[u64],
    control: &Control,
) -> Result<VerifyReport, ErasureError> {
    let layout = sc.header.layout;
    if layout.local_groups > 0 {
        if let Some(r) = verify_groups(path, sidecar_path, sc, listed, control)? {
            return Ok(r);
        }
    }
    let (k, m) = (layout.params.k(), layout.params.m());
    let cs = layout.params.chunk_size().as_usize();
    let (file, actual_len, actual_mtime, stripes) =
        open_listed(path, &layout, listed, |c| Some(layout.stripe_of(c).0))?;
    let entries = sc.table.entries();
    let sidecar_len = sc.health.actual_len;
    let per_stripe = (k as u64 + m as u64) * cs as u64;
    control.set_total(control.done() + per_stripe * stripes.len() as u64);
    let found: Result<Vec<(Checks, Checks)>, ErasureError> = stripes
        .into_par_iter()
        .map_init(
            || vec![0u8; cs],
            |buf, s| {
                control.checkpoint()?;
                let mut data = Vec::new();
                for pos in 0..k {
                    let Some(idx) = layout.chunk_at(s, pos) else {
                        continue;
                    };
                    let check = check_chunk(&file, path, &layout, entries, idx, actual_len, buf)?;
                    data.push((check != Check::Intact).then_some((idx, check)));
                }
                // Format v2 (one stripe): its local parity slots too.
                let slots = (0..m)
                    .map(|j| layout.parity_slot(s, j))
                    .chain((0..layout.local_groups).map(|q| layout.local_slot(q)));
                let mut parity = Vec::new();
                for slot in slots {
                    let check = check_parity(sc, sidecar_path, sidecar_len, slot, None, buf)?;
                    parity.push((check != Check::Intact).then_some((slot, check)));
                }
                control.add(per_stripe);
                Ok((data, parity))
            },
        )
        .collect();
    let (data, parity): (Vec<Checks>, Vec<Checks>) = found?.into_iter().unzip();
    Ok(classify(
        sc,
        actual_len,
        actual_mtime,
        Found::collect(data.into_iter().flatten()).sorted(),
        Found::collect(parity.into_iter().flatten()).sorted(),
    ))
}

/// The groups of `listed` chunks (and of chunks past the file's end), checked whole: `Some(report)` if
/// each has at most one damaged data chunk and (then) an intact local parity slot, `None` otherwise.
fn verify_groups(
    path: &Path,
    sidecar_path: &Path,
    sc: &Sidecar,
    listed: &[u64],
    control: &Control,
) -> Result<Option<VerifyReport>, ErasureError> {
    let layout = sc.header.layout;
    let cs = layout.params.chunk_size().as_usize();
    let (file, actual_len, actual_mtime, groups) =
        open_listed(path, &layout, listed, |c| layout.group_of(c))?;
    let entries = sc.table.entries();
    let sidecar_len = sc.health.actual_len;
    let bytes: u64 = groups
        .iter()
        .map(|&q| {
            layout
                .group_chunks(q)
                .map(|c| layout.chunk_range(c).1)
                .sum::<u64>()
                + cs as u64
        })
        .sum();
    control.set_total(control.done() + bytes);
    let chunk_jobs: Vec<u64> = groups
        .iter()
        .flat_map(|&q| layout.group_chunks(q))
        .collect();
    let damaged_chunks = damaged_among(
        chunk_jobs, &file, path, &layout, entries, actual_len, control,
    )?
    .sorted();
    let mut parity = Vec::new();
    let mut buf = Vec::with_capacity(cs);
    for &q in &groups {
        control.checkpoint()?;
        let slot = layout.local_slot(q);
        let check = check_parity(sc, sidecar_path, sidecar_len, slot, None, &mut buf)?;
        control.add(cs as u64);
        parity.push((check != Check::Intact).then_some((slot, check)));
    }
    let damaged_parity = Found::collect(parity).sorted();
    let (_, global) =
        super::wide::local_plan(&layout, &damaged_chunks.damaged, &damaged_parity.damaged);
    if !global.is_empty() {
        return Ok(None);
    }
    Ok(Some(classify(
        sc,
        actual_len,
        actual_mtime,
        damaged_chunks,
        damaged_parity,
    )))
}

/// The `after` report of an in-place repair: the file's length and modification time, and the digest
/// of every chunk that was written (the others are the ones `before` found intact); `parity`: the
/// parity slots still damaged (those `before` found, when the sidecar could not be rewritten).
fn recheck_written(
    path: &Path,
    sc: &Sidecar,
    before: &VerifyReport,
    parity: Found,
    control: &Control,
) -> Result<VerifyReport, ErasureError> {
    let layout = sc.header.layout;
    let (file, actual_len) = open_regular(path)?;
    let actual_mtime = mtime_ns(
        &file
            .metadata()
            .map_err(|e| IoError::from_os(path, "stat", e))?,
    );
    let entries = sc.table.entries();
    control.set_total(
        control.done()
            + before
                .damaged_chunks
                .iter()
                .map(|&i| layout.chunk_range(i).1)
                .sum::<u64>(),
    );
    let damaged_chunks = damaged_among(
        before.damaged_chunks.par_iter().copied(),
        &file,
        path,
        &layout,
        entries,
        actual_len,
        control,
    )?;
    Ok(classify(
        sc,
        actual_len,
        actual_mtime,
        damaged_chunks,
        parity,
    ))
}

/// Open `path` again (it must still have the length the report saw) and the [`RepairTarget`] `mode`
/// selects for it; returns the read handle, its length and the target.
fn repair_target(
    path: &Path,
    sc: &Sidecar,
    report: &VerifyReport,
    mode: RepairMode,
    control: &Control,
) -> Result<(std::fs::File, u64, Box<dyn super::place::RepairTarget>), ErasureError> {
    let layout = report.layout;
    let (src, actual_len) = open_regular(path)?;
    if actual_len != report.actual_len {
        return Err(ErasureError::FileChanged {
            path: path.to_path_buf(),
        });
    }
    let whole = layout
        .file_len
        .saturating_add(actual_len.saturating_sub(layout.file_len));
    let damaged: Vec<(u64, u64)> = report
        .damaged_chunks
        .iter()
        .map(|&i| layout.chunk_range(i))
        .collect();
    let target = open_target(
        &TargetSpec {
            path,
            src: &src,
            actual_len,
            file_len: layout.file_len,
            mtime_ns: sc.header.file_mtime_ns,
            mostly_damaged: u128::from(report.differing_bytes) * 2 > u128::from(whole),
            damaged: &damaged,
        },
        mode,
        control,
    )?;
    Ok((src, actual_len, target))
}

/// Write chunks already rebuilt and checked against their digests (format v2) through the same
/// in-place or copy target as [`rebuild_file`], with the same crash argument: only chunks found damaged
/// are overwritten, and the length is restored first.
fn write_rebuilt(
    path: &Path,
    sc: &Sidecar,
    report: &VerifyReport,
    rebuilt: &[super::wide::RebuiltChunk],
    mode: RepairMode,
    control: &Control,
) -> Result<WriteMode, ErasureError> {
    let layout = report.layout;
    let (_src, _, target) = repair_target(path, sc, report, mode, control)?;
    let written = target.mode();
    for rc in rebuilt {
        control.checkpoint()?;
        let (off, _) = layout.chunk_range(rc.index);
        target.write_chunk(off, &rc.bytes)?;
    }
    control.checkpoint()?;
    target.finish(control)?;
    Ok(written)
}

/// Rebuild the damaged chunks stripe by stripe (each checked against its digest) and write them
/// through the [`RepairTarget`] `mode` selects: into the file itself, or into a copy renamed over it.
#[allow(clippy::too_many_lines)]
fn rebuild_file(
    path: &Path,
    sidecar_path: &Path,
    sc: &Sidecar,
    report: &VerifyReport,
    mode: RepairMode,
    control: &Control,
) -> Result<WriteMode, ErasureError> {
    let layout = report.layout;
    let (src, actual_len, target) = repair_target(path, sc, report, mode, control)?;
    let written = target.mode();
    // In place the file now has its protected length; survivors are read below it either way.
    let read_len = actual_len.min(layout.file_len);
    let target_ref = &*target;
    rebuild_stripes(
        path,
        sidecar_path,
        sc,
        report,
        &src,
        read_len,
        &|idx, bytes| target_ref.write_chunk(layout.chunk_range(idx).0, bytes),
        control,
    )?;
    control.checkpoint()?;
    target.finish(control)?;
    Ok(written)
}

/// Where [`rebuild_stripes`] hands each rebuilt chunk: its index and its bytes.
type ChunkSink<'a> = dyn Fn(u64, &[u8]) -> Result<(), ErasureError> + Sync + 'a;

/// Rebuild the damaged data chunks of `report` stripe by stripe (format v1), reading the survivors
/// from `src` below `read_len`; each rebuilt chunk is checked against its digest and handed to `sink`
/// with its index (its bytes: the chunk's real length).
#[allow(clippy::too_many_arguments)]
fn rebuild_stripes(
    path: &Path,
    sidecar_path: &Path,
    sc: &Sidecar,
    report: &VerifyReport,
    src: &File,
    read_len: u64,
    sink: &ChunkSink<'_>,
    control: &Control,
) -> Result<(), ErasureError> {
    let layout = report.layout;
    let params = layout.params;
    let digest = params.digest();
    let (k, m) = (params.k(), params.m());
    let cs = params.chunk_size().as_usize();
    let codec = ErasureCodec::new(k, m)?;
    let rebuilt: u64 = report
        .damaged_chunks
        .iter()
        .map(|&i| layout.chunk_range(i).1)
        .sum();
    control.set_total(control.done() + rebuilt);
    let mut stripes: Vec<u64> = report
        .damaged_chunks
        .iter()
        .map(|&i| layout.stripe_of(i).0)
        .collect();
    stripes.sort_unstable();
    stripes.dedup();
    let entries = sc.table.entries();
    stripes
        .into_par_iter()
        .map_init(
            || aligned_bufs(k + m, cs),
            |shards, s| -> Result<(), ErasureError> {
                control.checkpoint()?;
                let mut present = vec![true; k + m];
                let mut lost_data = Vec::new();
                for pos in 0..k {
                    let Some(buf) = shards.get_mut(pos).map(AlignedBuf::as_mut_slice) else {
                        continue;
                    };
                    match layout.chunk_at(s, pos) {
                        Some(idx) if report.damaged_chunks.binary_search(&idx).is_ok() => {
                            if let Some(p) = present.get_mut(pos) {
                                *p = false;
                            }
                            lost_data.push((pos, idx));
                        }
                        Some(idx) => {
                            if !read_chunk(src, path, &layout, idx, read_len, buf)? {
                                return Err(ErasureError::FileChanged {
                                    path: path.to_path_buf(),
                                });
                            }
                        }
                        None => buf.fill(0),
                    }
                }
                for j in 0..m {
                    let slot = layout.parity_slot(s, j);
                    let Some(buf) = shards.get_mut(k + j).map(AlignedBuf::as_mut_slice) else {
                        continue;
                    };
                    if report.damaged_parity.binary_search(&slot).is_ok() {
                        if let Some(p) = present.get_mut(k + j) {
                            *p = false;
                        }
                    } else {
                        read_exact_at(&sc.file, sidecar_path, buf, layout.parity_offset(slot))?;
                    }
                }
                let mut refs: Vec<&mut [u8]> =
                    shards.iter_mut().map(AlignedBuf::as_mut_slice).collect();
                codec.reconstruct(&mut refs, &present)?;
                for (pos, idx) in lost_data {
                    let (_, len) = layout.chunk_range(idx);
                    let bytes = shards
                        .get(pos)
                        .and_then(|b| b.as_slice().get(..usize_of(len)))
                        .unwrap_or_default();
                    if entries.get(usize_of(idx)) != Some(&digest.hash(bytes)) {
                        return Err(ErasureError::RepairVerification {
                            path: path.to_path_buf(),
                            reason: format!("rebuilt chunk {idx} does not match its digest"),
                        });
                    }
                    sink(idx, bytes)?;
                    control.add(len);
                }
                Ok(())
            },
        )
        .collect::<Result<Vec<()>, ErasureError>>()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The file whose in-memory rebuild gets a panic injected while its result lock is held.
    static PANIC_HOLDING_FOR: std::sync::Mutex<Option<PathBuf>> = std::sync::Mutex::new(None);

    /// Test-only panic injection: when armed for `path`, panic while holding `out`'s lock (caught here,
    /// so the lock is left poisoned and the rebuild goes on, as it would after a worker's panic that
    /// did not reach the caller).
    pub(super) fn panic_holding_if_armed<T>(path: &Path, out: &std::sync::Mutex<T>) {
        let armed = PANIC_HOLDING_FOR
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_deref()
            == Some(path);
        if armed {
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let _held = out.lock();
                panic!("injected panic while holding the rebuilt chunks");
            }));
        }
    }

    /// A worker that panics while it holds the lock on the rebuilt chunks (poisoning it) makes the
    /// small-file stale count fail with a typed error; before, the poisoned lock dropped every chunk
    /// and the count compared none of them: a one-byte change reported 0 differing bytes.
    #[test]
    fn a_poisoned_rebuild_lock_is_an_error_not_a_shorter_result() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("small.bin");
        let data: Vec<u8> = (0..4072u32).map(|i| (i % 251).to_le_bytes()[0]).collect();
        std::fs::write(&path, &data).unwrap();
        let control = Control::new();
        protect(
            &path,
            None,
            ProtectOptions::LevelFormat(Level::Medium, ChunkDigest::default(), Format::V1),
            &control,
        )
        .unwrap();
        let t0 = std::fs::metadata(&path).unwrap().modified().unwrap();
        let mut changed = data.clone();
        changed[9] ^= 0x5a;
        std::fs::write(&path, &changed).unwrap();
        let f = std::fs::File::options().write(true).open(&path).unwrap();
        f.set_modified(t0 + std::time::Duration::from_secs(60))
            .unwrap();
        drop(f);
        // Unarmed: the one changed byte is counted.
        let v = verify(&path, None, &Control::new()).unwrap();
        assert_eq!((v.differing_bytes, v.differing_exact), (1, true));
        *PANIC_HOLDING_FOR.lock().unwrap() = Some(path.clone());
        let got = verify(&path, None, &Control::new());
        *PANIC_HOLDING_FOR.lock().unwrap() = None;
        match got {
            Err(ErasureError::WorkerPanicked { .. }) => {}
            other => panic!("expected WorkerPanicked, got {other:?}"),
        }
    }

    /// A file whose last chunk is zeros loses it after verify mapped the file: the mapping then reads
    /// zeros there (the SIGBUS handler's zero page), which match that chunk's digest, but the chunk is
    /// gone and must be reported, as reads report it.
    #[test]
    fn a_chunk_truncated_while_mapped_is_reported_as_reads_report_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.bin");
        let mut bytes: Vec<u8> = (0..3 * 4096u32)
            .map(|i| (i % 251 + 1).to_le_bytes()[0])
            .collect();
        bytes.resize(4 * 4096, 0);
        std::fs::write(&path, &bytes).unwrap();
        let control = Control::new();
        let params = Params::new(4, 2, 4096).unwrap();
        protect(&path, None, ProtectOptions::Custom(params), &control).unwrap();
        let sc = Sidecar::open(&sidecar_path_for(&path)).unwrap();
        let layout = sc.header.layout;
        let (file, len) = open_regular(&path).unwrap();
        let map = map_for_hashing(&file, &path, len);
        assert!(map.is_some());
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(3 * 4096)
            .unwrap();
        let entries = sc.table.entries();
        let control = Control::new();
        control.set_total(layout.file_len);
        let found = checked_through_map(
            map,
            4,
            &control,
            |i| layout.chunk_range(i).1,
            |i, m, buf| check_mapped_chunk(&file, &path, &layout, entries, i, len, m, buf),
        )
        .unwrap();
        assert_eq!(found.damaged, vec![3]);
        assert!(found.unreadable.is_empty());
        // Both passes counted, neither beyond the total.
        assert_eq!(control.done(), 2 * layout.file_len);
        assert!(control.done() <= control.total());
        // And verify itself, opened after the truncation, says the same.
        let r = verify(&path, None, &control).unwrap();
        assert_eq!(r.damaged_chunks, vec![3]);
        assert_eq!(r.actual_len, 3 * 4096);
    }

    fn flip_bytes(path: &Path, offsets: impl IntoIterator<Item = u64>) {
        let mut d = std::fs::read(path).unwrap();
        for at in offsets {
            d[usize_of(at)] ^= 0xa5;
        }
        std::fs::write(path, d).unwrap();
    }

    /// Repair `path` with a fresh control; the progress must never have passed its total, and must end
    /// at it. Returns the report.
    fn repair_counted(path: &Path, mode: RepairMode) -> RepairReport {
        let control = Control::new();
        let r = repair_with(
            path,
            None,
            &RepairOptions {
                mode,
                ..RepairOptions::default()
            },
            &control,
        )
        .unwrap();
        assert_eq!(
            control.peak_excess(),
            0,
            "progress passed its total (done {}, total {})",
            control.done(),
            control.total()
        );
        assert_eq!(control.done(), control.total());
        r
    }

    /// Issue: a repair's progress reported done > total. Format v2 (the `medium` preset): the chunks
    /// rebuilt by local parity and by the global code were counted without being added to the total;
    /// v1 and v2: a sidecar rebuilt by the repair set the total back to the file's length.
    #[test]
    fn repair_progress_never_passes_its_total() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.bin");
        let data: Vec<u8> = (0..(8u64 << 20) + 4321)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13).to_le_bytes()[0])
            .collect();
        std::fs::write(&path, &data).unwrap();
        let medium_v2 =
            ProtectOptions::LevelFormat(Level::Medium, ChunkDigest::default(), Format::V2);
        let l = protect(&path, None, medium_v2, &Control::new())
            .unwrap()
            .layout;
        assert!(l.params.is_wide() && l.local_groups > 1, "{l:?}");
        let cs = l.params.chunk_size().get();
        let sp = sidecar_path_for(&path);
        let g = l.local_groups;
        // A burst over 5 neighbouring chunks (each alone in its interleaved group: local parity).
        flip_bytes(&path, (3 * cs + 7..8 * cs - 7).step_by(997));
        // Scattered flips, one per chunk, each in its own group (local) ...
        let scattered = [1 + 2 * g, 9 + g, 12 + 3 * g];
        // ... and a mix: a burst plus chunks sharing a group with it (global code), plus local ones.
        let mixed = [2, 3, 4, 2 + g, 3 + 2 * g, 11 + g];
        let v = |p: &Path| verify(p, None, &Control::new()).unwrap();
        let (local, global) = super::super::wide::local_plan(&l, &mixed, &[]);
        assert!(
            !local.is_empty() && !global.is_empty(),
            "{local:?} {global:?}"
        );
        let cases: [(&str, Vec<u64>); 3] = [
            ("burst", Vec::new()),
            (
                "scattered",
                scattered.iter().map(|&c| c * cs + 100).collect(),
            ),
            ("mixed", mixed.iter().map(|&c| c * cs + 5).collect()),
        ];
        for (name, flips) in cases {
            flip_bytes(&path, flips);
            assert_eq!(v(&path).status, Status::Repairable, "{name}");
            let r = repair_counted(&path, RepairMode::Auto);
            assert!(!r.repaired_chunks.is_empty(), "{name}");
            assert_eq!(std::fs::read(&path).unwrap(), data, "{name}");
        }
        // Damaged parity (the sidecar is rebuilt from the file) with a burst, in place and as a copy.
        for mode in [RepairMode::InPlace, RepairMode::Copy] {
            flip_bytes(&path, (20 * cs..22 * cs).step_by(4099));
            flip_bytes(&sp, [l.parity_offset(1) + 3]);
            let r = repair_counted(&path, mode);
            assert!(r.sidecar_rewritten);
            assert_eq!(std::fs::read(&path).unwrap(), data);
            assert_eq!(v(&path).status, Status::Intact);
        }
        // Format v1: damaged chunks in two stripes, a damaged parity slot (sidecar rebuilt), then a
        // damaged header copy (mended in place).
        let params = Params::new(16, 2, 64 * 1024).unwrap();
        let l = protect(&path, None, ProtectOptions::Custom(params), &Control::new())
            .unwrap()
            .layout;
        assert!(!l.params.is_wide() && l.stripes > 1);
        let cs = l.params.chunk_size().get();
        for sidecar_damage in [l.parity_offset(0) + 9, 17] {
            flip_bytes(&path, [5, cs + 5, 2 * cs + 5]);
            flip_bytes(&sp, [sidecar_damage]);
            let r = repair_counted(&path, RepairMode::Auto);
            assert!(r.sidecar_rewritten);
            assert_eq!(std::fs::read(&path).unwrap(), data);
            assert_eq!(v(&path).status, Status::Intact);
        }
    }
}
