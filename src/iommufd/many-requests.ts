/**
 * Planning of the page table's "many" calls (`IoPagetable.mapMany`, `unmapMany`): N requests
 * applied with the outcome of N calls in order, but checked first and applied together. Here:
 * the request type, the per-request error capture, the IOVA order of the checked areas, and the
 * test that decides whether they may go together.
 *
 * Invariant the planning relies on: requests whose areas are pairwise disjoint do not depend on
 * each other (each one's checks saw the table its own call would have seen); any overlap sends
 * the batch back to one call per request. Pure: nothing here changes the table.
 * @module
 */
import { caught, type IommuError } from '../base/errno';
import { orderByKeys } from '../base/sort';
import type { Area } from './area';
import { compareU64 } from './io-range';

/** One MAP request of {@link IoPagetable.mapMany}: a fixed IOVA. */
export interface MapRequest {
  iova: bigint;
  length: bigint;
  phys: bigint;
  read: boolean;
  write: boolean;
}

/**
 * Runs `step`; an IommuError it throws goes to `failed(i, e)` and gives undefined, anything else
 * propagates.
 */
export function recordFailure<T>(i: number, failed: (i: number, e: IommuError) => void, step: () => T): T | undefined {
  let value: T | undefined;
  const e = caught(() => void (value = step()));
  if (e !== undefined) failed(i, e);
  return value;
}

/**
 * Indices of `areas` in IOVA order. Sorted on doubles (`Number` of a u64 is monotonic, so only
 * equal doubles need the exact compare), and not at all when already in order.
 */
export function byIova(areas: readonly Area[]): ArrayLike<number> {
  let sorted = true;
  for (let k = 1; k < areas.length && sorted; k++) sorted = areas[k - 1]!.iova <= areas[k]!.iova;
  if (sorted) return areas.map((_, k) => k);
  return orderByKeys(Float64Array.from(areas, (a) => Number(a.iova)), (a, b) => compareU64(areas[a]!.iova, areas[b]!.iova));
}

/** Whether two of `areas`, taken in `order` (from {@link byIova}), overlap. */
export function anyOverlap(areas: readonly Area[], order: ArrayLike<number>): boolean {
  for (let k = 1; k < order.length; k++) {
    if (areas[order[k]!]!.iova <= areas[order[k - 1]!]!.last) return true;
  }
  return false;
}
