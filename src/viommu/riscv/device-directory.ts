/**
 * The IOMMU's device-context and process-context caches, realised as ioasid objects: a loaded
 * device_id has a `LoadedDevice` (its ioasid device, HWPTs and attachments). The rules of
 * specification 1.0 section 4.1.3: a cached context is used until IODIR (or a `ddtp` write) names
 * it; a failed lookup is never cached. Beyond the specification, a device whose context was named
 * is re-read at once (a DDT read has no side effect) and torn down when it became invalid or
 * changed, so DMA that bypasses the model (worker threads translating through the engine) stops at
 * the same command that stops the model's own requests.
 * @module
 */
import { IommuError, type FaultQueueFd, type Iommu, type IommuFd } from '../../api';
import type { AddressSpace, SpaceConfig } from './address-space';
import { CAUSE, DDTP_1LVL } from './constants';
import { deviceIdFits, walkDdt, type DdtShape } from './ddt';
import type { DcConfig, DeviceContext } from './device-context';
import { DeviceBindings } from './device-bindings';
import type { GuestMemory } from './guest-memory';
import { LoadedDevice, type DeviceEnv } from './loaded-device';
import { walkPdt } from './process-context';

export class DeviceDirectory {
  readonly devices = new Map<number, LoadedDevice>();
  readonly spaces = new Set<AddressSpace>();
  private readonly bindings: DeviceBindings;
  private readonly env: DeviceEnv;
  private readonly pasids = new Map<number, number>();
  private probe: number | undefined;
  private identity: number | undefined;
  /** The ioasid fault queue of page requests (allocated on first use). */
  pageRequests: { id: number; fd: FaultQueueFd } | undefined;

  constructor(readonly iommu: Iommu, readonly fd: IommuFd, private readonly mem: GuestMemory, cfg: SpaceConfig, private readonly dcConfig: DcConfig, pri: boolean) {
    this.bindings = new DeviceBindings(iommu, fd, pri);
    this.env = {
      iommu, fd, cfg, spaces: this.spaces,
      pasidOf: (pid) => this.pasidOf(pid),
      probePasid: () => (this.probe ??= fd.pasidAlloc()),
      identityHwpt: (devId) => this.identityHwpt(devId),
      faultQueueId: () => (this.pageRequests ??= fd.faultQueueAlloc()).id,
    };
  }

  /**
   * The loaded device of `devid` (walking the DDT when it is not cached), or the fault cause.
   * `shape` is the current `ddtp` (a DDT mode).
   */
  load(devid: number, shape: DdtShape): LoadedDevice | number {
    const d = this.devices.get(devid);
    if (d?.cached) return d;
    const dc = walkDdt(this.mem, shape, devid, this.dcConfig);
    if (typeof dc === 'number') {
      if (d) this.unload(devid);
      return dc;
    }
    if (d && sameWords(d.dc.words, dc.words)) {
      d.cached = true;
      return d;
    }
    if (d) this.unload(devid);
    const binding = this.bindings.acquire(devid);
    if (!binding) return CAUSE.internalError;
    const fresh = new LoadedDevice(binding, dc, this.env);
    this.devices.set(devid, fresh);
    return fresh;
  }

  /**
   * IODIR.INVAL_DDT / a `ddtp` write: marks the contexts of `devid` (every device when undefined)
   * stale and re-checks them against memory now, dropping those no longer valid or changed.
   *
   * A device it names that has a valid context is loaded at once and its RID attached (a DDT read
   * has no side effect), still marked stale so that the next request reads the DDT again as the
   * specification's cache would: so DMA that bypasses the model (an emulator's device threads)
   * works from the command that published the context — Linux always sends one — without waiting
   * for a first request through the model. "Every device" names the loaded ones and the emulator's.
   */
  invalidate(devid: number | undefined, shape: DdtShape | undefined): void {
    const ids = devid === undefined ? new Set([...this.devices.keys(), ...this.bindings.emulatorIds()]) : [devid];
    const ddt = shape && shape.mode >= DDTP_1LVL ? shape : undefined;
    for (const id of ids) {
      const d = this.devices.get(id);
      const now = ddt && deviceIdFits(ddt, id) ? walkDdt(this.mem, ddt, id, this.dcConfig) : undefined;
      if (d) {
        d.cached = false;
        for (const pid of [...d.processes.keys()]) this.invalidateProcess(id, pid);
        if (typeof now !== 'object' || !sameWords(d.dc.words, now.words)) this.unload(id);
      }
      if (typeof now === 'object' && !this.devices.has(id)) this.preload(id, now);
    }
  }

  /** Loads a checked context ahead of any request (see `invalidate`); pressure leaves it for later. */
  private preload(devid: number, dc: DeviceContext): void {
    const binding = this.bindings.acquire(devid);
    if (!binding) return;
    const d = new LoadedDevice(binding, dc, this.env);
    d.cached = false;
    this.devices.set(devid, d);
    try {
      d.ridTargetFor();
    } catch (e) {
      if (!(e instanceof IommuError)) throw e;
      this.unload(devid);
    }
  }

  /**
   * IODIR.INVAL_PDT: the process context (`devid`, `pid`) is stale. Without a G stage the PDT is
   * re-read at once (plain reads) and a context no longer valid or changed is dropped, so device
   * threads lose its PASID at this command; with a G stage the re-read (which may set A/D bits in
   * G-stage entries) waits for the next request through the model.
   */
  invalidateProcess(devid: number, pid: number): void {
    const d = this.devices.get(devid);
    const p = d?.processes.get(pid);
    if (!d || !p) return;
    p.cached = false;
    if (d.dc.gMode !== 0) return;
    const now = walkPdt(this.mem, d.dc.fscMode, d.dc.fscRoot, pid, this.dcConfig.capabilities, (gpa) => gpa);
    if ('cause' in now || now.ta !== p.pc.ta || now.fsc !== p.pc.fsc) d.dropProcess(pid);
  }

  /** Drops every loaded device (resource pressure: dropping cached contexts is always legal). */
  unloadAll(): void {
    for (const id of [...this.devices.keys()]) this.unload(id);
  }

  /** The guest device_id of an FD device ID (from a page request). */
  devidOf(devId: number): number | undefined {
    return this.bindings.devidOf(devId);
  }

  /** The guest process_id an ioasid PASID stands for. */
  pidOf(pasid: number): number | undefined {
    for (const [pid, p] of this.pasids) if (p === pasid) return pid;
    return undefined;
  }

  private unload(devid: number): void {
    const d = this.devices.get(devid);
    this.devices.delete(devid);
    try {
      d?.dispose();
    } catch (e) {
      // Teardown of objects this model created cannot fail unless the FD was closed under it.
      if (!(e instanceof IommuError)) throw e;
    }
    this.bindings.release(devid);
  }

  private pasidOf(pid: number): number {
    let p = this.pasids.get(pid);
    if (p === undefined) {
      p = this.fd.pasidAlloc();
      this.pasids.set(pid, p);
    }
    return p;
  }

  private identityHwpt(devId: number): number {
    if (this.identity === undefined) {
      const ioas = this.fd.ioasAlloc();
      for (const w of this.iommu.ramWindows()) this.fd.ioasMap(ioas, { iova: w.base, length: w.bytes.byteLength, phys: w.base, read: true, write: true });
      this.identity = this.fd.hwptAlloc({ devId, ptId: ioas, pasid: true });
    }
    return this.identity;
  }
}

function sameWords(a: readonly bigint[], b: readonly bigint[]): boolean {
  return a.length === b.length && a.every((w, i) => w === b[i]);
}
