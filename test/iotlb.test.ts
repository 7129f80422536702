/**
 * IOTLB tests (issue 2, item 4). The owner thread's translator caches translations per
 * (rid, pasid, 4 KiB page); these tests drive it through the public API only and check, against
 * the reference of test/reference-walk.ts:
 * - repeated translations hit (stats), a leaf bigger than 4 KiB keeps its size and offset on a hit,
 *   and a cached read grant never answers for a write the leaf does not allow;
 * - after unmap / detach / replace / destroy(hwpt) / fd.close / remap to another output, the next
 *   translation returns the new result, never the cached one, for RID and PASID attachments; an
 *   unmap of a HWPT shared by two devices invalidates both;
 * - with a 2-entry IOTLB (every fill evicts) results still match the reference;
 * - an entry of one (rid, pasid) never answers for another, including IOVAs past 2^57 whose page
 *   numbers no longer fit the key.
 */
import { describe, test, expect } from 'vitest';
import { Iommu } from '../src/index';
import type { DeviceFd } from '../src/iommufd/device';
import type { IommuFd } from '../src/iommufd/iommufd';
import { PAGE, MiB2, GiB, READ, WRITE, EXEC, NO_PASID, Rig, RefSpace, Rng, area, type RefArea } from './reference-walk';

/** Counter deltas of `iommu` while `body` runs. */
function countersDuring(iommu: Iommu, body: () => void): { hits: number; misses: number; faults: number } {
  const before = iommu.stats();
  body();
  const after = iommu.stats();
  return { hits: after.hits - before.hits, misses: after.misses - before.misses, faults: after.faults - before.faults };
}

/**
 * One device (20-bit PASIDs) bound to an FD with two IOASes that map the same IOVAs to different
 * outputs, each with a PASID-capable HWPT: enough to attach, replace and detach either way.
 */
function fixture(opts: { iotlbEntries?: number } = {}) {
  const rig = new Rig(Iommu.createSync({ addressWidth: 48, ...opts }));
  const fd = rig.iommu.open();
  const dev = rig.device('00:03.0');
  dev.bind(fd);
  const ioasA = fd.ioasAlloc();
  const ioasB = fd.ioasAlloc();
  const A = new RefSpace('A');
  const B = new RefSpace('B');
  for (const [ioas, space, phys] of [[ioasA, A, 0x10_0000_0000n], [ioasB, B, 0x20_0000_0000n]] as const) {
    rig.map(fd, ioas, space, area(X_4K, 4n * PAGE, phys + X_4K));
    rig.map(fd, ioas, space, area(X_2M, MiB2, phys + X_2M));
    rig.map(fd, ioas, space, area(X_1G, GiB, phys + X_1G));
  }
  const hwptA = fd.hwptAlloc({ devId: dev.devId!, ptId: ioasA, pasid: true });
  const hwptB = fd.hwptAlloc({ devId: dev.devId!, ptId: ioasB, pasid: true });
  const pasid = fd.pasidAlloc({ pasid: 0x1234 });
  return { rig, fd, dev, ioasA, ioasB, A, B, hwptA, hwptB, pasid };
}

const X_4K = 0x1234_5000n; // four 4K leaves
const X_2M = 0x4060_0000n; // one 2M leaf
const X_1G = 0x1_c000_0000n; // one 1G leaf
/** Bytes in each kind of leaf, at varied offsets. */
const PROBES = [X_4K + 0x123n, X_4K + 3n * PAGE + 0xfffn, X_2M, X_2M + 0x1f_fabcn, X_1G + 0x2345_6789n, X_1G + GiB - 1n];

describe('hits', () => {
  test('a repeated translation hits; faults are never cached', () => {
    const { rig, dev, hwptA, A } = fixture();
    rig.attach(dev, hwptA, A);
    expect(countersDuring(rig.iommu, () => rig.check(dev.rid, NO_PASID, X_4K, READ))).toEqual({ hits: 0, misses: 1, faults: 0 });
    expect(countersDuring(rig.iommu, () => {
      for (let i = 0n; i < 5n; i++) rig.check(dev.rid, NO_PASID, X_4K + i * 0x321n, READ);
    })).toEqual({ hits: 5, misses: 0, faults: 0 });
    // One entry grants what the leaf grants: a write to the same page hits too.
    expect(countersDuring(rig.iommu, () => rig.check(dev.rid, NO_PASID, X_4K + 8n, WRITE))).toEqual({ hits: 1, misses: 0, faults: 0 });
    expect(countersDuring(rig.iommu, () => {
      rig.check(dev.rid, NO_PASID, X_4K + 4n * PAGE, READ);
      rig.check(dev.rid, NO_PASID, X_4K + 4n * PAGE, READ);
    })).toEqual({ hits: 0, misses: 2, faults: 2 });
  });

  test('2M and 1G leaves: other 4K pages of the leaf keep the leaf size and their own offset, and hit once filled', () => {
    const { rig, dev, hwptA, A } = fixture();
    rig.attach(dev, hwptA, A);
    for (const [leaf, size] of [[X_2M, MiB2], [X_1G, GiB]] as const) {
      const first = rig.check(dev.rid, NO_PASID, leaf + 0x10n, READ);
      expect(first.size).toBe(size);
      for (const offset of [PAGE + 0x20n, size / 2n + 0x30n, size - 1n]) {
        const other = leaf + offset;
        expect(rig.check(dev.rid, NO_PASID, other, WRITE)).toMatchObject({ ok: true, size, phys: 0x10_0000_0000n + other });
        const again = countersDuring(rig.iommu, () => {
          expect(rig.check(dev.rid, NO_PASID, other ^ 0xfffn, READ)).toMatchObject({ ok: true, size, phys: 0x10_0000_0000n + (other ^ 0xfffn) });
        });
        expect(again).toEqual({ hits: 1, misses: 0, faults: 0 });
      }
    }
  });

  test('a cached read of a read-only page never grants a write', () => {
    const { rig, fd, dev, ioasA, A, hwptA } = fixture();
    rig.attach(dev, hwptA, A);
    const ro = 0x7000_0000n;
    rig.map(fd, ioasA, A, area(ro, MiB2, 0x30_0000_0000n, { write: false }));
    rig.check(dev.rid, NO_PASID, ro, READ);
    expect(countersDuring(rig.iommu, () => rig.check(dev.rid, NO_PASID, ro + 4n, READ))).toMatchObject({ hits: 1 });
    expect(rig.check(dev.rid, NO_PASID, ro + 4n, WRITE)).toMatchObject({ ok: false, reason: 'permission', level: 1 });
    expect(rig.check(dev.rid, NO_PASID, ro + 4n, READ | EXEC).ok).toBe(true);
  });
});

describe.each([
  { context: 'RID', pasidOf: () => NO_PASID },
  { context: 'PASID', pasidOf: (f: ReturnType<typeof fixture>) => f.pasid },
])('invalidation of a $context attachment', ({ pasidOf }) => {
  /** What each control operation does, and the space the context translates through afterwards. */
  const OPERATIONS: { name: string; run: (f: ReturnType<typeof fixture>, pasid: number) => void }[] = [
    {
      name: 'unmap',
      run: (f) => {
        f.rig.unmap(f.fd, f.ioasA, f.A, X_4K, 4n * PAGE);
        f.rig.unmap(f.fd, f.ioasA, f.A, X_2M, MiB2);
        f.rig.unmap(f.fd, f.ioasA, f.A, X_1G, GiB);
      },
    },
    { name: 'detach', run: (f, pasid) => f.rig.detach(f.dev, pasid) },
    { name: 'replace', run: (f, pasid) => f.rig.attach(f.dev, f.hwptB, f.B, pasid) },
    {
      name: 'destroy(hwpt), then a new HWPT (which may reuse its domain slot)',
      run: (f, pasid) => {
        f.rig.detach(f.dev, pasid);
        f.fd.destroy(f.hwptA);
        const again = f.fd.hwptAlloc({ devId: f.dev.devId!, ptId: f.ioasB, pasid: true });
        f.rig.attach(f.dev, again, f.B, pasid);
      },
    },
    {
      name: 'fd.close, then a new FD with other outputs',
      run: (f, pasid) => {
        f.fd.close();
        f.rig.ref.detachAll(f.dev.rid);
        for (const iova of PROBES) f.rig.check(f.dev.rid, pasid, iova, READ, 'closed');
        const fd2 = f.rig.iommu.open();
        const ioas = fd2.ioasAlloc();
        const C = new RefSpace('C');
        for (const a of f.A.areas) f.rig.map(fd2, ioas, C, { ...a, phys: a.phys + 0x100_0000_0000n });
        f.dev.bind(fd2);
        const hwpt = fd2.hwptAlloc({ devId: f.dev.devId!, ptId: ioas, pasid: true });
        if (pasid !== NO_PASID) fd2.pasidAlloc({ pasid });
        f.rig.attach(f.dev, hwpt, C, pasid);
      },
    },
    {
      name: 'remap of the same IOVAs to other outputs',
      run: (f) => {
        const old: RefArea[] = [...f.A.areas];
        for (const a of old) f.rig.unmap(f.fd, f.ioasA, f.A, a.iova, a.length);
        for (const a of old) f.rig.map(f.fd, f.ioasA, f.A, { ...a, phys: a.phys + 0x200_0000_0000n + MiB2 });
      },
    },
  ];

  test.each(OPERATIONS)('$name: the next translation is the new result', ({ run }) => {
    const f = fixture();
    const pasid = pasidOf(f);
    f.rig.attach(f.dev, f.hwptA, f.A, pasid);
    // Fill the IOTLB, and prove it is filled: the second round is all hits.
    for (const iova of PROBES) f.rig.check(f.dev.rid, pasid, iova, READ, 'fill');
    expect(countersDuring(f.rig.iommu, () => {
      for (const iova of PROBES) f.rig.check(f.dev.rid, pasid, iova, READ, 'cached');
    })).toEqual({ hits: PROBES.length, misses: 0, faults: 0 });
    run(f, pasid);
    for (const access of [READ, WRITE]) {
      for (const iova of PROBES) f.rig.check(f.dev.rid, pasid, iova, access, 'after');
    }
  });
});

describe('shared HWPTs', () => {
  test('two devices on one HWPT (RID and PASID): an unmap invalidates both, a remap reaches both', () => {
    const { rig, fd, dev, ioasA, A, hwptA, pasid } = fixture();
    const second = rig.device('00:03.1');
    second.bind(fd);
    rig.attach(dev, hwptA, A);
    rig.attach(second, hwptA, A);
    rig.attach(second, hwptA, A, pasid);
    const contexts: [DeviceFd, number][] = [[dev, NO_PASID], [second, NO_PASID], [second, pasid]];
    const all = (label: string): void => {
      for (const [d, p] of contexts) for (const iova of PROBES) rig.check(d.rid, p, iova, READ, label);
    };
    all('fill');
    all('cached');
    rig.unmap(fd, ioasA, A, X_2M, MiB2);
    all('after unmap');
    rig.map(fd, ioasA, A, area(X_2M, MiB2, 0x77_0000_0000n));
    all('after remap');
    // Detaching one device leaves the other translating.
    rig.detach(second);
    all('after detaching one');
    expect(rig.check(dev.rid, NO_PASID, X_2M + 5n, READ)).toMatchObject({ ok: true, phys: 0x77_0000_0005n });
  });
});

describe('a 2-entry IOTLB: constant evictions', () => {
  test('random addresses over several contexts and control changes match the reference', () => {
    const { rig, fd, dev, ioasA, ioasB, A, B, hwptA, hwptB, pasid } = fixture({ iotlbEntries: 2 });
    const other = rig.device('00:04.0');
    other.bind(fd);
    rig.attach(dev, hwptA, A);
    rig.attach(dev, hwptB, B, pasid);
    rig.attach(other, ioasB, B);
    const rng = new Rng(0x2e27);
    const contexts: [number, number][] = [[dev.rid, NO_PASID], [dev.rid, pasid], [other.rid, NO_PASID], [other.rid, pasid]];
    const recent: bigint[] = [];
    for (let i = 0; i < 12_000; i++) {
      const [rid, p] = rng.pick(contexts);
      const space = rig.ref.context(rid, p) ?? A;
      const a = rng.pick(space.areas);
      const iova = recent.length && rng.chance(0.5) ? rng.pick(recent) : a.iova + rng.big(a.length);
      rig.check(rid, p, iova, rng.pick([READ, WRITE, EXEC]), `step ${i}`);
      recent.push(iova);
      if (recent.length > 6) recent.shift();
      if (i % 1000 === 999) {
        // Move one area of A to another output and back, by unmap and map.
        const moved = rng.pick(A.areas);
        rig.unmap(fd, ioasA, A, moved.iova, moved.length);
        rig.map(fd, ioasA, A, { ...moved, phys: moved.phys ^ 0x1_0000_0000n });
      }
    }
    const s = rig.iommu.stats();
    expect(s.hits).toBeGreaterThan(300); // a repeat of one of the last two pages still hits
    expect(s.misses).toBeGreaterThan(5000);
  });
});

describe('an entry of one (rid, pasid) never answers for another', () => {
  /** Devices on one bus whose RIDs differ in bit 0 and bit 3, each attached to its own outputs. */
  function neighbours(iotlbEntries: number) {
    const rig = new Rig(Iommu.createSync({ addressWidth: 57, iotlbEntries }));
    const fd: IommuFd = rig.iommu.open();
    const devs = ['00:04.0', '00:04.1', '00:05.0'].map((bdf) => rig.device(bdf));
    const spaces = devs.map((_, i) => new RefSpace(`dev${i}`));
    const hwpts: number[] = [];
    devs.forEach((d, i) => {
      d.bind(fd);
      const ioas = fd.ioasAlloc();
      rig.map(fd, ioas, spaces[i]!, area(X_4K, PAGE, 0x40_0000_0000n * BigInt(i + 1) + X_4K));
      hwpts.push(fd.hwptAlloc({ devId: d.devId!, ptId: ioas, pasid: true }));
      rig.attach(d, hwpts[i]!, spaces[i]!);
    });
    const pasid = fd.pasidAlloc({ pasid: 1 });
    const pasidSpace = new RefSpace('pasid');
    const ioas = fd.ioasAlloc();
    rig.map(fd, ioas, pasidSpace, area(X_4K, PAGE, 0x7_0000_0000n + X_4K));
    rig.attach(devs[0]!, fd.hwptAlloc({ devId: devs[0]!.devId!, ptId: ioas, pasid: true }), pasidSpace, pasid);
    return { rig, devs, pasid };
  }

  test.each([2, 4096])('RID vs PASID vs other RIDs on the same page (IOTLB of %i entries)', (entries) => {
    const { rig, devs, pasid } = neighbours(entries);
    const requesters: [number, number][] = [
      [devs[0]!.rid, NO_PASID], [devs[0]!.rid, pasid], [devs[1]!.rid, NO_PASID], [devs[1]!.rid, pasid],
      [devs[2]!.rid, NO_PASID], [devs[2]!.rid, pasid], [devs[0]!.rid + 2, NO_PASID],
    ];
    for (let round = 0; round < 3; round++) {
      for (const [rid, p] of requesters) {
        for (const [rid2, p2] of requesters) {
          rig.check(rid, p, X_4K + 0x10n, READ, 'fill');
          rig.check(rid2, p2, X_4K + 0x20n, READ, 'then');
        }
      }
    }
  });

  test.each([2, 4096])('IOVAs at and past 2^57 with the page number of a cached entry are beyond-width (IOTLB of %i entries)', (entries) => {
    const { rig, devs, pasid } = neighbours(entries);
    for (const high of [57n, 58n, 60n, 61n, 63n]) {
      for (const d of devs) {
        for (const p of [NO_PASID, pasid]) {
          for (const filler of devs) {
            rig.check(filler.rid, NO_PASID, X_4K, READ, 'fill');
            rig.check(filler.rid, pasid, X_4K, READ, 'fill');
            expect(rig.check(d.rid, p, (1n << high) + X_4K + 8n, READ, `2^${high}`).ok).toBe(false);
          }
        }
      }
    }
  });
});
