/**
 * HWPT_PAGING: an engine-managed page table (a domain of the Wasm core) kept in sync with the
 * IOAS it was made from. Auto HWPTs are made by attaching a device to an IOAS and freed with their
 * last attachment; explicit ones (`hwptAlloc`) live until destroyed.
 * @module
 */
import * as abi from '../../assembly/abi';
import { IommuError, caught } from '../base/errno';
import type { Engine, PageHolder } from './fd-state';
import type { Area } from './area';
import type { BatchEntries, DomainSink } from './domain-sink';
import { HI, keyOf, keyOfHalves } from '../base/u64-word';
import type { Ioas } from './ioas';
import { FdObject } from './object-table';
import type { FdState } from './fd-state';
import { checkDomainLimit } from './fd-limits';
import type { FaultQueue } from './fault-queue';

/** A HWPT whose translations depend on this one's tables (a nested child). */
export interface NestedChild {
  readonly domain: number;
}

export interface HwptFlags {
  /** Made by attaching to an IOAS; destroyed with its last attachment. */
  auto: boolean;
  /** May be the parent of nested (user-managed) HWPTs. */
  nestParent: boolean;
  /** May be attached to PASIDs (IOMMU_HWPT_ALLOC_PASID). */
  pasid: boolean;
  /** Allocated with dirty tracking (IOMMU_HWPT_ALLOC_DIRTY_TRACKING): only dirty-capable devices attach. */
  dirtyTracking?: boolean;
}

/** First output address engine page tables cannot hold. */
const OUTPUT_LIMIT = 1n << BigInt(abi.PTE_ADDR_SHIFT + abi.PTE_ADDR_BITS);

/**
 * Below this, `keyOf(phys) + keyOf(length)` proves `phys + length - 1 < OUTPUT_LIMIT`: keys are
 * exact below 2^53 (so is their sum, below 2^52), and one of 2^53 or more alone reaches the bound.
 */
const SURELY_BELOW_OUTPUT_LIMIT = Number(OUTPUT_LIMIT) - 2 ** 14;

/**
 * `outputError` of an area whose `keyOf(phys) + keyOf(length)` is `outputKey`, skipping the BigInt
 * arithmetic when the keys alone prove the outputs in range (each key within 2^11 of its u64, the
 * sum rounding by at most as much: well below the bound, the exact check would pass).
 */
function outputErrorOf(area: Area, outputKey: number): IommuError | undefined {
  return outputKey < SURELY_BELOW_OUTPUT_LIMIT ? undefined : outputError(area);
}

/**
 * Two Int32Arrays reused by every mapAreas/unmapAreas call (indices sent, core statuses): neither
 * calls out of this module while using them, so no call can find them in use.
 */
const scratchArrays = [new Int32Array(64), new Int32Array(64)];

/** Scratch array `which` with room for `n`: contents undefined. */
function scratch(which: 0 | 1, n: number): Int32Array {
  let a = scratchArrays[which]!;
  if (a.length < n) a = scratchArrays[which] = new Int32Array(Math.max(n, 2 * a.length));
  return a;
}

/** PTE permission bits of an area. */
function perm(area: Area): number {
  return (area.read ? abi.PTE_R : 0) | (area.write ? abi.PTE_W : 0);
}

/** Leaf entries hold output bits 51:12: an area reaching higher would be cut to another address (ERANGE). */
function outputError(area: Area): IommuError | undefined {
  const top = area.phys + (area.last - area.iova);
  if (top < OUTPUT_LIMIT) return undefined;
  return new IommuError('ERANGE', 'map', `output addresses up to 0x${top.toString(16)} exceed the ${abi.PTE_ADDR_SHIFT + abi.PTE_ADDR_BITS}-bit output width of engine page tables`);
}

export class HwptPaging extends FdObject implements DomainSink, PageHolder {
  readonly type = 'hwpt-paging' as const;
  /** Nested HWPTs on this nest parent: their IOTLB entries are ended whenever this table changes. */
  readonly children = new Set<NestedChild>();
  /** The fault queue page requests of translations through this HWPT go to (faultId). */
  faultQueue: FaultQueue | undefined;

  private constructor(
    private readonly engine: Engine,
    readonly ioas: Ioas,
    readonly domain: number,
    readonly flags: HwptFlags,
    /** The FD holding this HWPT: its page limit bounds this table's growth (src/fd-limits.ts). */
    private readonly fd: FdState,
  ) {
    super();
  }

  /**
   * @internal Snapshot support (src/snapshot/): a HWPT over an existing, already filled domain of a
   * restored engine. Writes nothing; the caller wires it to its IOAS, fault queue and users.
   */
  static adopt(engine: Engine, ioas: Ioas, domain: number, flags: HwptFlags, fd: FdState): HwptPaging {
    return new HwptPaging(engine, ioas, domain, flags, fd);
  }

  /**
   * Builds a HWPT on `ioas`: a new domain filled with every area of the IOAS. Not yet published.
   * @throws ENOSPC the FD's domain limit; ENOMEM (the FD's page limit included), and the IOAS's
   * EINVAL/EADDRINUSE when its areas cannot live in the domain.
   */
  static create(op: string, fd: FdState, ioas: Ioas, flags: HwptFlags): HwptPaging {
    const engine = fd.engine;
    checkDomainLimit(op, fd.limits, () => fd.domainsHeld());
    const domain = engine.domainCreate(op);
    const hwpt = new HwptPaging(engine, ioas, domain, flags, fd);
    try {
      // The root page counts against the FD's page limit (the new HWPT is not in its table yet).
      if (fd.pagesOverLimit(hwpt)) throw pageLimitError(op);
      ioas.iopt.addDomain(op, hwpt, {
        pageSize: BigInt(abi.PAGE_SIZE),
        aperture: { start: 0n, last: (1n << BigInt(engine.addressWidth)) - 1n },
      });
    } catch (e) {
      engine.domainDestroy(domain);
      throw e;
    }
    ioas.users++;
    ioas.hwpts.add(hwpt);
    return hwpt;
  }

  mapArea(area: Area, length = area.last - area.iova + 1n, outputKey = keyOf(area.phys) + keyOf(length)): void {
    const e = outputErrorOf(area, outputKey);
    if (e !== undefined) throw e;
    this.engine.map('map', this.domain, area.iova, area.phys, length, perm(area));
    // Over the FD's page limit: take this area out again (its pages go back), so the caller's undo
    // finds the table as before. A HWPT still being filled is not in the FD's table: count it too.
    const fd = this.fd;
    if (fd.limits.pages !== Infinity && fd.pagesOverLimit(fd.table.find(this.id) === this ? undefined : this)) {
      this.engine.unmap(this.domain, area.iova, area.last);
      throw pageLimitError('map');
    }
  }

  mapAreas(areas: readonly Area[], entries?: BatchEntries): (IommuError | undefined)[] | undefined {
    const n = areas.length;
    let errors: (IommuError | undefined)[] | undefined; // made at the first error only
    const sent = scratch(0, n); // indices of the areas the core gets
    let m = 0;
    const words = entries?.words;
    for (let k = 0; k < n; k++) {
      const a = areas[k]!;
      // keyOf(phys) + keyOf(length), from the request's halves when there is one (no BigInt read).
      const outputKey = words === undefined ? keyOf(a.phys) + keyOf(a.last) - keyOf(a.iova) : keyOfHalves(words, 6 * k + 4) + keyOfHalves(words, 6 * k + 2);
      const e = outputErrorOf(a, outputKey);
      if (e === undefined) sent[m++] = k;
      else (errors ??= new Array<IommuError | undefined>(n).fill(undefined))[k] = e;
    }
    const status = scratch(1, m);
    // A page limit is checked after each area (mapArea): with one, the areas go one by one.
    const batched = this.fd.limits.pages === Infinity;
    if (batched && words === undefined) this.engine.mapBatch(this.domain, areas, sent, m, status);
    else if (batched) this.engine.mapBatchWords(this.domain, words!, HI, entries!.perms, sent, m, status);
    for (let j = 0; j < m; j++) {
      const st = status[j]!;
      if (batched && st === abi.STATUS_OK) continue;
      const k = sent[j]!;
      const a = areas[k]!;
      // A batched area's error, or the per-area path (a page limit).
      const e = caught(() => (batched ? this.engine.check('map', st, 'map') : this.mapArea(a)));
      if (e !== undefined) (errors ??= new Array<IommuError | undefined>(n).fill(undefined))[k] = e;
    }
    return errors;
  }

  unmapArea(area: Area): void {
    this.engine.unmap(this.domain, area.iova, area.last);
    this.#endChildren();
  }

  unmapAreas(areas: readonly Area[]): void {
    this.engine.unmapBatch(this.domain, areas, scratch(1, areas.length));
    this.#endChildren();
  }

  /**
   * Children cache combined (stage-1 + this stage-2) results under their own domains: the
   * parent's generation bump does not reach them, so end theirs too -- after the unmap, so a
   * child walk that refills reads the new parent tables.
   */
  #endChildren(): void {
    if (this.children.size === 0) return;
    for (const child of this.children) this.engine.invalidateDomain(child.domain);
  }

  /** Table pages this HWPT's domain uses, root included (the radix-minimal tree: no spare tables). */
  get tablePages(): number {
    return this.engine.tablePages(this.domain);
  }

  /** Pages the domain holds: its tables and its spare tables (kept for reuse: assembly/spare.ts). */
  get pagesHeld(): number {
    return this.tablePages + this.engine.sparePages(this.domain);
  }

  /** Gives the domain's spare tables back to the pool. */
  releaseSpares(): void {
    this.engine.releaseSpares(this.domain);
  }

  /** Dirty tracking is on (`IommuFd.hwptSetDirtyTracking`). */
  dirtyEnabled = false;

  override details(): Record<string, unknown> {
    return { ioasId: this.ioas.id, ...this.flags, dirtyEnabled: this.dirtyEnabled };
  }

  release(): void {
    this.faultQueue?.hwptReleased(this);
    this.ioas.iopt.removeDomain(this);
    this.ioas.hwpts.delete(this);
    this.ioas.users--;
    this.engine.domainDestroy(this.domain);
  }
}

function pageLimitError(op: string): IommuError {
  return new IommuError('ENOMEM', op, "this FD's HWPTs would use more table pages than its limit (limits.pages)");
}
