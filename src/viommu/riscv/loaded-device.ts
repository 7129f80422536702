/**
 * One device_id whose device context the model has loaded: the ioasid device standing for it, the
 * HWPTs built from its context (the G stage once, the RID's first stage, one per process context)
 * and their attachments (the RID, and a PASID per process_id). A context whose words did not change
 * keeps its HWPTs, and so its cached translations, across a reload: the IOTLB is tagged by address
 * space, not by device (specification 1.0 section 4.1.3, IODIR does not invalidate the IOTLB).
 * @module
 */
import { Access, NO_PASID, type Iommu, type IommuFd, type Translation } from '../../api';
import { allocFirstStage, allocGStage, type AddressSpace, type SpaceConfig } from './address-space';
import type { Binding } from './device-bindings';
import type { DeviceContext } from './device-context';
import type { ProcessContext } from './process-context';

/** What a request is translated by: the identity (both stages Bare), or an address space at (rid, pasid). */
export type Target = { kind: 'identity'; pasid: number } | { kind: 'space'; space: AddressSpace; pasid: number; owned: boolean };

/** A process context the model has loaded, and its target. */
export interface LoadedProcess {
  pc: ProcessContext;
  target: Target;
  /** Still valid in the IOMMU's PC cache (false after IODIR names it). */
  cached: boolean;
}

/** The model's shared pieces a loaded device uses. */
export interface DeviceEnv {
  iommu: Iommu;
  fd: IommuFd;
  cfg: SpaceConfig;
  /** Live address spaces, for IOTINVAL. */
  spaces: Set<AddressSpace>;
  /** The ioasid PASID standing for a guest process_id (allocated on first use). */
  pasidOf(pid: number): number;
  /** The PASID on which each device's G stage is attached, to translate PDT addresses. */
  probePasid(): number;
  /** A PASID-capable HWPT over the identity mapping of guest RAM. */
  identityHwpt(devId: number): number;
  /** The ioasid fault queue page requests go to (contexts with EN_PRI of PRI devices). */
  faultQueueId(): number;
}

export class LoadedDevice {
  /** Still valid in the IOMMU's DC cache (false after IODIR or a `ddtp` write names it). */
  cached = true;
  readonly processes = new Map<number, LoadedProcess>();
  private parentId: number | undefined;
  private parentSpace: AddressSpace | undefined;
  private ridTarget: Target | undefined;
  private probing = false;

  constructor(readonly binding: Binding, readonly dc: DeviceContext, private readonly env: DeviceEnv) {}

  /** The target of requests without a process_id (first stage from the DC's `iosatp`, none with PDTV). */
  ridTargetFor(): Target {
    const dc = this.dc;
    return (this.ridTarget ??= this.build(dc.pdtv ? 0 : dc.fscMode, dc.fscRoot, false, dc.pscid, NO_PASID));
  }

  /** Loads (or reuses, when unchanged) the process context of `pid`. */
  loadProcess(pid: number, pc: ProcessContext): LoadedProcess {
    const old = this.processes.get(pid);
    if (old && old.pc.ta === pc.ta && old.pc.fsc === pc.fsc) {
      old.cached = true;
      return old;
    }
    if (old) this.dropTarget(old.target);
    const p = { pc, target: this.build(pc.mode, pc.root, pc.sum, pc.pscid, this.env.pasidOf(pid)), cached: true };
    this.processes.set(pid, p);
    return p;
  }

  /** Drops the process context of `pid` (its PASID detached, its first-stage HWPT destroyed). */
  dropProcess(pid: number): void {
    const p = this.processes.get(pid);
    if (!p) return;
    this.processes.delete(pid);
    this.dropTarget(p.target);
  }

  /**
   * Translates a PDT entry's guest-physical address through the G stage as an implicit read (User);
   * undefined without a G stage (the address is then physical).
   */
  translateGpa(gpa: bigint): Translation | undefined {
    const parent = this.parent();
    if (parent === undefined) return undefined;
    const pasid = this.env.probePasid();
    if (!this.probing) {
      this.binding.dev.attach(parent, { pasid });
      this.probing = true;
    }
    return this.env.iommu.translate(this.binding.rid, pasid, gpa, Access.Read);
  }

  /** Detaches everything and destroys the HWPTs (the binding is the caller's to release). */
  dispose(): void {
    for (const p of this.processes.values()) this.dropTarget(p.target);
    this.processes.clear();
    if (this.ridTarget) this.dropTarget(this.ridTarget);
    this.ridTarget = undefined;
    if (this.probing) this.binding.dev.detach({ pasid: this.env.probePasid() });
    this.probing = false;
    if (this.parentId !== undefined) {
      if (this.parentSpace) this.env.spaces.delete(this.parentSpace);
      this.env.fd.destroy(this.parentId);
    }
    this.parentId = this.parentSpace = undefined;
  }

  /** The G-stage HWPT (allocated on first use), undefined when the G stage is Bare. */
  private parent(): number | undefined {
    const dc = this.dc;
    if (dc.gMode === 0) return undefined;
    if (this.parentId === undefined) {
      this.parentId = allocGStage(this.env.fd, this.binding.devId, dc.gMode, dc.gRoot, dc.gade, this.env.cfg);
      // The parent is an address space of its own: GVMA names it, and G-only requests use it.
      this.parentSpace = { hwptId: this.parentId, gv: true, gscid: dc.gscid, pscv: false, pscid: 0, parentId: this.parentId };
      this.env.spaces.add(this.parentSpace);
    }
    return this.parentId;
  }

  private attach(hwptId: number, pasid: number): void {
    this.binding.dev.attach(hwptId, pasid === NO_PASID ? undefined : { pasid });
  }

  private build(sMode: number, sRoot: bigint, sum: boolean, pscid: number, pasid: number): Target {
    const dc = this.dc;
    const parentId = this.parent();
    if (sMode === 0 && parentId === undefined) {
      this.attach(this.env.identityHwpt(this.binding.devId), pasid);
      return { kind: 'identity', pasid };
    }
    if (sMode === 0) {
      this.attach(parentId!, pasid);
      return { kind: 'space', space: this.parentSpace!, pasid, owned: false };
    }
    // Page requests need a first stage: iommufd puts no fault queue on a nest parent.
    const faultId = dc.enPri && this.binding.dev.pri ? this.env.faultQueueId() : undefined;
    const hwptId = allocFirstStage(this.env.fd, this.binding.devId, sMode, sRoot, dc.sade, sum, parentId, faultId, this.env.cfg);
    try {
      this.attach(hwptId, pasid);
    } catch (e) {
      this.env.fd.destroy(hwptId);
      throw e;
    }
    const space: AddressSpace = { hwptId, gv: parentId !== undefined, gscid: dc.gscid, pscv: true, pscid, parentId };
    this.env.spaces.add(space);
    return { kind: 'space', space, pasid, owned: true };
  }

  private dropTarget(t: Target): void {
    this.binding.dev.detach(t.pasid === NO_PASID ? undefined : { pasid: t.pasid });
    if (t.kind === 'space' && t.owned) {
      this.env.spaces.delete(t.space);
      this.env.fd.destroy(t.space.hwptId);
    }
  }
}
