/**
 * The DMA path's vocabulary: access bits, the no-PASID marker, fault reasons and the shape of a
 * translation (after QEMU's IOMMUTLBEntry). A fault is a value, never a thrown error.
 * @module
 */
import * as abi from '../assembly/abi';

/** Access bits of a DMA request: QEMU's IOMMU_RO/IOMMU_WO plus the PCIe PASID prefix's Exe/Priv. */
export const Access = {
  Read: abi.ACCESS_READ,
  Write: abi.ACCESS_WRITE,
  Exec: abi.ACCESS_EXEC,
  Priv: abi.ACCESS_PRIV,
} as const;

/** The PASID argument of a request without a PASID prefix (the RID attachment). */
export const NO_PASID = abi.NO_PASID;

/** Why a translation faulted. Indexed by the core's FAULT_* numbers. */
export const FAULT_REASONS = [
  'none',
  'bad-request',
  'no-device',
  'not-attached',
  'pasid-invalid',
  'beyond-width',
  'not-present',
  'permission',
] as const satisfies readonly string[] & { length: typeof abi.FAULT_MAX };

export type FaultReason = (typeof FAULT_REASONS)[number];

/** A fault: the reason, the table level where it was found (0 = 4 KiB level) and the stage. */
export interface Fault {
  readonly reason: FaultReason;
  readonly level: number;
  readonly stage: number;
}

/**
 * The result of `Iommu.translate`. On success `phys` is the output address of the byte at `iova`
 * (offset included) and `size` the leaf size, so `phys - iova % size` starts the page; `perm` is
 * the leaf's R=1/W=2/X=4 bits. On a fault `ok` is false, `perm` 0 and `fault` says why.
 */
export interface Translation {
  readonly ok: boolean;
  readonly iova: bigint;
  readonly phys: bigint;
  readonly size: bigint;
  readonly perm: number;
  readonly fault?: Fault;
}

/**
 * The allocation-free result of `translateInto`: plain numbers only. `phys` is exact below 2^53;
 * `physLo`/`physHi` are the exact 32-bit halves.
 */
export class TranslationOut {
  ok = false;
  physLo = 0;
  physHi = 0;
  phys = 0;
  /** log2 of the leaf size (12, 21 or 30) when ok. */
  sizeLg2 = 0;
  perm = 0;
  /** Index into FAULT_REASONS; 0 when ok. */
  reason = 0;
  level = 0;
  stage = 0;
}

/** Decodes the core's info word and output address into `out`. */
export function decodeInto(out: TranslationOut, info: number, physLo: number, physHi: number): TranslationOut {
  const ok = (info & abi.INFO_OK) !== 0;
  out.ok = ok;
  out.physLo = physLo;
  out.physHi = physHi;
  out.phys = physHi * 4294967296 + physLo;
  out.sizeLg2 = ok ? (info >>> abi.INFO_SIZE_SHIFT) & abi.INFO_SIZE_MASK : 0;
  out.perm = ok ? (info >>> abi.INFO_PERM_SHIFT) & abi.INFO_PERM_MASK : 0;
  out.reason = ok ? 0 : (info >>> abi.INFO_REASON_SHIFT) & abi.INFO_REASON_MASK;
  out.level = ok ? 0 : (info >>> abi.INFO_LEVEL_SHIFT) & abi.INFO_LEVEL_MASK;
  out.stage = ok ? 0 : (info >>> abi.INFO_STAGE_SHIFT) & abi.INFO_STAGE_MASK;
  return out;
}

/** Builds the allocating `Translation` from a decoded result. */
export function toTranslation(iova: bigint, r: TranslationOut): Translation {
  if (!r.ok) {
    return { ok: false, iova, phys: 0n, size: 0n, perm: 0,
      fault: { reason: FAULT_REASONS[r.reason] ?? 'bad-request', level: r.level, stage: r.stage } };
  }
  return { ok: true, iova, phys: (BigInt(r.physHi) << 32n) | BigInt(r.physLo), size: 1n << BigInt(r.sizeLg2), perm: r.perm };
}
