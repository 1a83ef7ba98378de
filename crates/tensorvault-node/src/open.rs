//! The fast path of a checkpoint's verified open: the sidecar's leaves cut out of its JSON and
//! decoded here (`tensorvault_core::checkpoint_sidecar`), and the tree root from decoded leaves.

use napi::bindgen_prelude::{Buffer, Uint8ArraySlice};
use napi_derive::napi;
use tensorvault_core::checkpoint::TreeAlgorithm;
use tensorvault_core::checkpoint_sidecar::{split_leaves, tree_root_of_bytes};
use tensorvault_core::hash::{to_hex, ChunkSize};

use crate::args::to_u64;
use crate::errors::{guard, invalid_argument, TvError};

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
