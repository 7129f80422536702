/**
 * DMA cost (issues 6 and 14): `dma-4k` is a 4 KiB `iommu.dmaWrite` through the engine with the
 * IOTLB warm (one translation, one copy into guest RAM); `copy-4k` copies the same bytes to the
 * same place in guest RAM with no IOMMU (`Uint8Array.set`). The target is dma-4k ≥ 0.95× copy-4k:
 * an emulator should not notice that its IOMMU is on. Each iteration writes 64 buffers to 64 pages.
 *
 * `dma-64k` (variants write/read): one 64 KiB `dmaWrite`/`dmaRead` over 16 pages mapped one by one
 * (16 translations) onto contiguous RAM, against `copy-64k`, the same 64 KiB copied to/from the
 * same RAM bytes with one `Uint8Array.set`. Each iteration moves 8 such buffers.
 * @module
 */
import { Iommu, NO_PASID, type IommuFd } from '../../src/index';
import type { Task } from '../harness';
import type { BenchEnv } from './translate';

const PAGES = 64;
const PAGE = 4096;
const RAM_BASE = 0x8000_0000;
const IOVA = 0x10_0000_0000;
const BIG = 64 * 1024;
const BIGS = 8;
const IOVA_BIG = 0x20_0000_0000;

export function dmaScenarios(env: BenchEnv): void {
  const iommu = Iommu.createSync({ ram: { base: RAM_BASE, bytes: PAGES * PAGE * 2 + BIGS * BIG } });
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
  tasks.push(...bigTasks(iommu, fd, ioas, dev.rid, () => sink++));
  env.h.measure(tasks);
  if (sink === 0) throw new Error('unreachable');
}

/** dma-64k / copy-64k: buffer b is IOVA_BIG + b * 1 MiB, 16 single-page maps onto RAM after the 4K pages. */
function bigTasks(iommu: Iommu, fd: IommuFd, ioas: number, rid: number, count: () => void): Task[] {
  const ramAt = PAGES * PAGE * 2;
  for (let b = 0; b < BIGS; b++) {
    for (let p = 0; p < BIG / PAGE; p++) {
      fd.ioasMap(ioas, { iova: IOVA_BIG + b * 0x10_0000 + p * PAGE, length: PAGE, phys: RAM_BASE + ramAt + b * BIG + p * PAGE });
    }
  }
  const src = Uint8Array.from({ length: BIG }, (_, i) => (i * 13) & 0xff);
  const dst = new Uint8Array(BIG);
  const ram = iommu.ram;
  for (let b = 0; b < BIGS; b++) {
    const w = iommu.dmaWrite(rid, NO_PASID, IOVA_BIG + b * 0x10_0000, src);
    if (w.bytes !== BIG || ram[ramAt + b * BIG + 5 * PAGE + 77] !== src[5 * PAGE + 77]) throw new Error('dma-64k write cross-check failed');
    dst.fill(0);
    const r = iommu.dmaRead(rid, NO_PASID, IOVA_BIG + b * 0x10_0000, dst);
    if (r.bytes !== BIG || dst.some((v, i) => v !== src[i])) throw new Error('dma-64k read cross-check failed');
  }
  const at = (b: number): number => ramAt + b * BIG;
  const task = (scenario: string, impl: 'wasm' | 'js', variant: string, note: string, one: (b: number) => void): Task => ({
    scenario, impl, variant, opsPerIteration: BIGS, note,
    fn: () => {
      for (let b = 0; b < BIGS; b++) one(b);
      count();
    },
  });
  return [
    task('dma-64k', 'wasm', 'write', 'dmaWrite of 64 KiB over 16 pages, IOTLB warm', (b) => void iommu.dmaWrite(rid, NO_PASID, IOVA_BIG + b * 0x10_0000, src)),
    task('copy-64k', 'js', 'write', 'Uint8Array.set of the same 64 KiB, no IOMMU', (b) => ram.set(src, at(b))),
    task('dma-64k', 'wasm', 'read', 'dmaRead of 64 KiB over 16 pages, IOTLB warm', (b) => void iommu.dmaRead(rid, NO_PASID, IOVA_BIG + b * 0x10_0000, dst)),
    task('copy-64k', 'js', 'read', 'Uint8Array.set from the same 64 KiB, no IOMMU', (b) => dst.set(ram.subarray(at(b), at(b) + BIG))),
  ];
}
