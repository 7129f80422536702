/**
 * Batch translation tests (issue 2, item 4): `iommu.batch(capacity)` against per-call
 * `translate` and the reference of test/reference-walk.ts.
 * - a mixed set (hits, misses, every fault reason, IOVAs past 2^53 written as words) gives the
 *   same answers in a batch as one call at a time, decoded by the layout documented in src/dma/batch.ts;
 * - `run(n)` translates only the first n records; faults are counted, not logged;
 * - capacity and argument errors; values a request record cannot hold are bad requests;
 * - the views follow the memory when it grows (unshared memory).
 */
import { describe, test, expect } from 'vitest';
import { Iommu } from '../src/index';
import type { Batch } from '../src/dma/batch';
import {
  PAGE, MiB2, GiB, U64_MAX, READ, WRITE, EXEC, PRIV, NO_PASID, REASONS, Rig, RefSpace, area, expectErrno, fromTranslation, hex,
  type Expected,
} from './reference-walk';

interface Request {
  rid: number;
  pasid: number;
  iova: bigint;
  access: number;
}

const TWO_32 = 1n << 32n;

/** Writes request `i` word by word, as the module comment lays it out (any 64-bit IOVA). */
function writeWords(batch: Batch, i: number, r: Request): void {
  const words = batch.requests;
  words[4 * i] = r.rid | (r.access << 16);
  words[4 * i + 1] = r.pasid;
  words[4 * i + 2] = Number(r.iova % TWO_32);
  words[4 * i + 3] = Number(r.iova / TWO_32);
}

/**
 * Result `i` decoded from its four words by the documented layout alone. The fourth word is
 * reserved: the engine never writes it, so it reads 0 unless the caller wrote there.
 */
function decodeWords(batch: Batch, i: number, reservedWord: number | undefined = 0): Expected {
  const w = batch.results;
  const phys = (BigInt(w[4 * i + 1]!) << 32n) | BigInt(w[4 * i]!);
  const info = w[4 * i + 2]!;
  if (reservedWord !== undefined) expect(w[4 * i + 3], `result ${i}: reserved word`).toBe(reservedWord);
  if (info & 1) return { ok: true, phys, size: 1n << BigInt((info >>> 8) & 63), perm: (info >>> 1) & 7, reason: 'none', level: 0, stage: 0 };
  return { ok: false, phys, size: 0n, perm: 0, reason: REASONS[(info >>> 16) & 255]!, level: (info >>> 24) & 15, stage: (info >>> 28) & 3 };
}

/**
 * A 57-bit engine: a device with RID and PASID attachments over 4K, 2M, 1G, read-only and
 * write-only leaves and a page just below 2^57; a device without PASIDs; one bound but detached.
 */
function fixture() {
  const rig = new Rig(Iommu.createSync({ addressWidth: 57 }));
  const fd = rig.iommu.open();
  const dev = rig.device('00:06.0');
  const noPasid = rig.device('00:07.0', 0);
  const idle = rig.device('00:08.0');
  for (const d of [dev, noPasid, idle]) d.bind(fd);
  const space = new RefSpace('batch');
  const ioas = fd.ioasAlloc();
  rig.map(fd, ioas, space, area(0x1000n, 8n * PAGE, 0x9_0000_1000n));
  rig.map(fd, ioas, space, area(0x20_0000n, MiB2, 0x8_0020_0000n, { write: false }));
  rig.map(fd, ioas, space, area(GiB, GiB, 0x40_0000_0000n));
  rig.map(fd, ioas, space, area(0x80_0000n, PAGE, 0x9_1000_0000n, { read: false }));
  rig.map(fd, ioas, space, area(TOP - 2n * PAGE, 2n * PAGE, 0xa_0000_0000n));
  const hwpt = fd.hwptAlloc({ devId: dev.devId!, ptId: ioas, pasid: true });
  const pasid = fd.pasidAlloc({ pasid: 0x5_5555 });
  rig.attach(dev, hwpt, space);
  rig.attach(dev, hwpt, space, pasid);
  rig.attach(noPasid, ioas, space);
  return { rig, fd, dev, noPasid, idle, pasid };
}

const TOP = 1n << 57n;

/** Hits, misses and every fault reason, with IOVAs from 0 to 2^64-1. */
function mixedRequests(f: ReturnType<typeof fixture>): Request[] {
  const { dev, noPasid, idle, pasid } = f;
  const at = (rid: number, p: number, iova: bigint, access = READ): Request => ({ rid, pasid: p, iova, access });
  const mapped = [0x1234n, 0x8fffn, 0x20_0000n, 0x3f_ffffn, GiB, GiB + 0x1234_5678n, 2n * GiB - 1n, TOP - 1n, TOP - 2n * PAGE + 5n];
  return [
    ...mapped.map((iova) => at(dev.rid, NO_PASID, iova)),
    ...mapped.map((iova) => at(dev.rid, pasid, iova, READ | PRIV)),
    ...mapped.map((iova) => at(dev.rid, NO_PASID, iova)), // the same again: hits
    at(dev.rid, NO_PASID, 0x1000n, WRITE),
    at(dev.rid, NO_PASID, 0x1000n, EXEC),
    at(noPasid.rid, NO_PASID, GiB + 7n, WRITE),
    at(dev.rid, NO_PASID, 0x1000n, 16), // bad-request: access
    at(dev.rid, 1 << 20, 0x1000n), // bad-request: PASID
    at(0x0900, NO_PASID, 0x1000n), // no-device
    at(idle.rid, NO_PASID, 0x1000n), // not-attached
    at(dev.rid, 0x777, 0x1000n), // not-attached: a PASID nobody attached
    at(noPasid.rid, 3, 0x1000n), // pasid-invalid
    at(dev.rid, NO_PASID, TOP), // beyond-width
    at(dev.rid, pasid, U64_MAX), // beyond-width
    at(dev.rid, NO_PASID, (1n << 57n) + 0x1000n), // beyond-width, with a cached page number
    at(dev.rid, NO_PASID, 1n << 50n), // not-present, level 4
    at(dev.rid, NO_PASID, 3n * GiB), // not-present, level 2
    at(dev.rid, NO_PASID, 0x40_0000n), // not-present, level 1
    at(dev.rid, NO_PASID, 0xa000n), // not-present, level 0
    at(dev.rid, NO_PASID, 0x20_1000n, WRITE), // permission, 2M leaf
    at(dev.rid, pasid, 0x80_0000n, EXEC), // permission, 4K leaf
  ];
}

describe('batch results', () => {
  test('a mixed set gives the per-call answers and the reference answers, record by record', () => {
    const f = fixture();
    const requests = mixedRequests(f);
    const batch = f.rig.iommu.batch(requests.length);
    requests.forEach((r, i) => writeWords(batch, i, r));
    const faults = batch.run(requests.length);
    const fromBatch = requests.map((_, i) => decodeWords(batch, i));
    requests.forEach((r, i) => f.rig.compare(fromBatch[i]!, r.rid, r.pasid, r.iova, r.access, `record ${i}`));
    requests.forEach((r, i) => {
      expect(fromBatch[i], `record ${i} vs translate()`).toEqual(fromTranslation(f.rig.iommu.translate(r.rid, r.pasid, r.iova, r.access)));
    });
    expect(faults).toBe(fromBatch.filter((e) => !e.ok).length);
    // Every reason is in the set.
    expect(new Set(fromBatch.map((e) => e.reason))).toEqual(new Set(REASONS));
    // The accessors agree with the words.
    fromBatch.forEach((e, i) => {
      expect(batch.ok(i)).toBe(e.ok);
      expect(batch.perm(i)).toBe(e.perm);
      expect(batch.sizeLg2(i)).toBe(e.ok ? Number(e.size).toString(2).length - 1 : 0);
      expect(REASONS[batch.reason(i)]).toBe(e.reason);
      if (e.phys < 1n << 53n) expect(batch.phys(i)).toBe(Number(e.phys));
    });
  });

  test('a second run of the same records hits for every translation and gives the same words', () => {
    const f = fixture();
    const requests = mixedRequests(f);
    const batch = f.rig.iommu.batch(requests.length);
    requests.forEach((r, i) => writeWords(batch, i, r));
    batch.run();
    const first = [...batch.results];
    const before = f.rig.iommu.stats();
    batch.run();
    const after = f.rig.iommu.stats();
    expect([...batch.results]).toEqual(first);
    const translated = requests.filter((_, i) => batch.ok(i)).length;
    expect(after.hits - before.hits).toBe(translated);
    expect(after.misses - before.misses).toBe(requests.length - translated - 2); // bad requests are neither
  });

  test('set() writes the documented words; for IOVAs below 2^53 it equals writing them directly', () => {
    const f = fixture();
    const requests = mixedRequests(f).filter((r) => r.iova < 1n << 53n);
    const bySet = f.rig.iommu.batch(requests.length);
    const byWords = f.rig.iommu.batch(requests.length);
    requests.forEach((r, i) => {
      bySet.set(i, r.rid, r.pasid, Number(r.iova), r.access);
      writeWords(byWords, i, r);
    });
    expect([...bySet.requests]).toEqual([...byWords.requests]);
    expect(bySet.requests[0]).toBe(requests[0]!.rid | (requests[0]!.access << 16));
    bySet.run();
    byWords.run();
    expect([...bySet.results]).toEqual([...byWords.results]);
  });

  test('faults in a batch are counted in stats, not written to the fault log', () => {
    const f = fixture();
    const requests = mixedRequests(f);
    const batch = f.rig.iommu.batch(requests.length);
    requests.forEach((r, i) => writeWords(batch, i, r));
    f.rig.iommu.faults.drain();
    const before = f.rig.iommu.stats();
    const faults = batch.run();
    const after = f.rig.iommu.stats();
    expect(faults).toBeGreaterThan(10);
    expect(after.faults - before.faults).toBe(faults);
    expect(f.rig.iommu.faults.drain()).toEqual([]);
  });
});

describe('run(n)', () => {
  test('translates only the first n records and leaves the other results untouched', () => {
    const f = fixture();
    const batch = f.rig.iommu.batch(8);
    for (let i = 0; i < 8; i++) batch.set(i, f.dev.rid, NO_PASID, 0x1000 + i * 0x1000, i % 2 ? READ : WRITE);
    batch.set(1, 0x0900, NO_PASID, 0, READ); // a fault among the first three
    const sentinel = 0xdeadbeef;
    batch.results.fill(sentinel);
    expect(batch.run(0)).toBe(0);
    expect([...batch.results].every((w) => w === sentinel)).toBe(true);
    expect(batch.run(3)).toBe(1);
    for (let i = 0; i < 8; i++) {
      const words = [...batch.results.subarray(4 * i, 4 * i + 4)];
      if (i < 3) f.rig.compare(decodeWords(batch, i, sentinel), i === 1 ? 0x0900 : f.dev.rid, NO_PASID, BigInt(i === 1 ? 0 : 0x1000 + i * 0x1000), i === 1 ? READ : i % 2 ? READ : WRITE, `record ${i}`);
      else expect(words, `record ${i}`).toEqual([sentinel, sentinel, sentinel, sentinel]);
    }
    expect(batch.run()).toBe(1); // all eight by default
    expect(batch.results[4 * 7 + 2]! & 1).toBe(1);
  });

  test.each([-1, 9, 1.5, NaN, Infinity, '1', 1n, null])('run(%s) on a batch of 8 is a RangeError', (n) => {
    const batch = Iommu.createSync().batch(8);
    expect(() => batch.run(n as number)).toThrow(RangeError);
  });
});

describe('capacity and memory', () => {
  test.each([0, -1, 1.5, NaN, '4', 2 ** 20 + 1, null, {}])('batch(%s) is EINVAL', (capacity) => {
    const iommu = Iommu.createSync();
    expectErrno('EINVAL', () => iommu.batch(capacity as number));
  });

  test('a batch the memory cannot hold is ENOMEM and changes nothing', () => {
    const iommu = Iommu.createSync({ maxMemoryBytes: 4 << 20, shared: false });
    const pages = iommu.stats().tablePages;
    expectErrno('ENOMEM', () => iommu.batch(1 << 20));
    expect(iommu.stats().tablePages).toBe(pages);
    const batch = iommu.batch(16);
    expect(batch.capacity).toBe(16);
    expect(batch.requests.length).toBe(64);
    expect(batch.results.length).toBe(64);
  });

  test('requests and results are views of the engine memory, results right after the requests', () => {
    const iommu = Iommu.createSync();
    const batch = iommu.batch(100);
    expect(batch.requests.buffer).toBe(iommu.memory.buffer);
    expect(batch.results.buffer).toBe(iommu.memory.buffer);
    expect(batch.requests.byteOffset).toBe(batch.requestPtr);
    expect(batch.resultPtr).toBe(batch.requestPtr + 100 * 16);
    expect(batch.results.byteOffset).toBe(batch.resultPtr);
    // Two batches never overlap.
    const other = iommu.batch(100);
    expect(other.requestPtr >= batch.resultPtr + 100 * 16 || other.resultPtr + 100 * 16 <= batch.requestPtr).toBe(true);
  });

  test('unshared memory: the views follow the memory when a map grows it', () => {
    const rig = new Rig(Iommu.createSync({ shared: false }));
    const fd = rig.iommu.open();
    const dev = rig.device('00:09.0');
    dev.bind(fd);
    const space = new RefSpace('grow');
    const ioas = fd.ioasAlloc();
    rig.attach(dev, ioas, space);
    const batch = rig.iommu.batch(4);
    const stale = batch.requests;
    const bytes = rig.iommu.stats().memoryBytes;
    rig.map(fd, ioas, space, area(GiB, GiB, 0x10_0000_1000n)); // output off by a page: 4K leaves, 513 tables
    expect(rig.iommu.stats().memoryBytes).toBeGreaterThan(bytes);
    expect(stale.length).toBe(0); // the old buffer was detached by the growth
    for (let i = 0; i < 4; i++) batch.set(i, dev.rid, NO_PASID, Number(GiB) + i * 0x1234_5678, READ);
    expect(batch.run()).toBe(0);
    for (let i = 0; i < 4; i++) rig.compare(decodeWords(batch, i), dev.rid, NO_PASID, GiB + BigInt(i * 0x1234_5678), READ, `record ${i}`);
  });
});

describe('values a request record cannot hold', () => {
  test('set() turns them into bad requests, as a per-call translate does, never into another device or address', () => {
    const f = fixture();
    const good = { rid: f.dev.rid, pasid: NO_PASID, iova: 0x1000, access: READ };
    const bad: Partial<Record<keyof typeof good, number>>[] = [
      { rid: f.dev.rid + 0x10000 }, { rid: -1 }, { rid: 1.5 }, { rid: NaN },
      { pasid: -1 }, { pasid: 0.5 }, { pasid: NaN }, { pasid: 2 ** 32 },
      { iova: -0x1000 }, { iova: 0x1000 + 0.5 }, { iova: NaN }, { iova: 2 ** 64 }, { iova: Infinity },
      { access: 16 }, { access: 1 << 16 }, { access: -1 }, { access: 1.5 }, { access: NaN },
    ];
    const batch = f.rig.iommu.batch(bad.length + 1);
    batch.set(0, good.rid, good.pasid, good.iova, good.access);
    bad.forEach((b, i) => {
      const r = { ...good, ...b };
      batch.set(i + 1, r.rid, r.pasid, r.iova, r.access);
    });
    expect(batch.run()).toBe(bad.length);
    expect(decodeWords(batch, 0).ok).toBe(true);
    bad.forEach((b, i) => {
      const r = { ...good, ...b };
      const perCall = fromTranslation(f.rig.iommu.translate(r.rid, r.pasid, r.iova, r.access));
      expect(perCall.reason, `${JSON.stringify(b)} per call`).toBe('bad-request');
      expect(decodeWords(batch, i + 1), `${Object.entries(b).map(([k, v]) => `${k} ${hex(v)}`)} in a batch`).toEqual(perCall);
    });
  });
});
