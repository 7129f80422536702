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
import { FAST_LIMIT_HI, type AreaStore } from './area-store';
import { HI, LO, bigintOf, keyOf } from '../base/u64-word';
import { reservedKeysHit } from './reserved-ranges';

/**
 * MAP batch, first half: checks entry i (iova, length, phys at u64 words 3i..3i+2, `perms[i]`
 * bit 0 read, bit 1 write, both when absent) and inserts every area into `store` in one merge
 * ({@link AreaStore.insertMany}). Taken only when every entry passes every check of ioasMap on
 * doubles: values below FAST_LIMIT, perm bits known and not empty, aligned to `mask + 1`,
 * touching no reserved range (`reservedKeys`), no area and no other entry. All checks run before
 * the store changes.
 * @param areas filled with the new areas, in request order
 * @param starts filled with each new area's iova key
 * @returns true when every entry is in `store`; false when one failed a check (the store is then
 *   untouched)
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
  const { lastKeys, order, positions } = scratch(n);
  // Each entry on its own, in request order.
  let ascending = true;
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
    if (!ok) return false;
    ascending &&= i === 0 || start > starts[i - 1]!;
    starts[i] = start;
    lastKeys[i] = last;
  }
  ioaOrder(starts, n, mask, ascending, order);
  // In IOVA order: each entry clear of the one before and of the table's areas.
  for (let j = 0; j < n; j++) {
    const i = order[j]!;
    const start = starts[i]!;
    if (j > 0 && start <= lastKeys[order[j - 1]!]!) return false;
    const pos = store.seekExact(start);
    const hit = store.at(pos); // the first area ending at or after start
    const last = lastKeys[i]!; // exact, as start and length are below FAST_LIMIT
    if (hit !== undefined && keyOf(hit.iova) <= last) return false; // keyOf rounds monotonically: an exact compare here
    positions[j] = pos;
    const p = perms === undefined ? 3 : perms[i]!;
    areas[i] = makeArea(entries[3 * i]!, bigintOf(last), entries[3 * i + 2]!, (p & 1) !== 0, (p & 2) !== 0);
  }
  store.insertMany(areas, lastKeys, order, positions, n);
  return true;
}

/** Scratch of {@link insertMapBatch} and {@link takeUnmapBatch}, reused by every call (neither calls out while using it). */
let scratchArrays = { lastKeys: new Float64Array(256), order: new Int32Array(256), positions: new Int32Array(256), sortKeys: new Float64Array(256) };

/** The scratch arrays with room for `n` entries. */
function scratch(n: number): typeof scratchArrays {
  if (scratchArrays.order.length < n) {
    const m = 2 * n;
    scratchArrays = { lastKeys: new Float64Array(m), order: new Int32Array(m), positions: new Int32Array(m), sortKeys: new Float64Array(m) };
  }
  return scratchArrays;
}

/**
 * Fills `order[0..n)` with the entries' indices in the order of their `starts` (a stable order:
 * equal starts keep request order). Starts are multiples of the alignment `mask + 1` (a power of
 * two, at most PAGE_SIZE), so when there are at most that many entries, `start + i` (exact: below
 * 2^53) sorts as the start and carries i in its low bits: a sort of doubles with no comparator call.
 */
function ioaOrder(starts: Float64Array, n: number, mask: number, ascending: boolean, order: Int32Array): void {
  if (ascending) {
    for (let i = 0; i < n; i++) order[i] = i;
  } else if (n <= mask + 1) {
    const keys = scratchArrays.sortKeys;
    for (let i = 0; i < n; i++) keys[i] = starts[i]! + i;
    sortDoubles(keys, 0, n - 1);
    for (let j = 0; j < n; j++) order[j] = (keys[j]! >>> 0) & mask; // ToUint32 is exact modulo 2^32
  } else {
    const idx = Array.from({ length: n }, (_, i) => i).sort((a, b) => starts[a]! - starts[b]! || a - b);
    for (let j = 0; j < n; j++) order[j] = idx[j]!;
  }
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
 * and name exactly one area, and no two entries the same one; then every named area leaves `store`
 * in one pass ({@link AreaStore.removeMany}, which also refuses an area named twice).
 * @param leaving filled with the areas taken out, in request order
 * @returns true when every entry named its own area (all removed); false when one did not (the
 *   store is then untouched)
 */
export function takeUnmapBatch(store: AreaStore, words: Uint32Array, n: number, leaving: Area[]): boolean {
  const positions = scratch(n).positions;
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
    if (a === undefined || keyOf(a.iova) !== start) return false; // keyOf reads a bigint without making one
    leaving[i] = a;
    positions[i] = pos;
  }
  return store.removeMany(positions, n); // refuses an area named twice
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

/**
 * Sorts `a[lo..hi]` ascending in place: a quicksort (median of three) that finishes small runs by
 * insertion. For the few hundred distinct doubles of a batch it takes about two thirds of the time
 * of `Float64Array.prototype.sort` in V8 (Node 24).
 */
function sortDoubles(a: Float64Array, lo: number, hi: number): void {
  while (hi - lo > 16) {
    const mid = (lo + hi) >>> 1;
    // Median of three to a[mid], then Hoare partition around its value.
    if (a[mid]! < a[lo]!) swap(a, mid, lo);
    if (a[hi]! < a[lo]!) swap(a, hi, lo);
    if (a[hi]! < a[mid]!) swap(a, hi, mid);
    const pivot = a[mid]!;
    let i = lo;
    let j = hi;
    for (;;) {
      while (a[i]! < pivot) i++;
      while (a[j]! > pivot) j--;
      if (i >= j) break;
      swap(a, i++, j--);
    }
    // Recurse into the smaller side, loop on the larger (stack depth O(log n)).
    if (j - lo < hi - j) {
      sortDoubles(a, lo, j);
      lo = j + 1;
    } else {
      sortDoubles(a, j + 1, hi);
      hi = j;
    }
  }
  for (let i = lo + 1; i <= hi; i++) {
    const v = a[i]!;
    let j = i - 1;
    for (; j >= lo && a[j]! > v; j--) a[j + 1] = a[j]!;
    a[j + 1] = v;
  }
}

function swap(a: Float64Array, i: number, j: number): void {
  const t = a[i]!;
  a[i] = a[j]!;
  a[j] = t;
}
