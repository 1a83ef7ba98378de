/**
 * `tensorvault checkpoint inspect|verify|repair|convert|ls`: checkpoints in the tensorvault and PyFolds
 * layouts (`docs/formats/checkpoint.md`). Exit codes from the shared table (`common.ts`): 0 intact
 * (or repaired), 1 damage found but repairable (verify), 2 damage not repairable or verification
 * failed, 3 bad command line, 5 invalid checkpoint, 6 I/O error, 7 internal error, 130 interrupted.
 * The HMAC key is read from `PYFOLDS_CHECKPOINT_HMAC_KEY`.
 */
import { statSync } from 'node:fs';
import { type CheckpointLayout, LAYOUTS } from '../checkpoint/layout';
import { type CheckpointReport, loadCheckpoint, repairCheckpoint } from '../checkpoint/load';
import { CheckpointManager } from '../checkpoint/manager';
import { levelInSidecar } from '../checkpoint/parity';
import { parseCheckpoint } from '../checkpoint/parse';
import { saveCheckpoint } from '../checkpoint/save';
import { verifyCheckpoint } from '../checkpoint/verify';
import { eccPlan } from '../checkpoint/write';
import { verify as eccVerify } from '../ecc/erasure';
import { TensorVaultError } from '../errors';
import { assertFolderSync } from '../io/index';
import type { Progress } from '../job';
import { ExitCode, formatBytes, interruptSignal, output, parseArgs, progressBar, UsageError } from './common';
import { printable, printableJson } from './text';

const usage = `tensorvault checkpoint <command> [options]

  inspect <file>            layout, version, metadata, tensors and integrity of a checkpoint
  verify <file>             check every byte (read-only): exit 0 intact, 1 repairable, 2 damaged
  repair <file>             repair from parity (.tvecc or rs(N) .ecc), replace atomically, re-verify
  convert <file> --layout L [--out FILE] [--ecc LEVEL]
                            rewrite in another layout (tensorvault, pyfolds, pyfolds-ecc), verified first;
                            without --ecc the source's parity level is kept (refused where the target
                            cannot hold it: pyfolds has no parity; --ecc off drops it). LEVEL:
                            tensorvault off|low|medium|high, pyfolds-ecc off|low|med|high|rs(N)
  ls <run folder>           the checkpoints of a CheckpointManager run (step, size, metrics; a sidecar
                            that fails its seal is marked damaged: its metrics are not trusted)

  <file> is the weights file (NAME.safetensors). --json prints machine-readable output.
  The HMAC key, when the checkpoint is keyed, comes from PYFOLDS_CHECKPOINT_HMAC_KEY.

Exit codes: 0 intact (or repaired), 1 damage found but repairable (verify), 2 damage not
            repairable or verification failed, 3 bad command line, 5 invalid checkpoint (malformed
            sidecar, unsafe manifest), 6 I/O error, 7 internal error, 130 interrupted.
`;

function out(json: boolean, value: unknown, text: string): void {
  // Reports carry tensor names and metadata from the file: JSON keeps them escaped (text.ts).
  process.stdout.write(json ? `${printableJson(JSON.stringify(value))}\n` : text);
}

function describeReport(r: CheckpointReport): string {
  let s = `${r.path}: ${r.status.toUpperCase()} (${r.layout}, hash ${r.hashKind}${r.keyed ? ', keyed' : ''}, seal ${r.seal})\n`;
  if (r.damagedChunks.length > 0)
    s += `  damaged ${r.layout === 'tensorvault' ? 'chunks' : 'blocks'}: ${r.damagedChunks.slice(0, 20).join(', ')}${r.damagedChunks.length > 20 ? ', …' : ''}\n`;
  if (r.unreadableChunks.length > 0) {
    s += `  UNREADABLE chunks (I/O error): ${r.unreadableChunks.slice(0, 20).join(', ')}${r.unreadableChunks.length > 20 ? ', …' : ''}\n`;
    s +=
      '  the medium returned read errors: parity rebuilds these, but check the disk (SMART, dmesg) and copy the run off it\n';
  }
  if (r.damagedTensors.length > 0) s += `  damaged tensors: ${r.damagedTensors.map(printable).join(', ')}\n`;
  if (r.hashMismatch === 'damage-or-wrong-key')
    s +=
      '  the keyed integrity hash does not match and this layout keeps no other record of the bytes: damage and a wrong HMAC key (PYFOLDS_CHECKPOINT_HMAC_KEY) cannot be told apart\n';
  if (r.parity !== undefined && r.parity !== 'intact') {
    const slots = r.damagedParity ?? [];
    s += `  .tvecc parity: ${r.parity}${slots.length > 0 ? ` (damaged parity slots: ${slots.slice(0, 20).join(', ')}${slots.length > 20 ? ', …' : ''})` : ''}\n`;
    if (r.parityRebuild === true)
      s +=
        r.parity === 'repaired'
          ? '  the sidecar was missing, unreadable or not that of these weights: written anew from the verified weights at its recorded level\n'
          : '  the sidecar is missing, unreadable or not that of these weights: a repair writes it anew from the verified weights at its recorded level\n';
    if (r.parity === 'unusable')
      s +=
        '  the parity is missing, unreadable or not that of these weights: later damage cannot be repaired (runbook: docs/runbooks/checkpoint-corruption.md)\n';
  }
  if (r.repairedChunks.length > 0) s += `  repaired: ${r.repairedChunks.length}\n`;
  return s;
}

type Level = 'low' | 'medium' | 'high';

/** The `.tvecc` presets, data + parity chunks per stripe (`docs/formats/ecc-sidecar.md`). */
const PRESETS: readonly [Level, number, number][] = [
  ['high', 10, 4],
  ['medium', 16, 2],
  ['low', 32, 2],
];
/** PyFolds's rs(N) levels (`eccFromProtection`) and tensorvault's of the same name. */
const RS_LEVELS: Readonly<Record<number, Level>> = { 16: 'low', 32: 'medium', 64: 'high' };
const PYFOLDS_LEVEL: Readonly<Record<Level, string>> = { low: 'low', medium: 'med', high: 'high' };

/**
 * The parity a checkpoint has, as a level: its `.tvecc` sidecar's `k` data and `m` parity chunks
 * (each preset has `m = ⌈k · mp / kp⌉`; where two presets give the same `m`, the stronger is taken, so
 * a conversion never lowers the protection), or its rs(N) stream (rs(16), rs(32), rs(64): PyFolds's
 * low, med, high). A level the save recorded in the `.meta.json` (`tensorvault.ecc.level`) is taken as
 * it is, custom parameters included (`custom`). `level` is undefined for custom parameters.
 */
async function parityOf(
  file: string,
  job: { signal?: AbortSignal; onProgress?: (p: Progress) => void },
): Promise<{
  source: string;
  level?: Level;
  rs?: number;
  custom?: { k: number; m: number; chunkSize: number };
}> {
  const p = parseCheckpoint(file);
  // The level the save recorded (tensorvault layout, saves since it is recorded) decides; custom
  // parameters are kept as they are.
  const recorded = p.tvecc !== undefined ? levelInSidecar(p) : undefined;
  if (typeof recorded === 'string') return { source: `tvecc ${recorded} (recorded)`, level: recorded };
  if (recorded !== undefined) {
    const { k, m, chunk_size: chunkSize } = recorded;
    return { source: `tvecc ${k}+${m} × ${chunkSize} B (recorded)`, custom: { k, m, chunkSize } };
  }
  if (p.rs !== undefined) {
    const n = p.rs.codec.parity;
    const level = RS_LEVELS[n];
    return { source: `rs(${n})`, rs: n, ...(level !== undefined ? { level } : {}) };
  }
  if (p.tvecc === undefined) return { source: 'none' };
  let k: number;
  let m: number;
  try {
    ({ k, m } = (await eccVerify(p.weights, { sidecar: p.tvecc, ...job })).layout);
  } catch (err) {
    if (err instanceof TensorVaultError && err.code === 'TV_ABORTED') throw err;
    throw new UsageError(
      `the parity of ${file} (${p.tvecc}) cannot be read (${(err as Error).message}): repair it first, or pass --ecc LEVEL (or --ecc off to drop it)`,
    );
  }
  const level = PRESETS.find(([, kp, mp]) => m === Math.ceil((k * mp) / kp))?.[0];
  return {
    source: `tvecc ${k}+${m}${level !== undefined ? ` = ${level}` : ''}`,
    ...(level ? { level } : {}),
  };
}

/**
 * The `ecc` option that keeps the source's parity in the `target` layout. A parity the target cannot
 * hold (the pyfolds layout has none) or a custom one with no level is never dropped silently: a usage
 * error asks for `--ecc` (`--ecc off` to drop it).
 */
async function keptParity(
  file: string,
  target: CheckpointLayout,
  job: { signal?: AbortSignal; onProgress?: (p: Progress) => void },
): Promise<{ source: string; ecc?: string | { k: number; m: number; chunkSize: number } }> {
  const src = await parityOf(file, job);
  if (src.source === 'none') return src;
  if (target === 'pyfolds') {
    throw new UsageError(
      `${file} has parity (${src.source}) and the pyfolds layout has none: pass --ecc off to drop it, or convert to pyfolds-ecc or tensorvault`,
    );
  }
  if (target === 'pyfolds-ecc' && src.rs !== undefined) return { ...src, ecc: `rs(${src.rs})` };
  if (target === 'tensorvault' && src.custom !== undefined) return { source: src.source, ecc: src.custom };
  if (src.level === undefined) {
    throw new UsageError(
      `the parity of ${file} (${src.source}) is not one of the levels low, medium, high: pass --ecc LEVEL (or --ecc off to drop it)`,
    );
  }
  return { ...src, ecc: target === 'pyfolds-ecc' ? (PYFOLDS_LEVEL[src.level] as string) : src.level };
}

function oneFile(p: readonly string[], verb: string): string {
  if (p.length !== 1) throw new UsageError(`checkpoint ${verb} takes exactly one file`);
  return p[0] as string;
}

async function run(argv: readonly string[]): Promise<number> {
  const [verb, ...rest] = argv;
  if (verb === undefined || verb === '--help' || verb === '-h') {
    process.stdout.write(usage);
    return verb === undefined ? ExitCode.USAGE : ExitCode.OK;
  }
  // -h/--help throws HelpRequested (the usage is printed by main.ts); errors go to reportError.
  const args = parseArgs(rest, [], ['layout', 'out', 'ecc']);
  const json = output.json;
  const signal = interruptSignal();
  switch (verb) {
    case 'inspect': {
      const file = oneFile(args.positionals, verb);
      const c = await loadCheckpoint(file, { verify: 'none', signal });
      const infos = c.names.map((n) => c.info(n));
      c.close();
      const value = {
        path: c.path,
        layout: c.layout,
        version: c.version,
        metadata: c.metadata,
        report: c.report,
        tensors: infos,
      };
      // The version, metadata and names come from the file: control characters are escaped (text.ts).
      let text = `${printable(c.path)}: ${c.layout} checkpoint, version ${c.version === undefined ? '(none)' : printable(String(c.version))}, hash ${c.report.hashKind}, seal ${c.report.seal}\n`;
      text += `  metadata: ${printableJson(JSON.stringify(c.metadata))}\n`;
      for (const t of infos)
        text += `  ${printable(t.name).padEnd(30)} ${t.dtype.padEnd(8)} [${(t.exactShape ?? t.shape).join(', ')}] ${formatBytes(t.byteLength)}\n`;
      out(json, value, text);
      return ExitCode.OK;
    }
    case 'verify': {
      const file = oneFile(args.positionals, verb);
      const bar = progressBar('verifying');
      const r = await verifyCheckpoint(file, {
        signal,
        ...(bar.onProgress ? { onProgress: bar.onProgress } : {}),
      }).finally(bar.done);
      out(json, r, describeReport(r));
      return r.status === 'intact'
        ? ExitCode.OK
        : r.status === 'repairable'
          ? ExitCode.REPAIRABLE
          : ExitCode.UNREPAIRABLE;
    }
    case 'repair': {
      const file = oneFile(args.positionals, verb);
      const bar = progressBar('repairing');
      const r = await repairCheckpoint(file, {
        signal,
        ...(bar.onProgress ? { onProgress: bar.onProgress } : {}),
      }).finally(bar.done);
      out(json, r, r.status === 'intact' ? `${r.path}: intact, nothing to repair\n` : describeReport(r));
      return ExitCode.OK;
    }
    case 'convert': {
      const file = oneFile(args.positionals, verb);
      const layout = args.values.get('layout');
      if (layout === undefined || !LAYOUTS.includes(layout as CheckpointLayout)) {
        throw new UsageError(`--layout must be one of ${LAYOUTS.join(', ')}`);
      }
      const target = layout as CheckpointLayout;
      const given = args.values.get('ecc');
      if (given !== undefined) {
        // A level the target layout does not take (medium for pyfolds-ecc) is a bad command line.
        try {
          eccPlan(target, given);
        } catch (err) {
          if (err instanceof TensorVaultError) throw new UsageError(`--ecc ${given}: ${err.message}`);
          throw err;
        }
      }
      const dest = args.values.get('out') ?? file;
      const bar = progressBar('verifying', 16 * 1024 * 1024);
      const job = { signal, ...(bar.onProgress ? { onProgress: bar.onProgress } : {}) };
      // Without --ecc the source's parity is kept (its level, in the target layout's terms).
      const kept = given === undefined ? await keptParity(file, target, job) : undefined;
      const ecc = given ?? kept?.ecc;
      bar.phase('verifying');
      const c = await loadCheckpoint(file, { verify: 'full', ...job }).catch((err: unknown) => {
        bar.done();
        throw err;
      });
      try {
        const tensors = await c.tensors();
        bar.phase('writing');
        const r = await saveCheckpoint(
          dest,
          [...tensors].map(([name, t]) => [name, { dtype: t.dtype, shape: t.shape, data: t.bytes }] as const),
          {
            layout: target,
            metadata: c.metadata as Record<string, unknown>,
            ...job,
            ...(ecc !== undefined ? { ecc } : {}),
          },
        ).finally(bar.done);
        const why =
          kept !== undefined && kept.source !== 'none' ? `, kept from the source's ${kept.source}` : '';
        out(
          json,
          { ...r, ...(kept !== undefined ? { sourceParity: kept.source } : {}) },
          `converted ${file} (${c.layout}) → ${r.path} (${r.layout}, parity ${r.ecc}${why})\n`,
        );
      } finally {
        c.close();
      }
      return ExitCode.OK;
    }
    case 'ls': {
      if (args.positionals.length !== 1) throw new UsageError('checkpoint ls takes one run folder');
      const runDir = args.positionals[0] as string;
      // The API lists a run folder not created yet as empty (before a first save); asked for by name
      // here, a missing path, a file or a folder that cannot be read is an error, not "(no checkpoints)".
      assertFolderSync(runDir, 'a run folder');
      const m = new CheckpointManager(runDir);
      const list = m.list().map((c) => ({ ...c, byteLength: statSync(c.path).size }));
      let text = '';
      for (const c of list)
        text += `  step ${String(c.step).padStart(9)}  ${formatBytes(c.byteLength).padStart(10)}  ${JSON.stringify(c.metrics)}${c.sidecar === 'sealed' || c.sidecar === 'unsealed' ? '' : `  (sidecar ${c.sidecar})`}  ${c.path}\n`;
      out(json, list, text || '  (no checkpoints)\n');
      return ExitCode.OK;
    }
    default:
      throw new UsageError(`unknown checkpoint command '${verb}'`);
  }
}

/** `tensorvault checkpoint`. */
export { run, usage };
