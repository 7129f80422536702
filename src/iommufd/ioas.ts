/**
 * IOAS: an I/O address space programmed by its FD (iommufd's `ioas.c`). The object holds the
 * io-pagetable (areas, reserved and allowed ranges) and the HWPTs kept in sync with it; the
 * command handlers below validate arguments in iommufd's order and call the io-pagetable.
 * @module
 */
import { u64, id, flag, options, U64_MAX } from '../base/args';
import { fail } from '../base/errno';
import { IoasAccess } from './access';
import type { HwptPaging } from './hwpt';
import { toLast } from '../base/range';
import type { Area } from './area';
import { IoPagetable } from './io-pagetable';
import type { IoRange } from './io-range';
import { FdObject, type ObjectTable } from './object-table';

export class Ioas extends FdObject {
  readonly type = 'ioas' as const;
  readonly iopt = new IoPagetable();
  /** HWPT_PAGINGs made from this IOAS; each holds one user reference. */
  readonly hwpts = new Set<HwptPaging>();
  /** Software-DMA access objects on this IOAS; each holds one user reference. */
  readonly accesses = new Set<IoasAccess>();

  override details(): Record<string, unknown> {
    return { areas: this.iopt.areas.length, hwptIds: [...this.hwpts].map((h) => h.id) };
  }

  release(): void {
    // Areas need no teardown: every domain they were installed in is released before the IOAS.
  }
}

/** Arguments of `IommuFd.ioasMap`. */
export interface MapArgs {
  /** Fixed IOVA; omitted = the engine picks one. */
  iova?: bigint | number;
  /** Bytes to map (page aligned). */
  length: bigint | number;
  /** Output address of the first byte. */
  phys: bigint | number;
  /** Devices may read (default true). */
  read?: boolean;
  /** Devices may write (default true). */
  write?: boolean;
}

/** Arguments of `IommuFd.ioasCopy`. */
export interface CopyArgs {
  /** The IOAS that gets the new mapping. */
  dstIoas: number;
  /** The IOAS whose mapping is copied. */
  srcIoas: number;
  /** Start of the copied range in `srcIoas`. */
  srcIova: bigint | number;
  /** Bytes to copy (page aligned, fully mapped in `srcIoas`). */
  length: bigint | number;
  /** Fixed IOVA in `dstIoas`; omitted = the engine picks one. */
  dstIova?: bigint | number;
  /** Devices may read the copy (default true). */
  read?: boolean;
  /** Devices may write the copy (default true; EPERM when the source is read-only). */
  write?: boolean;
}

const MAP_KEYS = ['iova', 'length', 'phys', 'read', 'write'] as const;
const COPY_KEYS = ['dstIoas', 'srcIoas', 'srcIova', 'length', 'dstIova', 'read', 'write'] as const;

/** Permissions: both default to true; neither is EINVAL (iommufd: no READABLE/WRITEABLE flag). */
function perms(op: string, read: unknown, write: unknown): { read: boolean; write: boolean } {
  const r = flag(op, 'read', read, true);
  const w = flag(op, 'write', write, true);
  if (!r && !w) fail('EINVAL', op, 'expected read or write permission, got neither');
  return { read: r, write: w };
}

/** IOMMU_IOAS_ALLOC: an empty IOAS. @returns its ID. @throws ENOMEM. */
export function ioasAlloc(table: ObjectTable): number {
  return table.create('ioasAlloc', () => new Ioas()).id;
}

/** IOMMU_IOAS_MAP. @throws EOPNOTSUPP, EOVERFLOW, EINVAL, ENOENT, EEXIST, ENOSPC, ENOMEM. */
export function ioasMap(table: ObjectTable, ioasId: number, args: MapArgs): bigint {
  const op = 'ioasMap';
  const o = options(op, args, MAP_KEYS);
  const iova = o.iova === undefined ? undefined : u64(op, 'iova', o.iova);
  const length = u64(op, 'length', o.length);
  const phys = u64(op, 'phys', o.phys);
  if ((iova ?? 0n) >= U64_MAX || length >= U64_MAX) fail('EOVERFLOW', op, 'iova and length must be below 2^64-1');
  const { read, write } = perms(op, o.read, o.write);
  const ioas = table.get<Ioas>(op, ioasId, 'ioas');
  return iova === undefined ? ioas.iopt.map(op, { iova, length, phys, read, write }) : ioas.iopt.mapFixed(op, iova, length, phys, read, write);
}

/** IOMMU_IOAS_UNMAP; `(0, 2^64-1)` unmaps everything. @returns bytes unmapped. @throws EOVERFLOW, EINVAL, ENOENT. */
export function ioasUnmap(table: ObjectTable, ioasId: number, iovaIn: unknown, lengthIn: unknown): bigint {
  const op = 'ioasUnmap';
  const iova = u64(op, 'iova', iovaIn);
  const length = u64(op, 'length', lengthIn);
  const all = iova === 0n && length === U64_MAX;
  if (!all && (iova >= U64_MAX || length >= U64_MAX)) fail('EOVERFLOW', op, 'iova and length must be below 2^64-1');
  const ioas = table.get<Ioas>(op, ioasId, 'ioas');
  // Without accesses there are no pins to reclaim: no callback (and no copy of the areas for it).
  const reclaim = ioas.accesses.size === 0 ? undefined : (areas: readonly Area[], round: number) => IoasAccess.reclaimPins(op, ioas.accesses, areas, round);
  return ioas.iopt.unmap(op, iova, length, reclaim);
}

/** IOMMU_IOAS_COPY. @returns the destination IOVA. */
export function ioasCopy(table: ObjectTable, args: CopyArgs): bigint {
  const op = 'ioasCopy';
  const o = options(op, args, COPY_KEYS);
  const length = u64(op, 'length', o.length);
  const srcIova = u64(op, 'srcIova', o.srcIova);
  const dstIova = o.dstIova === undefined ? undefined : u64(op, 'dstIova', o.dstIova);
  if (length >= U64_MAX || srcIova >= U64_MAX || (dstIova ?? 0n) >= U64_MAX) {
    fail('EOVERFLOW', op, 'length, srcIova and dstIova must be below 2^64-1');
  }
  const p = perms(op, o.read, o.write);
  const src = table.get<Ioas>(op, id(op, 'srcIoas', o.srcIoas), 'ioas');
  checkSource(op, src, srcIova, length);
  const dst = table.get<Ioas>(op, id(op, 'dstIoas', o.dstIoas), 'ioas');
  return dst.iopt.copyFrom(op, src.iopt, srcIova, length, { iova: dstIova, ...p });
}

/** Source-side checks of COPY, which iommufd makes before it looks at the destination IOAS. */
function checkSource(op: string, src: Ioas, srcIova: bigint, length: bigint): void {
  const last = toLast(op, 'srcIova', srcIova, length);
  if (!src.iopt.slices(srcIova, last)) fail('ENOENT', op, 'source range is not fully mapped');
}

/** IOMMU_IOAS_IOVA_RANGES. */
export function ioasIovaRanges(table: ObjectTable, ioasId: number): { ranges: IoRange[]; alignment: bigint } {
  return table.get<Ioas>('ioasIovaRanges', ioasId, 'ioas').iopt.iovaRanges();
}

/** IOMMU_IOAS_ALLOW_IOVAS: replaces the allowed list ([] clears it). */
export function ioasAllowIovas(table: ObjectTable, ioasId: number, rangesIn: unknown): void {
  const op = 'ioasAllowIovas';
  if (!Array.isArray(rangesIn)) fail('EINVAL', op, 'ranges: expected an array of { start, last }');
  const ranges = rangesIn.map((r: unknown, i: number) => {
    const o = options(op, r, ['start', 'last'] as const);
    return { start: u64(op, `ranges[${i}].start`, o.start), last: u64(op, `ranges[${i}].last`, o.last) };
  });
  table.get<Ioas>(op, ioasId, 'ioas').iopt.setAllowed(op, ranges);
}
