// Spare tables (assembly/spare.ts): engine tables that a partial unmap empties stay linked for the
// next map nearby, as Linux's VT-d and io-pgtable keep them. They must be invisible (translation,
// table-page counts, page limits and snapshots see the radix-minimal tree), reused in place, given
// back whenever pages are short, and bounded.
import { describe, expect, test } from 'vitest';
import * as abi from '../assembly/abi';
import { Access, Iommu, NO_PASID, type IommuError } from '../src/index';
import * as testing from './testing';
import { domainRig, type DomainRig } from './helpers';

const K = 4096n;
const M2 = 2n << 20n;
/** Each in its own 512 GiB region: a map builds three tables below the root, an unmap empties them. */
const far = (i: number): bigint => BigInt(i + 1) << 39n;

const path = (r: DomainRig, iova: bigint) => testing.tablePath(r.iommu, r.domain, iova);
const pagesUsed = (r: DomainRig): number => testing.engineOf(r.iommu).core.ctrl(abi.CTRL_PAGES_USED);
const read = (r: DomainRig, iova: bigint) => r.iommu.translate(r.dev.rid, NO_PASID, iova, Access.Read);

describe('spare tables', () => {
  test('a partial unmap keeps the emptied tables; translation and table counts see the tree without them', () => {
    const r = domainRig();
    const fresh = domainRig(); // never mapped there: what translation must look like
    const before = r.iommu.stats();
    r.fd.ioasMap(r.ioas, { iova: far(0), length: K, phys: 0x10_0000n });
    const built = path(r, far(0));
    expect(built.counts).toEqual([1, 1, 1]);
    expect(r.iommu.stats().tablePages).toBe(before.tablePages + 3);
    expect(read(r, far(0)).ok).toBe(true);

    r.fd.ioasUnmap(r.ioas, far(0), K);
    expect(path(r, far(0))).toEqual({ pages: built.pages, counts: [0, 0, 0] });
    const after = r.iommu.stats();
    expect(after.tablePages).toBe(before.tablePages);
    expect(after.spareTablePages).toBe(3);
    expect(testing.fdView(r.fd).objects.find((o) => o.type === 'hwpt-paging')).toMatchObject({ tablePages: 1 });
    // The walk stops at the root's entry, where the radix-minimal tree has nothing (same fault level).
    for (const iova of [far(0), far(0) + 0x123n, far(0) + M2]) {
      expect(read(r, iova)).toEqual(read(fresh, iova));
      expect(read(r, iova).fault).toMatchObject({ reason: 'not-present', level: 3 });
    }
    testing.checkGuards(r.iommu);
  });

  test('a map nearby reuses them in place: no new page, counts alive again', () => {
    const r = domainRig();
    r.fd.ioasMap(r.ioas, { iova: far(0), length: K, phys: 0x10_0000n });
    const built = path(r, far(0)).pages;
    r.fd.ioasUnmap(r.ioas, far(0), K);
    const used = pagesUsed(r);
    // Another page of the same leaf table, then one under the same level-2 table only.
    r.fd.ioasMap(r.ioas, { iova: far(0) + 5n * K, length: K, phys: 0x20_0000n });
    expect(pagesUsed(r)).toBe(used);
    expect(path(r, far(0) + 5n * K)).toEqual({ pages: built, counts: [1, 1, 1] });
    expect(r.iommu.stats().spareTablePages).toBe(0);
    expect(read(r, far(0) + 5n * K + 8n).phys).toBe(0x20_0008n);
    expect(read(r, far(0)).fault?.reason).toBe('not-present');
    r.fd.ioasMap(r.ioas, { iova: far(0) + (7n << 30n), length: K, phys: 0x30_0000n });
    expect(pagesUsed(r)).toBe(used + 2); // a new level-1 and level-0 table under the shared level-2 one
    expect(path(r, far(0) + (7n << 30n)).counts).toEqual([2, 1, 1]);
    // Unmapping one leaves the other's path alive: only its own tables become spare.
    r.fd.ioasUnmap(r.ioas, far(0) + 5n * K, K);
    expect(path(r, far(0) + 5n * K).counts).toEqual([1, 0, 0]);
    expect(r.iommu.stats().spareTablePages).toBe(2);
    expect(read(r, far(0) + 5n * K).fault).toMatchObject({ reason: 'not-present', level: 2 });
    expect(read(r, far(0) + (7n << 30n)).phys).toBe(0x30_0000n);
    testing.checkGuards(r.iommu);
  });

  test('a large leaf goes where a spare table was, as in the tree without it', () => {
    const r = domainRig();
    const at = far(1);
    r.fd.ioasMap(r.ioas, { iova: at + K, length: K, phys: 0x10_0000n });
    r.fd.ioasUnmap(r.ioas, at + K, K);
    expect(r.iommu.stats().spareTablePages).toBe(3);
    r.fd.ioasMap(r.ioas, { iova: at, length: M2, phys: 0x4000_0000n });
    const t = read(r, at + K);
    expect(t).toMatchObject({ ok: true, phys: 0x4000_1000n, size: M2 });
    expect(path(r, at).counts).toEqual([1, 1]); // level 2 and level 1 revived; level 0 released
    expect(r.iommu.stats().spareTablePages).toBe(0);
    testing.checkGuards(r.iommu);
  });

  test('an unmap covering a whole table retires it; destroying the domain retires every spare', () => {
    const r = domainRig();
    const base = pagesUsed(r);
    // 2 MiB of 4 KiB leaves (the output is not 2 MiB aligned): one leaf table that the area covers.
    r.fd.ioasMap(r.ioas, { iova: far(2), length: M2, phys: 0x4000_1000n });
    expect(path(r, far(2)).counts).toEqual([1, 1, 512]);
    r.fd.ioasUnmap(r.ioas, far(2), M2);
    expect(path(r, far(2)).counts).toEqual([0, 0]); // the leaf table is gone, the two above are spare
    expect(r.iommu.stats().spareTablePages).toBe(2);
    expect(pagesUsed(r)).toBe(base + 2);
    r.dev.detach();
    expect(pagesUsed(r)).toBe(base - 1); // the auto HWPT went, root and spares with it
    expect(r.iommu.stats().spareTablePages).toBe(0);
    testing.checkGuards(r.iommu);
  });

  test('a core unmap covering a spare table whole retires it, as one covering a live table does', () => {
    // Not reachable through ioasUnmap (an area's span holds no spare table: installing it revived
    // or replaced them), so the core's export is called directly: its two unmap paths
    // (pagetable.ts clearWithinEntry and unmapLevel) must agree on every range.
    const r = domainRig();
    const core = testing.engineOf(r.iommu).core;
    // Two leaf tables under one level-1 table; the first becomes spare, the second stays live.
    r.fd.ioasMap(r.ioas, { iova: far(3), length: K, phys: 0x10_0000n });
    r.fd.ioasMap(r.ioas, { iova: far(3) + M2, length: K, phys: 0x10_0000n });
    r.fd.ioasUnmap(r.ioas, far(3), K);
    expect(path(r, far(3)).counts).toEqual([1, 1, 0]);
    expect(r.iommu.stats().spareTablePages).toBe(1);
    const used = pagesUsed(r);
    expect(core.exports.unmap(r.domain, far(3), far(3) + K - 1n)).toBe(abi.STATUS_OK); // inside the spare table: nothing
    expect(r.iommu.stats().spareTablePages).toBe(1);
    expect(core.exports.unmap(r.domain, far(3), far(3) + M2 - 1n)).toBe(abi.STATUS_OK); // its whole span
    expect(path(r, far(3)).counts).toEqual([1, 1]);
    expect(r.iommu.stats().spareTablePages).toBe(0);
    expect(pagesUsed(r)).toBe(used - 1);
    expect(path(r, far(3) + M2).counts).toEqual([1, 1, 1]); // the live neighbour is untouched
    testing.checkGuards(r.iommu);
  });

  test('the engine keeps at most max(1024, the other pages in use) spare pages', () => {
    const r = domainRig();
    let most = 0;
    let released = false;
    for (let i = 0; i < 400; i++) {
      r.fd.ioasMap(r.ioas, { iova: far(i), length: K, phys: 0x10_0000n });
      r.fd.ioasUnmap(r.ioas, far(i), K);
      const spare = r.iommu.stats().spareTablePages;
      if (spare < most) released = true;
      most = Math.max(most, spare);
    }
    expect(most).toBe(1024 - (1024 % 3)); // the unmap that would make 1026 releases them all
    expect(released).toBe(true);
    expect(r.iommu.stats().spareTablePages).toBeLessThanOrEqual(1024);
    expect(r.iommu.stats().tablePages).toBe(testing.poolState(r.iommu).pagesUsed);
    testing.checkGuards(r.iommu);
  });

  test('the bound counts the spares of every domain together', () => {
    const r = domainRig();
    const dev2 = r.iommu.addDevice({ bdf: '00:03.0' });
    dev2.bind(r.fd);
    const ioas2 = r.fd.ioasAlloc();
    dev2.attach(ioas2);
    // 600 spare pages in the first domain, then more in the second until the total passes 1024.
    for (let i = 0; i < 200; i++) {
      r.fd.ioasMap(r.ioas, { iova: far(i), length: K, phys: 0x10_0000n });
      r.fd.ioasUnmap(r.ioas, far(i), K);
    }
    expect(r.iommu.stats().spareTablePages).toBe(600);
    let i = 0;
    for (; r.iommu.stats().spareTablePages >= 600; i++) {
      r.fd.ioasMap(ioas2, { iova: far(i), length: K, phys: 0x10_0000n });
      r.fd.ioasUnmap(ioas2, far(i), K);
    }
    expect(i).toBe(142); // 600 + 3 * 142 = 1026 > 1024: all of both domains' spares went
    expect(r.iommu.stats().spareTablePages).toBe(0);
    expect(testing.poolState(r.iommu).sparePages).toBe(0);
    testing.checkGuards(r.iommu);
  });

  test('a map that finds the pool empty gets the spare tables back first', () => {
    const r = domainRig({ maxMemoryBytes: 2 * 2 ** 20 });
    let n = 0;
    for (; ; n++) {
      try {
        r.fd.ioasMap(r.ioas, { iova: far(n), length: K, phys: 0x10_0000n });
      } catch (e) {
        expect((e as IommuError).errno).toBe('ENOMEM');
        break;
      }
    }
    expect(n).toBeGreaterThan(20);
    const half = Math.floor(n / 2);
    for (let i = 0; i < half; i++) r.fd.ioasUnmap(r.ioas, far(i), K);
    expect(r.iommu.stats().spareTablePages).toBe(3 * half);
    // New paths elsewhere in the same regions (a different level-2 entry): they need the spares' pages.
    for (let i = 0; i < half; i++) r.fd.ioasMap(r.ioas, { iova: far(i) + (9n << 30n), length: K, phys: 0x20_0000n });
    for (let i = 0; i < half; i++) expect(read(r, far(i) + (9n << 30n)).phys).toBe(0x20_0000n);
    for (let i = half; i < n; i++) expect(read(r, far(i)).phys).toBe(0x10_0000n);
    expect(r.iommu.stats().spareTablePages).toBeLessThan(3 * half);
    testing.checkGuards(r.iommu);
  });

  test('an FD at its page limit gives its spare tables back before a map would fail', () => {
    const r = domainRig({ pages: 10 });
    const held = (): number => (testing.fdView(r.fd).objects.find((o) => o.type === 'hwpt-paging') as { tablePages: number }).tablePages;
    for (let i = 0; i < 3; i++) r.fd.ioasMap(r.ioas, { iova: far(i), length: K, phys: 0x10_0000n });
    expect(held()).toBe(10); // the root and three paths of three: the limit exactly
    r.fd.ioasUnmap(r.ioas, far(0), K);
    r.fd.ioasUnmap(r.ioas, far(1), K);
    expect([held(), r.iommu.stats().spareTablePages]).toEqual([4, 6]);
    // 4 live + 6 spare; a new path of 3 is over the limit with the spares, not without them.
    r.fd.ioasMap(r.ioas, { iova: far(5), length: K, phys: 0x20_0000n });
    expect([held(), r.iommu.stats().spareTablePages]).toEqual([7, 0]);
    r.fd.ioasMap(r.ioas, { iova: far(6), length: K, phys: 0x20_0000n });
    // At the limit with no spares: one more path is refused and changes nothing.
    expect(() => r.fd.ioasMap(r.ioas, { iova: far(7), length: K, phys: 0x20_0000n })).toThrow(expect.objectContaining({ errno: 'ENOMEM' }));
    expect(held()).toBe(10);
    expect(read(r, far(7)).fault?.reason).toBe('not-present');
    for (const i of [2, 5, 6]) expect(read(r, far(i)).ok).toBe(true);
    testing.checkGuards(r.iommu);
  });

  test('a map that fails at any step while reviving spare tables leaves them as they were', () => {
    const r = domainRig();
    r.fd.ioasMap(r.ioas, { iova: far(3), length: K, phys: 0x10_0000n });
    r.fd.ioasUnmap(r.ioas, far(3), K);
    const spare = path(r, far(3));
    // 2 MiB + 4 KiB: the 2 MiB leaf revives the spare level-2 and level-1 tables; the page after it
    // needs new level-1 and level-0 tables, whose pages a failing step may refuse.
    const iova = far(3) + (1n << 30n) - M2;
    const before = r.iommu.stats();
    let failures = 0;
    for (let step = 1; ; step++) {
      testing.setFailCountdown(r.iommu, step);
      const e = (() => {
        try {
          r.fd.ioasMap(r.ioas, { iova, length: M2 + K, phys: 0x4000_0000n });
        } catch (error) {
          return error;
        }
      })();
      testing.setFailCountdown(r.iommu, 0);
      if (e === undefined) break;
      failures++;
      expect(e).toMatchObject({ errno: 'ENOMEM' });
      const now = r.iommu.stats();
      expect([now.tablePages, now.spareTablePages]).toEqual([before.tablePages, before.spareTablePages]);
      expect(path(r, far(3))).toEqual(spare);
      expect(read(r, iova).fault).toMatchObject({ reason: 'not-present', level: 3 });
      testing.checkGuards(r.iommu);
    }
    expect(failures).toBeGreaterThanOrEqual(2); // the two new pages at least
    expect(read(r, iova + M2).phys).toBe(0x4000_0000n + M2);
    expect(read(r, iova).size).toBe(M2);
  });

  test('a snapshot keeps spare tables, and a restore checks their counts', () => {
    const r = domainRig();
    r.fd.ioasMap(r.ioas, { iova: far(4), length: K, phys: 0x10_0000n });
    r.fd.ioasMap(r.ioas, { iova: far(5), length: K, phys: 0x20_0000n });
    r.fd.ioasUnmap(r.ioas, far(4), K);
    const restored = Iommu.restore(r.iommu.snapshot());
    const stats = restored.iommu.stats();
    expect([stats.tablePages, stats.spareTablePages]).toEqual([r.iommu.stats().tablePages, 3]);
    const rid = restored.devices.get(r.dev.bdf)!.rid;
    expect(restored.iommu.translate(rid, NO_PASID, far(5), Access.Read).phys).toBe(0x20_0000n);
    expect(restored.iommu.translate(rid, NO_PASID, far(4), Access.Read).fault?.reason).toBe('not-present');

    // Forged counts: a spare count that is off, and a leaf inside a spare table.
    const u32 = testing.engineOf(r.iommu).core.u32;
    const spareWord = (testing.engineOf(r.iommu).layout.domains + r.domain * abi.DOM_SIZE + abi.DOM_SPARE) >>> 2;
    u32[spareWord]! += 1;
    expect(() => Iommu.restore(r.iommu.snapshot())).toThrow(/counts 4 spare table pages, it has 3/);
    u32[spareWord]! -= 1;
    const leafTable = path(r, far(4)).pages[2]!;
    u32[leafTable >>> 2] = 0x10_0000 | abi.PTE_R;
    expect(() => Iommu.restore(r.iommu.snapshot())).toThrow(/counts 0 live entries, its table has 1/);
    u32[leafTable >>> 2] = 0;
    expect(() => Iommu.restore(r.iommu.snapshot())).not.toThrow();
  });
});
