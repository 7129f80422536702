/**
 * The area store of an IOAS (src/iommufd/area-store.ts) against a sorted array: random inserts and
 * range removes, with areas small enough to split and merge chunks many times, and areas near 2^64
 * where neighbouring areas round to the same double (the search's exact tie-break).
 */
import { describe, expect, test } from 'vitest';
import { AreaStore } from '../src/iommufd/area-store.js';
import { keyOf } from '../src/base/u64-word.js';
import type { Area } from '../src/iommufd/area';
import { Rng } from './reference-walk';

function area(iova: bigint, length: bigint): Area {
  return Object.freeze({ iova, last: iova + length - 1n, phys: iova, read: true, write: true });
}

/** Index of the first area of `ref` with last >= addr (the reference of `seek`). */
function refSeek(ref: readonly Area[], addr: bigint): number {
  const i = ref.findIndex((a) => a.last >= addr);
  return i < 0 ? ref.length : i;
}

/** Walks the store from `pos` and returns the areas, in order. */
function walk(s: AreaStore, pos: number): Area[] {
  const out: Area[] = [];
  for (let p = pos; p !== s.end; p = s.next(p)) out.push(s.at(p)!);
  return out;
}

describe('AreaStore', () => {
  test('keyOf is Number() of the u64: exact below 2^53, monotonic above', () => {
    const r3 = new Rng(3);
    const next = () => r3.u32();
    const values = [0n, 1n, (1n << 53n) - 1n, 1n << 53n, (1n << 53n) + 1n, (1n << 64n) - 1n, (1n << 64n) - 1024n, (1n << 64n) - 1025n];
    for (let i = 0; i < 2000; i++) values.push(((BigInt(next()) << 32n) | BigInt(next())) >> BigInt(next() % 64));
    for (const v of values) expect(keyOf(v)).toBe(Number(v));
    values.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    for (let i = 1; i < values.length; i++) expect(keyOf(values[i]!)).toBeGreaterThanOrEqual(keyOf(values[i - 1]!));
  });

  // Slots of 1 byte near 2^64 share doubles (spacing 2048 there); slots of 4 KiB near 2^40 do not.
  for (const [name, base, slot] of [
    ['4 KiB areas below 2^53', 1n << 40n, 4096n],
    ['1-byte areas near 2^64 (equal doubles)', (1n << 64n) - 100_000n, 1n],
    ['16-byte areas across 2^53', (1n << 53n) - 40_000n, 16n],
  ] as const) {
    test(`random inserts and removes match a sorted array: ${name}`, () => {
      const r7 = new Rng(7);
      const next = () => r7.u32();
      const s = new AreaStore();
      let ref: Area[] = [];
      const used = new Set<number>();
      for (let step = 0; step < 6000; step++) {
        const slotIndex = next() % 5000;
        if (next() % 3 !== 0 && !used.has(slotIndex)) {
          const a = area(base + BigInt(slotIndex) * slot, slot);
          const i = refSeek(ref, a.iova);
          const pos = s.seek(a.iova, keyOf(a.iova));
          expect(s.at(pos)).toBe(ref[i]);
          s.insert(pos, a);
          ref.splice(i, 0, a);
          used.add(slotIndex);
        } else if (ref.length > 0) {
          const i = next() % ref.length;
          const count = Math.min(1 + (next() % 70), ref.length - i);
          const a = ref[i]!;
          const pos = s.seek(a.iova, keyOf(a.iova));
          expect(s.at(pos)).toBe(a);
          s.remove(pos, count);
          for (const gone of ref.splice(i, count)) used.delete(Number((gone.iova - base) / slot));
        }
        expect(s.size).toBe(ref.length);
        if (step % 97 === 0) {
          expect(s.toArray()).toEqual(ref);
          // Seek from every kind of address: inside an area, in a hole, beyond the last.
          for (let k = 0; k < 20; k++) {
            const addr = base + BigInt(next() % 5100) * slot + (slot > 1n ? BigInt(next() % Number(slot)) : 0n);
            expect(walk(s, s.seek(addr, keyOf(addr)))).toEqual(ref.slice(refSeek(ref, addr)));
          }
        }
      }
      s.load(ref);
      expect(s.toArray()).toEqual(ref);
      ref = [];
      s.load([]);
      expect(s.size).toBe(0);
      expect(s.seek(0n, 0)).toBe(s.end);
    });
  }

  describe('insertMany (one merge of a batch)', () => {
    /** Inserts `batch` (any order) with insertMany, as the batch fast path does: order and positions taken first. */
    function insertMany(s: AreaStore, batch: readonly Area[]): void {
      const order = Int32Array.from(batch.map((_, i) => i).sort((x, y) => (batch[x]!.iova < batch[y]!.iova ? -1 : 1)));
      const positions = Int32Array.from(order, (i) => s.seekExact(keyOf(batch[i]!.iova)));
      s.insertMany(batch, Float64Array.from(batch, (a) => keyOf(a.last)), order, positions, batch.length);
    }

    test('random batches (out of order, next to areas, in every chunk, at both ends) match a sorted array', () => {
      const r = new Rng(11);
      const next = (n: number) => r.u32() % n;
      const slot = 4096n;
      for (let round = 0; round < 60; round++) {
        const s = new AreaStore();
        const used = new Set<number>();
        let ref: Area[] = [];
        const slots = 200 + next(3000);
        for (let step = 0; step < 12; step++) {
          // A batch: fresh slots drawn anywhere, many of them next to used ones; sometimes huge.
          const size = next(4) === 0 ? 1 + next(600) : 1 + next(40);
          const batch: Area[] = [];
          for (let k = 0; k < size; k++) {
            let sl = next(slots);
            if (next(2) === 0 && ref.length > 0) sl = Number((ref[next(ref.length)]!.iova - slot) / slot) + (next(2) === 0 ? -1 : 1);
            if (sl < 0 || used.has(sl)) continue;
            used.add(sl);
            batch.push(area(slot + BigInt(sl) * slot, slot));
          }
          insertMany(s, batch);
          ref = [...ref, ...batch].sort((a, b) => (a.iova < b.iova ? -1 : 1));
          s.checkInvariants();
          expect(s.toArray()).toEqual(ref);
          expect(s.size).toBe(ref.length);
          // Remove a few runs, so that later batches land in thinned and merged chunks too.
          for (let k = next(4); k > 0 && ref.length > 0; k--) {
            const i = next(ref.length);
            const count = Math.min(1 + next(50), ref.length - i);
            s.remove(s.seekExact(keyOf(ref[i]!.iova)), count);
            for (const gone of ref.splice(i, count)) used.delete(Number((gone.iova - slot) / slot));
          }
          s.checkInvariants();
          expect(s.toArray()).toEqual(ref);
          for (let k = 0; k < 10; k++) {
            const addr = BigInt(next(slots + 10)) * slot + BigInt(next(4096));
            expect(walk(s, s.seekExact(keyOf(addr)))).toEqual(ref.slice(refSeek(ref, addr)));
          }
        }
      }
    });

    test('cases: into an empty store, before the first area, after the last, between every pair, a full chunk', () => {
      const P = 4096n;
      const s = new AreaStore();
      const ref: Area[] = [];
      // Even slots 2..128, inserted by one batch in reverse order into the empty store.
      const evens = Array.from({ length: 64 }, (_, i) => area(BigInt(2 * (64 - i)) * P, P));
      insertMany(s, evens);
      ref.push(...[...evens].reverse());
      s.checkInvariants();
      expect(s.toArray()).toEqual(ref);
      // Every odd slot (between every pair, before the first, after the last), as one batch.
      const odds = Array.from({ length: 65 }, (_, i) => area(BigInt(2 * i + 1) * P, P));
      insertMany(s, odds);
      const all = [...ref, ...odds].sort((a, b) => (a.iova < b.iova ? -1 : 1));
      s.checkInvariants();
      expect(s.toArray()).toEqual(all);
      // One area into each chunk that is full: those split.
      const big = new AreaStore();
      const dense = Array.from({ length: 32 }, (_, i) => area(BigInt(2 * i) * P, P));
      insertMany(big, dense);
      big.checkInvariants();
      insertMany(big, [area(7n * P, P)]);
      big.checkInvariants();
      expect(big.toArray().map((a) => a.iova / P)).toEqual([...Array.from({ length: 4 }, (_, i) => BigInt(2 * i)), 7n, ...Array.from({ length: 28 }, (_, i) => BigInt(2 * i + 8))]);
      insertMany(big, []);
      big.checkInvariants();
      expect(big.size).toBe(33);
    });

    test('checkInvariants finds a broken store', () => {
      const s = new AreaStore();
      s.insert(s.end, area(4096n, 4096n));
      s.insert(s.end, area(3n * 4096n, 4096n));
      s.checkInvariants();
      // An area out of order, inserted at the end behind the checks' back.
      s.insert(s.end, area(0n, 4096n));
      expect(() => s.checkInvariants()).toThrow(/order/);
    });
  });

  describe('removeMany (one pass for a batch)', () => {
    test('random position sets (any order; every chunk, runs, all of them) match a sorted array; a repeat is refused', () => {
      const r = new Rng(13);
      const next = (n: number) => r.u32() % n;
      for (let round = 0; round < 80; round++) {
        const s = new AreaStore();
        const count = next(1500);
        let ref = Array.from({ length: count }, (_, i) => area(BigInt(2 * i + 1) * 4096n, 4096n));
        for (const a of ref) s.insert(s.end, a);
        for (let step = 0; step < 6 && ref.length > 0; step++) {
          // Leaving: a random subset, or a run, or everything.
          const kind = next(4);
          const start = next(ref.length);
          const pick = ref.map((_, i) => (kind === 0 ? true : kind === 1 ? i >= start && i < start + 1 + next(80) : next(3) === 0));
          const leaving = ref.filter((_, i) => pick[i]);
          const positions = Int32Array.from(leaving, (a) => s.seekExact(keyOf(a.iova))).sort((x, y) => (next(3) === 0 ? x - y : y - x));
          // Sometimes one position twice first: refused, nothing changes.
          if (leaving.length > 0 && next(4) === 0) {
            const twice = Int32Array.from([...positions, positions[next(positions.length)]!]).sort(() => next(3) - 1);
            const version = s.version;
            expect(s.removeMany(twice, twice.length)).toBe(false);
            expect(s.version).toBe(version);
            s.checkInvariants();
            expect(s.toArray()).toEqual(ref);
          }
          expect(s.removeMany(positions, positions.length)).toBe(true);
          ref = ref.filter((_, i) => !pick[i]);
          s.checkInvariants();
          expect(s.toArray()).toEqual(ref);
          expect(s.size).toBe(ref.length);
          for (let k = 0; k < 10; k++) {
            const addr = BigInt(next(2 * count + 4)) * 4096n + BigInt(next(4096));
            expect(walk(s, s.seekExact(keyOf(addr)))).toEqual(ref.slice(refSeek(ref, addr)));
          }
          // The freed slots and chunks serve inserts again.
          const fresh = area(BigInt(2 * count + 8 + step) * 4096n, 4096n);
          s.insert(s.end, fresh);
          ref.push(fresh);
          s.checkInvariants();
        }
      }
    });
  });
});
