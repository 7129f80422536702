/**
 * Memory layout of one engine: where each region of the shared WebAssembly.Memory lives.
 *
 * The TS layer decides the layout once, writes it into the control block, and the Wasm core of
 * every thread reads its pointers from there (`init`). Regions, in address order:
 * null guard | control block | device root | limbo ring | domain table | translator slots |
 * guest RAM (optional) | page pool (grows upward to the memory maximum).
 *
 * Every region is followed by a guard: the slack up to the next page boundary plus one whole
 * guard page (each translator slot has its own), filled with {@link GUARD_POISON} at create time.
 * Nothing may ever write there, so a scan of `guards` (test/ uses it after every fuzz step) catches
 * any write that overran its region. The null guard below the control block is poisoned too.
 * @module
 */
import * as abi from '../../assembly/abi';

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
  ramBytes: number;
}

export interface Layout {
  readonly devRoot: number;
  readonly limbo: number;
  readonly limboCap: number;
  readonly domains: number;
  readonly domainCount: number;
  readonly slots: number;
  readonly slotCount: number;
  readonly slotSize: number;
  readonly iotlbSets: number;
  readonly ram: number;
  readonly ramBytes: number;
  readonly poolBase: number;
  readonly initialPages: number;
  readonly maximumPages: number;
  /** Byte ranges nothing may write (poisoned with GUARD_POISON), in address order. */
  readonly guards: readonly { readonly start: number; readonly bytes: number }[];
}

const alignUp = (value: number, to: number): number => Math.ceil(value / to) * to;

/** Computes the layout; the caller has validated the options. */
export function computeLayout(o: LayoutOptions): Layout {
  const iotlbSets = o.iotlbEntries / abi.TLB_WAYS;
  const guards: { start: number; bytes: number }[] = [{ start: 0, bytes: abi.CTRL_BASE }];
  /** Guards [end, next page boundary + GUARD) and returns where the next region may start. */
  const after = (end: number): number => {
    const next = alignUp(end, abi.PAGE_SIZE) + GUARD;
    guards.push({ start: end, bytes: next - end });
    return next;
  };
  const devRoot = after(abi.CTRL_BASE + abi.CTRL_SIZE);
  const limbo = after(devRoot + 256 * 4);
  const domains = after(limbo + LIMBO_CAP * 8);
  const slots = after(domains + o.maxDomains * abi.DOM_SIZE);
  // Slot stride: the slot (header + IOTLB), then its own guard.
  const slotBytes = abi.SLOT_IOTLB + iotlbSets * abi.TLB_SET_SIZE;
  const slotSize = alignUp(slotBytes, abi.PAGE_SIZE) + GUARD;
  for (let i = 0; i < o.translators; i++) after(slots + i * slotSize + slotBytes);
  const ram = slots + o.translators * slotSize;
  const poolBase = o.ramBytes > 0 ? after(ram + o.ramBytes) : ram;
  return {
    devRoot, limbo, limboCap: LIMBO_CAP, domains, domainCount: o.maxDomains, slots,
    slotCount: o.translators, slotSize, iotlbSets, ram, ramBytes: o.ramBytes, poolBase,
    initialPages: Math.ceil((poolBase + 16 * abi.PAGE_SIZE) / WASM_PAGE),
    maximumPages: Math.floor(o.maxMemoryBytes / WASM_PAGE),
    guards,
  };
}

/**
 * The control block's initial words as [offset, value]; every other word starts at 0. Of these,
 * only CTRL_POOL_TOP and CTRL_EPOCH change afterwards (snapshots check the others on restore).
 */
export function controlBlockWords(l: Layout, ramBase = 0n): [offset: number, value: number][] {
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
    [abi.CTRL_POOL_BASE, l.poolBase],
    [abi.CTRL_POOL_TOP, l.poolBase],
    // The pool may use the memory up to its maximum, except the last page: a 4 GiB memory's end
    // would not fit the u32 pointers.
    [abi.CTRL_POOL_LIMIT, Math.min(l.maximumPages * WASM_PAGE, 2 ** 32 - abi.PAGE_SIZE)],
    [abi.CTRL_LIMBO, l.limbo],
    [abi.CTRL_LIMBO_CAP, l.limboCap],
    [abi.CTRL_EPOCH, 1],
    [abi.CTRL_RAM, l.ram],
    [abi.CTRL_RAM_BYTES, l.ramBytes],
    [abi.CTRL_RAM_BASE_LO, Number(ramBase & 0xffffffffn)],
    [abi.CTRL_RAM_BASE_HI, Number((ramBase >> 32n) & 0xffffffffn)],
  ];
}

/** Writes the control block that the Wasm core binds to. */
export function writeControlBlock(memory: WebAssembly.Memory, l: Layout, ramBase = 0n): void {
  const v = new DataView(memory.buffer, abi.CTRL_BASE, abi.CTRL_SIZE);
  for (const [offset, value] of controlBlockWords(l, ramBase)) v.setUint32(offset, value, true);
  const words = new Uint32Array(memory.buffer);
  for (const g of l.guards) words.fill(GUARD_POISON, g.start >>> 2, (g.start + g.bytes) >>> 2);
}
