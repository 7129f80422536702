/**
 * Access objects: iommufd's software DMA path (`iommufd_access_*`, Linux drivers/iommu/iommufd/device.c; Documentation/userspace-api/iommufd.rst, IOMMUFD_OBJ_ACCESS). An emulated
 * device that has no IOMMU of its own reads, writes and pins IOAS memory by IOVA through one.
 *
 * Invariants: a pin covers whole pages of contiguous areas; while any pin intersects an area being
 * unmapped, the unmap first calls `onUnmap(iova, length)` for that area and retries; if the pins
 * are still there after MAX_UNMAP_RETRIES rounds it fails EDEADLOCK with nothing unmapped.
 * A pinning access raises its IOAS's alignment to a page, as in the kernel.
 * @module
 */
import * as abi from '../../assembly/abi';
import { id, options, u64 } from '../base/args';
import { toLast } from '../base/range';
import type { Engine, FdState } from './fd-state';
import { fail } from '../base/errno';
import type { Area } from './area';
import type { IoRange } from './io-range';
import type { Ioas } from './ioas';
import { FdObject } from './object-table';

const MAX_UNMAP_RETRIES = 100;
const PAGE = BigInt(abi.PAGE_SIZE);

/** Called when an unmap covers pinned pages: unpin them (`length` bytes from `iova`). */
export type UnmapCallback = (iova: bigint, length: bigint) => void;

export class IoasAccess extends FdObject {
  readonly type = 'access' as const;
  private readonly pins: IoRange[] = [];

  /** @internal Made by `IommuFd.accessCreate`. */
  constructor(
    private readonly engine: Engine,
    /** @internal The IOAS it reads and writes. */
    readonly ioas: Ioas,
    private readonly onUnmap: UnmapCallback | undefined,
  ) {
    super();
  }

  /**
   * Reads `dst.length` bytes at `iova` of the IOAS.
   * @throws EINVAL zero length; EOVERFLOW wrap; ENOENT not fully mapped; EPERM no read permission;
   * EFAULT not guest RAM; EBADF the access was destroyed.
   */
  read(iova: bigint | number, dst: Uint8Array): void {
    this.copy('read', iova, dst, false);
  }

  /** Writes `src` at `iova` of the IOAS. @throws as `read`, EPERM no write permission. */
  write(iova: bigint | number, src: Uint8Array): void {
    this.copy('write', iova, src, true);
  }

  /**
   * Pins `[iova, iova + length)` (page aligned): until unpinned, an unmap of it asks `onUnmap` first.
   * @throws EINVAL unaligned, zero length or no onUnmap callback; EOVERFLOW; ENOENT not fully mapped.
   */
  pin(iova: bigint | number, length: bigint | number): void {
    const op = 'pin';
    const r = this.range(op, iova, length);
    if (!this.onUnmap) fail('EINVAL', op, 'the access was created without onUnmap, so it cannot pin');
    if (r.start % PAGE !== 0n || (r.last + 1n) % PAGE !== 0n) fail('EINVAL', op, 'expected a page-aligned range');
    if (!this.ioas.iopt.slices(r.start, r.last)) fail('ENOENT', op, 'range is not fully mapped');
    this.pins.push(r);
  }

  /** Drops a pin made by `pin` with the same range. @throws ENOENT no such pin. */
  unpin(iova: bigint | number, length: bigint | number): void {
    const op = 'unpin';
    const r = this.range(op, iova, length);
    const i = this.pins.findIndex((p) => p.start === r.start && p.last === r.last);
    if (i < 0) fail('ENOENT', op, 'no pin with that range');
    this.pins.splice(i, 1);
  }

  /** Pinned ranges, in pin order. */
  pinned(): IoRange[] {
    return this.pins.map((p) => ({ ...p }));
  }

  /** @internal Snapshot support (src/snapshot/): true when the access was created with `onUnmap` (it may pin). */
  get pinning(): boolean {
    return this.onUnmap !== undefined;
  }

  /** @internal Snapshot support: the pins of a restored access (its IOAS's areas are already in place). */
  restorePins(pins: readonly IoRange[]): void {
    for (const p of pins) this.pins.push({ start: p.start, last: p.last });
  }

  /**
   * @internal Unmap of `areas` in the IOAS, round `round` of IoPagetable.unmap: true when no pin
   * intersects them (they may go). Otherwise asks the pinning accesses to unpin each pinned area
   * (`onUnmap`) and returns false: the callbacks may have changed the IOAS (mapped, unmapped,
   * copied), so the caller looks the range up again, as the kernel does. A pin is re-checked
   * before each call, as an earlier callback may have dropped it or destroyed its access.
   * EDEADLOCK once MAX_UNMAP_RETRIES rounds did not release the pins.
   */
  static reclaimPins(op: string, accesses: Iterable<IoasAccess>, areas: readonly Area[], round: number): boolean {
    const pinnedBy = (access: IoasAccess, a: Area): boolean =>
      access.ioas.accesses.has(access) && access.pins.some((p) => p.start <= a.last && p.last >= a.iova);
    const list = [...accesses];
    if (!areas.some((a) => list.some((access) => pinnedBy(access, a)))) return true;
    if (round >= MAX_UNMAP_RETRIES) fail('EDEADLOCK', op, 'pinned pages were not unpinned by onUnmap');
    for (const a of areas) {
      for (const access of list) if (pinnedBy(access, a)) access.onUnmap!(a.iova, a.last - a.iova + 1n);
    }
    return false;
  }

  /** @internal */
  override details(): Record<string, unknown> {
    return { ioasId: this.ioas.id, pins: this.pins.length };
  }

  /** @internal */
  release(): void {
    this.pins.length = 0;
    if (this.onUnmap) this.ioas.iopt.removeAlignment(this);
    this.ioas.accesses.delete(this);
    this.ioas.users--;
  }

  private range(op: string, iova: unknown, length: unknown): IoRange {
    if (this.id === 0 || !this.ioas.accesses.has(this)) fail('EBADF', op, 'the access was destroyed');
    const start = u64(op, 'iova', iova);
    const n = u64(op, 'length', length);
    return { start, last: toLast(op, 'iova', start, n) };
  }

  private copy(op: string, iova: unknown, data: Uint8Array, toRam: boolean): void {
    if (!(data instanceof Uint8Array)) fail('EINVAL', op, 'expected a Uint8Array');
    const r = this.range(op, iova, data.length);
    const slices = this.ioas.iopt.slices(r.start, r.last) ?? fail('ENOENT', op, 'range is not fully mapped');
    for (const s of slices) {
      if (toRam ? !s.area.write : !s.area.read) fail('EPERM', op, `mapping at 0x${s.area.iova.toString(16)} is not ${toRam ? 'writable' : 'readable'}`);
    }
    const ram = this.engine.ram;
    // Every span is checked before anything is copied: a failed call changes nothing.
    const spans = slices.map((s) => {
      const n = Number(s.last - s.start + 1n);
      const phys = Number(s.area.phys + (s.start - s.area.iova));
      if (!ram.covers(phys, n)) fail('EFAULT', op, `mapping at 0x${s.area.iova.toString(16)} is not backed by guest RAM`);
      return { phys, n };
    });
    let done = 0;
    for (const { phys, n } of spans) {
      if (toRam) ram.write(phys, data, done, n);
      else ram.read(phys, data, done, n);
      done += n;
    }
  }
}

/**
 * IOMMU_ACCESS_CREATE's counterpart (iommufd_access_create): an access object on IOAS `ioasId`;
 * with `onUnmap` a pinning one, which raises the IOAS alignment to a page.
 * @throws ENOENT no such IOAS; EINVAL onUnmap not a function; EADDRINUSE mappings not page aligned; ENOMEM.
 */
export function accessCreate(state: FdState, op: string, ioasId: unknown, opts: unknown): IoasAccess {
  const o = options(op, opts, ['onUnmap'] as const);
  if (o.onUnmap !== undefined && typeof o.onUnmap !== 'function') fail('EINVAL', op, 'onUnmap: expected a function');
  const ioas = state.table.get<Ioas>(op, id(op, 'ioasId', ioasId), 'ioas');
  return state.table.create(op, () => {
    const access = new IoasAccess(state.engine, ioas, o.onUnmap as UnmapCallback | undefined);
    // A pinning access works in whole pages (iommufd: alignment PAGE_SIZE when it pins).
    if (o.onUnmap) ioas.iopt.addAlignment(op, access, BigInt(abi.PAGE_SIZE));
    ioas.users++;
    ioas.accesses.add(access);
    return access;
  });
}
