/**
 * Error correction: {@link RsCodec}, the reedsolo-compatible rs(N) byte-stream codec (`rs255`), and
 * the erasure parity sidecar that protects, verifies and repairs whole files (`erasure`).
 */
export { type CpuInfo, cpuInfo, describeCpu } from './cpu';
export {
  type ChunkDigestName,
  ECC_CHANNEL,
  type EccEvent,
  type EccFormat,
  type EccLayout,
  type EccStatus,
  type EccVerifyResult,
  type ErasureBenchResult,
  ErasureCodec,
  type ErasureProtectionLevel,
  eccSidecarPath,
  type ProtectOptions,
  type ProtectResult,
  protect,
  type RepairMode,
  type RepairOptions,
  type RepairResult,
  repair,
  type SidecarHealth,
  type SidecarOptions,
  verify,
} from './erasure';
export {
  type EccDecodeOptions,
  type EccDecodeResult,
  type EccInput,
  type EccOptions,
  eccFromName,
  eccFromProtection,
  eccKernel,
  RsCodec,
  type RsProtectionLevel,
} from './rs255';
