/**
 * The weights' own descriptor, for the reads a checkpoint makes beside its views (chunk checks, the
 * stat that tells a replaced set): the mapped file's descriptor, held open by the addon.
 */
import { callNative, ErrorCode, TensorVaultError } from '../errors';
import type { NativeFd } from '../native/binding';
import type { SafetensorsFile } from '../safetensors/reader';

/**
 * A mapped file's descriptor, held by the addon (the file itself, not a duplicate of its descriptor:
 * one descriptor per open checkpoint, not two): let go by {@link WeightsFd.close}, or
 * by the garbage collector when its holder is dropped without `close()` (and when a worker is
 * terminated), never with `fs.closeSync`. Reads that run on the pool borrow it with
 * {@link WeightsFd.lend}: a `close()` while one is out closes the descriptor when the last returns, so
 * that a number handed to the pool (as `/proc/self/fd/N`) is never closed, and reused by another open,
 * under it.
 */
export class WeightsFd {
  readonly #handle: NativeFd;
  readonly #path: string;
  #leases = 0;
  #closed = false;

  /** The descriptor of `file`, held from now on (`TV_CLOSED` when `file` is closed). */
  constructor(file: SafetensorsFile) {
    this.#handle = file.dupFd();
    this.#path = file.path;
  }

  /** The descriptor's number for a synchronous use now; `TV_CLOSED` after {@link WeightsFd.close}. */
  get fd(): number {
    if (this.#closed) throw closedError(this.#path);
    const handle = this.#handle;
    return callNative(() => handle.fd);
  }

  /**
   * `use(fd)`, with the descriptor held open until the promise it returns settles, whatever
   * {@link WeightsFd.close} is called meanwhile. `TV_CLOSED` when it is closed already.
   */
  async lend<T>(use: (fd: number) => Promise<T>): Promise<T> {
    const fd = this.fd;
    this.#leases++;
    try {
      return await use(fd);
    } finally {
      this.#leases--;
      if (this.#closed && this.#leases === 0) this.#handle.close();
    }
  }

  /** Close the descriptor now, or when the last {@link WeightsFd.lend} returns. Idempotent. */
  close(): void {
    this.#closed = true;
    if (this.#leases === 0) this.#handle.close();
  }
}

/** `TV_CLOSED` for the checkpoint (or descriptor) of `path`. */
export function closedError(path: string): TensorVaultError {
  return new TensorVaultError(ErrorCode.CLOSED, `${path}: the checkpoint is closed`, { path });
}
