/**
 * Rebuilds the object graph of a snapshot (schema.ts `GraphJson`) over a restored engine whose
 * memory already holds the image: allocators, devices (caps first, bindings and attachments once
 * their FDs exist), then each FD (load-fd.ts), then a cross-check of the objects against the image
 * (verify.ts). The result is what `Iommu.restore` returns besides the engine.
 * @module
 */
import * as abi from '../../assembly/abi';
import type { IoasAccess, UnmapCallback } from '../iommufd/access';
import { BoundDevice, DeviceFd } from '../iommufd/device';
import type { Engine } from '../iommufd/fd-state';
import { setGroupIndex, type FaultQueueFd, type PageResponse } from '../iommufd/fault-queue';
import { fdState, type FdState } from '../iommufd/fd-state';
import { HwptPaging } from '../iommufd/hwpt';
import { HwptUser } from '../iommufd/hwpt-user';
import { Ioas } from '../iommufd/ioas';
import { IommuFd } from '../iommufd/iommufd';
import { NO_LIMITS, type ResolvedLimits } from '../iommufd/fd-limits';
import { arr, bad, bool, list, obj, OP, range, str, u64, uint } from './json';
import { ridOfBdf } from '../base/bdf';
import { loadFd } from './load-fd';
import { checkAgainstImage } from './verify';
import { checkMemory } from './verify-memory';

/** Options of `Iommu.restore`. */
export interface RestoreOptions {
  /**
   * Share the restored engine's memory with workers. Default: as the snapshotted engine — an
   * unshared one stays unshared, a shared one is shared where SharedArrayBuffer is usable.
   */
  shared?: boolean;
  /**
   * The `onUnmap` callback of each restored access that had one (a pinning access), by its FD's
   * index in `Restored.fds` and its ID. Without one (no option, or it returns undefined) the access
   * keeps its pins and page alignment but nobody is asked to unpin: an unmap covering one of its
   * pins fails EDEADLOCK until `access.unpin` drops it.
   */
  onUnmap?: (fdIndex: number, accessId: number) => UnmapCallback | undefined;
  /**
   * The emulator's memory, for a snapshot of an engine that lived in a region of it
   * (`Iommu.create({ memory, region })`): the engine is restored into the same region.
   */
  memory?: WebAssembly.Memory;
  /** The buffers of RAM windows that were in buffers (`{ base, buffer, offset? }`, by base). */
  ram?: {
    /** Guest-physical address of the window (as saved). */
    base: bigint | number;
    /** The buffer that holds it now. */
    buffer: ArrayBuffer | SharedArrayBuffer;
    /** Byte offset of the window in `buffer` (default 0). */
    offset?: number;
  }[];
}

/** The restored objects, new and independent of the snapshotted engine's, for re-wiring an emulator. */
export interface RestoredObjects {
  /** The ioasid FDs that were open, in the order they were opened (closed ones are left out). */
  fds: IommuFd[];
  /** Every device (platform side), by `dev.bdf`. */
  devices: Map<string, DeviceFd>;
  /** Per FD (same index as `fds`): the fault FD of each FAULT object, by the object's ID (closed ones included, `closed` true). */
  faultFds: Map<number, FaultQueueFd>[];
  /** Per FD (same index as `fds`): the access objects, by ID. */
  accesses: Map<number, IoasAccess>[];
}

/** An access restored without a callback: nobody to ask, so pinned ranges stay pinned. */
const NOBODY: UnmapCallback = () => {};

/** The onUnmap callback of restored access `accessId` of FD `fdIndex`, from the option (or NOBODY). */
function callback(onUnmap: RestoreOptions['onUnmap'], fdIndex: number, accessId: number): UnmapCallback {
  let cb: unknown;
  try {
    cb = onUnmap?.(fdIndex, accessId);
  } catch (e) {
    bad(`options.onUnmap(${fdIndex}, ${accessId}) threw: ${e instanceof Error ? e.message : String(e)}`);
  }
  if (cb !== undefined && typeof cb !== 'function') bad(`options.onUnmap(${fdIndex}, ${accessId}): expected a function or undefined`);
  return (cb as UnmapCallback | undefined) ?? NOBODY;
}

/** Rebuilds `graph` over `engine` (made from the same snapshot's image). @throws EINVAL, Error (see load-fd.ts). */
export function rebuildGraph(engine: Engine, graph: unknown, onUnmap: RestoreOptions['onUnmap']): RestoredObjects {
  const g = obj(graph, 'graph');
  const alloc = obj(g.domains, 'graph.domains');
  engine.restoreDomainAllocator(list(alloc.free, 'graph.domains.free', (v, p) => uint(v, p)), uint(alloc.next, 'graph.domains.next'));
  const devices = list(g.devices, 'graph.devices', (v, p) => makeDevice(engine, obj(v, p), p));

  const out: RestoredObjects = { fds: [], devices: new Map(), faultFds: [], accesses: [] };
  const states: FdState[] = [];
  const boundRids: number[][] = [];
  list(g.fds, 'graph.fds', (v, p) => {
    const i = out.fds.length;
    const fd = new IommuFd(engine);
    const state = fdState(fd)!;
    const loaded = loadFd(engine, state, v, p, (accessId) => callback(onUnmap, i, accessId));
    const f = obj(v, p);
    state.limits = restoreLimits(f.limits, `${p}.limits`);
    for (const pasid of list(f.pasids, `${p}.pasids`, (x, q) => uint(x, q, engine.pasids.limit - 1, 1))) engine.pasids.alloc('restore', state, pasid);
    boundRids.push(list(f.devices, `${p}.devices`, (x, q) => uint(x, q, 0xffff)));
    out.fds.push(fd);
    out.faultFds.push(loaded.faultFds);
    out.accesses.push(loaded.accesses);
    states.push(state);
  });
  engine.pasids.allocHint = uint(g.pasidHint, 'graph.pasidHint', engine.pasids.limit, 1);

  for (const d of devices) bindDevice(engine, d, states);
  states.forEach((state, i) => {
    // FdState.devices in bind order: FD close unbinds in this order.
    for (const rid of boundRids[i]!) {
      const dev = engine.devices.get(rid);
      if (!dev || dev.exportState().binding?.state !== state || state.devices.has(dev)) bad(`graph.fds[${i}].devices: device ${rid} is not bound here, or listed twice`);
      state.devices.add(dev);
    }
    if (state.devices.size !== devices.filter((d) => d.fd === i).length) bad(`graph.fds[${i}].devices: does not list every bound device`);
    for (const o of state.table.objects()) {
      if (o instanceof BoundDevice && o.device.exportState().binding?.obj !== o) bad(`graph.fds[${i}]: device object ${o.id} is not its device's binding`);
    }
  });

  // A restored engine has no workers: their batch rings go back to the pool.
  const top = engine.core.ctrl(abi.CTRL_POOL_TOP);
  list(g.rings, 'graph.rings', (v, p) => {
    const r = obj(v, p);
    const ptr = uint(r.ptr, `${p}.ptr`);
    const pages = uint(r.pages, `${p}.pages`, 1 << 20, 1);
    if (ptr % abi.PAGE_SIZE !== 0 || ptr < engine.layout.poolBase || ptr + pages * abi.PAGE_SIZE > top) bad(`${p}: not inside the page pool`);
    if (!engine.bufferFree(ptr, pages)) bad(`${p}: overlaps space already free`);
  });
  for (const dev of engine.devices.values()) out.devices.set(dev.bdf, dev);
  checkAgainstImage(engine, states);
  checkMemory(engine, states);
  return out;
}

interface PendingDevice {
  dev: DeviceFd;
  /** The bound FD's index, -1 when not bound. */
  fd: number;
  json: Record<string, unknown>;
  path: string;
}

/** Makes the device FD of a device record (its context is already in the image). */
function makeDevice(engine: Engine, d: Record<string, unknown>, p: string): PendingDevice {
  const rid = uint(d.rid, `${p}.rid`, 0xffff);
  if (engine.devices.has(rid)) bad(`${p}.rid: requester ID ${rid} appears twice`);
  if (ridOfBdf(OP, d.bdf) !== rid) bad(`${p}.bdf: does not name requester ID ${rid}`);
  const dev = new DeviceFd(engine, {
    bdf: str(d.bdf, `${p}.bdf`), rid, pasidBits: uint(d.pasidBits, `${p}.pasidBits`, engine.pasidBits),
    pri: bool(d.pri, `${p}.pri`), dirty: bool(d.dirty, `${p}.dirty`), reservedRegions: list(d.reservedRegions, `${p}.reservedRegions`, range),
  });
  engine.devices.set(rid, dev);
  setGroupIndex(dev, uint(d.group, `${p}.group`, 511));
  return { dev, fd: uint(d.fd, `${p}.fd`, 2 ** 31, -1), json: d, path: p };
}

/** Gives a device its binding, attachments, reserved-region IOAS and undelivered page responses. */
function bindDevice(engine: Engine, { dev, fd, json: d, path: p }: PendingDevice, states: FdState[]): void {
  const responses = list(d.responses, `${p}.responses`, (v, q) => {
    const r = obj(v, q);
    const code: PageResponse['code'] = r.code === 'success' ? 'success' : r.code === 'invalid' ? 'invalid' : bad(`${q}.code: expected 'success' or 'invalid'`);
    return { pasidValid: bool(r.pasidValid, `${q}.pasidValid`), pasid: uint(r.pasid, `${q}.pasid`), grpid: uint(r.grpid, `${q}.grpid`, 511), addr: u64(r.addr, `${q}.addr`), code };
  });
  if (fd < 0) {
    if (arr(d.attached, `${p}.attached`).length !== 0 || d.reservedIn !== 0) bad(`${p}: an unbound device has attachments`);
    dev.importState({ binding: undefined, attached: new Map(), responses, reservedIn: undefined });
    return;
  }
  const state = states[fd] ?? bad(`${p}.fd: no FD ${fd}`);
  const bound = state.table.objects().find((o): o is BoundDevice => o instanceof BoundDevice && o.device === dev) ?? bad(`${p}: FD ${fd} has no device object for it`);
  const attached = new Map<number, HwptPaging | HwptUser>();
  for (const [i, a] of list(d.attached, `${p}.attached`, (v, q) => v as unknown[]).entries()) {
    const q = `${p}.attached[${i}]`;
    const pasid = uint(a?.[0], `${q}[0]`, 2 ** abi.PASID_BITS - 1);
    const hwpt = state.table.find(uint(a?.[1], `${q}[1]`, 0x7fffffff, 1));
    if (!(hwpt instanceof HwptPaging) && !(hwpt instanceof HwptUser)) bad(`${q}: not a HWPT of FD ${fd}`);
    if (attached.has(pasid)) bad(`${q}: PASID ${pasid} attached twice`);
    if (pasid !== abi.NO_PASID) {
      if (engine.pasids.owner(pasid) !== state || pasid >= 2 ** dev.pasidBits) bad(`${q}: PASID ${pasid} is not usable by this device in FD ${fd}`);
      engine.pasids.use(pasid, 1);
    }
    attached.set(pasid, hwpt);
  }
  const reservedIn = d.reservedIn === 0 ? undefined : state.table.find(uint(d.reservedIn, `${p}.reservedIn`, 0x7fffffff, 1));
  if (reservedIn !== undefined && !(reservedIn instanceof Ioas)) bad(`${p}.reservedIn: not an IOAS of FD ${fd}`);
  dev.importState({ binding: { state, obj: bound }, attached, responses, reservedIn });
}

/** An FD's quotas (FdJson.limits): absent = none; each one an integer in [0, 2^31-1]. @throws EINVAL. */
function restoreLimits(v: unknown, p: string): ResolvedLimits {
  if (v === undefined) return NO_LIMITS;
  const o = obj(v, p);
  const keys = ['pasids', 'domains', 'pages'] as const;
  for (const k of Object.keys(o)) if (!(keys as readonly string[]).includes(k)) bad(`${p}: unknown limit '${k}'`);
  const one = (k: (typeof keys)[number]): number => (o[k] === undefined ? Infinity : uint(o[k], `${p}.${k}`, 2 ** 31 - 1));
  return Object.freeze({ pasids: one('pasids'), domains: one('domains'), pages: one('pages') });
}
