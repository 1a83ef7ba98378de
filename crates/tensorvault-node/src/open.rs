//! The fast path of a checkpoint's verified open: the sidecar's leaves cut out of its JSON and
//! decoded here (`tensorvault_core::checkpoint_sidecar`), and the tree root from decoded leaves.

use napi::bindgen_prelude::{Buffer, Uint8ArraySlice};
use napi_derive::napi;
use tensorvault_core::checkpoint::TreeAlgorithm;
use tensorvault_core::checkpoint_sidecar::{block_fields, split_leaves, tree_root_of_bytes};
use tensorvault_core::hash::{to_hex, ChunkSize};

use crate::args::to_u64;
use crate::errors::{guard, invalid_argument, TvError};
use crate::outboard::{open_outboard, NativeOutboard};
use crate::safetensors::NativeSafetensors;

/// A sidecar on the fast path: its text without the leaves, and the leaves decoded.
#[napi(object)]
pub struct CheckpointSidecarParts {
    /// The JSON text with `tensorvault.leaves` emptied.
    pub text: String,
    /// The leaves: 32 bytes per chunk.
    pub leaves: Buffer,
}

/// Read the sidecar at `path` and split it (see `checkpoint_sidecar`); null when it cannot be read or
/// is not on the fast path: the caller then reads and parses it in full (and reports the errors).
#[napi]
pub fn checkpoint_read_sidecar(path: String) -> napi::Result<Option<CheckpointSidecarParts>> {
    guard(|| {
        let Ok(text) = std::fs::read_to_string(&path) else {
            return Ok(None);
        };
        Ok(split_leaves(&text).map(|s| CheckpointSidecarParts {
            text: s.text,
            leaves: Buffer::from(s.leaves),
        }))
    })
}

/// The root (hex) of a tree (`sha256` or `blake3`) from its decoded leaves (32 bytes each).
#[napi]
pub fn checkpoint_tree_root_bytes(
    leaves: Uint8ArraySlice<'_>,
    chunk_size: f64,
    file_length: f64,
    tree: String,
) -> napi::Result<String> {
    guard(|| {
        let alg = match tree.as_str() {
            "sha256" => TreeAlgorithm::Sha256,
            "blake3" => TreeAlgorithm::Blake3,
            _ => {
                return Err(invalid_argument(
                    "tree",
                    "tree must be \"sha256\" or \"blake3\"",
                ))
            }
        };
        let cs = ChunkSize::new(to_u64("chunkSize", chunk_size)?)
            .map_err(|e| napi::Error::from(TvError::from(e)))?;
        let len = to_u64("fileLength", file_length)?;
        if !leaves.len().is_multiple_of(32) {
            return Err(invalid_argument("leaves", "leaves must be 32 bytes each"));
        }
        Ok(to_hex(&tree_root_of_bytes(alg, cs, len, &leaves)))
    })
}

/// What the checkpoint open's fast path opened and checked (see [`checkpoint_open_lazy`]): the sidecar's
/// text without the leaves, the leaves (kept here: no buffer per open for V8 to account), the weights'
/// handle and the outboard. `takeFile` / `takeOutboard` hand each over once.
#[napi]
pub struct NativeCheckpointOpen {
    text: Option<String>,
    leaves: Vec<u8>,
    file: Option<NativeSafetensors>,
    outboard: Option<NativeOutboard>,
}

#[napi]
impl NativeCheckpointOpen {
    /// The sidecar's JSON text with `tensorvault.leaves` emptied (once).
    #[napi]
    pub fn take_text(&mut self) -> Option<String> {
        self.text.take()
    }

    /// The mapped weights, whose length and header digest matched the block (once).
    #[napi]
    pub fn take_file(&mut self) -> Option<NativeSafetensors> {
        self.file.take()
    }

    /// The outboard, or null when it is missing or unusable (once).
    #[napi]
    pub fn take_outboard(&mut self) -> Option<NativeOutboard> {
        self.outboard.take()
    }

    /// Bytes of decoded leaves (32 per chunk).
    #[napi]
    #[allow(clippy::cast_precision_loss)] // a sidecar holds far fewer than 2^53 bytes
    pub fn leaf_bytes(&self) -> f64 {
        self.leaves.len() as f64
    }

    /// Leaves `[first, first + count)` as hex (clamped to the leaves there are).
    #[napi]
    pub fn leaves_hex(&self, first: f64, count: f64) -> napi::Result<String> {
        guard(|| {
            let n = self.leaves.len() / 32;
            let a = usize::try_from(to_u64("first", first)?)
                .unwrap_or(usize::MAX)
                .min(n);
            let c = usize::try_from(to_u64("count", count)?).unwrap_or(usize::MAX);
            let b = a.saturating_add(c).min(n);
            Ok(to_hex(self.leaves.get(a * 32..b * 32).unwrap_or_default()))
        })
    }
}

/// The verified open of a `tensorvault`-layout checkpoint in one call, for the common case: read the
/// sidecar on the fast path, check its leaves against the block's root, open and map the weights, and
/// check their length and header digest against the block; open the outboard. Null when any step does
/// not go through (not on the fast path, a mismatch, a file that does not open): the loader then takes
/// its step-by-step path, which reports, repairs or fails exactly as before. The loader still parses
/// and validates the returned text in full and checks the seal (and key policy, version, …) before
/// any tensor is handed out. `keyedOnly` (a key is required): null before the weights are opened unless
/// both the seal and the hash are keyed, so that the loader refuses a downgrade before mapping anything.
#[napi]
pub fn checkpoint_open_lazy(
    weights: String,
    meta: String,
    outboard: String,
    max_header: f64,
    keyed_only: bool,
) -> napi::Result<Option<NativeCheckpointOpen>> {
    guard(|| {
        let max = to_u64("maxHeader", max_header)?;
        Ok(open_lazy(&weights, &meta, &outboard, max, keyed_only))
    })
}

fn open_lazy(
    weights: &str,
    meta: &str,
    outboard: &str,
    max: u64,
    keyed_only: bool,
) -> Option<NativeCheckpointOpen> {
    let text = std::fs::read_to_string(meta).ok()?;
    let split = split_leaves(&text)?;
    let f = block_fields(&split.text)?;
    if keyed_only && !f.keyed {
        return None;
    }
    let cs = ChunkSize::new(f.chunk_size).ok()?;
    let chunks = f.file_length.div_ceil(f.chunk_size);
    if u64::try_from(split.leaves.len()).ok()? != chunks.checked_mul(32)? {
        return None;
    }
    if to_hex(&tree_root_of_bytes(
        f.tree,
        cs,
        f.file_length,
        &split.leaves,
    )) != f.root
    {
        return None;
    }
    let file = tensorvault_core::safetensors::SafetensorsFile::open_small(
        std::path::Path::new(weights),
        max,
    )
    .ok()??;
    let map = file.mapping();
    if map.len() != f.file_length {
        return None;
    }
    let header = map.bytes().get(..usize::try_from(f.header_length).ok()?)?;
    if to_hex(&tensorvault_core::hash::sha256(header)) != f.header_sha256 {
        return None;
    }
    let ob = if matches!(f.tree, TreeAlgorithm::Blake3) && f.chunk_size >= 128 * 1024 {
        open_outboard(outboard, f.chunk_size, f.file_length)
    } else {
        None
    };
    Some(NativeCheckpointOpen {
        text: Some(split.text),
        leaves: split.leaves,
        file: Some(NativeSafetensors::from_file(file)),
        outboard: ob,
    })
}
