//! Fuzz the checkpoint outboard (`.tvob`) parser and merge, and the sidecar fast path that cuts the
//! leaves out of a `.meta.json` and checks the rest. Nothing may panic. An accepted outboard header
//! must encode back to the bytes it was parsed from and describe offsets inside its own length; a
//! split sidecar must give back the original text when the leaves' hex is put back where it was cut.
//! A parsed JSON value must read back from its ordered text as itself and from its canonical text as
//! itself with sorted keys (the canonical text is a fixed point), and a checked sidecar's loader text
//! must hold exactly its metadata.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tensorvault_core::checkpoint_outboard::{
    merge_leaf, piece_cv, split_cvs, OutboardHeader, CV_LEN, HEADER_LEN,
};
use tensorvault_core::checkpoint_sidecar::{sidecar_doc, split_leaves};
use tensorvault_core::json::Json;

fuzz_target!(|data: &[u8]| {
    if let Ok(h) = OutboardHeader::parse(data) {
        assert_eq!(&h.encode()[..], &data[..HEADER_LEN], "accepted header round-trips");
        let per = h.pieces_per_chunk();
        assert!(per >= 2 && per.is_power_of_two());
        let total = h.total_len().expect("an accepted header has a length");
        let full = h.full_chunks();
        assert!(h.chunk_offset(full).is_none());
        if full > 0 {
            let at = h.chunk_offset(full - 1).expect("the last full chunk has values");
            assert_eq!(at + per * CV_LEN as u64, total);
        }
    }
    if let Some(cvs) = split_cvs(data) {
        let _ = merge_leaf(&cvs);
    }
    if let Some((head, rest)) = data.split_first_chunk::<8>() {
        let _ = piece_cv(rest, u64::from_le_bytes(*head));
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Some(s) = split_leaves(text) {
            let hex: String = s.leaves.iter().map(|b| format!("{b:02x}")).collect();
            let back = format!("{}{hex}{}", &s.text[..s.at], &s.text[s.at..]);
            assert_eq!(back, text, "the split puts back together");
            assert!(s.text[..s.at].ends_with('"'));
        }
        if let Some(v) = Json::parse(text) {
            let ordered = v.ordered().expect("parsed numbers are finite");
            assert_eq!(Json::parse(&ordered).as_ref(), Some(&v), "ordered text reads back");
            let canonical = v.canonical().expect("parsed numbers are finite");
            let again = Json::parse(&canonical).expect("canonical text parses");
            assert_eq!(again.canonical().as_deref(), Some(canonical.as_str()), "fixed point");
        }
        if let Some(d) = sidecar_doc(text) {
            let fields = Json::parse(&d.loader_json().expect("finite")).expect("loader text parses");
            assert_eq!(fields.get("metadata"), Some(&d.metadata));
            let _ = d.seal_matches(None);
            let _ = d.seal_matches(Some(b"k"));
        }
    }
});
