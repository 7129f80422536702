/**
 * The Iommu itself: create/createSync option checks, the address width (3/4/5 table levels,
 * 4K/2M/1G leaves, the aperture), addDevice (BDF parsing into the requester ID, EEXIST, option
 * checks, fault injection) and stats().
 */
import { describe, expect, test } from 'vitest';
import { Access, Iommu, IommuError, NO_PASID, type IommuOptions } from '../src/index';
import { P, U64MAX, bdf, err, expectErrno, expectFault, expectMapped, failNth, makeIommu, ok } from './helpers';

const KiB4 = 1n << 12n;
const MiB2 = 1n << 21n;
const GiB1 = 1n << 30n;

describe('Iommu.create / createSync', () => {
  test('defaults: 48-bit IOVAs, and both constructors agree', async () => {
    const sync = Iommu.createSync();
    const later = await Iommu.create();
    expect(sync.addressWidth).toBe(48);
    expect(later.addressWidth).toBe(48);
    expect(later.shared).toBe(sync.shared);
    expect(sync.ram.length).toBe(0);
  });

  const BAD_OPTIONS: [string, unknown, 'EINVAL' | 'EOPNOTSUPP'][] = [
    ['an unknown option', { levels: 4 }, 'EOPNOTSUPP'],
    ['options that are not an object', 48, 'EINVAL'],
    ['addressWidth 40', { addressWidth: 40 }, 'EINVAL'],
    ['addressWidth as a string', { addressWidth: '48' }, 'EINVAL'],
    ['pasidBits above 20', { pasidBits: 21 }, 'EINVAL'],
    ['negative pasidBits', { pasidBits: -1 }, 'EINVAL'],
    ['iotlbEntries not a power of two', { iotlbEntries: 3 }, 'EINVAL'],
    ['translators 0', { translators: 0 }, 'EINVAL'],
    ['maxMemoryBytes above 4 GiB', { maxMemoryBytes: 2 ** 33 }, 'EINVAL'],
    ['maxMemoryBytes too small for the layout', { maxMemoryBytes: 2 ** 20, maxDomains: 1 << 20 }, 'EINVAL'],
    ['ram.bytes not a page multiple', { ram: { base: 0, bytes: 100 } }, 'EINVAL'],
    ['ram.base not page aligned', { ram: { base: 1, bytes: 4096 } }, 'EINVAL'],
    ['an unknown ram option', { ram: { base: 0, bytes: 4096, numa: 0 } }, 'EOPNOTSUPP'],
    ['shared not a boolean', { shared: 'yes' }, 'EINVAL'],
  ];

  test.each(BAD_OPTIONS)('createSync refuses %s', (_, opts, errno) => {
    expectErrno(errno, () => Iommu.createSync(opts as IommuOptions));
  });

  test.each(BAD_OPTIONS)('create rejects %s', async (_, opts, errno) => {
    const e = await Iommu.create(opts as IommuOptions).then(() => undefined, (x: unknown) => x);
    expect(e).toBeInstanceOf(IommuError);
    expect((e as IommuError).errno).toBe(errno);
  });

  test('ram: guest RAM of the requested size at the requested base', () => {
    const iommu = makeIommu({ ram: { base: GiB1, bytes: 16 * 4096 } });
    expect(iommu.ram.length).toBe(16 * 4096);
    expect(iommu.ramBase).toBe(GiB1);
  });
});

/** An engine of `width` bits with one device attached to a fresh IOAS. */
function attachedDevice(width: 39 | 48 | 57) {
  const iommu = makeIommu({ addressWidth: width });
  const fd = ok.open(iommu);
  const ioas = ok.ioasAlloc(fd);
  const dev = ok.addDevice(iommu, { bdf: bdf(0) });
  ok.bind(dev, fd);
  ok.attach(dev, ioas);
  return { iommu, fd, ioas, dev };
}

describe.each([[39, 3], [48, 4], [57, 5]] as const)('addressWidth %i (%i levels)', (width, levels) => {
  const top = 1n << BigInt(width);

  test('the aperture is [0, 2^width - 1]: beyond it nothing maps and translation faults', () => {
    const { iommu, fd, ioas, dev } = attachedDevice(width);
    expect(ok.ioasIovaRanges(fd, ioas).ranges).toEqual([{ start: 0n, last: top - 1n }]);
    err.ioasMap('EINVAL', fd, ioas, { iova: top, length: P, phys: 0 });
    ok.ioasMap(fd, ioas, { iova: top - P, length: P, phys: 5n * P });
    expectMapped(iommu, dev, top - 1n, 6n * P - 1n);
    const beyond = iommu.translate(dev.rid, NO_PASID, top, Access.Read);
    expect(beyond.fault).toEqual({ reason: 'beyond-width', level: levels - 1, stage: 0 });
  });

  test('leaves are 4 KiB, 2 MiB or 1 GiB as alignment and length allow', () => {
    const { iommu, fd, ioas, dev } = attachedDevice(width);
    for (const size of [KiB4, MiB2, GiB1]) {
      ok.ioasMap(fd, ioas, { iova: 4n * size, length: size, phys: 8n * size });
      const t = iommu.translate(dev.rid, NO_PASID, 4n * size + 123n, Access.Write);
      expect(t).toMatchObject({ ok: true, phys: 8n * size + 123n, size });
    }
    // A 2 MiB range whose output is only 4 KiB aligned needs 4 KiB leaves.
    ok.ioasMap(fd, ioas, { iova: 16n * GiB1, length: MiB2, phys: 8n * GiB1 + KiB4 });
    expect(iommu.translate(dev.rid, NO_PASID, 16n * GiB1, Access.Read).size).toBe(KiB4);
  });
});

describe('addDevice', () => {
  test.each([
    ['0000:03:00.0', 0x0300],
    ['03:00.0', 0x0300],
    ['03:1f.7', 0x03ff],
    ['FF:1F.7', 0xffff],
    ['0000:00:01.2', 0x000a],
  ])('BDF %s -> requester ID %i', (text, rid) => {
    const dev = ok.addDevice(makeIommu(), { bdf: text });
    expect(dev.rid).toBe(rid);
    expect(dev.bdf).toBe(text.toLowerCase());
  });

  test('each requester ID once (EEXIST), however the BDF is spelled', () => {
    const iommu = makeIommu();
    ok.addDevice(iommu, { bdf: '0000:03:00.0' });
    err.addDevice('EEXIST', iommu, { bdf: '03:00.0' });
    err.addDevice('EEXIST', iommu, { bdf: '0000:03:00.0', pasidBits: 0 });
  });

  test.each([
    ['a malformed BDF', { bdf: '3:00.0' }, 'EINVAL'],
    ['device number above 0x1f', { bdf: '03:20.0' }, 'EINVAL'],
    ['function above 7', { bdf: '03:00.8' }, 'EINVAL'],
    ['a BDF that is not a string', { bdf: 0x300 }, 'EINVAL'],
    ['no options', undefined, 'EINVAL'],
    ['an unknown option', { bdf: '03:00.0', ats: true }, 'EOPNOTSUPP'],
    ['pasidBits wider than the IOMMU', { bdf: '03:00.0', pasidBits: 21 }, 'EINVAL'],
    ['pri not a boolean', { bdf: '03:00.0', pri: 1 }, 'EINVAL'],
    ['reservedRegions not an array', { bdf: '03:00.0', reservedRegions: { start: 0, last: 1 } }, 'EINVAL'],
    ['a reserved region with start > last', { bdf: '03:00.0', reservedRegions: [{ start: 2, last: 1 }] }, 'EINVAL'],
    ['a reserved region past 2^64 (EOVERFLOW, as every address ≥ 2^64)', { bdf: '03:00.0', reservedRegions: [{ start: 0n, last: U64MAX + 1n }] }, 'EOVERFLOW'],
  ] as const)('refuses %s', (_, opts, errno) => {
    const iommu = makeIommu();
    err.addDevice(errno, iommu, opts as never);
    expect(iommu.translate(0x300, NO_PASID, 0, Access.Read).fault?.reason).toBe('no-device');
  });

  test('pasidBits defaults to the IOMMU width and may be narrower', () => {
    const iommu = makeIommu({ pasidBits: 10 });
    expect(ok.addDevice(iommu, { bdf: bdf(0) }).pasidBits).toBe(10);
    expect(ok.addDevice(iommu, { bdf: bdf(1), pasidBits: 4 }).pasidBits).toBe(4);
    err.addDevice('EINVAL', iommu, { bdf: bdf(2), pasidBits: 11 });
  });

  test('a new device is present but blocked; a failed add leaves no device (fault injection)', () => {
    const iommu = makeIommu();
    const fd = ok.open(iommu);
    const dev = ok.addDevice(iommu, { bdf: bdf(0) });
    expectFault(iommu, dev, 0n, 'not-attached');
    failNth(fd, 1);
    err.addDevice('ENOMEM', iommu, { bdf: bdf(1) });
    expect(iommu.translate(0x0010, NO_PASID, 0, Access.Read).fault?.reason).toBe('no-device');
    expect(ok.addDevice(iommu, { bdf: bdf(1) }).rid).toBe(0x0010);
  });
});

describe('stats', () => {
  test('counts hits, misses and faults by reason, and table pages', () => {
    const iommu = makeIommu();
    const fd = ok.open(iommu);
    const ioas = ok.ioasAlloc(fd);
    const dev = ok.addDevice(iommu, { bdf: bdf(0) });
    ok.bind(dev, fd);
    ok.attach(dev, ioas);
    const start = iommu.stats();
    expect(start.memoryBytes).toBe(iommu.memory.buffer.byteLength);
    ok.ioasMap(fd, ioas, { iova: 0, length: P, phys: P, write: false });
    const mapped = iommu.stats().tablePages;
    expect(mapped).toBeGreaterThan(start.tablePages); // the levels below the root
    iommu.translate(dev.rid, NO_PASID, 0x10, Access.Read); // miss
    iommu.translate(dev.rid, NO_PASID, 0x20, Access.Read); // hit (same page)
    iommu.translate(dev.rid, NO_PASID, 0x20, Access.Write); // permission fault
    iommu.translate(dev.rid, NO_PASID, P, Access.Read); // not present
    iommu.translate(0x1234, NO_PASID, 0, Access.Read); // no device
    const s = iommu.stats();
    expect(s.hits - start.hits).toBe(1);
    expect(s.faults - start.faults).toBe(3);
    expect(s.misses - start.misses).toBe(4);
    expect(s.translations - start.translations).toBe(5);
    expect(s.faultsByReason).toMatchObject({ permission: 1, 'not-present': 1, 'no-device': 1 });
    expect(ok.ioasUnmap(fd, ioas, 0, P)).toBe(P);
    expect(iommu.stats().tablePages).toBe(start.tablePages);
  });
});
