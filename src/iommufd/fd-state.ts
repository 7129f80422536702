/**
 * What an ioasid FD holds, shared between the FD object (`IommuFd`) and the device FDs bound to it
 * (`DeviceFd`) without exposing it on the public classes.
 * @module
 */
import type { DeviceFd } from './device';
import type { Engine as EngineOf } from '../engine/engine';
import { fail } from '../base/errno';
import { closeFaultFds } from './fault-queue';
import { NO_LIMITS, overPageLimit, type ResolvedLimits } from './fd-limits';
import { ObjectTable, type ObjType } from './object-table';

/** Object types that hold a domain slot; 'hwpt-paging' ones also hold table pages (`tablePages`). */
const HWPT_TYPES: readonly ObjType[] = ['hwpt-paging', 'hwpt-nested', 'hwpt-user'];

/** What an engine-managed HWPT shows the page limit (src/iommufd/hwpt.ts; typed here, which hwpt.ts imports). */
export interface PageHolder {
  /** Its table pages, spare ones included. */
  readonly pagesHeld: number;
  /** Gives its spare tables back to the pool. */
  releaseSpares(): void;
}

/** The engine as the object model sees it: its registries hold device FDs and ioasid FDs. */
export type Engine = EngineOf<DeviceFd, FdState>;

export class FdState {
  readonly table: ObjectTable;
  /** Device FDs bound to this FD. */
  readonly devices = new Set<DeviceFd>();
  closed = false;

  constructor(
    readonly engine: Engine,
    /** Quotas of this FD (src/iommufd/fd-limits.ts); set once, at open or restore. */
    public limits: ResolvedLimits = NO_LIMITS,
  ) {
    this.table = new ObjectTable(() => engine.failPoint());
    // The engine lists its FDs in open order (snapshots); closed ones leave the list here.
    for (const fd of engine.fds) if (fd.closed) engine.fds.delete(fd);
    engine.fds.add(this);
  }

  /**
   * Closes the FD: unbinds its devices (detaching every PASID, then the RID), closes its fault
   * FDs, destroys every object leaf first and frees its PASIDs. Closing twice is a no-op.
   */
  close(): void {
    if (this.closed) return;
    for (const dev of [...this.devices]) dev.unbindFrom(this);
    closeFaultFds(this);
    this.table.destroyAll();
    this.engine.pasids.freeAll(this);
    this.closed = true;
  }

  /** HWPTs (domain slots) this FD holds. */
  domainsHeld(): number {
    let n = 0;
    for (const type of HWPT_TYPES) n += this.table.ofType(type).size;
    return n;
  }

  /** Pages this FD's engine-managed HWPTs hold, roots and spare tables included (`pages` limit). */
  tablePagesHeld(): number {
    let n = 0;
    for (const o of this.table.ofType('hwpt-paging')) n += (o as unknown as PageHolder).pagesHeld;
    return n;
  }

  /**
   * True when this FD's HWPTs, with `extra` (one not in the table yet), hold more pages than its
   * page limit allows even without their spare tables: those are given back first, so keeping them
   * never fails a map that the tables alone would allow. Checked after every map under a limit.
   */
  pagesOverLimit(extra?: PageHolder): boolean {
    const used = (): number => this.tablePagesHeld() + (extra?.pagesHeld ?? 0);
    if (!overPageLimit(this.limits, used)) return false;
    for (const o of this.table.ofType('hwpt-paging')) (o as unknown as PageHolder).releaseSpares();
    extra?.releaseSpares();
    return overPageLimit(this.limits, used);
  }

  /** @throws EBADF once the FD is closed. */
  checkOpen(op: string): void {
    if (this.closed) fail('EBADF', op, 'the ioasid FD is closed');
  }
}

const states = new WeakMap<object, FdState>();

export function registerFd(fd: object, state: FdState): void {
  states.set(fd, state);
}

/** The state of an `IommuFd`, or undefined for anything else. */
export function fdState(fd: unknown): FdState | undefined {
  return typeof fd === 'object' && fd !== null ? states.get(fd) : undefined;
}

const engines = new WeakMap<object, Engine>();

/**
 * Records the engine behind a facade (`Iommu`'s constructor calls this), so that code holding only
 * the facade -- the test hooks in test/testing.ts -- can reach it without the facade exporting a
 * hook. A WeakMap: engines are still collected.
 */
export function registerEngine(iommu: object, engine: Engine): void {
  engines.set(iommu, engine);
}

/** The engine behind an `Iommu`, or undefined for anything else. */
export function engineBehind(iommu: unknown): Engine | undefined {
  return typeof iommu === 'object' && iommu !== null ? engines.get(iommu) : undefined;
}
