/**
 * IommuFd: the ioasid FD. Authority comes from holding it: every object it creates (IOAS, HWPT,
 * bound device) gets an ID in its own number space, and PASIDs it allocates are its own. The
 * methods are thin: validate the arguments, then hand over to the object's file (ioas.ts,
 * hwpt.ts, device.ts). A failed call throws an `IommuError` and changes nothing.
 * @module
 */
import { flag, id, int, options } from './args';
import type { Engine } from './engine';
import { fail } from './errno';
import { FdState, registerFd } from './fd-state';
import { checkPasidLimit, type FdLimits, type ResolvedLimits } from './fd-limits';
import { HwptPaging } from './hwpt';
import type { IoRange } from './io-pagetable';
import { Ioas, ioasAllowIovas, ioasCopy, ioasIovaRanges, ioasMap, ioasUnmap, type CopyArgs, type MapArgs } from './ioas';
import { BoundDevice } from './device';
import { dirtyHwpt, endChildWriteRights, readDirtyBitmap } from './dirty';
import { IoasAccess, type UnmapCallback } from './access';
import * as abi from '../assembly/abi';
import { FaultQueue, closeFaultFds, faultQueueCreate, type FaultQueueFd } from './fault-queue';
import { hwptAllocUser, type HwptUserArgs } from './hwpt-user';
import { hwptInvalidate, type InvalidateEntry } from './invalidate';

/** Arguments of `hwptAlloc` for an engine-managed HWPT. */
export interface HwptAllocArgs {
  /** A device bound to this FD (names the IOMMU the HWPT is for). */
  devId: number;
  /** The IOAS to mirror. */
  ptId: number;
  nestParent?: boolean;
  /** May be attached to PASIDs. */
  pasid?: boolean;
  dirtyTracking?: boolean;
  faultId?: number;
}

const HWPT_KEYS = ['devId', 'ptId', 'nestParent', 'pasid', 'dirtyTracking', 'faultId', 'table'] as const;

export class IommuFd {
  private readonly state: FdState;

  /** @internal Made by `Iommu.open`. */
  constructor(engine: Engine, limits?: ResolvedLimits) {
    this.state = new FdState(engine, limits);
    registerFd(this, this.state);
  }

  /** This FD's quotas (`iommu.open({ limits })`); `Infinity` where none was set. */
  get limits(): Required<FdLimits> {
    return { ...this.state.limits };
  }

  get closed(): boolean {
    return this.state.closed;
  }

  /**
   * The objects this FD holds, in ID order: ID, type, users (references that keep it alive) and
   * type-specific facts (a HWPT's `ioasId` and flags, an IOAS's `areas` and `hwptIds`, a device's `bdf`).
   */
  objects(): { id: number; type: string; users: number; [fact: string]: unknown }[] {
    return this.state.table.objects().map((o) => ({ id: o.id, type: o.type, users: o.users, ...o.details() }));
  }

  /** PASIDs allocated by this FD. */
  pasids(): number[] {
    return this.state.engine.pasids.ownedBy(this.state);
  }

  /** Allocates an empty IOAS. @returns its ID. @throws EBADF, ENOMEM. */
  ioasAlloc(): number {
    const op = 'ioasAlloc';
    this.state.checkOpen(op);
    const ioasId = this.state.table.reserve(op);
    return this.state.table.publish(ioasId, new Ioas()).id;
  }

  /**
   * Maps `[iova, iova+length)` to `[phys, phys+length)` in an IOAS and every HWPT made from it.
   * @returns the IOVA (chosen by the engine when `iova` is omitted).
   * @throws EOPNOTSUPP unknown option; EOVERFLOW; EINVAL zero/misaligned length or IOVA, no
   * permission, reserved range; ENOENT no such IOAS; EEXIST overlap; ENOSPC no free IOVA; ENOMEM.
   */
  ioasMap(ioasId: number, args: MapArgs): bigint {
    this.state.checkOpen('ioasMap');
    return ioasMap(this.state.table, id('ioasMap', 'ioasId', ioasId), args);
  }

  /**
   * Unmaps every mapping wholly inside the range; `(0, 2^64-1)` unmaps all.
   * @returns bytes unmapped. @throws ENOENT nothing mapped there or a mapping only partly inside;
   * EINVAL zero length; EOVERFLOW.
   */
  ioasUnmap(ioasId: number, iova: bigint | number, length: bigint | number): bigint {
    this.state.checkOpen('ioasUnmap');
    return ioasUnmap(this.state.table, id('ioasUnmap', 'ioasId', ioasId), iova, length);
  }

  /** Maps in `dstIoas` what backs `[srcIova, +length)` of `srcIoas`. @returns the destination IOVA. */
  ioasCopy(args: CopyArgs): bigint {
    this.state.checkOpen('ioasCopy');
    return ioasCopy(this.state.table, args);
  }

  /** Usable IOVA ranges (holes of the reserved ranges) and the IOVA alignment. */
  ioasIovaRanges(ioasId: number): { ranges: IoRange[]; alignment: bigint } {
    this.state.checkOpen('ioasIovaRanges');
    return ioasIovaRanges(this.state.table, id('ioasIovaRanges', 'ioasId', ioasId));
  }

  /** Restricts automatic IOVA allocation to `ranges` ([] lifts it). @throws EINVAL, EADDRINUSE. */
  ioasAllowIovas(ioasId: number, ranges: IoRange[]): void {
    this.state.checkOpen('ioasAllowIovas');
    ioasAllowIovas(this.state.table, id('ioasAllowIovas', 'ioasId', ioasId), ranges);
  }

  /**
   * Allocates a PASID owned by this FD: only this FD's devices may attach with it.
   * @returns the PASID. @throws EINVAL out of range; EEXIST taken; ENOSPC none left, or the FD's limit reached.
   */
  pasidAlloc(opts?: { pasid?: number }): number {
    const op = 'pasidAlloc';
    this.state.checkOpen(op); // a closed FD is EBADF whatever the arguments, as for every FD call
    const o = options(op, opts, ['pasid'] as const);
    const want = o.pasid === undefined ? undefined : int(op, 'pasid', o.pasid, 1, this.state.engine.pasids.limit - 1);
    checkPasidLimit(op, this.state.limits, this.state.engine.pasids.ownedBy(this.state).length);
    if (this.state.engine.failPoint()) fail('ENOMEM', op, 'PASID allocation failed (injected)');
    return this.state.engine.pasids.alloc(op, this.state, want);
  }

  /** Frees a PASID of this FD. @throws ENOENT not this FD's; EBUSY still attached. */
  pasidFree(pasid: number): void {
    const op = 'pasidFree';
    this.state.checkOpen(op);
    this.state.engine.pasids.free(op, this.state, int(op, 'pasid', pasid, 0, 2 ** 32 - 1));
  }

  /**
   * Allocates a HWPT_PAGING mirroring IOAS `ptId`.
   * @returns the HWPT ID.
   * With `table`, allocates a user-managed HWPT instead (see `HwptUserArgs`, src/hwpt-user.ts):
   * nested on the nest-parent HWPT `ptId` when given, else over guest-physical addresses.
   * @throws EOPNOTSUPP unknown option, faultId with nestParent, dirtyTracking for a device without it;
   * ENOENT bad devId or faultId; EINVAL ptId missing or not an IOAS; ENOMEM.
   */
  hwptAlloc(args: HwptAllocArgs | HwptUserArgs): number {
    const op = 'hwptAlloc';
    this.state.checkOpen(op);
    const o = options(op, args, HWPT_KEYS);
    if (o.table !== undefined) return hwptAllocUser(this.state, op, o);
    const nestParent = flag(op, 'nestParent', o.nestParent, false);
    const pasid = flag(op, 'pasid', o.pasid, false);
    const dirty = flag(op, 'dirtyTracking', o.dirtyTracking, false);
    if (o.faultId !== undefined && nestParent) fail('EOPNOTSUPP', op, 'faultId cannot be combined with nestParent');
    const bound = this.state.table.get<BoundDevice>(op, id(op, 'devId', o.devId), 'device');
    if (dirty && !bound.device.dirty) fail('EOPNOTSUPP', op, `device ${bound.device.bdf} has no dirty-tracking support`);
    const pt = this.state.table.find(id(op, 'ptId', o.ptId));
    if (!(pt instanceof Ioas)) fail('EINVAL', op, pt ? `object ${pt.id} is a ${pt.type}, expected an IOAS` : `no object with ID ${o.ptId as number}`);
    const queue = o.faultId === undefined ? undefined : this.state.table.get<FaultQueue>(op, id(op, 'faultId', o.faultId), 'fault');
    const hwptId = this.state.table.reserve(op);
    let hwpt: HwptPaging;
    try {
      hwpt = HwptPaging.create(op, this.state, pt, { auto: false, nestParent, pasid, dirtyTracking: dirty });
    } catch (e) {
      this.state.table.abort(hwptId);
      throw e;
    }
    if (queue) {
      hwpt.faultQueue = queue;
      queue.hwptAdded(hwpt);
    }
    return this.state.table.publish(hwptId, hwpt).id;
  }

  /**
   * IOMMU_HWPT_SET_DIRTY_TRACKING: starts (clearing every dirty bit first) or stops marking pages
   * written through a HWPT allocated with `dirtyTracking: true`.
   * @throws ENOENT not an engine-managed HWPT; EOPNOTSUPP allocated without dirty tracking; EINVAL.
   */
  hwptSetDirtyTracking(hwptId: number, enable: boolean): void {
    const op = 'hwptSetDirtyTracking';
    this.state.checkOpen(op);
    const on = flag(op, 'enable', enable, false);
    const hwpt = dirtyHwpt(this.state, op, hwptId);
    this.state.engine.check(op, this.state.engine.core.exports.domainSetDirty(hwpt.domain, on ? 1 : 0), 'dirty tracking');
    endChildWriteRights(this.state.engine, hwpt);
    hwpt.dirtyEnabled = on;
  }

  /**
   * IOMMU_HWPT_GET_DIRTY_BITMAP: which pages of `[iova, iova + length)` were written, one bit per
   * `pageSize` bytes (bit n = page `iova + n * pageSize`, in u64 word n / 64), read and cleared
   * unless `noClear`. A dirty 2 MiB leaf sets the bits of all its pages in the range.
   * @throws ENOENT not an engine-managed HWPT; EOPNOTSUPP unknown option or no dirty tracking;
   * EOVERFLOW iova + length - 1 wraps; EINVAL zero length or page size, not a power of two, range
   * not aligned to the IOAS alignment or to pageSize; ENOMEM no room for the bitmap.
   */
  hwptGetDirtyBitmap(hwptId: number, args: { iova: bigint | number; length: bigint | number; pageSize: bigint | number; noClear?: boolean }): BigUint64Array {
    const op = 'hwptGetDirtyBitmap';
    this.state.checkOpen(op);
    const o = options(op, args, ['iova', 'length', 'pageSize', 'noClear'] as const);
    const hwpt = dirtyHwpt(this.state, op, hwptId);
    return readDirtyBitmap(this.state.engine, op, hwpt, o);
  }

  /**
   * IOMMU_FAULT_QUEUE_ALLOC: a fault queue (FAULT object) and its fault FD. HWPTs allocated with
   * `faultId: id` deliver page requests of `pri` devices to it; read and answer them on `fd`.
   * @returns the object's ID and the fault FD. @throws EBADF closed FD; ENOMEM.
   */
  faultQueueAlloc(): { id: number; fd: FaultQueueFd } {
    const op = 'faultQueueAlloc';
    this.state.checkOpen(op);
    return faultQueueCreate(this.state, op);
  }

  /**
   * IOMMU_HWPT_INVALIDATE on a user-managed HWPT: removes cached translations named by `entries`
   * (`{}` everything, `{ pasid }`, `{ iova, length[, pasid] }`; src/invalidate.ts).
   * @returns the number of entries handled (all of them on success).
   * @throws ENOENT no such object; EINVAL an engine-managed HWPT or another type, a bad entry;
   * EOPNOTSUPP an unknown entry field; EOVERFLOW — errors in entries are `InvalidateError`s whose
   * `handled` counts the entries applied before the bad one.
   */
  hwptInvalidate(hwptId: number, entries: InvalidateEntry[]): number {
    const op = 'hwptInvalidate';
    this.state.checkOpen(op);
    return hwptInvalidate(this.state, op, id(op, 'hwptId', hwptId), entries);
  }

  /**
   * Creates a software-DMA access object on an IOAS (iommufd's access): `read`/`write` by IOVA,
   * and — with `onUnmap` — `pin`/`unpin`, unmaps of pinned ranges calling `onUnmap` first.
   * @returns the access; its `id` is in this FD's number space (destroy it with `destroy(id)`).
   * @throws ENOENT no such IOAS; EINVAL onUnmap not a function; EADDRINUSE mappings not page aligned (pinning access); ENOMEM.
   */
  accessCreate(ioasId: number, opts?: { onUnmap?: UnmapCallback }): IoasAccess {
    const op = 'accessCreate';
    this.state.checkOpen(op);
    const o = options(op, opts, ['onUnmap'] as const);
    if (o.onUnmap !== undefined && typeof o.onUnmap !== 'function') fail('EINVAL', op, 'onUnmap: expected a function');
    const ioas = this.state.table.get<Ioas>(op, id(op, 'ioasId', ioasId), 'ioas');
    const accessId = this.state.table.reserve(op);
    const access = new IoasAccess(this.state.engine, ioas, o.onUnmap as UnmapCallback | undefined);
    try {
      // A pinning access works in whole pages (iommufd: alignment PAGE_SIZE when it pins).
      if (o.onUnmap) ioas.iopt.addAlignment(op, access, BigInt(abi.PAGE_SIZE));
    } catch (e) {
      this.state.table.abort(accessId);
      throw e;
    }
    ioas.users++;
    ioas.accesses.add(access);
    return this.state.table.publish(accessId, access);
  }

  /** Destroys an object. @throws ENOENT no such object; EBUSY still in use (attached, has HWPTs, bound). */
  destroy(objId: number): void {
    const op = 'destroy';
    this.state.checkOpen(op);
    this.state.table.destroy(op, id(op, 'id', objId));
  }

  /**
   * Closes the FD: unbinds its devices (detaching every PASID, then the RID), destroys every
   * object leaf first and frees its PASIDs. Closing twice is a no-op.
   */
  close(): void {
    if (this.state.closed) return;
    for (const dev of [...this.state.devices]) dev.unbindFrom(this.state);
    closeFaultFds(this.state);
    this.state.table.destroyAll();
    this.state.engine.pasids.freeAll(this.state);
    this.state.closed = true;
  }
}
