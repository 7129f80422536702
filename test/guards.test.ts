// Memory safety of the core. The layout puts a poisoned guard (slack + one page) after every region
// (src/core/layout.ts); test/fuzz.test.ts scans the guards after every op. Here: the guards are where
// they should be and the scan sees a stray write; and arbitrary DMA-path inputs — random and huge
// rid/pasid/iova/access, per call, batched, from a worker slot, and DMA copies — write nothing
// outside the translator slots (result records, counters, IOTLBs), the batch rings and guest RAM.
import { describe, expect, test } from 'vitest';
import * as abi from '../assembly/abi';
import { Access, Iommu, NO_PASID, TranslationOut, Translator } from '../src/index';
import * as testing from './testing';
import { Rng } from './model/rng';

const K = 4096;

function engine() {
  const iommu = Iommu.createSync({ translators: 3, iotlbEntries: 64, maxMemoryBytes: 32 * 2 ** 20, ram: { base: 0x8000_0000, bytes: 64 * K } });
  const fd = iommu.open();
  const ioas = fd.ioasAlloc();
  const dev = iommu.addDevice({ bdf: '00:05.0' });
  dev.bind(fd);
  const hwpt = fd.hwptAlloc({ devId: dev.devId!, ptId: ioas, pasid: true });
  dev.attach(hwpt);
  const pasid = fd.pasidAlloc();
  dev.attach(hwpt, { pasid });
  fd.ioasMap(ioas, { iova: 0x10_0000, length: 16 * K, phys: 0x8000_0000 }); // guest RAM
  fd.ioasMap(ioas, { iova: 0x4000_0000, length: 2 ** 21, phys: 0x2_0000_0000 }); // a 2 MiB leaf outside RAM
  fd.ioasMap(ioas, { iova: 0x20_0000, length: 4 * K, phys: 0x8000_8000, write: false });
  return { iommu, fd, ioas, dev, pasid };
}

describe('guard regions and memory safety of the DMA path', () => {
  test('every region is followed by a poisoned guard of at least a page', () => {
    const { iommu } = engine();
    const l = testing.engineOf(iommu).layout;
    const regions: [string, number, number][] = [
      ['control block', 1024, 128],
      ['device root', l.devRoot, 1024],
      ['limbo ring', l.limbo, l.limboCap * 8],
      ['domain table', l.domains, l.domainCount * abi.DOM_SIZE],
      ['batch record page', l.records, abi.PAGE_SIZE],
      ...testing.translatorRegions(iommu).map((r, i): [string, number, number] => [`slot ${i}`, r.start, r.bytes]),
      ['guest RAM', l.ram[0]!, 64 * K],
      ['RAM window table', l.ramTable, abi.RAM_WINDOWS_MAX * abi.RAMWIN_SIZE],
    ];
    expect(l.guards[0]).toEqual({ start: 0, bytes: 1024 }); // the null page below the control block
    for (const [name, start, bytes] of regions) {
      const g = l.guards.find((x) => x.start === start + bytes);
      expect(g, `${name} has a guard right after it`).toBeDefined();
      expect(g!.bytes).toBeGreaterThanOrEqual(K);
      expect((g!.start + g!.bytes) % K).toBe(0);
    }
    expect(l.guards.at(-1)!.start + l.guards.at(-1)!.bytes).toBe(l.poolBase);
    // Disjoint and in address order.
    for (let i = 1; i < l.guards.length; i++) expect(l.guards[i]!.start).toBeGreaterThanOrEqual(l.guards[i - 1]!.start + l.guards[i - 1]!.bytes);
    expect(testing.guardViolations(iommu)).toEqual([]);
  });

  test('the scan reports a stray write into any guard (the checker works)', () => {
    const { iommu } = engine();
    const l = testing.engineOf(iommu).layout;
    const u8 = new Uint8Array(iommu.memory.buffer);
    for (const g of [l.guards[0]!, l.guards[3]!, l.guards.at(-1)!]) {
      const at = g.start + g.bytes - 1; // the last byte of the guard
      const old = u8[at]!;
      u8[at] = old ^ 1;
      const v = testing.guardViolations(iommu);
      expect(v).toHaveLength(1);
      expect(v[0]!.guard).toBe(g.start);
      expect(() => testing.checkGuards(iommu)).toThrow(/guard overwritten/);
      u8[at] = old;
    }
    expect(testing.guardViolations(iommu)).toEqual([]);
  });

  test('random and huge DMA-path inputs write only translator slots, batch rings and guest RAM', () => {
    const { iommu, dev, pasid } = engine();
    const rng = new Rng(0xd1a);
    const handle = iommu.translatorHandle({ batchCapacity: 64 });
    const worker = Translator.attach(handle); // a second slot, driven from this thread
    const batch = iommu.batch(64);
    const allowed = [
      ...testing.translatorRegions(iommu),
      { start: batch.requestPtr, bytes: 64 * 32 },
      { start: handle.batch.requestPtr, bytes: 64 * 32 },
      { start: testing.engineOf(iommu).layout.ram[0]!, bytes: 64 * K },
    ];
    const mem = (): Uint8Array => new Uint8Array(iommu.memory.buffer);
    const masked = (): Uint8Array => {
      const copy = mem().slice();
      for (const r of allowed) copy.fill(0, r.start, r.start + r.bytes);
      return copy;
    };
    const before = masked();

    const big = [0n, 1n, 0x10_0000n, 0x10_0fffn, 0x4000_0000n, 0x4020_0000n - 1n, (1n << 48n) - 1n, 1n << 48n, (1n << 57n) + 5n, (1n << 64n) - 1n];
    const pickIova = (): bigint => (rng.chance(0.5) ? rng.pick(big) + BigInt(rng.int(3 * K)) : rng.bits(64)) & ((1n << 64n) - 1n);
    const pickRid = (): number => rng.pick([dev.rid, dev.rid, dev.rid ^ 1, 0, 0xffff, 0x10000, rng.u32()]);
    const pickPasid = (): number => rng.pick([NO_PASID, pasid, pasid + 1, (1 << 20) - 1, 1 << 20, rng.u32()]);
    const pickAccess = (): number => rng.pick([1, 2, 3, 4, 8, 15, 16, 0xff, rng.u32()]);
    const out = new TranslationOut();
    let ok = 0;
    for (let i = 0; i < 20_000; i++) {
      // Half the requests are good ones (they fill and hit the IOTLBs), half anything at all.
      const good = rng.chance(0.5);
      const rid = good ? dev.rid : pickRid();
      const p = good ? rng.pick([NO_PASID, pasid]) : pickPasid();
      const iova = good ? rng.pick([0x10_0000n, 0x4000_0000n]) + BigInt(rng.int(16 * K)) : pickIova();
      const access = good ? rng.pick([1, 2, 3, 5]) : pickAccess();
      const t = rng.chance(0.5) ? iommu.translateInto(out, rid, p, iova, access) : worker.translateInto(out, rid, p, iova, access);
      if (t.ok) ok++;
      if (i % 64 === 0) {
        for (const b of [batch, worker.batch()]) {
          const w = b.requests;
          for (let j = 0; j < 64; j++) {
            // Raw words: any value at all, not only what `set` would write.
            const iv = pickIova();
            w[j * 4] = rng.chance(0.7) ? pickRid() & 0xffff | (pickAccess() << 16) : rng.u32();
            w[j * 4 + 1] = pickPasid() >>> 0;
            w[j * 4 + 2] = Number(iv & 0xffffffffn);
            w[j * 4 + 3] = Number(iv >> 32n);
          }
          b.run(64);
        }
      }
      if (i % 97 === 0) {
        const buf = new Uint8Array(rng.range(1, 3 * K));
        const at = rng.chance(0.7) ? 0x10_0000 + rng.int(20 * K) : pickIova();
        if (rng.chance(0.5)) iommu.dmaWrite(rid, p, at, buf.fill(i & 255));
        else worker.dmaRead(rid, p, at, buf);
      }
    }
    iommu.faults.drain();
    worker.faults.drain();
    expect(ok).toBeGreaterThan(1000); // the IOTLBs were really filled and hit
    const after = masked();
    let firstDiff = -1;
    for (let i = 0; i < before.length && firstDiff < 0; i++) if (before[i] !== after[i]) firstDiff = i;
    expect(firstDiff, `memory outside the allowed regions changed at 0x${firstDiff.toString(16)}`).toBe(-1);
    expect(after.length).toBe(before.length); // no growth from translating
    expect(testing.guardViolations(iommu)).toEqual([]);
    // DMA writes landed only in RAM pages the IOMMU maps writable (pages 0..15 of the window).
    expect(iommu.ram.subarray(0, 16 * K).some((b) => b !== 0)).toBe(true);
    expect(iommu.ram.subarray(16 * K).every((b) => b === 0)).toBe(true);
  });
});

describe('walks that meet a domain being freed', () => {
  test('a context that still names a domain whose root is gone faults; nothing is read at address 0', () => {
    // The state a worker can observe between a detach (context changed) and the free of the domain
    // (root 0) when it read the context just before the change. Built here by hand, deterministically:
    // before the fix the walk started at address 0 and returned the null guard's poison as a mapping.
    const { iommu, dev } = engine();
    const e = testing.engineOf(iommu);
    expect(iommu.translate(dev.rid, NO_PASID, 0x10_0000, Access.Read).ok).toBe(true);
    const hwptDomain = (() => {
      const base = e.layout.domains;
      for (let i = 1; i < e.layout.domainCount; i++) if (e.core.u32[(base + i * abi.DOM_SIZE + abi.DOM_FLAGS) >>> 2]! & abi.DOM_LIVE) return i;
      throw new Error('no live domain');
    })();
    const rootWord = (e.layout.domains + hwptDomain * abi.DOM_SIZE + abi.DOM_ROOT) >>> 2;
    const root = e.core.u32[rootWord]!;
    e.core.u32[rootWord] = 0;
    testing.bumpDomainGeneration(iommu, hwptDomain); // as domainFree does: no cached hit on the old entries
    const t = iommu.translate(dev.rid, NO_PASID, 0x10_0000, Access.Read);
    expect(t.ok).toBe(false);
    expect(t.fault?.reason).toBe('not-attached');
    e.core.u32[rootWord] = root;
    testing.bumpDomainGeneration(iommu, hwptDomain);
    expect(iommu.translate(dev.rid, NO_PASID, 0x10_0000, Access.Read).ok).toBe(true);
    iommu.faults.drain();
    expect(testing.guardViolations(iommu)).toEqual([]);
  });
});
