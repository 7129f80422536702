/**
 * @internal The whole state of an IoPagetable as snapshots see it (src/snapshot/), and the
 * checks of a state to restore that need no table: the areas sorted, disjoint and readable or
 * writable, the allowed list sorted and disjoint, every alignment a power of two.
 *
 * Invariant: a state is held by reference: owners and sinks are the caller's objects; everything
 * else is plain data that `IoPagetable.importState` copies. A state that fails a check is
 * refused with a plain Error (a corrupt snapshot), not an IommuError.
 * @module
 */
import { U64_MAX } from '../base/range';
import { makeArea, type Area } from './area';
import type { DomainSink } from './domain-sink';
import type { IoRange } from './io-range';
import { isPow2 } from './iova-alignment';

/**
 * @internal The whole state of a table, by reference (snapshots, src/snapshot/): owners and sinks
 * are the caller's objects; everything else is plain data.
 */
export interface IoPagetableState {
  areas: readonly Area[];
  allowed: readonly IoRange[];
  /** Attached domains in the order they were added, with the page size each contributes. */
  domains: readonly { readonly sink: DomainSink; readonly pageSize: bigint }[];
  /** Reserved ranges by owner, as each owner gave them. */
  reserved: readonly (readonly [owner: object, ranges: readonly IoRange[]])[];
  /** Alignment requirements of non-domain users, by owner. */
  alignments: readonly (readonly [owner: object, alignment: bigint])[];
}

/** Refuses a state to restore. @throws Error always */
export function badState(what: string): never {
  throw new Error(`io-pagetable state: ${what}`);
}

/**
 * The checks of `s` that need no table, in this order: areas, allowed list, alignments.
 * @returns fresh copies of `s.areas`, in order
 * @throws Error (see {@link badState}) when a check fails
 */
export function checkedStateAreas(s: IoPagetableState): Area[] {
  const sortedDisjoint = (list: readonly { start: bigint; last: bigint }[], strict: boolean): boolean =>
    list.every((r, i) => r.start >= 0n && r.last <= U64_MAX && (strict ? r.start < r.last : r.start <= r.last) && (i === 0 || list[i - 1]!.last < r.start));
  const areas = s.areas.map((a) => makeArea(a.iova, a.last, a.phys, a.read, a.write));
  if (!sortedDisjoint(areas.map((a) => ({ start: a.iova, last: a.last })), false) || areas.some((a) => !a.read && !a.write)) badState('areas overlap or are out of order');
  if (!sortedDisjoint(s.allowed, true)) badState('allowed ranges overlap or are out of order');
  if (![...s.domains.map((d) => d.pageSize), ...s.alignments.map(([, a]) => a)].every(isPow2)) badState('an alignment is not a power of two');
  return areas;
}
