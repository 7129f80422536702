// IOTLB maintenance off the hit path: where a fill goes, and exact invalidation by the owner.
//
// Entries never move between ways: a fill overwrites, in place, the way that already holds its key
// (so a set never holds a key twice — the hit path stops at the first key match), else an empty
// way, else the two ways alternately. The owner's invalidation relies on this: an entry it must
// clear cannot slip past its scan by moving to a way already scanned.
//
// Invalidation protocol (with the fill side in nested.ts): the owner first bumps the domain's
// DOM_INVSEQ, then scans. For each entry it loads the key atomically (acquire), then the fields,
// and clears a match with a compare-and-swap on the key. A filling translator writes the fields,
// stores the key atomically (release), then re-reads DOM_INVSEQ and clears its own key if it moved.
// Sequential consistency of the two atomic pairs (key store / seq load against seq bump / key
// load) means that either the translator sees the bump and drops its fill, or the owner's scan sees
// the filled key together with its fields and clears it. Torn field reads while a translator
// overwrites a way only ever cause extra clears (harmless) or miss an entry that is being evicted
// anyway (its key is replaced before the translator's next lookup; only that translator looks up
// in its slot).

import {
  TLB_ENTRY_SIZE, TLB_SET_SIZE, TLB_KEY_HI, TLB_VPN_LO, TLB_PASID, TLB_DOMAIN, TLB_GEN, TLB_INFO,
  TLB_PHYS_LO, TLB_VALID, TLB_RID_SHIFT, DOM_INVSEQ, DOM_GEN, SLOT_IOTLB, SLOT_SUPER_DOMAINS, PASID_BITS, PAGE_SHIFT,
  CTRL_CTX_GEN, INFO_SIZE_SHIFT, INFO_SIZE_MASK,
} from './abi';
import { ctrl, slot, slotsBase, slotCount, slotSize, iotlb, iotlbSetMask } from './env';
import { domainPtr } from './domain';
import { shootdown } from './shootdown';

/** Offset in a slot of the SLOT_SUPER_DOMAINS word holding domain `dom`'s superpage hint bit. */
// @ts-ignore: decorator
@inline function superHintWord(dom: u32): usize {
  return <usize>SLOT_SUPER_DOMAINS + <usize>((dom >> 5) & 1) * 4;
}

/** Domain `dom`'s superpage hint bit in its superHintWord (the number mod 64). */
// @ts-ignore: decorator
@inline function superHintBit(dom: u32): u32 {
  return <u32>1 << (dom & 31);
}

/** The set of this slot's IOTLB that (rid, pasid, page vpnLo) hashes to; the hit path's hash. */
// @ts-ignore: decorator
@inline export function setOf(rid: u32, pasid: u32, vpnLo: u32): usize {
  const h = vpnLo ^ ((pasid | (rid << PASID_BITS)) * 0x9e3779b1);
  return iotlb + <usize>((h ^ (h >> 16)) & iotlbSetMask) * TLB_SET_SIZE;
}

// @ts-ignore: decorator
@inline function moved(d: usize, gen: u32, seq: u32, ctxGen: u32): bool {
  return atomic.load<u32>(d, DOM_GEN) != gen || atomic.load<u32>(d, DOM_INVSEQ) != seq || atomic.load<u32>(ctrl, CTRL_CTX_GEN) != ctxGen;
}

/**
 * Caches a translation of (rid, pasid, page of `iova`) from domain `dom` (descriptor `d`), whose
 * generation was `gen`, invalidation sequence `seq` and CTRL_CTX_GEN `ctxGen` before the walk, so
 * that the entry never survives a control call that overlapped the walk (see translate.ts).
 *
 * `scanned`: the domain's entries may be cleared by an owner scan (exact invalidation of
 * user-managed tables): the key is published with a sequentially consistent store first and
 * withdrawn if a counter moved (the header's protocol). Otherwise (engine tables, invalidated by
 * generation only, which every hit checks) the counters are re-read first and the key written with
 * a plain store — no full barrier on the engine's miss path.
 */
export function fill(rid: u32, pasid: u32, iova: u64, dom: u32, d: usize, gen: u32, seq: u32, ctxGen: u32, info: u32, phys: u64, scanned: bool): void {
  const vpn = iova >> PAGE_SHIFT;
  if (<u32>(vpn >> 32) >> TLB_RID_SHIFT) return; // page numbers from 2^45 do not fit a key
  const keyHi = <u32>(vpn >> 32) | (rid << TLB_RID_SHIFT) | TLB_VALID;
  // A superpage: leaf-aware invalidation must scan for this domain. The hint is set (in this
  // slot only) before the key is published, so an owner that misses it bumped DOM_INVSEQ first
  // and this fill withdraws itself below.
  if (((info >> INFO_SIZE_SHIFT) & INFO_SIZE_MASK) > <u32>PAGE_SHIFT) {
    const word = slot + superHintWord(dom);
    const bit = superHintBit(dom);
    if (!(load<u32>(word) & bit)) atomic.store<u32>(word, load<u32>(word) | bit);
  }
  const e = victim(setOf(rid, pasid, <u32>vpn), <u32>vpn, keyHi, pasid);
  store<u32>(e, <u32>vpn, TLB_VPN_LO);
  store<u32>(e, pasid, TLB_PASID);
  store<u32>(e, dom, TLB_DOMAIN);
  store<u32>(e, gen, TLB_GEN);
  store<u32>(e, info, TLB_INFO);
  store<u64>(e, phys & ~((<u64>1 << PAGE_SHIFT) - 1), TLB_PHYS_LO);
  if (scanned) {
    atomic.store<u32>(e, keyHi, TLB_KEY_HI); // publishes the fields above to an owner scan
    if (moved(d, gen, seq, ctxGen)) atomic.store<u32>(e, 0, TLB_KEY_HI);
  } else {
    store<u32>(e, moved(d, gen, seq, ctxGen) ? 0 : keyHi, TLB_KEY_HI);
  }
}

let victimBit: u32 = 0;

/** The way of `set` a fill of key (vpnLo, keyHi, pasid) writes (see the header). */
export function victim(set: usize, vpnLo: u32, keyHi: u32, pasid: u32): usize {
  const other = set + TLB_ENTRY_SIZE;
  if (load<u32>(set, TLB_VPN_LO) == vpnLo && load<u32>(set, TLB_KEY_HI) == keyHi && load<u32>(set, TLB_PASID) == pasid) return set;
  if (load<u32>(other, TLB_VPN_LO) == vpnLo && load<u32>(other, TLB_KEY_HI) == keyHi && load<u32>(other, TLB_PASID) == pasid) return other;
  if (!(load<u32>(set, TLB_KEY_HI) & TLB_VALID)) return set;
  if (!(load<u32>(other, TLB_KEY_HI) & TLB_VALID)) return other;
  victimBit ^= 1;
  return set + <usize>victimBit * TLB_ENTRY_SIZE;
}

/** Clears entry `e` if it is a valid entry of `dom` (and `pasid` unless `anyPasid`) for a page in [first, last]. */
function clearIf(e: usize, dom: u32, anyPasid: bool, pasid: u32, first: u64, last: u64): void {
  const key = atomic.load<u32>(e, TLB_KEY_HI);
  if (!(key & TLB_VALID) || load<u32>(e, TLB_DOMAIN) != dom) return;
  if (!anyPasid && load<u32>(e, TLB_PASID) != pasid) return;
  const vpn = (<u64>(key & ((1 << TLB_RID_SHIFT) - 1)) << 32) | <u64>load<u32>(e, TLB_VPN_LO);
  if (vpn < first || vpn > last) return;
  atomic.cmpxchg<u32>(e + TLB_KEY_HI, key, 0);
}

/**
 * Removes, from every translator's IOTLB, the entries of domain `dom` for pages `first..last`
 * (page numbers) and PASID `pasid` (any PASID when `anyPasid`): a scan of every entry, exact.
 */
export function iotlbInvalidateScan(dom: u32, anyPasid: u32, pasid: u32, first: u64, last: u64): void {
  atomic.add<u32>(domainPtr(dom), 1, DOM_INVSEQ);
  const entries = (iotlbSetMask + 1) * 2;
  for (let s: u32 = 0; s < slotCount; s++) {
    const base = slotsBase + <usize>s * <usize>slotSize + SLOT_IOTLB;
    for (let i: u32 = 0; i < entries; i++) clearIf(base + <usize>i * TLB_ENTRY_SIZE, dom, anyPasid != 0, pasid, first, last);
  }
  shootdown();
}

/**
 * Removes the entries of domain `dom` for (rid, pasid) and pages `first..last` from every
 * translator's IOTLB, probing only the sets those pages hash to (for small ranges).
 */
export function iotlbInvalidatePages(dom: u32, rid: u32, pasid: u32, first: u64, last: u64): void {
  atomic.add<u32>(domainPtr(dom), 1, DOM_INVSEQ);
  for (let vpn = first; vpn <= last; vpn++) {
    const offset = setOf(rid, pasid, <u32>vpn) - iotlb; // same hash as the hit path, any slot
    for (let s: u32 = 0; s < slotCount; s++) {
      const set = slotsBase + <usize>s * <usize>slotSize + SLOT_IOTLB + offset;
      clearIf(set, dom, false, pasid, vpn, vpn);
      clearIf(set + TLB_ENTRY_SIZE, dom, false, pasid, vpn, vpn);
    }
    if (vpn == last) break; // last may be 2^52-1: never wrap
  }
  shootdown();
}

/**
 * Leaf-aware invalidation: clears the entries of `dom` (and `pasid` unless `anyPasid`) whose cached
 * leaf — the 4 KiB page, or the whole superpage it was translated through — overlaps pages
 * `first..last`, from every translator's IOTLB. (An entry caches one 4 KiB page; a superpage leaf
 * leaves one entry per page used, each with the leaf size in its info word.) Only when some slot
 * has cached a superpage for a domain of this number (SLOT_SUPER_DOMAINS): @returns 1 after the
 * scan, 0 when no slot has, and page-exact invalidation (iotlbInvalidatePages) is enough.
 */
export function iotlbInvalidateLeafScan(dom: u32, anyPasid: u32, pasid: u32, first: u64, last: u64): u32 {
  atomic.add<u32>(domainPtr(dom), 1, DOM_INVSEQ);
  const hint = superHintWord(dom);
  const bit = superHintBit(dom);
  let any = false;
  for (let s: u32 = 0; s < slotCount && !any; s++) any = (atomic.load<u32>(slotsBase + <usize>s * <usize>slotSize + hint) & bit) != 0;
  if (!any) return 0; // the caller invalidates page-exact next, which bumps the shootdown count
  const entries = (iotlbSetMask + 1) * 2;
  for (let s: u32 = 0; s < slotCount; s++) {
    const base = slotsBase + <usize>s * <usize>slotSize + SLOT_IOTLB;
    for (let i: u32 = 0; i < entries; i++) {
      const e = base + <usize>i * TLB_ENTRY_SIZE;
      const key = atomic.load<u32>(e, TLB_KEY_HI);
      if (!(key & TLB_VALID) || load<u32>(e, TLB_DOMAIN) != dom) continue;
      if (!anyPasid && load<u32>(e, TLB_PASID) != pasid) continue;
      const vpn = (<u64>(key & ((1 << TLB_RID_SHIFT) - 1)) << 32) | <u64>load<u32>(e, TLB_VPN_LO);
      const span = (<u64>1 << <u64>(((load<u32>(e, TLB_INFO) >> INFO_SIZE_SHIFT) & INFO_SIZE_MASK) - <u32>PAGE_SHIFT)) - 1;
      if ((vpn | span) < first || (vpn & ~span) > last) continue;
      atomic.cmpxchg<u32>(e + TLB_KEY_HI, key, 0);
    }
  }
  shootdown();
  return 1;
}
