/**
 * From an engine fault to the specification's cause and `iotval2` (sections 3.1.x and 4.2): a
 * table outside guest RAM is an access fault (1/5/7), a G-stage fault a guest-page fault (20/21/23)
 * whose `iotval2` is the faulting GPA (for an implicit access, the GPA of the first-stage table page
 * with bit 0 set, and bit 1 set when it was the A/D write), anything else a page fault (12/13/15).
 * @module
 */
import type { Fault } from '../../api';

/** The access-type-indexed causes: [exec, read, write]. */
const ACCESS_FAULT = [1, 5, 7] as const;
const PAGE_FAULT = [12, 13, 15] as const;
const GUEST_PAGE_FAULT = [20, 21, 23] as const;

const kind = (exec: boolean, write: boolean): 0 | 1 | 2 => (exec ? 0 : write ? 2 : 1);

/** Cause 20/21/23 for a request of this access type. */
export const guestPageCause = (exec: boolean, write: boolean): number => GUEST_PAGE_FAULT[kind(exec, write)];

export function faultCause(f: Fault, exec: boolean, write: boolean): { cause: number; iotval2: bigint } {
  const k = kind(exec, write);
  if (f.reason === 'outside-ram') return { cause: ACCESS_FAULT[k], iotval2: 0n };
  if (f.stage !== 2) return { cause: PAGE_FAULT[k], iotval2: 0n };
  const gpa = f.addr ?? 0n;
  const iotval2 = f.implicit ? (gpa & ~0xfffn) | 1n | (f.implicitWrite ? 2n : 0n) : gpa & ~3n;
  return { cause: GUEST_PAGE_FAULT[k], iotval2 };
}
