/**
 * PASIDs owned by an ioasid FD: allocated by it, attachable only by its devices (the seed's rule;
 * src/engine/pasid-space.ts holds the system-wide space).
 * @module
 */
import { int, options } from '../base/args';
import { fail } from '../base/errno';
import type { FdState } from './fd-state';
import { checkPasidLimit } from './fd-limits';

/** Allocates a PASID owned by the FD. @throws EINVAL out of range; EEXIST taken; ENOSPC none left or the FD's limit reached; ENOMEM. */
export function pasidAlloc(state: FdState, op: string, opts: unknown): number {
  const o = options(op, opts, ['pasid'] as const);
  const want = o.pasid === undefined ? undefined : int(op, 'pasid', o.pasid, 1, state.engine.pasids.limit - 1);
  checkPasidLimit(op, state.limits, state.engine.pasids.countOf(state));
  if (state.engine.failPoint()) fail('ENOMEM', op, 'PASID allocation failed (injected)');
  return state.engine.pasids.alloc(op, state, want);
}

/** Frees a PASID of the FD. @throws ENOENT not this FD's; EBUSY still attached. */
export function pasidFree(state: FdState, op: string, pasid: unknown): void {
  state.engine.pasids.free(op, state, int(op, 'pasid', pasid, 0, 2 ** 32 - 1));
}
