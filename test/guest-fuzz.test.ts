// Differential fuzzing of user-managed and nested HWPTs (test/model/guest-fuzz.ts): guest tables in
// RAM mutated between steps, hwptInvalidate in every form, translations against the independent
// walker of test/model/guest-walk.ts, snapshots with the original and the restored engine side by side.
import { describe, expect, test } from 'vitest';
import * as ioasid from '../src/index';
import { epochSeed } from './model/harness';
import { runGuestEpoch, type GuestApi } from './model/guest-fuzz';
import { show } from './model/ops';

const api = { Iommu: ioasid.Iommu, IommuError: ioasid.IommuError } as unknown as GuestApi;
const SEED = 0x6e57;
const EPOCHS = 6;

describe('guest-table differential fuzzing', () => {
  test(`${EPOCHS * 1000} seeded operations: zero divergences, every path reached`, () => {
    const tally = new Map<string, number>();
    let ops = 0;
    for (let k = 0; k < EPOCHS; k++) {
      const r = runGuestEpoch(api, epochSeed(SEED, k), 1000, undefined, tally);
      ops += r.ops;
      if (r.divergence) expect.fail(`epoch ${k}: ${r.divergence}\n${r.trace.slice(-30).map((o) => show(o)).join('\n')}`);
    }
    expect(ops).toBe(EPOCHS * 1000);
    // Only as good as what it reaches: every format, nesting, every fault reason of both stages,
    // stale answers allowed by the IOTLB rules, invalidation errors, twins after snapshots.
    for (const key of [
      'alloc x86-64 ok', 'alloc x86-64 nested ok', 'alloc sv39 ok', 'alloc sv48 ok', 'alloc sv57 ok', 'alloc sv39x4 ok', 'alloc sv48x4 ok', 'alloc sv57x4 ok',
      'translate ok', 'translate ok nested', 'translate stale', 'translate twin', 'snapshot twin',
      'translate not-present stage 1', 'translate not-present stage 2', 'translate permission stage 1', 'translate permission stage 2',
      'translate reserved stage 1', 'translate reserved stage 2', 'translate misaligned stage 1', 'translate ad-disabled stage 1', 'translate ad-disabled stage 2',
      'translate non-canonical stage 1', 'translate beyond-width stage 2', 'translate outside-ram stage 1', 'translate not-attached stage 0',
      'inval ok', 'inval EINVAL', 'inval ENOENT', 'inval EOPNOTSUPP', 'inval EOVERFLOW',
    ]) {
      expect(tally.get(key) ?? 0, key).toBeGreaterThan(0);
    }
  }, 120_000);
});

describe('the guest-table model catches planted engine bugs', () => {
  /** Runs epochs until one diverges; the divergence text, or undefined. */
  const firstDivergence = (epochs: number): string | undefined => {
    for (let k = 0; k < epochs; k++) {
      const r = runGuestEpoch(api, epochSeed(SEED + 1, k), 1000);
      if (r.divergence) return r.divergence;
    }
    return undefined;
  };

  test('an engine that ignores a permission bit (writes allowed through read-only entries)', () => {
    const original = ioasid.Iommu.prototype.translate;
    ioasid.Iommu.prototype.translate = function (this: ioasid.Iommu, ...args: Parameters<ioasid.Iommu['translate']>) {
      const t = original.apply(this, args);
      // The bug: a write that a leaf's R/W bit refuses goes through to a fresh read.
      if (!t.ok && t.fault!.reason === 'permission' && (args[3] & ioasid.Access.Write) !== 0) return original.apply(this, [args[0], args[1], args[2], ioasid.Access.Read]);
      return t;
    };
    try {
      expect(firstDivergence(10)).toMatch(/request \d+ .*engine 0 \{"ok":true/);
    } finally {
      ioasid.Iommu.prototype.translate = original;
    }
  });

  test('an engine that drops the invalidation of one page (single-page range entries ignored)', () => {
    const original = ioasid.IommuFd.prototype.hwptInvalidate;
    ioasid.IommuFd.prototype.hwptInvalidate = function (this: ioasid.IommuFd, hwpt: number, entries: ioasid.InvalidateEntry[]) {
      if (Array.isArray(entries) && entries.length === 1 && entries[0]!.length === 4096n) return 1;
      return original.call(this, hwpt, entries);
    };
    try {
      expect(firstDivergence(10)).toMatch(/request \d+ /);
    } finally {
      ioasid.IommuFd.prototype.hwptInvalidate = original;
    }
  });

  test('an engine whose write walks make no A/D updates in guest RAM (bits 7:6 of every changed word restored)', () => {
    const original = ioasid.Iommu.prototype.translate;
    ioasid.Iommu.prototype.translate = function (this: ioasid.Iommu, ...args: Parameters<ioasid.Iommu['translate']>) {
      if ((args[3] & ioasid.Access.Write) === 0) return original.apply(this, args);
      const before = this.ram.slice();
      const t = original.apply(this, args);
      const ram = this.ram;
      const now = new BigUint64Array(ram.buffer, ram.byteOffset, ram.byteLength / 8);
      const old = new BigUint64Array(before.buffer);
      for (let i = 0; i < now.length; i++) if (now[i] !== old[i]) now[i] = (now[i]! & ~0xc0n) | (old[i]! & 0xc0n);
      return t;
    };
    try {
      expect(firstDivergence(3)).toMatch(/RAM after the walks/);
    } finally {
      ioasid.Iommu.prototype.translate = original;
    }
  });
});
