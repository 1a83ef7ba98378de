/**
 * Loads the N-API addon: a local build (`native/` at the package root, made by `npm run build`) first,
 * then the prebuilt platform package (`tensorvault-linux-x64-gnu`), with a clear error when neither
 * exists. `TENSORVAULT_NATIVE_PATH` overrides both. Loading is lazy: importing tensorvault never fails,
 * the first call that needs the addon does, with `TV_NATIVE_UNAVAILABLE`.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ErrorCode, TensorVaultError } from './errors';

/** Result of the native `hashFile`. */
export interface NativeHashFileResult {
  digest: Buffer;
  length: number;
  chunkSize?: number;
  leaves?: Buffer;
}

/** Progress/cancellation handle of one native job. */
export interface NativeJobControl {
  cancel(): void;
  readonly cancelled: boolean;
  readonly done: number;
  readonly total: number;
}

/** Incremental native SHA-256 state. */
export interface NativeSha256State {
  update(data: Uint8Array): void;
  digest(): Buffer;
  copy(): NativeSha256State;
}

/** One tensor's header entry, as the addon reports it. */
export interface NativeTensorInfo {
  name: string;
  dtype: string;
  shape: number[];
  fileOffset: number;
  byteLength: number;
}

/** An open, validated safetensors file in the addon. */
export interface NativeSafetensorsHandle {
  tensors(): NativeTensorInfo[];
  tensorsJson(): string;
  metadata(): { key: string; value: string }[] | null | undefined;
  dataStart(): number;
  checkRange(
    name: string,
    byteOffset: number,
    byteLength: number | undefined | null,
    maxBytes: number,
    populate?: boolean,
  ): void;
  copyRange(
    name: string,
    byteOffset: number,
    byteLength: number | undefined | null,
    maxBytes: number,
  ): ArrayBuffer;
  regionBuffer(offset: number, length: number): ArrayBuffer;
  prefetch(names: string[] | null | undefined, control: NativeJobControl): Promise<boolean>;
  readRange(name: string, offset: number, length: number): Promise<Buffer>;
  close(): void;
  readonly closed: boolean;
}

/** The addon's streaming safetensors writer. */
export interface NativeSafetensorsWriterHandle {
  order(): string[];
  dataLength(): number;
  writeSync(data: Uint8Array, control: NativeJobControl): void;
  write(data: Uint8Array, control: NativeJobControl): Promise<void>;
  finish(): Promise<void>;
  abort(): void;
}

/** Result of the native `rsDecode`. */
export interface NativeRsDecodeResult {
  data: Buffer;
  correctedBytes: number;
  correctedBlocks: number[];
}

/** Parameters and sizes of an ECC sidecar, as the addon returns them. */
export interface NativeEccLayout {
  k: number;
  m: number;
  chunkSize: number;
  fileLength: number;
  chunks: number;
  stripes: number;
  sidecarLength: number;
  digest: 'blake3' | 'sha256';
}

/** Result of the native `eccProtect`. */
export interface NativeEccProtectResult {
  sidecarPath: string;
  layout: NativeEccLayout;
  root: string;
}

/** Result of the native `eccVerify`. */
export interface NativeEccVerifyResult {
  status: string;
  layout: NativeEccLayout;
  actualLength: number;
  damagedChunks: number[];
  damagedParity: number[];
  unrepairableStripes: number[];
  unrepairableChunks: number[];
  sidecar: {
    headerA: boolean;
    headerB: boolean;
    tableABadBlocks: number[];
    tableBBadBlocks: number[];
    actualLength: number;
    expectedLength: number;
  };
}

/** Result of the native `eccRepair`. */
export interface NativeEccRepairResult {
  before: NativeEccVerifyResult;
  after: NativeEccVerifyResult;
  repairedChunks: number[];
  fileRewritten: boolean;
  sidecarRewritten: boolean;
}

/** Native in-memory erasure codec. */
export interface NativeErasureCodecInstance {
  readonly kernel: string;
  encode(data: Uint8Array[]): Buffer[];
  reconstruct(shards: (Uint8Array | null)[]): Buffer[];
}

/** The addon's exports (kept in step with `crates/tensorvault-node`; a test checks every name). */
export interface NativeBinding {
  sha256(data: Uint8Array): Buffer;
  sha256Many(data: Uint8Array, ends: Uint32Array): Buffer;
  sha256ManyHex(data: Uint8Array, ends: Uint32Array): string;
  gzipMembers(
    data: Uint8Array,
    level: number,
    memberSize: number | undefined | null,
    threads: number | undefined | null,
    control: NativeJobControl,
  ): Promise<Buffer>;
  hmacSha256(key: Uint8Array, data: Uint8Array): Buffer;
  NativeSha256: new () => NativeSha256State;
  JobControl: new () => NativeJobControl;
  hashFile(
    path: string,
    chunkSize: number | undefined | null,
    threads: number | undefined | null,
    control: NativeJobControl,
  ): Promise<NativeHashFileResult>;
  rsProtectionParity(level: string): number | null | undefined;
  rsParseName(name: string): number | null | undefined;
  rsKernel(): string;
  rsEncodeSync(n: number, data: Uint8Array): Buffer;
  rsEncode(
    n: number,
    data: Uint8Array,
    inline: boolean,
    threads: number | undefined | null,
    control: NativeJobControl,
  ): Promise<Buffer>;
  rsDecode(
    n: number,
    data: Uint8Array,
    parity: Uint8Array | undefined | null,
    erasures: number[] | undefined | null,
    parityErasures: number[] | undefined | null,
    threads: number | undefined | null,
    control: NativeJobControl,
  ): Promise<NativeRsDecodeResult>;
  rsVerify(
    n: number,
    data: Uint8Array,
    parity: Uint8Array,
    threads: number | undefined | null,
    control: NativeJobControl,
  ): Promise<number[]>;
  eccProtect(
    path: string,
    options: {
      sidecar?: string;
      level?: string;
      k?: number;
      m?: number;
      chunkSize?: number;
      digest?: string;
    },
    control: NativeJobControl,
  ): Promise<NativeEccProtectResult>;
  eccVerify(path: string, sidecar: string | null, control: NativeJobControl): Promise<NativeEccVerifyResult>;
  eccRepair(path: string, sidecar: string | null, control: NativeJobControl): Promise<NativeEccRepairResult>;
  NativeErasureCodec: new (k: number, m: number) => NativeErasureCodecInstance;
  eccBench(
    k: number,
    m: number,
    shardSize: number,
    threads: number,
    minRoundMs: number,
    kernel: string | null,
  ): Promise<{
    encode: number;
    reconstructOne: number;
    reconstructAll: number;
    verify: number;
    verifyBlake3: number;
    kernel: string;
  }>;
  __testPanicSync(): void;
  __testPanicAsync(): Promise<unknown>;
  openSafetensors(path: string): Promise<NativeSafetensorsHandle>;
  createSafetensorsWriter(
    path: string,
    names: string[],
    dtypes: string[],
    shapes: number[][],
    metadata: { key: string; value: string }[] | null | undefined,
  ): NativeSafetensorsWriterHandle;
  writeFileAtomic(path: string, data: Uint8Array): Promise<void>;
  lockFile(path: string, holder: string): { release(): void; readonly held: boolean };
}

/** Names the binding must export; checked at load time so a stale build fails loudly. */
export const NATIVE_EXPORTS: readonly (keyof NativeBinding)[] = [
  'lockFile',
  'sha256',
  'sha256Many',
  'sha256ManyHex',
  'gzipMembers',
  'hmacSha256',
  'NativeSha256',
  'JobControl',
  'hashFile',
  'rsProtectionParity',
  'rsParseName',
  'rsKernel',
  'rsEncodeSync',
  'rsEncode',
  'rsDecode',
  'rsVerify',
  'eccProtect',
  'eccVerify',
  'eccRepair',
  'NativeErasureCodec',
  'eccBench',
  '__testPanicSync',
  '__testPanicAsync',
  'openSafetensors',
  'createSafetensorsWriter',
  'writeFileAtomic',
];

/** The npm package that carries the prebuilt addon for this platform, or undefined if none is made. */
export function platformPackage(): string | undefined {
  if (process.platform === 'linux' && process.arch === 'x64' && !isMusl()) return 'tensorvault-linux-x64-gnu';
  return undefined;
}

function isMusl(): boolean {
  const report = process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined;
  return report?.header?.glibcVersionRuntime === undefined;
}

const BINARY = 'tensorvault.linux-x64-gnu.node';

let cached: NativeBinding | undefined;
let loadedFrom: string | undefined;

/** Where the addon was loaded from (after the first successful load). */
export function nativePath(): string | undefined {
  return loadedFrom;
}

/** The addon, loaded on first use. Throws `TV_NATIVE_UNAVAILABLE` when no build fits this platform. */
export function native(): NativeBinding {
  if (cached !== undefined) return cached;
  const tried: string[] = [];
  const errors: string[] = [];
  const candidates: string[] = [];
  const override = process.env.TENSORVAULT_NATIVE_PATH;
  if (override) candidates.push(override);
  else {
    const local = join(__dirname, '..', 'native', BINARY);
    if (existsSync(local)) candidates.push(local);
    const pkg = platformPackage();
    if (pkg !== undefined) {
      try {
        candidates.push(require.resolve(`${pkg}/${BINARY}`));
      } catch {
        tried.push(`${pkg} (not installed)`);
      }
    }
  }
  for (const candidate of candidates) {
    tried.push(candidate);
    try {
      const mod = require(candidate) as NativeBinding;
      const missing = NATIVE_EXPORTS.filter((name) => !(name in mod));
      if (missing.length > 0) {
        errors.push(`${candidate} is stale: missing ${missing.join(', ')} (rebuild with npm run build)`);
        continue;
      }
      cached = mod;
      loadedFrom = candidate;
      return mod;
    } catch (err) {
      errors.push(`${candidate}: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
  throw new TensorVaultError(
    ErrorCode.NATIVE_UNAVAILABLE,
    `tensorvault's native addon is not available for ${process.platform}-${process.arch}. ` +
      `Tried: ${tried.join('; ') || 'nothing'}. ${errors.join('; ')} ` +
      'Install the platform package or build from source with `npm run build` (needs a Rust toolchain).',
    { platform: process.platform, arch: process.arch, tried: tried.join('; ') },
  );
}

/** The package's version, from its package.json. */
export function packageVersion(): string {
  const pkg = JSON.parse(readFileSync(join(__dirname, '..', 'package.json'), 'utf8')) as { version: string };
  return pkg.version;
}
