// Worker translators racing an owner that grows the memory (assembly/reach.ts): the owner maps
// pages one after another, each in a leaf table of its own, and unmaps the oldest (a sliding window
// of LIVE pages), so table pages are allocated from the top of a pool that keeps growing, retired,
// and reused; in between it allocates and releases batch buffers of growing size (the memory
// grows under them, and their freed runs at the top are given back and reused by tables), reads
// and clears dirty bitmaps, and creates and releases translator handles. Workers translate the
// pages around the frontier, per call and in batches, reads and writes (marking D bits).
// Checked: no worker traps (before reach.ts, a walk could load through a table pointer into
// memory its thread had not yet seen grow: "memory access out of bounds"), a result is a fault or
// the page's own mapping, never garbage, and a page mapped before a request began and not yet
// being unmapped when it ended translates. Bounded: about 1.5 s of racing.
import { existsSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import { describe, expect, test } from 'vitest';
import type { WorkerReport } from './workers/report';

const dist = new URL('../dist/index.js', import.meta.url);
const STRIDE = 2 * 1024 * 1024;
const BASE = 2 ** 32;
const PHYS = 2 ** 36;
const LIVE = 256;
const RACE_MS = 1500;


describe.skipIf(!existsSync(dist))('worker translators while the owner grows the memory', () => {
  test('walks through freshly grown and reused table pages never trap and never return garbage', async () => {
    const { Iommu } = await import(dist.href);
    const iommu = Iommu.createSync({ maxMemoryBytes: 96 << 20, translators: 6 });
    expect(iommu.shared).toBe(true);
    const dev = iommu.addDevice({ bdf: '00:06.0', dirty: true });
    const fd = iommu.open();
    const ioas = fd.ioasAlloc();
    const devId = dev.bind(fd);
    const hwpt = fd.hwptAlloc({ devId, ptId: ioas, dirtyTracking: true });
    dev.attach(hwpt);
    fd.hwptSetDirtyTracking(hwpt, true);

    const control = new SharedArrayBuffer(16);
    const ctl = new Int32Array(control);
    const workers: Worker[] = [];
    const spawn = (useBatch: boolean): Promise<WorkerReport> =>
      new Promise((resolve, reject) => {
        const w = new Worker(new URL('./workers/grow-worker.mjs', import.meta.url), {
          workerData: { handle: iommu.translatorHandle({ batchCapacity: 32 }), control, rid: dev.rid,
            base: BASE, stride: STRIDE, phys: PHYS, live: LIVE, useBatch },
        });
        workers.push(w);
        w.once('message', resolve);
        w.once('error', reject);
      });
    const reports = [spawn(false), spawn(true), spawn(true)];
    while (Atomics.load(ctl, 2) < reports.length) await new Promise((r) => setTimeout(r, 5));

    const startBytes = iommu.memory.buffer.byteLength;
    let n = 0;
    let held: { release(): void } | undefined;
    let bufferPages = 8;
    const end = performance.now() + RACE_MS;
    while (performance.now() < end) {
      for (let i = 0; i < 32; i++, n++) {
        if (n >= LIVE) fd.ioasUnmap(ioas, BASE + (n - LIVE) * STRIDE, 4096);
        fd.ioasMap(ioas, { iova: BASE + n * STRIDE, length: 4096, phys: PHYS + n * 4096 });
        Atomics.store(ctl, 1, n + 1); // pages [n + 1 - LIVE, n + 1) are mapped
      }
      // Buffers: a larger one each time (up to 16 MiB) grows the memory; the one before is released.
      held?.release();
      bufferPages = bufferPages >= 4096 ? 16 : bufferPages * 2;
      held = iommu.batch(bufferPages * 128); // a 16-byte request and a 16-byte result each
      fd.hwptGetDirtyBitmap(hwpt, { iova: BASE + Math.max(n - LIVE, 0) * STRIDE, length: LIVE * STRIDE, pageSize: 4096 });
      iommu.translatorRelease(iommu.translatorHandle({ batchCapacity: 1024 }));
      await new Promise((r) => setImmediate(r));
    }
    Atomics.store(ctl, 0, 1);
    const results = await Promise.all(reports);
    held?.release();
    for (const r of results) {
      expect(r.firstViolation, JSON.stringify(r.firstViolation)).toBeUndefined();
      expect(r.violations).toBe(0);
      expect(r.checked).toBeGreaterThan(1000);
      expect(r.ok).toBeGreaterThan(0);
    }
    expect(n).toBeGreaterThan(2 * LIVE); // pages were unmapped and their tables reused
    expect(iommu.memory.buffer.byteLength - startBytes).toBeGreaterThan(8 << 20); // the memory grew while they ran
    fd.close();
  });
});
