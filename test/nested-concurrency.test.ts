// Concurrency of user-managed tables with real worker translators over shared memory:
//  - hardware A/D updates are compare-and-swap: a guest scribbling on the same PTE words (cleaning
//    A/D, flipping software bits with atomic RMWs) never loses a bit to a walker, and never sees one
//    written to an entry it had changed;
//  - after hwptInvalidate returns (probe, scan or generation paths), and after an unmap in a nest
//    parent's IOAS returns, no translation that starts later returns the old result;
//  - page requests raised by worker translators reach the owner's fault queue.
import { existsSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import { describe, expect, test } from 'vitest';

const dist = new URL('../dist/index.js', import.meta.url);
const workerUrl = new URL('./workers/nested-worker.mjs', import.meta.url);
const RAM = 0x1000_0000n;
const RACE_MS = 1000;
const PAGES = 32;
const A = 0x40n, D = 0x80n, RSW0 = 0x100n, RSW1 = 0x200n;
const leaf = (pa: bigint): bigint => ((pa >> 12n) << 10n) | 0x17n; // V R W U (A/D clear)

interface Report {
  checked: number;
  ok: number;
  violations: number;
  firstViolation?: unknown;
  pageRequests: number;
}

type Dist = typeof import('../src/index');

async function setup(opts: { pri?: boolean } = {}) {
  const m = (await import(dist.href)) as Dist;
  const iommu = m.Iommu.createSync({ ram: { base: RAM, bytes: 4 << 20 }, translators: 6, iotlbEntries: 1024, maxDomains: 16 });
  const dev = iommu.addDevice({ bdf: '00:08.0', pri: opts.pri ?? false });
  const fd = iommu.open();
  const devId = dev.bind(fd);
  const mem = (): BigInt64Array => new BigInt64Array(iommu.memory.buffer);
  const ramOffset = iommu.ram.byteOffset;
  /** Index into mem() of the RAM word at guest-physical `pa`. */
  const word = (pa: bigint): number => (ramOffset + Number(pa - RAM)) / 8;
  // sv39 tables: root at RAM, one level-1 and one level-0 table, PAGES leaves at IOVA 1 MiB + i * 4 KiB.
  const root = RAM, l1 = RAM + 0x1000n, l0 = RAM + 0x2000n;
  const ptr = (t: bigint): bigint => ((t >> 12n) << 10n) | 1n;
  Atomics.store(mem(), word(root), ptr(l1));
  Atomics.store(mem(), word(l1), ptr(l0));
  const iovas = Array.from({ length: PAGES }, (_, i) => 0x10_0000 + i * 0x1000);
  const pteOf = (i: number): bigint => l0 + BigInt(0x100 + i) * 8n;
  return { m, iommu, dev, fd, devId, mem, word, root, iovas, pteOf };
}

function spawn(data: Record<string, unknown>): Promise<Report> {
  return new Promise((resolve, reject) => {
    const w = new Worker(workerUrl, { workerData: data });
    w.once('message', resolve);
    w.once('error', reject);
  });
}

async function race(ctl: Int32Array, workers: number, step: () => void): Promise<void> {
  while (Atomics.load(ctl, 2) < workers) await new Promise((r) => setTimeout(r, 5));
  const end = performance.now() + RACE_MS;
  while (performance.now() < end) {
    for (let i = 0; i < 32; i++) step();
    await new Promise((r) => setImmediate(r));
  }
  Atomics.store(ctl, 0, 1);
}

describe.skipIf(!existsSync(dist))('user-managed tables under worker translators', () => {
  test('A/D compare-and-swap: no update lost either way while the guest rewrites the same PTEs', async () => {
    const s = await setup();
    const base = 0x2_0000_0000n;
    for (let i = 0; i < PAGES; i++) Atomics.store(s.mem(), s.word(s.pteOf(i)), leaf(base + BigInt(i) * 0x1000n));
    const hwpt = s.fd.hwptAlloc({ devId: s.devId, table: { format: 'sv39', root: s.root, hwAccessDirty: true } });
    s.dev.attach(hwpt);
    const control = new SharedArrayBuffer(16);
    const ctl = new Int32Array(control);
    const reports = [0, 1, 2].map(() => spawn({ handle: s.iommu.translatorHandle(), control, rid: s.dev.rid, pasid: 0, mode: 'ad', iovas: s.iovas, base: Number(base) }));
    const flips = new Array<number>(PAGES).fill(0);
    let cleans = 0;
    let k = 0;
    await race(ctl, 3, () => {
      const i = k++ % PAGES;
      const at = s.word(s.pteOf(i));
      // The guest harvests dirty bits and scribbles on its software bits, with atomic RMWs.
      if (k % 3 === 0) {
        Atomics.and(s.mem(), at, ~(A | D));
        s.fd.hwptInvalidate(hwpt, [{ iova: s.iovas[i]!, length: 4096 }]);
        cleans++;
      }
      Atomics.xor(s.mem(), at, RSW0);
      flips[i]!++;
    });
    const results = await Promise.all(reports);
    for (const r of results) {
      expect(r.violations, JSON.stringify(r.firstViolation)).toBe(0);
      expect(r.ok).toBeGreaterThan(1000);
    }
    expect(cleans).toBeGreaterThan(100);
    for (let i = 0; i < PAGES; i++) {
      const e = BigInt.asUintN(64, Atomics.load(s.mem(), s.word(s.pteOf(i))));
      // Every software-bit flip of the guest survived every walker update...
      expect(e & RSW0, `page ${i}`).toBe(flips[i]! % 2 ? RSW0 : 0n);
      expect(e & RSW1).toBe(0n);
      // ...the walker wrote only A and D (D never without A: writes set both)...
      expect(e & ~(A | D | RSW0)).toBe(leaf(base + BigInt(i) * 0x1000n));
      if (e & D) expect(e & A).toBe(A);
    }
    // ...and one more write request dirties every page.
    s.fd.hwptInvalidate(hwpt, [{}]);
    for (let i = 0; i < PAGES; i++) {
      expect(s.iommu.translate(s.dev.rid, 0, s.iovas[i]!, s.m.Access.Write).ok).toBe(true);
      expect(BigInt.asUintN(64, Atomics.load(s.mem(), s.word(s.pteOf(i)))) & (A | D)).toBe(A | D);
    }
    s.fd.close();
  });

  test('after hwptInvalidate returns, no later translation in any worker returns the old page', async () => {
    const s = await setup();
    const base = 0x4_0000_0000n; // version v of a page maps to base + v * 4 KiB
    let version = 0;
    const versions = new SharedArrayBuffer(PAGES * 4);
    const floors = new Int32Array(versions);
    for (let i = 0; i < PAGES; i++) {
      floors[i] = ++version;
      Atomics.store(s.mem(), s.word(s.pteOf(i)), leaf(base + BigInt(floors[i]!) * 0x1000n) | A | D);
    }
    const hwpt = s.fd.hwptAlloc({ devId: s.devId, pasid: true, table: { format: 'sv39', root: s.root } });
    s.dev.attach(hwpt);
    const pasid = s.fd.pasidAlloc();
    s.dev.attach(hwpt, { pasid });
    const control = new SharedArrayBuffer(16);
    const ctl = new Int32Array(control);
    const reports = [
      [0, false], [pasid, false], [0, true], [pasid, true],
    ].map(([p, useBatch]) => spawn({ handle: s.iommu.translatorHandle({ batchCapacity: 4 }), control, versions, rid: s.dev.rid, pasid: p, mode: 'inval', iovas: s.iovas, base: Number(base), useBatch }));
    let k = 0;
    const kinds = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 2, 2, 3, 4];
    await race(ctl, 4, () => {
      const i = k % PAGES;
      const kind = kinds[k++ % kinds.length]!;
      const v = ++version;
      Atomics.store(s.mem(), s.word(s.pteOf(i)), leaf(base + BigInt(v) * 0x1000n) | A | D);
      const iova = s.iovas[i]!;
      const entries = [
        [{ iova, length: 1 }], // probe the page's sets (both PASIDs attached)
        [{ iova: 0, length: 1 << 30 }], // scan
        [{ pasid: 0 }, { pasid }], // scan per PASID
        [{ iova, length: 4096, pasid: 0 }, { iova, length: 4096, pasid }], // probe per PASID
        [{}], // generation
      ][kind]!;
      s.fd.hwptInvalidate(hwpt, entries);
      Atomics.store(floors, i, v); // version v is the oldest any later translation may return
    });
    const results = await Promise.all(reports);
    for (const r of results) {
      expect(r.violations, JSON.stringify(r.firstViolation)).toBe(0);
      expect(r.checked).toBeGreaterThan(1000);
      expect(r.ok).toBe(r.checked);
    }
    expect(version).toBeGreaterThan(1000);
    s.fd.close();
  });

  test('after an unmap in the nest parent returns, no later nested translation returns the old page', async () => {
    const s = await setup();
    const base = 0x4_0000_0000n;
    const ioas = s.fd.ioasAlloc();
    // Stage-1 tables at GPA = RAM offset (identity over RAM's first 64 KiB); data GPA 8 MiB + i * 4 KiB.
    s.fd.ioasMap(ioas, { iova: 0, length: 0x1_0000, phys: RAM });
    const rewrite = (gpa: bigint): bigint => ((gpa >> 12n) << 10n) | 1n;
    Atomics.store(s.mem(), s.word(s.root), rewrite(0x1000n));
    Atomics.store(s.mem(), s.word(RAM + 0x1000n), rewrite(0x2000n));
    const dataGpa = (i: number): bigint => 0x80_0000n + BigInt(i) * 0x1000n;
    for (let i = 0; i < PAGES; i++) Atomics.store(s.mem(), s.word(s.pteOf(i)), leaf(dataGpa(i)) | A | D);
    const versions = new SharedArrayBuffer(PAGES * 4);
    const floors = new Int32Array(versions);
    let version = 0;
    for (let i = 0; i < PAGES; i++) {
      floors[i] = ++version;
      s.fd.ioasMap(ioas, { iova: dataGpa(i), length: 4096, phys: base + BigInt(floors[i]!) * 0x1000n });
    }
    const parent = s.fd.hwptAlloc({ devId: s.devId, ptId: ioas, nestParent: true });
    const nested = s.fd.hwptAlloc({ devId: s.devId, ptId: parent, table: { format: 'sv39', root: 0 } });
    s.dev.attach(nested);
    const control = new SharedArrayBuffer(16);
    const ctl = new Int32Array(control);
    const reports = [false, true, false].map((useBatch) => spawn({ handle: s.iommu.translatorHandle({ batchCapacity: 4 }), control, versions, rid: s.dev.rid, pasid: 0, mode: 'inval', iovas: s.iovas, base: Number(base), useBatch }));
    let k = 0;
    await race(ctl, 3, () => {
      const i = k++ % PAGES;
      const v = ++version;
      s.fd.ioasUnmap(ioas, dataGpa(i), 4096);
      Atomics.store(floors, i, v); // the old page is gone from here on (faults until the map)
      s.fd.ioasMap(ioas, { iova: dataGpa(i), length: 4096, phys: base + BigInt(v) * 0x1000n });
    });
    const results = await Promise.all(reports);
    for (const r of results) {
      expect(r.violations, JSON.stringify(r.firstViolation)).toBe(0);
      expect(r.checked).toBeGreaterThan(1000);
      expect(r.ok).toBeGreaterThan(0);
    }
    s.fd.close();
  });

  test('page requests raised by worker translators reach the owner fault queue', async () => {
    const s = await setup({ pri: true });
    const q = s.fd.faultQueueAlloc();
    const hwpt = s.fd.hwptAlloc({ devId: s.devId, faultId: q.id, table: { format: 'sv39', root: s.root } });
    s.dev.attach(hwpt); // every leaf is empty: each request faults not-present
    const control = new SharedArrayBuffer(16);
    const ctl = new Int32Array(control);
    const reports = [0, 1].map(() => spawn({ handle: s.iommu.translatorHandle(), control, rid: s.dev.rid, pasid: 0, mode: 'prq', iovas: s.iovas, base: 0 }));
    const seen = new Set<bigint>();
    let read = 0;
    await race(ctl, 2, () => {
      const reqs = q.fd.read();
      read += reqs.length;
      for (const r of reqs) {
        expect(r.devId).toBe(s.devId);
        seen.add(r.addr);
      }
      if (reqs.length) q.fd.write(reqs.map((r) => ({ cookie: r.cookie, code: 'invalid' as const })));
    });
    const results = await Promise.all(reports);
    read += q.fd.read().length;
    const raised = results.reduce((n, r) => n + r.pageRequests, 0);
    expect(raised).toBeGreaterThan(0);
    expect(read).toBeGreaterThan(0);
    expect(read).toBeLessThanOrEqual(raised); // duplicates of an outstanding request are merged
    for (const a of seen) expect(s.iovas).toContain(Number(a));
    s.fd.close();
  });
});
