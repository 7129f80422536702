// The per-call paths under worker translators (issue 14): `translateInto` with number and bigint
// IOVAs, and `dmaRead` spanning two pages (copied as one run when their RAM is contiguous), while
// the owner keeps moving pages (unmap, then map to a new output page). After an unmap returns no
// translation that starts later returns the old page, and a DMA never reads through it. Each
// version's page carries the version number in its first word, so a stale DMA shows as an old
// number. A second test races whole-block DMAs (one run of leaves per core call) against moves of
// the block. Bounded: about 1 s of racing each.
import { existsSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import { describe, expect, test } from 'vitest';
import type { Iommu } from '../src/index';
import type { WorkerReport } from './workers/report';

const dist = new URL('../dist/index.js', import.meta.url);
const workerUrl = new URL('./workers/percall-worker.mjs', import.meta.url);
const RAM = 0x8000_0000;
const RAM_PAGES = 1024;
const PAGES = 16;
const BASE = 0x40_0000;
const RACE_MS = 1000;

interface Report extends WorkerReport {
  stats: { hits: number };
}

/** An engine with RAM_PAGES of guest RAM and one device attached to an IOAS; `ram` views that RAM. */
async function rig() {
  const { Iommu } = (await import(dist.href)) as typeof import('../src/index');
  const iommu = Iommu.createSync({ ram: { base: RAM, bytes: RAM_PAGES * 4096 } });
  const dev = iommu.addDevice({ bdf: '00:06.0' });
  const fd = iommu.open();
  const ioas = fd.ioasAlloc();
  dev.bind(fd);
  dev.attach(ioas);
  const ram = new DataView(iommu.ram.buffer, iommu.ram.byteOffset, iommu.ram.byteLength);
  return { iommu, dev, fd, ioas, ram };
}

/**
 * Starts one worker translator per mode (test/workers/percall-worker.mjs) over `floor` and waits
 * until all run; each reports when the owner sets ctl[0].
 */
async function race(iommu: Iommu, rid: number, floor: Int32Array, modes: string[]): Promise<{ ctl: Int32Array; reports: Promise<Report>[] }> {
  const control = new SharedArrayBuffer(16);
  const ctl = new Int32Array(control);
  const reports = modes.map((mode) => new Promise<Report>((resolve, reject) => {
    const w = new Worker(workerUrl, {
      workerData: { handle: iommu.translatorHandle(), control, floors: floor.buffer, rid, pages: PAGES, base: BASE, physBase: RAM, mode },
    });
    w.once('message', resolve);
    w.once('error', reject);
  }));
  while (Atomics.load(ctl, 2) < modes.length) await new Promise((r) => setTimeout(r, 5));
  return { ctl, reports };
}

describe.skipIf(!existsSync(dist))('per-call translation and DMA racing unmaps', () => {
  test('no result older than the last returned unmap, for number and bigint IOVAs and multi-page DMA', async () => {
    const { iommu, dev, fd, ioas, ram } = await rig();
    // Version v of a page lives in RAM page v % RAM_PAGES, stamped with v. The RAM pages are
    // reused every RAM_PAGES versions, which only hides staleness older than that (never invents it).
    const physOf = (v: number): number => RAM + (v % RAM_PAGES) * 4096;
    const stamp = (v: number): void => ram.setUint32((v % RAM_PAGES) * 4096, v, true);
    // Page i starts at version i + 1, on consecutive RAM pages (so two neighbours copy as one run).
    for (let i = 0; i < PAGES; i++) {
      stamp(i + 1);
      fd.ioasMap(ioas, { iova: BASE + i * 4096, length: 4096, phys: physOf(i + 1) });
    }
    const floor = new Int32Array(new SharedArrayBuffer(PAGES * 4));
    floor.forEach((_, i) => (floor[i] = i + 1));
    const modes = ['number', 'bigint', 'dma'];
    const { ctl, reports } = await race(iommu, dev.rid, floor, modes);

    let version = PAGES;
    let moved = 0;
    const end = performance.now() + RACE_MS;
    while (performance.now() < end) {
      for (let k = 0; k < 16; k++) {
        // Move one page; between moves the pages stay mapped long enough for the IOTLBs to hit.
        const i = moved++ % PAGES;
        const v = ++version;
        stamp(v);
        fd.ioasUnmap(ioas, BASE + i * 4096, 4096);
        Atomics.store(floor, i, v); // the old page is gone from here on (faults until the map)
        fd.ioasMap(ioas, { iova: BASE + i * 4096, length: 4096, phys: physOf(v) });
      }
      await new Promise((r) => setTimeout(r, 1));
    }
    Atomics.store(ctl, 0, 1);
    const results = await Promise.all(reports);
    results.forEach((r, k) => {
      expect(r.violations, `${modes[k]}: ${JSON.stringify(r.firstViolation)}`).toBe(0);
      expect(r.checked, modes[k]).toBeGreaterThan(1000);
      expect(r.ok, modes[k]).toBeGreaterThan(0);
      expect(r.stats.hits, `${modes[k]}: the IOTLB hit path was exercised`).toBeGreaterThan(r.checked / 4);
    });
    expect(moved).toBeGreaterThan(100);
    fd.close();
  });

  test('a DMA over a run of cached leaves never reads a page older than the last returned unmap', async () => {
    // A warm 64 KiB dmaRead is one run of 16 IOTLB hits in the core (assembly/translate.ts
    // translateRun), which must check each leaf's entry as a single translation does. Page 0 stays
    // on RAM page 0; pages 1-15 move between RAM pages 1-15 (even versions: contiguous with page 0)
    // and a block elsewhere (odd versions), all at once. So in an odd version a stale entry of an
    // even one would continue the run from a fresh page 0 -- onto RAM stamped with an older version.
    const { iommu, dev, fd, ioas, ram } = await rig();
    const BLOCKS = RAM_PAGES / PAGES;
    /** RAM page of page j (1-15) in version v: RAM page j (right after page 0) or in block 1 + v % (BLOCKS - 1). */
    const ramPage = (v: number, j: number): number => (v % 2 === 0 ? j : (1 + (v % (BLOCKS - 1))) * PAGES + j);
    const place = (v: number): void => {
      for (let j = 1; j < PAGES; j++) ram.setUint32(ramPage(v, j) * 4096, v, true);
      for (let j = 1; j < PAGES; j++) fd.ioasMap(ioas, { iova: BASE + j * 4096, length: 4096, phys: RAM + ramPage(v, j) * 4096 });
    };
    ram.setUint32(0, 0x7fffffff, true); // page 0 never moves: newer than any floor
    fd.ioasMap(ioas, { iova: BASE, length: 4096, phys: RAM });
    place(2);
    const floor = new Int32Array(new SharedArrayBuffer(4));
    floor[0] = 2;
    const { ctl, reports } = await race(iommu, dev.rid, floor, ['dma-run', 'dma-run']);

    let version = 2;
    const end = performance.now() + RACE_MS;
    while (performance.now() < end) {
      for (let k = 0; k < 4; k++) {
        const v = ++version;
        fd.ioasUnmap(ioas, BASE + 4096, (PAGES - 1) * 4096);
        Atomics.store(floor, 0, v); // the old pages are gone from here on (faults until the maps)
        place(v);
      }
      await new Promise((r) => setTimeout(r, 1)); // mapped long enough for runs of hits
    }
    Atomics.store(ctl, 0, 1);
    for (const r of await Promise.all(reports)) {
      expect(r.violations, JSON.stringify(r.firstViolation)).toBe(0);
      expect(r.checked).toBeGreaterThan(100);
      expect(r.ok, 'whole-block transfers happened').toBeGreaterThan(0);
      expect(r.stats.hits, 'runs of IOTLB hits were exercised').toBeGreaterThan(r.ok * (PAGES - 1));
    }
    expect(version).toBeGreaterThan(100);
    fd.close();
  });
});
