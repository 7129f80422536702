// hwptInvalidate's address entries (src/iommufd/invalidate.ts) take numbers or bigints: numbers
// whose range ends below 2^53 are computed as doubles, everything else as bigints. Both must name
// the same pages and fail alike; these checks compare each form with bigint arithmetic done here,
// at the engine calls (which pages) and at the IOTLB (which cached translations go).
import { describe, expect, test } from 'vitest';
import { Access, InvalidateError, Iommu, NO_PASID, type InvalidateEntry } from '../src/index';
import { engineOf } from './testing';

const RAM = 0x8000_0000n;
const PAGES = 16;
/** Pages of IOVA 0x10_0000.. map to RAM + 0x10_0000 + i * 4 KiB (+ 0x40_0000 after `move`). */
const IOVA = 0x10_0000;

function machine() {
  const iommu = Iommu.createSync({ ram: { base: RAM, bytes: 8 << 20 }, shared: false });
  const view = new DataView(iommu.ram.buffer, iommu.ram.byteOffset, iommu.ram.byteLength);
  const put = (gpa: bigint, v: bigint) => view.setBigUint64(Number(gpa - RAM), v, true);
  const leaf = (i: number, moved: boolean) => (((RAM + 0x10_0000n + BigInt(i) * 0x1000n + (moved ? 0x40_0000n : 0n)) >> 12n) << 10n) | 0xd7n;
  // Sv39: root at RAM -> level 1 at RAM + 4K -> level 0 at RAM + 8K, whose entries 256.. map IOVA 1 MiB..
  put(RAM, (((RAM + 0x1000n) >> 12n) << 10n) | 1n);
  put(RAM + 0x1000n, (((RAM + 0x2000n) >> 12n) << 10n) | 1n);
  const pte = (i: number) => RAM + 0x2000n + BigInt(256 + i) * 8n;
  for (let i = 0; i < PAGES; i++) put(pte(i), leaf(i, false));
  const dev = iommu.addDevice({ bdf: '00:01.0' });
  const fd = iommu.open();
  const devId = dev.bind(fd);
  const hwpt = fd.hwptAlloc({ devId, table: { format: 'sv39', root: RAM } });
  dev.attach(hwpt);
  const phys = (i: number) => iommu.translate(dev.rid, NO_PASID, IOVA + i * 4096, Access.Read).phys;
  /** Caches every page, then moves every page in the table (cached translations keep the old ones). */
  const warmAndMove = () => {
    for (let i = 0; i < PAGES; i++) phys(i);
    for (let i = 0; i < PAGES; i++) put(pte(i), leaf(i, true));
  };
  /** The pages whose cached (old) translation is gone. */
  const dropped = () => {
    const out: number[] = [];
    for (let i = 0; i < PAGES; i++) if (phys(i) === RAM + 0x10_0000n + BigInt(i) * 0x1000n + 0x40_0000n) out.push(i);
    for (let i = 0; i < PAGES; i++) put(pte(i), leaf(i, false));
    fd.hwptInvalidate(hwpt, [{}]);
    return out;
  };
  return { iommu, fd, hwpt, warmAndMove, dropped };
}

/** Records the page ranges hwptInvalidate hands the engine (still calling it). */
function spyEngine(iommu: Iommu): string[] {
  const engine = engineOf(iommu);
  const calls: string[] = [];
  for (const name of ['invalidatePages', 'invalidateScan', 'invalidateLeafScan'] as const) {
    const real = engine[name].bind(engine) as (...a: unknown[]) => unknown;
    (engine as unknown as Record<string, unknown>)[name] = (...a: unknown[]) => {
      const [first, last] = a.slice(-2) as [number, number];
      calls.push(`${name} ${BigInt(first)}..${BigInt(last)}`);
      return real(...a);
    };
  }
  return calls;
}

/** Page ranges `[iova, iova + length)` names, in bigints. */
const pagesOf = (iova: bigint, length: bigint) => `${iova >> 12n}..${(iova + length - 1n) >> 12n}`;

const S = 2 ** 53; // the first integer a number does not hold exactly next to its neighbours
/** [iova, length] cases at the page and 2^53 boundaries; every one is valid as bigints. */
const CASES: [bigint, bigint][] = [
  [0n, 1n], [4095n, 1n], [4095n, 2n], [0x1000n, 0x1000n], [0x1fffn, 2n], [0x5007n, 0x3000n],
  [BigInt(S) - 4096n, 4096n], [BigInt(S) - 4096n, 4095n], [BigInt(S) - 4096n, 4097n],
  [BigInt(S) - 1n, 1n], [BigInt(S) - 1n, 2n], [BigInt(S) - 2n, 2n], [BigInt(S) - 2n, 3n],
  [0n, BigInt(S) - 1n], [1n, BigInt(S) - 1n], [4096n, BigInt(S) - 4096n], [4096n, BigInt(S) - 4095n],
];

describe('hwptInvalidate: number and bigint entries', () => {
  test('every form of an entry hands the engine the pages bigint arithmetic names', () => {
    const { iommu, fd, hwpt } = machine();
    const calls = spyEngine(iommu);
    for (const [iova, length] of CASES) {
      const forms: InvalidateEntry[] = [{ iova, length }];
      // Numbers only where they are exact: a safe-integer iova and length.
      if (iova <= BigInt(Number.MAX_SAFE_INTEGER)) forms.push({ iova: Number(iova), length });
      if (length <= BigInt(Number.MAX_SAFE_INTEGER)) forms.push({ iova, length: Number(length) });
      if (iova <= BigInt(Number.MAX_SAFE_INTEGER) && length <= BigInt(Number.MAX_SAFE_INTEGER)) forms.push({ iova: Number(iova), length: Number(length) });
      for (const entry of forms) {
        for (const leaf of [false, true]) {
          calls.length = 0;
          expect(fd.hwptInvalidate(hwpt, [{ ...entry, leaf }])).toBe(1);
          const pages = pagesOf(iova, length);
          // One device attached: a probe of the pages when they are few, else a scan (no superpage
          // cached, so a leaf entry's leaf scan reports nothing done first).
          const [first, last] = pages.split('..').map(BigInt) as [bigint, bigint];
          const want = last - first < 64n ? `invalidatePages ${pages}` : `invalidateScan ${pages}`;
          expect(calls, `${String(entry.iova)} + ${String(entry.length)}${leaf ? ' leaf' : ''}`).toEqual(leaf ? [`invalidateLeafScan ${pages}`, want] : [want]);
        }
      }
    }
  });

  test('number and bigint entries drop exactly the cached pages they name', () => {
    const m = machine();
    const base = BigInt(IOVA);
    // [iova, length] relative to IOVA: unaligned starts and ends name every page they touch.
    const ranges: [number, number][] = [[0, 1], [0x1fff, 2], [0x2001, 0x3000], [0xf000, 0x1000], [0x3000, 0xfff]];
    for (const [off, len] of ranges) {
      const want: number[] = [];
      for (let i = Math.floor(off / 4096); i <= Math.floor((off + len - 1) / 4096); i++) want.push(i);
      for (const entry of [{ iova: IOVA + off, length: len }, { iova: base + BigInt(off), length: BigInt(len) }, { iova: IOVA + off, length: BigInt(len) }]) {
        m.warmAndMove();
        expect(m.fd.hwptInvalidate(m.hwpt, [entry])).toBe(1);
        expect(m.dropped(), `${String(entry.iova)} + ${String(entry.length)}`).toEqual(want);
      }
    }
  });

  test('bad number entries fail as their bigint forms do, after the good entries before them', () => {
    const m = machine();
    const bad: [InvalidateEntry, string][] = [
      [{ iova: -1, length: 4096 }, 'EINVAL'],
      [{ iova: IOVA, length: -4096 }, 'EINVAL'],
      [{ iova: IOVA, length: 0 }, 'EINVAL'],
      [{ iova: IOVA + 0.5, length: 4096 }, 'EINVAL'],
      [{ iova: IOVA, length: Number.NaN }, 'EINVAL'],
      [{ iova: IOVA, length: Infinity }, 'EINVAL'],
      [{ iova: S, length: 4096 }, 'EINVAL'], // unsafe below 2^64
      [{ iova: 2 ** 64, length: 4096 }, 'EOVERFLOW'],
      [{ iova: IOVA, length: 2 ** 64 }, 'EOVERFLOW'],
      [{ iova: Number.MAX_SAFE_INTEGER, length: (1n << 64n) - BigInt(Number.MAX_SAFE_INTEGER) + 1n }, 'EOVERFLOW'], // ends at 2^64
      [{ iova: (1n << 64n) - 4096n, length: 4097 }, 'EOVERFLOW'],
      [{ iova: IOVA, length: '4096' as never }, 'EINVAL'],
      [{ iova: IOVA, length: 4096, extra: 1 } as never, 'EOPNOTSUPP'],
    ];
    for (const [entry, errno] of bad) {
      m.warmAndMove();
      // Page 0 by number, page 1 by bigint, the bad entry, then page 2 (never applied).
      const entries = [{ iova: IOVA, length: 4096 }, { iova: BigInt(IOVA + 4096), length: 4096n }, entry, { iova: IOVA + 0x2000, length: 4096 }];
      let error: unknown;
      try {
        m.fd.hwptInvalidate(m.hwpt, entries);
      } catch (e) {
        error = e;
      }
      expect(error, JSON.stringify(entry, (_, v) => (typeof v === 'bigint' ? `${v}n` : v))).toBeInstanceOf(InvalidateError);
      expect((error as InvalidateError).errno).toBe(errno);
      expect((error as InvalidateError).handled).toBe(2);
      expect(m.dropped()).toEqual([0, 1]);
    }
  });

  test('an unknown field is EOPNOTSUPP before any value is looked at; inherited fields are not the entry\'s', () => {
    const { fd, hwpt } = machine();
    const fail = (entry: unknown) => {
      try {
        fd.hwptInvalidate(hwpt, [entry as InvalidateEntry]);
      } catch (e) {
        return (e as InvalidateError).errno;
      }
      return 'ok';
    };
    expect(fail({ iova: -1, length: 0, pasid: 'x', flags: 1 })).toBe('EOPNOTSUPP');
    expect(fail(Object.create({ flags: 1 }, { iova: { value: 0, enumerable: true }, length: { value: 1, enumerable: true } }))).toBe('ok');
    expect(fail(Object.defineProperty({ iova: 0, length: 1 }, 'flags', { value: 1, enumerable: false }))).toBe('ok');
  });
});
