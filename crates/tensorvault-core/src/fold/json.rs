//! A lossless JSON model with Python's rules (contract §7): integers of any size kept exact, the
//! int/float distinction kept, `NaN` / `Infinity` / `-Infinity` tokens, and the three text forms
//! `PyFolds` hashes (Form I, Form H, Form L) re-emitted byte for byte, floats in Python's shortest repr.
//!
//! Stricter than Python on purpose: duplicate keys, lone surrogates and nesting deeper than
//! [`MAX_DEPTH`] are refused (`PyFolds` never writes them; they only make a file ambiguous).

use std::fmt::Write as _;

/// Deepest nesting accepted.
pub const MAX_DEPTH: usize = 128;

/// A parsed JSON value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    /// An integer, as its canonical decimal text (`-` sign, no leading zeros, `0` never negative).
    Int(String),
    /// A float (may be non-finite).
    Float(f64),
    Str(String),
    Array(Vec<Value>),
    /// Key/value pairs in document order, keys unique.
    Object(Vec<(String, Value)>),
}

/// Why a JSON text was refused: a reason and the byte offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonError {
    pub offset: usize,
    pub reason: &'static str,
}

impl std::fmt::Display for JsonError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} at byte {}", self.reason, self.offset)
    }
}

/// The text forms of contract §7.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// Insertion order, raw UTF-8 (the index, JSON chunks).
    I,
    /// Sorted keys, ASCII-escaped (hash text).
    H,
    /// Sorted keys, raw UTF-8 (Merkle leaves, the metadata signature payload).
    L,
    /// Standard JSON for JavaScript: insertion order, raw UTF-8, integers beyond ±2^53 as
    /// `{"$int":"…"}` and non-finite floats as `{"$float":"NaN"|"Infinity"|"-Infinity"}`.
    Js,
}

impl Value {
    /// The member `key` of an object (the only one: keys are unique).
    #[must_use]
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Object(m) => m.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The string, if this is one.
    #[must_use]
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// A non-negative integer that fits `u64`.
    #[must_use]
    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Value::Int(s) => s.parse().ok(),
            _ => None,
        }
    }

    /// The object's members.
    #[must_use]
    pub fn as_object(&self) -> Option<&[(String, Value)]> {
        match self {
            Value::Object(m) => Some(m),
            _ => None,
        }
    }

    /// A copy of this object without the members named in `drop`.
    #[must_use]
    pub fn without(&self, drop: &[&str]) -> Value {
        match self {
            Value::Object(m) => Value::Object(
                m.iter()
                    .filter(|(k, _)| !drop.contains(&k.as_str()))
                    .cloned()
                    .collect(),
            ),
            other => other.clone(),
        }
    }

    /// The text of this value in `form`.
    #[must_use]
    pub fn to_text(&self, form: Form) -> String {
        let mut out = String::new();
        emit(self, form, &mut out);
        out
    }
}

/// Parse `text` (one value, surrounding whitespace allowed).
pub fn parse(text: &str) -> Result<Value, JsonError> {
    let mut p = Parser {
        b: text.as_bytes(),
        s: text,
        i: 0,
    };
    p.ws();
    let v = p.value(0)?;
    p.ws();
    if p.i != p.b.len() {
        return Err(p.err("trailing characters after the JSON value"));
    }
    Ok(v)
}

struct Parser<'a> {
    b: &'a [u8],
    s: &'a str,
    i: usize,
}

impl Parser<'_> {
    fn err(&self, reason: &'static str) -> JsonError {
        JsonError {
            offset: self.i,
            reason,
        }
    }
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }
    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }
    fn lit(&mut self, word: &str) -> bool {
        if self.s.get(self.i..).is_some_and(|r| r.starts_with(word)) {
            self.i += word.len();
            true
        } else {
            false
        }
    }

    fn value(&mut self, depth: usize) -> Result<Value, JsonError> {
        if depth > MAX_DEPTH {
            return Err(self.err("JSON nested too deeply"));
        }
        match self.peek() {
            None => Err(self.err("unexpected end of JSON")),
            Some(b'{') => self.object(depth),
            Some(b'[') => self.array(depth),
            Some(b'"') => self.string().map(Value::Str),
            Some(b't') if self.lit("true") => Ok(Value::Bool(true)),
            Some(b'f') if self.lit("false") => Ok(Value::Bool(false)),
            Some(b'n') if self.lit("null") => Ok(Value::Null),
            Some(b'N') if self.lit("NaN") => Ok(Value::Float(f64::NAN)),
            Some(b'I') if self.lit("Infinity") => Ok(Value::Float(f64::INFINITY)),
            Some(b'-') if self.lit("-Infinity") => Ok(Value::Float(f64::NEG_INFINITY)),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(_) => Err(self.err("unexpected character in JSON")),
        }
    }

    fn object(&mut self, depth: usize) -> Result<Value, JsonError> {
        self.i += 1;
        let mut members: Vec<(String, Value)> = Vec::new();
        self.ws();
        if self.peek() == Some(b'}') {
            self.i += 1;
            return Ok(Value::Object(members));
        }
        loop {
            self.ws();
            if self.peek() != Some(b'"') {
                return Err(self.err("expected a string key"));
            }
            let at = self.i;
            let key = self.string()?;
            self.ws();
            if self.peek() != Some(b':') {
                return Err(self.err("expected ':'"));
            }
            self.i += 1;
            self.ws();
            let v = self.value(depth + 1)?;
            if members.iter().any(|(k, _)| *k == key) {
                return Err(JsonError {
                    offset: at,
                    reason: "duplicate key in a JSON object",
                });
            }
            members.push((key, v));
            self.ws();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b'}') => {
                    self.i += 1;
                    return Ok(Value::Object(members));
                }
                _ => return Err(self.err("expected ',' or '}'")),
            }
        }
    }

    fn array(&mut self, depth: usize) -> Result<Value, JsonError> {
        self.i += 1;
        let mut items = Vec::new();
        self.ws();
        if self.peek() == Some(b']') {
            self.i += 1;
            return Ok(Value::Array(items));
        }
        loop {
            self.ws();
            items.push(self.value(depth + 1)?);
            self.ws();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b']') => {
                    self.i += 1;
                    return Ok(Value::Array(items));
                }
                _ => return Err(self.err("expected ',' or ']'")),
            }
        }
    }

    fn hex4(&mut self) -> Result<u32, JsonError> {
        let h = self
            .s
            .get(self.i..self.i + 4)
            .filter(|h| h.bytes().all(|c| c.is_ascii_hexdigit()))
            .ok_or_else(|| self.err("bad \\u escape"))?;
        let v = u32::from_str_radix(h, 16).map_err(|_| self.err("bad \\u escape"))?;
        self.i += 4;
        Ok(v)
    }

    fn string(&mut self) -> Result<String, JsonError> {
        self.i += 1;
        let mut out = String::new();
        loop {
            let start = self.i;
            while let Some(c) = self.peek() {
                if c == b'"' || c == b'\\' || c < 0x20 {
                    break;
                }
                self.i += 1;
            }
            out.push_str(self.s.get(start..self.i).unwrap_or_default());
            match self.peek() {
                None => return Err(self.err("unterminated string")),
                Some(b'"') => {
                    self.i += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.i += 1;
                    let e = self.peek().ok_or_else(|| self.err("unterminated string"))?;
                    self.i += 1;
                    match e {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => {
                            let hi = self.hex4()?;
                            let cp = if (0xD800..0xDC00).contains(&hi) {
                                if !self.lit("\\u") {
                                    return Err(self.err("lone surrogate in a string"));
                                }
                                let lo = self.hex4()?;
                                if !(0xDC00..0xE000).contains(&lo) {
                                    return Err(self.err("lone surrogate in a string"));
                                }
                                0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                            } else if (0xDC00..0xE000).contains(&hi) {
                                return Err(self.err("lone surrogate in a string"));
                            } else {
                                hi
                            };
                            out.push(char::from_u32(cp).ok_or_else(|| self.err("bad \\u escape"))?);
                        }
                        _ => return Err(self.err("bad escape in a string")),
                    }
                }
                Some(_) => return Err(self.err("control character in a string")),
            }
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.i;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.i += 1;
        }
        self.i - start
    }

    fn number(&mut self) -> Result<Value, JsonError> {
        let start = self.i;
        let neg = self.peek() == Some(b'-');
        if neg {
            self.i += 1;
        }
        let int_start = self.i;
        let n = self.digits();
        if n == 0 {
            return Err(self.err("bad number"));
        }
        if n > 1 && self.b.get(int_start) == Some(&b'0') {
            return Err(self.err("leading zero in a number"));
        }
        let mut float = false;
        if self.peek() == Some(b'.') {
            self.i += 1;
            if self.digits() == 0 {
                return Err(self.err("bad number"));
            }
            float = true;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.i += 1;
            }
            if self.digits() == 0 {
                return Err(self.err("bad number"));
            }
            float = true;
        }
        let text = self.s.get(start..self.i).unwrap_or_default();
        if float {
            let f: f64 = text.parse().map_err(|_| self.err("bad number"))?;
            return Ok(Value::Float(f));
        }
        let digits = self.s.get(int_start..self.i).unwrap_or_default();
        if digits.len() > 4300 {
            // Python's own limit on int ↔ text conversion.
            return Err(self.err("integer with more than 4300 digits"));
        }
        Ok(Value::Int(if neg && digits != "0" {
            format!("-{digits}")
        } else {
            digits.to_string()
        }))
    }
}

/// Python's `repr(float)`: shortest round-trip digits; fixed notation for decimal exponents −4..15,
/// otherwise `d.ddde±XX`; `NaN`, `Infinity`, `-Infinity` as JSON tokens.
#[must_use]
pub fn py_float(x: f64) -> String {
    if x.is_nan() {
        return "NaN".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    // `{:e}` is the shortest round-trip mantissa: "1.2345e-7", "-0e0".
    let sci = format!("{x:e}");
    let (mant, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (sign, mant) = mant.strip_prefix('-').map_or(("", mant), |m| ("-", m));
    let digits: String = mant.chars().filter(char::is_ascii_digit).collect();
    let nd = i32::try_from(digits.len()).unwrap_or(i32::MAX);
    let mut out = String::from(sign);
    if (-4..16).contains(&exp) {
        if exp < 0 {
            out.push_str("0.");
            for _ in 0..(-exp - 1) {
                out.push('0');
            }
            out.push_str(&digits);
        } else if nd > exp + 1 {
            let cut = usize::try_from(exp + 1).unwrap_or(0);
            out.push_str(digits.get(..cut).unwrap_or_default());
            out.push('.');
            out.push_str(digits.get(cut..).unwrap_or_default());
        } else {
            out.push_str(&digits);
            for _ in 0..(exp + 1 - nd) {
                out.push('0');
            }
            out.push_str(".0");
        }
    } else {
        out.push_str(digits.get(..1).unwrap_or_default());
        if digits.len() > 1 {
            out.push('.');
            out.push_str(digits.get(1..).unwrap_or_default());
        }
        let _ = write!(out, "e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs());
    }
    out
}

/// A string literal in `form` (Python's `json` escaping, `ensure_ascii` for Form H).
pub fn emit_str(s: &str, form: Form, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\u{c}' => out.push_str("\\f"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c if form == Form::H && !(' '..='~').contains(&c) => {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{u:04x}");
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Integers a JS number holds exactly.
fn js_safe(int: &str) -> bool {
    int.parse::<i64>()
        .is_ok_and(|n| n.unsigned_abs() <= 9_007_199_254_740_991)
}

fn emit(v: &Value, form: Form, out: &mut String) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Int(s) if form == Form::Js && !js_safe(s) => {
            out.push_str("{\"$int\":\"");
            out.push_str(s);
            out.push_str("\"}");
        }
        Value::Int(s) => out.push_str(s),
        Value::Float(f) if form == Form::Js && !f.is_finite() => {
            out.push_str("{\"$float\":\"");
            out.push_str(&py_float(*f));
            out.push_str("\"}");
        }
        Value::Float(f) => out.push_str(&py_float(*f)),
        Value::Str(s) => emit_str(s, form, out),
        Value::Array(items) => {
            out.push('[');
            for (i, x) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                emit(x, form, out);
            }
            out.push(']');
        }
        // A caller's own object that looks like one of the Js form's tags is wrapped, so that
        // JavaScript can tell them apart: `{"$obj":{…}}`.
        Value::Object(m)
            if form == Form::Js
                && matches!(m.as_slice(), [(k, _)] if k == "$int" || k == "$float" || k == "$obj") =>
        {
            out.push_str("{\"$obj\":");
            emit_object(m, form, out);
            out.push('}');
        }
        Value::Object(m) => emit_object(m, form, out),
    }
}

fn emit_object(m: &[(String, Value)], form: Form, out: &mut String) {
    let mut refs: Vec<&(String, Value)> = m.iter().collect();
    if matches!(form, Form::H | Form::L) {
        // Rust `str` order is UTF-8 byte order, which is code-point order (contract §7).
        refs.sort_by(|a, b| a.0.cmp(&b.0));
    }
    out.push('{');
    for (i, (k, x)) in refs.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        emit_str(k, form, out);
        out.push(':');
        emit(x, form, out);
    }
    out.push('}');
}

#[cfg(test)]
#[allow(clippy::unreadable_literal)]
mod tests {
    use super::*;

    #[test]
    fn python_float_repr() {
        let cases = [
            (0.1, "0.1"),
            (1.0, "1.0"),
            (-0.0, "-0.0"),
            (123_456_789.125, "123456789.125"),
            (0.0001, "0.0001"),
            (1e-5, "1e-05"),
            (1e16, "1e+16"),
            (1e15, "1000000000000000.0"),
            (1.5e300, "1.5e+300"),
            (1796208784.6789243, "1796208784.6789243"),
            (0.10000000149011612, "0.10000000149011612"),
            (5e-324, "5e-324"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
            (12345.0, "12345.0"),
            (-2.5e-7, "-2.5e-07"),
        ];
        for (x, want) in cases {
            assert_eq!(py_float(x), want, "{x:e}");
        }
    }

    #[test]
    fn form_h_known_answer() {
        let v = parse(r#"{"b":[1.0,1e-05,1e+16],"a":"ação 🧠","c":{"z":null,"y":true}}"#).unwrap();
        assert_eq!(
            v.to_text(Form::H),
            r#"{"a":"a\u00e7\u00e3o \ud83e\udde0","b":[1.0,1e-05,1e+16],"c":{"y":true,"z":null}}"#
        );
        assert_eq!(
            v.to_text(Form::I),
            r#"{"b":[1.0,1e-05,1e+16],"a":"ação 🧠","c":{"z":null,"y":true}}"#
        );
    }

    #[test]
    fn exact_integers_tokens_and_escapes() {
        let t = "[18446744073709551615,-0,NaN,Infinity,-Infinity,\"\\u007f\u{2028}\\t/\\/\"]";
        let v = parse(t).unwrap();
        assert_eq!(
            v.to_text(Form::I),
            "[18446744073709551615,0,NaN,Infinity,-Infinity,\"\u{7f}\u{2028}\\t//\"]"
        );
        assert_eq!(
            v.to_text(Form::H),
            "[18446744073709551615,0,NaN,Infinity,-Infinity,\"\\u007f\\u2028\\t//\"]"
        );
        assert_eq!(
            parse(r#"[{"$int":"1"},{"$obj":2},{"$int":"1","b":2}]"#)
                .unwrap()
                .to_text(Form::Js),
            r#"[{"$obj":{"$int":"1"}},{"$obj":{"$obj":2}},{"$int":"1","b":2}]"#
        );
        assert_eq!(
            v.to_text(Form::Js),
            "[{\"$int\":\"18446744073709551615\"},0,{\"$float\":\"NaN\"},{\"$float\":\"Infinity\"},{\"$float\":\"-Infinity\"},\"\u{7f}\u{2028}\\t//\"]"
        );
    }

    #[test]
    fn refuses_ambiguous_or_malformed_text() {
        for bad in [
            r#"{"a":1,"a":2}"#,
            "\"\\ud800\"",
            "01",
            "[1,]",
            "{\"a\":1} x",
            "\"a\u{1}\"",
            "1.",
            "-",
            "",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        let deep = "[".repeat(MAX_DEPTH + 2);
        assert!(parse(&deep).is_err());
    }
}
