//! The fast path of a checkpoint's verified open: the sidecar's leaves cut out of its JSON, decoded
//! and checked against the block's root here (`tensorvault_core::checkpoint_sidecar`), and, for a
//! lazy or full load, the document and the seal checked and the weights mapped and their header
//! checked in the same call.

use napi::bindgen_prelude::Uint8Array;
use napi::Env;
use napi_derive::napi;
use tensorvault_core::checkpoint::TreeAlgorithm;
use tensorvault_core::checkpoint_sidecar::{
    sidecar_doc, split_leaves, tree_root_of_bytes, BlockFields, SidecarDoc, SplitSidecar,
};
use tensorvault_core::hash::{to_hex, ChunkSize};

use crate::args::to_u64;
use crate::errors::guard;
use crate::outboard::{open_outboard, with_scratch, NativeOutboard, PieceCheck};
use crate::safetensors::NativeSafetensors;

/// Read the sidecar at `path`, split it (see `checkpoint_sidecar`) and check its leaves against the
/// block's root; null when it cannot be read, is not on the fast path or the leaves do not match: the
/// caller then reads and parses it in full (and reports the errors). The weights are not opened.
#[napi]
pub fn checkpoint_read_sidecar(path: String) -> napi::Result<Option<NativeCheckpointOpen>> {
    guard(|| {
        Ok(read_checked(&path).map(|(split, _)| NativeCheckpointOpen {
            text: Some(split.text),
            leaves: split.leaves,
            fields: None,
            sealed: false,
            file: None,
            outboard: None,
            header_pieces: 0,
        }))
    })
}

thread_local! {
    /// The sidecar's bytes, read by every open on this (the JS) thread into the same buffer: a loop that
    /// opens checkpoints no longer faults in a fresh 30-odd KB on every open.
    static TEXT: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The sidecar at `meta`, split and checked (see [`sidecar_doc`]); None unless its leaves match the
/// root.
fn read_checked(meta: &str) -> Option<(SplitSidecar, SidecarDoc)> {
    with_scratch(&TEXT, |buf| {
        buf.clear();
        std::fs::File::open(meta)
            .and_then(|mut f| std::io::Read::read_to_end(&mut f, buf))
            .ok()?;
        check_text(std::str::from_utf8(buf).ok()?)
    })
}

/// [`read_checked`] on the sidecar's text.
fn check_text(text: &str) -> Option<(SplitSidecar, SidecarDoc)> {
    let split = split_leaves(text)?;
    let doc = sidecar_doc(&split.text)?;
    let f = &doc.block;
    let cs = ChunkSize::new(f.chunk_size).ok()?;
    let chunks = f.file_length.div_ceil(f.chunk_size);
    if u64::try_from(split.leaves.len()).ok()? != chunks.checked_mul(32)? {
        return None;
    }
    let root = tree_root_of_bytes(f.tree, cs, f.file_length, &split.leaves);
    (to_hex(&root) == f.root).then_some((split, doc))
}

/// What the checkpoint open's fast path read and checked (see [`checkpoint_open_lazy`] and
/// [`checkpoint_read_sidecar`]): the sidecar's text without the leaves (`checkpointReadSidecar`), or
/// its checked fields and whether the seal matched (`checkpointOpenLazy`), the leaves (kept here,
/// checked against the root: no buffer per open for V8 to account), and for a lazy load the weights'
/// handle and the outboard. `takeText` / `takeFields` / `takeFile` / `takeOutboard` hand each over once.
#[napi]
pub struct NativeCheckpointOpen {
    text: Option<String>,
    /// The loader's fields (`SidecarDoc::loader_json`; lazy open only).
    fields: Option<String>,
    /// Whether the seal was checked here and matched.
    sealed: bool,
    leaves: Vec<u8>,
    file: Option<NativeSafetensors>,
    outboard: Option<NativeOutboard>,
    header_pieces: u32,
}

#[napi]
impl NativeCheckpointOpen {
    /// The sidecar's JSON text with `tensorvault.leaves` emptied (once).
    #[napi]
    pub fn take_text(&mut self) -> Option<String> {
        self.text.take()
    }

    /// The sidecar's fields as the loader takes them, checked as it checks them (once; lazy open
    /// only): `{ metadata, integrity_hash, block }`, the metadata's members in the sidecar's order,
    /// the block without its leaves.
    #[napi]
    pub fn take_fields(&mut self) -> Option<String> {
        self.fields.take()
    }

    /// Whether the seal was checked and matched in this call (false for a keyed block opened without
    /// its key: nothing could be checked).
    #[napi]
    pub fn seal_checked(&self) -> bool {
        self.sealed
    }

    /// The mapped weights, whose length and header digest matched the block (once).
    #[napi]
    pub fn take_file(&mut self, env: Env) -> Option<NativeSafetensors> {
        self.file.take().map(|f| f.charged(env))
    }

    /// The outboard, or null when it is missing or unusable (once).
    #[napi]
    pub fn take_outboard(&mut self, env: Env) -> Option<NativeOutboard> {
        self.outboard.take().map(|o| o.charged(env))
    }

    /// Leading pieces of chunk 0 whose bytes were checked against the outboard (they hold the
    /// safetensors header, checked that way instead of by its SHA-256); 0 when the header was checked
    /// by its digest.
    #[napi]
    pub fn header_pieces(&self) -> u32 {
        self.header_pieces
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
/// sidecar on the fast path, check its leaves against the block's root, check the document and the
/// integrity block as the loader does (`sidecar_doc`) and the seal over the canonical metadata (with
/// `key` when the block is keyed), open and map the weights, and check their length and header digest
/// against the block; open the outboard. Null when any step does not go through (not on the fast path,
/// a mismatch, a file that does not open): the loader then takes its step-by-step path, which
/// reports, repairs or fails exactly as before. The loader takes the checked fields as they are
/// (`takeFields`: the metadata as the values the seal covers) and still checks the key policy, the
/// version and the expectations before any tensor is handed out. `keyedOnly` (a key is required):
/// null before the weights are opened unless both the seal and the hash are keyed, so that the loader
/// refuses a downgrade before mapping anything.
#[napi]
pub fn checkpoint_open_lazy(
    weights: String,
    meta: String,
    outboard: String,
    max_header: f64,
    keyed_only: bool,
    key: Option<Uint8Array>,
) -> napi::Result<Option<NativeCheckpointOpen>> {
    guard(|| {
        let max = to_u64("maxHeader", max_header)?;
        Ok(open_lazy(
            &weights,
            &meta,
            &outboard,
            max,
            keyed_only,
            key.as_deref(),
        ))
    })
}

fn open_lazy(
    weights: &str,
    meta: &str,
    outboard: &str,
    max: u64,
    keyed_only: bool,
    key: Option<&[u8]>,
) -> Option<NativeCheckpointOpen> {
    let (split, doc) = read_checked(meta)?;
    let f = &doc.block;
    if keyed_only && !f.keyed {
        return None;
    }
    // The seal, before anything is mapped: a mismatch leaves the open to the loader's step-by-step
    // path, which reports it. A keyed block without its key is not checked (the loader's key policy
    // then decides).
    let sealed = doc.seal_matches(key);
    if !sealed && (key.is_some() || !doc.seal_keyed) {
        return None;
    }
    let fields = doc.loader_json()?;
    let file = tensorvault_core::safetensors::SafetensorsFile::open_small(
        std::path::Path::new(weights),
        max,
    )
    .ok()??;
    #[cfg(feature = "test-hooks")]
    crate::testing::after_header_read(weights);
    let map = file.mapping();
    if map.len() != f.file_length {
        return None;
    }
    let ob = if matches!(f.tree, TreeAlgorithm::Blake3) && f.chunk_size >= 128 * 1024 {
        open_outboard(outboard, f.chunk_size, f.file_length)
    } else {
        None
    };
    // The header's bytes: through the chunk tree when the outboard can vouch for chunk 0 (the pieces
    // that hold it: cheaper than its SHA-256, and a first view inside those pieces then needs no check
    // of its own), else by the digest the block records. Either way the header's bytes hashed are the
    // ones it was parsed from (`header_bytes`, read at the open), not the mapping's, which a writer
    // could change in between: the header the views are cut by is the one checked.
    let parsed = file.header_bytes()?;
    if u64::try_from(parsed.len()).ok() != Some(f.header_length) {
        return None;
    }
    let header_pieces = match ob
        .as_ref()
        .map(|o| header_by_tree(o, f, &split.leaves, parsed, map))
    {
        Some(Some((PieceCheck::Ok, n))) => n,
        Some(Some((PieceCheck::Damaged, _))) => return None,
        _ => {
            if to_hex(&tensorvault_core::hash::sha256(parsed)) != f.header_sha256 {
                return None;
            }
            0
        }
    };
    Some(NativeCheckpointOpen {
        text: None,
        fields: Some(fields),
        sealed,
        leaves: split.leaves,
        file: Some(NativeSafetensors::from_file(file)),
        outboard: ob,
        header_pieces,
    })
}

/// The header's pieces of chunk 0 checked through the outboard: the check and how many pieces it
/// covered; None (or `Unusable`: chunk 0 not full, an empty header) when the tree cannot stand in for
/// the digest, and when the header spans the whole chunk (one hash of the header is as cheap).
fn header_by_tree(
    ob: &NativeOutboard,
    f: &BlockFields,
    leaves: &[u8],
    parsed: &[u8],
    map: &tensorvault_core::io::Mapping,
) -> Option<(PieceCheck, u32)> {
    let piece = f.chunk_size.checked_div(ob.pieces_per_chunk())?;
    let last = f.header_length.div_ceil(piece);
    if last >= ob.pieces_per_chunk() {
        return None;
    }
    let leaf = leaves.get(..32)?;
    Some((
        ob.check_header(leaf, last, parsed, map),
        u32::try_from(last).ok()?,
    ))
}
