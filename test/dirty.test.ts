// Dirty tracking (include/uapi/linux/iommufd.h IOMMU_HWPT_GET_DIRTY_BITMAP; selftest cases H 55–59): writes through a dirty-tracking HWPT mark
// pages dirty; the bitmap reports exactly the written pages (a whole 2 MiB leaf for a write into
// it), is cleared by reading unless noClear, and keeps reporting writes after a clear.
import { existsSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import { describe, expect, test } from 'vitest';
import { Access, NO_PASID } from '../src/index';
import { err, makeIommu, ok } from './helpers';

const dist = new URL('../dist/index.js', import.meta.url);
const P = 4096;
const M2 = 2 * 1024 * 1024;
const RAM_BASE = 0x1_0000_0000;
const IOVA = 0x4000_0000;

function rig(dirty = true) {
  const iommu = makeIommu({ ram: { base: RAM_BASE, bytes: 8 * M2 } });
  const dev = ok.addDevice(iommu, { bdf: '00:03.0', dirty });
  const fd = ok.open(iommu);
  const ioas = fd.ioasAlloc();
  const devId = dev.bind(fd);
  return { iommu, dev, fd, ioas, devId };
}


/** Indices of the set bits of a bitmap. */
const setBits = (bm: BigUint64Array): number[] => {
  const out: number[] = [];
  bm.forEach((w, i) => {
    for (let b = 0; b < 64; b++) if ((w >> BigInt(b)) & 1n) out.push(i * 64 + b);
  });
  return out;
};

describe('dirty tracking', () => {
  test('iommufd_dirty_tracking.enforce_dirty: only dirty-capable devices allocate or attach to a dirty HWPT', () => {
    const { iommu, dev, fd, ioas, devId } = rig();
    const hwpt = fd.hwptAlloc({ devId, ptId: ioas, dirtyTracking: true });
    dev.attach(hwpt);
    const plain = ok.addDevice(iommu, { bdf: '00:04.0' });
    const plainId = plain.bind(fd);
    err.attach('EINVAL', plain, hwpt);
    err.hwptAlloc('EOPNOTSUPP', fd, { devId: plainId, ptId: ioas, dirtyTracking: true });
    err.hwptSetDirtyTracking('EOPNOTSUPP', fd, fd.hwptAlloc({ devId, ptId: ioas }), true);
    err.hwptSetDirtyTracking('ENOENT', fd, ioas, true);
  });

  test('iommufd_dirty_tracking.get_dirty_bitmap (+ no_clear): every other page written, exactly those bits; read clears unless noClear', () => {
    const { iommu, dev, fd, ioas, devId } = rig();
    const pages = 64;
    fd.ioasMap(ioas, { iova: IOVA + P, length: pages * P, phys: RAM_BASE + P }); // 4 KiB leaves
    const hwpt = fd.hwptAlloc({ devId, ptId: ioas, dirtyTracking: true });
    dev.attach(hwpt);
    // Reads before tracking and while tracking never mark anything.
    for (let i = 0; i < pages; i++) iommu.translate(dev.rid, NO_PASID, IOVA + P + i * P, Access.Read);
    fd.hwptSetDirtyTracking(hwpt, true);
    for (let i = 0; i < pages; i++) iommu.translate(dev.rid, NO_PASID, IOVA + P + i * P, Access.Read);
    const written = [];
    for (let i = 0; i < pages; i += 2) {
      // DMA of a few bytes into each even page (through the IOTLB filled by the reads above).
      expect(iommu.dmaWrite(dev.rid, NO_PASID, IOVA + P + i * P + 100, new Uint8Array([1, 2, 3]))).toEqual({ bytes: 3 });
      written.push(i);
    }
    const range = { iova: IOVA + P, length: pages * P, pageSize: P };
    expect(setBits(fd.hwptGetDirtyBitmap(hwpt, { ...range, noClear: true }))).toEqual(written);
    expect(setBits(fd.hwptGetDirtyBitmap(hwpt, range))).toEqual(written);
    expect(setBits(fd.hwptGetDirtyBitmap(hwpt, range))).toEqual([]);
    // After the clear the same pages are cached without write rights: a new write marks again.
    iommu.dmaWrite(dev.rid, NO_PASID, IOVA + P + 5 * P, new Uint8Array(1));
    expect(setBits(fd.hwptGetDirtyBitmap(hwpt, range))).toEqual([5]);
    // A bitmap with 8 KiB pages from IOVA + 2P: bit n covers IOVA + 2P + [16n KiB, 16n + 8 KiB).
    iommu.dmaWrite(dev.rid, NO_PASID, IOVA + 10 * P, new Uint8Array(1));
    expect(setBits(fd.hwptGetDirtyBitmap(hwpt, { iova: IOVA + 2 * P, length: (pages - 2) * P, pageSize: 2 * P }))).toEqual([4]);
  });

  test('a write into a 2 MiB leaf marks all of its pages; disabling stops marking', () => {
    const { iommu, dev, fd, ioas, devId } = rig();
    fd.ioasMap(ioas, { iova: IOVA, length: 2 * M2, phys: RAM_BASE });
    const hwpt = fd.hwptAlloc({ devId, ptId: ioas, dirtyTracking: true });
    dev.attach(hwpt);
    fd.hwptSetDirtyTracking(hwpt, true);
    iommu.dmaWrite(dev.rid, NO_PASID, IOVA + M2 + 12345, new Uint8Array(8));
    const bits = setBits(fd.hwptGetDirtyBitmap(hwpt, { iova: IOVA, length: 2 * M2, pageSize: P }));
    expect(bits).toEqual(Array.from({ length: 512 }, (_, i) => 512 + i));
    fd.hwptSetDirtyTracking(hwpt, false);
    iommu.dmaWrite(dev.rid, NO_PASID, IOVA + 8, new Uint8Array(8));
    expect(setBits(fd.hwptGetDirtyBitmap(hwpt, { iova: IOVA, length: 2 * M2, pageSize: M2 }))).toEqual([]);
    // Enabling clears what was dirty before.
    fd.hwptSetDirtyTracking(hwpt, true);
    expect(setBits(fd.hwptGetDirtyBitmap(hwpt, { iova: IOVA, length: 2 * M2, pageSize: M2 }))).toEqual([]);
  });

  test('bitmap argument checks in the kernel order', () => {
    const { dev, fd, ioas, devId } = rig();
    fd.ioasMap(ioas, { iova: IOVA, length: M2, phys: RAM_BASE });
    const hwpt = fd.hwptAlloc({ devId, ptId: ioas, dirtyTracking: true });
    dev.attach(hwpt);
    const args = (a: object) => ({ iova: IOVA, length: M2, pageSize: P, ...a }) as never;
    ok.hwptGetDirtyBitmap(fd, hwpt, args({}));
    err.hwptGetDirtyBitmap('EOPNOTSUPP', fd, hwpt, args({ flags: 1 }));
    err.hwptGetDirtyBitmap('EOVERFLOW', fd, hwpt, args({ iova: 2n ** 64n - 4096n, length: 2 * P }));
    err.hwptGetDirtyBitmap('EINVAL', fd, hwpt, args({ pageSize: 0 }));
    err.hwptGetDirtyBitmap('EINVAL', fd, hwpt, args({ pageSize: 3 * P }));
    err.hwptGetDirtyBitmap('EINVAL', fd, hwpt, args({ iova: IOVA + 1 })); // IOAS alignment
    err.hwptGetDirtyBitmap('EINVAL', fd, hwpt, args({ pageSize: 2 * M2 })); // range not a multiple of pageSize
    err.hwptGetDirtyBitmap('EINVAL', fd, hwpt, args({ length: 0 }));
    err.hwptGetDirtyBitmap('ENOENT', fd, ioas, { iova: IOVA, length: M2, pageSize: P });
  });
});

describe.skipIf(!existsSync(dist))('dirty tracking with worker translators', () => {
  test('while workers write, repeated read-and-clear reports every written page and no other', async () => {
    const { Iommu: DistIommu } = await import(dist.href);
    const iommu = DistIommu.createSync({ ram: { base: RAM_BASE, bytes: 8 * M2 } });
    const dev = iommu.addDevice({ bdf: '00:03.0', dirty: true });
    const fd = iommu.open();
    const ioas = fd.ioasAlloc();
    const pages = 512;
    fd.ioasMap(ioas, { iova: IOVA, length: pages * P, phys: RAM_BASE + 3 * P }); // 4 KiB leaves
    const hwpt = fd.hwptAlloc({ devId: dev.bind(fd), ptId: ioas, dirtyTracking: true });
    dev.attach(hwpt);
    fd.hwptSetDirtyTracking(hwpt, true);
    const control = new SharedArrayBuffer(16);
    const ctl = new Int32Array(control);
    const workers = [1, 2].map(
      (seed) =>
        new Promise<{ written: number[] }>((resolve, reject) => {
          const w = new Worker(new URL('./workers/dirty-worker.mjs', import.meta.url), {
            workerData: { handle: iommu.translatorHandle(), control, rid: dev.rid, iova: IOVA, pages, seed },
          });
          w.once('message', resolve);
          w.once('error', reject);
        }),
    );
    while (Atomics.load(ctl, 2) < 2) await new Promise((r) => setTimeout(r, 5));
    const reported = new Set<number>();
    const end = performance.now() + 600;
    let reads = 0;
    while (performance.now() < end) {
      for (const b of setBits(fd.hwptGetDirtyBitmap(hwpt, { iova: IOVA, length: pages * P, pageSize: P }))) reported.add(b);
      reads++;
      await new Promise((r) => setImmediate(r));
    }
    Atomics.store(ctl, 0, 1);
    const written = new Set((await Promise.all(workers)).flatMap((r) => r.written));
    for (const b of setBits(fd.hwptGetDirtyBitmap(hwpt, { iova: IOVA, length: pages * P, pageSize: P }))) reported.add(b);
    expect(reads).toBeGreaterThan(10);
    expect(written.size).toBeGreaterThan(20);
    expect([...reported].sort((a, b) => a - b)).toEqual([...written].sort((a, b) => a - b));
    fd.close();
  });
});
