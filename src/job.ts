/**
 * Runs a native job on the libuv pool with progress polling and `AbortSignal` cancellation.
 */
import { channel } from 'node:diagnostics_channel';
import { abortError, type ErrorCode, fromNative, throwIfAborted } from './errors';
import { type NativeJobControl, native } from './native';
import { checkJobOptions } from './validate';

/** Progress of a long operation. */
export interface Progress {
  /** Bytes processed so far. */
  bytesDone: number;
  /** Total bytes of the operation (0 until known). */
  bytesTotal: number;
}

/** Options every long-running operation accepts. */
export interface JobOptions {
  /** Cancels the operation: the promise rejects with an `AbortError` and the native work stops. */
  signal?: AbortSignal;
  /** Called about every `progressIntervalMs` while the work runs, and once when it ends (also on failure). */
  onProgress?: (progress: Progress) => void;
  /** How often to report progress, in milliseconds (default 100). */
  progressIntervalMs?: number;
}

/**
 * Telemetry: every native job publishes `{ op, bytes, ms, outcome }` on the diagnostics channel
 * `tensorvault:job` when it ends (`outcome` is `ok`, `aborted` or an error code). Subscribe with
 * `diagnostics_channel.subscribe('tensorvault:job', fn)`; it costs nothing when nobody listens.
 */
export const jobChannel = channel('tensorvault:job');

/** A message on `tensorvault:job`: a native job (`op`: its name, diagnostic) ended after `bytes` and `ms`. */
export interface JobEvent {
  op: string;
  bytes: number;
  ms: number;
  /** `ok`, `aborted` or the error code it failed with. */
  outcome: 'ok' | 'aborted' | ErrorCode;
}

/**
 * `options` without its `signal`, for the work that follows a step that has changed the user's files
 * (a repair written or renamed into place). From there an abort no longer turns the outcome into
 * `TV_ABORTED`: the re-check runs to its end (bounded: at most a read of the file) and the call
 * resolves with what it did, as the native repairs do once they commit.
 */
export function withoutSignal<T extends JobOptions>(options: T): Omit<T, 'signal'> {
  const { signal, ...rest } = options;
  return rest;
}

/** The library's callbacks waiting on one signal, and the one `abort` listener that runs them. */
interface AbortWaiters {
  readonly callbacks: Set<() => void>;
  readonly listener: () => void;
}
const abortWaiters = new WeakMap<AbortSignal, AbortWaiters>();

/**
 * Run `callback` when `signal` aborts; the returned function stops waiting. However many calls wait on
 * one signal (a service's shutdown signal shared by its concurrent loads), the library adds one
 * `abort` listener to it, removed when the last stops waiting: one listener per call printed
 * Node's MaxListenersExceededWarning past 10 concurrent calls (`events.addAbortListener` counts
 * toward the same limit).
 */
function whenAborted(signal: AbortSignal, callback: () => void): () => void {
  let w = abortWaiters.get(signal);
  if (w === undefined) {
    const callbacks = new Set<() => void>();
    const listener = (): void => {
      abortWaiters.delete(signal);
      for (const c of callbacks) c();
    };
    w = { callbacks, listener };
    abortWaiters.set(signal, w);
    signal.addEventListener('abort', listener, { once: true });
  }
  const waiters = w;
  // A wrapper per call: the same callback waiting twice is two waits.
  const entry = (): void => callback();
  waiters.callbacks.add(entry);
  return () => {
    waiters.callbacks.delete(entry);
    if (waiters.callbacks.size === 0 && abortWaiters.get(signal) === waiters) {
      abortWaiters.delete(signal);
      signal.removeEventListener('abort', waiters.listener);
    }
  };
}

/** Start `start(control)` and wire progress and cancellation to it; `op` names it for telemetry. */
export async function runJob<T>(
  op: string,
  options: JobOptions,
  start: (control: NativeJobControl) => Promise<T>,
): Promise<T> {
  const { signal, onProgress } = options;
  // Every job field, progressIntervalMs included (it was not checked here: -5 was accepted).
  checkJobOptions(options);
  throwIfAborted(signal, 'The operation was aborted before it started');
  let control: NativeJobControl;
  let promise: Promise<T>;
  try {
    control = new (native().JobControl)();
    promise = start(control);
  } catch (err) {
    throw fromNative(err, signal);
  }
  const stopWaiting = signal === undefined ? undefined : whenAborted(signal, () => control.cancel());
  const report = (): void => onProgress?.({ bytesDone: control.done, bytesTotal: control.total });
  const timer = onProgress === undefined ? undefined : setInterval(report, options.progressIntervalMs ?? 100);
  timer?.unref();
  const t0 = performance.now();
  const publish = (outcome: JobEvent['outcome']): void => {
    if (jobChannel.hasSubscribers) {
      const message: JobEvent = { op, bytes: control.done, ms: performance.now() - t0, outcome };
      jobChannel.publish(message);
    }
  };
  try {
    const value = await promise;
    report();
    publish('ok');
    return value;
  } catch (err) {
    // The native promise settles only after the worker returned, so this last report shows where the
    // work really stopped (after an abort: well short of the total).
    report();
    const e = fromNative(err, signal);
    publish(e.name === 'AbortError' ? 'aborted' : e.code);
    throw e;
  } finally {
    if (timer !== undefined) clearInterval(timer);
    stopWaiting?.();
  }
}

/** `p`, or a rejection with an AbortError as soon as `signal` fires (whichever comes first). */
export function abortable<T>(p: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (signal === undefined) return p;
  if (signal.aborted) return Promise.reject(abortError(signal));
  return new Promise<T>((resolve, reject) => {
    const stopWaiting = whenAborted(signal, () => reject(abortError(signal)));
    p.then(
      (v) => {
        stopWaiting();
        resolve(v);
      },
      (e: unknown) => {
        stopWaiting();
        reject(e);
      },
    );
  });
}
