// The page pool: 4 KiB pages for tables, handed out from [POOL_BASE, POOL_LIMIT).
//
// Invariants: a page on the free list is unreachable from every table and every translator; a page
// unlinked from a table goes to the limbo ring first, stamped with the epoch at unlink time, and
// moves to the free list only once every translator slot is quiescent (0) or has announced a later
// epoch — so a walk that loaded the old pointer never reads a reused page. Pages handed out are
// zeroed. Only the owner thread calls into this file.
//
// Buffers (batch rings, translator rings, dirty bitmaps) are runs of contiguous pages. A freed one
// joins the run list (CTRL_BUF_FREE): sorted by address, disjoint, never touching (neighbours are
// merged); each run's first page holds its node (u32 next run, u32 pages). A run ending at the
// pool's top is given back to the top. bufferAlloc takes the first run that fits before growing
// the pool, and pageAlloc takes a page of a run before growing it, so freed space is always reused.
//
// Two page free lists: the clean one holds retired engine table pages, which unmap emptied entry by
// entry, so they are zero but for the list's link word (translators never write a cleared entry:
// their only write is a compare-and-swap of the leaf they read); the other holds pages of any
// content. pageAlloc takes clean pages first and zeroes only the link word of one.

import {
  PAGE_SIZE, CTRL_POOL_TOP, CTRL_POOL_LIMIT, CTRL_FREE_HEAD, CTRL_PAGES_USED, CTRL_EPOCH,
  CTRL_LIMBO, CTRL_LIMBO_CAP, CTRL_LIMBO_HEAD, CTRL_LIMBO_TAIL, CTRL_FAIL_COUNTDOWN,
  CTRL_FREE_COUNT, CTRL_PAGES_GROWN, CTRL_CLEAN_HEAD, LIMBO_CLEAN, SLOT_EPOCH, CTRL_BUF_FREE, CTRL_POOL_BASE, STATUS_OK, STATUS_EINVAL,
} from './abi';
import { ctrl, slot, slotsBase, slotCount, slotSize } from './env';

const WASM_PAGE: usize = 65536;
/** Grow the memory in steps of at least this many Wasm pages (1 MiB) to amortise growth. */
const GROW_STEP: i32 = 16;

/** Set when an injected failure fires; read and cleared by {@link failureInjected}. */
let injected: bool = false;

/** Fault injection: true when this fallible step must fail (the countdown reached zero). */
export function injectFail(): bool {
  const left = load<u32>(ctrl, CTRL_FAIL_COUNTDOWN);
  if (left == 0) return false;
  store<u32>(ctrl, left - 1, CTRL_FAIL_COUNTDOWN);
  if (left == 1) injected = true;
  return left == 1;
}

/** True when a failure was injected since the last call (which a retry must not paper over). */
export function failureInjected(): bool {
  const was = injected;
  injected = false;
  return was;
}

/** The lowest epoch any translator may still be reading under, or the current epoch if none. */
function oldestActiveEpoch(): u32 {
  let oldest = atomic.load<u32>(ctrl, CTRL_EPOCH);
  for (let i: u32 = 0; i < slotCount; i++) {
    const e = atomic.load<u32>(slotsBase + <usize>i * <usize>slotSize, SLOT_EPOCH);
    if (e != 0 && e < oldest) oldest = e;
  }
  return oldest;
}

/** Moves limbo pages unlinked before every active epoch to the free list; returns pages moved. */
export function reclaim(): u32 {
  let head = load<u32>(ctrl, CTRL_LIMBO_HEAD);
  const tail = load<u32>(ctrl, CTRL_LIMBO_TAIL);
  if (head == tail) return 0;
  const ring = <usize>load<u32>(ctrl, CTRL_LIMBO);
  const mask = load<u32>(ctrl, CTRL_LIMBO_CAP) - 1;
  const oldest = oldestActiveEpoch();
  let moved: u32 = 0;
  while (head != tail) {
    const rec = ring + (<usize>(head & mask) << 3);
    // A page unlinked at epoch E may be read by a translator that announced E or earlier.
    if (load<u32>(rec, 4) >= oldest) break;
    const page = load<u32>(rec);
    pushFree(<usize>(page & ~LIMBO_CLEAN), (page & LIMBO_CLEAN) != 0 ? CTRL_CLEAN_HEAD : CTRL_FREE_HEAD);
    head++;
    moved++;
  }
  store<u32>(ctrl, head, CTRL_LIMBO_HEAD);
  return moved;
}

function pushFree(page: usize, list: usize = CTRL_FREE_HEAD): void {
  store<u32>(page, load<u32>(ctrl + list));
  store<u32>(ctrl + list, <u32>page);
  store<u32>(ctrl, load<u32>(ctrl, CTRL_FREE_COUNT) + 1, CTRL_FREE_COUNT);
}

/** Unlinks `page`, the head of free list `list` (CTRL_FREE_HEAD or CTRL_CLEAN_HEAD): pushFree undone. */
function popFree(page: usize, list: usize): void {
  store<u32>(ctrl + list, load<u32>(page));
  store<u32>(ctrl, load<u32>(ctrl, CTRL_FREE_COUNT) - 1, CTRL_FREE_COUNT);
}

/** Extends the pool by `bytes` at its top, growing the memory if needed; 0 when over the limit. */
function takeFromTop(bytes: usize): usize {
  const top = <usize>load<u32>(ctrl, CTRL_POOL_TOP);
  const end = top + bytes;
  if (end > <usize>load<u32>(ctrl, CTRL_POOL_LIMIT)) return 0;
  const have = <usize>memory.size() * WASM_PAGE;
  if (end > have) {
    if (injectFail()) return 0;
    let want = <i32>((end - have + WASM_PAGE - 1) / WASM_PAGE);
    if (want < GROW_STEP) want = GROW_STEP;
    if (memory.grow(want) < 0 && memory.grow(<i32>((end - have + WASM_PAGE - 1) / WASM_PAGE)) < 0) return 0;
    store<u32>(ctrl, load<u32>(ctrl, CTRL_PAGES_GROWN) + 1, CTRL_PAGES_GROWN);
  }
  store<u32>(ctrl, <u32>end, CTRL_POOL_TOP);
  return top;
}

/** Pages of the run at `run` (its node's second word). */
// @ts-ignore: decorator
@inline function runPages(run: usize): u32 {
  return load<u32>(run, 4);
}

/** `pages` pages from the first run that has them (cut from its end), or 0. */
function takeRun(pages: u32): usize {
  let prev: usize = 0;
  let run = <usize>load<u32>(ctrl, CTRL_BUF_FREE);
  while (run != 0) {
    const have = runPages(run);
    if (have > pages) {
      store<u32>(run, have - pages, 4);
      return run + <usize>(have - pages) * PAGE_SIZE;
    }
    if (have == pages) {
      if (prev == 0) store<u32>(ctrl, load<u32>(run), CTRL_BUF_FREE);
      else store<u32>(prev, load<u32>(run));
      return run;
    }
    prev = run;
    run = <usize>load<u32>(run);
  }
  return 0;
}

/**
 * Epochs below this were older than every active translator's when last computed: a limbo record
 * stamped below it is reclaimable for good (walks that could reach its page were all running then,
 * and only end). Per instance; only the owner thread allocates. 0: not computed yet.
 */
let limboSafe: u32 = 0;

/**
 * A reclaimable limbo page, zeroed (a clean one already is), taken straight from the ring without a
 * stop on a free list; 0 if there is none. The newest record first: its page is the one unmapped
 * last, still warm in the caches and the TLB (an unmap retires tables bottom up and a map builds
 * them top down, so a map after an unmap gets the same pages back in the same roles). Records
 * are stamped in non-decreasing epoch order from head to tail, so the newest is reclaimable only
 * when every record is; otherwise the oldest may still be, as reclaim() would find it.
 */
function takeLimbo(): usize {
  const head = load<u32>(ctrl, CTRL_LIMBO_HEAD);
  const tail = load<u32>(ctrl, CTRL_LIMBO_TAIL);
  if (head == tail) return 0;
  const ring = <usize>load<u32>(ctrl, CTRL_LIMBO);
  const mask = load<u32>(ctrl, CTRL_LIMBO_CAP) - 1;
  const newest = ring + (<usize>((tail - 1) & mask) << 3);
  const oldest = ring + (<usize>(head & mask) << 3);
  // The bound is recomputed when the oldest record is not below it (so neither is), or when the
  // epoch counter wrapped below it.
  if (load<u32>(oldest, 4) >= limboSafe || atomic.load<u32>(ctrl, CTRL_EPOCH) < limboSafe) {
    limboSafe = oldestActiveEpoch();
    if (load<u32>(oldest, 4) >= limboSafe) return 0;
  }
  let word: u32;
  if (load<u32>(newest, 4) < limboSafe) {
    word = load<u32>(newest);
    store<u32>(ctrl, tail - 1, CTRL_LIMBO_TAIL);
  } else {
    word = load<u32>(oldest);
    store<u32>(ctrl, head + 1, CTRL_LIMBO_HEAD);
  }
  const page = <usize>(word & ~LIMBO_CLEAN);
  if ((word & LIMBO_CLEAN) == 0) memory.fill(page, 0, PAGE_SIZE);
  return page;
}

/**
 * A zeroed 4 KiB page, or 0 when the pool is exhausted (ENOMEM) or a failure is injected. Sources,
 * cheapest first: the clean list, a reclaimable limbo page, the free list, a buffer run, the top.
 */
export function pageAlloc(): usize {
  if (injectFail()) return 0;
  let page = <usize>load<u32>(ctrl, CTRL_CLEAN_HEAD);
  if (page != 0) {
    popFree(page, CTRL_CLEAN_HEAD);
    store<u32>(page, 0); // the link word: the rest of the page is zero already
  } else {
    page = takeLimbo();
    if (page == 0) {
      page = <usize>load<u32>(ctrl, CTRL_FREE_HEAD);
      if (page != 0) {
        popFree(page, CTRL_FREE_HEAD);
      } else {
        page = takeRun(1);
        if (page == 0) page = takeFromTop(PAGE_SIZE);
        if (page == 0) return 0;
      }
      memory.fill(page, 0, PAGE_SIZE);
    }
  }
  store<u32>(ctrl, load<u32>(ctrl, CTRL_PAGES_USED) + 1, CTRL_PAGES_USED);
  return page;
}

/**
 * Retires a page a translator may still be reading: it is reused only after the epoch advances.
 * `clean`: every byte of the page is zero (an emptied engine table), so it needs no zeroing then.
 */
export function pageRetire(page: usize, clean: bool = false): void {
  const ring = <usize>load<u32>(ctrl, CTRL_LIMBO);
  const cap = load<u32>(ctrl, CTRL_LIMBO_CAP);
  let tail = load<u32>(ctrl, CTRL_LIMBO_TAIL);
  // Full ring: every translator finishes its current call quickly, so waiting here is bounded.
  if (tail - load<u32>(ctrl, CTRL_LIMBO_HEAD) >= cap) {
    atomic.add<u32>(ctrl, 1, CTRL_EPOCH);
    while (reclaim() == 0) {}
  }
  const rec = ring + (<usize>(tail & (cap - 1)) << 3);
  store<u32>(rec, <u32>page | (clean ? LIMBO_CLEAN : 0));
  store<u32>(rec, atomic.load<u32>(ctrl, CTRL_EPOCH), 4);
  store<u32>(ctrl, tail + 1, CTRL_LIMBO_TAIL);
  store<u32>(ctrl, load<u32>(ctrl, CTRL_PAGES_USED) - 1, CTRL_PAGES_USED);
}

/** Frees a page that no translator can reach (never published, or reclaimed). */
export function pageFreeNow(page: usize): void {
  pushFree(page);
  store<u32>(ctrl, load<u32>(ctrl, CTRL_PAGES_USED) - 1, CTRL_PAGES_USED);
}

/** Gives back a zero page that no translator can reach (taken by pageAlloc, never published). */
export function pageFreeClean(page: usize): void {
  pushFree(page, CTRL_CLEAN_HEAD);
  store<u32>(ctrl, load<u32>(ctrl, CTRL_PAGES_USED) - 1, CTRL_PAGES_USED);
}

/** Ends a control call that retired pages: later translator walks cannot see them. */
export function epochAdvance(): void {
  atomic.add<u32>(ctrl, 1, CTRL_EPOCH);
}

/**
 * After {@link epochAdvance}: waits until no translator can still be reading a page retired before
 * it, so that pageAlloc may hand those pages out at once. Translator calls are short, so the wait
 * is bounded (as pageRetire's on a full ring). Not when this thread's own slot is inside a call (a
 * callback re-entering the control API), which would wait for itself: the pages then stay in limbo.
 */
export function awaitReaders(): void {
  if (atomic.load<u32>(slot, SLOT_EPOCH) != 0) return;
  const epoch = atomic.load<u32>(ctrl, CTRL_EPOCH);
  while (oldestActiveEpoch() < epoch) {}
}

/** `pages` contiguous zeroed pages for a caller-owned buffer (batch rings, bitmaps), or 0. */
export function bufferAlloc(pages: u32): usize {
  if (pages == 0 || injectFail()) return 0;
  let p = takeRun(pages);
  if (p == 0) p = takeFromTop(<usize>pages * PAGE_SIZE);
  if (p == 0) return 0;
  memory.fill(p, 0, <usize>pages * PAGE_SIZE);
  store<u32>(ctrl, load<u32>(ctrl, CTRL_PAGES_USED) + pages, CTRL_PAGES_USED);
  return p;
}

/**
 * Returns a buffer's pages to the run list (see the header); its user guarantees nobody reads it
 * any more. EINVAL, changing nothing, for a range that is not whole pages of the pool below its
 * top or that overlaps a run already free (a double free).
 */
export function bufferFree(p: usize, pages: u32): i32 {
  const top = <usize>load<u32>(ctrl, CTRL_POOL_TOP);
  const bytes = <usize>pages * PAGE_SIZE;
  if (pages == 0 || (p & (PAGE_SIZE - 1)) != 0 || p < <usize>load<u32>(ctrl, CTRL_POOL_BASE) || p > top || bytes > top - p) return STATUS_EINVAL;
  let prev: usize = 0;
  let next = <usize>load<u32>(ctrl, CTRL_BUF_FREE);
  while (next != 0 && next < p) {
    prev = next;
    next = <usize>load<u32>(next);
  }
  if ((prev != 0 && prev + <usize>runPages(prev) * PAGE_SIZE > p) || (next != 0 && p + bytes > next)) return STATUS_EINVAL;
  store<u32>(ctrl, load<u32>(ctrl, CTRL_PAGES_USED) - pages, CTRL_PAGES_USED);
  let run = p;
  let n = pages;
  if (next != 0 && p + bytes == next) { // merge with the run above
    n += runPages(next);
    next = <usize>load<u32>(next);
  }
  if (prev != 0 && prev + <usize>runPages(prev) * PAGE_SIZE == p) { // merge into the run below
    run = prev;
    n += runPages(prev);
  } else if (prev == 0) {
    store<u32>(ctrl, <u32>run, CTRL_BUF_FREE);
  } else {
    store<u32>(prev, <u32>run);
  }
  if (run + <usize>n * PAGE_SIZE == top) {
    // The highest run ends at the top: give it back, so the pool does not keep growing.
    if (run == p && prev != 0) store<u32>(prev, 0);
    else if (run == p) store<u32>(ctrl, 0, CTRL_BUF_FREE);
    else unlinkAfter(run);
    store<u32>(ctrl, <u32>run, CTRL_POOL_TOP);
    return STATUS_OK;
  }
  store<u32>(run, <u32>next);
  store<u32>(run, n, 4);
  return STATUS_OK;
}

/** Unlinks run `run` (merged into, so it is in the list) from the run list. */
function unlinkAfter(run: usize): void {
  let prev: usize = 0;
  let cur = <usize>load<u32>(ctrl, CTRL_BUF_FREE);
  while (cur != 0 && cur != run) {
    prev = cur;
    cur = <usize>load<u32>(cur);
  }
  if (prev == 0) store<u32>(ctrl, 0, CTRL_BUF_FREE);
  else store<u32>(prev, 0);
}

