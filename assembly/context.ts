// Device contexts: which domain each requester ID, and each PASID of it, translates through.
//
// Device table: u32[256] root indexed by bus -> page of 256 16-byte entries indexed by devfn
// (allocated on first use, never freed, so a walk can always follow it). PASID table: a directory
// page of 1024 u32 indexed by pasid >> 10 -> leaf page of 1024 domain indices, allocated on demand
// and retired when empty, so memory follows the PASIDs in use. Changing or clearing a context bumps
// CTRL_CTX_GEN and the old domain's generation after the store: a translator that read the old
// context either sees the bump when it re-checks its IOTLB fill, or its entry fails the gen check.

import {
  DEV_SIZE, DEV_FLAGS, DEV_RID_DOMAIN, DEV_PASID_DIR, DEV_PASID_BITS, DEV_PRESENT,
  PASID_LEAF_BITS, PASID_LEAF_ENTRIES, PASID_DIR_COUNT_MASK, PASID_BITS, RID_BITS, NO_PASID,
  CTRL_CTX_GEN, STATUS_OK, STATUS_ENOMEM, STATUS_EINVAL,
} from './abi';
import { ctrl, devRoot, domainCount } from './env';
import { pageAlloc, pageRetire, pageFreeNow, epochAdvance } from './pool';
import { domainPtr, domainBumpGen } from './domain';
import { poolPageReachable } from './reach';
import { shootdown } from './shootdown';

/**
 * The device entry of `rid`, or 0 if its bus page does not exist. Pages of the pool reached from
 * here are checked by reach.ts first (the owner may have grown the memory in another thread).
 */
// @ts-ignore: decorator
@inline export function deviceEntry(rid: u32): usize {
  const page = <usize>atomic.load<u32>(devRoot + (<usize>(rid >> 8) << 2));
  return page == 0 || !poolPageReachable(<u64>page) ? 0 : page + <usize>(rid & 255) * DEV_SIZE;
}

/** The domain index `pasid` of device entry `dev` translates through; 0 = blocked. */
// @ts-ignore: decorator
@inline export function pasidDomain(dev: usize, pasid: u32): u32 {
  const dir = <usize>atomic.load<u32>(dev, DEV_PASID_DIR);
  if (dir == 0 || !poolPageReachable(<u64>dir)) return 0;
  const leaf = <usize>(atomic.load<u32>(dir + (<usize>(pasid >> PASID_LEAF_BITS) << 2)) & ~PASID_DIR_COUNT_MASK);
  if (leaf == 0 || !poolPageReachable(<u64>leaf)) return 0;
  return atomic.load<u32>(leaf + (<usize>(pasid & (PASID_LEAF_ENTRIES - 1)) << 2));
}

/** Creates the context of `rid` (blocked) supporting `pasidBits` bits of PASID (0 = none). */
export function deviceAdd(rid: u32, pasidBits: u32): i32 {
  if (rid >> RID_BITS || pasidBits > <u32>PASID_BITS) return STATUS_EINVAL;
  const rootSlot = devRoot + (<usize>(rid >> 8) << 2);
  if (atomic.load<u32>(rootSlot) == 0) {
    const page = pageAlloc();
    if (page == 0) return STATUS_ENOMEM;
    atomic.store<u32>(rootSlot, <u32>page);
  }
  const dev = deviceEntry(rid);
  if (load<u32>(dev, DEV_FLAGS) & DEV_PRESENT) return STATUS_EINVAL;
  store<u32>(dev, pasidBits, DEV_PASID_BITS);
  atomic.store<u32>(dev, DEV_PRESENT, DEV_FLAGS);
  return STATUS_OK;
}

/** Removes the context of `rid`; the TS layer has detached everything first. */
export function deviceRemove(rid: u32): i32 {
  if (rid >> RID_BITS) return STATUS_EINVAL;
  const dev = deviceEntry(rid);
  if (dev == 0 || !(load<u32>(dev, DEV_FLAGS) & DEV_PRESENT)) return STATUS_EINVAL;
  if (atomic.load<u32>(dev, DEV_RID_DOMAIN) != 0) setRidDomain(rid, 0);
  const dir = <usize>atomic.load<u32>(dev, DEV_PASID_DIR);
  atomic.store<u32>(dev, 0, DEV_FLAGS);
  if (dir != 0) {
    for (let i: u32 = 0; i < <u32>PASID_LEAF_ENTRIES; i++) {
      const leaf = <usize>(load<u32>(dir + (<usize>i << 2)) & ~PASID_DIR_COUNT_MASK);
      if (leaf != 0) pageRetire(leaf);
    }
    atomic.store<u32>(dev, 0, DEV_PASID_DIR);
    pageRetire(dir);
    epochAdvance();
  }
  atomic.add<u32>(ctrl, 1, CTRL_CTX_GEN);
  shootdown();
  return STATUS_OK;
}

/** Ends IOTLB validity for a context that pointed at `old` (0: nothing to invalidate). */
function contextChanged(old: u32): void {
  atomic.add<u32>(ctrl, 1, CTRL_CTX_GEN);
  if (old != 0) domainBumpGen(domainPtr(old));
  shootdown();
}

/** Points the RID (no-PASID) context of `rid` at domain `dom` (0 = block DMA). */
export function setRidDomain(rid: u32, dom: u32): i32 {
  if (rid >> RID_BITS || dom >= domainCount) return STATUS_EINVAL;
  const dev = deviceEntry(rid);
  if (dev == 0 || !(load<u32>(dev, DEV_FLAGS) & DEV_PRESENT)) return STATUS_EINVAL;
  const old = atomic.xchg<u32>(dev, dom, DEV_RID_DOMAIN);
  if (old != dom) contextChanged(old);
  return STATUS_OK;
}

/** Points `pasid` of `rid` at domain `dom` (0 = detach), allocating table pages on demand. */
export function setPasidDomain(rid: u32, pasid: u32, dom: u32): i32 {
  if (rid >> RID_BITS || pasid == NO_PASID || dom >= domainCount) return STATUS_EINVAL;
  const dev = deviceEntry(rid);
  if (dev == 0 || !(load<u32>(dev, DEV_FLAGS) & DEV_PRESENT)) return STATUS_EINVAL;
  if (pasid >> load<u32>(dev, DEV_PASID_BITS)) return STATUS_EINVAL;
  let dir = <usize>atomic.load<u32>(dev, DEV_PASID_DIR);
  const dirSlot = dir + (<usize>(pasid >> PASID_LEAF_BITS) << 2);
  if (dom == 0) {
    if (dir == 0) return STATUS_OK;
    const word = load<u32>(dirSlot);
    const leaf = <usize>(word & ~PASID_DIR_COUNT_MASK);
    if (leaf == 0) return STATUS_OK;
    const entry = leaf + (<usize>(pasid & (PASID_LEAF_ENTRIES - 1)) << 2);
    const old = atomic.xchg<u32>(entry, 0);
    if (old == 0) return STATUS_OK;
    if ((word & PASID_DIR_COUNT_MASK) == 1) {
      atomic.store<u32>(dirSlot, 0);
      pageRetire(leaf);
      epochAdvance();
    } else {
      atomic.store<u32>(dirSlot, word - 1);
    }
    contextChanged(old);
    return STATUS_OK;
  }
  let newDir: usize = 0;
  if (dir == 0) {
    newDir = pageAlloc();
    if (newDir == 0) return STATUS_ENOMEM;
    dir = newDir;
  }
  const slot = dir + (<usize>(pasid >> PASID_LEAF_BITS) << 2);
  let word = load<u32>(slot);
  let leaf = <usize>(word & ~PASID_DIR_COUNT_MASK);
  if (leaf == 0) {
    leaf = pageAlloc();
    if (leaf == 0) {
      if (newDir != 0) pageFreeNow(newDir); // never published
      return STATUS_ENOMEM;
    }
    word = <u32>leaf;
    atomic.store<u32>(slot, word);
  }
  if (newDir != 0) atomic.store<u32>(dev, <u32>newDir, DEV_PASID_DIR);
  const entry = leaf + (<usize>(pasid & (PASID_LEAF_ENTRIES - 1)) << 2);
  const old = atomic.xchg<u32>(entry, dom);
  if (old == 0) atomic.store<u32>(slot, word + 1);
  else if (old != dom) contextChanged(old);
  return STATUS_OK;
}
