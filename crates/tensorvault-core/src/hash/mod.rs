//! SHA-256 (streaming, SHA-NI accelerated through `sha2`'s runtime CPU detection), HMAC-SHA256, file
//! hashing with large pipelined reads, and the parallel chunk tree (`docs/formats/chunk-tree.md`).

mod file;
mod tree;

pub use file::{hash_file, hash_pieces, FileDigest, HashFileOptions, HashMode, Piece};
pub use tree::{ChunkSize, ChunkTree, TREE_HEADER_LEN, TREE_MAGIC};

use hmac::{Hmac, Mac};
use sha2::Digest as _;

use crate::io::IoError;

/// Length of a SHA-256 digest in bytes.
pub const DIGEST_LEN: usize = 32;

/// A SHA-256 digest.
pub type Digest = [u8; DIGEST_LEN];

/// Why a hashing operation failed.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// Opening or reading the input failed.
    #[error(transparent)]
    Io(#[from] IoError),
    /// The chunk size is not a power of two between [`ChunkSize::MIN`] and [`ChunkSize::MAX`].
    #[error("invalid chunk size {chunk_size}: must be a power of two from {min} to {max} bytes")]
    InvalidChunkSize { chunk_size: u64, min: u64, max: u64 },
    /// A stored tree does not match the length it claims to cover.
    #[error("chunk tree has {actual} leaves but {expected} are needed for {total_len} bytes")]
    LeafCountMismatch {
        expected: u64,
        actual: u64,
        total_len: u64,
    },
    /// The worker thread pool could not be created.
    #[error("cannot start {threads} hashing threads: {reason}")]
    ThreadPool { threads: usize, reason: String },
    /// The caller cancelled the operation.
    #[error("hashing was cancelled")]
    Cancelled,
    /// The item boundaries of a batch ([`sha256_many`]) do not describe the buffer: an end goes
    /// backwards or past the buffer, or the last end is not the buffer's length.
    #[error(
        "batch item {index}: end {end} is invalid (previous end {previous}, buffer length {len})"
    )]
    InvalidBatchBounds {
        index: u64,
        end: u64,
        previous: u64,
        len: u64,
    },
}

impl From<crate::control::Cancelled> for HashError {
    fn from(_: crate::control::Cancelled) -> Self {
        Self::Cancelled
    }
}

/// Incremental SHA-256.
#[derive(Clone, Default)]
pub struct Sha256(sha2::Sha256);

impl Sha256 {
    /// A new, empty hash state.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Feed more bytes.
    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    /// The digest of everything fed so far; the state is consumed.
    #[must_use]
    pub fn finalize(self) -> Digest {
        self.0.finalize().into()
    }
}

/// SHA-256 of `data` in one call.
#[must_use]
pub fn sha256(data: &[u8]) -> Digest {
    sha2::Sha256::digest(data).into()
}

/// SHA-256 of many items packed in one buffer, in one call: item `i` is `data[ends[i-1]..ends[i]]`
/// (the first starts at 0). `ends` must not go backwards and the last must equal `data.len()`; an empty
/// `ends` needs an empty `data`. Returns the digests concatenated (32 bytes per item, in order).
///
/// This is the batch form for many small inputs (event-log preimages): one call instead of one per
/// item, so a caller across an FFI boundary pays the crossing once.
pub fn sha256_many<E: Copy + Into<u64>>(data: &[u8], ends: &[E]) -> Result<Vec<u8>, HashError> {
    let mut out = Vec::with_capacity(ends.len() * DIGEST_LEN);
    for_each_item(data, ends, |item| out.extend_from_slice(&sha256(item)))?;
    Ok(out)
}

/// [`sha256_many`] with the digests as one lower-case hex string (64 characters per item).
pub fn sha256_many_hex<E: Copy + Into<u64>>(data: &[u8], ends: &[E]) -> Result<String, HashError> {
    let mut out = Vec::with_capacity(ends.len() * DIGEST_LEN * 2);
    for_each_item(data, ends, |item| push_hex(&mut out, &sha256(item)))?;
    // Only ASCII hex digits were pushed.
    Ok(String::from_utf8(out).unwrap_or_default())
}

fn for_each_item<E: Copy + Into<u64>>(
    data: &[u8],
    ends: &[E],
    mut f: impl FnMut(&[u8]),
) -> Result<(), HashError> {
    let len = data.len() as u64;
    let mut previous = 0u64;
    for (i, end) in ends.iter().enumerate() {
        let end: u64 = (*end).into();
        let last = i + 1 == ends.len();
        let bad = || HashError::InvalidBatchBounds {
            index: i as u64,
            end,
            previous,
            len,
        };
        if end < previous || end > len || (last && end != len) {
            return Err(bad());
        }
        // Both bounds were checked against `data.len()` just above.
        let item = usize::try_from(previous)
            .ok()
            .zip(usize::try_from(end).ok())
            .and_then(|(a, b)| data.get(a..b))
            .ok_or_else(bad)?;
        f(item);
        previous = end;
    }
    if ends.is_empty() && !data.is_empty() {
        return Err(HashError::InvalidBatchBounds {
            index: 0,
            end: 0,
            previous: 0,
            len,
        });
    }
    Ok(())
}

#[allow(clippy::indexing_slicing)] // INVARIANT: a nibble is below 16, the table's length
fn push_hex(out: &mut Vec<u8>, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        out.push(HEX[usize::from(b >> 4)]);
        out.push(HEX[usize::from(b & 15)]);
    }
}

/// HMAC-SHA256 (RFC 2104) of `data` under `key`; any key length is accepted.
#[must_use]
pub fn hmac_sha256(key: &[u8], data: &[u8]) -> Digest {
    // HMAC accepts keys of every length (long keys are hashed first), so `new_from_slice` cannot fail;
    // the fallback keeps the function total without a panic path.
    match Hmac::<sha2::Sha256>::new_from_slice(key) {
        Ok(mut mac) => {
            mac.update(data);
            mac.finalize().into_bytes().into()
        }
        Err(_) => hmac_fallback(key, data),
    }
}

/// Textbook HMAC-SHA256, used only if the `hmac` crate ever refused a key.
fn hmac_fallback(key: &[u8], data: &[u8]) -> Digest {
    let hashed_key;
    let key = if key.len() > 64 {
        hashed_key = sha256(key);
        &hashed_key[..]
    } else {
        key
    };
    let mut block = [0u8; 64];
    for (dst, src) in block.iter_mut().zip(key) {
        *dst = *src;
    }
    let mut inner = Sha256::new();
    inner.update(&block.map(|b| b ^ 0x36));
    inner.update(data);
    let mut outer = Sha256::new();
    outer.update(&block.map(|b| b ^ 0x5c));
    outer.update(&inner.finalize());
    outer.finalize()
}

/// Lower-case hexadecimal of `bytes`.
#[must_use]
pub fn to_hex(bytes: &[u8]) -> String {
    let mut out = Vec::with_capacity(bytes.len() * 2);
    push_hex(&mut out, bytes);
    // Only ASCII hex digits were pushed.
    String::from_utf8(out).unwrap_or_default()
}

/// The value of a lower-case hex digit and 0, or anything and 1 for every other byte (upper case,
/// signs…). Arithmetic, not a table: the loop in [`from_hex`] vectorizes (a table lookup per byte
/// does not, and decoding a sidecar's 32 KB of leaves is on every checkpoint open).
#[inline]
fn hex_digit(c: u8) -> (u8, u8) {
    let d = c.wrapping_sub(b'0');
    let a = c.wrapping_sub(b'a');
    let is_digit = d < 10;
    let is_letter = a < 6;
    let v = if is_digit { d } else { a.wrapping_add(10) };
    (v, u8::from(!(is_digit | is_letter)))
}

/// Whether `s` is a 32-byte digest as 64 lower-case hex digits (the form every digest here is written in).
#[must_use]
pub fn is_lower_hex_digest(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
}

/// The bytes of lower-case hexadecimal `hex` (the inverse of [`to_hex`]), or None for an odd length or
/// any other character (upper case included). Branch-free over the digits.
#[must_use]
pub fn from_hex(hex: &[u8]) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    let mut out = vec![0u8; hex.len() / 2];
    let mut invalid = 0u8;
    // 32 digits at a time through fixed-size arrays: the digit loop becomes vector code.
    let mut blocks_out = out.chunks_exact_mut(16);
    let mut blocks_in = hex.chunks_exact(32);
    for (o, i) in (&mut blocks_out).zip(&mut blocks_in) {
        let (Ok(o), Ok(i)) = (<&mut [u8; 16]>::try_from(o), <&[u8; 32]>::try_from(i)) else {
            return None;
        };
        let mut v = [0u8; 32];
        for (d, &c) in v.iter_mut().zip(i) {
            let (x, bad) = hex_digit(c);
            *d = x;
            invalid |= bad;
        }
        for (b, pair) in o.iter_mut().zip(v.chunks_exact(2)) {
            if let [hi, lo] = *pair {
                *b = (hi << 4) | (lo & 0x0f);
            }
        }
    }
    for (b, pair) in blocks_out
        .into_remainder()
        .iter_mut()
        .zip(blocks_in.remainder().chunks_exact(2))
    {
        if let [hi, lo] = *pair {
            let (h, hb) = hex_digit(hi);
            let (l, lb) = hex_digit(lo);
            invalid |= hb | lb;
            *b = (h << 4) | (l & 0x0f);
        }
    }
    (invalid == 0).then_some(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::cast_possible_truncation)]
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    // FIPS 180-4 / NIST CSRC example values.
    #[test]
    fn from_hex_inverts_to_hex_and_refuses_the_rest() {
        let bytes: Vec<u8> = (0..=255u8).collect();
        assert_eq!(from_hex(to_hex(&bytes).as_bytes()), Some(bytes));
        assert_eq!(from_hex(b""), Some(Vec::new()));
        for bad in [&b"0"[..], b"0g", b"AB", b"+1", b"abc"] {
            assert_eq!(from_hex(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn from_hex_takes_exactly_the_lower_case_digits() {
        let digit = |c: u8| match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        };
        for hi in 0..=255u8 {
            for lo in 0..=255u8 {
                let want = digit(hi).zip(digit(lo)).map(|(h, l)| vec![(h << 4) | l]);
                assert_eq!(from_hex(&[hi, lo]), want, "{hi} {lo}");
            }
        }
    }

    #[test]
    fn from_hex_refuses_a_bad_digit_anywhere_in_a_block() {
        let good = to_hex(&(0..=255u8).collect::<Vec<_>>()).into_bytes();
        for at in 0..80 {
            for bad in [b'A', b'g', b'/', b':', b'`', b'"', 0, 0xff] {
                let mut h = good.clone();
                h[at] = bad;
                assert_eq!(from_hex(&h), None, "{bad} at {at}");
            }
        }
    }

    #[test]
    fn nist_known_answers() {
        assert_eq!(
            to_hex(&sha256(b"")),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            to_hex(&sha256(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            to_hex(&sha256(
                b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"
            )),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
        );
        assert_eq!(
            to_hex(&sha256(b"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu")),
            "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1"
        );
        // One million 'a'.
        let mut h = Sha256::new();
        let block = [b'a'; 1000];
        for _ in 0..1000 {
            h.update(&block);
        }
        assert_eq!(
            to_hex(&h.finalize()),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"
        );
    }

    #[test]
    fn streaming_equals_one_shot_at_every_split() {
        let data: Vec<u8> = (0..300u32).map(|i| (i * 7 + 3) as u8).collect();
        let want = sha256(&data);
        for split in 0..=data.len() {
            let mut h = Sha256::new();
            h.update(&data[..split]);
            h.update(&data[split..]);
            assert_eq!(h.finalize(), want, "split at {split}");
        }
    }

    // RFC 4231 test cases 1-4, 6, 7 (case 5 is a truncated output).
    #[test]
    fn rfc4231_known_answers() {
        let cases: [(Vec<u8>, Vec<u8>, &str); 6] = [
            (
                vec![0x0b; 20],
                b"Hi There".to_vec(),
                "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
            ),
            (
                b"Jefe".to_vec(),
                b"what do ya want for nothing?".to_vec(),
                "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
            ),
            (
                vec![0xaa; 20],
                vec![0xdd; 50],
                "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe",
            ),
            (
                hex("0102030405060708090a0b0c0d0e0f10111213141516171819"),
                vec![0xcd; 50],
                "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b",
            ),
            (
                vec![0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First".to_vec(),
                "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
            ),
            (
                vec![0xaa; 131],
                b"This is a test using a larger than block-size key and a larger than block-size data. The key needs to be hashed before being used by the HMAC algorithm.".to_vec(),
                "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2",
            ),
        ];
        for (key, data, want) in &cases {
            assert_eq!(to_hex(&hmac_sha256(key, data)), *want);
            assert_eq!(to_hex(&hmac_fallback(key, data)), *want);
        }
    }

    #[test]
    fn sha256_many_matches_one_call_per_item() {
        let items: Vec<Vec<u8>> = vec![
            b"abc".to_vec(),
            Vec::new(),
            vec![0x61; 1000],
            b"tv-eventlog-v2\n{}".to_vec(),
            Vec::new(),
        ];
        let data: Vec<u8> = items.concat();
        let mut ends = Vec::new();
        let mut at = 0u32;
        for it in &items {
            at += it.len() as u32;
            ends.push(at);
        }
        let many = sha256_many(&data, &ends).unwrap();
        let hex_all = sha256_many_hex(&data, &ends).unwrap();
        assert_eq!(many.len(), 32 * items.len());
        assert_eq!(hex_all, to_hex(&many));
        for (i, it) in items.iter().enumerate() {
            assert_eq!(&many[i * 32..(i + 1) * 32], &sha256(it));
        }
        assert_eq!(
            &hex_all[..64],
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn sha256_many_of_nothing_is_empty() {
        assert!(sha256_many::<u32>(&[], &[]).unwrap().is_empty());
        assert!(sha256_many_hex::<u32>(&[], &[]).unwrap().is_empty());
        // One empty item is not the same as no item.
        assert_eq!(sha256_many(&[], &[0u32]).unwrap(), sha256(b"").to_vec());
    }

    #[test]
    fn sha256_many_rejects_bad_bounds() {
        let data = [0u8; 10];
        let bad: [&[u32]; 5] = [&[5, 3, 10], &[11], &[5], &[], &[10, 12]];
        for ends in bad {
            assert!(
                matches!(
                    sha256_many(&data, ends),
                    Err(HashError::InvalidBatchBounds { len: 10, .. })
                ),
                "{ends:?}"
            );
        }
        match sha256_many(&data, &[5u32, 3, 10]) {
            Err(HashError::InvalidBatchBounds {
                index,
                end,
                previous,
                ..
            }) => assert_eq!((index, end, previous), (1, 3, 5)),
            other => panic!("{other:?}"),
        }
        assert!(sha256_many(&data, &[4u64, 4, 10]).is_ok());
    }
}
