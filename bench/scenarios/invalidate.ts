/**
 * `hwpt-invalidate` (issue 14): `fd.hwptInvalidate(hwpt, [{ iova, length: 4096 }])` per call on a
 * user-managed (sv39) HWPT attached to one device, the translators' IOTLBs holding its 256 pages.
 * Each call names one of them (cycling), which a translation then misses and refills; the
 * measured loop does only the invalidations. Checked first: after an invalidation the guest's
 * changed PTE is seen, before it the cached one is.
 * @module
 */
import { Access, Iommu, NO_PASID } from '../../src/index';
import type { BenchEnv } from './translate';

const RAM = 0x1000_0000n;
const PAGES = 256;
const CALLS = 1024;
const IOVA = 0x10_0000;

export function invalidateScenarios(env: BenchEnv): void {
  const iommu = Iommu.createSync({ ram: { base: RAM, bytes: 4 << 20 } });
  const dev = iommu.addDevice({ bdf: '00:09.0' });
  const fd = iommu.open();
  const devId = dev.bind(fd);
  const mem = new BigInt64Array(iommu.memory.buffer);
  const word = (pa: bigint): number => (iommu.ram.byteOffset + Number(pa - RAM)) / 8;
  const ptr = (t: bigint): bigint => ((t >> 12n) << 10n) | 1n;
  const leaf = (pa: bigint): bigint => ((pa >> 12n) << 10n) | 0xd7n; // V R W U A D
  // sv39: root -> l1 -> l0 at RAM; page i of IOVA 1 MiB -> RAM + 1 MiB + i * 4 KiB.
  const root = RAM, l1 = RAM + 0x1000n, l0 = RAM + 0x2000n;
  mem[word(root)] = ptr(l1);
  mem[word(l1)] = ptr(l0);
  const pte = (i: number): number => word(l0 + BigInt(0x100 + i) * 8n);
  const target = (i: number, k: bigint): bigint => RAM + 0x10_0000n + BigInt(i) * 0x1000n + k * 0x10_0000n;
  for (let i = 0; i < PAGES; i++) mem[pte(i)] = leaf(target(i, 0n));
  const hwpt = fd.hwptAlloc({ devId, table: { format: 'sv39', root } });
  dev.attach(hwpt);
  const physOf = (i: number): bigint => iommu.translate(dev.rid, NO_PASID, IOVA + i * 4096, Access.Read).phys;
  for (let i = 0; i < PAGES; i++) physOf(i); // fills the IOTLB
  // Cross-check: a changed PTE stays cached until its page is invalidated, then is seen.
  mem[pte(7)] = leaf(target(7, 1n));
  if (physOf(7) !== target(7, 0n)) throw new Error('hwpt-invalidate cross-check: the old translation was not cached');
  fd.hwptInvalidate(hwpt, [{ iova: IOVA + 7 * 4096, length: 4096 }]);
  if (physOf(7) !== target(7, 1n)) throw new Error('hwpt-invalidate cross-check: the invalidation did not take');
  const entries = Array.from({ length: PAGES }, (_, i) => [{ iova: IOVA + i * 4096, length: 4096 }]);
  let k = 0;
  env.h.measure([{
    scenario: 'hwpt-invalidate', impl: 'wasm', opsPerIteration: CALLS, note: 'one 4 KiB range per call, sv39 HWPT, 1 device',
    fn: () => {
      for (let i = 0; i < CALLS; i++) k += fd.hwptInvalidate(hwpt, entries[(k + i) & (PAGES - 1)]!);
    },
  }]);
}
