//! Header validation: one named test per attack, a proptest "fuzz" over random bytes and mutated
//! valid headers, and writer → reader round trips.

use std::collections::BTreeMap;

use proptest::prelude::*;
use tensorvault_core::safetensors::{
    layout, Dtype, Header, SafetensorsError as E, SafetensorsFile, SafetensorsWriter, TensorSpec,
};

/// A file made of `json` (padded to 8) followed by `data_len` zero bytes.
fn file(json: &str, data_len: usize) -> Vec<u8> {
    let mut j = json.as_bytes().to_vec();
    while !j.len().is_multiple_of(8) {
        j.push(b' ');
    }
    let mut out = (j.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&j);
    out.extend(vec![0u8; data_len]);
    out
}

fn parse(bytes: &[u8]) -> Result<Header, E> {
    Header::parse(bytes, bytes.len() as u64)
}

const ONE: &str = r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#;

/// What a parse means: the metadata and every tensor in offset order (each also found by name), or
/// the error's message.
type Meaning = Result<
    (
        Option<BTreeMap<String, String>>,
        Vec<(String, Dtype, Vec<u64>, u64, u64)>,
        u64,
    ),
    String,
>;

fn meaning(r: Result<Header, E>) -> Meaning {
    let h = r.map_err(|e| e.to_string())?;
    let tensors = h
        .tensors()
        .map(|t| {
            assert_eq!(h.get(t.name), Some(t), "the index finds {:?}", t.name);
            (
                t.name.to_string(),
                t.dtype,
                t.shape.to_vec(),
                t.start,
                t.end,
            )
        })
        .collect();
    Ok((h.metadata().cloned(), tensors, h.header_len()))
}

/// The fast path (what `parse` does) against serde alone (`parse_reference`): the same meaning.
fn agrees(bytes: &[u8]) -> Meaning {
    let fast = meaning(Header::parse(bytes, bytes.len() as u64));
    let reference = meaning(Header::parse_reference(bytes, bytes.len() as u64));
    assert_eq!(
        fast,
        reference,
        "fast path and serde differ on {:?}",
        String::from_utf8_lossy(bytes)
    );
    fast
}

#[test]
fn fast_path_agrees_with_serde() {
    let e = r#""dtype":"F32","shape":[2],"data_offsets":"#;
    // (header text, data bytes, whether the fast path must take it)
    let cases: Vec<(String, usize, bool)> = vec![
        (ONE.into(), 8, true),
        ("{}".into(), 0, true),
        (" \t\n{ } \r\n".into(), 0, true),
        (format!(r#"{{"__metadata__":{{"format":"pt","b":"é"}},"a":{{{e}[0,8]}}}}"#), 8, true),
        (r#"{ "a" : { "shape" : [ 2 ] , "data_offsets" : [ 0 , 8 ] , "dtype" : "F32" } }"#.to_string(), 8, true),
        // listed out of offset order: sorted, found by name
        (format!(r#"{{"b":{{{e}[8,16]}},"a":{{{e}[0,8]}}}}"#), 16, true),
        (r#"{"s":{"dtype":"U8","shape":[],"data_offsets":[0,1]},"z":{"dtype":"U8","shape":[0],"data_offsets":[1,1]}}"#.into(), 1, true),
        ("{\"\u{1F600}\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}".into(), 1, true),
        // as the writers write it (read by literals), and near misses of that form that the general
        // reader still takes or that both refuse
        (r#"{"a.long.name.over.8":{"dtype":"BF16","shape":[2,2],"data_offsets":[0,8]}}"#.into(), 8, true),
        (r#"{"a":{"dtype":"F32","shape":[2] ,"data_offsets":[0,8]}}"#.into(), 8, true),
        (r#"{"a":{"dtype":"F32","data_offsets":[0,8],"shape":[2]}}"#.into(), 8, true),
        (r#"{"a":{"dtype":"F32","shape":[],"data_offsets":[0,4]}}"#.into(), 4, true),
        (r#"{"a":{"dtype":"F32","shape":[2,],"data_offsets":[0,8]}}"#.into(), 8, false),
        (r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8,]}}"#.into(), 8, false),
        (r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},}"#.into(), 8, false),
        (r#"{"a":{"dtype":"F8_E4M3X","shape":[2],"data_offsets":[0,2]}}"#.into(), 2, false),
        ("{\"abcdefghij\u{1}k\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}".into(), 1, false),
        ("{\"abcdefghijé\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}".into(), 1, true),
        // not taken: escapes, unknown fields, number forms, duplicates, metadata forms, errors
        (format!(r#"{{"\u0061":{{{e}[0,8]}}}}"#), 8, false),
        (format!(r#"{{"a\"b":{{{e}[0,8]}}}}"#), 8, false),
        (r#"{"a":{"dtype":"F\u0033\u0032","shape":[2],"data_offsets":[0,8]}}"#.into(), 8, false),
        (format!(r#"{{"a":{{{e}[0,8],"extra":{{"x":[1,2]}}}}}}"#), 8, false),
        (r#"{"a":{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]}}"#.into(), 8, false),
        (r#"{"a":{"dtype":"F32","shape":[2e0],"data_offsets":[0,8]}}"#.into(), 8, false),
        (r#"{"a":{"dtype":"F32","shape":[02],"data_offsets":[0,8]}}"#.into(), 8, false),
        (r#"{"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}"#.into(), 8, false),
        (r#"{"a":{"dtype":"F32","shape":[18446744073709551616],"data_offsets":[0,8]}}"#.into(), 8, false),
        (r#"{"a":{"dtype":"F32","shape":[18446744073709551615],"data_offsets":[0,8]}}"#.into(), 8, true),
        // the digit sum: 19 digits unchecked, a 20th checked, 21 left to serde
        (r#"{"a":{"dtype":"F32","shape":[9999999999999999999],"data_offsets":[0,8]}}"#.into(), 8, true),
        (r#"{"a":{"dtype":"F32","shape":[10000000000000000000],"data_offsets":[0,8]}}"#.into(), 8, true),
        (r#"{"a":{"dtype":"F32","shape":[99999999999999999999],"data_offsets":[0,8]}}"#.into(), 8, false),
        (r#"{"a":{"dtype":"F32","shape":[100000000000000000000],"data_offsets":[0,8]}}"#.into(), 8, false),
        (r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,18446744073709551615]}}"#.into(), 8, true),
        (r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0]}}"#.into(), 8, false),
        (r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[]}}"#.into(), 8, false),
        (r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0 8]}}"#.into(), 8, false),
        (r#"{"a":{"dtype":"F33","shape":[2],"data_offsets":[0,8]}}"#.into(), 8, false),
        (r#"{"a":{"dtype":"F32","dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#.into(), 8, false),
        (r#"{"a":{"dtype":"F32","shape":[2]}}"#.into(), 8, false),
        (r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8,9]}}"#.into(), 8, false),
        (format!(r#"{{"a":{{{e}[0,8]}},"a":{{{e}[0,8]}}}}"#), 8, false),
        (format!(r#"{{"__metadata__":{{}},"__metadata__":{{}},"a":{{{e}[0,8]}}}}"#), 8, false),
        (format!(r#"{{"__metadata__":{{"k":"v","k":"w"}},"a":{{{e}[0,8]}}}}"#), 8, false),
        (format!(r#"{{"__metadata__":{{"k":1}},"a":{{{e}[0,8]}}}}"#), 8, false),
        (format!(r#"{{"__metadata__":null,"a":{{{e}[0,8]}}}}"#), 8, false),
        (format!(r#"{{"a":{{{e}[0,8]}},}}"#), 8, false),
        (format!(r#"{{"a":{{{e}[0,8]}}}} x"#), 8, false),
        ("{\"a\u{1}\":{}}".into(), 0, false),
        ("[]".into(), 0, false),
        (String::new(), 0, false),
        // taken, then refused by validation exactly as serde's result is
        (format!(r#"{{"a":{{{e}[0,8]}},"b":{{{e}[9,17]}}}}"#), 17, true),
        (format!(r#"{{"a":{{{e}[0,8]}},"b":{{{e}[4,12]}}}}"#), 12, true),
        (format!(r#"{{"a":{{{e}[8,0]}}}}"#), 8, true),
        (format!(r#"{{"a":{{{e}[0,4]}}}}"#), 4, true),
        (format!(r#"{{"a":{{{e}[0,8]}}}}"#), 9, true),
    ];
    for (json, data, takes) in cases {
        assert_eq!(Header::takes_fast_path(json.as_bytes()), takes, "{json}");
        let _ = agrees(&file(&json, data));
    }
    // What the writer produces is read by the fast path, and means the same.
    let specs: Vec<_> = (0..50)
        .map(|i| TensorSpec {
            name: format!("model.layers.{i}.mlp.weight"),
            dtype: if i % 2 == 0 { Dtype::BF16 } else { Dtype::F32 },
            shape: vec![4, u64::try_from(i).unwrap() + 1],
        })
        .collect();
    let mut meta = BTreeMap::new();
    meta.insert("format".to_string(), "pt".to_string());
    let l = layout(specs, Some(&meta)).unwrap();
    let json_len = usize::try_from(u64::from_le_bytes(l.header[..8].try_into().unwrap())).unwrap();
    assert!(Header::takes_fast_path(&l.header[8..8 + json_len]));
    let mut bytes = l.header.clone();
    bytes.extend(vec![0u8; usize::try_from(l.data_len()).unwrap()]);
    assert!(agrees(&bytes).is_ok());
}

#[test]
fn valid_file_parses() {
    let h = parse(&file(ONE, 8)).unwrap();
    assert_eq!(h.tensors().len(), 1);
    let t = h.get("a").unwrap();
    assert_eq!(
        (t.dtype, t.shape, t.start, t.end),
        (Dtype::F32, &[2u64][..], 0, 8)
    );
    assert!(h.metadata().is_none());
}

#[test]
fn attack_file_shorter_than_8_bytes() {
    assert!(matches!(
        parse(&[1, 2, 3]),
        Err(E::HeaderTooSmall { file_len: 3 })
    ));
    assert!(matches!(parse(&[]), Err(E::HeaderTooSmall { file_len: 0 })));
}

#[test]
fn attack_header_length_larger_than_100mb() {
    let mut b = (100_000_001u64).to_le_bytes().to_vec();
    b.extend_from_slice(b"{}");
    assert!(matches!(
        parse(&b),
        Err(E::HeaderTooLarge {
            header_len: 100_000_001,
            max: 100_000_000
        })
    ));
    let b = u64::MAX.to_le_bytes();
    assert!(matches!(parse(&b), Err(E::HeaderTooLarge { .. })));
}

#[test]
fn attack_header_length_larger_than_the_file() {
    let mut b = 64u64.to_le_bytes().to_vec();
    b.extend_from_slice(b"{}      ");
    assert!(matches!(
        parse(&b),
        Err(E::HeaderPastEnd {
            header_len: 64,
            file_len: 16
        })
    ));
}

#[test]
fn attack_non_utf8_header() {
    let mut b = 8u64.to_le_bytes().to_vec();
    b.extend_from_slice(b"{\"\xff\":1}  ");
    assert!(matches!(parse(&b), Err(E::HeaderNotUtf8 { offset: 2 })));
}

#[test]
fn attack_invalid_json() {
    assert!(matches!(
        parse(&file("{\"a\":", 0)),
        Err(E::HeaderNotJson { line: 1, .. })
    ));
    assert!(matches!(
        parse(&file("{} {}", 0)),
        Err(E::HeaderNotJson { .. })
    ));
}

#[test]
fn attack_non_object_json() {
    for j in ["[]", "\"x\"", "42", "null", "true"] {
        assert!(
            matches!(parse(&file(j, 0)), Err(E::HeaderNotObject { .. })),
            "{j}"
        );
    }
}

#[test]
fn attack_metadata_not_a_string_map() {
    for j in [
        r#"{"__metadata__":{"k":1}}"#,
        r#"{"__metadata__":{"k":null}}"#,
        r#"{"__metadata__":{"k":{"x":"y"}}}"#,
        r#"{"__metadata__":["a"]}"#,
        r#"{"__metadata__":"a"}"#,
        r#"{"__metadata__":1}"#,
        r#"{"__metadata__":true}"#,
    ] {
        assert!(
            matches!(parse(&file(j, 0)), Err(E::MetadataNotStringMap { .. })),
            "{j}"
        );
    }
    let h = parse(&file(r#"{"__metadata__":{"format":"pt","b":"é"}}"#, 0)).unwrap();
    let m = h.metadata().unwrap();
    assert_eq!(m.get("format").map(String::as_str), Some("pt"));
}

/// Regression (QA, 2026-12-05): `"__metadata__": null` was refused as `MetadataNotStringMap`; the
/// reference (`safetensors` 0.8, whose field is an `Option`) reads it as no metadata. A second
/// `__metadata__` key is still refused, whichever of the two is null (the reference refuses it too).
#[test]
fn metadata_null_is_no_metadata_as_in_the_reference() {
    let a = r#""a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}"#;
    for (j, n) in [
        (format!(r#"{{"__metadata__":null,{a}}}"#), 1),
        (format!(r#"{{{a}, "__metadata__" : null }}"#), 1),
        (r#"{"__metadata__":null}"#.to_string(), 0),
    ] {
        let (metadata, tensors, _) = agrees(&file(&j, n)).unwrap();
        assert_eq!(metadata, None, "{j}");
        assert_eq!(tensors.len(), n, "{j}");
    }
    for j in [
        format!(r#"{{"__metadata__":null,"__metadata__":{{"k":"v"}},{a}}}"#),
        format!(r#"{{"__metadata__":{{"k":"v"}},"__metadata__":null,{a}}}"#),
        format!(r#"{{"__metadata__":null,"__metadata__":null,{a}}}"#),
    ] {
        assert!(
            matches!(agrees(&file(&j, 1)), Err(m) if m.contains("__metadata__")),
            "{j}"
        );
        assert!(
            matches!(parse(&file(&j, 1)), Err(E::DuplicateName { .. })),
            "{j}"
        );
    }
}

#[test]
fn attack_duplicate_tensor_names() {
    let j = r#"{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}"#;
    assert!(matches!(parse(&file(j, 2)), Err(E::DuplicateName { name }) if name == "a"));
    let j = r#"{"__metadata__":{},"__metadata__":{}}"#;
    assert!(matches!(parse(&file(j, 0)), Err(E::DuplicateName { .. })));
    let j = r#"{"__metadata__":{"k":"1","k":"2"}}"#;
    assert!(
        matches!(parse(&file(j, 0)), Err(E::DuplicateName { name }) if name == "__metadata__.k")
    );
}

/// `depth` nested arrays around `inner`.
fn nested(depth: usize, inner: &str) -> String {
    format!("{}{inner}{}", "[".repeat(depth), "]".repeat(depth))
}

/// Issue 13, item 14: the JSON nesting limit (128) holds for every value in the header, including the
/// ones the parser ignores (unknown fields of a tensor entry) and `__metadata__` values: `serde_json`
/// skips ignored values without counting depth, so such a header used to be accepted.
#[test]
fn attack_deep_nesting_in_ignored_fields_is_refused() {
    let deep = nested(5_000, "1");
    let cases = [
        format!(r#"{{"a":{{"dtype":"U8","shape":[1],"data_offsets":[0,1],"x":{deep}}}}}"#),
        format!(r#"{{"a":{{"x":{deep},"dtype":"U8","shape":[1],"data_offsets":[0,1]}}}}"#),
        format!(
            r#"{{"__metadata__":{{"k":{deep}}},"a":{{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}}}"#
        ),
        format!(r#"{{"a":{{"dtype":"U8","shape":[1],"data_offsets":[0,1],"x":{{"y":{deep}}}}}}}"#),
    ];
    for j in &cases {
        assert!(
            matches!(parse(&file(j, 1)), Err(E::HeaderNotJson { .. })),
            "{}",
            &j[..60]
        );
    }
    // Objects count as well as arrays.
    let objs = format!("{}1{}", r#"{"k":"#.repeat(300), "}".repeat(300));
    let j = format!(r#"{{"a":{{"dtype":"U8","shape":[1],"data_offsets":[0,1],"x":{objs}}}}}"#);
    assert!(matches!(parse(&file(&j, 1)), Err(E::HeaderNotJson { .. })));
    // Within the limit, ignored values are still ignored (the entry is depth 2, its field 3).
    let j = format!(
        r#"{{"a":{{"dtype":"U8","shape":[1],"data_offsets":[0,1],"x":{}}}}}"#,
        nested(120, r#"{"k":null}"#)
    );
    assert_eq!(parse(&file(&j, 1)).unwrap().tensors().len(), 1);
    // A deeply nested non-object header is refused as JSON too, not walked without a limit.
    assert!(matches!(
        parse(&file(&nested(5_000, "1"), 0)),
        Err(E::HeaderNotJson { .. })
    ));
}

#[test]
fn attack_unknown_dtype() {
    let j = r#"{"a":{"dtype":"F128","shape":[1],"data_offsets":[0,16]}}"#;
    assert!(
        matches!(parse(&file(j, 16)), Err(E::UnknownDtype { name, dtype }) if name == "a" && dtype == "F128")
    );
}

/// Regression (QA, 2026-12-05): the reference (`safetensors` 0.8) reads `F8_E4M3FNUZ` and
/// `F8_E5M2FNUZ`; they were refused as unknown dtypes. One byte per element, through the fast path and
/// serde alike; a wrong byte count is still a size mismatch and a near miss still unknown.
#[test]
fn fnuz_float8_dtypes_are_read_as_one_byte_elements() {
    for (name, dtype) in [
        ("F8_E4M3FNUZ", Dtype::F8E4M3FNUZ),
        ("F8_E5M2FNUZ", Dtype::F8E5M2FNUZ),
    ] {
        for j in [
            format!(r#"{{"a":{{"dtype":"{name}","shape":[2,3],"data_offsets":[0,6]}}}}"#),
            format!(r#"{{ "a" : {{ "shape":[2,3], "dtype" : "{name}", "data_offsets":[0,6] }} }}"#),
        ] {
            let m = agrees(&file(&j, 6)).unwrap();
            assert_eq!(m.1, vec![("a".to_string(), dtype, vec![2, 3], 0, 6)], "{j}");
        }
        let j = format!(r#"{{"a":{{"dtype":"{name}","shape":[2,3],"data_offsets":[0,12]}}}}"#);
        assert!(
            matches!(
                parse(&file(&j, 12)),
                Err(E::SizeMismatch {
                    expected: 6,
                    actual: 12,
                    ..
                })
            ),
            "{j}"
        );
        let j = format!(r#"{{"a":{{"dtype":"{name}Z","shape":[1],"data_offsets":[0,1]}}}}"#);
        assert!(
            matches!(parse(&file(&j, 1)), Err(E::UnknownDtype { .. })),
            "{j}"
        );
    }
}

#[test]
fn attack_malformed_tensor_entries() {
    for j in [
        r#"{"a":{"shape":[1],"data_offsets":[0,1]}}"#,
        r#"{"a":{"dtype":"U8","data_offsets":[0,1]}}"#,
        r#"{"a":{"dtype":"U8","shape":[1]}}"#,
        r#"{"a":{"dtype":"U8","shape":[-1],"data_offsets":[0,1]}}"#,
        r#"{"a":{"dtype":"U8","shape":[1.5],"data_offsets":[0,1]}}"#,
        r#"{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1,2]}}"#,
        r#"{"a":{"dtype":7,"shape":[1],"data_offsets":[0,1]}}"#,
        r#"{"a":[1,2]}"#,
        r#"{"a":{"dtype":"U8","dtype":"U8","shape":[1],"data_offsets":[0,1]}}"#,
    ] {
        assert!(
            matches!(parse(&file(j, 1)), Err(E::InvalidTensorEntry { ref name, .. }) if name == "a"),
            "{j}: {:?}",
            parse(&file(j, 1))
        );
    }
}

#[test]
fn attack_reversed_offsets() {
    let j = r#"{"a":{"dtype":"U8","shape":[0],"data_offsets":[4,0]}}"#;
    assert!(matches!(
        parse(&file(j, 4)),
        Err(E::OffsetsReversed {
            start: 4,
            end: 0,
            ..
        })
    ));
}

#[test]
fn attack_overlapping_offsets() {
    let j = r#"{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"b":{"dtype":"U8","shape":[4],"data_offsets":[2,6]}}"#;
    assert!(matches!(
        parse(&file(j, 6)),
        Err(E::OffsetOverlap { name, start: 2, expected: 4 }) if name == "b"
    ));
}

#[test]
fn attack_gap_between_tensors() {
    let j = r#"{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"b":{"dtype":"U8","shape":[4],"data_offsets":[8,12]}}"#;
    assert!(matches!(
        parse(&file(j, 12)),
        Err(E::OffsetGap { name, start: 8, expected: 4 }) if name == "b"
    ));
    let j = r#"{"a":{"dtype":"U8","shape":[4],"data_offsets":[4,8]}}"#;
    assert!(matches!(
        parse(&file(j, 8)),
        Err(E::OffsetGap {
            start: 4,
            expected: 0,
            ..
        })
    ));
}

#[test]
fn attack_trailing_polyglot_data() {
    let mut b = file(ONE, 8);
    b.extend_from_slice(b"<html><script>alert(1)</script></html>");
    assert!(matches!(
        parse(&b),
        Err(E::TrailingBytes {
            data_end: 8,
            trailing: 38,
            ..
        })
    ));
}

#[test]
fn attack_offsets_past_the_end() {
    let j = r#"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#;
    assert!(matches!(
        parse(&file(j, 8)),
        Err(E::DataPastEnd { name, end: 16, data_len: 8 }) if name == "a"
    ));
}

#[test]
fn attack_shape_product_overflows() {
    let j = r#"{"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}}"#;
    assert!(matches!(parse(&file(j, 8)), Err(E::ShapeOverflow { name, .. }) if name == "a"));
    // The element count fits in 64 bits but the bit count does not.
    let j = r#"{"a":{"dtype":"F64","shape":[4611686018427387904],"data_offsets":[0,8]}}"#;
    assert!(matches!(parse(&file(j, 8)), Err(E::ShapeOverflow { .. })));
}

#[test]
fn attack_size_not_matching_dtype_times_shape() {
    let j = r#"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#;
    assert!(matches!(
        parse(&file(j, 8)),
        Err(E::SizeMismatch {
            expected: 12,
            actual: 8,
            ..
        })
    ));
}

#[test]
fn attack_packed_subbyte_tensor_not_whole_bytes() {
    let j = r#"{"a":{"dtype":"F4","shape":[3],"data_offsets":[0,2]}}"#;
    assert!(matches!(
        parse(&file(j, 2)),
        Err(E::MisalignedBits {
            elements: 3,
            bits: 4,
            ..
        })
    ));
    let j = r#"{"a":{"dtype":"F4","shape":[4],"data_offsets":[0,2]}}"#;
    parse(&file(j, 2)).unwrap();
}

#[test]
fn tensors_listed_out_of_offset_order_and_unknown_fields_are_accepted() {
    let j = r#"{"b":{"dtype":"U8","shape":[2],"data_offsets":[2,4],"extra":[1,{"x":null}]},"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},"s":{"dtype":"F32","shape":[0],"data_offsets":[4,4]}}"#;
    let h = parse(&file(j, 4)).unwrap();
    let names: Vec<_> = h.tensors().map(|t| t.name).collect();
    assert_eq!(names, ["a", "b", "s"]);
}

#[test]
fn deeply_nested_json_is_refused_not_a_stack_overflow() {
    let j = format!(
        "{{\"__metadata__\":{}{}}}",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    assert!(parse(&file(&j, 0)).is_err());
}

fn spec(name: &str, dtype: Dtype, shape: &[u64]) -> TensorSpec {
    TensorSpec {
        name: name.into(),
        dtype,
        shape: shape.to_vec(),
    }
}

#[test]
fn layout_matches_the_reference_bytes() {
    // Byte-for-byte the reference crate's `test_serialization` and `test_empty` outputs.
    let l = layout(vec![spec("attn.0", Dtype::F32, &[1, 2, 3])], None).unwrap();
    assert_eq!(
        l.header,
        [
            64, 0, 0, 0, 0, 0, 0, 0, 123, 34, 97, 116, 116, 110, 46, 48, 34, 58, 123, 34, 100, 116,
            121, 112, 101, 34, 58, 34, 70, 51, 50, 34, 44, 34, 115, 104, 97, 112, 101, 34, 58, 91,
            49, 44, 50, 44, 51, 93, 44, 34, 100, 97, 116, 97, 95, 111, 102, 102, 115, 101, 116,
            115, 34, 58, 91, 48, 44, 50, 52, 93, 125, 125
        ]
    );
    let l = layout(vec![], None).unwrap();
    assert_eq!(
        l.header,
        [8, 0, 0, 0, 0, 0, 0, 0, 123, 125, 32, 32, 32, 32, 32, 32]
    );
    let meta: BTreeMap<String, String> = [("framework".to_string(), "pt".to_string())].into();
    let l = layout(vec![], Some(&meta)).unwrap();
    assert_eq!(
        &l.header[8..],
        b"{\"__metadata__\":{\"framework\":\"pt\"}}     "
    );
}

#[test]
fn layout_orders_by_dtype_descending_then_name() {
    let l = layout(
        vec![
            spec("z", Dtype::U8, &[1]),
            spec("b", Dtype::F32, &[1]),
            spec("a", Dtype::F32, &[1]),
            spec("c", Dtype::U64, &[1]),
            spec("d", Dtype::BF16, &[1]),
        ],
        None,
    )
    .unwrap();
    let names: Vec<_> = l.tensors.iter().map(|t| t.0.name.as_str()).collect();
    assert_eq!(names, ["c", "a", "b", "d", "z"]);
    assert!(matches!(
        layout(
            vec![spec("a", Dtype::U8, &[1]), spec("a", Dtype::U8, &[1])],
            None
        ),
        Err(E::DuplicateName { .. })
    ));
    assert!(matches!(
        layout(vec![spec("__metadata__", Dtype::U8, &[1])], None),
        Err(E::InvalidName { .. })
    ));
}

#[test]
fn writer_streams_and_reader_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("m.safetensors");
    let meta: BTreeMap<String, String> = [("k".to_string(), "v \"q\"\n".to_string())].into();
    let mut w = SafetensorsWriter::create(
        &p,
        vec![spec("w", Dtype::F32, &[2, 3]), spec("b", Dtype::U8, &[5])],
        Some(&meta),
    )
    .unwrap();
    let order: Vec<_> = w
        .layout()
        .tensors
        .iter()
        .map(|t| t.0.name.clone())
        .collect();
    assert_eq!(order, ["w", "b"]);
    let wdata: Vec<u8> = (0..24).collect();
    for c in wdata.chunks(5) {
        w.write(c).unwrap();
    }
    assert!(matches!(w.write(&[0; 6]), Err(E::WriteOverflow { .. })));
    w.write(&[9; 5]).unwrap();
    assert!(!p.exists(), "nothing visible before finish");
    w.finish().unwrap();
    let f = SafetensorsFile::open(&p).unwrap();
    assert_eq!(f.header().metadata(), Some(&meta));
    assert_eq!(f.tensor("w").unwrap().1, &wdata[..]);
    assert_eq!(f.tensor("b").unwrap().1, &[9; 5]);
    assert!(matches!(f.tensor("nope"), Err(E::TensorNotFound { .. })));
    assert_eq!(f.absolute_offset(&f.info("w").unwrap()) % 8, 0);
}

#[test]
fn incomplete_writer_leaves_the_old_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("m.safetensors");
    std::fs::write(&p, b"old").unwrap();
    let mut w = SafetensorsWriter::create(&p, vec![spec("w", Dtype::F32, &[2])], None).unwrap();
    w.write(&[1, 2, 3]).unwrap();
    assert!(matches!(
        w.finish(),
        Err(E::WriteIncomplete {
            expected: 8,
            actual: 3,
            ..
        })
    ));
    assert_eq!(std::fs::read(&p).unwrap(), b"old");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn file_truncated_under_an_open_reader_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("t.safetensors");
    let mut w =
        SafetensorsWriter::create(&p, vec![spec("w", Dtype::U8, &[100_000])], None).unwrap();
    w.write(&vec![7u8; 100_000]).unwrap();
    w.finish().unwrap();
    let f = SafetensorsFile::open(&p).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&p)
        .unwrap()
        .set_len(100)
        .unwrap();
    assert!(matches!(
        f.tensor("w"),
        Err(E::FileChanged { actual: 100, .. })
    ));
}

/// A file of three U8 tensors with distinct bytes and sizes that are not multiples of a page, so
/// populated ranges start and end inside pages.
#[allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation
)] // test fixture
fn three_tensors(dir: &std::path::Path) -> (std::path::PathBuf, Vec<Vec<u8>>) {
    let p = dir.join("three.safetensors");
    let sizes = [5_000_001usize, 3, 70_000];
    let specs: Vec<_> = sizes
        .iter()
        .enumerate()
        .map(|(i, &n)| spec(&format!("t{i}"), Dtype::U8, &[n as u64]))
        .collect();
    let mut w = SafetensorsWriter::create(&p, specs, None).unwrap();
    let order: Vec<String> = w
        .layout()
        .tensors
        .iter()
        .map(|t| t.0.name.clone())
        .collect();
    let mut datas = vec![Vec::new(); 3];
    for name in order {
        let i: usize = name[1..].parse().unwrap();
        let d: Vec<u8> = (0..sizes[i]).map(|j| ((j * 7 + i) % 253) as u8).collect();
        w.write(&d).unwrap();
        datas[i] = d;
    }
    w.finish().unwrap();
    (p, datas)
}

#[test]
fn populate_and_prefetch_give_the_same_bytes() {
    use tensorvault_core::io::Populated;
    let dir = tempfile::tempdir().unwrap();
    let (p, datas) = three_tensors(dir.path());
    let f = SafetensorsFile::open(&p).unwrap();
    let t1 = f.info("t1").unwrap();
    assert_eq!(f.populate(&t1, 1, 2).unwrap(), Populated::Yes);
    assert!(matches!(
        f.populate(&t1, 2, 2),
        Err(E::DataPastEnd { end: 4, .. })
    ));
    let infos: Vec<_> = ["t0", "t1", "t2"]
        .iter()
        .map(|n| f.info(n).unwrap())
        .collect();
    let control = tensorvault_core::Control::new();
    assert_eq!(f.prefetch(&infos, &control).unwrap(), Populated::Yes);
    assert_eq!(control.total(), 5_070_004);
    assert_eq!(control.done(), 5_070_004);
    for (i, d) in datas.iter().enumerate() {
        assert_eq!(f.tensor(&format!("t{i}")).unwrap().1, &d[..]);
    }
    let cancelled = tensorvault_core::Control::new();
    cancelled.cancel();
    assert!(matches!(f.prefetch(&infos, &cancelled), Err(E::Cancelled)));
}

#[test]
fn prefetch_and_populate_of_a_truncated_file_are_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (p, _) = three_tensors(dir.path());
    let f = SafetensorsFile::open(&p).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&p)
        .unwrap()
        .set_len(4096)
        .unwrap();
    let t0 = f.info("t0").unwrap();
    let r = f.populate(&t0, 0, t0.byte_len());
    if matches!(r, Ok(tensorvault_core::io::Populated::Unsupported)) {
        return; // kernel before 5.14
    }
    assert!(
        matches!(r, Err(E::FileChanged { actual: 4096, .. })),
        "{r:?}"
    );
    assert!(matches!(
        f.prefetch(&[t0], &tensorvault_core::Control::new()),
        Err(E::FileChanged { actual: 4096, .. })
    ));
}

fn arb_dtype() -> impl Strategy<Value = Dtype> {
    proptest::sample::select(Dtype::ALL.to_vec())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Fuzz: arbitrary bytes never panic.
    #[test]
    fn fuzz_random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = agrees(&bytes);
    }

    /// Fuzz: random bytes behind a plausible length prefix never panic.
    #[test]
    fn fuzz_random_header_text_never_panics(text in "[{}\\[\\]\":,0-9a-zA-Z_ .-]{0,200}", extra in 0usize..64) {
        let _ = agrees(&file(&text, extra));
    }

    /// Fuzz: single-byte mutations of a valid file are accepted or refused, never a panic, and an
    /// accepted file always satisfies the invariants.
    #[test]
    fn fuzz_mutated_valid_files(pos in 0usize..2000, byte in any::<u8>(),
                                tensors in proptest::collection::vec((arb_dtype(), proptest::collection::vec(0u64..5, 0..3)), 0..6)) {
        let specs: Vec<_> = tensors.iter().enumerate()
            .map(|(i, (d, s))| { let mut s = s.clone(); if matches!(d, Dtype::F4 | Dtype::F6E2M3 | Dtype::F6E3M2) { s = vec![8]; } spec(&format!("t{i}"), *d, &s) })
            .collect();
        let l = layout(specs, None).unwrap();
        let mut bytes = l.header.clone();
        bytes.extend(vec![0u8; usize::try_from(l.data_len()).unwrap()]);
        prop_assert!(parse(&bytes).is_ok());
        let i = pos % bytes.len();
        bytes[i] = byte;
        let _ = agrees(&bytes);
        if let Ok(h) = parse(&bytes) {
            let mut at = 0;
            for t in h.tensors() {
                prop_assert_eq!(t.start, at);
                at = t.end;
            }
            prop_assert_eq!(8 + h.header_len() + at, bytes.len() as u64);
        }
    }

    /// The writer's layout always parses back to the same tensors.
    #[test]
    fn layout_round_trips(tensors in proptest::collection::vec((arb_dtype(), proptest::collection::vec(0u64..6, 0..4)), 0..8)) {
        let specs: Vec<_> = tensors.iter().enumerate()
            .map(|(i, (d, s))| { let mut s = s.clone(); if matches!(d, Dtype::F4 | Dtype::F6E2M3 | Dtype::F6E3M2) { s.push(8); } spec(&format!("n{i}é"), *d, &s) })
            .collect();
        let l = layout(specs.clone(), None).unwrap();
        let mut bytes = l.header.clone();
        bytes.extend(vec![1u8; usize::try_from(l.data_len()).unwrap()]);
        let h = parse(&bytes).unwrap();
        prop_assert_eq!(h.header_len() % 8, 0);
        for s in &specs {
            let t = h.get(&s.name).unwrap();
            prop_assert_eq!(t.dtype, s.dtype);
            prop_assert_eq!(t.shape, &s.shape[..]);
        }
    }
}

#[test]
fn the_header_checked_is_the_header_parsed_not_the_file_rewritten_since() {
    // A checkpoint's header check hashes the bytes the header was parsed from: rewriting the file
    // after the open changes neither them nor their digest. Headers over 16 MiB keep only the digest.
    let dir = tempfile::tempdir().unwrap();
    for pad in [0usize, 17 << 20] {
        let json = format!(
            r#"{{"__metadata__":{{"pad":"{}"}},"w":{{"dtype":"U8","shape":[4],"data_offsets":[0,4]}}}}"#,
            "x".repeat(pad)
        );
        let bytes = file(&json, 4);
        let p = dir.path().join(format!("h{pad}.safetensors"));
        std::fs::write(&p, &bytes).unwrap();
        let f = SafetensorsFile::open(&p).unwrap();
        let n = 8 + usize::try_from(u64::from_le_bytes(bytes[..8].try_into().unwrap())).unwrap();
        let want = tensorvault_core::hash::sha256(&bytes[..n]);
        let mut other = bytes.clone();
        let at = n - 30;
        other[at] ^= 0x20; // the file changes under the open handle
        std::fs::write(&p, &other).unwrap();
        assert_eq!(f.header_sha256(), (n, want));
        assert_eq!(
            f.header_bytes().map(<[u8]>::to_vec),
            (pad == 0).then(|| bytes[..n].to_vec())
        );
        assert_ne!(
            f.mapping().bytes().get(..n),
            Some(&bytes[..n]),
            "the mapping shows the rewrite"
        );
    }
}
