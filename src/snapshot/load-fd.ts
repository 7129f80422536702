/**
 * Rebuilds the objects of one FD from its graph record (schema.ts `FdJson`) over a restored engine
 * whose memory already holds every table, domain and context: nothing here writes the core except
 * `domainSetPri` (idempotent: the flag is already in the image).
 *
 * Objects are made in dependency order (IOAS and FAULT, then HWPT_PAGING, then user-managed HWPTs
 * without and with a parent, then device objects and accesses), published under their IDs, then
 * wired: IOAS HWPT and access sets, nested children, io-pagetable state, fault queues; users counts
 * last. Every reference is checked (it must exist, have the right type and point back). Errors are
 * EINVAL from json.ts, or plain Errors from the classes' import checks that `restoring` turns into
 * EINVAL; the half-built engine is then dropped by the caller.
 * @module
 */
import { IoasAccess, type UnmapCallback } from '../iommufd/access';
import { BoundDevice, type DeviceFd } from '../iommufd/device';
import type { Engine } from '../iommufd/fd-state';
import { FaultQueue, type FaultQueueFd, type Request } from '../iommufd/fault-queue';
import type { FdState } from '../iommufd/fd-state';
import { HwptPaging, type HwptFlags } from '../iommufd/hwpt';
import { HwptUser } from '../iommufd/hwpt-user';
import { Ioas } from '../iommufd/ioas';
import type { FdObject, ObjType } from '../iommufd/object-table';
import { arr, bad, bool, list, obj, range, str, u64, uint } from './json';

/** What a restored FD hands back besides itself. */
export interface LoadedFd {
  faultFds: Map<number, FaultQueueFd>;
  accesses: Map<number, IoasAccess>;
}

/** Asks the restorer for the onUnmap callback of a pinning access. */
export type CallbackFor = (accessId: number) => UnmapCallback;

type Rec = Record<string, unknown>;
type AnyHwpt = HwptPaging | HwptUser;
/** A class, private constructors included (instanceof only). */
type Class<T> = Function & { prototype: T };

const ORDER: readonly ObjType[] = ['ioas', 'fault', 'hwpt-paging', 'hwpt-user', 'hwpt-nested', 'device', 'access'];
const MAX_ID = 0x7fffffff;
const HWPTS: Class<AnyHwpt>[] = [HwptPaging, HwptUser];

/** Fills `state` (a new FD of `engine`) from `json`; `path` names it in errors. */
export function loadFd(engine: Engine, state: FdState, json: unknown, path: string, callbackFor: CallbackFor): LoadedFd {
  const f = obj(json, path);
  const loader = new FdLoader(engine, state, list(f.objects, `${path}.objects`, (o, p) => ({ r: obj(o, p), p })), callbackFor);
  const loaded = loader.wire();
  state.table.restoreIds(uint(f.next, `${path}.next`, MAX_ID + 1, 1), list(f.freed, `${path}.freed`, (v, p) => uint(v, p, MAX_ID, 1)));
  return loaded;
}

class FdLoader {
  private readonly byId = new Map<number, { r: Rec; p: string; o?: FdObject }>();

  constructor(private readonly engine: Engine, private readonly state: FdState, records: { r: Rec; p: string }[], private readonly callbackFor: CallbackFor) {
    for (const rec of records) {
      const id = uint(rec.r.id, `${rec.p}.id`, MAX_ID, 1);
      if (this.byId.has(id)) bad(`${rec.p}: duplicate ID ${id}`);
      if (!ORDER.includes(rec.r.type as ObjType)) bad(`${rec.p}.type: unknown object type ${JSON.stringify(rec.r.type)}`);
      this.byId.set(id, rec);
    }
    for (const type of ORDER) {
      for (const [id, rec] of this.byId) if (rec.r.type === type) rec.o = state.table.publish(id, this.make(rec.r, rec.p, id));
    }
  }

  /** Wires the published objects to each other, then sets every users count. */
  wire(): LoadedFd {
    const faultFds = new Map<number, FaultQueueFd>();
    const accesses = new Map<number, IoasAccess>();
    for (const { r, p, o } of this.byId.values()) {
      if (o instanceof Ioas) this.wireIoas(o, r, p);
      else if (o instanceof HwptPaging || o instanceof HwptUser) {
        for (const c of this.members<HwptUser>(r.children, `${p}.children`, [HwptUser], (c) => c.parent === o)) o.children.add(c);
      } else if (o instanceof FaultQueue) faultFds.set(o.id, this.wireQueue(o, r, p));
      else if (o instanceof IoasAccess) accesses.set(o.id, o);
    }
    for (const { r, p, o } of this.byId.values()) o!.users = uint(r.users, `${p}.users`, MAX_ID);
    return { faultFds, accesses };
  }

  /** The object `id`, made already, of one of `types`. */
  private get<T extends FdObject>(id: unknown, p: string, types: Class<T>[]): T {
    const o = this.byId.get(uint(id, p, MAX_ID, 1))?.o;
    if (!o || !types.some((t) => o instanceof t)) bad(`${p}: no ${types.map((t) => t.name).join(' or ')} with ID ${String(id)}`);
    return o as T;
  }

  private optional<T extends FdObject>(id: unknown, p: string, types: Class<T>[]): T | undefined {
    return id === 0 ? undefined : this.get(id, p, types);
  }

  /** IDs resolved to `types`: exactly, and in the given order, the objects of those types that `belong`. */
  private members<T extends FdObject>(v: unknown, p: string, types: Class<T>[], belong: (o: T) => boolean): T[] {
    const out = list(v, p, (id, q) => this.get(id, q, types));
    const all = [...this.byId.values()].filter(({ o }) => types.some((t) => o instanceof t) && belong(o as T));
    if (new Set(out).size !== out.length || out.length !== all.length || !out.every(belong)) bad(`${p}: does not list exactly the objects that refer to it`);
    return out;
  }

  private make(r: Rec, p: string, id: number): FdObject {
    const engine = this.engine;
    switch (r.type as ObjType) {
      case 'ioas':
        return new Ioas();
      case 'fault':
        return new FaultQueue(engine, this.state);
      case 'hwpt-paging': {
        const hwpt = HwptPaging.adopt(engine, this.get(r.ioas, `${p}.ioas`, [Ioas]), domain(engine, r.domain, `${p}.domain`), flags(r.flags, `${p}.flags`), this.state);
        hwpt.faultQueue = this.optional(r.fault, `${p}.fault`, [FaultQueue]);
        hwpt.dirtyEnabled = bool(r.dirtyEnabled, `${p}.dirtyEnabled`);
        return hwpt;
      }
      case 'hwpt-user':
      case 'hwpt-nested': {
        const parent = this.optional(r.parent, `${p}.parent`, HWPTS);
        if ((parent !== undefined) !== (r.type === 'hwpt-nested') || (parent && !parent.flags.nestParent)) bad(`${p}.parent: inconsistent with the type`);
        return new HwptUser(this.state, domain(engine, r.domain, `${p}.domain`), flags(r.flags, `${p}.flags`), str(r.format, `${p}.format`),
          u64(r.root, `${p}.root`), parent, this.optional(r.fault, `${p}.fault`, [FaultQueue]));
      }
      case 'device':
        return new BoundDevice(device(engine, r.rid, `${p}.rid`));
      case 'access': {
        const access = new IoasAccess(engine, this.get(r.ioas, `${p}.ioas`, [Ioas]), bool(r.pinning, `${p}.pinning`) ? this.callbackFor(id) : undefined);
        access.restorePins(list(r.pins, `${p}.pins`, range));
        return access;
      }
    }
    return bad(`${p}.type: unknown`);
  }

  private wireIoas(ioas: Ioas, r: Rec, p: string): void {
    for (const h of this.members<HwptPaging>(r.hwpts, `${p}.hwpts`, [HwptPaging], (h) => h.ioas === ioas)) ioas.hwpts.add(h);
    for (const a of this.members<IoasAccess>(r.accesses, `${p}.accesses`, [IoasAccess], (a) => a.ioas === ioas)) ioas.accesses.add(a);
    const t = obj(r.iopt, `${p}.iopt`);
    const others = new Map<number, object>();
    const owner = (v: unknown, q: string): object => {
      const [kind, n] = arr(v, q);
      if (kind === 'hwpt') return this.get(n, `${q}[1]`, [HwptPaging]);
      if (kind === 'access') return this.get(n, `${q}[1]`, [IoasAccess]);
      if (kind === 'device') return device(this.engine, n, `${q}[1]`);
      if (kind !== 'other') bad(`${q}: unknown owner kind`);
      const k = uint(n, `${q}[1]`);
      if (!others.has(k)) others.set(k, {});
      return others.get(k)!;
    };
    const domains = list(t.domains, `${p}.iopt.domains`, (d, q) => {
      const [id, pageSize] = arr(d, q);
      return { sink: this.get(id, `${q}[0]`, [HwptPaging]), pageSize: u64(pageSize, `${q}[1]`) };
    });
    // The domains kept in sync with the areas are exactly the IOAS's HWPTs: a missing one would go stale.
    if (domains.length !== ioas.hwpts.size || new Set(domains.map((d) => d.sink)).size !== domains.length || !domains.every((d) => ioas.hwpts.has(d.sink))) {
      bad(`${p}.iopt.domains: not the HWPTs of the IOAS`);
    }
    ioas.iopt.importState({
      domains,
      areas: list(t.areas, `${p}.iopt.areas`, (a, q) => {
        const [iova, last, phys, read, write] = arr(a, q);
        return { iova: u64(iova, `${q}[0]`), last: u64(last, `${q}[1]`), phys: u64(phys, `${q}[2]`), read: bool(read, `${q}[3]`), write: bool(write, `${q}[4]`) };
      }),
      allowed: list(t.allowed, `${p}.iopt.allowed`, range),
      reserved: list(t.reserved, `${p}.iopt.reserved`, (e, q) => {
        const [o, ranges] = arr(e, q);
        return [owner(o, `${q}[0]`), list(ranges, `${q}[1]`, range)] as const;
      }),
      alignments: list(t.alignments, `${p}.iopt.alignments`, (e, q) => {
        const [o, a] = arr(e, q);
        return [owner(o, `${q}[0]`), u64(a, `${q}[1]`)] as const;
      }),
    });
  }

  private wireQueue(queue: FaultQueue, r: Rec, p: string): FaultQueueFd {
    const request = (minCookie: number) => (v: unknown, q: string): Request => {
      const o = obj(v, q);
      const hwpt = this.get(o.hwpt, `${q}.hwpt`, HWPTS);
      if (hwpt.faultQueue !== queue) bad(`${q}.hwpt: delivers to another queue`);
      return {
        dev: device(this.engine, o.rid, `${q}.rid`), hwpt, pasid: uint(o.pasid, `${q}.pasid`), grpid: uint(o.grpid, `${q}.grpid`, 511),
        perm: uint(o.perm, `${q}.perm`, 15), addr: u64(o.addr, `${q}.addr`), cookie: uint(o.cookie, `${q}.cookie`, 2 ** 53, minCookie),
      };
    };
    const queued = list(r.queued, `${p}.queued`, request(0));
    const pending = list(r.pending, `${p}.pending`, request(1));
    const nextCookie = uint(r.nextCookie, `${p}.nextCookie`, 2 ** 53, 1);
    if (queued.some((x) => x.cookie !== 0)) bad(`${p}.queued: an unread request has a cookie`);
    if (pending.some((x, i) => x.cookie >= nextCookie || (i > 0 && x.cookie <= pending[i - 1]!.cookie))) bad(`${p}.pending: cookies out of order`);
    return queue.importState({
      queued, pending, nextCookie, fdOpen: bool(r.fdOpen, `${p}.fdOpen`),
      hwpts: this.members(r.hwpts, `${p}.hwpts`, HWPTS, (h) => h.faultQueue === queue),
    });
  }
}

function domain(engine: Engine, v: unknown, p: string): number {
  return uint(v, p, engine.layout.domainCount - 1, 1);
}

function device(engine: Engine, rid: unknown, p: string): DeviceFd {
  return engine.devices.get(uint(rid, p, 0xffff)) ?? bad(`${p}: no device with requester ID ${String(rid)}`);
}

/** HwptFlags: booleans, with at least the three every version has. */
function flags(v: unknown, p: string): HwptFlags {
  const out: Record<string, boolean> = {};
  for (const [k, x] of Object.entries(obj(v, p))) out[k] = bool(x, `${p}.${k}`);
  for (const k of ['auto', 'nestParent', 'pasid']) if (!(k in out)) bad(`${p}.${k}: missing`);
  return out as unknown as HwptFlags;
}
