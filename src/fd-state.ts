/**
 * What an ioasid FD holds, shared between the FD object (`IommuFd`) and the device FDs bound to it
 * (`DeviceFd`) without exposing it on the public classes.
 * @module
 */
import type { DeviceFd } from './device';
import type { Engine } from './engine';
import { fail } from './errno';
import { NO_LIMITS, type ResolvedLimits } from './fd-limits';
import { ObjectTable } from './object-table';

/** Object types that hold a domain slot; 'hwpt-paging' ones also hold table pages (`tablePages`). */
const HWPT_TYPES: ReadonlySet<string> = new Set(['hwpt-paging', 'hwpt-nested', 'hwpt-user']);

export class FdState {
  readonly table: ObjectTable;
  /** Device FDs bound to this FD. */
  readonly devices = new Set<DeviceFd>();
  closed = false;

  constructor(
    readonly engine: Engine,
    /** Quotas of this FD (src/fd-limits.ts); set once, at open or restore. */
    public limits: ResolvedLimits = NO_LIMITS,
  ) {
    this.table = new ObjectTable(() => engine.failPoint());
    // The engine lists its FDs in open order (snapshots); closed ones leave the list here.
    for (const fd of engine.fds) if (fd.closed) engine.fds.delete(fd);
    engine.fds.add(this);
  }

  /** HWPTs (domain slots) this FD holds. */
  domainsHeld(): number {
    return this.table.objects().filter((o) => HWPT_TYPES.has(o.type)).length;
  }

  /** Table pages of this FD's engine-managed HWPTs, roots included. */
  tablePagesHeld(): number {
    let n = 0;
    for (const o of this.table.objects()) if (o.type === 'hwpt-paging') n += (o as unknown as { tablePages: number }).tablePages;
    return n;
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
