/**
 * Differential fuzzing of user-managed and nested HWPTs: guest page tables (x86-64 4/5-level,
 * Sv39/48/57, and Sv39x4/48x4/57x4 G-stage nest parents with x86-64 or Sv* children) written into
 * guest RAM by the generator and mutated between steps (new mappings, PTEs removed or rewritten,
 * A/D, R/W/X/U, PS/N/PBMT and reserved bits), `hwptInvalidate` in every form ({}, { pasid },
 * { iova, length, pasid? }, leaf: true) and with bad entries, translations checked against the
 * independent walker of test/model/guest-walk.ts, and snapshots after which the original and the
 * restored engine run side by side.
 *
 * IOTLB semantics (iommufd HWPT_INVALIDATE; VT-d/RISC-V caching rules): after a guest table
 * changes, a translation may still come from any table version that was live while its context
 * was attached, until an invalidation covering it (same HWPT, or its nest parent; PASID and page
 * or, with `leaf`, the cached leaf's range) is issued; then only the current tables' answer is
 * allowed. The model keeps the superseded RAM versions and the invalidation log to compute that
 * allowed set. Hardware A/D updates are applied to the model's RAM mirror by the walker; after a
 * translate op the engine's RAM must equal it exactly while no stale version is live (a stale
 * answer from the IOTLB makes no update), else differ in A/D bits only; then the mirror takes the
 * engine's A/D bits.
 *
 * Only types come from src/.
 * @module
 */
import type { DeviceFd, Iommu, IommuFd } from '../../src/index';
import { guestWalk, isG, LEVELS, Ram, RamOverlay, leafEntry, type GuestFormat, type GuestTable, type WalkResult } from './guest-walk';
import { show } from './ops';
import { Rng } from './rng';

export const RAM_BASE = 0x8000_0000n;
const RAM_BYTES = 2 << 20;
const PAGE = 4096n;

export interface GInvEntry { pasid?: unknown; iova?: unknown; length?: unknown; leaf?: unknown; bogus?: number }

export type GOp =
  | { k: 'alloc'; format: GuestFormat; levels?: 4 | 5; hwAD: boolean; sum?: boolean; nestParent?: boolean; parent?: number; root: bigint }
  | { k: 'attach'; dev: number; h: number; pasid: number }
  | { k: 'write'; writes: [addr: bigint, word: bigint][] }
  | { k: 'inval'; h: number; entries: GInvEntry[] | 'bad' }
  | { k: 'translate'; reqs: [dev: number, pasid: number, va: bigint, access: number][] }
  | { k: 'snapshot' }
  | { k: 'drop'; which: 0 | 1 };

/** What the engine package must provide (passed in, as in harness.ts). */
export interface GuestApi {
  Iommu: { createSync(opts?: object): Iommu; restore(bytes: Uint8Array): { iommu: Iommu; fds: IommuFd[]; devices: Map<string, DeviceFd> } };
  IommuError: new (...args: never[]) => Error & { errno: string };
}

interface MH {
  id: number;
  table: GuestTable;
  nestParent: boolean;
  children: MH[];
}

/** One superseded RAM version: live until time `end`; `old` the words the write at `end` replaced. */
interface Version { old: Map<bigint, bigint>; end: number }
/** One applied invalidation entry, at time `at`. */
interface Inval { at: number; h: MH; pasid?: number; first?: bigint; last?: bigint; leaf: boolean }

const BDFS = ['00:03.0', '00:04.0'];

/** The model: RAM mirror, HWPTs, attachments, versions and the invalidation log. */
export class GuestModel {
  readonly ram = new Ram(RAM_BASE, new Uint8Array(RAM_BYTES));
  readonly hwpts: MH[] = [];
  /** `${dev}:${pasid}` -> HWPT and the time it was attached. */
  readonly att = new Map<string, { h: MH; at: number }>();
  versions: Version[] = [];
  invals: Inval[] = [];
  time = 0;
  nextId = 4; // device objects 1, 2 and... see GuestEngine: IDs 1..3 taken by setup

  write(writes: [bigint, bigint][]): void {
    const old = new Map<bigint, bigint>();
    for (const [a] of writes) if (this.ram.has(a) && !old.has(a)) old.set(a, this.ram.read(a));
    this.versions.push({ old, end: this.time + 1 });
    this.time++;
    for (const [a, w] of writes) if (this.ram.has(a)) this.ram.write(a, w);
  }

  /** Allowed answers of a request: the current walk first, then stale versions' answers. */
  allowed(dev: number, pasid: number, va: bigint, access: number): WalkResult[] {
    const a = this.att.get(`${dev}:${pasid}`);
    if (!a) return [{ ok: false, reason: 'not-attached', level: 0, stage: 0 }];
    const out = [guestWalk(this.ram, a.h.table, va, access)];
    for (let k = 0; k < this.versions.length; k++) {
      const v = this.versions[k]!;
      if (v.end <= a.at) continue;
      const r = guestWalk(this.versionRam(k), a.h.table, va, access);
      const size = r.ok ? 1n << BigInt(r.sizeLg2) : PAGE;
      if (this.invals.some((i) => i.at >= v.end && this.covers(i, a.h, pasid, va, size))) continue;
      out.push(r);
    }
    return out;
  }

  /** RAM as it was before the write that ended version `k`: the earliest old word of each later write wins. */
  private versionRam(k: number): RamOverlay {
    const old = new Map<bigint, bigint>();
    for (let j = this.versions.length - 1; j >= k; j--) for (const [a, w] of this.versions[j]!.old) old.set(a, w);
    return new RamOverlay(this.ram, old);
  }

  private covers(i: Inval, h: MH, pasid: number, va: bigint, size: bigint): boolean {
    if (h.table.parent && i.h.children.includes(h)) return true; // a parent's invalidation ends its children's entries
    if (i.h !== h) return false;
    if (i.pasid !== undefined && i.pasid !== pasid) return false;
    if (i.first === undefined) return true;
    const page = va >> 12n;
    if (page >= i.first && page <= i.last!) return true;
    if (!i.leaf) return false;
    const lo = (va & ~(size - 1n)) >> 12n;
    const hi = ((va & ~(size - 1n)) + size - 1n) >> 12n;
    return lo <= i.last! && i.first <= hi;
  }

  /** Drops versions no context can still hit. */
  prune(): void {
    const ctxs = [...this.att.values()];
    const live = (v: Version): boolean => ctxs.some((c) => c.at < v.end && !this.invals.some((i) => i.at >= v.end && i.first === undefined && i.pasid === undefined && (i.h === c.h || i.h.children.includes(c.h))));
    // Only a prefix goes: a version is rebuilt from the old words of every later one.
    let drop = 0;
    while (drop < this.versions.length && !live(this.versions[drop]!)) drop++;
    this.versions = this.versions.slice(drop);
    if (this.versions.length === 0) this.invals = [];
  }

  /** hwptInvalidate on the model: errno (with entries handled) or the count. */
  invalidate(h: MH | undefined, entries: GInvEntry[] | 'bad'): { v: number } | { e: string; handled?: number } {
    if (!h) return { e: 'ENOENT' };
    if (entries === 'bad') return { e: 'EINVAL' };
    let n = 0;
    for (const e of entries) {
      const err = checkEntry(e);
      if (err) return { e: err, handled: n };
      const first = e.iova === undefined ? undefined : (e.iova as bigint) >> 12n;
      const last = e.iova === undefined ? undefined : ((e.iova as bigint) + (e.length as bigint) - 1n) >> 12n;
      this.invals.push({ at: this.time, h, pasid: e.pasid as number | undefined, first, last, leaf: e.leaf === true });
      n++;
    }
    return { v: n };
  }
}

/** The errno of a bad invalidation entry (iommufd.h struct iommu_hwpt_invalidate, the engine's documented checks). */
function checkEntry(e: GInvEntry): string | undefined {
  if ('bogus' in e) return 'EOPNOTSUPP';
  if (e.pasid !== undefined && !(typeof e.pasid === 'number' && Number.isInteger(e.pasid) && e.pasid >= 0 && e.pasid < 2 ** 20)) return 'EINVAL';
  if ((e.iova === undefined) !== (e.length === undefined)) return 'EINVAL';
  if (e.leaf !== undefined && typeof e.leaf !== 'boolean') return 'EINVAL';
  if (e.leaf && e.iova === undefined) return 'EINVAL';
  if (e.iova === undefined) return undefined;
  for (const v of [e.iova, e.length]) if (typeof v !== 'bigint' || v < 0n) return 'EINVAL';
  for (const v of [e.iova, e.length]) if ((v as bigint) >= 1n << 64n) return 'EOVERFLOW';
  if (e.length === 0n) return 'EINVAL';
  if ((e.iova as bigint) + (e.length as bigint) - 1n >= 1n << 64n) return 'EOVERFLOW';
  return undefined;
}

/** One engine with the FD, devices and HWPT IDs of the run. */
class GuestEngine {
  fd: IommuFd;
  devs: DeviceFd[];
  pasids: number[];
  constructor(readonly api: GuestApi, readonly iommu: Iommu, fd?: IommuFd, devs?: DeviceFd[], pasids?: number[]) {
    if (fd && devs && pasids) {
      this.fd = fd;
      this.devs = devs;
      this.pasids = pasids;
      return;
    }
    this.fd = iommu.open();
    this.devs = BDFS.map((bdf) => iommu.addDevice({ bdf, pasidBits: 8 }));
    for (const d of this.devs) d.bind(this.fd); // IDs 1, 2
    this.pasids = [this.fd.pasidAlloc({ pasid: 1 }), this.fd.pasidAlloc({ pasid: 2 })];
    this.fd.ioasAlloc(); // ID 3 (unused: the ID sequence of HWPTs starts at 4)
  }

  static create(api: GuestApi): GuestEngine {
    return new GuestEngine(api, api.Iommu.createSync({ ram: { base: RAM_BASE, bytes: RAM_BYTES }, translators: 1, iotlbEntries: 32, maxDomains: 24, maxMemoryBytes: 16 << 20 }));
  }

  restored(): GuestEngine {
    const r = this.api.Iommu.restore(this.iommu.snapshot());
    return new GuestEngine(this.api, r.iommu, r.fds[0]!, BDFS.map((b) => r.devices.get(b)!), this.pasids);
  }

  ramBytes(): Uint8Array {
    return this.iommu.ram;
  }

  run(op: GOp, ids: number[]): unknown {
    try {
      return { v: this.value(op, ids) };
    } catch (e) {
      if (e instanceof this.api.IommuError) return { e: e.errno, ...('handled' in e ? { handled: (e as { handled: number }).handled } : {}) };
      throw e;
    }
  }

  private value(op: GOp, ids: number[]): unknown {
    switch (op.k) {
      case 'alloc':
        return this.fd.hwptAlloc({
          devId: 1, pasid: true, ...(op.parent === undefined ? {} : { ptId: ids[op.parent] }), ...(op.nestParent ? { nestParent: true } : {}),
          table: { format: op.format, root: op.root, hwAccessDirty: op.hwAD, ...(op.levels ? { levels: op.levels } : {}), ...(op.sum !== undefined ? { sum: op.sum } : {}) },
        });
      case 'attach':
        return this.devs[op.dev]!.attach(ids[op.h]!, op.pasid === 0 ? undefined : { pasid: op.pasid });
      case 'write': {
        const ram = this.ramBytes();
        const dv = new DataView(ram.buffer, ram.byteOffset, ram.byteLength);
        for (const [a, w] of op.writes) if (a >= RAM_BASE && a + 8n <= RAM_BASE + BigInt(RAM_BYTES)) dv.setBigUint64(Number(a - RAM_BASE), w, true);
        return undefined;
      }
      case 'inval':
        return this.fd.hwptInvalidate(ids[op.h] ?? 999, op.entries === 'bad' ? ('bad' as never) : (op.entries as never));
      case 'translate':
        return op.reqs.map(([dev, pasid, va, access]) => {
          const t = this.iommu.translate(this.devs[dev]!.rid, pasid, va, access);
          if (t.ok) return { ok: true, phys: t.phys, sizeLg2: t.size.toString(2).length - 1, perm: t.perm };
          return { ok: false, reason: t.fault!.reason, level: t.fault!.level, stage: t.fault!.stage };
        });
      default:
        return undefined;
    }
  }
}

/** The generator: tables per HWPT built in the model's mirror, mutations, invalidations, requests. */
class GuestGen {
  private nextPage = RAM_BASE + 0x1000n * 16n;
  /** Per HWPT index: VAs it has leaves for (with the leaf level). */
  private readonly vas = new Map<number, { va: bigint; level: number }[]>();
  private readonly queue: GOp[] = [];
  constructor(private readonly rng: Rng, private readonly m: GuestModel) {}

  private page(bytes = PAGE): bigint {
    this.nextPage = (this.nextPage + bytes - 1n) & ~(bytes - 1n);
    if (this.nextPage + bytes > RAM_BASE + BigInt(RAM_BYTES)) {
      // RAM used up: alias an existing page (tables sharing pages is legal, if odd).
      return RAM_BASE + 0x10000n + BigInt(this.rng.int(RAM_BYTES / 4096 - 32)) * PAGE;
    }
    const p = this.nextPage;
    this.nextPage += bytes;
    return p;
  }

  next(): GOp {
    const q = this.queue.shift();
    if (q) return q;
    const rng = this.rng;
    const m = this.m;
    // Bound the stale versions the model keeps: now and then the guest invalidates everything.
    if (m.versions.length > 24) {
      for (let h = 1; h < m.hwpts.length; h++) this.queue.push({ k: 'inval', h, entries: [{}] });
      return { k: 'inval', h: 0, entries: [{}] };
    }
    const n = m.hwpts.length;
    const w = {
      alloc: n < 2 ? 10 : n < 8 ? 1 : 0,
      attach: n > 0 ? (m.att.size < 2 ? 6 : 1.5) : 0,
      map: n > 0 ? 12 : 0,
      mutate: n > 0 ? 8 : 0,
      inval: n > 0 ? 3 : 0,
      translate: m.att.size > 0 ? 25 : 0,
      snapshot: 0.25,
    };
    switch (rng.weighted(w)) {
      case 'alloc':
        return this.alloc();
      case 'attach': {
        const dev = rng.int(2);
        const p = rng.chance(0.5) ? 0 : rng.pick([1, 2]);
        return { k: 'attach', dev, h: rng.int(n), pasid: p };
      }
      case 'map':
        return this.map(rng.int(n));
      case 'mutate':
        return this.mutate(rng.int(n));
      case 'inval':
        return this.inval(rng.int(n), undefined);
      case 'snapshot':
        return { k: 'snapshot' };
      default:
        return this.translate();
    }
  }

  /** PASIDs 1 and 2 stand for the two PASIDs the setup allocated (GuestEngine.pasids). */
  private alloc(): GOp {
    const rng = this.rng;
    const parents = this.m.hwpts.map((h, i) => [h, i] as const).filter(([h]) => h.nestParent);
    const kind = rng.weighted({ single: 4, parent: parents.length < 2 ? 2 : 0.3, nested: parents.length > 0 ? 4 : 0 });
    if (kind === 'parent') {
      const format = rng.pick(['sv39x4', 'sv48x4', 'sv57x4'] as const);
      const root = this.page(0x4000n);
      const op: GOp = { k: 'alloc', format, hwAD: rng.chance(0.6), nestParent: true, root };
      // Identity-map RAM for the children's tables (2 MiB G leaves, user, RWX, A/D mostly set).
      const t: GuestTable = { format, root, levels: LEVELS[format], hwAD: op.hwAD, sum: false };
      const writes: [bigint, bigint][] = [];
      const leaf = (RAM_BASE >> 12n) << 10n | 0x1fn | (rng.chance(0.85) ? 0xc0n : 0n);
      this.build(t, RAM_BASE, 1, leaf, writes);
      this.queue.push({ k: 'write', writes });
      return op;
    }
    const format = rng.pick(['x86-64', 'x86-64', 'sv39', 'sv48', 'sv57'] as const);
    const levels = format === 'x86-64' ? rng.pick([4, 4, 5] as const) : undefined;
    const op: GOp = { k: 'alloc', format, levels, hwAD: rng.chance(0.6), root: this.page() };
    if (format !== 'x86-64' && rng.chance(0.3)) op.sum = true;
    if (kind === 'nested') op.parent = rng.pick(parents)[1];
    return op;
  }

  private tableOf(h: number): GuestTable {
    return this.m.hwpts[h]!.table;
  }

  /** Writes the walk for `va` down to `level` into `writes`, ending in `leaf` (new tables fresh pages). */
  private build(t: GuestTable, va: bigint, level: number, leaf: bigint, writes: [bigint, bigint][]): void {
    const x86 = t.format === 'x86-64';
    const bits = 12 + 9 * t.levels + (isG(t.format) ? 2 : 0);
    let table = t.root;
    const planned = new Map(writes.map(([a, w]) => [a, w]));
    for (let l = t.levels - 1; l >= level; l--) {
      const shift = 12 + 9 * l;
      const idx = (va >> BigInt(shift)) & ((1n << BigInt(l === t.levels - 1 ? bits - shift : 9)) - 1n);
      const at = table + idx * 8n; // children's GPAs are identity-mapped RAM (see alloc)
      if (l === level) {
        writes.push([at, leaf]);
        return;
      }
      const cur = planned.get(at) ?? (this.m.ram.has(at) ? this.m.ram.read(at) : 0n);
      const ptr = x86 ? (cur & 1n) === 1n && (cur & 0x80n) === 0n : (cur & 0xfn) === 1n;
      if (ptr) {
        table = x86 ? cur & (((1n << 52n) - 1n) & ~0xfffn) : ((cur >> 10n) & ((1n << 44n) - 1n)) << 12n;
        continue;
      }
      const next = this.page();
      const word = x86 ? next | 0x3n | (this.rng.chance(0.9) ? 0x4n : 0n) | (this.rng.chance(0.7) ? 0x20n : 0n) : ((next >> 12n) << 10n) | 1n;
      writes.push([at, word]);
      planned.set(at, word);
      table = next;
    }
  }

  private outAddr(t: GuestTable, level: number): bigint {
    const size = 1n << BigInt(12 + 9 * level);
    // Nested children output GPAs; mostly inside the identity-mapped RAM window, so stage 2 hits.
    let a = t.parent && this.rng.chance(0.8) ? RAM_BASE + BigInt(this.rng.int(RAM_BYTES / 4096)) * PAGE : this.rng.bits(40) << 12n;
    a &= ~(size - 1n);
    if (level > 0 && this.rng.chance(0.06)) a |= 0x2000n; // misaligned superpage: reserved (x86) / misaligned (RISC-V)
    return a;
  }

  private leafWord(t: GuestTable, level: number, oa: bigint): bigint {
    const rng = this.rng;
    if (t.format === 'x86-64') {
      let e = oa | 1n;
      if (rng.chance(0.75)) e |= 2n;
      if (rng.chance(0.8)) e |= 4n;
      if (rng.chance(0.7)) e |= 0x20n;
      if (rng.chance(0.5)) e |= 0x40n;
      if (level > 0) e |= 0x80n;
      if (rng.chance(0.2)) e |= 1n << 63n;
      return e;
    }
    let e = ((oa >> 12n) << 10n) | 1n;
    const rwx = rng.pick([1n, 3n, 3n, 7n, 5n, 4n, 2n, 0n]);
    e |= rwx << 1n;
    if (isG(t.format) ? rng.chance(0.9) : rng.chance(0.5)) e |= 0x10n;
    if (rng.chance(0.7)) e |= 0x40n;
    if (rng.chance(0.5)) e |= 0x80n;
    if (rng.chance(0.05)) e |= BigInt(rng.range(1, 3)) << 61n; // PBMT NC/IO/reserved
    if (rng.chance(0.03)) e |= 1n << 54n; // reserved
    if (level === 0 && rng.chance(0.05)) e = (e & ~(0xfn << 10n)) | (8n << 10n) | (1n << 63n); // Svnapot 64 KiB
    return e;
  }

  private hotVa(t: GuestTable, h: number): bigint {
    const rng = this.rng;
    const known = this.vas.get(h) ?? [];
    if (known.length > 0 && rng.chance(0.7)) {
      const k = rng.pick(known);
      return k.va + (rng.chance(0.5) ? BigInt(rng.int(512)) * PAGE % (1n << BigInt(12 + 9 * k.level)) : 0n) + BigInt(rng.int(4096));
    }
    const bits = 12 + 9 * t.levels + (isG(t.format) ? 2 : 0);
    const r = rng.int(10);
    if (r === 0) return (1n << 64n) - (1n << BigInt(bits - 1)) + (BigInt(rng.int(64)) << 21n); // high half
    if (r === 1) return 1n << BigInt(bits - 1 + rng.int(2)); // non-canonical / beyond width
    if (r === 2) return BigInt(rng.int(8)) << 30n;
    return (0x4000_0000n + (BigInt(rng.int(64)) << 12n) + (BigInt(rng.int(4)) << 21n)) & ((1n << BigInt(bits - 1)) - 1n);
  }

  private map(h: number): GOp {
    const t = this.tableOf(h);
    const rng = this.rng;
    const level = rng.pick([0, 0, 0, 1, 1, 2]);
    const size = 1n << BigInt(12 + 9 * level);
    const va = this.hotVa(t, h) & ~(size - 1n);
    const writes: [bigint, bigint][] = [];
    this.build(t, va, level, this.leafWord(t, level, this.outAddr(t, level)), writes);
    const list = this.vas.get(h) ?? [];
    if (list.length < 24) list.push({ va, level });
    this.vas.set(h, list);
    this.afterWrite(h, va, level, false);
    return { k: 'write', writes };
  }

  /** Rewrites an existing leaf (bits flipped, removed) or a table pointer (cleared, flags changed). */
  private mutate(h: number): GOp {
    const t = this.tableOf(h);
    const rng = this.rng;
    const va = this.hotVa(t, h);
    const found = leafEntry(this.m.ram, t, va);
    if (!found) return this.map(h);
    const e = this.m.ram.read(found.pa);
    const x86 = t.format === 'x86-64';
    let word: bigint;
    const r = rng.int(6);
    if (r === 0) word = 0n;
    else if (r === 1) word = e ^ (x86 ? rng.pick([0x2n, 0x4n, 0x20n, 0x40n, 1n << 63n]) : rng.pick([0x2n, 0x4n, 0x8n, 0x10n, 0x40n, 0x80n]));
    else if (r === 2) word = e & ~(x86 ? 0x60n : 0xc0n); // A/D cleared
    else if (r === 3) word = this.leafWord(t, found.level, this.outAddr(t, found.level));
    else word = e ^ (x86 ? 0x2n : 0x4n);
    const size = 1n << BigInt(12 + 9 * found.level);
    this.afterWrite(h, va & ~(size - 1n), found.level, false);
    return { k: 'write', writes: [[found.pa, word]] };
  }

  /** Most writes are followed by an invalidation that covers them; the rest leave stale entries allowed. */
  private afterWrite(h: number, va: bigint, level: number, all: boolean): void {
    if (this.rng.chance(0.25)) return;
    this.queue.push(this.inval(h, all ? undefined : { va, level }));
  }

  private inval(h: number, hit: { va: bigint; level: number } | undefined): GOp {
    const rng = this.rng;
    const mh = this.m.hwpts[h]!;
    if (!hit && rng.chance(0.1)) {
      const bad: GInvEntry[] = [
        { pasid: -1 }, { pasid: 2 ** 20 }, { iova: 0n }, { iova: 1n << 64n, length: 1n }, { iova: U64 - 1n, length: 3n },
        { iova: 4096n, length: 0n }, { leaf: true }, { iova: 0n, length: 4096n, leaf: 1 }, { bogus: 1 },
      ];
      if (rng.chance(0.1)) return { k: 'inval', h: rng.chance(0.5) ? h : 50, entries: 'bad' };
      return { k: 'inval', h, entries: [{}, rng.pick(bad), {}].slice(rng.int(2)) };
    }
    const pasidsOf = [...this.m.att.entries()].filter(([, a]) => a.h === mh).map(([k]) => Number(k.split(':')[1]));
    if (!hit) return { k: 'inval', h, entries: [rng.chance(0.5) || pasidsOf.length === 0 ? {} : { pasid: rng.pick(pasidsOf) }] };
    const size = 1n << BigInt(12 + 9 * hit.level);
    const c = rng.int(4);
    // Covering forms: everything; each attached PASID; the leaf's whole range; any page of it with leaf.
    if (c === 0 || mh.table.format.endsWith('x4')) return { k: 'inval', h, entries: [{}] };
    if (c === 1) return { k: 'inval', h, entries: pasidsOf.length > 0 ? [...new Set(pasidsOf)].map((pasid) => ({ pasid })) : [{}] };
    if (c === 2) return { k: 'inval', h, entries: [{ iova: hit.va, length: size }] };
    return { k: 'inval', h, entries: [{ iova: hit.va + BigInt(rng.int(Number(size / PAGE))) * PAGE, length: PAGE, leaf: true }] };
  }

  private translate(): GOp {
    const rng = this.rng;
    const ctx = [...this.m.att.entries()];
    const reqs: [number, number, bigint, number][] = [];
    for (let i = rng.range(1, 6); i > 0; i--) {
      const [key, a] = rng.pick(ctx);
      const [dev, pasid] = key.split(':').map(Number) as [number, number];
      const h = this.m.hwpts.indexOf(a.h);
      reqs.push([rng.chance(0.95) ? dev : 1 - dev, pasid, this.hotVa(a.h.table, h), rng.pick([1, 1, 2, 3, 4, 0, 9, 10, 12])]);
    }
    return { k: 'translate', reqs };
  }
}

const U64 = (1n << 64n) - 1n;

export interface GuestEpochResult { ops: number; trace: GOp[]; divergence?: string }

/**
 * One guest-table epoch: a fresh engine and model, `count` generated ops; after a snapshot op
 * the original and the restored engine both run everything until one of them is dropped.
 */
export function runGuestEpoch(api: GuestApi, seed: number, count: number, ops?: GOp[], tally?: Map<string, number>): GuestEpochResult {
  const add = (key: string): void => void tally?.set(key, (tally.get(key) ?? 0) + 1);
  const rng = new Rng(seed);
  const m = new GuestModel();
  const gen = new GuestGen(new Rng(rng.fork()), m);
  let engines = [GuestEngine.create(api)];
  const ids: number[] = [];
  const trace: GOp[] = [];
  let twinLeft = 0;
  const n = ops ? ops.length : count;
  for (let i = 0; i < n; i++) {
    let op = ops ? ops[i]! : gen.next();
    if (!ops && engines.length === 2 && --twinLeft <= 0) op = { k: 'drop', which: rng.chance(0.5) ? 0 : 1 };
    trace.push(op);
    const fail = (what: string): GuestEpochResult => ({ ops: i + 1, trace, divergence: `op ${i} ${show(op)}: ${what}` });
    if (op.k === 'snapshot') {
      if (engines.length === 2) continue;
      const twin = engines[0]!.restored();
      if (Buffer.compare(twin.ramBytes(), engines[0]!.ramBytes()) !== 0) return fail('restored RAM differs');
      engines = [engines[0]!, twin];
      add('snapshot twin');
      twinLeft = rng.range(10, 60);
      continue;
    }
    if (op.k === 'drop') {
      if (engines.length === 2) engines = [engines[op.which]!];
      m.ram.bytes.set(engines[0]!.ramBytes()); // its A/D bits (checked after every translate op)
      continue;
    }
    if (op.k === 'translate') {
      const results = engines.map((e) => e.run(op, ids) as { v: unknown[] });
      const before = m.ram.copy();
      const want = op.reqs.map(([dev, pasid, va, access]) => m.allowed(dev, pasid, va, access));
      for (const [ei, r] of results.entries()) {
        if (!('v' in r)) return fail(`engine ${ei} threw ${show(r)}`);
        for (let q = 0; q < op.reqs.length; q++) {
          const got = show(r.v[q]);
          const allowed = want[q]!.map((x) => show(x));
          if (!allowed.includes(got)) return fail(`request ${q} ${show(op.reqs[q])}: engine ${ei} ${got}, model ${allowed.join(' | ')}`);
          const t = r.v[q] as { ok: boolean; reason?: string; stage?: number };
          add(t.ok ? `translate ok${op.reqs[q] && m.att.get(`${op.reqs[q]![0]}:${op.reqs[q]![1]}`)?.h.table.parent ? ' nested' : ''}` : `translate ${t.reason} stage ${t.stage}`);
          if (got !== allowed[0]) add('translate stale');
          if (engines.length === 2) add('translate twin');
        }
      }
      // The mirror took the engine's A/D bits after the last translate op: while no stale version
      // is live, this engine's walks must have made exactly the model's A/D updates. A twin may
      // have answered from a different cache state: A/D bits only.
      for (const [ei, e] of engines.entries()) {
        const d = ramDiff(m.ram.bytes, e.ramBytes(), ei === 0 && m.versions.length === 0);
        if (d) return fail(`engine ${ei} RAM after the walks: ${d} (before ${show(before.read(RAM_BASE))})`);
      }
      m.ram.bytes.set(engines[0]!.ramBytes());
      continue;
    }
    const results = engines.map((e) => show(e.run(op, ids)));
    if (results.length === 2 && results[0] !== results[1]) return fail(`original ${results[0]}, restored ${results[1]}`);
    const want = show(modelOp(m, op, ids, results[0]!));
    if (results[0] !== want) return fail(`engine ${results[0]}, model ${want}`);
    const o = JSON.parse(results[0]!) as { e?: string };
    add(`${op.k}${op.k === 'alloc' ? ` ${op.format}${op.parent !== undefined ? ' nested' : ''}` : ''} ${o.e ?? 'ok'}`);
    m.prune();
  }
  return { ops: n, trace };
}

/** Runs a non-translate op on the model; `engineOut` gives the ID an alloc returned (IDs are checked by value). */
function modelOp(m: GuestModel, op: GOp, ids: number[], engineOut: string): unknown {
  switch (op.k) {
    case 'alloc': {
      const parent = op.parent === undefined ? undefined : m.hwpts[op.parent];
      if (op.root % (op.nestParent ? 0x4000n : PAGE) !== 0n) return { e: 'EINVAL' };
      let id = 4;
      while (ids.includes(id)) id++;
      const table: GuestTable = { format: op.format, root: op.root, levels: op.levels ?? LEVELS[op.format], hwAD: op.hwAD, sum: op.sum ?? false, parent: parent?.table };
      const h: MH = { id, table, nestParent: op.nestParent ?? false, children: [] };
      parent?.children.push(h);
      m.hwpts.push(h);
      ids.push(id);
      void engineOut;
      return { v: id };
    }
    case 'attach': {
      const h = m.hwpts[op.h]!;
      const key = `${op.dev}:${op.pasid}`;
      // Attaching the HWPT already attached changes nothing (its cached translations stay).
      if (m.att.get(key)?.h !== h) m.att.set(key, { h, at: m.time });
      return { v: h.id };
    }
    case 'write':
      m.write(op.writes);
      return { v: undefined };
    case 'inval':
      return m.invalidate(m.hwpts[op.h], op.entries);
    default:
      return { v: undefined };
  }
}

/** Where the engine's RAM differs from the model's: exactly, or in more than A/D bits. */
function ramDiff(model: Uint8Array, engine: Uint8Array, exact: boolean): string | undefined {
  if (Buffer.compare(model, engine) === 0) return undefined;
  const a = new BigUint64Array(model.buffer, model.byteOffset, model.byteLength / 8);
  const b = new BigUint64Array(engine.buffer, engine.byteOffset, engine.byteLength / 8);
  for (let i = 0; i < a.length; i++) {
    if (a[i] === b[i]) continue;
    const x = a[i]! ^ b[i]!;
    // x86 A 5 / D 6, RISC-V A 6 / D 7: only those may differ while stale entries are allowed.
    if (exact || (x & ~0xe0n) !== 0n) return `word at 0x${(RAM_BASE + BigInt(i) * 8n).toString(16)}: model 0x${a[i]!.toString(16)}, engine 0x${b[i]!.toString(16)}`;
  }
  return undefined;
}
