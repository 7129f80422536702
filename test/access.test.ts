// Access objects (iommufd's software DMA path, the selftest's access cases E 33–38, tools/testing/selftests/iommu/iommufd.c): read,
// write, pin and unpin by IOVA through an IOAS, and unmaps of pinned ranges.
import { describe, expect, test } from 'vitest';
import type { IommuFd } from '../src/index';
import { err, ok } from './helpers';
import { createInMode, RAM_MODES, type RamMode } from './ram-modes';

const P = 4096;
const RAM_BASE = 0x4000_0000;
const BUF = 16 * P;

/** An engine with guest RAM in `mode`; `ram` is the caller's own view of it. */
function rig(mode: RamMode) {
  const { iommu, rams: [ram] } = createInMode(mode, { base: RAM_BASE, bytes: 64 * P });
  const fd = ok.open(iommu);
  const ioas = fd.ioasAlloc();
  // Guest RAM filled with a pattern that tells every byte apart.
  ram!.forEach((_, i, a) => (a[i] = (i * 7 + (i >> 8)) & 0xff));
  return { iommu, ram: ram!, fd, ioas };
}


const mapBuf = (fd: IommuFd, ioas: number, iova: number, phys = RAM_BASE, write = true) =>
  fd.ioasMap(ioas, { iova, length: BUF, phys, write });

describe.each(RAM_MODES)('access objects, RAM in %s', (mode) => {
  test('iommufd_ioas.access_rw: every length 1..31 around a page boundary reads and writes RAM exactly', () => {
    const { ram, fd, ioas } = rig(mode);
    const iova = Number(fd.ioasMap(ioas, { length: BUF, phys: RAM_BASE }));
    const access = ok.accessCreate(fd, ioas);
    for (let at = iova + P - 50; at < iova + P + 50; at++) {
      for (let len = 1; len < 32; len++) {
        const want = ram.slice(at - iova, at - iova + len);
        const got = new Uint8Array(len);
        access.read(at, got);
        expect(got).toEqual(want);
        const data = Uint8Array.from({ length: len }, (_, i) => (at + i * 13) & 0xff);
        access.write(at, data);
        expect(ram.slice(at - iova, at - iova + len)).toEqual(data);
      }
    }
    const all = new Uint8Array(BUF);
    access.read(iova, all);
    expect(all).toEqual(ram.slice(0, BUF));
  });

  test('iommufd_ioas.access_rw_unaligned: a mapping at an unaligned IOVA (no domain) reads back exactly', () => {
    const { ram, fd, ioas } = rig(mode);
    fd.ioasMap(ioas, { iova: P + 2048, length: BUF, phys: RAM_BASE + 2048 });
    const access = ok.accessCreate(fd, ioas);
    const got = new Uint8Array(100);
    access.read(P + 2048 + 4000, got);
    expect(got).toEqual(ram.slice(2048 + 4000, 2048 + 4100));
  });

  test('reads across two contiguous mappings; errors: hole ENOENT, no permission EPERM, outside RAM EFAULT, zero length EINVAL', () => {
    const { fd, ioas } = rig(mode);
    mapBuf(fd, ioas, 0x10_0000, RAM_BASE);
    mapBuf(fd, ioas, 0x10_0000 + BUF, RAM_BASE + 2 * BUF, false);
    const access = ok.accessCreate(fd, ioas);
    access.read(0x10_0000 + BUF - 8, new Uint8Array(16));
    err.accessWrite('EPERM', access, 0x10_0000 + BUF - 8, new Uint8Array(16));
    err.accessRead('ENOENT', access, 0x10_0000 + 2 * BUF - 8, new Uint8Array(16));
    err.accessRead('EINVAL', access, 0x10_0000, new Uint8Array(0));
    fd.ioasMap(ioas, { iova: 0x80_0000, length: P, phys: 0xfee0_0000 }); // MMIO, not RAM
    err.accessRead('EFAULT', access, 0x80_0000, new Uint8Array(4));
  });

  test('iommufd_ioas.access_pin_unmap: unmapping a pinned range calls onUnmap, which unpins; the pin is then gone', () => {
    const { fd, ioas } = rig(mode);
    const calls: [bigint, bigint][] = [];
    const access = ok.accessCreate(fd, ioas, {
      onUnmap: (iova, length) => {
        calls.push([iova, length]);
        access.unpin(0x100_0000, BUF);
      },
    });
    mapBuf(fd, ioas, 0x100_0000);
    access.pin(0x100_0000, BUF);
    expect(access.pinned()).toHaveLength(1);
    expect(fd.ioasUnmap(ioas, 0x100_0000, BUF)).toBe(BigInt(BUF));
    expect(calls).toEqual([[0x100_0000n, BigInt(BUF)]]);
    err.accessUnpin('ENOENT', access, 0x100_0000, BUF);
  });

  test('a pin that onUnmap never drops makes unmap EDEADLOCK and leaves the mapping in place', () => {
    const { fd, ioas } = rig(mode);
    let calls = 0;
    const access = ok.accessCreate(fd, ioas, { onUnmap: () => void calls++ });
    mapBuf(fd, ioas, 0x100_0000);
    access.pin(0x100_0000 + P, 2 * P);
    err.ioasUnmap('EDEADLOCK', fd, ioas, 0, 2n ** 64n - 1n);
    expect(calls).toBe(100);
    access.read(0x100_0000, new Uint8Array(4)); // still mapped
    expect(fd.objects().find((o) => o.id === ioas)?.areas).toBe(1);
    access.unpin(0x100_0000 + P, 2 * P);
    expect(fd.ioasUnmap(ioas, 0, 2n ** 64n - 1n)).toBe(BigInt(BUF));
  });

  test('iommufd_ioas.access_pin: pins need page alignment, an onUnmap callback and a mapped range; two pins both unpin', () => {
    const { fd, ioas } = rig(mode);
    const plain = ok.accessCreate(fd, ioas);
    mapBuf(fd, ioas, 0x100_0000);
    err.accessPin('EINVAL', plain, 0x100_0000, P);
    const access = ok.accessCreate(fd, ioas, { onUnmap: () => undefined });
    for (let pages = 1; pages < 16; pages++) {
      access.pin(0x100_0000, pages * P);
      access.pin(0x100_0000, pages * P);
      access.unpin(0x100_0000, pages * P);
      access.unpin(0x100_0000, pages * P);
    }
    err.accessPin('EINVAL', access, 0x100_0000 + 1, P);
    err.accessPin('EINVAL', access, 0x100_0000, P + 1);
    err.accessPin('ENOENT', access, 0x100_0000 + BUF - P, 2 * P);
    expect(access.pinned()).toEqual([]);
  });

  test('a pinning access makes the IOAS page aligned; the access holds the IOAS (EBUSY) until destroyed', () => {
    const { fd, ioas } = rig(mode);
    expect(fd.ioasIovaRanges(ioas).alignment).toBe(1n);
    const access = ok.accessCreate(fd, ioas, { onUnmap: () => undefined });
    expect(fd.ioasIovaRanges(ioas).alignment).toBe(BigInt(P));
    err.ioasMap('EINVAL', fd, ioas, { iova: 0x1000, length: 100, phys: RAM_BASE });
    err.destroy('EBUSY', fd, ioas);
    fd.destroy(access.id);
    expect(fd.ioasIovaRanges(ioas).alignment).toBe(1n);
    err.accessRead('EBADF', access, 0, new Uint8Array(1));
    fd.destroy(ioas);
  });
});
