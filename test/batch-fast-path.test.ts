/**
 * The checks and the one-merge insert of the MAP batch fast path (src/iommufd/batch-fast-path.ts
 * insertMapBatch), called directly on an area store: a batch in any order goes in whole and sorted,
 * or the call refuses it and leaves the store exactly as it was (the general path then decides).
 * The per-call comparison of whole batches is in ioas-batch.test.ts; there a refused fast path
 * only costs time, so its outcome alone cannot show that a valid batch was taken.
 */
import { describe, expect, test } from 'vitest';
import { AreaStore } from '../src/iommufd/area-store.js';
import { keyOf } from '../src/base/u64-word.js';
import { insertMapBatch, takeUnmapBatch } from '../src/iommufd/batch-fast-path.js';
import { makeArea, type Area } from '../src/iommufd/area.js';
import { Rng } from './reference-walk';

const P = 4096n;
const NO_RESERVED = new Float64Array(0);

/** A store holding one page at each of `pages` (page numbers). */
function storeWith(pages: readonly number[]): AreaStore {
  const s = new AreaStore();
  for (const pg of [...pages].sort((a, b) => a - b)) {
    const a = makeArea(BigInt(pg) * P, BigInt(pg) * P + P - 1n, 0n, true, true);
    s.insert(s.seekExact(keyOf(a.iova)), a);
  }
  return s;
}

/** insertMapBatch of `entries` ([iova, length, phys] each) with alignment mask `mask`. */
function run(s: AreaStore, entries: bigint[][], mask = 4095, perms?: number[], reserved = NO_RESERVED) {
  const e = BigUint64Array.from(entries.flat());
  const words = new Uint32Array(e.buffer);
  const areas: Area[] = new Array(entries.length);
  const starts = new Float64Array(entries.length);
  const ok = insertMapBatch(s, mask, reserved, e, words, perms ? Uint8Array.from(perms) : undefined, entries.length, areas, starts);
  return { ok, areas, starts };
}

const iovas = (s: AreaStore) => s.toArray().map((a) => a.iova / P);

describe('insertMapBatch', () => {
  test('a valid batch in any order goes in whole, sorted; areas and starts per request', () => {
    for (const mask of [4095, 0]) {
      // mask 0: more entries than the alignment, so the order comes from the comparator sort.
      for (const order of [[5, 1, 9, 3, 7], [1, 3, 5, 7, 9], [9, 7, 5, 3, 1], [3, 1]]) {
        const s = storeWith([2, 4, 6, 8, 100]);
        const r = run(s, order.map((pg) => [BigInt(pg) * P, P, BigInt(pg) * 16n * P]), mask, order.map((pg) => 1 + (pg % 3)));
        expect(r.ok, `mask ${mask} order ${order}`).toBe(true);
        s.checkInvariants();
        expect(iovas(s)).toEqual([...new Set([1, 2, 3, 4, 6, 8, 100, ...order])].sort((a, b) => a - b).map(BigInt));
        order.forEach((pg, i) => {
          expect(r.areas[i]).toEqual({ iova: BigInt(pg) * P, last: BigInt(pg) * P + P - 1n, phys: BigInt(pg) * 16n * P, read: ((1 + (pg % 3)) & 1) !== 0, write: ((1 + (pg % 3)) & 2) !== 0 });
          expect(r.starts[i]).toBe(pg * 4096);
          expect(s.at(s.seekExact(pg * 4096))).toBe(r.areas[i]);
        });
      }
    }
  });

  test('refused, store untouched: overlaps with areas or entries in any order, and bad entries', () => {
    const cases: [string, bigint[][], (number[] | undefined)?][] = [
      ['ends on the first page of an area', [[9n * P, P, 0n], [3n * P, 2n * P, 0n]]],
      ['starts on the last page of an area', [[9n * P, P, 0n], [4n * P, 2n * P, 0n]]],
      ['covers an area', [[1n * P, 8n * P, 0n]]],
      ['two entries overlap, the later one first in IOVA', [[20n * P, 2n * P, 0n], [19n * P, 2n * P, 0n]]],
      ['the same entry twice', [[20n * P, P, 0n], [30n * P, P, 0n], [20n * P, P, 0n]]],
      ['no permission', [[20n * P, P, 0n], [30n * P, P, 0n]], [3, 0]],
      ['unknown permission bit', [[20n * P, P, 0n]], [4]],
      ['zero length', [[20n * P, 0n, 0n]]],
      ['misaligned phys', [[20n * P, P, 1n]]],
      ['at or above FAST_LIMIT', [[1n << 52n, P, 0n]]],
      ['in a reserved range', [[20n * P, P, 0n], [64n * P, P, 0n]]],
    ];
    // Byte-aligned (no device): an entry whose last byte is an area's first.
    cases.push(['last byte on an area\'s first (mask 0)', [[9n * P, P, 0n], [3n * P, P + 1n, 0n]], undefined]);
    for (const [what, entries, perms] of cases) {
      const s = storeWith([2, 4, 6, 8, 100]);
      const before = s.toArray();
      const version = s.version;
      const reserved = Float64Array.from([64 * 4096, 65 * 4096 - 1]);
      expect(run(s, entries, what.includes('mask 0') ? 0 : 4095, perms, reserved).ok, what).toBe(false);
      expect(s.toArray(), what).toEqual(before);
      expect(s.version, what).toBe(version);
      s.checkInvariants();
    }
  });

  test('entries that touch areas and each other without overlapping go in', () => {
    const s = storeWith([2, 4, 6]);
    // [3], [5], [7, 8], [9]: each adjoins an area or another entry on both sides.
    const r = run(s, [[9n * P, P, 0n], [5n * P, P, 0n], [7n * P, 2n * P, 0n], [3n * P, P, 0n]]);
    expect(r.ok).toBe(true);
    s.checkInvariants();
    expect(iovas(s)).toEqual([2n, 3n, 4n, 5n, 6n, 7n, 9n]);
  });

  test('random batches over a store of many chunks match a sorted array', () => {
    const r = new Rng(5);
    const next = (n: number) => r.u32() % n;
    for (let round = 0; round < 40; round++) {
      const resident = [...new Set(Array.from({ length: next(2000) }, () => 2 * next(4000)))];
      const s = storeWith(resident);
      const before = s.toArray();
      const fresh = [...new Set(Array.from({ length: 1 + next(300) }, () => 2 * next(4000) + 1))];
      const clash = next(3) === 0 && resident.length > 0; // one entry lands on a resident page
      const pages = clash ? [...fresh, resident[next(resident.length)]!] : fresh;
      pages.sort(() => next(3) - 1);
      const mask = next(4) === 0 ? 0 : 4095;
      const res = run(s, pages.map((pg) => [BigInt(pg) * P, P, P]), mask);
      s.checkInvariants();
      expect(res.ok).toBe(!clash);
      const want = clash ? before.map((a) => a.iova / P) : [...resident, ...pages].sort((a, b) => a - b).map(BigInt);
      expect(iovas(s)).toEqual(want);
    }
  });
});

/** takeUnmapBatch of `entries` ([iova, length] each). */
function take(s: AreaStore, entries: bigint[][]) {
  const e = BigUint64Array.from(entries.flat());
  const leaving: Area[] = new Array(entries.length);
  return { ok: takeUnmapBatch(s, new Uint32Array(e.buffer), entries.length, leaving), leaving };
}

describe('takeUnmapBatch', () => {
  test('entries naming whole areas, in any order, take them all out; leaving in request order', () => {
    for (const order of [[8, 2, 100, 4], [2, 4, 8, 100], [100, 8, 4, 2]]) {
      const s = storeWith([2, 4, 6, 8, 100]);
      const byPage = new Map(s.toArray().map((a) => [Number(a.iova / P), a]));
      const r = take(s, order.map((pg) => [BigInt(pg) * P, P]));
      expect(r.ok, `order ${order}`).toBe(true);
      expect(r.leaving).toEqual(order.map((pg) => byPage.get(pg)));
      expect(r.leaving[0]).toBe(byPage.get(order[0]!));
      s.checkInvariants();
      expect(iovas(s)).toEqual([6n]);
    }
  });

  test('refused, store untouched: an area named twice in any order, part of an area, holes, bad lengths', () => {
    const cases: [string, bigint[][]][] = [
      ['the same area twice, apart', [[2n * P, P], [4n * P, P], [2n * P, P]]],
      ['the same area twice, descending around it', [[8n * P, P], [4n * P, P], [4n * P, P], [2n * P, P]]],
      ['the same area twice in a row, ascending', [[2n * P, P], [4n * P, P], [4n * P, P], [8n * P, P]]],
      ['a hole', [[2n * P, P], [3n * P, P]]],
      ['longer than the area', [[2n * P, 2n * P]]],
      ['part of a two-page area', [[10n * P, P]]],
      ['the last page of a two-page area', [[11n * P, P]]],
      ['zero length', [[2n * P, 0n]]],
      ['at or above FAST_LIMIT', [[1n << 52n, P]]],
    ];
    for (const [what, entries] of cases) {
      const s = storeWith([2, 4, 6, 8, 100]);
      s.insert(s.seekExact(10 * 4096), makeArea(10n * P, 12n * P - 1n, 0n, true, true));
      const before = s.toArray();
      const version = s.version;
      expect(take(s, entries).ok, what).toBe(false);
      expect(s.toArray(), what).toEqual(before);
      expect(s.version, what).toBe(version);
      s.checkInvariants();
    }
  });

  test('random batches over many chunks match a sorted array', () => {
    const r = new Rng(9);
    const next = (n: number) => r.u32() % n;
    for (let round = 0; round < 40; round++) {
      const resident = [...new Set(Array.from({ length: 1 + next(2000) }, () => next(6000)))];
      const s = storeWith(resident);
      const leaving = resident.filter(() => next(3) === 0).sort(() => next(3) - 1);
      const twice = next(3) === 0 && leaving.length > 0;
      const named = twice ? [...leaving, leaving[next(leaving.length)]!].sort(() => next(3) - 1) : leaving;
      const before = s.toArray();
      expect(take(s, named.map((pg) => [BigInt(pg) * P, P])).ok).toBe(!twice);
      s.checkInvariants();
      const gone = new Set(twice ? [] : leaving);
      expect(s.toArray()).toEqual(before.filter((a) => !gone.has(Number(a.iova / P))));
    }
  });
});
