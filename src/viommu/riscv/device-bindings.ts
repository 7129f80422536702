/**
 * Which ioasid device stands for each guest device_id. The model owns one FD; a device the emulator
 * handed over (`devices` option: device_id = its requester ID) is bound to it on first use; for any
 * other device_id (24-bit IDs have no requester ID; a device the emulator did not add) the model
 * adds a device of its own the first time a device context needs one. Model-added devices are
 * pooled: `release` returns one for reuse by another device_id, so the number of ioasid devices is
 * bounded by the number of device contexts in use, not by the IDs a guest ever touched.
 * @module
 */
import { IommuError, type DeviceFd, type Iommu, type IommuFd } from '../../api';

/** A guest device_id's ioasid device, bound to the model's FD. */
export interface Binding {
  readonly dev: DeviceFd;
  /** The device's ID in the model's FD. */
  readonly devId: number;
  readonly rid: number;
  /** Added by the model (returned to the pool on release) rather than handed over. */
  readonly owned: boolean;
}

export class DeviceBindings {
  private readonly given = new Map<number, DeviceFd>();
  /** Handed-over devices stay bound to the model's FD once bound (detached while unused). */
  private readonly givenBound = new Map<number, Binding>();
  private readonly bound = new Map<number, Binding>();
  private readonly pool: Binding[] = [];
  /** Next requester ID to try for a model-added device (counts down from the top of the bus space). */
  private nextRid = 0xffff;

  /** @param pri model-added devices support PCIe page requests (the IOMMU has ATS). */
  constructor(private readonly iommu: Iommu, private readonly fd: IommuFd, devices: readonly DeviceFd[], private readonly pri: boolean) {
    for (const d of devices) this.given.set(d.rid, d);
  }

  /** The binding of `devid`, if it has one. */
  get(devid: number): Binding | undefined {
    return this.bound.get(devid);
  }

  /** The device_ids of the devices the emulator handed over (their requester IDs). */
  givenIds(): number[] {
    return [...this.given.keys()];
  }

  /** The guest device_id bound to the FD device `devId`, if any. */
  devidOf(devId: number): number | undefined {
    for (const [devid, b] of this.bound) if (b.devId === devId) return devid;
    return undefined;
  }

  /** The binding of `devid`, binding or adding a device when it has none; undefined when none can be made. */
  acquire(devid: number): Binding | undefined {
    const have = this.bound.get(devid);
    if (have) return have;
    let b: Binding | undefined;
    const given = this.given.get(devid);
    if (given) {
      b = this.givenBound.get(devid);
      if (!b) this.givenBound.set(devid, (b = { dev: given, devId: given.bind(this.fd), rid: given.rid, owned: false }));
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
      if (this.given.has(rid)) continue;
      const bdf = `${(rid >> 8).toString(16).padStart(2, '0')}:${((rid >> 3) & 31).toString(16).padStart(2, '0')}.${rid & 7}`;
      try {
        const dev = this.iommu.addDevice({ bdf, pri: this.pri });
        return { dev, devId: dev.bind(this.fd), rid, owned: true };
      } catch (e) {
        // EEXIST: the emulator uses this requester ID; try the next one. Anything else: give up.
        if (!(e instanceof IommuError) || e.errno !== 'EEXIST') return undefined;
      }
    }
    return undefined;
  }
}
