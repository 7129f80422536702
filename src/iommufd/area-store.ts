/**
 * The ordered store of an IOAS's areas (io-pagetable.ts): a list of small sorted chunks (a B-tree
 * of height two), searched on doubles, so that MAP and UNMAP cost O(log n + CHUNK) with no BigInt
 * compare in the search and no splice of the whole area list.
 *
 * Keys: each area is searched by `keyOf(area.last)`, the u64 rounded to a double. Rounding is
 * monotonic (never decreasing), so a double compare orders two areas exactly unless both round to
 * the same double (possible from 2^53 up); the search settles those ties with one exact compare.
 *
 * Positions: `ci * CHUNK + k` names area `k` of chunk `ci`; {@link AreaStore.end} is past the last
 * area. A position is valid until the next insert or remove, as an array index would be.
 * @module
 */
import type { Area } from './area';

/** One u64 word and its two u32 halves, to read a bigint's bits without BigInt arithmetic. */
const word = new BigUint64Array(1);
const halves = new Uint32Array(word.buffer);
/** Index of the high u32 half of a u64 in a Uint32Array over u64 words: 1 on little-endian platforms. */
export const HI = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1 ? 1 : 0;
/** Index of the low u32 half (see {@link HI}). */
export const LO = 1 - HI;

/**
 * The search key of a u64: its value rounded to the nearest double (exact below 2^53). Computed
 * from the two u32 halves, as `Number(x)` costs several times more in V8.
 */
export function keyOf(x: bigint): number {
  word[0] = x;
  return halves[HI]! * 4294967296 + halves[LO]!;
}

/** {@link keyOf} of the u64 at u32 index `at` of `words` (a Uint32Array over u64 words), with no BigInt read. */
export function keyOfHalves(words: Uint32Array, at: number): number {
  return words[at + HI]! * 4294967296 + words[at + LO]!;
}

/**
 * Below this, IOVAs, lengths and output addresses take the fast paths of MAP and UNMAP
 * (io-pagetable.ts, batch-fast-path.ts): their keys are exact and so are sums of two of them
 * (below 2^53), so doubles hold them exactly.
 */
export const FAST_LIMIT = 2 ** 52;
/** FAST_LIMIT as a limit on the high u32 half of a u64 (read through {@link HI}). */
export const FAST_LIMIT_HI = 2 ** 20;

/** Most areas in one chunk; a full chunk splits in two halves. */
const CHUNK = 32;
/** Most empty chunks an AreaStore keeps for reuse. */
const SPARE = 16;

/**
 * A run of areas in IOVA order, as slot numbers in the store's `#slots` with the search key of
 * each, in typed arrays of fixed capacity CHUNK (so shifting them needs no write barrier per
 * element).
 */
class Chunk {
  /** Areas in use: `ids[0..n)` and `keys[0..n)`. */
  n = 0;
  /** Slot of each area, in IOVA order. */
  readonly ids = new Int32Array(CHUNK);
  /** `keys[k]` is `keyOf(last)` of area `ids[k]`. */
  readonly keys = new Float64Array(CHUNK);
}

/**
 * Invariants: areas sorted by `iova`, disjoint (so `last` ascends across chunks too); no chunk is
 * empty; every chunk holds at most CHUNK areas; `#tops` has one entry per chunk; a slot is in
 * exactly one chunk or on `#freeSlots` (then undefined).
 */
export class AreaStore {
  #chunks: Chunk[] = [];
  /** `#tops[ci]` is the key of chunk ci's last area: the first level of the search, in one array. */
  #tops: number[] = [];
  /** The areas, by slot; chunks hold slot numbers. */
  #slots: (Area | undefined)[] = [];
  /** Slots free for reuse. */
  #freeSlots: number[] = [];
  #size = 0;
  #version = 0;
  /** Empty chunks kept for reuse (at most SPARE): a new typed array costs more than a whole MAP. */
  #spare: Chunk[] = [];

  /** Changes on every insert, remove and load: a position taken at one version is valid at that version only. */
  get version(): number {
    return this.#version;
  }

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
   * @param key `keyOf(addr)`
   */
  seek(addr: bigint, key: number): number {
    let pos = this.seekExact(key);
    // Equal doubles may hide smaller u64 values (from 2^53 up): step over those exactly.
    if (pos !== this.end && this.lastKeyAt(pos) === key) {
      const end = this.end;
      while (pos !== end && this.at(pos)!.last < addr) pos = this.next(pos);
    }
    return pos;
  }

  /**
   * {@link seek} for an address below 2^53, given only as its key (exact there, so no tie-break is
   * needed).
   */
  seekExact(key: number): number {
    const tops = this.#tops;
    let lo = 0;
    let hi = tops.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (tops[mid]! < key) lo = mid + 1;
      else hi = mid;
    }
    if (lo === tops.length) return lo * CHUNK;
    const c = this.#chunks[lo]!;
    const keys = c.keys;
    let a = 0;
    let b = c.n - 1;
    while (a < b) {
      const mid = (a + b) >>> 1;
      if (keys[mid]! < key) a = mid + 1;
      else b = mid;
    }
    return lo * CHUNK + a;
  }

  /** The key of the last byte of the area at `pos` (not {@link end}). */
  lastKeyAt(pos: number): number {
    return this.#chunks[(pos / CHUNK) | 0]!.keys[pos % CHUNK]!;
  }

  /** The area at `pos`, or undefined at {@link end}. */
  at(pos: number): Area | undefined {
    const c = this.#chunks[(pos / CHUNK) | 0];
    return c === undefined ? undefined : this.#slots[c.ids[pos % CHUNK]!];
  }

  /** The position after `pos` ({@link end} after the last area). */
  next(pos: number): number {
    const ci = (pos / CHUNK) | 0;
    return (pos % CHUNK) + 1 < this.#chunks[ci]!.n ? pos + 1 : (ci + 1) * CHUNK;
  }

  /**
   * Inserts `area` at `pos` (the position {@link seek} gave for `area.iova`): the caller has checked
   * that it overlaps nothing, so it goes right before the area at `pos`.
   * @param lastKey `keyOf(area.last)`, when the caller has it
   */
  insert(pos: number, area: Area, lastKey = keyOf(area.last)): void {
    const chunks = this.#chunks;
    let ci = (pos / CHUNK) | 0;
    let k = pos % CHUNK;
    // Past the end, or at the start of a chunk: append to the chunk before when it has room.
    if (k === 0 && ci > 0 && chunks[ci - 1]!.n < CHUNK) {
      ci--;
      k = chunks[ci]!.n;
    }
    const tops = this.#tops;
    if (ci === chunks.length) {
      chunks.push(this.#newChunk());
      tops.push(0);
    }
    let c = chunks[ci]!;
    if (c.n === CHUNK) {
      const half = CHUNK / 2;
      const right = this.#newChunk();
      for (let j = half; j < CHUNK; j++) {
        right.ids[j - half] = c.ids[j]!;
        right.keys[j - half] = c.keys[j]!;
      }
      right.n = CHUNK - half;
      c.n = half;
      chunks.splice(ci + 1, 0, right);
      tops.splice(ci + 1, 0, right.keys[right.n - 1]!);
      tops[ci] = c.keys[half - 1]!;
      if (k > half) {
        c = right;
        k -= half;
        ci++;
      }
    }
    const { ids, keys, n } = c;
    for (let j = n; j > k; j--) {
      ids[j] = ids[j - 1]!;
      keys[j] = keys[j - 1]!;
    }
    const slot = this.#freeSlots.pop() ?? this.#slots.length;
    this.#slots[slot] = area;
    ids[k] = slot;
    keys[k] = lastKey;
    c.n = n + 1;
    tops[ci] = keys[n]!;
    this.#size++;
    this.#version++;
  }

  /** Removes the `count` areas from `pos` on (they must exist). */
  remove(pos: number, count: number): void {
    const chunks = this.#chunks;
    const first = (pos / CHUNK) | 0;
    let ci = first;
    let from = pos % CHUNK;
    this.#size -= count;
    this.#version++;
    while (count > 0) {
      const c = chunks[ci]!;
      const { ids, keys, n } = c;
      const take = Math.min(count, n - from);
      for (let j = from; j < from + take; j++) this.#freeSlot(ids[j]!);
      for (let j = from + take; j < n; j++) {
        ids[j - take] = ids[j]!;
        keys[j - take] = keys[j]!;
      }
      c.n = n - take;
      count -= take;
      if (c.n === 0) {
        chunks.splice(ci, 1);
        this.#tops.splice(ci, 1);
        this.#retire(c);
      } else {
        this.#tops[ci] = keys[c.n - 1]!;
        ci++;
      }
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
    if (left === undefined || right === undefined || left.n + right.n > CHUNK / 2) return false;
    for (let j = 0; j < right.n; j++) {
      left.ids[left.n + j] = right.ids[j]!;
      left.keys[left.n + j] = right.keys[j]!;
    }
    left.n += right.n;
    right.n = 0;
    chunks.splice(ci + 1, 1);
    this.#retire(right);
    this.#tops.splice(ci + 1, 1);
    this.#tops[ci] = left.keys[left.n - 1]!;
    return true;
  }

  /** An empty chunk, reused when one is spare. */
  #newChunk(): Chunk {
    return this.#spare.pop() ?? new Chunk();
  }

  /** Frees slot `id` (its area leaves the store). */
  #freeSlot(id: number): void {
    this.#slots[id] = undefined;
    this.#freeSlots.push(id);
  }

  /** Keeps `c` (empty) for reuse. */
  #retire(c: Chunk): void {
    if (this.#spare.length < SPARE) this.#spare.push(c);
  }

  /** Every area in IOVA order, as a new array. */
  toArray(): Area[] {
    const out: Area[] = [];
    for (const c of this.#chunks) for (let k = 0; k < c.n; k++) out.push(this.#slots[c.ids[k]!]!);
    return out;
  }

  /** Replaces the content with `sorted` (in IOVA order, disjoint). */
  load(sorted: readonly Area[]): void {
    this.#chunks = [];
    this.#tops = [];
    this.#slots = [];
    this.#freeSlots = [];
    this.#size = 0;
    this.#version++;
    for (const a of sorted) this.insert(this.end, a);
  }
}
