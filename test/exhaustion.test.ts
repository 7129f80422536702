// Exhaustion: with a small maxMemoryBytes, map 4 KiB leaves scattered over the address space (two
// or three table pages each) until the page pool runs out. The failing map must be a clean ENOMEM
// that changes nothing; every earlier mapping must still translate; after unmapping, the same
// space must be reusable; and 10^4 map/unmap cycles must not grow the pool past its working size. The other finite
// resources (domain slots, PASIDs, translator slots) fail with their errno and are reusable too.
import { describe, expect, test } from 'vitest';
import { Access, Iommu, IommuError, NO_PASID, type DeviceFd, type IommuFd } from '../src/index';
import * as testing from './testing';

const K = 4096n;
const G = 1n << 30n;

function small(): { iommu: Iommu; fd: IommuFd; dev: DeviceFd; ioas: number } {
  const iommu = Iommu.createSync({ maxMemoryBytes: 2 * 2 ** 20, translators: 2, iotlbEntries: 16, maxDomains: 8, pasidBits: 4 });
  const fd = iommu.open();
  const ioas = fd.ioasAlloc();
  const dev = iommu.addDevice({ bdf: '00:02.0' });
  dev.bind(fd);
  dev.attach(ioas);
  return { iommu, fd, dev, ioas };
}

/** The i-th scattered mapping: each in its own 1 GiB region (a new level-1 and level-0 table). */
const iovaOf = (i: number): bigint => BigInt(i + 1) * G + BigInt(i % 512) * 2n * K;
const physOf = (i: number): bigint => 0x1_0000_0000n + BigInt(i) * K;

/** Maps scattered pages until ENOMEM; returns how many fit. */
function fill(fd: IommuFd, ioas: number, iommu: Iommu): number {
  for (let i = 0; ; i++) {
    const before = testing.poolState(iommu).pagesUsed;
    try {
      fd.ioasMap(ioas, { iova: iovaOf(i), length: K, phys: physOf(i) });
    } catch (e) {
      expect(e).toBeInstanceOf(IommuError);
      expect((e as IommuError).errno).toBe('ENOMEM');
      // A clean failure: no area, no page kept.
      expect(testing.poolState(iommu).pagesUsed).toBe(before);
      expect(fd.objects()[0]!.areas).toBe(i);
      return i;
    }
    expect(i).toBeLessThan(100_000);
  }
}

function expectAllTranslate(iommu: Iommu, dev: DeviceFd, n: number): void {
  for (let i = 0; i < n; i++) {
    const t = iommu.translate(dev.rid, NO_PASID, iovaOf(i) + 0x123n, Access.Read | Access.Write);
    expect(t.ok, `mapping ${i}`).toBe(true);
    expect(t.phys).toBe(physOf(i) + 0x123n);
  }
}

describe('exhaustion of the page pool and of the other finite resources', () => {
  test('map scattered 4 KiB leaves until ENOMEM: clean failure, earlier mappings intact, space reusable', () => {
    const { iommu, fd, dev, ioas } = small();
    const baseline = testing.poolState(iommu);
    const n = fill(fd, ioas, iommu);
    expect(n).toBeGreaterThan(50); // the pool really held many tables before running out
    const full = testing.poolState(iommu);
    expect(full.memoryBytes).toBeLessThanOrEqual(2 * 2 ** 20);
    expectAllTranslate(iommu, dev, n);
    expect(iommu.translate(dev.rid, NO_PASID, iovaOf(n), Access.Read).fault?.reason).toBe('not-present');
    // Other calls that need pages fail cleanly too, and ones that do not still work.
    expect(() => fd.hwptAlloc({ devId: dev.devId!, ptId: ioas })).toThrow(expect.objectContaining({ errno: 'ENOMEM' }));
    expect(fd.objects().filter((o) => o.type === 'hwpt-paging')).toHaveLength(1);
    expect(fd.ioasAlloc()).toBe(4);
    expect(testing.guardViolations(iommu)).toEqual([]);

    // A map that runs out part way down the walk (two tables linked, the third refused) must not
    // keep the tables it linked: unmapping one scattered page frees two, a new 512 GiB region needs three.
    fd.ioasUnmap(ioas, iovaOf(0), K);
    const partial = testing.poolState(iommu).pagesUsed;
    expect(() => fd.ioasMap(ioas, { iova: 1000n * G, length: K, phys: 0x5000 })).toThrow(expect.objectContaining({ errno: 'ENOMEM' }));
    expect(testing.poolState(iommu).pagesUsed).toBe(partial);
    fd.ioasMap(ioas, { iova: iovaOf(0), length: K, phys: physOf(0) });
    expectAllTranslate(iommu, dev, n);

    // Unmap everything: every table page comes back, and the same space is usable again.
    expect(fd.ioasUnmap(ioas, 0n, (1n << 64n) - 1n)).toBe(BigInt(n) * K);
    expect(testing.poolState(iommu).pagesUsed).toBe(baseline.pagesUsed);
    const again = fill(fd, ioas, iommu);
    expect(again).toBe(n);
    expectAllTranslate(iommu, dev, again);
    expect(testing.poolState(iommu).memoryBytes).toBe(full.memoryBytes);
    expect(testing.guardViolations(iommu)).toEqual([]);
    fd.close();
    const closed = testing.poolState(iommu);
    expect(closed.pagesUsed).toBe(closed.busPages + closed.pasidDirPages);
  });

  test('10^4 map/unmap cycles of scattered pages do not grow the page pool', () => {
    const { iommu, fd, dev, ioas } = small();
    const cycle = (i: number): void => {
      const iova = BigInt((i * 7919) % 4096) * G + BigInt(i % 512) * 2n * K; // a different table path each time
      fd.ioasMap(ioas, { iova, length: K, phys: physOf(i) });
      expect(iommu.translate(dev.rid, NO_PASID, iova, Access.Read).phys).toBe(physOf(i));
      expect(fd.ioasUnmap(ioas, iova, K)).toBe(K);
    };
    // Warm-up: the pool reaches its working size. Each unmap keeps the tables it empties as spare
    // tables until the pool runs out (here: its 2 MiB limit), when they are all released at once.
    for (let i = 0; i < 2000; i++) cycle(i);
    const warm = testing.poolState(iommu);
    for (let i = 2000; i < 10_000; i++) cycle(i);
    const after = testing.poolState(iommu);
    expect(after.poolTop).toBe(warm.poolTop);
    expect(after.memoryBytes).toBe(warm.memoryBytes);
    expect(after.pagesUsed).toBe(warm.pagesUsed);
    expect(after.domainPages).toBe(1); // just the root
    expect(testing.guardViolations(iommu)).toEqual([]);
  });

  test('domain slots: HWPTs until ENOMEM, then destroy and reuse', () => {
    const { iommu, fd, dev, ioas } = small(); // maxDomains 8: 7 domains, one taken by the auto HWPT
    const made: number[] = [];
    for (;;) {
      try {
        made.push(fd.hwptAlloc({ devId: dev.devId!, ptId: ioas }));
      } catch (e) {
        expect((e as IommuError).errno).toBe('ENOMEM');
        break;
      }
    }
    expect(made).toHaveLength(6);
    expect(testing.poolState(iommu).liveDomains).toBe(7);
    fd.destroy(made[2]!);
    expect(fd.hwptAlloc({ devId: dev.devId!, ptId: ioas })).toBe(made[2]);
    expect(() => fd.hwptAlloc({ devId: dev.devId!, ptId: ioas })).toThrow(expect.objectContaining({ errno: 'ENOMEM' }));
  });

  test('PASIDs: allocate until ENOSPC, free, allocate again (lowest first)', () => {
    const { iommu, fd } = small(); // pasidBits 4: PASIDs 1..15
    const other = iommu.open();
    const got = Array.from({ length: 15 }, (_, i) => (i % 2 ? other : fd).pasidAlloc());
    expect(got).toEqual(Array.from({ length: 15 }, (_, i) => i + 1));
    expect(() => fd.pasidAlloc()).toThrow(expect.objectContaining({ errno: 'ENOSPC' }));
    expect(() => other.pasidAlloc()).toThrow(expect.objectContaining({ errno: 'ENOSPC' }));
    other.pasidFree(4);
    other.close(); // frees the rest of other's PASIDs
    expect(fd.pasidAlloc()).toBe(2);
    expect(fd.pasids()).toEqual([1, 2, 3, 5, 7, 9, 11, 13, 15]);
  });

  test('translator slots: handles until ENOSPC, release, reuse', () => {
    const iommu = Iommu.createSync({ translators: 3, maxMemoryBytes: 8 * 2 ** 20, iotlbEntries: 16 });
    const a = iommu.translatorHandle({ batchCapacity: 16 });
    const b = iommu.translatorHandle({ batchCapacity: 16 });
    expect(() => iommu.translatorHandle()).toThrow(expect.objectContaining({ errno: 'ENOSPC' }));
    const used = testing.poolState(iommu).pagesUsed;
    iommu.translatorRelease(a);
    expect(testing.poolState(iommu).pagesUsed).toBeLessThan(used);
    expect(() => iommu.translatorRelease(a)).toThrow(expect.objectContaining({ errno: 'EINVAL' })); // released: no longer live
    expect(iommu.translatorHandle({ batchCapacity: 16 }).slot).toBe(a.slot);
    expect(b.slot).not.toBe(a.slot);
  });
});
