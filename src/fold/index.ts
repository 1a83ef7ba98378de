/**
 * PyFolds `.fold` / `.mind` containers: {@link openFold}, {@link verifyFold}, {@link repairFold},
 * {@link writeFold}. Format and policy notes: `docs/formats/fold.md`.
 */
export { type FoldJson, toFoldJson } from './json';
export type { NpzArray } from './npz';
export type { FoldPolicy, OpenFoldOptions } from './options';
export {
  type FoldCheck,
  type FoldChecks,
  type FoldChunk,
  type FoldChunkInfo,
  FoldFile,
  type FoldStateDict,
  openFold,
} from './reader';
export {
  type FoldChunkReport,
  type FoldRepairResult,
  type FoldVerifyReport,
  repairFold,
  type VerifyFoldOptions,
  verifyFold,
} from './verify';
export {
  encodeStateDict,
  type FoldChunkInput,
  type FoldTensorInput,
  type WriteFoldOptions,
  writeFold,
} from './writer';
