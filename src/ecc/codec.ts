/**
 * The in-memory erasure codec ({@link ErasureCodec}: `k + m` shards in buffers, no files) and its
 * benchmark; the file sidecar (`protect`, `verify`, `repair`) is in erasure.ts.
 */
import { callNative, invalidArgument } from '../errors';
import { runJob } from '../job';
import { type NativeErasureCodecInstance, native } from '../native';
import { requiredInteger } from '../validate';

/**
 * An in-memory `k + m` erasure codec (systematic Cauchy Reed-Solomon over GF(2^8), SIMD kernels): any
 * `m` of the `k + m` equal-length shards can be lost and rebuilt. Runs synchronously on the calling
 * thread (columns split across the native thread pool from 32 MiB of data per call); use it for buffers,
 * and `protect` (erasure.ts) for files.
 */
export class ErasureCodec {
  /** Data shards. */
  readonly dataShards: number;
  /** Parity shards. */
  readonly parityShards: number;
  readonly #inner: NativeErasureCodecInstance;

  constructor(dataShards: number, parityShards: number) {
    this.dataShards = requiredInteger(dataShards, 'dataShards', 1, 255);
    this.parityShards = requiredInteger(parityShards, 'parityShards', 1, 255);
    this.#inner = callNative(() => new (native().NativeErasureCodec)(this.dataShards, this.parityShards));
  }

  /** The SIMD kernel in use: `avx512-gfni`, `avx2`, `ssse3` or `portable` (all give identical bytes). */
  get kernel(): string {
    return this.#inner.kernel;
  }

  /**
   * The `m` parity shards of `k` equal-length data shards, in new buffers (allocated without zero
   * filling: every byte is written). {@link ErasureCodec.encodeInto} writes into buffers you reuse.
   */
  encode(data: readonly Uint8Array[]): Buffer[] {
    this.#checkData(data);
    const len = data[0]?.byteLength ?? 0;
    const parity = Array.from({ length: this.parityShards }, () => Buffer.allocUnsafe(len));
    callNative(() => this.#inner.encodeInto(data as Uint8Array[], parity));
    return parity;
  }

  /**
   * Write the `m` parity shards of `k` equal-length data shards into `parity` (`m` buffers of the
   * same length that overlap neither each other nor the data). No allocation: the fastest way to
   * encode many stripes.
   */
  encodeInto(data: readonly Uint8Array[], parity: readonly Uint8Array[]): void {
    this.#checkData(data);
    if (
      !Array.isArray(parity) ||
      parity.length !== this.parityShards ||
      !parity.every((p) => p instanceof Uint8Array)
    ) {
      throw invalidArgument('parity', `parity must be an array of ${this.parityShards} Uint8Arrays`);
    }
    callNative(() => this.#inner.encodeInto(data as Uint8Array[], parity as Uint8Array[]));
  }

  /**
   * All `k + m` shards (data first, then parity), given the present ones and `null`/`undefined` for lost
   * ones. At most `m` may be lost (`TV_ECC_UNREPAIRABLE` otherwise). Only the lost shards are computed
   * and allocated: each present shard is returned as passed (a `Buffer` over the same memory, not a
   * copy), so writing to it writes to the caller's array.
   */
  reconstruct(shards: readonly (Uint8Array | null | undefined)[]): Buffer[] {
    const list = this.#checkShards(shards);
    const len = list.find((s) => s !== null)?.byteLength ?? 0;
    const all = list.map((s) =>
      s === null
        ? Buffer.allocUnsafe(len)
        : Buffer.isBuffer(s)
          ? s
          : Buffer.from(s.buffer, s.byteOffset, s.byteLength),
    );
    const present = list.map((s) => s !== null);
    callNative(() => this.#inner.reconstructInto(all, present));
    return all;
  }

  /**
   * Rebuild lost shards in place: `shards` holds all `k + m` buffers of one length (data then parity)
   * and `present[i]` says whether shard `i` holds its data; the absent ones (which must not overlap any
   * other shard) are overwritten with their rebuilt bytes. No allocation. At most `m` may be absent
   * (`TV_ECC_UNREPAIRABLE` otherwise).
   */
  reconstructInto(shards: readonly Uint8Array[], present: readonly boolean[]): void {
    const n = this.dataShards + this.parityShards;
    if (!Array.isArray(shards) || shards.length !== n || !shards.every((s) => s instanceof Uint8Array)) {
      throw invalidArgument('shards', `shards must be an array of ${n} Uint8Arrays`);
    }
    if (!Array.isArray(present) || present.length !== n || !present.every((p) => typeof p === 'boolean')) {
      throw invalidArgument('present', `present must be an array of ${n} booleans`);
    }
    callNative(() => this.#inner.reconstructInto(shards as Uint8Array[], present as boolean[]));
  }

  #checkData(data: readonly Uint8Array[]): void {
    if (
      !Array.isArray(data) ||
      data.length !== this.dataShards ||
      !data.every((d) => d instanceof Uint8Array)
    ) {
      throw invalidArgument('data', `data must be an array of ${this.dataShards} Uint8Arrays`);
    }
  }

  #checkShards(shards: readonly (Uint8Array | null | undefined)[]): (Uint8Array | null)[] {
    const n = this.dataShards + this.parityShards;
    if (!Array.isArray(shards) || shards.length !== n) {
      throw invalidArgument('shards', `shards must be an array of ${n} entries (null for a lost shard)`);
    }
    // Array.from, not map: a hole (a lost shard never assigned, `new Array(n)`) becomes null, where map
    // kept it and the native call failed with "Get TypedArray info failed".
    const list = Array.from(shards, (s) => (s === undefined ? null : s));
    if (!list.every((s) => s === null || s instanceof Uint8Array)) {
      throw invalidArgument('shards', 'each shard must be a Uint8Array or null');
    }
    return list;
  }
}

/** One measurement of {@link benchmarkErasure}, in bytes per second of data. */
export interface ErasureBenchResult {
  /** Encode throughput. */
  encode: number;
  /** Reconstruct with one data shard lost. */
  reconstructOne: number;
  /** Reconstruct with `m` data shards lost. */
  reconstructAll: number;
  /** SHA-256 over the data (what `verify` spends per byte with `sha256` chunk digests). */
  verify: number;
  /** BLAKE3 over the data (what `verify` spends per byte with `blake3` chunk digests, the default). */
  verifyBlake3: number;
  /** SIMD kernel used. */
  kernel: string;
}

/**
 * Measure encode / reconstruct / verify throughput for `threads` independent `k + m` stripes of
 * `shardSize`-byte shards (median of three rounds of at least `minRoundMs`), with the fastest kernel or
 * `kernel` (`avx512-gfni`, `avx2`, `ssse3`, `portable`; one this CPU runs). Used by `tensorvault bench ecc`.
 */
export async function benchmarkErasure(
  k: number,
  m: number,
  shardSize: number,
  threads: number,
  minRoundMs = 300,
  kernel?: string,
): Promise<ErasureBenchResult> {
  requiredInteger(k, 'k', 1, 255);
  requiredInteger(m, 'm', 1, 255);
  requiredInteger(shardSize, 'shardSize', 1, 256 * 1024 * 1024);
  requiredInteger(threads, 'threads', 1, 256);
  requiredInteger(minRoundMs, 'minRoundMs', 0, 60_000);
  if (kernel !== undefined && typeof kernel !== 'string') {
    throw invalidArgument('kernel', 'kernel must be a kernel name such as "avx2"');
  }
  return runJob('eccBench', {}, () =>
    native().eccBench(k, m, shardSize, threads, minRoundMs, kernel ?? null),
  );
}
