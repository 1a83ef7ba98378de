/**
 * gzip compression in the native core (libdeflate), off the JS thread: {@link gzipMembers} writes a
 * multi-member `.gz` that `gunzip`, GNU tar, Python's `gzip` and Node's `zlib.gunzip` read as one
 * stream. Backups use the same compressor.
 */
import { invalidArgument } from './errors';
import { type JobOptions, runJob } from './job';
import { native } from './native';
import { bytesOf, describeValue, optionsObject } from './validate';

/** Options of {@link gzipMembers}. */
export interface GzipMembersOptions extends JobOptions {
  /**
   * gzip level 1 (fastest) to 9 (smallest), default 6. libdeflate's level of the same number is used;
   * its levels 1–9 are designed as counterparts of zlib's. On event-log JSON its ratio at 6 and 9 beats
   * zlib's at the same level; on other data it can be a few per cent worse. It is faster
   * than zlib.
   */
  level?: number;
  /**
   * Input bytes per gzip member, 64 KiB to 1 GiB (default 1 MiB). Each member restarts the 32 KiB
   * deflate window, so very small members cost a little ratio.
   */
  memberSize?: number;
  /** Threads compressing members in parallel (default 1: one libuv pool thread). */
  threads?: number;
}

/**
 * Compress `data` into consecutive gzip members of `memberSize` input bytes (the last may be shorter;
 * empty input gives one empty member), on the libuv pool. Bad `level`, `memberSize` or `threads` reject
 * with `TV_INVALID_ARGUMENT` (`context.argument` names it); `signal` stops the work between members.
 */
export async function gzipMembers(data: Uint8Array, options: GzipMembersOptions = {}): Promise<Buffer> {
  if (!ArrayBuffer.isView(data)) throw invalidArgument('data', 'data must be a Buffer or TypedArray');
  optionsObject(options);
  const bytes = bytesOf(data, 'data');
  const level = options.level ?? 6;
  if (typeof level !== 'number') throw invalidArgument('level', 'level must be a number from 1 to 9');
  const { memberSize, threads } = options;
  if (memberSize !== undefined && typeof memberSize !== 'number') {
    throw invalidArgument('memberSize', 'memberSize must be a number');
  }
  if (threads !== undefined && (!Number.isInteger(threads) || threads < 1 || threads > 1024)) {
    throw invalidArgument('threads', 'threads must be an integer from 1 to 1024', {
      actual: describeValue(threads),
    });
  }
  return runJob('gzipMembers', options, (control) =>
    native().gzipMembers(bytes, level, memberSize, threads, control),
  );
}
