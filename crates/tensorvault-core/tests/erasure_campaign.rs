//! Corruption campaign for the erasure sidecar: fixed seeds, random damage to the protected file and to
//! the sidecar (bit flips, bursts, zeroed pages, truncation, appended garbage, header / table / parity
//! damage, combinations). An independent oracle (byte comparison against the originals) says what was
//! damaged and whether it is within budget. Required: zero silent wrong results, every case within the
//! budget repaired byte-exactly, every case beyond it reported with the damaged chunks listed.
//!
//! `TV_ECC_CAMPAIGN_CASES` sets the number of cases (default 300; `scripts/ecc-campaign.mjs` runs a long
//! release-mode campaign).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation,
    clippy::too_many_lines,
    clippy::many_single_char_names
)]

use std::collections::BTreeSet;
use std::path::Path;

use tensorvault_core::ecc::erasure::sidecar::{ChunkDigest, Layout, Params, BLOCK_LEN, HEADER_LEN};
use tensorvault_core::ecc::erasure::{
    protect, repair, verify, ErasureError, Format, Level, ProtectOptions, Status,
};
use tensorvault_core::hash::sha256;
use tensorvault_core::Control;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        // splitmix64
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Damage {
    BitFlips,
    Burst,
    ZeroPages,
    Truncate,
    AppendGarbage,
    HeaderA,
    HeaderB,
    BothHeaders,
    TableA,
    TableBoth,
    Parity,
    SidecarBurst,
    SidecarTruncate,
    SidecarAppend,
}

const ALL: [Damage; 14] = [
    Damage::BitFlips,
    Damage::Burst,
    Damage::ZeroPages,
    Damage::Truncate,
    Damage::AppendGarbage,
    Damage::HeaderA,
    Damage::HeaderB,
    Damage::BothHeaders,
    Damage::TableA,
    Damage::TableBoth,
    Damage::Parity,
    Damage::SidecarBurst,
    Damage::SidecarTruncate,
    Damage::SidecarAppend,
];

/// The part of `buf[a..b]` that exists.
fn clip(buf: &mut [u8], a: usize, b: usize) -> &mut [u8] {
    let n = buf.len();
    &mut buf[a.min(n)..b.min(n)]
}

/// Flip between 1 and `max` random bits.
fn flip_bits(rng: &mut Rng, buf: &mut [u8], max: u64) {
    if buf.is_empty() {
        return;
    }
    let count = 1 + rng.below(max);
    for _ in 0..count {
        let i = rng.below(buf.len() as u64) as usize;
        buf[i] ^= 1 << rng.below(8);
    }
}

fn burst(rng: &mut Rng, buf: &mut [u8], max_len: u64) {
    if buf.is_empty() {
        return;
    }
    let len = 1 + rng.below(max_len.max(1)) as usize;
    let start = rng.below(buf.len() as u64) as usize;
    let end = (start + len).min(buf.len());
    let garbage = rng.bytes(end - start);
    buf[start..end].copy_from_slice(&garbage);
}

fn apply(rng: &mut Rng, d: Damage, data: &mut Vec<u8>, side: &mut Vec<u8>, layout: &Layout) {
    let cs = layout.params.chunk_size().get();
    let budget = layout.stripes * layout.params.m() as u64 * cs;
    match d {
        Damage::BitFlips => flip_bits(rng, data, 2 * layout.params.m() as u64 + 2),
        Damage::Burst => burst(rng, data, budget + budget / 2 + 1),
        Damage::ZeroPages => {
            for _ in 0..=rng.below(4) {
                if data.len() >= 4096 {
                    let page = rng.below(data.len() as u64 / 4096) as usize;
                    data[page * 4096..(page + 1) * 4096].fill(0);
                }
            }
        }
        Damage::Truncate => {
            let cut = rng.below(budget + budget / 2 + 1) as usize;
            data.truncate(data.len().saturating_sub(cut));
        }
        Damage::AppendGarbage => {
            let n = 1 + rng.below(10_000) as usize;
            data.extend(rng.bytes(n));
        }
        Damage::HeaderA => flip_bits(rng, clip(side, 0, HEADER_LEN as usize), 3),
        Damage::HeaderB => {
            let at = layout.header_b_offset() as usize;
            flip_bits(rng, clip(side, at, at + HEADER_LEN as usize), 3);
        }
        Damage::BothHeaders => {
            flip_bits(rng, clip(side, 0, HEADER_LEN as usize), 1);
            let at = layout.header_b_offset() as usize;
            flip_bits(rng, clip(side, at, at + HEADER_LEN as usize), 1);
        }
        Damage::TableA => {
            let at = layout.table_a_offset() as usize;
            flip_bits(rng, clip(side, at, at + layout.table_len as usize), 4);
        }
        Damage::TableBoth => {
            let blocks = layout.table_len / BLOCK_LEN;
            let b = rng.below(blocks) as usize * BLOCK_LEN as usize;
            let same = rng.below(2) == 0;
            let b2 = if same {
                b
            } else {
                rng.below(blocks) as usize * BLOCK_LEN as usize
            };
            let a = layout.table_a_offset() as usize + b;
            flip_bits(rng, clip(side, a, a + BLOCK_LEN as usize), 1);
            let c = layout.table_b_offset() as usize + b2;
            flip_bits(rng, clip(side, c, c + BLOCK_LEN as usize), 1);
        }
        Damage::Parity => {
            let at = layout.parity_offset(0) as usize;
            let end = at + layout.parity_len as usize;
            flip_bits(rng, clip(side, at, end), 3);
        }
        Damage::SidecarBurst => burst(rng, side, 3 * cs),
        Damage::SidecarTruncate => {
            let cut = 1 + rng.below(side.len() as u64 / 3 + 1) as usize;
            side.truncate(side.len().saturating_sub(cut));
        }
        Damage::SidecarAppend => {
            let n = 1 + rng.below(5000) as usize;
            side.extend(rng.bytes(n));
        }
    }
}

/// What the oracle expects, from byte comparison with the originals.
struct Expect {
    damaged_chunks: BTreeSet<u64>,
    sidecar_unusable: bool,
    within_budget: bool,
}

fn region_damaged(orig: &[u8], now: &[u8], off: u64, len: u64) -> bool {
    let (a, b) = (off as usize, (off + len) as usize);
    now.len() < b || orig[a..b] != now[a..b]
}

fn oracle(layout: &Layout, data0: &[u8], data: &[u8], side0: &[u8], side: &[u8]) -> Expect {
    let mut damaged_chunks = BTreeSet::new();
    for i in 0..layout.chunks {
        let (off, len) = layout.chunk_range(i);
        if region_damaged(data0, data, off, len) {
            damaged_chunks.insert(i);
        }
    }
    let ha = region_damaged(side0, side, 0, HEADER_LEN);
    let hb = region_damaged(side0, side, layout.header_b_offset(), HEADER_LEN);
    let blocks = layout.table_len / BLOCK_LEN;
    let table_lost = (0..blocks).any(|b| {
        region_damaged(
            side0,
            side,
            layout.table_a_offset() + b * BLOCK_LEN,
            BLOCK_LEN,
        ) && region_damaged(
            side0,
            side,
            layout.table_b_offset() + b * BLOCK_LEN,
            BLOCK_LEN,
        )
    });
    // Two damaged header copies are still merged byte by byte when copy B is wholly present and found
    // (at the very end, or by its intact magic), every byte is intact in one of them, and they differ
    // in at most 12 bytes.
    let hbo = layout.header_b_offset() as usize;
    let hl = HEADER_LEN as usize;
    let mergeable = side.len() >= hbo + hl && {
        let (a, b, o) = (&side[..hl], &side[hbo..hbo + hl], &side0[..hl]);
        let found = side.len() == hbo + hl || b[..8] == o[..8];
        let diff = (0..hl).filter(|&i| a[i] != b[i]).count();
        found && diff <= 12 && (0..hl).all(|i| a[i] == o[i] || b[i] == o[i])
    };
    let sidecar_unusable = (ha && hb && !mergeable) || table_lost;
    let cs = layout.params.chunk_size().get();
    let mut per_stripe = vec![0usize; layout.stripes as usize];
    for &i in &damaged_chunks {
        per_stripe[layout.stripe_of(i).0 as usize] += 1;
    }
    for slot in 0..layout.parity_slots() {
        if region_damaged(side0, side, layout.parity_offset(slot), cs) {
            per_stripe[(slot % layout.stripes) as usize] += 1;
        }
    }
    let within_budget = per_stripe.iter().all(|&c| c <= layout.params.m());
    Expect {
        damaged_chunks,
        sidecar_unusable,
        within_budget,
    }
}

#[derive(Default, Debug)]
struct Counts {
    cases: u64,
    intact: u64,
    repaired: u64,
    unrepairable_reported: u64,
    sidecar_unusable_reported: u64,
    silent_wrong: u64,
}

fn run_case(dir: &Path, seed: u64, counts: &mut Counts) {
    let mut rng = Rng(seed);
    let k = 1 + rng.below(12) as u16;
    let m = 1 + rng.below(4) as u16;
    let chunks = rng.below(60);
    let len = if chunks == 0 {
        rng.below(3000)
    } else {
        (chunks - 1) * 4096 + 1 + rng.below(4096)
    };
    let data0 = rng.bytes(len as usize);
    let path = dir.join(format!("case-{seed}.bin"));
    let side_path = dir.join(format!("case-{seed}.bin.tvecc"));
    std::fs::write(&path, &data0).unwrap();
    // Odd seeds use SHA-256 chunk digests, even seeds BLAKE3 (the default): both locate damage.
    let digest = if seed % 2 == 1 {
        ChunkDigest::Sha256
    } else {
        ChunkDigest::Blake3
    };
    let params = Params::new(k, m, 4096).unwrap().with_digest(digest);
    let pr = protect(&path, None, ProtectOptions::Custom(params), &Control::new()).unwrap();
    let mtime0 = mtime_of(&path);
    let layout = pr.layout;
    assert_eq!(layout.params.digest(), digest);
    let side0 = std::fs::read(&side_path).unwrap();
    assert_eq!(side0.len() as u64, layout.sidecar_len);

    let mut data = data0.clone();
    let mut side = side0.clone();
    let n_damage = 1 + rng.below(3);
    let mut applied = vec![];
    for _ in 0..n_damage {
        let d = ALL[rng.below(ALL.len() as u64) as usize];
        apply(&mut rng, d, &mut data, &mut side, &layout);
        applied.push(d);
    }
    std::fs::write(&path, &data).unwrap();
    // The damage models the medium going bad, which leaves the modification time alone (an edit made
    // through the file system is what a stale sidecar is, tested in `stale_sidecar_*` below).
    set_mtime(&path, mtime0);
    std::fs::write(&side_path, &side).unwrap();
    let expect = oracle(&layout, &data0, &data, &side0, &side);
    let ctx = format!("seed {seed} k={k} m={m} len={len} damage={applied:?}");
    counts.cases += 1;

    let v = verify(&path, None, &Control::new());
    // Forced: a truncation or append changes the length, and one that takes most of the file makes the
    // sidecar look stale; the campaign checks what a repair does with the damage either way.
    let r = repair(&path, None, true, &Control::new());
    let after = std::fs::read(&path).unwrap();
    match (&v, &r) {
        (Err(ErasureError::SidecarCorrupt { .. }), Err(ErasureError::SidecarCorrupt { .. })) => {
            assert!(
                expect.sidecar_unusable,
                "sidecar reported unusable without cause: {ctx}"
            );
            assert_eq!(after, data, "file changed although repair failed: {ctx}");
            counts.sidecar_unusable_reported += 1;
        }
        (Ok(v), _) => {
            assert!(!expect.sidecar_unusable, "unusable sidecar accepted: {ctx}");
            let got: BTreeSet<u64> = v.damaged_chunks.iter().copied().collect();
            assert_eq!(got, expect.damaged_chunks, "damage located wrongly: {ctx}");
            match r {
                Ok(rep) => {
                    if sha256(&after) != sha256(&data0) {
                        counts.silent_wrong += 1;
                        panic!("SILENT WRONG RESULT: {ctx}");
                    }
                    assert!(expect.within_budget, "repaired beyond budget?: {ctx}");
                    assert_eq!(rep.after.status, Status::Intact, "{ctx}");
                    assert_eq!(
                        std::fs::read(&side_path).unwrap(),
                        side0,
                        "sidecar not restored: {ctx}"
                    );
                    if v.status == Status::Intact {
                        counts.intact += 1;
                    } else {
                        counts.repaired += 1;
                    }
                }
                Err(ErasureError::Unrepairable { chunks, .. }) => {
                    assert!(
                        !expect.within_budget,
                        "within budget but not repaired: {ctx}"
                    );
                    assert_eq!(v.damage_status, Status::Unrepairable, "{ctx}");
                    assert!(
                        !chunks.is_empty() || !v.unrepairable_stripes.is_empty(),
                        "{ctx}"
                    );
                    assert!(
                        chunks.iter().all(|c| expect.damaged_chunks.contains(c)),
                        "{ctx}"
                    );
                    assert_eq!(after, data, "file changed although repair failed: {ctx}");
                    counts.unrepairable_reported += 1;
                }
                Err(e) => panic!("unexpected repair error {e}: {ctx}"),
            }
        }
        (v, r) => panic!("inconsistent outcome verify={v:?} repair={r:?}: {ctx}"),
    }
    std::fs::remove_file(&path).unwrap();
    std::fs::remove_file(&side_path).unwrap();
}

#[test]
fn corruption_campaign_has_zero_silent_wrong_results() {
    let cases: u64 = std::env::var("TV_ECC_CAMPAIGN_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    let first: u64 = std::env::var("TV_ECC_CAMPAIGN_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let dir = tempfile::tempdir().unwrap();
    let mut counts = Counts::default();
    for seed in first..first + cases {
        run_case(dir.path(), seed, &mut counts);
    }
    println!("erasure campaign: {counts:?}");
    assert_eq!(counts.silent_wrong, 0);
    assert_eq!(counts.cases, cases);
    // The damage mix must exercise every outcome.
    assert!(
        counts.repaired > 0
            && counts.unrepairable_reported > 0
            && counts.sidecar_unusable_reported > 0,
        "{counts:?}"
    );
}

#[test]
fn any_single_burst_up_to_the_parity_size_is_repaired() {
    // With interleaving, a burst of (m·S − 1)·chunk + 1 bytes touches at most m·S consecutive chunks,
    // hence at most m per stripe, wherever it starts.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("burst.bin");
    let mut rng = Rng(77);
    let data0 = rng.bytes(4096 * 37 + 1000);
    let params = Params::new(5, 2, 4096).unwrap();
    for start in [0usize, 1, 4095, 4096, 20_000, 60_001, 100_000] {
        std::fs::write(&path, &data0).unwrap();
        let layout = protect(&path, None, ProtectOptions::Custom(params), &Control::new())
            .unwrap()
            .layout;
        let burst = ((layout.params.m() as u64 * layout.stripes - 1) * 4096 + 1) as usize;
        let mut data = data0.clone();
        let end = (start + burst).min(data.len());
        for b in &mut data[start..end] {
            *b ^= 0x5a;
        }
        std::fs::write(&path, &data).unwrap();
        let v = verify(&path, None, &Control::new()).unwrap();
        assert_eq!(v.status, Status::Repairable, "start {start}");
        repair(&path, None, false, &Control::new()).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), data0, "start {start}");
    }
}

#[test]
fn empty_file_is_protected_and_appended_garbage_is_removed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.bin");
    std::fs::write(&path, b"").unwrap();
    let pr = protect(&path, None, ProtectOptions::default(), &Control::new()).unwrap();
    assert_eq!((pr.layout.chunks, pr.layout.stripes), (0, 0));
    assert_eq!(pr.layout.sidecar_len, 2 * HEADER_LEN);
    assert_eq!(
        verify(&path, None, &Control::new()).unwrap().status,
        Status::Intact
    );
    // Writing into a protected empty file is an edit (its length changed and every byte is new): the
    // sidecar is stale, and only a forced repair truncates the file back.
    std::fs::write(&path, b"garbage").unwrap();
    let v = verify(&path, None, &Control::new()).unwrap();
    assert_eq!(
        (v.status, v.damage_status, v.actual_len),
        (Status::Stale, Status::Repairable, 7)
    );
    assert!(matches!(
        repair(&path, None, false, &Control::new()),
        Err(ErasureError::StaleSidecar { .. })
    ));
    assert_eq!(std::fs::read(&path).unwrap(), b"garbage");
    repair(&path, None, true, &Control::new()).unwrap();
    assert!(std::fs::read(&path).unwrap().is_empty());
    // A few bytes appended to a larger file are damage: repaired without force.
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&path, &data).unwrap();
    protect(&path, None, ProtectOptions::default(), &Control::new()).unwrap();
    let mut longer = data.clone();
    longer.extend_from_slice(b"garbage");
    std::fs::write(&path, &longer).unwrap();
    let v = verify(&path, None, &Control::new()).unwrap();
    assert_eq!(
        (v.status, v.modified_since_protect),
        (Status::Repairable, Some(true))
    );
    repair(&path, None, false, &Control::new()).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), data);
}

fn mtime_of(path: &Path) -> std::time::SystemTime {
    std::fs::metadata(path).unwrap().modified().unwrap()
}

fn set_mtime(path: &Path, t: std::time::SystemTime) {
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(t)
        .unwrap();
}

/// Issue 13, item 16: a legitimate edit made after `protect` (most of the file rewritten, modification
/// time changed) is reported `Stale`, and `repair` refuses to roll it back unless forced.
#[test]
fn stale_sidecar_is_reported_and_not_rolled_back_without_force() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("edited.bin");
    let mut rng = Rng(5);
    let data0 = rng.bytes(20_000);
    std::fs::write(&path, &data0).unwrap();
    // 5 chunks of 4 KiB, k = 3, m = 2: an edit of 3 of the 5 chunks is still within the parity budget,
    // so the old code "repaired" it, silently rolling the edit back.
    let params = Params::new(3, 2, 4096).unwrap();
    protect(&path, None, ProtectOptions::Custom(params), &Control::new()).unwrap();
    let t0 = mtime_of(&path);
    let mut edited = data0.clone();
    for b in &mut edited[..12_288] {
        *b = b.wrapping_add(1);
    }
    std::fs::write(&path, &edited).unwrap();
    set_mtime(&path, t0 + std::time::Duration::from_secs(60));
    let v = verify(&path, None, &Control::new()).unwrap();
    assert_eq!(v.status, Status::Stale);
    assert_eq!(v.damage_status, Status::Repairable);
    assert_eq!(v.modified_since_protect, Some(true));
    assert_eq!(v.differing_bytes, 12_288);
    match repair(&path, None, false, &Control::new()) {
        Err(ErasureError::StaleSidecar {
            differing_bytes,
            file_len,
            ..
        }) => assert_eq!((differing_bytes, file_len), (12_288, 20_000)),
        other => panic!("expected StaleSidecar, got {other:?}"),
    }
    assert_eq!(std::fs::read(&path).unwrap(), edited, "the edit is kept");
    // Forced: rolled back to the protected bytes, with the protected modification time.
    let r = repair(&path, None, true, &Control::new()).unwrap();
    assert_eq!(r.before.status, Status::Stale);
    assert_eq!(r.after.status, Status::Intact);
    assert_eq!(std::fs::read(&path).unwrap(), data0);
    assert_eq!(mtime_of(&path), t0);

    // The same bytes changed with the modification time left alone (media damage): repaired as before.
    std::fs::write(&path, &edited).unwrap();
    set_mtime(&path, t0);
    let v = verify(&path, None, &Control::new()).unwrap();
    assert_eq!(
        (v.status, v.modified_since_protect),
        (Status::Repairable, Some(false))
    );
    repair(&path, None, false, &Control::new()).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), data0);

    // An edit of a minority of the file with a new modification time is still repaired (damage by a
    // stray write looks the same), and the report says the file was modified.
    let mut small = data0.clone();
    small[100] ^= 1;
    std::fs::write(&path, &small).unwrap();
    set_mtime(&path, t0 + std::time::Duration::from_secs(60));
    let v = verify(&path, None, &Control::new()).unwrap();
    assert_eq!(
        (v.status, v.modified_since_protect),
        (Status::Repairable, Some(true))
    );
    repair(&path, None, false, &Control::new()).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), data0);
    // A touched but intact file is intact.
    set_mtime(&path, t0 + std::time::Duration::from_secs(120));
    assert_eq!(
        verify(&path, None, &Control::new()).unwrap().status,
        Status::Intact
    );
}

/// Issue 21, item 1: in a small file (one to a few chunks, `k ≤ 2m`) one changed byte damages a chunk
/// that is most of the file. With a new modification time (a stray write) it was reported `Stale` and
/// the repair refused, saying "80 of its 80 bytes differ" though one byte did. The damaged chunks are
/// now rebuilt in memory and compared: one byte differs, the file is `Repairable`, and repaired.
#[test]
fn one_byte_changed_in_a_small_file_with_a_new_mtime_is_repairable_not_stale() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng(21);
    for (size, format) in [
        (80usize, Format::Auto),
        (4072, Format::Auto),
        (8072, Format::Auto),
        (8072, Format::V2),
    ] {
        let path = dir.path().join(format!("small-{size}-{format:?}.bin"));
        let data0 = rng.bytes(size);
        std::fs::write(&path, &data0).unwrap();
        protect(
            &path,
            None,
            ProtectOptions::LevelFormat(Level::Medium, ChunkDigest::default(), format),
            &Control::new(),
        )
        .unwrap();
        let t0 = mtime_of(&path);
        let mut changed = data0.clone();
        changed[9] ^= 0x5a;
        std::fs::write(&path, &changed).unwrap();
        set_mtime(&path, t0 + std::time::Duration::from_secs(60));
        let v = verify(&path, None, &Control::new()).unwrap();
        assert_eq!(
            (
                v.status,
                v.modified_since_protect,
                v.differing_bytes,
                v.differing_exact
            ),
            (Status::Repairable, Some(true), 1, true),
            "{size} bytes, {format:?}"
        );
        let r = repair(&path, None, false, &Control::new()).unwrap();
        assert_eq!(r.after.status, Status::Intact);
        assert_eq!(std::fs::read(&path).unwrap(), data0, "{size} bytes");

        // The first chunk rewritten (most of the file): an edit, still stale, the exact count in the error.
        let n = size.min(4096);
        let edited: Vec<u8> = data0
            .iter()
            .enumerate()
            .map(|(i, b)| if i < n { b.wrapping_add(1) } else { *b })
            .collect();
        std::fs::write(&path, &edited).unwrap();
        set_mtime(&path, t0 + std::time::Duration::from_secs(60));
        let v = verify(&path, None, &Control::new()).unwrap();
        assert_eq!(
            (v.status, v.differing_bytes, v.differing_exact),
            (Status::Stale, n as u64, true),
            "{size} bytes, {format:?}"
        );
        match repair(&path, None, false, &Control::new()) {
            Err(e @ ErasureError::StaleSidecar { .. }) => {
                assert!(
                    e.to_string()
                        .contains(&format!("{n} of its {size} bytes differ")),
                    "{e}"
                );
            }
            other => panic!("expected StaleSidecar, got {other:?}"),
        }
        assert_eq!(std::fs::read(&path).unwrap(), edited, "the edit is kept");
    }
}

/// A stale pair whose damage parity cannot rebuild is not compared byte by byte: the error says the
/// damaged chunks hold those bytes, not that every one of them differs.
#[test]
fn a_stale_pair_beyond_the_budget_does_not_claim_bytes_it_did_not_compare() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("edited.bin");
    let data0 = Rng(22).bytes(5 * 4096);
    std::fs::write(&path, &data0).unwrap();
    let params = Params::new(3, 2, 4096).unwrap();
    protect(&path, None, ProtectOptions::Custom(params), &Control::new()).unwrap();
    let t0 = mtime_of(&path);
    // One byte in each of the five chunks: more damaged chunks per stripe than parity (m = 2).
    let mut edited = data0.clone();
    for c in 0..5 {
        edited[c * 4096 + 1] ^= 1;
    }
    std::fs::write(&path, &edited).unwrap();
    set_mtime(&path, t0 + std::time::Duration::from_secs(60));
    let v = verify(&path, None, &Control::new()).unwrap();
    assert_eq!(
        (
            v.status,
            v.damage_status,
            v.differing_bytes,
            v.differing_exact
        ),
        (Status::Stale, Status::Unrepairable, 20_480, false)
    );
    match repair(&path, None, false, &Control::new()) {
        Err(e @ ErasureError::StaleSidecar { .. }) => {
            let m = e.to_string();
            assert!(
                m.contains("chunks holding 20480 of its 20480 bytes differ"),
                "{m}"
            );
        }
        other => panic!("expected StaleSidecar, got {other:?}"),
    }
}
