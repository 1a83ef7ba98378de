/**
 * `tensorvault bench ecc [--k 10,16 --m 4,2 --shard-size 64k,1M --threads 1,2] [--json] [--svg FILE]`:
 * encode / reconstruct / verify throughput of the erasure codec over a matrix of configurations,
 * printed as a table and, with `--svg FILE`, drawn as an SVG bar chart.
 */
import { closeSync, mkdtempSync, openSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { type CpuInfo, cpuInfo, describeCpu } from '../ecc/cpu';
import { benchmarkErasure, type ErasureBenchResult, protect, verify } from '../ecc/erasure';
import { runTopic, topicsUsage } from './bench-topics';
import { ExitCode, formatBytes, note, parseArgs, parseSize, UsageError } from './common';
import { printable } from './text';

export const usage = `tensorvault bench ecc [options]

  Throughput of the erasure codec (GB/s of data, median of three rounds) for every combination of:

  --codes LIST       k+m codes, comma-separated (default 10+4,16+2,32+2)
  --shard-size LIST  shard (chunk) sizes (default 64k,1M)
  --threads LIST     thread counts (default 1 and all cores)
  --round-ms N       minimum length of one timed round (default 200)
  --kernel NAME      avx512-gfni, avx2, ssse3 or portable (default: the fastest this CPU runs)
  --file-size S      then protect and verify a page-cached temp file of S bytes with sidecar format v1
                     (medium, 16+2 GF(2^8) stripes) and v2 (medium, one wide GF(2^16) code), side by
                     side (default 256M; 0 skips)
  --svg FILE         also write a bar chart to FILE (none unless asked for)
  --no-svg           no chart (the default; still taken, for older scripts, and wins over --svg)
  --json             machine-readable output
  -q, --quiet        no closing note on stderr (the kernel in use, where the chart went)

  Columns: encode; reconstruct with 1 and with m data shards lost; verify (SHA-256 and BLAKE3 of the data: the
  two chunk digests a sidecar can use).

  The first line names the kernels in use and the CPU features found (with --kernel, also the kernel
  of the codec rows); the sidecar rows name theirs (--kernel does not apply to them: TV_CPU does). TV_CPU=portable|ssse3|avx2|avx512
  in the environment caps the ECC kernels' feature level (e.g. TV_CPU=avx2 on an AVX-512 machine measures
  what an AVX2-only CPU gets); SHA-256 and BLAKE3 are not capped.

${topicsUsage}`;

interface Row extends ErasureBenchResult {
  k: number;
  m: number;
  shardSize: number;
  threads: number;
}

function list<T>(text: string | undefined, fallback: T[], parse: (s: string) => T): T[] {
  if (text === undefined) return fallback;
  return text.split(',').map((s) => parse(s.trim()));
}

function parseCode(s: string): [number, number] {
  const m = /^(\d+)\+(\d+)$/.exec(s);
  if (!m) throw new UsageError(`--codes: not a k+m code: ${s}`);
  return [Number(m[1]), Number(m[2])];
}

const gb = (n: number): string => (n / 1e9).toFixed(2);

/** A grouped bar chart of the rows. */
export function svgChart(rows: readonly Row[]): string {
  const series: [keyof ErasureBenchResult, string, string][] = [
    ['encode', 'encode', '#4e79a7'],
    ['reconstructOne', 'reconstruct 1 lost', '#f28e2b'],
    ['reconstructAll', 'reconstruct m lost', '#e15759'],
    ['verify', 'verify (SHA-256)', '#76b7b2'],
    ['verifyBlake3', 'verify (BLAKE3)', '#59a14f'],
  ];
  const max = Math.max(1, ...rows.flatMap((r) => series.map(([k]) => Number(r[k]) / 1e9)));
  const barW = 14;
  const groupW = barW * series.length + 20;
  const h = 300;
  const left = 50;
  const width = left + rows.length * groupW + 20;
  const y = (v: number): number => 20 + h - (v / max) * h;
  const parts: string[] = [];
  parts.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${h + 120}" font-family="sans-serif" font-size="10">`,
  );
  parts.push(
    `<text x="${left}" y="12" font-size="12">tensorvault erasure codec throughput (GB/s of data)</text>`,
  );
  for (let t = 0; t <= 4; t++) {
    const v = (max * t) / 4;
    parts.push(
      `<line x1="${left}" x2="${width - 10}" y1="${y(v)}" y2="${y(v)}" stroke="#ddd"/><text x="4" y="${y(v) + 3}">${v.toFixed(1)}</text>`,
    );
  }
  rows.forEach((r, i) => {
    const x0 = left + i * groupW + 10;
    series.forEach(([key, , color], j) => {
      const v = Number(r[key]) / 1e9;
      parts.push(
        `<rect x="${x0 + j * barW}" y="${y(v)}" width="${barW - 2}" height="${y(0) - y(v)}" fill="${color}"><title>${v.toFixed(2)} GB/s</title></rect>`,
      );
    });
    parts.push(
      `<text x="${x0}" y="${h + 35}" transform="rotate(40 ${x0} ${h + 35})">${r.k}+${r.m} ${formatBytes(r.shardSize)} ×${r.threads}t</text>`,
    );
  });
  series.forEach(([, label, color], j) => {
    parts.push(
      `<rect x="${left + j * 130}" y="${h + 100}" width="10" height="10" fill="${color}"/><text x="${left + j * 130 + 14}" y="${h + 109}">${label}</text>`,
    );
  });
  parts.push('</svg>');
  return `${parts.join('\n')}\n`;
}

/** Run `bench <topic>`; only `ecc` exists here. */
export async function run(argv: readonly string[]): Promise<number> {
  const args = parseArgs(
    argv,
    ['json', 'no-svg'],
    ['codes', 'shard-size', 'threads', 'round-ms', 'svg', 'kernel', 'codecs', 'size', 'file-size'],
  );
  const topic = args.positionals[0];
  if (args.positionals.length !== 1 || !['ecc', 'rs', 'hash', 'safetensors'].includes(topic as string)) {
    throw new UsageError("bench takes one topic: 'ecc', 'rs', 'hash' or 'safetensors'");
  }
  if (topic !== 'ecc') return runTopic(topic as string, args);
  const codes = list<[number, number]>(
    args.values.get('codes'),
    [
      [10, 4],
      [16, 2],
      [32, 2],
    ],
    parseCode,
  );
  const sizes = list(args.values.get('shard-size'), [64 * 1024, 1024 * 1024], (s) =>
    parseSize(s, 'shard-size'),
  );
  const cores = availableParallelism();
  const threads = list(args.values.get('threads'), cores > 1 ? [1, cores] : [1], (s) => {
    if (!/^\d+$/.test(s) || Number(s) < 1) throw new UsageError(`--threads: not a thread count: ${s}`);
    return Number(s);
  });
  const roundText = args.values.get('round-ms') ?? '200';
  if (!/^\d+$/.test(roundText)) throw new UsageError(`--round-ms: not a number: ${roundText}`);
  const json = args.flags.has('json');
  const cpu = cpuInfo();
  if (cpu.capError !== null) {
    throw new UsageError(`TV_CPU=${cpu.capError} names no feature level (portable, ssse3, avx2, avx512)`);
  }
  const rows: Row[] = [];
  for (const [k, m] of codes) {
    for (const shardSize of sizes) {
      for (const t of threads) {
        const r = await benchmarkErasure(k, m, shardSize, t, Number(roundText), args.values.get('kernel'));
        const row: Row = { k, m, shardSize, threads: t, ...r };
        rows.push(row);
        if (!json && rows.length === 1) {
          // After the first measurement, so that a bad --kernel fails before any output.
          // With --kernel the codec rows run that kernel, not the one the CPU line names as in use.
          const chosen = args.values.has('kernel') ? `; codec rows: --kernel ${r.kernel}` : '';
          process.stdout.write(
            `${describeCpu(cpu)}${chosen}\n${'code'.padEnd(7)}${'shard'.padStart(9)}${'threads'.padStart(8)}${'encode'.padStart(9)}${'rec 1'.padStart(9)}${'rec m'.padStart(9)}${'sha256'.padStart(9)}${'blake3'.padStart(9)}  GB/s\n`,
          );
        }
        if (!json) {
          process.stdout.write(
            `${`${k}+${m}`.padEnd(7)}${formatBytes(shardSize).padStart(9)}${String(t).padStart(8)}${gb(r.encode).padStart(9)}${gb(r.reconstructOne).padStart(9)}${gb(r.reconstructAll).padStart(9)}${gb(r.verify).padStart(9)}${gb(r.verifyBlake3).padStart(9)}\n`,
          );
        }
      }
    }
  }
  const fileSize = parseSize(args.values.get('file-size') ?? '256M', 'file-size');
  const files = fileSize > 0 ? await fileFormats(fileSize, json, cpu) : [];
  // A chart only when asked for, where asked (`--no-svg` is still accepted: it is now the default).
  const svg = args.flags.has('no-svg') ? undefined : args.values.get('svg');
  if (svg !== undefined) writeFileSync(svg, svgChart(rows));
  if (json)
    process.stdout.write(
      `${JSON.stringify({ kernel: rows[0]?.kernel, cpu, rows, files, svg: svg ?? null })}\n`,
    );
  else
    note(
      `kernel ${rows[0]?.kernel ?? '?'}${svg !== undefined ? `; chart written to ${printable(svg)}` : ''}`,
    );
  return ExitCode.OK;
}

/** One row of the file comparison: a sidecar format's protect and verify throughput (bytes/s). */
interface FileRow {
  formatVersion: number;
  /**
   * The kernel that ran: the process's (`erasureKernel` for v1, `wideEngine` for v2, capped by
   * `TV_CPU`), never `--kernel`, which chooses the codec rows' kernel only.
   */
  kernel: string;
  code: string;
  chunkSize: number;
  protect: number;
  verify: number;
}

/**
 * Protect and verify one page-cached temp file of `size` bytes with sidecar format v1 and v2 (both
 * `medium`), in the same run: what the formats cost beside each other (issue 18).
 */
async function fileFormats(size: number, json: boolean, cpu: CpuInfo): Promise<FileRow[]> {
  const dir = mkdtempSync(join(tmpdir(), 'tv-bench-ecc-'));
  const file = join(dir, 'data.bin');
  try {
    const block = Buffer.alloc(Math.min(size, 16 << 20));
    for (let i = 0; i + 4 <= block.length; i += 4) block.writeUInt32LE((i * 2654435761) >>> 0, i);
    const fd = openSync(file, 'w');
    for (let done = 0; done < size; ) {
      const n = Math.min(block.length, size - done);
      block.writeUInt32LE(done >>> 0, 0);
      writeSync(fd, block, 0, n);
      done += n;
    }
    closeSync(fd);
    const out: FileRow[] = [];
    if (!json) {
      process.stdout.write(
        `\nsidecar formats on a ${formatBytes(size)} file (medium, 12.5 %; the process's kernels: v1 ` +
          `${cpu.erasureKernel}, v2 ${cpu.wideEngine}; --kernel does not apply here, TV_CPU caps them)\n`,
      );
    }
    for (const format of ['v1', 'v2'] as const) {
      let t0 = performance.now();
      const p = await protect(file, { level: 'medium', format });
      const tp = (performance.now() - t0) / 1000;
      t0 = performance.now();
      await verify(file);
      const tv = (performance.now() - t0) / 1000;
      const l = p.layout;
      const row: FileRow = {
        formatVersion: l.formatVersion,
        kernel: l.formatVersion === 1 ? cpu.erasureKernel : cpu.wideEngine,
        code: `${l.k}+${l.m}${l.formatVersion === 1 ? ` ×${l.stripes}` : ''}`,
        chunkSize: l.chunkSize,
        protect: size / tp,
        verify: size / tv,
      };
      out.push(row);
      if (!json) {
        process.stdout.write(
          `  v${row.formatVersion} ${row.code.padEnd(12)} ${formatBytes(row.chunkSize).padStart(10)} chunks  protect ${gb(row.protect).padStart(6)}  verify ${gb(row.verify).padStart(6)}  GB/s\n`,
        );
      }
    }
    return out;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
