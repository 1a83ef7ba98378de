//! JSON values as JavaScript's `JSON.parse` builds them, and their text as JavaScript writes it: the
//! checkpoint open's fast path (`checkpoint_sidecar`) checks a sidecar's seal over the RFC 8785
//! canonical form of its metadata here, and hands JavaScript the same metadata as text, so that what
//! JavaScript sees is exactly what was checked.
//!
//! The model follows `JSON.parse`: every number is an IEEE double (the nearest one to the decimal
//! text: `serde_json`'s `float_roundtrip`; integers beyond 2^53 round the same way), and an object
//! keeps its members in the order their keys first appear, a repeated key taking the last value in
//! the first key's place. Text is written as `JSON.stringify` writes it: numbers by ECMAScript's
//! `Number::toString` (`ryu-js`), strings with `"`, `\` and the control characters escaped (the short
//! escapes where there is one, else `\u00xx`), nothing else escaped. The canonical form (RFC 8785)
//! sorts each object's keys by their UTF-16 code units; the ordered form keeps the parsed order.
//! Anything `JSON.parse` would read differently is refused by `serde_json` (lone surrogates in
//! escapes, numbers beyond the double range, nesting deeper than 128), and the caller falls back to
//! JavaScript.

use std::collections::HashMap;
use std::fmt;
use std::fmt::Write as _;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// A JSON value as `JSON.parse` builds it (see the module documentation).
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    /// `null`.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// A number (always finite).
    Num(f64),
    /// A string.
    Str(String),
    /// An array.
    Arr(Vec<Json>),
    /// An object: members in first-seen key order, each key once.
    Obj(Vec<(String, Json)>),
}

impl Json {
    /// Parse `text` (one JSON value, nothing after it but whitespace); None where `serde_json`
    /// refuses it.
    #[must_use]
    pub fn parse(text: &str) -> Option<Self> {
        serde_json::from_str(text).ok()
    }

    /// The member `key` of an object (None for other values and missing keys).
    #[must_use]
    pub fn get(&self, key: &str) -> Option<&Self> {
        match self {
            Self::Obj(members) => members.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The string, if this is one.
    #[must_use]
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The number as an integer when it is one JavaScript counts exactly (`Number.isSafeInteger`)
    /// and not negative.
    #[must_use]
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // range and fraction checked
    pub fn as_safe_u64(&self) -> Option<u64> {
        const MAX_SAFE: f64 = 9_007_199_254_740_991.0;
        match *self {
            Self::Num(x) if x.fract() == 0.0 && (0.0..=MAX_SAFE).contains(&x) => Some(x as u64),
            _ => None,
        }
    }

    /// The RFC 8785 canonical text (keys sorted by UTF-16 code units); None if a number is not
    /// finite (which parsing never produces).
    #[must_use]
    pub fn canonical(&self) -> Option<String> {
        let mut out = String::new();
        self.write(&mut out, true).then_some(out)
    }

    /// The text `JSON.stringify` writes for this value (no whitespace, members in their order).
    #[must_use]
    pub fn ordered(&self) -> Option<String> {
        let mut out = String::new();
        self.write(&mut out, false).then_some(out)
    }

    /// Append the text to `out`, keys sorted when `sorted`; false for a non-finite number.
    pub fn write(&self, out: &mut String, sorted: bool) -> bool {
        match self {
            Self::Null => out.push_str("null"),
            Self::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Self::Num(x) => {
                if !x.is_finite() {
                    return false;
                }
                // JSON.stringify writes -0 as 0 (the canonical form); the ordered form is read back by
                // JSON.parse, which keeps the sign of "-0".
                if !sorted && *x == 0.0 && x.is_sign_negative() {
                    out.push_str("-0");
                } else {
                    out.push_str(ryu_js::Buffer::new().format_finite(*x));
                }
            }
            Self::Str(s) => write_string(out, s),
            Self::Arr(items) => {
                out.push('[');
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    if !v.write(out, sorted) {
                        return false;
                    }
                }
                out.push(']');
            }
            Self::Obj(members) => {
                let mut order: Vec<&(String, Json)> = members.iter().collect();
                if sorted {
                    order.sort_by(|a, b| a.0.encode_utf16().cmp(b.0.encode_utf16()));
                }
                out.push('{');
                for (i, (k, v)) in order.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write_string(out, k);
                    out.push(':');
                    if !v.write(out, sorted) {
                        return false;
                    }
                }
                out.push('}');
            }
        }
        true
    }
}

/// `s` as `JSON.stringify` writes a string (well-formed: a Rust string holds no lone surrogate).
pub fn write_string(out: &mut String, s: &str) {
    out.push('"');
    let mut start = 0;
    for (i, c) in s.char_indices() {
        let esc: Option<&str> = match c {
            '"' => Some("\\\""),
            '\\' => Some("\\\\"),
            '\u{8}' => Some("\\b"),
            '\u{c}' => Some("\\f"),
            '\n' => Some("\\n"),
            '\r' => Some("\\r"),
            '\t' => Some("\\t"),
            c if c < ' ' => None,
            _ => continue,
        };
        out.push_str(s.get(start..i).unwrap_or_default());
        match esc {
            Some(e) => out.push_str(e),
            None => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
        }
        start = i + c.len_utf8();
    }
    out.push_str(s.get(start..).unwrap_or_default());
    out.push('"');
}

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

/// Objects with more members than this index their keys in a map while they are parsed (a repeated
/// key must find its first place); smaller ones search the members.
const INDEX_FROM: usize = 16;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }

    fn visit_bool<E: de::Error>(self, b: bool) -> Result<Json, E> {
        Ok(Json::Bool(b))
    }

    // An integer beyond 2^53 rounds to the nearest double, as `JSON.parse` reads its digits.
    #[allow(clippy::cast_precision_loss)]
    fn visit_u64<E: de::Error>(self, n: u64) -> Result<Json, E> {
        Ok(Json::Num(n as f64))
    }

    #[allow(clippy::cast_precision_loss)]
    fn visit_i64<E: de::Error>(self, n: i64) -> Result<Json, E> {
        Ok(Json::Num(n as f64))
    }

    fn visit_f64<E: de::Error>(self, x: f64) -> Result<Json, E> {
        if x.is_finite() {
            Ok(Json::Num(x))
        } else {
            Err(E::custom("number out of range"))
        }
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Json, E> {
        Ok(Json::Str(s.to_owned()))
    }

    fn visit_string<E: de::Error>(self, s: String) -> Result<Json, E> {
        Ok(Json::Str(s))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
        let mut items = Vec::new();
        while let Some(v) = seq.next_element()? {
            items.push(v);
        }
        Ok(Json::Arr(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
        let mut members: Vec<(String, Json)> = Vec::new();
        let mut index: Option<HashMap<String, usize>> = None;
        while let Some(key) = map.next_key::<String>()? {
            let value: Json = map.next_value()?;
            let at = match index.as_ref() {
                Some(ix) => ix.get(&key).copied(),
                None => members.iter().position(|(k, _)| *k == key),
            };
            if let Some(slot) = at.and_then(|i| members.get_mut(i)) {
                slot.1 = value;
                continue;
            }
            if let Some(ix) = index.as_mut() {
                ix.insert(key.clone(), members.len());
            }
            members.push((key, value));
            if index.is_none() && members.len() > INDEX_FROM {
                index = Some(
                    members
                        .iter()
                        .enumerate()
                        .map(|(i, (k, _))| (k.clone(), i))
                        .collect(),
                );
            }
        }
        Ok(Json::Obj(members))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn canon(text: &str) -> String {
        Json::parse(text).unwrap().canonical().unwrap()
    }

    #[test]
    fn numbers_as_ecmascript_writes_them() {
        for (text, want) in [
            ("1.0", "1"),
            ("-0", "0"),
            ("-0.0", "0"),
            ("1e21", "1e+21"),
            ("1e20", "100000000000000000000"),
            ("1e-7", "1e-7"),
            ("0.000001", "0.000001"),
            ("0.1", "0.1"),
            ("123456789012345678901", "123456789012345680000"),
            ("9007199254740993", "9007199254740992"),
            ("18446744073709551615", "18446744073709552000"),
            ("-9223372036854775808", "-9223372036854776000"),
            ("5e-324", "5e-324"),
            ("1.7976931348623157e308", "1.7976931348623157e+308"),
            // Needs a correctly rounded parse (float_roundtrip): the decimal lies next to a midpoint.
            ("0.30000000000000004441", "0.30000000000000004"),
            ("2.2250738585072011e-308", "2.225073858507201e-308"),
        ] {
            assert_eq!(canon(text), want, "{text}");
        }
        for text in ["-0", "-0.0", "-0e5"] {
            assert_eq!(
                Json::parse(text).unwrap().ordered().unwrap(),
                "-0",
                "{text}"
            );
        }
        assert!(Json::parse("1e400").is_none());
        assert!(Json::parse("-1e400").is_none());
    }

    #[test]
    fn strings_as_json_stringify_writes_them() {
        let s = "\"\\\u{8}\u{c}\n\r\t\u{0}\u{1f}\u{7f}\u{2028}é😀/";
        let text = Json::Str(s.to_owned()).canonical().unwrap();
        assert_eq!(
            text,
            "\"\\\"\\\\\\b\\f\\n\\r\\t\\u0000\\u001f\u{7f}\u{2028}é😀/\""
        );
        assert_eq!(Json::parse(&text).unwrap(), Json::Str(s.to_owned()));
        // A lone surrogate: JSON.parse keeps it, a Rust string cannot; refused (the caller falls back).
        assert!(Json::parse("\"\\ud800\"").is_none());
        assert_eq!(canon("\"\\ud83d\\ude00\""), "\"😀\"");
    }

    #[test]
    fn keys_sort_by_utf16_and_repeated_keys_keep_their_first_place() {
        // U+E000 sorts after a surrogate pair (0xD83D…) in UTF-16, before it in UTF-8.
        let text =
            "{\"\u{e000}\":1,\"😀\":2,\"b\":[true,false,null],\"a\":{\"y\":1,\"x\":2},\"\":0}";
        assert_eq!(
            canon(text),
            "{\"\":0,\"a\":{\"x\":2,\"y\":1},\"b\":[true,false,null],\"😀\":2,\"\u{e000}\":1}"
        );
        let v = Json::parse("{\"b\":1,\"a\":2,\"b\":3}").unwrap();
        assert_eq!(v.ordered().unwrap(), "{\"b\":3,\"a\":2}");
        // The same past the size where keys are indexed.
        let many: Vec<String> = (0..40).map(|i| format!("\"k{i}\":{i}")).collect();
        let text = format!("{{{},\"k3\":\"x\",\"k30\":\"y\"}}", many.join(","));
        let v = Json::parse(&text).unwrap();
        let Json::Obj(m) = &v else { panic!() };
        assert_eq!(m.len(), 40);
        assert_eq!(m[3], ("k3".to_owned(), Json::Str("x".into())));
        assert_eq!(m[30], ("k30".to_owned(), Json::Str("y".into())));
    }

    #[test]
    fn safe_integers_only() {
        for (text, want) in [
            ("4096", Some(4096)),
            ("4096.0", Some(4096)),
            ("1e3", Some(1000)),
            ("9007199254740991", Some(9_007_199_254_740_991)),
            ("9007199254740992", None),
            ("-1", None),
            ("1.5", None),
            ("\"1\"", None),
        ] {
            assert_eq!(Json::parse(text).unwrap().as_safe_u64(), want, "{text}");
        }
    }
}
