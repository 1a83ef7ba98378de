/**
 * pull: download a pushed set in parallel ranged requests, verifying every chunk against its digest as
 * it streams in, repairing damaged weights chunks from the parity stored with the set, and resuming an
 * interrupted pull from the chunks already verified on disk.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { open, readFile, rename, rm } from 'node:fs/promises';
import { join, resolve as resolvePath } from 'node:path';
import { checkpointFiles, parseIntegrityBlock } from '../checkpoint/layout';
import { loadCheckpoint, repairCheckpoint } from '../checkpoint/load';
import { syncOutboard } from '../checkpoint/outboard';
import type { LoadCheckpointOptions } from '../checkpoint/parse';
import { rethrownByParity } from '../checkpoint/repair-lock';
import { repair as eccRepair } from '../ecc/erasure';
import { ErrorCode, invalidArgument, TensorVaultError } from '../errors';
import { closeQuietly, fsyncDir, makeFolder, typedIoError } from '../io/fs';
import type { JobOptions } from '../job';
import { optionsObject } from '../validate';
import { publishRemote } from './common';
import { chunkLen, chunkSourceOf, fetchChunks, localChunkGood } from './fetch';
import { MANIFEST_SUFFIX, parseManifest, type RemoteFileEntry, type RemoteManifest } from './manifest';
import { openStore } from './open-store';
import { type RemoteOptions, readAll, type Store } from './store';
import { joinKey, parseRemoteUrl } from './url';

/** Options of {@link pull}. */
export interface PullOptions extends JobOptions, RemoteOptions, Pick<LoadCheckpointOptions, 'hmacKey'> {
  /** Ranged requests in flight at once (default 8). */
  concurrency?: number;
  /** Bytes per ranged request (default 8 MiB). */
  rangeSize?: number;
  /** Replace files that exist in the destination folder (default false: `TV_EXISTS`). */
  overwrite?: boolean;
  /** Repair damaged weights chunks from the parity stored with the set (default true). */
  repair?: boolean;
}

/** What {@link pull} did. */
export interface PullResult {
  /** Local path of the main file (weights or archive). */
  path: string;
  layout: RemoteManifest['layout'];
  files: { name: string; size: number }[];
  /** Bytes of the set. */
  bytes: number;
  /** Body bytes received in this call. */
  bytesDownloaded: number;
  /** Chunks found already verified on disk from an interrupted pull (not fetched again). */
  reusedChunks: number;
  /** Weights chunks that arrived damaged and were rebuilt from the parity. */
  repairedChunks: number[];
  /**
   * Parity files of the set (`.tvecc`, `.ecc`) missing or damaged in the store and therefore not
   * placed: the weights verified without them (run `repair` or push again to restore the parity).
   */
  skippedFiles: string[];
}

/** Split a main-object URL into its store, prefix and main name; fetch and parse its manifest. */
export async function openManifest(
  url: string,
  options: RemoteOptions & { signal?: AbortSignal | undefined },
): Promise<{ store: Store; prefix: string; manifest: RemoteManifest; manifestKey: string }> {
  const target = parseRemoteUrl(url.endsWith(MANIFEST_SUFFIX) ? url.slice(0, -MANIFEST_SUFFIX.length) : url);
  const { store, key } = await openStore(target, options);
  try {
    const slash = key.lastIndexOf('/');
    const prefix = slash < 0 ? '' : key.slice(0, slash);
    const main = slash < 0 ? key : key.slice(slash + 1);
    if (main.length === 0) throw invalidArgument('url', `the URL names no object: ${JSON.stringify(url)}`);
    const manifestKey = joinKey(prefix, `${main}${MANIFEST_SUFFIX}`);
    let bytes: Buffer;
    try {
      bytes = await readAll(store, manifestKey, options.signal);
    } catch (err) {
      if (err instanceof TensorVaultError && err.code === ErrorCode.REMOTE_NOT_FOUND) {
        const exists = (await store.head(key, options.signal)) !== undefined;
        throw new TensorVaultError(
          ErrorCode.REMOTE_NOT_FOUND,
          exists
            ? `${store.url(key)}: no manifest (${main}${MANIFEST_SUFFIX}): the set was never completely pushed`
            : `${store.url(key)}: no such object`,
          { url: store.url(key), key, reason: exists ? 'no_manifest' : 'NoSuchKey' },
        );
      }
      throw err;
    }
    const manifest = parseManifest(bytes, store.url(manifestKey));
    if (manifest.main !== main) {
      throw new TensorVaultError(
        ErrorCode.REMOTE_DAMAGED,
        `${store.url(manifestKey)}: the manifest is for ${manifest.main}`,
        {
          url: store.url(manifestKey),
          reason: 'manifest_mismatch',
        },
      );
    }
    return { store, prefix, manifest, manifestKey };
  } catch (err) {
    store.close();
    throw err;
  }
}

/**
 * For a `tensorvault` checkpoint: the sealed integrity block in the sidecar must list the same weights
 * digests as the manifest (the manifest is not trusted on its own for the weights). Returns the block.
 */
export function crossCheck(
  manifest: RemoteManifest,
  metaBytes: Uint8Array,
  url: string,
): ReturnType<typeof parseIntegrityBlock> {
  const weights = manifest.files.find((f) => f.name === manifest.main) as RemoteFileEntry;
  let block: ReturnType<typeof parseIntegrityBlock>;
  try {
    const doc = JSON.parse(Buffer.from(metaBytes).toString('utf8')) as Record<string, unknown>;
    block = parseIntegrityBlock(doc.tensorvault, `${url}.meta.json`);
  } catch (err) {
    throw new TensorVaultError(
      ErrorCode.REMOTE_DAMAGED,
      `${url}: the checkpoint's sidecar is not readable`,
      {
        url,
        file: `${manifest.main}.meta.json`,
        reason: 'manifest_mismatch',
      },
      { cause: err },
    );
  }
  if (
    block.chunk_size !== manifest.chunk_size ||
    block.file_length !== weights.size ||
    block.leaves !== weights.leaves
  ) {
    throw new TensorVaultError(
      ErrorCode.REMOTE_DAMAGED,
      `${url}: the manifest's digests of the weights differ from the checkpoint's sealed integrity block`,
      { url, file: manifest.main, reason: 'manifest_mismatch' },
    );
  }
  return block;
}

/**
 * The parity file of the set the weights are repaired from, when the manifest lists one: the `.tvecc`
 * erasure sidecar, or for the `pyfolds-ecc` layout its rs(N) stream `NAME.safetensors.ecc`.
 */
export function parityName(manifest: RemoteManifest): string | undefined {
  const name = `${manifest.main}${manifest.layout === 'pyfolds-ecc' ? '.ecc' : '.tvecc'}`;
  return manifest.files.some((f) => f.name === name) ? name : undefined;
}

function damaged(url: string, file: string, chunks: readonly number[], why: string): TensorVaultError {
  return new TensorVaultError(
    ErrorCode.REMOTE_DAMAGED,
    `${url}: ${file}: chunks ${chunks.join(', ')} do not match their digests (${why})`,
    { url, file, chunks: chunks.join(','), reason: 'chunk_digest' },
  );
}

/**
 * Download the set whose main object is `url` (`s3://bucket/prefix/NAME.safetensors`) into the folder
 * `destDir`. Files are staged in `destDir/.tv-pull-…/`, every chunk verified as it arrives; an
 * interrupted pull resumes from the chunks already verified there. Damaged weights chunks are rebuilt
 * from the stored parity (`.tvecc`, or the rs(N) stream `.ecc` of a `pyfolds-ecc` set, repaired as
 * `repairCheckpoint` repairs it locally) when there is one; the checkpoint's seal is checked; then the
 * files are renamed into `destDir` (sidecars last).
 */
export async function pull(url: string, destDir: string, options: PullOptions = {}): Promise<PullResult> {
  if (typeof destDir !== 'string' || destDir.length === 0)
    throw invalidArgument('destDir', 'destDir must be a non-empty string');
  optionsObject(options);
  const concurrency = options.concurrency ?? 8;
  if (!Number.isSafeInteger(concurrency) || concurrency < 1 || concurrency > 64)
    throw invalidArgument('concurrency', 'concurrency must be an integer from 1 to 64');
  const rangeSize = options.rangeSize ?? 8 * 1024 * 1024;
  // Whole chunks per request: 0, a fraction or NaN fetched one chunk per request without a word.
  if (!Number.isSafeInteger(rangeSize) || rangeSize < 1024 * 1024 || rangeSize > 1024 ** 3)
    throw invalidArgument('rangeSize', 'rangeSize must be an integer number of bytes from 1 MiB to 1 GiB');
  const t0 = performance.now();
  const { store, prefix, manifest } = await openManifest(url, options);
  const mainUrl = store.url(joinKey(prefix, manifest.main));
  try {
    const dest = resolvePath(destDir);
    const staging = join(dest, `.tv-pull-${createHash('sha256').update(mainUrl).digest('hex').slice(0, 16)}`);
    if (options.overwrite !== true) {
      for (const f of manifest.files) {
        if (existsSync(join(dest, f.name)))
          throw new TensorVaultError(ErrorCode.EXISTS, `${join(dest, f.name)} exists (pass overwrite)`, {
            path: join(dest, f.name),
          });
      }
    }
    // Made only once the pull may go ahead: a refused pull leaves nothing behind.
    await makeFolder(staging);
    const total = manifest.files.reduce((a, f) => a + f.size, 0);
    let doneBytes = 0;
    const down0 = store.metrics.bytesDown;
    let reused = 0;
    const progress = (n: number): void => {
      doneBytes += n;
      options.onProgress?.({ bytesDone: doneBytes, bytesTotal: total });
    };
    // Small JSON sidecars first (the integrity block is needed to trust the weights' digests).
    const order = [...manifest.files].sort(
      (a, b) => Number(b.name.endsWith('.json')) - Number(a.name.endsWith('.json')),
    );
    const badByFile = new Map<string, number[]>();
    // The parity is optional: the weights are verified chunk by chunk without it; it is needed only to
    // repair them. A parity file missing from the store is noted here instead of failing the pull.
    const parityNames = new Set([`${manifest.main}.tvecc`, `${manifest.main}.ecc`]);
    const missing = new Set<string>();
    let block: ReturnType<typeof parseIntegrityBlock> | undefined;
    for (const f of order) {
      const path = join(staging, f.name);
      const fresh = !existsSync(path);
      const fh = await open(path, fresh ? 'w+' : 'r+');
      try {
        await fh.truncate(f.size);
        const src = chunkSourceOf(store, prefix, manifest, f);
        const n = Math.ceil(f.size / manifest.chunk_size);
        const todo: number[] = [];
        for (let i = 0; i < n; i++) {
          if (!fresh && (await localChunkGood(fh, src, i))) {
            reused += 1;
            progress(chunkLen(src, i));
          } else todo.push(i);
        }
        if (
          todo.length > 0 &&
          parityNames.has(f.name) &&
          (await store.head(src.key, options.signal)) === undefined
        ) {
          missing.add(f.name);
          badByFile.set(f.name, todo);
          continue;
        }
        const bad = await fetchChunks(src, todo, fh, {
          concurrency,
          rangeSize,
          signal: options.signal,
          onChunk: (_i, b) => progress(b),
          keepDamaged: true,
        });
        await fh.sync();
        if (bad.length > 0) badByFile.set(f.name, bad);
      } finally {
        await closeQuietly(fh);
      }
      if (
        f.name === `${manifest.main}.meta.json` &&
        manifest.layout === 'tensorvault' &&
        !badByFile.has(f.name)
      ) {
        block = crossCheck(manifest, await readFile(path), mainUrl);
      }
    }
    // Damaged weights chunks: rebuild from the parity stored with the set, when it arrived intact.
    const repaired: number[] = [];
    const parity = parityName(manifest);
    const badWeights = badByFile.get(manifest.main);
    // Why damaged weights were not repaired (the message of TV_REMOTE_DAMAGED).
    let whyNot =
      options.repair === false
        ? 'repair is off'
        : parity === undefined
          ? 'the set has no parity'
          : missing.has(parity)
            ? 'the parity is missing from the store'
            : 'the stored parity is damaged too';
    if (
      badWeights !== undefined &&
      options.repair !== false &&
      parity !== undefined &&
      !badByFile.has(parity) &&
      // pyfolds-ecc: the rs(N) repair checks its correction against the PyFolds hash in NAME.json.
      (manifest.layout !== 'pyfolds-ecc' || !badByFile.has(checkpointFiles(manifest.main).json))
    ) {
      publishRemote({ event: 'damaged', url: mainUrl, chunks: badWeights });
      const weights = join(staging, manifest.main);
      whyNot = 'the parity arrived intact but could not rebuild them';
      const rebuild: Promise<unknown> =
        manifest.layout === 'pyfolds-ecc'
          ? // The local repair of the staged set (weights, NAME.json, the rs(N) stream NAME.safetensors.ecc):
            // rs(N) decoding, the corrected copy checked against the PyFolds hash before it replaces them.
            repairCheckpoint(weights, {
              ...(options.hmacKey === undefined ? {} : { hmacKey: options.hmacKey }),
              ...(options.signal === undefined ? {} : { signal: options.signal }),
            })
          : eccRepair(weights, { sidecar: join(staging, parity), force: true });
      await rebuild.catch((err: unknown) => {
        // An abort, a full disk or a read error is not the parity's verdict: it rejects the pull.
        if (rethrownByParity(err)) throw err;
        const e = err as TensorVaultError;
        if (manifest.layout === 'pyfolds-ecc') {
          whyNot =
            e.code === ErrorCode.CHECKPOINT_HMAC_REQUIRED
              ? 'the rs(N) repair checks its correction against the keyed integrity hash: pass hmacKey'
              : e.context.reason === 'key'
                ? 'the keyed integrity hash matches neither the weights nor the rs(N) correction: the HMAC key is probably wrong'
                : e.code === ErrorCode.CHECKPOINT_INTEGRITY
                  ? `the damage exceeds what the parity can rebuild (${String(e.context.reason)})`
                  : `the parity cannot rebuild them (${e.code})`;
          return;
        }
        const lost = String(e.context.chunks ?? '')
          .split(',')
          .filter((c) => c !== '').length;
        whyNot =
          e.code === ErrorCode.ECC_UNREPAIRABLE
            ? `the damage exceeds what the parity can rebuild${lost > 0 ? `: ${lost} of the parity code's data chunks cannot be rebuilt` : ''}`
            : `the parity cannot rebuild them (${e.code})`;
      });
      const f = manifest.files.find((e) => e.name === manifest.main) as RemoteFileEntry;
      const src = chunkSourceOf(store, prefix, manifest, f); // only its local chunks are read
      const fh = await open(weights, 'r');
      const still: number[] = [];
      try {
        for (const c of badWeights) if (!(await localChunkGood(fh, src, c))) still.push(c);
      } finally {
        await closeQuietly(fh);
      }
      if (still.length === 0) {
        repaired.push(...badWeights);
        // The rebuilt chunks are done too (they were never counted as fetched).
        for (const c of badWeights) progress(chunkLen(src, c));
        badByFile.delete(manifest.main);
        publishRemote({ event: 'repaired', url: mainUrl, chunks: badWeights });
      } else badByFile.set(manifest.main, still);
    }
    // Intact (or repaired) weights do not need the parity: a missing or damaged parity file is left out.
    const skipped: string[] = [];
    if (!badByFile.has(manifest.main)) {
      for (const name of parityNames) {
        if (badByFile.has(name)) {
          badByFile.delete(name);
          skipped.push(name);
        }
      }
    }
    for (const [file, chunks] of badByFile) {
      throw damaged(mainUrl, file, chunks, file === manifest.main ? whyNot : 'not repairable');
    }
    // The seal (metadata, header digest, PyFolds hash) of a tensorvault checkpoint, read-only.
    if (manifest.layout === 'tensorvault') {
      const ck = await loadCheckpoint(join(staging, manifest.main), {
        verify: 'none',
        repair: false,
        ...(options.hmacKey === undefined ? {} : { hmacKey: options.hmacKey }),
      });
      ck.close();
    }
    await makeFolder(dest, 'a destination folder');
    // A parity file left out is settled too: the progress of a successful pull ends at its total.
    if (skipped.length > 0 && doneBytes < total) progress(total - doneBytes);
    for (const name of skipped) {
      publishRemote({
        event: 'damaged',
        url: mainUrl,
        file: name,
        missing: missing.has(name),
        skipped: true,
      });
      await rm(join(staging, name), { force: true });
      // No stale parity of an earlier pull next to the new weights (overwrite).
      await rm(join(dest, name), { force: true });
    }
    const place = [...manifest.files]
      .filter((f) => !skipped.includes(f.name))
      .sort((a, b) => Number(a.name.endsWith('.json')) - Number(b.name.endsWith('.json')));
    for (const f of place) await rename(join(staging, f.name), join(dest, f.name));
    await fsyncDir(dest);
    await rm(staging, { recursive: true, force: true });
    if (block !== undefined) {
      // The outboard (`.tvob`, what lets a lazy load's first view hash only the 64 KiB pieces it covers)
      // is not part of the pushed set: an untrusted accelerator, rebuilt here from the pulled weights in
      // one hashing pass from the page cache, with the block cross-checked above (never fails the pull:
      // without it, whole chunks are hashed).
      await syncOutboard(checkpointFiles(join(dest, manifest.main)), block).catch(() => {});
    }
    const result: PullResult = {
      path: join(dest, manifest.main),
      layout: manifest.layout,
      files: manifest.files.map((f) => ({ name: f.name, size: f.size })),
      bytes: total,
      bytesDownloaded: store.metrics.bytesDown - down0,
      reusedChunks: reused,
      repairedChunks: repaired,
      skippedFiles: skipped,
    };
    publishRemote({
      event: 'pulled',
      url: mainUrl,
      bytes: total,
      received: result.bytesDownloaded,
      ms: performance.now() - t0,
    });
    return result;
  } catch (e) {
    // A full disk under destDir, a failing read: TV_IO (not a bare Node error).
    const err = typedIoError(e, destDir);
    publishRemote({
      event: 'failed',
      op: 'pull',
      url: mainUrl,
      code: err instanceof TensorVaultError ? err.code : 'TV_INTERNAL',
    });
    throw err;
  } finally {
    store.close();
  }
}
