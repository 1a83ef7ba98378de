/**
 * A small ustar writer and a strict, budgeted tar reader for backup archives.
 *
 * The reader parses untrusted bytes. It accepts only regular files and folders (ustar, GNU and pax
 * `x` headers, whose `path`/`size` records are honoured and other records ignored), verifies every
 * header checksum, rejects links, devices, FIFOs, GNU long-name/sparse entries, global pax headers,
 * unsafe names (absolute, `..`, `.`, empty components, backslashes, NUL, control characters), names
 * deeper than `maxDepth`, more than `maxEntries` entries, entries larger than `maxEntryBytes`, and
 * archives without the end-of-archive marker or with non-zero bytes after it.
 */
import { ErrorCode, TensorVaultError } from '../errors';

const BLOCK = 512;
const ZERO_BLOCK = Buffer.alloc(BLOCK);

/** A header the writer emits. */
export interface TarEntryHeader {
  /** Relative POSIX path (a folder ends with `/`). */
  name: string;
  /** Data length in bytes (0 for folders). */
  size: number;
  /** Modification time, seconds since the epoch. */
  mtime: number;
  /** Permission bits. */
  mode: number;
  /** `file` or `dir`. */
  type: 'file' | 'dir';
}

function octal(buf: Buffer, value: number, offset: number, length: number): void {
  const text = value.toString(8).padStart(length - 1, '0');
  if (text.length > length - 1)
    throw new RangeError(`value ${value} does not fit a ${length}-byte tar field`);
  buf.write(text, offset, length - 1, 'ascii');
  buf[offset + length - 1] = 0;
}

/** The 512-byte ustar header block of `h`. Names up to 100 bytes, or 255 with the ustar prefix. */
export function tarHeader(h: TarEntryHeader): Buffer {
  const b = Buffer.alloc(BLOCK);
  let name = h.name;
  let prefix = '';
  if (Buffer.byteLength(name) > 100) {
    const cut = name.lastIndexOf('/', name.length - 2);
    prefix = cut > 0 ? name.slice(0, cut) : '';
    name = cut > 0 ? name.slice(cut + 1) : name;
    if (Buffer.byteLength(name) > 100 || Buffer.byteLength(prefix) > 155) {
      throw new RangeError(`tar name too long: ${h.name}`);
    }
  }
  b.write(name, 0, 100, 'utf8');
  octal(b, h.mode, 100, 8);
  octal(b, 0, 108, 8);
  octal(b, 0, 116, 8);
  octal(b, h.size, 124, 12);
  octal(b, Math.max(0, Math.floor(h.mtime)), 136, 12);
  b.fill(0x20, 148, 156);
  b[156] = h.type === 'dir' ? 0x35 : 0x30;
  b.write('ustar\u000000', 257, 8, 'latin1');
  b.write('root', 265, 32, 'ascii');
  b.write('root', 297, 32, 'ascii');
  b.write(prefix, 345, 155, 'utf8');
  let sum = 0;
  for (const byte of b) sum += byte;
  b.write(`${sum.toString(8).padStart(6, '0')}\u0000 `, 148, 8, 'latin1');
  return b;
}

/** Zero padding after `size` bytes of data. */
export function tarPadding(size: number): Buffer {
  const rem = size % BLOCK;
  return rem === 0 ? Buffer.alloc(0) : Buffer.alloc(BLOCK - rem);
}

/** The end-of-archive marker (two zero blocks). */
export function tarEnd(): Buffer {
  return Buffer.alloc(2 * BLOCK);
}

/** Budgets and rules of {@link TarReader}. */
export interface TarReaderLimits {
  /** Most entries (headers of files and folders, pax headers excluded). */
  maxEntries: number;
  /** Largest single entry. */
  maxEntryBytes: number;
  /** Most path components in a name. */
  maxDepth: number;
  /** Largest pax extended header. */
  maxPaxBytes?: number;
}

/** An entry the reader hands to its consumer. */
export interface TarEntry {
  /** Normalised relative path (no trailing slash). */
  name: string;
  type: 'file' | 'dir';
  size: number;
  mode: number;
}

/** Receives the entries of an archive. `onData` gets the file's bytes in order. */
export interface TarSink {
  onEntry(entry: TarEntry): Promise<void> | void;
  onData(chunk: Buffer): Promise<void> | void;
  onEntryEnd(): Promise<void> | void;
}

function unsafe(message: string, context: Record<string, string | number | null> = {}): TensorVaultError {
  return new TensorVaultError(ErrorCode.UNSAFE_ARCHIVE, message, context);
}

/** Validate an archive member name; returns its normalised form or throws `TV_UNSAFE_ARCHIVE`. */
export function safeName(raw: string, maxDepth: number): string {
  let name = raw;
  if (name.startsWith('./')) name = name.slice(2);
  if (name.endsWith('/')) name = name.slice(0, -1);
  if (name.length === 0) throw unsafe('archive entry with an empty name', { name: raw });
  if (name.startsWith('/')) throw unsafe(`archive entry with an absolute path: ${raw}`, { name: raw });
  // biome-ignore lint/suspicious/noControlCharactersInRegex: rejecting control characters is the point
  if (/[\\\u0000-\u001f\u007f]/.test(name))
    throw unsafe(`archive entry name has forbidden characters`, { name: raw });
  const parts = name.split('/');
  for (const p of parts) {
    if (p === '..') throw unsafe(`archive entry escapes the destination (..): ${raw}`, { name: raw });
    if (p === '.' || p === '') throw unsafe(`archive entry name is not normalised: ${raw}`, { name: raw });
  }
  if (parts.length > maxDepth) {
    throw new TensorVaultError(ErrorCode.BUDGET_EXCEEDED, `archive entry nests too deep: ${raw}`, {
      name: raw,
      depth: parts.length,
      limit: maxDepth,
    });
  }
  return name;
}

function cstring(b: Buffer, offset: number, length: number): string {
  const field = b.subarray(offset, offset + length);
  const nul = field.indexOf(0);
  return field.subarray(0, nul === -1 ? length : nul).toString('utf8');
}

function parseOctal(b: Buffer, offset: number, length: number, what: string): number {
  const field = b.subarray(offset, offset + length);
  if (((field[0] ?? 0) & 0x80) !== 0) throw unsafe(`tar ${what} uses base-256 encoding (unsupported)`);
  const text = field
    .toString('latin1')
    .replace(/[\0 ]+$/, '')
    .replace(/^ +/, '');
  if (text === '') return 0;
  if (!/^[0-7]+$/.test(text)) throw unsafe(`tar header field ${what} is not octal`, { field: what });
  const v = Number.parseInt(text, 8);
  if (!Number.isSafeInteger(v)) throw unsafe(`tar header field ${what} is too large`, { field: what });
  return v;
}

/** Parse pax extended header records (`"%d %s=%s\n"`). */
export function parsePax(data: Buffer): Map<string, string> {
  const out = new Map<string, string>();
  let at = 0;
  while (at < data.length) {
    const sp = data.indexOf(0x20, at);
    if (sp < 0 || sp - at > 20) throw unsafe('malformed pax header record');
    const lenText = data.subarray(at, sp).toString('latin1');
    if (!/^[1-9]\d*$/.test(lenText)) throw unsafe('malformed pax record length');
    const len = Number(lenText);
    const end = at + len;
    if (end > data.length || data[end - 1] !== 0x0a) throw unsafe('pax record overruns its header');
    const rec = data.subarray(sp + 1, end - 1).toString('utf8');
    const eq = rec.indexOf('=');
    if (eq <= 0) throw unsafe('pax record has no key');
    out.set(rec.slice(0, eq), rec.slice(eq + 1));
    at = end;
  }
  return out;
}

/**
 * Incremental strict tar parser: `push()` chunks of the (decompressed) archive, then `end()`.
 * Entries are reported to the sink as they stream; nothing is buffered beyond one header.
 */
export class TarReader {
  readonly #sink: TarSink;
  readonly #limits: Required<TarReaderLimits>;
  #pending: Buffer = Buffer.alloc(0);
  #state: 'header' | 'data' | 'pad' | 'pax' | 'end' = 'header';
  #remaining = 0;
  #padLeft = 0;
  #pax: Buffer[] = [];
  #paxNext: Map<string, string> | undefined;
  #entries = 0;
  #zeroBlocks = 0;

  constructor(sink: TarSink, limits: TarReaderLimits) {
    this.#sink = sink;
    this.#limits = { maxPaxBytes: 64 * 1024, ...limits };
  }

  /** Feed the next chunk of archive bytes. */
  async push(chunk: Buffer): Promise<void> {
    let buf = this.#pending.length > 0 ? Buffer.concat([this.#pending, chunk]) : chunk;
    this.#pending = Buffer.alloc(0);
    while (buf.length > 0) {
      if (this.#state === 'data' || this.#state === 'pax') {
        const n = Math.min(this.#remaining, buf.length);
        const part = buf.subarray(0, n);
        buf = buf.subarray(n);
        this.#remaining -= n;
        if (this.#state === 'data') await this.#sink.onData(part);
        else this.#pax.push(Buffer.from(part));
        if (this.#remaining === 0) {
          if (this.#state === 'data') await this.#sink.onEntryEnd();
          else this.#paxNext = parsePax(Buffer.concat(this.#pax));
          this.#state = this.#padLeft > 0 ? 'pad' : 'header';
        }
        continue;
      }
      if (this.#state === 'pad') {
        const n = Math.min(this.#padLeft, buf.length);
        this.#padLeft -= n;
        buf = buf.subarray(n);
        if (this.#padLeft === 0) this.#state = 'header';
        continue;
      }
      if (buf.length < BLOCK) {
        this.#pending = Buffer.from(buf);
        return;
      }
      const block = buf.subarray(0, BLOCK);
      buf = buf.subarray(BLOCK);
      if (this.#state === 'end') {
        if (!block.equals(ZERO_BLOCK)) throw unsafe('data after the end-of-archive marker');
        continue;
      }
      await this.#header(block);
    }
  }

  async #header(block: Buffer): Promise<void> {
    if (block.equals(ZERO_BLOCK)) {
      this.#zeroBlocks++;
      if (this.#zeroBlocks >= 2) this.#state = 'end';
      return;
    }
    if (this.#zeroBlocks > 0) throw unsafe('a lone zero block inside the archive');
    let sum = 0;
    for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : (block[i] as number);
    const stored = parseOctal(block, 148, 8, 'checksum');
    if (stored !== sum) throw unsafe('tar header checksum mismatch (not a tar archive, or damaged)');
    const magic = block.subarray(257, 263).toString('latin1');
    if (magic !== 'ustar\u0000' && magic !== 'ustar ') throw unsafe('not a ustar/GNU tar header');
    const type = String.fromCharCode(block[156] as number);
    let size = parseOctal(block, 124, 12, 'size');
    const mode = parseOctal(block, 100, 8, 'mode');
    if (type === 'x') {
      if (this.#paxNext !== undefined) throw unsafe('two pax headers in a row');
      if (size > this.#limits.maxPaxBytes) {
        throw new TensorVaultError(ErrorCode.BUDGET_EXCEEDED, 'pax header too large', { size });
      }
      this.#pax = [];
      this.#remaining = size;
      this.#padLeft = (BLOCK - (size % BLOCK)) % BLOCK;
      this.#state = size > 0 ? 'pax' : 'header';
      if (size === 0) this.#paxNext = new Map();
      return;
    }
    const kinds: Record<string, string> = {
      '1': 'hard link',
      '2': 'symbolic link',
      '3': 'character device',
      '4': 'block device',
      '6': 'FIFO',
      '7': 'contiguous file',
      g: 'global pax header',
      L: 'GNU long name',
      K: 'GNU long link name',
      S: 'GNU sparse file',
      V: 'GNU volume header',
    };
    if (type !== '0' && type !== '\u0000' && type !== '5') {
      throw unsafe(
        `archive holds a ${kinds[type] ?? `type '${type}' entry`}, which a restore never accepts`,
        {
          type,
          name: cstring(block, 0, 100),
        },
      );
    }
    let name = cstring(block, 0, 100);
    const prefix = magic === 'ustar\u0000' ? cstring(block, 345, 155) : '';
    if (prefix !== '') name = `${prefix}/${name}`;
    const pax = this.#paxNext;
    this.#paxNext = undefined;
    if (pax !== undefined) {
      if (pax.has('linkpath')) throw unsafe('pax header carries a link target', { name });
      const p = pax.get('path');
      if (p !== undefined) name = p;
      const s = pax.get('size');
      if (s !== undefined) {
        if (!/^\d+$/.test(s) || !Number.isSafeInteger(Number(s)))
          throw unsafe('pax size is malformed', { name });
        size = Number(s);
      }
    }
    const clean = safeName(name, this.#limits.maxDepth);
    const isDir = type === '5';
    if (isDir && size !== 0) throw unsafe('folder entry with data', { name: clean });
    if (++this.#entries > this.#limits.maxEntries) {
      throw new TensorVaultError(ErrorCode.BUDGET_EXCEEDED, 'archive holds too many entries', {
        limit: this.#limits.maxEntries,
      });
    }
    if (size > this.#limits.maxEntryBytes) {
      throw new TensorVaultError(ErrorCode.BUDGET_EXCEEDED, `archive entry too large: ${clean}`, {
        name: clean,
        size,
        limit: this.#limits.maxEntryBytes,
      });
    }
    await this.#sink.onEntry({ name: clean, type: isDir ? 'dir' : 'file', size, mode });
    this.#remaining = size;
    this.#padLeft = (BLOCK - (size % BLOCK)) % BLOCK;
    if (size > 0) this.#state = 'data';
    else {
      await this.#sink.onEntryEnd();
      this.#state = this.#padLeft > 0 ? 'pad' : 'header';
    }
  }

  /** Call after the last chunk: throws unless the archive ended cleanly. */
  end(): void {
    if (this.#paxNext !== undefined) throw unsafe('pax header without an entry');
    if (this.#state !== 'end') {
      throw unsafe(
        this.#state === 'header' && this.#pending.length === 0 && this.#zeroBlocks === 0
          ? 'archive has no end-of-archive marker (truncated?)'
          : 'archive is truncated',
      );
    }
    if (this.#pending.length > 0 && !this.#pending.equals(Buffer.alloc(this.#pending.length))) {
      throw unsafe('data after the end-of-archive marker');
    }
  }
}
