// The call cache: what the per-call path in JS (src/dma/call-tlb.ts) answers without entering the
// core. Layout and meaning: abi.ts CALL_*. Only `translate` (the per-call export) fills it, with a
// request it answered successfully; JS reads it in the same thread, so no atomics are needed here.
//
// Validity: an entry carries the shootdown count read before the translations that filled it, and
// JS uses it only while CTRL_SHOOTDOWN still reads that count; every operation that can end a
// cached translation bumps the count before its control call returns (shootdown.ts).

import {
  CALL_ENTRY_SIZE, CALL_VPN_LO, CALL_KEY, CALL_PASID, CALL_ACCESSES, CALL_INFO, CALL_OUT_LO,
  CALL_OUT_HI, CALL_COUNT, PAGE_SHIFT,
} from './abi';
import { callCache, callCacheMask, callCacheOn } from './env';

/**
 * Records that request (rid, pasid, iova, access) translated to `info` with output address `out`,
 * by translations that started after the shootdown count read `count`. An entry for the same page
 * with the same answer and count gains the access value; anything else is replaced. Returns the
 * entry's index in 32-bit words from the cache's start (how JS addresses it), or -1 when the
 * request has no key (nothing recorded).
 */
export function callCacheFill(rid: u32, pasid: u32, iova: u64, access: u32, info: u32, out: u64, count: u32): i32 {
  // The key holds 16 RID bits and 15 bits of page number above 32; the access set 16 values.
  if (!callCacheOn || (rid >> 16) != 0 || (access >> 4) != 0 || (iova >> 59) != 0) return -1;
  const vpn = iova >> PAGE_SHIFT;
  const vpnLo = <u32>vpn;
  const key = rid | (<u32>(vpn >> 32) << 16);
  const page = <u32>out & ~<u32>0xfff;
  const outHi = <u32>(out >> 32);
  const index = (vpnLo ^ ((vpnLo >> 8) * 17) ^ (rid << 5)) & callCacheMask;
  const e = callCache + <usize>index * CALL_ENTRY_SIZE;
  const words = <i32>(index * (CALL_ENTRY_SIZE >> 2));
  const same = load<u32>(e, CALL_VPN_LO) == vpnLo && load<u32>(e, CALL_KEY) == key && load<u32>(e, CALL_PASID) == pasid &&
    load<u32>(e, CALL_INFO) == info && load<u32>(e, CALL_OUT_LO) == page && load<u32>(e, CALL_OUT_HI) == outHi &&
    load<u32>(e, CALL_COUNT) == count;
  if (same) {
    store<u32>(e, load<u32>(e, CALL_ACCESSES) | (<u32>1 << access), CALL_ACCESSES);
    return words;
  }
  store<u32>(e, vpnLo, CALL_VPN_LO);
  store<u32>(e, key, CALL_KEY);
  store<u32>(e, pasid, CALL_PASID);
  store<u32>(e, <u32>1 << access, CALL_ACCESSES);
  store<u32>(e, info, CALL_INFO);
  store<u32>(e, page, CALL_OUT_LO);
  store<u32>(e, outHi, CALL_OUT_HI);
  store<u32>(e, count, CALL_COUNT);
  return words;
}
