// The system-wide PASID space (src/engine/pasid-space.ts): `countOf(owner)`, which per-FD limits
// read on every allocation, must equal the PASIDs the owner holds after any sequence of
// allocations (lowest free or chosen), frees (good, of another owner's, of a PASID in use) and
// freeAll — checked against `ownedBy`, which counts from the map itself.
import { describe, expect, test } from 'vitest';
import { PasidSpace } from '../src/engine/pasid-space';
import { IommuError } from '../src/index';

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s;
  };
}

describe('PasidSpace counts', () => {
  test('countOf matches ownedBy through random alloc / free / freeAll / use', () => {
    const next = rng(20261203);
    const space = new PasidSpace(8); // 255 PASIDs: exhaustion (ENOSPC) happens too
    const owners = [{}, {}, {}];
    const refused = (f: () => void): void => {
      try {
        f();
      } catch (e) {
        if (!(e instanceof IommuError)) throw e;
      }
    };
    for (let step = 0; step < 20000; step++) {
      const owner = owners[next() % owners.length]!;
      const pasid = 1 + (next() % 255);
      const op = next() % 100;
      if (op < 45) refused(() => space.alloc('t', owner));
      else if (op < 55) refused(() => space.alloc('t', owner, pasid));
      else if (op < 90) refused(() => space.free('t', owner, pasid));
      else if (op < 95) space.use(pasid, space.owner(pasid) && next() % 2 ? 1 : -1 as 1 | -1);
      else if (op < 96) space.freeAll(owner);
      for (const o of owners) expect(space.countOf(o)).toBe(space.ownedBy(o).length);
    }
  });
});
