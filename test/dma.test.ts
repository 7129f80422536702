// Device-side software DMA (Iommu.dmaRead / dmaWrite): transfers translated leaf by leaf through
// the device's attachment, copied to or from guest RAM, stopping at the first fault.
import { describe, expect, test } from 'vitest';
import { Access, NO_PASID } from '../src/index';
import { createInMode, RAM_MODES, type RamMode } from './ram-modes';

const P = 4096;
const M2 = 2 * 1024 * 1024;
const RAM_BASE = 0x8000_0000;

/** An engine with 16 MiB of guest RAM in `mode`; `ram` is the caller's own view of it. */
function rig(mode: RamMode) {
  const { iommu, rams: [ram] } = createInMode(mode, { base: RAM_BASE, bytes: 8 * M2 });
  const dev = iommu.addDevice({ bdf: '00:02.0' });
  const fd = iommu.open();
  const ioas = fd.ioasAlloc();
  dev.bind(fd);
  dev.attach(ioas);
  return { iommu, ram: ram!, dev, fd, ioas };
}

const pattern = (n: number, seed: number): Uint8Array => {
  const a = new Uint8Array(n);
  for (let i = 0; i < n; i++) a[i] = (i * 31 + seed) & 0xff;
  return a;
};

// RAM in the engine, in an emulator's memory and in an external buffer (test/ram-modes.ts).
describe.each(RAM_MODES)('RAM in %s', (mode) => {
  test('a write spanning a 4K mapping, a 2M leaf and scattered 4K pages lands in RAM where each translation says', () => {
    const { iommu, ram, dev, fd, ioas } = rig(mode);
    // IOVA 0x20_0000 - P .. : one 4K page, then a 2M leaf, then two 4K pages mapped out of order.
    fd.ioasMap(ioas, { iova: M2 - P, length: P, phys: RAM_BASE + 5 * M2 });
    fd.ioasMap(ioas, { iova: M2, length: M2, phys: RAM_BASE + 2 * M2 });
    fd.ioasMap(ioas, { iova: 2 * M2, length: P, phys: RAM_BASE + 7 * M2 });
    fd.ioasMap(ioas, { iova: 2 * M2 + P, length: P, phys: RAM_BASE + 6 * M2 });
    const data = pattern(P + M2 + 2 * P - 200, 3);
    const start = M2 - P + 100;
    expect(iommu.dmaWrite(dev.rid, NO_PASID, start, data)).toEqual({ bytes: data.length });
    for (const at of [start, M2, M2 + 12345, 2 * M2 - 1, 2 * M2, 2 * M2 + P + 7, start + data.length - 1]) {
      const t = iommu.translate(dev.rid, NO_PASID, at, Access.Read);
      expect(ram[Number(t.phys) - RAM_BASE]).toBe(data[at - start]);
    }
    const back = new Uint8Array(data.length);
    expect(iommu.dmaRead(dev.rid, NO_PASID, BigInt(start), back)).toEqual({ bytes: data.length });
    expect(Buffer.compare(back, data)).toBe(0);
    expect(iommu.stats().misses).toBeLessThanOrEqual(4 + 7); // one walk per leaf, not per 4K page
  });

  test('a transfer stops at the first fault and reports the bytes done and the fault', () => {
    const { iommu, dev, fd, ioas } = rig(mode);
    fd.ioasMap(ioas, { iova: 0x10_0000, length: 2 * P, phys: RAM_BASE });
    fd.ioasMap(ioas, { iova: 0x10_0000 + 2 * P, length: P, phys: RAM_BASE + P * 2, write: false });
    const r = iommu.dmaWrite(dev.rid, NO_PASID, 0x10_0000 + 100, pattern(3 * P, 1));
    expect(r.bytes).toBe(2 * P - 100);
    expect(r.fault).toMatchObject({ reason: 'permission' });
    expect(iommu.dmaRead(dev.rid, NO_PASID, 0x10_0000 + 3 * P - 10, new Uint8Array(20))).toMatchObject({ bytes: 10, fault: { reason: 'not-present' } });
    expect(iommu.dmaRead(0x999, NO_PASID, 0, new Uint8Array(1))).toMatchObject({ bytes: 0, fault: { reason: 'no-device' } });
    expect(iommu.dmaRead(dev.rid, NO_PASID, -1, new Uint8Array(1))).toMatchObject({ bytes: 0, fault: { reason: 'bad-request' } });
    expect(iommu.dmaRead(dev.rid, NO_PASID, 0, new Uint8Array(0))).toEqual({ bytes: 0 });
  });

  test('an output address outside guest RAM is a not-ram fault, nothing copied', () => {
    const { iommu, ram, dev, fd, ioas } = rig(mode);
    fd.ioasMap(ioas, { iova: 0, length: 2 * P, phys: RAM_BASE + 8 * M2 - P }); // second page past RAM
    const before = ram.slice();
    const r = iommu.dmaWrite(dev.rid, NO_PASID, 0, pattern(2 * P, 9));
    expect(r.bytes).toBe(P);
    expect(r.fault).toMatchObject({ reason: 'not-ram', phys: BigInt(RAM_BASE + 8 * M2) });
    // (Buffer.compare: a deep toEqual over 16 MiB takes seconds.)
    expect(Buffer.compare(ram.subarray(0, 8 * M2 - P), before.subarray(0, 8 * M2 - P))).toBe(0);
  });
});

describe('DMA faults are values: frozen, and every bad request logged and counted', () => {
  test('each malformed transfer is one bad-request record in the fault log and one in the counters', () => {
    const { iommu, dev, fd, ioas } = rig('engine');
    fd.ioasMap(ioas, { iova: 0x10_0000, length: P, phys: RAM_BASE });
    iommu.faults.drain();
    const cases: [string, () => unknown][] = [
      ['a buffer that is not a Uint8Array', () => iommu.dmaRead(dev.rid, NO_PASID, 0x10_0000, [1, 2] as never)],
      ['an address that is not a number', () => iommu.dmaWrite(dev.rid, NO_PASID, Symbol('x') as never, new Uint8Array(4))],
      ['a bigint address of 2^64', () => iommu.dmaRead(dev.rid, NO_PASID, 1n << 64n, new Uint8Array(4))],
      ['the number 2^64', () => iommu.dmaRead(dev.rid, NO_PASID, 2 ** 64, new Uint8Array(4))],
      ['a negative bigint', () => iommu.dmaRead(dev.rid, NO_PASID, -1n, new Uint8Array(4))],
      ['a fractional number', () => iommu.dmaWrite(dev.rid, NO_PASID, 0x10_0000 + 0.5, new Uint8Array(4))],
      ['a RID that is not a u32', () => iommu.dmaRead(-1, NO_PASID, 0x10_0000, new Uint8Array(4))],
      ['a PASID that is not a u32', () => iommu.dmaRead(dev.rid, 1.5, 0x10_0000, new Uint8Array(P + 1))],
    ];
    for (const [what, dma] of cases) {
      const before = iommu.stats().faultsByReason['bad-request'] ?? 0;
      expect(dma(), what).toMatchObject({ bytes: 0, fault: { reason: 'bad-request' } });
      expect(iommu.faults.drain().map((f) => f.reason), what).toEqual(['bad-request']);
      expect(iommu.stats().faultsByReason['bad-request'], what).toBe(before + 1);
    }
    // A record names the request where it is one: the RID refused here, at the page it asked for.
    iommu.dmaRead(0x1_0000_0000, NO_PASID, 0x10_0000, new Uint8Array(P + 1));
    expect(iommu.faults.drain()).toMatchObject([{ reason: 'bad-request', iova: 0x10_0000n }]);
  });

  test('results are frozen, with or without a fault, and so are their faults', () => {
    const { iommu, dev, fd, ioas } = rig('engine');
    fd.ioasMap(ioas, { iova: 0x10_0000, length: 2 * P, phys: RAM_BASE + 8 * M2 - P }); // second page past RAM
    const results = [
      iommu.dmaWrite(dev.rid, NO_PASID, 0x10_0000, new Uint8Array(8)), // within a page
      iommu.dmaWrite(dev.rid, NO_PASID, 0x10_0000 + P - 4, new Uint8Array(8)), // not-ram after 4 bytes
      iommu.dmaRead(dev.rid, NO_PASID, 0x20_0000, new Uint8Array(8)), // not present, within a page
      iommu.dmaRead(dev.rid, NO_PASID, 0x20_0000 - 4, new Uint8Array(P)), // not present, a span of two pages
      iommu.dmaRead(dev.rid, NO_PASID, -1n, new Uint8Array(8)), // bad request
    ];
    expect(results.map((r) => r.fault?.reason)).toEqual([undefined, 'not-ram', 'not-present', 'not-present', 'bad-request']);
    for (const r of results) {
      expect(Object.isFrozen(r)).toBe(true);
      if (r.fault) expect(Object.isFrozen(r.fault)).toBe(true);
    }
  });
});
