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
 */
import { native } from '../native';

/** Closed-but-mapped files allowed to pile up between two turns of the event loop. */
export const ORPHAN_STEP = 256;

/** The count after the last wait (a count that stays up is views still in use: no wait per open). */
let mark = 0;

/**
 * A promise to await (one turn of the event loop) when {@link ORPHAN_STEP} closed mappings piled up
 * since the last turn; undefined otherwise, so that the common open pays no extra tick.
 */
export function settleClosedMappings(): Promise<void> | undefined {
  const n = native().orphanedMappings();
  if (n < mark + ORPHAN_STEP) {
    if (n < mark) mark = n;
    return undefined;
  }
  return new Promise<void>((resolve) => setImmediate(resolve)).then(() => {
    mark = native().orphanedMappings();
  });
}
