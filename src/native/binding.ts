// GENERATED from the binding (crates/tensorvault-node) by `napi build --dts` and
// scripts/gen-binding-types.mjs: do not edit. `node scripts/build.mjs native` regenerates it.
/* eslint-disable */

/**
 * Progress and cancellation of one native job. JS polls `done`/`total` for progress and calls
 * `cancel()` when its `AbortSignal` fires; the job stops at its next chunk boundary.
 */
export declare class JobControl {
  constructor()
  /** Ask the job to stop. */
  cancel(): void
  /** Whether `cancel()` was called. */
  get cancelled(): boolean
  /** Bytes processed so far. */
  get done(): number
  /** Total bytes of the job (0 until known). */
  get total(): number
}

/**
 * What the checkpoint open's fast path read and checked (see [`checkpoint_open_lazy`] and
 * [`checkpoint_read_sidecar`]): the sidecar's text without the leaves (`checkpointReadSidecar`), or
 * its checked fields and whether the seal matched (`checkpointOpenLazy`), the leaves (kept here,
 * checked against the root: no buffer per open for V8 to account), and for a lazy load the weights'
 * handle and the outboard. `takeText` / `takeFields` / `takeFile` / `takeOutboard` hand each over once.
 */
export declare class NativeCheckpointOpen {
  /** The sidecar's JSON text with `tensorvault.leaves` emptied (once). */
  takeText(): string | null
  /**
   * The sidecar's fields as the loader takes them, checked as it checks them (once; lazy open
   * only): `{ metadata, integrity_hash, block }`, the metadata's members in the sidecar's order,
   * the block without its leaves.
   */
  takeFields(): string | null
  /**
   * Whether the seal was checked and matched in this call (false for a keyed block opened without
   * its key: nothing could be checked).
   */
  sealChecked(): boolean
  /** The mapped weights, whose length and header digest matched the block (once). */
  takeFile(): NativeSafetensors | null
  /** The outboard, or null when it is missing or unusable (once). */
  takeOutboard(): NativeOutboard | null
  /**
   * Leading pieces of chunk 0 whose bytes were checked against the outboard (they hold the
   * safetensors header, checked that way instead of by its SHA-256); 0 when the header was checked
   * by its digest.
   */
  headerPieces(): number
  /** Bytes of decoded leaves (32 per chunk). */
  leafBytes(): number
  /** Leaves `[first, first + count)` as hex (clamped to the leaves there are). */
  leavesHex(first: number, count: number): string
}

/** In-memory `k + m` erasure codec over equal-length buffers. */
export declare class NativeErasureCodec {
  constructor(k: number, m: number)
  /** The SIMD kernel in use (`avx512-gfni`, `avx2`, `ssse3` or `portable`). */
  get kernel(): string
  /**
   * Write the `m` parity shards of `k` equal-length data shards into `parity` (`m` buffers of the
   * same length, not overlapping each other or the data). Runs on the calling thread below
   * [`PARALLEL_MIN`] bytes of data, split across the thread pool above.
   */
  encodeInto(data: Array<Uint8Array>, parity: Array<Uint8Array>): void
  /**
   * Rebuild the shards marked absent in `present` in place: `shards` holds all `k + m` buffers of
   * one length (data then parity); the present ones are read, the absent ones (which must not
   * overlap any other shard) are overwritten. Threads as in `encodeInto`.
   */
  reconstructInto(shards: Array<Uint8Array>, present: Array<boolean>): void
}

/**
 * A mapped file's descriptor, held by the addon and lent to JS by number (`fd`), for reads beside
 * the mapping (`NativeSafetensors::dup_fd`). It holds the open file (its `Arc`), so the descriptor
 * stays open until `close()` or, failing that, until the object is garbage-collected or its
 * environment (a worker) torn down, whatever happens to the handle it came from: a descriptor handed
 * to JS as a bare number leaked when its holder was dropped without `close()`, and closing it with
 * `fs.closeSync` in a worker printed Node's "closed but not opened in unmanaged mode" warning. (It
 * was a `dup` of the descriptor: a third descriptor per lazily loaded checkpoint.) Reported to the
 * collector while it holds the file (`cost.rs`).
 */
export declare class NativeFd {
  /**
   * The descriptor's number; `TV_CLOSED` after `close()`. Valid only until `close()`: the number
   * may then name another file.
   */
  get fd(): number
  /**
   * Let go of the file: its descriptor is closed unless the handle it came from (or a read in
   * flight) still holds it. Idempotent.
   */
  close(): void
  /** Whether `close()` was called. */
  get closed(): boolean
}

/**
 * A held writer lock (an advisory `flock` on the lock file). Dropping it (garbage collection,
 * process exit) releases the lock; `release()` also removes the file.
 */
export declare class NativeFileLock {
  /** Remove the lock file (if it is still this lock's) and release the lock. Idempotent. */
  release(): void
  /** Whether the lock is still held. */
  get held(): boolean
}

/**
 * An open `.fold` / `.mind` file. Behind a mutex so that `close()` takes `&self`: napi-rs keeps the
 * receiver borrowed while a `readChunk()` task is in flight, and a `close(&mut self)` then threw an
 * untyped `InvalidArg` error (see `NativeSafetensors`).
 */
export declare class NativeFold {
  /**
   * Header, index (JS form: big integers as `{"$int"}`, non-finite floats as `{"$float"}`), file
   * checks and chunk records, as one JSON text.
   */
  infoJson(): string
  /** Read chunk number `index` on the libuv pool (verified once per open). */
  readChunk(index: number, control: JobControl): Promise<FoldChunkRead>
  /**
   * A zero-copy `ArrayBuffer` over `length` bytes of the mapping at `offset` (a chunk stored as it
   * is); it keeps the mapping alive until collected.
   */
  regionBuffer(offset: number, length: number): unknown
  /**
   * Release this handle (views already handed out keep the mapping alive; a `readChunk()` in
   * flight completes on its own reference). Idempotent; never throws.
   */
  close(): void
}

/**
 * An open outboard of a lazily loaded checkpoint: the file, held open, and its piece count. The
 * first view's check is one call that reads the chunk's values and the pieces itself (no file
 * descriptors, reads or buffers on the JS side: they cost more than the hashing of a 64 KiB piece).
 */
export declare class NativeOutboard {
  /** Pieces per chunk. */
  pieces(): number
  /**
   * Check pieces `[first, last)` of full chunk `chunk`, read from the weights' descriptor `fd`
   * (borrowed, not closed), against the chunk's values, which must first merge to `leafHex`.
   * 0 when every piece matches, 1 when one differs or cannot be read whole (damage, truncation),
   * 2 when the outboard is unusable for this chunk (closed, unreadable, stale or tampered).
   */
  verify(chunk: number, leafHex: string, first: number, last: number, fd: number): number
  /** Close the outboard (a later `verify` answers 2). Idempotent; never throws. */
  close(): void
}

/**
 * An open, validated safetensors file. The header stays here: JS looks tensors up by name through
 * `info`, so opening a file costs the JS thread nothing per tensor (issue 13, item 14).
 *
 * The file sits behind a mutex so that `close()` takes `&self`: napi-rs keeps the receiver borrowed
 * (shared) while an `AsyncTask` a method returned is in flight, so a `close(&mut self)` during a
 * `readRange()` or `prefetch()` threw an untyped `InvalidArg` error and left the file open. Each
 * task holds its own `Arc` of the file: it completes, and the descriptor is closed when the last
 * holder lets go.
 *
 * While open it reports its descriptor and mapping to the garbage collector (`cost.rs`), so that a
 * loop dropping files without `close()` has them finalized before it runs out of descriptors.
 */
export declare class NativeSafetensors {
  /**
   * The tensors in file order as one JSON array of `{name, dtype, shape, fileOffset, byteLength}`
   * (one string crossing into JS is much cheaper than hundreds of N-API objects).
   */
  tensorsJson(): string
  /** Number of tensors. */
  tensorCount(): number
  /**
   * Tensor `name`'s entry, or None when the file has no such tensor (a hash lookup here: nothing is
   * built per tensor on the JS side).
   */
  info(name: string): NativeTensorEntry | null
  /** Whether the file holds a tensor called `name`. */
  has(name: string): boolean
  /** The tensor names in file order, as one JSON array (one string crossing into JS). */
  namesJson(): string
  /** Total bytes of tensor data (the data area's length). */
  dataLength(): number
  /** The file's length in bytes, as mapped. */
  fileLength(): number
  /** The `__metadata__` map (None when absent). */
  metadata(): Array<MetadataEntry> | null
  /**
   * SHA-256 (hex) of the first `length` bytes of the file (a checkpoint's `header_sha256` check
   * without opening and reading the file again), or null when the file is shorter. When `length` is
   * the header's, the bytes hashed are the ones the header was parsed from at the open. Checked
   * against a truncation since the open first.
   */
  headerSha256(length: number): string | null
  /**
   * The mapped file's own descriptor, for reads beside the mapping: the same file as the views by
   * construction, without opening the path again (which could name another file by then). The
   * returned object holds the file open (not a duplicate of its descriptor: one descriptor per
   * open file, not two) until its `close()`, or until it is garbage-collected (a checkpoint
   * dropped without `close()`, a worker terminated), whatever this handle's `close()` does.
   */
  dupFd(): NativeFd
  /**
   * The mapped file's state now, from `fstat` of its own descriptor (no duplicate made):
   * `"dev ino size mtime_sec mtime_nsec ctime_sec ctime_nsec"` (decimal). A lazy checkpoint keys
   * what it has checked to it.
   */
  fileStamp(): string
  /** Header length and file size. */
  dataStart(): number
  /**
   * Checks a view of tensor `name` before it is handed out (`byteOffset`/`byteLength` select a
   * sub-range; by default the whole tensor): the range lies inside the tensor, it is at most
   * `maxBytes` (`TV_TENSOR_TOO_LARGE` otherwise) and the file was not truncated since it was opened
   * (`TV_FILE_CHANGED`). With `populate`, the range's pages are mapped first
   * (`MADV_POPULATE_READ`) so that reading the view takes no page faults.
   */
  checkRange(name: string, byteOffset: number, byteLength: number | undefined | null, maxBytes: number, populate?: boolean | undefined | null): void
  /**
   * A copy of a checked range of tensor `name` in a new engine-owned `ArrayBuffer` (for runtimes
   * that forbid external buffers, and for views whose alignment forbids a window on the mapping).
   */
  copyRange(name: string, byteOffset: number, byteLength: number | undefined | null, maxBytes: number): ArrayBuffer
  /**
   * A zero-copy external `ArrayBuffer` over bytes `offset..offset + length` of the mapped file
   * (absolute offsets; `length` ≥ 1). Tensor views are typed-array windows on such region buffers,
   * made in JS without crossing into the addon. The buffer holds the mapping alive until V8 collects
   * it, so views outlive `close()`. Writes by JS land in private copy-on-write pages, never in the
   * file. `TV_EXTERNAL_BUFFERS_UNAVAILABLE` where the runtime forbids external buffers.
   */
  regionBuffer(offset: number, length: number): ArrayBuffer
  /** Copy `length` bytes of tensor `name` from `offset` into a new Buffer, on the libuv pool. */
  readRange(name: string, offset: number, length: number): Promise<Buffer>
  /**
   * Map every page of the named tensors (all tensors when `names` is None) on the libuv pool, in
   * parallel pieces (`MADV_POPULATE_READ`); resolves to false where the system has no such advice
   * (nothing was done).
   */
  prefetch(names: Array<string> | undefined | null, control: JobControl): Promise<boolean>
  /**
   * Release this handle's reference to the file: its descriptor is closed now, or, when a
   * `readRange()` or `prefetch()` is in flight, as soon as the last of them returns (each completes
   * on its own reference). Views already handed out stay valid. Idempotent; never throws.
   */
  close(): void
  /** Whether `close()` was called. */
  get closed(): boolean
}

/** The streaming writer (see `tensorvault_core::safetensors::SafetensorsWriter`). */
export declare class NativeSafetensorsWriter {
  /** Tensor names in the order their bytes must be written. */
  order(): Array<string>
  /** Total bytes of the data area. */
  dataLength(): number
  /** Append a small chunk on the JS thread (progress is added to `control`). */
  writeSync(data: Uint8Array, control: JobControl): void
  /** Append a chunk on the libuv pool. */
  write(data: Uint8Array, control: JobControl): Promise<void>
  /** Check completeness, fsync, rename into place, fsync the folder (on the libuv pool). */
  finish(): Promise<void>
  /** Abandon the file: the temporary file is removed and the destination left untouched. */
  abort(): void
}

/** Incremental SHA-256 state. */
export declare class NativeSha256 {
  constructor()
  /** Feed bytes; fails after `digest()`. */
  update(data: Uint8Array): void
  /** The digest; the state is finished afterwards. */
  digest(): Buffer
  /** An independent copy of the current state. */
  copy(): NativeSha256
}

/**
 * Leaves (hex, concatenated; `-` × 64 for a chunk past the end of the file, `!` × 64 for one that could
 * not be read because its bytes are lost to the medium, `EIO`) of chunks
 * `[first, first + count)` of `path`, read and hashed in parallel on the pool.
 */
export declare function checkpointChunkLeaves(path: string, chunkSize: number, first: number, count: number, tree: string, control: JobControl): Promise<string>

/** Parity of the save: a preset `level`, or all of `k`, `m` and `chunkSize`; written to `sidecar`. */
export interface CheckpointEccOptions {
  sidecar: string
  level?: string
  k?: number
  m?: number
  chunkSize?: number
}

/** The parity sidecar written by the save. */
export interface CheckpointEccWritten {
  k: number
  m: number
  chunkSize: number
}

/**
 * The leaf (hex) of one chunk held in memory, on the calling thread (one chunk: cheaper than a
 * round trip to the pool).
 */
export declare function checkpointLeaf(data: Uint8Array, tree: string): string

/**
 * The verified open of a `tensorvault`-layout checkpoint in one call, for the common case: read the
 * sidecar on the fast path, check its leaves against the block's root, check the document and the
 * integrity block as the loader does (`sidecar_doc`) and the seal over the canonical metadata (with
 * `key` when the block is keyed), open and map the weights, and check their length and header digest
 * against the block; open the outboard. Null when any step does not go through (not on the fast path,
 * a mismatch, a file that does not open): the loader then takes its step-by-step path, which
 * reports, repairs or fails exactly as before. The loader takes the checked fields as they are
 * (`takeFields`: the metadata as the values the seal covers) and still checks the key policy, the
 * version and the expectations before any tensor is handed out. `keyedOnly` (a key is required):
 * null before the weights are opened unless both the seal and the hash are keyed, so that the loader
 * refuses a downgrade before mapping anything.
 */
export declare function checkpointOpenLazy(weights: string, meta: string, outboard: string, maxHeader: number, keyedOnly: boolean, key?: Uint8Array | undefined | null): NativeCheckpointOpen | null

/**
 * Open the outboard at `path` for a tree at `chunkSize` over `fileLength` bytes; null when it is
 * missing, unreadable, malformed or describes another file (the loader then hashes whole leaves).
 */
export declare function checkpointOutboardOpen(path: string, chunkSize: number, fileLength: number): NativeOutboard | null

/** One mark of the save's timeline. */
export interface CheckpointPhase {
  name: string
  ms: number
}

/**
 * Read the sidecar at `path`, split it (see `checkpoint_sidecar`) and check its leaves against the
 * block's root; null when it cannot be read, is not on the fast path or the leaves do not match: the
 * caller then reads and parses it in full (and reports the errors). The weights are not opened.
 */
export declare function checkpointReadSidecar(path: string): NativeCheckpointOpen | null

/** Options of `checkpointSaveWeights`. */
export interface CheckpointSaveOptions {
  /** Chunk size of the tree (a power of two, 4 KiB … 1 GiB). */
  chunkSize: number
  /** Tree hash: `sha256` (`sha256-tree-v1`), `blake3` (`blake3-tree-v1`) or `none`. */
  tree: string
  /** Indices of the tensors in the order the `PyFolds` hash feeds them. */
  hashOrder: Array<number>
  /** Parity, or none. */
  ecc?: CheckpointEccOptions
  /**
   * With `tree: "blake3"`: where to write the outboard (`NAME.safetensors.tvob`), computed with the
   * leaves in the same pass; see `outboard` in the result.
   */
  outboard?: string
}

/** Result of `checkpointSaveWeights`. */
export interface CheckpointSaveResult {
  fileLength: number
  headerLength: number
  /** SHA-256 of the header bytes, hex. */
  headerSha256: string
  /** The plain `PyFolds` digest, hex. */
  pyfoldsDigest: string
  /** The tree's leaves, hex, concatenated. */
  leaves: string
  /** The tree's root, hex (empty without a tree). */
  root: string
  ecc?: CheckpointEccWritten
  /**
   * Whether the outboard asked for was written (not when the chunk size does not allow one, or
   * writing it failed: it is an accelerator, never a reason to fail the save).
   */
  outboard: boolean
  /** When each phase of the pass ended (ms since it started), in that order. */
  phases: Array<CheckpointPhase>
}

/**
 * Write a checkpoint's weights at `path` (must not exist) from in-memory tensors, computing the
 * `PyFolds` digest, the chunk tree and the parity sidecar in the same pass, on the libuv pool. The
 * buffers are read while the promise is pending.
 */
export declare function checkpointSaveWeights(path: string, names: Array<string>, dtypes: Array<string>, shapes: Array<Array<number>>, data: Array<Uint8Array>, hashPrefixes: Array<string>, options: CheckpointSaveOptions, control: JobControl): Promise<CheckpointSaveResult>

/**
 * The integrity block's seal, `sha256:<hex>` (or `hmac-sha256:<hex>` with `key`), over its fields,
 * the canonical JSON of the sidecar's `metadata` and of the block's `ecc`, and the sidecar's
 * `integrity_hash` (`docs/formats/checkpoint.md`, "Seal message"): one call instead of the message
 * built from a dozen `Buffer` operations and hashed by another call (`docs/benchmarks.md`, thirteenth
 * session). `headerSha256` and `root`: 32-byte digests in hex.
 */
export declare function checkpointSeal(algorithm: string, chunkSize: number, fileLength: number, headerLength: number, headerSha256: string, root: string, metadata: string, integrityHash: string, ecc: string, key?: Uint8Array | undefined | null): string

/** The root (hex) of a tree from its leaves: lower-case hex digests, concatenated, as UTF-8 bytes. */
export declare function checkpointTreeRoot(leaves: Uint8Array, chunkSize: number, fileLength: number, tree: string): string

/**
 * Write the outboard of the weights at `weights` (chunk tree at `chunkSize`) to `out` (created or
 * truncated, fsynced), on the pool. Resolves with its length.
 */
export declare function checkpointWriteOutboard(weights: string, out: string, chunkSize: number, control: JobControl): Promise<number>

/**
 * Copy the extended attributes of the file at `from` (a file about to be replaced; symlinks followed)
 * onto the file at `to` (the writer's temporary, renamed over it next): on Linux its xattrs, so also
 * its POSIX ACLs and `SELinux` label, except `security.capability` (see
 * `tensorvault_core::io::copy_xattrs`). The TypeScript writers' counterpart of the core writers' own
 * copy. Best effort: returns how many were copied; an attribute this process may not read or set,
 * a file system without xattrs or a `to` that cannot be opened copies nothing and is no error.
 * Other platforms: 0, nothing copied.
 */
export declare function copyXattrs(from: string, to: string): number

/** The CPU features detected and the kernels in use. */
export declare function cpuInfo(): CpuInfo

/** What the process runs on: the SIMD features found, the `TV_CPU` cap and the kernels in use. */
export interface CpuInfo {
  /** `x86_64`, `aarch64`, … */
  arch: string
  /**
   * SIMD features of this CPU that tensorvault's code paths use (`avx2`, `avx512f`, `gfni`, `sha`, …;
   * `neon` on arm64).
   */
  features: Array<string>
  /** The highest ECC feature level this CPU supports (`portable`, `ssse3`, `avx2`, `avx512`). */
  detected: string
  /** The level `TV_CPU` asked for, or null. */
  cap?: string
  /** A `TV_CPU` value that names no level (ignored), or null. */
  capError?: string
  /** The level in use: `detected` capped by `cap`. */
  level: string
  /** The erasure kernel in use (`avx512-gfni`, `avx2`, `ssse3`, `portable`). */
  erasureKernel: string
  /** The engine of the wide GF(2^16) code (`avx512-gfni`, `avx2`, `ssse3`, `neon`, `portable`). */
  wideEngine: string
  /** The `rs(32)` encoder in use (`avx512-gfni`, `avx2-interleaved`, `avx2-sliced`, `portable`). */
  rsKernel: string
  /** The SHA-256 path (`sha-ni` or `software`; not capped by `TV_CPU`). */
  sha256: string
  /** The BLAKE3 path (`avx512`, `avx2`, `sse4.1`, `sse2`, `neon`, `portable`; not capped by `TV_CPU`). */
  blake3: string
}

/**
 * Start writing `path`: declares every tensor; the returned writer's `order()` is the order in which
 * their bytes must be written.
 */
export declare function createSafetensorsWriter(path: string, names: Array<string>, dtypes: Array<string>, shapes: Array<Array<number>>, metadata?: Array<MetadataEntry> | undefined | null): NativeSafetensorsWriter

/**
 * Measure encode / reconstruct / verify throughput for one `(k, m, shard size, threads)`, with the
 * fastest kernel or the one named (`avx512-gfni`, `avx2`, `ssse3`, `portable`; it must run here).
 */
export declare function eccBench(k: number, m: number, shardSize: number, threads: number, minRoundMs: number, kernel?: string | undefined | null): Promise<EccBenchResult>

/** One row of `tensorvault bench ecc`. */
export interface EccBenchResult {
  /** Bytes per second. */
  encode: number
  reconstructOne: number
  reconstructAll: number
  verify: number
  verifyBlake3: number
  kernel: string
}

/** Parameters and sizes of a sidecar. */
export interface EccLayout {
  k: number
  m: number
  chunkSize: number
  fileLength: number
  chunks: number
  stripes: number
  sidecarLength: number
  /** Chunk digest: `blake3` or `sha256`. */
  digest: string
  /** Sidecar format version: 1 (GF(2^8) stripes) or 2 (one wide GF(2^16) code, `stripes` = 1). */
  formatVersion: number
  /** Format v2: data chunks per local parity group (0: no local parity). */
  localGroup: number
  /** Format v2: local parity groups, each with one XOR parity chunk after the `m` global ones. */
  localGroups: number
  /**
   * Format v2: whether the groups are interleaved (chunk `i` in group `i mod localGroups`), as new
   * sidecars have them, or consecutive runs of `localGroup` chunks (sidecars written before).
   */
  interleavedGroups: boolean
}

/**
 * Protect a file: write `<path>.tvecc` (or `options.sidecar`) atomically. The level, the parameters
 * and the digest are validated by the core.
 */
export declare function eccProtect(path: string, options: EccProtectOptions, control: JobControl): Promise<EccProtectResult>

/** Options of `eccProtect` (see `protect()` in the TypeScript API). */
export interface EccProtectOptions {
  /** Where to write the sidecar (default `<path>.tvecc`). */
  sidecar?: string
  /** A preset: `low`, `medium` (the default when no custom parameters are given) or `high`. */
  level?: string
  /** Custom parameters, all three or none: data chunks per stripe. */
  k?: number
  /** Parity chunks per stripe. */
  m?: number
  /** Chunk size in bytes. */
  chunkSize?: number
  /** Chunk digest: `blake3` (default) or `sha256`. */
  digest?: string
  /**
   * Sidecar format: `auto` (default: v2 when the file needs more than one GF(2^8) stripe), `v1` or
   * `v2`. With custom parameters, `v2` makes `k` the file's chunk count and `m` the parity chunks.
   */
  format?: string
}

/** Result of `eccProtect`. */
export interface EccProtectResult {
  sidecarPath: string
  layout: EccLayout
  /** Chunk-tree root of the protected file, hex. */
  root: string
}

/**
 * Repair a file and its sidecar from parity, then re-verify. A stale-looking sidecar is refused
 * (`TV_ECC_STALE_SIDECAR`) unless `force`. `mode`: `auto` (default: in place, a copy when the file is
 * not writable), `in-place` or `copy`. `chunks`: damaged chunks from a verify report (only their
 * stripes are checked); `ranges`: damaged `[offset, length]` byte ranges, the same by their chunks.
 */
export declare function eccRepair(path: string, sidecar: string | undefined | null, force: boolean | undefined | null, mode: string | undefined | null, chunks: Array<number> | undefined | null, ranges: Array<Array<number>> | undefined | null, control: JobControl): Promise<EccRepairResult>

/** Result of `eccRepair`. */
export interface EccRepairResult {
  before: EccVerifyResult
  after: EccVerifyResult
  repairedChunks: Array<number>
  fileRewritten: boolean
  sidecarRewritten: boolean
  /** How the file was written: `in-place`, `copy`, or null when it was not. */
  writeMode?: string
  /**
   * What `before` covers: `file` (every chunk and parity slot) or `listed` (the stripes of the chunks
   * passed in).
   */
  checkedBefore: string
  /** What `after` covers: `file` or `written` (the chunks written, the length, the sidecar's structure). */
  checkedAfter: string
  /**
   * The file was repaired but its sidecar could not be rewritten: that error, encoded as a thrown
   * error's message is (`src/errors.ts` `fromNative` reads it); null otherwise.
   */
  sidecarError?: string
}

/** The sidecar's own structure. */
export interface EccSidecarHealth {
  headerA: boolean
  headerB: boolean
  tableABadBlocks: Array<number>
  tableBBadBlocks: Array<number>
  actualLength: number
  expectedLength: number
}

/** Verify a file against its sidecar, read-only. */
export declare function eccVerify(path: string, sidecar: string | undefined | null, control: JobControl): Promise<EccVerifyResult>

/** Result of `eccVerify`. */
export interface EccVerifyResult {
  /** `intact`, `repairable`, `unrepairable` or `stale`. */
  status: string
  /**
   * `repairable` or `unrepairable` when `status` is `stale` (what a forced repair would find), else
   * the same as `status`.
   */
  damageStatus: string
  /**
   * Whether the file's modification time or length differs from the sidecar's record (None: the
   * sidecar predates these hints).
   */
  modifiedSinceProtect?: boolean
  /**
   * Bytes of the file that differ from what was protected (appended bytes included): counted byte by
   * byte when `differing_exact`, else the bytes of the damaged chunks.
   */
  differingBytes: number
  /** Whether `differing_bytes` was counted byte by byte (the damaged chunks rebuilt and compared). */
  differingExact: boolean
  layout: EccLayout
  actualLength: number
  damagedChunks: Array<number>
  damagedParity: Array<number>
  /** Data chunks among `damaged_chunks` that could not be read (`EIO`: a bad sector). */
  unreadableChunks: Array<number>
  /** Parity slots among `damaged_parity` that could not be read. */
  unreadableParity: Array<number>
  unrepairableStripes: Array<number>
  unrepairableChunks: Array<number>
  sidecar: EccSidecarHealth
}

/** One chunk for `foldWrite`: raw bytes with a 4-character type, or JSON text (type `JSON`). */
export interface FoldChunkInput {
  name: string
  ctype?: string
  data?: Uint8Array
  json?: string
}

/**
 * One chunk read: `data` holds owned payload bytes, or `mappedOffset`/`length` name a window on the
 * mapping (take it with `regionBuffer`).
 */
export interface FoldChunkRead {
  data?: Buffer
  mappedOffset?: number
  length: number
  /** `intact`, `repaired` or `unchecked`. */
  status: string
  correctedBytes: number
}

/**
 * A `JSON` chunk's text (Python rules: `NaN`/`Infinity`, exact big integers) re-emitted as standard
 * JSON for JavaScript: integers beyond ±2^53 as `{"$int":"…"}`, non-finite floats as `{"$float":…}`.
 */
export declare function foldJsonToJs(payload: Uint8Array): string

/** Open and validate a `.fold` / `.mind` file on the libuv pool. */
export declare function foldOpen(path: string, options: FoldOpenOptions, control: JobControl): Promise<NativeFold>

/** Options of `openFold` / `verifyFold` / `repairFold`. */
export interface FoldOpenOptions {
  /** HMAC key bytes (the UTF-8 of `PYFOLDS_INTEGRITY_KEY`). */
  hmacKey?: Uint8Array
  /** AES-256 key (32 bytes). */
  decryptionKey?: Uint8Array
  /** Raw Ed25519 public key (32 bytes) for the trust block and the metadata signature. */
  trustKey?: Uint8Array
  /** `full`, `lazy` (default) or `none`. */
  verify?: string
  requireAuthenticated?: boolean
  requireMerkle?: boolean
  requireSignature?: boolean
  strict?: boolean
  /** Largest payload handed out. */
  maxPayload?: number
}

/**
 * The tensors of a safetensors payload (a `STEN` chunk), validated by the safetensors header parser:
 * JSON `[{name, dtype, shape, exactShape?, start, byteLength}]` with `start` relative to the payload.
 */
export declare function foldSafetensorsTensors(payload: Uint8Array): string

/**
 * Verify every chunk and the file-level checks in degraded mode (one damaged chunk does not stop
 * the rest); with `repairTo`, rewrite repairable chunks atomically into that path and verify again.
 */
export declare function foldVerify(path: string, options: FoldOpenOptions, repairTo: string | undefined | null, control: JobControl): Promise<string>

/** Write a `.fold` / `.mind` file atomically and durably on the libuv pool. */
export declare function foldWrite(path: string, chunks: Array<FoldChunkInput>, options: FoldWriteOptions, control: JobControl): Promise<FoldWriteResult>

/** Options of `foldWrite`. */
export interface FoldWriteOptions {
  /** zstd level (`PyFolds`: 3); absent = stored as is. */
  zstdLevel?: number
  /** rs(N)'s N. */
  ecc?: number
  hmacKey?: Uint8Array
  /** basic | standard | high | paranoid. */
  level?: string
  encryptionKey?: Uint8Array
  /** Ed25519 seed (32 bytes). */
  signingSeed?: Uint8Array
  /** Caller metadata as JSON text (an object). */
  metadataJson?: string
  createdAt?: number
  /** Bare-hex digests as `PyFolds` 1.0.x writes them. */
  legacyDigests?: boolean
}

/** What `foldWrite` wrote. */
export interface FoldWriteResult {
  fileLength: number
  indexOffset: number
  indexLength: number
  manifestHash: string
  merkleRoot?: string
}

/**
 * Compress `data` on the libuv pool into consecutive gzip members of `memberSize` input bytes (default
 * 1 MiB), at gzip `level` 1–9 (libdeflate's level of the same number). `threads` (default 1: this
 * libuv thread only) compresses members in parallel. The result is one valid multi-member `.gz`.
 */
export declare function gzipMembers(data: Uint8Array, level: number, memberSize: number | undefined | null, threads: number | undefined | null, control: JobControl): Promise<Buffer>

/** Hash a file on the libuv pool. `chunkSize` selects the chunk tree; `threads` its parallelism. */
export declare function hashFile(path: string, chunkSize: number | undefined | null, threads: number | undefined | null, control: JobControl): Promise<HashFileResult>

/** Result of `hashFile`. */
export interface HashFileResult {
  /** Plain SHA-256, or the tree's root. */
  digest: Buffer
  /** The file's length in bytes. */
  length: number
  /** Chunk size of the tree (absent for a plain hash). */
  chunkSize?: number
  /** The tree's leaves, concatenated 32-byte digests (absent for a plain hash). */
  leaves?: Buffer
}

/** HMAC-SHA256 of `data` under `key`. */
export declare function hmacSha256(key: Uint8Array, data: Uint8Array): Buffer

/**
 * Take the writer lock on `path` without waiting, writing `holder` (this process's description,
 * one JSON line) into the file. `TV_LOCKED` (with `context.holder`, the holder's own line) when
 * another writer holds it; `TV_NOT_A_FILE` / `TV_IS_DIRECTORY` when the path is not a regular file.
 */
export declare function lockFile(path: string, holder: string): NativeFileLock

/** One `__metadata__` entry (order preserved: sorted by key). */
export interface MetadataEntry {
  key: string
  value: string
}

/** One tensor's header entry (absolute file offset). */
export interface NativeTensorEntry {
  name: string
  dtype: string
  /** The dimensions as numbers: exact up to 2^53 - 1, rounded above (see `exact_shape`). */
  shape: Array<number>
  /**
   * Every dimension as decimal text, present only when one is above 2^53 - 1 (possible only for a
   * zero-size tensor, e.g. `[9007199254740993, 0]`), where `shape` rounds it.
   */
  exactShape?: Array<string>
  fileOffset: number
  byteLength: number
}

/**
 * Handles of this thread reported to the collector and not yet closed or finalized (open files,
 * including those dropped without `close()` whose finalizers have not run yet).
 */
export declare function openHandles(): number

/** Open and validate a safetensors file on the libuv pool. */
export declare function openSafetensors(path: string): Promise<NativeSafetensors>

/**
 * Open and validate a safetensors file on the calling thread when its JSON header is at most
 * `maxHeader` bytes (a small header costs less than the libuv pool's round trip); `null` when it is
 * larger, after reading only its 8-byte length: open it with `openSafetensors` then.
 */
export declare function openSafetensorsSmall(path: string, maxHeader: number): NativeSafetensors | null

/**
 * Mappings kept alive only by views after their file was closed: their finalizers (run by Node on a
 * later turn of the event loop) have not released them yet. See
 * `tensorvault_core::io::orphaned_mappings` and `settleClosedMappings` (`src/io/mappings.ts`).
 */
export declare function orphanedMappings(): number

/**
 * Repair `data` from its sidecar `parity` (or, when `parity` is null, recover the data of the inline
 * chunk `data`). `erasures`: byte offsets known to be wrong (in `data`, or in the inline chunk);
 * `parityErasures`: byte offsets in `parity` known to be wrong.
 */
export declare function rsDecode(n: number, data: Uint8Array, parity: Uint8Array | undefined | null, erasures: Array<number> | undefined | null, parityErasures: Array<number> | undefined | null, threads: number | undefined | null, control: JobControl): Promise<RsDecodeResult>

/** Result of `rsDecode`. */
export interface RsDecodeResult {
  /** The repaired data (a new buffer; the input is not modified). */
  data: Buffer
  /** Bytes changed by the repair (data and parity). */
  correctedBytes: number
  /** Indices of the repaired blocks, ascending. */
  correctedBlocks: Array<number>
}

/** Sidecar parity stream of `data` under `rs(n)` (`inline`: the `[data][parity]...` layout instead). */
export declare function rsEncode(n: number, data: Uint8Array, inline: boolean, threads: number | undefined | null, control: JobControl): Promise<Buffer>

/** Sidecar parity of a small input, synchronously (the TS layer uses it below 1 MiB). */
export declare function rsEncodeSync(n: number, data: Uint8Array): Buffer

/** Which encoding kernel this CPU uses under the `TV_CPU` cap (`avx512-gfni`, `avx2` or `portable`). */
export declare function rsKernel(): string

/** Parity count of a codec name `rs(N)` (`none` → null); anything else is `TV_ECC_UNKNOWN_CODEC`. */
export declare function rsParseName(name: string): number | null

/**
 * Parity count for a protection level (`off`/`none`/`0` → null, `low` → 16, `med` → 32, `high` →
 * 64); any other string is `TV_ECC_UNKNOWN_PROTECTION`.
 */
export declare function rsProtectionParity(level: string): number | null

/** Indices of the blocks of `data` whose parity differs from the sidecar `parity` (no repair, no copy). */
export declare function rsVerify(n: number, data: Uint8Array, parity: Uint8Array, threads: number | undefined | null, control: JobControl): Promise<Array<number>>

/** SHA-256 of `data`. */
export declare function sha256(data: Uint8Array): Buffer

/**
 * SHA-256 of many items packed in `data` (item `i` ends at `ends[i]`, starts at the previous end or
 * 0), in one call. Returns the digests concatenated, 32 bytes per item.
 */
export declare function sha256Many(data: Uint8Array, ends: Uint32Array): Buffer

/** [`sha256_many`] returning one lower-case hex string, 64 characters per item. */
export declare function sha256ManyHex(data: Uint8Array, ends: Uint32Array): string

/**
 * SHA-256 over `pieces` in order, on the libuv pool: each piece is bytes, or `[offset, length]`, a
 * range of the file at `path` (read in 1 MiB blocks while the previous ones are hashed). Progress and
 * cancellation through `control`.
 */
export declare function sha256Pieces(path: string | undefined | null, pieces: Array<Uint8Array | Array<number>>, control: JobControl): Promise<Buffer>

/**
 * Take an exclusive `flock` on the open descriptor `fd` (of the file at `path`, named in errors)
 * without waiting: true when taken (held until the descriptor is closed), false when another open
 * file description holds it. The liveness mark of the TypeScript writers' temporary files, as of the
 * core's (`tensorvault_core::io::try_lock_fd`). `TV_IO` (with `errno`) when the call fails (a closed
 * descriptor, a file system without `flock`).
 */
export declare function tryLockFd(fd: number, path: string): boolean

/**
 * Replace `path` with `data` atomically (temporary file, fsync, rename, fsync folder) on the libuv
 * pool.
 */
export declare function writeFileAtomic(path: string, data: Uint8Array): Promise<void>
