// The one page-table walk loop for every format (after Linux generic_pt: one algorithm, each format
// a small plug-in in assembly/fmt/ with its bits, level geometry and spec citations). It serves the
// extended miss path (assembly/nested.ts): tables kept by a user in guest RAM, engine-managed tables
// that are a nesting parent or deliver page requests, and both stages of a nested translation.
// (The engine's own hot miss path keeps its short walk in walk.ts.)
//
// Plug-ins: FMT_ENGINE (fmt/engine.ts, VT-d second stage in the page pool), FMT_X86_64
// (fmt/x86_64.ts), FMT_RISCV_S and FMT_RISCV_G (fmt/riscv.ts). Per format the loop asks: the input
// width and whether it is sign-extended; decode (table, leaf or a fault reason); the next table's
// address; leaf checks, rights, output address; the A and D bits. Levels are generic_pt's (0 maps
// 4 KiB); every level resolves 9 bits except the root, which resolves what is left of the width
// (11 bits for the RISC-V x4 formats).
//
// Memory safety: an engine table is a pool page (read under the caller's epoch, and checked by
// reach.ts before it is read: the memory may have grown in another thread); a user
// table entry is located only through ramLocate, which refuses anything outside every guest RAM
// window (FAULT_OUTSIDE_RAM), and read and updated through ramLoad/ramCas (ram.ts: in the memory,
// or in an external buffer through an import). Reads are single aligned atomic u64 loads, so a
// racing writer (a guest vCPU) is seen wholly before or after.
//
// Nesting (Privileged spec "Two-Stage Address Translation", VT-d §3.8): when `s2` is given, every
// table-entry address of this stage is a GPA translated by a stage-2 walk first (an implicit read;
// its faults carry INFO_IMPLICIT and the GPA), and A/D updates of this stage's entries are writes
// through that translation (a G leaf without W, or without D and without A/D updating, faults with
// INFO_IMPLICIT | INFO_IMPLICIT_WRITE). The caller translates the final GPA (nested.ts).
//
// Hardware A/D updates (DOM_HWAD) are compare-and-swap on the 64-bit entry: the entry is checked
// and updated atomically, as the RISC-V and Intel specs require; a lost race re-reads and re-checks
// the same entry, so an update is never applied to an entry that changed since it was checked.
// Without DOM_HWAD, an entry that needs an update faults (FAULT_AD_DISABLED, Svade behaviour).

import {
  ACCESS_READ, ACCESS_WRITE, DOM_FORMAT, DOM_LEVELS, DOM_FLAGS, DOM_ROOT, DOM_UROOT_LO, DOM_UROOT_HI,
  DOM_PABITS, DOM_HWAD, FMT_ENGINE, FMT_X86_64, FMT_RISCV_S, FMT_RISCV_G, FAULT_NOT_PRESENT,
  FAULT_PERMISSION, FAULT_NON_CANONICAL, FAULT_BEYOND_WIDTH, FAULT_AD_DISABLED, FAULT_OUTSIDE_RAM,
  INFO_REASON_SHIFT, INFO_LEVEL_SHIFT, INFO_STAGE_SHIFT, INFO_IMPLICIT, INFO_IMPLICIT_WRITE,
  CAP_WU, CAP_WS, SLOT_WALK_READS, DOM_DIRTY, PTE_D,
} from './abi';
import { KIND_TABLE, KIND_LEAF } from './fmt/kinds';
import { entryIsEmpty, entryIsLeaf, entryAddr, entryPerm, entryCaps, pointsAtSpare } from './fmt/engine';
import {
  x86Decode, x86TableAddr, x86LeafOA, x86Accumulate, x86Perm, x86Caps, X86_ACC_INIT, X86_A, X86_D,
} from './fmt/x86_64';
import {
  rvDecode, rvTableAddr, rvLeafCheck, rvIsNapot, rvLeafOA, rvPerm, rvPbmt, rvCapsS, rvCapsG, RV_A, RV_D,
} from './fmt/riscv';
import { ramLocate, ramLoad, ramCas, RAM_NONE } from './ram';
import { poolPageReachable } from './reach';
import { slot } from './env';

/** Walk mode: this is the stage-2 translation of a stage-1 table-entry address (an implicit read). */
export const MODE_IMPLICIT: u32 = 1;
/** ... and the stage-1 table has hardware A/D updating (its entries may be written through this). */
export const MODE_S1AD: u32 = 2;
/** Lost compare-and-swap races tolerated on one entry before the request gives up (a fault). */
const RETRY_LIMIT: u32 = 64;

// Results of the last walkStage (per instance, i.e. per thread).
/** Output address of the input address (offset included). */
export let wOA: u64 = 0;
/** log2 of the translation size (12 for a Svnapot leaf, whose 4 KiB pages translate one by one). */
export let wShift: u32 = 0;
/** R/W/X of the translation. */
export let wPerm: u32 = 0;
/** Access rights (INFO_CAP_*), write rights only when the leaf is already dirty. */
export let wCaps: u32 = 0;
export let wPbmt: u32 = 0;
/** Level of the leaf, or of the entry that faulted. */
export let wLevel: u32 = 0;
/** The leaf grants W, and its D bit is set (or the format has none): for later writes through it. */
export let wLeafW: bool = false;
export let wLeafD: bool = false;
/** Fault address: the GPA for stage-2 faults, the entry's physical address for FAULT_OUTSIDE_RAM. */
export let wFaultAddr: u64 = 0;
/**
 * A clean leaf of a dirty-tracking engine table that the walk read but did not mark (its address,
 * 0 if none): set by a stage-2 walk for a stage-1 table read, so that an A/D write into that
 * stage-1 table then marks the guest page it lands in (markDirty).
 */
export let wMarkLater: usize = 0;

/**
 * Rights a request needs (INFO_CAP_*): its R/W/X access bits, in the privileged half when Priv is
 * set. `access` must be below 16 (the request was validated).
 */
// @ts-ignore: decorator
@inline export function neededCaps(access: u32): u32 {
  return (access & 7) << ((access >> 3) * 3);
}

// ---- The level table and per-format dispatch --------------------------------------------------------

/** Input address width: 12 + 9 bits per level, plus 2 for the x4 G-stage root. */
// @ts-ignore: decorator
@inline function vaBits(fmt: u32, levels: u32): u32 {
  return 12 + 9 * levels + (fmt == FMT_RISCV_G ? 2 : 0);
}

// @ts-ignore: decorator
@inline function signExtended(fmt: u32): bool {
  return fmt == FMT_X86_64 || fmt == FMT_RISCV_S;
}

// @ts-ignore: decorator
@inline function decode(fmt: u32, e: u64, level: u32, flags: u32, paBits: u32): u32 {
  if (fmt == FMT_ENGINE) return entryIsEmpty(e) ? FAULT_NOT_PRESENT : entryIsLeaf(e, level) ? KIND_LEAF : pointsAtSpare(e) ? FAULT_NOT_PRESENT : KIND_TABLE;
  if (fmt == FMT_X86_64) return x86Decode(e, level, paBits);
  return rvDecode(e, level, flags);
}

// @ts-ignore: decorator
@inline function tableAddr(fmt: u32, e: u64): u64 {
  if (fmt == FMT_ENGINE) return entryAddr(e);
  if (fmt == FMT_X86_64) return x86TableAddr(e);
  return rvTableAddr(e);
}

// @ts-ignore: decorator
@inline function leafOA(fmt: u32, e: u64, shift: u32, va: u64): u64 {
  if (fmt == FMT_ENGINE) return entryAddr(e) | (va & ((<u64>1 << shift) - 1));
  if (fmt == FMT_X86_64) return x86LeafOA(e, shift, va);
  return rvLeafOA(e, shift, va);
}

// @ts-ignore: decorator
@inline function leafPerm(fmt: u32, e: u64, acc: u32): u32 {
  if (fmt == FMT_ENGINE) return entryPerm(e);
  if (fmt == FMT_X86_64) return x86Perm(acc);
  return rvPerm(e);
}

// @ts-ignore: decorator
@inline function leafCaps(fmt: u32, e: u64, acc: u32, flags: u32): u32 {
  if (fmt == FMT_ENGINE) return entryCaps(entryPerm(e));
  if (fmt == FMT_X86_64) return x86Caps(acc);
  if (fmt == FMT_RISCV_S) return rvCapsS(e, flags);
  return rvCapsG(e);
}

// @ts-ignore: decorator
@inline function bitA(fmt: u32): u64 {
  return fmt == FMT_X86_64 ? X86_A : fmt == FMT_ENGINE ? 0 : RV_A;
}

// @ts-ignore: decorator
@inline function bitD(fmt: u32): u64 {
  return fmt == FMT_X86_64 ? X86_D : fmt == FMT_ENGINE ? 0 : RV_D;
}

// ---- Faults --------------------------------------------------------------------------------------

/** A fault info word; records the level and the fault address (see wFaultAddr). */
function failAt(reason: u32, level: u32, stage: u32, addr: u64): u32 {
  wLevel = level;
  wFaultAddr = stage == 2 || reason == FAULT_OUTSIDE_RAM ? addr : 0;
  return (reason << INFO_REASON_SHIFT) | (level << INFO_LEVEL_SHIFT) | (stage << INFO_STAGE_SHIFT);
}

/** A/D update of a stage-1 entry at `pteGpa` refused by its stage-2 leaf (no W, or clean without A/D updating). */
function implicitWriteFault(s2W: bool, s2Level: u32, pteGpa: u64): u32 {
  return failAt(s2W ? FAULT_AD_DISABLED : FAULT_PERMISSION, s2Level, 2, pteGpa) | INFO_IMPLICIT | INFO_IMPLICIT_WRITE;
}

/**
 * Sets the D bit of the engine leaf at `p` (dirty tracking, VT-d second-stage bit 9). Translators
 * only ever set D and the owner clears it or replaces the entry, so a lost race means either D is
 * set already or the entry changed (an unmap racing this walk, whose result is allowed anyway).
 */
function markDirty(p: usize): void {
  for (let i: u32 = 0; i < RETRY_LIMIT; i++) {
    const e = atomic.load<u64>(p);
    if (entryIsEmpty(e) || (e & <u64>PTE_D) != 0 || atomic.cmpxchg<u64>(p, e, e | <u64>PTE_D) == e) return;
  }
}

// @ts-ignore: decorator
@inline function countRead(): void {
  store<u64>(slot + SLOT_WALK_READS, load<u64>(slot + SLOT_WALK_READS) + 1);
}

// ---- The walk ------------------------------------------------------------------------------------

/**
 * Translates `va` through the table of domain descriptor `d` for a request with `access` bits.
 * `stage` (0 engine, 1, 2) goes into fault infos; `s2`, when nonzero, is the stage-2 domain that
 * translates this table's entry addresses; `mode` is MODE_* for a stage-2 walk on behalf of a
 * stage-1 table read. Returns 0 with the w* results set, or a fault info (wLevel, wFaultAddr set).
 */
export function walkStage(d: usize, va: u64, access: u32, stage: u32, s2: usize, mode: u32): u32 {
  const fmt = load<u32>(d, DOM_FORMAT);
  const levels = load<u32>(d, DOM_LEVELS);
  const flags = load<u32>(d, DOM_FLAGS);
  const paBits = load<u32>(d, DOM_PABITS);
  const top = levels - 1;
  const bits = vaBits(fmt, levels);
  if (signExtended(fmt)) {
    const hi = <i64>va >> (bits - 1);
    if (hi != 0 && hi != -1) return failAt(FAULT_NON_CANONICAL, top, stage, va);
  } else if ((va >> bits) != 0) {
    return failAt(FAULT_BEYOND_WIDTH, top, stage, va);
  }
  const user = fmt != FMT_ENGINE;
  const riscv = fmt == FMT_RISCV_S || fmt == FMT_RISCV_G;
  let table: u64 = user ? (<u64>load<u32>(d, DOM_UROOT_HI) << 32) | <u64>load<u32>(d, DOM_UROOT_LO) : <u64>load<u32>(d, DOM_ROOT);
  let level = top;
  let acc = X86_ACC_INIT;
  let p: u64 = 0; // where the current entry is (ram.ts: ramLocate, or a pool address)
  let located = false;
  let pteGpa: u64 = 0;
  let s2W = true;
  let s2D = true;
  let s2Level: u32 = 0;
  let s2Mark: usize = 0; // the stage-2 leaf an A/D write into the current entry must mark dirty
  let retries: u32 = 0;
  while (true) {
    const shift = 12 + 9 * level;
    if (!located) {
      const indexBits: u32 = level == top ? bits - shift : 9;
      const at = table + (((va >> shift) & ((<u64>1 << indexBits) - 1)) << 3);
      if (!user) {
        // An engine table: a pool page, unless the pointer is garbage or the memory grew (reach.ts).
        if (!poolPageReachable(table)) return failAt(FAULT_NOT_PRESENT, level, stage, va);
        p = at;
      } else {
        let pa = at;
        if (s2 != 0) {
          pteGpa = at;
          const f = walkStage(s2, at, ACCESS_READ, 2, 0, MODE_IMPLICIT | ((flags & DOM_HWAD) ? MODE_S1AD : 0));
          if (f != 0) return f | INFO_IMPLICIT;
          pa = wOA;
          s2W = wLeafW;
          s2D = wLeafD;
          s2Level = wLevel;
          s2Mark = wMarkLater;
        }
        p = ramLocate(pa);
        if (p == RAM_NONE) return failAt(FAULT_OUTSIDE_RAM, level, stage, pa);
      }
      located = true;
    }
    countRead();
    let e = ramLoad(p);
    const kind = decode(fmt, e, level, flags, paBits);
    if (kind > KIND_LEAF) return failAt(kind, level, stage, va);
    const acc2 = fmt == FMT_X86_64 ? x86Accumulate(acc, e) : acc;

    if (kind == KIND_TABLE) {
      // SDM §4.8: the accessed flag of every paging-structure entry used is set.
      if (fmt == FMT_X86_64 && (flags & DOM_HWAD) != 0 && (e & X86_A) == 0) {
        if (s2 != 0 && !(s2W && s2D)) return implicitWriteFault(s2W, s2Level, pteGpa);
        if (ramCas(p, e, e | X86_A) != e) {
          if (++retries > RETRY_LIMIT) return failAt(FAULT_NOT_PRESENT, level, stage, va);
          continue; // the entry changed under us: check it again
        }
        if (s2Mark != 0) markDirty(s2Mark);
      }
      acc = acc2;
      table = tableAddr(fmt, e);
      level--;
      located = false;
      continue;
    }

    // A leaf: rights, then the format's late leaf checks, then A/D (spec order).
    let caps = leafCaps(fmt, e, acc2, flags);
    const need = neededCaps(access);
    if ((caps & need) != need) return failAt(FAULT_PERMISSION, level, stage, va);
    if (riscv) {
      const bad = rvLeafCheck(e, level);
      if (bad != 0) return failAt(bad, level, stage, va);
    }
    const perm = leafPerm(fmt, e, acc2);
    const a = bitA(fmt);
    const dirty = bitD(fmt);
    if (a != 0) {
      const writable = (perm & 2) != 0;
      let set: u64 = 0;
      if (mode & MODE_IMPLICIT) {
        // A G leaf reached by a stage-1 table read: it is accessed, and (when the stage-1 table has
        // hardware A/D, so the read may be followed by an A/D write) dirtied ahead of that write.
        if (!(e & a)) {
          if (!(flags & DOM_HWAD)) return failAt(FAULT_AD_DISABLED, level, stage, va);
          set = a | (writable ? dirty : 0);
        } else if ((mode & MODE_S1AD) != 0 && (flags & DOM_HWAD) != 0 && writable) {
          set = dirty;
        }
        set &= ~e;
      } else {
        set = ((e & a) != 0 ? 0 : a) | ((access & ACCESS_WRITE) != 0 && (e & dirty) == 0 ? dirty : 0);
        if (set != 0 && (flags & DOM_HWAD) == 0) return failAt(FAULT_AD_DISABLED, level, stage, va);
      }
      if (set != 0) {
        if (s2 != 0 && !(s2W && s2D)) return implicitWriteFault(s2W, s2Level, pteGpa);
        if (ramCas(p, e, e | set) != e) {
          if (++retries > RETRY_LIMIT) return failAt(FAULT_NOT_PRESENT, level, stage, va);
          continue;
        }
        e |= set;
        if (s2Mark != 0) markDirty(s2Mark);
      }
      // Only a dirty leaf may serve later writes from the IOTLB: a clean one must be walked again.
      if (!(e & dirty)) caps &= ~(CAP_WU | CAP_WS);
    }
    // Dirty tracking of an engine table (a nest parent or a HWPT with page requests): a write
    // through the leaf sets D, as translate.ts does on the engine's own path; a clean leaf gives no
    // write rights to the result, so a nested result is never cached writable over a clean parent
    // leaf and the first write after a read-and-clear walks again and marks it. A stage-1 table
    // read (MODE_IMPLICIT) is not a write: the leaf is left for markDirty if an A/D write follows.
    let markLater: usize = 0;
    if (!user && (flags & DOM_DIRTY) != 0 && (e & <u64>PTE_D) == 0) {
      if ((access & ACCESS_WRITE) != 0 && (mode & MODE_IMPLICIT) == 0) {
        if (atomic.cmpxchg<u64>(<usize>p, e, e | <u64>PTE_D) != e) {
          if (++retries > RETRY_LIMIT) return failAt(FAULT_NOT_PRESENT, level, stage, va);
          continue;
        }
      } else {
        caps &= ~(CAP_WU | CAP_WS);
        markLater = <usize>p; // an engine table: p is a pool address
      }
    }
    wMarkLater = markLater;
    const napot = riscv && rvIsNapot(e);
    wOA = leafOA(fmt, e, shift, va);
    wShift = napot ? 12 : shift;
    wPerm = perm;
    wCaps = caps;
    wPbmt = riscv ? rvPbmt(e) : 0;
    wLevel = level;
    wLeafW = (perm & 2) != 0;
    wLeafD = dirty == 0 || (e & dirty) != 0;
    return 0;
  }
}
