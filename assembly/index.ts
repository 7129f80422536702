// Entry of the Wasm core: the exports the TS layer binds in src/core/core.ts, and nothing else.
// Control exports (map, unmap, contexts, domains, pool) are for the owner thread only; translate,
// translateRun and translateBatch are safe from any thread bound to its own slot.

import * as abi from './abi';

export { bind as init } from './env';
export { domainInit, domainFree } from './domain';
export { deviceAdd, deviceRemove, setRidDomain, setPasidDomain } from './context';
export { translate, translateRun, translateBatch } from './translate';
export { bufferAlloc, bufferFree, reclaim } from './pool';
export { userDomainInit, userDomainFree, domainSetPri, domainInvalidateAll, deviceSetPri } from './userdomain';
export { iotlbInvalidateScan, iotlbInvalidatePages, iotlbInvalidateLeafScan } from './iotlb';
import { mapRange, unmapRange, clearRange, endUnmap, readDirty } from './pagetable';
import { sweepDomain } from './spare';
import { epochAdvance } from './pool';
import { domainPtr, domainBumpGen } from './domain';
import { domainCount } from './env';

/** The descriptor of `dom` when it is a live engine-managed domain (not user-managed), else 0. */
function engineDomain(dom: u32): usize {
  if (dom == 0 || dom >= domainCount) return 0;
  const d = domainPtr(dom);
  return (load<u32>(d, abi.DOM_FLAGS) & (abi.DOM_LIVE | abi.DOM_USER)) == abi.DOM_LIVE ? d : 0;
}

/** Maps [iova, iova+length) to [oa, ...) in domain `dom`; 0 or a negative errno. */
export function map(dom: u32, iova: u64, oa: u64, length: u64, perm: u32): i32 {
  const d = engineDomain(dom);
  if (d == 0 || length == 0 || ((iova | oa | length) & ((<u64>1 << abi.PAGE_SHIFT) - 1)) != 0) return abi.STATUS_EINVAL;
  return mapRange(d, iova, oa, length, perm);
}

/** Unmaps every leaf wholly inside [start, last] of domain `dom`. */
export function unmap(dom: u32, start: u64, last: u64): i32 {
  const d = engineDomain(dom);
  if (d == 0 || last < start) return abi.STATUS_EINVAL;
  unmapRange(d, start, last);
  return abi.STATUS_OK;
}

/**
 * `map` for each of the `count` MAPREC_* records at `recs`, in order: each record is mapped wholly
 * or not at all, and gets its status. @returns the number of records that failed.
 */
export function mapBatch(dom: u32, recs: usize, count: u32): u32 {
  let failed: u32 = 0;
  for (let i: u32 = 0; i < count; i++) {
    const r = recs + <usize>i * abi.MAPREC_SIZE;
    const status = map(dom, load<u64>(r, abi.MAPREC_IOVA), load<u64>(r, abi.MAPREC_PHYS), load<u64>(r, abi.MAPREC_LENGTH), load<u32>(r, abi.MAPREC_PERM));
    store<i32>(r, status, abi.MAPREC_STATUS);
    if (status != abi.STATUS_OK) failed++;
  }
  return failed;
}

/**
 * `unmap` of [iova, last] for each of the `count` MAPREC_* records at `recs`, in order; statuses as
 * mapBatch. The generation moves once, after every record's leaves are gone: a translation racing
 * the batch sees the old or the new table, and none started after it returns sees a removed leaf.
 */
export function unmapBatch(dom: u32, recs: usize, count: u32): u32 {
  const d = engineDomain(dom);
  let failed: u32 = 0;
  let cleared = false;
  for (let i: u32 = 0; i < count; i++) {
    const r = recs + <usize>i * abi.MAPREC_SIZE;
    const start = load<u64>(r, abi.MAPREC_IOVA);
    const last = load<u64>(r, abi.MAPREC_LAST);
    const ok = d != 0 && last >= start;
    if (ok && clearRange(d, start, last)) cleared = true;
    store<i32>(r, ok ? abi.STATUS_OK : abi.STATUS_EINVAL, abi.MAPREC_STATUS);
    if (!ok) failed++;
  }
  if (cleared) endUnmap(d);
  return failed;
}

/**
 * Releases every spare table of engine domain `dom` (assembly/spare.ts: tables a partial unmap
 * emptied, kept for reuse); returns the pages released, or a negative errno.
 */
export function domainSweep(dom: u32): i32 {
  const d = engineDomain(dom);
  if (d == 0) return abi.STATUS_EINVAL;
  const released = sweepDomain(d);
  if (released != 0) epochAdvance();
  return <i32>released;
}

/** Turns dirty tracking of engine domain `dom` on (clearing every D bit first) or off. */
export function domainSetDirty(dom: u32, on: u32): i32 {
  // Engine tables only; one on the extended miss path (page requests) marks D there (ptwalk.ts).
  const d = engineDomain(dom);
  if (d == 0) return abi.STATUS_EINVAL;
  const flags = load<u32>(d, abi.DOM_FLAGS);
  // Flag first, then clear and bump: a fill that still saw the flag off fails its generation re-check.
  atomic.store<u32>(d, on ? flags | abi.DOM_DIRTY : flags & ~abi.DOM_DIRTY, abi.DOM_FLAGS);
  if (on) readDirty(d, 0, 0xffffffffffffffff, abi.PAGE_SHIFT, 0, true);
  domainBumpGen(d);
  return abi.STATUS_OK;
}

/** Dirty pages of [start, last] in domain `dom` into the bitmap at `bitmap` (bit per 2^pageLg2 bytes). */
export function dirtyBitmap(dom: u32, start: u64, last: u64, pageLg2: u32, bitmap: usize, clear: u32): i32 {
  const d = engineDomain(dom);
  if (d == 0 || last < start || pageLg2 > 63) return abi.STATUS_EINVAL;
  readDirty(d, start, last, pageLg2, bitmap, clear != 0);
  return abi.STATUS_OK;
}

/** A digest of the ABI constants this binary was built with; src/core/core.ts checks it at load. */
export function abiHash(): u32 {
  let h: u32 = 2166136261;
  h = (h ^ abi.ABI_VERSION) * 16777619;
  h = (h ^ abi.CTRL_SIZE) * 16777619;
  h = (h ^ abi.DOM_SIZE) * 16777619;
  h = (h ^ abi.DEV_SIZE) * 16777619;
  h = (h ^ abi.TLB_ENTRY_SIZE) * 16777619;
  h = (h ^ abi.RES_SIZE) * 16777619;
  h = (h ^ abi.REQ_SIZE) * 16777619;
  h = (h ^ abi.SLOT_IOTLB) * 16777619;
  h = (h ^ abi.FAULT_MAX) * 16777619;
  h = (h ^ abi.CTRL_FAIL_COUNTDOWN) * 16777619;
  h = (h ^ abi.CTRL_RAM_COUNT) * 16777619;
  h = (h ^ abi.RAMWIN_SIZE) * 16777619;
  h = (h ^ abi.RAM_WINDOWS_MAX) * 16777619;
  h = (h ^ abi.SLOT_PRQ) * 16777619;
  h = (h ^ abi.PRQ_SIZE) * 16777619;
  h = (h ^ abi.INFO_CAP_SHIFT) * 16777619;
  h = (h ^ abi.DOM_PABITS) * 16777619;
  h = (h ^ abi.FMT_COUNT) * 16777619;
  // Images with a clean free list (or clean limbo records) must not reach an engine without one.
  h = (h ^ abi.CTRL_CLEAN_HEAD) * 16777619;
  h = (h ^ abi.LIMBO_CLEAN) * 16777619;
  h = (h ^ abi.CTRL_SHOOTDOWN) * 16777619;
  h = (h ^ abi.CTRL_CALL_ENTRIES) * 16777619;
  h = (h ^ abi.CALL_ENTRY_SIZE) * 16777619;
  h = (h ^ abi.CALL_COUNT) * 16777619;
  // Images with spare tables (pointers counting 0 live entries) must not reach an engine without them.
  h = (h ^ abi.DOM_SPARE) * 16777619;
  h = (h ^ abi.CTRL_SPARE_PAGES) * 16777619;
  return h;
}
