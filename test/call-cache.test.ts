// The per-call path's call cache (src/dma/call-tlb.ts, assembly/callcache.ts): a repeated
// translateInto/translate/dmaRead/dmaWrite is answered in JS without a core call, and every control
// operation that can end a cached translation makes the next request ask the core again (it bumps
// the shootdown count, assembly/shootdown.ts). A counting spy on the core's `translate` export
// tells the two apart; the results are checked too, so a stale answer fails either way.
import { describe, expect, test } from 'vitest';
import * as abi from '../assembly/abi';
import { Access, Iommu, NO_PASID, TranslationOut, type DeviceFd, type IommuFd } from '../src/index';

const RAM = 0x8000_0000;
const IOVA = 0x4000_0000;
const P = 4096;

/**
 * Counts calls of the core's per-call exports made by `iommu`'s own translator: `translate`, and
 * `translateRun` (a DMA over more than one page asks the core through it).
 */
function spyOnCore(iommu: Iommu): { calls: () => number } {
  const core = (iommu as unknown as { local: { core: { exports: Record<string, unknown> } } }).local.core;
  const count = (real: (...a: number[]) => number) => (...a: number[]): number => (calls++, real(...a));
  let calls = 0;
  core.exports = {
    ...core.exports,
    translate: count(core.exports.translate as (...a: number[]) => number),
    translateRun: count(core.exports.translateRun as (...a: number[]) => number),
  };
  return { calls: () => calls };
}

interface Rig {
  iommu: Iommu;
  fd: IommuFd;
  dev: DeviceFd;
  ioas: number;
  devId: number;
  calls: () => number;
  /** Translates IOVA + offset for the device; returns the output address (or -1 on a fault). */
  tr: (offset?: number, access?: number) => number;
}

function rig(opts: { dirty?: boolean; shared?: boolean } = {}): Rig {
  const iommu = Iommu.createSync({ ram: { base: RAM, bytes: 64 * P }, shared: opts.shared });
  const dev = iommu.addDevice({ bdf: '00:02.0', dirty: opts.dirty, pasidBits: 8 });
  const fd = iommu.open();
  const ioas = fd.ioasAlloc();
  const devId = dev.bind(fd);
  dev.attach(ioas);
  for (let i = 0; i < 4; i++) fd.ioasMap(ioas, { iova: IOVA + i * P, length: P, phys: RAM + i * P });
  const out = new TranslationOut();
  const { calls } = spyOnCore(iommu);
  const tr = (offset = 0, access: number = Access.Read): number => {
    iommu.translateInto(out, dev.rid, NO_PASID, IOVA + offset, access);
    return out.ok ? out.phys : -1;
  };
  return { iommu, fd, dev, ioas, devId, calls, tr };
}

/** Expects that the body's first translation asks the core, and the same request then hits. */
function expectRefill(r: Rig, offset: number, want: number, access: number = Access.Read): void {
  const before = r.calls();
  expect(r.tr(offset, access)).toBe(want);
  expect(r.calls()).toBe(before + 1);
  expect(r.tr(offset, access)).toBe(want);
  expect(r.calls()).toBe(before + (want < 0 ? 2 : 1)); // faults are never cached
}

describe('call cache hits', () => {
  test('entry size and count are powers of two (CallTlb masks word indices with them)', () => {
    for (const v of [abi.CALL_ENTRY_SIZE, abi.CALL_ENTRIES_MAX]) expect(v & (v - 1)).toBe(0);
  });


  test('a repeated request makes no core call and counts as a hit; other pages and offsets are their own', () => {
    const r = rig();
    expect(r.tr(0x10)).toBe(RAM + 0x10);
    expect(r.calls()).toBe(1);
    const hits = r.iommu.stats().hits;
    expect(r.tr(0x10)).toBe(RAM + 0x10);
    expect(r.tr(0xff8)).toBe(RAM + 0xff8); // same page, another offset
    expect(r.calls()).toBe(1);
    expect(r.iommu.stats().hits).toBe(hits + 2);
    expect(r.tr(P + 4)).toBe(RAM + P + 4); // another page: the core first
    expect(r.calls()).toBe(2);
  });

  test('the hit counter carries into its high word', () => {
    const r = rig();
    r.tr(0);
    const hits = (r.iommu as unknown as { local: { core: { hits: Uint32Array } } }).local.core.hits;
    hits[0] = 0xffffffff;
    hits[1] = 0;
    r.tr(0);
    expect(r.calls()).toBe(1);
    expect(r.iommu.stats().hits).toBe(2 ** 32);
    r.tr(0);
    expect(r.iommu.stats().hits).toBe(2 ** 32 + 1);
  });

  test('pages of buffers at power-of-two strides do not evict each other', () => {
    const r = rig();
    const iova = (b: number, p: number): number => 2 ** 37 + b * 2 ** 20 + p * P; // 8 buffers of 16 pages, 1 MiB apart
    for (let b = 0; b < 8; b++) r.fd.ioasMap(r.ioas, { iova: iova(b, 0), length: 16 * P, phys: RAM });
    const out = new TranslationOut();
    const all = (): void => {
      for (let b = 0; b < 8; b++) for (let p = 0; p < 16; p++) r.iommu.translateInto(out, r.dev.rid, NO_PASID, iova(b, p), Access.Read);
    };
    all();
    const calls = r.calls();
    all();
    expect(r.calls()).toBe(calls);
  });

  test('bigint IOVAs share the entries of number IOVAs; DMA uses them too', () => {
    const r = rig();
    const out = new TranslationOut();
    r.tr(8);
    r.iommu.translateInto(out, r.dev.rid, NO_PASID, BigInt(IOVA + 16), Access.Read);
    expect(out.phys).toBe(RAM + 16);
    const buf = new Uint8Array(64);
    expect(r.iommu.dmaRead(r.dev.rid, NO_PASID, IOVA + 128, buf).bytes).toBe(64);
    expect(r.calls()).toBe(1);
  });

  test('each access value is answered by the core once: a cached read never grants a write', () => {
    const r = rig();
    r.fd.ioasMap(r.ioas, { iova: IOVA + 8 * P, length: P, phys: RAM + 8 * P, read: true, write: false });
    expect(r.tr(8 * P)).toBe(RAM + 8 * P);
    expectRefill(r, 8 * P, -1, Access.Write);
    expect(r.tr(8 * P, Access.Read | Access.Priv)).toBe(RAM + 8 * P); // another access value: the core
    expect(r.calls()).toBe(4);
    expect(r.tr(8 * P)).toBe(RAM + 8 * P);
    expect(r.calls()).toBe(4);
  });

  test('malformed requests never match an entry (they fault as bad requests)', () => {
    const r = rig();
    r.tr(0);
    const out = new TranslationOut();
    for (const [rid, pasid, iova, access] of [
      [r.dev.rid + 0.5, NO_PASID, IOVA, Access.Read],
      [r.dev.rid + 65536, NO_PASID, IOVA, Access.Read],
      [r.dev.rid, NO_PASID, IOVA + 0.5, Access.Read],
      [r.dev.rid, NO_PASID, IOVA, Access.Read + 16],
      [r.dev.rid, NO_PASID, IOVA, Access.Read + 0.5],
      [r.dev.rid, 0.5, IOVA, Access.Read],
      [r.dev.rid, NO_PASID, -IOVA, Access.Read],
    ] as const) {
      r.iommu.translateInto(out, rid, pasid, iova, access);
      expect(out.ok, `${rid} ${pasid} ${iova} ${access}`).toBe(false);
    }
    r.iommu.translateInto(out, r.dev.rid, NO_PASID, -BigInt(IOVA), Access.Read);
    expect(out.ok).toBe(false);
    r.iommu.translateInto(out, r.dev.rid, NO_PASID, BigInt(IOVA) + (1n << 64n), Access.Read);
    expect(out.ok).toBe(false);
  });

  test('a DMA inside one page hits like translateInto; malformed requesters never match the entry', () => {
    const r = rig();
    const data = Uint8Array.of(1, 2, 3, 4);
    expect(r.iommu.dmaWrite(r.dev.rid, NO_PASID, IOVA + 3 * P + 8, data)).toEqual({ bytes: 4 });
    const { hits } = r.iommu.stats();
    expect(r.iommu.dmaWrite(r.dev.rid, NO_PASID, IOVA + 3 * P + 12, data)).toEqual({ bytes: 4 });
    expect(r.iommu.stats().hits).toBe(hits + 1);
    expect(r.calls()).toBe(1);
    expect([...r.iommu.ram.subarray(3 * P + 8, 3 * P + 16)]).toEqual([1, 2, 3, 4, 1, 2, 3, 4]);
    for (const [rid, pasid, reason] of [
      [r.dev.rid + 0.5, NO_PASID, 'bad-request'],
      [String(r.dev.rid), NO_PASID, 'bad-request'],
      [r.dev.rid, 0.5, 'bad-request'],
      [r.dev.rid, NO_PASID + 2 ** 32, 'bad-request'],
      [r.dev.rid + 65536, NO_PASID, 'bad-request'], // the core's answer: a RID has 16 bits
    ] as const) {
      const got = r.iommu.dmaRead(rid as number, pasid, IOVA + 3 * P + 8, new Uint8Array(4));
      expect(got, `${rid} ${pasid}`).toMatchObject({ bytes: 0, fault: { reason } });
    }
    expect(r.iommu.stats().hits).toBe(hits + 1);
  });

  test('IOVAs from 2^59 (no key) never match the entry of the page whose key bits they share', () => {
    const r = rig();
    r.tr(0);
    const out = new TranslationOut();
    // Page number bits above 32 beyond the key's 15 wrap to the cached page's key and index.
    for (const iova of [BigInt(IOVA) + (1n << 60n), BigInt(IOVA) + (1n << 63n), BigInt(IOVA) + (1n << 59n)]) {
      const calls = r.calls();
      r.iommu.translateInto(out, r.dev.rid, NO_PASID, iova, Access.Read);
      expect(out.ok, iova.toString(16)).toBe(false);
      r.iommu.translateInto(out, r.dev.rid, NO_PASID, Number(iova), Access.Read);
      expect(out.ok, iova.toString(16)).toBe(false);
      expect(r.iommu.dmaRead(r.dev.rid, NO_PASID, iova, new Uint8Array(8)).fault?.reason).toBeDefined();
      expect(r.calls()).toBe(calls + 3);
    }
  });
});

describe('every control operation that can end a cached translation empties the call cache', () => {
  test('unmap, remap elsewhere', () => {
    const r = rig();
    r.tr(0);
    r.fd.ioasUnmap(r.ioas, IOVA, P);
    expectRefill(r, 0, -1);
    r.fd.ioasMap(r.ioas, { iova: IOVA, length: P, phys: RAM + 32 * P });
    expectRefill(r, 0, RAM + 32 * P);
  });

  test('detach, attach, replace with another IOAS', () => {
    const r = rig();
    const other = r.fd.ioasAlloc();
    r.fd.ioasMap(other, { iova: IOVA, length: P, phys: RAM + 16 * P });
    r.tr(0);
    r.dev.detach();
    expectRefill(r, 0, -1);
    r.dev.attach(r.ioas);
    expectRefill(r, 0, RAM);
    r.dev.attach(other); // replace
    expectRefill(r, 0, RAM + 16 * P);
  });

  test('hwptDestroy after detach, and closing the FD', () => {
    const r = rig();
    const hwpt = r.fd.hwptAlloc({ devId: r.devId, ptId: r.ioas });
    r.dev.attach(hwpt);
    r.tr(0);
    r.dev.detach();
    r.fd.destroy(hwpt);
    expectRefill(r, 0, -1);
    r.dev.attach(r.ioas);
    r.tr(0);
    r.fd.close();
    expectRefill(r, 0, -1);
  });

  test('PASID detach ends the PASID\'s entries, not the RID\'s', () => {
    const r = rig();
    const hwpt = r.fd.hwptAlloc({ devId: r.devId, ptId: r.ioas, pasid: true });
    r.dev.attach(hwpt); // the RID on a PASID-capable HWPT too
    r.fd.pasidAlloc({ pasid: 5 });
    r.dev.attach(hwpt, { pasid: 5 });
    const out = new TranslationOut();
    const viaPasid = () => (r.iommu.translateInto(out, r.dev.rid, 5, IOVA, Access.Read), out.ok ? out.phys : -1);
    expect(viaPasid()).toBe(RAM);
    r.tr(0);
    const calls = r.calls();
    r.dev.detach({ pasid: 5 });
    expect(viaPasid()).toBe(-1);
    expect(r.calls()).toBe(calls + 1);
    expectRefill(r, 0, RAM); // the RID entry is asked again too (one count for everything), and right
  });

  test('dirty tracking: a write after read-and-clear goes to the core and marks the page again', () => {
    const r = rig({ dirty: true });
    const hwpt = r.fd.hwptAlloc({ devId: r.devId, ptId: r.ioas, dirtyTracking: true });
    r.dev.attach(hwpt);
    r.fd.hwptSetDirtyTracking(hwpt, true);
    const bitmap = () => r.fd.hwptGetDirtyBitmap(hwpt, { iova: IOVA, length: 4 * P, pageSize: P })[0]!;
    expect(r.tr(0, Access.Write)).toBe(RAM);
    expect(r.tr(0, Access.Write)).toBe(RAM);
    expect(bitmap()).toBe(1n); // read and cleared
    expectRefill(r, 0, RAM, Access.Write);
    expect(bitmap()).toBe(1n);
    expect(bitmap()).toBe(0n);
  });

  test('user-managed tables: a changed entry stays cached until hwptInvalidate covers it', () => {
    const r = rig();
    const view = new DataView(r.iommu.ram.buffer, r.iommu.ram.byteOffset, r.iommu.ram.byteLength);
    const put = (at: number, v: bigint) => view.setBigUint64(at, v, true);
    // Sv39 tables in RAM pages 40..42: IOVA 0x1000 -> RAM page 50.
    const root = RAM + 40 * P;
    put(40 * P, (BigInt(root + P) >> 12n) << 10n | 1n);
    put(41 * P, (BigInt(root + 2 * P) >> 12n) << 10n | 1n);
    put(42 * P + 8, (BigInt(RAM + 50 * P) >> 12n) << 10n | 0xd7n);
    const hwpt = r.fd.hwptAlloc({ devId: r.devId, table: { format: 'sv39', root: BigInt(root) } });
    r.dev.attach(hwpt);
    const out = new TranslationOut();
    const tr = () => (r.iommu.translateInto(out, r.dev.rid, NO_PASID, 0x1008, Access.Read), out.phys);
    expect(tr()).toBe(RAM + 50 * P + 8);
    put(42 * P + 8, (BigInt(RAM + 51 * P) >> 12n) << 10n | 0xd7n);
    expect(tr()).toBe(RAM + 50 * P + 8); // stale until invalidated (allowed)
    r.fd.hwptInvalidate(hwpt, [{ iova: 0x1000n, length: 4096 }]);
    expect(tr()).toBe(RAM + 51 * P + 8);
  });

  test('a snapshot restores with nothing cached', () => {
    const r = rig();
    r.tr(0);
    const restored = Iommu.restore(r.iommu.snapshot()).iommu;
    const { calls } = spyOnCore(restored);
    const out = new TranslationOut();
    restored.translateInto(out, r.dev.rid, NO_PASID, IOVA, Access.Read);
    expect(out.phys).toBe(RAM);
    expect(calls()).toBe(1);
  });
});

describe('memory growth', () => {
  test('unshared memory: after the owner grows it, results stay right and hits come back', () => {
    const r = rig({ shared: false });
    expect(r.tr(0)).toBe(RAM);
    const before = r.iommu.memory.buffer.byteLength;
    // Map enough scattered pages that the page pool grows the memory (detaching every old view).
    for (let i = 0; r.iommu.memory.buffer.byteLength === before; i++) {
      r.fd.ioasMap(r.ioas, { iova: 2 ** 40 + i * 2 ** 30, length: P, phys: RAM + P });
    }
    expect(r.tr(0)).toBe(RAM);
    const calls = r.calls();
    expect(r.tr(0)).toBe(RAM);
    expect(r.calls()).toBe(calls);
    // DMA inside one page: the first after growth asks the core, the next hits, both land in the
    // grown memory's RAM (a copy into a view of the old buffer would throw or go nowhere).
    expect(r.iommu.dmaWrite(r.dev.rid, NO_PASID, IOVA + P, Uint8Array.of(7, 8))).toEqual({ bytes: 2 });
    expect(r.iommu.dmaWrite(r.dev.rid, NO_PASID, IOVA + P + 2, Uint8Array.of(9))).toEqual({ bytes: 1 });
    expect(r.calls()).toBe(calls + 1);
    expect([...r.iommu.ram.subarray(P, P + 3)]).toEqual([7, 8, 9]);
    r.fd.ioasUnmap(r.ioas, IOVA, P);
    expect(r.tr(0)).toBe(-1);
  });
});
