/**
 * Process directory tables and process contexts (specification 1.0 sections 2.2 and 2.3.2,
 * "Process to locate the Process-context"): PD8/PD17/PD20 walks whose entry addresses are guest
 * physical (translated by the G stage when the device context has one) and the PC checks of
 * cause 267.
 * @module
 */
import { CAP, CAUSE, bit, bits } from './constants';
import type { GuestMemory } from './guest-memory';

/** A checked process context. */
export interface ProcessContext {
  readonly ta: bigint;
  readonly fsc: bigint;
  readonly ens: boolean;
  readonly sum: boolean;
  readonly pscid: number;
  /** `fsc.MODE` (0 Bare, 8/9/10 Sv39/48/57) and root. */
  readonly mode: number;
  readonly root: bigint;
}

/** A fault of the PDT walk: its cause and, for a G-stage fault on an entry, `iotval2`. */
export interface PdtFault {
  cause: number;
  iotval2: bigint;
}

/**
 * G-stage translation of a PDT entry's guest-physical address (identity without a G stage):
 * the system physical address, or the fault to report.
 */
export type GpaTranslate = (gpa: bigint) => bigint | PdtFault;

const S_MODE_CAP: Record<number, bigint> = { 8: CAP.Sv39, 9: CAP.Sv48, 10: CAP.Sv57 };

/** Bits of process_id a PDT mode indexes (PD8 8, PD17 17, PD20 20). */
export const processIdBits = (pdtMode: number): number => [0, 8, 17, 20][pdtMode] ?? 0;

/**
 * Walks the PDT of mode `pdtMode` (1..3) rooted at guest-physical `root` for `pid` (already known
 * to fit the mode). @returns the process context or the fault.
 */
export function walkPdt(mem: GuestMemory, pdtMode: number, root: bigint, pid: number, caps: bigint, translate: GpaTranslate): ProcessContext | PdtFault {
  const fault = (cause: number): PdtFault => ({ cause, iotval2: 0n });
  let table = root;
  for (let level = pdtMode - 1; level > 0; level--) {
    const index = level === 2 ? (pid >>> 17) & 7 : (pid >>> 8) & 0x1ff;
    const spa = translate(table + BigInt(index * 8));
    if (typeof spa !== 'bigint') return spa;
    const entry = mem.read64(spa);
    if (entry === undefined) return fault(CAUSE.pdtLoadAccess);
    if (!bit(entry, 0)) return fault(CAUSE.pdtInvalid);
    if (bits(entry, 9, 1) !== 0n || bits(entry, 63, 54) !== 0n) return fault(CAUSE.pdtMisconfigured);
    table = bits(entry, 53, 10) << 12n;
  }
  const spa = translate(table + BigInt((pid & 0xff) * 16));
  if (typeof spa !== 'bigint') return spa;
  const ta = mem.read64(spa);
  const fsc = mem.read64(spa + 8n);
  if (ta === undefined || fsc === undefined) return fault(CAUSE.pdtLoadAccess);
  if (!bit(ta, 0)) return fault(CAUSE.pdtInvalid);
  if (bits(ta, 11, 3) !== 0n || bits(ta, 63, 32) !== 0n || bits(fsc, 59, 44) !== 0n) return fault(CAUSE.pdtMisconfigured);
  const mode = Number(bits(fsc, 63, 60));
  if (mode !== 0 && !(mode in S_MODE_CAP && (caps & S_MODE_CAP[mode]!) !== 0n)) return fault(CAUSE.pdtMisconfigured);
  return { ta, fsc, ens: bit(ta, 1), sum: bit(ta, 2), pscid: Number(bits(ta, 31, 12)), mode, root: bits(fsc, 43, 0) << 12n };
}
