//! libFuzzer target: the safetensors header parser on arbitrary bytes. Any accepted header must
//! satisfy the invariants the reader relies on.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tensorvault_core::safetensors::Header;

fuzz_target!(|data: &[u8]| {
    if let Ok(h) = Header::parse(data, data.len() as u64) {
        let mut at = 0u64;
        for t in h.tensors() {
            assert_eq!(t.start, at, "tensors must be contiguous");
            assert!(t.end >= t.start);
            at = t.end;
        }
        assert_eq!(8 + h.header_len() + at, data.len() as u64, "no trailing bytes");
    }
});
