/** Object-storage targets: push, pull, lazy remote loads, remote verify and listing. */
export { type RemoteEvent, remoteChannel } from './common';
export { loadRemoteCheckpoint, RemoteCheckpoint, type RemoteLoadOptions } from './lazy';
export { MANIFEST_SUFFIX, type RemoteFileEntry, type RemoteManifest, type RemoteSetKind } from './manifest';
export { type PullOptions, type PullResult, pull } from './pull';
export { type PushedFile, type PushOptions, type PushResult, push } from './push';
export { type RemoteRepairReport, type RepairRemoteOptions, repairRemote } from './repair';
export type { RemoteOptions, StoreMetrics } from './store';
export { isRemoteUrl, type RemoteUrl } from './url';
export {
  listRemote,
  type RemoteListEntry,
  type RemoteVerifyReport,
  type VerifyRemoteOptions,
  verifyRemote,
} from './verify';
