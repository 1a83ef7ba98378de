//! Fuzz the `.tvecc` parser: one header copy from raw bytes, and a whole sidecar file. Neither may
//! panic; an accepted sidecar must be self-consistent (the parser re-derives every size).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tensorvault_core::ecc::erasure::sidecar::{Header, Layout, Sidecar};

fuzz_target!(|data: &[u8]| {
    if let Ok(h) = Header::parse(data) {
        let again =
            Layout::new(h.layout.params, h.layout.file_len).expect("accepted layout re-derives");
        assert_eq!(again, h.layout);
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("f.tvecc");
    std::fs::write(&path, data).expect("write");
    if let Ok(sc) = Sidecar::open(&path) {
        assert_eq!(sc.table.entries().len() as u64, sc.header.layout.entries);
    }
});
