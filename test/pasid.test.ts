/**
 * PASIDs: one system-wide space per IOMMU, each PASID owned by the FD that allocated it (the
 * seed's rule). Allocation (lowest free, explicit, EEXIST, EINVAL, ENOSPC), free (ENOENT for
 * another FD's, EBUSY while attached) and release on close.
 */
import { describe, expect, test } from 'vitest';
import { P, PHYS, bdf, err, expectFault, expectMapped, failNth, makeIommu, ok } from './helpers';

/** One engine, two FDs. */
function twoFds(opts: Parameters<typeof makeIommu>[0] = {}) {
  const iommu = makeIommu(opts);
  return { iommu, a: ok.open(iommu), b: ok.open(iommu) };
}

/** An FD with an IOAS (page 0 -> PHYS), a PASID-capable HWPT on it, and `n` devices bound with their RID on it. */
function attachedDevices(n: number) {
  const iommu = makeIommu();
  const fd = ok.open(iommu);
  const ioas = ok.ioasAlloc(fd);
  ok.ioasMap(fd, ioas, { iova: 0, length: P, phys: PHYS });
  const devs = Array.from({ length: n }, (_, i) => ok.addDevice(iommu, { bdf: bdf(i) }));
  const devIds = devs.map((d) => ok.bind(d, fd));
  const hwpt = ok.hwptAlloc(fd, { devId: devIds[0]!, ptId: ioas, pasid: true });
  for (const d of devs) ok.attach(d, hwpt);
  return { iommu, fd, devs, hwpt };
}

describe('pasidAlloc', () => {
  test('PASIDs are unique across the FDs of one IOMMU, and each FD sees its own', () => {
    const { a, b } = twoFds();
    expect([ok.pasidAlloc(a), ok.pasidAlloc(b), ok.pasidAlloc(a)]).toEqual([1, 2, 3]);
    expect(a.pasids()).toEqual([1, 3]);
    expect(b.pasids()).toEqual([2]);
  });

  test('PASID spaces of two IOMMUs are separate', () => {
    const one = ok.open(makeIommu());
    const two = ok.open(makeIommu());
    expect(ok.pasidAlloc(one, { pasid: 7 })).toBe(7);
    expect(ok.pasidAlloc(two, { pasid: 7 })).toBe(7);
  });

  test('an explicit PASID is EEXIST when any FD holds it', () => {
    const { a, b } = twoFds();
    expect(ok.pasidAlloc(a, { pasid: 100 })).toBe(100);
    err.pasidAlloc('EEXIST', b, { pasid: 100 });
    err.pasidAlloc('EEXIST', a, { pasid: 100 });
    expect(ok.pasidAlloc(b)).toBe(1);
  });

  test('an explicit PASID outside 1..2^bits-1 is EINVAL; unknown options are EOPNOTSUPP', () => {
    const { a } = twoFds({ pasidBits: 8 });
    for (const pasid of [0, -1, 256, 1.5, '5']) err.pasidAlloc('EINVAL', a, { pasid } as never);
    err.pasidAlloc('EOPNOTSUPP', a, { count: 2 } as never);
    expect(ok.pasidAlloc(a, { pasid: 255 })).toBe(255);
  });

  test('the lowest free PASID is handed out first', () => {
    const { a, b } = twoFds();
    const [p1, p2, p3] = [ok.pasidAlloc(a), ok.pasidAlloc(b), ok.pasidAlloc(a)];
    ok.pasidFree(b, p2);
    expect(ok.pasidAlloc(a)).toBe(p2);
    ok.pasidFree(a, p1);
    expect(ok.pasidAlloc(b)).toBe(p1);
    expect(ok.pasidAlloc(b)).toBe(p3 + 1);
  });

  test('ENOSPC when every PASID is taken', () => {
    const { a, b } = twoFds({ pasidBits: 2 });
    expect([ok.pasidAlloc(a), ok.pasidAlloc(b), ok.pasidAlloc(a)]).toEqual([1, 2, 3]);
    err.pasidAlloc('ENOSPC', b);
    ok.pasidFree(b, 2);
    expect(ok.pasidAlloc(a)).toBe(2);
  });

  test('a failed allocation takes nothing (fault injection)', () => {
    const { a } = twoFds();
    failNth(a, 1);
    err.pasidAlloc('ENOMEM', a);
    expect(ok.pasidAlloc(a)).toBe(1);
  });
});

describe('pasidFree', () => {
  test("ENOENT for another FD's PASID or one never allocated", () => {
    const { a, b } = twoFds();
    const pasid = ok.pasidAlloc(a);
    err.pasidFree('ENOENT', b, pasid);
    err.pasidFree('ENOENT', a, pasid + 1);
    err.pasidFree('ENOENT', a, 0);
    ok.pasidFree(a, pasid);
    err.pasidFree('ENOENT', a, pasid);
  });

  test('EBUSY while any device uses it; free once the last one detaches', () => {
    const { iommu, fd, devs, hwpt } = attachedDevices(2);
    const pasid = ok.pasidAlloc(fd);
    for (const d of devs) ok.attach(d, hwpt, { pasid });
    for (const d of devs) expectMapped(iommu, d, 0n, PHYS, { pasid });
    err.pasidFree('EBUSY', fd, pasid);
    ok.detach(devs[0]!, { pasid });
    err.pasidFree('EBUSY', fd, pasid);
    ok.detach(devs[1]!, { pasid });
    ok.pasidFree(fd, pasid);
    expect(fd.pasids()).toEqual([]);
    err.attach('EPERM', devs[0]!, hwpt, { pasid });
  });

  test('a replace, or attaching the same HWPT again, counts as one use', () => {
    const { fd, devs, hwpt } = attachedDevices(1);
    const [dev] = devs;
    const other = ok.hwptAlloc(fd, { devId: dev!.devId!, ptId: ok.ioasAlloc(fd), pasid: true });
    const pasid = ok.pasidAlloc(fd);
    ok.attach(dev!, hwpt, { pasid });
    ok.attach(dev!, other, { pasid });
    ok.attach(dev!, other, { pasid });
    ok.detach(dev!, { pasid });
    ok.pasidFree(fd, pasid);
  });
});

describe('close', () => {
  test('closing an FD detaches and frees its PASIDs, and only its own', () => {
    const { iommu, fd, devs, hwpt } = attachedDevices(1);
    const other = ok.open(iommu);
    const theirs = ok.pasidAlloc(other);
    const mine = ok.pasidAlloc(fd);
    ok.attach(devs[0]!, hwpt, { pasid: mine });
    ok.close(fd);
    expectFault(iommu, devs[0]!, 0n, 'not-attached', mine);
    expect(other.pasids()).toEqual([theirs]);
    expect(ok.pasidAlloc(other, { pasid: mine })).toBe(mine);
  });
});
