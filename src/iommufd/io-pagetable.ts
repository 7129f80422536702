/**
 * The IOVA bookkeeping of one I/O address space (IOAS): mapped areas, reserved and allowed
 * ranges, the IOVA alignment, and the device domains that mirror the areas.
 * This is our `io_pagetable.c`: an interval data structure with no knowledge of object IDs,
 * FDs or commands. `ioas.ts` checks command fields, looks objects up and calls in here.
 * Check orders and errnos follow iommufd (Linux drivers/iommu/iommufd/io_pagetable.c and ioas.c); a failed call changes nothing.
 *
 * This file holds the IoPagetable class: its state and every method that changes it, with the
 * single-call fast paths (`mapFixed`, the one-area case of `unmap`) inline, because they read and
 * write several private fields at once. The pieces that need no private state live beside it:
 * area.ts (the area record), io-range.ts (ranges and sorted-range helpers), domain-sink.ts (the
 * domain contract and all-or-nothing install), reserved-ranges.ts, iova-alignment.ts,
 * iova-alloc.ts (automatic IOVA), many-requests.ts (planning of mapMany/unmapMany),
 * batch-fast-path.ts (the checks of the batch fast paths), io-pagetable-state.ts (snapshots).
 * @module
 */

import { fail, type IommuError } from '../base/errno';
import { toLast, U64_MAX } from '../base/range';
import { areaLength, makeArea, type Area, type AreaSlice } from './area';
import { AreaStore, FAST_LIMIT } from './area-store';
import { bigintOf, keyOf } from '../base/u64-word';
import { fillUnmapResults, insertMapBatch, settleMapBatch, takeUnmapBatch } from './batch-fast-path';
import { installEach, installInDomains, removeFromDomains, type DomainEntry, type DomainInfo, type DomainSink } from './domain-sink';
import { badState, checkedStateAreas, type IoPagetableState } from './io-pagetable-state';
import { byStart, checkU64, coalesce, copyRanges, fmtRange, hex, hitIndex, maxU64, type IoRange } from './io-range';
import { allocIova } from './iova-alloc';
import { PAGE_SIZE, alignMaskOf, checkAlignmentGrowth, checkBacking, checkLength, computeAlignment, isAlignedArea, isPow2 } from './iova-alignment';
import { anyOverlap, byIova, recordFailure, type MapRequest } from './many-requests';
import { holesOf, outsideAperture, reservedKeysHit, reservedKeysOf, reservedUnion } from './reserved-ranges';

/**
 * The page table of one IOAS. Not thread-safe: only the owner thread calls it.
 *
 * Invariants kept by every method:
 * - `areas` is sorted by `iova` and disjoint (so `last` is sorted too); areas are never merged.
 * - every area's `iova`, length and `phys` are multiples of `alignment`, and `alignment` is a
 *   power of two `<= 4096` (so `phys % alignment` equals the kernel's page-offset check);
 * - no area and no allowed range intersects a reserved range;
 * - every attached domain holds exactly the current areas.
 */
export class IoPagetable {
  /** Mapped areas, sorted by iova, disjoint. */
  #areas = new AreaStore();
  /** Frozen copy of `#areas` handed out by the getter; dropped on every change. */
  #areasView: readonly Area[] | undefined = undefined;
  /** Reserved ranges as each owner gave them; ranges of different owners may overlap. */
  #reservedByOwner = new Map<object, readonly IoRange[]>();
  /**
   * Union of all owners' reserved ranges: sorted, disjoint, touching ranges coalesced. Rebuilt
   * on each reserve/release (attach/detach time), so lookups are one binary search.
   */
  #reserved: readonly IoRange[] = [];
  /** `#reserved` as keys (keyOf): start and last of range i at 2i and 2i+1. */
  #reservedKeys = new Float64Array(0);
  /** The allowed list: sorted by start, disjoint. Empty means auto IOVA may use any hole. */
  #allowed: readonly IoRange[] = Object.freeze([]);
  /**
   * `#allowed` with touching ranges coalesced: the spans auto IOVA searches, so a mapping may
   * straddle two touching allowed ranges (the kernel's span iterator merges them too).
   */
  #allowedSpans: readonly IoRange[] = [];
  #domains: DomainEntry[] = [];
  #domainsView: readonly DomainSink[] | undefined = undefined;
  /** Alignment requirements of non-domain users (software-DMA accesses), by owner. */
  #extraAlignment = new Map<object, bigint>();
  #alignment = 1n;
  /** `#alignment - 1` as a number when the alignment is at most PAGE_SIZE (always, outside a failing restore), else -1. */
  #alignMask = 0;

  /** The IOVA alignment (`iova_alignment`): 1 on a fresh table, else the largest requirement of the domains and accesses. */
  get alignment(): bigint {
    return this.#alignment;
  }

  /** The areas, sorted by iova, never overlapping. A frozen snapshot: it does not change when the table does. */
  get areas(): readonly Area[] {
    return (this.#areasView ??= Object.freeze(this.#areas.toArray().map((a) => Object.freeze(a))));
  }

  /** The attached domains in the order they were added. A frozen snapshot. */
  get domains(): readonly DomainSink[] {
    return (this.#domainsView ??= Object.freeze(this.#domains.map((d) => d.sink)));
  }

  /** The current allowed list (sorted by start), empty when none is set. A frozen snapshot. */
  get allowed(): readonly IoRange[] {
    return this.#allowed;
  }

  /**
   * MAP: create one area `[iova, iova+length-1] -> phys` and install it in every domain
   * (Linux io_pagetable.c: iopt_map_pages, iopt_alloc_iova). The caller has already done the uAPI checks (flags,
   * `iova`/`length >= U64_MAX`, IOAS lookup).
   * @param op public call name used in error messages, e.g. `'ioasMap'`
   * @param args `iova` given = fixed IOVA, undefined = automatic; `phys` is the backing address
   * @returns the IOVA of the new area (the given one when fixed)
   * @throws IommuError, in this order:
   *   `EINVAL` neither read nor write; `EOVERFLOW` a value outside u64 (both normally caught by
   *   the caller); `EINVAL` `length == 0`; `EOVERFLOW` `phys + length - 1` passes 2^64-1;
   *   `EINVAL` `length` not a multiple of {@link alignment};
   *   fixed: `EINVAL` iova misaligned, `EOVERFLOW` `iova + length - 1` wraps, `EINVAL` hits a
   *   reserved range, `EEXIST` hits an area (the allowed list is not consulted);
   *   automatic: `EOVERFLOW` `length >= ULONG_MAX/2`, `EINVAL` the alignment the mapping allows is
   *   below {@link alignment}, `ENOSPC` no hole fits;
   *   `EINVAL` `phys` not a multiple of {@link alignment};
   *   whatever a domain's `mapArea` throws (`ENOMEM`), after undoing the domains already filled.
   */
  map(op: string, args: { iova?: bigint; length: bigint; phys: bigint; read: boolean; write: boolean }): bigint {
    const area = this.#checkMap(op, args);
    this.#install([area]);
    return area.iova;
  }

  /**
   * {@link map} with a fixed IOVA, for a caller that has checked `iova`, `length` and `phys` are
   * u64 (ioasMap): the same outcome. When all three are below FAST_LIMIT and every check passes --
   * the common case -- the checks run on doubles with one search of the areas; anything else,
   * every error included, goes through {@link map}.
   */
  mapFixed(op: string, iova: bigint, length: bigint, phys: bigint, read: boolean, write: boolean): bigint {
    const iovaK = keyOf(iova);
    const lengthK = keyOf(length);
    const physK = keyOf(phys);
    const mask = this.#alignMask;
    // `x | y` of integral doubles works on their low 32 bits, which hold every bit of the mask.
    if ((read || write) && lengthK !== 0 && iovaK < FAST_LIMIT && lengthK < FAST_LIMIT && physK < FAST_LIMIT && mask >= 0 && ((iovaK | lengthK | physK) & mask) === 0) {
      const lastK = iovaK + lengthK - 1; // exact, below 2^53
      const store = this.#areas;
      let pos = store.seekExact(iovaK);
      const hit = store.at(pos); // the first area ending at or after iova
      // keyOf rounds monotonically and lastK is exact, so comparing keys is comparing the u64s.
      if ((hit === undefined || keyOf(hit.iova) > lastK) && !reservedKeysHit(this.#reservedKeys, iovaK, lastK)) {
        const area = makeArea(iova, bigintOf(lastK), phys, read, write);
        const version = store.version;
        const domains = this.#domains;
        if (domains.length === 1) domains[0]!.sink.mapArea(area, length, physK + lengthK);
        else installInDomains(domains, area);
        if (store.version !== version) pos = store.seekExact(iovaK); // a sink called back into the table
        store.insert(pos, area, lastK);
        this.#areasView = undefined;
        return iova;
      }
    }
    return this.map(op, { iova, length, phys, read, write });
  }

  /**
   * MAP for many fixed-IOVA requests, with the outcome of calling {@link map} for each in order:
   * each applies wholly or fails with the error `map` would have thrown and changes nothing, and a
   * request sees the areas of the earlier ones. Every request is checked first; the areas are then
   * installed in each domain in one call and inserted into the table in one merge.
   * @param failed called with the index and error of each request that failed
   * @returns the number of requests applied
   */
  mapMany(op: string, reqs: readonly MapRequest[], failed: (i: number, e: IommuError) => void): number {
    const checked: { i: number; area: Area }[] = [];
    const refused: [number, IommuError][] = [];
    for (let i = 0; i < reqs.length; i++) {
      const area = recordFailure(i, (j, e) => refused.push([j, e]), () => this.#checkMap(op, reqs[i]!));
      if (area !== undefined) checked.push({ i, area });
    }
    const areas = checked.map((c) => c.area);
    const order = byIova(areas);
    // Requests that overlap each other: whether a later one fails depends on whether the earlier
    // one is installed, so they go one by one, as the calls would. Otherwise no check above
    // depends on another request: each saw the table it would have seen.
    if (anyOverlap(areas, order)) return this.#mapEach(op, reqs, failed);
    for (const [i, e] of refused) failed(i, e);
    const errors = installEach(this.#domains, areas);
    for (let k = 0; k < checked.length; k++) if (errors?.[k] !== undefined) failed(checked[k]!.i, errors[k]!);
    const applied: Area[] = [];
    for (let k = 0; k < order.length; k++) if (errors?.[order[k]!] === undefined) applied.push(areas[order[k]!]!);
    this.#insertSorted(applied);
    return applied.length;
  }

  /**
   * ioasMapBatch without a detour: entry i of `entries` is iova, length, phys (u64 words 3i..3i+2)
   * with `perms[i]` (bit 0 read, bit 1 write; both when absent). Taken only when every entry passes
   * every check of ioasMap on doubles -- values below FAST_LIMIT, perm bits known and not empty,
   * aligned, touching no reserved range, no area and no other entry -- and then with the outcome of
   * {@link mapMany}: the areas go to the domains in request order (one batch call), each applies
   * or fails (ENOMEM) wholly, and `results[i]` gets 0 or the errno number.
   * @returns the number of entries applied, or -1 when not taken (nothing done, `results` untouched)
   */
  mapBatchFast(entries: BigUint64Array, perms: Uint8Array | undefined, results: Int32Array, n: number): number {
    const mask = this.#alignMask;
    if (mask < 0 || n === 0) return -1;
    const words = new Uint32Array(entries.buffer, entries.byteOffset, 6 * n);
    const store = this.#areas;
    const starts = new Float64Array(n);
    const areas = new Array<Area>(n);
    // Every entry is checked (against the table and the other entries) before the areas go into
    // the table in one merge; an entry that fails a check leaves the table untouched and the
    // batch to mapMany.
    if (!insertMapBatch(store, mask, this.#reservedKeys, entries, words, perms, n, areas, starts)) return -1;
    this.#areasView = undefined;
    const applied = settleMapBatch(store, installEach(this.#domains, areas, { words, perms }), starts, results, n);
    // Again once the table is final: a domain that read `areas` while they were installed would
    // have left a view holding entries that failed and were taken out again.
    this.#areasView = undefined;
    return applied;
  }

  /**
   * ioasUnmapBatch without a detour (no access to notify): entry i of `entries` is iova, length
   * (u64 words 2i, 2i+1). Taken only when every entry, below FAST_LIMIT, names exactly one area and
   * no two name the same one; then every entry applies, as {@link unmapMany} would do it: the
   * areas leave each domain in one call, `results[i]` gets 0 and `bytes[i]` (when given) the length.
   * @returns the number of entries applied, or -1 when not taken (nothing done)
   */
  unmapBatchFast(entries: BigUint64Array, results: Int32Array, bytes: BigUint64Array | undefined, n: number): number {
    if (n === 0) return -1;
    const words = new Uint32Array(entries.buffer, entries.byteOffset, 4 * n);
    const leaving = new Array<Area>(n);
    // Every entry is checked (one whole area each, no area named twice) before the areas leave
    // the table in one pass; an entry that fails leaves the table untouched and the batch to
    // unmapMany.
    if (!takeUnmapBatch(this.#areas, words, n, leaving)) return -1;
    this.#areasView = undefined;
    removeFromDomains(this.#domains, leaving);
    fillUnmapResults(words, results, bytes, n);
    return n;
  }

  /** {@link map} per request, in order (the reference semantics of {@link mapMany}). */
  #mapEach(op: string, reqs: readonly MapRequest[], failed: (i: number, e: IommuError) => void): number {
    let applied = 0;
    for (let i = 0; i < reqs.length; i++) if (recordFailure(i, failed, () => this.map(op, reqs[i]!)) !== undefined) applied++;
    return applied;
  }

  /**
   * Every check of MAP (see {@link map} for the order), without changing anything.
   * @returns the area the mapping would create
   */
  #checkMap(op: string, args: { iova?: bigint; length: bigint; phys: bigint; read: boolean; write: boolean }): Area {
    const { length, phys, read, write } = args;
    if (!read && !write) fail('EINVAL', op, 'expected read and/or write, got neither');
    checkU64(op, 'length', length);
    checkU64(op, 'phys', phys);
    if (args.iova !== undefined) checkU64(op, 'iova', args.iova);
    // §3.2 step 5 (building the pages object): the backing range itself must be a u64 range.
    toLast(op, 'phys', phys, length);
    checkLength(op, this.#alignment, length);
    const iova = args.iova === undefined ? this.#allocIova(op, phys, length) : this.#checkFixedIova(op, args.iova, length);
    const area = makeArea(iova, toLast(op, 'iova', iova, length), phys, read, write);
    checkBacking(op, this.#alignment, area);
    return area;
  }

  /**
   * UNMAP (§3.4): remove every area inside `[iova, iova+length-1]`; holes are fine, but an area
   * that crosses either end is an error. `(0n, U64_MAX)` removes everything and succeeds on an
   * empty table.
   *
   * Deliberate difference from the kernel: everything is checked before anything is removed,
   * so a failed call changes nothing (the kernel may already have removed lower areas when it
   * meets a partly covered one).
   *
   * Re-entrancy: `beforeRemove` may call back into this table (map, unmap, copy from the callbacks
   * of software-DMA users). Whenever it reports that it ran callbacks, the lookup starts again from
   * the lowest area intersecting the range, as iopt_unmap_iova_range() does after
   * iommufd_access_notify_unmap(): no area index or list survives a callback. If the callbacks
   * unmapped the whole range themselves, the call fails ENOENT like the kernel's (nothing was left
   * for it to remove), except for `(0n, U64_MAX)`.
   * @param op public call name used in error messages
   * @param beforeRemove called with the areas to remove once every check has passed, and `round`
   *   (0, 1, …: how many times it asked for a new lookup); returns true to let them go, false when it
   *   ran callbacks that may have changed the table (the lookup is then done again); may throw
   * @returns bytes unmapped (sum of the removed areas' lengths)
   * @throws IommuError `EOVERFLOW` a value outside u64; `EINVAL` `length == 0`; `EOVERFLOW`
   *   `iova + length - 1` wraps; `ENOENT` no area intersects the range, or one is only partly inside.
   */
  unmap(op: string, iova: bigint, length: bigint, beforeRemove?: (areas: readonly Area[], round: number) => boolean): bigint {
    const areas = this.#areas;
    if (beforeRemove === undefined) {
      // The common case: the range is exactly one area. Then every check below passes (the
      // values are u64 as the area's are; the area is the only one inside), and the outcome is
      // the same; anything else, errors included, takes the general path.
      const iovaK = keyOf(iova);
      const lengthK = keyOf(length);
      const at = areas.seek(iova, iovaK);
      const a = areas.at(at);
      // Below FAST_LIMIT the keys are exact and so is their sum: the area's last key equals it only
      // when its last is exactly `iova + length - 1` (a last from 2^53 up has a key from 2^53 up).
      if (a !== undefined && a.iova === iova && (iovaK < FAST_LIMIT && lengthK < FAST_LIMIT ? areas.lastKeyAt(at) === iovaK + lengthK - 1 : a.last === iova + length - 1n)) {
        const domains = this.#domains;
        for (let j = 0; j < domains.length; j++) domains[j]!.sink.unmapArea(a);
        areas.remove(areas.at(at) === a ? at : areas.seek(iova, iovaK), 1);
        this.#areasView = undefined;
        return length;
      }
    }
    for (let round = 0; ; round++) {
      let [at, count] = this.#unmapRange(op, iova, length);
      if (count === 0) return 0n;
      // Users of the areas (software-DMA pins) are told now, when the call is known to succeed;
      // they may refuse by throwing, and nothing has changed yet.
      if (beforeRemove !== undefined) {
        const list: Area[] = [];
        for (let k = 0, p = at; k < count; k++, p = areas.next(p)) list.push(areas.at(p)!);
        if (!beforeRemove(list, round)) continue;
        at = areas.seek(list[0]!.iova, keyOf(list[0]!.iova)); // no position survives a call out
      }
      let total = 0n;
      const domains = this.#domains;
      for (let k = 0, p = at; k < count; k++, p = areas.next(p)) {
        const a = areas.at(p)!;
        for (let j = 0; j < domains.length; j++) domains[j]!.sink.unmapArea(a);
        total += areaLength(a);
      }
      areas.remove(at, count);
      this.#areasView = undefined;
      return total;
    }
  }

  /**
   * UNMAP for many `[iova, iova+length-1]` ranges, with the outcome of calling {@link unmap}
   * (without `beforeRemove`) for each in order: each removes its areas or fails with the error
   * `unmap` would have thrown, seeing what the earlier ones removed. The areas leave each domain
   * in one call and the table in one pass.
   * @param failed called with the index and error of each request that failed
   * @param removed called with the index and the bytes unmapped of each request applied
   * @returns the number of requests applied
   */
  unmapMany(op: string, reqs: readonly { iova: bigint; length: bigint }[], failed: (i: number, e: IommuError) => void, removed: (i: number, bytes: bigint) => void): number {
    const areas = this.#areas;
    const gone = new Set<Area>();
    const leaving: Area[] = [];
    let applied = 0;
    for (let i = 0; i < reqs.length; i++) {
      const range = recordFailure(i, failed, () => this.#unmapRange(op, reqs[i]!.iova, reqs[i]!.length, gone));
      if (range === undefined) continue;
      const [at, count] = range;
      let total = 0n;
      for (let k = 0, p = at; k < count; p = areas.next(p)) {
        const a = areas.at(p)!;
        if (gone.has(a)) continue;
        k++;
        gone.add(a);
        leaving.push(a);
        total += areaLength(a);
      }
      applied++;
      removed(i, total);
    }
    if (leaving.length === 0) return applied;
    removeFromDomains(this.#domains, leaving);
    for (const a of leaving) areas.remove(areas.seek(a.iova, keyOf(a.iova)), 1);
    this.#areasView = undefined;
    return applied;
  }

  /**
   * The checks of UNMAP (§3.4), changing nothing: the areas of `[iova, iova+length-1]` are the
   * `count` areas from position `at` on, less those in `gone` (areas an earlier request of a batch
   * removes). A count of 0: nothing to remove, and that is no error (`(0n, U64_MAX)`).
   * @throws IommuError as {@link unmap}
   */
  #unmapRange(op: string, iova: bigint, length: bigint, gone?: Set<Area>): [at: number, count: number] {
    checkU64(op, 'iova', iova);
    checkU64(op, 'length', length);
    const all = iova === 0n && length === U64_MAX;
    const last = all ? U64_MAX : toLast(op, 'iova', iova, length);
    const areas = this.#areas;
    const first = areas.seek(iova, keyOf(iova));
    const end = areas.end;
    let live = 0;
    for (let p = first; p !== end; p = areas.next(p)) {
      const a = areas.at(p)!;
      if (a.iova > last) break;
      if (gone?.has(a)) continue;
      if (a.iova < iova || a.last > last) {
        fail('ENOENT', op, `expected areas fully inside [${hex(iova)}, ${hex(last)}], got area [${hex(a.iova)}, ${hex(a.last)}] crossing its edge`);
      }
      live++;
    }
    if (live === 0 && !all) fail('ENOENT', op, `expected a mapping in [${hex(iova)}, ${hex(last)}], got none`);
    return [first, live];
  }

  /**
   * COPY, destination side (§3.5): map in `this` the same physical ranges that back
   * `[srcIova, srcIova+length-1]` in `src`, one area per source slice, laid out contiguously
   * from the destination IOVA. `src` may be `this`. All or nothing.
   * @param op public call name used in error messages, e.g. `'ioasCopy'`
   * @param src the source table
   * @param dst `iova` given = fixed, undefined = automatic (aligned by the first slice's phys)
   * @returns the destination IOVA
   * @throws IommuError, in this order:
   *   `EINVAL` neither read nor write; `EOVERFLOW` a value outside u64;
   *   source: `EINVAL` `length == 0`, `EOVERFLOW` `srcIova + length - 1` wraps, `ENOENT` the
   *   range is not covered by contiguous areas;
   *   destination: the MAP checks (`EINVAL` length misaligned; fixed `EINVAL`/`EOVERFLOW`/
   *   `EINVAL` reserved/`EEXIST`; automatic `EOVERFLOW`/`EINVAL`/`ENOSPC`);
   *   then per slice in IOVA order: `EPERM` write requested but the source slice is read-only,
   *   `EINVAL` the slice's phys or length not a multiple of {@link alignment};
   *   whatever a domain's `mapArea` throws, after undoing every slice already installed.
   */
  copyFrom(
    op: string,
    src: IoPagetable,
    srcIova: bigint,
    length: bigint,
    dst: { iova?: bigint; read: boolean; write: boolean },
  ): bigint {
    if (!dst.read && !dst.write) fail('EINVAL', op, 'expected read and/or write, got neither');
    checkU64(op, 'srcIova', srcIova);
    checkU64(op, 'length', length);
    if (dst.iova !== undefined) checkU64(op, 'dstIova', dst.iova);
    // Source side first, as iopt_get_pages() runs before the destination is touched.
    const srcLast = toLast(op, 'srcIova', srcIova, length);
    const parts = src.slices(srcIova, srcLast);
    if (parts === undefined) {
      fail('ENOENT', op, `expected [${hex(srcIova)}, ${hex(srcLast)}] covered by contiguous mappings in the source, got a hole`);
    }
    checkLength(op, this.#alignment, length);
    const first = parts[0]!;
    const firstPhys = first.area.phys + (first.start - first.area.iova);
    const iova = dst.iova === undefined ? this.#allocIova(op, firstPhys, length) : this.#checkFixedIova(op, dst.iova, length);
    const created: Area[] = [];
    let at = iova;
    for (const s of parts) {
      // iopt_insert_area(): the pages must allow what is asked, then the offset must be aligned.
      if (dst.write && !s.area.write) {
        fail('EPERM', op, `expected a writable source for a writable copy, got read-only [${hex(s.area.iova)}, ${hex(s.area.last)}]`);
      }
      const sliceLength = s.last - s.start + 1n;
      const area = makeArea(at, toLast(op, 'iova', at, sliceLength), s.area.phys + (s.start - s.area.iova), dst.read, dst.write);
      checkBacking(op, this.#alignment, area);
      created.push(area);
      at += sliceLength;
    }
    this.#install(created);
    return iova;
  }

  /**
   * IOVA_RANGES (§3.6): the holes of the reserved ranges over `[0, U64_MAX]`, lowest first, and
   * the current alignment. The allowed list does not change the answer.
   * @returns fresh objects the caller may keep
   */
  iovaRanges(): { ranges: IoRange[]; alignment: bigint } {
    return { ranges: holesOf(this.#reserved), alignment: this.#alignment };
  }

  /**
   * ALLOW_IOVAS (§3.7): replace the allowed list atomically; `[]` clears it. Automatic IOVA then
   * only uses allowed ranges, and later reserved ranges may not intersect them.
   * @param op public call name used in error messages
   * @throws IommuError `EOVERFLOW` a value outside u64; `EINVAL` an entry with `start >= last`
   *   or two entries overlapping; `EADDRINUSE` an entry intersects a reserved range (old list kept).
   */
  setAllowed(op: string, ranges: IoRange[]): void {
    for (const r of ranges) {
      checkU64(op, 'start', r.start);
      checkU64(op, 'last', r.last);
      if (r.start >= r.last) fail('EINVAL', op, `expected allowed start < last, got [${hex(r.start)}, ${hex(r.last)}]`);
    }
    const sorted = copyRanges(ranges).sort(byStart);
    for (let i = 1; i < sorted.length; i++) {
      const [p, r] = [sorted[i - 1]!, sorted[i]!];
      if (r.start <= p.last) fail('EINVAL', op, `expected disjoint allowed ranges, got [${hex(p.start)}, ${hex(p.last)}] and [${hex(r.start)}, ${hex(r.last)}]`);
    }
    for (const r of sorted) {
      const hit = hitIndex(this.#reserved, r.start, r.last);
      if (hit >= 0) fail('EADDRINUSE', op, `expected allowed ranges outside reserved ones, got [${hex(r.start)}, ${hex(r.last)}] hitting ${fmtRange(this.#reserved[hit]!)}`);
    }
    this.#allowed = Object.freeze(sorted.map((r) => Object.freeze(r)));
    this.#allowedSpans = coalesce(sorted);
  }

  /**
   * Reserve ranges for `owner` (a device's reserved regions, a test). Several calls for one
   * owner accumulate; {@link removeReserved} drops them all. All or nothing.
   * @param op public call name used in error messages
   * @param owner identity key; reserved ranges of different owners may overlap
   * @throws IommuError `EOVERFLOW` a value outside u64; `EINVAL` `start > last`; `EADDRINUSE` a
   *   range intersects an area or an allowed range.
   */
  addReserved(op: string, owner: object, ranges: IoRange[]): void {
    for (const r of ranges) {
      checkU64(op, 'start', r.start);
      checkU64(op, 'last', r.last);
      if (r.start > r.last) fail('EINVAL', op, `expected start <= last, got [${hex(r.start)}, ${hex(r.last)}]`);
    }
    this.#checkReservable(op, ranges);
    this.#setReserved(owner, [...(this.#reservedByOwner.get(owner) ?? []), ...copyRanges(ranges)]);
  }

  /** Drop every range reserved by `owner`; IOVA ranges may widen. No-op for an unknown owner. */
  removeReserved(owner: object): void {
    this.#setReserved(owner, []);
  }

  /**
   * Add a domain (§3.8): raise the alignment to its page size, reserve everything outside its
   * aperture (owner = `sink`), then install every area in it. On failure nothing changes: the
   * areas installed in `sink` are removed again.
   * @param op public call name used in error messages
   * @param sink the domain; also the owner of its aperture reservations
   * @throws IommuError `EEXIST` `sink` is already attached; `EINVAL` `pageSize` not a power of
   *   two or the aperture not a u64 range with `start <= last`; `EINVAL` the new alignment would
   *   exceed 4096; `EADDRINUSE` the alignment grows and an area's iova, length or phys is not a
   *   multiple of it; `EADDRINUSE` outside the aperture lies an area or an allowed range;
   *   whatever `sink.mapArea` throws (`ENOMEM`).
   */
  addDomain(op: string, sink: DomainSink, info: DomainInfo): void {
    if (this.#domains.some((d) => d.sink === sink)) fail('EEXIST', op, 'expected a domain not yet attached, got the same one again');
    const { pageSize, aperture } = info;
    if (!isPow2(pageSize)) fail('EINVAL', op, `expected a power-of-two page size, got ${hex(pageSize)}`);
    if (aperture.start < 0n || aperture.last > U64_MAX || aperture.start > aperture.last) {
      fail('EINVAL', op, `expected an aperture [start <= last] within u64, got ${fmtRange(aperture)}`);
    }
    const newAlignment = maxU64(pageSize, this.#alignment);
    this.#checkAlignmentGrowth(op, newAlignment);
    const outside = outsideAperture(aperture);
    this.#checkReservable(op, outside);
    const before = this.#reservedByOwner.get(sink) ?? [];
    this.#setReserved(sink, [...before, ...outside]);
    const areas = this.#areas.toArray();
    let filled = 0;
    try {
      for (const a of areas) {
        sink.mapArea(a);
        filled++;
      }
    } catch (e) {
      for (let i = filled - 1; i >= 0; i--) sink.unmapArea(areas[i]!);
      this.#setReserved(sink, before);
      throw e;
    }
    this.#domains.push({ sink, pageSize });
    this.#domainsView = undefined;
    this.#setAlignment(newAlignment);
  }

  /**
   * Remove a domain: its reserved ranges and its alignment requirement go away (the alignment is
   * recomputed and may go down). The areas are NOT unmapped from `sink`: the caller destroys the
   * domain. No-op for a sink that is not attached.
   */
  removeDomain(sink: DomainSink): void {
    const i = this.#domains.findIndex((d) => d.sink === sink);
    if (i < 0) return;
    this.#domains.splice(i, 1);
    this.#domainsView = undefined;
    this.#setReserved(sink, []);
    this.#setAlignment(this.#computeAlignment());
  }

  /**
   * Add an alignment requirement for a non-domain user (a software-DMA access object).
   * @param op public call name used in error messages
   * @param owner identity key for {@link removeAlignment}
   * @param alignment a power of two, at most 4096
   * @throws IommuError `EEXIST` `owner` already has one; `EINVAL` not a power of two or above
   *   4096; `EADDRINUSE` the alignment grows and an area's iova, length or phys is not a multiple of it.
   */
  addAlignment(op: string, owner: object, alignment: bigint): void {
    if (this.#extraAlignment.has(owner)) fail('EEXIST', op, 'expected an owner without an alignment, got one that has one');
    if (!isPow2(alignment)) fail('EINVAL', op, `expected a power-of-two alignment, got ${hex(alignment)}`);
    const newAlignment = maxU64(alignment, this.#alignment);
    this.#checkAlignmentGrowth(op, newAlignment);
    this.#extraAlignment.set(owner, alignment);
    this.#setAlignment(newAlignment);
  }

  /** Drop `owner`'s alignment requirement; the alignment is recomputed and may go down. No-op for an unknown owner. */
  removeAlignment(owner: object): void {
    if (this.#extraAlignment.delete(owner)) this.#setAlignment(this.#computeAlignment());
  }

  /** @internal Snapshot support: the whole state, by reference. */
  exportState(): IoPagetableState {
    return {
      areas: this.areas, allowed: this.#allowed,
      domains: this.#domains.map((d) => ({ sink: d.sink, pageSize: d.pageSize })),
      reserved: [...this.#reservedByOwner], alignments: [...this.#extraAlignment],
    };
  }

  /**
   * @internal Snapshot support: makes this new, empty table hold `s` without calling any sink (the
   * restored domains already hold the areas).
   * @throws Error when the table is not new or `s` breaks an invariant of the class.
   */
  importState(s: IoPagetableState): void {
    if (this.#areas.size > 0 || this.#domains.length > 0 || this.#reservedByOwner.size > 0 || this.#extraAlignment.size > 0) badState('the table is not new');
    const areas = checkedStateAreas(s);
    this.#areas.load(areas);
    this.#areasView = undefined;
    this.setAllowed('restore', copyRanges(s.allowed));
    for (const d of s.domains) this.#domains.push({ sink: d.sink, pageSize: d.pageSize });
    this.#domainsView = undefined;
    for (const [owner, a] of s.alignments) this.#extraAlignment.set(owner, a);
    for (const [owner, ranges] of s.reserved) {
      if (ranges.some((r) => r.start > r.last || r.last > U64_MAX)) badState('a reserved range is empty or beyond 2^64');
      this.#setReserved(owner, copyRanges(ranges));
    }
    this.#setAlignment(this.#computeAlignment());
    const a = this.#alignment;
    if (a > PAGE_SIZE || areas.some((x) => !isAlignedArea(x, a))) badState('areas break the IOVA alignment');
    for (const r of this.#reserved) {
      if (this.#hitArea(r.start, r.last) !== undefined || hitIndex(this.#allowed, r.start, r.last) >= 0) badState('a reserved range hits an area or an allowed range');
    }
  }

  /**
   * The areas covering `[iova, last]` contiguously with no hole, cut to that range (used by COPY
   * and software DMA).
   * @returns slices in IOVA order (the first starts at `iova`, the last ends at `last`), or
   *   `undefined` if some byte is unmapped or `iova > last`
   */
  slices(iova: bigint, last: bigint): AreaSlice[] | undefined {
    if (iova > last) return undefined;
    const areas = this.#areas;
    let p = areas.seek(iova, keyOf(iova));
    let a = areas.at(p);
    if (a === undefined || a.iova > iova) return undefined;
    const out: AreaSlice[] = [];
    for (let start = iova; ; ) {
      const end = a.last < last ? a.last : last;
      out.push({ area: a, start, last: end });
      if (end === last) return out;
      p = areas.next(p);
      const b = areas.at(p);
      if (b === undefined || b.iova !== a.last + 1n) return undefined;
      a = b;
      start = a.iova;
    }
  }

  /** iopt_check_iova(): a fixed IOVA must be aligned, fit u64, avoid reserved ranges and areas. */
  #checkFixedIova(op: string, iova: bigint, length: bigint): bigint {
    if (iova % this.#alignment !== 0n) {
      fail('EINVAL', op, `expected an iova multiple of the IOVA alignment ${hex(this.#alignment)}, got ${hex(iova)}`);
    }
    const last = toLast(op, 'iova', iova, length);
    const r = hitIndex(this.#reserved, iova, last);
    if (r >= 0) fail('EINVAL', op, `expected an unreserved range, got [${hex(iova)}, ${hex(last)}] hitting reserved ${fmtRange(this.#reserved[r]!)}`);
    const hit = this.#hitArea(iova, last);
    if (hit !== undefined) {
      fail('EEXIST', op, `expected a free range, got [${hex(iova)}, ${hex(last)}] overlapping mapping [${hex(hit.iova)}, ${hex(hit.last)}]`);
    }
    return iova;
  }

  /** iopt_alloc_iova() (§3.3) on this table: see iova-alloc.ts. */
  #allocIova(op: string, phys: bigint, length: bigint): bigint {
    return allocIova(op, this.#areas, this.#reserved, this.#allowedSpans, this.#alignment, phys, length);
  }

  /**
   * Install `created` (contiguous, in IOVA order, in a range already checked free) in every
   * domain, then publish them. If a domain throws, every (domain, area) pair installed so far is
   * removed again, newest first, and the error is rethrown with the table unchanged.
   */
  #install(created: Area[]): void {
    installInDomains(this.#domains, created.length === 1 ? created[0]! : created);
    this.#insertSorted(created);
  }

  /** Publish `sorted` (disjoint, in IOVA order, free in the table) in `#areas`. */
  #insertSorted(sorted: readonly Area[]): void {
    if (sorted.length === 0) return;
    const areas = this.#areas;
    this.#areasView = undefined;
    for (const a of sorted) areas.insert(areas.seek(a.iova, keyOf(a.iova)), a);
  }

  /** The lowest area intersecting `[start, last]`, if any. */
  #hitArea(start: bigint, last: bigint): Area | undefined {
    const a = this.#areas.at(this.#areas.seek(start, keyOf(start)));
    return a !== undefined && a.iova <= last ? a : undefined;
  }

  /** iopt_reserve_iova()'s conflict rule: a new reserved range may not hit an area or an allowed range. */
  #checkReservable(op: string, ranges: readonly IoRange[]): void {
    for (const r of ranges) {
      const hit = this.#hitArea(r.start, r.last);
      if (hit !== undefined) {
        fail('EADDRINUSE', op, `expected reserved ${fmtRange(r)} to miss every mapping, got [${hex(hit.iova)}, ${hex(hit.last)}]`);
      }
      const w = hitIndex(this.#allowed, r.start, r.last);
      if (w >= 0) fail('EADDRINUSE', op, `expected reserved ${fmtRange(r)} to miss every allowed range, got ${fmtRange(this.#allowed[w]!)}`);
    }
  }

  /** Set `owner`'s reserved list (empty = none) and rebuild the union. */
  #setReserved(owner: object, ranges: readonly IoRange[]): void {
    if (ranges.length === 0) {
      if (!this.#reservedByOwner.delete(owner)) return;
    } else {
      this.#reservedByOwner.set(owner, ranges);
    }
    this.#reserved = reservedUnion(this.#reservedByOwner);
    this.#reservedKeys = reservedKeysOf(this.#reserved);
  }

  /** iopt_check_iova_alignment() on this table: see iova-alignment.ts. */
  #checkAlignmentGrowth(op: string, newAlignment: bigint): void {
    checkAlignmentGrowth(op, () => this.areas, this.#alignment, newAlignment);
  }

  #setAlignment(a: bigint): void {
    this.#alignment = a;
    this.#alignMask = alignMaskOf(a);
  }

  /** iopt_calculate_iova_alignment(): the largest requirement of the domains and accesses, at least 1. */
  #computeAlignment(): bigint {
    return computeAlignment(this.#domains, this.#extraAlignment.values());
  }
}
