/**
 * The RISC-V IOMMU device model (issue 12) on the hot paths a Linux guest drives:
 *
 * - riscv-iommu-hit-batch: the hit-batch workload (4096 requests over 256 pages, random 8-byte
 *   offsets, reads and writes alternating) from a device whose device context a guest driver
 *   (examples/riscv-iommu/guest-driver.mjs) programmed: an Sv39 table in guest RAM that the model
 *   turned into a user-managed HWPT on the device's RID. Once the context is loaded the model is
 *   out of the path: the target is ≥ 0.9× the engine's own hit-batch.
 * - riscv-iotinval-4k: Linux's small unmap, one IOTINVAL.VMA (AV = 1, PSCV = 1) of one page
 *   written into the command queue and submitted with a `cqt` write, each with a live cached
 *   translation to drop (a batch re-warms the 64 pages first, inside the iteration), then, as
 *   Linux's iotlb_sync does, one IOFENCE.C and a `cqh` poll. Counted: the 64 IOTINVALs. The target
 *   is ≥ 1 M commands/s, reported as the ratio to copy-4k (dma.ts) of the same run.
 * Both check their results (translations, and that an invalidated page re-walks) before measuring.
 * @module
 */
import { Access, Iommu, NO_PASID, RiscvIommu } from '../../src/index';
import { GuestDriver } from '../../examples/riscv-iommu/guest-driver.mjs';
import type { Task } from '../harness';
import { rng } from '../setup';
import type { BenchEnv } from './translate';

const N = 4096;
const PAGES = 256;
const RAM_BASE = 0x8000_0000n;
const DATA = 0x8010_0000n;
const HEAP = { start: 0x8100_0000n, end: 0x8200_0000n };
const IOVA = 0x4000_0000n;
const INVAL_PAGES = 64;

function machine() {
  const iommu = Iommu.createSync({ ram: { base: RAM_BASE, bytes: 32 << 20 } });
  const pci = iommu.addDevice({ bdf: '00:03.0' });
  const dev = new RiscvIommu(iommu);
  const driver = new GuestDriver(dev, iommu, HEAP);
  driver.init();
  driver.attach(pci.rid);
  for (let i = 0n; i < BigInt(PAGES); i++) driver.map(pci.rid, IOVA + i * 4096n, DATA + i * 4096n);
  // The first request loads the device context: from here on the RID translates in the engine.
  if (dev.translate(pci.rid, undefined, IOVA, Access.Read).status !== 'success') throw new Error('cross-check failed: riscv context did not load');
  return { iommu, dev, driver, rid: pci.rid };
}

export function riscvScenarios(env: BenchEnv): void {
  const m = machine();
  const next = rng(21);
  const batch = m.iommu.batch(N);
  const want: bigint[] = [];
  for (let i = 0; i < N; i++) {
    const page = next() % PAGES;
    const offset = BigInt((next() % 512) * 8);
    const iova = IOVA + BigInt(page) * 4096n + offset;
    const w = batch.requests;
    w[i * 4] = m.rid | ((i % 2 ? Access.Write : Access.Read) << 16);
    w[i * 4 + 1] = NO_PASID;
    w[i * 4 + 2] = Number(iova & 0xffff_ffffn);
    w[i * 4 + 3] = Number(iova >> 32n);
    want.push(DATA + BigInt(page) * 4096n + offset);
  }
  batch.run(N);
  for (let i = 0; i < N; i++) {
    if (!batch.ok(i) || BigInt(batch.phys(i)) !== want[i]) throw new Error(`cross-check failed: riscv-iommu-hit-batch request ${i}`);
  }
  const before = m.iommu.stats();
  batch.run(N);
  const hitRate = ((m.iommu.stats().hits - before.hits) / N) * 100;

  // IOTINVAL: a second machine, its 64-page warm-up batch and the commands of one iteration.
  const inv = machine();
  const warm = inv.iommu.batch(INVAL_PAGES);
  for (let i = 0; i < INVAL_PAGES; i++) {
    const iova = IOVA + BigInt(i) * 4096n;
    warm.requests[i * 4] = inv.rid | (Access.Read << 16);
    warm.requests[i * 4 + 1] = NO_PASID;
    warm.requests[i * 4 + 2] = Number(iova & 0xffff_ffffn);
    warm.requests[i * 4 + 3] = Number(iova >> 32n);
  }
  const pscid = inv.driver.contexts.get(inv.rid).pscid as bigint;
  const pageIovas = Array.from({ length: INVAL_PAGES }, (_, i) => IOVA + BigInt(i) * 4096n);
  const invalidateAll = (): void => {
    for (const iova of pageIovas) inv.driver.invalidatePage(pscid, iova);
    inv.driver.sync();
  };
  // Cross-check: after the invalidations every page misses once (re-walks), then hits.
  warm.run(INVAL_PAGES);
  invalidateAll();
  const s0 = inv.iommu.stats();
  warm.run(INVAL_PAGES);
  const s1 = inv.iommu.stats();
  if (s1.misses - s0.misses !== INVAL_PAGES) throw new Error(`cross-check failed: riscv-iotinval-4k dropped ${s1.misses - s0.misses}/${INVAL_PAGES} cached translations`);
  if ((inv.dev.mmioRead(72, 4) & 0x700n) !== 0n) throw new Error('cross-check failed: riscv-iotinval-4k command queue error');

  const tasks: Task[] = [
    { scenario: 'riscv-iommu-hit-batch', impl: 'wasm', opsPerIteration: N, fn: () => batch.run(N), note: `Sv39 context loaded by RiscvIommu; hit rate ${hitRate.toFixed(1)}%` },
    {
      scenario: 'riscv-iotinval-4k', impl: 'wasm', opsPerIteration: INVAL_PAGES,
      note: 'IOTINVAL.VMA of one page per cqt write, each dropping a live cached translation',
      fn: () => {
        warm.run(INVAL_PAGES);
        invalidateAll();
      },
    },
  ];
  env.h.measure(tasks);
}
