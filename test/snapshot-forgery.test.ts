// Forged snapshots (src/snapshot/verify-memory.ts): structure-aware mutations of a snapshot
// (test/model/snapshot-forgery.ts); every one that Iommu.restore accepts must give an engine whose
// FDs stay isolated and that survives random use; every one it refuses is an IommuError. Each
// mutation costs a whole restore (about 1-3 ms): npm test runs 10^4 mutations in four slices of its
// own seed (each slice its own timeout); campaigns:
// `npm run fuzz -- --snapshots 100000 --seed S`.
import { describe, expect, test } from 'vitest';
import { Iommu, IommuError } from '../src/index';
import { buildForgeryBase, forgeries, isolationViolation } from './model/snapshot-forgery';
import { Rng } from './model/rng';

const SEED = 0x5a9_f0;
const SLICES = 4;
const COUNT = 2500;

describe('forged snapshots', () => {
  test('the unmodified base restores, is isolated and survives use', () => {
    const base = buildForgeryBase();
    const r = Iommu.restore(base);
    expect(isolationViolation(r, new Rng(1))).toBeUndefined();
    expect(forgeries(1, 0, base)).toEqual({ refused: 0, accepted: 0 });
  });

  test.each(Array.from({ length: SLICES }, (_, i) => i))(`slice %i of ${COUNT} mutations: refused with an IommuError, or accepted and still isolated`, { timeout: 120_000 }, (slice) => {
    const t0 = performance.now();
    const r = forgeries(SEED + slice, COUNT);
    console.log(`forged snapshots: ${r.accepted} accepted, ${r.refused} refused in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    expect(r.violation).toBeUndefined();
    expect(r.accepted + r.refused).toBe(COUNT);
    // Both sides are exercised: many forgeries get past the container and JSON checks to the
    // memory checks, and some (graph-neutral or harmless changes) are accepted.
    expect(r.accepted).toBeGreaterThan(COUNT / 20);
    expect(r.refused).toBeGreaterThan(COUNT / 4);
  });

  test('an IommuError is all a refusal ever is', () => {
    expect(() => Iommu.restore(new Uint8Array(3))).toThrow(IommuError);
  });
});
