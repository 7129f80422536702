// Reuse of retired table pages (assembly/pool.ts takeLimbo): a map takes the page unmapped last
// when every record of the limbo ring is reclaimable (warm in the caches), and otherwise only a
// page whose record is older than every active translator's epoch (docs/architecture.md: retired
// pages are reused only after the epoch), oldest first.
import { describe, expect, test } from 'vitest';
import * as abi from '../assembly/abi';
import { Iommu, type IommuFd } from '../src/index';
import * as testing from './testing';
import { domainRig } from './helpers';

const K = 4096n;

/** A 4 MiB engine with one domain (see helpers.ts domainRig). */
const setup = () => domainRig({ maxMemoryBytes: 4 * 2 ** 20 });

/** Each of these IOVAs lies in its own 512 GiB region: a map builds 3 tables, an unmap empties them. */
const far = (i: number): bigint => BigInt(i + 1) << 39n;

/**
 * Unmaps the page at `iova`, then releases the spare tables the unmap kept (assembly/spare.ts), as
 * a pool or a page limit running out would: they are retired, deepest first.
 */
function unmapAndRelease(iommu: Iommu, fd: IommuFd, ioas: number, domain: number, iova: bigint): void {
  fd.ioasUnmap(ioas, iova, K);
  testing.engineOf(iommu).releaseSpares(domain);
}

/** The limbo ring: head, tail and the page of each record from head to tail. */
function limbo(iommu: Iommu): { head: number; tail: number; pages: number[] } {
  const core = testing.engineOf(iommu).core;
  const head = core.ctrl(abi.CTRL_LIMBO_HEAD);
  const tail = core.ctrl(abi.CTRL_LIMBO_TAIL);
  const ring = core.ctrl(abi.CTRL_LIMBO);
  const mask = core.ctrl(abi.CTRL_LIMBO_CAP) - 1;
  const pages: number[] = [];
  for (let i = head; i !== tail; i = (i + 1) >>> 0) pages.push(core.u32[(ring + ((i & mask) << 3)) >>> 2]! & ~abi.LIMBO_CLEAN);
  return { head, tail, pages };
}

/** The table pages below the root on the way to `iova` (level 2 down to level 0). */
function pathTables(iommu: Iommu, domain: number, iova: bigint): number[] {
  const e = testing.engineOf(iommu);
  const u32 = e.core.u32;
  const d = e.layout.domains + domain * abi.DOM_SIZE;
  let table = u32[(d + abi.DOM_ROOT) >>> 2]!;
  const out: number[] = [];
  for (let level = u32[(d + abi.DOM_LEVELS) >>> 2]! - 1; level > 0; level--) {
    const index = Number((iova >> BigInt(12 + 9 * level)) & 511n);
    const lo = u32[(table + index * 8) >>> 2]!;
    table = lo & ~(abi.PAGE_SIZE - 1);
    out.push(table);
  }
  return out;
}

describe('retired table pages', () => {
  test('a map after unmaps reuses the pages unmapped last, with no translator active', () => {
    const { iommu, fd, ioas, domain } = setup();
    for (let i = 0; i < 2; i++) fd.ioasMap(ioas, { iova: far(i), length: K, phys: 0x10_0000n });
    const second = pathTables(iommu, domain, far(1));
    unmapAndRelease(iommu, fd, ioas, domain, far(0));
    unmapAndRelease(iommu, fd, ioas, domain, far(1));
    const before = limbo(iommu);
    expect(before.pages.slice(-3).sort()).toEqual([...second].sort());
    fd.ioasMap(ioas, { iova: far(2), length: K, phys: 0x20_0000n });
    // The second unmap's pages, in the roles they had: the ring's tail gave them back.
    expect(pathTables(iommu, domain, far(2))).toEqual(second);
    const after = limbo(iommu);
    expect(after.head).toBe(before.head);
    expect(after.pages).toEqual(before.pages.slice(0, -3));
    testing.checkGuards(iommu);
  });

  test('a translator still in the epoch of the last unmap keeps its pages: the older ones are reused', () => {
    const { iommu, fd, ioas, domain } = setup();
    for (let i = 0; i < 2; i++) fd.ioasMap(ioas, { iova: far(i), length: K, phys: 0x10_0000n });
    const first = pathTables(iommu, domain, far(0));
    const second = pathTables(iommu, domain, far(1));
    unmapAndRelease(iommu, fd, ioas, domain, far(0));
    // Translator slot 1 announces the current epoch (a walk under way) before the second unmap,
    // whose pages it may still read: they are stamped with that epoch and must wait.
    const e = testing.engineOf(iommu);
    const slotEpoch = (e.layout.slots + e.layout.slotSize + abi.SLOT_EPOCH) >>> 2;
    e.core.u32[slotEpoch] = e.core.ctrl(abi.CTRL_EPOCH);
    try {
      unmapAndRelease(iommu, fd, ioas, domain, far(1));
      fd.ioasMap(ioas, { iova: far(2), length: K, phys: 0x20_0000n });
      const used = pathTables(iommu, domain, far(2));
      expect(used.filter((p) => second.includes(p))).toEqual([]);
      expect([...used].sort()).toEqual([...first].sort());
      expect([...limbo(iommu).pages].sort()).toEqual([...second].sort());
    } finally {
      e.core.u32[slotEpoch] = 0;
    }
    // Quiescent again: the held pages are reusable, newest first.
    unmapAndRelease(iommu, fd, ioas, domain, far(2));
    fd.ioasMap(ioas, { iova: far(3), length: K, phys: 0x30_0000n });
    expect([...pathTables(iommu, domain, far(3))].sort()).toEqual([...first].sort());
    testing.checkGuards(iommu);
  });
});
