//! Writing `.fold` / `.mind` files `PyFolds`'s reader accepts (contract §15), with tensorvault's strict
//! writer rules: atomic and durable (temporary file, placeholder header, fsync, real header, fsync,
//! rename, folder fsync; nothing left behind on failure), string keys only, no reserved metadata
//! keys, unique chunk names, 4-ASCII-character types, zstd frames that pledge their size, and
//! encryption or signing that is refused, never silently dropped, when the level cannot carry it (W7).

use std::borrow::Cow;
use std::os::unix::fs::FileExt as _;
use std::path::Path;

use aes_gcm::aead::{AeadCore, OsRng};

use super::crypto;
use super::format::{
    ChunkHeader, FileHeader, CHUNK_HEADER_LEN, FILE_HEADER_LEN, MAX_CHUNK_LEN, WRITE_VERSION,
};
use super::json::{Form, Value};
use super::FoldError;
use crate::ecc::rs255::RsCodec;
use crate::io::AtomicFile;
use crate::Control;

/// `PyFolds`'s security levels (§6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Level {
    #[default]
    Basic,
    Standard,
    High,
    Paranoid,
}

impl Level {
    /// Parse `basic|standard|high|paranoid`.
    pub fn parse(s: &str) -> Result<Level, FoldError> {
        match s {
            "basic" => Ok(Level::Basic),
            "standard" => Ok(Level::Standard),
            "high" => Ok(Level::High),
            "paranoid" => Ok(Level::Paranoid),
            _ => Err(FoldError::InvalidArgument {
                argument: "level",
                detail: format!("{s:?} is not one of basic, standard, high, paranoid"),
            }),
        }
    }
    fn name(self) -> &'static str {
        match self {
            Level::Basic => "basic",
            Level::Standard => "standard",
            Level::High => "high",
            Level::Paranoid => "paranoid",
        }
    }
    /// `security_features`: the level's switches (§6.3), each claiming only what this file holds, so
    /// that a strict reader (ours included) never finds a claim the file lacks. `PyFolds` sets them from
    /// the level alone (its `paranoid` without keys claims a trust block and encryption it never
    /// writes); its readers never act on them. `merkle`, `trust_block`, `encryption`, `ecc`,
    /// `provenance` and `sharding` name things in the file: true only when written (this writer never
    /// writes provenance or sharding); `signature` is the trust block's (the only signature written);
    /// `recovery` names nothing in the file (it changes nothing in `PyFolds` either) and follows the level.
    fn features(self, chunks: &[ChunkInput], opts: &WriteOptions) -> Value {
        let high = matches!(self, Level::High | Level::Paranoid);
        let any = !chunks.is_empty();
        // What `seal` and `write_chunk` put in the file: the Merkle root needs a chunk (no leaves, no
        // root); encryption below high and a trust block below high are refused by `check_inputs`.
        let trust_block = high && opts.signing_seed.is_some();
        Value::Object(vec![
            ("level".into(), Value::Str(self.name().into())),
            ("crc32c".into(), Value::Bool(true)),
            ("sha256".into(), Value::Bool(true)),
            ("ecc".into(), Value::Bool(any && opts.ecc.is_some())),
            ("signature".into(), Value::Bool(trust_block)),
            ("trust_block".into(), Value::Bool(trust_block)),
            ("merkle".into(), Value::Bool(high && any)),
            (
                "encryption".into(),
                Value::Bool(high && any && opts.encryption_key.is_some()),
            ),
            ("provenance".into(), Value::Bool(false)),
            ("sharding".into(), Value::Bool(false)),
            ("recovery".into(), Value::Bool(self == Level::Paranoid)),
        ])
    }
}

/// One chunk to write.
#[derive(Debug, Clone)]
pub struct ChunkInput {
    pub name: String,
    /// 4 ASCII characters (`STEN`, `JSON`, `NPZ0`, …).
    pub ctype: String,
    pub data: Vec<u8>,
}

impl ChunkInput {
    /// A `JSON` chunk from JSON text, re-emitted in Form I (Python's float and escape rules), so that
    /// `PyFolds` and tensorvault read the same values.
    pub fn json(name: &str, text: &str) -> Result<ChunkInput, FoldError> {
        let v = super::json::parse(text)
            .map_err(|e| arg("chunks", format!("chunk {name:?} is not valid JSON: {e}")))?;
        Ok(ChunkInput {
            name: name.into(),
            ctype: "JSON".into(),
            data: v.to_text(Form::I).into_bytes(),
        })
    }
}

/// Options of [`write_fold`].
#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    /// zstd level for every chunk (`PyFolds`: 3); `None` stores chunks as they are.
    pub zstd_level: Option<i32>,
    /// rs(N) parity per chunk.
    pub ecc: Option<usize>,
    pub hmac_key: Option<Vec<u8>>,
    pub level: Level,
    /// AES-256 key; requires level high or paranoid.
    pub encryption_key: Option<[u8; 32]>,
    /// Ed25519 seed for the trust block; requires level high or paranoid.
    pub signing_seed: Option<[u8; 32]>,
    /// Caller metadata (an object); reserved keys are refused.
    pub metadata: Option<Value>,
    /// `created_at_unix` (default: now).
    pub created_at: Option<f64>,
    /// Bare-hex digests and manifest hash, as `PyFolds` 1.0.x writes and verifies them (no HMAC, no
    /// Merkle root or trust block: level basic or standard only).
    pub legacy_digests: bool,
}

/// What was written.
#[derive(Debug, Clone)]
pub struct WriteSummary {
    pub file_len: u64,
    pub index_off: u64,
    pub index_len: u64,
    pub manifest_hash: String,
    pub merkle_root: Option<String>,
}

const RESERVED: [&str; 6] = [
    "security_level",
    "security_features",
    "chunk_hashes",
    "provenance",
    "sharding",
    "manifest_hash",
];

fn arg(argument: &'static str, detail: impl Into<String>) -> FoldError {
    FoldError::InvalidArgument {
        argument,
        detail: detail.into(),
    }
}

fn check_inputs(
    chunks: &[ChunkInput],
    opts: &WriteOptions,
) -> Result<Vec<(String, Value)>, FoldError> {
    let mut seen = std::collections::HashSet::new();
    for c in chunks {
        if !seen.insert(c.name.as_str()) {
            return Err(arg("chunks", format!("duplicate chunk name {:?}", c.name)));
        }
        if c.ctype.len() != 4 || !c.ctype.is_ascii() {
            return Err(arg(
                "chunks",
                format!(
                    "chunk {:?}: ctype {:?} is not 4 ASCII characters",
                    c.name, c.ctype
                ),
            ));
        }
        if c.data.len() as u64 > MAX_CHUNK_LEN {
            return Err(arg(
                "chunks",
                format!("chunk {:?} is larger than 2 GiB", c.name),
            ));
        }
    }
    let high = matches!(opts.level, Level::High | Level::Paranoid);
    if opts.legacy_digests && (high || opts.hmac_key.is_some()) {
        return Err(arg(
            "legacyDigests",
            "legacy (bare-hex) digests exist only without an HMAC key, at level basic or standard",
        ));
    }
    if opts.encryption_key.is_some() && !high {
        return Err(arg(
            "encryptionKey",
            "encryption needs level high or paranoid; PyFolds would silently write plaintext (W7)",
        ));
    }
    if opts.signing_seed.is_some() && !high {
        return Err(arg(
            "signingKey",
            "a trust block needs level high or paranoid",
        ));
    }
    if let Some(n) = opts.ecc {
        RsCodec::new(n).map_err(|e| arg("ecc", e.to_string()))?;
    }
    if opts.hmac_key.as_ref().is_some_and(Vec::is_empty) {
        return Err(arg(
            "hmacKey",
            "an empty HMAC key means no key in PyFolds; omit it instead",
        ));
    }
    let md = match &opts.metadata {
        None => Vec::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(_) => return Err(arg("metadata", "metadata must be an object")),
    };
    if let Some((k, _)) = md.iter().find(|(k, _)| RESERVED.contains(&k.as_str())) {
        return Err(arg(
            "metadata",
            format!("metadata key {k:?} is reserved for the container"),
        ));
    }
    Ok(md)
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn write_err(a: &AtomicFile, e: std::io::Error) -> FoldError {
    FoldError::Io(a.error("write", e))
}

/// Positioned write into the temporary file (the layout is the writer's own; nothing goes through
/// the buffered `write_all`).
fn put(a: &AtomicFile, at: u64, bytes: &[u8]) -> Result<(), FoldError> {
    let file = a
        .file()
        .ok_or_else(|| write_err(a, std::io::Error::other("temporary file closed")))?;
    file.write_all_at(bytes, at).map_err(|e| write_err(a, e))
}

/// An object's members in order.
type Members = Vec<(String, Value)>;

/// Compress, encrypt, protect and write one chunk record at `pos`; returns its index entry, its
/// digest and the record length.
fn write_chunk(
    out: &AtomicFile,
    pos: u64,
    c: &ChunkInput,
    opts: &WriteOptions,
    codec: Option<&RsCodec>,
    control: &Control,
) -> Result<(Members, String, u64), FoldError> {
    let key = opts.hmac_key.as_deref();
    // Borrowed when stored as is: a multi-gigabyte chunk is never copied on its way to the file.
    let compressed: Cow<'_, [u8]> = match opts.zstd_level {
        Some(level) => {
            Cow::Owned(crypto::zstd_compress(&c.data, level).map_err(|e| write_err(out, e))?)
        }
        None => Cow::Borrowed(&c.data),
    };
    let (stored, nonce) = match &opts.encryption_key {
        Some(k) => {
            let n: [u8; 12] = aes_gcm::Aes256Gcm::generate_nonce(&mut OsRng).into();
            let sealed = crypto::aes_gcm_encrypt(k, &n, c.name.as_bytes(), &compressed)
                .ok_or_else(|| arg("chunks", "AES-GCM refused the chunk"))?;
            (Cow::Owned(sealed), Some(n))
        }
        None => (compressed, None),
    };
    if stored.len() as u64 > MAX_CHUNK_LEN {
        return Err(arg(
            "chunks",
            format!("chunk {:?}: stored bytes exceed 2 GiB", c.name),
        ));
    }
    // The stored bytes go to the file on one core while the other computes their checks and parity;
    // the record header (which holds the CRC and the parity length) is written last.
    let (checks, wrote) = rayon::join(
        || -> Result<(Vec<u8>, u32, String), FoldError> {
            let parity = match codec {
                Some(cd) if !stored.is_empty() => cd
                    .encode(&stored, control)
                    .map_err(|_| FoldError::Cancelled)?,
                _ => Vec::new(),
            };
            let crc = crypto::crc32c(&stored);
            let digest = if opts.legacy_digests {
                crypto::to_hex(&<sha2::Sha256 as sha2::Digest>::digest(&stored))
            } else {
                crypto::digest(key, &stored)
            };
            Ok((parity, crc, digest))
        },
        || put(out, pos + CHUNK_HEADER_LEN, &stored),
    );
    wrote?;
    let (parity, crc, digest) = checks?;
    let flags = u32::from(opts.zstd_level.is_some());
    let mut ctype = [0u8; 4];
    ctype.copy_from_slice(c.ctype.as_bytes());
    let ecc_len = u32::try_from(parity.len()).map_err(|_| arg("chunks", "parity too long"))?;
    let h = ChunkHeader {
        ctype,
        flags,
        uncomp_len: c.data.len() as u64,
        comp_len: stored.len() as u64,
        crc32c: crc,
        ecc_len,
    };
    put(out, pos + CHUNK_HEADER_LEN + stored.len() as u64, &parity)?;
    put(out, pos, &h.to_bytes())?;
    let int = |n: u64| Value::Int(n.to_string());
    let mut e = vec![
        ("name".to_string(), Value::Str(c.name.clone())),
        ("ctype".into(), Value::Str(c.ctype.clone())),
        ("flags".into(), int(u64::from(flags))),
        ("offset".into(), int(pos)),
        ("header_len".into(), int(CHUNK_HEADER_LEN)),
        ("comp_len".into(), int(stored.len() as u64)),
        ("uncomp_len".into(), int(c.data.len() as u64)),
        ("crc32c".into(), int(u64::from(crc))),
        ("sha256".into(), Value::Str(digest.clone())),
        (
            "ecc_algo".into(),
            Value::Str(codec.map_or_else(|| "none".into(), RsCodec::name)),
        ),
        ("ecc_len".into(), int(u64::from(ecc_len))),
    ];
    if let Some(n) = nonce {
        e.push(("encrypted".into(), Value::Bool(true)));
        e.push(("nonce_hex".into(), Value::Str(crypto::to_hex(&n))));
        e.push(("aad".into(), Value::Str(c.name.clone())));
    }
    Ok((
        e,
        digest,
        CHUNK_HEADER_LEN + stored.len() as u64 + parity.len() as u64,
    ))
}

/// Merkle root and trust block (levels high and paranoid, §8.5–8.6); returns the root.
fn seal(
    index: &mut Vec<(String, Value)>,
    hashes: &[(String, u64, String)],
    metadata: &Value,
    opts: &WriteOptions,
) -> Option<String> {
    let key = opts.hmac_key.as_deref();
    let mut merkle_root = None;
    if matches!(opts.level, Level::High | Level::Paranoid) {
        let leaves: Vec<Vec<u8>> = hashes
            .iter()
            .map(|(n, off, d)| {
                Value::Object(vec![
                    ("name".into(), Value::Str(n.clone())),
                    ("offset".into(), Value::Int(off.to_string())),
                    ("sha256".into(), Value::Str(d.clone())),
                ])
                .to_text(Form::L)
                .into_bytes()
            })
            .collect();
        if let Some(root) = crypto::merkle_root(&leaves) {
            index.push(("merkle_root".into(), Value::Str(root.clone())));
            merkle_root = Some(root);
        }
        if let Some(seed) = &opts.signing_seed {
            let metadata_hash = crypto::digest(key, metadata.to_text(Form::H).as_bytes());
            let index_hash = crypto::digest(
                key,
                Value::Object(index.clone())
                    .without(&["metadata", "trust_block"])
                    .to_text(Form::H)
                    .as_bytes(),
            );
            let mut tb = vec![
                ("version".to_string(), Value::Int("1".into())),
                ("metadata_hash".into(), Value::Str(metadata_hash)),
                ("index_hash".into(), Value::Str(index_hash)),
                ("signature_algo".into(), Value::Str("ed25519".into())),
                ("key_id".into(), Value::Str("default".into())),
            ];
            let signed = Value::Object(tb.clone()).to_text(Form::H);
            let sig = crypto::ed25519_sign(seed, signed.as_bytes());
            tb.push(("signature".into(), Value::Str(crypto::to_hex(&sig))));
            index.push((
                "trust_block".into(),
                Value::Str(Value::Object(tb).to_text(Form::H)),
            ));
        }
    }
    merkle_root
}

/// Write `chunks` to `path` atomically and durably.
pub fn write_fold(
    path: &Path,
    chunks: &[ChunkInput],
    opts: &WriteOptions,
    control: &Control,
) -> Result<WriteSummary, FoldError> {
    let mut metadata = check_inputs(chunks, opts)?;
    let key = opts.hmac_key.as_deref();
    let codec = opts
        .ecc
        .map(RsCodec::shared)
        .transpose()
        .map_err(|e| arg("ecc", e.to_string()))?;
    control.set_total(chunks.iter().map(|c| c.data.len() as u64).sum());

    let out = AtomicFile::create(path)?;
    put(
        &out,
        0,
        &FileHeader {
            index_off: 0,
            index_len: 0,
        }
        .to_bytes(),
    )?;
    let mut pos = FILE_HEADER_LEN;
    let mut entries = Vec::with_capacity(chunks.len());
    let mut hashes = Vec::with_capacity(chunks.len());
    for c in chunks {
        control.checkpoint()?;
        let (e, digest, len) = write_chunk(&out, pos, c, opts, codec.as_deref(), control)?;
        hashes.push((c.name.clone(), pos, digest));
        entries.push(Value::Object(e));
        pos += len;
        control.add(c.data.len() as u64);
    }
    metadata.push((
        "security_level".into(),
        Value::Str(opts.level.name().into()),
    ));
    metadata.push((
        "security_features".into(),
        opts.level.features(chunks, opts),
    ));
    metadata.push((
        "chunk_hashes".into(),
        Value::Object(
            hashes
                .iter()
                .map(|(n, _, d)| (n.clone(), Value::Str(d.clone())))
                .collect(),
        ),
    ));
    let manifest_text = Value::Object(metadata.clone()).to_text(Form::H);
    let manifest_hash = if opts.legacy_digests {
        crypto::digest_like("", None, manifest_text.as_bytes())
    } else {
        crypto::digest(key, manifest_text.as_bytes())
    };
    metadata.push(("manifest_hash".into(), Value::Str(manifest_hash.clone())));
    let metadata = Value::Object(metadata);
    let created = opts.created_at.unwrap_or_else(now);
    let mut index = vec![
        ("format".to_string(), Value::Str("fold".into())),
        ("version".into(), Value::Str(WRITE_VERSION.into())),
        ("created_at_unix".into(), Value::Float(created)),
        ("metadata".into(), metadata.clone()),
        ("chunks".into(), Value::Array(entries)),
    ];
    let merkle_root = seal(&mut index, &hashes, &metadata, opts);
    let text = Value::Object(index).to_text(Form::I);
    put(&out, pos, text.as_bytes())?;
    let header = FileHeader {
        index_off: pos,
        index_len: text.len() as u64,
    };
    // Placeholder header, data and index durable first; then the real header (§3), then the rename.
    let file = out
        .file()
        .ok_or_else(|| write_err(&out, std::io::Error::other("temporary file closed")))?;
    file.sync_all()
        .map_err(|e| FoldError::Io(out.error("fsync", e)))?;
    put(&out, 0, &header.to_bytes())?;
    // commit: fsync, rename over `path`, fsync the folder.
    out.commit()?;
    Ok(WriteSummary {
        file_len: pos + header.index_len,
        index_off: pos,
        index_len: header.index_len,
        manifest_hash,
        merkle_root,
    })
}
