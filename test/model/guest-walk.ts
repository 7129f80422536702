/**
 * An independent reference walker for user-managed page tables in guest RAM, for the guest-table
 * differential fuzzer (test/model/guest-fuzz.ts). Written from the specifications, not from
 * assembly/: Intel SDM Vol. 3A §4.5 (x86-64 4-/5-level entries), §4.6 (rights), §4.8 (A/D),
 * §3.3.7.1 (canonical addresses) with VT-d §3.6 (first stage: privileged requests, SRE/WPE) and
 * §3.8 (nesting); RISC-V Privileged "Sv39/Sv48/Sv57", "Virtual Address Translation Process",
 * "Two-Stage Address Translation" (x4 G stage), Svnapot, Svpbmt, Svade/Svadu. Plain bigint
 * arithmetic over a byte array; no caches. Only the result contract (fault reasons, levels in
 * generic_pt numbering, stage 1/2) is shared with the engine.
 *
 * Hardware A/D updates are applied to the RAM given (the model's mirror); pass a copy to ask
 * "what would this table version answer" without side effects.
 * @module
 */

export type GuestFormat = 'x86-64' | 'sv39' | 'sv48' | 'sv57' | 'sv39x4' | 'sv48x4' | 'sv57x4';

/** A user-managed table as the walker needs it. */
export interface GuestTable {
  format: GuestFormat;
  root: bigint;
  levels: number;
  hwAD: boolean;
  sum: boolean;
  /** The G-stage table translating this table's GPAs (nested), if any. */
  parent?: GuestTable;
}

export const LEVELS: Record<GuestFormat, number> = { 'x86-64': 4, sv39: 3, sv48: 4, sv57: 5, sv39x4: 3, sv48x4: 4, sv57x4: 5 };
export const isG = (f: GuestFormat): boolean => f.endsWith('x4');

/** Guest RAM: one window [base, base + bytes.length). */
export class Ram {
  constructor(readonly base: bigint, readonly bytes: Uint8Array) {}
  has(pa: bigint): boolean {
    return pa >= this.base && pa + 8n <= this.base + BigInt(this.bytes.length);
  }
  private dv(): DataView {
    return new DataView(this.bytes.buffer, this.bytes.byteOffset, this.bytes.byteLength);
  }
  read(pa: bigint): bigint {
    return this.dv().getBigUint64(Number(pa - this.base), true);
  }
  write(pa: bigint, v: bigint): void {
    this.dv().setBigUint64(Number(pa - this.base), v, true);
  }
  copy(): Ram {
    return new Ram(this.base, this.bytes.slice());
  }
}

/** What the walker reads and A/D-updates: guest RAM, or a version of it. */
export interface RamLike {
  has(pa: bigint): boolean;
  read(pa: bigint): bigint;
  write(pa: bigint, v: bigint): void;
}

/**
 * RAM as it was: `under` with the words in `old` (address -> earlier value) laid over it. Writes
 * (A/D updates of a what-if walk) stay in the overlay.
 */
export class RamOverlay implements RamLike {
  constructor(private readonly under: RamLike, private readonly old: Map<bigint, bigint>) {}
  has(pa: bigint): boolean {
    return this.under.has(pa);
  }
  read(pa: bigint): bigint {
    return this.old.get(pa) ?? this.under.read(pa);
  }
  write(pa: bigint, v: bigint): void {
    this.old.set(pa, v);
  }
}

export type WalkResult =
  | { ok: true; phys: bigint; sizeLg2: number; perm: number }
  | { ok: false; reason: string; level: number; stage: number };

// Request access bits and the rights vocabulary: R/W/X in the user half (bits 0-2), the privileged
// half (bits 3-5) when the request has Priv.
const READ = 1;
const WRITE = 2;
const need = (access: number): number => (access & 7) << ((access >> 3) * 3);
const RU = 1, WU = 2, XU = 4, RS = 8, WS = 16, XS = 32;

const bit = (e: bigint, n: number): boolean => ((e >> BigInt(n)) & 1n) === 1n;
const ADDR = ((1n << 52n) - 1n) & ~0xfffn;

interface Stage {
  oa: bigint;
  shift: number;
  perm: number;
  /** Leaf grants W / leaf is dirty after this walk (for stage-1 A/D writes through a G leaf). */
  leafW: boolean;
  leafD: boolean;
  level: number;
}
type Fault = { ok: false; reason: string; level: number; stage: number };
const fault = (reason: string, level: number, stage: number): Fault => ({ ok: false, reason, level, stage });

/** Classifies an entry: 'table', 'leaf' or a fault reason. */
function decode(t: GuestTable, e: bigint, level: number): string {
  if (t.format === 'x86-64') {
    if (!bit(e, 0)) return 'not-present';
    if (level >= 3) return bit(e, 7) ? 'reserved' : 'table';
    if (level === 0) return 'leaf';
    if (!bit(e, 7)) return 'table';
    // 2 MiB / 1 GiB: bit 12 is PAT; the address bits from 13 to the page size are reserved.
    const low = ((1n << BigInt(12 + 9 * level)) - 1n) & ~0x1fffn;
    return (e & low) !== 0n ? 'reserved' : 'leaf';
  }
  if (!bit(e, 0)) return 'not-present';
  if (!bit(e, 1) && bit(e, 2)) return 'reserved'; // W without R
  if (((e >> 54n) & 0x1fn) !== 0n) return 'reserved';
  if (((e >> 59n) & 3n) !== 0n) return 'reserved'; // RSW 60:59 without Svrsw60t59b
  const pbmt = (e >> 61n) & 3n;
  if (pbmt === 3n) return 'reserved';
  if (bit(e, 63) && level !== 0) return 'reserved';
  if ((e & 0xen) !== 0n) return 'leaf';
  if (level === 0 || (e & 0xd0n) !== 0n || pbmt !== 0n) return 'reserved'; // pointer: no A, D, U, PBMT
  return 'table';
}

function walkStage(ram: RamLike, t: GuestTable, va: bigint, access: number, stage: number, implicit: boolean, s1HwAD: boolean): Stage | Fault {
  const fmt = t.format;
  const x86 = fmt === 'x86-64';
  const g = isG(fmt);
  const levels = t.levels;
  const top = levels - 1;
  const bits = 12 + 9 * levels + (g ? 2 : 0);
  if (g) {
    if (va >> BigInt(bits) !== 0n) return fault('beyond-width', top, stage);
  } else {
    const hi = va >> BigInt(bits - 1);
    if (hi !== 0n && hi !== (1n << BigInt(64 - bits + 1)) - 1n) return fault('non-canonical', top, stage);
  }
  const s2 = t.parent;
  let table = t.root;
  let us = true, rw = true, xd = false;
  for (let level = top; ; level--) {
    const shift = 12 + 9 * level;
    const idxBits = level === top ? bits - shift : 9;
    const gpa = table + ((va >> BigInt(shift)) & ((1n << BigInt(idxBits)) - 1n)) * 8n;
    let pa = gpa;
    let s2W = true, s2D = true, s2Level = 0;
    if (s2) {
      const r = walkStage(ram, s2, gpa, READ, 2, true, t.hwAD);
      if (!('oa' in r)) return r;
      pa = r.oa;
      s2W = r.leafW;
      s2D = r.leafD;
      s2Level = r.level;
    }
    if (!ram.has(pa) || pa % 8n !== 0n) return fault('outside-ram', level, stage);
    let e = ram.read(pa);
    const kind = decode(t, e, level);
    if (kind !== 'table' && kind !== 'leaf') return fault(kind, level, stage);
    const implicitWrite = (): Fault => fault(s2W ? 'ad-disabled' : 'permission', s2Level, 2);
    if (x86) {
      rw &&= bit(e, 1);
      us &&= bit(e, 2);
      xd ||= bit(e, 63);
    }
    if (kind === 'table') {
      if (x86 && t.hwAD && !bit(e, 5)) {
        if (s2 && !(s2W && s2D)) return implicitWrite();
        ram.write(pa, e | 0x20n);
      }
      table = x86 ? e & ADDR : ((e >> 10n) & ((1n << 44n) - 1n)) << 12n;
      continue;
    }
    // Rights.
    let caps: number;
    let perm: number;
    if (x86) {
      perm = 1 | (rw ? 2 : 0) | (xd ? 0 : 4);
      caps = RS | (rw ? WS : 0);
      if (us) caps |= RU | (rw ? WU : 0) | (xd ? 0 : XU);
      else if (!xd) caps |= XS;
    } else {
      const r = bit(e, 1), w = bit(e, 2), x = bit(e, 3), u = bit(e, 4);
      perm = (r ? 1 : 0) | (w ? 2 : 0) | (x ? 4 : 0);
      if (g) caps = u ? (r ? RU | RS : 0) | (w ? WU | WS : 0) | (x ? XU | XS : 0) : 0;
      else if (u) caps = (r ? RU : 0) | (w ? WU : 0) | (x ? XU : 0) | (t.sum ? (r ? RS : 0) | (w ? WS : 0) : 0);
      else caps = (r ? RS : 0) | (w ? WS : 0) | (x ? XS : 0);
    }
    const n = need(access);
    if ((caps & n) !== n) return fault('permission', level, stage);
    const ppn = (e >> 10n) & ((1n << 44n) - 1n);
    const napot = !x86 && bit(e, 63);
    if (!x86) {
      if (level !== 0 && (ppn & ((1n << BigInt(9 * level)) - 1n)) !== 0n) return fault('misaligned', level, stage);
      if (napot && (ppn & 15n) !== 8n) return fault('reserved', level, stage);
    }
    // A/D: x86 A 5, D 6; RISC-V A 6, D 7.
    const A = x86 ? 0x20n : 0x40n;
    const D = x86 ? 0x40n : 0x80n;
    const writable = (perm & 2) !== 0;
    let set = 0n;
    if (implicit) {
      if ((e & A) === 0n) {
        if (!t.hwAD) return fault('ad-disabled', level, stage);
        set = A | (writable ? D : 0n);
      } else if (s1HwAD && t.hwAD && writable) {
        set = D;
      }
      set &= ~e;
    } else {
      set = ((e & A) !== 0n ? 0n : A) | ((access & WRITE) !== 0 && (e & D) === 0n ? D : 0n);
      if (set !== 0n && !t.hwAD) return fault('ad-disabled', level, stage);
    }
    if (set !== 0n) {
      if (s2 && !(s2W && s2D)) return implicitWrite();
      e |= set;
      ram.write(pa, e);
    }
    const mask = (1n << BigInt(shift)) - 1n;
    let oa: bigint;
    if (x86) oa = (e & ADDR & ~mask) | (va & mask);
    else if (napot) oa = ((ppn << 12n) & ~0xffffn) | (va & 0xffffn);
    else oa = ((ppn << 12n) & ~mask) | (va & mask);
    return { oa, shift: napot ? 12 : shift, perm, leafW: writable, leafD: (e & D) !== 0n, level };
  }
}

/**
 * Translates `va` for a request with `access` (R 1, W 2, X 4, Priv 8) through `t`: single stage
 * (stage 1, or 2 for a G-stage table), or nested (stage 1 over `t.parent`, then the final GPA
 * through stage 2; the result is stage 2's address, the smaller size, the intersection of R/W/X).
 */
export function guestWalk(ram: RamLike, t: GuestTable, va: bigint, access: number): WalkResult {
  if (!t.parent) {
    const r = walkStage(ram, t, va, access, isG(t.format) ? 2 : 1, false, false);
    return 'oa' in r ? { ok: true, phys: r.oa, sizeLg2: r.shift, perm: r.perm } : r;
  }
  const s1 = walkStage(ram, t, va, access, 1, false, false);
  if (!('oa' in s1)) return s1;
  const s2 = walkStage(ram, t.parent, s1.oa, access, 2, false, false);
  if (!('oa' in s2)) return s2;
  return { ok: true, phys: s2.oa, sizeLg2: Math.min(s1.shift, s2.shift), perm: s1.perm & s2.perm };
}

/**
 * Where the walk of `va` ends: the leaf entry's RAM address and level (for generators that
 * rewrite existing leaves), or undefined. Reads only; no A/D updates.
 */
export function leafEntry(ram: RamLike, t: GuestTable, va: bigint): { pa: bigint; level: number } | undefined {
  const copy = new RamOverlay(ram, new Map());
  const x86 = t.format === 'x86-64';
  const bits = 12 + 9 * t.levels + (isG(t.format) ? 2 : 0);
  let table = t.root;
  for (let level = t.levels - 1; level >= 0; level--) {
    const shift = 12 + 9 * level;
    const idxBits = level === t.levels - 1 ? bits - shift : 9;
    let pa = table + ((va >> BigInt(shift)) & ((1n << BigInt(idxBits)) - 1n)) * 8n;
    if (t.parent) {
      const r = guestWalk(copy, t.parent, pa, READ);
      if (!r.ok) return undefined;
      pa = r.phys;
    }
    if (!copy.has(pa)) return undefined;
    const e = copy.read(pa);
    const kind = decode(t, e, level);
    if (kind === 'leaf') return { pa, level };
    if (kind !== 'table') return undefined;
    table = x86 ? e & ADDR : ((e >> 10n) & ((1n << 44n) - 1n)) << 12n;
  }
  return undefined;
}
