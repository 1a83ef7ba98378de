/**
 * The command's Ctrl-C (SIGINT) and SIGTERM handling, installed as this module loads. `main.ts`
 * imports it before anything else, so a signal in the command's first milliseconds (while its modules
 * load, or its arguments are parsed) exits with the documented 130 instead of killing the process by
 * the signal. It imports nothing, so that nothing has to load before it.
 */

/** The exit code of an interrupted command (`ExitCode.INTERRUPTED`). */
export const INTERRUPTED_EXIT = 130;

const interrupt = new AbortController();
/** Whether a command has asked for the interrupt signal (it has work to stop and clean up). */
let interruptible = false;
let signals = 0;
/** Said on the second signal while the work cleans up. */
let noteOnSecond: () => void = () => {};

/**
 * A signal: with no interruptible work running, exit 130 at once (nothing to clean up). Otherwise the
 * first aborts the work (which cleans up and exits 130 through its `TV_ABORTED`), a second is absorbed
 * (the cleanup, e.g. removing a temp file, still runs), a third exits at once with 130.
 */
function onSignal(): void {
  signals++;
  if (!interruptible || signals > 2) process.exit(INTERRUPTED_EXIT);
  if (signals === 1) interrupt.abort(new Error('interrupted'));
  else noteOnSecond();
}
process.on('SIGINT', onSignal);
process.on('SIGTERM', onSignal);

/**
 * Mark the command interruptible and return the signal that fires on SIGINT/SIGTERM (or when
 * {@link abortWork} is called); `note` is called on a second signal.
 */
export function interruptibleWork(note: () => void): AbortSignal {
  interruptible = true;
  noteOnSecond = note;
  return interrupt.signal;
}

/** Whether the command has interruptible work ({@link interruptibleWork}). */
export function hasInterruptibleWork(): boolean {
  return interruptible;
}

/** Stop the command's interruptible work (`reason`: why). */
export function abortWork(reason: Error): void {
  interrupt.abort(reason);
}
