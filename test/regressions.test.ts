// Regression tests for the defects of issue 10, found from outside: each goes through the public API
// only and failed on the code before its fix for the reason named in its title.
import { describe, expect, test } from 'vitest';
import { Access, Iommu, NO_PASID, Translator, type IommuFd } from '../src/index';
import { errnoOf } from './helpers';
import { GuestRam, GuestTables } from './vectors/guest-tables';

const P = 0x1000n;
const RAM = 0x8000_0000n;
const RAM_BYTES = 8 << 20;

/** An engine with guest RAM, one FD, one IOAS and a device bound to the FD (with `attach`, attached to the IOAS). */
function rig(opts: { dirty?: boolean; pri?: boolean; shared?: boolean; addressWidth?: 39 | 48 | 57; maxMemoryBytes?: number; attach?: boolean } = {}) {
  const iommu = Iommu.createSync({
    ram: { base: RAM, bytes: RAM_BYTES }, translators: 2, iotlbEntries: 64, maxDomains: 16,
    maxMemoryBytes: opts.maxMemoryBytes ?? 32 << 20, shared: opts.shared ?? false, addressWidth: opts.addressWidth ?? 48,
  });
  const dev = iommu.addDevice({ bdf: '00:02.0', dirty: opts.dirty ?? false, pri: opts.pri ?? false });
  const fd = iommu.open();
  const ioas = fd.ioasAlloc();
  const devId = dev.bind(fd);
  if (opts.attach) dev.attach(ioas);
  return { iommu, dev, fd, ioas, devId };
}

/** The areas of IOAS `ioas` as `[iova, phys]` pairs (from `objects()` and translations of a fresh HWPT). */
function areaStarts(fd: IommuFd, ioas: number): number {
  const o = fd.objects().find((x) => x.id === ioas)!;
  return o.areas as number;
}

/** What a HWPT allocated now (so filled from the IOAS's areas) translates at `iovas`: phys or undefined. */
function freshHwptView(iommu: Iommu, fd: IommuFd, ioas: number, iovas: bigint[], bdf: string): (bigint | undefined)[] {
  const dev = iommu.addDevice({ bdf });
  const devId = dev.bind(fd);
  const hwpt = fd.hwptAlloc({ devId, ptId: ioas });
  dev.attach(hwpt);
  const out = iovas.map((v) => {
    const t = iommu.translate(dev.rid, NO_PASID, v, Access.Read);
    return t.ok ? t.phys : undefined;
  });
  dev.detach();
  dev.unbind();
  fd.destroy(hwpt);
  return out;
}

describe('defect 1: re-entrant onUnmap', () => {
  test('onUnmap mapping below the unmapped area: the right area goes, the new one stays, later HWPTs agree', () => {
    const { iommu, dev, fd, ioas } = rig({ attach: true });
    const A = 0x10_0000n, N = 0x8_0000n;
    fd.ioasMap(ioas, { iova: A, length: P, phys: RAM });
    fd.ioasMap(ioas, { iova: 0x20_0000n, length: P, phys: RAM + P });
    let calls = 0;
    const access = fd.accessCreate(ioas, {
      onUnmap: (iova, length) => {
        calls++;
        fd.ioasMap(ioas, { iova: N, length: P, phys: RAM + 2n * P }); // lands before A in the area list
        access.unpin(iova, length);
      },
    });
    access.pin(A, P);
    expect(fd.ioasUnmap(ioas, A, P)).toBe(P);
    expect(calls).toBe(1);
    expect(iommu.translate(dev.rid, NO_PASID, A, Access.Read).ok).toBe(false);
    expect(iommu.translate(dev.rid, NO_PASID, N, Access.Read).phys).toBe(RAM + 2n * P);
    expect(areaStarts(fd, ioas)).toBe(2);
    expect(freshHwptView(iommu, fd, ioas, [A, N, 0x20_0000n], '00:05.0')).toEqual([undefined, RAM + 2n * P, RAM + P]);
  });

  test('onUnmap unmapping a sibling inside the range: areas outside the range survive everywhere', () => {
    const { iommu, dev, fd, ioas } = rig({ attach: true });
    const A = 0x10_0000n, B = 0x10_1000n, C = 0x30_0000n;
    fd.ioasMap(ioas, { iova: A, length: P, phys: RAM });
    fd.ioasMap(ioas, { iova: B, length: P, phys: RAM + P });
    fd.ioasMap(ioas, { iova: C, length: P, phys: RAM + 2n * P });
    const access = fd.accessCreate(ioas, {
      onUnmap: (iova, length) => {
        if (iova === A) fd.ioasUnmap(ioas, B, P);
        access.unpin(iova, length);
      },
    });
    access.pin(A, P);
    fd.ioasUnmap(ioas, A, 0x10_0000n); // [A, A + 1 MiB): A and B, not C
    for (const v of [A, B]) expect(iommu.translate(dev.rid, NO_PASID, v, Access.Read).ok).toBe(false);
    expect(iommu.translate(dev.rid, NO_PASID, C, Access.Read).phys).toBe(RAM + 2n * P);
    expect(areaStarts(fd, ioas)).toBe(1);
    expect(freshHwptView(iommu, fd, ioas, [A, B, C], '00:05.0')).toEqual([undefined, undefined, RAM + 2n * P]);
  });

  test('onUnmap copying the area being unmapped: the copy lives on, the source goes', () => {
    const { iommu, dev, fd, ioas } = rig({ attach: true });
    const A = 0x40_0000n;
    fd.ioasMap(ioas, { iova: A, length: P, phys: RAM + 5n * P });
    let copy = 0n;
    const access = fd.accessCreate(ioas, {
      onUnmap: (iova, length) => {
        copy = fd.ioasCopy({ dstIoas: ioas, srcIoas: ioas, srcIova: iova, length }); // automatic IOVA: below A
        access.unpin(iova, length);
      },
    });
    access.pin(A, P);
    expect(fd.ioasUnmap(ioas, A, P)).toBe(P);
    expect(copy).toBeLessThan(A);
    expect(iommu.translate(dev.rid, NO_PASID, A, Access.Read).ok).toBe(false);
    expect(iommu.translate(dev.rid, NO_PASID, copy, Access.Read).phys).toBe(RAM + 5n * P);
    expect(freshHwptView(iommu, fd, ioas, [A, copy], '00:05.0')).toEqual([undefined, RAM + 5n * P]);
  });

  test('onUnmap that never unpins still ends in EDEADLOCK with the area kept', () => {
    const { iommu, dev, fd, ioas } = rig({ attach: true });
    fd.ioasMap(ioas, { iova: 0x10_0000n, length: P, phys: RAM });
    let calls = 0;
    const access = fd.accessCreate(ioas, { onUnmap: () => void calls++ });
    access.pin(0x10_0000n, P);
    expect(errnoOf(() => fd.ioasUnmap(ioas, 0x10_0000n, P))).toBe('EDEADLOCK');
    expect(calls).toBeGreaterThan(1);
    expect(iommu.translate(dev.rid, NO_PASID, 0x10_0000n, Access.Read).ok).toBe(true);
  });
});

/**
 * Dirty-capable device; an IOAS mapping GPA = RAM offset for the stage-1 tables ([1 MiB, 2 MiB)) and
 * 64 KiB of data at 3 MiB, in 4 KiB leaves (so the bitmap names single pages); a dirty-tracking nest
 * parent, an x86-64 child attached.
 */
function nestedDirtyRig() {
  const { iommu, dev, fd, ioas, devId } = rig({ dirty: true });
  fd.ioasMap(ioas, { iova: 0x10_0000n, length: 0x10_0000n, phys: RAM + 0x10_0000n });
  fd.ioasMap(ioas, { iova: 0x30_0000n, length: 0x1_0000n, phys: RAM + 0x30_0000n });
  const parent = fd.hwptAlloc({ devId, ptId: ioas, nestParent: true, dirtyTracking: true });
  const ram = new GuestRam(iommu, RAM, RAM + 0x10_0000n);
  const gpaOf = (addr: bigint): bigint => addr - RAM;
  const root = gpaOf(ram.table());
  const A = 0x20n, D = 0x40n;
  const t = new GuestTables(ram, root, 4, (gpa) => gpa | 0x7n | A, 9, (gpa) => gpa + RAM);
  const child = fd.hwptAlloc({ devId, ptId: parent, table: { format: 'x86-64', root } });
  dev.attach(child);
  fd.hwptSetDirtyTracking(parent, true);
  const bitmap = (noClear = false): bigint[] => {
    const bm = fd.hwptGetDirtyBitmap(parent, { iova: 0, length: BigInt(RAM_BYTES), pageSize: P, noClear });
    const out: bigint[] = [];
    bm.forEach((w, i) => {
      for (let b = 0n; b < 64n; b++) if ((w >> b) & 1n) out.push((BigInt(i) * 64n + b) * P);
    });
    return out;
  };
  const map = (va: bigint, gpa: bigint, dirty = true): bigint => {
    t.map(va, 0, gpa | 0x7n | A | (dirty ? D : 0n), () => gpaOf(ram.table()));
    return gpaOf(t.lastEntries.get(0)!);
  };
  return { iommu, dev, fd, parent, child, bitmap, map };
}

describe('defect 2: dirty tracking of a nest parent sees writes through nested HWPTs', () => {
  test('translate with Write through the child marks the parent page; a read does not', () => {
    const r = nestedDirtyRig();
    r.map(0x1000_0000n, 0x30_0000n);
    r.map(0x1000_1000n, 0x30_1000n);
    r.bitmap(); // tables written by the guest before tracking: clear
    expect(r.iommu.translate(r.dev.rid, NO_PASID, 0x1000_1000n, Access.Read).ok).toBe(true);
    expect(r.iommu.translate(r.dev.rid, NO_PASID, 0x1000_0000n, Access.Write).ok).toBe(true);
    expect(r.bitmap()).toEqual([0x30_0000n]);
    // The read above must not have cached write rights: this write must miss and mark.
    expect(r.iommu.translate(r.dev.rid, NO_PASID, 0x1000_1000n, Access.Write).ok).toBe(true);
    expect(r.bitmap()).toEqual([0x30_1000n]);
  });

  test('read-and-clear ends cached write rights of children: the next write through the child marks again', () => {
    const r = nestedDirtyRig();
    r.map(0x1000_0000n, 0x30_0000n);
    r.bitmap();
    const buf = new Uint8Array([1, 2, 3]);
    expect(r.iommu.dmaWrite(r.dev.rid, NO_PASID, 0x1000_0010n, buf)).toEqual({ bytes: 3 });
    expect(r.bitmap()).toEqual([0x30_0000n]);
    expect(r.bitmap()).toEqual([]);
    expect(r.iommu.dmaWrite(r.dev.rid, NO_PASID, 0x1000_0020n, buf)).toEqual({ bytes: 3 });
    expect(r.bitmap(true)).toEqual([0x30_0000n]);
  });

  test('a stage-1 A/D update written into a table page marks that page in the parent', () => {
    const r = nestedDirtyRig();
    const leafAt = r.map(0x1000_0000n, 0x30_0000n, false); // leaf without D: the write sets it
    r.bitmap();
    expect(r.iommu.translate(r.dev.rid, NO_PASID, 0x1000_0000n, Access.Write).ok).toBe(true);
    expect(r.bitmap()).toEqual([leafAt & ~(P - 1n), 0x30_0000n].sort((a, b) => (a < b ? -1 : 1)));
  });

  test('dirty tracking turned on after a child cached a writable result: the next write still marks', () => {
    const { iommu, dev, fd, ioas, devId } = rig({ dirty: true });
    fd.ioasMap(ioas, { iova: 0x10_0000n, length: 0x10_0000n, phys: RAM + 0x10_0000n });
    fd.ioasMap(ioas, { iova: 0x30_0000n, length: 0x1_0000n, phys: RAM + 0x30_0000n });
    const parent = fd.hwptAlloc({ devId, ptId: ioas, nestParent: true, dirtyTracking: true });
    const ram = new GuestRam(iommu, RAM, RAM + 0x10_0000n);
    const root = ram.table() - RAM;
    const t = new GuestTables(ram, root, 4, (gpa) => gpa | 0x27n, 9, (gpa) => gpa + RAM);
    t.map(0x1000_0000n, 0, 0x30_0000n | 0x67n, () => ram.table() - RAM);
    const child = fd.hwptAlloc({ devId, ptId: parent, table: { format: 'x86-64', root } });
    dev.attach(child);
    expect(iommu.translate(dev.rid, NO_PASID, 0x1000_0000n, Access.Write).ok).toBe(true); // cached writable
    fd.hwptSetDirtyTracking(parent, true);
    expect(iommu.translate(dev.rid, NO_PASID, 0x1000_0000n, Access.Write).ok).toBe(true);
    const bm = fd.hwptGetDirtyBitmap(parent, { iova: 0x30_0000n, length: P, pageSize: P });
    expect(bm[0]).toBe(1n);
  });
});

describe('defect 3: dirtyTracking with faultId', () => {
  test('a dirty-tracking HWPT with a fault queue tracks writes and still raises page requests', () => {
    const { iommu, dev, fd, ioas, devId } = rig({ dirty: true, pri: true });
    fd.ioasMap(ioas, { iova: 0x10_0000n, length: 4n * P, phys: RAM });
    const q = fd.faultQueueAlloc();
    const hwpt = fd.hwptAlloc({ devId, ptId: ioas, dirtyTracking: true, faultId: q.id });
    dev.attach(hwpt);
    fd.hwptSetDirtyTracking(hwpt, true);
    expect(iommu.translate(dev.rid, NO_PASID, 0x10_1000n, Access.Read).ok).toBe(true);
    expect(iommu.dmaWrite(dev.rid, NO_PASID, 0x10_2000n, new Uint8Array(8))).toEqual({ bytes: 8 });
    expect(iommu.translate(dev.rid, NO_PASID, 0x10_1000n, Access.Write).ok).toBe(true);
    const bm = fd.hwptGetDirtyBitmap(hwpt, { iova: 0x10_0000n, length: 4n * P, pageSize: P });
    expect(bm[0]).toBe(0b110n);
    const miss = iommu.translate(dev.rid, NO_PASID, 0x90_0000n, Access.Read);
    expect(miss.fault).toMatchObject({ reason: 'not-present', pageRequest: true });
    expect(q.fd.read().map((r) => r.addr)).toEqual([0x90_0000n]);
  });
});

describe('defect 4: transient buffers are reused', () => {
  const ITER = 1000;
  const flat = (iommu: Iommu, loop: () => void): void => {
    loop(); // the first round may take the space the loop keeps reusing
    const before = iommu.stats();
    for (let i = 0; i < ITER; i++) loop();
    const after = iommu.stats();
    expect({ memoryBytes: after.memoryBytes, tablePages: after.tablePages }).toEqual({ memoryBytes: before.memoryBytes, tablePages: before.tablePages });
  };

  test('dirty-bitmap reads of 1 GiB (32 KiB bitmaps) keep memory flat', () => {
    const { iommu, dev, fd, ioas, devId } = rig({ dirty: true });
    fd.ioasMap(ioas, { iova: 0x4000_0000n, length: 0x4000_0000n, phys: 0x1_0000_0000n });
    const hwpt = fd.hwptAlloc({ devId, ptId: ioas, dirtyTracking: true });
    dev.attach(hwpt);
    fd.hwptSetDirtyTracking(hwpt, true);
    flat(iommu, () => void fd.hwptGetDirtyBitmap(hwpt, { iova: 0x4000_0000n, length: 0x4000_0000n, pageSize: P }));
  });

  test('translator handles of 4096 requests, taken and released, keep memory flat', () => {
    const { iommu } = rig({ shared: true });
    flat(iommu, () => iommu.translatorRelease(iommu.translatorHandle({ batchCapacity: 4096 })));
  });

  test('batches of 4096 requests, made and released, keep memory flat; a released batch refuses use', () => {
    const { iommu } = rig();
    flat(iommu, () => iommu.batch(4096).release());
    const b = iommu.batch(16);
    b.release();
    expect(() => b.run(1)).toThrow(RangeError);
    expect(() => b.release()).not.toThrow(); // twice is a no-op
  });

  test('a snapshot taken while a batch is live: the restored engine has its pages free', () => {
    const { iommu } = rig();
    const before = iommu.stats().tablePages;
    iommu.batch(4096);
    expect(iommu.stats().tablePages).toBe(before + 32);
    expect(Iommu.restore(iommu.snapshot()).iommu.stats().tablePages).toBe(before);
  });

  test('interleaved with table allocations, buffers still reuse space', () => {
    const { iommu, fd, ioas } = rig({ shared: true });
    const round = (): void => {
      const b = iommu.batch(2048);
      fd.ioasMap(ioas, { iova: 0x10_0000n, length: P, phys: RAM });
      const h = iommu.translatorHandle({ batchCapacity: 1024 });
      b.release();
      fd.ioasUnmap(ioas, 0x10_0000n, P);
      iommu.translatorRelease(h);
    };
    flat(iommu, round);
  });
});

describe('defect 5: translatorRelease answers what its worker raised', () => {
  test('page requests of a released translator reach the fault queue', () => {
    const { iommu, dev, fd, devId, ioas } = rig({ pri: true, shared: true });
    const q = fd.faultQueueAlloc();
    const hwpt = fd.hwptAlloc({ devId, ptId: ioas, faultId: q.id });
    dev.attach(hwpt);
    const handle = iommu.translatorHandle({ batchCapacity: 16 });
    const worker = Translator.attach(handle);
    const t = worker.translate(dev.rid, NO_PASID, 0x5000_0000n, Access.Write);
    expect(t.fault).toMatchObject({ reason: 'not-present', pageRequest: true });
    iommu.translatorRelease(handle);
    const reqs = q.fd.read();
    expect(reqs.map((r) => [r.addr, r.perm])).toEqual([[0x5000_0000n, Access.Write]]);
    q.fd.write([{ cookie: reqs[0]!.cookie, code: 'success' }]);
    expect(dev.pageResponses().map((r) => r.code)).toEqual(['success']);
  });
});

describe('defect 6: translate() reports integral number IOVAs from 2^53 exactly', () => {
  test('a mapping at 2^53 and 2^54 + 4 KiB, and a fault at 2^56', () => {
    const { iommu, dev, fd, ioas } = rig({ addressWidth: 57, attach: true });
    fd.ioasMap(ioas, { iova: 1n << 53n, length: P, phys: RAM });
    fd.ioasMap(ioas, { iova: (1n << 54n) + P, length: P, phys: RAM + P });
    const a = iommu.translate(dev.rid, NO_PASID, 2 ** 53, Access.Read);
    expect([a.ok, a.iova, a.phys]).toEqual([true, 1n << 53n, RAM]);
    const b = iommu.translate(dev.rid, NO_PASID, 2 ** 54 + 4096, Access.Read);
    expect([b.ok, b.iova, b.phys]).toEqual([true, (1n << 54n) + P, RAM + P]);
    const c = iommu.translate(dev.rid, NO_PASID, 2 ** 56, Access.Read);
    expect([c.ok, c.iova]).toEqual([false, 1n << 56n]);
    expect(iommu.translate(dev.rid, NO_PASID, 2 ** 64, Access.Read).fault?.reason).toBe('bad-request');
  });
});

describe('defect 7: dmaRead/dmaWrite with a buffer that is not a Uint8Array', () => {
  const bad: [string, unknown][] = [
    ['null', null], ['undefined', undefined], ['an array', [1, 2, 3]], ['a string', 'abc'], ['a number', 16],
    ['a DataView', new DataView(new ArrayBuffer(8))], ['an object with length', { length: 4 }], ['a Uint16Array', new Uint16Array(4)],
  ];
  const { iommu, dev, fd, ioas } = rig({ attach: true });
  fd.ioasMap(ioas, { iova: 0x10_0000n, length: P, phys: RAM });
  for (const [what, buf] of bad) {
    test(`${what}: a bad-request fault value, no exception`, () => {
      for (const dma of [iommu.dmaRead.bind(iommu), iommu.dmaWrite.bind(iommu)]) {
        const r = dma(dev.rid, NO_PASID, 0x10_0000n, buf as Uint8Array);
        expect(r).toEqual({ bytes: 0, fault: { reason: 'bad-request', level: 0, stage: 0 } });
      }
    });
  }
  test('a Node Buffer (a Uint8Array) still works', () => {
    expect(iommu.dmaWrite(dev.rid, NO_PASID, 0x10_0000n, Buffer.from([9, 8, 7]))).toEqual({ bytes: 3 });
    const back = new Uint8Array(3);
    expect(iommu.dmaRead(dev.rid, NO_PASID, 0x10_0000n, back)).toEqual({ bytes: 3 });
    expect([...back]).toEqual([9, 8, 7]);
  });
});

