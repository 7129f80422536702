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
import { keyOf } from '../base/u64-word';

/**
 * Below this, IOVAs, lengths and output addresses take the fast paths of MAP and UNMAP
 * (io-pagetable.ts, batch-fast-path.ts): their keys are exact and so are sums of two of them
 * (below 2^53), so doubles hold them exactly.
 */
export const FAST_LIMIT = 2 ** 52;
/** FAST_LIMIT as a limit on the high u32 half of a u64 (read through `HI`, src/base/u64-word.ts). */
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
  /** The {@link AreaStore.removeMany} call that last touched this chunk (its `#pass`). */
  pass = 0;
}

/**
 * Removes element `i` of `a`: a pop when it is the last (no result array, unlike `splice`; a store
 * that one MAP fills and its UNMAP empties again drops its only chunk on every UNMAP).
 */
function dropAt<T>(a: T[], i: number): void {
  if (i === a.length - 1) a.pop();
  else a.splice(i, 1);
}

/** Scratch of {@link AreaStore.insertMany}: one chunk's areas merged with a batch's, before the split. */
let merge = { ids: new Int32Array(4 * CHUNK), keys: new Float64Array(4 * CHUNK) };

/** The merge buffers, with room for `n`. */
function mergeBuffers(n: number): { ids: Int32Array; keys: Float64Array } {
  if (merge.ids.length < n) merge = { ids: new Int32Array(2 * n), keys: new Float64Array(2 * n) };
  return merge;
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
  /** Counts {@link removeMany} calls, to know the chunks one touched. */
  #pass = 0;
  /** Scratch of {@link removeMany}: the chunks it touches. */
  #touched: Chunk[] = [];

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

  /**
   * Inserts `m` areas in one pass over the chunks they land in, instead of `m` calls of
   * {@link insert}: the j-th in IOVA order is `areas[order[j]]`, with `lastKeys[order[j]]` =
   * `keyOf(last)`, and goes right before the area at `positions[j]`, the {@link seekExact} position
   * of its iova taken on the store as it is before this call. The caller has checked that they
   * overlap nothing and each other (so `positions` does not decrease).
   */
  insertMany(areas: readonly Area[], lastKeys: Float64Array, order: Int32Array, positions: Int32Array, m: number): void {
    if (m === 0) return;
    const chunks = this.#chunks;
    const tops = this.#tops;
    const count = chunks.length;
    const end = count * CHUNK;
    if (count === 0) {
      chunks.push(this.#newChunk()); // empty until the areas go in below
      tops.push(0);
    }
    const slots = this.#slots;
    const freeSlots = this.#freeSlots;
    const buf = mergeBuffers(CHUNK + m);
    const { ids: outIds, keys: outKeys } = buf;
    /** Chunks made by splits, to go right after chunk `splitAt[x]`, in order. */
    let made: Chunk[] | undefined;
    let madeAfter: number[] | undefined;
    let j = 0;
    while (j < m) {
      // The group of areas landing in chunk ci: past the end means after the last chunk's areas.
      const last = Math.max(count - 1, 0);
      const p0 = positions[j]!;
      const ci = p0 === end ? last : (p0 / CHUNK) | 0;
      const c = chunks[ci]!;
      const { ids, keys, n } = c;
      // Merge the chunk's areas with the group's into the buffers.
      let t = 0;
      let a = 0;
      for (; j < m; j++) {
        const p = positions[j]!;
        if ((p === end ? last : (p / CHUNK) | 0) !== ci) break;
        const at = p === end ? n : p % CHUNK;
        for (; a < at; a++) {
          outIds[t] = ids[a]!;
          outKeys[t++] = keys[a]!;
        }
        const i = order[j]!;
        const slot = freeSlots.pop() ?? slots.length;
        slots[slot] = areas[i]!;
        outIds[t] = slot;
        outKeys[t++] = lastKeys[i]!;
      }
      for (; a < n; a++) {
        outIds[t] = ids[a]!;
        outKeys[t++] = keys[a]!;
      }
      // Back into the chunk, and when more than CHUNK, into as few more chunks, evenly.
      const pieces = Math.ceil(t / CHUNK);
      let from = 0;
      for (let q = 0; q < pieces; q++) {
        const to = from + Math.floor((t - from) / (pieces - q));
        const d = q === 0 ? c : this.#newChunk();
        for (let k = from; k < to; k++) {
          d.ids[k - from] = outIds[k]!;
          d.keys[k - from] = outKeys[k]!;
        }
        d.n = to - from;
        if (q === 0) tops[ci] = d.keys[d.n - 1]!;
        else {
          (made ??= []).push(d);
          (madeAfter ??= []).push(ci);
        }
        from = to;
      }
    }
    if (made !== undefined) {
      // The new chunks right after the chunks they split from, in order: in place, from the back
      // (the arrays grow by pushes, so they stay packed).
      const old = chunks.length;
      for (let x = 0; x < made.length; x++) {
        chunks.push(made[x]!);
        tops.push(0);
      }
      let x = made.length - 1;
      let to = chunks.length - 1;
      for (let ci = old - 1; x >= 0; ci--) {
        for (; x >= 0 && madeAfter![x] === ci; x--, to--) {
          const d = made[x]!;
          chunks[to] = d;
          tops[to] = d.keys[d.n - 1]!;
        }
        chunks[to] = chunks[ci]!;
        tops[to--] = tops[ci]!;
      }
    }
    this.#size += m;
    this.#version++;
  }

  /**
   * Removes `m` areas in one pass over the chunks they are in, instead of `m` calls of
   * {@link remove}: those at `positions[0..m)`, positions of areas in any order (as
   * {@link seekExact} gives them on the store as it is before this call).
   * @returns false, with the store unchanged, when a position is given twice
   */
  removeMany(positions: Int32Array, m: number): boolean {
    if (m === 0) return true;
    const chunks = this.#chunks;
    const touched = this.#touched;
    const pass = ++this.#pass;
    // Mark each leaving slot as ~slot (negative; slots are not), noting each chunk once.
    for (let j = 0; j < m; j++) {
      const p = positions[j]!;
      const c = chunks[(p / CHUNK) | 0]!;
      const k = p % CHUNK;
      const id = c.ids[k]!;
      if (id < 0) {
        // Named twice: unmark the ones before (this one's mark is the first naming's).
        for (let u = 0; u < j; u++) {
          const q = positions[u]!;
          const d = chunks[(q / CHUNK) | 0]!;
          const at = q % CHUNK;
          if (d.ids[at]! < 0) d.ids[at] = ~d.ids[at]!;
        }
        touched.length = 0;
        return false;
      }
      c.ids[k] = ~id;
      if (c.pass !== pass) {
        c.pass = pass;
        touched.push(c);
      }
    }
    // Each touched chunk once: the areas that stay slide over the marked ones.
    let thin = false;
    for (const c of touched) {
      const { ids, keys, n } = c;
      let w = 0;
      for (let r = 0; r < n; r++) {
        const id = ids[r]!;
        if (id < 0) this.#freeSlot(~id);
        else {
          ids[w] = id;
          keys[w++] = keys[r]!;
        }
      }
      c.n = w;
      thin ||= w <= CHUNK / 2;
    }
    touched.length = 0;
    this.#size -= m;
    this.#version++;
    // Tops, empty chunks and thin neighbours in one pass when needed; otherwise the tops only.
    if (thin) this.#compact();
    else {
      const tops = this.#tops;
      for (let ci = 0; ci < chunks.length; ci++) {
        const c = chunks[ci]!;
        if (c.pass === pass) tops[ci] = c.keys[c.n - 1]!;
      }
    }
    return true;
  }

  /**
   * One pass over the chunks: empty ones go, and a chunk folds into the one before when both fit
   * in half a chunk (as {@link remove} keeps them from thinning out).
   */
  #compact(): void {
    const chunks = this.#chunks;
    const tops = this.#tops;
    let kept = 0;
    for (let ci = 0; ci < chunks.length; ci++) {
      const c = chunks[ci]!;
      const left = kept > 0 ? chunks[kept - 1]! : undefined;
      if (c.n !== 0 && left !== undefined && left.n + c.n <= CHUNK / 2) {
        for (let k = 0; k < c.n; k++) {
          left.ids[left.n + k] = c.ids[k]!;
          left.keys[left.n + k] = c.keys[k]!;
        }
        left.n += c.n;
        c.n = 0;
        tops[kept - 1] = left.keys[left.n - 1]!;
      }
      if (c.n === 0) {
        this.#retire(c);
        continue;
      }
      chunks[kept] = c;
      tops[kept++] = c.keys[c.n - 1]!;
    }
    chunks.length = kept;
    tops.length = kept;
  }

  /**
   * @internal For tests: throws unless every invariant of the class holds (order, keys, no empty
   * or overfull chunk, tops, slots) and `keyOf` gives each area's key.
   */
  checkInvariants(): void {
    const fail = (what: string): never => {
      throw new Error(`AreaStore invariant: ${what}`);
    };
    if (this.#tops.length !== this.#chunks.length) fail('one top per chunk');
    let prev: Area | undefined;
    let size = 0;
    const seen = new Set<number>();
    for (let ci = 0; ci < this.#chunks.length; ci++) {
      const c = this.#chunks[ci]!;
      if (c.n < 1 || c.n > CHUNK) fail(`chunk ${ci} holds ${c.n} areas`);
      if (this.#tops[ci] !== c.keys[c.n - 1]) fail(`top of chunk ${ci}`);
      for (let k = 0; k < c.n; k++) {
        const id = c.ids[k]!;
        const a = this.#slots[id];
        if (a === undefined || seen.has(id)) fail(`slot ${id} at chunk ${ci} index ${k}`);
        seen.add(id);
        if (c.keys[k] !== keyOf(a!.last)) fail(`key at chunk ${ci} index ${k}`);
        if (prev !== undefined && !(prev.last < a!.iova)) fail(`order at chunk ${ci} index ${k}`);
        prev = a;
        size++;
      }
    }
    if (size !== this.#size) fail('size');
    for (const id of this.#freeSlots) if (this.#slots[id] !== undefined || seen.has(id)) fail(`free slot ${id}`);
    if (seen.size + this.#freeSlots.length !== this.#slots.length) fail('every slot in a chunk or free');
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
        dropAt(chunks, ci);
        dropAt(this.#tops, ci);
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
    // In range first: V8 looks up a negative index as a property name, in its runtime.
    if (ci < 0 || ci + 1 >= chunks.length) return false;
    const left = chunks[ci]!;
    const right = chunks[ci + 1]!;
    if (left.n + right.n > CHUNK / 2) return false;
    for (let j = 0; j < right.n; j++) {
      left.ids[left.n + j] = right.ids[j]!;
      left.keys[left.n + j] = right.keys[j]!;
    }
    left.n += right.n;
    right.n = 0;
    dropAt(chunks, ci + 1);
    this.#retire(right);
    dropAt(this.#tops, ci + 1);
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
