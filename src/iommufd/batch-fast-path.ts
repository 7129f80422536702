/**
 * The fast paths of ioasMapBatch and ioasUnmapBatch (`IoPagetable.mapBatchFast` and
 * `unmapBatchFast`): the checks of a whole batch on doubles, read from the u32 halves of the
 * entries, with no BigInt compare and no request objects. The page table calls these with its
 * area store and the data they need, and does the domain half (install or remove) in between.
 *
 * Invariants: each function either changes the store as documented or leaves it exactly as it
 * was and returns false (the batch then takes the general path, which decides every error).
 * Values are handled only below FAST_LIMIT (area-store.ts), where doubles are exact; `words` is a
 * Uint32Array over the entries' u64 words (HI/LO select the halves).
 * @module
 */
import { ERRNO, type IommuError } from '../base/errno';
import { makeArea, type Area } from './area';
import { FAST_LIMIT_HI, HI, LO, keyOf, type AreaStore } from './area-store';
import { reservedKeysHit } from './reserved-ranges';

/**
 * MAP batch, first half: checks entry i (iova, length, phys at u64 words 3i..3i+2, `perms[i]`
 * bit 0 read, bit 1 write, both when absent) and inserts its area into `store` at once, so that
 * the search for the next entry also finds an overlap with it. Taken only when every entry passes
 * every check of ioasMap on doubles: values below FAST_LIMIT, perm bits known and not empty,
 * aligned to `mask + 1`, touching no reserved range (`reservedKeys`), no area and no other entry.
 * @param areas filled with the new areas, in request order
 * @param starts filled with each new area's iova key
 * @returns true when every entry is in `store`; false when one failed a check, after removing
 *   the ones before (the store is then as before the call)
 */
export function insertMapBatch(
  store: AreaStore,
  mask: number,
  reservedKeys: Float64Array,
  entries: BigUint64Array,
  words: Uint32Array,
  perms: Uint8Array | undefined,
  n: number,
  areas: Area[],
  starts: Float64Array,
): boolean {
  for (let i = 0; i < n; i++) {
    const p = perms === undefined ? 3 : perms[i]!;
    const w = 6 * i;
    const iovaHi = words[w + HI]!;
    const lengthHi = words[w + 2 + HI]!;
    let ok = p !== 0 && p <= 3 && iovaHi < FAST_LIMIT_HI && lengthHi < FAST_LIMIT_HI && words[w + 4 + HI]! < FAST_LIMIT_HI;
    ok &&= ((words[w + LO]! | words[w + 2 + LO]! | words[w + 4 + LO]!) & mask) === 0;
    const start = iovaHi * 4294967296 + words[w + LO]!;
    const length = lengthHi * 4294967296 + words[w + 2 + LO]!;
    const last = start + length - 1;
    ok &&= length !== 0 && !reservedKeysHit(reservedKeys, start, last);
    const pos = ok ? store.seekExact(start) : 0;
    const hit = ok ? store.at(pos) : undefined; // the first area ending at or after start
    const iova = entries[3 * i]!;
    const lastBig = iova + entries[3 * i + 1]! - 1n;
    ok &&= hit === undefined || hit.iova > lastBig;
    if (!ok) {
      for (let j = 0; j < i; j++) store.remove(store.seekExact(starts[j]!), 1);
      return false;
    }
    const area = makeArea(iova, lastBig, entries[3 * i + 2]!, (p & 1) !== 0, (p & 2) !== 0);
    store.insert(pos, area, last);
    areas[i] = area;
    starts[i] = start;
  }
  return true;
}

/**
 * MAP batch, second half, once the domains have had the areas: `results[i]` gets 0 for an entry
 * installed, else its errno number, and the area of a failed entry leaves `store` again.
 * @param errors per entry, undefined (installed) or the error the domains gave; undefined when
 *   every entry was installed
 * @param starts the iova keys {@link insertMapBatch} filled
 * @returns the number of entries applied
 */
export function settleMapBatch(store: AreaStore, errors: readonly (IommuError | undefined)[] | undefined, starts: Float64Array, results: Int32Array, n: number): number {
  if (errors === undefined) {
    results.fill(0, 0, n);
    return n;
  }
  let applied = 0;
  for (let i = 0; i < n; i++) {
    const e = errors[i];
    if (e === undefined) {
      results[i] = 0;
      applied++;
    } else {
      results[i] = ERRNO[e.errno];
      store.remove(store.seekExact(starts[i]!), 1);
    }
  }
  return applied;
}

/**
 * UNMAP batch, first half: entry i (iova, length at u64 words 2i, 2i+1) must be below FAST_LIMIT
 * and name exactly one area; that area leaves `store` at once, so that a second entry naming it
 * finds nothing.
 * @param leaving filled with the areas taken out, in request order
 * @returns true when every entry named its own area; false when one did not, after putting the
 *   ones before back (the store is then as before the call)
 */
export function takeUnmapBatch(store: AreaStore, entries: BigUint64Array, words: Uint32Array, n: number, leaving: Area[]): boolean {
  for (let i = 0; i < n; i++) {
    const w = 4 * i;
    const iovaHi = words[w + HI]!;
    const lengthHi = words[w + 2 + HI]!;
    const start = iovaHi * 4294967296 + words[w + LO]!;
    const length = lengthHi * 4294967296 + words[w + 2 + LO]!;
    let ok = iovaHi < FAST_LIMIT_HI && lengthHi < FAST_LIMIT_HI && length !== 0;
    const pos = ok ? store.seekExact(start) : 0;
    ok &&= pos !== store.end && store.lastKeyAt(pos) === start + length - 1;
    const a = ok ? store.at(pos)! : undefined;
    if (a === undefined || a.iova !== entries[2 * i]) {
      for (let j = 0; j < i; j++) store.insert(store.seekExact(keyOf(leaving[j]!.iova)), leaving[j]!);
      return false;
    }
    store.remove(pos, 1);
    leaving[i] = a;
  }
  return true;
}

/**
 * UNMAP batch, last step, once every entry applied: `results[i]` gets 0 and `bytes[i]` (when
 * given) the entry's length, copied word for word from `words` (the entries, as in {@link takeUnmapBatch}).
 */
export function fillUnmapResults(words: Uint32Array, results: Int32Array, bytes: BigUint64Array | undefined, n: number): void {
  const out = bytes === undefined ? undefined : new Uint32Array(bytes.buffer, bytes.byteOffset, 2 * n);
  for (let i = 0; i < n; i++) {
    results[i] = 0;
    if (out !== undefined) {
      out[2 * i] = words[4 * i + 2]!;
      out[2 * i + 1] = words[4 * i + 3]!;
    }
  }
}
