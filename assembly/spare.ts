// Spare tables: engine table pages that a partial unmap emptied, kept linked for the next map.
//
// Linux keeps the tables a partial unmap empties (VT-d's dma_pte_clear_range, io-pgtable-arm and
// generic_pt free a table only when an unmap covers all of it), so a map near an earlier one walks
// existing tables instead of building them again; on scattered 4 KiB map/unmap churn that is most of
// the table work (bench/README.md). Here an emptied table stays linked, its entry counting 0 live
// entries. Such a spare table is invisible to translation (fmt/engine.ts pointsAtSpare), is not in
// DOM_PAGES (table-page accounting, FD page limits and snapshots' checks see the radix-minimal
// tree) and counts in DOM_SPARE.
//
// Invariants: a spare table holds no leaf and no live table pointer, only empty entries and spare
// tables, so spareness is closed downwards along any path; DOM_SPARE is the number of spare pages
// reachable from the domain's root. Spare pages are released (retired through the limbo ring, like
// any page a translator may have loaded a pointer to):
//  - when an unmap covers a table's whole span, as Linux frees it, and so all of them at domain free;
//  - all of them, when they outnumber max(SPARE_MIN, the other pages in use), which bounds the
//    memory they hold at any time;
//  - all of every domain's, before a map fails for want of pages (pagetable.ts mapRange), and those
//    of an FD over its page limit (src/iommufd/fd-state.ts), so keeping them never fails a map.

import { PTE_SIZE, TABLE_ENTRIES, DOM_SIZE, DOM_ROOT, DOM_LEVELS, DOM_PAGES, DOM_SPARE, DOM_FLAGS, DOM_LIVE, CTRL_SPARE_PAGES, CTRL_PAGES_USED } from './abi';
import { entryIsEmpty, entryIsLeaf, entryAddr, entrySlot, pointsAtSpare, COUNT_ONE } from './fmt/engine';
import { pageRetire, epochAdvance } from './pool';
import { ctrl, domains, domainCount } from './env';

/** Spare pages kept in any case; beyond this and beyond the other pages in use, all are released. */
const SPARE_MIN: u32 = 1024;

/** Counts `n` (negative: fewer) more spare pages in domain `d` and in the engine's total. */
export function addSpares(d: usize, n: i32): void {
  store<u32>(d, load<u32>(d, DOM_SPARE) + n, DOM_SPARE);
  store<u32>(ctrl, load<u32>(ctrl, CTRL_SPARE_PAGES) + n, CTRL_SPARE_PAGES);
}

/**
 * Counts one new live entry, for `iova`, in the table that the entry `parent` points at (0: the
 * root, which no entry counts). When that table is spare, so is every table from the one `spareTop`
 * points at (an entry of the table at `spareLevel`) down to it: each of their entries goes from 0 to
 * 1, `spareTop` last, so that a concurrent walk reaches the new entry only once the whole path
 * counts it; then the live entry above `spareTop` (`aboveSpare`, 0 when spareTop is in the root)
 * counts one more, and the revived pages move from DOM_SPARE to DOM_PAGES.
 */
export function countNewEntry(d: usize, parent: usize, spareTop: usize, spareLevel: u32, aboveSpare: usize, iova: u64): void {
  if (spareTop == 0) {
    if (parent != 0) atomic.store<u64>(parent, atomic.load<u64>(parent) + COUNT_ONE);
    return;
  }
  let revived: u32 = 1;
  let slot = spareTop;
  let level = spareLevel;
  while (slot != parent) {
    level--;
    slot = entrySlot(<usize>entryAddr(atomic.load<u64>(slot)), iova, level);
    atomic.store<u64>(slot, atomic.load<u64>(slot) + COUNT_ONE);
    revived++;
  }
  atomic.store<u64>(spareTop, atomic.load<u64>(spareTop) + COUNT_ONE);
  if (aboveSpare != 0) atomic.store<u64>(aboveSpare, atomic.load<u64>(aboveSpare) + COUNT_ONE);
  store<u32>(d, load<u32>(d, DOM_PAGES) + revived, DOM_PAGES);
  addSpares(d, -<i32>revived);
}

/** Spare pages still to find in the sweep under way (it stops early once all are found). */
let sparesLeft: u32 = 0;

/** Retires (the caller unlinked it) spare table `table` at `level` and the spare tables below it; returns pages. */
function releaseTree(table: usize, level: u32): u32 {
  let n: u32 = 1;
  if (level > 0) {
    for (let i = 0; i < TABLE_ENTRIES; i++) {
      const slot = table + <usize>i * PTE_SIZE;
      const e = atomic.load<u64>(slot);
      if (entryIsEmpty(e)) continue;
      atomic.store<u64>(slot, 0);
      n += releaseTree(<usize>entryAddr(e), level - 1);
    }
  }
  pageRetire(table, true); // its entries were empty or just cleared: the page is zero
  return n;
}

/**
 * Unlinks the spare table that the entry `slot` (in a table at `level`) points at, and retires it
 * with the spare tables below it: a map puts a leaf there, where the radix-minimal tree would have
 * had an empty entry. Ends the epoch, as every control step that unlinks pages does.
 */
export function releaseSpareAt(d: usize, slot: usize, level: u32): void {
  const table = <usize>entryAddr(atomic.load<u64>(slot));
  atomic.store<u64>(slot, 0);
  addSpares(d, -<i32>releaseTree(table, level - 1));
  epochAdvance();
}

/** Releases the spare tables under `table` at `level` (≥ 1: a level-0 table holds only leaves). */
function sweepLevel(table: usize, level: u32): u32 {
  let released: u32 = 0;
  for (let i = 0; i < TABLE_ENTRIES && sparesLeft != 0; i++) {
    const slot = table + <usize>i * PTE_SIZE;
    const e = atomic.load<u64>(slot);
    if (entryIsEmpty(e) || entryIsLeaf(e, level)) continue;
    if (pointsAtSpare(e)) {
      atomic.store<u64>(slot, 0);
      const n = releaseTree(<usize>entryAddr(e), level - 1);
      released += n;
      sparesLeft -= n;
    } else if (level > 1) {
      released += sweepLevel(<usize>entryAddr(e), level - 1);
    }
  }
  return released;
}

/**
 * Releases every spare table of domain `d`; returns the pages retired (the caller advances the
 * epoch). Visits only the live tables above level 0 until all spares are found.
 */
export function sweepDomain(d: usize): u32 {
  sparesLeft = load<u32>(d, DOM_SPARE);
  if (sparesLeft == 0) return 0;
  const released = sweepLevel(<usize>load<u32>(d, DOM_ROOT), load<u32>(d, DOM_LEVELS) - 1);
  addSpares(d, -<i32>released);
  return released;
}

/** {@link sweepDomain} for every live domain (user-managed ones never have spares); returns pages retired. */
export function sweepAllDomains(): u32 {
  let released: u32 = 0;
  for (let i: u32 = 1; i < domainCount; i++) {
    const d = domains + <usize>i * DOM_SIZE;
    if (load<u32>(d, DOM_FLAGS) & DOM_LIVE) released += sweepDomain(d);
  }
  return released;
}

/**
 * After an unmap: releases every spare table when there are more than max(SPARE_MIN, the other
 * pages in use), so that they never hold more memory than that.
 */
export function boundSpares(): void {
  const spare = load<u32>(ctrl, CTRL_SPARE_PAGES);
  if (spare > SPARE_MIN && spare > load<u32>(ctrl, CTRL_PAGES_USED) - spare) sweepAllDomains();
}
