// User-managed HWPTs in the FD object model: allocation checks and lifetimes after iommufd's
// alloc_hwpt_nested selftest (tools/testing/selftests/iommu/iommufd.c, cases G 47-53), attach rules (RID, PASID,
// reserved regions), and the HWPT_INVALIDATE call's errno/partial-count semantics.
import { describe, expect, test } from 'vitest';
import { Access, InvalidateError, NO_PASID } from '../src/index';
import { GuestRam, GuestTables } from './vectors/guest-tables';
import { err, makeIommu, ok } from './helpers';

const RAM = 0x1000_0000n;
const SV39_LEAF = 0xd7n; // V R W U A D

function world(opts: { ram?: boolean } = {}) {
  const iommu = makeIommu({
    ...(opts.ram === false ? {} : { ram: { base: RAM, bytes: 4 << 20 } }),
    translators: 2, iotlbEntries: 64, maxDomains: 32, maxMemoryBytes: 32 << 20,
  });
  const dev = ok.addDevice(iommu, { bdf: '00:06.0', reservedRegions: [{ start: 0xfee0_0000n, last: 0xfeef_ffffn }] });
  const fd = ok.open(iommu);
  const devId = dev.bind(fd);
  const ioas = fd.ioasAlloc();
  const ram = new GuestRam(iommu, RAM, RAM + 0x10_0000n);
  return { iommu, dev, fd, devId, ioas, ram };
}


const sv39 = (root: bigint | number) => ({ format: 'sv39' as const, root });

describe('hwptAlloc of user-managed tables (scenarios 47, 48, 50, 54)', () => {
  test('47/54: a bad devId is ENOENT; a device as ptId is EINVAL', () => {
    const w = world();
    err.hwptAlloc('ENOENT', w.fd, { devId: w.ioas, table: sv39(RAM) });
    err.hwptAlloc('ENOENT', w.fd, { devId: 0, table: sv39(RAM) });
    err.hwptAlloc('EINVAL', w.fd, { devId: w.devId, ptId: w.devId, table: sv39(0x1000) });
    err.hwptAlloc('EINVAL', w.fd, { devId: w.devId, ptId: 99, table: sv39(0x1000) });
    expect(w.fd.objects().map((o) => o.type)).toEqual(['device', 'ioas']);
  });

  test('48: format, flags and data checks', () => {
    const w = world();
    const parent = w.fd.hwptAlloc({ devId: w.devId, ptId: w.ioas, nestParent: true });
    const plain = w.fd.hwptAlloc({ devId: w.devId, ptId: w.ioas });
    const d = w.devId;
    err.hwptAlloc('EOPNOTSUPP', w.fd, { devId: d, ptId: parent, table: { format: 'arm64', root: 0 } as never });
    err.hwptAlloc('EOPNOTSUPP', w.fd, { devId: d, ptId: parent, table: { ...sv39(0), asid: 1 } as never });
    err.hwptAlloc('EOPNOTSUPP', w.fd, { devId: d, ptId: parent, nestParent: true, table: sv39(0) });
    err.hwptAlloc('EINVAL', w.fd, { devId: d, ptId: plain, table: sv39(0) }); // parent not NEST_PARENT
    err.hwptAlloc('EOPNOTSUPP', w.fd, { devId: d, ptId: w.ioas, table: sv39(0) }); // an IOAS takes no table
    err.hwptAlloc('EINVAL', w.fd, { devId: d, ptId: parent, table: sv39(0x800) }); // misaligned root
    err.hwptAlloc('EINVAL', w.fd, { devId: d, nestParent: true, table: { format: 'sv39x4', root: 0x1000 } }); // x4 root: 16 KiB
    err.hwptAlloc('EINVAL', w.fd, { devId: d, nestParent: true, table: sv39(0) }); // a stage-1 format as parent
    err.hwptAlloc('EINVAL', w.fd, { devId: d, ptId: parent, table: { format: 'sv39x4', root: 0 } }); // G stage nested
    err.hwptAlloc('EINVAL', w.fd, { devId: d, table: { format: 'x86-64', root: 0, levels: 3 as never } });
    err.hwptAlloc('EINVAL', w.fd, { devId: d, table: { format: 'x86-64', root: 0, sum: true } });
    err.hwptAlloc('EINVAL', w.fd, { devId: d, table: { format: 'sv48', root: 0, levels: 4 } });
    err.hwptAlloc('EINVAL', w.fd, { devId: d, table: { format: 'x86-64', root: 0, features: { svnapot: true } } });
    err.hwptAlloc('EOPNOTSUPP', w.fd, { devId: d, ptId: parent, table: sv39(0), dirtyTracking: true });
    err.hwptAlloc('ENOENT', w.fd, { devId: d, ptId: parent, table: sv39(0), faultId: 2 ** 32 - 1 });
    expect(w.fd.objects().map((o) => o.type)).toEqual(['device', 'ioas', 'hwpt-paging', 'hwpt-paging']);
    const nested = w.fd.hwptAlloc({ devId: d, ptId: parent, table: sv39(0) });
    expect(w.fd.objects().find((o) => o.id === nested)).toMatchObject({ type: 'hwpt-nested' });
  });

  test('tables in guest memory need guest RAM', () => {
    const w = world({ ram: false });
    err.hwptAlloc('EINVAL', w.fd, { devId: w.devId, table: sv39(0) });
  });

  test('50: nested on nested is EINVAL; a parent with children is EBUSY, then free', () => {
    const w = world();
    const parent = w.fd.hwptAlloc({ devId: w.devId, ptId: w.ioas, nestParent: true });
    const n0 = w.fd.hwptAlloc({ devId: w.devId, ptId: parent, table: sv39(0) });
    err.hwptAlloc('EINVAL', w.fd, { devId: w.devId, ptId: n0, table: sv39(0) });
    err.destroy('EBUSY', w.fd, parent);
    err.destroy('EBUSY', w.fd, w.ioas);
    w.fd.destroy(n0);
    w.fd.destroy(parent);
    w.fd.destroy(w.ioas);
    expect(w.fd.objects().map((o) => o.type)).toEqual(['device']);
  });

  test('a user-managed G stage is a nest parent: EBUSY while children exist; guest-physical HWPTs are hwpt-user', () => {
    const w = world();
    const g = w.fd.hwptAlloc({ devId: w.devId, nestParent: true, table: { format: 'sv39x4', root: RAM } });
    const s1 = w.fd.hwptAlloc({ devId: w.devId, ptId: g, table: sv39(0x2000) });
    expect(w.fd.objects().filter((o) => o.id === g || o.id === s1).map((o) => o.type)).toEqual(['hwpt-user', 'hwpt-nested']);
    err.hwptAlloc('EINVAL', w.fd, { devId: w.devId, ptId: s1, table: sv39(0) });
    err.destroy('EBUSY', w.fd, g);
    w.fd.destroy(s1);
    w.fd.destroy(g);
  });

  test('53: attached HWPTs are EBUSY; replace frees them; close tears everything down', () => {
    const w = world();
    const parent = w.fd.hwptAlloc({ devId: w.devId, ptId: w.ioas, nestParent: true });
    const n0 = w.fd.hwptAlloc({ devId: w.devId, ptId: parent, table: sv39(0) });
    const n1 = w.fd.hwptAlloc({ devId: w.devId, ptId: parent, table: sv39(0x1000) });
    expect(w.dev.attach(n0)).toBe(n0);
    err.destroy('EBUSY', w.fd, n0);
    w.dev.attach(n1);
    err.destroy('EBUSY', w.fd, n1);
    w.fd.destroy(n0);
    w.dev.attach(parent);
    w.fd.destroy(n1);
    w.dev.attach(w.ioas);
    w.fd.destroy(parent);
    const again = w.fd.hwptAlloc({ devId: w.devId, ptId: w.fd.hwptAlloc({ devId: w.devId, ptId: w.ioas, nestParent: true }), table: sv39(0) });
    w.dev.attach(again);
    w.fd.close();
    expect(w.fd.closed).toBe(true);
  });
});

describe('attach of user-managed HWPTs (Linux drivers/iommu/iommufd/device.c)', () => {
  test('a PASID needs { pasid: true } on the user HWPT; the RID must be PASID-compatible too', () => {
    const w = world();
    const pasid = w.fd.pasidAlloc();
    const plain = w.fd.hwptAlloc({ devId: w.devId, table: sv39(0) });
    const withPasid = w.fd.hwptAlloc({ devId: w.devId, pasid: true, table: sv39(0x1000) });
    err.attach('EINVAL', w.dev, plain, { pasid });
    w.dev.attach(withPasid, { pasid });
    err.attach('EINVAL', w.dev, plain); // RID not PASID-compatible while a PASID is attached
    w.dev.attach(withPasid);
    expect([...w.dev.attachments()]).toEqual([[pasid, withPasid], [NO_PASID, withPasid]]);
    w.dev.detach({ pasid });
    w.dev.detach();
  });

  test('a RID on a nested HWPT reserves the device regions in the parent IOAS; guest-physical tables reserve nothing', () => {
    const w = world();
    const parent = w.fd.hwptAlloc({ devId: w.devId, ptId: w.ioas, nestParent: true });
    const nested = w.fd.hwptAlloc({ devId: w.devId, ptId: parent, table: sv39(0) });
    const phys = w.fd.hwptAlloc({ devId: w.devId, table: sv39(0) });
    const reserved = (): boolean => !w.fd.ioasIovaRanges(w.ioas).ranges.some((r) => r.start <= 0xfee0_0000n && r.last >= 0xfee0_0000n);
    expect(reserved()).toBe(false);
    w.dev.attach(nested);
    expect(reserved()).toBe(true);
    err.ioasMap('EINVAL', w.fd, w.ioas, { iova: 0xfee0_0000n, length: 4096, phys: 0 });
    w.dev.attach(phys);
    expect(reserved()).toBe(false);
    w.dev.detach();
  });

  test('translation through a guest-physical sv39 table, then detach blocks it', () => {
    const w = world();
    const root = w.ram.table();
    const t = new GuestTables(w.ram, root, 3, (a) => ((a >> 12n) << 10n) | 1n);
    t.map(0x5000n, 0, ((0xabcd_e000n >> 12n) << 10n) | SV39_LEAF, () => w.ram.table());
    const hwpt = w.fd.hwptAlloc({ devId: w.devId, table: sv39(root) });
    w.dev.attach(hwpt);
    expect(w.iommu.translate(w.dev.rid, NO_PASID, 0x5123, Access.Write)).toMatchObject({ ok: true, phys: 0xabcd_e123n, size: 0x1000n, perm: 3 });
    w.dev.detach();
    expect(w.iommu.translate(w.dev.rid, NO_PASID, 0x5123, Access.Write).fault!.reason).toBe('not-attached');
  });

  test('a table outside RAM faults outside-ram with its address; nothing outside RAM is read', () => {
    const w = world();
    const hwpt = w.fd.hwptAlloc({ devId: w.devId, table: sv39(0x7000_0000) });
    w.dev.attach(hwpt);
    const t = w.iommu.translate(w.dev.rid, NO_PASID, 0x1000, Access.Read);
    expect(t.fault).toMatchObject({ reason: 'outside-ram', stage: 1, level: 2, addr: 0x7000_0000n });
    // The last entry of RAM is inside; the first after it is not.
    const root = w.ram.table();
    w.ram.write(root, (((RAM + (4n << 20n) - 0x1000n) >> 12n) << 10n) | 1n); // level-2 entry 0 -> last RAM page
    const h2 = w.fd.hwptAlloc({ devId: w.devId, table: sv39(root) });
    w.dev.attach(h2);
    expect(w.iommu.translate(w.dev.rid, NO_PASID, 0x3fe0_0000, Access.Read).fault).toMatchObject({ reason: 'not-present', level: 1 });
    w.ram.write(root, (((RAM + (4n << 20n)) >> 12n) << 10n) | 1n); // -> the first page after RAM
    w.fd.hwptInvalidate(h2, [{}]);
    expect(w.iommu.translate(w.dev.rid, NO_PASID, 0x3fe0_0000, Access.Read).fault).toMatchObject({ reason: 'outside-ram', level: 1, addr: RAM + (4n << 20n) + 0xff8n });
  });
});

describe('hwptInvalidate (scenarios 51, 52)', () => {
  test('51: a paging HWPT is EINVAL, other objects EINVAL, unknown ENOENT; [] handles 0', () => {
    const w = world();
    const parent = w.fd.hwptAlloc({ devId: w.devId, ptId: w.ioas, nestParent: true });
    const nested = w.fd.hwptAlloc({ devId: w.devId, ptId: parent, table: sv39(0) });
    err.hwptInvalidate('EINVAL', w.fd, parent, [{}]);
    err.hwptInvalidate('EINVAL', w.fd, w.ioas, [{}]);
    err.hwptInvalidate('ENOENT', w.fd, 77, [{}]);
    err.hwptInvalidate('EINVAL', w.fd, nested, null as never);
    expect(w.fd.hwptInvalidate(nested, [])).toBe(0);
  });

  test('52: entries apply in order; the first bad one stops the call with its errno and the count done', () => {
    const w = world();
    const hwpt = w.fd.hwptAlloc({ devId: w.devId, table: sv39(0) });
    const cases: [unknown, string][] = [
      [{ flags: 0xffffffff }, 'EOPNOTSUPP'],
      [{ iova: 0 }, 'EINVAL'],
      [{ iova: 0, length: 0 }, 'EINVAL'],
      [{ pasid: 1 << 20 }, 'EINVAL'],
      [{ iova: (1n << 64n) - 4096n, length: 8192 }, 'EOVERFLOW'],
      [7, 'EINVAL'],
    ];
    for (const [bad, want] of cases) {
      for (const before of [0, 1, 2]) {
        const entries = [...Array(before).fill({ pasid: 0 }), bad, {}];
        try {
          w.fd.hwptInvalidate(hwpt, entries as never);
          expect.fail(`expected ${want}`);
        } catch (e) {
          expect(e).toBeInstanceOf(InvalidateError);
          expect((e as InvalidateError).errno).toBe(want);
          expect((e as InvalidateError).handled).toBe(before);
        }
      }
    }
    expect(w.fd.hwptInvalidate(hwpt, [{}, { pasid: 0 }, { iova: 0x1000, length: 0x2000 }, { iova: 0, length: 1, pasid: 3 }])).toBe(4);
  });
});
