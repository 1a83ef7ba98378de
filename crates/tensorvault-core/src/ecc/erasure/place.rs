//! Where a repair writes its rebuilt chunks: into the protected file itself ([`InPlace`], the default)
//! or into a new copy renamed over it ([`CopyTarget`], today's behaviour, for read-only or shared files).
//!
//! Both implement [`RepairTarget`]: the repair hands it each rebuilt chunk, already checked against its
//! recorded digest, with [`RepairTarget::write_chunk`], then calls [`RepairTarget::finish`] once. The
//! in-place writer is crash-safe by construction (the argument is in `docs/formats/ecc-sidecar.md`,
//! "Repair in place"): it only ever writes into chunks that are already damaged, restores the length
//! first (cutting appended bytes nothing protects, or extending with zeros that make chunks that are
//! missing anyway), so a kill at any instant leaves a file whose damage is a subset of the damage before,
//! repairable to the same bytes.

use std::fs::File;
use std::path::{Path, PathBuf};

use crate::control::Control;
use crate::io::atomic::AtomicFile;
use crate::io::{regular_metadata, IoError};

use super::ErasureError;

/// How [`super::file::repair_with`] may write the repaired file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RepairMode {
    /// In place, except when the file cannot be opened for writing (permission denied) or more than
    /// half of it differs from what was protected: then a copy (see the format doc for why).
    #[default]
    Auto,
    /// In place, or fail (a read-only file is [`IoError::PermissionDenied`]).
    InPlace,
    /// Write a new file and rename it over the old one (another hard link keeps the damaged bytes).
    Copy,
}

impl RepairMode {
    /// Parse `auto` / `in-place` / `copy`.
    #[must_use]
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "auto" => Some(Self::Auto),
            "in-place" => Some(Self::InPlace),
            "copy" => Some(Self::Copy),
            _ => None,
        }
    }
}

/// How a repair actually wrote the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    /// Only the damaged chunks were written, into the file itself.
    InPlace,
    /// A repaired copy replaced the file atomically.
    Copy,
}

impl WriteMode {
    /// `in-place` or `copy`.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::InPlace => "in-place",
            Self::Copy => "copy",
        }
    }
}

/// A destination for rebuilt chunks. `write_chunk` may be called from several threads at once, for
/// distinct chunks; `finish` makes the result durable and visible.
pub trait RepairTarget: Sync {
    /// Which kind of writer this is.
    fn mode(&self) -> WriteMode;
    /// Write the rebuilt bytes of one data chunk (already checked against its digest) at `offset`.
    fn write_chunk(&self, offset: u64, bytes: &[u8]) -> Result<(), ErasureError>;
    /// Sync, give the file back the protected modification time, and (copy) rename it into place.
    fn finish(self: Box<Self>, control: &Control) -> Result<(), ErasureError>;
}

/// The file's state as the repair found it, for [`open_target`].
#[derive(Debug, Clone, Copy)]
pub struct TargetSpec<'a> {
    /// The protected file.
    pub path: &'a Path,
    /// The read handle the damage was found through (the target must be the same file).
    pub src: &'a File,
    /// Its length now.
    pub actual_len: u64,
    /// The length it was protected at.
    pub file_len: u64,
    /// The modification time recorded at `protect` (given back to the repaired file).
    pub mtime_ns: Option<i64>,
    /// Whether more than half of the file differs from what was protected (an interrupted in-place
    /// repair of such a file would look like a stale sidecar; see [`RepairMode::Auto`]).
    pub mostly_damaged: bool,
    /// The byte ranges `(offset, len)` of the damaged chunks, ascending: a copy does not read them
    /// (the rebuilt chunks are written there, and an unreadable sector would fail the copy).
    pub damaged: &'a [(u64, u64)],
}

/// The writer for `mode`. [`RepairMode::Auto`] opens the file in place and falls back to a copy when
/// that is refused for permission (or when the file is mostly damaged).
///
/// An in-place target commits `control` ([`Control::try_commit`]) when it is opened, before it
/// changes the file: from then on the repair is not cancelled (it finishes writing and re-checks). A
/// copy commits just before its rename, in [`RepairTarget::finish`].
pub fn open_target(
    spec: &TargetSpec<'_>,
    mode: RepairMode,
    control: &Control,
) -> Result<Box<dyn RepairTarget>, ErasureError> {
    match mode {
        RepairMode::Copy => Ok(Box::new(CopyTarget::create(spec)?)),
        RepairMode::InPlace => Ok(Box::new(InPlace::open(spec, control)?)),
        RepairMode::Auto if spec.mostly_damaged => Ok(Box::new(CopyTarget::create(spec)?)),
        RepairMode::Auto => match InPlace::open(spec, control) {
            Ok(t) => Ok(Box::new(t)),
            Err(ErasureError::Io(IoError::PermissionDenied { .. })) => {
                tracing::debug!(path = %spec.path.display(), "not writable: repairing into a copy");
                Ok(Box::new(CopyTarget::create(spec)?))
            }
            Err(e) => Err(e),
        },
    }
}

/// The modification time `t` (ns since the epoch) as a [`std::time::SystemTime`].
fn system_time(t: i64) -> Option<std::time::SystemTime> {
    let d = std::time::Duration::from_nanos(t.unsigned_abs());
    if t >= 0 {
        std::time::UNIX_EPOCH.checked_add(d)
    } else {
        std::time::UNIX_EPOCH.checked_sub(d)
    }
}

fn set_mtime(file: &File, path: &Path, t: Option<i64>) -> Result<(), IoError> {
    if let Some(at) = t.and_then(system_time) {
        file.set_times(std::fs::FileTimes::new().set_modified(at))
            .map_err(|e| IoError::from_os(path, "set_times", e))?;
    }
    Ok(())
}

fn write_all_at(file: &File, path: &Path, buf: &[u8], offset: u64) -> Result<(), IoError> {
    use std::os::unix::fs::FileExt;
    file.write_all_at(buf, offset)
        .map_err(|e| IoError::from_os(path, "write", e))
}

/// Test builds only (`TV_TEST_HOOKS=1`, feature `test-hooks`): sleep `TV_TEST_REPAIR_PAUSE_MS`
/// milliseconds after each step of an in-place repair, so that the kill campaign's `kill -9` lands
/// inside the repair rather than before or after it.
#[cfg(feature = "test-hooks")]
fn test_pause() {
    static PAUSE: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let ms = *PAUSE.get_or_init(|| {
        std::env::var("TV_TEST_REPAIR_PAUSE_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    });
    if ms > 0 {
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
}

#[cfg(not(feature = "test-hooks"))]
#[inline]
fn test_pause() {}

/// Repair in place: the protected file opened for writing.
#[derive(Debug)]
pub struct InPlace {
    file: File,
    path: PathBuf,
    mtime_ns: Option<i64>,
}

impl InPlace {
    /// Open `spec.path` for writing (it must still be the file the damage was found in), commit
    /// `control` (the writes that follow change the file: a cancellation no longer stops the repair;
    /// `Err(Cancelled)` if it came first) and restore its protected length: appended bytes are cut,
    /// a truncated file is extended with zeros.
    pub fn open(spec: &TargetSpec<'_>, control: &Control) -> Result<Self, ErasureError> {
        use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
        let path = spec.path;
        let file = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(path)
            .map_err(|e| IoError::from_os(path, "open", e))?;
        let meta = regular_metadata(&file, path)?;
        let src = spec
            .src
            .metadata()
            .map_err(|e| IoError::from_os(path, "stat", e))?;
        if meta.dev() != src.dev() || meta.ino() != src.ino() || meta.len() != spec.actual_len {
            return Err(ErasureError::FileChanged {
                path: path.to_path_buf(),
            });
        }
        control.try_commit()?;
        if spec.actual_len != spec.file_len {
            file.set_len(spec.file_len)
                .map_err(|e| IoError::from_os(path, "set_len", e))?;
            test_pause();
        }
        Ok(Self {
            file,
            path: path.to_path_buf(),
            mtime_ns: spec.mtime_ns,
        })
    }
}

impl RepairTarget for InPlace {
    fn mode(&self) -> WriteMode {
        WriteMode::InPlace
    }

    fn write_chunk(&self, offset: u64, bytes: &[u8]) -> Result<(), ErasureError> {
        write_all_at(&self.file, &self.path, bytes, offset)?;
        test_pause();
        Ok(())
    }

    fn finish(self: Box<Self>, _control: &Control) -> Result<(), ErasureError> {
        // Committed when opened: the chunks are written, a cancellation does not stop the sync.
        test_pause();
        // The protected modification time back, then one fsync for data and time together. No sync is
        // needed between them: whichever of the writes a power cut keeps, every chunk is intact or in
        // the damage found before, and a kept old time only makes the file look like media damage.
        set_mtime(&self.file, &self.path, self.mtime_ns)?;
        self.file
            .sync_all()
            .map_err(|e| IoError::from_os(&self.path, "fsync", e))?;
        Ok(())
    }
}

/// Repair into a copy: the intact bytes copied, the rebuilt chunks written over the damaged ones,
/// then an atomic rename over the original (a new inode: other hard links keep the old bytes).
#[derive(Debug)]
pub struct CopyTarget {
    out: AtomicFile,
    perms: std::fs::Permissions,
    mtime_ns: Option<i64>,
}

impl CopyTarget {
    /// Create the temporary copy next to `spec.path` with the file's intact prefix, at the protected
    /// length.
    pub fn create(spec: &TargetSpec<'_>) -> Result<Self, ErasureError> {
        use std::io::{Read, Seek, SeekFrom};
        let path = spec.path;
        let perms = spec
            .src
            .metadata()
            .map_err(|e| IoError::from_os(path, "stat", e))?
            .permissions();
        let out = AtomicFile::create(path)?;
        let dst = out.file().ok_or_else(|| ErasureError::FileChanged {
            path: path.to_path_buf(),
        })?;
        // The intact bytes below the protected length, around the damaged chunks.
        let end = spec.actual_len.min(spec.file_len);
        let mut at = 0u64;
        let gaps = spec
            .damaged
            .iter()
            .map(|&(off, len)| (off, off.saturating_add(len)))
            .chain(std::iter::once((end, end)));
        for (skip_from, skip_to) in gaps {
            let upto = skip_from.min(end);
            if upto > at {
                let mut src = spec.src;
                src.seek(SeekFrom::Start(at))
                    .map_err(|e| IoError::from_os(path, "seek", e))?;
                let mut writer = dst;
                writer
                    .seek(SeekFrom::Start(at))
                    .map_err(|e| out.error("seek", e))?;
                std::io::copy(&mut src.take(upto - at), &mut writer)
                    .map_err(|e| out.error("copy", e))?;
            }
            at = at.max(skip_to);
        }
        dst.set_len(spec.file_len)
            .map_err(|e| out.error("set_len", e))?;
        Ok(Self {
            out,
            perms,
            mtime_ns: spec.mtime_ns,
        })
    }

    fn dst(&self) -> Result<&File, ErasureError> {
        self.out.file().ok_or_else(|| ErasureError::FileChanged {
            path: self.out.dest().to_path_buf(),
        })
    }
}

impl RepairTarget for CopyTarget {
    fn mode(&self) -> WriteMode {
        WriteMode::Copy
    }

    fn write_chunk(&self, offset: u64, bytes: &[u8]) -> Result<(), ErasureError> {
        write_all_at(self.dst()?, self.out.tmp_path(), bytes, offset)
            .map_err(|e| self.out.naming_destination(e))?;
        Ok(())
    }

    fn finish(self: Box<Self>, control: &Control) -> Result<(), ErasureError> {
        let dst = self.dst()?;
        let tmp = self.out.tmp_path();
        dst.set_permissions(self.perms.clone())
            .map_err(|e| self.out.error("chmod", e))?;
        // The repaired file holds exactly the protected bytes: it gets back the modification time they
        // had when protected, so that the sidecar's hint keeps telling later edits from damage.
        set_mtime(dst, tmp, self.mtime_ns).map_err(|e| self.out.naming_destination(e))?;
        // The last moment a cancellation is honoured: after the rename the file is repaired, and
        // the repair runs to its end (the re-check) whatever happens to the signal.
        control.try_commit()?;
        self.out.commit()?;
        Ok(())
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation
)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::*;
    use crate::ecc::erasure::file::{
        protect, repair_with, sidecar_path_for, verify, Checked, ProtectOptions, RepairOptions,
        Status,
    };
    use crate::ecc::erasure::sidecar::{Params, Sidecar};

    const CS: usize = 4096;

    fn data(n: usize, seed: u32) -> Vec<u8> {
        (0..n)
            .map(|i| {
                (i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) as u8 ^ (i >> 9) as u8
            })
            .collect()
    }

    /// 40 chunks of 4 KiB (the last one short), k = 4, m = 2: 10 stripes; chunk i is in stripe i % 10.
    fn setup(dir: &Path) -> (PathBuf, Vec<u8>) {
        let path = dir.join("f.bin");
        let d = data(40 * CS - 100, 7);
        std::fs::write(&path, &d).unwrap();
        let p = Params::new(4, 2, CS as u64).unwrap();
        protect(&path, None, ProtectOptions::Custom(p), &Control::new()).unwrap();
        (path, d)
    }

    /// Flip a byte in each of `chunks`, leaving the modification time alone (as media damage does).
    fn damage(path: &Path, chunks: &[usize]) {
        let t = std::fs::metadata(path).unwrap().modified().unwrap();
        let f = std::fs::OpenOptions::new()
            .write(true)
            .read(true)
            .open(path)
            .unwrap();
        for &c in chunks {
            let mut b = [0u8];
            f.read_exact_at(&mut b, (c * CS + 17) as u64).unwrap();
            f.write_all_at(&[b[0] ^ 0x5a], (c * CS + 17) as u64)
                .unwrap();
        }
        f.set_modified(t).unwrap();
    }

    fn opts(mode: RepairMode, chunks: Option<&[u64]>) -> RepairOptions<'_> {
        RepairOptions {
            force: false,
            mode,
            chunks,
            ranges: None,
        }
    }

    #[test]
    fn default_repair_writes_into_the_same_inode_and_every_hard_link_sees_it() {
        let dir = tempfile::tempdir().unwrap();
        let (path, d) = setup(dir.path());
        let link = dir.path().join("link.bin");
        std::fs::hard_link(&path, &link).unwrap();
        let ino = std::fs::metadata(&path).unwrap().ino();
        damage(&path, &[3, 13, 22]);
        let r = repair_with(&path, None, &RepairOptions::default(), &Control::new()).unwrap();
        assert_eq!(r.write_mode, Some(WriteMode::InPlace));
        assert_eq!(r.repaired_chunks, vec![3, 13, 22]);
        assert_eq!(
            (r.checked_before, r.checked_after),
            (Checked::Whole, Checked::Changed)
        );
        assert_eq!(r.after.status, Status::Intact);
        assert_eq!(std::fs::metadata(&path).unwrap().ino(), ino, "same inode");
        assert_eq!(std::fs::read(&path).unwrap(), d);
        assert_eq!(
            std::fs::read(&link).unwrap(),
            d,
            "the hard link sees the repair"
        );
        assert_eq!(
            verify(&path, None, &Control::new()).unwrap().status,
            Status::Intact
        );
    }

    #[test]
    fn copy_mode_replaces_the_path_and_leaves_other_links_alone() {
        let dir = tempfile::tempdir().unwrap();
        let (path, d) = setup(dir.path());
        damage(&path, &[5]);
        let link = dir.path().join("link.bin");
        std::fs::hard_link(&path, &link).unwrap();
        let ino = std::fs::metadata(&path).unwrap().ino();
        let damaged = std::fs::read(&path).unwrap();
        let r = repair_with(&path, None, &opts(RepairMode::Copy, None), &Control::new()).unwrap();
        assert_eq!(r.write_mode, Some(WriteMode::Copy));
        assert_eq!(r.checked_after, Checked::Whole);
        assert_ne!(std::fs::metadata(&path).unwrap().ino(), ino, "a new inode");
        assert_eq!(std::fs::read(&path).unwrap(), d);
        assert_eq!(std::fs::read(&link).unwrap(), damaged);
    }

    #[test]
    fn truncation_and_appended_bytes_are_undone_in_place_with_the_protected_mtime() {
        let dir = tempfile::tempdir().unwrap();
        let (path, d) = setup(dir.path());
        let t0 = std::fs::metadata(&path).unwrap().modified().unwrap();
        let ino = std::fs::metadata(&path).unwrap().ino();
        // Truncated in the middle of chunk 37, plus a flip in chunk 1.
        damage(&path, &[1]);
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(37 * CS as u64 + 5)
            .unwrap();
        let r = repair_with(&path, None, &RepairOptions::default(), &Control::new()).unwrap();
        assert_eq!(r.repaired_chunks, vec![1, 37, 38, 39]);
        assert_eq!(std::fs::read(&path).unwrap(), d);
        assert_eq!(std::fs::metadata(&path).unwrap().ino(), ino);
        assert_eq!(std::fs::metadata(&path).unwrap().modified().unwrap(), t0);
        // Appended garbage is cut, in place.
        let mut longer = d.clone();
        longer.extend_from_slice(b"appended garbage");
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all_at(b"appended garbage", d.len() as u64)
            .unwrap();
        let r = repair_with(&path, None, &RepairOptions::default(), &Control::new()).unwrap();
        assert_eq!(r.write_mode, Some(WriteMode::InPlace));
        assert!(r.repaired_chunks.is_empty());
        assert_eq!(std::fs::read(&path).unwrap(), d);
        assert_eq!(std::fs::metadata(&path).unwrap().ino(), ino);
    }

    #[test]
    fn listed_chunks_check_only_their_stripes_and_pick_up_other_damage_there() {
        let dir = tempfile::tempdir().unwrap();
        let (path, d) = setup(dir.path());
        // 3 and 13 share stripe 3; 25 is in stripe 5 and not listed.
        damage(&path, &[3, 13, 25]);
        let r = repair_with(
            &path,
            None,
            &opts(RepairMode::Auto, Some(&[3])),
            &Control::new(),
        )
        .unwrap();
        assert_eq!(r.checked_before, Checked::Changed);
        assert_eq!(
            r.repaired_chunks,
            vec![3, 13],
            "the whole stripe was checked"
        );
        let v = verify(&path, None, &Control::new()).unwrap();
        assert_eq!(
            v.damaged_chunks,
            vec![25],
            "chunks outside the listed stripes are not"
        );
        let r = repair_with(
            &path,
            None,
            &opts(RepairMode::Auto, Some(&[25])),
            &Control::new(),
        )
        .unwrap();
        assert_eq!(r.repaired_chunks, vec![25]);
        assert_eq!(std::fs::read(&path).unwrap(), d);
        // A listed chunk that is intact: nothing to do.
        let r = repair_with(
            &path,
            None,
            &opts(RepairMode::Auto, Some(&[7])),
            &Control::new(),
        )
        .unwrap();
        assert_eq!((r.file_rewritten, r.write_mode), (false, None));
        assert!(matches!(
            repair_with(
                &path,
                None,
                &opts(RepairMode::Auto, Some(&[40])),
                &Control::new()
            ),
            Err(ErasureError::ChunkOutOfRange {
                chunk: 40,
                chunks: 40
            })
        ));
    }

    #[test]
    fn damaged_byte_ranges_select_their_chunks_like_a_list() {
        let dir = tempfile::tempdir().unwrap();
        let (path, d) = setup(dir.path());
        let layout = Sidecar::open(&sidecar_path_for(&path))
            .unwrap()
            .header
            .layout;
        let cs = CS as u64;
        // A range inside one chunk, one across a boundary, an empty one, one past the protected end.
        assert_eq!(
            layout.chunks_touching(&[(3 * cs + 17, 1), (7 * cs - 1, 2), (9 * cs, 0), (40 * cs, 5)]),
            vec![3, 6, 7]
        );
        assert_eq!(layout.chunks_touching(&[(39 * cs, 10 * cs)]), vec![39]);
        damage(&path, &[3, 13, 25]);
        // The damaged bytes as another check (a checkpoint's tree) reports them, and one chunk listed.
        let ranges = [(3 * cs + 17, 1), (13 * cs, cs)];
        let r = repair_with(
            &path,
            None,
            &RepairOptions {
                chunks: Some(&[25]),
                ranges: Some(&ranges),
                ..RepairOptions::default()
            },
            &Control::new(),
        )
        .unwrap();
        assert_eq!(r.checked_before, Checked::Changed);
        assert_eq!(r.repaired_chunks, vec![3, 13, 25]);
        assert_eq!(std::fs::read(&path).unwrap(), d);
    }

    /// Header and table copies damaged, parity intact: the repair writes those bytes again from the
    /// valid copies (the sidecar comes back byte for byte) and checks only what changed, instead of
    /// encoding the whole file's parity again (the demo's 2 GiB repair spent 4.3 s there).
    #[test]
    fn damaged_header_and_table_copies_are_mended_in_place() {
        use crate::ecc::erasure::sidecar::BLOCK_LEN;
        use std::os::unix::fs::FileExt;
        let dir = tempfile::tempdir().unwrap();
        let (path, d) = setup(dir.path());
        let sc_path = sidecar_path_for(&path);
        let original = std::fs::read(&sc_path).unwrap();
        let layout = Sidecar::open(&sc_path).unwrap().header.layout;
        let ino = std::fs::metadata(&sc_path).unwrap().ino();
        for (what, offsets) in [
            ("header A", vec![16u64]),
            (
                "header B and a block of table A",
                vec![layout.header_b_offset() + 40, layout.table_a_offset() + 100],
            ),
            (
                "a block of table B, with a data chunk",
                vec![layout.table_b_offset() + BLOCK_LEN - 1],
            ),
        ] {
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(&sc_path)
                .unwrap();
            for at in offsets {
                f.write_all_at(&[0xA5; 8], at).unwrap();
            }
            drop(f);
            if what.ends_with("data chunk") {
                damage(&path, &[5]);
            }
            let r = repair_with(&path, None, &RepairOptions::default(), &Control::new()).unwrap();
            assert!(r.sidecar_rewritten, "{what}");
            assert_eq!(
                r.checked_after,
                Checked::Changed,
                "{what}: nothing re-hashed whole"
            );
            assert_eq!(std::fs::read(&sc_path).unwrap(), original, "{what}");
            assert_eq!(
                std::fs::metadata(&sc_path).unwrap().ino(),
                ino,
                "{what}: in place"
            );
            assert_eq!(std::fs::read(&path).unwrap(), d, "{what}");
            let v = verify(&path, None, &Control::new()).unwrap();
            assert_eq!(v.status, Status::Intact, "{what}");
        }
        // A sidecar of the wrong length is still written again whole.
        let f = std::fs::OpenOptions::new()
            .append(true)
            .open(&sc_path)
            .unwrap();
        f.write_all_at(b"x", original.len() as u64).unwrap();
        drop(f);
        let r = repair_with(&path, None, &RepairOptions::default(), &Control::new()).unwrap();
        assert!(r.sidecar_rewritten);
        assert_eq!(r.checked_after, Checked::Whole);
        assert_eq!(std::fs::read(&sc_path).unwrap(), original);
    }

    #[test]
    fn a_mostly_damaged_file_is_repaired_through_a_copy_in_auto_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k1.bin");
        let d = data(3 * CS, 9);
        std::fs::write(&path, &d).unwrap();
        // k = 1: every data chunk may be lost; losing all three is all of the file.
        let p = Params::new(1, 2, CS as u64).unwrap();
        protect(&path, None, ProtectOptions::Custom(p), &Control::new()).unwrap();
        damage(&path, &[0, 1, 2]);
        let r = repair_with(&path, None, &RepairOptions::default(), &Control::new()).unwrap();
        assert_eq!(r.write_mode, Some(WriteMode::Copy));
        assert_eq!(std::fs::read(&path).unwrap(), d);
    }

    /// Every state an interrupted in-place repair can leave, built by hand: the length restored or not,
    /// any subset of the damaged chunks written (one of them torn half-way), under a new modification
    /// time. Each must verify as intact with the original bytes or as repairable with damage within the
    /// damage before (never stale), and repair to the original bytes.
    #[test]
    fn every_interrupted_state_verifies_within_the_damage_before_and_repairs() {
        let dir = tempfile::tempdir().unwrap();
        let (path, d) = setup(dir.path());
        let t0 = std::fs::metadata(&path).unwrap().modified().unwrap();
        // Damaged: chunks 4, 17 and 30 flipped, and the file cut inside chunk 38 (38 and 39 lost).
        let flipped = [4usize, 17, 30];
        let cut = 38 * CS + 10;
        let mut damaged = d.clone();
        for &c in &flipped {
            damaged[c * CS + 17] ^= 0x5a;
        }
        let before: Vec<u64> = vec![4, 17, 30, 38, 39];
        for restored_len in [false, true] {
            for subset in 0u32..(1 << flipped.len()) {
                for torn in [false, true] {
                    let mut state = damaged[..cut].to_vec();
                    if restored_len {
                        state.resize(d.len(), 0);
                    }
                    let mut first = true;
                    for (bit, &c) in flipped.iter().enumerate() {
                        if subset & (1 << bit) != 0 {
                            let end = if torn && first {
                                c * CS + CS / 2
                            } else {
                                (c + 1) * CS
                            };
                            state[c * CS..end].copy_from_slice(&d[c * CS..end]);
                            first = false;
                        }
                    }
                    std::fs::write(&path, &state).unwrap();
                    let f = std::fs::File::options().write(true).open(&path).unwrap();
                    f.set_modified(t0 + std::time::Duration::from_secs(5))
                        .unwrap();
                    drop(f);
                    let v = verify(&path, None, &Control::new()).unwrap();
                    let case = format!("len {restored_len} subset {subset:03b} torn {torn}");
                    match v.status {
                        Status::Intact => assert_eq!(std::fs::read(&path).unwrap(), d, "{case}"),
                        Status::Repairable => {
                            assert!(
                                v.damaged_chunks.iter().all(|c| before.contains(c)),
                                "{case}"
                            );
                        }
                        other => panic!("{case}: {other:?}"),
                    }
                    repair_with(&path, None, &RepairOptions::default(), &Control::new()).unwrap();
                    assert_eq!(std::fs::read(&path).unwrap(), d, "{case}");
                }
            }
        }
    }

    use std::os::unix::fs::FileExt;
}
