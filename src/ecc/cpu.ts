/**
 * The CPU features tensorvault detected and the code paths it uses, so that benchmark figures can be
 * compared between machines. The ECC kernels (erasure and rs(N)) pick the fastest path the CPU runs;
 * the environment variable `TV_CPU` (`portable`, `ssse3`, `avx2`, `avx512`), read once when the first
 * ECC call is made, caps that choice, for example to measure on an AVX-512 machine what a CPU with only
 * AVX2 gets. SHA-256 and BLAKE3 choose their own paths and are not capped.
 */
import { callNative } from '../errors';
import { native } from '../native';

/** What {@link cpuInfo} reports. */
export interface CpuInfo {
  /** `x86_64`, `aarch64`, … */
  arch: string;
  /**
   * SIMD features of this CPU that tensorvault's code paths use (`avx2`, `avx512f`, `gfni`, `sha`, …; `neon`
   * on AArch64).
   */
  features: string[];
  /** The highest ECC feature level this CPU supports: `portable`, `ssse3`, `avx2` or `avx512`. */
  detected: string;
  /** The level `TV_CPU` asked for, or `null`. */
  cap: string | null;
  /** A `TV_CPU` value that names no level (ignored), or `null`. */
  capError: string | null;
  /** The ECC level in use: `detected` capped by `cap`. */
  level: string;
  /** The erasure kernel in use: `avx512-gfni`, `avx2`, `ssse3` or `portable`. */
  erasureKernel: string;
  /** The engine of the wide GF(2^16) code (sidecar format v2): `avx512-gfni`, `avx2`, `ssse3`, `neon` or `portable`. */
  wideEngine: string;
  /** The rs(32) encoder in use: `avx512-gfni`, `avx2-interleaved`, `avx2-sliced` or `portable`. */
  rsKernel: string;
  /** The SHA-256 path: `sha-ni` or `software` (not capped by `TV_CPU`). */
  sha256: string;
  /** The BLAKE3 path: `avx512`, `avx2`, `sse4.1`, `sse2`, `neon` or `portable` (not capped by `TV_CPU`). */
  blake3: string;
}

/** The CPU features detected and the kernels in use (see the module comment for `TV_CPU`). */
export function cpuInfo(): CpuInfo {
  const i = callNative(() => native().cpuInfo());
  return { ...i, cap: i.cap ?? null, capError: i.capError ?? null };
}

/** One line for the top of benchmark output: the kernels in use, the cap and the CPU features. */
export function describeCpu(info: CpuInfo = cpuInfo()): string {
  const cap =
    info.cap !== null
      ? ` (TV_CPU=${info.cap})`
      : info.capError !== null
        ? ` (TV_CPU=${info.capError} ignored: not a level)`
        : '';
  return (
    `cpu: level ${info.level}${cap}; erasure ${info.erasureKernel}, wide ${info.wideEngine}, ` +
    `rs(32) ${info.rsKernel}, ` +
    `sha256 ${info.sha256}, blake3 ${info.blake3}; features ${info.features.join(' ') || 'none'}`
  );
}
