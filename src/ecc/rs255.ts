/**
 * `rs(N)` Reed-Solomon error correction, byte-compatible with Python `reedsolo`'s `RSCodec(N)` (GF(2^8),
 * primitive polynomial 0x11d, generator 2, first consecutive root 0): PyFolds's checkpoint ECC. Each
 * block of `255 - N` data bytes gets `N` parity bytes and survives up to `N/2` corrupted bytes, or `N`
 * erased bytes at known positions (`2·errors + erasures ≤ N`).
 *
 * Two layouts: the **sidecar** parity stream ({@link RsCodec.encode} / {@link RsCodec.decode}: all
 * blocks' parity concatenated, data kept separately) and the **inline** chunk ({@link
 * RsCodec.protectChunk} / {@link RsCodec.recoverChunk}: each block followed by its parity). Work runs in
 * the native core on the libuv pool, split across threads for large inputs, with progress and
 * `AbortSignal`. A block that cannot be repaired rejects with `TV_ECC_UNCORRECTABLE` naming the block;
 * damaged data is never returned as if it were repaired.
 */
import { callNative, ErrorCode, invalidArgument, TensorVaultError } from '../errors';
import { type JobOptions, runJob } from '../job';
import { native } from '../native';
import { bytesOf, describeValue, optionsObject, requiredInteger } from '../validate';

/** A PyFolds protection level: `off`/`none`/`0` (no ECC), `low` (rs(16)), `med` (rs(32)), `high` (rs(64)). */
export type RsProtectionLevel = 'off' | 'none' | '0' | 'low' | 'med' | 'high';

/** Options of the ECC operations. */
export interface EccOptions extends JobOptions {
  /** Worker threads for large inputs (default: all cores). */
  threads?: number;
}

/** Options of {@link RsCodec.decode} and {@link RsCodec.recoverChunk}. */
export interface EccDecodeOptions extends EccOptions {
  /**
   * Byte offsets known to be wrong (erasures), in the data for `decode` and in the chunk for
   * `recoverChunk`. Each erasure costs one parity byte instead of two.
   */
  erasures?: readonly number[];
  /** Byte offsets in the sidecar parity stream known to be wrong (`decode` only). */
  parityErasures?: readonly number[];
}

/** Result of a decode. */
export interface EccDecodeResult {
  /** The repaired data (a new buffer; the input is left unchanged). */
  data: Buffer;
  /** Number of bytes the repair changed, in data and parity. */
  correctedBytes: number;
  /** Indices of the blocks that needed a repair, ascending. */
  correctedBlocks: number[];
}

/** Inputs accepted as bytes: a Buffer, any typed array or DataView, or an ArrayBuffer. */
export type EccInput = NodeJS.ArrayBufferView | ArrayBuffer;

/** Below this size `encodeSync` is allowed and async calls skip thread fan-out overheads. */
const SYNC_LIMIT = 1 << 20;

const bytes = bytesOf;

function threadsOf(options: EccOptions): number | undefined {
  const t = options.threads;
  if (t === undefined) return undefined;
  if (typeof t !== 'number' || !Number.isInteger(t) || t < 1 || t > 1024) {
    throw invalidArgument('threads', `threads must be an integer from 1 to 1024, got ${describeValue(t)}`, {
      actual: typeof t === 'number' ? t : describeValue(t),
    });
  }
  return t;
}

function erasuresOf(e: readonly number[] | undefined, name: string): number[] | undefined {
  if (e === undefined) return undefined;
  if (!Array.isArray(e)) throw invalidArgument(name, `${name} must be an array of byte offsets`);
  for (const p of e) {
    if (typeof p !== 'number' || !Number.isSafeInteger(p) || p < 0) {
      throw invalidArgument(name, `erasure positions must be non-negative integers, got ${describeValue(p)}`);
    }
  }
  return e as number[];
}

const optionsOf = <T extends object>(options: T | undefined): T => optionsObject(options);

/**
 * The `rs(N)` codec. Instances are cheap (the native tables are built once per `N` and shared).
 * Inputs are read in place by the native worker: do not modify a buffer passed to an async method
 * until its promise settles.
 */
export class RsCodec {
  /** Largest valid parity count. */
  static readonly MAX_PARITY = 254;
  /** PyFolds `ECCProtector`'s default parity count for the inline layout. */
  static readonly INLINE_DEFAULT_PARITY = 10;

  /** Parity bytes per block (`N`). */
  readonly parity: number;

  /** `rs(parity)`: `parity` is an integer from 1 to 254. */
  constructor(parity: number) {
    if (
      typeof parity !== 'number' ||
      !Number.isInteger(parity) ||
      parity < 1 ||
      parity > RsCodec.MAX_PARITY
    ) {
      throw invalidArgument(
        'parity',
        `parity must be an integer from 1 to 254, got ${describeValue(parity)}`,
        {
          actual: typeof parity === 'number' ? parity : describeValue(parity),
          min: 1,
          max: RsCodec.MAX_PARITY,
        },
      );
    }
    this.parity = parity;
  }

  /** The codec's name, `rs(N)` (PyFolds's `ecc_algo`). */
  get name(): string {
    return `rs(${this.parity})`;
  }

  /** Data bytes per full block, `255 - N`. */
  get blockDataLength(): number {
    return 255 - this.parity;
  }

  /** Number of blocks for `dataLength` bytes. */
  blockCount(dataLength: number): number {
    // Required: `blockCount()` / `eccLength(undefined)` returned NaN.
    requiredInteger(dataLength, 'dataLength', 0, Number.MAX_SAFE_INTEGER);
    return Math.ceil(dataLength / this.blockDataLength);
  }

  /** Length of the sidecar parity stream for `dataLength` bytes (PyFolds's `ecc_len`). */
  eccLength(dataLength: number): number {
    return this.blockCount(dataLength) * this.parity;
  }

  /** The sidecar parity stream of `data`: every block's `N` parity bytes, in block order. */
  async encode(data: EccInput, options?: EccOptions): Promise<Buffer> {
    const d = bytes(data, 'data');
    const o = optionsOf(options);
    const threads = threadsOf(o);
    return runJob('rsEncode', o, (control) => native().rsEncode(this.parity, d, false, threads, control));
  }

  /** {@link RsCodec.encode} on the calling thread, for inputs up to 1 MiB. */
  encodeSync(data: EccInput): Buffer {
    const d = bytes(data, 'data');
    if (d.byteLength > SYNC_LIMIT) {
      throw invalidArgument(
        'data',
        `encodeSync takes at most ${SYNC_LIMIT} bytes; use encode() for larger inputs`,
        {
          actual: d.byteLength,
          max: SYNC_LIMIT,
        },
      );
    }
    return callNative(() => native().rsEncodeSync(this.parity, d));
  }

  /**
   * Repair `data` with its sidecar `parity`. Resolves with the repaired copy and what was corrected;
   * rejects with `TV_ECC_UNCORRECTABLE` (context `block`, `offset`, `end`) when a block has more
   * damage than the parity covers, `TV_ECC_PARITY_LENGTH` when `parity` does not fit `data`.
   */
  async decode(data: EccInput, parity: EccInput, options?: EccDecodeOptions): Promise<EccDecodeResult> {
    const d = bytes(data, 'data');
    const p = bytes(parity, 'parity');
    const o = optionsOf(options);
    const threads = threadsOf(o);
    const erasures = erasuresOf(o.erasures, 'erasures');
    const parityErasures = erasuresOf(o.parityErasures, 'parityErasures');
    return runJob('rsDecode', o, (control) =>
      native().rsDecode(this.parity, d, p, erasures, parityErasures, threads, control),
    );
  }

  /**
   * Check `data` against its sidecar `parity` without repairing or copying: resolves with the indices of
   * the blocks whose parity does not match (damage in the data or in the parity), ascending; an empty
   * array means every block is intact. About as fast as {@link RsCodec.encode}.
   */
  async verify(data: EccInput, parity: EccInput, options?: EccOptions): Promise<number[]> {
    const d = bytes(data, 'data');
    const p = bytes(parity, 'parity');
    const o = optionsOf(options);
    const threads = threadsOf(o);
    return runJob('rsVerify', o, (control) => native().rsVerify(this.parity, d, p, threads, control));
  }

  /** The inline layout of `data`: `[block][parity][block][parity]...` (`reedsolo.RSCodec.encode`). */
  async protectChunk(data: EccInput, options?: EccOptions): Promise<Buffer> {
    const d = bytes(data, 'data');
    const o = optionsOf(options);
    const threads = threadsOf(o);
    return runJob('rsProtectChunk', o, (control) =>
      native().rsEncode(this.parity, d, true, threads, control),
    );
  }

  /**
   * The data of an inline chunk, repaired. Rejects with `TV_ECC_INVALID_LENGTH` when the chunk's length
   * cannot be a sequence of blocks (a truncated chunk) and `TV_ECC_UNCORRECTABLE` as {@link RsCodec.decode}.
   */
  async recoverChunk(chunk: EccInput, options?: EccDecodeOptions): Promise<EccDecodeResult> {
    const c = bytes(chunk, 'chunk');
    const o = optionsOf(options);
    const threads = threadsOf(o);
    if (o.parityErasures !== undefined) {
      throw invalidArgument(
        'parityErasures',
        'recoverChunk takes erasures as offsets in the chunk; parityErasures is for decode',
      );
    }
    const erasures = erasuresOf(o.erasures, 'erasures');
    return runJob('rsRecoverChunk', o, (control) =>
      native().rsDecode(this.parity, c, null, erasures, null, threads, control),
    );
  }
}

/**
 * The codec for a PyFolds protection level, read as PyFolds reads it (lower-cased; empty or missing
 * means off): `off`, `none`, `0`, `''`, `undefined` → `null` (no ECC); `low` → rs(16); `med` → rs(32);
 * `high` → rs(64), in any letter case. Any other value (including `medium`) throws
 * `TV_ECC_UNKNOWN_PROTECTION`.
 */
export function eccFromProtection(level: RsProtectionLevel | string | null | undefined): RsCodec | null {
  if (level === undefined || level === null) return null; // PyFolds: a missing level is off
  if (typeof level !== 'string') throw invalidArgument('level', 'protection level must be a string');
  const n = callNative(() => native().rsProtectionParity(level));
  return n === null || n === undefined ? null : new RsCodec(n);
}

/** The codec named `rs(N)` (`none` → `null`); anything else throws `TV_ECC_UNKNOWN_CODEC`. */
export function eccFromName(name: string): RsCodec | null {
  if (typeof name !== 'string') throw invalidArgument('name', 'codec name must be a string');
  const unknown = () =>
    new TensorVaultError(
      ErrorCode.ECC_UNKNOWN_CODEC,
      `unknown codec ${JSON.stringify(name)}: rs(N) takes N from 1 to ${RsCodec.MAX_PARITY}`,
      { name },
    );
  let n: number | null | undefined;
  try {
    n = callNative(() => native().rsParseName(name));
  } catch (err) {
    // `rs(255)`, `rs(999)`: the right form, an N out of range; the same code as any other unknown name.
    if (err instanceof TensorVaultError && err.code === ErrorCode.INVALID_ARGUMENT) throw unknown();
    throw err;
  }
  if (n === null || n === undefined) return null;
  if (n < 1 || n > RsCodec.MAX_PARITY) throw unknown();
  return new RsCodec(n);
}

/**
 * The native encoding kernel selected for this CPU under the `TV_CPU` cap: `avx512-gfni`, `avx2` or
 * `portable` (see `cpuInfo()` for the AVX2 variant and the CPU features).
 */
export function eccKernel(): string {
  return callNative(() => native().rsKernel());
}
