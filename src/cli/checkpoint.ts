/**
 * `tensorvault checkpoint inspect|verify|repair|convert|ls`: checkpoints in the tensorvault and PyFolds
 * layouts (`docs/formats/checkpoint.md`). Exit codes from the shared table (`common.ts`): 0 intact
 * (or repaired), 1 damage found but repairable (verify), 2 damage not repairable or verification
 * failed, 3 bad command line, 5 invalid checkpoint, 6 I/O error, 7 internal error, 130 interrupted.
 * The HMAC key is read from `PYFOLDS_CHECKPOINT_HMAC_KEY`.
 */
import { statSync } from 'node:fs';
import { type CheckpointLayout, LAYOUTS } from '../checkpoint/layout';
import {
  type CheckpointReport,
  loadCheckpoint,
  repairCheckpoint,
  verifyCheckpoint,
} from '../checkpoint/load';
import { CheckpointManager } from '../checkpoint/manager';
import { saveCheckpoint } from '../checkpoint/save';
import { assertFolderSync } from '../io/index';
import { ExitCode, formatBytes, interruptSignal, output, parseArgs, progressBar, UsageError } from './common';

const usage = `tensorvault checkpoint <command> [options]

  inspect <file>            layout, version, metadata, tensors and integrity of a checkpoint
  verify <file>             check every byte (read-only): exit 0 intact, 1 repairable, 2 damaged
  repair <file>             repair from parity (.tvecc or rs(N) .ecc), replace atomically, re-verify
  convert <file> --layout L [--out FILE] [--ecc LEVEL]
                            rewrite in another layout (tensorvault, pyfolds, pyfolds-ecc), verified first
  ls <run folder>           the checkpoints of a CheckpointManager run (step, size, metrics; a sidecar
                            that fails its seal is marked damaged: its metrics are not trusted)

  <file> is the weights file (NAME.safetensors). --json prints machine-readable output.
  The HMAC key, when the checkpoint is keyed, comes from PYFOLDS_CHECKPOINT_HMAC_KEY.

Exit codes: 0 intact (or repaired), 1 damage found but repairable (verify), 2 damage not
            repairable or verification failed, 3 bad command line, 5 invalid checkpoint (malformed
            sidecar, unsafe manifest), 6 I/O error, 7 internal error, 130 interrupted.
`;

function out(json: boolean, value: unknown, text: string): void {
  process.stdout.write(json ? `${JSON.stringify(value)}\n` : text);
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
  if (r.damagedTensors.length > 0) s += `  damaged tensors: ${r.damagedTensors.join(', ')}\n`;
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
      let text = `${c.path}: ${c.layout} checkpoint, version ${c.version ?? '(none)'}, hash ${c.report.hashKind}, seal ${c.report.seal}\n`;
      text += `  metadata: ${JSON.stringify(c.metadata)}\n`;
      for (const t of infos)
        text += `  ${t.name.padEnd(30)} ${t.dtype.padEnd(8)} [${t.shape.join(', ')}] ${formatBytes(t.byteLength)}\n`;
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
      const dest = args.values.get('out') ?? file;
      const c = await loadCheckpoint(file, { verify: 'full', signal });
      try {
        const tensors = await c.tensors();
        const ecc = args.values.get('ecc');
        const r = await saveCheckpoint(
          dest,
          [...tensors].map(([name, t]) => [name, { dtype: t.dtype, shape: t.shape, data: t.bytes }] as const),
          {
            layout: layout as CheckpointLayout,
            metadata: c.metadata as Record<string, unknown>,
            signal,
            ...(ecc !== undefined ? { ecc } : {}),
          },
        );
        out(json, r, `converted ${file} (${c.layout}) → ${r.path} (${r.layout}, parity ${r.ecc})\n`);
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
