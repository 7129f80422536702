// x86-64 4-level and 5-level paging as used by the VT-d first stage and AMD's v2 (guest) tables.
// A plug-in of the one walk loop in assembly/ptwalk.ts.
//
// Sources: Intel SDM Vol. 3A §4.5 "4-Level Paging and 5-Level Paging" (entry formats, Tables 4-15
// to 4-20), §4.6 "Access Rights", §4.8 "Accessed and Dirty Flags", §3.3.7.1 "Canonical Addressing";
// Intel VT-d specification §3.6 "First-Stage Translation" (access rights of requests with and
// without the privileged bit, A/D updates) and §9.7 "First-Stage Paging Entries"; Linux generic_pt
// `fmt/x86_64.h`.
//
// Entry: P 0, R/W 1, U/S 2, PWT 3, PCD 4, A 5, D 6 (leaf only), PS 7 (PDPTE/PDE; reserved in PML4E
// and PML5E; PAT in a PTE), G 8 (ignored), 11:9 ignored, address 51:12 (bits from the output width
// up are reserved), 62:52 ignored, XD 63.
//
// Level table (generic_pt numbering): 0 PTE 4 KiB | 1 PDE (2 MiB leaf with PS; bits 20:13
// reserved) | 2 PDPTE (1 GiB leaf with PS; bits 29:13 reserved) | 3 PML4E | 4 PML5E (5-level only).
// 4 levels: 48-bit input, bits 63:47 must be equal (canonical); 5 levels: 57-bit, bits 63:56.
//
// Rights (VT-d §3.6.1 with SRE and WPE set): R/W and U/S are ANDed over every level, XD is ORed.
// An unprivileged request needs U/S = 1 at every level ("a user page"). A privileged request may
// read any page, writes need R/W at every level (write protection on), and never executes from a
// user page (execute of user pages by supervisor requests is blocked, as SMEP).

import { FAULT_NOT_PRESENT, FAULT_RESERVED, CAP_RU, CAP_WU, CAP_XU, CAP_RS, CAP_WS, CAP_XS } from '../abi';
import { KIND_TABLE, KIND_LEAF } from './kinds';

export const X86_P: u64 = 1;
export const X86_RW: u64 = 2;
export const X86_US: u64 = 4;
export const X86_A: u64 = 32;
export const X86_D: u64 = 64;
export const X86_PS: u64 = 128;
export const X86_XD: u64 = <u64>1 << 63;
const ADDR_MASK: u64 = ((<u64>1 << 52) - 1) & ~<u64>0xfff;

/** Accumulator of the rights over the levels walked: bit 0 R/W everywhere, bit 1 U/S everywhere, bit 2 XD somewhere. */
export const X86_ACC_INIT: u32 = 3;

/**
 * Classifies an entry at `level` (`paBits`: output address width; address bits from there to 51
 * are reserved, SDM "M" = MAXPHYADDR).
 */
// @ts-ignore: decorator
@inline export function x86Decode(e: u64, level: u32, paBits: u32): u32 {
  if (!(e & X86_P)) return FAULT_NOT_PRESENT;
  if (paBits < 52 && (e & ADDR_MASK & ~((<u64>1 << paBits) - 1)) != 0) return FAULT_RESERVED;
  if (level >= 3) return (e & X86_PS) ? FAULT_RESERVED : KIND_TABLE;
  if (level == 0) return KIND_LEAF;
  if (!(e & X86_PS)) return KIND_TABLE;
  // A 2 MiB or 1 GiB leaf: bit 12 is PAT, the address bits between it and the page size are reserved.
  const low = ((<u64>1 << (12 + 9 * level)) - 1) & ~<u64>0x1fff;
  return (e & low) ? FAULT_RESERVED : KIND_LEAF;
}

// @ts-ignore: decorator
@inline export function x86TableAddr(e: u64): u64 {
  return e & ADDR_MASK;
}

/** Output address of `va` through a leaf of `shift` bits. */
// @ts-ignore: decorator
@inline export function x86LeafOA(e: u64, shift: u32, va: u64): u64 {
  const mask = (<u64>1 << shift) - 1;
  return (e & ADDR_MASK & ~mask) | (va & mask);
}

/** Folds one entry into the rights accumulator. */
// @ts-ignore: decorator
@inline export function x86Accumulate(acc: u32, e: u64): u32 {
  const keep: u32 = ((e & X86_RW) ? 1 : 0) | ((e & X86_US) ? 2 : 0) | 4;
  return (acc & keep) | ((e & X86_XD) ? 4 : 0);
}

/** R/W/X of a translation from the accumulated rights (present means readable). */
// @ts-ignore: decorator
@inline export function x86Perm(acc: u32): u32 {
  return 1 | ((acc & 1) << 1) | ((acc & 4) ? 0 : 4);
}

/** Access rights per privilege from the accumulated rights (see the header). */
// @ts-ignore: decorator
@inline export function x86Caps(acc: u32): u32 {
  const w = (acc & 1) != 0;
  const user = (acc & 2) != 0;
  const exec = (acc & 4) == 0;
  let caps: u32 = CAP_RS | (w ? CAP_WS : 0);
  if (user) caps |= CAP_RU | (w ? CAP_WU : 0) | (exec ? CAP_XU : 0);
  else if (exec) caps |= CAP_XS;
  return caps;
}
