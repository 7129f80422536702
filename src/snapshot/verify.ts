/**
 * The last step of a restore: the rebuilt objects must agree with the loaded image. Every HWPT's
 * domain is live, of its kind (user-managed or not), delivers page requests exactly when it has a
 * fault queue, tracks dirty pages exactly when dirty tracking is on, and belongs to one HWPT only;
 * every live domain belongs to a HWPT and the domain allocator hands out no live index; every
 * device has a present context with its PASID width and PRI, pointing at the domains of its
 * attachments. A snapshot that passed its checksum fails here only if it was assembled from
 * inconsistent parts. @throws EINVAL.
 * @module
 */
import * as abi from '../../assembly/abi';
import type { Engine } from '../iommufd/fd-state';
import type { FdState } from '../iommufd/fd-state';
import { HwptPaging } from '../iommufd/hwpt';
import { HwptUser } from '../iommufd/hwpt-user';
import { Ioas } from '../iommufd/ioas';
import { FaultQueue } from '../iommufd/fault-queue';
import { BoundDevice } from '../iommufd/device';
import { bad } from './json';

export function checkAgainstImage(engine: Engine, states: readonly FdState[]): void {
  const core = engine.core;
  core.sync();
  const u32 = core.u32;
  const l = engine.layout;
  const domainFlags = (i: number): number => u32[(l.domains + i * abi.DOM_SIZE + abi.DOM_FLAGS) >>> 2]!;
  const owned = new Set<number>();
  for (const state of states) {
    for (const o of state.table.objects()) {
      if (!(o instanceof HwptPaging) && !(o instanceof HwptUser)) continue;
      const f = domainFlags(o.domain);
      const dirty = o instanceof HwptPaging && o.dirtyEnabled;
      if (!(f & abi.DOM_LIVE) || Boolean(f & abi.DOM_USER) !== o instanceof HwptUser || Boolean(f & abi.DOM_PRI) !== (o.faultQueue !== undefined)
        || Boolean(f & abi.DOM_DIRTY) !== dirty || owned.has(o.domain)) {
        bad(`HWPT ${o.id} does not match its domain ${o.domain} in the image`);
      }
      owned.add(o.domain);
    }
  }
  const { free, next } = engine.domainAllocator();
  for (let i = 1; i < l.domainCount; i++) {
    if (Boolean(domainFlags(i) & abi.DOM_LIVE) !== owned.has(i) || (owned.has(i) && i >= next)) bad(`domain ${i} is live in the image but no HWPT owns it, or the reverse`);
  }
  if (free.some((i) => owned.has(i))) bad('the domain allocator would hand out a live domain');
  checkUsers(engine, states);

  for (const dev of engine.devices.values()) {
    const page = u32[(l.devRoot >>> 2) + (dev.rid >> 8)]!;
    const e = (page + (dev.rid & 255) * abi.DEV_SIZE) >>> 2;
    const flags = page === 0 ? 0 : u32[e + abi.DEV_FLAGS / 4]!;
    if (!(flags & abi.DEV_PRESENT) || u32[e + abi.DEV_PASID_BITS / 4] !== dev.pasidBits || Boolean(flags & abi.DEV_PRI) !== dev.pri) {
      bad(`device ${dev.bdf} does not match its context in the image`);
    }
    for (const [pasid, hwpt] of dev.exportState().attached) {
      const domain = pasid === abi.NO_PASID ? u32[e + abi.DEV_RID_DOMAIN / 4]! : pasidDomain(u32, u32[e + abi.DEV_PASID_DIR / 4]!, pasid);
      if (domain !== hwpt.domain) bad(`device ${dev.bdf}, PASID ${pasid}: the image context does not point at HWPT ${hwpt.id}`);
    }
    if (!dev.exportState().attached.has(abi.NO_PASID) && u32[e + abi.DEV_RID_DOMAIN / 4] !== 0) bad(`device ${dev.bdf}: the image context is attached, the device is not`);
  }
}

/** The domain `pasid` translates through in the PASID directory at byte `dir` (assembly/context.ts). */
function pasidDomain(u32: Uint32Array, dir: number, pasid: number): number {
  if (dir === 0) return 0;
  const leaf = u32[(dir >>> 2) + (pasid >>> abi.PASID_LEAF_BITS)]! & ~abi.PASID_DIR_COUNT_MASK;
  return leaf === 0 ? 0 : u32[(leaf >>> 2) + (pasid & (abi.PASID_LEAF_ENTRIES - 1))]!;
}

/**
 * Every object's `users` (the references that keep it alive, so that destroy is EBUSY) is what the
 * graph gives: an IOAS is used by each HWPT made from it and each access on it; a HWPT by each
 * attachment and each nested child; a FAULT object by each HWPT delivering to it and its open fault
 * FD; a bound device by its binding. A count too low would let destroy free something still in use.
 */
function checkUsers(engine: Engine, states: readonly FdState[]): void {
  const expected = new Map<object, number>();
  const use = (o: object): void => void expected.set(o, (expected.get(o) ?? 0) + 1);
  for (const state of states) {
    for (const o of state.table.objects()) {
      let n = 0;
      if (o instanceof Ioas) n = o.hwpts.size + o.accesses.size;
      else if (o instanceof HwptPaging || o instanceof HwptUser) n = o.children.size;
      else if (o instanceof FaultQueue) n = o.exportState().hwpts.length + (o.exportState().fdOpen ? 1 : 0);
      else if (o instanceof BoundDevice) n = 1;
      for (let k = 0; k < n; k++) use(o);
    }
  }
  for (const dev of engine.devices.values()) for (const hwpt of dev.exportState().attached.values()) use(hwpt);
  for (const state of states) {
    for (const o of state.table.objects()) if (o.users !== (expected.get(o) ?? 0)) bad(`object ${o.id} (${o.type}) has ${o.users} users, the graph gives ${expected.get(o) ?? 0}`);
  }
}
