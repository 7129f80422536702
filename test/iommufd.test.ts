/**
 * The ioasid FD's object table (iommufd's main.c): FD-local IDs from 1 in one number space, lowest
 * free ID reused, ENOENT for a missing or wrongly typed ID, destroy's EBUSY rules, close tearing
 * everything down (and freeing PASIDs), EBADF afterwards, and IDs that mean nothing in another FD.
 */
import { describe, expect, test } from 'vitest';
import type { DeviceFd, IommuFd } from '../src/index';
import { APSTART, P, bdf, err, expectFault, expectMapped, failNth, ioasFixture, makeIommu, ok, ONE_DEVICE, snapshot } from './helpers';

/** An engine with one FD and one device (not bound). */
function fdAndDevice() {
  const iommu = makeIommu();
  const fd = ok.open(iommu);
  const dev = ok.addDevice(iommu, { bdf: bdf(0) });
  return { iommu, fd, dev };
}

describe('object IDs', () => {
  test('start at 1 and share one number space across object types', () => {
    const { fd, dev } = fdAndDevice();
    const ioas = ok.ioasAlloc(fd);
    const devId = ok.bind(dev, fd);
    const autoHwpt = ok.attach(dev, ioas);
    const hwpt = ok.hwptAlloc(fd, { devId, ptId: ioas });
    expect([ioas, devId, autoHwpt, hwpt]).toEqual([1, 2, 3, 4]);
    expect(fd.objects()).toMatchObject([
      { id: 1, type: 'ioas', users: 2, hwptIds: [3, 4] },
      { id: 2, type: 'device', users: 1, rid: dev.rid },
      { id: 3, type: 'hwpt-paging', users: 1, auto: true, ioasId: 1 },
      { id: 4, type: 'hwpt-paging', users: 0, auto: false, ioasId: 1 },
    ]);
  });

  test('the lowest free ID is reused first', () => {
    const { fd } = fdAndDevice();
    const ids = Array.from({ length: 5 }, () => ok.ioasAlloc(fd));
    expect(ids).toEqual([1, 2, 3, 4, 5]);
    ok.destroy(fd, 4);
    ok.destroy(fd, 2);
    expect([ok.ioasAlloc(fd), ok.ioasAlloc(fd), ok.ioasAlloc(fd)]).toEqual([2, 4, 6]);
  });

  test('an ID freed by an auto HWPT is reused by the next object of any type', () => {
    const { fd, dev } = fdAndDevice();
    const ioas = ok.ioasAlloc(fd);
    ok.bind(dev, fd);
    const auto = ok.attach(dev, ioas);
    ok.detach(dev);
    expect(fd.objects().map((o) => o.id)).not.toContain(auto);
    expect(ok.ioasAlloc(fd)).toBe(auto);
  });

  test('iommufd.cmd_fail: ID 0 is never valid', () => {
    const { fd } = fdAndDevice();
    ok.ioasAlloc(fd);
    err.destroy('ENOENT', fd, 0);
    err.ioasMap('ENOENT', fd, 0, { length: P, phys: 0 });
    err.ioasIovaRanges('ENOENT', fd, 0);
  });

  test('a lookup with the wrong type is ENOENT', () => {
    const { fd, dev } = fdAndDevice();
    const ioas = ok.ioasAlloc(fd);
    const devId = ok.bind(dev, fd);
    const hwpt = ok.hwptAlloc(fd, { devId, ptId: ioas });
    err.ioasMap('ENOENT', fd, hwpt, { length: P, phys: 0 });
    err.ioasMap('ENOENT', fd, devId, { length: P, phys: 0 });
    err.ioasUnmap('ENOENT', fd, devId, 0, P);
    err.ioasIovaRanges('ENOENT', fd, hwpt);
    err.ioasAllowIovas('ENOENT', fd, devId, []);
    err.ioasCopy('ENOENT', fd, { srcIoas: hwpt, dstIoas: ioas, srcIova: 0, length: P });
    err.hwptAlloc('ENOENT', fd, { devId: ioas, ptId: ioas });
  });

  test('a failed creation consumes no ID (fault injection)', () => {
    const { fd, dev } = fdAndDevice();
    const ioas = ok.ioasAlloc(fd);
    const devId = ok.bind(dev, fd);
    failNth(fd, 1);
    err.ioasAlloc('ENOMEM', fd);
    failNth(fd, 2); // the ID reservation succeeds, the domain allocation fails
    err.hwptAlloc('ENOMEM', fd, { devId, ptId: ioas });
    failNth(fd, 0);
    expect(ok.ioasAlloc(fd)).toBe(devId + 1);
  });
});

describe('destroy', () => {
  test('EBUSY while referenced: IOAS with a HWPT, attached HWPT, bound device', () => {
    const { fd, dev } = fdAndDevice();
    const ioas = ok.ioasAlloc(fd);
    const devId = ok.bind(dev, fd);
    const hwpt = ok.hwptAlloc(fd, { devId, ptId: ioas });
    err.destroy('EBUSY', fd, ioas);
    ok.attach(dev, hwpt);
    err.destroy('EBUSY', fd, hwpt);
    err.destroy('EBUSY', fd, devId);
    ok.detach(dev);
    ok.destroy(fd, hwpt);
    ok.destroy(fd, ioas);
    err.destroy('EBUSY', fd, devId); // the binding holds the device until unbind
    ok.unbind(dev);
    expect(fd.objects()).toEqual([]);
  });

  test('an attached auto HWPT cannot be destroyed', () => {
    const f = ioasFixture(ONE_DEVICE);
    err.destroy('EBUSY', f.fd, f.hwptIds[0]!);
    err.destroy('EBUSY', f.fd, f.ioas);
  });

  test('a destroyed ID gives ENOENT', () => {
    const { fd } = fdAndDevice();
    const ioas = ok.ioasAlloc(fd);
    ok.destroy(fd, ioas);
    err.destroy('ENOENT', fd, ioas);
    err.ioasIovaRanges('ENOENT', fd, ioas);
  });
});

describe('close', () => {
  /** Gives `fd` every kind of object: IOAS with mappings, explicit and auto HWPTs, both devices bound, PASIDs. */
  function populate(fd: IommuFd, dev: DeviceFd, second: DeviceFd) {
    const ioas = ok.ioasAlloc(fd);
    const devId = ok.bind(dev, fd);
    ok.bind(second, fd);
    ok.attach(second, ioas); // auto HWPT
    const pasidHwpt = ok.hwptAlloc(fd, { devId, ptId: ioas, pasid: true });
    ok.attach(dev, pasidHwpt); // PASIDs need a PASID-capable RID attachment
    const pasid = ok.pasidAlloc(fd);
    ok.attach(dev, pasidHwpt, { pasid });
    ok.pasidAlloc(fd); // allocated but unused
    for (let i = 0n; i < 10n; i++) ok.ioasMap(fd, ioas, { iova: APSTART + i * P, length: P, phys: i * P });
    return { ioas, pasid };
  }

  function busyFd() {
    const iommu = makeIommu();
    const fd = ok.open(iommu);
    const dev = ok.addDevice(iommu, { bdf: bdf(0) });
    const second = ok.addDevice(iommu, { bdf: bdf(1) });
    return { iommu, fd, dev, second, ...populate(fd, dev, second) };
  }

  test('close frees every object, PASID and domain table page', () => {
    const f = busyFd();
    expectMapped(f.iommu, f.dev, APSTART + P, P);
    expectMapped(f.iommu, f.second, APSTART + P, P);
    expectMapped(f.iommu, f.dev, APSTART + P, P, { pasid: f.pasid });
    const busyPages = f.iommu.stats().tablePages;
    ok.close(f.fd);
    expect(f.fd.closed).toBe(true);
    expect(f.fd.objects()).toEqual([]);
    expect(f.fd.pasids()).toEqual([]);
    for (const d of [f.dev, f.second]) {
      expect(d.devId).toBeUndefined();
      expect(d.attachments().size).toBe(0);
      expectFault(f.iommu, d, APSTART + P, 'not-attached');
    }
    expectFault(f.iommu, f.dev, APSTART + P, 'not-attached', f.pasid);
    // The domains' tables are freed (what stays belongs to the devices); a second round leaks nothing.
    const idlePages = f.iommu.stats().tablePages;
    expect(idlePages).toBeLessThan(busyPages - 2);
    const again = ok.open(f.iommu);
    populate(again, f.dev, f.second);
    expect(f.iommu.stats().tablePages).toBe(busyPages);
    ok.close(again);
    expect(f.iommu.stats().tablePages).toBe(idlePages);
  });

  test('close frees the PASIDs, unbinds the devices, and both can be reused by another FD', () => {
    const f = busyFd();
    const owned = f.fd.pasids();
    ok.close(f.fd);
    const other = ok.open(f.iommu);
    for (const pasid of owned) expect(ok.pasidAlloc(other, { pasid })).toBe(pasid);
    const ioas = ok.ioasAlloc(other);
    expect(ok.bind(f.dev, other)).toBe(ioas + 1);
    ok.ioasMap(other, ioas, { iova: 0, length: P, phys: 7n * P });
    const hwpt = ok.hwptAlloc(other, { devId: f.dev.devId!, ptId: ioas, pasid: true });
    ok.attach(f.dev, hwpt);
    ok.attach(f.dev, hwpt, { pasid: f.pasid });
    expectMapped(f.iommu, f.dev, 0n, 7n * P, { pasid: f.pasid });
  });

  test('closing twice is a no-op', () => {
    const f = busyFd();
    ok.close(f.fd);
    const after = snapshot(f.fd);
    ok.close(f.fd);
    expect(snapshot(f.fd)).toEqual(after);
  });

  test('every FD call after close is EBADF and changes nothing', () => {
    const f = busyFd();
    ok.close(f.fd);
    const { fd } = f;
    err.ioasAlloc('EBADF', fd);
    err.ioasMap('EBADF', fd, f.ioas, { length: P, phys: 0 });
    err.ioasUnmap('EBADF', fd, f.ioas, 0, P);
    err.ioasCopy('EBADF', fd, { srcIoas: f.ioas, dstIoas: f.ioas, srcIova: APSTART, length: P });
    err.ioasIovaRanges('EBADF', fd, f.ioas);
    err.ioasAllowIovas('EBADF', fd, f.ioas, []);
    err.pasidAlloc('EBADF', fd);
    err.pasidFree('EBADF', fd, f.pasid);
    err.hwptAlloc('EBADF', fd, { devId: 2, ptId: f.ioas });
    err.destroy('EBADF', fd, f.ioas);
    err.bind('EBADF', f.dev, fd);
  });

  test('closing one FD leaves another FD of the same engine alone', () => {
    const f = busyFd();
    const other = ok.open(f.iommu);
    const ioas = ok.ioasAlloc(other);
    const dev = ok.addDevice(f.iommu, { bdf: bdf(2) });
    ok.bind(dev, other);
    ok.ioasMap(other, ioas, { iova: APSTART, length: P, phys: 3n * P });
    ok.attach(dev, ioas);
    const before = snapshot(other).fds[1];
    ok.close(f.fd);
    expect(snapshot(other).fds[1]).toEqual(before);
    expectMapped(f.iommu, dev, APSTART, 3n * P);
  });
});

describe('FD-local IDs', () => {
  test('IDs of FD A name nothing in FD B', () => {
    const { iommu, fd: a, dev } = fdAndDevice();
    const b = ok.open(iommu);
    const ioasA = ok.ioasAlloc(a);
    const devIdA = ok.bind(dev, a);
    err.ioasMap('ENOENT', b, ioasA, { length: P, phys: 0 });
    err.destroy('ENOENT', b, ioasA);
    err.hwptAlloc('ENOENT', b, { devId: devIdA, ptId: ioasA });
    // A device bound to A resolves IDs in A only: B's IOAS 1 is not reachable from it.
    const [ioasB, , onlyInB] = [ok.ioasAlloc(b), ok.ioasAlloc(b), ok.ioasAlloc(b)];
    expect(ioasB).toBe(ioasA);
    expect(a.objects().map((o) => o.id)).not.toContain(onlyInB);
    err.attach('ENOENT', dev, onlyInB);
    ok.ioasMap(a, ioasA, { iova: 0, length: P, phys: P });
    ok.ioasMap(b, ioasB, { iova: 0, length: P, phys: 2n * P });
    ok.attach(dev, ioasB);
    expectMapped(iommu, dev, 0n, P); // A's IOAS, not B's
  });

  test('a PASID of FD A cannot be used by a device bound to FD B (EPERM)', () => {
    const { iommu, fd: a, dev } = fdAndDevice();
    const b = ok.open(iommu);
    const pasid = ok.pasidAlloc(a);
    const ioas = ok.ioasAlloc(b);
    const devId = ok.bind(dev, b);
    const hwpt = ok.hwptAlloc(b, { devId, ptId: ioas, pasid: true });
    err.attach('EPERM', dev, hwpt, { pasid });
    expect(dev.attachments().has(pasid)).toBe(false);
    expectFault(iommu, dev, 0n, 'not-attached', pasid);
  });
});
