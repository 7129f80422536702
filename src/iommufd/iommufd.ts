/**
 * IommuFd: the ioasid FD. Authority comes from holding it: every object it creates (IOAS, HWPT,
 * bound device, access, fault queue) gets an ID in its own number space, and PASIDs it allocates
 * are its own. Every method is a one-line delegate to the file of its object type: `live(op)`
 * refuses a closed FD (EBADF before any argument is looked at), the command validates its
 * arguments, and a failed call throws an `IommuError` and changes nothing.
 * @module
 */
import { id } from '../base/args';
import { accessCreate, type IoasAccess, type UnmapCallback } from './access';
import { hwptGetDirtyBitmap, hwptSetDirtyTracking } from './dirty';
import { faultQueueCreate, type FaultQueueFd } from './fault-queue';
import { FdState, registerFd, type Engine } from './fd-state';
import type { FdLimits, ResolvedLimits } from './fd-limits';
import { hwptAlloc, type HwptAllocArgs } from './hwpt-alloc';
import type { HwptUserArgs } from './hwpt-user';
import { hwptInvalidate, type InvalidateEntry } from './invalidate';
import type { IoRange } from './io-range';
import type { ObjType } from './object-table';
import { ioasAlloc, ioasAllowIovas, ioasCopy, ioasIovaRanges, ioasMap, ioasUnmap, type CopyArgs, type MapArgs } from './ioas';
import { ioasMapBatch, ioasUnmapBatch, type MapBatch, type UnmapBatch } from './ioas-batch';
import { pasidAlloc, pasidFree } from './pasid';

export type { HwptAllocArgs } from './hwpt-alloc';

/**
 * The ioasid FD (Linux iommufd): the VMM's handle that owns I/O address spaces, page tables and
 * PASIDs. Every object it creates gets an ID in the FD's own number space; another FD cannot name
 * it. Get one from `Iommu.open()`.
 * @example
 * ```ts no-run
 * const fd = iommu.open();
 * const ioas = fd.ioasAlloc();
 * fd.ioasMap(ioas, { iova: 0x10_0000n, length: 0x1000n, phys: 0x8000_0000n });
 * const hwpt = fd.hwptAlloc({ devId: nic.bind(fd), ptId: ioas });
 * nic.attach(hwpt);
 * ```
 */
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

  /** The FD's state for command `op`. @throws EBADF once the FD is closed. */
  private live(op: string): FdState {
    this.state.checkOpen(op);
    return this.state;
  }

  /** True after `close()`: every call but `close` then throws EBADF. */
  get closed(): boolean {
    return this.state.closed;
  }

  /**
   * The objects this FD holds, in ID order: ID, type, users (references that keep it alive) and
   * type-specific facts (a HWPT's `ioasId` and flags, an IOAS's `areas` and `hwptIds`, a device's `bdf`).
   */
  objects(): {
    /** The object's ID in this FD. */
    id: number;
    /** The object's type. */
    type: ObjType;
    /** References from other objects that keep it alive (it cannot be destroyed while > 0). */
    users: number;
    /** Type-specific facts. */
    [fact: string]: unknown;
  }[] {
    return this.state.table.objects().map((o) => ({ id: o.id, type: o.type, users: o.users, ...o.details() }));
  }

  /** PASIDs allocated by this FD. */
  pasids(): number[] {
    return this.state.engine.pasids.ownedBy(this.state);
  }

  /** Allocates an empty IOAS. @returns its ID. @throws EBADF, ENOMEM. */
  ioasAlloc(): number {
    return ioasAlloc(this.live('ioasAlloc').table);
  }

  /**
   * Maps `[iova, iova+length)` to `[phys, phys+length)` in an IOAS and every HWPT made from it.
   * @returns the IOVA (chosen by the engine when `iova` is omitted).
   * @throws EOPNOTSUPP unknown option; EOVERFLOW; EINVAL zero/misaligned length or IOVA, no
   * permission, reserved range; ENOENT no such IOAS; EEXIST overlap; ENOSPC no free IOVA; ENOMEM.
   */
  ioasMap(ioasId: number, args: MapArgs): bigint {
    return ioasMap(this.live('ioasMap').table, id('ioasMap', 'ioasId', ioasId), args);
  }

  /**
   * Unmaps every mapping wholly inside the range; `(0, 2^64-1)` unmaps all.
   * @returns bytes unmapped. @throws ENOENT nothing mapped there or a mapping only partly inside;
   * EINVAL zero length; EOVERFLOW.
   */
  ioasUnmap(ioasId: number, iova: bigint | number, length: bigint | number): bigint {
    return ioasUnmap(this.live('ioasUnmap').table, id('ioasUnmap', 'ioasId', ioasId), iova, length);
  }

  /**
   * `ioasMap` for many fixed-IOVA mappings: entry i is `entries[3i..3i+2]` = iova, length, phys,
   * with `perms[i]` (bit 0 read, bit 1 write; default both). Each entry applies wholly or changes
   * nothing; `results[i]` gets 0 or the errno number (`ERRNO`) `ioasMap` would have thrown
   * (EOVERFLOW, EINVAL, EEXIST, ENOMEM; EOPNOTSUPP for unknown perm bits). Entries apply in order.
   * @returns the number of entries applied.
   * @throws only for a malformed batch, applying nothing: ENOENT no such IOAS; EINVAL wrong array
   * types or lengths.
   */
  ioasMapBatch(ioasId: number, batch: MapBatch): number {
    this.state.checkOpen('ioasMapBatch');
    return ioasMapBatch(this.state.table, id('ioasMapBatch', 'ioasId', ioasId), batch);
  }

  /**
   * `ioasUnmap` for many ranges: entry i is `entries[2i..2i+1]` = iova, length. `results[i]` gets 0
   * or the errno number `ioasUnmap` would have thrown (ENOENT, EINVAL, EOVERFLOW, and what an
   * access's onUnmap refusal gives); `bytes[i]`, when given, the bytes unmapped. In order.
   * @returns the number of entries applied.
   * @throws only for a malformed batch (applying nothing): ENOENT no such IOAS; EINVAL wrong arrays.
   */
  ioasUnmapBatch(ioasId: number, batch: UnmapBatch): number {
    this.state.checkOpen('ioasUnmapBatch');
    return ioasUnmapBatch(this.state.table, id('ioasUnmapBatch', 'ioasId', ioasId), batch);
  }

  /** Maps in `dstIoas` what backs `[srcIova, +length)` of `srcIoas`. @returns the destination IOVA. */
  ioasCopy(args: CopyArgs): bigint {
    return ioasCopy(this.live('ioasCopy').table, args);
  }

  /** Usable IOVA ranges (holes of the reserved ranges) and the IOVA alignment. */
  ioasIovaRanges(ioasId: number): {
    /** The IOVA ranges a map may use (allowed and not reserved). */
    ranges: IoRange[];
    /** The IOVA alignment a map needs (4 KiB with a device attached). */
    alignment: bigint;
  } {
    return ioasIovaRanges(this.live('ioasIovaRanges').table, id('ioasIovaRanges', 'ioasId', ioasId));
  }

  /** Restricts automatic IOVA allocation to `ranges` ([] lifts it). @throws EINVAL, EADDRINUSE. */
  ioasAllowIovas(ioasId: number, ranges: IoRange[]): void {
    ioasAllowIovas(this.live('ioasAllowIovas').table, id('ioasAllowIovas', 'ioasId', ioasId), ranges);
  }

  /**
   * Allocates a PASID owned by this FD: only this FD's devices may attach with it.
   * @returns the PASID. @throws EINVAL out of range; EEXIST taken; ENOSPC none left.
   */
  pasidAlloc(opts?: { pasid?: number }): number {
    return pasidAlloc(this.live('pasidAlloc'), 'pasidAlloc', opts);
  }

  /** Frees a PASID of this FD. @throws ENOENT not this FD's; EBUSY still attached. */
  pasidFree(pasid: number): void {
    pasidFree(this.live('pasidFree'), 'pasidFree', pasid);
  }

  /**
   * Allocates a HWPT_PAGING mirroring IOAS `ptId`.
   * @returns the HWPT ID.
   * With `table`, allocates a user-managed HWPT instead (see `HwptUserArgs`, src/iommufd/hwpt-user.ts):
   * nested on the nest-parent HWPT `ptId` when given, else over guest-physical addresses.
   * @throws EOPNOTSUPP unknown option, faultId with nestParent, dirtyTracking for a device without it;
   * ENOENT bad devId or faultId; EINVAL ptId missing or not an IOAS; ENOMEM.
   */
  hwptAlloc(args: HwptAllocArgs | HwptUserArgs): number {
    return hwptAlloc(this.live('hwptAlloc'), 'hwptAlloc', args);
  }

  /**
   * IOMMU_HWPT_SET_DIRTY_TRACKING: starts (clearing every dirty bit first) or stops marking pages
   * written through a HWPT allocated with `dirtyTracking: true`.
   * @throws ENOENT not an engine-managed HWPT; EOPNOTSUPP allocated without dirty tracking; EINVAL.
   */
  hwptSetDirtyTracking(hwptId: number, enable: boolean): void {
    hwptSetDirtyTracking(this.live('hwptSetDirtyTracking'), 'hwptSetDirtyTracking', hwptId, enable);
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
    return hwptGetDirtyBitmap(this.live('hwptGetDirtyBitmap'), 'hwptGetDirtyBitmap', hwptId, args);
  }

  /**
   * IOMMU_FAULT_QUEUE_ALLOC: a fault queue (FAULT object) and its fault FD. HWPTs allocated with
   * `faultId: id` deliver page requests of `pri` devices to it; read and answer them on `fd`.
   * @returns the object's ID and the fault FD. @throws EBADF closed FD; ENOMEM.
   */
  faultQueueAlloc(): {
    /** The fault queue's object ID (`faultId` of `hwptAlloc`). */
    id: number;
    /** Its fault FD: read page requests, write responses. */
    fd: FaultQueueFd;
  } {
    return faultQueueCreate(this.live('faultQueueAlloc'), 'faultQueueAlloc');
  }

  /**
   * IOMMU_HWPT_INVALIDATE on a user-managed HWPT: removes cached translations named by `entries`
   * (`{}` everything, `{ pasid }`, `{ iova, length[, pasid] }`; src/iommufd/invalidate.ts).
   * @returns the number of entries handled (all of them on success).
   * @throws ENOENT no such object; EINVAL an engine-managed HWPT or another type, a bad entry;
   * EOPNOTSUPP an unknown entry field; EOVERFLOW — errors in entries are `InvalidateError`s whose
   * `handled` counts the entries applied before the bad one.
   */
  hwptInvalidate(hwptId: number, entries: InvalidateEntry[]): number {
    return hwptInvalidate(this.live('hwptInvalidate'), 'hwptInvalidate', id('hwptInvalidate', 'hwptId', hwptId), entries);
  }

  /**
   * Creates a software-DMA access object on an IOAS (iommufd's access): `read`/`write` by IOVA,
   * and — with `onUnmap` — `pin`/`unpin`, unmaps of pinned ranges calling `onUnmap` first.
   * @returns the access; its `id` is in this FD's number space (destroy it with `destroy(id)`).
   * @throws ENOENT no such IOAS; EINVAL onUnmap not a function; EADDRINUSE mappings not page aligned (pinning access); ENOMEM.
   */
  accessCreate(ioasId: number, opts?: { onUnmap?: UnmapCallback }): IoasAccess {
    return accessCreate(this.live('accessCreate'), 'accessCreate', ioasId, opts);
  }

  /** Destroys an object. @throws ENOENT no such object; EBUSY still in use (attached, has HWPTs, bound). */
  destroy(objId: number): void {
    this.live('destroy').table.destroy('destroy', id('destroy', 'id', objId));
  }

  /**
   * Closes the FD: unbinds its devices (detaching every PASID, then the RID), destroys every
   * object leaf first and frees its PASIDs. Closing twice is a no-op.
   */
  close(): void {
    this.state.close();
  }
}
