/**
 * DeviceFd: a PCI function behind the IOMMU, as its device FD (VFIO cdev). Binding it to an
 * ioasid FD creates a device object in that FD; attaching authorizes the device (RID, or one of
 * its PASIDs) to use an address space of that FD. Programming the address space is the FD's
 * business, authorization is this object's: the seed's separation of the two.
 *
 * Rules (Linux drivers/iommu/iommufd/device.c; VFIO cdev, Documentation/driver-api/vfio.rst): a second attach of an attached (device, pasid) replaces;
 * detach of nothing succeeds; a PASID needs a PASID-capable HWPT and a PASID-compatible RID
 * attachment; the seed's addition: the PASID must be allocated by the FD the device is bound to.
 * @module
 */
import * as abi from '../../assembly/abi';
import { id, int, options } from '../base/args';
import type { Engine } from './fd-state';
import { fail } from '../base/errno';
import { fdState, type FdState } from './fd-state';
import { HwptPaging } from './hwpt';
import { HwptUser } from './hwpt-user';
import type { PageResponse } from './fault-queue';
import type { IoRange } from './io-range';
import type { IommuFd } from './iommufd';
import { Ioas } from './ioas';
import { FdObject } from './object-table';

/** The device object inside an FD; the binding holds a reference, so `destroy(devId)` is EBUSY. */
export class BoundDevice extends FdObject {
  readonly type = 'device' as const;
  constructor(readonly device: DeviceFd) {
    super();
  }
  override details(): Record<string, unknown> {
    return { bdf: this.device.bdf, rid: this.device.rid };
  }
  release(): void {}
}

/** Capabilities a device is created with (`Iommu.addDevice`). */
export interface DeviceCaps {
  bdf: string;
  rid: number;
  pasidBits: number;
  pri: boolean;
  dirty: boolean;
  reservedRegions: IoRange[];
}

/** What a device can be attached to: an engine-managed or a user-managed HWPT. */
type AnyHwpt = HwptPaging | HwptUser;

/** Flags of the HWPT an attach to an IOAS makes (never PASID-capable, as in iommufd). */
const AUTO_FLAGS = { auto: true, nestParent: false, pasid: false } as const;

interface Binding {
  state: FdState;
  obj: BoundDevice;
}

/** @internal A device's private state, by reference (snapshots, src/snapshot/). */
export interface DeviceState {
  caps: DeviceCaps;
  binding: Binding | undefined;
  /** pasid (NO_PASID for the RID) -> attached HWPT. */
  attached: ReadonlyMap<number, AnyHwpt>;
  responses: readonly PageResponse[];
  reservedIn: Ioas | undefined;
}

/**
 * A device FD (VFIO's cdev): one PCI function behind the IOMMU, as `Iommu.addDevice()` returns it.
 * Its DMA is blocked until it is bound to an ioasid FD and attached to an address space there:
 * `bind()` and `attach()` are the authorization, separate from programming the address space.
 * @example
 * ```ts no-run
 * const nic = iommu.addDevice({ bdf: '0000:03:00.0' });
 * const devId = nic.bind(fd);                     // joins the FD
 * nic.attach(fd.hwptAlloc({ devId, ptId: ioas }));  // its RID may now DMA through that IOAS
 * ```
 */
export class DeviceFd {
  private binding: Binding | undefined;
  /** pasid (NO_PASID for the RID) -> attached HWPT. */
  private readonly attached = new Map<number, AnyHwpt>();
  /** Page responses (answers to page requests) received and not yet taken. */
  private responses: PageResponse[] = [];
  /** The IOAS holding this device's reserved regions while its RID is attached. */
  private reservedIn: Ioas | undefined;

  /** @internal Made by `Iommu.addDevice`. */
  constructor(private readonly engine: Engine, private readonly caps: DeviceCaps) {}

  /** 16-bit requester ID (bus << 8 | device << 3 | function). */
  get rid(): number {
    return this.caps.rid;
  }

  /** PCI bus/device/function, e.g. `'0000:03:00.0'`. */
  get bdf(): string {
    return this.caps.bdf;
  }

  /** True when the device supports dirty tracking (may attach to dirty-tracking HWPTs). */
  get dirty(): boolean {
    return this.caps.dirty;
  }

  /** The IOVA ranges the device cannot use (`DeviceOptions.reservedRegions`), as copies. */
  get reservedRegions(): IoRange[] {
    return this.caps.reservedRegions.map((r) => ({ start: r.start, last: r.last }));
  }

  /** PASID width; 0 = the device does not support PASIDs. */
  get pasidBits(): number {
    return this.caps.pasidBits;
  }

  /** The device ID inside the FD this device is bound to, or undefined. */
  get devId(): number | undefined {
    return this.binding?.obj.id;
  }

  /** True when the device sends page requests (PRI) for recoverable faults. */
  get pri(): boolean {
    return this.caps.pri;
  }

  /**
   * Takes the page responses the device received (answers written to a fault queue, or INVALID
   * on detach), oldest first. After a 'success' the device may retry the DMA that faulted.
   */
  pageResponses(): PageResponse[] {
    const out = this.responses;
    this.responses = [];
    return out;
  }

  /** @internal A fault queue answers one of this device's page requests. */
  pushPageResponse(r: PageResponse): void {
    if (this.responses.length >= 4096) this.responses.shift(); // a device that never looks stays bounded
    this.responses.push(r);
  }

  /** Current attachments: pasid (NO_PASID = RID) -> HWPT ID. */
  attachments(): Map<number, number> {
    return new Map([...this.attached].map(([p, h]) => [p, h.id]));
  }

  /**
   * @internal The attachments by reference (pasid -> HWPT), for the FD's per-call walks
   * (invalidation, fault routing) that `attachments()`'s fresh copy would make allocate. Read-only.
   */
  attachedHwpts(): ReadonlyMap<number, AnyHwpt> {
    return this.attached;
  }

  /** @internal Snapshot support: the private state, by reference. */
  exportState(): DeviceState {
    return { caps: this.caps, binding: this.binding, attached: this.attached, responses: this.responses, reservedIn: this.reservedIn };
  }

  /**
   * @internal Snapshot support: gives a restored device (fresh from the constructor) its binding,
   * attachments, undelivered responses and reserved-region IOAS. The core's contexts and the
   * objects' users counts are restored by the caller.
   */
  importState(s: Omit<DeviceState, 'caps'>): void {
    this.binding = s.binding;
    for (const [pasid, hwpt] of s.attached) this.attached.set(pasid, hwpt);
    this.responses = [...s.responses];
    this.reservedIn = s.reservedIn;
  }

  /**
   * Binds this device to an ioasid FD (VFIO_DEVICE_BIND_IOMMUFD).
   * @returns the device ID in that FD.
   * @throws EINVAL not an ioasid FD of this device's Iommu, or already bound; EBADF closed FD; ENOMEM.
   */
  bind(fd: IommuFd): number {
    const op = 'bind';
    const state = fdState(fd) ?? fail('EINVAL', op, 'expected an IommuFd');
    if (state.engine !== this.engine) fail('EINVAL', op, 'expected an IommuFd of the Iommu this device was added to');
    state.checkOpen(op);
    if (this.binding) fail('EINVAL', op, `device ${this.bdf} is already bound (device ID ${this.binding.obj.id})`);
    const obj = state.table.create(op, () => {
      const bound = new BoundDevice(this);
      bound.users = 1;
      return bound;
    });
    this.binding = { state, obj };
    state.devices.add(this);
    return obj.id;
  }

  /**
   * Authorizes the RID, or `pasid`, to use `ptId` (an IOAS, which gets an auto HWPT, or a HWPT).
   * Attaching an attached (device, pasid) replaces its HWPT.
   * @returns the attached HWPT ID.
   * @throws EINVAL not bound, bad PASID or incompatible HWPT; EPERM PASID not allocated by the bound
   * FD; ENOENT no such object; EADDRINUSE reserved regions clash; ENOMEM.
   */
  attach(ptId: number, opts?: { pasid?: number }): number {
    const op = 'attach';
    const o = options(op, opts, ['pasid'] as const);
    const state = this.boundState(op);
    const pasid = this.checkPasid(op, state, o.pasid);
    const target = state.table.get(op, id(op, 'ptId', ptId));
    if (!(target instanceof Ioas) && !(target instanceof HwptPaging) && !(target instanceof HwptUser)) {
      fail('EINVAL', op, `object ${target.id} is a ${target.type}, expected an IOAS or a HWPT`);
    }
    if (target instanceof Ioas && pasid !== abi.NO_PASID) {
      fail('EINVAL', op, 'a PASID needs a HWPT allocated with { pasid: true }, not an IOAS (its auto HWPT is not PASID-capable)');
    }
    if (!(target instanceof Ioas)) this.checkCompat(op, pasid, target);
    const old = this.attached.get(pasid);
    if (old === target) return old.id;

    // Build everything that can fail before changing anything visible.
    let hwpt: AnyHwpt | undefined = target instanceof Ioas ? undefined : target;
    let madeAuto = false;
    if (target instanceof Ioas) {
      hwpt = [...target.hwpts].find((h) => h.flags.auto);
      // Checked before an auto HWPT is made, so that a refusal leaves no HWPT behind.
      this.checkCompat(op, pasid, hwpt ?? { id: 0, flags: AUTO_FLAGS });
      if (!hwpt) {
        hwpt = state.table.create(op, () => HwptPaging.create(op, state, target, AUTO_FLAGS));
        madeAuto = true;
      }
    }
    const h = hwpt!;
    // The IOAS the RID's reserved regions go to (none for tables over guest-physical addresses).
    const newIoas = h.ioas;
    const reserveNew = pasid === abi.NO_PASID && this.reservedIn !== newIoas;
    try {
      if (reserveNew && newIoas) newIoas.iopt.addReserved(op, this, this.caps.reservedRegions);
      try {
        this.program(op, pasid, h.domain);
      } catch (e) {
        if (reserveNew && newIoas) newIoas.iopt.removeReserved(this);
        throw e;
      }
    } catch (e) {
      if (madeAuto) state.table.remove(h);
      throw e;
    }
    if (reserveNew) {
      this.reservedIn?.iopt.removeReserved(this);
      this.reservedIn = h.ioas;
    }
    h.users++;
    this.attached.set(pasid, h);
    if (pasid !== abi.NO_PASID && !old) this.engine.pasids.use(pasid, 1);
    if (old) {
      old.faultQueue?.detached(this, pasid, old); // replace answers its pending page requests INVALID
      this.dropAttachment(state, old);
    }
    return h.id;
  }

  /**
   * Blocks DMA from the RID, or from `pasid`; succeeds when nothing is attached.
   * @throws EINVAL not bound or bad PASID value.
   */
  detach(opts?: { pasid?: number }): void {
    const op = 'detach';
    const o = options(op, opts, ['pasid'] as const);
    const state = this.boundState(op);
    const pasid = o.pasid === undefined ? abi.NO_PASID : int(op, 'pasid', o.pasid, 0, 2 ** abi.PASID_BITS - 1);
    this.detachPasid(state, pasid);
  }

  /** Detaches everything (PASIDs first, then the RID) and leaves the FD. @throws EINVAL not bound. */
  unbind(): void {
    this.unbindFrom(this.boundState('unbind'));
  }

  /** @internal FD close: unbinding never fails. */
  unbindFrom(state: FdState): void {
    for (const pasid of [...this.attached.keys()].sort((a, b) => b - a)) this.detachPasid(state, pasid);
    const { obj } = this.binding!;
    obj.users = 0;
    state.table.remove(obj);
    state.devices.delete(this);
    this.binding = undefined;
  }

  private boundState(op: string): FdState {
    if (!this.binding) return fail('EINVAL', op, `device ${this.bdf} is not bound to an ioasid FD`);
    this.binding.state.checkOpen(op);
    return this.binding.state;
  }

  private checkPasid(op: string, state: FdState, value: unknown): number {
    if (value === undefined) return abi.NO_PASID;
    const pasid = int(op, 'pasid', value, 0, 2 ** abi.PASID_BITS - 1);
    if (pasid === abi.NO_PASID) return pasid;
    if (this.caps.pasidBits === 0) fail('EINVAL', op, `device ${this.bdf} does not support PASIDs`);
    if (pasid >= 2 ** this.caps.pasidBits) fail('EINVAL', op, `pasid ${pasid} exceeds the device's ${this.caps.pasidBits}-bit PASID width`);
    if (this.engine.pasids.owner(pasid) !== state) {
      fail('EPERM', op, `PASID ${pasid} was not allocated by the FD this device is bound to`);
    }
    return pasid;
  }

  /** iommufd_hwpt_pasid_compat: PASIDs need PASID-capable HWPTs on both the PASID and the RID. */
  private checkCompat(op: string, pasid: number, hwpt: Pick<HwptPaging, 'id' | 'flags'>): void {
    if (hwpt.flags.dirtyTracking && !this.caps.dirty) fail('EINVAL', op, `device ${this.bdf} cannot attach to dirty-tracking HWPT ${hwpt.id}: it has no dirty-tracking support`);
    if (pasid !== abi.NO_PASID) {
      if (!hwpt.flags.pasid) fail('EINVAL', op, `HWPT ${hwpt.id} was not allocated with { pasid: true }`);
      const rid = this.attached.get(abi.NO_PASID);
      if (rid && !rid.flags.pasid) fail('EINVAL', op, `the RID is attached to HWPT ${rid.id}, which is not PASID-capable`);
    } else if (!hwpt.flags.pasid && [...this.attached.keys()].some((p) => p !== abi.NO_PASID)) {
      fail('EINVAL', op, 'PASIDs are attached: the RID needs a PASID-capable HWPT');
    }
  }

  /** Points the core's context for (rid, pasid) at `domain` (0 = blocked). @throws ENOMEM. */
  private program(op: string, pasid: number, domain: number): void {
    this.engine.setContext(op, this.rid, pasid, domain);
  }

  private detachPasid(state: FdState, pasid: number): void {
    const hwpt = this.attached.get(pasid);
    if (!hwpt) return;
    this.program('detach', pasid, 0);
    this.attached.delete(pasid);
    if (pasid === abi.NO_PASID) {
      this.reservedIn?.iopt.removeReserved(this);
      this.reservedIn = undefined;
    } else {
      this.engine.pasids.use(pasid, -1);
    }
    hwpt.faultQueue?.detached(this, pasid, hwpt);
    this.dropAttachment(state, hwpt);
  }

  private dropAttachment(state: FdState, hwpt: AnyHwpt): void {
    hwpt.users--;
    if (hwpt.flags.auto && hwpt.users === 0) state.table.remove(hwpt);
  }
}
