/**
 * Which ioasid device stands for each guest device_id. The model owns one FD. A device_id that is
 * the requester ID of a device of the Iommu (`iommu.device(rid)`: the emulator's PCI functions) is
 * that device, bound to the model's FD on first use and kept bound. For any other device_id (24-bit
 * IDs have no requester ID; IDs the emulator has no device for) the model adds a device of its own
 * the first time a valid device context needs one. Model-added devices are pooled: `release`
 * returns one for reuse by another device_id, so their number is bounded by the device contexts in
 * use, not by the IDs a guest ever touched; they take requester IDs from the top of the bus range
 * down, skipping the emulator's.
 * @module
 */
import { IommuError, type DeviceFd, type Iommu, type IommuFd } from '../../api';

/** A guest device_id's ioasid device, bound to the model's FD. */
export interface Binding {
  readonly dev: DeviceFd;
  /** The device's ID in the model's FD. */
  readonly devId: number;
  readonly rid: number;
  /** Added by the model (returned to the pool on release) rather than the emulator's. */
  readonly owned: boolean;
}

export class DeviceBindings {
  /** The emulator's devices this model has bound (kept bound; detached while unused). */
  private readonly emulatorBound = new Map<number, Binding>();
  private readonly bound = new Map<number, Binding>();
  private readonly pool: Binding[] = [];
  /** Requester IDs of the devices the model added. */
  private readonly ownedRids = new Set<number>();
  /** Next requester ID to try for a model-added device (counts down from the top of the bus range). */
  private nextRid = 0xffff;

  /** @param pri model-added devices support PCIe page requests (the IOMMU has ATS). */
  constructor(private readonly iommu: Iommu, private readonly fd: IommuFd, private readonly pri: boolean) {}

  /** The binding of `devid`, if it has one. */
  get(devid: number): Binding | undefined {
    return this.bound.get(devid);
  }

  /** The device_ids of the emulator's devices (their requester IDs). */
  emulatorIds(): number[] {
    return this.iommu.devices().map((d) => d.rid).filter((rid) => !this.ownedRids.has(rid));
  }

  /** The guest device_id bound to the FD device `devId`, if any. */
  devidOf(devId: number): number | undefined {
    for (const [devid, b] of this.bound) if (b.devId === devId) return devid;
    return undefined;
  }

  /**
   * The binding of `devid`, binding or adding a device when it has none; undefined when none can be
   * had (no requester ID left, or the emulator's device is bound to another FD).
   */
  acquire(devid: number): Binding | undefined {
    const have = this.bound.get(devid);
    if (have) return have;
    let b: Binding | undefined;
    const emulator = devid <= 0xffff && !this.ownedRids.has(devid) ? this.iommu.device(devid) : undefined;
    if (emulator) {
      b = this.emulatorBound.get(devid);
      if (!b) {
        try {
          b = { dev: emulator, devId: emulator.bind(this.fd), rid: devid, owned: false };
        } catch (e) {
          if (!(e instanceof IommuError)) throw e;
          return undefined; // the emulator gave this device to another FD
        }
        this.emulatorBound.set(devid, b);
      }
    } else {
      b = this.pool.pop() ?? this.addDevice();
    }
    if (b) this.bound.set(devid, b);
    return b;
  }

  /** Gives `devid`'s binding up (its attachments already detached): pooled when model-added. */
  release(devid: number): void {
    const b = this.bound.get(devid);
    if (!b) return;
    this.bound.delete(devid);
    if (b.owned) this.pool.push(b);
  }

  private addDevice(): Binding | undefined {
    while (this.nextRid >= 0) {
      const rid = this.nextRid--;
      if (this.iommu.device(rid)) continue;
      const bdf = `${(rid >> 8).toString(16).padStart(2, '0')}:${((rid >> 3) & 31).toString(16).padStart(2, '0')}.${rid & 7}`;
      try {
        const dev = this.iommu.addDevice({ bdf, pri: this.pri });
        this.ownedRids.add(rid);
        return { dev, devId: dev.bind(this.fd), rid, owned: true };
      } catch (e) {
        if (!(e instanceof IommuError)) throw e;
        return undefined; // out of memory for another device
      }
    }
    return undefined;
  }
}
