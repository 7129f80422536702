/**
 * Unit tests of the IOVA page table (src/iommufd/io-pagetable.ts), driven directly with a recording fake
 * domain. Scenario numbers are the selftest case numbers of test/README.md; "device" variants attach one
 * domain with a 4 KiB page and the mock aperture, like the selftest's mock device.
 */
import { describe, test, expect } from 'vitest';
import { IommuError, type Errno } from '../src/base/errno.js';
import { U64_MAX } from '../src/base/range';
import type { Area } from '../src/iommufd/area';
import type { DomainSink } from '../src/iommufd/domain-sink';
import { IoPagetable } from '../src/iommufd/io-pagetable';
import type { IoRange } from '../src/iommufd/io-range';

const P = 4096n;
const MP = P / 2n; // the selftest's MOCK_PAGE_SIZE, used where a scenario copies MP bytes
const APSTART = 1n << 24n;
const APLAST = (1n << 31n) - 1n;
const BUF = 16n * P;
/** Backing address for auto maps: 2 GiB aligned, like the selftest's huge-page aligned buffer. */
const PHYS = 1n << 31n;
const GiB = 1n << 30n;

/** A domain that records what is installed and can fail the Nth mapArea with ENOMEM. */
class FakeSink implements DomainSink {
  readonly installed = new Map<bigint, Area>();
  maps = 0;
  /** 1-based mapArea call (counted over the sink's life) that throws ENOMEM; 0 = never. */
  failOnMap = 0;

  /** Make the `n`th mapArea from now fail. */
  failAfter(n: number): void {
    this.failOnMap = this.maps + n;
  }

  mapArea(area: Area): void {
    this.maps++;
    if (this.maps === this.failOnMap) throw new IommuError('ENOMEM', 'fake.mapArea', 'injected');
    for (const a of this.installed.values()) {
      if (a.iova <= area.last && area.iova <= a.last) throw new Error('fake: overlapping install');
    }
    this.installed.set(area.iova, area);
  }

  unmapArea(area: Area): void {
    if (this.installed.get(area.iova) !== area) throw new Error('fake: unmap of an area not installed');
    this.installed.delete(area.iova);
  }

  contents(): Area[] {
    return [...this.installed.values()].sort((a, b) => (a.iova < b.iova ? -1 : 1));
  }
}

/** Everything observable about a table, as plain data, for before/after comparisons. */
function state(pt: IoPagetable) {
  return {
    areas: pt.areas.map((a) => ({ ...a })),
    ranges: pt.iovaRanges(),
    alignment: pt.alignment,
    allowed: pt.allowed.map((r) => ({ ...r })),
    domains: [...pt.domains],
    installed: pt.domains.map((d) => (d instanceof FakeSink ? d.contents().map((a) => ({ ...a })) : [])),
  };
}

/** Every attached fake domain holds exactly the table's areas (same objects). */
function expectSynced(pt: IoPagetable): void {
  for (const d of pt.domains) if (d instanceof FakeSink) expect(d.contents()).toEqual(pt.areas);
  const areas = pt.areas;
  for (let i = 1; i < areas.length; i++) expect(areas[i - 1]!.last < areas[i]!.iova).toBe(true);
}

/** Asserts `fn` throws an IommuError with `errno`; returns it. */
function expectErrno(errno: Errno, fn: () => unknown): IommuError {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  expect(err, `expected ${errno}`).toBeInstanceOf(IommuError);
  expect((err as IommuError).errno).toBe(errno);
  return err as IommuError;
}

/** Asserts `fn` fails with `errno` and leaves `pt` exactly as it was. */
function expectFail(pt: IoPagetable, errno: Errno, fn: () => unknown): IommuError {
  const before = state(pt);
  const err = expectErrno(errno, fn);
  expect(state(pt)).toEqual(before);
  return err;
}

/** Runs `fn`, which must succeed, then checks the domains still mirror the areas. */
function ok<T>(pt: IoPagetable, fn: () => T): T {
  const r = fn();
  expectSynced(pt);
  return r;
}

function mapFixed(pt: IoPagetable, iova: bigint, length: bigint, phys = iova + PHYS, write = true): bigint {
  return pt.map('test', { iova, length, phys, read: true, write });
}

function mapAuto(pt: IoPagetable, length: bigint, phys = PHYS): bigint {
  return pt.map('test', { length, phys, read: true, write: true });
}

function lowbit(x: bigint): bigint {
  return x & -x;
}

interface Fixture {
  pt: IoPagetable;
  sink: FakeSink | undefined;
  /** 0 without a device, APSTART with one (the selftest's `base`). */
  base: bigint;
}

function fixture(device: boolean): Fixture {
  const pt = new IoPagetable();
  if (!device) return { pt, sink: undefined, base: 0n };
  const sink = new FakeSink();
  pt.addDomain('test', sink, { pageSize: P, aperture: { start: APSTART, last: APLAST } });
  return { pt, sink, base: APSTART };
}

const VARIANTS = [
  { name: 'no_domain', device: false },
  { name: 'mock_domain', device: true },
];

describe('fresh table', () => {
  test('alignment 1, no areas, whole space, no allowed list', () => {
    const pt = new IoPagetable();
    expect(pt.alignment).toBe(1n);
    expect(pt.areas).toEqual([]);
    expect(pt.domains).toEqual([]);
    expect(pt.allowed).toEqual([]);
    expect(pt.iovaRanges()).toEqual({ ranges: [{ start: 0n, last: U64_MAX }], alignment: 1n });
    expect(U64_MAX).toBe(0xffff_ffff_ffff_ffffn);
  });
});

describe.each(VARIANTS)('selftest cases C/D, $name', ({ device }) => {
  test('13 unmap on an empty table: ENOENT', () => {
    const { pt } = fixture(device);
    for (let i = 0n; i < 10n; i++) expectFail(pt, 'ENOENT', () => pt.unmap('test', i * P, P));
  });

  test('14 map fixed pages, unmap each', () => {
    const { pt, sink, base } = fixture(device);
    for (let i = 0n; i < 10n; i++) expect(ok(pt, () => mapFixed(pt, base + i * P, P))).toBe(base + i * P);
    expect(pt.areas).toHaveLength(10);
    expect(sink?.installed.size ?? 10).toBe(10);
    for (let i = 0n; i < 10n; i++) expect(ok(pt, () => pt.unmap('test', base + i * P, P))).toBe(P);
    expect(pt.areas).toEqual([]);
    expect(sink?.installed.size ?? 0).toBe(0);
  });

  test('15 no split, 16 no overmap', () => {
    const { pt, base } = fixture(device);
    ok(pt, () => mapFixed(pt, base + 16n * P, 2n * P));
    expectFail(pt, 'ENOENT', () => pt.unmap('test', base + 16n * P, P));
    expectFail(pt, 'ENOENT', () => pt.unmap('test', base + 17n * P, P));
    expectFail(pt, 'EEXIST', () => mapFixed(pt, base + 16n * P, 2n * P));
    expectFail(pt, 'EEXIST', () => mapFixed(pt, base + 16n * P, P));
    expectFail(pt, 'EEXIST', () => mapFixed(pt, base + 17n * P, P));
    expectFail(pt, 'EEXIST', () => mapFixed(pt, base + 15n * P, 2n * P));
    expectFail(pt, 'EEXIST', () => mapFixed(pt, base + 15n * P, 3n * P));
    expect(pt.areas).toHaveLength(1);
  });

  test('17 unmap all, then again on the empty table', () => {
    const { pt, sink, base } = fixture(device);
    ok(pt, () => mapFixed(pt, base, P));
    ok(pt, () => mapFixed(pt, base + 16n * P, 2n * P));
    expect(ok(pt, () => pt.unmap('test', 0n, U64_MAX))).toBe(3n * P);
    expect(pt.areas).toEqual([]);
    expect(sink?.installed.size ?? 0).toBe(0);
    expect(ok(pt, () => pt.unmap('test', 0n, U64_MAX))).toBe(0n);
  });

  test('18 unmap removes only fully contained areas, holes allowed', () => {
    const { pt, base } = fixture(device);
    const b = base + 4n * P;
    for (let i = 0n; i < 4n; i++) ok(pt, () => mapFixed(pt, b + i * 16n * P, 8n * P));
    expectFail(pt, 'ENOENT', () => pt.unmap('test', b - 4n * P, 8n * P));
    expectFail(pt, 'ENOENT', () => pt.unmap('test', b + 3n * 16n * P + 4n * P, 8n * P));
    expect(ok(pt, () => pt.unmap('test', b - 4n * P, 3n * 16n * P + 8n * P + 4n * P))).toBe(32n * P);
    expect(pt.areas).toEqual([]);
  });

  test('19 automatic IOVA, simple', () => {
    const { pt } = fixture(device);
    const iovas = [];
    for (let i = 0; i < 10; i++) iovas.push(ok(pt, () => mapAuto(pt, P)));
    expect(new Set(iovas).size).toBe(10);
    for (const iova of iovas) expect(ok(pt, () => pt.unmap('test', iova, P))).toBe(P);
    expect(pt.areas).toEqual([]);
  });

  test('20 automatic IOVA is aligned to the lowest set bit of the length', () => {
    const { pt } = fixture(device);
    for (let i = 0n; i < 10n; i++) {
      const len = (i + 1n) * P;
      const iova = ok(pt, () => mapAuto(pt, len));
      expect(iova % lowbit(len)).toBe(0n);
    }
    ok(pt, () => pt.unmap('test', 0n, U64_MAX));
    expect(pt.areas).toEqual([]);
  });

  test('21-23 automatic IOVA avoids reserved ranges and stays inside the allowed window', () => {
    const { pt, base } = fixture(device);
    const owner = {};
    ok(pt, () => pt.addReserved('test', owner, [{ start: 4n * P, last: 104n * P - 1n }]));
    for (let i = 0n; i < 10n; i++) {
      const len = (i + 1n) * P;
      const iova = ok(pt, () => mapAuto(pt, len));
      expect(iova % lowbit(len)).toBe(0n);
      expect(iova > 4n * P && iova < 104n * P).toBe(false);
      expect(iova + len - 1n < 4n * P || iova >= 104n * P).toBe(true);
    }
    ok(pt, () => pt.unmap('test', 0n, U64_MAX));
    // 22: the reserved range lies inside the proposed allowed range.
    expectFail(pt, 'EADDRINUSE', () => pt.setAllowed('test', [{ start: P, last: 600n * P }]));
    // 23: allocate from an allowed window.
    const win = device ? { start: base + P, last: base + 600n * P - 1n } : { start: 200n * P, last: 600n * P - 1n };
    ok(pt, () => pt.setAllowed('test', [win]));
    for (let i = 0n; i < 10n; i++) {
      const len = (i + 1n) * P;
      const iova = ok(pt, () => mapAuto(pt, len));
      expect(iova >= win.start).toBe(true);
      expect(iova <= win.last).toBe(true);
      expect(iova + len <= win.last + 1n).toBe(true);
      expect(iova % lowbit(len)).toBe(0n);
    }
  });

  test('24 reserved range covering nearly everything: ENOSPC, not an overflow', () => {
    const { pt } = fixture(device);
    ok(pt, () => pt.addReserved('test', {}, [{ start: 6n, last: 6n + 0xffffffffffff8001n - 1n }]));
    expectFail(pt, 'ENOSPC', () => mapAuto(pt, 0x5000n, 2n << 20n));
    expectFail(pt, 'ENOSPC', () => mapAuto(pt, 0x5000n, 0n));
  });

  test('25 allowed ranges block reserved ranges and vice versa', () => {
    const { pt, base } = fixture(device);
    const owner = {};
    const resv = [{ start: base + P, last: base + 2n * P - 1n }];
    ok(pt, () => pt.setAllowed('test', [{ start: base, last: base + 600n * P }]));
    expectFail(pt, 'EADDRINUSE', () => pt.addReserved('test', owner, resv));
    ok(pt, () => pt.setAllowed('test', []));
    expect(pt.allowed).toEqual([]);
    ok(pt, () => pt.addReserved('test', owner, resv));
    expectFail(pt, 'EADDRINUSE', () => pt.setAllowed('test', [{ start: base, last: base + 600n * P }]));
  });

  test('26 copy within one table and into a second one', () => {
    const { pt, base } = fixture(device);
    ok(pt, () => mapFixed(pt, base, P, PHYS));
    expect(ok(pt, () => pt.copyFrom('test', pt, base, P, { iova: base + P, read: true, write: true }))).toBe(base + P);
    const pt2 = new IoPagetable();
    expect(ok(pt2, () => pt2.copyFrom('test', pt, base, P, { iova: 0n, read: true, write: true }))).toBe(0n);
    expect(pt.areas.map((a) => a.phys)).toEqual([PHYS, PHYS]);
    expect(pt2.areas).toEqual([{ iova: 0n, last: P - 1n, phys: PHYS, read: true, write: true }]);
  });

  test('27 iova ranges: holes of the reserved ranges, and the alignment', () => {
    const { pt } = fixture(device);
    const whole = device ? [{ start: APSTART, last: APLAST }] : [{ start: 0n, last: U64_MAX }];
    expect(pt.iovaRanges()).toEqual({ ranges: whole, alignment: device ? P : 1n });
    ok(pt, () => pt.addReserved('test', {}, [{ start: P, last: 2n * P - 1n }]));
    expect(pt.iovaRanges().ranges).toEqual(
      device
        ? [{ start: APSTART, last: APLAST }]
        : [
            { start: 0n, last: P - 1n },
            { start: 2n * P, last: U64_MAX },
          ],
    );
  });

  test('28 automatic IOVA for every byte length 1 .. 2P-1', () => {
    const { pt } = fixture(device);
    for (let length = 1n; length < 2n * P; length++) {
      if (device && length % P !== 0n) {
        expectErrno('EINVAL', () => mapAuto(pt, length));
        continue;
      }
      const iova = mapAuto(pt, length);
      expect(pt.unmap('test', iova, length)).toBe(length);
    }
    expect(pt.areas).toEqual([]);
  });

  test('31 copy sweep: any window inside one mapping copies, others ENOENT', () => {
    const { pt: src } = fixture(device);
    const dst = new IoPagetable();
    const last = APSTART + BUF - (device ? 1n : 2n);
    ok(src, () => mapFixed(src, APSTART, last - APSTART + 1n, PHYS));
    let copied = 0;
    for (let srcIova = APSTART - P; srcIova <= last; srcIova += 511n) {
      if (srcIova < APSTART || srcIova + MP - 1n > last) {
        expectFail(dst, 'ENOENT', () => dst.copyFrom('test', src, srcIova, MP, { iova: APSTART, read: true, write: true }));
        continue;
      }
      ok(dst, () => dst.copyFrom('test', src, srcIova, MP, { iova: APSTART, read: true, write: true }));
      expect(dst.areas).toEqual([{ iova: APSTART, last: APSTART + MP - 1n, phys: PHYS + (srcIova - APSTART), read: true, write: true }]);
      expect(dst.unmap('test', APSTART, MP)).toBe(MP);
      copied++;
    }
    expect(copied).toBeGreaterThan(100);
    expect(dst.areas).toEqual([]);
  });
});

describe('map: check order and errnos', () => {
  test('EINVAL without read or write', () => {
    const pt = new IoPagetable();
    expectFail(pt, 'EINVAL', () => pt.map('test', { iova: 0n, length: P, phys: 0n, read: false, write: false }));
  });

  test('EOVERFLOW for values outside u64 (guard for direct callers)', () => {
    const pt = new IoPagetable();
    expectFail(pt, 'EOVERFLOW', () => mapFixed(pt, -P, P, 0n));
    expectFail(pt, 'EOVERFLOW', () => mapFixed(pt, 0n, U64_MAX + 1n, 0n));
    expectFail(pt, 'EOVERFLOW', () => mapFixed(pt, 0n, P, -1n));
  });

  test('EINVAL length 0 comes first', () => {
    const { pt } = fixture(true);
    const e = expectFail(pt, 'EINVAL', () => mapFixed(pt, APSTART + 1n, 0n, U64_MAX));
    expect(e.message).toMatch(/non-zero length/);
    expectFail(pt, 'EINVAL', () => mapAuto(pt, 0n));
  });

  test('EOVERFLOW when the backing range wraps, before the length alignment check', () => {
    const { pt } = fixture(true);
    const e = expectFail(pt, 'EOVERFLOW', () => mapFixed(pt, APSTART + 1n, P + 1n, U64_MAX - 10n));
    expect(e.message).toMatch(/phys/);
    expect(e.code).toBe(75);
  });

  test('EINVAL length not a multiple of the alignment, before the iova checks', () => {
    const { pt } = fixture(true);
    const e = expectFail(pt, 'EINVAL', () => mapFixed(pt, APSTART + 1n, P + 1n, 0n));
    expect(e.message).toMatch(/length multiple/);
  });

  test('EINVAL fixed iova misaligned, before the wrap check', () => {
    const { pt } = fixture(true);
    const e = expectFail(pt, 'EINVAL', () => mapFixed(pt, U64_MAX - 100n, 2n * P, 0n));
    expect(e.message).toMatch(/iova multiple/);
  });

  test('EOVERFLOW fixed iova + length - 1 wraps, before the reserved check', () => {
    for (const device of [false, true]) {
      const { pt } = fixture(device);
      expectFail(pt, 'EOVERFLOW', () => mapFixed(pt, U64_MAX - P + 1n, 2n * P, 0n));
    }
  });

  test('EINVAL reserved before EEXIST', () => {
    const { pt, base } = fixture(true);
    ok(pt, () => mapFixed(pt, base, P));
    ok(pt, () => pt.addReserved('test', {}, [{ start: base + P, last: base + 2n * P - 1n }]));
    const e = expectFail(pt, 'EINVAL', () => mapFixed(pt, base, 2n * P));
    expect(e.message).toMatch(/reserved/);
    expectFail(pt, 'EEXIST', () => mapFixed(pt, base, P));
    // Outside the aperture is reserved by the domain.
    expectFail(pt, 'EINVAL', () => mapFixed(pt, APSTART - P, P));
    expectFail(pt, 'EINVAL', () => mapFixed(pt, APLAST + 1n, P));
  });

  test('EEXIST before EINVAL for a misaligned phys; misaligned phys alone is EINVAL', () => {
    const { pt, base } = fixture(true);
    ok(pt, () => mapFixed(pt, base, P));
    expectFail(pt, 'EEXIST', () => mapFixed(pt, base, P, 0x800n));
    const e = expectFail(pt, 'EINVAL', () => mapFixed(pt, base + P, P, 0x800n));
    expect(e.message).toMatch(/phys/);
  });

  test('without a domain any byte alignment works, fixed maps reach the top of u64 and IOVA 0', () => {
    const pt = new IoPagetable();
    ok(pt, () => mapFixed(pt, 0n, 1n, 0x123n));
    ok(pt, () => mapFixed(pt, 3n, 5n, 0x7n));
    ok(pt, () => mapFixed(pt, U64_MAX - P + 1n, P - 1n, 0n));
    ok(pt, () => mapFixed(pt, U64_MAX, 1n, 0n));
    expect(pt.areas.map((a) => [a.iova, a.last])).toEqual([
      [0n, 0n],
      [3n, 7n],
      [U64_MAX - P + 1n, U64_MAX - 1n],
      [U64_MAX, U64_MAX],
    ]);
  });

  test('fixed maps ignore the allowed list', () => {
    const { pt, base } = fixture(true);
    ok(pt, () => pt.setAllowed('test', [{ start: base + 100n * P, last: base + 200n * P }]));
    expect(ok(pt, () => mapFixed(pt, base, P))).toBe(base);
  });

  test('each map makes exactly one area; neighbours are never merged', () => {
    const { pt, base } = fixture(true);
    ok(pt, () => mapFixed(pt, base, P, PHYS));
    ok(pt, () => mapFixed(pt, base + P, P, PHYS + P));
    expect(pt.areas).toEqual([
      { iova: base, last: base + P - 1n, phys: PHYS, read: true, write: true },
      { iova: base + P, last: base + 2n * P - 1n, phys: PHYS + P, read: true, write: true },
    ]);
    expectFail(pt, 'ENOENT', () => pt.unmap('test', base + P / 2n, P));
  });

  test('read-only and write-only areas keep their permissions', () => {
    const pt = new IoPagetable();
    pt.map('test', { iova: 0n, length: P, phys: 0n, read: true, write: false });
    pt.map('test', { iova: P, length: P, phys: 0n, read: false, write: true });
    expect(pt.areas.map((a) => [a.read, a.write])).toEqual([
      [true, false],
      [false, true],
    ]);
  });
});

describe('map: automatic IOVA', () => {
  test('EOVERFLOW from ULONG_MAX/2 on; the largest length still fits, aligned to the 1 GiB cap', () => {
    const pt = new IoPagetable();
    expectFail(pt, 'EOVERFLOW', () => mapAuto(pt, 1n << 63n, 0n));
    expectFail(pt, 'EOVERFLOW', () => mapAuto(pt, U64_MAX / 2n, 0n));
    expect(ok(pt, () => mapAuto(pt, U64_MAX / 2n - 1n, 0n))).toBe(GiB);
  });

  test('alignment is capped at 1 GiB', () => {
    const pt = new IoPagetable();
    expect(mapAuto(pt, 4n * GiB, 0n)).toBe(GiB);
    expect(mapAuto(pt, 4n * GiB, 0n)).toBe(5n * GiB);
  });

  test('EINVAL when the mapping allows less than the IOVA alignment', () => {
    const { pt } = fixture(true);
    const e = expectFail(pt, 'EINVAL', () => mapAuto(pt, P, 0x800n));
    expect(e.message).toMatch(/allows the IOVA alignment/);
    const pt2 = new IoPagetable();
    pt2.addAlignment('test', {}, P);
    expectFail(pt2, 'EINVAL', () => mapAuto(pt2, P, P / 2n));
  });

  test('ENOSPC when no hole fits; state unchanged', () => {
    const { pt, base } = fixture(true);
    ok(pt, () => pt.setAllowed('test', [{ start: base, last: base + 2n * P - 1n }]));
    ok(pt, () => mapAuto(pt, P));
    expectFail(pt, 'ENOSPC', () => mapAuto(pt, 2n * P));
    ok(pt, () => mapAuto(pt, P));
    expectFail(pt, 'ENOSPC', () => mapAuto(pt, P));
  });

  test('never returns IOVA 0 and starts at the first page', () => {
    const pt = new IoPagetable();
    expect(mapAuto(pt, 1n, 0n)).toBe(P);
    expect(mapAuto(pt, P, 0n)).toBe(2n * P);
  });

  test('keeps the page offset of phys when the alignment is below a page', () => {
    const pt = new IoPagetable();
    const iova = mapAuto(pt, 0x10n, 0x1234n);
    expect(iova % P).toBe(0x234n);
    expect(iova).toBe(P + 0x234n);
    const iova2 = mapAuto(pt, 0x10n, 0x5234n);
    expect(iova2).toBe(2n * P + 0x234n);
  });

  test('first fit, lowest address first', () => {
    const pt = new IoPagetable();
    expect([mapAuto(pt, P, 0n), mapAuto(pt, P, 0n), mapAuto(pt, P, 0n)]).toEqual([P, 2n * P, 3n * P]);
    pt.unmap('test', 2n * P, P);
    expect(mapAuto(pt, P, 0n)).toBe(2n * P);
    expect(mapAuto(pt, 2n * P, 0n)).toBe(4n * P);
  });

  test('the last page of the space is never used', () => {
    const pt = new IoPagetable();
    pt.setAllowed('test', [{ start: U64_MAX - 3n * P + 1n, last: U64_MAX }]);
    expect(mapAuto(pt, P, 0n)).toBe(U64_MAX - 3n * P + 1n);
    expect(mapAuto(pt, P, 0n)).toBe(U64_MAX - 2n * P + 1n);
    expectFail(pt, 'ENOSPC', () => mapAuto(pt, P, 0n));
  });

  test('skips areas and reserved ranges of several owners', () => {
    const pt = new IoPagetable();
    pt.addReserved('test', {}, [{ start: P, last: 3n * P - 1n }]);
    pt.addReserved('test', {}, [{ start: 2n * P, last: 5n * P - 1n }]);
    mapFixed(pt, 5n * P, P, 0n);
    mapFixed(pt, 7n * P, P, 0n);
    expect(mapAuto(pt, P, 0n)).toBe(6n * P);
    expect(mapAuto(pt, 2n * P, 0n)).toBe(8n * P);
  });

  test('property: alignment, page offset, window and allowed ranges over many maps', () => {
    let seed = 12345;
    const rnd = (n: number) => {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      return seed % n;
    };
    for (const device of [false, true]) {
      const { pt, base } = fixture(device);
      const allowed: IoRange[] = [
        { start: base + 3n * P, last: base + 700n * P - 1n },
        { start: base + 1000n * P + 0x10n, last: base + 5000n * P },
      ];
      pt.setAllowed('test', allowed);
      for (let i = 0; i < 300; i++) {
        const pages = BigInt(1 + rnd(40));
        const length = device ? pages * P : pages * P - BigInt(rnd(3) * 0x20);
        const phys = BigInt(rnd(4)) === 0n ? 0n : BigInt(1 + rnd(1 << 20)) * (device ? P : 0x10n);
        let iova: bigint;
        try {
          iova = mapAuto(pt, length, phys);
        } catch (e) {
          expect((e as IommuError).errno).toBe('ENOSPC');
          pt.unmap('test', 0n, U64_MAX);
          continue;
        }
        let align = 1n;
        while (align < length) align <<= 1n;
        if (phys !== 0n && lowbit(phys) < align) align = lowbit(phys);
        if (align > GiB) align = GiB;
        expect(iova % align).toBe(0n);
        expect(iova % lowbit(length) === 0n || lowbit(phys) < lowbit(length)).toBe(true);
        if (align < P) expect(iova % P).toBe(phys % P);
        expect(iova).toBeGreaterThanOrEqual(P);
        expect(allowed.some((r) => r.start <= iova && iova + length - 1n <= r.last)).toBe(true);
        if (rnd(5) === 0) pt.unmap('test', iova, length);
      }
      expectSynced(pt);
    }
  });

  test('thousands of areas: overlap checks stay correct', () => {
    const { pt, sink, base } = fixture(true);
    const order = Array.from({ length: 3000 }, (_, i) => BigInt((i * 7919) % 3000));
    for (const i of order) mapFixed(pt, base + i * 2n * P, P);
    for (let i = 0n; i < 500n; i++) mapAuto(pt, P);
    expect(pt.areas).toHaveLength(3500);
    expect(sink!.installed.size).toBe(3500);
    expectSynced(pt);
    expectFail(pt, 'EEXIST', () => mapFixed(pt, base + 1234n * 2n * P, P));
    expectFail(pt, 'EEXIST', () => mapFixed(pt, base + 1234n * 2n * P + P, 2n * P));
  });
});

describe('map: domains', () => {
  test('installs the area in every domain', () => {
    const { pt, sink, base } = fixture(true);
    const sink2 = new FakeSink();
    pt.addDomain('test', sink2, { pageSize: P, aperture: { start: 0n, last: U64_MAX } });
    ok(pt, () => mapFixed(pt, base, P));
    expect(sink!.contents()).toEqual(pt.areas);
    expect(sink2.contents()).toEqual(pt.areas);
  });

  test('ENOMEM from a later domain undoes the earlier ones and leaves no area', () => {
    const { pt, sink, base } = fixture(true);
    const sink2 = new FakeSink();
    pt.addDomain('test', sink2, { pageSize: P, aperture: { start: 0n, last: U64_MAX } });
    ok(pt, () => mapFixed(pt, base, P));
    sink2.failAfter(1);
    expectFail(pt, 'ENOMEM', () => mapFixed(pt, base + P, P));
    expect(sink!.installed.size).toBe(1); // installed in the first domain, then undone
    expect(sink!.maps).toBe(2);
    sink2.failAfter(1);
    expectFail(pt, 'ENOMEM', () => mapAuto(pt, P));
    expect(ok(pt, () => mapAuto(pt, P))).toBeGreaterThanOrEqual(APSTART);
    expect(pt.areas).toHaveLength(2);
  });

  test('ENOMEM from the first domain; a retry succeeds', () => {
    const { pt, sink, base } = fixture(true);
    sink!.failAfter(1);
    expectFail(pt, 'ENOMEM', () => mapFixed(pt, base, P));
    expect(sink!.installed.size).toBe(0);
    expect(ok(pt, () => mapFixed(pt, base, P))).toBe(base);
  });
});

describe('unmap', () => {
  test('EINVAL length 0, EOVERFLOW on wrap, only (0, U64_MAX) means all', () => {
    const { pt, base } = fixture(true);
    ok(pt, () => mapFixed(pt, base, P));
    expectFail(pt, 'EINVAL', () => pt.unmap('test', base, 0n));
    expectFail(pt, 'EINVAL', () => pt.unmap('test', 0n, 0n));
    expectFail(pt, 'EOVERFLOW', () => pt.unmap('test', U64_MAX - 1n, 3n));
    expectFail(pt, 'EOVERFLOW', () => pt.unmap('test', 2n, U64_MAX));
    expectFail(pt, 'EOVERFLOW', () => pt.unmap('test', -1n, P));
    // (1, U64_MAX) is a plain range [1, U64_MAX] here: the command layer rejects length >= U64_MAX.
    expect(pt.unmap('test', 1n, U64_MAX)).toBe(P);
    expectFail(pt, 'ENOENT', () => pt.unmap('test', 1n, U64_MAX));
  });

  test('ENOENT when only a hole is hit', () => {
    const { pt, base } = fixture(true);
    ok(pt, () => mapFixed(pt, base, P));
    ok(pt, () => mapFixed(pt, base + 4n * P, P));
    expectFail(pt, 'ENOENT', () => pt.unmap('test', base + P, 3n * P));
  });

  test('a failed unmap changes nothing, even when lower areas were fully covered', () => {
    const { pt, sink, base } = fixture(true);
    for (let i = 0n; i < 4n; i++) ok(pt, () => mapFixed(pt, base + i * 4n * P, 2n * P));
    // Areas 0..2 are inside, area 3 only half: the kernel would have removed 0..2 already.
    expectFail(pt, 'ENOENT', () => pt.unmap('test', base, 13n * P));
    expect(pt.areas).toHaveLength(4);
    expect(sink!.installed.size).toBe(4);
  });

  test('superset with holes returns the byte total and unmaps from every domain', () => {
    const { pt, sink, base } = fixture(true);
    ok(pt, () => mapFixed(pt, base + P, P));
    ok(pt, () => mapFixed(pt, base + 3n * P, 2n * P));
    ok(pt, () => mapFixed(pt, base + 8n * P, 3n * P));
    ok(pt, () => mapFixed(pt, base + 20n * P, P));
    expect(ok(pt, () => pt.unmap('test', base, 12n * P))).toBe(6n * P);
    expect(pt.areas.map((a) => a.iova)).toEqual([base + 20n * P]);
    expect(sink!.contents()).toEqual(pt.areas);
  });

  test('an area at the very top of u64', () => {
    const pt = new IoPagetable();
    mapFixed(pt, U64_MAX - P + 1n, P, 0n);
    expectFail(pt, 'ENOENT', () => pt.unmap('test', U64_MAX, 1n));
    expect(pt.unmap('test', U64_MAX - P + 1n, P)).toBe(P);
  });
});

describe('copyFrom', () => {
  function source(): { src: IoPagetable; base: bigint } {
    const src = new IoPagetable();
    const base = 0x100000n;
    // Three contiguous areas with unrelated backing, then a hole, then a read-only area.
    mapFixed(src, base, 2n * P, 0x10_0000_0000n);
    mapFixed(src, base + 2n * P, P, 0x20_0000_0000n);
    mapFixed(src, base + 3n * P, 3n * P, 0x30_0000_0000n);
    src.map('test', { iova: base + 8n * P, length: 2n * P, phys: 0x40_0000_0000n, read: true, write: false });
    return { src, base };
  }
  const RW = { read: true, write: true };

  test('source-side errnos come first: EINVAL length 0, EOVERFLOW wrap, ENOENT hole', () => {
    const { src, base } = source();
    const dst = new IoPagetable();
    mapFixed(dst, 0n, P, 0n);
    expectFail(dst, 'EINVAL', () => dst.copyFrom('test', src, base, 0n, { iova: 0n, ...RW }));
    expectFail(dst, 'EOVERFLOW', () => dst.copyFrom('test', src, U64_MAX, 2n, { iova: 0n, ...RW }));
    // The range crosses the hole at 6P..8P; dst iova 0 would also be EEXIST.
    expectFail(dst, 'ENOENT', () => dst.copyFrom('test', src, base + 5n * P, 4n * P, { iova: 0n, ...RW }));
    expectFail(dst, 'ENOENT', () => dst.copyFrom('test', src, base - 1n, P, { iova: 0n, ...RW }));
    expectFail(dst, 'ENOENT', () => dst.copyFrom('test', src, base + 9n * P, 2n * P, { iova: 0n, ...RW }));
    expectFail(dst, 'EINVAL', () => dst.copyFrom('test', src, base, P, { iova: P, read: false, write: false }));
    expectFail(dst, 'EEXIST', () => dst.copyFrom('test', src, base, P, { iova: 0n, ...RW }));
  });

  test('sub-range of one mapping', () => {
    const { src, base } = source();
    const dst = new IoPagetable();
    expect(dst.copyFrom('test', src, base + 0x123n, 0x456n, { iova: 0x9000n, read: true, write: false })).toBe(0x9000n);
    expect(dst.areas).toEqual([{ iova: 0x9000n, last: 0x9000n + 0x455n, phys: 0x10_0000_0000n + 0x123n, read: true, write: false }]);
  });

  test('one area per source slice, laid out contiguously', () => {
    const { src, base } = source();
    const { pt: dst, sink, base: dbase } = fixture(true);
    ok(dst, () => dst.copyFrom('test', src, base + P, 4n * P, { iova: dbase, ...RW }));
    expect(dst.areas).toEqual([
      { iova: dbase, last: dbase + P - 1n, phys: 0x10_0000_0000n + P, read: true, write: true },
      { iova: dbase + P, last: dbase + 2n * P - 1n, phys: 0x20_0000_0000n, read: true, write: true },
      { iova: dbase + 2n * P, last: dbase + 4n * P - 1n, phys: 0x30_0000_0000n, read: true, write: true },
    ]);
    expect(sink!.installed.size).toBe(3);
    // Each slice is its own area: unmapping part of the copy is a split.
    expectFail(dst, 'ENOENT', () => dst.unmap('test', dbase, 3n * P));
    expect(dst.unmap('test', dbase, 4n * P)).toBe(4n * P);
  });

  test('EPERM for a writable copy of a read-only source; after the destination checks', () => {
    const { src, base } = source();
    const dst = new IoPagetable();
    mapFixed(dst, 0n, P, 0n);
    expectFail(dst, 'EPERM', () => dst.copyFrom('test', src, base + 8n * P, P, { iova: P, ...RW }));
    expectFail(dst, 'EEXIST', () => dst.copyFrom('test', src, base + 8n * P, P, { iova: 0n, ...RW }));
    expect(ok(dst, () => dst.copyFrom('test', src, base + 8n * P, P, { iova: P, read: true, write: false }))).toBe(P);
  });

  test('automatic destination IOVA is aligned by the first slice phys', () => {
    const src = new IoPagetable();
    mapFixed(src, 0x4000_0000n, 4n << 20n, 0x8000_0000n);
    const dst = new IoPagetable();
    dst.addReserved('test', {}, [{ start: 0n, last: (1n << 20n) - 1n }]);
    // 2 MiB from phys + 0x3000: only 4 KiB alignment, so the first fit right after the reserved range.
    expect(dst.copyFrom('test', src, 0x4000_3000n, 2n << 20n, RW)).toBe(1n << 20n);
    // 2 MiB from a 2 MiB-aligned phys: the next 2 MiB-aligned hole.
    expect(dst.copyFrom('test', src, 0x4000_0000n, 2n << 20n, RW)).toBe(4n << 20n);
    expect(dst.areas.map((a) => a.phys)).toEqual([0x8000_3000n, 0x8000_0000n]);
  });

  test('EINVAL when a slice is misaligned for the destination alignment', () => {
    const src = new IoPagetable();
    mapFixed(src, 0n, 0x800n, 0x10000n);
    mapFixed(src, 0x800n, 0x800n, 0x20000n);
    mapFixed(src, 0x1000n, 0x1000n, 0x30800n);
    const { pt: dst, base } = fixture(true);
    // Total length and dst iova are fine; the slices are not.
    const e = expectFail(dst, 'EINVAL', () => dst.copyFrom('test', src, 0n, P, { iova: base, ...RW }));
    expect(e.message).toMatch(/multiples of the IOVA alignment/);
    expectFail(dst, 'EINVAL', () => dst.copyFrom('test', src, 0x1000n, P, { iova: base, ...RW }));
  });

  test('all or nothing: ENOMEM on a later slice removes the earlier ones', () => {
    const { src, base } = source();
    const { pt: dst, sink, base: dbase } = fixture(true);
    ok(dst, () => mapFixed(dst, dbase + 100n * P, P));
    sink!.failAfter(3);
    expectFail(dst, 'ENOMEM', () => dst.copyFrom('test', src, base, 6n * P, { iova: dbase, ...RW }));
    expect(sink!.contents()).toEqual(dst.areas);
    expect(dst.areas).toHaveLength(1);
  });

  test('copy within the same table, automatic IOVA', () => {
    const { src, base } = source();
    const iova = src.copyFrom('test', src, base, 6n * P, RW);
    expect(iova).not.toBe(base);
    expect(src.areas).toHaveLength(7);
    expect(src.slices(iova, iova + 6n * P - 1n)?.map((s) => s.area.phys)).toEqual([0x10_0000_0000n, 0x20_0000_0000n, 0x30_0000_0000n]);
  });
});

describe('reserved ranges and iova ranges', () => {
  test('overlapping owners, touching ranges, ranges at both ends', () => {
    const pt = new IoPagetable();
    const a = {};
    const b = {};
    pt.addReserved('test', a, [{ start: 0n, last: 9n }, { start: 100n, last: 199n }]);
    pt.addReserved('test', b, [{ start: 150n, last: 299n }, { start: 300n, last: 399n }, { start: U64_MAX, last: U64_MAX }]);
    expect(pt.iovaRanges().ranges).toEqual([
      { start: 10n, last: 99n },
      { start: 400n, last: U64_MAX - 1n },
    ]);
    pt.removeReserved(a);
    expect(pt.iovaRanges().ranges).toEqual([
      { start: 0n, last: 149n },
      { start: 400n, last: U64_MAX - 1n },
    ]);
    pt.removeReserved(b);
    pt.removeReserved(b);
    expect(pt.iovaRanges().ranges).toEqual([{ start: 0n, last: U64_MAX }]);
  });

  test('a reserved range covering everything leaves no range', () => {
    const pt = new IoPagetable();
    pt.addReserved('test', {}, [{ start: 0n, last: U64_MAX }]);
    expect(pt.iovaRanges().ranges).toEqual([]);
    expectFail(pt, 'ENOSPC', () => mapAuto(pt, P));
    expectFail(pt, 'EINVAL', () => mapFixed(pt, 0n, 1n));
  });

  test('addReserved: EINVAL start > last, single byte fine, EADDRINUSE vs areas and allowed, all or nothing', () => {
    const pt = new IoPagetable();
    const owner = {};
    mapFixed(pt, 10n * P, P);
    pt.setAllowed('test', [{ start: 20n * P, last: 30n * P }]);
    expectFail(pt, 'EINVAL', () => pt.addReserved('test', owner, [{ start: 5n, last: 4n }]));
    expectFail(pt, 'EOVERFLOW', () => pt.addReserved('test', owner, [{ start: 0n, last: U64_MAX + 1n }]));
    expectFail(pt, 'EADDRINUSE', () => pt.addReserved('test', owner, [{ start: P, last: P }, { start: 11n * P - 1n, last: 11n * P - 1n }]));
    expectFail(pt, 'EADDRINUSE', () => pt.addReserved('test', owner, [{ start: P, last: P }, { start: 30n * P, last: 40n * P }]));
    pt.addReserved('test', owner, [{ start: P, last: P }]);
    pt.addReserved('test', owner, [{ start: 11n * P, last: 20n * P - 1n }]);
    expect(pt.iovaRanges().ranges).toEqual([
      { start: 0n, last: P - 1n },
      { start: P + 1n, last: 11n * P - 1n },
      { start: 20n * P, last: U64_MAX },
    ]);
    pt.removeReserved(owner);
    expect(pt.iovaRanges().ranges).toEqual([{ start: 0n, last: U64_MAX }]);
  });

  test('iovaRanges returns fresh objects', () => {
    const pt = new IoPagetable();
    const r = pt.iovaRanges();
    r.ranges[0]!.last = 5n;
    expect(pt.iovaRanges().ranges).toEqual([{ start: 0n, last: U64_MAX }]);
  });
});

describe('setAllowed', () => {
  test('EINVAL for start >= last and for overlapping entries, before EADDRINUSE', () => {
    const pt = new IoPagetable();
    pt.addReserved('test', {}, [{ start: 0n, last: P - 1n }]);
    pt.setAllowed('test', [{ start: 10n * P, last: 20n * P }]);
    expectFail(pt, 'EINVAL', () => pt.setAllowed('test', [{ start: 5n * P, last: 5n * P }]));
    expectFail(pt, 'EINVAL', () => pt.setAllowed('test', [{ start: 6n * P, last: 5n * P }]));
    expectFail(pt, 'EINVAL', () =>
      pt.setAllowed('test', [
        { start: 8n * P, last: 9n * P },
        { start: 2n * P, last: 8n * P },
      ]),
    );
    expectFail(pt, 'EINVAL', () =>
      pt.setAllowed('test', [
        { start: 0n, last: 9n * P },
        { start: 2n * P, last: 3n * P },
        { start: 2n * P, last: 3n * P },
      ]),
    );
    expectFail(pt, 'EADDRINUSE', () => pt.setAllowed('test', [{ start: 0n, last: 9n * P }]));
    expectFail(pt, 'EADDRINUSE', () => pt.setAllowed('test', [{ start: P / 2n, last: P }]));
  });

  test('stored sorted, touching entries allowed, [] clears, IOVA ranges unchanged', () => {
    const pt = new IoPagetable();
    pt.setAllowed('test', [
      { start: 10n * P, last: 20n * P - 1n },
      { start: 2n * P, last: 10n * P - 1n },
    ]);
    expect(pt.allowed).toEqual([
      { start: 2n * P, last: 10n * P - 1n },
      { start: 10n * P, last: 20n * P - 1n },
    ]);
    expect(pt.iovaRanges().ranges).toEqual([{ start: 0n, last: U64_MAX }]);
    // 8P aligned to 8P: [8P, 16P-1] straddles the two touching entries.
    expect(mapAuto(pt, 8n * P, 0n)).toBe(8n * P);
    expectFail(pt, 'ENOSPC', () => mapAuto(pt, 8n * P, 0n));
    pt.setAllowed('test', []);
    expect(pt.allowed).toEqual([]);
  });

  test('does not keep references to the caller array', () => {
    const pt = new IoPagetable();
    const ranges = [{ start: P, last: 2n * P }];
    pt.setAllowed('test', ranges);
    ranges[0]!.last = 100n * P;
    expect(pt.allowed).toEqual([{ start: P, last: 2n * P }]);
  });
});

describe('addDomain / removeDomain', () => {
  const FULL = { start: 0n, last: U64_MAX };

  test('EEXIST for the same sink twice; EINVAL for bad page sizes and apertures', () => {
    const { pt, sink } = fixture(true);
    expectFail(pt, 'EEXIST', () => pt.addDomain('test', sink!, { pageSize: P, aperture: FULL }));
    for (const pageSize of [0n, 3n, 3n * P, -P]) {
      expectFail(pt, 'EINVAL', () => pt.addDomain('test', new FakeSink(), { pageSize, aperture: FULL }));
    }
    expectFail(pt, 'EINVAL', () => pt.addDomain('test', new FakeSink(), { pageSize: 2n * P, aperture: FULL }));
    expectFail(pt, 'EINVAL', () => pt.addDomain('test', new FakeSink(), { pageSize: P, aperture: { start: 10n, last: 9n } }));
    expectFail(pt, 'EINVAL', () => pt.addDomain('test', new FakeSink(), { pageSize: P, aperture: { start: 0n, last: U64_MAX + 1n } }));
  });

  test('the alignment takes the largest page size', () => {
    const pt = new IoPagetable();
    const s1 = new FakeSink();
    const s2 = new FakeSink();
    pt.addDomain('test', s1, { pageSize: 2048n, aperture: FULL });
    expect(pt.alignment).toBe(2048n);
    pt.addDomain('test', s2, { pageSize: 512n, aperture: FULL });
    expect(pt.alignment).toBe(2048n);
    expect(pt.domains).toEqual([s1, s2]);
    pt.removeDomain(s1);
    expect(pt.alignment).toBe(512n);
    expect(pt.iovaRanges().alignment).toBe(512n);
  });

  test('EADDRINUSE when the alignment grows over a misaligned iova, length or phys', () => {
    for (const [iova, length, phys] of [
      [0x800n, P, 0n],
      [0n, P + 0x800n, 0n],
      [0n, P, 0x800n],
    ] as const) {
      const pt = new IoPagetable();
      mapFixed(pt, 2n * P, P, 0n);
      mapFixed(pt, APSTART + iova, length, phys);
      const sink = new FakeSink();
      expectFail(pt, 'EADDRINUSE', () => pt.addDomain('test', sink, { pageSize: P, aperture: FULL }));
      expect(sink.installed.size).toBe(0);
    }
  });

  test('EINVAL for a too large alignment comes before EADDRINUSE', () => {
    const pt = new IoPagetable();
    mapFixed(pt, 1n, 1n, 0n);
    expectFail(pt, 'EINVAL', () => pt.addDomain('test', new FakeSink(), { pageSize: 2n * P, aperture: FULL }));
  });

  test('EADDRINUSE when an area or an allowed range lies outside the aperture', () => {
    const pt = new IoPagetable();
    mapFixed(pt, APSTART - P, P, 0n);
    const aperture = { start: APSTART, last: APLAST };
    expectFail(pt, 'EADDRINUSE', () => pt.addDomain('test', new FakeSink(), { pageSize: P, aperture }));
    pt.unmap('test', 0n, U64_MAX);
    mapFixed(pt, APLAST + 1n, P, 0n);
    expectFail(pt, 'EADDRINUSE', () => pt.addDomain('test', new FakeSink(), { pageSize: P, aperture }));
    pt.unmap('test', 0n, U64_MAX);
    pt.setAllowed('test', [{ start: APLAST - P, last: APLAST + P }]);
    expectFail(pt, 'EADDRINUSE', () => pt.addDomain('test', new FakeSink(), { pageSize: P, aperture }));
    pt.setAllowed('test', [{ start: APLAST - P, last: APLAST }]);
    pt.addDomain('test', new FakeSink(), { pageSize: P, aperture });
  });

  test('fills the existing areas', () => {
    const pt = new IoPagetable();
    mapFixed(pt, APSTART, P);
    mapFixed(pt, APSTART + 4n * P, 2n * P);
    const sink = new FakeSink();
    ok(pt, () => pt.addDomain('test', sink, { pageSize: P, aperture: { start: APSTART, last: APLAST } }));
    expect(sink.contents()).toEqual(pt.areas);
    expect(sink.installed.size).toBe(2);
  });

  test('ENOMEM while filling: sink left empty, no reservation, alignment back', () => {
    const { pt, sink: first, base } = fixture(true);
    for (let i = 0n; i < 5n; i++) mapFixed(pt, base + i * P, P);
    pt.removeDomain(first!);
    expect(pt.alignment).toBe(1n);
    const sink = new FakeSink();
    sink.failAfter(4);
    const err = expectFail(pt, 'ENOMEM', () => pt.addDomain('test', sink, { pageSize: P, aperture: { start: APSTART, last: APLAST } }));
    expect(err.code).toBe(12);
    expect(sink.installed.size).toBe(0);
    expect(pt.alignment).toBe(1n);
    expect(pt.iovaRanges().ranges).toEqual([{ start: 0n, last: U64_MAX }]);
    expect(pt.domains).toEqual([]);
    // The sink is not attached, so its aperture does not limit fixed maps.
    mapFixed(pt, 0n, 1n, 0n);
  });

  test('ENOMEM rollback keeps what the sink owner had reserved before', () => {
    const pt = new IoPagetable();
    mapFixed(pt, APSTART, P);
    const sink = new FakeSink();
    pt.addReserved('test', sink, [{ start: 5n, last: 5n }]);
    sink.failAfter(1);
    expectFail(pt, 'ENOMEM', () => pt.addDomain('test', sink, { pageSize: P, aperture: { start: APSTART, last: APLAST } }));
    expect(pt.iovaRanges().ranges).toEqual([
      { start: 0n, last: 4n },
      { start: 6n, last: U64_MAX },
    ]);
  });

  test('removeDomain widens the ranges, lowers the alignment and does not unmap', () => {
    const { pt, sink, base } = fixture(true);
    mapFixed(pt, base, P);
    pt.removeDomain(sink!);
    expect(pt.domains).toEqual([]);
    expect(pt.alignment).toBe(1n);
    expect(pt.iovaRanges()).toEqual({ ranges: [{ start: 0n, last: U64_MAX }], alignment: 1n });
    expect(sink!.installed.size).toBe(1);
    // Later maps no longer reach the removed domain, and the whole space is usable again.
    mapFixed(pt, 0n, 1n, 0n);
    expect(sink!.installed.size).toBe(1);
    pt.removeDomain(sink!);
    expect(pt.areas).toHaveLength(2);
  });

  test('with two domains, removing one keeps the other one\'s reservations', () => {
    const { pt, sink } = fixture(true);
    const s2 = new FakeSink();
    pt.addDomain('test', s2, { pageSize: 512n, aperture: { start: P, last: U64_MAX - P } });
    pt.removeDomain(sink!);
    expect(pt.iovaRanges()).toEqual({ ranges: [{ start: P, last: U64_MAX - P }], alignment: 512n });
  });
});

describe('addAlignment / removeAlignment', () => {
  test('errnos: EEXIST, EINVAL, EADDRINUSE', () => {
    const pt = new IoPagetable();
    const owner = {};
    mapFixed(pt, 0x800n, 0x800n, 0n);
    pt.addAlignment('test', owner, 2048n);
    expect(pt.alignment).toBe(2048n);
    expectFail(pt, 'EEXIST', () => pt.addAlignment('test', owner, 2048n));
    for (const a of [0n, 3n, -2n, 6144n]) expectFail(pt, 'EINVAL', () => pt.addAlignment('test', {}, a));
    expectFail(pt, 'EINVAL', () => pt.addAlignment('test', {}, 2n * P));
    expectFail(pt, 'EADDRINUSE', () => pt.addAlignment('test', {}, P));
    pt.addAlignment('test', {}, 1024n);
    expect(pt.alignment).toBe(2048n);
  });

  test('max with the domains; removal lowers it; unknown owner is a no-op', () => {
    const pt = new IoPagetable();
    const sink = new FakeSink();
    const access = {};
    pt.addDomain('test', sink, { pageSize: 1024n, aperture: { start: 0n, last: U64_MAX } });
    pt.addAlignment('test', access, P);
    expect(pt.alignment).toBe(P);
    expectFail(pt, 'EINVAL', () => mapFixed(pt, 0n, 2048n, 0n));
    pt.removeAlignment({});
    expect(pt.alignment).toBe(P);
    pt.removeAlignment(access);
    expect(pt.alignment).toBe(1024n);
    mapFixed(pt, 0n, 2048n, 0n);
    pt.removeDomain(sink);
    expect(pt.alignment).toBe(1n);
  });
});

describe('slices', () => {
  const pt = new IoPagetable();
  mapFixed(pt, 0x1000n, 0x1000n, 0xa000n);
  mapFixed(pt, 0x2000n, 0x2000n, 0xb000n);
  mapFixed(pt, 0x5000n, 0x1000n, 0xc000n);
  const [a0, a1, a2] = pt.areas;

  test('one area, exact and cut', () => {
    expect(pt.slices(0x1000n, 0x1fffn)).toEqual([{ area: a0, start: 0x1000n, last: 0x1fffn }]);
    expect(pt.slices(0x1100n, 0x1100n)).toEqual([{ area: a0, start: 0x1100n, last: 0x1100n }]);
    expect(pt.slices(0x5fffn, 0x5fffn)).toEqual([{ area: a2, start: 0x5fffn, last: 0x5fffn }]);
  });

  test('contiguous areas', () => {
    expect(pt.slices(0x1800n, 0x2fffn)).toEqual([
      { area: a0, start: 0x1800n, last: 0x1fffn },
      { area: a1, start: 0x2000n, last: 0x2fffn },
    ]);
    expect(pt.slices(0x1fffn, 0x2000n)?.map((s) => s.area)).toEqual([a0, a1]);
  });

  test('holes and empty ranges give undefined', () => {
    expect(pt.slices(0x0fffn, 0x1000n)).toBeUndefined();
    expect(pt.slices(0x3fffn, 0x4000n)).toBeUndefined();
    expect(pt.slices(0x2000n, 0x5000n)).toBeUndefined();
    expect(pt.slices(0x4000n, 0x4fffn)).toBeUndefined();
    expect(pt.slices(0x6000n, 0x6000n)).toBeUndefined();
    expect(pt.slices(0x1001n, 0x1000n)).toBeUndefined();
  });
});

describe('snapshots', () => {
  test('areas and domains getters are frozen snapshots', () => {
    const pt = new IoPagetable();
    mapFixed(pt, 0n, P, 0n);
    const areas = pt.areas;
    const domains = pt.domains;
    expect(Object.isFrozen(areas)).toBe(true);
    expect(Object.isFrozen(areas[0])).toBe(true);
    expect(Object.isFrozen(pt.allowed)).toBe(true);
    expect(pt.areas).toBe(areas); // cached until the next change
    mapFixed(pt, P, P, 0n);
    pt.addDomain('test', new FakeSink(), { pageSize: P, aperture: { start: 0n, last: U64_MAX } });
    expect(areas).toHaveLength(1);
    expect(pt.areas).toHaveLength(2);
    expect(domains).toHaveLength(0);
    expect(pt.domains).toHaveLength(1);
  });
});
