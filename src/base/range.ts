/**
 * Ranges of the u64 address space. Calls take `(start, length)` as the uAPI does; inside, a range
 * is `[start, last]` so that a range ending at 2^64-1 needs no 65th bit.
 * @module
 */
import { fail } from './errno';

export const U64_MAX = (1n << 64n) - 1n;

/**
 * The one `(start, length)` -> `last` conversion, for every call that takes a range.
 * @param what the name of `start` in error messages (`'iova'`, `'srcIova'`, `'entries[2].iova'`)
 * @throws IommuError `EINVAL` `length == 0`; `EOVERFLOW` `start + length - 1` passes 2^64-1.
 */
export function toLast(op: string, what: string, start: bigint, length: bigint): bigint {
  if (length === 0n) fail('EINVAL', op, `expected a non-zero length for ${what}, got 0`);
  const last = start + length - 1n;
  if (last > U64_MAX) fail('EOVERFLOW', op, `expected ${what} + length - 1 within 2^64-1, got 0x${start.toString(16)} + 0x${length.toString(16)}`);
  return last;
}
