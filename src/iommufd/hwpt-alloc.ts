/**
 * IOMMU_HWPT_ALLOC: one entry for both kinds of HWPT. Without `table`, an engine-managed
 * HWPT_PAGING mirroring an IOAS (src/iommufd/hwpt.ts); with it, a user-managed HWPT over tables in
 * guest memory (src/iommufd/hwpt-user.ts). Kept apart from both so neither imports the other at
 * load time.
 * @module
 */
import { flag, id, options } from '../base/args';
import { fail } from '../base/errno';
import type { BoundDevice } from './device';
import type { FaultQueue } from './fault-queue';
import type { FdState } from './fd-state';
import { HwptPaging } from './hwpt';
import { hwptAllocUser } from './hwpt-user';
import { Ioas } from './ioas';

/** Arguments of `hwptAlloc` for an engine-managed HWPT. */
export interface HwptAllocArgs {
  /** A device bound to this FD (names the IOMMU the HWPT is for). */
  devId: number;
  /** The IOAS to mirror. */
  ptId: number;
  /** May be the parent of nested (user-managed) HWPTs. */
  nestParent?: boolean;
  /** May be attached to PASIDs. */
  pasid?: boolean;
  /** Track dirty pages (`hwptSetDirtyTracking`, `hwptGetDirtyBitmap`); needs a device with `dirty`. */
  dirtyTracking?: boolean;
  /** A fault queue (`faultQueueAlloc`) receiving page requests. Not with `nestParent`. */
  faultId?: number;
}

const HWPT_KEYS = ['devId', 'ptId', 'nestParent', 'pasid', 'dirtyTracking', 'faultId', 'table'] as const;

/** See `IommuFd.hwptAlloc`. @returns the HWPT ID. */
export function hwptAlloc(state: FdState, op: string, args: unknown): number {
  const o = options(op, args, HWPT_KEYS);
  if (o.table !== undefined) return hwptAllocUser(state, op, o);
  const nestParent = flag(op, 'nestParent', o.nestParent, false);
  const pasid = flag(op, 'pasid', o.pasid, false);
  const dirty = flag(op, 'dirtyTracking', o.dirtyTracking, false);
  if (o.faultId !== undefined && nestParent) fail('EOPNOTSUPP', op, 'faultId cannot be combined with nestParent');
  const bound = state.table.get<BoundDevice>(op, id(op, 'devId', o.devId), 'device');
  if (dirty && !bound.device.dirty) fail('EOPNOTSUPP', op, `device ${bound.device.bdf} has no dirty-tracking support`);
  const pt = state.table.find(id(op, 'ptId', o.ptId));
  if (!(pt instanceof Ioas)) fail('EINVAL', op, pt ? `object ${pt.id} is a ${pt.type}, expected an IOAS` : `no object with ID ${o.ptId as number}`);
  const queue = o.faultId === undefined ? undefined : state.table.get<FaultQueue>(op, id(op, 'faultId', o.faultId), 'fault');
  return state.table.create(op, () => {
    const hwpt = HwptPaging.create(op, state, pt, { auto: false, nestParent, pasid, dirtyTracking: dirty });
    if (queue) {
      hwpt.faultQueue = queue;
      queue.hwptAdded(hwpt);
    }
    return hwpt;
  }).id;
}
