// Control exports for user-managed tables, nesting, page requests and invalidation (owner thread
// only). A user-managed domain is a domain descriptor whose table lives in guest RAM: the engine
// never writes it except for A/D updates, never frees it, and reads it only through ram.ts.
// Publication order: every field is written before DOM_FLAGS makes the descriptor live (a context
// points at it only after this returns), and teardown bumps the generation after clearing.

import {
  DOM_ROOT, DOM_LEVELS, DOM_FLAGS, DOM_LIVE, DOM_EXT, DOM_USER, DOM_PAGES, DOM_FORMAT,
  DOM_PARENT, DOM_UROOT_LO, DOM_UROOT_HI, DOM_PABITS, DOM_HWAD, DOM_SUM, DOM_SVPBMT, DOM_SVNAPOT,
  DOM_SVRSW60T59B, DOM_PRI, FMT_X86_64, FMT_RISCV_S, FMT_RISCV_G, DEV_FLAGS, DEV_PRESENT, DEV_PRI,
  RID_BITS, STATUS_OK, STATUS_EINVAL,
} from './abi';
import { domainCount } from './env';
import { domainPtr, domainBumpGen } from './domain';
import { deviceEntry } from './context';

const USER_FLAGS: u32 = DOM_HWAD | DOM_SUM | DOM_SVPBMT | DOM_SVNAPOT | DOM_SVRSW60T59B | DOM_PRI;

// @ts-ignore: decorator
@inline function live(index: u32): bool {
  return index != 0 && index < domainCount && (load<u32>(domainPtr(index), DOM_FLAGS) & DOM_LIVE) != 0;
}

/**
 * Makes `index` a live user-managed domain: format `fmt` (FMT_X86_64 4-5 levels, FMT_RISCV_S or
 * FMT_RISCV_G 3-5 levels), table root `root` (guest-physical, or a GPA when `parent` is set; 4 KiB
 * aligned, 16 KiB for the x4 G-stage root), DOM_* feature `flags`, stage-2 `parent` (0 = none),
 * output width `paBits` (x86 reserved-bit check). EINVAL on any inconsistency.
 */
export function userDomainInit(index: u32, fmt: u32, levels: u32, root: u64, flags: u32, parent: u32, paBits: u32): i32 {
  if (index == 0 || index >= domainCount || live(index)) return STATUS_EINVAL;
  if (fmt == FMT_X86_64) {
    if (levels < 4 || levels > 5) return STATUS_EINVAL;
  } else if (fmt == FMT_RISCV_S || fmt == FMT_RISCV_G) {
    if (levels < 3 || levels > 5) return STATUS_EINVAL;
  } else {
    return STATUS_EINVAL;
  }
  if ((root & (fmt == FMT_RISCV_G ? 0x3fff : 0xfff)) != 0 || (flags & ~USER_FLAGS) != 0) return STATUS_EINVAL;
  if (parent != 0 && (parent == index || !live(parent))) return STATUS_EINVAL;
  if (paBits < 12 || paBits > 56) return STATUS_EINVAL;
  const d = domainPtr(index);
  store<u32>(d, 0, DOM_ROOT);
  store<u32>(d, levels, DOM_LEVELS);
  store<u32>(d, 0, DOM_PAGES);
  store<u32>(d, fmt, DOM_FORMAT);
  store<u32>(d, parent, DOM_PARENT);
  store<u32>(d, <u32>root, DOM_UROOT_LO);
  store<u32>(d, <u32>(root >> 32), DOM_UROOT_HI);
  store<u32>(d, paBits, DOM_PABITS);
  atomic.store<u32>(d, DOM_LIVE | DOM_EXT | DOM_USER | flags, DOM_FLAGS);
  return STATUS_OK;
}

/** Tears down a user-managed domain no context points at any more (and no child uses). */
export function userDomainFree(index: u32): i32 {
  if (!live(index)) return STATUS_EINVAL;
  const d = domainPtr(index);
  if (!(load<u32>(d, DOM_FLAGS) & DOM_USER)) return STATUS_EINVAL;
  atomic.store<u32>(d, 0, DOM_FLAGS);
  store<u32>(d, 0, DOM_FORMAT); // an engine domain reusing the index starts from the engine format
  store<u32>(d, 0, DOM_PARENT);
  domainBumpGen(d);
  return STATUS_OK;
}

/** Turns page requests for recoverable faults on or off for live domain `index`. */
export function domainSetPri(index: u32, on: u32): i32 {
  if (!live(index)) return STATUS_EINVAL;
  const d = domainPtr(index);
  const flags = load<u32>(d, DOM_FLAGS);
  const user = (flags & DOM_USER) != 0;
  // Engine domains take the extended miss path only while they deliver page requests.
  const next = on != 0 ? flags | DOM_PRI | DOM_EXT : flags & ~(DOM_PRI | (user ? 0 : DOM_EXT));
  atomic.store<u32>(d, next, DOM_FLAGS);
  return STATUS_OK;
}

/** Ends IOTLB validity of every entry of domain `index` in every translator, in O(1). */
export function domainInvalidateAll(index: u32): i32 {
  if (index == 0 || index >= domainCount) return STATUS_EINVAL;
  domainBumpGen(domainPtr(index));
  return STATUS_OK;
}

/** Marks device `rid` as sending page requests (PRI) or not. */
export function deviceSetPri(rid: u32, on: u32): i32 {
  if (rid >> RID_BITS) return STATUS_EINVAL;
  const dev = deviceEntry(rid);
  if (dev == 0 || !(load<u32>(dev, DEV_FLAGS) & DEV_PRESENT)) return STATUS_EINVAL;
  if (on != 0) atomic.or<u32>(dev, DEV_PRI, DEV_FLAGS);
  else atomic.and<u32>(dev, ~DEV_PRI, DEV_FLAGS);
  return STATUS_OK;
}
