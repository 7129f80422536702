// hwptInvalidate's `leaf` entries (src/iommufd/invalidate.ts): a RISC-V IOTINVAL.VMA with AV=1
// names a leaf by any address in it, so a superpage cached from another of its pages must go too;
// a plain page entry leaves it (and pages of other leaves stay either way).
import { describe, expect, test } from 'vitest';
import { Access, Iommu, NO_PASID } from '../src/index';

const RAM = 0x8000_0000n;

function machine() {
  const iommu = Iommu.createSync({ ram: { base: RAM, bytes: 8 << 20 }, shared: false });
  const view = new DataView(iommu.ram.buffer, iommu.ram.byteOffset, iommu.ram.byteLength);
  const put = (gpa: bigint, v: bigint) => view.setBigUint64(Number(gpa - RAM), v, true);
  // Sv39 at 0x8000_0000: IOVA 0 .. 2 MiB is one 2 MiB leaf to 0x8020_0000; IOVA 2 MiB + 4 KiB pages.
  put(RAM, ((RAM + 0x1000n) >> 12n) << 10n | 1n);
  put(RAM + 0x1000n, ((0x8020_0000n >> 12n) << 10n) | 0xd7n); // V R W U A D: a 2 MiB leaf
  put(RAM + 0x1008n, ((RAM + 0x2000n) >> 12n) << 10n | 1n);
  put(RAM + 0x2000n, ((0x8040_0000n >> 12n) << 10n) | 0xd7n); // a 4 KiB leaf at IOVA 2 MiB
  const dev = iommu.addDevice({ bdf: '00:01.0' });
  const fd = iommu.open();
  const devId = dev.bind(fd);
  const hwpt = fd.hwptAlloc({ devId, table: { format: 'sv39', root: RAM } });
  dev.attach(hwpt);
  const tr = (iova: bigint) => iommu.translate(dev.rid, NO_PASID, iova, Access.Read);
  return { fd, hwpt, put, tr };
}

describe('hwptInvalidate leaf entries', () => {
  test('one address of a cached superpage drops the translations cached from its other pages', () => {
    const { fd, hwpt, put, tr } = machine();
    expect(tr(0x5000n)).toMatchObject({ ok: true, phys: 0x8020_5000n, size: 0x20_0000n });
    expect(tr(0x20_0000n)).toMatchObject({ ok: true, phys: 0x8040_0000n });
    // The guest moves the superpage and the 4 KiB page, then names one address of each leaf's neighbour.
    put(RAM + 0x1000n, ((0x8060_0000n >> 12n) << 10n) | 0xd7n);
    put(RAM + 0x2000n, ((0x8050_0000n >> 12n) << 10n) | 0xd7n);
    fd.hwptInvalidate(hwpt, [{ iova: 0x1000n, length: 4096, leaf: true }]);
    expect(tr(0x5000n)).toMatchObject({ ok: true, phys: 0x8060_5000n }); // cached from page 5, dropped by page 1
    expect(tr(0x20_0000n)).toMatchObject({ ok: true, phys: 0x8040_0000n }); // another leaf: still cached
  });

  test('without leaf, a page entry leaves a superpage cached from another page (the VT-d rule)', () => {
    const { fd, hwpt, put, tr } = machine();
    expect(tr(0x5000n).ok).toBe(true);
    put(RAM + 0x1000n, ((0x8060_0000n >> 12n) << 10n) | 0xd7n);
    fd.hwptInvalidate(hwpt, [{ iova: 0x1000n, length: 4096 }]);
    expect(tr(0x5000n)).toMatchObject({ ok: true, phys: 0x8020_5000n });
  });

  test('leaf needs an address range and a boolean', () => {
    const { fd, hwpt } = machine();
    expect(() => fd.hwptInvalidate(hwpt, [{ leaf: true }])).toThrow(expect.objectContaining({ errno: 'EINVAL' }));
    expect(() => fd.hwptInvalidate(hwpt, [{ iova: 0, length: 4096, leaf: 1 as unknown as boolean }])).toThrow(expect.objectContaining({ errno: 'EINVAL' }));
  });
});
