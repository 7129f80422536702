/**
 * One mapping of an IOAS (the kernel's `iopt_area`): the record the page table keeps, the domains
 * install and software-DMA users pin, and the slices COPY and software DMA cut from a run of them.
 *
 * Invariants: `iova <= last`; `read || write`; the page table never changes an area once made
 * (see {@link Area}); every area is made by {@link makeArea}, so all share one object shape.
 * @module
 */

/**
 * One mapping: IOVA `[iova, last]` translates to `phys + (addr - iova)`. The table never changes
 * an area once made, so a sink or a caller may keep them as identity keys; those that
 * {@link IoPagetable.areas} hands out are frozen (freezing each on creation would cost MAP more
 * than the rest of its bookkeeping).
 */
export interface Area {
  /** First IOVA of the area. */
  readonly iova: bigint;
  /** Last IOVA of the area (inclusive). */
  readonly last: bigint;
  /** Output address of the byte at `iova`. */
  readonly phys: bigint;
  /** The device may read memory through this area. */
  readonly read: boolean;
  /** The device may write memory through this area. */
  readonly write: boolean;
}

/** One piece of a contiguous run of areas, cut to the requested range (see {@link IoPagetable.slices}). */
export interface AreaSlice {
  area: Area;
  start: bigint;
  last: bigint;
}

/**
 * A new area (frozen when {@link IoPagetable.areas} hands it out). Every area is made here, so
 * all of them share one object shape (V8 keeps the sinks' and the store's property loads
 * monomorphic).
 */
export function makeArea(iova: bigint, last: bigint, phys: bigint, read: boolean, write: boolean): Area {
  return { iova, last, phys, read, write };
}

/** Length of an area; the inverse of `toLast` (src/base/range.ts). */
export function areaLength(a: Area): bigint {
  return a.last - a.iova + 1n;
}
