/**
 * Loads the N-API addon the way napi-rs's generated loader does: an override path first
 * (`TENSORVAULT_NATIVE_PATH`, or napi-rs's own `NAPI_RS_NATIVE_LIBRARY_PATH`), else a local build
 * (`native/` at the package root, made by `npm run build`), else the prebuilt platform package chosen
 * from the platform, the CPU and, on Linux, the C library (glibc or musl). Loading is lazy: importing
 * tensorvault never fails, the first call that needs the addon does, with `TV_NATIVE_UNAVAILABLE`
 * listing every candidate tried.
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
  encodeInto(data: Uint8Array[], parity: Uint8Array[]): void;
  reconstructInto(shards: Uint8Array[], present: boolean[]): void;
}

/** Result of the native `cpuInfo`. */
export interface NativeCpuInfo {
  arch: string;
  features: string[];
  detected: string;
  cap?: string | null;
  capError?: string | null;
  level: string;
  erasureKernel: string;
  rsKernel: string;
  sha256: string;
  blake3: string;
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
  cpuInfo(): NativeCpuInfo;
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
  /** Test builds only (cargo feature `test-hooks`). */
  __testPanicSync?(): void;
  /** Test builds only (cargo feature `test-hooks`). */
  __testPanicAsync?(): Promise<unknown>;
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
  'cpuInfo',
  'rsEncodeSync',
  'rsEncode',
  'rsDecode',
  'rsVerify',
  'eccProtect',
  'eccVerify',
  'eccRepair',
  'NativeErasureCodec',
  'eccBench',
  'openSafetensors',
  'createSafetensorsWriter',
  'writeFileAtomic',
];

/** One prebuilt addon: its napi-rs platform name, npm package and file name. */
export interface NativeTarget {
  /** napi-rs's platform name, e.g. `linux-x64-gnu`. */
  readonly platform: string;
  /** The npm package that carries it, e.g. `tensorvault-linux-x64-gnu`. */
  readonly packageName: string;
  /** The addon's file name inside that package (and in a local `native/` build). */
  readonly file: string;
}

/** The C library of a Linux process; `undefined` on other platforms. */
export type Libc = 'glibc' | 'musl' | undefined;

const target = (platform: string): NativeTarget => ({
  platform,
  packageName: `tensorvault-${platform}`,
  file: `tensorvault.${platform}.node`,
});

/**
 * The prebuilt addons that can serve a process, best first, following napi-rs's naming
 * (`<os>-<arch>[-<abi>]`). A pure function of its inputs; an empty list means no prebuilt binary is
 * made for that platform (building from source still works).
 */
export function nativeTargets(platform: string, arch: string, libc: Libc): NativeTarget[] {
  switch (`${platform}-${arch}`) {
    case 'linux-x64':
      return [target(libc === 'musl' ? 'linux-x64-musl' : 'linux-x64-gnu')];
    case 'linux-arm64':
      // No linux-arm64-musl package is made: a musl arm64 process has no candidate.
      return libc === 'musl' ? [] : [target('linux-arm64-gnu')];
    case 'darwin-arm64':
      return [target('darwin-arm64')];
    case 'darwin-x64':
      return [target('darwin-x64')];
    case 'win32-x64':
      return [target('win32-x64-msvc')];
    default:
      return [];
  }
}

/** The parts of Node's process report that tell the C library. */
export interface LibcEvidence {
  /** The text of `/usr/bin/ldd`, or null when it cannot be read. */
  ldd: string | null;
  /** Node's process report, or null when `process.report` is missing. */
  report: { header?: { glibcVersionRuntime?: string }; sharedObjects?: string[] } | null;
}

/**
 * Decides glibc or musl from the same evidence as napi-rs's loader, in its order: `/usr/bin/ldd` (a
 * shell script that names musl on musl systems), then the process report (a glibc version at run time
 * means glibc; musl's loader among the loaded objects means musl). Pure, for tests.
 */
export function libcFrom({ ldd, report }: LibcEvidence): 'glibc' | 'musl' {
  if (ldd !== null) return ldd.includes('musl') ? 'musl' : 'glibc';
  if (report?.header?.glibcVersionRuntime) return 'glibc';
  if (report?.sharedObjects?.some((f) => f.includes('libc.musl-') || f.includes('ld-musl-'))) return 'musl';
  return 'glibc';
}

/** This process's C library on Linux (see {@link libcFrom}); `undefined` on other platforms. */
export function detectLibc(): Libc {
  if (process.platform !== 'linux') return undefined;
  let ldd: string | null = null;
  try {
    ldd = readFileSync('/usr/bin/ldd', 'utf8');
  } catch {
    ldd = null;
  }
  let report: LibcEvidence['report'] = null;
  const reporter = process.report as (typeof process.report & { excludeNetwork?: boolean }) | undefined;
  if (ldd === null && typeof reporter?.getReport === 'function') {
    // Skip the report's network section (reverse DNS look-ups can be slow), as napi-rs does, and put
    // the caller's setting back.
    const before = reporter.excludeNetwork;
    reporter.excludeNetwork = true;
    try {
      report = reporter.getReport() as LibcEvidence['report'];
    } finally {
      reporter.excludeNetwork = before ?? false;
    }
  }
  return libcFrom({ ldd, report });
}

/** The npm package that carries the prebuilt addon for this process, or undefined if none is made. */
export function platformPackage(): string | undefined {
  return nativeTargets(process.platform, process.arch, detectLibc())[0]?.packageName;
}

/** The environment variables that name an addon file to load instead of any other, in order. */
export const NATIVE_PATH_VARIABLES = ['TENSORVAULT_NATIVE_PATH', 'NAPI_RS_NATIVE_LIBRARY_PATH'] as const;

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
  const libc = detectLibc();
  const targets = nativeTargets(process.platform, process.arch, libc);
  const overrideVar = NATIVE_PATH_VARIABLES.find((name) => process.env[name]);
  const override = overrideVar === undefined ? undefined : process.env[overrideVar];
  if (override) candidates.push(override);
  else {
    for (const t of targets) {
      const local = join(__dirname, '..', 'native', t.file);
      if (existsSync(local)) candidates.push(local);
    }
    for (const t of targets) {
      try {
        candidates.push(require.resolve(`${t.packageName}/${t.file}`));
      } catch {
        tried.push(`${t.packageName} (not installed)`);
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
  const where = `${process.platform}-${process.arch}${libc === undefined ? '' : ` (${libc})`}`;
  throw new TensorVaultError(
    ErrorCode.NATIVE_UNAVAILABLE,
    `tensorvault's native addon is not available for ${where}. ` +
      `Tried: ${tried.join('; ') || 'nothing'}. ${errors.join('; ')} ` +
      (targets.length === 0
        ? 'No prebuilt addon is made for this platform: build from source with `npm run build` (needs a Rust toolchain).'
        : 'Install the platform package or build from source with `npm run build` (needs a Rust toolchain).'),
    {
      platform: process.platform,
      arch: process.arch,
      libc: libc ?? null,
      packages: targets.map((t) => t.packageName).join('; '),
      override: overrideVar ?? null,
      tried: tried.join('; '),
    },
  );
}

/** The package's version, from its package.json. */
export function packageVersion(): string {
  const pkg = JSON.parse(readFileSync(join(__dirname, '..', 'package.json'), 'utf8')) as { version: string };
  return pkg.version;
}
