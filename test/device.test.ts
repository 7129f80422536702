/**
 * Device FDs: bind / attach / replace / detach / unbind, the translations that follow them, the
 * seed's EPERM rule for PASIDs, reserved regions (EADDRINUSE), fail_nth unwinding, and the
 * selftest's iommufd_device_pasid cases K 71-80 (numbered as in test/README.md).
 */
import { describe, expect, test } from 'vitest';
import { NO_PASID, type DeviceFd } from '../src/index';
import {
  P, PHYS, PASID_AND_NO_PASID, U64MAX, bdf, err, expectFault, expectMapped, failEachStep, ioasFixture, makeIommu,
  ok, snapshot, type IoasFixture, type Topology,
} from './helpers';

/** An x86 MSI window, as a device's reserved region. */
const MSI = { start: 0xfee00000n, last: 0xfeefffffn };

/** An FD with IOAS `a` (page 0 -> PHYS) and IOAS `b` (page 0 -> 2*PHYS), and one device bound to it. */
function twoSpaces(devOpts: Omit<Parameters<typeof ok.addDevice>[1], 'bdf'> = {}) {
  const iommu = makeIommu();
  const fd = ok.open(iommu);
  const a = ok.ioasAlloc(fd);
  const b = ok.ioasAlloc(fd);
  ok.ioasMap(fd, a, { iova: 0, length: P, phys: PHYS });
  ok.ioasMap(fd, b, { iova: 0, length: P, phys: 2n * PHYS });
  const dev = ok.addDevice(iommu, { bdf: bdf(0), ...devOpts });
  const devId = ok.bind(dev, fd);
  return { iommu, fd, a, b, dev, devId };
}

describe('bind / unbind', () => {
  test('bind returns the device ID; a second bind is EINVAL, also to another FD', () => {
    const { iommu, fd, dev, devId } = twoSpaces();
    expect(dev.devId).toBe(devId);
    expect(fd.objects()).toContainEqual({ id: devId, type: 'device', users: 1, bdf: dev.bdf, rid: dev.rid });
    err.bind('EINVAL', dev, fd);
    err.bind('EINVAL', dev, ok.open(iommu));
  });

  test('bind needs an ioasid FD of the same engine', () => {
    const { iommu } = twoSpaces();
    const dev = ok.addDevice(iommu, { bdf: bdf(1) });
    err.bind('EINVAL', dev, {} as never);
    const foreign = ok.open(makeIommu());
    err.bind('EINVAL', dev, foreign);
  });

  test('an unbound device cannot attach, detach or unbind', () => {
    const iommu = makeIommu();
    const dev = ok.addDevice(iommu, { bdf: bdf(0) });
    ok.open(iommu);
    err.attach('EINVAL', dev, 1);
    err.detach('EINVAL', dev);
    err.unbind('EINVAL', dev);
  });

  test('unbind detaches the PASIDs and the RID, frees the auto HWPT, and leaves the PASIDs owned', () => {
    const { iommu, fd, a, dev } = twoSpaces();
    const pasidHwpt = ok.hwptAlloc(fd, { devId: dev.devId!, ptId: a, pasid: true });
    ok.attach(dev, pasidHwpt);
    const pasid = ok.pasidAlloc(fd);
    ok.attach(dev, pasidHwpt, { pasid });
    err.pasidFree('EBUSY', fd, pasid);
    ok.unbind(dev);
    expect(dev.devId).toBeUndefined();
    expect(dev.attachments().size).toBe(0);
    expect(fd.objects().map((o) => o.type)).toEqual(['ioas', 'ioas', 'hwpt-paging']);
    expectFault(iommu, dev, 0n, 'not-attached');
    expectFault(iommu, dev, 0n, 'not-attached', pasid);
    expect(fd.pasids()).toEqual([pasid]);
    ok.pasidFree(fd, pasid);
    const again = ok.bind(dev, fd);
    expect(fd.objects()).toContainEqual({ id: again, type: 'device', users: 1, bdf: dev.bdf, rid: dev.rid });
  });
});

describe('attach / replace / detach', () => {
  test('argument errors', () => {
    const { fd, a, dev, devId } = twoSpaces();
    err.attach('ENOENT', dev, 99);
    err.attach('EINVAL', dev, devId); // a device is neither an IOAS nor a HWPT
    err.attach('EINVAL', dev, '1' as never);
    err.attach('EOPNOTSUPP', dev, a, { flags: 1 } as never);
    err.attach('EINVAL', dev, a, { pasid: -1 });
    err.attach('EINVAL', dev, a, { pasid: 1 << 20 });
    err.detach('EINVAL', dev, { pasid: 1.5 });
    expect(fd.objects().length).toBe(3);
  });

  test('translations follow attach, replace and detach', () => {
    const { iommu, a, b, dev } = twoSpaces();
    expectFault(iommu, dev, 0n, 'not-attached');
    ok.attach(dev, a);
    expectMapped(iommu, dev, 0x10n, PHYS + 0x10n);
    ok.attach(dev, b, { pasid: NO_PASID }); // replace (pasid 0 is the RID): seen at once, no stale IOTLB entry
    expectMapped(iommu, dev, 0x10n, 2n * PHYS + 0x10n);
    ok.detach(dev);
    expectFault(iommu, dev, 0x10n, 'not-attached');
    ok.detach(dev); // detaching nothing succeeds
    ok.attach(dev, a);
    expectMapped(iommu, dev, 0x10n, PHYS + 0x10n);
  });

  test('attaching the same target again is a no-op', () => {
    const { a, dev } = twoSpaces();
    const hwpt = ok.attach(dev, a);
    const before = snapshot(dev);
    expect(ok.attach(dev, a)).toBe(hwpt);
    expect(ok.attach(dev, hwpt)).toBe(hwpt);
    expect(snapshot(dev)).toEqual(before);
  });

  test('a non-PASID RID attachment is refused while PASIDs are attached', () => {
    const { iommu, fd, a, dev } = twoSpaces();
    const h = ok.hwptAlloc(fd, { devId: dev.devId!, ptId: a, pasid: true });
    ok.attach(dev, h);
    const pasid = ok.pasidAlloc(fd);
    ok.attach(dev, h, { pasid });
    err.attach('EINVAL', dev, a);
    ok.detach(dev, { pasid });
    ok.attach(dev, a);
    expectMapped(iommu, dev, 0n, PHYS);
  });

  test('fail_nth: a first attach and a replace unwind cleanly at every failure point', () => {
    const { iommu, fd, a, b, dev } = twoSpaces({ reservedRegions: [MSI] }); // reservations must unwind too
    const first = failEachStep(fd, () => dev.attach(a));
    expect(first.failurePoints).toBeGreaterThanOrEqual(4); // ID, domain slot, root page, a table page per level
    expectMapped(iommu, dev, 0n, PHYS);
    const replace = failEachStep(fd, () => dev.attach(b));
    expect(replace.failurePoints).toBeGreaterThanOrEqual(4); // a new auto HWPT for b
    expectMapped(iommu, dev, 0n, 2n * PHYS);
  });
});

describe('the seed rule: a PASID must belong to the FD the device is bound to', () => {
  test('EPERM for a PASID of another FD, one never allocated, or one freed', () => {
    const { iommu, fd, a, dev } = twoSpaces();
    const h = ok.hwptAlloc(fd, { devId: dev.devId!, ptId: a, pasid: true });
    ok.attach(dev, h);
    const theirs = ok.pasidAlloc(ok.open(iommu));
    err.attach('EPERM', dev, h, { pasid: theirs });
    err.attach('EPERM', dev, h, { pasid: theirs + 1 }); // allocated by nobody
    const mine = ok.pasidAlloc(fd);
    ok.attach(dev, h, { pasid: mine });
    expectMapped(iommu, dev, 0n, PHYS, { pasid: mine });
    ok.detach(dev, { pasid: mine });
    ok.pasidFree(fd, mine);
    err.attach('EPERM', dev, h, { pasid: mine });
  });
});

describe('reserved regions', () => {

  test('attaching the RID reserves them in the IOAS until detach', () => {
    const { fd, a, dev } = twoSpaces({ reservedRegions: [MSI] });
    ok.attach(dev, a);
    expect(ok.ioasIovaRanges(fd, a).ranges).toEqual([{ start: 0n, last: MSI.start - 1n }, { start: MSI.last + 1n, last: (1n << 48n) - 1n }]);
    err.ioasMap('EINVAL', fd, a, { iova: MSI.start, length: P, phys: 0 });
    ok.detach(dev);
    expect(ok.ioasIovaRanges(fd, a).ranges).toEqual([{ start: 0n, last: U64MAX }]);
    expect(ok.ioasMap(fd, a, { iova: MSI.start, length: P, phys: 0 })).toBe(MSI.start);
  });

  test('EADDRINUSE when a mapping or an allowed range is in the way; nothing is left behind', () => {
    const { fd, a, b, dev } = twoSpaces({ reservedRegions: [MSI] });
    ok.ioasMap(fd, a, { iova: MSI.last + 1n - P, length: P, phys: 0 });
    err.attach('EADDRINUSE', dev, a);
    ok.ioasAllowIovas(fd, b, [{ start: MSI.start - P, last: MSI.start }]);
    err.attach('EADDRINUSE', dev, b);
    err.attach('EADDRINUSE', dev, ok.hwptAlloc(fd, { devId: dev.devId!, ptId: b }));
  });

  test('they follow the RID from IOAS to IOAS and through HWPTs, but not PASIDs', () => {
    const { fd, a, b, dev } = twoSpaces({ reservedRegions: [MSI] });
    const holes = (ioas: number) => ok.ioasIovaRanges(fd, ioas).ranges.length;
    ok.attach(dev, a);
    expect([holes(a), holes(b)]).toEqual([2, 1]);
    const hb = ok.hwptAlloc(fd, { devId: dev.devId!, ptId: b, pasid: true });
    ok.attach(dev, hb);
    expect([holes(a), holes(b)]).toEqual([1, 2]);
    const ha = ok.hwptAlloc(fd, { devId: dev.devId!, ptId: a, pasid: true });
    ok.attach(dev, ha, { pasid: ok.pasidAlloc(fd) });
    expect([holes(a), holes(b)]).toEqual([1, 2]);
    const c = ok.ioasAlloc(fd);
    ok.ioasMap(fd, c, { iova: MSI.start, length: P, phys: 0 });
    const hc = ok.hwptAlloc(fd, { devId: dev.devId!, ptId: c, pasid: true });
    err.attach('EADDRINUSE', dev, hc); // a failed replace keeps the reservation where it was
    expect([holes(a), holes(b)]).toEqual([1, 2]);
  });
});

// ---- K. iommufd_device_pasid ----

/**
 * The iommufd_device_pasid fixture, adapted: nested HWPTs do not exist in this engine, so nested0
 * and nested1 are PASID-capable paging HWPTs, each on an IOAS of its own so that translations show
 * which one a PASID uses; the iopf HWPT and the vIOMMU are left out (no fault queues, no vIOMMU).
 * PASIDs 100, 200, 1024 and 2048 are allocated by the FD first (the seed's rule).
 */
function pasidFixture(topology: Topology) {
  const f = ioasFixture(topology);
  const devId = f.devIds[0]!;
  const [ioas0, ioas1] = [ok.ioasAlloc(f.fd), ok.ioasAlloc(f.fd)];
  const phys = new Map<number, bigint>([[f.ioas, PHYS], [ioas0, 2n * PHYS], [ioas1, 3n * PHYS]]);
  for (const [ioas, at] of phys) ok.ioasMap(f.fd, ioas, { iova: f.base, length: P, phys: at });
  const k = {
    ...f,
    dev: f.devs[0]!,
    parent: ok.hwptAlloc(f.fd, { devId, ptId: f.ioas, nestParent: true }),
    nested0: ok.hwptAlloc(f.fd, { devId, ptId: ioas0, pasid: true }),
    nested1: ok.hwptAlloc(f.fd, { devId, ptId: ioas1, pasid: true }),
    s2: ok.hwptAlloc(f.fd, { devId, ptId: f.ioas, pasid: true }),
    physOf: new Map<number, bigint>(),
  };
  k.physOf.set(k.nested0, 2n * PHYS).set(k.nested1, 3n * PHYS).set(k.s2, PHYS);
  for (const pasid of [100, 200, 1024, 2048]) ok.pasidAlloc(f.fd, { pasid });
  return k;
}

type PasidFixture = ReturnType<typeof pasidFixture>;

/** The selftest's test_cmd_pasid_check_hwpt: `pasid` is on `hwpt` (and translates through it), or on nothing. */
function expectPasidOn(k: PasidFixture, pasid: number, hwpt: number | undefined, dev: DeviceFd = k.dev): void {
  expect(dev.attachments().get(pasid)).toBe(hwpt);
  if (hwpt === undefined) expectFault(k.iommu, dev, k.base, 'not-attached', pasid);
  else expectMapped(k.iommu, dev, k.base, k.physOf.get(hwpt)!, { pasid });
}

const PASID_ONLY: Topology = { name: 'PASID device', devices: [{ pasidBits: 20 }] };

describe.each([PASID_ONLY, PASID_AND_NO_PASID])('iommufd_device_pasid ($name)', (topology) => {
  // #71
  test('iommufd_device_pasid.pasid_attach: detaching a PASID never attached succeeds', () => {
    const k = pasidFixture(topology);
    ok.detach(k.dev, { pasid: 100 });
    expectPasidOn(k, 100, undefined);
  });

  // #72
  test('iommufd_device_pasid.pasid_attach: RID on a non-PASID HWPT blocks PASIDs', () => {
    const k = pasidFixture(topology);
    ok.attach(k.dev, k.parent);
    err.attach('EINVAL', k.dev, k.s2, { pasid: 100 });
  });

  // #73
  test('iommufd_device_pasid.pasid_attach: RID on a PASID HWPT', () => {
    const k = pasidFixture(topology);
    ok.attach(k.dev, k.s2);
    ok.attach(k.dev, k.nested0, { pasid: 100 });
    expectPasidOn(k, 100, k.nested0);
    err.attach('EINVAL', k.dev, k.parent); // the RID may not leave for a non-PASID HWPT now
    ok.detach(k.dev, { pasid: 100 });
    expectPasidOn(k, 100, undefined);
  });

  // #75
  test('iommufd_device_pasid.pasid_attach: non-compatible HWPT', () => {
    const k = pasidFixture(topology);
    ok.attach(k.dev, k.s2); // the RID state scenario 73 leaves behind
    err.attach('EINVAL', k.dev, k.parent, { pasid: 100 });
    expectPasidOn(k, 100, undefined);
    err.attach('EINVAL', k.dev, k.ioas, { pasid: 100 }); // an IOAS would give a non-PASID auto HWPT
    expectPasidOn(k, 100, undefined);
  });

  // #76
  test('iommufd_device_pasid.pasid_attach: double attach (replaces, where the selftest has EBUSY)', () => {
    // Our attach is VFIO cdev's ATTACH: a second attach of an attached PASID replaces it, and
    // attaching the same HWPT again is a no-op; the selftest drives the raw attach, which is EBUSY.
    const k = pasidFixture(topology);
    ok.attach(k.dev, k.s2);
    ok.attach(k.dev, k.s2, { pasid: 100 });
    expectPasidOn(k, 100, k.s2);
    ok.attach(k.dev, k.nested0, { pasid: 100 });
    expectPasidOn(k, 100, k.nested0);
    ok.detach(k.dev, { pasid: 100 });
    expectPasidOn(k, 100, undefined);
    ok.attach(k.dev, k.nested0, { pasid: 100 });
    const before = snapshot(k.fd);
    expect(ok.attach(k.dev, k.nested0, { pasid: 100 })).toBe(k.nested0);
    expect(snapshot(k.fd)).toEqual(before);
    ok.detach(k.dev, { pasid: 100 });
  });

  // #77
  test('iommufd_device_pasid.pasid_attach: replace', () => {
    // The selftest's "replace of a PASID never attached is EINVAL" has no equivalent: attach attaches.
    const k = pasidFixture(topology);
    ok.attach(k.dev, k.s2);
    ok.attach(k.dev, k.s2, { pasid: 200 });
    err.attach('EINVAL', k.dev, k.ioas, { pasid: 200 });
    expectPasidOn(k, 200, k.s2);
    ok.attach(k.dev, k.nested0, { pasid: 200 });
    expectPasidOn(k, 200, k.nested0);
    ok.attach(k.dev, k.nested1, { pasid: 200 });
    expectPasidOn(k, 200, k.nested1);
    ok.detach(k.dev, { pasid: 200 });
    expectPasidOn(k, 200, undefined);
  });

  // #78
  test('iommufd_device_pasid.pasid_attach: a failed replace keeps the old HWPT (fault injection, not pasid 1024 ENOMEM)', () => {
    // The selftest's mock driver fails any replace of pasid 1024; we fail each engine step instead.
    const k = pasidFixture(topology);
    ok.attach(k.dev, k.s2);
    failEachStep(k.fd, () => k.dev.attach(k.s2, { pasid: 1024 })); // first attach: allocates PASID table pages
    expectPasidOn(k, 1024, k.s2);
    err.attach('EINVAL', k.dev, k.parent, { pasid: 1024 });
    expectPasidOn(k, 1024, k.s2);
    const { failurePoints } = failEachStep(k.fd, () => k.dev.attach(k.nested0, { pasid: 1024 }));
    expect(failurePoints).toBeGreaterThanOrEqual(1);
    expectPasidOn(k, 1024, k.nested0);
    ok.detach(k.dev, { pasid: 1024 });
    expectPasidOn(k, 1024, undefined);
  });

  // #79
  test('iommufd_device_pasid.pasid_attach: PASID fault (adapted: no fault queue, the replace/detach steps)', () => {
    const k = pasidFixture(topology);
    ok.attach(k.dev, k.s2);
    ok.attach(k.dev, k.nested1, { pasid: 2048 }); // nested1 stands in for the iopf HWPT
    err.destroy('EBUSY', k.fd, k.nested1);
    ok.attach(k.dev, k.s2, { pasid: 2048 });
    expectPasidOn(k, 2048, k.s2);
    ok.detach(k.dev, { pasid: 2048 });
    ok.destroy(k.fd, k.nested1);
    ok.attach(k.dev, k.ioas); // no PASID left: the RID may use a non-PASID HWPT again
    expectMapped(k.iommu, k.dev, k.base, PHYS);
  });

  // #80
  test('iommufd_ioas.get_hw_info: PASID width (dev.pasidBits)', () => {
    const k = pasidFixture(topology);
    expect(k.devs.map((d) => d.pasidBits)).toEqual(topology.devices.map((d) => d.pasidBits));
    if (k.devs[1]) expectFault(k.iommu, k.devs[1], k.base, 'pasid-invalid', 100);
  });
});

// #74
test('iommufd_device_pasid.pasid_attach (no_pasid variant): a device without PASIDs', () => {
  const k = pasidFixture(PASID_AND_NO_PASID);
  const noPasid = k.devs[1]!;
  expect(ok.attach(noPasid, k.nested0)).toBe(k.nested0);
  ok.attach(noPasid, k.ioas);
  err.attach('EINVAL', noPasid, k.parent, { pasid: 100 });
  err.attach('EINVAL', noPasid, k.s2, { pasid: 100 });
});

test('a device narrower than the IOMMU: PASIDs beyond its width are EINVAL and fault', () => {
  const f: IoasFixture = ioasFixture({ name: '8-bit PASIDs', devices: [{ pasidBits: 8 }] });
  const [dev] = f.devs;
  expect(dev!.pasidBits).toBe(8);
  const h = ok.hwptAlloc(f.fd, { devId: f.devIds[0]!, ptId: f.ioas, pasid: true });
  ok.attach(dev!, h);
  const wide = ok.pasidAlloc(f.fd, { pasid: 256 });
  err.attach('EINVAL', dev!, h, { pasid: wide });
  expectFault(f.iommu, dev!, 0n, 'pasid-invalid', wide);
  expect(ok.attach(dev!, h, { pasid: ok.pasidAlloc(f.fd, { pasid: 255 }) })).toBe(h);
});
