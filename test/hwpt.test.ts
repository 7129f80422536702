/**
 * HWPT_PAGING: the selftest's iommufd_mock_domain cases F 39-46 (numbered as in test/README.md)
 * under the one- and two-device topologies, then explicit/auto HWPT lifetimes, flags and
 * hwptAlloc's errnos (ptId missing is EINVAL while devId missing is ENOENT), and fail_nth unwinding.
 * Omitted from F: 39's EFAULT half and 40 (user memory / memfd), 41's copy-on-write half, the pin
 * accounting of 42-43 and 44's access object: the engine maps guest-physical addresses, not user memory.
 */
import { describe, expect, test } from 'vitest';
import { Access } from '../src/index';
import {
  BUF, MP, ONE_DEVICE, P, PHYS, TWO_DEVICES, bdf, err, expectFault, expectMapped, expectSeenByAll, failEachStep, ioasFixture,
  mappings, ok, type IoasFixture,
} from './helpers';

/** Every page of `[iova, iova+length)` translates to `phys + offset` for every device of `f`. */
function expectRange(f: IoasFixture, iova: bigint, length: bigint, phys: bigint): void {
  for (let off = 0n; off < length; off += P) expectSeenByAll(f, iova + off, phys + off);
}

/** Scenarios 42/43: auto-maps every MP-aligned [start, end) of the buffer; `check` runs while it is mapped. */
function allAligns(f: IoasFixture, check: (iova: bigint, length: bigint, phys: bigint) => void): void {
  const idlePages = f.iommu.stats().tablePages;
  for (let start = 0n; start < BUF; start += MP) {
    for (let end = start + MP; end <= BUF; end += MP) {
      const length = end - start;
      const iova = ok.ioasMap(f.fd, f.ioas, { length, phys: PHYS + start });
      check(iova, length, PHYS + start);
      expect(ok.ioasUnmap(f.fd, f.ioas, iova, length)).toBe(length);
    }
  }
  expect(mappings(f.fd, f.ioas)).toEqual([]);
  expect(f.iommu.stats().tablePages).toBe(idlePages); // nothing left behind ("no page pinned")
}

describe.each([ONE_DEVICE, TWO_DEVICES])('iommufd_mock_domain ($name)', (topology) => {
  // #39; its EFAULT half (munmapped user memory) has no equivalent; #40 (map_file) is omitted
  test('iommufd_mock_domain.basic: an auto map reaches the domain', () => {
    const f = ioasFixture(topology);
    const iova = ok.ioasMap(f.fd, f.ioas, { length: P, phys: PHYS });
    expectRange(f, iova, P, PHYS);
  });

  // #41; the CPU copy-on-write half has no equivalent
  test('iommufd_mock_domain.ro_unshare: a read-only map gives a read-only leaf', () => {
    const f = ioasFixture(topology);
    const iova = ok.ioasMap(f.fd, f.ioas, { length: P, phys: PHYS, write: false });
    for (const dev of f.devs) {
      expectMapped(f.iommu, dev, iova, PHYS, { perm: Access.Read });
      expect(f.iommu.translate(dev.rid, 0, iova, Access.Write).fault?.reason).toBe('permission');
    }
  });

  // #42; steps of MP = 4096 (the selftest's MP is 2048); pin counts -> table pages
  test('iommufd_mock_domain.all_aligns', () => {
    const f = ioasFixture(topology);
    allAligns(f, (iova, length, phys) => expectRange(f, iova, length, phys));
  });

  // #43; the new domain is an explicit HWPT for a third device
  test('iommufd_mock_domain.all_aligns_copy: a new domain is filled with what is mapped', () => {
    const f = ioasFixture(topology);
    const extra = ok.addDevice(f.iommu, { bdf: bdf(7) });
    const devId = ok.bind(extra, f.fd);
    const withExtra = { ...f, devs: [extra] };
    allAligns(f, (iova, length, phys) => {
      const hwpt = ok.hwptAlloc(f.fd, { devId, ptId: f.ioas }); // a new domain, filled from the IOAS
      ok.attach(extra, hwpt);
      expectRange(withExtra, iova, length, phys);
      ok.detach(extra);
      ok.destroy(f.fd, hwpt);
    });
  });

  // #44
  test('iommufd_mock_domain.user_copy (adapted: COPY from IOAS without devices, no access object)', () => {
    const f = ioasFixture(topology);
    const a = ok.ioasAlloc(f.fd);
    ok.ioasMap(f.fd, a, { iova: 0, length: BUF, phys: PHYS });
    const copy = { srcIoas: a, dstIoas: f.ioas, srcIova: 0, length: BUF, dstIova: f.base, read: false };
    expect(ok.ioasCopy(f.fd, copy)).toBe(f.base);
    for (const dev of f.devs) expectMapped(f.iommu, dev, f.base + 3n * P, PHYS + 3n * P, { perm: Access.Write });
    const b = ok.ioasAlloc(f.fd);
    ok.ioasMap(f.fd, b, { iova: 0, length: BUF, phys: 2n * PHYS });
    expect(ok.ioasUnmap(f.fd, f.ioas, f.base, BUF)).toBe(BUF);
    ok.destroy(f.fd, a);
    expect(ok.ioasCopy(f.fd, { ...copy, srcIoas: b, read: true, write: true })).toBe(f.base);
    expectRange(f, f.base, BUF, 2n * PHYS);
  });

  // #45
  test('iommufd_mock_domain.replace', () => {
    const f = ioasFixture(topology);
    const [dev0] = f.devs;
    const n = ok.ioasAlloc(f.fd);
    ok.ioasMap(f.fd, n, { iova: f.base, length: P, phys: 5n * P });
    ok.ioasMap(f.fd, f.ioas, { iova: f.base, length: P, phys: 9n * P });
    const onN = ok.attach(dev0!, n);
    expectMapped(f.iommu, dev0!, f.base, 5n * P);
    if (f.devs.length === 1) {
      err.attach('ENOENT', dev0!, f.hwptIds[0]!); // the old auto HWPT went with its last device
      expect(ok.attach(dev0!, n)).toBe(onN);
    } else {
      // Both devices shared one auto HWPT; device 1 still holds it.
      expect(ok.attach(dev0!, f.hwptIds[1]!)).toBe(f.hwptIds[1]);
      expect(ok.attach(dev0!, f.hwptIds[1]!)).toBe(f.hwptIds[1]);
      expect(ok.attach(dev0!, f.hwptIds[0]!)).toBe(f.hwptIds[0]);
      expectMapped(f.iommu, dev0!, f.base, 9n * P);
    }
    ok.attach(dev0!, f.ioas);
    expectSeenByAll(f, f.base, 9n * P);
    ok.destroy(f.fd, n);
  });

  // #46; flags ~NEST_PARENT -> an unknown option
  test('iommufd_mock_domain.alloc_hwpt', () => {
    const f = ioasFixture(topology);
    const [dev0] = f.devs;
    const devId = f.devIds[0]!;
    err.hwptAlloc('EOPNOTSUPP', f.fd, { devId, ptId: f.ioas, flags: ~1 } as never); // unknown flags -> unknown options
    const h0 = ok.hwptAlloc(f.fd, { devId, ptId: f.ioas });
    const h1 = ok.hwptAlloc(f.fd, { devId, ptId: f.ioas, nestParent: true });
    expect(ok.attach(dev0!, h0)).toBe(h0);
    err.destroy('EBUSY', f.fd, h0);
    ok.attach(dev0!, h1);
    err.destroy('EBUSY', f.fd, h1);
    ok.attach(dev0!, f.ioas);
    ok.destroy(f.fd, h1);
    const extra = ok.addDevice(f.iommu, { bdf: bdf(7) });
    ok.bind(extra, f.fd);
    ok.attach(extra, h0);
    ok.unbind(extra); // the selftest destroys the mock device
    ok.destroy(f.fd, h0);
    expect(f.fd.objects().map((o) => o.id)).not.toContain(h0);
  });
});

describe('HWPT lifetimes', () => {
  test('an explicit HWPT lives until destroyed and holds its IOAS', () => {
    const f = ioasFixture(ONE_DEVICE);
    const [dev] = f.devs;
    ok.ioasMap(f.fd, f.ioas, { iova: f.base, length: P, phys: PHYS }); // before the HWPT: filled in
    const h = ok.hwptAlloc(f.fd, { devId: f.devIds[0]!, ptId: f.ioas });
    ok.ioasMap(f.fd, f.ioas, { iova: f.base + P, length: P, phys: 2n * PHYS }); // after: mirrored
    ok.attach(dev!, h);
    expectRange(f, f.base, P, PHYS);
    expectRange(f, f.base + P, P, 2n * PHYS);
    ok.detach(dev!);
    expect(f.fd.objects().find((o) => o.id === h)).toMatchObject({ type: 'hwpt-paging', users: 0, auto: false, ioasId: f.ioas });
    err.destroy('EBUSY', f.fd, f.ioas);
    ok.destroy(f.fd, h);
    ok.destroy(f.fd, f.ioas);
  });

  test('an auto HWPT is shared on its IOAS and dies with its last attachment', () => {
    const f = ioasFixture(TWO_DEVICES);
    const [dev0, dev1] = f.devs;
    expect(f.hwptIds[0]).toBe(f.hwptIds[1]);
    ok.detach(dev0!);
    expect(f.fd.objects().find((o) => o.id === f.hwptIds[0])).toMatchObject({ type: 'hwpt-paging', users: 1, auto: true });
    ok.detach(dev1!);
    err.destroy('ENOENT', f.fd, f.hwptIds[0]!);
    ok.destroy(f.fd, f.ioas);
  });

  test('replacing away from an auto HWPT frees it; coming back makes a new one', () => {
    const f = ioasFixture(ONE_DEVICE);
    const [dev] = f.devs;
    const auto = f.hwptIds[0]!;
    const h = ok.hwptAlloc(f.fd, { devId: f.devIds[0]!, ptId: f.ioas });
    ok.attach(dev!, h);
    err.destroy('ENOENT', f.fd, auto);
    expect(ok.attach(dev!, f.ioas)).toBe(auto); // the lowest free ID again, a new object
    ok.destroy(f.fd, h);
  });
});

describe('hwptAlloc arguments and flags', () => {
  test('EOPNOTSUPP: unknown options, dirty tracking, a fault queue with nestParent', () => {
    const f = ioasFixture(ONE_DEVICE);
    const devId = f.devIds[0]!;
    err.hwptAlloc('EOPNOTSUPP', f.fd, { devId, ptId: f.ioas, table: {} } as never);
    err.hwptAlloc('EOPNOTSUPP', f.fd, { devId, ptId: f.ioas, dirtyTracking: true });
    err.hwptAlloc('EOPNOTSUPP', f.fd, { devId, ptId: f.ioas, nestParent: true, faultId: 1 });
    err.hwptAlloc('EINVAL', f.fd, { devId, ptId: f.ioas, pasid: 'yes' } as never);
  });

  test('ptId missing or not an IOAS is EINVAL; devId or faultId missing is ENOENT', () => {
    const f = ioasFixture(ONE_DEVICE);
    const devId = f.devIds[0]!;
    err.hwptAlloc('EINVAL', f.fd, { devId, ptId: 99 });
    err.hwptAlloc('EINVAL', f.fd, { devId, ptId: 0 });
    err.hwptAlloc('EINVAL', f.fd, { devId, ptId: devId });
    err.hwptAlloc('EINVAL', f.fd, { devId, ptId: f.hwptIds[0]! });
    err.hwptAlloc('ENOENT', f.fd, { devId: 99, ptId: 99 });
    err.hwptAlloc('ENOENT', f.fd, { devId: f.ioas, ptId: f.ioas });
    err.hwptAlloc('ENOENT', f.fd, { devId, ptId: f.ioas, faultId: 99 }); // no fault queues in this engine
  });

  test('only a { pasid: true } HWPT takes PASIDs; nestParent alone does not', () => {
    const f = ioasFixture(ONE_DEVICE);
    const [dev] = f.devs;
    const devId = f.devIds[0]!;
    const parent = ok.hwptAlloc(f.fd, { devId, ptId: f.ioas, nestParent: true });
    const both = ok.hwptAlloc(f.fd, { devId, ptId: f.ioas, nestParent: true, pasid: true });
    expect(f.fd.objects().filter((o) => o.id === parent || o.id === both)).toMatchObject([
      { auto: false, nestParent: true, pasid: false, ioasId: f.ioas },
      { auto: false, nestParent: true, pasid: true, ioasId: f.ioas },
    ]);
    const pasid = ok.pasidAlloc(f.fd);
    ok.attach(dev!, both);
    err.attach('EINVAL', dev!, parent, { pasid });
    expect(ok.attach(dev!, both, { pasid })).toBe(both);
    ok.ioasMap(f.fd, f.ioas, { iova: f.base, length: P, phys: PHYS });
    expectMapped(f.iommu, dev!, f.base, PHYS, { pasid });
    expectFault(f.iommu, dev!, f.base + P, 'not-present', pasid);
  });

  test('a domain that cannot hold the IOAS mappings is refused (EADDRINUSE)', () => {
    const f = ioasFixture(ONE_DEVICE);
    const other = ok.ioasAlloc(f.fd);
    ok.ioasMap(f.fd, other, { iova: 1n << 48n, length: P, phys: 0 }); // beyond the aperture
    err.hwptAlloc('EADDRINUSE', f.fd, { devId: f.devIds[0]!, ptId: other });
  });

  test('fail_nth: hwptAlloc unwinds cleanly at every failure point', () => {
    const f = ioasFixture(ONE_DEVICE);
    for (let i = 0n; i < 4n; i++) ok.ioasMap(f.fd, f.ioas, { iova: f.base + i * (1n << 21n), length: P, phys: PHYS + i * P });
    const { result: h, failurePoints } = failEachStep(f.fd, () => f.fd.hwptAlloc({ devId: f.devIds[0]!, ptId: f.ioas }));
    expect(failurePoints).toBeGreaterThanOrEqual(6); // ID, domain slot, root page, a leaf table per 2 MiB stride
    ok.attach(f.devs[0]!, h);
    expectMapped(f.iommu, f.devs[0]!, f.base + 3n * (1n << 21n), PHYS + 3n * P);
  });
});
