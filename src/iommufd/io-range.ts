/**
 * Inclusive u64 ranges `[start, last]` and the helpers the page table uses on sorted lists of
 * them (reserved, allowed): binary search for the first range that can hit an address,
 * intersection test, union of touching ranges, and the formatting of error messages.
 *
 * Invariants the helpers assume (and `coalesce` produces): a "sorted, disjoint" list is ordered
 * by `start` with no two ranges sharing an address, so `last` ascends too. All pure: no helper
 * changes its arguments (`coalesce` and `copyRanges` return fresh ranges).
 * @module
 */
import { fail } from '../base/errno';
import { U64_MAX } from '../base/range';

/** An inclusive range `[start, last]` of u64 addresses; `start <= last`. */
export interface IoRange {
  /** The first address of the range. */
  start: bigint;
  /** The last address of the range (inclusive). */
  last: bigint;
}

/**
 * Index of the first element whose `last >= addr`, in an array sorted and disjoint (so `last`
 * ascends); `arr.length` if none. The first element that can intersect anything from `addr` up.
 */
export function firstEndingAtOrAfter(arr: readonly { readonly last: bigint }[], addr: bigint): number {
  let lo = 0;
  let hi = arr.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (arr[mid]!.last < addr) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Index of the lowest element of a sorted, disjoint list intersecting `[start, last]`, or -1. */
export function hitIndex(arr: readonly IoRange[], start: bigint, last: bigint): number {
  const i = firstEndingAtOrAfter(arr, start);
  return i < arr.length && arr[i]!.start <= last ? i : -1;
}

/** Union of ranges sorted by start: sorted, disjoint, touching ranges merged; frozen. */
export function coalesce(sorted: readonly IoRange[]): readonly IoRange[] {
  const out: IoRange[] = [];
  for (const r of sorted) {
    const top = out[out.length - 1];
    if (top !== undefined && r.start <= top.last + 1n) {
      if (r.last > top.last) top.last = r.last;
    } else {
      out.push({ start: r.start, last: r.last });
    }
  }
  return Object.freeze(out.map((r) => Object.freeze(r)));
}

/** Fresh mutable copies of `ranges` (the caller's objects are never kept). */
export function copyRanges(ranges: readonly IoRange[]): IoRange[] {
  return ranges.map((r) => ({ start: r.start, last: r.last }));
}

/** Comparator: ascending `start`. */
export function byStart(a: IoRange, b: IoRange): number {
  return compareU64(a.start, b.start);
}

/** Comparator of two bigints: -1, 0 or 1. */
export function compareU64(a: bigint, b: bigint): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** `0x…` form of a value, as every error message of the page table writes it. */
export function hex(v: bigint): string {
  return `0x${v.toString(16)}`;
}

/** `[0x…, 0x…]` form of a range for error messages. */
export function fmtRange(r: IoRange): string {
  return `[${hex(r.start)}, ${hex(r.last)}]`;
}

/** The smaller of two bigints. */
export function minU64(a: bigint, b: bigint): bigint {
  return a < b ? a : b;
}

/** The larger of two bigints. */
export function maxU64(a: bigint, b: bigint): bigint {
  return a > b ? a : b;
}

/** Values reach the page table already checked by the command layer; this guards direct callers. */
export function checkU64(op: string, what: string, v: bigint): void {
  if (v < 0n || v > U64_MAX) fail('EOVERFLOW', op, `expected ${what} within u64, got ${v}`);
}
