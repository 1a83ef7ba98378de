/**
 * Erasure ECC: a self-protecting parity sidecar (`<file>.tvecc`, `docs/formats/ecc-sidecar.md`) that
 * locates damage by per-chunk SHA-256 and rebuilds it from interleaved Reed-Solomon stripes, plus an
 * in-memory `ErasureCodec` for buffers (codec.ts).
 */
import { channel } from 'node:diagnostics_channel';
import { existsSync } from 'node:fs';
import { constants } from 'node:os';
import { type ContextOf, ErrorCode, fromNative, invalidArgument, TensorVaultError } from '../errors';
import { type JobOptions, runJob } from '../job';
import { type NativeEccLayout, type EccVerifyResult as NativeEccVerifyResult, native } from '../native';
import { optionsObject } from '../validate';

/**
 * Telemetry of protected files (`diagnostics_channel` `tensorvault:ecc`): after each `verify`,
 * `{ event: 'verified' | 'damaged' | 'stale', op: 'verify', path, status, damagedChunks,
 * unrepairableChunks, damagedParity, unreadableChunks, unreadableParity, bytes, ms }` (unreadable:
 * the read failed with `EIO`, a bad sector: alert on it, the medium is failing); after each `repair`,
 * `{ event: 'repaired' | 'verified', op: 'repair', path, status, repairedChunks, sidecarRewritten,
 * sidecarError, writeMode, bytes, ms }` (`sidecarError`: the code of {@link RepairResult.sidecarError},
 * or null), or
 * `{ event: 'failed', op: 'repair', path, code, context }` when it throws. (The job channel
 * `tensorvault:job` reports only that the native job ended.)
 */
export const ECC_CHANNEL = 'tensorvault:ecc';
const eccChannel = channel(ECC_CHANNEL);

/** A message on {@link ECC_CHANNEL} (`tensorvault:ecc`): the outcome of each `verify` and `repair`. */
export type EccEvent =
  | {
      event: 'verified' | 'damaged' | 'stale';
      op: 'verify';
      path: string;
      status: EccStatus;
      damagedChunks: number[];
      unrepairableChunks: number[];
      damagedParity: number[];
      unreadableChunks: number[];
      unreadableParity: number[];
      /** The file's length. */
      bytes: number;
      ms: number;
    }
  | {
      event: 'repaired' | 'verified';
      op: 'repair';
      path: string;
      /** The state after the repair. */
      status: EccStatus;
      repairedChunks: number[];
      sidecarRewritten: boolean;
      /** The error code when the sidecar could not be rewritten, else null. */
      sidecarError: ErrorCode | null;
      writeMode: RepairResult['writeMode'];
      bytes: number;
      ms: number;
    }
  | { event: 'failed'; op: 'repair'; path: string; code: ErrorCode; context: ContextOf<ErrorCode> };

function publishEcc(event: EccEvent): void {
  eccChannel.publish(event);
}

/** Named protection levels: `low` 32+2 (6.25 % overhead), `medium` 16+2 (12.5 %), `high` 10+4 (40 %). */
export type ErasureProtectionLevel = 'low' | 'medium' | 'high';

/** Where the sidecar lives (default `<file>.tvecc`). */
export interface SidecarOptions extends JobOptions {
  /** Path of the sidecar; default: the file's path with `.tvecc` appended. */
  sidecar?: string;
}

/** Options of {@link protect}: a `level`, or all of `k`, `m` and `chunkSize`. */
export interface ProtectOptions extends SidecarOptions {
  /** A preset (default `medium`); adapted to small files (smaller chunks, fewer data chunks per stripe). */
  level?: ErasureProtectionLevel;
  /** Data chunks per stripe (1..255, with `k + m ≤ 256`). */
  k?: number;
  /** Parity chunks per stripe: how many chunks of each stripe may be lost. */
  m?: number;
  /** Chunk size in bytes: a power of two from 4 KiB to 1 GiB. */
  chunkSize?: number;
  /**
   * Digest that locates damaged chunks: `blake3` (default; verify runs at memory/disk speed) or `sha256`
   * (the chunk tree's leaves, so the sidecar's root equals {@link hashFile}'s tree root, at SHA-256 speed).
   */
  digest?: ChunkDigestName;
  /**
   * Sidecar format: `auto` (default) writes v1 (GF(2^8)) when the file fits one stripe and v2 (one wide
   * GF(2^16) code: any `m` damaged chunks anywhere are repairable) otherwise; `v1` forces the striped
   * code (the preset's `k + m` per stripe); `v2` forces the wide code (with custom parameters, `k` must
   * be the file's chunk count). See `docs/formats/ecc-sidecar.md`.
   */
  format?: EccFormat;
}

/** Sidecar formats {@link protect} can write. */
export type EccFormat = 'auto' | 'v1' | 'v2';

/** Chunk digests a sidecar can use (`docs/formats/ecc-sidecar.md`). */
export type ChunkDigestName = 'blake3' | 'sha256';

/** Parameters and sizes of a sidecar. */
export interface EccLayout {
  /** Data chunks per stripe. */
  k: number;
  /** Parity chunks per stripe. */
  m: number;
  /** Chunk size in bytes. */
  chunkSize: number;
  /** Length of the protected file when it was protected. */
  fileLength: number;
  /** Data chunks. */
  chunks: number;
  /** Stripes (chunk `i` belongs to stripe `i mod stripes`). */
  stripes: number;
  /** Length of the sidecar. */
  sidecarLength: number;
  /** The chunk digest recorded in the sidecar. */
  digest: ChunkDigestName;
  /**
   * Sidecar format version: 1 (`stripes` GF(2^8) stripes of `k + m`, up to `m` damaged chunks per
   * stripe) or 2 (one wide GF(2^16) code, `stripes` = 1: any `m` damaged chunks, data or parity).
   */
  formatVersion: 1 | 2;
  /**
   * Format v2: data chunks per local parity group (at most; 0: none). Each group has one XOR parity
   * chunk, so one damaged chunk in a group is repaired from that group alone, and damage beyond `m`
   * repairs while the damaged chunks not alone in their group number at most `m`.
   */
  localGroup: number;
  /** Format v2: number of local parity groups (0: none). */
  localGroups: number;
  /**
   * Format v2: the groups are interleaved (chunk `i` is in group `i % localGroups`, so neighbouring
   * chunks, as a burst damages them, are in different groups), as new sidecars have them; `false`: runs
   * of `localGroup` consecutive chunks (sidecars written before 2026-12-03), or no local parity.
   */
  interleavedGroups: boolean;
}

/** Result of {@link protect}. */
export interface ProtectResult {
  /** Where the sidecar was written. */
  sidecarPath: string;
  /** Its parameters and sizes. */
  layout: EccLayout;
  /** Chunk-tree root (hex) of the protected file at the sidecar's chunk size. */
  root: string;
}

/**
 * Overall state of a file and its sidecar. `stale`: the file was modified after it was protected (its
 * modification time or length differs from the sidecar's record) and most of it differs from what was
 * protected, so the sidecar is out of date rather than the file damaged; `repair` refuses to roll such
 * a file back unless `force` is set.
 */
export type EccStatus = 'intact' | 'repairable' | 'unrepairable' | 'stale';

/**
 * How {@link repair} writes the file: `in-place` writes only the damaged chunks into the file itself
 * (crash-safe: see "Repair in place" in `docs/formats/ecc-sidecar.md`); `copy` writes a repaired copy
 * and renames it over the file (a new inode: other hard links keep their bytes); `auto` (the default)
 * is in place, falling back to a copy when the file cannot be opened for writing or when more than
 * half of it differs from what was protected.
 */
export type RepairMode = 'auto' | 'in-place' | 'copy';

/** Options of {@link repair}. */
export interface RepairOptions extends SidecarOptions {
  /**
   * Repair a file whose sidecar looks stale (status `stale`), rolling it back to the protected bytes
   * (default false: such a repair throws `TV_ECC_STALE_SIDECAR` and changes nothing).
   */
  force?: boolean;
  /** In place, through a copy, or in place with a fallback to a copy (`auto`, the default). */
  mode?: RepairMode;
  /**
   * The damaged chunks, from a verify report (`damagedChunks`): only their stripes (every data chunk and
   * parity slot in them), the file's length and the sidecar's own structure are checked, instead of the
   * whole file. Damage in other stripes is neither seen nor repaired. With local parity (format v2), only
   * their local groups are read when each has one damaged chunk and intact local parity.
   */
  chunks?: readonly number[];
  /**
   * Byte ranges `[offset, length]` of the file known to be damaged (from another check, such as a
   * checkpoint's chunk tree): their chunks are checked and repaired as if listed in `chunks`.
   */
  ranges?: readonly (readonly [number, number])[];
}

/** Health of the sidecar's own structure. */
export interface SidecarHealth {
  /** Header copy A (at the start) is valid. */
  headerA: boolean;
  /** Header copy B (at the end) is valid. */
  headerB: boolean;
  /** Digest-table blocks damaged in copy A. */
  tableABadBlocks: number[];
  /** Digest-table blocks damaged in copy B. */
  tableBBadBlocks: number[];
  /** Actual length of the sidecar. */
  actualLength: number;
  /** Length it should have. */
  expectedLength: number;
}

/** Result of {@link verify}. */
export interface EccVerifyResult {
  /**
   * `intact`, `repairable` (see `damagedChunks`), `unrepairable` (see `unrepairableChunks`) or `stale`
   * (the file was edited after `protect`; see {@link EccStatus}).
   */
  status: EccStatus;
  /** What the damage amounts to if the sidecar is trusted anyway: `status`, except `repairable` or `unrepairable` when `status` is `stale`. */
  damageStatus: EccStatus;
  /**
   * Whether the file's modification time or length differs from those recorded at `protect`; null for a
   * sidecar written before these hints were recorded (such a sidecar is never reported `stale`).
   */
  modifiedSinceProtect: boolean | null;
  /**
   * Bytes of the file that differ from what was protected, appended bytes included. Counted byte by byte
   * (`differingExact`) when the file was modified and its damaged chunks cover most of it but parity can
   * rebuild them (a small file: one changed byte damages a chunk that is most of it); otherwise the
   * length of the damaged or missing chunks, an upper bound.
   */
  differingBytes: number;
  /** Whether `differingBytes` was counted byte by byte against the protected bytes rebuilt from parity. */
  differingExact: boolean;
  /** The sidecar's parameters. */
  layout: EccLayout;
  /** Actual length of the file (differs from `layout.fileLength` after truncation or appends). */
  actualLength: number;
  /** Data chunks whose digest does not match, or that are missing. */
  damagedChunks: number[];
  /** Parity slots of the sidecar that are damaged. */
  damagedParity: number[];
  /**
   * Data chunks among `damagedChunks` whose read failed (`EIO`: a bad sector or a failing device;
   * `EBADMSG`/`EUCLEAN`: a block the file system's own checksum refused). Parity rebuilds them like any
   * damaged chunk, and an in-place repair writes them anew (a disk remaps a bad sector when it is
   * written); that they occur at all says the medium is failing.
   */
  unreadableChunks: number[];
  /** Parity slots among `damagedParity` whose read failed. */
  unreadableParity: number[];
  /** Stripes that lost more chunks than they have parity. */
  unrepairableStripes: number[];
  /** Damaged data chunks that cannot be rebuilt. */
  unrepairableChunks: number[];
  /** The sidecar's own structure. */
  sidecar: SidecarHealth;
}

/** Result of {@link repair}. */
export interface RepairResult {
  /** The state found before repair. */
  before: EccVerifyResult;
  /**
   * The state after repair: `intact`, except when {@link RepairResult.sidecarError} is set (the file
   * is repaired; the sidecar's damage is still listed).
   */
  after: EccVerifyResult;
  /** Data chunks rebuilt from parity. */
  repairedChunks: number[];
  /** Whether the file was replaced. */
  fileRewritten: boolean;
  /** Whether the sidecar was rewritten (or mended). */
  sidecarRewritten: boolean;
  /**
   * Set when the file was repaired but its damaged sidecar could not be rewritten (a folder or a
   * sidecar this process may not write, a read-only or full file system): the typed error that stopped
   * it (`TV_PERMISSION_DENIED`, `TV_IO`, …; `context.path` names what could not be written). The file
   * holds the protected bytes (checked again, see `after`); the sidecar is as it was, its damage listed
   * in `after`: repair again once it can be written. `null` otherwise. (A repair that had only the
   * sidecar to rewrite rejects with the error instead: it did nothing.)
   */
  sidecarError: TensorVaultError | null;
  /** How the file was written (`in-place` or `copy`), or null when it was not. */
  writeMode: 'in-place' | 'copy' | null;
  /** What `before` covers: `file` (every chunk and parity slot) or `listed` (the stripes of `chunks`). */
  checkedBefore: 'file' | 'listed';
  /**
   * What `after` covers: `file` (a copy, or a rebuilt sidecar, is checked whole) or `written` (in place:
   * the chunks written, the length and the sidecar's structure; the rest is what `before` found intact).
   */
  checkedAfter: 'file' | 'written';
}

function checkPath(path: unknown, name = 'path'): string {
  if (typeof path !== 'string' || path.length === 0)
    throw invalidArgument(name, `${name} must be a non-empty string`);
  return path;
}

function optionalPath(p: unknown): string | undefined {
  return p === undefined ? undefined : checkPath(p, 'sidecar');
}

/** The sidecar path used by default for `path`: `<path>.tvecc`. */
export function eccSidecarPath(path: string): string {
  return `${checkPath(path)}.tvecc`;
}

/**
 * Protect `path`: write its parity sidecar atomically (temp file, fsync, rename, fsync folder).
 * Runs on the libuv pool; honours `signal` and reports `onProgress`.
 */
export async function protect(path: string, options: ProtectOptions = {}): Promise<ProtectResult> {
  const file = checkPath(path);
  optionsObject(options);
  const sidecar = optionalPath(options.sidecar);
  const { level, k, m, chunkSize, digest, format } = options;
  // Shapes only: the values (level names, k + m, chunk sizes, digest names) are the core's rules.
  if (level !== undefined && typeof level !== 'string')
    throw invalidArgument('level', 'level must be a string');
  if (digest !== undefined && typeof digest !== 'string')
    throw invalidArgument('digest', 'digest must be a string');
  if (format !== undefined && typeof format !== 'string')
    throw invalidArgument('format', 'format must be a string');
  for (const [name, v] of [
    ['k', k],
    ['m', m],
    ['chunkSize', chunkSize],
  ] as const) {
    if (v !== undefined && typeof v !== 'number') throw invalidArgument(name, `${name} must be a number`);
  }
  const r = await runJob('eccProtect', options, (control) =>
    native().eccProtect(
      file,
      {
        ...(sidecar !== undefined ? { sidecar } : {}),
        ...(level !== undefined ? { level } : {}),
        ...(k !== undefined ? { k } : {}),
        ...(m !== undefined ? { m } : {}),
        ...(chunkSize !== undefined ? { chunkSize } : {}),
        ...(digest !== undefined ? { digest } : {}),
        ...(format !== undefined ? { format } : {}),
      },
      control,
    ),
  );
  return { ...r, layout: layoutOf(r.layout) };
}

/** The addon's layout, with the digest name narrowed (the core writes only the names it knows). */
function layoutOf(l: NativeEccLayout): EccLayout {
  return { ...l, digest: l.digest as ChunkDigestName, formatVersion: l.formatVersion === 2 ? 2 : 1 };
}

function verifyResultOf(r: NativeEccVerifyResult): EccVerifyResult {
  return {
    ...r,
    status: r.status as EccStatus,
    damageStatus: r.damageStatus as EccStatus,
    modifiedSinceProtect: r.modifiedSinceProtect ?? null,
    layout: layoutOf(r.layout),
  };
}

/**
 * The protected file must exist: the core opens the sidecar first, so a mistyped path was reported as
 * "no such file: PATH.tvecc", which sent people looking for a sidecar.
 */
function mustExist(file: string): void {
  if (!existsSync(file))
    throw new TensorVaultError(ErrorCode.NOT_FOUND, `no such file: ${file}`, {
      path: file,
      errno: constants.errno.ENOENT,
    });
}

/** Verify `path` against its sidecar, read-only: intact, repairable (which chunks) or unrepairable. */
export async function verify(path: string, options: SidecarOptions = {}): Promise<EccVerifyResult> {
  const file = checkPath(path);
  optionsObject(options);
  mustExist(file);
  const sidecar = optionalPath(options.sidecar);
  const t0 = performance.now();
  const r = verifyResultOf(
    await runJob('eccVerify', options, (control) => native().eccVerify(file, sidecar ?? null, control)),
  );
  if (eccChannel.hasSubscribers) {
    publishEcc({
      event: r.status === 'intact' ? 'verified' : r.status === 'stale' ? 'stale' : 'damaged',
      op: 'verify',
      path: file,
      status: r.status,
      damagedChunks: r.damagedChunks,
      unrepairableChunks: r.unrepairableChunks,
      damagedParity: r.damagedParity,
      unreadableChunks: r.unreadableChunks,
      unreadableParity: r.unreadableParity,
      bytes: r.actualLength,
      ms: performance.now() - t0,
    });
  }
  return r;
}

/**
 * Repair `path` and its sidecar from parity: every rebuilt chunk is checked against its digest before
 * it is written. By default only the damaged chunks are written, into the file itself, in an order that
 * a crash at any instant leaves repairable to the same bytes (`mode: 'copy'` writes a new file and
 * renames it over instead); a sidecar with only its header or table copies damaged is mended in place
 * from the valid copies, one with damaged parity replaced atomically; then what changed is checked
 * again (see {@link RepairResult.checkedAfter}). A repaired file whose sidecar cannot then be written
 * (a read-only folder, a full disk) resolves with {@link RepairResult.sidecarError} set: the file is
 * repaired, the sidecar's damage remains. Pass `chunks` (a verify report's `damagedChunks`) to
 * check only their stripes instead of the whole file first. Damage beyond the parity budget rejects
 * with `TV_ECC_UNREPAIRABLE` (context lists the chunks) and changes nothing. A file
 * edited after `protect` (status `stale`) rejects with `TV_ECC_STALE_SIDECAR` and changes nothing,
 * unless `force: true` rolls it back to the protected bytes. The repaired file gets back the
 * modification time it had when protected.
 */
export async function repair(path: string, options: RepairOptions = {}): Promise<RepairResult> {
  const file = checkPath(path);
  optionsObject(options);
  mustExist(file);
  const sidecar = optionalPath(options.sidecar);
  if (options.force !== undefined && typeof options.force !== 'boolean')
    throw invalidArgument('force', 'force must be a boolean');
  const force = options.force === true;
  const { mode, chunks, ranges } = options;
  if (mode !== undefined && mode !== 'auto' && mode !== 'in-place' && mode !== 'copy')
    throw invalidArgument('mode', "mode must be 'auto', 'in-place' or 'copy'");
  if (chunks !== undefined && !Array.isArray(chunks))
    throw invalidArgument('chunks', 'chunks must be an array of chunk numbers');
  if (
    ranges !== undefined &&
    (!Array.isArray(ranges) || !ranges.every((r) => Array.isArray(r) && r.length === 2))
  )
    throw invalidArgument('ranges', 'ranges must be an array of [offset, length] pairs');
  const t0 = performance.now();
  let r: Awaited<ReturnType<ReturnType<typeof native>['eccRepair']>>;
  try {
    r = await runJob('eccRepair', options, (control) =>
      native().eccRepair(
        file,
        sidecar ?? null,
        force,
        mode ?? null,
        chunks ? [...chunks] : null,
        ranges ? ranges.map((r) => [...r]) : null,
        control,
      ),
    );
  } catch (err) {
    if (eccChannel.hasSubscribers && err instanceof TensorVaultError && err.code !== 'TV_ABORTED') {
      publishEcc({ event: 'failed', op: 'repair', path: file, code: err.code, context: err.context });
    }
    throw err;
  }
  const out: RepairResult = {
    ...r,
    before: verifyResultOf(r.before),
    after: verifyResultOf(r.after),
    sidecarError: r.sidecarError == null ? null : fromNative(r.sidecarError),
    writeMode: (r.writeMode ?? null) as RepairResult['writeMode'],
    checkedBefore: r.checkedBefore as RepairResult['checkedBefore'],
    checkedAfter: r.checkedAfter as RepairResult['checkedAfter'],
  };
  if (eccChannel.hasSubscribers) {
    publishEcc({
      event: out.repairedChunks.length > 0 || out.sidecarRewritten ? 'repaired' : 'verified',
      op: 'repair',
      path: file,
      status: out.after.status,
      repairedChunks: out.repairedChunks,
      sidecarRewritten: out.sidecarRewritten,
      sidecarError: out.sidecarError?.code ?? null,
      writeMode: out.writeMode,
      bytes: out.after.actualLength,
      ms: performance.now() - t0,
    });
  }
  return out;
}

// The in-memory codec and its benchmark live in codec.ts; re-exported so every import is unchanged.
export { benchmarkErasure, type ErasureBenchResult, ErasureCodec } from './codec';
