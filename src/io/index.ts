/**
 * File plumbing shared by every TypeScript writer and reader: one errno map, one folder fsync, one
 * atomic replacement with one target rule, one writer lock.
 */
export {
  type AtomicWriteOptions,
  alive,
  atomicCopyFile,
  atomicWriteFile,
  atomicWriteFileSync,
  createLockedTemp,
  lockTemp,
  removeDeadTemps,
  removeDeadTempsMatching,
  tempName,
  tempStem,
  writableTarget,
} from './atomic';
export {
  assertFolderSync,
  assertRegularFile,
  closeQuietly,
  exists,
  folderError,
  fsyncDir,
  fsyncDirSync,
  ioError,
  makeFolder,
  makeFolderSync,
  notAFolder,
  notAFolderAbove,
  notRegularFile,
  readIfExists,
  readRegularFileSync,
  removeQuietly,
  typedIoError,
  writeAllAt,
} from './fs';
export { type AcquireLockOptions, type LockHolder, WriterLock } from './lock';
export {
  beginSwap,
  checkSettled,
  commitSwap,
  placeSwap,
  rollBackSwap,
  type SettleReport,
  SWAP_JOURNAL,
  type SwapJournal,
  settleSwap,
  swapStep,
} from './swap';
