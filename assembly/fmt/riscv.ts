// RISC-V page-table entries, as walked by a RISC-V IOMMU: the S/VS stage (Sv39, Sv48, Sv57) and the
// G stage (Sv39x4, Sv48x4, Sv57x4). A plug-in of the one walk loop in assembly/ptwalk.ts.
//
// Sources: RISC-V Privileged Architecture, "Sv39/Sv48/Sv57: Page-Based Virtual-Memory Systems" and
// "Virtual Address Translation Process" (entry checks and their order); "Two-Stage Address
// Translation" of the H extension (x4 G-stage formats: 2 extra GPA bits, an 11-bit root index over a
// 16 KiB root, no sign extension, G-stage leaves are U-mode pages); the "Svnapot", "Svpbmt" and
// "Svade"/"Svadu" chapters; RISC-V IOMMU specification, "Process to translate an IOVA" (the same
// rules for device requests, SADE/GADE for hardware A/D). Linux generic_pt `fmt/riscv.h` has the
// same layout. The golden vectors replayed by
// test/nested-riscv-vectors.test.ts are results of the RISC-V IOMMU reference model.
//
// Entry: V 0, R 1, W 2, X 3, U 4, G 5, A 6, D 7, RSW 9:8, PPN 53:10, reserved 58:54, 60:59
// (reserved unless Svrsw60t59b), PBMT 62:61 (Svpbmt), N 63 (Svnapot).
//
// Level table (generic_pt numbering: level 0 maps 4 KiB):
//
//   format  levels  VA bits  root index bits  input check
//   sv39    3       39       9                bits 63:38 all equal (sign extension)
//   sv48    4       48       9                bits 63:47 all equal
//   sv57    5       57       9                bits 63:56 all equal
//   sv39x4  3       41       11 (16 KiB root) bits 63:41 zero
//   sv48x4  4       50       11               bits 63:50 zero
//   sv57x4  5       59       11               bits 63:59 zero

import {
  FAULT_NOT_PRESENT, FAULT_RESERVED, FAULT_MISALIGNED, DOM_SUM, DOM_SVPBMT, DOM_SVNAPOT,
  DOM_SVRSW60T59B, CAP_RU, CAP_WU, CAP_XU, CAP_RS, CAP_WS, CAP_XS,
} from '../abi';
import { KIND_TABLE, KIND_LEAF } from './kinds';

export const RV_V: u64 = 1;
export const RV_R: u64 = 2;
export const RV_W: u64 = 4;
export const RV_X: u64 = 8;
export const RV_U: u64 = 16;
export const RV_A: u64 = 64;
export const RV_D: u64 = 128;
const RV_RESERVED: u64 = <u64>0x1f << 54;
const RV_RSW60T59: u64 = <u64>3 << 59;
const RV_PBMT_SHIFT: u64 = 61;
const RV_N: u64 = <u64>1 << 63;
const PPN_MASK: u64 = (<u64>1 << 44) - 1;

/** Physical page number of an entry (44 bits at 53:10). */
// @ts-ignore: decorator
@inline function ppn(e: u64): u64 {
  return (e >> 10) & PPN_MASK;
}

/**
 * Classifies an entry at `level`: KIND_TABLE, KIND_LEAF or a FAULT_* reason. The checks of
 * "Virtual Address Translation Process" steps 3-4, plus the extension rules: bits 58:54 and (without
 * Svrsw60t59b) 60:59 reserved, PBMT 3 or PBMT without Svpbmt reserved, N above level 0 (or without
 * Svnapot) reserved, and a pointer must have A, D, U and PBMT clear and must not be at level 0.
 */
// @ts-ignore: decorator
@inline export function rvDecode(e: u64, level: u32, flags: u32): u32 {
  if (!(e & RV_V)) return FAULT_NOT_PRESENT;
  if ((e & (RV_R | RV_W)) == RV_W) return FAULT_RESERVED;
  if (e & RV_RESERVED) return FAULT_RESERVED;
  if (!(flags & DOM_SVRSW60T59B) && (e & RV_RSW60T59)) return FAULT_RESERVED;
  const pbmt = <u32>(e >> RV_PBMT_SHIFT) & 3;
  if (pbmt == 3 || (pbmt != 0 && !(flags & DOM_SVPBMT))) return FAULT_RESERVED;
  if ((e & RV_N) && (level != 0 || !(flags & DOM_SVNAPOT))) return FAULT_RESERVED;
  if (e & (RV_R | RV_W | RV_X)) return KIND_LEAF;
  // A pointer: none at level 0, and the leaf-only bits must be clear.
  if (level == 0 || (e & (RV_A | RV_D | RV_U)) || pbmt != 0) return FAULT_RESERVED;
  return KIND_TABLE;
}

/** Physical address of the next table a pointer entry names. */
// @ts-ignore: decorator
@inline export function rvTableAddr(e: u64): u64 {
  return ppn(e) << 12;
}

/**
 * Leaf checks made after the permission check ("Virtual Address Translation Process" step 6):
 * a superpage's PPN bits below its level must be zero (misaligned), and a Svnapot leaf must encode
 * the 64 KiB size (PPN[3:0] = 1000b; the other encodings are reserved).
 */
// @ts-ignore: decorator
@inline export function rvLeafCheck(e: u64, level: u32): u32 {
  const p = ppn(e);
  if (level != 0 && (p & ((<u64>1 << (9 * level)) - 1)) != 0) return FAULT_MISALIGNED;
  if ((e & RV_N) && (p & 15) != 8) return FAULT_RESERVED;
  return 0;
}

/** True for a Svnapot leaf: translated (and reported) as 4 KiB pages of a 64 KiB range. */
// @ts-ignore: decorator
@inline export function rvIsNapot(e: u64): bool {
  return (e & RV_N) != 0;
}

/** Output address of `va` through leaf `e` of `shift` bits (NAPOT: PPN[3:0] come from va[15:12]). */
// @ts-ignore: decorator
@inline export function rvLeafOA(e: u64, shift: u32, va: u64): u64 {
  const base = ppn(e) << 12;
  if (e & RV_N) return (base & ~<u64>0xffff) | (va & 0xffff);
  const mask = (<u64>1 << shift) - 1;
  return (base & ~mask) | (va & mask);
}

/** R/W/X bits of a leaf, as the `perm` of a translation. */
// @ts-ignore: decorator
@inline export function rvPerm(e: u64): u32 {
  return <u32>(e >> 1) & 7;
}

/** PBMT of a leaf (0 PMA, 1 NC, 2 IO). */
// @ts-ignore: decorator
@inline export function rvPbmt(e: u64): u32 {
  return <u32>(e >> RV_PBMT_SHIFT) & 3;
}

/**
 * Access rights of an S/VS-stage leaf. A U page serves unprivileged requests, and privileged data
 * accesses only when SUM is set; a privileged request never executes from a U page. A page without U
 * serves privileged requests only.
 */
// @ts-ignore: decorator
@inline export function rvCapsS(e: u64, flags: u32): u32 {
  const r = (e & RV_R) != 0;
  const w = (e & RV_W) != 0;
  const x = (e & RV_X) != 0;
  if (e & RV_U) {
    let caps: u32 = (r ? CAP_RU : 0) | (w ? CAP_WU : 0) | (x ? CAP_XU : 0);
    if (flags & DOM_SUM) caps |= (r ? CAP_RS : 0) | (w ? CAP_WS : 0);
    return caps;
  }
  return (r ? CAP_RS : 0) | (w ? CAP_WS : 0) | (x ? CAP_XS : 0);
}

/** Access rights of a G-stage leaf: G-stage accesses are U-mode accesses, so U=0 grants nothing. */
// @ts-ignore: decorator
@inline export function rvCapsG(e: u64): u32 {
  if (!(e & RV_U)) return 0;
  return ((e & RV_R) ? CAP_RU | CAP_RS : 0) | ((e & RV_W) ? CAP_WU | CAP_WS : 0) | ((e & RV_X) ? CAP_XU | CAP_XS : 0);
}
