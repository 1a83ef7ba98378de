//! Hashing: one-shot and streaming SHA-256, HMAC, and file hashing on the libuv pool.

use std::path::PathBuf;
use std::sync::Arc;

use napi::bindgen_prelude::{
    AsyncTask, Buffer, Either, Uint32ArraySlice, Uint8Array, Uint8ArraySlice,
};
use napi::{Env, Task};
use napi_derive::napi;
use tensorvault_core::hash::{self, ChunkSize, FileDigest, HashFileOptions, HashMode};
use tensorvault_core::Control;

use crate::control::JobControl;
use crate::errors::{guard, TvError};

/// SHA-256 of `data`.
#[napi]
pub fn sha256(data: Uint8ArraySlice<'_>) -> napi::Result<Buffer> {
    guard(|| Ok(hash::sha256(&data).to_vec().into()))
}

/// SHA-256 of many items packed in `data` (item `i` ends at `ends[i]`, starts at the previous end or
/// 0), in one call. Returns the digests concatenated, 32 bytes per item.
#[napi]
pub fn sha256_many(data: Uint8ArraySlice<'_>, ends: Uint32ArraySlice<'_>) -> napi::Result<Buffer> {
    guard(|| {
        let ends: &[u32] = &ends;
        hash::sha256_many(&data, ends)
            .map(Buffer::from)
            .map_err(|e| TvError::from(e).into())
    })
}

/// [`sha256_many`] returning one lower-case hex string, 64 characters per item.
#[napi]
pub fn sha256_many_hex(
    data: Uint8ArraySlice<'_>,
    ends: Uint32ArraySlice<'_>,
) -> napi::Result<String> {
    guard(|| {
        let ends: &[u32] = &ends;
        hash::sha256_many_hex(&data, ends).map_err(|e| TvError::from(e).into())
    })
}

/// HMAC-SHA256 of `data` under `key`.
#[napi]
pub fn hmac_sha256(key: Uint8ArraySlice<'_>, data: Uint8ArraySlice<'_>) -> napi::Result<Buffer> {
    guard(|| Ok(hash::hmac_sha256(&key, &data).to_vec().into()))
}

/// Incremental SHA-256 state.
#[napi]
pub struct NativeSha256 {
    state: Option<hash::Sha256>,
}

#[napi]
impl NativeSha256 {
    #[napi(constructor)]
    #[must_use]
    pub fn new() -> Self {
        Self {
            state: Some(hash::Sha256::new()),
        }
    }

    /// Feed bytes; fails after `digest()`.
    #[napi]
    pub fn update(&mut self, data: Uint8ArraySlice<'_>) -> napi::Result<()> {
        guard(|| match self.state.as_mut() {
            Some(s) => {
                s.update(&data);
                Ok(())
            }
            None => Err(finalized()),
        })
    }

    /// The digest; the state is finished afterwards.
    #[napi]
    pub fn digest(&mut self) -> napi::Result<Buffer> {
        guard(|| match self.state.take() {
            Some(s) => Ok(s.finalize().to_vec().into()),
            None => Err(finalized()),
        })
    }

    /// An independent copy of the current state.
    #[napi]
    pub fn copy(&self) -> napi::Result<NativeSha256> {
        guard(|| match &self.state {
            Some(s) => Ok(NativeSha256 {
                state: Some(s.clone()),
            }),
            None => Err(finalized()),
        })
    }
}

impl Default for NativeSha256 {
    fn default() -> Self {
        Self::new()
    }
}

fn finalized() -> napi::Error {
    TvError::new("TV_HASH_FINALIZED", "digest already called").into()
}

/// Result of `hashFile`.
#[napi(object)]
pub struct HashFileResult {
    /// Plain SHA-256, or the tree's root.
    pub digest: Buffer,
    /// The file's length in bytes.
    pub length: f64,
    /// Chunk size of the tree (absent for a plain hash).
    pub chunk_size: Option<u32>,
    /// The tree's leaves, concatenated 32-byte digests (absent for a plain hash).
    pub leaves: Option<Buffer>,
}

pub struct HashFileTask {
    path: PathBuf,
    options: HashFileOptions,
    control: Arc<Control>,
}

impl Task for HashFileTask {
    type Output = FileDigest;
    type JsValue = HashFileResult;

    fn compute(&mut self) -> napi::Result<FileDigest> {
        guard(|| {
            hash::hash_file(&self.path, &self.options, &self.control)
                .map_err(|e| TvError::from(e).into())
        })
    }

    #[allow(clippy::cast_precision_loss)] // file lengths stay far below 2^53
    fn resolve(&mut self, _env: Env, output: FileDigest) -> napi::Result<HashFileResult> {
        let digest = output.digest().to_vec().into();
        let length = output.len() as f64;
        Ok(match output {
            FileDigest::Plain { .. } => HashFileResult {
                digest,
                length,
                chunk_size: None,
                leaves: None,
            },
            FileDigest::Tree(t) => HashFileResult {
                digest,
                length,
                chunk_size: u32::try_from(t.chunk_size().get()).ok(),
                leaves: Some(t.leaves_bytes().into()),
            },
        })
    }
}

/// Hash a file on the libuv pool. `chunkSize` selects the chunk tree; `threads` its parallelism.
#[napi(ts_return_type = "Promise<HashFileResult>")]
pub fn hash_file(
    path: String,
    chunk_size: Option<u32>,
    threads: Option<u32>,
    control: &JobControl,
) -> napi::Result<AsyncTask<HashFileTask>> {
    guard(|| {
        let mode = match chunk_size {
            None => HashMode::Plain,
            Some(cs) => HashMode::Tree(
                ChunkSize::new(u64::from(cs)).map_err(|e| napi::Error::from(TvError::from(e)))?,
            ),
        };
        let threads = crate::args::threads(threads)?;
        Ok(AsyncTask::new(HashFileTask {
            path: PathBuf::from(path),
            options: HashFileOptions { mode, threads },
            control: Arc::clone(&control.inner),
        }))
    })
}

/// One piece as the task holds it: bytes from JS, or a file range.
enum HeldPiece {
    Bytes(Uint8Array),
    Range { offset: u64, len: u64 },
}

pub struct HashPiecesTask {
    path: Option<PathBuf>,
    pieces: Vec<HeldPiece>,
    control: Arc<Control>,
}

impl Task for HashPiecesTask {
    type Output = hash::Digest;
    type JsValue = Buffer;

    fn compute(&mut self) -> napi::Result<hash::Digest> {
        guard(|| {
            let pieces: Vec<hash::Piece<'_>> = self
                .pieces
                .iter()
                .map(|p| match p {
                    HeldPiece::Bytes(b) => hash::Piece::Bytes(b),
                    HeldPiece::Range { offset, len } => hash::Piece::Range {
                        offset: *offset,
                        len: *len,
                    },
                })
                .collect();
            hash::hash_pieces(self.path.as_deref(), &pieces, &self.control)
                .map_err(|e| TvError::from(e).into())
        })
    }

    fn resolve(&mut self, _env: Env, output: hash::Digest) -> napi::Result<Buffer> {
        Ok(output.to_vec().into())
    }
}

/// SHA-256 over `pieces` in order, on the libuv pool: each piece is bytes, or `[offset, length]`, a
/// range of the file at `path` (read in 1 MiB blocks while the previous ones are hashed). Progress and
/// cancellation through `control`.
#[napi(ts_return_type = "Promise<Buffer>")]
pub fn sha256_pieces(
    path: Option<String>,
    pieces: Vec<Either<Uint8Array, Vec<f64>>>,
    control: &JobControl,
) -> napi::Result<AsyncTask<HashPiecesTask>> {
    guard(|| {
        let pieces = pieces
            .into_iter()
            .map(|p| match p {
                Either::A(bytes) => Ok(HeldPiece::Bytes(bytes)),
                Either::B(range) => {
                    let (offset, len) = crate::args::range("pieces", &range)?;
                    Ok(HeldPiece::Range { offset, len })
                }
            })
            .collect::<napi::Result<Vec<_>>>()?;
        Ok(AsyncTask::new(HashPiecesTask {
            path: path.map(PathBuf::from),
            pieces,
            control: Arc::clone(&control.inner),
        }))
    })
}
