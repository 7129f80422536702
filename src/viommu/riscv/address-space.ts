/**
 * The HWPTs that stand for guest page tables, and the tags IOTINVAL names them by. A first-stage
 * table becomes a user-managed HWPT (`sv39/48/57`) over guest-physical addresses, a G-stage table a
 * user-managed nest-parent HWPT (`sv39x4/48x4/57x4`), both together a nested HWPT on that parent:
 * the engine walks the guest's tables in place and caches translations until the model invalidates
 * them, which is what the specification's IOTLB does (section 3.1, tags GV/GSCID/PSCV/PSCID).
 * @module
 */
import type { IommuFd } from '../../api';

/** How this model builds its HWPTs. */
export interface SpaceConfig {
  svpbmt: boolean;
}

/** A HWPT and the IOTLB tags of what it caches. */
export interface AddressSpace {
  readonly hwptId: number;
  /** G stage active (GV) and its GSCID. */
  readonly gv: boolean;
  readonly gscid: number;
  /** First stage active (PSCV) and its PSCID (0 without a first stage). */
  readonly pscv: boolean;
  readonly pscid: number;
  /** The G-stage (nest-parent) HWPT behind it, when `gv`. */
  readonly parentId: number | undefined;
}

const S_FORMAT: Record<number, 'sv39' | 'sv48' | 'sv57'> = { 8: 'sv39', 9: 'sv48', 10: 'sv57' };
const G_FORMAT: Record<number, 'sv39x4' | 'sv48x4' | 'sv57x4'> = { 8: 'sv39x4', 9: 'sv48x4', 10: 'sv57x4' };

/** A G-stage table as a nest-parent HWPT. @returns its ID. */
export function allocGStage(fd: IommuFd, devId: number, mode: number, root: bigint, gade: boolean, cfg: SpaceConfig): number {
  return fd.hwptAlloc({
    devId, nestParent: true, pasid: true,
    table: { format: G_FORMAT[mode]!, root, hwAccessDirty: gade, features: { svpbmt: cfg.svpbmt } },
  });
}

/**
 * A first-stage table, nested on `parentId` when there is a G stage; with `faultId`, recoverable
 * faults of PRI devices become page requests on that ioasid fault queue. @returns its ID.
 */
export function allocFirstStage(fd: IommuFd, devId: number, mode: number, root: bigint, sade: boolean, sum: boolean, parentId: number | undefined, faultId: number | undefined, cfg: SpaceConfig): number {
  return fd.hwptAlloc({
    devId, pasid: true, ...(parentId !== undefined ? { ptId: parentId } : {}), ...(faultId !== undefined ? { faultId } : {}),
    table: { format: S_FORMAT[mode]!, root, hwAccessDirty: sade, sum, features: { svpbmt: cfg.svpbmt } },
  });
}

/** Whether `IOTINVAL.VMA` with these operands names what `s` caches (specification 4.1.1, table). */
export function vmaMatches(s: AddressSpace, gv: boolean, gscid: number, pscv: boolean, pscid: number): boolean {
  if (s.gv !== gv) return false;
  if (gv && s.gscid !== gscid) return false;
  return !pscv || (s.pscv && s.pscid === pscid);
}
