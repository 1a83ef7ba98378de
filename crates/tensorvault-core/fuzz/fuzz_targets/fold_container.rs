//! libFuzzer target: the `.fold` / `.mind` container reader on arbitrary bytes — file header, index
//! JSON, chunk records, layout, file-level checks, and every chunk read (CRC-32C, digest, rs(N),
//! AES-GCM, zstd with its budget). Invariants: nothing panics; a chunk read that succeeds returns
//! exactly the header's `uncomp_len` bytes; the index re-emitted in Form I parses and re-emits to the same text.
#![no_main]

use std::io::Write as _;

use libfuzzer_sys::fuzz_target;
use tensorvault_core::fold::json::{self, Form};
use tensorvault_core::fold::{FoldFile, OpenOptions, VerifyMode};
use tensorvault_core::Control;

fn scratch() -> std::path::PathBuf {
    let dir = if std::path::Path::new("/dev/shm").is_dir() {
        std::path::PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    dir.join(format!("tv-fuzz-fold-{}.fold", std::process::id()))
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, body)) = data.split_first() else { return };
    let path = scratch();
    {
        let Ok(mut f) = std::fs::File::create(&path) else { return };
        if f.write_all(body).is_err() {
            return;
        }
    }
    let opts = OpenOptions {
        hmac_key: (mode & 1 == 1).then(|| "chave-fold-ção".as_bytes().to_vec()),
        decryption_key: (mode & 2 == 2).then_some(core::array::from_fn(|i| i as u8)),
        verify: match (mode >> 2) & 3 {
            0 => VerifyMode::Lazy,
            1 => VerifyMode::Full,
            _ => VerifyMode::None,
        },
        degraded: mode & 16 == 16,
        max_payload: Some(1 << 20),
        ..OpenOptions::default()
    };
    let Ok(file) = FoldFile::open(&path, opts) else { return };
    let text = file.index().value.to_text(Form::I);
    // Text equality, not value equality: NaN != NaN.
    let again = json::parse(&text).map(|v| v.to_text(Form::I));
    assert_eq!(again.as_deref(), Ok(text.as_str()), "Form I must round-trip");
    for i in 0..file.index().entries.len() {
        if let Ok((p, _)) = file.read(i, &Control::new()) {
            let want = file.records()[i].as_ref().map(|r| r.uncomp_len).unwrap_or(u64::MAX);
            assert_eq!(file.bytes(&p).len() as u64, want, "payload length");
        }
    }
    let _ = file.verify_all(&Control::new());
});
