/**
 * Translator: one thread's DMA path into an engine. The owner thread has one inside its `Iommu`;
 * a worker gets its own with `Translator.attach(handle)`, over the same memory, with its own
 * IOTLB and counters (its translator slot), so translators never contend on the hit path.
 *
 * Validity contract (QEMU's): a result is valid until the next unmap/detach/replace/destroy/close
 * that covers it returns; after that, no translation that starts later returns it.
 * @module
 */
import * as abi from '../../assembly/abi';
import { Batch } from './batch';
import { CallTlb } from './call-tlb';
import { Core } from '../core/core';
import { dmaCopy, type DmaResult } from './dma';
import { FaultLog } from './fault-log';
import { GuestRam, type RamWindowSpec } from '../core/ram-window';
import { FAULT_REASONS, TranslationOut, decodeInto, faultCore, toTranslation, type Access, type Translation } from './translation';

/** What a worker needs to translate over an engine: structured-cloneable. */
export interface TranslatorHandle {
  /** The compiled Wasm core (shared with the owner: workers do not compile it again). */
  readonly module: WebAssembly.Module;
  /** The engine memory (shared). */
  readonly memory: WebAssembly.Memory;
  /** The translator slot reserved for the worker: its own IOTLB and counters. */
  readonly slot: number;
  /** A batch ring reserved for this translator. */
  readonly batch: {
    /** Requests per `Batch.run`. */
    readonly capacity: number;
    /** Byte offset of the request words in the memory. */
    readonly requestPtr: number;
    /** Byte offset of the result words in the memory. */
    readonly resultPtr: number;
  };
  /** The control block's address in the memory (the engine's region may start anywhere). */
  readonly ctrl: number;
  /** Guest RAM windows: in the memory at `offset`, or in a (shared) `buffer`. */
  readonly ram: readonly RamWindowSpec[];
}

/** Hit, miss and fault counters of one translator slot (or summed over all). */
export interface TranslatorStats {
  /** Requests translated or faulted: hits + misses + malformed requests. */
  translations: number;
  /** Translations answered by the IOTLB. */
  hits: number;
  /** Translations that walked the tables. */
  misses: number;
  /** Translations that faulted. */
  faults: number;
  /** Faults by `FaultReason` (only reasons that occurred). */
  faultsByReason: Record<string, number>;
  /** Table entries read by misses through user-managed or nested tables (the extended walker). */
  tableReads: number;
}

const BAD_REQUEST_INFO = abi.FAULT_BAD_REQUEST << abi.INFO_REASON_SHIFT;
/** A number the core takes as a u32 argument; anything else (bigint, string, symbol…) is a bad request. */
const isU32 = (v: unknown): v is number => typeof v === 'number' && v >>> 0 === v;
const u32Or0 = (v: unknown): number => (typeof v === 'number' ? v >>> 0 : 0);
const TWO_32 = 4294967296;
const TWO_64 = 1n << 64n;
const TWO_64_NUMBER = 2 ** 64;

/**
 * A thread's translator: its own IOTLB and counters over the engine's (shared) memory. The owner's
 * is inside `Iommu`; a worker gets its own with `Translator.attach(iommu.translatorHandle())` and
 * then translates concurrently with the owner's control calls (README "Worker translators").
 * @example
 * ```ts no-run
 * // worker thread, with the handle posted by the owner
 * const t = Translator.attach(workerData.handle);
 * const out = new TranslationOut();
 * t.translateInto(out, rid, NO_PASID, iova, Access.Read);   // per call, no allocation
 * ```
 */
export class Translator {
  /** Faults of this thread's per-call translations. */
  readonly faults = new FaultLog();
  private readonly scratch = new TranslationOut();
  private batchRing: Batch | undefined;
  /** @internal The look into this slot's call cache (software DMA takes its hits there too). */
  readonly callTlb: CallTlb;
  /** Scratch for a bigint IOVA's words: the same 8 bytes as u64 and as two int32 (little endian). */
  private readonly iovaWords = new BigUint64Array(1);
  private readonly iovaHalves = new Int32Array(this.iovaWords.buffer);
  /** @internal The output (or fault) address words of the last `translateWords`, as int32 (`>>> 0` reads them unsigned). */
  outLo = 0;
  /** @internal */
  outHi = 0;
  /** @internal The bytes of the last `translateRun`'s run. */
  runBytes = 0;

  /** @internal */
  constructor(
    /** @internal */
    readonly core: Core,
    private readonly ring: TranslatorHandle['batch'] | undefined,
    /** @internal Guest RAM, for software DMA. */
    readonly guestRam: GuestRam,
  ) {
    this.callTlb = new CallTlb(core);
  }

  /** Binds a worker to the engine described by `handle` (from `Iommu.translatorHandle()`). */
  static attach(handle: TranslatorHandle): Translator {
    const ram = new GuestRam(handle.ram, handle.memory);
    return new Translator(new Core(handle.module, handle.memory, handle.slot, handle.ctrl, ram.imports), handle.batch, ram);
  }

  /**
   * The guest RAM window with the lowest base (empty when none); zero-copy, shared with the owner.
   * See `Iommu.ram` for how long a view stays valid.
   */
  get ram(): Uint8Array {
    return this.guestRam.empty ? new Uint8Array(0) : this.guestRam.view(0);
  }

  /** Guest-physical address of `ram[0]`. */
  get ramBase(): bigint {
    return this.guestRam.windows[0]?.base ?? 0n;
  }

  /**
   * Device-side DMA read: translates `[iova, iova + dst.length)` page by page (any leaf size) for
   * `rid`/`pasid` and copies from guest RAM into `dst`; stops at the first fault. Never throws.
   */
  dmaRead(rid: number, pasid: number, iova: number | bigint, dst: Uint8Array): DmaResult {
    return dmaCopy(this, rid, pasid, iova, dst, false);
  }

  /** Device-side DMA write of `src` to `[iova, iova + src.length)`; stops at the first fault. Never throws. */
  dmaWrite(rid: number, pasid: number, iova: number | bigint, src: Uint8Array): DmaResult {
    return dmaCopy(this, rid, pasid, iova, src, true);
  }

  /**
   * Translates one request into `out` without allocating. Never throws: malformed arguments give a
   * `bad-request` fault.
   */
  translateInto(out: TranslationOut, rid: number, pasid: number, iova: number | bigint, access: Access): TranslationOut {
    // Kept small so TurboFan inlines it into the caller's loop (a call would also box a double
    // IOVA; V8 inlines a function only while it and what it inlined fit a bytecode budget): the
    // IOVA's words, then the call cache, which checks the rest; misses and malformed requests out
    // of line. Every integral number below 2^64 splits exactly into the two words. Number literals:
    // a module constant would be loaded and checked on every call.
    let lo = 0;
    let hi = 0;
    let exact = false;
    if (typeof iova === 'number') {
      lo = iova | 0;
      hi = (iova / 4294967296) | 0;
      exact = (lo >>> 0) + (hi >>> 0) * 4294967296 === iova;
    } else if (typeof iova === 'bigint') {
      // A bigint's words through a BigUint64Array (no BigInt arithmetic); reading it back equal
      // means it was in [0, 2^64) (the store wraps anything else).
      const words = this.iovaWords;
      words[0] = iova;
      exact = words[0] === iova;
      lo = this.iovaHalves[0]!;
      hi = this.iovaHalves[1]!;
    }
    if (!exact) return this.bad(out, rid, pasid, iova, access);
    const answered = this.callTlb.into(out, rid, pasid, lo, hi, access);
    return answered > 0 ? out : this.restInto(out, answered, rid, pasid, lo, hi, access);
  }

  /**
   * @internal One request with checked u32 arguments (the IOVA as int32 words `lo`, `hi`): returns
   * the info word and leaves the output (or fault) address words in `outLo`/`outHi`. Answered from
   * the call cache: a hit, or the entry the core just recorded; else from the result record.
   */
  translateWords(rid: number, pasid: number, lo: number, hi: number, access: number): number {
    const tlb = this.callTlb;
    const e = ((rid >>> 16) | (access >>> 4)) === 0 ? tlb.lookup(rid, pasid, lo, hi, access) : tlb.ask(rid, pasid, lo, hi, access);
    if (e < 0) return this.result(rid, pasid, lo, hi, access);
    this.outLo = tlb.hitLo(e, lo);
    this.outHi = tlb.hitHi(e);
    return tlb.hitInfo(e);
  }

  /**
   * @internal One request with u32 arguments over a span of `length` bytes (1 to 2^32 - 1): the
   * first leaf's info word, its output (or fault) address words in `outLo`/`outHi`, and in
   * `runBytes` how many bytes from the IOVA continue that output contiguously through IOTLB hits
   * (0 on a fault). One core call for the span (assembly/translate.ts `translateRun`).
   */
  translateRun(rid: number, pasid: number, lo: number, hi: number, access: number, length: number): number {
    this.runBytes = this.core.exports.translateRun(rid, pasid, lo, hi, access, length) >>> 0;
    return this.result(rid, pasid, lo, hi, access);
  }

  /**
   * `translateInto` past what `CallTlb.into` answered (`answered` is its value): the answer the core
   * left in the result record, or for arguments the call cache does not take, their checks and
   * then the core's answer (which it records nothing of), or a malformed request's fault.
   */
  private restInto(out: TranslationOut, answered: number, rid: number, pasid: number, lo: number, hi: number, access: number): TranslationOut {
    if (answered < 0) {
      if (!isU32(rid) || !isU32(pasid) || !isU32(access)) return this.bad(out, rid, pasid, (BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0), access);
      this.core.exports.translate(rid, pasid, lo, hi, access);
    }
    return decodeInto(out, this.result(rid, pasid, lo, hi, access), this.outLo, this.outHi);
  }

  /**
   * The answer the core left in this slot's result record (a fault, or one it did not record in
   * the call cache), as `translateWords` returns it; logs a fault. Rebinds the call cache's views
   * when the memory's growth replaced them.
   */
  private result(rid: number, pasid: number, lo: number, hi: number, access: number): number {
    const r = this.resultWords();
    if (r !== this.callTlb.boundTo) this.callTlb.rebind();
    const info = r[abi.RES_INFO >>> 2]! | 0;
    this.outLo = r[0]! | 0;
    this.outHi = r[1]! | 0;
    if (!(info & abi.INFO_OK)) this.log(info, rid, pasid, lo, hi, access);
    return info;
  }

  /** This slot's result record (output or fault address words, then info). */
  private resultWords(): Uint32Array {
    const r = this.core.result;
    // Detached: an emulator grew the unshared memory it lent the engine (views need re-creating).
    return r.length === 0 ? this.core.resync() : r;
  }

  /** Translates one request; allocates the result (use `translateInto` on hot paths). Never throws. */
  translate(rid: number, pasid: number, iova: number | bigint, access: Access): Translation {
    const r = this.translateInto(this.scratch, rid, pasid, iova, access);
    // Every integral number below 2^64 is an exact address (2^53 and up too): report it as given.
    const iovaBig = typeof iova === 'bigint' ? iova : Number.isInteger(iova) && iova >= 0 && iova < TWO_64_NUMBER ? BigInt(iova) : 0n;
    return toTranslation(iovaBig, r);
  }

  /** The batch ring of this translator (the handle's for a worker). */
  batch(): Batch {
    if (!this.ring) throw new RangeError('this translator has no batch ring; use Iommu.batch(capacity)');
    return (this.batchRing ??= new Batch(this.core, this.ring.capacity, this.ring.requestPtr, this.ring.resultPtr));
  }

  /** This thread's counters. */
  stats(): TranslatorStats {
    return readSlotStats(this.core, [this.core.slot]);
  }

  /** @internal A malformed DMA request, refused before the core: logged and counted as `bad` does. */
  refuse(rid: unknown, pasid: unknown, iova: unknown, access: unknown): void {
    this.bad(this.scratch, rid, pasid, iova, access);
  }

  private bad(out: TranslationOut, rid: unknown, pasid: unknown, iova: unknown, access: unknown): TranslationOut {
    decodeInto(out, BAD_REQUEST_INFO, 0, 0);
    this.faults.push({
      rid: u32Or0(rid), pasid: u32Or0(pasid),
      iova: typeof iova === 'bigint' && iova >= 0n && iova < TWO_64 ? iova : 0n,
      access: u32Or0(access), reason: 'bad-request', level: 0, stage: 0,
    });
    this.countBadRequest();
    return out;
  }

  /** Counts a request refused before the core, in this slot's counters, as the core counts its own. */
  private countBadRequest(): void {
    const core = this.core;
    core.sync();
    const u32 = core.u32;
    const base = (core.ctrl(abi.CTRL_SLOTS) + core.slot * core.ctrl(abi.CTRL_SLOT_SIZE)) >>> 2;
    const faults = base + (abi.SLOT_FAULTS >>> 2);
    u32[faults] = u32[faults]! + 1;
    if (u32[faults] === 0) u32[faults + 1] = u32[faults + 1]! + 1;
    const reason = base + (abi.SLOT_REASONS >>> 2) + abi.FAULT_BAD_REQUEST;
    u32[reason] = u32[reason]! + 1;
  }

  private log(info: number, rid: number, pasid: number, lo: number, hi: number, access: number): void {
    this.faults.push({ rid, pasid, iova: (BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0), access, ...faultCore(info) });
  }
}

/** Sums the counters of translator `slots`. */
export function readSlotStats(core: Core, slots: Iterable<number>): TranslatorStats {
  const u32 = core.u32;
  const slotsBase = core.ctrl(abi.CTRL_SLOTS);
  const slotSize = core.ctrl(abi.CTRL_SLOT_SIZE);
  const s: TranslatorStats = { translations: 0, hits: 0, misses: 0, faults: 0, faultsByReason: {}, tableReads: 0 };
  const u64 = (at: number): number => u32[at >>> 2]! + u32[(at >>> 2) + 1]! * TWO_32;
  for (const slot of slots) {
    const base = slotsBase + slot * slotSize;
    s.hits += u64(base + abi.SLOT_HITS);
    s.misses += u64(base + abi.SLOT_MISSES);
    s.faults += u64(base + abi.SLOT_FAULTS);
    s.tableReads += u64(base + abi.SLOT_WALK_READS);
    for (let r = 1; r < abi.FAULT_MAX; r++) {
      const n = u32[(base + abi.SLOT_REASONS + r * 4) >>> 2]!;
      if (n) s.faultsByReason[FAULT_REASONS[r]!] = (s.faultsByReason[FAULT_REASONS[r]!] ?? 0) + n;
    }
  }
  // Malformed requests are faults that never reached the IOTLB (neither hit nor miss).
  s.translations = s.hits + s.misses + (s.faultsByReason['bad-request'] ?? 0);
  return s;
}
