//! [`FoldFile`]: a `.fold` / `.mind` container over a private mapping.
//!
//! Open: header, index and every chunk record are validated (see [`super::format`]); then, once per
//! open, the file-level checks: `chunk_hashes`, `manifest_hash`, the Merkle root, the trust block
//! (signature **and** its two hashes recomputed and bound to this file, W4) and the metadata signature;
//! then the caller's [`Policy`].
//!
//! Read a chunk (contract §12 order, with W9's fix): CRC-32C and digest over the stored bytes first;
//! only when they fail is rs(N) run, and the repaired bytes must pass both; `chunk_hashes`; the
//! manifest (checked once at open); decryption (12-byte nonce, name as AAD); decompression with a
//! budget (W8); length. A chunk's stored bytes are verified once per open, never once per read.

use std::path::Path;
use std::sync::{Arc, Mutex};

use super::crypto;
use super::format::{check_entry, check_layout, ChunkRecord, FileHeader, Index, LayoutFindings};
use super::json::{Form, Value};
use super::FoldError;
use crate::ecc::rs255::RsCodec;
use crate::io::{AtomicFile, Mapping};
use crate::Control;

/// How much to verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VerifyMode {
    /// Every chunk at open.
    Full,
    /// Each chunk the first time it is read.
    #[default]
    Lazy,
    /// No digests or hashes (structure, GCM authentication, decompression limits and the lengths are
    /// still checked; CRC-32C still decides whether rs(N) runs).
    None,
}

/// A caller-side policy (W1, W3, W10, W14). All off by default: every file `PyFolds` reads opens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[allow(clippy::struct_excessive_bools)]
pub struct Policy {
    /// Refuse files that neither an HMAC key nor a bound, verified trust block authenticates (W1).
    pub require_authenticated: bool,
    /// Refuse files without a Merkle root (W3).
    pub require_merkle: bool,
    /// Refuse files without a trust block verified with the caller's key (W3).
    pub require_signature: bool,
    /// Refuse gaps, out-of-order chunks, bytes after the index, unknown minor versions, index entries
    /// missing a duplicated field, and `security_features` that claim what the file lacks (W3, W10).
    pub strict: bool,
}

/// Options of [`FoldFile::open`].
#[derive(Debug, Clone, Default)]
pub struct OpenOptions {
    /// The HMAC key text's bytes (`PyFolds`: `PYFOLDS_INTEGRITY_KEY`).
    pub hmac_key: Option<Vec<u8>>,
    /// The AES-256 key.
    pub decryption_key: Option<[u8; 32]>,
    /// Ed25519 public key for the trust block and the metadata signature.
    pub trust_key: Option<[u8; 32]>,
    pub verify: VerifyMode,
    pub policy: Policy,
    /// Largest payload handed out (default and ceiling: 2 GiB).
    pub max_payload: Option<u64>,
    /// Record per-chunk and file-level failures instead of failing the open (verify, repair).
    pub degraded: bool,
}

/// Result of one file-level check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckStatus {
    /// The field is absent (nothing to check).
    Absent,
    /// Present and not checked (no key given / verification off).
    Unchecked,
    Valid,
    /// Present and wrong.
    Invalid(String),
    /// Keyed and no key given, or the caller's key and an unkeyed file.
    Unverifiable(String),
}

impl CheckStatus {
    /// A short name: absent, unchecked, valid, invalid, unverifiable.
    #[must_use]
    pub fn name(&self) -> &'static str {
        match self {
            Self::Absent => "absent",
            Self::Unchecked => "unchecked",
            Self::Valid => "valid",
            Self::Invalid(_) => "invalid",
            Self::Unverifiable(_) => "unverifiable",
        }
    }
    /// The reason, for invalid and unverifiable.
    #[must_use]
    pub fn detail(&self) -> Option<&str> {
        match self {
            Self::Invalid(d) | Self::Unverifiable(d) => Some(d),
            _ => None,
        }
    }
}

/// The file-level checks of one open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileChecks {
    pub manifest_hash: CheckStatus,
    pub merkle_root: CheckStatus,
    /// The trust block: signature verified **and** its metadata/index hashes recomputed (W4).
    pub trust_block: CheckStatus,
    /// `metadata.signature` (covers four metadata fields only, never the weights: W5).
    pub metadata_signature: CheckStatus,
    /// `chunk_hashes` agrees with every entry.
    pub chunk_hashes: CheckStatus,
    /// How the file is authenticated: `hmac`, `signature`, or `none` ("integrity only", W1).
    pub authenticated: &'static str,
    pub layout: LayoutFindings,
    /// Non-fatal observations (unknown version, layout, claims the file does not back).
    pub warnings: Vec<String>,
    /// Policy rules the file breaks (only collected in degraded mode; otherwise the open fails).
    pub policy_violations: Vec<String>,
}

/// What verification found for one chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChunkStatus {
    /// Stored bytes verified as they are on disk.
    Intact,
    /// Stored bytes were damaged and rs(N) repaired them (the repaired bytes verified).
    Repaired {
        corrected_bytes: u64,
        blocks: Vec<u64>,
    },
    /// Not verified (verification off).
    Unchecked,
}

/// A payload: a window on the mapping (stored as is, intact) or owned bytes.
#[derive(Debug, Clone)]
pub enum Payload {
    Mapped { offset: u64, len: u64 },
    Owned(Arc<Vec<u8>>),
}

#[derive(Debug, Clone)]
enum Stored {
    Intact,
    Repaired(Arc<Vec<u8>>, u64, Vec<u64>),
}

/// One chunk in a [`VerifyReport`].
#[derive(Debug)]
pub struct ChunkReport {
    pub name: String,
    /// `intact`, `repaired` (repairable from parity), `damaged`, `unverifiable`, `locked` (encrypted,
    /// no key: stored bytes verified, payload not checked).
    pub status: &'static str,
    pub corrected_bytes: u64,
    /// Parity bytes that disagree with intact data (rewritten by repair).
    pub parity_damaged: bool,
    pub error: Option<FoldError>,
}

/// [`FoldFile::verify_all`]'s result.
#[derive(Debug)]
pub struct VerifyReport {
    pub chunks: Vec<ChunkReport>,
}

/// An open container.
#[derive(Debug)]
pub struct FoldFile {
    map: Arc<Mapping>,
    header: FileHeader,
    index: Index,
    records: Vec<Result<ChunkRecord, FoldError>>,
    checks: FileChecks,
    opts: OpenOptions,
    /// Per chunk: a `chunk_hashes` disagreement.
    hash_problems: Vec<Option<String>>,
    cache: Mutex<Vec<Option<Stored>>>,
}

fn features_claim(metadata: &Value, key: &str) -> bool {
    matches!(
        metadata.get("security_features").and_then(|f| f.get(key)),
        Some(Value::Bool(true))
    )
}

/// Added to a strict refusal of a `security_features` claim the file does not back: the claim is
/// metadata, not evidence of tampering. The file holds no writer name or version to tell who wrote it.
const OVER_CLAIM: &str = ". The switches are only a claim: tensorvault's writeFold before commit 15f42fd \
(2026-12-05) and PyFolds's writer set them from the level alone: a file they wrote at level high or \
paranoid without a signing or encryption key claims a trust block and encryption anyway (this file \
names no writer). If the file otherwise verifies, rewrite it with a current writeFold \
(docs/formats/fold.md, \"Files that over-claim\")";

impl FoldFile {
    /// Open and validate `path`.
    pub fn open(path: &Path, opts: OpenOptions) -> Result<FoldFile, FoldError> {
        Self::open_with(path, opts, &Control::new())
    }

    /// [`FoldFile::open`] with progress and cancellation (the `Full` verification of every chunk).
    pub fn open_with(
        path: &Path,
        opts: OpenOptions,
        control: &Control,
    ) -> Result<FoldFile, FoldError> {
        let map = Arc::new(Mapping::open(path)?);
        Self::from_mapping_with(map, opts, control)
    }

    /// Validate an already mapped file.
    pub fn from_mapping(map: Arc<Mapping>, opts: OpenOptions) -> Result<FoldFile, FoldError> {
        Self::from_mapping_with(map, opts, &Control::new())
    }

    fn from_mapping_with(
        map: Arc<Mapping>,
        opts: OpenOptions,
        control: &Control,
    ) -> Result<FoldFile, FoldError> {
        let bytes = map.bytes();
        let header = FileHeader::parse(bytes, map.len())?;
        let index_bytes = usize::try_from(header.index_off)
            .ok()
            .zip(usize::try_from(header.index_len).ok())
            .and_then(|(o, l)| bytes.get(o..o + l))
            .ok_or_else(|| FoldError::invalid("index_out_of_bounds", "index outside the file"))?;
        let index = Index::parse(index_bytes)?;
        let mut records: Vec<Result<ChunkRecord, FoldError>> = index
            .entries
            .iter()
            .map(|e| check_entry(e, bytes, header.index_off))
            .collect();
        if !opts.degraded {
            if let Some(Err(e)) = records.iter().find(|r| r.is_err()) {
                return Err(e.duplicate());
            }
        }
        let good: Vec<&ChunkRecord> = records.iter().filter_map(|r| r.as_ref().ok()).collect();
        let layout = match check_layout(&good, &header, map.len()) {
            Ok(l) => l,
            Err(e) if opts.degraded => {
                // Mark the overlapping chunk unusable; the rest stays readable.
                if let Some(name) = e.chunk().map(str::to_string) {
                    for r in &mut records {
                        if r.as_ref().is_ok_and(|c| c.name == name) {
                            *r = Err(e.duplicate());
                        }
                    }
                }
                LayoutFindings::default()
            }
            Err(e) => return Err(e),
        };
        let n = records.len();
        let mut file = FoldFile {
            map,
            header,
            index,
            records,
            checks: FileChecks {
                manifest_hash: CheckStatus::Absent,
                merkle_root: CheckStatus::Absent,
                trust_block: CheckStatus::Absent,
                metadata_signature: CheckStatus::Absent,
                chunk_hashes: CheckStatus::Absent,
                authenticated: "none",
                layout,
                warnings: Vec::new(),
                policy_violations: Vec::new(),
            },
            opts,
            hash_problems: vec![None; n],
            cache: Mutex::new(vec![None; n]),
        };
        file.file_checks()?;
        file.apply_policy()?;
        if file.opts.verify == VerifyMode::Full && !file.opts.degraded {
            control.set_total(
                file.records
                    .iter()
                    .filter_map(|r| r.as_ref().ok())
                    .map(|r| r.comp_len)
                    .sum(),
            );
            for i in 0..file.records.len() {
                file.stored(i, control)?;
                if let Some(Ok(r)) = file.records.get(i) {
                    control.add(r.comp_len);
                }
            }
        }
        Ok(file)
    }

    fn key(&self) -> Option<&[u8]> {
        self.opts.hmac_key.as_deref()
    }

    /// Compare a stored digest string with the one recomputed over `data`.
    fn digest_check(&self, stored: &str, data: &[u8]) -> CheckStatus {
        let keyed = stored.starts_with("hmac-sha256:");
        match (keyed, self.key()) {
            (true, None) => {
                CheckStatus::Unverifiable("keyed digest (hmac-sha256) and no HMAC key given".into())
            }
            (false, Some(_)) => CheckStatus::Unverifiable(
                "an HMAC key was given but the file's digests are not keyed (sha256:)".into(),
            ),
            _ => {
                let fresh = crypto::digest_like(stored, self.key(), data);
                if crypto::ct_eq(&fresh, stored) {
                    CheckStatus::Valid
                } else if keyed {
                    // Never the computed MAC: it would hand whoever planted these bytes a valid MAC
                    // for them under the caller's key (forge the file, read the message, fix it up).
                    CheckStatus::Invalid(format!(
                        "stored {stored} does not match the HMAC-SHA256 of the bytes under the key given (the computed value is not shown)"
                    ))
                } else {
                    CheckStatus::Invalid(format!("stored {stored}, computed {fresh}"))
                }
            }
        }
    }

    fn chunk_hashes_check(&mut self, md: &Value, verify: bool) -> Result<(), FoldError> {
        // chunk_hashes (§8.3): recorded per chunk, failing that chunk's verified reads.
        match md.get("chunk_hashes") {
            None => {}
            Some(Value::Object(map)) => {
                // `PyFolds`'s writer lists every chunk, so tensorvault also requires the two name sets
                // to agree (a renamed, dropped or added chunk is caught even without a key).
                let mut bad = Vec::new();
                for (i, e) in self.index.entries.iter().enumerate() {
                    let problem = match map.iter().find(|(k, _)| *k == e.name).map(|(_, v)| v) {
                        Some(v) if v.as_str() == Some(e.digest.as_str()) => None,
                        Some(_) => Some(format!(
                            "chunk_hashes[{:?}] differs from the entry's sha256",
                            e.name
                        )),
                        None => Some(format!(
                            "chunk_hashes has no entry for {:?} (renamed or added chunk)",
                            e.name
                        )),
                    };
                    if let Some(p) = problem {
                        bad.push(e.name.clone());
                        if let Some(slot) = self.hash_problems.get_mut(i) {
                            *slot = Some(p);
                        }
                    }
                }
                let missing: Vec<&str> = map
                    .iter()
                    .filter(|(k, _)| !self.index.entries.iter().any(|e| e.name == *k))
                    .map(|(k, _)| k.as_str())
                    .collect();
                self.checks.chunk_hashes = if !missing.is_empty() {
                    let d = format!(
                        "chunks listed in chunk_hashes are missing from the index: {missing:?}"
                    );
                    if !self.opts.degraded && verify {
                        return Err(FoldError::corrupt("chunk_hashes", None, d));
                    }
                    CheckStatus::Invalid(d)
                } else if bad.is_empty() {
                    CheckStatus::Valid
                } else {
                    CheckStatus::Invalid(format!(
                        "chunk_hashes disagrees with the index for {bad:?}"
                    ))
                };
            }
            Some(_) => {
                self.checks.chunk_hashes =
                    CheckStatus::Invalid("chunk_hashes is not an object".into());
            }
        }
        Ok(())
    }

    fn merkle_check(&mut self) -> Result<(), FoldError> {
        // Merkle root (§8.5): a mismatch fails the open (as in `PyFolds`).
        if let Some(root) = self.index.merkle_root.clone() {
            let leaves: Vec<Vec<u8>> = self
                .index
                .entries
                .iter()
                .map(|e| {
                    Value::Object(vec![
                        ("name".into(), Value::Str(e.name.clone())),
                        ("offset".into(), Value::Int(e.offset.to_string())),
                        ("sha256".into(), Value::Str(e.digest.clone())),
                    ])
                    .to_text(Form::L)
                    .into_bytes()
                })
                .collect();
            self.checks.merkle_root = match crypto::merkle_root(&leaves) {
                None => CheckStatus::Unchecked,
                Some(fresh) if crypto::ct_eq(&fresh, &root) => CheckStatus::Valid,
                Some(fresh) => CheckStatus::Invalid(format!("stored {root}, computed {fresh}")),
            };
            if let CheckStatus::Invalid(d) = &self.checks.merkle_root {
                if !self.opts.degraded {
                    return Err(FoldError::corrupt("merkle_root", None, d.clone()));
                }
            }
        }
        Ok(())
    }

    fn file_checks(&mut self) -> Result<(), FoldError> {
        let verify = self.opts.verify != VerifyMode::None;
        let md = self.index.metadata.clone();
        self.chunk_hashes_check(&md, verify)?;
        // manifest_hash (§8.4), once per open.
        if let Some(stored) = md.get("manifest_hash") {
            self.checks.manifest_hash = match stored.as_str() {
                None => CheckStatus::Invalid("manifest_hash is not a string".into()),
                Some(_) if !verify => CheckStatus::Unchecked,
                Some(s) => {
                    let text = md.without(&["manifest_hash"]).to_text(Form::H);
                    self.digest_check(s, text.as_bytes())
                }
            };
        }
        self.merkle_check()?;
        self.trust_check()?;
        self.metadata_signature_check();
        // Authentication (W1, W2): a key authenticates only when manifest and chunk_hashes are there,
        // valid, and name exactly the chunks.
        let names_match = md
            .get("chunk_hashes")
            .and_then(Value::as_object)
            .is_some_and(|m| {
                m.len() == self.index.entries.len()
                    && self
                        .index
                        .entries
                        .iter()
                        .all(|e| m.iter().any(|(k, _)| *k == e.name))
            });
        if self.key().is_some()
            && self.checks.manifest_hash == CheckStatus::Valid
            && self.checks.chunk_hashes == CheckStatus::Valid
            && names_match
        {
            self.checks.authenticated = "hmac";
        } else if self.checks.trust_block == CheckStatus::Valid {
            self.checks.authenticated = "signature";
        }
        if self.key().is_some() && verify && self.checks.authenticated != "hmac" {
            let detail = if names_match {
                "the HMAC key does not authenticate the manifest".to_string()
            } else {
                "with an HMAC key, manifest_hash and chunk_hashes naming exactly the index's chunks are required (W2)".to_string()
            };
            if !self.opts.degraded
                && !matches!(
                    self.checks.manifest_hash,
                    CheckStatus::Unverifiable(_) | CheckStatus::Invalid(_)
                )
            {
                return Err(FoldError::Policy {
                    rule: "keyed_manifest",
                    detail,
                });
            }
            self.checks.warnings.push(detail);
        }
        if self.index.unknown_version {
            self.checks.warnings.push(format!(
                "unknown container version {:?} (read as 1.x)",
                self.index.version
            ));
        }
        let l = &self.checks.layout;
        if !l.gaps.is_empty() || l.out_of_order || l.trailing > 0 {
            let msg =
                format!(
                "layout differs from PyFolds's writer: {} gap(s), {}, {} byte(s) after the index",
                l.gaps.len(),
                if l.out_of_order { "chunks out of index order" } else { "chunks in order" },
                l.trailing
            );
            self.checks.warnings.push(msg);
        }
        Ok(())
    }

    fn trust_check(&mut self) -> Result<(), FoldError> {
        let Some(tb) = self.index.trust_block.clone() else {
            return Ok(());
        };
        let Some(pk) = self.opts.trust_key else {
            self.checks.trust_block = CheckStatus::Unchecked;
            return Ok(());
        };
        let status = self.trust_status(&tb, &pk);
        if let CheckStatus::Invalid(d) | CheckStatus::Unverifiable(d) = &status {
            if !self.opts.degraded {
                return Err(FoldError::Signature {
                    what: "trust block",
                    detail: d.clone(),
                });
            }
        }
        self.checks.trust_block = status;
        Ok(())
    }

    fn trust_status(&self, tb: &str, pk: &[u8; 32]) -> CheckStatus {
        let Ok(v) = super::json::parse(tb) else {
            return CheckStatus::Invalid("trust_block is not JSON".into());
        };
        if v.get("version") != Some(&Value::Int("1".into())) {
            return CheckStatus::Invalid("trust block version is not 1".into());
        }
        let field = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        let (Some(mh), Some(ih), Some(algo), Some(kid), Some(sig)) = (
            field("metadata_hash"),
            field("index_hash"),
            field("signature_algo"),
            field("key_id"),
            field("signature"),
        ) else {
            return CheckStatus::Invalid("trust block misses a field".into());
        };
        if algo != "ed25519" {
            return CheckStatus::Invalid(format!("signature_algo {algo:?} is not ed25519"));
        }
        let signed = Value::Object(vec![
            ("version".into(), Value::Int("1".into())),
            ("metadata_hash".into(), Value::Str(mh.clone())),
            ("index_hash".into(), Value::Str(ih.clone())),
            ("signature_algo".into(), Value::Str(algo)),
            ("key_id".into(), Value::Str(kid)),
        ])
        .to_text(Form::H);
        let Some(sig) = crypto::from_hex(&sig) else {
            return CheckStatus::Invalid("signature is not hex".into());
        };
        if !crypto::ed25519_verify(pk, signed.as_bytes(), &sig) {
            return CheckStatus::Invalid(
                "Ed25519 signature does not verify with the given key".into(),
            );
        }
        // Bind it to this file (W4).
        let md_text = self.index.metadata.to_text(Form::H);
        match self.digest_check(&mh, md_text.as_bytes()) {
            CheckStatus::Valid => {}
            CheckStatus::Unverifiable(d) => return CheckStatus::Unverifiable(d),
            _ => return CheckStatus::Invalid(
                "signed metadata_hash does not match this file's metadata (trust block not bound)"
                    .into(),
            ),
        }
        let idx_text = self
            .index
            .value
            .without(&["metadata", "trust_block"])
            .to_text(Form::H);
        match self.digest_check(&ih, idx_text.as_bytes()) {
            CheckStatus::Valid => CheckStatus::Valid,
            CheckStatus::Unverifiable(d) => CheckStatus::Unverifiable(d),
            _ => CheckStatus::Invalid(
                "signed index_hash does not match this file's index (trust block not bound)".into(),
            ),
        }
    }

    fn metadata_signature_check(&mut self) {
        let md = &self.index.metadata;
        let Some(sig) = md.get("signature") else {
            return;
        };
        let Some(pk) = self.opts.trust_key else {
            self.checks.metadata_signature = CheckStatus::Unchecked;
            return;
        };
        let payload = Value::Object(
            ["model_type", "tags", "reproducibility", "protection"]
                .iter()
                .map(|k| ((*k).to_string(), md.get(k).cloned().unwrap_or(Value::Null)))
                .collect(),
        )
        .to_text(Form::L);
        let s = |k: &str| sig.get(k).and_then(Value::as_str);
        self.checks.metadata_signature = match (s("algorithm"), s("payload_sha256"), s("value")) {
            (Some("ed25519"), Some(ph), Some(value)) => {
                match self.digest_check(ph, payload.as_bytes()) {
                    CheckStatus::Valid => match crypto::from_hex(value) {
                        Some(sig) if crypto::ed25519_verify(&pk, payload.as_bytes(), &sig) => {
                            CheckStatus::Valid
                        }
                        _ => CheckStatus::Invalid("metadata signature does not verify".into()),
                    },
                    CheckStatus::Invalid(_) => CheckStatus::Invalid(
                        "payload_sha256 does not match the signed fields".into(),
                    ),
                    other => other,
                }
            }
            _ => CheckStatus::Invalid("metadata signature is malformed or not ed25519".into()),
        };
    }

    fn apply_policy(&mut self) -> Result<(), FoldError> {
        let p = self.opts.policy;
        let mut violations: Vec<(&'static str, String)> = Vec::new();
        if p.require_authenticated && self.checks.authenticated == "none" {
            violations.push((
                "require_authenticated",
                "the file is integrity-only: neither an HMAC key nor a bound, verified trust block authenticates it (W1)".into(),
            ));
        }
        if p.require_merkle && self.index.merkle_root.is_none() {
            violations.push(("require_merkle", "the file has no Merkle root".into()));
        }
        if p.require_signature && self.checks.trust_block != CheckStatus::Valid {
            violations.push((
                "require_signature",
                format!(
                    "trust block {} (a verified, bound trust block is required)",
                    self.checks.trust_block.name()
                ),
            ));
        }
        if p.strict {
            let md = &self.index.metadata;
            if features_claim(md, "merkle") && self.index.merkle_root.is_none() {
                violations.push((
                    "strict",
                    format!("security_features claims a Merkle root the file lacks{OVER_CLAIM}"),
                ));
            }
            if features_claim(md, "trust_block") && self.index.trust_block.is_none() {
                violations.push((
                    "strict",
                    format!("security_features claims a trust block the file lacks{OVER_CLAIM}"),
                ));
            }
            if features_claim(md, "encryption")
                && self
                    .records
                    .iter()
                    .any(|r| r.as_ref().is_ok_and(|c| !c.encrypted()))
            {
                violations.push((
                    "strict",
                    format!("security_features claims encryption but chunks are plaintext (W7){OVER_CLAIM}"),
                ));
            }
            if self.index.unknown_version {
                violations.push((
                    "strict",
                    format!("unknown container version {:?}", self.index.version),
                ));
            }
            let l = &self.checks.layout;
            if !l.gaps.is_empty() || l.out_of_order || l.trailing > 0 {
                violations.push((
                    "strict",
                    "layout has gaps, out-of-order chunks or bytes after the index".into(),
                ));
            }
            if self.index.entries.iter().any(|e| {
                e.ctype.is_none()
                    || e.flags.is_none()
                    || e.comp_len.is_none()
                    || e.uncomp_len.is_none()
                    || e.crc32c.is_none()
                    || e.ecc_len.is_none()
            }) {
                violations.push((
                    "strict",
                    "an index entry lacks a field duplicated from its chunk header".into(),
                ));
            }
        }
        for (rule, detail) in violations {
            if !self.opts.degraded {
                return Err(FoldError::Policy { rule, detail });
            }
            self.checks
                .policy_violations
                .push(format!("{rule}: {detail}"));
        }
        Ok(())
    }

    /// The mapping.
    #[must_use]
    pub fn mapping(&self) -> &Arc<Mapping> {
        &self.map
    }
    /// The file header.
    #[must_use]
    pub fn header(&self) -> &FileHeader {
        &self.header
    }
    /// The parsed index.
    #[must_use]
    pub fn index(&self) -> &Index {
        &self.index
    }
    /// The file-level checks.
    #[must_use]
    pub fn checks(&self) -> &FileChecks {
        &self.checks
    }
    /// Each chunk's record, or why it is unusable (only in degraded mode).
    pub fn records(&self) -> &[Result<ChunkRecord, FoldError>] {
        &self.records
    }
    /// Whether the index names `ai_graph` or `ai_vectors` (§13).
    #[must_use]
    pub fn is_mind(&self) -> bool {
        self.index
            .entries
            .iter()
            .any(|e| e.name == "ai_graph" || e.name == "ai_vectors")
    }
    /// The position of chunk `name`.
    pub fn position(&self, name: &str) -> Result<usize, FoldError> {
        self.index
            .entries
            .iter()
            .position(|e| e.name == name)
            .ok_or_else(|| FoldError::ChunkNotFound { name: name.into() })
    }

    fn record(&self, i: usize) -> Result<&ChunkRecord, FoldError> {
        match self.records.get(i) {
            Some(Ok(r)) => Ok(r),
            Some(Err(e)) => Err(e.duplicate()),
            None => Err(FoldError::ChunkNotFound {
                name: format!("#{i}"),
            }),
        }
    }

    fn slice(&self, from: u64, to: u64) -> &[u8] {
        usize::try_from(from)
            .ok()
            .zip(usize::try_from(to).ok())
            .and_then(|(a, b)| self.map.bytes().get(a..b))
            .unwrap_or_default()
    }

    /// Check stored bytes: CRC-32C, then the digest. `Ok(())` or the failing check.
    fn check_bytes(&self, r: &ChunkRecord, data: &[u8]) -> Result<(), FoldError> {
        let crc = crypto::crc32c(data);
        if crc != r.crc32c {
            return Err(FoldError::corrupt(
                "crc32c",
                Some(&r.name),
                format!("stored {:08x}, computed {crc:08x}", r.crc32c),
            ));
        }
        if self.opts.verify == VerifyMode::None {
            return Ok(());
        }
        match self.digest_check(&r.digest, data) {
            CheckStatus::Valid => Ok(()),
            CheckStatus::Unverifiable(d) => Err(FoldError::Unverifiable {
                reason: if r.keyed() {
                    "key_missing"
                } else {
                    "file_not_keyed"
                },
                detail: d,
                chunk: Some(r.name.clone()),
            }),
            other => Err(FoldError::corrupt(
                "digest",
                Some(&r.name),
                other.detail().unwrap_or("digest mismatch").to_string(),
            )),
        }
    }

    /// Verified stored bytes of chunk `i` (cached once per open).
    #[allow(clippy::many_single_char_names)]
    fn stored(&self, i: usize, control: &Control) -> Result<Stored, FoldError> {
        if let Some(Some(s)) = self.cache.lock().ok().and_then(|c| c.get(i).cloned()) {
            return Ok(s);
        }
        let r = self.record(i)?;
        self.map.check_len()?;
        control.checkpoint()?;
        let data = self.slice(r.data_start(), r.data_end());
        let first = self.check_bytes(r, data);
        let stored = match first {
            Ok(()) => Stored::Intact,
            Err(e @ FoldError::Unverifiable { .. }) => return Err(e),
            Err(e) => {
                let Some(n) = r.ecc else { return Err(e) };
                let codec = RsCodec::shared(n)
                    .map_err(|x| FoldError::corrupt("ecc", Some(&r.name), x.to_string()))?;
                let parity = self.slice(r.data_end(), r.end());
                let (fixed, report) = codec
                    .decode_to_vec(data, parity, &[], &[], control)
                    .map_err(|x| match x {
                        crate::ecc::rs255::RsError::Cancelled => FoldError::Cancelled,
                        x => FoldError::corrupt(
                            match &e {
                                FoldError::Corrupt { check, .. } => check,
                                _ => "ecc",
                            },
                            Some(&r.name),
                            format!("{e}; rs({n}) cannot repair it: {x}"),
                        ),
                    })?;
                self.check_bytes(r, &fixed).map_err(|x| match x {
                    // A keyed digest and no key: rs(N) found bytes that pass CRC-32C, but nothing
                    // can authenticate them; unverifiable, as the intact chunk would be, not corrupt
                    // (a disk check without the key was told the chunk was lost).
                    x @ FoldError::Unverifiable { .. } => x,
                    x => FoldError::corrupt(
                        "ecc",
                        Some(&r.name),
                        format!("rs({n}) produced bytes that do not verify: {x}"),
                    ),
                })?;
                Stored::Repaired(
                    Arc::new(fixed),
                    report.corrected_bytes,
                    report.corrected_blocks,
                )
            }
        };
        if let Ok(mut c) = self.cache.lock() {
            if let Some(slot) = c.get_mut(i) {
                *slot = Some(stored.clone());
            }
        }
        Ok(stored)
    }

    fn file_level_for_chunk(&self, i: usize, name: &str) -> Result<(), FoldError> {
        if self.opts.verify == VerifyMode::None {
            return Ok(());
        }
        if let Some(Some(p)) = self.hash_problems.get(i) {
            return Err(FoldError::corrupt("chunk_hashes", Some(name), p.clone()));
        }
        match &self.checks.manifest_hash {
            CheckStatus::Invalid(d) => Err(FoldError::corrupt(
                "manifest_hash",
                Some(name),
                format!("the file's manifest_hash does not verify: {d}"),
            )),
            CheckStatus::Unverifiable(d) => Err(FoldError::Unverifiable {
                reason: if self.key().is_some() {
                    "file_not_keyed"
                } else {
                    "key_missing"
                },
                detail: format!("manifest_hash: {d}"),
                chunk: Some(name.into()),
            }),
            _ => Ok(()),
        }
    }

    /// The verified stored bytes of chunk `i` and how they were obtained.
    #[allow(clippy::many_single_char_names)]
    pub fn read_stored(
        &self,
        i: usize,
        control: &Control,
    ) -> Result<(Payload, ChunkStatus), FoldError> {
        let r = self.record(i)?;
        let s = self.stored(i, control)?;
        self.file_level_for_chunk(i, &r.name)?;
        let status = |intact| {
            if self.opts.verify == VerifyMode::None {
                ChunkStatus::Unchecked
            } else {
                intact
            }
        };
        Ok(match s {
            Stored::Intact => (
                Payload::Mapped {
                    offset: r.data_start(),
                    len: r.comp_len,
                },
                status(ChunkStatus::Intact),
            ),
            Stored::Repaired(b, n, blocks) => (
                Payload::Owned(b),
                ChunkStatus::Repaired {
                    corrected_bytes: n,
                    blocks,
                },
            ),
        })
    }

    /// The payload of chunk `i` (§12 read steps 5–9).
    pub fn read(&self, i: usize, control: &Control) -> Result<(Payload, ChunkStatus), FoldError> {
        let r = self.record(i)?.clone();
        let (stored, status) = self.read_stored(i, control)?;
        let limit = self
            .opts
            .max_payload
            .unwrap_or(super::format::MAX_CHUNK_LEN);
        if r.uncomp_len > limit {
            return Err(FoldError::Budget {
                what: "payload",
                limit,
                actual: r.uncomp_len,
                chunk: Some(r.name.clone()),
            });
        }
        if r.nonce.is_none() && r.flags == 0 {
            return Ok((stored, status));
        }
        let bytes: &[u8] = match &stored {
            Payload::Mapped { offset, len } => self.slice(*offset, offset + len),
            Payload::Owned(b) => b,
        };
        control.checkpoint()?;
        let plain_owned;
        let plain: &[u8] = if let Some(nonce) = r.nonce {
            let key = self
                .opts
                .decryption_key
                .ok_or_else(|| FoldError::KeyRequired {
                    chunk: r.name.clone(),
                })?;
            plain_owned = crypto::aes_gcm_decrypt(&key, &nonce, r.name.as_bytes(), bytes)
                .ok_or_else(|| FoldError::DecryptFailed {
                    chunk: r.name.clone(),
                })?;
            &plain_owned
        } else {
            bytes
        };
        let out = if r.flags == 1 {
            crypto::zstd_decompress(plain, r.uncomp_len, limit).map_err(|p| {
                use crypto::ZstdProblem as Z;
                match p {
                    Z::OverBudget { declared } => FoldError::Budget {
                        what: "zstd content",
                        limit,
                        actual: declared,
                        chunk: Some(r.name.clone()),
                    },
                    Z::SizeMismatch { declared } => FoldError::corrupt(
                        "length",
                        Some(&r.name),
                        format!(
                            "zstd frame declares {declared} bytes, the chunk header {} (W8)",
                            r.uncomp_len
                        ),
                    ),
                    Z::NoContentSize => FoldError::corrupt(
                        "zstd",
                        Some(&r.name),
                        "zstd frame without a content size (PyFolds cannot read it either)",
                    ),
                    Z::TrailingBytes { frame_len } => FoldError::corrupt(
                        "zstd",
                        Some(&r.name),
                        format!("bytes after the zstd frame (frame is {frame_len} bytes)"),
                    ),
                    Z::Invalid(d) => FoldError::corrupt("zstd", Some(&r.name), d),
                }
            })?
        } else {
            plain.to_vec()
        };
        if out.len() as u64 != r.uncomp_len {
            return Err(FoldError::corrupt(
                "length",
                Some(&r.name),
                format!(
                    "payload is {} bytes, the header says {}",
                    out.len(),
                    r.uncomp_len
                ),
            ));
        }
        Ok((Payload::Owned(Arc::new(out)), status))
    }

    /// Bytes of a payload.
    #[must_use]
    pub fn bytes<'a>(&'a self, p: &'a Payload) -> &'a [u8] {
        match p {
            Payload::Mapped { offset, len } => self.slice(*offset, offset + len),
            Payload::Owned(b) => b,
        }
    }

    /// Verify every chunk (degraded: one chunk's failure does not stop the others).
    pub fn verify_all(&self, control: &Control) -> Result<VerifyReport, FoldError> {
        let total: u64 = self
            .records
            .iter()
            .filter_map(|r| r.as_ref().ok())
            .map(|r| r.comp_len)
            .sum();
        control.set_total(total);
        let mut chunks = Vec::new();
        for (i, e) in self.index.entries.iter().enumerate() {
            control.checkpoint()?;
            let mut rep = ChunkReport {
                name: e.name.clone(),
                status: "intact",
                corrected_bytes: 0,
                parity_damaged: false,
                error: None,
            };
            match self.read(i, control) {
                Ok((
                    _,
                    ChunkStatus::Repaired {
                        corrected_bytes, ..
                    },
                )) => {
                    rep.status = "repaired";
                    rep.corrected_bytes = corrected_bytes;
                }
                Ok(_) => {
                    rep.parity_damaged = self.parity_damaged(i, control)?;
                }
                Err(FoldError::Cancelled) => return Err(FoldError::Cancelled),
                Err(err @ FoldError::KeyRequired { .. }) => {
                    rep.status = "locked";
                    if matches!(
                        self.read_stored(i, control),
                        Ok((_, ChunkStatus::Repaired { .. }))
                    ) {
                        rep.status = "repaired";
                    }
                    rep.error = Some(err);
                }
                Err(err @ FoldError::Unverifiable { .. }) => {
                    rep.status = "unverifiable";
                    rep.error = Some(err);
                }
                Err(err) => {
                    rep.status = "damaged";
                    rep.error = Some(err);
                }
            }
            if let Ok(r) = self.record(i) {
                control.add(r.comp_len);
            }
            chunks.push(rep);
        }
        Ok(VerifyReport { chunks })
    }

    /// Whether the parity of intact chunk `i` disagrees with its (intact) data.
    fn parity_damaged(&self, i: usize, control: &Control) -> Result<bool, FoldError> {
        let Ok(r) = self.record(i) else {
            return Ok(false);
        };
        let Some(n) = r.ecc else { return Ok(false) };
        let codec = RsCodec::shared(n)
            .map_err(|x| FoldError::corrupt("ecc", Some(&r.name), x.to_string()))?;
        let bad = codec
            .verify(
                self.slice(r.data_start(), r.data_end()),
                self.slice(r.data_end(), r.end()),
                control,
            )
            .map_err(|x| match x {
                crate::ecc::rs255::RsError::Cancelled => FoldError::Cancelled,
                x => FoldError::corrupt("ecc", Some(&r.name), x.to_string()),
            })?;
        Ok(!bad.is_empty())
    }

    /// Rewrite damaged stored bytes from parity (and stale parity from intact data) into `dest`
    /// (usually the file's own path), atomically. Returns the names of the chunks rewritten; chunks
    /// that cannot be repaired are left as they are and reported by `verify_all`. `control` is
    /// committed ([`Control::try_commit`]) just before the rename: a cancellation after it is ignored.
    #[allow(clippy::many_single_char_names)]
    pub fn repair_to(&self, dest: &Path, control: &Control) -> Result<Vec<String>, FoldError> {
        // The rebuilt chunks only are held in memory (data and parity at their offsets); the rest of
        // the new file is copied from the mapping.
        let mut patches: Vec<(u64, Vec<u8>)> = Vec::new();
        let mut fixed = Vec::new();
        for i in 0..self.records.len() {
            control.checkpoint()?;
            let Ok(r) = self.record(i) else { continue };
            let Some(n) = r.ecc else { continue };
            let data: Vec<u8> = match self.stored(i, control) {
                Ok(Stored::Repaired(b, _, _)) => b.to_vec(),
                Ok(Stored::Intact) if self.parity_damaged(i, control)? => Vec::new(),
                Err(FoldError::Cancelled) => return Err(FoldError::Cancelled),
                _ => continue,
            };
            let codec = RsCodec::shared(n)
                .map_err(|x| FoldError::corrupt("ecc", Some(&r.name), x.to_string()))?;
            let source = if data.is_empty() {
                self.slice(r.data_start(), r.data_end())
            } else {
                &data
            };
            let parity = codec
                .encode(source, control)
                .map_err(|_| FoldError::Cancelled)?;
            if !data.is_empty() {
                patches.push((r.data_start(), data));
            }
            patches.push((r.data_end(), parity));
            fixed.push(r.name.clone());
        }
        if fixed.is_empty() {
            return Ok(fixed);
        }
        // The new file in order: the mapping's bytes, with each patch in place of the bytes it covers.
        patches.sort_unstable_by_key(|(at, _)| *at);
        let all = self.map.bytes();
        let mut f = AtomicFile::create(dest)?;
        let mut cursor = 0usize;
        for (at, bytes) in &patches {
            let at = usize::try_from(*at).unwrap_or(usize::MAX);
            for block in all.get(cursor..at).unwrap_or_default().chunks(COPY_BLOCK) {
                control.checkpoint()?;
                f.write_all(block)?;
            }
            f.write_all(bytes)?;
            cursor = at.saturating_add(bytes.len());
        }
        for block in all.get(cursor..).unwrap_or_default().chunks(COPY_BLOCK) {
            control.checkpoint()?;
            f.write_all(block)?;
        }
        // The last moment a cancellation is honoured: once the new file is renamed into place the
        // repair has happened, and the caller's re-check runs to its end with this control.
        control.try_commit()?;
        f.commit()?;
        Ok(fixed)
    }
}

/// Bytes copied per write when a repair copies the intact part of a file.
const COPY_BLOCK: usize = 8 << 20;

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::fold::{write_fold, ChunkInput, WriteOptions};

    /// Defect (QA qa22-ident 7): a keyed chunk digest that did not match printed "stored X, computed
    /// Y", Y being the HMAC of the bytes read under the caller's key: whoever planted the bytes (with a
    /// fixed-up CRC) got a valid MAC for them from the error. The computed value of a keyed digest is
    /// never printed now; an unkeyed SHA-256 still is.
    #[test]
    fn a_keyed_digest_mismatch_never_prints_the_computed_mac() {
        let d = tempfile::tempdir().unwrap();
        let key = b"fold-secret-key".to_vec();
        let p = d.path().join("k.fold");
        let chunks = vec![ChunkInput::json("m", r#"{"a":1}"#).unwrap()];
        let w = WriteOptions {
            hmac_key: Some(key.clone()),
            ..WriteOptions::default()
        };
        write_fold(&p, &chunks, &w, &Control::new()).unwrap();
        let o = OpenOptions {
            hmac_key: Some(key.clone()),
            ..OpenOptions::default()
        };
        let ff = FoldFile::open(&p, o).unwrap();
        let stored = ff.index().entries.first().unwrap().digest.clone();
        assert!(stored.starts_with("hmac-sha256:"), "{stored}");
        let forged = b"attacker-chosen bytes";
        let mac = crypto::digest_like(&stored, Some(&key), forged);
        let CheckStatus::Invalid(msg) = ff.digest_check(&stored, forged) else {
            panic!("a forged chunk was not refused");
        };
        assert!(
            !msg.contains(mac.trim_start_matches("hmac-sha256:")),
            "{msg}"
        );
        assert!(msg.contains(&stored), "{msg}");
        // Unkeyed: the computed SHA-256 stays in the message (no secret in it).
        let plain = crypto::digest_like("sha256:00", None, forged);
        let p2 = d.path().join("p.fold");
        write_fold(&p2, &chunks, &WriteOptions::default(), &Control::new()).unwrap();
        let ff2 = FoldFile::open(&p2, OpenOptions::default()).unwrap();
        let stored2 = ff2.index().entries.first().unwrap().digest.clone();
        let CheckStatus::Invalid(msg2) = ff2.digest_check(&stored2, forged) else {
            panic!("a changed chunk was not refused");
        };
        assert!(msg2.contains(&plain), "{msg2}");
    }
}
