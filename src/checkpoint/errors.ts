/** The checkpoint API's error classes (codes in `../errors.ts`). */
import { ErrorCode, TensorVaultError } from '../errors';

/** A tensor whose dtype or shape differs from the expected one. */
export interface TensorMismatch {
  name: string;
  expected: string;
  actual: string;
}

/** Every way the tensors differ from `expect`. */
export interface CheckpointMismatches {
  /** Expected tensors the checkpoint lacks. */
  missing: string[];
  /** Tensors the checkpoint has and `expect` does not list. */
  unexpected: string[];
  /** Tensors with another shape (`expected`/`actual` as `[2,4]`). */
  wrongShape: TensorMismatch[];
  /** Tensors with another dtype. */
  wrongDtype: TensorMismatch[];
}

/** `TV_CHECKPOINT_MISMATCH`: the tensors are not the expected ones; every difference is listed. */
export class CheckpointMismatchError
  extends TensorVaultError<'TV_CHECKPOINT_MISMATCH'>
  implements CheckpointMismatches
{
  readonly missing: string[];
  readonly unexpected: string[];
  readonly wrongShape: TensorMismatch[];
  readonly wrongDtype: TensorMismatch[];

  constructor(path: string, m: CheckpointMismatches) {
    const parts: string[] = [];
    if (m.missing.length > 0) parts.push(`missing: ${m.missing.join(', ')}`);
    if (m.unexpected.length > 0) parts.push(`unexpected: ${m.unexpected.join(', ')}`);
    for (const s of m.wrongShape) parts.push(`${s.name}: shape ${s.actual}, expected ${s.expected}`);
    for (const d of m.wrongDtype) parts.push(`${d.name}: dtype ${d.actual}, expected ${d.expected}`);
    super(
      ErrorCode.CHECKPOINT_MISMATCH,
      `${path}: tensors do not match what was expected (${parts.join('; ')})`,
      {
        path,
        missing: m.missing.length,
        unexpected: m.unexpected.length,
        wrongShape: m.wrongShape.length,
        wrongDtype: m.wrongDtype.length,
      },
    );
    this.name = 'CheckpointMismatchError';
    this.missing = m.missing;
    this.unexpected = m.unexpected;
    this.wrongShape = m.wrongShape;
    this.wrongDtype = m.wrongDtype;
  }
}

/**
 * `TV_CHECKPOINT_TENSOR_DAMAGED`: a tensor's bytes do not match their chunk digests (or, in the PyFolds
 * layouts, the checkpoint's hash) and parity could not repair them. Names the tensor and the chunks.
 */
export class TensorDamagedError extends TensorVaultError<'TV_CHECKPOINT_TENSOR_DAMAGED'> {
  /** The tensor that was asked for. */
  readonly tensor: string;
  /** Damaged chunk indices (chunk-tree chunks of the integrity block; empty for the PyFolds layouts). */
  readonly chunks: number[];

  constructor(path: string, tensor: string, chunks: number[], why: string) {
    super(
      ErrorCode.CHECKPOINT_TENSOR_DAMAGED,
      `${path}: tensor ${JSON.stringify(tensor)} is damaged${chunks.length > 0 ? ` (chunks ${chunks.join(', ')})` : ''}: ${why}`,
      { path, tensor, chunks: chunks.join(','), reason: why },
    );
    this.name = 'TensorDamagedError';
    this.tensor = tensor;
    this.chunks = chunks;
  }
}
