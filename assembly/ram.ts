// Guest RAM as seen by the walkers of user-managed tables: `ramBytes` bytes at guest-physical
// `ramBase`, stored at byte offset `ramMem` of the engine memory (src/core/layout.ts places it; the
// control block carries the three values, CTRL_RAM*).
//
// Invariant: every read or write of a user-managed table entry goes through `ramPtr`, which
// returns 0 unless the whole 8-byte entry lies inside RAM. Entry addresses are multiples of 8 (a
// table base is 4 KiB aligned and an index is scaled by 8), RAM base and size are multiples of
// 4 KiB, so an in-RAM entry never straddles the end and the atomic 64-bit accesses on it are
// aligned. No input — table contents, roots, IOVAs — can make the core read or write outside RAM.

import { CTRL_RAM, CTRL_RAM_BYTES, CTRL_RAM_BASE_LO, CTRL_RAM_BASE_HI } from './abi';

let ramMem: usize = 0;
let ramBytes: u64 = 0;
let ramBase: u64 = 0;

/** Reads the RAM window from the control block (called by `init`). */
export function bindRam(ctrlPtr: usize): void {
  ramMem = <usize>load<u32>(ctrlPtr, CTRL_RAM);
  ramBytes = <u64>load<u32>(ctrlPtr, CTRL_RAM_BYTES);
  ramBase = (<u64>load<u32>(ctrlPtr, CTRL_RAM_BASE_HI) << 32) | <u64>load<u32>(ctrlPtr, CTRL_RAM_BASE_LO);
}

/**
 * The memory address of the 8-byte entry at guest-physical `pa`, or 0 when it is not inside RAM
 * (or not 8-byte aligned). One subtraction covers both ends: below the base it wraps to a huge value.
 */
// @ts-ignore: decorator
@inline export function ramPtr(pa: u64): usize {
  const off = pa - ramBase;
  return off < ramBytes && (pa & 7) == 0 ? ramMem + <usize>off : 0;
}
