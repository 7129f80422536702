/**
 * DMA cost (issue 6): `dma-4k` is a 4 KiB `iommu.dmaWrite` through the engine with the IOTLB warm
 * (one translation, one copy into guest RAM); `copy-4k` copies the same bytes to the same place
 * in guest RAM with no IOMMU (`Uint8Array.set`). The target is dma-4k ≥ 0.95× copy-4k: an
 * emulator should not notice that its IOMMU is on. Each iteration writes 64 buffers to 64 pages.
 * @module
 */
import { Iommu, NO_PASID } from '../../src/index';
import type { Task } from '../harness';
import type { BenchEnv } from './translate';

const PAGES = 64;
const PAGE = 4096;
const RAM_BASE = 0x8000_0000;
const IOVA = 0x10_0000_0000;

export function dmaScenarios(env: BenchEnv): void {
  const iommu = Iommu.createSync({ ram: { base: RAM_BASE, bytes: PAGES * PAGE * 2 } });
  const dev = iommu.addDevice({ bdf: '00:1f.0' });
  const fd = iommu.open();
  const ioas = fd.ioasAlloc();
  dev.bind(fd);
  dev.attach(ioas);
  // Page i of the IOVA window maps to RAM page 2i + 1: the copy target of both tasks.
  for (let i = 0; i < PAGES; i++) fd.ioasMap(ioas, { iova: IOVA + i * PAGE, length: PAGE, phys: RAM_BASE + (2 * i + 1) * PAGE });
  const src = Uint8Array.from({ length: PAGE }, (_, i) => (i * 7) & 0xff);
  const ram = iommu.ram;
  for (let i = 0; i < PAGES; i++) {
    const r = iommu.dmaWrite(dev.rid, NO_PASID, IOVA + i * PAGE, src); // warms the IOTLB
    if (r.bytes !== PAGE || ram[(2 * i + 1) * PAGE + 123] !== src[123]) throw new Error('dma cross-check failed');
  }
  let sink = 0;
  const tasks: Task[] = [
    {
      scenario: 'dma-4k', impl: 'wasm', opsPerIteration: PAGES, note: 'dmaWrite of 4 KiB, IOTLB warm',
      fn: () => {
        for (let i = 0; i < PAGES; i++) sink += iommu.dmaWrite(dev.rid, NO_PASID, IOVA + i * PAGE, src).bytes;
      },
    },
    {
      scenario: 'copy-4k', impl: 'js', opsPerIteration: PAGES, note: 'Uint8Array.set of the same 4 KiB, no IOMMU',
      fn: () => {
        for (let i = 0; i < PAGES; i++) {
          ram.set(src, (2 * i + 1) * PAGE);
          sink += PAGE;
        }
      },
    },
  ];
  env.h.measure(tasks);
  if (sink === 0) throw new Error('unreachable');
}
