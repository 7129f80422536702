/**
 * A batch of translation requests in the engine's memory, translated by one Wasm call.
 *
 * Layout (little-endian u32 words; `requests` and `results` are views over the shared memory, so an
 * emulator can fill requests in place, e.g. straight from a descriptor ring):
 *
 *   request i  = requests[4i .. 4i+3]: rid | access << 16, pasid, iova low 32, iova high 32
 *   result i   = results[4i .. 4i+3]:  phys low 32, phys high 32, info, 0
 *   info       = bit 0 ok; ok: bits 3:1 perm (R=1 W=2 X=4), bits 5:4 memory type (RISC-V PBMT),
 *                bits 13:8 log2(translation size), bits 21:16 access rights per privilege;
 *                fault: bits 23:16 reason (index into FAULT_REASONS), bits 27:24 level,
 *                bits 29:28 stage, bit 14 page request queued, bit 30 implicit (stage-2 fault while
 *                reading a stage-1 table), bit 31 that access was an A/D write. On a fault the phys
 *                words hold the fault address (the GPA of a stage-2 fault, the table-entry address of
 *                an outside-RAM fault), 0 otherwise. The authoritative layout is assembly/abi.ts.
 * @module
 */
import * as abi from '../../assembly/abi';
import type { Core } from '../core/core';
import type { Access } from './translation';

/**
 * A ring of translation requests in the engine's shared memory, translated by one Wasm call
 * (`run`): the fastest path when addresses are already in memory (layout: this file's header and
 * README "Batch layout"). Get one from `Translator.batch()` or `Iommu.batch()`.
 * @example
 * ```ts no-run
 * const batch = translator.batch();
 * batch.set(0, rid, NO_PASID, 0x1000, Access.Read);
 * batch.set(1, rid, NO_PASID, 0x2000, Access.Write);
 * batch.run(2);
 * if (batch.ok(0)) console.log(batch.phys(0));
 * ```
 */
export class Batch {
  private epoch = -1;
  private req = new Uint32Array(0);
  private res = new Uint32Array(0);
  private released = false;

  /** @internal */
  constructor(
    private readonly core: Core,
    /** Requests per `run` at most. */
    readonly capacity: number,
    /** Byte offset of the request words in the engine memory. */
    readonly requestPtr: number,
    /** Byte offset of the result words in the engine memory. */
    readonly resultPtr: number,
    /** Gives the pages back (`Iommu.batch`); none for a translator's ring, which belongs to its handle. */
    private readonly free?: () => void,
  ) {}

  /**
   * Gives the batch's pages back to the engine (from `Iommu.batch`: they are reused by later
   * batches, handles and tables). The batch is unusable afterwards: every method throws RangeError.
   * Releasing twice does nothing; a translator's own ring (`Translator.batch()`) is released with
   * `Iommu.translatorRelease`, so here it only ends this object's use of it.
   */
  release(): void {
    if (this.released) return;
    this.released = true;
    this.req = this.res = new Uint32Array(0);
    this.free?.();
  }

  /** Request words (4 per request). Re-read after control calls if the memory is unshared. */
  get requests(): Uint32Array {
    // (A detached view: an emulator grew the unshared memory it lent the engine.)
    if (this.epoch !== this.core.viewEpoch || this.req.length === 0) this.rebuild();
    return this.req;
  }

  /** Result words (4 per result). */
  get results(): Uint32Array {
    // (A detached view: an emulator grew the unshared memory it lent the engine.)
    if (this.epoch !== this.core.viewEpoch || this.res.length === 0) this.rebuild();
    return this.res;
  }

  /**
   * Writes request `i`. `iova` must be below 2^53 here; use the words directly for wider ones.
   * Values the record cannot hold (rid beyond 16 bits, access beyond 16, non-integers…) are
   * written as a malformed request, so they fault `bad-request` as in a per-call translate.
   */
  set(i: number, rid: number, pasid: number, iova: number, access: Access): void {
    const r = this.requests;
    const at = i * 4;
    if (!(fits(rid, 2 ** 16) && fits(pasid, 2 ** 32) && fits(access, 2 ** 16) && fits(iova, 2 ** 64))) {
      r.fill(0, at, at + 4);
      r[at] = 0xffff << abi.REQ_ACCESS_SHIFT; // access bits the core rejects
      return;
    }
    r[at] = rid | (access << abi.REQ_ACCESS_SHIFT);
    r[at + 1] = pasid;
    r[at + 2] = iova >>> 0;
    r[at + 3] = (iova / 4294967296) >>> 0;
  }

  /**
   * Translates requests 0..n-1 in one call. @returns the number of faults.
   * @throws RangeError when n is not an integer in [0, capacity].
   */
  run(n: number = this.capacity): number {
    if (this.released) throw new RangeError('batch.run: the batch was released');
    if (!(Number.isInteger(n) && n >= 0 && n <= this.capacity)) throw new RangeError(`batch.run: n must be an integer in [0, ${this.capacity}], got ${n}`);
    return this.core.exports.translateBatch(this.requestPtr, this.resultPtr, n);
  }

  /** Output address of result `i` as a number (exact below 2^53). */
  phys(i: number): number {
    const r = this.results;
    return r[i * 4 + 1]! * 4294967296 + r[i * 4]!;
  }

  /** True when result `i` is a translation, false when it is a fault. */
  ok(i: number): boolean {
    return (this.info(i) & abi.INFO_OK) !== 0;
  }

  /** The info word of result `i` (layout in the module comment). */
  info(i: number): number {
    return this.results[i * 4 + 2]!;
  }

  /** Leaf permission bits (R=1 W=2 X=4) of result `i`; 0 for a fault. */
  perm(i: number): number {
    const info = this.info(i);
    return info & abi.INFO_OK ? (info >>> abi.INFO_PERM_SHIFT) & abi.INFO_PERM_MASK : 0;
  }

  /** log2 of the leaf size of result `i`; 0 for a fault. */
  sizeLg2(i: number): number {
    const info = this.info(i);
    return info & abi.INFO_OK ? (info >>> abi.INFO_SIZE_SHIFT) & abi.INFO_SIZE_MASK : 0;
  }

  /** The fault reason of result `i` (an index into FAULT_REASONS), 0 when it translated. */
  reason(i: number): number {
    const info = this.info(i);
    return info & abi.INFO_OK ? 0 : (info >>> abi.INFO_REASON_SHIFT) & abi.INFO_REASON_MASK;
  }

  private rebuild(): void {
    if (this.released) throw new RangeError('batch: the batch was released');
    const buffer = this.core.memory.buffer;
    this.req = new Uint32Array(buffer, this.requestPtr, this.capacity * 4);
    this.res = new Uint32Array(buffer, this.resultPtr, this.capacity * 4);
    this.epoch = this.core.viewEpoch;
  }
}

/** True when `v` is an integer number in [0, limit). */
const fits = (v: unknown, limit: number): boolean => typeof v === 'number' && Number.isInteger(v) && v >= 0 && v < limit;

/** Pages needed for a batch of `capacity` requests and results. */
export function batchPages(capacity: number): number {
  return Math.ceil((capacity * (abi.REQ_SIZE + abi.RES_SIZE)) / abi.PAGE_SIZE);
}
