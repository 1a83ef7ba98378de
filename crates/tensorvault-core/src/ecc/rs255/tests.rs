//! Known answers (`PyFolds` contract §3), kernel equivalence, and property tests.
#![allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_precision_loss,
    clippy::single_match_else,
    clippy::format_collect
)]

use proptest::prelude::*;

use super::*;
use crate::hash::sha256;

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn kat_input() -> Vec<u8> {
    let mut v: Vec<u8> = (0..=255u8).chain(0..=255u8).collect();
    v.extend_from_slice(b"PyFolds");
    v
}

fn codec(n: usize) -> RsCodec {
    RsCodec::new(n).unwrap()
}

/// Test scale from the environment (run "at scale" with larger values, see docs/benchmarks-rs.md).
fn scale(var: &str, default: u32) -> u32 {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn ctl() -> Control {
    Control::new()
}

#[test]
fn known_answer_table_of_the_contract() {
    let data = kat_input();
    assert_eq!(data.len(), 519);
    for (n, ecc_len, digest, first16) in [
        (
            16,
            48,
            "7a24b7768ce44afa19c3ee858a7afd05e61a462a412eb09e8d8ec1884f5650fa",
            "3d4a1daccc4a4caa43488e7b4f6559c4",
        ),
        (
            32,
            96,
            "8c31cbc286b58da79c5d981e2917fda486464bbf114501ced3747c4b403f0fdd",
            "41841183b11fdb537421939696cda70e",
        ),
        (
            64,
            192,
            "ac262f18fa00b8f96d3c04313be6ea6c13470f48acfb211e0a2307adfd1db28b",
            "8c1be694d057757c84ad114737f11751",
        ),
    ] {
        let c = codec(n);
        assert_eq!(c.name(), format!("rs({n})"));
        assert_eq!(c.ecc_len(519), ecc_len);
        assert_eq!(c.block_count(519), 3);
        let parity = c.encode(&data, &ctl()).unwrap();
        assert_eq!(parity.len() as u64, ecc_len);
        assert_eq!(hex(&sha256(&parity)), digest, "rs({n})");
        assert_eq!(hex(&parity[..16]), first16, "rs({n})");
        assert_eq!(c.encode_portable(&data), parity);
    }
}

#[test]
fn known_answer_hello_world() {
    let c = codec(16);
    assert_eq!(
        hex(&c.encode(b"hello world", &ctl()).unwrap()),
        "6740a6899b2716f16ca0a50be8f82120"
    );
    assert_eq!(
        hex(&c.encode_block_reference(b"hello world")),
        "6740a6899b2716f16ca0a50be8f82120"
    );
    let inline = codec(RsCodec::INLINE_DEFAULT_PARITY);
    let chunk = inline.protect_chunk(b"hello world", &ctl()).unwrap();
    assert_eq!(hex(&chunk), "68656c6c6f20776f726c64ed2554c4fdfd89f3a8aa");
    let (back, report) = inline.recover_chunk(&chunk, &[], &ctl()).unwrap();
    assert_eq!(back, b"hello world");
    assert_eq!(report, DecodeReport::default());
}

#[test]
fn rs16_on_200_zero_bytes_corrects_8_errors_and_refuses_9() {
    let c = codec(16);
    let zeros = vec![0u8; 200];
    let parity = c.encode(&zeros, &ctl()).unwrap();
    let mut eight = zeros.clone();
    for i in 0..8 {
        eight[i * 20 + 3] = 0xff;
    }
    let report = c.decode(&mut eight, &parity, &[], &ctl()).unwrap();
    assert_eq!(eight, zeros);
    assert_eq!(report.corrected_bytes, 8);
    assert_eq!(report.corrected_blocks, vec![0]);
    let mut nine = zeros.clone();
    for i in 0..9 {
        nine[i * 20 + 3] = 0xff;
    }
    let before = nine.clone();
    let err = c.decode(&mut nine, &parity, &[], &ctl()).unwrap_err();
    assert!(
        matches!(
            err,
            RsError::Uncorrectable {
                block: 0,
                offset: 0,
                end: 200,
                n: 16
            }
        ),
        "{err:?}"
    );
    assert_eq!(nine, before, "a failed block is left untouched");
}

#[test]
fn empty_data_has_empty_parity() {
    let c = codec(32);
    assert!(c.encode(&[], &ctl()).unwrap().is_empty());
    let mut empty: [u8; 0] = [];
    assert_eq!(
        c.decode(&mut empty, &[], &[], &ctl()).unwrap(),
        DecodeReport::default()
    );
    assert!(c.protect_chunk(&[], &ctl()).unwrap().is_empty());
    assert!(c.recover_chunk(&[], &[], &ctl()).unwrap().0.is_empty());
}

#[test]
fn protection_levels_and_names() {
    for (level, n) in [
        ("off", None),
        ("none", None),
        ("0", None),
        ("low", Some(16)),
        ("med", Some(32)),
        ("high", Some(64)),
        // PyFolds lower-cases the level and reads an empty one as off (contract, section 3).
        ("", None),
        ("Off", None),
        ("NONE", None),
        ("LOW", Some(16)),
        ("Med", Some(32)),
        ("HIGH", Some(64)),
    ] {
        assert_eq!(
            RsCodec::from_protection(level)
                .unwrap()
                .map(|c| c.parity_len()),
            n,
            "{level}"
        );
    }
    for bad in ["medium", "MEDIUM", "1", "rs(16)", " low", "low "] {
        assert_eq!(
            RsCodec::from_protection(bad).unwrap_err(),
            RsError::UnknownProtection { level: bad.into() }
        );
    }
    assert_eq!(
        RsCodec::from_name("rs(10)").unwrap().unwrap().parity_len(),
        10
    );
    assert_eq!(
        RsCodec::from_name("rs(254)").unwrap().unwrap().parity_len(),
        254
    );
    assert!(RsCodec::from_name("none").unwrap().is_none());
    assert_eq!(
        RsCodec::from_name("rs(255)").unwrap_err(),
        RsError::InvalidParityCount { n: 255 }
    );
    assert_eq!(
        RsCodec::from_name("rs(0)").unwrap_err(),
        RsError::UnknownCodec {
            name: "rs(0)".into()
        }
    );
    for bad in [
        "rs(", "rs()", "rs(016)", "rs(+5)", "RS(16)", "rs(16) ", "rs(9999)", "rs(-1)",
    ] {
        assert!(
            matches!(RsCodec::from_name(bad), Err(RsError::UnknownCodec { .. })),
            "{bad}"
        );
    }
    assert_eq!(
        RsCodec::new(0).unwrap_err(),
        RsError::InvalidParityCount { n: 0 }
    );
    assert_eq!(
        RsCodec::new(255).unwrap_err(),
        RsError::InvalidParityCount { n: 255 }
    );
}

#[test]
fn generator_matches_reedsolo_for_small_n() {
    // reedsolo.rs_generator_poly(4) == [1, 15, 54, 120, 64]
    assert_eq!(codec(4).generator(), &[1, 15, 54, 120, 64]);
    assert_eq!(codec(1).generator(), &[1, 1]);
}

#[test]
fn parity_length_mismatch_is_an_error() {
    let c = codec(16);
    let mut data = vec![1u8; 300];
    let err = c.decode(&mut data, &[0u8; 31], &[], &ctl()).unwrap_err();
    assert_eq!(
        err,
        RsError::ParityLengthMismatch {
            data_len: 300,
            expected: 32,
            actual: 31
        }
    );
    let mut parity = vec![0u8; 33];
    assert!(matches!(
        c.encode_into(&data, &mut parity, &ctl()),
        Err(RsError::ParityLengthMismatch { .. })
    ));
}

#[test]
fn invalid_inline_lengths() {
    let c = codec(10);
    for len in [1u64, 5, 10, 255 + 10, 510 + 3] {
        assert_eq!(
            c.inline_data_len(len).unwrap_err(),
            RsError::InvalidInlineLength { len, n: 10 }
        );
        assert!(c
            .recover_chunk(&vec![0u8; len as usize], &[], &ctl())
            .is_err());
    }
    assert_eq!(c.inline_data_len(0).unwrap(), 0);
    assert_eq!(c.inline_data_len(11).unwrap(), 1);
    assert_eq!(c.inline_data_len(255).unwrap(), 245);
    assert_eq!(c.inline_data_len(255 + 11).unwrap(), 246);
}

#[test]
fn erasure_out_of_range() {
    let c = codec(8);
    let mut data = vec![0u8; 10];
    let parity = c.encode(&data, &ctl()).unwrap();
    assert_eq!(
        c.decode(&mut data, &parity, &[10], &ctl()).unwrap_err(),
        RsError::ErasureOutOfRange {
            position: 10,
            len: 10
        }
    );
}

#[test]
fn cancellation_stops_the_work() {
    let c = codec(32);
    let data = vec![7u8; 4 << 20];
    let control = Control::new();
    control.cancel();
    assert_eq!(c.encode(&data, &control).unwrap_err(), RsError::Cancelled);
    let parity = c.encode(&data, &ctl()).unwrap();
    let mut copy = data.clone();
    assert_eq!(
        c.decode(&mut copy, &parity, &[], &control).unwrap_err(),
        RsError::Cancelled
    );
}

#[test]
fn progress_reaches_the_total_and_threads_do_not_change_bytes() {
    let c = codec(32);
    let data: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let control = Control::new();
    let one = with_threads(Some(1), || c.encode(&data, &control)).unwrap();
    assert_eq!(control.done(), data.len() as u64);
    assert_eq!(control.total(), data.len() as u64);
    let two = with_threads(Some(2), || c.encode(&data, &ctl())).unwrap();
    assert_eq!(one, two);
    assert_eq!(one, c.encode_portable(&data));
}

#[test]
fn every_n_vector_kernel_matches_portable_and_reference() {
    let data: Vec<u8> = (0..5000u32).map(|i| (i * 7 + i / 255) as u8).collect();
    for n in 1..=254 {
        let c = codec(n);
        let fast = c.encode(&data, &ctl()).unwrap();
        assert_eq!(fast, c.encode_portable(&data), "rs({n})");
        let reference: Vec<u8> = data
            .chunks(255 - n)
            .flat_map(|b| c.encode_block_reference(b))
            .collect();
        assert_eq!(fast, reference, "rs({n})");
    }
}

#[test]
fn every_level_gives_the_portable_bytes_across_interleaved_groups() {
    use crate::ecc::cpu::Level;
    // 66 full blocks and a short one: one interleaved group of 64 (GFNI or AVX2), the rest through the
    // slicing kernel. Small N, every 7th N and the top of the range (N > 239 leaves blocks shorter
    // than one 16-byte transpose). Both AVX2 kernels are checked explicitly: at the AVX2 level only the
    // faster one runs.
    let ns = (1..=40usize).chain((41..230).step_by(7)).chain(230..=254);
    for n in ns {
        let c = codec(n);
        let k = 255 - n;
        let len = 66 * k + 1 + n % 7;
        let data: Vec<u8> = (0..len)
            .map(|i| ((i as u32).wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let want = c.encode_portable(&data);
        for level in Level::ALL {
            let mut got = vec![0xa5u8; want.len()];
            c.enc.encode_blocks_at(level, &data, &mut got);
            assert_eq!(got, want, "rs({n}) at {}", level.name());
        }
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            use super::encode::Avx2Kernel;
            for kernel in [Avx2Kernel::Interleaved, Avx2Kernel::Sliced] {
                let mut got = vec![0xa5u8; want.len()];
                // SAFETY: AVX2 is present (checked just above).
                unsafe { c.enc.encode_blocks_avx2_with(kernel, &data, &mut got) };
                assert_eq!(got, want, "rs({n}) with {}", kernel.name());
            }
        }
        if n % 31 == 1 {
            let reference: Vec<u8> = data
                .chunks(k)
                .flat_map(|b| c.encode_block_reference(b))
                .collect();
            assert_eq!(want, reference, "rs({n})");
        }
    }
}

#[test]
fn large_stream_with_scattered_damage_is_repaired_in_parallel() {
    let c = codec(32);
    let data: Vec<u8> = (0..2_000_000u32).map(|i| (i ^ (i >> 8)) as u8).collect();
    let parity = c.encode(&data, &ctl()).unwrap();
    let mut damaged = data.clone();
    let mut erasures = Vec::new();
    // every 7th block: 10 errors and 12 erasures (2*10 + 12 = 32)
    let blocks = c.block_count(data.len() as u64) as usize;
    for b in (0..blocks).step_by(7) {
        let start = b * 223;
        let len = 223.min(data.len() - start);
        if len < 22 {
            continue;
        }
        for j in 0..10 {
            damaged[start + j * 2] ^= 0x5a;
        }
        for j in 0..12 {
            let p = start + len - 1 - j;
            damaged[p] = 0;
            erasures.push(p as u64);
        }
    }
    let (copy, copy_report) = c
        .decode_to_vec(&damaged, &parity, &erasures, &[], &ctl())
        .unwrap();
    let bad = c.verify(&damaged, &parity, &ctl()).unwrap();
    let report = c.decode(&mut damaged, &parity, &erasures, &ctl()).unwrap();
    assert_eq!(bad, report.corrected_blocks);
    assert!(c.verify(&damaged, &parity, &ctl()).unwrap().is_empty());
    assert_eq!(damaged, data);
    assert_eq!(copy, data);
    assert_eq!(copy_report, report);
    assert_eq!(report.corrected_blocks.len(), blocks.div_ceil(7));
    assert!(report.corrected_blocks.windows(2).all(|w| w[0] < w[1]));
}

#[test]
fn damaged_parity_is_corrected_too() {
    let c = codec(16);
    let data = kat_input();
    let mut parity = c.encode(&data, &ctl()).unwrap();
    parity[0] ^= 1;
    parity[17] ^= 0xff;
    let mut copy = data.clone();
    let report = c.decode(&mut copy, &parity, &[], &ctl()).unwrap();
    assert_eq!(copy, data);
    assert_eq!(report.corrected_bytes, 2);
    assert_eq!(report.corrected_blocks, vec![0, 1]);
}

#[test]
fn inline_round_trip_with_damage_in_data_and_parity() {
    let c = codec(10);
    let data: Vec<u8> = (0..1000u32).map(|i| (i * 31) as u8).collect();
    let mut chunk = c.protect_chunk(&data, &ctl()).unwrap();
    assert_eq!(chunk.len() as u64, c.inline_len(1000));
    chunk[3] ^= 9; // block 0 data
    chunk[250] ^= 9; // block 0 parity
    chunk[600] = 0; // block 2, erased
    let (back, report) = c.recover_chunk(&chunk, &[600], &ctl()).unwrap();
    assert_eq!(back, data);
    assert_eq!(report.corrected_blocks, vec![0, 2]);
    for j in 0..6 {
        chunk[255 + j] ^= 0x33;
    }
    assert!(matches!(
        c.recover_chunk(&chunk, &[], &ctl()).unwrap_err(),
        RsError::Uncorrectable {
            block: 1,
            offset: 255,
            end: 510,
            n: 10
        }
    ));
}

/// Damage `cw` (length len) with `errors` random errors and `erasures` random erasures at distinct
/// positions; returns erasure positions.
fn damage(cw: &mut [u8], picks: &[(usize, u8)], errors: usize, erasures: usize) -> Vec<usize> {
    let mut positions: Vec<usize> = (0..cw.len()).collect();
    let mut chosen = Vec::new();
    for (i, &(r, v)) in picks.iter().take(errors + erasures).enumerate() {
        let j = i + r % (positions.len() - i);
        positions.swap(i, j);
        let p = positions[i];
        if i < errors {
            cw[p] ^= v.max(1);
        } else {
            cw[p] = v;
            chosen.push(p);
        }
        let _ = &mut chosen;
    }
    chosen
}

proptest! {
    #![proptest_config(ProptestConfig { cases: scale("TV_RS_PROPTEST_CASES", 256), ..ProptestConfig::default() })]

    #[test]
    fn within_the_bound_every_pattern_is_corrected(
        n in 1usize..=64,
        len_frac in 0.0f64..1.0,
        seed_data in proptest::collection::vec(any::<u8>(), 255),
        picks in proptest::collection::vec((any::<usize>(), any::<u8>()), 64),
        err_frac in 0.0f64..=1.0,
    ) {
        let c = codec(n);
        let k = 255 - n;
        let len = 1 + ((k - 1) as f64 * len_frac) as usize;
        let data = &seed_data[..len];
        let parity = c.encode(data, &ctl()).unwrap();
        let mut cw = [data, &parity[..]].concat();
        let original = cw.clone();
        // 2e + r <= n, limited by the codeword length
        let max_errors = (n / 2).min(cw.len());
        let errors = (max_errors as f64 * err_frac) as usize;
        let erasures = (n - 2 * errors).min(cw.len() - errors);
        let erased = damage(&mut cw, &picks, errors, erasures);
        let changed = c.decode_codeword(&mut cw, &erased).unwrap();
        prop_assert_eq!(&cw, &original);
        prop_assert!(changed <= errors + erasures);
        // And through the sidecar stream API.
        let mut d = cw[..len].to_vec();
        let mut damaged = original.clone();
        damage(&mut damaged, &picks, errors, 0);
        d.copy_from_slice(&damaged[..len]);
        let report = c.decode(&mut d, &damaged[len..], &[], &ctl()).unwrap();
        prop_assert_eq!(&d[..], data);
        prop_assert_eq!(report.corrected_bytes as usize, errors.min(report.corrected_bytes as usize));
    }

    #[test]
    fn stream_decode_never_returns_wrong_data_silently_within_bound(
        n in prop::sample::select(vec![2usize, 10, 16, 32, 64]),
        data in proptest::collection::vec(any::<u8>(), 0..3000),
        hits in proptest::collection::vec((any::<usize>(), 1u8..=255), 0..40),
    ) {
        let c = codec(n);
        let parity = c.encode(&data, &ctl()).unwrap();
        let mut damaged = data.clone();
        let k = 255 - n;
        let mut per_block = std::collections::HashMap::<usize, usize>::new();
        for &(pos, v) in &hits {
            if data.is_empty() { break; }
            let p = pos % data.len();
            let b = p / k;
            let count = per_block.entry(b).or_default();
            if *count < n / 2 && damaged[p] == data[p] {
                damaged[p] ^= v;
                *count += 1;
            }
        }
        let report = c.decode(&mut damaged, &parity, &[], &ctl()).unwrap();
        prop_assert_eq!(&damaged, &data);
        prop_assert_eq!(report.corrected_blocks.len(), per_block.values().filter(|&&c| c > 0).count());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: scale("TV_RS_PROPTEST_CASES", 256), ..ProptestConfig::default() })]

    /// Adversarial input ("fuzz" in `cargo test`): arbitrary bytes as an inline chunk or as a
    /// data/parity pair, with arbitrary erasures, never panic; any success is verified output.
    #[test]
    fn arbitrary_bytes_never_panic_and_success_is_always_a_codeword(
        n in 1usize..=254,
        chunk in proptest::collection::vec(any::<u8>(), 0..1200),
        erasures in proptest::collection::vec(0u64..1300, 0..20),
        split in any::<usize>(),
    ) {
        let c = codec(n);
        if let Ok((data, _)) = c.recover_chunk(&chunk, &erasures, &ctl()) {
            // Re-protecting the recovered data gives a chunk within reach of the input.
            let again = c.protect_chunk(&data, &ctl()).unwrap();
            prop_assert_eq!(again.len(), chunk.len());
            let (back, report) = c.recover_chunk(&again, &[], &ctl()).unwrap();
            prop_assert_eq!(back, data);
            prop_assert_eq!(report, DecodeReport::default());
        }
        let cut = if chunk.is_empty() { 0 } else { split % chunk.len() };
        let (d, p) = chunk.split_at(cut);
        let mut data = d.to_vec();
        if let Ok(_report) = c.decode(&mut data, p, &erasures, &ctl()) {
            prop_assert_eq!(c.encode(&data, &ctl()).unwrap().len(), p.len());
        }
    }
}

/// Beyond the bound: count how often the decoder reports failure vs returns a different codeword
/// (mis-decode). The failure must never be "returned the damaged input unchanged as success".
/// Run with `--nocapture` to see the rates; the test asserts only what RS guarantees.
#[test]
fn beyond_the_bound_failures_and_miscorrections_are_measured() {
    use std::fmt::Write as _;
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut rnd = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut summary = String::new();
    for n in [2usize, 4, 16, 32] {
        let c = codec(n);
        let trials = scale("TV_RS_TRIALS", 1000);
        let (mut refused, mut miscorrected) = (0, 0);
        for _ in 0..trials {
            let len = 255 - n;
            let data: Vec<u8> = (0..len).map(|_| rnd() as u8).collect();
            let parity = c.encode(&data, &ctl()).unwrap();
            let mut cw = [&data[..], &parity[..]].concat();
            let original = cw.clone();
            let errors = n / 2 + 1 + (rnd() % 3) as usize;
            let picks: Vec<(usize, u8)> = (0..errors)
                .map(|_| (rnd() as usize, (rnd() as u8).max(1)))
                .collect();
            damage(&mut cw, &picks, errors, 0);
            let damaged = cw.clone();
            match c.decode_codeword(&mut cw, &[]) {
                Err(_) => {
                    refused += 1;
                    assert_eq!(cw, damaged, "a refused block is left untouched");
                }
                Ok(_) => {
                    // Whatever it returned must be a codeword (the syndrome guard); it is not the original.
                    assert_ne!(cw, original);
                    let mut s = vec![0u8; n];
                    assert!(decode::syndromes(&cw, &mut s));
                    miscorrected += 1;
                }
            }
        }
        let _ = writeln!(summary, "rs({n}) with t+1..t+3 errors: {refused}/{trials} refused, {miscorrected}/{trials} mis-decoded to another codeword");
        // A decoder error beyond the bound has probability at most about 1/t! per damaged block
        // (McEliece–Swanson): 2.5e-5 for rs(16), 5e-14 for rs(32). Anything far above that would be a
        // decoder bug; whatever is returned is a valid codeword (checked above), which the caller's
        // hash then rejects.
        let t = n / 2;
        let bound: f64 = 1.0 / (1..=t).map(|i| i as f64).product::<f64>();
        assert!(
            f64::from(miscorrected) <= 10.0 * bound * f64::from(trials) + 5.0,
            "rs({n}): {miscorrected}/{trials} mis-decodes"
        );
    }
    eprintln!("{summary}");
}

/// Manual throughput probe (not a benchmark of record): `cargo test --release -p tensorvault-core
/// --lib cpu_probe -- --ignored --nocapture` (`TV_RS_PROBE_N`, default 32). Every encoder path of this
/// CPU and SHA-256 of the same 64 MiB buffer (the machine-speed yardstick), interleaved over
/// `TV_RS_PROBE_ROUNDS` rounds (default 5), in MiB per second of the thread's CPU time
/// (`/proc/thread-self/stat`), medians.
#[test]
#[ignore = "manual throughput probe"]
fn cpu_probe() {
    use crate::ecc::cpu::Level;
    let n: usize = std::env::var("TV_RS_PROBE_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(32);
    let rounds: usize = std::env::var("TV_RS_PROBE_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let c = codec(n);
    let data: Vec<u8> = (0..64u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect();
    let mut parity = vec![0u8; c.ecc_len(data.len() as u64) as usize];
    let cpu = || -> f64 {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
        let fields: Vec<&str> = stat
            .rsplit(')')
            .next()
            .unwrap()
            .split_whitespace()
            .collect();
        (fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap()) / 100.0
    };
    let here = Level::detected();
    let mut names: Vec<String> = vec!["sha256 (yardstick)".into()];
    if here >= Level::Avx2 {
        names.push("avx2-sliced".into());
        names.push("avx2-interleaved".into());
    }
    if here >= Level::Avx512 {
        names.push("avx512-gfni".into());
    }
    names.push("portable".into());
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
    let mut sink = 0u8;
    for _ in 0..rounds {
        for (i, name) in names.iter().enumerate() {
            let mib = if name == "portable" { 16.0 } else { 64.0 };
            let len = (mib as usize) << 20;
            let plen = c.ecc_len(len as u64) as usize;
            let (d, p) = (&data[..len], &mut parity[..plen]);
            let c0 = cpu();
            let mut reps = 0;
            while reps < 2 || cpu() - c0 < 0.4 {
                match name.as_str() {
                    "sha256 (yardstick)" => sink ^= sha256(d)[0],
                    "portable" => c.enc.encode_blocks_portable(d, p),
                    #[cfg(target_arch = "x86_64")]
                    "avx2-sliced" => {
                        // SAFETY: AVX2 is present (`here >= Avx2`).
                        unsafe {
                            c.enc
                                .encode_blocks_avx2_with(super::encode::Avx2Kernel::Sliced, d, p);
                        }
                    }
                    #[cfg(target_arch = "x86_64")]
                    "avx2-interleaved" => {
                        // SAFETY: as above.
                        unsafe {
                            c.enc.encode_blocks_avx2_with(
                                super::encode::Avx2Kernel::Interleaved,
                                d,
                                p,
                            );
                        }
                    }
                    _ => c.enc.encode_blocks_at(Level::Avx512, d, p),
                }
                reps += 1;
            }
            rates[i].push(mib * f64::from(reps) / (cpu() - c0));
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let sha = median(&mut rates[0].clone());
    for (name, r) in names.iter().zip(rates.iter_mut()) {
        let m = median(r);
        eprintln!(
            "rs({n}) {name:28} {m:7.0} MiB/s per CPU-second ({:.2} GB/s), {:.2}x SHA-256 (rounds: {})",
            m * 1.048_576 / 1000.0,
            m / sha,
            r.iter().map(|x| format!("{x:.0}")).collect::<Vec<_>>().join(" ")
        );
    }
    eprintln!(
        "(sink {sink}; AVX2 kernel chosen for rs({n}): {})",
        c.enc.kernel_at(Level::Avx2)
    );
}

#[test]
fn parity_erasures_count_as_erasures() {
    let c = codec(10);
    let data: Vec<u8> = (0..2000u32).map(|i| (i * 37) as u8).collect();
    let parity = c.encode(&data, &ctl()).unwrap();
    let mut bad = parity.clone();
    let mut damaged = data.clone();
    // block 2: 5 erased data bytes + 5 erased parity bytes = 10 erasures (the bound)
    for j in 0..5 {
        damaged[490 + j] ^= 1;
        bad[20 + j] ^= 1;
    }
    let erasures: Vec<u64> = (490..495).collect();
    let parity_erasures: Vec<u64> = (20..25).collect();
    assert!(matches!(
        c.decode(&mut damaged.clone(), &bad, &erasures, &ctl()),
        Err(RsError::Uncorrectable { block: 2, .. })
    ));
    let report = c
        .decode_with_parity_erasures(&mut damaged, &bad, &erasures, &parity_erasures, &ctl())
        .unwrap();
    assert_eq!(damaged, data);
    assert_eq!(report.corrected_bytes, 10);
    assert_eq!(
        c.decode_with_parity_erasures(&mut damaged, &bad, &[], &[90], &ctl())
            .unwrap_err(),
        RsError::ErasureOutOfRange {
            position: 90,
            len: 90
        }
    );
}
