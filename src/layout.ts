/**
 * Memory layout of one engine: where each region of the shared WebAssembly.Memory lives.
 *
 * The TS layer decides the layout once, writes it into the control block, and the Wasm core of
 * every thread reads its pointers from there (`init`). Regions, in address order:
 * null guard | control block | device root | limbo ring | domain table | translator slots |
 * guest RAM (optional) | page pool (grows upward to the memory maximum).
 * @module
 */
import * as abi from '../assembly/abi';

const WASM_PAGE = 65536;
const LIMBO_CAP = 8192;

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
}

const alignUp = (value: number, to: number): number => Math.ceil(value / to) * to;

/** Computes the layout; the caller has validated the options. */
export function computeLayout(o: LayoutOptions): Layout {
  const iotlbSets = o.iotlbEntries / abi.TLB_WAYS;
  const slotSize = alignUp(abi.SLOT_IOTLB + iotlbSets * abi.TLB_SET_SIZE, abi.PAGE_SIZE);
  const devRoot = alignUp(abi.CTRL_BASE + abi.CTRL_SIZE, abi.PAGE_SIZE);
  const limbo = devRoot + abi.PAGE_SIZE;
  const domains = limbo + LIMBO_CAP * 8;
  const slots = alignUp(domains + o.maxDomains * abi.DOM_SIZE, abi.PAGE_SIZE);
  const ram = slots + o.translators * slotSize;
  const poolBase = alignUp(ram + o.ramBytes, abi.PAGE_SIZE);
  return {
    devRoot, limbo, limboCap: LIMBO_CAP, domains, domainCount: o.maxDomains, slots,
    slotCount: o.translators, slotSize, iotlbSets, ram, ramBytes: o.ramBytes, poolBase,
    initialPages: Math.ceil((poolBase + 16 * abi.PAGE_SIZE) / WASM_PAGE),
    maximumPages: Math.floor(o.maxMemoryBytes / WASM_PAGE),
  };
}

/** Writes the control block that the Wasm core binds to. */
export function writeControlBlock(memory: WebAssembly.Memory, l: Layout): void {
  const v = new DataView(memory.buffer, abi.CTRL_BASE, abi.CTRL_SIZE);
  const put = (offset: number, value: number): void => v.setUint32(offset, value, true);
  put(abi.CTRL_MAGIC, abi.CTRL_MAGIC_VALUE);
  put(abi.CTRL_ABI, abi.ABI_VERSION);
  put(abi.CTRL_DEV_ROOT, l.devRoot);
  put(abi.CTRL_DOMAINS, l.domains);
  put(abi.CTRL_DOMAIN_COUNT, l.domainCount);
  put(abi.CTRL_SLOTS, l.slots);
  put(abi.CTRL_SLOT_COUNT, l.slotCount);
  put(abi.CTRL_SLOT_SIZE, l.slotSize);
  put(abi.CTRL_IOTLB_SETS, l.iotlbSets);
  put(abi.CTRL_POOL_BASE, l.poolBase);
  put(abi.CTRL_POOL_TOP, l.poolBase);
  // The pool may use the memory up to its maximum, except the last page: a 4 GiB memory's end
  // would not fit the u32 pointers.
  put(abi.CTRL_POOL_LIMIT, Math.min(l.maximumPages * WASM_PAGE, 2 ** 32 - abi.PAGE_SIZE));
  put(abi.CTRL_LIMBO, l.limbo);
  put(abi.CTRL_LIMBO_CAP, l.limboCap);
  put(abi.CTRL_EPOCH, 1);
}
