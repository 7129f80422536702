// Differential fuzzing: the engine against the deliberately simple reference model in test/model/.
// A seeded campaign of ≥ 10^5 random operations over several FDs (IOAS/HWPT/PASID alloc and
// destroy, map/unmap/copy with fixed and automatic IOVAs, allow, bind/attach/replace/detach/unbind,
// close, and translations of random and boundary addresses from random devices and PASIDs, per
// call, allocation-free and batched; access objects whose onUnmap unpins and re-enters (map, unmap,
// copy) or refuses; worker translator handles (in-thread, own IOTLB) taken, used and released;
// dirty tracking (on/off, writes, bitmap reads with and without clear); fault queues (PRI devices on
// HWPTs with a faultId: page requests, duplicates merged, read, answered, answered INVALID on
// detach or replace, the device's responses); software DMA (dmaRead/dmaWrite through the owner and
// worker translators, into guest RAM windows in buffers the test owns, whose bytes are compared);
// snapshot/restore at random points, after which the original and the restored engine run the same
// ops side by side for a while (same outcomes, same checks) before one of them is dropped). After every op results, errnos and translations must agree
// and the guard regions must be intact; every 50 ops the engine's internals (objects, areas,
// ranges, users, IDs, PASIDs, table pages, page-pool accounting) must match what the model implies.
// Long campaigns: `npm run fuzz -- --ops N --seed S` (scripts/fuzz.mjs); see test/README.md.
import { describe, expect, test } from 'vitest';
import * as ioasid from '../src/index';
import * as testing from './testing';
import { epochSeed, FUZZ_RAM, minimiseEpoch, Pair, report, runEpoch, type EngineApi } from './model/harness';
import { Model } from './model/model';
import { show, type Op, type Outcome } from './model/ops';

const api: EngineApi = { Iommu: ioasid.Iommu, IommuError: ioasid.IommuError, TranslationOut: ioasid.TranslationOut, Translator: ioasid.Translator, FAULT_REASONS: ioasid.FAULT_REASONS, testing };

const SEED = 0x10a5_1d;
const EPOCHS = 50;
const OPS_PER_EPOCH = 2000;

describe('differential fuzzing against the reference model', () => {
  test(`${EPOCHS * OPS_PER_EPOCH} seeded operations: zero divergences`, () => {
    const outcomes = new Map<string, number>();
    const add = (key: string): void => void outcomes.set(key, (outcomes.get(key) ?? 0) + 1);
    Pair.tally = (op: Op, o: Outcome) => {
      if (op.k === 'translate' && 'v' in o && Array.isArray(o.v)) {
        for (const t of o.v as { ok: boolean; reason?: string }[]) add(`translate ${t.ok ? 'ok' : t.reason}`);
        if (op.via === 'worker') for (const t of o.v as { ok: boolean }[]) if (t.ok) add('translate-worker ok');
      } else if (op.k === 'dma' && 'v' in o && o.v !== 'no-worker') {
        const r = o.v as { bytes: number; fault?: { reason: string } };
        add(`dma ${r.fault ? r.fault.reason : 'ok'}`);
        if (r.bytes > 0) add(`dma ${op.via} ${op.write ? 'write' : 'read'} moved`);
        if (r.bytes > 0 && r.fault) add('dma partial');
        if (r.bytes > 0 && r.fault?.reason === 'not-ram') add('dma not-ram after bytes');
      } else if (op.k === 'faultRead' && 'v' in o) {
        add(`faultRead ${(o.v as unknown[]).length > 0 ? 'requests' : 'none'}`);
      } else if (op.k === 'dirtyBitmap' && 'v' in o) {
        add(`dirtyBitmap ${(o.v as bigint[]).some((w) => w !== 0n) ? 'dirty' : 'clean'}`);
      } else {
        add(`${op.k} ${'e' in o ? o.e : 'ok'}`);
      }
    };
    // Where DMA went, seen from the model's leaves: across the seam of the adjoining windows
    // (inside one leaf, and from one leaf into the next), through 2 MiB and 1 GiB leaves.
    const dma = Model.prototype.dma;
    const seam = FUZZ_RAM[1]!.base;
    Model.prototype.dma = function (this: Model, ...args: Parameters<Model['dma']>) {
      const r = dma.apply(this, args);
      const leaves = this.lastDma;
      for (let i = 0; i < leaves.length; i++) {
        const l = leaves[i]!;
        if (l.phys < seam && l.phys + BigInt(l.n) > seam) add('dma seam inside a leaf');
        if (i > 0 && l.phys === seam && leaves[i - 1]!.phys + BigInt(leaves[i - 1]!.n) === seam) add('dma seam between leaves');
        if (l.sizeLg2 > 12) add(`dma leaf ${l.sizeLg2} moved`);
      }
      return r;
    };
    // Spare tables (assembly/spare.ts), seen by the internal checks: held, and then fewer (revived
    // by a map or released).
    let spares = 0;
    const poolState = (iommu: object): ReturnType<typeof testing.poolState> => {
      const p = testing.poolState(iommu);
      if (p.sparePages > 0) add('spare tables held');
      if (p.sparePages < spares) add('spare tables fewer');
      spares = p.sparePages;
      return p;
    };
    const tallying: EngineApi = { ...api, testing: { ...testing, poolState } };
    let ops = 0;
    try {
      for (let k = 0; k < EPOCHS; k++) {
        const r = runEpoch(tallying, epochSeed(SEED, k), OPS_PER_EPOCH);
        ops += r.ops;
        if (r.divergence) {
          const min = minimiseEpoch(api, r, 15_000);
          expect.fail(report(SEED, k, r, min.ops, min.divergence));
        }
      }
    } finally {
      Pair.tally = undefined;
      Model.prototype.dma = dma;
    }
    expect(ops).toBeGreaterThanOrEqual(100_000);
    // The campaign is only as good as what it reaches: every op kind succeeded and failed, every
    // errno path named in the issue was taken, every fault reason was produced.
    const seen = (key: string): number => outcomes.get(key) ?? 0;
    for (const key of [
      'map ok', 'map EEXIST', 'map EINVAL', 'map ENOENT', 'map EOVERFLOW', 'map ENOSPC', 'map EBADF', 'map ERANGE',
      'unmap ok', 'unmap ENOENT', 'unmap EINVAL', 'unmap EOVERFLOW',
      'copy ok', 'copy ENOENT', 'copy EPERM', 'copy EEXIST', 'copy EINVAL',
      'allow ok', 'allow EINVAL', 'allow EADDRINUSE',
      'hwptAlloc ok', 'hwptAlloc ENOENT', 'hwptAlloc EINVAL', 'hwptAlloc EADDRINUSE', 'hwptAlloc ENOMEM', 'hwptAlloc EOPNOTSUPP',
      'attach ok', 'attach EINVAL', 'attach ENOENT', 'attach EPERM', 'attach EADDRINUSE',
      'detach ok', 'bind ok', 'bind EINVAL', 'bind EBADF', 'unbind ok', 'close ok',
      'destroy ok', 'destroy EBUSY', 'destroy ENOENT', 'destroy EBADF',
      'pasidAlloc ok', 'pasidAlloc EEXIST', 'pasidAlloc ENOSPC', 'pasidFree ok', 'pasidFree ENOENT',
      'translate ok', 'translate bad-request', 'translate no-device', 'translate not-attached', 'translate pasid-invalid',
      'translate beyond-width', 'translate not-present', 'translate permission',
      'accessCreate ok', 'accessCreate EADDRINUSE', 'pin ok', 'pin ENOENT', 'pin EINVAL', 'unpin ok', 'unpin ENOENT',
      'unmap EDEADLOCK', 'snapshot ok',
      'faultAlloc ok', 'faultRead requests', 'faultRead none', 'faultRead EBADF', 'faultWrite ok', 'faultWrite EINVAL', 'faultClose ok', 'responses ok',
      'handle ok', 'handle ENOSPC', 'release ok', 'release EINVAL', 'translate-worker ok',
      'dma ok', 'dma bad-request', 'dma no-device', 'dma not-attached', 'dma pasid-invalid', 'dma beyond-width', 'dma not-present',
      'dma permission', 'dma not-ram', 'dma partial', 'dma call read moved', 'dma call write moved', 'dma worker read moved', 'dma worker write moved',
      'dma not-ram after bytes', 'dma seam inside a leaf', 'dma seam between leaves', 'dma leaf 21 moved', 'dma leaf 30 moved',
      'setDirty ok', 'setDirty EOPNOTSUPP', 'setDirty ENOENT', 'dirtyBitmap dirty', 'dirtyBitmap clean', 'dirtyBitmap EINVAL', 'dirtyBitmap EOPNOTSUPP',
      'spare tables held', 'spare tables fewer',
    ]) {
      expect(seen(key), key).toBeGreaterThan(0);
    }
  }, 180_000);

  test('the model is independent: same ops, fresh instances, same answers (determinism)', () => {
    const a = runEpoch(api, epochSeed(SEED, 999), 500);
    const b = runEpoch(api, epochSeed(SEED, 999), 500);
    expect(a.divergence).toBeUndefined();
    expect(show(a.cfg)).toBe(show(b.cfg));
  });

  test('the harness catches a planted divergence and minimises it', () => {
    // Sabotage the model: off-by-one page in every translation. The campaign must notice at once
    // and the minimiser must cut the trace to a handful of ops.
    const original = Model.prototype.translate;
    Model.prototype.translate = function (this: Model, ...args: Parameters<Model['translate']>) {
      const t = original.apply(this, args);
      return t.ok ? { ...t, phys: t.phys + 4096n } : t;
    };
    try {
      const r = runEpoch(api, epochSeed(SEED, 7), 2000);
      expect(r.divergence?.what).toBe('outcome');
      const min = minimiseEpoch(api, r, 10_000);
      expect(min.divergence).toBeDefined();
      expect(min.ops.length).toBeLessThanOrEqual(15);
      expect(min.ops.length).toBeLessThan(r.trace!.length / 10);
      // Translations and DMA both use the model's translate: either may be the first to differ.
      expect(['translate', 'dma']).toContain(min.ops.at(-1)!.k);
    } finally {
      Model.prototype.translate = original;
    }
  });
});

describe('software DMA', () => {
  const firstDivergence = (epochs: number): string | undefined => {
    for (let k = 0; k < epochs; k++) {
      const d = runEpoch(api, epochSeed(SEED, 100 + k), 2000).divergence;
      if (d) return `${d.op.k}: ${d.what}`;
    }
    return undefined;
  };

  test('a DMA write whose bytes differ from the model\'s is caught in guest RAM', () => {
    // Sabotage the model: it writes its data with one bit flipped, as an engine that corrupted a
    // byte would leave RAM. Only the comparison of the engine's RAM buffers sees it.
    const original = Model.prototype.dma;
    Model.prototype.dma = function (this: Model, rid, pasid, iova, data, write) {
      if (write && data.length > 5) data[5]! ^= 1;
      return original.call(this, rid, pasid, iova, data, write);
    };
    try {
      expect(firstDivergence(10)).toMatch(/^dma: after the DMA write: guest RAM at 0x/);
    } finally {
      Model.prototype.dma = original;
    }
  }, 60_000);
});

describe('side-by-side snapshots', () => {
  test('a restored engine that differs from the original is caught', () => {
    // Sabotage restore: the restored engine answers every successful call-path translation one
    // page off. Only the side-by-side comparison (or the model, once the twin carries on) sees it.
    const original = ioasid.Iommu.restore;
    ioasid.Iommu.restore = function (...args: Parameters<typeof ioasid.Iommu.restore>) {
      const r = original.apply(this, args);
      const translate = r.iommu.translate.bind(r.iommu);
      r.iommu.translate = (...a: Parameters<ioasid.Iommu['translate']>) => {
        const t = translate(...a);
        return t.ok ? { ...t, phys: t.phys + 4096n } : t;
      };
      return r;
    };
    try {
      let found: string | undefined;
      for (let k = 0; k < 40 && !found; k++) found = runEpoch(api, epochSeed(SEED, k), 2000).divergence?.what;
      // Seen by the side-by-side comparison, or by the model once a restored engine carries on.
      expect(found).toMatch(/original and restored engine disagree|outcome/);
    } finally {
      ioasid.Iommu.restore = original;
    }
  }, 120_000);
});
