/**
 * The DMA path's vocabulary: access bits, the no-PASID marker, fault reasons and the shape of a
 * translation (after QEMU's IOMMUTLBEntry). A fault is a value, never a thrown error.
 * @module
 */
import * as abi from '../../assembly/abi';

/**
 * Access bits of a DMA request: QEMU's IOMMU_RO/IOMMU_WO plus the PCIe PASID prefix's Exe/Priv.
 * Combine them with `|`.
 * @example
 * ```ts no-run
 * iommu.translate(rid, NO_PASID, iova, Access.Read | Access.Write);
 * ```
 */
export const Access = {
  /** The device reads memory (a DMA read). */
  Read: abi.ACCESS_READ,
  /** The device writes memory (a DMA write). */
  Write: abi.ACCESS_WRITE,
  /** An instruction fetch (PASID prefix Execute-Requested; user-managed tables check it). */
  Exec: abi.ACCESS_EXEC,
  /** A privileged (supervisor) request (PASID prefix Privileged-Mode-Requested). */
  Priv: abi.ACCESS_PRIV,
} as const;

/** A set of `Access` bits, e.g. `Access.Read | Access.Write` (a number: bits outside the set are a `bad-request`). */
export type Access = number;

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
  /** A reserved bit is set, or the entry is malformed (RISC-V W without R, a pointer at level 0). */
  'reserved',
  /** A superpage leaf whose output address is not aligned to its size (RISC-V). */
  'misaligned',
  /** The input address is not sign-extended from the format's top bit (x86 canonical, RISC-V Sv*). */
  'non-canonical',
  /** The leaf needs an accessed/dirty update and hardware A/D updating is off for that stage. */
  'ad-disabled',
  /** A table entry lies outside guest RAM (`fault.addr` is its physical address). */
  'outside-ram',
] as const satisfies readonly string[] & { length: typeof abi.FAULT_MAX };

/** The name of a fault reason: one of `FAULT_REASONS` (README "Faults" says what each means). */
export type FaultReason = (typeof FAULT_REASONS)[number];

/**
 * A fault: the reason, the table level where it was found (0 = 4 KiB level) and the stage (0 for
 * engine-managed tables, 1 or 2 for user-managed ones: 2 is the nesting parent or a G-stage table).
 * The optional fields appear only when they apply.
 */
export interface Fault {
  /** Why the translation faulted. */
  readonly reason: FaultReason;
  /** The table level where the walk stopped (0 is the 4 KiB level). */
  readonly level: number;
  /** 0 for engine-managed tables; 1 or 2 for user-managed ones (2: the nesting parent or a G stage). */
  readonly stage: number;
  /**
   * Stage 2 faulted on an implicit access of the stage-1 walk (reading a stage-1 table entry);
   * `addr` is then the GPA of that entry.
   */
  readonly implicit?: true;
  /** ...and that implicit access was the write of a stage-1 A/D update. */
  readonly implicitWrite?: true;
  /**
   * For a stage-2 fault: the GPA stage 2 was translating (the final GPA, or a stage-1 table entry's
   * GPA when `implicit`). For 'outside-ram': the physical address of the table entry.
   */
  readonly addr?: bigint;
  /** A page request was queued to the attached HWPT's fault queue: retry after its response. */
  readonly pageRequest?: true;
}

/**
 * The result of `Iommu.translate`. On success `phys` is the output address of the byte at `iova`
 * (offset included) and `size` the leaf size, so `phys - iova % size` starts the page; `perm` is
 * the leaf's R=1/W=2/X=4 bits. On a fault `ok` is false, `perm` 0 and `fault` says why.
 */
export interface Translation {
  /** True when the request translated; false on a fault (then `fault` says why). */
  readonly ok: boolean;
  /** The input address that was translated. */
  readonly iova: bigint;
  /** The output address of the byte at `iova` (0n on a fault). */
  readonly phys: bigint;
  /** The leaf size in bytes (4 KiB, 2 MiB, 1 GiB, ...; 0n on a fault). */
  readonly size: bigint;
  /** The leaf's permission bits: R = 1, W = 2, X = 4 (0 on a fault). */
  readonly perm: number;
  /** Memory type when not the default (RISC-V Svpbmt): 1 = NC, 2 = IO. */
  readonly pbmt?: number;
  /** Why it faulted, when `ok` is false. */
  readonly fault?: Fault;
}

/**
 * The allocation-free result of `translateInto`: plain numbers only. `phys` is exact below 2^53;
 * `physLo`/`physHi` are the exact 32-bit halves.
 *
 * It holds the core's three result words and decodes a field when it is read, so a translation
 * costs three stores whatever the caller reads (the per-call hot path writes nothing else). The
 * words are kept as int32 (V8 stores those in the object; a uint32 above 2^31 would be boxed on
 * every store) and read back unsigned.
 */
export class TranslationOut {
  /** @internal The core's info word (assembly/abi.ts RES_INFO). */
  info = 0;
  /** @internal The result record's address words (int32): the output on success, the fault address on a fault. */
  lo = 0;
  /** @internal */
  hi = 0;

  /** True when the request translated. */
  get ok(): boolean {
    return (this.info & abi.INFO_OK) !== 0;
  }
  /** Low 32 bits of the output address (0 on a fault). */
  get physLo(): number {
    return this.info & abi.INFO_OK ? this.lo >>> 0 : 0;
  }
  /** High 32 bits of the output address (0 on a fault). */
  get physHi(): number {
    return this.info & abi.INFO_OK ? this.hi >>> 0 : 0;
  }
  /** The output address as a number (exact below 2^53; 0 on a fault). */
  get phys(): number {
    return this.info & abi.INFO_OK ? (this.hi >>> 0) * 4294967296 + (this.lo >>> 0) : 0;
  }
  /** log2 of the leaf size (12, 21 or 30) when ok. */
  get sizeLg2(): number {
    return this.info & abi.INFO_OK ? (this.info >>> abi.INFO_SIZE_SHIFT) & abi.INFO_SIZE_MASK : 0;
  }
  /** The leaf's permission bits (R = 1, W = 2, X = 4) when ok. */
  get perm(): number {
    return this.info & abi.INFO_OK ? (this.info >>> abi.INFO_PERM_SHIFT) & abi.INFO_PERM_MASK : 0;
  }
  /** Index into FAULT_REASONS; 0 when ok. */
  get reason(): number {
    return this.info & abi.INFO_OK ? 0 : (this.info >>> abi.INFO_REASON_SHIFT) & abi.INFO_REASON_MASK;
  }
  /** The fault's table level (see `Fault.level`). */
  get level(): number {
    return this.info & abi.INFO_OK ? 0 : (this.info >>> abi.INFO_LEVEL_SHIFT) & abi.INFO_LEVEL_MASK;
  }
  /** The fault's stage (see `Fault.stage`). */
  get stage(): number {
    return this.info & abi.INFO_OK ? 0 : (this.info >>> abi.INFO_STAGE_SHIFT) & abi.INFO_STAGE_MASK;
  }
  /** Memory type (RISC-V PBMT: 0 PMA, 1 NC, 2 IO) when ok. */
  get pbmt(): number {
    return this.info & abi.INFO_OK ? (this.info >>> abi.INFO_PBMT_SHIFT) & abi.INFO_PBMT_MASK : 0;
  }
  /** Fault flags and address: see `Fault`. */
  get implicit(): boolean {
    return !(this.info & abi.INFO_OK) && (this.info & abi.INFO_IMPLICIT) !== 0;
  }
  /** See `Fault.implicitWrite`. */
  get implicitWrite(): boolean {
    return !(this.info & abi.INFO_OK) && (this.info & abi.INFO_IMPLICIT_WRITE) !== 0;
  }
  /** See `Fault.pageRequest`. */
  get pageRequest(): boolean {
    return !(this.info & abi.INFO_OK) && (this.info & abi.INFO_PAGE_REQUEST) !== 0;
  }
  /** Low 32 bits of `Fault.addr`. */
  get faultAddrLo(): number {
    return this.info & abi.INFO_OK ? 0 : this.lo >>> 0;
  }
  /** High 32 bits of `Fault.addr`. */
  get faultAddrHi(): number {
    return this.info & abi.INFO_OK ? 0 : this.hi >>> 0;
  }
}

/** The reason, table level and stage of a fault's info word. */
export function faultCore(info: number): { reason: FaultReason; level: number; stage: number } {
  return {
    reason: FAULT_REASONS[(info >>> abi.INFO_REASON_SHIFT) & abi.INFO_REASON_MASK] ?? 'bad-request',
    level: (info >>> abi.INFO_LEVEL_SHIFT) & abi.INFO_LEVEL_MASK,
    stage: (info >>> abi.INFO_STAGE_SHIFT) & abi.INFO_STAGE_MASK,
  };
}

/** Stores the core's info word and result address words in `out` (decoded when read). */
export function decodeInto(out: TranslationOut, info: number, lo: number, hi: number): TranslationOut {
  out.info = info | 0;
  out.lo = lo | 0;
  out.hi = hi | 0;
  return out;
}

/** Builds the allocating `Translation` from a decoded result. */
export function toTranslation(iova: bigint, r: TranslationOut): Translation {
  if (!r.ok) {
    const fault: { -readonly [K in keyof Fault]: Fault[K] } = faultCore(r.info);
    if (r.implicit) fault.implicit = true;
    if (r.implicitWrite) fault.implicitWrite = true;
    if (r.faultAddrLo !== 0 || r.faultAddrHi !== 0) fault.addr = (BigInt(r.faultAddrHi) << 32n) | BigInt(r.faultAddrLo);
    if (r.pageRequest) fault.pageRequest = true;
    return { ok: false, iova, phys: 0n, size: 0n, perm: 0, fault };
  }
  const t = { ok: true, iova, phys: (BigInt(r.physHi) << 32n) | BigInt(r.physLo), size: 1n << BigInt(r.sizeLg2), perm: r.perm };
  return r.pbmt !== 0 ? { ...t, pbmt: r.pbmt } : t;
}
