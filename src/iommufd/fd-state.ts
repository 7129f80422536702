/**
 * What an ioasid FD holds, shared between the FD object (`IommuFd`) and the device FDs bound to it
 * (`DeviceFd`) without exposing it on the public classes.
 * @module
 */
import type { DeviceFd } from './device';
import type { Engine } from './engine';
import { fail } from './errno';
import { ObjectTable } from './object-table';

export class FdState {
  readonly table: ObjectTable;
  /** Device FDs bound to this FD. */
  readonly devices = new Set<DeviceFd>();
  closed = false;

  constructor(readonly engine: Engine) {
    this.table = new ObjectTable(() => engine.failPoint());
    // The engine lists its FDs in open order (snapshots); closed ones leave the list here.
    for (const fd of engine.fds) if (fd.closed) engine.fds.delete(fd);
    engine.fds.add(this);
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
