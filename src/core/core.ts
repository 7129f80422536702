/**
 * The binding to the Wasm core: the one place that touches `instance.exports` and raw memory.
 *
 * Each thread (the owner and every worker translator) instantiates the compiled module once over
 * the engine's memory and binds it to its own translator slot. Views over the memory are rebuilt
 * whenever the buffer changes (memory growth replaces `memory.buffer`).
 * @module
 */
import * as abi from '../../assembly/abi';
import { CORE_SHARED_BASE64, CORE_UNSHARED_BASE64 } from '../generated/core-wasm';
import type { RamImports } from './ram-window';

/** Every export of assembly/index.ts, typed once. Pointers are byte offsets into the memory. */
export interface CoreExports {
  init(ctrl: number, slot: number): void;
  abiHash(): number;
  domainInit(index: number, levels: number): number;
  domainFree(index: number): number;
  deviceAdd(rid: number, pasidBits: number): number;
  deviceRemove(rid: number): number;
  setRidDomain(rid: number, domain: number): number;
  setPasidDomain(rid: number, pasid: number, domain: number): number;
  map(domain: number, iova: bigint, oa: bigint, length: bigint, perm: number): number;
  unmap(domain: number, start: bigint, last: bigint): number;
  mapBatch(domain: number, recs: number, count: number): number;
  unmapBatch(domain: number, recs: number, count: number): number;
  /** The call-cache entry (word index) holding the answer, or -1: the answer is only in the result record. */
  translate(rid: number, pasid: number, iovaLo: number, iovaHi: number, access: number): number;
  /** Bytes of the run of leaves from the IOVA with contiguous output (≤ length), or 0: the first leaf faulted. */
  translateRun(rid: number, pasid: number, iovaLo: number, iovaHi: number, access: number, length: number): number;
  translateBatch(req: number, res: number, n: number): number;
  bufferAlloc(pages: number): number;
  bufferFree(ptr: number, pages: number): number;
  reclaim(): number;
  domainSetDirty(domain: number, on: number): number;
  domainSweep(domain: number): number;
  dirtyBitmap(domain: number, start: bigint, last: bigint, pageLg2: number, bitmap: number, clear: number): number;
  userDomainInit(index: number, fmt: number, levels: number, root: bigint, flags: number, parent: number, paBits: number): number;
  userDomainFree(index: number): number;
  domainSetPri(index: number, on: number): number;
  domainInvalidateAll(index: number): number;
  deviceSetPri(rid: number, on: number): number;
  iotlbInvalidateScan(domain: number, anyPasid: number, pasid: number, first: bigint, last: bigint): void;
  iotlbInvalidatePages(domain: number, rid: number, pasid: number, first: bigint, last: bigint): void;
  iotlbInvalidateLeafScan(domain: number, anyPasid: number, pasid: number, first: bigint, last: bigint): number;
}

const decode = (b64: string): Uint8Array<ArrayBuffer> => {
  const text = atob(b64);
  const bytes = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i);
  return bytes;
};

const modules: { shared?: WebAssembly.Module; unshared?: WebAssembly.Module } = {};

/** The compiled core for a shared or an unshared memory (compiled once per process). */
export function coreModule(shared: boolean): WebAssembly.Module {
  const key = shared ? 'shared' : 'unshared';
  return (modules[key] ??= new WebAssembly.Module(decode(shared ? CORE_SHARED_BASE64 : CORE_UNSHARED_BASE64)));
}

/** Async variant for contexts that refuse synchronous compilation of large modules. */
export async function coreModuleAsync(shared: boolean): Promise<WebAssembly.Module> {
  const key = shared ? 'shared' : 'unshared';
  return (modules[key] ??= await WebAssembly.compile(decode(shared ? CORE_SHARED_BASE64 : CORE_UNSHARED_BASE64)));
}

/** The FNV-1a digest of the ABI constants; must equal the binary's `abiHash()`. */
export function expectedAbiHash(): number {
  let h = 2166136261;
  for (const v of [abi.ABI_VERSION, abi.CTRL_SIZE, abi.DOM_SIZE, abi.DEV_SIZE, abi.TLB_ENTRY_SIZE,
    abi.RES_SIZE, abi.REQ_SIZE, abi.SLOT_IOTLB, abi.FAULT_MAX, abi.CTRL_FAIL_COUNTDOWN,
    abi.CTRL_RAM_COUNT, abi.RAMWIN_SIZE, abi.RAM_WINDOWS_MAX, abi.SLOT_PRQ, abi.PRQ_SIZE, abi.INFO_CAP_SHIFT, abi.DOM_PABITS, abi.FMT_COUNT, abi.CTRL_CLEAN_HEAD, abi.LIMBO_CLEAN, abi.CTRL_SHOOTDOWN, abi.CTRL_CALL_ENTRIES, abi.CALL_ENTRY_SIZE, abi.CALL_COUNT, abi.DOM_SPARE, abi.CTRL_SPARE_PAGES]) {
    h = Math.imul(h ^ v, 16777619) >>> 0;
  }
  return h;
}

/** One thread's instance of the core, bound to translator slot `slot`. */
export class Core {
  readonly exports: CoreExports;
  readonly memory: WebAssembly.Memory;
  readonly slot: number;
  private byteLength = -1;
  private u32view = new Uint32Array(0);
  private u8view = new Uint8Array(0);
  /** This slot's result record as 4 u32 words (physLo, physHi, info, reserved). */
  result = new Uint32Array(0);
  /** This slot's hit counter (u64 as lo, hi words). */
  hits = new Uint32Array(0);
  /** The control block's shootdown count (abi.ts CTRL_SHOOTDOWN), one word. */
  shootdown = new Int32Array(0);
  /** Counts view rebuilds, so holders of derived views (batches) know when to rebuild theirs. */
  viewEpoch = 0;

  /**
   * @param ctrlBase the control block's address (src/layout.ts: after the engine region's start)
   * @param ram the imports that reach guest RAM windows outside the memory (src/ram-window.ts)
   */
  constructor(module: WebAssembly.Module, memory: WebAssembly.Memory, slot: number, readonly ctrlBase: number, ram: RamImports) {
    const instance = new WebAssembly.Instance(module, {
      env: {
        memory,
        abort: () => { throw new Error('ioasid core: abort'); },
        ramLoad: ram.ramLoad,
        ramCas: ram.ramCas,
      },
    });
    this.exports = instance.exports as unknown as CoreExports;
    this.memory = memory;
    this.slot = slot;
    const got = this.exports.abiHash() >>> 0;
    if (got !== expectedAbiHash()) {
      throw new Error(`ioasid core: ABI mismatch (binary ${got.toString(16)}, TS ${expectedAbiHash().toString(16)}); rebuild the Wasm`);
    }
    this.exports.init(ctrlBase, slot);
    this.sync();
  }

  /**
   * Rebuilds the views if the memory grew. The owner calls it after every control export that
   * may allocate: growth replaces `memory.buffer` (and detaches it when unshared).
   */
  sync(): void {
    const buffer = this.memory.buffer;
    if (buffer.byteLength !== this.byteLength) {
      this.byteLength = buffer.byteLength;
      this.u32view = new Uint32Array(buffer);
      this.u8view = new Uint8Array(buffer);
      const slotBase = this.ctrlFrom(abi.CTRL_SLOTS) + this.slot * this.ctrlFrom(abi.CTRL_SLOT_SIZE);
      this.result = new Uint32Array(buffer, slotBase + abi.SLOT_RESULT, abi.RES_SIZE / 4);
      this.hits = new Uint32Array(buffer, slotBase + abi.SLOT_HITS, 2);
      this.shootdown = new Int32Array(buffer, this.ctrlBase + abi.CTRL_SHOOTDOWN, 1);
      this.viewEpoch++;
    }
    this.grown = this.u32view[(this.ctrlBase + abi.CTRL_PAGES_GROWN) >>> 2]!;
  }

  /** CTRL_PAGES_GROWN as of the last `sync`. */
  private grown = -1;

  /**
   * `sync` after a control export of the owner, cheaply: the only growth such an export can make
   * is the core's own, which assembly/pool.ts counts in CTRL_PAGES_GROWN, so the views are rebuilt
   * only when that count moved. Reading `memory.buffer` costs about 100 ns per call on a shared
   * memory in V8, more than a whole 4 KiB map. (Growth by someone else -- an emulator growing the
   * memory it lent -- is not an export's doing; `resync` handles it. A view it detached reads
   * undefined here, which also calls `sync`.)
   */
  syncAfterControl(): void {
    if (this.u32view[(this.ctrlBase + abi.CTRL_PAGES_GROWN) >>> 2] !== this.grown) this.sync();
  }

  /**
   * Re-creates the views after growth someone else did (an emulator growing the unshared memory it
   * lent the engine detaches them all); returns the new result record.
   */
  resync(): Core['result'] {
    this.sync();
    return this.result;
  }

  private ctrlFrom(offset: number): number {
    return this.u32view[(this.ctrlBase + offset) >>> 2]!;
  }

  /** u32 words of the whole memory (as of the last `sync`). */
  get u32(): Uint32Array {
    return this.u32view;
  }

  /** Bytes of the whole memory (as of the last `sync`). */
  get u8(): Uint8Array {
    return this.u8view;
  }

  /** A u32 of the control block. */
  ctrl(offset: number): number {
    return this.u32[(this.ctrlBase + offset) >>> 2]!;
  }

  /** Arms fault injection: the `n`th fallible step from now fails (0 disarms). */
  setFailCountdown(n: number): void {
    this.u32[(this.ctrlBase + abi.CTRL_FAIL_COUNTDOWN) >>> 2] = n;
  }
}
