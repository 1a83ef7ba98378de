//! `.fold` reader and writer against the `PyFolds` fixtures (`__test__/fixtures/fold`, written by `PyFolds`
//! itself) and their `expected.json`, plus the corruption campaign.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::many_single_char_names,
    clippy::too_many_lines,
    clippy::cast_possible_truncation
)]

use std::path::{Path, PathBuf};

use serde_json::Value as J;
use sha2::{Digest, Sha256};
use tensorvault_core::fold::crypto;
use tensorvault_core::fold::json::{self, Form};
use tensorvault_core::fold::{
    write_fold, ChunkInput, ChunkStatus, FoldError, FoldFile, Level, OpenOptions, Policy,
    VerifyMode, WriteOptions,
};
use tensorvault_core::Control;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../__test__/fixtures/fold")
}

fn expected() -> J {
    serde_json::from_str(&std::fs::read_to_string(dir().join("expected.json")).unwrap()).unwrap()
}

fn hex(b: &[u8]) -> String {
    crypto::to_hex(b)
}

fn keys(e: &J) -> (Vec<u8>, [u8; 32], [u8; 32], [u8; 32]) {
    let k = &e["keys"];
    let hmac = k["hmac_key_utf8"].as_str().unwrap().as_bytes().to_vec();
    let aes: [u8; 32] = crypto::from_hex(k["aes256_key_hex"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    let seed: [u8; 32] = crypto::from_hex(k["ed25519_seed_hex"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    let public: [u8; 32] = crypto::from_hex(k["ed25519_public_raw_hex"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    (hmac, aes, seed, public)
}

fn opts_for(e: &J, file: &str) -> OpenOptions {
    let (hmac, aes, _, public) = keys(e);
    let rw = &e["files"][file]["read_with"];
    OpenOptions {
        hmac_key: rw["integrity_key"].as_str().map(|_| hmac),
        decryption_key: rw["decryption_key_hex"].as_str().map(|_| aes),
        trust_key: Some(public),
        verify: VerifyMode::Full,
        ..OpenOptions::default()
    }
}

#[test]
fn every_fixture_opens_with_the_recorded_values() {
    let e = expected();
    for (name, f) in e["files"].as_object().unwrap() {
        let ff = FoldFile::open(&dir().join(name), opts_for(&e, name))
            .unwrap_or_else(|err| panic!("{name}: {err}"));
        assert_eq!(
            ff.header().index_off,
            f["header"]["index_off"].as_u64().unwrap(),
            "{name}"
        );
        assert_eq!(ff.is_mind(), f["is_mind"].as_bool().unwrap(), "{name}");
        let names: Vec<&str> = ff.index().entries.iter().map(|x| x.name.as_str()).collect();
        let listed: Vec<&str> = f["list_chunks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_str().unwrap())
            .collect();
        assert_eq!(names, listed, "{name}");
        let c = ff.checks();
        assert_eq!(c.manifest_hash.name(), "valid", "{name}");
        assert!(c.warnings.is_empty(), "{name}: {:?}", c.warnings);
        let has_root = f["index"].get("merkle_root").is_some();
        assert_eq!(
            c.merkle_root.name(),
            if has_root { "valid" } else { "absent" },
            "{name}"
        );
        if name == "sample.mind" {
            assert_eq!(c.trust_block.name(), "valid");
            assert_eq!(c.authenticated, "signature");
        }
        if name == "sample.fold" {
            assert_eq!(c.metadata_signature.name(), "valid");
        }
        if name == "hmac.fold" {
            assert_eq!(c.authenticated, "hmac");
        }
        // The index JSON, re-emitted for JS, equals what PyFolds parsed.
        let js: J = serde_json::from_str(&ff.index().value.to_text(Form::Js)).unwrap();
        assert_eq!(js, f["index"], "{name}");
        // Form I re-emission is byte-identical to the file's index text.
        let raw = std::fs::read(dir().join(name)).unwrap();
        let (o, l) = (
            ff.header().index_off as usize,
            ff.header().index_len as usize,
        );
        assert_eq!(
            ff.index().value.to_text(Form::I).as_bytes(),
            &raw[o..o + l],
            "{name}"
        );
        if let Some(text) = f["manifest"].get("hashed_text").and_then(J::as_str) {
            assert_eq!(
                ff.index()
                    .metadata
                    .without(&["manifest_hash"])
                    .to_text(Form::H),
                text,
                "{name}"
            );
        }
        for (i, entry) in ff.index().entries.iter().enumerate() {
            let want = &f["chunks"][&entry.name];
            let (p, st) = ff
                .read(i, &Control::new())
                .unwrap_or_else(|err| panic!("{name}/{}: {err}", entry.name));
            assert_eq!(st, ChunkStatus::Intact);
            let bytes = ff.bytes(&p);
            assert_eq!(bytes.len() as u64, want["payload_len"].as_u64().unwrap());
            assert_eq!(
                hex(&Sha256::digest(bytes)),
                want["payload_sha256"].as_str().unwrap(),
                "{name}/{}",
                entry.name
            );
            let r = ff.records()[i].as_ref().unwrap();
            let hb = &raw[r.offset as usize..r.offset as usize + 32];
            assert_eq!(hex(hb), want["chunk_header_hex"].as_str().unwrap());
        }
    }
}

#[test]
fn error_cases_recorded_in_expected_json_are_typed() {
    let e = expected();
    // hmac.fold without the key: every chunk is unverifiable (not "corrupt").
    let ff = FoldFile::open(&dir().join("hmac.fold"), OpenOptions::default()).unwrap();
    assert_eq!(ff.checks().manifest_hash.name(), "unverifiable");
    for (i, entry) in ff.index().entries.iter().enumerate() {
        let err = ff.read(i, &Control::new()).unwrap_err();
        assert!(matches!(err, FoldError::Unverifiable { .. }), "{err}");
        assert_eq!(err.chunk(), Some(entry.name.as_str()));
    }
    assert_eq!(
        e["files"]["hmac.fold"]["read_without_keys"]
            .as_object()
            .unwrap()
            .len(),
        ff.index().entries.len()
    );
    // encrypted.fold without the key: key required, chunk named.
    let ff = FoldFile::open(&dir().join("encrypted.fold"), OpenOptions::default()).unwrap();
    for (i, entry) in ff.index().entries.iter().enumerate() {
        let err = ff.read(i, &Control::new()).unwrap_err();
        assert!(
            matches!(&err, FoldError::KeyRequired { chunk } if *chunk == entry.name),
            "{err}"
        );
    }
    // A wrong AES key: typed decryption failure.
    let mut o = opts_for(&e, "encrypted.fold");
    o.decryption_key = Some([7u8; 32]);
    o.verify = VerifyMode::Lazy;
    let ff = FoldFile::open(&dir().join("encrypted.fold"), o).unwrap();
    assert!(matches!(
        ff.read(0, &Control::new()),
        Err(FoldError::DecryptFailed { .. })
    ));
    // A plain file read with a key is refused (W14), not reported corrupt.
    let mut o = opts_for(&e, "plain.fold");
    o.hmac_key = Some(b"k".to_vec());
    o.verify = VerifyMode::Lazy;
    o.degraded = true;
    let ff = FoldFile::open(&dir().join("plain.fold"), o).unwrap();
    assert!(matches!(
        ff.read(0, &Control::new()),
        Err(FoldError::Unverifiable { .. })
    ));
}

#[test]
fn policies_refuse_integrity_only_and_unbacked_claims() {
    let e = expected();
    let strict = |name: &str, p: Policy| {
        let mut o = opts_for(&e, name);
        o.policy = p;
        FoldFile::open(&dir().join(name), o)
    };
    let auth = Policy {
        require_authenticated: true,
        ..Policy::default()
    };
    assert!(matches!(
        strict("plain.fold", auth),
        Err(FoldError::Policy {
            rule: "require_authenticated",
            ..
        })
    ));
    assert!(strict("hmac.fold", auth).is_ok());
    assert!(strict("sample.mind", auth).is_ok());
    let s = Policy {
        strict: true,
        ..Policy::default()
    };
    // edge.fold claims encryption and a trust block it does not have (W3, W7).
    assert!(matches!(
        strict("edge.fold", s),
        Err(FoldError::Policy { rule: "strict", .. })
    ));
    assert!(strict("plain.fold", s).is_ok());
    let m = Policy {
        require_merkle: true,
        ..Policy::default()
    };
    assert!(strict("plain.fold", m).is_err());
    assert!(strict("encrypted.fold", m).is_ok());
}

#[test]
fn trust_block_copied_to_another_file_is_not_bound() {
    let e = expected();
    let (_, _, _, public) = keys(&e);
    // Rewrite sample.mind's index with a forged metadata field and a recomputed (unkeyed) manifest:
    // PyFolds accepts it (W4); tensorvault recomputes metadata_hash and refuses.
    let raw = std::fs::read(dir().join("sample.mind")).unwrap();
    let ff = FoldFile::open(&dir().join("sample.mind"), OpenOptions::default()).unwrap();
    let (o, _) = (
        ff.header().index_off as usize,
        ff.header().index_len as usize,
    );
    let mut idx = ff.index().value.clone();
    if let json::Value::Object(top) = &mut idx {
        for (k, v) in top.iter_mut() {
            if k == "metadata" {
                if let json::Value::Object(md) = v {
                    for (mk, mv) in md.iter_mut() {
                        if mk == "model_type" {
                            *mv = json::Value::Str("Forged".into());
                        }
                    }
                    let text = json::Value::Object(
                        md.iter()
                            .filter(|(k, _)| k != "manifest_hash")
                            .cloned()
                            .collect(),
                    )
                    .to_text(Form::H);
                    let mh = crypto::digest(None, text.as_bytes());
                    for (mk, mv) in md.iter_mut() {
                        if mk == "manifest_hash" {
                            *mv = json::Value::Str(mh.clone());
                        }
                    }
                }
            }
        }
    }
    let text = idx.to_text(Form::I);
    let mut forged = raw[..o].to_vec();
    forged[20..28].copy_from_slice(&(text.len() as u64).to_be_bytes());
    forged.extend_from_slice(text.as_bytes());
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("forged.mind");
    std::fs::write(&p, &forged).unwrap();
    // Integrity-only checks pass (manifest recomputed) ...
    assert!(FoldFile::open(&p, OpenOptions::default()).is_ok());
    // ... but the trust block is not bound to this metadata.
    let o = OpenOptions {
        trust_key: Some(public),
        ..OpenOptions::default()
    };
    let err = FoldFile::open(&p, o).unwrap_err();
    assert!(matches!(err, FoldError::Signature { .. }), "{err}");
}

fn fixture_chunks(e: &J) -> Vec<ChunkInput> {
    let ff = FoldFile::open(&dir().join("sample.mind"), opts_for(e, "sample.mind")).unwrap();
    ff.index()
        .entries
        .iter()
        .enumerate()
        .map(|(i, en)| {
            let (p, _) = ff.read(i, &Control::new()).unwrap();
            ChunkInput {
                name: en.name.clone(),
                ctype: ff.records()[i].as_ref().unwrap().ctype.clone(),
                data: ff.bytes(&p).to_vec(),
            }
        })
        .collect()
}

#[test]
fn round_trip_every_option_and_known_answers() {
    let e = expected();
    let (hmac, aes, seed, public) = keys(&e);
    let chunks = fixture_chunks(&e);
    let d = tempfile::tempdir().unwrap();
    let md = json::parse(
        r#"{"model_type":"T","tags":{"lang":"ação 🧠"},"x":[1.0,1e-05,18446744073709551615,NaN]}"#,
    )
    .unwrap();
    for (i, (zstd, ecc, key, level, enc, sign)) in [
        (None, None, false, Level::Basic, false, false),
        (Some(3), Some(32), false, Level::Basic, false, false),
        (Some(3), Some(16), true, Level::Standard, false, false),
        (Some(3), Some(64), false, Level::High, true, true),
        (None, Some(1), true, Level::Paranoid, true, true),
    ]
    .into_iter()
    .enumerate()
    {
        let p = d.path().join(format!("rt{i}.fold"));
        let w = WriteOptions {
            zstd_level: zstd,
            ecc,
            hmac_key: key.then(|| hmac.clone()),
            level,
            encryption_key: enc.then_some(aes),
            signing_seed: sign.then_some(seed),
            metadata: Some(md.clone()),
            created_at: Some(1_796_208_784.5),
            legacy_digests: false,
        };
        let s = write_fold(&p, &chunks, &w, &Control::new()).unwrap();
        let o = OpenOptions {
            hmac_key: key.then(|| hmac.clone()),
            decryption_key: enc.then_some(aes),
            trust_key: Some(public),
            verify: VerifyMode::Full,
            policy: Policy {
                strict: level != Level::Paranoid || (enc && sign),
                require_authenticated: key || sign,
                ..Policy::default()
            },
            ..OpenOptions::default()
        };
        let ff = FoldFile::open(&p, o).unwrap_or_else(|err| panic!("case {i}: {err}"));
        assert_eq!(ff.checks().manifest_hash.name(), "valid");
        assert_eq!(
            ff.checks().trust_block.name(),
            if sign { "valid" } else { "absent" }
        );
        assert_eq!(ff.index().merkle_root, s.merkle_root);
        assert!(ff.is_mind());
        for (j, c) in chunks.iter().enumerate() {
            let (pl, _) = ff.read(j, &Control::new()).unwrap();
            assert_eq!(ff.bytes(&pl), &c.data[..], "case {i} chunk {}", c.name);
        }
        // Known answers recomputed independently of the writer's code path.
        let raw = std::fs::read(&p).unwrap();
        assert_eq!(&raw[..8], b"FOLDv1\0\0");
        assert_eq!(raw.len() as u64, s.index_off + s.index_len);
        for r in ff.records() {
            let r = r.as_ref().unwrap();
            let stored = &raw[r.data_start() as usize..r.data_end() as usize];
            assert_eq!(crc32c::crc32c(stored), r.crc32c);
            let plain = hex(&Sha256::digest(stored));
            if key {
                use hmac::Mac;
                let mut m = hmac::Hmac::<Sha256>::new_from_slice(&hmac).unwrap();
                m.update(plain.as_bytes());
                assert_eq!(
                    r.digest,
                    format!("hmac-sha256:{}", hex(&m.finalize().into_bytes()))
                );
            } else {
                assert_eq!(r.digest, format!("sha256:{plain}"));
            }
        }
        // Index follows PyFolds's key order and is Form I.
        let text = std::str::from_utf8(&raw[s.index_off as usize..]).unwrap();
        assert!(text.starts_with(r#"{"format":"fold","version":"1.2.0","created_at_unix":1796208784.5,"metadata":{"model_type":"T""#), "{text}");
        assert!(text.contains("18446744073709551615,NaN]"));
    }
}

/// Regression: `security_features` followed the level alone, so a file written at level high or
/// paranoid without an encryption key (or a signing key) claimed encryption (a trust block) it lacks,
/// and the writer's own files were refused by a strict open (`TV_FOLD_POLICY`).
#[test]
fn security_features_claim_only_what_the_writer_wrote() {
    let e = expected();
    let (_, aes, seed, public) = keys(&e);
    let chunks = fixture_chunks(&e);
    let d = tempfile::tempdir().unwrap();
    let mut i = 0;
    for level in [Level::Basic, Level::Standard, Level::High, Level::Paranoid] {
        let high = matches!(level, Level::High | Level::Paranoid);
        for (ecc, enc, sign) in [
            (false, false, false),
            (true, false, true),
            (false, true, false),
            (true, true, true),
        ] {
            if !high && (enc || sign) {
                continue; // refused below high (writer_refuses_what_pyfolds_would_silently_accept)
            }
            i += 1;
            let p = d.path().join(format!("sf{i}.fold"));
            let w = WriteOptions {
                ecc: ecc.then_some(8),
                level,
                encryption_key: enc.then_some(aes),
                signing_seed: sign.then_some(seed),
                ..WriteOptions::default()
            };
            write_fold(&p, &chunks, &w, &Control::new()).unwrap();
            let o = OpenOptions {
                decryption_key: enc.then_some(aes),
                trust_key: Some(public),
                policy: Policy {
                    strict: true,
                    ..Policy::default()
                },
                ..OpenOptions::default()
            };
            let case = format!("{level:?} ecc={ecc} enc={enc} sign={sign}");
            let ff = FoldFile::open(&p, o).unwrap_or_else(|err| panic!("{case}: {err}"));
            let f = ff.index().metadata.get("security_features").unwrap();
            let claim = |k: &str| matches!(f.get(k), Some(json::Value::Bool(true)));
            assert_eq!(claim("encryption"), enc, "{case}");
            assert_eq!(claim("trust_block"), sign, "{case}");
            assert_eq!(claim("signature"), sign, "{case}");
            assert_eq!(claim("merkle"), high, "{case}");
            assert_eq!(claim("ecc"), ecc, "{case}");
            assert!(!claim("provenance") && !claim("sharding"), "{case}");
            assert_eq!(claim("merkle"), ff.index().merkle_root.is_some(), "{case}");
            assert_eq!(
                claim("trust_block"),
                ff.index().trust_block.is_some(),
                "{case}"
            );
        }
    }
}

#[test]
fn writer_refuses_what_pyfolds_would_silently_accept() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("x.fold");
    let c = |n: &str| ChunkInput {
        name: n.into(),
        ctype: "RAW0".into(),
        data: vec![1, 2, 3],
    };
    let bad = [
        (vec![c("a"), c("a")], WriteOptions::default()),
        (
            vec![c("a")],
            WriteOptions {
                encryption_key: Some([0; 32]),
                ..WriteOptions::default()
            },
        ),
        (
            vec![c("a")],
            WriteOptions {
                signing_seed: Some([0; 32]),
                level: Level::Standard,
                ..WriteOptions::default()
            },
        ),
        (
            vec![c("a")],
            WriteOptions {
                ecc: Some(255),
                ..WriteOptions::default()
            },
        ),
        (
            vec![c("a")],
            WriteOptions {
                metadata: Some(json::parse(r#"{"manifest_hash":1}"#).unwrap()),
                ..WriteOptions::default()
            },
        ),
        (
            vec![ChunkInput {
                ctype: "TOOLONG".into(),
                ..c("a")
            }],
            WriteOptions::default(),
        ),
    ];
    for (chunks, o) in bad {
        assert!(matches!(
            write_fold(&p, &chunks, &o, &Control::new()),
            Err(FoldError::InvalidArgument { .. })
        ));
        assert!(!p.exists());
        assert_eq!(
            std::fs::read_dir(d.path()).unwrap().count(),
            0,
            "no temporary file left behind"
        );
    }
}

/// Corruption campaign: every mutation either reads back the original payload or fails with a
/// typed error; never a silent wrong payload.
#[test]
fn corruption_campaign_never_returns_a_wrong_payload() {
    let e = expected();
    let d = tempfile::tempdir().unwrap();
    for name in [
        "sample.fold",
        "plain.fold",
        "edge.fold",
        "hmac.fold",
        "encrypted.fold",
        "sample.mind",
    ] {
        let raw = std::fs::read(dir().join(name)).unwrap();
        let o = opts_for(&e, name);
        let good = FoldFile::open(&dir().join(name), o.clone()).unwrap();
        let want: Vec<Vec<u8>> = (0..good.index().entries.len())
            .map(|i| {
                good.bytes(&good.read(i, &Control::new()).unwrap().0)
                    .to_vec()
            })
            .collect();
        let mut mutants: Vec<(String, Vec<u8>)> = Vec::new();
        for cut in [0, 1, 27, 28, 100, raw.len() / 2, raw.len() - 1] {
            mutants.push((format!("truncate {cut}"), raw[..cut].to_vec()));
        }
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        for _ in 0..120 {
            let mut m = raw.clone();
            let flips = 1 + next() % 3;
            for _ in 0..flips {
                let at = (next() % m.len() as u64) as usize;
                m[at] ^= 1 << (next() % 8);
            }
            mutants.push(("flip".into(), m));
        }
        // A burst inside one chunk's stored bytes (beyond any rs(N) budget).
        let r0 = good.records()[0].as_ref().unwrap().clone();
        let mut m = raw.clone();
        for b in &mut m[r0.data_start() as usize..(r0.data_start() + r0.comp_len.min(200)) as usize]
        {
            *b ^= 0x5a;
        }
        mutants.push(("burst".into(), m));
        for (label, m) in mutants {
            let p = d.path().join("m.fold");
            std::fs::write(&p, &m).unwrap();
            let Ok(ff) = FoldFile::open(
                &p,
                OpenOptions {
                    verify: VerifyMode::Lazy,
                    ..o.clone()
                },
            ) else {
                continue;
            };
            for (i, en) in ff.index().entries.iter().enumerate() {
                match ff.read(i, &Control::new()) {
                    Ok((pl, _)) => {
                        let orig = good
                            .position(&en.name)
                            .expect("a chunk name not in the original was accepted");
                        assert_eq!(
                            ff.bytes(&pl),
                            &want[orig][..],
                            "{name} {label}: silent wrong payload for {}",
                            en.name
                        );
                    }
                    Err(err) => {
                        assert!(
                            err.chunk().is_some() || matches!(err, FoldError::Io(_)),
                            "{name} {label}: {err} names no chunk"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn ecc_runs_only_when_the_check_fails_and_repair_rewrites_the_chunk() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("s.fold");
    let mut raw = std::fs::read(dir().join("sample.fold")).unwrap();
    let ff = FoldFile::open(&dir().join("sample.fold"), OpenOptions::default()).unwrap();
    let r = ff.records()[0].as_ref().unwrap().clone();
    // 10 byte errors in the first 223-byte block: within rs(32)'s budget of 16.
    for k in 0..10 {
        raw[r.data_start() as usize + k * 7] ^= 0xff;
    }
    // One byte of parity damaged in chunk 1 (its data intact).
    let r1 = ff.records()[1].as_ref().unwrap().clone();
    raw[r1.data_end() as usize + 3] ^= 1;
    std::fs::write(&p, &raw).unwrap();
    let o = OpenOptions {
        degraded: true,
        ..OpenOptions::default()
    };
    let ff = FoldFile::open(&p, o.clone()).unwrap();
    let rep = ff.verify_all(&Control::new()).unwrap();
    assert_eq!(rep.chunks[0].status, "repaired");
    assert_eq!(rep.chunks[0].corrected_bytes, 10);
    assert_eq!(rep.chunks[1].status, "intact");
    assert!(rep.chunks[1].parity_damaged);
    let (pl, st) = ff.read(0, &Control::new()).unwrap();
    assert!(matches!(
        st,
        ChunkStatus::Repaired {
            corrected_bytes: 10,
            ..
        }
    ));
    assert_eq!(
        hex(&Sha256::digest(ff.bytes(&pl))),
        "7c82e4e0291b59be1d14589ba87ff8ac801823436d94a83876c61efc1431d69c"
    );
    let fixed = ff.repair_to(&p, &Control::new()).unwrap();
    assert_eq!(
        fixed,
        vec!["torch_state".to_string(), "llm_manifest".to_string()]
    );
    assert_eq!(
        std::fs::read(&p).unwrap(),
        std::fs::read(dir().join("sample.fold")).unwrap()
    );
}

/// Rewrite the index of `raw` through `edit` (the file header is updated; chunks untouched).
fn with_index(raw: &[u8], edit: impl FnOnce(&mut json::Value)) -> Vec<u8> {
    let off = u64::from_be_bytes(raw[12..20].try_into().unwrap()) as usize;
    let len = u64::from_be_bytes(raw[20..28].try_into().unwrap()) as usize;
    let mut v = json::parse(std::str::from_utf8(&raw[off..off + len]).unwrap()).unwrap();
    edit(&mut v);
    let text = v.to_text(Form::I);
    let mut out = raw[..off].to_vec();
    out[20..28].copy_from_slice(&(text.len() as u64).to_be_bytes());
    out.extend_from_slice(text.as_bytes());
    out
}

fn member<'a>(v: &'a mut json::Value, key: &str) -> &'a mut json::Value {
    match v {
        json::Value::Object(m) => &mut m.iter_mut().find(|(k, _)| k == key).unwrap().1,
        _ => panic!("not an object"),
    }
}

fn entry(v: &mut json::Value, i: usize) -> &mut json::Value {
    match member(v, "chunks") {
        json::Value::Array(a) => &mut a[i],
        _ => panic!("chunks"),
    }
}

/// Named tampering scenarios: each either fails with a typed error naming the chunk (or the file,
/// for file-level checks) or, where the format cannot tell, returns the original bytes.
#[test]
fn named_tampering_scenarios_are_typed_errors() {
    let e = expected();
    let (hmac, ..) = keys(&e);
    let d = tempfile::tempdir().unwrap();
    let open = |bytes: &[u8], o: OpenOptions| {
        let p = d.path().join("t.fold");
        std::fs::write(&p, bytes).unwrap();
        FoldFile::open(&p, o)
    };
    let plain = std::fs::read(dir().join("plain.fold")).unwrap();
    let lazy = OpenOptions::default();

    // Bad offset: an entry pointing inside another chunk.
    let m = with_index(&plain, |v| {
        *member(entry(v, 1), "offset") = json::Value::Int("33".into());
    });
    let err = open(&m, lazy.clone()).unwrap_err();
    assert!(
        matches!(&err, FoldError::Invalid { .. } | FoldError::Budget { .. }),
        "{err}"
    );
    assert_eq!(err.chunk(), Some("llm_manifest"));

    // Bad checksum in the chunk header only: disagrees with the index.
    let mut m = plain.clone();
    m[28 + 24] ^= 1;
    let err = open(&m, lazy.clone()).unwrap_err();
    assert!(
        matches!(&err, FoldError::Invalid { reason: "header_mismatch", chunk: Some(c), .. } if c == "torch_state"),
        "{err}"
    );

    // Bad checksum in both header and index: the bytes no longer match it.
    let crc = u32::from_be_bytes(plain[52..56].try_into().unwrap()) ^ 1;
    let mut m = with_index(&plain, |v| {
        *member(entry(v, 0), "crc32c") = json::Value::Int(crc.to_string());
    });
    m[52..56].copy_from_slice(&crc.to_be_bytes());
    let f = open(&m, lazy.clone()).unwrap();
    let err = f.read(0, &Control::new()).unwrap_err();
    assert!(
        matches!(&err, FoldError::Corrupt { check: "crc32c", chunk: Some(c), .. } if c == "torch_state"),
        "{err}"
    );

    // Swapped chunks: two entries exchange names (no key): chunk_hashes catches both.
    let m = with_index(&plain, |v| {
        let a = member(entry(v, 2), "name").clone();
        let b = member(entry(v, 3), "name").clone();
        *member(entry(v, 2), "name") = b;
        *member(entry(v, 3), "name") = a;
    });
    let f = open(&m, lazy.clone()).unwrap();
    for i in [2, 3] {
        let err = f.read(i, &Control::new()).unwrap_err();
        assert!(
            matches!(
                &err,
                FoldError::Corrupt {
                    check: "chunk_hashes",
                    chunk: Some(_),
                    ..
                }
            ),
            "{err}"
        );
    }
    assert_eq!(f.read(0, &Control::new()).map(|_| ()).ok(), Some(()));

    // Edited index (metadata) without recomputing the manifest: every verified read fails, naming the chunk.
    let m = with_index(&plain, |v| {
        *member(member(v, "metadata"), "model_type") = json::Value::Str("Forged".into());
    });
    let f = open(&m, lazy.clone()).unwrap();
    let err = f.read(1, &Control::new()).unwrap_err();
    assert!(
        matches!(&err, FoldError::Corrupt { check: "manifest_hash", chunk: Some(c), .. } if c == "llm_manifest"),
        "{err}"
    );

    // Dropped chunk: the index no longer lists it, chunk_hashes still does.
    let m = with_index(&plain, |v| {
        if let json::Value::Array(a) = member(v, "chunks") {
            a.pop();
        }
    });
    assert!(matches!(
        open(&m, lazy.clone()),
        Err(FoldError::Corrupt {
            check: "chunk_hashes",
            ..
        })
    ));

    // Forged HMAC file without the key: bytes changed, CRC and parity recomputed, the digest cannot be.
    let hm = std::fs::read(dir().join("hmac.fold")).unwrap();
    let keyed = OpenOptions {
        hmac_key: Some(hmac.clone()),
        ..OpenOptions::default()
    };
    let good = open(&hm, keyed.clone()).unwrap();
    let r = good.records()[3].as_ref().unwrap().clone(); // telemetry
    let mut m = hm.clone();
    let (a, b) = (r.data_start() as usize, r.data_end() as usize);
    m[a + 5] ^= 0x20;
    let crc = crc32c::crc32c(&m[a..b]);
    m[r.offset as usize + 24..r.offset as usize + 28].copy_from_slice(&crc.to_be_bytes());
    let parity = tensorvault_core::ecc::rs255::RsCodec::new(16)
        .unwrap()
        .encode(&m[a..b], &Control::new())
        .unwrap();
    m[b..r.end() as usize].copy_from_slice(&parity);
    let m = with_index(&m, |v| {
        *member(entry(v, 3), "crc32c") = json::Value::Int(crc.to_string());
    });
    let f = open(&m, keyed.clone()).unwrap();
    let err = f.read(3, &Control::new()).unwrap_err();
    assert!(
        matches!(&err, FoldError::Corrupt { check: "ecc" | "digest", chunk: Some(c), .. } if c == "telemetry"),
        "{err}"
    );
    // Downgrade: keyed digests replaced by plain ones the forger can compute → refused with the key.
    let m = with_index(&hm, |v| {
        for i in 0..5 {
            let s = member(entry(v, i), "sha256")
                .as_str()
                .unwrap()
                .replace("hmac-sha256:", "sha256:");
            *member(entry(v, i), "sha256") = json::Value::Str(s);
        }
    });
    let f = open(
        &m,
        OpenOptions {
            degraded: true,
            ..keyed
        },
    )
    .unwrap();
    assert!(matches!(
        f.read(0, &Control::new()),
        Err(FoldError::Unverifiable { .. } | FoldError::Corrupt { .. })
    ));
    assert_ne!(f.checks().authenticated, "hmac");
}
