/**
 * The engine behind one `Iommu`: the owner thread's core binding, the memory layout, and the
 * system-wide registries that no single FD owns (domain indices, requester IDs, PASIDs).
 * Internal: reached only through `Iommu`, `IommuFd` and `DeviceFd`.
 *
 * The only control-path caller of the Wasm exports (the DMA path -- src/dma/ -- calls its own):
 * every owner-side change to domains, device/PASID contexts, IOTLBs, dirty bits, page-request
 * enables and buffers is a method here, and `check` is the one map from a core status to an errno.
 * @module
 */
import * as abi from '../../assembly/abi';
import { Core } from '../core/core';
import { fail } from '../base/errno';
import type { Layout } from '../core/layout';
import { PasidSpace } from './pasid-space';
import type { GuestRam } from '../core/ram-window';

/**
 * `Device` and `Fd` are the object types the layer above (src/iommufd/) registers here: the engine
 * keeps them and never calls them, so it names no type above itself (src/iommufd/fd-state.ts binds
 * them: its `Engine` is the one the object model uses).
 */
/** A page request a translator raised: who, where, which access, and the domain it faulted in. */
export interface RaisedPageRequest {
  rid: number;
  pasid: number;
  iova: bigint;
  /** `Access` bits of the request. */
  access: number;
  domain: number;
}

/** The MAPREC perm word of each perm value (R, W, X bits): BigInt(perm) costs ~60 ns a call in V8. */
const PERM_WORDS: readonly bigint[] = Array.from({ length: 8 }, (_, p) => BigInt(p));

/** A range of a map or unmap batch: `[iova, last]` to `phys` (iommufd's areas are these). */
export interface BatchRange {
  readonly iova: bigint;
  readonly last: bigint;
  readonly phys: bigint;
  readonly read: boolean;
  readonly write: boolean;
}

export class Engine<Device = unknown, Fd = unknown> {
  readonly pasids: PasidSpace;
  readonly devices = new Map<number, Device>();
  /** Translator slots in use; slot 0 is the owner's. */
  readonly slotsInUse = new Set<number>([0]);
  /** Worker slot -> its batch ring (address and pages), to recognise the live handle of a slot. */
  readonly translatorRings = new Map<number, { ptr: number; pages: number }>();
  /** Buffers of live `Iommu.batch()` batches: address -> pages (a restored engine frees them, as it has none). */
  readonly batchBuffers = new Map<number, number>();
  /** The ioasid FDs, in the order they were opened (closed ones are pruned when the next one opens). */
  readonly fds = new Set<Fd>();
  private readonly freeDomains: number[] = [];
  private nextDomain = 1;

  constructor(
    readonly core: Core,
    readonly layout: Layout,
    readonly addressWidth: number,
    readonly pasidBits: number,
    readonly shared: boolean,
    /** Guest RAM windows (none when not configured). */
    readonly ram: GuestRam,
    /** True when the memory belongs to an emulator (the engine keeps to its region, never grows it). */
    readonly foreignMemory: boolean,
  ) {
    this.pasids = new PasidSpace(pasidBits);
  }

  /** Table levels of engine-managed domains: 3, 4 or 5 for 39-, 48- or 57-bit IOVAs. */
  get levels(): number {
    return (this.addressWidth - abi.PAGE_SHIFT) / abi.TABLE_INDEX_BITS;
  }

  /** Fault injection shared with the core: true when the armed countdown reaches this step. */
  failPoint(): boolean {
    const u32 = this.core.u32;
    const at = (this.layout.ctrl + abi.CTRL_FAIL_COUNTDOWN) >>> 2;
    const left = u32[at]!;
    if (left === 0) return false;
    u32[at] = left - 1;
    return left === 1;
  }

  /** Creates an empty engine-managed domain. @throws ENOMEM. */
  domainCreate(op: string): number {
    if (this.failPoint()) fail('ENOMEM', op, 'domain slot allocation failed (injected)');
    const index = this.freeDomains.pop() ?? (this.nextDomain < this.layout.domainCount ? this.nextDomain++ : 0);
    if (index === 0) fail('ENOMEM', op, `all ${this.layout.domainCount - 1} domain slots are in use (option maxDomains)`);
    const status = this.core.exports.domainInit(index, this.levels);
    this.core.sync();
    if (status !== abi.STATUS_OK) {
      this.freeDomains.push(index);
      this.check(op, status, 'root table');
    }
    return index;
  }

  /** @internal Snapshot support (src/snapshot/): the domain-index allocator (free indices, popped last first; next unused). */
  domainAllocator(): { free: number[]; next: number } {
    return { free: [...this.freeDomains], next: this.nextDomain };
  }

  /** @internal Snapshot support: sets the allocator of a restored engine. @throws Error an index out of range. */
  restoreDomainAllocator(free: readonly number[], next: number): void {
    if (next < 1 || next > this.layout.domainCount || free.some((i) => i < 1 || i >= next)) throw new Error('domain allocator out of range');
    this.freeDomains.length = 0;
    for (const i of free) this.freeDomains.push(i);
    this.nextDomain = next;
  }

  /** Frees a domain no context points at any more. */
  domainDestroy(index: number): void {
    this.core.exports.domainFree(index);
    this.freeDomains.push(index);
  }

  /**
   * Creates a user-managed domain (a table in guest RAM; see assembly/userdomain.ts for the
   * arguments). @throws ENOMEM no domain slot; EINVAL the core refused the description.
   */
  userDomainCreate(op: string, fmt: number, levels: number, root: bigint, flags: number, parent: number, paBits: number): number {
    if (this.failPoint()) fail('ENOMEM', op, 'domain slot allocation failed (injected)');
    const index = this.freeDomains.pop() ?? (this.nextDomain < this.layout.domainCount ? this.nextDomain++ : 0);
    if (index === 0) fail('ENOMEM', op, `all ${this.layout.domainCount - 1} domain slots are in use (option maxDomains)`);
    const status = this.core.exports.userDomainInit(index, fmt, levels, root, flags, parent, paBits);
    if (status !== abi.STATUS_OK) {
      this.freeDomains.push(index);
      this.check(op, status, 'table description');
    }
    return index;
  }

  /** Frees a user-managed domain no context and no child points at any more. */
  userDomainDestroy(index: number): void {
    this.core.exports.userDomainFree(index);
    this.freeDomains.push(index);
  }

  /**
   * Adds the device context of requester `rid` (DMA blocked) with page requests enabled when
   * `pri`. @throws ENOMEM (injected or no page for the context tables).
   */
  deviceAdd(op: string, rid: number, pasidBits: number, pri: boolean): void {
    if (this.failPoint()) fail('ENOMEM', op, 'device table allocation failed (injected)');
    this.check(op, this.core.exports.deviceAdd(rid, pasidBits), 'device context');
    if (pri) this.core.exports.deviceSetPri(rid, 1);
    this.core.sync();
  }

  /** Points the context of (rid, pasid) at `domain` (0 = blocked). @throws ENOMEM. */
  setContext(op: string, rid: number, pasid: number, domain: number): void {
    if (pasid === abi.NO_PASID) {
      this.check(op, this.core.exports.setRidDomain(rid, domain), 'RID context');
    } else {
      if (domain !== 0 && this.failPoint()) fail('ENOMEM', op, 'PASID table allocation failed (injected)');
      this.check(op, this.core.exports.setPasidDomain(rid, pasid, domain), 'PASID context');
    }
    this.core.sync();
  }

  /** Maps `length` bytes at `iova` to `phys` in an engine-managed domain. @throws ENOMEM, EINVAL. */
  map(op: string, domain: number, iova: bigint, phys: bigint, length: bigint, perm: number): void {
    const status = this.core.exports.map(domain, iova, phys, length, perm);
    this.core.syncAfterControl();
    if (status !== abi.STATUS_OK) this.check(op, status, 'map');
  }

  /**
   * `map` of `ranges[pick[i]]` for i in [0, count), with one Wasm call per page of MAPREC records:
   * each is mapped wholly or not at all, in order, with PTE_R/PTE_W from its `read`/`write`, and
   * `status[i]` gets its core status (STATUS_OK, STATUS_ENOMEM, ...; see {@link check}).
   */
  mapBatch(domain: number, ranges: readonly BatchRange[], pick: Int32Array, count: number, status: Int32Array): void {
    this.#batch(domain, count, status, 'mapBatch', (w, at, i) => {
      const r = ranges[pick[i]!]!;
      w[at + abi.MAPREC_IOVA / 8] = r.iova;
      w[at + abi.MAPREC_PHYS / 8] = r.phys;
      w[at + abi.MAPREC_LENGTH / 8] = r.last - r.iova + 1n;
      // Little-endian: perm, then the status word the core writes.
      w[at + abi.MAPREC_PERM / 8] = PERM_WORDS[(r.read ? abi.PTE_R : 0) | (r.write ? abi.PTE_W : 0)]!;
    });
  }

  /**
   * {@link mapBatch} of ranges given as u32 halves instead of areas, with no BigInt read or write:
   * range `pick[i]` maps the u64 words 3k (iova), 3k+1 (length), 3k+2 (phys) of `words` (k =
   * `pick[i]`, halves at `hi`/`lo` within a word) with perm bits `perms[k]` (bit 0 PTE_R, bit 1
   * PTE_W; both when absent). The caller has checked them (lengths not 0, perms not empty).
   */
  mapBatchWords(domain: number, words: Uint32Array, hi: number, perms: Uint8Array | undefined, pick: Int32Array, count: number, status: Int32Array): void {
    const lo = 1 - hi;
    this.#batch(domain, count, status, 'mapBatch', (_w, at, i, rec) => {
      const k = pick[i]!;
      const w = 6 * k;
      const r = 2 * at; // u32 index of the record; each u64 field: low half first (Wasm memory is little-endian)
      rec[r + abi.MAPREC_IOVA / 4] = words[w + lo]!;
      rec[r + abi.MAPREC_IOVA / 4 + 1] = words[w + hi]!;
      rec[r + abi.MAPREC_LENGTH / 4] = words[w + 2 + lo]!;
      rec[r + abi.MAPREC_LENGTH / 4 + 1] = words[w + 2 + hi]!;
      rec[r + abi.MAPREC_PHYS / 4] = words[w + 4 + lo]!;
      rec[r + abi.MAPREC_PHYS / 4 + 1] = words[w + 4 + hi]!;
      const p = perms === undefined ? 3 : perms[k]!;
      rec[r + abi.MAPREC_PERM / 4] = (p & 1 ? abi.PTE_R : 0) | (p & 2 ? abi.PTE_W : 0);
    });
  }

  /** `unmap` of `[ranges[i].iova, ranges[i].last]` for each range, as {@link mapBatch}; statuses are STATUS_OK for a live domain. */
  unmapBatch(domain: number, ranges: readonly BatchRange[], status: Int32Array): void {
    this.#batch(domain, ranges.length, status, 'unmapBatch', (w, at, i) => {
      const r = ranges[i]!;
      w[at + abi.MAPREC_IOVA / 8] = r.iova;
      w[at + abi.MAPREC_LAST / 8] = r.last;
    });
  }

  /**
   * Writes the records a page at a time (`fill` writes range i at u64 word `at` of the page, through
   * `w` or, as u32 halves, `rec`) into the layout's record page and runs `run` over them. The page
   * is the owner's own, outside the pool, so a batch meets the pool exactly as the same calls made
   * one by one would.
   */
  #batch(domain: number, count: number, status: Int32Array, run: 'mapBatch' | 'unmapBatch', fill: (w: BigUint64Array, at: number, i: number, rec: Uint32Array) => void): void {
    const exports = this.core.exports;
    const page = this.layout.records;
    const perPage = abi.PAGE_SIZE / abi.MAPREC_SIZE;
    for (let from = 0; from < count; from += perPage) {
      const n = Math.min(perPage, count - from);
      // New views each page: a map may grow the memory (a new buffer).
      const w = new BigUint64Array(this.core.u8.buffer, page, abi.PAGE_SIZE / 8);
      const rec = new Uint32Array(this.core.u8.buffer, page, abi.PAGE_SIZE / 4);
      for (let i = 0; i < n; i++) fill(w, (i * abi.MAPREC_SIZE) / 8, from + i, rec);
      exports[run](domain, page, n);
      this.core.syncAfterControl();
      const words = new Int32Array(this.core.u8.buffer, page, (n * abi.MAPREC_SIZE) / 4);
      for (let i = 0; i < n; i++) status[from + i] = words[(i * abi.MAPREC_SIZE + abi.MAPREC_STATUS) / 4]!;
    }
  }

  /** Unmaps `[iova, last]` of an engine-managed domain (its IOTLB entries die with the generation). */
  unmap(domain: number, iova: bigint, last: bigint): void {
    this.core.exports.unmap(domain, iova, last);
  }

  /**
   * Releases the spare tables of `domain`: tables that partial unmaps emptied, which the core keeps
   * linked for later maps until a limit needs their pages (assembly/spare.ts).
   */
  releaseSpares(domain: number): void {
    this.core.exports.domainSweep(domain);
  }

  /** Table pages of engine-managed `domain`, root included: the live tree, without spare tables. */
  tablePages(domain: number): number {
    return this.#domainWord(domain, abi.DOM_PAGES);
  }

  /** Spare table pages of `domain` (see {@link releaseSpares}). */
  sparePages(domain: number): number {
    return this.#domainWord(domain, abi.DOM_SPARE);
  }

  /** The u32 at byte `offset` (DOM_*) of `domain`'s descriptor. */
  #domainWord(domain: number, offset: number): number {
    return this.core.u32[(this.layout.domains + domain * abi.DOM_SIZE + offset) >>> 2]!;
  }

  /** Spare table pages of every domain (user-managed and free ones have none). */
  sparePagesAll(): number {
    return this.core.ctrl(abi.CTRL_SPARE_PAGES);
  }

  /** Ends every cached translation of `domain` (bumps its generation). */
  invalidateDomain(domain: number): void {
    this.core.exports.domainInvalidateAll(domain);
  }

  /** Drops the IOTLB entries of pages `[first, last]` (page numbers) cached for (rid, pasid) under `domain`. */
  invalidatePages(domain: number, rid: number, pasid: number, first: number, last: number): void {
    this.core.exports.iotlbInvalidatePages(domain, rid, pasid, BigInt(first), BigInt(last));
  }

  /** Scans every IOTLB for entries of `domain` in pages `[first, last]` (of `pasid`, or any). */
  invalidateScan(domain: number, pasid: number | undefined, first: number, last: number): void {
    this.core.exports.iotlbInvalidateScan(domain, pasid === undefined ? 1 : 0, pasid ?? 0, BigInt(first), BigInt(last));
  }

  /**
   * As `invalidateScan`, also dropping entries whose cached superpage leaf overlaps `[first, last]`.
   * @returns false when no translator cached a superpage for `domain`: nothing was done, and
   * page-exact invalidation is enough.
   */
  invalidateLeafScan(domain: number, pasid: number | undefined, first: number, last: number): boolean {
    return this.core.exports.iotlbInvalidateLeafScan(domain, pasid === undefined ? 1 : 0, pasid ?? 0, BigInt(first), BigInt(last)) !== 0;
  }

  /** Enables or disables page requests for faults in `domain`. */
  setDomainPri(domain: number, on: boolean): void {
    this.core.exports.domainSetPri(domain, on ? 1 : 0);
  }

  /** Starts (clearing every D bit first) or stops dirty tracking of `domain`. @throws ENOMEM, EINVAL. */
  setDomainDirty(op: string, domain: number, on: boolean): void {
    this.check(op, this.core.exports.domainSetDirty(domain, on ? 1 : 0), 'dirty tracking');
  }

  /**
   * Writes the dirty bitmap of `[iova, last]` (one bit per 2^pageLg2 bytes) at `bitmap`, clearing
   * the D bits read when `clear`. @throws ENOMEM, EINVAL.
   */
  dirtyBitmap(op: string, domain: number, iova: bigint, last: bigint, pageLg2: number, bitmap: number, clear: boolean): void {
    this.check(op, this.core.exports.dirtyBitmap(domain, iova, last, pageLg2, bitmap, clear ? 1 : 0), 'dirty bitmap');
  }

  /** Allocates `pages` pages of the pool for `what` (a batch ring, a bitmap). @throws ENOMEM. */
  bufferAlloc(op: string, pages: number, what: string): number {
    const ptr = this.core.exports.bufferAlloc(pages);
    this.core.sync();
    if (ptr === 0) fail('ENOMEM', op, `no room for ${what} in the engine memory (option maxMemoryBytes)`);
    return ptr;
  }

  /**
   * Returns a buffer of `bufferAlloc` to the pool (its pages are reused by later buffers and tables).
   * @returns false, changing nothing, for a range that is not pool pages below the top or that
   * overlaps space already free (assembly/pool.ts).
   */
  bufferFree(ptr: number, pages: number): boolean {
    return this.core.exports.bufferFree(ptr, pages) === abi.STATUS_OK;
  }

  /**
   * Empties every translator slot's page-request ring (owner thread), oldest first in each slot,
   * handing each record to `each`. Translators only append (they move the tail); the owner alone
   * moves the head.
   */
  drainPageRequests(each: (r: RaisedPageRequest) => void): void {
    const core = this.core;
    core.sync();
    const u32 = core.u32;
    const slotsBase = core.ctrl(abi.CTRL_SLOTS);
    const slotSize = core.ctrl(abi.CTRL_SLOT_SIZE);
    const slotCount = core.ctrl(abi.CTRL_SLOT_COUNT);
    for (let s = 0; s < slotCount; s++) {
      const base = slotsBase + s * slotSize;
      const headAt = (base + abi.SLOT_PRQ_HEAD) >>> 2;
      const tail = Atomics.load(u32, (base + abi.SLOT_PRQ_TAIL) >>> 2);
      let head = u32[headAt]!;
      while (head !== tail) {
        const w = (base + abi.SLOT_PRQ + (head & (abi.PRQ_ENTRIES - 1)) * abi.PRQ_SIZE) >>> 2;
        const ridAccess = u32[w + abi.PRQ_RID_ACCESS / 4]!;
        each({
          rid: ridAccess & 0xffff,
          pasid: u32[w + abi.PRQ_PASID / 4]!,
          iova: (BigInt(u32[w + abi.PRQ_IOVA_HI / 4]!) << 32n) | BigInt(u32[w + abi.PRQ_IOVA_LO / 4]!),
          access: (ridAccess >>> 16) & abi.ACCESS_MASK,
          domain: u32[w + abi.PRQ_DOMAIN / 4]!,
        });
        head = (head + 1) >>> 0;
      }
      Atomics.store(u32, headAt, head);
    }
  }

  /** The one map from a core status to an errno: ENOMEM the page pool is exhausted, EINVAL refused. */
  check(op: string, status: number, what: string): void {
    if (status === abi.STATUS_OK) return;
    this.core.sync();
    if (status === abi.STATUS_ENOMEM) fail('ENOMEM', op, `${what}: page pool exhausted (option maxMemoryBytes)`);
    fail('EINVAL', op, `${what}: rejected by the core (status ${status})`);
  }
}
