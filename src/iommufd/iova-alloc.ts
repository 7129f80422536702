/**
 * Automatic IOVA allocation (Linux io_pagetable.c: iopt_alloc_iova), as pure functions over the
 * page table's data: first fit, lowest address first, in `[PAGE_SIZE, U64_MAX - PAGE_SIZE]` (so 0
 * is never returned), inside the allowed spans when there are any, keeping the backing address's
 * alignment (up to 1 GiB) so the domains can use large leaves.
 *
 * Invariant of an answer: `[iova, iova + length - 1]` lies in one allowed span (or the window),
 * touches no reserved range and no area, is aligned to the alignment the mapping allows (never
 * below the table's), and keeps `phys`'s offset in its page. Nothing here changes the table.
 * @module
 */
import { fail } from '../base/errno';
import { U64_MAX } from '../base/range';
import type { AreaStore } from './area-store';
import { keyOf } from '../base/u64-word';
import { PAGE_SIZE } from './iova-alignment';
import { firstEndingAtOrAfter, hex, maxU64, minU64, type IoRange } from './io-range';

/**
 * Cap on the alignment automatic IOVA allocation asks for: 1 GiB, our largest leaf. The kernel
 * caps at `PAGE_SIZE` or the THP size; we pick the largest leaf so big maps can use 1 GiB leaves.
 */
const MAX_AUTO_ALIGNMENT = 1n << 30n;

/** The kernel's `ULONG_MAX / 2` (C integer division): auto IOVA rejects lengths from here on. */
const AUTO_LENGTH_LIMIT = U64_MAX / 2n;

/**
 * iopt_alloc_iova() (§3.3): a free IOVA for `length` bytes backed at `phys`.
 * @param areas the table's areas
 * @param reserved the union of the reserved ranges (sorted, disjoint)
 * @param allowedSpans the allowed ranges with touching ones coalesced; empty = the whole window
 * @param alignment the table's IOVA alignment
 * @param phys the backing address whose alignment and page offset the IOVA should keep
 * @throws IommuError `EOVERFLOW` `length >= ULONG_MAX/2`; `EINVAL` the alignment the mapping
 *   allows is below `alignment`; `ENOSPC` no hole fits.
 */
export function allocIova(
  op: string,
  areas: AreaStore,
  reserved: readonly IoRange[],
  allowedSpans: readonly IoRange[],
  alignment: bigint,
  phys: bigint,
  length: bigint,
): bigint {
  if (length >= AUTO_LENGTH_LIMIT) fail('EOVERFLOW', op, `expected an automatic-IOVA length below ${hex(AUTO_LENGTH_LIMIT)}, got ${hex(length)}`);
  // Keeping the backing address's alignment lets the domains use large leaves.
  let align = roundupPow2(length);
  if (phys !== 0n) align = minU64(align, phys & -phys);
  align = minU64(align, MAX_AUTO_ALIGNMENT);
  if (align < alignment) {
    fail('EINVAL', op, `expected a mapping that allows the IOVA alignment ${hex(alignment)}, got length ${hex(length)} at ${hex(phys)} (alignment ${hex(align)})`);
  }
  // Below a page, the IOVA keeps phys's offset in its page. That offset is a multiple of
  // `align` (align <= lowest set bit of phys), so stepping by pages from it keeps `align`.
  // From a page up, phys's offset is 0 and stepping by `align` is enough.
  const step = align > PAGE_SIZE ? align : PAGE_SIZE;
  const offset = phys % PAGE_SIZE;
  const window: IoRange = { start: PAGE_SIZE, last: U64_MAX - PAGE_SIZE };
  const spans = allowedSpans.length === 0 ? [window] : allowedSpans;
  for (const s of spans) {
    const start = maxU64(s.start, window.start);
    const last = minU64(s.last, window.last);
    if (start > last) continue;
    const iova = findFree(areas, reserved, start, last, length, step, offset);
    if (iova !== undefined) return iova;
  }
  fail('ENOSPC', op, `expected a free IOVA range of ${hex(length)} bytes (alignment ${hex(align)}), got none`);
}

/**
 * Lowest `x` in `[start, last]` with `x % step == offset` whose `[x, x+length-1]` fits in
 * `[start, last]` and touches no reserved range and no area. A forward walk over the reserved
 * list and one search of the areas per step: O((areas + reserved) log areas) in the worst case.
 */
function findFree(areas: AreaStore, resv: readonly IoRange[], start: bigint, last: bigint, length: bigint, step: bigint, offset: bigint): bigint | undefined {
  let ri = firstEndingAtOrAfter(resv, start);
  let cursor = start;
  for (;;) {
    const cand = cursor + ((((offset - cursor) % step) + step) % step);
    const candLast = cand + length - 1n;
    if (candLast > last) return undefined;
    const area = areas.at(areas.seek(cand, keyOf(cand)));
    while (ri < resv.length && resv[ri]!.last < cand) ri++;
    let used = -1n; // last address of the furthest-reaching range in the way, -1 if none
    if (area !== undefined && area.iova <= candLast) used = area.last;
    if (ri < resv.length && resv[ri]!.start <= candLast && resv[ri]!.last > used) used = resv[ri]!.last;
    if (used < 0n) return cand;
    // Every start in [cand, used] still overlaps that range, so resume just past it.
    cursor = used + 1n;
  }
}

/** Smallest power of two >= `x` (`x >= 1`). */
function roundupPow2(x: bigint): bigint {
  let p = 1n;
  while (p < x) p <<= 1n;
  return p;
}
