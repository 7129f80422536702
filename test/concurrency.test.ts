// The concurrency contract (docs/architecture.md, "Concurrency"), checked with real worker translators over shared memory:
// while the owner maps and unmaps pages (each in its own leaf table, which an unmap leaves as a
// spare table and the next map revives: assembly/spare.ts), one call per page or a whole round per
// batch call, workers translate them per call and in batches and check every result against the
// schedule in workers/schedule.mjs. Bounded: about 1.5 s of racing per test.
import { existsSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import { describe, expect, test } from 'vitest';
import type { WorkerReport } from './workers/report';
import { MAP_READ, type IommuFd } from '../src/index';
// The workers load dist/ (plain JS); the owner uses the same build so both sides share one ABI.
const dist = new URL('../dist/index.js', import.meta.url);
const workerUrl = new URL('./workers/contract-worker.mjs', import.meta.url);
const { physOf, pageOf, mapsAt } = await import('./workers/schedule.mjs');
const { waitForProgress } = await import('./workers/progress.mjs');

const PAGES = 64;
const STRIDE = 2 * 1024 * 1024; // one page per leaf table: unmap leaves it spare, map revives it
const BASE = 1024 * 1024 * 1024;
const RACE_MS = 1500;


describe.skipIf(!existsSync(dist))('concurrency contract with worker translators', () => {
  /**
   * Races three workers (per call on the RID, batched on the PASID, batched on the RID) against the
   * owner running the schedule: `round` makes the control calls of the round of PAGES versions from
   * `first`, calling `returned(v)` once the call that made version v has returned; `inFlight` is how
   * many versions one control call makes at most.
   */
  async function race(round: (fd: IommuFd, ioas: number, first: number, returned: (v: number) => void) => void, inFlight: number): Promise<void> {
    const { Iommu } = await import(dist.href);
    const iommu = Iommu.createSync();
    expect(iommu.shared).toBe(true);
    const dev = iommu.addDevice({ bdf: '00:04.0' });
    const fd = iommu.open();
    const ioas = fd.ioasAlloc();
    const devId = dev.bind(fd);
    const hwpt = fd.hwptAlloc({ devId, ptId: ioas, pasid: true });
    dev.attach(hwpt);
    const pasid = fd.pasidAlloc();
    dev.attach(hwpt, { pasid });

    const control = new SharedArrayBuffer(16);
    const ctl = new Int32Array(control);
    const spawn = (usePasid: boolean, useBatch: boolean): Promise<WorkerReport> =>
      new Promise((resolve, reject) => {
        const w = new Worker(workerUrl, {
          workerData: { handle: iommu.translatorHandle({ batchCapacity: 64 }), control, rid: dev.rid,
            pasid: usePasid ? pasid : 0, pages: PAGES, stride: STRIDE, base: BASE, useBatch, inFlight },
        });
        w.once('message', resolve);
        w.once('error', reject);
      });
    const reports = [spawn(false, false), spawn(true, true), spawn(false, true)];
    while (Atomics.load(ctl, 2) < reports.length) await new Promise((r) => setTimeout(r, 5));

    let version = 0;
    const end = performance.now() + RACE_MS;
    while (performance.now() < end) {
      round(fd, ioas, version + 1, (v) => Atomics.store(ctl, 1, v));
      version += PAGES;
      await new Promise((r) => setImmediate(r));
    }
    Atomics.store(ctl, 0, 1);
    const results = await Promise.all(reports);
    for (const r of results) {
      expect(r.firstViolation, JSON.stringify(r.firstViolation)).toBeUndefined();
      expect(r.violations).toBe(0);
      expect(r.checked).toBeGreaterThan(1000);
      expect(r.ok).toBeGreaterThan(0); // the race really mixed hits with faults
      expect(r.ok).toBeLessThan(r.checked);
    }
    expect(version).toBeGreaterThan(1000);
    fd.close();
  }

  test('translations racing map/unmap see the old or the new state, never stale or garbage', async () => {
    await race((fd, ioas, first, returned) => {
      for (let v = first; v < first + PAGES; v++) {
        const iova = BASE + pageOf(v, PAGES) * STRIDE;
        if (mapsAt(v, PAGES)) fd.ioasMap(ioas, { iova, length: 4096, phys: physOf(v), write: false });
        else fd.ioasUnmap(ioas, iova, 4096);
        returned(v);
      }
    }, 1);
  });

  test('translations racing batched map/unmap (a whole round per ioasMapBatch/ioasUnmapBatch) see the old or the new state', async () => {
    await race((fd, ioas, first, returned) => {
      const iovas = Array.from({ length: PAGES }, (_, i) => BigInt(BASE + pageOf(first + i, PAGES) * STRIDE));
      const results = new Int32Array(PAGES);
      const done = mapsAt(first, PAGES)
        ? fd.ioasMapBatch(ioas, { entries: BigUint64Array.from(iovas.flatMap((iova, i) => [iova, 4096n, BigInt(physOf(first + i))])), perms: new Uint8Array(PAGES).fill(MAP_READ), results })
        : fd.ioasUnmapBatch(ioas, { entries: BigUint64Array.from(iovas.flatMap((iova) => [iova, 4096n])), results });
      expect(done).toBe(PAGES);
      returned(first + PAGES - 1);
    }, PAGES);
  });

  test('after detach returns, no worker translation succeeds; after re-attach they do again', async () => {
    const { Iommu } = await import(dist.href);
    const iommu = Iommu.createSync();
    const dev = iommu.addDevice({ bdf: '00:05.0' });
    const fd = iommu.open();
    const ioas = fd.ioasAlloc();
    fd.ioasMap(ioas, { iova: BASE, length: PAGES * STRIDE, phys: 0x2_0000_0000 });
    dev.bind(fd);
    const control = new SharedArrayBuffer(20);
    const ctl = new Int32Array(control);
    // Versions alternate attach (odd) and detach (even); the worker records, per result, whether
    // it began after a detach had returned with no later attach begun: such a result must fault.
    const worker = new Worker(new URL('./workers/detach-worker.mjs', import.meta.url), {
      workerData: { handle: iommu.translatorHandle(), control, rid: dev.rid, base: BASE, stride: STRIDE, pages: PAGES },
    });
    const report = new Promise<{ checked: number; stale: number; ok: number }>((resolve, reject) => {
      worker.once('message', resolve);
      worker.once('error', reject);
    });
    while (Atomics.load(ctl, 2) < 1) await new Promise((r) => setTimeout(r, 5));
    let version = 0;
    const end = performance.now() + RACE_MS / 2;
    while (performance.now() < end) {
      for (let i = 0; i < 32; i++) {
        const v = ++version;
        Atomics.store(ctl, 3, v); // version v is starting
        if (v % 2 === 1) dev.attach(ioas);
        else dev.detach();
        Atomics.store(ctl, 1, v); // version v has returned
        // Once a round, stay attached until the worker has translated (at most 20 ms).
        if (v % 2 === 1 && i === 0) waitForProgress(ctl, 4, Atomics.load(ctl, 4), 20);
      }
      await new Promise((r) => setImmediate(r));
    }
    Atomics.store(ctl, 0, 1);
    const r = await report;
    expect(r.stale).toBe(0);
    expect(r.checked).toBeGreaterThan(1000);
    expect(r.ok).toBeGreaterThan(0);
    fd.close();
  });
});
