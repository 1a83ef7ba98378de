/**
 * {@link openFold}: PyFolds `.fold` / `.mind` containers, mapped private copy-on-write and validated in
 * the core before any offset is trusted. Chunks are verified once each (lazily by default), rs(N)
 * runs only when CRC-32C or the digest fails, chunks stored as they are come back as zero-copy views
 * on the mapping, JSON chunks parsed, and the `torch_state` chunk as a safetensors state dict.
 * Format notes: `docs/formats/fold.md`.
 */
import { callNative, ErrorCode, fromNative, invalidArgument, TensorVaultError } from '../errors';
import { runJob } from '../job';
import { native } from '../native';
import type { NativeFold } from '../native/binding';
import { type Dtype, isDtype, VIEW } from '../safetensors/dtype';
import type { Tensor } from '../safetensors/reader';
import { optionsObject } from '../validate';
import { type FoldJson, parseTagged, revive } from './json';
import { type NpzArray, readNpz } from './npz';
import { nativeOpenOptions, type OpenFoldOptions } from './options';

/** Result of one file-level check. */
export interface FoldCheck {
  /** `absent` (field not in the file), `unchecked` (no key given / verification off), `valid`, `invalid`, `unverifiable`. */
  status: 'absent' | 'unchecked' | 'valid' | 'invalid' | 'unverifiable';
  /** Why, for `invalid` and `unverifiable`. */
  detail?: string;
}

/** The file-level checks of an open `.fold` file. */
export interface FoldChecks {
  /** `metadata.manifest_hash` recomputed (once per open). */
  manifestHash: FoldCheck;
  /** The Merkle root over (name, offset, digest) of every chunk: an index checksum, not more. */
  merkleRoot: FoldCheck;
  /** Trust block: Ed25519 signature verified **and** its metadata/index hashes recomputed from this file. */
  trustBlock: FoldCheck;
  /** `metadata.signature`: covers `model_type`, `tags`, `reproducibility`, `protection` only — never the weights. */
  metadataSignature: FoldCheck;
  /** `metadata.chunk_hashes` agrees with every index entry and names exactly the index's chunks. */
  chunkHashes: FoldCheck;
  /**
   * `hmac` (the key authenticates digests, manifest and chunk list), `signature` (a bound, verified
   * trust block), or `none`: integrity only, anyone can rewrite the file and every check.
   */
  authenticated: 'hmac' | 'signature' | 'none';
  /** Non-fatal findings (layout PyFolds's writer never produces, unknown minor version). */
  warnings: string[];
  /** Policy rules the file breaks (`verifyFold` / `repairFold` report them; `openFold` throws `TV_FOLD_POLICY`). */
  policyViolations: string[];
}

/** One chunk record, validated against its index entry. */
export interface FoldChunkInfo {
  name: string;
  /** 4-character type: `STEN` safetensors, `JSON`, `NPZ0` NumPy archive, or caller-defined. */
  ctype: string;
  /** 0 stored as is, 1 zstd. */
  flags: number;
  /** Offset of the chunk header in the file. */
  offset: number;
  /** Offset of the stored bytes. */
  dataOffset: number;
  /** Bytes on disk (after compression and encryption). */
  storedLength: number;
  /** Payload length. */
  length: number;
  crc32c: number;
  /** `sha256:…` or `hmac-sha256:…` over the stored bytes. */
  digest: string;
  /** `none` or `rs(N)`. */
  ecc: string;
  eccLength: number;
  encrypted: boolean;
}

/** A chunk read. */
export interface FoldChunk extends FoldChunkInfo {
  /** The payload. A window on the mapping when stored as is and intact (see `copied`). */
  bytes: Uint8Array;
  /** False when `bytes` is a zero-copy view on the mapped file. */
  copied: boolean;
  /** `intact`, `repaired` (rs(N) fixed damaged stored bytes, which then verified) or `unchecked` (`verify: 'none'`). */
  status: 'intact' | 'repaired' | 'unchecked';
  /** Bytes corrected by rs(N). */
  correctedBytes: number;
}

/** A `STEN` chunk as a safetensors state dict: typed views per tensor. */
export interface FoldStateDict {
  /** Tensor names in file order. */
  readonly names: readonly string[];
  /** Tensor `name` (a typed view on the payload; zero-copy when the chunk is stored as is and aligned). */
  tensor(name: string): Tensor;
  /** Every tensor. */
  tensors(): Tensor[];
}

interface InfoJson {
  indexOffset: number;
  indexLength: number;
  fileLength: number;
  version: string;
  isMind: boolean;
  index: unknown;
  checks: FoldChecks;
  chunks: (FoldChunkInfo & {
    error?: { code: string; message: string; context: Record<string, string | number | null> };
  })[];
}

interface NativeTensor {
  name: string;
  dtype: string;
  shape: number[];
  /** Every dimension as decimal text, only when one is above 2^53 - 1 (`shape` then holds it rounded). */
  exactShape?: string[];
  start: number;
  byteLength: number;
}

/** An open `.fold` / `.mind` file. */
export class FoldFile {
  /** The path given to {@link openFold}. */
  readonly path: string;
  /** Container version (`1.2.0` for current PyFolds). */
  readonly version: string;
  /** True when the index names `ai_graph` or `ai_vectors`. */
  readonly isMind: boolean;
  /** The whole index (integers beyond 2^53 as `bigint`, `NaN`/`Infinity` as numbers). */
  readonly index: { [key: string]: FoldJson };
  /** `index.metadata`. */
  readonly metadata: { [key: string]: FoldJson };
  /** File-level checks. */
  readonly checks: FoldChecks;
  /** Chunk records in index order. */
  readonly chunks: readonly FoldChunkInfo[];
  /** File header: where the index lies, and the file length. */
  readonly layout: { indexOffset: number; indexLength: number; fileLength: number };
  #handle: NativeFold | undefined;
  #cache = new Map<number, Promise<FoldChunk>>();
  /** Chunk reads in flight on the native handle. */
  #reading = 0;
  /** A handle closed while reads were in flight: released when the last one settles. */
  #closeWhenIdle: NativeFold | undefined;

  /** @internal */
  constructor(path: string, handle: NativeFold) {
    this.path = path;
    this.#handle = handle;
    const info = JSON.parse(callNative(() => handle.infoJson())) as InfoJson;
    this.version = info.version;
    this.isMind = info.isMind;
    this.index = revive(info.index) as { [key: string]: FoldJson };
    const md = this.index.metadata;
    this.metadata =
      typeof md === 'object' && md !== null && !Array.isArray(md) && typeof md !== 'bigint' ? md : {};
    this.checks = info.checks;
    this.chunks = Object.freeze(info.chunks.map((c) => Object.freeze({ ...c })));
    this.layout = {
      indexOffset: info.indexOffset,
      indexLength: info.indexLength,
      fileLength: info.fileLength,
    };
  }

  #native(): NativeFold {
    if (this.#handle === undefined) throw new TensorVaultError(ErrorCode.CLOSED, 'the .fold file is closed');
    return this.#handle;
  }

  /** The chunk named `name` (`TV_FOLD_CHUNK_NOT_FOUND` otherwise). */
  info(name: string): FoldChunkInfo {
    const c = this.chunks.find((x) => x.name === name);
    if (c === undefined) {
      throw new TensorVaultError(
        ErrorCode.FOLD_CHUNK_NOT_FOUND,
        `no chunk named ${JSON.stringify(name)} in the file`,
        {
          chunk: name,
          path: this.path,
        },
      );
    }
    return c;
  }

  /**
   * Read chunk `name`: verified the first time (CRC-32C and digest; rs(N) only when they fail), then
   * decrypted and decompressed. The result is cached per chunk: a second call returns the same bytes
   * without reading or checking again.
   */
  chunk(name: string, options: { signal?: AbortSignal } = {}): Promise<FoldChunk> {
    try {
      optionsObject(options);
    } catch (err) {
      return Promise.reject(err);
    }
    const i = this.chunks.findIndex((x) => x.name === name);
    if (i < 0) return Promise.reject(this.#notFound(name));
    let p = this.#cache.get(i);
    if (p === undefined) {
      p = this.#read(i, options.signal);
      this.#cache.set(i, p);
      p.catch(() => this.#cache.delete(i));
    }
    return p;
  }

  #notFound(name: string): TensorVaultError {
    try {
      this.info(name);
    } catch (err) {
      return err as TensorVaultError;
    }
    return new TensorVaultError(ErrorCode.INTERNAL, 'unreachable');
  }

  async #read(i: number, signal: AbortSignal | undefined): Promise<FoldChunk> {
    const handle = this.#native();
    this.#reading++;
    try {
      return await this.#readOn(handle, i, signal);
    } finally {
      this.#reading--;
      const idle = this.#closeWhenIdle;
      if (this.#reading === 0 && idle !== undefined) {
        this.#closeWhenIdle = undefined;
        idle.close();
      }
    }
  }

  async #readOn(handle: NativeFold, i: number, signal: AbortSignal | undefined): Promise<FoldChunk> {
    const info = this.chunks[i] as FoldChunkInfo;
    const r = await runJob('fold.read', signal === undefined ? {} : { signal }, (control) =>
      handle.readChunk(i, control),
    );
    let bytes: Uint8Array;
    let copied = true;
    if (r.data !== undefined && r.data !== null) {
      bytes = new Uint8Array(r.data.buffer, r.data.byteOffset, r.data.byteLength);
    } else if (r.length === 0) {
      bytes = new Uint8Array(0);
      copied = false;
    } else {
      const buf = callNative(() => handle.regionBuffer(r.mappedOffset as number, r.length)) as ArrayBuffer;
      bytes = new Uint8Array(buf);
      copied = false;
    }
    return {
      ...info,
      bytes,
      copied,
      status: r.status as FoldChunk['status'],
      correctedBytes: r.correctedBytes,
    };
  }

  /** The payload bytes of chunk `name`. */
  async bytes(name: string, options: { signal?: AbortSignal } = {}): Promise<Uint8Array> {
    return (await this.chunk(name, options)).bytes;
  }

  /** Chunk `name` parsed as JSON (Python's rules: `NaN`/`Infinity`, exact big integers as `bigint`). */
  async json(name: string, options: { signal?: AbortSignal } = {}): Promise<FoldJson> {
    const c = await this.chunk(name, options);
    return parseTagged(callNative(() => native().foldJsonToJs(c.bytes)));
  }

  /**
   * An `NPZ0` chunk (NumPy `.npz`: `nuclear_arrays`, `ai_vectors`) as typed arrays by name. Object
   * arrays are refused (never unpickled); members are CRC-checked and bounded before inflating.
   */
  async npz(
    name: string,
    options: { signal?: AbortSignal; maxBytes?: number } = {},
  ): Promise<Record<string, NpzArray>> {
    optionsObject(options);
    const c = await this.chunk(name, options.signal === undefined ? {} : { signal: options.signal });
    return readNpz(name, c.bytes, options.maxBytes ?? 1024 ** 3);
  }

  /**
   * The `STEN` chunk `name` (default `torch_state`) as a safetensors state dict, validated by the same
   * header rules as {@link openSafetensors}. A non-`STEN` `torch_state` (PyFolds's pickled legacy form)
   * is refused with `TV_FOLD_UNSUPPORTED`: tensorvault never unpickles.
   */
  async stateDict(name = 'torch_state', options: { signal?: AbortSignal } = {}): Promise<FoldStateDict> {
    const info = this.info(name);
    if (info.ctype !== 'STEN') {
      throw new TensorVaultError(
        ErrorCode.FOLD_UNSUPPORTED,
        `chunk ${JSON.stringify(name)} has type ${JSON.stringify(info.ctype)}, not STEN: a pickled checkpoint is never loaded`,
        { chunk: name, path: this.path },
      );
    }
    const c = await this.chunk(name, options);
    const list = JSON.parse(callNative(() => native().foldSafetensorsTensors(c.bytes))) as NativeTensor[];
    const byName = new Map(list.map((t) => [t.name, t]));
    const base = c.copied ? 0 : info.dataOffset;
    const view = (t: NativeTensor): Tensor => {
      if (!isDtype(t.dtype)) throw invalidArgument('dtype', `unknown dtype ${t.dtype}`);
      const dtype: Dtype = t.dtype;
      const Ctor = VIEW[dtype];
      let buffer = c.bytes.buffer as ArrayBuffer;
      let byteOffset = c.bytes.byteOffset + t.start;
      let copied = c.copied;
      if (byteOffset % Ctor.BYTES_PER_ELEMENT !== 0) {
        buffer = buffer.slice(byteOffset, byteOffset + t.byteLength);
        byteOffset = 0;
        copied = true;
      }
      return {
        name: t.name,
        dtype,
        shape: t.shape,
        // Only when a dimension is above 2^53 - 1, as the safetensors reader gives it (TensorInfo.exactShape).
        ...(t.exactShape ? { exactShape: Object.freeze([...t.exactShape]) } : {}),
        byteLength: t.byteLength,
        fileOffset: base + t.start,
        data: new Ctor(buffer, byteOffset, t.byteLength / Ctor.BYTES_PER_ELEMENT),
        bytes: new Uint8Array(buffer, byteOffset, t.byteLength),
        copied,
      };
    };
    return {
      names: Object.freeze(list.map((t) => t.name)),
      tensor(n: string): Tensor {
        const t = byName.get(n);
        if (t === undefined) {
          throw new TensorVaultError(
            ErrorCode.TENSOR_NOT_FOUND,
            `no tensor named ${JSON.stringify(n)} in chunk ${JSON.stringify(name)}`,
            {
              name: n,
              chunk: name,
            },
          );
        }
        return view(t);
      },
      tensors(): Tensor[] {
        return list.map(view);
      },
    };
  }

  /**
   * Release the native handle (views already handed out stay valid). Reads already started complete;
   * the handle is released when the last one settles (closing it under a running read threw an untyped
   * N-API error and left the file open). Later calls throw `TV_CLOSED`. Idempotent.
   */
  close(): void {
    const handle = this.#handle;
    this.#handle = undefined;
    this.#cache.clear();
    if (handle === undefined) return;
    if (this.#reading > 0) this.#closeWhenIdle = handle;
    else handle.close();
  }
}

/**
 * Open a PyFolds `.fold` / `.mind` file. The header, the index and every chunk record are validated
 * (bounds, overlaps, limits, duplicated fields against the chunk headers) and the file-level checks
 * run once: manifest hash, Merkle root, trust block (with `trustPublicKey`), then `policy`. With
 * `verify: 'full'` every chunk is verified during the open, with `onProgress` and `signal`.
 */
export async function openFold(path: string, options: OpenFoldOptions = {}): Promise<FoldFile> {
  if (typeof path !== 'string' || path.length === 0)
    throw invalidArgument('path', 'path must be a non-empty string');
  const opts = nativeOpenOptions(options);
  try {
    const handle = await runJob('fold.open', options, (control) => native().foldOpen(path, opts, control));
    return new FoldFile(path, handle);
  } catch (err) {
    throw fromNative(err, options.signal);
  }
}
