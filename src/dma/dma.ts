/**
 * Device-side software DMA: what an emulated device does to read or write guest memory through
 * the IOMMU. The transfer is translated leaf by leaf (a 2 MiB leaf is one translation, not 512),
 * copied to or from guest RAM, and stops at the first fault, reporting it and the bytes done —
 * as a PCIe device would see a completion with an error part way through a burst.
 * @module
 */
import * as abi from '../../assembly/abi';
import type { GuestRam } from '../core/ram-window';
import type { CallTlb } from './call-tlb';
import { Access, faultCore, type Fault } from './translation';

/** Outcome of a DMA transfer: bytes done before the first fault, and that fault (if any). */
export interface DmaResult {
  /** Bytes copied before the transfer ended (all of them when there is no fault). */
  bytes: number;
  /** `not-ram`: the address translated, but its output is outside guest RAM. */
  fault?: Fault | {
    /** The translation succeeded but its output is not guest RAM. */
    readonly reason: 'not-ram';
    /** Always 0. */
    readonly level: 0;
    /** Always 0. */
    readonly stage: 0;
    /** The output address that is outside guest RAM. */
    readonly phys: bigint;
  };
}

/**
 * What a transfer needs of its translator. A `Translator` is one; the interface keeps this file
 * below translator.ts (which calls `dmaCopy`), so the two do not import each other.
 */
export interface DmaPort {
  /** Guest RAM, where the copies go (src/core/ram-window.ts). */
  readonly guestRam: GuestRam;
  /** The translator's call cache: a one-page transfer's hit is read there (call-tlb.ts). */
  readonly callTlb: CallTlb;
  /** The output (or fault) address words of the last `translateWords`, lo and hi, as int32. */
  readonly outLo: number;
  readonly outHi: number;
  /** Logs and counts a malformed request (refused before the core) as a bad-request fault, as the per-call path does. */
  refuse(rid: unknown, pasid: unknown, iova: unknown, access: unknown): void;
  /** One request with u32 arguments: the info word; the address words are in `outLo`/`outHi`. */
  translateWords(rid: number, pasid: number, lo: number, hi: number, access: number): number;
  /** `translateWords` over `length` bytes: also sets `runBytes`, the bytes whose output continues the first leaf's. */
  translateRun(rid: number, pasid: number, lo: number, hi: number, access: number, length: number): number;
  /** The run of the last `translateRun`. */
  readonly runBytes: number;
}

const TWO_64 = 1n << 64n;
const MAX_SAFE_BIG = BigInt(Number.MAX_SAFE_INTEGER);
const TWO_32 = 4294967296;
/** The most bytes one `translateRun` is asked for (its length is a u32). */
const RUN_MAX = 2 ** 30;
const DONE: DmaResult = Object.freeze({ bytes: 0 });
/** The last whole-transfer result handed out: transfers of one size share one frozen object. */
let whole: DmaResult = DONE;

const isU32 = (v: unknown): v is number => typeof v === 'number' && v >>> 0 === v;

/**
 * Copies between `data` and the RAM behind `[iova, iova + data.length)`; `toRam` is a write.
 *
 * Leaves whose output addresses follow each other (a buffer mapped page by page onto contiguous
 * RAM) are translated by one core call (assembly/translate.ts `translateRun`) and copied as one
 * run, so a transfer costs a call and a copy per contiguous run, not per page. Every leaf is
 * translated and checked to be RAM before the run holding it is copied; on a fault the runs before
 * it are copied, as `bytes` says. Results are frozen.
 */
export function dmaCopy(t: DmaPort, rid: number, pasid: number, iova: number | bigint, data: Uint8Array, toRam: boolean): DmaResult {
  // The common case first, small enough for V8 to inline into an emulator's loop together with
  // what it calls (V8's budget counts the bytecode of every function inlined, so everything else,
  // a miss included, is one call out of line): a number IOVA, a transfer inside one 4 KiB page
  // (any leaf holds the whole page) answered by the call cache, to or from the first RAM window.
  // Number literals and ABI constants (folded when bundled): a module object would be loaded and
  // checked per call.
  if (typeof iova === 'number' && data instanceof Uint8Array) {
    const n = data.length;
    const lo = iova | 0;
    const hi = (iova / 4294967296) | 0;
    if (n !== 0 && (lo & 4095) + n <= 4096 && (lo >>> 0) + (hi >>> 0) * 4294967296 === iova) {
      const tlb = t.callTlb;
      // Only a number RID below 2^16 and a u32 PASID are keys of the call cache (CallTlb.find).
      const e = typeof rid === 'number' && typeof pasid === 'number' && (rid & 0xffff) === rid && pasid >>> 0 === pasid
        ? tlb.find(rid, pasid, lo, hi, toRam ? abi.ACCESS_WRITE : abi.ACCESS_READ) : -1;
      if (e >= 0) return t.guestRam.copyPage(tlb.hitLo(e, lo), tlb.hitHi(e), data, toRam) ? complete(n) : copied(t, data, toRam, e, lo);
    }
  }
  return dmaMiss(t, rid, pasid, iova, data, toRam);
}

/** `dmaCopy` past hit `e` (for IOVA low word `lo`) whose output `GuestRam.copyPage` does not reach: any window, or not RAM. */
function copied(t: DmaPort, data: Uint8Array, toRam: boolean, e: number, lo: number): DmaResult {
  const outLo = t.callTlb.hitLo(e, lo) >>> 0;
  const outHi = t.callTlb.hitHi(e) >>> 0;
  return copyRun(t, data, toRam, outHi * TWO_32 + outLo, 0, data.length) ? complete(data.length) : notRam(0, outLo, outHi);
}

/**
 * `dmaCopy` of what the call cache did not answer. A transfer inside one page asks the translator
 * (which asks the core, and the core records its answer for the next one); any other is `dmaSpan`.
 */
function dmaMiss(t: DmaPort, rid: number, pasid: number, iova: number | bigint, data: Uint8Array, toRam: boolean): DmaResult {
  if (typeof iova === 'number' && data instanceof Uint8Array && isU32(rid) && isU32(pasid)) {
    const n = data.length;
    const lo = iova | 0;
    const hi = (iova / TWO_32) | 0;
    if (n !== 0 && (lo & 4095) + n <= 4096 && (lo >>> 0) + (hi >>> 0) * TWO_32 === iova) {
      const info = t.translateWords(rid, pasid, lo, hi, toRam ? Access.Write : Access.Read);
      if (!(info & abi.INFO_OK)) return failed(0, faultCore(info));
      const phys = (t.outHi >>> 0) * TWO_32 + (t.outLo >>> 0);
      return copyRun(t, data, toRam, phys, 0, n) ? complete(n) : notRam(0, t.outLo >>> 0, t.outHi >>> 0);
    }
  }
  return dmaSpan(t, rid, pasid, iova, data, toRam);
}

/** `dmaCopy` in general: any IOVA, any length, run by run (`DmaPort.translateRun`). */
function dmaSpan(t: DmaPort, rid: number, pasid: number, iova: number | bigint, data: Uint8Array, toRam: boolean): DmaResult {
  const access = toRam ? Access.Write : Access.Read;
  // Only bytes are a buffer: anything else (null, an array, a string, a DataView, a wider typed
  // array) is a malformed request, reported as a value like every fault on this path.
  if (!(data instanceof Uint8Array)) return refused(t, 0, rid, pasid, iova, access);
  const n = data.length;
  if (n === 0) return DONE;
  // Only numbers and bigints are addresses; anything else (a symbol, an object whose valueOf
  // throws) must not reach the arithmetic below, which would throw.
  if (typeof iova !== 'number' && typeof iova !== 'bigint') return refused(t, 0, rid, pasid, iova, access);
  // Past 2^53 number arithmetic rounds: such transfers run on bigint addresses; bigint ones that
  // end below it run on numbers (exact there), with no BigInt arithmetic per leaf.
  if (typeof iova === 'bigint' && iova >= 0n && iova + BigInt(n) <= MAX_SAFE_BIG) iova = Number(iova);
  const wide = typeof iova === 'bigint' || (Number.isInteger(iova) && iova + n > Number.MAX_SAFE_INTEGER);
  if (wide && typeof iova === 'number') iova = BigInt(iova);
  if (!isU32(rid) || !isU32(pasid)) return refused(t, 0, rid, pasid, iova, access);
  let done = 0;
  /** The pending run: `runBytes` bytes at guest-physical `runAt`, from `runFrom` in `data`. */
  let runAt = 0;
  let runFrom = 0;
  let runBytes = 0;
  while (done < n) {
    let lo: number;
    let hi: number;
    if (wide) {
      // Bigint addresses wrap-check once per leaf.
      const at = (iova as bigint) + BigInt(done);
      if (at < 0n) return refused(t, 0, rid, pasid, at, access);
      if (at >= TWO_64) return stopped(t, data, toRam, runAt, runFrom, runBytes, refused(t, done, rid, pasid, at, access));
      lo = Number(at & 0xffffffffn) | 0;
      hi = Number(at >> 32n) | 0;
    } else {
      // The address as int32 words (what the translator takes: no boxing of values from 2^31).
      const at = (iova as number) + done;
      lo = at | 0;
      hi = (at / TWO_32) | 0;
      if ((lo >>> 0) + (hi >>> 0) * TWO_32 !== at) return refused(t, 0, rid, pasid, at, access); // a fraction or a negative (only the first leaf can be)
    }
    const left = n - done;
    const info = t.translateRun(rid, pasid, lo, hi, access, left < RUN_MAX ? left : RUN_MAX);
    if (!(info & abi.INFO_OK)) return stopped(t, data, toRam, runAt, runFrom, runBytes, failed(done, faultCore(info)));
    const physLo = t.outLo >>> 0;
    const physHi = t.outHi >>> 0;
    const phys = physHi * TWO_32 + physLo;
    let chunk = t.runBytes;
    // The whole transfer in one run (a buffer mapped onto contiguous RAM): one copy, which checks
    // and copies nothing when the run is not all RAM (then the leaves decide, below).
    if (chunk === n && copyRun(t, data, toRam, phys, 0, n)) return complete(n);
    // One window holds the run (the common case), or adjoining windows do. When not, the run's
    // first leaf decides alone, as it would leaf by leaf: the next step starts at the leaf after it
    // (translating, and counting as hits, the rest of this run again: only at the edge of RAM).
    if (!isRam(t, phys, chunk)) {
      const sizeLg2 = (info >>> abi.INFO_SIZE_SHIFT) & abi.INFO_SIZE_MASK;
      const room = 2 ** sizeLg2 - (phys % 2 ** sizeLg2);
      if (room < chunk) chunk = room;
      if (!isRam(t, phys, chunk)) return stopped(t, data, toRam, runAt, runFrom, runBytes, notRam(done, physLo, physHi));
    }
    if (runBytes !== 0 && phys === runAt + runBytes) {
      runBytes += chunk;
    } else {
      copyRun(t, data, toRam, runAt, runFrom, runBytes);
      runAt = phys;
      runFrom = done;
      runBytes = chunk;
    }
    done += chunk;
  }
  copyRun(t, data, toRam, runAt, runFrom, runBytes);
  return complete(n);
}

/** True when guest-physical [phys, phys + bytes) is all RAM. */
function isRam(t: DmaPort, phys: number, bytes: number): boolean {
  return t.guestRam.find(phys, bytes) >= 0 || t.guestRam.covers(phys, bytes);
}

/** The frozen result of a whole transfer of `n` bytes (transfers of one size share it). */
function complete(n: number): DmaResult {
  return whole.bytes === n ? whole : completeNew(n);
}

/** `complete` for a size other than the last one's (out of line: it stays out of callers' inlining budget). */
function completeNew(n: number): DmaResult {
  return (whole = Object.freeze({ bytes: n }));
}

/** The fault of a leaf whose output (address words `lo`, `hi`) is not RAM, after `done` bytes. */
function notRam(done: number, lo: number, hi: number): DmaResult {
  return failed(done, { reason: 'not-ram', level: 0, stage: 0, phys: (BigInt(hi) << 32n) | BigInt(lo) });
}

/**
 * A malformed buffer, address (negative, fractional, not a number, or reaching 2^64 after `done`
 * bytes) or requester: logged and counted by the translator as the per-call path does, reported
 * after `done` bytes. A number address is logged as the bigint it names when it names one.
 */
function refused(t: DmaPort, done: number, rid: unknown, pasid: unknown, at: unknown, access: Access): DmaResult {
  t.refuse(rid, pasid, typeof at === 'number' && Number.isSafeInteger(at) && at >= 0 ? BigInt(at) : at, access);
  return failed(done, { reason: 'bad-request', level: 0, stage: 0 });
}

/** A transfer that ended in `fault` after `done` bytes; frozen, as every result is. */
function failed(done: number, fault: NonNullable<DmaResult['fault']>): DmaResult {
  return Object.freeze({ bytes: done, fault: Object.freeze(fault) });
}

/**
 * Copies `bytes` between guest-physical `at` and `data` from `from` (nothing when 0); false, with
 * nothing copied, when the range is not all RAM.
 */
function copyRun(t: DmaPort, data: Uint8Array, toRam: boolean, at: number, from: number, bytes: number): boolean {
  if (bytes === 0) return true;
  return toRam ? t.guestRam.write(at, data, from, bytes) : t.guestRam.read(at, data, from, bytes);
}

/** Copies the pending run (what was translated before a fault), then reports the fault. */
function stopped(t: DmaPort, data: Uint8Array, toRam: boolean, at: number, from: number, bytes: number, result: DmaResult): DmaResult {
  copyRun(t, data, toRam, at, from, bytes);
  return result;
}

