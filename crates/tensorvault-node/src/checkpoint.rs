//! Checkpoint save pass on the libuv pool: `checkpointSaveWeights` writes the weights and computes the
//! `PyFolds` digest, the chunk tree and the parity sidecar in one pass (`tensorvault_core::checkpoint`).

use std::path::PathBuf;
use std::sync::Arc;

use napi::bindgen_prelude::{AsyncTask, Uint8Array};
use napi::{Env, Task};
use napi_derive::napi;
use tensorvault_core::checkpoint::{
    file_leaves, save_weights, FileLeaf, SaveOptions, SaveReport, SaveTensor, TreeAlgorithm,
};
use tensorvault_core::ecc::erasure::{ChunkDigest, ErasureError, Level, Params, ProtectOptions};
use tensorvault_core::hash::{from_hex, to_hex, ChunkSize};
use tensorvault_core::safetensors::{Dtype, TensorSpec};
use tensorvault_core::Control;

use crate::args::{to_int, to_u64};
use crate::control::JobControl;
use crate::errors::{guard, invalid_argument, TvError};

/// Parity of the save: a preset `level`, or all of `k`, `m` and `chunkSize`; written to `sidecar`.
#[napi(object)]
pub struct CheckpointEccOptions {
    pub sidecar: String,
    pub level: Option<String>,
    pub k: Option<f64>,
    pub m: Option<f64>,
    pub chunk_size: Option<f64>,
}

/// Options of `checkpointSaveWeights`.
#[napi(object)]
pub struct CheckpointSaveOptions {
    /// Chunk size of the tree (a power of two, 4 KiB … 1 GiB).
    pub chunk_size: f64,
    /// Tree hash: `sha256` (`sha256-tree-v1`), `blake3` (`blake3-tree-v1`) or `none`.
    pub tree: String,
    /// Indices of the tensors in the order the `PyFolds` hash feeds them.
    pub hash_order: Vec<u32>,
    /// Parity, or none.
    pub ecc: Option<CheckpointEccOptions>,
    /// With `tree: "blake3"`: where to write the outboard (`NAME.safetensors.tvob`), computed with the
    /// leaves in the same pass; see `outboard` in the result.
    pub outboard: Option<String>,
}

/// The parity sidecar written by the save.
#[napi(object)]
pub struct CheckpointEccWritten {
    pub k: u32,
    pub m: u32,
    pub chunk_size: f64,
}

/// Result of `checkpointSaveWeights`.
#[napi(object)]
pub struct CheckpointSaveResult {
    pub file_length: f64,
    pub header_length: f64,
    /// SHA-256 of the header bytes, hex.
    pub header_sha256: String,
    /// The plain `PyFolds` digest, hex.
    pub pyfolds_digest: String,
    /// The tree's leaves, hex, concatenated.
    pub leaves: String,
    /// The tree's root, hex (empty without a tree).
    pub root: String,
    pub ecc: Option<CheckpointEccWritten>,
    /// Whether the outboard asked for was written (not when the chunk size does not allow one, or
    /// writing it failed: it is an accelerator, never a reason to fail the save).
    pub outboard: bool,
    /// When each phase of the pass ended (ms since it started), in that order.
    pub phases: Vec<CheckpointPhase>,
}

/// One mark of the save's timeline.
#[napi(object)]
pub struct CheckpointPhase {
    pub name: String,
    pub ms: f64,
}

pub struct SaveTask {
    path: PathBuf,
    specs: Vec<TensorSpec>,
    data: Vec<Uint8Array>,
    prefixes: Vec<String>,
    options: SaveOptions,
    control: Arc<Control>,
}

impl Task for SaveTask {
    type Output = SaveReport;
    type JsValue = CheckpointSaveResult;

    fn compute(&mut self) -> napi::Result<SaveReport> {
        guard(|| {
            let tensors: Vec<SaveTensor<'_>> = self
                .specs
                .iter()
                .zip(&self.data)
                .zip(&self.prefixes)
                .map(|((spec, data), prefix)| SaveTensor {
                    spec: spec.clone(),
                    data,
                    hash_prefix: prefix.as_bytes().to_vec(),
                })
                .collect();
            save_weights(&self.path, &tensors, &self.options, &self.control)
                .map_err(|e| TvError::from(e).into())
        })
    }

    fn resolve(&mut self, _env: Env, r: SaveReport) -> napi::Result<CheckpointSaveResult> {
        let mut leaves = String::with_capacity(r.leaves.len() * 64);
        for l in &r.leaves {
            leaves.push_str(&to_hex(l));
        }
        Ok(CheckpointSaveResult {
            file_length: f(r.file_len),
            header_length: f(r.header_len),
            header_sha256: to_hex(&r.header_sha256),
            pyfolds_digest: to_hex(&r.pyfolds),
            leaves,
            root: r.root.map(|d| to_hex(&d)).unwrap_or_default(),
            ecc: r.ecc.map(|e| CheckpointEccWritten {
                k: u32::try_from(e.layout.params.k()).unwrap_or(0),
                m: u32::try_from(e.layout.params.m()).unwrap_or(0),
                chunk_size: f(e.layout.params.chunk_size().get()),
            }),
            outboard: r.outboard,
            phases: r
                .phases
                .iter()
                .map(|&(name, ms)| CheckpointPhase {
                    name: name.to_owned(),
                    ms,
                })
                .collect(),
        })
    }
}

#[allow(clippy::cast_precision_loss)] // lengths far below 2^53
fn f(n: u64) -> f64 {
    n as f64
}

fn protect_options(e: &CheckpointEccOptions) -> napi::Result<ProtectOptions> {
    match (&e.level, e.k, e.m, e.chunk_size) {
        (Some(level), None, None, None) => Ok(ProtectOptions::Level(
            Level::parse(level).ok_or_else(|| {
                napi::Error::from(TvError::from(ErasureError::InvalidLevel {
                    level: level.clone(),
                }))
            })?,
            ChunkDigest::default(),
        )),
        (None, Some(k), Some(m), Some(cs)) => Ok(ProtectOptions::Custom(
            Params::new(to_int("k", k)?, to_int("m", m)?, to_int("chunkSize", cs)?)
                .map_err(|e| napi::Error::from(TvError::from(e)))?,
        )),
        _ => Err(invalid_argument(
            "ecc",
            "give either level, or all of k, m and chunkSize",
        )),
    }
}

/// Write a checkpoint's weights at `path` (must not exist) from in-memory tensors, computing the
/// `PyFolds` digest, the chunk tree and the parity sidecar in the same pass, on the libuv pool. The
/// buffers are read while the promise is pending.
#[napi(ts_return_type = "Promise<CheckpointSaveResult>")]
#[allow(clippy::too_many_arguments)]
pub fn checkpoint_save_weights(
    path: String,
    names: Vec<String>,
    dtypes: Vec<String>,
    shapes: Vec<Vec<f64>>,
    data: Vec<Uint8Array>,
    hash_prefixes: Vec<String>,
    options: CheckpointSaveOptions,
    control: &JobControl,
) -> napi::Result<AsyncTask<SaveTask>> {
    guard(|| {
        let n = names.len();
        if dtypes.len() != n || shapes.len() != n || data.len() != n || hash_prefixes.len() != n {
            return Err(invalid_argument(
                "tensors",
                "names, dtypes, shapes, data and hash prefixes differ in length",
            ));
        }
        let mut specs = Vec::with_capacity(n);
        for ((name, dtype), shape) in names.into_iter().zip(dtypes).zip(shapes) {
            let dtype = Dtype::parse(&dtype).ok_or_else(|| {
                invalid_argument("dtype", format!("tensor {name:?}: unknown dtype {dtype:?}"))
            })?;
            let shape = shape
                .into_iter()
                .map(|d| to_u64("shape", d))
                .collect::<napi::Result<Vec<u64>>>()?;
            specs.push(TensorSpec { name, dtype, shape });
        }
        let chunk_size = ChunkSize::new(to_u64("chunkSize", options.chunk_size)?)
            .map_err(|e| napi::Error::from(TvError::from(e)))?;
        let tree = match options.tree.as_str() {
            "sha256" => Some(TreeAlgorithm::Sha256),
            "blake3" => Some(TreeAlgorithm::Blake3),
            "none" => None,
            _ => {
                return Err(invalid_argument(
                    "tree",
                    "tree must be \"sha256\", \"blake3\" or \"none\"",
                ))
            }
        };
        let ecc = match &options.ecc {
            None => None,
            Some(e) => Some((PathBuf::from(&e.sidecar), protect_options(e)?)),
        };
        Ok(AsyncTask::new(SaveTask {
            path: PathBuf::from(path),
            specs,
            data,
            prefixes: hash_prefixes,
            options: SaveOptions {
                chunk_size,
                tree,
                hash_order: options.hash_order.into_iter().map(|i| i as usize).collect(),
                ecc,
                outboard: options.outboard.map(PathBuf::from),
            },
            control: Arc::clone(&control.inner),
        }))
    })
}

fn tree_of(name: &str) -> napi::Result<TreeAlgorithm> {
    match name {
        "sha256" => Ok(TreeAlgorithm::Sha256),
        "blake3" => Ok(TreeAlgorithm::Blake3),
        _ => Err(invalid_argument(
            "tree",
            "tree must be \"sha256\" or \"blake3\"",
        )),
    }
}

fn chunk_size_of(n: f64) -> napi::Result<ChunkSize> {
    ChunkSize::new(to_u64("chunkSize", n)?).map_err(|e| napi::Error::from(TvError::from(e)))
}

pub struct LeavesTask {
    path: PathBuf,
    chunk_size: ChunkSize,
    first: u64,
    count: u64,
    tree: TreeAlgorithm,
    control: Arc<Control>,
}

impl Task for LeavesTask {
    type Output = Vec<FileLeaf>;
    type JsValue = String;

    fn compute(&mut self) -> napi::Result<Self::Output> {
        guard(|| {
            file_leaves(
                &self.path,
                self.chunk_size,
                self.first,
                self.count,
                self.tree,
                &self.control,
            )
            .map_err(|e| TvError::from(e).into())
        })
    }

    fn resolve(&mut self, _env: Env, leaves: Self::Output) -> napi::Result<String> {
        let mut out = String::with_capacity(leaves.len() * 64);
        for l in &leaves {
            match l {
                FileLeaf::Leaf(d) => out.push_str(&to_hex(d)),
                // A chunk past the end of the file: 64 characters that match no leaf.
                FileLeaf::Missing => out.push_str(&"-".repeat(64)),
                // A chunk that could not be read (EIO): 64 characters that match no leaf either.
                FileLeaf::Unreadable => out.push_str(&"!".repeat(64)),
            }
        }
        Ok(out)
    }
}

/// Leaves (hex, concatenated; `-` × 64 for a chunk past the end of the file, `!` × 64 for one that could
/// not be read because its bytes are lost to the medium, `EIO`) of chunks
/// `[first, first + count)` of `path`, read and hashed in parallel on the pool.
#[napi(ts_return_type = "Promise<string>")]
pub fn checkpoint_chunk_leaves(
    path: String,
    chunk_size: f64,
    first: f64,
    count: f64,
    tree: String,
    control: &JobControl,
) -> napi::Result<AsyncTask<LeavesTask>> {
    guard(|| {
        Ok(AsyncTask::new(LeavesTask {
            path: PathBuf::from(path),
            chunk_size: chunk_size_of(chunk_size)?,
            first: to_u64("first", first)?,
            count: to_u64("count", count)?,
            tree: tree_of(&tree)?,
            control: Arc::clone(&control.inner),
        }))
    })
}

/// The leaf (hex) of one chunk held in memory, on the calling thread (one chunk: cheaper than a
/// round trip to the pool).
#[napi]
pub fn checkpoint_leaf(data: Uint8Array, tree: String) -> napi::Result<String> {
    guard(|| Ok(to_hex(&tree_of(&tree)?.leaf(&data))))
}

/// The root (hex) of a tree from its leaves: lower-case hex digests, concatenated, as UTF-8 bytes.
#[napi]
pub fn checkpoint_tree_root(
    leaves: Uint8Array,
    chunk_size: f64,
    file_length: f64,
    tree: String,
) -> napi::Result<String> {
    guard(|| {
        let alg = tree_of(&tree)?;
        let cs = chunk_size_of(chunk_size)?;
        let len = to_u64("fileLength", file_length)?;
        let bad = || {
            invalid_argument(
                "leaves",
                "leaves must be lower-case hex digests, 64 characters each",
            )
        };
        if !leaves.len().is_multiple_of(64) {
            return Err(bad());
        }
        let bytes = from_hex(&leaves).ok_or_else(bad)?;
        let digests: Vec<[u8; 32]> = bytes
            .chunks_exact(32)
            .filter_map(|c| c.try_into().ok())
            .collect();
        Ok(to_hex(&alg.root(cs, len, &digests)))
    })
}

/// The integrity block's seal, `sha256:<hex>` (or `hmac-sha256:<hex>` with `key`), over its fields,
/// the canonical JSON of the sidecar's `metadata` and of the block's `ecc`, and the sidecar's
/// `integrity_hash` (`docs/formats/checkpoint.md`, "Seal message"): one call instead of the message
/// built from a dozen `Buffer` operations and hashed by another call (`docs/benchmarks.md`, thirteenth
/// session). `headerSha256` and `root`: 32-byte digests in hex.
#[napi]
#[allow(clippy::too_many_arguments)] // positional: one call, no object to read back
pub fn checkpoint_seal(
    algorithm: String,
    chunk_size: f64,
    file_length: f64,
    header_length: f64,
    header_sha256: String,
    root: String,
    metadata: String,
    integrity_hash: String,
    ecc: String,
    key: Option<Uint8Array>,
) -> napi::Result<String> {
    guard(|| {
        let digest = |name: &'static str, hex: &str| {
            from_hex(hex.as_bytes())
                .filter(|d| d.len() == 32)
                .ok_or_else(|| {
                    invalid_argument(name, format!("{name} must be a 32-byte digest in hex"))
                })
        };
        let (h, r) = (
            digest("headerSha256", &header_sha256)?,
            digest("root", &root)?,
        );
        let f = tensorvault_core::checkpoint::SealFields {
            algorithm: &algorithm,
            chunk_size: to_u64("chunkSize", chunk_size)?,
            file_length: to_u64("fileLength", file_length)?,
            header_length: to_u64("headerLength", header_length)?,
            header_sha256: &h,
            root: &r,
            metadata: &metadata,
            integrity_hash: &integrity_hash,
            ecc: &ecc,
        };
        Ok(tensorvault_core::checkpoint::seal(&f, key.as_deref()))
    })
}
