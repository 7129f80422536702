// The extended miss path, for domains flagged DOM_EXT: tables a user keeps in guest RAM (single
// stage, or nested over a parent domain), and engine tables whose faults raise page requests.
//
// Nesting (VT-d §3.8 "Nested Translation", RISC-V "Two-Stage Address Translation"): the stage-1
// walk runs with the parent as its stage 2 (ptwalk.ts translates each table-entry address), then
// the final GPA goes through stage 2. The result combines both: the stage-2 output address, the
// smaller size, the intersection of R/W/X and of access rights, stage 1's memory type if it has
// one. It is cached as one IOTLB entry under the attached (child) domain, so a nested hit costs
// what a single-stage hit costs. Cost of a miss: for L1 stage-1 levels over L2 stage-2 levels,
// L1 * (L2 + 1) + L2 table reads (24 for 4 over 4); intermediate translations are not cached.
//
// IOTLB validity of an entry filled here (see iotlb.ts for the owner side):
//  - it carries the child domain's generation: detach, replace, destroy, invalidate-all, and any
//    change of the parent's tables (the owner bumps every child's generation after changing the
//    parent) end it;
//  - the fill reads the child's DOM_INVSEQ before the walk and again after publishing the key,
//    dropping the entry if it moved, so a range invalidation racing the walk either sees the entry
//    in its scan or makes the fill drop it;
//  - as in translate.ts, a context change (CTRL_CTX_GEN) during the walk drops the fill.
// Translations at IOVAs from 2^57 (high canonical halves) are not cached: their page numbers do
// not fit the entry key.
//
// Page requests (PCIe PRI, iommufd fault queues): a recoverable fault (not present, permission,
// A/D needed) of a request whose attached domain has DOM_PRI, from a device with DEV_PRI, is
// appended to this translator slot's page-request ring and flagged INFO_PAGE_REQUEST. The slot's
// thread is the only producer (tail), the owner the only consumer (head); the record is written
// before the tail is published with an atomic store.

import {
  ACCESS_MASK, DOM_PARENT, DOM_FORMAT, DOM_FLAGS, DOM_GEN, DOM_INVSEQ, DOM_PRI, FMT_ENGINE,
  FMT_RISCV_G, INFO_OK, INFO_PERM_SHIFT, INFO_PBMT_SHIFT, INFO_SIZE_SHIFT, INFO_CAP_SHIFT,
  INFO_REASON_SHIFT, INFO_REASON_MASK, INFO_PAGE_REQUEST, FAULT_NOT_PRESENT, FAULT_PERMISSION,
  FAULT_AD_DISABLED, RES_PHYS_LO, DEV_FLAGS, DEV_PRI, SLOT_PRQ, SLOT_PRQ_TAIL,
  SLOT_PRQ_HEAD, SLOT_PRQ_LOST, PRQ_SIZE, PRQ_ENTRIES, PRQ_RID_ACCESS, PRQ_PASID, PRQ_IOVA_LO,
  PRQ_IOVA_HI, PRQ_DOMAIN, PRQ_INFO,
} from './abi';
import { slot } from './env';
import { domainPtr } from './domain';
import { deviceEntry } from './context';
import { walkStage, wOA, wShift, wPerm, wCaps, wPbmt, wFaultAddr } from './ptwalk';
import { fill } from './iotlb';



/** Fault address of the last extended miss, for the caller's result record (see takeFaultAddr). */
let faultAddr: u64 = 0;
/** Output address of the last successful translateExt. */
let extOA: u64 = 0;

/** Takes (and clears) the fault address the last miss left: 0 unless an extended walk set one. */
// @ts-ignore: decorator
@inline export function takeFaultAddr(): u64 {
  const a = faultAddr;
  faultAddr = 0;
  return a;
}

// @ts-ignore: decorator
@inline function okInfo(perm: u32, pbmt: u32, shift: u32, caps: u32): u32 {
  return INFO_OK | (perm << INFO_PERM_SHIFT) | (pbmt << INFO_PBMT_SHIFT) | (shift << INFO_SIZE_SHIFT) | (caps << INFO_CAP_SHIFT);
}

/** Translates `iova` through domain `d` (and its parent): an OK info with extOA set, or a fault info. */
function translateExt(d: usize, iova: u64, access: u32): u32 {
  const parent = load<u32>(d, DOM_PARENT);
  if (parent == 0) {
    const fmt = load<u32>(d, DOM_FORMAT);
    const stage: u32 = fmt == FMT_ENGINE ? 0 : fmt == FMT_RISCV_G ? 2 : 1;
    const f = walkStage(d, iova, access, stage, 0, 0);
    if (f != 0) return f;
    extOA = wOA;
    return okInfo(wPerm, wPbmt, wShift, wCaps);
  }
  const s2 = domainPtr(parent);
  let f = walkStage(d, iova, access, 1, s2, 0);
  if (f != 0) return f;
  const gpa = wOA;
  const shift1 = wShift;
  const perm1 = wPerm;
  const caps1 = wCaps;
  const pbmt1 = wPbmt;
  f = walkStage(s2, gpa, access, 2, 0, 0); // after stage 1's A/D update, as the specs order it
  if (f != 0) return f;
  extOA = wOA;
  return okInfo(perm1 & wPerm, pbmt1 != 0 ? pbmt1 : wPbmt, shift1 < wShift ? shift1 : wShift, caps1 & wCaps);
}

/** Faults a device may recover from after a page request is answered. */
// @ts-ignore: decorator
@inline function recoverable(info: u32): bool {
  const reason = (info >> INFO_REASON_SHIFT) & INFO_REASON_MASK;
  return reason == FAULT_NOT_PRESENT || reason == FAULT_PERMISSION || reason == FAULT_AD_DISABLED;
}

/** Queues a page request for a faulting request (see the header); returns the fault info, flagged if queued. */
function pageRequest(rid: u32, pasid: u32, iova: u64, access: u32, dom: u32, info: u32): u32 {
  const dev = deviceEntry(rid);
  if (dev == 0 || (atomic.load<u32>(dev, DEV_FLAGS) & DEV_PRI) == 0) return info;
  const tail = load<u32>(slot, SLOT_PRQ_TAIL);
  if (tail - atomic.load<u32>(slot, SLOT_PRQ_HEAD) >= <u32>PRQ_ENTRIES) {
    store<u32>(slot, load<u32>(slot, SLOT_PRQ_LOST) + 1, SLOT_PRQ_LOST);
    return info;
  }
  const r = slot + SLOT_PRQ + <usize>(tail & (PRQ_ENTRIES - 1)) * PRQ_SIZE;
  store<u32>(r, rid | ((access & ACCESS_MASK) << 16), PRQ_RID_ACCESS);
  store<u32>(r, pasid, PRQ_PASID);
  store<u32>(r, <u32>iova, PRQ_IOVA_LO);
  store<u32>(r, <u32>(iova >> 32), PRQ_IOVA_HI);
  store<u32>(r, dom, PRQ_DOMAIN);
  store<u32>(r, info, PRQ_INFO);
  atomic.store<u32>(slot, tail + 1, SLOT_PRQ_TAIL);
  return info | INFO_PAGE_REQUEST;
}

/**
 * The miss path of a DOM_EXT domain `dom` (descriptor `d`), entered from translate.ts's miss with
 * the context generation it read before resolving the context. Stores phys at `out`, returns info.
 */
export function extMiss(rid: u32, pasid: u32, iova: u64, access: u32, out: usize, dom: u32, d: usize, ctxGen: u32): u32 {
  const gen = atomic.load<u32>(d, DOM_GEN);
  const seq = atomic.load<u32>(d, DOM_INVSEQ);
  const info = translateExt(d, iova, access);
  if (!(info & INFO_OK)) {
    faultAddr = wFaultAddr;
    if ((load<u32>(d, DOM_FLAGS) & DOM_PRI) != 0 && recoverable(info)) return pageRequest(rid, pasid, iova, access, dom, info);
    return info;
  }
  const phys = extOA;
  store<u64>(out, phys, RES_PHYS_LO);
  fill(rid, pasid, iova, dom, d, gen, seq, ctxGen, info, phys, true);
  return info;
}
