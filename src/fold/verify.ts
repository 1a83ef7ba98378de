/**
 * {@link verifyFold} and {@link repairFold}: every chunk of a `.fold` / `.mind` file checked in
 * degraded mode (one damaged chunk never hides the others), the file-level checks reported, and the
 * chunks that rs(N) can repair rewritten atomically.
 */
import { resolve } from 'node:path';
import { ErrorCode, type ErrorContext, fromNative, invalidArgument, TensorVaultError } from '../errors';
import { atomicCopyFile } from '../io/index';
import { runJob } from '../job';
import { native } from '../native';
import { optionsObject } from '../validate';
import { type FoldJson, revive } from './json';
import { nativeOpenOptions, type OpenFoldOptions } from './options';
import type { FoldChecks, FoldChunkInfo } from './reader';

/** What verification found for one chunk. */
export interface FoldChunkReport {
  name: string;
  /**
   * `intact`; `repaired`: damaged stored bytes that rs(N) repairs (and that then verify) — repairFold
   * rewrites them; `damaged`: not repairable (see `error`); `unverifiable`: keyed digest without the
   * key (or a key and an unkeyed file); `locked`: encrypted and no decryption key (stored bytes
   * verified, payload not checked).
   */
  status: 'intact' | 'repaired' | 'damaged' | 'unverifiable' | 'locked';
  /** Bytes rs(N) corrects. */
  correctedBytes: number;
  /** The data is intact but its parity is not (repairFold rewrites the parity). */
  parityDamaged: boolean;
  /** The typed error that reading the chunk raises. */
  error?: TensorVaultError;
}

/** Result of {@link verifyFold}. */
export interface FoldVerifyReport {
  /**
   * `intact`: every chunk and check passed; `repairable`: only damage rs(N) can undo; `damaged`: the
   * rest; `unverifiable`: no damage found, but some chunk or hash could not be checked (a keyed file
   * without its key, an encrypted chunk without the decryption key); `refused`: the chunks verify but
   * the file breaks a `policy` rule (`checks.policyViolations`).
   */
  status: 'intact' | 'repairable' | 'damaged' | 'unverifiable' | 'refused';
  /** Per chunk, in index order. */
  chunks: FoldChunkReport[];
  /** File-level checks. */
  checks: FoldChecks;
  /** Chunk records that could not be validated (named in `chunks` with status `damaged`). */
  records: readonly FoldChunkInfo[];
  /** The index as parsed. */
  index: { [key: string]: FoldJson };
  /** True when the index names `ai_graph` or `ai_vectors`. */
  isMind: boolean;
}

/** Result of {@link repairFold}. */
export interface FoldRepairResult {
  /** The file before the repair. */
  before: FoldVerifyReport;
  /** The file after the repair (re-opened and verified again). */
  after: FoldVerifyReport;
  /** Chunks whose stored bytes or parity were rewritten. */
  rewritten: string[];
}

/** Options of {@link verifyFold} and {@link repairFold} (`verify` is ignored: every chunk is checked). */
export type VerifyFoldOptions = Omit<OpenFoldOptions, 'verify'>;

interface RawError {
  code: string;
  message: string;
  context: ErrorContext;
}
interface RawReport {
  file: {
    isMind: boolean;
    index: unknown;
    checks: FoldChecks;
    chunks: (FoldChunkInfo & { error?: RawError })[];
  };
  chunks: (Omit<FoldChunkReport, 'error'> & { error?: RawError })[];
}

const KNOWN = new Set<string>(Object.values(ErrorCode));
const toError = (e: RawError): TensorVaultError =>
  new TensorVaultError(KNOWN.has(e.code) ? (e.code as ErrorCode) : ErrorCode.INTERNAL, e.message, e.context);

function fileLevelBad(c: FoldChecks): boolean {
  return [c.manifestHash, c.merkleRoot, c.trustBlock, c.metadataSignature, c.chunkHashes].some(
    (x) => x.status === 'invalid',
  );
}

function toReport(raw: RawReport): FoldVerifyReport {
  const chunks: FoldChunkReport[] = raw.chunks.map((c) => ({
    name: c.name,
    status: c.status,
    correctedBytes: c.correctedBytes,
    parityDamaged: c.parityDamaged,
    ...(c.error === undefined ? {} : { error: toError(c.error) }),
  }));
  const checks = raw.file.checks;
  const damaged = chunks.some((c) => c.status === 'damaged') || fileLevelBad(checks);
  const repairable = chunks.some((c) => c.status === 'repaired' || c.parityDamaged);
  const unchecked =
    chunks.some((c) => c.status === 'unverifiable' || c.status === 'locked') ||
    [checks.manifestHash, checks.trustBlock].some((x) => x.status === 'unverifiable');
  return {
    status: damaged
      ? 'damaged'
      : checks.policyViolations.length > 0
        ? 'refused'
        : repairable
          ? 'repairable'
          : unchecked
            ? 'unverifiable'
            : 'intact',
    chunks,
    checks,
    records: raw.file.chunks,
    index: revive(raw.file.index) as { [key: string]: FoldJson },
    isMind: raw.file.isMind,
  };
}

function checkPath(path: unknown, argument = 'path'): string {
  if (typeof path !== 'string' || path.length === 0)
    throw invalidArgument(argument, `${argument} must be a non-empty string`);
  return path;
}

/**
 * Verify every chunk of a `.fold` / `.mind` file and its file-level checks, in degraded mode: the
 * structure must hold (else the open's typed error is thrown), but damaged chunks, a bad manifest,
 * Merkle root or trust block are reported, not thrown.
 */
export async function verifyFold(path: string, options: VerifyFoldOptions = {}): Promise<FoldVerifyReport> {
  checkPath(path);
  optionsObject(options);
  const opts = nativeOpenOptions({ ...options, verify: 'lazy' });
  try {
    const text = await runJob('fold.verify', options, (control) =>
      native().foldVerify(path, opts, undefined, control),
    );
    return toReport(JSON.parse(text) as RawReport);
  } catch (err) {
    throw fromNative(err, options.signal);
  }
}

/**
 * Rewrite the chunks of a `.fold` / `.mind` file that rs(N) can repair (damaged stored bytes, or
 * parity that disagrees with intact data), atomically (temporary file, fsync, rename, folder fsync),
 * into `options.output` or in place; then verify the result. Chunks beyond repair are left as they
 * are and reported in `after`.
 */
export async function repairFold(
  path: string,
  options: VerifyFoldOptions & { output?: string } = {},
): Promise<FoldRepairResult> {
  checkPath(path);
  optionsObject(options);
  const dest = options.output === undefined ? path : checkPath(options.output, 'output');
  const opts = nativeOpenOptions({ ...options, verify: 'lazy' });
  try {
    const text = await runJob('fold.repair', options, (control) =>
      native().foldVerify(path, opts, dest, control),
    );
    const raw = JSON.parse(text) as {
      before: RawReport;
      after?: RawReport;
      rewritten?: string[];
      file?: unknown;
    };
    if (raw.after === undefined) {
      // Nothing to rewrite: the verification alone came back. An `output` still gets the file (as it
      // is), so that a caller who reads `output` next finds it: it was left absent.
      const only = toReport(raw as unknown as RawReport);
      if (options.output !== undefined && resolve(dest) !== resolve(path)) await atomicCopyFile(path, dest);
      return { before: only, after: only, rewritten: [] };
    }
    return { before: toReport(raw.before), after: toReport(raw.after), rewritten: raw.rewritten ?? [] };
  } catch (err) {
    throw fromNative(err, options.signal);
  }
}
