// Pointers a translator follows into the page pool (device bus pages, PASID directory and leaf
// pages, domain roots, engine table pages) are checked here before the first access through them
// (a domain index read from a context is checked against the domain table: translate.ts).
//
// Why: the owner grows the memory (pool.ts takeFromTop) while translators run in other threads.
// V8 keeps a copy of a shared memory's size per instance and refreshes it after another thread's
// growth only when this thread next handles an interrupt (at a stack check). Atomic accesses are
// bounds-checked against that copy — plain ones are not — so a walk that reads a pointer to a page
// of freshly grown memory and loads through it before such a check traps with "memory access out
// of bounds" (seen once in test/concurrency.test.ts under load; test/grow-race.test.ts). memory.size
// returns the same copy and memory.grow(0) refreshes it, so a page beyond the copy is checked again
// after a refresh. A pointer outside the pool or beyond the memory even then (garbage from a torn
// or reused entry, which the limbo ring of pool.ts should make impossible) is refused: the caller
// reports a fault. No value read from the shared memory can make a translator trap.

import { PAGE_SIZE, CTRL_POOL_BASE, CTRL_POOL_LIMIT } from './abi';

/** First byte of the pool. */
let poolBase: u64 = 0;
/** End of the pool: never beyond it. */
let poolLimit: u64 = 0;
/**
 * How many page addresses from `poolBase` on this instance may access: a page `p` is reachable
 * when `p - poolBase < reachSpan` (unsigned: one subtraction and one compare, which also refuses
 * `p < poolBase`), i.e. it lies inside the pool and the memory as this instance sees it.
 */
let reachSpan: u64 = 0;

/** `reachSpan` for the memory as this instance sees it now (clipped to the pool). */
function seenSpan(): u64 {
  const bytes = <u64><u32>memory.size() << 16;
  const end = bytes < poolLimit ? bytes : poolLimit;
  return end >= poolBase + <u64>PAGE_SIZE ? end - poolBase - <u64>PAGE_SIZE + 1 : 0;
}

/** Reads the pool bounds from the control block (called by `init`). */
export function bindReach(ctrlPtr: usize): void {
  poolBase = <u64>load<u32>(ctrlPtr, CTRL_POOL_BASE);
  poolLimit = <u64>load<u32>(ctrlPtr, CTRL_POOL_LIMIT);
  reachSpan = seenSpan();
}

/** True when the pool page at `page` may be read: inside the pool and the memory (see the header). */
// @ts-ignore: decorator
@inline export function poolPageReachable(page: u64): bool {
  return page - poolBase < reachSpan || reachAfterGrowth(page);
}

/** `poolPageReachable`'s slow path: the memory may have grown since this instance last looked. */
function reachAfterGrowth(page: u64): bool {
  if (page < poolBase || page + <u64>PAGE_SIZE > poolLimit || (page & <u64>(PAGE_SIZE - 1)) != 0) return false;
  // Refreshes V8's per-instance copy of a shared memory's size (another thread grew it). Only the
  // shared build: an unshared memory grows only on this thread, which updates the copy at once,
  // and growing one (even by 0) would detach its ArrayBuffer under the emulator's views.
  if (SHARED_MEMORY) memory.grow(0);
  reachSpan = seenSpan();
  return page - poolBase < reachSpan;
}
