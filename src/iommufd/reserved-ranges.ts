/**
 * The reserved ranges of an IOAS (the kernel's `reserved_itree`), as pure functions over the
 * page table's data: the union of every owner's ranges, that union as a flat array of double
 * keys for the MAP fast paths, its holes (IOVA_RANGES), and the ranges outside a domain's aperture.
 *
 * Invariants: a union is sorted, disjoint and has touching ranges coalesced (so one binary search
 * answers "does [start, last] touch a reserved range"); its keys array holds `keyOf(start)` and
 * `keyOf(last)` of range i at 2i and 2i+1, ascending. Ranges of different owners may overlap;
 * only the union is searched.
 * @module
 */
import { U64_MAX } from '../base/range';
import { keyOf } from '../base/u64-word';
import { byStart, coalesce, type IoRange } from './io-range';

/** The union of every owner's reserved ranges: sorted, disjoint, touching ranges coalesced; frozen. */
export function reservedUnion(byOwner: ReadonlyMap<object, readonly IoRange[]>): readonly IoRange[] {
  const all: IoRange[] = [];
  for (const list of byOwner.values()) all.push(...list);
  return coalesce(all.sort(byStart));
}

/** `union` as keys: start and last of range i at 2i and 2i+1. */
export function reservedKeysOf(union: readonly IoRange[]): Float64Array<ArrayBuffer> {
  return Float64Array.from(union.flatMap((r) => [keyOf(r.start), keyOf(r.last)]));
}

/**
 * Whether `[start, last]` touches a range of `keys` (from {@link reservedKeysOf}). Exact when
 * `start` and `last` are below 2^53 (the MAP fast paths take it only below FAST_LIMIT).
 */
export function reservedKeysHit(keys: Float64Array, start: number, last: number): boolean {
  let lo = 0;
  let hi = keys.length >>> 1;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (keys[2 * mid + 1]! < start) lo = mid + 1;
    else hi = mid;
  }
  return 2 * lo < keys.length && keys[2 * lo]! <= last;
}

/** IOVA_RANGES: the holes of `union` over `[0, U64_MAX]`, lowest first, as fresh objects. */
export function holesOf(union: readonly IoRange[]): IoRange[] {
  const ranges: IoRange[] = [];
  let cursor = 0n; // first address not yet accounted for; U64_MAX + 1 once the top is reserved
  for (const r of union) {
    if (r.start > cursor) ranges.push({ start: cursor, last: r.start - 1n });
    cursor = r.last + 1n;
  }
  if (cursor <= U64_MAX) ranges.push({ start: cursor, last: U64_MAX });
  return ranges;
}

/** What a domain with this aperture reserves: everything outside it, lowest first (none for the full space). */
export function outsideAperture(aperture: IoRange): IoRange[] {
  const outside: IoRange[] = [];
  if (aperture.start !== 0n) outside.push({ start: 0n, last: aperture.start - 1n });
  if (aperture.last !== U64_MAX) outside.push({ start: aperture.last + 1n, last: U64_MAX });
  return outside;
}
