/**
 * The batched control API (issue 14): `fd.ioasMapBatch` / `fd.ioasUnmapBatch`. Each entry has the
 * per-call command's semantics (applies wholly or changes nothing, reports the errno the call would
 * have thrown); a malformed batch throws and applies nothing. A seeded property test runs random
 * request lists through the batch API on one engine and through per-call `ioasMap`/`ioasUnmap` on
 * another and requires the same per-entry outcomes, mappings and translations.
 */
import { describe, expect, test } from 'vitest';
import { Access, ERRNO, IommuError, MAP_READ, MAP_WRITE, NO_PASID, type Errno } from '../src/index';
import { APSTART, NO_DEVICE, ONE_DEVICE, P, PHYS, expectErrno, failNth, ioasFixture, mappings, type IoasFixture, type Topology } from './helpers';

const U64 = (1n << 64n) - 1n;
const mapReq = (entries: bigint[][], perms?: number[]) => ({
  entries: BigUint64Array.from(entries.flat()),
  results: new Int32Array(entries.length).fill(-1),
  ...(perms ? { perms: Uint8Array.from(perms) } : {}),
});
const unmapReq = (entries: bigint[][]) => ({
  entries: BigUint64Array.from(entries.flat()),
  results: new Int32Array(entries.length).fill(-1),
  bytes: new BigUint64Array(entries.length),
});
/** The errno (number) a per-call command throws, 0 when it succeeds. */
function outcome(fn: () => unknown): number {
  try {
    fn();
    return 0;
  } catch (e) {
    if (e instanceof IommuError) return e.code;
    throw e;
  }
}

describe('ioasMapBatch / ioasUnmapBatch', () => {
  test('entries apply in order; a failing entry reports its errno and changes nothing', () => {
    const f = ioasFixture(ONE_DEVICE);
    const b = APSTART;
    const req = mapReq([
      [b, P, PHYS], // ok
      [b, P, PHYS + P], // EEXIST: overlaps entry 0
      [b + P, 0n, PHYS], // EINVAL: zero length
      [b + P + 1n, P, PHYS], // EINVAL: misaligned IOVA (a device is attached: 4 KiB alignment)
      [U64 - P + 1n, 2n * P, PHYS], // EOVERFLOW: iova + length - 1 wraps
      [b + 2n * P, P, PHYS + 2n * P], // no permission: EINVAL
      [b + 3n * P, P, PHYS + 3n * P], // unknown perm bit: EOPNOTSUPP
      [b + 4n * P, P, PHYS + 4n * P], // ok, read-only
    ], [3, 3, 3, 3, 3, 0, 4, MAP_READ]);
    expect(f.fd.ioasMapBatch(f.ioas, req)).toBe(2);
    const names: Errno[] = ['EEXIST', 'EINVAL', 'EINVAL', 'EOVERFLOW', 'EINVAL', 'EOPNOTSUPP'];
    expect([...req.results]).toEqual([0, ...names.map((n) => ERRNO[n]), 0]);
    expect(mappings(f.fd, f.ioas).map((m) => [m.iova, m.last, m.phys, m.read, m.write])).toEqual([
      [b, b + P - 1n, PHYS, true, true],
      [b + 4n * P, b + 5n * P - 1n, PHYS + 4n * P, true, false],
    ]);
    const dev = f.devs[0]!;
    expect(f.iommu.translate(dev.rid, NO_PASID, b + 4n * P, Access.Read).ok).toBe(true);
    expect(f.iommu.translate(dev.rid, NO_PASID, b + 4n * P, Access.Write).ok).toBe(false);
  });

  test('every entry valid (the fast path): each entry gets its own perms and output address', () => {
    const f = ioasFixture(ONE_DEVICE);
    const b = APSTART;
    // Out of IOVA order, far apart and close together; read-only, write-only, both.
    const req = mapReq([
      [b + (1n << 40n), P, PHYS + 5n * P],
      [b, 2n * P, PHYS],
      [b + 2n * P, P, PHYS + 9n * P],
      [b + (1n << 33n), P, PHYS + 3n * P],
    ], [MAP_READ, MAP_WRITE, MAP_READ | MAP_WRITE, MAP_WRITE]);
    expect(f.fd.ioasMapBatch(f.ioas, req)).toBe(4);
    expect([...req.results]).toEqual([0, 0, 0, 0]);
    const rid = f.devs[0]!.rid;
    const tr = (iova: bigint, access: Access) => {
      const r = f.iommu.translate(rid, NO_PASID, iova, access);
      return r.ok ? r.phys : undefined;
    };
    expect([tr(b + (1n << 40n) + 8n, Access.Read), tr(b + (1n << 40n), Access.Write)]).toEqual([PHYS + 5n * P + 8n, undefined]);
    expect([tr(b + P + 16n, Access.Write), tr(b, Access.Read)]).toEqual([PHYS + P + 16n, undefined]);
    expect([tr(b + 2n * P, Access.Read), tr(b + 2n * P + P - 1n, Access.Write)]).toEqual([PHYS + 9n * P, PHYS + 9n * P + P - 1n]);
    expect([tr(b + (1n << 33n), Access.Write), tr(b + (1n << 33n), Access.Read)]).toEqual([PHYS + 3n * P, undefined]);
    expect(mappings(f.fd, f.ioas).map((m) => [m.iova, m.last, m.phys, m.read, m.write])).toEqual([
      [b, b + 2n * P - 1n, PHYS, false, true],
      [b + 2n * P, b + 3n * P - 1n, PHYS + 9n * P, true, true],
      [b + (1n << 33n), b + (1n << 33n) + P - 1n, PHYS + 3n * P, false, true],
      [b + (1n << 40n), b + (1n << 40n) + P - 1n, PHYS + 5n * P, true, false],
    ]);
  });

  test('every unmap entry names one area (the fast path): each leaves the table whole, the others stay', () => {
    const f = ioasFixture(ONE_DEVICE);
    const b = APSTART;
    const G = 1n << 32n;
    // Areas whose last byte is in another 4 GiB (high u32 half) than their first, and neighbours.
    const areas: bigint[][] = [
      [G - P, 2n * P],
      [G + P, P],
      [3n * G - 2n * P, 4n * P],
      [b, P],
      [(1n << 47n) - P, 2n * P],
    ];
    for (const [iova, length] of areas) f.fd.ioasMap(f.ioas, { iova: iova!, length: length!, phys: PHYS + iova! });
    const req = unmapReq([areas[2]!, areas[0]!, areas[4]!]);
    expect(f.fd.ioasUnmapBatch(f.ioas, req)).toBe(3);
    expect([...req.results]).toEqual([0, 0, 0]);
    expect([...req.bytes]).toEqual([4n * P, 2n * P, 2n * P]);
    const rid = f.devs[0]!.rid;
    const ok = (iova: bigint) => f.iommu.translate(rid, NO_PASID, iova, Access.Read).ok;
    for (const [iova, length] of [areas[0]!, areas[2]!, areas[4]!]) for (let o = 0n; o < length!; o += P) expect(ok(iova! + o), `0x${(iova! + o).toString(16)}`).toBe(false);
    expect([ok(G + P), ok(b)]).toEqual([true, true]);
    expect(mappings(f.fd, f.ioas).map((m) => m.iova)).toEqual([b, G + P]);
  });

  test('output addresses up to 2^52 - 1 map; one byte beyond is ERANGE (batch as per-call)', () => {
    const f = ioasFixture(ONE_DEVICE);
    const top = 1n << 52n;
    const req = mapReq([
      [APSTART, P, top - P], // ends at 2^52 - 1
      [APSTART + 4n * P, 2n * P, top - P], // ends at 2^52 + P - 1
      [APSTART + 8n * P, P, top - 2n * P],
    ]);
    expect(f.fd.ioasMapBatch(f.ioas, req)).toBe(2);
    expect([...req.results]).toEqual([0, ERRNO.ERANGE, 0]);
    expect(f.iommu.translate(f.devs[0]!.rid, NO_PASID, APSTART + P - 1n, Access.Read).phys).toBe(top - 1n);
  });

  test('unmap entries: bytes per entry, ENOENT for holes and areas crossing the range', () => {
    const f = ioasFixture(ONE_DEVICE);
    const b = APSTART;
    f.fd.ioasMap(f.ioas, { iova: b, length: 2n * P, phys: PHYS });
    f.fd.ioasMap(f.ioas, { iova: b + 4n * P, length: P, phys: PHYS });
    const req = unmapReq([
      [b, P], // ENOENT: the area [b, b+2P) crosses the end
      [b + 8n * P, P], // ENOENT: nothing there
      [b, 0n], // EINVAL: zero length
      [b, 2n * P], // ok: 2 pages
      [b + 4n * P, P], // ok
      [b + 4n * P, P], // ENOENT: already gone
    ]);
    expect(f.fd.ioasUnmapBatch(f.ioas, req)).toBe(2);
    expect([...req.results]).toEqual([ERRNO.ENOENT, ERRNO.ENOENT, ERRNO.EINVAL, 0, 0, ERRNO.ENOENT]);
    expect([...req.bytes]).toEqual([0n, 0n, 0n, 2n * P, P, 0n]);
    expect(mappings(f.fd, f.ioas)).toEqual([]);
    // (0, 2^64-1) unmaps everything, and succeeds on an empty IOAS.
    f.fd.ioasMap(f.ioas, { iova: b, length: P, phys: PHYS });
    const all = unmapReq([[0n, U64], [0n, U64]]);
    expect(f.fd.ioasUnmapBatch(f.ioas, all)).toBe(2);
    expect([...all.bytes]).toEqual([P, 0n]);
  });

  test('ENOMEM in one entry leaves that one absent and the others applied', () => {
    const f = ioasFixture(ONE_DEVICE);
    const b = APSTART;
    // Far apart, so each entry needs new table pages; the first fallible step (entry 0's) fails.
    const req = mapReq([[b, P, PHYS], [b + (1n << 40n), P, PHYS], [b + (2n << 40n), P, PHYS]]);
    failNth(f.fd, 1);
    expect(f.fd.ioasMapBatch(f.ioas, req)).toBe(2);
    expect([...req.results]).toEqual([ERRNO.ENOMEM, 0, 0]);
    expect(mappings(f.fd, f.ioas).map((m) => m.iova)).toEqual([b + (1n << 40n), b + (2n << 40n)]);
    expect(f.iommu.translate(f.devs[0]!.rid, NO_PASID, b, Access.Read).ok).toBe(false);
  });

  test('a malformed batch throws and applies nothing', () => {
    const f = ioasFixture(ONE_DEVICE);
    const good = [[APSTART, P, PHYS]];
    const bad: [Errno, unknown][] = [
      ['EINVAL', null],
      ['EINVAL', { entries: [APSTART, P, PHYS], results: new Int32Array(1) }], // not a BigUint64Array
      ['EINVAL', { entries: new BigUint64Array(4), results: new Int32Array(2) }], // not 3 words per entry
      ['EINVAL', { entries: BigUint64Array.from(good.flat()), results: new Int32Array(0) }], // results too short
      ['EINVAL', { entries: BigUint64Array.from(good.flat()), results: new Uint32Array(1) }],
      ['EINVAL', { entries: BigUint64Array.from(good.flat()), results: new Int32Array(1), perms: [3] }],
      ['EINVAL', { entries: BigUint64Array.from(good.flat()), results: new Int32Array(1), perms: new Uint8Array(0) }],
    ];
    for (const [errno, batch] of bad) expectErrno(errno, () => f.fd.ioasMapBatch(f.ioas, batch as never));
    expectErrno('ENOENT', () => f.fd.ioasMapBatch(f.ioas + 100, mapReq(good)));
    expectErrno('EINVAL', () => f.fd.ioasMapBatch(1.5, mapReq(good)));
    expectErrno('EINVAL', () => f.fd.ioasUnmapBatch(f.ioas, { entries: new BigUint64Array(3), results: new Int32Array(2) }));
    expectErrno('EINVAL', () => f.fd.ioasUnmapBatch(f.ioas, { ...unmapReq([[APSTART, P]]), bytes: new BigUint64Array(0) }));
    expectErrno('ENOENT', () => f.fd.ioasUnmapBatch(f.ioas + 100, unmapReq([[APSTART, P]])));
    expect(mappings(f.fd, f.ioas)).toEqual([]);
    f.fd.close();
    expectErrno('EBADF', () => f.fd.ioasMapBatch(f.ioas, mapReq(good)));
  });

  test('property: random request lists give the same outcomes, mappings and translations as per-call', () => {
    let seed = 0x1234567;
    const next = (n: number): number => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return (seed >>> 8) % n;
    };
    // Few slots so that overlaps, holes and repeats are common; lengths of 1-3 pages, odd values too.
    const iovaOf = (): bigint => [APSTART + BigInt(next(12)) * P, APSTART + BigInt(next(12)) * P + BigInt(next(2)), 0n, U64 - P][next(8) < 6 ? 0 : next(4)]!;
    const lengthOf = (): bigint => [P, 2n * P, 3n * P, 0n, P + 1n, U64][next(10) < 7 ? next(3) : 3 + next(3)]!;
    for (let round = 0; round < 40; round++) {
      const a = ioasFixture(ONE_DEVICE);
      const b = ioasFixture(ONE_DEVICE);
      for (let step = 0; step < 6; step++) {
        const n = 1 + next(12);
        if (next(2) === 0) {
          const entries = Array.from({ length: n }, () => [iovaOf(), lengthOf(), PHYS + BigInt(next(8)) * P]);
          const perms = Array.from({ length: n }, () => [3, 3, 3, MAP_READ, MAP_WRITE, 0, 4][next(7)]!);
          const req = mapReq(entries, perms);
          const applied = a.fd.ioasMapBatch(a.ioas, req);
          const want = entries.map(([iova, length, phys], i) =>
            outcome(() => perms[i]! & ~3 ? fail() : b.fd.ioasMap(b.ioas, { iova: iova!, length: length!, phys: phys!, read: (perms[i]! & 1) !== 0, write: (perms[i]! & 2) !== 0 })));
          expect([...req.results], `round ${round} step ${step} map`).toEqual(want);
          expect(applied).toBe(want.filter((e) => e === 0).length);
        } else {
          const entries = Array.from({ length: n }, () => (next(10) === 0 ? [0n, U64] : [iovaOf(), lengthOf()]));
          expectUnmapLikePerCall(a, b, entries, `round ${round} step ${step} unmap`);
        }
        expect(mappings(a.fd, a.ioas)).toEqual(mappings(b.fd, b.ioas));
        expectSameTranslations(a, b);
      }
    }
  });

  test('property: valid-looking entries in few slots (the fast path, and its undo on an overlap or a repeat) match per-call', () => {
    let seed = 0x7654321;
    const next = (n: number): number => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return (seed >>> 8) % n;
    };
    // Every entry passes its own checks; overlaps with the table, with each other and repeats are
    // what decide the outcome.
    for (let round = 0; round < 30; round++) {
      const a = ioasFixture(ONE_DEVICE);
      const b = ioasFixture(ONE_DEVICE);
      for (let step = 0; step < 8; step++) {
        const n = 1 + next(6);
        const slot = (): bigint => APSTART + BigInt(next(24)) * P;
        if (next(2) === 0) {
          const entries = Array.from({ length: n }, () => [slot(), P * BigInt(1 + next(2)), PHYS + BigInt(next(8)) * P]);
          const req = mapReq(entries);
          const applied = a.fd.ioasMapBatch(a.ioas, req);
          const want = entries.map(([iova, length, phys]) => outcome(() => b.fd.ioasMap(b.ioas, { iova: iova!, length: length!, phys: phys! })));
          expect([...req.results], `round ${round} step ${step} map`).toEqual(want);
          expect(applied).toBe(want.filter((e) => e === 0).length);
        } else {
          const areas = mappings(a.fd, a.ioas);
          const entries = Array.from({ length: n }, () => {
            const m = areas[next(areas.length + 1)];
            return m === undefined ? [slot(), P] : [m.iova, m.last - m.iova + 1n];
          });
          expectUnmapLikePerCall(a, b, entries, `round ${round} step ${step} unmap`);
        }
        expect(mappings(a.fd, a.ioas)).toEqual(mappings(b.fd, b.ioas));
        expectSameTranslations(a, b);
      }
    }
  });

  // Requests that do not overlap each other are checked all at once and installed with one engine
  // call per domain (io-pagetable mapMany/unmapMany); these compare that path with per-call.
  const layouts: [string, Topology, number][] = [
    ['no domain', NO_DEVICE, 0],
    ['one domain', ONE_DEVICE, 0],
    ['two domains', ONE_DEVICE, 1],
  ];
  for (const [name, topology, extraHwpts] of layouts) {
    test(`property (${name}): non-overlapping batches, with failures and ENOMEM, match per-call`, () => {
      let seed = 0x2468ace ^ extraHwpts;
      const next = (n: number): number => {
        seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
        return (seed >>> 8) % n;
      };
      const fixture = (): IoasFixture => {
        const f = ioasFixture(topology);
        for (let k = 0; k < extraHwpts; k++) f.fd.hwptAlloc({ devId: f.devIds[0]!, ptId: f.ioas });
        return f;
      };
      for (let round = 0; round < 12; round++) {
        const a = fixture();
        const b = fixture();
        for (let step = 0; step < 5; step++) {
          // Distinct page slots far apart (each needs new table pages), in shuffled order; some
          // entries fail their checks (misaligned phys, zero length, output beyond the tables).
          const slots = [...new Set(Array.from({ length: 1 + next(24) }, () => next(64)))].sort(() => next(3) - 1);
          const failAt = next(3) === 0 ? 1 + next(6) : 0; // the engine's nth fallible step fails (ENOMEM)
          if (next(2) === 0) {
            const entries = slots.map((slot) => {
              const kind = next(12);
              const phys = kind === 0 ? PHYS + 1n : kind === 1 ? 1n << 60n : PHYS + BigInt(next(8)) * P;
              return [APSTART + (BigInt(slot) << 31n), kind === 2 ? 0n : P * BigInt(1 + next(2)), phys];
            });
            const req = mapReq(entries);
            if (failAt) failNth(a.fd, failAt);
            const applied = a.fd.ioasMapBatch(a.ioas, req);
            if (failAt) failNth(b.fd, failAt);
            const want = entries.map(([iova, length, phys]) => outcome(() => b.fd.ioasMap(b.ioas, { iova: iova!, length: length!, phys: phys! })));
            failNth(a.fd, 0);
            failNth(b.fd, 0);
            expect([...req.results], `${name} round ${round} step ${step} map`).toEqual(want);
            expect(applied).toBe(want.filter((e) => e === 0).length);
          } else {
            const entries = slots.map((slot) => [APSTART + (BigInt(slot) << 31n), P * BigInt(1 + next(2))]);
            expectUnmapLikePerCall(a, b, entries, `${name} round ${round} step ${step} unmap`);
          }
          expect(mappings(a.fd, a.ioas)).toEqual(mappings(b.fd, b.ioas));
          if (a.devs.length > 0) expectSameTranslations(a, b, (slot) => APSTART + (BigInt(slot) << 31n), 64);
        }
      }
    });
  }
});

/** `entries` as one ioasUnmapBatch on `a` and as ioasUnmap calls on `b`: same results, bytes and count. */
function expectUnmapLikePerCall(a: IoasFixture, b: IoasFixture, entries: bigint[][], what: string): void {
  const req = unmapReq(entries);
  const applied = a.fd.ioasUnmapBatch(a.ioas, req);
  const bytes: bigint[] = [];
  const want = entries.map(([iova, length]) => {
    let done = 0n;
    const e = outcome(() => (done = b.fd.ioasUnmap(b.ioas, iova!, length!)));
    bytes.push(done);
    return e;
  });
  expect([...req.results], what).toEqual(want);
  expect([...req.bytes]).toEqual(bytes);
  expect(applied).toBe(want.filter((e) => e === 0).length);
}

/** An unknown perm bit: what the batch reports (EOPNOTSUPP) before the per-call path is asked. */
function fail(): never {
  throw new IommuError('EOPNOTSUPP', 'ioasMapBatch', 'unknown perm bit');
}

function expectSameTranslations(a: IoasFixture, b: IoasFixture, pageAt = (i: number): bigint => APSTART + BigInt(i) * P, pages = 16): void {
  for (let i = 0; i < pages; i++) {
    const iova = pageAt(i) + 8n;
    for (const access of [Access.Read, Access.Write]) {
      const x = a.iommu.translate(a.devs[0]!.rid, NO_PASID, iova, access);
      const y = b.iommu.translate(b.devs[0]!.rid, NO_PASID, iova, access);
      expect([x.ok, x.phys, x.perm]).toEqual([y.ok, y.phys, y.perm]);
    }
  }
}

