/** The rs(N) parity of the `pyfolds-ecc` layout (check and repair), and header digests. */
import { closeSync, constants, promises as fsp, openSync, read as readCb, readSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import { ErrorCode, TensorVaultError, throwIfAborted } from '../errors';
import { sha256 } from '../hash/index';
import { keepAttributesOf, tempName } from '../io/atomic';
import { closeQuietly, fsyncDir, ioError } from '../io/fs';
import type { JobOptions } from '../job';
import { isDtype } from '../safetensors/dtype';
import { openSafetensors } from '../safetensors/reader';
import type { TensorInfo } from '../safetensors/types';
import { type HmacKey, pyfoldsDigestOfFile, pyfoldsDigestPatched, pyfoldsHashMatches } from './layout';
import type { Parsed } from './parse';
import { writeRsParity } from './save';

/** `fs.read` on the libuv pool, resolving with the bytes read. */
export function readAsync(
  fd: number,
  buf: Buffer,
  offset: number,
  length: number,
  position: number,
): Promise<number> {
  return new Promise((resolve, reject) => {
    readCb(fd, buf, offset, length, position, (err, n) => (err ? reject(err) : resolve(n)));
  });
}

/** SHA-256 of the first `length` bytes of `path` and its size (read on this thread: a header is small). */
export async function headerSha(path: string, length: number): Promise<{ hex: string; size: number }> {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (err) {
    throw ioError(err, path, 'cannot open');
  }
  try {
    const size = statSync(path).size;
    const buf = Buffer.alloc(Math.min(length, size));
    const got =
      length > 1024 * 1024 ? await readAsync(fd, buf, 0, buf.length, 0) : readSync(fd, buf, 0, buf.length, 0);
    return { hex: sha256(buf.subarray(0, got)).toString('hex'), size };
  } finally {
    closeSync(fd);
  }
}

/** Chunk indices `[first, last)` covering file bytes `[start, end)`. */
export function chunkSpan(start: number, end: number, chunk: number): [number, number] {
  if (end <= start) return [0, 0];
  return [Math.floor(start / chunk), Math.ceil(end / chunk)];
}

/** Result of a repair of a pyfolds-ecc weights file from its rs(N) stream. */
export interface RsRepair {
  badBlocks: number[];
  uncorrectable: number[];
  rewritten: boolean;
  /**
   * Whether decoding changes data bytes (false: every block is intact, or only parity bytes differ, so
   * the parity itself vouches for the data as it is).
   */
  dataChanged: boolean;
  /**
   * A check without `write`: the data pieces the parity corrects (byte offset → the corrected bytes
   * of the piece there), to judge the correction with {@link correctionVerifies}.
   */
  corrections?: ReadonlyMap<number, Buffer>;
}

// Over 100 lines on purpose: the rs(N) stream is checked block by block with the repair of each damaged
// block in the same loop (the file is read once).
/**
 * Check (and with `write`, repair) the weights against their rs(N) parity stream, in block-aligned
 * pieces. A repaired copy is checked against the PyFolds hash before it replaces the weights.
 * `readFrom`: where a check without `write` reads the weights (an open checkpoint's own descriptor,
 * `fdPath` of integrity.ts, so that it checks the bytes that were opened); a repair always reads `p.weights`.
 */
export async function rsCheck(
  p: Parsed,
  key: HmacKey | undefined,
  write: boolean,
  options: JobOptions,
  readFrom: string = p.weights,
): Promise<RsRepair> {
  const rs = p.rs as NonNullable<Parsed['rs']>;
  const codec = rs.codec;
  const per = codec.blockDataLength;
  const blocksPerPiece = Math.floor((32 * 1024 * 1024) / per);
  const piece = blocksPerPiece * per;
  const fh = await fsp.open(write ? p.weights : readFrom, 'r');
  const ph = await fsp.open(rs.path, 'r');
  const badBlocks: number[] = [];
  const uncorrectable: number[] = [];
  const fixed = new Map<number, Buffer>();
  let size: number;
  let paritySize: number;
  try {
    size = (await fh.stat()).size;
    paritySize = (await ph.stat()).size;
    if (paritySize !== codec.eccLength(size) || rs.eccLen !== paritySize) {
      throw new TensorVaultError(
        ErrorCode.ECC_PARITY_LENGTH,
        `${rs.path}: parity length ${paritySize} does not fit ${size} bytes of weights (ecc_len ${rs.eccLen})`,
        {
          path: rs.path,
          expected: codec.eccLength(size),
          actual: paritySize,
        },
      );
    }
    const buf = Buffer.allocUnsafe(Math.min(piece, Math.max(1, size)));
    const pbuf = Buffer.allocUnsafe(blocksPerPiece * codec.parity);
    for (let at = 0, k = 0; at < size; at += piece, k++) {
      throwIfAborted(options.signal);
      const len = Math.min(piece, size - at);
      const plen = codec.eccLength(len);
      await fh.read(buf, 0, len, at);
      await ph.read(pbuf, 0, plen, (at / per) * codec.parity);
      const data = buf.subarray(0, len);
      const par = pbuf.subarray(0, plen);
      const bad = await codec.verify(data, par);
      if (bad.length === 0) continue;
      const first = k * blocksPerPiece;
      for (const b of bad) badBlocks.push(first + b);
      try {
        const r = await codec.decode(data, par);
        if (!r.data.equals(data)) fixed.set(at, r.data);
      } catch (err) {
        if (!(err instanceof TensorVaultError) || err.code !== ErrorCode.ECC_UNCORRECTABLE) throw err;
        const blk = typeof err.context.block === 'number' ? err.context.block : 0;
        uncorrectable.push(first + blk);
      }
      options.onProgress?.({ bytesDone: at + len, bytesTotal: size });
    }
  } finally {
    await closeQuietly(fh);
    await closeQuietly(ph);
  }
  const dataChanged = fixed.size > 0;
  if (!write) return { badBlocks, uncorrectable, rewritten: false, dataChanged, corrections: fixed };
  if (badBlocks.length === 0 || uncorrectable.length > 0)
    return { badBlocks, uncorrectable, rewritten: false, dataChanged };
  let rewritten = false;
  if (fixed.size > 0) {
    const tmp = tempName(p.weights);
    try {
      await fsp.copyFile(p.weights, tmp, constants.COPYFILE_EXCL);
      const out = await fsp.open(tmp, 'r+');
      try {
        for (const [at, data] of fixed) await out.write(data, 0, data.length, at);
        await out.sync();
      } finally {
        await closeQuietly(out);
      }
      // A mis-correction must not replace the weights: check the PyFolds hash on the repaired copy.
      const f = await openSafetensors(tmp);
      const infos = f.infos();
      f.close();
      const digest = await pyfoldsDigestOfFile(tmp, infos, options.signal ? { signal: options.signal } : {});
      if (!pyfoldsHashMatches(p.stored, digest, key)) {
        throw new TensorVaultError(
          ErrorCode.ECC_REPAIR_FAILED,
          `${p.weights}: the rs(N) repair does not match the integrity hash (${p.stored.kind === 'hmac-sha256' ? 'a mis-correction, or a wrong HMAC key' : 'mis-correction'}); nothing was replaced`,
          {
            path: p.weights,
          },
        );
      }
      await keepAttributesOf(tmp, p.weights);
      await fsp.rename(tmp, p.weights);
      await fsyncDir(dirname(p.weights));
      rewritten = true;
    } finally {
      await fsp.rm(tmp, { force: true }).catch(() => {});
    }
  }
  if (!rewritten) {
    // Only parity bytes differed: the data are rewritten into parity only once they verify (a wrong
    // key, or damage the parity missed, must not have its bytes turned into new parity).
    const f = await openSafetensors(p.weights);
    const infos = f.infos();
    f.close();
    const digest = await pyfoldsDigestOfFile(
      p.weights,
      infos,
      options.signal ? { signal: options.signal } : {},
    );
    if (!pyfoldsHashMatches(p.stored, digest, key)) {
      throw new TensorVaultError(
        ErrorCode.ECC_REPAIR_FAILED,
        `${p.weights}: the weights do not match the integrity hash; the rs(N) parity was not rebuilt from them`,
        { path: p.weights },
      );
    }
  }
  // Damaged parity (or parity of repaired data): rewrite the stream from the verified data.
  const tmpEcc = tempName(rs.path);
  try {
    await writeRsParity(p.weights, tmpEcc, codec, {});
    await keepAttributesOf(tmpEcc, rs.path, p.weights);
    await fsp.rename(tmpEcc, rs.path);
    await fsyncDir(dirname(rs.path));
  } finally {
    await fsp.rm(tmpEcc, { force: true }).catch(() => {});
  }
  return { badBlocks, uncorrectable, rewritten, dataChanged };
}

/**
 * Whether the weights as the rs(N) parity corrects them (`r`: a check without `write` that found every
 * damaged block correctable) match the PyFolds hash with `key`: what a repair checks on its repaired
 * copy before that copy replaces the weights, here without writing anything (the corrected pieces are
 * hashed from memory, the rest from `readFrom`). A correction that does not match is one the repair
 * refuses (a mis-correction, or a wrong HMAC key).
 */
export async function correctionVerifies(
  p: Parsed,
  key: HmacKey | undefined,
  r: RsRepair,
  options: JobOptions,
  readFrom: string = p.weights,
): Promise<boolean> {
  const patches = r.corrections ?? new Map<number, Buffer>();
  const infos = await correctedInfos(readFrom, patches);
  if (infos === undefined) return false;
  const job = options.signal ? { signal: options.signal } : {};
  return pyfoldsHashMatches(p.stored, await pyfoldsDigestPatched(readFrom, infos, patches, job), key);
}

/** The largest safetensors header read by {@link correctedInfos} (as the reader's limit). */
const HEADER_MAX = 100 * 1024 * 1024;

/**
 * The tensor entries of the safetensors header of `path` with `patches` applied (the header may be
 * among the corrected blocks, so the file's own cannot be trusted): name, dtype, shape and the byte
 * range of each, as the PyFolds hash reads them. Undefined when the corrected header does not parse
 * or names bytes past the end (such a correction would not open either).
 */
async function correctedInfos(
  path: string,
  patches: ReadonlyMap<number, Buffer>,
): Promise<TensorInfo[] | undefined> {
  const fh = await fsp.open(path, 'r');
  try {
    const size = (await fh.stat()).size;
    const read = async (at: number, len: number): Promise<Buffer> => {
      const b = Buffer.alloc(len);
      await fh.read(b, 0, len, at);
      for (const [from, bytes] of patches) {
        const lo = Math.max(at, from);
        const hi = Math.min(at + len, from + bytes.length);
        if (lo < hi) bytes.copy(b, lo - at, lo - from, hi - from);
      }
      return b;
    };
    if (size < 8) return undefined;
    const n = Number((await read(0, 8)).readBigUInt64LE(0));
    if (n < 2 || n > HEADER_MAX || 8 + n > size) return undefined;
    let doc: unknown;
    try {
      doc = JSON.parse((await read(8, n)).toString('utf8'));
    } catch {
      return undefined;
    }
    if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) return undefined;
    const count = (v: unknown): v is number => Number.isSafeInteger(v) && (v as number) >= 0;
    const out: TensorInfo[] = [];
    for (const [name, v] of Object.entries(doc as Record<string, unknown>)) {
      if (name === '__metadata__') continue;
      const e = (v ?? {}) as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
      const [a, b] = Array.isArray(e.data_offsets) ? (e.data_offsets as unknown[]) : [];
      if (!isDtype(e.dtype) || !Array.isArray(e.shape) || !e.shape.every(count)) return undefined;
      if (!count(a) || !count(b) || b < a || 8 + n + b > size) return undefined;
      out.push({ name, dtype: e.dtype, shape: e.shape, fileOffset: 8 + n + a, byteLength: b - a });
    }
    return out;
  } finally {
    await closeQuietly(fh);
  }
}
