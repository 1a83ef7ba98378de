/**
 * Closed files whose mappings only views still hold. Node frees an external buffer's memory in a
 * callback it runs on a later turn of the event loop (never during the garbage collection that found
 * the buffer dead), so a loop of opens whose `await`s all resolve at once (everything cached: the
 * common case for a model server reloading or a job reading many small files) never lets those
 * callbacks run. Each open + view + close then leaves one mapping behind, and after about 65,000 of
 * them (`vm.max_map_count`) the process dies in `mmap` or `malloc`. Every async open calls
 * {@link settleClosedMappings} first: when {@link ORPHAN_STEP} more such mappings piled up since the
 * last time, it waits for one turn of the event loop, so that the callbacks of the views already
 * collected run and unmap them. Views still in use keep their pages, as before.
 *
 * Files dropped without `close()` are the same story one step earlier: their handles report their
 * cost to the garbage collector (`crates/tensorvault-node/src/cost.rs`), so it runs and finds them
 * dead, but Node runs their finalizers (which close the descriptors) on a later turn of the event
 * loop, and a loop of loads that never yields ran out of descriptors (EMFILE at about 335 unclosed
 * lazy loads under a 1,024-descriptor limit). When {@link HANDLE_STEP} more handles are open on this
 * thread than at the last turn, the open waits for one turn too.
 */
import { native } from '../native';

/** Closed-but-mapped files allowed to pile up between two turns of the event loop. */
export const ORPHAN_STEP = 256;

/** The count after the last wait (a count that stays up is views still in use: no wait per open). */
let mark = 0;

/** Open file handles (this thread's) allowed to pile up between two turns of the event loop. */
export const HANDLE_STEP = 32;

/** The open handles after the last wait (handles still in use: no wait per open). */
let handleMark = 0;

/**
 * A promise to await (one turn of the event loop) when {@link ORPHAN_STEP} closed mappings piled up
 * since the last turn; undefined otherwise, so that the common open pays no extra tick.
 */
export function settleClosedMappings(): Promise<void> | undefined {
  const n = native().orphanedMappings();
  const h = native().openHandles();
  if (n < mark + ORPHAN_STEP && h < handleMark + HANDLE_STEP) {
    if (n < mark) mark = n;
    if (h < handleMark) handleMark = h;
    return undefined;
  }
  return new Promise<void>((resolve) => setImmediate(resolve)).then(() => {
    mark = native().orphanedMappings();
    handleMark = native().openHandles();
  });
}
