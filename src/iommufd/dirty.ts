/**
 * Dirty tracking of engine-managed HWPTs (Linux include/uapi/linux/iommufd.h: IOMMU_HWPT_SET_DIRTY_TRACKING,
 * IOMMU_HWPT_GET_DIRTY_BITMAP): the engine sets the VT-d D bit of a
 * leaf on the first write through it (a clean leaf is cached without write rights, so that write
 * misses); reading the bitmap reads, and unless `noClear` clears, those bits and drops cached write
 * rights. Race-free with worker translators: only they set D, only the owner clears it. Writes
 * through nested HWPTs on a dirty-tracking nest parent mark the parent's leaves too (the final
 * output, and stage-1 table pages the walk writes A/D bits into), and a HWPT with a fault queue
 * tracks like any other.
 * @module
 */
import * as abi from '../../assembly/abi';
import { u64, flag } from '../base/args';
import { toLast } from '../base/range';
import type { Engine } from './fd-state';
import { fail } from '../base/errno';
import type { FdState } from './fd-state';
import type { HwptPaging } from './hwpt';
import { id, options } from '../base/args';

/** The dirty-tracking HWPT `hwptId`. @throws ENOENT not a HWPT_PAGING; EOPNOTSUPP no dirty tracking. */
export function dirtyHwpt(state: FdState, op: string, hwptId: unknown): HwptPaging {
  const hwpt = state.table.get<HwptPaging>(op, id(op, 'hwptId', hwptId), 'hwpt-paging');
  if (!hwpt.flags.dirtyTracking) fail('EOPNOTSUPP', op, `HWPT ${hwpt.id} was not allocated with { dirtyTracking: true }`);
  return hwpt;
}

/**
 * Nested HWPTs cache results combined with this table under their own domains, write rights
 * included when the parent leaf was dirty: after its D bits are cleared (a read-and-clear, or
 * tracking turned on), those entries must go too, so the next write through a child walks again
 * and marks the parent leaf (assembly/ptwalk.ts).
 */
export function endChildWriteRights(engine: Engine, hwpt: HwptPaging): void {
  for (const child of hwpt.children) engine.invalidateDomain(child.domain);
}

/** GET_DIRTY_BITMAP's checks (kernel order) and the read, into a fresh bitmap. */
export function readDirtyBitmap(
  engine: Engine,
  op: string,
  hwpt: HwptPaging,
  o: Partial<Record<'iova' | 'length' | 'pageSize' | 'noClear', unknown>>,
): BigUint64Array {
  const iova = u64(op, 'iova', o.iova);
  const length = u64(op, 'length', o.length);
  const pageSize = u64(op, 'pageSize', o.pageSize);
  const noClear = flag(op, 'noClear', o.noClear, false);
  const last = toLast(op, 'iova', iova, length);
  if (pageSize === 0n || (pageSize & (pageSize - 1n)) !== 0n) fail('EINVAL', op, `pageSize: expected a power of two, got ${pageSize}`);
  const alignment = hwpt.ioas.iopt.alignment;
  if (iova % alignment !== 0n || (last + 1n) % alignment !== 0n) fail('EINVAL', op, `range not aligned to the IOAS alignment ${alignment}`);
  if (iova % pageSize !== 0n || (last + 1n) % pageSize !== 0n) fail('EINVAL', op, `range not aligned to pageSize ${pageSize}`);
  const bits = length / pageSize;
  if (bits > 1n << 32n) fail('ENOMEM', op, `a bitmap of ${bits} bits is too large`);
  const words = Math.ceil(Number(bits) / 64);
  const pages = Math.ceil((words * 8) / abi.PAGE_SIZE);
  const ptr = engine.bufferAlloc(op, pages, 'the bitmap');
  try {
    const lg2 = pageSize.toString(2).length - 1;
    engine.dirtyBitmap(op, hwpt.domain, iova, last, lg2, ptr, !noClear);
    if (!noClear) endChildWriteRights(engine, hwpt);
    return new BigUint64Array(engine.core.u8.slice(ptr, ptr + words * 8).buffer);
  } finally {
    engine.bufferFree(ptr, pages);
  }
}

/**
 * IOMMU_HWPT_SET_DIRTY_TRACKING: starts (clearing every dirty bit first) or stops marking pages
 * written through `hwptId`. @throws ENOENT, EOPNOTSUPP (see `dirtyHwpt`), EINVAL.
 */
export function hwptSetDirtyTracking(state: FdState, op: string, hwptId: unknown, enable: unknown): void {
  const on = flag(op, 'enable', enable, false);
  const hwpt = dirtyHwpt(state, op, hwptId);
  state.engine.setDomainDirty(op, hwpt.domain, on);
  endChildWriteRights(state.engine, hwpt);
  hwpt.dirtyEnabled = on;
}

/** IOMMU_HWPT_GET_DIRTY_BITMAP (see `IommuFd.hwptGetDirtyBitmap`). */
export function hwptGetDirtyBitmap(state: FdState, op: string, hwptId: unknown, args: unknown): BigUint64Array {
  const o = options(op, args, ['iova', 'length', 'pageSize', 'noClear'] as const);
  const hwpt = dirtyHwpt(state, op, hwptId);
  return readDirtyBitmap(state.engine, op, hwpt, o);
}
