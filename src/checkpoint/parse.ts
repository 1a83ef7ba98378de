/** Checkpoint loading: options, the report, parsing a set's files, and checking the caller's expectations and key policy. */
import { existsSync, readFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { eccFromName, type RsCodec } from '../ecc/rs255';
import { ErrorCode, invalidArgument, TensorVaultError } from '../errors';
import { ioError } from '../io/fs';
import type { JobOptions } from '../job';
import { native } from '../native';
import type { NativeCheckpointOpen, NativeOutboard, NativeSafetensors } from '../native/binding';
import { type Dtype, isDtype } from '../safetensors/dtype';
import { SYNC_HEADER_MAX, type TensorInfo } from '../safetensors/reader';
import { optionsObject } from '../validate';
import { prepareRead } from './commit';
import type { CheckpointMismatches } from './errors';
import {
  type CheckpointFiles,
  type CheckpointLayout,
  checkedBlock,
  checkpointFiles,
  type HmacKey,
  type IntegrityBlock,
  isKeyedAlgorithm,
  keyBytes,
  type LeafSource,
  parseIntegrityBlock,
  parseStoredHash,
  type StoredHashKind,
} from './layout';
import { loadCheckpoint } from './load';
import { keyInForce } from './save';

/** How much of a checkpoint is checked: everything up front, each tensor when first viewed, or nothing. */
export type VerifyMode = 'full' | 'lazy' | 'none';

/** What the caller expects of one tensor (omitted fields are not checked). */
export interface ExpectedTensor {
  dtype?: Dtype;
  shape?: readonly number[];
}

/** Options of {@link loadCheckpoint}. */
export interface LoadCheckpointOptions extends JobOptions {
  /** Expected tensors: name → dtype and shape. Every difference is listed in `TV_CHECKPOINT_MISMATCH`. */
  expect?: Readonly<Record<string, ExpectedTensor>>;
  /** With `expect`: refuse a mismatch (default true); false records it in the report instead. */
  strict?: boolean;
  /** Refuse a checkpoint whose metadata `version` differs (`TV_CHECKPOINT_VERSION`). */
  expectedVersion?: string;
  /** `lazy` (default), `full` or `none` (see {@link VerifyMode}). */
  verify?: VerifyMode;
  /** Repair damage from parity (and re-verify) before returning bytes (default true). */
  repair?: boolean;
  /** Key of a keyed hash (default: `PYFOLDS_CHECKPOINT_HMAC_KEY` when set; `null` ignores it). */
  hmacKey?: HmacKey | null;
  /**
   * Refuse a checkpoint whose hash is not keyed (no downgrade). Default: true when a key is in force
   * (option or environment variable), so a configured key makes a plain `sha256:` file fail.
   */
  requireHmac?: boolean;
}

/** The verification state of a checkpoint. */
export interface CheckpointReport {
  path: string;
  layout: CheckpointLayout;
  verify: VerifyMode;
  /**
   * `intact` (all checked bytes good), `repaired`, `damaged`, `repairable` (verify only) or `unverified`.
   * A lazy load is `unverified` until every chunk has been checked; a sealed tensorvault checkpoint with
   * no byte past its header (no tensors, or only zero-size ones) is `intact` at open (its header and
   * length matched the sealed block).
   */
  status: 'intact' | 'repaired' | 'repairable' | 'damaged' | 'unverified';
  /** How the PyFolds hash is stored. */
  hashKind: StoredHashKind;
  /** Whether the hash (and the seal) are keyed and were checked with the key. */
  keyed: boolean;
  /** PyFolds hash over the tensors: `ok`, `mismatch` or `unchecked`. */
  pyfoldsHash: 'ok' | 'mismatch' | 'unchecked';
  /**
   * PyFolds layouts, when `pyfoldsHash` is `mismatch`: `damage`, or `damage-or-wrong-key` for a keyed
   * hash with nothing else that records the bytes (no rs(N) stream, no `.tvecc` sidecar): damage and
   * a wrong HMAC key then cannot be told apart. (When the rs(N) stream or a `.tvecc` sidecar vouches
   * for the bytes, or corrects their damage to bytes that the keyed hash does not match either, a keyed
   * hash that does not match is not reported as damage: the call rejects with `TV_CHECKPOINT_INTEGRITY`,
   * `reason: 'key'`.)
   */
  hashMismatch?: 'damage' | 'damage-or-wrong-key';
  /** tensorvault layout: the seal over header, metadata and chunk tree; `none` for the PyFolds layouts. */
  seal: 'ok' | 'none' | 'unchecked';
  /** Tensors whose bytes were verified so far. */
  verifiedTensors: string[];
  /** Tensors found damaged. */
  damagedTensors: string[];
  /** Damaged chunks (tensorvault layout) or rs(N) blocks (pyfolds-ecc) found. */
  damagedChunks: number[];
  /**
   * Chunks among `damagedChunks` whose read failed (`EIO`: a bad sector, a failing device; tensorvault
   * layout, full verification). Parity rebuilds them like any damaged chunk; that they occur at all
   * says the medium is failing.
   */
  unreadableChunks: number[];
  /** Chunks or blocks rebuilt from parity. */
  repairedChunks: number[];
  /**
   * tensorvault layout with a `.tvecc` sidecar, set by `verifyCheckpoint` and `repairCheckpoint`
   * only (a load does not read the parity): the sidecar's own state. `intact`; `repairable` (damaged
   * parity slots, see `damagedParity`, or a damaged header or digest-table copy: rebuilt from the
   * verified weights by a repair); `repaired`; `unusable` (missing, unreadable, or not the parity of
   * the verified weights: the set's status is then `damaged`, though `damagedChunks` may be empty).
   */
  parity?: 'intact' | 'repairable' | 'repaired' | 'unusable';
  /** The `.tvecc` sidecar's damaged parity slots (see `parity`). */
  damagedParity?: number[];
  /**
   * The `.tvecc` sidecar is missing, unreadable or the parity of other bytes (a save whose buffers
   * changed while it was pending), and the protection level recorded in the `.meta.json`
   * (`tensorvault.ecc.level`) lets a repair write it anew from the verified weights: `verifyCheckpoint`
   * reports `parity: 'repairable'` (status `repairable`), `repairCheckpoint` does it (`parity:
   * 'repaired'`). Without a recorded level (older saves) such parity stays `unusable`.
   */
  parityRebuild?: boolean;
  /** Differences from `expect` when `strict: false`. */
  mismatches?: CheckpointMismatches;
}

export interface Parsed {
  files: CheckpointFiles;
  layout: CheckpointLayout;
  weights: string;
  metadata: Record<string, unknown>;
  integrityHash: string;
  stored: { kind: StoredHashKind; hex: string };
  block?: IntegrityBlock;
  rs?: { codec: RsCodec; eccLen: number; path: string };
  tvecc?: string | undefined;
  /** The outboard's path (tensorvault layout; may not exist: see `outboard.ts`). */
  tvob?: string;
  /**
   * The weights already opened by the fast path of {@link parseCheckpoint} (`open`), their
   * length and header matching the block, and the outboard (null: missing or unusable);
   * `headerPieces`: the leading pieces of chunk 0 through which the header was checked (0: by its
   * digest). The loader takes them over (or closes them when a later check fails).
   */
  opened?: { file: NativeSafetensors; outboard: NativeOutboard | null; headerPieces: number };
  /**
   * The open's fast path checked the seal (with the key the load uses, when keyed) and it matched;
   * the loader does not check it again.
   */
  sealChecked?: boolean;
}

export function invalid(path: string, reason: string, message: string): TensorVaultError {
  return new TensorVaultError(ErrorCode.CHECKPOINT_INVALID, `${path}: ${message}`, { path, reason });
}

export function readJson(path: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw ioError(err, path, 'cannot read');
  }
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    throw invalid(path, 'json', 'sidecar is not valid JSON');
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v))
    throw invalid(path, 'json', 'sidecar is not a JSON object');
  return v as Record<string, unknown>;
}

/**
 * A sidecar read on the fast path (`checkpointReadSidecar` in the addon): its text
 * without the leaves, parsed here, and the leaves, decoded and checked against the block's root by the
 * addon (kept there). Undefined when the text does not parse to an object whose `tensorvault.leaves` was
 * cut (`""`).
 */
function fastDoc(o: NativeCheckpointOpen): { doc: Record<string, unknown>; leaves: LeafSource } | undefined {
  const text = o.takeText();
  let v: unknown;
  try {
    v = text === null || text === undefined ? undefined : JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return undefined;
  const block = (v as Record<string, unknown>).tensorvault as Record<string, unknown> | undefined;
  if (typeof block !== 'object' || block === null || block.leaves !== '') return undefined;
  return { doc: v as Record<string, unknown>, leaves: leafSourceOf(o) };
}

/** The leaves the addon decoded and checked, kept there: read as hex on demand (see `LeafSource`). */
function leafSourceOf(o: NativeCheckpointOpen): LeafSource {
  return { byteLength: o.leafBytes(), hex: (first, count) => o.leavesHex(first, count) };
}

/**
 * A `.meta.json` sidecar on the fast path: the addon reads it, cuts out the integrity block's leaves
 * (most of its bytes) and checks them against the root; only the rest is parsed here. Anything the fast
 * path does not take (see `checkpoint_sidecar.rs`), and leaves that do not match, are read and parsed in
 * full by {@link readJson}, with its errors: this returns undefined then (and for a missing file).
 */
function readSidecarFast(path: string): { doc: Record<string, unknown>; leaves: LeafSource } | undefined {
  const o = native().checkpointReadSidecar(path);
  return o === null || o === undefined ? undefined : fastDoc(o);
}

/** What the addon checked on the open's fast path (`SidecarDoc::loader_json` in `checkpoint_sidecar.rs`). */
interface CheckedFields {
  metadata: Record<string, unknown>;
  integrity_hash: string;
  block: Omit<IntegrityBlock, 'leaves'>;
}

/** The open's fast path: the sidecar's fields as the addon checked them, and the opened weights. */
interface FastOpen {
  fields: CheckedFields;
  leaves: LeafSource;
  sealChecked: boolean;
  opened: NonNullable<Parsed['opened']>;
}

/**
 * The checkpoint open's fast path (`checkpointOpenLazy` in the addon), in one call: the sidecar read
 * (its leaves cut out of the JSON, decoded and checked against the root), the document and integrity
 * block checked as {@link parseWith} and `parseIntegrityBlock` check them, the seal checked (with `key`
 * when the block is keyed), the weights opened and their length and header checked (by the outboard's
 * values for the pieces that hold it, or by its digest). The metadata arrives as the addon wrote it from
 * the values the seal covers (members in the sidecar's order), so what the loader hands out is what was
 * checked. Undefined when anything does not go through (a mismatch included): the caller takes the
 * step-by-step path, which reports it.
 */
function openFast(
  weights: string,
  metaPath: string,
  tvob: string,
  keyedOnly: boolean,
  key: HmacKey | undefined,
): FastOpen | undefined {
  const o = native().checkpointOpenLazy(
    weights,
    metaPath,
    tvob,
    SYNC_HEADER_MAX,
    keyedOnly,
    key === undefined ? null : keyBytes(key),
  );
  if (o === null || o === undefined) return undefined;
  const file = o.takeFile();
  const outboard = o.takeOutboard() ?? null;
  const text = o.takeFields();
  if (file === null || file === undefined || text === null || text === undefined) {
    file?.close();
    outboard?.close();
    return undefined;
  }
  // The header was checked through the outboard's pieces (0: by its digest): those pieces are verified.
  return {
    fields: JSON.parse(text) as CheckedFields,
    leaves: leafSourceOf(o),
    sealChecked: o.sealChecked(),
    opened: { file, outboard, headerPieces: o.headerPieces() },
  };
}

/**
 * Detect the layout at `path` and parse its sidecar (after recovering an interrupted save). With
 * `open`, a `tensorvault` checkpoint is opened in the same step when it can be (see
 * {@link Parsed.opened}); `open.keyedOnly` (a key is required) opens only a keyed one, so that a
 * downgrade is refused before anything is mapped; `open.key` checks a keyed seal on that path. `recovered`: the caller has just recovered the set
 * (a `CheckpointManager` listing its run), so the recovery check is skipped.
 */
export function parseCheckpoint(
  path: string,
  open?: { keyedOnly: boolean; key?: HmacKey | undefined },
  recovered = false,
): Parsed {
  const box: { opened?: Parsed['opened'] } = {};
  try {
    return parseWith(path, open, box, recovered);
  } catch (err) {
    closeOpened(box.opened);
    throw err;
  }
}

function parseWith(
  path: string,
  open: { keyedOnly: boolean; key?: HmacKey | undefined } | undefined,
  box: { opened?: Parsed['opened'] },
  recovered: boolean,
): Parsed {
  const files = checkpointFiles(path);
  const at = recovered ? (p: string) => p : prepareRead(files);
  const metaPath = at(files.meta);
  /** A file of the set named in its sidecar (parity, pyfolds-ecc weights): in the weights' folder. */
  const beside = (name: string): string => at(join(dirname(files.weights), name));
  let doc: Record<string, unknown>;
  let layout: CheckpointLayout;
  let weights = at(files.weights);
  let leaves: LeafSource | undefined;
  // The common case first: a lazy or full load on the fast path, checked in the addon.
  const both = open ? openFast(weights, metaPath, at(files.tvob), open.keyedOnly, open.key) : undefined;
  if (both !== undefined) {
    box.opened = both.opened;
    const { metadata, integrity_hash: integrityHash, block } = both.fields;
    const ecc = block.ecc;
    let tvecc: string | undefined;
    return {
      files,
      layout: 'tensorvault',
      weights,
      metadata,
      integrityHash,
      stored: parseStoredHash(integrityHash, path),
      block: checkedBlock(block, both.leaves),
      // The parity's path (a `path.join`) is made when a repair or a verify first asks for it.
      get tvecc(): string | undefined {
        if (tvecc === undefined && ecc !== null) tvecc = beside(ecc.file);
        return tvecc;
      },
      tvob: at(files.tvob),
      opened: both.opened,
      sealChecked: both.sealChecked,
    };
  }
  // Then a sidecar on its own fast path (no separate existence check).
  const fast = readSidecarFast(metaPath);
  if (fast !== undefined || existsSync(metaPath)) {
    doc = fast?.doc ?? readJson(metaPath);
    leaves = fast?.leaves;
    layout = 'tensorvault' in doc ? 'tensorvault' : 'pyfolds';
  } else {
    // The pyfolds-ecc layout's `NAME.json`, read once.
    const jsonPath = at(files.json);
    const json = existsSync(jsonPath) ? readJson(jsonPath) : undefined;
    if (json === undefined || json.format !== 'safetensors' || !('tensor_file' in json)) {
      if (existsSync(weights)) {
        throw invalid(
          path,
          'no_sidecar',
          `no checkpoint sidecar (${basename(files.meta)} or ${basename(files.json)}): a plain safetensors file opens with openSafetensors`,
        );
      }
      throw new TensorVaultError(ErrorCode.NOT_FOUND, `${path}: no such checkpoint`, { path });
    }
    doc = json;
    layout = 'pyfolds-ecc';
    const tf = doc.tensor_file;
    if (typeof tf !== 'string' || tf.length === 0 || /[/\\]/.test(tf) || tf === '.' || tf === '..') {
      throw invalid(jsonPath, 'tensor_file', 'tensor_file must be a file name in the same folder');
    }
    weights = beside(tf);
  }
  if (doc.format !== undefined && doc.format !== 'safetensors') {
    throw invalid(path, 'format', `unsupported format ${JSON.stringify(doc.format)}`);
  }
  const metadata = doc.metadata ?? {};
  if (typeof metadata !== 'object' || metadata === null || Array.isArray(metadata)) {
    throw invalid(path, 'metadata', 'metadata is not an object');
  }
  const stored = parseStoredHash(doc.integrity_hash, path);
  const parsed: Parsed = {
    files,
    layout,
    weights,
    metadata: metadata as Record<string, unknown>,
    integrityHash: doc.integrity_hash as string,
    stored,
  };
  if (layout === 'tensorvault') {
    parsed.block = parseIntegrityBlock(doc.tensorvault, metaPath, leaves);
    if (parsed.block.ecc !== null) parsed.tvecc = beside(parsed.block.ecc.file);
    parsed.tvob = at(files.tvob);
  }
  if (layout === 'pyfolds-ecc') {
    const algo = doc.ecc_algo ?? 'none';
    if (typeof algo !== 'string') throw invalid(path, 'ecc_algo', 'ecc_algo is not a string');
    const codec = eccFromName(algo);
    const eccLen = doc.ecc_len ?? 0;
    if (typeof eccLen !== 'number' || !Number.isSafeInteger(eccLen) || eccLen < 0) {
      throw invalid(path, 'ecc_len', 'ecc_len is not a non-negative integer');
    }
    if (codec !== null && eccLen > 0) parsed.rs = { codec, eccLen, path: at(files.rsEcc) };
  }
  return parsed;
}

/** Close what the fast path opened (a check after it failed). */
export function closeOpened(opened: Parsed['opened']): void {
  opened?.file.close();
  opened?.outboard?.close();
}

export function shapeText(s: readonly (number | string)[]): string {
  return `[${s.join(',')}]`;
}

/** Every difference between the file's tensors and `expect`. */
export function compareExpect(
  infos: readonly TensorInfo[],
  expect: Readonly<Record<string, ExpectedTensor>>,
): CheckpointMismatches {
  const have = new Map(infos.map((t) => [t.name, t]));
  const m: CheckpointMismatches = { missing: [], unexpected: [], wrongShape: [], wrongDtype: [] };
  for (const [name, want] of Object.entries(expect)) {
    const t = have.get(name);
    if (t === undefined) {
      m.missing.push(name);
      continue;
    }
    // The file's exact dimensions (a number above 2^53 - 1 is rounded, and could equal a wrong expectation).
    const actual = shapeText(t.exactShape ?? t.shape);
    if (want.shape !== undefined && shapeText(want.shape) !== actual) {
      m.wrongShape.push({ name, expected: shapeText(want.shape), actual });
    }
    if (want.dtype !== undefined && want.dtype !== t.dtype)
      m.wrongDtype.push({ name, expected: want.dtype, actual: t.dtype });
  }
  // Own keys only: `in` also found `constructor`, `toString`…, so tensors of those names were never
  // listed as unexpected.
  for (const name of have.keys()) if (!Object.hasOwn(expect, name)) m.unexpected.push(name);
  return m;
}

export function hasMismatch(m: CheckpointMismatches): boolean {
  return m.missing.length + m.unexpected.length + m.wrongShape.length + m.wrongDtype.length > 0;
}

export function checkOptions(options: LoadCheckpointOptions): {
  mode: VerifyMode;
  key: HmacKey | undefined;
  requireHmac: boolean;
} {
  optionsObject(options);
  const mode = options.verify ?? 'lazy';
  if (mode !== 'full' && mode !== 'lazy' && mode !== 'none') {
    throw invalidArgument('verify', `verify must be full, lazy or none, got ${String(mode)}`);
  }
  const key = keyInForce(options.hmacKey);
  const requireHmac = options.requireHmac ?? key !== undefined;
  if (requireHmac && key === undefined) {
    throw invalidArgument('requireHmac', 'requireHmac needs a key (hmacKey or PYFOLDS_CHECKPOINT_HMAC_KEY)');
  }
  if (options.expect !== undefined) {
    if (typeof options.expect !== 'object' || options.expect === null || Array.isArray(options.expect)) {
      throw invalidArgument('expect', 'expect must map tensor names to { dtype, shape }');
    }
    for (const [name, want] of Object.entries(options.expect)) {
      if (typeof want !== 'object' || want === null) {
        throw invalidArgument(`expect.${name}`, `expect[${JSON.stringify(name)}] must be { dtype?, shape? }`);
      }
      if (want.dtype !== undefined && !isDtype(want.dtype)) {
        throw invalidArgument(
          `expect.${name}.dtype`,
          `expect[${JSON.stringify(name)}].dtype is not a safetensors dtype`,
        );
      }
      if (
        want.shape !== undefined &&
        // Array.from: `every` skips the holes of a sparse array (`[2, , 3]`), which were accepted.
        (!Array.isArray(want.shape) ||
          !Array.from(want.shape).every((d) => Number.isSafeInteger(d) && d >= 0))
      ) {
        throw invalidArgument(
          `expect.${name}.shape`,
          `expect[${JSON.stringify(name)}].shape must be an array of non-negative integers`,
        );
      }
    }
  }
  for (const k of ['strict', 'repair', 'requireHmac'] as const) {
    if (options[k] !== undefined && typeof options[k] !== 'boolean') {
      throw invalidArgument(k, `${k} must be a boolean`);
    }
  }
  if (options.expectedVersion !== undefined && typeof options.expectedVersion !== 'string') {
    throw invalidArgument('expectedVersion', 'expectedVersion must be a string');
  }
  return { mode, key, requireHmac };
}

/**
 * The key policy: no downgrade, and a keyed hash needs its key. `p` needs only what it reads (a remote
 * verify passes the stored hash of a PyFolds set and its URL as `files.weights`).
 */
export function checkKeyPolicy(
  p: Pick<Parsed, 'stored' | 'block'> & { files: Pick<CheckpointFiles, 'weights'> },
  key: HmacKey | undefined,
  requireHmac: boolean,
  mode: VerifyMode,
): void {
  const keyed = p.stored.kind === 'hmac-sha256';
  if (requireHmac && !keyed) {
    throw new TensorVaultError(
      ErrorCode.CHECKPOINT_HMAC_REQUIRED,
      `${p.files.weights}: a keyed (hmac-sha256) integrity hash is required, the checkpoint has ${p.stored.kind}`,
      { path: p.files.weights, actual: p.stored.kind },
    );
  }
  if (requireHmac && p.block !== undefined && !isKeyedAlgorithm(p.block.algorithm)) {
    throw new TensorVaultError(
      ErrorCode.CHECKPOINT_HMAC_REQUIRED,
      `${p.files.weights}: the integrity block is not keyed`,
      {
        path: p.files.weights,
        actual: p.block.algorithm,
      },
    );
  }
  if (keyed && key === undefined && mode !== 'none') {
    throw new TensorVaultError(
      ErrorCode.CHECKPOINT_HMAC_REQUIRED,
      `${p.files.weights}: the integrity hash is keyed; pass hmacKey (or set PYFOLDS_CHECKPOINT_HMAC_KEY) to verify it`,
      { path: p.files.weights, actual: p.stored.kind },
    );
  }
}
