// Guest RAM as seen by the walkers of user-managed tables: up to RAM_WINDOWS_MAX windows, each
// `bytes` at guest-physical `base`, disjoint, sorted by base (src/core/ram-options.ts validates,
// src/core/ram-window.ts writes the table; the control block points at it, CTRL_RAM_WINDOWS and
// CTRL_RAM_COUNT). A window is either in this memory (at a byte offset: inside the engine's
// layout, or anywhere in a memory an emulator owns) or an external buffer that only JS can reach:
// its entries are read and compare-and-swapped through the env.ramLoad/env.ramCas imports
// (Atomics on a BigInt64Array).
//
// Invariant: every read or write of a user-managed table entry goes through `ramLocate`, which
// returns RAM_NONE unless the whole 8-byte entry lies inside one window. Entry addresses are
// multiples of 8 (a table base is 4 KiB aligned and an index is scaled by 8), window bases and
// sizes are multiples of 4 KiB and window offsets multiples of 8, so an in-RAM entry never
// straddles a window's end and the atomic 64-bit accesses on it are aligned. No input — table
// contents, roots, IOVAs — can make the core read or write outside RAM.

import {
  CTRL_RAM_WINDOWS, CTRL_RAM_COUNT, RAMWIN_SIZE, RAMWIN_BASE_LO, RAMWIN_BYTES, RAMWIN_OFFSET,
  RAMWIN_EXTERNAL,
} from './abi';

/** A located entry in an external window: this bit, the window index at bit 32, the offset below. */
const EXTERNAL: u64 = <u64>1 << 62;
/** `ramLocate`'s "not in RAM". */
export const RAM_NONE: u64 = 0xffffffffffffffff;

// @ts-ignore: decorator
@external("env", "ramLoad")
/** Atomic load of the u64 at byte `offset` of external window `window`. */
declare function externalLoad(window: u32, offset: u32): u64;

// @ts-ignore: decorator
@external("env", "ramCas")
/** Atomic compare-and-swap of the u64 at byte `offset` of external window `window`; returns the old value. */
declare function externalCas(window: u32, offset: u32, expected: u64, value: u64): u64;

let windows: usize = 0;
let windowCount: u32 = 0;
// Window 0 (the lowest) cached in globals: the walk's common case is tested inline, without a loop.
let base0: u64 = 0;
let bytes0: u64 = 0;
let at0: i32 = 0;

/** Reads the RAM window table from the control block (called by `init`). */
export function bindRam(ctrlPtr: usize): void {
  windows = <usize>load<u32>(ctrlPtr, CTRL_RAM_WINDOWS);
  windowCount = load<u32>(ctrlPtr, CTRL_RAM_COUNT);
  if (windowCount > 0) {
    base0 = load<u64>(windows, RAMWIN_BASE_LO);
    bytes0 = <u64>load<u32>(windows, RAMWIN_BYTES);
    at0 = load<i32>(windows, RAMWIN_OFFSET);
  }
}

// @ts-ignore: decorator
@inline function located(i: u32, at: i32, off: u64): u64 {
  return at == RAMWIN_EXTERNAL ? EXTERNAL | (<u64>i << 32) | off : <u64><u32>at + off;
}

/**
 * Where the 8-byte entry at guest-physical `pa` is: a memory address (below 2^32), an external
 * window's EXTERNAL | index << 32 | offset, or RAM_NONE when it is not inside RAM (or not 8-byte
 * aligned). One subtraction per window covers both ends: below a base it wraps to a huge value.
 */
// @ts-ignore: decorator
@inline export function ramLocate(pa: u64): u64 {
  const off = pa - base0;
  if (off < bytes0 && (pa & 7) == 0) return located(0, at0, off);
  return ramLocateRest(pa);
}

/** `ramLocate` over windows 1 and up. */
function ramLocateRest(pa: u64): u64 {
  if ((pa & 7) != 0) return RAM_NONE;
  for (let i: u32 = 1; i < windowCount; i++) {
    const w = windows + <usize>i * RAMWIN_SIZE;
    const off = pa - load<u64>(w, RAMWIN_BASE_LO);
    if (off < <u64>load<u32>(w, RAMWIN_BYTES)) return located(i, load<i32>(w, RAMWIN_OFFSET), off);
  }
  return RAM_NONE;
}

/** Atomic load of the entry at `loc` (a `ramLocate` result other than RAM_NONE, or a page-pool address). */
// @ts-ignore: decorator
@inline export function ramLoad(loc: u64): u64 {
  if (loc & EXTERNAL) return externalLoad(<u32>(loc >> 32) & 0xff, <u32>loc);
  return atomic.load<u64>(<usize>loc);
}

/** Atomic compare-and-swap of the entry at `loc`; returns the value it held. */
// @ts-ignore: decorator
@inline export function ramCas(loc: u64, expected: u64, value: u64): u64 {
  if (loc & EXTERNAL) return externalCas(<u32>(loc >> 32) & 0xff, <u32>loc, expected, value);
  return atomic.cmpxchg<u64>(<usize>loc, expected, value);
}
