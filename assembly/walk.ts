// The one walk loop over engine-managed tables. Reads entries with atomic loads so that a racing
// map/unmap on the owner thread is seen either wholly before or wholly after (entries are single
// aligned u64 stores), and is only called between an epoch announcement and its retraction.

import { PTE_SIZE, TABLE_ENTRIES } from './abi';
import { entryIsEmpty, entryIsLeaf, entryAddr, levelShift, pointsAtSpare } from './fmt/engine';
import { poolPageReachable } from './reach';

/** Level of the last entry `walk` looked at (the leaf's level, or where the walk found nothing). */
export let walkLevel: u32 = 0;
/** Address of the leaf entry `walk` returned (valid only when it returned a leaf). */
export let walkSlot: usize = 0;

/**
 * The leaf entry mapping `iova` in the table rooted at `root` with `levels` levels, or 0 (also for
 * a table pointer that is not a reachable pool page: reach.ts).
 */
export function walk(root: usize, levels: u32, iova: u64): u64 {
  let table: u64 = <u64>root; // 64 bits until checked: an entry's address field is 40 bits wide
  let level = levels - 1;
  while (true) {
    if (!poolPageReachable(table)) break;
    const index = <usize>(iova >> levelShift(level)) & (TABLE_ENTRIES - 1);
    const at = <usize>table + index * PTE_SIZE;
    const e = atomic.load<u64>(at);
    if (entryIsEmpty(e)) break;
    if (entryIsLeaf(e, level)) {
      walkLevel = level;
      walkSlot = at;
      return e;
    }
    if (pointsAtSpare(e)) break; // nothing mapped below
    table = entryAddr(e);
    level--;
  }
  walkLevel = level;
  return 0;
}
