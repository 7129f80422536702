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
 * A miss asks the core, which returns the entry it recorded (assembly/translate.ts `translate`):
 * hit and miss then read the answer alike, from the entry.
 *
 * Speed notes (V8): `into` and what it calls inline into the caller's loop, so their bytecode
 * counts against V8's inlining budget there (`into` says more), and so do `find`, `hitLo` and
 * `hitHi` in a DMA inside one page (dma.ts `dmaCopy`); the ABI constants below fold into literals
 * when bundled (tsup and the bench build use minifySyntax). Entry indices are masked to their
 * known range (`find`, `ask`) so that V8 reads an entry's fields without overflow checks.
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
   * caller checks: other values would alias another request's key). The key's page number above
   * 32 bits is computed unwrapped: from 2^59 it reaches 2^31, which no stored (int32) key equals,
   * as the core records no IOVA from 2^59. A hit is counted in this slot's hits, as the core
   * counts its own.
   */
  find(rid: number, pasid: number, lo: number, hi: number, access: number): number {
    const vpnLo = (lo >>> 12) | (hi << 20);
    // abi.ts CALL_*: the index. `mask` never has bits from CALL_ENTRIES_MAX; masking them here too
    // tells V8 the word index is below 2^11, so it checks no overflow when adding a field's offset.
    const e = ((vpnLo ^ ((vpnLo >>> 8) * 17) ^ (rid << 5)) & this.mask & (abi.CALL_ENTRIES_MAX - 1)) * (abi.CALL_ENTRY_SIZE >>> 2);
    const w = this.words;
    if (w[e + (abi.CALL_VPN_LO >>> 2)] !== vpnLo || w[e + (abi.CALL_KEY >>> 2)] !== (hi >>> 12) * 65536 + rid ||
      w[e + (abi.CALL_PASID >>> 2)] !== (pasid | 0) || ((w[e + (abi.CALL_ACCESSES >>> 2)]! >>> access) & 1) === 0 ||
      w[e + (abi.CALL_COUNT >>> 2)] !== this.shootdown[0]) return -1;
    const hits = this.hits;
    if ((hits[0] = (hits[0]! + 1) | 0) === 0) hits[1]!++; // the low word wrapped: carry
    return e;
  }

  /**
   * The entry answering request (rid, pasid, lo:hi, access), which must be one the cache takes (as
   * for `find`): a hit, or else the core's answer, which it recorded. -1 when the core recorded
   * nothing (a fault; the answer is in the slot's result record) or the views need rebinding.
   */
  lookup(rid: number, pasid: number, lo: number, hi: number, access: number): number {
    const e = this.find(rid, pasid, lo, hi, access);
    return e >= 0 ? e : this.ask(rid, pasid, lo, hi, access);
  }

  /** The core's translation of a request (any u32 arguments) as `lookup` returns it. */
  ask(rid: number, pasid: number, lo: number, hi: number, access: number): number {
    const e = this.core.exports.translate(rid, pasid, lo, hi, access);
    // A view of an unshared memory that grew is detached: the entry is there, but not in `words`.
    // The core's word index is below 2^11 (or -1); masking it (a no-op) tells V8 so, as in `find`:
    // reads of the entry after a hit or a miss then need no overflow checks.
    return e >= 0 && this.words.length !== 0 ? e & ((abi.CALL_ENTRIES_MAX - 1) * (abi.CALL_ENTRY_SIZE >>> 2)) : -1;
  }

  /**
   * `lookup` for `translateInto`, with the answer stored in `out` (as `decodeInto` does): 1 when
   * answered, 0 when the answer is in the result record, -1 when the arguments are not ones the
   * cache takes (a number RID below 2^16, a u32 PASID, access bits below 16): such a request is
   * left to the checks of the general path, untouched.
   *
   * Hit and miss share this code, so the hit path that V8 inlines into a caller's loop holds the
   * miss path as well: nothing else is left for V8 to inline (which it otherwise would where
   * misses had been frequent, past its inlining budget for the caller, which then calls instead).
   */
  into(out: TranslationOut, rid: unknown, pasid: unknown, lo: number, hi: number, access: unknown): number {
    if (typeof rid !== 'number' || typeof pasid !== 'number' || typeof access !== 'number' ||
      (rid & 0xffff) !== rid || pasid >>> 0 !== pasid || (access & 15) !== access) return -1;
    let e = this.find(rid, pasid, lo, hi, access); // `lookup`, spelled out: one call less to inline
    if (e < 0 && (e = this.ask(rid, pasid, lo, hi, access)) < 0) return 0;
    const w = this.words;
    out.info = w[e + (abi.CALL_INFO >>> 2)]!;
    out.lo = w[e + (abi.CALL_OUT_LO >>> 2)]! | (lo & (abi.PAGE_SIZE - 1));
    out.hi = w[e + (abi.CALL_OUT_HI >>> 2)]!;
    return 1;
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
