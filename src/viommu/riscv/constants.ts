/**
 * Numbers of the RISC-V IOMMU Architecture Specification 1.0 that more than one file of the model
 * uses: register offsets (chapter 5, "Memory-mapped register interface"), capability and control
 * bits, and fault causes (section 4.2, "Fault/Event-Queue", table "Fault record CAUSE").
 * @module
 */

/** Register offsets in the 4 KiB register page. */
export const REG = {
  capabilities: 0,
  fctl: 8,
  ddtp: 16,
  cqb: 24,
  cqh: 32,
  cqt: 36,
  fqb: 40,
  fqh: 48,
  fqt: 52,
  pqb: 56,
  pqh: 64,
  pqt: 68,
  cqcsr: 72,
  fqcsr: 76,
  pqcsr: 80,
  ipsr: 84,
  icvec: 760,
} as const;

/** `capabilities` bits. */
export const CAP = {
  Sv32: 1n << 8n,
  Sv39: 1n << 9n,
  Sv48: 1n << 10n,
  Sv57: 1n << 11n,
  Svpbmt: 1n << 15n,
  Sv32x4: 1n << 16n,
  Sv39x4: 1n << 17n,
  Sv48x4: 1n << 18n,
  Sv57x4: 1n << 19n,
  MSI_FLAT: 1n << 22n,
  AMO_HWAD: 1n << 24n,
  ATS: 1n << 25n,
  T2GPA: 1n << 26n,
  END: 1n << 27n,
  PD8: 1n << 38n,
  PD17: 1n << 39n,
  PD20: 1n << 40n,
} as const;

/** `capabilities.IGS` (bits 29:28). */
export const IGS_SHIFT = 28n;
export const IGS_WSI = 1n;
/** `capabilities.PAS` (bits 37:32). */
export const PAS_SHIFT = 32n;

/** `fctl` bits. */
export const FCTL_BE = 1;
export const FCTL_WSI = 2;
export const FCTL_GXL = 4;

/** `ddtp.iommu_mode`. */
export const DDTP_OFF = 0;
export const DDTP_BARE = 1;
export const DDTP_1LVL = 2;
export const DDTP_3LVL = 4;

/** Queue CSR bits (`cqcsr`, `fqcsr`, `pqcsr` share the layout). */
export const CSR_EN = 1 << 0;
export const CSR_IE = 1 << 1;
/** cqmf / fqmf / pqmf. */
export const CSR_MF = 1 << 8;
/** cmd_to / fqof / pqof. */
export const CSR_TO_OF = 1 << 9;
export const CSR_CMD_ILL = 1 << 10;
export const CSR_FENCE_W_IP = 1 << 11;
export const CSR_ON = 1 << 16;

/** `ipsr` bits. */
export const IPSR_CIP = 1;
export const IPSR_FIP = 2;
export const IPSR_PIP = 8;

/** Transaction types of a fault record (TTYP). */
export const TTYP_UNTRANSLATED_EXEC = 1;
export const TTYP_UNTRANSLATED_READ = 2;
export const TTYP_UNTRANSLATED_WRITE = 3;

/** Fault causes raised outside a page-table walk (walk faults: fault-cause.ts). */
export const CAUSE = {
  allDisallowed: 256,
  ddtLoadAccess: 257,
  ddtInvalid: 258,
  ddtMisconfigured: 259,
  internalError: 272,
  msiWriteAccess: 273,
  ttypDisallowed: 260,
  pdtLoadAccess: 265,
  pdtInvalid: 266,
  pdtMisconfigured: 267,
} as const;

/** Causes recorded even when the device context sets DTF (spec 3.1.3.4, "DTF"). */
export const DTF_EXEMPT = new Set([256, 257, 258, 259, 268, 272, 273]);

/** Extracts bits [hi:lo] of a 64-bit word. */
export function bits(v: bigint, hi: number, lo: number): bigint {
  return (v >> BigInt(lo)) & ((1n << BigInt(hi - lo + 1)) - 1n);
}

/** True when bit `n` of `v` is set. */
export function bit(v: bigint, n: number): boolean {
  return ((v >> BigInt(n)) & 1n) === 1n;
}

export const MASK64 = (1n << 64n) - 1n;
