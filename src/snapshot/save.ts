/**
 * Capture of the object graph and header of a snapshot (schema.ts): every open FD with its object
 * table, PASIDs and bound devices, every device with its caps, binding, attachments and pending
 * page responses, and the engine-wide allocators. Owner thread, between control calls; reads only.
 * @module
 */
import * as abi from '../../assembly/abi';
import { BoundDevice, DeviceFd } from '../iommufd/device';
import type { Engine } from '../iommufd/fd-state';
import { fail } from '../base/errno';
import { FaultQueue, groupIndex, type Request } from '../iommufd/fault-queue';
import type { FdState } from '../iommufd/fd-state';
import { limitsJson } from '../iommufd/fd-limits';
import { HwptPaging } from '../iommufd/hwpt';
import { HwptUser } from '../iommufd/hwpt-user';
import type { IoPagetable } from '../iommufd/io-pagetable';
import type { IoRange } from '../iommufd/io-range';
import { Ioas } from '../iommufd/ioas';
import { IoasAccess } from '../iommufd/access';
import type { FdObject } from '../iommufd/object-table';
import { hex } from './json';
import type { DeviceJson, FdJson, GraphJson, HeaderJson, IoptJson, ObjectJson, OwnerJson, RangeJson, RequestJson } from './schema';

const OP = 'snapshot';
const rangeJson = (r: IoRange): RangeJson => [hex(r.start), hex(r.last)];
const ids = (objects: Iterable<unknown>): number[] => [...objects].map((o) => (o as FdObject).id);

/** The header: the engine's options (as `Iommu.create` takes them), its layout and sizes. */
export function captureHeader(engine: Engine, ramSaved: boolean): HeaderJson {
  const l = engine.layout;
  const { guards: _guards, ...layout } = l;
  const foreign = engine.foreignMemory;
  const ram = engine.ram.windows.map((w) => ({
    base: hex(w.base), bytes: w.bytes, ...(w.buffer ? { external: true as const } : foreign ? { offset: w.offset } : {}),
  }));
  return {
    options: {
      addressWidth: engine.addressWidth, pasidBits: engine.pasidBits, iotlbEntries: l.iotlbSets * abi.TLB_WAYS,
      maxMemoryBytes: foreign ? 0 : l.maximumPages * 65536, translators: l.slotCount, maxDomains: l.domainCount,
      ram: ram.length > 0 ? ram : null,
      region: foreign ? { offset: l.origin, bytes: l.poolLimit - l.origin } : null,
    },
    ramSaved,
    layout,
    memoryBytes: foreign ? 0 : engine.core.memory.buffer.byteLength,
    poolTop: engine.core.ctrl(abi.CTRL_POOL_TOP),
    shared: engine.shared,
  };
}

/** The graph: open FDs in open order, devices in the order they were added, allocators. */
export function captureGraph(engine: Engine): GraphJson {
  const open = [...engine.fds].filter((s) => !s.closed);
  const fdIndex = new Map<FdState, number>(open.map((s, i) => [s, i]));
  const others = new Map<object, number>();
  const owner = (o: object): OwnerJson => {
    if (o instanceof HwptPaging) return ['hwpt', o.id];
    if (o instanceof DeviceFd) return ['device', o.rid];
    if (o instanceof IoasAccess) return ['access', o.id];
    if (!others.has(o)) others.set(o, others.size + 1);
    return ['other', others.get(o)!];
  };
  const domains = engine.domainAllocator();
  return {
    domains,
    pasidHint: engine.pasids.allocHint,
    rings: [...engine.translatorRings.values(), ...[...engine.batchBuffers].map(([ptr, pages]) => ({ ptr, pages }))].map((r) => ({ ptr: r.ptr, pages: r.pages })),
    devices: [...engine.devices.values()].map((dev) => deviceJson(dev, fdIndex)),
    fds: open.map((s) => fdJson(s, owner)),
  };
}

function deviceJson(dev: DeviceFd, fdIndex: Map<FdState, number>): DeviceJson {
  const s = dev.exportState();
  return {
    bdf: s.caps.bdf, rid: s.caps.rid, pasidBits: s.caps.pasidBits, pri: s.caps.pri, dirty: s.caps.dirty,
    reservedRegions: s.caps.reservedRegions.map(rangeJson),
    fd: s.binding ? fdIndex.get(s.binding.state)! : -1,
    attached: [...s.attached].map(([pasid, hwpt]) => [pasid, hwpt.id]),
    reservedIn: s.reservedIn?.id ?? 0,
    responses: s.responses.map((r) => ({ pasidValid: r.pasidValid, pasid: r.pasid, grpid: r.grpid, addr: hex(r.addr), code: r.code })),
    group: groupIndex(dev),
  };
}

function fdJson(state: FdState, owner: (o: object) => OwnerJson): FdJson {
  const { next, freed } = state.table.idState();
  return {
    next, freed,
    pasids: state.engine.pasids.ownedBy(state),
    limits: limitsJson(state.limits),
    devices: [...state.devices].map((d) => d.rid),
    objects: state.table.objects().map((o) => objectJson(o, owner)),
  };
}

function objectJson(o: FdObject, owner: (o: object) => OwnerJson): ObjectJson {
  const common = { id: o.id, users: o.users };
  if (o instanceof Ioas) return { ...common, type: 'ioas', iopt: ioptJson(o.iopt, owner), hwpts: ids(o.hwpts), accesses: ids(o.accesses) };
  if (o instanceof HwptPaging) {
    return {
      ...common, type: 'hwpt-paging', ioas: o.ioas.id, domain: o.domain, flags: { ...o.flags }, fault: o.faultQueue?.id ?? 0,
      children: ids(o.children), dirtyEnabled: o.dirtyEnabled,
    };
  }
  if (o instanceof HwptUser) {
    return {
      ...common, type: o.type, domain: o.domain, flags: { ...o.flags }, format: o.format, root: hex(o.root),
      parent: o.parent?.id ?? 0, fault: o.faultQueue?.id ?? 0, children: ids(o.children),
    };
  }
  if (o instanceof BoundDevice) return { ...common, type: 'device', rid: o.device.rid };
  if (o instanceof IoasAccess) return { ...common, type: 'access', ioas: o.ioas.id, pinning: o.pinning, pins: o.pinned().map(rangeJson) };
  if (o instanceof FaultQueue) {
    const q = o.exportState();
    return { ...common, type: 'fault', queued: q.queued.map(requestJson), pending: q.pending.map(requestJson), nextCookie: q.nextCookie, fdOpen: q.fdOpen, hwpts: ids(q.hwpts) };
  }
  return fail('EOPNOTSUPP', OP, `objects of type '${o.type}' cannot be saved by this engine version`);
}

function ioptJson(iopt: IoPagetable, owner: (o: object) => OwnerJson): IoptJson {
  const s = iopt.exportState();
  return {
    areas: s.areas.map((a) => [hex(a.iova), hex(a.last), hex(a.phys), a.read, a.write]),
    allowed: s.allowed.map(rangeJson),
    domains: s.domains.map((d) => {
      if (!(d.sink instanceof HwptPaging)) fail('EOPNOTSUPP', OP, 'an IOAS has a domain that is not a HWPT_PAGING');
      return [d.sink.id, hex(d.pageSize)];
    }),
    reserved: s.reserved.map(([o, ranges]) => [owner(o), ranges.map(rangeJson)]),
    alignments: s.alignments.map(([o, a]) => [owner(o), hex(a)]),
  };
}

function requestJson(r: Request): RequestJson {
  return { rid: r.dev.rid, hwpt: r.hwpt.id, pasid: r.pasid, grpid: r.grpid, perm: r.perm, addr: hex(r.addr), cookie: r.cookie };
}
