/**
 * virtio-iommu strict mode (issue 13): a guest in strict mode sends a MAP and an UNMAP per DMA
 * buffer. `virtio-map-unmap-4k` is one MAP + UNMAP pair of a 4 KiB page through
 * `VirtioIommu.handleRequest`, the requests encoded once in place (as a ring would hold them), 256
 * pairs per iteration at 256 IOVAs. Its target: ≥ 1 M pairs/s, reported as a ratio to `copy-4k`
 * (the dma group: run `--only dma,virtio`).
 * @module
 */
import { Access, Iommu, NO_PASID, VirtioIommu } from '../../src/index';
import type { Task } from '../harness';
import type { BenchEnv } from './translate';

const PAIRS = 256;
const PAGE = 4096;
const RAM_BASE = 0x8000_0000;
const IOVA = 0x10_0000;
const MAP_SIZE = 36;
const UNMAP_SIZE = 28;

/** The requests, laid out as the spec says (wire format written here, not with the device's code). */
function encode(): { maps: Uint8Array[]; unmaps: Uint8Array[] } {
  const buf = new ArrayBuffer(PAIRS * (MAP_SIZE + UNMAP_SIZE));
  const dv = new DataView(buf);
  const maps: Uint8Array[] = [];
  const unmaps: Uint8Array[] = [];
  for (let i = 0; i < PAIRS; i++) {
    const m = i * (MAP_SIZE + UNMAP_SIZE);
    const iova = BigInt(IOVA + i * PAGE);
    dv.setUint8(m, 3); // MAP
    dv.setUint32(m + 4, 1, true); // domain
    dv.setBigUint64(m + 8, iova, true);
    dv.setBigUint64(m + 16, iova + BigInt(PAGE - 1), true);
    dv.setBigUint64(m + 24, BigInt(RAM_BASE + (i % 64) * PAGE), true);
    dv.setUint32(m + 32, 3, true); // READ | WRITE
    const u = m + MAP_SIZE;
    dv.setUint8(u, 4); // UNMAP
    dv.setUint32(u + 4, 1, true);
    dv.setBigUint64(u + 8, iova, true);
    dv.setBigUint64(u + 16, iova + BigInt(PAGE - 1), true);
    maps.push(new Uint8Array(buf, m, MAP_SIZE));
    unmaps.push(new Uint8Array(buf, u, UNMAP_SIZE));
  }
  return { maps, unmaps };
}

export function virtioScenarios(env: BenchEnv): void {
  const iommu = Iommu.createSync({ ram: { base: RAM_BASE, bytes: 64 * PAGE } });
  const dev = iommu.addDevice({ bdf: '00:05.0' });
  const vio = new VirtioIommu(iommu, { bypass: false });
  vio.ackFeatures(vio.deviceFeatures);
  const tail = new Uint8Array(4);
  const attach = new Uint8Array(20);
  attach.set([1, 0, 0, 0, 1, 0, 0, 0, dev.rid & 0xff, dev.rid >> 8]);
  if (vio.handleRequest(attach, tail) !== 4 || tail[0] !== 0) throw new Error('virtio attach failed');
  const { maps, unmaps } = encode();
  // Cross-check once: MAP makes the page translate, UNMAP removes it.
  for (let i = 0; i < PAIRS; i++) {
    vio.handleRequest(maps[i]!, tail);
    const on = iommu.translate(dev.rid, NO_PASID, IOVA + i * PAGE, Access.Write);
    vio.handleRequest(unmaps[i]!, tail);
    const off = iommu.translate(dev.rid, NO_PASID, IOVA + i * PAGE, Access.Write);
    if (tail[0] !== 0 || !on.ok || on.phys !== BigInt(RAM_BASE + (i % 64) * PAGE) || off.ok) throw new Error('virtio map/unmap cross-check failed');
  }
  let failed = 0;
  const tasks: Task[] = [
    {
      scenario: 'virtio-map-unmap-4k', impl: 'wasm', opsPerIteration: PAIRS, note: 'MAP + UNMAP of 4 KiB through handleRequest',
      fn: () => {
        for (let i = 0; i < PAIRS; i++) {
          vio.handleRequest(maps[i]!, tail);
          failed |= tail[0]!;
          vio.handleRequest(unmaps[i]!, tail);
          failed |= tail[0]!;
        }
      },
    },
  ];
  env.h.measure(tasks);
  if (failed !== 0) throw new Error('a MAP or UNMAP failed during the measurement');
  iommu.faults.drain();
}
