//! A fast path for the JSON of a safetensors header: the plain form every writer produces (keys and
//! strings without escapes, `dtype` / `shape` / `data_offsets` once each, non-negative integers
//! written as digits, an optional `__metadata__` map of plain strings), parsed in one pass over the
//! bytes without building serde values.
//!
//! It accepts a subset of JSON and returns `None` for anything outside it, valid or not (an escape, an
//! unknown field, a float, a duplicate, a syntax error...): the caller then parses the text with the
//! serde path ([`super::header`]), which alone decides every error and every unusual case. Where the
//! fast path returns a header, it is the one the serde path returns (a test and the
//! `safetensors_header` fuzz target compare the two on every input). Measured on a 291-tensor header
//! (24 KiB): see `docs/benchmarks-safetensors.md`.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};

use super::header::{RawHeader, RawTensor};
use super::Dtype;

struct Cursor<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn ws(&mut self) {
        while let Some(&c) = self.b.get(self.at) {
            if c == b' ' || c == b'\n' || c == b'\r' || c == b'\t' {
                self.at += 1;
            } else {
                break;
            }
        }
    }

    /// The next non-whitespace byte, consumed.
    fn next(&mut self) -> Option<u8> {
        self.ws();
        let c = *self.b.get(self.at)?;
        self.at += 1;
        Some(c)
    }

    fn expect(&mut self, want: u8) -> Option<()> {
        (self.next()? == want).then_some(())
    }

    /// A string without escapes or control characters, after its opening quote was consumed.
    fn str_body(&mut self) -> Option<&'a str> {
        let start = self.at;
        let rest = self.b.get(start..)?;
        let len = rest
            .iter()
            .position(|&c| c == b'"' || c == b'\\' || c < 0x20)?;
        if rest.get(len) != Some(&b'"') {
            return None;
        }
        self.at = start + len + 1;
        // The whole text is UTF-8 and the string ends before a quote (ASCII): a char boundary.
        std::str::from_utf8(rest.get(..len)?).ok()
    }

    fn string(&mut self) -> Option<&'a str> {
        self.expect(b'"')?;
        self.str_body()
    }

    /// A non-negative integer written as plain digits (no sign, fraction, exponent or leading zero)
    /// that fits in `u64`.
    fn uint(&mut self) -> Option<u64> {
        self.ws();
        let start = self.at;
        let mut n: u64 = 0;
        while let Some(&c) = self.b.get(self.at) {
            if !c.is_ascii_digit() {
                break;
            }
            n = n.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
            self.at += 1;
        }
        let digits = self.at - start;
        if digits == 0 || (digits > 1 && self.b.get(start) == Some(&b'0')) {
            return None;
        }
        match self.b.get(self.at) {
            Some(b'.' | b'e' | b'E') => None,
            _ => Some(n),
        }
    }

    /// `[n, n, ...]` of [`Cursor::uint`].
    fn uints(&mut self, out: &mut Vec<u64>) -> Option<()> {
        self.expect(b'[')?;
        self.ws();
        if self.b.get(self.at) == Some(&b']') {
            self.at += 1;
            return Some(());
        }
        loop {
            out.push(self.uint()?);
            match self.next()? {
                b',' => {}
                b']' => return Some(()),
                _ => return None,
            }
        }
    }

    /// A tensor entry `{"dtype": …, "shape": […], "data_offsets": [a, b]}`, fields in any order.
    fn entry(&mut self) -> Option<(Dtype, Vec<u64>, (u64, u64))> {
        self.expect(b'{')?;
        let mut dtype = None;
        let mut shape = None;
        let mut offsets = None;
        loop {
            let key = self.string()?;
            self.expect(b':')?;
            match key {
                "dtype" if dtype.is_none() => dtype = Some(Dtype::parse(self.string()?)?),
                "shape" if shape.is_none() => {
                    let mut v = Vec::with_capacity(4);
                    self.uints(&mut v)?;
                    shape = Some(v);
                }
                "data_offsets" if offsets.is_none() => {
                    let mut v = Vec::with_capacity(2);
                    self.uints(&mut v)?;
                    let [a, b] = v[..] else { return None };
                    offsets = Some((a, b));
                }
                _ => return None,
            }
            match self.next()? {
                b',' => {}
                b'}' => break,
                _ => return None,
            }
        }
        Some((dtype?, shape?, offsets?))
    }

    /// `{"k": "v", ...}` of plain strings, no key twice.
    fn metadata(&mut self) -> Option<BTreeMap<String, String>> {
        self.expect(b'{')?;
        let mut out = BTreeMap::new();
        self.ws();
        if self.b.get(self.at) == Some(&b'}') {
            self.at += 1;
            return Some(out);
        }
        loop {
            let k = self.string()?;
            self.expect(b':')?;
            let v = self.string()?;
            if out.insert(k.to_string(), v.to_string()).is_some() {
                return None;
            }
            match self.next()? {
                b',' => {}
                b'}' => return Some(out),
                _ => return None,
            }
        }
    }
}

/// The header JSON `text` parsed on the fast path, or `None` when it is outside the plain form (the
/// serde path then decides).
pub(super) fn parse(text: &str) -> Option<RawHeader> {
    let b = text.as_bytes();
    // Entries are objects: the number of `{` bounds the tensor count (sized once, no rehashing). The
    // compiler vectorises this count; a crate for it is not worth a dependency.
    #[allow(clippy::naive_bytecount)]
    let capacity = b.iter().filter(|&&c| c == b'{').count().saturating_sub(1);
    let mut c = Cursor { b, at: 0 };
    let mut out = RawHeader {
        metadata: None,
        tensors: Vec::with_capacity(capacity),
        index: HashMap::with_capacity(capacity),
    };
    c.expect(b'{')?;
    c.ws();
    if b.get(c.at) == Some(&b'}') {
        c.at += 1;
    } else {
        loop {
            let key = c.string()?;
            c.expect(b':')?;
            if key == "__metadata__" {
                if out.metadata.is_some() {
                    return None;
                }
                out.metadata = Some(c.metadata()?);
            } else {
                let (dtype, shape, offsets) = c.entry()?;
                let at = out.tensors.len();
                match out.index.entry(key.to_string()) {
                    Entry::Occupied(_) => return None,
                    Entry::Vacant(e) => {
                        e.insert(at);
                    }
                }
                out.tensors.push(RawTensor {
                    name: key.to_string(),
                    dtype,
                    shape,
                    offsets,
                });
            }
            match c.next()? {
                b',' => {}
                b'}' => break,
                _ => return None,
            }
        }
    }
    c.ws();
    (c.at == b.len()).then_some(out)
}

/// Whether the fast path agrees with the serde path on the header JSON `json` (bytes, any): when
/// the fast path parses it, serde must parse it to the same header. For the fuzz target and tests.
#[doc(hidden)]
#[must_use]
pub fn agrees_with_serde(json: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(json) else {
        return true;
    };
    match parse(text) {
        None => true,
        Some(fast) => super::header::parse_json_serde(text).is_ok_and(|slow| slow == fast),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fast_and_serde(text: &str) -> (Option<RawHeader>, Option<RawHeader>) {
        (
            parse(text),
            super::super::header::parse_json_serde(text).ok(),
        )
    }

    #[test]
    fn plain_headers_parse_as_serde_parses_them() {
        for text in [
            "{}",
            " { } ",
            r#"{"a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]}}"#,
            r#"{"__metadata__":{"format":"pt","k":""},"b":{"shape":[],"dtype":"BF16","data_offsets":[0,2]},"a":{"data_offsets":[2,6],"dtype":"I32","shape":[1]}}"#,
            "{\n  \"x\" : { \"dtype\" : \"U8\" , \"shape\" : [ 0 ] , \"data_offsets\" : [ 0 , 0 ] } ,\n \"__metadata__\":{}}    ",
            r#"{"ü名":{"dtype":"F64","shape":[18446744073709551615],"data_offsets":[0,0]}}"#,
        ] {
            let (fast, slow) = fast_and_serde(text);
            assert!(fast.is_some(), "fast path refused {text}");
            assert_eq!(fast, slow, "{text}");
        }
    }

    #[test]
    fn everything_else_goes_to_serde() {
        for text in [
            "",
            "[]",
            "{",
            r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},}"#,
            r#"{"a\u0041":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#,
            r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"x":1}}"#,
            r#"{"a":{"dtype":"F32","shape":[2],"shape":[2],"data_offsets":[0,8]}}"#,
            r#"{"a":{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]}}"#,
            r#"{"a":{"dtype":"F32","shape":[1e1],"data_offsets":[0,8]}}"#,
            r#"{"a":{"dtype":"F32","shape":[02],"data_offsets":[0,8]}}"#,
            r#"{"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}"#,
            r#"{"a":{"dtype":"F32","shape":[18446744073709551616],"data_offsets":[0,8]}}"#,
            r#"{"a":{"dtype":"F33","shape":[2],"data_offsets":[0,8]}}"#,
            r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8,9]}}"#,
            r#"{"a":{"dtype":"F32","shape":[2]}}"#,
            r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"a":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}"#,
            r#"{"__metadata__":{"k":"v","k":"w"}}"#,
            r#"{"__metadata__":{"k":1}}"#,
            r#"{"__metadata__":{},"__metadata__":{}}"#,
            r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}} x"#,
            "{\"a\u{1}\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
        ] {
            assert!(parse(text).is_none(), "fast path took {text}");
            assert!(agrees_with_serde(text.as_bytes()));
        }
    }

    #[test]
    fn every_prefix_and_single_byte_change_agrees() {
        let text = r#"{"__metadata__":{"a":"b"},"w.0":{"dtype":"F16","shape":[3,1],"data_offsets":[0,6]},"w.1":{"dtype":"I8","shape":[2],"data_offsets":[6,8]}}"#;
        let b = text.as_bytes();
        for n in 0..=b.len() {
            assert!(agrees_with_serde(&b[..n]), "prefix {n}");
        }
        let mut m = b.to_vec();
        for i in 0..m.len() {
            let orig = m[i];
            for c in [
                b' ', b'"', b'\\', b'{', b'}', b'[', b']', b',', b':', b'0', b'9', b'.', b'-',
                b'e', 0x01,
            ] {
                m[i] = c;
                assert!(agrees_with_serde(&m), "byte {i} set to {c}");
            }
            m[i] = orig;
        }
    }
}
