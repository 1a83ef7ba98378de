// The view/GC stress of __test__/views-gc.test.ts, run in a child process with --expose-gc so that a
// runtime abort (issue 11: Node 24+ killed the process from a finalizer) fails the test instead of
// the test runner. Prints one JSON line of results; every check that fails throws (exit 1).
//   node --expose-gc views-gc-child.cjs DIST_INDEX TEMP_DIR
const assert = require('node:assert/strict');
const { writeFileSync } = require('node:fs');
const { join } = require('node:path');

const tv = require(process.argv[2]);
const dir = process.argv[3];
const gc = async () => {
  globalThis.gc();
  await new Promise((r) => setImmediate(r)); // let finalizers scheduled by the collection run
};
/** Deterministic bytes for tensor `i`. */
const pattern = (i, n) => {
  const b = new Uint8Array(n);
  for (let j = 0; j < n; j++) b[j] = (i * 31 + j * 7) & 0xff;
  return b;
};
/** A raw safetensors file: the header padded to 8 bytes, the tensors packed with no padding (so a
 * tensor after an odd-sized one is misaligned). */
function rawFile(path, entries) {
  const header = {};
  const parts = [];
  let at = 0;
  for (const [name, dtype, bytes] of entries) {
    header[name] = {
      dtype,
      shape: [bytes.length / { U8: 1, F32: 4, F64: 8, I16: 2 }[dtype]],
      data_offsets: [at, at + bytes.length],
    };
    parts.push(bytes);
    at += bytes.length;
  }
  let text = JSON.stringify(header);
  text += ' '.repeat((8 - (text.length % 8)) % 8);
  const h = Buffer.from(text);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(h.length));
  writeFileSync(path, Buffer.concat([len, h, ...parts]));
  return path;
}

(async () => {
  const out = {};

  // 1. The reproduction from issue 11, as a new user ran it.
  {
    const p = join(dir, 'repro.safetensors');
    const t = {};
    for (let i = 0; i < 8; i++) t[`w${i}`] = new Float32Array(262144).fill(i);
    await tv.saveSafetensors(p, t);
    let seen = 0;
    for (let r = 0; r < 200; r++) {
      const f = await tv.openSafetensors(p);
      for (const n of f.names) {
        assert.equal(f.tensor(n).data[5], Number(n.slice(1)));
        seen++;
      }
      f.close();
      if (r % 20 === 0) await gc();
    }
    out.repro = seen;
  }

  // 2. Thousands of views of aligned tensors (several dtypes), collections in between; some views
  //    kept across close() and the collections, then read back.
  {
    const p = join(dir, 'aligned.safetensors');
    const t = {};
    const sizes = {};
    for (let i = 0; i < 48; i++) {
      const bytes = pattern(i, 4096 * (1 + (i % 5)) * 8);
      const Ctor = [Float32Array, Float64Array, Int32Array, BigInt64Array, Uint8Array, Int16Array][i % 6];
      t[`t${String(i).padStart(2, '0')}`] = new Ctor(bytes.buffer);
      sizes[`t${String(i).padStart(2, '0')}`] = bytes;
    }
    await tv.saveSafetensors(p, t);
    const kept = [];
    let views = 0;
    for (let round = 0; round < 10; round++) {
      const f = await tv.openSafetensors(p);
      for (let k = 0; k < 500; k++) {
        const name = f.names[(k * 7 + round) % f.names.length];
        const v = f.tensor(name);
        assert.equal(v.copied, false);
        assert.equal(v.bytes[v.bytes.length - 1], sizes[name][sizes[name].length - 1]);
        if (k % 50 === 0) kept.push([name, v.bytes]);
        views++;
      }
      f.close();
      if (round % 2 === 1) await gc();
    }
    for (let i = 0; i < 3; i++) await gc();
    for (const [name, bytes] of kept)
      assert.equal(Buffer.compare(Buffer.from(bytes), Buffer.from(sizes[name])), 0);
    out.alignedViews = views;
    out.keptAfterClose = kept.length;
  }

  // 3. Misaligned tensors (packed after a 3-byte tensor): F32/F64/I16 views are copies, U8 views are windows.
  {
    const entries = [
      ['a', 'U8', pattern(1, 3)],
      ['b', 'F32', pattern(2, 4000)],
      ['c', 'F64', pattern(3, 8000)],
      ['d', 'I16', pattern(4, 2002)],
      ['e', 'U8', pattern(5, 777)],
    ];
    const p = rawFile(join(dir, 'misaligned.safetensors'), entries);
    let copies = 0;
    let windows = 0;
    for (let round = 0; round < 8; round++) {
      const f = await tv.openSafetensors(p);
      for (let k = 0; k < 250; k++) {
        const [name, dtype, bytes] = entries[k % entries.length];
        const v = f.tensor(name);
        const aligned = v.fileOffset % { U8: 1, F32: 4, F64: 8, I16: 2 }[dtype] === 0;
        assert.equal(v.copied, !aligned);
        if (v.copied) copies++;
        else windows++;
        assert.equal(Buffer.compare(Buffer.from(v.bytes), Buffer.from(bytes)), 0);
      }
      f.close();
      await gc();
    }
    out.misalignedCopies = copies;
    out.misalignedWindows = windows;
  }

  // 4. A file larger than one region: overlapping regions and a tensor larger than half a region
  //    (a region of its own); every byte read back through views and chunks.
  {
    const entries = [];
    for (let i = 0; i < 40; i++)
      entries.push([`r${String(i).padStart(2, '0')}`, 'F32', pattern(i, 4096 * (1 + ((i * 5) % 17)))]);
    entries.push(['big', 'F32', pattern(99, 100 * 1024)]);
    entries.push(['z', 'F32', pattern(100, 4096)]);
    const p = rawFile(join(dir, 'regions.safetensors'), entries);
    const regionBytes = 128 * 1024;
    const buffers = new Set();
    for (let round = 0; round < 3; round++) {
      const f = await tv.openSafetensors(p, { regionBytes });
      for (const [name, , bytes] of entries) {
        const v = f.tensor(name);
        assert.ok(v.bytes.buffer.byteLength <= regionBytes, `${name}: region too large`);
        assert.equal(Buffer.compare(Buffer.from(v.bytes), Buffer.from(bytes)), 0, name);
        buffers.add(v.bytes.buffer);
        let joined = Buffer.alloc(0);
        for (const c of f.chunks(name, { chunkBytes: 10_000 })) joined = Buffer.concat([joined, c]);
        assert.equal(Buffer.compare(joined, Buffer.from(bytes)), 0, `${name} chunks`);
      }
      f.close();
      await gc();
    }
    out.regionFileBytes = entries.reduce((n, e) => n + e[2].length, 0);
    out.regionBuffersSeen = buffers.size;
  }

  for (let i = 0; i < 3; i++) await gc();
  process.stdout.write(JSON.stringify(out));
})().catch((err) => {
  process.stderr.write(`${err?.stack ?? err}\n`);
  process.exit(1);
});
