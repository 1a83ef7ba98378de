//! Fuzz the `.tvecc` parser: one header copy from raw bytes, and a whole sidecar file. Neither may
//! panic; an accepted sidecar must be self-consistent (the parser re-derives every size), and an
//! accepted header, file hints included (flag bit 0, the protected file's mtime at bytes 160..168,
//! issue 13 item 16), must encode back to exactly the bytes it was parsed from: no flag, hint or
//! reserved byte is accepted and then dropped. Format v2 (issue 18, the wide GF(2^16) code) goes through
//! the same parser: an accepted v2 header is one stripe whose `k` is the chunk count, with the codec
//! byte that matches its version. Local parity (flag bit 1, group size at bytes 72..76, issue 18) is v2
//! only, and its groups and parity slots must re-derive from `g`; interleaved groups (flag bit 2) only
//! with it, and every chunk must be in the group its index names.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tensorvault_core::ecc::erasure::sidecar::{
    Header, Layout, Sidecar, FLAG_FILE_HINTS, FLAG_INTERLEAVED_GROUPS, FLAG_LOCAL_PARITY,
};

fuzz_target!(|data: &[u8]| {
    if let Ok(h) = Header::parse(data) {
        let again =
            Layout::new(h.layout.params, h.layout.file_len).expect("accepted layout re-derives");
        assert_eq!(again, h.layout);
        assert_eq!(&h.encode()[..], &data[..256], "accepted header round-trips");
        let flags = u32::from_le_bytes(data[12..16].try_into().expect("4 bytes"));
        assert_eq!(
            flags & !(FLAG_FILE_HINTS | FLAG_LOCAL_PARITY | FLAG_INTERLEAVED_GROUPS),
            0,
            "unknown flags refused"
        );
        assert_eq!(h.file_mtime_ns.is_some(), flags & FLAG_FILE_HINTS != 0);
        let g = h.layout.params.local_group();
        assert_eq!(g > 0, flags & FLAG_LOCAL_PARITY != 0, "local flag iff g");
        assert_eq!(
            h.layout.params.interleaved_groups(),
            flags & FLAG_INTERLEAVED_GROUPS != 0,
            "interleaved flag iff interleaved groups"
        );
        if g > 0 {
            assert!(h.layout.params.is_wide(), "local parity is v2 only");
            for idx in [0, h.layout.chunks / 2, h.layout.chunks.saturating_sub(1)] {
                if idx < h.layout.chunks {
                    let q = h.layout.group_of(idx).expect("a group");
                    assert!(q < h.layout.local_groups, "group in range");
                    assert!(h.layout.group_chunks(q).any(|c| c == idx), "chunk in its group");
                }
            }
            assert!(g <= h.layout.params.k() as u64);
            assert_eq!(h.layout.local_groups, h.layout.chunks.div_ceil(g));
            assert_eq!(
                h.layout.entries,
                h.layout.chunks + h.layout.params.m() as u64 + h.layout.local_groups
            );
        } else {
            assert_eq!(h.layout.local_groups, 0);
        }
        let version = u16::from_le_bytes([data[8], data[9]]);
        assert_eq!(version, h.layout.params.format_version());
        assert_eq!(
            data[20],
            if version == 2 { 2 } else { 1 },
            "codec matches version"
        );
        if h.layout.params.is_wide() {
            assert!(h.layout.stripes <= 1, "v2 is one stripe");
            assert!(h.layout.chunks == h.layout.params.k() as u64 || h.layout.chunks == 0);
        }
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("f.tvecc");
    std::fs::write(&path, data).expect("write");
    if let Ok(sc) = Sidecar::open(&path) {
        assert_eq!(sc.table.entries().len() as u64, sc.header.layout.entries);
    }
});
