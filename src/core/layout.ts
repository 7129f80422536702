/**
 * Memory layout of one engine: where each region of the shared WebAssembly.Memory lives.
 *
 * The TS layer decides the layout once, writes it into the control block, and the Wasm core of
 * every thread reads its pointers from there (`init`). Regions, in address order from `origin`
 * (0 in a memory the engine owns, the start of `region` in a memory an emulator owns):
 * null guard | control block | device root | limbo ring | RAM window table | domain table |
 * translator slots | guest RAM windows allocated by the engine (optional) | page pool (up to the
 * memory maximum, growing the memory; or up to the region's end, never growing it).
 *
 * Every region is followed by a guard: the slack up to the next page boundary plus one whole
 * guard page (each translator slot has its own), filled with {@link GUARD_POISON} at create time.
 * Nothing may ever write there, so a scan of `guards` (test/ uses it after every fuzz step) catches
 * any write that overran its region. The null guard below the control block is poisoned too.
 * @module
 */
import * as abi from '../../assembly/abi';
import type { GuestRam } from './ram-window';

const WASM_PAGE = 65536;
const LIMBO_CAP = 8192;
/** Bytes of the guard page that follows each region (besides the slack up to it). */
const GUARD = abi.PAGE_SIZE;
/** The u32 every guard word holds; any other value there means something wrote out of bounds. */
export const GUARD_POISON = 0xdeadbeef;

/** Sizes the engine is created with; see `IommuOptions`. */
export interface LayoutOptions {
  translators: number;
  iotlbEntries: number;
  maxDomains: number;
  maxMemoryBytes: number;
  /** Sizes of the guest RAM windows the engine allocates in its own memory. */
  ramRegions: readonly number[];
  /** How many RAM windows there are in all (allocated, in an emulator's memory, external). */
  ramCount: number;
  /** A region of a memory the engine does not own: all its state goes there; 0 bytes = own memory. */
  region: { offset: number; bytes: number };
}

export interface Layout {
  /** Start of the engine's state in the memory (the region's offset; 0 in its own memory). */
  readonly origin: number;
  /** The control block. */
  readonly ctrl: number;
  readonly devRoot: number;
  readonly limbo: number;
  readonly limboCap: number;
  readonly domains: number;
  /** One page for the records of a batched map/unmap (MAPREC_*), the owner's only (src/engine/engine.ts). */
  readonly records: number;
  readonly domainCount: number;
  readonly slots: number;
  readonly slotCount: number;
  readonly slotSize: number;
  readonly iotlbSets: number;
  /** Entries of each slot's call cache (abi.ts CALL_*, right after the slot's IOTLB). */
  readonly callEntries: number;
  /** Bytes of a slot that hold state: header, IOTLB and call cache (the guard follows). */
  readonly slotBytes: number;
  /** The RAM window table (RAMWIN_* records) and its record count. */
  readonly ramTable: number;
  readonly ramCount: number;
  /** Memory offsets of the RAM windows the engine allocated, in `ramRegions` order. */
  readonly ram: readonly number[];
  readonly poolBase: number;
  /** End of the page pool: the region's end, or the memory maximum. */
  readonly poolLimit: number;
  readonly initialPages: number;
  readonly maximumPages: number;
  /** Byte ranges nothing may write (poisoned with GUARD_POISON), in address order. */
  readonly guards: readonly { readonly start: number; readonly bytes: number }[];
}

const alignUp = (value: number, to: number): number => Math.ceil(value / to) * to;

/** Computes the layout; the caller has validated the options. */
export function computeLayout(o: LayoutOptions): Layout {
  const iotlbSets = o.iotlbEntries / abi.TLB_WAYS;
  const origin = o.region.offset;
  const guards: { start: number; bytes: number }[] = [{ start: origin, bytes: abi.CTRL_BASE }];
  /** Guards [end, next page boundary + GUARD) and returns where the next region may start. */
  const after = (end: number): number => {
    const next = alignUp(end, abi.PAGE_SIZE) + GUARD;
    guards.push({ start: end, bytes: next - end });
    return next;
  };
  const ctrl = origin + abi.CTRL_BASE;
  const devRoot = after(ctrl + abi.CTRL_SIZE);
  const limbo = after(devRoot + 256 * 4);
  const ramTable = after(limbo + LIMBO_CAP * 8);
  const domains = after(ramTable + abi.RAM_WINDOWS_MAX * abi.RAMWIN_SIZE);
  const records = after(domains + o.maxDomains * abi.DOM_SIZE);
  const slots = after(records + abi.PAGE_SIZE);
  // Slot stride: the slot (header, IOTLB, call cache), then its own guard.
  const callEntries = Math.min(o.iotlbEntries, abi.CALL_ENTRIES_MAX);
  const slotBytes = abi.SLOT_IOTLB + iotlbSets * abi.TLB_SET_SIZE + callEntries * abi.CALL_ENTRY_SIZE;
  const slotSize = alignUp(slotBytes, abi.PAGE_SIZE) + GUARD;
  for (let i = 0; i < o.translators; i++) after(slots + i * slotSize + slotBytes);
  let poolBase = slots + o.translators * slotSize;
  const ram = o.ramRegions.map((bytes) => {
    const at = poolBase;
    poolBase = after(at + bytes);
    return at;
  });
  const maximumPages = Math.floor(o.maxMemoryBytes / WASM_PAGE);
  // The pool may use the memory up to its maximum, except the last page: a 4 GiB memory's end
  // would not fit the u32 pointers.
  const poolLimit = o.region.bytes > 0 ? origin + o.region.bytes : Math.min(maximumPages * WASM_PAGE, 2 ** 32 - abi.PAGE_SIZE);
  return {
    origin, ctrl, devRoot, limbo, limboCap: LIMBO_CAP, ramTable, ramCount: o.ramCount, domains, records,
    domainCount: o.maxDomains, slots, slotCount: o.translators, slotSize, iotlbSets, callEntries, slotBytes, ram, poolBase,
    poolLimit, initialPages: Math.ceil((poolBase + 16 * abi.PAGE_SIZE) / WASM_PAGE), maximumPages, guards,
  };
}

/**
 * The control block's initial words as [offset, value]; every other word starts at 0. Of these,
 * only CTRL_POOL_TOP and CTRL_EPOCH change afterwards (snapshots check the others on restore).
 */
export function controlBlockWords(l: Layout): [offset: number, value: number][] {
  return [
    [abi.CTRL_MAGIC, abi.CTRL_MAGIC_VALUE],
    [abi.CTRL_ABI, abi.ABI_VERSION],
    [abi.CTRL_DEV_ROOT, l.devRoot],
    [abi.CTRL_DOMAINS, l.domains],
    [abi.CTRL_DOMAIN_COUNT, l.domainCount],
    [abi.CTRL_SLOTS, l.slots],
    [abi.CTRL_SLOT_COUNT, l.slotCount],
    [abi.CTRL_SLOT_SIZE, l.slotSize],
    [abi.CTRL_IOTLB_SETS, l.iotlbSets],
    [abi.CTRL_CALL_ENTRIES, l.callEntries],
    [abi.CTRL_POOL_BASE, l.poolBase],
    [abi.CTRL_POOL_TOP, l.poolBase],
    [abi.CTRL_POOL_LIMIT, l.poolLimit],
    [abi.CTRL_LIMBO, l.limbo],
    [abi.CTRL_LIMBO_CAP, l.limboCap],
    [abi.CTRL_EPOCH, 1],
    [abi.CTRL_RAM_WINDOWS, l.ramTable],
    [abi.CTRL_RAM_COUNT, l.ramCount],
  ];
}

/** Writes the control block that the Wasm core binds to, the RAM window table and the guards. */
export function writeControlBlock(memory: WebAssembly.Memory, l: Layout, ram: GuestRam): void {
  const v = new DataView(memory.buffer, l.ctrl, abi.CTRL_SIZE);
  for (const [offset, value] of controlBlockWords(l)) v.setUint32(offset, value, true);
  const table = new DataView(memory.buffer, l.ramTable, abi.RAM_WINDOWS_MAX * abi.RAMWIN_SIZE);
  for (const [offset, value] of ram.tableWords()) table.setUint32(offset, value, true);
  const words = new Uint32Array(memory.buffer);
  for (const g of l.guards) words.fill(GUARD_POISON, g.start >>> 2, (g.start + g.bytes) >>> 2);
}
