//! The primitives of the `.fold` format, each from a well-kept crate: CRC-32C (`crc32c`), SHA-256 and
//! HMAC-SHA-256 digest strings (§8.2), the BLAKE2b-256 Merkle tree (§8.5), Ed25519 (§8.6),
//! AES-256-GCM (§10) and zstd frames with a decompression budget (§11).

use aes_gcm::aead::{Aead, KeyInit, Payload};
use blake2::digest::consts::U32;
use blake2::{Blake2b, Digest as _};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// CRC-32C (Castagnoli) of `data`.
#[must_use]
pub fn crc32c(data: &[u8]) -> u32 {
    crc32c::crc32c(data)
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Lowercase hex of `bytes`.
#[must_use]
pub fn to_hex(bytes: &[u8]) -> String {
    hex(bytes)
}

/// Bytes of a lowercase or uppercase hex string.
#[must_use]
pub fn from_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || !s.is_ascii() {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect()
}

/// The digest string of `data` (§8.2): `sha256:<hex>` without a key, `hmac-sha256:<hex>` of the
/// ASCII hex SHA-256 with one.
#[must_use]
pub fn digest(key: Option<&[u8]>, data: &[u8]) -> String {
    let plain = hex(&Sha256::digest(data));
    match key {
        None => format!("sha256:{plain}"),
        Some(k) => {
            let mac = match <Hmac<Sha256> as Mac>::new_from_slice(k) {
                Ok(mut m) => {
                    m.update(plain.as_bytes());
                    m.finalize().into_bytes().to_vec()
                }
                // HMAC accepts keys of any length; this arm is unreachable.
                Err(_) => Vec::new(),
            };
            format!("hmac-sha256:{}", hex(&mac))
        }
    }
}

/// The digest string of `data` in the form `stored` uses: bare hex (legacy `PyFolds`, never keyed),
/// otherwise [`digest`].
#[must_use]
pub fn digest_like(stored: &str, key: Option<&[u8]>, data: &[u8]) -> String {
    if stored.contains(':') {
        digest(key, data)
    } else {
        hex(&Sha256::digest(data))
    }
}

/// Compare two strings in time independent of where they differ.
#[must_use]
pub fn ct_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

type Blake2b256 = Blake2b<U32>;

fn blake(prefix: u8, parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Blake2b256::new();
    h.update([prefix]);
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// Every level of the Merkle tree over `leaves` (leaf inputs), leaves first, root last (§8.5).
/// Empty for no leaves.
#[must_use]
pub fn merkle_levels(leaves: &[Vec<u8>]) -> Vec<Vec<[u8; 32]>> {
    let mut level: Vec<[u8; 32]> = leaves.iter().map(|l| blake(b'L', &[l])).collect();
    let mut levels = Vec::new();
    while level.len() > 1 {
        let next = level
            .chunks(2)
            .map(|pair| match pair {
                [a, b] => blake(b'N', &[a, b]),
                [a] => blake(b'N', &[a, a]),
                _ => [0; 32],
            })
            .collect();
        levels.push(std::mem::replace(&mut level, next));
    }
    if !level.is_empty() {
        levels.push(level);
    }
    levels
}

/// The Merkle root over `leaves`, lowercase hex; `None` for no leaves.
#[must_use]
pub fn merkle_root(leaves: &[Vec<u8>]) -> Option<String> {
    merkle_levels(leaves)
        .last()
        .and_then(|l| l.first())
        .map(|r| hex(r))
}

/// Verify an Ed25519 signature (strict: no small-order keys, canonical S).
#[must_use]
pub fn ed25519_verify(public: &[u8; 32], message: &[u8], signature: &[u8]) -> bool {
    let Ok(sig) = ed25519_dalek::Signature::from_slice(signature) else {
        return false;
    };
    ed25519_dalek::VerifyingKey::from_bytes(public)
        .is_ok_and(|k| k.verify_strict(message, &sig).is_ok())
}

/// Sign with the Ed25519 key whose 32-byte seed is `seed`.
#[must_use]
pub fn ed25519_sign(seed: &[u8; 32], message: &[u8]) -> [u8; 64] {
    use ed25519_dalek::Signer as _;
    ed25519_dalek::SigningKey::from_bytes(seed)
        .sign(message)
        .to_bytes()
}

/// The public key of the seed `seed`.
#[must_use]
pub fn ed25519_public(seed: &[u8; 32]) -> [u8; 32] {
    ed25519_dalek::SigningKey::from_bytes(seed)
        .verifying_key()
        .to_bytes()
}

/// AES-256-GCM encrypt `plain` with `aad`; returns ciphertext ‖ tag.
#[must_use]
pub fn aes_gcm_encrypt(
    key: &[u8; 32],
    nonce: &[u8; 12],
    aad: &[u8],
    plain: &[u8],
) -> Option<Vec<u8>> {
    let cipher = aes_gcm::Aes256Gcm::new(key.into());
    cipher
        .encrypt(nonce.into(), Payload { msg: plain, aad })
        .ok()
}

/// AES-256-GCM decrypt ciphertext ‖ tag; `None` when the tag does not verify.
#[must_use]
pub fn aes_gcm_decrypt(
    key: &[u8; 32],
    nonce: &[u8; 12],
    aad: &[u8],
    sealed: &[u8],
) -> Option<Vec<u8>> {
    let cipher = aes_gcm::Aes256Gcm::new(key.into());
    cipher
        .decrypt(nonce.into(), Payload { msg: sealed, aad })
        .ok()
}

/// What is wrong with a zstd frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ZstdProblem {
    /// Not a zstd frame, or a damaged one.
    Invalid(String),
    /// The frame does not record its content size (`PyFolds` cannot read such frames either).
    NoContentSize,
    /// The frame's declared size differs from the chunk header's `uncomp_len`.
    SizeMismatch { declared: u64 },
    /// Bytes after the first frame.
    TrailingBytes { frame_len: u64 },
    /// The declared size is above the caller's budget.
    OverBudget { declared: u64 },
}

/// Decompress one zstd frame that must declare exactly `expected` bytes of content, be the whole of
/// `src`, and fit `budget`; the output never grows beyond `expected` (no decompression bomb).
pub fn zstd_decompress(src: &[u8], expected: u64, budget: u64) -> Result<Vec<u8>, ZstdProblem> {
    use zstd::zstd_safe;
    let declared = match zstd_safe::get_frame_content_size(src) {
        Ok(Some(n)) => n,
        Ok(None) => return Err(ZstdProblem::NoContentSize),
        Err(_) => return Err(ZstdProblem::Invalid("not a zstd frame".into())),
    };
    if declared != expected {
        return Err(ZstdProblem::SizeMismatch { declared });
    }
    if declared > budget {
        return Err(ZstdProblem::OverBudget { declared });
    }
    let frame_len = zstd_safe::find_frame_compressed_size(src)
        .map_err(|c| ZstdProblem::Invalid(zstd_safe::get_error_name(c).to_string()))?;
    if frame_len != src.len() {
        return Err(ZstdProblem::TrailingBytes {
            frame_len: frame_len as u64,
        });
    }
    let cap = usize::try_from(declared).map_err(|_| ZstdProblem::OverBudget { declared })?;
    let out = zstd::bulk::decompress(src, cap).map_err(|e| ZstdProblem::Invalid(e.to_string()))?;
    if out.len() as u64 != expected {
        return Err(ZstdProblem::SizeMismatch {
            declared: out.len() as u64,
        });
    }
    Ok(out)
}

/// One zstd frame of `data` at `level`, with the content size in the frame header.
pub fn zstd_compress(data: &[u8], level: i32) -> std::io::Result<Vec<u8>> {
    let mut c = zstd::bulk::Compressor::new(level)?;
    c.set_parameter(zstd::zstd_safe::CParameter::ContentSizeFlag(true))?;
    c.set_parameter(zstd::zstd_safe::CParameter::ChecksumFlag(false))?;
    c.compress(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_answers() {
        assert_eq!(crc32c(b"123456789"), 0xe306_9283);
        assert_eq!(crc32c(b""), 0);
        assert_eq!(
            digest(None, b"abc"),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            digest(Some("chave-fold-ção".as_bytes()), b"abc"),
            "hmac-sha256:d7f9eba32f355edc23d4c3b422ca6f97facd46cf03d43df5a6200453ea2a4e49"
        );
        let leaves = |n: usize| -> Vec<Vec<u8>> {
            (0..n).map(|i| format!("leaf{i}").into_bytes()).collect()
        };
        let want = [
            "1a1cc12836859da2a5700919b9b585a76c81714c0a845bc9d53efc06bbce4eb9",
            "34565921b0762e17b1f1c11f110ca93fb76ac6771e1846ee1b7bb5bab1162f89",
            "701f376ca58befb68a5bf1afd47eface25d120611b0049123a1ba76c8424d623",
            "abde37aeee87beb992e1561310f716790edbbbcc41feef43b1f461bdeb873167",
            "d415b7a4ac953de619c87b008e52b57458b547138f9a8bdd9baabd87ef880001",
        ];
        for (i, w) in want.iter().enumerate() {
            assert_eq!(merkle_root(&leaves(i + 1)).unwrap(), *w);
        }
        let mut dup = leaves(3);
        dup.push(b"leaf2".to_vec());
        assert_eq!(merkle_root(&dup).unwrap(), want[2]);
        assert_eq!(merkle_root(&[]), None);
    }

    #[test]
    fn zstd_frames_pledge_their_size_and_bombs_are_refused() {
        let empty = zstd_compress(b"", 3).unwrap();
        assert_eq!(to_hex(&empty), "28b52ffd2000010000");
        let data = vec![7u8; 100_000];
        let f = zstd_compress(&data, 3).unwrap();
        assert_eq!(zstd_decompress(&f, 100_000, u64::MAX).unwrap(), data);
        assert_eq!(
            zstd_decompress(&f, 10, u64::MAX),
            Err(ZstdProblem::SizeMismatch { declared: 100_000 })
        );
        assert_eq!(
            zstd_decompress(&f, 100_000, 1000),
            Err(ZstdProblem::OverBudget { declared: 100_000 })
        );
        let mut trailing = f.clone();
        trailing.push(0);
        assert!(matches!(
            zstd_decompress(&trailing, 100_000, u64::MAX),
            Err(ZstdProblem::TrailingBytes { .. })
        ));
    }

    #[test]
    fn gcm_and_ed25519_round_trip() {
        let key = [9u8; 32];
        let nonce = [1u8; 12];
        let sealed = aes_gcm_encrypt(&key, &nonce, b"name", b"hello").unwrap();
        assert_eq!(sealed.len(), 5 + 16);
        assert_eq!(
            aes_gcm_decrypt(&key, &nonce, b"name", &sealed).unwrap(),
            b"hello"
        );
        assert!(aes_gcm_decrypt(&key, &nonce, b"other", &sealed).is_none());
        let seed = [3u8; 32];
        let sig = ed25519_sign(&seed, b"msg");
        assert!(ed25519_verify(&ed25519_public(&seed), b"msg", &sig));
        assert!(!ed25519_verify(&ed25519_public(&seed), b"msh", &sig));
    }
}
