/**
 * The ordered store of an IOAS's areas (io-pagetable.ts): a list of small sorted chunks (a B-tree
 * of height two), searched on doubles, so that MAP and UNMAP cost O(log n + CHUNK) with no BigInt
 * compare in the search and no splice of the whole area list.
 *
 * Keys: each area is searched by `Number(area.last)`. `Number` of a u64 is monotonic (never
 * decreasing), so a double compare orders two areas exactly unless both round to the same double
 * (possible from 2^53 up); the search settles those ties with one exact compare.
 *
 * Positions: `ci * CHUNK + k` names area `k` of chunk `ci`; {@link AreaStore.end} is past the last
 * area. A position is valid until the next insert or remove, as an array index would be.
 * @module
 */
import type { Area } from './io-pagetable';

/** Most areas in one chunk; a full chunk splits in two halves. */
const CHUNK = 64;

/** A run of areas in IOVA order, with the search key of each. */
interface Chunk {
  /** Areas in IOVA order; `areas.length` is the count. */
  areas: Area[];
  /** `keys[k]` is `Number(areas[k].last)`; only the first `areas.length` are meaningful. */
  keys: Float64Array;
}

/**
 * Invariants: areas sorted by `iova`, disjoint (so `last` ascends across chunks too); no chunk is
 * empty; every chunk holds at most CHUNK areas.
 */
export class AreaStore {
  #chunks: Chunk[] = [];
  #size = 0;

  /** The number of areas. */
  get size(): number {
    return this.#size;
  }

  /** The position past the last area. */
  get end(): number {
    return this.#chunks.length * CHUNK;
  }

  /**
   * The position of the first area whose `last >= addr` (the first that can intersect anything
   * from `addr` up), or {@link end}.
   * @param key `Number(addr)`
   */
  seek(addr: bigint, key: number): number {
    const chunks = this.#chunks;
    let lo = 0;
    let hi = chunks.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const c = chunks[mid]!;
      if (c.keys[c.areas.length - 1]! < key) lo = mid + 1;
      else hi = mid;
    }
    if (lo === chunks.length) return lo * CHUNK;
    const c = chunks[lo]!;
    const keys = c.keys;
    let a = 0;
    let b = c.areas.length - 1; // keys[b] >= key: the answer is in [a, b]
    while (a < b) {
      const mid = (a + b) >>> 1;
      if (keys[mid]! < key) a = mid + 1;
      else b = mid;
    }
    let pos = lo * CHUNK + a;
    // Equal doubles may hide smaller u64 values (from 2^53 up): step over those exactly.
    if (keys[a] === key) {
      const end = this.end;
      while (pos !== end && this.at(pos)!.last < addr) pos = this.next(pos);
    }
    return pos;
  }

  /** The area at `pos`, or undefined at {@link end}. */
  at(pos: number): Area | undefined {
    const c = this.#chunks[(pos / CHUNK) | 0];
    return c === undefined ? undefined : c.areas[pos % CHUNK];
  }

  /** The position after `pos` ({@link end} after the last area). */
  next(pos: number): number {
    const ci = (pos / CHUNK) | 0;
    const k = (pos % CHUNK) + 1;
    return k < this.#chunks[ci]!.areas.length ? pos + 1 : (ci + 1) * CHUNK;
  }

  /**
   * Inserts `area` at `pos` (the position {@link seek} gave for `area.iova`): the caller has checked
   * that it overlaps nothing, so it goes right before the area at `pos`.
   */
  insert(pos: number, area: Area): void {
    const chunks = this.#chunks;
    let ci = (pos / CHUNK) | 0;
    let k = pos % CHUNK;
    // Past the end, or at the start of a chunk: append to the chunk before when it has room.
    if (k === 0 && ci > 0 && chunks[ci - 1]!.areas.length < CHUNK) {
      ci--;
      k = chunks[ci]!.areas.length;
    }
    if (ci === chunks.length) chunks.push({ areas: [], keys: new Float64Array(CHUNK) });
    let c = chunks[ci]!;
    if (c.areas.length === CHUNK) {
      const half = CHUNK / 2;
      const right: Chunk = { areas: c.areas.slice(half), keys: new Float64Array(CHUNK) };
      right.keys.set(c.keys.subarray(half, CHUNK));
      c.areas.length = half;
      chunks.splice(ci + 1, 0, right);
      if (k > half) {
        c = right;
        k -= half;
      }
    }
    const areas = c.areas;
    const keys = c.keys;
    for (let j = areas.length; j > k; j--) {
      areas[j] = areas[j - 1]!;
      keys[j] = keys[j - 1]!;
    }
    areas[k] = area;
    keys[k] = Number(area.last);
    this.#size++;
  }

  /** Removes the `count` areas from `pos` on (they must exist). */
  remove(pos: number, count: number): void {
    const chunks = this.#chunks;
    const first = (pos / CHUNK) | 0;
    let ci = first;
    let from = pos % CHUNK;
    this.#size -= count;
    while (count > 0) {
      const { areas, keys } = chunks[ci]!;
      const n = areas.length;
      const take = Math.min(count, n - from);
      for (let j = from + take; j < n; j++) {
        areas[j - take] = areas[j]!;
        keys[j - take] = keys[j]!;
      }
      areas.length = n - take;
      count -= take;
      if (areas.length === 0) chunks.splice(ci, 1);
      else ci++;
      from = 0;
    }
    if (!this.#merge(first)) this.#merge(first - 1);
  }

  /**
   * Keeps chunks from thinning out: folds chunk `ci + 1` into chunk `ci` when both fit in half a
   * chunk. @returns whether it did.
   */
  #merge(ci: number): boolean {
    const chunks = this.#chunks;
    const left = chunks[ci];
    const right = chunks[ci + 1];
    if (left === undefined || right === undefined || left.areas.length + right.areas.length > CHUNK / 2) return false;
    for (let j = 0; j < right.areas.length; j++) {
      left.keys[left.areas.length] = right.keys[j]!;
      left.areas.push(right.areas[j]!);
    }
    chunks.splice(ci + 1, 1);
    return true;
  }

  /** Every area in IOVA order, as a new array. */
  toArray(): Area[] {
    const out: Area[] = [];
    for (const c of this.#chunks) for (const a of c.areas) out.push(a);
    return out;
  }

  /** Replaces the content with `sorted` (in IOVA order, disjoint). */
  load(sorted: readonly Area[]): void {
    this.#chunks = [];
    this.#size = 0;
    for (const a of sorted) this.insert(this.end, a);
  }
}
