/**
 * The area store of an IOAS (src/iommufd/area-store.ts) against a sorted array: random inserts and
 * range removes, with areas small enough to split and merge chunks many times, and areas near 2^64
 * where neighbouring areas round to the same double (the search's exact tie-break).
 */
import { describe, expect, test } from 'vitest';
import { AreaStore, keyOf } from '../src/iommufd/area-store.js';
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
});
