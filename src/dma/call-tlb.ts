/**
 * CallTlb: the per-call path's look into its slot's call cache (assembly/callcache.ts, layout in
 * assembly/abi.ts CALL_*), so that a repeated translation costs no JS→Wasm call.
 *
 * Why: `translateInto` and `dmaRead`/`dmaWrite` translate one request at a time from JS, and a
 * call into the core costs several times the work of an IOTLB hit (V8 does not inline the Wasm
 * body). The core records each successful per-call answer in the slot's call cache; a later
 * identical request (same rid, pasid, 4 KiB page and access value) is answered here with a few
 * integer compares. Faults, page requests and A/D updates (a first write to a clean page of a
 * dirty-tracked domain) still happen in the core: only successes are recorded, per access value.
 *
 * Validity (the translator's contract: no result survives the control call that ends it): an
 * entry carries the engine's shootdown count (CTRL_SHOOTDOWN) read before the translations that
 * filled it, and is used only while the count still reads the same. Every operation that can end a
 * cached translation bumps the count after its change is visible (assembly/shootdown.ts), before
 * its control call returns; so a translation that starts after that return reads a newer count,
 * misses here and asks the core, which sees the change.
 *
 * The count is read with a plain load, not `Atomics.load` (a builtin call here, costing more than
 * the whole hit): a thread can only know that a control call in another thread returned through
 * an atomic operation or a message, and either orders its later plain loads after the bump; V8
 * does not move a load across such a call.
 *
 * Speed notes (V8): `find` and `hitInto` inline into the caller's loop, so their bytecode counts
 * against V8's inlining budget there; the miss path is one Wasm call with nothing to inline. The
 * ABI constants below fold into literals when bundled (tsup and the bench build use minifySyntax).
 * @module
 */
import * as abi from '../../assembly/abi';
import type { Core } from '../core/core';
import type { TranslationOut } from './translation';

export class CallTlb {
  /** The slot's call cache as int32 words (empty when the engine has none: every lookup misses). */
  private words = new Int32Array(0);
  private mask = 0;
  /** The control block's shootdown count, one word. */
  private shootdown = new Int32Array(0);
  /** This slot's hit counter (u64 as lo, hi words). */
  private hits = new Uint32Array(0);
  /** The core's result view when the views above were taken (`rebind` when the core's differs). */
  boundTo: Uint32Array | undefined;

  constructor(private readonly core: Core) {
    this.rebind();
  }

  /**
   * Takes the core's current views (after the core re-created its own: the memory grew). A view of
   * an unshared memory that grew is detached and reads undefined, so every lookup misses until the
   * miss path sees that the core's views changed and calls this.
   */
  rebind(): void {
    const core = this.core;
    this.boundTo = core.result;
    const buffer = core.memory.buffer;
    const entries = core.ctrl(abi.CTRL_CALL_ENTRIES);
    const slotBase = core.ctrl(abi.CTRL_SLOTS) + core.slot * core.ctrl(abi.CTRL_SLOT_SIZE);
    const cache = slotBase + abi.SLOT_IOTLB + core.ctrl(abi.CTRL_IOTLB_SETS) * abi.TLB_SET_SIZE;
    this.words = new Int32Array(buffer, cache, (entries * abi.CALL_ENTRY_SIZE) / 4);
    this.mask = entries - 1;
    this.shootdown = core.shootdown;
    this.hits = core.hits;
  }

  /**
   * The entry (a word index) answering request (rid, pasid, lo:hi, access) now, or -1; `lo`, `hi`
   * are the IOVA's words (int32 or uint32), `rid` an integer below 2^16 and `access` below 16 (the
   * caller checks: other values would alias another request's key). A hit is counted in this
   * slot's hits, as the core counts its own.
   */
  find(rid: number, pasid: number, lo: number, hi: number, access: number): number {
    if (hi >>> 27 !== 0) return -1; // an IOVA from 2^59: no key (the core never records one)
    const vpnLo = (lo >>> 12) | (hi << 20);
    const e = ((vpnLo ^ ((vpnLo >>> 8) * 17) ^ (rid << 5)) & this.mask) * (abi.CALL_ENTRY_SIZE >>> 2); // abi.ts CALL_*: the index
    const w = this.words;
    if (w[e + (abi.CALL_VPN_LO >>> 2)] !== vpnLo || w[e + (abi.CALL_KEY >>> 2)] !== (rid | ((hi >>> 12) << 16)) ||
      w[e + (abi.CALL_PASID >>> 2)] !== (pasid | 0) || ((w[e + (abi.CALL_ACCESSES >>> 2)]! >>> access) & 1) === 0 ||
      w[e + (abi.CALL_COUNT >>> 2)] !== this.shootdown[0]) return -1;
    const hits = this.hits;
    const n = hits[0]! + 1;
    hits[0] = n; // stores n mod 2^32
    if (n > 0xffffffff) hits[1] = hits[1]! + 1;
    return e;
  }

  /**
   * `find` for `translateInto`, with the argument checks a hit needs (a number RID below 2^16, a
   * u32 PASID, access bits below 16; anything else is left to the core path) and the hit stored in
   * `out` (as `decodeInto` does). True on a hit.
   */
  hitInto(out: TranslationOut, rid: unknown, pasid: unknown, lo: number, hi: number, access: unknown): boolean {
    if (typeof rid !== 'number' || typeof pasid !== 'number' || typeof access !== 'number' ||
      (rid & 0xffff) !== rid || pasid >>> 0 !== pasid || (access & 15) !== access) return false;
    const e = this.find(rid, pasid, lo, hi, access);
    if (e < 0) return false;
    const w = this.words;
    out.info = w[e + (abi.CALL_INFO >>> 2)]!;
    out.lo = w[e + (abi.CALL_OUT_LO >>> 2)]! | (lo & (abi.PAGE_SIZE - 1));
    out.hi = w[e + (abi.CALL_OUT_HI >>> 2)]!;
    return true;
  }

  /** The info word of hit `e`. */
  hitInfo(e: number): number {
    return this.words[e + (abi.CALL_INFO >>> 2)]!;
  }

  /** Low output address word (int32) of hit `e` for the byte at IOVA low word `lo`. */
  hitLo(e: number, lo: number): number {
    return this.words[e + (abi.CALL_OUT_LO >>> 2)]! | (lo & (abi.PAGE_SIZE - 1));
  }

  /** High output address word (int32) of hit `e`. */
  hitHi(e: number): number {
    return this.words[e + (abi.CALL_OUT_HI >>> 2)]!;
  }
}
