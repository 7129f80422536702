/**
 * The IOVA alignment of an IOAS (the kernel's `iova_alignment`): the page size of the model, the
 * power-of-two rule, and the checks that keep every area aligned as MAP, COPY, domains and
 * accesses come and go (Linux io_pagetable.c: iopt_calculate_iova_alignment,
 * iopt_check_iova_alignment, and the length and offset checks of iopt_map_pages/iopt_insert_area).
 *
 * Invariant these checks keep for the page table: the alignment is a power of two `<= PAGE_SIZE`,
 * and every area's iova, length and phys are multiples of it. Each check throws IommuError with
 * the errno iommufd gives and changes nothing.
 * @module
 */
import { fail } from '../base/errno';
import { areaLength, type Area } from './area';
import type { DomainEntry } from './domain-sink';
import { hex, maxU64 } from './io-range';

/**
 * The CPU page size of the model (the kernel's `PAGE_SIZE`). The IOVA alignment never exceeds
 * it, auto IOVA keeps the page offset of `phys` modulo it, and auto IOVA leaves one such page
 * free at both ends of the space.
 */
export const PAGE_SIZE = 4096n;

/** Whether `x` is a power of two (so a valid page size or alignment). */
export function isPow2(x: bigint): boolean {
  return x > 0n && (x & (x - 1n)) === 0n;
}

/** Whether `a`'s iova, length and phys are all multiples of `alignment`. */
export function isAlignedArea(a: Area, alignment: bigint): boolean {
  return a.iova % alignment === 0n && areaLength(a) % alignment === 0n && a.phys % alignment === 0n;
}

/**
 * The alignment as a bit mask for the fast paths: `alignment - 1` as a number when it is at most
 * PAGE_SIZE (always, outside a failing restore), else -1 (no fast path).
 */
export function alignMaskOf(alignment: bigint): number {
  return alignment <= PAGE_SIZE ? Number(alignment) - 1 : -1;
}

/** §3.2 step 6: the length must be non-zero and a multiple of the alignment. */
export function checkLength(op: string, alignment: bigint, length: bigint): void {
  if (length === 0n) fail('EINVAL', op, 'expected a non-zero length, got 0');
  if (length % alignment !== 0n) {
    fail('EINVAL', op, `expected a length multiple of the IOVA alignment ${hex(alignment)}, got ${hex(length)}`);
  }
}

/**
 * iopt_insert_area()'s offset check: the backing address must keep the alignment too. The
 * kernel checks only that; we also check iova and length because a COPY slice cut from a table
 * with a smaller alignment could otherwise break the "every area aligned" invariant.
 */
export function checkBacking(op: string, alignment: bigint, area: Area): void {
  if (!isAlignedArea(area, alignment)) {
    fail('EINVAL', op, `expected iova, length and phys multiples of the IOVA alignment ${hex(alignment)}, got ${hex(areaLength(area))} bytes at ${hex(area.iova)} -> ${hex(area.phys)}`);
  }
}

/**
 * iopt_check_iova_alignment(): raising the alignment from `current` to `next` needs every area's
 * iova, length and phys to be multiples of `next`; above the page size no domain could take every area.
 * @param areas gives the areas; called only when the alignment grows
 */
export function checkAlignmentGrowth(op: string, areas: () => readonly Area[], current: bigint, next: bigint): void {
  if (next > PAGE_SIZE) fail('EINVAL', op, `expected an IOVA alignment of at most ${hex(PAGE_SIZE)}, got ${hex(next)}`);
  if (next === current) return;
  for (const a of areas()) {
    if (!isAlignedArea(a, next)) {
      fail('EADDRINUSE', op, `expected every mapping aligned to ${hex(next)}, got ${hex(areaLength(a))} bytes at ${hex(a.iova)} -> ${hex(a.phys)}`);
    }
  }
}

/** iopt_calculate_iova_alignment(): the largest requirement of the domains and accesses, at least 1. */
export function computeAlignment(domains: readonly DomainEntry[], extra: Iterable<bigint>): bigint {
  let a = 1n;
  for (const d of domains) a = maxU64(a, d.pageSize);
  for (const x of extra) a = maxU64(a, x);
  return a;
}
