import { readFile } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { asyncDisposeSymbol } from '../dispose';
import { abortError, ErrorCode, fromNative, invalidArgument, TensorVaultError } from '../errors';
import { assertRegularFile, ioError } from '../io/index';
import { native } from '../native';
import { optionalBoolean, optionsObject, requiredString } from '../validate';
import type { TensorArray } from './dtype';
import {
  type OpenSafetensorsOptions,
  openSafetensors,
  type SafetensorsFile,
  type Tensor,
  type TensorInfo,
  type TensorOptions,
} from './reader';
import {
  entriesOf,
  prepare,
  type SaveSafetensorsOptions,
  saveSafetensors,
  type TensorInput,
  type TensorsToSave,
} from './writer';

/** The parsed `*.safetensors.index.json` of a sharded checkpoint. */
export interface ShardIndex {
  /** The index's `metadata` object (typically `{ total_size }`). */
  metadata: Readonly<Record<string, unknown>>;
  /** Tensor name → shard file name (relative to the index's folder). */
  weightMap: Readonly<Record<string, string>>;
}

function invalidIndex(
  path: string,
  message: string,
  context: Record<string, string | number> = {},
): TensorVaultError {
  return new TensorVaultError(ErrorCode.SAFETENSORS_INVALID, `${path}: ${message}`, {
    path,
    reason: 'invalid_index',
    ...context,
  });
}

/**
 * A sharded checkpoint opened through its index: one logical set of tensors. Shards are opened on
 * first use (header read and validated then); tensor data is only touched when viewed.
 */
export class ShardedSafetensors {
  /** The index file's path. */
  readonly indexPath: string;
  /** The index's `metadata` object. */
  readonly metadata: Readonly<Record<string, unknown>>;
  /** Tensor names, sorted. */
  readonly names: readonly string[];
  /** Shard file names, in order of first appearance. */
  readonly shards: readonly string[];
  #dir: string;
  #weightMap: Readonly<Record<string, string>>;
  #open = new Map<string, Promise<SafetensorsFile>>();
  #options: OpenSafetensorsOptions;
  #closed = false;

  /** @internal Use {@link openShardedSafetensors}. */
  constructor(indexPath: string, index: ShardIndex, options: OpenSafetensorsOptions) {
    this.indexPath = indexPath;
    this.metadata = index.metadata;
    this.#weightMap = index.weightMap;
    this.#dir = dirname(indexPath);
    this.#options = options;
    this.names = Object.freeze(Object.keys(index.weightMap).sort());
    this.shards = Object.freeze([...new Set(Object.values(index.weightMap))]);
  }

  /** The shard file holding tensor `name`. */
  shardOf(name: string): string {
    requiredString(name, 'name', false);
    const shard = Object.hasOwn(this.#weightMap, name) ? this.#weightMap[name] : undefined;
    if (shard === undefined) {
      throw new TensorVaultError(ErrorCode.TENSOR_NOT_FOUND, `no tensor named ${JSON.stringify(name)}`, {
        name,
        path: this.indexPath,
      });
    }
    return shard;
  }

  /** The opened shard file holding `name` (opened and validated on first use). */
  async file(name: string): Promise<SafetensorsFile> {
    if (this.#closed) throw new TensorVaultError(ErrorCode.CLOSED, 'the sharded checkpoint is closed');
    const shard = this.shardOf(name);
    let p = this.#open.get(shard);
    if (p === undefined) {
      p = openSafetensors(join(this.#dir, shard), this.#options);
      this.#open.set(shard, p);
      p.catch(() => this.#open.delete(shard));
    }
    const f = await p;
    if (!f.has(name)) {
      throw invalidIndex(
        this.indexPath,
        `the index maps ${JSON.stringify(name)} to ${shard}, which does not hold it`,
        {
          name,
          shard,
        },
      );
    }
    return f;
  }

  /** Dtype, shape and size of tensor `name`. */
  async info(name: string): Promise<TensorInfo> {
    return (await this.file(name)).info(name);
  }

  /** Tensor `name` as a typed view (see {@link SafetensorsFile.tensor}). */
  async tensor(name: string, options: TensorOptions = {}): Promise<Tensor> {
    return (await this.file(name)).tensor(name, options);
  }

  /** Close every opened shard (views stay valid until collected). */
  async close(): Promise<void> {
    this.#closed = true;
    const files = await Promise.allSettled(this.#open.values());
    for (const f of files) if (f.status === 'fulfilled') f.value.close();
    this.#open.clear();
  }

  /** `await using set = await openShardedSafetensors(...)`: closes every opened shard at scope end. */
  async [asyncDisposeSymbol](): Promise<void> {
    await this.close();
  }
}

/** Parse and check a shard index's JSON text. */
export function parseShardIndex(text: string, path = 'index'): ShardIndex {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw invalidIndex(path, `not valid JSON: ${err instanceof Error ? err.message : String(err)}`);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json))
    throw invalidIndex(path, 'not a JSON object');
  const { metadata, weight_map: weightMap } = json as { metadata?: unknown; weight_map?: unknown };
  if (typeof weightMap !== 'object' || weightMap === null || Array.isArray(weightMap)) {
    throw invalidIndex(path, 'weight_map is missing or not an object');
  }
  for (const [name, file] of Object.entries(weightMap)) {
    if (
      typeof file !== 'string' ||
      file.length === 0 ||
      basename(file) !== file ||
      file === '.' ||
      file === '..'
    ) {
      throw invalidIndex(
        path,
        `weight_map[${JSON.stringify(name)}] must be a file name in the index's folder`,
        { name },
      );
    }
  }
  if (
    metadata !== undefined &&
    (typeof metadata !== 'object' || metadata === null || Array.isArray(metadata))
  ) {
    throw invalidIndex(path, 'metadata is not an object');
  }
  return {
    metadata: Object.freeze({ ...((metadata as Record<string, unknown> | undefined) ?? {}) }),
    weightMap: Object.freeze({ ...(weightMap as Record<string, string>) }),
  };
}

/**
 * Open a Hugging Face sharded checkpoint through its `*.safetensors.index.json`. Shard files must sit
 * in the index's folder (names with path separators are refused). Shards are opened lazily.
 */
export async function openShardedSafetensors(
  indexPath: string,
  options: OpenSafetensorsOptions = {},
): Promise<ShardedSafetensors> {
  if (typeof indexPath !== 'string' || indexPath.length === 0) {
    throw invalidArgument('indexPath', 'indexPath must be a non-empty string');
  }
  optionsObject(options);
  optionalBoolean(options.copy, 'copy');
  optionalBoolean(options.populate, 'populate');
  let text: string;
  try {
    await assertRegularFile(indexPath);
    text = await readFile(indexPath, { encoding: 'utf8', signal: options.signal });
  } catch (err) {
    if ((err as Error).name === 'AbortError') throw abortError(options.signal);
    throw ioError(err, indexPath, 'cannot read');
  }
  return new ShardedSafetensors(resolve(indexPath), parseShardIndex(text, indexPath), options);
}

/** Options of {@link saveShardedSafetensors}. */
export interface SaveShardedOptions extends SaveSafetensorsOptions {
  /** Largest shard in tensor bytes (default 5 GB, as Hugging Face); a larger tensor gets a shard of its own. */
  maxShardBytes?: number;
  /** File name prefix: `PREFIX-00001-of-00003.safetensors`, `PREFIX.safetensors.index.json` (default `model`). */
  prefix?: string;
}

/** Result of {@link saveShardedSafetensors}. */
export interface SaveShardedResult {
  /** Path of the index file. */
  indexPath: string;
  /** Shard file names in order. */
  shards: string[];
  /** Sum of all tensors' byte lengths (`metadata.total_size` in the index). */
  totalSize: number;
}

/**
 * Write `tensors` as a Hugging Face sharded checkpoint in folder `dir`: shards of at most
 * `maxShardBytes` tensor bytes (tensors in the given order; docs/formats/safetensors.md says how the
 * plan differs from `huggingface_hub`'s), each written atomically, then `PREFIX.safetensors.index.json`
 * (atomically, last).
 */
export async function saveShardedSafetensors(
  dir: string,
  tensors: TensorsToSave,
  options: SaveShardedOptions = {},
): Promise<SaveShardedResult> {
  if (typeof dir !== 'string' || dir.length === 0)
    throw invalidArgument('dir', 'dir must be a non-empty string');
  optionsObject(options);
  const max = options.maxShardBytes ?? 5_000_000_000;
  if (!Number.isSafeInteger(max) || max < 1)
    throw invalidArgument('maxShardBytes', 'maxShardBytes must be a positive integer');
  const prefix = options.prefix ?? 'model';
  if (typeof prefix !== 'string' || prefix.length === 0 || basename(prefix) !== prefix) {
    throw invalidArgument('prefix', 'prefix must be a plain file name');
  }
  const entries = entriesOf(tensors);
  // One name once across all shards: prepare refuses a duplicate (before, two copies in two shards were
  // written, and the index kept one of them).
  const prepared = prepare(entries);
  const groups: [string, TensorInput | TensorArray][][] = [];
  let current: [string, TensorInput | TensorArray][] = [];
  let size = 0;
  for (const [i, t] of prepared.entries()) {
    if (current.length > 0 && size + t.byteLength > max) {
      groups.push(current);
      current = [];
      size = 0;
    }
    current.push(entries[i] as [string, TensorInput | TensorArray]);
    size += t.byteLength;
  }
  if (current.length > 0 || groups.length === 0) groups.push(current);
  const width = 5;
  const n = String(groups.length).padStart(width, '0');
  const shards = groups.map((_, i) => `${prefix}-${String(i + 1).padStart(width, '0')}-of-${n}.safetensors`);
  // A Map: a tensor named `__proto__` set the prototype of a plain object and was left out of the index.
  const weightMap = new Map<string, string>();
  let totalSize = 0;
  for (const [i, group] of groups.entries()) {
    const shard = shards[i] as string;
    await saveSafetensors(join(dir, shard), group, {
      ...options,
      metadata: options.metadata ?? { format: 'pt' },
    });
    for (const [name] of group) weightMap.set(name, shard);
  }
  for (const t of prepared) totalSize += t.byteLength;
  // Object.fromEntries defines own properties, `__proto__` included.
  const sortedMap = Object.fromEntries([...weightMap].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  const index = { metadata: { total_size: totalSize }, weight_map: sortedMap };
  const indexPath = join(dir, `${prefix}.safetensors.index.json`);
  try {
    await native().writeFileAtomic(indexPath, Buffer.from(`${JSON.stringify(index, null, 2)}\n`));
  } catch (err) {
    throw fromNative(err);
  }
  return { indexPath, shards, totalSize };
}
