// A translator follows pointers it reads from the shared memory: device bus pages and engine table
// pages. Whatever such a pointer holds — a page of memory this thread's instance has not seen grow
// yet (assembly/reach.ts), or garbage — the translation must end in a fault value, never a Wasm trap.
// The garbage is written straight into the tables here; before reach.ts a pointer beyond the
// memory's end trapped with "memory access out of bounds" (per call and inside Batch.run).
import { describe, expect, test } from 'vitest';
import * as abi from '../assembly/abi';
import { Access, Iommu, NO_PASID } from '../src/index';
import { bumpDomainGeneration, engineOf, fdView } from './testing';

const IOVA = 0x4000_0000; // 1 GiB: the page gets tables of its own below the root
const PHYS = 0x1_2345_6000;
const ADDR_MASK = ((1n << BigInt(abi.PTE_ADDR_BITS)) - 1n) << BigInt(abi.PTE_ADDR_SHIFT);

function rig(shared: boolean) {
  const iommu = Iommu.createSync({ shared, maxMemoryBytes: 16 << 20 });
  const dev = iommu.addDevice({ bdf: '00:03.0' });
  const fd = iommu.open();
  const ioas = fd.ioasAlloc();
  const devId = dev.bind(fd);
  const hwpt = fd.hwptAlloc({ devId, ptId: ioas });
  dev.attach(hwpt);
  fd.ioasMap(ioas, { iova: IOVA, length: 4096, phys: PHYS });
  const domain = (fdView(fd).objects.find((o) => o.id === hwpt) as { domain: number }).domain;
  return { iommu, dev, fd, domain };
}

/** Byte address of the entry at `level` (above the leaf) that points at the next table of IOVA's walk. */
function tablePointerEntry(iommu: object, domain: number, level: number): number {
  const e = engineOf(iommu);
  const u32 = new Uint32Array(e.core.memory.buffer);
  const u64 = new BigUint64Array(e.core.memory.buffer);
  const d = e.layout.domains + domain * abi.DOM_SIZE;
  let table = u32[(d + abi.DOM_ROOT) >>> 2]!;
  for (let at = u32[(d + abi.DOM_LEVELS) >>> 2]! - 1; ; at--) {
    const slot = table + (Math.floor(IOVA / 2 ** (12 + 9 * at)) % 512) * 8;
    if (at === level) return slot;
    table = Number(u64[slot / 8]! & ADDR_MASK);
  }
}

/** Garbage table addresses: past the memory's end, past 4 GiB (wraps to a pool page in 32 bits), the control block. */
function garbage(iommu: object): bigint[] {
  const e = engineOf(iommu);
  const end = e.core.memory.buffer.byteLength;
  return [BigInt(end), BigInt(end + 0x10_0000), (1n << 32n) + BigInt(e.layout.poolBase), 1n << 39n, BigInt(e.layout.ctrl & ~0xfff)];
}

describe.each([true, false])('a walker never traps on a pointer it read (shared %s)', (shared) => {
  test('a garbage table pointer gives not-present, per call and in a batch, and the restored one translates again', () => {
    const { iommu, dev, fd, domain } = rig(shared);
    const e = engineOf(iommu);
    const u64 = () => new BigUint64Array(e.core.memory.buffer);
    expect(iommu.translate(dev.rid, NO_PASID, IOVA, Access.Read).phys).toBe(BigInt(PHYS));
    const batch = iommu.batch(4);
    for (const level of [2, 1]) {
      const slot = tablePointerEntry(iommu, domain, level);
      const good = u64()[slot / 8]!;
      for (const addr of garbage(iommu)) {
        u64()[slot / 8] = (good & ~ADDR_MASK) | (addr & ADDR_MASK);
        bumpDomainGeneration(iommu, domain);
        const t = iommu.translate(dev.rid, NO_PASID, IOVA + 8, Access.Read);
        expect(t.ok, `level ${level} -> ${addr.toString(16)}`).toBe(false);
        expect(t.fault?.reason).toBe('not-present');
        for (let i = 0; i < 4; i++) batch.set(i, dev.rid, NO_PASID, IOVA + i * 8, Access.Read);
        expect(batch.run(4)).toBe(4);
      }
      u64()[slot / 8] = good;
      bumpDomainGeneration(iommu, domain);
      expect(iommu.translate(dev.rid, NO_PASID, IOVA + 8, Access.Read).phys).toBe(BigInt(PHYS + 8));
    }
    batch.release();
    fd.close();
  });

  test('a garbage device bus page pointer gives no-device', () => {
    const { iommu, dev, fd, domain } = rig(shared);
    const e = engineOf(iommu);
    const root = (e.layout.devRoot >>> 2) + (dev.rid >>> 8);
    const good = e.core.u32[root]!;
    for (const addr of garbage(iommu)) {
      if (addr >= 1n << 32n) continue; // the root holds 32-bit pointers
      e.core.u32[root] = Number(addr);
      bumpDomainGeneration(iommu, domain);
      const t = iommu.translate(dev.rid, NO_PASID, IOVA, Access.Read);
      expect(t.ok).toBe(false);
      expect(['no-device', 'not-attached']).toContain(t.fault?.reason);
    }
    e.core.u32[root] = good;
    fd.close();
  });

  test('a garbage domain index in the device context gives not-attached', () => {
    const { iommu, dev, fd, domain } = rig(shared);
    const e = engineOf(iommu);
    const bus = e.core.u32[(e.layout.devRoot >>> 2) + (dev.rid >>> 8)]!;
    const at = (bus + (dev.rid & 255) * abi.DEV_SIZE + abi.DEV_RID_DOMAIN) >>> 2;
    expect(e.core.u32[at]).toBe(domain);
    for (const index of [e.layout.domainCount, 0xffff_ffff, 0x0400_0000]) {
      e.core.u32[at] = index;
      bumpDomainGeneration(iommu, domain);
      const t = iommu.translate(dev.rid, NO_PASID, IOVA, Access.Read);
      expect(t.ok).toBe(false);
      expect(t.fault?.reason).toBe('not-attached');
    }
    e.core.u32[at] = domain;
    bumpDomainGeneration(iommu, domain);
    expect(iommu.translate(dev.rid, NO_PASID, IOVA, Access.Read).phys).toBe(BigInt(PHYS));
    fd.close();
  });
});
