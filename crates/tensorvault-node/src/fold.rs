//! `.fold` / `.mind`: open (validated on the libuv pool), chunk reads (zero-copy windows on the
//! mapping for chunks stored as they are, owned buffers otherwise), verify, repair and write. The
//! algorithms are the core's (`tensorvault_core::fold`); this file converts arguments and results.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use napi::bindgen_prelude::{AsyncTask, Buffer, Uint8Array, Unknown};
use napi::{Env, Task};
use napi_derive::napi;
use tensorvault_core::fold::json::{self, Form};
use tensorvault_core::fold::{
    write_fold as core_write, CheckStatus, ChunkInput, ChunkStatus, FoldError, FoldFile, Level,
    OpenOptions, Payload, Policy, VerifyMode, WriteOptions,
};
use tensorvault_core::safetensors::Header;
use tensorvault_core::Control;

use crate::args::{locked, to_u64};
use crate::control::JobControl;
use crate::errors::{guard, invalid_argument, push_json_str, Ctx, TvError};
use crate::region::external_region;

/// Options of `openFold` / `verifyFold` / `repairFold`.
#[napi(object)]
pub struct FoldOpenOptions {
    /// HMAC key bytes (the UTF-8 of `PYFOLDS_INTEGRITY_KEY`).
    pub hmac_key: Option<Uint8Array>,
    /// AES-256 key (32 bytes).
    pub decryption_key: Option<Uint8Array>,
    /// Raw Ed25519 public key (32 bytes) for the trust block and the metadata signature.
    pub trust_key: Option<Uint8Array>,
    /// `full`, `lazy` (default) or `none`.
    pub verify: Option<String>,
    pub require_authenticated: Option<bool>,
    pub require_merkle: Option<bool>,
    pub require_signature: Option<bool>,
    pub strict: Option<bool>,
    /// Largest payload handed out.
    pub max_payload: Option<f64>,
}

fn key32(argument: &'static str, v: Option<&Uint8Array>) -> napi::Result<Option<[u8; 32]>> {
    v.map(|b| {
        <[u8; 32]>::try_from(&b[..]).map_err(|_| {
            invalid_argument(
                argument,
                format!("{argument} must be 32 bytes, got {}", b.len()),
            )
        })
    })
    .transpose()
}

fn open_options(o: &FoldOpenOptions, degraded: bool) -> napi::Result<OpenOptions> {
    let verify = match o.verify.as_deref() {
        None | Some("lazy") => VerifyMode::Lazy,
        Some("full") => VerifyMode::Full,
        Some("none") => VerifyMode::None,
        Some(other) => {
            return Err(invalid_argument(
                "verify",
                format!("verify must be \"full\", \"lazy\" or \"none\", got {other:?}"),
            ))
        }
    };
    Ok(OpenOptions {
        hmac_key: o
            .hmac_key
            .as_ref()
            .map(|k| k.to_vec())
            .filter(|k| !k.is_empty()),
        decryption_key: key32("decryptionKey", o.decryption_key.as_ref())?,
        trust_key: key32("trustKey", o.trust_key.as_ref())?,
        verify: if degraded { VerifyMode::Lazy } else { verify },
        policy: Policy {
            require_authenticated: o.require_authenticated.unwrap_or(false),
            require_merkle: o.require_merkle.unwrap_or(false),
            require_signature: o.require_signature.unwrap_or(false),
            strict: o.strict.unwrap_or(false),
        },
        max_payload: o.max_payload.map(|m| to_u64("maxPayload", m)).transpose()?,
        degraded,
    })
}

fn fold_err(path: &std::path::Path, e: FoldError) -> napi::Error {
    let has_path = matches!(e, FoldError::Io(_));
    let t = TvError::from(e);
    if has_path {
        t.into()
    } else {
        t.with("path", Ctx::Str(path.display().to_string())).into()
    }
}

/// An open `.fold` / `.mind` file. Behind a mutex so that `close()` takes `&self`: napi-rs keeps the
/// receiver borrowed while a `readChunk()` task is in flight, and a `close(&mut self)` then threw an
/// untyped `InvalidArg` error (see `NativeSafetensors`).
#[napi]
pub struct NativeFold {
    inner: Mutex<Option<Arc<FoldFile>>>,
}

pub struct OpenFoldTask {
    path: PathBuf,
    options: OpenOptions,
    control: Arc<Control>,
}

impl Task for OpenFoldTask {
    type Output = FoldFile;
    type JsValue = NativeFold;

    fn compute(&mut self) -> napi::Result<FoldFile> {
        guard(|| {
            FoldFile::open_with(&self.path, self.options.clone(), &self.control)
                .map_err(|e| fold_err(&self.path, e))
        })
    }

    fn resolve(&mut self, _env: Env, output: FoldFile) -> napi::Result<NativeFold> {
        Ok(NativeFold {
            inner: Mutex::new(Some(Arc::new(output))),
        })
    }
}

/// Open and validate a `.fold` / `.mind` file on the libuv pool.
#[napi(ts_return_type = "Promise<NativeFold>")]
pub fn fold_open(
    path: String,
    options: FoldOpenOptions,
    control: &JobControl,
) -> napi::Result<AsyncTask<OpenFoldTask>> {
    guard(|| {
        Ok(AsyncTask::new(OpenFoldTask {
            path: PathBuf::from(path),
            options: open_options(&options, false)?,
            control: Arc::clone(&control.inner),
        }))
    })
}

fn push_check(out: &mut String, key: &str, c: &CheckStatus) {
    push_json_str(out, key);
    out.push_str(":{\"status\":");
    push_json_str(out, c.name());
    if let Some(d) = c.detail() {
        out.push_str(",\"detail\":");
        push_json_str(out, d);
    }
    out.push('}');
}

/// The whole description of an open file as one JSON text (see `FoldInfo` in the TypeScript API).
fn info_json(f: &FoldFile) -> String {
    let mut out = String::with_capacity(4096);
    let h = f.header();
    let c = f.checks();
    let _ = write!(
        out,
        "{{\"indexOffset\":{},\"indexLength\":{},\"fileLength\":{},\"version\":",
        h.index_off,
        h.index_len,
        f.mapping().len()
    );
    push_json_str(&mut out, &f.index().version);
    let _ = write!(out, ",\"isMind\":{},\"index\":", f.is_mind());
    out.push_str(&f.index().value.to_text(Form::Js));
    out.push_str(",\"checks\":{");
    push_check(&mut out, "manifestHash", &c.manifest_hash);
    out.push(',');
    push_check(&mut out, "merkleRoot", &c.merkle_root);
    out.push(',');
    push_check(&mut out, "trustBlock", &c.trust_block);
    out.push(',');
    push_check(&mut out, "metadataSignature", &c.metadata_signature);
    out.push(',');
    push_check(&mut out, "chunkHashes", &c.chunk_hashes);
    out.push_str(",\"authenticated\":");
    push_json_str(&mut out, c.authenticated);
    out.push_str(",\"warnings\":[");
    for (i, w) in c.warnings.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_json_str(&mut out, w);
    }
    out.push_str("],\"policyViolations\":[");
    for (i, w) in c.policy_violations.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_json_str(&mut out, w);
    }
    out.push_str("]},\"chunks\":[");
    for (i, (e, r)) in f.index().entries.iter().zip(f.records()).enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"name\":");
        push_json_str(&mut out, &e.name);
        match r {
            Ok(r) => {
                out.push_str(",\"ctype\":");
                push_json_str(&mut out, &r.ctype);
                let _ = write!(
                    out,
                    ",\"flags\":{},\"offset\":{},\"storedLength\":{},\"length\":{},\"crc32c\":{},\"eccLength\":{},\"encrypted\":{},\"digest\":",
                    r.flags, r.offset, r.comp_len, r.uncomp_len, r.crc32c, r.ecc_len, r.encrypted()
                );
                push_json_str(&mut out, &r.digest);
                out.push_str(",\"ecc\":");
                push_json_str(&mut out, &r.ecc_algo);
                let _ = write!(out, ",\"dataOffset\":{}", r.data_start());
            }
            Err(err) => {
                out.push_str(",\"error\":");
                out.push_str(&TvError::from(err.duplicate()).to_json());
            }
        }
        out.push('}');
    }
    out.push_str("]}");
    out
}

/// One chunk read: `data` holds owned payload bytes, or `mappedOffset`/`length` name a window on the
/// mapping (take it with `regionBuffer`).
#[napi(object)]
pub struct FoldChunkRead {
    pub data: Option<Buffer>,
    pub mapped_offset: Option<f64>,
    pub length: f64,
    /// `intact`, `repaired` or `unchecked`.
    pub status: String,
    pub corrected_bytes: f64,
}

pub struct ReadChunkTask {
    file: Arc<FoldFile>,
    index: usize,
    control: Arc<Control>,
}

#[allow(clippy::cast_precision_loss)] // offsets and lengths below 2^53 (chunks ≤ 2 GiB)
fn f(n: u64) -> f64 {
    n as f64
}

impl Task for ReadChunkTask {
    type Output = (Payload, ChunkStatus);
    type JsValue = FoldChunkRead;

    fn compute(&mut self) -> napi::Result<Self::Output> {
        guard(|| {
            self.file
                .read(self.index, &self.control)
                .map_err(|e| fold_err(self.file.mapping().path(), e))
        })
    }

    fn resolve(&mut self, _env: Env, (p, st): Self::Output) -> napi::Result<FoldChunkRead> {
        let (status, corrected) = match st {
            ChunkStatus::Intact => ("intact", 0),
            ChunkStatus::Repaired {
                corrected_bytes, ..
            } => ("repaired", corrected_bytes),
            ChunkStatus::Unchecked => ("unchecked", 0),
        };
        let (data, mapped_offset, length) = match p {
            Payload::Mapped { offset, len } => (None, Some(f(offset)), f(len)),
            Payload::Owned(b) => {
                let v = Arc::try_unwrap(b).unwrap_or_else(|a| a.as_ref().clone());
                let n = f(v.len() as u64);
                (Some(Buffer::from(v)), None, n)
            }
        };
        Ok(FoldChunkRead {
            data,
            mapped_offset,
            length,
            status: status.into(),
            corrected_bytes: f(corrected),
        })
    }
}

#[napi]
impl NativeFold {
    /// The open file (a clone of its `Arc`: the lock is not held while it is used).
    fn file(&self) -> napi::Result<Arc<FoldFile>> {
        locked(&self.inner)
            .clone()
            .ok_or_else(|| TvError::new("TV_CLOSED", "the .fold file is closed").into())
    }

    /// Header, index (JS form: big integers as `{"$int"}`, non-finite floats as `{"$float"}`), file
    /// checks and chunk records, as one JSON text.
    #[napi]
    pub fn info_json(&self) -> napi::Result<String> {
        guard(|| {
            let file = self.file()?;
            Ok(info_json(&file))
        })
    }

    /// Read chunk number `index` on the libuv pool (verified once per open).
    #[napi(ts_return_type = "Promise<FoldChunkRead>")]
    pub fn read_chunk(
        &self,
        index: u32,
        control: &JobControl,
    ) -> napi::Result<AsyncTask<ReadChunkTask>> {
        guard(|| {
            Ok(AsyncTask::new(ReadChunkTask {
                file: self.file()?,
                index: usize::try_from(index).unwrap_or(usize::MAX),
                control: Arc::clone(&control.inner),
            }))
        })
    }

    /// A zero-copy `ArrayBuffer` over `length` bytes of the mapping at `offset` (a chunk stored as it
    /// is); it keeps the mapping alive until collected.
    #[napi]
    pub fn region_buffer<'env>(
        &self,
        env: &'env Env,
        offset: f64,
        length: f64,
    ) -> napi::Result<Unknown<'env>> {
        guard(|| {
            let file = self.file()?;
            let (offset, length) = (to_u64("offset", offset)?, to_u64("length", length)?);
            let map = file.mapping();
            map.check_len()
                .map_err(|e| napi::Error::from(TvError::from(&e)))?;
            external_region(
                env,
                map,
                offset,
                length,
                "this runtime forbids external ArrayBuffers",
            )
        })
    }

    /// Release this handle (views already handed out keep the mapping alive; a `readChunk()` in
    /// flight completes on its own reference). Idempotent; never throws.
    #[napi]
    pub fn close(&self) {
        let file = locked(&self.inner).take();
        drop(file);
    }
}

/// The tensors of a safetensors payload (a `STEN` chunk), validated by the safetensors header parser:
/// JSON `[{name, dtype, shape, exactShape?, start, byteLength}]` with `start` relative to the payload.
#[napi]
pub fn fold_safetensors_tensors(payload: Uint8Array) -> napi::Result<String> {
    guard(|| {
        let h = Header::parse(&payload, payload.len() as u64).map_err(TvError::from)?;
        let base = h.data_start();
        let mut out = String::from("[");
        for (i, t) in h.tensors().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str("{\"name\":");
            push_json_str(&mut out, t.name);
            let _ = write!(out, ",\"dtype\":\"{}\",", t.dtype);
            // A dimension above 2^53 - 1 (only a zero-size tensor has one) also as exact text, as
            // the safetensors reader gives it: JSON.parse would round it.
            crate::safetensors::push_shape_json(&mut out, t.shape);
            let _ = write!(
                out,
                ",\"start\":{},\"byteLength\":{}}}",
                base + t.start,
                t.byte_len()
            );
        }
        out.push(']');
        Ok(out)
    })
}

pub struct VerifyFoldTask {
    path: PathBuf,
    options: OpenOptions,
    repair: Option<PathBuf>,
    control: Arc<Control>,
}

fn report_json(f: &FoldFile, control: &Control) -> Result<String, FoldError> {
    let rep = f.verify_all(control)?;
    let mut out = String::from("{\"file\":");
    out.push_str(&info_json(f));
    out.push_str(",\"chunks\":[");
    for (i, c) in rep.chunks.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"name\":");
        push_json_str(&mut out, &c.name);
        out.push_str(",\"status\":");
        push_json_str(&mut out, c.status);
        let _ = write!(
            out,
            ",\"correctedBytes\":{},\"parityDamaged\":{}",
            c.corrected_bytes, c.parity_damaged
        );
        if let Some(e) = &c.error {
            out.push_str(",\"error\":");
            out.push_str(&TvError::from(e.duplicate()).to_json());
        }
        out.push('}');
    }
    out.push_str("]}");
    Ok(out)
}

impl Task for VerifyFoldTask {
    type Output = String;
    type JsValue = String;

    fn compute(&mut self) -> napi::Result<String> {
        guard(|| {
            let err = |e| fold_err(&self.path, e);
            let f = FoldFile::open(&self.path, self.options.clone()).map_err(err)?;
            let before = report_json(&f, &self.control).map_err(err)?;
            let Some(dest) = &self.repair else {
                return Ok(before);
            };
            let fixed = f.repair_to(dest, &self.control).map_err(err)?;
            drop(f);
            if fixed.is_empty() {
                return Ok(before);
            }
            let after =
                FoldFile::open(dest, self.options.clone()).map_err(|e| fold_err(dest, e))?;
            let after = report_json(&after, &self.control).map_err(|e| fold_err(dest, e))?;
            let mut out = String::from("{\"before\":");
            out.push_str(&before);
            out.push_str(",\"after\":");
            out.push_str(&after);
            out.push_str(",\"rewritten\":[");
            for (i, n) in fixed.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_json_str(&mut out, n);
            }
            out.push_str("]}");
            Ok(out)
        })
    }

    fn resolve(&mut self, _env: Env, output: String) -> napi::Result<String> {
        Ok(output)
    }
}

/// Verify every chunk and the file-level checks in degraded mode (one damaged chunk does not stop
/// the rest); with `repairTo`, rewrite repairable chunks atomically into that path and verify again.
#[napi(ts_return_type = "Promise<string>")]
pub fn fold_verify(
    path: String,
    options: FoldOpenOptions,
    repair_to: Option<String>,
    control: &JobControl,
) -> napi::Result<AsyncTask<VerifyFoldTask>> {
    guard(|| {
        Ok(AsyncTask::new(VerifyFoldTask {
            path: PathBuf::from(path),
            options: open_options(&options, true)?,
            repair: repair_to.map(PathBuf::from),
            control: Arc::clone(&control.inner),
        }))
    })
}

/// One chunk for `foldWrite`: raw bytes with a 4-character type, or JSON text (type `JSON`).
#[napi(object)]
pub struct FoldChunkInput {
    pub name: String,
    pub ctype: Option<String>,
    pub data: Option<Uint8Array>,
    pub json: Option<String>,
}

/// Options of `foldWrite`.
#[napi(object)]
pub struct FoldWriteOptions {
    /// zstd level (`PyFolds`: 3); absent = stored as is.
    pub zstd_level: Option<i32>,
    /// rs(N)'s N.
    pub ecc: Option<u32>,
    pub hmac_key: Option<Uint8Array>,
    /// basic | standard | high | paranoid.
    pub level: Option<String>,
    pub encryption_key: Option<Uint8Array>,
    /// Ed25519 seed (32 bytes).
    pub signing_seed: Option<Uint8Array>,
    /// Caller metadata as JSON text (an object).
    pub metadata_json: Option<String>,
    pub created_at: Option<f64>,
    /// Bare-hex digests as `PyFolds` 1.0.x writes them.
    pub legacy_digests: Option<bool>,
}

/// What `foldWrite` wrote.
#[napi(object)]
pub struct FoldWriteResult {
    pub file_length: f64,
    pub index_offset: f64,
    pub index_length: f64,
    pub manifest_hash: String,
    pub merkle_root: Option<String>,
}

pub struct WriteFoldTask {
    path: PathBuf,
    chunks: Vec<ChunkInput>,
    options: WriteOptions,
    control: Arc<Control>,
}

impl Task for WriteFoldTask {
    type Output = tensorvault_core::fold::WriteSummary;
    type JsValue = FoldWriteResult;

    fn compute(&mut self) -> napi::Result<Self::Output> {
        guard(|| {
            core_write(&self.path, &self.chunks, &self.options, &self.control)
                .map_err(|e| fold_err(&self.path, e))
        })
    }

    fn resolve(&mut self, _env: Env, s: Self::Output) -> napi::Result<FoldWriteResult> {
        Ok(FoldWriteResult {
            file_length: f(s.file_len),
            index_offset: f(s.index_off),
            index_length: f(s.index_len),
            manifest_hash: s.manifest_hash,
            merkle_root: s.merkle_root,
        })
    }
}

fn chunk_input(c: FoldChunkInput) -> napi::Result<ChunkInput> {
    match (c.json, c.data) {
        (Some(text), None) => ChunkInput::json(&c.name, &text).map_err(|e| TvError::from(e).into()),
        (None, Some(d)) => Ok(ChunkInput {
            name: c.name,
            ctype: c.ctype.unwrap_or_else(|| "RAW0".into()),
            data: d.to_vec(),
        }),
        _ => Err(invalid_argument(
            "chunks",
            format!("chunk {:?} needs exactly one of data and json", c.name),
        )),
    }
}

/// Write a `.fold` / `.mind` file atomically and durably on the libuv pool.
#[napi(ts_return_type = "Promise<FoldWriteResult>")]
pub fn fold_write(
    path: String,
    chunks: Vec<FoldChunkInput>,
    options: FoldWriteOptions,
    control: &JobControl,
) -> napi::Result<AsyncTask<WriteFoldTask>> {
    guard(|| {
        let chunks = chunks
            .into_iter()
            .map(chunk_input)
            .collect::<napi::Result<Vec<_>>>()?;
        let metadata = options
            .metadata_json
            .as_deref()
            .map(|t| {
                json::parse(t).map_err(|e| {
                    invalid_argument("metadata", format!("metadata is not valid JSON: {e}"))
                })
            })
            .transpose()?;
        let level =
            Level::parse(options.level.as_deref().unwrap_or("basic")).map_err(TvError::from)?;
        let ecc = options
            .ecc
            .map(|n| usize::try_from(n).unwrap_or(usize::MAX));
        Ok(AsyncTask::new(WriteFoldTask {
            path: PathBuf::from(path),
            chunks,
            options: WriteOptions {
                zstd_level: options.zstd_level,
                ecc,
                hmac_key: options.hmac_key.map(|k| k.to_vec()),
                level,
                encryption_key: key32("encryptionKey", options.encryption_key.as_ref())?,
                signing_seed: key32("signingKey", options.signing_seed.as_ref())?,
                metadata,
                created_at: options.created_at,
                legacy_digests: options.legacy_digests.unwrap_or(false),
            },
            control: Arc::clone(&control.inner),
        }))
    })
}

/// A `JSON` chunk's text (Python rules: `NaN`/`Infinity`, exact big integers) re-emitted as standard
/// JSON for JavaScript: integers beyond ±2^53 as `{"$int":"…"}`, non-finite floats as `{"$float":…}`.
#[napi]
pub fn fold_json_to_js(payload: Uint8Array) -> napi::Result<String> {
    guard(|| {
        let text = std::str::from_utf8(&payload).map_err(|e| {
            TvError::new(
                "TV_FOLD_INVALID",
                format!("JSON chunk is not UTF-8 (byte {})", e.valid_up_to()),
            )
            .with("reason", Ctx::Str("json_not_utf8".into()))
        })?;
        let v = json::parse(text).map_err(|e| {
            TvError::new(
                "TV_FOLD_INVALID",
                format!("JSON chunk is not valid JSON: {e}"),
            )
            .with("reason", Ctx::Str("json_invalid".into()))
        })?;
        Ok(v.to_text(Form::Js))
    })
}
