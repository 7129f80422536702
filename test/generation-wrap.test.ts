// A domain's IOTLB generation is 32 bits: it wraps. An idle worker translator may hold an entry
// filled 2^32 invalidations ago; when the generation comes back to that value, the entry must not
// hit again (assembly/domain.ts domainBumpGen clears the domain's entries in every slot on wrap).
// The test hook jumps the generation close to 2^32, as if that many invalidations had happened.
import { describe, expect, test } from 'vitest';
import { Access, Iommu, NO_PASID, Translator } from '../src/index';
import { fdState } from '../src/iommufd/fd-state';
import { domainGeneration } from './testing';

const P = 0x1000n;
const RAM = 0x8000_0000n;

describe('IOTLB generation wrap', () => {
  for (const kind of ['engine', 'user'] as const) {
    test(`${kind} domain: an idle translator's entry from before the wrap does not come back`, () => {
      const iommu = Iommu.createSync({ ram: { base: RAM, bytes: 1 << 20 }, translators: 2, iotlbEntries: 64, maxDomains: 8, maxMemoryBytes: 16 << 20, shared: true });
      const dev = iommu.addDevice({ bdf: '00:02.0' });
      const fd = iommu.open();
      const devId = dev.bind(fd);
      const ioas = fd.ioasAlloc();
      const X = 0x10_0000n;
      let hwpt: number;
      let remap: (phys: bigint) => void;
      let bump: () => void;
      if (kind === 'engine') {
        hwpt = fd.hwptAlloc({ devId, ptId: ioas });
        remap = (phys) => {
          fd.ioasUnmap(ioas, 0, (1n << 64n) - 1n);
          fd.ioasMap(ioas, { iova: X, length: P, phys });
        };
        bump = () => fd.ioasUnmap(ioas, fd.ioasMap(ioas, { length: P, phys: RAM }), P);
      } else {
        // An sv39 table in guest RAM: root at RAM, one level-1 and one level-0 table after it.
        const ram = new DataView(iommu.ram.buffer, iommu.ram.byteOffset, iommu.ram.byteLength);
        const pte = (ppn: bigint, flags: bigint): bigint => (ppn << 10n) | flags;
        ram.setBigUint64(0, pte((RAM + P) >> 12n, 1n), true);
        ram.setBigUint64(0x1000, pte((RAM + 2n * P) >> 12n, 1n), true);
        const leaf = (phys: bigint): void => ram.setBigUint64(0x2000 + 8 * Number((X >> 12n) & 511n), pte(phys >> 12n, 0xd7n), true);
        leaf(RAM + 0x10n * P);
        hwpt = fd.hwptAlloc({ devId, table: { format: 'sv39', root: RAM } });
        remap = (phys) => {
          leaf(phys);
          fd.hwptInvalidate(hwpt, [{}]);
        };
        bump = () => fd.hwptInvalidate(hwpt, [{}]);
      }
      if (kind === 'engine') fd.ioasMap(ioas, { iova: X, length: P, phys: RAM + 0x10n * P });
      dev.attach(hwpt);
      const domain = (fdState(fd)!.table.find(hwpt) as unknown as { domain: number }).domain;
      const worker = Translator.attach(iommu.translatorHandle({ batchCapacity: 16 }));
      const first = worker.translate(dev.rid, NO_PASID, X, Access.Read);
      expect(first.fault).toBeUndefined();
      expect(first.phys).toBe(RAM + 0x10n * P); // cached at generation g (leaf V R W U A D)
      const g = domainGeneration(iommu, domain);
      remap(RAM + 0x20n * P);
      expect(iommu.translate(dev.rid, NO_PASID, X, Access.Read).phys).toBe(RAM + 0x20n * P);
      // 2^32 - 1 - g' invalidations happen (the hook), then the generation wraps and climbs back to g.
      domainGeneration(iommu, domain, 0xffff_ffff);
      for (let i = 0; i < 64 && domainGeneration(iommu, domain) !== g; i++) bump();
      expect(domainGeneration(iommu, domain)).toBe(g);
      expect(worker.translate(dev.rid, NO_PASID, X, Access.Read).phys).toBe(RAM + 0x20n * P);
    });
  }
});
