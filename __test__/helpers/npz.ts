import { crc32, deflateRawSync } from 'node:zlib';

/** A `.npy` file (format `major`.0) of `data` as `descr` with `shape`, its header padded as NumPy pads it. */
export function npy(descr: string, shape: number[], data: Uint8Array, major = 1): Buffer {
  let h = `{'descr': '${descr}', 'fortran_order': False, 'shape': (${shape.join(', ')}${shape.length === 1 ? ',' : ''}), }`;
  const pre = major === 1 ? 10 : 12;
  while ((pre + h.length + 1) % 64 !== 0) h += ' ';
  h += '\n';
  const b = Buffer.alloc(pre + h.length + data.length);
  b.write('\x93NUMPY', 0, 'latin1');
  b[6] = major;
  if (major === 1) b.writeUInt16LE(h.length, 8);
  else b.writeUInt32LE(h.length, 8);
  b.write(h, pre, 'latin1');
  Buffer.from(data).copy(b, pre + h.length);
  return b;
}

/** A zip archive of `members` (stored, or deflated when `deflate` says so), as NumPy's `savez` writes one. */
export function zip(members: [name: string, data: Buffer, deflate?: boolean][]): Buffer {
  const parts: Buffer[] = [];
  const dir: Buffer[] = [];
  let off = 0;
  for (const [name, data, deflate] of members) {
    const n = Buffer.from(name);
    const body = deflate ? deflateRawSync(data) : data;
    const crc = crc32(data) >>> 0;
    // The local header and the central directory entry share their fields from "version needed";
    // the central entry has "version made by" before it, so they sit 2 bytes further on.
    const shared = (b: Buffer, at: number): Buffer => {
      b.writeUInt16LE(20, at); // version needed
      b.writeUInt16LE(deflate ? 8 : 0, at + 4);
      b.writeUInt32LE(crc, at + 10);
      b.writeUInt32LE(body.length, at + 14);
      b.writeUInt32LE(data.length, at + 18);
      b.writeUInt16LE(n.length, at + 22);
      return b;
    };
    const local = shared(Buffer.alloc(30), 4);
    local.writeUInt32LE(0x04034b50, 0);
    const central = shared(Buffer.alloc(46), 6);
    central.writeUInt32LE(0x02014b50, 0);
    central.writeUInt16LE(20, 4); // version made by
    central.writeUInt32LE(off, 42);
    parts.push(local, n, body);
    dir.push(central, n);
    off += 30 + n.length + body.length;
  }
  const cd = Buffer.concat(dir);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(members.length, 8);
  end.writeUInt16LE(members.length, 10);
  end.writeUInt32LE(cd.length, 12);
  end.writeUInt32LE(off, 16);
  return Buffer.concat([...parts, cd, end]);
}
