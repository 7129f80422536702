// Map and unmap of engine-managed tables (owner thread only).
//
// Map picks, for each step, the largest leaf (1 GiB, 2 MiB, 4 KiB) that the IOVA and output
// alignment and the remaining length allow. Entries are published with atomic stores after the
// page they point to is fully written, so a concurrent walk sees either the old or the new tree.
// Unmap clears leaves wholly inside the range, retires the tables it covers wholly (never the
// root), keeps the ones it only empties as spare tables for later maps (assembly/spare.ts), and
// bumps the domain generation so that no IOTLB in any thread hits on the old mappings.

import { PTE_SIZE, TABLE_ENTRIES, MAX_LEAF_LEVEL, DOM_ROOT, DOM_LEVELS, DOM_PAGES, STATUS_OK, STATUS_ENOMEM, STATUS_EINVAL , PTE_D } from './abi';
import { entryIsEmpty, entryIsLeaf, entryAddr, entrySlot, levelShift, makeTable, makeLeaf, childCount, pointsAtSpare, COUNT_ONE } from './fmt/engine';
import { pageAlloc, pageRetire, pageFreeClean, epochAdvance, awaitReaders, failureInjected } from './pool';
import { domainBumpGen } from './domain';
import { addSpares, countNewEntry, releaseSpareAt, sweepAllDomains, boundSpares } from './spare';

/**
 * Installs one leaf of `level` (or smaller if a table is already there); returns the level used,
 * -1 (no page for a table) or -2 (a leaf in the way).
 *
 * Missing tables are built privately and published with one atomic store: each new page is linked
 * into the one above it and gets its entry (the leaf at the bottom) with plain stores while no
 * translator can reach it, then the top one is linked into the existing tree. The publishing
 * store (sequentially consistent) orders the plain ones before it for any walk that loads it. A
 * map that runs out of pages has published nothing and gives its new pages back at once. Spare
 * tables on the way are used as they are and come alive with the new entry (spare.ts countNewEntry).
 */
function installLeaf(d: usize, iova: u64, oa: u64, level: u32, perm: u32): i32 {
  let table = <usize>load<u32>(d, DOM_ROOT);
  let at = load<u32>(d, DOM_LEVELS) - 1;
  let parent: usize = 0; // the entry pointing at `table` (0 for the root), holding its count
  let spareTop: usize = 0; // the highest entry on the way pointing at a spare table, if any
  let spareLevel: u32 = 0;
  let aboveSpare: usize = 0; // the entry pointing at the table that holds spareTop
  while (true) {
    const slot = entrySlot(table, iova, at);
    let e = atomic.load<u64>(slot);
    if (at == level) {
      if (!entryIsEmpty(e) && !entryIsLeaf(e, at) && pointsAtSpare(e)) {
        releaseSpareAt(d, slot, at); // the leaf goes where a spare table was
        e = 0;
      }
      if (entryIsEmpty(e)) {
        atomic.store<u64>(slot, makeLeaf(oa, perm, level));
        countNewEntry(d, parent, spareTop, spareLevel, aboveSpare, iova);
        return <i32>level;
      }
      // Occupied by a table holding smaller leaves: fall back to the next smaller leaf.
      if (entryIsLeaf(e, at) || level == 0) return -2;
      level--;
    }
    if (entryIsEmpty(e)) {
      const top = buildPath(iova, oa, at - 1, level, perm);
      if (top == 0) return -1;
      store<u32>(d, load<u32>(d, DOM_PAGES) + (at - level), DOM_PAGES);
      atomic.store<u64>(slot, makeTable(top) + COUNT_ONE);
      countNewEntry(d, parent, spareTop, spareLevel, aboveSpare, iova);
      return <i32>level;
    } else if (entryIsLeaf(e, at)) {
      return -2; // the range is not empty: the TS layer never asks for this
    } else {
      if (spareTop == 0 && pointsAtSpare(e)) {
        spareTop = slot;
        spareLevel = at;
        aboveSpare = parent;
      }
      parent = slot;
      table = <usize>entryAddr(e);
    }
    at--;
  }
}

/**
 * New, unpublished tables for levels `from` down to `level`, each holding one entry on the way to
 * `iova` (a leaf at `level`), written with plain stores; returns the top page, or 0 when the pool
 * ran out (the pages taken so far are cleared and given back: they were never reachable).
 */
function buildPath(iova: u64, oa: u64, from: u32, level: u32, perm: u32): usize {
  const top = pageAlloc();
  if (top == 0) return 0;
  let table = top;
  for (let at = from; at > level; at--) {
    const slot = entrySlot(table, iova, at);
    const child = pageAlloc();
    if (child == 0) {
      for (let t = top, l = from; t != 0; l--) {
        const s = entrySlot(t, iova, l);
        const next: usize = t == table ? <usize>0 : <usize>entryAddr(load<u64>(s));
        store<u64>(s, 0);
        pageFreeClean(t);
        t = next;
      }
      return 0;
    }
    store<u64>(slot, makeTable(child) + COUNT_ONE);
    table = child;
  }
  store<u64>(entrySlot(table, iova, level), makeLeaf(oa, perm, level));
  return top;
}

/**
 * Maps [iova, iova+length) to [oa, oa+length) with `perm` (R=1 W=2 X=4) in domain `d`.
 * All or nothing: on ENOMEM what this call installed is removed again.
 */
export function mapRange(d: usize, iova: u64, oa: u64, length: u64, perm: u32): i32 {
  const top = load<u32>(d, DOM_LEVELS) - 1;
  const maxLeaf: u32 = top < <u32>MAX_LEAF_LEVEL ? top : <u32>MAX_LEAF_LEVEL;
  let done: u64 = 0;
  while (done < length) {
    const va = iova + done;
    const pa = oa + done;
    const left = length - done;
    let level = maxLeaf;
    while (level > 0) {
      const size = <u64>1 << levelShift(level);
      if (((va | pa) & (size - 1)) == 0 && left >= size) break;
      level--;
    }
    let used = installLeaf(d, va, pa, level, perm);
    // Out of pages: release every spare table, wait until no walk can still be in one, try again
    // (not after an injected failure, which stands for the pool running out for good).
    if (used == -1 && !failureInjected() && sweepAllDomains() != 0) {
      epochAdvance();
      awaitReaders();
      used = installLeaf(d, va, pa, level, perm);
    }
    if (used == -1) {
      // Out of pages: the leaves this call installed go again (the range also covers the failed
      // leaf's), and with them the tables it built or revived become spare again or are retired.
      unmapRange(d, iova, va + (<u64>1 << levelShift(level)) - 1);
      return STATUS_ENOMEM;
    }
    if (used < 0) {
      if (done != 0) unmapRange(d, iova, iova + done - 1);
      return STATUS_EINVAL;
    }
    done += <u64>1 << levelShift(<u32>used);
  }
  return STATUS_OK;
}

/** Index of the first entry of a table (covering from `base`, 2^shift bytes each) that [start, …] touches. */
// @ts-ignore: decorator
@inline function firstIndex(base: u64, start: u64, shift: u32): u32 {
  return start > base ? <u32>((start - base) >> shift) : 0;
}

/** Index of the last entry of that table that […, last] touches (the table's last when beyond it). */
// @ts-ignore: decorator
@inline function lastIndex(base: u64, last: u64, shift: u32): u32 {
  const index = (last - base) >> shift;
  return index < <u64>(TABLE_ENTRIES - 1) ? <u32>index : TABLE_ENTRIES - 1;
}

/**
 * Clears leaves inside [start, last] below `table` (covering from `base` at `level`); returns how
 * many of its live entries stopped being live (the caller's count drops by as much). A table the
 * range covers wholly is retired, spare or not; one it only empties becomes spare.
 */
function unmapLevel(d: usize, table: usize, level: u32, base: u64, start: u64, last: u64): u32 {
  const shift = levelShift(level);
  const first = firstIndex(base, start, shift);
  const end = lastIndex(base, last, shift);
  let removed: u32 = 0;
  for (let i = first; i <= end; i++) {
    const slot = table + <usize>i * PTE_SIZE;
    const e = atomic.load<u64>(slot);
    if (entryIsEmpty(e)) continue;
    const lo = base + (<u64>i << shift);
    const hi = lo + (<u64>1 << shift) - 1;
    if (entryIsLeaf(e, level)) {
      if (lo < start || hi > last) continue; // a leaf is never split
      atomic.store<u64>(slot, 0);
      removed++;
      continue;
    }
    const child = <usize>entryAddr(e);
    const count = childCount(e);
    if (lo >= start && hi <= last) {
      unmapLevel(d, child, level - 1, lo, start, last); // clears every entry below
      atomic.store<u64>(slot, 0);
      pageRetire(child, true); // every entry was just cleared: the page is zero
      if (count != 0) {
        store<u32>(d, load<u32>(d, DOM_PAGES) - 1, DOM_PAGES);
        removed++;
      } else {
        addSpares(d, -1);
      }
      continue;
    }
    if (count == 0) continue; // a spare table: nothing is mapped below it
    const gone = unmapLevel(d, child, level - 1, lo, start, last);
    if (gone == 0) continue;
    atomic.store<u64>(slot, e - <u64>gone * COUNT_ONE);
    if (gone == count) {
      store<u32>(d, load<u32>(d, DOM_PAGES) - 1, DOM_PAGES);
      addSpares(d, 1);
      removed++;
    }
  }
  return removed;
}

/** `last` clipped to the input space of a `levels`-level table (at most 57 bits, so no overflow). */
// @ts-ignore: decorator
@inline function lastInDomain(levels: u32, last: u64): u64 {
  const span: u64 = <u64>1 << levelShift(levels);
  return last < span ? last : span - 1;
}

/** Removes every leaf wholly inside [start, last] from domain `d` and ends IOTLB validity. */
export function unmapRange(d: usize, start: u64, last: u64): void {
  if (clearRange(d, start, last)) endUnmap(d);
}

/**
 * The first half of {@link unmapRange}: removes every leaf wholly inside [start, last] from domain
 * `d`; the caller then calls {@link endUnmap} (once for many ranges, before the control call
 * returns). @returns false when the range lies beyond the domain (nothing changed)
 */
export function clearRange(d: usize, start: u64, last: u64): bool {
  const levels = load<u32>(d, DOM_LEVELS);
  const top = lastInDomain(levels, last);
  if (start > top) return false;
  if (!clearWithinEntry(d, start, top)) unmapLevel(d, <usize>load<u32>(d, DOM_ROOT), levels - 1, 0, start, top);
  boundSpares();
  return true;
}

/**
 * {@link unmapLevel} from the root, with the same outcome, for a range that lies within one entry
 * at every level it reaches and covers no table whole: the common unmap of one whole leaf (a 4 KiB
 * page, a 2 MiB one), or of nothing. One walk down finds the leaf and the deepest table pointer
 * that still counts other live entries (`keep`); the leaf goes, `keep` counts one fewer, and every
 * pointer below it (each counted only this path) goes to 0, its table becoming spare, as
 * unmapLevel's count arithmetic would leave them. @returns false, with nothing changed, for any
 * other range (the caller then runs unmapLevel)
 */
function clearWithinEntry(d: usize, start: u64, last: u64): bool {
  const root = <usize>load<u32>(d, DOM_ROOT);
  const top = load<u32>(d, DOM_LEVELS) - 1;
  let table = root;
  let level = top;
  let keep: usize = 0; // 0: every pointer on the path counts 1 (no table on it keeps another entry)
  let e: u64 = 0;
  let slot: usize = 0;
  while (true) {
    const shift = levelShift(level);
    if (start >> shift != last >> shift) return false; // the range spans entries here
    slot = entrySlot(table, start, level);
    e = atomic.load<u64>(slot);
    if (entryIsEmpty(e)) return true; // nothing mapped in the range
    const whole = (start & ((<u64>1 << shift) - 1)) == 0 && last - start == (<u64>1 << shift) - 1;
    if (entryIsLeaf(e, level)) {
      if (!whole) return true; // inside a leaf, which is never split: nothing to remove
      break;
    }
    if (whole) return false; // the range covers this table whole, spare or not: unmapLevel retires it
    if (pointsAtSpare(e)) return true; // a spare table maps nothing
    if (childCount(e) > 1) keep = slot;
    table = <usize>entryAddr(e);
    level--;
  }
  atomic.store<u64>(slot, 0);
  // Counts, top down (the order is free: every state between shows the leaf gone): pointers above
  // `keep` are unchanged, `keep` loses one, those below it go from 1 to 0.
  let spared: i32 = 0;
  let below = keep == 0;
  table = root;
  for (let at = top; at > level; at--) {
    const p = entrySlot(table, start, at);
    const pe = atomic.load<u64>(p);
    if (p == keep) {
      atomic.store<u64>(p, pe - COUNT_ONE);
      below = true;
    } else if (below) {
      atomic.store<u64>(p, pe - COUNT_ONE);
      spared++;
    }
    table = <usize>entryAddr(pe);
  }
  if (spared != 0) {
    store<u32>(d, load<u32>(d, DOM_PAGES) - spared, DOM_PAGES);
    addSpares(d, spared);
  }
  return true;
}

/**
 * Ends IOTLB validity after {@link clearRange}: the generation moves after the entries are gone,
 * so refills see the new tree, and the epoch ends for the pages unlinked.
 */
export function endUnmap(d: usize): void {
  domainBumpGen(d);
  epochAdvance();
}

/**
 * Reads (and with `clear`, clears) the D bits of the leaves of `table` (covering from `base` at
 * `level`) inside [start, last]; sets bit (addr - start) >> pageLg2 of `bitmap` for every page of
 * a dirty leaf within the range. Returns the number of leaves whose D bit was cleared.
 */
function dirtyLevel(table: usize, level: u32, base: u64, start: u64, last: u64, pageLg2: u32, bitmap: usize, clear: bool): u32 {
  const shift = levelShift(level);
  const first = firstIndex(base, start, shift);
  const end = lastIndex(base, last, shift);
  let cleared: u32 = 0;
  for (let i = first; i <= end; i++) {
    const slot = table + <usize>i * PTE_SIZE;
    const e = atomic.load<u64>(slot);
    if (entryIsEmpty(e)) continue;
    const lo = base + (<u64>i << shift);
    if (!entryIsLeaf(e, level)) {
      cleared += dirtyLevel(<usize>entryAddr(e), level - 1, lo, start, last, pageLg2, bitmap, clear);
      continue;
    }
    if (!(e & <u64>PTE_D)) continue;
    const hi = lo + (<u64>1 << shift) - 1;
    const from = (lo > start ? lo : start) - start;
    const to = (hi < last ? hi : last) - start;
    if (bitmap != 0) {
      for (let bit = from >> pageLg2; bit <= to >> pageLg2; bit++) {
        const word = bitmap + <usize>(bit >> 3);
        store<u8>(word, <u8>(<u32>load<u8>(word) | (<u32>1 << <u32>(bit & 7))));
      }
    }
    // Translators only ever set D, so clearing it is one atomic AND.
    if (clear) {
      atomic.and<u64>(slot, ~<u64>PTE_D);
      cleared++;
    }
  }
  return cleared;
}

/**
 * GET_DIRTY_BITMAP / dirty-tracking enable for domain `d`: reports dirty pages of [start, last]
 * into the little-endian bitmap at `bitmap` (0 = none) and, with `clear`, clears their D bits
 * and bumps the generation so that no IOTLB keeps write rights to a page now clean.
 */
export function readDirty(d: usize, start: u64, last: u64, pageLg2: u32, bitmap: usize, clear: bool): void {
  const levels = load<u32>(d, DOM_LEVELS);
  const top = lastInDomain(levels, last);
  if (start > top) return;
  if (dirtyLevel(<usize>load<u32>(d, DOM_ROOT), levels - 1, 0, start, top, pageLg2, bitmap, clear) != 0) {
    domainBumpGen(d);
  }
}
