/**
 * The domain-slot reuse race, shared by test/soak.test.ts and scripts/soak.mjs: device x (FD A)
 * is attached and detached in a loop while, at once, FD B allocates and destroys a HWPT that takes
 * over the freed domain slot. A worker translator (test/workers/soak-reuse-worker.mjs) translates
 * x's IOVA throughout and counts results that went through B's tables ("crossed") or are garbage.
 * The same IOVA is mapped in both FDs, to different outputs, so a crossing is visible.
 * @module
 */
import { Worker } from 'node:worker_threads';
import type { Iommu as IommuClass } from '../../src/index';
import { waitForProgress } from '../workers/progress.mjs';

export interface ReuseRaceReport {
  rounds: number;
  checked: number;
  ok: number;
  crossed: number;
  garbage: number;
}

const IOVA = 0x4000_0000;
const OWN = 0x1_0000_0000;
const FOREIGN = 0x2_0000_0000;

/** Runs the race for `ms` milliseconds with the worker script at `workerUrl`. */
export async function runReuseRace(Iommu: typeof IommuClass, workerUrl: URL, ms: number): Promise<ReuseRaceReport> {
  const iommu = Iommu.createSync({ translators: 3, iotlbEntries: 2, maxMemoryBytes: 64 * 2 ** 20 });
  const a = iommu.open();
  const b = iommu.open();
  const ioasA = a.ioasAlloc();
  const ioasB = b.ioasAlloc();
  a.ioasMap(ioasA, { iova: IOVA, length: 2 ** 21, phys: OWN });
  b.ioasMap(ioasB, { iova: IOVA, length: 2 ** 21, phys: FOREIGN });
  const x = iommu.addDevice({ bdf: '00:06.0' });
  const y = iommu.addDevice({ bdf: '00:07.0' });
  x.bind(a);
  const yId = y.bind(b);
  const control = new SharedArrayBuffer(12);
  const ctl = new Int32Array(control);
  const worker = new Worker(workerUrl, {
    workerData: { handle: iommu.translatorHandle(), control, rid: x.rid, iova: IOVA + 0x40, own: OWN + 0x40, foreign: FOREIGN + 0x40 },
  });
  const report = new Promise<Omit<ReuseRaceReport, 'rounds'>>((resolve, reject) => {
    worker.once('message', resolve);
    worker.once('error', reject);
  });
  while (Atomics.load(ctl, 1) < 1) await new Promise((r) => setTimeout(r, 5));
  const end = performance.now() + ms;
  let rounds = 0;
  while (performance.now() < end) {
    for (let i = 0; i < 64; i++) {
      x.attach(ioasA); // auto HWPT: a fresh domain slot
      // Once a round of 64, stay attached until the worker has translated (at most 20 ms).
      if (i === 0) waitForProgress(ctl, 2, Atomics.load(ctl, 2), 20);
      x.detach(); // frees the slot ...
      b.destroy(b.hwptAlloc({ devId: yId, ptId: ioasB })); // ... which B's HWPT takes over at once
      rounds++;
    }
    await new Promise((r) => setImmediate(r));
  }
  Atomics.store(ctl, 0, 1);
  const r = await report;
  a.close();
  b.close();
  return { rounds, ...r };
}
