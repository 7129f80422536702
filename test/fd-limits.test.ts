// Per-FD limits (iommu.open({ limits })): one FD reaching its quota of PASIDs, HWPTs or table pages
// fails with ENOSPC/ENOMEM and changes nothing, while another FD on the same engine is unaffected.
import { describe, expect, test } from 'vitest';
import { Iommu, type IommuFd } from '../src/index';
import { fdView } from './testing';
import { errnoOf } from './helpers';

const P = 0x1000n;
const RAM = 0x8000_0000n;

function rig() {
  const iommu = Iommu.createSync({ ram: { base: RAM, bytes: 1 << 20 }, translators: 1, iotlbEntries: 64, maxDomains: 64, maxMemoryBytes: 32 << 20 });
  let n = 0;
  const device = (fd: IommuFd): { devId: number; attach: (id: number) => number } => {
    const dev = iommu.addDevice({ bdf: `00:${(++n).toString(16).padStart(2, '0')}.0` });
    const devId = dev.bind(fd);
    return { devId, attach: (id) => dev.attach(id) };
  };
  return { iommu, device };
}

/** Table pages of an FD's engine-managed HWPTs. */
const pagesOf = (fd: IommuFd): number =>
  fdView(fd).objects.reduce((n, o) => n + (o.type === 'hwpt-paging' ? (o as { tablePages: number }).tablePages : 0), 0);

/** `f()` fails with `errno` and the FD's observable state is the same after. */
function refused(fd: IommuFd, errno: string, f: () => unknown): void {
  const before = JSON.stringify(fdView(fd), (_, v) => (typeof v === 'bigint' ? v.toString() : v));
  expect(errnoOf(f)).toBe(errno);
  expect(JSON.stringify(fdView(fd), (_, v) => (typeof v === 'bigint' ? v.toString() : v))).toBe(before);
}

describe('per-FD limits', () => {
  test('options are validated', () => {
    const { iommu } = rig();
    expect(iommu.open().limits).toEqual({ pasids: Infinity, domains: Infinity, pages: Infinity });
    expect(iommu.open({ limits: { pages: 5 } }).limits).toEqual({ pasids: Infinity, domains: Infinity, pages: 5 });
    for (const bad of [{ limits: { pasids: -1 } }, { limits: { domains: 1.5 } }, { limits: { pages: '3' } }, { limits: 5 }, { limits: null }, { limits: { pages: 2 ** 31 } }]) {
      expect(errnoOf(() => iommu.open(bad as never))).toBe('EINVAL');
    }
    expect(errnoOf(() => iommu.open({ limits: { memory: 1 } } as never))).toBe('EOPNOTSUPP');
    expect(errnoOf(() => iommu.open({ quota: 1 } as never))).toBe('EOPNOTSUPP');
  });

  test('pasids: ENOSPC for that FD alone, room again after a free', () => {
    const { iommu } = rig();
    const fd = iommu.open({ limits: { pasids: 2 } });
    const other = iommu.open();
    const a = fd.pasidAlloc();
    fd.pasidAlloc();
    refused(fd, 'ENOSPC', () => fd.pasidAlloc());
    refused(fd, 'ENOSPC', () => fd.pasidAlloc({ pasid: 77 }));
    for (let i = 0; i < 5; i++) other.pasidAlloc();
    fd.pasidFree(a);
    expect(fd.pasidAlloc()).toBeGreaterThan(0);
  });

  test('domains: explicit, auto and user-managed HWPTs all count; ENOSPC for that FD alone', () => {
    const { iommu, device } = rig();
    const fd = iommu.open({ limits: { domains: 2 } });
    const d = device(fd);
    const ioas = fd.ioasAlloc();
    const h1 = fd.hwptAlloc({ devId: d.devId, ptId: ioas });
    d.attach(fd.ioasAlloc()); // an auto HWPT: the second domain
    refused(fd, 'ENOSPC', () => fd.hwptAlloc({ devId: d.devId, ptId: ioas }));
    refused(fd, 'ENOSPC', () => fd.hwptAlloc({ devId: d.devId, table: { format: 'sv39', root: RAM } }));
    const other = iommu.open();
    const od = device(other);
    const oioas = other.ioasAlloc();
    for (let i = 0; i < 4; i++) other.hwptAlloc({ devId: od.devId, ptId: oioas });
    fd.destroy(h1);
    expect(fd.hwptAlloc({ devId: d.devId, table: { format: 'sv39', root: RAM } })).toBeGreaterThan(0);
  });

  test('pages: a map that would pass the quota is ENOMEM with nothing changed; other FDs map on', () => {
    const { iommu, device } = rig();
    const fd = iommu.open({ limits: { pages: 12 } });
    const d = device(fd);
    const ioas = fd.ioasAlloc();
    d.attach(ioas);
    fd.hwptAlloc({ devId: d.devId, ptId: ioas }); // two HWPTs mirror the IOAS: both count
    let i = 0n;
    let err = 'success';
    for (; i < 64n && err === 'success'; i++) {
      // 1 GiB apart: every map needs new level-1 and level-0 tables in each HWPT.
      const before = JSON.stringify(fdView(fd), (_, v) => (typeof v === 'bigint' ? v.toString() : v));
      err = errnoOf(() => fd.ioasMap(ioas, { iova: (i + 1n) << 30n, length: P, phys: RAM }));
      if (err !== 'success') expect(JSON.stringify(fdView(fd), (_, v) => (typeof v === 'bigint' ? v.toString() : v))).toBe(before);
    }
    expect(err).toBe('ENOMEM');
    expect(i).toBeGreaterThan(1n);
    expect(pagesOf(fd)).toBeLessThanOrEqual(12);
    // A new HWPT over those areas would need as many pages again.
    refused(fd, 'ENOMEM', () => fd.hwptAlloc({ devId: d.devId, ptId: ioas }));
    const other = iommu.open();
    const od = device(other);
    const oioas = other.ioasAlloc();
    od.attach(oioas);
    for (let k = 1n; k <= 16n; k++) other.ioasMap(oioas, { iova: k << 30n, length: P, phys: RAM });
    expect(pagesOf(other)).toBeGreaterThan(12);
    // Unmapping gives the FD room again.
    fd.ioasUnmap(ioas, 0, (1n << 64n) - 1n);
    fd.ioasMap(ioas, { iova: 1n << 30n, length: P, phys: RAM });
  });

  test('limits survive a snapshot, and count what the restored FD holds', () => {
    const { iommu, device } = rig();
    const fd = iommu.open({ limits: { pasids: 1, domains: 1, pages: 100 } });
    const ioas = fd.ioasAlloc();
    const { devId } = device(fd);
    fd.hwptAlloc({ devId, ptId: ioas });
    const { fds } = Iommu.restore(iommu.snapshot());
    const restored = fds[0]!;
    expect(restored.limits).toEqual({ pasids: 1, domains: 1, pages: 100 });
    restored.pasidAlloc();
    expect(errnoOf(() => restored.pasidAlloc())).toBe('ENOSPC');
    // The restored HWPT counts against the domain limit, and the limit frees with it.
    const hwpt = restored.objects().find((o) => o.type === 'hwpt-paging')!.id;
    expect(errnoOf(() => restored.hwptAlloc({ devId, ptId: ioas }))).toBe('ENOSPC');
    restored.destroy(hwpt);
    expect(restored.hwptAlloc({ devId, ptId: ioas })).toBeGreaterThan(0);
  });
});
