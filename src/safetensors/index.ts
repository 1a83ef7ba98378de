export { type ArrayOfDtype, byteLengthOf, DTYPES, type Dtype, isDtype, type TensorArray } from './dtype';
export {
  type ChunkOptions,
  type OpenSafetensorsOptions,
  openSafetensors,
  type PrefetchResult,
  SafetensorsFile,
  SYNC_HEADER_MAX,
  type Tensor,
  type TensorInfo,
  type TensorOptions,
  type TypedTensor,
} from './reader';
export {
  openShardedSafetensors,
  parseShardIndex,
  type SaveShardedOptions,
  type SaveShardedResult,
  ShardedSafetensors,
  type ShardIndex,
  saveShardedSafetensors,
} from './sharded';
export {
  type Float16ArrayLike,
  type SaveSafetensorsOptions,
  type SaveSafetensorsResult,
  saveSafetensors,
  type TensorInput,
  type TensorSource,
  type TensorsToSave,
} from './writer';
