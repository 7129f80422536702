/**
 * The device domains an IOAS keeps in sync with its areas (a HWPT's page table in the Wasm core),
 * as the page table sees them: the {@link DomainSink} contract, what a domain tells when it is
 * attached, and the functions that push areas into or out of a list of attached domains.
 *
 * Invariant these functions keep for the page table: every attached domain holds exactly the
 * table's areas. Installing is all or nothing per call (per area for {@link installEach}): when a
 * domain throws, the (domain, area) pairs installed so far are removed again, newest first,
 * before the error propagates. Removing never throws.
 * @module
 */
import { caught, type IommuError } from '../base/errno.js';
import type { Area } from './area.js';
import type { IoRange } from './io-range.js';

/** A device domain kept in sync with the areas (a HWPT's page table in the Wasm core). */
export interface DomainSink {
  /**
   * Install one whole area.
   * @param length the area's length (`last - iova + 1`), when the caller has it at hand
   * @param outputKey `keyOf(phys) + keyOf(length)` (area-store.ts), when the caller has it at hand
   * @throws IommuError `ENOMEM`; on throw it has installed nothing of that area.
   */
  mapArea(area: Area, length?: bigint, outputKey?: number): void;
  /** Remove one whole area previously installed. Never throws. */
  unmapArea(area: Area): void;
  /**
   * Optional: `mapArea` for each area in order, each wholly or not at all, as one call.
   * @param entries the same areas as the requests of a MAP batch, for a sink that would rather
   *   read those than the areas' bigints
   * @returns per area, undefined (installed) or the error `mapArea` would have thrown; or
   *   undefined for the whole list when every area was installed
   */
  mapAreas?(areas: readonly Area[], entries?: BatchEntries): (IommuError | undefined)[] | undefined;
  /** Optional: `unmapArea` for each area, in order, as one call. */
  unmapAreas?(areas: readonly Area[]): void;
}

/**
 * The requests a list of areas was made from, in the layout of a MAP batch (ioas-batch.ts): area
 * k is `[iova, iova + length - 1]` to `phys`, the u64 words 3k, 3k+1, 3k+2 of the entries, read as
 * u32 halves from `words` (HI/LO of area-store.ts), all below FAST_LIMIT; `perms[k]` has bit 0
 * read and bit 1 write (both when absent). Describes exactly the areas it comes with.
 */
export interface BatchEntries {
  readonly words: Uint32Array;
  readonly perms: Uint8Array | undefined;
}

/** What the pagetable needs to know about a domain when it is added. */
export interface DomainInfo {
  /** Smallest page size of the domain: a power of two, e.g. `4096n`. */
  pageSize: bigint;
  /** IOVAs the domain can translate; everything outside is reserved while it is attached. */
  aperture: IoRange;
}

/** One attached domain and the page size it contributes to the alignment. */
export interface DomainEntry {
  readonly sink: DomainSink;
  readonly pageSize: bigint;
}

/**
 * All of `created` (one area or a list, contiguous or not, free in the table) in every domain of
 * `domains`, or nothing and a throw: on an error every (domain, area) pair installed so far is
 * removed again, newest first, and the error is rethrown.
 */
export function installInDomains(domains: readonly DomainEntry[], created: Area | readonly Area[]): void {
  if (domains.length === 0) return;
  if (!Array.isArray(created)) {
    if (domains.length === 1) return domains[0]!.sink.mapArea(created as Area); // installs all or nothing
    created = [created as Area];
  }
  const done: [DomainSink, Area][] = [];
  try {
    for (const a of created as readonly Area[]) {
      for (const d of domains) {
        d.sink.mapArea(a);
        done.push([d.sink, a]);
      }
    }
  } catch (e) {
    for (let i = done.length - 1; i >= 0; i--) done[i]![0].unmapArea(done[i]![1]);
    throw e;
  }
}

/**
 * Each area of `areas` (disjoint, free in the table) in every domain, each wholly or not at all,
 * in order. With one domain that takes batches, that is one call.
 * @param entries the requests `areas` were made from, when they are a MAP batch's (see {@link BatchEntries})
 * @returns per area, undefined (installed) or the error that kept it out; or undefined when
 *   every area was installed
 */
export function installEach(domains: readonly DomainEntry[], areas: readonly Area[], entries?: BatchEntries): (IommuError | undefined)[] | undefined {
  const only = domains.length === 1 ? domains[0]!.sink : undefined;
  if (only?.mapAreas) return only.mapAreas(areas, entries);
  return areas.map((a) => caught(() => installInDomains(domains, a)));
}

/** Every area of `leaving` out of every domain: one call per domain that takes batches. Never throws. */
export function removeFromDomains(domains: readonly DomainEntry[], leaving: readonly Area[]): void {
  for (const d of domains) {
    if (d.sink.unmapAreas) d.sink.unmapAreas(leaving);
    else for (const a of leaving) d.sink.unmapArea(a);
  }
}
