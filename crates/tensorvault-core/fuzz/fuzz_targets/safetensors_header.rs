//! libFuzzer target: the safetensors header parser on arbitrary bytes. Any accepted header must
//! satisfy the invariants the reader relies on: contiguous tensors with no trailing bytes, a name index
//! that finds every tensor (it is built while parsing and renumbered after the sort by offsets), and no
//! value nested deeper than the JSON limit of 128, the values the parser ignores included (issue 13,
//! item 14).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tensorvault_core::safetensors::Header;

/// Deepest nesting of `[`/`{` in JSON text, outside strings.
fn max_depth(text: &[u8]) -> usize {
    let (mut depth, mut max, mut in_str, mut esc) = (0usize, 0usize, false, false);
    for &b in text {
        if in_str {
            match (esc, b) {
                (true, _) => esc = false,
                (false, b'\\') => esc = true,
                (false, b'"') => in_str = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_str = true,
            b'[' | b'{' => {
                depth += 1;
                max = max.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

/// What a parse means (metadata, tensors in offset order, header length), or the error's message.
fn meaning(r: &Result<Header, tensorvault_core::safetensors::SafetensorsError>) -> String {
    match r {
        Ok(h) => {
            let tensors: Vec<_> = h.tensors().collect();
            format!("{:?} {tensors:?} {}", h.metadata(), h.header_len())
        }
        Err(e) => e.to_string(),
    }
}

fuzz_target!(|data: &[u8]| {
    let parsed = Header::parse(data, data.len() as u64);
    // The fast path (taken for plain headers) means exactly what serde alone reads.
    assert_eq!(
        meaning(&parsed),
        meaning(&Header::parse_reference(data, data.len() as u64)),
        "fast path and serde agree"
    );
    if let Ok(h) = parsed {
        let mut at = 0u64;
        for t in h.tensors() {
            assert_eq!(t.start, at, "tensors must be contiguous");
            assert!(t.end >= t.start);
            at = t.end;
            assert_eq!(h.get(t.name), Some(t), "the index finds every tensor");
        }
        assert_eq!(8 + h.header_len() + at, data.len() as u64, "no trailing bytes");
        let json = &data[8..8 + h.header_len() as usize];
        assert!(max_depth(json) <= 128, "nesting limit holds for every value");
    }
});
