/**
 * Test-only hooks into an engine: fault injection, guard scans, page-pool accounting and the
 * internal state of an FD, for test/ and scripts/ (fuzzing, fault injection, soak). Not shipped:
 * it reaches the engine behind an `Iommu` through the internal registry of
 * src/iommufd/fd-state.ts (`engineBehind`), which src/api.ts does not export.
 * @module
 */
import * as abi from '../assembly/abi';
import type { BoundDevice } from '../src/iommufd/device';
import { engineBehind, fdState, type Engine } from '../src/iommufd/fd-state';
import type { ObjType } from '../src/iommufd/object-table';
import type { HwptPaging } from '../src/iommufd/hwpt';
import type { Ioas } from '../src/iommufd/ioas';
import type { IoRange } from '../src/iommufd/io-range';
import { GUARD_POISON } from '../src/core/layout';
import { drainPageRequests as drainRings } from '../src/iommufd/fault-queue';

/** The engine behind an `Iommu`. @throws Error for anything else. */
export function engineOf(iommu: object): Engine {
  const e = engineBehind(iommu);
  if (!e) throw new Error('testing.engineOf: not an Iommu');
  e.core.sync();
  return e;
}

/**
 * Arms fault injection (iommufd_fail_nth): the `n`th fallible step from now (object ID, domain
 * slot, PASID, page allocation, memory growth...) fails with ENOMEM; 0 disarms.
 */
export function setFailCountdown(iommu: object, n: number): void {
  engineOf(iommu).core.setFailCountdown(n);
}

/** Steps left before the armed failure (0 = disarmed or already fired). */
export function failCountdown(iommu: object): number {
  return engineOf(iommu).core.ctrl(abi.CTRL_FAIL_COUNTDOWN);
}

/** One guard word that no longer holds the poison. */
export interface GuardViolation {
  /** Byte address of the word. */
  addr: number;
  /** Start of the guard it belongs to. */
  guard: number;
  value: number;
}

/** Scans every guard region of the layout; returns the first `limit` words that were overwritten. */
export function guardViolations(iommu: object, limit = 8): GuardViolation[] {
  const e = engineOf(iommu);
  // Signed words keep the comparison on small integers (fast: this runs after every fuzz step).
  const i32 = new Int32Array(e.core.memory.buffer, 0, e.layout.poolBase >>> 2);
  const poison = GUARD_POISON | 0;
  const out: GuardViolation[] = [];
  for (const g of e.layout.guards) {
    const end = (g.start + g.bytes) >>> 2;
    for (let i = g.start >>> 2; i < end; i++) {
      if (i32[i] !== poison) {
        out.push({ addr: i * 4, guard: g.start, value: i32[i]! >>> 0 });
        if (out.length >= limit) return out;
      }
    }
  }
  return out;
}

/** Throws when a guard was overwritten (see {@link guardViolations}). */
export function checkGuards(iommu: object): void {
  const v = guardViolations(iommu);
  if (v.length > 0) {
    throw new Error(`guard overwritten: ${v.map((x) => `0x${x.addr.toString(16)} = 0x${x.value.toString(16)} (guard at 0x${x.guard.toString(16)})`).join(', ')}`);
  }
}

/** Byte ranges translations may write: the translator slots (headers, result records, IOTLBs, call caches). */
export function translatorRegions(iommu: object): { start: number; bytes: number }[] {
  const l = engineOf(iommu).layout;
  return Array.from({ length: l.slotCount }, (_, i) => ({ start: l.slots + i * l.slotSize, bytes: l.slotBytes }));
}

/** Page-pool and domain accounting of the core. */
export interface PoolState {
  /**
   * Pages handed out and not yet retired/freed (CTRL_PAGES_USED) but for spare tables: tables,
   * device pages, buffers.
   */
  pagesUsed: number;
  /** Spare table pages (sum of DOM_SPARE): emptied tables kept linked for reuse (assembly/spare.ts). */
  sparePages: number;
  /** Top of the pool (bytes); grows only when the free list and limbo cannot serve. */
  poolTop: number;
  /** Bytes of the engine memory. */
  memoryBytes: number;
  /** Live engine-managed domains. */
  liveDomains: number;
  /** Table pages of all live domains, roots included (sum of DOM_PAGES). */
  domainPages: number;
  /** Device bus pages: allocated on the first device of a bus, never freed. */
  busPages: number;
  /** PASID directory pages: allocated on a device's first PASID attach, kept while the device exists. */
  pasidDirPages: number;
  /** PASID leaf pages currently linked (retired when their last PASID detaches). */
  pasidLeafPages: number;
}

export function poolState(iommu: object): PoolState {
  const e = engineOf(iommu);
  const core = e.core;
  const u32 = core.u32;
  const l = e.layout;
  let liveDomains = 0;
  let domainPages = 0;
  let sparePages = 0;
  for (let i = 1; i < l.domainCount; i++) {
    const d = (l.domains + i * abi.DOM_SIZE) >>> 2;
    if (u32[d + abi.DOM_FLAGS / 4]! & abi.DOM_LIVE) {
      liveDomains++;
      domainPages += u32[d + abi.DOM_PAGES / 4]!;
      sparePages += u32[d + abi.DOM_SPARE / 4]!;
    }
  }
  let busPages = 0;
  let pasidDirPages = 0;
  let pasidLeafPages = 0;
  for (let bus = 0; bus < 256; bus++) {
    const page = u32[(l.devRoot >>> 2) + bus]!;
    if (page === 0) continue;
    busPages++;
    for (let devfn = 0; devfn < 256; devfn++) {
      const dev = page + devfn * abi.DEV_SIZE;
      const dir = u32[(dev + abi.DEV_PASID_DIR) >>> 2]!;
      if (dir === 0) continue;
      pasidDirPages++;
      for (let i = 0; i < abi.PASID_LEAF_ENTRIES; i++) if (u32[(dir >>> 2) + i]! & ~abi.PASID_DIR_COUNT_MASK) pasidLeafPages++;
    }
  }
  return {
    pagesUsed: core.ctrl(abi.CTRL_PAGES_USED) - sparePages, sparePages, poolTop: core.ctrl(abi.CTRL_POOL_TOP),
    memoryBytes: core.memory.buffer.byteLength, liveDomains, domainPages, busPages, pasidDirPages, pasidLeafPages,
  };
}

/** One object of an FD, with the internals tests compare. */
export type ObjectView =
  | { id: number; type: 'ioas'; users: number; areas: { iova: bigint; last: bigint; phys: bigint; read: boolean; write: boolean }[];
    allowed: IoRange[]; ranges: IoRange[]; alignment: bigint; hwpts: number[] }
  | { id: number; type: 'hwpt-paging'; users: number; ioas: number; auto: boolean; pasid: boolean; nestParent: boolean; domain: number; tablePages: number }
  | { id: number; type: 'device'; users: number; rid: number }
  /** Object types the fuzz model does not cover (user/nested HWPTs, fault queues, accesses): their public facts. */
  | { id: number; type: Exclude<ObjType, 'ioas' | 'hwpt-paging' | 'device'>; users: number; [fact: string]: unknown };

/** Everything an FD holds, as plain data: objects in ID order, the ID the next object would get, PASIDs. */
export interface FdView {
  closed: boolean;
  objects: ObjectView[];
  nextId: number;
  /** IDs reserved by a creation in progress: always empty between calls. */
  reserved: number[];
  pasids: number[];
  devices: number[];
}

export function fdView(fd: object): FdView {
  const s = fdState(fd);
  if (!s) throw new Error('testing.fdView: not an IommuFd');
  const objects = s.table.objects().map((o): ObjectView => {
    if (o.type === 'ioas') {
      const io = o as Ioas;
      const r = io.iopt.iovaRanges();
      return {
        id: o.id, type: 'ioas', users: o.users,
        areas: io.iopt.areas.map((a) => ({ iova: a.iova, last: a.last, phys: a.phys, read: a.read, write: a.write })),
        allowed: io.iopt.allowed.map((x) => ({ start: x.start, last: x.last })), ranges: r.ranges, alignment: r.alignment,
        hwpts: [...io.hwpts].map((h) => h.id).sort((a, b) => a - b),
      };
    }
    if (o.type === 'hwpt-paging') {
      const h = o as HwptPaging;
      return { id: o.id, type: 'hwpt-paging', users: o.users, ioas: h.ioas.id, ...h.flags, domain: h.domain, tablePages: h.tablePages };
    }
    if (o.type === 'device') return { id: o.id, type: 'device', users: o.users, rid: (o as BoundDevice).device.rid };
    return { id: o.id, type: o.type, users: o.users, ...o.details() };
  });
  // Every ID the table holds, published or reserved: a reservation left behind by a failed call
  // would show up as a reserved ID and a higher nextId.
  const slots = (s.table as unknown as { slots: Map<number, unknown> }).slots;
  const reserved = [...slots].filter(([, o]) => o === null).map(([i]) => i);
  let nextId = 1;
  while (slots.has(nextId)) nextId++;
  return {
    closed: s.closed, objects, nextId, reserved,
    pasids: s.engine.pasids.ownedBy(s),
    devices: [...s.devices].map((d) => d.rid).sort((a, b) => a - b),
  };
}

/**
 * The 32-bit generation of domain `domain` (a HWPT's `domain` in `fdView`); with `set`, overwrites
 * it first — as if that many invalidations had happened — so a test can reach the wrap quickly.
 */
export function domainGeneration(iommu: object, domain: number, set?: number): number {
  const e = engineOf(iommu);
  if (!Number.isInteger(domain) || domain < 1 || domain >= e.layout.domainCount) throw new Error('testing.domainGeneration: no such domain');
  const at = (e.layout.domains + domain * abi.DOM_SIZE + abi.DOM_GEN) >>> 2;
  if (set !== undefined) Atomics.store(e.core.u32, at, set >>> 0);
  return Atomics.load(e.core.u32, at);
}

/**
 * Bumps domain `domain`'s generation and then the shootdown count, as assembly/domain.ts
 * domainBumpGen does: for tests that change engine memory behind the API's back, so that no cached
 * translation (IOTLB or call cache) answers for the old state.
 */
export function bumpDomainGeneration(iommu: object, domain: number): void {
  const e = engineOf(iommu);
  Atomics.add(e.core.u32, (e.layout.domains + domain * abi.DOM_SIZE + abi.DOM_GEN) >>> 2, 1);
  Atomics.add(e.core.u32, (e.layout.ctrl + abi.CTRL_SHOOTDOWN) >>> 2, 1);
}

/** Moves every translator slot's raised page requests into their fault queues now (as `read()` would). */
export function drainPageRequests(iommu: object): void {
  drainRings(engineOf(iommu));
}

/**
 * The engine table pages below the root on the way to `iova` in domain `domain`, and the
 * live-entry count in each one's pointer (0: a spare table, assembly/spare.ts); it stops at an
 * empty entry or a leaf.
 */
export function tablePath(iommu: object, domain: number, iova: bigint): { pages: number[]; counts: number[] } {
  const e = engineOf(iommu);
  const u32 = e.core.u32;
  const d = e.layout.domains + domain * abi.DOM_SIZE;
  let table = u32[(d + abi.DOM_ROOT) >>> 2]!;
  const pages: number[] = [];
  const counts: number[] = [];
  for (let level = u32[(d + abi.DOM_LEVELS) >>> 2]! - 1; level > 0; level--) {
    const slot = (table + Number((iova >> BigInt(12 + 9 * level)) & 511n) * 8) >>> 2;
    const lo = u32[slot]!;
    if ((lo & (abi.PTE_R | abi.PTE_W)) === 0 || lo & abi.PTE_PS) break;
    table = lo & ~(abi.PAGE_SIZE - 1);
    pages.push(table);
    counts.push((u32[slot + 1]! >>> (abi.PTE_COUNT_SHIFT - 32)) & (2 ** abi.PTE_COUNT_BITS - 1));
  }
  return { pages, counts };
}
