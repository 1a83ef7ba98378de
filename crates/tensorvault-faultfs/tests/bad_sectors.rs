//! Unreadable sectors (`EIO`) under `verify` and `repair`, through the kernel's own paths: the file is
//! served by the fault file system, so `pread` returns `EIO` and a page fault of a mapping raises
//! `SIGBUS`, as on a disk with bad sectors. An unreadable chunk is an erasure: parity rebuilds it, and
//! an in-place repair writes it anew (which clears the bad range, as a disk remaps a sector on write).
//!
//! Needs `/dev/fuse` and the right to mount (root). Without them every test says it skipped, unless
//! `TV_REQUIRE_FAULTFS=1` (set by `npm test` where both are present) makes that a failure.
#![cfg(target_os = "linux")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::Path;

use tensorvault_core::control::Control;
use tensorvault_core::ecc::erasure::{
    protect, repair, repair_with, verify, ChunkDigest, Format, Level, Params, ProtectOptions,
    RepairMode, RepairOptions, Status, WriteMode,
};
use tensorvault_faultfs::{mount, Mounted};

struct Setup {
    backing: tempfile::TempDir,
    _mnt: tempfile::TempDir,
    fs: Mounted,
    original: Vec<u8>,
}

fn pattern(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).max(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x.to_le_bytes()[0]
        })
        .collect()
}

/// `f.bin` of `len` bytes protected with `options` in a backing folder, served by a fault file system;
/// `None` (the test skips) where FUSE cannot be mounted.
fn setup(len: usize, options: ProtectOptions) -> Option<Setup> {
    let backing = tempfile::tempdir().unwrap();
    let mnt = tempfile::tempdir().unwrap();
    let original = pattern(len, 7);
    let path = backing.path().join("f.bin");
    std::fs::write(&path, &original).unwrap();
    protect(&path, None, options, &Control::new()).unwrap();
    match mount(backing.path(), mnt.path()) {
        Ok(fs) => Some(Setup {
            backing,
            _mnt: mnt,
            fs,
            original,
        }),
        Err(e) => {
            assert!(
                std::env::var("TV_REQUIRE_FAULTFS").as_deref() != Ok("1"),
                "TV_REQUIRE_FAULTFS=1 but the fault file system cannot be mounted: {e}"
            );
            eprintln!("skipped: cannot mount the fault file system here ({e})");
            None
        }
    }
}

fn file(s: &Setup) -> std::path::PathBuf {
    s.fs.mountpoint.join("f.bin")
}

fn readbacking(s: &Setup, name: &str) -> Vec<u8> {
    std::fs::read(s.backing.path().join(name)).unwrap()
}

fn chunk_size(path: &Path) -> u64 {
    verify(path, None, &Control::new())
        .unwrap()
        .layout
        .params
        .chunk_size()
        .get()
}

/// The wide code (v2): three bad sectors in three chunks are three erasures; verify names them
/// (through the mapping, whose faults fall back to reads, which return `EIO`), and an in-place repair
/// writes exactly those chunks, after which the file reads back whole.
#[test]
fn unreadable_sectors_are_erasures_that_an_in_place_repair_rewrites() {
    let opts = ProtectOptions::LevelFormat(Level::Medium, ChunkDigest::default(), Format::V2);
    let Some(s) = setup(24 << 20, opts) else {
        return;
    };
    let path = file(&s);
    let cs = chunk_size(&path);
    // One 4 KiB "sector" in chunks 1, 40 and the last one.
    let chunks = (24u64 << 20).div_ceil(cs);
    let bad = [1, 40.min(chunks - 2), chunks - 1];
    for &c in &bad {
        s.fs.faults.set_bad("f.bin", c * cs + 8192, 4096).unwrap();
    }
    assert!(
        std::fs::read(&path).is_err(),
        "the file must not read whole"
    );

    let control = Control::new();
    let r = verify(&path, None, &control).unwrap();
    assert_eq!(r.status, Status::Repairable, "{r:?}");
    assert_eq!(r.damaged_chunks, bad);
    // Only the chunks hashed while the mapping faulted were read again (two workers: the bad chunks
    // and the ones hashed beside them, each with its neighbours), not the whole file.
    let once = r.layout.file_len + r.layout.parity_len;
    assert!(
        control.total() <= once + 6 * bad.len() as u64 * cs,
        "{} bytes checked for {once}",
        control.total()
    );
    assert_eq!(control.done(), control.total());
    assert_eq!(r.unreadable_chunks, bad);
    assert!(r.damaged_parity.is_empty() && r.unreadable_parity.is_empty());
    assert!(s.fs.faults.eio_count() > 0);

    let rep = repair(&path, None, false, &Control::new()).unwrap();
    assert_eq!(rep.write_mode, Some(WriteMode::InPlace));
    assert_eq!(rep.repaired_chunks, bad);
    assert_eq!(rep.after.status, Status::Intact);
    assert!(s.fs.faults.bad_ranges("f.bin").unwrap().is_empty());
    assert_eq!(std::fs::read(&path).unwrap(), s.original);
    assert_eq!(readbacking(&s, "f.bin"), s.original);
}

/// The striped code (v1, custom 4 + 2): the same through a repair given the verify report's chunks
/// (which checks only their stripes, by reads), and in copy mode.
#[test]
fn unreadable_sectors_in_the_striped_code_and_a_listed_repair_and_a_copy() {
    let params = Params::new(4, 2, 65536).unwrap();
    let Some(s) = setup(1 << 20, ProtectOptions::Custom(params)) else {
        return;
    };
    let path = file(&s);
    // Chunks 0 and 5: different stripes of the 4 + 2 code (16 chunks in 4 stripes).
    s.fs.faults.set_bad("f.bin", 100, 1).unwrap();
    s.fs.faults
        .set_bad("f.bin", 5 * 65536 + 65000, 100)
        .unwrap();
    let r = verify(&path, None, &Control::new()).unwrap();
    assert_eq!(r.status, Status::Repairable, "{r:?}");
    assert_eq!(r.unreadable_chunks, vec![0, 5]);

    let listed = r.damaged_chunks.clone();
    let rep = repair_with(
        &path,
        None,
        &RepairOptions {
            chunks: Some(&listed),
            mode: RepairMode::Copy,
            ..RepairOptions::default()
        },
        &Control::new(),
    )
    .unwrap();
    assert_eq!(rep.before.unreadable_chunks, vec![0, 5]);
    assert_eq!(rep.write_mode, Some(WriteMode::Copy));
    assert_eq!(rep.after.status, Status::Intact);
    assert_eq!(std::fs::read(&path).unwrap(), s.original);
}

/// An unreadable parity slot is damaged parity: verify reports it, repair rebuilds the sidecar.
#[test]
fn an_unreadable_parity_slot_is_damaged_parity() {
    let params = Params::new(4, 2, 65536).unwrap();
    let Some(s) = setup(1 << 20, ProtectOptions::Custom(params)) else {
        return;
    };
    let path = file(&s);
    let layout = verify(&path, None, &Control::new()).unwrap().layout;
    let off = layout.parity_offset(3);
    s.fs.faults
        .set_bad("f.bin.tvecc", off + 4096, 4096)
        .unwrap();
    // And a sector across the boundary of slots 6 and 7 (the slots are not page-aligned in the
    // sidecar, so one page holds the end of one and the start of the other): both are unreadable,
    // though only the first to touch the page through the mapping faults.
    let boundary = layout.parity_offset(7);
    s.fs.faults
        .set_bad("f.bin.tvecc", boundary - 8, 16)
        .unwrap();
    let r = verify(&path, None, &Control::new()).unwrap();
    assert_eq!(r.status, Status::Repairable, "{r:?}");
    assert!(r.damaged_chunks.is_empty());
    assert_eq!(r.damaged_parity, vec![3, 6, 7]);
    assert_eq!(r.unreadable_parity, vec![3, 6, 7]);
    let rep = repair(&path, None, false, &Control::new()).unwrap();
    assert!(rep.sidecar_rewritten);
    assert_eq!(rep.after.status, Status::Intact);
    assert_eq!(
        verify(&path, None, &Control::new()).unwrap().status,
        Status::Intact
    );
}

/// More unreadable chunks than parity: reported unrepairable (with the chunks), not an I/O error, and
/// a repair changes nothing.
#[test]
fn unreadable_chunks_beyond_the_parity_are_unrepairable_not_an_io_error() {
    let params = Params::new(4, 2, 65536).unwrap();
    let Some(s) = setup(256 << 10, ProtectOptions::Custom(params)) else {
        return;
    };
    let path = file(&s);
    for c in 0..3u64 {
        s.fs.faults.set_bad("f.bin", c * 65536, 512).unwrap();
    }
    let r = verify(&path, None, &Control::new()).unwrap();
    assert_eq!(r.status, Status::Unrepairable, "{r:?}");
    assert_eq!(r.unreadable_chunks, vec![0, 1, 2]);
    assert_eq!(r.unrepairable_chunks, vec![0, 1, 2]);
    let err = repair(&path, None, false, &Control::new()).unwrap_err();
    assert!(err.to_string().contains("parity"), "{err}");
    assert_eq!(s.fs.faults.bad_ranges("f.bin").unwrap().len(), 3);
    assert_eq!(readbacking(&s, "f.bin"), s.original);
}
