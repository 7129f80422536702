/**
 * Translation tests (issue 2, item 4): the Wasm walk checked against the simple reference of
 * test/reference-walk.ts, which knows nothing of page tables.
 *
 * - the reference itself: its closed-form leaf level equals the literal largest-leaf rule;
 * - every 4 KiB page of mixed mappings (4K runs, 2M and 1G leaves, output misaligned so only 4K
 *   leaves fit, read-only, write-only) over RID and PASID attachments, for Read, Write and Exec;
 * - every fault reason on purpose, with the fault log and the per-reason counters agreeing;
 * - sliding-window sweeps (noble style): maps whose ends sit one page either side of 4K/2M/1G
 *   boundaries and of the top of the 39/48/57-bit width; the bytes just inside and just outside
 *   each end, the leaf sizes, and neighbours left intact by unmap;
 * - a seeded differential test: random map/unmap/attach/detach/replace/destroy/close over two FDs.
 */
import { describe, test, expect, beforeAll } from 'vitest';
import { Iommu, Access, NO_PASID as EXPORTED_NO_PASID, FAULT_REASONS, TranslationOut, IommuError } from '../src/index';
import type { DeviceFd } from '../src/iommufd/device';
import type { IommuFd } from '../src/iommufd/iommufd';
import {
  PAGE, MiB2, GiB, U64_MAX, READ, WRITE, EXEC, PRIV, NO_PASID, REASONS,
  Rig, RefSpace, Rng, area, expectErrno, greedyLeaves, leafLevel, hex, type RefArea, type Reason,
} from './reference-walk';

/** The three accesses every mapped page is checked with. */
const ACCESSES = [READ, WRITE, EXEC] as const;

/** Output addresses: 1 GiB-aligned bases far apart, so every area's output is recognisable. */
const physBase = (n: number): bigint => 0x40_0000_0000n + BigInt(n) * 0x10_0000_0000n;

/** An output address for an area at `iova`: congruent to it modulo 1 GiB, then shifted by `offset`. */
const physLike = (base: bigint, iova: bigint, offset: bigint): bigint => base + (iova % GiB) + offset;

describe('the reference', () => {
  test('restates the contract: access bits, NO_PASID and the fault reasons in order', () => {
    expect(Access).toEqual({ Read: READ, Write: WRITE, Exec: EXEC, Priv: PRIV });
    expect(EXPORTED_NO_PASID).toBe(NO_PASID);
    // Reasons for other table formats may follow; these seven are the engine-managed tables' ones.
    expect(FAULT_REASONS.slice(0, REASONS.length)).toEqual([...REASONS]);
  });

  test('closed-form leaf level equals the literal largest-leaf rule (scaled geometry 1/4/16, exhaustive)', () => {
    const shifts = [0, 2, 4];
    let areas = 0;
    for (let iova = 0n; iova < 40n; iova++) {
      for (let length = 1n; length <= 40n; length++) {
        for (let offset = 0n; offset < 16n; offset++) {
          const a = area(iova, length, 64n + iova + offset);
          for (const leaf of greedyLeaves(a, shifts)) {
            const size = 1n << BigInt(shifts[leaf.level]!);
            for (let x = leaf.iova; x < leaf.iova + size; x++) {
              if (leafLevel(a, x, shifts) !== leaf.level) {
                expect(leafLevel(a, x, shifts), `area ${iova}+${length} -> ${a.phys}, byte ${x}`).toBe(leaf.level);
              }
            }
          }
          areas++;
        }
      }
    }
    expect(areas).toBe(40 * 40 * 16);
  });
});

describe('every mapped page against the reference', () => {
  /** Page starts to probe in `a`: every page, except inside 1 GiB leaves: first, last and 30 random pages. */
  function pagesOf(a: RefArea, rng: Rng): bigint[] {
    const pages: bigint[] = [];
    for (let at = a.iova; at < a.iova + a.length;) {
      if (leafLevel(a, at) === 2) {
        pages.push(at, at + GiB - PAGE);
        for (let i = 0; i < 30; i++) pages.push(at + rng.big(GiB / PAGE) * PAGE);
        at += GiB;
      } else {
        pages.push(at);
        at += PAGE;
      }
    }
    return pages;
  }

  test('4K runs, 2M and 1G leaves, misaligned output, read-only, write-only; RID and PASID; R/W/X', () => {
    const rig = new Rig(Iommu.createSync({ addressWidth: 48 }));
    const fd = rig.iommu.open();
    const ridA = rig.device('00:01.0'); // RID -> A through its auto HWPT
    const ridB = rig.device('00:02.0'); // RID -> B through a PASID-capable HWPT, PASID -> C
    const pasidA = rig.device('00:03.0', 8); // PASID only -> A through a second HWPT
    const [A, B, C] = [new RefSpace('A'), new RefSpace('B'), new RefSpace('C')];
    const [ioasA, ioasB, ioasC] = [fd.ioasAlloc(), fd.ioasAlloc(), fd.ioasAlloc()];

    // A: every kind of run below 1 GiB.
    rig.map(fd, ioasA, A, area(0x1000_3000n, 37n * PAGE, 0x8_0000_5000n)); // a 4K run
    rig.map(fd, ioasA, A, area(0x2_0020_0000n, 3n * MiB2 + 3n * PAGE, 0x40_0060_0000n)); // 2M leaves + 4K tail
    rig.map(fd, ioasA, A, area(0x3_001f_e000n, 2n * PAGE + 2n * MiB2 + 3n * PAGE, 0x13_001f_e000n)); // 4K, 2M, 4K
    rig.map(fd, ioasA, A, area(0x4_0000_0000n, 2n * MiB2, 0x20_0000_1000n)); // aligned IOVA, output off by a page: 4K only
    rig.map(fd, ioasA, A, area(0x5_0000_0000n, MiB2 + PAGE, 0x30_0000_0000n, { write: false })); // read-only 2M + 4K
    rig.map(fd, ioasA, A, area(0x5_4000_0000n, MiB2 + 4n * PAGE, 0x31_0000_0000n, { read: false })); // write-only 2M + 4K
    // B: 1 GiB leaves, one exactly aligned, one entered and left through 2M and 4K leaves.
    rig.map(fd, ioasB, B, area(0x1_4000_0000n, GiB + MiB2 + PAGE, 0x100_4000_0000n)); // 1G, 2M, 4K
    rig.map(fd, ioasB, B, area(0x2_3fdf_f000n, PAGE + MiB2 + GiB + PAGE, 0x101_3fdf_f000n, { write: false })); // 4K, 2M, 1G, 4K
    // C: the same IOVAs as A with other outputs, so a PASID context that leaked into the RID's would show.
    rig.map(fd, ioasC, C, area(0x1000_3000n, 37n * PAGE, 0x9_0000_5000n));
    rig.map(fd, ioasC, C, area(0x2_0020_0000n, 2n * MiB2, 0x50_0020_0000n, { read: false }));

    for (const d of [ridA, ridB, pasidA]) d.bind(fd);
    rig.attach(ridA, ioasA, A);
    const hwptB = fd.hwptAlloc({ devId: ridB.devId!, ptId: ioasB, pasid: true });
    const hwptC = fd.hwptAlloc({ devId: ridB.devId!, ptId: ioasC, pasid: true });
    const hwptA2 = fd.hwptAlloc({ devId: pasidA.devId!, ptId: ioasA, pasid: true });
    const [p1, p2] = [fd.pasidAlloc({ pasid: 0x7_1234 }), fd.pasidAlloc({ pasid: 0x42 })];
    rig.attach(ridB, hwptB, B);
    rig.attach(ridB, hwptC, C, p1);
    rig.attach(pasidA, hwptA2, A, p2);

    const rng = new Rng(0x9a9e5);
    const out = new TranslationOut();
    const contexts: [DeviceFd, number, RefSpace][] = [[ridA, NO_PASID, A], [ridB, NO_PASID, B], [ridB, p1, C], [pasidA, p2, A]];
    for (const [dev, pasid, space] of contexts) {
      for (const a of space.areas) {
        for (const page of pagesOf(a, rng)) {
          const iova = page + rng.big(PAGE);
          const label = `${space.name} page ${hex(page)}`;
          for (const access of ACCESSES) rig.check(dev.rid, pasid, iova, access, label);
          rig.checkInto(out, dev.rid, pasid, Number(iova), READ | PRIV, label);
        }
      }
    }
    expect(rig.checks).toBeGreaterThan(40_000);

    // Spot checks that do not lean on the reference: the 1 GiB leaf, its neighbours, a 4K-only run.
    expect(rig.iommu.translate(ridB.rid, NO_PASID, 0x1_4000_0000n + 0x123n, READ)).toMatchObject({ ok: true, phys: 0x100_4000_0123n, size: GiB, perm: 3 });
    expect(rig.iommu.translate(ridB.rid, NO_PASID, 0x2_3fff_ffffn + GiB, READ)).toMatchObject({ ok: true, phys: 0x101_3fff_ffffn + GiB, size: GiB, perm: 1 });
    expect(rig.iommu.translate(ridB.rid, NO_PASID, 0x2_4000_0000n + GiB, READ)).toMatchObject({ ok: true, size: PAGE });
    expect(rig.iommu.translate(ridA.rid, NO_PASID, 0x4_0010_0000n, WRITE)).toMatchObject({ ok: true, phys: 0x20_0010_1000n, size: PAGE });
    expect(rig.iommu.translate(ridA.rid, NO_PASID, 0x2_0040_0001n, WRITE)).toMatchObject({ ok: true, phys: 0x40_0080_0001n, size: MiB2 });
    expect(rig.iommu.translate(ridB.rid, p1, 0x1000_3000n, READ)).toMatchObject({ ok: true, phys: 0x9_0000_5000n });
  });
});

describe('every fault reason, on purpose', () => {
  interface Request {
    rid: unknown;
    pasid: unknown;
    iova: unknown;
    access: unknown;
    level?: number;
  }

  let rig: Rig;
  let fd: IommuFd;
  /** RID attached to `space`, a PASID-capable device (RID and PASID `pasid` attached), ... */
  let attached: DeviceFd;
  let pasidDev: DeviceFd;
  let narrow: DeviceFd; // 4-bit PASIDs
  let noPasid: DeviceFd; // no PASID support
  let boundOnly: DeviceFd;
  let unbound: DeviceFd;
  let pasid: number;
  let spare: number; // allocated, never attached
  let space: RefSpace;
  let ioas: number;
  const X = 0x12_3456_7000n; // the only page of `space` outside the permission areas

  beforeAll(() => {
    rig = new Rig(Iommu.createSync({ addressWidth: 48 }));
    fd = rig.iommu.open();
    attached = rig.device('00:05.0');
    pasidDev = rig.device('00:06.0');
    narrow = rig.device('00:07.0', 4);
    noPasid = rig.device('00:08.0', 0);
    boundOnly = rig.device('00:09.0');
    unbound = rig.device('00:0a.0');
    space = new RefSpace('faults');
    ioas = fd.ioasAlloc();
    rig.map(fd, ioas, space, area(X, PAGE, 0x7_0000_0000n));
    rig.map(fd, ioas, space, area(0x1_0000_0000n, PAGE, 0x7_1000_0000n, { write: false })); // RO 4K
    rig.map(fd, ioas, space, area(0x1_0020_0000n, MiB2, 0x7_1020_0000n, { write: false })); // RO 2M
    rig.map(fd, ioas, space, area(0x2_0000_0000n, GiB, 0x8_0000_0000n, { write: false })); // RO 1G
    rig.map(fd, ioas, space, area(0x1_1000_0000n, PAGE, 0x7_2000_0000n, { read: false })); // WO 4K
    rig.map(fd, ioas, space, area(0x1_1020_0000n, MiB2, 0x7_2020_0000n, { read: false })); // WO 2M
    for (const d of [attached, pasidDev, narrow, noPasid, boundOnly]) d.bind(fd);
    rig.attach(attached, ioas, space);
    const hwpt = fd.hwptAlloc({ devId: pasidDev.devId!, ptId: ioas, pasid: true });
    pasid = fd.pasidAlloc({ pasid: 0xfffff });
    spare = fd.pasidAlloc({ pasid: 15 });
    rig.attach(pasidDev, hwpt, space);
    rig.attach(pasidDev, hwpt, space, pasid);
    rig.attach(narrow, hwpt, space);
    rig.iommu.faults.drain();
  });

  /**
   * Sends `requests`, each of which must fault with `reason` (and the request's level), and
   * checks that the fault log got one record per request, carrying the request, and that the
   * counters moved by exactly as much, for `reason` only.
   */
  function expectFaults(reason: Reason, requests: Request[]): void {
    const before = rig.iommu.stats();
    rig.iommu.faults.drain();
    for (const r of requests) {
      const t = rig.iommu.translate(r.rid as number, r.pasid as number, r.iova as bigint, r.access as number);
      expect(t.fault, `${reason}: ${[r.rid, r.pasid, r.iova, r.access].map(hex).join(', ')}`).toEqual({ reason, level: r.level ?? 0, stage: 0 });
      expect(t).toMatchObject({ ok: false, phys: 0n, size: 0n, perm: 0 });
      rig.compare({ ok: false, phys: 0n, size: 0n, perm: 0, reason, level: r.level ?? 0, stage: 0 }, r.rid, r.pasid, r.iova, r.access, reason);
    }
    const log = rig.iommu.faults.drain();
    const after = rig.iommu.stats();
    expect(log.map((f) => f.reason)).toEqual(requests.map(() => reason));
    expect(after.faults - before.faults).toBe(requests.length);
    for (const name of REASONS.slice(1)) {
      const moved = (after.faultsByReason[name] ?? 0) - (before.faultsByReason[name] ?? 0);
      expect(moved, `faultsByReason['${name}']`).toBe(name === reason ? requests.length : 0);
    }
    requests.forEach((r, i) => {
      const wellFormed = [r.rid, r.pasid, r.access].every((v) => typeof v === 'number' && Number.isInteger(v) && v >= 0 && v < 2 ** 32)
        && ((typeof r.iova === 'bigint' && r.iova >= 0n && r.iova <= U64_MAX) || (typeof r.iova === 'number' && Number.isSafeInteger(r.iova) && r.iova >= 0));
      if (wellFormed) {
        expect(log[i]).toEqual({ rid: r.rid, pasid: r.pasid, iova: BigInt(r.iova as bigint), access: r.access, reason, level: r.level ?? 0, stage: 0 });
      }
    });
  }

  test('bad-request: NaN, negative, fractional, 2^64, strings, bigints, symbols, rid 65536, pasid >= 2^20, access 16', () => {
    const good = { rid: attached.rid, pasid: NO_PASID, iova: X, access: READ };
    const bad: Partial<Request>[] = [
      ...[NaN, -1, 1.5, 2 ** 64, Infinity, -0.5, '0x1000', 2n ** 64n, -1n, undefined, null, {}, Symbol('iova')].map((iova) => ({ iova })),
      ...[NaN, -1, 1.5, 65536, 2 ** 32, 0xffffffff, '5', BigInt(attached.rid), null, Symbol('rid')].map((rid) => ({ rid })),
      ...[NaN, -1, 0.5, 2 ** 20, 2 ** 32 - 1, 2 ** 32, '0', 0n].map((pasid) => ({ pasid })),
      ...[16, 17, 255, 2 ** 31, -1, 1.5, NaN, '1', 1n, undefined].map((access) => ({ access })),
    ];
    // The good request itself translates: each bad one differs from it in one field only.
    expect(rig.iommu.translate(good.rid, good.pasid, good.iova, good.access).ok).toBe(true);
    expectFaults('bad-request', bad.map((b) => ({ ...good, ...b })));
  });

  test('no-device: a bus without devices, a free function next to a device, rid 0xffff', () => {
    expectFaults('no-device', [
      { rid: 0x7f00, pasid: NO_PASID, iova: X, access: READ },
      { rid: attached.rid + 1, pasid: NO_PASID, iova: X, access: READ }, // 00:05.1: same device page
      { rid: attached.rid | 7, pasid: NO_PASID, iova: X, access: WRITE }, // 00:05.7
      { rid: 0xffff, pasid: 5, iova: 0n, access: READ },
    ]);
  });

  test('not-attached: never bound, bound only, PASID allocated but not attached, PASID never allocated', () => {
    expectFaults('not-attached', [
      { rid: unbound.rid, pasid: NO_PASID, iova: X, access: READ },
      { rid: boundOnly.rid, pasid: NO_PASID, iova: X, access: READ },
      { rid: boundOnly.rid, pasid: 3, iova: X, access: READ },
      { rid: pasidDev.rid, pasid: spare, iova: X, access: READ },
      { rid: pasidDev.rid, pasid: 0x1234, iova: X, access: READ },
      { rid: attached.rid, pasid: pasid, iova: X, access: READ }, // the PASID is attached, but for another device
      { rid: narrow.rid, pasid: 15, iova: X, access: READ }, // the last PASID a 4-bit device has
    ]);
  });

  test('not-attached after detaching a PASID and after detaching the RID (each once filled)', () => {
    const other = fd.pasidAlloc({ pasid: 77 });
    const hwpt = pasidDev.attachments().get(NO_PASID)!;
    rig.attach(pasidDev, hwpt, space, other);
    rig.check(pasidDev.rid, other, X, READ);
    rig.detach(pasidDev, other);
    const ridOnly = rig.device('00:0b.0');
    ridOnly.bind(fd);
    rig.attach(ridOnly, ioas, space);
    rig.check(ridOnly.rid, NO_PASID, X, READ);
    rig.detach(ridOnly);
    expectFaults('not-attached', [
      { rid: pasidDev.rid, pasid: other, iova: X, access: READ },
      { rid: ridOnly.rid, pasid: NO_PASID, iova: X, access: READ },
    ]);
  });

  test("pasid-invalid: beyond the device's PASID width, or a device without PASIDs", () => {
    expectFaults('pasid-invalid', [
      { rid: narrow.rid, pasid: 16, iova: X, access: READ },
      { rid: narrow.rid, pasid: 0xfffff, iova: X, access: READ },
      { rid: noPasid.rid, pasid: 1, iova: X, access: READ },
      { rid: noPasid.rid, pasid: pasid, iova: X, access: WRITE },
    ]);
  });

  test('beyond-width: 2^48 and above, reported at the top level', () => {
    const top = 1n << 48n;
    expectFaults('beyond-width', [
      { rid: attached.rid, pasid: NO_PASID, iova: top, access: READ, level: 3 },
      { rid: attached.rid, pasid: NO_PASID, iova: top + X, access: WRITE, level: 3 },
      { rid: attached.rid, pasid: NO_PASID, iova: 2 ** 60, access: READ, level: 3 },
      { rid: pasidDev.rid, pasid: pasid, iova: 1n << 63n, access: READ, level: 3 },
      { rid: pasidDev.rid, pasid: pasid, iova: U64_MAX, access: READ, level: 3 },
      { rid: attached.rid, pasid: NO_PASID, iova: (1n << 57n) + X, access: READ, level: 3 },
    ]);
  });

  test('not-present: a hole at each level of a 4-level table', () => {
    expectFaults('not-present', [
      { rid: attached.rid, pasid: NO_PASID, iova: X + (1n << 39n), access: READ, level: 3 }, // empty 512G slot
      { rid: attached.rid, pasid: NO_PASID, iova: X + GiB, access: READ, level: 2 }, // empty 1G slot
      { rid: attached.rid, pasid: NO_PASID, iova: X + MiB2, access: READ, level: 1 }, // empty 2M slot
      { rid: attached.rid, pasid: NO_PASID, iova: X + PAGE, access: READ, level: 0 }, // empty 4K slot
      { rid: attached.rid, pasid: NO_PASID, iova: X - 1n, access: READ, level: 0 },
      { rid: pasidDev.rid, pasid: pasid, iova: 0n, access: WRITE, level: 2 },
    ]);
  });

  test('not-present after unmap: the emptied tables are freed, so the hole is at the top again', () => {
    const pagesBefore = rig.iommu.stats().tablePages;
    const lone = 0x81_2345_6000n; // alone in its 512G slot
    rig.map(fd, ioas, space, area(lone, PAGE, 0x9_0000_0000n));
    expect(rig.iommu.stats().tablePages).toBe(pagesBefore + 3 * 2); // one 1G, 2M and 4K table in each of 2 HWPTs
    rig.check(attached.rid, NO_PASID, lone, READ);
    rig.unmap(fd, ioas, space, lone, PAGE);
    expect(rig.iommu.stats().tablePages).toBe(pagesBefore);
    expectFaults('not-present', [{ rid: attached.rid, pasid: NO_PASID, iova: lone, access: READ, level: 3 }]);
  });

  test('permission: write to read-only (4K, 2M, 1G leaves), read or exec of write-only', () => {
    const base = { rid: attached.rid, pasid: NO_PASID };
    expectFaults('permission', [
      { ...base, iova: 0x1_0000_0000n, access: WRITE, level: 0 },
      { ...base, iova: 0x1_0030_0000n, access: WRITE, level: 1 },
      { ...base, iova: 0x2_2345_6789n, access: WRITE | READ, level: 2 },
      { ...base, iova: 0x2_0000_0000n, access: WRITE | PRIV, level: 2 },
      { ...base, iova: 0x1_1000_0fffn, access: READ, level: 0 },
      { ...base, iova: 0x1_1020_0000n, access: EXEC, level: 1 },
      { ...base, iova: 0x1_103f_ffffn, access: READ | WRITE, level: 1 },
      { rid: pasidDev.rid, pasid, iova: 0x1_1000_0000n, access: EXEC | PRIV, level: 0 },
    ]);
    // What is granted: Exec needs only R, Priv is not checked, no access bits need nothing.
    for (const [iova, access] of [[0x1_0000_0000n, EXEC], [0x2_0000_0000n, READ | PRIV], [0x1_1000_0000n, WRITE], [0x1_1020_0000n, 0]] as const) {
      expect(rig.check(attached.rid, NO_PASID, iova, access).ok).toBe(true);
    }
  });

  test('one of each reason: the log and faultsByReason agree on everything seen', () => {
    const before = rig.iommu.stats();
    rig.iommu.faults.drain();
    const one: Record<Exclude<Reason, 'none'>, Request> = {
      'bad-request': { rid: NaN, pasid: 0, iova: 0, access: READ },
      'no-device': { rid: 0x7e00, pasid: 0, iova: 0, access: READ },
      'not-attached': { rid: unbound.rid, pasid: 0, iova: 0, access: READ },
      'pasid-invalid': { rid: noPasid.rid, pasid: 1, iova: 0, access: READ },
      'beyond-width': { rid: attached.rid, pasid: 0, iova: 1n << 50n, access: READ },
      'not-present': { rid: attached.rid, pasid: 0, iova: 0, access: READ },
      permission: { rid: attached.rid, pasid: 0, iova: 0x1_0000_0000n, access: WRITE },
    };
    for (const [reason, r] of Object.entries(one)) {
      for (let i = 0; i < 3; i++) expect(rig.iommu.translate(r.rid as number, r.pasid as number, r.iova as bigint, r.access as number).fault?.reason).toBe(reason);
    }
    const after = rig.iommu.stats();
    const logged: Record<string, number> = {};
    for (const f of rig.iommu.faults.drain()) logged[f.reason] = (logged[f.reason] ?? 0) + 1;
    const counted: Record<string, number> = {};
    for (const name of REASONS.slice(1)) counted[name] = (after.faultsByReason[name] ?? 0) - (before.faultsByReason[name] ?? 0);
    expect(counted).toEqual(logged);
    expect(logged).toEqual(Object.fromEntries(Object.keys(one).map((k) => [k, 3])));
    expect(after.faults - before.faults).toBe(21);
  });
});

describe.each([39, 48, 57] as const)('%i-bit address width: the top of the space and its holes', (width) => {
  const levels = (width - 12) / 9;
  const top = 1n << BigInt(width);

  test('last page below 2^width translates, 2^width is beyond-width at the top level, holes at every level', () => {
    const rig = new Rig(Iommu.createSync({ addressWidth: width }));
    const fd = rig.iommu.open();
    const dev = rig.device('00:10.0');
    const space = new RefSpace(`top${width}`);
    const ioas = fd.ioasAlloc();
    dev.bind(fd);
    rig.attach(dev, ioas, space);
    rig.map(fd, ioas, space, area(top - PAGE, PAGE, 0x3_0000_0000n));
    expect(rig.check(dev.rid, NO_PASID, top - 1n, WRITE)).toMatchObject({ ok: true, phys: 0x3_0000_0fffn, size: PAGE });
    expect(rig.check(dev.rid, NO_PASID, top, READ)).toMatchObject({ ok: false, reason: 'beyond-width', level: levels - 1 });
    expect(rig.check(dev.rid, NO_PASID, U64_MAX, READ)).toMatchObject({ ok: false, reason: 'beyond-width', level: levels - 1 });
    // A hole at each level on the way down to the mapped page.
    for (let level = levels - 1; level >= 0; level--) {
      const hole = top - PAGE - (1n << BigInt(12 + 9 * level));
      expect(rig.check(dev.rid, NO_PASID, hole, READ), `hole at level ${level}`).toMatchObject({ reason: 'not-present', level });
    }
    // Mapping at 2^width is refused (outside the aperture); the table did not change.
    expect(() => fd.ioasMap(ioas, { iova: top, length: PAGE, phys: 0n })).toThrow(IommuError);
    rig.check(dev.rid, NO_PASID, top, READ);
  });
});

describe('output addresses', () => {
  const LIMIT = 1n << 52n; // leaf entries hold output bits 51:12

  test('outputs up to 2^52 - 1 translate exactly; a map beyond is ERANGE, never cut to a lower address', () => {
    const rig = new Rig(Iommu.createSync({ addressWidth: 48 }));
    const fd = rig.iommu.open();
    const dev = rig.device('00:12.0');
    dev.bind(fd);
    const space = new RefSpace('outputs');
    const ioas = fd.ioasAlloc();
    rig.attach(dev, ioas, space);
    rig.map(fd, ioas, space, area(GiB, GiB, LIMIT - GiB));
    rig.map(fd, ioas, space, area(4n * GiB, PAGE, LIMIT - PAGE));
    expect(rig.check(dev.rid, NO_PASID, 2n * GiB - 1n, READ)).toMatchObject({ ok: true, phys: LIMIT - 1n, size: GiB });
    expect(rig.check(dev.rid, NO_PASID, 4n * GiB + 0xfffn, WRITE)).toMatchObject({ ok: true, phys: LIMIT - 1n, size: PAGE });
    for (const phys of [LIMIT, LIMIT - PAGE, 1n << 60n, U64_MAX - 2n * PAGE + 1n]) {
      expectErrno('ERANGE', () => fd.ioasMap(ioas, { iova: 8n * GiB, length: 2n * PAGE, phys }));
      rig.check(dev.rid, NO_PASID, 8n * GiB + 0x10n, READ, `after the refused map to ${hex(phys)}`);
    }
    // Output addresses far below the limit at the start, carried beyond it by the length.
    for (const [phys, length] of [[LIMIT - (2n << 20n), 4n << 20n], [LIMIT - GiB, 2n * GiB]] as const) {
      expectErrno('ERANGE', () => fd.ioasMap(ioas, { iova: 8n * GiB, length, phys }));
      rig.check(dev.rid, NO_PASID, 8n * GiB + length - 0x10n, READ, `after the refused map of ${hex(length)} bytes to ${hex(phys)}`);
    }
    // An IOAS that took such a mapping before it had a HWPT: attaching it is ERANGE and changes nothing.
    const early = fd.ioasAlloc();
    fd.ioasMap(early, { iova: 0, length: PAGE, phys: 1n << 60n });
    const late = rig.device('00:12.1');
    late.bind(fd);
    expectErrno('ERANGE', () => late.attach(early));
    expect(late.attachments().size).toBe(0);
    rig.check(late.rid, NO_PASID, 0x10n, READ);
  });
});

describe('sliding-window boundary sweeps', () => {
  /** How the output address of a window relates to its IOVA, which bounds the leaf sizes. */
  const OUTPUTS = [
    { name: 'output congruent mod 1G', offset: 0n },
    { name: 'output off by 2M', offset: MiB2 },
    { name: 'output off by 4K', offset: PAGE },
  ];
  /** Neighbour length: room for a 2M leaf and a page. */
  const NEIGHBOUR = MiB2 + PAGE;

  /** Bytes at and around `points`: one page and one byte either side. */
  function probesAround(points: bigint[]): bigint[] {
    const probes = new Set<bigint>();
    for (const p of points) for (const d of [-PAGE - 1n, -PAGE, -1n, 0n, 1n, PAGE - 1n, PAGE]) if (p + d >= 0n) probes.add(p + d);
    return [...probes];
  }

  interface Fixture {
    rig: Rig;
    fd: IommuFd;
    ioas: number;
    space: RefSpace;
    dev: DeviceFd;
    pasid: number;
  }

  /** A device whose RID and one PASID both translate through one IOAS. */
  function fixture(width: 39 | 48 | 57): Fixture {
    const rig = new Rig(Iommu.createSync({ addressWidth: width }));
    const fd = rig.iommu.open();
    const dev = rig.device('00:11.0');
    const space = new RefSpace('window');
    const ioas = fd.ioasAlloc();
    dev.bind(fd);
    const hwpt = fd.hwptAlloc({ devId: dev.devId!, ptId: ioas, pasid: true });
    const pasid = fd.pasidAlloc({ pasid: 9 });
    rig.attach(dev, hwpt, space);
    rig.attach(dev, hwpt, space, pasid);
    return { rig, fd, ioas, space, dev, pasid };
  }

  /**
   * Maps neighbours on both sides of `[start, end)` (when there is room), then the window; checks
   * every probe through the RID and the PASID; unmaps the window and checks again (a hole, the
   * neighbours intact); unmaps the neighbours and checks that every table page came back.
   */
  function sweep(f: Fixture, start: bigint, end: bigint, offset: bigint, probes: bigint[]): void {
    const { rig, fd, ioas, space, dev, pasid } = f;
    const pagesBefore = rig.iommu.stats().tablePages;
    const topOfSpace = 1n << BigInt(rig.iommu.addressWidth);
    const left = start >= NEIGHBOUR ? area(start - NEIGHBOUR, NEIGHBOUR, physLike(physBase(1), start - NEIGHBOUR, offset)) : undefined;
    const rightLength = topOfSpace - end < NEIGHBOUR ? topOfSpace - end : NEIGHBOUR;
    const right = rightLength > 0n ? area(end, rightLength, physLike(physBase(2), end, offset)) : undefined;
    const window = area(start, end - start, physLike(physBase(3), start, offset));
    const label = `window [${hex(start)}, ${hex(end)}) output +${hex(offset)}`;
    const checkAll = (phase: string): void => {
      for (const iova of probes) {
        for (const access of [READ, WRITE]) {
          rig.check(dev.rid, NO_PASID, iova, access, `${label} ${phase}`);
          rig.check(dev.rid, pasid, iova, access, `${label} ${phase} (PASID)`);
        }
      }
    };
    for (const n of [left, right]) if (n) rig.map(fd, ioas, space, n);
    rig.map(fd, ioas, space, window);
    checkAll('mapped');
    rig.unmap(fd, ioas, space, window.iova, window.length);
    checkAll('window unmapped');
    for (const n of [left, right]) if (n) rig.unmap(fd, ioas, space, n.iova, n.length);
    expect(space.areas).toEqual([]);
    expect(rig.iommu.stats().tablePages, `${label}: table pages after unmapping everything`).toBe(pagesBefore);
  }

  describe.each([
    { boundary: '4K', size: PAGE, base: 5n * GiB + 7n * MiB2 + 3n * PAGE },
    { boundary: '2M', size: MiB2, base: 5n * GiB + 7n * MiB2 },
    { boundary: '1G', size: GiB, base: 5n * GiB },
  ])('ends at ±1 page around $boundary boundaries', ({ size, base }) => {
    test.each(OUTPUTS)('$name', ({ offset }) => {
      const f = fixture(48);
      let windows = 0;
      for (const k of [1n, 2n]) {
        for (const ds of [-PAGE, 0n, PAGE]) {
          for (const de of [-PAGE, 0n, PAGE]) {
            const start = base + ds;
            const end = base + k * size + de;
            if (end <= start) continue;
            const inner: bigint[] = [];
            for (let b = base; b <= base + k * size; b += size) inner.push(b);
            sweep(f, start, end, offset, probesAround([start, end, ...inner]));
            windows++;
          }
        }
      }
      expect(windows).toBe(size === PAGE ? 14 : 18); // the 4K case has no room for a start past its end
      expect(f.rig.checks).toBeGreaterThan(windows * 50);
    });
  });

  describe.each([39, 48, 57] as const)('windows ending at and just below the top of a %i-bit space', (width) => {
    test.each(OUTPUTS)('$name', ({ offset }) => {
      const f = fixture(width);
      const top = 1n << BigInt(width);
      for (const end of [top, top - PAGE, top - MiB2, top - MiB2 + PAGE, top - GiB]) {
        for (const length of [PAGE, MiB2 - PAGE, MiB2, MiB2 + PAGE, GiB, GiB + PAGE, 2n * GiB]) {
          if (offset === PAGE && length >= GiB) continue; // 4K leaves only: a GiB of them proves nothing new
          const start = end - length;
          sweep(f, start, end, offset, probesAround([start, end, top - MiB2, top - GiB, top]));
        }
      }
      // The last byte below the top and the first one beyond it, with the window gone.
      expect(f.rig.check(f.dev.rid, NO_PASID, top, READ)).toMatchObject({ reason: 'beyond-width', level: (width - 12) / 9 - 1 });
    });
  });
});

describe('seeded differential test against the reference', () => {
  interface HwptModel {
    id: number;
    ioas: IoasModel;
    pasid: boolean;
    users: number;
  }
  interface IoasModel {
    id: number;
    space: RefSpace;
  }
  interface FdModel {
    fd: IommuFd;
    ioases: IoasModel[];
    hwpts: HwptModel[];
    pasids: number[];
  }
  interface Attachment {
    ioas: IoasModel;
    /** The explicit HWPT, or undefined for an IOAS's auto HWPT (never PASID-capable). */
    hwpt: HwptModel | undefined;
  }
  interface DevModel {
    dev: DeviceFd;
    fd: FdModel | undefined;
    attached: Map<number, Attachment>;
  }

  const WIDTH = 48;
  const TOP = 1n << BigInt(WIDTH);
  /** PASIDs each FD slot allocates when it is opened (the 4000s exceed 8-bit devices). */
  const PASIDS_OF_SLOT = [[1, 2, 200], [3, 100, 4000]];
  const ACCESS_MIX = [READ, WRITE, EXEC, READ | WRITE, READ | PRIV, WRITE | PRIV, 0];

  class Differential {
    readonly rig: Rig;
    readonly rng: Rng;
    readonly fds: FdModel[] = [];
    readonly devices: DevModel[] = [];
    /** Recently probed requests, probed again after every step: stale IOTLB entries would show. */
    readonly recent: [number, number, bigint, number][] = [];
    ops: Record<string, number> = {};
    /** Devices that have had a PASID attached: each keeps its PASID directory page while it exists. */
    readonly pasidDirectories = new Set<number>();
    private spaces = 0;

    constructor(seed: number, iotlbEntries: number) {
      this.rng = new Rng(seed);
      this.rig = new Rig(Iommu.createSync({ addressWidth: WIDTH, iotlbEntries }));
      for (const [bdf, bits] of [['00:01.0', 0], ['00:02.0', 8], ['00:02.1', 8], ['01:00.0', 20], ['02:00.0', 20]] as const) {
        this.devices.push({ dev: this.rig.device(bdf, bits), fd: undefined, attached: new Map() });
      }
      for (let slot = 0; slot < 2; slot++) this.fds.push(this.openSlot(slot));
    }

    private openSlot(slot: number): FdModel {
      const fd = this.rig.iommu.open();
      const ioases = [0, 1].map(() => ({ id: fd.ioasAlloc(), space: new RefSpace(`space${++this.spaces}`) }));
      const pasids = PASIDS_OF_SLOT[slot]!.map((pasid) => fd.pasidAlloc({ pasid }));
      return { fd, ioases, hwpts: [], pasids };
    }

    private count(op: string): void {
      this.ops[op] = (this.ops[op] ?? 0) + 1;
    }

    /** Expects `fn` to fail with `errno`, counting it under `op`. */
    private refused(op: string, errno: string, fn: () => unknown): void {
      expectErrno(errno, fn);
      this.count(`${op} ${errno}`);
    }

    step(): void {
      const r = this.rng.u32() / 2 ** 32;
      if (r < 0.38) this.map();
      else if (r < 0.56) this.unmap();
      else if (r < 0.76) this.attach();
      else if (r < 0.86) this.detach();
      else if (r < 0.92) this.hwptAlloc();
      else if (r < 0.96) this.destroy();
      else if (r < 0.985) this.unbind();
      else this.close();
    }

    /** An IOVA near a 2M or 1G boundary (±2 pages), or a random page; low or just below the top. */
    private iova(): bigint {
      const region = this.rng.chance(0.8) ? 0n : TOP - 8n * GiB;
      const raw = region + this.rng.big(8n * GiB);
      if (this.rng.chance(0.5)) return (raw / PAGE) * PAGE;
      const grain = this.rng.pick([MiB2, GiB]);
      return (raw / grain) * grain + BigInt(this.rng.int(5) - 2) * PAGE;
    }

    private map(): void {
      const fdm = this.rng.pick(this.fds);
      const ioas = this.rng.pick(fdm.ioases);
      const huge = this.rng.chance(0.06);
      let iova = this.iova();
      let length: bigint;
      if (huge) {
        iova = (iova / GiB) * GiB;
        length = GiB;
      } else if (this.rng.chance(0.5)) {
        length = BigInt(1 + this.rng.int(8)) * PAGE;
      } else {
        length = BigInt(1 + this.rng.int(2)) * MiB2 + BigInt(this.rng.int(3) - 1) * PAGE;
      }
      if (iova < 0n || iova + length > TOP) return;
      const offset = huge ? this.rng.pick([0n, MiB2]) : this.rng.pick([0n, MiB2, PAGE, 3n * PAGE]);
      const phys = this.rng.big(1n << 13n) * GiB + (iova % GiB) + offset;
      const perm = this.rng.pick([{}, {}, {}, { write: false }, { read: false }]);
      const a = area(iova, length, phys, perm);
      if (ioas.space.intersects(iova, iova + length - 1n)) {
        this.refused('map', 'EEXIST', () => fdm.fd.ioasMap(ioas.id, { iova, length, phys, ...perm }));
        return;
      }
      this.rig.map(fdm.fd, ioas.id, ioas.space, a);
      this.count(huge ? 'map 1G' : 'map');
    }

    private unmap(): void {
      const fdm = this.rng.pick(this.fds);
      const ioas = this.rng.pick(fdm.ioases);
      const areas = ioas.space.areas;
      if (areas.length === 0) {
        this.refused('unmap', 'ENOENT', () => fdm.fd.ioasUnmap(ioas.id, 0x1000, 0x1000));
        return;
      }
      const how = this.rng.u32() / 2 ** 32;
      if (how < 0.04) {
        const bytes = ioas.space.areas.reduce((s, a) => s + a.length, 0n);
        expect(fdm.fd.ioasUnmap(ioas.id, 0n, U64_MAX)).toBe(bytes);
        ioas.space.clear();
        this.count('unmap all');
        return;
      }
      const i = this.rng.int(areas.length);
      const a = areas[i]!;
      if (how < 0.15 && a.length > PAGE) {
        // Cuts the area: ENOENT and nothing changes.
        this.refused('unmap', 'ENOENT', () => fdm.fd.ioasUnmap(ioas.id, a.iova, a.length - PAGE));
        return;
      }
      const j = how < 0.35 ? Math.min(areas.length - 1, i + this.rng.int(3)) : i;
      const last = areas[j]!;
      this.rig.unmap(fdm.fd, ioas.id, ioas.space, a.iova, last.iova + last.length - a.iova);
      this.count(j > i ? 'unmap span' : 'unmap');
    }

    private bound(d: DevModel): FdModel {
      if (!d.fd) {
        d.fd = this.rng.pick(this.fds);
        d.dev.bind(d.fd.fd);
        this.count('bind');
      }
      return d.fd;
    }

    private attach(): void {
      const d = this.rng.pick(this.devices);
      const fdm = this.bound(d);
      const usePasid = this.rng.chance(0.45);
      // Mostly what can succeed (a PASID the device can carry, a PASID-capable HWPT), sometimes not.
      const fitting = fdm.pasids.filter((p) => p < 2 ** d.dev.pasidBits);
      const pasid = !usePasid ? NO_PASID : fitting.length && this.rng.chance(0.85) ? this.rng.pick(fitting) : this.rng.pick(fdm.pasids);
      const capable = fdm.hwpts.filter((h) => h.pasid);
      const explicit = capable.length && this.rng.chance(usePasid ? 0.85 : 0.4) ? this.rng.pick(capable)
        : fdm.hwpts.length && this.rng.chance(0.4) ? this.rng.pick(fdm.hwpts) : undefined;
      const ioas = explicit ? explicit.ioas : this.rng.pick(fdm.ioases);
      const ptId = explicit ? explicit.id : ioas.id;
      const pasidCapable = explicit?.pasid ?? false;
      const rid = d.attached.get(NO_PASID);
      const pasidsAttached = [...d.attached.keys()].some((p) => p !== NO_PASID);
      const refusal = usePasid
        ? d.dev.pasidBits === 0 || pasid >= 2 ** d.dev.pasidBits || !pasidCapable || (rid !== undefined && !(rid.hwpt?.pasid ?? false))
        : !pasidCapable && pasidsAttached;
      if (refusal) {
        this.refused(usePasid ? 'attach pasid' : 'attach rid', 'EINVAL', () => d.dev.attach(ptId, usePasid ? { pasid } : undefined));
        return;
      }
      const old = d.attached.get(pasid);
      this.rig.attach(d.dev, ptId, ioas.space, pasid);
      if (old?.hwpt) old.hwpt.users--;
      if (explicit) explicit.users++;
      d.attached.set(pasid, { ioas, hwpt: explicit });
      if (usePasid) this.pasidDirectories.add(d.dev.rid);
      this.count(`${old ? 'replace' : 'attach'} ${usePasid ? 'pasid' : 'rid'}`);
    }

    private detach(): void {
      const d = this.rng.pick(this.devices);
      if (!d.fd) return;
      const pasid = this.rng.pick([NO_PASID, NO_PASID, ...d.fd.pasids]);
      const old = d.attached.get(pasid);
      this.rig.detach(d.dev, pasid);
      if (old?.hwpt) old.hwpt.users--;
      d.attached.delete(pasid);
      this.count(old ? 'detach' : 'detach nothing');
    }

    private hwptAlloc(): void {
      const fdm = this.rng.pick(this.fds);
      const dev = this.devices.find((d) => d.fd === fdm);
      if (!dev || fdm.hwpts.length >= 4) return;
      const ioas = this.rng.pick(fdm.ioases);
      const pasid = this.rng.chance(0.7);
      fdm.hwpts.push({ id: fdm.fd.hwptAlloc({ devId: dev.dev.devId!, ptId: ioas.id, pasid }), ioas, pasid, users: 0 });
      this.count('hwptAlloc');
    }

    private destroy(): void {
      const fdm = this.rng.pick(this.fds);
      if (fdm.hwpts.length === 0) return;
      const h = this.rng.pick(fdm.hwpts);
      if (h.users > 0) {
        this.refused('destroy', 'EBUSY', () => fdm.fd.destroy(h.id));
        return;
      }
      fdm.fd.destroy(h.id);
      fdm.hwpts.splice(fdm.hwpts.indexOf(h), 1);
      this.count('destroy');
    }

    /** Forgets every attachment of `d` (unbind or FD close). */
    private forget(d: DevModel): void {
      for (const a of d.attached.values()) if (a.hwpt) a.hwpt.users--;
      d.attached.clear();
      d.fd = undefined;
      this.rig.ref.detachAll(d.dev.rid);
    }

    private unbind(): void {
      const d = this.rng.pick(this.devices);
      if (!d.fd) return;
      d.dev.unbind();
      this.forget(d);
      this.count('unbind');
    }

    private close(): void {
      const slot = this.rng.int(this.fds.length);
      const fdm = this.fds[slot]!;
      fdm.fd.close();
      for (const d of this.devices) if (d.fd === fdm) this.forget(d);
      this.fds[slot] = this.openSlot(slot);
      this.count('close');
    }

    /** Probes the recent requests again, then fresh ones: inside, at and around mapped areas, and anywhere. */
    probe(fresh: number): void {
      for (const [rid, pasid, iova, access] of this.recent) this.rig.check(rid, pasid, iova, access, 'recent');
      for (let i = 0; i < fresh; i++) {
        const [rid, pasid] = this.requester();
        const space = this.rig.ref.context(rid, pasid) ?? this.rng.pick(this.rng.pick(this.fds).ioases).space;
        const iova = this.address(space);
        const access = this.rng.pick(ACCESS_MIX);
        this.rig.check(rid, pasid, iova, access, 'fresh');
        this.recent.push([rid, pasid, iova, access]);
        if (this.recent.length > 24) this.recent.shift();
      }
    }

    /** Mostly an attached (rid, pasid); else any device, PASID or none, or a RID without a device. */
    private requester(): [number, number] {
      const attached = this.devices.flatMap((d) => [...d.attached.keys()].map((p): [number, number] => [d.dev.rid, p]));
      if (attached.length && this.rng.chance(0.75)) return this.rng.pick(attached);
      const d = this.rng.chance(0.05) ? undefined : this.rng.pick(this.devices);
      const rid = d ? d.dev.rid : 0x0300; // no device there
      const pasids = d?.fd ? d.fd.pasids : [];
      return [rid, this.rng.chance(0.55) ? NO_PASID : this.rng.chance(0.9) && pasids.length ? this.rng.pick(pasids) : 0xfffff];
    }

    private address(space: RefSpace): bigint {
      const a = space.areas.length && this.rng.chance(0.85) ? this.rng.pick(space.areas) : undefined;
      if (!a) return this.rng.chance(0.1) ? TOP + this.rng.big(TOP) : this.iova() + this.rng.big(PAGE);
      // Beyond every width, at the same 4K page number modulo 2^45 as a mapped byte: an IOTLB
      // that compared too few bits of the page number would answer for it.
      if (this.rng.chance(0.03)) return (1n << 57n) + a.iova + this.rng.big(a.length);
      const end = a.iova + a.length;
      const inside = a.iova + this.rng.big(a.length);
      const candidates = [a.iova, end - 1n, a.iova - 1n, end, inside, inside, (inside / MiB2) * MiB2, (inside / MiB2) * MiB2 - 1n];
      return this.rng.pick(candidates.filter((x) => x >= 0n));
    }
  }

  test.each([
    { seed: 0x5eed0001, steps: 2500, iotlbEntries: 64 },
    { seed: 0x5eed0002, steps: 2500, iotlbEntries: 4096 },
  ])('seed $seed: $steps steps, IOTLB of $iotlbEntries entries', ({ seed, steps, iotlbEntries }) => {
    const diff = new Differential(seed, iotlbEntries);
    const pagesWithNoTables = diff.rig.iommu.stats().tablePages;
    for (let i = 0; i < steps; i++) {
      diff.step();
      diff.probe(12);
    }
    // Every kind of step happened, and most translations were real ones.
    for (const op of ['map', 'map 1G', 'unmap', 'unmap span', 'unmap all', 'attach rid', 'attach pasid', 'replace rid', 'replace pasid',
      'detach', 'hwptAlloc', 'destroy', 'unbind', 'close', 'map EEXIST', 'unmap ENOENT', 'attach pasid EINVAL']) {
      expect(diff.ops[op] ?? 0, `steps of kind '${op}' (seen: ${JSON.stringify(diff.ops)})`).toBeGreaterThan(0);
    }
    expect(diff.rig.checks).toBeGreaterThan(steps * 30);
    const stats = diff.rig.iommu.stats();
    expect(stats.hits + stats.misses).toBeGreaterThan(steps * 30);
    expect(stats.hits).toBeGreaterThan(0);
    // Closing both FDs detaches everything and gives back every table page but the PASID
    // directories, which the device contexts keep for good.
    for (const fdm of diff.fds) fdm.fd.close();
    for (const d of diff.devices) {
      diff.rig.ref.detachAll(d.dev.rid);
      for (const pasid of [NO_PASID, 1, 2, 3]) diff.rig.check(d.dev.rid, pasid, 0x1000n, READ, 'after close');
    }
    expect(diff.rig.iommu.stats().tablePages).toBe(pagesWithNoTables + diff.pasidDirectories.size);
  });
});
