/**
 * The engine behind one `Iommu`: the owner thread's core binding, the memory layout, and the
 * system-wide registries that no single FD owns (domain indices, requester IDs, PASIDs).
 * Internal: reached only through `Iommu`, `IommuFd` and `DeviceFd`.
 * @module
 */
import * as abi from '../assembly/abi';
import { Core } from './core';
import { fail } from './errno';
import type { Layout } from './layout';
import { PasidSpace } from './pasid-space';
import type { RamWindow } from './ram-window';
import type { DeviceFd } from './device';
import type { FdState } from './fd-state';

export class Engine {
  readonly pasids: PasidSpace;
  readonly devices = new Map<number, DeviceFd>();
  /** Translator slots in use; slot 0 is the owner's. */
  readonly slotsInUse = new Set<number>([0]);
  /** Worker slot -> its batch ring (address and pages), to recognise the live handle of a slot. */
  readonly translatorRings = new Map<number, { ptr: number; pages: number }>();
  /** Buffers of live `Iommu.batch()` batches: address -> pages (a restored engine frees them, as it has none). */
  readonly batchBuffers = new Map<number, number>();
  /** The ioasid FDs, in the order they were opened (closed ones are pruned when the next one opens). */
  readonly fds = new Set<FdState>();
  private readonly freeDomains: number[] = [];
  private nextDomain = 1;

  constructor(
    readonly core: Core,
    readonly layout: Layout,
    readonly addressWidth: number,
    readonly pasidBits: number,
    readonly shared: boolean,
    /** Guest RAM inside the engine memory (0 bytes when not configured). */
    readonly ram: RamWindow,
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
    const at = (abi.CTRL_BASE + abi.CTRL_FAIL_COUNTDOWN) >>> 2;
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
      fail('ENOMEM', op, 'no memory for the root table');
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
      fail('EINVAL', op, `table description rejected by the core (status ${status})`);
    }
    return index;
  }

  /** Frees a user-managed domain no context and no child points at any more. */
  userDomainDestroy(index: number): void {
    this.core.exports.userDomainFree(index);
    this.freeDomains.push(index);
  }

  /** Throws the errno a core status code stands for. */
  check(op: string, status: number, what: string): void {
    if (status === abi.STATUS_OK) return;
    this.core.sync();
    if (status === abi.STATUS_ENOMEM) fail('ENOMEM', op, `${what}: page pool exhausted (option maxMemoryBytes)`);
    fail('EINVAL', op, `${what}: rejected by the core (status ${status})`);
  }
}
