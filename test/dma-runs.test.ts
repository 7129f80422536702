// Software DMA over many leaves: a transfer is translated one contiguous run per core call
// (assembly/translate.ts `translateRun`), the leaves after a run's first answered from the IOTLB.
// Each test warms the IOTLB first, so the run path (not the walk) answers the leaves it checks,
// and asserts what a leaf-by-leaf translation would give: bytes, fault, data, dirty bits, counts.
import { describe, expect, test } from 'vitest';
import { Access, Iommu, NO_PASID, Translator, type IommuOptions } from '../src/index';
import { makeIommu, ok } from './helpers';

const P = 4096;
const RAM_BASE = 0x1_0000_0000;
const RAM_PAGES = 64;
const IOVA = 0x40_0000;

function rig(opts: { dirty?: boolean; ram?: IommuOptions['ram'] } = {}) {
  const iommu = makeIommu({ ram: opts.ram ?? { base: RAM_BASE, bytes: RAM_PAGES * P } });
  const dev = ok.addDevice(iommu, { bdf: '00:05.0', dirty: opts.dirty ?? false });
  const fd = ok.open(iommu);
  const ioas = fd.ioasAlloc();
  const devId = dev.bind(fd);
  if (!opts.dirty) dev.attach(ioas); // a dirty-tracking rig attaches its own HWPT
  return { iommu, dev, fd, ioas, devId };
}

const pattern = (n: number, seed: number): Uint8Array => Uint8Array.from({ length: n }, (_, i) => (i * 13 + seed) & 0xff);

/** Translates every page of [iova, +pages) once with `access`, filling the IOTLB. */
function warm(iommu: Iommu | Translator, rid: number, iova: number, pages: number, access = Access.Read): void {
  for (let i = 0; i < pages; i++) iommu.translate(rid, NO_PASID, iova + i * P, access);
}

/** Maps IOVA page i of [IOVA, +16) to RAM page `ramPage(i)`, one 4 KiB map each. */
function mapPages(fd: ReturnType<typeof rig>['fd'], ioas: number, ramPage: (i: number) => number, pages = 16): void {
  for (let i = 0; i < pages; i++) fd.ioasMap(ioas, { iova: IOVA + i * P, length: P, phys: RAM_BASE + ramPage(i) * P });
}

describe('DMA over contiguous runs of leaves', () => {
  test('a warm 16-page write lands where each page maps, across a break in the output, and counts one hit per leaf', () => {
    const { iommu, dev, fd, ioas } = rig();
    // Pages 0-6 onto RAM 8-14, pages 7-15 onto RAM 30-38: two runs, the second starting mid-transfer.
    mapPages(fd, ioas, (i) => (i < 7 ? 8 + i : 23 + i));
    warm(iommu, dev.rid, IOVA, 16);
    const data = pattern(16 * P - 300, 1);
    const before = iommu.stats();
    expect(iommu.dmaWrite(dev.rid, NO_PASID, IOVA + 100, data)).toEqual({ bytes: data.length });
    const after = iommu.stats();
    expect(after.hits - before.hits).toBe(16);
    expect(after.misses - before.misses).toBe(0);
    const ram = iommu.ram;
    for (let i = 0; i < data.length; i += 997) {
      const page = Math.floor((IOVA + 100 + i - IOVA) / P);
      const at = ((page < 7 ? 8 + page : 23 + page) * P) + ((100 + i) % P);
      expect(ram[at], `byte ${i}`).toBe(data[i]);
    }
    const back = new Uint8Array(data.length);
    expect(iommu.dmaRead(dev.rid, NO_PASID, BigInt(IOVA + 100), back)).toEqual({ bytes: data.length });
    expect(Buffer.compare(back, data)).toBe(0);
  });

  test('a page unmapped after warm-up stops a run at exactly that page, with the pages before it copied', () => {
    const { iommu, dev, fd, ioas } = rig();
    mapPages(fd, ioas, (i) => 8 + i);
    warm(iommu, dev.rid, IOVA, 16);
    fd.ioasUnmap(ioas, IOVA + 9 * P, P);
    const r = iommu.dmaWrite(dev.rid, NO_PASID, IOVA + 10, pattern(16 * P, 2));
    expect(r).toMatchObject({ bytes: 9 * P - 10, fault: { reason: 'not-present' } });
    expect(iommu.ram[8 * P + 10]).toBe(pattern(1, 2)[0]);
    expect(iommu.ram[(8 + 8) * P + P - 1]).toBe(pattern(16 * P, 2)[9 * P - 11]);
    expect(iommu.ram[(8 + 10) * P]).toBe(0); // nothing after the fault
  });

  test('a cold leaf in the middle ends the run untranslated: the next call walks it, the rest continue', () => {
    const { iommu, dev, fd, ioas } = rig();
    mapPages(fd, ioas, (i) => 8 + i);
    warm(iommu, dev.rid, IOVA, 5);
    warm(iommu, dev.rid, IOVA + 6 * P, 10); // page 5 stays cold
    const before = iommu.stats();
    const data = pattern(16 * P, 3);
    expect(iommu.dmaWrite(dev.rid, NO_PASID, IOVA, data)).toEqual({ bytes: 16 * P });
    const after = iommu.stats();
    expect(after.misses - before.misses).toBe(1);
    expect(after.hits - before.hits).toBe(15);
    expect(Buffer.compare(iommu.ram.subarray(8 * P, 24 * P), data)).toBe(0);
  });

  test('a read-only page inside a warm run stops a write there (its IOTLB entry lacks write rights)', () => {
    const { iommu, dev, fd, ioas } = rig();
    mapPages(fd, ioas, (i) => 8 + i, 6);
    fd.ioasMap(ioas, { iova: IOVA + 6 * P, length: P, phys: RAM_BASE + 14 * P, write: false });
    for (let i = 7; i < 16; i++) fd.ioasMap(ioas, { iova: IOVA + i * P, length: P, phys: RAM_BASE + (8 + i) * P });
    warm(iommu, dev.rid, IOVA, 16);
    expect(iommu.dmaWrite(dev.rid, NO_PASID, IOVA, pattern(16 * P, 4))).toMatchObject({ bytes: 6 * P, fault: { reason: 'permission' } });
    expect(iommu.dmaRead(dev.rid, NO_PASID, IOVA, new Uint8Array(16 * P))).toEqual({ bytes: 16 * P });
  });

  test('dirty tracking: a write run over pages the IOTLB holds clean marks every page it wrote', () => {
    const { iommu, dev, fd, ioas, devId } = rig({ dirty: true });
    mapPages(fd, ioas, (i) => 8 + i);
    const hwpt = fd.hwptAlloc({ devId, ptId: ioas, dirtyTracking: true });
    dev.attach(hwpt);
    fd.hwptSetDirtyTracking(hwpt, true);
    warm(iommu, dev.rid, IOVA, 16); // reads: entries cached without write rights
    const range = { iova: IOVA, length: 16 * P, pageSize: P };
    fd.hwptGetDirtyBitmap(hwpt, range); // clear
    const before = iommu.stats();
    expect(iommu.dmaWrite(dev.rid, NO_PASID, IOVA + 3 * P + 5, pattern(10 * P, 5))).toEqual({ bytes: 10 * P });
    expect(iommu.stats().misses - before.misses).toBe(11); // each clean page: walked, marked dirty
    // Written once, the pages are cached writable: a second write is all hits.
    const between = iommu.stats();
    expect(iommu.dmaWrite(dev.rid, NO_PASID, IOVA + 3 * P + 5, pattern(10 * P, 6))).toEqual({ bytes: 10 * P });
    expect(iommu.stats().misses - between.misses).toBe(0);
    expect(fd.hwptGetDirtyBitmap(hwpt, range)[0]).toBe(((1n << 11n) - 1n) << 3n); // pages 3..13
  });

  test('a warm run leaving guest RAM stops at the first page outside it, reported as not-ram with that page', () => {
    const { iommu, dev, fd, ioas } = rig();
    mapPages(fd, ioas, (i) => RAM_PAGES - 4 + i); // pages 4.. land past the end of RAM
    warm(iommu, dev.rid, IOVA, 16);
    const r = iommu.dmaWrite(dev.rid, NO_PASID, IOVA + 1, pattern(16 * P, 7));
    expect(r).toMatchObject({ bytes: 4 * P - 1, fault: { reason: 'not-ram', phys: BigInt(RAM_BASE + RAM_PAGES * P) } });
    expect(iommu.ram[(RAM_PAGES - 1) * P + P - 1]).toBe(pattern(16 * P, 7)[4 * P - 2]);
  });

  test('a run across two adjoining RAM windows is one transfer; a gap between windows is not-ram', () => {
    const a = new SharedArrayBuffer(8 * P);
    const b = new SharedArrayBuffer(8 * P);
    const { iommu, dev, fd, ioas } = rig({
      ram: [
        { base: RAM_BASE, bytes: 8 * P, buffer: a, offset: 0 },
        { base: RAM_BASE + 8 * P, bytes: 8 * P, buffer: b, offset: 0 },
      ],
    });
    mapPages(fd, ioas, (i) => 4 + i, 12); // RAM pages 4..15: across the seam at page 8
    fd.ioasMap(ioas, { iova: IOVA + 12 * P, length: P, phys: RAM_BASE + 16 * P }); // past both windows
    warm(iommu, dev.rid, IOVA, 13);
    const data = pattern(13 * P, 8);
    expect(iommu.dmaWrite(dev.rid, NO_PASID, IOVA, data)).toMatchObject({ bytes: 12 * P, fault: { reason: 'not-ram' } });
    expect(Buffer.compare(new Uint8Array(a, 4 * P, 4 * P), data.subarray(0, 4 * P))).toBe(0);
    expect(Buffer.compare(new Uint8Array(b, 0, 8 * P), data.subarray(4 * P, 12 * P))).toBe(0);
  });

  test('a worker translator takes the same run path, with its own IOTLB and counts', () => {
    const { iommu, dev, fd, ioas } = rig();
    mapPages(fd, ioas, (i) => 8 + i);
    const t = Translator.attach(iommu.translatorHandle());
    warm(t, dev.rid, IOVA, 16);
    const data = pattern(16 * P, 9);
    expect(t.dmaWrite(dev.rid, NO_PASID, IOVA, data)).toEqual({ bytes: 16 * P });
    expect(Buffer.compare(iommu.ram.subarray(8 * P, 24 * P), data)).toBe(0);
    fd.ioasUnmap(ioas, IOVA + 15 * P, P);
    expect(t.dmaRead(dev.rid, NO_PASID, IOVA, new Uint8Array(16 * P))).toMatchObject({ bytes: 15 * P, fault: { reason: 'not-present' } });
  });
});
