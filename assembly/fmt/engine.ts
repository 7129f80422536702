// The engine's own table format: Intel VT-d second-stage paging (VT-d spec §3.7, §9.8), the format
// Linux generic_pt calls `vtdss`. Levels after generic_pt: 0 = SS-PTE (4 KiB), 1 = SS-PDE
// (2 MiB leaf when PS), 2 = SS-PDPTE (1 GiB leaf when PS), 3 = SS-PML4E, 4 = SS-PML5E.
// 3, 4 or 5 levels give 39-, 48- or 57-bit input addresses.
//
// Entry: bit 0 R, bit 1 W, bit 2 X, bit 7 PS, bits 51:12 address, bits 61:52 ignored by hardware.
// As in generic_pt an entry with R = W = 0 is empty (VT-d has no present bit). Table entries carry
// R|W so that the AND of permissions across levels is the leaf's; their ignored bits 61:52 hold the
// number of live entries in the child table (leaves, and table pointers whose own count is not 0),
// so unmap knows when a table becomes empty. A table pointer counting 0 is a spare table, kept
// linked for reuse (assembly/spare.ts): every walk stops there with nothing mapped (pointsAtSpare).

import {
  PAGE_SHIFT, TABLE_INDEX_BITS, PTE_R, PTE_W, PTE_X, PTE_PS, PTE_ADDR_SHIFT, PTE_ADDR_BITS,
  PTE_COUNT_SHIFT, PTE_COUNT_BITS, PTE_SIZE, TABLE_ENTRIES, CAP_RU, CAP_WU, CAP_XU, CAP_RS, CAP_WS, CAP_XS,
} from '../abi';

export const ADDR_MASK: u64 = ((<u64>1 << PTE_ADDR_BITS) - 1) << PTE_ADDR_SHIFT;
export const COUNT_ONE: u64 = <u64>1 << PTE_COUNT_SHIFT;
const COUNT_MASK: u64 = (<u64>1 << PTE_COUNT_BITS) - 1;
const PERM_BITS: u64 = PTE_R | PTE_W | PTE_X;

/** log2 of the bytes one entry at `level` covers. */
// @ts-ignore: decorator
@inline export function levelShift(level: u32): u32 {
  return PAGE_SHIFT + level * TABLE_INDEX_BITS;
}

/** The entry of `table` (at `level`) on the way to `iova`. */
// @ts-ignore: decorator
@inline export function entrySlot(table: usize, iova: u64, level: u32): usize {
  return table + (<usize>(iova >> levelShift(level)) & (TABLE_ENTRIES - 1)) * PTE_SIZE;
}

// @ts-ignore: decorator
@inline export function entryIsEmpty(e: u64): bool {
  return (e & <u64>(PTE_R | PTE_W)) == 0;
}

/**
 * For a table pointer (neither empty nor a leaf): true when its table is spare (0 live entries,
 * assembly/spare.ts). A walk stops there with nothing mapped, as at an empty entry, so a spare
 * table is invisible to translation.
 */
// @ts-ignore: decorator
@inline export function pointsAtSpare(e: u64): bool {
  return childCount(e) == 0;
}

// @ts-ignore: decorator
@inline export function entryIsLeaf(e: u64, level: u32): bool {
  return level == 0 || (e & <u64>PTE_PS) != 0;
}

// @ts-ignore: decorator
@inline export function entryAddr(e: u64): u64 {
  return e & ADDR_MASK;
}

/** R/W/X bits of a leaf, as the `perm` of a translation. */
// @ts-ignore: decorator
@inline export function entryPerm(e: u64): u32 {
  return <u32>(e & PERM_BITS);
}

// @ts-ignore: decorator
@inline export function childCount(e: u64): u32 {
  return <u32>((e >> PTE_COUNT_SHIFT) & COUNT_MASK);
}

// @ts-ignore: decorator
@inline export function makeTable(page: usize): u64 {
  return <u64>page | <u64>(PTE_R | PTE_W);
}

// @ts-ignore: decorator
@inline export function makeLeaf(oa: u64, perm: u32, level: u32): u64 {
  return (oa & ADDR_MASK) | <u64>(perm & <u32>PERM_BITS) | (level > 0 ? <u64>PTE_PS : 0);
}

/**
 * Access rights (INFO_CAP_*) of a leaf's R/W/X: R serves reads and execution (engine-managed tables
 * never carry X, and execution has always needed only R here), W serves writes, for either privilege.
 */
// @ts-ignore: decorator
@inline export function entryCaps(perm: u32): u32 {
  return ((perm & PTE_R) ? CAP_RU | CAP_XU | CAP_RS | CAP_XS : 0) | ((perm & PTE_W) ? CAP_WU | CAP_WS : 0);
}
