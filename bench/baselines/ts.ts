/**
 * The idiomatic-TypeScript baseline: the IOMMU a user would write without ioasid. Objects and
 * Maps, BigInt addresses, a radix page table whose tables are Maps (index -> child or leaf), an
 * IOTLB that is a Map keyed by a `rid:pasid:vpn` string with FIFO eviction at the same capacity as
 * the engine's, devices in a Map by RID with a Map of PASIDs. Same lookup order as the engine
 * (IOTLB -> device -> PASID -> domain -> walk -> fill), 4 KiB leaves only, and a `translate` that
 * returns a fresh result object per call, like `Iommu.translate`.
 * @module
 */

/** A 4 KiB leaf. */
export interface TsLeaf {
  readonly phys: bigint;
  /** R=1 W=2, as the engine's PTE bits. */
  readonly perm: number;
}

/** One table: index (0..511) -> next table or leaf. */
type TsTable = Map<number, TsTable | TsLeaf>;

export interface TsTranslation {
  readonly ok: boolean;
  readonly iova: bigint;
  readonly phys: bigint;
  readonly size: bigint;
  readonly perm: number;
  readonly fault?: string;
}

const PAGE = 4096n;
const PAGE_MASK = PAGE - 1n;

function fault(iova: bigint, reason: string): TsTranslation {
  return { ok: false, iova, phys: 0n, size: 0n, perm: 0, fault: reason };
}

/** An address space: a Map-based radix tree over `levels` levels of 9 bits. */
export class TsDomain {
  private readonly root: TsTable = new Map();

  constructor(private readonly iommu: TsIommu, readonly levels: number) {}

  /** Maps `length` bytes (4 KiB pages); throws if a page is already mapped. */
  map(iova: bigint, phys: bigint, length: bigint, perm: number): void {
    if ((iova | phys | length) & PAGE_MASK) throw new Error('map: unaligned');
    for (let off = 0n; off < length; off += PAGE) {
      const va = iova + off;
      let table = this.root;
      for (let level = this.levels - 1; level > 0; level--) {
        const index = Number((va >> BigInt(12 + 9 * level)) & 511n);
        let next = table.get(index) as TsTable | undefined;
        if (!next) {
          next = new Map();
          table.set(index, next);
        }
        table = next;
      }
      const index = Number((va >> 12n) & 511n);
      if (table.has(index)) throw new Error(`map: 0x${va.toString(16)} is already mapped`);
      table.set(index, { phys: phys + off, perm });
    }
  }

  /** Unmaps `length` bytes, prunes empty tables, flushes the IOTLB; returns bytes unmapped. */
  unmap(iova: bigint, length: bigint): bigint {
    let removed = 0n;
    for (let off = 0n; off < length; off += PAGE) {
      if (this.unmapPage(this.root, this.levels - 1, iova + off)) removed += PAGE;
    }
    if (removed) this.iommu.flush();
    return removed;
  }

  private unmapPage(table: TsTable, level: number, va: bigint): boolean {
    const index = Number((va >> BigInt(12 + 9 * level)) & 511n);
    if (level === 0) return table.delete(index);
    const child = table.get(index) as TsTable | undefined;
    if (!child || !this.unmapPage(child, level - 1, va)) return false;
    if (child.size === 0) table.delete(index);
    return true;
  }

  /** The leaf mapping `iova`, if any. */
  walk(iova: bigint): TsLeaf | undefined {
    let node: TsTable | TsLeaf | undefined = this.root;
    for (let level = this.levels - 1; level >= 0 && node instanceof Map; level--) {
      node = node.get(Number((iova >> BigInt(12 + 9 * level)) & 511n));
    }
    return node instanceof Map ? undefined : node;
  }
}

export class TsDevice {
  ridDomain: TsDomain | undefined;
  readonly pasids = new Map<number, TsDomain>();
}

interface TlbEntry {
  readonly page: bigint;
  readonly perm: number;
}

export class TsIommu {
  readonly devices = new Map<number, TsDevice>();
  private readonly iotlb = new Map<string, TlbEntry>();

  constructor(readonly levels: number, readonly iotlbEntries: number) {}

  addDevice(rid: number): TsDevice {
    const dev = new TsDevice();
    this.devices.set(rid, dev);
    return dev;
  }

  createDomain(): TsDomain {
    return new TsDomain(this, this.levels);
  }

  flush(): void {
    this.iotlb.clear();
  }

  /** Translates one request; `access` R=1 W=2 X=4 (X needs R, as in the engine). */
  translate(rid: number, pasid: number, iova: bigint, access: number): TsTranslation {
    const need = (access & 5 ? 1 : 0) | (access & 2);
    const key = `${rid}:${pasid}:${iova >> 12n}`;
    const hit = this.iotlb.get(key);
    if (hit && (hit.perm & need) === need) {
      return { ok: true, iova, phys: hit.page + (iova & PAGE_MASK), size: PAGE, perm: hit.perm };
    }
    const dev = this.devices.get(rid);
    if (!dev) return fault(iova, 'no-device');
    const domain = pasid === 0 ? dev.ridDomain : dev.pasids.get(pasid);
    if (!domain) return fault(iova, 'not-attached');
    if (iova >> BigInt(12 + 9 * domain.levels) !== 0n) return fault(iova, 'beyond-width');
    const leaf = domain.walk(iova);
    if (!leaf) return fault(iova, 'not-present');
    if ((leaf.perm & need) !== need) return fault(iova, 'permission');
    if (this.iotlb.size >= this.iotlbEntries) this.iotlb.delete(this.iotlb.keys().next().value!);
    this.iotlb.set(key, { page: leaf.phys, perm: leaf.perm });
    return { ok: true, iova, phys: leaf.phys + (iova & PAGE_MASK), size: PAGE, perm: leaf.perm };
  }
}
